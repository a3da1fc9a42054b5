"""Overlapping crops: one picture of the steel cut into images a few pixels apart.

NEU-DET's images are 200x200 crops of longer strips, and many crops overlap (its
``scratches_178`` and ``scratches_185``: the same steel, shifted by 4 and 11 pixels). Put
one in train and the other in val and val scores a picture the model has seen. No pooled
descriptor finds them (a shift moves every pooled feature), so this compares the pictures
themselves, with no model:

- candidates: each image's centre window (half its side) looked for at every shift of 5
  pixels in every other image, in a coarse copy of both (:data:`CANDIDATES` images where
  it is found best);
- a match: the centre of one image's fine detail (the grey image at ``_SIDE`` pixels
  square minus its blur at sigma 2, which leaves out exposure and shading) found in the
  other's by normalised cross-correlation (``cv2.matchTemplate``), both ways, at a shift
  of up to :data:`MAX_SHIFT` pixels;
- a copy at a correlation of :data:`SHIFTED_COPY_CORRELATION` or more over the whole
  centre, and most of its 3x3 blocks matching too (one bright scratch line lined up on
  different steel matches the whole, not the blocks).

``defects review --near-duplicates`` (:mod:`detection.leaks`) finds those across the
splits of a converted dataset; ``defects convert --keep-overlaps`` keeps them in one
split in the first place; a model card's figures without them and ``defects compare
--unseen`` leave out the val images that are copies of a training image
(:func:`copies_of`).

Measured on NEU-DET (docs/neu-det-findings.md): 229 overlapping pairs in the whole
dataset, in 135 groups holding 343 images; its seeded split parts 76 of them, so 54 of
its 358 val images overlap a training image. On 2 cores, reading NEU-DET's 1,800 images
takes 9 s and matching the split's candidates 6 s, 515 MiB at peak (12 s, 12 s and 838 MiB
before images were read and pairs matched on every core, the scores' blocks made smaller
and the 3x3 blocks compared at once: 1.7x; docs/neu-det-findings.md). The candidates'
similarity is kept for every two images: 13 MB for NEU-DET, 1.6 GB for 20,000 images
(beyond that, each image's nearest alone would do). It is built and searched a block at
a time: on 6,000 generated images, with blocks of scores of 256 MB, the peak beside the
images fell from 1.5 GB to 0.7 GB building it and from 576 MB to 149 MB choosing the
candidates, with the same candidates (the blocks are 32 MB since).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from converters.pixels import read_image

_SIDE = 200
MAX_SHIFT = _SIDE // 4  # 50
SHIFTED_COPY_CORRELATION = 0.7
# Each candidate is matched first at 64 pixels square, a tenth of the work: on NEU-DET
# every pair that reaches 0.7 at _SIDE reaches 0.40 there, and of 30,546 candidates
# 1,112 reach 0.3, which are matched again at _SIDE.
_COARSE_SIDE = 64
_COARSE_CORRELATION = 0.3
# A copy matches in most of its overlap: the median of the correlations of the 3x3
# blocks of the centre at the best shift. On NEU-DET every pair at 0.7 or more outside
# scratches has a median of 0.6 or more; scratches whose one bright line lines up, on
# different steel, reach 0.7 over the whole centre with a median under 0.2.
_BLOCK_CORRELATION = 0.5
# Candidates: each image's centre window of 100x100 pixels is looked for at every shift
# of 5 pixels in every other image, in a coarse copy (5-pixel cells of the image less its
# shading) projected on its first _WINDOW_DIMS principal components; the CANDIDATES
# images where it is found best are matched. On NEU-DET, of the 237 pairs found by
# matching every two images of a class (0.7 or more, and 0.5 or more in most 33-pixel
# blocks at the best shift), 20 candidates hold 96.6% (a 16x16 thumbnail of the whole
# image held 26%: a shift moves every cell of it).
CANDIDATES = 20
_CELL = 5
_WINDOW_CELLS = 20
_WINDOW_DIMS = 32
# The candidates' scores held at a time: every window of up to 64 images against every
# centre (10 images at a time for NEU-DET's 1,800, 30 MB; one at a time beyond about
# 19,000 images). These blocks ran faster than 256 MB ones, measured: 5.6 s against
# 7.7 s on NEU-DET (2 cores), the same candidates.
_SCORES_BYTES = 32 * 2**20


@dataclass
class Pictures:
    """What :func:`shifted_copies` compares, read once per image.

    Attributes:
        similarity: ``[N, N]``: how well each image's centre window is found anywhere in
            the other (the better of the two ways); the diagonal is ``-inf``.
        details: ``N`` fine details at ``_SIDE`` x ``_SIDE`` (float32).
        coarse: The same at ``_COARSE_SIDE`` pixels square, to rule out most candidates
            cheaply.
        matched: Each pair matched so far, ``(a, b)``: ``(correlation, shift, block
            median)``, or ``None`` when ruled out coarsely; a pair is matched once however
            often it is a candidate (``convert --keep-overlaps`` checks split after split).
    """

    similarity: np.ndarray
    details: list[np.ndarray]
    coarse: list[np.ndarray]
    matched: dict[tuple[int, int], tuple[float, tuple[int, int], float] | None] = field(
        default_factory=dict
    )


def read_pictures(paths: list[Path]) -> Pictures:
    """Reads each image (:func:`converters.pixels.read_image`) for :func:`shifted_copies`.

    Raises:
        OSError: An image that cannot be read, naming it.
    """
    with ThreadPoolExecutor(_threads(len(paths))) as pool:  # OpenCV lets go of the GIL
        read = list(pool.map(_read_picture, paths))
    cells, details, coarse = (list(parts) for parts in zip(*read)) if read else ([], [], [])
    # The same images give the same similarity whatever order they come in (the
    # components are fitted on them all, and floating point sums depend on the order):
    # computed in the order of their names, then put back.
    order = sorted(range(len(paths)), key=lambda i: (Path(paths[i]).name, str(paths[i])))
    similarity = np.zeros((len(paths), len(paths)), np.float32)
    if cells:
        similarity[np.ix_(order, order)] = _window_similarity(np.stack(cells)[order])
    return Pictures(similarity, details, coarse)


def _read_picture(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's cells (for :func:`_window_similarity`), fine detail and coarse copy."""
    grey = cv2.cvtColor(read_image(path), cv2.COLOR_BGR2GRAY)
    work = cv2.resize(grey, (_SIDE, _SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    flat = work - cv2.GaussianBlur(work, (0, 0), 20)
    cells = cv2.resize(flat, (_SIDE // _CELL,) * 2, interpolation=cv2.INTER_AREA)
    detail = work - cv2.GaussianBlur(work, (0, 0), 2)
    return cells, detail, cv2.resize(detail, (_COARSE_SIDE,) * 2, interpolation=cv2.INTER_AREA)


def _threads(tasks: int) -> int:
    """Threads for ``tasks`` small OpenCV calls: as many as OpenCV computes with
    (``cv2.getNumThreads()``: every usable core unless ``cv2.setNumThreads`` says
    otherwise), since each call is too small for OpenCV to share out itself."""
    return max(1, min(cv2.getNumThreads(), tasks))


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors - vectors.mean(axis=-1, keepdims=True)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-6)


def _window_similarity(
    cells: np.ndarray, scores_bytes: int = _SCORES_BYTES, block: int = 1024
) -> np.ndarray:
    """``[N, N]``: the best cosine similarity of image ``i``'s centre window with any
    window of image ``j`` (every shift of one cell), the better of ``(i, j)`` and
    ``(j, i)``, ``-inf`` on the diagonal. Windows are compared in :data:`_WINDOW_DIMS`
    principal components (fitted on the centre and corner windows, where there are 64
    images or more): a tenth of the work. Beside the result, the scores of at most 64
    images' windows are held at a time, and no more than ``scores_bytes`` of them."""
    n, side = len(cells), cells.shape[1]
    steps, margin = side - _WINDOW_CELLS + 1, (side - _WINDOW_CELLS) // 2
    chunk = int(np.clip(scores_bytes // (4 * n * steps * steps), 1, 64))

    def windows(images: np.ndarray) -> np.ndarray:  # [images, y, x, row, column], no copy
        return np.lib.stride_tricks.sliding_window_view(images, (_WINDOW_CELLS,) * 2, (1, 2))

    ys, xs = [margin, 0, 0, steps - 1], [margin, 0, steps - 1, 0]  # the centre, 3 corners
    fit = windows(cells)[:, ys, xs].reshape(n, len(ys), -1)
    centres = _unit(fit[:, 0])
    fit = _unit(fit.reshape(-1, fit.shape[-1]))
    if len(fit) >= 8 * _WINDOW_DIMS:
        _, _, axes = np.linalg.svd(fit - fit.mean(axis=0), full_matrices=False)
        axes = axes[:_WINDOW_DIMS].T.astype(np.float32)
    else:  # too few images to fit the components on: every cell (and little to do)
        axes = np.eye(fit.shape[1], dtype=np.float32)
    centres = _unit(centres @ axes).astype(np.float32)
    best = np.empty((n, n), np.float32)
    for start in range(0, n, chunk):
        every = windows(cells[start : start + chunk])  # copied a chunk at a time
        found = _unit(_unit(every.reshape(len(every), steps * steps, -1)) @ axes)
        scores = centres @ found.reshape(-1, axes.shape[1]).T.astype(np.float32)
        best[:, start : start + chunk] = scores.reshape(n, -1, steps * steps).max(axis=2)
    # The better way round, in place a block at a time (best.T would copy the whole).
    for start in range(0, n, block):
        for other in range(start, n, block):
            rows, columns = np.s_[start : start + block], np.s_[other : other + block]
            better = np.maximum(best[rows, columns], best[columns, rows].T)
            best[rows, columns], best[columns, rows] = better, better.T
    np.fill_diagonal(best, -np.inf)
    return best


def _best_shift(detail: np.ndarray, other: np.ndarray) -> tuple[float, tuple[int, int]]:
    """The highest normalised correlation of ``detail``'s centre (``MAX_SHIFT`` in from
    each edge, at ``_SIDE``) within ``other``, and the shift ``(dx, dy)`` it is found at."""
    margin = detail.shape[0] * MAX_SHIFT // _SIDE
    centre = detail[margin:-margin, margin:-margin]
    scores = cv2.matchTemplate(other, centre, cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(scores)
    return float(best), (x - margin, y - margin)


def _match(
    detail: np.ndarray, other: np.ndarray, coarse: np.ndarray, other_coarse: np.ndarray
) -> tuple[float, tuple[int, int], float] | None:
    """The better way round of :func:`_best_shift` (``shift``: where ``detail``'s content
    lies in ``other``) with its :func:`_block_agreement`, or ``None`` when the coarse
    copies rule the pair out."""
    coarsely = max(_best_shift(coarse, other_coarse)[0], _best_shift(other_coarse, coarse)[0])
    if coarsely < _COARSE_CORRELATION:
        return None
    forward, shift = _best_shift(detail, other)
    backward, (dx, dy) = _best_shift(other, detail)
    if forward >= backward:
        return forward, shift, _block_agreement(detail, other, shift)
    return backward, (-dx, -dy), _block_agreement(other, detail, (dx, dy))


def _block_agreement(detail: np.ndarray, other: np.ndarray, shift: tuple[int, int]) -> float:
    """The median correlation of the 3x3 blocks of ``detail``'s centre with ``other`` at
    ``shift``: high where the whole overlap matches, low where one line does."""
    side = _SIDE - 2 * MAX_SHIFT
    block = side // 3
    x, y = MAX_SHIFT + shift[0], MAX_SHIFT + shift[1]

    def blocks(pixels: np.ndarray) -> np.ndarray:  # [9, block * block], row by row
        cut = pixels[: 3 * block, : 3 * block].reshape(3, block, 3, block)
        return cut.transpose(0, 2, 1, 3).reshape(9, -1)

    mine = _unit(blocks(detail[MAX_SHIFT:-MAX_SHIFT, MAX_SHIFT:-MAX_SHIFT]))
    theirs = _unit(blocks(other[y : y + side, x : x + side]))
    return float(np.median((mine * theirs).sum(axis=1)))


def shifted_copies(
    pictures: Pictures,
    splits: list[str] | None = None,
    correlation: float = SHIFTED_COPY_CORRELATION,
    candidates: int = CANDIDATES,
) -> list[dict]:
    """Pairs of images that are one picture, shifted by up to :data:`MAX_SHIFT` pixels
    (of the image brought to ``_SIDE`` pixels square), re-exposed or re-encoded.

    Args:
        pictures: The images, from :func:`read_pictures`.
        splits: Each image's split, to pair only images in different splits (the leaks);
            ``None`` pairs any two.
        correlation: The fine-detail correlation that makes a copy.
        candidates: How many images each image is matched with, both ways: those its
            centre is found best in (:attr:`Pictures.similarity`).

    Returns:
        ``[{"a", "b", "correlation", "shift"}]`` (``a`` and ``b`` index the images, ``a``
        the earlier; ``shift``: where ``a``'s content lies in ``b``, in ``_SIDE``
        pixels), the strongest first.
    """
    if len(pictures.details) < 2:
        return []
    # Each pair once, in the order first met (a dict keeps it: ties stay in that order).
    checked = dict.fromkeys(
        tuple(sorted((i, int(j))))
        for i, row in _nearest(pictures.similarity, splits, candidates)
        for j in row
    )
    _match_pairs(pictures, [pair for pair in checked if pair not in pictures.matched])
    found = []
    for a, b in checked:
        match = pictures.matched[a, b]
        if match is not None and match[0] >= correlation and match[2] >= _BLOCK_CORRELATION:
            found.append({"a": a, "b": b, "correlation": match[0], "shift": list(match[1])})
    return sorted(found, key=lambda pair: -pair["correlation"])


def copies_of(images: list[Path], among: list[Path]) -> list[tuple[int, int]]:
    """Which of ``images`` are shifted copies (:func:`shifted_copies`) of an image
    ``among`` others: the val images that overlap a training image, say.

    Returns:
        ``(i, j)`` for each copy found, ``images[i]`` of ``among[j]``, the strongest first.

    Raises:
        OSError: An image that cannot be read, naming it.
    """
    if not images or not among:
        return []
    pictures = read_pictures([*images, *among])
    found = shifted_copies(pictures, ["images"] * len(images) + ["among"] * len(among))
    # Only pairs across the two lists are found: one index is an image's, one among's.
    first = len(images)
    return [
        (a, b - first) if a < first else (b, a - first)
        for a, b in ((p["a"], p["b"]) for p in found)
    ]


def _match_pairs(pictures: Pictures, pairs: list[tuple[int, int]]) -> None:
    """Matches ``pairs`` into :attr:`Pictures.matched`, on :func:`_threads` threads."""
    details, coarse = pictures.details, pictures.coarse

    def match_all(some: list[tuple[int, int]]) -> None:
        for a, b in some:  # each pair is its own key: no two threads write one
            pictures.matched[a, b] = _match(details[a], details[b], coarse[a], coarse[b])

    threads = _threads(len(pairs))
    with ThreadPoolExecutor(threads) as pool:  # a share of the whole list each
        list(pool.map(match_all, [pairs[start::threads] for start in range(threads)]))


def _nearest(
    similarity: np.ndarray, splits: list[str] | None, candidates: int, block: int = 1024
) -> Iterator[tuple[int, np.ndarray]]:
    """Each image's index and its ``candidates`` most similar others (in other splits
    when ``splits`` is given), a block of rows at a time: a masked copy of the whole
    similarity and its argsort took four times its memory (576 MB beside 144 MB on
    6,000 generated images; 6.4 GB at 20,000)."""
    split = None if splits is None else np.asarray(splits)
    for start in range(0, len(similarity), block):
        rows = similarity[start : start + block].copy()
        if split is not None:
            rows[split[start : start + block, None] == split[None, :]] = -np.inf
        nearest = np.argsort(-rows, axis=1)[:, :candidates]
        for offset, row in enumerate(nearest):
            yield start + offset, row[np.isfinite(rows[offset, row])]
