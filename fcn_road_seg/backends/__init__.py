"""Inference runtimes behind one small interface.

A backend is built from a model file, exposes its ``contract``, and maps a uint8 NHWC batch of the
contract's shape to road probability (N, H, W) float32. ``open_backend`` picks one by name or ``auto``.

May import the core leaves (contract, errors) and, for TensorRT, the build side in ``trt``; never the
pipeline, ``ros``, ``training`` or ``evaluation``.
"""
from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path
from typing import Protocol

import numpy as np

from ..contract import ModelContract, check_model_file, file_sha256, read_onnx_contract
from ..errors import BackendUnavailableError, FcnRoadSegError, ModelError

__all__ = ["Backend", "BACKENDS", "CPU_PRECISIONS", "CPU_RUNTIMES", "open_backend", "available_backends", "int8_copy"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "openvino", "onnxruntime")
CPU_PRECISIONS = ("auto", "f32", "bf16", "int8")
PLAN_SUFFIXES = (".plan", ".engine", ".trt")
FALLBACK = "backend 'auto' fell back to "  # how ``selection`` starts after a fallback: "... to OpenVINO: why"


class Backend(Protocol):
    """What the pipeline needs from a runtime."""

    name: str
    contract: ModelContract
    device: str
    selection: str  # which runtime was chosen and why (set by open_backend; diagnostics and report.json show it)
    fallback: str | None  # why backend 'auto' fell back to a CPU runtime, one short clause; None when it did not

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) at the contract's size -> float32 road probability (N, H, W)."""
        ...

    def close(self) -> None:
        """Release runtime resources (sessions, GPU buffers)."""
        ...


def _tensorrt_present() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None


def available_backends() -> list[str]:
    """Runtimes importable on this machine, best first."""
    found = ["tensorrt"] if _tensorrt_present() else []
    return found + [name for name in ("openvino", "onnxruntime") if importlib.util.find_spec(name) is not None]


# Keyword options each runtime takes; open_backend hands each only its own (the node passes both kinds).
TENSORRT_OPTIONS = frozenset({"precision", "workspace_mib", "device_index", "cache_root"})
ONNXRUNTIME_OPTIONS = frozenset({"device", "threads", "spin_wait"})
OPENVINO_OPTIONS = frozenset({"threads"})
CPU_RUNTIMES = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}


def open_backend(model: str | Path, backend: str = "auto", *, cpu_precision: str = "auto", **options) -> Backend:
    """Open ``model`` (.onnx or TensorRT plan) with the named runtime, or for ``auto`` the fastest that runs here.

    ``auto`` tries TensorRT for an .onnx and, when it cannot open here (not installed, no CUDA device, a parse
    or build error), takes the CPU path: OpenVINO, else (not installed, or it cannot load the model) ONNX
    Runtime, the universal fallback; the backend's ``fallback`` says why, for the caller to log once with its own
    option's name. A plan, or backend
    ``tensorrt``, fails hard. The opened backend's ``selection`` says which ran, why, and in which precision.

    ``cpu_precision`` (OpenVINO and ONNX Runtime): ``int8`` runs the model's INT8 copy (``<stem>_int8.onnx``
    beside it, written by `fcn-road-seg quantize` from this very file), or the model itself when it is INT8;
    ``f32`` the file as given; ``bf16`` the file with OpenVINO's bfloat16 hint; ``auto`` is ``int8`` where an
    INT8 copy exists and the backend is ``auto``, else ``f32``.
    """
    path = Path(model).expanduser()
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if cpu_precision not in CPU_PRECISIONS:
        raise ValueError(f"cpu_precision must be one of {', '.join(CPU_PRECISIONS)}, got {cpu_precision!r}")
    unknown = set(options) - TENSORRT_OPTIONS - ONNXRUNTIME_OPTIONS - OPENVINO_OPTIONS
    if unknown:
        raise TypeError(f"unknown backend option(s) {sorted(unknown)}")
    is_plan = path.suffix.lower() in PLAN_SUFFIXES
    check_model_file(path, "plan" if is_plan else "onnx", "pass an exported .onnx (or TensorRT .plan) file, e.g. "
                     "the shipped model from `fcn-road-seg model-path`")
    if backend in CPU_RUNTIMES:
        if is_plan:
            raise ModelError(f"{path} is a TensorRT plan; {CPU_RUNTIMES[backend]} needs the .onnx file (or use "
                             "backend 'tensorrt')")
        cpu_path, hint = _cpu_model(path, cpu_precision, auto=False)
        return _open_cpu(backend, cpu_path, hint, options, f"backend '{backend}' requested")
    from .tensorrt import open_tensorrt

    trt_options = {k: v for k, v in options.items() if k in TENSORRT_OPTIONS}
    if backend == "tensorrt" or is_plan:
        why = "backend 'tensorrt' requested" if backend == "tensorrt" else "backend 'auto' with a TensorRT plan"
        return _selected(open_tensorrt(path, **trt_options), why)
    try:
        return _selected(open_tensorrt(path, **trt_options), "backend 'auto': TensorRT opened")
    except FcnRoadSegError as err:
        reason = f"TensorRT cannot run {path.name} here: {err}"
    cpu_path, hint = _cpu_model(path, cpu_precision, auto=True)
    runtime = "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"
    if runtime == "openvino":
        try:
            backend = _open_cpu(runtime, cpu_path, hint, options, f"{FALLBACK}OpenVINO: {reason}", _clause(reason))
        except FcnRoadSegError as err:
            reason += f"; OpenVINO cannot run it either: {err}"
            runtime = "onnxruntime"
    if runtime == "onnxruntime":
        backend = _open_cpu(runtime, cpu_path, hint, options, f"{FALLBACK}ONNX Runtime: {reason}",
                            _clause(reason))
    log.debug("backend 'auto' uses %s: %s", CPU_RUNTIMES[runtime], reason)  # callers say it once, with their option
    return backend


