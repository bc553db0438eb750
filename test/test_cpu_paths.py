"""Every CPU path gives the masks of the reference path (ONNX Runtime, float32 model).

The paths: ONNX Runtime on the shipped INT8 copy, OpenVINO in f32 and bf16 on the float model and on the INT8 copy, each
on >= 99.5 % of the pixels of all 48 KITTI validation frames (splits/kitti_road_val.txt). And what ``auto`` picks on a
CPU: the INT8 copy on OpenVINO, or on ONNX Runtime when openvino cannot be imported.
"""
import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fcn_road_seg.errors import BackendUnavailableError, ModelError
from fcn_road_seg.evaluation.groundtruth import kitti_pairs
from fcn_road_seg.images import read_bgr
from fcn_road_seg.pipeline import RoadSegmenter
from fcn_road_seg.resources import default_model_path

ROOT = Path(__file__).resolve().parents[1]
MIN_AGREEMENT = 0.995
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None
HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAVE_OPENVINO, reason="openvino is not installed (pip install openvino)")
no_trt = pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here: auto may really use it")


def _bf16_cpu() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _paths() -> dict[str, dict]:
    paths = {"onnxruntime int8": dict(backend="onnxruntime", cpu_precision="int8")}
    if HAVE_OPENVINO:
        paths["openvino f32"] = dict(backend="openvino", cpu_precision="f32")
        paths["openvino int8"] = dict(backend="openvino", cpu_precision="int8")
        if _bf16_cpu():  # elsewhere the bf16 hint is refused (test below)
            paths["openvino bf16"] = dict(backend="openvino", cpu_precision="bf16")
    return paths


@pytest.fixture(scope="module")
def val_frames(shared_data) -> list[Path]:
    root = shared_data / "kitti_road_train"
    if not root.is_dir():
        pytest.skip(f"{root} not found (CI has it beside the repo)")
    return [image for image, _ in kitti_pairs(root, ROOT / "splits" / "kitti_road_val.txt")]


def test_every_cpu_path_agrees_with_onnxruntime_fp32_on_the_validation_frames(val_frames):
    assert len(val_frames) == 48
    reference = RoadSegmenter(backend="onnxruntime", cpu_precision="f32")
    others = {name: RoadSegmenter(**kw) for name, kw in _paths().items()}
    same = dict.fromkeys(others, 0)
    worst = dict.fromkeys(others, 1.0)
    total = 0
    try:
        for path in val_frames:
            frame = read_bgr(path)
            want = reference.segment(frame).mask
            total += want.size
            for name, seg in others.items():
                agree = int(np.count_nonzero(seg.segment(frame).mask == want))
                same[name] += agree
                worst[name] = min(worst[name], agree / want.size)
    finally:
        for seg in [reference, *others.values()]:
            seg.close()
    agreement = {name: same[name] / total for name in others}
    assert all(a >= MIN_AGREEMENT for a in agreement.values()), (agreement, worst)
    assert all(a < 1.0 for name, a in agreement.items() if "int8" in name)  # really another computation
    assert others["onnxruntime int8"].backend.contract.precision == "int8"


@no_trt
@needs_openvino
def test_auto_runs_the_int8_copy_on_openvino_and_says_so(caplog):
    with caplog.at_level(logging.WARNING), RoadSegmenter() as seg:
        backend = seg.backend
        assert (backend.name, backend.contract.precision) == ("openvino", "int8")
        assert backend.path.name == "fcn8s_lite0_kitti_road_int8.onnx"
        assert backend.selection.startswith("backend 'auto' fell back to OpenVINO: TensorRT cannot run")
        assert backend.selection.endswith("(int8 model fcn8s_lite0_kitti_road_int8.onnx, f32 hint)")
        # the library stays quiet (the CLI and the node say it once); the short reason leaves the file note out
        assert backend.fallback.startswith("TensorRT cannot run fcn8s_lite0_kitti_road.onnx here")
        assert "int8 model" not in backend.fallback
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "fcn_road_seg.backends"]


@no_trt
def test_auto_without_openvino_runs_the_int8_copy_on_onnxruntime():
    code = ("import sys, json; sys.modules['openvino'] = None\n"  # import openvino now fails, find_spec says None
            "from fcn_road_seg.pipeline import RoadSegmenter\n"
            "seg = RoadSegmenter(); b = seg.backend\n"
            "print(json.dumps([b.name, b.contract.precision, b.selection]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    name, precision, selection = json.loads(done.stdout)
    assert (name, precision) == ("onnxruntime", "int8")
    assert selection.startswith("backend 'auto' fell back to ONNX Runtime: TensorRT cannot run")
    assert selection.endswith("(int8 model fcn8s_lite0_kitti_road_int8.onnx)")
    assert "WARNING" not in done.stderr, done.stderr


def test_named_backends_run_the_file_given_unless_asked_for_int8(tiny_onnx):
    with RoadSegmenter(backend="onnxruntime") as seg:
        assert seg.backend.contract.precision == "fp32"
        assert seg.backend.selection == "backend 'onnxruntime' requested (fp32 model fcn8s_lite0_kitti_road.onnx)"
    with pytest.raises(ModelError, match="needs an INT8 copy of tiny.onnx: write it with `fcn-road-seg quantize"):
        RoadSegmenter(tiny_onnx, backend="onnxruntime", cpu_precision="int8")
    with pytest.raises(BackendUnavailableError, match="runs on OpenVINO only"):
        RoadSegmenter(backend="onnxruntime", cpu_precision="bf16")
    with pytest.raises(ValueError, match="cpu_precision must be one of"):
        RoadSegmenter(backend="onnxruntime", cpu_precision="fp16")


def test_a_copy_of_another_model_is_ignored(tmp_path, tiny_onnx, caplog):
    model = tmp_path / "fcn8s_lite0_kitti_road.onnx"
    model.write_bytes(tiny_onnx.read_bytes())  # not the model the shipped INT8 copy came from
    (tmp_path / "fcn8s_lite0_kitti_road_int8.onnx").write_bytes(
        (default_model_path().parent / "fcn8s_lite0_kitti_road_int8.onnx").read_bytes())
    with caplog.at_level(logging.WARNING):
        with pytest.raises(ModelError, match="needs an INT8 copy"):
            RoadSegmenter(model, backend="onnxruntime", cpu_precision="int8")
    assert any("was not quantized from fcn8s_lite0_kitti_road.onnx" in r.getMessage() for r in caplog.records)


@needs_openvino
def test_openvino_reports_its_precision_hint():
    with RoadSegmenter(backend="openvino") as seg:
        assert seg.backend.selection == ("backend 'openvino' requested "
                                         "(fp32 model fcn8s_lite0_kitti_road.onnx, f32 hint)")
    if _bf16_cpu():
        with RoadSegmenter(backend="openvino", cpu_precision="bf16") as seg:
            assert seg.backend.selection.endswith("(fp32 model fcn8s_lite0_kitti_road.onnx, bf16 hint)")
    else:
        with pytest.raises(BackendUnavailableError, match="no bf16 units"):
            RoadSegmenter(backend="openvino", cpu_precision="bf16")
