"""YOLO labels: one ``class cx cy w h`` line per box, normalised to the image size."""

from __future__ import annotations

from pathlib import Path

from converters.errors import AnnotationError
from converters.model import Box, ImageAnnotation

# Six decimals keep 2048-pixel coordinates within 0.001 px, so integer VOC boxes
# survive a VOC -> YOLO -> VOC round trip exactly.
_PRECISION = 6


def to_yolo_lines(image: ImageAnnotation, classes: list[str]) -> str:
    """The label file content for one image (empty for an image with no boxes)."""
    lines = []
    for box in image.boxes:
        cx = (box.xmin + box.xmax) / 2 / image.width
        cy = (box.ymin + box.ymax) / 2 / image.height
        w = box.width / image.width
        h = box.height / image.height
        lines.append(
            f"{classes.index(box.label)} {cx:.{_PRECISION}f} {cy:.{_PRECISION}f} "
            f"{w:.{_PRECISION}f} {h:.{_PRECISION}f}"
        )
    return "".join(line + "\n" for line in lines)


def from_yolo_lines(
    text: str, width: int, height: int, classes: list[str], file: str = "<labels>"
) -> list[Box]:
    """Parses a YOLO label file back into boxes in pixel coordinates.

    Raises:
        AnnotationError: A line that is not ``class cx cy w h`` with a known class id
            (an optional sixth column is read as the confidence).
    """
    boxes = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            class_id = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:5])
            confidence = float(fields[5]) if len(fields) > 5 else None
            if len(fields) < 5 or not 0 <= class_id < len(classes):
                raise ValueError
        except ValueError:
            raise AnnotationError(file, "malformed_label", f"line {number}: {line!r}") from None
        boxes.append(
            Box(
                classes[class_id],
                (cx - w / 2) * width,
                (cy - h / 2) * height,
                (cx + w / 2) * width,
                (cy + h / 2) * height,
                confidence=confidence,
            )
        )
    return boxes


def label_path(image_path: Path) -> Path:
    """Where ultralytics looks for an image's labels: ``/images/`` -> ``/labels/``."""
    parts = list(image_path.parts)
    index = len(parts) - 1 - parts[::-1].index("images")
    parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")
