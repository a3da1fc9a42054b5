"""Output folders written whole: built beside their place, then swapped in.

A run that is interrupted leaves the previous folder intact, a command reading the
folder meanwhile finds the earlier one or the new one, never none where Linux exchanges
them in one step, and a run never leaves files of an earlier one behind (two ``synth``
runs into one folder once gave the union of both datasets). Since the folder is replaced
whole, it must be new, empty or an earlier output of the same command, recognised by the
marker file that command writes into it: ``--out mine`` once deleted mine/, and ``--out
SRC`` the source dataset; another command's output is refused too
(:data:`OUTPUT_MARKERS`). A folder being built is named for its machine and process
(``.OUT.tmp-HOST-PID``), so that one a killed run left (``kill -9``, the out-of-memory
killer) is removed by the next run on that machine once its process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import glob
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn, TypeVar

from converters.errors import ConversionError

T = TypeVar("T")

# The file each command writes into every output folder it makes (its module's marker
# constant), and what a folder holding it is, most specific first: a converted dataset
# holds its conversion's report.json beside its manifest, and `evaluate --out DATA`,
# taking that for a report's marker, replaced the dataset with its report.
OUTPUT_MARKERS = {
    "manifest.json": "a converted dataset",
    "synth.json": "a dataset from defects synth",
    "voc_export.json": "a VOC export",
    "card.json": "a released model",
    "predictions.json": "the predictions of predict or classify",
    "report.json": "a report of evaluate or compare",
}


def output_marker(folder: Path) -> str | None:
    """The marker (:data:`OUTPUT_MARKERS`) of the command whose output ``folder`` is, or
    None where it holds none."""
    return next((marker for marker in OUTPUT_MARKERS if (folder / marker).is_file()), None)


def check_output_folder(out: Path, marker: str, sources: Sequence[Path] = ()) -> None:
    """Refuses an output folder whose replacement would delete what was not written here.

    Args:
        out: The folder to be replaced whole.
        marker: The file the command writes into every folder it makes.
        sources: What the output is made from (a dataset, images, folders of them,
            weights): ``out`` may neither be nor hold any of them that exists, nor
            the working folder.

    Raises:
        ConversionError: Naming the folder and why.
        NotADirectoryError: ``out`` lies under a file.
        OSError: Naming ``out``, where the folder cannot be built (a read-only or
            virtual file system, no permission): said before the work, not after it.
    """
    given = Path(out)
    existing = next((p for p in _written_at(given).parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(given))
    if existing is not None:  # where write_folder builds it (creating the folders between)
        try:
            os.rmdir(tempfile.mkdtemp(prefix=f".{given.name}.check-", dir=existing))
        except OSError as error:
            raise OSError(
                error.errno, f"cannot be written: {error.strerror}", str(given)
            ) from error
    if given.exists() and not given.is_dir():
        raise ConversionError(f"{given}: exists and is not a folder (an output folder)")
    out = given.resolve()
    for source in map(Path, sources):
        source = source.resolve()
        if source.exists() and (source == out or source.is_relative_to(out)):
            raise ConversionError(
                f"{out}: holds the source ({source}), and the output replaces its folder "
                "whole; write it to a folder of its own"
            )
    here = _working_folder()
    if here is not None and out.is_dir() and (here == out or here.is_relative_to(out)):
        # Replaced, the folder the shell sits in is deleted: its `ls` shows nothing, and
        # the command failed after writing, on the next path it read from there.
        where = "is the working folder" if here == out else f"holds the working folder ({here})"
        raise ConversionError(
            f"{out}: {where}, and the output replaces its folder whole, which would leave "
            "this shell in a deleted folder; write it to a folder of its own (--out NAME)"
        )
    if not (out.is_dir() and any(out.iterdir())):
        return
    found = output_marker(out)
    if found is None and not (out / marker).is_file():
        raise ConversionError(
            f"{out}: a folder with files of its own (no {marker}, which marks this command's "
            "outputs), and the output replaces its folder whole; choose a new or empty one"
        )
    if found is not None and found != marker:
        raise ConversionError(
            f"{out}: {OUTPUT_MARKERS[found]} (its {found}), not an output of this command "
            f"(marked by {marker}), and the output replaces its folder whole; choose a new "
            "or empty one"
        )


def _working_folder() -> Path | None:
    """The working folder as the operating system holds it (links resolved); None where
    it has been deleted."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        return None


def _written_at(out: Path) -> Path:
    """Where the output folder ``out`` is written, as an absolute path: a link to a
    folder (outputs kept on a larger disk) is written through, the folder it leads to
    replaced. Replaced itself, the link became a folder, the folder it led to kept the
    earlier output, and the link was left beside as a hidden stray."""
    return out.resolve() if out.is_symlink() else out.absolute()


