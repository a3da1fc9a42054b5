"""Overlapping crops of one strip, re-exposed or re-encoded (:mod:`converters.overlaps`):
found across splits, on generated textures and on NEU-DET, and kept in one split by
``convert --keep-overlaps``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from converters.convert import ConvertResult, convert
from converters.errors import ConversionError
from converters.model import Box, ImageAnnotation
from converters.overlaps import (
    MAX_SHIFT,
    SHIFTED_COPY_CORRELATION,
    Pictures,
    _nearest,
    _window_similarity,
    copies_of,
    read_pictures,
    shifted_copies,
)
from converters.split import assign_splits, merge_groups
from detection.cli import main
from detection.offline import PROJECT_ROOT
from detection.release import convert_command
from tests.helpers import voc_xml, write_xml

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def _steel(seed: int, side: int = 320) -> np.ndarray:
    """A grey texture with detail at every scale, as rolled steel has."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((side, side), np.float32)
    for sigma, weight in ((0.8, 18), (3, 14), (12, 30)):
        texture += weight * cv2.GaussianBlur(rng.standard_normal((side, side)), (0, 0), sigma)
    return np.clip(texture + 110, 0, 255).astype(np.uint8)


def _write(path: Path, pixels: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(
        str(path), cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return path


@pytest.mark.parametrize(
    ("dx", "dy", "brighter", "quality", "found"),
    [
        (0, 0, 0, 95, True),  # a copy
        (12, 30, 0, 95, True),  # the next crop along the strip
        (-20, 7, 25, 70, True),  # ... re-exposed and re-encoded
        (MAX_SHIFT - 5, -MAX_SHIFT + 5, 0, 95, True),  # overlapping by under 3/4
        (150, 0, 0, 95, False),  # no overlap to speak of: another picture
    ],
)
def test_a_shifted_copy_in_another_split_is_found(
    tmp_path: Path, dx: int, dy: int, brighter: int, quality: int, found: bool
) -> None:
    strip = _steel(0, 400)
    original = _write(tmp_path / "train" / "a.jpg", strip[100:300, 100:300])
    crop = strip[100 + dy : 300 + dy, 100 + dx : 300 + dx].astype(np.int16) + brighter
    copy = _write(tmp_path / "val" / "b.jpg", np.clip(crop, 0, 255).astype(np.uint8), quality)
    others = [_write(tmp_path / "val" / f"other{i}.jpg", _steel(i)[:200, :200]) for i in (1, 2)]
    paths = [original, copy, *others]

    pairs = shifted_copies(read_pictures(paths), ["train", "val", "val", "val"])

    if found:
        assert [(p["a"], p["b"]) for p in pairs] == [(0, 1)]
        # Where a's content lies in b: a pixel at x in a is at x - dx in b.
        assert pairs[0]["shift"] == [-dx, -dy]
        assert pairs[0]["correlation"] >= SHIFTED_COPY_CORRELATION + 0.1
    else:
        assert pairs == []


def test_copies_within_one_split_are_no_leak(tmp_path: Path) -> None:
    texture = _steel(3)
    paths = [
        _write(tmp_path / "a.jpg", texture[:200, :200]),
        _write(tmp_path / "b.jpg", texture[10:210, 20:220]),
        _write(tmp_path / "c.jpg", _steel(4)[:200, :200]),
    ]
    pictures = read_pictures(paths)
    assert shifted_copies(pictures, ["train", "train", "val"]) == []
    found = shifted_copies(pictures, ["train", "val", "val"])
    assert [(p["a"], p["b"], p["shift"]) for p in found] == [(0, 1, [-20, -10])]


def test_copies_of_images_among_others_say_which_of_which(tmp_path: Path) -> None:
    strip = _steel(5, 400)
    among = [
        _write(tmp_path / "train" / "a.jpg", strip[:200, :200]),
        _write(tmp_path / "train" / "b.jpg", strip[200:, 200:]),
    ]
    images = [
        _write(tmp_path / "val" / "new.jpg", _steel(6)[:200, :200]),
        _write(tmp_path / "val" / "next-to-b.jpg", strip[190:390, 170:370], quality=80),
        _write(tmp_path / "val" / "b-again.jpg", strip[200:, 200:]),
    ]
    # Both copies, each of b (the first and second lists in either order of reading),
    # and neither a copy of the other: they are in the same list.
    assert sorted(copies_of(images, among)) == [(1, 1), (2, 1)]
    assert sorted(copies_of(among, images)) == [(1, 1), (1, 2)]
    assert copies_of(images, []) == copies_of([], among) == []


@pytest.fixture(scope="module")
def neu_pictures(neu_converted: ConvertResult) -> tuple[list[str], Pictures]:
    """NEU-DET's images by name, read once for every split checked below."""
    images = sorted((neu_converted.out / "images").glob("*/*.jpg"), key=lambda path: path.name)
    return [path.name for path in images], read_pictures(images)


def test_neu_det_holds_overlapping_crops_across_its_seeded_split(
    neu_converted: ConvertResult, neu_pictures: tuple[list[str], Pictures]
) -> None:
    # docs/neu-det-findings.md: crops of one strip a few to 50 pixels apart, one in
    # train and one in val, which the backbone descriptor does not find.
    names, pictures = neu_pictures
    split_of = neu_converted.manifest["split_of_image"]
    found = shifted_copies(pictures, [split_of[name] for name in names])
    by_name = {frozenset((names[p["a"]], names[p["b"]])): p for p in found}
    scratch = by_name[frozenset({"scratches_178.jpg", "scratches_185.jpg"})]
    assert scratch["correlation"] > 0.98
    assert by_name[frozenset({"pitted_surface_202.jpg", "pitted_surface_204.jpg"})][
        "correlation"
    ] > 0.99  # fmt: skip
    # Crazing is a fine texture: a shift leaves no likeness in a thumbnail of the
    # whole image, which missed this pair; the shifted windows find it.
    assert frozenset({"crazing_115.jpg", "crazing_118.jpg"}) in by_name
    assert all({split_of[names[p["a"]]], split_of[names[p["b"]]]} == {"train", "val"}
               for p in found)  # fmt: skip
    val = {names[i] for p in found for i in (p["a"], p["b"]) if split_of[names[i]] == "val"}
    assert (len(found), len(val)) == (76, 54)


def _neu_strips(root: Path, strips: int = 6, crops: int = 3, layout: str = "original") -> None:
    """NEU-DET with ``crops`` overlapping 200x200 crops of each strip, 12 to 40 pixels
    apart along it (as NEU-DET's own), one class per strip. ``kaggle``: the crops of
    strip 0 split between the layout's train and validation parts."""
    for s in range(strips):
        cls, strip = CLASSES[s % len(CLASSES)], _steel(10 + s, 400)
        for c in range(crops):
            name = f"{cls}_{s * crops + c}"
            x, y = 20 + 40 * c, 100 + 12 * (c % 2)
            if layout == "original":
                image, xml = root / "IMAGES" / f"{name}.jpg", root / "ANNOTATIONS" / f"{name}.xml"
            else:
                part = "validation" if s == 0 and c == crops - 1 else "train"
                image = root / part / "images" / cls / f"{name}.jpg"
                xml = root / part / "annotations" / f"{name}.xml"
            _write(image, strip[y : y + 200, x : x + 200])
            write_xml(xml, voc_xml(name, [(cls, 10, 10, 60 + 5 * c, 60)], (200, 200)))


def _strip_of(name: str) -> int:
    return int(Path(name).stem.rsplit("_", 1)[1]) // 3


def test_convert_keeps_overlapping_crops_in_one_split(tmp_path: Path) -> None:
    _neu_strips(tmp_path / "NEU-DET")
    apart = 0  # seeds whose plain split parts a strip's crops
    for seed in range(4):
        result = convert(
            tmp_path / "NEU-DET", tmp_path / f"out{seed}", ratios=(0.5, 0.5), seed=seed,
            keep_overlaps=True,
        )  # fmt: skip
        split_of = result.manifest["split_of_image"]
        strips = {}
        for name, split in split_of.items():
            strips.setdefault(_strip_of(name), set()).add(split)
        assert all(len(splits) == 1 for splits in strips.values()), (seed, strips)
        assert sorted(map(len, strips.values())) == [1] * 6
        # Half the strips, and so half the images and boxes, on each side.
        assert {s: c["images"] for s, c in result.manifest["counts"].items()} == {
            "train": 9,
            "val": 9,
        }
        groups = result.manifest["overlapping_images"]
        assert [[_strip_of(name) for name in group] for group in groups] == [
            [s] * 3 for s in range(6)
        ]
        images = sorted((result.out / "images").glob("*/*.jpg"))
        assert shifted_copies(read_pictures(images), [p.parent.name for p in images]) == []
        # The seeded split the images would have had without --keep-overlaps.
        for image in result.source.dataset.images:
            image.split = None
        assign_splits(result.source.dataset.images, (0.5, 0.5), seed)
        plain = {}
        for image in result.source.dataset.images:
            plain.setdefault(_strip_of(image.name), set()).add(image.split)
        apart += any(len(splits) > 1 for splits in plain.values())
    assert apart  # without it, some seed puts a crop of a training strip in val
    plain = convert(tmp_path / "NEU-DET", tmp_path / "plain")
    assert plain.manifest["overlapping_images"] is None  # not checked


def test_convert_keep_overlaps_from_the_command_line_and_again_from_its_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _neu_strips(tmp_path / "NEU-DET", strips=4)
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "NEU-DET"), "--out", str(out), "--keep-overlaps"]) == 0
    said = capsys.readouterr().err.replace("\n", " ")
    assert "--keep-overlaps: the images' pixels are compared after that" in said
    assert "--keep-overlaps: 4 groups of overlapping crops (12 images) each in one split" in said
    manifest = json.loads((out / "manifest.json").read_text())
    command = convert_command(manifest, out)  # as a released model's card gives it
    assert command.endswith("--split 0.8,0.2 --seed 0 --keep-overlaps")
    monkeypatch.chdir(PROJECT_ROOT)  # where the card's relative paths start
    again = command.split()[1:]  # after "defects"
    again[again.index("--out") + 1] = os.path.relpath(tmp_path / "again", PROJECT_ROOT)
    assert main(again) == 0
    repeated = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert repeated["split_of_image"] == manifest["split_of_image"]
    assert repeated["overlapping_images"] == manifest["overlapping_images"]


