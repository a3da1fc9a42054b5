"""``defects train``: an ultralytics YOLO detector from its ``.yaml`` definition.

No pretrained weights exist on these machines, so models start from scratch. Per-dataset
defaults (model, image size, epochs, batch, extra ultralytics arguments) come from the
dataset definition in ``datasets/`` that the converter recorded in ``manifest.json``.

Output: ``weights/NAME/best.pt``, ``last.pt``, ``args.yaml`` (every training argument),
``results.csv`` (the per-epoch metrics), ``train.log`` (ultralytics' log, the device
it trained on first) and ``trained_on.json`` (its training images, by digest:
:mod:`detection.splits`), all in one folder.

Several GPUs: ``--device 0,1,2,3`` makes ultralytics launch its own DDP workers through
``torch.distributed``; this module's trainer class is importable, which is all it needs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from converters.convert import (
    MARKER,
    check_linked_images,
    classes_without_boxes_said,
    edited_labels,
    edited_since_conversion,
    read_manifest,
)
from converters.definitions import load_definition
from converters.errors import ConversionError
from converters.files import read_yaml_mapping
from converters.imagesize import untrainable_images
from converters.layouts import is_image_level_tree, refuse_unconverted
from converters.yolo import corrupt_labels, data_yaml_channels, data_yaml_names
from detection import offline  # noqa: F401  (before ultralytics)
from detection.console import counted, device_option
from detection.splits import record_training_images
from detection.threads import use_cpu_threads
from detection.weights import (
    WeightsError,
    atomic_write_bytes,
    check_checkpoint,
    check_name,
    load_yolo,
    model_channels,
    remove_partial_writes,
    resolve_weights,
    spread_grey_stem,
)

if TYPE_CHECKING:
    import torch
    from ultralytics import YOLO
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.nn.tasks import DetectionModel

# Keys of a recipe that are ours, not ultralytics training arguments: the split ratios,
# and `gpu`, what changes when training on a GPU (its own image size, batch, epochs).
_RECIPE_ONLY = {"split", "gpu"}


def resolve_data(data: Path) -> Path:
    """Accepts a converter OUT folder or its ``data.yaml``.

    Raises:
        ConversionError: Neither exists.
    """
    data = Path(data)
    if data.is_dir() and not (data / "data.yaml").exists() and is_image_level_tree(data):
        raise ConversionError(
            f"{data} has image-level labels (a folder per class) but no boxes, so there is "
            f"nothing to train a detector on. Train a classifier instead:\n"
            f"  defects train-cls --data {data} [--backbone weights/NAME/best.pt | none]"
        )
    if data.is_dir() and not (data / "data.yaml").exists():
        refuse_unconverted(data)  # the dataset as annotators ship it, before any conversion
    if data.is_dir():
        data = data / "data.yaml"
    if not data.is_file():
        raise ConversionError(
            f"{data}: no data.yaml here; run `defects convert SRC --out DIR` first"
        )
    if data.suffix.lower() not in (".yaml", ".yml"):
        raise ConversionError(
            f"{data}: not a dataset; give a converted folder, a YOLO dataset's folder or its "
            "data.yaml"
        )
    # Read here: ultralytics' own read of a file that is no YAML mapping is a traceback.
    listed = read_yaml_mapping(data, "YOLO dataset's data.yaml")
    data = data.resolve()
    if (data.parent / MARKER).is_file():
        read_manifest(data.parent)  # what every reader of a converter output takes from it
    _check_own_images(data, listed.get("path"))
    check_linked_images(data.parent)
    return data


def _check_own_images(data_yaml: Path, given: object) -> None:
    """Refuses a converter output whose ``data.yaml`` sends ultralytics to another
    folder's images (``given``, its ``path``): converters before 2026-12-04 wrote an
    absolute ``path``, so a moved or copied output trained on the original's images and
    labels (and ultralytics' val scored them) while our evaluation read the copy's ground
    truth."""
    if not (data_yaml.parent / MARKER).is_file():
        return  # not ours: a YOLO dataset's path is its own business (Roboflow's ../)
    if (
        isinstance(given, str)
        and Path(given).is_absolute()
        and Path(given).resolve() != data_yaml.parent
    ):
        raise ConversionError(
            f"{data_yaml}: its 'path: {given}' sends training to that folder's images and "
            f"labels, not to the ones beside it (the output was moved or copied); delete "
            "the path line (it is then this folder), or convert again"
        )


def _check_training_splits(data_yaml: Path) -> None:
    """Refuses a converter output with no train or no val images (``convert --split
    1,0``) before training starts: ultralytics validates on val every epoch and keeps
    ``best.pt`` by it, and otherwise stops at its data loader with "Error loading data"."""
    if not (data_yaml.parent / MARKER).is_file():
        return  # not ours: ultralytics' own check names what is missing
    counts = read_manifest(data_yaml.parent)["counts"]
    for split in ("train", "val"):
        if not counts.get(split, {}).get("images"):
            raise ConversionError(
                f"{data_yaml.parent}: no {split} images (its splits: "
                f"{', '.join(counts) or 'none'}); training needs both, as ultralytics "
                "validates on val every epoch and keeps best.pt by it: convert again with "
                "a ratio above 0 for each, e.g. --split 0.8,0.2 (and --resplit where the "
                "source gives a split of its own)"
            )


def _check_training_files(data_yaml: Path) -> dict[str, dict]:
    """Refuses a dataset with a train or val image, or label file, that ultralytics would
    pass over as corrupt (a label file edited by hand, a class id past the dataset's
    classes, an image written over): :func:`refuse_untrainable`.

    Returns:
        Each split's images and boxes per class, as its labels give them (the shape of
        :func:`converters.convert.split_counts`).
    """
    from detection.splits import split_images

    corrupt, counts = [], {}
    for split in ("train", "val"):
        images, data = split_images(data_yaml, split)
        corrupt += untrainable_images(images)
        classes = [data["names"][i] for i in sorted(data["names"])]
        boxes: Counter = Counter()
        corrupt += [str(error) for error in corrupt_labels(images, classes, boxes)]
        counts[split] = {"images": len(images), "boxes_per_class": {c: boxes[c] for c in classes}}
    refuse_untrainable(corrupt)
    return counts


def refuse_untrainable(corrupt: list[str]) -> None:
    """Refuses the files (``path: what is wrong``) that ultralytics' datasets would pass
    over as corrupt, before training: it trains and validates without their images and
    says so only in a line of its log among hundreds (and a classifier's own val then
    failed on them).

    Raises:
        ConversionError: Any; the first three named, with how many more.
    """
    if corrupt:
        more = f"; and {len(corrupt) - 3} more" if len(corrupt) > 3 else ""
        raise ConversionError(
            f"{counted(len(corrupt), 'file')} that ultralytics would pass over as corrupt, "
            f"training without their images: {'; '.join(corrupt[:3])}{more}; mend or "
            "replace each"
        )


def coco_edits_not_trained_on(out: Path) -> list[str]:
    """What a converter output's COCO files were edited to say that its label files,
    which ultralytics trains and validates on, do not: a sentence for each train or val
    split whose COCO file alone was edited since the conversion and disagrees with them.
    Evaluate and review score such a split against the COCO file
    (:func:`detection.evaluate.split_ground_truth`); training would not learn its edits."""
    said = []
    for split in ("train", "val"):
        coco = out / "annotations" / f"instances_{split}.json"
        if edited_since_conversion(out, split) != {"annotations"}:
            continue
        try:
            differ = edited_labels(out, split, json.loads(coco.read_text()))
        except (OSError, ValueError, TypeError, KeyError, AttributeError, ConversionError):
            continue  # evaluate names what is wrong with the file (a list, say)
        if differ:
            said.append(
                f"{coco} was edited since the conversion, and the labels of {split} "
                f"still hold the boxes it had in {counted(len(differ), 'file')} (e.g. "
                f"{differ[0].relative_to(out)}): ultralytics trains and validates on the "
                "labels, so this run does not learn its edits (evaluate and review score "
                "against them); to train on them, write them out as a new dataset "
                f"(defects review --data {out} --name NAME --no-launch, then defects "
                "review export --name NAME --out NEW --to yolo) or edit the labels alike"
            )
    return said


def recipe_for(data_yaml: Path) -> dict:
    """The training recipe of the dataset a converter output came from (empty if unknown)."""
    if not (data_yaml.parent / MARKER).is_file():
        return {}
    name = read_manifest(data_yaml.parent).get("dataset")
    try:
        return load_definition(name).recipe if name else {}
    except ConversionError:
        return {}


def training_recipe(data_yaml: Path | None, gpu: bool) -> dict:
    """The ultralytics arguments a dataset's recipe gives, for a CPU or a GPU run (the
    recipe's ``gpu`` entries win on a GPU); empty for an unknown dataset."""
    recipe = recipe_for(data_yaml) if data_yaml is not None else {}
    arguments = {k: v for k, v in recipe.items() if k not in _RECIPE_ONLY}
    if gpu:
        arguments.update(recipe.get("gpu") or {})
    return arguments


