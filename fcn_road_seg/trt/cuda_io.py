"""CUDA memory for one inference stream through pycuda, independent of TensorRT.

- ``CudaDevice`` retains the device's *primary* context (the one the CUDA runtime, and so TensorRT, uses)
  and pushes/pops it around work, so any thread (the ROS node's worker) can use it.
- ``StreamIO`` owns page-locked host buffers and device buffers allocated once per tensor, one stream, and
  CUDA events that time the three stages: copy in, execute, copy out.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import BackendUnavailableError
from .plan import GpuInfo

__all__ = ["CudaDevice", "StreamIO", "TensorSpec", "import_pycuda"]

PYCUDA_HINT = ("pycuda is not installed: on Jetson `sudo apt install python3-pycuda` (or `pip install pycuda` with "
               "the CUDA toolkit on PATH); on a desktop `pip install pycuda`")


def import_pycuda():
    """``pycuda.driver`` initialised, or BackendUnavailableError naming what to install."""
    try:
        import pycuda.driver as cuda
    except ImportError as err:
        raise BackendUnavailableError(f"{PYCUDA_HINT} ({err})") from err
    try:
        cuda.init()
    except cuda.Error as err:
        raise BackendUnavailableError(f"CUDA cannot start ({err}); check the NVIDIA driver with nvidia-smi "
                                      "(tegrastats on Jetson)") from err
    return cuda


class CudaDevice:
    """One GPU's primary context, usable from any thread via ``with device.active():``."""

    def __init__(self, index: int = 0) -> None:
        cuda = import_pycuda()
        count = cuda.Device.count()
        if not 0 <= index < count:
            raise BackendUnavailableError(
                f"CUDA device {index} asked for but {count} found; pass device 0..{count - 1}"
            )
        self._cuda = cuda
        self.index = index
        self._device = cuda.Device(index)
        self.info = GpuInfo(self._device.name(), tuple(self._device.compute_capability()))
        self._context = self._device.retain_primary_context()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the primary context current on the calling thread for the block."""
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def close(self) -> None:
        """Release this object's hold on the primary context (it is destroyed when nobody retains it)."""
        if self._context is not None:
            self._context.detach()
            self._context = None


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    is_input: bool


class StreamIO:
    """Pinned host + device buffers per tensor, one stream, event timing. Create and use inside ``active()``."""

    def __init__(self, specs: list[TensorSpec]) -> None:
        cuda = import_pycuda()
        self._cuda = cuda
        self.specs = {s.name: s for s in specs}
        self.host = {s.name: cuda.pagelocked_empty(s.shape, s.dtype) for s in specs}
        self.device = {s.name: cuda.mem_alloc(self.host[s.name].nbytes) for s in specs}
        self.stream = cuda.Stream()
        self._events = [cuda.Event() for _ in range(4)]
        self._lock = threading.Lock()

    def address(self, name: str) -> int:
        return int(self.device[name])

    def run(
        self, inputs: dict[str, np.ndarray], execute: Callable[[int], bool]
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Copy ``inputs`` in, ``execute(stream_handle)``, copy outputs out; returns (outputs, stage ms)."""
        cuda = self._cuda
        start, copied_in, executed, copied_out = self._events
        with self._lock:
            for name, value in inputs.items():
                np.copyto(self.host[name], value)
            start.record(self.stream)
            for name, spec in self.specs.items():
                if spec.is_input:
                    cuda.memcpy_htod_async(self.device[name], self.host[name], self.stream)
            copied_in.record(self.stream)
            if not execute(self.stream.handle):
                self.stream.synchronize()
                raise RuntimeError("GPU execution failed to enqueue (see the TensorRT log above)")
            executed.record(self.stream)
            for name, spec in self.specs.items():
                if not spec.is_input:
                    cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)
            copied_out.record(self.stream)
            self.stream.synchronize()
            outputs = {n: self.host[n].copy() for n, s in self.specs.items() if not s.is_input}
        timings = {
            "h2d": copied_in.time_since(start),
            "execute": executed.time_since(copied_in),
            "d2h": copied_out.time_since(executed),
        }
        return outputs, timings

    def free(self) -> None:
        for alloc in self.device.values():
            alloc.free()
        self.device.clear()
        self.host.clear()
