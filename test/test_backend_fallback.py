"""backend 'auto' where TensorRT cannot run (this machine has no TensorRT).

The tests check the CPU runtime it picks (OpenVINO where it is installed, else ONNX Runtime; test_cpu_paths.py runs
both), the reason in one short line (INFO in the CLI, one WARN at the node's start) naming the caller's real option, and
the choice reported by RoadSegmenter, the CLI, report.json and the node's /diagnostics; backend 'tensorrt' still fails
hard.
"""
import importlib.util
import json
import logging
import subprocess
import sys

import pytest

from fcn_road_seg.errors import BackendUnavailableError
from fcn_road_seg.pipeline import RoadSegmenter

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None
pytestmark = pytest.mark.skipif(HAVE_TRT, reason="TensorRT and pycuda are installed here: auto may really use them")
CPU, CPU_LABEL = ("openvino", "OpenVINO") if importlib.util.find_spec("openvino") else ("onnxruntime", "ONNX Runtime")
FALLBACK = f"backend 'auto' fell back to {CPU_LABEL}: TensorRT cannot run"


def test_auto_uses_the_cpu_runtime_and_gives_a_short_reason_without_warning(tiny_onnx, caplog):
    with caplog.at_level(logging.DEBUG):
        with RoadSegmenter(tiny_onnx, precision="fp32") as seg:
            assert seg.backend.name == CPU
            assert seg.backend.selection.startswith(FALLBACK)
            assert "is not installed" in seg.backend.selection and "pip install" in seg.backend.selection
            reason = seg.backend.fallback
    # the library itself does not warn: the CLI and the node say it once, each with its own option's name
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and r.name == "fcn_road_seg.backends"]
    assert reason == (f"TensorRT cannot run {tiny_onnx.name} here: "
                      "TensorRT is not installed (No module named 'tensorrt')")
    with RoadSegmenter(tiny_onnx, backend="onnxruntime") as seg:
        assert seg.backend.fallback is None


def test_requested_backends_say_so_and_tensorrt_still_fails_hard(tiny_onnx):
    with RoadSegmenter(tiny_onnx, backend="onnxruntime", precision="fp16") as seg:
        assert seg.backend.selection == "backend 'onnxruntime' requested (fp32 model tiny.onnx)"
    with pytest.raises(BackendUnavailableError, match="is not installed"):
        RoadSegmenter(tiny_onnx, backend="tensorrt")
    with pytest.raises(TypeError, match="unknown backend option"):
        RoadSegmenter(tiny_onnx, backend="onnxruntime", precison="fp16")


def test_cli_infer_falls_back_and_evaluate_reports_why(tmp_path, tiny_onnx, shared_data):
    kitti = shared_data / "kitti_road"
    image = sorted((kitti / "training" / "image_2").glob("*.png"))[0]
    cli = [sys.executable, "-m", "fcn_road_seg.cli"]
    done = subprocess.run([*cli, "infer", str(image), "--model", str(tiny_onnx), "--out", str(tmp_path / "infer")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith("WARNING")], done.stderr
    said = [line for line in done.stderr.splitlines() if "TensorRT" in line]
    assert len(said) == 1 and said[0].startswith("INFO fcn_road_seg: TensorRT cannot run"), done.stderr
    assert "is not installed" in said[0] and f"using {CPU_LABEL}" in said[0], done.stderr
    assert f"--backend {CPU}" in said[0] and len(said[0]) < 200, done.stderr
    assert "Traceback" not in done.stderr
    done = subprocess.run([*cli, "evaluate", str(kitti), "--model", str(tiny_onnx), "--out", str(tmp_path / "eval")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    backend = json.loads((tmp_path / "eval" / "report.json").read_text())["backend"]
    assert backend["name"] == CPU and backend["selection"].startswith(FALLBACK)
    assert FALLBACK in (tmp_path / "eval" / "report.md").read_text()
    done = subprocess.run([*cli, "infer", str(image), "--model", str(tiny_onnx), "--backend", "tensorrt",
                           "--out", str(tmp_path / "hard")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "error: TensorRT is not installed" in done.stderr and "Traceback" not in done.stderr


def test_node_reports_the_fallback_on_diagnostics(tiny_onnx):
    pytest.importorskip("rclpy", reason="rclpy is not installed (pip install '.[ros]' or source a ROS 2 install)")
    from rcl_interfaces.msg import Log
    from rclpy.parameter import Parameter

    from fcn_road_seg.ros.node import NODE_NAME, RoadSegmentationNode
    from ros_harness import RosHarness, RosoutRecorder, remap_image, status_values, wait_until

    harness = RosHarness()
    logs = RosoutRecorder(harness.probe)
    try:
        node = harness.add(RoadSegmentationNode(context=harness.context, cli_args=remap_image(), parameter_overrides=[
            Parameter("model", value=str(tiny_onnx)), Parameter("precision", value="fp32")]))
        assert node.get_parameter("precision").value == "fp32" and node.get_parameter("backend").value == "auto"
        values = status_values(harness.probe.latest_status(NODE_NAME, timeout=10.0))
        assert values["backend"] == CPU
        assert values["backend_selection"].startswith(FALLBACK) and "is not installed" in values["backend_selection"]
        wait_until(lambda: logs.lines(NODE_NAME, containing="segmenting"), timeout=30,
                   what="the node's start-up log")
        warns = logs.lines(NODE_NAME, Log.WARN)
        assert len(warns) == 1 and "TensorRT is not installed" in warns[0] and f"backend:={CPU}" in warns[0]
        harness.remove(node)
    finally:
        harness.close()
