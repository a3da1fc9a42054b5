"""Parity of our per-class numbers with direct pycocotools runs on fixed files.

Edge cases in tests/data: a class with ground truth and no predictions
(pitted_surface), a class with predictions and no ground truth (scratches), images with
no ground truth (one with a false positive), duplicate predictions, wrong classes.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detection.cocoeval import STAT_NAMES, CocoResult, evaluate

DATA = Path(__file__).parent / "data"
GT = DATA / "parity_gt.json"
DT = json.loads((DATA / "parity_dt.json").read_text())


def _pycocotools(cat_ids: list[int] | None = None, results: list | None = None) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(GT))
        evaluator = COCOeval(gt, gt.loadRes(results or DT), "bbox")
        if cat_ids is not None:
            evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.fixture(scope="module")
def ours() -> CocoResult:
    return evaluate(GT, DT)


def test_overall_stats_equal_pycocotools(ours: CocoResult) -> None:
    direct = _pycocotools()
    for name, value in zip(STAT_NAMES, direct):
        assert ours.stats[name] == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("category_id", [1, 2, 3, 4, 5, 6])
def test_per_class_ap_equals_a_single_category_run(ours: CocoResult, category_id: int) -> None:
    direct = _pycocotools([category_id])
    cls = next(c for c in ours.classes if c.category_id == category_id)
    for ours_value, direct_value in (
        (cls.ap50_95, direct[0]),
        (cls.ap50, direct[1]),
        (cls.ap75, direct[2]),
    ):
        if direct_value == -1:  # pycocotools' "undefined": no ground truth for the class
            assert math.isnan(ours_value)
        else:
            assert abs(ours_value - direct_value) <= 1e-9


def test_edge_cases_are_what_they_should_be(ours: CocoResult) -> None:
    by_name = {c.name: c for c in ours.classes}
    assert by_name["pitted_surface"].ap50 == 0.0 and by_name["pitted_surface"].detections == 0
    assert by_name["pitted_surface"].recall == 0.0
    assert math.isnan(by_name["scratches"].ap50) and by_name["scratches"].ground_truth == 0
    assert 0 < by_name["crazing"].ap50 <= 1


def test_best_f1_against_a_brute_force_threshold_sweep(ours: CocoResult) -> None:
    """P/R at the best-F1 confidence equal counting pycocotools' matches at that threshold."""
    for cls in ours.classes:
        if cls.ground_truth == 0 or cls.detections == 0:
            continue
        kept = [
            d
            for d in DT
            if d["category_id"] == cls.category_id and d["score"] >= cls.best_f1_confidence
        ]
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(GT))
            evaluator = COCOeval(gt, gt.loadRes(kept), "bbox")
            evaluator.params.catIds = [cls.category_id]
            evaluator.params.iouThrs = np.array([0.5])
            evaluator.evaluate()
        entries = [e for e in evaluator.evalImgs if e is not None and e["aRng"] == [0, 1e10]]
        tp = sum(int((e["dtMatches"][0] > 0).sum()) for e in entries)
        assert cls.recall == pytest.approx(tp / cls.ground_truth, abs=1e-12)
        assert cls.precision == pytest.approx(tp / len(kept), abs=1e-12)
        assert cls.f1 == pytest.approx(
            2 * cls.precision * cls.recall / (cls.precision + cls.recall)
        )


