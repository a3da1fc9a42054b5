"""Per-class operating points: ``predict --conf best-f1`` (a released model's card) or
``--conf REPORT.json`` (an evaluation of the same weights) keeps each class's detections
at the confidence of its best F1 on val."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from detection.cli import main
from detection.predict import Detections, at_confidence
from detection.screening import DEFAULT_CONF
from detection.weights import MODELS_DIR

NAMES = {0: "crazing", 1: "patches", 2: "scratches"}


@pytest.mark.parametrize(
    ("thresholds", "kept"),
    [
        ({"crazing": 0.4, "patches": 0.25, "scratches": 0.5}, [1, 3]),
        ({"crazing": 0.3, "patches": 0.5, "scratches": 0.95}, [0, 1]),
        ({"crazing": 0.4, "patches": 0.25}, [1, 3, 4]),  # scratches: no threshold, all kept
        ({}, [0, 1, 2, 3, 4]),
        ({"crazing": 1.0, "patches": 1.0, "scratches": 1.0}, []),
    ],
)
def test_each_class_at_its_own_threshold(thresholds: dict[str, float], kept: list[int]) -> None:
    detections = Detections(
        boxes=np.arange(20, dtype=np.float32).reshape(5, 4),
        scores=np.array([0.3, 0.5, 0.2, 0.9, 0.1], dtype=np.float32),
        classes=np.array([0, 1, 1, 2, 2]),
    )
    found = at_confidence(detections, thresholds, NAMES)
    assert found.scores.tolist() == detections.scores[kept].tolist()
    assert found.boxes.tolist() == detections.boxes[kept].tolist()
    assert found.classes.tolist() == detections.classes[kept].tolist()


def _between(scores: list[float]) -> float | None:
    """A threshold near the median, midway between two written scores (5 decimals) at
    least 2e-5 apart, so that no raw score lies within rounding of it (None: no such)."""
    unique = np.unique(scores)
    gaps = [k for k in range(1, len(unique)) if unique[k] - unique[k - 1] >= 2e-5]
    if not gaps:
        return None
    k = min(gaps, key=lambda k: abs(k - len(unique) / 2))
    return float(unique[k - 1] + unique[k]) / 2


@pytest.mark.slow
def test_predict_at_an_evaluations_operating_points(
    trained: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The report's thresholds give exactly the low-threshold predictions filtered class
    by class, at the report's image size; thresholds of other weights or settings, or
    from something not a report, are refused.
    The weights: a local copy of the released model (a two-epoch model finds one class)."""
    weights = tmp_path / "best.pt"
    shutil.copyfile(MODELS_DIR / "neu-det" / "model.pt", weights)
    argv = ["evaluate", "--weights", str(weights), "--data", str(tiny_data), "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "report"), "--no-ultralytics"]) == 0
    report = tmp_path / "report" / "report.json"
    assert "--conf report.json` (this file" in (tmp_path / "report" / "report.md").read_text()
    images = tiny_data / "images" / "val"
    base = ["predict", str(images), "--weights", str(weights), "--no-images"]
    assert main([*base, "--out", str(tmp_path / "low"), "--conf", "0.001"]) == 0
    assert main([*base, "--out", str(tmp_path / "as-evaluated"), "--conf", str(report)]) == 0
    assert "Per-class confidence thresholds (each class's best F1)" in capsys.readouterr().err
    low = json.loads((tmp_path / "low" / "predictions.json").read_text())

    # Synthetic images give few classes a best F1: give each predicted class its own
    # threshold (the median of its scores), in a report of the same weights.
    edited = json.loads(report.read_text())
    by_class = {}
    for result in low:
        by_class.setdefault(result["category"], []).append(result["score"])
    thresholds = {name: _between(scores) for name, scores in by_class.items()}
    thresholds = {name: value for name, value in thresholds.items() if value is not None}
    # ... but one, as for a class without ground truth in the evaluation's split.
    unset = max(by_class, key=lambda name: len(by_class[name]))
    del thresholds[unset]
    assert len(set(thresholds.values())) > 1
    for entry in edited["per_class"]:
        entry["best_f1_confidence"] = thresholds.get(entry["name"])
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    conf = str(tmp_path / "edited.json")
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "points"), "--conf", conf]) == 0
    points = json.loads((tmp_path / "points" / "predictions.json").read_text())
    # A class without a threshold at predict's default: it kept every detection down to
    # the lowest of the others', and nothing said so.
    expected = [r for r in low if r["score"] >= thresholds.get(r["category"], DEFAULT_CONF)]
    assert points == expected and 0 < len(points) < len(low)
    said = " ".join(capsys.readouterr().err.split())
    assert f"no operating point for {unset} (the evaluation had no ground truth" in said
    assert f"at confidence {DEFAULT_CONF}" in said

    def refused(conf: str, weights_file: Path = weights, extra: tuple = ()) -> str:
        argv = ["predict", str(images), "--weights", str(weights_file), "--conf", conf]
        assert main([*argv, *extra]) == 2
        return capsys.readouterr().err

    assert "not a released model with a card" in refused("best-f1")
    # A card from before the TTA operating points: --tta --conf best-f1 says how to make them.
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR / "neu-det", models / "neu-det")
    card_path = models / "neu-det" / "card.json"
    card = json.loads(card_path.read_text())
    del card["tta"]["operating_points"]
    card_path.write_text(json.dumps(card))
    monkeypatch.setattr("detection.weights.MODELS_DIR", models)
    assert "card.json: no operating points for --tta (a card from before them)" in refused(
        "best-f1", Path("neu-det"), ["--tta"]
    )
    monkeypatch.undo()
    assert "chosen on predictions without --tta, and these are with it" in refused(
        str(report), extra=["--tta"]
    )
    assert "at NMS IoU 0.7, and these are at 0.5" in refused(str(report), extra=["--iou", "0.5"])
    card = json.loads((MODELS_DIR / "neu-det" / "card.json").read_text())
    chosen_at = card["evaluation"]["operating_points"]["nms_iou"]
    other = "0.6" if chosen_at != 0.6 else "0.7"
    assert f"at NMS IoU {chosen_at}, and these are at {other}" in refused(
        "best-f1", Path("neu-det"), ["--iou", other]
    )
    # The image size too: a defect drawn at another scale scores otherwise. Without
    # --imgsz, the size the thresholds were chosen at (a card's: the model's own).
    imgsz = card["model"]["imgsz"]
    assert f"at {imgsz} px, and these are at 320 px" in refused(
        str(report), extra=["--imgsz", "320"]
    )
    assert (
        f"card.json: its thresholds were chosen on predictions at {imgsz} px, and these are "
        in (refused("best-f1", Path("neu-det"), ["--imgsz", "320"]))
    )
    assert (
        main([*argv, "--imgsz", "320", "--out", str(tmp_path / "at-320"), "--no-ultralytics"]) == 0
    )
    at_320 = json.loads((tmp_path / "at-320" / "report.json").read_text())
    assert at_320["imgsz"] == 320
    for entry in at_320["per_class"]:
        entry["best_f1_confidence"] = thresholds.get(entry["name"])
    (tmp_path / "at-320.json").write_text(json.dumps(at_320))
    assert (
        main([*base, "--out", str(tmp_path / "low-320"), "--conf", "0.001", "--imgsz", "320"]) == 0
    )
    low_320 = json.loads((tmp_path / "low-320" / "predictions.json").read_text())
    capsys.readouterr()
    assert (
        main(
            [*base, "--out", str(tmp_path / "points-320"), "--conf", str(tmp_path / "at-320.json")]
        )
        == 0
    )
    assert "; NMS IoU 0.7; 320 px" in capsys.readouterr().err
    points_320 = json.loads((tmp_path / "points-320" / "predictions.json").read_text())
    expected = [r for r in low_320 if r["score"] >= thresholds.get(r["category"], DEFAULT_CONF)]
    assert points_320 == expected and points_320 != points
    assert "an evaluation of other weights" in refused(str(report), trained / "best.pt")
    changed = json.loads(report.read_text())
    changed["weights_sha256"] = "0" * 64
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    assert "an evaluation of other weights" in refused(str(tmp_path / "changed.json"))
    for name, content in (("list", []), ("entries", {"per_class": [{"ap50": 1}]})):
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
        assert "not a report.json from defects evaluate" in refused(str(tmp_path / f"{name}.json"))
    assert "no such file" in refused(str(tmp_path / "missing.json"))
