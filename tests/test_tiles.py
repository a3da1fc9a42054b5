"""Sliced inference (`--tile`): where tiles lie, how their boxes merge, the detector
wrapper on a rule-based detector and on the released model with real NEU-DET images,
and `--tile` through predict and evaluate."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from converters.pixels import read_image
from detection.boxes import merge_tiles
from detection.evaluate import predict_coco
from detection.predict import (
    TiledDetector,
    detect_images,
    load_detector,
    tile_plan,
    tile_starts,
    tile_windows,
)
from detection.splits import scale_against_training
from detection.weights import resolve_weights
from tests.test_tta import BiasedBlobDetector


@pytest.mark.parametrize(
    ("length", "tile", "stride", "starts"),
    [
        (200, 200, 150, [0]),  # no longer than a tile: one, whole
        (120, 200, 150, [0]),  # shorter: one, the side itself
        (800, 200, 200, [0, 200, 400, 600]),  # no overlap, a tile divides it
        (800, 200, 150, [0, 150, 300, 450, 600]),  # the last one flush with the end
        (500, 200, 200, [0, 200, 300]),  # the last one flush, overlapping its neighbour
    ],
)
def test_tile_starts(length: int, tile: int, stride: int, starts: list[int]) -> None:
    assert tile_starts(length, tile, stride) == starts


@pytest.mark.parametrize(
    ("tile", "overlap", "said"),
    [
        # 2048x1000: 14 x 7 tiles; 800x400: 5 x 3; 150x150 and the damaged file are not cut.
        (200, 0.25, "2 of 4 images larger than a tile, cut into 113 tiles in all"),
        # A small tile and a large overlap: a stride of 3 pixels, 673 x 324 tiles of the
        # strip, and the crop is cut too.
        (32, 0.9, "3 of 4 images larger than a tile, cut into 251,601 tiles in all"),
        (4096, 0.25, None),  # no image larger than a tile: nothing to say
    ],
)
def test_the_tiles_to_come_are_counted_before_the_work(
    tmp_path: Path, tile: int, overlap: float, said: str | None
) -> None:
    sizes = {"strip.png": (1000, 2048), "wide.png": (400, 800), "crop.png": (150, 150)}
    for name, shape in sizes.items():
        cv2.imwrite(str(tmp_path / name), np.zeros(shape, np.uint8))
    (tmp_path / "damaged.jpg").write_bytes(b"\xff\xd8\xff")  # no header: left to predict
    plan = tile_plan(
        [*(tmp_path / name for name in sizes), tmp_path / "damaged.jpg"], tile, overlap
    )
    if said is None:
        assert plan is None
        return
    assert said in plan
    counts = {name: len(tile_windows(shape, tile, overlap)) for name, shape in sizes.items()}
    assert f"{sum(n for n in counts.values() if n > 1):,} tiles in all" in plan
    assert f"the most: strip.png, {counts['strip.png']:,})" in plan


def test_progress_counts_tiles_while_the_model_detects_them(tmp_path: Path) -> None:
    """With tiles, the progress is counted in tiles and moves with each of the model's
    batches: a strip cut into thousands of tiles is one image, and counted in images the
    bar stood still for as long as the strip took. An image no larger than a tile, or
    one that cannot be read, counts one."""
    cv2.imwrite(str(tmp_path / "strip.png"), np.zeros((1000, 2048), np.uint8))
    cv2.imwrite(str(tmp_path / "crop.png"), np.zeros((150, 150), np.uint8))
    (tmp_path / "damaged.jpg").write_bytes(b"\xff\xd8\xff")
    paths = [tmp_path / name for name in ("strip.png", "damaged.jpg", "crop.png")]
    strip = len(tile_windows((1000, 2048), 200, 0.25))
    tiled = TiledDetector(BiasedBlobDetector(shift=(0, 0)), tile=200, batch=8)
    said: list[tuple[int, int]] = []
    found = detect_images(tiled, paths, 16, lambda *p: said.append(p), tiled, conf=0.1)
    assert [read.detections is None for read in found] == [False, True, False]
    total = strip + 2
    assert said[-1] == (total, total) and {t for _, t in said} == {total}
    done = [d for d, _ in said]
    assert done == sorted(done)
    assert set(range(8, strip, 8)) <= set(done)  # within the strip, 8 tiles at a time
    assert tiled.on_tiles is None  # left as it was found
    said.clear()  # untiled: counted in images, each as it is detected
    list(detect_images(tiled.detector, paths, 2, lambda *p: said.append(p), conf=0.1))
    assert said == [(1, 3), (2, 3), (3, 3)]
    # ... as evaluate counts them.
    gt = {
        "images": [{"id": 1, "file_name": "strip.png", "width": 2048, "height": 1000}],
        "annotations": [],
        "categories": [{"id": 1, "name": "blob"}],
    }
    said.clear()
    predict_coco(tiled, gt, tmp_path, progress=lambda *p: said.append(p))
    assert said[-1] == (strip, strip) and set(range(8, strip, 8)) <= {d for d, _ in said}


def test_tile_windows_cover_the_image_with_whole_tiles() -> None:
    windows = tile_windows((400, 800), 200, 0.25)
    assert len(windows) == 3 * 5
    assert all((x1 - x0, y1 - y0) == (200, 200) for x0, y0, x1, y1 in windows)
    covered = np.zeros((400, 800), bool)
    for x0, y0, x1, y1 in windows:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert tile_windows((100, 150), 200, 0.25) == [(0, 0, 150, 100)]


# boxes, scores, classes, cut, tiles -> merged boxes, scores, classes (highest score first)
MERGE_CASES = [
    pytest.param(
        [[10, 10, 50, 50], [30, 12, 50, 48]], [0.9, 0.6], [0, 0], [False, True], [0, 1],
        [[10, 10, 50, 50]], [0.9], [0],
        id="seen whole by one tile, in part by the next: the whole one",
    ),
    pytest.param(
        [[100, 10, 150, 40], [140, 12, 220, 42]], [0.5, 0.8], [1, 1], [True, True], [0, 1],
        [[100, 10, 220, 42]], [0.8], [1],
        id="cut by both tiles' edges: their union, the higher score",
    ),
    pytest.param(
        [[100, 10, 150, 40], [140, 12, 220, 42]], [0.5, 0.8], [1, 1], [False, False], [0, 1],
        [[140, 12, 220, 42], [100, 10, 150, 40]], [0.8, 0.5], [1, 1],
        id="overlapping a little, not cut: two defects",
    ),
    pytest.param(
        [[10, 10, 50, 50], [30, 12, 50, 48]], [0.9, 0.6], [0, 0], [True, True], [3, 3],
        [[10, 10, 50, 50], [30, 12, 50, 48]], [0.9, 0.6], [0, 0],
        id="one tile's boxes: NMS has decided already",
    ),
    pytest.param(
        [[10, 10, 50, 50], [10, 10, 50, 50]], [0.9, 0.6], [0, 2], [True, True], [0, 1],
        [[10, 10, 50, 50], [10, 10, 50, 50]], [0.9, 0.6], [0, 2],
        id="other classes: never merged",
    ),
    pytest.param(
        [[0, 0, 100, 100], [60, 0, 160, 100]], [0.9, 0.8], [0, 0], [False, False], [0, 1],
        [[0, 0, 100, 100], [60, 0, 160, 100]], [0.9, 0.8], [0, 0],
        id="covering 0.4 of the smaller: kept",
    ),
    pytest.param([], [], [], [], [], [], [], [], id="nothing found"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("boxes", "scores", "classes", "cut", "tiles", "want_boxes", "want_scores", "want_classes"),
    MERGE_CASES,
)
def test_merge_tiles(
    boxes: list[list[float]],
    scores: list[float],
    classes: list[int],
    cut: list[bool],
    tiles: list[int],
    want_boxes: list[list[float]],
    want_scores: list[float],
    want_classes: list[int],
) -> None:
    merged, merged_scores, merged_classes = merge_tiles(
        np.array(boxes, float).reshape(-1, 4),
        np.array(scores, float),
        np.array(classes, int),
        np.array(cut, bool),
        np.array(tiles, int),
    )
    assert merged.tolist() == want_boxes
    assert merged_scores.tolist() == want_scores
    assert merged_classes.tolist() == want_classes


@pytest.mark.parametrize(
    ("scores", "join_ratio", "want_boxes", "want_scores"),
    [
        pytest.param(
            [0.2, 0.8], 0.3, [[140, 12, 220, 42], [100, 10, 150, 40]], [0.8, 0.2],
            id="a faint part (0.2 < 0.3 x 0.8): not joined, kept apart",
        ),
        pytest.param(
            [0.25, 0.8], 0.3, [[100, 10, 220, 42]], [0.8],
            id="a part scoring 0.3 of the other's or more: joined",
        ),
        pytest.param(
            [0.2, 0.8], 0.0, [[100, 10, 220, 42]], [0.8], id="without a ratio: any part joined",
        ),
    ],
)  # fmt: skip
def test_merge_tiles_joins_parts_of_comparable_score(
    scores: list[float], join_ratio: float, want_boxes: list[list[int]], want_scores: list[float]
) -> None:
    merged, merged_scores, _ = merge_tiles(
        np.array([[100, 10, 150, 40], [140, 12, 220, 42]], float),
        np.array(scores),
        np.array([1, 1]),
        np.array([True, True]),
        np.array([0, 1]),
        join_ratio=join_ratio,
    )
    assert merged.tolist() == want_boxes
    assert merged_scores.tolist() == want_scores


@pytest.mark.parametrize(
    ("boxes", "cut", "touch", "want_boxes"),
    [
        pytest.param(
            [[100, 10, 200, 40], [200, 12, 260, 42]], [True, True], 4.0,
            [[100, 10, 260, 42]], id="halves meeting at the edge two tiles share: joined",
        ),
        pytest.param(
            [[100, 10, 198, 40], [201, 12, 260, 42]], [True, True], 4.0,
            [[100, 10, 260, 42]], id="halves within touch of each other: joined",
        ),
        pytest.param(
            [[100, 10, 200, 40], [200, 12, 260, 42]], [True, True], 0.0,
            [[200, 12, 260, 42], [100, 10, 200, 40]], id="without touch, halves only meet",
        ),
        pytest.param(
            [[100, 10, 190, 40], [200, 12, 260, 42]], [True, True], 4.0,
            [[200, 12, 260, 42], [100, 10, 190, 40]], id="farther apart: two defects",
        ),
        pytest.param(
            [[100, 10, 200, 40], [200, 12, 260, 42]], [False, True], 4.0,
            [[200, 12, 260, 42], [100, 10, 200, 40]], id="one not cut: two defects",
        ),
        pytest.param(
            [[100, 10, 200, 40], [200, 50, 260, 80]], [True, True], 4.0,
            [[200, 50, 260, 80], [100, 10, 200, 40]], id="side by side along the edge: two",
        ),
    ],
)  # fmt: skip
def test_merge_tiles_joins_halves_that_touch(
    boxes: list[list[int]], cut: list[bool], touch: float, want_boxes: list[list[int]]
) -> None:
    merged, _, _ = merge_tiles(
        np.array(boxes, float),
        np.array([0.5, 0.8]),
        np.array([1, 1]),
        np.array(cut, bool),
        np.array([0, 1]),
        touch=touch,
    )
    assert merged.tolist() == want_boxes


@pytest.mark.parametrize("overlap", [0.25, 0.0])
def test_a_blob_across_tiles_is_found_once_and_whole(overlap: float) -> None:
    """A blob four tiles wide, and one inside the overlap of two tiles: each found once,
    its box the blob's, from tiles of one batch. Without overlap the blob's parts only
    meet at the tiles' shared edges, and are joined there."""
    image = np.zeros((100, 500, 3), np.uint8)
    image[20:80, 30:430] = 255  # crosses every tile
    image[85:95, 140:160] = 255  # inside tiles 1 and 2 both (75..175, 150..250)
    detector = BiasedBlobDetector(shift=(0, 0))
    tiled = TiledDetector(detector, tile=100, overlap=overlap, batch=64)
    found = tiled([image], conf=0.1)[0]
    assert detector.calls == [len(tile_windows(image.shape[:2], 100, overlap))]
    assert sorted(found.boxes.tolist()) == [[30, 20, 430, 80], [140, 85, 160, 95]]
    small = np.zeros((80, 90, 3), np.uint8)
    small[10:20, 10:30] = 255
    assert tiled([small], conf=0.1)[0].boxes.tolist() == detector([small])[0].boxes.tolist()


