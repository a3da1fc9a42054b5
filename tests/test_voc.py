"""Every validation case of the VOC reader: XML in, boxes or a reported problem out."""

from __future__ import annotations

import re

import pytest

from converters.definitions import load_definition
from converters.errors import AnnotationError, Report
from converters.model import Box, ImageAnnotation
from converters.voc import (
    VocAnnotation,
    count_objects,
    parse_voc_xml,
    to_voc_xml,
    validate_objects,
)
from tests.helpers import voc_xml

NEU = load_definition("neu-det")
W, H = 200, 200


def read(text: str) -> tuple[list[Box], Report]:
    return read_annotation(parse_voc_xml(text.encode(), "a.xml"))


def read_annotation(annotation: VocAnnotation) -> tuple[list[Box], Report]:
    report = Report()
    return validate_objects(annotation, W, H, NEU.resolve, "a.xml", report), report


@pytest.mark.parametrize(
    ("objects", "expected_boxes", "expected_problems"),
    [
        # 1-based inclusive VOC pixels -> [xmin-1, xmax) continuous coordinates.
        ([("crazing", 1, 1, 200, 200)], [("crazing", 0, 0, 200, 200)], []),
        ([("patches", 10, 20, 30, 40)], [("patches", 9, 19, 30, 40)], []),
        # xmin == xmax is one pixel wide, not empty.
        ([("inclusion", 5, 5, 5, 9)], [("inclusion", 4, 4, 5, 9)], []),
        # Float coordinates are accepted and noted.
        (
            [("scratches", 10.5, 20.25, 30.5, 40)],
            [("scratches", 9.5, 19.25, 30.5, 40)],
            ["float_coordinates"],
        ),
        # Partly outside: clipped, reported.
        ([("patches", -5, 10, 250, 50)], [("patches", 0, 9, 200, 50)], ["box_clipped"]),
        ([("patches", 0, 0, 20, 20)], [("patches", 0, 0, 20, 20)], ["box_clipped"]),
        # Entirely outside: dropped.
        ([("patches", 210, 10, 250, 50)], [], ["box_outside_image"]),
        ([("patches", -50, 10, -10, 50)], [], ["box_outside_image"]),
        # Zero width or height (xmax = xmin - 1, 1-based inclusive): dropped.
        ([("patches", 30, 10, 29, 50)], [], ["degenerate_box"]),
        ([("patches", 10, 50, 30, 49)], [], ["degenerate_box"]),
        # Corners the wrong way round (labelme2voc.py before it sorted them): swapped.
        ([("patches", 30, 10, 20, 50)], [("patches", 19, 9, 30, 50)], ["swapped_corners"]),
        ([("patches", 10, 50, 30, 40)], [("patches", 9, 39, 30, 50)], ["swapped_corners"]),
        (
            [("patches", 150.5, 160, 30, 40.25)],
            [("patches", 29, 39.25, 150.5, 160)],
            ["float_coordinates", "swapped_corners"],
        ),
        # Swapped and then partly outside: both said.
        (
            [("patches", 250, 10, 150, 50)],
            [("patches", 149, 9, 200, 50)],
            ["swapped_corners", "box_clipped"],
        ),
        # Exact duplicate in one image: the second is dropped.
        (
            [("crazing", 1, 1, 9, 9), ("crazing", 1, 1, 9, 9)],
            [("crazing", 0, 0, 9, 9)],
            ["duplicate_box"],
        ),
        # Same coordinates, other class: both kept.
        (
            [("crazing", 1, 1, 9, 9), ("patches", 1, 1, 9, 9)],
            [("crazing", 0, 0, 9, 9), ("patches", 0, 0, 9, 9)],
            [],
        ),
        # Unknown class: dropped, never guessed.
        ([("rust", 1, 1, 9, 9)], [], ["unknown_class"]),
        # Aliases from datasets/neu-det.yaml: the folder abbreviations.
        ([("sc", 1, 1, 9, 9)], [("scratches", 0, 0, 9, 9)], ["class_alias"]),
        ([("Rolled-in Scale", 1, 1, 9, 9)], [("rolled-in_scale", 0, 0, 9, 9)], ["class_alias"]),
        # Non-numeric and non-finite coordinates.
        ([("crazing", "a", 1, 9, 9)], [], ["invalid_coordinate"]),
        ([("crazing", "nan", 1, 9, 9)], [], ["invalid_coordinate"]),
        # Missing fields.
        ([("crazing", "", 1, 9, 9)], [], ["missing_field"]),
        ([("", 1, 1, 9, 9)], [], ["missing_field"]),
    ],
)
def test_validation_table(
    objects: list[tuple[str, float, float, float, int]]
    | list[tuple[str, float, int, int, float]]
    | list[tuple[str, int, int, int, int]]
    | list[tuple[str, str, int, int, int]],
    expected_boxes: list[tuple[str, float, float, float, int]]
    | list[tuple[str, int, float, float, int]]
    | list[tuple[str, int, int, int, int]],
    expected_problems: list[str],
) -> None:
    boxes, report = read(voc_xml("a.jpg", objects, size=(W, H)))
    assert [(b.label, *b.coords) for b in boxes] == [
        (label, *map(float, coords)) for label, *coords in expected_boxes
    ]
    assert [p.problem for p in report.problems] == expected_problems
    dropped = len(objects) - len(boxes)
    assert report.boxes_dropped == dropped


