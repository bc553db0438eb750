"""`fcn-road-seg doctor` where TensorRT runs, on the strict TensorRT/pycuda fakes of each release (test/trt_fakes).

The fakes build the FP16 engine through the engine cache, run the frames, and the doctor compares them with ONNX
Runtime.
"""
from __future__ import annotations

import json

import pytest

from fcn_road_seg.doctor.report import DoctorOptions, run_doctor
from fcn_road_seg.resources import samples_dir

KITTI = samples_dir() / "kitti_um_000000.jpg"


def test_doctor_builds_then_reuses_the_fp16_engine_and_compares_it_with_onnxruntime(fakes, tmp_path, monkeypatch,
                                                                                    capsys):
    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path / "cache"))
    reports = []
    for run in ("first", "second"):
        out = tmp_path / f"{run}.json"
        assert run_doctor(DoctorOptions(images=(KITTI,), repeat=2, json_path=out, require_tensorrt=True)) == 0, \
            capsys.readouterr().out
        reports.append(json.loads(out.read_text()))
    first, second = reports
    assert first["tensorrt"] == {"available": True, "version": fakes.trt.__version__,
                                 "builder": {"works": True, "dla_cores": fakes.gpu.dla_cores}, "reason": None}
    assert first["gpu"]["name"] == fakes.gpu.name
    assert first["gpu"]["compute_capability"] == ".".join(map(str, fakes.gpu.compute_capability))
    assert first["fp16_proxy"] == {"skipped": "TensorRT ran: its FP16 engine is compared instead"}
    run = first["tensorrt_run"]
    assert run["engine_reused"] is False and second["tensorrt_run"]["engine_reused"] is True
    assert run["engine"].startswith(str(tmp_path / "cache" / "engines")) and len(fakes.gpu.builds) == 1
    comparison = run["comparison"]
    assert comparison["candidate"] == "tensorrt fp16" and comparison["ok"]
    assert [f["frame"] for f in comparison["per_frame"]] == [KITTI.name]
    assert comparison["min_agreement"] >= 0.995
    lat = run["measurement"]["latency_ms"]
    assert lat["infer"]["n"] == 2 and lat["infer"]["p50"] > 0 and "backend_execute" in lat
    assert first["result"] == {"ok": True, "failures": []}


@pytest.mark.parametrize("fakes", ["10.3"], indirect=True)
def test_doctor_fails_naming_why_when_the_engine_disagrees_with_onnxruntime(fakes, tmp_path, monkeypatch, capsys):
    from fcn_road_seg.backends.tensorrt import TensorRTBackend

    real_infer = TensorRTBackend.infer
    monkeypatch.setattr(TensorRTBackend, "infer", lambda self, batch: 1.0 - real_infer(self, batch))  # a broken engine
    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "doctor.json"
    assert run_doctor(DoctorOptions(images=(KITTI,), repeat=1, json_path=out)) == 1
    (failure,) = json.loads(out.read_text())["result"]["failures"]
    assert failure.startswith("tensorrt fp16 masks agree with onnxruntime on only ")
    assert failure.endswith(f"of the pixels of {KITTI.name} (need >= 99.5% on every frame)")
    assert f"  - {failure}" in capsys.readouterr().out


def test_tensorrt_without_a_cuda_device_is_said_plainly_and_passes_unless_required(tmp_path, monkeypatch, capsys):
    from trt_fakes import install

    install(monkeypatch, "10.3", count=0)  # TensorRT and pycuda import, but the driver sees no GPU
    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path / "cache"))
    for required, status in ((False, 0), (True, 1)):
        out = tmp_path / f"required_{required}.json"
        assert run_doctor(DoctorOptions(images=(KITTI,), repeat=1, json_path=out, require_tensorrt=required)) == status
        report = json.loads(out.read_text())
        assert report["tensorrt"]["version"] == "10.3.0" and report["tensorrt"]["available"] is False
        assert report["gpu"]["available"] is False
        why = report["gpu"]["reason"]
        assert why.startswith("no CUDA device found: pycuda sees no CUDA device")
        assert f"TensorRT: cannot run here ({why}); only the ONNX Runtime checks ran" in capsys.readouterr().out
        assert report["fp16_proxy"]["comparison"]["ok"]  # the CPU proxy ran instead
        assert report["result"]["failures"] == ([f"--require-tensorrt: TensorRT cannot run here ({why}); install: "
                                                 f"{report['tensorrt_run']['install']}"] if required else [])
