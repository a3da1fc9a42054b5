"""COCO-style scoring with pycocotools: the overall numbers, per-class AP, and
precision/recall/F1 at each class's best-F1 confidence, all from one ``COCOeval`` run.

Per-class AP is read from ``COCOeval.eval["precision"]`` exactly as ``summarize`` reads
the overall AP (mean over IoU 0.50:0.95 and 101 recall points of the entries > -1), so
it equals a pycocotools run restricted to that one category. P/R/F1 reuse pycocotools'
own matches (``evalImgs``) at IoU 0.5, area "all", 100 detections per image.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES = (
    "AP50:95",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


@dataclass
class ClassMetrics:
    """One class's scores; NaN where the class has no ground truth."""

    name: str
    category_id: int
    ground_truth: int
    detections: int
    ap50_95: float
    ap50: float
    ap75: float
    precision: float
    recall: float
    f1: float
    best_f1_confidence: float


@dataclass
class CocoResult:
    """Everything one evaluation produced."""

    stats: dict[str, float]
    classes: list[ClassMetrics]
    pr_curves: dict[str, list[float]] = field(default_factory=dict)  # precision at IoU 0.5
    recall_thresholds: list[float] = field(default_factory=list)


def load_gt(gt: str | Path | dict) -> COCO:
    """A pycocotools ``COCO`` from a path or a dict, without its prints."""
    coco = COCO()
    if isinstance(gt, dict):
        # pycocotools writes into the annotations it is given (COCOeval sets "ignore",
        # relative areas replace "area"): a copy of each, not of the whole tree, which
        # was a sixth of a report's time on NEU-DET's val split.
        data = {**gt, "annotations": [dict(a) for a in gt.get("annotations", [])]}
    else:
        data = json.loads(Path(gt).read_text())
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_results(coco_gt: COCO, results: list[dict]) -> COCO:
    """``loadRes`` that also accepts an empty results list (pycocotools does not)."""
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            # loadRes sets "area", "id", "iscrowd" and "segmentation" on each result.
            return coco_gt.loadRes([dict(result) for result in results])
    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "annotations": [],
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
    }
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def coco_from_relative(
    gt_labels: list,
    gt_boxes: list,
    labels: list,
    boxes: list,
    scores: list,
    classes: list[str] | None = None,
    sizes: list[tuple[float, float]] | None = None,
) -> tuple[dict, list[dict]]:
    """pycocotools ground truth and results from per-image lists in FiftyOne's form
    (labels and relative ``[x, y, w, h]`` boxes; ``None`` for an image without any).

    Image ids are 1.. in list order; annotation ids 1.. and the results follow the
    labels' order, so ``load_results`` numbers the results 1.. the same way.

    Args:
        classes: Category names, ids 1.. in this order; ``None``: one category, for
            class-agnostic matching.
        sizes: Each image's ``(width, height)`` for boxes in pixels; ``None`` keeps them
            relative (IoU is the same either way).
    """
    names = classes or ["defect"]
    gt = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(names)],
    }
    results = []

    def category(label: str) -> int:
        return names.index(label) + 1 if classes else 1

    rows = zip(gt_labels, gt_boxes, labels, boxes, scores, sizes or [(1, 1)] * len(gt_labels))
    for image_id, (truth, truth_boxes, found, found_boxes, found_scores, (w, h)) in enumerate(
        rows, 1
    ):
        gt["images"].append({"id": image_id, "width": w, "height": h})
        for label, (x, y, bw, bh) in zip(truth or [], truth_boxes or []):
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": category(label),
                    "bbox": [x * w, y * h, bw * w, bh * h],
                    "area": bw * w * bh * h,
                    "iscrowd": 0,
                }
            )
        for label, (x, y, bw, bh), score in zip(found or [], found_boxes or [], found_scores or []):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": category(label),
                    "bbox": [x * w, y * h, bw * w, bh * h],
                    "score": score,
                }
            )
    return gt, results


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else math.nan


