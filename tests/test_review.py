"""FiftyOne review: build, evaluate, views, tagging that persists, corrected export,
and the App as a person sees it in headless Chromium.

Each FiftyOne step runs in its own process against a database folder of its own, so
closing and reopening the database is real, and the developer's database is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from converters.coco import from_coco
from converters.definitions import load_definition
from converters.errors import Report
from converters.model import Box, ImageAnnotation
from converters.voc import parse_voc_xml, validate_objects
from converters.yolo import from_yolo_lines
from tests.conftest import DEFECTS
from tests.helpers import roboflow_export

pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


# A client of a folder's database service, holding it until its stdin closes (argv: a
# dataset to create first, if any).
HOLD_THE_DATABASE = """
import sys
from detection.review import load_fiftyone
fo = load_fiftyone()
fo.Dataset(sys.argv[1], persistent=True) if sys.argv[1:] else fo.list_datasets()
print("ready", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def holding_the_database(env: dict, *dataset: str) -> Iterator[None]:
    argv = [sys.executable, "-c", HOLD_THE_DATABASE, *dataset]
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        assert holder.stdout.readline() == b"ready\n"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)


@pytest.fixture(scope="module")
def fiftyone_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The module's own FiftyOne folders, their database service held for the module.
    Each test's process is a client of it: FiftyOne lets a process attach to a service
    whose last client has just exited, and it then connects to a database already
    shutting down (pymongo's "Got response id ... but expected ...", twice in CI runs)."""
    root = tmp_path_factory.mktemp("fiftyone")
    env = {
        **os.environ,
        "FIFTYONE_DATABASE_DIR": str(root / "db"),
        "FIFTYONE_DEFAULT_DATASET_DIR": str(root / "datasets"),
    }
    with holding_the_database(env):
        yield env


def _python(code: str, env: dict, timeout: int = 600) -> dict:
    """Runs ``code`` in a fresh interpreter; its last stdout line is JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reviewed(tiny_data: Path, trained: Path, fiftyone_env: dict) -> dict:
    return _python(
        f"""
        import json
        from detection.review import prepare
        summary = prepare({str(tiny_data)!r}, "review-test", {str(trained / "best.pt")!r},
                          conf=0.0005)  # a barely trained model: keep its low scores
        print(json.dumps(summary))
    """,
        fiftyone_env,
    )


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        (
            Box("crazing", 20, 50, 120, 150),
            {"label": "crazing", "bounding_box": [0.1, 0.25, 0.5, 0.5]},
        ),
        (
            Box("patches", 0, 0, 200, 200, confidence=0.875),
            {"label": "patches", "bounding_box": [0.0, 0.0, 1.0, 1.0], "confidence": 0.875},
        ),
        (
            Box("inclusion", 10, 20, 30, 40, difficult=True),
            {"label": "inclusion", "bounding_box": [0.05, 0.1, 0.1, 0.1], "difficult": True},
        ),
    ],
)
def test_detections_document_is_fiftyone_form(box: Box, expected: dict) -> None:
    # The bulk path writes FiftyOne's serialised Detections directly (10x faster than
    # building label objects); confidence and difficult only where the box has them.
    from detection.review import detections_document

    document = detections_document([box], 200, 200)
    assert document["_cls"] == "Detections"
    (detection,) = document["detections"]
    assert detection.pop("_cls") == "Detection" and detection.pop("tags") == []
    assert len(str(detection.pop("_id"))) == 24
    assert detection.pop("bounding_box") == pytest.approx(expected.pop("bounding_box"))
    assert detection == expected


def test_build_evaluate_and_views(reviewed: dict, tiny_data: Path) -> None:
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    assert reviewed["samples"] == len(manifest["split_of_image"])
    assert {
        "ground_truth", "predictions", "metadata", "eval_tp", "eval_fp", "eval_fn", "scale"
    } <= set(reviewed["fields"])  # fmt: skip
    assert "off_scale" not in reviewed  # every image is at the scale it was trained at
    evaluation = reviewed["evaluation"]
    assert abs(evaluation["fiftyone_mAP50_95"] - evaluation["pycocotools_mAP50_95"]) <= 0.01
    assert evaluation["images"] == manifest["counts"]["val"]["images"]
    # The review's report decomposes the errors too, from pycocotools' AP50 of the review.
    assert evaluation["errors"]["ap50"] == pytest.approx(100 * evaluation["pycocotools_mAP50"])
    assert set(evaluation["errors"]["dAP"]) >= {"classification", "localisation", "missed"}
    assert evaluation["unscored"] is None  # val holds every class
    # Stored from 0.0005, below the evaluation's 0.001: the review's mAP is evaluate's.
    assert "not stored" not in evaluation["note"]
    classes = load_definition("synthetic").classes
    assert set(reviewed["views"]) == {
        *(f"false-positives-{c}" for c in classes),
        *(f"missed-{c}" for c in classes),
        "low-iou-matches",
        "most-errors-first",
        "start-here",
        "likely-annotation-mistakes",
    }


def test_a_review_says_when_its_map_is_over_fewer_classes(
    fiftyone_env: dict, tmp_path: Path
) -> None:
    """A val split that holds no box of five of the six classes: pycocotools and
    FiftyOne leave them out of every mean, and the review says so."""
    from detection.report import unscored_sentence
    from tests.test_cli import _patches_and_one_crazing

    out = _patches_and_one_crazing(tmp_path)
    summary = _python(
        f"""
        import json
        from detection.review import prepare
        print(json.dumps(prepare({str(out)!r}, "fewer-classes", "neu-det")))
    """,
        fiftyone_env,
    )
    val = json.loads((out / "manifest.json").read_text())["counts"]["val"]["boxes_per_class"]
    missing = [name for name, boxes in val.items() if not boxes]
    assert len(missing) >= 4
    said = summary["evaluation"]["unscored"]
    assert said == unscored_sentence(missing, 6, "val")
    assert said.startswith(f"mAP averages {6 - len(missing)} of 6 classes: ")


def test_each_sample_says_whether_the_model_was_trained_on_it(
    reviewed: dict, tiny_data: Path, fiftyone_env: dict
) -> None:
    # The tiny run trained on the train split: those samples, and none of val (the
    # split the review scores, so nothing to warn of).
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    assert reviewed["seen_in_training"]["images"] == 0
    assert reviewed["seen_in_training"]["of"] == manifest["counts"]["val"]["images"]
    assert reviewed["seen_in_training"]["complete"]
    found = _python(
        """
        import json
        from pathlib import Path
        from detection.review import load_fiftyone
        fo = load_fiftyone()
        dataset = fo.load_dataset("review-test")
        marked = dataset.values("seen_in_training")
        print(json.dumps(sorted(
            (Path(f).name, t) for f, t in zip(dataset.values("filepath"), marked) if t is not None
        )))
    """,
        fiftyone_env,
    )
    expected = {name: split == "train" for name, split in manifest["split_of_image"].items()}
    assert dict(found) == expected


def test_the_app_opens_ready_to_work(reviewed: dict, fiftyone_env: dict) -> None:
    # Ground truth green and predictions red, as in the report's examples/; the first
    # screen is the most-errors-first order with each class's predictions from its
    # best-F1 confidence, the rest kept in the dataset.
    from detection.commands import _first_view

    assert _first_view(reviewed) == "start-here"
    thresholds = reviewed["evaluation"]["best_f1_confidence"]
    assert thresholds
    found = _python(
        """
        import json
        from detection.review import load_fiftyone
        fo = load_fiftyone()
        dataset = fo.load_dataset("review-test")
        scheme = dataset.app_config.color_scheme
        start = dataset.load_saved_view("start-here")
        errors = dataset.load_saved_view("most-errors-first")
        shown = [(d.label, d.confidence) for s in start for d in s.predictions.detections]
        print(json.dumps({
            "colours": {f["path"]: f["fieldColor"] for f in scheme.fields},
            "color_by": scheme.color_by,
            "shown": shown,
            "stored": dataset.count("predictions.detections"),
            "order": start.values("id") == errors.values("id"),
        }))
    """,
        fiftyone_env,
    )
    assert found["colours"] == {"ground_truth": "#3cc83c", "predictions": "#e62828"}
    assert found["color_by"] == "field"
    assert found["order"]
    assert all(conf >= thresholds.get(label, 0.0) for label, conf in found["shown"])
    assert 0 < len(found["shown"]) < found["stored"]


def test_tags_persist_and_export_box_by_box(
    reviewed: dict, tiny_data: Path, trained: Path, fiftyone_env: dict, tmp_path: Path
) -> None:
    # An annotator's session: reject one ground-truth box, accept one prediction; then the
    # process (and the database with it) ends.
    tagged = _python(
        """
        import json
        from detection.review import load_fiftyone
        fo = load_fiftyone()
        dataset = fo.load_dataset("review-test")
        samples = [s for s in dataset.sort_by("filepath") if s.ground_truth.detections]
        first = samples[0]
        second = next(s for s in samples[1:] if s.predictions.detections)
        rejected = first.ground_truth.detections[0]
        rejected.tags.append("reject")
        first.save()
        accepted = max(second.predictions.detections, key=lambda d: d.confidence)
        accepted.tags.append("accept")
        second.save()
        print(json.dumps({"rejected": [first.filepath, rejected.label, rejected.bounding_box],
                          "accepted": [second.filepath, accepted.label, accepted.bounding_box]}))
    """,
        fiftyone_env,
    )
    out = tmp_path / "exports"
    reopened = _python(
        f"""
        import json
        from detection.review import load_fiftyone
        fo = load_fiftyone()
        from detection.review import export_corrected
        from detection.review import prepare
        # A dataset stored before the NMS IoU was recorded was predicted at the default.
        stored = fo.load_dataset("review-test")
        assert stored.info.pop("prediction_iou") == 0.7
        stored.save()
        # Running the review again, weights and all, reopens the dataset (the predictions
        # started beside the database start are dropped): the tags must survive that too.
        again = prepare({str(tiny_data)!r}, "review-test", {str(trained / "best.pt")!r},
                        conf=0.0005)
        assert again["reused"] and "evaluation" in again and "not_applied" not in again
        # Asked for other predictions, it keeps the stored ones and says which options
        # it did not apply.
        other = prepare({str(tiny_data)!r}, "review-test", {str(trained / "best.pt")!r},
                        conf=0.2, tta=True, iou=0.5, tile=64)
        assert other["not_applied"] == ["--conf", "--tta", "--iou", "--tile"], other
        assert other["stored_predictions"]["prediction_tile"] is None
        assert other["stored_predictions"]["prediction_conf"] == 0.0005
        assert other["stored_predictions"]["prediction_tta"] is False
        assert other["stored_predictions"]["prediction_iou"] == 0.7
        # Tiles merged before a faint part needed 0.3 of its partner's score to join it
        # were recorded without the ratio: asked for tiles that overlap, it says those
        # stored are not them.
        stored = fo.load_dataset("review-test")
        stored.info["prediction_tile"] = {{"size": 64, "overlap": 0.25}}
        stored.save()
        tiled = prepare({str(tiny_data)!r}, "review-test", {str(trained / "best.pt")!r},
                        conf=0.0005, tile=64)
        assert tiled["not_applied"] == ["--tile"], tiled
        stored.info["prediction_tile"] = None
        stored.save()
        assert "likely-annotation-mistakes" in again["views"] and "top" in again["mistakes"]
        dataset = fo.load_dataset("review-test")
        counts = dataset.count_label_tags()
        summaries = {{to: export_corrected("review-test", {str(out)!r} + "/" + to, to)
                     for to in ("voc", "yolo", "coco")}}
        print(json.dumps({{"tags": counts, "voc": summaries["voc"]}}))
    """,
        fiftyone_env,
    )
    assert reopened["tags"] == {"reject": 1, "accept": 1}
    assert reopened["voc"]["rejected"] == {tagged["rejected"][1]: 1}
    assert reopened["voc"]["accepted"] == {tagged["accepted"][1]: 1}

    # Expected: the converter's ground truth, minus the rejected box, plus the accepted one.
    original = {}
    for split in ("train", "val"):
        coco = json.loads((tiny_data / "annotations" / f"instances_{split}.json").read_text())
        for image in from_coco(coco).images:
            original[image.name] = Counter((b.label, *b.coords) for b in image.boxes)

    def scaled(entry: tuple, width: int = 200, height: int = 200) -> tuple:
        _, label, (x, y, w, h) = entry
        return (
            label,
            round(x * width, 3),
            round(y * height, 3),
            round((x + w) * width, 3),
            round((y + h) * height, 3),
        )

    expected = {name: Counter(boxes) for name, boxes in original.items()}
    expected[Path(tagged["rejected"][0]).name] -= Counter([scaled(tagged["rejected"])])
    expected[Path(tagged["accepted"][0]).name] += Counter([scaled(tagged["accepted"])])

    classes = load_definition("synthetic").classes
    voc, yolo, coco = {}, {}, {}
    for xml in (out / "voc" / "Annotations").glob("*.xml"):
        annotation = parse_voc_xml(xml.read_bytes(), xml.name)
        boxes = validate_objects(annotation, 200, 200, lambda n: n, xml.name, Report())
        voc[annotation.filename] = Counter((b.label, *b.coords) for b in boxes)
    for label in (out / "yolo" / "labels").rglob("*.txt"):
        boxes = from_yolo_lines(label.read_text(), 200, 200, classes)
        yolo[f"{label.stem}.jpg"] = Counter(
            (b.label, *(round(v, 2) for v in b.coords)) for b in boxes
        )
    for split in ("train", "val"):
        data = json.loads((out / "coco" / "annotations" / f"instances_{split}.json").read_text())
        for image in from_coco(data).images:
            coco[image.name] = Counter(
                (b.label, *(round(v, 3) for v in b.coords)) for b in image.boxes
            )

    def rounded(counter: Counter, digits: int) -> Counter:
        return Counter({(k[0], *(round(v, digits) for v in k[1:])): n for k, n in counter.items()})

    assert voc == {n: rounded(c, 2) for n, c in expected.items()}
    assert yolo == {n: rounded(c, 2) for n, c in expected.items()}
    assert coco == {n: rounded(c, 3) for n, c in expected.items()}
    assert (out / "voc" / "changes.json").is_file()


def _png_bytes() -> bytes:
    import cv2
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


@pytest.mark.parametrize(
    ("name", "content", "with_weights"),
    [
        ("notes.jpg", b"shift log, not an image", False),  # no readable header
        ("cut.png", None, True),  # the header reads, the pixels do not decode
    ],
)
def test_folder_without_a_readable_image_is_a_clear_error(
    name: str,
    content: bytes | None,
    with_weights: bool,
    trained: Path,
    tmp_path: Path,
    fiftyone_env: dict,
) -> None:
    folder = tmp_path / "today"
    folder.mkdir()
    (folder / name).write_bytes(content or _png_bytes()[:60])
    weights = ["--weights", str(trained / "best.pt")] if with_weights else []
    result = subprocess.run(
        [*DEFECTS, "review", "--data", str(folder), "--no-launch", *weights],
        capture_output=True,
        text=True,
        env=fiftyone_env,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{folder}: no readable images (1 skipped)" in result.stderr


def test_a_model_that_finds_nothing_is_summed_up_without_nan(
    tiny_data: Path, trained: Path, fiftyone_env: dict
) -> None:
    """A barely trained model stored above every score it gives: no prediction at all.
    TIDE's fix of the misses is then undefined, and no box has a mistakenness to rank."""
    argv = ["review", "--data", str(tiny_data), "--weights", str(trained / "best.pt")]
    argv += ["--conf", "0.99", "--no-launch", "--name", "finds-nothing"]
    result = subprocess.run([*DEFECTS, *argv], capture_output=True, text=True, env=fiftyone_env)
    assert result.returncode == 0, result.stderr[-3000:]
    said = result.stdout + result.stderr
    assert "missed n/a" in said and not re.search(r"\bnan\b", said, re.IGNORECASE)
    assert "No prediction matches a box: none to rank." in said and "Top:" not in said
    assert "0 predictions above 0.95 confidence that no box matches" in said
    # FiftyOne's own progress lines stay out of the review's report (stdout held them).
    assert "Evaluating detections" not in said and "IoU sweep" not in said


def test_unlabeled_folder_shows_predictions_by_confidence(
    trained: Path, tiny_data: Path, fiftyone_env: dict, tmp_path: Path
) -> None:
    folder = tmp_path / "today"
    folder.mkdir()
    val = sorted((tiny_data / "images" / "val").iterdir())
    for image in val[:4]:
        shutil.copyfile(image, folder / image.name)
    # Off the scale the model learnt defects at (200x200 images at 96 px): a strip of
    # four, its defects drawn four times smaller, and a crop, drawn twice as large.
    pixels = [cv2.imread(str(image)) for image in val[:4]]
    cv2.imwrite(str(folder / "strip.png"), np.hstack(pixels))
    cv2.imwrite(str(folder / "crop.png"), pixels[0][:100, :100])
    # Left out and reported, not fatal: a file that is no image at all, one cut short
    # (found from its structure), and one whole in structure whose pixels do not decode.
    (folder / "notes.jpg").write_text("shift log, not an image")
    (folder / "cut.png").write_bytes(_png_bytes()[:60])
    garbled = bytearray(_png_bytes())
    start = garbled.find(b"IDAT") + 4
    length = int.from_bytes(garbled[start - 8 : start - 4], "big")
    garbled[start : start + length] = bytes(length)
    (folder / "garbled.png").write_bytes(bytes(garbled))
    summary = _python(
        f"""
        import json
        from pathlib import Path
        from detection.review import load_fiftyone
        fo = load_fiftyone()
        from fiftyone import ViewField as F
        from detection.review import prepare
        summary = prepare({str(folder)!r}, "today", {str(trained / "best.pt")!r}, conf=0.0005)
        view = fo.load_dataset("today").load_saved_view("by-confidence")
        summary["top_confidences"] = [max([d.confidence for d in s.predictions.detections],
                                          default=0) for s in view]
        dataset = fo.load_dataset("today")
        summary["scale"] = dict(zip([Path(f).name for f in dataset.values("filepath")],
                                    dataset.values("scale")))
        summary["off_view"] = [Path(s.filepath).name
                               for s in dataset.load_saved_view("off-training-scale")]
        # Reopened from the command line: the note again, from the stored dataset.
        import contextlib, io
        from detection.cli import main
        said = io.StringIO()
        with contextlib.redirect_stderr(said):
            main(["review", "--data", {str(folder)!r}, "--name", "today", "--no-launch"])
        summary["said"] = said.getvalue()
        # In tiles of 200 px: what they will cost said first, the progress in tiles.
        progress, notices = [], []
        prepare({str(folder)!r}, "today-tiled", {str(trained / "best.pt")!r}, conf=0.0005,
                tile=200, progress=lambda *p: progress.append(p), notice=notices.append)
        summary["tiled"] = {{"progress": progress, "notices": notices}}
        print(json.dumps(summary))
    """,
        fiftyone_env,
    )
    # The strip (800x200) is cut into 5 tiles; the other 6 images with a readable header
    # (garbled.png's pixels do not decode) count one each.
    from detection.predict import tile_windows

    tiles = len(tile_windows((200, 800), 200, 0.25))
    assert summary["tiled"]["notices"] == [
        f"Tiles of 200 px overlapping by 0.25: 1 of 7 images larger than a tile, cut into "
        f"{tiles} tiles in all, each one input to the model (the most: strip.png, {tiles})"
    ]
    progress = summary["tiled"]["progress"]
    assert progress[-1] == [tiles + 6, tiles + 6]
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert summary["samples"] == 6 and not summary["labelled"]
    skipped = {Path(e["file"]).name: e["error"] for e in summary["skipped"]}
    assert skipped.keys() == {"notes.jpg", "cut.png", "garbled.png"}
    assert "not a readable image" in skipped["notes.jpg"]
    assert skipped["cut.png"] == "PNG cut short: no IEND chunk at its end (60 bytes)"
    assert skipped["garbled.png"] == "not an image OpenCV can decode"
    assert "ground_truth" not in summary["fields"] and "predictions" in summary["fields"]
    assert summary["views"] == ["by-confidence", "off-training-scale"]
    assert summary["top_confidences"] == sorted(summary["top_confidences"], reverse=True)
    # Each sample's scale, those off it in their own view (farthest first) and one note.
    assert summary["scale"] == {**{image.name: 1.0 for image in val[:4]}, "strip.png": 0.25,
                                "crop.png": 2.0}  # fmt: skip
    assert summary["off_view"] == ["strip.png", "crop.png"]
    off_scale = summary["off_scale"]
    assert (off_scale["images"], off_scale["of"]) == (2, 6)
    assert off_scale["smaller"]["farthest"]["file"] == str(folder / "strip.png")
    assert off_scale["larger"]["farthest"]["file"] == str(folder / "crop.png")
    assert "--tile 200" in off_scale["sentence"] and "--imgsz 64" in off_scale["sentence"]
    said = " ".join(summary["said"].split())
    assert "note: 2 of 6 images are drawn off the scale the model was trained at" in said
    assert "the saved view 'off-training-scale' shows them" in said


def test_a_yolo_dataset_is_reviewed_with_its_labels(tiny_data: Path, tmp_path: Path) -> None:
    # A Roboflow export has no manifest: it was shown as a folder of unlabelled images,
    # train and val mixed, its ground truth silently left out.
    from detection.review import read_source

    def boxes(images: list[ImageAnnotation]) -> list[tuple]:
        return sorted(
            (Path(im.name).name, im.split, b.label, *(round(v, 2) for v in b.coords))
            for im in images
            for b in im.boxes
        )

    converted = read_source(tiny_data)
    for data in (roboflow_export(tiny_data, tmp_path / "rf"), tmp_path / "rf"):
        source = read_source(data)
        assert source.labelled and source.classes == converted.classes
        assert len(source.images) == len(converted.images)
        assert boxes(source.images) == boxes(converted.images) and boxes(source.images)
        assert all(Path(im.path).is_file() for im in source.images)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LIST_DATASETS = """
import json, sys
if sys.argv[1] == "ours":
    from detection.review import load_fiftyone
    fo = load_fiftyone()
else:  # FiftyOne as another project runs it
    import detection.offline
    import fiftyone as fo
print(json.dumps(fo.list_datasets()))
"""


def test_a_review_keeps_to_its_own_database_folder(tmp_path: Path) -> None:
    """FiftyOne alone attaches to any running database service of the user: a process
    with its own folder listed another's datasets (and would have stored its own there)."""

    def env(folder: str) -> dict:
        return {
            **os.environ,
            "FIFTYONE_DATABASE_DIR": str(tmp_path / folder / "db"),
            "FIFTYONE_DEFAULT_DATASET_DIR": str(tmp_path / folder / "datasets"),
        }

    def listed(folder: str, how: str) -> list[str]:
        argv = [sys.executable, "-c", LIST_DATASETS, how]
        result = subprocess.run(argv, capture_output=True, text=True, env=env(folder))
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    with holding_the_database(env("a"), "held-in-a"):
        assert listed("a", "ours") == ["held-in-a"]  # one folder, one database
        assert listed("b", "ours") == []
        assert (tmp_path / "b" / "db").is_dir()
        assert "held-in-a" not in listed("c", "plain")  # nor does FiftyOne elsewhere


# FiftyOne's service answers with a port nothing listens on (the first N times it is
# asked), as when its client once tried another port than its mongod's (detection.review
# ._connect_database); argv: N, the closed port.
MISLEAD_THE_CLIENT = """
import json, sys
from detection.cli import main
from fiftyone.core.odm import database
from fiftyone.core.service import DatabaseService

database._connection_kwargs["serverSelectionTimeoutMS"] = 1500  # not pymongo's 30 s
asked = []
real = DatabaseService.port.fget


def port(service):
    asked.append(service)
    return int(sys.argv[2]) if len(asked) <= int(sys.argv[1]) else real(service)


DatabaseService.port = property(port)
code = main(["review", "export", "--name", "absent", "--out", "unused"])
print(json.dumps({"code": code, "asked": len(asked)}))
"""


@pytest.mark.parametrize(
    ("misled", "code", "said"),
    [
        (1, 2, "no review dataset named 'absent'"),  # the second try connects
        (2, 2, "FiftyOne could not connect to its database at localhost:{port}, tried twice"),
    ],
)
def test_a_client_sent_to_the_wrong_port_asks_again(
    misled: int, code: int, said: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "FIFTYONE_DATABASE_DIR": str(tmp_path / "db"),
        "FIFTYONE_DEFAULT_DATASET_DIR": str(tmp_path / "datasets"),
    }
    port = _free_port()
    argv = [sys.executable, "-c", MISLEAD_THE_CLIENT, str(misled), str(port)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path)
    # Asked twice: for the first try, and again for the second.
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"code": code, "asked": 2}
    error = result.stderr.strip().splitlines()[-1]
    assert said.format(port=port) in error, result.stderr[-3000:]
    if misled == 2:  # pymongo's reason, one line, and where mongod logs
        assert "Connection refused" in error and "Timeout" not in error
        assert f"(mongod's log: {tmp_path / 'db' / 'log' / 'mongo.log'})" in error
    assert not (tmp_path / "unused").exists()


