"""CPU engines on the shipped model, interleaved in one process: latency per frame and validation accuracy.

Engines (each a RoadSegmenter, so every row includes the same pre/post stages): ONNX Runtime fp32 (the
reference), PyTorch eager (same weights, rebuilt from the ONNX), OpenVINO f32 and bf16, ONNX Runtime and
OpenVINO on the INT8 copy, ``RoadSegmenter()`` as a user gets it (default model, backend auto), and
``main 63d0b12``: the pipeline as it was before issue 25 (ONNX Runtime fp32, INTER_AREA preprocessing),
re-implemented here for the speed-up the issue asks for, and optionally another INT8 copy (``--other-int8``).
Every round runs each engine once on the same 1242x375 KITTI frame, in a rotated order, so load changes hit
all engines alike; the load average is recorded before and after. Accuracy in the same run: MaxF/AP on
splits/kitti_road_val.txt (48 frames, KITTI perspective) and the fraction of mask pixels equal to the
reference's.

    python -m bench.cpu --threads 2 --rounds 40 --json out/cpu.json
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from bench.common import REPO_ROOT, TorchBackend, emit, machine_info, parse_bench_args, summarize

__all__ = ["Settings", "run", "main"]

log = logging.getLogger("bench.cpu")

FRAME = REPO_ROOT / "samples" / "kitti_um_000000.jpg"
VAL_SPLIT = REPO_ROOT / "splits" / "kitti_road_val.txt"
REFERENCE = "onnxruntime fp32"
BASELINE = "main 63d0b12 (onnxruntime fp32, INTER_AREA)"


@dataclass(frozen=True)
class Settings:
    threads: int
    rounds: int
    warmup: int
    kitti: str  # KITTI road training folder (val split inside), "" to skip accuracy
    torch: bool
    other_int8: str  # another INT8 copy (e.g. `quantize --symmetric`) run on both CPU runtimes, "" for none


class MainPipeline:
    """RoadSegmenter.segment as of main 63d0b12 (INTER_AREA when shrinking), for the before/after speed-up."""

    def __init__(self, backend) -> None:
        self.backend, self.contract = backend, backend.contract
        self._batch = np.empty(self.contract.input_shape, np.uint8)

    def segment(self, frame: np.ndarray, color_order: str = "bgr"):
        from fcn_road_seg.pipeline import RoadMask

        h, w = frame.shape[:2]
        t0 = time.perf_counter()
        cv2.resize(frame, (self.contract.input_width, self.contract.input_height), dst=self._batch[0],
                   interpolation=cv2.INTER_AREA)
        cv2.cvtColor(self._batch[0], cv2.COLOR_BGR2RGB, dst=self._batch[0])
        t1 = time.perf_counter()
        prob_net = self.backend.infer(self._batch)[0]
        t2 = time.perf_counter()
        probability = cv2.resize(prob_net, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = cv2.compare(probability, 0.5, cv2.CMP_GE)
        t3 = time.perf_counter()
        return RoadMask(probability, mask, {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3,
                                            "post": (t3 - t2) * 1e3})

    def close(self) -> None:
        self.backend.close()


def _engines(settings: Settings) -> dict:
    from fcn_road_seg.backends.onnxruntime import OnnxRuntimeBackend
    from fcn_road_seg.pipeline import RoadSegmenter
    from fcn_road_seg.resources import default_model_path

    model = default_model_path()
    t = {"threads": settings.threads}
    engines = {REFERENCE: RoadSegmenter(backend="onnxruntime", **t),
               BASELINE: MainPipeline(OnnxRuntimeBackend(model, device="cpu")),  # main's default: ORT's threads
               "onnxruntime int8": RoadSegmenter(backend="onnxruntime", cpu_precision="int8", **t)}
    if settings.torch:
        engines["pytorch eager fp32"] = RoadSegmenter(backend=TorchBackend(model))
    try:
        for hint in ("f32", "bf16", "int8"):
            engines[f"openvino {hint}"] = RoadSegmenter(backend="openvino", cpu_precision=hint, **t)
    except Exception as err:  # openvino absent, or no bf16 units: say so in the report
        log.warning("OpenVINO engine skipped: %s", err)
    engines["RoadSegmenter() default (auto)"] = RoadSegmenter()
    if settings.other_int8:
        other = Path(settings.other_int8)
        engines[f"onnxruntime {other.name}"] = RoadSegmenter(other, backend="onnxruntime", **t)
        if "openvino f32" in engines:
            engines[f"openvino {other.name}"] = RoadSegmenter(other, backend="openvino", **t)
    return engines


def _time(engines: dict, frame: np.ndarray, settings: Settings) -> dict:
    names = list(engines)
    for _ in range(settings.warmup):
        for seg in engines.values():
            seg.segment(frame, color_order="bgr")
    totals: dict[str, list[float]] = {n: [] for n in names}
    stages: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    for r in tqdm(range(settings.rounds), desc="rounds", disable=None):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotated: no engine always runs first
            t0 = time.perf_counter()
            result = engines[name].segment(frame, color_order="bgr")
            totals[name].append((time.perf_counter() - t0) * 1e3)
            for stage, ms in result.timings_ms.items():
                stages[name].setdefault(stage, []).append(ms)
    return {n: {"total": _stats(totals[n]), **{s: _stats(v) for s, v in stages[n].items()}} for n in names}


def _stats(samples: list[float]) -> dict:
    return {**summarize(samples), "p90": round(float(np.percentile(samples, 90)), 2)}


def _accuracy(engines: dict, kitti: Path) -> dict:
    from fcn_road_seg.evaluation.groundtruth import FolderSource
    from fcn_road_seg.evaluation.metrics import RoadMetrics

    metrics = {n: RoadMetrics() for n in engines}
    same = dict.fromkeys(engines, 0)
    pixels = 0
    for frame in tqdm(FolderSource(kitti, "kitti", str(VAL_SPLIT)), desc="val frames", disable=None):
        results = {n: seg.segment(frame.image, color_order="bgr") for n, seg in engines.items()}
        want = results[REFERENCE].mask
        pixels += want.size
        for n, result in results.items():
            metrics[n].update(result.probability, frame.road, frame.valid)
            same[n] += int(np.count_nonzero(result.mask == want))
    out = {}
    for n, m in metrics.items():
        s = m.compute()
        out[n] = {"MaxF": round(100 * s.MaxF, 3), "AP": round(100 * s.AP, 3), "frames": s.frames,
                  "mask_agreement_with_reference": round(same[n] / pixels, 5)}
    ref = out[REFERENCE]
    for v in out.values():
        v["MaxF_change_pp"] = round(v["MaxF"] - ref["MaxF"], 3)
    return out


def run(settings: Settings) -> dict:
    import torch

    torch.set_num_threads(settings.threads)
    report = {"benchmark": "cpu", "machine": machine_info(), "settings": asdict(settings),
              "frame": f"{FRAME.name} (1242x375 bgr8)"}
    engines = _engines(settings)
    report["selection"] = {n: getattr(getattr(s, "backend", None), "selection", "") for n, s in engines.items()}
    frame = cv2.imread(str(FRAME), cv2.IMREAD_COLOR)
    report["latency_ms"] = _time(engines, frame, settings)
    report["machine"]["load_average_after_timing"] = [round(x, 2) for x in os.getloadavg()]
    ref = report["latency_ms"][REFERENCE]["total"]["p50"]
    base = report["latency_ms"][BASELINE]["total"]["p50"]
    for v in report["latency_ms"].values():
        v["speedup_vs_reference_p50"] = round(ref / v["total"]["p50"], 2)
        v["speedup_vs_main_p50"] = round(base / v["total"]["p50"], 2)
    if settings.kitti:
        report["accuracy_val"] = _accuracy(engines, Path(settings.kitti))
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    for seg in engines.values():
        seg.close()
    return report


def table(report: dict) -> list[list[str]]:
    rows = [["engine", "pre", "infer", "post", "total p50", "p90", "p95", "min", "vs ORT fp32", "vs main",
             "val MaxF", "dMaxF pp", "mask agree"]]
    acc = report.get("accuracy_val", {})
    for name, s in report["latency_ms"].items():
        a = acc.get(name, {})
        t = s["total"]
        rows.append([name, *(f"{s[k]['p50']:.2f}" for k in ("pre", "infer", "post")),
                     f"{t['p50']:.1f}", f"{t['p90']:.1f}", f"{t['p95']:.1f}", f"{t['min']:.1f}",
                     f"{s['speedup_vs_reference_p50']:.2f}x", f"{s['speedup_vs_main_p50']:.2f}x",
                     f"{a['MaxF']:.3f}" if a else "-", f"{a['MaxF_change_pp']:+.3f}" if a else "-",
                     f"{100 * a['mask_agreement_with_reference']:.2f}%" if a else "-"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads of every engine (ORT, OpenVINO, torch)")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (each engine once per round)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--kitti", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "kitti_road_train",
                        help="KITTI road training folder for the validation accuracy")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the validation accuracy")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch eager")
    parser.add_argument("--other-int8", type=Path, default=None,
                        help="also run this INT8 copy on ONNX Runtime and OpenVINO (e.g. `quantize --symmetric`)")
    args = parse_bench_args(parser, argv, {"threads": 1, "rounds": 1, "warmup": 0})
    settings = Settings(args.threads, args.rounds, args.warmup, "" if args.no_accuracy else str(args.kitti),
                        not args.no_torch, str(args.other_int8 or ""))
    report = run(settings)
    emit(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
