"""Offline switches, set before ultralytics, albumentations or fiftyone are imported.

Nothing on a default path may reach the network: there is none on the machines this
runs on, and a detector that phones home at start-up is a detector that hangs in CI.
Every entry point (the ``defects`` CLI, the tests, the benchmarks) imports this module
first; importing it is cheap (environment variables and two small files).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from detection.threads import usable_cores

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("DEFECTS_STATE_DIR", PROJECT_ROOT / ".state"))
YOLO_CONFIG_DIR = STATE_DIR / "ultralytics"
FIFTYONE_DIR = STATE_DIR / "fiftyone"

_SWITCHES = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "YOLO_VERBOSE": os.environ.get("YOLO_VERBOSE", "True"),
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "FIFTYONE_DO_NOT_TRACK": "true",
    "FIFTYONE_DATABASE_VALIDATION": "false",
    "FIFTYONE_SHOW_PROGRESS_BARS": os.environ.get("FIFTYONE_SHOW_PROGRESS_BARS", "false"),
    "HF_HUB_OFFLINE": "1",
    # ONNX Runtime's Linux wheels send telemetry events (a DNS lookup of Microsoft's
    # events host, caught by tests/test_offline.py); its Python switch comes too late.
    "ORT_DISABLE_TELEMETRY": "1",
    "WANDB_DISABLED": "true",
    "WANDB_MODE": "disabled",
    "COMET_MODE": "disabled",
    "MPLBACKEND": "Agg",
    # OpenCV's own warnings ("TIFFRGBAImageOK: Sorry, ...") repeat, in a decoder's words,
    # what our one line per skipped image says (converters/pixels.py).
    "OPENCV_LOG_LEVEL": os.environ.get("OPENCV_LOG_LEVEL", "ERROR"),
}


def _ultralytics_settings() -> dict:
    # The schema of ultralytics 8.4 (settings_version 0.0.8); a newer schema migrates
    # these values with a warning, keeping sync and the integrations off.
    return {
        "settings_version": "0.0.8",
        "datasets_dir": str(STATE_DIR / "datasets"),
        "weights_dir": str(STATE_DIR / "weights"),
        "runs_dir": str(STATE_DIR / "runs"),
        "uuid": "0" * 64,
        "sync": False,
        "api_key": "",
        "openai_api_key": "",
        "clearml": False,
        "comet": False,
        "dvc": False,
        "mlflow": False,
        "raytune": False,
        "tensorboard": False,
        "wandb": False,
        "vscode_msg": False,
        "openvino_msg": False,
    }


def ultralytics_user_dir() -> Path:
    """The folder ultralytics really reads its ``settings.json`` and fonts from.

    ``get_user_config_dir`` appends ``Ultralytics`` to ``$YOLO_CONFIG_DIR``; files one level
    up are never read (ultralytics 8.4, ``ultralytics/utils/__init__.py``).
    """
    return Path(os.environ.get("YOLO_CONFIG_DIR", YOLO_CONFIG_DIR)) / "Ultralytics"


def _install_font(user_dir: Path) -> None:
    """Ultralytics downloads Arial.ttf for its plots unless it finds one in its config dir
    (``check_font`` probes the download address first); matplotlib ships DejaVu Sans, which
    draws the same labels."""
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = user_dir / name
        if target.exists():
            continue
        try:
            import matplotlib

            font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        except ImportError:  # plots only; conversion does not need matplotlib
            return
        shutil.copyfile(font, target)


def set_offline() -> None:
    """Sets every offline switch in ``os.environ`` and prepares the local config dirs."""
    for key, value in _SWITCHES.items():
        os.environ.setdefault(key, value)
    # Not a network switch, but it too must be set before ultralytics is imported, which
    # otherwise sets it to 1 (for this process and every process it starts) and starts
    # torch on one thread: the usable cores, unless the user chose (detection/threads.py).
    os.environ.setdefault("OMP_NUM_THREADS", str(usable_cores()))
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(YOLO_CONFIG_DIR))
    os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(FIFTYONE_DIR / "db"))
    os.environ.setdefault("FIFTYONE_DEFAULT_DATASET_DIR", str(FIFTYONE_DIR / "datasets"))
    os.environ.setdefault("MPLCONFIGDIR", str(STATE_DIR / "matplotlib"))
    user_dir = ultralytics_user_dir()
    user_dir.mkdir(parents=True, exist_ok=True)
    settings = user_dir / "settings.json"
    wanted = _ultralytics_settings()
    current = {}
    if settings.exists():
        try:
            current = json.loads(settings.read_text())
        except ValueError:
            current = {}
    if current != wanted:
        settings.write_text(json.dumps(wanted, indent=2))
    _install_font(user_dir)


set_offline()
