"""`defects compare` and the explained report: the report.json contract, identical models
differing by exactly 0, a better model found better, and the CLI's two forms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from detection.breakdowns import size_terciles
from detection.cli import main
from detection.cocoeval import evaluate
from detection.commands import _model_names
from detection.compare import compare
from detection.evaluate import evaluate_files
from detection.predict import export_onnx
from detection.report import past_the_image
from detection.weights import MODELS_DIR, weights_name
from tests.helpers import write_image

DATA = Path(__file__).resolve().parent / "data"
GT = DATA / "tide" / "neu_gt.json"
RESULTS = DATA / "tide" / "neu_dt.json"


def _perfect(gt: dict) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1}
        for a in gt["annotations"]
    ]


def test_the_report_contract(tmp_path: Path) -> None:
    gt, results = json.loads(GT.read_text()), json.loads(RESULTS.read_text())
    report = compare(gt, [results, _perfect(gt)], ["a", "b"], tmp_path, replicates=200)
    assert [m["name"] for m in report["models"]] == ["a", "b"]
    for model in report["models"]:
        assert {"mAP50", "mAP50_ci", "mAP50-95", "mAP50-95_ci", "per_class"} <= model.keys()
        low, high = model["mAP50_ci"]
        assert low <= model["mAP50"] <= high
    difference = report["difference"]
    keys = {"mAP50", "mAP50_ci", "p_value", "mAP50-95", "mAP50-95_ci", "per_class"}
    assert keys <= difference.keys()
    assert difference["mAP50"] == pytest.approx(
        report["models"][1]["mAP50"] - report["models"][0]["mAP50"]
    )
    assert difference["mAP50_ci"][0] > 0 and difference["p_value"] < 0.05  # b is better
    # Each class's p, and adjusted for the classes tested at once (Holm): never smaller.
    tested = [c for c in difference["per_class"].values() if c["p_value"] is not None]
    assert len(tested) >= 2
    for entry in tested:
        assert entry["p_value"] <= entry["p_holm"] <= 1
        assert entry["p_value_ap50_95"] <= entry["p_holm_ap50_95"] <= 1
    assert f"p, Holm: each class's p adjusted for the {len(tested)} classes tested at once" in (
        (tmp_path / "report.md").read_text()
    )
    for name in ("report.json", "report.md", "differences.png"):
        assert (tmp_path / name).is_file()
    assert json.loads((tmp_path / "report.json").read_text()) == report


@pytest.mark.parametrize("replicates", [1, 3])
def test_an_interval_that_misses_its_point_is_drawn_as_it_is(
    replicates: int, tmp_path: Path
) -> None:
    # A percentile interval need not hold its point: with one replicate it is that
    # replicate's value twice. matplotlib refused the negative error bar it made
    # ("'xerr' must not contain negative values", a traceback after the scoring).
    gt, results = json.loads(GT.read_text()), json.loads(RESULTS.read_text())
    halved = results[::2]
    report = compare(gt, [results, halved], ["a", "b"], tmp_path, replicates=replicates)
    difference = report["difference"]
    low, high = difference["mAP50_ci"]
    if replicates == 1:
        assert low == high != difference["mAP50"]
    rows = [(difference["mAP50"], difference["mAP50_ci"])]
    rows += [(entry["ap50"], entry["ap50_ci"]) for entry in difference["per_class"].values()]
    # The case this test is about: some point outside its interval.
    assert any(ci and not ci[0] <= value <= ci[1] for value, ci in rows)
    assert (tmp_path / "differences.png").stat().st_size > 0


def test_identical_predictions_differ_by_exactly_zero(tmp_path: Path) -> None:
    gt, results = json.loads(GT.read_text()), json.loads(RESULTS.read_text())
    report = compare(gt, [results, list(results)], ["a", "a-again"], tmp_path, replicates=200)
    difference = report["difference"]
    assert difference["mAP50"] == 0 and difference["mAP50-95"] == 0
    assert difference["mAP50_ci"] == [0, 0] and difference["p_value"] == 1
    for entry in difference["per_class"].values():
        assert entry["ap50_ci"] in ([0, 0], None)


@pytest.mark.parametrize("boxes", ["none", "crowd only"])
@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_ground_truth_without_a_box_is_refused(
    boxes: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defect-free images alone: every AP is undefined, and pycocotools' -1 was reported
    as mAP50 -1.0000, with a TIDE table of nan."""
    gt = json.loads(GT.read_text())
    gt["annotations"] = [] if boxes == "none" else [{**a, "iscrowd": 1} for a in gt["annotations"]]
    gt_path = tmp_path / "good_steel.json"
    gt_path.write_text(json.dumps(gt))
    runs = [str(RESULTS)] if command == "evaluate" else [str(RESULTS), str(RESULTS), "--names=a,b"]
    argv = [command, "--gt", str(gt_path), "--predictions", *runs, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert f"{gt_path}: no ground-truth box among its {len(gt['images'])} images" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "o").exists()


