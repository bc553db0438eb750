"""The node and the demo as users start them: `python -m fcn_road_seg.ros.node` (= road_seg_node) in its own
process, and the quickstart's `fcn-road-seg demo` job (real rclpy, headless)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (pip install '.[ros]' or source a ROS 2 install)")

ROOT = Path(__file__).resolve().parent.parent


def _start(*ros_args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fcn_road_seg.ros.node", "--ros-args", *ros_args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


def test_missing_model_fails_at_start_naming_the_fix(tmp_path):
    missing = tmp_path / "nope.onnx"
    proc = _start("-p", f"model:={missing}", "-p", "image_topic:=/fcn_test/missing_model")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert f"model file not found: {missing}" in out and "Fix: set the 'model' parameter" in out


@pytest.mark.parametrize("setting,message", [
    ("input_transport:=theora", "input_transport must be one of raw, compressed, got 'theora'"),
    ("threshold:=1.5", "threshold"),
])
def test_bad_parameter_fails_at_start_with_the_reason(tiny_onnx, setting, message):
    proc = _start("-p", f"model:={tiny_onnx}", "-p", setting)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert message in out and "Traceback" not in out


def test_sigint_shuts_down_cleanly(tiny_onnx):
    proc = _start("-p", f"model:={tiny_onnx}", "-p", "image_topic:=/fcn_test/sigint")
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "segmenting /fcn_test/sigint" in line or not line:
            break
    assert any("segmenting /fcn_test/sigint" in line for line in lines), "".join(lines)
    time.sleep(0.5)  # let it reach rclpy.spin, as a user's Ctrl-C would
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, "".join(lines) + out
    assert "Traceback" not in out


def test_demo_plays_the_samples_through_the_node(tiny_onnx, tmp_path):
    from fcn_road_seg.ros.demo import DemoConfig, run_demo

    samples = sorted((ROOT / "samples").glob("*.jpg"))
    report = run_demo(DemoConfig(out=tmp_path, model=tiny_onnx, rate_hz=10.0, frames=len(samples) + 1,
                                 seconds=60.0))
    assert report.segmented >= len(samples) + 1 and report.published >= report.segmented
    assert report.rate_hz > 0 and report.latency_ms["p95"] >= report.latency_ms["p50"] > 0
    assert report.end_to_end_ms["p50"] > 0 and report.backend == "onnxruntime (cpu)"
    assert {p.name for p in report.saved} == {f"{s.stem}_overlay.png" for s in samples}
    for sample in samples:
        overlay = cv2.imread(str(tmp_path / f"{sample.stem}_overlay.png"))
        assert overlay.shape == cv2.imread(str(sample)).shape
    assert "frames segmented" in report.summary() and "p95" in report.summary()


def test_demo_cli_with_a_wrong_model_says_what_to_do(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("not a model")
    proc = subprocess.run([sys.executable, "-m", "fcn_road_seg.cli", "demo", "--model", str(bad), "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "error: cannot open the road model" in proc.stderr and "Fix: pass --model" in proc.stderr
    assert "parameter" not in proc.stderr  # the demo's user gave a flag, not a ROS parameter
