"""The ground-truth labels most likely wrong: FiftyOne Brain's mistakenness, in bulk.

``fiftyone.brain.compute_mistakenness`` matches predictions to ground truth across
classes (IoU 0.5) and then saves every sample on its own: 43 s on NEU-DET's 1,800 images
on this machine, more than a whole cold review may take. This computes the same fields
with Brain's own definitions (its formulas and thresholds, imported from it): the
matches come from pycocotools with categories ignored (``useCats = 0``, greedy by
confidence at IoU 0.5), the fields are written with one ``set_values`` each.

Fields, as Brain names them: on each ground-truth box ``mistakenness`` (the class label is
likely wrong: a confident prediction of another class sits on it) and
``mistakenness_loc`` (the box is likely misplaced), or ``possible_spurious`` when no
prediction matches it; on each prediction ``possible_missing`` when it is unmatched and
more confident than Brain's 0.95; on each sample the largest ``mistakenness`` and the
counts of ``possible_missing`` and ``possible_spurious``.
"""

from __future__ import annotations

import contextlib
import io
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection
    from fiftyone.core.view import DatasetView

MISTAKES_VIEW = "likely-annotation-mistakes"


def _brain() -> ModuleType:
    from fiftyone.brain.internal.core import mistakenness as brain

    return brain


def mistakes_view(dataset: SampleCollection) -> DatasetView:
    """The images with a likely mistake (mistakenness above 0.5, or a possibly missing or
    spurious box), the likeliest first: the view ``likely-annotation-mistakes``."""
    from fiftyone import ViewField as F

    return dataset.match(
        (F("mistakenness") > 0.5) | (F("possible_missing") > 0) | (F("possible_spurious") > 0)
    ).sort_by("mistakenness", reverse=True)


def _positions(per_sample: list) -> list[tuple[int, int]]:
    """(sample index, label index) of every label, in order."""
    return [(i, k) for i, labels in enumerate(per_sample) for k in range(len(labels or []))]


def compute_mistakes(
    dataset: SampleCollection, pred_field: str = "predictions", gt_field: str = "ground_truth"
) -> dict:
    """Writes Brain's mistakenness fields on ``dataset``; returns the top of the list and
    the counts (the view to save is :func:`mistakes_view`)."""
    from pycocotools import mask as mask_utils
    from pycocotools.cocoeval import COCOeval

    from detection.cocoeval import coco_from_relative, load_gt, load_results

    brain = _brain()
    columns = dataset.values(
        [
            "id",
            "filepath",
            f"{gt_field}.detections.id",
            f"{gt_field}.detections.label",
            f"{gt_field}.detections.bounding_box",
            f"{pred_field}.detections.id",
            f"{pred_field}.detections.label",
            f"{pred_field}.detections.bounding_box",
            f"{pred_field}.detections.confidence",
        ]
    )
    # Class-agnostic, as Brain matches; ids follow the labels' order, hence these maps.
    gt, results = coco_from_relative(*columns[3:5], *columns[6:9])
    truth_at = dict(enumerate(_positions(columns[4]), 1))
    prediction_at = dict(enumerate(_positions(columns[7]), 1))
    coco_gt = load_gt(gt)
    coco_dt = load_results(coco_gt, results)
    evaluator = COCOeval(coco_gt, coco_dt, "bbox")
    params = evaluator.params
    params.useCats = 0  # Brain matches across classes
    params.iouThrs = np.array([brain._DETECTION_IOU])
    params.areaRng, params.areaRngLbl = [params.areaRng[0]], ["all"]
    params.maxDets = [max(100, max((len(p or []) for p in columns[5]), default=0))]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()

    n = len(columns[0])
    gt_labels, pred_labels, pred_scores = columns[3], columns[6], columns[8]
    mistakenness = [[None] * len(labels or []) for labels in gt_labels]
    mistakenness_loc = [[None] * len(labels or []) for labels in gt_labels]
    spurious = [[None] * len(labels or []) for labels in gt_labels]
    missing = [[None] * len(labels or []) for labels in pred_labels]
    matched: dict[tuple[int, int], tuple[str, float]] = {}
    for entry in evaluator.evalImgs:
        if entry is None:
            continue
        for det_id, gt_id in zip(entry["dtIds"], entry["dtMatches"][0]):
            i, k = prediction_at[det_id]
            if gt_id == 0 and pred_scores[i][k] > brain._MISSED_CONFIDENCE_THRESHOLD:
                missing[i][k] = True
        for gt_id, det_id in zip(entry["gtIds"], entry["gtMatches"][0]):
            i, g = truth_at[gt_id]
            if det_id == 0:
                spurious[i][g] = True
                continue
            _, p = prediction_at[int(det_id)]
            iou = float(mask_utils.iou([columns[7][i][p]], [columns[4][i][g]], [0])[0][0])
            same = float(gt_labels[i][g] == pred_labels[i][p])
            confidence = pred_scores[i][p]
            matched[i, g] = (pred_labels[i][p], confidence)
            mistakenness[i][g] = brain._compute_mistakenness_class_conf(confidence, same)
            mistakenness_loc[i][g] = brain._compute_mistakenness_loc_conf(confidence, iou)
    dataset.set_values(f"{gt_field}.detections.mistakenness", mistakenness)
    dataset.set_values(f"{gt_field}.detections.mistakenness_loc", mistakenness_loc)
    dataset.set_values(f"{gt_field}.detections.possible_spurious", spurious)
    dataset.set_values(f"{pred_field}.detections.possible_missing", missing)
    per_sample = [max((m for m in row if m is not None), default=-1.0) for row in mistakenness]
    dataset.set_values("mistakenness", per_sample)
    dataset.set_values("possible_missing", [sum(1 for m in row if m) for row in missing])
    dataset.set_values("possible_spurious", [sum(1 for s in row if s) for row in spurious])

    suspects = mistakes_view(dataset)
    ranked = sorted(
        (
            (m, i, g)
            for i, row in enumerate(mistakenness)
            for g, m in enumerate(row)
            if m is not None
        ),
        reverse=True,
    )
    top = []
    for m, i, g in ranked[:20]:
        top.append(
            {
                "file": columns[1][i],
                "label": gt_labels[i][g],
                "box": columns[4][i][g],
                "mistakenness": m,
                "mistakenness_loc": mistakenness_loc[i][g],
                "predicted": matched[i, g][0],
                "confidence": matched[i, g][1],
            }
        )
    return {
        "top": top,
        "possible_missing": int(sum(sum(1 for m in row if m) for row in missing)),
        "missing_above": brain._MISSED_CONFIDENCE_THRESHOLD,
        "possible_spurious": int(sum(sum(1 for s in row if s) for row in spurious)),
        "images": len(suspects),
        "view": MISTAKES_VIEW,
        "samples": n,
    }