def test_a_copy_across_splits_is_found(
    reviewed: dict, trained: Path, tiny_data: Path, fiftyone_env: dict
) -> None:
    # A train image copied into val under another name: the leak the check is for.
    found = _python(
        f"""
        import json, shutil
        from pathlib import Path
        from detection.review import load_fiftyone
        fo = load_fiftyone()
        from detection.leaks import find_split_leaks
        dataset = fo.load_dataset("review-test")
        original = dataset.match_tags("train").first()
        copy = Path(original.filepath).with_name("copy-of-" + Path(original.filepath).name)
        shutil.copyfile(original.filepath, copy)
        # ... and one cropped 8 pixels further down and 6 to the right (edges repeated).
        import cv2
        pixels = cv2.imread(original.filepath)
        shifted = copy.with_name("shifted-" + Path(original.filepath).name)
        cv2.imwrite(str(shifted), cv2.copyMakeBorder(pixels[8:, 6:], 0, 8, 0, 6,
                                                     cv2.BORDER_REPLICATE))
        dataset.add_samples([fo.Sample(filepath=str(path), tags=["val"])
                             for path in (copy, shifted)])
        leaks = find_split_leaks(dataset, {str(trained / "best.pt")!r})
        leaks["view_names"] = sorted(Path(p).name for p in
                                     dataset.load_saved_view("leaky-splits").values("filepath"))
        leaks["original"], leaks["copy"] = Path(original.filepath).name, copy.name
        leaks["shifted_copy"] = shifted.name
        # The same from the command line, on the dataset reopened.
        import contextlib, io
        from detection.cli import main
        said = io.StringIO()
        with contextlib.redirect_stderr(said):
            leaks["code"] = main(["review", "--data", {str(tiny_data)!r}, "--name", "review-test",
                                  "--weights", {str(trained / "best.pt")!r}, "--no-launch",
                                  "--near-duplicates"])
        leaks["said"] = said.getvalue()
        dataset.delete_samples(dataset.match(fo.ViewField("filepath").is_in(
            [str(copy), str(shifted)])))
        copy.unlink()
        shifted.unlink()
        print(json.dumps(leaks))
    """,
        fiftyone_env,
    )
    pairs = {(p["a"], p["b"]) for p in found["pairs"]} | {(p["b"], p["a"]) for p in found["pairs"]}
    assert (found["original"], found["copy"]) in pairs
    closest = found["pairs"][0]
    assert {closest["a"], closest["b"]} == {found["original"], found["copy"]}
    assert closest["distance"] < 1e-9 and sorted(closest["splits"]) == ["train", "val"]
    assert {found["original"], found["copy"]} <= set(found["view_names"])
    # The shifted copy is too far for the backbone, and found by its fine detail (the
    # exact copy too), with where the original's content lies in it.
    assert found["shifted_copy"] not in {name for p in found["pairs"] for name in (p["a"], p["b"])}
    shifted = {frozenset((p["a"], p["b"])): p for p in found["shifted"]}
    match = shifted[frozenset((found["original"], found["shifted_copy"]))]
    assert match["shift"] == [-6, -8] and match["splits"] == ["train", "val"]
    assert frozenset((found["original"], found["copy"])) in shifted
    assert found["shifted_copy"] in found["view_names"]
    assert found["images"] == len(found["view_names"])
    said = " ".join(found["said"].split())
    assert found["code"] == 0, said
    assert (
        f"Shifted, re-exposed or re-encoded copies across splits (fine detail matching at 0.7 "
        f"or more, shifted by up to a quarter of the image): {len(found['shifted'])} pairs"
    ) in said
    assert f"{found['original']} (train) ~ {found['shifted_copy']} (val): " in said
    assert "shifted (-6, -8)" in said
    assert sum(found["images_by_split"].values()) == found["images"]
    assert found["images_by_split"]["val"] >= 2  # the two copies put into val
    by_split = ", ".join(f"{split} {n}" for split, n in found["images_by_split"].items())
    assert (
        f"The view 'leaky-splits' holds the {found['images']} images of these pairs ({by_split})"
    ) in said


