"""EXIF orientation: how a camera's "turn me" tag moves an image's pixels and its boxes.

A camera that was held on its side stores the pixels as the sensor read them and tags
the file with an EXIF orientation (1 to 8). OpenCV applies the tag when it decodes
(``cv2.imread`` and ``cv2.imdecode``, for JPEG, PNG, WebP and TIFF alike), so ultralytics
trains, and our commands predict, on the image as shown, and browsers (the FiftyOne App)
show it that way too. Boxes and sizes therefore live in the frame of the image as shown.

Annotation tools disagree: CVAT, Label Studio and our own corrected export draw on the
image as shown, while tools that ignore the tag (LabelImg, through Qt) draw on the stored
pixels and write the stored size into ``<size>``. The conversion (``converters.source``)
tells the two apart by ``<size>`` where it can, and turns stored-pixel boxes with the
image (:func:`turn_box`). The tag values and their meaning are those of the EXIF 2.32
standard (CIPA DC-008), table "Orientation"; :data:`TURNS` was checked against OpenCV's
decoder (``tests/test_orientation.py``).
"""

from __future__ import annotations

import struct
from dataclasses import replace

from converters.model import Box

_ORIENTATION_TAG = 0x0112

# What each tag value asks a viewer to do to the stored pixels.
TURNS: dict[int, str] = {
    1: "as stored",
    2: "mirrored left to right",
    3: "turned 180 degrees",
    4: "mirrored top to bottom",
    5: "mirrored along its main diagonal",
    6: "turned 90 degrees clockwise",
    7: "mirrored along its other diagonal",
    8: "turned 90 degrees anticlockwise",
}


def orientation_from_tiff(tiff: bytes) -> int:
    """The orientation tag (1 to 8) of an EXIF block in its TIFF layout, 1 when absent.

    Read as OpenCV reads it: the first image directory only, the value's first two bytes
    whatever its declared type, and any value outside 1 to 8 taken as 1 (OpenCV then
    leaves the pixels as stored).
    """
    if tiff[:6] == b"Exif\x00\x00":  # some PNG writers keep the JPEG segment's prefix
        tiff = tiff[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8 or struct.unpack(order + "H", tiff[2:4])[0] != 42:
        return 1
    directory = struct.unpack(order + "I", tiff[4:8])[0]
    if directory + 2 > len(tiff):
        return 1
    (entries,) = struct.unpack(order + "H", tiff[directory : directory + 2])
    for index in range(entries):
        entry = directory + 2 + 12 * index
        if entry + 12 > len(tiff):
            break
        if struct.unpack(order + "H", tiff[entry : entry + 2])[0] == _ORIENTATION_TAG:
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
            return value if value in TURNS else 1
    return 1


def shown_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """``(width, height)`` of the image as shown, from its stored size and its tag."""
    return (height, width) if orientation >= 5 else (width, height)


def turn_box(box: Box, width: int, height: int, orientation: int) -> Box:
    """A box drawn on the stored pixels (``width`` x ``height``), moved to where those
    pixels are in the image as shown."""
    x0, y0, x1, y1 = box.coords
    w, h = width, height
    corners = {
        1: (x0, y0, x1, y1),
        2: (w - x1, y0, w - x0, y1),
        3: (w - x1, h - y1, w - x0, h - y0),
        4: (x0, h - y1, x1, h - y0),
        5: (y0, x0, y1, x1),
        6: (h - y1, x0, h - y0, x1),
        7: (h - y1, w - x1, h - y0, w - x0),
        8: (y0, w - x1, y1, w - x0),
    }[orientation]
    return replace(box, xmin=corners[0], ymin=corners[1], xmax=corners[2], ymax=corners[3])