def _mosaic(paths: list[Path], columns: int) -> np.ndarray:
    cells = [read_image(path) for path in paths]
    rows = [np.hstack(cells[i : i + columns]) for i in range(0, len(cells), columns)]
    return np.vstack(rows)


def test_released_model_on_aligned_tiles_finds_what_it_finds_on_each_image(neu_det: Path) -> None:
    """Eight real NEU-DET images side by side (800x400): tiled at their own size, the
    released model finds in each cell exactly what it finds in that image alone;
    letterboxed whole, every defect shrunk to a quarter, it finds less."""
    names = ["crazing_1", "inclusion_5", "patches_9", "pitted_surface_3",
             "rolled-in_scale_7", "scratches_2", "inclusion_40", "patches_33"]  # fmt: skip
    paths = [neu_det / "IMAGES" / f"{name}.jpg" for name in names]
    detector = load_detector("neu-det", "onnx")
    alone = detector([read_image(path) for path in paths], conf=0.25)
    mosaic = _mosaic(paths, 4)
    tiled = load_detector("neu-det", "onnx", tile=200, tile_overlap=0.0)([mosaic], conf=0.25)[0]
    for index, own in enumerate(alone):
        row, column = divmod(index, 4)
        offset = np.array([200 * column, 200 * row] * 2, float)
        centres = (tiled.boxes[:, :2] + tiled.boxes[:, 2:]) / 2 - offset[:2]
        inside = np.all((centres >= 0) & (centres < 200), axis=1)
        order = np.argsort(-own.scores)
        assert tiled.classes[inside].tolist() == own.classes[order].tolist(), names[index]
        assert tiled.boxes[inside] - offset == pytest.approx(own.boxes[order], abs=1e-3)
    whole = detector([mosaic], conf=0.25)[0]
    assert len(whole.scores) < len(tiled.scores)


