"""Benchmark: flip test-time augmentation on NEU-DET, its fusion IoU chosen on the train split.

The detector (ONNX fp32 by default) predicts once on each of the four flips of every
train and val image (conf 0.001, 100 detections per view). On the train split, the
views are fused by weighted boxes fusion at each IoU of a grid and scored with
pycocotools; the IoU with the best mAP50:95 (COCO's primary figure) is chosen there, so
the val figures are not tuned on val. On the val split: plain predictions, ours with
the chosen IoU, and ultralytics' own TTA (`augment=True`: scales 1, 0.83, 0.67 with a
left-right flip, merged before NMS) side by side, and the paired bootstrap difference
of ours against plain (`defects compare`'s method, 1,000 replicates).

    make bench-tta                       # the released model, neu-det
    make bench-tta WEIGHTS=weights/RUN/best.pt
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import detection.offline  # noqa: E402,F401
from bench.common import detector_arguments, machine, save  # noqa: E402
from converters.pixels import read_image  # noqa: E402
from detection.cocoeval import evaluate  # noqa: E402
from detection.compare import compare  # noqa: E402
from detection.evaluate import category_map, split_ground_truth  # noqa: E402
from detection.predict import (  # noqa: E402
    EVALUATION_CONF,
    EVALUATION_MAX_DET,
    Detections,
    Detector,
    FlipTTADetector,
    TorchDetector,
    batches,
    coco_results,
    fuse_flips,
    load_detector,
    ultralytics_detections,
)

if TYPE_CHECKING:
    import numpy as np

CONF, MAX_DET = EVALUATION_CONF, EVALUATION_MAX_DET  # what `defects evaluate` predicts with
PAIRED_KEYS = ("mAP50", "mAP50_ci", "p_value", "mAP50-95", "mAP50-95_ci", "p_value_mAP50-95")
GRID = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85)


def flipped_detections(detector: Detector, images: list) -> list[list[Detections]]:
    """Each image's detections on its four flips (the first: the image itself), unfused,
    so that every fusion IoU is scored on the same predictions."""
    tta = FlipTTADetector(detector)
    return [
        views for chunk in batches(images, 16) for views in tta.views_of(chunk, CONF, 0.7, MAX_DET)
    ]


def plain_results(
    gt: dict, views: list[list[Detections]], to_category: dict[int, int]
) -> list[dict]:
    """The plain predictions: each image's first view, the image itself."""
    return [
        result
        for entry, found in zip(gt["images"], views)
        for result in coco_results(found[0], entry["id"], to_category)
    ]


def fused_results(
    gt: dict,
    images: list[np.ndarray],
    views: list[list[Detections]],
    to_category: dict[int, int],
    fusion_iou: float,
) -> list[dict]:
    results = []
    for entry, image, found in zip(gt["images"], images, views):
        fused = fuse_flips(found, image.shape[:2], CONF, MAX_DET, fusion_iou)
        results += coco_results(fused, entry["id"], to_category)
    return results


def ultralytics_augment(
    weights: Path, gt: dict, image_dir: Path, to_category: dict[int, int]
) -> list[dict]:
    """Ultralytics' own TTA (``augment=True``) on every image, as COCO results."""
    model = TorchDetector(weights, device="cpu")
    results = []
    for entry in gt["images"]:
        (found,) = model.model.predict(
            str(image_dir / entry["file_name"]),
            imgsz=model.imgsz,
            conf=CONF,
            max_det=MAX_DET,
            augment=True,
            device="cpu",
            verbose=False,
        )
        results += coco_results(ultralytics_detections(found), entry["id"], to_category)
    return results


def scores(gt: dict, results: list[dict]) -> dict:
    stats = evaluate(gt, results).stats
    return {"mAP50": stats["AP50"], "mAP50:95": stats["AP50:95"]}


def main() -> None:
    args = detector_arguments(__doc__.splitlines()[0])

    detector = load_detector(args.weights, args.backend)
    found, splits = {}, {}
    for split in ("train", "val"):
        truth = split_ground_truth(args.data, split)
        gt, image_dir = truth.gt, truth.image_dir
        gt["images"] = sorted(gt["images"], key=lambda entry: entry["id"])
        images = [read_image(image_dir / entry["file_name"]) for entry in gt["images"]]
        splits[split] = (gt, images, image_dir)
        found[split] = flipped_detections(detector, images)
    to_category = category_map(detector.names, splits["val"][0])

    gt, images, _ = splits["train"]
    train = {"plain": scores(gt, plain_results(gt, found["train"], to_category))}
    for fusion_iou in GRID:
        fused = fused_results(gt, images, found["train"], to_category, fusion_iou)
        train[f"tta_{fusion_iou}"] = scores(gt, fused)
        print(f"train, fusion IoU {fusion_iou}: {train[f'tta_{fusion_iou}']}", flush=True)
    chosen = max(GRID, key=lambda fusion_iou: train[f"tta_{fusion_iou}"]["mAP50:95"])

    gt, images, image_dir = splits["val"]
    plain = plain_results(gt, found["val"], to_category)
    ours = fused_results(gt, images, found["val"], to_category, chosen)
    theirs = ultralytics_augment(detector.path.with_suffix(".pt"), gt, image_dir, to_category)
    with tempfile.TemporaryDirectory(prefix="bench-tta-") as out:
        paired = compare(gt, [plain, ours], ["plain", "tta"], Path(out))["difference"]
    val = {
        "plain": scores(gt, plain),
        f"ours_tta_{chosen}": scores(gt, ours),
        "ultralytics_augment": scores(gt, theirs),
    }
    result = {
        "machine": machine(),
        "weights": str(args.weights),
        "backend": args.backend,
        "imgsz": detector.imgsz,
        "fusion_iou_chosen_on_train": chosen,
        "train": train,
        "val": val,
        "val_tta_minus_plain": {key: paired[key] for key in PAIRED_KEYS},
        "val_tta_minus_plain_per_class": paired["per_class"],
    }
    save("tta", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
