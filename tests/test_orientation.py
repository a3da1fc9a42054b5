"""EXIF orientation: sizes and boxes in the frame OpenCV (and so ultralytics) decodes to.

A JPEG tagged "turned 90 degrees" decodes on its side; before this, conversion normalised
its boxes by the stored size, so a LabelImg box (drawn on the stored pixels) landed on the
wrong pixels in training, silently.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from converters.convert import convert
from converters.errors import ConversionError
from converters.imagesize import ImageHeader, image_size, read_header
from converters.model import Box
from converters.orientation import TURNS, orientation_from_tiff, turn_box
from converters.pixels import read_image
from converters.voc import write_voc_dataset
from detection.review import read_source
from tests.helpers import voc_xml, write_xml

STORED = (64, 32)  # width, height as stored: not square, so turns 5 to 8 swap it
MARK = (8, 8, 24, 16)  # a bright block on the stored pixels, on JPEG's 8x8 grid


def _stored_pixels() -> np.ndarray:
    pixels = np.full((STORED[1], STORED[0]), 30, np.uint8)
    x0, y0, x1, y1 = MARK
    pixels[y0:y1, x0:x1] = 230
    return pixels


def _tagged(fmt: str, orientation: int) -> bytes:
    image = Image.fromarray(_stored_pixels())
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    options = {"quality": 100} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    image.save(buffer, fmt, exif=exif.tobytes(), **options)
    return buffer.getvalue()


def _bright_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    grey = pixels if pixels.ndim == 2 else pixels[..., 0]
    ys, xs = np.nonzero(grey > 128)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("orientation", sorted(TURNS))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_header_and_turned_box_match_what_opencv_decodes(
    tmp_path: Path, fmt: str, orientation: int
) -> None:
    path = tmp_path / f"tagged.{fmt.lower()}"
    path.write_bytes(_tagged(fmt, orientation))
    decoded = read_image(path)  # cv2.imdecode, as ultralytics reads images

    header = read_header(path)
    assert header == ImageHeader(*STORED, orientation)
    assert image_size(path) == (decoded.shape[1], decoded.shape[0])
    moved = turn_box(Box("mark", *MARK), *STORED, orientation)
    assert moved.coords == _bright_box(decoded)


@pytest.mark.parametrize("value", [0, 9, 255])
def test_an_orientation_outside_1_to_8_is_ignored_as_opencv_ignores_it(
    tmp_path: Path, value: int
) -> None:
    path = tmp_path / "odd.png"
    path.write_bytes(_tagged("PNG", value))
    assert read_header(path).orientation == 1
    assert _bright_box(read_image(path)) == MARK


def _tiff_block(order: str, orientation: int) -> bytes:
    mark = b"II" if order == "<" else b"MM"
    entry = struct.pack(order + "HHIH2x", 0x0112, 3, 1, orientation)  # SHORT, one value
    return mark + struct.pack(order + "HI", 42, 8) + struct.pack(order + "H", 1) + entry + b"\0" * 4


def _with_app1(jpeg: bytes, *payloads: bytes) -> bytes:
    segments = b"".join(b"\xff\xe1" + struct.pack(">H", len(p) + 2) + p for p in payloads)
    return jpeg[:2] + segments + jpeg[2:]


@pytest.mark.parametrize(
    ("payloads", "expected"),
    [
        ([b"Exif\0\0" + _tiff_block("<", 6)], 6),  # Intel byte order
        ([b"Exif\0\0" + _tiff_block(">", 6)], 6),  # Motorola byte order (many cameras)
        ([b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>", b"Exif\0\0" + _tiff_block(">", 8)], 8),
        ([b"Exif\0\0" + _tiff_block("<", 6)[:12]], 1),  # directory cut short
        ([b"Exif\0\0" + b"XX" + _tiff_block("<", 6)[2:]], 1),  # not a TIFF block
    ],
    ids=["little-endian", "big-endian", "after an XMP segment", "cut short", "no TIFF"],
)
def test_exif_read_from_a_jpeg_as_opencv_reads_it(
    tmp_path: Path, payloads: list[bytes], expected: int
) -> None:
    plain = io.BytesIO()
    Image.fromarray(_stored_pixels()).save(plain, "JPEG", quality=100)
    path = tmp_path / "camera.jpg"
    path.write_bytes(_with_app1(plain.getvalue(), *payloads))
    assert read_header(path).orientation == expected
    decoded = read_image(path)
    assert image_size(path) == (decoded.shape[1], decoded.shape[0])
    assert _bright_box(decoded) == turn_box(Box("mark", *MARK), *STORED, expected).coords


def test_orientation_of_a_bare_tiff_block() -> None:
    assert orientation_from_tiff(_tiff_block("<", 3)) == 3
    assert orientation_from_tiff(b"") == 1


def _voc_box(box: tuple[int, int, int, int]) -> tuple[str, int, int, int, int]:
    # VOC: 1-based inclusive pixel indices.
    return ("crazing", box[0] + 1, box[1] + 1, box[2], box[3])


def _source(
    root: Path,
    orientation: int,
    box: tuple[float, float, float, float],
    size: tuple[int, int] | None,
) -> Path:
    """A NEU-DET-layout folder of one tagged JPEG and its VOC file with one box."""
    (root / "images").mkdir(parents=True)
    (root / "images" / "crazing_1.jpg").write_bytes(_tagged("JPEG", orientation))
    write_xml(
        root / "annotations" / "crazing_1.xml", voc_xml("crazing_1.jpg", [_voc_box(box)], size=size)
    )
    return root


SHOWN_6 = (STORED[1], STORED[0])
MARK_SHOWN_6 = turn_box(Box("mark", *MARK), *STORED, 6).coords


@pytest.mark.parametrize(
    ("orientation", "size", "drawn", "problems"),
    [
        # LabelImg: the stored size, boxes on the stored pixels -> turned with the image.
        (6, STORED, MARK, ["exif_turned_boxes"]),
        # CVAT, Label Studio: the size as shown, boxes on the image as shown -> kept.
        (6, SHOWN_6, MARK_SHOWN_6, ["exif_orientation"]),
        # No <size>: nothing says which, so the frame the models see.
        (6, None, MARK_SHOWN_6, ["exif_orientation", "missing_size"]),
        # A half turn keeps the size: nothing says which either.
        (3, STORED, turn_box(Box("m", *MARK), *STORED, 3).coords, ["exif_orientation"]),
        (1, STORED, MARK, []),
    ],
    ids=["labelimg", "as shown", "no size", "half turn", "untagged"],
)
def test_conversion_puts_every_box_on_the_pixels_training_sees(
    tmp_path: Path,
    orientation: int,
    size: tuple[int, int] | None,
    drawn: tuple[float, float, float, float],
    problems: list[str],
) -> None:
    source = _source(tmp_path / "src", orientation, drawn, size)
    result = convert(source, tmp_path / "out", ratios=(1.0, 0.0))

    report = result.source.report
    assert [p.problem for p in report.problems] == problems
    assert report.boxes_dropped == 0
    # The YOLO label, read against the pixels as ultralytics decodes them.
    decoded = read_image(tmp_path / "out" / "images" / "train" / "crazing_1.jpg")
    height, width = decoded.shape[:2]
    label = (tmp_path / "out" / "labels" / "train" / "crazing_1.txt").read_text().split()
    cx, cy, w, h = (float(v) for v in label[1:])
    box = (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height
    assert box == pytest.approx(_bright_box(decoded), abs=1e-3)
    coco = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (width, height)


def test_a_turned_box_past_the_shown_width_is_not_clipped(tmp_path: Path) -> None:
    # Drawn on the stored 64x32 pixels out to x = 60, beyond the shown width of 32.
    source = _source(tmp_path / "src", 8, (40, 4, 60, 28), STORED)
    result = convert(source, tmp_path / "out", ratios=(1.0, 0.0))
    image = result.source.dataset.images[0]
    assert (image.width, image.height) == SHOWN_6
    assert image.boxes[0].coords == turn_box(Box("m", 40, 4, 60, 28), *STORED, 8).coords
    assert [p.problem for p in result.source.report.problems] == ["exif_turned_boxes"]


def test_a_corrected_export_of_turned_boxes_converts_back_unchanged(tmp_path: Path) -> None:
    source = _source(tmp_path / "src", 6, MARK, STORED)
    first = convert(source, tmp_path / "out", ratios=(1.0, 0.0)).source.dataset
    write_voc_dataset(first, tmp_path / "voc")  # what `defects review` exports
    again = convert(tmp_path / "voc", tmp_path / "out2", ratios=(1.0, 0.0))
    image, before = again.source.dataset.images[0], first.images[0]
    assert (image.width, image.height) == (before.width, before.height) == SHOWN_6
    assert [b.coords for b in image.boxes] == [b.coords for b in before.boxes]
    assert [p.problem for p in again.source.report.problems] == ["exif_orientation"]


def test_a_plain_folder_for_review_has_its_images_as_shown(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "side.jpg").write_bytes(_tagged("JPEG", 6))
    (image,) = read_source(tmp_path / "photos").images
    assert (image.width, image.height) == SHOWN_6
    assert cv2.imread(str(image.path)).shape[:2] == (SHOWN_6[1], SHOWN_6[0])


def test_an_export_never_writes_over_a_dataset_with_images_of_its_own(tmp_path: Path) -> None:
    # Exporting corrections over the dataset they came from would have replaced each
    # image by a link to itself, and its annotation file by the export's.
    source = _source(tmp_path / "src", 6, MARK, STORED)
    dataset = convert(source, tmp_path / "out", ratios=(1.0, 0.0)).source.dataset
    (tmp_path / "voc" / "JPEGImages").mkdir(parents=True)
    (tmp_path / "voc" / "JPEGImages" / "crazing_1.jpg").write_bytes(b"the original")
    with pytest.raises(ConversionError, match="files of its own"):
        write_voc_dataset(dataset, tmp_path / "voc")
    assert (tmp_path / "voc" / "JPEGImages" / "crazing_1.jpg").read_bytes() == b"the original"
    assert not (tmp_path / "voc" / "Annotations").exists()
    write_voc_dataset(dataset, tmp_path / "fresh")
    write_voc_dataset(dataset, tmp_path / "fresh")  # its own links: written again
    assert (tmp_path / "fresh" / "JPEGImages" / "crazing_1.jpg").resolve() == dataset.images[0].path
