"""YOLO labels read as ground truth (any YOLO dataset's, for ``defects evaluate``), and YOLO
results files read as a detector's detections."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from converters.errors import AnnotationError
from converters.yolo import (
    corrupt_labels,
    from_yolo,
    from_yolo_lines,
    from_yolo_results,
    label_path,
    to_yolo_lines,
)
from tests.helpers import write_image

CLASSES = ["crazing", "inclusion"]

FROM_YOLO_LINES = [
    ("0 0.5 0.5 0.2 0.4\n", [("crazing", 40, 30, 60, 70)], None),
    ("\n1 0.5 0.5 0.2 0.4\n\n", [("inclusion", 40, 30, 60, 70)], None),
    ("1.0 0.5 0.5 0.2 0.4\n", [("inclusion", 40, 30, 60, 70)], None),
    ("0.5 0.5 0.5 0.2 0.4\n", None, "line 1: class 0.5 is not one of 0..1"),
    # ultralytics reads a repeated line once ("duplicate labels removed").
    ("0 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.2 0.4\n", [("crazing", 40, 30, 60, 70)], None),
    # A segmentation line: its polygon's bounding box, as ultralytics' segments2boxes.
    ("1 0.1 0.2 0.3 0.1 0.2 0.6\n", [("inclusion", 10, 10, 30, 60)], None),
    # A box over the edge (its centre and size within 0..1): clipped to the image.
    ("0 0.05 0.5 0.2 0.2\n", [("crazing", 0, 40, 15, 60)], None),
    ("", [], None),
    ("0 0.5 0.5 0.2\n", None, "line 1: '0 0.5 0.5 0.2'; expected 'class cx cy w h'"),
    ("0 0.5 0.5 0.2 0.4 0.9\n", None, "expected 'class cx cy w h' or a polygon"),
    ("a 0.5 0.5 0.2 0.4\n", None, "expected 'class cx cy w h'"),
    ("0 0.5 0.5 0.2 0.4\n2 0.5 0.5 0.2 0.4\n", None, "line 2: class 2 is not one of 0..1"),
    ("-1 0.5 0.5 0.2 0.4\n", None, "class -1 is not one of"),
    ("0 50 50 20 40\n", None, "'0 50 50 20 40' is not normalised to 0..1"),
    ("0 0.5 0.5 -0.2 0.4\n", None, "not normalised"),
    # ultralytics' verify_image_label lets cx cy w h stray 1% (a tool's rounding at
    # an edge): read and clipped, not refused; past it, or a negative size, refused.
    ("0 1.004 0.5 0.2 0.4\n", [("crazing", 90.4, 30, 100, 70)], None),
    ("0 0.5 0.5 1.01 0.4\n", [("crazing", 0, 30, 100, 70)], None),
    ("0 -0.01 0.5 0.2 0.4\n", [("crazing", 0, 30, 9, 70)], None),
    ("0 1.011 0.5 0.2 0.4\n", None, "'0 1.011 0.5 0.2 0.4' is not normalised to 0..1"),
    ("0 -0.011 0.5 0.2 0.4\n", None, "not normalised"),
    ("0 0.5 0.5 -0.005 0.4\n", None, "not normalised"),
    ("0 nan 0.5 0.2 0.4\n", None, "not normalised"),
    # ... a polygon's check is on its bounding box, as ultralytics makes it first.
    ("1 -0.3 0.1 0.5 0.1 0.5 0.6\n", [("inclusion", 0, 10, 50, 60)], None),
    ("1 -0.3 0.1 0.2 0.1 0.2 0.6\n", None, "not normalised"),
]


@pytest.mark.parametrize(("text", "expected", "error"), FROM_YOLO_LINES)
def test_from_yolo_lines(text: str, expected: list[tuple] | None, error: str | None) -> None:
    if error:
        with pytest.raises(AnnotationError) as raised:
            from_yolo_lines(text, 100, 100, CLASSES, "labels/a.txt")
        assert str(raised.value).startswith("labels/a.txt: ") and error in str(raised.value)
    else:
        boxes = from_yolo_lines(text, 100, 100, CLASSES, "labels/a.txt")
        assert [(b.label, *b.coords) for b in boxes] == [
            pytest.approx((label, *coords)) for label, *coords in expected
        ]


def test_a_label_read_is_one_ultralytics_keeps(tmp_path: Path) -> None:
    """Every line of the table read where ultralytics' own check of a label file
    (``verify_image_label``, which training and val run) keeps it, and refused where it
    drops the image's labels: the same ground truth either way."""
    from ultralytics.data.utils import verify_image_label

    image = write_image(tmp_path / "a.jpg", 100, 100)
    for text, _, _ in FROM_YOLO_LINES:
        (tmp_path / "a.txt").write_text(text)
        labels = verify_image_label(
            (str(image), str(tmp_path / "a.txt"), "", False, len(CLASSES), 0, 0, False)
        )[1]
        try:
            read = len(from_yolo_lines(text, 100, 100, CLASSES, "a.txt")) > 0
        except AnnotationError:
            read = False
        assert read == (labels is not None and len(labels) > 0), text


