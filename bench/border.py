"""Benchmark: a grey border around the letterboxed image, against mAP on NEU-DET's val.

Ultralytics' val letterboxes each batch into rectangles padded by half a stride
(`rect=True`, `pad=0.5`): a 200x200 NEU-DET image at 416 px is resized to 416 and put on a
448x448 grey canvas, 16 px on every side, where its predict gives the model the 416x416
image alone. That is why ultralytics' val scored the same weights higher than `defects
evaluate` once did, and why our detectors now add that border (`detection.predict.BORDER`).
Here each model is scored (pycocotools, conf 0.001, 100 per image, ONNX fp32) without a
border, with a 16 and a 32 px border, and resized to the larger canvas without a border
(to tell the border from the scale); every variant paired with the first model's first.

    make bench-border                                             # the released model
    make bench-border WEIGHTS="neu-det weights/gpu/n416/best.pt"  # baseline: the first's first
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import detection.offline  # noqa: E402,F401
from bench.common import machine, save  # noqa: E402
from detection.compare import compare  # noqa: E402
from detection.evaluate import predict_coco, split_ground_truth  # noqa: E402
from detection.predict import OnnxDetector, load_detector  # noqa: E402

STRIDE = 32  # the largest stride of a YOLO11 detector: canvases are multiples of it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["neu-det"], help=".pt or released names")
    parser.add_argument("--data", type=Path, default=REPO / "datasets/converted/neu-det")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/border")
    args = parser.parse_args()
    truth = split_ground_truth(args.data, "val")
    gt, image_dir = truth.gt, truth.image_dir
    names, predictions = [], []
    for weights in args.weights:
        loaded = load_detector(weights, "onnx")  # exported beside the weights if missing
        onnx, size = loaded.path, loaded.imgsz
        model = Path(str(weights)).parent.name if str(weights).endswith(".pt") else str(weights)
        variants = {
            f"{model} without a border ({size})": OnnxDetector(onnx, size, border=0),
            f"{model} + 16 px border ({size + 32})": OnnxDetector(onnx, size, border=16),
            f"{model} + 32 px border ({size + 64})": OnnxDetector(onnx, size, border=32),
            f"{model} resized to {size + STRIDE}": OnnxDetector(onnx, size + STRIDE, border=0),
        }
        for name, variant in variants.items():
            names.append(name)
            predictions.append(predict_coco(variant, gt, image_dir))
            print(name, flush=True)
    report = compare(gt, predictions, names, args.out)
    rows = [
        {
            "variant": model["name"],
            "mAP50": model["mAP50"],
            "mAP50-95": model["mAP50-95"],
        }
        for model in report["models"]
    ]
    differences = report["difference"]
    differences = differences if isinstance(differences, list) else [differences]
    result = {
        "machine": machine(),
        "weights": [str(w) for w in args.weights],
        "scores": rows,
        "paired_against_first": differences,
        "report": str(args.out / "report.md"),
    }
    save("border", result)
    print(json.dumps(rows, indent=2))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