def test_precision_recall_at_a_threshold_is_the_brute_force_count(ours: CocoResult) -> None:
    """At each class's best-F1 confidence, the detections kept there give the best-F1
    point's P, R and F1 (as the brute-force sweep above counts them)."""
    from detection.cocoeval import precision_recall

    thresholds = {c.category_id: c.best_f1_confidence for c in ours.classes}
    kept = [
        d
        for d in DT
        if not math.isnan(thresholds[d["category_id"]])
        and d["score"] >= thresholds[d["category_id"]]
    ]
    found = precision_recall(GT, kept)
    for cls in ours.classes:
        if cls.ground_truth == 0 or cls.detections == 0:
            continue
        assert found[cls.name]["precision"] == pytest.approx(cls.precision, abs=1e-12)
        assert found[cls.name]["recall"] == pytest.approx(cls.recall, abs=1e-12)
        assert found[cls.name]["f1"] == pytest.approx(cls.f1, abs=1e-12)
    everything = precision_recall(GT, DT)
    assert {name: c["ground_truth"] for name, c in everything.items()} == {
        c.name: c.ground_truth for c in ours.classes
    }
    assert everything["pitted_surface"]["precision"] == 0.0  # no predictions
    assert math.isnan(everything["scratches"]["recall"])  # no ground truth
    assert all(c["detections"] == 0 for c in precision_recall(GT, []).values())


def test_empty_results_score_zero() -> None:
    result = evaluate(GT, [])
    assert result.stats["AP50"] == 0.0
    assert all(c.ap50 == 0.0 for c in result.classes if c.ground_truth)


def test_deterministic(ours: CocoResult) -> None:
    again = evaluate(GT, DT)
    assert again.stats == ours.stats
    assert [vars(c) for c in again.classes] == [vars(c) for c in ours.classes]


@pytest.mark.parametrize(
    ("classes", "sizes", "categories", "first_box"),
    [
        (["scratches", "patches"], [(200, 100), (50, 50)], [2, 1, 1], [20.0, 10.0, 100.0, 50.0]),
        (None, None, [1, 1, 1], [0.1, 0.1, 0.5, 0.5]),  # class-agnostic, relative (mistakes)
    ],
)
def test_coco_from_relative(
    classes: list[str] | None,
    sizes: list[tuple[int, int]] | None,
    categories: list[int],
    first_box: list[float],
) -> None:
    from detection.cocoeval import coco_from_relative

    gt_labels = [["patches", "scratches"], None, ["scratches"]]
    gt_boxes = [[[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.2, 0.2]], None, [[0.2, 0.2, 0.4, 0.4]]]
    scores = [[0.9, 0.8], None, [0.7]]
    sizes = sizes and [*sizes[:1], (10, 10), *sizes[1:]]
    gt, results = coco_from_relative(
        gt_labels, gt_boxes, gt_labels, gt_boxes, scores, classes, sizes
    )
    assert [image["id"] for image in gt["images"]] == [1, 2, 3]
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 3]
    assert (
        [a["image_id"] for a in gt["annotations"]] == [r["image_id"] for r in results] == [1, 1, 3]
    )
    assert [a["category_id"] for a in gt["annotations"]] == [r["category_id"] for r in results]
    assert [r["category_id"] for r in results] == categories
    assert gt["annotations"][0]["bbox"] == pytest.approx(first_box)
    assert [r["score"] for r in results] == [0.9, 0.8, 0.7]
    # The ground truth found by itself, in pixels or relative: AP 1 at every IoU.
    assert evaluate(gt, results).stats["AP50:95"] == pytest.approx(1.0)


