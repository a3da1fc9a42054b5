"""The ``defects`` command as users run it: exit codes, messages, crash safety."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Never

import cv2
import numpy as np
import pytest

import converters.convert
from converters.convert import classes_without_boxes, convert
from converters.errors import ConversionError
from detection.cli import main, out_of_memory
from tests.helpers import no_file_over, voc_xml, write_image, write_xml

DEFECTS = [sys.executable, "-m", "detection.cli"]
DATA = Path(__file__).parent / "data"
# A results file and its ground truth that score without error.
_SCORED = ["evaluate", "--predictions", f"{DATA}/parity_dt.json", "--gt", f"{DATA}/parity_gt.json"]


def _small(root: Path, bad: bool = False) -> Path:
    for i in range(4):
        write_image(root / "IMAGES" / f"patches_{i}.jpg", seed=i)
        objects = [("patches", 1, 1, 20, 20)] + ([("patches", 1, 1, 20, 20)] if bad else [])
        write_xml(root / "ANNOTATIONS" / f"patches_{i}.xml", voc_xml(f"patches_{i}.jpg", objects))
    return root


def test_convert_and_strict_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _small(tmp_path / "src", bad=True)
    assert main(["convert", str(src), "--out", str(tmp_path / "out")]) == 0
    assert main(["convert", str(src), "--out", str(tmp_path / "out"), "--strict"]) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["problems_by_kind"] == {"duplicate_box": 4}
    clean = _small(tmp_path / "clean")
    # Printed as given: rich once read "[cam]" in a path as markup and dropped it.
    out = tmp_path / "out[cam]"
    assert main(["convert", str(clean), "--out", str(out), "--strict"]) == 0
    err = capsys.readouterr().err
    assert "Detected layout: NEU-DET original" in err and f"Wrote {out} (" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["convert", "{tmp}/nowhere", "--out", "{tmp}/o"], "nowhere: no such folder"),
        (["convert", "{src}", "--out", "{tmp}/o", "--split", "0.5,0.4"], "sum to 1"),
        (["convert", "{src}", "--out", "{tmp}/o", "--classes", "a,a"], "repeats a name"),
        (
            ["convert", "{src}", "--out", "{tmp}/o", "--classes-file", "{tmp}/none.yaml"],
            "{tmp}/none.yaml: no such file",
        ),
        # A file named with no suffix is that file, not a definition in datasets/.
        (["convert", "{src}", "--out", "{tmp}/o", "--classes-file", "none"], "none: no such file"),
        (["convert", "{src}", "--out", "{tmp}/o", "--classes-file", "{tmp}"], "a folder, not a"),
        # A device where a file is read: /dev/zero was read until memory ran out.
        (
            ["convert", "{src}", "--out", "{tmp}/o", "--classes-file", "/dev/zero"],
            "/dev/zero: unreadable: a character device, not a file",
        ),
        (
            ["evaluate", "--predictions", "/dev/zero", "--gt", "/dev/zero", "--out", "{tmp}/o"],
            "/dev/zero: unreadable: a character device, not a file",
        ),
        (
            ["convert", "{src}", "--out", "{tmp}/o", "--dataset", "nope"],
            "datasets/nope.yaml: no such dataset definition (known: gc10-det, neu-det,",
        ),
        (["validate", "{src}/IMAGES"], "no known dataset layout"),
        # A converted folder, given where a source is read.
        (["validate", "{out}"], "{out} is a YOLO dataset (data.yaml), converted already"),
        (["convert", "{out}", "--out", "{tmp}/o"], "convert and validate read a dataset in VOC"),
        (["train", "--set", "lr0"], "--set 'lr0': expected KEY=VALUE"),
        (["train", "--set", "lr=0.1"], "--set lr: not an ultralytics training argument"),
        (["train", "--set", "epochs=3"], "use its own option (--epochs)"),
        (["train", "--set", "distill_model=t.pt"], "use its own option (--teacher)"),
        (["train", "--set", "mosaic=5"], "--set mosaic=5: 'mosaic=5' is an invalid value"),
        (["train", "--set", "lr0=abc"], "--set lr0=abc: 'lr0=abc' is of invalid type str"),
        # optimizer=auto, ultralytics' default, would train at its own lr0 and momentum.
        (
            ["train", "--set", "lr0=0.0002", "--set", "warmup_epochs=0"],
            "--set lr0: ultralytics ignores it under optimizer=auto (the default), which "
            "picks its own optimizer, lr0 and momentum; name the optimizer too, e.g. --set "
            "optimizer=AdamW",
        ),
        (["train", "--set", "optimizer=auto", "--set", "momentum=0.8"], "--set momentum: "),
        (["train", "--set", "warmup_bias_lr=0.05"], "--set warmup_bias_lr: ultralytics ignores"),
        (
            [*_SCORED, "--out", "{tmp}/o", "--tta"],
            "--tta, --iou, --tile and --backend change how predictions are made (with --weights)",
        ),
        ([*_SCORED, "--out", "{tmp}/o", "--backend", "onnx"], "is scored as it is"),
        # Options that would change nothing: refused, not left unused without a word.
        (
            ["predict", "{src}", "--weights", "neu-det", "--tile-overlap", "0.5"],
            "--tile-overlap is the share of a tile that its neighbours overlap: it needs --tile",
        ),
        (["review", "--data", "{src}", "--tta"], "(with --weights); give --weights"),
        (["review", "--data", "{src}", "--backend", "torch"], "(with --weights); give --weights"),
        (
            ["review", "--data", "{src}", "--conf", "0.3"],
            "--conf is the lowest confidence of the predictions stored: give --weights or",
        ),
        (["review", "--data", "{src}", "--to", "coco"], "--out and --to are for review export"),
        (
            ["review", "export", "--name", "n", "--out", "{tmp}/e", "--data", "{src}", "--tta"],
            "it takes --name, --out and --to, not --data, --tta (those build a review)",
        ),
        (
            [*_SCORED, "--out", "{tmp}/o", "--iou", "0.5"],
            "a --predictions file is scored as it is",
        ),
        (
            [
                "compare",
                "--predictions",
                "{tmp}/a.json",
                "{tmp}/b.json",
                "--gt",
                "{tmp}/g.json",
                "--out",
                "{tmp}/o",
                "--tta",
            ],
            "a --predictions file is scored as it is",
        ),
        # An output folder that is a file, or lies under one: before the work, or from
        # the OSError, one line naming it.
        (
            ["predict", "{src}/IMAGES", "--weights", "w.pt", "--out", "{src}/IMAGES/patches_0.jpg"],
            "patches_0.jpg: exists and is not a folder",
        ),
        (
            [*_SCORED, "--out", "{src}/IMAGES/patches_0.jpg/report", "--bootstrap", "0"],
            "patches_0.jpg/report: Not a directory",
        ),
        # Where nothing can be written (/proc, a virtual file system): said before the
        # work, naming the output (it named a temporary folder beside it, after the work).
        (
            [*_SCORED, "--out", "/proc/defects-report", "--bootstrap", "0"],
            "/proc/defects-report: cannot be written: No such file or directory",
        ),
        (
            ["convert", "{src}", "--out", "/proc/defects-converted"],
            "/proc/defects-converted: cannot be written: No such file or directory",
        ),
        # The VOC dataset itself where a converted one is wanted: the command to convert it.
        (
            ["evaluate", "--weights", "neu-det", "--data", "{src}", "--out", "{tmp}/o"],
            "{src} is a dataset in VOC XML (NEU-DET original (IMAGES/ + ANNOTATIONS/)), not "
            "a converted one; convert it first, then give the converted folder:\n"
            "  defects convert {src} --out datasets/converted/src",
        ),
        (["train", "--data", "{src}", "--epochs", "1"], "{src} is a dataset in VOC XML"),
        # review read it as a plain folder of images: the model's boxes shown without the
        # annotators' (or "unlabelled images need --weights"), the XML passed over unsaid.
        (["review", "--data", "{src}", "--no-launch"], "{src} is a dataset in VOC XML"),
        (
            ["review", "--data", "{src}", "--weights", "neu-det", "--no-launch"],
            "{src} is a dataset in VOC XML",
        ),
        # A file that is no dataset, or no model definition: ultralytics' AssertionError,
        # YAML traceback, KeyError or RuntimeError before.
        (
            [
                "evaluate",
                "--weights",
                "neu-det",
                "--data",
                "{src}/IMAGES/patches_0.jpg",
                "--out",
                "o",
            ],
            "patches_0.jpg: not a dataset; give a converted folder, a YOLO dataset's folder",
        ),
        (
            ["review", "--data", "{tmp}/broken.yaml", "--no-launch"],
            "broken.yaml: not valid YAML (YOLO dataset's data.yaml expected): line 1, column 1:",
        ),
        (
            ["train", "--model", "{tmp}/broken.yaml", "--data", "{out}"],
            "broken.yaml: not valid YAML (model definition expected): line 1, column 1:",
        ),
        (
            ["train", "--model", "{tmp}/dataset.yaml", "--data", "{out}"],
            "dataset.yaml: not a model definition, which has 'backbone' and 'head' lists (a "
            "dataset's YAML goes to --data)",
        ),
        (
            ["train", "--model", "yolo11n-cls.yaml", "--data", "{out}"],
            "yolo11n-cls.yaml: a classify model's definition; train trains a detector",
        ),
        # Nothing readable among the sources: a failure (exit 2), not "0 detections".
        (
            ["predict", "{src}/ANNOTATIONS/patches_0.xml", "--weights", "neu-det"],
            "no readable images in {src}/ANNOTATIONS/patches_0.xml (1 skipped)",
        ),
        # Out-of-range numbers: usage errors, not ultralytics' ValueError or range()'s.
        (["predict", "{src}", "--weights", "w.pt", "--conf", "2"], "argument --conf: 2 is out"),
        (["predict", "{src}", "--weights", "w.pt", "--iou", "1.5"], "argument --iou: 1.5 is out"),
        (["predict", "{src}", "--weights", "w.pt", "--batch", "0"], "argument --batch: 0 is out"),
        (["train", "--epochs", "0"], "argument --epochs: 0 is out of range (expected at least 1)"),
        (["train", "--batch", "0"], "argument --batch: 0 is out of range"),
        (["train", "--hours", "0"], "argument --hours: 0 is out of range"),
        (["review", "--data", "{src}", "--conf", "-0.1"], "argument --conf: -0.1 is out"),
        (["evaluate", "--out", "{tmp}/o", "--bootstrap", "-5"], "argument --bootstrap: -5"),
        # 100,000,000 replicates on NEU-DET's val split asked 267 GiB: a MemoryError.
        (
            ["compare", "--out", "{tmp}/o", "--bootstrap", "100000001"],
            "argument --bootstrap: 100000001 is out of range (expected from 0 to 100000)",
        ),
        (["synth", "--out", "{tmp}/s", "--images", "ten"], "argument --images: 'ten' is not an"),
        # An image size no machine here holds: the classifier grew until the kernel killed it.
        (
            ["classify", "{src}", "--weights", "w.pt", "--imgsz", "100000"],
            "argument --imgsz: 100000 is out of range (expected from 1 to 4096)",
        ),
        (["predict", "{src}", "--weights", "w.pt", "--imgsz", "4097"], "--imgsz: 4097 is out"),
        (["convert", "{src}", "--out", "{tmp}/o", "--seed", "-1"], "argument --seed: -1 is out"),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    src = _small(tmp_path / "src")
    (tmp_path / "broken.yaml").write_text(": : :\n")
    (tmp_path / "dataset.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [a]\n")
    out = tmp_path / "out"
    if any("{out}" in arg for arg in args):  # a converted dataset, for the model's checks
        assert main(["convert", str(src), "--out", str(out)]) == 0
    argv = [a.format(tmp=tmp_path, src=src, out=out) for a in args]
    result = subprocess.run([*DEFECTS, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert message.format(tmp=tmp_path, src=src, out=out) in result.stderr
    assert "Traceback" not in result.stderr


def test_a_split_a_converter_output_lacks_is_one_line_naming_those_it_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(_small(tmp_path / "src")), "--out", str(out)]) == 0
    for command in ("evaluate", "compare"):
        again = ["neu-det", "--names=a,b"] if command == "compare" else []
        argv = [command, "--weights", "neu-det", *again]
        argv += ["--data", str(out), "--split", "test", "--out", str(tmp_path / command)]
        assert main(argv) == 2
        assert (
            f"{out / 'annotations' / 'instances_test.json'}: no ground truth for split 'test' "
            "(--split; its splits: train, val)"
        ) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("split", "note"),
    [
        ("0.5,0.5", None),
        ("0.95,0.05", "note: no val images (of 4 images, --split 0.95,0.05); training needs"),
        ("1,0", None),  # asked for: no note
        # Training has its train and val; it was told it needed them all the same.
        (
            "0.7,0.25,0.05",
            "note: no test images (of 4 images, --split 0.7,0.25,0.05); `evaluate --split "
            "test` has none to score: convert more",
        ),
    ],
)
def test_convert_says_when_a_split_it_was_asked_for_comes_out_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], split: str, note: str | None
) -> None:
    assert main(["convert", str(_small(tmp_path / "src")), "--out", str(tmp_path / "o"),
                 "--split", split]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert (note in err) if note else " images (of " not in err


def _counts(**splits: tuple[int, dict[str, int]]) -> dict[str, dict]:
    """:func:`converters.convert.split_counts`' shape: split -> (images, boxes per class)."""
    return {
        split: {"images": images, "boxes_per_class": {c: boxes.get(c, 0) for c in "abc"}}
        for split, (images, boxes) in splits.items()
    }


