"""Benchmark: where the ONNX prediction path spends its time on this CPU.

Before speeding prediction up, see what there is to gain. For the fp32 and the int8
export of one model, on NEU-DET images, batches of 32:

* end to end, split into the path's stages (JPEG decode, letterbox and scaling to the
  model's input, the model, NMS), as ``OnnxDetector`` runs them;
* the model alone, at batch sizes 1, 4, 8 and 32 (is batching worth anything here?);
* ONNX Runtime's own profile of the model, its time per operator type (which kernels a
  faster path must beat: the convolutions, or the activations between them?).

Stages and batch sizes alternate between the two exports, median of REPEATS, so their
ratios hold on a busy machine. With ``--openvino`` (OpenVINO is not a dependency: run it
as below) the fp32 export also runs in OpenVINO, in f32, the model alone at batch 32,
beside ONNX Runtime's: is another runtime the faster path on this CPU?

    make bench-profile-predict                        # the released model, neu-det
    make bench-profile-predict WEIGHTS=weights/RUN/best.pt
    python3 -m uv run --with openvino python bench/profile_predict.py --openvino
"""

from __future__ import annotations

import collections
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import numpy as np  # noqa: E402

import detection.offline  # noqa: E402,F401
from bench.common import machine, save, throughput_arguments  # noqa: E402
from converters.pixels import read_image  # noqa: E402
from detection.predict import (  # noqa: E402
    OnnxDetector,
    batches,
    cpu_flags,
    export_int8,
    export_onnx,
    lacks_vnni,
    letterbox,
    nms_decode,
)
from detection.threads import cpu_threads  # noqa: E402
from detection.weights import is_released, resolve_weights  # noqa: E402

STAGES = ("decode", "letterbox", "model", "nms")
BATCH_SIZES = (1, 4, 8, 32)


def stage_seconds(detector: OnnxDetector, paths: list[Path]) -> dict[str, float]:
    """Seconds each stage of :meth:`OnnxDetector.at_ious` takes over ``paths``, batches of 32."""
    spent = dict.fromkeys(STAGES, 0.0)
    for chunk in batches(paths, 32):
        started = time.perf_counter()
        images = [read_image(p) for p in chunk]
        decoded = time.perf_counter()
        boxed = [
            letterbox(image, detector.imgsz, detector.border, detector.channels) for image in images
        ]
        batch = detector.model_input([b[0] for b in boxed])
        prepared = time.perf_counter()
        outputs = detector.session.run(None, {detector.input: batch})[0]
        ran = time.perf_counter()
        for out, (_, ratio, pad), image in zip(outputs, boxed, images):
            nms_decode(out, 0.25, 0.7, 300, ratio, pad, image.shape[:2])
        done = time.perf_counter()
        for stage, seconds in zip(
            STAGES, (decoded - started, prepared - decoded, ran - prepared, done - ran)
        ):
            spent[stage] += seconds
    return spent


def model_input(detector: OnnxDetector, count: int) -> np.ndarray:
    """``count`` random letterbox-sized images as the export takes them
    (:meth:`OnnxDetector.model_input`)."""
    side = detector.imgsz + 2 * detector.border
    shape = (count, side, side) + ((3,) if detector.channels == 3 else ())
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    return detector.model_input(list(images))


def operator_shares(onnx_path: Path, batch: np.ndarray, runs: int = 3) -> dict[str, float]:
    """ONNX Runtime's profile of ``runs`` model runs: each operator type's share of the
    kernel time, largest first (the session is set up as :class:`OnnxDetector` sets it)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="bench-profile-predict-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(runs):
            session.run(None, {name: batch})
        events = json.loads(Path(session.end_profiling()).read_text())
    spent: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[event["args"]["op_name"]] += event["dur"]
    total = sum(spent.values())
    return {op: round(us / total, 4) for op, us in spent.most_common()}


def openvino_model(onnx_path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The ONNX export compiled by OpenVINO for this CPU in f32 (on CPUs with bf16 it
    would otherwise run in bf16, another accuracy), with as many threads as ONNX Runtime;
    a function from the input batch to the output."""
    import openvino

    compiled = openvino.Core().compile_model(
        str(onnx_path),
        "CPU",
        {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": cpu_threads(),
        },
    )
    request = compiled.create_infer_request()
    return lambda batch: request.infer({0: batch})[0]


