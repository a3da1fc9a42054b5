"""COCO detection JSON: ``bbox`` is ``[x, y, w, h]`` in continuous 0-based pixels.

Category ids are 1-based in dataset order (id = class index + 1). Image ids are fixed
by the caller so that an image keeps its id whatever split it lands in.
"""

from __future__ import annotations

from pathlib import Path

from converters.model import Box, Dataset, ImageAnnotation


def to_coco(images: list[ImageAnnotation], classes: list[str], image_ids: dict[str, int]) -> dict:
    """Builds a COCO ground-truth dict that pycocotools loads.

    Args:
        images: The images to include (one split, usually).
        classes: The dataset's classes, in id order.
        image_ids: Image name to its stable id.
    """
    categories = [
        {"id": i + 1, "name": name, "supercategory": "defect"} for i, name in enumerate(classes)
    ]
    coco_images, annotations = [], []
    for image in images:
        image_id = image_ids[image.name]
        coco_images.append(
            {"id": image_id, "file_name": image.name, "width": image.width, "height": image.height}
        )
        for box in image.boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": classes.index(box.label) + 1,
                    "bbox": [box.xmin, box.ymin, box.width, box.height],
                    "area": box.width * box.height,
                    "iscrowd": 0,
                    # VOC flags, kept for the way back to VOC; pycocotools ignores them.
                    "difficult": int(box.difficult),
                    "truncated": int(box.truncated),
                }
            )
    return {
        "info": {"description": "steel surface defects", "version": "1.0"},
        "licenses": [],
        "images": coco_images,
        "annotations": annotations,
        "categories": categories,
    }


def from_coco(coco: dict, image_dir: Path | None = None, split: str | None = None) -> Dataset:
    """Reads a COCO ground-truth (or results-with-images) dict back into the data model.

    Args:
        coco: The parsed JSON.
        image_dir: Folder the ``file_name`` values are relative to.
        split: Split to record on every image.
    """
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    names = {c["id"]: c["name"] for c in categories}
    by_id: dict[int, ImageAnnotation] = {}
    for entry in coco["images"]:
        path = (image_dir or Path()) / entry["file_name"]
        by_id[entry["id"]] = ImageAnnotation(
            entry["file_name"], path, int(entry["width"]), int(entry["height"]), [], split
        )
    for ann in coco.get("annotations", []):
        x, y, w, h = ann["bbox"]
        by_id[ann["image_id"]].boxes.append(
            Box(
                names[ann["category_id"]],
                x,
                y,
                x + w,
                y + h,
                difficult=bool(ann.get("difficult", 0)),
                truncated=bool(ann.get("truncated", 0)),
                confidence=ann.get("score"),
            )
        )
    return Dataset([c["name"] for c in categories], list(by_id.values()))