def write_folder(
    out: Path,
    build: Callable[[Path], T],
    marker: str,
    sources: Sequence[Path] = (),
) -> T:
    """Builds the folder with ``build(tmp)`` beside ``out`` and swaps it in whole.

    ``build`` must write ``marker`` into the folder it is given (which it creates).

    Returns:
        What ``build`` returned.

    Raises:
        ConversionError: ``out`` may not be replaced (:func:`check_output_folder`).
        OSError: A file could not be written (a full disk, a quota, a folder not
            writable); ``out`` is left as it was, and the error names the file where it
            would have been in ``out``, or ``out`` itself where the operating system
            named none.
    """
    written = _written_at(Path(out))
    _remove_left_behind(written)
    check_output_folder(out, marker, sources)
    out = written
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{_builder()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with _terminations_raised():
            result = build(tmp)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        told = _in_output(error, tmp, out)
        if told is error:  # of another file (an input, say), as it was raised
            raise
        raise told from None
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, _Terminated):  # dies of it now, as it would have
            os.kill(os.getpid(), error.signum)
        raise
    if out.exists() and _exchange(tmp, out):  # tmp now holds the earlier output
        shutil.rmtree(tmp, ignore_errors=True)
        return result
    old = out.parent / f".{out.name}.old-{_builder()}"
    try:
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except OSError:
        # Another run swapped its own output in between (the same command twice at
        # once): the earlier output comes back if nothing took its place, and no half
        # of ours stays beside it.
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return result


def _builder() -> str:
    """This process, as the name of what it builds says it: ``HOST-PID``."""
    return f"{os.uname().nodename}-{os.getpid()}"


def _remove_left_behind(out: Path) -> None:
    """Clears what runs killed outright left beside ``out``: ``.OUT.tmp-HOST-PID``, the
    folder being built, is removed (hidden, a whole dataset with ``convert
    --copy-images``, and in a repository untracked files a ``git add`` would take);
    ``.OUT.old-HOST-PID``, the earlier output moved aside, is removed where ``out`` is
    there, and put back where the run died before its own took its place. Only those of
    this machine whose process is gone: a run on another machine writing to a shared
    disk may be at work, and so may a live process of this one, whatever it is."""
    host = os.uname().nodename
    for kind in ("tmp", "old"):
        named = f".{out.name}.{kind}-{host}-"
        for left in sorted(out.parent.glob(f"{glob.escape(named)}*")):
            pid = left.name[len(named) :]
            if not pid.isdigit() or _running(int(pid)):
                continue
            if kind == "old" and not out.exists() and not out.is_symlink():
                left.rename(out)
            else:
                shutil.rmtree(left, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (another user's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Terminated(BaseException):
    """A SIGTERM or SIGHUP that came while an output was built (:func:`_terminations_raised`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _terminations_raised() -> Iterator[None]:
    """SIGTERM and SIGHUP (a plain ``kill``, a scheduler's stop, a closed terminal) raise
    :class:`_Terminated` for the duration, where they would kill the process at once, so
    that the folder being built is removed, as on Ctrl-C, before the process dies of the
    signal: killed, a conversion left its hidden ``.OUT.tmp-HOST-PID`` beside the output
    (a whole dataset with ``--copy-images``). Handlers set elsewhere (``nohup``'s, the
    review's) are left as they are, and so is every thread but the main one, and every
    process forked meanwhile (a data loader's workers) dies of the signal as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    building = os.getpid()

    def raised(signum: int, _frame: FrameType | None) -> NoReturn:
        if os.getpid() != building:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        raise _Terminated(signum)

    taken = {
        number: signal.signal(number, raised)
        for number in (signal.SIGTERM, signal.SIGHUP)
        if signal.getsignal(number) == signal.SIG_DFL
    }
    try:
        yield
    finally:
        for number, handler in taken.items():
            signal.signal(number, handler)


# renameat2's flag and "relative to the working directory" (linux/fs.h, fcntl.h).
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """Linux's ``renameat2`` from the C library (glibc 2.28 and later), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    directory, path = ctypes.c_int, ctypes.c_char_p
    function.argtypes = [directory, path, directory, path, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(new: Path, out: Path) -> bool:
    """Exchanges the folders ``new`` and ``out`` in one step (``renameat2`` with
    ``RENAME_EXCHANGE``), so that ``out`` never goes missing: moved aside first, it was
    gone for a moment, and a command reading it then (a training run started beside a
    conversion of its dataset) found no manifest and called the dataset damaged.
    False where the system cannot (not Linux, an old C library, a file system without
    it) or the exchange failed; :func:`write_folder` then moves ``out`` aside."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    paths = os.fsencode(new), os.fsencode(out)
    return renameat2(_AT_FDCWD, paths[0], _AT_FDCWD, paths[1], _RENAME_EXCHANGE) == 0


def _in_output(error: OSError, tmp: Path, out: Path) -> OSError:
    """``error``, raised while ``out`` was being built in ``tmp``, told of ``out``: the
    file as the user will look for it (not in the hidden folder it was written to), and
    where a write failed midway (a full disk, a quota: Python names no file then), the
    folder itself, said to be left as it was. Any other error (another file's, or one
    with no errno) is returned as it is.
    (``OSError(errno, ...)`` is the errno's own subclass: FileNotFoundError for ENOENT.)"""
    if error.errno is None:  # a library's own words (PIL's), no system call's
        return error
    reason = error.strerror or str(error)
    if error.filename is None:
        return OSError(error.errno, f"{reason}, while writing it (left as it was)", str(out))
    # A copy's error names its source and its destination (``filename2``): the latter is
    # the output's file.
    for name in (error.filename2, error.filename):
        if name is not None and Path(name).is_relative_to(tmp):
            return OSError(error.errno, reason, str(out / Path(name).relative_to(tmp)))
    return error
