"""``fcn-road-seg doctor``: check this install end to end, print the report, write it as JSON.

Steps: the environment (``environment``); the model (shipped or ``--model``) with ONNX Runtime on the bundled
samples (or ``--images``): per-frame sanity and latency; then, where TensorRT runs (TensorRT, pycuda, a GPU,
a builder that starts), the FP16 engine built or reused through the engine cache (``cached_engine``, the code
``build-engine`` uses) compared frame by frame with ONNX Runtime; elsewhere the FP16 ONNX copy on ONNX Runtime
CPU (the ``check-trt`` proxy) and the install line for this platform. Exit 0 when every check passes, 1 when
one fails (each failure named), 130 on Ctrl-C (no report written).
"""
from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import FcnRoadSegError, OutputError
from ..outputs import write_json
from ..wording import plural
from .compare import Frame, Measurement, compare, measure
from .environment import (cache_facts, gpu_facts, install_line, package_versions, platform_facts, tensorrt_facts,
                          writable_error)

__all__ = ["DoctorOptions", "REPORT_FORMAT", "run_doctor", "main"]

log = logging.getLogger(__name__)
REPORT_FORMAT = 1


@dataclass(frozen=True)
class DoctorOptions:
    model: Path | None = None  # default: the shipped model
    images: tuple[Path, ...] = ()  # default: the bundled samples
    json_path: Path | None = None
    repeat: int = 3  # timed passes over the frames (p50/p95 need more than one)
    require_tensorrt: bool = False


def _latency_line(measurement: Measurement) -> str:
    lat = measurement.latency_ms()
    pair = {k: f"p50 {lat[k]['p50']:.1f} ms, p95 {lat[k]['p95']:.1f} ms" for k in ("infer", "pipeline")}
    return (f"  latency over {plural(lat['infer']['n'], 'call')}: infer {pair['infer']}; "
            f"whole pipeline {pair['pipeline']}")