@pytest.mark.parametrize(
    ("content", "boxes", "error"),
    [
        (b"\xef\xbb\xbf0 0.5 0.5 0.2 0.4\n", 1, None),  # a byte-order mark: a Windows save
        (b"0 0.5 0.5 0.2 0.4\r\n1 0.5 0.5 0.2 0.4\r\n", 2, None),
        (b"", 0, None),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", None, "malformed_label: line 1: "),
        (b"not [valid {{ at all\n", None, "malformed_label: line 1: "),
        (b"0 0.5 0.5 0.2 0.4\n2 0.5 0.5 0.2 0.4\n", None, "unknown_class: line 2: class 2"),
        (None, 0, None),  # a folder where the label file would be: no defects, to both
    ],
)
def test_label_files_are_read_and_refused_as_ultralytics_does(
    tmp_path: Path, content: bytes | None, boxes: int | None, error: str | None
) -> None:
    from ultralytics.data.utils import verify_image_label

    image = write_image(tmp_path / "images" / "a.jpg", 100, 100)
    labels = tmp_path / "labels" / "a.txt"
    if content is None:
        labels.mkdir(parents=True)
    else:
        labels.parent.mkdir()
        labels.write_bytes(content)
    checked = verify_image_label((str(image), str(labels), "", False, 2, 0, 0, False))
    counted: Counter = Counter()
    found = corrupt_labels([image], CLASSES, counted)
    assert bool(found) == bool(checked[8]) == (error is not None)  # [8]: corrupt
    if error:
        assert str(found[0]).startswith(f"{labels}: {error}")
        assert not counted  # a file ultralytics passes over counts no box
    else:
        read = from_yolo([image], CLASSES, tmp_path, "val").images[0].boxes
        assert len(read) == boxes
        assert len(checked[1]) == boxes
        assert counted == Counter(box.label for box in read)


@pytest.mark.parametrize(
    ("image", "labels"),
    [
        ("data/train/images/a.jpg", "data/train/labels/a.txt"),
        ("data/images/train/sub/a.png", "data/labels/train/sub/a.txt"),
        ("images/x/images/a.jpg", "images/x/labels/a.txt"),  # the last images/ only
        ("photos/a.jpg", "photos/a.txt"),  # no images/ folder: beside the image
    ],
)
def test_label_path_is_where_ultralytics_looks(image: str, labels: str) -> None:
    assert label_path(Path(image)) == Path(labels)


