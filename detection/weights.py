"""Weights: released names, one checked loader, atomic checkpoint writes, fingerprints.

Every command that takes weights (``predict``, ``evaluate``, ``export``, ``review``,
``train --model``/``--resume``, ``train-cls --backbone``, ``classify``) loads them through
:func:`load_yolo` or :func:`check_onnx`, so a damaged file gets one line naming it and
what is wrong with it, never a traceback from deep inside torch.

A released model is a folder ``models/NAME/`` with ``model.pt`` (and ``model.onnx``);
``--weights NAME`` finds it from any working directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from converters.errors import ConversionError
from converters.files import naming
from detection.offline import PROJECT_ROOT
from detection.threads import use_cpu_threads

if TYPE_CHECKING:
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

MODELS_DIR = PROJECT_ROOT / "models"
# The runtimes that run a detector, each on its own file beside the weights:
# torch the .pt, onnx the .onnx export, onnx-int8 the .int8.onnx export.
BACKENDS = ("torch", "onnx", "onnx-int8")
# The NMS IoU every backend runs at unless told otherwise: ultralytics' default. Here,
# beside BACKENDS, so the CLI can show it without importing the prediction code. On NEU-DET
# a lower one (0.5-0.6) merges more overlapping boxes of one defect, raising mAP50 and
# lowering mAP50:95 (docs/benchmarks.md, "NMS IoU").
NMS_IOU = 0.7
# Sliced inference (`--tile`): the share of a tile that neighbouring tiles overlap; here
# for the same reason.
TILE_OVERLAP = 0.25
# With overlap, a cut box is joined to a kept one only if it scores at least this share of
# the kept box's score: tiles detected at the evaluation's confidence (0.001) find faint
# boxes along their edges, which stretched confident ones. Chosen on train strips (offset,
# overlap 0.25, mAP50: 0 0.587, 0.1 0.606, 0.25 0.621, 0.3 0.621, 0.35 0.626, 0.4 0.616,
# 0.5 0.611: 0.3, the middle of the plateau; docs/benchmarks.md, "Sliced inference").
# Without overlap the halves of a defect astride an edge are its only views, often both
# faint: there it cost 0.026 (offset, 0.25), so it is applied with overlap only.
# Here because reports and review datasets record it with the tile setting.
TILE_JOIN_RATIO = 0.3
# The lowest confidence of the predictions `review` stores: low enough for recall, few
# enough for the App; here for the same reason.
REVIEW_CONF = 0.05


def tile_setting(tile: int | None, overlap: float = TILE_OVERLAP) -> dict | None:
    """How sliced inference was set, as reports and review datasets record it (None:
    images detected whole), with the merge's :data:`TILE_JOIN_RATIO` where it applies
    (with overlap): a review dataset predicted before it had none, and says so."""
    if not tile:
        return None
    return {
        "size": tile,
        "overlap": overlap,
        **({"join_ratio": TILE_JOIN_RATIO} if overlap else {}),
    }


RELEASED_WEIGHTS = "model.pt"
# Every released version stays in git history, so a release folder is kept to about 20 MB
# (yolo11n at 320 px: 20.2 MB with both exports; yolo11s would take about 67 MB).
MAX_RELEASE_MB = 22.0
TASK_NAMES = {
    "detect": "a detector",
    "classify": "a classifier",
    "segment": "a segmentation model",
    "pose": "a pose model",
    "obb": "an oriented-box detector",
}
# A torch.save file is a zip archive (PyTorch >= 1.6) or, in the legacy format, a pickle.
_ZIP_MAGIC, _PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


class WeightsError(ConversionError):
    """Weights that cannot be used; the message names the file and the problem."""


# A run's or a release's name is one folder (weights/NAME, models/NAME); as a path ("..",
# "a/b", "") it would land elsewhere, and a release replaces its folder whole.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(name: str, what: str) -> str:
    """``name`` if it can name one folder of runs or releases.

    Raises:
        ConversionError: A path or an empty name, saying what a name may hold.
    """
    if not _FOLDER_NAME.fullmatch(name):
        raise ConversionError(
            f"{name!r}: not a {what} name (letters, digits, '.', '_' and '-', first a letter "
            "or digit): it names one folder"
        )
    return name


def released_models() -> dict[str, Path]:
    """``{name: models/name/model.pt}`` of every released model in this checkout."""
    if not MODELS_DIR.is_dir():
        return {}
    return {
        folder.name: folder / RELEASED_WEIGHTS
        for folder in sorted(MODELS_DIR.iterdir())
        if (folder / RELEASED_WEIGHTS).is_file()
    }


def is_released(path: Path) -> bool:
    """Whether ``path`` lies in a released model's folder (``models/NAME/``), whose files
    are shipped together and checked against its card, not re-made."""
    return Path(path).resolve().parent.parent == MODELS_DIR.resolve()


def resolve_weights(weights: str | Path) -> Path:
    """A weights path as given, or the released model of that name (``neu-det``).

    A file that exists wins over a released name, so a local file called ``neu-det``
    is never shadowed; a folder does not (weights are never a folder, and a dataset
    folder called ``neu-det`` beside the user is common). A bare name that is neither is
    left to the loader's "no such file" error, which lists the released names.
    """
    path = Path(weights)
    if path.is_file() or path.suffix or len(path.parts) != 1:
        return path
    return released_models().get(str(weights), path)


def weights_name(weights: str | Path) -> str:
    """A weights file's name in ``evaluate``'s and ``compare``'s reports: a released
    name as it is; a run's ``best.pt``, ``last.pt`` or ``model.pt`` and their exports
    (``model.int8.onnx``) by its run's folder (ultralytics' ``NAME/weights/best.pt``
    too); any other file by its stem."""
    weights = Path(weights)
    if str(weights) in released_models():
        return str(weights)
    base = weights.name.split(".")[0]  # an export's too: model.int8.onnx, best.onnx
    if base not in ("best", "last", "model"):
        return weights.stem
    run = weights.resolve().parent
    return run.parent.name if run.name == "weights" and base != "model" else run.name


def sha256(path: Path) -> str:
    """The file's SHA-256, the fingerprint reports and model cards record."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_imgsz(model: YOLO) -> int:
    """The image size a checkpoint was trained at (640 if it does not say)."""
    args = (getattr(model, "ckpt", None) or {}).get("train_args", {}) or {}
    imgsz = args.get("imgsz", 640)
    return int(imgsz[0] if isinstance(imgsz, list | tuple) else imgsz)


