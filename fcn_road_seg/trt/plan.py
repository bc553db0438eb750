"""TensorRT plan files without TensorRT: the JSON sidecar, compatibility rules, the engine cache layout.

A TensorRT plan only runs on the TensorRT version that built it and on the GPU model it was tuned for.
Everything that decides *whether* a plan can run, and *where* a cached plan lives, is plain Python here so
CI checks it on machines without TensorRT; ``engine.py`` builds plans and ``backends/tensorrt.py`` runs them.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..contract import ModelContract
from ..errors import EngineMismatchError, ModelError, TensorRTError
from ..outputs import write_bytes

__all__ = [
    "PRECISIONS",
    "SIDECAR_SUFFIX",
    "GpuInfo",
    "EngineSidecar",
    "sidecar_path",
    "read_sidecar",
    "write_sidecar",
    "check_compatible",
    "cache_dir",
    "cache_dir_source",
    "cached_plan_path",
    "timing_cache_path",
    "exclusive_lock",
    "cache_folder_error",
    "DLA_BOARDS",
]

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32", "int8")
# DLA cores per device, for the errors of a build (--dla) or a plan asking for a core the device lacks
DLA_BOARDS = "AGX Orin and Orin NX 16GB: 2, Orin NX 8GB: 1, Orin Nano and desktop GPUs: 0"
SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = 1


@dataclass(frozen=True)
class GpuInfo:
    """The GPU a plan is built for or runs on."""

    name: str
    compute_capability: tuple[int, int]

    @property
    def sm(self) -> str:
        return f"sm{self.compute_capability[0]}{self.compute_capability[1]}"


@dataclass(frozen=True)
class EngineSidecar:
    """What a plan was built from and for; stored as ``<plan>.json`` next to the plan."""

    contract: ModelContract
    tensorrt_version: str
    gpu: GpuInfo
    onnx_sha256: str
    precision: str
    build_date: str  # ISO 8601, UTC
    workspace_mib: int
    dla_core: int | None = None
    format: int = SIDECAR_FORMAT

    def to_json(self) -> str:
        data = asdict(self)
        data["gpu"]["compute_capability"] = list(self.gpu.compute_capability)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "sidecar") -> EngineSidecar:
        try:
            data = json.loads(text)
            gpu = data["gpu"]
            if data["precision"] not in PRECISIONS:
                raise ValueError(f"unknown precision {data['precision']!r}")
            return cls(
                contract=ModelContract.from_dict(data["contract"], source=source),
                tensorrt_version=str(data["tensorrt_version"]),
                gpu=GpuInfo(str(gpu["name"]), tuple(int(v) for v in gpu["compute_capability"])),
                onnx_sha256=str(data["onnx_sha256"]),
                precision=data["precision"],
                build_date=str(data["build_date"]),
                workspace_mib=int(data["workspace_mib"]),
                dla_core=data.get("dla_core"),
                format=int(data.get("format", SIDECAR_FORMAT)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(
                f"{source} is not a valid fcn_road_seg engine sidecar ({err}); rebuild the engine with "
                "`fcn-road-seg build-engine MODEL.onnx -o ENGINE.plan`"
            ) from err


def sidecar_path(plan: str | Path) -> Path:
    """``ENGINE.plan`` -> ``ENGINE.plan.json``."""
    plan = Path(plan)
    return plan.with_name(plan.name + SIDECAR_SUFFIX)


def read_sidecar(plan: str | Path) -> EngineSidecar:
    """Read the sidecar of ``plan``; ModelError naming the fix when it is missing or malformed."""
    path = sidecar_path(plan)
    if not path.is_file():
        raise ModelError(
            f"{plan} has no sidecar {path.name} (the model contract and build facts); build plans with "
            "`fcn-road-seg build-engine MODEL.onnx -o ENGINE.plan`, or pass the .onnx to build one on first start"
        )
    return EngineSidecar.from_json(path.read_text(), source=str(path))


def write_sidecar(plan: str | Path, sidecar: EngineSidecar) -> Path:
    path = sidecar_path(plan)
    write_bytes(path, sidecar.to_json().encode())
    return path


def check_compatible(
    sidecar: EngineSidecar, tensorrt_version: str, gpu: GpuInfo, *, plan: str | Path = "engine"
) -> None:
    """Raise EngineMismatchError naming both sides and the fix when ``plan`` cannot run here.

    TensorRT deserialises a plan only with the exact version that built it ("version tag" error), and its
    kernels are chosen for one GPU architecture. A different GPU name with the same compute capability runs,
    but NVIDIA does not recommend it (kernels were timed on the other model), so that only warns.
    """
    fix = (
        "rebuild it here with `fcn-road-seg build-engine MODEL.onnx -o ENGINE.plan`, or pass the .onnx model "
        "with backend 'tensorrt' so a matching engine is built once and cached"
    )
    if sidecar.tensorrt_version != tensorrt_version:
        raise EngineMismatchError(
            f"{plan} was built with TensorRT {sidecar.tensorrt_version} but this machine runs TensorRT "
            f"{tensorrt_version}; plans only load on the version that built them: {fix}"
        )
    if sidecar.gpu.compute_capability != gpu.compute_capability:
        raise EngineMismatchError(
            f"{plan} was built for {sidecar.gpu.name} (compute capability "
            f"{'.'.join(map(str, sidecar.gpu.compute_capability))}) but this GPU is {gpu.name} (compute capability "
            f"{'.'.join(map(str, gpu.compute_capability))}): {fix}"
        )
    if sidecar.gpu.name != gpu.name:
        log.warning("%s was built on %s and runs on %s (same compute capability %s); it works, but kernels were "
                    "timed on the other GPU: rebuild here for best speed", plan, sidecar.gpu.name, gpu.name,
                    ".".join(map(str, gpu.compute_capability)))


def cache_dir() -> Path:
    """``$FCN_ROAD_SEG_CACHE`` or ``$XDG_CACHE_HOME/fcn_road_seg`` (default ``~/.cache/fcn_road_seg``)."""
    source = cache_dir_source()  # the one place that knows which variable wins
    if source == "FCN_ROAD_SEG_CACHE":
        return Path(os.environ[source]).expanduser()
    return Path(os.environ[source] if source == "XDG_CACHE_HOME" else Path.home() / ".cache") / "fcn_road_seg"


def cache_dir_source() -> str:
    """Name what sets ``cache_dir``: "FCN_ROAD_SEG_CACHE", "XDG_CACHE_HOME" or "default".

    The doctor and cache-folder errors say it.
    """
    for name in ("FCN_ROAD_SEG_CACHE", "XDG_CACHE_HOME"):
        if os.environ.get(name):
            return name
    return "default"


def _cache_dir_origin() -> str:
    return {"FCN_ROAD_SEG_CACHE": "set by FCN_ROAD_SEG_CACHE",
            "XDG_CACHE_HOME": "from XDG_CACHE_HOME; FCN_ROAD_SEG_CACHE is not set",
            "default": "the default; FCN_ROAD_SEG_CACHE is not set"}[cache_dir_source()]


def cache_folder_error(folder: Path, err: OSError, action: str) -> TensorRTError:
    """Make a TensorRTError for an OSError (read-only, full, missing permission) while using ``folder``."""
    root = cache_dir()
    where = (f"the engine cache folder is {root} ({_cache_dir_origin()}); make it writable or point "
             "FCN_ROAD_SEG_CACHE at a writable folder with free space"
             if Path(folder).is_relative_to(root) else
             f"make {folder} writable, free space on it, or choose another output path")
    return TensorRTError(f"cannot {action} {folder} ({type(err).__name__}: {err}); {where}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def cached_plan_path(onnx_sha256: str, gpu: GpuInfo, tensorrt_version: str, precision: str,
                     root: Path | None = None) -> Path:
    """Where the engine for this model, GPU, TensorRT version and precision lives in the cache."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    name = f"{onnx_sha256[:16]}-{_slug(gpu.name)}-{gpu.sm}-trt{_slug(tensorrt_version)}-{precision}.plan"
    return (root or cache_dir()) / "engines" / name


def timing_cache_path(gpu: GpuInfo, tensorrt_version: str, root: Path | None = None) -> Path:
    """Return the timing cache path for ``gpu`` and ``tensorrt_version``.

    Timing caches are reused across builds on the same GPU model and TensorRT version only.
    """
    return (root or cache_dir()) / "timing" / f"{_slug(gpu.name)}-{gpu.sm}-trt{_slug(tensorrt_version)}.cache"


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Hold an advisory lock on ``<path>.lock`` so concurrent starts build a cached engine only once."""
    import fcntl

    lock = Path(str(path) + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock, "a")
    except OSError as err:  # read-only or full cache folder, no permission
        raise cache_folder_error(lock.parent, err, "lock the engine cache in") from err
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
