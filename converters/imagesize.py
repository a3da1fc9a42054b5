"""Image sizes from file headers, and truncation found without decoding pixels.

Conversion reads the size of every image (the real size wins over ``<size>``); decoding
1,800 JPEGs to learn two numbers would dominate the run. JPEG and PNG files are read
directly, anything else through Pillow's lazy open. The header's EXIF orientation comes
with the size, since OpenCV turns the pixels by it when it decodes
(:mod:`converters.orientation`).

A file cut short keeps its header, so its size reads fine while its pixels are gone. The
structure tells without decoding: a JPEG ends its entropy-coded scan with the
end-of-image marker (``FF D9`` cannot occur inside the scan, where every ``FF`` byte is
stuffed), a PNG ends with its ``IEND`` chunk and that chunk's CRC, and neither can be
smaller than the least its header's pixels compress to.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from converters.files import read_bytes
from converters.orientation import TURNS, orientation_from_tiff, shown_size

# JPEG start-of-frame markers carry the size; C4, C8 and CC are other segments.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS, _EOI, _APP1 = 0xDA, b"\xff\xd9", 0xE1
_EXIF_PREFIX = b"Exif\x00\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
# Deflate cannot compress better than about 1032:1; a baseline JPEG spends at least one
# bit on each 8x8 block of each channel. Files smaller than that are cut short.
_DEFLATE_RATIO = 1032
_JPEG_BITS_PER_BLOCK = 1


# Pillow's modes of more than 8 bits per sample (TIFF, mostly).
_PILLOW_BITS = {"I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}

# Why OpenCV gives no pixels for an image of more than 16 bits per sample (a 32-bit
# integer or float TIFF, as a measuring camera or an export from analysis software
# writes): it reads TIFF through libtiff's RGBA interface, which refuses them.
UNDECODABLE_SAMPLES = (
    "32-bit samples, which OpenCV (training and prediction) cannot decode; scale such "
    "images to 8 bits over their own range first"
)


class CorruptImageError(OSError):
    """An image whose header reads but whose data is cut short or damaged."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says.

    Attributes:
        stored_width: Width of the pixels as stored in the file.
        stored_height: Height of the pixels as stored.
        orientation: The EXIF orientation tag, 1 (as stored) to 8.
        bits: Bits per sample (8 for most; 12 or 16 from some cameras).
    """

    stored_width: int
    stored_height: int
    orientation: int = 1
    bits: int = 8

    @property
    def stored_size(self) -> tuple[int, int]:
        return self.stored_width, self.stored_height

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` as OpenCV decodes it, the EXIF orientation applied."""
        return shown_size(self.stored_width, self.stored_height, self.orientation)


def _jpeg_layout(data: bytes) -> tuple[ImageHeader | None, int | None]:
    """A JPEG's header (None without a frame header) and the offset of its first scan
    (None if it has none), from its segments."""
    index, frame, orientation = 2, None, None

    def header() -> ImageHeader | None:
        return frame and ImageHeader(frame[0], frame[1], orientation or 1, frame[2])

    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return header(), None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if marker in _SOF_MARKERS and index + 9 <= len(data):
            bits, height, width = struct.unpack(">BHH", data[index + 4 : index + 9])
            frame = width, height, bits
        # The first EXIF segment counts; XMP and others share the APP1 marker.
        if marker == _APP1 and orientation is None:
            segment = data[index + 4 : index + 2 + length]
            if segment.startswith(_EXIF_PREFIX):
                orientation = orientation_from_tiff(segment[len(_EXIF_PREFIX) :])
        if marker == _SOS:
            return header(), index + 2 + length
        index += 2 + length
    return header(), None


def _png_orientation(data: bytes) -> int:
    """The orientation in a PNG's ``eXIf`` chunk (1 without one), walking its chunks."""
    index = 8
    while index + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[index : index + 8])
        if kind == b"eXIf":
            return orientation_from_tiff(data[index + 8 : index + 8 + length])
        if kind == b"IEND" or length > len(data):
            return 1
        index += 12 + length
    return 1


