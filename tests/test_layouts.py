"""NEU-DET's Kaggle layout, generic Pascal VOC, split ratios and layout errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from converters.convert import convert
from converters.definitions import from_class_list
from converters.errors import ConversionError
from converters.folders import OUTPUT_MARKERS, check_output_folder
from converters.layouts import class_folders, detect_layout, images_in
from converters.model import ImageAnnotation
from converters.source import read_dataset
from converters.split import assign_splits, parse_ratios
from detection.cli import main
from tests.helpers import voc_xml, write_image, write_xml

CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def _neu_kaggle(root: Path) -> None:
    for part, count in (("train", 12), ("validation", 4)):
        for i in range(count):
            cls = CLASSES[i % 6]
            stem = f"{cls}_{part}_{i}"
            # Distinct pixels per image: the same seed in both parts would make copies.
            seed = i if part == "train" else 100 + i
            write_image(root / part / "images" / cls / f"{stem}.jpg", 200, 200, seed=seed)
            # Kaggle's files drop the extension in <filename> like the original ones.
            write_xml(
                root / part / "annotations" / f"{stem}.xml",
                voc_xml(stem, [(cls, 10, 10, 60, 60)], (200, 200), folder=cls[:2]),
            )


def test_neu_kaggle_keeps_its_split(tmp_path: Path) -> None:
    _neu_kaggle(tmp_path / "NEU-DET")
    result = convert(tmp_path / "NEU-DET", tmp_path / "out")
    assert "Kaggle" in result.source.layout.layout
    assert {s: c["images"] for s, c in result.manifest["counts"].items()} == {"train": 12, "val": 4}
    val = {im.name for im in result.source.dataset.split("val")}
    assert all("_validation_" in name for name in val)


def test_neu_kaggle_resplit(tmp_path: Path) -> None:
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
        # PASCAL VOC's per-class lists: not splits, and not named as read.
        (main / "bolt_train.txt").write_text("000000  1\n000001 -1\n")


def test_generic_voc_needs_its_classes(tmp_path: Path) -> None:
    _generic_voc(tmp_path / "voc", with_lists=False)
    with pytest.raises(ConversionError, match=r"--classes.*bolt \(3\)"):
        convert(tmp_path / "voc", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_generic_voc_with_image_sets(tmp_path: Path) -> None:
    _generic_voc(tmp_path / "voc", with_lists=True)
    result = convert(
        tmp_path / "voc", tmp_path / "out", definition=from_class_list(["washer", "nut", "bolt"])
    )
    assert result.source.layout.layout.endswith(
        "with ImageSets/Main split lists (train, val, test)"
    )
    assert result.manifest["classes"] == ["washer", "nut", "bolt"]
    assert {s: c["images"] for s, c in result.manifest["counts"].items()} == {
        "train": 6,
        "val": 2,
        "test": 1,
    }
    assert (tmp_path / "out" / "labels" / "train" / "000000.txt").read_text().startswith("2 ")


def _side_by_side(folder: Path, stems: list[str], seed: int) -> None:
    for i, stem in enumerate(stems):
        cls = CLASSES[i % 6]
        write_image(folder / f"{stem}.jpg", 200, 200, seed=seed + i)
        write_xml(folder / f"{stem}.xml", voc_xml(f"{stem}.jpg", [(cls, 10, 10, 60, 60)]))


def test_a_flat_folder_of_images_and_their_xml_is_converted(tmp_path: Path) -> None:
    # Where LabelImg saves each annotation: beside its image. A picture not annotated yet
    # lies there too (kept as background only when asked).
    _side_by_side(tmp_path / "labelled", [f"{CLASSES[i % 6]}_{i}" for i in range(10)], seed=0)
    write_image(tmp_path / "labelled" / "not_yet.jpg", 200, 200, seed=50)
    result = convert(tmp_path / "labelled", tmp_path / "out")
    assert result.source.layout.layout == "Pascal VOC, flat (each image and its .xml side by side)"
    assert result.manifest["dataset"] == "neu-det"  # the class names decide
    assert sum(c["images"] for c in result.manifest["counts"].values()) == 10
    assert (tmp_path / "out" / "labels" / "train").is_dir()


def test_roboflow_s_voc_export_keeps_its_split(tmp_path: Path) -> None:
    # Roboflow's "Pascal VOC" export: a flat folder per split, its names rewritten.
    root = tmp_path / "steel.v2i.voc"
    for part, count, seed in (("train", 8, 0), ("valid", 3, 100), ("test", 2, 200)):
        stems = [f"{CLASSES[i % 6]}_{part}_{i}_jpg.rf.{i:032x}" for i in range(count)]
        _side_by_side(root / part, stems, seed)
    (root / "README.roboflow.txt").write_text("exported from roboflow.com")
    result = convert(root, tmp_path / "out")
    assert result.source.layout.layout.startswith("Pascal VOC, a flat folder per split")
    counts = {s: c["images"] for s, c in result.manifest["counts"].items()}
    assert counts == {"train": 8, "val": 3, "test": 2}
    assert all("_valid_" in image.name for image in result.source.dataset.split("val"))


def test_images_and_annotations_of_other_classes_are_not_taken_for_neu_det(tmp_path: Path) -> None:
    # NEU-DET's own layout is how Label Studio exports any VOC dataset (images/ +
    # Annotations/): read as NEU-DET, every box of other classes was dropped.
    _generic_voc(tmp_path / "voc", with_lists=False)
    (tmp_path / "voc" / "JPEGImages").rename(tmp_path / "voc" / "images")
    with pytest.raises(ConversionError, match=r"--classes.*bolt \(3\)"):
        convert(tmp_path / "voc", tmp_path / "out")
    result = convert(
        tmp_path / "voc", tmp_path / "out", definition=from_class_list(["bolt", "nut", "washer"])
    )
    assert result.source.layout.layout == "NEU-DET original (images/ + Annotations/)"
    assert (result.source.report.boxes_dropped, result.source.dataset.box_count) == (0, 9)


def test_a_stray_xml_beside_other_files_is_no_dataset(tmp_path: Path) -> None:
    write_image(tmp_path / "src" / "photo.jpg", 64, 48)
    write_xml(tmp_path / "src" / "settings.xml", voc_xml("other.jpg", [("crazing", 1, 1, 9, 9)]))
    with pytest.raises(ConversionError, match="no known dataset layout"):
        detect_layout(tmp_path / "src")


def test_cvat_s_voc_export_gives_its_classes_in_its_labelmap(tmp_path: Path) -> None:
    # CVAT's "PASCAL VOC 1.1": the class order in labelmap.txt, "background" first (no
    # box of it here), and ImageSets/Main/default.txt, which names no split.
    _generic_voc(tmp_path / "task", with_lists=False)
    (tmp_path / "task" / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nwasher:250,50,83::\n"
        "nut:::\nbolt:36,179,83::\n"
    )
    main = tmp_path / "task" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "default.txt").write_text("".join(f"{i:06d}\n" for i in range(9)))
    result = convert(tmp_path / "task", tmp_path / "out")
    assert result.manifest["classes"] == ["washer", "nut", "bolt"]
    assert result.manifest["dataset"] == "task"
    assert sum(c["images"] for c in result.manifest["counts"].values()) == 9
    (label,) = (tmp_path / "out" / "labels").glob("*/000000.txt")
    assert label.read_text().startswith("2 ")  # a bolt: the labelmap's third class


def test_nested_folder_is_found(tmp_path: Path) -> None:
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
def test_unknown_layouts(tmp_path: Path, make: Callable[[Path], object], message: str) -> None:
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
        ("nan,1", None, "non-negative"),  # split as 1,0 before: nan fails every comparison
        ("0.8,nan,0.2", None, "non-negative"),
        ("0.25,0.25,0.25,0.25", None, "two"),
    ],
)
def test_parse_ratios(
    text: str, expected: tuple[float, float, float] | tuple[float, float] | None, error: str | None
) -> None:
    if error:
        with pytest.raises(ConversionError, match=error):
            parse_ratios(text)
    else:
        assert parse_ratios(text) == expected


def test_everything_in_train(tmp_path: Path) -> None:
    _neu_kaggle(tmp_path / "n")
    result = convert(tmp_path / "n", tmp_path / "out", ratios=(1.0, 0.0), resplit=True)
    assert result.manifest["counts"]["train"]["images"] == 16
    assert list((tmp_path / "out" / "images" / "val").iterdir()) == []


def test_size_disagreement_uses_the_real_size(tmp_path: Path) -> None:
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


def test_missing_and_unreadable_images(tmp_path: Path) -> None:
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


@pytest.mark.parametrize("as_background", [False, True])
def test_an_image_link_that_leads_nowhere_is_told_as_such(
    tmp_path: Path, as_background: bool
) -> None:
    # A dataset assembled from links to another folder, which was moved since: its
    # images are listed (ls shows them), so "no image named" them was a riddle.
    root, moved = tmp_path / "d", tmp_path / "moved"
    write_image(root / "IMAGES" / "crazing_1.jpg")
    for name in ("crazing_2.jpg", "crazing_3.jpg"):
        (root / "IMAGES" / name).symlink_to(moved / name)
    for stem in ("crazing_1", "crazing_2"):
        write_xml(
            root / "ANNOTATIONS" / f"{stem}.xml", voc_xml(f"{stem}.jpg", [("crazing", 1, 1, 9, 9)])
        )
    result = convert(
        root, tmp_path / "out", ratios=(1.0, 0.0), unlabeled_as_background=as_background
    )
    problems = [
        (p.file, p.problem, p.detail, p.boxes_dropped) for p in result.source.report.problems
    ]
    assert problems == [
        (
            "ANNOTATIONS/crazing_2.xml",
            "unreadable_image",
            f"IMAGES/crazing_2.jpg: a link to {moved / 'crazing_2.jpg'}, which leads nowhere",
            1,
        ),
        (
            "IMAGES/crazing_3.jpg",
            "unreadable_image" if as_background else "unlabeled_image",
            f"a link to {moved / 'crazing_3.jpg'}, which leads nowhere"
            if as_background
            else "no annotation file for this image",
            0,
        ),
    ]
    assert [image.name for image in result.source.dataset.images] == ["crazing_1.jpg"]


def test_every_bndbox_of_an_object_is_converted_and_counted(tmp_path: Path) -> None:
    # Two <bndbox> in one <object>: two boxes, in the labels and in the report's account,
    # and both counted as dropped where the image is missing.
    root = tmp_path / "d"
    two = voc_xml("crazing_1.jpg", [("crazing", 1, 1, 9, 9)], size=(64, 48)).replace(
        "</bndbox>",
        "</bndbox><bndbox><xmin>21</xmin><ymin>11</ymin><xmax>40</xmax><ymax>30</ymax></bndbox>",
    )
    write_image(root / "IMAGES" / "crazing_1.jpg")
    write_xml(root / "ANNOTATIONS" / "crazing_1.xml", two)
    write_xml(root / "ANNOTATIONS" / "crazing_2.xml", two.replace("crazing_1", "crazing_2"))
    result = convert(root, tmp_path / "out", ratios=(1.0, 0.0))
    problems = [(p.file, p.problem, p.boxes_dropped) for p in result.source.report.problems]
    assert problems == [
        ("ANNOTATIONS/crazing_1.xml", "several_bndboxes", 0),
        ("ANNOTATIONS/crazing_2.xml", "missing_image", 2),
    ]
    labels = (tmp_path / "out" / "labels" / "train" / "crazing_1.txt").read_text().splitlines()
    assert [line.split()[1:] for line in labels] == [
        [f"{v:.6f}" for v in (4.5 / 64, 4.5 / 48, 9 / 64, 9 / 48)],
        [f"{v:.6f}" for v in (30 / 64, 20 / 48, 20 / 64, 20 / 48)],
    ]
    summary = json.loads((tmp_path / "out" / "report.json").read_text())["summary"]
    assert (summary["boxes_in_input"], summary["boxes_dropped"], summary["boxes_written"]) == (
        4,
        2,
        2,
    )
    assert summary["accounted"]


@pytest.mark.parametrize(
    ("xml_name", "filename", "images", "expected"),
    [
        # Annotated on Windows, where "crazing_1.jpg" opens CRAZING_1.JPG.
        ("crazing_1", "crazing_1.jpg", ["CRAZING_1.JPG"], ("CRAZING_1.JPG", "case_mismatch")),
        ("Crazing_1", "Crazing_1.jpg", ["crazing_1.jpg"], ("crazing_1.jpg", "case_mismatch")),
        ("crazing_1", None, ["Crazing_1.png"], ("Crazing_1.png", "case_mismatch")),
        # An exact name wins over one that differs in case, without a word.
        ("crazing_1", "crazing_1.jpg", ["crazing_1.jpg", "CRAZING_1.jpg"], ("crazing_1.jpg", None)),
        # Two that differ from it only in case, and from each other: which is unknown.
        ("crazing_1", "crazing_1.jpg", ["Crazing_1.jpg", "CRAZING_1.jpg"],
         (None, "ambiguous_image")),
        ("crazing_1", "crazing_1.jpg", ["crazing_2.jpg"], (None, "missing_image")),
    ],
)  # fmt: skip
def test_image_names_that_differ_only_in_case(
    tmp_path: Path, xml_name: str, filename: str | None, images: list[str], expected: tuple
) -> None:
    root = tmp_path / "d"
    for seed, name in enumerate(images):
        write_image(root / "IMAGES" / name, seed=seed)
    objects = [("crazing", 1, 1, 9, 9)]
    write_xml(root / "ANNOTATIONS" / f"{xml_name}.xml", voc_xml(filename, objects))
    source = read_dataset(root, unlabeled_as_background=True)
    labelled = [image.name for image in source.dataset.images if image.boxes]
    assert labelled == ([expected[0]] if expected[0] else [])
    about_xml = [p.problem for p in source.report.problems if p.file.endswith(".xml")]
    assert about_xml == ([expected[1]] if expected[1] else [])


def test_a_gbk_annotation_is_converted_and_reported(tmp_path: Path) -> None:
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
        ("src", "holds the source"),
        (".", "holds the source"),
    ],
)
def test_convert_never_replaces_a_folder_it_did_not_write(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    out: str,
    message: str,
) -> None:
    _source_and_a_folder_of_ones_own(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConversionError, match=message):
        convert(Path("src"), Path(out))
    assert main(["convert", "src", "--out", out]) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    assert (tmp_path / "src" / "IMAGES" / "crazing_1.jpg").is_file()
    assert not (tmp_path / "src" / "manifest.json").exists()


# An output replaces its folder whole: where that folder was the working folder or held
# it, the shell was left in a deleted folder (its `ls` showed nothing), and `convert
# --out .` failed after writing, "No such file or directory", on the next path it read.
@pytest.mark.parametrize(
    ("command", "earlier", "cwd", "out", "said"),
    [
        ("convert", False, "out", ".", "is the working folder"),
        ("convert", True, "out", ".", "is the working folder"),
        ("convert", True, "out/labels", "..", "holds the working folder ({tmp}/out/labels)"),
        ("convert", True, "out", "{tmp}/out", "is the working folder"),
        ("synth", False, "out", ".", "is the working folder"),
    ],
    ids=["empty", "an earlier output", "inside it", "by its whole path", "synth"],
)
def test_the_working_folder_is_never_replaced(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    earlier: bool,
    cwd: str,
    out: str,
    said: str,
) -> None:
    _source_and_a_folder_of_ones_own(tmp_path)
    (tmp_path / "out").mkdir()
    if earlier:
        convert(tmp_path / "src", tmp_path / "out")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*"))
    monkeypatch.chdir(tmp_path / cwd)
    args = (
        ["convert", str(tmp_path / "src")] if command == "convert" else ["synth", "--images", "2"]
    )
    assert main([*args, "--out", out.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out'}: {said.format(tmp=tmp_path)}, and the output replaces" in err
    assert len(err.strip().splitlines()) == 1, err
    assert Path.cwd() == tmp_path / cwd  # still there, where the shell is
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*")) == before


# Each command's output is recognised by its marker; a converted dataset holds its
# conversion's report.json too, which `evaluate --out DATA` took for a report's marker and
# replaced the dataset with its report.
@pytest.mark.parametrize(
    ("files", "marker", "refused"),
    [
        (
            ["manifest.json", "report.json", "data.yaml"],
            "report.json",
            "a converted dataset (its manifest.json), not an output of this command (marked "
            "by report.json)",
        ),
        (["manifest.json", "report.json", "data.yaml"], "manifest.json", None),
        (["report.json", "results.json", "report.md"], "report.json", None),
        (
            ["predictions.json"],
            "report.json",
            "the predictions of predict or classify (its predictions.json)",
        ),
        (["report.json", "report.md"], "card.json", "a report of evaluate or compare"),
        (["predictions.json"], "predictions.json", None),
        (["card.json", "model.pt"], "predictions.json", "a released model (its card.json)"),
        (["synth.json"], "manifest.json", "a dataset from defects synth (its synth.json)"),
        (["voc_export.json"], "card.json", "a VOC export (its voc_export.json)"),
        (["thesis.txt"], "report.json", "a folder with files of its own (no report.json"),
        ([], "report.json", None),
    ],
)  # fmt: skip
def test_an_output_folder_is_replaced_only_if_this_command_wrote_it(
    tmp_path: Path, files: list[str], marker: str, refused: str | None
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in files:
        (out / name).write_text("{}")
    if refused is None:
        check_output_folder(out, marker)
    else:
        with pytest.raises(ConversionError, match=re.escape(f"{out}: {refused}")):
            check_output_folder(out, marker)


def test_every_command_s_marker_is_known() -> None:
    from converters.convert import MARKER as CONVERTED
    from converters.synth import MARKER as SYNTHESISED
    from converters.voc import VOC_EXPORT_MARKER
    from detection.predict import PREDICTIONS_MARKER
    from detection.report import REPORT_MARKER
    from detection.splits import CARD

    markers = {CONVERTED, SYNTHESISED, VOC_EXPORT_MARKER, CARD, PREDICTIONS_MARKER, REPORT_MARKER}
    assert markers == set(OUTPUT_MARKERS)


def test_convert_replaces_an_empty_folder_and_its_own_output(tmp_path: Path) -> None:
    _source_and_a_folder_of_ones_own(tmp_path)
    (tmp_path / "empty").mkdir()
    convert(tmp_path / "src", tmp_path / "empty")
    first = convert(tmp_path / "src", tmp_path / "out", seed=1)
    again = convert(tmp_path / "src", tmp_path / "out", seed=2)
    assert (first.manifest["seed"], again.manifest["seed"]) == (1, 2)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["seed"] == 2


@pytest.mark.parametrize("suffix", [".webp", ".JPG", ".Png", ".tiff"])
def test_every_image_format_opencv_decodes_is_found(tmp_path: Path, suffix: str) -> None:
    write_image(tmp_path / "d" / "IMAGES" / f"crazing_1{suffix}", 64, 48)  # by its suffix
    write_xml(
        tmp_path / "d" / "ANNOTATIONS" / "crazing_1.xml",
        voc_xml(f"crazing_1{suffix}", [("crazing", 1, 1, 30, 40)], size=(64, 48)),
    )
    result = convert(tmp_path / "d", tmp_path / "out", ratios=(1.0, 0.0))
    assert [i.name for i in result.source.dataset.images] == [f"crazing_1{suffix}"]
    assert not result.source.report.problems


# The 4 KB of Finder attributes a Mac writes as ._NAME beside each file it copies to a
# non-Mac disk or into a zip (where they go under __MACOSX/ as well).
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4096 - 24)


def _neu_original(root: Path) -> None:
    for i, cls in enumerate(CLASSES):
        write_image(root / "IMAGES" / f"{cls}_{i}.jpg", 200, 200, seed=i)
        write_xml(
            root / "ANNOTATIONS" / f"{cls}_{i}.xml",
            voc_xml(f"{cls}_{i}.jpg", [(cls, 10, 10, 60, 60)], (200, 200)),
        )


def _copied_from_a_mac(root: Path) -> None:
    """Adds what a Mac and a notebook leave in a dataset: ._NAME beside every file, the
    same under __MACOSX/, a .DS_Store, and a .ipynb_checkpoints/ copy of a file in each
    folder."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    for path in files:
        (path.parent / f"._{path.name}").write_bytes(APPLE_DOUBLE)
        mac = root / "__MACOSX" / path.relative_to(root).parent / f"._{path.name}"
        mac.parent.mkdir(parents=True, exist_ok=True)
        mac.write_bytes(APPLE_DOUBLE)
    folders = sorted({path.parent for path in files})
    for folder in folders:
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        checkpoints = folder / ".ipynb_checkpoints"
        checkpoints.mkdir()
        first = next(p for p in files if p.parent == folder)
        (checkpoints / f"{first.stem}-checkpoint{first.suffix}").write_bytes(first.read_bytes())


