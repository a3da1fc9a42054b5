"""Image sizes from headers, and truncated or damaged images found without decoding."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from converters.convert import convert
from converters.imagesize import (
    UNDECODABLE_SAMPLES,
    CorruptImageError,
    image_size,
    read_header,
    untrainable_images,
)
from converters.pixels import read_image
from converters.pixels import write_image as write_pixels
from detection.cli import main
from tests.helpers import voc_xml, write_image, write_xml


def _encode(
    fmt: str, mode: str = "L", size: tuple[int, int] = (64, 48), **options: object
) -> bytes:
    rng = np.random.default_rng(0)
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "P": 1, "I;16": 1}[mode]
    shape = (size[1], size[0]) if channels == 1 else (size[1], size[0], channels)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, shape, dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8))
        image = image.convert("P") if mode == "P" else image
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _with_exif_thumbnail() -> bytes:
    # An APP1 segment holding a whole JPEG (with its own end-of-image marker) before the
    # main image's scan, as cameras write their thumbnails.
    main_jpeg, thumbnail = _encode("JPEG"), _encode("JPEG", size=(16, 16))
    payload = b"Exif\x00\x00" + thumbnail
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return main_jpeg[:2] + segment + main_jpeg[2:]


GOOD = {
    "baseline grayscale JPEG": lambda: _encode("JPEG"),
    "progressive RGB JPEG": lambda: _encode("JPEG", "RGB", progressive=True),
    "JPEG with an EXIF thumbnail": _with_exif_thumbnail,
    "JPEG with padding after its end": lambda: _encode("JPEG") + b"\x00" * 100,
    "grayscale PNG": lambda: _encode("PNG"),
    "RGBA PNG": lambda: _encode("PNG", "RGBA"),
    "palette PNG": lambda: _encode("PNG", "P"),
    "16-bit PNG": lambda: _encode("PNG", "I;16"),
    "a flat 2048x1000 JPEG (compresses very well)": lambda: _flat("JPEG"),
    "a flat 2048x1000 PNG (compresses very well)": lambda: _flat("PNG"),
}


def _flat(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (2048, 1000), 128).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("name", GOOD)
def test_whole_images_read_their_size(tmp_path: Path, name: str) -> None:
    data = GOOD[name]()
    path = tmp_path / "image"
    path.write_bytes(data)
    assert image_size(path) == Image.open(io.BytesIO(data)).size


def _png_with_bad_ihdr_crc() -> bytes:
    data = bytearray(_encode("PNG"))
    data[29] ^= 0xFF
    return bytes(data)


def _png_too_small() -> bytes:
    # A whole-looking file (IEND in place) whose header claims far more pixels than its
    # bytes could ever hold.
    data = bytearray(_encode("PNG", size=(8, 8)))
    import struct
    import zlib

    data[16:24] = struct.pack(">II", 40000, 40000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


DAMAGED = [
    ("JPEG cut to a third", lambda: _encode("JPEG")[: len(_encode("JPEG")) // 3], "cut short"),
    ("JPEG less its last byte", lambda: _encode("JPEG")[:-1], "no end-of-image marker"),
    ("JPEG cut inside its headers", lambda: _encode("JPEG")[:200], "cut short"),
    ("PNG cut to a third", lambda: _encode("PNG")[: len(_encode("PNG")) // 3], "no IEND"),
    ("PNG less its last byte", lambda: _encode("PNG")[:-1], "no IEND"),
    ("PNG with a damaged header CRC", _png_with_bad_ihdr_crc, "fails its CRC"),
    ("PNG too small for its pixels", _png_too_small, "cannot hold 40000x40000"),
]


@pytest.mark.parametrize(("name", "damaged", "message"), DAMAGED)
def test_damaged_images_are_corrupt(
    tmp_path: Path, name: str, damaged: Callable[[], bytes], message: str
) -> None:
    path = tmp_path / "image"
    path.write_bytes(damaged())
    with pytest.raises(CorruptImageError, match=message):
        image_size(path)


# Reading pixels for a model (converters.pixels.read_image): the same pixels as OpenCV's
# own reader for a whole image; for a damaged one the converter's reason, where OpenCV
# would have decoded a JPEG cut short into grey rows without failing.
@pytest.mark.parametrize("name", GOOD)
def test_a_whole_image_reads_as_opencv_reads_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / "image"
    path.write_bytes(GOOD[name]())
    np.testing.assert_array_equal(read_image(path), cv2.imread(str(path)))


@pytest.mark.parametrize(("name", "damaged", "message"), DAMAGED)
def test_a_damaged_image_is_refused_before_decoding(
    tmp_path: Path, name: str, damaged: Callable[[], bytes], message: str
) -> None:
    path = tmp_path / "image"
    path.write_bytes(damaged())
    with pytest.raises(CorruptImageError, match=message):
        read_image(path)


def test_opencv_alone_decodes_a_jpeg_cut_short(tmp_path: Path) -> None:
    # Why read_image checks first: the model would see a third of the image and grey.
    path = tmp_path / "cut.jpg"
    path.write_bytes(_encode("JPEG", size=(64, 64))[:600])
    assert cv2.imread(str(path)).shape == (64, 64, 3)
    with pytest.raises(CorruptImageError, match="no end-of-image marker"):
        read_image(path)


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"", OSError, "empty file \\(0 bytes\\)"),
        (b"shift log, not an image", OSError, "not an image OpenCV can decode"),
        (b"\xff\xd8\xff\xe0 not really a jpeg", OSError, "not an image OpenCV can decode"),
        (None, FileNotFoundError, "No such file"),
        # A link whose file was moved or deleted: "No such file" of a file ls lists.
        ("link", FileNotFoundError, "a link to .*/moved.jpg, which leads nowhere"),
    ],
)
def test_what_is_no_image_is_refused_with_its_reason(
    tmp_path: Path, content: bytes | str | None, error: type[OSError], message: str
) -> None:
    path = tmp_path / "image.jpg"
    if content == "link":
        path.symlink_to(tmp_path / "moved.jpg")
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=message) as caught:
        read_image(path)
    # The file and the reason apart: the CLI prints "FILE: REASON", predict's
    # "skipped FILE: REASON" and errors.json take the reason.
    assert caught.value.filename == str(path)
    assert re.search(message, caught.value.strerror) and str(path) not in caught.value.strerror


# Reads a path as an image's pixels or header, in a process of its own with at most 4 GiB
# of memory, and prints the error's file and reason.
_READ_DEVICE = """
import resource, sys
from converters.imagesize import read_header
from converters.pixels import read_image
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
try:
    (read_image if sys.argv[2] == "pixels" else read_header)(sys.argv[1])
