"""Shifted copies across splits (:func:`detection.leaks.shifted_copies`): overlapping
crops of one strip, re-exposed or re-encoded, on generated textures and on NEU-DET."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from converters.convert import ConvertResult
from detection.leaks import MAX_SHIFT, SHIFTED_COPY_CORRELATION, shifted_copies


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
):
    strip = _steel(0, 400)
    original = _write(tmp_path / "train" / "a.jpg", strip[100:300, 100:300])
    crop = strip[100 + dy : 300 + dy, 100 + dx : 300 + dx].astype(np.int16) + brighter
    copy = _write(tmp_path / "val" / "b.jpg", np.clip(crop, 0, 255).astype(np.uint8), quality)
    others = [_write(tmp_path / "val" / f"other{i}.jpg", _steel(i)[:200, :200]) for i in (1, 2)]
    paths = [original, copy, *others]

    pairs = shifted_copies(paths, ["train", "val", "val", "val"])

    if found:
        assert [(p["a"], p["b"]) for p in pairs] == [(0, 1)]
        # Where a's content lies in b: a pixel at x in a is at x - dx in b.
        assert pairs[0]["shift"] == [-dx, -dy]
        assert pairs[0]["correlation"] >= SHIFTED_COPY_CORRELATION + 0.1
    else:
        assert pairs == []


def test_copies_within_one_split_are_no_leak(tmp_path: Path):
    texture = _steel(3)
    paths = [
        _write(tmp_path / "a.jpg", texture[:200, :200]),
        _write(tmp_path / "b.jpg", texture[10:210, 20:220]),
        _write(tmp_path / "c.jpg", _steel(4)[:200, :200]),
    ]
    assert shifted_copies(paths, ["train", "train", "val"]) == []
    found = shifted_copies(paths, ["train", "val", "val"])
    assert [(p["a"], p["b"], p["shift"]) for p in found] == [(0, 1, [-20, -10])]


def test_neu_det_holds_overlapping_crops_across_its_seeded_split(neu_converted: ConvertResult):
    # docs/neu-det-findings.md: crops of one strip a few to 50 pixels apart, one in
    # train and one in val, which the backbone descriptor does not find.
    images = sorted((neu_converted.out / "images").glob("*/*.jpg"))
    found = shifted_copies(images, [path.parent.name for path in images])
    by_name = {frozenset((images[p["a"]].name, images[p["b"]].name)): p for p in found}
    scratch = by_name[frozenset({"scratches_178.jpg", "scratches_185.jpg"})]
    assert scratch["correlation"] > 0.98
    assert by_name[frozenset({"pitted_surface_202.jpg", "pitted_surface_204.jpg"})][
        "correlation"
    ] > 0.99  # fmt: skip
    assert all({images[p["a"]].parent.name, images[p["b"]].parent.name} == {"train", "val"}
               for p in found)  # fmt: skip
    assert len(found) == 15
