"""Classification fallback: one label per image, on the trained detector's backbone.

``defects train-cls`` builds an ultralytics classification tree (``train|val/<class>/``)
from either a folder-per-class source or a converter output, initialises a YOLO
classifier from the detector's weights (every tensor whose name and shape match, i.e.
the shared backbone), trains it and evaluates it on the held-out split.
``defects classify`` gives top-k probabilities per image and, with ``--heatmap``, a
Grad-CAM overlay on the last backbone stage.

Image-level label of a converter output (documented rule): the class whose boxes cover
the largest total area in the image (ties: the lower class id). Images with no boxes
become ``--background-class`` (e.g. ``good``) when given, and are left out otherwise.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from converters.convert import read_manifest
from converters.errors import ConversionError
from converters.files import read_text
from converters.imagesize import untrainable_images
from converters.layouts import (
    class_folders,
    images_in,
    is_image_level_tree,
    refuse_unconverted,
)
from converters.model import SPLITS, Box
from converters.yolo import from_yolo_lines, is_yolo_dataset
from detection import offline  # noqa: F401  (before ultralytics)
from detection.weights import (
    check_checkpoint,
    check_name,
    load_yolo,
    model_channels,
    model_imgsz,
    sha256,
    spread_grey_stem,
    student_checkpoint,
)

if TYPE_CHECKING:
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import ClassificationModel


def image_label_from_boxes(boxes: list[tuple[int, float]]) -> int | None:
    """The class id covering the largest total box area; ties go to the lower id.

    Args:
        boxes: ``(class_id, area)`` per box.
    """
    if not boxes:
        return None
    area: dict[int, float] = defaultdict(float)
    for class_id, box_area in boxes:
        area[class_id] += box_area
    return min(area, key=lambda c: (-area[c], c))


@dataclass
class ClassificationSource:
    """Images with one label each, split, ready to lay out for ultralytics."""

    classes: list[str]
    items: list[tuple[Path, str, str]]  # image, class, split
    kind: str


def from_converted(out: Path, background_class: str | None = None) -> ClassificationSource:
    """Image-level labels from a converter output's YOLO labels (largest-area rule)."""
    classes = list(read_manifest(out)["classes"])
    labelled = []
    for split in SPLITS:
        image_dir = out / "images" / split
        if not image_dir.is_dir():
            continue
        for image in images_in(image_dir):
            label_file = out / "labels" / split / f"{image.stem}.txt"
            text = read_text(label_file, "YOLO labels") if label_file.exists() else ""
            # Unit width and height: areas as fractions of the image, all that is compared.
            boxes = from_yolo_lines(text, 1, 1, classes, str(label_file))
            labelled.append((image, boxes, split))
    return _by_largest_box(out, classes, labelled, background_class, "converter output")


def from_yolo_dataset(data: Path, background_class: str | None = None) -> ClassificationSource:
    """Image-level labels from any YOLO dataset (its folder or ``data.yaml``: every split
    it lists, read as ``evaluate`` reads them), by the rule of a converter output's."""
    from detection.evaluate import yolo_dataset_images

    classes, images = yolo_dataset_images(data)
    labelled = [(image.path, image.boxes, image.split) for image in images]
    return _by_largest_box(data, classes, labelled, background_class, "YOLO dataset")


def _by_largest_box(
    data: Path,
    classes: list[str],
    labelled: list[tuple[Path, list[Box], str]],
    background_class: str | None,
    kind: str,
) -> ClassificationSource:
    """Each image labelled with the class its boxes cover most of; an image without any
    with ``background_class``, or left out without one.

    Raises:
        ConversionError: ``background_class`` is one of ``classes`` already.
    """
    if background_class in classes:
        raise ConversionError(
            f"--background-class {background_class}: a class of {data} already (images "
            "without boxes would join its images); name a class of their own, e.g. good"
        )
    items = []
    for image, boxes, split in labelled:
        label = image_label_from_boxes([(classes.index(b.label), b.area) for b in boxes])
        if label is not None:
            items.append((image, classes[label], split))
        elif background_class:
            items.append((image, background_class, split))
    if background_class:
        classes = [*classes, background_class]
    return ClassificationSource(classes, items, f"{kind} (largest box area per image)")


