"""``defects predict`` and ``defects export``: detections on new images, PyTorch or ONNX.

The ONNX path is the fast CPU path: ONNX Runtime on the model ultralytics exports, with
ultralytics' own letterbox and class-aware NMS reproduced in NumPy/OpenCV (no torch
import), batched. Optional int8 (static QDQ quantisation, calibrated on real images,
taking uint8 pixels) is faster still; the benchmark states its speed and accuracy.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import itertools
import json
import math
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from converters.errors import ConversionError
from converters.files import naming
from converters.folders import write_folder
from converters.layouts import images_in
from converters.model import Box, Dataset, ImageAnnotation
from converters.pixels import narrowed_samples, read_image, write_image
from detection import offline  # noqa: F401  (before ultralytics)
from detection.boxes import merge_tiles, weighted_boxes_fusion
from detection.console import ultralytics_off_stdout
from detection.screening import DEFAULT_CONF
from detection.splits import recorded_field_of_view, scale_against_training
from detection.threads import cpu_threads
from detection.weights import (
    BACKENDS,
    NMS_IOU,
    TILE_OVERLAP,
    WeightsError,
    atomic_write_bytes,
    check_onnx,
    is_released,
    load_yolo,
    model_channels,
    model_imgsz,
    resolve_weights,
    tile_setting,
)

if TYPE_CHECKING:
    import onnx
    import torch
    from ultralytics import YOLO
    from ultralytics.engine.results import Results
    from ultralytics.nn.modules.block import DFL
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import DetectionModel

PAD_VALUE = 114  # ultralytics' letterbox grey
# What makes a folder an output of `predict` or `classify`, which write it whole.
PREDICTIONS_MARKER = "predictions.json"
# Grey pixels around every letterboxed image, on each side. Ultralytics' val pads its
# batches by half the largest stride (`rect=True, pad=0.5`: 16 of 32), its predict does
# not; its training keeps the `best.pt` that scores best on such bordered images, and
# mosaic puts image edges next to grey fill. Without the border, a NEU-DET model trained
# at 416 px lost 0.021 mAP50 and 0.029 mAP50:95 (`make bench-border`, docs/benchmarks.md).
BORDER = 16
# Sliced inference (TiledDetector): a box this close to a tile's edge inside the image,
# as a share of a tile, was cut by it. Chosen on NEU-DET's train split laid out into
# strips (0.02, 0.1, 0.2: docs/benchmarks.md, "Sliced inference"), never on val.
TILE_CUT_MARGIN = 0.1
# Without overlap, a defect's halves only meet at the edge two tiles share: cut boxes this
# close (a share of a tile) are joined. Chosen on train strips: offset, overlap 0, mAP50
# 0.149 (0) -> 0.558 (0.02) / 0.520 (0.05); with overlap 0.25 it cost 0.04, so it is
# applied without overlap only.
TILE_TOUCH = 0.02

# How far from the training scale an image may be drawn before predict says so: the
# release, scored at 1.15 and 1.23 times its training scale, lost 0.04 and 0.08 mAP50
# (docs/benchmarks.md, "NEU-DET detection from scratch").
OFF_SCALE = 1.25


@dataclass
class Detections:
    """One image's detections in original pixel coordinates."""

    boxes: np.ndarray  # [N, 4] xyxy
    scores: np.ndarray  # [N]
    classes: np.ndarray  # [N] class index


def collect_images(
    sources: list[Path],
    passed_over: list[Path] | None = None,
    out: Path | None = None,
    found_twice: list[tuple[Path, Path]] | None = None,
) -> list[Path]:
    """Image files given directly or found (recursively) in folders, in a stable order;
    a folder's hidden and macOS metadata files are left out
    (:func:`converters.layouts.is_not_data`), and its files of other kinds (by suffix)
    appended to ``passed_over``. A link named as an image that leads nowhere is kept,
    for its reading to report it (:func:`converters.imagesize.read_file`). Within a
    folder, the run's own output folder ``out`` and any earlier output of ``predict``,
    ``classify``, ``evaluate`` or ``compare`` (:func:`converters.folders.output_marker`)
    are not looked into: their annotated images, heatmaps, examples and VOC links are
    output, not input (``predict IMAGES --out IMAGES/pred`` run twice read the first run's
    images as new ones); such an output given as a source is refused.

    A file reached twice (a link to an image found too: a converter output's images
    inside the folder of the dataset it was converted from; or a source given twice) is
    read once, by its own path rather than a link's, and each other path appended to
    ``found_twice`` as (the path left out, the one kept): its detections twice over
    counted each one twice when scored.

    Raises:
        ConversionError: A source does not exist or is an earlier output, or nothing
            was found.
    """
    from converters.folders import OUTPUT_MARKERS, output_marker
    from detection.report import REPORT_MARKER

    ours = None if out is None else os.path.realpath(out)
    drawn = {PREDICTIONS_MARKER, REPORT_MARKER}  # outputs whose images are drawn on

    def is_output(folder: Path) -> bool:
        return os.path.realpath(folder) == ours or output_marker(folder) in drawn

    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir() and (kind := output_marker(source)) in drawn:
            raise ConversionError(
                f"{source}: {OUTPUT_MARKERS[kind]} (its {kind}): its images are drawn copies "
                "(boxes, heatmaps, examples), not input; give the folder of the images "
                "themselves"
            )
        if source.is_dir():
            found += images_in(
                source, recursive=True, passed_over=passed_over, skip=is_output, dangling=True
            )
        elif source.exists() or source.is_symlink():  # a link that leads nowhere: said so
            found.append(source)
        else:
            raise ConversionError(f"{source}: no such file or folder")
    if not found:
        raise ConversionError(f"no images in {', '.join(map(str, sources))}")
    same_file: dict[str, list[int]] = {}
    for index, path in enumerate(found):
        same_file.setdefault(os.path.realpath(path), []).append(index)
    kept = []
    for real, indices in same_file.items():
        # The file itself rather than a link to it, wherever the link sorts.
        keep = next((i for i in indices if os.path.abspath(found[i]) == real), indices[0])
        kept.append(keep)
        if found_twice is not None:
            found_twice += [(found[i], found[keep]) for i in indices if i != keep]
    return [found[i] for i in sorted(kept)]


def by_suffix(paths: list[Path]) -> dict[str, int]:
    """``{suffix: files}``, most first (no suffix: ``""``), of the files
    :func:`collect_images` passed over."""
    counts = Counter(p.suffix.lower() for p in paths)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def letterbox(
    image: np.ndarray, size: int, border: int = 0, channels: int = 3
) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Ultralytics' letterbox to a ``size`` square: resize keeping aspect, pad centred;
    then ``border`` more grey pixels on every side (a ``size + 2 * border`` square), in
    the ``channels`` the model takes (:func:`model_pixels`). Returns the canvas, the
    resize ratio and the image's offset in the canvas."""
    image = model_pixels(image, channels)
    height, width = image.shape[:2]
    ratio = min(size / height, size / width)
    # At least a pixel, as ultralytics' own letterbox keeps thin images: a 3x5000 line scan
    # drawn 416 wide is 0.25 rows high, and resized to 0 rows OpenCV failed an assertion.
    new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1) + border, round(dh + 0.1) + border
    left, right = round(dw - 0.1) + border, round(dw + 0.1) + border
    image = cv2.copyMakeBorder(
        image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return image, ratio, (left, top)


def to_image(
    xyxy: np.ndarray, ratio: float, pad: tuple[float, float], shape: tuple[int, int]
) -> np.ndarray:
    """Boxes in a letterboxed canvas mapped back to the image's pixels, clipped to it."""
    xyxy = xyxy.copy()
    xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - pad[0]) / ratio).clip(0, shape[1])
    xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - pad[1]) / ratio).clip(0, shape[0])
    return xyxy


def model_pixels(image: np.ndarray, channels: int) -> np.ndarray:
    """An image as OpenCV reads it (BGR) in the channels a model takes: itself for 3;
    for a one-channel model (``channels: 1`` in its data.yaml) its grey levels,
    ``cv2.COLOR_BGR2GRAY`` as ultralytics converts an array for such a model (exactly the
    pixels of a grey image; it trains on ``cv2.IMREAD_GRAYSCALE``, which for a colour JPEG
    takes its luma, within a grey level of this)."""
    return image if channels == 3 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def channels_first(letterboxed: list[np.ndarray], scaled: bool = False) -> np.ndarray:
    """Letterboxed images (:func:`model_pixels`: BGR, or grey) as one contiguous batch,
    channels first and BGR turned RGB: uint8 pixels (what an int8 export takes) or,
    ``scaled``, float32 in 0..1 (an fp32 export).

    Scaled, the pixels are divided in one pass from the channel-swapping view, the same
    numbers as converting and then dividing: a batch of 32 at 448 px is 77 MB of floats,
    and the pass saved was 3% of the fp32 path's time (``make bench-profile-predict``).
    """
    stacked = np.stack(letterboxed)
    view = stacked[:, None] if stacked.ndim == 3 else stacked[..., ::-1].transpose(0, 3, 1, 2)
    if scaled:
        return np.divide(view, np.float32(255), dtype=np.float32, order="C")
    return np.ascontiguousarray(view)