def _mosaic_dataset(neu_det: Path, root: Path) -> Path:
    """Two 800x400 mosaics of real NEU-DET images as a Pascal VOC dataset, their boxes
    moved with their images."""
    from lxml import etree

    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    stems = sorted(p.stem for p in (neu_det / "ANNOTATIONS").glob("*.xml"))[::113][:16]
    for number in range(2):
        group = stems[8 * number : 8 * number + 8]
        cv2.imwrite(
            str(root / "JPEGImages" / f"strip{number}.jpg"),
            _mosaic([neu_det / "IMAGES" / f"{s}.jpg" for s in group], 4),
        )
        annotation = etree.fromstring(
            f"<annotation><filename>strip{number}.jpg</filename><size><width>800</width>"
            "<height>400</height><depth>3</depth></size></annotation>"
        )
        for index, stem in enumerate(group):
            row, column = divmod(index, 4)
            for obj in etree.parse(str(neu_det / "ANNOTATIONS" / f"{stem}.xml")).iter("object"):
                box = obj.find("bndbox")
                for tag, offset in (("xmin", 200 * column), ("xmax", 200 * column)):
                    box.find(tag).text = str(int(box.find(tag).text) + offset)
                for tag, offset in (("ymin", 200 * row), ("ymax", 200 * row)):
                    box.find(tag).text = str(int(box.find(tag).text) + offset)
                annotation.append(obj)
        (root / "Annotations" / f"strip{number}.xml").write_bytes(etree.tostring(annotation))
    return root


