"""TensorRT plan handling: sidecar, compatibility, cache, calibration input, missing-runtime errors (run everywhere).

Also real TensorRT / pycuda tests that run where a GPU and the libraries are present.
"""
import importlib.util
import json
import logging
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from fcn_road_seg.contract import ModelContract, file_sha256
from fcn_road_seg.preprocess import preprocess_files
from fcn_road_seg.trt.calibration import calibration_images
from fcn_road_seg.trt.engine import BuildOptions
from fcn_road_seg.errors import BackendUnavailableError, DatasetError, EngineMismatchError, ModelError
from fcn_road_seg.outputs import write_bytes
from fcn_road_seg.trt.plan import (
    EngineSidecar,
    GpuInfo,
    cached_plan_path,
    check_compatible,
    exclusive_lock,
    read_sidecar,
    sidecar_path,
    timing_cache_path,
    write_sidecar,
)

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
HAVE_PYCUDA = importlib.util.find_spec("pycuda") is not None
ORIN = GpuInfo("Orin", (8, 7))


def _gpu_count() -> int:
    if not HAVE_PYCUDA:
        return 0
    try:
        import pycuda.driver as cuda

        cuda.init()
        return cuda.Device.count()
    except Exception:
        return 0


HAVE_GPU = _gpu_count() > 0
needs_trt = pytest.mark.skipif(not (HAVE_TRT and HAVE_GPU), reason="needs tensorrt, pycuda and a CUDA GPU")


def _sidecar(**kw) -> EngineSidecar:
    base = dict(contract=ModelContract(96, 320, training_data="test"), tensorrt_version="10.3.0", gpu=ORIN,
                onnx_sha256="ab" * 32, precision="fp16", build_date="2026-01-01T00:00:00+00:00", workspace_mib=1024)
    base.update(kw)
    return EngineSidecar(**base)


def test_sidecar_round_trip(tmp_path):
    plan = tmp_path / "road.plan"
    sidecar = _sidecar(dla_core=1)
    assert write_sidecar(plan, sidecar) == tmp_path / "road.plan.json"
    assert read_sidecar(plan) == sidecar
    data = json.loads(sidecar_path(plan).read_text())
    assert data["contract"]["input_width"] == 320 and data["gpu"] == {"name": "Orin", "compute_capability": [8, 7]}
    assert {"tensorrt_version", "onnx_sha256", "precision", "build_date"} <= set(data)


def test_missing_or_broken_sidecar_names_the_fix(tmp_path):
    plan = tmp_path / "road.plan"
    with pytest.raises(ModelError, match="build-engine"):
        read_sidecar(plan)
    sidecar_path(plan).write_text('{"precision": "fp16"}')
    with pytest.raises(ModelError, match="not a valid fcn_road_seg engine sidecar.*build-engine"):
        read_sidecar(plan)


def test_version_mismatch_names_both_versions_and_the_fix():
    with pytest.raises(EngineMismatchError) as err:
        check_compatible(_sidecar(), "8.6.2", ORIN, plan="road.plan")
    msg = str(err.value)
    assert "TensorRT 10.3.0" in msg and "TensorRT 8.6.2" in msg and "build-engine" in msg and ".onnx" in msg


def test_gpu_architecture_mismatch_is_an_error_and_same_arch_only_warns(caplog):
    rtx4090, rtx3090, a10 = (GpuInfo("NVIDIA GeForce RTX 4090", (8, 9)), GpuInfo("NVIDIA GeForce RTX 3090", (8, 6)),
                             GpuInfo("NVIDIA A10", (8, 6)))
    expected = r"Orin \(compute capability 8.7\).*RTX 4090 \(compute capability 8.9\)"
    with pytest.raises(EngineMismatchError, match=expected):
        check_compatible(_sidecar(), "10.3.0", rtx4090)
    with caplog.at_level(logging.WARNING, logger="fcn_road_seg.trt.plan"):
        check_compatible(_sidecar(gpu=a10), "10.3.0", rtx3090)
    assert "rebuild here" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        check_compatible(_sidecar(), "10.3.0", ORIN)  # same everything: silent
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_cache_key_separates_model_gpu_version_and_precision(tmp_path):
    base = cached_plan_path("1" * 64, ORIN, "10.3.0", "fp16", tmp_path)
    assert base.parent == tmp_path / "engines" and base.suffix == ".plan"
    variants = [
        cached_plan_path("2" * 64, ORIN, "10.3.0", "fp16", tmp_path),
        cached_plan_path("1" * 64, GpuInfo("NVIDIA GeForce RTX 4090", (8, 9)), "10.3.0", "fp16", tmp_path),
        cached_plan_path("1" * 64, ORIN, "8.6.2", "fp16", tmp_path),
        cached_plan_path("1" * 64, ORIN, "10.3.0", "int8", tmp_path),
    ]
    assert len({base, *variants}) == 5
    assert timing_cache_path(ORIN, "10.3.0", tmp_path) != timing_cache_path(ORIN, "8.6.2", tmp_path)
    with pytest.raises(ValueError, match="precision"):
        cached_plan_path("1" * 64, ORIN, "10.3.0", "bf16", tmp_path)


