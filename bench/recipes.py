"""Benchmark: the time-to-accuracy study, training recipes on one fixed wall-clock budget.

Every variant trains on the same converted data (the seeded 80/20 NEU-DET split), with
the same seed, for the same ``--hours`` (ultralytics fits its epochs into the budget and
its learning-rate schedule with them), one after the other so each has the machine to
itself; then each ``best.pt`` is scored with pycocotools on the val split, with a
bootstrap interval. The variant with the highest val mAP50 per budget is the recipe.

    make bench-recipes                         # every variant, 25 minutes each
    make bench-recipes HOURS=0.1 ONLY=yolo11n-224,yolo11n-320

Results: ``bench/results/recipes.json`` and a Markdown table (printed) for
docs/benchmarks.md, each row with the exact command that reproduces it. Runs land in
``weights/study-NAME`` (git-ignored); a variant whose run has its ``best.pt`` is scored
again, not retrained, so a study cut short continues with the next variant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import detection.offline  # noqa: E402,F401
from bench.common import RESULTS, machine, save  # noqa: E402

# name -> (model definition, image size, extra ultralytics training arguments). The
# baseline is the released model's recipe; each other row changes one thing.
VARIANTS: dict[str, tuple[str, int, dict]] = {
    "yolo11n-224": ("yolo11n.yaml", 224, {}),
    "yolo26n-224": ("yolo26n.yaml", 224, {}),  # NMS-free head, MuSGD
    "yolo11n-256": ("yolo11n.yaml", 256, {}),
    "yolo11n-320": ("yolo11n.yaml", 320, {}),
    "yolo11n-224-cache": ("yolo11n.yaml", 224, {"cache": "ram"}),
    "yolo11n-224-no-mosaic": ("yolo11n.yaml", 224, {"mosaic": 0.0}),
    "yolo11n-224-cos-lr": ("yolo11n.yaml", 224, {"cos_lr": True}),
    "yolo11n-224-sgd": ("yolo11n.yaml", 224, {"optimizer": "SGD", "lr0": 0.01}),
    # A short budget spends its first 3 epochs (a fifth of it) warming up by default.
    "yolo11n-224-warmup1": ("yolo11n.yaml", 224, {"warmup_epochs": 1.0}),
    "yolo11s-224": ("yolo11s.yaml", 224, {}),  # the wider model: 3.4x the FLOPs
    # Not random and not downloaded: layers 0-8 from a yolo11n-cls trained first on
    # NEU-DET's image-level labels (the same train split); its time counts in the budget.
    "yolo11n-224-cls-start": ("yolo11n.yaml", 224, {}),
    # Grayscale steel read as one channel: a third of the decoding, mosaic and stem.
    "yolo11n-224-gray": ("yolo11n.yaml", 224, {}),
    # Not random and not downloaded either: the whole detector pretrained on synthetic
    # steel (`defects synth`: NEU-DET's six classes, in its order, drawn on procedural
    # textures) for a third of the budget, then trained on NEU-DET from those weights.
    "yolo11n-224-synth-start": ("yolo11n.yaml", 224, {}),
}
# Variants that first train a classifier for this many epochs, the detector then gets
# what is left of the budget.
CLASSIFIER_EPOCHS = {"yolo11n-224-cls-start": 8}
# Variants pretrained on this many synthetic images (generated and converted once, outside
# the budget, as NEU-DET's conversion is), for SYNTH_SHARE of the budget.
SYNTH_IMAGES = {"yolo11n-224-synth-start": 2000}
SYNTH_SHARE = 1 / 3
# Variants that change the dataset's own settings (its data.yaml).
DATA_SETTINGS = {"yolo11n-224-gray": {"channels": 1}}

TRAIN = """
import json, sys
from detection.train import train
name, runs, data, model, imgsz, hours, workers, batch, extra, backbone = sys.argv[1:]
train(data, name, model=model, imgsz=int(imgsz), batch=int(batch), device="cpu",
      weights_dir=runs, seed=0, workers=int(workers), hours=float(hours),
      extra=json.loads(extra), backbone=backbone or None)
"""
TRAIN_CLASSIFIER = """
import sys
from detection.classify import train_classifier
name, runs, data, imgsz, epochs, workers, batch = sys.argv[1:]
train_classifier(data, name, imgsz=int(imgsz), epochs=int(epochs), batch=int(batch),
                 device="cpu", weights_dir=runs, seed=0, workers=int(workers))
