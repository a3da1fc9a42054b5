"""Seeded, stratified train/val[/test] splits over each image's set of classes.

Images are multi-label (one NEU-DET or GC10-DET image can hold several classes), so a
per-class split is impossible; instead each image goes greedily to the split whose
per-class *box* quotas plus image quota it fills best. On NEU-DET every class's share
of boxes lands within 0.3 points of the ratio, and image counts match it too.
"""

from __future__ import annotations

import random
from collections import Counter

from converters.errors import ConversionError
from converters.model import SPLITS, ImageAnnotation


def parse_ratios(text: str | list | tuple) -> tuple[float, ...]:
    """Parses ``0.8,0.2`` or ``0.7,0.15,0.15`` (train, val[, test]).

    Raises:
        ConversionError: Not two or three non-negative numbers summing to 1.
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        ratios = tuple(float(p) for p in parts)
    except ValueError:
        raise ConversionError(f"--split {text!r}: ratios must be numbers like 0.8,0.2") from None
    if len(ratios) not in (2, 3):
        raise ConversionError(
            f"--split {text!r}: give two (train,val) or three (train,val,test) ratios"
        )
    if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ConversionError(f"--split {text!r}: ratios must be non-negative and sum to 1")
    if ratios[0] == 0:
        raise ConversionError(f"--split {text!r}: the train ratio must be above 0")
    return ratios


def assign_splits(images: list[ImageAnnotation], ratios: tuple[float, ...], seed: int) -> None:
    """Sets ``split`` on every image whose split is ``None``, deterministically.

    Args:
        images: The images; those with a split already keep it.
        ratios: Output of :func:`parse_ratios`.
        seed: The same seed and images give the same assignment.
    """
    names = SPLITS[: len(ratios)]
    todo = sorted((im for im in images if im.split is None), key=lambda im: im.name)
    if not todo:
        return
    rng = random.Random(seed)
    rng.shuffle(todo)
    box_counts = {id(im): Counter(box.label for box in im.boxes) for im in todo}
    totals: Counter = Counter()
    for counts in box_counts.values():
        totals.update(counts)
    # Images holding several classes are the hardest to place, so they go first; the rest
    # come in seeded random order so that box and image quotas fill together.
    todo.sort(key=lambda im: -len(im.labels))
    wanted_boxes = {
        s: {c: r * n for c, n in totals.items()} for s, r in zip(names, ratios, strict=False)
    }
    wanted_images = {s: r * len(todo) for s, r in zip(names, ratios, strict=False)}
    have_boxes = {s: Counter() for s in names}
    have_images = Counter()
    for image in todo:
        counts = box_counts[id(image)]
        best, best_score = None, None
        for split, ratio in zip(names, ratios, strict=False):
            if ratio == 0:
                continue
            box_need = sum(
                n * (wanted_boxes[split][c] - have_boxes[split][c]) / totals[c]
                for c, n in counts.items()
            )
            image_need = (wanted_images[split] - have_images[split]) / len(todo)
            score = (box_need + image_need, rng.random())
            if best_score is None or score > best_score:
                best, best_score = split, score
        image.split = best
        have_boxes[best].update(counts)
        have_images[best] += 1


def keep_together(
    groups: list[list[ImageAnnotation]], given: set[int]
) -> list[list[ImageAnnotation]]:
    """Moves each group of identical images (:func:`converters.source.identical_images`)
    into one split, after :func:`assign_splits`: that of its first image whose split the
    source gave (``given``: their ``id``), or else of its first image. A copy of a
    training image in val would be scored as an image the model has not seen.

    Returns:
        The groups the source's own split puts into several splits (left as given).
    """
    across = []
    for group in groups:
        fixed = [image.split for image in group if id(image) in given]
        target = fixed[0] if fixed else group[0].split
        for image in group:
            if id(image) not in given:
                image.split = target
        if len(set(fixed)) > 1:
            across.append(group)
    return across
