"""Benchmark: `defects convert` against FiftyOne on the full real NEU-DET, side by side.

Both sides convert Pascal VOC into YOLO + COCO. Our side is timed as a whole process
(start-up included) running `defects convert`. FiftyOne's side imports the dataset with
its VOCDetectionDataset importer and exports COCODetectionDataset and YOLOv5Dataset,
timed in-process and as a whole process (interpreter, imports, database start).
Runs alternate, REPEATS times each, and the medians are compared.

    make bench-convert            # or: .venv/bin/python bench/convert.py --data PATH
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import detection.offline  # noqa: E402,F401  (offline switches for the child processes too)
from bench.common import machine, save  # noqa: E402

FIFTYONE_SCRIPT = r"""
import sys, time, json
t0 = time.perf_counter()
import fiftyone as fo
src, out = sys.argv[1], sys.argv[2]
t1 = time.perf_counter()
dataset = fo.Dataset.from_dir(dataset_type=fo.types.VOCDetectionDataset,
                              data_path=f"{src}/IMAGES", labels_path=f"{src}/ANNOTATIONS")
dataset.export(export_dir=f"{out}/coco", dataset_type=fo.types.COCODetectionDataset,
               label_field="ground_truth", export_media=False)
dataset.export(export_dir=f"{out}/yolo", dataset_type=fo.types.YOLOv5Dataset,
               label_field="ground_truth", export_media="symlink", split="train")
t2 = time.perf_counter()
boxes = dataset.count("ground_truth.detections")
n = len(dataset)
dataset.delete()
print(json.dumps({"import_s": t1 - t0, "in_process_s": t2 - t1, "images": n, "boxes": boxes}))
"""


def run_ours(data: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(REPO / ".venv/bin/defects"), "convert", str(data), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def run_fiftyone(data: Path, out: Path) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", FIFTYONE_SCRIPT, str(data), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    whole = time.perf_counter() - started
    return whole, json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/datasets/NEU-DET")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ours, theirs, theirs_in = [], [], []
    info = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_fiftyone(args.data, Path(tmp) / "fo_warm")  # first start creates the database
        for _ in range(args.repeats):
            ours.append(run_ours(args.data, Path(tmp) / "ours"))
            whole, info = run_fiftyone(args.data, Path(tmp) / "fo")
            theirs.append(whole)
            theirs_in.append(info["in_process_s"])
    result = {
        "machine": machine(),
        "ours_whole_process_s": statistics.median(ours),
        "fiftyone_whole_process_s": statistics.median(theirs),
        "fiftyone_in_process_s": statistics.median(theirs_in),
        "fiftyone_images": info.get("images"),
        "fiftyone_boxes": info.get("boxes"),
        "all_runs": {"ours": ours, "fiftyone_whole": theirs, "fiftyone_in_process": theirs_in},
    }
    result["speedup_whole_process"] = (
        result["fiftyone_whole_process_s"] / result["ours_whole_process_s"]
    )
    result["speedup_vs_fiftyone_in_process"] = (
        result["fiftyone_in_process_s"] / result["ours_whole_process_s"]
    )
    save("convert", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
