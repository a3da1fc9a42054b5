"""The real NEU-DET end to end: counts, accounting, stratification, COCO, exactness."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from pycocotools.coco import COCO

from converters.coco import from_coco
from converters.convert import ConvertResult, classes_without_boxes, convert
from converters.definitions import load_definition
from converters.voc import from_voc, parse_voc_xml, to_voc_xml
from converters.yolo import from_yolo_lines

README_COUNTS = {
    "crazing": 689,
    "inclusion": 1011,
    "patches": 881,
    "pitted_surface": 432,
    "rolled-in_scale": 628,
    "scratches": 548,
}


def _xml_boxes(neu_det: Path) -> dict[str, list[tuple]]:
    """Every object exactly as written in the XML: name and the four numbers."""
    boxes = {}
    for xml in sorted((neu_det / "ANNOTATIONS").glob("*.xml")):
        annotation = parse_voc_xml(xml.read_bytes(), xml.name)
        boxes[xml.stem] = [(o.name, *map(float, o.coords)) for o in annotation.objects]
    return boxes


def test_counts_and_accounting(neu_det: Path, neu_converted: ConvertResult) -> None:
    written = neu_converted.source.dataset
    report = neu_converted.source.report
    assert len(written.images) == 1800
    assert report.boxes_in_input == 4189
    assert sum(len(v) for v in _xml_boxes(neu_det).values()) == 4189
    dropped = Counter(p.problem for p in report.problems if p.boxes_dropped)
    assert written.box_count + report.boxes_dropped == 4189
    assert dropped == {"duplicate_box": 3}  # the README's "few exact duplicates"
    per_class = Counter(box.label for image in written.images for box in image.boxes)
    dropped_per_class = Counter(
        parse_voc_xml((neu_det / p.file).read_bytes(), p.file).objects[p.object_index].name
        for p in report.problems
        if p.boxes_dropped
    )
    assert per_class + dropped_per_class == README_COUNTS
    difficult = sum(box.difficult for image in written.images for box in image.boxes)
    assert difficult == 81
    # One image twice under two names (docs/neu-det-findings.md): reported, one split.
    (identical,) = [p for p in report.problems if p.problem == "identical_images"]
    assert identical.file == "ANNOTATIONS/patches_105.xml" and "patches_101.jpg" in identical.detail
    split_of = neu_converted.manifest["split_of_image"]
    assert split_of["patches_101.jpg"] == split_of["patches_105.jpg"]


def test_report_and_manifest_files(neu_converted: ConvertResult) -> None:
    out = neu_converted.out
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["boxes_in_input"] == 4189
    assert report["summary"]["accounted"] is True
    for problem in report["problems"]:
        assert {"file", "problem", "action", "object_index", "severity"} <= problem.keys()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"].startswith("NEU-DET original")
    assert manifest["classes"] == list(README_COUNTS)
    assert len(manifest["split_of_image"]) == 1800
    assert sum(c["boxes"] for c in manifest["counts"].values()) == 4186
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(README_COUNTS))
    # No path: ultralytics reads the images beside data.yaml, wherever it is moved.
    assert "path" not in data and (out / data["train"]).is_dir()
    # Grey steel read as one channel (datasets/neu-det.yaml): models of grey levels.
    assert data["channels"] == 1


def test_stratified_split_within_two_points(neu_converted: ConvertResult) -> None:
    images = neu_converted.source.dataset.images
    totals = Counter(box.label for image in images for box in image.boxes)
    for split, ratio in (("train", 0.8), ("val", 0.2)):
        counts = Counter(
            box.label for image in images if image.split == split for box in image.boxes
        )
        for cls, total in totals.items():
            assert abs(counts[cls] / total - ratio) <= 0.02, (split, cls)
        share = sum(1 for image in images if image.split == split) / len(images)
        assert abs(share - ratio) <= 0.02
    # Every class in every split: convert has no class to say it left out.
    assert classes_without_boxes(neu_converted.manifest["counts"]) == {
        "nowhere": [], "by_split": {}
    }  # fmt: skip


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_loads_in_pycocotools_and_matches_the_xml(
    neu_det: Path, neu_converted: ConvertResult, split: str
) -> None:
    out = neu_converted.out
    coco = COCO(str(out / "annotations" / f"instances_{split}.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(README_COUNTS)
    images = neu_converted.source.dataset.split(split)
    assert len(coco.getImgIds()) == len(images)
    xml_boxes = _xml_boxes(neu_det)
    dataset = from_coco(json.loads((out / "annotations" / f"instances_{split}.json").read_text()))
    for image in dataset.images:
        # COCO [x, y, w, h] + 1-based VOC convention gives back the XML numbers exactly.
        got = Counter((b.label, b.xmin + 1, b.ymin + 1, b.xmax, b.ymax) for b in image.boxes)
        want = Counter(xml_boxes[image.stem])
        assert got <= want and sum(want.values()) - sum(got.values()) <= 1, image.name


def test_yolo_labels_match_the_xml_exactly(neu_det: Path, neu_converted: ConvertResult) -> None:
    out = neu_converted.out
    xml_boxes = _xml_boxes(neu_det)
    classes = list(README_COUNTS)
    checked = 0
    for label_file in sorted((out / "labels").rglob("*.txt")):
        boxes = from_yolo_lines(label_file.read_text(), 200, 200, classes, str(label_file))
        got = Counter(
            (b.label, round(b.xmin) + 1, round(b.ymin) + 1, round(b.xmax), round(b.ymax))
            for b in boxes
        )
        assert max(abs(v - round(v)) for b in boxes for v in b.coords) < 1e-3
        want = Counter(xml_boxes[label_file.stem])
        assert got <= want and sum(want.values()) - sum(got.values()) <= 1
        checked += len(boxes)
    assert checked == 4186


def test_round_trip_voc_coco_yolo_voc_is_exact(neu_det: Path, neu_converted: ConvertResult) -> None:
    """VOC -> COCO -> VOC and VOC -> YOLO -> VOC give back every written box exactly."""
    out = neu_converted.out
    neu = load_definition("neu-det")
    originals = {image.name: image for image in neu_converted.source.dataset.images}
    for split in ("train", "val"):
        coco = from_coco(json.loads((out / "annotations" / f"instances_{split}.json").read_text()))
        for image in coco.images:
            back, report = from_voc(to_voc_xml(image), image.name, 200, 200, neu.resolve)
            assert back.boxes == originals[image.name].boxes and not report.problems
            assert back.name == image.name
            label_text = (out / "labels" / split / f"{image.stem}.txt").read_text()
            yolo_image = type(image)(
                image.name, image.path, 200, 200, from_yolo_lines(label_text, 200, 200, neu.classes)
            )
            back, _ = from_voc(to_voc_xml(yolo_image), image.name, 200, 200, neu.resolve)
            want = originals[image.name].boxes
            assert [b.coords for b in back.boxes] == [b.coords for b in want]


def test_same_seed_gives_identical_bytes(neu_det: Path, tmp_path: Path) -> None:
    first = convert(neu_det, tmp_path / "a", seed=3).out
    second = convert(neu_det, tmp_path / "b", seed=3).out

    def snapshot(root: Path) -> dict[str, bytes]:
        files = {}
        for path in sorted(root.rglob("*")):
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                files[key] = str(path.readlink()).encode()
            elif path.is_file():
                files[key] = path.read_bytes().replace(str(root).encode(), b"OUT")
        return files

    assert snapshot(first) == snapshot(second)
    other = convert(neu_det, tmp_path / "c", seed=4).out
    assert snapshot(other)["manifest.json"] != snapshot(first)["manifest.json"]


def test_three_way_split(neu_det: Path, tmp_path: Path) -> None:
    result = convert(neu_det, tmp_path / "out", ratios=(0.7, 0.15, 0.15))
    counts = result.manifest["counts"]
    assert set(counts) == {"train", "val", "test"}
    assert (tmp_path / "out" / "annotations" / "instances_test.json").is_file()
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert data["test"] == "images/test"
    assert sum(c["images"] for c in counts.values()) == 1800
    assert classes_without_boxes(counts) == {"nowhere": [], "by_split": {}}
