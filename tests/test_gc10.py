"""GC10-DET's three real layouts on generated fixtures with the real files' quirks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from converters.convert import convert
from converters.errors import ConversionError
from converters.layouts import is_image_level_tree
from converters.source import SourceDataset, read_dataset
from tests.helpers import voc_xml, write_image, write_xml

W, H = 96, 48  # 2048x1000 strips, scaled down


def _quirky_files() -> list[dict]:
    """One entry per annotated image: folder number, stem, <folder>, objects."""
    return [
        # Plain: class 1 in folder 1.
        {
            "folder": "1",
            "stem": "img_01_a",
            "xml_folder": "1",
            "objects": [("1_chongkong", 5, 5, 20, 20)],
        },
        # The real misspelling `10_yaozhed` (131 times in the release).
        {
            "folder": "10",
            "stem": "img_10_a",
            "xml_folder": "10",
            "objects": [("10_yaozhed", 1, 1, 96, 48), ("10_yaozhe", 10, 10, 30, 30)],
        },
        # Several classes in one image that sits in one class folder.
        {
            "folder": "4",
            "stem": "img_04_a",
            "xml_folder": "4",
            "objects": [("4_shuiban", 5, 5, 40, 40), ("5_youban", 50, 5, 90, 40)],
        },
        # A stray label that is no class at all, beside a valid one.
        {
            "folder": "7",
            "stem": "img_07_a",
            "xml_folder": "7",
            "objects": [("7_yiwu", 5, 5, 20, 20), ("lable", 30, 5, 40, 20)],
        },
        # <folder> that is not a class number.
        {
            "folder": "2",
            "stem": "img_02_a",
            "xml_folder": "JPEGImages",
            "objects": [("2_hanfeng", 1, 20, 96, 30)],
        },
    ]


def _write_official(root: Path) -> None:
    for i, entry in enumerate(_quirky_files()):
        write_image(root / entry["folder"] / f"{entry['stem']}.jpg", W, H, seed=i)
        write_xml(
            root / "lable" / f"{entry['stem']}.xml",
            voc_xml(f"{entry['stem']}.jpg", entry["objects"], (W, H), entry["xml_folder"]),
        )
    # An image without any XML.
    write_image(root / "3" / "img_03_noxml.jpg", W, H, seed=50)
    # The same file (identical bytes) in two class folders.
    write_image(root / "6" / "img_06_dup.jpg", W, H, seed=60)
    write_image(root / "8" / "img_06_dup.jpg", W, H, seed=60)
    write_xml(
        root / "lable" / "img_06_dup.xml",
        voc_xml(
            "img_06_dup.jpg", [("6_siban", 5, 5, 15, 15), ("8_yahen", 20, 5, 30, 15)], (W, H), "6"
        ),
    )
    # The same name for two different images; <folder> says which one the XML is about.
    write_image(root / "9" / "img_09_same.jpg", W, H, seed=90)
    write_image(root / "3" / "img_09_same.jpg", W, H, seed=91)
    write_xml(
        root / "lable" / "img_09_same.xml",
        voc_xml("img_09_same.jpg", [("9_zhehen", 5, 5, 15, 40)], (W, H), "9"),
    )


def _check(result_source: SourceDataset, layout_words: str) -> None:
    dataset, report = result_source.dataset, result_source.report
    assert result_source.definition.name == "gc10-det"
    assert layout_words in result_source.layout.layout
    labels = Counter(box.label for image in dataset.images for box in image.boxes)
    assert labels == {
        "punching_hole": 1,
        "waist_folding": 2,
        "water_spot": 1,
        "oil_spot": 1,
        "inclusion": 1,
        "welding_line": 1,
        "silk_spot": 1,
        "rolled_pit": 1,
        "crease": 1,
    }
    problems = Counter(p.problem for p in report.problems)
    assert problems["unknown_class"] == 1
    assert problems["class_alias"] == 10  # every pinyin name is an alias of an English one
    assert report.boxes_in_input == dataset.box_count + report.boxes_dropped


def test_official_layout(tmp_path: Path) -> None:
    _write_official(tmp_path / "GC10")
    source = read_dataset(tmp_path / "GC10")
    _check(source, "official")
    problems = {(p.file, p.problem) for p in source.report.problems}
    assert ("3/img_03_noxml.jpg", "unlabeled_image") in problems
    assert ("lable/img_06_dup.xml", "duplicate_image") in problems
    # The differing same-name image in folder 3 has no annotation of its own.
    assert ("3/img_09_same.jpg", "unlabeled_image") in problems
    by_name = {image.name: image for image in source.dataset.images}
    assert by_name["img_09_same.jpg"].path.parent.name == "9"
    assert by_name["img_04_a.jpg"].labels == {"water_spot", "oil_spot"}
    unknown = [p for p in source.report.problems if p.problem == "unknown_class"]
    assert (unknown[0].file, unknown[0].object_index) == ("lable/img_07_a.xml", 1)
    assert "'lable'" in unknown[0].detail


def test_training_on_the_unconverted_tree_says_convert_it(tmp_path: Path) -> None:
    """Its images lie in a folder per class (1/ to 10/): `train` took it for image-level
    data and offered a classifier, though its boxes are in lable/."""
    from detection.train import resolve_data

    _write_official(tmp_path / "GC10")
    assert not is_image_level_tree(tmp_path / "GC10")
    with pytest.raises(ConversionError, match=r"GC10 is a dataset in VOC XML .* convert it first"):
        resolve_data(tmp_path / "GC10")


def test_unlabeled_as_background(tmp_path: Path) -> None:
    _write_official(tmp_path / "GC10")
    source = read_dataset(tmp_path / "GC10", unlabeled_as_background=True)
    names = {image.name for image in source.dataset.images if not image.boxes}
    assert "img_03_noxml.jpg" in names
    # The second image called img_09_same.jpg is kept under a unique name.
    assert any(p.problem == "name_collision" for p in source.report.problems)
    assert len({image.name for image in source.dataset.images}) == len(source.dataset.images)


def test_ambiguous_same_name_without_folder_hint_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "GC10"
    write_image(root / "1" / "x.jpg", W, H, seed=1)
    write_image(root / "2" / "x.jpg", W, H, seed=2)
    write_xml(
        root / "lable" / "x.xml", voc_xml("x.jpg", [("1_chongkong", 1, 1, 5, 5)], (W, H), "pics")
    )
    source = read_dataset(root)
    assert source.dataset.images == []
    assert next((p.problem, p.boxes_dropped) for p in source.report.errors) == (
        "ambiguous_image",
        1,
    )


def test_kaggle_layout(tmp_path: Path) -> None:
    root = tmp_path / "kaggle"
    english = {
        "1": "Punching_hole",
        "2": "Welding_line",
        "3": "Crescent_gap",
        "4": "Water_spot",
        "6": "Silk_spot",
        "7": "Inclusion",
        "8": "Rolled_pit",
        "9": "crease",
        "10": "Waist folding",
    }
    _write_official(tmp_path / "official")
    for image in (tmp_path / "official").glob("[0-9]*/*.jpg"):
        target = root / "images" / "images" / english[image.parent.name] / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.read_bytes())
    for xml in (tmp_path / "official" / "lable").glob("*.xml"):
        write_xml(root / "label" / "label" / xml.name, xml.read_text())
    source = read_dataset(root)
    _check(source, "Kaggle")


def test_vocdevkit_layout_is_recognised_by_its_class_names(tmp_path: Path) -> None:
    root = tmp_path / "VOCdevkit" / "VOC2007"
    for i, entry in enumerate(_quirky_files()):
        write_image(root / "JPEGImages" / f"{entry['stem']}.jpg", W, H, seed=i)
        write_xml(
            root / "Annotations" / f"{entry['stem']}.xml",
            voc_xml(f"{entry['stem']}.jpg", entry["objects"], (W, H)),
        )
    result = convert(tmp_path / "VOCdevkit", tmp_path / "out")
    assert result.source.definition.name == "gc10-det"
    assert "Pascal VOC" in result.source.layout.layout
    assert result.manifest["classes"][0] == "punching_hole"
    assert len(result.manifest["classes"]) == 10


@pytest.mark.parametrize("fmt", ["gc10-det", None])
def test_format_flag_and_detection_agree(tmp_path: Path, fmt: str | None) -> None:
    _write_official(tmp_path / "GC10")
    assert read_dataset(tmp_path / "GC10", format=fmt).definition.name == "gc10-det"
