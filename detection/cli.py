"""The ``defects`` command line: one entry point, a subcommand per job.

Start-up stays light: ``converters`` never imports torch, ultralytics or fiftyone, and
each subcommand imports its heavy modules only when it runs.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import select
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from converters.errors import ConversionError, Report
from converters.layouts import FORMATS
from converters.model import SPLITS
from detection import offline  # noqa: F401  (sets the offline switches first)
from detection.console import COUNT, POSITIVE_INT, counted, progress_bar, stderr_console

if TYPE_CHECKING:
    from rich.console import Console

    from converters.definitions import DatasetDefinition


def _definition(args: argparse.Namespace) -> DatasetDefinition | None:
    from converters.definitions import from_class_list, load_definition

    if getattr(args, "classes", None) and getattr(args, "classes_file", None):
        raise ConversionError("give --classes or --classes-file, not both")
    if getattr(args, "classes", None):
        return from_class_list(args.classes.split(","))
    if getattr(args, "classes_file", None):
        return load_definition(Path(args.classes_file))
    if getattr(args, "dataset", None):
        return load_definition(args.dataset)
    return None


def _print_report(report: Report, boxes_written: int | None, limit: int) -> None:
    from rich.table import Table
    from rich.text import Text

    console = stderr_console()
    summary = report.to_dict(boxes_written)["summary"]
    if report.problems:
        table = Table(title="Problems found", show_lines=False)
        for column in ("problem", "severity", "count"):
            table.add_column(column)
        for problem, count in summary["problems_by_kind"].items():
            severity = next(p.severity for p in report.problems if p.problem == problem)
            table.add_row(problem, severity, str(count))
        console.print(table)
        for p in report.problems[:limit]:
            where = f"{p.file}" + (
                f" object {p.object_index}" if p.object_index is not None else ""
            )
            console.print(
                Text.assemble(f"  {where}: ", (p.problem, "bold"), f": {p.detail} -> {p.action}")
            )
        if len(report.problems) > limit:
            console.print(f"  ... and {len(report.problems) - limit} more (see report.json)")
    line = f"boxes in input {summary['boxes_in_input']}, dropped {summary['boxes_dropped']}"
    if boxes_written is not None:
        line += f", written {boxes_written}"
    console.print(line)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="dataset folder (NEU-DET, GC10-DET or Pascal VOC)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="layout family; detected from the folder when omitted",
    )
    parser.add_argument("--classes", help="generic VOC: class names in id order, comma-separated")
    parser.add_argument("--classes-file", help="generic VOC: YAML with a 'classes' list")
    parser.add_argument("--dataset", help="dataset definition in datasets/ to use (e.g. synthetic)")
    parser.add_argument(
        "--unlabeled-as-background",
        action="store_true",
        help="keep images with no annotation file as defect-free images",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit non-zero if any box is dropped or any image skipped",
    )


def cmd_convert(args: argparse.Namespace) -> int:
    from converters.convert import convert
    from converters.split import parse_ratios

    ratios = parse_ratios(args.split)
    if args.keep_overlaps:  # the longest part: half a minute for NEU-DET
        stderr_console().print("--keep-overlaps: the images' pixels are compared after that")
    with progress_bar("Reading annotations") as update:
        result = convert(
            args.src,
            args.out,
            args.format,
            _definition(args),
            ratios,
            args.seed,
            args.resplit,
            args.copy_images,
            args.unlabeled_as_background,
            update,
            args.keep_overlaps,
        )
    console = stderr_console()
    source = result.source
    console.print(f"Detected layout: {source.layout.layout} -> dataset '{source.definition.name}'")
    _print_report(source.report, source.dataset.box_count, args.show)
    for split, counts in result.manifest["counts"].items():
        console.print(
            f"  {split}: {counted(counts['images'], 'image')}, "
            f"{counted(counts['boxes'], 'box', 'boxes')}"
        )
    # A ratio above 0 that leaves a split empty (0.2 of 3 images): train then refuses it.
    counts = result.manifest["counts"]
    empty = [
        name
        for name, ratio in zip(SPLITS, ratios)
        if ratio > 0 and not counts.get(name, {}).get("images")
    ]
    # Where the source gives a split of its own, --split and --seed place only the images
    # it leaves out: the advice is --resplit.
    kept = bool(source.layout.given_split) and not args.resplit
    if empty:
        console.print(
            f"note: no {' and no '.join(empty)} images (of "
            f"{counted(len(result.manifest['split_of_image']), 'image')}, --split {args.split}); "
            + (
                "training needs train and val images: "
                if {"train", "val"} & set(empty)
                else "`evaluate --split test` has none to score: "
            )
            + (
                _KEPT_SPLIT
                if kept
                else "convert more, or give "
                f"{'that split' if len(empty) == 1 else 'those splits'} a larger ratio"
            ),
            style="yellow",
        )
    _note_classes_without_boxes(console, counts, args.split, kept)
    if (overlapping := result.manifest["overlapping_images"]) is not None:
        console.print(
            f"--keep-overlaps: {counted(len(overlapping), 'group')} of overlapping crops "
            f"({counted(sum(map(len, overlapping)), 'image')}) each in one split"
        )
    console.print(f"Wrote {result.out} (data.yaml, labels, COCO annotations, manifest, report)")
    if args.strict and result.failed_strict:
        console.print(f"--strict: {len(source.report.errors)} problems dropped data", style="red")
        return 1
    return 0


_KEPT_SPLIT = "the split is the source's own, kept as given; --resplit splits by --split and --seed"


def _note_classes_without_boxes(
    console: Console, counts: dict[str, dict], ratios: str, kept: bool
) -> None:
    """Says which classes a split leaves without a box
    (:func:`converters.convert.classes_without_boxes`): unlearnt in train, unscored in
    val or test; and how another split may place some there (``kept``: the source's own
    split was kept, which --split and --seed do not move)."""
    from converters.convert import classes_without_boxes_said

    for split, sentence in classes_without_boxes_said(counts):
        advice = (
            ""
            if split is None
            else f"; {_KEPT_SPLIT}"
            if kept
            else f"; another --seed or a larger {split} ratio than --split {ratios} may place "
            "some there"
        )
        console.print(f"note: {sentence}{advice}", style="yellow")


def cmd_validate(args: argparse.Namespace) -> int:
    from converters.source import read_dataset

    with progress_bar("Reading annotations") as update:
        source = read_dataset(
            args.src, args.format, _definition(args), args.unlabeled_as_background, update
        )
    per_class = Counter(box.label for image in source.dataset.images for box in image.boxes)
    boxes_per_class = {name: per_class[name] for name in source.dataset.classes}
    if args.json:
        report = source.report.to_dict(source.dataset.box_count)
        print(json.dumps({**report, "boxes_per_class": boxes_per_class}, indent=2))
    else:
        console = stderr_console()
        console.print(
            f"Detected layout: {source.layout.layout} -> dataset "
            f"'{source.definition.name}', {counted(len(source.dataset.images), 'image')}"
        )
        _print_report(source.report, source.dataset.box_count, args.show)
        # Each class at a glance, none left out: a class of the list with no box shows 0.
        console.print(
            "boxes per class: " + ", ".join(f"{n} {c}" for n, c in boxes_per_class.items())
        )
    return 1 if args.strict and source.report.errors else 0


def cmd_synth(args: argparse.Namespace) -> int:
    from converters.synth import synth_dataset

    with progress_bar("Drawing images") as update:
        written = synth_dataset(args.out, args.images, args.seed, update)
    boxes = sum(len(image.boxes) for image in written)
    stderr_console().print(
        f"Wrote {counted(len(written), 'image')} with {counted(boxes, 'box', 'boxes')} to "
        f"{args.out} (NEU-DET layout)"
    )
    return 0


class _PrintVersions(argparse.Action):
    """``--version``: one line, not wrapped at the terminal's width as argparse's is."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the versions and exit")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        from detection.versions import versions_line

        print(versions_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="defects",
        description="Steel surface defects: convert VOC datasets, train YOLO, evaluate, predict.",
    )
    parser.add_argument("--version", action=_PrintVersions)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = commands.add_parser(
        "convert",
        help="VOC dataset -> YOLO + COCO with a problem report",
        description="Convert NEU-DET, GC10-DET or Pascal VOC into "
        "YOLO labels and COCO JSON, split and validated.",
    )
    _add_source_arguments(convert)
    convert.add_argument("--out", type=Path, required=True, help="output folder (replaced whole)")
    convert.add_argument(
        "--split", default="0.8,0.2", help="train,val[,test] ratios (default 0.8,0.2)"
    )
    convert.add_argument("--seed", type=COUNT, default=0, help="split seed (default 0)")
    convert.add_argument("--resplit", action="store_true", help="ignore a split the source gives")
    convert.add_argument(
        "--keep-overlaps",
        action="store_true",
        help="keep overlapping crops of one picture in one split, as identical files are "
        "(compares every image's pixels: about 30 s for NEU-DET)",
    )
    convert.add_argument(
        "--copy-images", action="store_true", help="copy images instead of symlinks"
    )
    convert.add_argument(
        "--show", type=COUNT, default=20, help="problems to print (all in report.json)"
    )
    convert.set_defaults(func=cmd_convert)

    validate = commands.add_parser(
        "validate", help="report every problem in a dataset, write nothing"
    )
    _add_source_arguments(validate)
    validate.add_argument("--json", action="store_true", help="print the full report as JSON")
    validate.add_argument("--show", type=COUNT, default=50, help="problems to print")
    validate.set_defaults(func=cmd_validate)

    synth = commands.add_parser("synth", help="write the embedded synthetic NEU-DET-like dataset")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument(
        "--images", type=POSITIVE_INT, default=400, help="number of images (default 400)"
    )
    synth.add_argument("--seed", type=COUNT, default=0, help="random seed (default 0)")
    synth.set_defaults(func=cmd_synth)

    from detection.commands import add_detection_commands

    add_detection_commands(commands)
    return parser


