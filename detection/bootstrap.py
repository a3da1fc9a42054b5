"""Bootstrap intervals for COCO AP: match once with pycocotools, re-accumulate per replicate.

Re-running ``COCOeval`` on 1,000 resampled datasets takes minutes. Matching does not
depend on which other images are in the sample (pycocotools matches per image and
category), so it is done once; a replicate is then only a weight per image (how often the
resample drew it), and AP is pycocotools' ``accumulate`` with weighted counts: cumulative
true and false positives, the precision envelope, precision at the 101 recall points.
With every weight 1 the figures equal pycocotools' own to float precision (tested).
Replicates are vectorised in blocks; a paired comparison uses the same draws for both
models, so their difference is resampled over the same images.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pycocotools.cocoeval import COCOeval

from detection.cocoeval import load_gt, load_results

_BLOCK = 100  # replicates accumulated at once (memory: block x detections x IoU floats)


@dataclass
class ClassMatches:
    """One category's detections in pycocotools' accumulation order."""

    image: np.ndarray  # [D] index into MatchTable.image_ids
    true_positive: np.ndarray  # [T, D] bool
    ignored: np.ndarray  # [T, D] bool
    ground_truth: np.ndarray  # [N] non-ignored ground-truth boxes per image


@dataclass
class MatchTable:
    """pycocotools' matches of one evaluation (one area range, 100 detections per image)."""

    image_ids: list[int]
    class_names: list[str]
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    classes: list[ClassMatches]

    @classmethod
    def from_cocoeval(cls, evaluator: COCOeval, area_index: int = 0) -> MatchTable:
        """Reads ``evaluator.evalImgs`` (after ``evaluate()``) for one area range."""
        params = evaluator.params
        n_images, n_areas = len(params.imgIds), len(params.areaRng)
        max_det = params.maxDets[-1]
        per_class = []
        for k in range(len(params.catIds)):
            images, scores, matched, ignored = [], [], [], []
            ground_truth = np.zeros(n_images)
            for i in range(n_images):
                entry = evaluator.evalImgs[k * n_areas * n_images + area_index * n_images + i]
                if entry is None:
                    continue
                ground_truth[i] = np.count_nonzero(entry["gtIgnore"] == 0)
                count = len(entry["dtScores"][:max_det])
                images.append(np.full(count, i))
                scores.append(np.asarray(entry["dtScores"][:max_det], dtype=float))
                matched.append(entry["dtMatches"][:, :max_det])
                ignored.append(entry["dtIgnore"][:, :max_det])
            n_iou = len(params.iouThrs)
            if scores:
                order = np.argsort(-np.concatenate(scores), kind="mergesort")
                image = np.concatenate(images)[order]
                true_positive = (np.concatenate(matched, 1) > 0)[:, order]
                ignore = np.concatenate(ignored, 1).astype(bool)[:, order]
            else:
                image = np.zeros(0, int)
                true_positive = ignore = np.zeros((n_iou, 0), bool)
            per_class.append(ClassMatches(image, true_positive, ignore, ground_truth))
        names = [evaluator.cocoGt.cats[c]["name"] for c in params.catIds]
        return cls(
            list(params.imgIds),
            names,
            np.asarray(params.iouThrs),
            np.asarray(params.recThrs),
            per_class,
        )

    def average_precision(self, weights: np.ndarray) -> np.ndarray:
        """AP for each row of image weights.

        Args:
            weights: ``[R, N]``, how often each image counts in each replicate (``N`` as
                ``image_ids``; a row of ones is the evaluation itself, zeros leave an
                image out), in whole numbers.

        Returns:
            ``[R, K, T]`` AP per replicate, class and IoU threshold; NaN where the
            replicate holds no ground truth of that class (pycocotools' -1).
        """
        weights = np.atleast_2d(np.asarray(weights, dtype=float))
        if not np.array_equal(weights, np.round(weights)) or (weights < 0).any():
            raise ValueError("image weights are counts: whole numbers, none below 0")
        result = np.empty((weights.shape[0], len(self.classes), len(self.iou_thresholds)))
        for start in range(0, weights.shape[0], _BLOCK):
            block = weights[start : start + _BLOCK]
            for k, matches in enumerate(self.classes):
                result[start : start + _BLOCK, k] = _class_ap(
                    matches, block, self.recall_thresholds
                )
        return result