def nms_decode(
    output: np.ndarray,
    conf: float,
    iou: float,
    max_det: int,
    ratio: float,
    pad: tuple[float, float],
    shape: tuple[int, int],
) -> Detections:
    """One image's raw head output ``[4 + classes, anchors]`` to final detections."""
    scores_all = output[4:]
    classes = scores_all.argmax(0)
    scores = scores_all[classes, np.arange(scores_all.shape[1])]
    keep = scores > conf
    if not keep.any():
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int))
    cx, cy, w, h = output[:4, keep]
    scores, classes = scores[keep], classes[keep]
    if scores.size > 30000:  # ultralytics' max_nms
        top = np.argsort(-scores)[:30000]
        cx, cy, w, h, scores, classes = cx[top], cy[top], w[top], h[top], scores[top], classes[top]
    boxes = np.stack([cx - w / 2, cy - h / 2, w, h], 1)
    picked = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), classes.tolist(), conf, iou)
    picked = np.array(picked, dtype=int).reshape(-1)
    picked = picked[np.argsort(-scores[picked], kind="stable")][:max_det]
    boxes = boxes[picked]
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)
    xyxy = to_image(xyxy, ratio, pad, shape)
    return Detections(xyxy.astype(np.float32), scores[picked], classes[picked])


def check_input_size(imgsz: int, border: int, stride: int, weights: Path) -> None:
    """Refuses an image size whose bordered input the model cannot take (a tensor of
    another size reaches the network as it is, and its layers fail deep inside).

    Raises:
        ConversionError: ``imgsz + 2 * border`` is not a multiple of ``stride``; names the
            nearest sizes that are.
    """
    side = imgsz + 2 * border
    if side % stride == 0:
        return
    below, above = side - side % stride - 2 * border, side - side % stride + stride - 2 * border
    sizes = f"{below} or {above}" if below > 0 else f"{above}"
    raise ConversionError(
        f"{weights}: --imgsz {imgsz} makes a {side}-pixel input (with the {border}-pixel "
        f"border), not a multiple of the model's stride {stride}; use {sizes}"
    )