def test_mistakes_equal_fiftyone_brains(reviewed: dict, fiftyone_env: dict) -> None:
    # The bulk path must give what fiftyone.brain.compute_mistakenness gives, label by
    # label, on a clone of the reviewed dataset.
    assert reviewed["mistakes"]["view"] in reviewed["views"]
    found = _python(
        """
        import json
        from detection.review import load_fiftyone
        fo = load_fiftyone()
        import fiftyone.brain as fob
        dataset = fo.load_dataset("review-test")
        brains = dataset.clone("review-test-brain")
        fob.compute_mistakenness(brains, "predictions", label_field="ground_truth")
        fields = ["ground_truth.detections.mistakenness",
                  "ground_truth.detections.mistakenness_loc",
                  "ground_truth.detections.possible_spurious",
                  "predictions.detections.possible_missing",
                  "mistakenness", "possible_missing", "possible_spurious"]
        print(json.dumps({"ours": dataset.values(fields), "brain": brains.values(fields),
                          "view": len(dataset.load_saved_view("likely-annotation-mistakes"))}))
        fo.delete_dataset("review-test-brain")
    """,
        fiftyone_env,
    )

    def flat(values: list) -> list:
        return [v for row in values for v in (row if isinstance(row, list) else [row])]

    for ours, brain in zip(found["ours"], found["brain"]):
        ours, brain = flat(ours), flat(brain)
        assert len(ours) == len(brain)
        for a, b in zip(ours, brain):
            if isinstance(b, float):
                assert a == pytest.approx(b, abs=1e-9)
            else:
                assert bool(a) == bool(b)
    assert found["view"] == reviewed["mistakes"]["images"]
    # The count said beside the view is Brain's own, above its own threshold.
    missing = reviewed["mistakes"]["possible_missing"]
    assert missing == sum(count or 0 for count in found["brain"][5])
    assert reviewed["mistakes"]["missing_above"] == 0.95