def _class_ap(matches: ClassMatches, weights: np.ndarray, recall_points: np.ndarray) -> np.ndarray:
    """``[R, T]`` AP of one class: pycocotools' accumulate with weighted counts.

    Only true-positive positions are needed: recall rises only there, so the first
    position reaching a recall point is one of them, and the precision envelope (the best
    precision at or after a position) peaks at one of them too, since precision falls at
    every false positive. One cumulative sum of the counted detections' weights per class
    serves every IoU threshold with the same ignored detections; the rest works on the
    true positives alone, every replicate at once: with whole-number weights, recall
    reaches a point where the true positives reach a whole count, so one search over the
    replicates' counts laid end to end finds every replicate's positions.
    """
    n_gt = weights @ matches.ground_truth  # [R]
    replicates, n_iou = weights.shape[0], matches.true_positive.shape[0]
    ap = np.zeros((replicates, n_iou))
    if matches.image.size == 0:
        return np.where(n_gt[:, None] == 0, np.nan, ap)
    per_detection = weights[:, matches.image]  # [R, D]
    # Detections that count in no sum here are left out: those of images no replicate
    # of the block draws (a subset's other images), and those every IoU threshold
    # ignores (outside an area range and unmatched).
    kept = per_detection.any(axis=0) & ~matches.ignored.all(axis=0)
    per_detection = per_detection[:, kept]
    true_positive, ignored = matches.true_positive[:, kept], matches.ignored[:, kept]
    safe_gt = np.where(n_gt > 0, n_gt, 1)[:, None]
    reaching = _counts_reaching(recall_points, safe_gt)  # [R, J]
    counted_sums: dict[bytes, np.ndarray] = {}
    for t in range(n_iou):
        counted = ~ignored[t]
        key = np.packbits(counted).tobytes()
        if key not in counted_sums:
            counted_sums[key] = np.cumsum(per_detection * counted, axis=1)
        positions = np.flatnonzero(true_positive[t] & counted)
        if positions.size == 0:
            continue  # no true positive: every recall point has precision 0
        seen = counted_sums[key][:, positions]  # tp + fp at each true positive
        tp = np.cumsum(per_detection[:, positions], axis=1)  # [R, P] whole counts
        precision = tp / (seen + np.spacing(1))
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        # The first position whose recall (tp / n_gt) reaches each point: pycocotools'
        # searchsorted(recall, points, "left"), as a count of the positions before it.
        # Each replicate's counts are lifted past the one before, so all are one sorted
        # array, searched once (exact: whole numbers far below 2**53).
        stride = max(tp[:, -1].max(), reaching.max()) + 1
        lift = np.arange(replicates)[:, None] * stride
        found = np.searchsorted((tp + lift).ravel(), reaching + lift, side="left")
        found -= np.arange(replicates)[:, None] * positions.size
        inside = found < positions.size
        reached = np.take_along_axis(envelope, np.minimum(found, positions.size - 1), axis=1)
        ap[:, t] = np.where(inside, reached, 0.0).sum(axis=1) / recall_points.size
    return np.where(n_gt[:, None] == 0, np.nan, ap)


