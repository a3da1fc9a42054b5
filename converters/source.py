"""Reading a whole source dataset into the data model, with a full problem report."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from converters.definitions import DatasetDefinition, from_class_list, load_definition
from converters.errors import AnnotationError, ConversionError, Report
from converters.imagesize import (
    UNDECODABLE_SAMPLES,
    CorruptImageError,
    ImageHeader,
    read_header,
)
from converters.layouts import SourceLayout, detect_layout
from converters.model import Dataset, ImageAnnotation
from converters.orientation import TURNS, turn_box
from converters.split import in_order_of
from converters.voc import VocAnnotation, count_objects, parse_voc_xml, validate_objects

KNOWN_DEFINITIONS = ("neu-det", "gc10-det")


@dataclass
class SourceDataset:
    """A dataset read from disk, with where it came from and what was wrong with it."""

    dataset: Dataset
    report: Report
    layout: SourceLayout
    definition: DatasetDefinition
    identical: list[list[ImageAnnotation]] = field(default_factory=list)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _safe_basename(value: str | None) -> str | None:
    """The bare file name in ``<filename>``, or ``None`` when it tries to be a path."""
    if not value:
        return None
    if "/" in value or "\\" in value or value in {".", ".."} or "\x00" in value:
        return None
    return value


def image_digest(path: Path) -> str:
    """An image file's identity: the first 16 hex digits of its bytes' SHA-256 (what
    model cards record of their training images, :mod:`detection.splits`)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]


def _folder_class(folder: str | None, definition: DatasetDefinition) -> str | None:
    if not folder:
        return None
    return definition.folders.get(folder) or definition.resolve(folder)


def _labelmap_classes(labelmap: Path, names: Counter) -> list[str]:
    """The classes, in order, of CVAT's Pascal VOC export (``labelmap.txt`` beside its
    ``Annotations/``: ``label:color_rgb:parts:actions`` a line, ``#`` comments), less
    the ``background`` it lists first when no box is of it; none without the file.
    https://docs.cvat.ai/docs/manual/advanced/formats/format-voc/"""
    if not labelmap.is_file():
        return []
    lines = labelmap.read_text(encoding="utf-8", errors="replace").splitlines()
    labels = [line.split(":")[0].strip() for line in lines if not line.startswith("#")]
    return [label for label in labels if label and (label != "background" or names[label])]


def _choose_definition(
    parsed: list[tuple[Path, VocAnnotation]], format: str | None, layout: SourceLayout
) -> DatasetDefinition:
    if format in KNOWN_DEFINITIONS:
        return load_definition(format)
    names = Counter(obj.name for _, ann in parsed for obj in ann.objects if obj.name)

    def share(definition: DatasetDefinition) -> float:
        """The share of the boxes whose class ``definition`` knows."""
        return sum(n for name, n in names.items() if definition.resolve(name)) / sum(names.values())

    if format is None:  # else a format without a definition of its own: `--format voc`
        # The layout's dataset, unless most boxes are of classes it does not know: Label
        # Studio exports any VOC dataset as NEU-DET's images/ + Annotations/, and read as
        # NEU-DET every box was dropped.
        if layout.format in KNOWN_DEFINITIONS:
            definition = load_definition(layout.format)
            if not names or share(definition) > 0.5:
                return definition
        if names:
            known = {candidate: load_definition(candidate) for candidate in KNOWN_DEFINITIONS}
            best, _, definition = max((share(d), name, d) for name, d in known.items())
            if best > 0.5:
                return definition
        if listed := _labelmap_classes(layout.root / "labelmap.txt", names):
            return from_class_list(listed, name=layout.root.name)
    found = ", ".join(f"{n} ({c})" for n, c in names.most_common(20)) or "none"
    raise ConversionError(
        f"{layout.root}: generic Pascal VOC needs its class list in order: pass "
        f"--classes a,b,c or --classes-file F.yaml. Class names found: {found}"
    )


