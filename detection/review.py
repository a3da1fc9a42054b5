"""``defects review``: a FiftyOne review session of predictions against ground truth.

The FiftyOne dataset is persistent (its MongoDB lives in ``.state/fiftyone/db``, or a
team's database through ``FIFTYONE_DATABASE_URI``). Ground truth comes from the
converters' own output (one parsing path: ours), predictions from our detector.
Evaluation is FiftyOne's COCO-style ``evaluate_detections`` with the eval key ``eval``,
so TP/FP/FN are filterable in the App; beside it, pycocotools on the same predictions.

Annotators tag ground-truth boxes ``reject`` and predicted boxes ``accept`` in the App;
``defects review export`` writes ground truth minus rejected plus accepted boxes through
the converters' writers (VOC, YOLO or COCO).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, NoReturn

from converters.coco import from_coco
from converters.convert import read_manifest
from converters.errors import ConversionError, Report
from converters.layouts import refuse_unconverted
from converters.model import SPLITS, Box, Dataset, ImageAnnotation
from converters.yolo import is_yolo_dataset
from detection import offline  # noqa: F401  (before fiftyone)
from detection.report import GT_COLOUR, PRED_COLOUR, unscored_sentence
from detection.weights import (
    NMS_IOU,
    REVIEW_CONF,
    TILE_OVERLAP,
    check_weights,
    resolve_weights,
    sha256,
    tile_setting,
)

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection
    from fiftyone.core.dataset import Dataset as FiftyOneDataset
    from fiftyone.core.labels import Detection, Detections
    from fiftyone.core.session import Session

    from detection.predict import Detector

EVAL_KEY = "eval"
REJECT, ACCEPT = "reject", "accept"
REVIEW_MAX_DETECTIONS = 100  # per image, as predictions are made (and COCO scores them)


def load_fiftyone() -> ModuleType:
    """FiftyOne, with a database service of its own database folder.

    FiftyOne attaches to any running database service of the user, whatever its folder:
    it looks for ``--51-service db --multi`` among the processes. While another
    project's App is open, a review would store its datasets and its annotators' tags in
    that project's database, and find none of them next time in ours (probed: a process
    with its own ``FIFTYONE_DATABASE_DIR`` listed another's datasets). The folder joins
    the service's arguments between those two, so that neither this FiftyOne nor one
    elsewhere attaches to a service of another folder; the service skips a flag it does
    not know with its value (``fiftyone/service/main.py``). Call this before the first
    database use: it patches the service's arguments, then connects (FiftyOne starts the
    service at the first connection, not on import).
    """
    import fiftyone as fo
    from fiftyone.core.service import DatabaseService

    def service_args(service: DatabaseService) -> list[str]:
        folder = str(Path(fo.config.database_dir).resolve())
        return ["--51-service", service.service_name, "--database-dir", folder, "--multi"]

    DatabaseService._service_args = property(service_args)
    _connect_database(fo)
    return fo


def _connect_database(fo: ModuleType) -> None:
    """Connects FiftyOne to its database now (it would at the first use); the error says
    where it tried, why that failed, and where mongod's log is.

    When FiftyOne runs our mongod, a failed try is followed by a second one with the port
    asked of FiftyOne's service again. A review in a full test run failed once with
    FiftyOne's bare "Could not connect to `mongod`": its mongod's log shows it listening
    0.3 s after its start and no connection in the 30 s pymongo waits, so the client
    tried another port or none (not reproduced in 106 reviews under load). A team's URI
    is tried once: a second try would only double the wait.
    """
    from fiftyone.core.odm import database

    service = None
    for attempt in range(2):
        try:
            database._connect()
            return
        except ConnectionError as error:
            failed = error
        database._disconnect()
        service = database._db_service
        if service is None or attempt:
            break
        port = service.port
        database._connection_kwargs["port"] = port
        os.environ["FIFTYONE_PRIVATE_DATABASE_PORT"] = str(port)
    kwargs = database._connection_kwargs
    # A team's URI without its password, if it holds one.
    where = re.sub(r"//[^@/]*@", "//", kwargs.get("host") or "") or (
        f"localhost:{kwargs.get('port', 27017)}"
    )
    reason = str(failed.__cause__ or failed).split(" (configured timeouts")[0]
    log = Path(fo.config.database_dir) / "log" / "mongo.log"
    raise ConnectionError(
        f"FiftyOne could not connect to its database at {where}"
        + (f", tried twice: {reason} (mongod's log: {log})" if service else f": {reason}")
    ) from failed


def from_detections(
    detections: Detections | None, width: int, height: int, keep: Callable[[Detection], bool]
) -> list[Box]:
    """FiftyOne Detections back to our boxes, keeping those ``keep(detection)`` accepts."""
    boxes = []
    for d in detections.detections if detections else []:
        if not keep(d):
            continue
        x, y, w, h = d.bounding_box
        boxes.append(
            Box(
                d.label,
                round(x * width, 3),
                round(y * height, 3),
                round((x + w) * width, 3),
                round((y + h) * height, 3),
                difficult=bool(d.get_field("difficult")) if d.has_field("difficult") else False,
            )
        )
    return boxes


def _converted_images(out: Path) -> tuple[list[str], list[ImageAnnotation], dict[str, dict]]:
    """A converter output's images with their ground truth, every split, as evaluate reads
    it (:func:`detection.evaluate.split_ground_truth`: a split whose label files and COCO
    file were found to disagree is read from the one edited since the conversion); the
    third value says so for each such split. Images linked to a source moved since are
    refused there (:func:`detection.train.resolve_data`). Each image's header is read
    (0.3 s for NEU-DET's 1,800): one written over since the conversion, at another size
    or unreadable, is refused as evaluate refuses it, where the App showed its boxes
    misplaced or a broken image."""
    from converters.imagesize import image_size
    from detection.evaluate import check_ground_truth_size, split_ground_truth

    manifest = read_manifest(out)
    images, edited = [], {}
    for split in SPLITS:
        # A split of no images (`convert --split 1,0` writes an empty val) has nothing
        # to review, and evaluate's ground truth refuses it.
        if manifest["counts"].get(split, {}).get("images"):
            truth = split_ground_truth(out, split)
            images += from_coco(truth.gt, truth.image_dir, split).images
            if truth.ground_truth_edited:
                edited[split] = truth.ground_truth_edited
    for image in images:
        try:
            size = image_size(image.path)
        except OSError as error:
            why = error.strerror or str(error)
            raise ConversionError(f"{image.path}: ground-truth image not read: {why}") from None
        check_ground_truth_size(image.path, size, (image.width, image.height))
    return list(manifest["classes"]), images, edited


@dataclass
class Source:
    """The images to review and where they came from."""

    classes: list[str]
    images: list[ImageAnnotation]
    labelled: bool
    skipped: list[dict] = field(default_factory=list)  # {"file", "error"}, as predict's
    # By split, where its label files and COCO file disagree (SplitTruth's).
    ground_truth_edited: dict[str, dict] = field(default_factory=dict)


def read_source(data: Path) -> Source:
    """The images to review: a converter output (classes, ground truth, splits), a YOLO
    dataset (its ``data.yaml``'s splits and labels), or a plain folder of images (no
    classes, no boxes). A plain folder's files that are not readable images are left out
    and listed in ``skipped``; a converter output was validated when it was written, and
    a YOLO dataset's labels are checked as they are read.

    Raises:
        ConversionError: ``data`` is a dataset in VOC XML, not yet converted.
    """
    data = Path(data)
    if (data / "manifest.json").is_file():
        classes, images, edited = _converted_images(data)
        return Source(classes, images, labelled=True, ground_truth_edited=edited)
    if is_yolo_dataset(data):
        from detection.evaluate import yolo_dataset_images

        return Source(*yolo_dataset_images(data), labelled=True)
    # A dataset in VOC XML is no plain folder: read as one, its boxes were passed over
    # without a word and only the model's were shown.
    refuse_unconverted(data)
    from converters.imagesize import image_size
    from detection.predict import collect_images

    source = Source([], [], labelled=False)
    for path in collect_images([data]):
        try:
            width, height = image_size(path)
        except OSError as error:
            source.skipped.append({"file": str(path), "error": str(error)})
            continue
        source.images.append(ImageAnnotation(path.name, path, width, height, [], None))
    return source


def predict_boxes(
    detector: Detector,
    paths: list[Path],
    conf: float,
    iou: float = NMS_IOU,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[Box] | str]:
    """The detector's boxes (pixels, with confidences) for each image, in order, read and
    run 32 at a time (``iou``: the NMS IoU); for an image that could not be read (missing,
    cut short, not decodable: :func:`converters.pixels.read_image`), why. ``progress``
    as :func:`detection.predict.detect_images` counts it (images, or tiles)."""
    from detection.predict import as_boxes, detect_images, tiled_in

    for read in detect_images(
        detector,
        paths,
        32,
        progress,
        tiled_in(detector),
        conf=conf,
        iou=iou,
        max_det=REVIEW_MAX_DETECTIONS,
    ):
        det = read.detections
        yield read.problem if det is None else as_boxes(det, detector.names)


def results_boxes(
    results_path: Path, classes: list[str], images: list[ImageAnnotation], conf: float
) -> list[list[Box]]:
    """Any detector's results (a COCO results file or a folder of YOLO ``.txt`` results,
    as ``evaluate --predictions`` reads them: :func:`detection.evaluate.read_results`) as
    each image's boxes at ``conf`` or above, most confident first, at most 100 (as
    predictions made here are stored). Results name their images by file name or stem,
    across every split; an image none names has no predictions.

    Raises:
        ConversionError: As :func:`detection.evaluate.read_results`; a result that names
            its image only by a number is refused (give its ``file_name``), since the
            numbers of another run are not this dataset's.
    """
    from detection.evaluate import read_results

    # Ids no results file can give by number: a result must name its image by file.
    gt = {
        "images": [
            {"id": f"#{index}", "file_name": image.name, "width": image.width,
             "height": image.height}
            for index, image in enumerate(images)
        ],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(classes)],
        "annotations": [],
    }  # fmt: skip
    boxes: list[list[Box]] = [[] for _ in images]
    for result in sorted(
        read_results(Path(results_path), gt, "--data's images"), key=lambda r: -r["score"]
    ):
        index = int(result["image_id"][1:])
        if result["score"] >= conf and len(boxes[index]) < REVIEW_MAX_DETECTIONS:
            x, y, w, h = result["bbox"]
            label = classes[result["category_id"] - 1]
            boxes[index].append(Box(label, x, y, x + w, y + h, confidence=result["score"]))
    return boxes


def detections_document(boxes: list[Box], width: int, height: int) -> dict:
    """Our boxes (pixels) as a FiftyOne ``Detections`` document (relative ``[x, y, w, h]``).

    This is the form ``fo.Detections(...).to_dict()`` gives; building it directly and
    writing it with ``set_values`` is ten times faster than constructing FiftyOne label
    objects (whose validation dominated loading NEU-DET: 10 s of 1,800 images).
    """
    from bson import ObjectId

    detections = []
    for b in boxes:
        detection = {
            "_id": ObjectId(),
            "_cls": "Detection",
            "tags": [],
            "label": b.label,
            "bounding_box": [b.xmin / width, b.ymin / height, b.width / width, b.height / height],
        }
        if b.confidence is not None:
            detection["confidence"] = b.confidence
        if b.difficult:
            detection["difficult"] = True
        detections.append(detection)
    return {"_cls": "Detections", "detections": detections}


def write_dataset(
    name: str,
    classes: list[str],
    images: list[ImageAnnotation],
    labelled: bool,
    predictions: list[list[Box]] | None,
    info: dict,
) -> FiftyOneDataset:
    """Creates (or replaces) the persistent FiftyOne dataset ``name``: one sample per
    image with its split as a tag, metadata, ``ground_truth`` and ``predictions``."""
    fo = load_fiftyone()
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    dataset = fo.Dataset(name, persistent=True)
    dataset.default_classes = classes
    dataset.add_samples(
        [
            fo.Sample(
                filepath=str(Path(image.path).absolute()),
                tags=[image.split] if image.split else ["unlabeled"],
                metadata=fo.ImageMetadata(width=image.width, height=image.height),
            )
            for image in images
        ],
        validate=False,  # built here from validated data
    )
    fields = {"ground_truth": [im.boxes for im in images]} if labelled else {}
    if predictions is not None:
        fields["predictions"] = predictions
    for field_name, boxes in fields.items():
        dataset.add_sample_field(
            field_name, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections
        )
        dataset.set_values(
            field_name,
            [detections_document(b, im.width, im.height) for b, im in zip(boxes, images)],
            validate=False,
        )
    dataset.info = info
    dataset.save()
    return dataset


def _mark_seen_in_training(
    dataset: FiftyOneDataset, weights: Path, images: list[ImageAnnotation], split: str
) -> dict:
    """Sets each sample's ``seen_in_training`` (whether the model was trained on it: a
    filter in the App's sidebar) and returns what
    :func:`detection.splits.seen_in_training` says of the ``split`` reviewed (an
    unlabelled folder: of every image)."""
    from detection.splits import seen_in_training

    scored = [i for i, image in enumerate(images) if image.split in (split, None)]
    summary, indices = seen_in_training(weights, [image.path for image in images], scored)
    seen = set(indices)
    dataset.add_sample_field("seen_in_training", load_fiftyone().BooleanField)
    dataset.set_values("seen_in_training", [i in seen for i in range(len(images))])
    return summary


# The saved view of the images drawn off the scale the model learnt defects at.
OFF_SCALE_VIEW = "off-training-scale"


def _mark_scale(
    dataset: FiftyOneDataset,
    weights: Path,
    images: list[ImageAnnotation],
    detector: Detector,
    tile: int | None,
) -> dict | None:
    """Sets each sample's ``scale`` (how large its defects are drawn for the model, 1 at
    the scale it learnt them at: :func:`detection.splits.scale_against_training`; a
    filter in the App's sidebar) and returns what ``predict`` says of the images drawn
    off that scale (:func:`detection.predict.off_scale_note`); nothing for weights that
    do not record their training scale."""
    from detection.predict import off_scale_note, scales_of, unwrapped
    from detection.splits import recorded_field_of_view

    field = recorded_field_of_view(weights)
    if not field:
        return None
    drawn_at = unwrapped(detector).imgsz
    sizes = [(Path(image.path), image.width, image.height) for image in images]
    measured = scales_of(field, sizes, drawn_at, tile)
    dataset.add_sample_field("scale", load_fiftyone().FloatField)
    dataset.set_values("scale", [round(off[3], 3) for off in measured])
    return off_scale_note(field, measured, drawn_at)


def save_off_scale_view(dataset: FiftyOneDataset) -> list[str]:
    """The images drawn off the training scale (:func:`detection.predict.is_off_scale`),
    the farthest first, as a saved view; none where every image is near it or none was
    measured."""
    from detection.predict import is_off_scale

    if not dataset.has_field("scale"):
        return []
    ids, scales = dataset.values(["id", "scale"])
    off = [(i, s) for i, s in zip(ids, scales) if s is not None and is_off_scale(s)]
    if not off:
        return []
    farthest_first = sorted(off, key=lambda found: -abs(math.log(found[1])))
    view = dataset.select([i for i, _ in farthest_first], ordered=True)
    dataset.save_view(OFF_SCALE_VIEW, view, overwrite=True)
    return [OFF_SCALE_VIEW]


def _in_background(function: Callable[..., object], *args: object) -> Future:
    """Runs ``function(*args)`` in a daemon thread (Ctrl-C does not wait for it)."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as error:  # handed to whoever asks for the result
            future.set_exception(error)

    threading.Thread(target=run, name=f"defects-{function.__name__}", daemon=True).start()
    return future


