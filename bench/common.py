"""What every benchmark shares: the machine it ran on and where its figures go."""

from __future__ import annotations

import json
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def machine() -> str:
    """The machine, as each result records it (and as model cards describe it)."""
    from detection.release import describe_machine

    found = describe_machine()
    return f"{platform.node()} {found['cpu']}, {found['cores']} cores" + (
        f", {found['gpu']}" if found["gpu"] else ""
    )


def save(name: str, result: dict) -> Path:
    """Writes ``result`` to ``bench/results/NAME.json`` (git-ignored) and returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path
