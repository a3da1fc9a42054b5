"""Released models: the release command on a tiny run, and the shipped NEU-DET model
reproducing its card exactly."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from converters.convert import ConvertResult, convert
from converters.source import image_digest
from detection.cli import build_parser, main
from detection.cocoeval import evaluate
from detection.evaluate import evaluate_model
from detection.predict import (
    FLIPS,
    cpu_info,
    cuda_available,
    default_backend,
    int8_quantisation,
    load_detector,
)
from detection.release import (
    OPERATING_NMS_IOUS,
    TESTED_RELEASE,
    card_markdown,
    earlier_stages,
    measured_on_val,
    operating_points,
    score_onnx,
    split_fingerprint,
    training_stage,
    weakest_examples,
    without_overlapping,
)
from detection.report import _clean
from detection.splits import training_record
from detection.threads import cpu_threads
from detection.train import parse_overrides
from detection.weights import MAX_RELEASE_MB, MODELS_DIR, sha256
from tests.conftest import DEFECTS, NO_PLOTS
from tests.test_overlaps import _neu_strips

pytestmark = pytest.mark.slow
RELEASED = MODELS_DIR / TESTED_RELEASE


def test_release_writes_a_model_that_reproduces_its_card(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    argv = ["release", "--run", str(trained), "--data", str(tiny_data), "--name", "tiny"]
    assert main([*argv, "--models-dir", str(models)]) == 0
    released = models / "tiny"
    assert {p.name for p in released.iterdir()} >= {"model.pt", "model.onnx", "card.json"}
    card = json.loads((released / "card.json").read_text())
    assert card["model"]["weights_sha256"] == sha256(released / "model.pt")
    assert card["model"]["channels"] == 3  # colour images (1: grey, its card says so)
    assert (released / "model.pt").stat().st_size < 8 * 2**20  # weights only, no optimizer
    assert card["stages"][0]["epochs"] == 2 and card["stages"][0]["start"] == "yolo11n.yaml"
    assert "defects train --data" in card["stages"][0]["command"]
    speed = card["throughput"]
    assert speed["images_per_second"]["onnx_fp32_batch32"] > 0
    assert speed["timed"] == card["released"]  # timed by the release itself
    # Ratios at equal threads; ultralytics as it ships (its own thread count) timed beside.
    theirs = min(8, max(1, os.cpu_count() - 1))  # ultralytics.utils.NUM_THREADS
    assert speed["threads"] == {"every_path": cpu_threads(), "ultralytics_as_shipped": theirs}
    assert speed["images_per_second"]["ultralytics_as_shipped_batch32"] > 0
    assert f"as ultralytics ships, on its own {theirs})" in (released / "card.md").read_text()
    # Its training images, from the run's record: the released model says so of a split.
    train_images = {image_digest(p) for p in (tiny_data / "images" / "train").iterdir()}
    # ... and the scale it learnt defects at: the median training image at its imgsz.
    shapes = [cv2.imread(str(p)).shape for p in (tiny_data / "images" / "train").iterdir()]
    middle = len(shapes) // 2
    assert card["data"]["trained_on"] == {
        "images": len(train_images),
        "complete": True,
        "field_of_view": {
            "width": sorted(shape[1] for shape in shapes)[middle],
            "height": sorted(shape[0] for shape in shapes)[middle],
            "imgsz": card["model"]["imgsz"],
        },
        "images_sha256": sorted(train_images),
    }
    assert training_record(released / "model.pt").digests == train_images
    # The int8 export ships only within the tolerance, with its own figures and speed.
    int8 = card["int8"]
    assert int8["mAP50_below_fp32"] == pytest.approx(
        card["evaluation"]["pycocotools"]["mAP50"] - int8["pycocotools"]["mAP50"], abs=1e-12
    )
    shipped = int8["mAP50_below_fp32"] <= int8["tolerance"]
    assert (released / "model.int8.onnx").is_file() == shipped == (int8["onnx"] is not None)
    assert ("onnx_int8_batch32" in card["throughput"]["images_per_second"]) == shipped
    gt = json.loads((tiny_data / "annotations" / "instances_val.json").read_text())
    if shipped:
        assert int8["onnx_sha256"] == sha256(released / "model.int8.onnx")
        again = score_onnx(released / "model.int8.onnx", gt, tiny_data / "images" / "val")
        assert again == pytest.approx(int8["pycocotools"], abs=1e-12)
    # Flip TTA: its figures reproduce, for every shipped export, with its speed beside.
    tta = card["tta"]
    assert tta["settings"]["flips"] == list(FLIPS) and "--tta" in tta["command"]
    assert set(tta["pycocotools"]) == {"onnx_fp32"} | ({"onnx_int8"} if shipped else set())
    again = score_onnx(released / "model.onnx", gt, tiny_data / "images" / "val", tta=True)
    assert again == pytest.approx(tta["pycocotools"]["onnx_fp32"], abs=1e-12)
    assert card["throughput"]["over_ultralytics"]["onnx_fp32_batch32_tta"] > 0
    for weak in card["weaknesses"]:
        assert all((released / example).is_file() for example in weak["examples"])
    with_card = card["evaluation"]["pycocotools"]
    report = evaluate_model(released / "model.pt", tiny_data, tmp_path / "again", "val",
                            with_ultralytics=False)  # fmt: skip
    assert report["metrics"]["AP50"] == pytest.approx(with_card["mAP50"], abs=1e-12)
    assert report["metrics"]["AP50:95"] == pytest.approx(with_card["mAP50-95"], abs=1e-12)
    # The synthetic images are drawn apart: none overlaps another, and the card says so.
    assert card["evaluation"]["without_overlapping"] == {
        "images": 0,
        "of": len(gt["images"]),
        "pairs": 0,
        "pycocotools": pytest.approx(
            {"mAP50": with_card["mAP50"], "mAP50-95": with_card["mAP50-95"]}, abs=1e-12
        ),
    }
    markdown = (released / "card.md").read_text()
    assert "No val image overlaps a training image" in markdown
    assert f"{with_card['mAP50']:.4f}" in markdown and "## Known weaknesses" in markdown
    assert "--conf best-f1` keeps each class's detections" in markdown
    points = card["evaluation"]["operating_points"]
    assert points["chosen_on"] == "train" and points["measured_on"] == "val"
    assert set(points["per_class"]) == set(with_card["per_class"])
    # Its NMS IoU: of those tried, the best macro F1 on train; the search reproduces.
    search = {float(iou): f1 for iou, f1 in points["train_macro_f1_by_nms_iou"].items()}
    assert list(search) == list(OPERATING_NMS_IOUS)
    assert search[points["nms_iou"]] == max(search.values())
    again = _clean(
        operating_points(released / "model.onnx", tiny_data, nms_ious=OPERATING_NMS_IOUS)
    )
    assert json.loads(json.dumps(again)) == points
    assert f"| fp32, TTA | {tta['pycocotools']['onnx_fp32']['mAP50']:.4f} |" in markdown
    tta_points = tta["operating_points"]
    assert tta_points["chosen_on"] == "train"
    assert set(tta_points["per_class"]) == set(points["per_class"])
    # (a class never detected has no confidence: NaN, written to the card as null)
    again = _clean(operating_points(released / "model.onnx", tiny_data, tta=True))
    for name, point in tta_points["per_class"].items():
        assert again["per_class"][name] == pytest.approx(point, abs=1e-12)
    assert ("Operating points with TTA" in markdown) == any(
        point["confidence"] is not None for point in tta_points["per_class"].values()
    )
    # Nothing was staged inside the repository or the models folder.
    assert sorted(p.name for p in models.iterdir()) == ["tiny"]
    assert "Released" in capsys.readouterr().err
    # Over the size a release may take: refused before the evaluation, the release in
    # place untouched (every released version stays in git history).
    before = {p.name: sha256(p) for p in released.rglob("*") if p.is_file()}
    assert main([*argv, "--models-dir", str(models), "--max-mb", "1"]) == 2
    error = capsys.readouterr().err
    assert "tiny: the release would take" in error and "model.pt" in error, error
    assert "over its 1 MB" in error and "nothing was released" in error
    assert {p.name: sha256(p) for p in released.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in models.iterdir()) == ["tiny"]


def test_released_neu_det_reproduces_its_card(neu_converted: ConvertResult, tmp_path: Path) -> None:
    """The shipped model, re-scored on a fresh conversion of the real NEU-DET with the
    seeded split: the same split, and the card's figures to 1e-6."""
    card = json.loads((RELEASED / "card.json").read_text())
    out = neu_converted.out
    assert (
        split_fingerprint(json.loads((out / "manifest.json").read_text()))
        == (card["data"]["split_sha256"])
    )
    val_gt = out / "annotations" / "instances_val.json"
    assert sha256(val_gt) == card["data"]["val_ground_truth_sha256"]
    assert sha256(RELEASED / "model.pt") == card["model"]["weights_sha256"]
    report = evaluate_model(
        "neu-det", out, tmp_path / "report", "val", with_ultralytics=False, replicates=0
    )
    figures = card["evaluation"]["pycocotools"]
    assert report["metrics"]["AP50"] == pytest.approx(figures["mAP50"], abs=1e-6)
    assert report["metrics"]["AP50:95"] == pytest.approx(figures["mAP50-95"], abs=1e-6)
    # Trained on the seeded split's train images (NEU-DET holds one image twice:
    # patches_101 and patches_105), and on none of val.
    train_images = {image_digest(p) for p in (out / "images" / "train").iterdir()}
    assert set(card["data"]["trained_on"]["images_sha256"]) == train_images
    assert len(train_images) == card["data"]["counts"]["train"] - 1
    assert card["data"]["trained_on"]["complete"]
    field = card["data"]["trained_on"]["field_of_view"]
    assert field == {"width": 200, "height": 200, "imgsz": card["model"]["imgsz"]}
    assert report["seen_in_training"]["images"] == 0
    for cls in report["per_class"]:
        assert cls["ap50"] == pytest.approx(figures["per_class"][cls["name"]]["ap50"], abs=1e-6)
    # ... and without the 54 val images that overlap a training image (crops of one
    # strip: docs/neu-det-findings.md), as the card gives them.
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    without = without_overlapping(out, json.loads(val_gt.read_text()), results)
    recorded = card["evaluation"]["without_overlapping"]
    assert (without["images"], without["of"], without["pairs"]) == (
        recorded["images"], recorded["of"], recorded["pairs"]
    ) == (54, 358, 76)  # fmt: skip
    assert without["pycocotools"] == pytest.approx(recorded["pycocotools"], abs=1e-6)
    assert recorded["pycocotools"]["mAP50"] < figures["mAP50"] - 0.01
    # The operating points `predict --conf best-f1` applies: chosen on train, P/R on val.
    points = card["evaluation"]["operating_points"]
    # At the card's NMS IoU: the best macro F1 on train among those tried (a real choice
    # here). The tiny release above reproduces the search on train itself; here the
    # card's confidences give the card's figures on val (train has four times the images).
    search = {float(iou): f1 for iou, f1 in points["train_macro_f1_by_nms_iou"].items()}
    assert search[points["nms_iou"]] == max(search.values()) > min(search.values())
    assert points["chosen_on"] == "train"
    classes = [category["name"] for category in json.loads(val_gt.read_text())["categories"]]
    detector = load_detector(RELEASED / "model.onnx", "onnx", classes=classes)
    confidences = {name: point["confidence"] for name, point in points["per_class"].items()}
    again = measured_on_val(detector, out, confidences, points["nms_iou"])
    assert again["val_macro_f1"] == pytest.approx(points["val_macro_f1"], abs=1e-6)
    for name, point in points["per_class"].items():
        assert again["per_class"][name] == pytest.approx(point, abs=1e-6)
    # ... and the val images they flag, of 358 with defects (the card's sentence).
    assert _clean(again["images"]) == points["images"]
    assert points["images"]["with_defects"]["of"] == 358 and not points["images"][
        "without_defects"
    ]["of"]  # fmt: skip
    # The int8 export: its card figure again (to 0.002: int8 kernels differ between CPUs,
    # VNNI or not) and within the tolerance of fp32.
    int8 = card["int8"]
    assert sha256(RELEASED / "model.int8.onnx") == int8["onnx_sha256"]
    again = evaluate_model(
        "neu-det", out, tmp_path / "int8", "val", replicates=0, backend="onnx-int8"
    )
    assert again["weights_sha256"] == int8["onnx_sha256"]
    assert again["metrics"]["AP50"] == pytest.approx(int8["pycocotools"]["mAP50"], abs=0.002)
    assert report["metrics"]["AP50"] - again["metrics"]["AP50"] <= int8["tolerance"] == 0.01
    # Flip TTA (fp32), as the card's command scores it.
    with_tta = evaluate_model(
        "neu-det", out, tmp_path / "tta", "val", replicates=0, backend="onnx", tta=True
    )
    tta = card["tta"]["pycocotools"]["onnx_fp32"]
    assert with_tta["metrics"]["AP50"] == pytest.approx(tta["mAP50"], abs=1e-6)
    assert with_tta["metrics"]["AP50:95"] == pytest.approx(tta["mAP50-95"], abs=1e-6)
    # ... and the card's TTA operating points, measured on those same predictions.
    tta_points = card["tta"]["operating_points"]
    confidences = {name: point["confidence"] for name, point in tta_points["per_class"].items()}
    results = json.loads((tmp_path / "tta" / "results.json").read_text())
    again = measured_on_val(None, out, confidences, tta_points["nms_iou"], results)
    assert again["val_macro_f1"] == pytest.approx(tta_points["val_macro_f1"], abs=1e-6)
    for name, point in tta_points["per_class"].items():
        assert again["per_class"][name] == pytest.approx(point, abs=1e-6)
    assert _clean(again["images"]) == tta_points["images"]


