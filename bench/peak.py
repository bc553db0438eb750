"""The CPU's practical compute ceiling: matrix-multiply throughput in fp32 and bf16, the physical limit of a frame.

A large square GEMM (``torch.mm``, oneDNN/MKL kernels) runs near the cores' multiply-add peak, so its GFLOP/s
bounds what any engine can reach on a convolutional network here: the shipped model's 3.3 GFLOP a frame
divided by that rate is the fastest fp32 (or bf16) frame this machine can compute. Each GEMM is timed
``--repeat`` times after a warm-up; the best and the median are reported (2 FLOPs per multiply-add).

    python -m bench.peak --threads 2 --size 2048 --repeat 20
"""
from __future__ import annotations

import argparse
import time

from bench.common import emit, machine_info, parse_bench_args

__all__ = ["gemm_gflops", "main"]

MODEL_GFLOP = 3.27  # the shipped model per frame (`fcn-road-seg model-info`, 256x832)


def gemm_gflops(size: int, dtype_name: str, repeat: int) -> dict[str, float]:
    """Best and median GFLOP/s of ``size`` x ``size`` matrix products in ``dtype_name`` (float32, bfloat16)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    for _ in range(3):  # warm-up: kernel selection, page faults
        torch.mm(a, b)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    times.sort()
    flop = 2.0 * size**3
    best, median = flop / times[0] / 1e9, flop / times[len(times) // 2] / 1e9
    return {"best_gflops": round(best, 1), "median_gflops": round(median, 1),
            "frame_floor_ms": round(MODEL_GFLOP / best * 1e3, 1)}


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the JSON report and a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--size", type=int, default=2048, help="matrix side")
    parser.add_argument("--repeat", type=int, default=20, help="timed products per precision")
    args = parse_bench_args(parser, argv, minimum={"threads": 1, "size": 64, "repeat": 1})
    import torch

    torch.set_num_threads(args.threads)
    results = {name: gemm_gflops(args.size, name, args.repeat) for name in ("float32", "bfloat16")}
    report = {"benchmark": "peak", "machine": machine_info(), "settings": vars(args) | {"json": str(args.json)},
              "model_gflop_per_frame": MODEL_GFLOP, "results": results}
    table = [["precision", "best GFLOP/s", "median GFLOP/s", "frame floor (ms)"]]
    table += [[k, str(v["best_gflops"]), str(v["median_gflops"]), str(v["frame_floor_ms"])] for k, v in results.items()]
    emit(report, table, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
