"""``defects evaluate``: pycocotools-exact per-class mAP reports.

Two ways in: a trained model and a converted dataset (predictions are made here at a
low confidence, 100 per image, then scored), or any detector's COCO results file and a
COCO ground-truth file. Beside the pycocotools numbers, the first way also runs
ultralytics' own validation and states the difference.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from converters.coco import from_coco, to_coco
from converters.convert import edited_labels, edited_since_conversion
from converters.errors import AnnotationError, ConversionError
from converters.files import read_json, read_text
from converters.model import SPLITS, ImageAnnotation
from converters.yolo import data_yaml_channels, data_yaml_names, from_yolo, from_yolo_results
from detection import offline  # noqa: F401  (before ultralytics)
from detection.cocoeval import evaluate
from detection.console import ultralytics_off_stdout
from detection.predict import (
    BORDER,
    EVALUATION_CONF,
    EVALUATION_MAX_DET,
    FLIPS,
    PREDICTIONS_MARKER,
    TTA_FUSION_IOU,
    Detections,
    Detector,
    OnnxDetector,
    coco_results,
    compute_device,
    cpu_info,
    detect_images,
    load_detector,
    off_scale_note,
    scales_of,
    tile_plan,
    tiled_in,
)
from detection.report import images_unanswered, past_the_image, results_left_out, write_report
from detection.splits import (
    recorded_field_of_view,
    seen_in_training,
    split_images,
    unseen_images,
)
from detection.threads import cpu_threads
from detection.train import resolve_data
from detection.weights import (
    NMS_IOU,
    TILE_OVERLAP,
    check_weights,
    is_released,
    load_yolo,
    model_channels,
    resolve_weights,
    sha256,
    tile_setting,
    weights_name,
)

WHY_DIFFERENT = (
    "Why they differ: pycocotools matches detections to ground truth greedily in score "
    "order per image and category, keeps at most 100 detections per image, and averages "
    "precision sampled at 101 fixed recall points; ultralytics' `ap_per_class` matches "
    "by IoU rank, keeps up to 300 detections per image, and integrates the interpolated "
    "precision envelope over recall (trapezoid over 101 points), after letterboxed "
    "rectangular batches at NMS IoU 0.7. Either can come out higher; the pycocotools "
    "numbers are the ones comparable to published COCO-style results."
)


def category_map(model_names: dict[int, str], gt: dict) -> dict[int, int]:
    """Model class index to ground-truth category id, by name.

    Raises:
        ConversionError: A model class has no category of the same name.
    """
    by_name = {c["name"]: c["id"] for c in gt["categories"]}
    missing = [n for n in model_names.values() if n not in by_name]
    if missing:
        raise ConversionError(
            f"the model's classes {missing} are not in the ground truth's "
            f"categories {sorted(by_name)}"
        )
    return {i: by_name[n] for i, n in model_names.items()}


def classes_not_in_model(gt: dict, model_names: dict[int, str]) -> dict[str, int]:
    """The ground truth's categories with boxes that the model has no class of, each with
    its number of boxes: the model cannot find them, so each is scored AP 0. Crowd
    regions are no boxes here: pycocotools ignores them (a class of crowds alone has no
    AP at all)."""
    known = set(model_names.values())
    boxes = Counter(a["category_id"] for a in gt["annotations"] if not a.get("iscrowd"))
    return {
        c["name"]: boxes[c["id"]]
        for c in gt["categories"]
        if c["name"] not in known and boxes[c["id"]]
    }


def predict_coco(
    detector: Detector,
    gt: dict,
    image_dir: Path,
    conf: float = EVALUATION_CONF,
    max_det: int = EVALUATION_MAX_DET,
    batch: int = 16,
    progress: Callable[[int, int], None] | None = None,
    iou: float = NMS_IOU,
) -> list[dict]:
    """Runs a detector (:mod:`detection.predict`'s PyTorch or ONNX one) on every
    ground-truth image and returns COCO results (``iou``: the NMS IoU)."""
    by_iou = predict_coco_at_ious(detector, gt, image_dir, (iou,), conf, max_det, batch, progress)
    return by_iou[iou]


def predict_coco_at_ious(
    detector: Detector,
    gt: dict,
    image_dir: Path,
    ious: tuple[float, ...],
    conf: float = EVALUATION_CONF,
    max_det: int = EVALUATION_MAX_DET,
    batch: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> dict[float, list[dict]]:
    """:func:`predict_coco` at each NMS IoU of ``ious``, each image read once. The ONNX
    detector runs its model once for all of them (:meth:`OnnxDetector.at_ious`); any
    other runs once per IoU."""

    def detect(images: list, **options: float) -> list[dict[float, Detections]]:
        if isinstance(detector, OnnxDetector):
            return detector.at_ious(images, ious, **options)
        found = {iou: detector(images, iou=iou, **options) for iou in ious}
        return [{iou: found[iou][i] for iou in ious} for i in range(len(images))]

    to_category = category_map(detector.names, gt)
    results: dict[float, list[dict]] = {iou: [] for iou in ious}
    entries = sorted(gt["images"], key=lambda im: im["id"])
    paths = [image_dir / entry["file_name"] for entry in entries]
    tiled = tiled_in(detector)
    found = detect_images(detect, paths, batch, progress, tiled, conf=conf, max_det=max_det)
    for entry, read in zip(entries, found):
        if read.pixels is None:
            raise ConversionError(f"{read.path}: ground-truth image not read: {read.problem}")
        height, width = read.pixels.shape[:2]
        truth = (entry.get("width", width), entry.get("height", height))
        check_ground_truth_size(read.path, (width, height), truth)
        for iou, detections in read.detections.items():
            results[iou] += coco_results(detections, entry["id"], to_category)
    return results


def check_ground_truth_size(path: Path, size: tuple[int, int], truth: tuple[int, int]) -> None:
    """Refuses an image whose size (width, height) is not its ground truth's.

    Predictions come in the image's pixels, the boxes in the ground truth's: scored or
    shown together they would miss each other (a folder re-saved at another size after
    conversion), and mAP would fall with no word of why.

    Raises:
        ConversionError: Naming the image and both sizes.
    """
    if tuple(size) != tuple(truth):
        raise ConversionError(
            f"{path}: the image is {size[0]}x{size[1]} pixels, but its ground truth gives "
            f"{truth[0]}x{truth[1]}: the image was changed after its annotations were "
            "written; convert the dataset again"
        )


def ultralytics_cannot_score(model_names: dict, data_yaml: Path) -> str | None:
    """Why ultralytics' val cannot score these weights on this dataset, or None: it
    matches a detection's class to a box's by number, so weights that number the data's
    classes otherwise (a dataset converted with ``--classes`` in another order) would
    have each class scored against another's boxes: 0.134 for 0.500 on a synthetic set
    whose classes were listed backwards. pycocotools here matches classes by name."""
    listed = data_yaml_names(data_yaml)
    if listed is None:
        return None
    names = dict(enumerate(listed))
    differ = [i for i, name in model_names.items() if names.get(int(i)) != name]
    if not differ:
        return None
    first = differ[0]
    return (
        "not run: it matches classes by number, and these weights number "
        f"them otherwise than {Path(data_yaml).name} (class {first}: {model_names[first]!r} "
        f"in the weights, {names.get(int(first))!r} in the data), so it would score each "
        "class against another's boxes; the pycocotools figures match classes by name"
    )


def ultralytics_val(
    weights: Path,
    data_yaml: Path,
    split: str,
    imgsz: int,
    device: str | None = None,
    iou: float = NMS_IOU,
) -> dict:
    """Ultralytics' own metrics for the same weights and split (``iou``: the NMS IoU).

    Its val reads the images in the channels the data.yaml gives (3 unless it says
    ``channels: 1``), and a model taking the other count failed on them with a
    traceback: it is given a copy of the data.yaml with the model's count."""
    model = load_yolo(weights, "detect")
    with tempfile.TemporaryDirectory() as tmp, ultralytics_off_stdout():
        metrics = model.val(
            data=str(_in_model_channels(data_yaml, split, model_channels(model), Path(tmp))),
            split=split,
            imgsz=imgsz,
            conf=EVALUATION_CONF,
            iou=iou,
            plots=False,
            device=device,
            project=tmp,
            name="val",
            verbose=False,
        )
    per_class = {
        model.names[int(i)]: {
            "ap50": float(metrics.box.ap50[j]),
            "ap50_95": float(metrics.box.ap[j]),
        }
        for j, i in enumerate(metrics.box.ap_class_index)
    }
    return {
        "mAP50": float(metrics.box.map50),
        "mAP50-95": float(metrics.box.map),
        "per_class": per_class,
        "settings": {"conf": EVALUATION_CONF, "iou": iou, "max_det": 300},
        "why_different": WHY_DIFFERENT,
    }


def _in_model_channels(data_yaml: Path, split: str, channels: int, folder: Path) -> Path:
    """``data_yaml``, or where it gives other channels than ``channels``, a copy in
    ``folder`` giving those, its folders as ultralytics resolved them."""
    import yaml

    if data_yaml_channels(data_yaml) == channels:
        return data_yaml
    _, data = split_images(data_yaml, split)
    copy = folder / "data.yaml"
    settings = {key: data[key] for key in ("train", "val", "test", "names") if data.get(key)}
    copy.write_text(yaml.safe_dump({**settings, "path": str(data["path"]), "channels": channels}))
    return copy


@dataclass(frozen=True)
class SplitTruth:
    """One split's ground truth, ready to score against.

    Attributes:
        data_yaml: The dataset's ``data.yaml`` (ultralytics' val reads it too).
        gt: COCO ground truth; its images' ``file_name`` are relative to ``image_dir``.
        image_dir: Where the split's images are.
        source: The COCO file it was read from, or ``None`` when it was read from the
            YOLO labels of a dataset that has none (:func:`yolo_split_truth`).
        ground_truth_edited: For a converter output whose label files and COCO file
            no longer agree, edited since the conversion: which was edited, which is read,
            how many label files differ, of how many, the first few, and the COCO file
            (:func:`_edited_truth`).
    """

    data_yaml: Path
    gt: dict
    image_dir: Path
    source: Path | None
    ground_truth_edited: dict | None = None


def split_ground_truth(data: Path, split: str) -> SplitTruth:
    """A dataset split's ground truth: the converter's COCO file
    (``annotations/instances_SPLIT.json``), or, for any other YOLO dataset (a Roboflow
    export, a team's own labels), its YOLO labels read as ultralytics reads them.

    Raises:
        ConversionError: No such split, a file that is not COCO ground truth, a label or
            image that cannot be read, or no images; the message names the file.
    """
    data_yaml = resolve_data(data)
    gt_path = data_yaml.parent / "annotations" / f"instances_{split}.json"
    if gt_path.is_file():
        gt = read_ground_truth(gt_path)
        truth = SplitTruth(data_yaml, gt, data_yaml.parent / "images" / split, gt_path)
        disagreeing = edited_labels(data_yaml.parent, split, gt)
        if disagreeing:
            truth = _edited_truth(truth, split, disagreeing)
    elif (data_yaml.parent / "manifest.json").is_file():  # our converter wrote every split
        raise ConversionError(
            f"{gt_path}: no ground truth for split '{split}' (--split; its splits: "
            f"{', '.join(_coco_splits(gt_path.parent)) or 'none'})"
        )
    else:
        truth = yolo_split_truth(data_yaml, split)
        _require_boxes(truth.gt, f"{data_yaml} (split '{split}')")
    if not truth.gt["images"]:
        raise ConversionError(f"{truth.source or data_yaml}: split '{split}' has no images")
    return truth


def _edited_truth(truth: SplitTruth, split: str, disagreeing: list[Path]) -> SplitTruth:
    """A converter output's split whose label files (``disagreeing``: those that differ)
    and COCO file no longer agree: the one edited since the conversion is the ground
    truth. Where the labels were (or both were, or an output too old to tell), they are,
    as ultralytics trains and validates on them; where only the COCO file was, it is, and
    ultralytics' own val and training read the labels without its edits."""
    root = truth.data_yaml.parent
    edited = edited_since_conversion(root, split)
    note = {
        "edited": sorted(edited) if edited is not None else None,
        "files": len(disagreeing),
        "of": len(truth.gt["images"]),
        "examples": [str(path.relative_to(root)) for path in disagreeing[:5]],
        "coco": str(truth.source),
    }
    if edited == {"annotations"}:
        return replace(truth, ground_truth_edited={**note, "read": "annotations"})
    # Read as ultralytics reads them, the images named as the COCO file names them
    # (results are matched by file name).
    labelled = yolo_split_truth(truth.data_yaml, split).gt
    images = [{**image, "file_name": Path(image["file_name"]).name} for image in labelled["images"]]
    return replace(
        truth,
        gt={**labelled, "images": images},
        source=None,
        ground_truth_edited={**note, "read": "labels"},
    )


def truth_named(truth: SplitTruth, split: str) -> Path | str:
    """What messages call a split's ground truth: its COCO file, or the dataset's split."""
    return truth.source or f"{truth.data_yaml} (split '{split}')"


def _coco_splits(annotations: Path) -> dict[str, Path]:
    """A converter output's COCO files by split name (``instances_<split>.json``), sorted."""
    files = sorted(annotations.glob("instances_*.json"))
    return {path.stem.removeprefix("instances_"): path for path in files}


def other_split_images(truth: SplitTruth, split: str) -> dict[str, list[str]]:
    """The file names of the dataset's images in each split other than ``split``: the
    converter's other COCO files, or the other splits a YOLO ``data.yaml`` lists. Results
    on them (a whole folder predicted, one split scored) are left out, not refused
    (:func:`read_results`)."""
    found: dict[str, list[str]] = {}
    coco_files = _coco_splits(truth.data_yaml.parent / "annotations")
    if coco_files:  # a converter output's, named as the split scored is
        for other, path in coco_files.items():
            if other != split:
                images = read_json(path, "COCO ground truth")
                images = images.get("images", []) if isinstance(images, dict) else []
                found[other] = [
                    str(im.get("file_name", "")) for im in images if isinstance(im, dict)
                ]
        return found
    for other in SPLITS:
        if other != split:
            try:
                images, _ = split_images(truth.data_yaml, other)
            except ConversionError:
                continue  # no such split
            found[other] = [str(image) for image in images]
    return found


def _split_provenance(truth: SplitTruth, split: str) -> dict:
    """Where a report's ground truth came from: the dataset, its manifest's SHA-256 (a
    converter output) and the COCO file, or the YOLO labels, read."""
    manifest = truth.data_yaml.parent / "manifest.json"
    return {
        "data": str(truth.data_yaml),
        "manifest_sha256": sha256(manifest) if manifest.is_file() else None,
        "ground_truth": str(truth.source) if truth.source else f"YOLO labels of {split}",
        **({"ground_truth_edited": truth.ground_truth_edited} if truth.ground_truth_edited else {}),
    }


def yolo_split_truth(data_yaml: Path, split: str) -> SplitTruth:
    """The ground truth of a YOLO dataset's split: the images its ``data.yaml`` lists
    (folders, searched at any depth, or ``.txt`` lists of images), found as ultralytics
    finds them (``path``, and its ``../`` quirk of Roboflow's exports, by ultralytics'
    own ``check_det_dataset``), each with its labels (:func:`converters.yolo.from_yolo`).

    Raises:
        ConversionError: A ``data.yaml`` ultralytics refuses, no such split, or a label
            or image that cannot be read; names the file.
    """
    images, data = split_images(data_yaml, split)
    classes = [data["names"][i] for i in sorted(data["names"])]
    root = Path(data["path"])
    try:
        dataset = from_yolo(images, classes, root, split)
    except AnnotationError as error:
        raise ConversionError(str(error)) from None
    ids = {image.name: number for number, image in enumerate(dataset.images, 1)}
    return SplitTruth(data_yaml, to_coco(dataset.images, classes, ids), root, None)


def yolo_dataset_images(data: Path) -> tuple[list[str], list[ImageAnnotation]]:
    """Every split of a YOLO dataset (its ``data.yaml``'s train, val and test), with the
    ground truth of its labels (:func:`yolo_split_truth`): its classes and images.

    Raises:
        ConversionError: As :func:`yolo_split_truth`, or no images in any split.
    """
    import yaml

    data_yaml = resolve_data(data)
    listed = yaml.safe_load(data_yaml.read_text(errors="replace"))
    listed = listed if isinstance(listed, dict) else {}
    classes: list[str] = []
    images: list[ImageAnnotation] = []
    for split in SPLITS:
        if listed.get(split) or (split == "val" and listed.get("validation")):
            truth = yolo_split_truth(data_yaml, split)
            classes = [category["name"] for category in truth.gt["categories"]]
            images += from_coco(truth.gt, truth.image_dir, split).images
    if not images:
        raise ConversionError(f"{data_yaml}: no images in its train, val or test")
    return classes, images


def predict_split(
    weights: Path | str,
    gt: dict,
    image_dir: Path,
    imgsz: int | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    backend: str = "torch",
    tta: bool = False,
    iou: float = NMS_IOU,
    tile: int | None = None,
    tile_overlap: float = TILE_OVERLAP,
) -> SplitPrediction:
    """A detector's predictions on every image of ``gt``, as COCO results.

    Args:
        backend: ``torch`` (ultralytics' PyTorch predict), ``onnx`` or ``onnx-int8``
            (the exports beside the weights, as :func:`detection.predict.load_detector`).
        tta: Flip test-time augmentation (:class:`detection.predict.FlipTTADetector`).
        iou: The NMS IoU.
        tile: Sliced inference (:class:`detection.predict.TiledDetector`): images larger
            than ``tile`` pixels cut into tiles overlapping by ``tile_overlap``.

    Returns:
        The detector (its classes checked against ``gt``'s), the results, and how fast
        they were made once the detector was loaded (:func:`prediction_speed`).
    """
    classes = [category["name"] for category in gt["categories"]]
    detector = load_detector(
        weights,
        backend,
        imgsz,
        device,
        classes=classes,
        tta=tta,
        tile=tile,
        tile_overlap=tile_overlap,
    )
    started = time.perf_counter()
    results = predict_coco(detector, gt, image_dir, progress=progress, iou=iou)
    seconds = time.perf_counter() - started
    return SplitPrediction(
        detector, results, prediction_speed(detector, len(gt["images"]), seconds)
    )


class SplitPrediction(NamedTuple):
    """A detector's predictions on a split (:func:`predict_split`), and how fast."""

    detector: Detector
    results: list[dict]
    speed: dict


def prediction_speed(detector: Detector, images: int, seconds: float) -> dict:
    """How fast ``detector`` predicted ``images`` images in ``seconds`` here, end to end
    (reading, letterbox, model, NMS), at what image size (the time grows with its
    square), and on what: the device, and on the CPU its threads and model. Timed once
    beside an evaluation, not a benchmark."""
    device = compute_device(detector)
    speed = {
        "images": images,
        "seconds": round(seconds, 3),
        "images_per_second": images / seconds if seconds > 0 else None,
        "imgsz": detector.imgsz,
        "device": device,
    }
    if device == "cpu":
        speed |= {"threads": cpu_threads(), "cpu": cpu_info("model name")}
    else:
        import torch

        speed["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return speed


def prediction_settings(
    tta: bool,
    nms_iou: float = NMS_IOU,
    tile: int | None = None,
    tile_overlap: float = TILE_OVERLAP,
) -> dict:
    """How an evaluation's predictions were made, as its report records them."""
    settings: dict = {
        "conf": EVALUATION_CONF,
        "max_det": EVALUATION_MAX_DET,
        "nms_iou": nms_iou,
        "border": BORDER,
    }
    if tta:
        settings["tta"] = {"flips": list(FLIPS), "fusion": "wbf", "fusion_iou": TTA_FUSION_IOU}
    if tile:
        settings["tile"] = tile_setting(tile, tile_overlap)
    return settings


def unseen_only(truth: SplitTruth, split: str, weights: list[Path]) -> tuple[SplitTruth, dict]:
    """``truth`` less the images any of ``weights`` was trained on or that overlap one
    it was trained on (:func:`detection.splits.unseen_images`), and what was left out
    (``images`` kept ``of``, ``trained_on`` and ``overlapping``, as image and training
    image, by name; ``incomplete``: the weights whose record may miss images).

    Raises:
        ConversionError: Weights without a training record, or no image left; names them.
    """
    gt = truth.gt
    images = [truth.image_dir / image["file_name"] for image in gt["images"]]
    found = unseen_images([resolve_weights(w) for w in weights], images, truth.data_yaml)
    if not found["kept"]:
        raise ConversionError(
            f"--unseen: each of the {len(images)} images of {split} was trained on by "
            + (
                "the model, or overlaps an image it"
                if len(weights) == 1
                else "a model compared, or overlaps an image one"
            )
            + " was trained on: none is left to score"
        )
    kept = {gt["images"][i]["id"] for i in found["kept"]}
    subset = {
        **gt,
        "images": [image for image in gt["images"] if image["id"] in kept],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in kept],
    }
    left_out = {
        "images": len(found["kept"]),
        "of": len(images),
        "trained_on": [gt["images"][i]["file_name"] for i in found["trained_on"]],
        "overlapping": [
            {"image": scored, "training_image": training} for scored, training in found["pairs"]
        ],
        "incomplete": found["incomplete"],
    }
    return replace(truth, gt=subset), left_out


def evaluate_model(
    weights: Path,
    data: Path,
    out: Path,
    split: str = "val",
    imgsz: int | None = None,
    device: str | None = None,
    with_ultralytics: bool = True,
    progress: Callable[[int, int], None] | None = None,
    replicates: int = 1000,
    seed: int = 0,
    backend: str = "torch",
    tta: bool = False,
    nms_iou: float = NMS_IOU,
    tile: int | None = None,
    tile_overlap: float = TILE_OVERLAP,
    notice: Callable[[str], None] | None = None,
    unseen: bool = False,
) -> dict:
    """Predicts on a converted split, scores with pycocotools, writes the report (with
    ``replicates`` bootstrap replicates for its intervals, seeded by ``seed``).
    ``unseen`` scores only the images the model was not trained on nor overlap one it
    was trained on (:func:`unseen_only`); ultralytics' val, which scores the whole
    split, is then not run.
    ``notice`` is told what the tiles will cost before the work
    (:func:`detection.predict.tile_plan`).

    ``backend`` picks the file scored: the ``.pt`` (``torch``) or its ``onnx`` or
    ``onnx-int8`` export, the artifact that is deployed. ``tta`` scores the predictions
    of :class:`detection.predict.FlipTTADetector`; ``nms_iou`` is the NMS IoU of the
    predictions and of ultralytics' own val, which runs the ``.pt`` without test-time
    augmentation and is only put beside the plain ``torch`` figures. ``tile`` scores
    sliced inference (:class:`detection.predict.TiledDetector`), as ``predict --tile``
    makes it.
    """
    weights = check_weights(weights)  # before a YOLO dataset's check imports ultralytics
    truth = split_ground_truth(data, split)
    left_out = None
    if unseen:
        truth, left_out = unseen_only(truth, split, [weights])
    data_yaml, gt = truth.data_yaml, truth.gt
    images = [truth.image_dir / image["file_name"] for image in gt["images"]]
    plan = tile_plan(images, tile, tile_overlap)
    if plan and notice:
        notice(plan)
    detector, results, speed = predict_split(
        weights,
        gt,
        truth.image_dir,
        imgsz,
        device,
        progress,
        backend,
        tta,
        nms_iou,
        tile,
        tile_overlap,
    )
    imgsz = detector.imgsz
    scored = evaluate(gt, results)
    meta = {
        "name": weights_name(weights),
        "weights": str(detector.path.resolve()),
        "weights_sha256": sha256(detector.path),
        "backend": backend,
        **_split_provenance(truth, split),
        "split": split,
        "imgsz": imgsz,
        "images": len(gt["images"]),
        **({"unseen_only": left_out} if left_out else {}),
        "prediction_settings": prediction_settings(tta, nms_iou, tile, tile_overlap),
        "speed": speed,
        "seen_in_training": _seen_and_unseen(weights, truth, results),
        "off_scale": _off_scale(weights, imgsz, truth, tile),
    }
    if unknown := classes_not_in_model(gt, detector.names):
        meta["classes_not_in_model"] = unknown
    with_ultralytics = with_ultralytics and backend == "torch" and not tta and not tile
    not_run = ultralytics_cannot_score(detector.names, data_yaml) if with_ultralytics else None
    if with_ultralytics and left_out:
        not_run = (
            "not run: it scores the whole split, and --unseen scores the images the model "
            "was not trained on alone"
        )
    if not_run:
        meta["ultralytics_not_run"] = not_run
        with_ultralytics = False
    ultra = (
        ultralytics_val(weights, data_yaml, split, imgsz, device, nms_iou)
        if with_ultralytics
        else None
    )
    return write_report(
        Path(out), scored, gt, results, meta, ultra, truth.image_dir, replicates, seed
    )


def _off_scale(weights: Path, imgsz: int, truth: SplitTruth, tile: int | None) -> dict | None:
    """:func:`detection.predict.off_scale_note` of the split's images, as predicted at
    ``imgsz`` (in ``tile`` pixel tiles)."""
    field = recorded_field_of_view(weights)
    if not field:
        return None
    sizes = [
        (truth.image_dir / image["file_name"], image["width"], image["height"])
        for image in truth.gt["images"]
    ]
    return off_scale_note(field, scales_of(field, sizes, imgsz, tile), imgsz)


def _seen_and_unseen(weights: Path, truth: SplitTruth, results: list[dict]) -> dict:
    """:func:`detection.splits.seen_in_training` for the split, with the figures on the
    images the model was not trained on (``unseen``) where it was trained on some."""
    images = truth.gt["images"]
    seen, indices = seen_in_training(
        weights, [truth.image_dir / image["file_name"] for image in images]
    )
    trained_on = {images[i]["id"] for i in indices}
    if not trained_on:
        return seen
    unseen = [image for image in images if image["id"] not in trained_on]
    unseen_gt = {
        **truth.gt,
        "images": unseen,
        "annotations": [a for a in truth.gt["annotations"] if a["image_id"] not in trained_on],
    }
    if any(not a.get("iscrowd") for a in unseen_gt["annotations"]):
        unseen_results = [r for r in results if r["image_id"] not in trained_on]
        stats = evaluate(unseen_gt, unseen_results, sizes=False).stats
        seen["unseen"] = {
            "images": len(unseen),
            "mAP50": stats["AP50"],
            "mAP50-95": stats["AP50:95"],
        }
    return seen


def best_f1_confidences(
    source: str | Path,
    weights: Path | str,
    tta: bool = False,
    nms_iou: float | None = None,
    imgsz: int | None = None,
) -> tuple[dict[str, float], float, int | None]:
    """Per-class operating points for ``weights``: each class's confidence of best F1, as
    an evaluation of these same weights found it, and the NMS IoU and image size it
    predicted at.

    Args:
        source: ``best-f1`` (a released model's card, ``models/NAME/card.json``: chosen on
            the train split, with and without flip TTA) or a ``report.json`` written by
            ``defects evaluate`` (chosen on its split: ``--split train`` for thresholds
            val has not seen).
        weights: The weights the thresholds are for; the evaluation must have scored
            them (their ``.pt`` or its ONNX exports, by SHA-256).
        tta: Whether the predictions will use flip TTA; the evaluation must have too
            (fused scores are distributed differently from plain ones).
        nms_iou: The predictions' NMS IoU, if the user chose one: the evaluation's must
            be the same (it decides which overlapping boxes survive, so the precision at
            each confidence). ``None``: the evaluation's (a card's operating points have
            their own, chosen on train).
        imgsz: The predictions' image size, if the user chose one: the evaluation's must
            be the same (the scale a defect is drawn at moves its scores). ``None``: the
            evaluation's (a card's: the model's own).

    Returns:
        ``{class name: confidence}`` (a class the evaluation never detected has none), and
        the NMS IoU and image size to predict at (``None``: a report from before reports
        recorded it, so the model's own).

    Raises:
        ConversionError: No card, not a report, a card from before operating points, or
            an evaluation of other weights; the message names the file.
    """
    path = resolve_weights(weights)
    if str(source) == "best-f1":
        card_path = path.parent / "card.json"
        if not is_released(path) or not card_path.is_file():
            raise ConversionError(
                f"--conf best-f1: {weights} is not a released model with a card; evaluate it "
                f"(defects evaluate --weights {weights} --data DATA --out REPORT) and give "
                "--conf REPORT/report.json"
            )
        card = read_json(card_path, "model card")
        # The card's TTA section has its own: fused scores are distributed differently.
        section = (card.get("tta") or {}) if tta else card["evaluation"]
        points = section.get("operating_points")
        if points is None:
            raise ConversionError(
                f"{card_path}: no operating points{' for --tta' if tta else ''} (a card from "
                f"before them); evaluate the weights{' with --tta' if tta else ''} --split "
                "train and give --conf REPORT/report.json"
            )
        thresholds = {name: point["confidence"] for name, point in points["per_class"].items()}
        scored = card["model"]["onnx_sha256"]  # the export that chose them
        settings = card["evaluation"]["prediction_settings"]
        if "nms_iou" in points:  # chosen with the thresholds (cards from 2026-11-23 on)
            settings = {**settings, "nms_iou": points["nms_iou"]}
        if tta:
            settings = {**settings, "tta": card["tta"]["settings"]}
        evaluated_imgsz = card["model"]["imgsz"]  # a release evaluates at its training size
        source = card_path
    else:
        source = Path(source)
        report = read_json(source, "evaluation report")
        entries = report.get("per_class") if isinstance(report, dict) else None
        if not isinstance(entries, list) or not all(
            isinstance(entry, dict) and "name" in entry for entry in entries
        ):
            raise ConversionError(f"{source}: not a report.json from defects evaluate")
        if any("best_f1_confidence" not in entry for entry in entries):
            raise ConversionError(f"{source}: no per-class best-F1 confidences (an older file)")
        thresholds = {entry["name"]: entry["best_f1_confidence"] for entry in entries}
        scored = report.get("weights_sha256")
        settings = report.get("prediction_settings") or {}
        evaluated_imgsz = report.get("imgsz")
    evaluated_with_tta = "tta" in settings
    if evaluated_with_tta != tta:
        made, wanted = ("with", "without") if evaluated_with_tta else ("without", "with")
        raise ConversionError(
            f"{source}: its thresholds were chosen on predictions {made} --tta, and these are "
            f"{wanted} it; evaluate the weights {wanted} --tta (--split train) and give "
            "--conf REPORT/report.json"
        )
    evaluated_iou = settings.get("nms_iou", NMS_IOU)
    if nms_iou is not None and evaluated_iou != nms_iou:
        raise ConversionError(
            f"{source}: its thresholds were chosen on predictions at NMS IoU {evaluated_iou}, "
            f"and these are at {nms_iou}; evaluate the weights with --iou {nms_iou} "
            "(--split train) and give --conf REPORT/report.json"
        )
    # --tile is not checked: the scale a tile is drawn at depends on its size and the
    # images' (tiles of a strip can show its defects at the scale of whole crops), and
    # predict notes images drawn off the training scale.
    if imgsz is not None and evaluated_imgsz is not None and evaluated_imgsz != imgsz:
        raise ConversionError(
            f"{source}: its thresholds were chosen on predictions at {evaluated_imgsz} px, and "
            f"these are at {imgsz} px; evaluate the weights with --imgsz {imgsz} (--split "
            "train) and give --conf REPORT/report.json"
        )
    candidates = [path, path.with_suffix(".onnx"), path.with_suffix(".int8.onnx")]
    if scored not in {sha256(c) for c in candidates if c.is_file()}:
        raise ConversionError(
            f"{source}: its thresholds come from an evaluation of other weights than {weights}"
        )
    kept = {name: value for name, value in thresholds.items() if value is not None}
    return kept, evaluated_iou, imgsz or evaluated_imgsz


# What pycocotools reads of each entry (a missing one is its KeyError mid-evaluation),
# and each image's size, which the report measures boxes against (COCO requires it).
_GROUND_TRUTH_KEYS = {
    "images": ("id", "width", "height"),
    "categories": ("id", "name"),
    "annotations": ("id", "image_id", "category_id", "bbox", "area", "iscrowd"),
}


def read_ground_truth(gt_path: Path) -> dict:
    """A COCO ground-truth file, checked as :func:`read_results` checks results: what
    pycocotools would fail on with a traceback, or score silently wrong (a repeated
    annotation id keeps one box of the two), is refused.

    Raises:
        ConversionError: Unreadable, not JSON, not COCO ground truth, an entry lacking
            what pycocotools reads, a malformed box, an id repeated or naming nothing,
            or no box at all; names the file and the entry.
    """
    gt = read_json(gt_path, "COCO ground truth")
    if not isinstance(gt, dict) or not _GROUND_TRUTH_KEYS.keys() <= gt.keys():
        raise ConversionError(
            f"{gt_path}: not COCO ground truth (needs 'images', 'annotations' and 'categories')"
        )
    for key, needed in _GROUND_TRUTH_KEYS.items():
        if not isinstance(gt[key], list):
            raise ConversionError(f"{gt_path}: '{key}' is not a list")
        for index, entry in enumerate(gt[key]):
            if not isinstance(entry, dict):
                raise ConversionError(f"{gt_path}: {key}[{index}] is not a JSON object")
            missing = [name for name in needed if name not in entry]
            if missing:
                raise ConversionError(f"{gt_path}: {key}[{index}] lacks {missing}")
            for name in (n for n in needed if n == "id" or n.endswith("_id")):
                if not isinstance(entry[name], int | str) or isinstance(entry[name], bool):
                    raise ConversionError(
                        f"{gt_path}: {key}[{index}] has {name} {entry[name]!r}; expected a "
                        "number or a string"
                    )
            # pycocotools writes a matched box's id into a float array (a string one is
            # a ValueError).
            if key == "annotations" and isinstance(entry["id"], str):
                raise ConversionError(
                    f"{gt_path}: annotations[{index}] has id {entry['id']!r}; expected a number"
                )
        ids = Counter(repr(entry["id"]) for entry in gt[key])
        repeated = [i for i, n in ids.items() if n > 1]
        if repeated:
            raise ConversionError(
                f"{gt_path}: {key} id {repeated[0]} is given {ids[repeated[0]]} times"
            )
        # pycocotools sorts the images' and the classes' ids (numbers and strings together
        # are a TypeError).
        if len({isinstance(entry["id"], str) for entry in gt[key]}) > 1:
            raise ConversionError(f"{gt_path}: {key} ids mix numbers and strings; give one kind")
    for index, image in enumerate(gt["images"]):
        for name in ("width", "height"):
            if not (_finite(image[name]) and image[name] > 0):
                raise ConversionError(
                    f"{gt_path}: images[{index}] has {name} {image[name]!r}; expected a "
                    "positive number of pixels"
                )
    for index, category in enumerate(gt["categories"]):
        if not (isinstance(category["name"], str) and category["name"].strip()):
            raise ConversionError(
                f"{gt_path}: categories[{index}] has name {category['name']!r}; expected the "
                "class's name"
            )
    images = {entry["id"] for entry in gt["images"]}
    categories = {entry["id"] for entry in gt["categories"]}
    for index, annotation in enumerate(gt["annotations"]):
        _check_box(annotation["bbox"], f"{gt_path}: annotations[{index}]")
        # pycocotools keeps a box by its area (a negative one falls outside every range:
        # never scored) and ignores it by iscrowd's truth ("0" as a string is a crowd).
        if not (_finite(annotation["area"]) and annotation["area"] >= 0):
            raise ConversionError(
                f"{gt_path}: annotations[{index}] has area {annotation['area']!r}; expected "
                "a number of pixels, 0 or more"
            )
        if annotation["iscrowd"] not in (0, 1):
            raise ConversionError(
                f"{gt_path}: annotations[{index}] has iscrowd {annotation['iscrowd']!r}; "
                "expected 0 or 1"
            )
        if annotation["image_id"] not in images:
            raise ConversionError(
                f"{gt_path}: annotations[{index}] names image {annotation['image_id']!r}, "
                "which 'images' lacks"
            )
        if annotation["category_id"] not in categories:
            raise ConversionError(
                f"{gt_path}: annotations[{index}] names category "
                f"{annotation['category_id']!r}, which 'categories' lacks"
            )
    _require_boxes(gt, gt_path)
    return gt


def _require_boxes(gt: dict, source: Path | str) -> None:
    """Refuses ground truth without a box to score (crowd boxes are ignored): every AP
    is undefined there, and pycocotools' -1 would read as a figure.

    Raises:
        ConversionError: Names ``source``, and how to count false alarms instead.
    """
    if gt["images"] and not any(not a.get("iscrowd", 0) for a in gt["annotations"]):
        raise ConversionError(
            f"{source}: no ground-truth box among its {len(gt['images'])} images, so mAP is "
            "undefined (pycocotools gives -1); to count false alarms on defect-free images, "
            "predict on them: defects predict IMAGES --weights WEIGHTS --conf best-f1"
        )


def _path_parts(file_name: str) -> tuple[str, ...]:
    return tuple(part for part in file_name.replace("\\", "/").split("/") if part not in ("", "."))


def _image_ids_by_file_name(gt: dict) -> tuple[Callable[[str], list[int]], dict[str, list[int]]]:
    """The ground-truth images a result's ``file_name`` can name: those whose file name,
    as folders and name, ends the result's or is ended by it (``/data/images/val/a.jpg``
    names ``a.jpg`` and ``images/val/a.jpg``, and ``a.jpg`` names ``val/a.jpg``); and the
    images of each file stem."""
    by_name: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    by_stem: dict[str, list[int]] = {}
    for image in gt["images"]:
        parts = _path_parts(str(image.get("file_name", "")))
        if parts:
            by_name.setdefault(parts[-1], []).append((parts, image["id"]))
            by_stem.setdefault(Path(parts[-1]).stem, []).append(image["id"])

    def named(file_name: str) -> list[int]:
        parts = _path_parts(file_name)
        return [
            image_id
            for candidate, image_id in by_name.get(parts[-1] if parts else "", [])
            if candidate[-len(parts) :] == parts or parts[-len(candidate) :] == candidate
        ]

    return named, by_stem


def _other_splits_index(
    elsewhere: dict[str, list[str]] | None,
) -> tuple[Callable[[str], list[tuple[str, str]]], dict[str, list[tuple[str, str]]]]:
    """:func:`_image_ids_by_file_name` of the images of other splits, each known as (its
    split, its file name): one image named by two results' files counts once."""
    images = [
        {"id": (split, name), "file_name": name}
        for split, names in (elsewhere or {}).items()
        for name in names
    ]
    return _image_ids_by_file_name({"images": images})


def _locate(
    file_name: str, named: Callable[[str], list], other_named: Callable[[str], list]
) -> tuple[list, tuple[str, str] | None]:
    """The images of the split scored that a result's ``file_name`` names (by folders and
    name: :func:`_image_ids_by_file_name`), or the image of another split it names, as
    (that split, its file name) (:func:`_other_splits_index`). A
    name from another folder (``/data/steel/a.jpg`` for a YOLO dataset's
    ``images/val/a.jpg``) names an image by its file's name alone where that name is one
    image's in the whole dataset; found in several, it names them all (refused)."""
    found = named(file_name)
    if found:
        return found, None
    elsewhere = other_named(file_name)
    if elsewhere:
        return [], elsewhere[0]
    name = "/".join(_path_parts(file_name)[-1:])  # "" names no image
    here, there = named(name), other_named(name)
    if len(here) + len(there) > 1:
        return [*here, *there], None
    return here, there[0] if there else None


def read_results(
    predictions: Path,
    gt: dict,
    gt_path: Path | str,
    elsewhere: dict[str, list[str]] | None = None,
    left_out: list[tuple[str, str]] | None = None,
) -> list[dict]:
    """A COCO results file, or a folder of YOLO results (:func:`yolo_results`), checked
    against the ground truth it is scored on.

    A result with a ``file_name`` (``defects predict``'s and ultralytics' val
    ``save_json`` results have one) is matched to the ground truth's image of that name,
    whatever its ``image_id``: theirs numbers the images of that run (predict's from 1,
    in path order) or is the file's stem (ultralytics), not the ground truth's ids.
    Matching by the number would score each image's boxes against another image's. An
    ``image_id`` that is a string and no id, the stem of one image's file, names it
    (ultralytics' results before they had a ``file_name``).

    Args:
        predictions: The results file or folder.
        gt: The COCO ground truth scored against.
        gt_path: What messages call ``gt``.
        elsewhere: The file names of the dataset's images in its other splits
            (:func:`other_split_images`): a result naming one of them by file name or
            stem, and no image of ``gt``, is left out instead of refused, since a whole
            folder is often predicted and one split of it scored.
        left_out: Where each result left out so is recorded, as (its split, its image's
            file name as that split names it, however the result named it).

    Raises:
        ConversionError: Unreadable, not JSON, not COCO results, or naming images or
            categories the ground truth lacks, or a file name that several of its
            images end with; names the file and the result.
    """
    other_named, other_stems = _other_splits_index(elsewhere)
    left_out = [] if left_out is None else left_out
    results = (
        yolo_results(predictions, gt, gt_path, elsewhere, left_out)
        if predictions.is_dir()
        else read_json(predictions, "COCO results")
    )
    if isinstance(results, dict) and "annotations" in results:
        results = results["annotations"]
    if not isinstance(results, list):
        raise ConversionError(f"{predictions}: expected a COCO results list")
    image_ids = {im["id"] for im in gt["images"]}
    category_ids = {c["id"] for c in gt["categories"]}
    named, by_stem = _image_ids_by_file_name(gt)
    named_by: dict = {}  # image id: (the file_name its results gave, the first result's index)
    checked = []
    for index, det in enumerate(results):
        if not isinstance(det, dict):
            raise ConversionError(f"{predictions}: result {index} is not a JSON object")
        missing = {"image_id", "category_id", "bbox", "score"} - det.keys()
        if missing and "top_k" in det:
            raise ConversionError(
                f"{predictions}: a classifier's classes per image (defects classify), not "
                "detections: mAP scores a detector's boxes (defects predict --conf 0.001)"
            )
        if missing:
            raise ConversionError(f"{predictions}: result {index} lacks {sorted(missing)}")
        if isinstance(det.get("file_name"), str):
            found, other = _locate(det["file_name"], named, other_named)
            if other is not None:
                left_out.append(other)
                continue
            if len(found) != 1:
                raise ConversionError(
                    f"{predictions}: result {index}'s file_name {det['file_name']!r} matches "
                    + (f"{len(found)} images of {gt_path}: give their folders too" if found
                       else f"no image of {gt_path}")
                )  # fmt: skip
            first, first_index = named_by.setdefault(found[0], (det["file_name"], index))
            if first != det["file_name"]:
                # A folder predicted with a link or copy of one of its images inside (a
                # converter output in its source's folder): each detection counted twice.
                image = next(im for im in gt["images"] if im["id"] == found[0])
                raise ConversionError(
                    f"{predictions}: results {first_index} and {index} name image "
                    f"{image.get('file_name')!r} of {gt_path} by two files, {first!r} and "
                    f"{det['file_name']!r}: the image was predicted twice (a link or a copy), "
                    "and each of its detections would count twice; predict each image once"
                )
            det = {**det, "image_id": found[0]}
        elif isinstance(det["image_id"], str) and len(by_stem.get(det["image_id"], [])) == 1:
            # ultralytics' save_json before it wrote file_name: the stem, "crazing_1".
            det = {**det, "image_id": by_stem[det["image_id"]][0]}
        elif (
            isinstance(det["image_id"], str)
            and det["image_id"] not in image_ids
            and not by_stem.get(det["image_id"])
            and other_stems.get(det["image_id"])
        ):
            left_out.append(other_stems[det["image_id"]][0])
            continue
        if det["image_id"] not in image_ids:
            raise ConversionError(
                f"{predictions}: result {index} names image {det['image_id']!r}, absent from "
                f"{gt_path} (give each result the file_name of its image to match it by name)"
            )
        if det["category_id"] not in category_ids:
            raise ConversionError(
                f"{predictions}: result {index} names category {det['category_id']!r}, "
                f"absent from {gt_path} (its categories: {sorted(category_ids)})"
            )
        # pycocotools scores these without a word: a negative width gives a negative area
        # and a NaN score sorts anywhere, so the mAP would silently mean nothing.
        _check_box(det["bbox"], f"{predictions}: result {index}")
        if not _finite(det["score"]):
            raise ConversionError(
                f"{predictions}: result {index} has score {det['score']!r}; expected a "
                "finite number"
            )
        checked.append(det)
    return checked


def results_source(predictions: Path) -> Path:
    """What ``--predictions`` names: a results file, a folder of YOLO results, or a folder
    holding a ``predictions.json`` (a ``defects predict --out`` folder, ultralytics' val
    run with ``save_json``), which is that file: its JSON, with file names, is read even
    where the folder also holds ``.txt`` results (ultralytics' ``save_txt`` beside it)."""
    marked = predictions / PREDICTIONS_MARKER
    return marked if predictions.is_dir() and marked.is_file() else predictions


def yolo_results_files(folder: Path) -> list[Path]:
    """A folder's YOLO results files: its ``.txt`` files, or those of its ``labels/``
    (where ultralytics' predict writes them, beside the annotated images)."""
    files = sorted(folder.glob("*.txt"))
    if not files and (folder / "labels").is_dir():
        files = sorted((folder / "labels").glob("*.txt"))
    return files


def yolo_results(
    folder: Path,
    gt: dict,
    gt_path: Path | str,
    elsewhere: dict[str, list[str]] | None = None,
    left_out: list[tuple[str, str]] | None = None,
) -> list[dict]:
    """COCO results from a folder of YOLO results files, one per image, named after it
    (``crazing_1.txt``): what ultralytics' predict writes with ``save_txt=True,
    save_conf=True``, and YOLOv5's ``detect.py --save-txt --save-conf``
    (:func:`converters.yolo.from_yolo_results`). Class ``i`` is the ground truth's
    ``i``-th category, as a YOLO dataset numbers them; an image without a file has no
    detections (ultralytics writes none for it). A file naming an image of another
    split (``elsewhere``) is left out, as :func:`read_results` leaves such results out.

    Raises:
        ConversionError: No ``.txt`` file, a file naming no image of the ground truth or
            the stem of several, an image without its size, or a line that is no
            detection; names the file.
    """
    files = yolo_results_files(folder)
    if not files:
        raise ConversionError(
            f"{folder}: no predictions.json and no .txt results here or in labels/ "
            "(defects predict --out writes predictions.json; ultralytics writes .txt "
            "results with save_txt=True save_conf=True)"
        )
    _, by_stem = _image_ids_by_file_name(gt)
    images = {image["id"]: image for image in gt["images"]}
    names = [str(category["name"]) for category in gt["categories"]]
    category_ids = {name: category["id"] for name, category in zip(names, gt["categories"])}
    results = []
    _, other_stems = _other_splits_index(elsewhere)
    for path in files:
        found = by_stem.get(path.stem, [])
        if not found and other_stems.get(path.stem):
            if left_out is not None:
                left_out.append(other_stems[path.stem][0])
            continue
        if not found:
            raise ConversionError(f"{path}: names no image of {gt_path} (by its stem)")
        if len(found) > 1:
            raise ConversionError(
                f"{path}: the stem of {len(found)} images of {gt_path} ("
                + ", ".join(str(images[i]["file_name"]) for i in found)
                + "), and a YOLO results file names its image by the stem alone"
            )
        image = images[found[0]]
        if not all(_finite(image.get(key)) for key in ("width", "height")):
            raise ConversionError(
                f"{gt_path}: image {image['id']!r} has no width and height, which YOLO "
                f"results ({path}) are relative to"
            )
        text = read_text(path, "YOLO results")
        for box in from_yolo_results(text, image["width"], image["height"], names, str(path)):
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": category_ids[box.label],
                    "bbox": [box.xmin, box.ymin, box.width, box.height],
                    "score": box.confidence,
                }
            )
    return results


