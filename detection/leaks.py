"""Near-duplicate images across splits: a leak makes every figure on the split look better.

Embeddings come from our own trained detector (no zoo model: nothing may be downloaded):
its backbone's last feature map (P5), average-pooled to 4x4 so the descriptor keeps
where things are, centred on the dataset's mean and L2-normalised. A pooled global vector
does not do: NEU-DET's near-uniform textures (pitted surface, crazing) are then all close
to each other, while a copy of an image is close only in the spatial descriptor.
FiftyOne Brain's ``compute_leaky_splits`` finds the pairs across splits (cosine distance
below ``threshold``) and gives the view saved as ``leaky-splits``.

Measured on NEU-DET (docs/benchmarks.md): an exact copy is 0.0 away, the nearest two
different images 0.000095; a JPEG re-encoded at quality 70 moves a median 0.0001 (up to
0.015), a 4-pixel shift or a brightness change much further. So the default threshold,
0.00005, finds copies and near-exact copies and no look-alike textures.

A shifted copy (the same steel cropped further along the strip, as NEU-DET's
``scratches_178`` in train and ``scratches_185`` in val, 4 and 11 pixels apart) is far in
that descriptor, and in any pooled one: :func:`converters.overlaps.shifted_copies` finds
those by their fine detail, without a model.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from converters.model import SPLITS
from converters.overlaps import read_pictures, shifted_copies
from detection.weights import load_yolo, model_channels, model_imgsz

if TYPE_CHECKING:
    from fiftyone.core.dataset import Dataset as FiftyOneDataset

DEFAULT_THRESHOLD = 0.00005
LEAKS_VIEW = "leaky-splits"
_GRID = 4


def embed_images(weights: Path | str, paths: list[Path], batch: int = 1) -> np.ndarray:
    """``[N, D]`` descriptors of the images from the detector's backbone (centred and
    L2-normalised, so a dot product is a cosine similarity).

    One image at a time by default: the CPU kernels differ with the batch size in the
    last bits (1e-9), and where a feature barely varies across images (a barely trained
    detector) centring leaves residuals that small, so a copy computed in another batch
    would not come out equal to its original.
    """
    import torch

    from converters.pixels import read_image
    from detection.predict import batches, channels_first, letterbox

    model = load_yolo(weights, "detect")
    network = model.model.float().eval()
    imgsz, channels = model_imgsz(model), model_channels(model)
    backbone = network.model[: len(network.yaml["backbone"])]  # a plain chain of layers
    found = []
    with torch.no_grad():
        for chunk in batches(list(paths), batch):
            boxed = [letterbox(read_image(p), imgsz, channels=channels)[0] for p in chunk]
            tensor = torch.from_numpy(channels_first(boxed, scaled=True))
            for layer in backbone:
                tensor = layer(tensor)
            pooled = torch.nn.functional.adaptive_avg_pool2d(tensor, _GRID).flatten(1)
            found.append(pooled.numpy())
    vectors = np.concatenate(found).astype(np.float64)
    vectors -= vectors.mean(axis=0)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def cross_split_pairs(
    embeddings: np.ndarray, splits: list[str], threshold: float
) -> list[tuple[int, int, float]]:
    """``(i, j, distance)`` of every pair in different splits closer than ``threshold``."""
    distance = 1.0 - embeddings @ embeddings.T
    split = np.asarray(splits)
    close = (distance <= threshold) & (split[:, None] != split[None, :])
    i, j = np.nonzero(np.triu(close, k=1))
    return [(int(a), int(b), float(distance[a, b])) for a, b in zip(i, j)]


def find_split_leaks(
    dataset: FiftyOneDataset, weights: Path | str, threshold: float = DEFAULT_THRESHOLD
) -> dict:
    """Finds near-duplicates across the dataset's split tags, by the backbone (copies)
    and by fine detail (:func:`shifted_copies`); saves ``leaky-splits``: FiftyOne
    Brain's leaks by the backbone, with the shifted copies' images after them.

    Returns:
        ``{"threshold", "pairs": [{"a", "b", "splits", "distance", "ids"}], "shifted":
        [{"a", "b", "splits", "correlation", "shift", "ids"}], "images", "images_by_split",
        "view"}``.
    """
    import fiftyone.brain as fob

    ids, paths, tags = dataset.values(["id", "filepath", "tags"])
    split_of = [next((t for t in sample_tags if t in SPLITS), "") for sample_tags in tags]
    present = sorted({s for s in split_of if s})
    embeddings = embed_images(weights, [Path(p) for p in paths])
    index = fob.compute_leaky_splits(
        dataset, splits=present, threshold=threshold, embeddings=embeddings
    )

    def pair(i: int, j: int, **measured: object) -> dict:
        return {
            "a": Path(paths[i]).name,
            "b": Path(paths[j]).name,
            "splits": [split_of[i], split_of[j]],
            **measured,
            "ids": [ids[i], ids[j]],
        }

    pairs = [
        pair(i, j, distance=distance)
        for i, j, distance in cross_split_pairs(embeddings, split_of, threshold)
    ]
    labelled = [i for i, split in enumerate(split_of) if split]
    shifted = [
        pair(labelled[c["a"]], labelled[c["b"]], correlation=c["correlation"], shift=c["shift"])
        for c in shifted_copies(
            read_pictures([Path(paths[i]) for i in labelled]), [split_of[i] for i in labelled]
        )
    ]
    # Each image once, in order: one val image may overlap several training images.
    leaked = list(
        dict.fromkeys([*index.leaks_view().values("id"), *(i for s in shifted for i in s["ids"])])
    )
    dataset.save_view(LEAKS_VIEW, dataset.select(leaked, ordered=True), overwrite=True)
    split_by_id = dict(zip(ids, split_of))
    images_by_split = Counter(split_by_id[i] or "no split" for i in leaked)
    return {
        "threshold": threshold,
        "pairs": sorted(pairs, key=lambda p: p["distance"]),
        "shifted": shifted,
        "images": len(leaked),
        "images_by_split": {
            s: images_by_split[s] for s in [*SPLITS, "no split"] if s in images_by_split
        },
        "view": LEAKS_VIEW,
    }