def test_a_given_split_that_parts_overlapping_crops_is_kept_and_warned(tmp_path: Path) -> None:
    _neu_strips(tmp_path / "NEU-DET", layout="kaggle")
    result = convert(tmp_path / "NEU-DET", tmp_path / "out", keep_overlaps=True)
    assert "Kaggle" in result.source.layout.layout
    assert result.manifest["split_of_image"]["crazing_2.jpg"] == "val"  # as given
    (warned,) = [p for p in result.source.report.problems if p.severity == "warning"]
    assert warned.problem == "overlapping_images_across_splits"
    assert warned.file.endswith("crazing_2.xml")
    assert "puts its image in val and an overlapping crop (crazing_0.jpg) in train" in (
        warned.detail
    )
    # Split here: together, and nothing to warn of.
    result = convert(tmp_path / "NEU-DET", tmp_path / "again", resplit=True, keep_overlaps=True)
    assert len({result.manifest["split_of_image"][f"crazing_{i}.jpg"] for i in range(3)}) == 1
    assert not [p for p in result.source.report.problems if p.severity == "warning"]


def test_keep_overlaps_names_an_image_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _neu_strips(tmp_path / "NEU-DET", strips=2)
    # A WebP whose header is whole and whose pixels are gone: its size reads, so
    # conversion keeps it, but there is nothing to compare.
    _, encoded = cv2.imencode(".webp", np.full((200, 200, 3), 100, np.uint8))
    broken = tmp_path / "NEU-DET" / "IMAGES" / "patches_9.webp"
    broken.write_bytes(encoded.tobytes()[:40] + bytes(len(encoded) - 40))
    write_xml(
        tmp_path / "NEU-DET" / "ANNOTATIONS" / "patches_9.xml",
        voc_xml("patches_9.webp", [("patches", 10, 10, 60, 60)], (200, 200)),
    )
    with pytest.raises(ConversionError, match=r"patches_9\.webp: not an image OpenCV can decode; "
                       r"--keep-overlaps compares every image's pixels"):  # fmt: skip
        convert(tmp_path / "NEU-DET", tmp_path / "out", keep_overlaps=True)
    assert not (tmp_path / "out").exists()
    assert convert(tmp_path / "NEU-DET", tmp_path / "out").manifest["counts"]["train"]
    code = main(["convert", str(tmp_path / "NEU-DET"), "--out", str(tmp_path / "o2"),
                 "--keep-overlaps"])  # fmt: skip
    assert code != 0 and "patches_9.webp" in capsys.readouterr().err


