"""Dataset definitions (``datasets/*.yaml``, ``convert --classes-file``): what they read,
and one clear line naming the file for each kind of file that is not one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from converters.definitions import load_definition
from converters.errors import ConversionError
from converters.files import read_yaml_mapping


@pytest.mark.parametrize(
    ("content", "classes"),
    [
        (b"classes: [crazing, patches]\n", ["crazing", "patches"]),
        (b"names: {0: crazing, 1: patches}\n", ["crazing", "patches"]),
        # Keys written as strings are still ids: "10" after "2", not after "1".
        (
            ("names: {" + ", ".join(f"'{i}': c{i}" for i in range(11)) + "}\n").encode(),
            [f"c{i}" for i in range(11)],
        ),
        (b"classes:\n  - name: crazing\n    aliases: [Cr]\n  - 7\n", ["crazing", "7"]),
    ],
)
def test_a_definition_reads_its_classes_in_id_order(
    content: bytes, classes: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "classes.yaml"
    path.write_bytes(content)
    assert load_definition(path).classes == classes


@pytest.mark.parametrize(
    ("content", "channels"), [(b"", 3), (b"channels: 1\n", 1), (b"channels: 3\n", 3)]
)
def test_a_definition_says_whether_its_images_are_grey(
    content: bytes, channels: int, tmp_path: Path
) -> None:
    path = tmp_path / "classes.yaml"
    path.write_bytes(b"classes: [a]\n" + content)
    assert load_definition(path).channels == channels


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xd8\xff\xe0 a JPEG", "not text (byte 0 is not UTF-8)"),
        (b"classes: [a\n", "not valid YAML (dataset definition expected): line 2, column 1: "),
        (b"crazing\npatches\n", "holds a str, not the keys and values of a dataset definition"),
        (b"[crazing, patches]\n", "holds a list, not the keys and values"),
        (b"classes: []\n", "needs a non-empty 'classes' list"),
        (b"names: {a: crazing, b: patches}\n", "its names' keys are not class ids (0, 1, ...)"),
        (b"classes: [{display: Crazing}]\n", "class 0 is {'display': 'Crazing'}, not a name"),
        (b"classes: [[a, b]]\n", "class 0 is ['a', 'b'], not a name or a mapping"),
        (b"classes: [{name: a, aliases: A}]\n", "class a's aliases are not a list"),
        (b"classes: [a]\nfolders: [a]\n", "its 'folders' is not a mapping of keys to values"),
        (b"classes: [a]\nrecipe: 3\n", "its 'recipe' is not a mapping of keys to values"),
        (b"classes: [a]\nchannels: 2\n", "its 'channels' is 2, not 1 (grey images) or 3"),
        (b"classes: [a]\nchannels: true\n", "its 'channels' is True, not 1"),
        (b"classes: [a]\nchannels: 1.0\n", "its 'channels' is 1.0, not 1"),
        (b"classes: [a]\nchannels: grey\n", "its 'channels' is 'grey', not 1"),
    ],
)
def test_a_file_that_is_no_definition_is_one_clear_line(
    content: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "classes.yaml"
    path.write_bytes(content)
    with pytest.raises(ConversionError) as refused:
        load_definition(path)
    assert str(refused.value).startswith(f"{path}: ")
    assert message in str(refused.value)


def test_an_empty_file_is_an_empty_mapping(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml_mapping(tmp_path / "empty.yaml", "dataset definition") == {}


def test_a_class_list_through_a_pipe_is_read() -> None:
    # `defects convert SRC --classes-file <(printf 'classes: [a, b]')`: a pipe, which was
    # refused as "no such file" (not a regular file), is read as a file is.
    readable, writable = os.pipe()
    os.write(writable, b"classes: [rust, dent]\n")
    os.close(writable)
    try:
        definition = load_definition(f"/dev/fd/{readable}")
    finally:
        os.close(readable)
    assert definition.classes == ["rust", "dent"]