def on_gpu(device: str | None) -> bool:
    """Whether ``defects train --device DEVICE`` trains on a GPU (``auto``: if there is one)."""
    if device in (None, "", "auto"):
        import torch

        return torch.cuda.is_available()
    return device != "cpu"


_TRAINER_NAMES = {"detect": "DefectTrainer", "classify": "ClassifierTrainer"}

# GPUs on which ultralytics' own check turns AMP off (ultralytics/utils/checks.py).
_AMP_UNSAFE_GPU = re.compile(
    r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)",
    re.IGNORECASE,
)


def decide_amp(model: torch.nn.Module) -> bool:
    """Mixed precision on CUDA unless the GPU is one known to fail with it.

    Replaces ultralytics' ``check_amp``, which loads ``yolo26n.pt`` (a download attempt
    where the file is absent) to compare FP32 and AMP outputs of a pretrained model. The
    GPUs that comparison exists for are the ones its own list names, and that list is kept.
    """
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    return not _AMP_UNSAFE_GPU.search(torch.cuda.get_device_name(device))


def _strip_optimizer_atomically(f: str | Path, s: str = "", updates: dict | None = None) -> dict:
    """Ultralytics' ``strip_optimizer`` (the final rewrite of ``last.pt`` and ``best.pt``)
    through a partial file and a rename, so a kill during it cannot truncate either."""
    from ultralytics.utils.torch_utils import strip_optimizer

    target = Path(s or f)
    partial = target.with_name(f".{target.name}.{os.getpid()}.strip.partial")
    try:
        stripped = strip_optimizer(f, str(partial), updates)
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return stripped