def model_channels(model: YOLO) -> int:
    """The colour channels a checkpoint takes: 3 (BGR images as OpenCV reads them), or 1
    for a model trained with ``channels: 1`` in its data.yaml (grayscale steel)."""
    return int(model.model.yaml.get("channels", 3))


def spread_grey_stem(network: DetectionModel) -> None:
    """Makes a one-channel detector (``network``, its ``DetectionModel``) take BGR images:
    its first convolution's weights split equally over the three channels, so that on a
    grey image (B = G = R, as steel is) it computes what it computed on the grey levels.
    For a model that takes three channels (a classifier, a detector trained on colour
    data) starting from a one-channel one; ultralytics' own transfer fills one channel
    with them and leaves the other two random."""
    import torch

    stem = network.model[0].conv
    spread = torch.nn.Conv2d(
        3,
        stem.out_channels,
        stem.kernel_size,
        stem.stride,
        stem.padding,
        stem.dilation,
        stem.groups,
        bias=stem.bias is not None,
    ).to(stem.weight.device, stem.weight.dtype)
    with torch.no_grad():
        spread.weight.copy_((stem.weight / 3).expand(-1, 3, -1, -1))
        if stem.bias is not None:
            spread.bias.copy_(stem.bias)
    network.model[0].conv = spread
    network.yaml["channels"] = 3


def _missing(path: Path) -> WeightsError:
    released = ", ".join(released_models()) or "none in this checkout"
    return WeightsError(
        f"{path}: no such weights file (released models, usable by name: {released})"
    )


def _check_a_file(path: Path, what: str) -> None:
    """Refuses ``path`` where it is no file to read weights from: missing, a folder, or a
    device or a pipe (torch and ONNX Runtime read a file; /dev/zero was said empty).

    Raises:
        WeightsError: Naming ``path`` and ``what`` it should be (``a weights file``).
    """
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        raise WeightsError(f"{path}: a folder, not {what}")
    if not path.is_file():
        raise WeightsError(f"{path}: a device or a pipe, not {what}")


def check_file(path: Path) -> None:
    """Cheap structural checks of a checkpoint file, before torch reads it.

    Raises:
        WeightsError: Missing, a folder, a device, empty, truncated, damaged or not a
            checkpoint.
    """
    _check_a_file(path, "a weights file")
    size = path.stat().st_size
    if size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes), not a checkpoint")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(_PICKLE_MAGIC):
        return
    if head != _ZIP_MAGIC:
        raise WeightsError(f"{path}: not a PyTorch checkpoint (it starts with {head!r})")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        raise WeightsError(
            f"{path}: truncated ({size} bytes, its end is missing): copied or saved incompletely"
        ) from None
    if damaged is not None:
        raise WeightsError(f"{path}: damaged ({damaged} inside it fails its CRC)")


