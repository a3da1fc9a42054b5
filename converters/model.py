"""The one small data model every format converts to and from.

Coordinates are continuous, 0-based pixel coordinates: a box covers
``xmin <= x < xmax`` and ``ymin <= y < ymax``. Pascal VOC stores 1-based inclusive
pixel indices, so the VOC box ``<xmin>1</xmin><xmax>200</xmax>`` on a 200-pixel wide
image is ``xmin=0, xmax=200`` here, the full width. COCO ``[x, y, w, h]`` and YOLO
normalised centres are both derived from these coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Box:
    """One labelled box in continuous 0-based pixel coordinates."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False
    confidence: float | None = None

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def coords(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)


@dataclass
class ImageAnnotation:
    """One image and its boxes.

    Attributes:
        name: File name of the image in the converted dataset (unique per dataset).
        path: Where the image file really is.
        width: Real image width in pixels, as decoded (EXIF orientation applied).
        height: Real image height in pixels, as decoded.
        boxes: The boxes, in the order they were read, in the frame of the image as
            decoded (:mod:`converters.orientation`).
        split: ``train``, ``val``, ``test`` or ``None`` before splitting.
        source: Annotation file the boxes came from, relative to the source root.
    """

    name: str
    path: Path
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)
    split: str | None = None
    source: str | None = None

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(box.label for box in self.boxes)


@dataclass
class Dataset:
    """Images with boxes plus the class list that fixes class ids (index = id)."""

    classes: list[str]
    images: list[ImageAnnotation] = field(default_factory=list)

    def split(self, name: str) -> list[ImageAnnotation]:
        return [image for image in self.images if image.split == name]

    @property
    def splits(self) -> list[str]:
        present = {image.split for image in self.images}
        return [name for name in SPLITS if name in present]

    @property
    def box_count(self) -> int:
        return sum(len(image.boxes) for image in self.images)
