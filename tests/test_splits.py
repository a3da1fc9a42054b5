"""Which images a model was trained on: recorded by ``train``, kept by ``release``, and
said by ``evaluate`` and ``compare`` when they score a model on them (a split converted
with another seed puts most of a model's training images into the new val split)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
import torch
import yaml

from converters.convert import convert
from converters.definitions import load_definition
from converters.errors import ConversionError
from converters.source import image_digest
from detection.cli import main
from detection.cocoeval import evaluate
from detection.console import counted
from detection.evaluate import evaluate_model
from detection.report import OVERLAPS_NOT_LOOKED_FOR, ground_truth_edited_sentence, seen_sentence
from detection.splits import (
    TRAINED_ON,
    record_training_images,
    seen_in_training,
    split_images,
    training_record,
    unseen_images,
)
from detection.train import resolve_data
from tests.conftest import DEFECTS
from tests.helpers import write_image

pytestmark = pytest.mark.slow


def _digests(folder: Path) -> set[str]:
    return {image_digest(p) for p in folder.iterdir()}


@pytest.fixture(scope="module")
def reshuffled(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset's source converted again with another seed: its val split holds
    images the tiny run trained on, and others."""
    out = tmp_path_factory.mktemp("reshuffled") / "data"
    definition = load_definition("synthetic")
    return convert(tiny_data.parent / "src", out, definition=definition, seed=7).out


def test_a_run_records_the_images_it_trained_on(trained: Path, tiny_data: Path) -> None:
    record = json.loads((trained / TRAINED_ON).read_text())
    assert set(record["images_sha256"]) == _digests(tiny_data / "images" / "train")
    assert record["images"] == len(list((tiny_data / "images" / "train").iterdir()))
    assert record["complete"] and record["start"] == "yolo11n.yaml"
    found = training_record(trained / "best.pt")
    assert found.complete and found.digests == set(record["images_sha256"])
    assert TRAINED_ON in found.source


def test_a_stage_from_weights_inherits_what_they_were_trained_on(
    trained: Path, tiny_data: Path, reshuffled: Path, tmp_path: Path
) -> None:
    record = record_training_images(
        tmp_path / "stage2", reshuffled / "data.yaml", trained / "best.pt"
    )
    both = _digests(tiny_data / "images" / "train") | _digests(reshuffled / "images" / "train")
    assert set(record["images_sha256"]) == both and record["complete"]
    assert record["images"] == len(both)
    # From a definition: only its own data.
    record = record_training_images(tmp_path / "fresh", reshuffled / "data.yaml", "yolo11n.yaml")
    assert set(record["images_sha256"]) == _digests(reshuffled / "images" / "train")