def load_yolo(weights: str | Path, task: str = "detect", classes: list[str] | None = None) -> YOLO:
    """Loads an ultralytics checkpoint after checking it is whole and the right kind.

    Args:
        weights: A ``.pt`` path or a released model's name.
        task: The task the caller needs (``detect`` or ``classify``).
        classes: The data's class names; every class of the model must be among them.

    Returns:
        The ``ultralytics.YOLO`` model.

    Raises:
        WeightsError: Anything that makes the file unusable here, named in one line.
    """
    path = check_checkpoint(weights)
    from ultralytics import YOLO

    use_cpu_threads()
    try:
        model = YOLO(str(path))
    except Exception as error:  # torch and ultralytics raise many kinds for a bad file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise WeightsError(
            f"{path}: not a loadable ultralytics checkpoint ({type(error).__name__}"
            + (f": {reason[:200]}" if reason else "")
            + ")"
        ) from None
    student = getattr(model.model, "student_model", None)
    if student is not None:
        # A distillation run's checkpoint from before the run ended (a killed run's,
        # save_period's): ultralytics keeps its training wrapper (the student, projectors,
        # no teacher) until the end strips it. Its predict runs the student, but its ONNX
        # export unwraps the student and fails on what only the wrapper carries. Take the
        # student, with what ultralytics' loader set on the wrapper (task, arguments, and
        # the file: the student's own pt_path names the weights it started from, where its
        # export would otherwise be written, over a released model's model.onnx).
        student.task, student.args = model.model.task, model.model.args
        student.pt_path = model.model.pt_path
        model.model = student
    if model.task != task:
        found = TASK_NAMES.get(model.task, f"a {model.task} model")
        raise WeightsError(f"{path}: {found} where {TASK_NAMES[task]} is expected")
    if classes is not None:
        names = list(dict(model.names).values())
        unknown = [name for name in names if name not in classes]
        if unknown:
            raise WeightsError(
                f"{path}: its classes {names} do not match the data's classes {list(classes)} "
                f"({', '.join(unknown)} not in the data)"
            )
    return model


def student_checkpoint(model: YOLO, folder: Path, changed: bool = False) -> Path:
    """A checkpoint ultralytics' trainers can start from (``pretrained=``), for ``model``
    as :func:`load_yolo` returned it: its own file, or, where load_yolo took the student
    out of a distillation run's checkpoint from before the run ended (or the module was
    ``changed`` since: :func:`spread_grey_stem`), the module alone, written into
    ``folder``. Given that checkpoint, ultralytics' own loader would rebuild a
    distillation around the wrapper, or find none of the student's tensors under the
    wrapper's names."""
    import torch

    path = Path(model.ckpt_path)
    if not changed and model.model is (model.ckpt.get("ema") or model.ckpt.get("model")):
        return path  # the module the file holds: nothing was taken out
    target = Path(folder) / path.name
    torch.save({"model": model.model, "train_args": model.ckpt.get("train_args", {})}, target)
    return target


def check_onnx(path: Path) -> None:
    """Structural checks of an ONNX file before ONNX Runtime reads it.

    Raises:
        WeightsError: Missing, a folder, a device or empty (ONNX Runtime's own errors
            name no file).
    """
    _check_a_file(path, "an ONNX model")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes), not an ONNX model")


def check_checkpoint(weights: str | Path) -> Path:
    """The PyTorch checkpoint ``weights`` names (a ``.pt`` or a released model's name),
    checked as :func:`load_yolo` checks it before torch reads it (and imported).

    Raises:
        WeightsError: An ONNX model, a file missing, a folder, empty or damaged, or a
            checkpoint whose name is not a ``.pt``.
    """
    path = resolve_weights(weights)
    if path.suffix == ".onnx":
        raise WeightsError(f"{path}: an ONNX model; this needs the PyTorch .pt")
    check_file(path)
    if path.suffix != ".pt":
        # Ultralytics takes any other name for a model to build or fetch: a .pth came
        # back as a model whose module was its name (a traceback at the export), or
        # tripped an assertion at its predict.
        raise WeightsError(
            f"{path}: ultralytics reads a checkpoint only from a .pt file; copy or rename "
            f"it to {path.with_suffix('.pt').name}"
        )
    return path


def check_weights(weights: str | Path) -> Path:
    """The file ``weights`` names (a path or a released model's name), checked before any
    model is loaded: :func:`check_onnx` for an ``.onnx``, :func:`check_checkpoint`
    otherwise.

    Raises:
        WeightsError: Missing, a folder, empty or (a checkpoint) damaged, named in one line.
    """
    path = resolve_weights(weights)
    if path.suffix != ".onnx":
        return check_checkpoint(path)
    check_onnx(path)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``path`` whole or not at all.

    The bytes go to a hidden file beside ``path``, reach the disk (fsync), and then
    replace ``path`` in one rename: a process killed at any moment leaves either the
    previous file or the new one, never half of one.

    Raises:
        OSError: Not written (``path`` is as it was). A write that failed midway (a full
            disk, a quota), where Python names no file, names ``path``.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as error:
        raise naming(error, path) from None
    finally:
        partial.unlink(missing_ok=True)


def remove_partial_writes(folder: Path) -> None:
    """Deletes what :func:`atomic_write_bytes` left behind when killed mid-write."""
    if Path(folder).is_dir():
        for leftover in Path(folder).glob(".*.partial"):
            leftover.unlink(missing_ok=True)
