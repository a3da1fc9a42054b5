"""The versions of our package and of the libraries its figures depend on, read from the
installed packages' metadata (nothing imported): ``defects --version`` prints them and
every report records them, so a figure can be traced to the code that made it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# Each library by the names its package may be installed as (ours is the headless one).
VERSIONED = {
    "steel-defects": ("steel-defects",),
    "ultralytics": ("ultralytics-opencv-headless", "ultralytics"),
    "torch": ("torch",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "pycocotools": ("pycocotools",),
    "fiftyone": ("fiftyone",),
    "opencv": ("opencv-python-headless", "opencv-python"),
}


def _installed(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def package_versions() -> dict[str, str | None]:
    """Each library's installed version (None: not installed)."""
    return {label: _installed(names) for label, names in VERSIONED.items()}


def versions_line() -> str:
    """``defects 0.1.0 (ultralytics 8.4.190, torch 2.15.0, ...)``."""
    found = package_versions()
    ours = found.pop("steel-defects")
    return (
        f"defects {ours} ("
        + ", ".join(f"{label} {found[label] or 'not installed'}" for label in found)
        + ")"
    )
