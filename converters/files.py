"""Reading the files users give: text, JSON and YAML, each refused in one line naming
the file and what is wrong with it, never a traceback; and naming the file a write
failed on."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from converters.errors import ConversionError


def naming(error: OSError, path: Path | str) -> OSError:
    """``error``, with ``path`` as its file where it names none.

    A write that fails midway (a full disk, a quota, a file-size limit) raises an
    OSError with no file in Python, and the CLI says an error's file before its reason.
    One that names a file already, or has no errno (a library's own words), is returned
    as it is.
    """
    if error.filename is not None or error.errno is None:
        return error
    return OSError(error.errno, error.strerror, str(path))


_DEVICES = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device (a disk)"}


def read_bytes(path: Path | str) -> bytes:
    """A file's bytes, or a pipe's (``/dev/stdin`` fed by ``cat image.jpg |``, or a
    shell's ``<(...)``).

    Raises:
        OSError: The system's, with the file as ``filename``; for a device, one saying
            so: ``/dev/zero`` or a disk was read without end (until memory ran out), and
            ``/dev/stdin`` left at a terminal waited for typing.
    """
    with open(path, "rb") as file:
        device = _DEVICES.get(stat.S_IFMT(os.fstat(file.fileno()).st_mode))
        if device:
            raise OSError(None, f"{device}, not a file", str(path))
        return file.read()


def read_text(path: Path, what: str, kind: str = "file") -> str:
    """A text file's content (UTF-8, a byte-order mark dropped); ``what`` and ``kind``
    name what was expected there (``COCO results``, ``JSON file``) in messages.

    Raises:
        ConversionError: Missing, a folder, unreadable or not UTF-8; names ``path``.
    """
    try:
        return read_bytes(path).decode("utf-8-sig")
    except FileNotFoundError:
        raise ConversionError(f"{path}: no such file ({what} expected)") from None
    except IsADirectoryError:
        raise ConversionError(f"{path}: a folder, not a {what} {kind}") from None
    except OSError as error:
        raise ConversionError(f"{path}: unreadable: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConversionError(f"{path}: not text (byte {error.start} is not UTF-8)") from None


def read_json(path: Path, what: str) -> Any:
    """A JSON file's content.

    Raises:
        ConversionError: Missing, unreadable or not JSON; the message names ``path``.
    """
    text = read_text(path, what, "JSON file")
    if not text.strip():
        raise ConversionError(f"{path}: empty file ({what} JSON expected)")
    try:
        return json.loads(text)
    except ValueError as error:
        raise ConversionError(f"{path}: not valid JSON: {error}") from None


def read_yaml_mapping(path: Path, what: str) -> dict:
    """The mapping a YAML file holds (an empty file: ``{}``).

    Args:
        path: The file.
        what: What the file should be, for the messages (``dataset definition``).

    Raises:
        ConversionError: Unreadable, not text, not valid YAML (with its line), or not a
            mapping of keys to values; naming the file and ``what`` it should be.
    """
    text = read_text(Path(path), what, "YAML file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConversionError(
            f"{path}: not valid YAML ({what} expected): {where}{problem}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConversionError(
            f"{path}: holds a {type(data).__name__}, not the keys and values of a {what}"
        )
    return data