def test_a_split_the_data_lacks_is_refused_before_the_work(
    tiny_data: Path, trained: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(tmp_path / "db")}
    argv = ["review", "--data", str(tiny_data), "--weights", str(trained / "best.pt")]
    result = subprocess.run(
        [*DEFECTS, *argv, "--split", "test", "--no-launch"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"defects review: error: {tiny_data}: no 'test' images to evaluate (--split; its "
        "splits: train, val)\n"
    )
    assert not (tmp_path / "db").exists()  # no database, no prediction


@pytest.mark.parametrize(
    ("name", "said"),
    [
        (" ", "--name ' ': FiftyOne cannot name a dataset so: ' ' has invalid slug"),
        # The App's URLs name datasets by slug: "Review Test" would be review-test's.
        (
            "Review Test",
            "--name 'Review Test': its name in FiftyOne's URLs, 'review-test', is already "
            "that of the dataset 'review-test'; choose another name, or --name "
            "'review-test' to reopen it",
        ),
    ],
)
def test_a_dataset_name_fiftyone_would_refuse_is_one_line(
    name: str, said: str, reviewed: dict, tiny_data: Path, trained: Path, fiftyone_env: dict
) -> None:
    argv = ["review", "--data", str(tiny_data), "--weights", str(trained / "best.pt")]
    argv += ["--name", name, "--no-launch"]
    result = subprocess.run([*DEFECTS, *argv], capture_output=True, text=True, env=fiftyone_env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"defects review: error: {said}"), result.stderr[-3000:]
    assert result.stderr.count("\n") == 1  # one line, no traceback
    found = _python(
        "import json\nfrom detection.review import load_fiftyone\n"
        "print(json.dumps(load_fiftyone().list_datasets()))",
        fiftyone_env,
    )
    assert name not in found and "review-test" in found


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("taken", "the port is in use (a FiftyOne App still open, or another program)"),
        ("0.0.0.0 taken", "the port is in use"),  # bound by a listener on loopback only
        # A documentation address (RFC 5737): not this machine's, and nothing is sent.
        ("192.0.2.1", "Cannot assign requested address (--address is one of this machine's"),
    ],
)
def test_an_app_address_it_cannot_listen_on_is_refused_before_the_work(
    where: str, said: str, tiny_data: Path, trained: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(tmp_path / "db")}
    address = where.removesuffix(" taken") if where != "taken" else "127.0.0.1"
    with socket.socket() as listener:  # another program on the port, on loopback
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        argv = ["review", "--data", str(tiny_data), "--weights", str(trained / "best.pt")]
        argv += ["--address", address, "--port", str(port if "taken" in where else 5151)]
        result = subprocess.run([*DEFECTS, *argv], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"defects review: error: the App cannot listen on {address}:")
    assert said in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "db").exists()  # refused before any database or prediction