"""


def command(name: str, args: argparse.Namespace) -> str:
    """The command that reproduces one row."""
    return (
        f"python bench/recipes.py --only {name} --hours {args.hours} --data {args.data} "
        f"--workers {args.workers} --batch {args.batch}"
    )


def run_variant(name: str, runs: Path, data: Path, hours: float, workers: int, batch: int) -> None:
    """Trains one variant in its own process (its pretraining first, in another, if any)."""
    model, imgsz, extra = VARIANTS[name]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    backbone = ""
    if name in CLASSIFIER_EPOCHS:
        argv = [f"study-{name}-cls", str(runs), str(data), str(imgsz)]
        argv += [str(CLASSIFIER_EPOCHS[name]), str(workers), str(batch)]
        classifier = [sys.executable, "-c", TRAIN_CLASSIFIER, *argv]
        hours -= _pretrain(
            runs / f"study-{name}", classifier, {"epochs": CLASSIFIER_EPOCHS[name]}, env
        )
        backbone = str(runs / f"study-{name}-cls" / "best.pt")
    if name in SYNTH_IMAGES:
        synthetic = _synthetic_data(runs / f".study-{name}-synth", SYNTH_IMAGES[name], env)
        argv = [f"study-{name}-pre", str(runs), str(synthetic), model, str(imgsz)]
        argv += [str(hours * SYNTH_SHARE), str(workers), str(batch), json.dumps(extra), ""]
        pretraining = [sys.executable, "-c", TRAIN, *argv]
        hours -= _pretrain(
            runs / f"study-{name}", pretraining, {"synthetic_images": SYNTH_IMAGES[name]}, env
        )
        model = str(runs / f"study-{name}-pre" / "best.pt")
    if name in DATA_SETTINGS:
        import yaml

        settings = yaml.safe_load((data / "data.yaml").read_text())
        settings["path"] = str((data / settings.get("path", ".")).resolve())
        data = runs / f".study-{name}-data.yaml"
        data.write_text(yaml.safe_dump({**settings, **DATA_SETTINGS[name]}))
    argv = [f"study-{name}", str(runs), str(data), model, str(imgsz), str(hours)]
    argv += [str(workers), str(batch), json.dumps(extra), backbone]
    subprocess.run([sys.executable, "-c", TRAIN, *argv], cwd=REPO, check=True, env=env)


def _pretrain(run: Path, command: list[str], record: dict, env: dict) -> float:
    """Runs a variant's pretraining ``command`` (a classifier, a detector on synthetic
    images), whose time counts in the variant's budget, and records it with its hours in
    ``RUN/pretraining.json`` (which :func:`score` reads). Returns the hours."""
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, env=env)
    hours = (time.perf_counter() - started) / 3600
    run.mkdir(parents=True, exist_ok=True)
    (run / "pretraining.json").write_text(json.dumps({**record, "hours": hours}) + "\n")
    return hours


def _synthetic_data(folder: Path, images: int, env: dict) -> Path:
    """``defects synth`` images converted with the study's split ratios and seed (made
    once; a second run reuses them)."""
    converted = folder / "data"
    if not (converted / "data.yaml").is_file():
        defects = [sys.executable, "-m", "detection.cli"]
        synth = [*defects, "synth", "--out", str(folder / "src"), "--images", str(images)]
        subprocess.run([*synth, "--seed", "0"], cwd=REPO, check=True, env=env)
        convert = [*defects, "convert", str(folder / "src"), "--dataset", "synthetic"]
        convert += ["--out", str(converted), "--split", "0.8,0.2", "--seed", "0"]
        subprocess.run(convert, cwd=REPO, check=True, env=env)
    return converted


def score(name: str, runs: Path, data: Path) -> dict:
    """pycocotools figures of a variant's best.pt on the val split, with 1,000 bootstrap
    replicates, and what its run did in the budget."""
    import tempfile

    from detection.evaluate import evaluate_model
    from detection.release import training_stage

    run = runs / f"study-{name}"
    with tempfile.TemporaryDirectory(prefix="bench-recipes-") as tmp:
        report = evaluate_model(run / "best.pt", data, Path(tmp), with_ultralytics=False)
    stage = training_stage(run)  # epochs and training time, as a model card records them
    # Time spent before the detector's own run (a classifier, synthetic pretraining).
    before = run / "pretraining.json"
    pretraining_hours = json.loads(before.read_text())["hours"] if before.is_file() else 0.0
    return {
        "mAP50": report["metrics"]["AP50"],
        "mAP50_ci": report["mAP50_ci"],
        "mAP50-95": report["metrics"]["AP50:95"],
        "epochs": stage["epochs"],
        "training_hours": stage["wall_time_h"] + pretraining_hours,
        "pretraining_hours": pretraining_hours,
        "seconds_per_epoch": stage["wall_time_h"] * 3600 / stage["epochs"],
        "per_class_ap50": {c["name"]: c["ap50"] for c in report["per_class"]},
    }


def markdown(results: dict, args: argparse.Namespace) -> str:
    lines = [
        f"| variant | epochs in {args.hours} h | s/epoch | mAP50 [95% CI] | mAP50:95 | command |",
        "|---|---:|---:|---|---:|---|",
    ]
    ranked = sorted(results.items(), key=lambda item: -item[1]["mAP50"])
    for name, r in ranked:
        low, high = r["mAP50_ci"] or (float("nan"), float("nan"))
        lines.append(
            f"| {name} | {r['epochs']} | {r['seconds_per_epoch']:.0f} | {r['mAP50']:.3f} "
            f"[{low:.3f}, {high:.3f}] | {r['mAP50-95']:.3f} | `{command(name, args)}` |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets/converted/neu-det"))
    parser.add_argument("--hours", type=float, default=25 / 60, help="budget per variant")
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=Path, default=REPO / "weights", help="runs folder")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    # Rows of earlier runs on the same budget and machine stay in the table (a budget buys
    # other epochs elsewhere); a variant run now replaces its own.
    saved = RESULTS / "recipes.json"
    earlier = json.loads(saved.read_text()) if saved.is_file() else {}
    same = earlier.get("hours") == args.hours and earlier.get("machine") == machine()
    results = dict(earlier.get("results", {})) if same else {}
    for name in names:
        if not (args.runs / f"study-{name}" / "best.pt").is_file():
            run_variant(name, args.runs, args.data, args.hours, args.workers, args.batch)
        results[name] = score(name, args.runs, args.data)
        print(name, json.dumps(results[name]), flush=True)
    table = markdown(results, args)
    save("recipes", {"machine": machine(), "hours": args.hours, "results": results})
    print(table)


if __name__ == "__main__":
    main()
