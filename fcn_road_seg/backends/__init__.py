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

from ..contract import ModelContract, check_model_file
from ..errors import BackendUnavailableError, FcnRoadSegError, ModelError

__all__ = ["Backend", "BACKENDS", "open_backend", "available_backends", "fallback_reason"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime")
PLAN_SUFFIXES = (".plan", ".engine", ".trt")
FALLBACK = "backend 'auto' fell back to ONNX Runtime: "  # how ``selection`` starts after a fallback


class Backend(Protocol):
    """What the pipeline needs from a runtime."""

    name: str
    contract: ModelContract
    device: str
    selection: str  # which runtime was chosen and why (set by open_backend; diagnostics and report.json show it)

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
    if importlib.util.find_spec("onnxruntime") is not None:
        found.append("onnxruntime")
    return found


# Keyword options each runtime takes; open_backend hands each only its own (the node passes both kinds).
TENSORRT_OPTIONS = frozenset({"precision", "workspace_mib", "device_index", "cache_root"})
ONNXRUNTIME_OPTIONS = frozenset({"device", "threads", "spin_wait"})


def open_backend(model: str | Path, backend: str = "auto", **options) -> Backend:
    """Open ``model`` (.onnx or TensorRT plan) with the named runtime, or TensorRT-else-ONNX Runtime for ``auto``.

    ``auto`` tries TensorRT for an .onnx and, when it cannot open here (not installed, no CUDA device, a parse
    or build error), uses ONNX Runtime (``fallback_reason`` says why, for the caller to log). A plan, or
    backend ``tensorrt``, fails hard. The opened backend's ``selection`` says which ran and why.
    """
    path = Path(model).expanduser()
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    unknown = set(options) - TENSORRT_OPTIONS - ONNXRUNTIME_OPTIONS
    if unknown:
        raise TypeError(f"unknown backend option(s) {sorted(unknown)}")
    is_plan = path.suffix.lower() in PLAN_SUFFIXES
    check_model_file(path, "plan" if is_plan else "onnx", "pass an exported .onnx (or TensorRT .plan) file, e.g. "
                     "the shipped model from `fcn-road-seg model-path`")
    trt_options = {k: v for k, v in options.items() if k in TENSORRT_OPTIONS}
    ort_options = {k: v for k, v in options.items() if k in ONNXRUNTIME_OPTIONS}
    if backend == "onnxruntime":
        if is_plan:
            raise ModelError(
                f"{path} is a TensorRT plan; ONNX Runtime needs the .onnx file (or use backend 'tensorrt')"
            )
        return _selected(_open_onnxruntime(path, ort_options), "backend 'onnxruntime' requested")
    from .tensorrt import open_tensorrt

    if backend == "tensorrt" or is_plan:
        why = "backend 'tensorrt' requested" if backend == "tensorrt" else "backend 'auto' with a TensorRT plan"
        return _selected(open_tensorrt(path, **trt_options), why)
    try:
        return _selected(open_tensorrt(path, **trt_options), "backend 'auto': TensorRT opened")
    except FcnRoadSegError as err:
        reason = f"TensorRT cannot run {path.name} here: {err}"
    log.debug("backend 'auto' uses ONNX Runtime: %s", reason)  # callers say it once, with their option's name
    return _selected(_open_onnxruntime(path, ort_options), FALLBACK + reason)


def fallback_reason(backend: Backend) -> str | None:
    """Why backend 'auto' fell back to ONNX Runtime, in one short clause (the install hint left out), or None
    when it did not; the CLI logs it at INFO, the node as one WARN at start."""
    if not backend.selection.startswith(FALLBACK):
        return None
    reason = re.split(r"(?<=\)): |; ", backend.selection[len(FALLBACK):], maxsplit=1)[0]
    return reason if len(reason) <= 160 else reason[:157] + "..."


def _open_onnxruntime(path: Path, options: dict) -> Backend:
    from .onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, **options)


def _selected(backend: Backend, why: str) -> Backend:
    backend.selection = why
    return backend