def _environment(report: dict) -> None:
    log.info("doctor: probing packages, GPU and TensorRT")
    report["platform"] = platform_facts()
    report["packages"], report["package_errors"] = package_versions()
    try:
        import onnxruntime

        report["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        report["onnxruntime_providers"] = []
    report["gpu"], report["tensorrt"], report["cache"] = gpu_facts(), tensorrt_facts(), cache_facts()
    p, g, t, c = report["platform"], report["gpu"], report["tensorrt"], report["cache"]
    machine = p["machine"] + (f", {p['jetson']}" if p["jetson"] else "")
    print(f"fcn-road-seg doctor {p['fcn_road_seg']}: {p['os']} ({machine}), Python {p['python']}, "
          f"ROS_DISTRO {p['ros_distro'] or '-'}")
    print("packages: " + ", ".join(f"{k} {v or '-'}" for k, v in report["packages"].items()))
    for name, err in report["package_errors"].items():
        print(f"  {name} is installed but does not import: {err}")
    print(f"ONNX Runtime providers: {', '.join(report['onnxruntime_providers']) or '-'}")
    if g["available"]:
        print(f"GPU: {g['name']} (compute capability {g['compute_capability']}, {g['memory_gib']} GiB), driver "
              f"{g['driver_version'] or '?'}, CUDA {g['cuda_driver_version'] or '?'} (from {', '.join(g['sources'])})")
    else:
        print(f"GPU: none usable ({g['reason']})")
    builder = t["builder"] or {}
    print(f"TensorRT: {t['version'] or 'not installed'}"
          + (f", builder {'works' if builder['works'] else 'FAILS'}" if builder else "")
          + (f" ({builder['dla_cores']} DLA cores)" if builder.get("dla_cores") else ""))
    how = "default; FCN_ROAD_SEG_CACHE moves it" if c["set_by"] == "default" else f"set by {c['set_by']}"
    print(f"engine cache: {c['folder']} ({how}): {'writable' if c['writable'] else 'NOT writable'}"
          + (f"; {c['reason']}" if c["reason"] else ""))


def _load_frames(options: DoctorOptions, report: dict) -> tuple[Path, list[Frame]]:
    from ..images import list_images, read_bgr
    from ..resources import default_model_path, samples_dir

    model = options.model or default_model_path()
    images = list_images(list(options.images) or [samples_dir()])
    report["frame_files"] = [str(path) for path in images]
    return model, [(path.name, read_bgr(path)) for path in images]


def _onnxruntime(model: Path, frames: list[Frame], options: DoctorOptions, report: dict) -> Measurement:
    from ..pipeline import RoadSegmenter

    log.info("doctor: ONNX Runtime on %d frames x %d passes", len(frames), options.repeat)
    with RoadSegmenter(model, backend="onnxruntime") as segmenter:
        c = segmenter.contract
        report["model"] = {"path": str(model), "variant": c.variant, "encoder": c.encoder,
                           "input": f"{c.input_width}x{c.input_height}", "threshold": segmenter.threshold}
        ref = measure(segmenter, frames, repeat=options.repeat, desc="onnxruntime")
    report["onnxruntime"] = ref.to_dict()
    print(f"model: {model} ({c.variant}, {c.encoder}, network {c.input_width}x{c.input_height} (W x H), "
          f"threshold {ref.threshold:g})")
    print(f"ONNX Runtime ({ref.device}) on {plural(len(frames), 'frame')}:")
    for (name, frame), f in zip(frames, ref.frames()):
        print(f"  {name} {frame.shape[1]}x{frame.shape[0]}: road {100 * f['road_fraction']:.1f}%, probability "
              f"{f['probability_min']:.3f}..{f['probability_max']:.3f}")
    print(_latency_line(ref))
    return ref


def _fp16_proxy(model: Path, frames: list[Frame], ref: Measurement, report: dict) -> str | None:
    """Run the FP16 ONNX copy on ONNX Runtime CPU against FP32: ``check-trt``'s proxy for an FP16 engine."""
    from ..errors import BackendUnavailableError
    from ..pipeline import RoadSegmenter
    from ..trt.fp16 import convert_to_fp16

    log.info("doctor: FP16 copy of the model on ONNX Runtime CPU (proxy for TensorRT FP16)")
    with tempfile.TemporaryDirectory(prefix="fcn_road_seg_doctor_") as tmp:
        try:
            half = convert_to_fp16(model, Path(tmp) / "model_fp16.onnx")
        except BackendUnavailableError as err:
            report["fp16_proxy"] = {"skipped": str(err)}
            print(f"FP16 proxy: skipped ({err})")
            return None
        with RoadSegmenter(half, backend="onnxruntime", device="cpu", threshold=ref.threshold) as segmenter:
            cand = measure(segmenter, frames, desc="fp16 onnx")
    comparison = compare(ref, cand, names=("onnxruntime", "fp16 onnx (onnxruntime cpu)"))
    report["fp16_proxy"] = {"comparison": comparison.to_dict(), "problems": cand.problems()}
    print(f"FP16 proxy (ONNX Runtime CPU, not a TensorRT measurement): {comparison.line()}")
    return comparison.failure() or next(iter(cand.problems()), None)


def _tensorrt(model: Path, frames: list[Frame], ref: Measurement, options: DoctorOptions, report: dict
              ) -> list[str]:
    """Build or reuse the FP16 engine (engine cache), run the frames, compare with ONNX Runtime."""
    from ..pipeline import RoadSegmenter
    from ..trt.engine import BuildOptions, cached_plan, plan_ready

    plan, _ = cached_plan(model, BuildOptions(precision="fp16"))  # where RoadSegmenter's cached_engine looks
    reused = plan_ready(plan)
    log.info("doctor: %s the TensorRT FP16 engine %s", "reusing" if reused else "building (minutes)", plan)
    t0 = time.perf_counter()
    try:
        segmenter = RoadSegmenter(model, backend="tensorrt", precision="fp16", threshold=ref.threshold)
    except FcnRoadSegError as err:
        report["tensorrt_run"] = {"engine": str(plan), "error": str(err)}
        print(f"TensorRT FP16: FAILED to build or load the engine: {err}")
        return [f"TensorRT FP16 engine: {err}"]
    open_s = time.perf_counter() - t0
    with segmenter:
        log.info("doctor: TensorRT FP16 on %d frames x %d passes", len(frames), options.repeat)
        cand = measure(segmenter, frames, repeat=options.repeat, desc="tensorrt fp16")
    comparison = compare(ref, cand, names=("onnxruntime", "tensorrt fp16"))
    report["tensorrt_run"] = {"engine": str(plan), "engine_reused": reused, "open_seconds": round(open_s, 2),
                              "measurement": cand.to_dict(), "comparison": comparison.to_dict()}
    print(f"TensorRT FP16 ({cand.device}), engine {plan} ({'reused' if reused else f'built in {open_s:.0f} s'}):")
    print(_latency_line(cand))
    print(f"  {comparison.line()}")
    return [x for x in [comparison.failure(), *cand.problems()] if x]


def _gpu_checks(model: Path, frames: list[Frame], ref: Measurement, options: DoctorOptions, report: dict
                ) -> list[str]:
    """Run the TensorRT comparison where TensorRT runs; elsewhere the FP16 proxy and, plainly, why not."""
    t, g = report["tensorrt"], report["gpu"]
    if t["available"]:
        report["fp16_proxy"] = {"skipped": "TensorRT ran: its FP16 engine is compared instead"}
        return _tensorrt(model, frames, ref, options, report)
    failures = [x for x in [_fp16_proxy(model, frames, ref, report)] if x]
    installed = report["packages"]["tensorrt"] is not None or "tensorrt" in report["package_errors"]
    line = install_line(report["platform"]["jetson"])
    report["tensorrt_run"] = {"skipped": t["reason"], "install": line}
    if installed and g["available"]:
        print(f"TensorRT: installed and a GPU is present, but it cannot run: {t['reason']}")
        failures.append(f"TensorRT cannot run on {g['name']}: {t['reason']}")
        return failures
    why = t["reason"] if not installed else g["reason"]
    print(f"TensorRT: cannot run here ({why}); only the ONNX Runtime checks ran")
    print(f"  for the TensorRT FP16 engine on an NVIDIA GPU install: {line}")
    if options.require_tensorrt:
        failures.append(f"--require-tensorrt: TensorRT cannot run here ({why}); install: {line}")
    return failures


def _check_json_path(path: Path) -> str | None:
    if path.is_dir():
        return f"{path} is a folder; give a file name, e.g. {path / 'doctor.json'}"
    return writable_error(path.parent)


def _write_json(path: Path, report: dict) -> str | None:
    try:
        write_json(path, report)
    except OutputError as err:
        cause = err.__cause__
        return f"{cause.strerror or cause}" if isinstance(cause, OSError) else str(err)
    return None


def run_doctor(options: DoctorOptions) -> int:
    """Run every check, print the report, write ``options.json_path``; 0 all passed, 1 a check or the write failed."""
    if options.repeat < 1:
        raise FcnRoadSegError(f"--repeat must be at least 1, got {options.repeat}")
    if options.json_path is not None:
        problem = _check_json_path(options.json_path)
        if problem:
            print(f"error: cannot write --json {options.json_path}: {problem}", file=sys.stderr)
            return 1
    report: dict = {"format": REPORT_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    failures: list[str] = []
    _environment(report)
    try:
        model, frames = _load_frames(options, report)
        ref = _onnxruntime(model, frames, options, report)
        failures += ref.problems()
        failures += _gpu_checks(model, frames, ref, options, report)
    except (FcnRoadSegError, FileNotFoundError, ValueError) as err:
        failures.append(str(err))
    report["result"] = {"ok": not failures, "failures": failures}
    print("result: all checks passed" if not failures else "result: FAILED\n" + "\n".join(f"  - {f}" for f in failures))
    if options.json_path is not None:
        problem = _write_json(options.json_path, report)
        if problem:
            print(f"error: cannot write --json {options.json_path}: {problem}", file=sys.stderr)
            return 1
        print(f"wrote {options.json_path} (keep it: it says what ran here)")
    return 0 if not failures else 1


def main(options: DoctorOptions) -> int:
    """``run_doctor`` with Ctrl-C turned into one line and exit status 130."""
    try:
        return run_doctor(options)
    except KeyboardInterrupt:
        print("doctor: interrupted (Ctrl-C); no report written", file=sys.stderr)
        return 130
