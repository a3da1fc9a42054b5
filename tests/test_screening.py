"""Image-level screening: flag rates with Wilson intervals and AUROC, checked against
scipy and scikit-learn, on ground truth with defect-free images and without."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detection.evaluate import evaluate_files
from detection.screening import auroc, screening, wilson_interval


@pytest.mark.parametrize(("hits", "total"), [(0, 10), (5, 10), (10, 10), (3, 358), (332, 358)])
def test_wilson_interval_matches_scipy(hits: int, total: int) -> None:
    from scipy.stats import binomtest

    expected = binomtest(hits, total).proportion_ci(method="wilson")
    assert wilson_interval(hits, total) == pytest.approx([expected.low, expected.high], abs=1e-12)


def test_wilson_interval_of_nothing() -> None:
    assert wilson_interval(0, 0) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_scikit_learn(seed: int) -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    # Rounded so that ties, within and across the two groups, are many.
    positives = rng.random(80).round(1)
    negatives = (rng.random(50) * 0.7).round(1)
    labels = np.r_[np.ones(80), np.zeros(50)]
    expected = roc_auc_score(labels, np.r_[positives, negatives])
    assert auroc(positives, negatives) == pytest.approx(expected, abs=1e-12)
    assert auroc(positives, np.array([])) is None


def _gt(defects: dict[int, list[str]], good: int) -> dict:
    """Images 1..n with the given classes' boxes, then ``good`` images without any."""
    categories = [{"id": 1, "name": "crazing"}, {"id": 2, "name": "scratches"}]
    ids = {c["name"]: c["id"] for c in categories}
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100}
              for i in range(1, len(defects) + good + 1)]  # fmt: skip
    annotations = [
        {"id": n, "image_id": image_id, "category_id": ids[name], "bbox": [10, 10, 20, 20],
         "area": 400, "iscrowd": 0}
        for n, (image_id, name) in enumerate(
            ((i, name) for i, names in defects.items() for name in names), 1
        )
    ]  # fmt: skip
    return {"images": images, "annotations": annotations, "categories": categories}


def _result(image_id: int, category_id: int, score: float) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": [10, 10, 20, 20],
            "score": score}  # fmt: skip


def test_screening_counts_flagged_images_by_rule() -> None:
    # Images 1-4 hold defects, 5-7 are good steel.
    gt = _gt({1: ["crazing"], 2: ["crazing", "scratches"], 3: ["scratches"], 4: ["crazing"]}, 3)
    results = [
        _result(1, 1, 0.9),
        _result(2, 2, 0.3),
        _result(3, 2, 0.2),  # below 0.25: missed there
        _result(4, 1, 0.1),  # below 0.25 and below crazing's own 0.15: missed at both
        _result(4, 2, 0.12),  # scratches' own is 0.1: flagged by it
        _result(5, 1, 0.4),  # a false alarm at 0.25
        _result(6, 2, 0.05),
    ]
    screened = screening(gt, results, {1: 0.15, 2: 0.1})
    assert (screened["images_with_defects"], screened["images_without_defects"]) == (4, 3)
    one, own = screened["rules"]
    assert (one["rule"], one["confidence"]) == ("one confidence for all", 0.25)
    assert one["with_defects"] == {
        "flagged": 2, "of": 4, "share": 0.5, "share_ci": wilson_interval(2, 4)
    }  # fmt: skip
    assert one["missed_holding"] == {"crazing": 1, "scratches": 1}
    assert (one["missed"], one["false_alarms"]) == (["3.jpg", "4.jpg"], ["5.jpg"])
    assert (one["without_defects"]["flagged"], one["without_defects"]["of"]) == (1, 3)
    assert own["with_defects"]["flagged"] == 4 and own["missed_holding"] == {
        "crazing": 0, "scratches": 0
    }  # fmt: skip
    assert own["without_defects"]["flagged"] == 1  # 0.05 is below scratches' 0.1
    # Each image's score is its best detection: 0.9, 0.3, 0.2, 0.12 against 0.4, 0.05, 0.
    assert screened["auroc"] == pytest.approx((3 + 2 + 2 + 2) / 12)
    # At most 1% (and 5%) of 3 good images: none; just above the best good score, 0.4.
    for at, rate in zip(screened["at_false_alarm_rates"], (0.01, 0.05), strict=True):
        assert at["false_alarm_rate_at_most"] == rate
        assert 0.4 < at["confidence"] < 0.4 + 1e-12
        assert at["without_defects"]["flagged"] == 0 and at["with_defects"]["flagged"] == 1