def results_sha256(predictions: Path) -> str:
    """A results file's SHA-256, or a YOLO results folder's: of its files' names and
    SHA-256s, so the report pins down exactly what was scored."""
    if not predictions.is_dir():
        return sha256(predictions)
    listing = "".join(f"{p.name}\t{sha256(p)}\n" for p in yolo_results_files(predictions))
    return hashlib.sha256(listing.encode()).hexdigest()


def results_name(predictions: Path) -> str:
    """A results source's name in reports: the file's stem, or the folder's name (its
    run's, for ultralytics' ``runs/detect/NAME/labels``). A ``predictions.json``, the
    name both ``defects predict --out`` and ultralytics' ``save_json`` give every run's
    results, is known by its folder: two runs compared had the same name."""
    if predictions.is_dir() and predictions.resolve().name == "labels":
        return predictions.resolve().parent.name
    if predictions.name == PREDICTIONS_MARKER:
        return predictions.resolve().parent.name
    return predictions.stem


def _check_box(box: object, entry: str) -> None:
    """Refuses a COCO box that is not ``[x, y, width, height]`` of four finite numbers,
    or has a negative side; ``entry`` names the file and the entry."""
    if not (isinstance(box, list) and len(box) == 4 and all(map(_finite, box))):
        raise ConversionError(
            f"{entry} has bbox {box!r}; expected [x, y, width, height], four finite numbers"
        )
    if box[2] < 0 or box[3] < 0:
        raise ConversionError(f"{entry} has a negative width or height in bbox {box!r}")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def evaluate_files(
    predictions: Path,
    gt_path: Path,
    out: Path,
    image_dir: Path | None = None,
    replicates: int = 1000,
    seed: int = 0,
) -> dict:
    """Scores any detector's COCO results file against a COCO ground-truth file."""
    gt = read_ground_truth(Path(gt_path))
    if image_dir is None:  # a converter output: annotations/instances_X.json -> images/X
        split = Path(gt_path).stem.removeprefix("instances_")
        candidate = Path(gt_path).resolve().parent.parent / "images" / split
        image_dir = candidate if candidate.is_dir() else None
    truth = {
        "ground_truth": str(gt_path),
        "ground_truth_sha256": sha256(Path(gt_path)),
        "split": Path(gt_path).stem.removeprefix("instances_"),
    }
    return _evaluate_results(
        Path(predictions), gt, gt_path, truth, Path(out), image_dir, replicates, seed
    )