def _clause(reason: str) -> str:
    """Return the first clause of why TensorRT could not run, for ``Backend.fallback``.

    It leaves out the install hint and what OpenVINO said; the CLI logs it at INFO, the node as one WARN at start.
    """
    reason = re.split(r"(?<=\)): |; ", reason, maxsplit=1)[0]
    return reason if len(reason) <= 160 else reason[:157] + "..."


def int8_copy(path: Path) -> Path | None:
    """``<stem>_int8.onnx`` beside ``path`` when its contract says it was quantized from this very file."""
    copy = path.with_name(f"{path.stem}_int8.onnx")
    if path.suffix.lower() != ".onnx" or not copy.is_file() or copy.resolve() == path.resolve():
        return None
    if read_onnx_contract(copy).quantization.get("source_sha256") != file_sha256(path):
        log.warning("ignoring %s: it was not quantized from %s (re-run `fcn-road-seg quantize`)", copy.name, path.name)
        return None
    return copy


def _cpu_model(path: Path, cpu_precision: str, auto: bool) -> tuple[Path, str]:
    """Return the file a CPU runtime runs for ``cpu_precision`` (see open_backend) and its float precision hint."""
    if cpu_precision in ("f32", "bf16") or (cpu_precision == "auto" and not auto):
        return path, cpu_precision if cpu_precision != "auto" else "f32"
    if read_onnx_contract(path).precision == "int8":
        return path, "f32"
    copy = int8_copy(path)
    if copy is None and cpu_precision == "int8":
        raise ModelError(f"cpu_precision 'int8' needs an INT8 copy of {path.name}: write it with `fcn-road-seg "
                         f"quantize {path} -o {path.with_name(path.stem + '_int8.onnx')} --calib FRAMES`")
    return copy or path, "f32"


def _open_cpu(runtime: str, path: Path, hint: str, options: dict, why: str, fallback: str | None = None) -> Backend:
    """OpenVINO or ONNX Runtime on ``path``; the selection names the file's precision (and OpenVINO's hint)."""
    if runtime == "openvino":
        from .openvino import OpenVinoBackend

        backend = OpenVinoBackend(path, precision=hint, **{k: v for k, v in options.items() if k in OPENVINO_OPTIONS})
        return _selected(backend, f"{why} ({backend.contract.precision} model {path.name}, {hint} hint)", fallback)
    if hint == "bf16":
        raise BackendUnavailableError("cpu_precision 'bf16' runs on OpenVINO only: pip install openvino and use "
                                      "backend 'openvino' (or 'auto')")
    from .onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(path, **{k: v for k, v in options.items() if k in ONNXRUNTIME_OPTIONS})
    return _selected(backend, f"{why} ({backend.contract.precision} model {path.name})", fallback)


def _selected(backend: Backend, why: str, fallback: str | None = None) -> Backend:
    backend.selection, backend.fallback = why, fallback
    return backend