def test_an_app_port_taken_while_the_review_worked_is_one_clear_line(
    reviewed: dict, fiftyone_env: dict
) -> None:
    found = _python(
        """
        import json
        from fiftyone.core.service import ServiceListenTimeout
        from converters.errors import ConversionError
        from detection.review import launch, load_fiftyone

        def taken(*args, **kwargs):  # as FiftyOne's server start fails, after its 60 s
            raise ServiceListenTimeout("fiftyone.core.service.ServerService", 5151)

        load_fiftyone().launch_app = taken
        try:
            launch("review-test")
        except ConversionError as error:
            print(json.dumps(str(error)))
    """,
        fiftyone_env,
    )
    assert found == (
        "the App could not listen on 127.0.0.1:5151 (taken since the review began?): run "
        "it again with another --port; the dataset is kept, with its tags"
    )


def test_app_in_headless_chromium(
    tiny_data: Path, trained: Path, fiftyone_env: dict, tmp_path: Path
) -> None:
    # Its own database folder: the session must stop the database it started as it ends,
    # and the module's is held open for the other tests.
    fiftyone_env = {
        **fiftyone_env,
        "FIFTYONE_DATABASE_DIR": str(tmp_path / "db"),
        "FIFTYONE_DEFAULT_DATASET_DIR": str(tmp_path / "datasets"),
    }
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Debian's chromium is needed for the browser test (`make test` installs it)")
    port = _free_port()
    app = subprocess.Popen(
        [
            *DEFECTS,
            "review",
            "--data",
            str(tiny_data),
            "--weights",
            str(trained / "best.pt"),
            "--name",
            "review-browser",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=fiftyone_env,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(app.stdout.readline, "")), daemon=True
    )
    reader.start()
    try:
        # Ready when the command prints its URL: the App server is up and the session
        # connected to it (FiftyOne retries that connection every 10 s).
        deadline = time.time() + 300
        while not any("FiftyOne App: http://127.0.0.1" in line for line in lines):
            assert app.poll() is None and time.time() < deadline, "".join(lines)[-3000:]
            time.sleep(1)
        wanted = ("review-browser", "ground_truth", "predictions", "eval_tp", "eval_fp")
        wanted += ("eval_fn", "start-here")  # the view the App opens on, by name
        for _attempt in range(3):  # a loaded machine may need longer than one page load
            dom = subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={tmp_path / 'profile'}",
                    "--virtual-time-budget=30000",
                    "--window-size=1400,900",
                    "--dump-dom",
                    f"http://127.0.0.1:{port}/",
                ],
                capture_output=True,
                text=True,
                timeout=180,
            ).stdout
            missing = [text for text in wanted if text not in dom]
            if not missing:
                break
            time.sleep(5)
        assert not missing, missing
        # The first screen as a person sees it: a real picture, not a page still loading.
        from PIL import Image

        screenshot = tmp_path / "first-screen.png"
        for _attempt in range(3):  # a loaded machine may need longer than one page load
            subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={tmp_path / 'profile'}",
                    "--virtual-time-budget=30000",
                    "--window-size=1400,900",
                    f"--screenshot={screenshot}",
                    f"http://127.0.0.1:{port}/",
                ],
                capture_output=True,
                timeout=180,
            )
            with Image.open(screenshot) as picture:
                size = picture.size
                colours = picture.convert("RGB").getcolors(maxcolors=1_000_000) or []
            if len(colours) > 1000:  # the grid of images is drawn
                break
            time.sleep(5)
        assert size == (1400, 900)
        assert len(colours) > 1000, len(colours)
    finally:
        app.send_signal(signal.SIGINT)
        app.wait(timeout=120)
        reader.join(timeout=10)
    output = "".join(lines)
    assert app.returncode == 0, output[-3000:]
    assert f"http://127.0.0.1:{port}/" in output
    # The database FiftyOne started for the session is gone with it.
    db_dir = fiftyone_env["FIFTYONE_DATABASE_DIR"]
    deadline = time.time() + 60
    while time.time() < deadline:
        running = subprocess.run(
            ["pgrep", "-f", f"mongod --dbpath {db_dir}"], capture_output=True, text=True
        ).stdout.strip()
        if not running:
            break
        time.sleep(1)
    assert not running