def _as_read(result: list[ImageAnnotation]) -> list[tuple]:
    return [(i.name, i.split, [(b.label, b.xmin, b.ymax) for b in i.boxes]) for i in result]


@pytest.mark.parametrize(
    ("make", "classes"),
    [
        (_neu_original, None),
        (_neu_kaggle, None),
        (lambda root: _generic_voc(root, with_lists=True), ["washer", "nut", "bolt"]),
    ],
)
def test_hidden_and_mac_metadata_files_are_not_data(
    tmp_path: Path, make: Callable[[Path], object], classes: list[str] | None
) -> None:
    # https://github.com/Project-MONAI/MONAI/issues/8305: datasets zipped on a Mac ship
    # ._NAME files; a ._crazing_1.xml was read as a malformed annotation (an error).
    make(tmp_path / "clean")
    make(tmp_path / "mac")
    _copied_from_a_mac(tmp_path / "mac")
    definition = from_class_list(classes) if classes else None
    clean = convert(tmp_path / "clean", tmp_path / "a", definition=definition, seed=3)
    mac = convert(tmp_path / "mac", tmp_path / "b", definition=definition, seed=3)
    assert _as_read(mac.source.dataset.images) == _as_read(clean.source.dataset.images)
    assert mac.source.layout.layout == clean.source.layout.layout
    assert {p.problem for p in mac.source.report.problems} - {
        p.problem for p in clean.source.report.problems
    } == {"not_dataset_file"}
    skipped = [p for p in mac.source.report.problems if p.problem == "not_dataset_file"]
    assert all(p.severity == "info" and p.action == "not read" for p in skipped)
    assert all("._" in p.detail and p.file.endswith("/") for p in skipped)
    assert not any("__MACOSX" in p.file for p in skipped)  # never looked into


