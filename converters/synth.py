"""``defects synth``: the embedded default data, NEU-DET-like steel with drawn defects.

Writes a NEU-DET layout (``IMAGES/<class>_<n>.jpg`` + ``ANNOTATIONS/<class>_<n>.xml``)
of 200x200 grayscale hot-rolled strip textures, each with 1 to 4 defects of the six
NEU-DET classes (classes mixed within an image), drawn so that each class has the
structure that identifies it on real steel:

* scratches: thin long bright or dark lines, gently curved;
* patches: dark irregular blobs;
* inclusion: dark elongated spots along the rolling direction;
* crazing: a fine network of short connected cracks;
* pitted_surface: clusters of small dark pits;
* rolled-in_scale: flakes stretched along the rolling direction.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from converters.errors import ConversionError
from converters.folders import write_folder
from converters.model import Box, ImageAnnotation
from converters.pixels import write_image
from converters.voc import to_voc_xml

CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
FOLDERS = {
    "crazing": "cr",
    "inclusion": "in",
    "patches": "pa",
    "pitted_surface": "ps",
    "rolled-in_scale": "rs",
    "scratches": "sc",
}
SIZE = 200
# What an image takes on disk: 13.9 KB its JPEG (quality 95), 1.0 KB its VOC XML, measured
# over 24 images; rounded up.
BYTES_PER_IMAGE = 16_000
MARKER = "synth.json"  # what makes a folder a synth output


def _texture(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(95, 165)
    low = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32), (0, 0), 18)
    low *= rng.uniform(6, 14) / (low.std() + 1e-6)
    # Rolling leaves horizontal grain: noise blurred much more along x than y.
    grain = cv2.GaussianBlur(
        rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32), (0, 0), sigmaX=9, sigmaY=0.8
    )
    grain *= rng.uniform(2, 6) / (grain.std() + 1e-6)
    fine = rng.normal(0, rng.uniform(2, 5), (SIZE, SIZE)).astype(np.float32)
    ramp = np.linspace(-1, 1, SIZE, dtype=np.float32)[None, :] * rng.uniform(-12, 12)
    return base + low + grain + fine + ramp


def _region(rng: np.random.Generator, w: int, h: int) -> tuple[int, int, int, int]:
    x0 = int(rng.integers(2, SIZE - w - 2))
    y0 = int(rng.integers(2, SIZE - h - 2))
    return x0, y0, x0 + w, y0 + h


def _draw(kind: str, rng: np.random.Generator, canvas: np.ndarray) -> tuple[int, int, int, int]:
    """Draws one defect into ``canvas`` (float32, modified) and returns its region."""
    mask = np.zeros((SIZE, SIZE), np.float32)
    if kind == "scratches":
        length = int(rng.integers(70, 170))
        # Real scratches run mostly along or across the rolling direction.
        angle = rng.uniform(-0.35, 0.35) + (math.pi / 2 if rng.random() < 0.6 else 0)
        dx, dy = math.cos(angle) * length, math.sin(angle) * length
        w, h = max(int(abs(dx)), 6), max(int(abs(dy)), 6)
        x0, y0, x1, y1 = _region(rng, min(w, SIZE - 8), min(h, SIZE - 8))
        start = (x0, y0) if dx * dy >= 0 else (x0, y1)
        end = (x1, y1) if dx * dy >= 0 else (x1, y0)
        bend = rng.uniform(-6, 6)
        points = [
            (
                start[0] + (end[0] - start[0]) * t + bend * math.sin(math.pi * t),
                start[1] + (end[1] - start[1]) * t,
            )
            for t in np.linspace(0, 1, 12)
        ]
        cv2.polylines(mask, [np.array(points, np.int32)], False, 1.0, int(rng.integers(2, 4)))
        canvas += mask * rng.choice([-1, 1]) * rng.uniform(55, 85)
    elif kind == "patches":
        w, h = int(rng.integers(35, 90)), int(rng.integers(30, 80))
        x0, y0, x1, y1 = _region(rng, w, h)
        for _ in range(int(rng.integers(3, 7))):
            cx, cy = (
                rng.uniform(x0 + w * 0.3, x1 - w * 0.3),
                rng.uniform(y0 + h * 0.3, y1 - h * 0.3),
            )
            axes = (int(rng.uniform(w * 0.15, w * 0.3)), int(rng.uniform(h * 0.15, h * 0.3)))
            cv2.ellipse(mask, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 2.5)
        canvas -= mask * rng.uniform(45, 75)
    elif kind == "inclusion":
        w, h = int(rng.integers(22, 60)), int(rng.integers(6, 14))
        x0, y0, x1, y1 = _region(rng, w, h)
        cv2.ellipse(
            mask, ((x0 + x1) // 2, (y0 + y1) // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 1.0, -1
        )
        mask = cv2.GaussianBlur(mask, (0, 0), 1.2)
        canvas -= mask * rng.uniform(55, 85)
    elif kind == "crazing":
        w, h = int(rng.integers(45, 110)), int(rng.integers(40, 100))
        x0, y0, x1, y1 = _region(rng, w, h)
        for _ in range(int(rng.integers(14, 26))):
            px, py = rng.uniform(x0 + 2, x1 - 2), rng.uniform(y0 + 2, y1 - 2)
            for _ in range(int(rng.integers(2, 5))):
                a = rng.uniform(0, 2 * math.pi)
                step = rng.uniform(5, 11)
                nx = float(np.clip(px + math.cos(a) * step, x0, x1 - 1))
                ny = float(np.clip(py + math.sin(a) * step, y0, y1 - 1))
                cv2.line(mask, (int(px), int(py)), (int(nx), int(ny)), 1.0, 1)
                px, py = nx, ny
        canvas -= mask * rng.uniform(30, 50)
    elif kind == "pitted_surface":
        w, h = int(rng.integers(30, 80)), int(rng.integers(30, 80))
        x0, y0, x1, y1 = _region(rng, w, h)
        for _ in range(int(rng.integers(12, 30))):
            cx, cy = int(rng.uniform(x0 + 3, x1 - 3)), int(rng.uniform(y0 + 3, y1 - 3))
            cv2.circle(mask, (cx, cy), int(rng.integers(1, 4)), 1.0, -1)
        canvas -= cv2.GaussianBlur(mask, (0, 0), 0.8) * rng.uniform(50, 80)
    else:  # rolled-in_scale
        w, h = int(rng.integers(45, 120)), int(rng.integers(14, 36))
        x0, y0, x1, y1 = _region(rng, w, h)
        for _ in range(int(rng.integers(5, 11))):
            fw, fh = rng.uniform(8, 22), rng.uniform(2, 5)
            cx, cy = rng.uniform(x0 + fw / 2, x1 - fw / 2), rng.uniform(y0 + fh, y1 - fh)
            cv2.ellipse(
                mask,
                (int(cx), int(cy)),
                (int(fw / 2), int(fh)),
                rng.uniform(-8, 8),
                0,
                360,
                1.0,
                -1,
            )
        mask = cv2.GaussianBlur(mask, (0, 0), 1.0)
        canvas += mask * rng.choice([-1, 1]) * rng.uniform(35, 60)
    ys, xs = np.nonzero(mask > 0.25)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _overlaps(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def synth_image(rng: np.random.Generator) -> tuple[np.ndarray, list[Box]]:
    """One textured image and its boxes (continuous 0-based pixel coordinates)."""
    canvas = _texture(rng)
    boxes: list[Box] = []
    for _ in range(int(rng.integers(1, 5))):
        kind = str(rng.choice(CLASSES))
        for _attempt in range(6):
            layer = np.zeros_like(canvas)
            region = _draw(kind, rng, layer)
            if not any(_overlaps(region, b.coords) for b in boxes):
                canvas += layer
                boxes.append(Box(kind, *map(float, region)))
                break
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    return image, boxes


def synth_dataset(
    out: Path, images: int = 400, seed: int = 0, progress: Callable[[int, int], None] | None = None
) -> list[ImageAnnotation]:
    """Writes ``images`` synthetic images and VOC annotations in NEU-DET's layout, the
    folder whole (an earlier run's files never stay behind to mix with these).

    Args:
        out: The folder to create (``IMAGES/``, ``ANNOTATIONS/`` and ``synth.json`` go
            inside): new, empty or an earlier ``synth`` output.
        images: How many images.
        seed: Same seed, same bytes.
        progress: Called with (done, total) after each image.

    Returns:
        What was written.

    Raises:
        ConversionError: ``out`` holds files ``synth`` did not write, or its file system
            cannot hold ``images`` images (said before any is drawn: a count far too
            large ran for hours before the disk filled).
    """
    out = Path(out).absolute()
    check_room(out, images)

    def build(folder: Path) -> list[ImageAnnotation]:
        rng = np.random.default_rng(seed)
        (folder / "IMAGES").mkdir(parents=True)
        (folder / "ANNOTATIONS").mkdir()
        written = []
        for index in range(1, images + 1):
            pixels, boxes = synth_image(rng)
            name = f"{boxes[0].label}_{index}.jpg"
            write_image(folder / "IMAGES" / name, pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
            # Its path once the folder is in place.
            annotation = ImageAnnotation(name, out / "IMAGES" / name, SIZE, SIZE, boxes)
            (folder / "ANNOTATIONS" / f"{Path(name).stem}.xml").write_bytes(
                to_voc_xml(annotation, FOLDERS[boxes[0].label], depth=1)
            )
            written.append(annotation)
            if progress:
                progress(index, images)
        (folder / MARKER).write_text(json.dumps({"images": images, "seed": seed}) + "\n")
        return written

    return write_folder(out, build, MARKER)


def check_room(out: Path, images: int) -> None:
    """Refuses ``images`` images that ``out``'s file system has no room for.

    Raises:
        ConversionError: About ``images * BYTES_PER_IMAGE`` bytes are needed and fewer are
            free where ``out`` would be.
    """
    existing = next(folder for folder in (out, *out.parents) if folder.exists())
    free, needed = shutil.disk_usage(existing).free, images * BYTES_PER_IMAGE
    if needed > free:
        raise ConversionError(
            f"{out}: {images} images need about {_size(needed)} ({BYTES_PER_IMAGE // 1000} KB "
            f"each) and {existing} has {_size(free)} free; nothing was written"
        )


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e3:.0f} KB"
