"""``defects compare``: does model B really beat model A? A paired bootstrap over images.

Every model is scored on the same resampled images in each replicate (the same seeded
draws), so the difference of two models is resampled as a pair: the noise the images
share cancels, and the interval says how sure the difference is, not each figure. The
p-value is two-sided: how often the replicates' difference falls on either side of zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from converters.folders import write_folder
from detection.bootstrap import (
    figures,
    format_interval,
    holm_adjusted,
    interval,
    match,
    p_value,
)
from detection.report import (
    OVERLAPS_NOT_LOOKED_FOR,
    REPORT_MARKER,
    _clean,
    _fmt,
    figures_unscored,
    images_unanswered,
    not_in_model_sentence,
    past_the_image,
    results_warnings,
    seen_sentence,
    settings_sentence,
    unseen_sentence,
    where_computed,
)
from detection.screening import DEFAULT_CONF, format_share, screening
from detection.versions import package_versions


def _difference(
    point: dict, base_point: dict, replicated: dict, base_replicated: dict | None, replicates: int
) -> dict:
    def paired(key: str, k: int | None = None) -> tuple[list[float] | None, float | None]:
        if replicated is None or base_replicated is None:
            return None, None
        a, b = base_replicated[key], replicated[key]
        delta = (b - a) if k is None else (b[:, k] - a[:, k])
        return interval(delta), p_value(delta)

    ci50, p50 = paired("mAP50")
    ci5095, p5095 = paired("mAP50-95")
    per_class = {}
    for k, (name, figures_b) in enumerate(point["per_class"].items()):
        figures_a = base_point["per_class"][name]
        ci_a, p_a = paired("ap50", k)
        ci_b, p_b = paired("ap50_95", k)
        per_class[name] = {
            "ap50": _minus(figures_b["ap50"], figures_a["ap50"]),
            "ap50_ci": ci_a,
            "p_value": p_a,
            "ap50_95": _minus(figures_b["ap50_95"], figures_a["ap50_95"]),
            "ap50_95_ci": ci_b,
            "p_value_ap50_95": p_b,
        }
    # The classes are tested at once: their p-values adjusted for the family (Holm).
    for key, adjusted_key in (("p_value", "p_holm"), ("p_value_ap50_95", "p_holm_ap50_95")):
        adjusted = holm_adjusted([entry[key] for entry in per_class.values()], replicates)
        for entry, p in zip(per_class.values(), adjusted, strict=True):
            entry[adjusted_key] = p
    return {
        "mAP50": point["mAP50"] - base_point["mAP50"],
        "mAP50_ci": ci50,
        "p_value": p50,
        "mAP50-95": point["mAP50-95"] - base_point["mAP50-95"],
        "mAP50-95_ci": ci5095,
        "p_value_mAP50-95": p5095,
        "per_class": per_class,
    }


def _minus(b: float, a: float) -> float:
    return float(b - a)


def compare(
    gt: dict,
    predictions: list[list[dict]],
    names: list[str],
    out: Path,
    replicates: int = 1000,
    seed: int = 0,
    sources: list[str] | None = None,
    settings: dict | None = None,
    seen: list[dict] | None = None,
    speeds: list[dict] | None = None,
    other_splits: list[dict] | None = None,
    backends: list[str] | None = None,
    lacking: list[dict[str, int]] | None = None,
    unseen: dict | None = None,
) -> dict:
    """Scores each model with intervals and each later model's paired difference to the
    first; writes ``report.json``, ``report.md`` and ``differences.png`` into ``out``.

    Args:
        gt: COCO ground truth.
        predictions: Each model's COCO results, the baseline first.
        names: The models' names, in the same order.
        out: The report folder.
        replicates: Bootstrap replicates (the same draws for every model).
        seed: The draws' seed.
        sources: Where each model's predictions came from, for the report.
        settings: How the predictions were made, where they were made here from weights
            (:func:`detection.evaluate.prediction_settings`).
        seen: How many of the images each model was trained on, where they were made
            here from weights (:func:`detection.splits.seen_in_training`).
        speeds: How fast each model predicted, where they were made here, one after
            another on this machine (:func:`detection.evaluate.prediction_speed`).
        other_splits: Each results file's results left out for naming images of the
            dataset's other splits (:func:`detection.report.results_left_out`).
        backends: What ran each model, where they were made here from weights: ``torch``,
            ``onnx`` or ``onnx-int8`` (a ``.pt`` against its ONNX export, each its own).
        lacking: The ground truth's classes each model has none of, with their boxes
            (:func:`detection.evaluate.classes_not_in_model`), where they were made here
            from weights: all missed, so a difference there is no model's skill.
        unseen: With ``--unseen``, the split's images left out of ``gt`` as some model's
            training images or overlapping one (``images`` kept ``of``, ``trained_on``,
            ``overlapping``, ``incomplete``: :func:`detection.evaluate.unseen_only`).

    Returns:
        The report: ``models`` (figures with intervals) and ``difference`` (B minus A for
        two models; a list in model order for more).
    """
    scored = []
    for results in predictions:
        table = match(gt, results)["all"]
        scored.append(figures(table, None, replicates, seed))
    models = [
        {
            "name": name,
            **point,
            **({"predictions": sources[i]} if sources else {}),
            **({"backend": backends[i]} if backends else {}),
            **({"seen_in_training": seen[i]} if seen else {}),
            **({"speed": speeds[i]} if speeds else {}),
            **({"other_splits": other_splits[i]} if other_splits else {}),
            **({"classes_not_in_model": lacking[i]} if lacking and lacking[i] else {}),
            "lowest_score": min((r["score"] for r in predictions[i]), default=None),
            "past_the_image": past_the_image(predictions[i], gt),
            "unanswered": images_unanswered(predictions[i], gt),
            "screening": screening(gt, predictions[i]),
        }
        for i, (name, (point, _)) in enumerate(zip(names, scored))
    ]
    base_point, base_replicated = scored[0]
    differences = [
        {"model": names[i], "baseline": names[0]}
        | _difference(point, base_point, replicated, base_replicated, replicates)
        for i, (point, replicated) in enumerate(scored[1:], 1)
    ]
    report = _clean(
        {
            "models": models,
            "difference": differences[0] if len(differences) == 1 else differences,
            "bootstrap": {"replicates": replicates, "seed": seed, "level": 0.95, "paired": True},
            "images": len(gt["images"]),
            **({"unseen_only": unseen} if unseen else {}),
            **({"prediction_settings": settings} if settings else {}),
            "software": package_versions(),
        }
    )

    def write(folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / REPORT_MARKER).write_text(json.dumps(report, indent=2) + "\n")
        plot_differences(differences, folder / "differences.png")
        (folder / "report.md").write_text(_markdown(report, differences))

    write_folder(Path(out), write, REPORT_MARKER)
    return report


def plot_differences(differences: list[dict], path: Path) -> None:
    """A forest plot: each later model's AP50 difference to the first, per class and
    overall, with its 95% interval."""
    import matplotlib.pyplot as plt

    rows = ["mAP50", *differences[0]["per_class"]]
    figure, axis = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.4))
    offsets = np.linspace(-0.15, 0.15, len(differences)) if len(differences) > 1 else [0.0]
    for index, (difference, offset) in enumerate(zip(differences, offsets)):
        values, lows, highs = [], [], []
        for row in rows:
            entry = difference if row == "mAP50" else difference["per_class"][row]
            value = entry["mAP50" if row == "mAP50" else "ap50"]
            ci = entry["mAP50_ci" if row == "mAP50" else "ap50_ci"] or [value, value]
            values.append(np.nan if value is None else value)
            lows.append(ci[0] if ci[0] is not None else np.nan)
            highs.append(ci[1] if ci[1] is not None else np.nan)
        ys = np.arange(len(rows))[::-1] + offset
        values, lows, highs = map(np.array, (values, lows, highs))
        # The interval drawn about its own middle, the point where it is: a percentile
        # interval need not hold its point (few replicates, a skewed class), and
        # matplotlib refuses the negative error bar such a point would make.
        color = f"C{index}"
        axis.errorbar(
            (lows + highs) / 2, ys, xerr=(highs - lows) / 2, fmt="none", capsize=3, color=color
        )
        label = f"{difference['model']} - {difference['baseline']}"
        axis.plot(values, ys, "o", color=color, label=label)
    axis.axvline(0, color="grey", linewidth=1)
    axis.set_yticks(np.arange(len(rows))[::-1], rows)
    axis.set_xlabel("AP50 difference (95% paired bootstrap interval)")
    axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_p_value(p: float | None, replicates: int) -> str:
    """A p-value no finer than the replicates can tell."""
    if p is None:
        return "n/a"
    return f"< {1 / replicates:.3g}" if p == 0 else f"{p:.3f}"


def format_holm(p: float | None, adjusted: float | None, replicates: int) -> str:
    """A Holm-adjusted p-value (:func:`detection.bootstrap.holm_adjusted`); an upper
    bound where the p it adjusts was below the replicates' resolution."""
    if adjusted is None:
        return "n/a"
    return f"< {adjusted:.3g}" if p == 0 and adjusted < 1 else f"{adjusted:.3f}"


