"""The images of a dataset's splits, and which of them a model was trained on.

A model scored on images it was trained on looks better than it is, and nothing in the
figures shows it: NEU-DET converted with another seed (or another ratio) puts most of the
release's training images into the new val split, and the release then scores mAP50
0.80 where its card says 0.75. So every model carries a record of its training images,
and ``evaluate`` and ``compare`` say how many of the scored images are in it.

An image is known by its bytes (the first 16 hex digits of their SHA-256), not its name:
a converter links or copies its images unchanged, so the same image converted twice is
the same file, while two datasets may each have an ``image_001.jpg``. Where it comes from:

- a released model: its card (``data.trained_on``), written by ``defects release``;
- a run of ``defects train``: its ``trained_on.json``, written when training begins, the
  starting model's record merged in (a stage from ``neu-det`` has seen neu-det's images);
- any other ``.pt`` (a plain ultralytics run): the train split of the ``data.yaml`` its
  checkpoint names, as that file lists its images now, when it is still there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from converters.errors import ConversionError
from converters.layouts import IMAGE_SUFFIXES, images_in
from converters.source import image_digest
from detection.weights import atomic_write_bytes, load_yolo

TRAINED_ON = "trained_on.json"
CARD = "card.json"


def split_images(data_yaml: Path, split: str) -> tuple[list[Path], dict]:
    """The images a ``data.yaml`` lists for ``split`` (folders, searched at any depth, or
    ``.txt`` lists of images), found as ultralytics finds them (``path``, and its ``../``
    quirk of Roboflow's exports, by ultralytics' own ``check_det_dataset``); with the
    dataset as ``check_det_dataset`` read it.

    Raises:
        ConversionError: A ``data.yaml`` ultralytics refuses, or no such split; names the
            file.
    """
    import logging

    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # its warnings stay; its blank line before an error goes
    try:
        data = check_det_dataset(str(data_yaml), autodownload=False, split=split)
    except (FileNotFoundError, KeyError, SyntaxError, TypeError, ValueError) as error:
        # A KeyError's text is its repr (class ids with a gap: names {0: a, 2: b}); and
        # ultralytics' note on its download folder has nothing to do with data on disk.
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        message = str(message).split("\nNote dataset download directory")[0]
        message = " ".join(message.replace("❌", "").split())
        if isinstance(error, FileNotFoundError):
            message += _relative_root(data_yaml)
        if isinstance(error, ValueError) and message.startswith("invalid literal for int()"):
            # ultralytics reads names: {a: x} as class ids and fails on the first key.
            message = f"its 'names' keys are not class ids (0, 1, ...): {message}"
        raise ConversionError(f"{data_yaml}: {message}") from None
    finally:
        LOGGER.setLevel(level)
    if not data.get(split):
        raise ConversionError(f"{data_yaml}: no split '{split}'")
    listed = data[split] if isinstance(data[split], list) else [data[split]]
    images: list[Path] = []
    for entry in map(Path, listed):
        if entry.is_dir():
            images += images_in(entry, recursive=True)
        else:  # a list of images; "./x.jpg" is beside the list (as ultralytics reads it)
            lines = entry.read_text(errors="replace").splitlines()
            named = [
                entry.parent / line[2:] if line.startswith("./") else Path(line) for line in lines
            ]
            images += [p for p in named if p.suffix.lower() in IMAGE_SUFFIXES]
    return images, data


def _relative_root(data_yaml: Path) -> str:
    """What to add to ultralytics' "images not found" where the data.yaml gives a relative
    ``path:``: ultralytics takes it from the folder the command runs in (``path: .`` is
    that folder), or, where it is not there, from its own datasets folder; never from the
    data.yaml's folder, so a dataset whose folders lie beside its data.yaml is not found
    from elsewhere."""
    import yaml
    from ultralytics.utils import DATASETS_DIR

    try:
        root = yaml.safe_load(data_yaml.read_text(encoding="utf-8")).get("path")
    except (OSError, UnicodeDecodeError, AttributeError, yaml.YAMLError):
        return ""
    if not isinstance(root, str) or not root or Path(root).is_absolute():
        return ""
    base = (
        f"the folder the command runs in, {Path.cwd()}"
        if Path(root).exists()
        else f"ultralytics' datasets folder, {DATASETS_DIR} (it is not in the folder the "
        "command runs in)"
    )
    return (
        f" (its 'path: {root}' is taken, as ultralytics takes it, from {base}, not from the "
        f"data.yaml's folder, {data_yaml.parent}; leave 'path' out, or make it absolute)"
    )


def training_digests(images: list[Path], sizes: set[int] | None = None) -> set[str]:
    """The :func:`converters.source.image_digest` of every image of a train split
    (:func:`split_images`; those of one of ``sizes`` in bytes alone, when given); a
    listed image that is not there is passed over."""
    return {
        image_digest(p)
        for p in images
        if p.is_file() and (sizes is None or p.stat().st_size in sizes)
    }


@dataclass(frozen=True)
class TrainingRecord:
    """The images a model was trained on.

    Attributes:
        digests: Their :func:`converters.source.image_digest`.
        source: Where the record comes from, as a report names it.
        complete: False when the model started from weights whose own training images
            are not known: then it has seen at least these.
    """

    digests: frozenset[str]
    source: str
    complete: bool = True


def field_of_view(images: list[Path], imgsz: int) -> dict | None:
    """The scale a model learnt defects at: the median ``width`` and ``height`` of its
    training images (read from their headers) and the ``imgsz`` it was trained at, each
    image letterboxed to it; None when no image can be read."""
    from converters.imagesize import image_size

    sizes = []
    for path in images:
        try:
            sizes.append(image_size(path))
        except OSError:
            continue  # training passes over such an image too
    if not sizes:
        return None
    widths, heights = sorted(w for w, _ in sizes), sorted(h for _, h in sizes)
    middle = len(sizes) // 2
    return {"width": widths[middle], "height": heights[middle], "imgsz": int(imgsz)}


def scale_against_training(
    field: dict, width: int, height: int, imgsz: int, tile: int | None = None
) -> float:
    """How large a defect of a ``width`` x ``height`` image, predicted at ``imgsz`` (in
    ``tile`` x ``tile`` tiles when larger than a tile), is drawn in the model's input
    relative to one of the same pixel size in training (:func:`field_of_view`): 1 at
    the training scale, 0.1 when ten times smaller."""
    seen = tile if tile and max(width, height) > tile else max(width, height)
    trained = field["imgsz"] / max(field["width"], field["height"])
    return imgsz / seen / trained


def record_training_images(
    run_dir: Path,
    data_yaml: Path,
    start: str | Path,
    imgsz: int | None = None,
    activation: str | None = None,
) -> dict:
    """Writes ``run_dir/trained_on.json``: the digests of ``data_yaml``'s train split,
    with those of the model training starts from (``start``: a ``.pt``, or a ``.yaml``
    definition, which has seen nothing), given the training ``imgsz``, the split's
    :func:`field_of_view`, and the ``activation`` the start was given, if any
    (``defects train --activation``)."""
    images, _ = split_images(data_yaml, "train")
    digests = training_digests(images)
    complete = True
    if Path(start).suffix == ".pt":
        before = training_record(Path(start))
        complete = before is not None and before.complete
        digests |= before.digests if before else set()
    record = {
        "data": str(data_yaml),
        "start": str(start),
        "images": len(digests),
        "complete": complete,
        "images_sha256": sorted(digests),
    }
    if imgsz is not None:
        record["field_of_view"] = field_of_view(images, imgsz)
    if activation is not None:
        record["activation"] = activation
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(run_dir) / TRAINED_ON, (json.dumps(record, indent=1) + "\n").encode())
    return record


def _recorded(weights: Path) -> tuple[dict, str] | None:
    """What a released model's card (``trained_on``; empty in a card without it) or a
    run's ``trained_on.json`` records of ``weights``' training, and where it comes from;
    None for weights that have neither beside them."""
    card = weights.parent / CARD
    if card.is_file() and weights.name.startswith("model."):  # a released model
        return json.loads(card.read_text()).get("data", {}).get("trained_on") or {}, (
            f"its card, {card}"
        )
    recorded = weights.parent / TRAINED_ON
    if recorded.is_file():
        return json.loads(recorded.read_text()), f"its run's {recorded}"
    return None


def training_record(weights: Path, sizes: set[int] | None = None) -> TrainingRecord | None:
    """The record of ``weights``' training images (this module's docstring says where it
    comes from), or None when there is none. Read from a checkpoint's data, only the
    images of one of ``sizes`` (in bytes) are digested, when given: a large train split
    is not read whole to be compared with a few images."""
    weights = Path(weights)
    found = _recorded(weights)
    if found is not None:
        record, source = found
        if not record:
            return None
        return TrainingRecord(frozenset(record["images_sha256"]), source, record["complete"])
    if weights.suffix != ".pt":
        return None
    return _from_checkpoint(weights, sizes)


def recorded_activation(weights: Path) -> str | None:
    """The activation ``defects train --activation`` gave the run of ``weights`` (in its
    ``trained_on.json``); None for a run that kept its model's own."""
    found = _recorded(Path(weights))
    return found[0].get("activation") if found else None