def test_a_zip_from_a_mac_is_found_beside_its_macosx_folder(tmp_path: Path) -> None:
    _neu_original(tmp_path / "unzipped" / "NEU-DET")
    _copied_from_a_mac(tmp_path / "unzipped" / "NEU-DET")
    (tmp_path / "unzipped" / "NEU-DET" / "__MACOSX").rename(tmp_path / "unzipped" / "__MACOSX")
    layout = detect_layout(tmp_path / "unzipped")
    assert layout.root == (tmp_path / "unzipped" / "NEU-DET").resolve()
    assert len(layout.annotations) == len(layout.images) == 6


def test_a_link_to_a_folder_above_is_read_once(tmp_path: Path) -> None:
    _neu_original(tmp_path / "d")
    (tmp_path / "d" / "IMAGES" / "all").symlink_to("..")  # the dataset root, IMAGES again
    (tmp_path / "d" / "IMAGES" / "more").mkdir()
    write_image(tmp_path / "d" / "IMAGES" / "more" / "crazing_9.jpg")
    (tmp_path / "d" / "IMAGES" / "more" / "again").symlink_to("../more")
    (tmp_path / "d" / "IMAGES" / "loop").symlink_to("loop")  # ELOOP when looked into
    (tmp_path / "d" / "IMAGES" / "loop.jpg").symlink_to("loop.jpg")
    layout = detect_layout(tmp_path / "d")
    names = sorted(p.name for p in layout.images)
    assert names == sorted([f"{c}_{i}.jpg" for i, c in enumerate(CLASSES)] + ["crazing_9.jpg"])


