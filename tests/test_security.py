"""Annotation files come from strangers: XXE, billion laughs and path traversal."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from converters.convert import convert
from converters.definitions import load_definition
from tests.helpers import voc_xml, write_image, write_xml

SECRET = "TOP-SECRET-4711"


def _dataset(root: Path) -> Path:
    write_image(root / "IMAGES" / "crazing_1.jpg")
    write_xml(
        root / "ANNOTATIONS" / "crazing_1.xml", voc_xml("crazing_1.jpg", [("crazing", 1, 1, 9, 9)])
    )
    return root


def _all_output_text(out: Path) -> str:
    return "".join(
        p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and not p.is_symlink()
    )


def test_xxe_never_leaks_a_local_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    root = _dataset(tmp_path / "data")
    write_image(root / "IMAGES" / "crazing_2.jpg", seed=2)
    xxe = (
        f'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        + voc_xml("&xxe;", [("&xxe;", 1, 1, 9, 9)])
    )
    write_xml(root / "ANNOTATIONS" / "crazing_2.xml", xxe)
    result = convert(
        root, tmp_path / "out", definition=load_definition("neu-det"), ratios=(1.0, 0.0)
    )
    problems = {(p.file, p.problem) for p in result.source.report.problems}
    assert ("ANNOTATIONS/crazing_2.xml", "forbidden_dtd") in problems
    assert SECRET not in _all_output_text(tmp_path / "out")
    assert [image.name for image in result.source.dataset.images] == ["crazing_1.jpg"]


def test_billion_laughs_fails_fast_in_bounded_memory(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    bomb = f'<?xml version="1.0"?>\n<!DOCTYPE annotation [{entities}]>\n' + voc_xml(
        "&lol9;", [("crazing", 1, 1, 9, 9)]
    )
    write_image(root / "IMAGES" / "crazing_3.jpg", seed=3)
    write_xml(root / "ANNOTATIONS" / "crazing_3.xml", bomb)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = convert(root, tmp_path / "out", definition=load_definition("neu-det"))
    elapsed = time.perf_counter() - started
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert elapsed < 5
    assert grown_kib < 100 * 1024  # a billion expanded laughs would be ~3 GB
    report = result.source.report
    assert [(p.file, p.problem, p.boxes_dropped) for p in report.errors] == [
        ("ANNOTATIONS/crazing_3.xml", "forbidden_dtd", 1)
    ]


def test_filename_and_path_never_escape_the_root(tmp_path: Path) -> None:
    write_image(tmp_path / "outside.jpg", seed=9)
    root = _dataset(tmp_path / "data")
    # Points outside the root; the XML's own name matches no image.
    write_xml(
        root / "ANNOTATIONS" / "evil.xml",
        voc_xml("../../outside.jpg", [("crazing", 1, 1, 9, 9)]).replace(
            "<annotation>", "<annotation><path>/etc/passwd</path>"
        ),
    )
    # Points outside the root, but the XML's own name matches an image inside it.
    write_image(root / "IMAGES" / "patches_1.jpg", seed=1)
    write_xml(
        root / "ANNOTATIONS" / "patches_1.xml", voc_xml("/etc/passwd", [("patches", 1, 1, 9, 9)])
    )
    result = convert(root, tmp_path / "out", ratios=(1.0, 0.0))
    problems = [(p.file, p.problem) for p in result.source.report.problems]
    assert ("ANNOTATIONS/evil.xml", "unsafe_path") in problems
    assert ("ANNOTATIONS/evil.xml", "missing_image") in problems
    assert ("ANNOTATIONS/patches_1.xml", "unsafe_path") in problems
    used = sorted(str(image.path) for image in result.source.dataset.images)
    assert used == [str(root.resolve() / "IMAGES" / n) for n in ("crazing_1.jpg", "patches_1.jpg")]
    for link in (tmp_path / "out" / "images").rglob("*.jpg"):
        assert link.resolve().is_relative_to(root.resolve())