def test_figures_without_the_val_images_that_overlap_training_ones(tmp_path: Path) -> None:
    # Twelve strips of three overlapping crops; seed 1 parts some across the split.
    _neu_strips(tmp_path / "NEU-DET", strips=12)
    root = convert(tmp_path / "NEU-DET", tmp_path / "out", ratios=(0.5, 0.5), seed=1).out
    gt = json.loads((root / "annotations" / "instances_val.json").read_text())
    split_of = json.loads((root / "manifest.json").read_text())["split_of_image"]
    split_by_number = {int(Path(n).stem.rsplit("_", 1)[1]): s for n, s in split_of.items()}

    def overlaps_training(number: int) -> bool:
        # Neighbouring crops of one strip are 40 pixels apart, overlapping; two apart, 80.
        return any(
            other // 3 == number // 3 and split_by_number.get(other) == "train"
            for other in (number - 1, number + 1)
        )

    overlapping = {
        image["id"]
        for image in gt["images"]
        if overlaps_training(int(Path(image["file_name"]).stem.rsplit("_", 1)[1]))
    }
    assert 0 < len(overlapping) < len(gt["images"])
    # A detector right on every image but those: perfect without them.
    results = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in gt["annotations"]
        if a["image_id"] not in overlapping
    ]

    without = without_overlapping(root, gt, results)

    assert (without["images"], without["of"]) == (len(overlapping), len(gt["images"]))
    assert without["pairs"] >= len(overlapping)
    assert without["pycocotools"] == {"mAP50": 1.0, "mAP50-95": 1.0}
    assert evaluate(gt, results).stats["AP50"] < 1.0  # with them, their misses count