def _open_database(name: str) -> tuple[bool, float]:
    """Imports FiftyOne and starts its database; whether dataset ``name`` exists, and when
    the database was ready (``time.perf_counter``).

    A cold start is a slow step of a review: importing FiftyOne here, then FiftyOne's
    database service, a second interpreter, imports it again before it runs mongod (about
    9 s on this machine with bytecode). None of it needs the model, so it runs beside the
    predictions. A new dataset's name is checked here too, so that a name FiftyOne would
    refuse stops the predictions instead of ending them in a traceback.
    """
    fo = load_fiftyone()
    exists = fo.dataset_exists(name)
    if not exists:
        _check_new_dataset_name(fo, name)
    return exists, time.perf_counter()


def _check_new_dataset_name(fo: ModuleType, name: str) -> None:
    """Refuses a name FiftyOne would refuse when it creates the dataset: one with no
    letter or digit, over its length, or whose slug (its name in the App's URLs) is
    another dataset's (FiftyOne's ``_validate_dataset_name``, by its public parts)."""
    from fiftyone.core.utils import to_slug

    try:
        slug = to_slug(name)
    except ValueError as error:
        raise ConversionError(
            f"--name {name!r}: FiftyOne cannot name a dataset so: {error}"
        ) from error
    clash = next((other for other in fo.list_datasets() if to_slug(other) == slug), None)
    if clash is not None:
        raise ConversionError(
            f"--name {name!r}: its name in FiftyOne's URLs, {slug!r}, is already that of "
            f"the dataset {clash!r}; choose another name, or --name {clash!r} to reopen it"
        )


