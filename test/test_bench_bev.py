"""bench/bev.py: the grid's per-frame cost report on the bundled KITTI frame (real model, real calib)."""
import json

from bench.bev import measure, table


def test_bev_bench_reports_grid_lut_and_kitti_costs(tiny_onnx, shared_data):
    report = measure(0.1, 20.0, 40.0, iterations=5, warmup=1, calib_path=shared_data / "kitti_road" / "training"
                     / "calib" / "um_000000.txt", model=tiny_onnx)
    json.dumps(report)
    settings, results = report["settings"], report["results_ms"]
    assert settings["grid"]["cells"] == "400x200" and settings["image"] == "1242x375"
    assert settings["camera"].endswith("um_000000.txt") and 0.3 < settings["seen_cells_fraction"] < 0.95
    assert results["grid"]["occupancy"]["n"] == 5 and results["grid"]["occupancy"]["p50"] > 0
    assert results["kitti_bev"]["warp"]["n"] >= 3 and results["lut_build"]["p50"] > 0
    assert [row[0] for row in table(report)][1] == "grid occupancy"


def test_nominal_camera_without_calib(tiny_onnx, tmp_path):
    report = measure(0.2, 10.0, 20.0, iterations=2, warmup=0, calib_path=tmp_path / "none.txt", model=tiny_onnx)
    assert "nominal" in report["settings"]["camera"] and report["settings"]["grid"]["cells"] == "100x50"