def from_folders(
    root: Path, ratios: tuple[float, float] = (0.8, 0.2), seed: int = 0
) -> ClassificationSource:
    """A folder-per-class tree, already split (``train/``, ``val/``) or split here per class."""
    presplit = [s for s in SPLITS if (root / s).is_dir()]
    items = []
    if presplit:
        for split in presplit:
            for name, images in class_folders(root / split).items():
                items += [(image, name, split) for image in images]
        kind = "folder per class, split given"
        trained = {name for _, name, split in items if split == "train"}
        untrained = sorted({name for _, name, _ in items} - trained)
        if untrained:
            held = sorted({split for _, name, split in items if name == untrained[0]})
            raise ConversionError(
                f"{root}: no training images of {', '.join(untrained)} (images in "
                f"{', '.join(str(root / s / untrained[0]) for s in held)}"
                f", none in {root / 'train' / untrained[0]}): the classifier could never "
                "predict it; move some into train/"
            )
    else:
        rng = random.Random(seed)
        for name, images in class_folders(root).items():
            shuffled = images[:]
            rng.shuffle(shuffled)
            n_train = max(1, round(len(shuffled) * ratios[0])) if len(shuffled) > 1 else 1
            items += [
                (image, name, "train" if i < n_train else "val") for i, image in enumerate(shuffled)
            ]
        kind = "folder per class, split here (per class, seeded)"
    classes = sorted({name for _, name, _ in items})
    if len(classes) < 2:
        raise ConversionError(f"{root}: a classifier needs at least two class folders")
    return ClassificationSource(classes, items, kind)


def layout_tree(source: ClassificationSource, target: Path) -> Path:
    """Writes ``target/{train,val}/<class>/`` symlinks, the layout ultralytics reads."""
    shutil.rmtree(target, ignore_errors=True)
    splits = {split for _, _, split in source.items}
    if "val" not in splits:
        raise ConversionError("the classification data has no val split to evaluate on")
    for split in splits:
        for name in source.classes:  # every class in every split, even if empty
            (target / split / name).mkdir(parents=True, exist_ok=True)
    taken: set[Path] = set()
    for image, name, split in source.items:
        link = target / split / name / image.name
        # Two images of one name in a class (good/day1/0.jpg, good/day2/0.jpg): the
        # second was left out.
        count = 1
        while link in taken:
            count += 1
            link = link.with_name(f"{image.stem}-{count}{image.suffix}")
        taken.add(link)
        link.symlink_to(image.resolve())
    return target


def count_transfer(detector_weights: Path, cls_model: ClassificationModel) -> tuple[int, int, bool]:
    """How ``cls_model`` is initialised from a detector checkpoint.

    Returns:
        Tensors transferred (same name and shape, counted as ultralytics' own load counts
        them: 192 of 236 for yolo11n into yolo11n-cls), all of the classifier's tensors,
        and whether the backbone really transferred: the stem convolution and at least
        half of the real weight tensors (a few tensors of a different model scale match
        by accident, and BatchNorm step counters always do).
    """
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils.torch_utils import intersect_dicts

    detector, _ = load_checkpoint(str(detector_weights))
    own = cls_model.state_dict()
    shared = intersect_dicts(detector.float().state_dict(), own)
    real = sum(1 for t in shared.values() if t.numel() > 1)
    own_real = sum(1 for t in own.values() if t.numel() > 1)
    backbone = "model.0.conv.weight" in shared and real >= own_real / 2
    return len(shared), len(own), backbone


def prepare_source(data: Path, background_class: str | None, seed: int) -> ClassificationSource:
    """The images and labels of ``data``: a converter output (or its ``data.yaml``), any
    YOLO dataset (its folder or ``data.yaml``), or a folder per class.

    Raises:
        ConversionError: Neither (a VOC dataset: with the command that converts it), or
            ``background_class`` where it names nothing new.
    """
    data = Path(data)
    if (data / "manifest.json").is_file():
        return from_converted(data, background_class)
    if data.name == "data.yaml" and (data.parent / "manifest.json").is_file():
        return from_converted(data.parent, background_class)
    if is_yolo_dataset(data):
        return from_yolo_dataset(data, background_class)
    if is_image_level_tree(data):
        if background_class:
            raise ConversionError(
                f"--background-class names the class of a converter output's images without "
                f"boxes; {data} is a folder per class: give those images a folder of their own"
            )
        return from_folders(data, seed=seed)
    refuse_unconverted(data)  # once converted, its largest box labels each image
    raise ConversionError(
        f"{data}: neither a converter output (manifest.json), a YOLO dataset (data.yaml) "
        "nor a folder per class (class_a/*.jpg or train|val/class_a/*.jpg)"
    )


