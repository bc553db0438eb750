"""Inference runtimes behind one small interface.

A backend is built from a model file, exposes its ``contract``, and maps a uint8 NHWC batch of the
contract's shape to road probability (N, H, W) float32. ``open_backend`` picks one by name or ``auto``.

May import the core leaves (contract, errors) and, for TensorRT, the build side in ``trt``; never the
pipeline, ``ros``, ``training`` or ``evaluation``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np

from ..contract import ModelContract
from ..errors import BackendUnavailableError, ModelError

__all__ = ["Backend", "BACKENDS", "open_backend", "available_backends"]

BACKENDS = ("auto", "tensorrt", "onnxruntime")
PLAN_SUFFIXES = (".plan", ".engine", ".trt")


class Backend(Protocol):
    """What the pipeline needs from a runtime."""

    name: str
    contract: ModelContract
    device: str

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


def open_backend(model: str | Path, backend: str = "auto", **options) -> Backend:
    """Open ``model`` (.onnx or TensorRT plan) with the named runtime, or the best present for ``auto``."""
    path = Path(model).expanduser()
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise ModelError(
            f"model file not found: {path}; pass an existing .onnx (or TensorRT .plan) file, "
            "e.g. the shipped model from `fcn-road-seg model-path`"
        )
    is_plan = path.suffix.lower() in PLAN_SUFFIXES
    if backend == "auto":
        backend = "tensorrt" if is_plan or "tensorrt" in available_backends() else "onnxruntime"
    if backend == "onnxruntime":
        if is_plan:
            raise ModelError(
                f"{path} is a TensorRT plan; ONNX Runtime needs the .onnx file (or use backend 'tensorrt')"
            )
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, **options)
    from .tensorrt import open_tensorrt

    return open_tensorrt(path, **options)
