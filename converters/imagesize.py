"""Image sizes from file headers, and truncation found without decoding pixels.

Conversion reads the size of every image (the real size wins over ``<size>``); decoding
1,800 JPEGs to learn two numbers would dominate the run. JPEG and PNG files are read
directly, anything else through Pillow's lazy open.

A file cut short keeps its header, so its size reads fine while its pixels are gone. The
structure tells without decoding: a JPEG ends its entropy-coded scan with the
end-of-image marker (``FF D9`` cannot occur inside the scan, where every ``FF`` byte is
stuffed), a PNG ends with its ``IEND`` chunk and that chunk's CRC, and neither can be
smaller than the least its header's pixels compress to.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

# JPEG start-of-frame markers carry the size; C4, C8 and CC are other segments.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS, _EOI = 0xDA, b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
# Deflate cannot compress better than about 1032:1; a baseline JPEG spends at least one
# bit on each 8x8 block of each channel. Files smaller than that are cut short.
_DEFLATE_RATIO = 1032
_JPEG_BITS_PER_BLOCK = 1


class CorruptImageError(OSError):
    """An image whose header reads but whose data is cut short or damaged."""


def _jpeg_layout(data: bytes) -> tuple[tuple[int, int] | None, int | None]:
    """``((width, height), offset of the first scan)`` from a JPEG's segments."""
    index, size = 2, None
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return size, None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if marker in _SOF_MARKERS and index + 9 <= len(data):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            size = width, height
        if marker == _SOS:
            return size, index + 2 + length
        index += 2 + length
    return size, None


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


def check_structure(data: bytes) -> tuple[int, int] | None:
    """A JPEG's or PNG's ``(width, height)`` from its bytes, after checking the file whole
    (None for a file of another format, or whose header gives no size).

    Raises:
        CorruptImageError: A JPEG or PNG cut short or damaged (its header reads).
    """
    if data[:2] == b"\xff\xd8":
        size, scan = _jpeg_layout(data)
        if size is not None and size[0] > 0 and size[1] > 0:
            _check_jpeg(data, size, scan)
        return size
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 33:
        size = struct.unpack(">II", data[16:24])
        if size[0] > 0 and size[1] > 0:
            _check_png(data, size)
        return size
    return None


def image_size(path: Path) -> tuple[int, int]:
    """Returns ``(width, height)`` of an image file, checking JPEG and PNG files whole.

    Raises:
        CorruptImageError: A JPEG or PNG cut short or damaged (its header reads).
        OSError: The file is missing, unreadable or not an image.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    size = check_structure(data)
    if size is None:
        from PIL import Image

        try:
            with Image.open(path) as image:
                size = image.size
        # Broad on purpose: once ultralytics is imported it patches Image.open, and an
        # unidentified file then raises ModuleNotFoundError (its optional HEIF plugin).
        except Exception as error:
            raise OSError(f"not a readable image: {error}") from None
    if size[0] <= 0 or size[1] <= 0:
        raise OSError(f"image header gives an empty size {size[0]}x{size[1]}")
    return int(size[0]), int(size[1])
