"""Shared pieces of the benchmarks: machine/version facts, timing statistics, models, JSON + table output.

Run the benchmarks from the repository root as modules (``python -m bench.pipeline``) so that
``fcn_road_seg`` is this checkout's code.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

__all__ = [
    "measure_segment",
    "CACHE_DIR",
    "REPO_ROOT",
    "machine_info",
    "training_processes",
    "summarize",
    "emit",
    "full_fcn8s_onnx",
    "torch_net_from_onnx",
    "TorchBackend",
]

log = logging.getLogger("bench")

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("FCN_ROAD_SEG_BENCH_CACHE", REPO_ROOT / "bench" / ".cache"))


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def training_processes() -> list[str]:
    """Command lines of other running processes whose command line mentions ``train`` (CPU contention)."""
    try:
        out = subprocess.run(["pgrep", "-af", "train"], capture_output=True, text=True).stdout
    except OSError:
        return []
    me = {str(os.getpid()), str(os.getppid())}
    return [line[:160] for line in out.splitlines() if line and line.split()[0] not in me and "pgrep" not in line]


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return getattr(mod, "__version__", "present")


def machine_info() -> dict:
    """Collect what a reader needs to judge the numbers: CPU, cores, memory, load, versions, contention."""
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    training = training_processes()
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "training_running": bool(training),
        "training_processes": training,
        "git_commit": commit,
        "versions": {m: _version(m) for m in ("fcn_road_seg", "numpy", "cv2", "onnxruntime", "openvino", "torch",
                                              "tensorrt")},
    }


def summarize(samples_ms: list[float]) -> dict[str, float]:
    """mean / p50 / p95 / p99 / min of a list of milliseconds, rounded to 0.01 ms."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    stats = {"mean": a.mean(), "p50": np.percentile(a, 50), "p95": np.percentile(a, 95),
             "p99": np.percentile(a, 99), "min": a.min()}
    return {"n": int(a.size), **{k: round(float(v), 2) for k, v in stats.items()}}


def parse_bench_args(parser: argparse.ArgumentParser, argv: list[str] | None,
                     minimum: dict[str, float] | None = None) -> argparse.Namespace:
    """Add ``--json``, parse, turn on INFO logging, make OpenMP wait passively and refuse options below ``minimum``.

    ``minimum`` maps dest name -> lowest value; each option given below it is refused. This is the common start of
    every benchmark's ``main``.
    """
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    # PyTorch's OpenMP workers spin after each call by default: on a busy 2-core machine they take the CPU from
    # their own next call and from whatever runs next (measured: PyTorch eager 5.8 s a frame spinning, 0.5 s
    # passive, at load ~10). Set before torch starts its thread pool; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    low = [f"--{dest.replace('_', '-')} must be >= {least:g}" for dest, least in (minimum or {}).items()
           if getattr(args, dest) < least]
    if low:
        parser.error(", ".join(low))
    return args


def emit(report: dict, table: list[list[str]], json_path: Path | None = None) -> None:
    """Print the report as JSON, then a plain-text table (first row = header); optionally save the JSON."""
    text = json.dumps(report, indent=2, sort_keys=False)
    print(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n")
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print()
    for n, row in enumerate(table):
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def full_fcn8s_onnx(height: int, width: int, seed: int = 0) -> Path:
    """Return the full FCN-8s (VGG16, fc 4096) with seeded random weights, exported once and cached."""
    from fcn_road_seg.training.export import contract_for, export_onnx

    path = CACHE_DIR / f"fcn8s_full_{height}x{width}_seed{seed}.onnx"
    if path.is_file():
        return path
    import torch

    from fcn_road_seg.training.model import FCN, FCNConfig

    torch.manual_seed(seed)
    net = FCN(FCNConfig(variant="fcn8s"))
    with torch.no_grad():  # random score layers, so the output varies and the torch/ORT check is meaningful
        for name in ("score_fr", "score_pool4", "score_pool3"):
            getattr(net, name).weight.normal_(0, 0.01)
    log.info("exporting the full FCN-8s at %dx%d to %s (once; ~540 MB)", height, width, path)
    tmp = path.with_suffix(".tmp.onnx")
    export_onnx(net.eval(), contract_for(net.config, (height, width), training_data=f"random weights, seed {seed}"),
                tmp)
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class _Layer:
    name: str
    transposed: bool


def _forward_order(net) -> list[_Layer]:
    """List the FCN's conv / transposed-conv layers in the order forward() runs them (the exporter's order)."""
    from torch import nn

    order = [_Layer(f"features.{i}", False) for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)]
    order += [_Layer(n, False) for n in ("fc6", "fc7", "score_fr")]
    variant = net.config.variant
    if variant != "fcn32s":
        order += [_Layer("upscore2", True), _Layer("score_pool4", False)]
        if variant == "fcn8s":
            order += [_Layer("upscore_pool4", True), _Layer("score_pool3", False)]
    order.append(_Layer("upscore", True))
    return order