def test_tile_through_evaluate_and_predict(
    neu_det: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On real steel laid out as 800x400 strips, `evaluate --tile 200` scores the
    released model far above the strips letterboxed whole, and records how; `predict
    --tile` writes its boxes inside the strips."""
    from converters.convert import convert
    from detection.cli import main

    data = convert(_mosaic_dataset(neu_det, tmp_path / "voc"), tmp_path / "data", ratios=(0, 1)).out
    base = ["evaluate", "--weights", "neu-det", "--data", str(data), "--bootstrap", "0"]
    base += ["--backend", "onnx", "--no-ultralytics"]
    assert main([*base, "--out", str(tmp_path / "whole")]) == 0
    said_whole = " ".join(capsys.readouterr().err.split())
    assert "Tiles of" not in said_whole
    assert main([*base, "--out", str(tmp_path / "tiled"), "--tile", "200"]) == 0
    # Said before the work, as predict says it: 2 strips of 5 x 3 tiles.
    plan = "2 of 2 images larger than a tile, cut into 30 tiles in all"
    assert plan in " ".join(capsys.readouterr().err.split())
    whole = json.loads((tmp_path / "whole" / "report.json").read_text())
    tiled = json.loads((tmp_path / "tiled" / "report.json").read_text())
    assert tiled["prediction_settings"]["tile"] == {"size": 200, "overlap": 0.25, "join_ratio": 0.3}
    assert "tile" not in whole["prediction_settings"]
    assert (
        "detected in tiles of 200 px overlapping by 0.25 of a tile, their boxes merged (`--tile`; "
        "a cut part joined to another only if it scores 0.3 of its score or more)."
        in " ".join((tmp_path / "tiled" / "report.md").read_text().split())
    )
    assert tiled["mAP50"] > whole["mAP50"] + 0.1
    # Letterboxed whole, each strip is drawn at a quarter of the training scale: the report and
    # the console say so, and what brings it back; in tiles of 200 px, nothing to say.
    assert whole["off_scale"]["images"] == whole["off_scale"]["of"] == whole["images"]
    assert whole["off_scale"]["smaller"]["scale"] == pytest.approx(0.25)
    said = (tmp_path / "whole" / "report.md").read_text()
    assert "**Off the training scale:**" in said and "--tile 200 detects" in said
    assert "--tile 200 detects" in said_whole
    assert tiled["off_scale"] is None
    # compare says it once, for every model it runs.
    models = [str(resolve_weights("neu-det").with_suffix(s)) for s in (".onnx", ".int8.onnx")]
    argv = ["compare", "--data", str(data), "--weights", *models, "--tile", "200"]
    assert main([*argv, "--bootstrap", "0", "--out", str(tmp_path / "compared")]) == 0
    assert " ".join(capsys.readouterr().err.split()).count(plan) == 1

    out = tmp_path / "predicted"
    strips = str(tmp_path / "voc" / "JPEGImages")
    argv = ["predict", strips, "--weights", "neu-det", "--backend", "onnx", "--tile", "200"]
    assert main([*argv, "--out", str(out), "--no-images"]) == 0
    # Said before the work: 2 strips of 5 x 3 tiles.
    said = " ".join(capsys.readouterr().err.split())
    assert plan in said
    predicted = json.loads((out / "predictions.json").read_text())
    assert predicted
    for box in predicted:
        x, y, w, h = box["bbox"]
        assert min(x, y) >= 0 and x + w <= 800 + 1e-3 and y + h <= 400 + 1e-3
    # What predict keeps at its threshold (0.25) is what evaluate scored, cut there: the
    # tiles are detected at the evaluation's confidence whatever --conf is, and merged
    # before the cut (cut first, 231 of 930 boxes on 40 such strips moved by over a pixel).
    gt = json.loads((data / "annotations" / "instances_val.json").read_text())
    stems = {image["id"]: Path(image["file_name"]).stem for image in gt["images"]}
    scored = json.loads((tmp_path / "tiled" / "results.json").read_text())

    def kept(results: list[dict], stem: Callable[[dict], str]) -> list[tuple]:
        return sorted(
            (stem(r), r["category_id"], r["score"], *r["bbox"])
            for r in results
            if r["score"] >= 0.25
        )

    from_predict = kept(predicted, lambda r: Path(r["file_name"]).stem)
    from_evaluate = kept(scored, lambda r: stems[r["image_id"]])
    assert [r[:2] for r in from_predict] == [r[:2] for r in from_evaluate]
    assert np.array([r[2:] for r in from_predict]) == pytest.approx(
        np.array([r[2:] for r in from_evaluate]), abs=1e-3
    )


def test_tile_is_refused_for_a_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from detection.cli import main

    results, gt = tmp_path / "r.json", tmp_path / "g.json"
    results.write_text("[]")
    gt.write_text("{}")
    argv = [
        "evaluate",
        "--predictions",
        str(results),
        "--gt",
        str(gt),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--tile", "200"]) == 2
    assert "--tile and --backend change how predictions are made" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("width", "height", "imgsz", "tile", "scale"),
    [
        (200, 200, 416, None, 1.0),  # NEU-DET itself
        (2000, 200, 416, None, 0.1),  # a line camera's strip letterboxed whole
        (2000, 200, 416, 200, 1.0),  # ... in tiles of the training images' size
        (2000, 200, 416, 400, 0.5),
        (150, 150, 416, 200, 416 / 150 / (416 / 200)),  # no larger than a tile: whole
        (100, 100, 416, None, 2.0),  # a small crop, upscaled twice as much
        (200, 200, 512, None, 512 / 416),  # another --imgsz
        (200, 400, 416, None, 0.5),  # the longer side is letterboxed to imgsz
    ],
)
def test_scale_against_training(
    width: int, height: int, imgsz: int, tile: int | None, scale: float
) -> None:
    field = {"width": 200, "height": 200, "imgsz": 416}
    assert scale_against_training(field, width, height, imgsz, tile) == pytest.approx(scale)


def test_predict_says_which_images_it_draws_off_the_training_scale(
    neu_det: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A strip of five real NEU-DET images (1000x200) letterboxed whole shows the release
    its defects at a fifth of their training size, a 120x120 crop at 1.7 times: predict
    names both, and the option that brings each back; NEU-DET's own images pass unsaid,
    as do weights with no record of their training images' size."""
    from detection.cli import main
    from detection.predict import predict

    names = ["crazing_1", "inclusion_5", "patches_9", "pitted_surface_3", "scratches_2"]
    paths = [neu_det / "IMAGES" / f"{name}.jpg" for name in names]
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(paths[0], images)
    cv2.imwrite(str(images / "strip.png"), _mosaic(paths, 5))
    cv2.imwrite(str(images / "crop.png"), read_image(paths[1])[:120, :120])

    def run(weights: str, **options: int) -> dict:
        return predict(weights, [images], None, backend="onnx", save_images=False, **options)

    note = run("neu-det")["off_scale"]
    assert note["images"] == 2 and note["of"] == 3
    assert note["trained"] == {"width": 200, "height": 200, "imgsz": 416}
    assert note["smaller"]["farthest"] == {"file": str(images / "strip.png"), "width": 1000,
                                           "height": 200}  # fmt: skip
    assert note["smaller"]["scale"] == pytest.approx(0.2)
    assert note["larger"]["images"] == 1 and note["larger"]["scale"] == round(200 / 120, 3)
    # A tile of the training images' size; a size that draws the crop near the training
    # scale (416 / 1.67 = 250, to the model's stride: 256, 1.03 of it).
    assert "--tile 200 detects" in note["sentence"] and "--imgsz 256 draws" in note["sentence"]
    assert run("neu-det", imgsz=256)["off_scale"]["larger"] is None
    tiled = run("neu-det", tile=200)["off_scale"]
    assert tiled["images"] == 1 and tiled["smaller"] is None
    # Each image's scale is kept with it (images.json); NEU-DET's own at 1.
    assert main(["predict", str(images), "--weights", "neu-det", "--backend", "onnx",
                 "--out", str(tmp_path / "out"), "--no-images"]) == 0  # fmt: skip
    said = " ".join(capsys.readouterr().err.split())
    assert "2 of 3 images are drawn off the scale the model was trained at" in said
    assert "strip.png (1000x200): its defects look 5.0 times smaller" in said
    written = json.loads((tmp_path / "out" / "images.json").read_text())["images"]
    assert {Path(image["file_name"]).name: image["scale"] for image in written} == {
        "crazing_1.jpg": 1.0, "strip.png": 0.2, "crop.png": round(200 / 120, 3)
    }  # fmt: skip
    # The same weights without their card: nothing recorded, nothing said.
    alone = tmp_path / "alone" / "model.pt"
    alone.parent.mkdir()
    shutil.copyfile(resolve_weights("neu-det"), alone)
    assert predict(alone, [images], None, save_images=False)["off_scale"] is None
