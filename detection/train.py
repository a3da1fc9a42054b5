"""``defects train``: an ultralytics YOLO detector from its ``.yaml`` definition.

No pretrained weights exist on these machines, so models start from scratch. Per-dataset
defaults (model, image size, epochs, batch, extra ultralytics arguments) come from the
dataset definition in ``datasets/`` that the converter recorded in ``manifest.json``.

Output: ``weights/NAME/best.pt``, ``last.pt``, ``args.yaml`` (every training argument)
and ``results.csv`` (the per-epoch metrics), all in one folder.

Several GPUs: ``--device 0,1,2,3`` makes ultralytics launch its own DDP workers through
``torch.distributed``; this module's trainer class is importable, which is all it needs.
"""

from __future__ import annotations

import json
from pathlib import Path

from converters.definitions import load_definition
from converters.errors import ConversionError
from detection import offline  # noqa: F401  (before ultralytics)

# Keys of a recipe that are ours, not ultralytics training arguments.
_RECIPE_ONLY = {"split"}


def resolve_data(data: Path) -> Path:
    """Accepts a converter OUT folder or its ``data.yaml``.

    Raises:
        ConversionError: Neither exists.
    """
    data = Path(data)
    if data.is_dir() and not (data / "data.yaml").exists():
        from detection.classify import is_image_level_tree

        if is_image_level_tree(data):
            raise ConversionError(
                f"{data} has image-level labels (a folder per class) but no boxes, so there is "
                f"nothing to train a detector on. Train a classifier instead:\n"
                f"  defects train-cls --data {data} [--backbone weights/NAME/best.pt | none]"
            )
    if data.is_dir():
        data = data / "data.yaml"
    if not data.is_file():
        raise ConversionError(
            f"{data}: no data.yaml here; run `defects convert SRC --out DIR` first"
        )
    return data.resolve()


def recipe_for(data_yaml: Path) -> dict:
    """The training recipe of the dataset a converter output came from (empty if unknown)."""
    manifest = data_yaml.parent / "manifest.json"
    if not manifest.is_file():
        return {}
    name = json.loads(manifest.read_text()).get("dataset")
    try:
        return load_definition(name).recipe if name else {}
    except ConversionError:
        return {}


_TRAINER_NAMES = {"detect": "DefectTrainer", "classify": "ClassifierTrainer"}


def trainer_class(task: str = "detect"):
    """Ultralytics' trainer for ``task`` that keeps ``best.pt``/``last.pt`` beside
    ``args.yaml`` and ``results.csv`` in ``weights/NAME/``."""
    if task == "classify":
        from ultralytics.models.yolo.classify import ClassificationTrainer as Base
    else:
        from ultralytics.models.yolo.detect import DetectionTrainer as Base

    class Trainer(Base):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            if self.wdir.is_dir() and not any(self.wdir.iterdir()):
                self.wdir.rmdir()
            self.wdir = self.save_dir
            self.last, self.best = self.save_dir / "last.pt", self.save_dir / "best.pt"

    Trainer.__name__ = Trainer.__qualname__ = _TRAINER_NAMES[task]
    Trainer.__module__ = __name__
    return Trainer


def __getattr__(name: str):
    # Ultralytics' DDP launcher re-imports the trainer as `detection.train.DefectTrainer`;
    # building the class lazily keeps ultralytics out of this module's import.
    for task, trainer_name in _TRAINER_NAMES.items():
        if name == trainer_name:
            return trainer_class(task)
    raise AttributeError(name)


def _check_model(model: str) -> None:
    path = Path(model)
    if path.suffix == ".pt" and not path.is_file():
        raise ConversionError(
            f"{model}: no such weights file. Pretrained weights cannot be downloaded here; "
            "train from a definition such as yolo11n.yaml or pass a local .pt"
        )


def train(
    data: Path,
    name: str,
    model: str | None = None,
    imgsz: int | None = None,
    epochs: int | None = None,
    batch: int | None = None,
    device: str = "auto",
    resume: bool = False,
    weights_dir: Path = Path("weights"),
    seed: int = 0,
    workers: int | None = None,
    hours: float | None = None,
    extra: dict | None = None,
) -> Path:
    """Trains (or resumes) a detector and returns its weights folder.

    Args:
        data: Converter output folder or its ``data.yaml``.
        name: Run name; weights land in ``weights_dir/name``.
        model: Model definition (``yolo11n.yaml``, from scratch) or a local ``.pt`` whose
            weights training starts from; recipe default.
        imgsz: Training image size; recipe default.
        epochs: Epochs; recipe default.
        batch: Batch size; recipe default.
        device: ``auto`` (GPU when there is one), ``cpu``, ``0`` or ``0,1,2,3`` (DDP).
        resume: Continue ``weights_dir/name/last.pt`` after an interruption.
        weights_dir: Parent folder of the run folders.
        seed: Training seed.
        workers: Data loader workers.
        hours: Wall-clock budget; ultralytics then fits the epochs (and schedule) into it.
        extra: More ultralytics training arguments (they win over the recipe).

    Raises:
        ConversionError: Missing data, weights or checkpoint.
    """
    from ultralytics import YOLO

    from detection.augment import steel_augmentations

    run_dir = (Path(weights_dir) / name).resolve()
    trainer = trainer_class("detect")
    if resume:
        last = run_dir / "last.pt"
        if not last.is_file():
            raise ConversionError(f"{last}: nothing to resume (no last.pt from an earlier run)")
        YOLO(str(last)).train(resume=True, trainer=trainer)
        return run_dir

    data_yaml = resolve_data(data)
    recipe = {k: v for k, v in recipe_for(data_yaml).items() if k not in _RECIPE_ONLY}
    chosen = {"model": model, "imgsz": imgsz, "epochs": epochs, "batch": batch}
    settings = {"model": "yolo11n.yaml", "imgsz": 640, "epochs": 100, "batch": 16}
    settings.update(recipe)
    settings.update({k: v for k, v in chosen.items() if v is not None})
    _check_model(settings["model"])
    arguments = {
        # Grayscale steel: no hue or saturation to jitter; defects have no up or down.
        "hsv_h": 0.0,
        "hsv_s": 0.0,
        "flipud": 0.5,
        **{k: v for k, v in settings.items() if k != "model"},
        **(extra or {}),
        "data": str(data_yaml),
        "device": None if device == "auto" else device,
        "project": str(run_dir.parent),
        "name": name,
        "exist_ok": True,
        "seed": seed,
        # A local .pt is where training starts (fine-tuning our own weights); ultralytics
        # builds the bare architecture from it when `pretrained` is False.
        "pretrained": Path(settings["model"]).suffix == ".pt",
        "augmentations": steel_augmentations(),
        "trainer": trainer,
    }
    if workers is not None:
        arguments["workers"] = workers
    if hours is not None:
        arguments["time"] = hours
    YOLO(settings["model"]).train(**arguments)
    return run_dir