def test_weights_without_a_record_fall_back_to_the_data_their_checkpoint_names(
    trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    alone = tmp_path / "copied" / "best.pt"
    alone.parent.mkdir()
    shutil.copyfile(trained / "best.pt", alone)  # without its run's trained_on.json
    found = training_record(alone)
    assert found.digests == _digests(tiny_data / "images" / "train")
    assert not found.complete  # where that training started is not known
    assert str(tiny_data / "data.yaml") in found.source
    # Compared with a few images, only the train images of their sizes are read.
    one = sorted((tiny_data / "images" / "train").iterdir())[0]
    same_size = {
        image_digest(p)
        for p in (tiny_data / "images" / "train").iterdir()
        if p.stat().st_size == one.stat().st_size
    }
    narrowed = training_record(alone, {one.stat().st_size})
    assert narrowed.digests == same_size and image_digest(one) in narrowed.digests
    # The data it names gone: no record, and the report says it is not known.
    checkpoint = torch.load(alone, map_location="cpu", weights_only=False)
    checkpoint["train_args"]["data"] = str(tmp_path / "gone" / "data.yaml")
    torch.save(checkpoint, alone)
    assert training_record(alone) is None
    summary, seen = seen_in_training(alone, [tiny_data / "images" / "val" / "x.jpg"])
    assert summary == {"record": None, "of": 1} and seen == []
    assert "not known" in seen_sentence(summary)[1]
    # And an export beside no record has none either.
    assert training_record(alone.with_suffix(".onnx")) is None


def test_evaluate_says_how_many_images_the_model_was_trained_on(
    trained: Path, tiny_data: Path, reshuffled: Path, tmp_path: Path
) -> None:
    trained_on = _digests(tiny_data / "images" / "train")
    val = sorted((reshuffled / "images" / "val").iterdir())
    expected = [p.name for p in val if image_digest(p) in trained_on]
    assert 0 < len(expected) < len(val)  # the test needs both kinds
    report = evaluate_model(
        trained / "best.pt", reshuffled, tmp_path / "r", with_ultralytics=False, replicates=0
    )
    seen = report["seen_in_training"]
    assert (seen["images"], seen["of"], seen["complete"]) == (len(expected), len(val), True)
    assert seen["examples"] == expected[:5]
    # The figures on the images it has not seen: pycocotools on those alone.
    gt = json.loads((reshuffled / "annotations" / "instances_val.json").read_text())
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    kept = {i["id"] for i in gt["images"] if i["file_name"] not in expected}
    unseen_gt = {
        **gt,
        "images": [i for i in gt["images"] if i["id"] in kept],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in kept],
    }
    stats = evaluate(unseen_gt, [r for r in results if r["image_id"] in kept]).stats
    assert seen["unseen"] == {
        "images": len(kept),
        "mAP50": pytest.approx(stats["AP50"], abs=1e-12),
        "mAP50-95": pytest.approx(stats["AP50:95"], abs=1e-12),
    }
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert f"**Seen in training:** the model was trained on {len(expected)} of these" in markdown
    assert f"on the other {len(kept)} alone" in markdown
    # Its own val split: none of it.
    report = evaluate_model(
        trained / "best.pt", tiny_data, tmp_path / "own", with_ultralytics=False, replicates=0
    )
    assert report["seen_in_training"]["images"] == 0
    assert "unseen" not in report["seen_in_training"]
    own = (tmp_path / "own" / "report.md").read_text()
    assert "**Not seen in training:** none of these" in own
    # ... by content: crops overlapping a training image are --unseen's to find.
    assert own.count(OVERLAPS_NOT_LOOKED_FOR) == 1
    weights = str(trained / "best.pt")
    compare = ["compare", "--data", str(tiny_data), "--weights", weights, weights]
    compare += ["--names", "a,b", "--bootstrap", "10", "--device", "cpu"]
    assert main([*compare, "--out", str(tmp_path / "cmp")]) == 0
    compared = (tmp_path / "cmp" / "report.md").read_text()
    assert "**b, not seen in training:** none of these" in compared
    assert compared.count(OVERLAPS_NOT_LOOKED_FOR) == 1  # once, not once per model