def _use_our_checks() -> None:
    # Module attributes of ultralytics' trainer, looked up when a run starts; idempotent.
    import ultralytics.engine.trainer as engine

    engine.check_amp = decide_amp
    engine.strip_optimizer = _strip_optimizer_atomically


class _AtomicWrites(type(Path())):
    """A path whose ``write_bytes`` replaces the file whole (ultralytics saves
    ``last.pt`` and ``best.pt`` with ``write_bytes``, which a kill leaves half-written)."""

    def write_bytes(self, data: bytes | bytearray | memoryview) -> int:
        atomic_write_bytes(Path(self), bytes(data))
        return len(data)


@contextlib.contextmanager
def _logged_to(log: Path) -> Iterator[None]:
    """Appends ultralytics' log of a run (its device line first: "Ultralytics 8.4.190 ...
    CUDA:0 (NVIDIA H100 80GB HBM3, 81079MiB)") to ``log`` in the run folder, so a model
    card names the device every stage trained on (``release.training_hardware``)."""
    import logging

    from ultralytics.utils import LOGGER

    log.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log, encoding="utf-8")
    LOGGER.addHandler(handler)
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        handler.close()


def seconds_trained(time_column: list[float]) -> float:
    """Training seconds behind a ``results.csv`` time column. Runs resumed before this
    fix restarted the column at each resume, so every segment's last value counts."""
    seconds, previous = 0.0, 0.0
    for now in time_column:
        if now < previous:  # a resumed segment restarted the clock
            seconds += previous
        previous = now
    return seconds + previous


def _continue_the_clock(trainer: BaseTrainer) -> None:
    """A resumed ``--hours`` run spends what is left of its budget. Ultralytics restarts
    the clock on resume and refits the epochs to the whole budget from the first resumed
    epoch alone, start-up included: a run killed at epoch 32 of 67 on a GPU refitted to
    18 epochs and stopped after one more (docs/benchmarks.md, "GPU runs")."""
    if not (trainer.args.time and trainer.start_epoch > 0 and Path(trainer.csv).is_file()):
        return
    rows = list(csv.DictReader(Path(trainer.csv).read_text().splitlines()))
    before = [float(row["time"]) for row in rows if float(row["epoch"]) <= trainer.start_epoch]
    trainer.train_time_start -= seconds_trained(before)
    trainer.resumed_budget = True


def _refit_epochs_to_the_budget(trainer: BaseTrainer) -> None:
    """After each epoch of a resumed ``--hours`` run, ultralytics' refit again, counting
    every epoch since the run began (this callback runs right after ultralytics' own)."""
    if not getattr(trainer, "resumed_budget", False):
        return
    epoch, budget = trainer.epoch, trainer.args.time * 3600
    elapsed = time.time() - trainer.train_time_start
    fitted = math.ceil(budget / (elapsed / (epoch + 1)))
    trainer.epochs = trainer.args.epochs = max(fitted, epoch + 1)
    trainer._setup_scheduler()
    trainer.scheduler.last_epoch = epoch
    stopper = trainer.stopper
    patience_spent = epoch + 1 - stopper.best_epoch >= stopper.patience
    trainer.stop = elapsed > budget or epoch + 1 >= trainer.epochs or patience_spent


def _run_arguments(overrides: dict) -> bytes | None:
    """The ``args.yaml`` a resumed run began with. Ultralytics writes it again on resume
    from the checkpoint's arguments, with ``model`` and ``resume`` set to ``last.pt`` and
    the workers it changed on a CPU: a card would then give the stage's command as
    ``--model weights/NAME/last.pt --workers 0`` and lose the stages before it."""
    resume = overrides.get("resume")
    if not isinstance(resume, (str, Path)):
        return None
    run_args = Path(resume).parent / "args.yaml"
    return run_args.read_bytes() if run_args.is_file() else None


# `defects train --activation`: the definition's `activation` each name gives (ultralytics
# builds every Conv block's activation from it). ReLU folds into an int8 convolution's
# requantisation, where SiLU costs two passes over every feature map (QLinearSigmoid,
# QLinearMul): the int8 export of a ReLU model runs 1.30x as fast end to end
# (docs/benchmarks.md).
ACTIVATIONS = {"silu": "nn.SiLU()", "relu": "nn.ReLU()"}


def with_activation(definition: str | Path | dict, activation: str) -> dict:
    """A model definition (a ``.yaml`` name or path, or a model's own ``yaml`` dict)
    with every Conv block's activation set to ``activation`` (a key of
    :data:`ACTIVATIONS`)."""
    from ultralytics.nn.tasks import yaml_model_load

    loaded = definition if isinstance(definition, dict) else yaml_model_load(definition)
    return {**loaded, "activation": ACTIVATIONS[activation]}


