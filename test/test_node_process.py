"""The node and the demo as users start them: `python -m fcn_road_seg.ros.node` (= road_seg_node) in its own
process, and the quickstart's `fcn-road-seg demo` job (real rclpy, headless)."""
import hashlib
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
    assert report.end_to_end_ms["p50"] > 0 and report.backend in ("openvino (cpu)", "onnxruntime (cpu)")  # auto
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


def _prepared_venv(tmp_path: Path, test_stamp: bool = False) -> Path:
    """A venv folder that scripts/setup_env.sh takes as set up (its stamp: the hash of setup.py, package.xml and
    the script), whose fcn-road-seg runs this checkout's CLI: the scripts run for real, without pip."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    cli = venv / "bin" / "fcn-road-seg"
    cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fcn_road_seg.cli "$@"\n')
    cli.chmod(0o755)
    digest = hashlib.sha256(b"".join((ROOT / p).read_bytes() for p in ("setup.py", "package.xml",
                                                                        "scripts/setup_env.sh"))).hexdigest()
    if test_stamp:
        (venv / ".fcn_road_seg_setup_test").write_text(f"{digest} torch==2.13.0\n")
    else:
        (venv / ".fcn_road_seg_setup").write_text(digest + "\n")
    return venv


def test_demo_sh_passes_every_argument_to_the_demo(tiny_onnx, tmp_path):
    env = {**os.environ, "FCN_ROAD_SEG_VENV": str(_prepared_venv(tmp_path)), "PYTHONPATH": str(ROOT)}
    res = subprocess.run([str(ROOT / "scripts" / "demo.sh"), "--frames", "2", "--rate", "10", "--model", str(tiny_onnx),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "frames segmented" in res.stdout and "setting up" not in res.stdout  # the stamp said: nothing to do
    assert len(list((tmp_path / "out").glob("*_overlay.png"))) >= 2


def test_setup_stamps_a_test_setup_covers_the_demo_s(tmp_path):
    script = str(ROOT / "scripts" / "setup_env.sh")
    env = {**os.environ, "FCN_ROAD_SEG_VENV": str(_prepared_venv(tmp_path, test_stamp=True))}
    for args in ([], ["--test"]):
        res = subprocess.run([script, *args], capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 0 and res.stdout == "", res.stdout + res.stderr
    res = subprocess.run([script, "--all"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2 and "usage: scripts/setup_env.sh [--test]" in res.stderr
    # the demo's setup installs the package with the 'ros' extra only: no PyTorch; the tests' adds it
    text = (ROOT / "scripts" / "setup_env.sh").read_text()
    run_branch = text.split("else\n", 1)[1].split("fi\n", 1)[0]
    assert '"${pip[@]}" -e "$root[ros]"' in run_branch and "torch" not in run_branch
    assert 'setup_env.sh" --test' in (ROOT / "scripts" / "test.sh").read_text()
    assert 'setup_env.sh"\n' in (ROOT / "scripts" / "demo.sh").read_text()
