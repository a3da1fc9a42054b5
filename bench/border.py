"""Benchmark: a grey border around the letterboxed image, against mAP on NEU-DET's val.

Ultralytics' val letterboxes each batch into rectangles padded by half a stride
(`rect=True`, `pad=0.5`): a 200x200 NEU-DET image at 416 px is resized to 416 and put on a
448x448 grey canvas, 16 px on every side, where its predict (and our predict and
evaluate) give the model the 416x416 image alone. That is why ultralytics' val can score
the same weights higher than `defects evaluate` (docs/benchmarks.md). Here each model
is scored (pycocotools, conf 0.001, 100 per image, ONNX fp32) as it is predicted today,
with a 16 and a 32 px border, and resized to the larger canvas without a border (to
tell the border from the scale); every variant paired with the first model as it is.

    make bench-border                                             # the released model
    make bench-border WEIGHTS="neu-det weights/gpu/n416/best.pt"  # several, the first the baseline
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import detection.offline  # noqa: E402,F401
from bench.common import machine, save  # noqa: E402
from detection.compare import compare  # noqa: E402
from detection.evaluate import predict_coco, split_ground_truth  # noqa: E402
from detection.predict import (  # noqa: E402
    PAD_VALUE,
    Detections,
    OnnxDetector,
    letterbox,
    load_detector,
    nms_decode,
    rgb_nchw,
)
from detection.weights import NMS_IOU  # noqa: E402

STRIDE = 32  # the largest stride of a YOLO11 detector: canvases are multiples of it


class BorderedDetector:
    """An ONNX detector fed each image letterboxed to ``size`` and then bordered by
    ``border`` grey pixels on every side (a canvas of ``size + 2 * border``)."""

    def __init__(self, detector: OnnxDetector, size: int, border: int) -> None:
        self.detector, self.size, self.border = detector, size, border
        self.names, self.path = detector.names, detector.path
        self.imgsz = size + 2 * border

    def __call__(
        self, images: list[np.ndarray], conf: float = 0.25, iou: float = NMS_IOU, max_det: int = 300
    ) -> list[Detections]:
        boxed = [letterbox(image, self.size) for image in images]
        b = self.border
        canvases = [
            cv2.copyMakeBorder(pixels, b, b, b, b, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
            for pixels, _, _ in boxed
        ]
        batch = rgb_nchw(canvases).astype(np.float32) / 255.0
        outputs = self.detector.session.run(None, {self.detector.input: batch})[0]
        return [
            nms_decode(out, conf, iou, max_det, ratio, (left + b, top + b), image.shape[:2])
            for out, (_, ratio, (left, top)), image in zip(outputs, boxed, images)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["neu-det"], help=".pt or released names")
    parser.add_argument("--data", type=Path, default=REPO / "datasets/converted/neu-det")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/border")
    args = parser.parse_args()
    data_yaml, _, gt = split_ground_truth(args.data, "val")
    image_dir = data_yaml.parent / "images" / "val"
    names, predictions = [], []
    for weights in args.weights:
        detector = load_detector(weights, "onnx")
        model = Path(str(weights)).parent.name if str(weights).endswith(".pt") else str(weights)
        size = detector.imgsz
        variants = {
            f"{model} as predicted ({size})": BorderedDetector(detector, size, 0),
            f"{model} + 16 px border ({size + 32})": BorderedDetector(detector, size, 16),
            f"{model} + 32 px border ({size + 64})": BorderedDetector(detector, size, 32),
            f"{model} resized to {size + STRIDE}": BorderedDetector(detector, size + STRIDE, 0),
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
