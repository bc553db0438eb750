"""The node and the demo as users start them.

`python -m fcn_road_seg.ros.node` (= road_seg_node) in its own process, and the quickstart's `fcn-road-seg demo` job
(real rclpy, headless).
"""
import hashlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (pip install '.[ros]' or source a ROS 2 install)")

from ros_harness import RosHarness, status_values  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _start(*ros_args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fcn_road_seg.ros.node", "--ros-args", *ros_args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


def test_missing_model_fails_at_start_naming_the_fix(tmp_path):
    missing = tmp_path / "nope.onnx"
    proc = _start("-p", f"model:={missing}", "-r", "image:=/fcn_test/missing_model")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert f"model file not found: {missing}" in out and "Fix: set the 'model' parameter" in out


def test_without_rosbags_image_a_raw_camera_node_stops_at_start_naming_the_install(tiny_onnx, tmp_path):
    """rosdep has no key for rosbags-image: a rosdep-only install must fail at start, not on every frame."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['rosbags.image'] = None  # -> ImportError\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "fcn_road_seg.ros.node", "--ros-args", "-p", f"model:={tiny_onnx}",
                           "-r", "image:=/fcn_test/no_converter"], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "converted with rosbags-image, which is not installed" in out and "pip install rosbags-image" in out
    assert "Traceback" not in out


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
    harness = RosHarness()  # hears the node's /diagnostics
    proc = _start("-p", f"model:={tiny_onnx}", "-r", "image:=/fcn_test/sigint")
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "segmenting /fcn_test/sigint" in line or not line:
                break
        assert any("segmenting /fcn_test/sigint" in line for line in lines), "".join(lines)
        # Its /diagnostics timer fires only inside rclpy.spin: Ctrl-C then comes where a user's would.
        harness.probe.latest_status("road_segmentation", lambda s: status_values(s)["model"] == str(tiny_onnx), 30)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        harness.close()
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
    """Make a venv folder that scripts/setup_env.sh takes as set up, whose fcn-road-seg runs this checkout's CLI.

    Its stamp: the hash of setup.py, package.xml and the script. The scripts run for real, without pip.
    """
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    cli = venv / "bin" / "fcn-road-seg"
    cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fcn_road_seg.cli "$@"\n')
    cli.chmod(0o755)
    files = ("setup.py", "package.xml", "scripts/setup_env.sh")
    digest = hashlib.sha256(b"".join((ROOT / p).read_bytes() for p in files)).hexdigest()
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


def _offline_setup(venv: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    """Run a script of scripts/ for real (shell trace on) with pip offline: no index, no pip config.

    It creates ``venv`` and gets as far as the editable install of this checkout, which then cannot fetch its build
    dependencies; TORCH_SPEC names a requirement the fresh venv already satisfies.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", FCN_ROAD_SEG_VENV=str(venv), PYTHON=sys.executable,
               TORCH_SPEC="pip>=1")
    return subprocess.run(["bash", "-x", str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _pip_installs(trace: str) -> list[list[str]]:
    """Return what each `pip install` the trace shows was asked to install (the arguments after its options)."""
    commands = [shlex.split(line[2:]) for line in trace.splitlines() if line.startswith("+ ")]
    runs = [argv for argv in commands if argv[0].startswith("/") and argv[1:4] == ["-m", "pip", "install"]]
    return [[a for a in argv[argv.index("install") + 1:] if not a.startswith("-") or a == "-e"] for argv in runs]


def test_the_demo_s_setup_installs_no_pytorch_and_the_tests_setup_adds_it(tmp_path):
    venv = tmp_path / "venv"
    run = _offline_setup(venv, "setup_env.sh")
    assert run.returncode != 0 and f"setting up {venv} for the node, CLI and demo" in run.stdout, run.stderr
    assert _pip_installs(run.stderr) == [["pip"], ["-e", f"{ROOT}[ros]"]]
    full = _offline_setup(venv, "setup_env.sh", "--test")
    assert full.returncode != 0 and f"setting up {venv} for the tests (PyTorch included)" in full.stdout
    assert _pip_installs(full.stderr) == [["pip"], ["pip>=1"], ["-e", f"{ROOT}[ros,train,dev]"]]
    assert not list(venv.glob(".fcn_road_seg_setup*"))  # a failed setup leaves no stamp: the next run retries
    # test.sh sets up for the tests, demo.sh for the demo; each stops there, as a venv cannot be made under a file
    (tmp_path / "a_file").write_text("")
    nowhere = tmp_path / "a_file" / "venv"
    tests = _offline_setup(nowhere, "test.sh")
    assert tests.returncode != 0 and f"setting up {nowhere} for the tests (PyTorch included)" in tests.stdout
    demo = _offline_setup(nowhere, "demo.sh", "--frames", "1")
    assert demo.returncode != 0 and f"setting up {nowhere} for the node, CLI and demo" in demo.stdout
    assert "frames segmented" not in demo.stdout
