"""``defects convert``: a source dataset in, a training-ready YOLO + COCO folder out.

OUT/data.yaml, images/<split>/ (symlinks or copies), labels/<split>/*.txt,
annotations/instances_<split>.json, manifest.json, report.json. The folder is built
beside OUT and renamed into place, so an interrupted run leaves a previous OUT intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from converters.coco import from_coco, to_coco
from converters.definitions import DatasetDefinition
from converters.errors import ConversionError
from converters.files import read_json
from converters.folders import check_output_folder, write_folder
from converters.model import Dataset, ImageAnnotation
from converters.overlaps import read_pictures, shifted_copies
from converters.source import SourceDataset, read_dataset
from converters.split import assign_splits, in_order_of, keep_together, merge_groups
from converters.yolo import to_yolo_lines

FORMAT_VERSION = 1
MARKER = "manifest.json"  # what makes a folder a converter output


@dataclass
class ConvertResult:
    """What a conversion produced: the output folder, its manifest and the source read."""

    out: Path
    manifest: dict
    source: SourceDataset

    @property
    def failed_strict(self) -> bool:
        return bool(self.source.report.errors)


def _dump(path: Path, data: object, indent: int | None = 2) -> None:
    separators = (",", ": ") if indent else (",", ":")
    path.write_text(
        json.dumps(data, indent=indent, separators=separators, ensure_ascii=False) + "\n"
    )


def split_counts(dataset: Dataset) -> dict[str, dict]:
    """Images, boxes and boxes per class for every split (classes in dataset order)."""
    counts = {}
    for split in dataset.splits:
        images = dataset.split(split)
        per_class = Counter(box.label for image in images for box in image.boxes)
        counts[split] = {
            "images": len(images),
            "background_images": sum(1 for image in images if not image.boxes),
            "boxes": sum(per_class.values()),
            "boxes_per_class": {c: per_class.get(c, 0) for c in dataset.classes},
        }
    return counts


def classes_without_boxes(counts: dict[str, dict]) -> dict:
    """The classes a split leaves without a box, from :func:`split_counts`: those with no
    box in any split (``nowhere``), and for each split that holds images, the other
    classes it holds no box of (``by_split``: only splits that lack some). A class with
    no training box cannot be learnt; one with no val box cannot be scored (its AP is
    left out of mAP). The greedy stratified split (:func:`converters.split.assign_splits`)
    places a class of a few images by its share: 2 images at 0.8/0.2 may both go to train.
    """
    per_split = {split: c["boxes_per_class"] for split, c in counts.items() if c["images"]}
    classes = next(iter(counts.values()))["boxes_per_class"] if counts else {}
    nowhere = [c for c in classes if not any(boxes[c] for boxes in per_split.values())]
    by_split = {
        split: missing
        for split, boxes in per_split.items()
        if (missing := [c for c in classes if not boxes[c] and c not in nowhere])
    }
    return {"nowhere": nowhere, "by_split": by_split}


def classes_without_boxes_said(counts: dict[str, dict]) -> list[tuple[str | None, str]]:
    """:func:`classes_without_boxes` in sentences, each with the split it is about (None
    for the classes the data never shows)."""
    missing = classes_without_boxes(counts)
    said: list[tuple[str | None, str]] = []
    if nowhere := missing["nowhere"]:
        kept = "it as a class" if len(nowhere) == 1 else "them as classes"
        said.append(
            (
                None,
                f"no boxes of {', '.join(nowhere)} in the data: the model keeps {kept} "
                "with nothing to learn from",
            )
        )
    for split, classes in missing["by_split"].items():
        them, their = ("it", "its") if len(classes) == 1 else ("them", "their")
        why = (
            f"the model cannot learn {them}"
            if split == "train"
            else f"evaluate cannot score {them} there ({their} AP is left out of mAP)"
        )
        said.append((split, f"{split} holds no boxes of {', '.join(classes)}: {why}"))
    return said


def _write_tree(
    tmp: Path,
    out: Path,
    source: SourceDataset,
    ratios: tuple[float, ...],
    seed: int,
    copy_images: bool,
    overlapping: list[list[ImageAnnotation]] | None,
) -> dict:
    dataset = source.dataset
    splits = list(dict.fromkeys(["train", "val", *dataset.splits]))
    if len(ratios) == 3 and "test" not in splits:
        splits.append("test")
    image_ids = {image.name: i + 1 for i, image in enumerate(dataset.images)}
    (tmp / "annotations").mkdir(parents=True)
    for split in splits:
        image_dir, label_dir = tmp / "images" / split, tmp / "labels" / split
        image_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)
        images = dataset.split(split)
        for image in images:
            target = image_dir / image.name
            if copy_images:
                shutil.copyfile(image.path, target)
            else:
                # The file itself, not a link on the way to it: a review's export names
                # images through an earlier output, which this one may replace.
                target.symlink_to(Path(image.path).resolve())
            (label_dir / f"{Path(image.name).stem}.txt").write_text(
                to_yolo_lines(image, dataset.classes)
            )
        _dump(
            tmp / "annotations" / f"instances_{split}.json",
            to_coco(images, dataset.classes, image_ids),
            indent=None,
        )

    # No `path`: ultralytics then reads the images beside data.yaml, wherever the output
    # is moved or copied. An absolute one sent a copy's training to the original's images
    # and labels, while evaluate scored the copy's ground truth.
    data_yaml = {split: f"images/{split}" for split in splits}
    data_yaml["names"] = dict(enumerate(dataset.classes))
    definition = source.definition
    if definition.channels != 3:  # grey images read as one channel (its definition)
        data_yaml["channels"] = definition.channels
    (tmp / "data.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False))

    manifest = {
        "format_version": FORMAT_VERSION,
        "source": str(source.layout.root),
        "format": source.layout.format or definition.format,
        "layout": source.layout.layout,
        "dataset": definition.name,
        "classes": dataset.classes,
        "display_names": {c: definition.display_names.get(c, c) for c in dataset.classes},
        "seed": seed,
        "split_ratios": list(ratios),
        "images_linked": not copy_images,
        "counts": split_counts(dataset),
        "split_of_image": {image.name: image.split for image in dataset.images},
        # Checked with --keep-overlaps only: the groups of overlapping crops it kept in
        # one split (a source's own split may still part them: report.json says so).
        "overlapping_images": None
        if overlapping is None
        else [[image.name for image in group] for group in overlapping],
        # What each split's files were as written: an edit since (by hand or by a
        # labelling tool) is told apart from the conversion's own (edited_since_conversion).
        "written_sha256": {split: _split_digests(tmp, split) for split in splits},
    }
    _dump(tmp / MARKER, manifest)
    _dump(tmp / "report.json", source.report.to_dict(boxes_written=dataset.box_count))
    return manifest


def write_output(
    source: SourceDataset,
    out: Path,
    ratios: tuple[float, ...],
    seed: int,
    copy_images: bool = False,
    overlapping: list[list[ImageAnnotation]] | None = None,
) -> dict:
    """Writes the output folder beside ``out``, then swaps it in; returns the manifest.

    Raises:
        ConversionError: ``out`` is not new, empty or an earlier output, or holds the
            source (:func:`converters.folders.check_output_folder`).
    """
    out = Path(out).absolute()
    return write_folder(
        out,
        lambda tmp: _write_tree(tmp, out, source, ratios, seed, copy_images, overlapping),
        MARKER,
        [source.layout.root],
    )


def convert(
    src: Path,
    out: Path,
    format: str | None = None,
    definition: DatasetDefinition | None = None,
    ratios: tuple[float, ...] = (0.8, 0.2),
    seed: int = 0,
    resplit: bool = False,
    copy_images: bool = False,
    unlabeled_as_background: bool = False,
    progress: Callable[[int, int], None] | None = None,
    keep_overlaps: bool = False,
) -> ConvertResult:
    """Reads, validates, splits and writes a dataset.

    Args:
        src: The source dataset folder.
        out: The output folder (replaced whole if it exists).
        format: ``neu-det``, ``gc10-det``, ``voc`` or ``None`` to detect.
        definition: Class list to use instead of the format's own.
        ratios: Train, val[, test] ratios.
        seed: Split seed.
        resplit: Ignore a split given by the source (Kaggle folders, ImageSets).
        copy_images: Copy images instead of symlinking them.
        unlabeled_as_background: Keep images with no annotation file, with no boxes.
        progress: Called with (done, total) while annotation files are read.
        keep_overlaps: Keep overlapping crops of one picture in one split
            (:mod:`converters.overlaps`), as identical files always
            are; decodes every image (25 to 28 s for NEU-DET's 1,800 on 2 cores).

    Returns:
        The output folder, its manifest and what was read.

    Raises:
        ConversionError: ``keep_overlaps`` and an image whose pixels cannot be read.
    """
    check_output_folder(out, MARKER, [src])  # before the reading
    source = read_dataset(src, format, definition, unlabeled_as_background, progress)
    if resplit:
        for image in source.dataset.images:
            image.split = None
    given = {id(image) for image in source.dataset.images if image.split is not None}
    if keep_overlaps:
        overlapping = _split_keeping_overlaps(source, ratios, seed)
    else:
        overlapping = None
        assign_splits(source.dataset.images, ratios, seed)
    for group, problem, what in (
        (source.identical, "identical_images_across_splits", "the same bytes"),
        (overlapping or [], "overlapping_images_across_splits", "an overlapping crop"),
    ):
        for first, *others in keep_together(group, given):
            for other in (o for o in others if o.split != first.split):
                source.report.add(
                    other.source or other.name,
                    problem,
                    f"the source's split puts its image in {other.split} and {what} "
                    f"({first.name}) in {first.split}",
                    "kept as the source splits them: a model trained on one is scored on "
                    "the other as unseen (--resplit keeps them together)",
                )
    manifest = write_output(source, out, ratios, seed, copy_images, overlapping)
    return ConvertResult(Path(out).absolute(), manifest, source)


def _split_keeping_overlaps(
    source: SourceDataset, ratios: tuple[float, ...], seed: int
) -> list[list[ImageAnnotation]]:
    """Splits the images that have no split yet, each group of overlapping crops (and of
    identical files) as one unit, and returns the groups of overlapping crops.

    The pairs come first from the whole dataset (each image with its nearest); then
    the split is checked as ``review --near-duplicates`` checks it (the nearest in the
    other splits) and made again with any pair found there, until none is new.

    Raises:
        ConversionError: An image whose pixels cannot be read, naming it.
    """
    images = source.dataset.images
    try:
        pictures = read_pictures([image.path for image in images])
    except OSError as error:
        raise ConversionError(
            f"{error.filename}: {error.strerror or error}; --keep-overlaps compares every "
            "image's pixels (leave it out, or remove the image)"
        ) from None
    found = shifted_copies(pictures)
    pairs = {(pair["a"], pair["b"]) for pair in found}
    todo = [image for image in images if image.split is None]
    while True:
        overlapping = merge_groups([[images[a], images[b]] for a, b in sorted(pairs)])
        for image in todo:
            image.split = None
        assign_splits(images, ratios, seed, [*source.identical, *overlapping])
        across = shifted_copies(pictures, [image.split for image in images])
        new = {(pair["a"], pair["b"]) for pair in across} - pairs
        if not new:
            break
        pairs |= new
    return in_order_of(overlapping, images)


def read_manifest(out: Path) -> dict:
    """A converter output's manifest, checked for what its readers take from it: the
    class list and each split's counts.

    Raises:
        ConversionError: Unreadable, not JSON, or without them (a file damaged or written
            over since the conversion); names the file and the fix.
    """
    path = Path(out) / MARKER
    fix = "the file was damaged or written over since the conversion: convert the dataset again"
    try:
        manifest = read_json(path, "converter manifest")
    except ConversionError as error:
        raise ConversionError(f"{error}; {fix}") from None
    classes = manifest.get("classes") if isinstance(manifest, dict) else None
    counts = manifest.get("counts") if isinstance(manifest, dict) else None
    if not (
        isinstance(classes, list)
        and classes
        and all(isinstance(name, str) for name in classes)
        and isinstance(counts, dict)
        and all(isinstance(count, dict) for count in counts.values())
    ):
        raise ConversionError(
            f"{path}: no class list and split counts, as a conversion writes them; {fix}"
        )
    return manifest


def check_linked_images(out: Path) -> None:
    """Refuses a converter output whose images are links that lead nowhere: :func:`convert`
    links its source's images, so a source moved or deleted since leaves them dangling,
    and ultralytics' training then stopped on a RuntimeError traceback ("No valid images
    found") or, with some gone, trained on the rest without a word.

    Raises:
        ConversionError: Some of ``out``'s images lead nowhere; names one and the fix.
    """
    out = Path(out)
    if not (out / "manifest.json").is_file() or not (out / "images").is_dir():
        return  # not ours
    links = [path for path in (out / "images").glob("*/*") if path.is_symlink()]
    dangling = [path for path in links if not path.exists()]
    if dangling:
        raise ConversionError(
            f"{out}: {len(dangling)} of its {len(links)} linked images lead nowhere "
            f"({dangling[0].relative_to(out)} -> {os.readlink(dangling[0])}): the dataset "
            "it was converted from was moved or deleted since; convert it again from where "
            "it lies now (--copy-images keeps copies instead of links)"
        )


def _split_digests(out: Path, split: str) -> dict[str, str]:
    """SHA-256 of a converter output's split files: its COCO file (``annotations``), and
    its label files' names and contents in name order (``labels``)."""
    labels = hashlib.sha256()
    for path in sorted((out / "labels" / split).glob("*.txt")):
        data = path.read_bytes()
        labels.update(f"{path.name}\0{len(data)}\0".encode() + data)
    annotations = out / "annotations" / f"instances_{split}.json"
    return {
        "annotations": hashlib.sha256(annotations.read_bytes()).hexdigest(),
        "labels": labels.hexdigest(),
    }


def edited_since_conversion(out: Path, split: str) -> set[str] | None:
    """Which of a converter output's split files were edited since the conversion wrote
    them: ``"annotations"`` (its COCO file), ``"labels"`` (a label file changed, added or
    removed), both or neither; ``None`` for an output whose manifest predates the record
    of what was written (or a split it lacks)."""
    try:
        written = json.loads((out / MARKER).read_text())["written_sha256"][split]
        now = _split_digests(out, split)
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return {part for part, digest in now.items() if written.get(part) != digest}


# A label line keeps six decimals (converters.yolo): 5e-7 from the box it was written from.
_LABEL_TOLERANCE = 2e-6


def edited_labels(out: Path, split: str, gt: dict) -> list[Path]:
    """The label files of a converter output's split that no longer give the boxes its
    COCO file gives (``gt``, read from ``annotations/instances_SPLIT.json``): edited since
    the conversion, by hand or by a labelling tool. Ultralytics trains and validates on
    ``labels/``, and evaluation and review read ``annotations/``, so the two would score
    two ground truths. A label file gone counts too (ultralytics reads its image as
    holding no defect)."""
    dataset = from_coco(gt)
    edited = []
    for image in dataset.images:
        path = out / "labels" / split / f"{Path(image.name).stem}.txt"
        # The lines `convert` wrote for these boxes (to_yolo_lines), against the file's.
        boxes = _label_boxes(to_yolo_lines(image, dataset.classes))
        try:
            found = _label_boxes(path.read_bytes().decode("utf-8-sig"))  # as ultralytics
        except (OSError, UnicodeDecodeError, ValueError):
            edited.append(path)
            continue
        if len(found) != len(boxes) or any(
            len(a) != 5 or any(abs(u - v) > _LABEL_TOLERANCE for u, v in zip(a, b))
            for a, b in zip(sorted(found, key=_rounded), sorted(boxes, key=_rounded))
        ):
            edited.append(path)
    return edited


def _label_boxes(text: str) -> list[tuple[float, ...]]:
    """A label file's lines as numbers, blank lines left out.

    Raises:
        ValueError: A value that is no number.
    """
    return [tuple(map(float, line.split())) for line in text.splitlines() if line.strip()]


def _rounded(box: tuple[float, ...]) -> tuple[float, ...]:
    """A label box's sort key: equal boxes within a label's rounding sort alike."""
    return tuple(round(value, 4) for value in box)