def test_from_yolo_reads_back_what_to_yolo_wrote(tmp_path: Path) -> None:
    from converters.model import Box, ImageAnnotation

    written = []
    for i, (width, height) in enumerate([(200, 100), (64, 48)]):
        path = write_image(tmp_path / "valid" / "images" / f"im{i}.jpg", width, height, seed=i)
        boxes = [Box("inclusion", 3, 5, 40, 30)] if i == 0 else []
        written.append(ImageAnnotation(path.name, path, width, height, boxes, "val"))
        if boxes:  # the second has no label file: an image without defects
            labels = label_path(path)
            labels.parent.mkdir(parents=True, exist_ok=True)
            labels.write_text(to_yolo_lines(written[-1], CLASSES))
    images = [image.path for image in written]
    read = from_yolo(images, CLASSES, tmp_path, "val")
    assert [i.name for i in read.images] == ["valid/images/im0.jpg", "valid/images/im1.jpg"]
    assert [(i.width, i.height, i.split) for i in read.images] == [
        (200, 100, "val"),
        (64, 48, "val"),
    ]
    assert [b.coords for b in read.images[0].boxes] == [pytest.approx((3, 5, 40, 30), abs=1e-3)]
    assert read.images[1].boxes == []
    (tmp_path / "valid" / "images" / "im1.jpg").write_bytes(b"")
    with pytest.raises(AnnotationError, match=r"im1\.jpg: unreadable_image"):
        from_yolo(images, CLASSES, tmp_path, "val")


@pytest.mark.parametrize(
    ("text", "expected", "error"),
    [
        # ultralytics' save_txt with save_conf: `("%g " * 6) % (cls, *xywhn, conf)`.
        ("0 0.5 0.5 0.2 0.4 0.9\n", [("crazing", 40, 30, 60, 70, 0.9)], None),
        ("1 0.5 0.5 0.2 0.4 0.00123\n\n", [("inclusion", 40, 30, 60, 70, 0.00123)], None),
        ("1.0 0.5 0.5 0.2 0.4 1\n", [("inclusion", 40, 30, 60, 70, 1)], None),
        # A tracker's id after the confidence.
        ("0 0.5 0.5 0.2 0.4 0.9 7\n", [("crazing", 40, 30, 60, 70, 0.9)], None),
        # Two detections on one spot stay two: results are scored as they are.
        (
            "0 0.5 0.5 0.2 0.4 0.9\n0 0.5 0.5 0.2 0.4 0.9\n",
            [("crazing", 40, 30, 60, 70, 0.9)] * 2,
            None,
        ),
        # A box over the edge is kept as the detector placed it, not clipped.
        ("0 0.05 0.5 0.2 0.2 0.5\n", [("crazing", -5, 40, 15, 60, 0.5)], None),
        ("0 0.5 0.5 0 0 0.5\n", [("crazing", 50, 50, 50, 50, 0.5)], None),
        ("", [], None),
        ("0 0.5 0.5 0.2 0.4\n", None, "missing_confidence: line 1: '0 0.5 0.5 0.2 0.4' has no"),
        ("0 0.5 0.5 0.2 0.4\n", None, "save_conf=True"),
        ("0 0.1 0.2 0.3 0.1 0.2 0.6 0.9\n", None, "malformed_result: line 1"),
        ("0 0.5 0.5 0.2\n", None, "expected 'class cx cy w h conf'"),
        ("0 0.5 0.5 0.2 0.4 high\n", None, "line 1: '0 0.5 0.5 0.2 0.4 high': not numbers"),
        ("0 0.5 0.5 0.2 0.4 nan\n", None, "invalid_coordinate: line 1: '0 0.5 0.5 0.2 0.4 nan'"),
        ("0 0.5 0.5 -0.2 0.4 0.9\n", None, "negative width or height"),
        ("2 0.5 0.5 0.2 0.4 0.9\n", None, "unknown_class: line 1: class 2 is not one of 0..1"),
        ("0.5 0.5 0.5 0.2 0.4 0.9\n", None, "class 0.5 is not one of"),
    ],
)
def test_from_yolo_results(text: str, expected: list[tuple] | None, error: str | None) -> None:
    if error:
        with pytest.raises(AnnotationError) as raised:
            from_yolo_results(text, 100, 100, CLASSES, "labels/a.txt")
        assert str(raised.value).startswith("labels/a.txt: ") and error in str(raised.value)
    else:
        boxes = from_yolo_results(text, 100, 100, CLASSES, "labels/a.txt")
        assert [(b.label, *b.coords, b.confidence) for b in boxes] == [
            pytest.approx((label, *values)) for label, *values in expected
        ]