def evaluate_results_on_split(
    predictions: Path,
    data: Path,
    out: Path,
    split: str = "val",
    replicates: int = 1000,
    seed: int = 0,
) -> dict:
    """Scores any detector's COCO results file on a dataset's split, its ground truth
    found as ``evaluate --weights`` finds it (:func:`split_ground_truth`): ultralytics'
    ``save_json`` results on a YOLO dataset need no COCO file of their own."""
    truth = split_ground_truth(data, split)
    meta = {
        **_split_provenance(truth, split),
        "ground_truth_sha256": sha256(truth.source) if truth.source else None,
        "split": split,
    }
    return _evaluate_results(
        Path(predictions),
        truth.gt,
        truth_named(truth, split),
        meta,
        Path(out),
        truth.image_dir,
        replicates,
        seed,
        other_split_images(truth, split),
    )


def _evaluate_results(
    predictions: Path,
    gt: dict,
    gt_named: Path | str,
    truth: dict,
    out: Path,
    image_dir: Path | None,
    replicates: int,
    seed: int,
    elsewhere: dict[str, list[str]] | None = None,
) -> dict:
    """Scores a results file against ``gt`` (``gt_named`` in messages; ``truth``: where
    it came from, for the report; ``elsewhere``: the images of the dataset's other
    splits, whose results are left out) and writes the report."""
    left_out: list[tuple[str, str]] = []
    results = read_results(predictions, gt, gt_named, elsewhere, left_out)
    meta = {
        "name": results_name(predictions),
        "predictions": str(predictions),
        "predictions_sha256": results_sha256(predictions),
        **truth,
        "images": len(gt["images"]),
        "lowest_score": min((r["score"] for r in results), default=None),
        "past_the_image": past_the_image(results, gt),
        "unanswered": images_unanswered(results, gt),
        "other_splits": results_left_out(left_out),
    }
    return write_report(
        out, evaluate(gt, results), gt, results, meta, None, image_dir, replicates, seed
    )