def _plain(message: str) -> str:
    """The message without terminal colour codes: ultralytics colours the errors it
    raises (``colorstr``), which a log file or a CI page shows as ``[34m[1mval: [0m``."""
    return re.sub(r"\x1b\[[0-9;]*m", "", message)


# An allocation that failed, as each library says it: Python and numpy (MemoryError),
# OpenCV ("Insufficient memory"), ONNX Runtime ("Failed to allocate memory for requested
# buffer"), torch on the CPU ("can't allocate memory") and on a GPU ("CUDA out of memory").
_OUT_OF_MEMORY = re.compile(
    r"Insufficient memory|Failed to allocate memory|can't allocate memory|out of memory"
)
_BYTES_ASKED = re.compile(r"(?:allocate|of size)\D{0,12}?(\d{7,})")


def out_of_memory(error: BaseException, args: argparse.Namespace) -> str | None:
    """One line for an allocation that failed (a batch or an image size too large for
    this machine), naming what asked for it and the options that make it smaller; None
    for any other error."""
    if not (isinstance(error, MemoryError) or _OUT_OF_MEMORY.search(str(error))):
        return None
    # numpy's MemoryError holds the bytes (its message rounds them: "728. TiB"); the
    # others say them in their message.
    asked = getattr(error, "_total_size", None)
    if not isinstance(asked, int) and (found := _BYTES_ASKED.search(str(error))):
        asked = int(found.group(1))
    size = f" ({asked / 2**30:,.1f} GiB asked at once)" if isinstance(asked, int) else ""
    given = [
        f"--{option} ({getattr(args, option)})"
        for option in ("batch", "imgsz", "bootstrap")
        if getattr(args, option, None) not in (None, -1)
    ]
    advice = f": a smaller {' or '.join(given)} needs less" if given else ""
    return f"out of memory{size}{advice}"