def read_dataset(
    root: Path,
    format: str | None = None,
    definition: DatasetDefinition | None = None,
    unlabeled_as_background: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SourceDataset:
    """Reads every annotation and image of a dataset, validating each box.

    Args:
        root: The dataset folder (any layout of :mod:`converters.layouts`).
        format: ``neu-det``, ``gc10-det`` or ``voc``; detected when ``None``.
        definition: The class list to use; by default the format's own.
        unlabeled_as_background: Keep images that have no annotation file as images
            with no boxes instead of leaving them out.
        progress: Called with (done, total) as annotation files are read.

    Returns:
        The dataset (images sorted by name), its report, layout and definition.

    Raises:
        ConversionError: No dataset layout found, or no usable class list.
    """
    layout = detect_layout(root)
    base = layout.root
    report = Report()
    _report_not_read(layout, report)
    parsed: list[tuple[Path, VocAnnotation]] = []
    unparsed_stems: set[str] = set()  # their images are reported with the XML, not again
    for done, xml_path in enumerate(layout.annotations, 1):
        file = _relative(xml_path, base)
        try:
            data = xml_path.read_bytes()
        except OSError as error:
            report.add(file, "malformed_xml", f"cannot read: {error.strerror}", "skipped image")
            unparsed_stems.add(xml_path.stem)
            continue
        try:
            annotation = parse_voc_xml(data, file)
        except AnnotationError as error:
            lost = count_objects(data)
            unparsed_stems.add(xml_path.stem)
            report.boxes_in_input += lost
            report.add(file, error.problem, error.detail, "skipped image", boxes_dropped=lost)
        else:
            parsed.append((xml_path, annotation))
            if annotation.encoding:
                name = annotation.encoding.upper()
                report.add(
                    file,
                    "xml_encoding",
                    f"not valid in the encoding it declares (UTF-8 if none); decodes as {name}",
                    f"read as {name}",
                )
        if progress:
            progress(done, len(layout.annotations))
    definition = definition or _choose_definition(parsed, format, layout)

    by_stem: dict[str, list[Path]] = defaultdict(list)
    by_folded_stem: dict[str, list[Path]] = defaultdict(list)
    for image_path in layout.images:
        by_stem[image_path.stem].append(image_path)
        by_folded_stem[image_path.stem.casefold()].append(image_path)
    claimed: dict[Path, str] = {}
    images: list[ImageAnnotation] = []

    for xml_path, annotation in parsed:
        file = _relative(xml_path, base)
        n_objects = annotation.boxes
        report.boxes_in_input += n_objects

        def skip(problem: str, detail: str, file: str = file, n: int = n_objects) -> None:
            report.add(file, problem, detail, "skipped image", boxes_dropped=n)

        filename = _safe_basename(annotation.filename)
        if annotation.filename and filename is None:
            report.add(
                file,
                "unsafe_path",
                f"<filename> {annotation.filename!r} is a path; "
                "ignored, the image is looked up by the XML's name",
                "ignored field",
            )
        candidates = by_stem.get(xml_path.stem, [])
        if not candidates and filename:
            candidates = by_stem.get(Path(filename).stem, [])
        wanted = filename or xml_path.stem
        if not candidates:
            # Annotated on Windows or macOS, whose file names ignore case: <filename>
            # "img_01.jpg" there opens "IMG_01.JPG", here it names no file.
            stems = [xml_path.stem] + ([Path(filename).stem] if filename else [])
            candidates = next(
                (by_folded_stem[s.casefold()] for s in stems if by_folded_stem[s.casefold()]), []
            )
            if len(candidates) == 1:  # several: ambiguous_image below names them
                report.add(
                    file,
                    "case_mismatch",
                    f"no image named {wanted!r}; {candidates[0].name!r} differs from it only "
                    "in case (one file on Windows and macOS, not on Linux)",
                    f"used {_relative(candidates[0], base)}",
                )
        if not candidates:
            skip(
                "missing_image", f"no image named {wanted!r} (or {xml_path.stem}.*) in the dataset"
            )
            continue
        if filename and Path(filename).stem != xml_path.stem:
            report.add(
                file,
                "filename_mismatch",
                f"<filename> {filename!r} differs from the XML's own name",
                "used XML's name",
            )
        image_path = candidates[0]
        identical_copies: list[Path] = []
        if len(candidates) > 1:
            # <folder> may name the class folder by number (official) or name (Kaggle).
            hint = _folder_class(annotation.folder, definition)
            by_folder = [
                p for p in candidates if hint and _folder_class(p.parent.name, definition) == hint
            ]
            try:
                digests = {image_digest(p) for p in candidates}
            except OSError:  # one not read (a link that leads nowhere): not one image
                digests = set(candidates)
            others = ", ".join(_relative(p, base) for p in candidates)
            if len(digests) == 1:
                report.add(
                    file,
                    "duplicate_image",
                    f"the same image is in several folders: {others}",
                    f"used {_relative(candidates[0], base)}",
                )
                identical_copies = candidates
            elif len(by_folder) == 1:
                image_path = by_folder[0]
                report.add(
                    file,
                    "duplicate_image",
                    f"different images share this name: {others}",
                    f"used {_relative(image_path, base)} named by <folder>",
                )
            else:
                skip(
                    "ambiguous_image",
                    f"different images share this name and <folder> "
                    f"{annotation.folder!r} does not say which: {others}",
                )
                continue
        owner = claimed.get(image_path)
        if owner is not None:
            skip(
                "duplicate_annotation",
                f"{_relative(image_path, base)} is already annotated by {owner}",
            )
            continue
        # Identical copies in other class folders are this same image, not unlabeled ones.
        for copy in identical_copies or [image_path]:
            claimed.setdefault(copy, file)
        try:
            header = read_header(image_path)
        except CorruptImageError as error:
            skip("corrupt_image", f"{_relative(image_path, base)}: {error}")
            continue
        except OSError as error:  # the reason alone: the file is named already
            skip("unreadable_image", f"{_relative(image_path, base)}: {error.strerror or error}")
            continue
        if header.bits > 16:
            skip("unreadable_image", f"{_relative(image_path, base)}: {UNDECODABLE_SAMPLES}")
            continue
        _report_bit_depth(file, header, report)
        width, height = header.size
        given = (annotation.width, annotation.height)
        # <size> as stored, not as shown: drawn by a tool that ignores EXIF (LabelImg).
        on_stored_pixels = given == header.stored_size != header.size
        if header.orientation != 1:
            _report_orientation(file, header, given, on_stored_pixels, report)
        frame = header.stored_size if on_stored_pixels else header.size
        if None in given:
            report.add(file, "missing_size", "<size> is missing", f"used the real {width}x{height}")
        elif given != frame:
            report.add(
                file,
                "size_mismatch",
                f"<size> says {given[0]}x{given[1]}, the image is {width}x{height}"
                + ("" if header.orientation == 1 else " as shown"),
                "used the real size",
            )
        boxes = validate_objects(annotation, *frame, definition.resolve, file, report)
        if on_stored_pixels:
            boxes = [turn_box(box, *frame, header.orientation) for box in boxes]
        split = layout.given_split.get(xml_path.stem) or layout.given_split.get(image_path.stem)
        images.append(
            ImageAnnotation(image_path.name, image_path, width, height, boxes, split, file)
        )

    for image_path in layout.images:
        if image_path in claimed or image_path.stem in unparsed_stems:
            continue
        file = _relative(image_path, base)
        if not unlabeled_as_background:
            report.add(
                file,
                "unlabeled_image",
                "no annotation file for this image",
                "skipped image (pass --unlabeled-as-background to keep it as defect-free)",
            )
            continue
        try:
            header = read_header(image_path)
        except CorruptImageError as error:
            report.add(file, "corrupt_image", str(error), "skipped image")
            continue
        except OSError as error:
            report.add(file, "unreadable_image", error.strerror or str(error), "skipped image")
            continue
        if header.bits > 16:
            report.add(file, "unreadable_image", UNDECODABLE_SAMPLES, "skipped image")
            continue
        _report_bit_depth(file, header, report)
        width, height = header.size  # as shown: with no boxes, nothing to turn
        report.add(file, "unlabeled_as_background", "no annotation file", "kept with no boxes")
        split = layout.given_split.get(image_path.stem)
        images.append(ImageAnnotation(image_path.name, image_path, width, height, [], split, None))

    _make_names_unique(images, base, report)
    images.sort(key=lambda image: image.name)
    identical = identical_images(images)
    for first, *copies in identical:
        for copy in copies:
            report.add(
                copy.source or _relative(copy.path, base),
                "identical_images",
                f"its image holds the same bytes as {first.name} ({_relative(first.path, base)})",
                "kept in one split with it where the split is made here (in two, a copy "
                "of a training image would be scored as unseen)",
            )
    return SourceDataset(
        Dataset(list(definition.classes), images), report, layout, definition, identical
    )


def identical_images(images: list[ImageAnnotation]) -> list[list[ImageAnnotation]]:
    """The groups of images whose files hold the same bytes, each in the images' order
    (only files of the same size are read)."""
    by_size: dict[int, list[ImageAnnotation]] = defaultdict(list)
    for image in images:
        by_size[image.path.stat().st_size].append(image)
    groups: dict[str, list[ImageAnnotation]] = defaultdict(list)
    for same_size in by_size.values():
        if len(same_size) > 1:
            for image in same_size:
                groups[image_digest(image.path)].append(image)
    return in_order_of([group for group in groups.values() if len(group) > 1], images)


def _report_not_read(layout: SourceLayout, report: Report) -> None:
    """One ``not_dataset_file`` line per folder holding hidden or macOS metadata files
    that were skipped, naming a few (a Mac's copy has one beside every file)."""
    by_folder: dict[Path, list[str]] = defaultdict(list)
    for path in layout.not_read:
        by_folder[path.parent].append(path.name + ("/" if path.is_dir() else ""))
    for folder, names in sorted(by_folder.items()):
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        report.add(
            _relative(folder, layout.root) + "/",
            "not_dataset_file",
            f"{len(names)} hidden or macOS metadata (._NAME) files or folders: {shown}",
            "not read",
        )


def _report_bit_depth(file: str, header: ImageHeader, report: Report) -> None:
    """Warns of samples wider than 8 bits: OpenCV, so ultralytics' training and our
    prediction, decodes them to 8 by keeping the top byte, and an image that fills only 12
    of 16 bits (line-scan cameras) comes out nearly black, with nothing said."""
    if header.bits > 8:
        report.add(
            file,
            "high_bit_depth",
            f"{header.bits}-bit samples: training and prediction (OpenCV) see only the top 8 "
            "bits, so an image using 12 of 16 bits (0-4095) is seen nearly black (0-15)",
            "kept as it is (scale it to 8 bits over its own range before converting)",
        )


def _report_orientation(
    file: str,
    header: ImageHeader,
    given: tuple[int | None, int | None],
    on_stored_pixels: bool,
    report: Report,
) -> None:
    """Says which frame an EXIF-tagged image's boxes were read in, and why."""
    (width, height), (stored_width, stored_height) = header.size, header.stored_size
    tag = f"EXIF orientation {header.orientation} ({TURNS[header.orientation]})"
    if on_stored_pixels:
        report.add(
            file,
            "exif_turned_boxes",
            f"{tag}: shown {width}x{height}, but <size> gives the stored "
            f"{stored_width}x{stored_height}, so the boxes were drawn on the stored pixels "
            "(a tool that ignores EXIF, such as LabelImg)",
            "turned the boxes with the image",
        )
    elif given == header.size != header.stored_size:
        report.add(
            file,
            "exif_orientation",
            f"{tag}: <size> gives the image as shown, {width}x{height}",
            "kept the boxes as drawn on the image as shown",
        )
    else:
        # Nothing in the file says which; the frame every viewer and model uses wins.
        if None in given:
            says = "<size> is missing"
        elif given in (header.size, header.stored_size):
            says = "<size> fits the image stored or shown"
        else:
            says = "<size> fits neither the image stored nor shown"
        report.add(
            file,
            "exif_orientation",
            f"{tag}: {says}, so the boxes are taken as drawn "
            "on the image as shown (CVAT, Label Studio, `defects review` exports); boxes "
            "drawn on the stored pixels (LabelImg ignores EXIF) need the tag removed "
            "(exiftool -Orientation= FILE) before converting",
            "kept the boxes as drawn on the image as shown",
        )


def _make_names_unique(images: list[ImageAnnotation], root: Path, report: Report) -> None:
    counts = Counter(image.name for image in images)
    taken = set(counts)
    for image in images:
        if counts[image.name] < 2:
            continue
        new = f"{image.path.parent.name}_{image.name}"
        while new in taken:
            new = f"_{new}"
        taken.add(new)
        report.add(
            image.source or _relative(image.path, root),
            "name_collision",
            f"another image is also named {image.name!r}",
            f"written as {new!r}",
        )
        image.name = new