def test_compare_says_it_of_each_model_and_warns(
    trained: Path, tiny_data: Path, reshuffled: Path, tmp_path: Path
) -> None:
    val = (reshuffled / "images" / "val").iterdir()
    expected = sum(image_digest(p) in _digests(tiny_data / "images" / "train") for p in val)
    weights = str(trained / "best.pt")
    result = subprocess.run(
        [
            *DEFECTS,
            "compare",
            *["--data", str(reshuffled), "--weights", weights, weights, "--names", "a,b"],
            *["--out", str(tmp_path / "cmp"), "--bootstrap", "10", "--device", "cpu"],
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert [m["seen_in_training"]["images"] for m in report["models"]] == [expected] * 2
    assert "**a, seen in training:** the model was trained on" in result.stdout
    assert f"b Seen in training: the model was trained on {expected} of" in result.stderr


def _with_a_crop_of(out: Path, training: Path, folder: Path) -> tuple[Path, str, str]:
    """``out`` copied to ``folder``, one of its val images that ``training``'s train split
    lacks replaced by the next crop along the strip of a train image that its val lacks
    (shifted by 12 and 8 pixels, re-encoded): (the copy, the crop's name, its picture's)."""
    copy = folder / "mixed"
    shutil.copytree(out, copy, symlinks=True)
    trained = {image_digest(p): p for p in (training / "images" / "train").iterdir()}
    val = sorted((copy / "images" / "val").iterdir())
    unseen = next(p for p in val if image_digest(p) not in trained)
    in_val = {image_digest(p) for p in val}
    source = next(p for digest, p in sorted(trained.items()) if digest not in in_val)
    pixels = cv2.imread(str(source))
    shifted = cv2.copyMakeBorder(pixels[8:, 12:], 0, 8, 0, 12, cv2.BORDER_REFLECT)
    unseen.unlink()  # a link to the source's image: the file itself stays as it was
    cv2.imwrite(str(unseen), shifted, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return copy, unseen.name, source.name


def test_unseen_images_leave_out_training_images_and_crops_of_them(
    trained: Path, tiny_data: Path, reshuffled: Path, tmp_path: Path
) -> None:
    mixed, crop, picture = _with_a_crop_of(reshuffled, tiny_data, tmp_path)
    val = sorted((mixed / "images" / "val").iterdir())
    seen = [p.name for p in val if image_digest(p) in _digests(tiny_data / "images" / "train")]
    assert seen and crop not in seen

    found = unseen_images([trained / "best.pt"], val, mixed / "data.yaml")

    assert [val[i].name for i in found["trained_on"]] == seen
    assert [val[i].name for i in found["overlapping"]] == [crop]
    assert found["pairs"] == [(crop, picture)]
    assert [val[i].name for i in found["kept"]] == [
        p.name for p in val if p.name not in {*seen, crop}
    ]
    assert found["incomplete"] == []
    # Without the record, nothing can be told: refused, naming the weights.
    alone = tmp_path / "alone" / "best.pt"
    alone.parent.mkdir()
    checkpoint = torch.load(trained / "best.pt", map_location="cpu", weights_only=False)
    checkpoint["train_args"]["data"] = str(tmp_path / "gone" / "data.yaml")
    torch.save(checkpoint, alone)
    with pytest.raises(ConversionError, match=f"^{alone}: no record of the images it was"):
        unseen_images([trained / "best.pt", alone], val, mixed / "data.yaml")


def test_evaluate_and_compare_unseen_score_the_images_no_model_has_seen(
    trained: Path, tiny_data: Path, reshuffled: Path, tmp_path: Path
) -> None:
    mixed, crop, picture = _with_a_crop_of(reshuffled, tiny_data, tmp_path)
    val = sorted((mixed / "images" / "val").iterdir())
    seen = [p.name for p in val if image_digest(p) in _digests(tiny_data / "images" / "train")]
    weights = str(trained / "best.pt")
    compare = [*DEFECTS, "compare", "--data", str(mixed), "--weights", weights, weights]
    compare += ["--names", "a,b", "--bootstrap", "10", "--device", "cpu"]
    result = subprocess.run(
        [*compare, "--out", str(tmp_path / "cmp"), "--unseen"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert report["images"] == len(val) - len(seen) - 1
    assert report["unseen_only"] == {
        "images": report["images"],
        "of": len(val),
        "trained_on": seen,
        "overlapping": [{"image": crop, "training_image": picture}],
        "incomplete": [],
    }
    assert [m["seen_in_training"]["images"] for m in report["models"]] == [0, 0]
    said = (
        f"scored on the {report['images']} of these {len(val)} images that no model here was "
        "trained on, nor overlap an image one was trained on; left out: "
        f"{counted(len(seen), 'image')} a model was trained on (e.g. {', '.join(seen[:3])}), "
        f"1 that overlaps one (a crop of the same picture; e.g. {crop} ~ {picture})"
    )
    assert f"**Unseen only:** {said}." in result.stdout
    assert OVERLAPS_NOT_LOOKED_FOR not in result.stdout
    assert f"Unseen only: {said}." in result.stderr
    # The figures are pycocotools' on the kept images alone.
    gt = json.loads((mixed / "annotations" / "instances_val.json").read_text())
    kept = {i["id"] for i in gt["images"] if i["file_name"] not in {*seen, crop}}
    kept_gt = {
        **gt,
        "images": [i for i in gt["images"] if i["id"] in kept],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in kept],
    }
    evaluate_model(trained / "best.pt", mixed, tmp_path / "r", with_ultralytics=False, replicates=0)
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    stats = evaluate(kept_gt, [r for r in results if r["image_id"] in kept]).stats
    assert report["models"][0]["mAP50"] == pytest.approx(stats["AP50"], abs=1e-9)
    assert report["models"][1]["mAP50-95"] == pytest.approx(stats["AP50:95"], abs=1e-9)
    # evaluate --unseen: the same images, figures and sentence, of the one model; ultralytics'
    # val, which would score the whole split, not run.
    alone_report = evaluate_model(
        trained / "best.pt", mixed, tmp_path / "u", replicates=0, unseen=True
    )
    assert alone_report["unseen_only"] == report["unseen_only"]
    assert alone_report["metrics"]["AP50"] == pytest.approx(stats["AP50"], abs=1e-9)
    assert alone_report["images"] == report["images"]
    assert alone_report["ultralytics_not_run"].startswith("not run: it scores the whole split")
    assert (
        f"**Unseen only:** scored on the {report['images']} of these {len(val)} images that the "
        "model was not trained on, nor overlap an image it was trained on; left out: "
        f"{counted(len(seen), 'image')} it was trained on"
    ) in (markdown := (tmp_path / "u" / "report.md").read_text())
    assert "**Not seen in training:** none of these" in markdown
    assert OVERLAPS_NOT_LOOKED_FOR not in markdown
    alone = tmp_path / "kept.json"
    alone.write_text(json.dumps(kept_gt))
    # ... refused with results files, which do not say which images their model saw.
    for command, results_files in (("compare", ["x.json", "y.json"]), ("evaluate", ["x.json"])):
        given = ["--gt", str(alone), "--out", str(tmp_path / f"no-{command}"), "--unseen"]
        refused = subprocess.run(
            [*DEFECTS, command, *given, "--predictions", *results_files],
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2
        assert "--unseen needs --weights: results files do not say which images" in refused.stderr
    # ... and where every image was trained on, before any model predicts.
    on_train = ["--data", str(tiny_data), "--split", "train", "--weights", weights, weights]
    out = str(tmp_path / "on-train")
    train = subprocess.run(
        [*DEFECTS, "compare", *on_train, "--names", "a,b", "--out", out, "--unseen"],
        capture_output=True,
        text=True,
    )
    assert train.returncode == 2
    trained_on = len(list((tiny_data / "images" / "train").iterdir()))
    assert (
        f"--unseen: each of the {trained_on} images of train was trained on by a model "
        "compared, or overlaps an image one was trained on: none is left to score"
    ) in train.stderr


def test_a_moved_output_is_read_from_where_it_lies(tiny_data: Path, tmp_path: Path) -> None:
    # Moved or copied (say, to correct its labels): ultralytics lists the copy's images,
    # since data.yaml names no path (an absolute one sent the copy's training to the
    # original's images and labels, while evaluate read the copy's ground truth).
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data, copy, symlinks=True)
    assert "path" not in yaml.safe_load((copy / "data.yaml").read_text())
    for split in ("train", "val"):
        images, data = split_images(resolve_data(copy), split)
        assert Path(data[split]) == copy / "images" / split
        assert sorted(images) == sorted((copy / "images" / split).iterdir())
    # An output converted before, copied: its absolute path names the original. Refused,
    # naming it; at its own place the same line is harmless.
    (copy / "data.yaml").write_text(f"path: {tiny_data}\n{(copy / 'data.yaml').read_text()}")
    with pytest.raises(ConversionError) as refused:
        resolve_data(copy)
    assert str(refused.value) == (
        f"{copy / 'data.yaml'}: its 'path: {tiny_data}' sends training to that folder's "
        "images and labels, not to the ones beside it (the output was moved or copied); "
        "delete the path line (it is then this folder), or convert again"
    )
    (copy / "data.yaml").write_text(f"path: {copy}\n{(tiny_data / 'data.yaml').read_text()}")
    assert resolve_data(copy) == copy / "data.yaml"


@pytest.mark.parametrize(
    ("edit", "edited"),
    [
        (lambda text: text, False),
        (lambda text: "\n".join(reversed(text.splitlines())) + "\n\n", False),  # order, blanks
        (lambda text: _nudge(text, 1e-7), False),  # within a label's six decimals
        (lambda text: _nudge(text, 0.01), True),  # a box moved by 1% of the image
        (lambda text: text + "0 0.5 0.5 0.1 0.1\n", True),  # a box added
        (lambda text: "".join(text.splitlines(keepends=True)[1:]), True),  # one removed
        (lambda text: "\n".join("5" + line[1:] for line in text.splitlines()), True),  # class
        (lambda text: "0 0.5 0.5\n", True),  # not a label
        (None, True),  # the file deleted: ultralytics reads the image as holding no defect
    ],
)
def test_labels_edited_since_the_conversion_are_found(
    tiny_data: Path, tmp_path: Path, edit: Callable[[str], str], edited: bool
) -> None:
    from converters.convert import edited_labels

    out = tmp_path / "out"
    shutil.copytree(tiny_data, out, symlinks=True, ignore=shutil.ignore_patterns("*.cache"))
    gt = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert edited_labels(out, "val", gt) == []
    with_boxes = {a["image_id"] for a in gt["annotations"]}
    image = next(im for im in gt["images"] if im["id"] in with_boxes)
    label = out / "labels" / "val" / f"{Path(image['file_name']).stem}.txt"
    if edit is None:
        label.unlink()
    else:
        label.write_text(edit(label.read_text()))
    assert edited_labels(out, "val", gt) == ([label] if edited else [])


def _nudge(text: str, by: float) -> str:
    """The label's first box with its centre's x moved by ``by``."""
    first, *rest = text.splitlines(keepends=True)
    k, cx, *others = first.split()
    return " ".join([k, f"{float(cx) + by:.7f}", *others]) + "\n" + "".join(rest)


def test_evaluate_and_review_read_labels_edited_since_the_conversion(
    tiny_data: Path, tmp_path: Path
) -> None:
    # Ultralytics trains and validates on labels/, and evaluate and review read the COCO
    # file: an edited label made two ground truths. Now both read the labels as edited,
    # as for any YOLO dataset, and say so.
    from detection.review import read_source

    out = tmp_path / "edited"
    shutil.copytree(tiny_data, out, symlinks=True, ignore=shutil.ignore_patterns("*.cache"))
    changed = sorted((out / "labels" / "val").glob("*.txt"))[:2]
    for label in changed:
        label.write_text("0 0.5 0.5 0.3 0.3\n")
    edited = evaluate_model("neu-det", out, tmp_path / "report", replicates=0)
    said = edited["ground_truth_edited"]
    assert (said["files"], said["edited"], said["read"]) == (2, ["labels"], "labels")
    assert said["examples"][0].startswith("labels/val/")
    assert edited["ground_truth"] == "YOLO labels of val"
    assert "**Ground truth edited:** 2 of the " in (tmp_path / "report" / "report.md").read_text()
    # The figures of the labels as any YOLO dataset's are read (no manifest: not ours).
    plain = tmp_path / "plain"
    shutil.copytree(out, plain, symlinks=True, ignore=shutil.ignore_patterns("*.cache"))
    (plain / "manifest.json").unlink()
    shutil.rmtree(plain / "annotations")
    as_yolo = evaluate_model("neu-det", plain, tmp_path / "as-yolo", replicates=0)
    assert edited["metrics"] == as_yolo["metrics"]
    # Results made on the images where they came from match them by name, as before.
    from detection.evaluate import evaluate_results_on_split, split_ground_truth

    truth = split_ground_truth(out, "val").gt
    names = {image["id"]: image["file_name"] for image in truth["images"]}
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    for result in results:
        result["file_name"] = f"/steel/line-3/{names[result['image_id']]}"
        result["image_id"] = 0
    (tmp_path / "results.json").write_text(json.dumps(results))
    again = evaluate_results_on_split(tmp_path / "results.json", out, tmp_path / "again", "val", 0)
    assert again["metrics"] == edited["metrics"] and again["ground_truth_edited"] == said
    original = evaluate_model("neu-det", tiny_data, tmp_path / "original", replicates=0)
    assert original["metrics"] != edited["metrics"] and "ground_truth_edited" not in original
    # The review's ground truth: the edited boxes, named as before.
    source = read_source(out)
    assert source.ground_truth_edited == {"val": said}
    names = {image.name for image in read_source(tiny_data).images}
    assert {image.name for image in source.images} == names
    for image in source.images:
        if Path(image.name).stem in {label.stem for label in changed}:
            (box,) = image.boxes
            assert box.label == "crazing" and (box.xmin, box.xmax) == pytest.approx(
                (0.35 * image.width, 0.65 * image.width)
            )


def _edit_coco(out: Path, split: str, edit: Callable[[dict], object]) -> None:
    path = out / "annotations" / f"instances_{split}.json"
    gt = json.loads(path.read_text())
    edit(gt)
    path.write_text(json.dumps(gt, indent=1))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda out: None, set()),
        (lambda out: _label(out).write_text("0 0.5 0.5 0.3 0.3\n"), {"labels"}),
        (lambda out: _label(out).unlink(), {"labels"}),
        (lambda out: (out / "labels" / "val" / "new.txt").write_text(""), {"labels"}),
        # The same boxes written again (a labelling tool's export): the file differs.
        (lambda out: _edit_coco(out, "val", lambda gt: None), {"annotations"}),
        (
            lambda out: (
                _edit_coco(out, "val", lambda gt: None),
                _label(out).write_text("0 0.5 0.5 0.3 0.3\n"),
            ),
            {"annotations", "labels"},
        ),
    ],
)
def test_what_was_edited_since_the_conversion_is_told_apart(
    tiny_data: Path, tmp_path: Path, edit: Callable[[Path], object], expected: set[str]
) -> None:
    from converters.convert import edited_since_conversion

    out = tmp_path / "out"
    shutil.copytree(tiny_data, out, symlinks=True, ignore=shutil.ignore_patterns("*.cache"))
    edit(out)
    assert edited_since_conversion(out, "val") == expected
    assert edited_since_conversion(out, "train") == set()
    # A split the output lacks, and an output converted before the record: unknown.
    assert edited_since_conversion(out, "test") is None
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["written_sha256"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert edited_since_conversion(out, "val") is None


def _label(out: Path) -> Path:
    """The label file of val's first image with a box."""
    gt = json.loads((out / "annotations" / "instances_val.json").read_text())
    with_boxes = {a["image_id"] for a in gt["annotations"]}
    image = next(im for im in gt["images"] if im["id"] in with_boxes)
    return out / "labels" / "val" / f"{Path(image['file_name']).stem}.txt"


def test_a_coco_file_edited_since_the_conversion_is_the_ground_truth(
    tiny_data: Path, tmp_path: Path
) -> None:
    # evaluate and review read labels/ wherever they disagreed with the COCO file, and
    # said the labels were edited, also where the COCO file was the one edited (by a
    # labelling tool that speaks COCO): the edit was ignored and the note was wrong.
    from detection.evaluate import evaluate_results_on_split, split_ground_truth
    from detection.review import read_source
    from detection.train import coco_edits_not_trained_on

    out = tmp_path / "out"
    shutil.copytree(tiny_data, out, symlinks=True, ignore=shutil.ignore_patterns("*.cache"))
    label = _label(out)
    moved = {}

    def move_first_box(gt: dict) -> None:
        (image,) = [im for im in gt["images"] if Path(im["file_name"]).stem == label.stem]
        box = next(a for a in gt["annotations"] if a["image_id"] == image["id"])
        box["bbox"][0] = max(0.0, box["bbox"][0] - 40)
        moved.update(file_name=image["file_name"], bbox=box["bbox"])

    _edit_coco(out, "val", move_first_box)
    truth = split_ground_truth(out, "val")
    said = truth.ground_truth_edited
    assert truth.source == out / "annotations" / "instances_val.json"
    assert (said["read"], said["edited"], said["files"]) == ("annotations", ["annotations"], 1)
    assert said["examples"] == [str(label.relative_to(out))]
    # Its boxes as detections score 1.0 against the COCO file as edited, not the labels.
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1}
        for a in truth.gt["annotations"]
    ]
    (tmp_path / "results.json").write_text(json.dumps(results))
    report = evaluate_results_on_split(tmp_path / "results.json", out, tmp_path / "r", "val", 0)
    assert report["metrics"]["AP50"] == 1.0 and report["ground_truth_edited"] == said
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "**Ground truth edited:** " in markdown and "without its edits" in markdown
    evaluate = [*DEFECTS, "evaluate", "--predictions", str(tmp_path / "results.json")]
    evaluate += ["--data", str(out), "--out", str(tmp_path / "cli"), "--bootstrap", "0"]
    cli = subprocess.run(evaluate, capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert f"note: {out / 'annotations' / 'instances_val.json'} was edited since " in " ".join(
        cli.stderr.split()
    )
    # The review shows the box where the COCO file put it.
    (image,) = [im for im in read_source(out).images if im.name == moved["file_name"]]
    assert any(box.xmin == pytest.approx(moved["bbox"][0]) for box in image.boxes)
    # Training reads the labels: it says it will not learn the edit.
    (sentence,) = coco_edits_not_trained_on(out)
    assert "the labels of val still hold the boxes it had in 1 file (e.g. " in sentence
    assert f"defects review --data {out} --name NAME --no-launch" in sentence

    # The labels edited too: they are read, as ultralytics reads them, and the note says
    # both were edited.
    label.write_text("0 0.5 0.5 0.3 0.3\n")
    both = split_ground_truth(out, "val")
    assert both.source is None and both.ground_truth_edited["edited"] == ["annotations", "labels"]
    assert "both were edited" in ground_truth_edited_sentence(both.ground_truth_edited)
    assert coco_edits_not_trained_on(out) == []
    # An output converted before the record of what was written: the labels, as before.
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["written_sha256"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    older = split_ground_truth(out, "val")
    assert older.source is None and older.ground_truth_edited["edited"] is None
    assert coco_edits_not_trained_on(out) == []


@pytest.mark.parametrize("coco", ["[1, 2, 3]", '{"images": 3}', "not JSON"])
def test_a_coco_file_no_longer_coco_leaves_training_to_its_labels(
    coco: str, tiny_data: Path, tmp_path: Path
) -> None:
    """Training reads the labels: a COCO file written over since (a TypeError traceback
    from the list) is evaluate's to name, and training is not stopped by it."""
    from detection.train import coco_edits_not_trained_on

    out = tmp_path / "out"
    shutil.copytree(tiny_data, out, symlinks=True, ignore=shutil.ignore_patterns("*.cache"))
    (out / "annotations" / "instances_val.json").write_text(coco)
    assert coco_edits_not_trained_on(out) == []


def test_a_release_s_operating_points_read_the_ground_truth_evaluate_reads(
    tiny_data: Path, tmp_path: Path
) -> None:
    # `release` scored its card's mAP against the labels as edited (evaluate_model) and
    # measured its operating points against the COCO file as converted.
    from detection.evaluate import split_ground_truth
    from detection.release import measured_on_val

    out = tmp_path / "out"
    shutil.copytree(tiny_data, out, symlinks=True, ignore=shutil.ignore_patterns("*.cache"))
    for label in sorted((out / "labels" / "val").glob("*.txt"))[:2]:
        label.write_text("0 0.5 0.5 0.3 0.3\n")
    truth = split_ground_truth(out, "val").gt
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1}
        for a in truth["annotations"]
    ]
    classes = {c["id"]: c["name"] for c in truth["categories"]}
    confidences = {name: 0.5 for name in classes.values()}
    measured = measured_on_val(None, out, confidences, 0.7, results)
    for name in {classes[a["category_id"]] for a in truth["annotations"]}:
        point = measured["per_class"][name]
        assert (point["precision"], point["recall"]) == (1.0, 1.0), name