# pathlib's resolve() on Python 3.11 and 3.12 says a link that leads back to itself so;
# the system's own calls raise OSError ELOOP, which names the file.
_LINK_LOOP = re.compile(r"Symlink loop from '(.+)'")


def link_loop(error: BaseException) -> str | None:
    """One line for a path that is a loop of symbolic links (``ln -s a a``), as the
    system says it of any other call; None for any other error."""
    found = isinstance(error, RuntimeError) and _LINK_LOOP.fullmatch(str(error))
    return f"{found[1]}: {os.strerror(errno.ELOOP)}" if found else None


# A write refused midway: a full disk, a file-size limit, a quota.
FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (``defects predict ... | head``;
    its write end then polls as an error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):  # no stdout, or one that is not a file
        return False


def _end_as_a_pipe_closed() -> NoReturn:
    """Ends as any command writing into a pipe whose reader stopped (``cat big | head``):
    of SIGPIPE, quietly (141 in a shell). It said "error: Broken pipe" (exit 2) once its
    work was done. Stdout is flushed before the command returns, so that a write Python
    held back is told here too, not as its "Exception ignored" at exit."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python starts with it ignored
    os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(128 + signal.SIGPIPE)  # not reached: the signal ends the process


def _output_of(args: argparse.Namespace) -> Path | None:
    """Where a command writes: its ``--out``, or a training run's folder."""
    if getattr(args, "out", None) is not None:
        return Path(args.out)
    if getattr(args, "weights_dir", None) is not None and getattr(args, "name", None):
        return Path(args.weights_dir) / args.name
    return None


