"""Pascal VOC XML: a hardened reader, box validation and a writer.

VOC ``<bndbox>`` values are 1-based inclusive pixel indices (the VOC devkit subtracts
one when it loads them), so ``xmin..xmax`` becomes ``[xmin - 1, xmax)`` in the
continuous coordinates of :mod:`converters.model`. NEU-DET proves the convention:
its minimum coordinate is 1 and 538 boxes end exactly at 200 on 200-pixel images.

Annotation files come from strangers, so the parser never resolves entities, never
loads a DTD and never touches the network; a file that declares a DTD at all is
refused (billion laughs, XXE), and ``<filename>``/``<path>`` are never used as paths.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from lxml import etree

from converters.errors import AnnotationError, Report
from converters.folders import write_folder
from converters.model import Box, Dataset, ImageAnnotation

# Real annotation files are a few kB; anything this large is not an annotation.
MAX_XML_BYTES = 16 * 1024 * 1024
VOC_EXPORT_MARKER = "voc_export.json"  # what makes a folder our VOC export
_INTEGER = re.compile(r"^[+-]?\d+$")
_OBJECT_TAG = re.compile(rb"<([\w.-]+:)?object[\s>]")  # <voc:object> too
# Checked on the raw bytes, before libxml2 sees them: no declaration, no expansion.
_DTD = re.compile(rb"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


Coords = tuple[str | None, str | None, str | None, str | None]  # xmin, ymin, xmax, ymax


@dataclass(frozen=True)
class VocObject:
    """One ``<object>`` as written in the file, before any validation.

    Attributes:
        more_coords: Any further ``<bndbox>`` of the object after the first (written by
            hand or by a tool's merge): each is a box of the object's class.
    """

    name: str | None
    coords: Coords
    difficult: bool = False
    truncated: bool = False
    has_bndbox: bool = True
    more_coords: tuple[Coords, ...] = ()

    @property
    def boxes(self) -> int:
        """How many boxes the object gives: one per ``<bndbox>``, one without any."""
        return 1 + len(self.more_coords)


@dataclass(frozen=True)
class VocAnnotation:
    """One VOC file as written, before any validation."""

    filename: str | None
    folder: str | None
    width: int | None
    height: int | None
    depth: int | None
    objects: list[VocObject] = field(default_factory=list)
    encoding: str | None = None  # a guessed one, when the file was not what it declared

    @property
    def boxes(self) -> int:
        """How many boxes the file gives (an object may hold several ``<bndbox>``)."""
        return sum(obj.boxes for obj in self.objects)


def count_objects(data: bytes) -> int:
    """Counts ``<object>`` tags in raw bytes, for files too broken to parse."""
    return len(_OBJECT_TAG.findall(data))


def _text(element: etree._Element | None, tag: str) -> str | None:
    if element is None:
        return None
    text = element.findtext(tag)
    return (text.strip() or None) if text else None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"1", "true", "yes"}


def _drop_namespaces(root: etree._Element) -> None:
    """Renames every element to its local name, in place.

    VOC has no namespace, but XML writers may put one on the document
    (``<annotation xmlns="...">``, or a prefix as in ``<voc:annotation>``), and then
    every tag, ``<object>`` and ``<bndbox>`` included, is namespaced: a lookup by the
    plain VOC name would find no box at all.
    """
    for element in root.iter(etree.Element):
        if element.tag.startswith("{"):
            element.tag = etree.QName(element).localname


def parse_voc_xml(data: bytes, file: str) -> VocAnnotation:
    """Parses one VOC annotation without trusting it.

    Args:
        data: The raw file content.
        file: The file's name, used in errors.

    Returns:
        The annotation exactly as written (strings for coordinates).

    Raises:
        AnnotationError: ``empty_xml``, ``malformed_xml`` or ``forbidden_dtd``.
    """
    if not data.strip():
        raise AnnotationError(file, "empty_xml", "the file is empty")
    if len(data) > MAX_XML_BYTES:
        raise AnnotationError(file, "malformed_xml", f"{len(data)} bytes is too large for VOC")
    if _DTD.search(data):
        raise AnnotationError(
            file, "forbidden_dtd", "a DOCTYPE/ENTITY is declared (entities are never expanded)"
        )
    encoding = None
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as error:
        try:
            root, encoding = _parse_in_another_encoding(data, error)
        except etree.XMLSyntaxError as telling:
            raise AnnotationError(file, "malformed_xml", str(telling)) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise AnnotationError(
            file, "forbidden_dtd", "a DOCTYPE/DTD is declared (entities are never expanded)"
        )
    _drop_namespaces(root)
    if root.tag != "annotation":
        raise AnnotationError(
            file, "malformed_xml", f"root element is <{root.tag}>, not <annotation>"
        )
    size = root.find("size")
    objects = []
    for element in root.findall("object"):
        # The object's own boxes: its direct children (a <part>, VOC's hand or head of
        # a person, holds a <bndbox> of its own, which is not the object's).
        bndboxes = element.findall("bndbox") or [None]
        coords = [
            tuple(_text(bndbox, tag) for tag in ("xmin", "ymin", "xmax", "ymax"))
            for bndbox in bndboxes
        ]
        objects.append(
            VocObject(
                name=_text(element, "name"),
                coords=coords[0],
                difficult=_flag(_text(element, "difficult")),
                truncated=_flag(_text(element, "truncated")),
                has_bndbox=bndboxes[0] is not None,
                more_coords=tuple(coords[1:]),
            )
        )
    return VocAnnotation(
        filename=_text(root, "filename"),
        folder=_text(root, "folder"),
        width=_int_or_none(_text(size, "width")),
        height=_int_or_none(_text(size, "height")),
        depth=_int_or_none(_text(size, "depth")),
        objects=objects,
        encoding=encoding,
    )


# Tools on Chinese Windows (where NEU-DET and GC10-DET were made) have written GBK text
# with no declaration, or under a UTF-8 one; Western ones, Windows-1252; and a file
# edited by hand may be UTF-8 under another declaration. libxml2 then stops at the first
# non-ASCII byte, usually in <path> or <folder>, and the boxes, all ASCII, would be lost
# with it. GB18030 is GBK's superset; Windows-1252 comes last, as it decodes almost any
# bytes. A file that parses in none of them is malformed for another reason.
_FALLBACK_ENCODINGS = ("utf-8", "gb18030", "cp1252")
_DECLARATION = re.compile(r"^\ufeff?\s*<\?xml[^>]*\?>")


def _parse_in_another_encoding(
    data: bytes, error: etree.XMLSyntaxError
) -> tuple[etree._Element, str]:
    """The document read in the first encoding that decodes it and parses, ignoring the
    one it declares, and that encoding.

    Raises:
        etree.XMLSyntaxError: Parsed in none: the error in the first encoding that decodes
            it (a syntax error, not the bytes libxml2 stopped at), else ``error``.
    """
    telling = None
    for encoding in _FALLBACK_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        try:  # lxml refuses a str that still declares an encoding
            return etree.fromstring(_DECLARATION.sub("", text, count=1), _parser()), encoding
        except etree.XMLSyntaxError as failed:
            telling = telling or failed
    raise telling or error


ClassResolver = Callable[[str], str | None]


def validate_objects(
    annotation: VocAnnotation,
    width: int,
    height: int,
    resolve_class: ClassResolver,
    file: str,
    report: Report,
) -> list[Box]:
    """Turns raw VOC objects into valid boxes, reporting every change and drop.

    Args:
        annotation: The parsed file.
        width: The real image width (it wins over ``<size>``).
        height: The real image height.
        resolve_class: Maps a name as written to a dataset class, or ``None`` if unknown.
        file: The annotation file, relative to the source root, for the report.
        report: Where problems are recorded.

    Returns:
        The valid boxes, in file order.
    """
    boxes: list[Box] = []
    seen: set[tuple] = set()
    for index, whole in enumerate(annotation.objects):
        if whole.more_coords:
            report.add(
                file,
                "several_bndboxes",
                f"<object> holds {whole.boxes} <bndbox>",
                "each read as a box of its class",
                index,
            )
        for obj in (
            replace(whole, coords=coords, more_coords=())
            for coords in (whole.coords, *whole.more_coords)
        ):
            boxes += _validate_box(obj, index, width, height, resolve_class, file, report, seen)
    return boxes


def _validate_box(
    obj: VocObject,
    index: int,
    width: int,
    height: int,
    resolve_class: ClassResolver,
    file: str,
    report: Report,
    seen: set[tuple],
) -> list[Box]:
    """One box of the ``index``-th object: ``[box]``, or ``[]`` where it is dropped
    (:func:`validate_objects`; ``seen`` holds the boxes kept so far, for duplicates)."""

    def drop(problem: str, detail: str) -> list[Box]:
        report.add(file, problem, detail, "dropped box", index, 1)
        return []

    if obj.name is None:
        return drop("missing_field", "<name> is missing or empty")
    if not obj.has_bndbox or None in obj.coords:
        missing = [
            t
            for t, v in zip(("xmin", "ymin", "xmax", "ymax"), obj.coords, strict=False)
            if v is None
        ]
        return drop("missing_field", f"<bndbox> lacks {', '.join(missing) or 'everything'}")
    try:
        values = [float(v) for v in obj.coords]
    except ValueError:
        return drop("invalid_coordinate", f"non-numeric coordinate in {obj.coords}")
    if not all(math.isfinite(v) for v in values):
        return drop("invalid_coordinate", f"non-finite coordinate in {obj.coords}")
    label = resolve_class(obj.name)
    if label is None:
        return drop("unknown_class", f"class {obj.name!r} is in no class list or alias table")
    if label != obj.name:
        report.add(file, "class_alias", f"{obj.name!r} read as {label!r}", "renamed", index)
    if not all(_INTEGER.match(v) for v in obj.coords):
        report.add(file, "float_coordinates", f"coordinates {obj.coords}", "accepted", index)
    # Corners given the wrong way round (labelme's labelme2voc.py wrote a rectangle
    # drawn up or to the left so until it learnt to sort them:
    # https://github.com/wkentaro/labelme/blob/main/examples/bbox_detection/labelme2voc.py)
    # still say which pixels the box covers. Only a width or height of exactly zero
    # (xmax = xmin - 1, 1-based inclusive) is empty.
    swapped = []
    for axis, lo, hi in (("x", 0, 2), ("y", 1, 3)):
        if values[hi] < values[lo] - 1:
            values[lo], values[hi] = values[hi], values[lo]
            swapped.append(axis)
    if swapped:
        report.add(
            file,
            "swapped_corners",
            f"{' and '.join(f'{a}max < {a}min' for a in swapped)} in {obj.coords}",
            "swapped",
            index,
        )
    xmin, ymin, xmax, ymax = values[0] - 1, values[1] - 1, values[2], values[3]
    if xmax <= xmin or ymax <= ymin:
        return drop(
            "degenerate_box",
            f"xmin..xmax {obj.coords[0]}..{obj.coords[2]}, "
            f"ymin..ymax {obj.coords[1]}..{obj.coords[3]} has no area",
        )
    if xmax <= 0 or ymax <= 0 or xmin >= width or ymin >= height:
        return drop(
            "box_outside_image", f"box {obj.coords} lies outside the {width}x{height} image"
        )
    clipped = (
        max(xmin, 0.0),
        max(ymin, 0.0),
        min(xmax, float(width)),
        min(ymax, float(height)),
    )
    if clipped != (xmin, ymin, xmax, ymax):
        report.add(
            file,
            "box_clipped",
            f"box {obj.coords} extends past the {width}x{height} image",
            "clipped to the image",
            index,
        )
    key = (label, *clipped)
    if key in seen:
        return drop("duplicate_box", f"same class and coordinates as an earlier box: {obj.coords}")
    seen.add(key)
    return [Box(label, *clipped, difficult=obj.difficult, truncated=obj.truncated)]


def _number(value: float) -> str:
    rounded = round(value, 2)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:g}"


def to_voc_xml(image: ImageAnnotation, folder: str = "", depth: int = 3) -> bytes:
    """Writes one image's boxes as a VOC annotation (1-based inclusive pixels).

    Args:
        image: The image and its boxes.
        folder: The ``<folder>`` value.
        depth: The ``<depth>`` value.

    Returns:
        The XML document as UTF-8 bytes.
    """
    root = etree.Element("annotation")
    etree.SubElement(root, "folder").text = folder
    etree.SubElement(root, "filename").text = image.name
    size = etree.SubElement(root, "size")
    for tag, value in (("width", image.width), ("height", image.height), ("depth", depth)):
        etree.SubElement(size, tag).text = str(value)
    etree.SubElement(root, "segmented").text = "0"
    for box in image.boxes:
        obj = etree.SubElement(root, "object")
        etree.SubElement(obj, "name").text = box.label
        etree.SubElement(obj, "pose").text = "Unspecified"
        etree.SubElement(obj, "truncated").text = str(int(box.truncated))
        etree.SubElement(obj, "difficult").text = str(int(box.difficult))
        if box.confidence is not None:
            etree.SubElement(obj, "confidence").text = f"{box.confidence:.6f}"
        bndbox = etree.SubElement(obj, "bndbox")
        values = (box.xmin + 1, box.ymin + 1, box.xmax, box.ymax)
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), values, strict=False):
            etree.SubElement(bndbox, tag).text = _number(value)
    return etree.tostring(root, pretty_print=True, encoding="utf-8")


def from_voc(
    data: bytes,
    file: str,
    width: int,
    height: int,
    resolve_class: ClassResolver,
    name: str | None = None,
) -> tuple[ImageAnnotation, Report]:
    """Reads one VOC file into an :class:`ImageAnnotation` (the path is left empty).

    Args:
        data: The XML content.
        file: Its name, for errors and the report.
        width: The real image width.
        height: The real image height.
        resolve_class: Maps names as written to dataset classes.
        name: The image name; defaults to ``<filename>``.

    Returns:
        The image annotation and the problems found.
    """
    annotation = parse_voc_xml(data, file)
    report = Report(boxes_in_input=annotation.boxes)
    boxes = validate_objects(annotation, width, height, resolve_class, file, report)
    image_name = name or annotation.filename or Path(file).with_suffix(".jpg").name
    return ImageAnnotation(image_name, Path(), width, height, boxes, source=file), report


def write_voc_dataset(dataset: Dataset, out: Path, copy_images: bool = False) -> Path:
    """Writes ``out/Annotations/*.xml`` + ``out/JPEGImages/`` (symlinks, or copies),
    ``out/ImageSets/Main/<split>.txt`` and ``out/voc_export.json``: a Pascal VOC dataset
    ``defects convert`` reads back. The folder is written whole, so an earlier export's
    files never stay behind.

    Raises:
        ConversionError: ``out`` holds files of its own (no ``voc_export.json``): a real
            dataset, the one the images come from, say, whose images an export would
            replace by links to themselves.
    """
    import json
    import shutil

    def build(folder: Path) -> None:
        annotations, images = folder / "Annotations", folder / "JPEGImages"
        annotations.mkdir(parents=True)
        images.mkdir()
        splits: dict[str, list[str]] = {}
        for image in dataset.images:
            target = images / image.name
            if copy_images:
                shutil.copyfile(image.path, target)
            else:
                target.symlink_to(Path(image.path).resolve())
            (annotations / f"{image.stem}.xml").write_bytes(to_voc_xml(image))
            if image.split:
                splits.setdefault(image.split, []).append(image.stem)
        if splits:
            main = folder / "ImageSets" / "Main"
            main.mkdir(parents=True)
            for split, stems in splits.items():
                (main / f"{split}.txt").write_text("".join(f"{s}\n" for s in sorted(stems)))
        summary = {"images": len(dataset.images), "boxes": dataset.box_count}
        (folder / VOC_EXPORT_MARKER).write_text(json.dumps(summary) + "\n")

    write_folder(out, build, VOC_EXPORT_MARKER)
    return out