def test_the_images_of_a_split_are_those_ultralytics_lists(tiny_data: Path, tmp_path: Path) -> None:
    images, _ = split_images(tiny_data / "data.yaml", "train")
    assert sorted(images) == sorted((tiny_data / "images" / "train").iterdir())
    # A .txt list of images, "./" beside it, as ultralytics reads one.
    listed = tmp_path / "train.txt"
    listed.write_text("\n".join(f"./{p.name}" for p in images[:3]) + "\n")
    for p in images[:3]:
        shutil.copyfile(p, tmp_path / p.name)
    yaml_text = (tiny_data / "data.yaml").read_text().replace("images/train", str(listed))
    (tmp_path / "data.yaml").write_text(yaml_text)
    found, _ = split_images(tmp_path / "data.yaml", "train")
    assert found == [tmp_path / p.name for p in images[:3]]


@pytest.mark.parametrize(
    ("names", "root", "said"),
    [
        # Class ids with a gap: ultralytics' KeyError, which was a traceback.
        (
            "names: {0: crazing, 2: patches}",
            None,
            "2-class dataset requires class indices 0-1, but you have invalid class indices 0-2",
        ),
        ("names: []", None, "0-class dataset, at least one class name is required"),
        ("names: {a: x}", None, "its 'names' keys are not class ids (0, 1, ...): invalid"),
        # `path: .` is the folder the command runs in, for ultralytics, not the data.yaml's:
        # said so, without ultralytics' note on its download folder.
        ("names: [a]", ".", "(its 'path: .' is taken, as ultralytics takes it, from the folder"),
        # Not in the working folder either: ultralytics looks in its datasets folder.
        ("names: [a]", "data", "from ultralytics' datasets folder, "),
    ],
)
def test_a_data_yaml_ultralytics_refuses_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: str, root: str | None, said: str
) -> None:
    data = tmp_path / "data"
    write_image(data / "images" / "val" / "a.jpg")
    (data / "data.yaml").write_text(
        (f"path: {root}\n" if root else "") + f"train: images/val\nval: images/val\n{names}\n"
    )
    monkeypatch.chdir(tmp_path / "data" / "images")  # not the data.yaml's folder
    with pytest.raises(ConversionError) as refused:
        split_images(data / "data.yaml", "val")
    message = str(refused.value)
    assert message.startswith(f"{data / 'data.yaml'}: ") and said in message
    assert "\n" not in message and "download directory" not in message
    if root:
        assert f"from the data.yaml's folder, {data};" in message