def test_a_yolo_split_without_a_box_is_refused(tmp_path: Path) -> None:
    from converters.errors import ConversionError
    from detection.evaluate import split_ground_truth

    (tmp_path / "images").mkdir()
    write_image(tmp_path / "images" / "good.jpg")
    yaml = f"path: {tmp_path}\ntrain: images\nval: images\nnames: [scratch]\n"
    (tmp_path / "data.yaml").write_text(yaml)
    with pytest.raises(ConversionError, match=r"data.yaml \(split 'val'\): no ground-truth box"):
        split_ground_truth(tmp_path, "val")


def test_a_class_without_ground_truth_differs_by_n_a(tmp_path: Path) -> None:
    """A split where a class has no boxes (a small test set, a rare class): its AP is
    undefined for both models, and so is their difference: n/a, not '+nan'."""
    gt = json.loads(GT.read_text())
    absent = gt["categories"][-1]
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] != absent["id"]]
    results = json.loads(RESULTS.read_text())
    report = compare(gt, [results, _perfect(gt)], ["a", "b"], tmp_path, replicates=50)
    assert report["difference"]["per_class"][absent["name"]]["ap50"] is None
    markdown = (tmp_path / "report.md").read_text()
    assert "nan" not in markdown
    assert (
        f"| {absent['name']} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |"
        in markdown.splitlines()
    )


def test_three_models_give_a_list_of_differences_in_model_order(tmp_path: Path) -> None:
    gt, results = json.loads(GT.read_text()), json.loads(RESULTS.read_text())
    weaker = [r for r in results if r["score"] >= 0.5]
    report = compare(gt, [results, weaker, _perfect(gt)], ["a", "b", "c"], tmp_path, 100)
    assert [(d["model"], d["baseline"]) for d in report["difference"]] == [("b", "a"), ("c", "a")]


def test_compare_from_results_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The second is a `defects predict --out` folder: its predictions.json is read, not
    # the .txt results beside it (ultralytics' val with save_json and save_txt writes both).
    perfect = tmp_path / "perfect-run"
    (perfect / "labels").mkdir(parents=True)
    (perfect / "predictions.json").write_text(json.dumps(_perfect(json.loads(GT.read_text()))))
    (perfect / "labels" / "unknown.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n")
    argv = ["compare", "--gt", str(GT), "--predictions", str(RESULTS), str(perfect)]
    assert main([*argv, "--out", str(tmp_path / "out"), "--bootstrap", "100"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["neu_dt", "perfect-run"]
    assert report["models"][1]["predictions"] == str(perfect / "predictions.json")
    assert report["models"][1]["mAP50"] == 1.0
    assert "perfect-run - neu_dt: mAP50 +" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("bootstrap", "said", "footnote"),
    [
        ("100", "a: mAP50 +0.0000 [+0.0000, +0.0000], p 1.000", None),
        ("0", "a: mAP50 +0.0000 n/a, p n/a", "no bootstrap replicates, so no interval or p"),
    ],
)
def test_the_console_and_report_say_what_is_undefined(
    bootstrap: str,
    said: str,
    footnote: str | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["compare", "--gt", str(GT), "--predictions", str(RESULTS), str(RESULTS)]
    argv += ["--names", "a,a-again", "--out", str(tmp_path / "out"), "--bootstrap", bootstrap]
    assert main(argv) == 0
    assert said in capsys.readouterr().err
    markdown = (tmp_path / "out" / "report.md").read_text()
    # The slice has boxes of two of its six classes: the other four have no AP to differ.
    assert "a class without ground truth among these images has no AP to differ" in markdown
    assert (footnote in markdown) if footnote else ("bootstrap replicates, so" not in markdown)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--predictions", str(RESULTS)], "at least two models"),
        (["--predictions", str(RESULTS), str(RESULTS), "--names", "a"], "2 different names"),
        (["--predictions", str(RESULTS), str(RESULTS), "--names", "a,a"], "2 different names"),
        (["--predictions", str(RESULTS), str(RESULTS), "--names", "a,"], "2 different names"),
        (["--predictions", str(RESULTS), str(RESULTS)], "is given 2 times: give --names"),
        (["--predictions", str(RESULTS), str(DATA / "nowhere.json")], "nowhere.json: no such"),
        (
            ["--predictions", str(RESULTS), str(DATA)],
            f"{DATA}: no predictions.json and no .txt results here or in labels/ (defects "
            "predict --out writes predictions.json",
        ),
    ],
)
def test_compare_errors_are_one_clear_line(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "--gt", str(GT), *extra, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("sources", "names"),
    [
        # Each file's own name where they differ: a run's folder, a file's stem.
        (["weights/a/best.pt", "weights/b/best.pt"], ["a", "b"]),
        (["weights/a/best.pt", "exported/small.onnx"], ["a", "small"]),
        # Ultralytics' runs/detect/NAME/weights/best.pt is known by NAME, not "weights".
        (
            ["runs/detect/train/weights/best.pt", "runs/detect/train2/weights/best.pt"],
            ["train", "train2"],
        ),
        # One run's best and last: named by as much of their paths as tells them apart.
        (
            ["weights/r/best.pt", "weights/r/last.pt", "weights/s/best.pt"],
            ["r/best.pt", "r/last.pt", "s"],
        ),
        (["one/r/best.pt", "two/r/best.pt"], ["one/r/best.pt", "two/r/best.pt"]),
        (["runs/a/weights/best.pt", "runs/a/weights/last.pt"], ["a/best.pt", "a/last.pt"]),
        # A checkpoint against its ONNX export.
        (["weights/r/best.pt", "weights/r/best.onnx"], ["r/best.pt", "r/best.onnx"]),
        (
            ["models/m/model.pt", "models/m/model.onnx", "models/m/model.int8.onnx"],
            ["m/model.pt", "m/model.onnx", "m/model.int8.onnx"],
        ),
    ],
)
def test_models_are_named_apart_without_names(
    sources: list[str], names: list[str], tmp_path: Path
) -> None:
    paths = [tmp_path / source for source in sources]
    assert _model_names(None, paths, results=False) == names


