"""Report files of an evaluation: JSON, Markdown, CSV, PR curves, confusion matrix,
example images with ground truth and predictions in two colours."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from converters.folders import write_folder
from detection.bootstrap import format_interval
from detection.boxes import iou_matrix
from detection.cocoeval import CocoResult, difficult_boxes, evaluate
from detection.console import counted
from detection.screening import format_share, screening
from detection.versions import package_versions

GT_COLOUR = (60, 200, 60)  # BGR green
PRED_COLOUR = (40, 40, 230)  # BGR red


def _clean(value: Any) -> Any:
    """JSON has no NaN: undefined metrics are written as null; numpy scalars become Python's."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 12)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _fmt(value: float | None, digits: int = 3) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def _stat(value: float | None) -> str:
    """One of pycocotools' summary figures, where -1 means no ground truth to score
    (no box of that COCO size, say): n/a, as a person reads it. report.json keeps -1."""
    return "n/a" if value is not None and value < 0 else _fmt(value)


def _xyxy(boxes: list[list[float]]) -> np.ndarray:
    array = np.array(boxes, dtype=float).reshape(-1, 4)
    with np.errstate(over="ignore"):  # a corner past any float is infinite: IoU 0 with it
        array[:, 2:] += array[:, :2]
    return array


def confusion_matrix(
    gt: dict, results: list[dict], conf: float = 0.25, iou: float = 0.5
) -> np.ndarray:
    """Rows: true class then background; columns: predicted class then background.

    Predictions at or above ``conf`` are matched to ground truth one to one, class
    agnostic, highest IoU first (at least ``iou``). Unmatched ground truth counts as
    predicted background (a miss); an unmatched prediction as true background.
    """
    category_ids = [c["id"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    index = {cid: i for i, cid in enumerate(category_ids)}
    k = len(category_ids)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    gt_by_image: dict[int, list] = {}
    for ann in gt["annotations"]:
        gt_by_image.setdefault(ann["image_id"], []).append(ann)
    dt_by_image: dict[int, list] = {}
    for det in results:
        if det["score"] >= conf:
            dt_by_image.setdefault(det["image_id"], []).append(det)
    for image in gt["images"]:
        truths = gt_by_image.get(image["id"], [])
        preds = dt_by_image.get(image["id"], [])
        ious = iou_matrix(_xyxy([t["bbox"] for t in truths]), _xyxy([p["bbox"] for p in preds]))
        matched_t, matched_p = set(), set()
        for flat in np.argsort(-ious, axis=None, kind="stable"):
            ti, pi = np.unravel_index(flat, ious.shape)
            if ious[ti, pi] < iou:
                break
            if ti in matched_t or pi in matched_p:
                continue
            matched_t.add(ti)
            matched_p.add(pi)
            matrix[index[truths[ti]["category_id"]], index[preds[pi]["category_id"]]] += 1
        for ti, truth in enumerate(truths):
            if ti not in matched_t:
                matrix[index[truth["category_id"]], k] += 1
        for pi, pred in enumerate(preds):
            if pi not in matched_p:
                matrix[k, index[pred["category_id"]]] += 1
    return matrix


def plot_pr_curves(result: CocoResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5), dpi=120)
    for cls in result.classes:
        curve = np.array(result.pr_curves[cls.name])
        if (curve < 0).all():
            continue
        axis.plot(
            result.recall_thresholds,
            np.clip(curve, 0, None),
            label=f"{cls.name} AP50 {_fmt(cls.ap50)}",
        )
    axis.set_xlabel("recall")
    axis.set_ylabel("precision (interpolated, pycocotools)")
    axis.set_title(f"Precision-recall at IoU 0.50 - mAP50 {_fmt(result.stats['AP50'])}")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_confusion_matrix(
    matrix: np.ndarray, names: list[str], path: Path, background: bool = True
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [*names, "background"] if background else list(names)
    figure, axis = plt.subplots(figsize=(1.1 * len(labels) + 2, 1.0 * len(labels) + 1.5), dpi=120)
    axis.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        axis.text(
            col,
            row,
            str(value),
            ha="center",
            va="center",
            color="white" if value > matrix.max() / 2 else "black",
            fontsize=8,
        )
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(
        "Confusion matrix (conf >= 0.25, IoU >= 0.5)" if background else "Confusion matrix"
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def draw_examples(
    gt: dict, results: list[dict], image_dir: Path, out: Path, count: int = 6, conf: float = 0.25
) -> list[str]:
    """Draws ground truth (green) and predictions (red) on the first ``count`` images
    with ground truth, by image id. Returns the files written."""
    import cv2

    from converters.pixels import read_image, write_image

    out.mkdir(parents=True, exist_ok=True)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    with_gt = sorted({a["image_id"] for a in gt["annotations"]})[:count]
    images = {im["id"]: im for im in gt["images"]}
    written = []
    for image_id in with_gt:
        entry = images[image_id]
        try:
            pixels = read_image(image_dir / entry["file_name"])
        except OSError:  # an example fewer; the evaluation read every image already
            continue
        scale = max(1, round(400 / max(pixels.shape[:2])))
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        for colour, boxes in (
            (
                GT_COLOUR,
                [
                    (a["bbox"], names[a["category_id"]])
                    for a in gt["annotations"]
                    if a["image_id"] == image_id
                ],
            ),
            (
                PRED_COLOUR,
                [
                    (d["bbox"], f"{names[d['category_id']]} {d['score']:.2f}")
                    for d in results
                    if d["image_id"] == image_id and d["score"] >= conf
                ],
            ),
        ):
            for (x, y, w, h), text in boxes:
                p1, p2 = (
                    _drawn_at(x, y, pixels.shape, scale),
                    _drawn_at(x + w, y + h, pixels.shape, scale),
                )
                cv2.rectangle(pixels, p1, p2, colour, 2)
                cv2.putText(
                    pixels,
                    text,
                    (p1[0] + 2, max(p1[1] - 4, 12)),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.45,
                    colour,
                    1,
                    cv2.LINE_AA,
                )
        target = out / f"{Path(entry['file_name']).stem}.jpg"
        write_image(target, pixels)
        written.append(target.name)
    return written


REPORT_MARKER = "report.json"  # what makes a folder a report (evaluate's or compare's)


def write_report(
    out: Path,
    result: CocoResult,
    gt: dict,
    results: list[dict],
    meta: dict,
    ultralytics_metrics: dict | None = None,
    image_dir: Path | None = None,
    replicates: int = 1000,
    seed: int = 0,
) -> dict:
    """Writes report.json, report.md, per_class.csv, pr_curves.png, confusion_matrix.png,
    errors.png, examples/ and errors/ into ``out``, the folder whole (an earlier report's
    examples never stay behind among these); returns the report dict.

    ``replicates`` and ``seed`` drive the bootstrap intervals (0 replicates: none).

    Raises:
        ConversionError: ``out`` holds files that are not a report's.
    """
    arguments = (result, gt, results, meta, ultralytics_metrics, image_dir, replicates, seed)
    return write_folder(Path(out), lambda folder: _write_report(folder, *arguments), REPORT_MARKER)


def _write_report(
    out: Path,
    result: CocoResult,
    gt: dict,
    results: list[dict],
    meta: dict,
    ultralytics_metrics: dict | None,
    image_dir: Path | None,
    replicates: int,
    seed: int,
) -> dict:
    from detection.explain import explain

    out.mkdir(parents=True)
    names = [c.name for c in result.classes]
    matrix = confusion_matrix(gt, results)
    explained = explain(gt, results, replicates, seed)
    overall = explained["figures"]
    per_class = [
        {**asdict(c), **{k: v for k, v in overall["per_class"][c.name].items() if "_ci" in k}}
        for c in result.classes
    ]
    report = {
        **meta,
        "mAP50": result.stats["AP50"],
        "mAP50_ci": overall["mAP50_ci"],
        "mAP50-95": result.stats["AP50:95"],
        "mAP50-95_ci": overall["mAP50-95_ci"],
        "bootstrap": explained["bootstrap"],
        "metrics": result.stats,
        "per_class": per_class,
        "errors": explained["errors"],
        "breakdowns": explained["breakdowns"],
        "confusion_matrix": {
            "labels": [*names, "background"],
            "rows": "true",
            "columns": "predicted",
            "matrix": matrix.tolist(),
        },
        "ultralytics": ultralytics_metrics,
        "difficult_ignored": difficult_ignored(gt, results),
        "screening": screening(
            gt,
            results,
            {
                c.category_id: c.best_f1_confidence
                for c in result.classes
                if not math.isnan(c.best_f1_confidence)
            },
        ),
        "software": package_versions(),
    }
    (out / "results.json").write_text(json.dumps(results) + "\n")
    (out / REPORT_MARKER).write_text(json.dumps(_clean(report), indent=2) + "\n")
    fields = [
        "name",
        "category_id",
        "ground_truth",
        "detections",
        "ap50",
        "ap50_95",
        "ap75",
        "precision",
        "recall",
        "f1",
        "best_f1_confidence",
    ]
    with open(out / "per_class.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for cls in result.classes:
            row = asdict(cls)
            writer.writerow(
                {
                    f: (
                        ""
                        if isinstance(row[f], float) and math.isnan(row[f])
                        else (f"{row[f]:.6f}" if isinstance(row[f], float) else row[f])
                    )
                    for f in fields
                }
            )
    plot_pr_curves(result, out / "pr_curves.png")
    plot_confusion_matrix(matrix, names, out / "confusion_matrix.png")
    plot_errors(report["errors"], out / "errors.png")
    examples = draw_examples(gt, results, image_dir, out / "examples") if image_dir else []
    if image_dir:
        draw_error_examples(gt, report["errors"]["examples"], image_dir, out / "errors")
    (out / "report.md").write_text(_markdown(report, result, examples))
    return report


def difficult_ignored(gt: dict, results: list[dict]) -> dict | None:
    """The figures with the boxes marked difficult ignored (PASCAL VOC's way), beside the
    main ones that count them (pycocotools' and ultralytics' way); None without any.

    A published figure may count them, ignore them, or come from labels that left them
    out (ultralytics' own VOC conversion drops them; a detection on one is then a false
    positive), so an evaluator comparing with one needs to know what difference it makes.
    """
    boxes = difficult_boxes(gt)
    if not boxes:
        return None
    scored = evaluate(gt, results, ignore_difficult=True, sizes=False)  # the "all" figures
    return {
        "boxes": boxes,
        "mAP50": scored.stats["AP50"],
        "mAP50-95": scored.stats["AP50:95"],
        "per_class": {
            c.name: {"ground_truth": c.ground_truth, "ap50": c.ap50, "ap50_95": c.ap50_95}
            for c in scored.classes
        },
    }


def plot_errors(errors: dict, path: Path) -> None:
    """TIDE's bars: the AP50 each error type costs, main errors and the two special ones."""
    import matplotlib.pyplot as plt

    from detection.tide import ERROR_TYPES

    labels = [*ERROR_TYPES, "false_positives", "false_negatives"]
    values = [errors["dAP"][k] for k in labels]
    colours = ["#c0392b"] * len(ERROR_TYPES) + ["#7f8c8d"] * 2
    figure, axis = plt.subplots(figsize=(7, 3.8))
    lengths = [0.0 if math.isnan(v) else v for v in values]
    bars = axis.barh(labels[::-1], lengths[::-1], color=colours[::-1])
    axis.bar_label(bars, labels=[_fmt(v, 2) for v in values[::-1]], padding=3)
    axis.set_xlabel("dAP50 (points): AP50 recovered by fixing every error of the type")
    axis.set_title(f"TIDE error decomposition (AP50 {errors['ap50']:.2f})")
    axis.set_xlim(0, max(max(lengths), 1) * 1.2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _drawn_at(x: float, y: float, shape: tuple[int, ...], scale: int) -> tuple[int, int]:
    """A box corner in pixels of an image drawn at ``scale``, held within a pixel of its
    edges: a results file may put a box far outside the image (a finite 1e308 and its
    width add to infinity, which no pixel position holds)."""
    height, width = shape[:2]
    return int(min(max(x * scale, -1), width)), int(min(max(y * scale, -1), height))


def draw_error_examples(gt: dict, examples: dict, image_dir: Path, out: Path) -> dict:
    """Each error type's example images (``errors/<type>/``): the image's ground truth in
    green and the erring detection in red. Returns the files per type."""
    written = {}
    for kind, chosen in examples.items():
        written[kind] = []
        for example in chosen:
            image_id = example["image_id"]
            subset = {
                **gt,
                "images": [im for im in gt["images"] if im["id"] == image_id],
                "annotations": [a for a in gt["annotations"] if a["image_id"] == image_id],
            }
            detections = [example["detection"]] if example["detection"] else []
            written[kind] += draw_examples(subset, detections, image_dir, out / kind, conf=0.0)
    return written


def settings_sentence(report: dict) -> str:
    """How the predictions were made, where this report made them (not for a results
    file scored as it is)."""
    settings = report.get("prediction_settings")
    if not settings:
        return ""
    sentence = f" Predictions at confidence >= {settings['conf']}, NMS IoU {settings['nms_iou']}"
    # Reports made before the border record none (docs/benchmarks.md, bench-border).
    border = settings.get("border")
    sentence += f", each image bordered by {border} grey pixels." if border else "."
    tta = settings.get("tta")
    if tta:
        sentence += (
            f" Test-time augmentation: {len(tta['flips'])} flips ({', '.join(tta['flips'])}), "
            f"fused by weighted boxes fusion at IoU {tta['fusion_iou']}."
        )
    tile = settings.get("tile")
    if tile:
        sentence += (
            f" Images larger than {tile['size']} px detected in tiles of {tile['size']} px "
            f"overlapping by {tile['overlap']:g} of a tile, their boxes merged (`--tile`"
            + (
                f"; a cut part joined to another only if it scores {tile['join_ratio']:g} of "
                "its score or more)."
                if "join_ratio" in tile
                else ")."
            )
        )
    return sentence


def where_computed(speed: dict) -> str:
    """The device a :func:`detection.evaluate.prediction_speed` was timed on, in words."""
    if speed["device"] != "cpu":
        return f"{speed['device']} ({speed.get('gpu')})"
    return f"CPU, {speed['threads']} threads" + (f", {speed['cpu']}" if speed.get("cpu") else "")


def speed_sentence(speed: dict | None) -> str | None:
    """How fast the report's predictions were made here, in words; None for a results
    file, whose speed is not known."""
    if not speed:
        return None
    rate = speed["images_per_second"]
    return (
        f"{speed['images']} images in {speed['seconds']:.1f} s, "
        + (f"{rate:.1f} images/s" if rate else "too fast to time")
        + f" end to end (reading, letterbox, model, NMS; {where_computed(speed)}), timed "
        "once beside the evaluation; `make bench-predict` times paths side by side, repeated"
    )


# Detectron2 and MMDetection score down to 0.05, ultralytics' val to 0.001: results that
# stop well above that (predict's default 0.25) lose the low-precision end of each PR curve.
FULL_RESULTS_SCORE = 0.05
CUT_SHORT_SCORE = 0.1


def results_cut_short(lowest_score: float | None) -> str | None:
    """Why a results file's mAP is low, when its detections stop at a high confidence
    (``predict``'s default 0.25 is one): said, since it is not the detector's figure."""
    if lowest_score is None or lowest_score <= CUT_SHORT_SCORE:
        return None
    return (
        f"results stop at confidence {lowest_score:.3g}, so each class's precision-recall "
        "curve ends early and mAP is lower than the detector's: score results down to "
        f"{FULL_RESULTS_SCORE} or lower (`defects predict --conf 0.001`, as `evaluate "
        "--weights` predicts)"
    )


# A detector's box may stick out of its image by a pixel or two; a [x1, y1, x2, y2] box read
# as [x, y, width, height] sticks out wherever x1 + x2 passes the width: about half of them.
PAST_THE_IMAGE = 0.02  # of the image's side
PAST_THE_IMAGE_SHARE = 0.1  # of the results, before a report says so


def past_the_image(results: list[dict], gt: dict) -> dict:
    """How many of ``results`` (COCO ``[x, y, width, height]``) reach past their image's
    right or bottom edge by more than 2 % of its side (images whose size ``gt`` gives)."""
    sizes = {
        image["id"]: (image["width"], image["height"])
        for image in gt["images"]
        if isinstance(image.get("width"), int | float)
        and isinstance(image.get("height"), int | float)
    }
    past = 0
    for result in results:
        if result["image_id"] in sizes:
            width, height = sizes[result["image_id"]]
            x, y, w, h = result["bbox"]
            past += x + w > width * (1 + PAST_THE_IMAGE) or y + h > height * (1 + PAST_THE_IMAGE)
    return {"results": past, "of": len(results)}


def results_past_the_image(past: dict | None) -> str | None:
    """Why a results file's mAP is near nothing, when many of its boxes reach past their
    image: most likely ``[x1, y1, x2, y2]`` given where COCO wants ``[x, y, width,
    height]``, which pycocotools scores without a word."""
    if not past or past["results"] <= PAST_THE_IMAGE_SHARE * past["of"]:
        return None
    return (
        f"{past['results']} of {past['of']} results reach past their image, so their boxes "
        "are most likely [x1, y1, x2, y2]: COCO results give [x, y, width, height] (x2 - x1, "
        "y2 - y1), and scored as they are nearly every box is missed"
    )


# A detector scored down to a low confidence answers on nearly every image with a defect;
# results silent on many of them were most likely made on a subset or another folder.
UNANSWERED_SHARE = 0.1  # of the images with boxes, before a report says so


def images_unanswered(results: list[dict], gt: dict) -> dict:
    """How many of ``gt``'s images with a (non-crowd) box no result names, and their
    boxes: pycocotools scores each as detecting nothing there."""
    answered = {result["image_id"] for result in results}
    boxes = Counter(a["image_id"] for a in gt["annotations"] if not a.get("iscrowd", 0))
    unanswered = [image_id for image_id in boxes if image_id not in answered]
    return {
        "images": len(unanswered),
        "of": len(boxes),
        "boxes": sum(boxes[image_id] for image_id in unanswered),
    }


def results_unanswered(unanswered: dict | None) -> str | None:
    """Why a results file's mAP is low, when it names none of many images with boxes:
    results of a subset of the split, or of another folder, score as misses there."""
    if not unanswered or unanswered["images"] <= UNANSWERED_SHARE * unanswered["of"]:
        return None
    return (
        f"no result names {unanswered['images']} of the {unanswered['of']} images with "
        f"boxes, so their {unanswered['boxes']} boxes are scored as missed; if those images "
        "were not predicted (results of a subset, or of another folder), predict every "
        "image of the split"
    )


def results_left_out(left_out: list[tuple[str, str]]) -> dict:
    """How many images of other splits results were left out on
    (:func:`detection.evaluate.read_results`: each as its split and its file name there),
    and those splits."""
    return {
        "images": len(set(left_out)),
        "splits": sorted({split for split, _ in left_out}),
    }


def results_on_other_splits(left_out: dict | None) -> str | None:
    """What a report says of results left out because they name images of the dataset's
    other splits: the results were made on more than the split scored (a whole folder
    predicted), which is fine, but the report scores that split alone."""
    if not left_out or not left_out["images"]:
        return None
    splits = " and ".join(left_out["splits"])
    plural = "s" if len(left_out["splits"]) > 1 else ""
    return (
        f"results on {left_out['images']} images of the {splits} split{plural} are left "
        "out: only the images of the split scored count"
    )


def results_warnings(figures: dict, model: str | None = None) -> list[tuple[str, str]]:
    """What a report and the console warn of a results file's figures (``lowest_score``,
    ``past_the_image``, ``unanswered``, ``other_splits``), as (label, sentence); with
    ``model``, the label names it (``b, boxes past the image``)."""
    found = [
        ("Cut short", results_cut_short(figures.get("lowest_score"))),
        ("Boxes past the image", results_past_the_image(figures.get("past_the_image"))),
        ("Images without results", results_unanswered(figures.get("unanswered"))),
        ("Results on other splits", results_on_other_splits(figures.get("other_splits"))),
    ]
    return [
        (f"{model}, {label.lower()}" if model else label, sentence)
        for label, sentence in found
        if sentence
    ]


def unscored_sentence(missing: list[str], classes: int, split: str | None = None) -> str | None:
    """What a report says of the ``missing`` classes (of ``classes``), those with no
    ground-truth box (in ``split``), or None when there are none: pycocotools leaves such
    a class out of every mean, so the mAP is over fewer classes than the model's."""
    if not missing:
        return None
    return (
        f"mAP averages {classes - len(missing)} of {classes} classes: {', '.join(missing)} "
        f"{'has' if len(missing) == 1 else 'have'} no ground-truth box"
        f"{f' in `{split}`' if split else ''}, and pycocotools leaves a class without one "
        "out of every mean; compare these figures only with figures over the same classes"
    )


def figures_unscored(per_class: dict[str, dict], split: str | None = None) -> str | None:
    """:func:`unscored_sentence` of per-class figures (``{name: {"ap50": ...}}``, a
    comparison's or a card's): the classes whose AP is undefined (no ground-truth box)."""
    missing = [name for name, figures in per_class.items() if figures["ap50"] is None]
    return unscored_sentence(missing, len(per_class), split)


def report_unscored(report: dict) -> str | None:
    """:func:`unscored_sentence` of an evaluation's report (its ``per_class``)."""
    missing = [c["name"] for c in report["per_class"] if not c["ground_truth"]]
    return unscored_sentence(missing, len(report["per_class"]), report.get("split"))


def not_in_model_sentence(unknown: dict[str, int] | None) -> str | None:
    """What a report says of the ground truth's classes the model has none of (a report's
    ``classes_not_in_model``: name -> boxes), or None."""
    if not unknown:
        return None
    listed = ", ".join(f"{name} ({counted(n, 'box', 'boxes')})" for name, n in unknown.items())
    one = len(unknown) == 1
    return (
        f"{listed} {'is not a class' if one else 'are not classes'} of the model, so "
        f"{'its' if one else 'their'} boxes all count as missed (AP 0) and lower the mAP; "
        "score a model trained on them, or convert the data without them (--classes)"
    )


# What "not seen in training" leaves unsaid where --unseen was not given.
OVERLAPS_NOT_LOOKED_FOR = (
    "Images that overlap a training image (crops of the same picture) are not looked for "
    "here: `--unseen` finds them and leaves them out."
)


def seen_sentence(
    seen: dict | None, model: str = "the model", overlaps_unchecked: bool = False
) -> tuple[str, str] | None:
    """What a report says of ``seen`` (:func:`detection.splits.seen_in_training`), as a
    label and its sentence, of ``model``; None for results scored without their weights.
    With ``overlaps_unchecked`` (a report made without ``--unseen``), "not seen" says
    that it was checked by content alone: a crop overlapping a training image is no copy
    of it (54 of NEU-DET's seeded val images are such crops), and ``--unseen`` is what
    finds those."""
    if not seen:
        return None
    if seen.get("record") is None:
        return (
            "Seen in training",
            f"not known: {model} has no record of its training images (a released "
            "model's card, a run's trained_on.json, or a data.yaml its checkpoint names "
            "that is still there).",
        )
    if seen["images"] == 0:
        unknown = "" if seen["complete"] else ", though it may have started from weights that were"
        return (
            "Not seen in training",
            f"none of these {seen['of']} images is among the training images of {model} "
            f"({seen['record']}){unknown}."
            + (f" {OVERLAPS_NOT_LOOKED_FOR}" if overlaps_unchecked else ""),
        )
    least = "" if seen["complete"] else "at least "
    unseen = seen.get("unseen")
    return (
        "Seen in training",
        f"{model} was trained on {least}{seen['images']} of these {seen['of']} images "
        f"({seen['record']}; e.g. {', '.join(seen['examples'])}), so the figures here "
        "overstate how it does on images it has not seen"
        + (
            f" (on the other {unseen['images']} alone: mAP50 {_fmt(unseen['mAP50'])}, "
            f"mAP50:95 {_fmt(unseen['mAP50-95'])})"
            if unseen
            else ""
        )
        + ": score it on images it was not trained on.",
    )


def unseen_sentence(report: dict) -> str | None:
    """What an evaluation or comparison made with ``--unseen`` says of the images it left
    out (:func:`detection.evaluate.unseen_only`)."""
    unseen = report.get("unseen_only")
    if not unseen:
        return None
    overlapping = {pair["image"] for pair in unseen["overlapping"]}
    examples = [f"{pair['image']} ~ {pair['training_image']}" for pair in unseen["overlapping"]]
    incomplete = unseen["incomplete"]
    # A comparison's report lists its models; an evaluation's is of one.
    nobody, somebody, trainer = (
        ("no model here was", "one", "a model") if "models" in report else
        ("the model was not", "it", "it")
    )  # fmt: skip
    return (
        f"scored on the {unseen['images']} of these {unseen['of']} images that {nobody} "
        f"trained on, nor overlap an image {somebody} was trained on; left out: "
        f"{counted(len(unseen['trained_on']), 'image')} {trainer} was trained on"
        + (f" (e.g. {', '.join(unseen['trained_on'][:3])})" if unseen["trained_on"] else "")
        + (
            f", {len(overlapping)} that overlap{'s' if len(overlapping) == 1 else ''} one (a "
            f"crop of the same picture; e.g. {', '.join(examples[:3])})"
            if overlapping
            else ", none that overlaps one"
        )
        + (
            f"; {', '.join(incomplete)} started from weights without a record of their "
            "training images, which may have seen others"
            if incomplete
            else ""
        )
    )


def ground_truth_edited_sentence(edited: dict | None) -> str | None:
    """What a report says of a converter output whose label files and COCO file no longer
    agree, edited since the conversion, and which of them it scored against
    (:func:`detection.evaluate.split_ground_truth`)."""
    if not edited:
        return None
    files = f"{edited['files']} of the {edited['of']} label files of this split"
    examples = f"(e.g. {', '.join(edited['examples'])})"
    if edited["read"] == "annotations":
        return (
            f"{edited['coco']} was edited since the conversion, and {files} still give "
            f"the boxes it had {examples}: the COCO file as edited is the ground truth "
            "here, while ultralytics trains and validates on the labels, without its edits"
        )
    both = edited.get("edited") == ["annotations", "labels"]
    return (
        f"{files} no longer give the boxes of {edited['coco']} {examples}: "
        + ("both were edited" if both else "edited")
        + " since the conversion, so the labels are the ground truth here, as ultralytics "
        "trains and validates on them (a YOLO label has no difficult flag)"
    )


def _seen_lines(report: dict) -> list[str]:
    seen = report.get("seen_in_training")
    said = seen_sentence(seen, overlaps_unchecked="unseen_only" not in report)
    return ["", f"**{said[0]}:** {said[1]}"] if said else []


def _markdown(report: dict, result: CocoResult, examples: list[str]) -> str:
    s = result.stats
    lines = [
        f"# Detection report: {report.get('name', '')}".rstrip(),
        "",
        f"Split `{report.get('split', '?')}`, {report.get('images', '?')} images"
        + (f", image size {report['imgsz']}" if report.get("imgsz") else "")
        + ". Scored with pycocotools COCOeval (bbox), 100 detections per image."
        + settings_sentence(report),
        *(["", f"**Unseen only:** {said}."] if (said := unseen_sentence(report)) else []),
        *_seen_lines(report),
        *(
            ["", f"**Ground truth edited:** {ground_truth_edited_sentence(edited)}."]
            if (edited := report.get("ground_truth_edited"))
            else []
        ),
        *(
            ["", f"**Off the training scale:** {report['off_scale']['sentence']}"]
            if report.get("off_scale")
            else []
        ),
        "",
        f"**mAP50:95 {_fmt(s['AP50:95'])} | mAP50 {_fmt(s['AP50'])} | mAP75 {_fmt(s['AP75'])}** "
        f"| AP small/medium/large {_stat(s['AP_small'])}/{_stat(s['AP_medium'])}/"
        f"{_stat(s['AP_large'])} "
        f"| AR100 {_fmt(s['AR100'])}",
        *(
            ["", f"**Classes not scored:** {unscored}."]
            if (unscored := report_unscored(report))
            else []
        ),
        *(
            ["", f"**Classes the model lacks:** {unknown}."]
            if (unknown := not_in_model_sentence(report.get("classes_not_in_model")))
            else []
        ),
        "",
        "| class | GT | AP50 | AP50:95 | AP75 | P | R | F1 | conf at best F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result.classes:
        lines.append(
            f"| {c.name} | {c.ground_truth} | {_fmt(c.ap50)} | {_fmt(c.ap50_95)} | "
            f"{_fmt(c.ap75)} | {_fmt(c.precision)} | {_fmt(c.recall)} | {_fmt(c.f1)} | "
            f"{_fmt(c.best_f1_confidence, 2)} |"
        )
    lines += [
        "",
        "P, R and F1 at each class's confidence of best F1 (its operating point)."
        + (
            " To detect at these: `defects predict IMAGES --weights WEIGHTS --conf "
            "report.json` (this file; chosen on this split, so optimistic on it)."
            if report.get("weights")
            else ""
        ),
    ]
    speed = speed_sentence(report.get("speed"))
    lines += ["", f"**Speed here:** {speed}."] if speed else []
    for label, sentence in results_warnings(report):
        lines += ["", f"**{label}:** {sentence}."]
    lines += _explained_markdown(report)
    lines += _screening_markdown(report.get("screening"))
    ignored = report.get("difficult_ignored")
    if ignored:
        lines += [
            "",
            "## With the boxes marked difficult ignored (PASCAL VOC's way)",
            "",
            f"The figures above count the {ignored['boxes']} boxes marked difficult like any "
            "other, as pycocotools and ultralytics do. Ignored, as PASCAL VOC scores (a "
            "detection on one is neither right nor wrong, and missing one costs nothing; "
            "labels that leave them out instead count a detection on one as a false "
            "positive): "
            f"**mAP50 {_fmt(ignored['mAP50'])} | mAP50:95 {_fmt(ignored['mAP50-95'])}**; "
            "per class AP50 "
            + ", ".join(f"{n} {_fmt(c['ap50'])}" for n, c in ignored["per_class"].items())
            + ".",
        ]
    ultra = report.get("ultralytics")
    if report.get("ultralytics_not_run"):
        lines += [
            "",
            "## Ultralytics' own validation of the same weights and split",
            "",
            report["ultralytics_not_run"][0].upper() + report["ultralytics_not_run"][1:] + ".",
        ]
    if ultra:
        lines += [
            "",
            "## Ultralytics' own validation of the same weights and split",
            "",
            f"mAP50 {_fmt(ultra['mAP50'])} (pycocotools {_fmt(s['AP50'])}, difference "
            f"{_fmt(ultra['mAP50'] - s['AP50'], 4)}); mAP50:95 {_fmt(ultra['mAP50-95'])} "
            f"(pycocotools {_fmt(s['AP50:95'])}, difference "
            f"{_fmt(ultra['mAP50-95'] - s['AP50:95'], 4)}).",
            "",
            ultra["why_different"],
        ]
    lines += [
        "",
        "Files: `report.json`, `per_class.csv`, `results.json` (COCO results), "
        "`pr_curves.png`, `confusion_matrix.png`, `errors.png`"
        + (
            ", `examples/` and `errors/<type>/` (ground truth green, predictions red)."
            if examples
            else "."
        ),
    ]
    return "\n".join(lines) + "\n"


def _screening_markdown(screened: dict | None) -> list[str]:
    """Image-level screening (:func:`detection.screening.screening`) as Markdown."""
    if not screened or not screened["images_with_defects"] + screened["images_without_defects"]:
        return []
    without = screened["images_without_defects"]
    lines = [
        "",
        "## Image-level screening: is there a defect?",
        "",
        "An image is flagged when any of its detections reaches its class's confidence. "
        "mAP scores boxes; on a line the first decision is per image, and flagged images of "
        "good steel (false alarms) never show in mAP.",
        "",
        "| rule | confidence | images with defects flagged (recall) | the missed hold | "
        "defect-free images flagged (false alarms) |",
        "|---|---:|---:|---|---:|",
    ]
    rules = screened["rules"] + screened["at_false_alarm_rates"]
    for rule in rules:
        confidence = _fmt(rule["confidence"]) if "confidence" in rule else "each class's best F1"
        missed = ", ".join(f"{n} {k}" for n, k in rule["missed_holding"].items() if k) or "-"
        lines.append(
            f"| {rule['rule']} | {confidence} | {format_share(rule['with_defects'])} | {missed} | "
            f"{format_share(rule['without_defects'])} |"
        )
    lines.append("")
    first = screened["rules"][0]
    if first["missed"]:
        shown = ", ".join(f"`{name}`" for name in first["missed"][:8])
        more = len(first["missed"]) - 8
        lines += [
            f"Missed at {_fmt(first['confidence'], 2)}: {shown}"
            + (f" and {more} more" if more > 0 else "")
            + " (every rule's missed images and false alarms by name: `report.json`, "
            "`screening`).",
            "",
        ]
    if without:
        lines.append(
            f"AUROC {_fmt(screened['auroc'])} (each image scored by its most confident "
            "detection). Intervals: 95% Wilson. Each class's best F1, and the confidences "
            "for at most 1% or 5% false alarms, are chosen on these images, so optimistic "
            "on them."
        )
    else:
        lines.append(
            "Intervals: 95% Wilson. No image here is free of defects, so how often the model "
            "flags good steel is not measured: add images of defect-free steel to the "
            "split (`defects convert --unlabeled-as-background` keeps images without an "
            "annotation as such) to measure it."
        )
    return lines


def _explained_markdown(report: dict) -> list[str]:
    """The report's intervals, TIDE errors and breakdowns as Markdown."""
    from detection.tide import ERROR_TYPES

    boot = report["bootstrap"]
    if boot["replicates"]:
        lines = [
            "",
            f"## How sure: {boot['level']:.0%} bootstrap intervals",
            "",
            f"{boot['replicates']} replicates over images, seed {boot['seed']}: mAP50 "
            f"{_fmt(report['mAP50'])} {format_interval(report['mAP50_ci'], 3)}, mAP50:95 "
            f"{_fmt(report['mAP50-95'])} {format_interval(report['mAP50-95_ci'], 3)}.",
            "",
            "| class | AP50 | 95% interval | AP50:95 | 95% interval |",
            "|---|---:|---|---:|---|",
        ]
        for c in report["per_class"]:
            lines.append(
                f"| {c['name']} | {_fmt(c['ap50'])} | {format_interval(c.get('ap50_ci'), 3)} | "
                f"{_fmt(c['ap50_95'])} | {format_interval(c.get('ap50_95_ci'), 3)} |"
            )
    else:  # a table of n/a said nothing
        lines = [
            "",
            "## How sure",
            "",
            "No intervals: this evaluation drew no bootstrap replicates (`--bootstrap 0`); "
            "with the default 1,000, each figure gets its 95% interval over images.",
        ]
    errors = report["errors"]
    scored = [c["name"] for c in report["per_class"] if c["ground_truth"]]
    lines += [
        "",
        "## Why it falls short: TIDE errors (AP50 points)",
        "",
        f"AP50 {errors['ap50']:.2f}. Fixing every error of one type would add (`errors.png`, "
        "examples in `errors/<type>/`):",
        "",
        "| error | count | dAP50 overall | " + " | ".join(f"dAP50 {n}" for n in scored) + " |",
        "|---|---:|---:|" + "---:|" * len(scored),
    ]
    rows = [
        f"| {kind} | {errors['counts'].get(kind, '')} | {_fmt(errors['dAP'][kind], 2)} | "
        + " | ".join(_fmt(errors["per_class"][kind].get(n), 2) for n in scored)
        + " |"
        for kind in (*ERROR_TYPES, "false_positives", "false_negatives")
    ]
    lines += [
        *rows,
        "",
        "Classification: the box is right, the class is not; localisation: the class is "
        "right, IoU 0.1-0.5; both: neither; duplicate: a second detection of a found box; "
        "background: nothing there (IoU < 0.1); missed: a box no detection came near. "
        "False positives / false negatives: perfect precision / perfect recall."
        + (
            " n/a: the fix leaves no ground truth to score (every box of the class missed)."
            if any("| n/a" in row for row in rows)
            else ""
        ),
        "",
        "## Breakdowns",
        "",
    ]
    if boot["replicates"]:
        lines += [
            "| subset | images | boxes | mAP50 | 95% interval | mAP50:95 | 95% interval | what |",
            "|---|---:|---:|---:|---|---:|---|---|",
        ]
    else:  # no replicates: no interval columns of n/a
        lines += [
            "| subset | images | boxes | mAP50 | mAP50:95 | what |",
            "|---|---:|---:|---:|---:|---|",
        ]
    for name, figures in report["breakdowns"].items():
        cells = [_fmt(figures["mAP50"]), _fmt(figures["mAP50-95"])]
        if boot["replicates"]:
            cells[0] += f" | {format_interval(figures.get('mAP50_ci'), 3)}"
            cells[1] += f" | {format_interval(figures.get('mAP50-95_ci'), 3)}"
        lines.append(
            f"| {name} | {figures['images']} | {figures['boxes']} | {cells[0]} | {cells[1]} | "
            f"{figures['definition']} |"
        )
    return lines
