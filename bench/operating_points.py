"""Benchmark: per-class operating points against one threshold for every class, on NEU-DET.

`defects predict --conf best-f1` keeps each class's detections at the confidence of its
best F1 on the train split (the model card's operating points). Here they are applied to
val beside one threshold for all classes (ultralytics' and our default 0.25, and the one
with the best macro F1 on train), so the gain is measured on images that did not choose
it, and beside thresholds chosen on val itself, which flatter val (to show by how much).
Predictions: `defects evaluate`'s (conf 0.001, 100 per image, NMS IoU 0.7); P, R and F1
per class with pycocotools' matching at IoU 0.5 (`detection.cocoeval.precision_recall`).
The last row is the card's (`detection.release.operating_points`): the NMS IoU is chosen
on train with the thresholds.

    make bench-operating-points                      # the released model, neu-det
    make bench-operating-points WEIGHTS=weights/RUN/best.pt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import numpy as np  # noqa: E402

import detection.offline  # noqa: E402,F401
from bench.common import detector_arguments, machine, save  # noqa: E402
from detection.cocoeval import at_thresholds, evaluate, macro_f1, precision_recall  # noqa: E402
from detection.evaluate import predict_split, split_ground_truth  # noqa: E402
from detection.release import OPERATING_NMS_IOUS, operating_points  # noqa: E402

GLOBAL_GRID = np.round(np.arange(0.05, 0.61, 0.01), 2)


def summary(per_class: dict[str, dict[str, float]], thresholds: dict[str, float]) -> dict:
    """Macro figures of per-class P/R/F1 (``precision_recall``'s) at ``thresholds``."""
    return {
        "macro_f1": macro_f1(per_class),
        "macro_precision": float(np.mean([c["precision"] for c in per_class.values()])),
        "macro_recall": float(np.mean([c["recall"] for c in per_class.values()])),
        "per_class_f1": {name: c["f1"] for name, c in per_class.items()},
        "thresholds": thresholds,
    }


def figures(gt: dict, results: list[dict], thresholds: dict[str, float]) -> dict:
    return summary(precision_recall(gt, at_thresholds(gt, results, thresholds)), thresholds)


def main() -> None:
    args = detector_arguments(__doc__.splitlines()[0])

    splits = {}
    for split in ("train", "val"):
        truth = split_ground_truth(args.data, split)
        gt = truth.gt
        results = predict_split(args.weights, gt, truth.image_dir, backend=args.backend).results
        splits[split] = (gt, results)
    classes = [c["name"] for c in splits["val"][0]["categories"]]

    def best_f1(split: str) -> dict[str, float]:
        scored = evaluate(*splits[split]).classes
        return {c.name: c.best_f1_confidence for c in scored}

    train_gt, train_results = splits["train"]
    on_train = {
        float(t): figures(train_gt, train_results, dict.fromkeys(classes, float(t)))["macro_f1"]
        for t in GLOBAL_GRID
    }
    best_global = max(on_train, key=on_train.get)
    policies = {
        "one threshold, 0.25 (the default)": dict.fromkeys(classes, 0.25),
        f"one threshold, {best_global} (best macro F1 on train)": dict.fromkeys(
            classes, best_global
        ),
        "per class, best F1 on train": best_f1("train"),
        "per class, best F1 on val (chosen on val: flatters val)": best_f1("val"),
    }
    val_gt, val_results = splits["val"]
    val = {name: figures(val_gt, val_results, t) for name, t in policies.items()}
    # The card's: per-class thresholds and the NMS IoU, both chosen on train.
    card = operating_points(args.weights, args.data, nms_ious=OPERATING_NMS_IOUS)
    thresholds = {name: c["confidence"] for name, c in card["per_class"].items()}
    val[f"per class, best F1 on train, at NMS IoU {card['nms_iou']} (chosen on train)"] = {
        **summary(card["per_class"], thresholds),
        "train_macro_f1_by_nms_iou": card["train_macro_f1_by_nms_iou"],
    }
    result = {
        "machine": machine(),
        "weights": str(args.weights),
        "backend": args.backend,
        "train_macro_f1_by_global_threshold": on_train,
        "val": val,
    }
    save("operating_points", result)
    for name, scored in val.items():
        per_class = ", ".join(f"{c} {f:.3f}" for c, f in scored["per_class_f1"].items())
        print(
            f"{name}: macro F1 {scored['macro_f1']:.4f} (P {scored['macro_precision']:.3f}, "
            f"R {scored['macro_recall']:.3f}); {per_class}"
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
