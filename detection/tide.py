"""Why AP50 falls short: the TIDE error decomposition (Bolya et al., ECCV 2020).

Each false positive at IoU 0.5 gets one error type, tested in TIDE's order:
localisation (same class, 0.1 <= IoU <= 0.5), classification (another class's box at
IoU >= 0.5), duplicate (a same-class box already matched, IoU >= 0.5), background (IoU
<= 0.1 with every box), both (the rest); a ground-truth box no error could have found is
missed. Fixing one type everywhere (the "oracle") and re-scoring gives that type's dAP:
classification and localisation errors become the true positive of their box (the
highest-scoring one per box; the others are removed), duplicates, background and both
are removed, missed boxes leave the ground truth. The special errors: every false
positive removed (perfect precision) and every false negative removed (perfect recall).

The matches are pycocotools' own at IoU 0.5 (``COCOeval.evalImgs``), so the AP this
starts from is pycocotools' AP50 exactly; the rules follow tidecv 1.0.1
(``tidecv/quantify.py``), against which ``tests/test_tide.py`` checks every dAP. One
difference: a class with predictions but no ground truth counts as AP 0 in tidecv's mean
and is left out here, as pycocotools leaves it out.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from detection.cocoeval import load_gt, load_results

POSITIVE_IOU, BACKGROUND_IOU = 0.5, 0.1
ERROR_TYPES = ("classification", "localisation", "both", "duplicate", "background", "missed")
SHORT_NAMES = {
    "classification": "Cls",
    "localisation": "Loc",
    "both": "Both",
    "duplicate": "Dupe",
    "background": "Bkg",
    "missed": "Miss",
    "false_positives": "FalsePos",
    "false_negatives": "FalseNeg",
}
# pycocotools' recall points, and tidecv's: equal on paper, not in the last bit (0.07,
# 0.7, ... differ), which moves the AP when a recall lands exactly on one of them.
RECALL_POINTS = {
    "pycocotools": np.linspace(0.0, 1.0, 101),
    "tidecv": np.array([x / 100 for x in range(101)]),
}


@dataclass
class Point:
    """One detection as AP sees it: its class, score, order and whether it is correct."""

    category: int
    score: float
    order: int  # pycocotools' position: image order, then score within the image
    correct: bool
    detection_id: int


@dataclass
class Error:
    """One error: its type, the detection (if any) and the ground truth involved."""

    kind: str
    image_id: int
    detection: dict | None = None
    truth: dict | None = None
    # What fixing it makes of the detection: a Point, None (removed), or for a missed
    # box the category whose ground-truth count drops by one.
    fixed: Point | None = None
    missed_category: int | None = None


@dataclass
class Decomposition:
    """Base AP50, the errors found, and what fixing each type is worth."""

    ap50: float
    per_class_ap50: dict[str, float]
    errors: list[Error] = field(default_factory=list)
    delta: dict[str, float] = field(default_factory=dict)  # overall dAP per type
    per_class_delta: dict[str, dict[str, float]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        found = Counter(error.kind for error in self.errors)
        return {kind: found.get(kind, 0) for kind in ERROR_TYPES}


def _average_precision(
    points: list[Point], n_gt: int, recall_points: np.ndarray = RECALL_POINTS["pycocotools"]
) -> float:
    """pycocotools' 101-point AP of one class's points (NaN without ground truth)."""
    if n_gt <= 0:
        return float("nan")
    if not points:
        return 0.0
    ordered = sorted(points, key=lambda p: (-p.score, p.order))
    correct = np.array([p.correct for p in ordered])
    tp = np.cumsum(correct)
    fp = np.cumsum(~correct)
    recall = tp / n_gt
    precision = tp / (fp + tp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    found = np.searchsorted(recall, recall_points, side="left")
    inside = found < len(ordered)
    return float(envelope[found[inside]].sum() / recall_points.size)


def _mean(values: dict[int, float], points: dict[int, list], convention: str) -> float:
    """The mean AP over classes: those with ground truth (pycocotools), or those with
    ground truth or predictions, a class without ground truth counting as 0 (tidecv)."""
    if convention == "tidecv":
        kept = [
            0.0 if np.isnan(v) else v for c, v in values.items() if points[c] or not np.isnan(v)
        ]
    else:
        kept = [v for v in values.values() if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def decompose(gt: dict, results: list[dict], convention: str = "pycocotools") -> Decomposition:
    """The TIDE decomposition at IoU 0.5 of ``results`` against ``gt``.

    Args:
        gt: COCO ground truth.
        results: COCO results.
        convention: ``pycocotools`` averages over the classes with ground truth, so the
            base is pycocotools' AP50; ``tidecv`` also counts a class with predictions
            but no ground truth, as AP 0, and reproduces tidecv's figures exactly.

    Returns:
        Base AP50 (pycocotools'), every error, and the overall and per-class dAP of fixing
        each error type and of the two special errors, in AP50 points (0..100).
    """
    coco_gt = load_gt(gt)
    coco_dt = load_results(coco_gt, results)
    evaluator = COCOeval(coco_gt, coco_dt, "bbox")
    evaluator.params.iouThrs = np.array([POSITIVE_IOU])
    evaluator.params.areaRng = [evaluator.params.areaRng[0]]
    evaluator.params.areaRngLbl = ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
    params = evaluator.params
    categories = list(params.catIds)
    names = {c: coco_gt.cats[c]["name"] for c in categories}
    max_det = params.maxDets[-1]

    # pycocotools' verdict on each detection it kept, and the ground truth it matched.
    correct: dict[int, bool] = {}
    used_truth: set[int] = set()
    n_gt = dict.fromkeys(categories, 0)
    n_images = len(params.imgIds)
    for k, category in enumerate(categories):
        for i in range(n_images):
            entry = evaluator.evalImgs[k * n_images + i]
            if entry is None:
                continue
            n_gt[category] += int(np.count_nonzero(entry["gtIgnore"] == 0))
            for det_id, gt_id, ignored in zip(
                entry["dtIds"][:max_det], entry["dtMatches"][0, :max_det], entry["dtIgnore"][0]
            ):
                if ignored:
                    continue
                correct[det_id] = gt_id > 0
                if gt_id > 0:
                    used_truth.add(int(gt_id))

    points: dict[int, list[Point]] = {c: [] for c in categories}
    errors: list[Error] = []
    best_for_truth: dict[int, tuple[float, int]] = {}  # truth id -> (score, detection id)
    for image_index, image_id in enumerate(params.imgIds):
        detections = sorted(
            (d for d in coco_dt.imgToAnns.get(image_id, []) if d["id"] in correct),
            key=lambda d: -d["score"],
        )
        truths = [a for a in coco_gt.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        for rank, det in enumerate(detections):
            order = image_index * 100_000 + rank
            points[det["category_id"]].append(
                Point(det["category_id"], det["score"], order, correct[det["id"]], det["id"])
            )
        false = [d for d in detections if not correct[d["id"]]]
        if not false:
            continue
        if not truths:
            errors += [Error("background", image_id, d) for d in false]
            continue
        ious = mask_utils.iou(
            [d["bbox"] for d in false], [t["bbox"] for t in truths], [0] * len(truths)
        )
        same = np.array([[d["category_id"] == t["category_id"] for t in truths] for d in false])
        used = np.array([t["id"] in used_truth for t in truths])
        rank_of = {d["id"]: rank for rank, d in enumerate(detections)}
        for row, det in enumerate(false):
            order = image_index * 100_000 + rank_of[det["id"]]
            iou = ious[row]
            same_iou = np.where(same[row], iou, 0.0)
            other_iou = np.where(same[row], 0.0, iou)
            used_iou = np.where(same[row] & used, iou, 0.0)
            j = int(same_iou.argmax())
            if BACKGROUND_IOU <= same_iou[j] <= POSITIVE_IOU:
                errors.append(_fixable("localisation", image_id, det, truths[j], used[j], order))
            elif other_iou.max() >= POSITIVE_IOU:
                j = int(other_iou.argmax())
                errors.append(_fixable("classification", image_id, det, truths[j], used[j], order))
            elif used_iou.max() >= POSITIVE_IOU:
                errors.append(Error("duplicate", image_id, det, truths[int(used_iou.argmax())]))
            elif iou.max() <= BACKGROUND_IOU:
                errors.append(Error("background", image_id, det))
            else:
                errors.append(Error("both", image_id, det))
            last = errors[-1]
            if last.kind in ("localisation", "classification") and last.fixed is not None:
                truth_id, score = last.truth["id"], det["score"]
                if truth_id not in best_for_truth or best_for_truth[truth_id][0] < score:
                    best_for_truth[truth_id] = (score, det["id"])
    # Only the best-scoring fixable error of each box becomes its true positive.
    for error in errors:
        if (
            error.fixed is not None
            and best_for_truth[error.truth["id"]][1] != error.detection["id"]
        ):
            error.fixed = None
    fixable_truth = set(best_for_truth)
    for annotation in coco_gt.dataset["annotations"]:
        if annotation.get("iscrowd", 0) or annotation["id"] in used_truth:
            continue
        if annotation["id"] not in fixable_truth and annotation["category_id"] in n_gt:
            errors.append(
                Error(
                    "missed",
                    annotation["image_id"],
                    truth=annotation,
                    missed_category=annotation["category_id"],
                )
            )

    recall = RECALL_POINTS[convention]
    base = {c: _average_precision(points[c], n_gt[c], recall) for c in categories}
    result = Decomposition(
        ap50=100 * _mean(base, points, convention),
        per_class_ap50={names[c]: 100 * base[c] for c in categories},
    )
    result.errors = errors
    error_of = {e.detection["id"]: e for e in errors if e.detection is not None}

    error_rank = {e.detection["id"]: i for i, e in enumerate(errors) if e.detection is not None}

    def fixed_ap(kind: str) -> tuple[dict[int, float], dict[int, list[Point]]]:
        new_points: dict[int, list[Point]] = {c: [] for c in categories}
        new_gt = dict(n_gt)
        for category, kept in points.items():
            for point in kept:
                error = error_of.get(point.detection_id)
                if error is None or error.kind != kind:
                    new_points[category].append(point)
                elif error.fixed is not None:
                    new_points[error.fixed.category].append(error.fixed)
        if kind == "missed":
            for error in errors:
                if error.kind == "missed":
                    new_gt[error.missed_category] -= 1
        if kind == "false_positives":  # tidecv: true positives at score 1, the rest at 0
            new_points = {
                c: [replace(p, score=float(p.correct)) for p in kept] for c, kept in points.items()
            }
        if kind == "false_negatives":
            new_gt = {c: sum(p.correct for p in points[c]) for c in categories}
        if convention == "tidecv":
            # tidecv rebuilds a fixed run from its error list first and the true positives
            # after, so equal scores rank errors first (its base run ranks by image).
            new_points = {
                c: [
                    replace(
                        p,
                        order=error_rank[p.detection_id]
                        if p.detection_id in error_rank
                        else 10**12 + p.order,
                    )
                    for p in kept
                ]
                for c, kept in new_points.items()
            }
        fixed = {c: _average_precision(new_points[c], new_gt[c], recall) for c in categories}
        return fixed, new_points

    base_mean = _mean(base, points, convention)
    for kind in (*ERROR_TYPES, "false_positives", "false_negatives"):
        fixed, fixed_points = fixed_ap(kind)
        # tidecv clamps a negative dAP (binning effects) to 0 for the main errors only.
        clamp = kind in ERROR_TYPES
        overall = 100 * (_mean(fixed, fixed_points, convention) - base_mean)
        result.delta[kind] = max(overall, 0.0) if clamp else overall
        # Every scored class gets a figure; NaN (undefined) where the fix leaves it no
        # ground truth: a class whose every box was missed, once the misses are forgiven.
        result.per_class_delta[kind] = {
            names[c]: (max(d, 0.0) if clamp and not np.isnan(d) else d)
            for c in categories
            if not np.isnan(base[c])
            for d in [100 * (fixed[c] - base[c])]
        }
    return result


def _fixable(kind: str, image_id: int, det: dict, truth: dict, used: bool, order: int) -> Error:
    """A localisation or classification error; fixable only if its box is still free."""
    category = truth["category_id"] if kind == "classification" else det["category_id"]
    fixed = None if used else Point(category, det["score"], order, True, det["id"])
    return Error(kind, image_id, det, truth, fixed)