def main() -> None:
    parser = throughput_arguments(__doc__.splitlines()[0], count=160)
    parser.add_argument("--openvino", action="store_true", help="fp32 in OpenVINO too")
    args = parser.parse_args()

    paths = sorted(args.images.glob("*.jpg"))[: args.count]
    weights = resolve_weights(args.weights)
    scratch = Path(tempfile.mkdtemp(prefix="bench-profile-predict-"))
    if is_released(weights):  # its own exports, as users run them
        exports = {"fp32": weights.with_suffix(".onnx"), "int8": weights.with_suffix(".int8.onnx")}
    else:  # exports land beside the weights: make them from a copy, never in weights/
        copy = scratch / "model.pt"
        shutil.copyfile(weights, copy)
        fp32 = export_onnx(copy)
        calibration = sorted((args.data / "images" / "train").glob("*.jpg"))[:200]
        exports = {"fp32": fp32, "int8": export_int8(copy, calibration, OnnxDetector(fp32).imgsz)}
    detectors = {kind: OnnxDetector(path) for kind, path in exports.items()}

    stages: dict[str, dict[str, list[float]]] = {k: {s: [] for s in STAGES} for k in detectors}
    by_batch: dict[str, dict[int, list[float]]] = {
        k: {b: [] for b in BATCH_SIZES} for k in detectors
    }
    inputs = {kind: model_input(d, 32) for kind, d in detectors.items()}
    openvino = openvino_model(exports["fp32"]) if args.openvino else None
    openvino_seconds: list[float] = []
    for repeat in range(args.repeats + 1):  # the first round warms up
        for kind, detector in detectors.items():
            spent = stage_seconds(detector, paths)
            for size in BATCH_SIZES:
                started = time.perf_counter()
                for chunk in batches(list(inputs[kind]), size):
                    detector.session.run(None, {detector.input: np.stack(chunk)})
                if repeat:
                    by_batch[kind][size].append(time.perf_counter() - started)
            if repeat:
                for stage, seconds in spent.items():
                    stages[kind][stage].append(seconds)
        if openvino is not None:
            started = time.perf_counter()
            openvino(inputs["fp32"])
            if repeat:
                openvino_seconds.append(time.perf_counter() - started)

    result: dict = {
        "machine": machine(),
        "vnni": not lacks_vnni(cpu_flags()),
        "weights": str(args.weights),
        "images": len(paths),
        "canvas": {k: d.imgsz + 2 * d.border for k, d in detectors.items()},
    }
    for kind in detectors:
        median = {stage: statistics.median(s) for stage, s in stages[kind].items()}
        total = sum(median.values())
        result[kind] = {
            "images_per_second": len(paths) / total,
            "ms_per_image": {s: 1000 * t / len(paths) for s, t in median.items()},
            "share": {s: t / total for s, t in median.items()},
            "model_images_per_second_by_batch": {
                size: 32 / statistics.median(s) for size, s in by_batch[kind].items()
            },
            "operators": operator_shares(exports[kind], inputs[kind][:8]),
        }
    result["int8_over_fp32_model"] = (
        result["fp32"]["ms_per_image"]["model"] / result["int8"]["ms_per_image"]["model"]
    )
    if openvino is not None:
        fp32 = detectors["fp32"]
        reference = fp32.session.run(None, {fp32.input: inputs["fp32"]})[0]
        result["openvino_fp32"] = {
            "model_images_per_second": 32 / statistics.median(openvino_seconds),
            "over_onnxruntime_fp32": statistics.median(by_batch["fp32"][32])
            / statistics.median(openvino_seconds),
            "largest_output_difference": float(np.abs(openvino(inputs["fp32"]) - reference).max()),
        }
    shutil.rmtree(scratch, ignore_errors=True)
    save("profile_predict", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
