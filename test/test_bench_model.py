"""bench.tta (test-time flip latency) and bench.train_step (training step time) on real inputs, tiny settings."""
from __future__ import annotations

import json

from bench import train_step, tta


def test_tta_bench_times_every_model_with_and_without_flip(tiny_onnx, tmp_path, capsys):
    assert tta.main(["--model", str(tiny_onnx), "--iterations", "2", "--rounds", "2", "--warmup", "1",
                     "--threads", "1", "--json", str(tmp_path / "t.json")]) == 0
    report = json.loads((tmp_path / "t.json").read_text())
    assert [(c["network"], c["tta"]) for c in report["cases"]] == [("96x320", "none"), ("96x320", "flip")]
    for case in report["cases"]:
        assert case["infer"]["n"] == case["total"]["n"] == 4 and case["total"]["p50"] >= case["infer"]["p50"] > 0
    assert report["frame"].endswith("1242x375") and "load_average_1_5_15" in report["machine"]
    assert "flip" in capsys.readouterr().out


def test_train_step_bench_reports_seconds_and_flops(tmp_path):
    assert train_step.main(["--case", "efficientnet-lite0", "64", "128", "--batch-size", "1", "--steps", "1",
                            "--warmup", "0", "--json", str(tmp_path / "s.json")]) == 0
    (case,) = json.loads((tmp_path / "s.json").read_text())["cases"]
    assert case["input"] == "64x128" and case["seconds"]["n"] == 1 and case["seconds"]["p50"] > 0
    assert 0.05 < case["gflop_per_frame"] < 0.2  # 3.27 GFLOP at 256x832, scaled by the pixel count: ~0.13