_GOOD = {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ({"a": 1}, "expected a COCO results list"),
        ([[1, 2]], "result 0 is not a JSON object"),
        ([{"image_id": 1, "bbox": [1, 2, 3, 4]}], "result 0 lacks ['category_id', 'score']"),
        # `defects classify --out`'s predictions.json, given where detections are scored.
        (
            [{"file": "a.jpg", "top_k": [{"class": "crazing", "probability": 0.9}]}],
            "a classifier's classes per image (defects classify), not detections",
        ),
        ([_GOOD, {**_GOOD, "image_id": 999}], "result 1 names image 999, absent from"),
        ([{**_GOOD, "image_id": "img_31"}], "result 0 names image 'img_31', absent from"),
        ([{**_GOOD, "category_id": 77}], "category 77, absent from"),
        ([{**_GOOD, "category_id": 0}], "its categories: [1, 2, 3, 4, 5, 6]"),
        ([{**_GOOD, "bbox": [1, 2, -3, 4]}], "negative width or height in bbox [1, 2, -3, 4]"),
        ([{**_GOOD, "bbox": [1, 2, 3]}], "has bbox [1, 2, 3]; expected [x, y, width, height]"),
        ([{**_GOOD, "bbox": [1, 2, "3", 4]}], "four finite numbers"),
        ([{**_GOOD, "bbox": [1, 2, float("inf"), 4]}], "four finite numbers"),
        ([{**_GOOD, "score": float("nan")}], "has score nan; expected a finite number"),
        ([{**_GOOD, "score": "high"}], "has score 'high'"),
        ([{**_GOOD, "score": True}], "has score True"),
        ([_GOOD, {**_GOOD, "bbox": [0.0, 0.5, 0.0, 2.5], "score": 1}], None),
        ({"annotations": [_GOOD]}, None),
        ([], None),
    ],
)
def test_results_file_checks(tmp_path: Path, results: object, message: str | None) -> None:
    """A results file pycocotools would score into a meaningless mAP is refused, naming
    the file and the result; valid ones (a zero-width box, an int score) pass unchanged."""
    from converters.errors import ConversionError
    from detection.evaluate import read_ground_truth, read_results

    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    gt = read_ground_truth(GT)
    if message is None:
        expected = results["annotations"] if isinstance(results, dict) else results
        assert read_results(path, gt, GT) == expected
    else:
        with pytest.raises(ConversionError) as error:
            read_results(path, gt, GT)
        assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


_ANNOTATION = {
    "id": 1,
    "image_id": 1,
    "category_id": 1,
    "bbox": [1, 2, 3, 4],
    "area": 12,
    "iscrowd": 0,
}


_IMAGE = {"id": 1, "file_name": "a.jpg", "width": 50, "height": 50}


def _gt(**changes: object) -> dict:
    gt = {
        "images": [_IMAGE],
        "annotations": [dict(_ANNOTATION)],
        "categories": [{"id": 1, "name": "crazing"}],
    }
    return {**gt, **changes}


