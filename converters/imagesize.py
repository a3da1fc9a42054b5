"""Image sizes from file headers, without decoding pixels.

Conversion reads the size of every image (the real size wins over ``<size>``); decoding
1,800 JPEGs to learn two numbers would dominate the run. JPEG and PNG headers are read
directly, anything else through Pillow's lazy open.
"""

from __future__ import annotations

import struct
from pathlib import Path

# JPEG start-of-frame markers carry the size; C4, C8 and CC are other segments.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None


def image_size(path: Path) -> tuple[int, int]:
    """Returns ``(width, height)`` of an image file.

    Raises:
        OSError: The file is missing, unreadable or not an image.
    """
    with open(path, "rb") as handle:
        head = handle.read(65536)
    size = None
    if head[:2] == b"\xff\xd8":
        size = _jpeg_size(head)
    elif head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        size = struct.unpack(">II", head[16:24])
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
