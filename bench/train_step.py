"""Seconds per training step on this CPU for an encoder and input size (batch of crops, forward + backward + AdamW).

Sizes the compute of a training run before starting it: steps per epoch times this, plus validation. Same
settings as the shipped recipe (``--freeze-early``, channels-last, batch 4, ``--threads``); random weights
and inputs (the cost does not depend on them).

    python -m bench.train_step --case efficientnet-lite0 288 928 --case efficientnet-lite1 288 928 --threads 1
"""
from __future__ import annotations

import argparse
import time

from bench.common import emit, machine_info, parse_bench_args, summarize


def step_seconds(encoder: str, height: int, width: int, batch: int, steps: int, warmup: int) -> dict:
    import torch

    from fcn_road_seg.training.model import FCN, FCNConfig, count_flops
    from fcn_road_seg.training.train import road_loss

    config = FCNConfig(encoder=encoder, variant="fcn8s", dropout=0.1)
    model = FCN(config)
    model.freeze_early()
    model.train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(batch, 3, height, width).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 2, (batch, height, width))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        road_loss(model(x), target).backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"encoder": encoder, "input": f"{height}x{width}", "batch": batch,
            "gflop_per_frame": round(count_flops(config, height, width) / 1e9, 2), "seconds": summarize(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=3, action="append", metavar=("ENCODER", "H", "W"),
                        help="encoder and input size (repeat); default: Lite0 at 256x832 and 288x928")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the recipe's --threads)")
    args = parse_bench_args(parser, argv, {"batch_size": 1, "steps": 1, "warmup": 0, "threads": 1})
    import torch

    torch.set_num_threads(args.threads)
    cases = args.case or [["efficientnet-lite0", "256", "832"], ["efficientnet-lite0", "288", "928"]]
    results = [step_seconds(e, int(h), int(w), args.batch_size, args.steps, args.warmup) for e, h, w in cases]
    report = {"threads": args.threads, "cases": results, "machine": machine_info()}
    table = [["encoder", "input", "GFLOP/frame", "s/step p50", "s/step min"]]
    table += [[r["encoder"], r["input"], f"{r['gflop_per_frame']:.2f}", f"{r['seconds']['p50']:.2f}",
               f"{r['seconds']['min']:.2f}"] for r in results]
    emit(report, table, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
