"""YOLO labels: one ``class cx cy w h`` line per box, normalised to the image size."""

from __future__ import annotations

import math
from array import array
from collections import Counter
from pathlib import Path

import yaml

from converters.errors import AnnotationError
from converters.imagesize import image_size
from converters.model import Box, Dataset, ImageAnnotation

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


def is_yolo_dataset(data: Path) -> bool:
    """Whether ``data`` names a YOLO dataset: a folder with a ``data.yaml``, or the YAML
    file itself (ultralytics' ``data=`` argument)."""
    data = Path(data)
    return (data / "data.yaml").is_file() or data.suffix in (".yaml", ".yml")


def data_yaml_names(data_yaml: Path) -> list[str] | None:
    """The class names a ``data.yaml`` gives, in id order (``names`` as a list or as
    ``{id: name}``); None where it gives none or cannot be read (ultralytics' own check
    then says what is wrong with the file)."""
    try:
        names = yaml.safe_load(Path(data_yaml).read_text()).get("names")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return None
    if isinstance(names, dict):
        try:
            return [str(names[key]) for key in sorted(names, key=int)]
        except (TypeError, ValueError):
            return None
    return [str(name) for name in names] if isinstance(names, list) else None


def data_yaml_channels(data_yaml: Path) -> int:
    """The colour channels a ``data.yaml`` has models train on: its ``channels`` (1 for
    grey images), 3 where it gives none, as ultralytics reads it."""
    try:
        channels = yaml.safe_load(Path(data_yaml).read_text()).get("channels", 3)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return 3
    return channels if isinstance(channels, int) else 3


def label_path(image_path: Path) -> Path:
    """Where ultralytics looks for an image's labels: the last ``/images/`` folder of its
    path made ``/labels/``, the suffix ``.txt`` (beside the image when no folder is
    named ``images``)."""
    parts = list(image_path.parts)
    if "images" in parts[:-1]:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    return Path(*parts).with_suffix(".txt")


def from_yolo_lines(
    text: str, width: int, height: int, classes: list[str], file: str = "<labels>"
) -> list[Box]:
    """A YOLO label file's boxes in pixels, read the way ultralytics' datasets read it:
    ``class cx cy w h`` lines, or segmentation lines (``class x1 y1 x2 y2 ...``, more
    than six values) taken as their polygon's bounding box; a line repeated is one box,
    and a box over the image's edge is clipped to it.

    Coordinates may stray 1% past 0..1, as ultralytics lets them (rounding by the tool
    that wrote them: ``1.004`` for an edge): a box so over the edge is clipped too.

    Raises:
        AnnotationError: A line of another shape, a class id outside ``classes``, or a
            coordinate past ultralytics' tolerance (ultralytics drops such an image's
            labels whole, "non-normalized or out of bounds coordinates" or "negative
            label values", and scores it as having none).
    """
    boxes: list[Box] = []
    seen: set[tuple[float, ...]] = set()
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            class_value = float(fields[0])  # ultralytics reads "0.0" as class 0 too
            class_id = int(class_value) if class_value.is_integer() else -1
            values = [float(v) for v in fields[1:]]
        except ValueError:
            values, class_id = [], -1
        if len(values) == 4:
            cx, cy, w, h = xywh = values
            corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        elif len(values) >= 6 and len(values) % 2 == 0:  # a polygon: its bounding box
            xs, ys = values[0::2], values[1::2]
            corners = (min(xs), min(ys), max(xs), max(ys))
            xywh = [(corners[0] + corners[2]) / 2, (corners[1] + corners[3]) / 2]
            xywh += [corners[2] - corners[0], corners[3] - corners[1]]
        else:
            detail = f"line {number}: {line.strip()!r}; expected 'class cx cy w h' or a polygon"
            raise AnnotationError(file, "malformed_label", detail)
        if not 0 <= class_id < len(classes):
            detail = f"line {number}: class {fields[0]} is not one of 0..{len(classes) - 1}"
            raise AnnotationError(file, "unknown_class", detail)
        if not _normalised(xywh):
            detail = f"line {number}: {line.strip()!r} is not normalised to 0..1"
            raise AnnotationError(file, "invalid_coordinate", detail)
        corners = tuple(min(max(v, 0.0), 1.0) for v in corners)  # a box over the edge
        key = (class_id, *corners)
        if key in seen:
            continue
        seen.add(key)
        x1, y1, x2, y2 = corners
        boxes.append(Box(classes[class_id], x1 * width, y1 * height, x2 * width, y2 * height))
    return boxes


def _normalised(xywh: list[float]) -> bool:
    """Whether a label's ``cx cy w h`` (a polygon's bounding box's) pass ultralytics'
    check (``verify_image_label``, in float32 as it reads them): none over 1.01, none
    negative but down to -0.01 where the width and height are not."""
    values = array("f", xywh)  # float32; NaN fails every comparison
    if not all(v <= 1.01 for v in values):
        return False
    return all(v >= 0 for v in values) or (
        all(v >= -0.01 for v in values) and values[2] >= 0 and values[3] >= 0
    )


