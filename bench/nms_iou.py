"""Benchmark: the NMS IoU against mAP50 and mAP50:95 on NEU-DET, chosen on train.

Every detector here runs NMS at ultralytics' default IoU, 0.7 (`detection.weights.NMS_IOU`);
`--iou` on `defects predict`, `evaluate` and `compare` changes it. NEU-DET's defects
(patches, inclusions, scratches) often come as several overlapping boxes, so the IoU at
which overlapping candidates are merged moves the two figures apart. Each IoU of the grid
is scored on train and val (pycocotools, `defects evaluate`'s predictions: conf 0.001, 100
per image); the IoU that is best on train for each figure is then read on val.

    make bench-nms-iou                      # the released model, neu-det
    make bench-nms-iou WEIGHTS=weights/RUN/best.pt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import detection.offline  # noqa: E402,F401
from bench.common import detector_arguments, machine, save  # noqa: E402
from detection.cocoeval import evaluate  # noqa: E402
from detection.evaluate import predict_coco_at_ious, split_ground_truth  # noqa: E402
from detection.predict import load_detector  # noqa: E402

GRID = (0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)
FIGURES = {"mAP50": "AP50", "mAP50-95": "AP50:95"}


def main() -> None:
    args = detector_arguments(__doc__.splitlines()[0])
    scores: dict[str, dict[float, dict[str, float]]] = {}
    truths = {split: split_ground_truth(args.data, split) for split in ("train", "val")}
    classes = [category["name"] for category in truths["train"].gt["categories"]]
    detector = load_detector(args.weights, args.backend, classes=classes)
    for split, truth in truths.items():
        gt = truth.gt
        # The ONNX backends run the model once for every IoU; only NMS differs.
        by_iou = predict_coco_at_ious(detector, gt, truth.image_dir, GRID)
        scores[split] = {}
        for iou, results in by_iou.items():
            stats = evaluate(gt, results).stats
            scores[split][iou] = {figure: stats[key] for figure, key in FIGURES.items()}
            print(
                f"{split} NMS IoU {iou}: "
                + ", ".join(
                    f"{figure} {value:.4f}" for figure, value in scores[split][iou].items()
                ),
                flush=True,
            )
    chosen = {}
    for figure in FIGURES:
        best = max(GRID, key=lambda iou: scores["train"][iou][figure])
        chosen[f"best {figure} on train"] = {"nms_iou": best, "val": scores["val"][best]}
    result = {
        "machine": machine(),
        "weights": str(args.weights),
        "backend": args.backend,
        "scores": scores,
        "chosen_on_train": chosen,
    }
    save("nms_iou", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