def test_missing_bndbox_is_reported() -> None:
    text = "<annotation><object><name>crazing</name></object></annotation>"
    boxes, report = read(text)
    assert boxes == []
    assert [(p.problem, p.object_index, p.boxes_dropped) for p in report.problems] == [
        ("missing_field", 0, 1)
    ]


def _bndbox(xmin: float, ymin: float, xmax: float, ymax: float) -> str:
    corners = f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"
    return f"<bndbox>{corners}</bndbox>"


def _object_with_boxes(name: str, *boxes: tuple, part: tuple | None = None) -> str:
    bndboxes = "".join(_bndbox(*box) for box in boxes)
    if part:  # VOC's person layout: a <part> (a hand) holds a <bndbox> of its own
        bndboxes += f"<part><name>hand</name>{_bndbox(*part)}</part>"
    return f"<object><name>{name}</name>{bndboxes}</object>"


@pytest.mark.parametrize(
    ("objects", "expected_boxes", "expected_problems"),
    [
        # Two <bndbox> in one <object> (a hand edit, a tool's merge): two boxes of its
        # class; ultralytics' VOC.yaml conversion (obj.find("bndbox")) keeps the first.
        (
            [("crazing", (1, 1, 9, 9), (21, 21, 40, 40))],
            [("crazing", 0, 0, 9, 9), ("crazing", 20, 20, 40, 40)],
            [("several_bndboxes", 0, 0)],
        ),
        # ... each checked as any box: here the second lies outside, the third repeats
        # the first, and the next object's box still counts as object 1.
        (
            [
                ("patches", (1, 1, 9, 9), (300, 1, 310, 9), (1, 1, 9, 9)),
                ("patches", (11, 11, 19, 19)),
            ],
            [("patches", 0, 0, 9, 9), ("patches", 10, 10, 19, 19)],
            [("several_bndboxes", 0, 0), ("box_outside_image", 0, 1), ("duplicate_box", 0, 1)],
        ),
        # An object without a name loses every box it holds, each counted.
        (
            [("", (1, 1, 9, 9), (21, 21, 40, 40))],
            [],
            [("several_bndboxes", 0, 0), ("missing_field", 0, 1), ("missing_field", 0, 1)],
        ),
    ],
)
def test_an_object_with_several_bndboxes_keeps_each(
    objects: list[
        tuple[str, tuple[int, int, int, int], tuple[int, int, int, int], tuple[int, int, int, int]]
        | tuple[str, tuple[int, int, int, int]]
    ]
    | list[tuple[str, tuple[int, int, int, int], tuple[int, int, int, int]]],
    expected_boxes: list[tuple[str, int, int, int, int]],
    expected_problems: list[tuple[str, int, int]],
) -> None:
    text = "<annotation>" + "".join(_object_with_boxes(n, *b) for n, *b in objects)
    annotation = parse_voc_xml(f"{text}</annotation>".encode(), "a.xml")
    assert annotation.boxes == sum(len(boxes) for _, *boxes in objects)
    boxes, report = read_annotation(annotation)
    assert [(b.label, *b.coords) for b in boxes] == [
        (label, *map(float, coords)) for label, *coords in expected_boxes
    ]
    assert [(p.problem, p.object_index, p.boxes_dropped) for p in report.problems] == (
        expected_problems
    )


