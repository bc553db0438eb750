"""The fakes are as strict as the bindings they stand for.

Per TensorRT release, names the release lacks, wrong keywords, missing positionals and read-only properties fail as
pybind11 fails; pycuda's Boost.Python functions and CUDA's context rules likewise. (If these pass, a code path that
misuses an API fails too.)
"""
import numpy as np
import pytest

from trt_fakes.strict import load_surface


def test_tensorrt_surface_is_the_release_and_nothing_more(fakes):
    trt, major = fakes.trt, fakes.major
    assert trt.__version__.startswith(fakes.release + ".")
    surface = load_surface(fakes.release)
    assert set(trt.BuilderFlag.__members__) == set(surface["enums"]["BuilderFlag"])
    # names that exist in some releases only
    assert hasattr(trt.Builder, "build_engine") == (fakes.release == "8.6")  # removed in 10.0
    assert hasattr(trt.IExecutionContext, "execute_async_v2") == (fakes.release == "8.6")
    assert hasattr(trt, "IProgressMonitor") == (major >= 10)
    assert hasattr(trt, "IInt8EntropyCalibrator2") == (major < 11)
    assert hasattr(trt.BuilderFlag, "FP16") == (major < 11)
    assert hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") == (major < 11)
    assert hasattr(trt.Builder, "platform_has_fast_fp16") == (major < 11)
    with pytest.raises(AttributeError):
        trt.BuilderFlag.FP17
    with pytest.raises(AttributeError):
        trt.Runtime.deserialize_engine


def test_tensorrt_calls_fail_as_pybind11_does(fakes):
    trt = fakes.trt

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            pass

    builder = trt.Builder(Logger())
    with pytest.raises(TypeError, match="incompatible constructor arguments"):
        trt.Builder(log=Logger())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    with pytest.raises(TypeError, match="incompatible function arguments"):
        profile.set_shape("image", (1, 2), (1, 2))  # a positional missing
    cache = config.create_timing_cache(b"")
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_timing_cache(cache, ignore_missmatch=False)  # a keyword spelled differently
    assert config.set_timing_cache(cache=cache, ignore_mismatch=False) is True
    with pytest.raises(AttributeError):
        builder.num_DLA_cores = 2  # read-only property
    with pytest.raises(AttributeError):
        config.dla_core = 0  # no such property (it is DLA_core)
    with pytest.raises(TypeError, match="No constructor defined"):
        trt.IBuilderConfig()

    class Careless(trt.ILogger):
        def __init__(self):  # forgets the base __init__, as pybind11 then refuses
            pass

        def log(self, severity, msg):
            pass

    with pytest.raises(TypeError, match="must be called when overriding __init__"):
        trt.Builder(Careless())


def test_pycuda_is_strict_and_keeps_cuda_context_rules(fakes):
    cuda = fakes.cuda
    with pytest.raises(cuda.LogicError, match="initialization error"):
        cuda.Device.count()
    cuda.init()
    device = cuda.Device(0)
    assert device.name() == fakes.gpu.name and device.compute_capability() == fakes.gpu.compute_capability
    with pytest.raises(cuda.LogicError, match="invalid device context"):
        cuda.mem_alloc(16)  # no current context on this thread
    with pytest.raises(cuda.LogicError, match="cannot pop"):
        cuda.Context.pop()
    context = device.retain_primary_context()
    context.push()
    try:
        with pytest.raises(TypeError, match=r"did not match C\+\+ signature"):
            cuda.mem_alloc(bytes=16)  # mem_alloc declares no argument names
        alloc = cuda.mem_alloc(16)
        host = cuda.pagelocked_empty((4,), np.float32)
        host[:] = [1, 2, 3, 4]
        with pytest.raises(TypeError, match=r"did not match C\+\+ signature"):
            cuda.memcpy_htod(dest=alloc, source=host)
        cuda.memcpy_htod(alloc, host)
        back = np.zeros(4, np.float32)
        cuda.memcpy_dtoh(back, alloc)
        np.testing.assert_array_equal(back, host)
        assert not hasattr(cuda, "memcpy_htod_async_v2") and not hasattr(cuda, "memalloc")
        assert issubclass(cuda.LaunchError, cuda.Error) and issubclass(cuda.MemoryError, cuda.Error)
        alloc.free()
    finally:
        cuda.Context.pop()