def recorded_field_of_view(weights: Path) -> dict | None:
    """The :func:`field_of_view` a released model's card or a run's ``trained_on.json``
    records for ``weights`` (any file of the run or release: ``best.pt``, its ``.onnx``);
    None for weights without one (a plain ultralytics run, a run from before it was
    recorded)."""
    found = _recorded(Path(weights))
    return found[0].get("field_of_view") if found else None


def _from_checkpoint(weights: Path, sizes: set[int] | None) -> TrainingRecord | None:
    data = ((load_yolo(weights, "detect").ckpt or {}).get("train_args") or {}).get("data")
    if not data or not Path(data).is_file():
        return None
    try:
        digests = training_digests(split_images(Path(data), "train")[0], sizes)
    except (ConversionError, OSError):
        return None
    return TrainingRecord(
        frozenset(digests),
        f"the train split of {data}, the data its checkpoint names, as listed there now",
        # Where training started is not known from here.
        complete=False,
    )


def seen_in_training(
    weights: Path, images: list[Path], counted: list[int] | None = None
) -> tuple[dict, list[int]]:
    """Which of ``images`` ``weights`` was trained on, and how many of those ``counted``
    (indices into ``images``; all of them by default).

    Returns:
        ``{"images": n, "of": len(counted), "record": where the record comes from,
        "complete": bool, "examples": a few of them by name}`` (``{"record": None, "of":
        len(counted)}`` when the model has no record), and the indices of the images it
        was trained on.
    """
    counted = list(range(len(images))) if counted is None else counted
    present = [i for i, p in enumerate(images) if Path(p).is_file()]
    record = training_record(weights, {Path(images[i]).stat().st_size for i in present})
    if record is None:
        return {"record": None, "of": len(counted)}, []
    seen = [i for i in present if image_digest(images[i]) in record.digests]
    trained_on = set(seen)
    seen_counted = [i for i in counted if i in trained_on]
    summary = {
        "images": len(seen_counted),
        "of": len(counted),
        "record": record.source,
        "complete": record.complete,
        "examples": [Path(images[i]).name for i in seen_counted[:5]],
    }
    return summary, seen