def test_a_part_s_bndbox_is_not_its_object_s() -> None:
    text = _object_with_boxes("crazing", (1, 1, 90, 90), part=(5, 5, 20, 20))
    annotation = parse_voc_xml(f"<annotation>{text}</annotation>".encode(), "a.xml")
    assert annotation.boxes == 1
    boxes, report = read_annotation(annotation)
    assert [b.coords for b in boxes] == [(0.0, 0.0, 90.0, 90.0)] and not report.problems


@pytest.mark.parametrize(
    "root",
    [
        '<annotation xmlns="http://example.com/voc">',  # a default namespace
        '<voc:annotation xmlns:voc="http://example.com/voc">',  # a prefixed one
        # .NET's XmlSerializer declares these without putting VOC's tags in them.
        '<annotation xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema">',
    ],
)
def test_a_namespaced_document_keeps_its_boxes(root: str) -> None:
    text = voc_xml("a.jpg", [("crazing", 1, 2, 30, 40), ("patches", 5, 5, 9, 9)], (W, H))
    if root.startswith("<voc:"):  # a prefix names every element, the boxes' too
        text = re.sub(r"<(/?)(\w)", r"<\1voc:\2", text)
    annotation = parse_voc_xml(re.sub(r"<(voc:)?annotation>", root, text).encode(), "a.xml")
    assert (annotation.filename, annotation.width, annotation.height) == ("a.jpg", W, H)
    assert [o.coords for o in annotation.objects] == [("1", "2", "30", "40"), ("5", "5", "9", "9")]
    boxes, report = read_annotation(annotation)
    assert [(b.label, b.coords) for b in boxes] == [
        ("crazing", (0, 1, 30, 40)), ("patches", (4, 4, 9, 9))
    ]  # fmt: skip
    assert not report.problems


@pytest.mark.parametrize(
    ("data", "objects"),
    [
        (b"<annotation><object><name>a</name></object><object>", 2),
        (b"<voc:annotation><voc:object>\n<voc:object >", 2),  # prefixed
        (b"<annotation><objects/><objectness>", 0),  # other tags that begin so
    ],
)
def test_objects_are_counted_in_a_file_too_broken_to_parse(data: bytes, objects: int) -> None:
    # The report's count of the boxes such a file loses.
    assert count_objects(data) == objects


def test_difficult_and_truncated_are_kept() -> None:
    text = voc_xml("a.jpg", [("crazing", 1, 1, 9, 9, 1)]).replace(
        "<difficult>", "<truncated>1</truncated><difficult>"
    )
    boxes, _ = read(text)
    assert boxes[0].difficult and boxes[0].truncated


def test_nested_part_boxes_are_not_objects() -> None:
    # VOC person layouts nest <part><bndbox>; only the object's own bndbox counts.
    text = voc_xml("a.jpg", [("crazing", 1, 1, 9, 9)]).replace(
        "</bndbox></object>",
        "</bndbox><part><name>x</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>3</xmax>"
        "<ymax>3</ymax></bndbox></part></object>",
    )
    boxes, _ = read(text)
    assert [b.coords for b in boxes] == [(0, 0, 9, 9)]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty_xml"),
        (b"   \n\t", "empty_xml"),
        (b"<annotation><object>", "malformed_xml"),
        (b"not xml at all", "malformed_xml"),
        (b"<root><object/></root>", "malformed_xml"),
        (
            b'<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY a "b">]><annotation/>',
            "forbidden_dtd",
        ),
    ],
)
def test_unreadable_files(data: bytes, problem: str) -> None:
    with pytest.raises(AnnotationError) as caught:
        parse_voc_xml(data, "bad.xml")
    assert caught.value.problem == problem
    assert "bad.xml" in str(caught.value)