@pytest.mark.parametrize(
    ("gt", "message"),
    [
        ([], "not COCO ground truth"),
        (_gt(annotations={"1": _ANNOTATION}), "'annotations' is not a list"),
        (_gt(images=[[1]]), "images[0] is not a JSON object"),
        (_gt(categories=[{"id": 1}]), "categories[0] lacks ['name']"),
        # pycocotools' KeyError mid-evaluation (a hand-written file without areas).
        (_gt(annotations=[{**_ANNOTATION, "area": 1}, {"id": 2}]), "annotations[1] lacks"),
        (_gt(annotations=[{k: v for k, v in _ANNOTATION.items() if k != "area"}]), "['area']"),
        (_gt(annotations=[{k: v for k, v in _ANNOTATION.items() if k != "iscrowd"}]), "iscrowd"),
        (_gt(images=[{**_IMAGE, "id": [1]}]), "images[0] has id [1]; expected a number or"),
        (_gt(annotations=[{**_ANNOTATION, "image_id": None}]), "has image_id None"),
        # Two boxes of one id: pycocotools' index keeps one, and scores one box too few.
        (_gt(annotations=[_ANNOTATION, {**_ANNOTATION, "bbox": [9, 9, 3, 4]}]), "id 1 is given 2"),
        (_gt(images=[_IMAGE, _IMAGE]), "images id 1 is given 2 times"),
        # The report measures boxes against their image (COCO requires its size).
        (_gt(images=[{"id": 1, "width": 50}]), "images[0] lacks ['height']"),
        (_gt(images=[{**_IMAGE, "width": 0}]), "images[0] has width 0; expected a positive"),
        (_gt(images=[{**_IMAGE, "height": "50"}]), "has height '50'; expected a positive"),
        (_gt(images=[{**_IMAGE, "width": None}]), "has width None; expected a positive"),
        (_gt(images=[{**_IMAGE, "width": float("nan")}]), "has width nan; expected"),
        # pycocotools sorts the images' ids (a TypeError on numbers and strings together),
        # writes a matched box's id into a float array (a ValueError on a string), keeps
        # a box by its area (a negative one is in no range: never scored, without a
        # word) and ignores it by iscrowd's truth (the string "0" made a crowd).
        (
            _gt(images=[_IMAGE, {**_IMAGE, "id": "b"}]),
            "images ids mix numbers and strings; give one kind",
        ),
        (_gt(annotations=[{**_ANNOTATION, "area": -4}]), "has area -4; expected a number"),
        (_gt(annotations=[{**_ANNOTATION, "area": "12"}]), "has area '12'; expected"),
        (_gt(annotations=[{**_ANNOTATION, "iscrowd": "0"}]), "has iscrowd '0'; expected 0 or 1"),
        (_gt(categories=[{"id": 1, "name": None}]), "categories[0] has name None; expected"),
        (_gt(categories=[{"id": 1, "name": " "}]), "categories[0] has name ' '; expected"),
        (
            _gt(
                annotations=[{**_ANNOTATION, "iscrowd": True, "area": 0}, {**_ANNOTATION, "id": 2}]
            ),
            None,
        ),
        (_gt(annotations=[{**_ANNOTATION, "bbox": [1, 2, 3]}]), "has bbox [1, 2, 3]; expected"),
        (_gt(annotations=[{**_ANNOTATION, "bbox": [1, 2, "3", 4]}]), "four finite numbers"),
        (_gt(annotations=[{**_ANNOTATION, "bbox": [1, 2, -3, 4]}]), "negative width or height"),
        (_gt(annotations=[{**_ANNOTATION, "image_id": 7}]), "names image 7, which 'images'"),
        (_gt(annotations=[{**_ANNOTATION, "category_id": 0}]), "names category 0, which"),
        (_gt(annotations=[]), "no ground-truth box among its 1 images"),
        (_gt(), None),
        (
            _gt(images=[{**_IMAGE, "id": "a"}], annotations=[{**_ANNOTATION, "image_id": "a"}]),
            None,
        ),
        (_gt(annotations=[{**_ANNOTATION, "id": "x"}]), "annotations[0] has id 'x'; expected a"),
    ],
)
def test_ground_truth_file_checks(tmp_path: Path, gt: object, message: str | None) -> None:
    """Ground truth pycocotools would fail on with a traceback, or score silently wrong,
    is refused naming the file and the entry; valid files pass unchanged."""
    from converters.errors import ConversionError
    from detection.evaluate import read_ground_truth

    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    if message is None:
        assert read_ground_truth(path) == gt
    else:
        with pytest.raises(ConversionError) as error:
            read_ground_truth(path)
        assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


_FOLDERS_GT = {
    "images": [
        {"id": 10, "file_name": "a.jpg", "width": 50, "height": 50},
        {"id": 20, "file_name": "x/b.jpg", "width": 50, "height": 50},
        {"id": 30, "file_name": "y/b.jpg", "width": 50, "height": 50},
    ],
    "categories": [{"id": 1, "name": "crazing"}],
    "annotations": [],
}


def test_an_image_id_that_is_a_stem_names_its_image(tmp_path: Path) -> None:
    # ultralytics' save_json before file_name: {"image_id": "crazing_1", ...}.
    from converters.errors import ConversionError
    from detection.evaluate import read_results

    path = tmp_path / "results.json"
    result = {"image_id": "a", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}
    path.write_text(json.dumps([result]))
    assert read_results(path, _FOLDERS_GT, tmp_path / "gt.json")[0]["image_id"] == 10
    path.write_text(json.dumps([{**result, "image_id": "b"}]))  # two images' stem
    with pytest.raises(ConversionError, match="names image 'b', absent"):
        read_results(path, _FOLDERS_GT, tmp_path / "gt.json")