def trainer_class(task: str = "detect", activation: str | None = None) -> type[BaseTrainer]:
    """Ultralytics' trainer for ``task`` that keeps ``best.pt``/``last.pt`` beside
    ``args.yaml`` and ``results.csv`` in ``weights/NAME/``, writes them atomically and
    decides mixed precision without a download; given ``activation``, it builds the
    model with that activation (:func:`with_activation`), the starting weights'
    tensors transferred as they are (an activation has none)."""
    if task == "classify":
        from ultralytics.models.yolo.classify import ClassificationTrainer as Base
    else:
        from ultralytics.models.yolo.detect import DetectionTrainer as Base
    from ultralytics.utils import RANK

    _use_our_checks()
    use_cpu_threads()

    class Trainer(Base):
        def __init__(self, *args: object, **kwargs: object) -> None:
            run_args = _run_arguments(kwargs.get("overrides") or {})
            super().__init__(*args, **kwargs)
            if run_args is not None:
                atomic_write_bytes(self.save_dir / "args.yaml", run_args)
            if self.wdir.is_dir() and not any(self.wdir.iterdir()):
                self.wdir.rmdir()
            self.wdir = self.save_dir
            self.last = _AtomicWrites(self.save_dir / "last.pt")
            self.best = _AtomicWrites(self.save_dir / "best.pt")
            remove_partial_writes(self.save_dir)
            self.add_callback("on_train_start", _continue_the_clock)
            self.add_callback("on_fit_epoch_end", _refit_epochs_to_the_budget)

        def get_model(
            self,
            cfg: str | dict | None = None,
            weights: torch.nn.Module | None = None,
            verbose: bool = True,
        ) -> torch.nn.Module:
            # Here, not before training: ultralytics' DDP workers load the weights anew.
            if task == "detect" and weights is not None:
                classes = [str(name) for name in self.data["names"].values()]
                came_in = align_class_order(weights, classes)
                if came_in and RANK in (-1, 0):
                    said = _aligned_sentence(self.args.model, came_in, classes)
                    print(f"defects train: {said}", file=sys.stderr)
            if activation is not None:  # None on --resume: the checkpoint's yaml has it
                cfg = with_activation(cfg, activation)
            return super().get_model(cfg, weights, verbose)

    Trainer.__name__ = Trainer.__qualname__ = _TRAINER_NAMES[task]
    Trainer.__module__ = __name__
    return Trainer


def __getattr__(name: str) -> type[BaseTrainer]:
    # Ultralytics' DDP launcher re-imports the trainer as `detection.train.DefectTrainer`;
    # building the class lazily keeps ultralytics out of this module's import.
    for task, trainer_name in _TRAINER_NAMES.items():
        if name == trainer_name:
            return trainer_class(task)
    raise AttributeError(name)


# Grayscale steel: no hue or saturation to jitter; defects have no up or down.
STEEL_ARGUMENTS = {"hsv_h": 0.0, "hsv_s": 0.0, "flipud": 0.5}
# Ultralytics arguments that are `defects train` options of their own.
_OPTIONS = {"data", "model", "imgsz", "epochs", "batch", "device", "name", "resume", "seed"}
_OPTIONS |= {"workers", "time", "distill_model"}
# Ultralytics' name for an argument whose `defects train` option is named otherwise.
_OPTION_NAMES = {"time": "hours", "distill_model": "teacher"}
# Ultralytics arguments `defects train` or ultralytics itself derive (the run folder, the
# starting point, the steel pipeline); `--set` may not override them either.
OWN_ARGUMENTS = _OPTIONS | {"project", "exist_ok", "pretrained", "augmentations", "trainer"}
OWN_ARGUMENTS |= {"save_dir", "mode", "task"}
# Ultralytics arguments its default optimizer=auto overrides: `--set` them only with an
# optimizer named.
_SET_BY_AUTO_OPTIMIZER = ("lr0", "momentum", "warmup_bias_lr")


def parse_overrides(pairs: list[str]) -> dict:
    """Ultralytics training arguments given as ``KEY=VALUE`` (``lr0=0.0002``,
    ``optimizer=AdamW``, ``cos_lr=true``), values read as YAML scalars.

    Raises:
        ConversionError: Not ``KEY=VALUE``, a key ultralytics' trainer does not know, one
            that has its own ``defects train`` option, a value of the wrong type or range
            (checked here by ultralytics' own rules, not after the dataset is loaded), or
            ``lr0``, ``momentum`` or ``warmup_bias_lr`` without an optimizer, which
            ultralytics' ``optimizer=auto`` would ignore.
    """
    if not pairs:  # ultralytics (and torch, 3 s) only to check some
        return {}
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConversionError(f"--set {pair!r}: expected KEY=VALUE, e.g. lr0=0.0002")
        if key in OWN_ARGUMENTS:
            option = _OPTION_NAMES.get(key, key)
            instead = f"use its own option (--{option})" if key in _OPTIONS else "not settable"
            raise ConversionError(f"--set {key}: `defects train` sets it; {instead}")
        if key not in DEFAULT_CFG_DICT:
            raise ConversionError(f"--set {key}: not an ultralytics training argument")
        checked = {key: yaml.safe_load(value) if value.strip() else None}
        try:
            check_cfg(checked)
        except (TypeError, ValueError) as error:
            raise ConversionError(f"--set {pair}: {error}") from None
        overrides.update(checked)
    ignored = [key for key in _SET_BY_AUTO_OPTIMIZER if key in overrides]
    if ignored and str(overrides.get("optimizer", "auto")).lower() == "auto":
        # Ultralytics' optimizer=auto picks the optimizer, lr0 and momentum itself and
        # sets warmup_bias_lr to 0, saying so only in its log (BaseTrainer.build_optimizer):
        # a fine-tuning stage's low lr0 would train at 0.001 (what lost r224 its accuracy).
        raise ConversionError(
            f"--set {ignored[0]}: ultralytics ignores it under optimizer=auto (the default), "
            "which picks its own optimizer, lr0 and momentum; name the optimizer too, "
            "e.g. --set optimizer=AdamW"
        )
    return overrides


