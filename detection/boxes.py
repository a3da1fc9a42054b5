"""Box geometry shared by reports, releases and prediction: IoU and weighted boxes fusion.

Boxes are ``[N, 4]`` arrays of ``x1, y1, x2, y2`` pixels.
"""

from __future__ import annotations

import numpy as np


def areas(boxes: np.ndarray) -> np.ndarray:
    """The area of each box of ``boxes`` (``[N, 4]`` xyxy)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def intersection_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The area every box in ``a`` shares with every box in ``b`` (both ``[N, 4]`` xyxy)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    return np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` with every box in ``b`` (both ``[N, 4]`` xyxy)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    inter = intersection_matrix(a, b)
    return inter / np.maximum(areas(a)[:, None] + areas(b)[None, :] - inter, 1e-12)


def weighted_boxes_fusion(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    views: int,
    iou: float = 0.75,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuses the detections of several views of one image (Solovyev et al., "Weighted
    boxes fusion", 2021, arXiv:1910.13302).

    Per class, in descending score order, each box joins the cluster whose fused box it
    overlaps most above ``iou``, or starts a new one. A cluster's box is the
    score-weighted mean of its members; its score is their mean score times
    ``min(members, views) / views``, so a box that only some views found is trusted less.
    Unlike NMS, which keeps one view's box, the fused box averages every view's estimate
    of the extent.

    Args:
        boxes: ``[N, 4]`` xyxy boxes of all views, in one image's pixel coordinates.
        scores: ``[N]`` confidences.
        classes: ``[N]`` class indices.
        views: how many views the boxes came from.
        iou: the overlap above which a box joins a cluster.

    Returns:
        The fused boxes, scores and classes, highest score first.
    """
    fused_boxes, fused_scores, fused_classes = [], [], []
    for cls in np.unique(classes):
        mine = np.flatnonzero(classes == cls)
        mine = mine[np.argsort(-scores[mine], kind="stable")]
        cls_boxes, cls_scores = boxes[mine].astype(np.float64), scores[mine].astype(np.float64)
        clusters: list[list[int]] = []
        # The fused boxes so far and their areas, written in place: each view gives up to
        # the evaluation's 100 boxes, and a box's IoU with every cluster, computed inline
        # as :func:`iou_matrix` computes it (the same figures, bit for bit), made fusion
        # 1.8x faster than that call and a growing stack of boxes did.
        centres = np.empty((len(cls_boxes), 4))
        centre_areas = np.empty(len(cls_boxes))
        for i, box in enumerate(cls_boxes):
            made = len(clusters)
            area = (box[2] - box[0]) * (box[3] - box[1])
            best, overlap = -1, 0.0
            if made:
                others = centres[:made]
                inter = np.maximum(
                    np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0
                ) * np.maximum(
                    np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0
                )
                overlaps = inter / np.maximum(area + centre_areas[:made] - inter, 1e-12)
                best = int(overlaps.argmax())
                overlap = overlaps[best]
            if best >= 0 and overlap > iou:
                clusters[best].append(i)
                weights = cls_scores[clusters[best]]
                centre = weights @ cls_boxes[clusters[best]] / weights.sum()
                centres[best] = centre
                centre_areas[best] = (centre[2] - centre[0]) * (centre[3] - centre[1])
            else:
                clusters.append([i])
                centres[made] = box
                centre_areas[made] = area
        for members, centre in zip(clusters, centres[: len(clusters)]):
            mean = cls_scores[members].sum() / len(members)
            fused_scores.append(mean * min(len(members), views) / views)
            fused_boxes.append(centre)
            fused_classes.append(cls)
    if not fused_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int)
    order = np.argsort(-np.array(fused_scores), kind="stable")
    return (
        np.array(fused_boxes, np.float32)[order],
        np.array(fused_scores, np.float32)[order],
        np.array(fused_classes, int)[order],
    )


def merge_tiles(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    cut: np.ndarray,
    tiles: np.ndarray,
    ios: float = 0.5,
    touch: float = 0.0,
    join_ratio: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merges the detections of overlapping tiles of one image into the image's.

    Per class, in descending score order, a box is dropped when another kept box covers
    ``ios`` of the smaller of the two (intersection over the smaller area: the same
    defect seen whole by one tile and in part by its neighbour). Two boxes that were
    both cut by an inner edge of their tiles (``cut``) and overlap, or come within
    ``touch`` pixels of each other (the halves of a defect cut by the edge two tiles
    share without overlapping meet there), are one defect crossing the cut, cut twice:
    they become their union, with the higher score; the lower must score at least
    ``join_ratio`` times the higher (a faint box along an edge does not stretch a
    confident one).

    Args:
        boxes: ``[N, 4]`` xyxy in the image's pixels.
        scores: ``[N]``.
        classes: ``[N]`` class indices.
        cut: ``[N]`` bool: the box touches an edge of its tile inside the image.
        tiles: ``[N]`` the tile each box was found in. Boxes of one tile have been
            through NMS already and are never merged with each other.
        ios: Intersection over the smaller area at or above which a box is dropped.
        touch: How far apart two cut boxes may be and still be joined, in pixels.
        join_ratio: The least share of a kept box's score a box needs to be joined to it.

    Returns:
        The merged boxes, scores and classes, in descending score order.
    """
    order = np.argsort(-scores, kind="stable")
    cut = cut.astype(bool)
    merged = boxes.astype(float)  # a copy: kept boxes grow into unions
    seen_in: dict[int, set] = {}  # each kept box, and the tiles it has been found in
    for i in order:
        same = [
            k for k, found in seen_in.items() if classes[k] == classes[i] and tiles[i] not in found
        ]
        if same:
            others, box = merged[same], merged[i : i + 1]
            inter = intersection_matrix(others, box)[:, 0]
            covered = inter / np.maximum(np.minimum(areas(others), areas(box)), 1e-12)
            grown = others + np.array([-touch, -touch, touch, touch])
            near = intersection_matrix(grown, box)[:, 0] if touch else inter
            strong = scores[i] >= join_ratio * scores[same]
            joined = np.flatnonzero((near > 0) & cut[same] & cut[i] & strong)
            if len(joined):
                k = same[int(joined[np.argmax(covered[joined])])]
                merged[k, :2] = np.minimum(merged[k, :2], box[0, :2])
                merged[k, 2:] = np.maximum(merged[k, 2:], box[0, 2:])
                seen_in[k].add(tiles[i])
                continue
            if covered.max() >= ios:
                continue
        seen_in[int(i)] = {tiles[i]}
    keep = np.array(list(seen_in), dtype=int)
    return merged[keep], scores[keep], classes[keep]