def _val_results(data: Path, scores: list[float] | None = None) -> list[dict]:
    """The val split's ground-truth boxes moved by a pixel, as results named by file
    (a path as another machine wrote it), every score at or above review's 0.05."""
    gt = json.loads((data / "annotations" / "instances_val.json").read_text())
    names = {image["id"]: image["file_name"] for image in gt["images"]}
    return [
        {
            "image_id": 1,  # another run's numbering: the file name decides
            "file_name": f"/line/cam3/{names[a['image_id']]}",
            "category_id": a["category_id"],
            "bbox": [a["bbox"][0] + 1, *a["bbox"][1:]],
            "score": (scores or [0.9 - 0.02 * index])[0],
        }
        for index, a in enumerate(gt["annotations"])
    ]


def test_results_are_read_onto_the_reviewed_images(tiny_data: Path, tmp_path: Path) -> None:
    from converters.errors import ConversionError
    from detection.review import read_source, results_boxes

    source = read_source(tiny_data)
    results = _val_results(tiny_data)
    low = {**results[0], "score": 0.01}  # below the review's confidence: not stored
    (tmp_path / "r.json").write_text(json.dumps([low, *results]))
    boxes = results_boxes(tmp_path / "r.json", source.classes, source.images, 0.05)
    shown = {
        image.name: [(b.label, b.xmin, b.confidence) for b in found]
        for image, found in zip(source.images, boxes)
        if found
    }
    expected: dict[str, list] = {}
    for result in results:
        name = Path(result["file_name"]).name
        label = source.classes[result["category_id"] - 1]
        expected.setdefault(name, []).append((label, result["bbox"][0], result["score"]))
    assert shown == expected  # most confident first, on the val images alone
    assert {image.split for image, found in zip(source.images, boxes) if found} == {"val"}
    # A result that names its image only by a number names nothing here.
    (tmp_path / "ids.json").write_text(json.dumps([{**results[0], "file_name": None}]))
    with pytest.raises(ConversionError, match="names image 1, absent from --data's images"):
        results_boxes(tmp_path / "ids.json", source.classes, source.images, 0.05)


