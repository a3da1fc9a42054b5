"""Benchmark: where a CPU training epoch goes, waiting for data against forward/backward.

Each configuration trains one epoch of yolo11n from scratch on the converted NEU-DET
train split (half of it, ``--fraction``), through ``detection.train.train`` as
`defects train` does, and times every batch with ultralytics' callbacks: from the end of
one batch to the start of the next is the wait for the loader (decoding, mosaic,
albumentations, collation), from start to end is the model (preprocess, forward, loss,
backward, optimiser step). Ultralytics loads data in the main process when it trains on
the CPU (it sets ``workers`` to 0), so the two never overlap there.

    make bench-profile     # recipe, ultralytics' own threads, workers 0, cache ram, no
                           # mosaic, 320 px (ultralytics forces workers 0 on the CPU, so
                           # the recipe and workers 0 coincide)

The recipe runs torch on every usable core (``detection.threads``); ultralytics alone
gives it ``os.cpu_count() - 1`` threads, one of two cores here.

Results: ``bench/results/profile_train.json`` and a Markdown table (printed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import detection.offline  # noqa: E402,F401
from bench.common import machine, save  # noqa: E402
from detection.threads import ultralytics_threads  # noqa: E402
from detection.train import train  # noqa: E402

if TYPE_CHECKING:
    from ultralytics.engine.trainer import BaseTrainer

# name -> (image size, loader workers, more ultralytics training arguments, torch threads:
# None for ours, every usable core; "ultralytics" for its own os.cpu_count() - 1)
CONFIGURATIONS: dict[str, tuple[int, int, dict, str | None]] = {
    "recipe (224 px, 2 workers)": (224, 2, {}, None),
    "ultralytics' own threads (cpu_count - 1)": (224, 2, {}, "ultralytics"),
    "workers 0 (loading in the main process)": (224, 0, {}, None),
    "cache: ram": (224, 2, {"cache": "ram"}, None),
    "mosaic off": (224, 2, {"mosaic": 0.0}, None),
    "320 px": (320, 2, {}, None),
}


class BatchClock:
    """Ultralytics callbacks that split each batch's time into loader wait and model."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.steps: list[float] = []
        self.threads = 0
        self._mark = 0.0

    def epoch_start(self, trainer: BaseTrainer) -> None:
        self._mark = time.perf_counter()

    def batch_start(self, trainer: BaseTrainer) -> None:
        import torch

        self.threads = torch.get_num_threads()
        now = time.perf_counter()
        self.waits.append(now - self._mark)
        self._mark = now

    def batch_end(self, trainer: BaseTrainer) -> None:
        now = time.perf_counter()
        self.steps.append(now - self._mark)
        self._mark = now

    def callbacks(self) -> dict:
        return {
            "on_train_epoch_start": self.epoch_start,
            "on_train_batch_start": self.batch_start,
            "on_train_batch_end": self.batch_end,
        }


def profile(
    data: Path,
    imgsz: int,
    workers: int,
    extra: dict,
    fraction: float,
    batch: int,
    threads: str | None = None,
) -> dict:
    """One epoch of one configuration, its batches timed."""
    clock = BatchClock()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as runs, _threads(threads):
        train(
            data,
            "profile",
            model="yolo11n.yaml",
            imgsz=imgsz,
            epochs=1,
            batch=batch,
            device="cpu",
            weights_dir=Path(runs),
            seed=0,
            workers=workers,
            extra={"fraction": fraction, "plots": False, **extra},
            callbacks=clock.callbacks(),
        )
    wait, step = sum(clock.waits), sum(clock.steps)
    return {
        "threads": clock.threads,
        "batches": len(clock.steps),
        "first_wait_s": clock.waits[0],
        "median_wait_s": statistics.median(clock.waits[1:]),
        "median_step_s": statistics.median(clock.steps),
        "wait_s": wait,
        "step_s": step,
        "wait_share": wait / (wait + step),
    }


@contextlib.contextmanager
def _threads(threads: str | None) -> Iterator[None]:
    """``OMP_NUM_THREADS`` (set by detection.offline, read when a trainer is made) at
    ultralytics' own count for ``"ultralytics"``, as it was otherwise."""
    chosen = os.environ["OMP_NUM_THREADS"]
    if threads == "ultralytics":
        os.environ["OMP_NUM_THREADS"] = str(ultralytics_threads())
    try:
        yield
    finally:
        os.environ["OMP_NUM_THREADS"] = chosen


def markdown(results: dict) -> str:
    baseline = results[next(iter(CONFIGURATIONS))]
    per_batch = (baseline["wait_s"] + baseline["step_s"]) / baseline["batches"]
    lines = [
        "| configuration | torch threads | batches | loader wait, median s/batch "
        "| model, median s/batch | share waiting | s/batch in all | against the recipe |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        total = (r["wait_s"] + r["step_s"]) / r["batches"]
        lines.append(
            f"| {name} | {r['threads']} | {r['batches']} | {r['median_wait_s']:.3f} "
            f"| {r['median_step_s']:.3f} | {r['wait_share']:.1%} | {total:.3f} "
            f"| {total / per_batch:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "datasets/converted/neu-det")
    parser.add_argument("--fraction", type=float, default=0.5, help="of the train split")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    results = {}
    for name, (imgsz, workers, extra, threads) in CONFIGURATIONS.items():
        results[name] = profile(
            args.data, imgsz, workers, extra, args.fraction, args.batch, threads
        )
        print(name, results[name], flush=True)
    save("profile_train", {"machine": machine(), "fraction": args.fraction, "results": results})
    print(markdown(results))


if __name__ == "__main__":
    main()
