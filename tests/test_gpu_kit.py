"""The GPU kit (tools/gpu): the device machine has no polars, so training there runs on
a stand-in for the one call ultralytics makes while training. Here it must train and
checkpoint exactly as with polars."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
SHIM = REPO / "tools" / "gpu" / "shim"

TRAIN = """
import sys
import polars
assert polars.__file__.startswith(sys.argv[3]), polars.__file__  # the stand-in, not polars
from detection.train import train
train(sys.argv[1], "shim", epochs=2, weights_dir=sys.argv[2], device="cpu", workers=0,
      imgsz=64, batch=8, extra={"plots": False})
"""


def test_training_checkpoints_with_the_polars_stand_in(tiny_data: Path, tmp_path: Path) -> None:
    import polars
    import torch

    environment = {**os.environ, "PYTHONPATH": f"{SHIM}{os.pathsep}{REPO}"}
    result = subprocess.run(
        [sys.executable, "-c", TRAIN, str(tiny_data), str(tmp_path), str(SHIM)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "shim"
    expected = polars.read_csv((run / "results.csv").read_bytes()).to_dict(as_series=False)
    # The last epoch's checkpoint embeds results.csv as polars itself would read it (the
    # final strip keeps it).
    checkpoint = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint["train_results"] == expected
    assert len(expected["epoch"]) == 2 and isinstance(expected["time"][0], float)


def test_the_stand_in_refuses_what_it_does_not_provide() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("stand_in", SHIM / "polars" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(AttributeError, match="DataFrame is not provided"):
        module.DataFrame  # noqa: B018
    frame = module.read_csv(b"epoch,time,name\n1,2.5,a\n2,3,b\n")
    columns = frame.to_dict(as_series=False)
    assert columns == {"epoch": [1, 2], "time": [2.5, 3.0], "name": ["a", "b"]}
    assert [type(v) for v in columns["time"]] == [float, float]


PROBE = REPO / "tools" / "gpu" / "probe"
# Real lookups replaced by recorders before the probe wraps them: nothing leaves here.
LOOKUPS = """
import importlib.util, socket, sys
passed = []
socket.getaddrinfo = lambda host, *args, **kwargs: passed.append(host) or []
socket.gethostbyname = lambda host: passed.append(host) or "127.0.0.1"
spec = importlib.util.spec_from_file_location("probe", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
socket.getaddrinfo("localhost", 80)
socket.getaddrinfo(b"github.com", 443)
socket.gethostbyname("127.0.0.1")
socket.gethostbyname("pypi.org")
print(passed)
"""


def test_the_lookup_probe_records_every_name_off_loopback(tmp_path: Path) -> None:
    log = tmp_path / "lookups.txt"
    environment = {**os.environ, "LOOKUP_LOG": str(log)}
    probe = str(PROBE / "sitecustomize.py")
    result = subprocess.run(
        [sys.executable, "-c", LOOKUPS, probe], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0, result.stderr
    # Every lookup still happens; the ones off loopback are on record.
    assert result.stdout.strip() == "['localhost', b'github.com', '127.0.0.1', 'pypi.org']"
    assert log.read_text().splitlines() == ["github.com", "pypi.org"]
    # On PYTHONPATH (as run.sh sets it), Python loads it in every process by itself.
    wrapped = subprocess.run(
        [sys.executable, "-c", "import socket; print(socket.getaddrinfo.__qualname__)"],
        capture_output=True,
        text=True,
        env={**environment, "PYTHONPATH": str(PROBE)},
    )
    assert wrapped.stdout.strip() == "_recorded.<locals>.lookup"


def test_what_a_gpu_call_carries_is_refused_here_over_64_mib(tmp_path: Path) -> None:
    # tools/gpu/travels.sh counts what the device tool copies: the files git tracks or
    # would track, and the carried paths; ignored files stay behind.
    repo = tmp_path / "repo"
    (repo / "tools" / "gpu").mkdir(parents=True)
    (repo / "tools" / "gpu" / "travels.sh").write_bytes(
        (REPO / "tools/gpu/travels.sh").read_bytes()
    )
    (repo / ".gitignore").write_text("/.gpu/\n/weights/\n")
    for folder, mib in ((".gpu", 60), ("weights", 30)):
        (repo / folder).mkdir()
        with open(repo / folder / "big.bin", "wb") as sparse:  # no disk taken
            sparse.truncate(mib * 1024 * 1024)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)

    def travels(*carried: str) -> subprocess.CompletedProcess:
        script = ["bash", str(repo / "tools" / "gpu" / "travels.sh"), *carried]
        return subprocess.run(script, capture_output=True, text=True)

    fits = travels()
    assert fits.returncode == 0, fits.stderr
    # .gpu counted, the ignored weights left out.
    assert fits.stdout.startswith("travels: 60.0 MiB of the 64")
    (repo / "notes.bin").write_bytes(bytes(5 * 1024 * 1024))  # untracked, not ignored: it travels
    over = travels()
    assert over.returncode == 1
    assert "65.0 MiB would travel (the repository and .gpu), over the 64 MiB" in over.stderr
    assert over.stderr.splitlines()[1:3] == ["  60.0 MiB .gpu/big.bin", "  5.0 MiB notes.bin"]
    (repo / "notes.bin").unlink()
    assert travels(".gpu", "weights").returncode == 1  # a carried path counts, ignored or not
    # ... once, though git tracks it too: 60 MiB carried as .gpu and as a tracked copy.
    (repo / "tracked").mkdir()
    with open(repo / "tracked" / "big.bin", "wb") as sparse:
        sparse.truncate(3 * 1024 * 1024)
    subprocess.run(["git", "-C", str(repo), "add", "tracked"], check=True)
    twice = travels(".gpu", "tracked")
    assert twice.stdout.startswith("travels: 63.0 MiB of the 64"), twice.stderr