def test_class_folders_and_image_searches_leave_out_mac_metadata(tmp_path: Path) -> None:
    for cls in ("good", "defective"):
        write_image(tmp_path / "cls" / cls / f"{cls}_1.jpg")
    _copied_from_a_mac(tmp_path / "cls")
    found = class_folders(tmp_path / "cls")
    assert {name: [p.name for p in images] for name, images in found.items()} == {
        "defective": ["defective_1.jpg"],
        "good": ["good_1.jpg"],
    }
    everywhere = images_in(tmp_path / "cls", recursive=True)
    assert [p.name for p in everywhere] == ["defective_1.jpg", "good_1.jpg"]


def _neu_with_copies(root: Path, copies: dict[str, str]) -> None:
    """A NEU-DET tree of 24 images, where each image of ``copies`` holds the same bytes
    as the image it names (as NEU-DET's patches_105.jpg holds patches_101.jpg's)."""
    for i in range(24):
        stem = f"{CLASSES[i % 6]}_{i}"
        write_image(root / "IMAGES" / f"{stem}.jpg", 200, 200, seed=i)
        write_xml(
            root / "ANNOTATIONS" / f"{stem}.xml",
            voc_xml(stem, [(CLASSES[i % 6], 10, 10, 60 + i, 60)], (200, 200)),
        )
    for copy, original in copies.items():
        (root / "IMAGES" / f"{copy}.jpg").write_bytes(
            (root / "IMAGES" / f"{original}.jpg").read_bytes()
        )