def unseen_images(weights: list[Path], images: list[Path], data_yaml: Path) -> dict:
    """Which of ``images`` none of ``weights`` was trained on, nor overlaps an image one
    of them was trained on: the images on which models trained on different splits, or
    on crops of one strip, compare fairly (``evaluate --unseen``, ``compare --unseen``).

    A copy is found by its bytes (:func:`seen_in_training`); an overlapping crop, shifted,
    re-exposed or re-encoded, by its fine detail (:func:`converters.overlaps.copies_of`)
    against the training images found among every split of ``data_yaml``. NEU-DET's
    seeded val split holds 54 crops of pictures whose other crops are in train
    (docs/neu-det-findings.md): on them a model scores as on images it has seen.

    Returns:
        ``{"kept", "trained_on", "overlapping"}``: indices into ``images``, each image in
        one of them; ``"pairs"``: ``(scored image, training image)`` names of each
        overlap found; ``"incomplete"``: the ``weights`` whose record may miss images
        (they started from weights without one).

    Raises:
        ConversionError: Weights without a record of their training images, or an image
            that cannot be read; names the file.
    """
    from converters.model import SPLITS
    from converters.overlaps import copies_of

    records = []
    for model in weights:
        record = training_record(model)
        if record is None:
            raise ConversionError(
                f"{model}: no record of the images it was trained on (a released model's "
                f"card, a run's {TRAINED_ON}, or a data.yaml its checkpoint names that is "
                "still there), so --unseen cannot tell which images it has seen"
            )
        records.append(record)
    digests = frozenset().union(*(record.digests for record in records))
    scored = [image_digest(path) for path in images]
    trained_on = {i for i, digest in enumerate(scored) if digest in digests}
    scored_digests = set(scored)
    elsewhere: dict[str, Path] = {}  # the training images among the dataset's, once each
    for split in SPLITS:
        try:
            listed, _ = split_images(data_yaml, split)
        except ConversionError:
            continue  # no such split
        for path in listed:
            digest = image_digest(path) if path.is_file() else None
            if digest in digests and digest not in elsewhere and digest not in scored_digests:
                elsewhere[digest] = path
    unseen = [i for i in range(len(images)) if i not in trained_on]
    training = [images[i] for i in sorted(trained_on)] + list(elsewhere.values())
    try:
        copies = copies_of([images[i] for i in unseen], training)
    except OSError as error:
        raise ConversionError(str(error)) from None
    pairs = [(unseen[i], training[j]) for i, j in copies]  # (scored index, training image)
    overlapping = {i for i, _ in pairs}
    left_out = trained_on | overlapping
    return {
        "kept": [i for i in range(len(images)) if i not in left_out],
        "trained_on": sorted(trained_on),
        "overlapping": sorted(overlapping),
        "pairs": [(Path(images[i]).name, Path(training).name) for i, training in pairs],
        "incomplete": [str(m) for m, record in zip(weights, records) if not record.complete],
    }