def _starting_model(model: str) -> tuple[str, YOLO]:
    """Where training starts, as the run records it and loaded: a ``.yaml`` definition as
    given, or weights (a ``.pt`` or a released name) checked by :func:`load_yolo`, which
    also takes the student out of a distillation run's checkpoint saved before that run
    ended (ultralytics would transfer none of the wrapper's tensors: "Transferred 0/499",
    and train from scratch)."""
    path = _starting_weights(model)
    if path is None:
        from ultralytics import YOLO

        return model, YOLO(model)
    return str(path), load_yolo(path, "detect")


def _check_definition(model: str) -> None:
    """Refuses a ``--model`` YAML that is not a detector's definition: a dataset's YAML,
    or another task's model (ultralytics stopped with a KeyError or, for a classifier's,
    a RuntimeError about the data, after loading the dataset). A name that is neither a
    file here nor one of ultralytics' definitions is left to its "does not exist".

    Raises:
        ConversionError: Not valid YAML, no ``backbone`` and ``head``, or not a detector.
    """
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load

    if Path(model).is_file():
        definition = read_yaml_mapping(Path(model), "model definition")
    else:
        try:
            definition = yaml_model_load(model)
        except FileNotFoundError:
            return
    if not all(isinstance(definition.get(key), list) for key in ("backbone", "head")):
        dataset = " (a dataset's YAML goes to --data)" if "names" in definition else ""
        raise ConversionError(
            f"{model}: not a model definition, which has 'backbone' and 'head' lists{dataset}"
        )
    task = guess_model_task(definition)
    if task != "detect":
        also = "; train-cls trains a classifier" if task == "classify" else ""
        raise ConversionError(
            f"{model}: a {task} model's definition; train trains a detector (a definition "
            f"such as yolo11n.yaml){also}"
        )


def _starting_weights(model: str) -> Path | None:
    """The weights file ``--model`` names, which must exist, or ``None`` for a ``.yaml``
    definition.

    Raises:
        WeightsError: No such ``.pt`` (nothing is downloaded here), or a file that is not
            a whole checkpoint (:func:`detection.weights.check_checkpoint`).
    """
    if Path(model).suffix in (".yaml", ".yml"):
        _check_definition(model)
        return None
    path = resolve_weights(model)
    if path.suffix == ".pt" and not path.exists():
        raise WeightsError(
            f"{model}: no such weights file. Pretrained weights cannot be downloaded here; "
            "train from a definition such as yolo11n.yaml, a local .pt or a released model"
        )
    return check_checkpoint(path)


def _aligned_sentence(start: str, came_in: list[str], classes: list[str]) -> str:
    """What :func:`align_class_order` did, for the run's log."""
    if set(classes) <= set(came_in):
        return (
            f"{start} knows the data's classes among its own ({', '.join(came_in)}); its "
            "class outputs are taken in the data's order, so each class starts from what it "
            "learnt of that class"
        )
    known = [name for name in classes if name in came_in]
    new = [name for name in classes if name not in came_in]
    return (
        f"{start} knows {len(known)} of the data's {len(classes)} classes "
        f"({', '.join(known)}): each starts from what it learnt of that class, and the "
        f"others ({', '.join(new)}) from nothing, as in a new model"
    )


def align_class_order(model: DetectionModel, classes: list[str] | None) -> list[str] | None:
    """Gives a detector's class outputs the data's classes, in the data's order, where
    the weights know any of them: the same classes listed otherwise (a dataset converted
    with ``--classes`` in another order than the released model's), some of them (a line
    that looks for three of NEU-DET's six), or some beside new ones (GC10-DET's ten
    classes hold NEU-DET's inclusion). Ultralytics transfers the head's tensors by shape,
    so each class would start from what the weights learnt of another, or, with another
    number of classes, from nothing. The rows of each class convolution (``cv3``, and
    ``one2one_cv3`` of an NMS-free head) are taken in the data's order; a class the
    weights do not know gets a fresh row, as ultralytics starts every class of a new
    model (the convolution's own initialisation, and the bias of ``Detect.bias_init``).
    ``names`` follows.

    Args:
        model: The weights' detection model (the ``nn.Module``), changed in place.
        classes: The data's class names in id order.

    Returns:
        The classes the weights had, where they were changed; None otherwise (the same
        classes in the same order, none of the data's classes known, or a head of
        another form).
    """
    from torch import nn

    names = [str(name) for name in dict(getattr(model, "names", None) or {}).values()]
    if not classes or names == classes or not set(classes) & set(names):
        return None
    head = model.model[-1]
    outputs = [
        (level, branch, branch[-1])
        for branches in (getattr(head, "cv3", None), getattr(head, "one2one_cv3", None))
        if branches is not None
        for level, branch in enumerate(branches)
    ]
    strides = [float(s) for s in getattr(head, "stride", [])]
    if not outputs or not all(
        isinstance(conv, nn.Conv2d) and conv.out_channels == len(names) and level < len(strides)
        for level, _, conv in outputs
    ):
        return None
    for level, branch, conv in outputs:
        taken = nn.Conv2d(conv.in_channels, len(classes), 1)
        taken = taken.to(conv.weight.device, conv.weight.dtype)
        # Ultralytics' prior for a class score: 5 objects of nc classes in a 640 image.
        fresh_bias = math.log(5 / len(classes) / (640 / strides[level]) ** 2)
        for row, name in enumerate(classes):
            known = names.index(name) if name in names else None
            if known is None:
                taken.bias.data[row] = fresh_bias
            else:
                taken.weight.data[row] = conv.weight.data[known]
                taken.bias.data[row] = conv.bias.data[known]
        branch[-1] = taken
    model.names = dict(enumerate(classes))
    return names