def test_a_released_name_is_named_apart_by_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beside its own export, the released name is told apart by its model.pt, wherever
    # compare runs (it was named by the folder compare ran in: "fz5/neu-det").
    monkeypatch.chdir(tmp_path)
    onnx = MODELS_DIR / "neu-det" / "model.onnx"
    names = _model_names(None, [Path("neu-det"), onnx], results=False)
    assert names == ["neu-det/model.pt", "neu-det/model.onnx"]
    # A predictions folder of that name is no released model.
    (tmp_path / "neu-det").mkdir()
    other = tmp_path / "runs" / "neu-det"
    names = _model_names(None, [Path("neu-det"), other], results=True)
    assert names == [f"{tmp_path.name}/neu-det", "runs/neu-det"]


@pytest.mark.parametrize(
    ("weights", "name"),
    [
        ("neu-det", "neu-det"),  # a released name as it is
        (MODELS_DIR / "neu-det" / "model.pt", "neu-det"),
        (MODELS_DIR / "neu-det" / "model.int8.onnx", "neu-det"),  # an export is its run's
        ("runs/detect/exp/weights/last.pt", "exp"),
        ("weights/model.pt", "weights"),  # a model.pt is its folder's, whatever its name
        ("exported/small.onnx", "small"),
    ],
)
def test_weights_are_named_as_evaluate_and_compare_report_them(
    weights: Path | str, name: str
) -> None:
    assert weights_name(weights) == name


@pytest.mark.parametrize(
    ("sources", "names"),
    [
        (["a/predictions.json", "b/predictions.json"], ["a", "b"]),
        (
            ["runs/x/predictions.json", "more/x/predictions.json"],
            ["runs/x", "more/x"],
        ),
    ],
)
def test_results_are_named_apart_without_names(
    sources: list[str], names: list[str], tmp_path: Path
) -> None:
    paths = [tmp_path / source for source in sources]
    assert _model_names(None, paths, results=True) == names


