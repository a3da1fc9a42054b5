"""Reading an image's pixels, refusing what would be half an image, and writing them
so that an image not written is an error, never a file missing without a word.

OpenCV decodes a JPEG cut short (a camera transfer interrupted, a copy that ran out of
disk) without failing: libjpeg prints "Premature end of JPEG file" and fills the missing
rows with grey, and a detector then reports defects, or none, on pixels that were never
taken. Conversion already skips such files from their structure
(:func:`converters.imagesize.image_size`, ``corrupt_image``); every command that runs a
model on images reads them here, with the same check, so a file refused by ``convert`` is
refused by ``predict``, ``evaluate``, ``review`` and ``classify`` too, with the same reason.
``convert --keep-overlaps`` (:mod:`converters.overlaps`) reads them here as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from converters.files import naming
from converters.imagesize import (
    UNDECODABLE_SAMPLES,
    CorruptImageError,
    check_structure,
    read_file,
    read_header,
)


def read_image(path: Path | str) -> np.ndarray:
    """An image's BGR pixels, as ultralytics reads them (``cv2.imdecode`` of the file's
    bytes, EXIF orientation applied), after checking a JPEG or PNG file whole.

    Raises:
        OSError: With the file as ``filename`` and the reason as ``strerror`` (the CLI
            prints both, a caller that names the file itself takes the reason): missing
            or unreadable (the operating system's words), cut short or damaged
            (:class:`converters.imagesize.CorruptImageError`, saying how), empty, of
            samples wider than OpenCV decodes (a 32-bit TIFF, as ``convert`` reports
            it), or not an image OpenCV can decode.
    """
    data = read_file(path)  # its OSError has the file and the reason already
    if not data:
        raise OSError(None, "empty file (0 bytes)", str(path))
    try:
        check_structure(data)
    except CorruptImageError as error:
        raise CorruptImageError(None, str(error), str(path)) from None
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # a decoder's assertion, not a usable message
        pixels = None
    if pixels is None:
        raise OSError(None, _undecodable(path, data), str(path))
    return pixels


def write_image(path: Path | str, pixels: np.ndarray, params: Sequence[int] = ()) -> None:
    """Writes ``pixels`` (BGR) to ``path``, encoded as its suffix says, by OpenCV.

    ``cv2.imwrite`` returns False where it cannot write, and every caller here ignored
    it: ``synth`` said "Wrote 3 images" into a folder it had left empty once files over
    10 KB were refused (a full disk, a quota). Here OpenCV encodes and Python writes, so
    that failure is an error with the file and the operating system's reason, and a file
    cut short is removed.

    Args:
        path: Where; its suffix (``.jpg``, ``.png``) picks the encoder.
        pixels: The image, as OpenCV holds it.
        params: OpenCV's encoder options (``[cv2.IMWRITE_JPEG_QUALITY, 95]``).

    Raises:
        OSError: With the file as ``filename``: not written (the operating system's
            reason), or no encoder for its suffix.
    """
    try:
        encoded, data = cv2.imencode(Path(path).suffix, pixels, list(params))
    except cv2.error:  # no encoder for the suffix: an assertion, not a usable message
        encoded = False
    if not encoded:
        suffix = Path(path).suffix or "a name without a suffix"
        raise OSError(None, f"OpenCV cannot write an image as {suffix}", str(path))
    try:
        with open(path, "wb") as file:  # its OSError names the file when opening fails
            file.write(data.tobytes())
    except OSError as error:
        if error.filename is None:  # opened, then refused: what got through is half an image
            Path(path).unlink(missing_ok=True)
        raise naming(error, path) from None


def _undecodable(path: Path | str, data: bytes) -> str:
    """Why OpenCV gave no pixels: 32-bit samples where a TIFF's header says so.

    Only a TIFF is asked (the one format that holds such samples): Pillow, as patched by
    ultralytics, prints a warning on stdout for a file it cannot identify.
    """
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        try:
            if read_header(Path(path)).bits > 16:
                return UNDECODABLE_SAMPLES
        except OSError:  # a header Pillow cannot read either
            pass
    return "not an image OpenCV can decode"


def narrowed_samples(path: Path | str, pixels: np.ndarray) -> str | None:
    """What a model misses of an image whose samples are wider than 8 bits (a 12- or
    16-bit camera's PNG or TIFF): OpenCV keeps their top 8 bits, as in training, so an
    image that uses 12 of 16 bits is seen nearly black. ``None`` for an 8-bit image.

    Conversion reports such images (``high_bit_depth``); this says it where a model
    runs on images no conversion has seen, with the brightest value it was given.
    """
    try:
        bits = read_header(Path(path)).bits
    except OSError:  # decoded already; a header Pillow cannot read says nothing more
        return None
    if bits <= 8:
        return None
    return (
        f"{bits}-bit samples, of which the model sees the top 8 (as OpenCV reads them, and "
        f"as in training): its brightest pixel reads {int(pixels.max())} of 255; scale such "
        "images to 8 bits over their own range first"
    )
