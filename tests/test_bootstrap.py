"""Bootstrap intervals: exact against pycocotools at weight 1, deterministic, and covering
the truth about 95% of the time on a synthetic case where the truth is known."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from detection.bootstrap import (
    ClassMatches,
    MatchTable,
    _counts_reaching,
    figures,
    holm_adjusted,
    interval,
    match,
    p_value,
    resample_weights,
    summarise,
)
from detection.breakdowns import image_subsets, size_terciles
from detection.cocoeval import evaluate, load_gt, load_results

DATA = Path(__file__).resolve().parent / "data"
CASES = {
    "edge-cases": (DATA / "parity_gt.json", DATA / "parity_dt.json"),
    "neu-det-slice": (DATA / "tide" / "neu_gt.json", DATA / "tide" / "neu_dt.json"),
    "every-error-type": (DATA / "tide" / "errors_gt.json", DATA / "tide" / "errors_dt.json"),
}


def _load(case: str) -> tuple[dict, list[dict]]:
    gt_path, results_path = CASES[case]
    return json.loads(gt_path.read_text()), json.loads(results_path.read_text())


@pytest.mark.parametrize("case", CASES)
def test_weight_one_is_pycocotools(case: str) -> None:
    gt, results = _load(case)
    point, _ = figures(match(gt, results)["all"], None, 0, 0)
    scored = evaluate(gt, results)
    assert point["mAP50"] == pytest.approx(scored.stats["AP50"], abs=1e-12)
    assert point["mAP50-95"] == pytest.approx(scored.stats["AP50:95"], abs=1e-12)
    for cls in scored.classes:
        found = point["per_class"][cls.name]
        assert found["ap50"] == pytest.approx(cls.ap50, abs=1e-12, nan_ok=True)
        assert found["ap50_95"] == pytest.approx(cls.ap50_95, abs=1e-12, nan_ok=True)


@pytest.mark.parametrize("case", CASES)
def test_a_subset_is_pycocotools_on_those_images(case: str) -> None:
    gt, results = _load(case)
    table = match(gt, results)["all"]
    subset = np.arange(0, len(table.image_ids), 3)
    kept = {table.image_ids[i] for i in subset}
    point, _ = figures(table, subset, 0, 0)
    sub_gt = {
        **gt,
        "images": [im for im in gt["images"] if im["id"] in kept],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in kept],
    }
    scored = evaluate(sub_gt, [r for r in results if r["image_id"] in kept])
    assert point["mAP50"] == pytest.approx(scored.stats["AP50"], abs=1e-12)
    assert point["mAP50-95"] == pytest.approx(scored.stats["AP50:95"], abs=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_an_area_range_is_pycocotools_at_that_range(case: str) -> None:
    # Outside a range, an unmatched detection is ignored at every IoU threshold; such
    # detections are left out of the sums, which must not change a figure.
    gt, results = _load(case)
    areas = sorted(a["area"] for a in gt["annotations"])
    low, high = areas[len(areas) // 3], areas[2 * len(areas) // 3]
    ranges = {"small": [0.0, low], "medium": [low, high], "large": [high, 1e10]}
    tables = match(gt, results, ranges)
    for label, area_range in ranges.items():
        point, _ = figures(tables[label], None, 0, 0)
        coco_gt = load_gt(gt)
        evaluator = COCOeval(coco_gt, load_results(coco_gt, results), "bbox")
        # One range, labelled "all" so that summarize() reports it as its first figures.
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [area_range], ["all"]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        assert point["mAP50-95"] == pytest.approx(evaluator.stats[0], abs=1e-12), label
        assert point["mAP50"] == pytest.approx(evaluator.stats[1], abs=1e-12), label


def test_a_weight_of_two_is_the_image_twice() -> None:
    gt, results = _load("every-error-type")
    table = match(gt, results)["all"]
    twice = table.image_ids[4]
    weights = np.ones((1, len(table.image_ids)))
    weights[0, 4] = 2
    found = summarise(table.average_precision(weights))
    doubled = copy.deepcopy(gt)
    copy_id = max(im["id"] for im in gt["images"]) + 1
    doubled["images"].append({**next(im for im in gt["images"] if im["id"] == twice)})
    doubled["images"][-1]["id"] = copy_id
    next_id = max(a["id"] for a in gt["annotations"]) + 1
    for annotation in [a for a in gt["annotations"] if a["image_id"] == twice]:
        doubled["annotations"].append({**annotation, "id": next_id, "image_id": copy_id})
        next_id += 1
    doubled_results = results + [
        {**r, "image_id": copy_id} for r in results if r["image_id"] == twice
    ]
    scored = evaluate(doubled, doubled_results)
    assert found["mAP50"][0] == pytest.approx(scored.stats["AP50"], abs=1e-12)
    assert found["mAP50-95"][0] == pytest.approx(scored.stats["AP50:95"], abs=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_replicates_searched_at_once_are_each_as_searched_alone(case: str) -> None:
    # The replicates' true-positive counts are laid end to end and searched once: a row
    # computed among others must be that row computed alone.
    gt, results = _load(case)
    table = match(gt, results)["all"]
    weights = resample_weights(len(table.image_ids), 7, seed=5)
    weights[3] = 0  # a replicate with no ground truth of any class
    together = table.average_precision(weights)
    for r in range(len(weights)):
        alone = table.average_precision(weights[r : r + 1])[0]
        np.testing.assert_allclose(together[r], alone, rtol=0, atol=1e-15)
    assert np.isnan(together[3]).all()


def test_the_count_reaching_each_recall_point_is_the_least_one_that_does() -> None:
    points = np.linspace(0.0, 1.00, 101)
    n_gt = np.arange(1, 400, dtype=float)[:, None]
    reaching = _counts_reaching(points, n_gt)
    for row, n in enumerate(n_gt[:, 0]):
        counts = np.arange(n + 1)
        # By scanning, with pycocotools' division: recall is count / ground truth.
        least = [counts[counts / n >= point][0] for point in points]
        assert reaching[row].tolist() == least, n
    # A recall point above 1 needs more true positives than there is ground truth.
    assert (_counts_reaching(np.array([1.001, 1.5]), n_gt) > n_gt).all()


@pytest.mark.parametrize(
    ("weights", "error"),
    [
        (np.full((1, 5), 0.5), "whole numbers"),
        (np.array([[1, 1, -1, 1, 1]]), "none below 0"),
    ],
)
def test_image_weights_are_counts(weights: np.ndarray, error: str) -> None:
    gt, results = _load("edge-cases")
    table = match(gt, results)["all"]
    weights = np.resize(weights, (1, len(table.image_ids)))
    with pytest.raises(ValueError, match=error):
        table.average_precision(weights)


def test_same_seed_same_intervals_other_seed_other_intervals() -> None:
    gt, results = _load("neu-det-slice")
    table = match(gt, results)["all"]
    first, _ = figures(table, None, 200, 3)
    again, _ = figures(table, None, 200, 3)
    other, _ = figures(table, None, 200, 4)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert first["mAP50_ci"] != other["mAP50_ci"]
    low, high = first["mAP50_ci"]
    assert low <= first["mAP50"] <= high


def _synthetic_table(images: int, rng: np.random.Generator) -> MatchTable:
    """One class, one box per image; the detector finds it with probability 0.7 (score
    higher when found) and adds 0 to 2 false positives per image."""
    scores, image, correct = [], [], []
    for i in range(images):
        if rng.random() < 0.7:
            scores.append(rng.uniform(0.3, 1.0))
            image.append(i)
            correct.append(True)
        for _ in range(rng.integers(0, 3)):
            scores.append(rng.uniform(0.0, 0.8))
            image.append(i)
            correct.append(False)
    order = np.argsort(-np.array(scores), kind="mergesort")
    matches = ClassMatches(
        image=np.array(image)[order],
        true_positive=np.array(correct)[order][None, :],
        ignored=np.zeros((1, len(order)), bool),
        ground_truth=np.ones(images),
    )
    return MatchTable(
        list(range(images)), ["defect"], np.array([0.5]), np.linspace(0, 1, 101), [matches]
    )


def test_intervals_cover_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    population = _synthetic_table(100_000, rng)
    truth = summarise(population.average_precision(np.ones((1, 100_000))))["mAP50"][0]
    covered, trials = 0, 200
    for trial in range(trials):
        sample = _synthetic_table(150, rng)
        found, _ = figures(sample, None, 200, trial)
        low, high = found["mAP50_ci"]
        covered += low <= truth <= high
    assert 0.88 <= covered / trials <= 0.99


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        (np.zeros(100), 1.0),  # identical models
        (np.full(100, 0.01), 0.0),  # B always better
        (np.r_[np.full(90, 0.01), np.full(10, -0.01)], 0.2),
        (np.array([np.nan, np.nan]), None),
    ],
)
def test_p_value(differences: np.ndarray, expected: float | None) -> None:
    assert p_value(differences) == (expected if expected is None else pytest.approx(expected))


def test_interval_of_nothing_is_none() -> None:
    assert interval(np.array([np.nan])) is None


def test_resample_weights_draw_every_image_count_times_in_total() -> None:
    weights = resample_weights(50, 30, seed=1)
    assert weights.shape == (30, 50) and (weights.sum(axis=1) == 50).all()


def test_breakdown_subsets_and_terciles() -> None:
    gt, _ = _load("every-error-type")
    ids = [im["id"] for im in gt["images"]]
    subsets = image_subsets(gt, ids)
    boxes = {i: sum(a["image_id"] == i for a in gt["annotations"]) for i in ids}
    assert {ids[k] for k in subsets["single-defect"]} == {i for i in ids if boxes[i] == 1}
    assert {ids[k] for k in subsets["multi-defect"]} == {i for i in ids if boxes[i] >= 2}
    low, high = size_terciles(gt)
    relative = [a["bbox"][2] * a["bbox"][3] / 40000 for a in gt["annotations"]]
    assert np.mean(np.array(relative) <= low) == pytest.approx(1 / 3, abs=0.03)
    assert np.mean(np.array(relative) <= high) == pytest.approx(2 / 3, abs=0.03)


@pytest.mark.parametrize(
    ("p_values", "replicates", "expected"),
    [
        # R's p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm"): 0.03 0.06 0.06 0.02; the third
        # smallest (0.03 x 2) carries over to the largest (0.04 x 1).
        ([0.01, 0.04, 0.03, 0.005], 1000, [0.03, 0.06, 0.06, 0.02]),
        ([0.01, None, 0.02], 1000, [0.02, None, 0.02]),  # a class without AP is not tested
        ([0.3, 0.9], 1000, [0.6, 0.9]),
        ([0.6, 0.7], 1000, [1.0, 1.0]),  # never above 1
        # No replicate on the other side: at most 1 / replicates, so its adjusted bound.
        ([0.0, 0.5, None, 0.2], 1000, [0.003, 0.5, None, 0.4]),
        ([None], 1000, [None]),
    ],
)
def test_holm_adjusted_p_values(
    p_values: list[float | None],
    replicates: int,
    expected: list[float | None],
) -> None:
    expected = [None if p is None else pytest.approx(p) for p in expected]
    assert holm_adjusted(p_values, replicates) == expected
