"""TensorRT backend: run a plan (or an .onnx, built once and cached) with pycuda-managed memory.

Uses the named-tensor API that TensorRT 8.6, 10.x and 11.x all bind (``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``set_tensor_address``, ``execute_async_v3``; NVIDIA/TensorRT python/src/infer/pyCore.cpp).
Before deserialising, the plan's sidecar is checked against the running TensorRT version and GPU, so a
mismatch fails with both sides named and the fix, instead of TensorRT's "version tag does not match" error.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..contract import ModelContract
from ..trt.callbacks import trt_logger
from ..trt.engine import BuildOptions, cached_engine, import_tensorrt
from ..errors import FcnRoadSegError, ModelError, TensorRTError
from ..trt.plan import DLA_BOARDS, check_compatible, read_sidecar
from ..trt.cuda_io import CudaDevice, StreamIO, TensorSpec, import_pycuda

__all__ = ["TensorRTBackend", "open_tensorrt"]

log = logging.getLogger(__name__)


def open_tensorrt(path: str | Path, *, precision: str = "fp16", workspace_mib: int | None = None,
                  device_index: int = 0, cache_root: Path | None = None) -> TensorRTBackend:
    """Open a plan, or an .onnx: its engine for this GPU is built on first use and cached (see ``cached_engine``)."""
    path = Path(path)
    import_tensorrt()
    import_pycuda()
    if path.suffix.lower() == ".onnx":
        extra = {} if workspace_mib is None else {"workspace_mib": workspace_mib}
        path = cached_engine(path, BuildOptions(precision=precision, device_index=device_index, **extra),
                             cache_root=cache_root)
    return TensorRTBackend(path, device_index=device_index)


class TensorRTBackend:
    """One execution context on one stream; ``infer`` may be called from any thread (calls are serialised)."""

    name = "tensorrt"
    selection = "opened directly (not through open_backend)"
    fallback = None

    def __init__(self, plan_path: str | Path, *, device_index: int = 0) -> None:
        trt = import_tensorrt()
        self.path = Path(plan_path)
        if not self.path.is_file():
            raise ModelError(f"TensorRT plan not found: {self.path}; build it with `fcn-road-seg build-engine`")
        sidecar = read_sidecar(self.path)
        self.sidecar = sidecar
        self.contract: ModelContract = sidecar.contract
        self._cuda = CudaDevice(device_index)
        self._io: StreamIO | None = None
        try:
            check_compatible(sidecar, trt.__version__, self._cuda.info, plan=self.path)
            with self._cuda.active():
                self._load(trt)
        except FcnRoadSegError:
            self.close()
            raise
        except Exception as err:  # TensorRT's RuntimeError/TypeError, pycuda's driver errors
            self.close()
            raise TensorRTError(f"TensorRT {trt.__version__} could not load {self.path} ({type(err).__name__}: "
                                f"{err}); rebuild it with `fcn-road-seg build-engine`, or pass the .onnx") from err
        self.device = (f"cuda:{device_index} {self._cuda.info.name} ({sidecar.precision.upper()}, "
                       f"TensorRT {trt.__version__})")
        self.last_timings_ms: dict[str, float] = {}
        log.info("tensorrt %s: %s on %s", trt.__version__, self.path.name, self.device)

    def _load(self, trt) -> None:
        self._runtime = trt.Runtime(trt_logger(trt))
        if self.sidecar.dla_core is not None:
            self._use_dla_core(self.sidecar.dla_core)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise TensorRTError(f"TensorRT could not deserialise {self.path} (see the TensorRT log above); "
                                "rebuild it with `fcn-road-seg build-engine`")
        c = self.contract
        expected = {c.input_name: (True, c.input_shape, np.uint8),
                    c.output_name: (False, (1, c.input_height, c.input_width), np.float32)}
        specs = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            if expected.get(name) != (is_input, shape, dtype):
                raise ModelError(
                    f"{self.path}: engine tensor {name} ({'input' if is_input else 'output'} {shape} {dtype}) does "
                    f"not match its contract ({c.input_name} {c.input_shape} uint8 -> {c.output_name} float32); "
                    "rebuild the plan from the model's .onnx"
                )
            specs.append(TensorSpec(name, shape, dtype, is_input))
        if len(specs) != 2:
            raise ModelError(f"{self.path}: expected 2 I/O tensors, found {len(specs)}; rebuild the plan")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise TensorRTError(f"TensorRT could not create an execution context for {self.path} (GPU memory?); "
                                "close other GPU programs and restart")
        self._io = StreamIO(specs)
        for spec in specs:  # buffers never move, so addresses are set once
            self._context.set_tensor_address(spec.name, self._io.address(spec.name))

    def _use_dla_core(self, core: int) -> None:
        """Set the core a DLA plan runs on: the runtime names it (set before deserialising); it must exist here."""
        cores = self._runtime.num_DLA_cores
        if not 0 <= core < cores:
            fix = (f"rebuild it on this device with --dla 0..{cores - 1}, or without --dla" if cores else
                   "rebuild it without --dla (or pass the .onnx, so a GPU engine is built and cached)")
            raise TensorRTError(f"{self.path} was built for DLA core {core} but this device has {cores} DLA core(s) "
                                f"({DLA_BOARDS}); {fix}")
        self._runtime.DLA_core = core

    def infer(self, batch: np.ndarray) -> np.ndarray:
        c = self.contract
        if batch.dtype != np.uint8 or batch.shape != c.input_shape:
            raise ValueError(f"batch must be uint8 {c.input_shape}, got {batch.dtype} {batch.shape}")
        with self._cuda.active():
            outputs, timings = self._io.run({c.input_name: batch}, self._context.execute_async_v3)
        self.last_timings_ms = timings
        return outputs[c.output_name]

    def close(self) -> None:
        """Free the GPU buffers, then the execution context, the engine and the runtime, in that order.

        TensorRT 10/11 free objects when their last reference goes (no ``destroy()``); an execution context
        must go before its engine, and the engine before its runtime. The primary context stays retained for
        the process (``cuda_io``), so closing one backend never pulls it from under another.
        """
        if self._cuda is None:
            return
        with self._cuda.active():
            if self._io is not None:
                self._io.free()
                self._io = None
            for attr in ("_context", "_engine", "_runtime"):
                if hasattr(self, attr):
                    delattr(self, attr)
        self._cuda = None