def test_ultralytics_yolo_txt_results_score_as_their_coco_results(
    neu_converted: ConvertResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`evaluate --predictions runs/detect/NAME` on what ultralytics' own predict writes
    with save_txt=True, save_conf=True: the mAP of the same detections given as COCO
    results (to the six digits of its %g), named after its run, and the images it left
    out said."""
    from ultralytics import YOLO

    out = neu_converted.out
    gt = json.loads((out / "annotations" / "instances_val.json").read_text())
    images = gt["images"][::15]  # 24 of the 358
    paths = [str(out / "images" / "val" / image["file_name"]) for image in images]
    model = YOLO(str(RELEASED / "model.pt"))
    options = {"conf": 0.001, "imgsz": 416, "device": "cpu", "verbose": False}
    results = model.predict(
        paths, save_txt=True, save_conf=True, project=str(tmp_path), name="n416", **options
    )
    coco = [
        {
            "image_id": image["id"],
            "category_id": int(label) + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score,
        }
        for image, result in zip(images, results, strict=True)
        for (x1, y1, x2, y2), score, label in zip(
            result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), result.boxes.cls.tolist()
        )
    ]
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    run = tmp_path / "n416"
    assert len(list((run / "labels").glob("*.txt"))) == len(images)
    reports = {}
    for name, source in (
        ("run", run),
        ("labels", run / "labels"),
        ("coco", tmp_path / "coco.json"),
    ):
        argv = ["evaluate", "--predictions", str(source), "--data", str(out)]
        assert main([*argv, "--out", str(tmp_path / name), "--bootstrap", "0"]) == 0
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert reports["run"]["metrics"] == reports["labels"]["metrics"]
    assert reports["run"]["metrics"]["AP50"] > 0.01
    for key in ("AP50", "AP50:95"):
        assert reports["run"]["metrics"][key] == pytest.approx(
            reports["coco"]["metrics"][key], abs=1e-6
        )
    assert reports["run"]["name"] == reports["labels"]["name"] == "n416"
    assert reports["run"]["predictions_sha256"] == reports["labels"]["predictions_sha256"]
    boxes = sum(1 for a in gt["annotations"] if a["image_id"] not in {i["id"] for i in images})
    assert reports["run"]["unanswered"] == {"images": 334, "of": 358, "boxes": boxes}
    assert (
        "no result names 334 of the 358 images with boxes"
        in (tmp_path / "run" / "report.md").read_text()
    )
    assert reports["coco"]["unanswered"]["images"] == 334
    assert "Images without results: no result names 334" in capsys.readouterr().err
    # compare takes the folder too, named after its run.
    argv = ["compare", "--predictions", str(run / "labels"), str(tmp_path / "coco.json")]
    assert main([*argv, "--data", str(out), "--out", str(tmp_path / "cmp")]) == 0
    compared = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert [model["name"] for model in compared["models"]] == ["n416", "coco"]
    assert compared["difference"]["mAP50"] == pytest.approx(0, abs=1e-6)
    err = capsys.readouterr().err
    assert "n416, images without results: no result names 334" in err


def test_the_released_int8_export_keeps_the_colour_channels_apart(neu_det: Path) -> None:
    """The int8 export takes BGR pixels channels-last, its first convolution's input
    channels reversed (_take_pixels). NEU-DET is grey, so tinted images show it: int8 on
    them follows fp32 on the same images, and the same images with red and blue swapped
    do not."""
    from detection.predict import OnnxDetector, letterbox

    fp32 = OnnxDetector(RELEASED / "model.onnx")
    int8 = OnnxDetector(RELEASED / "model.int8.onnx")
    assert int8.channels_last and not fp32.channels_last
    tint = np.array([0.4, 1.0, 1.6])  # blue, green, red
    paths = sorted((neu_det / "IMAGES").glob("*.jpg"))[::150]
    pixels = [
        np.clip(letterbox(cv2.imread(str(p)), fp32.imgsz, fp32.border)[0] * tint, 0, 255).astype(
            np.uint8
        )
        for p in paths
    ]
    reference = fp32.session.run(None, {fp32.input: fp32.model_input(pixels)})[0][:, 4:]
    as_given, swapped = (
        int8.session.run(None, {int8.input: int8.model_input(batch)})[0][:, 4:]
        for batch in (pixels, [p[..., ::-1].copy() for p in pixels])
    )
    assert np.corrcoef(as_given.ravel(), reference.ravel())[0, 1] > 0.95
    assert np.corrcoef(swapped.ravel(), reference.ravel())[0, 1] < 0.5


def test_a_release_the_disk_cannot_hold_leaves_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The earlier release was deleted before the new one was copied in from its staging
    folder (often another filesystem): a full disk midway left half a release and none
    before it."""
    from detection.release import place_release

    target, staged = tmp_path / "models" / "neu-det", tmp_path / "staged"
    for folder, text in ((target, "old"), (staged, "new")):
        folder.mkdir(parents=True)
        for name in ("card.json", "card.md", "model.pt", "model.onnx"):
            (folder / name).write_text(f"{text} {name}")
    copied = []
    real_copyfile = shutil.copyfile

    def copy_until_full(
        source: str | Path, destination: str | Path, **kwargs: bool
    ) -> str:  # two files in, then the disk is full
        if len(copied) == 2:  # as shutil.copyfile says it: both ends named
            raise OSError(28, "No space left on device", str(source), None, str(destination))
        copied.append(source)
        return real_copyfile(source, destination, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", copy_until_full)
    with pytest.raises(OSError) as raised:
        place_release(staged, target)
    assert raised.value.filename == str(target / "model.onnx")  # the third, by name
    assert raised.value.strerror == "No space left on device"
    assert {p.name: p.read_text() for p in target.iterdir()} == {
        name: f"old {name}" for name in ("card.json", "card.md", "model.pt", "model.onnx")
    }
    assert [p.name for p in target.parent.iterdir()] == ["neu-det"]  # no staging left
    monkeypatch.setattr(shutil, "copyfile", real_copyfile)
    (staged / "examples").mkdir()  # a folder inside it too
    (staged / "examples" / "a.jpg").write_text("new examples/a.jpg")
    place_release(staged, target)
    assert {str(p.relative_to(target)): p.read_text() for p in target.rglob("*.*")} == {
        name: f"new {name}"
        for name in ("card.json", "card.md", "model.pt", "model.onnx", "examples/a.jpg")
    }
    assert [p.name for p in target.parent.iterdir()] == ["neu-det"]


def test_released_neu_det_is_small_and_complete() -> None:
    files = {p.name: p.stat().st_size for p in RELEASED.rglob("*") if p.is_file()}
    assert {"model.pt", "model.onnx", "model.int8.onnx", "card.json", "card.md"} <= files.keys()
    assert sum(files.values()) <= MAX_RELEASE_MB * 1e6


def test_released_card_markdown_is_written_from_its_json() -> None:
    # card.json is the record; card.md must say what it says (a re-timed throughput, say,
    # rewrites both), with every throughput ratio printed to two decimals.
    card = json.loads((RELEASED / "card.json").read_text())

    markdown = card_markdown(card)

    assert (RELEASED / "card.md").read_text() == markdown
    fp32 = card["throughput"]["over_ultralytics"]["onnx_fp32_batch32"]
    assert f"({fp32:.2f}x)" in markdown


def test_the_weaknesses_say_their_confidence_is_not_the_tables_operating_point() -> None:
    # The weak classes' recall is at their best-F1 confidence on val at the evaluation's
    # NMS IoU (crazing 0.181, recall 0.543), the table's at the operating point chosen on
    # train at another NMS IoU (0.14, recall 0.54): the card says which is which.
    card = json.loads((RELEASED / "card.json").read_text())
    evaluation = card["evaluation"]
    weak = card["weaknesses"][0]
    point = evaluation["operating_points"]["per_class"][weak["class"]]
    assert weak["best_f1_confidence"] != pytest.approx(point["confidence"], abs=0.005)
    assert evaluation["operating_points"]["nms_iou"] != evaluation["prediction_settings"]["nms_iou"]

    weaknesses = card_markdown(card).split("## Known weaknesses")[1]

    assert (
        "Each class's recall below is at its best-F1 confidence on val itself, at the "
        f"evaluation's NMS IoU {evaluation['prediction_settings']['nms_iou']}: not the table's "
        f"operating point, chosen on train at NMS IoU {evaluation['operating_points']['nms_iou']}."
    ) in weaknesses
    # A card without operating points (an earlier release's) has no table's to tell apart.
    del evaluation["operating_points"]
    weaknesses = card_markdown(card).split("## Known weaknesses")[1]
    assert "operating point" not in weaknesses and "on val itself, at the evalu" in weaknesses


@pytest.mark.parametrize(
    ("vnni", "says"),
    [
        (True, "no GPU; its CPU has VNNI (int8 products added in 32 bits)."),
        (False, "no GPU; its CPU has no VNNI (int8 runs little faster than fp32 there)."),
        (None, "no GPU."),  # not an x86 CPU Linux lists flags for
        ("absent", "no GPU."),  # a card made before the release recorded it
    ],
)
def test_a_card_says_whether_its_cpu_has_vnni(vnni: bool | str | None, says: str) -> None:
    # int8 runs about 1.9x fp32 with VNNI and 1.04x without: the card's int8 throughput
    # needs it said.
    card = json.loads((RELEASED / "card.json").read_text())
    if vnni == "absent":
        del card["hardware"]["vnni"]
    else:
        card["hardware"]["vnni"] = vnni
    assert f" GiB, {says}" in card_markdown(card)


@pytest.mark.parametrize(
    ("channels", "says"),
    [
        (1, "A yolo11n detector of grey images (one input channel) (2,591,010 parameters"),
        (3, "A yolo11n detector (2,591,010 parameters"),
        ("absent", "A yolo11n detector (2,591,010 parameters"),  # a card made before
    ],
)
def test_a_card_says_whether_its_model_takes_grey_images(channels: int | str, says: str) -> None:
    # A grey model's ONNX input has one channel: a deployment needs it said.
    card = json.loads((RELEASED / "card.json").read_text())
    if channels == "absent":
        card["model"].pop("channels", None)
    else:
        card["model"]["channels"] = channels
    assert card_markdown(card).split("\n")[2].startswith(says)


def test_the_release_machine_is_described_with_its_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    from detection import predict, release

    for flags, vnni in (("avx avx2 avx512_vnni", True), ("avx avx2", False), ("fp asimd", None)):
        monkeypatch.setattr(predict, "cpu_flags", lambda flags=flags: set(flags.split()))
        assert release.describe_machine()["vnni"] is vnni


def test_cpu_info_matches_a_key_whole(tmp_path: Path) -> None:
    # "model name" before "model": the key "model" is the model number, not the name.
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("cpu family\t: 25\nmodel name\t: AMD EPYC\nmodel\t\t: 17\n")
    assert cpu_info("model", cpuinfo) == "17"
    assert cpu_info("model name", cpuinfo) == "AMD EPYC"
    assert cpu_info("cpu family", cpuinfo) == "25"
    assert cpu_info("stepping", cpuinfo) is None
    assert cpu_info("model", tmp_path / "absent") is None


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ("avx avx2 avx512_vnni", "AMD EPYC (family 25, model 17), 2 cores, VNNI"),
        ("avx avx2", "AMD EPYC (family 25, model 17), 2 cores, AVX2 without VNNI"),
        ("fp asimd", "AMD EPYC (family 25, model 17), 2 cores"),
    ],
)
def test_a_benchmark_names_the_cpu_beyond_its_name(
    flags: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One "AMD EPYC" ran int8 at 1.7x fp32 (AVX2) or 2.7x (VNNI): results must tell them apart.
    from bench.common import machine
    from detection import predict

    info = {"model name": "AMD EPYC", "cpu family": "25", "model": "17", "flags": flags}
    monkeypatch.setattr(predict, "cpu_info", lambda key: info.get(key))
    monkeypatch.setattr("platform.node", lambda: "host")
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # whatever machine runs the test
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert machine() == f"host {says}"


def test_a_card_says_which_ground_truth_its_figures_read() -> None:
    # A release on a converter output whose val labels were edited since the conversion
    # scores against them (evaluate's ground truth); the card's COCO file hash alone
    # would say otherwise.
    card = json.loads((RELEASED / "card.json").read_text())
    assert "val_ground_truth_edited" not in card["data"]
    assert "Ground truth edited" not in card_markdown(card)
    card["data"]["val_ground_truth_edited"] = {
        "edited": ["labels"],
        "read": "labels",
        "files": 2,
        "of": 358,
        "examples": ["labels/val/crazing_1.txt", "labels/val/crazing_2.txt"],
        "coco": "annotations/instances_val.json",
    }
    assert (
        " Ground truth edited: 2 of the 358 label files of this split no longer give the boxes "
        "of annotations/instances_val.json (e.g. labels/val/crazing_1.txt, "
        "labels/val/crazing_2.txt): edited since the conversion, so the labels are the "
        "ground truth here"
    ) in card_markdown(card)


def test_a_class_without_val_boxes_is_no_weakness_and_reads_n_a(tmp_path: Path) -> None:
    """A user's release on their own data, where a rare class has no box in val: its AP is
    undefined, so it is neither one of the card's weakest classes nor a crash."""
    data = Path(__file__).resolve().parent / "data" / "tide"
    gt, results = (json.loads((data / f"neu_{n}.json").read_text()) for n in ("gt", "dt"))
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] != 1]  # crazing
    per_class = [asdict(c) for c in evaluate(gt, results).classes]
    with_boxes = sorted((c for c in per_class if c["ground_truth"]), key=lambda c: c["ap50"])

    weaknesses = weakest_examples(gt, results, per_class, tmp_path / "none", tmp_path / "out")

    assert [w["class"] for w in weaknesses] == [c["name"] for c in with_boxes[:2]]
    card = json.loads((RELEASED / "card.json").read_text())
    card["evaluation"]["pycocotools"]["per_class"]["crazing"] = {"ap50": None, "ap50_95": None}
    del card["evaluation"]["ultralytics"]["per_class"]["crazing"]
    point = card["evaluation"]["operating_points"]["per_class"]["crazing"]
    point["recall"] = point["f1"] = None  # no val box to recall
    tta_point = card["tta"]["operating_points"]["per_class"]["crazing"]
    tta_point["recall"] = tta_point["f1"] = None
    markdown = card_markdown(card)
    at = f"{point['confidence']:.2f} ({point['precision']:.2f} / n/a)"
    assert f"| crazing | n/a | n/a | n/a | n/a | {at} |" in markdown.splitlines()
    # ... and the card's mAP said to be over the other five (the shipped card has all six).
    assert (
        "**Classes not scored:** mAP averages 5 of 6 classes: crazing has no ground-truth box "
        "in `val`"
    ) in markdown
    assert "Classes not scored" not in (RELEASED / "card.md").read_text()
    assert f"crazing {tta_point['confidence']:.2f} ({tta_point['precision']:.2f} / n/a)" in markdown


