"""NEU-DET's Kaggle layout, generic Pascal VOC, split ratios and layout errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from converters.convert import convert
from converters.definitions import from_class_list
from converters.errors import ConversionError
from converters.layouts import detect_layout
from converters.split import parse_ratios
from detection.cli import main
from tests.helpers import voc_xml, write_image, write_xml

CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def _neu_kaggle(root: Path) -> None:
    for part, count in (("train", 12), ("validation", 4)):
        for i in range(count):
            cls = CLASSES[i % 6]
            stem = f"{cls}_{part}_{i}"
            write_image(root / part / "images" / cls / f"{stem}.jpg", 200, 200, seed=i)
            # Kaggle's files drop the extension in <filename> like the original ones.
            write_xml(
                root / part / "annotations" / f"{stem}.xml",
                voc_xml(stem, [(cls, 10, 10, 60, 60)], (200, 200), folder=cls[:2]),
            )


def test_neu_kaggle_keeps_its_split(tmp_path: Path):
    _neu_kaggle(tmp_path / "NEU-DET")
    result = convert(tmp_path / "NEU-DET", tmp_path / "out")
    assert "Kaggle" in result.source.layout.layout
    assert {s: c["images"] for s, c in result.manifest["counts"].items()} == {"train": 12, "val": 4}
    val = {im.name for im in result.source.dataset.split("val")}
    assert all("_validation_" in name for name in val)


def test_neu_kaggle_resplit(tmp_path: Path):
    _neu_kaggle(tmp_path / "NEU-DET")
    result = convert(tmp_path / "NEU-DET", tmp_path / "out", ratios=(0.5, 0.5), resplit=True)
    assert {s: c["images"] for s, c in result.manifest["counts"].items()} == {"train": 8, "val": 8}


def _generic_voc(root: Path, with_lists: bool) -> None:
    names = ["bolt", "nut", "washer"]
    for i in range(9):
        write_image(root / "JPEGImages" / f"{i:06d}.jpg", 80, 60, seed=i)
        write_xml(
            root / "Annotations" / f"{i:06d}.xml",
            voc_xml(f"{i:06d}.jpg", [(names[i % 3], 5, 5, 30, 30)], (80, 60)),
        )
    if with_lists:
        main = root / "ImageSets" / "Main"
        main.mkdir(parents=True)
        (main / "train.txt").write_text("".join(f"{i:06d}\n" for i in range(6)))
        (main / "val.txt").write_text("".join(f"{i:06d}\n" for i in range(6, 8)))
        (main / "test.txt").write_text("000008\n")


def test_generic_voc_needs_its_classes(tmp_path: Path):
    _generic_voc(tmp_path / "voc", with_lists=False)
    with pytest.raises(ConversionError, match=r"--classes.*bolt \(3\)"):
        convert(tmp_path / "voc", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_generic_voc_with_image_sets(tmp_path: Path):
    _generic_voc(tmp_path / "voc", with_lists=True)
    result = convert(
        tmp_path / "voc", tmp_path / "out", definition=from_class_list(["washer", "nut", "bolt"])
    )
    assert "ImageSets" in result.source.layout.layout
    assert result.manifest["classes"] == ["washer", "nut", "bolt"]
    assert {s: c["images"] for s, c in result.manifest["counts"].items()} == {
        "train": 6,
        "val": 2,
        "test": 1,
    }
    assert (tmp_path / "out" / "labels" / "train" / "000000.txt").read_text().startswith("2 ")


def test_nested_folder_is_found(tmp_path: Path):
    write_image(tmp_path / "NEU-DET" / "NEU-DET" / "IMAGES" / "crazing_1.jpg")
    write_xml(
        tmp_path / "NEU-DET" / "NEU-DET" / "ANNOTATIONS" / "crazing_1.xml",
        voc_xml("crazing_1.jpg", [("crazing", 1, 1, 9, 9)]),
    )
    assert detect_layout(tmp_path / "NEU-DET").root == (tmp_path / "NEU-DET" / "NEU-DET").resolve()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such folder"),
        (lambda p: (p / "x").mkdir(parents=True) or (p / "y").mkdir(), "no known dataset layout"),
    ],
)
def test_unknown_layouts(tmp_path: Path, make, message):
    make(tmp_path / "src")
    with pytest.raises(ConversionError, match=message):
        detect_layout(tmp_path / "src")


@pytest.mark.parametrize(
    ("text", "expected", "error"),
    [
        ("0.8,0.2", (0.8, 0.2), None),
        ("0.7,0.15,0.15", (0.7, 0.15, 0.15), None),
        ("1,0", (1.0, 0.0), None),
        ("0.8", None, "two"),
        ("0.5,0.3", None, "sum to 1"),
        ("a,b", None, "numbers"),
        ("0,1", None, "train ratio"),
        ("1.2,-0.2", None, "non-negative"),
        ("0.25,0.25,0.25,0.25", None, "two"),
    ],
)
def test_parse_ratios(text, expected, error):
    if error:
        with pytest.raises(ConversionError, match=error):
            parse_ratios(text)
    else:
        assert parse_ratios(text) == expected


def test_everything_in_train(tmp_path: Path):
    _neu_kaggle(tmp_path / "n")
    result = convert(tmp_path / "n", tmp_path / "out", ratios=(1.0, 0.0), resplit=True)
    assert result.manifest["counts"]["train"]["images"] == 16
    assert list((tmp_path / "out" / "images" / "val").iterdir()) == []


def test_size_disagreement_uses_the_real_size(tmp_path: Path):
    write_image(tmp_path / "d" / "IMAGES" / "crazing_1.jpg", 64, 48)
    write_xml(
        tmp_path / "d" / "ANNOTATIONS" / "crazing_1.xml",
        voc_xml("crazing_1.jpg", [("crazing", 1, 1, 100, 40)], size=(200, 200)),
    )
    result = convert(tmp_path / "d", tmp_path / "out", ratios=(1.0, 0.0))
    image = result.source.dataset.images[0]
    assert (image.width, image.height) == (64, 48)
    assert image.boxes[0].coords == (0, 0, 64, 40)
    assert [p.problem for p in result.source.report.problems] == ["size_mismatch", "box_clipped"]


def test_missing_and_unreadable_images(tmp_path: Path):
    root = tmp_path / "d"
    write_xml(
        root / "ANNOTATIONS" / "crazing_1.xml", voc_xml("crazing_1.jpg", [("crazing", 1, 1, 9, 9)])
    )
    (root / "IMAGES").mkdir()
    (root / "IMAGES" / "crazing_2.jpg").write_bytes(b"not a jpeg")
    write_xml(
        root / "ANNOTATIONS" / "crazing_2.xml", voc_xml("crazing_2.jpg", [("crazing", 1, 1, 9, 9)])
    )
    write_image(root / "IMAGES" / "crazing_3.jpg")
    write_xml(root / "ANNOTATIONS" / "crazing_3.xml", voc_xml(None, [], size=None))
    result = convert(root, tmp_path / "out", ratios=(1.0, 0.0))
    problems = [(p.file, p.problem, p.boxes_dropped) for p in result.source.report.problems]
    assert problems == [
        ("ANNOTATIONS/crazing_1.xml", "missing_image", 1),
        ("ANNOTATIONS/crazing_2.xml", "unreadable_image", 1),
        ("ANNOTATIONS/crazing_3.xml", "missing_size", 0),
    ]
    # An image with no objects stays, as a background image with an empty label file.
    assert [im.name for im in result.source.dataset.images] == ["crazing_3.jpg"]
    assert (tmp_path / "out" / "labels" / "train" / "crazing_3.txt").read_text() == ""


def test_a_gbk_annotation_is_converted_and_reported(tmp_path: Path):
    # LabelImg-era tools on Chinese Windows: GBK bytes in <path>, no declaration.
    write_image(tmp_path / "d" / "IMAGES" / "crazing_1.jpg", 64, 48)
    text = voc_xml("crazing_1.jpg", [("crazing", 1, 1, 30, 40)], size=(64, 48), folder="裂纹")
    path = tmp_path / "d" / "ANNOTATIONS" / "crazing_1.xml"
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode("gbk"))
    result = convert(tmp_path / "d", tmp_path / "out", ratios=(1.0, 0.0))
    assert [b.coords for b in result.source.dataset.images[0].boxes] == [(0, 0, 30, 40)]
    (problem,) = result.source.report.problems
    assert (problem.problem, problem.severity, problem.action) == (
        "xml_encoding",
        "warning",
        "read as GB18030",
    )
    assert (tmp_path / "out" / "labels" / "train" / "crazing_1.txt").read_text().strip()


def _source_and_a_folder_of_ones_own(root: Path) -> None:
    write_image(root / "src" / "IMAGES" / "crazing_1.jpg", 64, 48)
    write_xml(root / "src" / "ANNOTATIONS" / "crazing_1.xml", voc_xml("crazing_1.jpg", []))
    (root / "mine").mkdir()
    (root / "mine" / "thesis.txt").write_text("precious")


# The output is swapped in whole; before this, `--out mine` deleted mine/thesis.txt and
# `--out src` the dataset itself, images and all.
@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("mine", "files of its own"),
        ("src", "holds the source dataset"),
        (".", "holds the source dataset"),
    ],
)
def test_convert_never_replaces_a_folder_it_did_not_write(
    tmp_path: Path, monkeypatch, capsys, out: str, message: str
):
    _source_and_a_folder_of_ones_own(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConversionError, match=message):
        convert(Path("src"), Path(out))
    assert main(["convert", "src", "--out", out]) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    assert (tmp_path / "src" / "IMAGES" / "crazing_1.jpg").is_file()
    assert not (tmp_path / "src" / "manifest.json").exists()


def test_convert_replaces_an_empty_folder_and_its_own_output(tmp_path: Path):
    _source_and_a_folder_of_ones_own(tmp_path)
    (tmp_path / "empty").mkdir()
    convert(tmp_path / "src", tmp_path / "empty")
    first = convert(tmp_path / "src", tmp_path / "out", seed=1)
    again = convert(tmp_path / "src", tmp_path / "out", seed=2)
    assert (first.manifest["seed"], again.manifest["seed"]) == (1, 2)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["seed"] == 2


@pytest.mark.parametrize("suffix", [".webp", ".JPG", ".Png", ".tiff"])
def test_every_image_format_opencv_decodes_is_found(tmp_path: Path, suffix: str):
    write_image(tmp_path / "d" / "IMAGES" / f"crazing_1{suffix}", 64, 48)  # by its suffix
    write_xml(
        tmp_path / "d" / "ANNOTATIONS" / "crazing_1.xml",
        voc_xml(f"crazing_1{suffix}", [("crazing", 1, 1, 30, 40)], size=(64, 48)),
    )
    result = convert(tmp_path / "d", tmp_path / "out", ratios=(1.0, 0.0))
    assert [i.name for i in result.source.dataset.images] == [f"crazing_1{suffix}"]
    assert not result.source.report.problems