def _teacher_model(teacher: str, data_yaml: Path) -> Path:
    """The trained detector a student learns from, checked before training starts: the
    same classes in the same order as the data, since distillation compares the two
    models' class scores index by index; and not a detector of grey images for
    colour data.

    Raises:
        WeightsError: Missing, not a trained detector, other classes, or grey for colour
            (named).
    """
    path = _teacher_weights(teacher)
    model = load_yolo(path, "detect")
    names = list(dict(model.names).values())
    data_names = data_yaml_names(data_yaml)
    if names != data_names:
        raise WeightsError(
            f"{path}: the teacher's classes {names} are not the data's {data_names} "
            f"({data_yaml}), in the same order; distillation compares class scores by index"
        )
    # Ultralytics rebuilds a teacher for the student's channels and loads its weights
    # into it: a colour one's stem summed for grey data is exact on grey images, but a
    # grey one's fills one of three channels and leaves two random, a teacher that no
    # longer sees what it learnt (nothing said).
    if model_channels(model) == 1 < data_yaml_channels(data_yaml):
        raise WeightsError(
            f"{path}: the teacher takes grey images (channels: 1) and the data gives "
            f"colour ones ({data_yaml}); ultralytics would rebuild it for three channels "
            "with two of them random: add 'channels: 1' to the data.yaml, or teach with a "
            "detector of colour images"
        )
    return path


def _teacher_weights(teacher: str) -> Path:
    """The teacher's file, checked without loading it (:func:`_teacher_model` loads it).

    Raises:
        WeightsError: A definition, or a file missing or damaged (named).
    """
    if Path(teacher).suffix in (".yaml", ".yml"):
        raise WeightsError(
            f"{teacher}: a teacher is a trained detector (a .pt or a released name), "
            "not a definition"
        )
    return check_checkpoint(teacher)


def _check_teacher_still_there(checkpoint: Path) -> None:
    """A distillation run resumes only with its teacher, which ultralytics rebuilds from
    the path the run began with.

    Raises:
        WeightsError: That file is gone (named).
    """
    taught_by = (load_yolo(checkpoint, "detect").ckpt or {}).get("train_args", {})
    taught_by = taught_by.get("distill_model")
    if taught_by and not Path(taught_by).is_file():
        raise WeightsError(
            f"{checkpoint}: trained with the teacher {taught_by}, which is gone; put it "
            "back to resume"
        )


def checkpoint_state(path: Path) -> str:
    """``resumable`` (epochs left), ``trained`` (every epoch done, or a ``--hours`` budget
    spent, but the final strip of the optimizer was interrupted) or ``finished``
    (stripped: the run ended normally)."""
    checkpoint = load_yolo(path, "detect").ckpt or {}
    epoch = checkpoint.get("epoch", -1)
    if epoch < 0:
        return "finished"
    args = checkpoint.get("train_args") or {}
    # A --hours run stops when its clock passes the budget, usually before the epochs
    # it last estimated; results.csv's time column is that clock (seconds this session).
    elapsed = ((checkpoint.get("train_results") or {}).get("time") or [0])[-1]
    if args.get("time") and elapsed > args["time"] * 3600:
        return "trained"
    return "resumable" if epoch + 1 < args.get("epochs", 0) else "trained"


def _trim_results(run_dir: Path, epochs_saved: int) -> None:
    """Keeps ``results.csv`` to the epochs the checkpoint holds: ultralytics writes an
    epoch's row before its checkpoint, so a kill in between leaves a row that the resumed
    run writes again."""
    results = run_dir / "results.csv"
    if epochs_saved <= 0 or not results.is_file():  # 0: a finished run (epoch -1)
        return
    header, *rows = results.read_text().splitlines(keepends=True)
    kept = [row for row in rows if row.strip() and float(row.split(",")[0]) <= epochs_saved]
    if len(kept) != len(rows):
        atomic_write_bytes(results, "".join([header, *kept]).encode())


def _check_resume_options(run_dir: Path, given: list[str]) -> None:
    """Refuses options a resumed run cannot take: ultralytics continues a run with the
    settings it started with and ignores a new ``--epochs`` (only a warning in its log),
    so ``--resume --epochs 300`` would stop where the first command said."""
    if given:
        raise ConversionError(
            f"--resume continues {run_dir} with the settings it started with, so "
            f"{', '.join(given)} cannot change it (only --data, --device, --batch and "
            f"--workers can); to train on with others, start a new stage from its weights: "
            f"defects train --model {run_dir / 'last.pt'} ..."
        )


