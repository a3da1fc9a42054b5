"""A stand-in for the one polars call ultralytics makes while training, for the lent GPU
machine: it has no polars, and polars' wheel (40 MB) cannot travel beside NEU-DET (28 MB),
the repository (21 MB) and the other wheels (10 MB) within the device tool's 64 MiB.

Provided: ``read_csv(...).to_dict(as_series=False)``, which every checkpoint uses to embed
``results.csv``. Everything else (plots, metric exports) is refused by name, so train with
``plots=False`` (``tools/gpu/run.sh`` does). ``tests/test_gpu_kit.py`` trains with it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import NoReturn


class _Frame:
    def __init__(self, columns: dict[str, list]) -> None:
        self._columns = columns

    def to_dict(self, as_series: bool = True) -> dict[str, list]:
        return {name: list(values) for name, values in self._columns.items()}


def _column(texts: list[str]) -> list:
    """One column typed as polars infers it: integers, else floats, else strings."""
    for kind in (int, float):
        try:
            return [kind(text) for text in texts]
        except ValueError:
            pass
    return texts


def read_csv(source: bytes | str | Path, infer_schema_length: int | None = None) -> _Frame:
    """A CSV file's (or its bytes') columns."""
    text = source.decode() if isinstance(source, bytes) else Path(source).read_text()
    header, *rows = list(csv.reader(io.StringIO(text)))
    return _Frame({name: _column([row[i] for row in rows]) for i, name in enumerate(header)})


def __getattr__(name: str) -> NoReturn:
    raise AttributeError(f"polars stand-in (tools/gpu/shim): {name} is not provided")