@pytest.mark.parametrize(
    ("file_name", "image_id", "expected"),
    [
        ("/data/images/val/a.jpg", 1, 10),  # defects predict: that run's own numbering
        ("a.jpg", "a", 10),  # ultralytics' save_json: the stem as image_id
        ("./a.jpg", 10, 10),
        ("C:\\data\\x\\b.jpg", 1, 20),  # written on Windows
        ("/data/y/b.jpg", 20, 30),  # the file named wins over another image's id
        ("b.jpg", 20, "'b.jpg' matches 2 images of"),
        ("data/x/b.jpg.png", 20, "matches no image of"),
        ("", 10, "matches no image of"),
    ],
)
def test_results_are_matched_to_images_by_file_name(
    tmp_path: Path, file_name: str, image_id: int | str, expected: int | str
) -> None:
    from converters.errors import ConversionError
    from detection.evaluate import read_results

    path = tmp_path / "results.json"
    other = {"image_id": 10, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}
    path.write_text(json.dumps([other, {**other, "image_id": image_id, "file_name": file_name}]))
    if isinstance(expected, int):
        read = read_results(path, _FOLDERS_GT, tmp_path / "gt.json")
        assert [r["image_id"] for r in read] == [10, expected]
        assert read[1]["file_name"] == file_name
    else:
        with pytest.raises(ConversionError, match="result 1's file_name") as error:
            read_results(path, _FOLDERS_GT, tmp_path / "gt.json")
        assert expected in str(error.value)


# Two classes with ids out of their list's order of 1, 2: YOLO's class i is the i-th listed.
_YOLO_GT = {
    "images": [
        {"id": 10, "file_name": "a.jpg", "width": 200, "height": 100},
        {"id": 20, "file_name": "x/b.jpg", "width": 50, "height": 50},
        {"id": 30, "file_name": "y/b.jpg", "width": 50, "height": 50},
        {"id": 40, "file_name": "c.png", "width": 100, "height": 100},
    ],
    "categories": [{"id": 7, "name": "crazing"}, {"id": 3, "name": "patches"}],
    "annotations": [],
}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"a.txt": "1 0.5 0.5 0.2 0.4 0.9\n0 0.25 0.5 0.5 1 0.25\n", "c.txt": ""},
            [(10, 3, [80, 30, 40, 40], 0.9), (10, 7, [0, 0, 100, 100], 0.25)],
        ),
        # Where ultralytics' predict writes them: its run folder's labels/.
        ({"labels/c.txt": "0 0.5 0.5 0.2 0.2 0.5\n"}, [(40, 7, [40, 40, 20, 20], 0.5)]),
        ({}, "no predictions.json and no .txt results here or in labels/ (defects predict"),
        ({"labels/notes.md": "x"}, "no .txt results here"),
        ({"d.txt": "0 0.5 0.5 0.2 0.2 0.5\n"}, "d.txt: names no image of "),
        ({"b.txt": "0 0.5 0.5 0.2 0.2 0.5\n"}, "gt.json (x/b.jpg, y/b.jpg), and a YOLO results"),
        ({"a.txt": "0 0.5 0.5 0.2 0.2\n"}, "a.txt: missing_confidence: line 1"),
        ({"a.txt": "2 0.5 0.5 0.2 0.2 0.5\n"}, "a.txt: unknown_class: line 1: class 2"),
        ({"a.txt": b"0 0.5 0.5 0.2 0.2 \xff\n"}, "a.txt: not text (byte 18 is not UTF-8)"),
    ],
)
def test_a_folder_of_yolo_results_is_read_as_coco_results(
    tmp_path: Path,
    files: dict[str, bytes] | dict[str, str],
    expected: list[tuple[int, int, list[int], float]] | str,
) -> None:
    from converters.errors import ConversionError
    from detection.evaluate import read_results

    folder = tmp_path / "run"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    if isinstance(expected, list):
        read = read_results(folder, _YOLO_GT, tmp_path / "gt.json")
        assert [(r["image_id"], r["category_id"], r["bbox"], r["score"]) for r in read] == [
            (image_id, category, pytest.approx(box), score)
            for image_id, category, box, score in expected
        ]
    else:
        with pytest.raises(ConversionError) as error:
            read_results(folder, _YOLO_GT, tmp_path / "gt.json")
        assert expected in str(error.value)


