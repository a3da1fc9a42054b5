"""Subcommands of ``defects`` that train, evaluate, predict and export detectors.

Each handler imports its heavy modules (torch, ultralytics) when it runs, so ``defects
convert`` and ``defects --help`` start in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from converters.errors import ConversionError
from detection.console import (
    COUNT,
    IMAGE_SIZE,
    POSITIVE_INT,
    PROBABILITY,
    counted,
    device_option,
    number_in,
    progress_bar,
    stderr_console,
)
from detection.weights import (
    BACKENDS,
    MAX_RELEASE_MB,
    MODELS_DIR,
    NMS_IOU,
    REVIEW_CONF,
    TILE_OVERLAP,
    is_released,
)

if TYPE_CHECKING:
    from rich.console import Console


def _print_skipped(console: Console, summary: dict) -> None:
    """A run's ``errors`` (each image left out), ``notes`` (each read but noted:
    :func:`converters.pixels.narrowed_samples`), ``passed_over`` (how many files of the
    folders given are not images by their suffix) and ``found_twice`` (the images left
    out as links to one found too: :func:`detection.predict.collect_images`)."""
    from converters.layouts import IMAGE_SUFFIXES

    errors, notes = summary.get("errors", ()), summary.get("notes", ())
    passed_over, found_twice = summary.get("passed_over"), summary.get("found_twice")
    for error in errors:
        console.print(f"skipped {error['file']}: {error['error']}", style="yellow")
    for note in notes:
        console.print(f"note {note['file']}: {note['note']}", style="yellow")
    if passed_over:
        kinds = ", ".join(f"{suffix or 'no suffix'} {n}" for suffix, n in passed_over.items())
        count = sum(passed_over.values())
        what = (
            "that is not an image by its suffix"
            if count == 1
            else "that are not images by their suffix"
        )
        console.print(
            f"passed over {counted(count, 'file')} {what} ({kinds}); "
            f"images are {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    if found_twice:
        (path, first), more = found_twice[0], len(found_twice) - 1
        example = f"{path} given twice" if path == first else f"{path} is {first}"
        console.print(
            f"passed over {counted(len(found_twice), 'image')} found twice, the same file as "
            f"an image found already ({example}"
            + (f", and {more} more" if more else "")
            + "): each is read once"
        )


def _check_any_read(summary: dict, sources: list[Path]) -> None:
    """A run that could read none of its images failed, whatever it wrote (errors.json):
    a script checking the exit status must not take it for a day without defects."""
    if summary["images"] == 0:
        raise ConversionError(
            f"no readable images in {', '.join(map(str, sources))} "
            f"({len(summary['errors'])} skipped)"
        )


def cmd_train(args: argparse.Namespace) -> int:
    from detection.train import parse_overrides, train

    run_dir = train(
        args.data,
        args.name,
        args.model,
        args.imgsz,
        args.epochs,
        args.batch,
        args.device,
        args.resume,
        args.weights_dir,
        args.seed,
        args.workers,
        args.hours,
        parse_overrides(args.set),
        teacher=args.teacher,
        activation=args.activation,
    )
    stderr_console().print(f"Weights: {run_dir / 'best.pt'} (and last.pt, args.yaml, results.csv)")
    return 0


def _backend_for(given: str | None, weights: Path | None) -> str:
    """``--backend`` as given, or the one the weights call for: ``onnx`` for an
    ``.onnx`` export (which torch cannot run), else ``torch``."""
    if given is not None:
        return given
    return "onnx" if weights and str(weights).endswith(".onnx") else "torch"


def _inputs(args: argparse.Namespace) -> list[Path]:
    """The files and folders a command reads among its ``--data``, ``--gt``,
    ``--predictions`` and ``--weights``: its ``--out``, replaced whole, may hold none."""
    found = []
    for name in ("data", "gt", "predictions", "weights"):
        value = getattr(args, name, None)
        found += value if isinstance(value, list) else [value] if value else []
    return [Path(value) for value in found]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from converters.folders import check_output_folder
    from detection.evaluate import (
        evaluate_files,
        evaluate_model,
        evaluate_results_on_split,
        results_source,
    )
    from detection.report import REPORT_MARKER

    _check_prediction_options(args, bool(args.weights))
    args.backend = _backend_for(args.backend, args.weights)
    check_output_folder(args.out, REPORT_MARKER, _inputs(args))  # before the predicting

    if args.predictions or args.gt:
        if args.unseen:
            raise ConversionError(UNSEEN_NEEDS_WEIGHTS)
        args.predictions = args.predictions and results_source(args.predictions)
        if not args.predictions or args.weights or bool(args.gt) == bool(args.data):
            raise ConversionError("give --predictions with --gt or with --data (and no --weights)")
        if args.gt:
            report = evaluate_files(
                args.predictions, args.gt, args.out, replicates=args.bootstrap, seed=args.seed
            )
        else:
            report = evaluate_results_on_split(
                args.predictions, args.data, args.out, args.split, args.bootstrap, args.seed
            )
    else:
        if not (args.weights and args.data):
            raise ConversionError("give --weights and --data, or --predictions with --gt or --data")
        with progress_bar("Predicting") as update:
            report = evaluate_model(
                args.weights,
                args.data,
                args.out,
                args.split,
                args.imgsz,
                None if args.device == "auto" else args.device,
                with_ultralytics=not args.no_ultralytics,
                progress=update,
                replicates=args.bootstrap,
                seed=args.seed,
                backend=args.backend,
                tta=args.tta,
                nms_iou=args.iou,
                tile=args.tile,
                tile_overlap=args.tile_overlap,
                notice=stderr_console().print,
                unseen=args.unseen,
            )
    from detection.bootstrap import format_interval
    from detection.report import (
        not_in_model_sentence,
        report_unscored,
        results_warnings,
        unseen_sentence,
    )

    print((Path(args.out) / "report.md").read_text())
    if said := unseen_sentence(report):
        stderr_console().print(f"Unseen only: {said}.")
    for label, sentence in results_warnings(report):
        stderr_console().print(f"{label}: {sentence}.", style="yellow")
    if unscored := report_unscored(report):
        stderr_console().print(f"note: {unscored}.", style="yellow")
    if unknown := not_in_model_sentence(report.get("classes_not_in_model")):
        stderr_console().print(f"note: {unknown}.", style="yellow")
    _warn_if_seen(report.get("seen_in_training"))
    _note_ground_truth_edited(report.get("ground_truth_edited"))
    if report.get("ultralytics_not_run"):
        stderr_console().print(
            f"note: ultralytics' val {report['ultralytics_not_run']}", style="yellow"
        )
    if report.get("off_scale"):
        stderr_console().print(f"note: {report['off_scale']['sentence']}", style="yellow")
    if report["bootstrap"]["replicates"]:
        figures = (
            f"mAP50 {report['mAP50']:.4f} {format_interval(report['mAP50_ci'])}  mAP50:95 "
            f"{report['mAP50-95']:.4f} {format_interval(report['mAP50-95_ci'])}"
        )
    else:  # "n/a" beside each figure said nothing
        figures = (
            f"mAP50 {report['mAP50']:.4f}  mAP50:95 {report['mAP50-95']:.4f} "
            "(no intervals: --bootstrap 0)"
        )
    stderr_console().print(f"{figures}  -> {args.out}/report.md")
    return 0


def _note_ground_truth_edited(edited: dict | None, split: str = "") -> None:
    """A console note when a converter output's label files and COCO file were found to
    disagree, and which is the ground truth read
    (:func:`detection.evaluate.split_ground_truth`); ``split`` names the split where
    several are read."""
    from detection.report import ground_truth_edited_sentence

    if edited:
        sentence = ground_truth_edited_sentence(edited)
        stderr_console().print(f"note: {f'{split}: ' if split else ''}{sentence}.", style="yellow")


def _warn_if_seen(
    seen: dict | None, name: str = "", after: str = "", model: str = "the model"
) -> None:
    """A console warning when a model was scored on images it was trained on (``name``:
    which model; ``after``: a sentence more; ``model``: what the sentence calls it)."""
    from detection.report import seen_sentence

    if seen and seen.get("images"):
        label, sentence = seen_sentence(seen, model)
        prefix = f"{name} " if name else ""
        stderr_console().print(f"{prefix}{label}: {sentence}{after}", style="yellow")


# The options that build a review, which `review export` does not take.
_REVIEW_BUILDING = ("data", "weights", "predictions", "rebuild", "tta", "tile", "near_duplicates")

CALIBRATION_IMAGES = 200  # the int8 export's calibration images, at most

SETTINGS_NEED_WEIGHTS = (
    "--tta, --iou, --tile and --backend change how predictions are made (with --weights)"
)


def _check_prediction_options(args: argparse.Namespace, predicting: bool) -> None:
    """Refuses a prediction option that would change nothing, instead of leaving it
    unused without a word: ``--tile-overlap`` without ``--tile``; and where no
    ``--weights`` predict (``predicting`` false), ``--tta``, ``--iou``, ``--tile`` and
    ``--backend``. Then gives ``--tile-overlap`` its default."""
    if args.tile_overlap is not None and not args.tile:
        raise ConversionError(
            "--tile-overlap is the share of a tile that its neighbours overlap: it needs --tile"
        )
    if args.tile_overlap is None:
        args.tile_overlap = TILE_OVERLAP
    if predicting:
        return
    if args.tta or args.tile or args.iou not in (None, NMS_IOU) or args.backend is not None:
        scored = "a --predictions file is scored as it is" if args.predictions else "give --weights"
        raise ConversionError(f"{SETTINGS_NEED_WEIGHTS}; {scored}")


# Results files carry no record of their model's training images.
UNSEEN_NEEDS_WEIGHTS = (
    "--unseen needs --weights: results files do not say which images their model was trained on"
)


def _add_iou_argument(parser: argparse.ArgumentParser, default: float | None = NMS_IOU) -> None:
    parser.add_argument(
        "--iou",
        type=PROBABILITY,
        default=default,
        help=f"NMS IoU ({NMS_IOU}, ultralytics' default"
        + ("; with per-class --conf, the IoU they were chosen at" if default is None else "")
        + "): overlapping boxes of a class above it are merged into the most confident; lower "
        "raises mAP50 on NEU-DET and lowers mAP50:95",
    )


def _add_tta_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: predict on each image and its three mirror images, "
        "fuse the boxes (weighted boxes fusion); four times the model's work",
    )


def _add_tile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tile",
        type=number_in(int, 32),  # the model's largest stride: a smaller tile is one cell
        help="sliced inference: cut images larger than TILE pixels into overlapping tiles "
        "and merge their boxes, so a large image is seen at the scale the model was trained "
        "at (200 for NEU-DET's 200x200 crops)",
    )
    parser.add_argument(
        "--tile-overlap",
        type=number_in(float, 0.0, 0.9),
        help=f"with --tile: share of a tile that neighbouring tiles overlap ({TILE_OVERLAP})",
    )


def _confidence(text: str) -> float | str:
    """A threshold, or where per-class ones come from: ``best-f1`` or a report.json."""
    return text if text == "best-f1" or text.endswith(".json") else PROBABILITY(text)


def _train_batch(text: str) -> int:
    """A batch size, or -1: ultralytics' autobatch (a GPU's memory decides)."""
    return -1 if text.strip() == "-1" else POSITIVE_INT(text)


def _add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        # A hundred times the default, whose mAP50 interval moves by under 0.003 from one
        # seed to another (NEU-DET's val split, seeds 0 to 4; a class's by up to 0.014);
        # the replicates' draws take replicates x images floats
        # (100,000,000 on NEU-DET's val split asked 267 GiB: a MemoryError traceback).
        type=number_in(int, 0, 100_000),
        default=1000,
        help="bootstrap replicates over images for the 95%% intervals (1000; 0: none; "
        "at most 100000)",
    )
    parser.add_argument("--seed", type=COUNT, default=0, help="the bootstrap's seed (0)")


def cmd_predict(args: argparse.Namespace) -> int:
    from detection.predict import default_backend, predict

    _check_prediction_options(args, predicting=True)
    args.backend = args.backend or default_backend(args.weights, args.device)
    if args.backend != "torch" and args.device not in ("auto", "cpu"):
        # ONNX Runtime runs here on the CPU only (the CPU package): the GPU would sit idle.
        raise ConversionError(
            f"--device {args.device} runs the torch backend; ONNX Runtime ({args.backend}) "
            "runs on the CPU: leave --backend out, or give --backend torch"
        )
    conf, iou, imgsz = args.conf, args.iou, args.imgsz
    if isinstance(conf, str):  # operating points from an evaluation of these weights
        from detection.evaluate import best_f1_confidences

        conf, iou, imgsz = best_f1_confidences(conf, args.weights, args.tta, iou, imgsz)
        stderr_console().print(
            "Per-class confidence thresholds (each class's best F1): "
            + ", ".join(f"{name} {value:.3f}" for name, value in conf.items())
            + f"; NMS IoU {iou}"
            + (f"; {imgsz} px" if imgsz else "")
        )
    iou = NMS_IOU if iou is None else iou
    with progress_bar("Predicting") as update:
        summary = predict(
            args.weights,
            args.sources,
            args.out,
            conf,
            args.backend,
            imgsz,
            args.batch,
            None if args.device == "auto" else args.device,
            not args.no_images,
            update,
            args.tta,
            iou,
            args.voc,
            args.tile,
            args.tile_overlap,
            stderr_console().print,
        )
    if args.out is None:
        # JSON Lines on stdout, the records predictions.json holds: pipes into jq or a file.
        sys.stdout.writelines(json.dumps(result) + "\n" for result in summary["results"])
    console = stderr_console()
    _print_skipped(console, summary)
    _check_any_read(summary, args.sources)
    if summary["off_scale"]:
        console.print(f"note: {summary['off_scale']['sentence']}", style="yellow")
    console.print(
        f"{counted(summary['images'], 'image')} ({summary['images_flagged']} with a detection), "
        f"{counted(summary['detections'], 'detection')} -> "
        f"{summary['predictions'] or 'stdout'}"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from detection.predict import collect_images, cpu_flags, export_onnx, lacks_vnni
    from detection.weights import load_yolo, resolve_weights

    int8_only = {
        "--int8-bits": args.int8_bits,
        "--calibration": args.calibration,
        "--calibration-images": args.calibration_images,
    }
    given = [option for option, value in int8_only.items() if value]
    if given and not args.int8:
        raise ConversionError(f"{', '.join(given)}: the int8 export's; give --int8 too")
    weights = resolve_weights(args.weights)
    if is_released(weights):
        # A release ships its exports; writing them again would change tracked files.
        shipped = weights.with_suffix(".int8.onnx" if args.int8 else ".onnx")
        calibrated = args.int8 and bool(args.calibration or args.calibration_images)
        if args.imgsz or args.int8_bits == 8 or calibrated or not shipped.is_file():
            how = (
                "at the training size, in 7 bits, calibrated on its own train images,"
                if args.int8
                else "at the training size"
            )
            raise ConversionError(
                f"{weights}: released models are not re-exported in place ({shipped.name} "
                f"is shipped {how} or not at all); copy model.pt out of {MODELS_DIR} and "
                "export the copy"
            )
        load_yolo(weights, "detect")
        stderr_console().print(f"Released with its export: {shipped}")
        return 0

    if args.int8 and not args.calibration:
        raise ConversionError(
            "--int8 needs --calibration IMAGES: images or folders like those the model will "
            "see (its training images), which set the int8 ranges"
        )
    at_most = args.calibration_images or CALIBRATION_IMAGES
    calibration = collect_images(args.calibration)[:at_most] if args.int8 else None
    bits = args.int8_bits or 7
    path = export_onnx(args.weights, args.imgsz, calibration, bits)
    fp32 = Path(args.weights).with_suffix(".onnx")
    stderr_console().print(f"Exported {fp32}" + (f" and {path}" if path != fp32 else ""))
    if bits == 8 and lacks_vnni(cpu_flags()):
        stderr_console().print(
            f"note: {path.name} has 8-bit weights, which this CPU (no VNNI) cannot run "
            "without overflowing; it runs on CPUs with VNNI (AVX-512 VNNI, AVX-VNNI, AMX)"
        )
    return 0


def cmd_train_cls(args: argparse.Namespace) -> int:
    from detection.classify import train_classifier

    backbone = None if str(args.backbone).lower() == "none" else args.backbone
    summary = train_classifier(
        args.data,
        args.name,
        backbone,
        args.model,
        args.imgsz,
        args.epochs,
        args.batch,
        args.device,
        args.background_class,
        args.weights_dir,
        args.seed,
        args.workers,
    )
    console = stderr_console()
    transfer = summary["transfer"]
    if transfer:
        console.print(
            f"Backbone: transferred {transfer['transferred']} of {transfer['total']} "
            f"tensors from {transfer['from']}"
        )
    else:
        console.print("Backbone: none (trained from scratch)")
    console.print(
        f"top-1 {summary['top1']:.4f}  top-5 {summary['top5']:.4f}  -> {summary['weights']}"
    )
    _warn_if_seen(
        summary["backbone_seen_in_training"], model="the detector whose backbone started it"
    )
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from detection.classify import classify

    with progress_bar("Classifying") as update:
        summary = classify(
            args.weights, args.sources, args.out, args.top_k, args.heatmap, args.imgsz, update
        )
    if args.out is None:
        sys.stdout.writelines(json.dumps(entry) + "\n" for entry in summary["predictions"])
    console = stderr_console()
    _print_skipped(console, summary)
    _check_any_read(summary, args.sources)
    where = "stdout" if args.out is None else args.out / "predictions.json"
    console.print(f"{counted(summary['images'], 'image')} -> {where}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from detection import review

    console = stderr_console()
    if args.action == "export":
        if not (args.name and args.out):
            raise ConversionError("review export needs --name and --out")
        building = [f"--{option}" for option in _REVIEW_BUILDING if getattr(args, option)]
        if building:
            raise ConversionError(
                f"review export writes a stored dataset's corrected labels: it takes --name, "
                f"--out and --to, not {', '.join(building)} (those build a review)"
            )
        args.to = args.to or "voc"
        summary = review.export_corrected(args.name, args.out, args.to)
        console.print(
            f"Wrote {counted(summary['images'], 'image')}, "
            f"{counted(summary['boxes'], 'box', 'boxes')} as {args.to} "
            f"to {args.out}; rejected {summary['rejected'] or 'none'}, accepted "
            f"{summary['accepted'] or 'none'} ({len(summary['changed_images'])} "
            "images changed, see changes.json)"
        )
        return 0
    if not args.data:
        raise ConversionError("review needs --data (a converter output or a folder of images)")
    if args.out or args.to:
        raise ConversionError(
            "--out and --to are for review export (defects review export --name N --out DIR "
            "--to voc|yolo|coco)"
        )
    _check_prediction_options(args, bool(args.weights))
    if args.conf is not None and not (args.weights or args.predictions):
        raise ConversionError(
            "--conf is the lowest confidence of the predictions stored: give --weights or "
            "--predictions"
        )
    args.conf = REVIEW_CONF if args.conf is None else args.conf
    if args.predictions:
        from detection.evaluate import results_source

        args.predictions = results_source(args.predictions)
    name = args.name or f"defects-{Path(args.data).resolve().name}"
    if not args.no_launch:
        review.check_app_address(args.address, args.port)
    with progress_bar("Predicting") as update:
        summary = review.prepare(
            args.data,
            name,
            args.weights,
            args.split,
            args.backend,
            args.conf,
            args.rebuild,
            args.tta,
            args.iou,
            args.tile,
            args.tile_overlap,
            args.predictions,
            update,
            console.print,
        )
    _print_skipped(console, {"errors": summary["skipped"]})
    for split, edited in summary.get("ground_truth_edited", {}).items():
        _note_ground_truth_edited(edited, split)
    if summary["reused"]:
        console.print(
            f"Reopened the existing dataset '{name}' with its tags "
            "(--rebuild starts over from --data and discards them)"
        )
    if "not_applied" in summary:
        stored = summary["stored_predictions"]
        made = (
            f"results {stored['predictions']}"
            if stored["predictions"]
            else f"weights {stored['weights']}, TTA {'on' if stored['prediction_tta'] else 'off'}"
            f", NMS IoU {stored['prediction_iou']}, "
            + (
                f"tiles of {stored['prediction_tile']['size']} px"
                if stored["prediction_tile"]
                else "no tiles"
            )
        )
        console.print(
            f"Its predictions are the stored ones ({made}, conf {stored['prediction_conf']}): "
            f"this run's {', '.join(summary['not_applied'])} differ and are not applied; "
            "--rebuild applies them and discards the tags",
            style="yellow",
        )
    if summary.get("off_scale"):
        console.print(
            f"note: {summary['off_scale']['sentence']} (the saved view "
            f"'{review.OFF_SCALE_VIEW}' shows them, farthest first; each sample's `scale` "
            "says how large its defects are drawn)",
            style="yellow",
        )
    shown = summary.get("predictions_shown")
    if shown and shown["images"] < shown["of"]:
        console.print(
            f"{shown['images']} of the {shown['of']} images have a result at confidence "
            f">= {args.conf}; the others show no predictions",
            style="yellow",
        )
    evaluation = summary.get("evaluation")
    if evaluation:
        from detection.report import _fmt

        fo = review.load_fiftyone()

        dataset = fo.load_dataset(name)
        results = dataset.load_evaluation_results(review.EVAL_KEY)
        results.print_report(classes=dataset.default_classes)
        console.print(
            f"On `{evaluation['split']}` ({evaluation['images']} images): FiftyOne mAP "
            f"(COCO-style, IoU 0.50:0.95) {evaluation['fiftyone_mAP50_95']:.4f}; "
            f"pycocotools on the same predictions: mAP50:95 "
            f"{evaluation['pycocotools_mAP50_95']:.4f}, "
            f"mAP50 {evaluation['pycocotools_mAP50']:.4f} "
            f"(difference {evaluation['difference']:+.4f}). {evaluation['note']}"
        )
        if evaluation.get("unscored"):
            console.print(f"note: {evaluation['unscored']}.", style="yellow")
        errors = evaluation["errors"]
        console.print(
            f"TIDE errors (dAP50 points from AP50 {errors['ap50']:.2f}): "
            + ", ".join(f"{kind} {_fmt(delta, 2)}" for kind, delta in errors["dAP"].items())
        )
    if summary["labelled"]:  # figures to flatter (new images get the field alone)
        _warn_if_seen(
            summary.get("seen_in_training"),
            after=" In the App, the field seen_in_training filters them.",
        )
    mistakes = summary.get("mistakes")
    if mistakes:
        console.print(
            f"Likely annotation mistakes (FiftyOne Brain's mistakenness, view "
            f"'{mistakes['view']}'): {mistakes['images']} images; "
            f"{mistakes['possible_spurious']} ground-truth boxes no prediction matches, "
            f"{mistakes['possible_missing']} predictions above {mistakes['missing_above']} "
            "confidence that no box matches (Brain's possible_missing). "
            + ("Top:" if mistakes["top"] else "No prediction matches a box: none to rank.")
        )
        for entry in mistakes["top"][:10]:
            console.print(
                f"  {Path(entry['file']).name}: {entry['label']} box, predicted "
                f"{entry['predicted']} ({entry['confidence']:.2f}), mistakenness "
                f"{entry['mistakenness']:.2f} (box {entry['mistakenness_loc']:.2f})"
            )
    if args.near_duplicates is not None:
        if not (summary["labelled"] and args.weights):
            raise ConversionError("--near-duplicates needs a converter output and --weights")
        from converters.overlaps import SHIFTED_COPY_CORRELATION
        from detection.leaks import find_split_leaks

        dataset = review.load_fiftyone().load_dataset(name)
        leaks = find_split_leaks(dataset, args.weights, args.near_duplicates)
        summary["views"] = [*summary.get("views", []), leaks["view"]]
        console.print(
            f"Copies across splits by the detector's backbone (cosine distance <= "
            f"{leaks['threshold']}): {len(leaks['pairs'])} pairs"
        )
        for pair in leaks["pairs"][:20]:
            console.print(
                f"  {pair['a']} ({pair['splits'][0]}) ~ {pair['b']} ({pair['splits'][1]}): "
                f"{pair['distance']:.5f}"
            )
        console.print(
            f"Shifted, re-exposed or re-encoded copies across splits (fine detail matching "
            f"at {SHIFTED_COPY_CORRELATION} or more, shifted by up to a quarter of the image)"
            f": {len(leaks['shifted'])} pairs"
        )
        for pair in leaks["shifted"][:20]:
            console.print(
                f"  {pair['a']} ({pair['splits'][0]}) ~ {pair['b']} ({pair['splits'][1]}): "
                f"{pair['correlation']:.3f}, shifted {tuple(pair['shift'])}"
            )
        by_split = ", ".join(f"{split} {n}" for split, n in leaks["images_by_split"].items())
        console.print(
            f"The view '{leaks['view']}' holds the {counted(leaks['images'], 'image')} of "
            f"these pairs ({by_split or 'none'})"
        )
    seconds = summary["seconds"]
    console.print(
        f"Dataset '{name}': {summary['samples']} samples, fields "
        f"{', '.join(summary['fields'])}; "
        f"saved views: {', '.join(summary.get('views', []))}; "
        f"ready in {seconds['total']:.1f} s (predictions {seconds['predict']:.1f} s beside "
        f"the database start, ready at {seconds['database']:.1f} s; loading "
        f"{seconds['load']:.1f} s; evaluation and views {seconds['evaluate']:.1f} s)"
    )
    if args.no_launch:
        return 0
    review.launch(name, args.port, args.address, view=_first_view(summary))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from converters.folders import check_output_folder
    from detection.compare import compare
    from detection.evaluate import (
        other_split_images,
        prediction_settings,
        read_ground_truth,
        read_results,
        results_source,
        split_ground_truth,
        truth_named,
    )
    from detection.report import REPORT_MARKER, results_left_out

    _check_prediction_options(args, bool(args.weights))
    check_output_folder(args.out, REPORT_MARKER, _inputs(args))  # before the predicting

    if not (args.predictions or (args.weights and args.data)):
        raise ConversionError(
            "give --predictions A B ... with --gt or --data, or --data and --weights A B ..."
        )
    if len(args.predictions or args.weights) < 2:
        raise ConversionError("compare needs at least two models")
    if args.unseen and args.predictions:
        raise ConversionError(UNSEEN_NEEDS_WEIGHTS)
    if args.predictions:
        if args.weights or bool(args.gt) == bool(args.data):
            raise ConversionError("give --predictions with --gt or with --data (and no --weights)")
        args.predictions = [results_source(path) for path in args.predictions]
    # Before the predicting: a name mistake found after minutes of it loses them.
    names = _model_names(args.names, args.predictions or args.weights, bool(args.predictions))

    settings = None  # results files are scored as they are: their settings are unknown
    other_splits = None  # results made here are made on the split alone
    seen = None  # nor which images their model was trained on
    speeds = None  # nor how fast they were made
    backends = None  # nor what ran their model
    lacking = None  # nor which classes their model has
    unseen = None  # nor, so, which images no model saw
    if args.predictions:
        elsewhere = None  # a COCO file alone: no other splits to know of
        if args.gt:
            gt, named = read_ground_truth(args.gt), args.gt
        else:
            truth = split_ground_truth(args.data, args.split)
            _note_ground_truth_edited(truth.ground_truth_edited)
            gt, named = truth.gt, truth_named(truth, args.split)
            elsewhere = other_split_images(truth, args.split)
        left_out: list[list[tuple[str, str]]] = [[] for _ in args.predictions]
        predictions = [
            read_results(path, gt, named, elsewhere, aside)
            for path, aside in zip(args.predictions, left_out)
        ]
        other_splits = [results_left_out(aside) for aside in left_out]
        sources = [str(path) for path in args.predictions]
    else:
        backends = [_backend_for(args.backend, weights) for weights in args.weights]
        predictions, gt, sources, seen, speeds, lacking, unseen = _predict_for_comparison(
            args, backends
        )
        settings = prediction_settings(args.tta, args.iou, args.tile, args.tile_overlap)
    report = compare(
        gt,
        predictions,
        names,
        args.out,
        args.bootstrap,
        args.seed,
        sources,
        settings,
        seen,
        speeds,
        other_splits,
        backends,
        lacking,
        unseen,
    )
    from detection.bootstrap import format_interval
    from detection.compare import compared_unscored, format_p_value
    from detection.report import not_in_model_sentence, results_warnings, unseen_sentence

    print((args.out / "report.md").read_text())
    if said := unseen_sentence(report):
        stderr_console().print(f"Unseen only: {said}.")
    if unscored := compared_unscored(report):
        stderr_console().print(f"note: {unscored}.", style="yellow")
    for model in report["models"]:
        for label, sentence in results_warnings(model, model["name"]):
            stderr_console().print(f"{label}: {sentence}.", style="yellow")
        _warn_if_seen(model.get("seen_in_training"), model["name"])
        if unknown := not_in_model_sentence(model.get("classes_not_in_model")):
            stderr_console().print(f"note: {model['name']}: {unknown}.", style="yellow")
    differences = report["difference"]
    for difference in differences if isinstance(differences, list) else [differences]:
        stderr_console().print(
            f"{difference['model']} - {difference['baseline']}: mAP50 "
            f"{difference['mAP50']:+.4f} {format_interval(difference['mAP50_ci'], signed=True)}, "
            f"p {format_p_value(difference['p_value'], report['bootstrap']['replicates'])}"
        )
    return 0


def _model_names(given: str | None, sources: list[Path], results: bool) -> list[str]:
    """The compared models' names: ``--names`` split at its commas, or else each
    source's own name (`results_name` of a results file, `weights_name` of weights).
    Where sources share a name (two ultralytics runs' ``weights/best.pt``, a run's
    ``best.pt`` and ``last.pt``), each of them is named by as many of its path's last
    parts as tell them apart (``r/best.pt``, ``r/last.pt``): only a file compared with
    itself needs ``--names``."""
    count = len(sources)
    if given is not None:
        names = given.split(",")
        if len(names) != count or len(set(names)) != count or "" in names:
            raise ConversionError(f"--names needs {count} different names, one per model")
        return names
    if results:
        from detection.evaluate import results_name

        names = [results_name(source) for source in sources]
        located = sources
    else:
        from detection.weights import resolve_weights, weights_name

        names = [weights_name(source) for source in sources]
        located = [resolve_weights(source) for source in sources]  # a released name's file
    for name in set(names):
        alike = [i for i, other in enumerate(names) if other == name]
        if len(alike) < 2:
            continue
        parts = [_name_parts(located[i]) for i in alike]
        for depth in range(2, max(map(len, parts)) + 1):
            longer = ["/".join(part[-depth:]) for part in parts]
            if len(set(longer)) == len(longer):
                for i, longer_name in zip(alike, longer):
                    names[i] = longer_name
                break
        else:
            raise ConversionError(
                f"{sources[alike[0]]} is given {len(alike)} times: give --names, "
                f"{count} different names, one per model"
            )
    return names


def _name_parts(source: Path) -> tuple[str, ...]:
    """``source``'s path less the parts that name every such file alike: a
    ``predictions.json``, ultralytics' ``labels`` and ``weights`` folders."""
    from detection.predict import PREDICTIONS_MARKER

    parts = source.resolve().parts
    if parts[-1] in (PREDICTIONS_MARKER, "labels"):
        return parts[:-1]
    if parts[-2] == "weights" and Path(parts[-1]).stem in ("best", "last"):
        return (*parts[:-2], parts[-1])
    return parts


