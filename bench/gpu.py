"""Full FCN-8s FP16 on a CUDA GPU: latency, batch-1 throughput and achieved TFLOP/s against the dense FP16 peak.

Paths (random weights; speed does not depend on them):

* ``torch-eager``: PyTorch CUDA FP16, channels-last, uint8 NHWC input already on the GPU;
* ``torch-cudagraph``: the same module captured once with ``torch.cuda.CUDAGraph`` and replayed;
* ``tensorrt``: the project's TensorRT backend, timed through ``backend.infer`` host-to-host, i.e. including
  the input/output copies; only where ``tensorrt`` and ``pycuda`` are installed. Its FP16 engine comes from
  ``open_backend(onnx, "tensorrt")``: ``trt.engine.cached_engine`` -> ``build_engine``, the code that
  ``fcn-road-seg build-engine``, the node and ``fcn-road-seg doctor`` build with (cached per GPU and TensorRT
  version; the result names the plan).

FLOPs per frame come from ``fcn_road_seg.training.model.count_flops`` (2 per multiply-add). Without a CUDA device
the script prints ``{"benchmark": "gpu", "skipped": "..."}`` and exits 0.

    python -m bench.gpu --sizes 375x1242 160x576 --iterations 200 --json out/gpu.json
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass

from bench.common import emit, parse_bench_args, full_fcn8s_onnx, machine_info, summarize

__all__ = ["DENSE_FP16_PEAKS", "dense_fp16_peak", "main"]

log = logging.getLogger("bench.gpu")


@dataclass(frozen=True)
class Peak:
    match: str  # substring of torch.cuda.get_device_name(), checked in table order
    gpu: str
    tflops: float  # dense (no 2:4 sparsity) FP16 tensor-core peak at boost clock
    source: str


# Vendor peaks; sparse figures halved where the vendor quotes only "with sparsity".
DENSE_FP16_PEAKS = (
    Peak("H100 PCIe", "H100 PCIe", 756.0,
         "NVIDIA H100 datasheet: FP16 Tensor Core 1,513 TFLOPS with sparsity, 1/2 without "
         "(reproduced at archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html)"),
    Peak("H100", "H100 SXM5", 989.4,
         "NVIDIA H100 datasheet: FP16 Tensor Core 1,979 TFLOPS with sparsity; dense 989.4 "
         "(glennklockwood.com/garden/processors/h100)"),
    Peak("H200", "H200", 989.4,
         "same GH100 compute as H100 SXM5 with 141 GB HBM3e (glennklockwood.com/garden/processors/h100)"),
    Peak("A100", "A100 (SXM4/PCIe)", 312.0,
         "NVIDIA A100 datasheet: FP16 Tensor Core 312 TFLOPS, 624 with sparsity "
         "(glennklockwood.com/garden/processors/A100)"),
    Peak("Orin", "Jetson AGX Orin 64GB (MAXN)", 42.5,
         "derived: Jetson AGX Orin technical brief gives the GPU 170 sparse INT8 TOPS; /2 dense, /2 FP16 "
         "(Ampere tensor cores run FP16 at half the INT8 rate). Orin NX/Nano are lower: pass --peak-tflops"),
)


def dense_fp16_peak(device_name: str) -> Peak | None:
    """Return the table entry for a CUDA device name, or None when the GPU is not in the table."""
    for peak in DENSE_FP16_PEAKS:
        if peak.match.lower() in device_name.lower():
            return peak
    return None


@dataclass(frozen=True)
class Settings:
    sizes: tuple[tuple[int, int], ...]  # camera frame sizes (H, W); the network uses multiples of 32
    iterations: int
    warmup: int
    channels_last: bool
    tensorrt: bool
    peak_tflops: float | None


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size must look like 375x1242 (HxW), got {text!r}") from err
    return h, w


def _fp16_module(torch, net, channels_last: bool):
    """uint8 NHWC RGB on the GPU -> road probability, with the network in FP16 (normalisation as exported)."""
    from fcn_road_seg.training.export import DeployableFCN

    norm_mean, norm_std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    wrapper = DeployableFCN(net, norm_mean, norm_std).cuda().eval()
    net.half()
    if channels_last:
        net.to(memory_format=torch.channels_last)
    scale, shift = wrapper.scale.view(1, 3, 1, 1).half(), wrapper.shift.view(1, 3, 1, 1).half()
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def forward(image):
        x = image.permute(0, 3, 1, 2).half().contiguous(memory_format=fmt) * scale + shift
        logits = net(x)
        return torch.sigmoid((logits[:, 1] - logits[:, 0]).float())

    return forward


def _time_cuda(torch, run, iterations: int, warmup: int) -> dict:
    """Per-call latency from CUDA events, and back-to-back throughput (batch 1) from wall time."""
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    lat = []
    for _ in range(iterations):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        lat.append(start.elapsed_time(end))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iterations):
        run()
    torch.cuda.synchronize()
    fps = iterations / (time.perf_counter() - t0)
    return {"latency_ms": summarize(lat), "throughput_fps": round(fps, 1)}


def _time_host(run, iterations: int, warmup: int) -> dict:
    for _ in range(warmup):
        run()
    lat = []
    t_all = time.perf_counter()
    for _ in range(iterations):
        t0 = time.perf_counter()
        run()
        lat.append((time.perf_counter() - t0) * 1e3)
    fps = iterations / (time.perf_counter() - t_all)
    return {"latency_ms": summarize(lat), "throughput_fps": round(fps, 1)}


def _measure_size(torch, size: tuple[int, int], settings: Settings) -> dict:
    from fcn_road_seg.training.model import FCN, FCNConfig, count_flops

    h, w = (-(-s // 32) * 32 for s in size)
    flops = count_flops(FCNConfig(), h, w)
    torch.manual_seed(0)
    net = FCN(FCNConfig()).cuda().eval()
    forward = _fp16_module(torch, net, settings.channels_last)
    image = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8, device="cuda")
    paths = {}
    with torch.inference_mode():
        paths["torch-eager"] = _time_cuda(torch, lambda: forward(image), settings.iterations, settings.warmup)
    # CUDA graph: warm up on a side stream, capture once, replay (torch.cuda.graphs recipe).
    static_in = image.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(side):
        for _ in range(3):
            forward(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        forward(static_in)
    paths["torch-cudagraph"] = _time_cuda(torch, graph.replay, settings.iterations, settings.warmup)
    del graph, net
    torch.cuda.empty_cache()
    if settings.tensorrt:
        paths["tensorrt"] = _tensorrt(size, settings)
    for result in paths.values():
        p50 = result.get("latency_ms", {}).get("p50")
        if p50:
            result["tflops_at_p50"] = round(flops / (p50 / 1e3) / 1e12, 2)
            result["tflops_at_throughput"] = round(flops * result["throughput_fps"] / 1e12, 2)
    return {"frame": f"{size[0]}x{size[1]}", "network": f"{h}x{w}", "gflop_per_frame": round(flops / 1e9, 1),
            "paths": paths}


def _tensorrt(size: tuple[int, int], settings: Settings) -> dict:
    import numpy as np

    from fcn_road_seg.backends import available_backends, open_backend
    from fcn_road_seg.errors import FcnRoadSegError

    if "tensorrt" not in available_backends():
        return {"skipped": "tensorrt/pycuda not installed"}
    h, w = (-(-s // 32) * 32 for s in size)
    try:
        backend = open_backend(full_fcn8s_onnx(h, w), "tensorrt", precision="fp16")
    except FcnRoadSegError as err:
        return {"skipped": f"TensorRT engine unavailable: {err}"}
    batch = np.random.default_rng(0).integers(0, 256, backend.contract.input_shape, dtype=np.uint8)
    try:
        result = _time_host(lambda: backend.infer(batch), settings.iterations, settings.warmup)
    finally:
        backend.close()
    result["note"] = "backend.infer host-to-host: includes the uint8 input and float32 output copies"
    result["engine"] = str(backend.path)
    return result


def run(settings: Settings) -> dict:
    import torch

    report = {"benchmark": "gpu", "machine": machine_info(), "settings": asdict(settings)}
    if not torch.cuda.is_available():
        report["skipped"] = "no CUDA device (torch.cuda.is_available() is False); run this on a GPU machine"
        return report
    name = torch.cuda.get_device_name(0)
    peak = dense_fp16_peak(name)
    peak_tflops = settings.peak_tflops or (peak.tflops if peak else None)
    report["gpu"] = {"name": name, "capability": list(torch.cuda.get_device_capability(0)),
                     "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                     "dense_fp16_peak_tflops": peak_tflops,
                     "peak_source": "--peak-tflops" if settings.peak_tflops else (asdict(peak) if peak else None)}
    torch.backends.cudnn.benchmark = True
    report["results"] = []
    for size in settings.sizes:
        entry = _measure_size(torch, size, settings)
        for result in entry["paths"].values():
            if peak_tflops and "tflops_at_throughput" in result:
                result["fraction_of_dense_peak"] = round(result["tflops_at_throughput"] / peak_tflops, 3)
        report["results"].append(entry)
    return report


def table(report: dict) -> list[list[str]]:
    rows = [["frame", "network", "path", "p50 ms", "fps (b=1)", "TFLOP/s", "of peak"]]
    for entry in report.get("results", []):
        for path, r in entry["paths"].items():
            if "skipped" in r:
                rows.append([entry["frame"], entry["network"], path, "-", "-", "-", r["skipped"][:40]])
                continue
            frac = r.get("fraction_of_dense_peak")
            rows.append([entry["frame"], entry["network"], path, f"{r['latency_ms']['p50']:.2f}",
                         f"{r['throughput_fps']:.1f}", f"{r['tflops_at_throughput']:.1f}",
                         f"{100 * frac:.1f}%" if frac is not None else "?"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_parse_size, nargs="+", default=[(375, 1242), (160, 576)],
                        help="camera frame sizes HxW (network input rounded up to multiples of 32)")
    parser.add_argument("--iterations", type=int, default=200, help="timed calls per path and size")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (cuDNN autotuning)")
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory format for PyTorch")
    parser.add_argument("--no-tensorrt", action="store_true", help="skip the TensorRT path")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="dense FP16 peak of this GPU if it is not in the table (or to override it)")
    args = parse_bench_args(parser, argv, {"iterations": 1, "warmup": 0})
    settings = Settings(tuple(args.sizes), args.iterations, args.warmup, not args.no_channels_last,
                        not args.no_tensorrt, args.peak_tflops)
    report = run(settings)
    if "skipped" in report:
        print(json.dumps({"benchmark": "gpu", "skipped": report["skipped"], "machine": report["machine"]}, indent=2))
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        return 0
    emit(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