def _own_data(card: dict) -> None:
    """A card as a user's release on their own steel data would write it."""
    card["name"] = "mine"
    card["model"]["classes"] = ["scratch", "pit"]


def _from_unrecorded_weights(card: dict) -> None:
    """A first stage from a .pt that is no release here: its history is unknown."""
    card["stages"][0]["start"] = "weights"
    card["stages"][0]["command"] = card["stages"][0]["command"].replace(
        "--model yolo11n.yaml", "--model downloads/yolo11n.pt"
    )


def _released_before_the_scale_was_recorded(card: dict) -> None:
    del card["data"]["trained_on"]["field_of_view"]


def _released_before_overlaps_were_measured(card: dict) -> None:
    del card["evaluation"]["without_overlapping"]


def _some_overlapping(card: dict) -> None:
    # Figures set here, not the release's: every release changes those, and
    # test_released_neu_det_reproduces_its_card pins them to the data.
    card["evaluation"]["without_overlapping"] = {
        "images": 12,
        "of": 300,
        "pairs": 15,
        "pycocotools": {"mAP50": 0.65432, "mAP50-95": 0.32104},
    }


def _nothing_overlapping(card: dict) -> None:
    card["evaluation"]["without_overlapping"].update(images=0, pairs=0)


def _taught_by_unrecorded(card: dict) -> None:
    card["stages"][-1]["teacher"] = "downloads/big.pt"
    card["stages"][-1]["teacher_stages"] = None