def test_default_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("FCN_ROAD_SEG_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cached_plan_path("1" * 64, ORIN, "10.3.0", "fp16").parent == tmp_path / "fcn_road_seg" / "engines"


def test_file_sha256_matches_hashlib(tiny_onnx):
    import hashlib

    assert file_sha256(tiny_onnx) == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()


def test_atomic_write_never_exposes_a_partial_file(tmp_path):
    target = tmp_path / "engines" / "x.plan"
    payloads = [bytes([i]) * (4 << 20) for i in range(4)]
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            if target.exists():
                data = target.read_bytes()
                assert data in payloads
                seen.add(data[:1])

    with ThreadPoolExecutor(5) as pool:
        watch = pool.submit(reader)
        list(pool.map(lambda p: [write_bytes(target, p) for _ in range(5)], payloads))
        stop.set()
        watch.result()
    assert target.read_bytes() in payloads and seen
    assert [p.name for p in target.parent.iterdir()] == ["x.plan"]  # no temporary files left behind


def test_exclusive_lock_serialises_concurrent_builders(tmp_path):
    target = tmp_path / "engines" / "x.plan"
    events = []

    def builder(tag):
        with exclusive_lock(target):
            events.append(("enter", tag))
            if not target.exists():  # the first builds; the rest find the plan
                time.sleep(0.2)
                write_bytes(target, tag.encode())
            events.append(("leave", tag))

    threads = [threading.Thread(target=builder, args=(t,)) for t in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e[0] for e in events] == ["enter", "leave"] * 3  # never two inside at once
    assert target.read_bytes().decode() == events[0][1]


def test_calibration_frames_are_preprocessed_as_roadsegmenter_feeds_the_backend(shared_data, tiny_onnx):
    from fcn_road_seg.backends.onnxruntime import OnnxRuntimeBackend
    from fcn_road_seg.images import list_images, read_bgr
    from fcn_road_seg.pipeline import RoadSegmenter

    class Recording(OnnxRuntimeBackend):
        def infer(self, batch):
            self.seen.append(batch.copy())
            return super().infer(batch)

    folder = shared_data / "kitti_road" / "training" / "image_2"
    backend = Recording(tiny_onnx)
    backend.seen = []
    seg = RoadSegmenter(backend=backend)
    for path in list_images([folder]):
        seg.segment(read_bgr(path), color_order="bgr")
    batches = list(preprocess_files(calibration_images(folder), backend.contract))  # what the calibrator reads
    assert [path.name for path, _ in batches] == [p.name for p in list_images([folder])]
    for (_, batch), fed in zip(batches, backend.seen):
        assert batch.dtype == np.uint8 and batch.shape == backend.contract.input_shape
        np.testing.assert_array_equal(batch, fed)
    assert len(calibration_images(folder, max_images=1)) == 1


def test_calibration_needs_images(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        calibration_images(tmp_path)
    with pytest.raises(DatasetError, match="--calib"):
        calibration_images(tmp_path / "absent")


def test_build_options_are_validated():
    with pytest.raises(ValueError, match="--calib"):
        BuildOptions(precision="int8")
    with pytest.raises(ValueError, match="DLA has no FP32"):
        BuildOptions(precision="fp32", dla_core=0)
    with pytest.raises(ValueError, match="--workspace"):
        BuildOptions(workspace_mib=16)
    assert BuildOptions().precision == "fp16" and BuildOptions().workspace_mib == 1024


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here; this checks the message where it is absent")
def test_without_tensorrt_every_entry_point_says_what_to_install(tmp_path, tiny_onnx):
    from fcn_road_seg.backends import open_backend
    from fcn_road_seg.backends.tensorrt import TensorRTBackend, open_tensorrt
    from fcn_road_seg.trt.engine import build_engine, cached_engine

    plan = tmp_path / "road.plan"
    plan.write_bytes(b"\x00\x01not really a plan\xff")  # binary: a text file would be refused as one first
    calls = [lambda: open_backend(tiny_onnx, "tensorrt"), lambda: open_backend(plan), lambda: open_tensorrt(plan),
             lambda: TensorRTBackend(plan), lambda: build_engine(tiny_onnx, plan), lambda: cached_engine(tiny_onnx)]
    for call in calls:
        with pytest.raises(BackendUnavailableError, match=r"JetPack.*pip install tensorrt pycuda"):
            call()
    done = subprocess.run([sys.executable, "-m", "fcn_road_seg.cli", "build-engine", str(tiny_onnx), "-o", str(plan)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "error: TensorRT is not installed" in done.stderr and "pycuda" in done.stderr


@pytest.mark.skipif(HAVE_PYCUDA, reason="pycuda is installed here; this checks the message where it is absent")
def test_without_pycuda_the_cuda_layer_says_what_to_install():
    from fcn_road_seg.trt.cuda_io import CudaDevice

    with pytest.raises(BackendUnavailableError, match=r"pycuda is not installed.*pip install 'pycuda>=2024.1.1'"):
        CudaDevice(0)


# ---- real GPU tests -------------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAVE_GPU, reason="needs pycuda and a CUDA GPU")
def test_pycuda_stream_path_in_a_worker_thread():
    """Pinned buffers, one stream, async copies and event timing, used from a thread other than the creator."""
    import pycuda.driver as cuda

    from fcn_road_seg.trt.cuda_io import CudaDevice, StreamIO, TensorSpec

    device = CudaDevice(0)
    shape = (1, 96, 320, 3)
    with device.active():
        u8 = np.dtype(np.uint8)
        io = StreamIO([TensorSpec("in", shape, u8, True), TensorSpec("out", shape, u8, False)])

    def gpu_copy(stream_handle):  # stands in for execute_async_v3: device-to-device on the same stream
        cuda.memcpy_dtod_async(io.device["out"], io.device["in"], io.host["in"].nbytes, io.stream)
        return True

    def work(seed):
        frame = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
        with device.active():
            out, timings = io.run({"in": frame}, gpu_copy)
        return frame, out["out"], timings

    with ThreadPoolExecutor(1) as worker:
        for frame, out, timings in worker.map(work, range(3)):
            np.testing.assert_array_equal(out, frame)
            assert set(timings) == {"h2d", "execute", "d2h"} and all(v >= 0 for v in timings.values())
    with device.active():
        io.free()


@pytest.fixture(scope="module")
def trt_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("trt_cache")


@needs_trt
def test_fp16_engine_agrees_with_onnxruntime_and_is_cached(trt_cache, tiny_onnx, kitti_images, camvid_images, caplog):
    from fcn_road_seg.images import read_bgr
    from fcn_road_seg.pipeline import RoadSegmenter

    with caplog.at_level(logging.INFO, logger="fcn_road_seg.trt.engine"):
        trt_seg = RoadSegmenter(tiny_onnx, backend="tensorrt", cache_root=trt_cache)
    assert "engine cache miss" in caplog.text and trt_seg.backend.name == "tensorrt"
    plan = trt_seg.backend.path
    assert plan.parent == trt_cache / "engines" and read_sidecar(plan).precision == "fp16"
    ort_seg = RoadSegmenter(tiny_onnx, backend="onnxruntime")
    same = total = 0
    for path in kitti_images + camvid_images:
        frame = read_bgr(path)
        a, b = trt_seg.segment(frame), ort_seg.segment(frame)
        same += int(np.count_nonzero(a.mask == b.mask))
        total += a.mask.size
    assert same / total >= 0.995
    assert set(trt_seg.backend.last_timings_ms) == {"h2d", "execute", "d2h"}
    trt_seg.close()
    mtime = plan.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fcn_road_seg.trt.engine"):
        again = RoadSegmenter(tiny_onnx, backend="tensorrt", cache_root=trt_cache)
    assert "engine cache hit" in caplog.text and again.backend.path == plan and plan.stat().st_mtime_ns == mtime
    again.close()


@needs_trt
def test_plan_from_another_tensorrt_version_is_refused(trt_cache, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(trt_cache))  # the timing cache goes there, not to ~/.cache
    from fcn_road_seg.backends.tensorrt import TensorRTBackend
    from fcn_road_seg.trt.engine import build_engine

    plan = build_engine(tiny_onnx, tmp_path / "road.plan")
    backend = TensorRTBackend(plan)
    out = backend.infer(np.zeros(backend.contract.input_shape, np.uint8))
    assert out.shape == (1, 96, 320) and out.dtype == np.float32
    backend.close()
    sidecar = read_sidecar(plan)
    write_sidecar(plan, replace(sidecar, tensorrt_version="7.0.0"))
    with pytest.raises(EngineMismatchError, match="TensorRT 7.0.0.*build-engine"):
        TensorRTBackend(plan)


@needs_trt
def test_shipped_model_builds_and_matches_onnxruntime(trt_cache, kitti_images, camvid_images, shipped_model):
    """The model that no TensorRT could parse before (Transpose on uint8) builds as FP16 on this version."""
    from fcn_road_seg.images import read_bgr
    from fcn_road_seg.pipeline import RoadSegmenter
    model = shipped_model
    trt_seg = RoadSegmenter(model, backend="auto", cache_root=trt_cache)
    ort_seg = RoadSegmenter(model, backend="onnxruntime")
    try:
        assert trt_seg.backend.name == "tensorrt" and trt_seg.backend.selection == "backend 'auto': TensorRT opened"
        same = total = 0
        for path in kitti_images + camvid_images:
            a, b = trt_seg.segment(read_bgr(path)), ort_seg.segment(read_bgr(path))
            same += int(np.count_nonzero(a.mask == b.mask))
            total += a.mask.size
        assert same / total >= 0.995
    finally:
        trt_seg.close()  # the TensorRT objects go before the process's primary context (released at exit)
        ort_seg.close()


@needs_trt
def test_fp32_precision_and_a_corrupt_timing_cache(trt_cache, tiny_onnx, tmp_path, caplog):
    import tensorrt as trt

    from fcn_road_seg.backends.tensorrt import TensorRTBackend
    from fcn_road_seg.trt.engine import build_engine

    timing = tmp_path / "timing.cache"
    timing.write_bytes(b"not a timing cache")
    with caplog.at_level(logging.WARNING, logger="fcn_road_seg.trt.engine"):
        plan = build_engine(tiny_onnx, tmp_path / "fp32.plan", BuildOptions(precision="fp32", timing_cache=timing))
    assert read_sidecar(plan).precision == "fp32" and timing.read_bytes() != b"not a timing cache"
    backend = TensorRTBackend(plan)
    try:
        out = backend.infer(np.zeros(backend.contract.input_shape, np.uint8))
        assert out.dtype == np.float32 and backend.sidecar.tensorrt_version == trt.__version__
    finally:
        backend.close()


@needs_trt
def test_int8_on_tensorrt_11_is_refused_and_a_bad_calib_folder_is_caught_first(tiny_onnx, tmp_path):
    import tensorrt as trt

    from fcn_road_seg.errors import TensorRTError
    from fcn_road_seg.trt.engine import build_engine, trt_major

    options = BuildOptions(precision="int8", calib_dir=tmp_path / "absent")
    if trt_major(trt) >= 11:
        with pytest.raises(TensorRTError, match="ModelOpt"):
            build_engine(tiny_onnx, tmp_path / "int8.plan", options)
    else:
        with pytest.raises(DatasetError, match="calibration folder not found"):
            build_engine(tiny_onnx, tmp_path / "int8.plan", options)
    assert not (tmp_path / "int8.plan").exists()


def test_build_engine_cli_refuses_calibration_without_int8(tmp_path, tiny_onnx, capsys):
    from fcn_road_seg.cli import main

    rc = main(["build-engine", str(tiny_onnx), "-o", str(tmp_path / "x.plan"), "--calib", str(tmp_path)])
    assert rc == 2 and "only apply to --int8" in capsys.readouterr().err
    assert not (tmp_path / "x.plan").exists()
