"""Hooks of the fake ``tensorrt``'s runtime side: Runtime, ICudaEngine, IExecutionContext.

See ``tensorrt_fake`` for what they model.
"""
from __future__ import annotations

import json
import struct
import threading

import numpy as np

from .strict import new_bound
from .tensorrt_fake import NP, PLAN_MAGIC, Fake


def runtime_hooks(fake: Fake) -> dict:
    """Class name -> hook class for the runtime side of one fake release."""
    T, gpu, version = fake.T, fake.gpu, fake.version
    enum, dims, is_a, _fail = fake.enum, fake.dims, fake.is_a, fake.fail

    class RuntimeHooks:
        def init(self, logger):
            if not is_a(logger, "ILogger"):
                raise TypeError("Runtime.__init__(): incompatible constructor arguments")
            self._f_logger = logger
            self._f_values["DLA_core"] = -1

        def get_num_DLA_cores(self):
            return gpu.dla_cores

        def set_DLA_core(self, value):
            self._f_values["DLA_core"] = int(value)

        def deserialize_cuda_engine(self, serialized_engine):
            data = bytes(serialized_engine)
            if not data.startswith(PLAN_MAGIC):
                return _fail(self, "1: [runtime.cpp::parsePlan::314] Error Code 1: Serialization (Serialization "
                                   "assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed.)")
            (size,) = struct.unpack("<I", data[8:12])
            header = json.loads(data[12:12 + size])
            if header["tensorrt"] != version:
                return _fail(self, "1: [stdArchiveReader.cpp::StdArchiveReader::42] Error Code 1: Serialization "
                                   "(Serialization assertion stdVersionRead == kSERIALIZATION_VERSION failed.Version "
                                   f"tag does not match. The engine plan file is not compatible with this version of "
                                   f"TensorRT, expecting library version {version} got {header['tensorrt']}, please "
                                   "rebuild.)")
            if tuple(header["cc"]) != gpu.compute_capability:
                return _fail(self, "1: [cudaEngine.cpp] Error Code 1: the engine was built for another GPU "
                                   "architecture")
            core = None
            if header["dla_core"] is not None:
                core = max(self._f_values["DLA_core"], 0)
                if core >= gpu.dla_cores:
                    return _fail(self, f"DLA core {core} requested but the device has {gpu.dla_cores}")
            gpu.engines.append(dict(header, runtime_dla_core=core))
            return new_bound(T["ICudaEngine"], header=header, onnx=data[12 + size:], session=None,
                             lock=threading.Lock())

    class EngineHooks:
        def _io(self):
            h = self._f_header
            return [(n, tuple(s), d, True) for n, s, d in h["inputs"]] + \
                [(n, tuple(s), d, False) for n, s, d in h["outputs"]]

        def get_num_io_tensors(self):
            return len(EngineHooks._io(self))

        def get_tensor_name(self, index):
            return EngineHooks._io(self)[index][0]

        def _find(self, name):
            return next((t for t in EngineHooks._io(self) if t[0] == name), None)

        def get_tensor_mode(self, name):
            t = EngineHooks._find(self, name)
            return enum("TensorIOMode", "NONE" if t is None else "INPUT" if t[3] else "OUTPUT")

        def get_tensor_shape(self, name):
            return dims(EngineHooks._find(self, name)[1])

        def get_tensor_dtype(self, name):
            return enum("DataType", EngineHooks._find(self, name)[2])

        def create_execution_context(self, strategy=None, runtime_config=None):
            return new_bound(T["IExecutionContext"], engine=self, addresses={})

        def session(self):
            import onnxruntime as ort

            with self._f_lock:
                if self._f_session is None:
                    self._f_session = ort.InferenceSession(self._f_onnx, providers=["CPUExecutionProvider"])
            return self._f_session

    class ContextHooks:
        def set_tensor_address(self, name, memory):
            if EngineHooks._find(self._f_engine, name) is None:
                return False
            self._f_addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle):
            stream = gpu.streams.get(int(stream_handle))
            engine = self._f_engine
            io = EngineHooks._io(engine)
            if stream is None or any(t[0] not in self._f_addresses for t in io):
                return False
            addresses = dict(self._f_addresses)

            def run():
                feeds = {}
                for name, shape, dtype, is_input in io:
                    nbytes = int(np.prod(shape)) * np.dtype(NP[dtype]).itemsize
                    raw = bytes(gpu.buffer(addresses[name], nbytes)[:nbytes])
                    if is_input:
                        feeds[name] = np.frombuffer(raw, NP[dtype]).reshape(shape)
                outputs = EngineHooks.session(engine).run(None, feeds)
                for (name, shape, dtype, _), value in zip([t for t in io if not t[3]], outputs):
                    data = np.ascontiguousarray(value, NP[dtype]).tobytes()
                    gpu.buffer(addresses[name], len(data))[:len(data)] = data
            stream._enqueue(run)
            return True

    return {"Runtime": RuntimeHooks, "ICudaEngine": EngineHooks, "IExecutionContext": ContextHooks}