@pytest.mark.parametrize(
    ("change", "said", "not_said"),
    [
        (
            None,
            [
                "trained from scratch",
                "Fine textures",
                "`tests/test_release.py`",
                "It learnt defects on images of a median 200x200 pixels drawn at 416 px",
                "val images overlap a training image (crops of one picture, ",
            ],
            [],
        ),
        (
            _some_overlapping,
            [
                "12 of the 300 val images overlap a training image (crops of one picture, "
                "15 pairs: `review --near-duplicates`); on the other 288 it scores mAP50 0.6543, "
                "mAP50:95 0.3210 (the command above with `--unseen`). `convert --keep-overlaps` "
                "makes a split without them.",
            ],
            [],
        ),
        (_released_before_overlaps_were_measured, ["trained from scratch"], ["overlap"]),
        (
            _nothing_overlapping,
            ["No val image overlaps a training image (`review --near-duplicates`)."],
            ["on the other"],
        ),
        (_released_before_the_scale_was_recorded, ["trained from scratch"], ["It learnt"]),
        (
            _own_data,
            ["trained from scratch", "the same figures to 1e-6"],
            ["Fine textures", "tests/test_release.py"],
        ),
        (
            _from_unrecorded_weights,
            ["trained from `downloads/yolo11n.pt`, weights of unrecorded origin"],
            ["from scratch"],
        ),
        (
            _taught_by_unrecorded,
            ["from scratch but taught by `downloads/big.pt`, a teacher of unrecorded origin"],
            ["no pretrained weights"],
        ),
    ],
)
def test_the_card_claims_only_what_its_record_shows(
    change: Callable[[dict], None], said: list[str], not_said: list[str]
) -> None:
    card = json.loads((RELEASED / "card.json").read_text())
    assert "--model yolo11n.yaml" in card["stages"][0]["command"]
    if change:
        change(card)

    markdown = card_markdown(card)

    assert all(text in markdown for text in said), [t for t in said if t not in markdown]
    assert not any(text in markdown for text in not_said)


@pytest.mark.parametrize(
    ("timed", "note"),
    [
        ("released", None),  # timed by the release itself
        ("2026-12-01", "on the release machine (timed again on 2026-12-01, the same weights"),
        (None, None),  # a card from before the date was recorded
    ],
)
def test_the_card_says_when_its_throughput_was_timed_again(
    timed: str | None, note: str | None
) -> None:
    card = json.loads((RELEASED / "card.json").read_text())
    card["throughput"].pop("timed", None)
    if timed is not None:
        card["throughput"]["timed"] = card["released"] if timed == "released" else timed

    markdown = card_markdown(card)

    assert (note in markdown) if note else ("timed again" not in markdown)


def test_predict_by_released_name_from_any_folder(
    neu_det: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((neu_det / "IMAGES").iterdir())[::300]:
        shutil.copyfile(path, images / path.name)
    found, top = {}, {}
    for backend in ("torch", "onnx", "onnx-int8"):
        out = tmp_path / backend
        argv = ["predict", str(images), "--weights", "neu-det", "--out", str(out)]
        assert main([*argv, "--backend", backend]) == 0
        predictions = json.loads((out / "predictions.json").read_text())
        found[backend] = {p["file_name"] for p in predictions}
        top[backend] = {}
        for p in predictions:
            top[backend][p["file_name"]] = max(p["score"], top[backend].get(p["file_name"], 0))
        assert found[backend] <= {str(p) for p in images.iterdir()}
    assert found["torch"] and found["torch"] == found["onnx"]
    # int8 scores differ from fp32's by a few hundredths: the same images away from the
    # 0.25 threshold (crazing_1.jpg's best box: 0.242 in fp32, 0.263 in int8).
    for this, other in (("onnx", "onnx-int8"), ("onnx-int8", "onnx")):
        assert {f for f, score in top[this].items() if score >= 0.3} <= found[other]
    # The command as the issue writes it, no --out: the same records on stdout, one per
    # line, and no file written anywhere.
    capsys.readouterr()
    assert main(["predict", str(images), "--weights", "neu-det"]) == 0
    streamed = capsys.readouterr()
    lines = [json.loads(line) for line in streamed.out.splitlines()]
    unasked = tmp_path / default_backend("neu-det") / "predictions.json"  # onnx on a CPU
    assert lines == json.loads(unasked.read_text())
    flagged = len({line["file_name"] for line in lines})
    assert f"6 images ({flagged} with a detection), {len(lines)} detections -> stdout" in (
        streamed.err
    )
    # At the card's operating points: each class from its own best-F1 confidence, at the
    # NMS IoU chosen with them (unless --iou says otherwise: then refused, as it differs).
    assert main(["predict", str(images), "--weights", "neu-det", "--conf", "best-f1"]) == 0
    streamed = capsys.readouterr()
    points = json.loads((RELEASED / "card.json").read_text())["evaluation"]["operating_points"]
    thresholds = {name: point["confidence"] for name, point in points["per_class"].items()}
    at_points = [json.loads(line) for line in streamed.out.splitlines()]
    assert at_points and all(r["score"] >= thresholds[r["category"]] - 5e-6 for r in at_points)
    iou = str(points["nms_iou"])
    assert f"; NMS IoU {iou}" in streamed.err
    assert main(["predict", str(images), "--weights", "neu-det", "--iou", iou]) == 0
    at_iou = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert at_iou != lines  # the NMS IoU was applied
    # What 0.25 found at that IoU above its class's threshold is there too (5e-6: scores
    # are rounded).
    assert all(r in at_points for r in at_iou if r["score"] >= thresholds[r["category"]] + 5e-6)
    assert "Per-class confidence thresholds (each class's best F1): crazing" in streamed.err
    argv = ["predict", str(images), "--weights", "neu-det", "--conf", "best-f1", "--iou", "0.7"]
    assert main(argv) == 2
    assert (
        f"chosen on predictions at NMS IoU {iou}, and these are at 0.7" in capsys.readouterr().err
    )
    # With --tta, the card's TTA points (fused scores want their own thresholds).
    assert main(["predict", str(images), "--weights", "neu-det", "--conf", "best-f1", "--tta"]) == 0
    streamed = capsys.readouterr()
    card = json.loads((RELEASED / "card.json").read_text())
    tta_points = card["tta"]["operating_points"]["per_class"]
    with_tta = {name: point["confidence"] for name, point in tta_points.items()}
    assert with_tta != thresholds
    fused = [json.loads(line) for line in streamed.out.splitlines()]
    assert fused and all(r["score"] >= with_tta[r["category"]] - 5e-6 for r in fused)
    assert f"crazing {with_tta['crazing']:.3f}" in streamed.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "onnx", "onnx-int8", "torch"]


