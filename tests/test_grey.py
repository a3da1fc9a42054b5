"""Models of grey images: trained with ``channels: 1`` in the data.yaml (ultralytics reads
the images as grey levels), which suits grey steel. Predict, export --int8 and evaluate
fed them BGR pixels and failed with a traceback (torch's first convolution, ONNX
Runtime's check of the input's shape).

Each test uses a twin of the released model: its stem's weights summed over B, G and R,
a model of grey images that computes on a grey image's grey levels what the colour model
computes on the image (NEU-DET's images, like the tiny synthetic data's, are grey: their
1,800 JPEGs decode with B = G = R).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from detection.release import TESTED_RELEASE
from detection.weights import MODELS_DIR, WeightsError

RELEASED = MODELS_DIR / TESTED_RELEASE


def _grey_twin(colour: Path, target: Path) -> Path:
    import torch

    checkpoint = torch.load(colour, weights_only=False)
    key = "ema" if checkpoint.get("ema") is not None else "model"
    network = checkpoint[key]
    stem = network.model[0].conv
    grey = torch.nn.Conv2d(1, stem.out_channels, stem.kernel_size, stem.stride, stem.padding)
    grey.bias = None
    with torch.no_grad():
        grey.weight.copy_(stem.weight.float().sum(1, keepdim=True))
    network.model[0].conv = grey  # in float32: the colour model sums its products so
    network.yaml["channels"] = 1
    torch.save(checkpoint, target)
    return target


@pytest.fixture(scope="module")
def grey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("grey")
    shutil.copy(RELEASED / "model.pt", folder / "colour.pt")
    return _grey_twin(folder / "colour.pt", folder / "grey.pt")


def _steel(neu_det: Path) -> list[Path]:
    """Two images of each NEU-DET class."""
    images = sorted((neu_det / "IMAGES").glob("*.jpg"))
    return [path for path in images if path.stem.split("_")[-1] in {"7", "70"}]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_model_of_grey_images_detects_what_its_colour_twin_does(
    grey: Path, neu_det: Path, backend: str
) -> None:
    from detection.predict import load_detector

    images = [cv2.imread(str(path)) for path in _steel(neu_det)]
    assert len(images) == 12 and all((image[..., 0] == image[..., 2]).all() for image in images)
    twin = load_detector(grey, backend)
    assert twin.channels == 1
    theirs = load_detector(grey.parent / "colour.pt", backend)(images)
    ours = twin(images)
    assert all(found.scores.size for found in ours)
    for mine, colour in zip(ours, theirs):
        np.testing.assert_array_equal(mine.classes, colour.classes)
        np.testing.assert_allclose(mine.scores, colour.scores, atol=1e-4)
        np.testing.assert_allclose(mine.boxes, colour.boxes, atol=1e-2)


def test_a_model_of_grey_images_exports_to_int8_taking_grey_pixels(
    grey: Path, neu_det: Path
) -> None:
    from detection.boxes import iou_matrix
    from detection.predict import export_onnx, load_detector

    paths = _steel(neu_det)
    assert export_onnx(grey, int8_calibration=paths) == grey.with_suffix(".int8.onnx")
    int8 = load_detector(grey, "onnx-int8")
    assert int8.takes_pixels and int8.channels_last and int8.channels == 1
    images = [cv2.imread(str(path)) for path in paths]
    # The most confident box of each image, where int8 rounds it.
    for quantised, exact in zip(int8(images), load_detector(grey, "onnx")(images)):
        assert quantised.classes[0] == exact.classes[0]
        assert abs(quantised.scores[0] - exact.scores[0]) < 0.1
        assert iou_matrix(quantised.boxes[:1], exact.boxes[:1])[0, 0] > 0.8


def test_a_model_of_grey_images_is_evaluated_as_its_colour_twin(
    grey: Path, tiny_data: Path, tmp_path: Path
) -> None:
    from detection.evaluate import evaluate_model

    reports = [
        evaluate_model(weights, tiny_data, tmp_path / weights.stem, replicates=0)
        for weights in (grey, grey.parent / "colour.pt")
    ]
    mine, colour = reports
    assert mine["metrics"]["AP50"] == pytest.approx(colour["metrics"]["AP50"], abs=1e-6)
    # Ultralytics' own val read the colour data.yaml's images in the model's one channel.
    assert mine["ultralytics"]["mAP50"] == pytest.approx(colour["ultralytics"]["mAP50"], abs=1e-4)


def test_weights_of_grey_images_start_a_colour_model_exactly(
    grey: Path, neu_det: Path, tmp_path: Path
) -> None:
    """A classifier (``train-cls --backbone``) or a detector trained on colour data
    (``train --model``) takes BGR: the grey stem is spread over the three channels, a
    third each, so that on grey steel it starts where the grey model was. Ultralytics'
    own transfer fills one channel and leaves two random; the classifier refused the
    backbone as not fitting."""
    import torch
    from ultralytics.nn.tasks import ClassificationModel

    from detection.classify import count_transfer
    from detection.predict import channels_first, letterbox
    from detection.weights import load_yolo, model_channels, spread_grey_stem, student_checkpoint

    model = load_yolo(grey, "detect")
    image = cv2.imread(str(_steel(neu_det)[0]))
    pixels = channels_first([letterbox(image, 224)[0]], scaled=True)
    network = model.model.float().eval()
    with torch.no_grad():
        before = network(torch.from_numpy(pixels[:, :1].copy()))[0]
        spread_grey_stem(network)
        after = network(torch.from_numpy(pixels))[0]
    assert model_channels(model) == 3
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    start = student_checkpoint(model, tmp_path, changed=True)
    assert start == tmp_path / grey.name  # the module as it is now, not the grey file
    probe = ClassificationModel("yolo11n-cls.yaml", nc=6, verbose=False)
    assert count_transfer(start, probe) == (192, 236, True)


def test_a_detector_trained_on_colour_data_starts_from_the_spread_grey_stem(
    grey: Path, tiny_data: Path, tmp_path: Path
) -> None:
    import torch

    from detection.train import train

    still = {"optimizer": "SGD", "lr0": 0.0, "lrf": 0.0, "momentum": 0.0, "weight_decay": 0.0}
    run = train(
        tiny_data,
        "from-grey",
        model=str(grey),
        imgsz=96,
        epochs=1,
        batch=8,
        device="cpu",
        weights_dir=tmp_path,
        workers=0,
        extra={**still, "warmup_epochs": 0, "warmup_bias_lr": 0.0, "plots": False},
    )
    stem = torch.load(run / "last.pt", weights_only=False)["model"].model[0].conv.weight
    grey_stem = torch.load(grey, weights_only=False)
    grey_stem = (grey_stem.get("ema") or grey_stem["model"]).model[0].conv.weight
    assert stem.shape[1] == 3
    spread = (grey_stem.float() / 3).expand(-1, 3, -1, -1)
    torch.testing.assert_close(stem.float(), spread, atol=1e-3, rtol=1e-3)


def test_a_teacher_of_grey_images_is_refused_for_colour_data(grey: Path, tiny_data: Path) -> None:
    from detection.train import _teacher_model

    with pytest.raises(WeightsError, match=r"grey\.pt: the teacher takes grey images"):
        _teacher_model(str(grey), tiny_data / "data.yaml")


def test_a_dataset_defined_grey_trains_a_model_of_grey_levels_from_the_colour_release(
    tmp_path: Path,
) -> None:
    """A definition with ``channels: 1`` (NEU-DET's) converts to a data.yaml that reads
    the images as one channel, so training makes a model of grey levels; from the colour
    release (``train --model neu-det``), ultralytics sums its stem over B, G and R, the
    same model on grey images. The colour release scores on that data as on colour data,
    and the grey run's release card says it takes grey images."""
    import torch
    import yaml

    from converters.convert import convert
    from converters.definitions import DEFINITIONS_DIR, load_definition
    from converters.synth import synth_dataset
    from detection.train import train
    from detection.weights import load_yolo, model_channels

    definition = tmp_path / "grey.yaml"
    definition.write_text((DEFINITIONS_DIR / "synthetic.yaml").read_text() + "channels: 1\n")
    synth_dataset(tmp_path / "src", images=12, seed=2)
    data = convert(tmp_path / "src", tmp_path / "data", definition=load_definition(definition)).out
    assert yaml.safe_load((data / "data.yaml").read_text())["channels"] == 1
    still = {"optimizer": "SGD", "lr0": 0.0, "lrf": 0.0, "momentum": 0.0, "weight_decay": 0.0}
    run = train(
        data,
        "grey",
        model=TESTED_RELEASE,
        imgsz=64,
        epochs=1,
        batch=8,
        device="cpu",
        weights_dir=tmp_path / "weights",
        workers=0,
        extra={**still, "warmup_epochs": 0, "warmup_bias_lr": 0.0, "plots": False},
    )
    assert model_channels(load_yolo(run / "last.pt", "detect")) == 1
    stem = torch.load(run / "last.pt", weights_only=False)["model"].model[0].conv.weight
    colour = load_yolo(RELEASED / "model.pt", "detect").model.model[0].conv.weight
    torch.testing.assert_close(
        stem.float(), colour.float().sum(1, keepdim=True), atol=1e-3, rtol=1e-3
    )
    # ... and a colour model is scored on the grey data as on the colour data (ultralytics'
    # val reads the images in the model's three channels).
    from detection.evaluate import evaluate_model

    plain = convert(tmp_path / "src", tmp_path / "colour", definition=load_definition("synthetic"))
    assert "channels" not in yaml.safe_load((plain.out / "data.yaml").read_text())
    on_grey, on_colour = (
        evaluate_model(
            RELEASED / "model.pt", folder, tmp_path / f"report-{folder.name}", replicates=0
        )
        for folder in (data, plain.out)
    )
    assert on_colour["metrics"]["AP50"] > 0.1 and on_colour["ultralytics"]["mAP50"] > 0.1
    assert on_grey["metrics"]["AP50"] == pytest.approx(on_colour["metrics"]["AP50"], abs=1e-9)
    assert on_grey["ultralytics"]["mAP50"] == pytest.approx(
        on_colour["ultralytics"]["mAP50"], abs=1e-9
    )
    # Released, its card says that its model (and its ONNX input) takes one channel, and
    # that its int8 export takes grey pixels.
    import json

    from detection.cli import main
    from detection.predict import int8_quantisation

    argv = ["release", "--run", str(run), "--data", str(data), "--name", "grey"]
    assert main([*argv, "--models-dir", str(tmp_path / "models")]) == 0
    card = json.loads((tmp_path / "models" / "grey" / "card.json").read_text())
    assert card["model"]["channels"] == 1
    assert card["int8"]["quantisation"] == int8_quantisation(1) != int8_quantisation(3)
    markdown = (tmp_path / "models" / "grey" / "card.md").read_text()
    assert "A yolo11n detector of grey images (one input channel) (" in markdown