def _predict_for_comparison(
    args: argparse.Namespace, backends: list[str]
) -> tuple[list, dict, list[str], list[dict], list[dict], list[dict[str, int]], dict | None]:
    """Each model's predictions on the split (run by its backend), its ground truth, the
    models' sources, how many of the split's images each was trained on, how fast each
    predicted here, the ground truth's classes each has none of, and with ``--unseen``
    the images left out (:func:`detection.evaluate.unseen_only`)."""
    from detection.evaluate import (
        classes_not_in_model,
        predict_split,
        split_ground_truth,
        unseen_only,
    )
    from detection.predict import tile_plan
    from detection.splits import seen_in_training
    from detection.weights import check_weights, resolve_weights

    for weights in args.weights:  # every file, before the first model predicts for minutes
        check_weights(weights)
    truth = split_ground_truth(args.data, args.split)
    _note_ground_truth_edited(truth.ground_truth_edited)
    unseen = None
    if args.unseen:
        with progress_bar("Finding the images no model was trained on"):
            truth, unseen = unseen_only(truth, args.split, args.weights)
    gt, image_dir = truth.gt, truth.image_dir
    device = None if args.device == "auto" else args.device
    images = [image_dir / image["file_name"] for image in gt["images"]]
    plan = tile_plan(images, args.tile, args.tile_overlap)
    if plan:  # once, for every model
        stderr_console().print(plan)
    for path in images:  # the files in the page cache: the first model's timing no slower
        with contextlib.suppress(OSError):
            path.read_bytes()
    predictions, seen, speeds, lacking = [], [], [], []
    for weights, backend in zip(args.weights, backends):
        with progress_bar(f"Predicting ({weights})") as update:
            detector, results, speed = predict_split(
                weights,
                gt,
                image_dir,
                args.imgsz,
                device,
                update,
                backend,
                args.tta,
                args.iou,
                args.tile,
                args.tile_overlap,
            )
            predictions.append(results)
            speeds.append(speed)
        seen.append(seen_in_training(resolve_weights(weights), images)[0])
        lacking.append(classes_not_in_model(gt, detector.names))
    return predictions, gt, [str(w) for w in args.weights], seen, speeds, lacking, unseen