@contextmanager
def _fiftyone_progress_off() -> Iterator[None]:
    """FiftyOne's INFO lines ("Evaluating detections...", "Performing IoU sweep...") are
    its progress, printed on stdout ahead of the review's own report; its warnings stay."""
    import logging

    logger = logging.getLogger("fiftyone")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def evaluate(dataset: FiftyOneDataset, split: str = "val") -> dict:
    """FiftyOne COCO-style evaluation on ``split`` (eval key ``eval``), pycocotools beside it."""
    from detection.cocoeval import coco_from_relative
    from detection.cocoeval import evaluate as coco_evaluate
    from detection.tide import decompose

    view = dataset.match_tags(split)
    if len(view) == 0:
        raise ConversionError(f"no images tagged '{split}' to evaluate")
    with _fiftyone_progress_off():
        results = view.evaluate_detections(
            "predictions",
            gt_field="ground_truth",
            eval_key=EVAL_KEY,
            method="coco",
            compute_mAP=True,
            classwise=True,
        )
    classes = dataset.default_classes
    report = results.report(classes=classes)
    # The same predictions through pycocotools (our report's scorer), read back in bulk.
    columns = view.values(
        [
            "metadata.width",
            "metadata.height",
            "ground_truth.detections.label",
            "ground_truth.detections.bounding_box",
            "predictions.detections.label",
            "predictions.detections.bounding_box",
            "predictions.detections.confidence",
        ]
    )
    gt, detections = coco_from_relative(*columns[2:], classes, list(zip(*columns[:2])))
    ours = coco_evaluate(gt, detections, sizes=False)  # the "all" figures alone
    errors = decompose(gt, detections)
    missing = [c.name for c in ours.classes if not c.ground_truth]
    conf = dataset.info.get("prediction_conf")
    return {
        "split": split,
        "images": len(view),
        "fiftyone_mAP50_95": float(results.mAP()),
        "pycocotools_mAP50_95": ours.stats["AP50:95"],
        "pycocotools_mAP50": ours.stats["AP50"],
        "difference": float(results.mAP()) - ours.stats["AP50:95"],
        # Both leave a class with no ground-truth box out of every mean.
        "unscored": unscored_sentence(missing, len(ours.classes), split),
        "per_class": {c: report.get(c, {}) for c in classes},
        # TIDE on the same predictions (stored down to the review's confidence floor).
        "errors": {"ap50": errors.ap50, "dAP": errors.delta, "counts": errors.counts()},
        # Where each class's F1 peaks at IoU 0.5: the App's first screen starts there.
        "best_f1_confidence": {
            c.name: c.best_f1_confidence
            for c in ours.classes
            if c.best_f1_confidence == c.best_f1_confidence  # not NaN
        },
        "note": "FiftyOne's COCO-style mAP averages IoU 0.50:0.95 over 101 recall points "
        "(FiftyOne issue 5493: it is not mAP50); its per-class precision/recall/F1 "
        f"are at IoU 0.50 for all predictions stored (conf >= {conf})."
        + stored_conf_sentence(conf),
    }


