"""Per-stage latency of RoadSegmenter.segment: ONNX Runtime CPU against PyTorch eager CPU on the same weights.

Stages are the pipeline's own timings: ``pre`` (resize + colour order into the network batch), ``infer``
(``backend.infer``), ``post`` (probability back to frame size + threshold), ``overlay``. Both backends run
the same graph weights (PyTorch rebuilt from the ONNX file, checked numerically) with the same thread count.

    python -m bench.pipeline --model MODEL.onnx [OTHER.onnx ...] --threads 2 --no-full --json out/pipeline.json
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.common import REPO_ROOT, TorchBackend, emit, parse_bench_args, full_fcn8s_onnx, machine_info, measure_segment

__all__ = ["Settings", "Case", "run", "main"]

log = logging.getLogger("bench.pipeline")

FRAMES = {  # real frames bundled with the package, one per input size the issue asks for
    "375x1242": REPO_ROOT / "samples" / "kitti_um_000000.jpg",
    "360x480": REPO_ROOT / "samples" / "camvid_0001TP_008550.jpg",
}
BACKENDS = ("onnxruntime", "torch")


@dataclass(frozen=True)
class Settings:
    threads: int
    iterations: int
    warmup: int
    full_iterations: int
    overlay_alpha: float
    backends: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    label: str  # "shipped", a trained model's file stem, "compact" (untrained), "fcn8s-full"
    model: Path
    frame: str  # key of FRAMES


def _open(backend: str, model: Path, threads: int):
    if backend == "onnxruntime":
        from fcn_road_seg.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, device="cpu", threads=threads)
    return TorchBackend(model, device="cpu")


def run(cases: list[Case], settings: Settings) -> dict:
    """Measure every case with every backend; returns the report (machine, settings, results)."""
    import torch

    from fcn_road_seg.contract import read_onnx_contract
    from fcn_road_seg.pipeline import RoadSegmenter

    torch.set_num_threads(settings.threads)
    cv2.setNumThreads(settings.threads)
    report = {"benchmark": "pipeline", "machine": machine_info(), "settings": asdict(settings), "results": []}
    report["settings"]["torch_threads"] = torch.get_num_threads()
    report["settings"]["opencv_threads"] = cv2.getNumThreads()
    for case in cases:
        frame = cv2.imread(str(FRAMES[case.frame]), cv2.IMREAD_COLOR)
        iterations = settings.full_iterations if case.label == "fcn8s-full" else settings.iterations
        contract = read_onnx_contract(case.model)
        segmenters = {b: RoadSegmenter(backend=_open(b, case.model, settings.threads)) for b in settings.backends}
        entry = {
            "case": case.label,
            "model": case.model.name,
            "network": f"{contract.input_height}x{contract.input_width}",
            "network_pixels": contract.input_height * contract.input_width,
            "architecture": (f"{contract.variant} {contract.encoder} width {contract.width_mult:g} "
                             f"fc {contract.fc_width}"),
            "input": case.frame,
            "iterations": iterations,
            "backends": {},
        }
        if len(segmenters) == 2:  # same weights, same answer: the comparison is of runtimes, not of models
            probs = [s.segment(frame).probability for s in segmenters.values()]
            entry["max_abs_probability_difference"] = float(np.abs(probs[0] - probs[1]).max())
        for name, seg in segmenters.items():  # one backend at a time: ORT's spinning threads stay out of torch's way
            desc = f"{case.label} {entry['network']} on {case.frame} {name}"
            entry["backends"][name] = measure_segment(seg, frame, iterations, settings.warmup, settings.overlay_alpha,
                                                      desc)
            seg.close()
        if len(segmenters) == 2:
            ort, pt = entry["backends"]["onnxruntime"], entry["backends"]["torch"]
            entry["torch_over_ort_infer_p50"] = round(pt["infer"]["p50"] / ort["infer"]["p50"], 2)
            entry["torch_over_ort_total_p50"] = round(pt["total"]["p50"] / ort["total"]["p50"], 2)
        report["results"].append(entry)
    report["machine"]["training_running_at_end"] = bool(machine_info()["training_running"])
    return report


def table(report: dict) -> list[list[str]]:
    rows = [["case", "net", "input", "backend", "pre", "infer", "post", "overlay", "total p50", "fps", "pt/ort"]]
    for r in report["results"]:
        for name, s in r["backends"].items():
            ratio = r.get("torch_over_ort_infer_p50") if name == "onnxruntime" else None
            rows.append([r["case"], r["network"], r["input"], name,
                         *(f"{s[k]['p50']:.1f}" if k in s else "-" for k in ("pre", "infer", "post", "overlay")),
                         f"{s['total']['p50']:.1f}", f"{1e3 / s['total']['p50']:.1f}",
                         f"{ratio:.2f}x" if ratio else ""])
    return rows


def _cases(args: argparse.Namespace) -> list[Case]:
    from fcn_road_seg.contract import read_onnx_contract

    from fcn_road_seg.resources import default_model_path

    cases = []
    for model in args.model or [default_model_path()]:
        if model.resolve() == default_model_path().resolve():
            label = "shipped"
        else:
            label = model.stem if read_onnx_contract(model).training_data != "untrained" else "compact"
        cases += [Case(label, model, "375x1242"), Case(label, model, "360x480")]
    if not args.no_full:
        cases += [Case("fcn8s-full", full_fcn8s_onnx(384, 1248), "375x1242"),
                  Case("fcn8s-full", full_fcn8s_onnx(352, 480), "360x480")]
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, nargs="+", default=None,
                        help="road model(s) .onnx, measured one after the other in this run (default: the shipped "
                             "model)")
    parser.add_argument("--threads", type=int, default=2, help="threads for ORT intra-op, torch and OpenCV")
    parser.add_argument("--iterations", type=int, default=30, help="timed frames per backend (compact/shipped)")
    parser.add_argument("--full-iterations", type=int, default=5, help="timed frames per backend (full FCN-8s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed frames first")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (the overlay stage is timed)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--no-full", action="store_true", help="skip the full FCN-8s cases (~540 MB each, slow)")
    args = parse_bench_args(parser, argv, {"threads": 1, "iterations": 1, "full_iterations": 1, "warmup": 0})
    settings = Settings(args.threads, args.iterations, args.warmup, args.full_iterations, args.alpha,
                        tuple(args.backends))
    report = run(_cases(args), settings)
    emit(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
