"""The benchmark scripts: same-weights comparison, report shape, GPU skip message, peak table."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from bench.common import TorchBackend
from bench.gpu import dense_fp16_peak
from bench.pipeline import Case, Settings, run
from fcn_road_seg.backends.onnxruntime import OnnxRuntimeBackend
from fcn_road_seg.pipeline import RoadSegmenter


def test_torch_rebuilt_from_onnx_computes_what_onnxruntime_computes(tiny_onnx, kitti_images):
    frame = cv2.imread(str(kitti_images[0]))
    ort = RoadSegmenter(backend=OnnxRuntimeBackend(tiny_onnx, device="cpu", threads=1))
    pt = RoadSegmenter(backend=TorchBackend(tiny_onnx))
    a, b = ort.segment(frame).probability, pt.segment(frame).probability
    assert a.std() > 1e-3  # the random net's output varies, so agreement means something
    assert np.abs(a - b).max() < 1e-5


def test_pipeline_bench_reports_every_stage_for_both_backends(tiny_onnx):
    settings = Settings(threads=1, iterations=3, warmup=1, full_iterations=1, overlay_alpha=0.5,
                        backends=("onnxruntime", "torch"))
    report = run([Case("compact", tiny_onnx, "360x480")], settings)
    json.dumps(report)  # the report is plain JSON
    (entry,) = report["results"]
    assert entry["network"] == "96x320" and entry["max_abs_probability_difference"] < 1e-5
    for name in ("onnxruntime", "torch"):
        stages = entry["backends"][name]
        assert set(stages) == {"pre", "infer", "post", "overlay", "total"}
        assert stages["total"]["n"] == 3 and stages["total"]["p50"] >= stages["infer"]["p50"] > 0
    assert entry["torch_over_ort_infer_p50"] > 0
    assert report["settings"]["torch_threads"] == 1 and "training_running" in report["machine"]


def test_node_overhead_breakdown_on_a_real_frame(tiny_onnx, kitti_images):
    pytest.importorskip("rclpy")
    from bench.node import measure_overhead

    frame = cv2.imread(str(kitti_images[0]))
    out = measure_overhead(str(tiny_onnx), frame, iterations=3)
    parts = out["components_ms"]
    assert set(parts) == {"decode", "to_bgr", "fault_check", "pre", "post", "to_image", "encode"}
    assert out["non_infer_total_ms"]["p50"] >= max(v["p50"] for v in parts.values()) > 0


def test_gpu_bench_says_clearly_that_it_needs_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the GPU benchmark runs instead of skipping")
    proc = subprocess.run([sys.executable, "-m", "bench.gpu"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["benchmark"] == "gpu" and "no CUDA device" in report["skipped"]


def test_dense_fp16_peak_table_matches_device_names():
    assert dense_fp16_peak("NVIDIA H100 PCIe").tflops == 756.0
    assert dense_fp16_peak("NVIDIA H100 80GB HBM3").tflops == 989.4
    assert dense_fp16_peak("NVIDIA A100-SXM4-40GB").tflops == 312.0
    assert dense_fp16_peak("Orin (nvgpu)").gpu.startswith("Jetson AGX Orin")
    assert dense_fp16_peak("NVIDIA GeForce GTX 1080") is None


def test_peak_bench_reports_gemm_throughput_and_the_frame_floor():
    from bench.peak import MODEL_GFLOP, gemm_gflops

    for dtype in ("float32", "bfloat16"):
        r = gemm_gflops(128, dtype, repeat=3)
        assert r["best_gflops"] >= r["median_gflops"] > 0
        assert r["frame_floor_ms"] == pytest.approx(MODEL_GFLOP / r["best_gflops"] * 1e3, rel=0.01)
