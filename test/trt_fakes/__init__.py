"""Strict, version-faithful fakes of ``tensorrt`` (8.6, 10.3, 10.16, 11.1) and ``pycuda`` for CI without a GPU.

``install(monkeypatch, release)`` puts both into ``sys.modules`` for one test (monkeypatch undoes it) and
returns the ``Fakes`` handle; ``fakes`` in ``fixtures.py`` is the fixture parametrised over ``RELEASES``.
Where every name comes from: SOURCES.md.
"""
from __future__ import annotations

import importlib.machinery
import sys
from dataclasses import dataclass
from types import ModuleType

from . import pycuda_fake, tensorrt_fake
from .device import FakeGpu

RELEASES = ("8.6", "10.3", "10.16", "11.1")


@dataclass
class Fakes:
    release: str
    gpu: FakeGpu
    trt: ModuleType
    cuda: ModuleType  # pycuda.driver

    @property
    def major(self) -> int:
        return int(self.release.split(".")[0])


def _spec(module: ModuleType, package: bool = False) -> ModuleType:
    module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None, is_package=package)
    return module


def install(monkeypatch, release: str, **gpu) -> Fakes:
    """Fake ``tensorrt`` ``release`` and ``pycuda`` over one FakeGpu(**gpu), for the calling test only."""
    from fcn_road_seg.trt import callbacks, cuda_io

    device = FakeGpu(**gpu)
    trt = _spec(tensorrt_fake.build(release, device))
    package, driver = pycuda_fake.build(device)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", _spec(package, package=True))
    monkeypatch.setitem(sys.modules, "pycuda.driver", _spec(driver))
    monkeypatch.setattr(callbacks, "_LOGGER", None)  # one logger per tensorrt module, as in a real process
    monkeypatch.setattr(cuda_io, "_PRIMARY", {})  # primary contexts belong to this fake GPU
    return Fakes(release, device, trt, driver)