def from_yolo_results(
    text: str, width: int, height: int, classes: list[str], file: str = "<results>"
) -> list[Box]:
    """A detector's YOLO results file: ``class cx cy w h conf`` lines, normalised to the
    image, as ultralytics' predict writes them with ``save_txt=True, save_conf=True``
    (YOLOv5's ``detect.py --save-txt --save-conf`` too; a tracker's id after the
    confidence is ignored). Each line is one detection, its confidence on the box.

    Unlike labels (:func:`from_yolo_lines`), a repeated line is two detections and a box
    over the image's edge is kept as the detector placed it: a results file is scored
    as it is, as COCO results are.

    Raises:
        AnnotationError: A line without a confidence (written without ``save_conf``),
            of another shape, with a class id outside ``classes``, a value that is not
            a finite number, or a negative width or height; names ``file`` and the line.
    """
    boxes: list[Box] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {number}: {line.strip()!r}"
        if len(fields) == 5:
            detail = f"{where} has no confidence (ultralytics writes it with save_conf=True)"
            raise AnnotationError(file, "missing_confidence", detail)
        if len(fields) not in (6, 7):
            detail = f"{where}; expected 'class cx cy w h conf' (save_txt with save_conf)"
            raise AnnotationError(file, "malformed_result", detail)
        try:
            class_value = float(fields[0])
            cx, cy, w, h, conf = (float(v) for v in fields[1:6])
        except ValueError:
            raise AnnotationError(file, "malformed_result", f"{where}: not numbers") from None
        if not all(math.isfinite(v) for v in (cx, cy, w, h, conf)):
            raise AnnotationError(file, "invalid_coordinate", f"{where}: not finite")
        if not (class_value.is_integer() and 0 <= class_value < len(classes)):
            detail = f"line {number}: class {fields[0]} is not one of 0..{len(classes) - 1}"
            raise AnnotationError(file, "unknown_class", detail)
        if w < 0 or h < 0:
            raise AnnotationError(file, "invalid_coordinate", f"{where}: negative width or height")
        x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height
        label = classes[int(class_value)]
        boxes.append(Box(label, x1, y1, x1 + w * width, y1 + h * height, confidence=conf))
    return boxes


def _label_text(labels: Path) -> str:
    """A label file's text as ultralytics reads it: UTF-8, a byte-order mark dropped (a
    label saved by a Windows editor); bytes that are no UTF-8 make a malformed line."""
    return labels.read_bytes().decode("utf-8-sig", errors="replace")


def corrupt_labels(
    images: list[Path], classes: list[str], boxes_per_class: Counter | None = None
) -> list[AnnotationError]:
    """What is wrong with each label file of ``images`` that ultralytics' datasets pass
    over with its image, as corrupt: a line of its log ("ignoring corrupt image/label"),
    and the run trains without that image. Read as :func:`from_yolo` reads them; the
    boxes of the files that read are counted by class into ``boxes_per_class``."""
    found = []
    for image_path in images:
        labels = label_path(image_path)
        if not labels.is_file():
            continue  # an image without defects, to ultralytics (a folder there too)
        try:
            text = _label_text(labels)
        except OSError as error:
            found.append(AnnotationError(str(labels), "unreadable_label", str(error.strerror)))
            continue
        try:
            boxes = from_yolo_lines(text, 1, 1, classes, str(labels))
        except AnnotationError as error:
            found.append(error)
            continue
        if boxes_per_class is not None:
            boxes_per_class.update(box.label for box in boxes)
    return found


def from_yolo(images: list[Path], classes: list[str], root: Path, split: str) -> Dataset:
    """The ground truth of YOLO-labelled images (any YOLO dataset: Roboflow's export, a
    team's own), each image's labels where ultralytics finds them (:func:`label_path`;
    none there: an image without defects), sizes as decoded (EXIF applied).

    Args:
        images: The images, as a ``data.yaml`` split lists them.
        classes: Class names in id order.
        root: The images' names are their paths relative to it (absolute outside it).
        split: Recorded on every image.

    Raises:
        AnnotationError: An image or label file that cannot be read, naming it.
    """
    dataset = Dataset(list(classes))
    for image_path in images:
        labels = label_path(image_path)
        try:
            width, height = image_size(image_path)
            text = _label_text(labels) if labels.is_file() else ""
        except OSError as error:
            raise AnnotationError(
                str(error.filename or image_path), "unreadable_image", error.strerror or str(error)
            ) from None
        try:
            name = image_path.relative_to(root).as_posix()
        except ValueError:
            name = image_path.as_posix()
        boxes = from_yolo_lines(text, width, height, dataset.classes, str(labels))
        dataset.images.append(ImageAnnotation(name, image_path, width, height, boxes, split))
    return dataset
