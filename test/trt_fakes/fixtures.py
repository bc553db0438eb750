"""pytest fixtures over the fakes; test modules import them (``from trt_fakes.fixtures import fakes``)."""
from __future__ import annotations

import pytest

from . import RELEASES, install
from .strict import SHARED_API


@pytest.fixture(params=RELEASES, ids=[f"trt{r}" for r in RELEASES])
def fakes(request, monkeypatch):
    """Yield the fakes of one TensorRT release on a fake Orin-class GPU; the test fails on a broken lifetime rule."""
    if not (SHARED_API / f"tensorrt-{request.param}.json").is_file():
        pytest.skip(f"TensorRT API surfaces not found at {SHARED_API} (CI has them as ../shared/trt-api; "
                    "FCN_ROAD_SEG_TRT_API moves them)")
    installed = install(monkeypatch, request.param)
    yield installed
    assert not installed.gpu.violations, installed.gpu.violations
