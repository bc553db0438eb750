"""The fake ``tensorrt`` of one release: the strict surface (``strict``) plus hand-written hooks.

The build side is in ``fake_builder``, the runtime side in ``fake_runtime``, sharing one ``Fake``.

What the code path needs, done the way TensorRT does it:
- ``OnnxParser.parse_from_file`` parses the real ONNX and applies ``check-trt``'s parser rules for the
  release's target (operators, input types, uint8, opset, IR); 8.6 also needs an EXPLICIT_BATCH network.
- ``Builder.build_serialized_network`` checks the profile, precision flags (8.6/10.x; 11.x is strongly
  typed), DLA settings, drives the INT8 calibrator as TensorRT does (read_calibration_cache; else
  get_batch_size, get_batch until None, write_calibration_cache; an exception in get_batch counts as "no more
  batches", as the binding's trampoline does), calls the progress monitor (10.x+) and fills the timing cache;
  it returns an IHostMemory plan that records flags, precision, profile, DLA core, version and the ONNX.
- ``Runtime.deserialize_cuda_engine`` refuses a plan from another version or GPU (TensorRT's log error and
  ``None``); a DLA plan runs on ``runtime.DLA_core``.
- ``IExecutionContext.execute_async_v3`` enqueues the inference on the pycuda stream: input read from fake
  device memory, output computed by ONNX Runtime on the plan's ONNX, written back to device memory.
- Lifetimes from NvInfer.h (10.16, 11.1): "The lifetime of the ITimingCache must exceed the lifetime of all
  builders that use it" is recorded as a violation in ``gpu.violations`` when broken.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field

import numpy as np

from .device import FakeGpu
from .strict import build_module_types, load_surface, new_bound

VERSIONS = {"8.6": "8.6.1", "10.3": "10.3.0", "10.16": "10.16.0", "11.1": "11.1.0"}
PARSER_TARGET = {"8.6": "8.6", "10.3": "10.x", "10.16": "10.x", "11.1": "11.x"}
PLAN_MAGIC = b"FAKEPLAN"
CACHE_MAGIC = b"FAKETCACHE"
ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL"}
NP = {"FLOAT": np.float32, "HALF": np.float16, "UINT8": np.uint8, "INT8": np.int8, "INT32": np.int32,
      "INT64": np.int64, "BOOL": np.bool_}


@dataclass
class Fake:
    """What the hooks of one fake release share: its types (filled once built), the GPU, the version."""

    release: str
    gpu: FakeGpu
    T: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return VERSIONS[self.release]

    @property
    def major(self) -> int:
        return int(self.release.split(".")[0])

    def enum(self, name: str, member: str):
        return getattr(self.T[name], member)

    def log(self, logger, severity: str, msg: str) -> None:
        logger.log(getattr(self.T["ILogger"].Severity, severity), msg)

    def dims(self, shape) -> object:
        return new_bound(self.T["Dims"], shape=tuple(int(d) for d in shape))

    def is_a(self, obj, name: str) -> bool:
        return name in self.T and isinstance(obj, self.T[name])

    def fail(self, owner, msg: str):
        """TensorRT's way to fail a build or deserialisation: an error on the logger, then None."""
        self.log(owner._f_logger, "ERROR", msg)
        return None

    def host_memory(self, data: bytes):
        return new_bound(self.T["IHostMemory"], data=bytes(data))


def build(release: str, gpu: FakeGpu) -> types.ModuleType:
    """Build the fake ``tensorrt`` module of ``release`` over ``gpu``."""
    from .fake_builder import builder_hooks
    from .fake_runtime import runtime_hooks

    surface = load_surface(release)
    fake = Fake(release, gpu)
    fake.T.update(build_module_types(surface, release, {**builder_hooks(fake), **runtime_hooks(fake)}))
    module = types.ModuleType("tensorrt")
    for name, value in fake.T.items():
        setattr(module, name, value)
    module.__version__ = fake.version

    def nptype(trt_type):
        for name, np_type in NP.items():
            if trt_type is fake.enum("DataType", name):
                return np_type
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    module.nptype = nptype
    module.volume = lambda iterable: int(np.prod(list(iterable)))
    for name in surface["functions"]:
        setattr(module, name, _unmodelled_function(name))
    return module


def _unmodelled_function(name: str):
    def function(*args, **kwargs):
        raise NotImplementedError(f"fake tensorrt: tensorrt.{name} is bound but not modelled by the fakes")
    function.__name__ = name
    return function