def test_names_are_checked_before_any_model_predicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def predict(*_: object) -> None:
        pytest.fail("the models predicted before their names were checked")

    monkeypatch.setattr("detection.commands._predict_for_comparison", predict)
    argv = ["compare", "--data", str(tmp_path), "--weights", "neu-det", "neu-det"]
    assert main([*argv, "--names", "only-one", "--out", str(tmp_path / "out")]) == 2
    assert "--names needs 2 different names" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_from_weights(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    """A checkpoint against its ONNX export: each run by its own backend, unasked."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained / "best.pt", run / "best.pt")
    onnx = export_onnx(run / "best.pt")
    argv = ["compare", "--data", str(tiny_data), "--weights", str(run / "best.pt"), str(onnx)]
    argv += ["--device", "cpu", "--bootstrap", "50", "--iou", "0.6"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [model["name"] for model in report["models"]] == ["run/best.pt", "run/best.onnx"]
    assert [model["backend"] for model in report["models"]] == ["torch", "onnx"]
    assert report["difference"]["mAP50"] == pytest.approx(0, abs=0.02)
    # How the predictions were made is on record, as in an evaluation's report.
    assert report["prediction_settings"]["nms_iou"] == 0.6
    assert "tta" not in report["prediction_settings"]
    settings = "NMS IoU 0.6, each image bordered by 16 grey pixels."
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert settings in markdown
    # Each model's speed here, one after the other, and against the first.
    speeds = [model["speed"] for model in report["models"]]
    assert all(speed["images"] == report["images"] and speed["seconds"] > 0 for speed in speeds)
    ratio = speeds[1]["images_per_second"] / speeds[0]["images_per_second"]
    # ... at each model's own image size (the time grows with its square).
    imgsz = yaml.safe_load((trained / "args.yaml").read_text())["imgsz"]
    assert [speed["imgsz"] for speed in speeds] == [imgsz, imgsz]
    assert f"| run/best.onnx | onnx | {imgsz} px | {speeds[1]['seconds']:.1f} | " in markdown
    assert f"| {ratio:.2f}x |" in markdown and "| 1.00x |" in markdown
    # --backend given runs every model by it.
    argv = ["compare", "--data", str(tiny_data), "--weights", str(onnx), str(onnx)]
    argv += ["--names", "a,b", "--backend", "torch", "--out", str(tmp_path / "refused")]
    assert main(argv) == 2


def test_the_evaluation_report_explains(tmp_path: Path) -> None:
    report = evaluate_files(RESULTS, GT, tmp_path / "a", replicates=200, seed=1)
    again = evaluate_files(RESULTS, GT, tmp_path / "b", replicates=200, seed=1)
    assert report["mAP50_ci"] == again["mAP50_ci"]  # seeded
    assert report["mAP50"] == report["metrics"]["AP50"]
    assert report["errors"]["ap50"] == pytest.approx(100 * report["mAP50"])
    assert set(report["errors"]["dAP"]) >= {"classification", "missed", "false_positives"}
    assert {"single-defect", "multi-defect", "size-small", "size-large"} <= set(
        report["breakdowns"]
    )
    assert all("ap50_ci" in c for c in report["per_class"])
    # The terciles' bounds, read as a person would say them (no 'to inf').
    low, high = size_terciles(json.loads(GT.read_text()))
    spans = [report["breakdowns"][f"size-{s}"]["definition"] for s in ("small", "medium", "large")]
    assert [span.split(" of their image")[0] for span in spans] == [
        f"boxes of up to {low:.4f}",
        f"boxes of {low:.4f} to {high:.4f}",
        f"boxes of over {high:.4f}",
    ]
    markdown = (tmp_path / "a" / "report.md").read_text()
    for section in ("## How sure", "## Why it falls short", "## Breakdowns"):
        assert section in markdown
    assert "## How sure: 95% bootstrap intervals" in markdown
    assert "| class | AP50 | 95% interval | AP50:95 | 95% interval |" in markdown
    assert "| subset | images | boxes | mAP50 | 95% interval | mAP50:95 |" in markdown
    # Every fix defined here: no n/a cell, so no note explaining one.
    assert "n/a: the fix leaves" not in markdown
    assert (tmp_path / "a" / "errors.png").is_file()


def test_the_report_gives_the_figures_with_difficult_boxes_ignored_beside(tmp_path: Path) -> None:
    gt = json.loads(GT.read_text())
    plain = evaluate_files(RESULTS, GT, tmp_path / "plain", replicates=0)
    assert plain["difficult_ignored"] is None
    assert "difficult" not in (tmp_path / "plain" / "report.md").read_text()
    for annotation in gt["annotations"][::10]:  # 15 of the slice's 145 boxes
        annotation["difficult"] = 1
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    report = evaluate_files(RESULTS, tmp_path / "gt.json", tmp_path / "marked", replicates=0)
    # The main figures still count every box; the difficult ones change only the other.
    assert report["metrics"] == plain["metrics"]
    ignored = report["difficult_ignored"]
    assert ignored["boxes"] == 15
    assert ignored["mAP50"] == evaluate(gt, json.loads(RESULTS.read_text()), True).stats["AP50"]
    assert ignored["mAP50"] != report["mAP50"]
    assert sum(c["ground_truth"] for c in ignored["per_class"].values()) == 145 - 15
    markdown = (tmp_path / "marked" / "report.md").read_text()
    assert "the 15 boxes marked difficult" in markdown


def test_a_report_folder_is_written_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An earlier report's example images once stayed among the new ones (another model's
    # errors in errors/<type>/), and --out could point at any folder.
    evaluate_files(RESULTS, GT, tmp_path / "r", replicates=0)
    (tmp_path / "r" / "stale_from_another_model.jpg").write_bytes(b"old")
    gt, results = json.loads(GT.read_text()), json.loads(RESULTS.read_text())
    compare(gt, [results, results], ["a", "b"], tmp_path / "r", replicates=0)
    assert not (tmp_path / "r" / "stale_from_another_model.jpg").exists()
    assert not (tmp_path / "r" / "errors.png").exists()  # evaluate's, not compare's
    evaluate_files(RESULTS, GT, tmp_path / "r", replicates=0)  # and back
    assert not (tmp_path / "r" / "differences.png").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    arguments = ["--predictions", str(RESULTS), "--gt", str(GT), "--out", str(tmp_path / "mine")]
    assert main(["evaluate", *arguments]) == 2
    assert "no report.json" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_classes_without_ground_truth_are_said_to_be_left_out_of_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """parity_gt.json has no scratches box: its mAP is over 5 of the 6 classes, said in
    the report and on the console; without that category, nothing to say."""
    gt, results = DATA / "parity_gt.json", DATA / "parity_dt.json"
    argv = ["evaluate", "--predictions", str(results), "--gt", str(gt), "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    said = (
        "mAP averages 5 of 6 classes: scratches has no ground-truth box in `parity_gt`, "
        "and pycocotools leaves a class without one out of every mean"
    )
    markdown = (tmp_path / "a" / "report.md").read_text()
    assert f"**Classes not scored:** {said}" in markdown
    err = " ".join(capsys.readouterr().err.split())
    assert f"note: {said}" in err
    # Without replicates, one sentence says so, not a table of n/a intervals.
    assert "No intervals: this evaluation drew no bootstrap replicates" in markdown
    assert "| class | AP50 | 95% interval |" not in markdown
    assert "| subset | images | boxes | mAP50 | mAP50:95 | what |" in markdown
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    figures = f"mAP50 {report['mAP50']:.4f} mAP50:95 {report['mAP50-95']:.4f}"
    assert f"{figures} (no intervals: --bootstrap 0)" in err and "n/a" not in err
    scored = [c["ap50"] for c in report["per_class"] if c["ground_truth"]]
    assert report["mAP50"] == pytest.approx(sum(scored) / 5, abs=1e-12)
    # compare says it once, for every model (the same ground truth).
    argv = ["compare", "--gt", str(gt), "--predictions", str(results), str(results)]
    assert main([*argv, "--names", "a,b", "--bootstrap", "0", "--out", str(tmp_path / "c")]) == 0
    said = said.replace(" in `parity_gt`", "")
    text = (tmp_path / "c" / "report.md").read_text()
    assert text.count(f"**Classes not scored:** {said}") == 1
    assert " ".join(capsys.readouterr().err.split()).count(f"note: {said}") == 1
    five = json.loads(gt.read_text())
    five["categories"] = [c for c in five["categories"] if c["name"] != "scratches"]
    (tmp_path / "five.json").write_text(json.dumps(five))
    kept = [r for r in json.loads(results.read_text()) if r["category_id"] != 6]
    (tmp_path / "kept.json").write_text(json.dumps(kept))
    argv = ["evaluate", "--predictions", str(tmp_path / "kept.json"), "--gt"]
    assert main([*argv, str(tmp_path / "five.json"), "--out", str(tmp_path / "b")]) == 0
    assert "Classes not scored" not in (tmp_path / "b" / "report.md").read_text()
    argv = ["compare", "--gt", str(tmp_path / "five.json"), "--predictions"]
    argv += [str(tmp_path / "kept.json")] * 2 + ["--names", "a,b", "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "d")]) == 0
    assert "Classes not scored" not in (tmp_path / "d" / "report.md").read_text()
    assert "mAP averages" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("annotations", "lacking"),
    [
        ([(1, 0), (2, 0), (2, 0)], {"rust": 2}),  # rust: two boxes the model cannot find
        ([(1, 0), (2, 1)], {}),  # rust a crowd region alone: pycocotools ignores it
        ([(1, 0), (2, 1), (2, 0)], {"rust": 1}),
        ([(1, 0)], {}),  # no rust at all: not scored, not missed
    ],
)
def test_the_classes_a_model_lacks_are_counted_as_pycocotools_scores_them(
    annotations: list[tuple[int, int]], lacking: dict
) -> None:
    from detection.evaluate import classes_not_in_model

    gt = {
        "categories": [{"id": 1, "name": "patches"}, {"id": 2, "name": "rust"}],
        "annotations": [{"category_id": c, "iscrowd": crowd} for c, crowd in annotations],
    }
    assert classes_not_in_model(gt, {0: "patches"}) == lacking


def test_a_ground_truth_class_the_model_lacks_is_said_to_cost_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Steel annotated with NEU-DET's classes and one more (rust): the released model
    cannot find rust, so its boxes are scored AP 0; the report says why."""
    from tests.helpers import voc_xml, write_image, write_xml

    src = tmp_path / "voc"
    for i in range(4):
        write_image(src / "JPEGImages" / f"s{i}.jpg", 200, 200, seed=i)
        objects = [("patches", 20, 20, 90, 90), ("rust", 120, 120, 180, 180)]
        write_xml(src / "Annotations" / f"s{i}.xml", voc_xml(f"s{i}.jpg", objects, (200, 200)))
    classes = "crazing,inclusion,patches,pitted_surface,rolled-in_scale,scratches,rust"
    argv = ["convert", str(src), "--out", str(tmp_path / "data"), "--classes", classes]
    assert main([*argv, "--split", "0.5,0.5"]) == 0
    argv = ["evaluate", "--weights", "neu-det", "--data", str(tmp_path / "data"), "--bootstrap"]
    assert main([*argv, "0", "--backend", "onnx", "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["classes_not_in_model"] == {"rust": 2}
    assert [c["ap50"] for c in report["per_class"] if c["name"] == "rust"] == [0.0]
    said = (
        "rust (2 boxes) is not a class of the model, so its boxes all count as missed (AP 0) "
        "and lower the mAP"
    )
    assert f"**Classes the model lacks:** {said}" in (tmp_path / "r" / "report.md").read_text()
    assert f"note: {said}" in " ".join(capsys.readouterr().err.split())
    # compare --weights says it of each model that lacks it (here both).
    models = [str(MODELS_DIR / "neu-det" / name) for name in ("model.onnx", "model.int8.onnx")]
    argv = ["compare", "--data", str(tmp_path / "data"), "--weights", *models]
    assert main([*argv, "--bootstrap", "0", "--out", str(tmp_path / "c")]) == 0
    compared = json.loads((tmp_path / "c" / "report.json").read_text())
    assert [m["classes_not_in_model"] for m in compared["models"]] == [{"rust": 2}] * 2
    text = (tmp_path / "c" / "report.md").read_text()
    err = " ".join(capsys.readouterr().err.split())
    for model in compared["models"]:
        assert f"**{model['name']}, classes the model lacks:** {said}" in text
        assert f"note: {model['name']}: {said}" in err


def test_results_cut_at_a_high_confidence_are_said_to_be(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # predict's default --conf 0.25 fed to evaluate: a lower mAP that is not the model's.
    results = json.loads(RESULTS.read_text())
    assert min(r["score"] for r in results) < 0.051  # a detector's usual cut, 0.05
    full = evaluate_files(RESULTS, GT, tmp_path / "full", replicates=0)
    assert "stop at confidence" not in (tmp_path / "full" / "report.md").read_text()
    cut = [r for r in results if r["score"] >= 0.25]
    (tmp_path / "cut.json").write_text(json.dumps(cut))
    argv = ["evaluate", "--predictions", str(tmp_path / "cut.json"), "--gt", str(GT)]
    assert main([*argv, "--out", str(tmp_path / "cut"), "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "cut" / "report.json").read_text())
    lowest = min(r["score"] for r in cut)
    assert report["lowest_score"] == lowest and report["mAP50"] < full["mAP50"]
    said = f"Cut short: results stop at confidence {lowest:.3g}"
    assert said in (tmp_path / "cut" / "report.md").read_text().replace("**", "")
    assert said in capsys.readouterr().err
    # compare says which model's results are cut: its "difference" is the cut's.
    argv = ["compare", "--gt", str(GT), "--predictions", str(RESULTS), str(tmp_path / "cut.json")]
    argv += ["--names", "full,quarter", "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "c")]) == 0
    text = (tmp_path / "c" / "report.md").read_text().replace("**", "")
    assert f"quarter, cut short: results stop at confidence {lowest:.3g}" in text
    assert "full, cut short" not in text
    assert "quarter, cut short: results stop" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("boxes", "past"),
    [
        ([[10, 10, 50, 50]], 0),
        ([[0, 0, 200, 200]], 0),  # the whole image
        ([[150, 10, 53, 20]], 0),  # 3 pixels over a 200-pixel side: within 2 %
        ([[150, 10, 60, 20]], 1),  # 10 over: the right edge
        ([[10, 150, 20, 60]], 1),  # the bottom edge
        ([[120, 130, 180, 190], [10, 10, 40, 40]], 1),  # [x1, y1, x2, y2] of one far box
    ],
)
def test_boxes_past_the_image_are_counted(boxes: list, past: int) -> None:
    gt = {"images": [{"id": 1, "width": 200, "height": 200}, {"id": 2}]}
    results = [{"image_id": 1, "bbox": box} for box in boxes]
    results.append({"image_id": 2, "bbox": [500, 500, 900, 900]})  # its size is not given
    assert past_the_image(results, gt) == {"results": past, "of": len(results)}


@pytest.mark.parametrize(
    ("answered", "crowd", "expected", "said"),
    [
        (range(1, 21), False, {"images": 0, "of": 20, "boxes": 0}, False),
        (range(1, 19), False, {"images": 2, "of": 20, "boxes": 4}, False),  # a tenth: not said
        (range(1, 18), False, {"images": 3, "of": 20, "boxes": 6}, True),
        ([], False, {"images": 20, "of": 20, "boxes": 40}, True),
        # Crowd boxes are not scored, so their image does not count; nor one without boxes.
        (range(1, 19), True, {"images": 1, "of": 19, "boxes": 2}, False),
    ],
)
def test_images_no_result_names_are_counted(
    answered: range | list[int], crowd: bool, expected: dict, said: bool
) -> None:
    from detection.report import images_unanswered, results_warnings

    gt = {
        "images": [{"id": i} for i in range(1, 22)],  # 21 has no box
        "annotations": [
            {"image_id": i, "iscrowd": int(crowd and i == 20)} for i in range(1, 21) for _ in "ab"
        ],
    }
    results = [{"image_id": i, "bbox": [1, 1, 5, 5], "score": 0.5} for i in answered]
    unanswered = images_unanswered(results, gt)
    assert unanswered == expected
    warnings = results_warnings({"unanswered": unanswered}, "b")
    assert [label for label, _ in warnings] == (["b, images without results"] if said else [])


def test_results_given_as_corners_are_said_to_be(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # [x1, y1, x2, y2] where COCO wants [x, y, width, height]: pycocotools misses nearly
    # every box without a word (the release's val results so: mAP50 0.136 against 0.746).
    results = json.loads(RESULTS.read_text())
    gt = json.loads(GT.read_text())
    sizes = {image["id"]: image for image in gt["images"]}
    assert past_the_image(results, gt)["results"] == 0  # the file as it is
    corners = [{**r, "bbox": [*r["bbox"][:2], r["bbox"][0] + r["bbox"][2],
                              r["bbox"][1] + r["bbox"][3]]} for r in results]  # fmt: skip
    past = past_the_image(corners, gt)["results"]
    assert past > 0.1 * len(corners) and all(sizes[r["image_id"]].get("width") for r in corners)
    (tmp_path / "corners.json").write_text(json.dumps(corners))
    argv = ["evaluate", "--predictions", str(tmp_path / "corners.json"), "--gt", str(GT)]
    assert main([*argv, "--out", str(tmp_path / "e"), "--bootstrap", "0"]) == 0
    said = f"Boxes past the image: {past} of {len(corners)} results reach past their image"
    assert said in (tmp_path / "e" / "report.md").read_text().replace("**", "")
    err = capsys.readouterr().err
    assert said in err and "most likely [x1, y1, x2, y2]" in err  # not taken for markup
    argv = [
        "compare",
        "--gt",
        str(GT),
        "--predictions",
        str(RESULTS),
        str(tmp_path / "corners.json"),
    ]
    assert main([*argv, "--names", "a,b", "--bootstrap", "0", "--out", str(tmp_path / "c")]) == 0
    text = (tmp_path / "c" / "report.md").read_text().replace("**", "")
    assert "b, boxes past the image:" in text and "a, boxes past the image" not in text


def _as_ultralytics_writes(gt: dict, shift: float) -> list[dict]:
    """The ground truth's boxes, moved by ``shift`` pixels, as ultralytics' val
    ``save_json`` writes results: ``image_id`` the file's stem, ``file_name`` its name."""
    names = {image["id"]: Path(image["file_name"]).name for image in gt["images"]}
    return [
        {
            "image_id": Path(names[a["image_id"]]).stem,
            "file_name": names[a["image_id"]],
            "category_id": a["category_id"],
            "bbox": [a["bbox"][0] + shift, a["bbox"][1], *a["bbox"][2:]],
            "score": 0.9 - 0.01 * index,
        }
        for index, a in enumerate(gt["annotations"])
    ]


def test_results_are_scored_on_a_datasets_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `evaluate --predictions R --data D` and `compare --predictions A B --data D`: the
    # split's ground truth found as --weights finds it, a YOLO dataset's from its labels,
    # so ultralytics' save_json results need no COCO file of their own.
    from converters.convert import convert
    from converters.synth import synth_dataset
    from tests.helpers import roboflow_export

    synth_dataset(tmp_path / "src", images=16, seed=3)
    converted = tmp_path / "converted"
    convert(tmp_path / "src", converted, ratios=(0.5, 0.5), seed=0)
    gt_path = converted / "annotations" / "instances_val.json"
    gt = json.loads(gt_path.read_text())
    for name, shift in (("near", 3.0), ("exact", 0.0)):
        results = _as_ultralytics_writes(gt, shift)
        (tmp_path / f"{name}.json").write_text(json.dumps(results))
    near = str(tmp_path / "near.json")
    yolo_only = roboflow_export(converted, tmp_path / "roboflow")
    reports = {}
    for form, truth in (("gt", gt_path), ("data", converted), ("labels", yolo_only)):
        argv = ["evaluate", "--predictions", near, f"--{'gt' if form == 'gt' else 'data'}"]
        out = tmp_path / f"report-{form}"
        assert main([*argv, str(truth), "--out", str(out), "--bootstrap", "0"]) == 0
        reports[form] = json.loads((out / "report.json").read_text())
    assert 0 < reports["gt"]["mAP50-95"] < 1
    assert reports["data"]["metrics"] == reports["gt"]["metrics"]
    assert reports["labels"]["metrics"] == reports["gt"]["metrics"]
    assert reports["data"]["ground_truth"] == str(gt_path)
    assert reports["labels"]["ground_truth"] == "YOLO labels of val"
    assert reports["labels"]["ground_truth_sha256"] is None
    assert "image size" not in (tmp_path / "report-gt" / "report.md").read_text()

    argv = ["compare", "--predictions", near, str(tmp_path / "exact.json")]
    assert main([*argv, "--data", str(yolo_only), "--out", str(tmp_path / "cmp")]) == 0
    compared = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert compared["models"][0]["mAP50-95"] == reports["gt"]["mAP50-95"]
    assert compared["models"][1]["mAP50-95"] == pytest.approx(1.0)
    capsys.readouterr()
    # One source of ground truth: both, or neither, is refused in one line.
    for extra in (["--gt", str(gt_path), "--data", str(converted)], []):
        for command in ("evaluate", "compare"):
            argv = [command, "--predictions", near, near, *extra, "--out", str(tmp_path / "x")]
            assert main(argv if command == "compare" else argv[:3] + argv[4:]) == 2
            assert "give --predictions" in capsys.readouterr().err


@pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy's overflow, said to the user
def test_boxes_far_outside_their_image_are_drawn_at_its_edges(
    tiny_data: Path, tmp_path: Path
) -> None:
    # Finite values whose corner is not (1e308 + 1e308): int() of it was an OverflowError
    # traceback in the report's examples; a box merely far off was drawn past any pixel.
    gt = json.loads((tiny_data / "annotations" / "instances_val.json").read_text())
    results = _perfect(gt)
    results[0]["bbox"] = [1e308, 1e308, 1e308, 1e308]
    results[1]["bbox"] = [-1e200, 5.0, 1e201, 10.0]
    (tmp_path / "results.json").write_text(json.dumps(results))
    out = tmp_path / "report"
    argv = ["evaluate", "--predictions", str(tmp_path / "results.json"), "--data", str(tiny_data)]
    assert main([*argv, "--out", str(out), "--bootstrap", "0"]) == 0
    assert sorted((out / "examples").iterdir())
