"""Finding the annotation files and images of every real dataset layout.

Layouts (names are matched case-insensitively):

* ``neu-det``: ``IMAGES/`` + ``ANNOTATIONS/`` (the authors' release), or Kaggle's
  ``train|validation/images/<class>/*.jpg`` + ``train|validation/annotations/*.xml``
  (that split is kept unless asked to re-split).
* ``gc10-det``: the official ``1``..``10`` image folders + ``lable/`` (sic) XML folder;
  Kaggle's ``images/images/<class>/*.jpg`` + ``label/label/*.xml``; or VOCdevkit.
* ``voc``: ``Annotations/`` + ``JPEGImages/`` with optional ``ImageSets/Main/*.txt``.

A folder holding exactly one sub-folder and nothing recognisable is looked into, so
``NEU-DET/NEU-DET/...`` and ``VOCdevkit/VOC2007/...`` are found too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from converters.errors import ConversionError
from converters.model import SPLITS

# What OpenCV decodes, and so ultralytics trains on (its own list adds formats OpenCV
# reads only through Pillow plugins); matched case-blind (.JPG from cameras).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
FORMATS = ("neu-det", "gc10-det", "voc")


@dataclass
class SourceLayout:
    """Where one dataset's files are.

    Attributes:
        root: The dataset root; no file outside it is ever read.
        format: ``neu-det``, ``gc10-det``, ``voc``, or ``None`` when the class
            names must decide (VOCdevkit folders hold any dataset).
        layout: A human description of the layout detected.
        annotations: Every XML file.
        images: Every image file.
        given_split: Split fixed by the source, by image stem or XML stem.
    """

    root: Path
    format: str | None
    layout: str
    annotations: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    given_split: dict[str, str] = field(default_factory=dict)


def _child(folder: Path, *names: str) -> Path | None:
    wanted = {n.lower() for n in names}
    try:
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and entry.name.lower() in wanted:
                return entry
    except OSError:
        return None
    return None


def _files(folder: Path, suffixes: frozenset[str] | set[str], recursive: bool = True) -> list[Path]:
    found = []
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir():
                if recursive:
                    stack.append(Path(entry.path))
            elif os.path.splitext(entry.name)[1].lower() in suffixes and entry.is_file():
                found.append(Path(entry.path))
    return sorted(found)


def _xml(folder: Path, recursive: bool = False) -> list[Path]:
    return _files(folder, {".xml"}, recursive)


def _neu_original(root: Path) -> SourceLayout | None:
    images, annotations = _child(root, "images"), _child(root, "annotations")
    xmls = _xml(annotations) if images and annotations else []
    if xmls:
        return SourceLayout(
            root,
            "neu-det",
            f"NEU-DET original ({images.name}/ + {annotations.name}/)",
            xmls,
            _files(images, IMAGE_SUFFIXES),
        )
    return None


def _neu_kaggle(root: Path) -> SourceLayout | None:
    found = SourceLayout(root, "neu-det", "NEU-DET Kaggle (train|validation/images + annotations)")
    for folder_name, split in (
        ("train", "train"),
        ("validation", "val"),
        ("valid", "val"),
        ("val", "val"),
        ("test", "test"),
    ):
        part = _child(root, folder_name)
        if part is None:
            continue
        images, annotations = _child(part, "images"), _child(part, "annotations")
        if not (images and annotations):
            continue
        xmls = _xml(annotations)
        found.annotations += xmls
        found.images += _files(images, IMAGE_SUFFIXES)
        found.given_split.update({x.stem: split for x in xmls})
    return found if found.annotations else None


def _gc10_official(root: Path) -> SourceLayout | None:
    labels = _child(root, "lable", "label", "labels")
    numbered = [root / str(n) for n in range(1, 11) if (root / str(n)).is_dir()]
    if labels and numbered and _xml(labels):
        images = [p for folder in numbered for p in _files(folder, IMAGE_SUFFIXES)]
        return SourceLayout(
            root,
            "gc10-det",
            f"GC10-DET official (folders 1..10 + {labels.name}/)",
            _xml(labels),
            images,
        )
    return None


def _gc10_kaggle(root: Path) -> SourceLayout | None:
    outer_images, outer_labels = _child(root, "images"), _child(root, "label", "labels")
    if not (outer_images and outer_labels):
        return None
    images = _child(outer_images, "images") or outer_images
    labels = _child(outer_labels, "label", "labels") or outer_labels
    if _xml(labels) and any(p.is_dir() for p in images.iterdir()):
        return SourceLayout(
            root,
            "gc10-det",
            "GC10-DET Kaggle (images/images/<class>/ + label/label/)",
            _xml(labels),
            _files(images, IMAGE_SUFFIXES),
        )
    return None


def _voc_devkit(root: Path) -> SourceLayout | None:
    annotations, images = _child(root, "annotations"), _child(root, "jpegimages")
    if not (annotations and images and _xml(annotations)):
        return None
    found = SourceLayout(
        root,
        None,
        "Pascal VOC (Annotations/ + JPEGImages/)",
        _xml(annotations),
        _files(images, IMAGE_SUFFIXES),
    )
    main = root / "ImageSets" / "Main"
    lists = {p.stem.lower(): p for p in main.glob("*.txt")} if main.is_dir() else {}
    named = [("train", "train"), ("val", "val"), ("test", "test")]
    if "train" not in lists and "trainval" in lists:
        named[0] = ("trainval", "train")
    for list_name, split in named:
        if list_name in lists:
            for line in lists[list_name].read_text(errors="replace").splitlines():
                if line.strip():
                    found.given_split[line.split()[0]] = split
    if found.given_split:
        found.layout += f" with ImageSets/Main split lists ({', '.join(sorted(lists))})"
    return found


_DETECTORS = (_neu_kaggle, _gc10_official, _gc10_kaggle, _voc_devkit, _neu_original)


def detect_layout(root: Path) -> SourceLayout:
    """Finds the layout of the dataset at ``root``.

    Raises:
        ConversionError: No known layout is there.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConversionError(f"{root}: no such folder")
    folder = root.resolve()
    for _ in range(3):
        for detector in _DETECTORS:
            found = detector(folder)
            if found is not None:
                return found
        subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if len(subfolders) != 1:
            break
        folder = subfolders[0]
    raise ConversionError(
        f"{root}: no known dataset layout. Expected NEU-DET (IMAGES/ + ANNOTATIONS/, or "
        "train|validation/images + annotations), GC10-DET (folders 1..10 + lable/, or "
        "images/images + label/label) or Pascal VOC (Annotations/ + JPEGImages/)"
    )


def images_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def class_folders(root: Path) -> dict[str, list[Path]]:
    """``{class: images}`` for a folder whose sub-folders each hold one class's images."""
    if not root.is_dir():
        return {}
    found = {d.name: images_in(d) for d in sorted(root.iterdir()) if d.is_dir()}
    return {name: images for name, images in found.items() if images}


def is_image_level_tree(root: Path) -> bool:
    """True for ``class/*.jpg`` or ``train|val/class/*.jpg`` trees: image-level labels,
    no box annotations (what ``train-cls`` reads and ``train`` refuses)."""
    root = Path(root)
    if (root / "data.yaml").exists() or (root / "manifest.json").exists():
        return False
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    if split_dirs:
        return all(len(class_folders(d)) >= 2 for d in split_dirs[:1])
    return len(class_folders(root)) >= 2
