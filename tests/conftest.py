"""Shared fixtures. Importing ``detection`` first sets the offline switches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Several pytest workers share the cores: one thread each for torch and ONNX Runtime, in
# this process and every command a test starts, rather than every worker on every core
# (two ONNX Runtime pools spinning on two cores ran 1.25x slower than one thread each).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import detection  # noqa: F401  (offline switches before anything else)
from converters.convert import ConvertResult, convert
from converters.definitions import load_definition
from converters.synth import synth_dataset

REPO = Path(__file__).resolve().parent.parent
NEU_DET = (REPO.parent / "shared" / "datasets" / "NEU-DET").resolve()


@pytest.fixture(scope="session")
def neu_det() -> Path:
    if not (NEU_DET / "ANNOTATIONS").is_dir():
        pytest.fail(f"the real NEU-DET is expected at {NEU_DET} (../shared beside the checkout)")
    return NEU_DET


@pytest.fixture(scope="session")
def neu_converted(neu_det: Path, tmp_path_factory: pytest.TempPathFactory) -> ConvertResult:
    """The real NEU-DET converted once with the default 80/20 split, seed 0."""
    return convert(neu_det, tmp_path_factory.mktemp("neu") / "out")


DEFECTS = [sys.executable, "-m", "detection.cli"]
# Without ultralytics' training plots: a third of a tiny run's time is matplotlib's.
# (test_offline's runs keep them: they prove the plots' font needs no download.)
NO_PLOTS = ["--set", "plots=false"]
TINY = ["--imgsz", "96", "--batch", "8", "--device", "cpu", "--workers", "0", *NO_PLOTS]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    synth_dataset(root / "src", images=32, seed=1)
    return convert(
        root / "src", root / "data", definition=load_definition("synthetic"), ratios=(0.75, 0.25)
    ).out


@pytest.fixture(scope="session")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    weights_dir = tmp_path_factory.mktemp("weights")
    result = subprocess.run(
        [
            *DEFECTS,
            "train",
            "--data",
            str(tiny_data),
            "--name",
            "tiny",
            "--epochs",
            "2",
            "--weights-dir",
            str(weights_dir),
            *TINY,
            # What `optimizer=auto` picks for six classes and few iterations, set by hand.
            *["--set", "optimizer=AdamW", "--set", "lr0=0.001", "--set", "momentum=0.9"],
        ],
        capture_output=True,
        text=True,
        cwd=weights_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return weights_dir / "tiny"