def cmd_release(args: argparse.Namespace) -> int:
    from detection.release import release

    card = release(args.run, args.data, args.name, args.models_dir, args.max_mb)
    coco, int8 = card["evaluation"]["pycocotools"], card["int8"]
    files = ", ".join(p.name for p in sorted((args.models_dir / args.name).glob("*.*")))
    stderr_console().print(
        f"Released {args.models_dir / args.name} ({files}): mAP50 {coco['mAP50']:.4f}, "
        f"mAP50:95 {coco['mAP50-95']:.4f}; int8 mAP50 {int8['pycocotools']['mAP50']:.4f}"
        f"{'' if int8['onnx'] else ' (not shipped: beyond the tolerance)'}; "
        f"use --weights {args.name}"
    )
    for stage in card["stages"]:
        if stage.get("complete") is False:
            stderr_console().print(
                f"Note: run {stage['run']} stopped before its end, after {stage['epochs']} "
                "epochs (killed, or still training); its best.pt of those was released, "
                "and the card says so"
            )
    return 0


def _first_view(summary: dict) -> str | None:
    """Where the App opens: the ``start-here`` view of an evaluated review, the
    ``by-confidence`` view of a plain folder."""
    from detection.review import START_VIEW

    if not summary["labelled"]:
        return "by-confidence"
    return START_VIEW if START_VIEW in summary.get("views", []) else None