_OTHER_SPLITS = {"train": ["c.jpg", "images/train/d.jpg", "other/a.jpg"], "test": ["e.jpg"]}


@pytest.mark.parametrize(
    ("result", "elsewhere", "expected"),
    [
        # A whole folder predicted, one split scored: results on the others are set aside.
        # Each is recorded by the name its split gives it, however the result named it.
        ({"file_name": "/data/images/c.jpg"}, _OTHER_SPLITS, [("train", "c.jpg")]),
        ({"file_name": "d.jpg"}, _OTHER_SPLITS, [("train", "images/train/d.jpg")]),
        ({"file_name": "e.jpg"}, _OTHER_SPLITS, [("test", "e.jpg")]),
        ({"image_id": "d"}, _OTHER_SPLITS, [("train", "images/train/d.jpg")]),  # a stem
        ({"file_name": "a.jpg"}, _OTHER_SPLITS, 10),  # the split scored names it first
        ({"file_name": "z.jpg"}, _OTHER_SPLITS, "'z.jpg' matches no image of"),
        ({"image_id": 99}, _OTHER_SPLITS, "result 1 names image 99, absent"),
        ({"file_name": "c.jpg"}, None, "'c.jpg' matches no image of"),  # --gt: no splits
        ({"txt": "c.txt"}, _OTHER_SPLITS, [("train", "c.jpg")]),  # YOLO results files
        ({"txt": "c.txt"}, None, "c.txt: names no image of"),
    ],
)
def test_results_on_other_splits_are_left_out(
    tmp_path: Path,
    result: dict[str, int] | dict[str, str],
    elsewhere: dict[str, list[str]] | None,
    expected: int | list[tuple[str, str]] | str,
) -> None:
    from converters.errors import ConversionError
    from detection.evaluate import read_results

    kept = {"image_id": 10, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}
    if "txt" in result:
        path = tmp_path / "run"
        path.mkdir()
        (path / "a.txt").write_text("0 0.5 0.5 0.2 0.2 0.5\n")
        (path / result["txt"]).write_text("0 0.5 0.5 0.2 0.2 0.5\n")
    else:
        path = tmp_path / "results.json"
        path.write_text(json.dumps([kept, {**kept, **result}]))
    left_out: list = []
    if isinstance(expected, str):
        with pytest.raises(ConversionError) as error:
            read_results(path, _FOLDERS_GT, tmp_path / "gt.json", elsewhere, left_out)
        assert expected in str(error.value)
        return
    read = read_results(path, _FOLDERS_GT, tmp_path / "gt.json", elsewhere, left_out)
    if isinstance(expected, int):
        assert [r["image_id"] for r in read] == [10, expected] and left_out == []
    else:
        assert [r["image_id"] for r in read] == [10] and left_out == expected


def test_an_image_of_another_split_named_by_two_files_is_left_out_once(tmp_path: Path) -> None:
    # Results made elsewhere (a link or copy of the folder predicted too) name one train
    # image by two files, and its stem once more: the report counted three images.
    from detection.evaluate import read_results
    from detection.report import results_left_out

    kept = {"image_id": 10, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}
    named = [{"file_name": "/data/c.jpg"}, {"file_name": "/copy/c.jpg"}, {"image_id": "c"}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps([kept, *({**kept, **one} for one in named)]))
    left_out: list = []
    read_results(path, _FOLDERS_GT, tmp_path / "gt.json", _OTHER_SPLITS, left_out)
    assert results_left_out(left_out) == {"images": 1, "splits": ["train"]}


