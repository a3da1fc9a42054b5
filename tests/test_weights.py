"""Damaged, empty or wrong weights: one clear line from every command, never a traceback.

Every command loads weights through ``detection.weights``; these tests give each command
each kind of bad file and check the exit code and the message (file and problem).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Never

import pytest

from detection.cli import main
from detection.weights import (
    WeightsError,
    atomic_write_bytes,
    check_file,
    check_name,
    released_models,
    resolve_weights,
)
from tests.conftest import DEFECTS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bad_weights(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file of each kind of bad weights, made from the tiny trained detector."""
    import torch
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("bad-weights")
    whole = (trained / "best.pt").read_bytes()
    files = {
        "empty": b"",
        "truncated": whole[: len(whole) // 3],
        "not a checkpoint": b"these are not weights\n",
    }
    made = {}
    for kind, data in files.items():
        made[kind] = root / f"{kind.replace(' ', '-')}.pt"
        made[kind].write_bytes(data)
    # A device (a link to /dev/zero named .pt): it was said to be an empty file.
    made["device"] = root / "device.pt"
    made["device"].symlink_to("/dev/zero")
    made["classifier"] = root / "classifier.pt"
    YOLO("yolo11n-cls.yaml").save(str(made["classifier"]))
    checkpoint = torch.load(trained / "best.pt", map_location="cpu", weights_only=False)
    checkpoint["model"].names = {i: f"rust-{i}" for i in checkpoint["model"].names}
    made["other classes"] = root / "other-classes.pt"
    torch.save(checkpoint, made["other classes"])
    return made


MESSAGES = {
    "empty": "empty file (0 bytes), not a checkpoint",
    "truncated": "truncated (",
    "not a checkpoint": "not a PyTorch checkpoint",
    "device": "a device or a pipe, not a weights file",
    "classifier": "a classifier where a detector is expected",
    "detector": "a detector where a classifier is expected",
    "other classes": "its classes ['rust-0', 'rust-1', 'rust-2', 'rust-3', 'rust-4', 'rust-5'] "
    "do not match the data's classes ['crazing',",
}
DAMAGED = ("empty", "truncated", "not a checkpoint")


# Each command that takes weights; {W} is the weights, {D} the converted data, {I} an
# image and {O} an output folder.
COMMANDS = {
    "predict": "predict {I} --weights {W} --out {O}/p",
    "evaluate": "evaluate --weights {W} --data {D} --out {O}/e",
    "export": "export --weights {W}",
    "train --model": "train --data {D} --model {W} --epochs 1 --weights-dir {O}/w --device cpu",
    "review": "review --data {D} --weights {W} --no-launch --name bad-weights --backend torch",
    "train-cls --backbone": "train-cls --data {D} --backbone {W} --epochs 1 --weights-dir {O}/w",
    "classify": "classify {I} --weights {W} --out {O}/c",
}


CASES = [
    (command, kind)
    for command in (
        "predict",
        "evaluate",
        "export",
        "train --model",
        "review",
        "train-cls --backbone",
    )
    for kind in (*DAMAGED, "classifier")
]
CASES += [("classify", kind) for kind in DAMAGED] + [("classify", "detector")]
CASES += [("evaluate", "other classes"), ("review", "other classes")]
CASES += [(command, "device") for command in COMMANDS]


@pytest.mark.parametrize(("command", "kind"), CASES)
def test_every_command_names_the_bad_file(
    command: str,
    kind: str,
    bad_weights: dict[str, Path],
    trained: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights = trained / "best.pt" if kind == "detector" else bad_weights[kind]
    image = next((tiny_data / "images" / "val").iterdir())
    places = {"W": weights, "D": tiny_data, "I": image, "O": tmp_path}
    argv = [word.format(**places) for word in COMMANDS[command].split()]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert f"{weights}: {MESSAGES[kind]}" in err


def _run_dir_with(tmp_path: Path, last: bytes, best: bytes | None) -> Path:
    run = tmp_path / "runs" / "run"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(last)
    if best is not None:
        (run / "best.pt").write_bytes(best)
    return run


@pytest.mark.parametrize("kind", DAMAGED)
def test_resume_names_a_damaged_last_pt(
    kind: str, bad_weights: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_dir_with(tmp_path, bad_weights[kind].read_bytes(), None)
    argv = ["train", "--resume", "--name", "run", "--weights-dir", str(run.parent)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"{run / 'last.pt'}: {MESSAGES[kind]}" in err
    assert "no intact best.pt to fall back to" in err


def test_resume_of_a_finished_run_says_so(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_dir_with(tmp_path, (trained / "last.pt").read_bytes(), None)
    argv = ["train", "--resume", "--name", "run", "--weights-dir", str(run.parent)]
    assert main(argv) == 2
    assert "that run finished; nothing to resume" in capsys.readouterr().err


def test_onnx_files_are_checked_too(
    bad_weights: dict[str, Path],
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = next((tiny_data / "images" / "val").iterdir())
    for name, data, message in [
        ("empty.onnx", b"", "empty file (0 bytes), not an ONNX model"),
        ("text.onnx", b"not a model at all", "not a loadable ONNX model"),
        ("device.onnx", None, "a device or a pipe, not an ONNX model"),
        # Not there: it was taken for an export to make from itself ("an ONNX model;
        # this needs the PyTorch .pt"), a folder and a device too.
        ("missing.onnx", "missing", "no such weights file"),
    ]:
        if data is None:  # a device (a link to /dev/zero named .onnx)
            (tmp_path / name).symlink_to("/dev/zero")
        elif data != "missing":
            (tmp_path / name).write_bytes(data)
        argv = ["predict", str(image), "--weights", str(tmp_path / name), "--backend", "onnx"]
        assert main([*argv, "--out", str(tmp_path / "out")]) == 2
        assert f"{tmp_path / name}: {message}" in capsys.readouterr().err


def test_a_real_process_prints_one_line_and_no_traceback(
    bad_weights: dict[str, Path], tiny_data: Path
) -> None:
    image = next((tiny_data / "images" / "val").iterdir())
    weights = bad_weights["truncated"]
    for argv in (
        ["predict", str(image), "--weights", str(weights), "--out", str(weights.parent / "o")],
        ["export", "--weights", str(weights)],
    ):
        result = subprocess.run([*DEFECTS, *argv], capture_output=True, text=True)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines() == [
            f"defects {argv[0]}: error: {weights}: truncated ({weights.stat().st_size} bytes, "
            "its end is missing): copied or saved incompletely"
        ]


def test_a_damaged_zip_member_is_found(trained: Path, tmp_path: Path) -> None:
    data = bytearray((trained / "best.pt").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # same length, different bytes
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="fails its CRC"):
        check_file(damaged)


def test_atomic_write_replaces_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "last.pt"
    atomic_write_bytes(target, b"first")

    def fail(*_args: object) -> Never:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"second, never seen")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no partial file left


def test_atomic_write_that_fails_midway_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk fails the write (or its fsync) with no file named: the error names the
    file that was not written, and leaves it as it was."""
    target = tmp_path / "model.onnx"
    atomic_write_bytes(target, b"first")

    def full(*_args: object) -> Never:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(OSError) as raised:
        atomic_write_bytes(target, b"second, never seen")
    assert (raised.value.errno, raised.value.filename) == (28, str(target))
    assert raised.value.strerror == "No space left on device"
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_released_names_resolve_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, path in released_models().items():
        assert resolve_weights(name) == path and path.is_file()
    # A local folder of that name (the dataset, say) does not hide the released model.
    (tmp_path / "neu-det").mkdir()
    assert resolve_weights("neu-det") == released_models()["neu-det"]
    (tmp_path / "neu-det").rmdir()
    # A local file of that name wins; paths and unknown names are left as given.
    (tmp_path / "neu-det").write_text("local")
    assert resolve_weights("neu-det") == Path("neu-det")
    assert resolve_weights("no-such-model") == Path("no-such-model")
    assert resolve_weights("weights/x/best.pt") == Path("weights/x/best.pt")


def test_an_export_older_than_its_weights_is_not_used(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training rewrites best.pt on every better epoch; the .onnx beside it from before
    would score other weights. fp32 is exported again; int8 (it needs calibration images)
    is refused with the command that makes it."""
    import os

    from detection.weights import MODELS_DIR, sha256

    image = next((tiny_data / "images" / "val").iterdir())
    weights = tmp_path / "best.pt"
    weights.write_bytes((trained / "best.pt").read_bytes())
    argv = ["predict", str(image), "--weights", str(weights), "--no-images"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--backend", "onnx"]) == 0
    onnx = weights.with_suffix(".onnx")
    first = sha256(onnx)
    # Training moves on: other weights (the released model's) written after the export.
    weights.write_bytes((MODELS_DIR / "neu-det" / "model.pt").read_bytes())
    earlier = weights.stat().st_mtime - 10
    os.utime(onnx, (earlier, earlier))
    assert main([*argv, "--out", str(tmp_path / "b"), "--backend", "onnx"]) == 0
    assert sha256(onnx) != first and onnx.stat().st_mtime >= weights.stat().st_mtime
    # An int8 export from before the weights: refused, naming the fix.
    int8 = weights.with_suffix(".int8.onnx")
    int8.write_bytes(onnx.read_bytes())
    os.utime(int8, (earlier, earlier))
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "c"), "--backend", "onnx-int8"]) == 2
    assert "older than best.pt, so made from other weights" in capsys.readouterr().err


@pytest.mark.parametrize("backend", [[], ["--backend", "torch"], ["--backend", "onnx"]])
def test_a_checkpoint_not_named_pt_is_refused(
    trained: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend: list[str],
) -> None:
    # A .pth gave a traceback: ultralytics took it for a model's name.
    image = next((tiny_data / "images" / "val").iterdir())
    weights = tmp_path / "best.pth"
    weights.write_bytes((trained / "best.pt").read_bytes())
    assert main(["predict", str(image), "--weights", str(weights), *backend]) == 2
    assert capsys.readouterr().err == (
        f"defects predict: error: {weights}: ultralytics reads a checkpoint only from a .pt "
        "file; copy or rename it to best.pt\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pth"]


def test_the_export_written_beside_the_weights_is_told(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from detection.predict import cuda_available

    if cuda_available():
        pytest.skip("a GPU here runs the torch backend unasked")
    image = next((tiny_data / "images" / "val").iterdir())
    weights = tmp_path / "best.pt"
    weights.write_bytes((trained / "best.pt").read_bytes())
    argv = ["predict", str(image), "--weights", str(weights), "--no-images", "--out"]
    assert main([*argv, str(tmp_path / "a")]) == 0
    said = f"Exported {weights.with_suffix('.onnx')} for ONNX Runtime (again only when the"
    assert said in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "b")]) == 0  # made once
    assert "Exported" not in capsys.readouterr().err


# A name is one folder: `release --name ..` replaced models/.. (the repository) whole at
# the end of a 40-minute release.
@pytest.mark.parametrize("name", ["..", ".", "a/b", "/tmp/x", "", "-flag", "two words"])
@pytest.mark.parametrize("command", ["train", "release", "train-cls"])
def test_a_name_that_is_a_path_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, name: str
) -> None:
    arguments = {
        "train": ["train", "--data", str(tmp_path)],
        "release": ["release", "--run", str(tmp_path), "--data", str(tmp_path)],
        "train-cls": ["train-cls", "--data", str(tmp_path)],
    }[command]
    assert main([*arguments, f"--name={name}"]) == 2
    assert f"{name!r}: not a " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["neu-det", "n416", "cpu-s224", "v1.2_final"])