def stored_conf_sentence(conf: float | None) -> str:
    """What the review's mAP leaves out when its predictions are stored from ``conf``
    (``--conf``, 0.05 by default: few enough for the App) and `defects evaluate` scores
    a model's down to :data:`detection.predict.EVALUATION_CONF`: the release scored 0.7372
    mAP50 in a review and 0.7491 in its evaluation, the same int8 predictions cut at 0.05
    and at 0.001. Empty when nothing is left out."""
    from detection.predict import EVALUATION_CONF

    if conf is None or conf <= EVALUATION_CONF:
        return ""
    return (
        f" Predictions under confidence {conf} are not stored, so this mAP can be below "
        f"`defects evaluate`'s, which scores a model's down to {EVALUATION_CONF} "
        f"(`--conf {EVALUATION_CONF}` here gives its figures, in a slower review)."
    )


START_VIEW = "start-here"


def save_views(
    dataset: FiftyOneDataset, classes: list[str], thresholds: dict[str, float] | None = None
) -> list[str]:
    """The views annotators need, saved on the dataset (listed in the App's view bar).

    ``start-here``, where the App opens: the images with the most errors first, showing
    each class's predictions from its best-F1 confidence (``thresholds``); every
    prediction stays in the dataset, reachable with the confidence slider once the
    view is cleared.
    """
    from fiftyone import ViewField as F

    saved = []
    for name in list(dataset.list_saved_views()):
        dataset.delete_saved_view(name)

    def save(name: str, view: SampleCollection) -> None:
        dataset.save_view(name, view, overwrite=True)
        saved.append(name)

    for cls in classes:
        save(
            f"false-positives-{cls}",
            dataset.filter_labels("predictions", (F(EVAL_KEY) == "fp") & (F("label") == cls)),
        )
        save(
            f"missed-{cls}",
            dataset.filter_labels("ground_truth", (F(EVAL_KEY) == "fn") & (F("label") == cls)),
        )
    save(
        "low-iou-matches",
        dataset.filter_labels("predictions", (F(EVAL_KEY) == "tp") & (F(f"{EVAL_KEY}_iou") < 0.7)),
    )
    most_errors_first = dataset.sort_by(F(f"{EVAL_KEY}_fp") + F(f"{EVAL_KEY}_fn"), reverse=True)
    save("most-errors-first", most_errors_first)
    thresholds = thresholds or {}
    confident = [
        (F("label") == cls) & (F("confidence") >= thresholds[cls])
        for cls in classes
        if cls in thresholds
    ]
    # A class without a threshold (never predicted) keeps all its predictions.
    confident += [F("label") == cls for cls in classes if cls not in thresholds]
    start = most_errors_first
    if confident and len(confident) > len([c for c in classes if c not in thresholds]):
        start = most_errors_first.filter_labels("predictions", F.any(confident), only_matches=False)
    save(START_VIEW, start)
    return saved


