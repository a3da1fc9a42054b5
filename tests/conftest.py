"""Shared fixtures. Importing ``detection`` first sets the offline switches."""

from __future__ import annotations

from pathlib import Path

import pytest

import detection  # noqa: F401  (offline switches before anything else)
from converters.convert import ConvertResult, convert

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
