"""Finding the annotation files and images of every real dataset layout.

Layouts (names are matched case-insensitively):

* ``neu-det``: ``IMAGES/`` + ``ANNOTATIONS/`` (the authors' release), or Kaggle's
  ``train|validation/images/<class>/*.jpg`` + ``train|validation/annotations/*.xml``
  (that split is kept unless asked to re-split).
* ``gc10-det``: the official ``1``..``10`` image folders + ``lable/`` (sic) XML folder;
  Kaggle's ``images/images/<class>/*.jpg`` + ``label/label/*.xml``; or VOCdevkit.
* ``voc``: ``Annotations/`` + ``JPEGImages/`` with optional ``ImageSets/Main/*.txt``; or
  each image and its XML side by side in one folder (where LabelImg saves them), or in a
  folder per split (Roboflow's Pascal VOC export: ``train/``, ``valid/``, ``test/``; that
  split is kept unless asked to re-split).

A folder holding exactly one sub-folder and nothing recognisable is looked into, so
``NEU-DET/NEU-DET/...`` and ``VOCdevkit/VOC2007/...`` are found too.

Hidden files and folders and macOS's metadata are no part of any dataset and are never
read (:func:`is_not_data`); a layout lists the ones that would have been read otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from converters.errors import ConversionError
from converters.model import SPLITS

# What OpenCV decodes, and so ultralytics trains on (its own list adds formats OpenCV
# reads only through Pillow plugins); matched case-blind (.JPG from cameras).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
FORMATS = ("neu-det", "gc10-det", "voc")


def is_not_data(name: str) -> bool:
    """True for a file or folder name that no dataset holds: hidden ones (``.DS_Store``,
    ``.ipynb_checkpoints/``, ``.git/``) and macOS's metadata, an AppleDouble ``._NAME``
    beside every file a Mac copies to a non-Mac disk or into a zip (under ``__MACOSX/``).

    A ``._crazing_1.xml`` is 4 KB of Finder attributes, not the annotation; read as one
    it was a malformed XML that failed ``--strict`` (datasets ship with them:
    https://github.com/Project-MONAI/MONAI/issues/8305). Python's ``glob``, and so
    ultralytics' own image lists, skip hidden names the same way.
    """
    return name.startswith(".") or name == "__MACOSX"


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
        not_read: The hidden or macOS metadata files (or folders) that were skipped
            where annotations or images were looked for (:func:`is_not_data`).
    """

    root: Path
    format: str | None
    layout: str
    annotations: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    given_split: dict[str, str] = field(default_factory=dict)
    not_read: list[Path] = field(default_factory=list)


def _child(folder: Path, *names: str) -> Path | None:
    wanted = {n.lower() for n in names}
    try:
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and entry.name.lower() in wanted:
                return entry
    except OSError:
        return None
    return None


def _files(
    folder: Path,
    suffixes: frozenset[str] | set[str],
    recursive: bool = True,
    not_read: list[Path] | None = None,
    passed_over: list[Path] | None = None,
    skip: Callable[[Path], bool] | None = None,
    dangling: bool = False,
) -> list[Path]:
    """The files under ``folder`` with one of ``suffixes``, sorted; the hidden ones, and
    hidden folders when ``recursive``, are appended to ``not_read`` instead, and the
    others (another suffix, not hidden) to ``passed_over``. A sub-folder for which
    ``skip`` is true is not looked into. With ``dangling``, a link so named that leads
    nowhere (its file moved or deleted) is found too, for its reader to say so
    (:func:`converters.imagesize.read_file`): ``ls`` lists it, and a user told of no
    such image, or of nothing, would not see why.

    A linked folder is followed, but each real folder is read once: a link to a folder
    above it (``IMAGES/all -> ..``) listed its files again at every level until the
    system refused the path (ELOOP) and the command stopped.
    """
    found = []
    stack = [folder]
    seen = {os.path.realpath(folder)}
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:  # a link that loops on itself (ELOOP): no file there
                continue
            if is_dir:
                if not recursive:
                    continue
                if is_not_data(entry.name):
                    if not_read is not None:
                        not_read.append(Path(entry.path))
                elif skip is not None and skip(Path(entry.path)):
                    continue
                elif (real := os.path.realpath(entry.path)) not in seen:
                    seen.add(real)
                    stack.append(Path(entry.path))
            elif os.path.splitext(entry.name)[1].lower() in suffixes and (
                is_file or (dangling and entry.is_symlink())
            ):
                if not is_not_data(entry.name):
                    found.append(Path(entry.path))
                elif not_read is not None:
                    not_read.append(Path(entry.path))
            elif is_file and passed_over is not None and not is_not_data(entry.name):
                passed_over.append(Path(entry.path))
    return sorted(found)


def _xml(folder: Path, recursive: bool = False, not_read: list[Path] | None = None) -> list[Path]:
    return _files(folder, {".xml"}, recursive, not_read)


def _neu_original(root: Path) -> SourceLayout | None:
    images, annotations = _child(root, "images"), _child(root, "annotations")
    not_read: list[Path] = []
    xmls = _xml(annotations, not_read=not_read) if images and annotations else []
    if xmls:
        return SourceLayout(
            root,
            "neu-det",
            f"NEU-DET original ({images.name}/ + {annotations.name}/)",
            xmls,
            _files(images, IMAGE_SUFFIXES, not_read=not_read, dangling=True),
            not_read=not_read,
        )
    return None


# The folders that give a dataset's split, as Kaggle's and Roboflow's exports name them.
_SPLIT_FOLDERS = (
    ("train", "train"),
    ("validation", "val"),
    ("valid", "val"),
    ("val", "val"),
    ("test", "test"),
)


def _neu_kaggle(root: Path) -> SourceLayout | None:
    found = SourceLayout(root, "neu-det", "NEU-DET Kaggle (train|validation/images + annotations)")
    for folder_name, split in _SPLIT_FOLDERS:
        part = _child(root, folder_name)
        if part is None:
            continue
        images, annotations = _child(part, "images"), _child(part, "annotations")
        if not (images and annotations):
            continue
        xmls = _xml(annotations, not_read=found.not_read)
        found.annotations += xmls
        found.images += _files(images, IMAGE_SUFFIXES, not_read=found.not_read, dangling=True)
        found.given_split.update({x.stem: split for x in xmls})
    return found if found.annotations else None


def _gc10_official(root: Path) -> SourceLayout | None:
    labels = _child(root, "lable", "label", "labels")
    numbered = [root / str(n) for n in range(1, 11) if (root / str(n)).is_dir()]
    not_read: list[Path] = []
    xmls = _xml(labels, not_read=not_read) if labels and numbered else []
    if xmls:
        images = [
            p for d in numbered for p in _files(d, IMAGE_SUFFIXES, not_read=not_read, dangling=True)
        ]
        return SourceLayout(
            root,
            "gc10-det",
            f"GC10-DET official (folders 1..10 + {labels.name}/)",
            xmls,
            images,
            not_read=not_read,
        )
    return None


def _gc10_kaggle(root: Path) -> SourceLayout | None:
    outer_images, outer_labels = _child(root, "images"), _child(root, "label", "labels")
    if not (outer_images and outer_labels):
        return None
    images = _child(outer_images, "images") or outer_images
    labels = _child(outer_labels, "label", "labels") or outer_labels
    not_read: list[Path] = []
    xmls = _xml(labels, not_read=not_read)
    if xmls and any(p.is_dir() and not is_not_data(p.name) for p in images.iterdir()):
        return SourceLayout(
            root,
            "gc10-det",
            "GC10-DET Kaggle (images/images/<class>/ + label/label/)",
            xmls,
            _files(images, IMAGE_SUFFIXES, not_read=not_read, dangling=True),
            not_read=not_read,
        )
    return None


def _voc_devkit(root: Path) -> SourceLayout | None:
    annotations, images = _child(root, "annotations"), _child(root, "jpegimages")
    not_read: list[Path] = []
    xmls = _xml(annotations, not_read=not_read) if annotations and images else []
    if not xmls:
        return None
    found = SourceLayout(
        root,
        None,
        "Pascal VOC (Annotations/ + JPEGImages/)",
        xmls,
        _files(images, IMAGE_SUFFIXES, not_read=not_read, dangling=True),
        not_read=not_read,
    )
    main = root / "ImageSets" / "Main"
    lists = {p.stem.lower(): p for p in _files(main, {".txt"}, recursive=False, not_read=not_read)}
    named = [("train", "train"), ("val", "val"), ("test", "test")]
    if "train" not in lists and "trainval" in lists:
        named[0] = ("trainval", "train")
    read = [(list_name, split) for list_name, split in named if list_name in lists]
    for list_name, split in read:
        for line in lists[list_name].read_text(errors="replace").splitlines():
            if line.strip():
                found.given_split[line.split()[0]] = split
    if found.given_split:
        # Only the lists read: PASCAL VOC's own also has one per class and split
        # (`bolt_train.txt`, "000001 -1"), sixty of them, which say nothing of the split.
        found.layout += f" with ImageSets/Main split lists ({', '.join(n for n, _ in read)})"
    return found


def _side_by_side(folder: Path, not_read: list[Path]) -> tuple[list[Path], list[Path]]:
    """The XML files directly in ``folder`` and its images, where one XML at least has an
    image of its name beside it; else nothing (a stray XML is no dataset)."""
    xmls = _xml(folder, not_read=not_read)
    images = _files(folder, IMAGE_SUFFIXES, recursive=False, not_read=not_read, dangling=True)
    if {x.stem for x in xmls} & {i.stem for i in images}:
        return xmls, images
    return [], []


def _voc_flat(root: Path) -> SourceLayout | None:
    not_read: list[Path] = []
    xmls, images = _side_by_side(root, not_read)
    if xmls:
        layout = "Pascal VOC, flat (each image and its .xml side by side)"
        return SourceLayout(root, None, layout, xmls, images, not_read=not_read)
    found = SourceLayout(
        root, None, "Pascal VOC, a flat folder per split (train|valid|test/: image and .xml)"
    )
    for folder_name, split in _SPLIT_FOLDERS:
        part = _child(root, folder_name)
        xmls, images = _side_by_side(part, found.not_read) if part else ([], [])
        found.annotations += xmls
        found.images += images
        found.given_split.update({x.stem: split for x in xmls})
    return found if found.annotations else None


_DETECTORS = (_neu_kaggle, _gc10_official, _gc10_kaggle, _voc_devkit, _neu_original, _voc_flat)


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
        subfolders = [p for p in folder.iterdir() if p.is_dir() and not is_not_data(p.name)]
        if len(subfolders) != 1:
            break
        folder = subfolders[0]
    if (root / "data.yaml").is_file():  # a converter output, or any YOLO dataset
        raise ConversionError(
            f"{root} is a YOLO dataset (data.yaml), converted already: train, evaluate and "
            "review take it as it is; convert and validate read a dataset in VOC XML"
        )
    raise ConversionError(
        f"{root}: no known dataset layout. Expected NEU-DET (IMAGES/ + ANNOTATIONS/, or "
        "train|validation/images + annotations), GC10-DET (folders 1..10 + lable/, or "
        "images/images + label/label) or Pascal VOC (Annotations/ + JPEGImages/, or each "
        "image and its .xml side by side, in one folder or one per split)"
    )


def images_in(
    folder: Path,
    recursive: bool = False,
    passed_over: list[Path] | None = None,
    skip: Callable[[Path], bool] | None = None,
    dangling: bool = False,
) -> list[Path]:
    """The image files in ``folder`` (directly, or at any depth when ``recursive``),
    sorted; none hidden or macOS metadata (:func:`is_not_data`), none in a sub-folder
    ``skip`` is true of; with ``dangling``, links so named that lead nowhere too
    (:func:`_files`). The other files are appended to ``passed_over``."""
    return _files(
        folder, IMAGE_SUFFIXES, recursive, passed_over=passed_over, skip=skip, dangling=dangling
    )


def class_folders(root: Path) -> dict[str, list[Path]]:
    """``{class: images}`` for a folder whose sub-folders each hold one class's images,
    at any depth (``good/2026-11-03/*.jpg``), as torchvision's ``ImageFolder`` and so
    ultralytics' classifier read them: a class kept in dated folders was read as empty."""
    if not root.is_dir():
        return {}
    found = {
        d.name: images_in(d, recursive=True)
        for d in sorted(root.iterdir())
        if d.is_dir() and not is_not_data(d.name)
    }
    return {name: images for name, images in found.items() if images}


def refuse_unconverted(data: Path) -> None:
    """Refuses a dataset in VOC XML where a converted one is wanted, with the command
    that converts it; a folder of any other kind is left to its reader.

    Raises:
        ConversionError: ``data`` is a VOC dataset (:func:`detect_layout` reads it).
    """
    data = Path(data)
    try:
        layout = detect_layout(data)
    except ConversionError:
        return
    raise ConversionError(
        f"{data} is a dataset in VOC XML ({layout.layout}), not a converted one; "
        f"convert it first, then give the converted folder:\n"
        f"  defects convert {data} --out datasets/converted/{data.resolve().name.lower()}"
    )


def is_image_level_tree(root: Path) -> bool:
    """True for ``class/*.jpg`` or ``train|val/class/*.jpg`` trees: image-level labels,
    no box annotations (what ``train-cls`` reads and ``train`` refuses)."""
    root = Path(root)
    if (root / "data.yaml").exists() or (root / "manifest.json").exists():
        return False
    # Box annotations beside the images: a VOC dataset such as GC10-DET, whose images lie
    # in a folder per class (1/ to 10/) and its boxes in lable/, is not image-level data.
    if _xml(root, recursive=True):
        return False
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    if split_dirs:
        return all(len(class_folders(d)) >= 2 for d in split_dirs[:1])
    return len(class_folders(root)) >= 2
