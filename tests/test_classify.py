"""Classification fallback: both data kinds, backbone transfer, routing, top-k, heatmaps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from converters.convert import convert
from converters.definitions import load_definition
from converters.errors import ConversionError
from converters.source import image_digest
from converters.synth import synth_dataset, synth_image
from detection.classify import (
    ClassificationSource,
    count_transfer,
    evaluate_classifier,
    from_converted,
    from_folders,
    grad_cam,
    image_label_from_boxes,
    layout_tree,
    prepare_source,
    train_classifier,
)
from detection.splits import TRAINED_ON
from tests.helpers import write_image
from tests.test_gc10 import _write_official

DEFECTS = [sys.executable, "-m", "detection.cli"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def good_defective(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary good/defective folder-per-class set of synthetic steel."""
    root = tmp_path_factory.mktemp("binary")
    rng = np.random.default_rng(3)
    for i in range(12):
        pixels, _ = synth_image(rng)
        (root / "defective").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "defective" / f"d{i}.jpg"), pixels)
        plain = np.clip(rng.normal(128, 6, pixels.shape), 0, 255).astype(np.uint8)
        (root / "good").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "good" / f"g{i}.jpg"), plain)
    return root


@pytest.fixture(scope="module")
def detector_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained yolo11n and yolo11s detection checkpoints (transfer needs shapes only)."""
    from ultralytics.nn.tasks import DetectionModel

    root = tmp_path_factory.mktemp("det")
    paths = {}
    for scale in ("n", "s"):
        paths[scale] = root / f"yolo11{scale}.pt"
        torch.save(
            {"model": DetectionModel(f"yolo11{scale}.yaml", nc=6, verbose=False)}, paths[scale]
        )
    return paths


@pytest.mark.parametrize(
    ("boxes", "expected"),
    [
        ([], None),
        ([(2, 0.1)], 2),
        ([(0, 0.1), (3, 0.2)], 3),
        ([(0, 0.1), (0, 0.15), (3, 0.2)], 0),  # total area per class, not the single largest box
        ([(4, 0.2), (1, 0.2)], 1),  # a tie goes to the lower class id
    ],
)
def test_image_label_rule(boxes: list[tuple[int, float]], expected: int | None) -> None:
    assert image_label_from_boxes(boxes) == expected


def test_folder_per_class_is_split_per_class(good_defective: Path) -> None:
    source = from_folders(good_defective, seed=0)
    assert source.classes == ["defective", "good"]
    for name in source.classes:
        splits = [s for _, c, s in source.items if c == name]
        assert splits.count("train") == 10 and splits.count("val") == 2
    assert from_folders(good_defective, seed=0).items == source.items


def test_a_class_kept_in_dated_folders_is_read_whole(tmp_path: Path) -> None:
    """Images at any depth of a class folder are the class's, as torchvision's
    ImageFolder reads them; two of one name each get a link of their own."""
    for name in ("good", "bad"):
        for day in ("2026-11-03", "2026-11-04"):
            for i in range(3):
                write_image(tmp_path / "src" / name / day / f"{i}.jpg", seed=i)
    source = from_folders(tmp_path / "src", seed=0)
    assert source.classes == ["bad", "good"] and len(source.items) == 12
    tree = layout_tree(source, tmp_path / "tree")
    links = sorted(tree.rglob("*.jpg"))
    assert len(links) == 12
    assert sorted(link.resolve() for link in links) == sorted(i for i, _, _ in source.items)


def _split_given(root: Path, classes: dict[str, list[str]]) -> Path:
    for split, names in classes.items():
        for name in names:
            for i in range(2):
                write_image(root / split / name / f"{name}_{i}.jpg", seed=i)
    return root


@pytest.mark.parametrize(
    ("make", "background", "message"),
    [
        (
            lambda root: _split_given(root, {"train": ["good", "bad"], "val": ["good", "odd"]}),
            None,
            "no training images of odd (images in {root}/val/odd, none in {root}/train/odd): "
            "the classifier could never predict it",
        ),
        # Only the splits that hold the class are named (val, which lacks it, was too).
        (
            lambda root: _split_given(
                root, {"train": ["good", "bad"], "val": ["good", "bad"], "test": ["odd"]}
            ),
            None,
            "no training images of odd (images in {root}/test/odd, none in {root}/train/odd)",
        ),
        (
            lambda root: _split_given(root, {"train": ["good", "bad"], "val": ["good", "bad"]}),
            "good",
            "--background-class names the class of a converter output's images without boxes; "
            "{root} is a folder per class",
        ),
        # GC10-DET keeps its images in a folder per class and its boxes in lable/.
        (
            lambda root: _write_official(root) or root,
            None,
            "{root} is a dataset in VOC XML (GC10-DET official (folders 1..10 + lable/)), not "
            "a converted one; convert it first",
        ),
    ],
)
def test_data_a_classifier_cannot_use_is_refused(
    make: Callable[[Path], Path], background: str | None, message: str, tmp_path: Path
) -> None:
    root = make(tmp_path / "src")
    with pytest.raises(ConversionError) as refused:
        prepare_source(root, background, seed=0)
    assert message.format(root=root) in str(refused.value)


def test_images_ultralytics_would_pass_over_are_named_before_training(tmp_path: Path) -> None:
    # Its dataset scan dropped the val image and trained on; our val of the classifier
    # then stopped in ultralytics' Image.open (ModuleNotFoundError: pi_heif).
    root = _split_given(tmp_path / "src", {"train": ["good", "bad"], "val": ["good", "bad"]})
    written_over = root / "val" / "bad" / "bad_1.jpg"
    written_over.write_bytes(b"")
    tiny = root / "train" / "good" / "good_9.jpg"
    write_image(tiny, 8, 8)
    weights = tmp_path / "w"
    with pytest.raises(ConversionError) as refused:
        train_classifier(root, "c", epochs=1, weights_dir=weights, workers=0)
    said = str(refused.value)
    assert said.startswith("2 files that ultralytics would pass over as corrupt")
    assert f"{written_over}: not a readable image" in said
    assert f"{tiny}: 8x8 pixels, under the 10 a side" in said
    assert not weights.exists()


def test_a_background_class_that_is_a_class_already_is_refused(tmp_path: Path) -> None:
    synth_dataset(tmp_path / "src", images=6, seed=4)
    out = convert(tmp_path / "src", tmp_path / "out", definition=load_definition("synthetic")).out
    taken = load_definition("synthetic").classes[0]
    with pytest.raises(ConversionError, match=f"--background-class {taken}: a class of"):
        from_converted(out, background_class=taken)


def test_a_label_file_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    synth_dataset(tmp_path / "src", images=6, seed=4)
    out = convert(tmp_path / "src", tmp_path / "out", definition=load_definition("synthetic")).out
    label = sorted((out / "labels" / "train").iterdir())[0]
    label.write_bytes(b"\xff\xd8\xff\xe0")  # a JPEG's first bytes
    with pytest.raises(ConversionError, match=f"{label}: not text \\(byte 0 is not UTF-8\\)"):
        from_converted(out)


def test_converter_output_labels_and_background(tmp_path: Path) -> None:
    synth_dataset(tmp_path / "src", images=10, seed=4)
    out = convert(
        tmp_path / "src",
        tmp_path / "out",
        definition=load_definition("synthetic"),
        unlabeled_as_background=True,
    ).out
    (
        tmp_path / "out" / "labels" / "train" / sorted((out / "labels" / "train").iterdir())[0].name
    ).write_text("")  # one image with no boxes
    plain = from_converted(out)
    with_good = from_converted(out, background_class="good")
    assert len(plain.items) == 9 and len(with_good.items) == 10
    assert with_good.classes[-1] == "good"
    assert sum(1 for _, c, _ in with_good.items if c == "good") == 1


@pytest.mark.parametrize("given", ["folder", "data.yaml"])
def test_any_yolo_dataset_is_labelled_as_a_converter_output_is(tmp_path: Path, given: str) -> None:
    # train, evaluate and review took a YOLO dataset (Roboflow's export, say); train-cls
    # refused it as "neither a converter output nor a folder per class".
    synth_dataset(tmp_path / "src", images=12, seed=4)
    out = convert(tmp_path / "src", tmp_path / "out", definition=load_definition("synthetic")).out
    (sorted((out / "labels" / "val").iterdir())[0]).write_text("")  # an image without boxes
    yolo = tmp_path / "roboflow"
    for split, folder in (("train", "train"), ("val", "valid")):
        for kind in ("images", "labels"):
            shutil.copytree(out / kind / split, yolo / folder / kind)
    names = load_definition("synthetic").classes
    (yolo / "data.yaml").write_text(
        f"train: ../train/images\nval: ../valid/images\nnc: {len(names)}\nnames: {names}\n"
    )

    def labels(source: ClassificationSource) -> set[tuple[str, str, str]]:
        return {(image.name, label, split) for image, label, split in source.items}

    for background in (None, "good"):
        converted = from_converted(out, background)
        read = prepare_source(yolo / "data.yaml" if given == "data.yaml" else yolo, background, 0)
        assert read.classes == converted.classes
        assert labels(read) == labels(converted)
        assert len(read.items) == 12 - (background is None)
        assert "YOLO dataset" in read.kind


def test_transfer_counts(detector_checkpoints: dict[str, Path]) -> None:
    from ultralytics.nn.tasks import ClassificationModel

    model = ClassificationModel("yolo11n-cls.yaml", nc=2, verbose=False)
    assert count_transfer(detector_checkpoints["n"], model) == (192, 236, True)
    transferred, _total, matched = count_transfer(detector_checkpoints["s"], model)
    assert not matched and transferred < 100


def test_train_cls_end_to_end_with_backbone(
    good_defective: Path, detector_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            *DEFECTS,
            "train-cls",
            "--data",
            str(good_defective),
            "--backbone",
            str(detector_checkpoints["n"]),
            "--epochs",
            "1",
            "--imgsz",
            "64",
            "--batch",
            "8",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--name",
            "cls",
            "--weights-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transferred 192 of 236 tensors" in result.stderr
    summary = json.loads((tmp_path / "cls" / "summary.json").read_text())
    assert summary["transfer"] == {
        "transferred": 192,
        "total": 236,
        "from": str(detector_checkpoints["n"]),
    }
    report = json.loads((tmp_path / "cls" / "report" / "report.json").read_text())
    assert report["images"] == 4 and 0 <= report["top1"] <= report["top5"] == 1.0
    assert [c["name"] for c in report["per_class"]] == ["defective", "good"]
    assert (tmp_path / "cls" / "report" / "confusion_matrix.png").is_file()
    # An untrained checkpoint records no training images: said, not guessed.
    assert summary["backbone_seen_in_training"] == {"record": None, "of": 4}
    assert (
        "**Seen in training:** not known: the detector whose backbone"
        in (tmp_path / "cls" / "report" / "report.md").read_text()
    )

    # classify: top-k ordered, probabilities summing to 1, heatmaps, a corrupt image skipped.
    images = tmp_path / "in"
    images.mkdir()
    for source in sorted((good_defective / "defective").iterdir())[:2]:
        (images / source.name).write_bytes(source.read_bytes())
    (images / "broken.jpg").write_bytes(b"nope")
    whole = sorted((good_defective / "defective").iterdir())[0].read_bytes()
    (images / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # OpenCV alone decodes it
    # A 12-bit camera image in 16 bits: classified as OpenCV reads it (top 8 bits), noted.
    camera = (np.arange(48 * 64) * 4095 // (48 * 64 - 1)).astype(np.uint16).reshape(48, 64)
    assert cv2.imwrite(str(images / "camera.png"), camera)
    result = subprocess.run(
        [
            *DEFECTS,
            "classify",
            str(images),
            "--weights",
            str(tmp_path / "cls" / "best.pt"),
            "--out",
            str(tmp_path / "out"),
            "--top-k",
            "2",
            "--heatmap",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(predictions) == 3
    noted = {Path(e["file"]).name: e["note"] for e in predictions if "note" in e}
    assert (
        list(noted) == ["camera.png"] and "brightest pixel reads 15 of 255" in noted["camera.png"]
    )
    assert f"note {images / 'camera.png'}: 16-bit samples" in result.stderr
    for entry in predictions:
        probabilities = [k["probability"] for k in entry["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)  # 2 classes, top-2 = all
        heat = cv2.imread(entry["heatmap"])
        assert heat.shape == cv2.imread(str(images / Path(entry["file"]).name)).shape
    errors = json.loads((tmp_path / "out" / "errors.json").read_text())
    errors = {Path(error["file"]).name: error["error"] for error in errors}
    assert errors.keys() == {"broken.jpg", "cut.jpg"}
    assert errors["cut.jpg"].startswith("JPEG cut short")
    # Its output as its input, or an --out holding its input: refused, where the first
    # classified its own heatmaps and the second replaced the folder it read.
    weights = ["--weights", str(tmp_path / "cls" / "best.pt")]
    read = sorted(path.name for path in images.iterdir())
    for source, out, said in (
        ("out", "new", "out: the predictions of predict or classify (its predictions.json): its "
         "images are drawn copies"),
        ("in", "in", "in: holds the source ("),
    ):  # fmt: skip
        argv = [*DEFECTS, "classify", str(tmp_path / source), *weights]
        again = subprocess.run(
            [*argv, "--out", str(tmp_path / out)], capture_output=True, text=True
        )
        assert again.returncode == 2 and said in again.stderr, again.stderr
    assert json.loads((tmp_path / "out" / "predictions.json").read_text()) == predictions
    assert sorted(path.name for path in images.iterdir()) == read
    assert not (tmp_path / "new").exists()
    # Without --out: the same entries (no heatmap) as JSON lines on stdout, no file.
    argv = [*DEFECTS, "classify", str(images), "--weights", str(tmp_path / "cls" / "best.pt")]
    streamed = subprocess.run([*argv, "--top-k", "2"], capture_output=True, text=True)
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    lines = [json.loads(line) for line in streamed.stdout.splitlines()]
    assert lines == [{k: v for k, v in e.items() if k != "heatmap"} for e in predictions]
    assert "3 images -> stdout" in streamed.stderr and "broken.jpg" in streamed.stderr
    refused = subprocess.run([*argv, "--heatmap"], capture_output=True, text=True)
    assert refused.returncode == 2 and "--heatmap writes images: it needs --out" in refused.stderr
    # Nothing readable at all: a failure, not a day without defects.
    broken = [*DEFECTS, "classify", str(images / "broken.jpg"), "--weights", argv[-1]]
    unread = subprocess.run(broken, capture_output=True, text=True)
    assert unread.returncode == 2, unread.stderr[-3000:]
    assert "broken.jpg (1 skipped)" in unread.stderr and "Traceback" not in unread.stderr
    # A held-out set without one class: its recall is undefined, n/a (null in the JSON).
    partial = tmp_path / "partial" / "defective"
    partial.mkdir(parents=True)
    for source in sorted((good_defective / "defective").iterdir())[:2]:
        (partial / source.name).write_bytes(source.read_bytes())
    scored = evaluate_classifier(tmp_path / "cls" / "best.pt", partial.parent, tmp_path / "pr")
    assert [c["images"] for c in scored["per_class"]] == [2, 0]
    rows = (tmp_path / "pr" / "report.md").read_text().splitlines()
    assert "| good | 0 | 0.000 | n/a | n/a |" in rows and "nan" not in "\n".join(rows)
    assert (
        json.loads((tmp_path / "pr" / "report.json").read_text())["per_class"][1]["recall"] is None
    )
    # A backbone whose detector was trained on held-out images: the report says so.
    run = tmp_path / "detector-run"
    run.mkdir()
    shutil.copyfile(detector_checkpoints["n"], run / "best.pt")
    held_out = sorted(partial.iterdir())
    record = {"images": 1, "complete": True, "images_sha256": [image_digest(held_out[0])]}
    (run / TRAINED_ON).write_text(json.dumps(record))
    scored = evaluate_classifier(
        tmp_path / "cls" / "best.pt", partial.parent, tmp_path / "seen", backbone=run / "best.pt"
    )
    seen = scored["backbone_seen_in_training"]
    assert (seen["images"], seen["of"], seen["examples"]) == (1, 2, [held_out[0].name])
    assert (
        "the detector whose backbone started it was trained on 1 of these 2 images"
        in (tmp_path / "seen" / "report.md").read_text()
    )


def test_scale_mismatch_fails_loudly(
    good_defective: Path, detector_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            *DEFECTS,
            "train-cls",
            "--data",
            str(good_defective),
            "--backbone",
            str(detector_checkpoints["s"]),
            "--epochs",
            "1",
            "--weights-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "does not fit yolo11n-cls.yaml" in result.stderr and "Traceback" not in result.stderr


def test_train_on_image_level_data_offers_the_fallback(good_defective: Path) -> None:
    result = subprocess.run(
        [*DEFECTS, "train", "--data", str(good_defective)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "image-level labels" in result.stderr
    assert f"defects train-cls --data {good_defective}" in result.stderr


def test_grad_cam_shape_and_range(tmp_path: Path) -> None:
    from ultralytics import YOLO

    model = YOLO("yolo11n-cls.yaml")
    image = cv2.imread(str(synth_dataset(tmp_path, images=1, seed=2)[0].path))
    wide = np.concatenate([image, image[:, :100]], axis=1)  # 200x300: the centre crop case
    for pixels in (image, wide):
        cam = grad_cam(model, pixels, 96)
        assert cam.shape == pixels.shape[:2]
        assert cam.dtype == np.float32 and cam.min() >= 0.0 and cam.max() <= 1.0
        assert cam.max() == pytest.approx(1.0) or cam.max() == 0.0
    assert (cam[:, :50] == 0).all() and (cam[:, -50:] == 0).all()  # outside the crop