def _closed_streams_to_nowhere() -> None:
    """A command started with stdout or stderr closed (``2>&-``, some daemons) writes
    that stream to /dev/null. Python leaves it None, and the command ended at its first
    message with no output at all (exit 1), a good run and a refused one alike; a
    ``print(file=sys.stderr)`` to a None stderr would go to stdout."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)  # taken since by a file the start opened: left to it
        except OSError:  # free: C libraries and child processes write there too
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (for the whole run)


def main(argv: list[str] | None = None) -> int:
    _closed_streams_to_nowhere()
    parser = build_parser()
    args = parser.parse_args(argv)
    out = getattr(args, "out", None)
    try:
        if out is not None and Path(out).exists() and not Path(out).is_dir():
            # Before the work, not after it: evaluate predicts a whole split first.
            raise ConversionError(f"{out}: exists and is not a folder (--out is an output folder)")
        code = args.func(args)
        sys.stdout.flush()  # a reader gone is told here, not at the interpreter's exit
        return code
    except ConversionError as error:
        print(f"defects {args.command}: error: {_plain(str(error))}", file=sys.stderr)
        return 2
    except OSError as error:  # a folder not writable, a full disk: the file and the reason
        if error.errno == errno.EPIPE and _reader_gone():
            _end_as_a_pipe_closed()
        where = f"{error.filename}: " if error.filename else ""
        if error.filename and error.filename2:  # a copy or a move: from where, to where
            where = f"{error.filename} -> {error.filename2}: "
        said = f"{where}{error.strerror or error}"
        output = _output_of(args)
        if not error.filename and error.errno in FULL and output is not None:
            # A write that failed midway names no file: where the command was writing.
            said = f"{output}: {error.strerror}, while writing there"
        reason = _plain(said)
        print(f"defects {args.command}: error: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"defects {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # broad on purpose: each library raises its own kind
        said = out_of_memory(error, args) or link_loop(error)
        if said is None:
            raise
        print(f"defects {args.command}: error: {said}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