def test_an_onnx_file_is_run_by_onnx_runtime_unasked(
    neu_det: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The backend follows the file: torch cannot run an .onnx export; said otherwise, it
    # is still refused.
    image, low = str(sorted((neu_det / "IMAGES").iterdir())[0]), ["--conf", "0.01"]
    assert main(["predict", image, *low, "--weights", str(RELEASED / "model.onnx")]) == 0
    unasked = capsys.readouterr().out
    assert main(["predict", image, *low, "--weights", "neu-det", "--backend", "onnx"]) == 0
    assert capsys.readouterr().out == unasked and unasked
    argv = ["predict", image, "--weights", str(RELEASED / "model.onnx"), "--backend", "torch"]
    assert main(argv) == 2
    assert "model.onnx: an ONNX file needs --backend onnx" in capsys.readouterr().err


@pytest.mark.skipif(cuda_available(), reason="a GPU here runs the torch backend unasked")
def test_predict_runs_onnx_runtime_unasked_on_a_cpu(neu_det: Path, tmp_path: Path) -> None:
    """On a CPU, ONNX Runtime (1.3x ultralytics' batched PyTorch, and the command on one
    image 0.55 s against 4.8 s: torch is never imported) unless --backend says torch."""
    images = [str(p) for p in sorted((neu_det / "IMAGES").iterdir())[:6]]
    argv = ["predict", *images, "--weights", "neu-det", "--no-images", "--out"]
    code = (
        "import sys\nfrom detection.cli import main\n"
        f"code = main({[*argv, str(tmp_path / 'unasked')]!r})\n"
        "print(code, sorted(m for m in ('torch', 'ultralytics') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.stdout.split() == ["0", "[]"], result.stderr[-2000:]
    assert main([*argv, str(tmp_path / "onnx"), "--backend", "onnx"]) == 0
    unasked, onnx = (
        json.loads((tmp_path / n / "predictions.json").read_text()) for n in ("unasked", "onnx")
    )
    assert unasked and unasked == onnx


@pytest.mark.parametrize(
    "weights", [["--weights", "neu-det", "--backend", "onnx"], ["--weights", "{onnx}"]]
)
def test_onnx_runtime_is_refused_a_gpu(
    neu_det: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    weights: list[str],
) -> None:
    # ONNX Runtime runs on the CPU (its CPU package): a GPU named would sit idle unsaid.
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # --device 0 is checked
    image = str(sorted((neu_det / "IMAGES").iterdir())[0])
    weights = [w.format(onnx=RELEASED / "model.onnx") for w in weights]
    assert main(["predict", image, *weights, "--device", "0"]) == 2
    assert "--device 0 runs the torch backend; ONNX Runtime (onnx) runs on the CPU" in (
        capsys.readouterr().err
    )


def test_every_command_takes_the_released_name(
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """review, export, train --model and train-cls --backbone (its default) by name, from
    any folder (predict and evaluate are above); nothing in models/ changes."""
    monkeypatch.chdir(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in RELEASED.rglob("*") if p.is_file()}
    assert main(["export", "--weights", "neu-det"]) == 0
    assert f"{RELEASED / 'model.onnx'}" in capsys.readouterr().err
    assert main(["export", "--weights", "neu-det", "--int8"]) == 0
    assert f"{RELEASED / 'model.int8.onnx'}" in capsys.readouterr().err
    assert main(["export", "--weights", "neu-det", "--imgsz", "320"]) == 2  # not in place
    error = capsys.readouterr().err
    assert "not re-exported in place (model.onnx is shipped at the training size or" in error
    assert main(["export", "--weights", "neu-det", "--int8", "--int8-bits", "8"]) == 2
    assert "model.int8.onnx is shipped at the training size, in 7 bits" in capsys.readouterr().err
    calibration = ["--calibration", str(tiny_data / "images" / "val")]
    assert main(["export", "--weights", "neu-det", "--int8", *calibration]) == 2
    assert "7 bits, calibrated on its own train images, or not at all); copy model.pt" in (
        capsys.readouterr().err
    )
    weights = ["--weights-dir", str(tmp_path / "w"), "--device", "cpu", "--workers", "0"]
    tiny = ["--epochs", "1", "--imgsz", "64", "--batch", "8", *weights]
    train = ["train", "--data", str(tiny_data), "--model", "neu-det", "--name", "d"]
    assert main([*train, *tiny, *NO_PLOTS]) == 0
    assert (tmp_path / "w" / "d" / "best.pt").is_file()
    argv = ["train-cls", "--data", str(tiny_data), "--name", "c", *tiny]  # its default
    assert main(argv) == 0
    assert f"tensors from {RELEASED / 'model.pt'}" in capsys.readouterr().err
    assert before == {p: p.stat().st_mtime_ns for p in RELEASED.rglob("*") if p.is_file()}


def test_review_by_released_name(tiny_data: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FIFTYONE_DATABASE_DIR": str(tmp_path / "db"),
        "FIFTYONE_DEFAULT_DATASET_DIR": str(tmp_path / "datasets"),
    }
    # With flip TTA: the review takes any detector the commands take.
    argv = ["review", "--data", str(tiny_data), "--weights", "neu-det", "--no-launch", "--tta"]
    result = subprocess.run(
        [*DEFECTS, *argv, "--name", "released"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Dataset 'released'" in result.stderr


def test_a_release_replaces_only_a_release_and_says_so_before_the_work(
    trained: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import detection.release

    def evaluated(*args: object, **kwargs: object) -> None:
        pytest.fail("the release evaluated before refusing")

    monkeypatch.setattr(detection.release, "evaluate_model", evaluated)
    argv = ["release", "--run", str(trained), "--data", str(tiny_data), "--name", "tiny"]
    # A folder of the user's own under the name: the release would have deleted it,
    # after its work (42 minutes for NEU-DET).
    mine = tmp_path / "models" / "tiny"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    assert main([*argv, "--models-dir", str(mine.parent)]) == 2
    error = capsys.readouterr().err
    assert f"{mine}: a folder with files of its own (no card.json, which marks" in error
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    # Where nothing can be written (/proc, a virtual file system).
    assert main([*argv, "--models-dir", "/proc/defects-models"]) == 2
    error = capsys.readouterr().err
    assert error == (
        "defects release: error: /proc/defects-models/tiny: cannot be written: "
        "No such file or directory\n"
    )


def test_a_yolo_dataset_from_elsewhere_is_refused_as_what_it_is(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A YOLO dataset never converted here (a Roboflow export) was told its manifest "was
    # damaged or written over since the conversion: convert the dataset again".
    yolo = tmp_path / "yolo"
    shutil.copytree(tiny_data, yolo, symlinks=True)
    (yolo / "manifest.json").unlink()
    argv = ["release", "--run", str(trained), "--data", str(yolo), "--name", "tiny"]
    assert main([*argv, "--models-dir", str(tmp_path / "models")]) == 2
    error = capsys.readouterr().err
    assert error == (
        f"defects release: error: {yolo}: a YOLO dataset, not a converter output (no "
        "manifest.json): a card records the conversion its figures were scored on (source, "
        "seed, every image's split); release on the output of `defects convert`, or score "
        "the model on this dataset with `defects evaluate`\n"
    )
    assert not (tmp_path / "models").exists()


def test_a_second_stage_keeps_the_first_in_its_card(
    trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    common = ["--data", str(tiny_data), "--models-dir", str(models)]
    assert main(["release", "--run", str(trained), "--name", "tiny", *common]) == 0
    first = json.loads((models / "tiny" / "card.json").read_text())
    stage_two = ["train", "--data", str(tiny_data), "--model", str(models / "tiny" / "model.pt")]
    stage_two += ["--name", "two", "--epochs", "1", "--imgsz", "96", "--batch", "8"]
    stage_two += ["--device", "cpu", "--workers", "0", "--weights-dir", str(tmp_path / "w")]
    stage_two += NO_PLOTS
    assert main(stage_two) == 0
    assert main(["release", "--run", str(tmp_path / "w" / "two"), "--name", "tiny", *common]) == 0
    card = json.loads((models / "tiny" / "card.json").read_text())
    assert [(s["run"], s["start"]) for s in card["stages"]] == [
        ("tiny", "yolo11n.yaml"),
        ("two", "weights"),
    ]
    assert card["model"]["onnx_sha256"] != first["model"]["onnx_sha256"]  # new weights
    # Releasing the same run again (a new card, say) does not list it twice, and keeps
    # the shipped exports byte for byte (a new export would differ in its date only).
    exports = {p.name: sha256(p) for p in (models / "tiny").glob("*.onnx")}
    assert main(["release", "--run", str(tmp_path / "w" / "two"), "--name", "tiny", *common]) == 0
    again = json.loads((models / "tiny" / "card.json").read_text())
    assert [s["run"] for s in again["stages"]] == ["tiny", "two"]
    assert {p.name: sha256(p) for p in (models / "tiny").glob("*.onnx")} == exports
    assert again["model"]["onnx_sha256"] == exports["model.onnx"]
    # The released folder itself, released again (a machine without the runs): the same
    # weights and stages; an int8 export its card says was quantised otherwise (here: a
    # card from before the quantisation was recorded, beside a stand-in file) is made
    # again, and the fp32 export kept.
    tiny = models / "tiny"
    del again["int8"]["quantisation"]
    (tiny / "card.json").write_text(json.dumps(again))
    shutil.copyfile(tiny / "model.onnx", tiny / "model.int8.onnx")
    weights = sha256(tiny / "model.pt")
    assert main(["release", "--run", str(tiny), "--name", "tiny", *common]) == 0
    third = json.loads((tiny / "card.json").read_text())
    assert third["stages"] == again["stages"]
    assert third["model"]["source_run"] == again["model"]["source_run"]
    assert third["model"]["architecture"] == "yolo11n.yaml"
    assert sha256(tiny / "model.pt") == third["model"]["weights_sha256"] == weights
    assert sha256(tiny / "model.onnx") == exports["model.onnx"]
    assert third["int8"]["quantisation"] == int8_quantisation(3)
    assert third["int8"]["onnx_sha256"] != exports["model.onnx"]
    if third["int8"]["onnx"]:
        assert sha256(tiny / "model.int8.onnx") == third["int8"]["onnx_sha256"]
    else:
        assert not (tiny / "model.int8.onnx").exists()
    # ... but on its own: after other runs it is refused, nothing released.
    before = {p.name: sha256(p) for p in tiny.rglob("*") if p.is_file()}
    two = str(tmp_path / "w" / "two")
    assert main(["release", "--run", two, str(tiny), "--name", "tiny", *common]) == 2
    assert {p.name: sha256(p) for p in tiny.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("recorded", ["relative", "absolute"])
def test_a_stage_from_the_release_finds_its_card_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: str
) -> None:
    # `defects train --model models/neu-det/model.pt` at the repository root records the
    # path as typed; `defects release` run from another folder must still find the card
    # beside it, as it finds a teacher's (both are the repository root's).
    start = RELEASED / "model.pt"
    run = tmp_path / "run"
    run.mkdir()
    model = start.relative_to(MODELS_DIR.parent) if recorded == "relative" else start
    (run / "args.yaml").write_text(f"model: {model}\nname: run\n")
    monkeypatch.chdir(tmp_path)

    stages = earlier_stages(run)

    assert stages == json.loads((RELEASED / "card.json").read_text())["stages"]
    assert stages


@pytest.mark.parametrize("teacher_lies", ["in its run folder", "in a release", "alone"])
def test_a_distilled_stage_records_how_its_teacher_was_trained(
    trained: Path, tiny_data: Path, tmp_path: Path, teacher_lies: str
) -> None:
    # The teacher: a run folder (as tools/gpu/run.sh brings one back), a released model
    # with its card, or a bare file whose training no folder records.
    folder = tmp_path / "teacher"
    shutil.copytree(trained, folder)
    (folder / "args.yaml").write_text(
        (folder / "args.yaml").read_text().replace("name: tiny", "name: teacher")
    )
    released_stages = json.loads((RELEASED / "card.json").read_text())["stages"]
    if teacher_lies == "in a release":
        (folder / "card.json").write_text(json.dumps({"stages": released_stages}))
    elif teacher_lies == "alone":
        for record in ("args.yaml", "results.csv"):
            (folder / record).unlink()
    student = tmp_path / "student"
    shutil.copytree(trained, student)
    args = (student / "args.yaml").read_text()
    (student / "args.yaml").write_text(
        args.replace("distill_model: null", f"distill_model: {folder / 'best.pt'}")
    )

    stage = training_stage(student, tiny_data)

    assert "--teacher " in stage["command"]
    taught = stage["teacher_stages"]
    if teacher_lies == "in its run folder":
        assert [s["run"] for s in taught] == ["teacher"]
        assert taught[0] == training_stage(folder, tiny_data)
    elif teacher_lies == "in a release":
        assert taught == released_stages
    else:
        assert taught is None
    card = json.loads((RELEASED / "card.json").read_text())
    card["stages"] = [stage]
    lines = card_markdown(card).splitlines()
    header = lines.index("| stage | command | start | epochs | wall time | device |")
    rows = list(itertools.takewhile(lambda line: line.startswith("| "), lines[header + 2 :]))
    labels = [row.split(" | ")[0] for row in rows]
    if taught:
        assert labels[: len(taught) + 1] == [
            *(f"| 1's teacher, {n}" for n in range(1, len(taught) + 1)),
            "| 1",
        ]
    else:
        assert "Not recorded: how stage 1's teacher" in "\n".join(lines)
    assert "taught by `" in rows[labels.index("| 1")]


def test_a_stage_command_names_every_option_the_run_was_given(
    trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    stage = training_stage(trained, tiny_data)
    command = stage["command"].split()
    # The `trained` fixture's --set options come back, and nothing the run did not set
    # (ultralytics' defaults, the steel arguments, the recipe).
    assert [command[i + 1] for i, word in enumerate(command) if word == "--set"] == [
        "optimizer=AdamW",
        "plots=False",
        "lr0=0.001",
        "momentum=0.9",
    ]
    assert command[command.index("--weights-dir") + 1].endswith(trained.parent.name)
    typed = build_parser().parse_args(command[1:])  # as a user would type it again
    overrides = {"optimizer": "AdamW", "plots": False, "lr0": 0.001, "momentum": 0.9}
    assert parse_overrides(typed.set) == overrides
    assert (typed.imgsz, typed.batch, typed.device) == (96, 8, "cpu")
    assert stage["device"] == "cpu" and stage["hardware"].startswith("CPU (")  # its train.log
    # A run trained elsewhere: the card names the device from its train.log, and this
    # machine's data folder.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(trained, elsewhere)
    args = (elsewhere / "args.yaml").read_text().replace("device: cpu", "device: ''")
    (elsewhere / "args.yaml").write_text(args.replace(str(tiny_data), "/gone/data"))
    (elsewhere / "train.log").write_text(
        "Downloading nothing\nUltralytics 8.4.190 \U0001f680 Python-3.12.3 torch-2.11.0+cu130 "
        "CUDA:0 (NVIDIA H100 80GB HBM3, 81079MiB)\nEpoch 1/2\n"
    )
    remote = training_stage(elsewhere, tiny_data)
    assert remote["hardware"] == "CUDA:0 (NVIDIA H100 80GB HBM3, 81079MiB)"
    assert remote["device"] == "auto" and "--device auto" in remote["command"]
    assert "/gone" not in remote["command"]


def test_a_stage_says_whether_its_run_ended(
    trained: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    # Released from another folder than the repository root: the run's bare model name
    # (an ultralytics definition) was given as a path into that folder.
    monkeypatch.chdir(tmp_path)
    stage = training_stage(run, tiny_data)
    command = stage["command"].split()
    recorded = yaml.safe_load((run / "args.yaml").read_text())["model"]
    assert recorded == "yolo11n.yaml" == command[command.index("--model") + 1]
    assert stage["complete"] is True  # ended by itself: both checkpoints stripped

    def unstripped(checkpoint: str, epochs: int) -> None:
        saved = torch.load(trained / checkpoint, map_location="cpu", weights_only=False)
        saved["epoch"] = 0
        saved["train_args"] = {**saved["train_args"], "epochs": epochs}
        torch.save(saved, run / checkpoint)

    unstripped("last.pt", 5)  # killed after its first epoch of five
    stage = training_stage(run, tiny_data)
    assert stage["complete"] is False
    card = json.loads((RELEASED / "card.json").read_text())
    card["stages"] = [stage]
    assert f"| {stage['epochs']} (stopped before its end) |" in card_markdown(card)
    unstripped("last.pt", 1)  # its one epoch done, killed before the final strip
    assert training_stage(run, tiny_data)["complete"] is True
    (run / "last.pt").write_bytes(b"")  # damaged: the stripped best.pt still says
    assert training_stage(run, tiny_data)["complete"] is True
    (run / "last.pt").unlink()  # brought back without it: a stripped best.pt still says
    assert training_stage(run, tiny_data)["complete"] is True
    unstripped("best.pt", 5)
    assert training_stage(run, tiny_data)["complete"] is None


def test_predictions_as_voc_prelabels_that_convert_reads_back(
    neu_det: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Model-assisted labelling: `predict --voc` writes the detections as a Pascal VOC
    # dataset for annotators to correct; the converter reads it back box for box.
    from converters.convert import convert

    images, other = tmp_path / "line-a", tmp_path / "line-b"
    for folder in (images, other):
        folder.mkdir()
    for path in sorted((neu_det / "IMAGES").iterdir())[::300]:
        shutil.copyfile(path, images / path.name)
    # Another folder's image of the same stem: a VOC annotation is named by the stem.
    shutil.copyfile(neu_det / "IMAGES" / "scratches_7.jpg", other / "crazing_1.png")
    out = tmp_path / "out"
    argv = ["predict", str(images), str(other), "--weights", "neu-det", "--backend", "onnx"]
    assert main([*argv, "--conf", "best-f1", "--no-images", "--out", str(out), "--voc"]) == 0
    predictions = json.loads((out / "predictions.json").read_text())
    voc = out / "voc"
    stems = sorted(p.stem for p in (voc / "Annotations").iterdir())
    assert len(stems) == 7 and "crazing_1" in stems and "000007_crazing_1" in stems
    assert (voc / "JPEGImages" / "000007_crazing_1.png").resolve() == other / "crazing_1.png"
    assert "<confidence>" in (voc / "Annotations" / "crazing_1.xml").read_text()

    back = convert(voc, tmp_path / "converted", ratios=(1.0,))
    by_name = {image.name: image for image in back.source.dataset.images}
    assert len(by_name) == 7
    names = {str(images / n): n for n in by_name}  # predict's file name -> the VOC one
    names[str(other / "crazing_1.png")] = "000007_crazing_1.png"
    read_back = sorted(
        (names[p["file_name"]], p["category"], *(round(v, 2) for v in p["bbox"]))
        for p in predictions
    )
    written = sorted(
        (name, b.label, round(b.xmin, 2), round(b.ymin, 2), round(b.width, 2), round(b.height, 2))
        for name, image in by_name.items()
        for b in image.boxes
    )
    assert len(written) == len(predictions) > 0
    for got, expected in zip(written, read_back, strict=True):
        assert got[:2] == expected[:2] and got[2:] == pytest.approx(expected[2:], abs=0.011)
    capsys.readouterr()
    assert main([*argv, "--voc"]) == 2
    assert "needs an output folder (--out)" in capsys.readouterr().err


def test_predict_never_reads_its_own_outputs_as_input(
    neu_det: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `predict IMAGES --out IMAGES/pred` run twice read the first run's annotated images
    # and VOC links as new images (2 became 6).
    images = tmp_path / "images"
    images.mkdir()
    for name in ("crazing_1.jpg", "scratches_7.jpg"):
        shutil.copyfile(neu_det / "IMAGES" / name, images / name)
    argv = ["predict", str(images), "--weights", "neu-det", "--backend", "onnx", "--conf", "0.1"]
    for out in ("pred", "pred", "other"):
        assert main([*argv, "--out", str(images / out), "--voc"]) == 0
        read = json.loads((images / out / "images.json").read_text())["images"]
        assert sorted(Path(i["file_name"]).name for i in read) == [
            "crazing_1.jpg",
            "scratches_7.jpg",
        ]
        # Each image's count and most confident detection, as predictions.json has them.
        predicted = json.loads((images / out / "predictions.json").read_text())
        for image in read:
            own = [r for r in predicted if r["image_id"] == image["id"]]
            assert image["detections"] == len(own) > 0
            best = max(own, key=lambda r: r["score"])
            assert image["top"] == {"category": best["category"], "score": best["score"]}
    assert "passed over" not in capsys.readouterr().err


def test_predict_reads_an_image_reached_twice_once(
    neu_det: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A converter output inside its source's folder links each image: predicted twice,
    # scoring that folder's results counted each detection twice (mAP50 0.78, not 1.0).
    images = tmp_path / "images"
    (images / "converted").mkdir(parents=True)
    for name in ("crazing_1.jpg", "scratches_7.jpg"):
        shutil.copyfile(neu_det / "IMAGES" / name, images / name)
        (images / "converted" / name).symlink_to(images / name)
    argv = ["predict", str(images), str(images / "scratches_7.jpg"), "--weights", "neu-det"]
    argv += ["--backend", "onnx", "--conf", "0.1", "--out", str(tmp_path / "pred")]
    assert main(argv) == 0
    read = json.loads((tmp_path / "pred" / "images.json").read_text())["images"]
    assert [i["file_name"] for i in read] == [
        str(images / "crazing_1.jpg"),
        str(images / "scratches_7.jpg"),
    ]
    assert (
        f"passed over 3 images found twice, the same file as an image found already "
        f"({images / 'converted' / 'crazing_1.jpg'} is {images / 'crazing_1.jpg'}, and 2 more)"
    ) in capsys.readouterr().err
