"""Every usable core computes: ultralytics would give torch ``os.cpu_count() - 1`` threads
(one of two on this project's machines) at every train, val and predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detection.threads import cpu_threads, usable_cores

# In a fresh process, as `defects` runs: threads while a training batch runs, after
# ultralytics' predict and val picked their device, and ONNX Runtime's.
PROBE = """
import json, sys
from pathlib import Path
import detection  # the entry points' first import
import numpy as np
import torch
from detection.evaluate import ultralytics_val
from detection.predict import OnnxDetector, TorchDetector
from detection.train import train

data, runs = Path(sys.argv[1]), Path(sys.argv[2])
seen = []
record = lambda trainer: seen.append(torch.get_num_threads())
weights = train(data, "threads", "yolo11n.yaml", imgsz=64, epochs=1, batch=8, device="cpu",
                weights_dir=runs, workers=0, extra={"plots": False, "val": False},
                callbacks={"on_train_batch_start": record})
TorchDetector(weights / "last.pt")([np.zeros((64, 64, 3), np.uint8)])
seen.append(torch.get_num_threads())
ultralytics_val(weights / "last.pt", data / "data.yaml", "val", 64, "cpu")
seen.append(torch.get_num_threads())
onnx = OnnxDetector(Path(sys.argv[3]))
seen.append(onnx.session.get_session_options().intra_op_num_threads)
print(json.dumps(seen))
"""


@pytest.mark.parametrize(
    ("omp_num_threads", "expected"),
    [
        (None, usable_cores()),  # unset: every core this process may use
        ("1", 1),  # set: the user's choice (to share the machine), for torch and ONNX alike
    ],
)
def test_torch_and_onnx_runtime_compute_on_the_threads_chosen(
    tiny_data: Path, trained: Path, tmp_path: Path, omp_num_threads: str | None, expected: int
) -> None:
    if omp_num_threads is None and usable_cores() < 2:
        pytest.skip("one usable core: ultralytics' choice and ours coincide")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp_num_threads is not None:
        env["OMP_NUM_THREADS"] = omp_num_threads
    onnx = _export(trained, tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tiny_data), str(tmp_path / "runs"), str(onnx)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(seen) >= 4  # training batches, predict, val, ONNX Runtime
    # Without the policy ultralytics gives torch min(8, os.cpu_count() - 1): 1 on 2 cores.
    assert set(seen) == {expected}


def _export(trained: Path, tmp_path: Path) -> Path:
    from detection.predict import export_onnx

    copy = tmp_path / "model.pt"
    copy.write_bytes((trained / "best.pt").read_bytes())
    return export_onnx(copy, 64)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3), ("1", 1), ("", usable_cores()), ("0", usable_cores()), ("many", usable_cores())],
)
def test_cpu_threads_reads_omp_num_threads(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert cpu_threads() == expected