def _counts_reaching(recall_points: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """``[R, J]`` the least whole count ``m`` whose recall ``m / n_gt`` (in floating
    point, as pycocotools divides) reaches each recall point, for each row's ``n_gt``
    (``[R, 1]``, whole numbers). The product ``point * n_gt`` is within a rounding of
    the answer, so the answer is among the five whole numbers around its ceiling."""
    guess = np.ceil(recall_points[None, :] * n_gt)  # [R, J]
    candidates = guess[..., None] + np.arange(-2.0, 3.0)  # [R, J, 5]
    reaches = (candidates >= 0) & (candidates / n_gt[..., None] >= recall_points[None, :, None])
    first = np.argmax(reaches, axis=-1)[..., None]  # reaching is monotone in the count
    return np.take_along_axis(candidates, first, axis=-1)[..., 0]


def match(
    gt: dict,
    results: list[dict],
    area_ranges: dict[str, list[float]] | None = None,
    relative_area: bool = False,
) -> dict[str, MatchTable]:
    """Runs pycocotools' matching once and returns a :class:`MatchTable` per area range.

    Args:
        gt: COCO ground truth.
        results: COCO results.
        area_ranges: ``{label: [low, high]}`` in the units of ``area``; default COCO's
            ``all`` only.
        relative_area: Measure every box (ground truth and detection) as a fraction of
            its image's area, so the ranges mean the same on 200x200 and 2048x1000 images.
    """
    coco_gt = load_gt(gt)
    coco_dt = load_results(coco_gt, results)
    if relative_area:
        for coco in (coco_gt, coco_dt):
            for annotation in coco.anns.values():
                image = coco_gt.imgs[annotation["image_id"]]
                _, _, w, h = annotation["bbox"]
                annotation["area"] = w * h / (image["width"] * image["height"])
    evaluator = COCOeval(coco_gt, coco_dt, "bbox")
    # pycocotools matches every image again for each area range; COCO's small, medium
    # and large are not read here, so by default "all" alone (a quarter of the work).
    ranges = area_ranges or {"all": evaluator.params.areaRng[0]}
    evaluator.params.areaRng = [list(r) for r in ranges.values()]
    evaluator.params.areaRngLbl = list(ranges)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
    labels = evaluator.params.areaRngLbl
    return {label: MatchTable.from_cocoeval(evaluator, a) for a, label in enumerate(labels)}


def resample_weights(n_images: int, replicates: int, seed: int) -> np.ndarray:
    """``[replicates, n_images]`` draw counts of a seeded bootstrap over images."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=replicates)


def summarise(ap: np.ndarray) -> dict[str, np.ndarray]:
    """``mAP50`` and ``mAP50-95`` per replicate and per class from ``[R, K, T]`` AP (IoU
    0.50 is the first threshold), averaged over the classes present as pycocotools does."""
    with np.errstate(invalid="ignore"), _quiet_nan_means():
        per_class_50 = ap[:, :, 0]
        per_class_50_95 = np.nanmean(ap, axis=2)
        return {
            "mAP50": np.nanmean(per_class_50, axis=1),
            "mAP50-95": np.nanmean(per_class_50_95, axis=1),
            "ap50": per_class_50,
            "ap50_95": per_class_50_95,
        }


@contextlib.contextmanager
def _quiet_nan_means() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN mean is a NaN, as meant
        yield


def interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    """The percentile interval of the finite bootstrap values (``None`` if there are none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]


def format_interval(ci: list[float] | None, digits: int = 4, signed: bool = False) -> str:
    """An :func:`interval` as ``[low, high]``; ``n/a`` where there is none (no replicates,
    or none finite). ``signed`` writes the signs of a difference's bounds."""
    if not ci:
        return "n/a"
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"[{ci[0]:{spec}}, {ci[1]:{spec}}]"


def p_value(differences: np.ndarray) -> float | None:
    """Two-sided bootstrap p-value of a paired difference being zero: twice the smaller
    share of replicates on either side of zero (ties count for both), at most 1."""
    finite = differences[np.isfinite(differences)]
    if finite.size == 0:
        return None
    below, above = np.mean(finite <= 0), np.mean(finite >= 0)
    return float(min(1.0, 2 * min(below, above)))


def holm_adjusted(p_values: list[float | None], replicates: int) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values of a family of tests (a comparison's classes):
    the i-th smallest of m times (m - i + 1), never below the one before it, at most 1.
    Below its adjusted p, a difference holds at that level with every test of the family
    counted: with six classes tested at 0.05, one passes by chance alone one time in four.
    A p of 0 (no replicate on the other side) is taken as ``1 / replicates``, the finest
    the bootstrap tells, so its adjusted value is an upper bound. ``None`` (a class
    without ground truth here) stays ``None`` and is not counted."""
    floor = 1 / replicates if replicates else 0.0
    ranked = sorted((max(p, floor), i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - rank) * p))
        adjusted[i] = running
    return adjusted


def figures(
    table: MatchTable, subset: np.ndarray | None, replicates: int, seed: int
) -> tuple[dict, dict[str, np.ndarray]]:
    """Point figures and their bootstrap intervals on ``subset`` of the images.

    Args:
        table: The matches.
        subset: Indices into ``table.image_ids`` (``None``: every image); the bootstrap
            draws that many images from the subset, with replacement.
        replicates: Bootstrap replicates (0: point figures only).
        seed: The draws' seed.

    Returns:
        The report's figures (``mAP50``, ``mAP50_ci``, ``mAP50-95``, ``mAP50-95_ci``,
        ``per_class``) and the replicates' summaries, for paired differences.
    """
    n = len(table.image_ids)
    chosen = np.arange(n) if subset is None else np.asarray(subset, dtype=int)
    point_weights = np.zeros((1, n))
    point_weights[0, chosen] = 1
    point = summarise(table.average_precision(point_weights))
    draws = np.zeros((replicates, n))
    if replicates:
        draws[:, chosen] = resample_weights(chosen.size, replicates, seed)
    replicated = summarise(table.average_precision(draws)) if replicates else None

    def ci(values_key: str, k: int | None = None) -> list[float] | None:
        if replicated is None:
            return None
        values = replicated[values_key] if k is None else replicated[values_key][:, k]
        return interval(values)

    found = {
        "images": int(chosen.size),
        "mAP50": float(point["mAP50"][0]),
        "mAP50_ci": ci("mAP50"),
        "mAP50-95": float(point["mAP50-95"][0]),
        "mAP50-95_ci": ci("mAP50-95"),
        "per_class": {
            name: {
                "ap50": float(point["ap50"][0, k]),
                "ap50_ci": ci("ap50", k),
                "ap50_95": float(point["ap50_95"][0, k]),
                "ap50_95_ci": ci("ap50_95", k),
            }
            for k, name in enumerate(table.class_names)
        },
    }
    return found, replicated
