"""`fcn-road-seg doctor` on this machine (no TensorRT, no GPU), and the mask comparison it uses for TensorRT.

The real command in a subprocess: its JSON, its errors, Ctrl-C. The mask comparison is fed real segmenters on the
bundled samples.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fcn_road_seg.doctor.compare import compare, compare_segmenters, measure
from fcn_road_seg.doctor.environment import install_line, jetson_model
from fcn_road_seg.images import read_bgr
from fcn_road_seg.pipeline import RoadSegmenter
from fcn_road_seg.resources import samples_dir

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = samples_dir()
KITTI = SAMPLES / "kitti_um_000000.jpg"
CAMVID = SAMPLES / "camvid_0001TP_009450.jpg"

needs_no_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                                       reason="tensorrt is installed here: these pin the report without it")


def doctor(*args: str, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, FCN_ROAD_SEG_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "fcn_road_seg.cli", "doctor", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


@needs_no_tensorrt
def test_doctor_without_tensorrt_passes_says_so_and_writes_real_values(tmp_path):
    out = tmp_path / "doctor.json"
    proc = doctor("--json", str(out), "--repeat", "2", cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    line = install_line(jetson_model())
    assert "TensorRT: cannot run here (TensorRT is not installed)" in proc.stdout
    assert line in proc.stdout and "result: all checks passed" in proc.stdout

    report = json.loads(out.read_text())
    import cv2
    import onnx
    import onnxruntime

    assert report["packages"]["numpy"] == np.__version__ and report["packages"]["opencv"] == cv2.__version__
    assert report["packages"]["onnxruntime"] == onnxruntime.__version__
    assert report["packages"]["onnx"] == onnx.__version__
    assert report["packages"]["tensorrt"] is None and report["tensorrt"]["available"] is False
    if importlib.util.find_spec("rclpy") is not None:  # no __version__: its distributions' versions are shown
        for dist in importlib.metadata.packages_distributions()["rclpy"]:
            assert importlib.metadata.version(dist) in report["packages"]["rclpy"]
    assert report["platform"]["python"] == platform.python_version()
    assert report["onnxruntime_providers"] == onnxruntime.get_available_providers()
    assert report["cache"] == {"folder": str(tmp_path / "cache"), "set_by": "FCN_ROAD_SEG_CACHE", "exists": False,
                               "writable": True, "reason": f"does not exist yet; the first engine build creates "
                                                           f"it under {tmp_path}"}
    assert report["tensorrt_run"] == {"skipped": "TensorRT is not installed", "install": line}

    ort = report["onnxruntime"]
    names = sorted(p.name for p in SAMPLES.glob("*.jpg"))
    assert [f["frame"] for f in ort["frames"]] == names
    lat = ort["latency_ms"]
    assert lat["infer"]["n"] == lat["pipeline"]["n"] == 2 * len(names)
    assert 0 < lat["infer"]["p50"] <= lat["infer"]["p95"] and lat["pipeline"]["p50"] >= lat["infer"]["p50"]
    # The per-frame values are the pipeline's: recompute one frame here.
    with RoadSegmenter(backend="onnxruntime") as seg:
        mask = seg.segment(read_bgr(KITTI))
    kitti = next(f for f in ort["frames"] if f["frame"] == KITTI.name)
    assert kitti["road_fraction"] == round(np.count_nonzero(mask.mask) / mask.mask.size, 4) > 0.05
    assert kitti["probability_max"] == round(float(mask.probability.max()), 5)

    proxy = report["fp16_proxy"]["comparison"]  # the agreement, computed on CPU with the FP16 ONNX copy
    agreements = [f["agreement"] for f in proxy["per_frame"]]
    assert [f["frame"] for f in proxy["per_frame"]] == names
    assert proxy["min_agreement"] == min(agreements) and proxy["mean_agreement"] == pytest.approx(np.mean(agreements))
    assert 0.995 <= proxy["min_agreement"] < 1.0 and 0 < proxy["max_prob_diff"] < 0.05 and proxy["ok"]
    assert report["result"] == {"ok": True, "failures": []}


@needs_no_tensorrt
def test_require_tensorrt_makes_its_absence_an_error_naming_why(tmp_path):
    proc = doctor("--require-tensorrt", "--images", str(KITTI), "--repeat", "1", cache=tmp_path / "cache")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert ("  - --require-tensorrt: TensorRT cannot run here (TensorRT is not installed); install: "
            + install_line(jetson_model())) in proc.stdout


def test_a_model_that_does_not_load_fails_the_doctor_and_the_report_still_says_what_was_found(tmp_path):
    out = tmp_path / "doctor.json"
    proc = doctor("--model", str(tmp_path / "missing.onnx"), "--json", str(out), cache=tmp_path / "cache")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    report = json.loads(out.read_text())
    (failure,) = report["result"]["failures"]
    assert failure.startswith(f"model file not found: {tmp_path / 'missing.onnx'}") and f"  - {failure}" in proc.stdout
    assert report["packages"]["numpy"] == np.__version__ and "onnxruntime" not in report  # facts kept, no run


@needs_no_tensorrt
def test_without_onnxconverter_common_the_fp16_check_is_skipped_naming_the_install(tmp_path):
    # None in sys.modules: importing it raises ImportError, as on a machine without the package
    code = ("import sys; sys.modules['onnxconverter_common'] = None; from fcn_road_seg.cli import main; "
            f"sys.exit(main(['doctor', '--images', {str(KITTI)!r}, '--repeat', '1', '--json', "
            f"{str(tmp_path / 'd.json')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, FCN_ROAD_SEG_CACHE=str(tmp_path / "cache")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["packages"]["onnxconverter-common"] is None
    assert "pip install onnxconverter-common" in report["fp16_proxy"]["skipped"]
    assert f"FP16 proxy: skipped ({report['fp16_proxy']['skipped']})" in proc.stdout


def _read_only_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores the mode bits; sysfs refuses new files to everyone
        return Path("/sys")
    return folder


@pytest.mark.parametrize("case", ["missing parent", "parent is a file", "read-only folder"])
def test_json_path_that_cannot_be_written_is_one_clear_line_before_anything_runs(tmp_path, case):
    (tmp_path / "file").write_text("x")
    target = {"missing parent": tmp_path / "no" / "such" / "doctor.json",
              "parent is a file": tmp_path / "file" / "doctor.json",
              "read-only folder": _read_only_folder(tmp_path) / "doctor.json"}[case]
    why = {"missing parent": f"folder {target.parent} does not exist",
           "parent is a file": f"{target.parent} is not a folder",
           "read-only folder": f"cannot create files in {target.parent}"}[case]
    proc = doctor("--json", str(target), cache=tmp_path / "cache", timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: cannot write --json {target}: {why}")
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""  # one line, and nothing ran
    assert not target.exists()


def test_ctrl_c_stops_with_one_line_and_status_130(tmp_path):
    out = tmp_path / "doctor.json"
    env = dict(os.environ, FCN_ROAD_SEG_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "fcn_road_seg.cli", "doctor", "--json", str(out), "--repeat", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # interrupt once the long ONNX Runtime loop has started
        lines.append(proc.stderr.readline())
        if "doctor: ONNX Runtime on" in lines[-1] or not lines[-1]:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, rest = proc.communicate(timeout=60)
    stderr = "".join(lines) + rest
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr.rstrip("\n").splitlines()[-1] == "doctor: interrupted (Ctrl-C); no report written"
    assert not out.exists() and not list(tmp_path.glob(".doctor.json.*"))


def load(*paths: Path):
    return [(p.name, read_bgr(p)) for p in paths]


@pytest.fixture(scope="module")
def ort():
    with RoadSegmenter(backend="onnxruntime") as seg:
        yield seg


def test_onnxruntime_against_itself_agrees_everywhere(ort):
    with RoadSegmenter(backend="onnxruntime") as other:
        comparison, _, cand = compare_segmenters(ort, other, load(CAMVID, KITTI), repeat=2)
    assert comparison.ok and comparison.failure() is None
    assert comparison.min_agreement == comparison.mean_agreement == 1.0 and comparison.max_prob_diff == 0.0
    assert [f["frame"] for f in comparison.per_frame] == [CAMVID.name, KITTI.name]
    assert len(cand.infer_ms) == len(cand.pipeline_ms) == 4 and min(cand.infer_ms) > 0


@pytest.mark.parametrize("threshold, paths, should_pass", [(0.45, (CAMVID, KITTI), False), (0.45, (KITTI,), True)])
def test_agreement_flags_a_candidate_below_99_5_percent_on_any_frame(ort, threshold, paths, should_pass):
    """The candidate is the same model with its threshold moved.

    The expected agreement per frame is recomputed from the reference's probabilities, so the test pins the comparison's
    arithmetic, not a number.
    """
    frames = load(*paths)
    ref = measure(ort, frames)
    with RoadSegmenter(backend="onnxruntime", threshold=threshold) as shifted:
        comparison = compare(ref, measure(shifted, frames))
    expected = [float(np.mean((p >= 0.5) == (p >= threshold))) for p in ref.probabilities]
    assert [f["agreement"] for f in comparison.per_frame] == pytest.approx(expected, abs=1e-9)
    assert comparison.ok is should_pass is (min(expected) >= 0.995)
    if not should_pass:
        # CamVid fails, KITTI passes, and the mean would pass: every frame must reach 99.5 %
        assert comparison.min_agreement < 0.995 <= min(max(expected), comparison.mean_agreement)
        assert comparison.failure() == (
            f"onnxruntime masks agree with onnxruntime on only {100 * min(expected):.3f}% of the pixels of "
            f"{CAMVID.name} (need >= 99.5% on every frame)")


def test_comparison_refuses_measurements_of_different_frames(ort):
    with pytest.raises(ValueError, match="different frames"):
        compare(measure(ort, load(CAMVID, KITTI)), measure(ort, load(KITTI)))
