"""The import graph: every arrow points one way, and conversion stays light.

Imports inside functions count: a lazy import is still an arrow between two modules, and
the circles this test was written against (``train -> classify -> evaluate -> train``,
``cli <-> commands``) were made of lazy ones.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("converters", "detection")
HEAVY = ("torch", "ultralytics", "fiftyone", "onnxruntime", "albumentations")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """``{module: modules of this project it imports}``, from every import statement."""
    modules = {
        _module_name(path, root): path
        for package in PACKAGES
        for path in (root / package).glob("*.py")
    }
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from detection import offline` imports the module detection.offline.
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and modules[target].name != "__init__.py":
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_cycle_finder(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_the_project_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "detection.weights" in graph["detection.predict"]  # the graph is really read
    assert cycles(graph) == []


def test_a_new_cycle_is_caught(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        for path in (REPO / package).glob("*.py"):
            (tmp_path / package / path.name).write_text(path.read_text())
    # The old circle: a lower module reaching back up to the CLI for its progress bar.
    console = tmp_path / "detection" / "console.py"
    console.write_text(console.read_text() + "\n\ndef f():\n    from detection.cli import main\n")
    found = cycles(import_graph(tmp_path))
    assert any({"detection.cli", "detection.console"} <= set(cycle) for cycle in found), found


def test_converters_never_import_heavy_libraries() -> None:
    for name, imported in import_graph().items():
        if name.startswith("converters"):
            assert not {m for m in imported if m.startswith("detection")}, name
    code = "import sys\nimport converters.convert, converters.synth, detection.cli\n" + (
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["train", "--data", "{tmp}/none", "--name", "x"], "no data.yaml here"),
        (["train", "--resume", "--name", "none"], "nothing to resume"),
        (["train", "--resume", "--name", "none", "--epochs", "3"], "cannot change it"),
        (["train", "--data", "{data}", "--name", "a/b"], "not a run name"),
        (["train", "--data", "{data}", "--name", "x", "--model", "{tmp}/none.pt"], "no such"),
        (["train", "--data", "{data}", "--name", "x", "--model", "{tmp}/empty.pt"], "empty file"),
        (["train", "--data", "{data}", "--name", "x", "--model", "no-such-release"], "no such"),
        (["train", "--data", "{data}", "--name", "x", "--model", "{tmp}/x.onnx"], "an ONNX model"),
        (
            ["train", "--data", "{data}", "--name", "x", "--teacher", "{tmp}/no.pt"],
            "no.pt: no such",
        ),
        (["train-cls", "--data", "{tmp}/none", "--name", "x"], "neither a converter output"),
        (["train-cls", "--data", "{data}", "--name", "x", "--backbone", "{tmp}/no.pt"], "no such"),
        (["train-cls", "--data", "{data}", "--name", "x", "--backbone", "{tmp}/x.onnx"], "ONNX"),
        # Every model's file, before the first one predicts on the whole split.
        (["compare", "--data", "{data}", "--weights", "neu-det", "{tmp}/no.pt"], "no.pt: no such"),
        (["compare", "--data", "{data}", "--weights", "neu-det", "{tmp}/empty.pt"], "empty file"),
        (["release", "--run", "models/neu-det", "--data", "{tmp}/none", "--name", "x"], "no data"),
        (["classify", "{tmp}/none", "--weights", "neu-det"], "none: no such file or folder"),
        # ... as the other commands always have.
        (["predict", "{tmp}/none", "--weights", "neu-det"], "none: no such file or folder"),
        (["predict", "{data}/images/val", "--weights", "{tmp}/no.pt"], "no.pt: no such"),
        (["evaluate", "--data", "{data}", "--weights", "{tmp}/no.pt"], "no.pt: no such"),
        (["export", "--weights", "{tmp}/empty.pt"], "empty file"),
        (["review", "--data", "{data}", "--weights", "{tmp}/no.pt", "--no-launch"], "no such"),
        # A plain YOLO dataset (no manifest), whose check imports ultralytics: the weights
        # are checked first.
        (["evaluate", "--data", "{yolo}", "--weights", "{tmp}/no.pt"], "no.pt: no such"),
        (["review", "--data", "{yolo}", "--weights", "{tmp}/empty.pt", "--no-launch"], "empty"),
    ],
)
def test_a_mistake_is_told_before_torch_is_loaded(
    tiny_data: Path, tmp_path: Path, argv: list[str], said: str
) -> None:
    # Torch and ultralytics take 3 s to import: a typo in a file or a name is told in half
    # a second by every command, and nothing heavy is loaded to tell it.
    data = tiny_data
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "x.onnx").write_bytes(b"\x08\x08")  # refused by its suffix, never read
    yolo = tmp_path / "yolo"
    if "{yolo}" in argv:
        yolo.mkdir()
        for part in ("data.yaml", "images", "labels"):
            copy = shutil.copytree if (data / part).is_dir() else shutil.copy
            copy(data / part, yolo / part)
    argv = [a.format(tmp=tmp_path, data=data, yolo=yolo) for a in argv]
    where = {"train": "--weights-dir", "train-cls": "--weights-dir", "release": "--models-dir"}
    if argv[0] not in ("export", "review"):  # which write beside the weights, or a database
        argv += [where.get(argv[0], "--out"), str(tmp_path / "out")]
    code = (
        "import sys\nfrom detection.cli import main\n"
        f"code = main({argv!r})\n"
        f"print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert said in result.stderr, result.stderr[-2000:]
    assert result.stdout.split() == ["2", "[]"], result.stdout