class OnnxDetector:
    """A YOLO detector exported to ONNX, run with ONNX Runtime on the CPU."""

    def __init__(
        self,
        path: Path,
        imgsz: int | None = None,
        threads: int | None = None,
        spinning: bool = True,
        border: int = BORDER,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Fatal only: its log repeats, in colour on stderr, each error it then raises,
        # which the command says in one line (an allocation too large, say).
        options.log_severity_level = 4
        # Spinning idle threads are 4% faster alone; sleeping ones leave the CPU to work
        # beside the model (the review starts FiftyOne's database meanwhile).
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
        check_onnx(Path(path))
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ONNX Runtime raises its own Fail/InvalidProtobuf kinds
            reason = str(error).strip().splitlines()[0][:200]
            raise WeightsError(f"{path}: not a loadable ONNX model ({reason})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "names" not in meta:
            raise WeightsError(
                f"{path}: an ONNX model without ultralytics' metadata (class names); "
                "export it with defects export"
            )
        self.names = {int(k): v for k, v in ast.literal_eval(meta["names"]).items()}
        exported = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
        self.imgsz = imgsz or int(exported[0])
        self.border = border
        self.path = Path(path)
        check_input_size(self.imgsz, border, int(meta.get("stride", 32)), self.path)
        model_input = self.session.get_inputs()[0]
        self.input = model_input.name
        # The int8 export takes uint8 pixels (BGR channels-last since session 37, RGB
        # channels-first before); an fp32 export takes RGB channels-first scaled to 0..1.
        self.takes_pixels = model_input.type == "tensor(uint8)"
        # Ultralytics' metadata says how many (1 for a model trained on grey images).
        self.channels = int(meta.get("channels", 3))
        self.channels_last = self.takes_pixels and model_input.shape[-1] == self.channels
        if self.takes_pixels and lacks_vnni(cpu_flags()):
            check_int8_weights(self.path)

    def __call__(
        self, images: list[np.ndarray], conf: float = 0.25, iou: float = NMS_IOU, max_det: int = 300
    ) -> list[Detections]:
        return [found[iou] for found in self.at_ious(images, (iou,), conf, max_det)]

    def model_input(self, letterboxed: list[np.ndarray]) -> np.ndarray:
        """Letterboxed images (:func:`letterbox`) as one batch the model takes."""
        if self.channels_last:
            stacked = np.stack(letterboxed)
            return stacked[..., None] if stacked.ndim == 3 else stacked
        return channels_first(letterboxed, scaled=not self.takes_pixels)

    def at_ious(
        self,
        images: list[np.ndarray],
        ious: tuple[float, ...],
        conf: float = 0.25,
        max_det: int = 300,
    ) -> list[dict[float, Detections]]:
        """Each image's detections at each NMS IoU of ``ious``, for one run of the model:
        the raw output is the same at every IoU, only NMS differs (choosing the NMS IoU
        on a split costs one prediction of it, not one per IoU)."""
        boxed = [letterbox(image, self.imgsz, self.border, self.channels) for image in images]
        outputs = self.session.run(None, {self.input: self.model_input([b[0] for b in boxed])})[0]
        return [
            {iou: nms_decode(out, conf, iou, max_det, ratio, pad, image.shape[:2]) for iou in ious}
            for out, (_, ratio, pad), image in zip(outputs, boxed, images)
        ]


class TorchDetector:
    """Ultralytics' own PyTorch predictor behind the same interface, given the images
    letterboxed and bordered as the ONNX path gives them (its own letterbox cannot add a
    border): a tensor, which ultralytics takes as already prepared."""

    def __init__(
        self,
        weights: Path,
        imgsz: int | None = None,
        device: str | None = None,
        classes: list[str] | None = None,
        border: int = BORDER,
    ) -> None:
        self.model = load_yolo(weights, "detect", classes)
        self.path = Path(weights)
        self.names = dict(self.model.names)
        self.imgsz = imgsz or model_imgsz(self.model)
        self.channels = model_channels(self.model)
        self.border = border
        self.device = device
        check_input_size(self.imgsz, border, int(self.model.model.stride.max()), self.path)

    def __call__(
        self, images: list[np.ndarray], conf: float = 0.25, iou: float = NMS_IOU, max_det: int = 300
    ) -> list[Detections]:
        import torch

        boxed = [letterbox(image, self.imgsz, self.border, self.channels) for image in images]
        batch = torch.from_numpy(channels_first([b[0] for b in boxed], scaled=True))
        results = self.model.predict(
            batch,
            imgsz=self.imgsz + 2 * self.border,
            conf=conf,
            iou=iou,
            max_det=max_det,
            device=self.device,
            verbose=False,
        )
        found = []
        for result, (_, ratio, pad), image in zip(results, boxed, images):
            canvas = ultralytics_detections(result)  # in the canvas' pixels
            boxes = to_image(canvas.boxes, ratio, pad, image.shape[:2])
            found.append(Detections(boxes, canvas.scores, canvas.classes))
        return found


def ultralytics_detections(result: Results) -> Detections:
    """One image's ultralytics ``Results`` as our detections."""
    return Detections(
        result.boxes.xyxy.cpu().numpy(),
        result.boxes.conf.cpu().numpy(),
        result.boxes.cls.cpu().numpy().astype(int),
    )


def load_detector(
    weights: Path | str,
    backend: str | None = None,
    imgsz: int | None = None,
    device: str | None = None,
    spinning: bool = True,
    classes: list[str] | None = None,
    tta: bool = False,
    tile: int | None = None,
    tile_overlap: float = TILE_OVERLAP,
    notice: Callable[[str], None] | None = None,
) -> Detector:
    """``torch``: the ``.pt``; ``onnx``: the ``.onnx`` beside it (exported if missing);
    ``onnx-int8``: the ``.int8.onnx`` beside it (``defects export --int8`` writes it;
    released models ship it); None: :func:`default_backend`'s choice.

    ``weights`` may name a released model (``neu-det``). ``spinning=False`` lets ONNX
    Runtime's idle threads sleep, for work running beside it. With ``classes`` (the
    data's), a model whose classes are not among them is refused. ``tta`` wraps the
    detector in :class:`FlipTTADetector`; ``tile`` (pixels) in :class:`TiledDetector`,
    around it. ``notice`` is told of an export written beside the user's weights.
    """
    backend = backend or default_backend(weights, device or "auto")
    exported = export_to_make(weights, backend)
    detector = _load_detector(weights, backend, imgsz, device, spinning, classes)
    if exported and notice:
        notice(f"Exported {exported} for ONNX Runtime (again only when the weights change)")
    detector = FlipTTADetector(detector) if tta else detector
    return TiledDetector(detector, tile, tile_overlap) if tile else detector


def _load_detector(
    weights: Path | str,
    backend: str,
    imgsz: int | None,
    device: str | None,
    spinning: bool,
    classes: list[str] | None,
) -> OnnxDetector | TorchDetector:
    weights = resolve_weights(weights)
    if backend == "torch":
        if weights.suffix == ".onnx":
            raise ConversionError(f"{weights}: an ONNX file needs --backend onnx")
        return TorchDetector(weights, imgsz, device, classes)
    if backend not in BACKENDS:
        raise ConversionError(f"unknown backend {backend!r} ({', '.join(BACKENDS)})")
    if weights.suffix == ".onnx":
        onnx_path = weights
    elif backend == "onnx-int8":
        onnx_path = weights.with_suffix(".int8.onnx")
        if not onnx_path.is_file():
            raise ConversionError(
                f"{onnx_path}: no int8 export beside {weights.name}; write it with "
                f"defects export --weights {weights} --int8 --calibration IMAGES"
            )
    else:
        onnx_path = weights.with_suffix(".onnx")
    if _stale(onnx_path, weights):
        if backend == "onnx-int8":
            raise ConversionError(
                f"{onnx_path}: older than {weights.name}, so made from other weights; export "
                f"it again: defects export --weights {weights} --int8 --calibration IMAGES"
            )
        onnx_path.unlink()  # training wrote new weights since: export them
    if not onnx_path.is_file() and onnx_path != weights:  # an .onnx given is checked as one
        onnx_path = export_onnx(weights, imgsz)
    detector = OnnxDetector(onnx_path, imgsz, spinning=spinning)
    unknown = [n for n in detector.names.values() if classes is not None and n not in classes]
    if unknown:
        raise WeightsError(
            f"{onnx_path}: its classes {list(detector.names.values())} do not match the "
            f"data's classes {list(classes)} ({', '.join(unknown)} not in the data)"
        )
    return detector


def default_backend(weights: Path | str, device: str = "auto") -> str:
    """The backend that runs ``weights`` where ``--backend`` is not given: ONNX Runtime,
    the faster path on a CPU (``make bench-predict``: 1.3x ultralytics' batched PyTorch,
    and without torch's import the command on one image took 0.55 s against 4.8 s), its
    export made beside the ``.pt`` the first time; ultralytics' PyTorch on a GPU
    (``device`` names one, or ``auto`` finds one), and where no export is there nor can
    be written (a read-only folder).
    """
    weights = resolve_weights(weights)
    if weights.suffix == ".onnx":
        return "onnx"  # torch cannot run it
    if device != "cpu" and (device != "auto" or cuda_available()):
        return "torch"
    usable = export_to_make(weights, "onnx") is None
    return "onnx" if usable or os.access(weights.parent, os.W_OK) else "torch"


def export_to_make(weights: Path | str, backend: str) -> Path | None:
    """The fp32 export that running ``weights`` by ``backend`` writes beside them first
    (there is none, or one older than the weights), or None."""
    weights = resolve_weights(weights)
    if backend != "onnx" or weights.suffix != ".pt":
        return None
    export = weights.with_suffix(".onnx")
    return None if export.is_file() and not _stale(export, weights) else export


def cuda_available() -> bool:
    """Whether torch has a CUDA GPU here, asked of torch only where Linux shows an NVIDIA
    driver (or WSL its GPU device): its import takes seconds, longer than predicting on
    a few images."""
    driver = any(Path("/proc/driver/nvidia/gpus").glob("*")) or Path("/dev/dxg").exists()
    if sys.platform == "linux" and not driver:
        return False
    import torch

    return torch.cuda.is_available()


def _stale(export: Path, weights: Path) -> bool:
    """An export beside a ``.pt`` that training has rewritten since (``best.pt`` moves on
    every better epoch), which would score other weights than the ones named. Released
    models are exempt: git sets their files' times, and their card checks their hashes."""
    return (
        weights.suffix == ".pt"
        and export.is_file()
        and weights.is_file()
        and not is_released(weights)
        and export.stat().st_mtime < weights.stat().st_mtime
    )


def answer_for(wrapper: FlipTTADetector | TiledDetector, detector: Detector) -> None:
    """Makes ``wrapper`` (a detector run through another) answer for the ``detector`` it
    runs: its classes, input size and file."""
    wrapper.detector = detector
    wrapper.names, wrapper.imgsz, wrapper.path = detector.names, detector.imgsz, detector.path


# Steel surface defects keep their class under a mirror image in either axis: the
# recipe already trains with flips both ways (``STEEL_ARGUMENTS`` in detection.train).
FLIPS = ("none", "left-right", "up-down", "both")
TTA_FUSION_IOU = 0.75  # chosen on NEU-DET's train split: docs/benchmarks.md, "Flip test-time"
# What `evaluate` predicts with: ultralytics val's confidence, pycocotools' 100 boxes an
# image. Each TTA view is detected so too, whatever threshold the fused boxes are cut at:
# a fused score averages its cluster's members and counts them, so views cut at the
# threshold itself gave lower fused scores than those the evaluation scored and the
# card's TTA operating points were chosen on (`predict --tta --conf best-f1` found
# crazing at recall 0.449 on NEU-DET's val, where the card says 0.507; `--tta` at 0.25
# kept no box of 0.257 that `--tta --conf 0.1` gave).
EVALUATION_CONF, EVALUATION_MAX_DET = 0.001, 100


def flip(image: np.ndarray, how: str) -> np.ndarray:
    """``image`` mirrored as ``how`` (one of :data:`FLIPS`) says, as a contiguous copy."""
    if how not in FLIPS:
        raise ValueError(f"unknown flip {how!r} ({', '.join(FLIPS)})")
    if how in ("left-right", "both"):
        image = image[:, ::-1]
    if how in ("up-down", "both"):
        image = image[::-1]
    return np.ascontiguousarray(image)


def unflip(detections: Detections, how: str, shape: tuple[int, int]) -> Detections:
    """Detections made on ``flip(image, how)`` mapped back onto ``image`` (of ``shape``
    height, width): flipping is its own inverse."""
    boxes = detections.boxes.copy()
    height, width = shape
    if how in ("left-right", "both"):
        boxes[:, [0, 2]] = width - detections.boxes[:, [2, 0]]
    if how in ("up-down", "both"):
        boxes[:, [1, 3]] = height - detections.boxes[:, [3, 1]]
    return Detections(boxes, detections.scores, detections.classes)


class FlipTTADetector:
    """Test-time augmentation: any detector of this module run on each image as it is and
    mirrored left-right, up-down and both (four views in one batch), the views'
    detections mapped back and fused by weighted boxes fusion
    (:func:`detection.boxes.weighted_boxes_fusion`). Four times the model's work for
    better boxes: on NEU-DET the localisation errors shrink most (docs/benchmarks.md).
    """

    def __init__(self, detector: Detector, fusion_iou: float = TTA_FUSION_IOU) -> None:
        answer_for(self, detector)
        self.fusion_iou = fusion_iou

    def __call__(
        self, images: list[np.ndarray], conf: float = 0.25, iou: float = NMS_IOU, max_det: int = 300
    ) -> list[Detections]:
        """The fused detections at ``conf`` or above, at most ``max_det`` an image; the
        views are detected at :data:`EVALUATION_CONF` whatever ``conf`` is, so a higher
        ``conf`` only drops fused boxes, as it does without TTA."""
        views = self.views_of(images, EVALUATION_CONF, iou, EVALUATION_MAX_DET)
        return [
            fuse_flips(found, image.shape[:2], conf, max_det, self.fusion_iou)
            for found, image in zip(views, images)
        ]

    def views_of(
        self, images: list[np.ndarray], conf: float = 0.25, iou: float = NMS_IOU, max_det: int = 300
    ) -> list[list[Detections]]:
        """Each image's detections on its :data:`FLIPS` views, in that order, as the
        wrapped detector found them (in the flipped images' coordinates; the first view
        is the image itself), before fusion."""
        views = [flip(image, how) for how in FLIPS for image in images]
        found = self.detector(views, conf=conf, iou=iou, max_det=max_det)
        return [found[i :: len(images)] for i in range(len(images))]


def fuse_flips(
    views: list[Detections],
    shape: tuple[int, int],
    conf: float = 0.25,
    max_det: int = 300,
    fusion_iou: float = TTA_FUSION_IOU,
) -> Detections:
    """One image's detections on its :data:`FLIPS` views (in that order), mapped back
    onto the image (``shape``: height, width) and fused; fused boxes below ``conf`` are
    dropped and at most ``max_det`` kept."""
    mapped = [unflip(found, how, shape) for found, how in zip(views, FLIPS, strict=True)]
    boxes, scores, classes = weighted_boxes_fusion(
        np.concatenate([d.boxes for d in mapped]),
        np.concatenate([d.scores for d in mapped]),
        np.concatenate([d.classes for d in mapped]),
        len(FLIPS),
        fusion_iou,
    )
    return above(Detections(boxes, scores, classes), conf, max_det)


def above(detections: Detections, conf: float, max_det: int) -> Detections:
    """The detections at ``conf`` or above, the first ``max_det`` of them; they come
    highest score first, as every detector, fusion and merge of this module gives them."""
    keep = np.flatnonzero(detections.scores >= conf)[:max_det]
    return Detections(detections.boxes[keep], detections.scores[keep], detections.classes[keep])


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Where tiles of ``tile`` pixels start along a side of ``length``, ``stride`` apart,
    the last one flush with the end (so every tile is whole); one tile when the side
    is no longer than a tile."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def tile_windows(shape: tuple[int, int], tile: int, overlap: float) -> list[tuple[int, ...]]:
    """The tiles (``x0, y0, x1, y1``) that cover an image of ``shape`` (height, width),
    neighbours overlapping by ``overlap`` of a tile."""
    height, width = shape
    stride = max(1, round(tile * (1 - overlap)))
    return [
        (x, y, min(x + tile, width), min(y + tile, height))
        for y in tile_starts(height, tile, stride)
        for x in tile_starts(width, tile, stride)
    ]


def tile_counts(paths: list[Path], tile: int, overlap: float) -> list[int]:
    """How many tiles each of ``paths`` is cut into (1: detected whole), from the
    images' headers; an image whose header does not read counts 1 (the prediction
    reports it)."""
    from converters.imagesize import image_size

    counts = []
    for path in paths:
        try:
            width, height = image_size(path)
        except OSError:  # CorruptImageError too: reported, and skipped, when predicting
            counts.append(1)
            continue
        counts.append(len(tile_windows((height, width), tile, overlap)))
    return counts


def tile_plan(paths: list[Path], tile: int | None, overlap: float) -> str | None:
    """What ``--tile`` will cost, said before the work: how many of ``paths`` are cut,
    into how many tiles in all, and the image cut the most; None when no image is larger
    than a tile (or no ``tile``). Each tile is one input to the model, so a small tile or
    a large overlap on large images multiplies the work: 32-pixel tiles overlapping by 0.9
    cut one 2048x1000 image into about 200,000, hours of work on a CPU."""
    if not tile:
        return None
    cut = [(n, path) for n, path in zip(tile_counts(paths, tile, overlap), paths) if n > 1]
    if not cut:
        return None
    most, at = max(cut, key=lambda count: count[0])
    return (
        f"Tiles of {tile} px overlapping by {overlap}: {len(cut)} of {len(paths)} images "
        f"larger than a tile, cut into {sum(n for n, _ in cut):,} tiles in all, each one "
        f"input to the model (the most: {at.name}, {most:,})"
    )


class TiledDetector:
    """Sliced inference: any detector of this module run on overlapping ``tile``-pixel
    tiles of each image larger than a tile, at the scale it was trained at, and the
    tiles' detections merged (:func:`detection.boxes.merge_tiles`). A model trained on
    NEU-DET's 200x200 crops finds defects of that size; letterboxed whole, a 2048-pixel
    strip would shrink them tenfold. Images no larger than a tile are detected whole.
    """

    def __init__(
        self, detector: Detector, tile: int, overlap: float = TILE_OVERLAP, batch: int = 16
    ) -> None:
        answer_for(self, detector)
        self.tile = tile
        self.overlap = overlap
        self.batch = batch
        # Told how many tiles each of the model's batches held, as they are detected
        # (:func:`detect_images` counts its progress in tiles so).
        self.on_tiles: Callable[[int], None] | None = None

    def __call__(
        self, images: list[np.ndarray], conf: float = 0.25, iou: float = NMS_IOU, max_det: int = 300
    ) -> list[Detections]:
        """The merged detections at ``conf`` or above, at most ``max_det`` an image. The
        tiles are detected at :data:`EVALUATION_CONF` whatever ``conf`` is, as TTA's
        views are: a box below ``conf`` (often the part of a defect its tile cuts) still
        joins the part its neighbour found, so a higher ``conf`` only drops merged boxes,
        and predict keeps what evaluate scored."""
        windows = [tile_windows(image.shape[:2], self.tile, self.overlap) for image in images]
        crops = [
            image[y0:y1, x0:x1] for image, tiles in zip(images, windows) for x0, y0, x1, y1 in tiles
        ]
        found: list[Detections] = []
        for chunk in batches(crops, self.batch):
            found += self.detector(chunk, conf=EVALUATION_CONF, iou=iou, max_det=EVALUATION_MAX_DET)
            if self.on_tiles:
                self.on_tiles(len(chunk))
        merged, at = [], 0
        for image, tiles in zip(images, windows):
            found_here = found[at : at + len(tiles)]
            at += len(tiles)
            whole = len(tiles) == 1
            detections = found_here[0] if whole else self._merge(image.shape[:2], tiles, found_here)
            merged.append(above(detections, conf, max_det))
        return merged

    def _merge(
        self, shape: tuple[int, int], tiles: list[tuple[int, ...]], found: list[Detections]
    ) -> Detections:
        height, width = shape
        margin = TILE_CUT_MARGIN * self.tile
        boxes, cut = [], []
        for (x0, y0, x1, y1), detections in zip(tiles, found):
            shifted = detections.boxes + np.array([x0, y0, x0, y0], dtype=float)
            boxes.append(shifted)
            cut.append(
                ((x0 > 0) & (shifted[:, 0] <= x0 + margin))
                | ((y0 > 0) & (shifted[:, 1] <= y0 + margin))
                | ((x1 < width) & (shifted[:, 2] >= x1 - margin))
                | ((y1 < height) & (shifted[:, 3] >= y1 - margin))
            )
        boxes_, scores, classes = merge_tiles(
            np.concatenate(boxes).reshape(-1, 4),
            np.concatenate([d.scores for d in found]),
            np.concatenate([d.classes for d in found]),
            np.concatenate(cut),
            np.concatenate([np.full(len(d.scores), t) for t, d in enumerate(found)]),
            touch=TILE_TOUCH * self.tile if self.overlap == 0 else 0.0,
            join_ratio=tile_setting(self.tile, self.overlap).get("join_ratio", 0.0),
        )
        return Detections(boxes_, scores, classes)


# Any detector of this module: a model's own, or one run through TTA or tiles. Each is
# called with a batch of images and answers for its model (its classes, input size, file).
Detector = OnnxDetector | TorchDetector | FlipTTADetector | TiledDetector


def export_onnx(
    weights: Path,
    imgsz: int | None = None,
    int8_calibration: list[Path] | None = None,
    int8_weight_bits: int = 7,
) -> Path:
    """Exports ``weights`` to ONNX (dynamic batch) beside the ``.pt``, whole or not at
    all: ultralytics writes into a temporary folder (:func:`_export`), and the export
    takes its place in one rename (:func:`atomic_write_bytes`). Written where
    ultralytics writes it, beside the weights, a full disk left half a model there,
    newer than the weights and so taken for their export.

    With ``int8_calibration`` images, also writes ``<name>.int8.onnx``
    (:func:`export_int8`) and returns its path.
    """
    weights = Path(weights)
    path = weights.with_suffix(".onnx")
    model = load_yolo(weights, "detect")
    imgsz = imgsz or model_imgsz(model)
    with tempfile.TemporaryDirectory(prefix="defects-export-") as tmp, _last_axis_dfl():
        atomic_write_bytes(path, _export(model, imgsz, Path(tmp)).read_bytes())
    if int8_calibration:
        return export_int8(weights, int8_calibration, imgsz, int8_weight_bits)
    return path


def _export(model: YOLO, imgsz: int, folder: Path) -> Path:
    """Ultralytics' ONNX export of a loaded model, written into ``folder``.

    Ultralytics writes an export beside the weights the model was read from
    (``pt_path``); the model is told they lie in ``folder``.

    Raises:
        OSError: The export could not be written; one that failed midway (a full disk,
            a quota), where Python names no file, names the export.
    """
    model.model.pt_path = str(Path(folder) / "model.pt")
    try:
        with ultralytics_off_stdout(quiet=True):  # its lines name the temporary folder
            exported = model.export(
                format="onnx",
                imgsz=imgsz,
                dynamic=True,
                # onnxslim's simplification gives the same outputs, bit for bit, at the
                # same speed in ONNX Runtime (which folds the graph itself when it loads
                # it), fp32 and int8 alike, and costs 4 to 5 s of every export.
                simplify=False,
                batch=1,
                device="cpu",
                verbose=False,
            )
    except OSError as error:
        raise naming(error, Path(model.model.pt_path).with_suffix(".onnx")) from None
    return Path(exported)


def export_int8(
    weights: Path, images: list[Path], imgsz: int | None = None, weight_bits: int = 7
) -> Path:
    """Writes ``<name>.int8.onnx`` beside ``weights``: an export with the head's output
    layers channels-last (:func:`_anchors_last_head`) and its upsamplings after the
    convolutions they feed (:func:`_upsample_after_convolving`), quantised by
    :func:`quantize_int8` with ``images`` as calibration data.

    That export is int8's alone: in fp32 ONNX Runtime computes the head's 1x1
    convolutions in its own blocked layout, 4% faster than the matrix products that
    spare int8 the layout changes (docs/benchmarks.md).
    """
    weights = Path(weights)
    model = load_yolo(weights, "detect")
    imgsz = imgsz or model_imgsz(model)
    _upsample_after_convolving(model.model)
    with tempfile.TemporaryDirectory(prefix="defects-int8-export-") as tmp:
        with _anchors_last_head():
            exported = _export(model, imgsz, Path(tmp))
        target = weights.with_suffix(".int8.onnx")  # as named, where the target is resolved
        quantize_int8(exported, images, imgsz, weight_bits, target=target)
        return target


def _upsample_after_convolving(detection_model: DetectionModel) -> None:
    """Rewrites ``detection_model`` (fused first) so that each nearest-neighbour
    upsampling whose output is concatenated and fed to a 1x1 convolution runs after
    that convolution instead.

    In yolo11's neck an ``Upsample`` doubles a feature map, a ``Concat`` puts it beside
    a backbone level and the next block's first convolution (1x1, ``cv1``) mixes them:
    ``W @ cat(up(x), y) + b``. That equals ``up(W_x @ x) + W_y @ y + b``, the upsampled
    input's share of the weights applied at a quarter of the pixels, since a nearest
    upsampling copies pixels and a 1x1 convolution mixes each pixel alone. The int8
    model then upsamples half as many channels and concatenates nothing: ONNX
    Runtime's uint8 ``Resize`` and ``QLinearConcat`` there were 12% of its time, and
    the rewritten model runs 1.12x faster (docs/benchmarks.md). The same numbers in
    fp32 (tested); the block's activation follows the sum as it followed the
    convolution. Layers this pattern does not fit are left as they are.
    """
    import torch
    from torch import nn
    from ultralytics.nn.modules import Concat, Conv

    class UpsampledSum(nn.Module):  # the Concat's place: cv1's sum before its activation
        def __init__(self, upsample: nn.Upsample, conv: nn.Conv2d, first: bool, low: int) -> None:
            super().__init__()
            taken = slice(0, low) if first else slice(conv.in_channels - low, None)
            rest = slice(low, None) if first else slice(0, conv.in_channels - low)
            self.upsample, self.first = upsample, first
            self.low = nn.Conv2d(low, conv.out_channels, 1, bias=False)
            self.low.weight = nn.Parameter(conv.weight.detach()[:, taken].clone())
            self.high = nn.Conv2d(conv.in_channels - low, conv.out_channels, 1)
            self.high.weight = nn.Parameter(conv.weight.detach()[:, rest].clone())
            self.high.bias = nn.Parameter(conv.bias.detach().clone())

        def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
            x, y = inputs if self.first else inputs[::-1]
            return self.upsample(self.low(x)) + self.high(y)

    detection_model.fuse(verbose=False)  # each Conv block's batch norm into its weights
    layers = detection_model.model
    upsampled_channels: dict[int, int] = {}
    hooks = [
        layer.register_forward_pre_hook(
            lambda _, inputs, i=i: upsampled_channels.__setitem__(i, inputs[0].shape[1])
        )
        for i, layer in enumerate(layers)
        if isinstance(layer, nn.Upsample)
    ]
    side = 2 * int(detection_model.stride.max())
    channels = detection_model.yaml.get("channels", 3)
    training = detection_model.training
    try:
        with torch.no_grad():
            detection_model.eval()(torch.zeros(1, channels, side, side))
    finally:
        detection_model.train(training)
        for hook in hooks:
            hook.remove()
    for i in range(len(layers) - 2):
        upsample, concat, block = layers[i], layers[i + 1], layers[i + 2]
        conv = getattr(getattr(block, "cv1", None), "conv", None)
        fits = (
            isinstance(upsample, nn.Upsample)
            and upsample.mode == "nearest"
            and isinstance(concat, Concat)
            and concat.d == 1
            and len(concat.f) == 2
            and -1 in concat.f
            and block.f == -1
            and isinstance(block.cv1, Conv)
            and not hasattr(block.cv1, "bn")
            and isinstance(conv, nn.Conv2d)
            and conv.kernel_size == (1, 1)
            and conv.stride == (1, 1)
            and conv.groups == 1
            and conv.bias is not None
            and not {i, i + 1} & set(detection_model.save)
        )
        if not fits:
            continue
        merged = UpsampledSum(upsample, conv, concat.f[0] == -1, upsampled_channels[i])
        passed = nn.Identity()
        for attribute in ("i", "f", "type", "np"):  # what ultralytics' forward reads
            setattr(passed, attribute, getattr(upsample, attribute))
            setattr(merged, attribute, getattr(concat, attribute))
        layers[i], layers[i + 1] = passed, merged
        block.cv1.conv = nn.Identity()


@contextlib.contextmanager
def _anchors_last_head() -> Iterator[None]:
    """Ultralytics' detection head exported anchors-last, for the int8 export.

    Ultralytics computes each output layer (a 1x1 convolution) channels-first, then
    takes the DFL softmax over the 16 distance bins of [B, 64, A] transposed to
    [B, 4, A, 16] (:func:`_last_axis_dfl`). ONNX Runtime keeps int8 activations
    channels-last, so that export changed layout twice per output layer and transposed
    the 64 box channels once more: 13% of the int8 model's time. Here each output layer
    is a matrix product of the channels-last features ([B * H * W, C] by its weights,
    Gemm), each level's box distributions stay [B, A, 4, 16] for the softmax, and only
    the 4 distances and the class logits are joined across levels and turn
    channels-first, as ultralytics outputs them ([B, 4 + classes, A]). The same numbers
    (tested against ultralytics' own export in fp32), and the int8 model runs 1.10-1.13x
    faster end to end with the same detections.
    """
    import torch
    from ultralytics.nn.modules.block import DFL
    from ultralytics.nn.modules.head import Detect

    # [B, C, H, W] -> [B, H * W, outputs]
    def anchors_last(head: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        *blocks, output = head
        if not (
            isinstance(output, torch.nn.Conv2d)
            and output.kernel_size == (1, 1)
            and output.groups == 1
        ):
            return head(x).flatten(2).transpose(1, 2)
        for block in blocks:
            x = block(x)
        rows = x.permute(0, 2, 3, 1).reshape(-1, output.in_channels)
        found = torch.nn.functional.linear(rows, output.weight.flatten(1), output.bias)
        return found.view(x.shape[0], -1, output.out_channels)

    def distances(dfl: DFL, x: torch.Tensor) -> torch.Tensor:  # [B, A, 4 * bins] -> [B, A, 4]
        batch, anchors, _ = x.shape
        return _expected_bins(dfl, x.view(batch, anchors, 4, dfl.c1)).view(batch, anchors, 4)

    def forward_head(
        self: Detect,
        x: list[torch.Tensor],
        box_head: torch.nn.ModuleList | None = None,
        cls_head: torch.nn.ModuleList | None = None,
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        if box_head is None or cls_head is None:  # as ultralytics' (fused one-to-one heads)
            return {}
        boxes = [anchors_last(box_head[i], x[i]) for i in range(self.nl)]
        if isinstance(self.dfl, DFL):  # (without one, reg_max 1, yolo26: the distances)
            # Each level's distributions to distances before the levels are joined:
            # the concatenation then copies 4 channels, not 64.
            boxes = [distances(self.dfl, level) for level in boxes]
        scores = torch.cat([anchors_last(cls_head[i], x[i]) for i in range(self.nl)], 1)
        # The 4 distances channels-first, as ultralytics decodes them.
        boxes = torch.cat(boxes, 1).transpose(1, 2)
        return {"boxes": boxes, "scores": scores.transpose(1, 2), "feats": x}

    def decoded(self: DFL, x: torch.Tensor) -> torch.Tensor:  # forward_head took them to distances
        return x

    originals = Detect.forward_head, DFL.forward
    Detect.forward_head, DFL.forward = forward_head, decoded
    try:
        yield
    finally:
        Detect.forward_head, DFL.forward = originals


def _expected_bins(dfl: DFL, logits: torch.Tensor) -> torch.Tensor:
    """Ultralytics' DFL arithmetic on distance-bin logits held in the last axis
    ([..., bins] -> [..., 1]): the softmax over the bins, then the expected bin (a
    product with the bins' values, 0..15, the DFL's fixed convolution weights)."""
    bins = dfl.conv.weight.view(dfl.c1, 1).to(logits.dtype)
    return logits.softmax(-1) @ bins


@contextlib.contextmanager
def _last_axis_dfl() -> Iterator[None]:
    """Ultralytics' DFL (the box decoding) exported with its softmax over the last axis.

    Ultralytics takes the softmax of the 16 distance bins over axis 1 of [B, 16, 4, A],
    and ONNX Runtime's Softmax is slow off the last axis (18% of the int8 model's time).
    Transposed to [B, 4, A, 16], softmax over the last axis and a product with the bins'
    values (0..15) computes the same numbers (equal outputs, tested) 16% faster in fp32.
    """
    from ultralytics.nn.modules.block import DFL

    def forward(self: DFL, x: torch.Tensor) -> torch.Tensor:
        batch, _, anchors = x.shape
        logits = x.view(batch, 4, self.c1, anchors).transpose(2, 3)
        return _expected_bins(self, logits).view(batch, 4, anchors)

    original = DFL.forward
    DFL.forward = forward
    try:
        yield
    finally:
        DFL.forward = original


def float_head_nodes(onnx_path: Path) -> list[str]:
    """The nodes left in fp32 by int8 quantisation: the detection head's output layers.

    The head is the last module (``/model.23/...`` in yolo11n). Its inner blocks, an
    ultralytics Conv each (``.../conv/Conv`` with its SiLU under ``.../act/``), are
    quantised like the rest of the network, and so are the layout changes that only
    move their outputs (:func:`_anchors_last_head`'s transpose and flatten in front of
    each output layer). What stays fp32 is every other head node: the output layers
    (box distributions and class logits, 1x1 convolutions or matrix products), the DFL
    and the decoding, where pixel coordinates and 0..1 scores are concatenated and cannot
    share one int8 scale. On NEU-DET the int8 model stays 0.0007 mAP50 below fp32 at 1.5x
    its speed; quantising only the body's convolutions was slower than fp32, and the
    output layers' weights in int8 cost the n416 release 0.0014 mAP50 more for 3%
    (docs/benchmarks.md).
    """
    import onnx

    nodes = onnx.load(str(onnx_path)).graph.node
    convolutions = [n.name for n in nodes if n.op_type == "Conv"]
    if not convolutions:
        return []
    head = "/" + convolutions[-1].split("/")[1] + "/"  # "/model.23/cv3.2/..." -> "/model.23/"
    quantised: set[str] = set()
    int8_tensors: set[str] = set()
    for node in nodes:  # in the graph's (topological) order
        inner = "/dfl/" not in node.name and re.search(r"/(conv|act)/", node.name)
        moves_int8 = node.op_type in ("Transpose", "Reshape") and node.input[0] in int8_tensors
        if node.name.startswith(head) and (inner or moves_int8):
            quantised.add(node.name)
            int8_tensors.update(node.output)
    return [n.name for n in nodes if n.name.startswith(head) and n.name not in quantised]


def int8_quantisation(channels: int) -> str:
    """How :func:`quantize_int8` quantises a model of ``channels`` (1: grey images), as a
    release card records it: a released int8 export recorded otherwise (or not at all) is
    made again when its weights are re-released."""
    pixels = "grey" if channels == 1 else "BGR"
    return (
        f"static QDQ, calibrated min-max on images bordered as predicted ({BORDER} px); "
        "int8 weights per channel in 7 bits (reduce_range); uint8 activations; the head's "
        "output layers fp32, anchors-last; the neck's upsamplings after the 1x1 "
        f"convolutions they fed; uint8 {pixels} pixels in, channels-last"
    )


def quantize_int8(
    onnx_path: Path,
    images: list[Path],
    imgsz: int,
    weight_bits: int = 7,
    target: Path | None = None,
) -> Path:
    """Static int8 quantisation of an exported model, calibrated on ``images``, into
    ``target`` (default: ``<name>.int8.onnx`` beside it).

    QDQ, per-channel int8 weights in ``weight_bits`` (7, which every CPU computes alike,
    or 8, for CPUs with VNNI alone: :func:`check_int8_weights`), uint8 activations,
    everything but the head's output layers (:func:`float_head_nodes`). The input is
    quantised with scale 1/255 and zero point 0, which is exact for 8-bit pixels, and
    then removed: the int8 model takes the letterboxed uint8 pixels themselves, as
    OpenCV holds them (BGR, channels-last: :func:`_take_pixels`), so neither the float
    conversion, its quantisation nor a change of layout is paid per image.
    :class:`OnnxDetector` reads the input's type and layout.

    ONNX Runtime's quantisation tools write temporary models into the working directory
    (``sym_shape_infer_temp.onnx`` and an external-data file when shape inference gives
    up), so they run inside a temporary folder with every path absolute.
    """
    if weight_bits not in (7, 8):
        raise ValueError(f"int8 weights in {weight_bits} bits: 7 or 8")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(images)

        def get_next(self) -> dict | None:
            path = next(self.items, None)
            if path is None:
                return None
            image, _, _ = letterbox(read_image(path), imgsz, BORDER, channels)
            return {"images": channels_first([image], scaled=True)}

    onnx_path = Path(onnx_path).resolve()
    images = [Path(image).resolve() for image in images]
    target = Path(target or onnx_path.with_suffix(".int8.onnx")).resolve()
    source = onnx.load(str(onnx_path))
    channels = source.graph.input[0].type.tensor_type.shape.dim[1].dim_value  # NCHW
    pixels = {"scale": np.array(1 / 255, np.float32), "zero_point": np.array(0, np.uint8)}
    with tempfile.TemporaryDirectory(prefix="defects-int8-") as tmp, contextlib.chdir(tmp):
        prepared = Path(tmp) / "prepared.onnx"
        quantised_path = Path(tmp) / "quantised.onnx"  # in its place whole, at the end
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantised_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # 7-bit weights (-64..64): on CPUs without VNNI (AVX2, AVX-512 before VNNI)
            # ONNX Runtime's uint8 x int8 kernels add pairs of products in 16 bits
            # (VPMADDUBSW), which saturates with 8-bit weights. The released model's 8-bit
            # export scored 0.005 mAP50 below fp32 on the Xeon it was made on and 0.119
            # below on an AMD EPYC (AVX2 only); in 7 bits, 2 * 255 * 64 < 2**15 cannot
            # saturate, so every CPU computes the same sums (onnxruntime's quantize_static
            # docs: reduce_range "may improve the accuracy ... on non-VNNI machine").
            # With VNNI (32-bit sums) 8 bits lose less: the n416 release's 8-bit export
            # scored 0.7469 mAP50 on a Zen 4 EPYC, fp32 0.7459, 7 bits 0.7369.
            reduce_range=weight_bits == 7,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            nodes_to_exclude=float_head_nodes(onnx_path),
            extra_options={"TensorQuantOverrides": {source.graph.input[0].name: [pixels]}},
        )
        quantised = onnx.load(str(quantised_path))
    _take_pixels(quantised.graph)
    _shapes_before_dequantising(quantised.graph)
    # Ultralytics' metadata (names, imgsz) is needed to read the outputs.
    del quantised.metadata_props[:]
    quantised.metadata_props.extend(source.metadata_props)
    atomic_write_bytes(target, quantised.SerializeToString())
    return target


def cpu_info(key: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The value of the first ``key`` line of Linux's /proc/cpuinfo (``model name``,
    ``model``, ``flags``), or None where there is none. The key is matched whole:
    ``model`` is not ``model name``."""
    if not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def unwrapped(detector: Detector) -> OnnxDetector | TorchDetector:
    """The model's own detector inside any of this module's wrappers (TTA, tiles)."""
    while hasattr(detector, "detector"):
        detector = detector.detector
    return detector


def compute_device(detector: Detector) -> str:
    """Where ``detector`` (any of this module's, wrapped or not) computes: ``cpu``, or the
    torch device its model sits on (``cuda:0``) once it has predicted."""
    detector = unwrapped(detector)
    if isinstance(detector, TorchDetector):
        return str(next(detector.model.model.parameters()).device)
    return "cpu"


def cpu_flags() -> set[str]:
    """This CPU's feature flags as Linux lists them (empty where it does not)."""
    return set((cpu_info("flags") or "").split())


def lacks_vnni(flags: set[str]) -> bool:
    """Whether ``flags`` are an x86 CPU's without VNNI, where ONNX Runtime's uint8 x int8
    kernels add products in pairs in 16 bits (see :func:`quantize_int8`)."""
    return "avx2" in flags and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def largest_int8_weight(path: Path) -> int:
    """The largest magnitude among an ONNX model's int8 weights (0 where it has none): at
    most 64 in 7 bits (:func:`quantize_int8`'s default), up to 127 in 8."""
    import onnx
    from onnx import numpy_helper

    return max(
        (
            int(np.abs(numpy_helper.to_array(tensor).astype(np.int16)).max())
            for tensor in onnx.load(str(path)).graph.initializer
            if tensor.data_type == onnx.TensorProto.INT8 and tensor.dims
        ),
        default=0,
    )


def check_int8_weights(path: Path) -> None:
    """Refuses an int8 export whose weights use 8 bits (``export --int8-bits 8``, or made
    before :func:`quantize_int8` kept them in 7 by default), for a CPU without VNNI,
    where they saturate.

    Raises:
        WeightsError: Some int8 weight lies outside -64..64.
    """
    if largest_int8_weight(path) > 64:
        raise WeightsError(
            f"{path}: an int8 export with 8-bit weights, which ONNX Runtime's int8 kernels "
            "overflow on this CPU (no VNNI; the released NEU-DET model lost 0.119 mAP50 so); "
            "export it again, in 7 bits: defects export --weights WEIGHTS --int8 "
            "--calibration IMAGES"
        )


def _take_pixels(graph: onnx.GraphProto) -> None:
    """Makes a quantised graph take uint8 pixels as OpenCV holds them: BGR, channels-last.

    Drops the QuantizeLinear (scale 1/255, zero point 0) that is the float input's only
    consumer; its DequantizeLinear reads the input itself, retyped uint8, through a
    transpose to channels-first, which cancels against the one ONNX Runtime puts in
    front of its channels-last int8 convolutions. The convolutions reading the pixels
    take their input channels in reverse order (BGR for RGB), which is exact: their int8
    weights are reordered. Outputs equal those of the RGB channels-first model, bit for
    bit, and a batch no longer needs its own transposed copy.
    """
    import onnx
    from onnx import helper, numpy_helper

    name = graph.input[0].name
    consumers = [n for n in graph.node if name in n.input]
    if len(consumers) != 1 or consumers[0].op_type != "QuantizeLinear":
        raise ValueError(f"int8 export: the input {name!r} is not quantised by one node")
    quantize = consumers[0]
    # Only the two constants of that node: converting every initializer would copy the
    # whole network's weights.
    constants = {i.name: i for i in graph.initializer if i.name in quantize.input[1:3]}
    scale, zero = (numpy_helper.to_array(constants[n]) for n in quantize.input[1:3])
    if not (np.isclose(scale, 1 / 255, rtol=1e-6) and zero == 0 and zero.dtype == np.uint8):
        raise ValueError(f"int8 export: the input is quantised with {scale}, {zero}, not 1/255, 0")
    dequantize = [n for n in graph.node if quantize.output[0] in n.input]
    if len(dequantize) != 1 or dequantize[0].op_type != "DequantizeLinear":
        raise ValueError(f"int8 export: the quantised input {name!r} is not dequantised once")
    pixels = dequantize[0].output[0]
    convolutions = [n for n in graph.node if pixels in n.input]
    if not convolutions:
        raise ValueError(f"int8 export: the pixels of {name!r} feed no convolution")
    producers = {output: n for n in graph.node for output in n.output}
    weights = {i.name: i for i in graph.initializer}
    for convolution in convolutions:
        reads = convolution.op_type == "Conv" and convolution.input[0] == pixels
        dequantized_weights = producers.get(convolution.input[1]) if reads else None
        if not (
            dequantized_weights is not None
            and dequantized_weights.op_type == "DequantizeLinear"
            and dequantized_weights.input[0] in weights
        ):
            raise ValueError(
                f"int8 export: the pixels of {name!r} feed more than int8 convolutions"
            )
    for convolution in convolutions:
        tensor = weights[producers[convolution.input[1]].input[0]]
        reordered = numpy_helper.to_array(tensor)[:, ::-1]  # [out, in, kh, kw]: BGR for RGB
        tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(reordered), tensor.name))
    transposed = f"{name}_channels_first"
    dequantize[0].input[0] = transposed
    graph.node.remove(quantize)
    graph.node.insert(
        0,
        helper.make_node(
            "Transpose", [name], [transposed], perm=[0, 3, 1, 2], name="pixels_channels_first"
        ),
    )
    tensor_type = graph.input[0].type.tensor_type
    tensor_type.elem_type = onnx.TensorProto.UINT8
    batch, channels, height, width = (copy.deepcopy(d) for d in tensor_type.shape.dim)
    del tensor_type.shape.dim[:]
    tensor_type.shape.dim.extend([batch, height, width, channels])


def _shapes_before_dequantising(graph: onnx.GraphProto) -> None:
    """Reads the shape of an int8 tensor where the graph reads that of its float copy.

    The head takes its anchors' grid and its batch size from feature maps' shapes; in a
    QDQ graph a Shape reads a DequantizeLinear's output, which ONNX Runtime then computes
    (a change of layout and a float copy of the whole map) for its shape alone. The int8
    tensor has the same shape; nodes whose outputs nothing reads any more are dropped.
    """
    producers = {output: n for n in graph.node for output in n.output}
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "Shape" else None
        if source is not None and source.op_type == "DequantizeLinear":
            node.input[0] = source.input[0]
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for n in graph.node for name in n.input} | outputs
        unread = [n for n in graph.node if not any(o in read for o in n.output)]
        if not unread:
            return
        for node in unread:
            graph.node.remove(node)


def batches(items: list, size: int) -> Iterator[list]:
    """Consecutive slices of ``items``, ``size`` at a time."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class DetectedImage:
    """One image read and detected, or why it could not be read."""

    path: Path
    pixels: np.ndarray | None  # None: not read, ``problem`` says why
    detections: Detections | None
    problem: str | None = None


def detect_images(
    detector: Callable[..., list[Detections]],
    paths: list[Path],
    batch: int = 16,
    progress: Callable[[int, int], None] | None = None,
    tiled: TiledDetector | None = None,
    **options: float,
) -> Iterator[DetectedImage]:
    """Reads (:func:`converters.pixels.read_image`) and detects ``batch`` images at a time;
    yields one :class:`DetectedImage` per path, in order. An image missing, cut short or
    not decodable has no pixels and no detections, and the batch goes on.

    Args:
        detector: Any detector of this module, or a function that calls one.
        progress: Told ``(done, total)`` as images are detected; in tiles where
            ``tiled`` (the :class:`TiledDetector` that ``detector`` runs) cuts them, as
            each of the model's batches of tiles is detected.
        options: To the detector (``conf``, ``iou``, ``max_det``).
    """
    in_tiles = tiled is not None and progress is not None
    units = tile_counts(paths, tiled.tile, tiled.overlap) if in_tiles else [1] * len(paths)
    through = list(itertools.accumulate(units, initial=0))  # units done after each image
    done, ceiling = 0, 0

    def advance(tiles: int) -> None:
        nonlocal done
        # At most the batch's own units: a header that said fewer tiles than the pixels
        # hold, or a detector run once per NMS IoU, would count ahead of the images.
        done = min(done + tiles, ceiling)
        progress(done, through[-1])

    if in_tiles:
        tiled.on_tiles = advance
    try:
        for start in range(0, len(paths), batch):
            loaded = []
            for path in paths[start : start + batch]:
                try:
                    loaded.append(DetectedImage(path, read_image(path), None))
                except OSError as error:
                    loaded.append(DetectedImage(path, None, None, error.strerror))
            ceiling = through[start + len(loaded)]
            readable = [image.pixels for image in loaded if image.pixels is not None]
            found = iter(detector(readable, **options) if readable else [])
            for number, image in enumerate(loaded, start + 1):
                if image.pixels is not None:
                    image.detections = next(found)
                if progress is not None:
                    done = max(done, through[number])
                    progress(done, through[-1])
                yield image
    finally:
        if in_tiles:
            tiled.on_tiles = None


def tiled_in(detector: Detector) -> TiledDetector | None:
    """The :class:`TiledDetector` that ``detector`` is, or runs inside it; None."""
    while not isinstance(detector, TiledDetector) and hasattr(detector, "detector"):
        detector = detector.detector
    return detector if isinstance(detector, TiledDetector) else None


def coco_results(detections: Detections, image_id: int, to_category: dict[int, int]) -> list[dict]:
    """One image's detections as COCO results (``[x, y, w, h]`` pixels, rounded so that
    a results file written and read back scores exactly the same)."""
    return [
        {
            "image_id": image_id,
            "category_id": to_category[int(cls)],
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(float(score), 5),
        }
        for (x1, y1, x2, y2), score, cls in zip(
            detections.boxes.tolist(), detections.scores.tolist(), detections.classes.tolist()
        )
    ]


def as_boxes(detections: Detections, names: dict[int, str]) -> list[Box]:
    """One image's detections as boxes of the data model (pixels, with confidences)."""
    return [
        Box(names[int(c)], *map(float, xyxy), confidence=float(s))
        for xyxy, s, c in zip(detections.boxes, detections.scores, detections.classes)
    ]


