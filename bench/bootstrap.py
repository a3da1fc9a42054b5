"""Benchmark: bootstrap intervals on NEU-DET's val split, ours against re-running COCOeval.

Ours: pycocotools matches once, then 1,000 replicates re-accumulated with image weights
(vectorised). The naive way: a full COCOeval (evaluate, accumulate) per resampled dataset,
timed on a few replicates and scaled to 1,000. Both in one run, on the same predictions.

    make bench-bootstrap      # or: .venv/bin/python bench/bootstrap.py --weights W --data OUT
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import numpy as np  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

import detection.offline  # noqa: E402,F401
from bench.common import machine, save  # noqa: E402
from detection.bootstrap import figures, match, resample_weights  # noqa: E402
from detection.cocoeval import load_gt, load_results  # noqa: E402
from detection.evaluate import predict_coco  # noqa: E402
from detection.predict import load_detector  # noqa: E402


def naive_replicate(gt: dict, results: list[dict], counts: np.ndarray) -> float:
    """One replicate the slow way: build the resampled dataset, run COCOeval on it."""
    images, annotations, detections = [], [], []
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    gt_by_image: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        gt_by_image.setdefault(a["image_id"], []).append(a)
    for index, image in enumerate(gt["images"]):
        for _copy in range(int(counts[index])):
            new_id = len(images) + 1
            images.append({**image, "id": new_id})
            for a in gt_by_image.get(image["id"], []):
                annotations.append({**a, "id": len(annotations) + 1, "image_id": new_id})
            detections += [{**d, "image_id": new_id} for d in by_image.get(image["id"], [])]
    resampled = {**gt, "images": images, "annotations": annotations}
    coco_gt = load_gt(resampled)
    evaluator = COCOeval(coco_gt, load_results(coco_gt, detections), "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="neu-det", help=".pt or a released name")
    parser.add_argument("--data", type=Path, default=REPO / "datasets/converted/neu-det")
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--naive", type=int, default=5, help="naive replicates to time")
    args = parser.parse_args()
    gt_path = args.data / "annotations" / "instances_val.json"
    gt = json.loads(gt_path.read_text())
    detector = load_detector(args.weights, "onnx")
    results = predict_coco(detector, gt, args.data / "images" / "val")

    started = time.perf_counter()
    table = match(gt, results)["all"]
    matched = time.perf_counter() - started
    started = time.perf_counter()
    found, _ = figures(table, None, args.replicates, 0)
    replicated = time.perf_counter() - started

    counts = resample_weights(len(gt["images"]), args.naive, 0)
    started = time.perf_counter()
    for row in counts:
        naive_replicate(gt, results, row)
    naive_each = (time.perf_counter() - started) / args.naive
    ours = matched + replicated
    result = {
        "machine": machine(),
        "images": len(gt["images"]),
        "detections": len(results),
        "replicates": args.replicates,
        "ours_match_s": matched,
        "ours_replicates_s": replicated,
        "ours_total_s": ours,
        "naive_per_replicate_s": naive_each,
        "naive_total_s_extrapolated": naive_each * args.replicates,
        "speedup": naive_each * args.replicates / ours,
        "mAP50": found["mAP50"],
        "mAP50_ci": found["mAP50_ci"],
        "mAP50-95": found["mAP50-95"],
        "mAP50-95_ci": found["mAP50-95_ci"],
    }
    save("bootstrap", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