def torch_net_from_onnx(path: Path):
    """Rebuild the PyTorch FCN with exactly the weights inside an exported ONNX file, wrapped like the export.

    The wrapper takes uint8 NHWC in, normalises, and puts the calibrated probability out.

    EfficientNet-Lite encoders: ``training.onnx_weights.model_from_onnx`` (each folded BatchNorm as the identity
    over the conv's folded bias). VGG16: the exporter folds BatchNorm into the convs and leaves some tensors
    unnamed, so the rebuilt net has no BatchNorm layers; layers are matched in forward order, checked by shape.
    """
    from fcn_road_seg.contract import read_onnx_contract
    from fcn_road_seg.training.calibrate import Calibration
    from fcn_road_seg.training.export import DeployableFCN

    contract = read_onnx_contract(path)
    norm, cal = contract.normalization, contract.calibration
    calibration = Calibration(temperature=cal["temperature"], bias=cal["bias"]) if "temperature" in cal else None
    if contract.encoder.startswith("vgg"):
        net = _vgg_net_from_onnx(path, contract)
    else:
        from fcn_road_seg.training.onnx_weights import model_from_onnx

        net, _ = model_from_onnx(path)
    return DeployableFCN(net.eval(), norm["mean"], norm["std"], calibration).eval(), contract


def _vgg_net_from_onnx(path: Path, contract):
    """Build the VGG16 FCN (no BatchNorm) with the graph's conv weights, matched in forward order."""
    import onnx
    import torch
    from onnx import numpy_helper

    from fcn_road_seg.training.model import FCN, FCNConfig

    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in proto.graph.node if n.op_type == "Constant" and n.attribute}
    convs = [n for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    net = FCN(FCNConfig(variant=contract.variant, width_mult=contract.width_mult, fc_width=contract.fc_width))
    layers = _forward_order(net)
    if len(convs) != len(layers):
        raise ValueError(f"{path}: {len(convs)} conv nodes, expected {len(layers)} for {contract.variant}")
    state = {}
    for node, layer in zip(convs, layers):
        if (node.op_type == "ConvTranspose") != layer.transposed:
            raise ValueError(f"{path}: node {node.name} ({node.op_type}) does not line up with {layer.name}")
        module = net.get_submodule(layer.name)
        for i, attr in ((1, "weight"), (2, "bias")):
            if getattr(module, attr, None) is None:
                continue
            name = node.input[i] if len(node.input) > i else ""
            tensor = inits.get(name) or consts.get(name)
            value = (torch.from_numpy(numpy_helper.to_array(tensor).copy()) if tensor is not None
                     else torch.zeros_like(getattr(module, attr)))
            if value.shape != getattr(module, attr).shape:
                raise ValueError(f"{path}: {layer.name}.{attr} is {tuple(value.shape)} in the graph, "
                                 f"{tuple(getattr(module, attr).shape)} in the model")
            state[f"{layer.name}.{attr}"] = value
    net.load_state_dict(state, strict=True)
    return net


class TorchBackend:
    """PyTorch eager as a pipeline backend (benchmarks only): same interface as the runtime backends."""

    name = "torch-eager"
    selection = "PyTorch eager, opened by the benchmark"
    fallback = None

    def __init__(self, path: Path, *, device: str = "cpu") -> None:
        import torch

        self._torch = torch
        self.module, self.contract = torch_net_from_onnx(path)
        self.device = device
        self.module.to(device)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch).to(self.device)).cpu().numpy()

    def close(self) -> None:
        self.module = None


def measure_segment(segmenter, frame: np.ndarray, iterations: int, warmup: int, alpha: float | None, desc: str) -> dict:
    """Milliseconds of ``segmenter.segment(frame)`` (BGR): each stage and the total, summarized."""
    for _ in range(warmup):
        segmenter.segment(frame, color_order="bgr", overlay_alpha=alpha)
    stages: dict[str, list[float]] = {}
    totals = []
    for _ in tqdm(range(iterations), desc=desc, unit="frame", leave=False, disable=None):
        t0 = time.perf_counter()
        result = segmenter.segment(frame, color_order="bgr", overlay_alpha=alpha)
        totals.append((time.perf_counter() - t0) * 1e3)
        for stage, ms in result.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    out = {stage: summarize(v) for stage, v in stages.items()}
    out["total"] = summarize(totals)
    return out