def test_screening_at_a_false_alarm_rate_allows_that_many() -> None:
    # 100 good images scored 0.00 .. 0.99: at most 5 may be flagged, the 5 above 0.94.
    gt = _gt({101: ["crazing"], 102: ["crazing"]}, 100)  # images 1-100 are good
    results = [_result(i, 1, (i - 1) / 100) for i in range(1, 101)]
    results += [_result(101, 1, 0.97), _result(102, 1, 0.93)]
    screened = screening(gt, results)
    assert len(screened["rules"]) == 1  # no per-class confidences given
    one_percent, five_percent = screened["at_false_alarm_rates"]
    assert one_percent["without_defects"]["flagged"] == 1
    assert five_percent["without_defects"]["flagged"] == 5
    assert 0.94 < five_percent["confidence"] < 0.9400001
    assert five_percent["with_defects"]["flagged"] == 1  # 0.97, not 0.93


@pytest.mark.parametrize("good", [0, 2])
def test_the_report_has_a_screening_section(tmp_path: Path, good: int) -> None:
    gt = _gt({1: ["crazing"], 2: ["scratches"], 3: ["crazing"]}, good)
    results = [_result(1, 1, 0.8), _result(2, 2, 0.6), _result(3, 1, 0.1)]
    results += [_result(4, 2, 0.3)] if good else []
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    report = evaluate_files(
        tmp_path / "results.json", tmp_path / "gt.json", tmp_path / "report", replicates=0
    )
    assert report["screening"]["images_without_defects"] == good
    from importlib.metadata import version

    assert report["software"]["pycocotools"] == version("pycocotools")  # what scored it
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Image-level screening: is there a defect?" in markdown
    assert "| one confidence for all | 0.250 | 2 of 3: 66.7% [" in markdown
    assert "| crazing 1 |" in markdown
    assert "Missed at 0.25: `3.jpg` (every rule's missed images" in markdown
    if good:
        assert "AUROC 0.833" in markdown and "1 of 2: 50.0% [" in markdown
        assert "| at most 1% false alarms |" in markdown
    else:
        assert "how often the model flags good steel is not measured" in markdown
        assert "AUROC" not in markdown


@pytest.mark.parametrize("good", [0, 2])
def test_compare_puts_each_models_flag_rates_side_by_side(tmp_path: Path, good: int) -> None:
    from detection.compare import compare

    gt = _gt({1: ["crazing"], 2: ["scratches"], 3: ["crazing"]}, good)
    keen = [_result(1, 1, 0.8), _result(2, 2, 0.6), _result(3, 1, 0.5)]
    keen += [_result(4, 2, 0.3)] if good else []
    shy = [_result(1, 1, 0.8), _result(2, 2, 0.2)]
    report = compare(gt, [keen, shy], ["keen", "shy"], tmp_path / "cmp", replicates=20)
    flagged = [m["screening"]["rules"][0]["with_defects"]["flagged"] for m in report["models"]]
    assert flagged == [3, 1]
    markdown = (tmp_path / "cmp" / "report.md").read_text()
    assert "images with defects flagged at confidence 0.25 |" in markdown
    assert "| 3 of 3: 100.0% [" in markdown and "| 1 of 3: 33.3% [" in markdown
    assert ("defect-free images flagged at confidence 0.25 | image AUROC |" in markdown) == bool(
        good
    )
    assert ("false alarms on good steel are not measured" in markdown) == (not good)
