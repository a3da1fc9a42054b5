"""``defects release``: a trained run becomes a released model with its card.

``models/NAME/`` is tracked in git (the only weights that are) and holds ``model.pt``,
``model.onnx`` (fp32, the fast CPU path), ``model.int8.onnx`` (faster still; shipped
only when it stays within ``INT8_TOLERANCE`` mAP50 of fp32), ``card.json`` (everything
a script needs), ``card.md`` (the same for people) and ``examples/`` (the known
weaknesses, drawn with ground truth green and predictions red). ``--weights NAME`` then
works from any folder.

The card's figures are recomputed here, never copied: pycocotools on the val split
(reproduced to 1e-6 by ``tests/test_release.py``), ultralytics' own val beside it, and
CPU throughput measured side by side against ultralytics' batched predict.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from converters.convert import MARKER, read_manifest
from converters.errors import ConversionError
from converters.folders import check_output_folder, write_folder
from detection.boxes import iou_matrix
from detection.evaluate import (
    evaluate_model,
    predict_coco_at_ious,
    predict_split,
    prediction_settings,
    split_ground_truth,
)
from detection.report import (
    _clean,
    _fmt,
    _xyxy,
    figures_unscored,
    ground_truth_edited_sentence,
)
from detection.splits import (
    CARD,
    field_of_view,
    recorded_activation,
    split_images,
    training_digests,
    training_record,
)
from detection.train import (
    OWN_ARGUMENTS,
    STEEL_ARGUMENTS,
    resolve_data,
    seconds_trained,
    training_recipe,
)
from detection.weights import (
    MAX_RELEASE_MB,
    MODELS_DIR,
    NMS_IOU,
    WeightsError,
    check_name,
    load_yolo,
    model_channels,
    sha256,
)

if TYPE_CHECKING:
    from detection.predict import Detector

_THROUGHPUT_BATCH = 32
_THEIRS = "ultralytics_batch32"
_AS_SHIPPED = "ultralytics_as_shipped_batch32"
CALIBRATION_IMAGES = 200  # the first train images in name order calibrate the int8 export
INT8_TOLERANCE = 0.01  # mAP50 the int8 export may lose against fp32 and still ship
TESTED_RELEASE = "neu-det"  # the release tests/test_release.py re-evaluates against its card
# What a card says of a model whose every recorded history starts from a .yaml.
FROM_SCRATCH = "trained from scratch (no pretrained weights of any kind)"
# The NMS IoUs the operating points are chosen among, on train (plain predictions; with
# TTA the points stay at NMS_IOU: four views at each IoU would quadruple the search).
OPERATING_NMS_IOUS = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)


# What the card says of the release machine's CPU (``hardware.vnni``): int8 runs about
# 1.9x fp32 with VNNI and 1.04x without (docs/benchmarks.md). Cards made before it was
# recorded say nothing.
VNNI_NOTES = {
    True: "; its CPU has VNNI (int8 products added in 32 bits)",
    False: "; its CPU has no VNNI (int8 runs little faster than fp32 there)",
}


def describe_machine() -> dict:
    """The CPU model, cores and memory (and GPU, if torch sees one) of this machine, and
    whether its CPU has VNNI (None where Linux lists no x86 flags): int8 runs about twice
    as fast with it, so the card's int8 throughput means little without it."""
    from detection.predict import cpu_flags, cpu_info, lacks_vnni

    cpu = cpu_info("model name") or platform.processor() or platform.machine()
    memory = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    flags = cpu_flags()
    machine = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "vnni": (not lacks_vnni(flags)) if "avx2" in flags else None,
        "gpu": None,
    }
    import torch

    if torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    return machine


def convert_command(manifest: dict, root: Path) -> str:
    """The ``defects convert`` command that makes the converted dataset at ``root`` (its
    manifest) again, with its split."""
    return (
        f"defects convert {_relative(Path(manifest['source']))} --out {_relative(root)} "
        f"--split {','.join(map(str, manifest['split_ratios']))} --seed {manifest['seed']}"
        # Written since --keep-overlaps came: None where it was not asked for.
        + (" --keep-overlaps" if manifest.get("overlapping_images") is not None else "")
    )


