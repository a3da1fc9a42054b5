"""AP on the image subsets and box sizes that matter for steel, with intervals.

Single-defect against multi-defect images (two or more boxes), single-class against
multi-class images, and boxes by size relative to their image in terciles of the ground
truth: COCO's absolute small/medium/large (32 and 96 pixels) mean little on 200x200
NEU-DET or 2048x1000 GC10-DET images. Sizes use pycocotools' own area ranges, with every
box's area taken as a fraction of its image (a detection outside the range and unmatched
is ignored, as COCO does for its sizes).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from detection.bootstrap import MatchTable, figures, match

SIZE_LABELS = ("small", "medium", "large")


def image_subsets(gt: dict, image_ids: list[int]) -> dict[str, np.ndarray]:
    """Indices into ``image_ids`` of each image subset (images without boxes in none)."""
    boxes: dict[int, int] = defaultdict(int)
    classes: dict[int, set[int]] = defaultdict(set)
    for annotation in gt["annotations"]:
        if not annotation.get("iscrowd", 0):
            boxes[annotation["image_id"]] += 1
            classes[annotation["image_id"]].add(annotation["category_id"])
    tests = {
        "single-defect": lambda i: boxes[i] == 1,
        "multi-defect": lambda i: boxes[i] >= 2,
        "single-class": lambda i: len(classes[i]) == 1,
        "multi-class": lambda i: len(classes[i]) >= 2,
    }
    return {
        name: np.array([k for k, i in enumerate(image_ids) if test(i)], dtype=int)
        for name, test in tests.items()
    }


def size_terciles(gt: dict) -> tuple[float, float]:
    """The ground truth's relative box areas at its first and second terciles."""
    size = {im["id"]: im["width"] * im["height"] for im in gt["images"]}
    areas = [
        a["bbox"][2] * a["bbox"][3] / size[a["image_id"]]
        for a in gt["annotations"]
        if not a.get("iscrowd", 0)
    ]
    low, high = np.percentile(areas, [100 / 3, 200 / 3]) if areas else (0.0, 0.0)
    return float(low), float(high)


DEFINITIONS = {
    "single-defect": "images with exactly one box",
    "multi-defect": "images with two or more boxes",
    "single-class": "images whose boxes are all of one class",
    "multi-class": "images with boxes of two or more classes",
}


def breakdowns(
    gt: dict,
    results: list[dict],
    replicates: int = 1000,
    seed: int = 0,
    table: MatchTable | None = None,
) -> dict:
    """Figures with intervals on each subset and size tercile (``report.json``'s
    ``breakdowns``); a subset with no image says so (``images: 0``).

    Args:
        gt: COCO ground truth.
        results: COCO results.
        replicates: Bootstrap replicates.
        seed: The bootstrap's seed.
        table: pycocotools' matches over all sizes, if already made.
    """
    table = table or match(gt, results)["all"]
    found = {}
    for name, subset in image_subsets(gt, table.image_ids).items():
        if subset.size:
            found[name], _ = figures(table, subset, replicates, seed)
        else:
            found[name] = {"images": 0, "mAP50": None, "mAP50-95": None}
        found[name]["definition"] = DEFINITIONS[name]
        chosen = {table.image_ids[i] for i in subset}
        found[name]["boxes"] = sum(
            1 for a in gt["annotations"] if a["image_id"] in chosen and not a.get("iscrowd", 0)
        )
    low, high = size_terciles(gt)
    ranges = {"small": [0.0, low], "medium": [low, high], "large": [high, float("inf")]}
    tables = match(gt, results, ranges, relative_area=True)
    for label in SIZE_LABELS:
        name = f"size-{label}"
        found[name], _ = figures(tables[label], None, replicates, seed)
        found[name]["boxes"] = int(sum(m.ground_truth.sum() for m in tables[label].classes))
        lowest, highest = ranges[label]
        span = (
            f"up to {highest:.4f}"
            if lowest == 0
            else f"over {lowest:.4f}"
            if highest == float("inf")
            else f"{lowest:.4f} to {highest:.4f}"
        )
        found[name]["definition"] = (
            f"boxes of {span} of their image's area (terciles of the ground truth)"
        )
    return found
