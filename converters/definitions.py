"""Dataset definitions: class lists, display names, aliases and recipes, kept as YAML in
``datasets/`` so that adding a class spelling is a data change, not a code change."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from converters.errors import ConversionError
from converters.files import read_yaml_mapping

DEFINITIONS_DIR = Path(__file__).resolve().parent.parent / "datasets"


def normalize_name(name: str) -> str:
    """Folds case, spaces and hyphens so ``Rolled-in scale`` matches ``rolled_in_scale``."""
    return "_".join(name.strip().lower().replace("-", " ").replace("_", " ").split())


@dataclass(frozen=True)
class DatasetDefinition:
    """The fixed facts about one dataset.

    Attributes:
        name: Short name, e.g. ``neu-det``.
        classes: Class names; the index is the class id.
        display_names: Class name to a name for people.
        aliases: Normalised spelling to class name (misspellings, abbreviations).
        folders: Image folder name to class name, where folders name classes.
        recipe: Training defaults (model, imgsz, epochs, ...).
        format: The layout family the converter reads.
        channels: The colour channels models train on: 3, or 1 for grey images, which
            the converter writes into the ``data.yaml`` as ultralytics' own setting
            (``channels: 1``: models of grey levels).
    """

    name: str
    classes: list[str]
    display_names: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    folders: dict[str, str] = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    format: str = "voc"
    channels: int = 3

    def resolve(self, name: str) -> str | None:
        """Maps a class name as written to a class of this dataset, or ``None``."""
        if name in self.classes:
            return name
        key = normalize_name(name)
        for cls in self.classes:
            if normalize_name(cls) == key:
                return cls
        return self.aliases.get(key)


def from_class_list(classes: list[str], name: str = "voc") -> DatasetDefinition:
    """A definition for generic VOC given only its classes, in order."""
    cleaned = [c.strip() for c in classes if c.strip()]
    if not cleaned:
        raise ConversionError("the class list is empty")
    if len(set(cleaned)) != len(cleaned):
        raise ConversionError(f"the class list repeats a name: {cleaned}")
    return DatasetDefinition(name=name, classes=cleaned)


def load_definition(name_or_path: str | Path) -> DatasetDefinition:
    """Loads ``datasets/<name>.yaml`` (a name: a string with no suffix and no folder) or
    a YAML file with ``classes`` (names or dicts) at a path (a ``Path``, or a string
    with either).

    Raises:
        ConversionError: The file is missing or has no usable class list.
    """
    path = Path(name_or_path)
    if isinstance(name_or_path, str) and not path.suffix and path.name == name_or_path:
        path = DEFINITIONS_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in DEFINITIONS_DIR.glob("*.yaml")))
            raise ConversionError(f"{path}: no such dataset definition (known: {known})")
    elif not path.exists() or path.is_dir():
        # A file the user named (--classes-file): the definitions in datasets/ are not it.
        # (A pipe, <(...), is read as a file is; a device is refused as it is read.)
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise ConversionError(f"{path}: {what}")
    data = read_yaml_mapping(path, "dataset definition")
    raw_classes = data.get("classes") or data.get("names")
    if isinstance(raw_classes, dict):  # ultralytics style {0: a, 1: b}
        try:
            raw_classes = [raw_classes[k] for k in sorted(raw_classes, key=int)]
        except (TypeError, ValueError):
            raise ConversionError(
                f"{path}: its names' keys are not class ids (0, 1, ...): {list(raw_classes)}"
            ) from None
    if not isinstance(raw_classes, list) or not raw_classes:
        raise ConversionError(f"{path}: needs a non-empty 'classes' list")
    for key in ("folders", "recipe"):
        if not isinstance(data.get(key) or {}, dict):
            raise ConversionError(f"{path}: its '{key}' is not a mapping of keys to values")
    channels = data.get("channels", 3)
    if type(channels) is not int or channels not in (1, 3):  # not True, not 1.0
        raise ConversionError(
            f"{path}: its 'channels' is {channels!r}, not 1 (grey images) or 3 (colour)"
        )
    classes, display, aliases = [], {}, {}
    for index, entry in enumerate(raw_classes):
        entry = {"name": entry} if isinstance(entry, (str, int)) else entry
        given = entry.get("aliases", []) if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), (str, int)):
            raise ConversionError(
                f"{path}: class {index} is {entry!r}, not a name or a mapping with a 'name'"
            )
        if not isinstance(given, list):
            raise ConversionError(f"{path}: class {entry['name']}'s aliases are not a list")
        cls = str(entry["name"])
        classes.append(cls)
        display[cls] = str(entry.get("display", cls))
        for alias in given:
            aliases[normalize_name(str(alias))] = cls
    base = from_class_list(classes, name=str(data.get("name", path.stem)))
    return DatasetDefinition(
        name=base.name,
        classes=base.classes,
        display_names=display,
        aliases=aliases,
        folders={str(k): str(v) for k, v in (data.get("folders") or {}).items()},
        recipe=dict(data.get("recipe") or {}),
        format=str(data.get("format", "voc")),
        channels=channels,
    )