def _fmt_signed(value: float | None) -> str:
    """A difference; n/a where it is undefined (a class without ground truth here)."""
    return "n/a" if value is None or np.isnan(value) else f"{value:+.4f}"


def _speed_markdown(models: list[dict]) -> list[str]:
    """Each model's speed as predicted here, and against the first's; nothing for
    results files (their speed is not known)."""
    if not all(model.get("speed") for model in models):
        return []
    first = models[0]["speed"]["images_per_second"]
    lines = [
        "",
        f"**Speed here** (each model's predictions timed once, one after another: "
        f"{where_computed(models[0]['speed'])}; `make bench-predict` times paths side by "
        "side, repeated):",
        "",
        "| model | backend | image size | seconds | images/s | against the first |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model in models:
        speed = model["speed"]
        rate = speed["images_per_second"]
        ratio = f"{rate / first:.2f}x" if rate and first else "n/a"
        size = f"{speed['imgsz']} px" if speed.get("imgsz") else "n/a"  # older reports
        lines.append(
            f"| {model['name']} | {model.get('backend', '')} | {size} | "
            f"{speed['seconds']:.1f} | {_fmt(rate, 1)} | {ratio} |"
        )
    return lines


def compared_unscored(report: dict) -> str | None:
    """:func:`detection.report.figures_unscored` of a comparison's report: the classes
    without a ground-truth box are the same for every model."""
    return figures_unscored(report["models"][0]["per_class"])


def _markdown(report: dict, differences: list[dict]) -> str:
    boot = report["bootstrap"]
    lines = [
        "# Model comparison",
        "",
        f"{report['images']} images; {boot['replicates']} paired bootstrap replicates over "
        f"images (seed {boot['seed']}), 95% intervals." + settings_sentence(report),
        *(["", f"**Unseen only:** {said}."] if (said := unseen_sentence(report)) else []),
        *(
            ["", f"**Classes not scored:** {unscored}."]
            if (unscored := compared_unscored(report))
            else []
        ),
        "",
    ]
    good = report["models"][0]["screening"]["images_without_defects"]
    at = f"at confidence {DEFAULT_CONF}"
    lines += [
        "| model | mAP50 | 95% interval | mAP50:95 | 95% interval | images with defects "
        f"flagged {at} |" + (f" defect-free images flagged {at} | image AUROC |" if good else ""),
        "|---|---:|---|---:|---|---:|" + ("---:|---:|" if good else ""),
    ]
    for model in report["models"]:
        rule, auroc = model["screening"]["rules"][0], model["screening"]["auroc"]
        lines.append(
            f"| {model['name']} | {model['mAP50']:.4f} | {format_interval(model['mAP50_ci'])} | "
            f"{model['mAP50-95']:.4f} | {format_interval(model['mAP50-95_ci'])} | "
            f"{format_share(rule['with_defects'])} |"
            + (f" {format_share(rule['without_defects'])} | {_fmt(auroc)} |" if good else "")
        )
    lines += [
        "",
        "An image is flagged when any of its detections reaches the confidence (the "
        "first decision on a line is per image; mAP does not show it); 95% Wilson "
        "intervals."
        + (
            ""
            if good
            else " No image here is free of defects, so false alarms on good steel are not "
            "measured."
        ),
    ]
    for model in report["models"]:
        for label, sentence in results_warnings(model, model["name"]):
            lines += ["", f"**{label}:** {sentence}."]
        said = seen_sentence(model.get("seen_in_training"))
        lines += ["", f"**{model['name']}, {said[0].lower()}:** {said[1]}"] if said else []
        if unknown := not_in_model_sentence(model.get("classes_not_in_model")):
            lines += ["", f"**{model['name']}, classes the model lacks:** {unknown}."]
    not_seen = any((m.get("seen_in_training") or {}).get("images") == 0 for m in report["models"])
    if not_seen and "unseen_only" not in report:  # said once, not once per model
        lines += ["", OVERLAPS_NOT_LOOKED_FOR]
    lines += _speed_markdown(report["models"])
    for difference in differences:
        p = difference["p_value"]
        lines += [
            "",
            f"## {difference['model']} minus {difference['baseline']}",
            "",
            f"mAP50 {difference['mAP50']:+.4f} "
            f"{format_interval(difference['mAP50_ci'], signed=True)}, p: "
            f"{format_p_value(p, boot['replicates'])}; mAP50:95 {difference['mAP50-95']:+.4f} "
            f"{format_interval(difference['mAP50-95_ci'], signed=True)}.",
            "",
            "| class | dAP50 | 95% interval | p | p, Holm | dAP50:95 | 95% interval | p | "
            "p, Holm |",
            "|---|---:|---|---:|---:|---:|---|---:|---:|",
        ]
        for name, entry in difference["per_class"].items():
            cells = [name]
            for key, suffix in (("ap50", ""), ("ap50_95", "_ap50_95")):
                p = entry[f"p_value{suffix}"]
                cells += [
                    _fmt_signed(entry[key]),
                    format_interval(entry[f"{key}_ci"], signed=True),
                    format_p_value(p, boot["replicates"]),
                    format_holm(p, entry[f"p_holm{suffix}"], boot["replicates"]),
                ]
            lines.append("| " + " | ".join(cells) + " |")
        tested = sum(entry["p_value"] is not None for entry in difference["per_class"].values())
        if tested > 1:
            lines += [
                "",
                f"p, Holm: each class's p adjusted for the {tested} classes tested at once "
                "(Holm-Bonferroni). With that many classes, one p below 0.05 comes by chance "
                f"alone {1 - 0.95**tested:.0%} of the time when the models do not differ; a "
                "class whose Holm p is below 0.05 differs with every class counted. The "
                "intervals are each class's own.",
            ]
    undefined = []
    if not boot["replicates"]:
        undefined.append("no bootstrap replicates, so no interval or p")
    if any(c["ap50"] is None for c in report["models"][0]["per_class"].values()):
        undefined.append("a class without ground truth among these images has no AP to differ")
    lines += [
        "",
        "Forest plot of the per-class differences: `differences.png`."
        + (f" n/a: {'; '.join(undefined)}." if undefined else ""),
        "",
    ]
    return "\n".join(lines)