def _resume_overrides(
    checkpoint: Path,
    run_dir: Path,
    data: Path | None,
    device: str,
    batch: int | None,
    workers: int | None,
) -> dict:
    """What a resumed run takes besides its checkpoint's settings: the run's folder as it
    is now (a run folder moved or copied, from a GPU machine say, went on writing into
    the folder its checkpoint names), the data where it now lies, and the device, batch
    and workers asked for.

    Raises:
        ConversionError: The checkpoint's data is gone and no ``--data`` was given, a
            file of it ultralytics would pass over (:func:`_check_training_files`), or
            its GPU is not here (:func:`_resume_device`).
    """
    args = (load_yolo(checkpoint, "detect").ckpt or {}).get("train_args") or {}
    changed = {"save_dir": str(run_dir), "device": _resume_device(checkpoint, args, device)}
    if data is not None:
        changed["data"] = str(resolve_data(data))
    elif isinstance(args.get("data"), str) and not Path(args["data"]).exists():
        raise ConversionError(
            f"{checkpoint}: the run trained on {args['data']}, which is not there now; "
            "give --data where that dataset lies"
        )
    trained_on = changed.get("data", args.get("data"))
    if isinstance(trained_on, str):
        _check_training_files(Path(trained_on))
    changed |= {"batch": batch, "workers": workers}
    return {key: value for key, value in changed.items() if value is not None}


