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
    # `not r >= 0` refuses nan as well ("nan,1" passed both tests and split as 1,0).
    if any(not r >= 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ConversionError(f"--split {text!r}: ratios must be non-negative and sum to 1")
    if ratios[0] == 0:
        raise ConversionError(f"--split {text!r}: the train ratio must be above 0")
    return ratios


def assign_splits(
    images: list[ImageAnnotation],
    ratios: tuple[float, ...],
    seed: int,
    groups: list[list[ImageAnnotation]] = (),
) -> None:
    """Sets ``split`` on every image whose split is ``None``, deterministically.

    Args:
        images: The images; those with a split already keep it.
        ratios: Output of :func:`parse_ratios`.
        seed: The same seed and images give the same assignment.
        groups: Images that go into one split together (identical files, overlapping
            crops of one picture: ``convert --keep-overlaps``); groups that share an
            image are one (:func:`merge_groups`), each placed as one unit of its boxes
            and images. Without groups, each image is a unit.
    """
    names = SPLITS[: len(ratios)]
    todo = [im for im in images if im.split is None]
    if not todo:
        return
    unit_of = {id(im): [im] for im in todo}
    for group in merge_groups(groups):
        unit = [im for im in group if id(im) in unit_of]
        for image in unit:
            unit_of[id(image)] = unit
    units = sorted({id(u[0]): u for u in unit_of.values()}.values(), key=lambda u: u[0].name)
    rng = random.Random(seed)
    rng.shuffle(units)
    box_counts = {id(u): Counter(box.label for im in u for box in im.boxes) for u in units}
    totals: Counter = Counter()
    for counts in box_counts.values():
        totals.update(counts)
    # Units holding several classes are the hardest to place, so they go first; the rest
    # come in seeded random order so that box and image quotas fill together.
    units.sort(key=lambda u: -len(set().union(*(im.labels for im in u))))
    wanted_boxes = {
        s: {c: r * n for c, n in totals.items()} for s, r in zip(names, ratios, strict=False)
    }
    wanted_images = {s: r * len(todo) for s, r in zip(names, ratios, strict=False)}
    have_boxes = {s: Counter() for s in names}
    have_images = Counter()
    for unit in units:
        counts = box_counts[id(unit)]
        best, best_score = None, None
        for split, ratio in zip(names, ratios, strict=False):
            if ratio == 0:
                continue
            box_need = sum(
                n * (wanted_boxes[split][c] - have_boxes[split][c]) / totals[c]
                for c, n in counts.items()
            )
            image_need = len(unit) * (wanted_images[split] - have_images[split]) / len(todo)
            score = (box_need + image_need, rng.random())
            if best_score is None or score > best_score:
                best, best_score = split, score
        for image in unit:
            image.split = best
        have_boxes[best].update(counts)
        have_images[best] += len(unit)


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


def merge_groups(groups: list[list[ImageAnnotation]]) -> list[list[ImageAnnotation]]:
    """Groups that share an image, joined (identical files, overlapping crops of one
    picture): each image in one group, in the order images first appear."""
    parent: dict[int, int] = {}
    seen: dict[int, ImageAnnotation] = {}

    def root(key: int) -> int:
        while parent[key] != key:
            parent[key] = key = parent[parent[key]]
        return key

    for group in groups:
        for image in group:
            seen.setdefault(id(image), image)
            parent.setdefault(id(image), id(image))
            parent[root(id(image))] = root(id(group[0]))
    joined: dict[int, list[ImageAnnotation]] = {}
    for key, image in seen.items():
        joined.setdefault(root(key), []).append(image)
    return list(joined.values())


def in_order_of(
    groups: list[list[ImageAnnotation]], images: list[ImageAnnotation]
) -> list[list[ImageAnnotation]]:
    """``groups``, each in the order of ``images``, ordered by their first image."""
    order = {id(image): i for i, image in enumerate(images)}
    ordered = [sorted(group, key=lambda image: order[id(image)]) for group in groups]
    return sorted(ordered, key=lambda group: order[id(group[0])])