def test_identical_images_are_reported_and_split_together(tmp_path: Path) -> None:
    _neu_with_copies(tmp_path / "n", {"crazing_6": "crazing_0", "crazing_12": "crazing_0"})
    together = {"crazing_0.jpg", "crazing_6.jpg", "crazing_12.jpg"}
    apart_without = 0
    for seed in range(6):
        out = tmp_path / f"out{seed}"
        result = convert(tmp_path / "n", out, ratios=(0.5, 0.3, 0.2), seed=seed)
        splits = {result.manifest["split_of_image"][name] for name in together}
        assert len(splits) == 1, (seed, splits)
        # The split the images would have had alone (the seeded assignment itself).
        images = result.source.dataset.images
        for image in images:
            image.split = None
        assign_splits(images, (0.5, 0.3, 0.2), seed)
        apart_without += len({im.split for im in images if im.name in together}) > 1
    assert apart_without  # some seed would have put a copy into another split
    found = [p for p in result.source.report.problems if p.problem == "identical_images"]
    assert [(p.file, p.severity) for p in found] == [
        ("ANNOTATIONS/crazing_12.xml", "info"),
        ("ANNOTATIONS/crazing_6.xml", "info"),
    ]
    assert "the same bytes as crazing_0.jpg (IMAGES/crazing_0.jpg)" in found[0].detail
    report = json.loads((tmp_path / "out5" / "report.json").read_text())
    assert sum(p["problem"] == "identical_images" for p in report["problems"]) == 2


def test_a_given_split_that_holds_copies_apart_is_kept_and_warned(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    _generic_voc(root, with_lists=True)
    # 000007 (val) holds the same bytes as 000001 (train): the source's own leak.
    (root / "JPEGImages" / "000007.jpg").write_bytes(
        (root / "JPEGImages" / "000001.jpg").read_bytes()
    )
    classes = from_class_list(["washer", "nut", "bolt"])
    result = convert(root, tmp_path / "out", definition=classes)
    assert result.manifest["split_of_image"]["000007.jpg"] == "val"  # as given
    (warned,) = [p for p in result.source.report.problems if p.severity == "warning"]
    assert (warned.file, warned.problem) == (
        "Annotations/000007.xml",
        "identical_images_across_splits",
    )
    assert "puts its image in val and the same bytes (000001.jpg) in train" in warned.detail
    # Split here: together, and nothing to warn of.
    result = convert(root, tmp_path / "again", definition=classes, resplit=True)
    split_of = result.manifest["split_of_image"]
    assert split_of["000007.jpg"] == split_of["000001.jpg"]
    assert not [p for p in result.source.report.problems if p.severity == "warning"]
