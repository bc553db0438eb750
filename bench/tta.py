"""Latency of test-time flip: RoadSegmenter.segment with ``tta`` none and flip, ONNX Runtime CPU, per model.

Every model and setting runs once per round (``--iterations`` frames), round after round, on the same frame (the
KITTI 1242x375 sample), so drifting load on a shared machine hits all of them alike.

    python -m bench.tta --model models/fcn8s_lite0_kitti_road.onnx [OTHER.onnx ...] --threads 2 --json out/tta.json
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2

from bench.common import REPO_ROOT, emit, machine_info, parse_bench_args, summarize

FRAME = REPO_ROOT / "samples" / "kitti_um_000000.jpg"
MODES = ("none", "flip")


def run(models: list[Path], threads: int, iterations: int, rounds: int, warmup: int) -> dict:
    from fcn_road_seg.pipeline import RoadSegmenter

    frame = cv2.imread(str(FRAME))
    segmenters = [RoadSegmenter(model, backend="onnxruntime", threads=threads) for model in models]
    cases = [(seg, mode) for seg in segmenters for mode in MODES]
    samples = {case: {"infer": [], "total": []} for case in cases}
    try:
        for r in range(warmup + rounds):
            for seg, mode in cases:  # every model and setting once per round: drifting load hits all alike
                seg.tta = mode
                for _ in range(iterations if r >= warmup else 1):
                    t0 = time.perf_counter()
                    result = seg.segment(frame)
                    if r >= warmup:
                        samples[seg, mode]["total"].append((time.perf_counter() - t0) * 1e3)
                        samples[seg, mode]["infer"].append(result.timings_ms["infer"])
    finally:
        for seg in segmenters:
            seg.close()
    rows = [{"model": str(model), "network": f"{seg.contract.input_height}x{seg.contract.input_width}", "tta": mode,
             **{stage: summarize(v) for stage, v in samples[seg, mode].items()}}
            for model, seg in zip(models, segmenters) for mode in MODES]
    return {"frame": f"{FRAME.name} {frame.shape[1]}x{frame.shape[0]}", "threads": threads, "cases": rows,
            "machine": machine_info()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, nargs="+", default=[REPO_ROOT / "models" / "fcn8s_lite0_kitti_road.onnx"])
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--iterations", type=int, default=10, help="timed frames per setting and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every model and setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed frames first")
    args = parse_bench_args(parser, argv, {"threads": 1, "iterations": 1, "rounds": 1, "warmup": 0})
    report = run(args.model, args.threads, args.iterations, args.rounds, args.warmup)
    table = [["model", "network", "tta", "infer p50 ms", "total p50 ms", "total p95 ms"]]
    table += [[Path(c["model"]).name, c["network"], c["tta"], f"{c['infer']['p50']:.1f}", f"{c['total']['p50']:.1f}",
               f"{c['total']['p95']:.1f}"] for c in report["cases"]]
    emit(report, table, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