except OSError as error:
    print(error.filename, "|", error.strerror)
"""


@pytest.mark.parametrize("read", ["pixels", "header"])
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused_unread(device: str, read: str) -> None:
    # /dev/zero was read without end (until memory ran out), a disk would have been
    # read whole, and /dev/stdin left at a terminal waited for typing.
    argv = [sys.executable, "-c", _READ_DEVICE, device, read]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.stdout == f"{device} | a character device, not a file\n", result.stderr[-2000:]


def test_an_image_through_a_pipe_is_read_whole(tmp_path: Path) -> None:
    # `cat image.jpg | defects predict /dev/stdin`, or a shell's <(...): a pipe, read.
    image = write_image(tmp_path / "a.jpg", 64, 48)
    readable, writable = os.pipe()
    os.write(writable, image.read_bytes())  # a small image: within the pipe's buffer
    os.close(writable)
    try:
        pixels = read_image(f"/dev/fd/{readable}")
    finally:
        os.close(readable)
    assert np.array_equal(pixels, read_image(image))


def test_real_neu_det_images_are_all_whole(neu_det: Path) -> None:
    images = sorted((neu_det / "IMAGES").iterdir())
    assert len(images) == 1800
    assert {image_size(path) for path in images} == {(200, 200)}


def _dataset_with_a_truncated_image(root: Path) -> Path:
    for i in range(4):
        image = write_image(root / "IMAGES" / f"patches_{i}.jpg", seed=i)
        objects = [("patches", 1, 1, 20, 20), ("patches", 30, 30, 40, 40)]
        write_xml(root / "ANNOTATIONS" / f"patches_{i}.xml", voc_xml(image.name, objects))
    damaged = root / "IMAGES" / "patches_2.jpg"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 3])
    return root


def test_convert_skips_a_truncated_image_and_counts_its_boxes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _dataset_with_a_truncated_image(tmp_path / "src")
    result = convert(src, tmp_path / "out")
    problems = [p for p in result.source.report.problems if p.problem == "corrupt_image"]
    assert [(p.file, p.boxes_dropped, p.action) for p in problems] == [
        ("ANNOTATIONS/patches_2.xml", 2, "skipped image")
    ]
    assert "IMAGES/patches_2.jpg" in problems[0].detail
    assert sorted(i.name for i in result.source.dataset.images) == [
        "patches_0.jpg",
        "patches_1.jpg",
        "patches_3.jpg",
    ]
    summary = json.loads((tmp_path / "out" / "report.json").read_text())["summary"]
    assert (summary["boxes_in_input"], summary["boxes_dropped"], summary["boxes_written"]) == (
        8,
        2,
        6,
    )
    assert summary["accounted"]
    assert main(["convert", str(src), "--out", str(tmp_path / "out2")]) == 0
    assert main(["convert", str(src), "--out", str(tmp_path / "out3"), "--strict"]) == 1
    assert "corrupt_image" in capsys.readouterr().err


def _twelve_bits_in_sixteen(fmt: str) -> bytes:
    # A line-scan camera's 12-bit image saved in a 16-bit container: values 0-4095.
    pixels = (np.arange(48 * 64).reshape(48, 64) * 7 % 4096).astype(np.uint16)
    return cv2.imencode(f".{fmt}", pixels)[1].tobytes()


def _jpeg_of_precision(bits: int) -> bytes:
    # A 12-bit JPEG's frame header; Pillow writes only 8-bit ones, so the byte is set.
    data = bytearray(_encode("JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 4] = bits
    return bytes(data)


def _pillow(mode: str, fmt: str) -> bytes:
    pixels = np.arange(48 * 64).reshape(48, 64)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.float32 if mode == "F" else np.int32), mode).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "bits"),
    [
        (lambda: _encode("JPEG"), 8),
        (lambda: _encode("PNG", "I;16"), 16),
        (lambda: _twelve_bits_in_sixteen("png"), 16),
        (lambda: _twelve_bits_in_sixteen("tiff"), 16),
        (lambda: _jpeg_of_precision(12), 12),
        (lambda: _pillow("I", "TIFF"), 32),
        (lambda: _pillow("F", "TIFF"), 32),
    ],
    ids=["jpeg", "png 16", "png 12 in 16", "tiff 12 in 16", "jpeg 12", "tiff int32", "tiff float"],
)
def test_bits_per_sample_from_the_header(
    tmp_path: Path, make: Callable[[], bytes], bits: int
) -> None:
    path = tmp_path / "image"
    path.write_bytes(make())
    assert read_header(path).bits == bits


def test_wide_samples_are_reported_or_skipped_as_opencv_would_see_them(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i, data in enumerate(
        [_encode("JPEG"), _twelve_bits_in_sixteen("png"), _pillow("F", "TIFF")]
    ):
        suffix = (".jpg", ".png", ".tif")[i]
        (src / "IMAGES").mkdir(parents=True, exist_ok=True)
        (src / "IMAGES" / f"patches_{i}{suffix}").write_bytes(data)
        objects = [("patches", 1, 1, 20, 20)]
        write_xml(src / "ANNOTATIONS" / f"patches_{i}.xml", voc_xml(None, objects))
    # What training and prediction would see: the 12-bit image nearly black, the float
    # one nothing at all, said as convert says it (not as a file that is no image).
    assert read_image(src / "IMAGES" / "patches_1.png").max() <= 15
    with pytest.raises(OSError) as refused:
        read_image(src / "IMAGES" / "patches_2.tif")
    assert refused.value.strerror == UNDECODABLE_SAMPLES
    assert refused.value.filename == str(src / "IMAGES" / "patches_2.tif")

    report = convert(src, tmp_path / "out", ratios=(1.0, 0.0)).source.report
    found = {p.file: (p.problem, p.severity, p.boxes_dropped) for p in report.problems}
    assert found == {
        "ANNOTATIONS/patches_1.xml": ("high_bit_depth", "info", 0),
        "ANNOTATIONS/patches_2.xml": ("unreadable_image", "error", 1),
    }
    problem = next(p for p in report.problems if p.file == "ANNOTATIONS/patches_2.xml")
    assert problem.detail.endswith(UNDECODABLE_SAMPLES), problem.detail
    assert (tmp_path / "out" / "labels" / "train" / "patches_1.txt").is_file()


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (lambda: _encode("JPEG"), None),
        (lambda: _encode("PNG", "RGB"), None),
        (lambda: _encode("PNG", size=(10, 10)), None),
        # Said as they are, with ultralytics' patch of Image.open in place (it named its
        # HEIF plugin: "not a readable image: No module named 'pi_heif'").
        (lambda: b"", "not a readable image: empty file (0 bytes)"),
        (lambda: b"some notes\n", "not a readable image: of no image format Pillow knows"),
        (lambda: _encode("PNG", size=(9, 40)), "9x40 pixels, under the 10 a side"),
        # Ultralytics rewrites a JPEG cut short in its place (its lost rows grey).
        (lambda: _encode("JPEG")[:-200], "cut short"),
    ],
)
def test_images_ultralytics_would_pass_over_are_found(
    tmp_path: Path, content: Callable[[], bytes], said: str | None
) -> None:
    from ultralytics.data.utils import check_image

    path = tmp_path / "a.jpg"
    path.write_bytes(content())
    found = untrainable_images([path])
    try:
        message = check_image(str(path))[0]
        dropped = False
    except Exception:  # any, as its dataset's scan catches them
        dropped, message = True, ""
    if said is None:
        assert not found and not dropped and not message
    else:
        assert dropped or "corrupt JPEG restored" in message
        assert len(found) == 1 and found[0].startswith(f"{path}: ") and said in found[0]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("full.jpg", "No space left on device"),  # a link to /dev/full: a full disk
        ("missing/a.jpg", "No such file or directory"),
        ("a.xyz", "OpenCV cannot write an image as .xyz"),
        ("a", "OpenCV cannot write an image as a name without a suffix"),
    ],
)
def test_an_image_not_written_is_an_error_naming_it(
    tmp_path: Path, target: str, reason: str
) -> None:
    """cv2.imwrite returns False where the file cannot be written, without a word (and
    raises its own assertion for a suffix it has no writer for)."""
    pixels = np.random.default_rng(0).integers(0, 256, (64, 48, 3), np.uint8)
    if Path(target).suffix == ".jpg":
        (tmp_path / "full.jpg").symlink_to("/dev/full")
        assert not cv2.imwrite(str(tmp_path / target), pixels)
        (tmp_path / "full.jpg").unlink(missing_ok=True)  # OpenCV removes what it failed
    else:
        with pytest.raises(cv2.error, match="could not find a writer"):
            cv2.imwrite(str(tmp_path / target), pixels)
    (tmp_path / "full.jpg").symlink_to("/dev/full")
    with pytest.raises(OSError) as raised:
        write_pixels(tmp_path / target, pixels)
    assert raised.value.filename == str(tmp_path / target)
    assert reason in raised.value.strerror
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        [] if target == "full.jpg" else ["full.jpg"]
    )


@pytest.mark.parametrize(
    ("suffix", "params"), [(".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), (".jpg", []), (".png", [])]
)
def test_an_image_written_is_what_opencv_writes(
    tmp_path: Path, suffix: str, params: list[int]
) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (64, 48, 3), np.uint8)
    write_pixels(tmp_path / f"ours{suffix}", pixels, params)
    assert cv2.imwrite(str(tmp_path / f"opencv{suffix}"), pixels, params)
    assert (tmp_path / f"ours{suffix}").read_bytes() == (tmp_path / f"opencv{suffix}").read_bytes()
