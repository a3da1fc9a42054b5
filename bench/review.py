"""Benchmark: a cold `defects review` of NEU-DET against the same session glued by hand.

Target (issue 4): start FiftyOne's database, load NEU-DET's 1,800 images with ground truth
and predictions, and evaluate in under 30 s on this machine.

Ours: `defects review --data OUT --weights W --no-launch --rebuild`, timed as a whole
process (interpreter start, imports, the database service's own start, ONNX predictions
of all 1,800 images, loading, `evaluate_detections`, the pycocotools cross-check and the
saved views). Every run starts the database afresh: the service ends with the process.

By hand: what a user writes from FiftyOne's documentation with the same ONNX detector:
import FiftyOne, predict, build `fo.Sample`s with `fo.Detections`, `add_samples`, then
`evaluate_detections` on the val split; also timed as a whole process.

Runs alternate, REPEATS times each, and the medians are compared. A reopen of the
existing dataset (tags kept, no --rebuild) is timed once.

    make bench-review             # or: .venv/bin/python bench/review.py --weights W --data OUT
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import detection.offline  # noqa: E402,F401  (offline switches for the child processes too)
from bench.common import machine, save  # noqa: E402
from detection.weights import resolve_weights  # noqa: E402

BY_HAND_SCRIPT = r"""
import json, sys, time
from pathlib import Path
import fiftyone as fo
from converters.coco import from_coco
from converters.pixels import read_image
from detection.predict import load_detector, batches

data, weights, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
detector = load_detector(weights, "onnx")
if fo.dataset_exists(name):
    fo.delete_dataset(name)
dataset = fo.Dataset(name, persistent=True)
samples = []
for split in ("train", "val"):
    coco = json.loads((data / "annotations" / f"instances_{split}.json").read_text())
    images = from_coco(coco, data / "images" / split, split).images
    for chunk in batches(images, 32):
        found = detector([read_image(im.path) for im in chunk], conf=0.05, max_det=100)
        for image, det in zip(chunk, found):
            w, h = image.width, image.height
            sample = fo.Sample(filepath=str(Path(image.path).absolute()), tags=[split])
            sample["ground_truth"] = fo.Detections(detections=[
                fo.Detection(label=b.label, bounding_box=[b.xmin / w, b.ymin / h,
                                                          b.width / w, b.height / h])
                for b in image.boxes])
            sample["predictions"] = fo.Detections(detections=[
                fo.Detection(label=detector.names[int(c)], confidence=float(s),
                             bounding_box=[x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h])
                for (x1, y1, x2, y2), s, c in zip(det.boxes, det.scores, det.classes)])
            samples.append(sample)
dataset.add_samples(samples)
results = dataset.match_tags("val").evaluate_detections(
    "predictions", gt_field="ground_truth", eval_key="eval", compute_mAP=True)
print(json.dumps({"samples": len(dataset), "mAP": results.mAP()}))
"""

READY = re.compile(
    r"ready in ([\d.]+) s \(predictions ([\d.]+) s beside the database start, ready at "
    r"([\d.]+) s; loading ([\d.]+) s; evaluation and views ([\d.]+) s\)"
)
MAP = re.compile(r"FiftyOne mAP \(COCO-style, IoU 0.50:0.95\) ([\d.]+)")


def run_ours(data: Path, weights: Path, name: str, rebuild: bool = True) -> dict:
    command = [str(REPO / ".venv/bin/defects"), "review", "--data", str(data)]
    command += ["--weights", str(weights), "--name", name, "--no-launch"]
    command += ["--rebuild"] if rebuild else []
    started = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    text = " ".join((result.stdout + result.stderr).split())  # rich wraps lines
    ready, fiftyone_map = READY.search(text), MAP.search(text)
    keys = ("in_process", "predict", "database_ready_at", "load", "evaluate")
    return {
        "wall_s": wall,
        **{f"{k}_s": float(v) for k, v in zip(keys, ready.groups())},
        "mAP": float(fiftyone_map.group(1)),
    }


def run_by_hand(data: Path, weights: Path, name: str) -> dict:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", BY_HAND_SCRIPT, str(data), str(weights), name],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    wall = time.perf_counter() - started
    return {"wall_s": wall, **json.loads(result.stdout.strip().splitlines()[-1])}


def database_running() -> bool:
    found = subprocess.run(
        ["pgrep", "-f", "fiftyone/service/main.py --51-service db"], capture_output=True
    )
    return found.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "datasets/converted/neu-det")
    parser.add_argument("--weights", default="neu-det", help=".pt or a released name")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if database_running():
        sys.exit("a FiftyOne database is running (an open App?): close it for cold starts")
    args.weights = resolve_weights(args.weights)
    if not args.weights.with_suffix(".onnx").is_file():
        sys.exit(f"{args.weights.with_suffix('.onnx')}: run `defects export` first")
    ours, by_hand = [], []
    for _ in range(args.repeats):
        ours.append(run_ours(args.data, args.weights, "bench-review"))
        by_hand.append(run_by_hand(args.data, args.weights, "bench-review-by-hand"))
    reopened = run_ours(args.data, args.weights, "bench-review", rebuild=False)
    median = {
        side: {k: statistics.median(r[k] for r in runs) for k in runs[0] if k.endswith("_s")}
        for side, runs in (("ours", ours), ("by_hand", by_hand))
    }
    result = {
        "machine": machine(),
        "command": " ".join(sys.argv),
        "images": by_hand[0]["samples"],
        "median": median,
        "speedup_whole_process": median["by_hand"]["wall_s"] / median["ours"]["wall_s"],
        "target_s": 30,
        "reopen": reopened,
        "mAP": {"ours": ours[0]["mAP"], "by_hand": by_hand[0]["mAP"]},
        "all_runs": {"ours": ours, "by_hand": by_hand},
    }
    save("review", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
