"""CUDA memory for one inference stream through pycuda, independent of TensorRT.

- ``CudaDevice`` uses the device's *primary* context (the one the CUDA runtime, and so TensorRT, uses),
  retained once per process and device and released at exit, as pycuda's own ``pycuda.autoprimaryctx``
  does (``Device.retain_primary_context()``, ``Context.push()/pop()``, ``Context.detach()``); it pushes and
  pops it around work, so any thread (the ROS node's worker) can use it. Objects never release it one by
  one: a second backend or a build in the same process shares the same context.
- ``StreamIO`` owns page-locked host buffers and device buffers allocated once per tensor, one stream, and
  CUDA events that time the three stages: copy in, execute, copy out.
"""
from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import BackendUnavailableError, TensorRTError
from .plan import GpuInfo

__all__ = ["CudaDevice", "StreamIO", "TensorSpec", "import_pycuda"]

PYCUDA_HINT = ("pycuda is not installed: `pip install 'pycuda>=2024.1.1'` builds it from source and needs the CUDA "
               "toolkit on PATH (on Jetson: export PATH=/usr/local/cuda/bin:$PATH first; CUDA 13 needs "
               "pycuda >= 2025.1.2)")
_PRIMARY: dict[int, object] = {}  # device index -> its retained primary context, for the process's lifetime
_PRIMARY_LOCK = threading.Lock()


def _release_primary_contexts() -> None:
    """atexit: release what ``_primary_context`` retained (pycuda.autoprimaryctx's ``_finish_up`` pattern)."""
    with _PRIMARY_LOCK:
        for context in _PRIMARY.values():
            context.detach()
        _PRIMARY.clear()


def _primary_context(cuda, index: int):
    """Device ``index``'s primary context, retained on first use and kept until the process exits."""
    with _PRIMARY_LOCK:
        if index not in _PRIMARY:
            if not _PRIMARY:
                atexit.register(_release_primary_contexts)
            _PRIMARY[index] = cuda.Device(index).retain_primary_context()
        return _PRIMARY[index]


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
                f"CUDA device {index} asked for but {count} found; "
                + (f"pass device 0..{count - 1}" if count else "check the NVIDIA driver with nvidia-smi "
                   "(tegrastats on Jetson), or use backend onnxruntime")
            )
        self._cuda = cuda
        self.index = index
        device = cuda.Device(index)
        self.info = GpuInfo(device.name(), tuple(device.compute_capability()))
        try:
            self._context = _primary_context(cuda, index)
        except cuda.Error as err:
            raise BackendUnavailableError(f"cannot open CUDA device {index} ({err}); check nvidia-smi") from err

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the primary context current on the calling thread for the block."""
        try:
            self._context.push()
        except self._cuda.Error as err:
            raise TensorRTError(f"cannot make CUDA device {self.index} current ({type(err).__name__}: {err}); "
                                "check nvidia-smi (tegrastats on Jetson) and restart") from err
        try:
            yield
        finally:
            self._cuda.Context.pop()


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
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, object] = {}
        try:
            for s in specs:
                self.host[s.name] = cuda.pagelocked_empty(s.shape, s.dtype)
                self.device[s.name] = cuda.mem_alloc(self.host[s.name].nbytes)
            self.stream = cuda.Stream()
            self._events = [cuda.Event() for _ in range(4)]
        except cuda.Error as err:  # pycuda's MemoryError and friends derive from driver.Error
            self.free()
            raise TensorRTError(f"cannot allocate GPU buffers ({type(err).__name__}: {err}); close other GPU "
                                "programs (nvidia-smi / tegrastats shows memory use) and restart") from err
        self._lock = threading.Lock()

    def address(self, name: str) -> int:
        return int(self.device[name])

    def run(
        self, inputs: dict[str, np.ndarray], execute: Callable[[int], bool]
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Copy ``inputs`` in, ``execute(stream_handle)``, copy outputs out; returns (outputs, stage ms)."""
        cuda = self._cuda
        start, copied_in, executed, copied_out = self._events
        stage = "copy in (memcpy_htod_async)"
        with self._lock:
            try:
                for name, value in inputs.items():
                    np.copyto(self.host[name], value)
                start.record(self.stream)
                for name, spec in self.specs.items():
                    if spec.is_input:
                        cuda.memcpy_htod_async(self.device[name], self.host[name], self.stream)
                copied_in.record(self.stream)
                stage = "inference (execute_async_v3)"
                if not execute(self.stream.handle):
                    self.stream.synchronize()
                    raise TensorRTError("TensorRT could not enqueue the inference (see the TensorRT log above); "
                                        "restart the node, and rebuild the engine if it persists")
                executed.record(self.stream)
                stage = "copy out (memcpy_dtoh_async)"
                for name, spec in self.specs.items():
                    if not spec.is_input:
                        cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)
                copied_out.record(self.stream)
                stage = "stream synchronize (the frame's copies and inference)"
                self.stream.synchronize()
            except cuda.Error as err:  # launch failure, out of memory, illegal address: raised or on synchronize
                raise TensorRTError(
                    f"CUDA failed during {stage} ({type(err).__name__}: {err}); this frame has no result. If it "
                    "repeats, restart the node (a launch failure leaves the CUDA context unusable), check GPU "
                    "memory with nvidia-smi (tegrastats on Jetson), and rebuild the engine"
                ) from err
            outputs = {n: self.host[n].copy() for n, s in self.specs.items() if not s.is_input}
            # Inside the lock: another thread's run would re-record these events. ``end.time_since(start)``
            # needs both events reached, which the synchronize above ensures (pycuda docs, Event.time_since).
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
