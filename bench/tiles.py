"""Benchmark: sliced inference (`--tile`) on strips of real steel, against mAP on NEU-DET's val.

A line camera's image is larger than the model's field of view: the released model was
trained on NEU-DET's 200x200 crops, and letterboxed whole a larger image shrinks every
defect. NEU-DET has no large images, so here its val images are laid out four by two
into 800x400 strips: aligned (the cells at multiples of 200 px, the last strip filled up
with other images, not scored twice) and offset (the cells half a cell off the strip's
corner, only the three whole cells of the middle row scored, every val image once). Each
strip is detected whole (letterboxed, defects shrunk to a quarter) and
tiled at 200 px with several overlaps; each strip's detections are cut back into its
cells by their centres and scored per image with pycocotools (conf 0.001, 100 per image,
ONNX fp32), paired with the images detected one by one, the best the strips can give.
Caveat: the strips have seams where two images meet, which real steel does not; a tile
astride a seam sees two half images. Aligned, the tiles of overlap 0 lie on the cells.

    make bench-tiles
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import detection.offline  # noqa: E402,F401
from bench.common import machine, save  # noqa: E402
from converters.pixels import read_image  # noqa: E402
from detection.compare import compare  # noqa: E402
from detection.evaluate import predict_coco, split_ground_truth  # noqa: E402
from detection.predict import (  # noqa: E402
    Detections,
    Detector,
    TiledDetector,
    coco_results,
    load_detector,
)

COLUMNS, ROWS, CELL = 4, 2, 200


def _cell(gt_image: dict, image_dir: Path) -> np.ndarray:
    pixels = read_image(image_dir / gt_image["file_name"])
    if pixels.shape[:2] != (CELL, CELL):
        raise SystemExit(f"{gt_image['file_name']}: not {CELL}x{CELL}")
    return pixels


def strips(gt: dict, image_dir: Path, offset: bool) -> list[tuple[dict, np.ndarray]]:
    """The val images laid out ``COLUMNS`` by ``ROWS`` into strips: each strip's scored
    images (id: where its cell starts, x and y) and pixels.

    ``offset``: the cells are moved half a cell right and down, so that no tile grid
    starting at the strip's corner lies on them: the strip is cut out of a grid one
    cell larger each way, and only the cells wholly inside it are scored (a row of
    ``COLUMNS - 1``); the rest is filled with the next val images, scored elsewhere.
    """
    images = sorted(gt["images"], key=lambda image: image["id"])
    pixels = {image["id"]: _cell(image, image_dir) for image in images}
    rows, columns = (ROWS + 1, COLUMNS + 1) if offset else (ROWS, COLUMNS)
    scored_per_strip = COLUMNS - 1 if offset else COLUMNS * ROWS
    shift = CELL // 2 if offset else 0
    laid = []
    for start in range(0, len(images), scored_per_strip):
        scored = images[start : start + scored_per_strip]
        others = [image for image in images if image not in scored]
        canvas = np.zeros((CELL * rows, CELL * columns, 3), np.uint8)
        origins = {}
        for index in range(rows * columns):
            row, column = divmod(index, columns)
            if offset:
                whole = row == 1 and 1 <= column <= COLUMNS - 1
                image = scored[column - 1] if whole and column - 1 < len(scored) else None
            else:
                image = scored[index] if index < len(scored) else None
            if image is None:  # filler
                image = others[(start + index) % len(others)]
            else:
                origins[image["id"]] = (CELL * column - shift, CELL * row - shift)
            canvas[CELL * row : CELL * (row + 1), CELL * column : CELL * (column + 1)] = pixels[
                image["id"]
            ]
        cropped = canvas[shift : shift + CELL * ROWS, shift : shift + CELL * COLUMNS]
        laid.append((origins, np.ascontiguousarray(cropped)))
    return laid


def cells(found: Detections, origins: dict[int, tuple[int, int]]) -> dict[int, Detections]:
    """A strip's detections cut back into its scored cells by their centres, in cell
    pixels."""
    centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
    per_image = {}
    for image_id, (x, y) in origins.items():
        offset = np.array([x, y, x, y], float)
        inside = np.all((centres >= offset[:2]) & (centres < offset[:2] + CELL), axis=1)
        boxes = np.clip(found.boxes[inside] - offset, 0, CELL)
        per_image[image_id] = Detections(boxes, found.scores[inside], found.classes[inside])
    return per_image


def on_strips(detector: Detector, laid: list) -> tuple[list[dict], float]:
    """COCO results of ``detector`` on every strip, per cell (at most 100 a cell, as
    pycocotools scores), and the seconds it took."""
    results, started = [], time.perf_counter()
    for origins, canvas in laid:
        # 100 for each cell a strip shows: a whole strip's 100 would be shared by its cells.
        found = detector([canvas], conf=0.001, max_det=100 * (COLUMNS + 1) * (ROWS + 1))[0]
        for image_id, detections in cells(found, origins).items():
            order = np.argsort(-detections.scores, kind="stable")[:100]
            kept = Detections(
                detections.boxes[order], detections.scores[order], detections.classes[order]
            )
            results += coco_results(kept, image_id, {i: i + 1 for i in detector.names})
    return results, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="neu-det", help=".pt or a released name")
    parser.add_argument("--data", type=Path, default=REPO / "datasets/converted/neu-det")
    parser.add_argument("--overlaps", default="0,0.1,0.25,0.5")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/tiles")
    args = parser.parse_args()
    truth = split_ground_truth(args.data, "val")
    gt = truth.gt
    detector = load_detector(args.weights, "onnx")
    started = time.perf_counter()
    alone = predict_coco(detector, gt, truth.image_dir)
    alone_seconds = time.perf_counter() - started
    result = {"machine": machine(), "weights": args.weights, "layouts": {}}
    for layout in ("aligned", "offset"):
        laid = strips(gt, truth.image_dir, offset=layout == "offset")
        names, predictions, seconds = ["each image alone"], [alone], [alone_seconds]
        variants = {"strips whole": detector}
        for overlap in (float(o) for o in args.overlaps.split(",")):
            variants[f"--tile {CELL} --tile-overlap {overlap}"] = TiledDetector(
                detector, CELL, overlap
            )
        for name, variant in variants.items():
            results, took = on_strips(variant, laid)
            names.append(name)
            predictions.append(results)
            seconds.append(took)
            print(layout, name, f"{took:.1f} s", flush=True)
        report = compare(gt, predictions, names, args.out / layout)
        rows = [
            {"variant": model["name"], "mAP50": model["mAP50"], "mAP50-95": model["mAP50-95"],
             "seconds": round(took, 1)}
            for model, took in zip(report["models"], seconds)
        ]  # fmt: skip
        differences = report["difference"]
        result["layouts"][layout] = {
            "strips": f"{len(laid)} strips of {CELL * COLUMNS}x{CELL * ROWS}",
            "scores": rows,
            "paired_against_first": differences if isinstance(differences, list) else [differences],
            "report": str(args.out / layout / "report.md"),
        }
        print(json.dumps(rows, indent=2))
    save("tiles", result)


if __name__ == "__main__":
    main()
