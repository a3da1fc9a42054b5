"""What every benchmark shares: the machine it ran on and where its figures go."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def machine() -> str:
    """The machine, as each result records it (and as model cards describe it), with what
    its CPU's name leaves out: its family and model numbers (one "AMD EPYC" names Zen 2
    and Zen 4 alike) and whether it has VNNI (int8 ran 1.7x fp32's speed on a Zen 4 with
    AVX2 alone, 2.7x with VNNI; docs/benchmarks.md)."""
    from detection.predict import cpu_info
    from detection.release import describe_machine

    found = describe_machine()
    family, model = cpu_info("cpu family"), cpu_info("model")
    numbers = f" (family {family}, model {model})" if family and model else ""
    vnni = {True: ", VNNI", False: ", AVX2 without VNNI", None: ""}[found["vnni"]]
    return f"{platform.node()} {found['cpu']}{numbers}, {found['cores']} cores{vnni}" + (
        f", {found['gpu']}" if found["gpu"] else ""
    )


def save(name: str, result: dict) -> Path:
    """Writes ``result`` to ``bench/results/NAME.json`` (git-ignored) and returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def detector_arguments(description: str) -> argparse.Namespace:
    """The options of the benchmarks that score one detector on the converted NEU-DET:
    ``--weights`` (the released model by default), ``--data`` and ``--backend``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--weights", default="neu-det", help=".pt or a released name")
    parser.add_argument("--data", type=Path, default=REPO / "datasets/converted/neu-det")
    parser.add_argument("--backend", default="onnx", help="torch, onnx or onnx-int8")
    return parser.parse_args()


def throughput_arguments(description: str, count: int) -> argparse.ArgumentParser:
    """The options of the benchmarks that time prediction on NEU-DET's images:
    ``--weights``, ``--data`` (the converted NEU-DET: its train images calibrate int8,
    its val split scores accuracy), ``--images``, ``--count`` and ``--repeats``; a parser,
    for a benchmark's own options to be added."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--weights", default="neu-det", help=".pt or a released name")
    parser.add_argument("--data", type=Path, default=REPO / "datasets/converted/neu-det")
    parser.add_argument(
        "--images", type=Path, default=REPO.parent / "shared/datasets/NEU-DET/IMAGES"
    )
    parser.add_argument("--count", type=int, default=count, help="the first COUNT by name")
    parser.add_argument("--repeats", type=int, default=3)
    return parser