def train_classifier(
    data: Path,
    name: str,
    backbone: str | None = None,
    model: str = "yolo11n-cls.yaml",
    imgsz: int = 224,
    epochs: int = 10,
    batch: int = 32,
    device: str = "auto",
    background_class: str | None = None,
    weights_dir: Path = Path("weights"),
    seed: int = 0,
    workers: int | None = None,
) -> dict:
    """Trains a classifier, initialised from ``backbone`` (a detector ``.pt``) or from
    scratch when ``backbone`` is ``None``; evaluates it on val. Returns a summary.

    Raises:
        ConversionError: Bad data, a missing backbone, or a backbone that shares nothing.
    """
    from detection.train import keep_earlier_run, refuse_untrainable, trainer_class

    # The checks that need no model before ultralytics (and torch, 3 s) are imported.
    run_dir = (Path(weights_dir) / check_name(name, "run")).resolve()
    if backbone:
        backbone = check_checkpoint(backbone)
    source = prepare_source(data, background_class, seed)
    refuse_untrainable(untrainable_images([image for image, _, _ in source.items]))
    from ultralytics import YOLO
    from ultralytics.nn.tasks import ClassificationModel

    detector = load_yolo(backbone, "detect") if backbone else None
    tree = layout_tree(source, run_dir.parent / f".{name}-data")
    # (A distillation run's unfinished checkpoint starts the classifier from its student,
    # written into a folder gone after training: ultralytics' args.yaml names that copy,
    # summary.json the backbone as given.)
    # A detector of grey images (channels: 1) starts a classifier, which takes BGR, as
    # exactly on grey steel.
    grey = detector is not None and model_channels(detector) == 1
    if grey:
        spread_grey_stem(detector.model)
    with tempfile.TemporaryDirectory(prefix="defects-backbone-") as scratch:
        start = student_checkpoint(detector, Path(scratch), changed=grey) if detector else None
        transfer = None
        if start:
            probe = ClassificationModel(model, nc=len(source.classes), verbose=False)
            transferred, total, matched = count_transfer(start, probe)
            if not matched:
                raise ConversionError(
                    f"{backbone}: its backbone does not fit {model} (only {transferred} of "
                    f"{total} tensors match, not the backbone): use the detector's own "
                    "scale, e.g. yolo11n.yaml -> yolo11n-cls.yaml, or --backbone none"
                )
            transfer = {"transferred": transferred, "total": total, "from": str(backbone)}
        arguments = {
            "data": str(tree),
            "epochs": epochs,
            "imgsz": imgsz,
            "batch": batch,
            "device": None if device == "auto" else device,
            "project": str(run_dir.parent),
            "name": name,
            "exist_ok": True,
            "seed": seed,
            "plots": False,
            "pretrained": str(start) if start else False,
            "hsv_h": 0.0,
            "hsv_s": 0.0,
            "flipud": 0.5,
        }
        if workers is not None:
            arguments["workers"] = workers
        keep_earlier_run(run_dir, [backbone])
        YOLO(model).train(**arguments, trainer=trainer_class("classify"))
    weights = run_dir / "best.pt"
    report = evaluate_classifier(weights, tree / "val", run_dir / "report", imgsz, backbone)
    summary = {
        "weights": str(weights),
        "source_kind": source.kind,
        "classes": source.classes,
        "images": Counter(split for _, _, split in source.items),
        "transfer": transfer,
        "top1": report["top1"],
        "top5": report["top5"],
        "backbone_seen_in_training": report.get("backbone_seen_in_training"),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def predict_probabilities(model: YOLO, images: list, imgsz: int) -> np.ndarray:
    """``[N, classes]`` probabilities from ultralytics' own classification predictor."""
    results = model.predict(images, imgsz=imgsz, verbose=False)
    return np.stack([r.probs.data.cpu().numpy() for r in results])


def evaluate_classifier(
    weights: Path,
    val_dir: Path,
    out: Path,
    imgsz: int | None = None,
    backbone: Path | None = None,
) -> dict:
    """Top-1/top-5, per-class P/R/F1 and a confusion matrix on a ``val/<class>/`` tree;
    with the detector whose ``backbone`` started the classifier, how many of those images
    it was trained on (:func:`detection.splits.seen_in_training`)."""
    from detection.report import plot_confusion_matrix
    from detection.splits import seen_in_training

    model = load_yolo(weights, "classify")
    imgsz = imgsz or model_imgsz(model)
    names = [model.names[i] for i in range(len(model.names))]
    paths, truth = [], []
    for index, name in enumerate(names):
        for image in images_in(val_dir / name) if (val_dir / name).is_dir() else []:
            paths.append(str(image))
            truth.append(index)
    if not paths:
        raise ConversionError(f"{val_dir}: no images to evaluate")
    probabilities = np.concatenate(
        [predict_probabilities(model, paths[i : i + 64], imgsz) for i in range(0, len(paths), 64)]
    )
    truth_array = np.array(truth)
    ranked = np.argsort(-probabilities, axis=1)
    predicted = ranked[:, 0]
    k = len(names)
    matrix = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(truth_array, predicted):
        matrix[t, p] += 1
    per_class = []
    for i, name in enumerate(names):
        tp = int(matrix[i, i])
        precision = tp / matrix[:, i].sum() if matrix[:, i].sum() else 0.0
        recall = tp / matrix[i].sum() if matrix[i].sum() else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(
            {
                "name": name,
                "images": int(matrix[i].sum()),
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    report = {
        "weights": str(weights),
        "weights_sha256": sha256(Path(weights)),
        "imgsz": imgsz,
        "images": len(paths),
        "top1": float((predicted == truth_array).mean()),
        "top5": float((ranked[:, : min(5, k)] == truth_array[:, None]).any(1).mean()),
        "per_class": per_class,
        "confusion_matrix": {
            "labels": names,
            "rows": "true",
            "columns": "predicted",
            "matrix": matrix.tolist(),
        },
    }
    if backbone is not None:
        report["backbone_seen_in_training"] = seen_in_training(backbone, list(map(Path, paths)))[0]
    out.mkdir(parents=True, exist_ok=True)
    from detection.report import _clean, _fmt, seen_sentence

    (out / "report.json").write_text(json.dumps(_clean(report), indent=2) + "\n")
    plot_confusion_matrix(matrix, names, out / "confusion_matrix.png", background=False)
    lines = [
        f"# Classification report: {Path(weights).parent.parent.name}",
        "",
        f"{len(paths)} held-out images, image size {imgsz}: **top-1 {report['top1']:.4f}**, "
        f"top-5 {report['top5']:.4f}.",
    ]
    said = seen_sentence(
        report.get("backbone_seen_in_training"), "the detector whose backbone started it"
    )
    lines += ["", f"**{said[0]}:** {said[1]}"] if said else []
    lines += [
        "",
        "| class | images | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c['name']} | {c['images']} | {_fmt(c['precision'])} | {_fmt(c['recall'])} | "
        f"{_fmt(c['f1'])} |"
        for c in per_class
    ]
    if any(not c["images"] for c in per_class):
        lines += ["", "n/a: the class has no held-out images, so no recall."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return report


def grad_cam(
    model: YOLO, image_bgr: np.ndarray, imgsz: int, class_index: int | None = None
) -> np.ndarray:
    """Grad-CAM of the last backbone stage, as an ``[H, W]`` map in [0, 1] over the image.

    Ultralytics' classification preprocessing resizes the short side to ``imgsz`` and
    centre-crops; the map is placed back over that centre square (0 outside it).
    """
    import cv2
    import torch

    network = model.model  # ultralytics ClassificationModel
    network.eval()
    layers = network.model
    stage = layers[len(layers) - 2]  # the layer feeding the Classify head
    height, width = image_bgr.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = cv2.resize(
        image_bgr[top : top + side, left : left + side],
        (imgsz, imgsz),
        interpolation=cv2.INTER_LINEAR,
    )
    tensor = torch.from_numpy(crop[..., ::-1].copy()).permute(2, 0, 1).float()[None] / 255.0
    captured = {}

    def keep(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        output.retain_grad()
        captured["activation"] = output

    handle = stage.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            parameter = next(network.parameters())
            # Inference checkpoints freeze their parameters; a gradient on the input is
            # enough to get one on the activations.
            inputs = tensor.to(parameter.device, parameter.dtype).requires_grad_(True)
            output = network(inputs)
            logits = output[1] if isinstance(output, tuple) else output
            target = int(logits.argmax(1)) if class_index is None else class_index
            network.zero_grad()
            logits[0, target].backward()
    finally:
        handle.remove()
    activation = captured["activation"]
    weights = activation.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(1))[0].detach().float().cpu().numpy()
    full = np.zeros((height, width), dtype=np.float32)
    full[top : top + side, left : left + side] = cv2.resize(
        cam, (side, side), interpolation=cv2.INTER_LINEAR
    )
    peak = full.max()
    return np.clip(full / peak, 0.0, 1.0) if peak > 0 else full


def classify(
    weights: Path,
    sources: list[Path],
    out: Path | None,
    top_k: int = 3,
    heatmap: bool = False,
    imgsz: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Top-k classes with probabilities per image, and Grad-CAM overlays in ``heatmaps/``
    with ``heatmap``. Unreadable images are reported and skipped.

    With an ``out`` folder writes ``predictions.json`` and ``errors.json``; with
    ``out=None`` writes nothing. An image the model sees only part of
    (:func:`converters.pixels.narrowed_samples`) is classified and noted. Returns
    ``{"images": n, "errors": [...], "notes": [...], "passed_over": {suffix: files},
    "predictions": [...]}``.

    Raises:
        ConversionError: ``heatmap`` without an ``out`` folder to write them to.
    """
    import cv2

    from converters.folders import write_folder
    from converters.pixels import narrowed_samples, read_image, write_image
    from detection.predict import PREDICTIONS_MARKER, by_suffix, collect_images

    if heatmap and out is None:
        raise ConversionError("--heatmap writes images: it needs --out")
    passed_over: list[Path] = []
    found_twice: list[tuple[Path, Path]] = []
    paths = collect_images(sources, passed_over, out, found_twice)  # before torch loads
    model = load_yolo(weights, "classify")
    imgsz = imgsz or model_imgsz(model)
    predictions, errors, notes = [], [], []

    def run(folder: Path | None) -> None:
        if folder is not None:
            folder.mkdir(parents=True)
        if heatmap:
            (folder / "heatmaps").mkdir()
        for done, path in enumerate(paths, 1):
            try:
                image = read_image(path)
            except OSError as error:
                errors.append({"file": str(path), "error": error.strerror})
                if progress:
                    progress(done, len(paths))
                continue
            probabilities = predict_probabilities(model, [image], imgsz)[0]
            order = np.argsort(-probabilities)[: max(1, top_k)]
            entry = {
                "file": str(path),
                "top_k": [
                    {"class": model.names[int(i)], "probability": float(probabilities[i])}
                    for i in order
                ],
            }
            note = narrowed_samples(path, image)
            if note:
                entry["note"] = note
                notes.append({"file": str(path), "note": note})
            if heatmap:
                cam = grad_cam(model, image, imgsz, int(order[0]))
                colour = cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET)
                overlay = cv2.addWeighted(image, 0.55, colour, 0.45, 0)
                name = Path("heatmaps") / f"{done:06d}_{path.stem}.png"
                write_image(folder / name, overlay)
                entry["heatmap"] = str(Path(out) / name)  # where it is once in place
            predictions.append(entry)
            if progress:
                progress(done, len(paths))
        if folder is not None:
            (folder / PREDICTIONS_MARKER).write_text(json.dumps(predictions, indent=2) + "\n")
            (folder / "errors.json").write_text(json.dumps(errors, indent=2) + "\n")

    if out is None:
        run(None)
    else:  # written whole: an earlier run's heatmaps never stay among these
        write_folder(Path(out), run, PREDICTIONS_MARKER, sources)
    return {
        "images": len(predictions),
        "errors": errors,
        "notes": notes,
        "passed_over": by_suffix(passed_over),
        "found_twice": [[str(path), str(first)] for path, first in found_twice],
        "predictions": predictions,
    }
