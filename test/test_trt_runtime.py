"""The TensorRT backend at run time against the strict fakes of 8.6, 10.3, 10.16 and 11.1.

Masks through RoadSegmenter equal ONNX Runtime's, two threads share one backend, CUDA errors become TensorRTError naming
the stage, ``auto`` falls back to a CPU backend when the build fails, and the ROS node runs on it (real rclpy).
"""
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fcn_road_seg.backends import open_backend
from fcn_road_seg.errors import TensorRTError
from fcn_road_seg.images import list_images, read_bgr
from fcn_road_seg.pipeline import RoadSegmenter
from fcn_road_seg.resources import samples_dir


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def frames():
    return [read_bgr(p) for p in list_images([samples_dir()])[:3]]


@pytest.fixture(scope="module")
def reference(tiny_onnx, frames):
    with RoadSegmenter(tiny_onnx, backend="onnxruntime") as seg:
        return [seg.segment(f) for f in frames]


def test_roadsegmenter_on_tensorrt_matches_onnxruntime(fakes, tiny_onnx, frames, reference):
    with RoadSegmenter(tiny_onnx, backend="tensorrt") as seg:
        assert seg.backend.name == "tensorrt" and f"TensorRT {fakes.trt.__version__}" in seg.backend.device
        results = [seg.segment(f) for f in frames]
        assert set(seg.backend.last_timings_ms) == {"h2d", "execute", "d2h"}
    for got, want in zip(results, reference):
        if fakes.major < 11:  # FP16 flag on an FP32 ONNX: the fake runs the ONNX as is
            np.testing.assert_array_equal(got.mask, want.mask)
        else:  # the FP16 copy of the model
            assert (got.mask == want.mask).mean() >= 0.995
            assert np.abs(got.probability - want.probability).max() < 0.02


def test_two_threads_share_one_backend(fakes, tiny_onnx, frames):
    """The backend serialises calls (the node's worker and a diagnostics caller may both infer).

    RoadSegmenter itself reuses one input buffer, so each thread here preprocesses into its own batch.
    """
    from fcn_road_seg.preprocess import preprocess

    backend = open_backend(tiny_onnx, "tensorrt")
    try:
        batches = [preprocess(f, backend.contract, color_order="bgr") for f in frames]
        single = [backend.infer(b) for b in batches]
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda i: backend.infer(batches[i % len(batches)]), range(8)))
    finally:
        backend.close()
    for i, probability in enumerate(both):
        np.testing.assert_array_equal(probability, single[i % len(batches)])


def test_cuda_errors_during_inference_name_the_stage(fakes, tiny_onnx, frames):
    backend = open_backend(tiny_onnx, "tensorrt")
    batch = np.zeros(backend.contract.input_shape, np.uint8)
    try:
        cases = {"memcpy_htod_async": ("MemoryError", "cuMemcpyHtoDAsync failed: out of memory", "copy in"),
                 "memcpy_dtoh_async": ("LaunchError", "cuMemcpyDtoHAsync failed: unspecified launch failure",
                                       "copy out"),
                 "Stream.synchronize": ("LaunchError", "cuStreamSynchronize failed: an illegal memory access was "
                                        "encountered", "stream synchronize")}
        for call, (kind, message, stage) in cases.items():
            fakes.gpu.faults[call] = (kind, message)
            with pytest.raises(TensorRTError, match=f"CUDA failed during {stage}.*{kind}: {message}"):
                backend.infer(batch)
            assert backend.infer(batch).shape == (1, 96, 320)  # the next frame runs
    finally:
        backend.close()


def test_auto_falls_back_to_a_cpu_backend_when_the_build_fails(fakes, tiny_onnx, caplog):
    fakes.gpu.build_error = "2: [virtualMemoryBuffer.cpp::resizePhysical::140] Error Code 2: OutOfMemory"
    with caplog.at_level(logging.WARNING, logger="fcn_road_seg"):
        backend = open_backend(tiny_onnx, "auto")
    backend.close()
    assert backend.name != "tensorrt" and backend.device.startswith("cpu")
    assert "could not build an engine" in backend.selection
    # The library logs no WARN of its own (the CLI says the reason at INFO, the node once as a WARN: issue 22)
    assert not [r for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("fcn_road_seg.backends")]
    assert "could not build an engine" in backend.fallback
    assert "OutOfMemory" in caplog.text  # TensorRT's own error reached the log through the logger bridge


def test_node_runs_on_tensorrt_and_counts_a_cuda_failure(fakes, tiny_onnx, harness, frames, reference):
    from rclpy.parameter import Parameter
    from ros_frames import image_msg
    from ros_harness import remap_image, status_values, wait_until

    from fcn_road_seg.ros.node import NODE_NAME, RoadSegmentationNode

    mask_topic = f"/{NODE_NAME}/mask"
    node = harness.add(RoadSegmentationNode(context=harness.context, cli_args=remap_image(), parameter_overrides=[
        Parameter("model", value=str(tiny_onnx)),
        Parameter("backend", value="tensorrt")]))
    probe = harness.probe
    probe.listen(mask_topic)
    try:  # the node subscribes to the camera once its mask has a listener (lazy subscription)
        wait_until(lambda: probe.raw_pub.get_subscription_count() >= 1 and node.mask_pub.get_subscription_count() >= 1,
                   what="discovery")

        def roundtrip():
            msg = image_msg(frames[0], "bgr8", probe.header())
            probe.raw_pub.publish(msg)
            return probe.wait_for(mask_topic, msg.header)

        mask = np.frombuffer(roundtrip().data, np.uint8).reshape(frames[0].shape[:2])
        agree = ((mask == 255) == reference[0].mask.astype(bool)).mean()
        assert agree == 1.0 if fakes.major < 11 else agree >= 0.995
        fakes.gpu.faults["memcpy_dtoh_async"] = ("LaunchError", "cuMemcpyDtoHAsync failed: unspecified launch failure")
        probe.raw_pub.publish(image_msg(frames[0], "bgr8", probe.header()))
        wait_until(lambda: node.stats()["errors"] == 1, what="the failed frame to be counted")
        roundtrip()  # and the node keeps answering
        values = status_values(probe.latest_status(NODE_NAME, lambda s: int(status_values(s)["errors"]) >= 1))
        assert values["backend"] == "tensorrt"
    finally:
        probe.unlisten(mask_topic)
        harness.remove(node)