_YOLO_SPLIT_GT = {
    "images": [
        {"id": 1, "file_name": "images/val/f.jpg", "width": 50, "height": 50},
        {"id": 2, "file_name": "images/val/g.jpg", "width": 50, "height": 50},
    ],
    "categories": [{"id": 1, "name": "crazing"}],
    "annotations": [],
}


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("images/val/g.jpg", 2),
        # A YOLO dataset's images are named with their folders; results made on a copy
        # elsewhere named none of them ("matches no image").
        ("/data/steel/f.jpg", 1),
        ("/data/steel/h.jpg", ("train", "/d/images/train/h.jpg")),
        ("/data/steel/g.jpg", "matches 2 images of"),  # g.jpg is in train and in val
        ("/data/steel/z.jpg", "matches no image of"),
    ],
)
def test_a_result_from_another_folder_names_its_image_by_name_alone(
    tmp_path: Path, file_name: str, expected: int | str | tuple[str, str]
) -> None:
    from converters.errors import ConversionError
    from detection.evaluate import read_results

    path = tmp_path / "results.json"
    result = {"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}
    path.write_text(json.dumps([{**result, "file_name": file_name}]))
    elsewhere = {"train": ["/d/images/train/h.jpg", "/d/images/train/g.jpg"]}
    left_out: list = []
    if isinstance(expected, str):
        with pytest.raises(ConversionError, match=expected):
            read_results(path, _YOLO_SPLIT_GT, "gt", elsewhere, left_out)
    elif isinstance(expected, tuple):
        assert read_results(path, _YOLO_SPLIT_GT, "gt", elsewhere, left_out) == []
        assert left_out == [expected]
    else:
        read = read_results(path, _YOLO_SPLIT_GT, "gt", elsewhere, left_out)
        assert [r["image_id"] for r in read] == [expected]


@pytest.mark.parametrize(
    ("file_names", "expected"),
    [
        (["images/val/f.jpg", "images/val/f.jpg", "images/val/g.jpg"], [1, 1, 2]),
        # A folder predicted with a converter output (links to its images) inside: each
        # image twice, and each detection would count twice.
        (
            ["/data/steel/f.jpg", "images/val/g.jpg", "images/val/f.jpg"],
            "results 0 and 2 name image 'images/val/f.jpg' of gt by two files, "
            "'/data/steel/f.jpg' and 'images/val/f.jpg': the image was predicted twice",
        ),
        (["/a/g.jpg", "/b/g.jpg"], "results 0 and 1 name image 'images/val/g.jpg'"),
    ],
)
def test_results_naming_one_image_by_two_files_are_refused(
    tmp_path: Path, file_names: list[str], expected: list[int] | str
) -> None:
    from converters.errors import ConversionError
    from detection.evaluate import read_results

    path = tmp_path / "results.json"
    result = {"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}
    path.write_text(json.dumps([{**result, "file_name": name} for name in file_names]))
    if isinstance(expected, str):
        with pytest.raises(ConversionError, match=re.escape(expected)):
            read_results(path, _YOLO_SPLIT_GT, "gt")
    else:
        assert [r["image_id"] for r in read_results(path, _YOLO_SPLIT_GT, "gt")] == expected


def test_yolo_results_need_their_images_size(tmp_path: Path) -> None:
    from converters.errors import ConversionError
    from detection.evaluate import read_results

    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2 0.2 0.5\n")
    gt = {**_YOLO_GT, "images": [{"id": 10, "file_name": "a.jpg"}]}
    with pytest.raises(ConversionError, match="image 10 has no width and height, which YOLO"):
        read_results(tmp_path, gt, tmp_path / "gt.json")


def _one_class_gt(difficult: list[bool]) -> dict:
    # Boxes 20 px apart on one 200x200 image, so no detection overlaps two of them.
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200}],
        "categories": [{"id": 1, "name": "crazing"}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [30 * i, 0, 10, 10],
                "area": 100,
                "iscrowd": 0,
                "difficult": int(flag),
            }
            for i, flag in enumerate(difficult)
        ],
    }


def _on(box: int, score: float) -> dict:
    return {"image_id": 1, "category_id": 1, "bbox": [30 * box, 0, 10, 10], "score": score}