def split_fingerprint(manifest: dict) -> str:
    """SHA-256 of what fixes a split (classes, seed, ratios, every image's split), free of
    where the data lay: the same on every machine that converts the same data."""
    canonical = {
        key: manifest[key] for key in ("classes", "seed", "split_ratios", "split_of_image")
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


# The line ultralytics prints as training starts names the device it trained on:
# "Ultralytics 8.4.190 🚀 Python-3.12.3 torch-2.11.0+cu130 CUDA:0 (NVIDIA H100 80GB HBM3, ...)".
_DEVICE_BANNER = re.compile(r"^Ultralytics \S+ .*?torch-\S+ (.+)$", re.MULTILINE)


def training_hardware(run_dir: Path) -> str | None:
    """The device a run trained on, from the ``train.log`` that ``defects train`` keeps
    in the run folder, or None for a run without one."""
    log = run_dir / "train.log"
    if not log.is_file():
        return None
    match = _DEVICE_BANNER.search(log.read_text(encoding="utf-8", errors="replace"))
    return match.group(1).strip() if match else None


def set_options(args: dict, data_yaml: Path | None, gpu: bool) -> list[str]:
    """The ``--set KEY=VALUE`` options a run was given: its ultralytics arguments that
    differ from what ``defects train`` sets by default (ultralytics' defaults, the steel
    arguments, the dataset's recipe for the run's CPU or GPU)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    expected = {**DEFAULT_CFG_DICT, **STEEL_ARGUMENTS, **training_recipe(data_yaml, gpu)}
    return [
        f"--set {key}={value}"
        for key, value in args.items()
        if key in DEFAULT_CFG_DICT and key not in OWN_ARGUMENTS and value != expected[key]
    ]


def training_stage(run_dir: Path, data: Path | None = None) -> dict:
    """One training run as the card records it: the command, epochs, wall time, device.

    Args:
        run_dir: The run folder (``args.yaml``, ``results.csv``, maybe ``train.log``).
        data: The converted dataset the run trained on, as it lies on this machine (a
            run trained elsewhere, on the GPU kit's machine, names a folder of that
            machine); the run's own ``data`` when None.
    """
    args = yaml.safe_load((run_dir / "args.yaml").read_text())
    rows = list(csv.DictReader((run_dir / "results.csv").read_text().splitlines()))
    if not rows:
        raise ConversionError(f"{run_dir / 'results.csv'}: the run has no finished epoch")
    seconds = seconds_trained([float(row["time"]) for row in rows])
    data_yaml = resolve_data(data) if data is not None else Path(args["data"])
    device = args["device"] or "auto"  # ultralytics records --device auto as ""
    command = (
        f"defects train --data {_relative(data_yaml.parent)} "
        f"--model {_as_typed(args['model'])} --name {args['name']} --device {device} "
        f"--imgsz {args['imgsz']} --batch {args['batch']} --seed {args['seed']} "
        f"--workers {args['workers']}"
    )
    weights_dir = _relative(_as_recorded(Path(args["project"])))
    if weights_dir != "weights":
        command += f" --weights-dir {weights_dir}"
    if args.get("time"):
        command += f" --hours {args['time']}"
    elif args.get("epochs"):
        command += f" --epochs {args['epochs']}"
    teacher = _as_typed(args["distill_model"]) if args.get("distill_model") else None
    if teacher:
        command += f" --teacher {teacher}"
    activation = recorded_activation(run_dir / "best.pt")  # the run's record, weights or not
    if activation:
        command += f" --activation {activation}"
    hardware = training_hardware(run_dir)
    gpu = device not in ("auto", "cpu") or "CUDA" in (hardware or "")
    for option in set_options(args, data_yaml if data_yaml.is_file() else None, gpu):
        command += f" {option}"
    last = rows[-1]
    return {
        "run": args["name"],
        "command": command,
        "start": args["model"] if str(args["model"]).endswith(".yaml") else "weights",
        "teacher": teacher,
        "teacher_stages": teacher_stages(Path(args["distill_model"]), data) if teacher else None,
        "epochs": len(rows),
        "complete": run_complete(run_dir),
        "wall_time_h": round(seconds / 3600, 3),
        "device": device,
        "hardware": hardware,
        "imgsz": args["imgsz"],
        "batch": args["batch"],
        "seed": args["seed"],
        "last_epoch_ultralytics_mAP50": float(last["metrics/mAP50(B)"]),
        "last_epoch_ultralytics_mAP50-95": float(last["metrics/mAP50-95(B)"]),
    }


def run_complete(run_dir: Path) -> bool | None:
    """Whether a run ended by itself (every epoch trained, or its ``--hours`` budget
    spent): False for one stopped before (killed, or still training), whose ``best.pt``
    is the best of the epochs it had; None where its checkpoints do not say (a run
    brought back from the GPU machine without them)."""
    from detection.train import checkpoint_state

    for checkpoint in ("last.pt", "best.pt"):
        try:
            state = checkpoint_state(run_dir / checkpoint)
        except WeightsError:
            continue  # missing or damaged: the released best.pt is checked on its own
        # Ultralytics strips both at a run's end; an unstripped best.pt alone says only
        # which epoch was best.
        if checkpoint == "last.pt" or state == "finished":
            return state != "resumable"
    return None


def teacher_stages(teacher: Path, data: Path | None = None) -> list[dict] | None:
    """How a distillation run's teacher was trained, so that a card whose model learned
    from a teacher says how to make the teacher too: the stages of the released model
    whose card lies beside it, or of the run folder it lies in (``args.yaml`` and
    ``results.csv``, which come back from the GPU machine even when the teacher's weights
    are too large to: tools/gpu/run.sh); None when its folder records neither.

    Args:
        teacher: The teacher's weights as the run recorded them (relative paths are the
            repository root's, where ``defects train`` runs).
        data: As for :func:`training_stage`.
    """
    folder = _as_recorded(teacher).parent
    if (folder / CARD).is_file():
        return json.loads((folder / CARD).read_text())["stages"]
    if (folder / "args.yaml").is_file() and (folder / "results.csv").is_file():
        return [*earlier_stages(folder), training_stage(folder, data)]
    return None


def earlier_stages(first_run: Path) -> list[dict]:
    """The stages of the released model a run started from (from its card), so a model
    trained in several stages on several machines keeps its whole history."""
    start = _as_recorded(Path(yaml.safe_load((first_run / "args.yaml").read_text())["model"]))
    card = start.parent / CARD
    if start.name != "model.pt" or not card.is_file():
        return []
    stages = json.loads(card.read_text())["stages"]
    # Released again (the same run, re-exported): its card already lists this run.
    runs = [stage["run"] for stage in stages]
    return stages[: runs.index(first_run.name)] if first_run.name in runs else stages


def _as_recorded(path: Path) -> Path:
    """A path a run's ``args.yaml`` recorded, found where the run meant it: a relative
    one is the repository root's, where ``defects train`` runs (make's targets and
    tools/gpu/run.sh alike), wherever ``defects release`` runs now."""
    from detection.offline import PROJECT_ROOT

    return path if path.is_absolute() else PROJECT_ROOT / path


def _as_typed(recorded: str) -> str:
    """A model a run recorded (its ``--model`` or ``--teacher``), as a command typed at
    the repository root would give it: a bare name that no file there answers to is an
    ultralytics definition (``yolo11n.yaml``) and stays as it is, wherever release runs."""
    path = _as_recorded(Path(recorded))
    return _relative(path) if path.exists() or Path(recorded).name != recorded else recorded


def _relative(path: Path) -> str:
    """``path`` as a command typed at the repository root would give it."""
    from detection.offline import PROJECT_ROOT

    return os.path.relpath(Path(path).resolve(), PROJECT_ROOT)


def weakest_examples(
    gt: dict, results: list[dict], per_class: list[dict], image_dir: Path, out: Path
) -> list[dict]:
    """The two weakest classes (by AP50), each with its two images whose boxes of that
    class the model misses most at the class's best-F1 confidence, drawn into ``out``.
    A class without ground truth in the split has no AP (NaN) and is no weakness."""
    from detection.report import draw_examples

    weakest = sorted((c for c in per_class if c["ground_truth"]), key=lambda c: c["ap50"])[:2]
    found = []
    for cls in weakest:
        category, threshold = cls["category_id"], cls["best_f1_confidence"] or 0.25
        missed: dict[int, int] = {}
        for image in gt["images"]:
            truth = [
                a["bbox"]
                for a in gt["annotations"]
                if a["image_id"] == image["id"] and a["category_id"] == category
            ]
            if not truth:
                continue
            kept = [
                d["bbox"]
                for d in results
                if d["image_id"] == image["id"]
                and d["category_id"] == category
                and d["score"] >= threshold
            ]
            hit = 0
            if kept:
                overlaps = iou_matrix(_xyxy(truth), _xyxy(kept))
                hit = int((overlaps.max(1) >= 0.5).sum())
            missed[image["id"]] = len(truth) - hit
        chosen = sorted(missed, key=lambda i: (-missed[i], i))[:2]
        subset = {
            **gt,
            "images": [im for im in gt["images"] if im["id"] in chosen],
            "annotations": [a for a in gt["annotations"] if a["image_id"] in chosen],
        }
        shown = [d for d in results if d["image_id"] in chosen]
        files = draw_examples(subset, shown, image_dir, out, conf=threshold)
        found.append(
            {
                "class": cls["name"],
                "ap50": cls["ap50"],
                "ap50_95": cls["ap50_95"],
                "recall_at_best_f1": cls["recall"],
                "best_f1_confidence": cls["best_f1_confidence"],
                "missed_boxes_in_examples": [missed[i] for i in chosen],
                "examples": [f"examples/{name}" for name in files],
            }
        )
    return found


def _strip(weights: Path) -> None:
    from ultralytics.utils.torch_utils import strip_optimizer

    from detection.console import ultralytics_off_stdout

    with ultralytics_off_stdout(quiet=True):  # "Optimizer stripped from" a staging folder
        strip_optimizer(str(weights))


def cpu_throughput(
    model_pt: Path, exports: dict[str, Path], images: list[Path], repeats: int = 3
) -> dict:
    """Images per second end to end (decode, preprocess, model, NMS), batches of 32:
    ultralytics' PyTorch predict against each of our ONNX ``exports`` (name to file),
    and each with flip TTA (``NAME_tta``), alternating, median of ``repeats``.

    Every path computes on the same threads (:func:`detection.threads.cpu_threads`), which
    the ratios compare against; ultralytics as it ships (torch on its own
    ``os.cpu_count() - 1`` threads, one of two cores) is timed beside for the record.
    """
    import torch

    from converters.pixels import read_image
    from detection.predict import FlipTTADetector, OnnxDetector, TorchDetector, batches
    from detection.threads import cpu_threads, ultralytics_threads

    torch_model = TorchDetector(model_pt, device="cpu")

    def ultralytics(threads: int) -> Callable[[], None]:
        def run() -> None:
            torch.set_num_threads(threads)
            for chunk in batches(images, _THROUGHPUT_BATCH):
                torch_model.model.predict(
                    [str(p) for p in chunk], imgsz=torch_model.imgsz, device="cpu", verbose=False
                )
            torch.set_num_threads(cpu_threads())

        return run

    def ours(detector: OnnxDetector) -> Callable[[], None]:
        def run() -> None:
            for chunk in batches(images, _THROUGHPUT_BATCH):
                detector([read_image(p) for p in chunk])

        return run

    runs = {_THEIRS: ultralytics(cpu_threads()), _AS_SHIPPED: ultralytics(ultralytics_threads())}
    for name, path in exports.items():
        runs[name] = ours(OnnxDetector(path))
        runs[f"{name}_tta"] = ours(FlipTTADetector(OnnxDetector(path)))
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    per_second = {n: round(len(images) / statistics.median(s), 1) for n, s in seconds.items()}
    theirs = per_second[_THEIRS]
    return {
        "timed": datetime.date.today().isoformat(),
        "images": len(images),
        "imgsz": torch_model.imgsz,
        "threads": {"every_path": cpu_threads(), "ultralytics_as_shipped": ultralytics_threads()},
        "images_per_second": per_second,
        "over_ultralytics": {n: round(per_second[n] / theirs, 2) for n in runs if n != _THEIRS},
    }


def score_onnx(model_onnx: Path, gt: dict, image_dir: Path, tta: bool = False) -> dict:
    """pycocotools mAP50 and mAP50:95 of an ONNX export on ``gt``'s images, with the
    evaluation's prediction settings (conf 0.001, 100 detections per image; ``tta``: and
    flip test-time augmentation)."""
    results = predict_split(model_onnx, gt, image_dir, backend="onnx", tta=tta).results
    return coco_scores(gt, results)


def coco_scores(gt: dict, results: list[dict]) -> dict:
    """pycocotools mAP50 and mAP50:95 of COCO ``results``, as a card records them."""
    from detection.cocoeval import evaluate

    stats = evaluate(gt, results, sizes=False).stats
    return {"mAP50": stats["AP50"], "mAP50-95": stats["AP50:95"]}


def operating_points(
    model_onnx: Path,
    root: Path,
    tta: bool = False,
    nms_ious: tuple[float, ...] = (NMS_IOU,),
    val_results: dict[float, list[dict]] | None = None,
) -> dict:
    """Each class's operating point, as `predict --conf best-f1` applies it: the
    confidence of its best F1 on the **train** split, and the precision, recall and F1 it
    gives on val (the split that did not choose it). The fp32 ONNX export predicts, with
    the evaluation's settings (conf 0.001, 100 detections per image; ``tta``: with flip
    test-time augmentation, whose fused scores want their own thresholds).

    With several ``nms_ious``, train is predicted at each, and the one whose thresholds
    give the best macro F1 on train is the operating point's (on NEU-DET a lower NMS IoU
    than ultralytics' 0.7 removes duplicate boxes of one defect: docs/benchmarks.md).

    ``val_results``: val's predictions already made with these settings, by NMS IoU
    (the release scores val with TTA at :data:`NMS_IOU` anyway); val is predicted only
    if the chosen IoU is not among them.
    """
    from detection.cocoeval import at_thresholds, evaluate, macro_f1, precision_recall
    from detection.predict import load_detector

    # The ground truth evaluate scores against (labels edited since the conversion, say).
    train = split_ground_truth(root, "train").gt
    classes = [category["name"] for category in train["categories"]]
    detector = load_detector(model_onnx, "onnx", classes=classes, tta=tta)
    at_ious = predict_coco_at_ious(detector, train, root / "images" / "train", nms_ious)
    search = {}
    for iou, results in at_ious.items():  # one model run for every IoU
        scored = evaluate(train, results, sizes=False)
        chosen = {c.name: c.best_f1_confidence for c in scored.classes}
        on_train = precision_recall(train, at_thresholds(train, results, chosen))
        search[iou] = (macro_f1(on_train), chosen)
    best = max(nms_ious, key=lambda iou: search[iou][0])  # a tie: the first given
    chosen = search[best][1]
    on_val = measured_on_val(detector, root, chosen, best, (val_results or {}).get(best))
    return {
        "chosen_on": "train",
        "measured_on": "val",
        "rule": "each class's confidence of best F1 (IoU 0.5)"
        + (", at the NMS IoU of the best macro F1" if len(nms_ious) > 1 else ""),
        "nms_iou": best,
        **(
            {"train_macro_f1_by_nms_iou": {str(iou): f1 for iou, (f1, _) in search.items()}}
            if len(nms_ious) > 1
            else {}
        ),
        **on_val,
    }


def without_overlapping(root: Path, gt: dict, results: list[dict]) -> dict:
    """The val figures without the val images that overlap a training image (crops of
    one picture: :func:`converters.overlaps.shifted_copies`, as ``review
    --near-duplicates`` finds them), which a model has seen in training.

    Returns:
        ``{"images", "of", "pairs", "pycocotools": {"mAP50", "mAP50-95"}}`` on the rest.
    """
    from converters.overlaps import copies_of

    val = sorted((root / "images" / "val").iterdir())
    pairs = copies_of(val, sorted((root / "images" / "train").iterdir()))
    overlapping = {val[i].name for i, _ in pairs}
    dropped = {
        image["id"] for image in gt["images"] if Path(image["file_name"]).name in overlapping
    }
    rest = {
        **gt,
        "images": [image for image in gt["images"] if image["id"] not in dropped],
        "annotations": [a for a in gt["annotations"] if a["image_id"] not in dropped],
    }
    return {
        "images": len(dropped),
        "of": len(gt["images"]),
        "pairs": len(pairs),
        "pycocotools": coco_scores(rest, [r for r in results if r["image_id"] not in dropped]),
    }


def measured_on_val(
    detector: Detector,
    root: Path,
    confidences: dict[str, float],
    nms_iou: float,
    results: list[dict] | None = None,
) -> dict:
    """The ``val_macro_f1``, ``per_class`` and ``images`` of :func:`operating_points`:
    each class's precision, recall and F1 on the val split of ``root`` with its
    detections kept at its confidence in ``confidences``, and how many val images those
    detections flag (:func:`detection.screening.screening`), as ``detector`` predicts
    them at ``nms_iou`` (and the evaluation's other settings), or as ``results`` holds
    them when already made. Checking a card's operating points takes val alone, not
    train's four times as many images."""
    from detection.cocoeval import at_thresholds, macro_f1, precision_recall
    from detection.screening import screening

    gt = split_ground_truth(root, "val").gt
    if results is None:
        images = root / "images" / "val"
        results = predict_coco_at_ious(detector, gt, images, (nms_iou,))[nms_iou]
    on_val = precision_recall(gt, at_thresholds(gt, results, confidences))
    ids = {category["name"]: category["id"] for category in gt["categories"]}
    screened = screening(gt, results, {ids[name]: c for name, c in confidences.items()})
    at_points = screened["rules"][1]
    return {
        "val_macro_f1": macro_f1(on_val),
        "per_class": {
            name: {"confidence": confidences[name]}
            | {key: on_val[name][key] for key in ("precision", "recall", "f1")}
            for name in confidences
        },
        "images": {
            key: at_points[key] for key in ("with_defects", "without_defects", "missed_holding")
        },
    }


def _keep_exports(target: Path, release_dir: Path) -> list[Path]:
    """Re-releasing the weights already in ``target`` (for a new card): their shipped
    ONNX exports are copied into ``release_dir`` and returned, not made again, since a
    new export of the same weights differs only in ultralytics' export date and would
    put another copy of the same model into git history. The int8 export is kept only
    if its card records today's quantisation (:func:`int8_quantisation`)."""
    from detection.predict import int8_quantisation

    shipped = target / "model.pt"
    if not shipped.is_file() or sha256(shipped) != sha256(release_dir / "model.pt"):
        return []
    card = _released_card(target) or {}
    exports = ["model.onnx"]
    channels = card.get("model", {}).get("channels", 3)  # a card before: colour
    if card.get("int8", {}).get("quantisation") == int8_quantisation(channels):
        exports.append("model.int8.onnx")
    kept = []
    for export in exports:
        if (target / export).is_file():
            shutil.copyfile(target / export, release_dir / export)
            kept.append(release_dir / export)
    return kept


def _released_card(folder: Path) -> dict | None:
    """The card of a released model's folder (``models/NAME``); None for a training run."""
    card = folder / CARD
    if not (card.is_file() and (folder / "model.pt").is_file()):
        return None
    return json.loads(card.read_text())


def check_release_size(release_dir: Path, max_mb: float) -> None:
    """Refuses a release folder over ``max_mb`` megabytes, naming its largest files.

    Raises:
        ConversionError: The folder is over the limit; nothing has been released.
    """
    sizes = {path: path.stat().st_size for path in release_dir.rglob("*") if path.is_file()}
    total = sum(sizes.values())
    if total > max_mb * 1e6:
        largest = ", ".join(
            f"{path.relative_to(release_dir)} {size / 1e6:.1f} MB"
            for path, size in sorted(sizes.items(), key=lambda item: -item[1])[:3]
        )
        raise ConversionError(
            f"{release_dir.name}: the release would take {total / 1e6:.1f} MB ({largest}), over "
            f"its {max_mb:g} MB: every released version stays in git history. Release a "
            "smaller model, or give --max-mb if the repository should carry it; nothing was "
            "released"
        )


def release(
    runs: list[Path],
    data: Path,
    name: str,
    models_dir: Path = MODELS_DIR,
    max_mb: float = MAX_RELEASE_MB,
) -> dict:
    """Releases the last run's ``best.pt`` as ``models_dir/name`` with its card.

    Args:
        runs: The training runs that made the model, in order (each later one started
            from the one before); the last one's ``best.pt`` is released. Or one
            released model's folder (``models/NAME``): its ``model.pt`` is released again
            with the stages its card records (a new card and exports, the same weights,
            on a machine that no longer has the runs).
        data: The converter output the model was trained and is scored on (val split).
        name: The released name (``--weights NAME``).
        models_dir: Where released models live.
        max_mb: The most the release folder may take (checked once the weights and their
            fp32 export are staged, before the long evaluation, and again at the end).

    Returns:
        The card.
    """
    from detection.predict import export_int8, export_onnx, int8_quantisation

    check_name(name, "release")  # its folder is replaced whole, at the end
    target = Path(models_dir) / name
    # Before the work (42 minutes for NEU-DET): a folder there that is no release, and a
    # place nothing can be written to, are said now, not after it.
    check_output_folder(target, CARD)
    runs = [Path(run) for run in runs]
    released_before = _released_card(runs[-1])
    if released_before is not None and len(runs) > 1:
        raise ConversionError(
            f"{runs[-1]}: a released model is released again on its own (its card has "
            "its stages), not after other runs"
        )
    best = runs[-1] / ("model.pt" if released_before else "best.pt")
    data_yaml = resolve_data(data)  # before torch is loaded to read the weights
    root = data_yaml.parent
    if not (root / MARKER).is_file():
        raise ConversionError(
            f"{data}: a YOLO dataset, not a converter output (no {MARKER}): a card records "
            "the conversion its figures were scored on (source, seed, every image's split); "
            "release on the output of `defects convert`, or score the model on this dataset "
            "with `defects evaluate`"
        )
    manifest = read_manifest(root)
    load_yolo(best, "detect")
    staging = Path(tempfile.mkdtemp(prefix=f"defects-release-{name}-"))
    try:
        release_dir = staging / name
        release_dir.mkdir()
        shutil.copyfile(best, release_dir / "model.pt")
        # Only the weights: a run still training keeps its optimizer in best.pt (26 MB
        # for yolo11n against 5.5 MB without).
        _strip(release_dir / "model.pt")
        kept = _keep_exports(target, release_dir)
        exported = release_dir / "model.onnx"
        if exported not in kept:
            assert export_onnx(release_dir / "model.pt") == exported
        check_release_size(release_dir, max_mb)
        with tempfile.TemporaryDirectory(prefix="defects-release-") as tmp:
            report = evaluate_model(release_dir / "model.pt", data_yaml, Path(tmp), "val")
            results = json.loads((Path(tmp) / "results.json").read_text())
        gt = split_ground_truth(root, "val").gt
        image_dir = root / "images" / "val"
        calibration = sorted((root / "images" / "train").iterdir())[:CALIBRATION_IMAGES]
        int8 = release_dir / "model.int8.onnx"
        if int8 not in kept:
            assert export_int8(release_dir / "model.pt", calibration, report["imgsz"]) == int8
        int8_scores = score_onnx(int8, gt, image_dir)
        int8_drop = report["metrics"]["AP50"] - int8_scores["mAP50"]
        exports = {"onnx_fp32_batch32": exported}
        if int8_drop <= INT8_TOLERANCE:
            exports["onnx_int8_batch32"] = int8
        else:
            int8.unlink()
        # Val with TTA at NMS_IOU, predicted once: its score, and where its operating
        # points are measured.
        fp32_tta = predict_split(exported, gt, image_dir, backend="onnx", tta=True).results
        with_tta = {"onnx_fp32": coco_scores(gt, fp32_tta)}
        if int8.exists():
            with_tta["onnx_int8"] = score_onnx(int8, gt, image_dir, tta=True)
        weaknesses = weakest_examples(
            gt, results, report["per_class"], image_dir, release_dir / "examples"
        )
        val_images = sorted(image_dir.iterdir())
        # One date for the whole card: the timer runs minutes after the card is begun, and
        # its own date, past midnight, would read as a throughput timed again later.
        released = datetime.date.today().isoformat()
        model = load_yolo(release_dir / "model.pt", "detect")
        # 1: a model of grey levels, its ONNX input one channel (a deployment that feeds it
        # three fails), its int8 export taking grey pixels.
        channels = model_channels(model)
        card = {
            "name": name,
            "released": released,
            "model": {
                "weights": "model.pt",
                "weights_sha256": sha256(release_dir / "model.pt"),
                "onnx": "model.onnx",
                "onnx_sha256": sha256(release_dir / "model.onnx"),
                # The definition the weights were built from, whatever they started from
                # (a later stage's run starts from a .pt).
                "architecture": model.model.yaml.get("yaml_file"),
                "parameters": sum(p.numel() for p in model.model.parameters()),
                "imgsz": report["imgsz"],
                "channels": channels,
                "classes": list(dict(model.names).values()),
                "source_run": released_before["model"]["source_run"]
                if released_before
                else str(runs[-1]),
            },
            "data": {
                "dataset": manifest.get("dataset"),
                "layout": manifest.get("layout"),
                "seed": manifest["seed"],
                "split_ratios": manifest["split_ratios"],
                "counts": {s: c["images"] for s, c in manifest["counts"].items()},
                "manifest_sha256": sha256(root / "manifest.json"),
                "split_sha256": split_fingerprint(manifest),
                "val_ground_truth_sha256": sha256(root / "annotations" / "instances_val.json"),
                # Where val's labels and COCO file disagree: which the figures read.
                **(
                    {"val_ground_truth_edited": report["ground_truth_edited"]}
                    if report.get("ground_truth_edited")
                    else {}
                ),
                "trained_on": trained_on(runs, data_yaml, released_before, report["imgsz"]),
                "convert": convert_command(manifest, root),
            },
            "stages": released_before["stages"]
            if released_before
            else earlier_stages(runs[0]) + [training_stage(run, root) for run in runs],
            "hardware": describe_machine(),
            "evaluation": {
                "split": "val",
                "images": report["images"],
                "command": f"defects evaluate --weights {name} --data {_relative(root)} "
                f"--out reports/{name}",
                "prediction_settings": report["prediction_settings"],
                "pycocotools": {
                    "mAP50": report["metrics"]["AP50"],
                    "mAP50-95": report["metrics"]["AP50:95"],
                    "per_class": {
                        c["name"]: {"ap50": c["ap50"], "ap50_95": c["ap50_95"]}
                        for c in report["per_class"]
                    },
                },
                "ultralytics": {
                    k: report["ultralytics"][k] for k in ("mAP50", "mAP50-95", "per_class")
                },
                "operating_points": operating_points(exported, root, nms_ious=OPERATING_NMS_IOUS),
                "without_overlapping": without_overlapping(root, gt, results),
            },
            "int8": {
                "onnx": int8.name if int8.exists() else None,
                "onnx_sha256": sha256(int8) if int8.exists() else None,
                "calibration": f"the first {len(calibration)} train images by name",
                "quantisation": int8_quantisation(channels),
                "pycocotools": int8_scores,
                "mAP50_below_fp32": int8_drop,
                "tolerance": INT8_TOLERANCE,
            },
            "tta": {
                "settings": prediction_settings(tta=True)["tta"],
                "command": f"defects evaluate --weights {name} --data {_relative(root)} "
                f"--out reports/{name}-tta --backend onnx --tta",
                "pycocotools": with_tta,
                "operating_points": operating_points(
                    exported, root, tta=True, val_results={NMS_IOU: fp32_tta}
                ),
            },
            "throughput": {
                **cpu_throughput(release_dir / "model.pt", exports, val_images),
                "timed": released,
            },
            "weaknesses": weaknesses,
        }
        card = _clean(card)  # NaN (a class never detected) becomes null
        (release_dir / CARD).write_text(json.dumps(card, indent=2) + "\n")
        (release_dir / "card.md").write_text(card_markdown(card))
        check_release_size(release_dir, max_mb)
        place_release(release_dir, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card


def place_release(release_dir: Path, target: Path) -> None:
    """Puts the staged release ``release_dir`` in ``target``'s place, whole or not at all.

    The release was staged in a temporary folder, often on another filesystem; the
    earlier release was deleted first and the new one then copied in, so a full disk
    midway left half a release and none before it. Now the copy is built beside
    ``target`` and swapped in (:func:`converters.folders.write_folder`).

    Raises:
        OSError: Not placed (a full disk, a quota), naming the file not written;
            ``target`` is as it was.
    """

    def build(folder: Path) -> None:  # file by file, to stop at the first that fails
        folder.mkdir()
        for source in sorted(release_dir.rglob("*")):
            copy = folder / source.relative_to(release_dir)
            if source.is_dir():
                copy.mkdir()
            else:
                shutil.copyfile(source, copy)

    write_folder(target, build, CARD)


def trained_on(runs: list[Path], data_yaml: Path, released_before: dict | None, imgsz: int) -> dict:
    """The card's record of the images the model was trained on (:mod:`detection.splits`):
    the train split of the data it is released with and every run's own record, or what
    the card of a model released again records; with the scale it learnt defects at
    (:func:`detection.splits.field_of_view`: that train split at ``imgsz``).

    ``complete`` is False where a run has no record of its own (a run trained before
    runs kept one), or one that started from weights whose training is not known.
    """
    images, _ = split_images(data_yaml, "train")
    field = field_of_view(images, imgsz)
    if released_before and released_before["data"].get("trained_on"):
        return {**released_before["data"]["trained_on"], "field_of_view": field}
    digests = training_digests(images)
    complete = released_before is None
    for run in [] if released_before else runs:
        record = training_record(run / "best.pt")
        complete = complete and record is not None and record.complete
        digests |= record.digests if record else set()
    return {
        "images": len(digests),
        "complete": complete,
        "field_of_view": field,
        "images_sha256": sorted(digests),
    }


def _trained_on_note(trained_on: dict | None) -> str:
    if not trained_on:
        return ""
    recorded = (
        f"Its {trained_on['images']} distinct training images are"
        if trained_on["complete"]
        else f"{trained_on['images']} of its training images (not those of weights it "
        "started from) are"
    )
    field = trained_on.get("field_of_view")
    scale = (
        f" It learnt defects on images of a median {field['width']}x{field['height']} pixels "
        f"drawn at {field['imgsz']} px: `predict` and `evaluate` say which images they draw "
        "at another scale, and the option that brings them back (`--tile` for a strip, "
        "`--imgsz` for small crops)."
        if field
        else ""
    )
    return (
        f" {recorded} recorded by digest in card.json (`trained_on`): `defects evaluate` "
        "and `compare` say how many of the images they score it on are among them." + scale
    )


def _timed_note(card: dict) -> str:
    """When the throughput was timed again after the release, with the same weights and
    exports (cards released before it recorded no date: timed with the release)."""
    timed = card["throughput"].get("timed")
    if timed is None or timed == card["released"]:
        return ""
    return f" (timed again on {timed}, the same weights and exports)"


def _threads_note(throughput: dict) -> str:
    """On how many threads the paths ran (cards released before it recorded none)."""
    threads = throughput.get("threads")
    if not threads:
        return ""
    shipped = throughput["images_per_second"][_AS_SHIPPED]
    return (
        f" on {threads['every_path']} threads, as every path here ({shipped} images/s as "
        f"ultralytics ships, on its own {threads['ultralytics_as_shipped']})"
    )


def _ratio(over_ultralytics: float | None) -> str:
    """A throughput ratio as the card prints it: two decimals, or n/a when not timed."""
    return "n/a" if over_ultralytics is None else f"{over_ultralytics:.2f}x"


def _int8_lines(int8: dict, throughput: dict) -> list[str]:
    scores = int8["pycocotools"]
    drop = int8["mAP50_below_fp32"]
    measured = (
        f"mAP50 {scores['mAP50']:.4f} ({abs(drop):.4f} {'below' if drop >= 0 else 'above'} "
        f"fp32's), mAP50:95 {scores['mAP50-95']:.4f}"
    )
    if not int8["onnx"]:
        return [
            f"Not shipped: the int8 export ({measured}) lost more than {int8['tolerance']} mAP50."
        ]
    name = "onnx_int8_batch32"
    return [
        f"int8 (`{int8['onnx']}`, `--backend onnx-int8`; calibrated on {int8['calibration']}):"
        f" {throughput['images_per_second'][name]} images/s "
        f"({_ratio(throughput['over_ultralytics'][name])} ultralytics), {measured}. Every layer "
        "but the head's output layers is int8, and the model takes the uint8 pixels."
    ]


def _tta_lines(card: dict, evaluation: dict) -> list[str]:
    """The card's flip TTA figures and speed (cards released before TTA have none)."""
    tta = card.get("tta")
    if not tta:
        return []
    plain = evaluation["pycocotools"]
    speed = card["throughput"]["over_ultralytics"]
    lines = [
        "## With flip test-time augmentation (`--tta`)",
        "",
        f"Each image and its {len(tta['settings']['flips']) - 1} mirror images, the "
        f"detections fused by weighted boxes fusion at IoU {tta['settings']['fusion_iou']} "
        "(chosen on the train split, docs/benchmarks.md); four times the model's work. "
        f"Reproduce: `{tta['command']}`.",
        "",
        "| model | mAP50 | mAP50:95 | throughput against ultralytics (no TTA) |",
        "|---|---:|---:|---:|",
        f"| fp32, no TTA | {plain['mAP50']:.4f} | {plain['mAP50-95']:.4f} | "
        f"{_ratio(speed['onnx_fp32_batch32'])} |",
    ]
    for name, scores in tta["pycocotools"].items():
        lines.append(
            f"| {name.removeprefix('onnx_')}, TTA | {scores['mAP50']:.4f} | "
            f"{scores['mAP50-95']:.4f} | {_ratio(speed.get(f'{name}_batch32_tta'))} |"
        )
    points = tta.get("operating_points", {}).get("per_class", {})
    if points:
        lines += [
            "",
            "Operating points with TTA (fused scores want their own), chosen on the train "
            "split and measured on val; `--tta --conf best-f1` applies them: "
            + ", ".join(
                f"{name} {_operating_point(point)}"
                for name, point in points.items()
                if point.get("confidence") is not None
            )
            + " (confidence, then precision / recall on val)."
            + _images_flagged(tta["operating_points"].get("images")),
        ]
    return [*lines, ""]


def _overlapping_note(without: dict | None) -> str:
    """What the val figures owe to val images that overlap training ones (a card released
    before this was measured says nothing)."""
    if without is None:
        return ""
    if not without["images"]:
        return " No val image overlaps a training image (`review --near-duplicates`)."
    rest = without["pycocotools"]
    return (
        f" {without['images']} of the {without['of']} val images overlap a training image "
        f"(crops of one picture, {without['pairs']} pairs: `review --near-duplicates`); on "
        f"the other {without['of'] - without['images']} it scores mAP50 {rest['mAP50']:.4f}, "
        f"mAP50:95 {rest['mAP50-95']:.4f} (the command above with `--unseen`). `convert "
        "--keep-overlaps` makes a split without them."
    )


def _images_flagged(images: dict | None) -> str:
    """A sentence on the val images the operating points flag (any detection kept)."""
    if not images:
        return ""
    from detection.screening import format_share

    missed = ", ".join(f"{name} {n}" for name, n in images["missed_holding"].items() if n)
    good = images["without_defects"]
    return (
        f" At them, the val images with defects flagged (any detection kept): "
        f"{format_share(images['with_defects'])} (95% Wilson interval)"
        + (f"; the missed hold {missed}" if missed else "")
        + (
            f"; defect-free images flagged: {format_share(good)}."
            if good["of"]
            else "; val holds no defect-free image, so false alarms on good steel are not measured."
        )
    )


def _operating_point(point: dict) -> str:
    """A class's confidence, then the precision / recall it gives on val (recall n/a
    for a class without val boxes)."""
    return f"{point['confidence']:.2f} ({_fmt(point['precision'], 2)} / {_fmt(point['recall'], 2)})"


def _origin(stages: list[dict]) -> str:
    """How a model began, as far as its recorded history shows, its teachers' too:
    :data:`FROM_SCRATCH` only where every history starts from a definition (``.yaml``);
    weights whose own stages the card lacks (a ``.pt`` not released here) may hide
    pretrained weights, and the card says so."""
    if not stages[0]["start"].endswith(".yaml"):
        return f"trained from `{_first_start(stages)}`, weights of unrecorded origin"
    for stage in stages:
        taught = stage.get("teacher_stages")
        if stage.get("teacher") and not (taught and _origin(taught) == FROM_SCRATCH):
            return (
                f"trained from scratch but taught by `{stage['teacher']}`, a teacher of "
                "unrecorded origin"
            )
    return FROM_SCRATCH


def _first_start(stages: list[dict]) -> str:
    """Where the first recorded stage began: its ``--model`` as the command gives it."""
    found = re.search(r"--model (\S+)", stages[0]["command"])
    return found.group(1) if found else stages[0]["start"]


def _stage_row(label: str, stage: dict) -> str:
    """One row of a card's table of training stages."""
    start = stage["start"] + (f", taught by `{stage['teacher']}`" if stage.get("teacher") else "")
    # False: stopped before its end (killed, or released while still training).
    stopped = " (stopped before its end)" if stage.get("complete") is False else ""
    return (
        f"| {label} | `{stage['command']}` | {start} | {stage['epochs']}{stopped} | "
        f"{stage['wall_time_h']:.2f} h | {stage.get('hardware') or stage['device']} |"
    )


def card_markdown(card: dict) -> str:
    """The model card for people: the same facts as ``card.json``."""
    evaluation, data, model = card["evaluation"], card["data"], card["model"]
    coco, ultra = evaluation["pycocotools"], evaluation["ultralytics"]
    hardware = card["hardware"]
    lines = [
        f"# Model card: `{card['name']}`",
        "",
        f"A {model['architecture'].removesuffix('.yaml')} detector"
        # A card made before the release recorded it: its model took colour images.
        + (" of grey images (one input channel)" if model.get("channels", 3) == 1 else "")
        + f" ({model['parameters']:,} parameters, {model['imgsz']} px) for the "
        f"{len(model['classes'])} surface defect "
        f"classes of {data['dataset']} ({', '.join(model['classes'])}), "
        + _origin(card["stages"])
        + f". Released {card['released']}. Use it by name: `--weights {card['name']}`.",
        "",
        "## Figures (val split, pycocotools)",
        "",
        f"mAP50 **{coco['mAP50']:.4f}**, mAP50:95 **{coco['mAP50-95']:.4f}** on "
        f"{evaluation['images']} val images (ultralytics' own val: {ultra['mAP50']:.4f} / "
        f"{ultra['mAP50-95']:.4f}). Reproduce: `{evaluation['command']}`"
        + (
            "; `tests/test_release.py` re-evaluates and must match to 1e-6."
            if card["name"] == TESTED_RELEASE
            else " (the evaluation is deterministic: the same figures to 1e-6)."
        )
        + _overlapping_note(evaluation.get("without_overlapping")),
        *(
            ["", f"**Classes not scored:** {unscored}."]
            if (unscored := figures_unscored(coco["per_class"], "val"))
            else []
        ),
        "",
        "| class | AP50 | AP50:95 | ultralytics AP50 | ultralytics AP50:95 | operating point: "
        "conf (P / R on val) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    points = evaluation.get("operating_points", {}).get("per_class", {})
    for cls, figures in coco["per_class"].items():
        theirs = ultra["per_class"].get(cls, {})
        point = points.get(cls, {})
        lines.append(
            f"| {cls} | {_fmt(figures['ap50'])} | {_fmt(figures['ap50_95'])} | "
            f"{_fmt(theirs.get('ap50'))} | {_fmt(theirs.get('ap50_95'))} "
            + (
                f"| {_operating_point(point)} |"
                if point.get("confidence") is not None
                else "| n/a |"
            )
        )
    if points:
        chosen = evaluation["operating_points"]
        at_iou = (
            f", at NMS IoU {chosen['nms_iou']} (of {', '.join(chosen['train_macro_f1_by_nms_iou'])}"
            f", the best macro F1 on train; val macro F1 {chosen['val_macro_f1']:.3f})"
            if "train_macro_f1_by_nms_iou" in chosen
            else ""
        )
        lines += [
            "",
            "Operating points: each class's confidence of best F1, chosen on the train split "
            f"and measured on val{at_iou}; `defects predict IMAGES --weights "
            f"{card['name']} --conf best-f1` keeps each class's detections at its own "
            "(`make bench-operating-points`: docs/benchmarks.md)."
            + _images_flagged(chosen.get("images")),
        ]
    lines += [
        "",
        "## Data and split",
        "",
        f"{data['dataset']} ({data['layout']}), seeded stratified split {data['split_ratios']}"
        f" with seed {data['seed']}: {data['counts']} images. `{data['convert']}`.",
        f"Split fingerprint (classes, seed, every image's split; the same wherever the data "
        f"lies): `{data['split_sha256']}`. Manifest as converted for this release: "
        f"`{data['manifest_sha256']}`. Val ground truth: `{data['val_ground_truth_sha256']}`."
        + (
            f" Ground truth edited: {ground_truth_edited_sentence(edited)}."
            if (edited := data.get("val_ground_truth_edited"))
            else ""
        )
        + _trained_on_note(data.get("trained_on")),
        "",
        "## Training stages",
        "",
        "| stage | command | start | epochs | wall time | device |",
        "|---|---|---|---:|---:|---|",
    ]
    unrecorded = []
    for index, stage in enumerate(card["stages"], 1):
        # A teacher is trained before the stage it teaches; its rows come first.
        for number, taught in enumerate(stage.get("teacher_stages") or [], 1):
            lines.append(_stage_row(f"{index}'s teacher, {number}", taught))
        if stage.get("teacher") and stage.get("teacher_stages") is None:
            unrecorded.append(f"stage {index}'s teacher (`{stage['teacher']}`)")
        lines.append(_stage_row(str(index), stage))
    if unrecorded:
        lines += [
            "",
            f"Not recorded: how {', '.join(unrecorded)} was trained; its run folder was "
            "not on the release machine.",
        ]
    throughput = card["throughput"]
    per_second = throughput["images_per_second"]
    lines += [
        "",
        f"Released (evaluated, exported, timed) on: {hardware['cpu']}, {hardware['cores']} "
        f"cores, {hardware['memory_gib']} GiB"
        + (f", {hardware['gpu']}" if hardware["gpu"] else ", no GPU")
        + VNNI_NOTES.get(hardware.get("vnni"), "")
        + ".",
        "",
        "## CPU throughput",
        "",
        f"End to end (decode, preprocess, model, NMS) on the {throughput['images']} val images "
        f"at {throughput['imgsz']} px, batches of 32, on the release machine"
        + _timed_note(card)
        + ", side by side: "
        f"ultralytics' PyTorch predict {per_second['ultralytics_batch32']} images/s"
        + _threads_note(throughput)
        + f"; ONNX Runtime fp32 (`--backend onnx`) {per_second['onnx_fp32_batch32']} images/s "
        f"({_ratio(throughput['over_ultralytics']['onnx_fp32_batch32'])}).",
        "",
        *_int8_lines(card["int8"], throughput),
        "",
        *_tta_lines(card, evaluation),
        "## Known weaknesses",
        "",
    ]
    if card["weaknesses"]:
        # The recall here is at the best-F1 confidence of the evaluation itself (chosen on
        # val, at the evaluation's NMS IoU), not at the table's operating point (chosen on
        # train, at its own NMS IoU): the two confidences and recalls differ, and a reader
        # comparing them must be told why.
        at_nms = evaluation.get("prediction_settings", {}).get("nms_iou")
        point_nms = evaluation.get("operating_points", {}).get("nms_iou")
        lines += [
            "Each class's recall below is at its best-F1 confidence on val itself"
            + (f", at the evaluation's NMS IoU {at_nms}" if at_nms is not None else "")
            + (
                ": not the table's operating point, chosen on train"
                + (f" at NMS IoU {point_nms}" if point_nms is not None else "")
                if points
                else ""
            )
            + ". Its examples are drawn at that confidence.",
            "",
        ]
    for weak in card["weaknesses"]:
        lines.append(
            f"- **{weak['class']}**: AP50 {weak['ap50']:.3f}, AP50:95 {weak['ap50_95']:.3f}, "
            f"recall {_fmt(weak['recall_at_best_f1'])} at its best-F1 confidence "
            f"{_fmt(weak['best_f1_confidence'])}. Its most-missed val images "
            f"(boxes missed: {weak['missed_boxes_in_examples']}; ground truth green, "
            "predictions red):"
        )
        lines += [f"  ![{weak['class']}]({path})" for path in weak["examples"]]
    if {"crazing", "rolled-in_scale"} <= set(model["classes"]):
        lines += [
            "",
            "Fine textures (crazing, rolled-in scale) are where NEU-DET detectors, ours "
            "included, are weakest: their boxes are large, faint and loosely drawn, so IoU "
            "against the annotation varies more than for compact defects.",
        ]
    return "\n".join([*lines, ""])
