"""A strict fake ``pycuda`` (package + ``pycuda.driver``), faithful to inducer/pycuda's Boost.Python bindings.

The bindings are ``src/wrapper/wrap_cudadrv.cpp`` and ``pycuda/driver.py``; commit and lines in SOURCES.md.

Only the names below exist; a call with a keyword the binding does not declare, or a wrong argument count,
raises ``Boost.Python.ArgumentError`` (a TypeError) as Boost.Python does. CUDA's rules that matter for the
code are kept: the context stack is per thread and memory calls need a current context (LogicError
"invalid device context" otherwise); ``Context.pop`` is static and fails on an empty stack; async copies and
TensorRT's enqueue run on their stream in order when it is synchronised; errors are pycuda's classes
(``pycuda._driver.Error`` and its MemoryError, LogicError, LaunchError, RuntimeError) with pycuda's
"<routine> failed: <reason>" messages.
"""
from __future__ import annotations

import threading
import time
import types

import numpy as np

from .device import FakeGpu
from .strict import check_call


class ArgumentError(TypeError):
    """Boost.Python.ArgumentError."""


ArgumentError.__module__ = "Boost.Python"

# name -> (keyword names or [] for positional-only, names with defaults), from wrap_cudadrv.cpp
SIGNATURES = {
    "init": (["flags"], {"flags"}),
    "mem_alloc": ([], set()),
    "mem_get_info": ([], set()),
    "pagelocked_empty": (["shape", "dtype", "order", "mem_flags"], {"order", "mem_flags"}),
    "memcpy_htod": (["dest", "src"], set()),
    "memcpy_dtoh": (["dest", "src"], set()),
    "memcpy_htod_async": (["dest", "src", "stream"], {"stream"}),
    "memcpy_dtoh_async": (["dest", "src", "stream"], {"stream"}),
    "Stream": (["flags"], {"flags"}),
    "Event": (["flags"], {"flags"}),
    "Event.record": (["stream"], {"stream"}),
}


def _check(name: str, args, kwargs) -> None:
    names, defaults = SIGNATURES[name]
    try:
        check_call(name, [names], defaults, args, kwargs, error=ArgumentError)
    except ArgumentError:
        given = ", ".join([type(a).__name__ for a in args] + [f"{k}={type(v).__name__}" for k, v in kwargs.items()])
        raise ArgumentError(f"Python argument types in\n    pycuda._driver.{name}({given})\ndid not match C++ "
                            f"signature:\n    {name}({', '.join(names) or '...'})") from None