def voc_name(path: Path, taken: set[str]) -> str:
    """The file name an image gets in a VOC export of predictions: its own, or, where an
    image of another folder has its stem (a VOC annotation is named by the stem), its
    number before it."""
    name = path.name
    number = len(taken) + 1
    while Path(name).stem in taken:
        name, number = f"{number:06d}_{path.name}", number + 1
    taken.add(Path(name).stem)
    return name


def draw(image: np.ndarray, detections: Detections, names: dict[int, str]) -> np.ndarray:
    """Boxes with class and confidence drawn on a copy of ``image``."""
    canvas = image.copy()
    for (x1, y1, x2, y2), score, cls in zip(
        detections.boxes, detections.scores, detections.classes
    ):
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(canvas, p1, p2, (40, 40, 230), 2)
        cv2.putText(
            canvas,
            f"{names[int(cls)]} {score:.2f}",
            (p1[0] + 2, max(p1[1] - 4, 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (40, 40, 230),
            1,
            cv2.LINE_AA,
        )
    return canvas


def at_confidence(
    detections: Detections, thresholds: dict[str, float], names: dict[int, str]
) -> Detections:
    """The detections at or above their own class's confidence threshold (a class
    without one keeps every detection)."""
    lowest = np.array([thresholds.get(names.get(i, ""), 0.0) for i in range(max(names) + 1)])
    keep = detections.scores >= lowest[detections.classes.astype(int)]
    return Detections(detections.boxes[keep], detections.scores[keep], detections.classes[keep])


def scales_of(
    field: dict, sizes: list[tuple[Path, int, int]], imgsz: int, tile: int | None
) -> list[tuple[Path, int, int, float]]:
    """Each image (its path, width and height) with its
    :func:`detection.splits.scale_against_training` as drawn at ``imgsz`` (in ``tile``
    pixel tiles): what :func:`off_scale_note` reads."""
    return [
        (path, width, height, scale_against_training(field, width, height, imgsz, tile))
        for path, width, height in sizes
    ]


def is_off_scale(scale: float) -> bool:
    """Whether an image drawn at ``scale`` of the training scale is outside [1 /
    :data:`OFF_SCALE`, :data:`OFF_SCALE`]."""
    return not 1 / OFF_SCALE <= scale <= OFF_SCALE


def off_scale_note(
    field: dict | None, measured: list[tuple[Path, int, int, float]], imgsz: int
) -> dict | None:
    """What :func:`predict` and ``evaluate`` say of the images drawn off the scale the
    model learnt defects at: of ``measured`` (each image's path, width, height and
    :func:`detection.splits.scale_against_training`), those outside [1 /
    :data:`OFF_SCALE`, :data:`OFF_SCALE`], drawn smaller and drawn larger apart: how
    many, the farthest, and what brings it back if its pixels cover steel as the
    training images' did (a line camera's strip at the training resolution: tiles;
    smaller crops: a smaller ``--imgsz``). None when every image is near the training
    scale, or the scale is not recorded."""
    off_scale = [off for off in measured if is_off_scale(off[3])]
    if not field or not off_scale:
        return None
    images = len(measured)
    trained_side = max(field["width"], field["height"])
    note: dict = {"images": len(off_scale), "of": images, "trained": field}
    sentences = [
        f"{len(off_scale)} of {images} images are drawn off the scale the model was trained "
        f"at (images of {field['width']}x{field['height']} at {field['imgsz']} px), where its "
        "accuracy falls fast"
    ]
    for side, chosen in (
        ("smaller", [off for off in off_scale if off[3] < 1]),
        ("larger", [off for off in off_scale if off[3] > 1]),
    ):
        if not chosen:
            note[side] = None
            continue
        path, width, height, scale = max(chosen, key=lambda off: abs(math.log(off[3])))
        if side == "smaller":
            looks = 1 / scale
            remedy = f"--tile {max(32, round(imgsz * trained_side / field['imgsz']))} detects "
            remedy += "in tiles at the training scale"
        else:
            looks = scale
            remedy = f"--imgsz {max(32, round(imgsz / scale / 32) * 32)} draws it near it"
        note[side] = {
            "images": len(chosen),
            "farthest": {"file": str(path), "width": width, "height": height},
            "scale": round(scale, 3),
        }
        sentences.append(
            f"{len(chosen)} drawn {side}, farthest {path.name} ({width}x{height}): its "
            f"defects look {looks:.1f} times {side} to the model than in training; if its "
            f"pixels cover steel as the training images' did, {remedy}"
        )
    note["sentence"] = "; ".join(sentences) + "."
    return note


def predict(
    weights: Path,
    sources: list[Path],
    out: Path | None,
    conf: float | dict[str, float] = 0.25,
    backend: str | None = None,
    imgsz: int | None = None,
    batch: int = 16,
    device: str | None = None,
    save_images: bool = True,
    progress: Callable[[int, int], None] | None = None,
    tta: bool = False,
    iou: float = NMS_IOU,
    voc: bool = False,
    tile: int | None = None,
    tile_overlap: float = TILE_OVERLAP,
    notice: Callable[[str], None] | None = None,
) -> dict:
    """Predicts on images or folders (``tta``: with :class:`FlipTTADetector`; ``iou``:
    the NMS IoU; ``tile``: with :class:`TiledDetector`, images larger than ``tile``
    pixels cut into tiles overlapping by ``tile_overlap``), keeping detections at or
    above ``conf``: one threshold, or one per
    class name (operating points, as :func:`detection.evaluate.best_f1_confidences`
    reads them; a class without one gets ``DEFAULT_CONF``). ``progress(done,
    total)`` counts images, or tiles where any is cut; ``notice`` is told what the tiles
    will cost before the work (:func:`tile_plan`), which classes had no threshold and
    the export it writes beside the weights (:func:`load_detector`).

    With an ``out`` folder, writes annotated images, ``predictions.json`` (COCO results,
    each with its ``file_name`` and ``category``), ``images.json`` and ``errors.json``;
    with ``out=None`` writes nothing and returns the results instead. ``voc`` adds
    ``out/voc/``, the detections as a Pascal VOC dataset (:func:`write_voc_dataset`: the
    images linked, one annotation each, every box with its ``<confidence>``) for
    annotators to correct as pre-labels and ``defects convert`` to read back.
    Unreadable images are reported in ``errors`` and skipped; the batch goes on. An
    image the model sees only part of (:func:`converters.pixels.narrowed_samples`) is
    predicted on and noted in ``notes`` and its ``images.json`` entry.
    ``backend`` left out is :func:`default_backend`'s choice.
    Returns ``{"images": n, "detections": n, "images_flagged": n (with a detection),
    "errors": [...], "notes": [...],
    "passed_over": {suffix: files}, "found_twice": [[path, path], ...],
    "predictions": path or None, "results": [...]}`` (``passed_over``: the files in the
    folders given that are not images by their suffix; ``found_twice``: the images left
    out as links to one already found, with it: :func:`collect_images`).
    """
    if voc and out is None:
        raise ConversionError("a VOC export of the predictions needs an output folder (--out)")
    passed_over: list[Path] = []
    found_twice: list[tuple[Path, Path]] = []
    paths = collect_images(sources, passed_over, out, found_twice)
    plan = tile_plan(paths, tile, tile_overlap)
    if plan and notice:
        notice(plan)
    detector = load_detector(
        weights, backend, imgsz, device, tta=tta, tile=tile, tile_overlap=tile_overlap,
        notice=notice,
    )  # fmt: skip
    field = recorded_field_of_view(resolve_weights(weights))
    drawn_at = unwrapped(detector).imgsz
    measured: list[tuple[Path, int, int, float]] = []
    to_category = {i: i + 1 for i in detector.names}
    per_class = conf if isinstance(conf, dict) else None
    if per_class is not None and (
        unset := [name for _, name in sorted(detector.names.items()) if name not in per_class]
    ):
        # A class the evaluation found no operating point for (no ground truth of it in
        # its split, or no detection) kept every detection down to the lowest of the
        # other classes' thresholds: 60 a NEU-DET image at 0.002.
        per_class = {**per_class, **dict.fromkeys(unset, DEFAULT_CONF)}
        if notice:
            notice(
                f"no operating point for {', '.join(unset)} (the evaluation had no ground "
                f"truth or no detection of {'it' if len(unset) == 1 else 'them'}): at "
                f"confidence {DEFAULT_CONF}"
            )
    lowest = min(per_class.values(), default=0.0) if per_class is not None else conf
    images_json, results, errors, notes = [], [], [], []
    voc_images: list[ImageAnnotation] = []
    voc_stems: set[str] = set()

    def run(folder: Path | None) -> None:
        if folder is not None:
            folder.mkdir(parents=True)
            if save_images:
                (folder / "images").mkdir()
        found = detect_images(
            detector, paths, batch, progress, tiled_in(detector), conf=lowest, iou=iou
        )
        for read in found:
            path, pixels, detections = read.path, read.pixels, read.detections
            if pixels is None:
                errors.append({"file": str(path), "error": read.problem})
            else:
                if per_class is not None:
                    detections = at_confidence(detections, per_class, detector.names)
                image_id = len(images_json) + 1
                images_json.append(
                    {
                        "id": image_id,
                        "file_name": str(path),
                        "width": pixels.shape[1],
                        "height": pixels.shape[0],
                    }
                )
                note = narrowed_samples(path, pixels)
                if note:
                    images_json[-1]["note"] = note
                    notes.append({"file": str(path), "note": note})
                if field:
                    height, width = pixels.shape[:2]
                    scale = scale_against_training(field, width, height, drawn_at, tile)
                    images_json[-1]["scale"] = round(scale, 3)
                    measured.append((path, width, height, scale))
                image_results = [
                    {
                        **result,
                        "file_name": str(path),
                        "category": detector.names[result["category_id"] - 1],
                    }
                    for result in coco_results(detections, image_id, to_category)
                ]
                results.extend(image_results)
                # Per image, the answer a line wants first: anything found, and how sure.
                images_json[-1]["detections"] = len(image_results)
                if image_results:
                    top = max(image_results, key=lambda result: result["score"])
                    images_json[-1]["top"] = {"category": top["category"], "score": top["score"]}
                if voc:
                    voc_images.append(
                        ImageAnnotation(
                            voc_name(path, voc_stems),
                            path,
                            pixels.shape[1],
                            pixels.shape[0],
                            as_boxes(detections, detector.names),
                        )
                    )
                if folder is not None and save_images:
                    drawn = draw(pixels, detections, detector.names)
                    write_image(folder / "images" / f"{image_id:06d}_{path.stem}.jpg", drawn)
        if folder is not None:
            (folder / PREDICTIONS_MARKER).write_text(json.dumps(results) + "\n")
            categories = [{"id": i + 1, "name": n} for i, n in sorted(detector.names.items())]
            (folder / "images.json").write_text(
                json.dumps({"images": images_json, "categories": categories}) + "\n"
            )
            (folder / "errors.json").write_text(json.dumps(errors, indent=2) + "\n")
            if voc:
                from converters.voc import write_voc_dataset

                names = [n for _, n in sorted(detector.names.items())]
                write_voc_dataset(Dataset(names, voc_images), folder / "voc")

    predictions = None
    if out is None:
        run(None)
    else:
        # Written whole (the folder checked before any image is read): an earlier run's
        # annotated images never stay among these.
        write_folder(Path(out), run, PREDICTIONS_MARKER, sources)
        predictions = Path(out) / PREDICTIONS_MARKER
    return {
        "images": len(images_json),
        "detections": len(results),
        "images_flagged": len({result["image_id"] for result in results}),
        "errors": errors,
        "notes": notes,
        "off_scale": off_scale_note(field, measured, drawn_at),
        "passed_over": by_suffix(passed_over),
        "found_twice": [[str(path), str(first)] for path, first in found_twice],
        "predictions": None if predictions is None else str(predictions),
        "results": results,
    }