def _best_f1(evaluator: COCOeval, k: int) -> tuple[float, float, float, float, int]:
    """P, R, F1, confidence at the best F1 for category index ``k`` (IoU 0.5, all areas)."""
    params = evaluator.params
    n_images, n_areas = len(params.imgIds), len(params.areaRng)
    max_det = params.maxDets[-1]
    entries = [evaluator.evalImgs[k * n_areas * n_images + i] for i in range(n_images)]
    entries = [e for e in entries if e is not None]
    if not entries:
        return math.nan, math.nan, math.nan, math.nan, 0
    scores = np.concatenate([e["dtScores"][:max_det] for e in entries])
    order = np.argsort(-scores, kind="mergesort")  # the order pycocotools accumulates in
    matched = np.concatenate([e["dtMatches"][0, :max_det] for e in entries])[order]
    ignored = np.concatenate([e["dtIgnore"][0, :max_det] for e in entries])[order]
    n_gt = int(sum(np.count_nonzero(e["gtIgnore"] == 0) for e in entries))
    keep = ~ignored.astype(bool)
    scores, tp = scores[order][keep], (matched[keep] > 0)
    if n_gt == 0:
        return math.nan, math.nan, math.nan, math.nan, int(scores.size)
    if scores.size == 0:
        return 0.0, 0.0, 0.0, math.nan, 0
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(~tp)
    precision = tp_cum / (tp_cum + fp_cum)
    recall = tp_cum / n_gt
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-16)
    best = int(np.argmax(f1))
    return (
        float(precision[best]),
        float(recall[best]),
        float(f1[best]),
        float(scores[best]),
        int(scores.size),
    )


class _DifficultIgnored(COCOeval):
    """COCOeval with the ground truth marked ``difficult`` (VOC's flag, kept by the
    converter) ignored, as PASCAL VOC scores: a detection matched to such a box counts
    neither right nor wrong, and the box is not a positive to find.

    pycocotools' ``_prepare`` sets every box's ``ignore`` from ``iscrowd`` alone; this sets
    it for the difficult ones afterwards, so pycocotools' own matching (which prefers a
    box not ignored) does the rest, with the ordinary IoU (not the crowd one).
    """

    def _prepare(self) -> None:
        super()._prepare()
        for boxes in self._gts.values():
            for box in boxes:
                if box.get("difficult"):
                    box["ignore"] = 1


def difficult_boxes(gt: dict) -> int:
    """How many ground-truth boxes are marked ``difficult``."""
    return sum(1 for a in gt["annotations"] if a.get("difficult") and not a.get("iscrowd"))


