"""The TIDE error decomposition: parity with tidecv, pycocotools' AP50 as its base, and
each error type on a case built for it."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from detection.cocoeval import evaluate
from detection.evaluate import evaluate_files
from detection.tide import SHORT_NAMES, decompose

DATA = Path(__file__).resolve().parent / "data"
REFERENCE = json.loads((DATA / "tide" / "reference.json").read_text())["cases"]
CASES = {
    "edge-cases": (DATA / "parity_gt.json", DATA / "parity_dt.json"),
    "every-error-type": (DATA / "tide" / "errors_gt.json", DATA / "tide" / "errors_dt.json"),
    "neu-det-slice": (DATA / "tide" / "neu_gt.json", DATA / "tide" / "neu_dt.json"),
}


def _load(case: str) -> tuple[dict, list[dict]]:
    gt_path, results_path = CASES[case]
    return json.loads(gt_path.read_text()), json.loads(results_path.read_text())


@pytest.mark.parametrize("case", CASES)
def test_the_reference_is_of_these_files(case: str) -> None:
    import hashlib

    gt_path, results_path = CASES[case]
    found = {
        "gt": hashlib.sha256(gt_path.read_bytes()).hexdigest(),
        "results": hashlib.sha256(results_path.read_bytes()).hexdigest(),
    }
    assert found == REFERENCE[case]["inputs_sha256"], "inputs changed: make tide-reference"


@pytest.mark.parametrize("case", CASES)
def test_equal_to_tidecv(case: str) -> None:
    reference = REFERENCE[case]
    found = decompose(*_load(case), convention="tidecv")
    assert found.ap50 == pytest.approx(reference["ap50"], abs=0.05)
    theirs = {**reference["main"], **reference["special"]}
    for kind, delta in found.delta.items():
        assert delta == pytest.approx(theirs[SHORT_NAMES[kind]], abs=0.05), kind
    assert {SHORT_NAMES[k]: n for k, n in found.counts().items()} == reference["counts"]


@pytest.mark.parametrize("case", CASES)
def test_the_base_is_pycocotools_ap50(case: str) -> None:
    gt, results = _load(case)
    found = decompose(gt, results)
    assert found.ap50 == pytest.approx(100 * evaluate(gt, results).stats["AP50"], abs=1e-9)


def test_both_conventions_agree_when_every_predicted_class_has_ground_truth() -> None:
    gt, results = _load("every-error-type")
    ours, theirs = decompose(gt, results), decompose(gt, results, convention="tidecv")
    assert ours.delta == pytest.approx(theirs.delta, abs=0.05)


BOX = [0, 0, 100, 100]


@pytest.mark.parametrize(
    ("detections", "expected", "perfect_once_fixed"),
    [
        ([(1, BOX, 0.9)], {}, None),  # a true positive
        ([(2, BOX, 0.9)], {"classification": 1}, "classification"),
        ([(1, [60, 0, 40, 100], 0.9)], {"localisation": 1}, "localisation"),  # IoU 0.4
        # IoU 0.4 in another class: no single fix finds the box, so it is missed too.
        ([(2, [60, 0, 40, 100], 0.9)], {"both": 1, "missed": 1}, None),
        ([(1, [300, 300, 20, 20], 0.9)], {"background": 1, "missed": 1}, None),
        ([(1, BOX, 0.9), (1, [2, 0, 100, 100], 0.8)], {"duplicate": 1}, "duplicate"),
        ([], {"missed": 1}, None),
    ],
)
def test_each_error_type(
    detections: list[tuple], expected: dict[str, int], perfect_once_fixed: str | None
) -> None:
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 400, "height": 400}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": BOX, "area": 1e4, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "crazing"}, {"id": 2, "name": "patches"}],
    }
    results = [
        {"image_id": 1, "category_id": c, "bbox": box, "score": s} for c, box, s in detections
    ]
    found = decompose(gt, results)
    assert {k: n for k, n in found.counts().items() if n} == expected
    if perfect_once_fixed:
        assert found.ap50 + found.delta[perfect_once_fixed] == pytest.approx(100.0)


def _two_classes_one_wholly_missed() -> tuple[dict, list[dict]]:
    """crazing's only box is missed; patches' is found: forgiving the misses leaves
    crazing no ground truth, so its per-class figure is undefined."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 400, "height": 400} for i in (1, 2)]
    boxes = [(1, 1, 1), (2, 2, 2)]  # id, image, class
    gt = {
        "images": images,
        "annotations": [
            {"id": a, "image_id": i, "category_id": c, "bbox": BOX, "area": 1e4, "iscrowd": 0}
            for a, i, c in boxes
        ],
        "categories": [{"id": 1, "name": "crazing"}, {"id": 2, "name": "patches"}],
    }
    return gt, [{"image_id": 2, "category_id": 2, "bbox": BOX, "score": 0.9}]


def test_every_error_type_has_a_figure_for_every_scored_class() -> None:
    found = decompose(*_two_classes_one_wholly_missed())
    assert found.ap50 == pytest.approx(50.0)
    for kind, per_class in found.per_class_delta.items():
        assert list(per_class) == ["crazing", "patches"], kind
    for kind in ("missed", "false_negatives"):
        assert math.isnan(found.per_class_delta[kind]["crazing"])
        assert found.per_class_delta[kind]["patches"] == 0.0
        # Only patches is left to score once crazing's misses are forgiven: AP50 100.
        assert found.delta[kind] == pytest.approx(50.0)
    # With nothing found at all, no class is left: the overall figure is undefined too.
    gt, _ = _two_classes_one_wholly_missed()
    assert math.isnan(decompose(gt, []).delta["missed"])


@pytest.mark.parametrize("found_nothing", [False, True])
def test_the_report_shows_an_undefined_fix_as_na_in_aligned_columns(
    found_nothing: bool, tmp_path: Path
) -> None:
    gt, results = _two_classes_one_wholly_missed()
    if found_nothing:
        results = []
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    evaluate_files(tmp_path / "results.json", tmp_path / "gt.json", tmp_path / "report")
    lines = (tmp_path / "report" / "report.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| error | count"))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    assert table[0].endswith("| dAP50 crazing | dAP50 patches |")
    assert {line.count("|") for line in table} == {6}, table  # every row has every column
    missed = next(line for line in table if line.startswith("| missed |"))
    assert "nan" not in "\n".join(table)
    expected = (
        "| missed | 2 | n/a | n/a | n/a |"
        if found_nothing
        else "| missed | 1 | 50.00 | n/a | 0.00 |"
    )
    assert missed == expected
    assert "n/a: the fix leaves no ground truth to score" in "\n".join(lines)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["errors"]["per_class"]["missed"]["crazing"] is None
    # Every box is COCO-large: pycocotools' -1 for the small and medium AP (no box to
    # score) stays in report.json and reads n/a in report.md.
    assert report["metrics"]["AP_small"] == report["metrics"]["AP_medium"] == -1
    large = "0.000" if found_nothing else "0.500"
    assert f"| AP small/medium/large n/a/n/a/{large} |" in lines[4]
