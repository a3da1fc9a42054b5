"""Command-line plumbing shared by the ``defects`` subcommands: a stderr console, a
progress bar and the number types of their options. Library code takes a
``progress(done, total)`` callable instead."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def stderr_console():
    """A rich console on stderr (stdout stays free for reports and JSON).

    Its lines are never broken at the console's width (80 columns off a terminal): a
    path split over two lines of a log cannot be searched for or copied.
    """
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar driven by ``update(done, total)`` calls; silent off a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
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


def number_in(kind: type[int] | type[float], low: float, high: float | None = None):
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
COUNT = number_in(int, 0)
PROBABILITY = number_in(float, 0.0, 1.0)
