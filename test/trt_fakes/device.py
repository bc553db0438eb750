"""The fake GPU both fakes share.

Device memory by address, streams by handle, injected faults, and a record of what TensorRT was asked to do (for
tests to assert on).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class FakeGpu:
    name: str = "NVIDIA Jetson AGX Orin"
    compute_capability: tuple[int, int] = (8, 7)
    count: int = 1  # CUDA devices
    dla_cores: int = 0
    fast_fp16: bool = True
    fast_int8: bool = True
    memory: dict[int, bytearray] = field(default_factory=dict)
    streams: dict[int, object] = field(default_factory=dict)
    build_error: str | None = None  # the builder logs it and returns None (e.g. out of memory)
    faults: dict[str, tuple] = field(default_factory=dict)  # pycuda call -> (error class, message), once
    violations: list[str] = field(default_factory=list)  # lifetime rules of the C++ API broken
    builds: list[dict] = field(default_factory=list)  # the plan header of every build
    engines: list[dict] = field(default_factory=list)  # plan header + runtime DLA core of every deserialised plan
    calibration: list[str] = field(default_factory=list)  # calibrator calls in order
    progress: list[tuple] = field(default_factory=list)  # progress monitor calls in order
    lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0x7F0000000000

    def allocate(self, nbytes: int) -> int:
        with self.lock:
            address = self._next
            self._next += (nbytes + 255) // 256 * 256 + 256
            self.memory[address] = bytearray(nbytes)
        return address

    def buffer(self, address: int, nbytes: int) -> bytearray:
        block = self.memory.get(int(address))
        if block is None or len(block) < nbytes:
            raise RuntimeError(f"fake GPU: {nbytes} bytes at {address:#x} are not a live allocation "
                               "(illegal memory access)")
        return block

    def take_fault(self, name: str) -> tuple | None:
        with self.lock:
            return self.faults.pop(name, None)