def _check_jpeg(data: bytes, size: tuple[int, int], scan: int | None) -> None:
    if scan is None or scan >= len(data):
        raise CorruptImageError(f"JPEG cut short: {len(data)} bytes end before its image data")
    # rfind: bytes after the end-of-image marker (camera padding, trailers) are harmless.
    if data.rfind(_EOI) < scan:
        raise CorruptImageError(
            f"JPEG cut short: no end-of-image marker after its image data ({len(data)} bytes)"
        )
    blocks = -(-size[0] // 8) * -(-size[1] // 8)
    if len(data) * 8 < blocks * _JPEG_BITS_PER_BLOCK:
        raise CorruptImageError(f"JPEG of {len(data)} bytes cannot hold {size[0]}x{size[1]} pixels")


def _check_png(data: bytes, size: tuple[int, int]) -> None:
    ihdr = data[12:29]
    if struct.unpack(">I", data[29:33])[0] != zlib.crc32(ihdr):
        raise CorruptImageError("PNG header chunk (IHDR) fails its CRC")
    if data.rfind(_PNG_IEND) < 33:
        raise CorruptImageError(f"PNG cut short: no IEND chunk at its end ({len(data)} bytes)")
    bit_depth, colour_type = data[24], data[25]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour_type, 1)
    raw = size[1] * (1 + -(-size[0] * channels * bit_depth // 8))
    if len(data) * _DEFLATE_RATIO < raw:
        raise CorruptImageError(f"PNG of {len(data)} bytes cannot hold {size[0]}x{size[1]} pixels")


def check_structure(data: bytes) -> ImageHeader | None:
    """A JPEG's or PNG's header from its bytes, after checking the file whole (None for a
    file of another format, or whose header gives no size).

    Raises:
        CorruptImageError: A JPEG or PNG cut short or damaged (its header reads).
    """
    if data[:2] == b"\xff\xd8":
        header, scan = _jpeg_layout(data)
        if header is not None and header.stored_width > 0 and header.stored_height > 0:
            _check_jpeg(data, header.stored_size, scan)
        return header
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 33:
        size = struct.unpack(">II", data[16:24])
        if size[0] > 0 and size[1] > 0:
            _check_png(data, size)
        return ImageHeader(*size, _png_orientation(data), 16 if data[24] == 16 else 8)
    return None


def read_file(path: Path | str) -> bytes:
    """A file's bytes, or a pipe's (:func:`converters.files.read_bytes`).

    Raises:
        OSError: The system's, with the file as ``filename``; for a link that leads
            nowhere (a dataset linked from one moved or deleted since), one saying so:
            "No such file or directory" of a name ``ls`` lists tells nothing; for a
            device, one saying so.
    """
    try:
        return read_bytes(path)
    except FileNotFoundError:
        if not os.path.islink(path):
            raise
        target = os.readlink(path)
        raise FileNotFoundError(
            errno.ENOENT, f"a link to {target}, which leads nowhere", str(path)
        ) from None


def read_header(path: Path) -> ImageHeader:
    """An image file's stored size and EXIF orientation, checking JPEG and PNG files whole.

    Raises:
        CorruptImageError: A JPEG or PNG cut short or damaged (its header reads).
        OSError: The file is missing, unreadable or not an image.
    """
    data = read_file(path)
    header = check_structure(data)
    if header is None:
        if not data:
            raise OSError("not a readable image: empty file (0 bytes)")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                orientation = image.getexif().get(0x0112, 1)
                orientation = orientation if orientation in TURNS else 1
                size = image.size
                if image.format == "TIFF":  # Pillow gives a TIFF's size as shown already
                    size = image.tag_v2.get(256, size[0]), image.tag_v2.get(257, size[1])
                header = ImageHeader(*size, orientation, _PILLOW_BITS.get(image.mode, 8))
        # Once ultralytics is imported it patches Image.open, and a file of no format
        # Pillow knows then raises ModuleNotFoundError (its optional HEIF plugin).
        except (UnidentifiedImageError, ImportError):
            raise OSError("not a readable image: of no image format Pillow knows") from None
        except Exception as error:  # broad on purpose: Pillow's plugins raise any kind
            raise OSError(f"not a readable image: {error}") from None
    if header.stored_width <= 0 or header.stored_height <= 0:
        raise OSError(
            f"image header gives an empty size {header.stored_width}x{header.stored_height}"
        )
    return header


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file as OpenCV decodes it (EXIF orientation
    applied), checking JPEG and PNG files whole.

    Raises:
        CorruptImageError: A JPEG or PNG cut short or damaged (its header reads).
        OSError: The file is missing, unreadable or not an image.
    """
    return read_header(path).size


# Ultralytics' datasets take no image under 10 pixels a side (data.utils.check_image).
MIN_TRAINING_SIDE = 10


def untrainable_images(paths: list[Path]) -> list[str]:
    """``path: what is wrong`` for each image that ultralytics' datasets would pass over
    as corrupt, training and validating without it (a line of its log among hundreds):
    one that cannot be read, is no image, or is under ten pixels a side; and a JPEG cut
    short, which it would rewrite in its place, its lost rows grey."""
    found = []
    for path in paths:
        try:
            width, height = read_header(path).size
        except OSError as error:
            found.append(f"{path}: {error.strerror or error}")
            continue
        if min(width, height) < MIN_TRAINING_SIDE:
            found.append(
                f"{path}: {width}x{height} pixels, under the {MIN_TRAINING_SIDE} a side "
                "ultralytics trains on"
            )
    return found