def add_detection_commands(commands: argparse._SubParsersAction) -> None:
    """Registers the detector subcommands."""
    train = commands.add_parser(
        "train",
        help="train a YOLO detector from its .yaml definition",
        description="Train an ultralytics YOLO detector on a converted dataset. Defaults for "
        "model, image size, epochs and batch come from the dataset's recipe in datasets/ (its gpu "
        "entries when training on a GPU). "
        "--device 0,1,2,3 trains on several GPUs with ultralytics' own DDP.",
    )
    train.add_argument(
        "--data", type=Path, help="converted dataset, or any YOLO dataset (folder or data.yaml)"
    )
    train.add_argument(
        "--model",
        help="yolo11n.yaml (from scratch), or a local .pt or released name to start from",
    )
    train.add_argument("--imgsz", type=IMAGE_SIZE, help="training image size")
    train.add_argument("--epochs", type=POSITIVE_INT, help="epochs")
    train.add_argument(
        "--batch", type=_train_batch, help="batch size (-1: ultralytics' autobatch on a GPU)"
    )
    train.add_argument(
        "--device", type=device_option, default="auto", help="auto (GPU if any), cpu, 0, or 0,1,2,3"
    )
    train.add_argument("--name", default="detector", help="run name: weights land in weights/NAME")
    train.add_argument("--resume", action="store_true", help="continue weights/NAME/last.pt")
    train.add_argument("--weights-dir", type=Path, default=Path("weights"), help="default weights/")
    train.add_argument("--seed", type=COUNT, default=0, help="training seed (default 0)")
    train.add_argument("--workers", type=COUNT, help="data loader workers")
    train.add_argument(
        "--hours",
        type=number_in(float, 0.01),
        help="wall-clock budget: ultralytics fits the epochs into it (CPU runs)",
    )
    train.add_argument(
        "--teacher",
        help="a trained detector (.pt or released name) to distil from: a larger model "
        "teaches this one, whose weights alone are saved (ultralytics' distillation)",
    )
    train.add_argument(
        "--activation",
        choices=("relu", "silu"),  # detection.train.ACTIVATIONS, held equal by a test
        help="the model's activation instead of its own (SiLU): relu makes the int8 export "
        "1.3x as fast; from trained weights (--model neu-det), a stage that teaches them it",
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other ultralytics training argument, repeatable: a fine-tuning stage "
        "takes --set optimizer=AdamW --set lr0=0.0002 --set warmup_epochs=0",
    )
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="pycocotools per-class mAP report (our weights or any COCO results)",
        description="Score a model on a converted split, or any COCO results file against COCO "
        "ground truth, with pycocotools; write report.json/.md, per_class.csv and plots.",
    )
    evaluate.add_argument("--weights", type=Path, help="trained .pt or a released name (neu-det)")
    evaluate.add_argument(
        "--data", type=Path, help="converted dataset, or any YOLO dataset (folder or data.yaml)"
    )
    evaluate.add_argument("--split", default="val", help="split to score (default val)")
    evaluate.add_argument(
        "--predictions",
        type=Path,
        help="any detector's results, scored on --data's split or against --gt: a COCO "
        "results JSON (ultralytics' save_json too; a folder holding predictions.json, as "
        "defects predict --out writes it) or a folder of YOLO .txt results, "
        "'class cx cy w h conf' per line (ultralytics' predict with save_txt=True "
        "save_conf=True: its run folder or labels/)",
    )
    evaluate.add_argument(
        "--gt", type=Path, help="COCO ground truth JSON (with --predictions, instead of --data)"
    )
    evaluate.add_argument("--out", type=Path, required=True, help="report folder")
    evaluate.add_argument(
        "--imgsz", type=IMAGE_SIZE, help="image size (default: the training size)"
    )
    evaluate.add_argument(
        "--device", type=device_option, default="auto", help="auto, cpu or a GPU index"
    )
    evaluate.add_argument(
        "--backend",
        choices=BACKENDS,
        help="the file scored: the .pt (torch) or its onnx / onnx-int8 export (default: "
        "torch, the .pt that ultralytics' val scores beside it, as a released card does; "
        "onnx for an .onnx file)",
    )
    evaluate.add_argument(
        "--no-ultralytics",
        action="store_true",
        help="skip ultralytics' own validation beside pycocotools",
    )
    evaluate.add_argument(
        "--unseen",
        action="store_true",
        help="with --weights: score only the split's images that the model was not trained "
        "on and that overlap no image it was trained on (crops of one picture, found by their "
        "fine detail): its figures on steel it has not seen",
    )
    _add_bootstrap_arguments(evaluate)
    _add_tta_argument(evaluate)
    _add_tile_arguments(evaluate)
    _add_iou_argument(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    predict = commands.add_parser(
        "predict",
        help="detect defects in images or folders (PyTorch or ONNX Runtime)",
        description="Run a detector on images/folders. With --out: annotated images, "
        "predictions.json (COCO results with file names) and errors.json; without it: one JSON "
        "line per detection on stdout. Unreadable images are skipped and named on stderr.",
    )
    predict.add_argument("sources", type=Path, nargs="+", help="images or folders")
    predict.add_argument(
        "--weights",
        type=Path,
        required=True,
        help=".pt, .onnx (with --backend onnx) or a released name (neu-det)",
    )
    predict.add_argument(
        "--out",
        type=Path,
        help="output folder; without it, one JSON line per detection on stdout, no files",
    )
    predict.add_argument(
        "--conf",
        type=_confidence,
        default=0.25,
        help="confidence threshold (0.25); best-f1: each class's own, at its best F1 on the "
        "train split, from a released model's card; or a report.json of `defects evaluate` "
        "of these weights (its split's best F1)",
    )
    predict.add_argument(
        "--backend",
        choices=BACKENDS,
        help="onnx: ONNX Runtime, the fast CPU path (exported beside the .pt if missing or "
        "older); onnx-int8: its int8 export, faster still (released models ship it); torch: "
        "ultralytics' PyTorch (default: torch on a GPU, else onnx)",
    )
    predict.add_argument(
        "--imgsz",
        type=IMAGE_SIZE,
        help="image size (default: the training size; with per-class --conf, the size they "
        "were chosen at)",
    )
    predict.add_argument("--batch", type=POSITIVE_INT, default=16, help="images per batch (16)")
    predict.add_argument(
        "--device",
        type=device_option,
        default="auto",
        help="auto (a GPU if any), cpu, 0: a GPU runs the torch backend",
    )
    predict.add_argument("--no-images", action="store_true", help="with --out: write only the JSON")
    predict.add_argument(
        "--voc",
        action="store_true",
        help="with --out: also OUT/voc/, the detections as a Pascal VOC dataset (images "
        "linked) for annotators to correct as pre-labels; `defects convert` reads it back",
    )
    _add_tta_argument(predict)
    _add_tile_arguments(predict)
    _add_iou_argument(predict, default=None)
    predict.set_defaults(func=cmd_predict)

    export = commands.add_parser(
        "export",
        help="export weights to ONNX (optionally int8-quantised)",
        description="Export a trained detector to ONNX with dynamic batch, beside the .pt.",
    )
    export.add_argument(
        "--weights", type=Path, required=True, help="trained .pt or a released name"
    )
    export.add_argument("--format", choices=("onnx",), default="onnx", help="onnx")
    export.add_argument("--imgsz", type=IMAGE_SIZE, help="image size (default: the training size)")
    export.add_argument(
        "--int8", action="store_true", help="also write <name>.int8.onnx, statically quantised"
    )
    export.add_argument(
        "--calibration",
        type=Path,
        nargs="+",
        help="images or folders for int8 calibration",
    )
    export.add_argument(
        "--calibration-images",
        type=POSITIVE_INT,
        help=f"at most this many calibration images ({CALIBRATION_IMAGES})",
    )
    export.add_argument(
        "--int8-bits",
        type=int,
        choices=(7, 8),
        help="the int8 weights' bits: 7 (default) runs alike on every CPU; 8 loses less "
        "accuracy but overflows on CPUs without VNNI, which refuse it",
    )
    export.set_defaults(func=cmd_export)

    review = commands.add_parser(
        "review",
        help="FiftyOne review: predictions vs ground truth, tagging, export",
        description="Build a persistent FiftyOne dataset (ground truth from a converter output, "
        "predictions from --weights), evaluate it COCO-style, save annotator views and open the "
        "App on 127.0.0.1. `defects review export --name N --out DIR --to voc|yolo|coco` writes "
        "the corrected annotations: ground truth minus boxes tagged 'reject' plus predictions "
        "tagged 'accept'.",
    )
    review.add_argument("action", nargs="?", choices=("export",), help="export corrected labels")
    review.add_argument(
        "--data",
        type=Path,
        help="converter output, a YOLO dataset (folder or data.yaml), or a folder of new images",
    )
    review.add_argument(
        "--weights", type=Path, help="detector .pt or a released name (neu-det) for predictions"
    )
    review.add_argument(
        "--predictions",
        type=Path,
        help="instead of --weights, any detector's results to review: a COCO results JSON "
        "(or a defects predict --out folder) or a folder of YOLO .txt results (as evaluate "
        "takes them), matched to --data's images by file name",
    )
    review.add_argument("--split", default="val", help="split to evaluate (val)")
    review.add_argument("--name", help="FiftyOne dataset name (default defects-<data folder>)")
    review.add_argument(
        "--port", type=number_in(int, 1, 65535), default=5151, help="App port (5151)"
    )
    review.add_argument(
        "--address", default="127.0.0.1", help="App address (loopback unless you say otherwise)"
    )
    review.add_argument(
        "--backend",
        choices=BACKENDS,
        help="with --weights: onnx (the fast CPU path, exported beside the .pt if missing or "
        "older), onnx-int8 or torch (default: torch on a GPU, else onnx)",
    )
    review.add_argument(
        "--conf",
        type=PROBABILITY,
        help=f"lowest confidence of the predictions stored ({REVIEW_CONF})",
    )
    review.add_argument(
        "--rebuild",
        action="store_true",
        help="replace an existing dataset of that name (its tags are lost)",
    )
    review.add_argument("--no-launch", action="store_true", help="build and evaluate only")
    review.add_argument(
        "--near-duplicates",
        type=number_in(float, 0.0, 2.0),
        nargs="?",
        const=0.00005,
        metavar="THRESHOLD",
        help="also find near-duplicate images across splits: copies by the detector's "
        "backbone (cosine distance, default 0.00005) and shifted, re-exposed or re-encoded "
        "copies by their fine detail; saved as the view leaky-splits",
    )
    review.add_argument("--out", type=Path, help="export: output folder")
    review.add_argument("--to", choices=("voc", "yolo", "coco"), help="export: format (voc)")
    _add_tta_argument(review)
    _add_tile_arguments(review)
    _add_iou_argument(review)
    review.set_defaults(func=cmd_review)

    train_cls = commands.add_parser(
        "train-cls",
        help="image-level classifier on the detector's backbone",
        description="Train a YOLO classifier for one label per image, initialised from a trained "
        "detector's backbone. DATA: a folder per class (optionally train/ val/) or a converter "
        "output (label = the class covering the largest box area).",
    )
    train_cls.add_argument(
        "--data", type=Path, required=True, help="class folders or converter OUT"
    )
    train_cls.add_argument(
        "--backbone",
        default="neu-det",
        help="detector .pt or released name whose backbone initialises the classifier (the "
        "released neu-det), or none",
    )
    train_cls.add_argument("--model", default="yolo11n-cls.yaml", help="classifier definition")
    train_cls.add_argument("--imgsz", type=IMAGE_SIZE, default=224, help="image size (224)")
    train_cls.add_argument("--epochs", type=POSITIVE_INT, default=10, help="epochs (10)")
    train_cls.add_argument("--batch", type=POSITIVE_INT, default=32, help="batch size (32)")
    train_cls.add_argument("--device", type=device_option, default="auto", help="auto, cpu, 0")
    train_cls.add_argument("--name", default="classifier", help="weights/NAME")
    train_cls.add_argument(
        "--background-class", help="converter output: images with no boxes become this class"
    )
    train_cls.add_argument("--weights-dir", type=Path, default=Path("weights"))
    train_cls.add_argument("--seed", type=COUNT, default=0)
    train_cls.add_argument("--workers", type=COUNT, help="data loader workers")
    train_cls.set_defaults(func=cmd_train_cls)

    compare = commands.add_parser(
        "compare",
        help="paired comparison of detectors: does B really beat A?",
        description="Score two or more detectors on the same ground truth with 95% bootstrap "
        "intervals, and each later one's paired difference to the first (the same resampled "
        "images for all), with its interval and p-value, overall and per class. Writes "
        "report.json, report.md and differences.png (a forest plot).",
    )
    compare.add_argument(
        "--gt", type=Path, help="COCO ground truth (with --predictions, instead of --data)"
    )
    compare.add_argument(
        "--predictions",
        type=Path,
        nargs="+",
        help="COCO results files (or defects predict --out folders) or folders of YOLO .txt "
        "results (as evaluate takes them), A first",
    )
    compare.add_argument(
        "--data",
        type=Path,
        help="converted dataset, or any YOLO dataset (folder or data.yaml): its split is "
        "scored (with --weights or --predictions)",
    )
    compare.add_argument(
        "--weights", type=Path, nargs="+", help=".pt files or released names, A first"
    )
    compare.add_argument("--names", help="the models' names, comma-separated")
    compare.add_argument("--split", default="val", help="with --data: the split (val)")
    compare.add_argument("--imgsz", type=IMAGE_SIZE, help="with --weights: image size")
    compare.add_argument(
        "--device", type=device_option, default="auto", help="with --weights: auto, cpu, 0"
    )
    compare.add_argument(
        "--backend",
        choices=BACKENDS,
        help="with --weights: every model run by torch, onnx or onnx-int8 (default: each "
        "file by its own, torch for a .pt and onnx for an .onnx, so a .pt is compared with "
        "its export as given)",
    )
    compare.add_argument(
        "--unseen",
        action="store_true",
        help="with --weights: score only the split's images that no model here was trained "
        "on, nor overlap an image one was trained on (crops of one picture, found by their "
        "fine detail), so models trained on different splits compare fairly",
    )
    compare.add_argument("--out", type=Path, required=True, help="report folder")
    _add_bootstrap_arguments(compare)
    _add_tta_argument(compare)
    _add_tile_arguments(compare)
    _add_iou_argument(compare)
    compare.set_defaults(func=cmd_compare)

    release = commands.add_parser(
        "release",
        help="publish a trained run as a released model (models/NAME) with its card",
        description="Copy a run's best.pt to models/NAME/model.pt, export model.onnx and "
        "model.int8.onnx (kept within 0.01 mAP50 of fp32), score them on the val split "
        "(pycocotools and ultralytics), measure CPU throughput, draw its weakest classes and "
        "write card.json and card.md. Then --weights NAME works anywhere.",
    )
    release.add_argument(
        "--run",
        type=Path,
        nargs="+",
        required=True,
        help="the training runs in order (weights/NAME ...); the last one's best.pt is released",
    )
    release.add_argument("--data", type=Path, required=True, help="the converted dataset")
    release.add_argument("--name", required=True, help="released name, e.g. neu-det")
    release.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="default models/")
    release.add_argument(
        "--max-mb",
        type=number_in(float, 0.0, None),
        default=MAX_RELEASE_MB,
        help=f"the most the release folder may take, in MB ({MAX_RELEASE_MB:g}: every version "
        "stays in git history; yolo11n at 320 px takes 20.2)",
    )
    release.set_defaults(func=cmd_release)

    classify = commands.add_parser(
        "classify",
        help="top-k classes per image, optional Grad-CAM heatmaps",
        description="Classify images with a train-cls model: predictions.json with top-k "
        "probabilities, and with --heatmap a Grad-CAM overlay per image.",
    )
    classify.add_argument("sources", type=Path, nargs="+", help="images or folders")
    classify.add_argument("--weights", type=Path, required=True, help="classifier .pt")
    classify.add_argument(
        "--out",
        type=Path,
        help="output folder; without it, one JSON line per image on stdout, no files",
    )
    classify.add_argument("--top-k", type=POSITIVE_INT, default=3, help="classes per image (3)")
    classify.add_argument("--heatmap", action="store_true", help="write Grad-CAM overlays")
    classify.add_argument(
        "--imgsz", type=IMAGE_SIZE, help="image size (default: the training size)"
    )
    classify.set_defaults(func=cmd_classify)
