"""Image-level screening: does the detector flag the images that hold a defect, and leave
the images of good steel alone?

On an inspection line the first decision is per image (stop the strip, send the image
to an operator), and mAP does not answer it: a model can place its boxes poorly and
still flag every defective image, or score well on defective images while flagging half
of the good ones, which mAP never sees (a defect-free image holds no box to miss). An
image is flagged when any of its detections is at or above its class's confidence; its
score is its most confident detection (0 with none).
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_CONF = 0.25  # ultralytics' predict default, and ours
FALSE_ALARM_RATES = (0.01, 0.05)
_Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson_interval(hits: int, total: int) -> list[float] | None:
    """The 95% Wilson score interval of a proportion ``hits / total`` (sound at 0 and at
    ``total``, where the normal approximation collapses to a point); None for no trials."""
    if total == 0:
        return None
    share = hits / total
    spread = _Z95**2 / total
    centre = (share + spread / 2) / (1 + spread)
    half = _Z95 * math.sqrt(share * (1 - share) / total + spread / (4 * total)) / (1 + spread)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """The probability that a random positive scores above a random negative, ties
    counting a half (the Mann-Whitney U statistic over both counts); None without one of
    each."""
    if not len(positives) or not len(negatives):
        return None
    ordered = np.sort(negatives)
    below = np.searchsorted(ordered, positives, side="left")
    tied = np.searchsorted(ordered, positives, side="right") - below
    return float((below + tied / 2).sum() / (len(positives) * len(negatives)))


def _flagged(flagged: np.ndarray) -> dict:
    hits, total = int(flagged.sum()), len(flagged)
    return {
        "flagged": hits,
        "of": total,
        "share": hits / total if total else None,
        "share_ci": wilson_interval(hits, total),
    }


def format_share(counts: dict) -> str:
    """Flagged images as "332 of 358: 92.7% [89.6%, 95.0%]" (n/a of none)."""
    if counts["share"] is None:
        return "n/a"
    low, high = counts["share_ci"]
    return f"{counts['flagged']} of {counts['of']}: {counts['share']:.1%} [{low:.1%}, {high:.1%}]"


def _flag_rates(
    label: str,
    flagged: np.ndarray,
    defective: np.ndarray,
    holds: dict[str, np.ndarray],
    files: list[str],
    confidence: float | None = None,
) -> dict:
    """Of the images with defects, how many are flagged (recall), and of those missed,
    how many hold each class; of the images without, how many are flagged (false
    alarms); the missed and the false alarms by file name. ``holds``: for each class,
    which images hold a box of it (``defective``: any); ``files``: each image's name."""
    return {
        "rule": label,
        **({"confidence": confidence} if confidence is not None else {}),
        "with_defects": _flagged(flagged[defective]),
        "without_defects": _flagged(flagged[~defective]),
        "missed_holding": {name: int((held & ~flagged).sum()) for name, held in holds.items()},
        "missed": [files[i] for i in np.flatnonzero(defective & ~flagged)],
        "false_alarms": [files[i] for i in np.flatnonzero(~defective & flagged)],
    }


def screening(gt: dict, results: list[dict], per_class: dict[int, float] | None = None) -> dict:
    """How the detections, read per image, sort the ground truth's images into defective
    (any box) and defect-free (none).

    Args:
        gt: COCO ground truth.
        results: COCO results on it.
        per_class: Each category id's confidence (operating points, such as each class's
            best F1); a class without one is flagged at :data:`DEFAULT_CONF`.

    Returns:
        The counts of images with and without defects (a box of a category the ground
        truth lists); the flag rates at one confidence
        of :data:`DEFAULT_CONF` for all, and at ``per_class``; with defect-free images,
        the AUROC of the images' scores and, at each of :data:`FALSE_ALARM_RATES`, the
        lowest confidence that flags no more of them and the recall there (chosen on
        these images, so optimistic on them).
    """
    ids = [image["id"] for image in gt["images"]]
    files = [str(image.get("file_name", image["id"])) for image in gt["images"]]
    row = {image_id: i for i, image_id in enumerate(ids)}
    names = {c["id"]: c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])}
    holds = {name: np.zeros(len(ids), bool) for name in names.values()}
    for annotation in gt["annotations"]:
        if annotation["image_id"] in row and annotation["category_id"] in names:
            holds[names[annotation["category_id"]]][row[annotation["image_id"]]] = True
    defective = np.logical_or.reduce(list(holds.values())) if holds else np.zeros(len(ids), bool)
    score = np.zeros(len(ids))
    flagged_default = np.zeros(len(ids), bool)
    flagged_per_class = np.zeros(len(ids), bool)
    thresholds = per_class or {}
    for result in results:
        i = row.get(result["image_id"])
        if i is None:
            continue
        score[i] = max(score[i], result["score"])
        flagged_default[i] |= result["score"] >= DEFAULT_CONF
        own = thresholds.get(result["category_id"], DEFAULT_CONF)
        flagged_per_class[i] |= result["score"] >= own

    def rates(label: str, flagged: np.ndarray, confidence: float | None = None) -> dict:
        return _flag_rates(label, flagged, defective, holds, files, confidence)

    rules = [rates("one confidence for all", flagged_default, DEFAULT_CONF)]
    if per_class:
        rules.append(rates("each class's own confidence", flagged_per_class))
    positives, negatives = score[defective], score[~defective]
    at_rates = []
    if len(negatives):
        ordered = np.sort(negatives)[::-1]
        for rate in FALSE_ALARM_RATES:
            allowed = math.floor(rate * len(negatives))
            # Strictly above the (allowed + 1)-th highest good image's score: at most
            # `allowed` good images flagged.
            floor = ordered[allowed] if allowed < len(ordered) else 0.0
            confidence = float(np.nextafter(floor, np.inf))
            at_rates.append(
                {
                    "false_alarm_rate_at_most": rate,
                    **rates(f"at most {rate:.0%} false alarms", score >= confidence, confidence),
                }
            )
    return {
        "images_with_defects": int(defective.sum()),
        "images_without_defects": int((~defective).sum()),
        "rules": rules,
        "auroc": auroc(positives, negatives),
        "at_false_alarm_rates": at_rates,
    }