def test_a_plain_name_passes(name: str) -> None:
    assert check_name(name, "run") == name


# (weights, --device, a GPU found by auto, the export beside the .pt, its folder
# writable, the backend that runs).
@pytest.mark.parametrize(
    ("weights", "device", "gpu", "export", "writable", "expected"),
    [
        ("best.pt", "auto", False, None, True, "onnx"),  # a CPU: exported beside, once
        ("best.pt", "cpu", True, None, True, "onnx"),  # the CPU asked for beside a GPU
        ("best.pt", "auto", True, None, True, "torch"),  # a GPU found
        ("best.pt", "0", False, "fresh", True, "torch"),  # a GPU named
        ("best.pt", "mps", False, None, True, "torch"),
        ("best.pt", "auto", False, None, False, "torch"),  # no export, none can be written
        ("best.pt", "auto", False, "fresh", False, "onnx"),  # a read-only folder's export
        ("best.pt", "auto", False, "stale", False, "torch"),  # older than the weights
        ("best.onnx", "0", True, None, True, "onnx"),  # torch cannot run an export
    ],
)
def test_the_backend_left_out_is_the_fastest_here(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    weights: str,
    device: str,
    gpu: bool,
    export: str | None,
    writable: bool,
    expected: str,
) -> None:
    import os

    import detection.predict

    path = tmp_path / weights
    path.write_bytes(b"weights")
    if export:
        path.with_suffix(".onnx").write_bytes(b"export")
        if export == "stale":
            os.utime(path.with_suffix(".onnx"), (1, 1))
    monkeypatch.setattr(detection.predict, "cuda_available", lambda: gpu)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: writable and real_access(p, mode)
    )  # a read-only mount, which root cannot write either
    assert detection.predict.default_backend(path, device) == expected


def test_no_gpu_is_looked_for_by_importing_torch(tmp_path: Path) -> None:
    # Torch's import (3 s) would outlast a prediction on a few images by ONNX Runtime.
    if any(Path("/proc/driver/nvidia/gpus").glob("*")) or Path("/dev/dxg").exists():
        pytest.skip("an NVIDIA driver here: torch is asked")
    code = (
        "import sys\nfrom detection.predict import cuda_available\n"
        "print(cuda_available(), 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    expected = "False False" if sys.platform == "linux" else "False True"
    assert result.stdout.split() == expected.split(), result.stderr[-2000:]
