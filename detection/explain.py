"""What a report explains beyond the figures: how sure they are (bootstrap intervals), why
AP50 falls short (the TIDE decomposition) and where (breakdowns for steel).

Returns data only; :mod:`detection.report` writes and draws it.
"""

from __future__ import annotations

from detection.bootstrap import figures, match
from detection.breakdowns import breakdowns
from detection.tide import ERROR_TYPES, decompose

EXAMPLES_PER_ERROR = 3
LEVEL = 0.95


def explain(gt: dict, results: list[dict], replicates: int = 1000, seed: int = 0) -> dict:
    """Intervals, errors and breakdowns of ``results`` against ``gt``.

    Args:
        gt: COCO ground truth.
        results: COCO results.
        replicates: Bootstrap replicates over images (0: no intervals).
        seed: The bootstrap's seed (the same seed gives the same intervals).

    Returns:
        ``{"figures", "bootstrap", "errors", "breakdowns"}`` for ``report.json``.
    """
    table = match(gt, results)["all"]
    overall, _ = figures(table, None, replicates, seed)
    decomposition = decompose(gt, results)
    examples = {}
    for kind in ERROR_TYPES:
        found = [e for e in decomposition.errors if e.kind == kind]
        if kind == "missed":
            found.sort(key=lambda e: -e.truth["bbox"][2] * e.truth["bbox"][3])
        else:
            found.sort(key=lambda e: -e.detection["score"])
        chosen, images = [], set()
        for error in found:
            if error.image_id not in images:
                images.add(error.image_id)
                chosen.append(
                    {"image_id": error.image_id, "detection": error.detection, "truth": error.truth}
                )
            if len(chosen) == EXAMPLES_PER_ERROR:
                break
        examples[kind] = chosen
    errors = {
        "units": "AP50 points (0-100): the AP50 that fixing every error of a type recovers",
        "ap50": decomposition.ap50,
        "dAP": decomposition.delta,
        "per_class": decomposition.per_class_delta,
        "counts": decomposition.counts(),
        "examples": examples,
        "method": "TIDE (Bolya et al., ECCV 2020) at IoU 0.5, background below IoU 0.1, on "
        "pycocotools' matches; equal to tidecv 1.0.1 (tests/test_tide.py)",
    }
    return {
        "figures": overall,
        "bootstrap": {"replicates": replicates, "seed": seed, "level": LEVEL, "over": "images"},
        "errors": errors,
        "breakdowns": breakdowns(gt, results, replicates, seed, table),
    }
