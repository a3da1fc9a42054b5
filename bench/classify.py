"""Benchmark: NEU-DET image-level classification, detector-backbone init against scratch.

Labels come from the converted NEU-DET (largest box area per image, the converters'
seeded 80/20 split). Both classifiers are yolo11n-cls at the same image size, epochs and
seed; one starts from the trained NEU-DET detector's backbone, one from scratch. Their
per-epoch validation top-1 curves are drawn side by side from this one run.

    make bench-classify   (the backbone: the released neu-det model, or BACKBONE=...)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import detection.offline  # noqa: E402,F401
from bench.common import save  # noqa: E402
from detection.classify import train_classifier  # noqa: E402


def curve(run_dir: Path) -> list[float]:
    with open(run_dir / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    key = next(k for k in rows[0] if "top1" in k)
    return [float(row[key]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "datasets/converted/neu-det")
    parser.add_argument("--backbone", default="neu-det", help=".pt or a released name")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    weights_dir = REPO / "weights"
    runs = {}
    for label, backbone in (("backbone", args.backbone), ("scratch", None)):
        started = time.perf_counter()
        summary = train_classifier(
            args.data,
            f"neu-cls-{label}",
            backbone,
            imgsz=args.imgsz,
            epochs=args.epochs,
            device=args.device,
            weights_dir=weights_dir,
        )
        runs[label] = {
            **summary,
            "seconds": time.perf_counter() - started,
            "val_top1_per_epoch": curve(weights_dir / f"neu-cls-{label}"),
        }

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4), dpi=120)
    for label, run in runs.items():
        values = run["val_top1_per_epoch"]
        axis.plot(
            range(1, len(values) + 1),
            values,
            marker="o",
            label=f"{label}: final top-1 {run['top1']:.4f}",
        )
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation top-1")
    axis.set_title(f"NEU-DET image-level, yolo11n-cls, imgsz {args.imgsz}")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(REPO / "docs" / "classification_curves.png")
    save("classify", runs)
    print(
        json.dumps(
            {
                k: {
                    "top1": v["top1"],
                    "top5": v["top5"],
                    "seconds": v["seconds"],
                    "transfer": v["transfer"],
                }
                for k, v in runs.items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