def evaluate(
    gt: str | Path | dict | COCO,
    results: list[dict],
    ignore_difficult: bool = False,
    sizes: bool = True,
) -> CocoResult:
    """Scores COCO results against COCO ground truth with pycocotools.

    Args:
        gt: Ground truth (path, dict or ``COCO``).
        results: COCO results (``image_id``, ``category_id``, ``bbox``, ``score``).
        ignore_difficult: Ignore the boxes marked ``difficult``, as PASCAL VOC does
            (otherwise they count like any other, as pycocotools and ultralytics count
            them).
        sizes: Score COCO's small, medium and large boxes too. pycocotools matches
            every image again for each; without them (a quarter of the work) their six
            figures are -1, and every other figure is the same.

    Returns:
        The 12 standard numbers, per-class metrics and per-class PR curves at IoU 0.5.
    """
    coco_gt = gt if isinstance(gt, COCO) else load_gt(gt)
    coco_dt = load_results(coco_gt, results)
    evaluator = (_DifficultIgnored if ignore_difficult else COCOeval)(coco_gt, coco_dt, "bbox")
    if not sizes:  # "all" comes first; summarize() finds no other and gives -1
        evaluator.params.areaRng = evaluator.params.areaRng[:1]
        evaluator.params.areaRngLbl = evaluator.params.areaRngLbl[:1]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
    precision = evaluator.eval["precision"]  # [IoU, recall, class, area, maxDets]
    iou_thresholds = list(np.round(evaluator.params.iouThrs, 2))
    classes, curves = [], {}
    for k, category_id in enumerate(evaluator.params.catIds):
        name = coco_gt.cats[category_id]["name"]
        p, r, f1, confidence, detections = _best_f1(evaluator, k)
        n_gt = sum(
            1
            for a in coco_gt.loadAnns(coco_gt.getAnnIds(catIds=[category_id], iscrowd=False))
            if not (ignore_difficult and a.get("difficult"))
        )
        classes.append(
            ClassMetrics(
                name=name,
                category_id=category_id,
                ground_truth=n_gt,
                detections=detections,
                ap50_95=_mean_valid(precision[:, :, k, 0, -1]),
                ap50=_mean_valid(precision[iou_thresholds.index(0.5), :, k, 0, -1]),
                ap75=_mean_valid(precision[iou_thresholds.index(0.75), :, k, 0, -1]),
                precision=p,
                recall=r,
                f1=f1,
                best_f1_confidence=confidence,
            )
        )
        curves[name] = [float(v) for v in precision[0, :, k, 0, -1]]
    return CocoResult(stats, classes, curves, [float(v) for v in evaluator.params.recThrs])


def at_thresholds(gt: dict, results: list[dict], thresholds: dict[str, float]) -> list[dict]:
    """The COCO results at or above their class's threshold; ``thresholds`` names every
    category of ``gt``, and a NaN one (a class never detected) keeps none."""
    names = {category["id"]: category["name"] for category in gt["categories"]}
    return [r for r in results if r["score"] >= thresholds[names[r["category_id"]]]]


def precision_recall(
    gt: str | Path | dict | COCO, results: list[dict], iou: float = 0.5
) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per class of these detections as they are, every one
    kept, as a production line sees them at a fixed threshold (filter ``results`` first).

    Matching is pycocotools' (greedy in score order per image and class, crowd and
    ignore rules, at most 100 detections per image) at one IoU. A class with no
    detections has precision 0; one with no ground truth has recall NaN.

    Returns:
        ``{class name: {"precision", "recall", "f1", "true_positives", "detections",
        "ground_truth"}}``.
    """
    coco_gt = gt if isinstance(gt, COCO) else load_gt(gt)
    evaluator = COCOeval(coco_gt, load_results(coco_gt, results), "bbox")
    evaluator.params.iouThrs = np.array([iou])
    evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
    max_det = evaluator.params.maxDets[-1]
    n_images = len(evaluator.params.imgIds)
    counts = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        entries = [e for e in evaluator.evalImgs[k * n_images : (k + 1) * n_images] if e]
        kept = [~e["dtIgnore"][0, :max_det].astype(bool) for e in entries]
        tp = sum(int((e["dtMatches"][0, :max_det][m] > 0).sum()) for e, m in zip(entries, kept))
        detections = sum(int(m.sum()) for m in kept)
        n_gt = sum(int(np.count_nonzero(e["gtIgnore"] == 0)) for e in entries)
        precision = tp / detections if detections else 0.0
        recall = tp / n_gt if n_gt else math.nan
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        counts[coco_gt.cats[category_id]["name"]] = {
            "precision": precision,
            "recall": recall,
            "f1": f1 if n_gt else math.nan,
            "true_positives": tp,
            "detections": detections,
            "ground_truth": n_gt,
        }
    return counts


def macro_f1(per_class: dict[str, dict[str, float]]) -> float:
    """The mean F1 of the classes that have one, from :func:`precision_recall`'s
    per-class figures (a class never detected has NaN); 0 if none has."""
    values = [figures["f1"] for figures in per_class.values() if not math.isnan(figures["f1"])]
    return statistics.fmean(values) if values else 0.0
