"""Where the package's installed files (shipped model, sample frames, config, launch) live.

Looked up in order: the ament index (colcon/system ROS install; without ``ament_index_python``, e.g. a
colcon install used from a plain venv, the prefixes in ``AMENT_PREFIX_PATH`` are scanned for the same
index marker), ``<prefix>/share/fcn_road_seg`` (pip install), then the source tree (running from a
checkout or an editable install).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .contract import check_model_file
from .errors import ModelError

__all__ = ["share_dir", "default_model_path", "samples_dir", "DEFAULT_MODEL_NAME"]

PACKAGE = "fcn_road_seg"
DEFAULT_MODEL_NAME = "fcn8s_lite0_kitti_road.onnx"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _candidates() -> list[Path]:
    found = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            found.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset (no ROS sourced)
            pass
    except ImportError:
        found.extend(_ament_prefixes())
    found.append(Path(sys.prefix) / "share" / PACKAGE)
    found.append(_SOURCE_ROOT)
    return found


def _ament_prefixes() -> list[Path]:
    """List ``<prefix>/share/fcn_road_seg`` of each AMENT_PREFIX_PATH entry that registers the package.

    An entry registers it in its ament index (what ament_index_python's get_package_share_directory looks for).
    """
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    marker = Path("share") / "ament_index" / "resource_index" / "packages" / PACKAGE
    return [prefix / "share" / PACKAGE for prefix in prefixes if (prefix / marker).is_file()]


def share_dir(subdir: str) -> Path:
    """Return the first existing ``<share>/<subdir>`` folder; raises FileNotFoundError listing where it looked."""
    tried = [c / subdir for c in _candidates()]
    for path in tried:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"fcn_road_seg {subdir}/ not found; looked in: {', '.join(map(str, tried))}")


def default_model_path() -> Path:
    """Return the shipped road model (trained on KITTI road + KITTI semantics; see docs/model_card.md)."""
    try:
        path = share_dir("models") / DEFAULT_MODEL_NAME
    except FileNotFoundError as err:
        raise ModelError(f"shipped model not found ({err}); reinstall fcn_road_seg or pass --model") from err
    return check_model_file(path, "onnx", "the shipped model is damaged: reinstall fcn_road_seg or pass --model")


def samples_dir() -> Path:
    """Bundled sample frames (two KITTI road and a few CamVid test images)."""
    return share_dir("samples")