def _resume_device(checkpoint: Path, train_args: dict, requested: str) -> str | None:
    """The device a resumed run takes: the one asked for, or with ``auto`` the one the
    checkpoint's ``train_args`` name (None: as it was), which must be here: a GPU run's
    ``last.pt`` continued on a machine without that GPU was ultralytics' ValueError
    traceback.

    Raises:
        ConversionError: ``auto``, and the run trained on a GPU this machine lacks.
    """
    if requested != "auto":
        return requested
    trained_on = str(train_args.get("device") or "")
    if trained_on in ("", "cpu"):
        return None  # '': ultralytics chose (a GPU if any), as it will again
    try:
        device_option(trained_on)
    except argparse.ArgumentTypeError:
        raise ConversionError(
            f"{checkpoint}: the run trained on device {trained_on}, which torch does not "
            "see here; resume it with --device cpu (or another device), or on the machine "
            "it trained on"
        ) from None
    return None


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``--resume`` continues: ``last.pt``, or ``best.pt`` if ``last.pt``
    is damaged (said on stderr), so one bad file does not cost the whole run. ``None``
    when every epoch was trained and only the final rewrite was cut short: that rewrite
    is done here (ultralytics would refuse to resume a run with no epochs left).

    Raises:
        ConversionError: Nothing to resume, the run already finished, or no intact file.
    """
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    if not last.is_file():
        raise ConversionError(f"{last}: nothing to resume (no last.pt from an earlier run)")
    remove_partial_writes(run_dir)
    try:
        state = checkpoint_state(last)
    except WeightsError as damaged:
        try:
            fallback = best.is_file() and checkpoint_state(best) == "resumable"
        except WeightsError:
            fallback = False
        if not fallback:
            raise WeightsError(
                f"{damaged}; cannot resume, and no intact best.pt to fall back to"
            ) from None
        print(f"defects train: {damaged}; resuming from {best} instead", file=sys.stderr)
        _trim_results(run_dir, load_yolo(best, "detect").ckpt["epoch"] + 1)
        return best
    _trim_results(run_dir, load_yolo(last, "detect").ckpt["epoch"] + 1)
    if state == "finished":
        raise ConversionError(
            f"{last}: that run finished; nothing to resume. Start a new stage from its "
            f"weights with --model {best}"
        )
    if state == "trained":
        for path in (last, best):
            if path.is_file() and checkpoint_state(path) != "finished":
                _strip_optimizer_atomically(path)
        print(
            f"defects train: every epoch of {run_dir} was trained; its final checkpoint "
            "rewrite had been cut short and is now done",
            file=sys.stderr,
        )
        return None
    return last


def keep_earlier_run(run_dir: Path, inputs: list[Path | str | None]) -> Path | None:
    """Moves an earlier run of the same name aside (``NAME.before-<its last save>``), so a
    new run never overwrites weights that took hours (ultralytics, told ``exist_ok``,
    would write over them); returns where it went, None when there was none.

    Raises:
        ConversionError: One of ``inputs`` (the starting model, a teacher, a backbone)
            lies in that run: a new stage from it needs a name of its own.
    """
    checkpoints = [p for p in (run_dir / "last.pt", run_dir / "best.pt") if p.is_file()]
    if not checkpoints:
        return None
    for given in inputs:
        if given is not None and Path(given).resolve().is_relative_to(run_dir.resolve()):
            raise ConversionError(
                f"{given}: lies in {run_dir}, the earlier run this --name would replace; "
                "give the new stage a --name of its own"
            )
    saved = time.localtime(max(p.stat().st_mtime for p in checkpoints))
    stem = f"{run_dir.name}.before-{time.strftime('%Y-%m-%dT%H-%M-%S', saved)}"
    kept, n = run_dir.with_name(stem), 1
    while kept.exists():
        kept, n = run_dir.with_name(f"{stem}-{n}"), n + 1
    run_dir.rename(kept)
    print(f"defects: {run_dir} held an earlier run, kept as {kept}", file=sys.stderr)
    return kept


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
    backbone: Path | None = None,
    callbacks: dict[str, Callable] | None = None,
    teacher: str | None = None,
    activation: str | None = None,
) -> Path:
    """Trains (or resumes) a detector and returns its weights folder.

    Args:
        data: Converter output folder or its ``data.yaml``.
        name: Run name; weights land in ``weights_dir/name``.
        model: Model definition (``yolo11n.yaml``, from scratch), or weights training
            starts from: a local ``.pt`` or a released model's name (``neu-det``); recipe
            default.
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
        backbone: A checkpoint (a classifier trained on the same images) whose tensors
            of the same name and shape initialise a model built from a definition; the
            rest start random.
        callbacks: Ultralytics callbacks by event (``on_train_batch_end``: ``fn(trainer)``),
            for benchmarks and integrations.
        teacher: A trained detector (a ``.pt`` or a released name) to distil from:
            ultralytics' knowledge distillation matches the model's features and outputs
            to the teacher's (weight ``--set dis=6.0``). The weights saved are the model's
            alone, so a large teacher can make a small model better at the small one's size.
        activation: ``relu`` or ``silu`` (:data:`ACTIVATIONS`): the model's activation,
            instead of the definition's or the starting weights' own (SiLU in every
            YOLO). From trained weights, a stage that teaches them another activation:
            ``relu`` for an int8 export 1.3x as fast. Recorded in ``trained_on.json``,
            so the card gives the stage's command with it.

    Raises:
        ConversionError: Missing data, weights or checkpoint; ``activation`` with several
            GPUs (ultralytics' DDP workers build their own trainer, without it).
    """
    # Every check that needs no model comes before ultralytics (and torch) are imported:
    # a mistake is told in half a second, not 3.5 (tests/test_imports.py).
    run_dir = (Path(weights_dir) / check_name(name, "run")).resolve()
    if activation is not None and "," in str(device):
        raise ConversionError(
            f"--activation {activation} trains on one device: ultralytics' DDP workers "
            f"build the model from its definition without it. Train a stage with it on one "
            f"GPU (--device 0); a stage from its weights keeps it, on any number of GPUs"
        )
    if resume:
        fixed = {
            "--model": model,
            "--imgsz": imgsz,
            "--epochs": epochs,
            "--hours": hours,
            "--teacher": teacher,
            "--activation": activation,
            "--set": extra or None,
        }
        _check_resume_options(run_dir, [option for option, v in fixed.items() if v is not None])
        checkpoint = resume_checkpoint(run_dir)
        if checkpoint is not None:
            _check_teacher_still_there(checkpoint)
            changed = _resume_overrides(checkpoint, run_dir, data, device, batch, workers)
            from ultralytics import YOLO

            trainer = trainer_class("detect", activation)
            with _logged_to(run_dir / "train.log"):
                YOLO(str(checkpoint)).train(resume=True, trainer=trainer, **changed)
        return run_dir

    data_yaml = resolve_data(data)
    # A missing or damaged file (before torch is loaded), or a definition of no detector,
    # told before a recipe is picked.
    if model is not None:
        _starting_weights(model)
    if teacher is not None:
        _teacher_weights(teacher)
    _check_training_splits(data_yaml)
    counts = _check_training_files(data_yaml)
    for sentence in coco_edits_not_trained_on(data_yaml.parent):
        print(f"defects train: warning: {sentence}", file=sys.stderr)
    # A class the labels leave out of a split trains or validates without a word from
    # ultralytics (a data.yaml listing a class no image was labelled with).
    for _, sentence in classes_without_boxes_said(counts):
        print(f"defects train: warning: {sentence}", file=sys.stderr)
    recipe = training_recipe(data_yaml, on_gpu(device))
    chosen = {"model": model, "imgsz": imgsz, "epochs": epochs, "batch": batch}
    settings = {"model": "yolo11n.yaml", "imgsz": 640, "epochs": 100, "batch": 16}
    settings.update(recipe)
    settings.update({k: v for k, v in chosen.items() if v is not None})
    settings["model"], yolo = _starting_model(str(settings["model"]))
    if getattr(yolo, "ckpt", None) and model_channels(yolo) == 1 < data_yaml_channels(data_yaml):
        spread_grey_stem(yolo.model)  # weights of grey images, trained on BGR ones
    if backbone is not None:
        if Path(settings["model"]).suffix not in (".yaml", ".yml"):
            raise ConversionError(
                f"{backbone}: a backbone initialises a model built from a definition "
                f"(yolo11n.yaml), not {settings['model']}, which has weights of its own"
            )
        backbone = check_checkpoint(backbone)
    from detection.augment import steel_augmentations

    arguments = {
        **STEEL_ARGUMENTS,
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
        "pretrained": str(backbone) if backbone else Path(settings["model"]).suffix == ".pt",
        "augmentations": steel_augmentations(),
        "trainer": trainer_class("detect", activation),
    }
    if teacher is not None:
        arguments["distill_model"] = str(_teacher_model(teacher, data_yaml))
    if workers is not None:
        arguments["workers"] = workers
    if hours is not None:
        arguments["time"] = hours
    for event, function in (callbacks or {}).items():
        yolo.add_callback(event, function)
    keep_earlier_run(run_dir, [settings["model"], arguments.get("distill_model"), backbone])
    # Before the first epoch: a run stopped at any point has seen these images.
    record_training_images(run_dir, data_yaml, settings["model"], settings["imgsz"], activation)
    with _logged_to(run_dir / "train.log"):
        yolo.train(**arguments)
    return run_dir