def _patches_and_one_crazing(tmp_path: Path) -> Path:
    """Four patches images and one crazing image (NEU-DET's six classes), converted at
    0.6/0.4: crazing lands in one split only, four classes in none."""
    src = _small(tmp_path / "src")
    write_image(src / "IMAGES" / "crazing_0.jpg", seed=9)
    objects = [("crazing", 5, 5, 40, 40)]
    write_xml(src / "ANNOTATIONS" / "crazing_0.xml", voc_xml("crazing_0.jpg", objects))
    out = tmp_path / "out"
    assert main(["convert", str(src), "--out", str(out), "--split", "0.6,0.4"]) == 0
    return out


def test_train_warns_of_classes_a_split_holds_no_box_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The boxes counted from the label files ultralytics trains on, before training: a
    YOLO dataset's data.yaml may list classes no image was labelled with."""
    import detection.train

    out = _patches_and_one_crazing(tmp_path)
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    (lacking,) = [split for split, c in counts.items() if not c["boxes_per_class"]["crazing"]]
    checked = detection.train._check_training_files(out / "data.yaml")
    assert {s: c["boxes_per_class"] for s, c in checked.items()} == {
        s: c["boxes_per_class"] for s, c in counts.items()
    }
    capsys.readouterr()

    def stop(*_: object) -> Never:  # the recipe comes next, then torch: nothing to train for here
        raise ConversionError("stopped before training")

    monkeypatch.setattr(detection.train, "training_recipe", stop)
    assert main(["train", "--data", str(out), "--weights-dir", str(tmp_path / "w")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "defects train: warning: no boxes of inclusion, pitted_surface, rolled-in_scale, " in err
    assert f"defects train: warning: {lacking} holds no boxes of crazing: " in err
    assert "stopped before training" in err


@pytest.mark.parametrize(
    ("counts", "nowhere", "by_split"),
    [
        (_counts(train=(8, {"a": 5, "b": 3, "c": 2}), val=(2, {"a": 1, "b": 1, "c": 1})), [], {}),
        # Only in train: unscored in val.
        (_counts(train=(8, {"a": 5, "b": 3, "c": 2}), val=(2, {"a": 1, "b": 1})), [],
         {"val": ["c"]}),
        # Only in val: unlearnt (and b, only in train, unscored).
        (_counts(train=(8, {"a": 5, "b": 3}), val=(2, {"a": 1, "c": 1})), [],
         {"train": ["c"], "val": ["b"]}),
        # In no split: said once, not for each split.
        (_counts(train=(8, {"a": 5}), val=(2, {"a": 1})), ["b", "c"], {}),
        # An empty split lacks nothing (convert says it is empty).
        (_counts(train=(8, {"a": 5, "b": 1, "c": 1}), val=(0, {})), [], {}),
        (_counts(train=(7, {"a": 5, "b": 2, "c": 1}), val=(2, {"a": 1, "b": 1, "c": 1}),
                 test=(1, {"a": 1})), [], {"test": ["b", "c"]}),
    ],
)  # fmt: skip
def test_classes_a_split_leaves_without_a_box(
    counts: dict[str, dict], nowhere: list[str], by_split: dict[str, list[str]]
) -> None:
    assert classes_without_boxes(counts) == {"nowhere": nowhere, "by_split": by_split}


def test_convert_says_which_classes_a_split_leaves_without_a_box(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """:func:`_patches_and_one_crazing`: each class left out said once."""
    out = _patches_and_one_crazing(tmp_path)
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "note: no boxes of inclusion, pitted_surface, rolled-in_scale, scratches in the data" in err
    )
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    (lacking,) = [split for split, c in counts.items() if not c["boxes_per_class"]["crazing"]]
    why = "the model cannot learn it" if lacking == "train" else "evaluate cannot score it"
    assert f"note: {lacking} holds no boxes of crazing: {why}" in err
    assert err.count("holds no boxes of") == 1
    assert f"another --seed or a larger {lacking} ratio than --split 0.6,0.4" in err
    assert "--resplit" not in err  # NEU-DET gives no split of its own


def test_a_split_the_source_gives_is_said_to_be_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """VOC's ImageSets put no washer into val and only washers into test: --split and
    --seed would not move them, so the advice is --resplit."""
    from tests.test_layouts import _generic_voc

    _generic_voc(tmp_path / "voc", with_lists=True)
    argv = ["convert", str(tmp_path / "voc"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--classes", "washer,nut,bolt"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    kept = "the split is the source's own, kept as given; --resplit splits by --split and --seed"
    assert "note: val holds no boxes of washer: evaluate cannot score it there" in err
    assert "note: test holds no boxes of nut, bolt: evaluate cannot score them" in err
    assert err.count(kept) == 2 and "another --seed" not in err
    assert main([*argv, "--classes", "washer,nut,bolt", "--resplit"]) == 0
    assert kept not in capsys.readouterr().err


def test_label_files_ultralytics_would_drop_are_named_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A label file edited into something ultralytics cannot read: its dataset passed
    over the file's image, as corrupt, and trained without it, said in one line of its
    log among hundreds."""
    out = tmp_path / "out"
    assert main(["convert", str(_small(tmp_path / "src")), "--out", str(out)]) == 0
    train_label = sorted((out / "labels" / "train").iterdir())[0]
    val_label = sorted((out / "labels" / "val").iterdir())[0]
    train_label.write_text("not [valid {{ at all\n")
    val_label.write_text("0 0.5 0.5 0.2 0.4\n7 0.5 0.5 0.2 0.4\n")
    train = ["train", "--data", str(out), "--epochs", "1", "--imgsz", "32"]
    train += ["--weights-dir", str(tmp_path / "w"), "--workers", "0"]
    capsys.readouterr()
    assert main(train) == 2
    err = capsys.readouterr().err
    assert "defects train: error: 2 files that ultralytics would pass over as corrupt" in err
    assert f"{train_label}: malformed_label: line 1: 'not [valid {{{{ at all'" in err
    assert f"{val_label}: unknown_class: line 2: class 7 is not one of 0..5" in err
    assert not (tmp_path / "w").exists()  # nothing trained
    # A byte-order mark is no damage (ultralytics reads it): only the val file is said.
    train_label.write_bytes(b"\xef\xbb\xbf0 0.5 0.5 0.2 0.4\n")
    assert main(train) == 2
    err = capsys.readouterr().err
    assert "error: 1 file that ultralytics" in err and str(train_label) not in err
    # An image written over (the link replaced: the source stays whole).
    image = sorted((out / "images" / "val").iterdir())[-1]
    image.unlink()
    image.write_text("notes\n")
    assert main(train) == 2
    err = capsys.readouterr().err
    assert "error: 2 files that ultralytics would pass over" in err
    assert f"{image}: not a readable image" in err


def test_a_dataset_without_val_images_is_refused_in_one_plain_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`convert --split 1,0` then `train`: ultralytics stopped at its val loader with a
    message in terminal colour codes ("[34m[1mval: [0mError loading data ...")."""
    out = tmp_path / "all-train"
    src = _small(tmp_path / "src")
    assert main(["convert", str(src), "--out", str(out), "--split", "1,0"]) == 0
    train = ["train", "--data", str(out), "--epochs", "1", "--imgsz", "32"]
    train += ["--weights-dir", str(tmp_path / "w"), "--workers", "0"]
    capsys.readouterr()
    assert main(train) == 2
    assert f"defects train: error: {out}: no val images (its splits: train)" in (
        capsys.readouterr().err
    )
    # Not our output (no manifest): ultralytics' own message, without its colour codes.
    (out / "manifest.json").unlink()
    assert main(train) == 2
    err = capsys.readouterr().err.splitlines()
    assert f"defects train: error: val: Error loading data from {out}/images/val" in err
    assert not any("\x1b" in line for line in err)


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--epochs", "1"],
        ["evaluate", "--weights", "neu-det", "--out", "report"],
        ["review", "--weights", "neu-det", "--no-launch"],
    ],
)
def test_an_output_whose_source_moved_is_one_line_naming_the_fix(
    tmp_path: Path, command: list[str]
) -> None:
    # convert links its source's images: with the source moved, training stopped on
    # ultralytics' RuntimeError traceback ("No valid images found").
    src = _small(tmp_path / "src")
    out = tmp_path / "out"
    assert main(["convert", str(src), "--out", str(out)]) == 0
    src.rename(tmp_path / "moved")
    result = subprocess.run(
        [*DEFECTS, *command[:1], "--data", str(out), *command[1:]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{out}: 4 of its 4 linked images lead nowhere (images/" in result.stderr
    assert f" -> {src}/IMAGES/patches_" in result.stderr
    assert "convert it again from where it lies now" in result.stderr


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["cos_lr=true", "mosaic=0.5"], {"cos_lr": True, "mosaic": 0.5}),
        (
            ["optimizer=AdamW", "lr0=0.0002", "warmup_epochs=0"],
            {"optimizer": "AdamW", "lr0": 0.0002, "warmup_epochs": 0},
        ),
        # The optimizer may come after the learning rate it makes count.
        (
            ["lr0=0.01", "momentum=0.8", "optimizer=SGD"],
            {"lr0": 0.01, "momentum": 0.8, "optimizer": "SGD"},
        ),
        (["optimizer=Auto", "lr0=0.01"], "--set lr0: ultralytics ignores it under optimizer=auto"),
        (["momentum=0.8", "lr0=0.01"], "--set lr0: ultralytics ignores it"),
    ],
)
def test_training_arguments_that_optimizer_auto_would_ignore(
    pairs: list[str], expected: dict[str, bool | float] | dict[str, float | str] | str
) -> None:
    from detection.train import parse_overrides

    if isinstance(expected, dict):
        assert parse_overrides(pairs) == expected
    else:
        with pytest.raises(ConversionError, match=re.escape(expected)):
            parse_overrides(pairs)


@pytest.mark.parametrize(
    ("kind", "low", "high", "text", "expected"),
    [
        (int, 1, None, "1", 1),
        (int, 1, None, "640", 640),
        (int, 0, None, "0", 0),
        (float, 0.0, 1.0, "0", 0.0),
        (float, 0.0, 1.0, "1", 1.0),
        (float, 0.0, 1.0, "0.25", 0.25),
        (int, 1, None, "0", "out of range (expected at least 1)"),
        (int, 1, None, "1.5", "'1.5' is not an integer"),
        (float, 0.0, 1.0, "1.01", "out of range (expected from 0.0 to 1.0)"),
        (float, 0.0, 1.0, "nan", "out of range"),
        (float, 0.0, 1.0, "x", "'x' is not a number"),
    ],
)
def test_number_options(
    kind: type[int] | type[float], low: float, high: float | None, text: str, expected: float | str
) -> None:
    import argparse

    from detection.console import number_in

    parse = number_in(kind, low, high)
    if isinstance(expected, str):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(expected)):
            parse(text)
    else:
        assert parse(text) == expected and type(parse(text)) is kind


@pytest.mark.parametrize(
    ("text", "gpus", "expected"),
    [
        ("auto", 0, "auto"),
        ("CPU", 0, "cpu"),
        ("0", 1, "0"),
        ("0,1", 2, "0,1"),
        ("cuda", 1, "0"),
        ("cuda:1", 2, "1"),
        ("7", 0, "GPU 7 requested; torch sees no CUDA GPU here (use auto or cpu)"),
        ("0,3", 2, "GPU 3 requested; torch sees GPUs 0..1 here"),
        ("gpu", 1, "'gpu' is not a device (auto, cpu, mps, or GPU indices"),
        ("-1", 1, "'-1' is not a device"),
    ],
)
def test_device_option(
    monkeypatch: pytest.MonkeyPatch, text: str, gpus: int, expected: str
) -> None:
    # ultralytics refused a missing GPU with a traceback at the first batch.
    import argparse

    import torch

    from detection.console import device_option

    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    if " " in expected:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(expected)):
            device_option(text)
    else:
        assert device_option(text) == expected


