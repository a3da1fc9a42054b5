"""Command-line plumbing shared by the ``defects`` subcommands: a stderr console, a
progress bar, ultralytics' own output kept off stdout, and the number and device types of
their options. Library code takes a ``progress(done, total)`` callable instead."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and its noun, singular for one: ``counted(1, "box", "boxes")`` is
    "1 box"."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def stderr_console() -> Console:
    """A rich console on stderr (stdout stays free for reports and JSON).

    Its lines are never broken at the console's width (80 columns off a terminal): a
    path split over two lines of a log cannot be searched for or copied. Nothing printed
    is read as markup: a folder ``cam[left]`` or a message naming ``[x1, y1, x2, y2]``
    was printed without its brackets; colours are given as ``style``.
    """
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


@contextmanager
def ultralytics_off_stdout(quiet: bool = False) -> Iterator[None]:
    """Ultralytics' console output (its logger, progress bars and prints) goes to stderr
    for the duration: stdout keeps to the command's report or JSON lines, which
    ``defects evaluate ... > report.md`` had ultralytics' validation lines in front of.
    ``quiet`` keeps only its warnings (an export's lines name the temporary folder it
    wrote into, gone by the time they are read, and suggest commands on that file).

    Its logger's handler holds the stdout it found at import, out of ``redirect_stdout``'s
    reach, so the handler itself is pointed at stderr (a training run's log file, a
    handler of another kind, is left alone).
    """
    import contextlib
    import logging

    from ultralytics.utils import LOGGER

    consoles = [h for h in LOGGER.handlers if type(h) is logging.StreamHandler]
    # Assigned, not setStream(): that flushes the stream it replaces, and one already
    # closed (a test's captured stdout, held since the import) would raise.
    streams = [handler.stream for handler in consoles]
    for handler in consoles:
        handler.stream = sys.stderr
    level = LOGGER.level
    if quiet:
        LOGGER.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        LOGGER.setLevel(level)
        for handler, stream in zip(consoles, streams):
            handler.stream = stream


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar driven by ``update(done, total)`` calls; silent off a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        # Not markup: a description names weights, whose path may hold brackets.
        TextColumn("{task.description}", style="progress.description", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def number_in(
    kind: type[int] | type[float], low: float, high: float | None = None
) -> Callable[[str], int | float]:
    """An argparse ``type`` that reads an int or float in ``[low, high]``, so that an
    out-of-range option is a usage error naming it, not a traceback from deep inside
    ultralytics (``--conf 2``) or Python (``--batch 0``)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value != value or value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text} is out of range (expected {bounds})")
        return value

    return parse


POSITIVE_INT = number_in(int, 1)
# --imgsz: at most 4096 pixels, ten times the release's 416 and twice a GC10-DET strip's
# 2048 (one image at 4096 takes 5.5 GB to detect). At 8192 the detector's attention layer
# alone asks 32 GiB for one image; a classifier at 100000 grew until the kernel killed it,
# with nothing said.
IMAGE_SIZE = number_in(int, 1, 4096)
COUNT = number_in(int, 0)
PROBABILITY = number_in(float, 0.0, 1.0)


def device_option(text: str) -> str:
    """An argparse ``type`` for ``--device``: ``auto``, ``cpu``, ``mps`` or GPU indices
    (``0``, ``0,1,2,3``; ``cuda`` and ``cuda:1`` read as ``0`` and ``1``, as ultralytics
    reads them), each checked against what torch sees here, so that a GPU this
    machine lacks is a usage error naming it, not ultralytics' traceback at the first
    batch (after the dataset and the model were loaded)."""
    value = text.strip().lower()
    if value in ("auto", "cpu"):
        return value
    import torch

    if value == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError("mps: no Apple GPU here; use auto or cpu")
        return value
    indices = [
        "0" if index == "cuda" else index.removeprefix("cuda:") for index in value.split(",")
    ]
    if not all(index.isdigit() for index in indices):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device (auto, cpu, mps, or GPU indices such as 0, 0,1 or cuda:0)"
        )
    count = torch.cuda.device_count()
    missing = [index for index in indices if int(index) >= count]
    if missing:
        seen = f"GPUs 0..{count - 1}" if count else "no CUDA GPU"
        raise argparse.ArgumentTypeError(
            f"GPU {', '.join(missing)} requested; torch sees {seen} here (use auto or cpu)"
        )
    return ",".join(indices)