# PASCAL VOC ignores boxes marked difficult: a detection on one is neither right nor
# wrong, and missing one costs nothing. 101-point AP50 worked by hand.
@pytest.mark.parametrize(
    ("difficult", "results", "counted", "ignored"),
    [
        # The difficult box missed: counted, recall stops at 1/2 (51 of 101 points).
        ([False, True], [_on(0, 0.8)], 51 / 101, 1.0),
        # Found: counted it is a true positive; ignored, its detection is passed over.
        ([False, True], [_on(0, 0.8), _on(1, 0.9)], 1.0, 1.0),
        # A false positive first (box 5 has no ground truth): counted, precision 2/3 at
        # full recall; ignored, the detection on the difficult box no longer helps: 1/2.
        ([False, True], [_on(5, 0.95), _on(1, 0.9), _on(0, 0.8)], 2 / 3, 1 / 2),
        # Only difficult boxes: nothing to find once they are ignored (NaN, not 0).
        ([True], [_on(0, 0.9)], 1.0, math.nan),
        # No box difficult: the same figure either way.
        ([False, False], [_on(0, 0.9), _on(5, 0.8)], 51 / 101, 51 / 101),
    ],
    ids=["difficult missed", "difficult found", "false positive first", "only difficult", "none"],
)
def test_difficult_boxes_ignored_as_pascal_voc_does(
    difficult: list[bool], results: list[dict], counted: float, ignored: int
) -> None:
    gt = _one_class_gt(difficult)
    assert evaluate(gt, results).stats["AP50"] == pytest.approx(counted)
    scored = evaluate(gt, results, ignore_difficult=True)
    (crazing,) = scored.classes
    assert crazing.ground_truth == difficult.count(False)
    if math.isnan(ignored):
        assert math.isnan(crazing.ap50) and scored.stats["AP50"] == -1
    else:
        assert scored.stats["AP50"] == pytest.approx(ignored) == crazing.ap50


def test_ignoring_difficult_without_any_is_the_plain_evaluation(ours: CocoResult) -> None:
    assert evaluate(GT, DT, ignore_difficult=True).stats == ours.stats


@pytest.mark.parametrize("ignore_difficult", [False, True])
def test_without_sizes_every_other_figure_is_the_same(ignore_difficult: bool) -> None:
    gt = json.loads(GT.read_text())
    for annotation in gt["annotations"][::7]:
        annotation["difficult"] = 1
    whole = evaluate(gt, DT, ignore_difficult=ignore_difficult)
    alone = evaluate(gt, DT, ignore_difficult=ignore_difficult, sizes=False)
    by_size = {name for name in STAT_NAMES if name.endswith(("_small", "_medium", "_large"))}
    assert len(by_size) == 6 and all(alone.stats[name] == -1 for name in by_size)
    assert {n: v for n, v in alone.stats.items() if n not in by_size} == {
        n: v for n, v in whole.stats.items() if n not in by_size
    }
    assert any(whole.stats[name] > 0 for name in by_size)
    assert alone.classes == whole.classes and alone.pr_curves == whole.pr_curves


def test_scoring_leaves_its_inputs_as_they_were() -> None:
    """pycocotools writes into what it is given (``ignore`` on the ground truth; ``area``,
    ``id``, ``segmentation`` on results; relative areas for the size breakdowns); every
    scorer works on copies, so the same dicts score the same twice, and the caller's
    ground truth and results (a report's ``results.json``) stay as they were."""
    import copy

    from detection.bootstrap import match
    from detection.breakdowns import breakdowns
    from detection.tide import decompose

    gt = json.loads(GT.read_text())
    gt["annotations"][0]["iscrowd"] = 1  # pycocotools sets "ignore" from it
    gt["annotations"][1]["difficult"] = 1
    results = copy.deepcopy(DT)
    gt_before, results_before = copy.deepcopy(gt), copy.deepcopy(results)
    first = evaluate(gt, results).stats
    evaluate(gt, results, ignore_difficult=True)
    match(gt, results)
    breakdowns(gt, results, replicates=0)
    decompose(gt, results)
    assert gt == gt_before and results == results_before
    assert evaluate(gt, results).stats == first