def test_neu_det_split_keeping_overlaps_leaves_none_across(
    tmp_path: Path, neu_det: Path, neu_pictures: tuple[list[str], Pictures]
) -> None:
    result = convert(neu_det, tmp_path / "out", keep_overlaps=True)
    groups = result.manifest["overlapping_images"]
    split_of = result.manifest["split_of_image"]
    names, pictures = neu_pictures  # the same image files
    assert shifted_copies(pictures, [split_of[name] for name in names]) == []
    assert all(len({split_of[name] for name in group}) == 1 for group in groups)
    grouped = {name for group in groups for name in group}
    # docs/neu-det-findings.md: the pairs the seeded split parts are among them.
    assert {"scratches_178.jpg", "scratches_185.jpg", "pitted_surface_204.jpg"} <= grouped
    # Still stratified: every class's share of val boxes within 1 point of 20% (a group
    # of up to 18 crops is placed whole).
    counts = result.manifest["counts"]
    for cls in result.manifest["classes"]:
        val = counts["val"]["boxes_per_class"][cls]
        share = val / (val + counts["train"]["boxes_per_class"][cls])
        assert abs(share - 0.2) < 0.01, (cls, share)


def test_make_passes_convert_args_to_every_conversion(tmp_path: Path) -> None:
    # `make train-det DATA=... CONVERT_ARGS=--keep-overlaps`: the README's way to it.
    for target in ("train-det", "convert-neu", "review"):
        printed = subprocess.run(
            ["make", "-n", target, f"DATA={tmp_path}", "CONVERT_ARGS=--keep-overlaps"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        converts = [line for line in printed.splitlines() if " convert " in line]
        assert converts and all("--keep-overlaps" in line for line in converts), (target, printed)


@pytest.mark.parametrize(
    ("groups", "merged"),
    [
        ([], []),
        ([["a", "b"]], [["a", "b"]]),
        ([["a", "b"], ["c", "d"]], [["a", "b"], ["c", "d"]]),
        ([["a", "b"], ["b", "c"]], [["a", "b", "c"]]),  # a chain of pairs: one picture
        ([["a", "b"], ["c", "d"], ["d", "a"]], [["a", "b", "c", "d"]]),
        ([["a", "b", "a"]], [["a", "b"]]),  # each image once
    ],
)
def test_groups_that_share_an_image_are_one(
    groups: list[list[str]], merged: list[list[str]]
) -> None:
    images = {name: ImageAnnotation(f"{name}.jpg", Path(f"{name}.jpg"), 8, 8) for name in "abcd"}
    found = merge_groups([[images[name] for name in group] for group in groups])
    assert [[image.stem for image in group] for group in found] == merged


def test_a_group_is_placed_whole_and_groups_of_one_change_nothing() -> None:
    images = [
        ImageAnnotation(f"{CLASSES[i % 6]}_{i}.jpg", Path(f"{i}.jpg"), 200, 200,
                        [Box(CLASSES[i % 6], 0, 0, 50, 50)] * (1 + i % 3))
        for i in range(60)
    ]  # fmt: skip

    def splits(groups: list[list[ImageAnnotation]]) -> list[str]:
        for image in images:
            image.split = None
        assign_splits(images, (0.8, 0.2), 3, groups)
        return [image.split for image in images]

    alone = splits(())
    assert splits([[image] for image in images]) == alone
    # Crops 0, 6, 12 and 18 (one class) show one picture: one split, whichever it is.
    group = [images[0], images[6], images[12], images[18]]
    assert len({alone[i] for i in (0, 6, 12, 18)}) > 1  # parted without the group
    together = splits([group])
    assert len({together[i] for i in (0, 6, 12, 18)}) == 1
    assert alone.count("val") == 12
    assert abs(together.count("val") - 12) < len(group)  # the ratio, to within a unit


def test_the_same_images_in_another_order_give_the_same_pairs(tmp_path: Path) -> None:
    # Enough images (64 or more) for the candidates' principal components, whose fit
    # would otherwise follow the order the images come in.
    paths = []
    for s in range(14):
        strip = _steel(40 + s, 400)
        for c in range(5):
            paths.append(
                _write(tmp_path / f"strip{s}_{c}.jpg", strip[100:300, 30 * c : 30 * c + 200])
            )
    splits = ["val" if (s + c) % 3 == 0 else "train" for s in range(14) for c in range(5)]
    reordered = list(reversed(range(len(paths))))

    ahead = read_pictures(paths)
    behind = read_pictures([paths[i] for i in reordered])

    assert np.array_equal(behind.similarity, ahead.similarity[np.ix_(reordered, reordered)])

    def named(pictures: Pictures, order: list[int]) -> dict:
        found = shifted_copies(pictures, [splits[i] for i in order])
        return {
            frozenset((paths[order[p["a"]]].name, paths[order[p["b"]]].name)): p["correlation"]
            for p in found
        }

    same_order = list(range(len(paths)))
    assert named(behind, reordered) == named(ahead, same_order) != {}


def test_any_number_of_threads_reads_and_matches_the_same(tmp_path: Path) -> None:
    # Images are read and pairs matched on as many threads as OpenCV computes with
    # (cv2.setNumThreads); the threads share the work out, and change nothing found.
    paths = [
        _write(tmp_path / f"strip{s}_{c}.jpg", _steel(60 + s, 400)[100:300, 40 * c : 40 * c + 200])
        for s in range(4)
        for c in range(4)
    ]
    splits = ["val" if c % 2 else "train" for s in range(4) for c in range(4)]
    before = cv2.getNumThreads()
    try:
        read = {}
        for threads in (1, 3):
            cv2.setNumThreads(threads)
            pictures = read_pictures(paths)
            read[threads] = pictures, shifted_copies(pictures, splits)
    finally:
        cv2.setNumThreads(before)
    (alone, found_alone), (shared, found_shared) = read[1], read[3]
    assert np.array_equal(alone.similarity, shared.similarity)
    assert all(map(np.array_equal, alone.details, shared.details))
    assert alone.matched == shared.matched and len(alone.matched) > len(found_alone)
    assert found_alone == found_shared
    # Every two neighbouring crops (40 pixels apart) lie in different splits: all found.
    assert {frozenset((paths[p["a"]].stem, paths[p["b"]].stem)) for p in found_alone} == {
        frozenset((f"strip{s}_{c}", f"strip{s}_{c + 1}")) for s in range(4) for c in range(3)
    }


def test_the_candidates_similarity_is_the_same_in_bounded_memory() -> None:
    # 100 images of one steel texture and shifted crops of it (every image has near
    # neighbours), in chunks of one image's windows and blocks of 7 where NEU-DET's
    # 1,800 take 10 and 1,024: what bounds the memory at 20,000 images.
    rng = np.random.default_rng(0)
    strips = rng.normal(size=(20, 40, 60)).astype(np.float32)
    cells = np.stack([strips[i // 5, :, 4 * (i % 5) : 4 * (i % 5) + 40] for i in range(100)])
    cells += rng.normal(scale=0.3, size=cells.shape).astype(np.float32)

    whole = _window_similarity(cells)
    bounded = _window_similarity(cells, scores_bytes=1, block=7)

    assert np.array_equal(bounded, bounded.T) and np.isneginf(np.diag(bounded)).all()
    off_diagonal = ~np.eye(len(cells), dtype=bool)
    assert np.allclose(bounded[off_diagonal], whole[off_diagonal], atol=1e-5)
    # Crops of one strip find each other first.
    assert (np.argmax(whole, axis=1) // 5 == np.arange(100) // 5).all()


@pytest.mark.parametrize("splits", [None, "alternate", "one split"])
def test_each_images_nearest_a_block_at_a_time_are_those_of_the_whole(splits: str | None) -> None:
    rng = np.random.default_rng(1)
    similarity = rng.random((50, 50), dtype=np.float32)
    similarity = np.maximum(similarity, similarity.T)
    np.fill_diagonal(similarity, -np.inf)
    split = {
        None: None,
        "alternate": ["train", "val", "train", "train", "test"] * 10,
        "one split": ["train"] * 50,
    }[splits]

    # The reference: the whole matrix at once.
    masked = similarity.copy()
    if split is not None:
        masked[np.equal.outer(split, split)] = -np.inf
    expected = [[j for j in np.argsort(-row)[:6] if np.isfinite(row[j])] for row in masked]

    got = list(_nearest(similarity, split, candidates=6, block=7))

    assert [i for i, _ in got] == list(range(50))
    assert [list(row) for _, row in got] == expected
    if splits == "one split":
        assert all(len(row) == 0 for _, row in got)  # no other split: nothing to pair
    else:
        assert all(len(row) == 6 for _, row in got)