def build(gpu: FakeGpu):
    """(pycuda package module, pycuda.driver module) over ``gpu``."""
    tls = threading.local()
    state = {"initialised": False}

    class Error(Exception):
        pass

    errors = {"Error": Error}
    for name in ("MemoryError", "LogicError", "LaunchError", "RuntimeError"):
        errors[name] = type(name, (Error,), {})
    for cls in errors.values():
        cls.__module__ = "pycuda._driver"
    LogicError = errors["LogicError"]

    def stack() -> list:
        if not hasattr(tls, "stack"):
            tls.stack = []
        return tls.stack

    def need_context(routine: str) -> None:
        if not state["initialised"]:
            raise LogicError(f"{routine} failed: initialization error")
        if not stack():
            raise LogicError(f"{routine} failed: invalid device context")

    def fault(name: str) -> None:
        err = gpu.take_fault(name)
        if err is not None:
            kind, message = err
            raise errors[kind](message)

    def init(*args, **kwargs):
        _check("init", args, kwargs)
        state["initialised"] = True

    class Device:
        def __init__(self, *args, **kwargs):
            if kwargs or len(args) != 1:
                raise ArgumentError("Python argument types in\n    Device.__init__(...)\ndid not match C++ signature:\n"
                                    "    __init__(int)")
            if not state["initialised"]:
                raise LogicError("cuDeviceGet failed: initialization error")
            if not 0 <= args[0] < gpu.count:
                raise LogicError("cuDeviceGet failed: invalid device ordinal")
            self._index = args[0]

        @staticmethod
        def count():
            if not state["initialised"]:
                raise LogicError("cuDeviceGetCount failed: initialization error")
            return gpu.count

        def name(self):
            return gpu.name

        def compute_capability(self):
            return gpu.compute_capability

        def total_memory(self):
            return 8 << 30

        def retain_primary_context(self):
            context = object.__new__(Context)
            context._device, context._alive = self, True
            return context

    class Context:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("This class cannot be instantiated from Python")  # py::no_init

        def push(self):
            if not self._alive:
                raise LogicError("cuCtxPushCurrent failed: invalid device context")
            stack().append(self)

        @staticmethod
        def pop():
            if not stack():
                raise LogicError("context::pop failed: invalid device context - cannot pop non-current context")
            stack().pop()

        def detach(self):
            if self in stack():
                stack().remove(self)
            self._alive = False

        @staticmethod
        def get_device():
            need_context("cuCtxGetDevice")
            return stack()[-1]._device

        @staticmethod
        def synchronize():
            need_context("cuCtxSynchronize")

    class DeviceAllocation:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("This class cannot be instantiated from Python")

        def __int__(self):
            if self._freed:
                raise LogicError("cuMemFree failed: invalid argument")
            return self._address

        __index__ = __int__

        def free(self):
            if not self._freed:
                need_context("cuMemFree")
                gpu.memory.pop(self._address, None)
                self._freed = True

    def mem_alloc(*args, **kwargs):
        _check("mem_alloc", args, kwargs)
        need_context("cuMemAlloc")
        fault("mem_alloc")
        alloc = object.__new__(DeviceAllocation)
        alloc._address, alloc._size, alloc._freed = gpu.allocate(int(args[0])), int(args[0]), False
        return alloc

    def pagelocked_empty(*args, **kwargs):
        _check("pagelocked_empty", args, kwargs)
        need_context("cuMemHostAlloc")
        shape, dtype, _, _ = _args(("shape", "dtype", "order", "mem_flags"), args, kwargs,
                                   {"order": "C", "mem_flags": 0})
        return np.empty(shape, dtype)

    def _device_buffer(dest, nbytes: int) -> bytearray:
        return gpu.buffer(int(dest), nbytes)

    def _htod(dest, src):
        data = np.ascontiguousarray(src).tobytes()
        _device_buffer(dest, len(data))[:len(data)] = data

    def _dtoh(dest, src):
        data = _device_buffer(src, dest.nbytes)
        np.copyto(dest, np.frombuffer(bytes(data[:dest.nbytes]), dest.dtype).reshape(dest.shape))

    def memcpy_htod(*args, **kwargs):
        _check("memcpy_htod", args, kwargs)
        need_context("cuMemcpyHtoD")
        fault("memcpy_htod")
        _htod(*_args(("dest", "src"), args, kwargs))

    def memcpy_dtoh(*args, **kwargs):
        _check("memcpy_dtoh", args, kwargs)
        need_context("cuMemcpyDtoH")
        fault("memcpy_dtoh")
        _dtoh(*_args(("dest", "src"), args, kwargs))

    def _async(name, routine, copy, args, kwargs):
        _check(name, args, kwargs)
        need_context(routine)
        fault(name)
        dest, src, stream = _args(("dest", "src", "stream"), args, kwargs, {"stream": None})
        if stream is None:
            copy(dest, src)
        else:
            stream._enqueue(lambda: copy(dest, src))

    def memcpy_htod_async(*args, **kwargs):
        _async("memcpy_htod_async", "cuMemcpyHtoDAsync", _htod, args, kwargs)

    def memcpy_dtoh_async(*args, **kwargs):
        _async("memcpy_dtoh_async", "cuMemcpyDtoHAsync", _dtoh, args, kwargs)

    class Stream:
        def __init__(self, *args, **kwargs):
            _check("Stream", args, kwargs)
            need_context("cuStreamCreate")
            self._queue: list = []
            self._handle = gpu.allocate(8)
            gpu.streams[self._handle] = self

        @property
        def handle(self):
            return self._handle

        def _enqueue(self, job) -> None:
            self._queue.append(job)

        def synchronize(self):
            need_context("cuStreamSynchronize")
            jobs, self._queue = self._queue, []
            fault("Stream.synchronize")
            for job in jobs:
                job()

        def is_done(self):
            return not self._queue

    class Event:
        def __init__(self, *args, **kwargs):
            _check("Event", args, kwargs)
            self._time = None

        def record(self, *args, **kwargs):
            _check("Event.record", args, kwargs)
            stream = args[0] if args else kwargs.get("stream")

            def stamp():
                self._time = time.perf_counter()
            if stream is None:
                stamp()
            else:
                stream._enqueue(stamp)
            return self

        def time_since(self, start):
            if self._time is None or start._time is None:
                raise LogicError("cuEventElapsedTime failed: device not ready")
            return (self._time - start._time) * 1e3

    driver = types.ModuleType("pycuda.driver")
    driver.__file__ = __file__
    for name, value in dict(errors, init=init, Device=Device, Context=Context, DeviceAllocation=DeviceAllocation,
                            mem_alloc=mem_alloc, pagelocked_empty=pagelocked_empty, memcpy_htod=memcpy_htod,
                            memcpy_dtoh=memcpy_dtoh, memcpy_htod_async=memcpy_htod_async,
                            memcpy_dtoh_async=memcpy_dtoh_async, Stream=Stream, Event=Event).items():
        setattr(driver, name, value)
    package = types.ModuleType("pycuda")
    package.__path__ = []
    package.VERSION = (2025, 1, 2)
    package.driver = driver
    return package, driver


def _args(names, args, kwargs, defaults=None):
    values = dict(zip(names, args))
    values.update(kwargs)
    for k, v in (defaults or {}).items():
        values.setdefault(k, v)
    return [values[n] for n in names]