def test_any_detectors_results_are_reviewed(
    tiny_data: Path, fiftyone_env: dict, tmp_path: Path
) -> None:
    """`review --predictions`: another detector's results shown as the predictions, scored
    as `evaluate --predictions` scores them, and a second file not applied silently."""
    (tmp_path / "a.json").write_text(json.dumps(_val_results(tiny_data)))
    (tmp_path / "b.json").write_text(json.dumps(_val_results(tiny_data, [0.5])))
    argv = ["evaluate", "--predictions", str(tmp_path / "a.json"), "--data", str(tiny_data)]
    subprocess.run([*DEFECTS, *argv, "--out", str(tmp_path / "e"), "--bootstrap", "0"], check=True)
    evaluated = json.loads((tmp_path / "e" / "report.json").read_text())

    def review(results: str, *extra: str) -> subprocess.CompletedProcess:
        argv = ["review", "--data", str(tiny_data), "--predictions", str(tmp_path / results)]
        argv += ["--no-launch", "--name", "from-results", *extra]
        return subprocess.run([*DEFECTS, *argv], capture_output=True, text=True, env=fiftyone_env)

    first = review("a.json")
    assert first.returncode == 0, first.stderr[-3000:]
    figure = re.search(r"pycocotools on the same predictions: mAP50:95 ([\d.]+)", first.stderr)
    assert float(figure.group(1)) == pytest.approx(evaluated["mAP50-95"], abs=1e-4)
    images = len(json.loads((tiny_data / "manifest.json").read_text())["split_of_image"])
    val = len(json.loads((tiny_data / "annotations" / "instances_val.json").read_text())["images"])
    assert f"{val} of the {images} images have a result at confidence >= 0.05" in first.stderr
    # The figures name their split, and what the default --conf leaves out of them.
    assert f"On `val` ({val} images): FiftyOne mAP" in first.stderr
    assert "Predictions under confidence 0.05 are not stored" in first.stderr
    again = review("b.json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"(results {tmp_path / 'a.json'}, conf 0.05)" in again.stderr
    assert "this run's --predictions differ and are not applied" in again.stderr
    refused = review("a.json", "--tta")
    assert refused.returncode == 2 and "--predictions file is scored as it is" in refused.stderr
