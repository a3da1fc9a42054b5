"""Benchmark: CPU detection throughput, ultralytics' PyTorch predict against our ONNX path.

300 NEU-DET images at one image size, end to end (JPEG decode + preprocess + model +
NMS), four ways in one run, alternating, median of REPEATS:

* ultralytics predict, one image per call;
* ultralytics predict, batches of 32;
* ultralytics predict, batches of 32, as it ships: torch on its own ``os.cpu_count() - 1``
  threads (1 of 2 cores); every other path runs on the same threads
  (``detection.threads.cpu_threads``: every usable core), and the ratios compare those;
* ultralytics predict, batches of 32, on our canvas: every path of ours borders its
  input (``detection.predict.BORDER`` grey pixels a side, 448x448 at 416 px), so at
  equal image size it computes 16% more pixels than ultralytics; this row gives
  ultralytics as many (``imgsz`` + 2 * BORDER), for the ratio at equal work;
* ours: ONNX Runtime fp32, batches of 32 (`defects predict --backend onnx`);
* ours: ONNX Runtime int8 (`--backend onnx-int8`: static QDQ, every layer but the head's
  output layers, calibrated on 200 training images, uint8 BGR pixels in), batches of 32;
* ours: the int8 export with 8-bit weights (`export --int8-bits 8`), on CPUs with VNNI
  only (without it they overflow and the export is refused);
* ours with flip TTA (`--tta`: four views per image, fused), fp32 and int8.

And the command as a user runs it, a process each time (interpreter start, imports,
loading the model, one image): ``defects predict IMAGE --weights W`` with each
``--backend`` and with none (the default: ONNX Runtime on a CPU, which spares torch's
import), median wall time of REPEATS, alternating.

Accuracy at equal image size: pycocotools mAP50 of each path on the converted val split
(conf 0.001, 100 detections per image), so "faster" is checked at equal accuracy.

    make bench-predict                       # the released model, neu-det
    make bench-predict WEIGHTS=weights/RUN/best.pt
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import detection.offline  # noqa: E402,F401
from bench.common import machine, save, throughput_arguments  # noqa: E402
from converters.pixels import read_image  # noqa: E402
from detection.cocoeval import evaluate  # noqa: E402
from detection.evaluate import predict_coco  # noqa: E402
from detection.predict import (  # noqa: E402
    Detector,
    FlipTTADetector,
    OnnxDetector,
    TorchDetector,
    batches,
    cpu_flags,
    export_int8,
    export_onnx,
    lacks_vnni,
)
from detection.threads import cpu_threads, ultralytics_threads  # noqa: E402
from detection.weights import resolve_weights  # noqa: E402


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    import torch  # after the offline switches

    parser = throughput_arguments(__doc__.splitlines()[0], count=300)
    parser.add_argument("--imgsz", type=int, help="default: the size the model trained at")
    args = parser.parse_args()

    paths = sorted(args.images.glob("*.jpg"))[: args.count]
    # Exports land beside the weights: work on a copy, never in models/ or weights/.
    scratch = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    weights = scratch / "model.pt"
    shutil.copyfile(resolve_weights(args.weights), weights)
    torch_model = TorchDetector(weights, args.imgsz, "cpu")  # imgsz None: the model's own
    args.imgsz = torch_model.imgsz
    fp32 = export_onnx(weights, args.imgsz)
    calibration = sorted((args.data / "images" / "train").glob("*.jpg"))[:200]
    int8 = export_int8(weights, calibration, args.imgsz)
    onnx_fp32, onnx_int8 = OnnxDetector(fp32, args.imgsz), OnnxDetector(int8, args.imgsz)
    onnx_int8_8bit = None
    if not lacks_vnni(cpu_flags()):
        eight = scratch / "eight.pt"
        shutil.copyfile(weights, eight)
        onnx_int8_8bit = OnnxDetector(export_int8(eight, calibration, args.imgsz, 8), args.imgsz)

    def ultralytics_single() -> None:
        for path in paths:
            torch_model.model.predict(
                str(path), imgsz=args.imgsz, conf=0.25, device="cpu", verbose=False
            )

    def ultralytics_batched(threads: int, imgsz: int = args.imgsz) -> Callable[[], None]:
        def run() -> None:
            torch.set_num_threads(threads)
            for chunk in batches(paths, 32):
                torch_model.model.predict(
                    [str(p) for p in chunk], imgsz=imgsz, conf=0.25, device="cpu",
                    verbose=False,
                )  # fmt: skip
            torch.set_num_threads(cpu_threads())

        return run

    def ours(detector: Detector) -> None:
        for chunk in batches(paths, 32):
            detector([read_image(p) for p in chunk], conf=0.25)

    canvas = args.imgsz + 2 * onnx_int8.border
    modes = {
        "ultralytics_single": ultralytics_single,
        "ultralytics_batch32": ultralytics_batched(cpu_threads()),
        "ultralytics_batch32_as_shipped": ultralytics_batched(ultralytics_threads()),
        "ultralytics_batch32_our_canvas": ultralytics_batched(cpu_threads(), canvas),
        "ours_onnx_fp32_batch32": lambda: ours(onnx_fp32),
        "ours_onnx_int8_batch32": lambda: ours(onnx_int8),
        **({"ours_onnx_int8_8bit_batch32": lambda: ours(onnx_int8_8bit)} if onnx_int8_8bit else {}),
        "ours_onnx_fp32_tta_batch32": lambda: ours(FlipTTADetector(onnx_fp32)),
        "ours_onnx_int8_tta_batch32": lambda: ours(FlipTTADetector(onnx_int8)),
    }
    for run in modes.values():  # warm-up
        run()
    seconds = {name: [] for name in modes}
    for _ in range(args.repeats):
        for name, run in modes.items():
            seconds[name].append(timed(run))
    throughput = {name: len(paths) / statistics.median(s) for name, s in seconds.items()}

    # The whole command on one image, the weights' exports already beside them.
    one = ["predict", str(paths[0]), "--weights", str(weights)]
    commands = {
        "unasked": one,
        **{backend: [*one, "--backend", backend] for backend in ("torch", "onnx", "onnx-int8")},
    }
    command_runs: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, argv in commands.items():
            command = [sys.executable, "-m", "detection.cli", *argv]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=REPO)
            command_runs[name].append(time.perf_counter() - started)

    accuracy = {}
    gt_path = args.data / "annotations" / "instances_val.json"
    if gt_path.is_file():
        gt = json.loads(gt_path.read_text())
        image_dir = args.data / "images" / "val"
        scored_paths = [
            ("torch", torch_model),
            ("onnx_fp32", onnx_fp32),
            ("onnx_int8", onnx_int8),
            ("onnx_int8_8bit", onnx_int8_8bit),
            ("onnx_fp32_tta", FlipTTADetector(onnx_fp32)),
            ("onnx_int8_tta", FlipTTADetector(onnx_int8)),
        ]
        for name, detector in [(n, d) for n, d in scored_paths if d is not None]:
            scored = evaluate(gt, predict_coco(detector, gt, image_dir, max_det=100))
            accuracy[name] = {"mAP50": scored.stats["AP50"], "mAP50:95": scored.stats["AP50:95"]}

    result = {
        "machine": machine(),
        "images": len(paths),
        "imgsz": args.imgsz,
        "weights": str(args.weights),
        "canvas": {"ultralytics": args.imgsz, "ours": canvas},
        "threads": {"every_path": cpu_threads(), "ultralytics_as_shipped": ultralytics_threads()},
        "images_per_second": throughput,
        "ratio_vs_ultralytics_batch32": {
            n: t / throughput["ultralytics_batch32"] for n, t in throughput.items()
        },
        "ratio_vs_ultralytics_batch32_our_canvas": {
            n: t / throughput["ultralytics_batch32_our_canvas"] for n, t in throughput.items()
        },
        "one_image_command_s": {n: statistics.median(s) for n, s in command_runs.items()},
        "one_image_command": "defects " + " ".join(one),
        "mAP_on_val": accuracy,
        "all_runs_s": {**seconds, **{f"command_{n}": s for n, s in command_runs.items()}},
    }
    shutil.rmtree(scratch, ignore_errors=True)
    save("predict", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