def _hex(bgr: tuple[int, int, int]) -> str:
    return "#{2:02x}{1:02x}{0:02x}".format(*bgr)


# The report's colours (ground truth green, predictions red), so the App and examples/
# read alike.
FIELD_COLOURS = {"ground_truth": _hex(GT_COLOUR), "predictions": _hex(PRED_COLOUR)}


def set_colours(dataset: FiftyOneDataset) -> None:
    """Ground truth and predictions in two clearly different colours in the App."""
    fo = load_fiftyone()
    fields = [
        {"path": path, "fieldColor": colour}
        for path, colour in FIELD_COLOURS.items()
        if dataset.has_field(path)
    ]
    dataset.app_config.color_scheme = fo.ColorScheme(color_by="field", fields=fields)
    dataset.save()


def save_unlabeled_views(dataset: FiftyOneDataset) -> list[str]:
    from fiftyone import ViewField as F

    view = dataset.sort_by(F("predictions.detections").map(F("confidence")).max(), reverse=True)
    dataset.save_view("by-confidence", view, overwrite=True)
    return ["by-confidence"]


def prepare(
    data: Path,
    name: str,
    weights: Path | None,
    split: str = "val",
    backend: str | None = None,
    conf: float = REVIEW_CONF,
    rebuild: bool = False,
    tta: bool = False,
    iou: float = NMS_IOU,
    tile: int | None = None,
    tile_overlap: float = TILE_OVERLAP,
    results: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> dict:
    """Builds the dataset (or reopens it, tags and all, unless ``rebuild``), evaluates,
    saves views; returns a summary with timings.

    Args:
        data: A converter output (ground truth + splits) or a plain folder of images.
        name: The FiftyOne dataset name.
        weights: Detector weights for the ``predictions`` field (optional with ground truth).
        split: The split to evaluate.
        backend: ``onnx`` (the fast CPU path), ``onnx-int8`` or ``torch``; by default
            the one :func:`detection.predict.default_backend` chooses.
        conf: Lowest confidence of the predictions stored.
        rebuild: Start over from ``data`` even if the dataset exists (drops its tags).
        tta: Predict with flip test-time augmentation (four times the model's work).
        iou: The predictions' NMS IoU.
        tile: Predict images larger than ``tile`` pixels in tiles overlapping by
            ``tile_overlap`` (:class:`detection.predict.TiledDetector`).
        results: Instead of ``weights``, any detector's results to show as the
            predictions (:func:`results_boxes`; labelled data only: its classes name the
            results' categories).
        progress: Told ``(done, total)`` as ``weights`` predict (images, or tiles).
        notice: Told what the tiles will cost before the work
            (:func:`detection.predict.tile_plan`) and of the export written beside
            ``weights`` (:func:`detection.predict.load_detector`).
    """
    started = time.perf_counter()
    if weights is not None:
        if results is not None:
            raise ConversionError("review takes --weights or --predictions, not both")
        check_weights(weights)  # before a YOLO dataset's check imports ultralytics
    source = read_source(Path(data))
    classes, images, labelled = source.classes, source.images, source.labelled
    database, detector, predictions = None, None, None
    present = sorted({image.split for image in images if image.split}, key=SPLITS.index)
    if labelled and (weights or results) and split not in present:  # before predicting
        raise ConversionError(
            f"{data}: no '{split}' images to evaluate (--split; its splits: "
            f"{', '.join(present) or 'none'})"
        )
    if results is not None:
        if not labelled:
            raise ConversionError(
                f"{data}: --predictions needs labelled data (a converter output or a YOLO "
                "dataset), whose classes name the results' categories"
            )
        predictions = results_boxes(results, classes, images, conf)
    if weights is not None:
        from detection.predict import load_detector, tile_plan

        paths = [image.path for image in images]
        plan = tile_plan(paths, tile, tile_overlap)
        if plan and notice:
            notice(plan)
        detector = load_detector(
            weights,
            backend,
            spinning=False,
            classes=classes if labelled else None,
            tta=tta,
            tile=tile,
            tile_overlap=tile_overlap,
            notice=notice,
        )
        predictions, predicted_images = [], []
        found = predict_boxes(detector, paths, conf, iou, progress)
        for image, boxes in zip(images, found):
            if isinstance(boxes, list):
                predictions.append(boxes)
                predicted_images.append(image)
            elif labelled:
                raise ConversionError(f"{image.path}: not read: {boxes}")
            else:  # the header was readable, the pixels are not
                source.skipped.append({"file": str(image.path), "error": boxes})
            if database is None:
                # Started once the first batch is through, so every import prediction
                # needs is done and the two threads never import the same modules at once.
                database = _in_background(_open_database, name)
            elif database.done() and database.exception() is not None:
                break  # raised below, without predicting the rest for nothing
            elif (
                not rebuild
                and database.done()
                and database.exception() is None
                and database.result()[0]
            ):
                predictions = None  # reopening: the stored predictions are kept
                break
        else:
            images = predicted_images
    if not images:  # none had a readable header, or none of those decoded
        raise ConversionError(f"{data}: no readable images ({len(source.skipped)} skipped)")
    predicted = time.perf_counter()
    database = database or _in_background(_open_database, name)
    exists, database_ready = database.result()
    opened = time.perf_counter()
    fo = load_fiftyone()
    reused = exists and not rebuild
    from detection.evaluate import results_sha256

    prediction_settings = {
        "weights": str(weights) if weights else None,
        "weights_sha256": sha256(resolve_weights(weights)) if weights else None,
        "predictions": str(results) if results else None,
        "predictions_sha256": results_sha256(Path(results)) if results else None,
        "prediction_conf": conf,
        "prediction_tta": tta,
        "prediction_iou": iou,
        "prediction_tile": tile_setting(tile, tile_overlap),
    }
    not_applied = []
    if reused:
        # Reopening keeps every tag annotators made; rebuild starts over from DATA.
        dataset = fo.load_dataset(name)
        labelled = dataset.has_field("ground_truth")
        has_predictions = dataset.has_field("predictions")
        if weights is not None or results is not None:
            # The stored predictions stay; say so when this run asked for other ones.
            # (datasets stored before --iou, --tile and --predictions were recorded were
            # predicted from weights at NMS_IOU, whole)
            stored = {
                "prediction_iou": NMS_IOU,
                "prediction_tile": None,
                "predictions": None,
                "predictions_sha256": None,
                **dataset.info,
            }
            asked = (
                [("--weights", "weights_sha256"), ("--conf", "prediction_conf"),
                 ("--tta", "prediction_tta"), ("--iou", "prediction_iou"),
                 ("--tile", "prediction_tile")]
                if weights is not None
                else [("--predictions", "predictions_sha256"), ("--conf", "prediction_conf")]
            )  # fmt: skip
            not_applied = [
                option for option, key in asked if stored.get(key) != prediction_settings[key]
            ]
    else:
        if not labelled and detector is None:
            raise ConversionError(f"{data}: unlabelled images need --weights to show predictions")
        if detector is not None:
            classes = classes or [detector.names[i] for i in sorted(detector.names)]
        shown = {}
        if results is not None:  # how many images the results give any prediction
            named = sum(1 for boxes in predictions if boxes)
            shown = {"predictions_shown": {"images": named, "of": len(images)}}
        dataset = write_dataset(
            name,
            classes,
            images,
            labelled,
            predictions,
            {"source": str(data), "classes": classes, **prediction_settings, **shown},
        )
        has_predictions = predictions is not None
        if weights is not None:
            resolved = resolve_weights(weights)
            dataset.info["seen_in_training"] = _mark_seen_in_training(
                dataset, resolved, images, split
            )
            off_scale = _mark_scale(dataset, resolved, images, detector, tile)
            if off_scale:
                dataset.info["off_scale"] = off_scale
            dataset.save()
    loaded = time.perf_counter()
    summary = {
        "name": name,
        "samples": len(dataset),
        "labelled": labelled,
        "reused": reused,
        "skipped": source.skipped,
    }
    if source.ground_truth_edited:
        summary["ground_truth_edited"] = source.ground_truth_edited
    for key in ("seen_in_training", "predictions_shown", "off_scale"):
        if key in dataset.info:
            summary[key] = dataset.info[key]
    if not_applied:
        summary["not_applied"] = not_applied
        summary["stored_predictions"] = {
            key: stored.get(key)
            for key in (
                "weights",
                "predictions",
                "prediction_conf",
                "prediction_tta",
                "prediction_iou",
                "prediction_tile",
            )
        }
    if labelled and has_predictions:
        summary["evaluation"] = evaluate(dataset, split)
        summary["views"] = save_views(
            dataset, dataset.default_classes, summary["evaluation"]["best_f1_confidence"]
        )
        from detection.mistakes import MISTAKES_VIEW, compute_mistakes, mistakes_view

        # Reopening keeps the stored predictions and ground truth, so their mistakes too.
        if not (reused and "mistakes" in dataset.info):
            dataset.info["mistakes"] = compute_mistakes(dataset)
            dataset.save()
        summary["mistakes"] = dataset.info["mistakes"]
        dataset.save_view(MISTAKES_VIEW, mistakes_view(dataset), overwrite=True)
        summary["views"].append(MISTAKES_VIEW)
    elif not labelled:
        summary["views"] = save_unlabeled_views(dataset)
    if "views" in summary:
        summary["views"] += save_off_scale_view(dataset)
    set_colours(dataset)
    summary["fields"] = sorted(dataset.get_field_schema())
    # Prediction and the database start overlap: "predict" and "database" (ready) both
    # count from the start; "load" and "evaluate" follow the later of the two.
    summary["seconds"] = {
        "predict": predicted - started,
        "database": database_ready - started,
        "load": loaded - opened,
        "evaluate": time.perf_counter() - loaded,
        "total": time.perf_counter() - started,
    }
    return summary


def check_app_address(address: str, port: int) -> None:
    """Refuses an App ``address:port`` this machine cannot listen on, before a review's
    work: FiftyOne finds out only when it launches the App, after the predictions, in a
    60 s wait and a traceback (``ServiceListenTimeout``). Where the port holds another
    FiftyOne App, FiftyOne would show the dataset through that App, whose database may be
    another project's (:func:`load_fiftyone`), so that is refused too.

    Both asked: whether the address is this machine's and free to bind, then whether
    anything answers there (a bind alone can succeed beside a listener: on a wildcard
    address, or in a sandboxed network stack).
    """
    import socket

    in_use = ConversionError(
        f"the App cannot listen on {address}:{port}: the port is in use (a FiftyOne App "
        "still open, or another program); close it, or choose another with --port"
    )
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the App's server
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise in_use from error
            raise ConversionError(
                f"the App cannot listen on {address}:{port}: {error.strerror or error} "
                "(--address is one of this machine's addresses: 127.0.0.1 by default, "
                "0.0.0.0 for all)"
            ) from error
    # The address is this machine's (bound above), so this connection stays on it.
    answering = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    try:
        socket.create_connection((answering, port), timeout=2).close()
    except OSError:
        return  # nothing answers there
    raise in_use


def launch(
    name: str, port: int = 5151, address: str = "127.0.0.1", view: str | None = None
) -> Session:
    """Opens the App on ``address:port`` (loopback by default) and serves until Ctrl-C."""
    import signal

    from fiftyone.core.service import ServiceListenTimeout

    def stop(_signum: int, _frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    # Ctrl-C and a plain `kill` both end the session cleanly, even where the shell
    # started us with SIGINT ignored (background jobs).
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    fo = load_fiftyone()
    dataset = fo.load_dataset(name)
    shown = dataset.load_saved_view(view) if view else None
    try:
        session = fo.launch_app(dataset, view=shown, port=port, address=address, auto=False)
    except ServiceListenTimeout as error:  # taken since check_app_address
        raise ConversionError(
            f"the App could not listen on {address}:{port} (taken since the review began?): "
            "run it again with another --port; the dataset is kept, with its tags"
        ) from error
    host = f"[{address}]" if ":" in address else address  # an IPv6 address in a URL
    print(f"FiftyOne App: http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
    return session


def export_corrected(name: str, out: Path, to: str = "voc") -> dict:
    """Ground truth minus ``reject``-tagged boxes plus ``accept``-tagged predictions,
    written through the converters' writers; returns (and writes) the change summary."""
    fo = load_fiftyone()
    if not fo.dataset_exists(name):
        raise ConversionError(f"no review dataset named {name!r} (known: {fo.list_datasets()})")
    dataset = fo.load_dataset(name)
    classes = list(dataset.default_classes)
    has_gt = dataset.has_field("ground_truth")
    has_pred = dataset.has_field("predictions")
    images, removed, added, changed = [], Counter(), Counter(), []
    for sample in dataset.select_fields(
        [f for f in ("ground_truth", "predictions", "metadata") if dataset.has_field(f)]
    ):
        w, h = sample.metadata.width, sample.metadata.height
        gt = sample["ground_truth"] if has_gt else None
        pred = sample["predictions"] if has_pred else None
        kept = from_detections(gt, w, h, lambda d: REJECT not in d.tags)
        accepted = from_detections(pred, w, h, lambda d: ACCEPT in d.tags)
        rejected = from_detections(gt, w, h, lambda d: REJECT in d.tags)
        removed.update(b.label for b in rejected)
        added.update(b.label for b in accepted)
        if rejected or accepted:
            changed.append(
                {
                    "image": Path(sample.filepath).name,
                    "rejected": [[b.label, *b.coords] for b in rejected],
                    "accepted": [[b.label, *b.coords] for b in accepted],
                }
            )
        split = next((t for t in sample.tags if t in SPLITS), None)
        images.append(
            ImageAnnotation(
                Path(sample.filepath).name,
                Path(sample.filepath),
                w,
                h,
                kept + accepted,
                split or "train",
            )
        )
    corrected = Dataset(classes, sorted(images, key=lambda im: im.name))
    out = Path(out)
    if to == "voc":
        from converters.voc import write_voc_dataset

        write_voc_dataset(corrected, out)
    elif to in ("yolo", "coco"):
        from converters.convert import write_output
        from converters.definitions import from_class_list
        from converters.layouts import SourceLayout
        from converters.source import SourceDataset

        source = SourceDataset(
            corrected,
            Report(boxes_in_input=corrected.box_count),
            SourceLayout(
                Path(dataset.info.get("source", ".")), None, f"FiftyOne review export of {name!r}"
            ),
            from_class_list(classes, name=name),
        )
        ratios = (0.8, 0.2)
        write_output(source, out, ratios, seed=0)
    else:
        raise ConversionError(f"--to {to!r}: choose voc, yolo or coco")
    summary = {
        "dataset": name,
        "format": to,
        "images": len(images),
        "boxes": corrected.box_count,
        "rejected": dict(removed),
        "accepted": dict(added),
        "changed_images": changed,
    }
    (out / "changes.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