@pytest.mark.parametrize(
    ("count", "noun", "plural", "expected"),
    [
        (0, "image", None, "0 images"),
        (1, "image", None, "1 image"),
        (2, "image", None, "2 images"),
        (1, "box", "boxes", "1 box"),
        (4186, "box", "boxes", "4186 boxes"),
    ],
)
def test_counted(count: int, noun: str, plural: str | None, expected: str) -> None:
    from detection.console import counted

    assert counted(count, noun, plural) == expected


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        (
            {"passed_over": {".gif": 1}},
            "passed over 1 file that is not an image by its suffix (.gif 1); images are .bmp, ",
        ),
        (
            {"passed_over": {".txt": 2, "": 1}},
            "passed over 3 files that are not images by their suffix (.txt 2, no suffix 1); "
            "images are .bmp, ",
        ),
        ({"passed_over": {}, "found_twice": []}, None),
        (
            {"found_twice": [["out/images/a.jpg", "IMAGES/a.jpg"], ["b.jpg", "b.jpg"]]},
            "passed over 2 images found twice, the same file as an image found already "
            "(out/images/a.jpg is IMAGES/a.jpg, and 1 more): each is read once",
        ),
        (
            {"found_twice": [["b.jpg", "b.jpg"]]},
            "passed over 1 image found twice, the same file as an image found already (b.jpg "
            "given twice): each is read once",
        ),
    ],
)
def test_files_passed_over_are_counted_in_words(summary: dict, expected: str | None) -> None:
    from rich.console import Console

    from detection.commands import _print_skipped

    console = Console(record=True, width=400)
    _print_skipped(console, {"errors": [], "notes": [], **summary})
    printed = console.export_text()
    if expected is None:
        assert printed == ""
    else:
        assert printed.startswith(expected)


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "train-cls", "compare"])
def test_every_command_refuses_a_gpu_it_lacks(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(SystemExit) as exited:
        main([command, "--device", "3", "--help"])
    assert exited.value.code == 2
    assert "argument --device: GPU 3 requested" in capsys.readouterr().err


def test_version_names_ours_and_the_libraries_behind_the_figures() -> None:
    from importlib.metadata import version

    result = subprocess.run([*DEFECTS, "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    line = result.stdout.strip()
    assert "\n" not in line  # one line, whatever the terminal's width
    assert line.startswith(f"defects {version('steel-defects')} (")
    for name, package in (("pycocotools", "pycocotools"), ("torch", "torch")):
        assert f"{name} {version(package)}" in line
    assert "not installed" not in line  # every library the figures depend on is here


def test_validate_writes_nothing(tmp_path: Path) -> None:
    src = _small(tmp_path / "src", bad=True)
    before = sorted(tmp_path.rglob("*"))
    result = subprocess.run(
        [*DEFECTS, "validate", str(src), "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0
    validated = json.loads(result.stdout)
    assert validated["summary"]["boxes_dropped"] == 4
    # Every class of the dataset's list, those without a box at 0.
    classes = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
    assert validated["boxes_per_class"] == {c: 4 if c == "patches" else 0 for c in classes}
    assert sorted(tmp_path.rglob("*")) == before
    strict = subprocess.run(
        [*DEFECTS, "validate", str(src), "--strict"], capture_output=True, text=True
    )
    assert strict.returncode == 1
    said = "boxes per class: crazing 0, inclusion 0, patches 4, pitted_surface 0, "
    assert said + "rolled-in_scale 0, scratches 0" in strict.stderr


def test_help_on_every_command() -> None:
    import argparse

    from detection.cli import build_parser

    for command in ([], ["convert"], ["validate"], ["synth"]):
        result = subprocess.run([*DEFECTS, *command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "usage: defects" in result.stdout
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert len(commands.choices) == 12
    for name, command in commands.choices.items():
        text = command.format_help()
        # A description is not %-formatted as an option's help is: "95%%" showed as such.
        assert text.startswith(f"usage: defects {name}") and "%%" not in text, name


def test_failed_run_leaves_previous_output_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _small(tmp_path / "src")
    out = tmp_path / "out"
    convert(src, out)
    before = (out / "manifest.json").read_bytes()

    def explode(*args: object, **kwargs: object) -> Never:
        raise KeyboardInterrupt

    monkeypatch.setattr(converters.convert, "to_coco", explode)
    with pytest.raises(KeyboardInterrupt):
        convert(src, out, seed=5)
    assert (out / "manifest.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# Says it is ready, then looks for the file argv[1] until the file argv[2] exists; prints
# the number of times it was missing, then of times it was looked for.
_READER = """
import os, sys
marker, stop = sys.argv[1], sys.argv[2]
missing = looked = 0
print("ready", flush=True)
while not os.path.exists(stop):
    looked += 1
    missing += not os.path.exists(marker)
print(missing, looked)
"""


def test_a_reader_never_finds_the_output_missing_while_it_is_replaced(tmp_path: Path) -> None:
    # Moved aside and then replaced, the folder was gone for a moment: a command reading
    # it then (training started beside a conversion of its dataset) found no manifest
    # and called the dataset damaged. Exchanged in one step, it is always there.
    from converters.folders import _renameat2, write_folder

    if _renameat2() is None:
        pytest.skip("no renameat2 here: the folder is moved aside, then replaced")
    out, stop = tmp_path / "out", tmp_path / "stop"

    def build(number: int) -> Callable[[Path], None]:
        return lambda folder: folder.mkdir() or (folder / "m.json").write_text(str(number))

    write_folder(out, build(0), "m.json")
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(out / "m.json"), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout.readline() == "ready\n"  # looking before the first replacement
    for number in range(1, 301):
        write_folder(out, build(number), "m.json")
    stop.touch()
    missing, looked = map(int, reader.communicate(timeout=60)[0].split())
    assert (missing, (out / "m.json").read_text()) == (0, "300")
    assert looked > 300  # it looked throughout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "stop"]


# A plain `kill`, a scheduler's stop or a closed terminal killed the process at once, and
# the folder it was building stayed beside the output: `.OUT.tmp-PID`, hidden, a whole
# dataset with `convert --copy-images`. Now it is removed first, and the process still
# dies of the signal (its parent sees -15, as before). Ctrl-C was already handled.
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_a_command_killed_while_it_writes_leaves_no_half_output(
    tmp_path: Path, number: int
) -> None:
    out = tmp_path / "out"
    assert main(["synth", "--out", str(out), "--images", "2"]) == 0
    earlier = sorted(p.relative_to(out) for p in out.rglob("*"))
    run = subprocess.Popen(
        [*DEFECTS, "synth", "--out", str(out), "--images", "3000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    building = tmp_path / f".out.tmp-{os.uname().nodename}-{run.pid}"
    deadline = time.time() + 120
    while not list(building.glob("*/*.jpg")) and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # until it has written images (3,000 take about 20 s)
    assert run.poll() is None, run.stderr.read()
    run.send_signal(number)
    assert run.wait(timeout=60) == -number
    assert run.stderr.read() == ""  # no traceback
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == earlier


# A run killed outright (kill -9, the out-of-memory killer) left its folder being built
# beside the output, hidden, for good; one killed between moving the earlier output aside
# and putting its own in place left no output at all, the earlier one hidden.
def test_what_a_run_killed_outright_left_is_cleared_by_the_next(tmp_path: Path) -> None:
    from converters.folders import write_folder

    host, out = os.uname().nodename, tmp_path / "out"
    ended = subprocess.Popen(["true"])
    ended.wait()
    alive = subprocess.Popen(["sleep", "60"])

    def left(name: str, text: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "m.json").write_text(text)

    def build(text: str) -> Callable[[Path], None]:
        def write(folder: Path) -> None:
            folder.mkdir()
            if text == "fails":
                raise ConversionError("the build fails")
            (folder / "m.json").write_text(text)

        return write

    try:
        left(f".out.tmp-{host}-{ended.pid}", "half built")  # removed
        left(f".out.tmp-{host}-{alive.pid}", "at work")  # kept: its process runs
        left(f".out.tmp-another-host-{ended.pid}", "at work")  # kept: another machine's
        left(f".out.old-{host}-{ended.pid}", "the earlier output")  # put back
        with pytest.raises(ConversionError, match="the build fails"):
            write_folder(out, build("fails"), "m.json")
        assert (out / "m.json").read_text() == "the earlier output"
        kept = [f".out.tmp-{host}-{alive.pid}", f".out.tmp-another-host-{ended.pid}", "out"]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
        left(f".out.old-{host}-{ended.pid}", "older still")  # out is there: removed
        write_folder(out, build("new"), "m.json")
        assert (out / "m.json").read_text() == "new"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    finally:
        alive.kill()
        alive.wait()


# `defects ... | head`: a reader that stops early ends the command as it ends `cat big |
# head`, quietly, of SIGPIPE (141 in a shell). It said "error: Broken pipe" (exit 2) after
# its work.
def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    assert main(["synth", "--out", str(tmp_path / "src"), "--images", "4"]) == 0
    validate = [*DEFECTS, "validate", str(tmp_path / "src"), "--json"]
    run = subprocess.Popen(validate, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.stdout.close()  # before it writes: it takes a while to start
    assert run.wait(timeout=120) == -signal.SIGPIPE
    assert run.stderr.read() == b""
    run.stderr.close()
    # Read to the end, the same command says its report and ends well.
    whole = subprocess.run(validate, capture_output=True, text=True)
    assert whole.returncode == 0 and json.loads(whole.stdout)["summary"]


# Started with stderr closed (`2>&-`, some daemons), a command ended at its first message
# with no output at all (exit 1), a good run and a refused one alike.
@pytest.mark.parametrize(
    ("source", "code", "said"), [("src", 0, '"summary"'), ("none", 2, "")], ids=["good", "bad"]
)
def test_a_command_started_without_stderr_still_does_its_work(
    tmp_path: Path, source: str, code: int, said: str
) -> None:
    assert main(["synth", "--out", str(tmp_path / "src"), "--images", "4"]) == 0
    validate = [*DEFECTS, "validate", str(tmp_path / source), "--json"]
    run = subprocess.run(["bash", "-c", 'exec "$@" 2>&-', "-", *validate], capture_output=True)
    assert run.returncode == code
    assert run.stdout.decode().startswith("{") if said else run.stdout == b""
    assert said.encode() in run.stdout


def test_a_process_forked_while_an_output_is_built_dies_of_a_kill_as_before() -> None:
    # A data loader's workers fork while a release is built: each inherits the handler,
    # and must die of the signal, not raise in its loop and print a traceback.
    from converters.folders import _terminations_raised

    with _terminations_raised():
        ready, told = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            os.write(told, b"1")  # running: a signal before Python's after-fork is lost
            time.sleep(30)
            os._exit(0)
        assert os.read(ready, 1) == b"1"
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
        os.close(ready), os.close(told)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize("exchange", [True, False], ids=["exchanged", "moved aside"])
def test_an_output_replaced_holds_the_new_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    import converters.folders
    from converters.folders import _renameat2, write_folder

    if exchange and _renameat2() is None:
        pytest.skip("no renameat2 here")
    if not exchange:  # another system, or a file system without the exchange
        monkeypatch.setattr(converters.folders, "_exchange", lambda new, out: False)
    out = tmp_path / "out"
    write_folder(out, lambda f: f.mkdir() or (f / "m.json").write_text("1"), "m.json")
    (out / "old.txt").write_text("of the first run")
    write_folder(out, lambda f: f.mkdir() or (f / "m.json").write_text("2"), "m.json")
    assert sorted(p.name for p in out.iterdir()) == ["m.json"]
    assert (out / "m.json").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("exchange", [True, False], ids=["exchanged", "moved aside"])
def test_an_output_that_is_a_link_is_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    # Outputs kept on a larger disk, linked from where commands write them: the folder
    # the link leads to is replaced. Replaced itself, the link became a folder, the one
    # it led to kept the earlier output, and a hidden link was left beside.
    import converters.folders
    from converters.folders import _renameat2

    if exchange and _renameat2() is None:
        pytest.skip("no renameat2 here")
    if not exchange:
        monkeypatch.setattr(converters.folders, "_exchange", lambda new, out: False)
    disk, work = tmp_path / "disk", tmp_path / "work"
    work.mkdir()
    src = _small(tmp_path / "src")
    assert main(["convert", str(src), "--out", str(disk / "converted"), "--seed", "1"]) == 0
    (work / "converted").symlink_to(disk / "converted")
    assert main(["convert", str(src), "--out", str(work / "converted"), "--seed", "2"]) == 0
    assert (work / "converted").is_symlink()
    assert json.loads((disk / "converted" / "manifest.json").read_text())["seed"] == 2
    assert [p.name for p in work.iterdir()] == ["converted"]
    assert [p.name for p in disk.iterdir()] == ["converted"]


def test_an_output_link_to_where_nothing_can_be_written_is_refused_before_the_work(
    tmp_path: Path,
) -> None:
    src = _small(tmp_path / "src")
    (tmp_path / "linked").symlink_to("/proc/defects-linked")  # a virtual file system
    argv = ["convert", str(src), "--out", str(tmp_path / "linked")]
    result = subprocess.run([*DEFECTS, *argv], capture_output=True, text=True)
    assert result.returncode == 2
    said = f"defects convert: error: {tmp_path / 'linked'}: cannot be written: No such file"
    assert result.stderr.startswith(said), result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "{src}", "--out", "{loop}"],
        ["convert", "{loop}", "--out", "{tmp}/out"],
        ["synth", "--out", "{loop}"],
        ["evaluate", "--weights", "neu-det", "--data", "{loop}", "--out", "{tmp}/out"],
        ["evaluate", "--predictions", "{loop}", "--gt", "{loop}", "--out", "{tmp}/out"],
        ["export", "--weights", "{loop}"],
        ["review", "--data", "{loop}", "--no-launch"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_a_path_that_is_a_loop_of_links_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # `ln -s loop loop`: pathlib's resolve() raised RuntimeError("Symlink loop from ..."),
    # a traceback, where the system's own calls say ELOOP.
    src = _small(tmp_path / "src")
    (tmp_path / "loop").symlink_to("loop")
    paths = {"src": src, "loop": tmp_path / "loop", "tmp": tmp_path}
    assert main([word.format(**paths) for word in argv]) == 2
    reason = "Too many levels of symbolic links"
    assert capsys.readouterr().err == f"defects {argv[0]}: error: {paths['loop']}: {reason}\n"


def test_a_swap_that_fails_leaves_the_earlier_output_and_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same command twice at once, where the folders cannot be exchanged in one step:
    # the other run's output took the place between our moving the old one aside and
    # moving ours in.
    import converters.folders
    from converters.folders import write_folder

    monkeypatch.setattr(converters.folders, "_exchange", lambda new, out: False)
    out = tmp_path / "out"
    write_folder(
        out, lambda folder: folder.mkdir() or (folder / "m.json").write_text("1"), "m.json"
    )
    real_rename = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if ".tmp-" in self.name:
            raise OSError(39, "Directory not empty", str(target))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="Directory not empty"):
        write_folder(out, lambda f: f.mkdir() or (f / "m.json").write_text("2"), "m.json")
    assert (out / "m.json").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_output_that_cannot_be_written_is_named_and_the_earlier_one_kept(tmp_path: Path) -> None:
    """A write that fails midway names no file (Python's OSError has none): "defects
    convert: error: File too large" said neither which output nor that it was untouched."""
    src, out = _small(tmp_path / "src"), tmp_path / "out"
    assert main(["convert", str(src), "--out", str(out), "--seed", "1"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    argv = [*DEFECTS, "convert", str(src), "--out", str(out), "--seed", "2"]
    result = subprocess.run(argv, capture_output=True, text=True, preexec_fn=no_file_over(500))
    assert result.returncode == 2, result.stderr[-2000:]
    said = f"defects convert: error: {out}: File too large, while writing it (left as it was)"
    assert result.stderr.strip() == said
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


@pytest.mark.parametrize(
    ("raised", "filename", "reason", "kind"),
    [
        # A write that failed midway: the folder, left as it was.
        (OSError(27, "File too large"), "out", "File too large, while writing it", OSError),
        (OSError(28, "No space left on device"), "out", "No space left on device, while", OSError),
        # A file of the folder being built: named where it would have been.
        (OSError(13, "Permission denied", "{tmp}/labels/a.txt"), "out/labels/a.txt",
         "Permission denied", PermissionError),
        # A copy into it (shutil.copyfile names both ends): the copy, where it would be.
        (OSError(28, "No space left on device", "{root}/src/a.jpg", None, "{tmp}/images/a.jpg"),
         "out/images/a.jpg", "No space left on device", OSError),
        # No system call's (PIL's UnidentifiedImageError, say): as it was raised.
        (OSError("cannot identify image file"), None, "", OSError),
        # Any other file (an input): as it was raised.
        (FileNotFoundError(2, "No such file or directory", "{root}/src/a.jpg"), "src/a.jpg",
         "No such file or directory", FileNotFoundError),
    ],
)  # fmt: skip
def test_a_folder_not_built_names_what_the_user_will_look_for(
    tmp_path: Path, raised: OSError, filename: str | None, reason: str, kind: type
) -> None:
    from converters.folders import write_folder

    def build(folder: Path) -> None:
        folder.mkdir()
        if raised.filename:
            raised.filename = raised.filename.format(tmp=folder, root=tmp_path)
        if raised.filename2:
            raised.filename2 = raised.filename2.format(tmp=folder, root=tmp_path)
        raise raised

    with pytest.raises(OSError) as told:
        write_folder(tmp_path / "out", build, "m.json")
    if filename is None:
        assert told.value is raised
    else:
        assert told.value.filename == str(tmp_path / filename)
        assert told.value.strerror.startswith(reason)
    assert type(told.value) is kind
    assert list(tmp_path.iterdir()) == []


def test_killed_run_leaves_a_complete_output(neu_det: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert(_small(tmp_path / "src"), out)
    process = subprocess.Popen(
        [*DEFECTS, "convert", str(neu_det), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.6)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    manifest = json.loads((out / "manifest.json").read_text())  # old or new, never half
    images = sum(c["images"] for c in manifest["counts"].values())
    assert images in (4, 1800)
    assert len(list((out / "labels").rglob("*.txt"))) == images


def test_synth_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["synth", "--out", str(tmp_path / name), "--images", "6", "--seed", "1"]) == 0
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files_a) == 13  # 6 images, 6 annotations, synth.json
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_synth_that_cannot_write_an_image_says_so_and_leaves_nothing(tmp_path: Path) -> None:
    """cv2.imwrite returns False where a file cannot be written, and synth ignored it: it
    said "Wrote 3 images" into a folder it had left without one. Here files over 10 KB are
    refused (RLIMIT_FSIZE: EFBIG, as a quota or a full disk refuses them) and each image
    takes about 20 KB, its annotation under 1 KB."""
    out = tmp_path / "s"
    argv = [*DEFECTS, "synth", "--out", str(out), "--images", "3"]
    result = subprocess.run(argv, capture_output=True, text=True, preexec_fn=no_file_over(10_000))
    assert result.returncode == 2, result.stderr[-2000:]
    # The image as it would have been named in the output, not in its hidden staging.
    line = result.stderr.strip()
    said = rf"defects synth: error: {re.escape(str(out))}/IMAGES/[\w-]+_1\.jpg: File too large"
    assert re.fullmatch(said, line), line
    assert not out.exists()  # nothing half-written left where the dataset was asked for
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (OSError(28, "No space left on device", "/a/b.jpg"), "/a/b.jpg: No space left on device"),
        # A copy or a move (shutil.copyfile): from where, to where.
        (OSError(28, "No space left on device", "/a/w.pt", None, "/tmp/x/model.pt"),
         "/a/w.pt -> /tmp/x/model.pt: No space left on device"),
        (OSError(27, "File too large"), "File too large"),
    ],
)  # fmt: skip
def test_an_os_error_is_one_line_with_its_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], raised: OSError, said: str
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise raised

    monkeypatch.setattr("detection.cli.cmd_synth", fail)
    assert main(["synth", "--out", "x"]) == 2
    if said == "File too large":  # no file named: where synth was writing
        said = "x: File too large, while writing there"
    assert capsys.readouterr().err == f"defects synth: error: {said}\n"


@pytest.mark.parametrize(
    ("argv", "output"),
    [
        (["train-cls", "--data", "d"], "weights/classifier"),
        (["train-cls", "--data", "d", "--weights-dir", "w", "--name", "c"], "w/c"),
        (["train", "--data", "d", "--name", "run"], "weights/run"),
    ],
)
def test_a_training_run_that_fills_the_disk_names_its_folder(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    output: str,
) -> None:
    """A summary or a plot written with no file named in its error (a write that failed
    midway): "defects train-cls: error: No space left on device" said nothing of where."""

    def full(args: argparse.Namespace) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("detection.commands.cmd_train", full)
    monkeypatch.setattr("detection.commands.cmd_train_cls", full)
    assert main(argv) == 2
    said = f"{output}: No space left on device, while writing there"
    assert capsys.readouterr().err == f"defects {argv[0]}: error: {said}\n"


def test_synth_refuses_more_images_than_its_disk_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`synth --images 100000000` drew for hours before the disk filled (1.6 TB)."""
    import shutil
    import types

    from converters.synth import BYTES_PER_IMAGE

    free = 5 * BYTES_PER_IMAGE  # room for 5 images
    monkeypatch.setattr(shutil, "disk_usage", lambda path: types.SimpleNamespace(free=free))
    out = tmp_path / "s"
    assert main(["synth", "--out", str(out), "--images", "6"]) == 2
    said = f"{out}: 6 images need about 96 KB (16 KB each) and {tmp_path} has 80 KB free"
    assert capsys.readouterr().err == f"defects synth: error: {said}; nothing was written\n"
    assert list(tmp_path.iterdir()) == []
    assert main(["synth", "--out", str(out), "--images", "5"]) == 0
    assert len(list((out / "IMAGES").iterdir())) == 5


def test_synth_again_into_its_folder_replaces_it_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two runs into one folder once left the union of both datasets, so `make train-det
    # SEED=1` after a first run trained on a mixture of two seeds.
    out = tmp_path / "s"
    assert main(["synth", "--out", str(out), "--images", "12", "--seed", "0"]) == 0
    assert main(["synth", "--out", str(out), "--images", "5", "--seed", "1"]) == 0
    assert len(list((out / "IMAGES").iterdir())) == len(list((out / "ANNOTATIONS").iterdir())) == 5
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    assert main(["synth", "--out", str(tmp_path / "mine")]) == 2
    assert "no synth.json" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (b"", "empty file (converter manifest JSON expected); the file was damaged"),
        (b'{"classes": ["patches"], "cou', "not valid JSON: Unterminated string"),
        (b"\xff\xd8\xff\xe0", "not text (byte 0 is not UTF-8); the file was damaged"),
        (b"[1, 2, 3]", "no class list and split counts, as a conversion writes them"),
        (b'{"classes": [], "counts": {}}', "no class list and split counts"),
    ],
)
def test_a_damaged_manifest_is_one_line_from_every_reader(
    damage: bytes, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Train, train-cls, evaluate and review each read a converter output's manifest: a
    JSONDecodeError, UnicodeDecodeError, TypeError or AttributeError traceback before."""
    from detection.review import read_source

    out = tmp_path / "out"
    assert main(["convert", str(_small(tmp_path / "src")), "--out", str(out)]) == 0
    (out / "manifest.json").write_bytes(damage)
    said = f"{out / 'manifest.json'}: {reason}"
    weights = ["--weights-dir", str(tmp_path / "w"), "--epochs", "1"]
    for argv in (
        ["train", "--data", str(out), *weights],
        ["train-cls", "--data", str(out), "--backbone", "none", *weights],
        ["evaluate", "--predictions", str(DATA / "parity_dt.json"), "--data", str(out)],
    ):
        assert main([*argv, "--out", str(tmp_path / "o")] if argv[0] == "evaluate" else argv) == 2
        assert said in capsys.readouterr().err
    with pytest.raises(ConversionError, match=re.escape(said)):
        read_source(out)


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("resaved larger", "the image is 128x96 pixels, but its ground truth gives 64x48: the "
         "image was changed after its annotations were written; convert the dataset again"),
        ("cut short", "ground-truth image not read: JPEG cut short"),
        ("text", "ground-truth image not read: not a readable image"),
        ("deleted", "ground-truth image not read: No such file or directory"),
    ],
)  # fmt: skip
def test_review_refuses_an_image_changed_since_the_conversion(
    damage: str, said: str, tmp_path: Path
) -> None:
    """review read a converted dataset's sizes from its COCO file alone: an image
    written over since showed its boxes misplaced in the App, or a broken image."""
    from detection.review import read_source

    src = _small(tmp_path / "src")
    out = tmp_path / "out"
    assert main(["convert", str(src), "--out", str(out)]) == 0
    assert len(read_source(out).images) == 4
    image = sorted((out / "images" / "val").iterdir())[0]
    original = image.resolve().read_bytes()
    image.unlink()  # a link to the source: replaced, not written through
    if damage == "resaved larger":
        write_image(image, 128, 96)
    elif damage == "cut short":
        image.write_bytes(original[: len(original) // 2])
    elif damage == "text":
        image.write_text("not an image")
    with pytest.raises(ConversionError, match=re.escape(f"{image}: {said}")):
        read_source(out)


def _failed_allocation(library: str) -> Exception:
    """The error each library raises for an allocation it cannot make, made for real
    (ONNX Runtime's as it said it on a 2-core machine at --imgsz 8192). Each asks more
    than the 128 TiB a process can address, so that no machine makes it, however it
    overcommits."""
    try:
        if library == "numpy":
            np.empty((10**8, 10**6))
        elif library == "opencv":
            cv2.resize(np.zeros((2, 2), np.uint8), (12_000_000, 12_000_000))
        elif library == "torch":
            import torch

            torch.empty(2**50, dtype=torch.uint8)
        else:
            from onnxruntime.capi.onnxruntime_pybind11_state import Fail

            raise Fail(
                "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running "
                "FusedMatMul node. Status Message: /onnxruntime_src/onnxruntime/core/framework/"
                "bfc_arena.cc:360 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, "
                "onnxruntime::Stream*) Failed to allocate memory for requested buffer of size "
                "34899763456"
            )
    except Exception as error:
        return error
    raise AssertionError(f"{library} allocated it")


@pytest.mark.parametrize(
    ("library", "asked"),
    [
        ("numpy", "(745,058.1 GiB asked at once)"),  # numpy says "728. TiB"
        ("opencv", "(134,110.5 GiB asked at once)"),
        ("torch", "(1,048,576.0 GiB asked at once)"),
        ("onnxruntime", "(32.5 GiB asked at once)"),
    ],
)
def test_an_allocation_too_large_is_one_line_naming_what_makes_it_smaller(
    library: str, asked: str
) -> None:
    args = argparse.Namespace(batch=16, imgsz=4096, command="predict")
    said = out_of_memory(_failed_allocation(library), args)
    assert said == f"out of memory {asked}: a smaller --batch (16) or --imgsz (4096) needs less"
    # Without the options, no advice; any other error is not this one.
    assert out_of_memory(_failed_allocation(library), argparse.Namespace()) == (
        f"out of memory {asked}"
    )
    assert out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), args) is None


def test_a_command_out_of_memory_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import detection.predict

    def allocate_too_much(*args: object, **kwargs: object) -> None:
        # OpenCV's own failure
        cv2.resize(np.zeros((2, 2), np.uint8), (12_000_000, 12_000_000))

    monkeypatch.setattr(detection.predict, "predict", allocate_too_much)
    write_image(tmp_path / "a.jpg")
    assert main(["predict", str(tmp_path / "a.jpg"), "--weights", "neu-det", "--batch", "4"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "defects predict: error: out of memory (134,110.5 GiB asked at once): "
        "a smaller --batch (4) needs less\n"
    )
