"""Builders for small datasets on disk (VOC, a Roboflow YOLO export), with real quirks."""

from __future__ import annotations

import json
import resource
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def voc_xml(
    filename: str | None,
    objects: list[tuple],
    size: tuple[int, int] | None = (64, 48),
    folder: str | None = None,
) -> str:
    """A VOC document; each object is ``(name, xmin, ymin, xmax, ymax[, difficult])``."""
    parts = ["<annotation>"]
    if folder is not None:
        parts.append(f"\t<folder>{folder}</folder>")
    if filename is not None:
        parts.append(f"\t<filename>{filename}</filename>")
    if size is not None:
        parts.append(
            f"\t<size><width>{size[0]}</width><height>{size[1]}</height><depth>1</depth></size>"
        )
    for obj in objects:
        name, xmin, ymin, xmax, ymax = obj[:5]
        difficult = obj[5] if len(obj) > 5 else 0
        parts.append(
            f"\t<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
            f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"
            "</bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


def write_image(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    """A small grayscale JPEG with random content (distinct per seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def no_file_over(size: int) -> Callable[[], None]:
    """A subprocess's ``preexec_fn``: files over ``size`` bytes are refused (RLIMIT_FSIZE,
    EFBIG "File too large"), as a full disk or a quota refuses a write midway."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def write_xml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def roboflow_export(converted: Path, out: Path) -> Path:
    """A converted dataset laid out as Roboflow exports YOLO data: a folder per split with
    images/ and labels/, and a data.yaml whose ../ paths ultralytics resolves its way."""
    names = json.loads((converted / "manifest.json").read_text())["classes"]
    for split, folder in (("train", "train"), ("val", "valid")):
        shutil.copytree(converted / "images" / split, out / folder / "images")
        shutil.copytree(converted / "labels" / split, out / folder / "labels")
    (out / "data.yaml").write_text(
        f"train: ../train/images\nval: ../valid/images\nnc: {len(names)}\nnames: {names}\n"
    )
    return out / "data.yaml"