def _with_folder(folder: str, declaration: str = "") -> str:
    return declaration + voc_xml("a.jpg", [("crazing", 1, 2, 30, 40)], folder=folder)


@pytest.mark.parametrize(
    ("data", "folder", "encoding"),
    [
        # As declared, or UTF-8 without a declaration: read as it is, nothing to say.
        (_with_folder("缺陷").encode(), "缺陷", None),
        (_with_folder("缺陷", '<?xml version="1.0" encoding="GBK"?>').encode("gbk"), "缺陷", None),
        (b"\xef\xbb\xbf" + _with_folder("缺陷").encode(), "缺陷", None),  # UTF-8's BOM
        # GBK with no declaration (LabelImg-era tools on Chinese Windows), or under UTF-8's.
        (_with_folder("缺陷").encode("gbk"), "缺陷", "gb18030"),
        (
            _with_folder("缺陷", '<?xml version="1.0" encoding="utf-8"?>').encode("gbk"),
            "缺陷",
            "gb18030",
        ),
        # UTF-8 under a declaration it does not keep.
        (_with_folder("缺陷", '<?xml version="1.0" encoding="ascii"?>').encode(), "缺陷", "utf-8"),
        # Windows-1252: "é<" is no GB18030 sequence, so the last resort.
        (_with_folder("défauté").encode("cp1252"), "défauté", "cp1252"),
    ],
    ids=["utf-8", "declared gbk", "utf-8 bom", "gbk", "gbk as utf-8", "utf-8 as ascii", "cp1252"],
)
def test_a_file_not_in_its_declared_encoding_keeps_its_boxes(
    data: bytes, folder: str, encoding: str | None
) -> None:
    annotation = parse_voc_xml(data, "a.xml")
    assert (annotation.folder, annotation.encoding) == (folder, encoding)
    assert annotation.objects[0].coords == ("1", "2", "30", "40")


def test_a_syntax_error_is_not_taken_for_an_encoding() -> None:
    with pytest.raises(AnnotationError) as caught:
        parse_voc_xml(
            "<annotation><folder>缺陷</folder><object></annotation>".encode("gbk"), "a.xml"
        )
    assert caught.value.problem == "malformed_xml"
    assert "tag mismatch" in caught.value.detail


def test_size_and_fields_as_written() -> None:
    annotation = parse_voc_xml(
        voc_xml("x", [("crazing", 1, 2, 3, 4)], size=(7, 8), folder="cr").encode(), "a.xml"
    )
    assert (annotation.filename, annotation.folder, annotation.width, annotation.height) == (
        "x",
        "cr",
        7,
        8,
    )
    assert annotation.objects[0].coords == ("1", "2", "3", "4")


def test_tabs_spaces_and_no_declaration_read_the_same() -> None:
    tabs = voc_xml("a.jpg", [("crazing", 1, 1, 9, 9)])
    spaces = tabs.replace("\t", "    ")
    assert read(tabs)[0] == read(spaces)[0]


@pytest.mark.parametrize(
    "box",
    [
        Box("crazing", 0, 0, 200, 200),
        Box("patches", 9, 19, 30, 40, difficult=True),
        Box("inclusion", 9.5, 19.25, 30.5, 40),
    ],
)
def test_writer_round_trip(box: Box) -> None:
    image = ImageAnnotation("a.jpg", None, W, H, [box])
    boxes, _report = read(to_voc_xml(image).decode())
    assert boxes == [box]
