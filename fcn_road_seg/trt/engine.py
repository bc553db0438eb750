"""ONNX -> TensorRT plan (FP16 by default), with a JSON sidecar, and the per-GPU engine cache.

``fcn-road-seg build-engine MODEL.onnx -o ENGINE.plan`` builds one plan; ``cached_engine`` builds once per
(model hash, GPU, TensorRT version, precision) under ``~/.cache/fcn_road_seg/engines`` and later only
returns the path. One build path for TensorRT 8.6, 10.x and 11.x, decided by the running major version.
API facts (Python bindings ``python/src/infer/pyCore.cpp`` of github.com/NVIDIA/TensorRT, branches
release/8.6, release/10.15, release/11.1; migration guide docs.nvidia.com/deeplearning/tensorrt/latest/api/
migration/tensorrt-10x-to-11x-python-api-reference.html):

- Network creation: ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is required on 8.6, deprecated and
  ignored on 10.x, gone on 11.x (whose only typing flag, ``STRONGLY_TYPED``, is "always enabled"). We pass
  it only below 10.
- Precision: 8.6 and 10.x networks are weakly typed: ``BuilderFlag.FP16`` lets the builder pick FP16
  kernels, ``BuilderFlag.INT8`` with ``config.int8_calibrator`` (an ``IInt8EntropyCalibrator2``) and
  ``config.set_calibration_profile`` calibrates INT8 (deprecated since 10.1, still present in 10.15).
  11.x removed ``BuilderFlag.FP16/INT8``, ``int8_calibrator``, ``set_calibration_profile`` and
  ``platform_has_fast_fp16/int8``: networks are strongly typed, so FP16 means an FP16 ONNX. We convert the
  model with ``fp16.convert_to_fp16`` (uint8 input, its Cast and the probability head kept float32), log its
  mask agreement with the FP32 model on the bundled samples, and parse that. INT8 on 11.x is refused before
  anything starts: it needs a quantized ONNX (Q/DQ nodes, e.g. from NVIDIA ModelOpt).
- ``builder.platform_has_fast_fp16/int8`` (deprecated in 10.5, removed in 11) are read only where present.
- ``BuilderFlag.TF32`` exists in all three; ``--fp32`` clears it, so FP32 really is FP32.
- ``IProgressMonitor`` / ``config.progress_monitor`` exist in the 9.x, 10.x and 11.x bindings, not in 8.6;
  8.6 gets a log line per phase.
- Timing cache (``timing_cache.py``, the same calls in all three): the cache object is kept until parser,
  network and builder are released (NvInfer.h 10.16/11.x: it must outlive every builder that used it);
  nothing is serialised when no cache is attached.

Every TensorRT or pycuda failure becomes a ``TensorRTError`` (or ``BackendUnavailableError`` where
TensorRT/pycuda/CUDA is missing) whose message says what to do. TensorRT and pycuda are imported on use.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from ..contract import ModelContract, file_sha256, read_onnx_contract
from ..errors import (BackendUnavailableError, FcnRoadSegError, InputImageError, ModelError, OutputError,
                      TensorRTError)
from ..outputs import write_bytes
from .calibration import calibration_cache_key, calibration_images, entropy_calibrator
from .callbacks import progress_monitor, trt_logger
from .timing_cache import attach_timing_cache, save_timing_cache
from .plan import (
    DLA_BOARDS,
    PRECISIONS,
    EngineSidecar,
    GpuInfo,
    cache_folder_error,
    cached_plan_path,
    exclusive_lock,
    sidecar_path,
    timing_cache_path,
    write_sidecar,
)

__all__ = [
    "BuildOptions",
    "trt_major",
    "DEFAULT_WORKSPACE_MIB",
    "INSTALL_HINT",
    "import_tensorrt",
    "build_engine",
    "cached_engine",
    "cached_plan",
    "plan_ready",
]

log = logging.getLogger(__name__)

# 1 GiB: enough for FCN-8s tactics, and leaves room for the model, ROS and the camera on an 8 GB Jetson.
DEFAULT_WORKSPACE_MIB = 1024
INSTALL_HINT = (
    "on Jetson TensorRT comes with JetPack (python3-libnvinfer) and pycuda is `pip install 'pycuda>=2024.1.1'` "
    "with the CUDA toolkit on PATH (export PATH=/usr/local/cuda/bin:$PATH); on a desktop with an NVIDIA driver "
    "`pip install tensorrt pycuda` (or pip install 'fcn_road_seg[tensorrt]'); see docs/tensorrt.md"
)
QDQ_REFUSED = (
    "{path} is an INT8 (Q/DQ) copy written by `fcn-road-seg quantize` for the CPU runtimes; build-engine does "
    "not build explicit-quantization engines (docs/tensorrt.md, 'INT8'): build from {source} instead (FP16, "
    "or --int8 with --calib on TensorRT 8.6/10.x)"
)
INT8_ON_11 = (
    "INT8 engines need TensorRT 8.6 or 10.x: TensorRT {version} removed implicit INT8 calibration "
    "(BuilderFlag.INT8, IInt8EntropyCalibrator2). Quantize the ONNX instead (Q/DQ nodes, e.g. NVIDIA ModelOpt's "
    "`modelopt.onnx.quantization.quantize(MODEL.onnx, quantize_mode='int8', calibration_data=..., "
    "output_path=...)`) and build that with --fp32 (its Q/DQ nodes decide the precision), or build FP16 (the default)"
)


def import_tensorrt():
    """``tensorrt`` module, or BackendUnavailableError saying what to install."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailableError(f"TensorRT is not installed ({err}): {INSTALL_HINT}") from err
    except OSError as err:  # the wheel is there but its CUDA/TensorRT libraries do not load
        raise BackendUnavailableError(
            f"TensorRT is installed but cannot load ({err}): check the NVIDIA driver (nvidia-smi) and that "
            f"TensorRT matches the CUDA version; {INSTALL_HINT}"
        ) from err
    return trt


def trt_major(trt) -> int:
    """Return the running TensorRT's major version (8, 10, 11): it decides the build path."""
    return int(trt.__version__.split(".")[0])


@dataclass(frozen=True)
class BuildOptions:
    """How to build a plan."""

    precision: str = "fp16"
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    dla_core: int | None = None
    calib_dir: Path | None = None  # images for INT8 calibration
    calib_max_images: int = 500
    calib_cache: Path | None = None  # default: <plan>.calib
    timing_cache: Path | None = None  # default: per GPU + TensorRT version in the cache folder
    device_index: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.workspace_mib < 64:
            raise ValueError(f"--workspace must be at least 64 MiB, got {self.workspace_mib}")
        if self.precision == "int8" and self.calib_dir is None:
            raise ValueError("INT8 needs calibration images: pass --calib DIR (a few hundred frames like the camera's)")
        if self.dla_core is not None and (self.dla_core < 0 or self.precision == "fp32"):
            raise ValueError("--dla needs a core index >= 0 and FP16 or INT8 (DLA has no FP32 mode)")


def current_gpu(device_index: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device_index`` (via pycuda)."""
    from .cuda_io import CudaDevice

    return CudaDevice(device_index).info


def build_engine(onnx_path: str | Path, plan_path: str | Path, options: BuildOptions | None = None) -> Path:
    """Parse ``onnx_path``, build a plan with ``options``, write it and its sidecar atomically."""
    from .cuda_io import CudaDevice

    contract = read_onnx_contract(onnx_path)
    if contract.precision == "int8":
        source = contract.quantization.get("source", "the float model")
        raise TensorRTError(QDQ_REFUSED.format(path=onnx_path, source=source))
    trt = import_tensorrt()
    options = options or BuildOptions()
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if options.precision == "int8" and trt_major(trt) >= 11:
        raise TensorRTError(INT8_ON_11.format(version=trt.__version__))
    if contract.contract_version < 2:
        raise TensorRTError(
            f"{onnx_path} has model contract version {contract.contract_version}: its graph transposes the uint8 "
            "input before casting it, which no TensorRT parses; re-export it with `fcn-road-seg export` "
            "(contract version 2 casts first; `fcn-road-seg check-trt` shows the rule)"
        )
    calib = calibration_images(options.calib_dir, options.calib_max_images) if options.precision == "int8" else []
    onnx_sha256 = file_sha256(onnx_path)
    logger = trt_logger(trt)
    device = CudaDevice(options.device_index)
    job = _BuildJob(onnx_path, plan_path, contract, options, device.info, calib, onnx_sha256)
    try:
        with device.active():
            plan = _build(trt, logger, job)
    except FcnRoadSegError:
        raise
    except Exception as err:  # TensorRT raises RuntimeError/TypeError, pycuda its driver errors
        raise TensorRTError(
            f"TensorRT {trt.__version__} failed while building from {onnx_path} ({type(err).__name__}: {err}); "
            "see the TensorRT log above, run `fcn-road-seg check-trt` on the model, and retry with -v"
        ) from err
    sidecar = EngineSidecar(
        contract=contract,
        tensorrt_version=trt.__version__,
        gpu=device.info,
        onnx_sha256=onnx_sha256,
        precision=options.precision,
        build_date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        workspace_mib=options.workspace_mib,
        dla_core=options.dla_core,
    )
    try:
        write_sidecar(plan_path, sidecar)  # sidecar first: whoever sees the plan also finds its sidecar
        write_bytes(plan_path, plan)
    except OutputError as err:
        raise cache_folder_error(plan_path.parent, err.__cause__ or err, "write the engine to") from err
    log.info("wrote %s (%.1f MB) and %s", plan_path, len(plan) / 1e6, sidecar_path(plan_path).name)
    return plan_path


def _phase(name: str, t0: float) -> float:
    now = time.perf_counter()
    log.info("%s done (%.1f s)", name, now - t0)
    return now


def _fp16_onnx_for_strong_typing(onnx_path: Path, tmp: Path) -> Path:
    """TensorRT >= 11: the FP16 ONNX to parse, with its mask agreement on the bundled samples logged."""
    from ..images import list_images
    from ..resources import samples_dir
    from .fp16 import convert_to_fp16, mask_agreement

    half = convert_to_fp16(onnx_path, tmp / f"{onnx_path.stem}_fp16.onnx")
    try:
        images = list_images([samples_dir()])
    except (FileNotFoundError, InputImageError) as err:
        log.warning("FP16 ONNX written, but its masks were not compared with FP32 (%s); run "
                    "`fcn-road-seg check-trt %s`", err, onnx_path)
        return half
    log.info("TensorRT >= 11 is strongly typed, so FP16 is built from an FP16 copy of the model: %s",
             mask_agreement(onnx_path, half, images).line())
    return half


def _parse(trt, builder, logger, onnx_path: Path):
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
                                     if trt_major(trt) < 10 else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        for err in errors:
            log.error("ONNX parser: %s", err)
        raise TensorRTError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path}: {'; '.join(errors) or 'unknown error'}; run "
            "`fcn-road-seg check-trt MODEL.onnx` (it names the node, the rule and the fix) and re-export"
        )
    return network, parser  # the parser owns weights the network refers to: keep it alive until the build


@dataclass(frozen=True)
class _BuildJob:
    """What one build reads: the model, where the plan goes, the options and the GPU."""

    onnx_path: Path
    plan_path: Path
    contract: ModelContract
    options: BuildOptions
    gpu: GpuInfo
    calib: list[Path]
    onnx_sha256: str


def _set_precision(trt, builder, config, job: _BuildJob, profile):
    """Weakly typed builds (< 11) set FP16/INT8 flags; returns the INT8 calibrator to free, if any."""
    options, gpu = job.options, job.gpu
    if options.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32, not TF32 tensor-core math
        return None
    if trt_major(trt) >= 11:
        return None  # strongly typed: the FP16 ONNX decides (INT8 was refused before the build)
    if not getattr(builder, "platform_has_fast_fp16", True):
        raise TensorRTError(f"{gpu.name} has no fast FP16; build with --fp32 (or precision fp32)")
    config.set_flag(trt.BuilderFlag.FP16)  # INT8 builds fall back to FP16 (not FP32) where INT8 is slower
    if options.precision != "int8":
        return None
    if not getattr(builder, "platform_has_fast_int8", True):
        raise TensorRTError(f"{gpu.name} has no fast INT8; build with FP16 (the default)")
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_calibration_profile(profile)
    cache = options.calib_cache or job.plan_path.with_name(job.plan_path.name + ".calib")
    calibrator = entropy_calibrator(trt, job.calib, job.contract, cache,
                                    calibration_cache_key(job.onnx_sha256, job.contract))
    config.int8_calibrator = calibrator
    return calibrator


def _build(trt, logger, job: _BuildJob) -> bytes:
    import tempfile

    t0 = time.perf_counter()
    timing_path = job.options.timing_cache or timing_cache_path(job.gpu, trt.__version__)
    with tempfile.TemporaryDirectory(prefix="fcn_road_seg_trt_") as tmp:
        source = job.onnx_path
        if trt_major(trt) >= 11 and job.options.precision == "fp16":
            source = _fp16_onnx_for_strong_typing(job.onnx_path, Path(tmp))
        builder = trt.Builder(logger)
        network = parser = timing = None
        try:
            log.info("parsing %s with TensorRT %s on %s (%s)", source, trt.__version__, job.gpu.name, job.gpu.sm)
            network, parser = _parse(trt, builder, logger, source)
            t = _phase("parse", t0)
            _check_network(trt, network, job.contract, job.onnx_path)
            plan, timing = _configure_and_build(trt, builder, network, job, timing_path, t)
        finally:
            # The parser owns weights the network refers to; the timing cache must outlive every builder that
            # used it (NvInfer.h, TensorRT 10.16 and 11.x): release parser, network and builder first.
            del parser, network, builder
        save_timing_cache(timing, timing_path)
        return plan


def _configure_and_build(trt, builder, network, job: _BuildJob, timing_path: Path, t: float):
    """Configure the builder and build the plan; return (plan bytes, the attached ITimingCache or None)."""
    options = job.options
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.dla_core is not None:
        cores = builder.num_DLA_cores
        if options.dla_core >= cores:
            raise TensorRTError(
                f"--dla {options.dla_core} asked for but this device has {cores} DLA core(s) ({DLA_BOARDS}); "
                "omit --dla to run on the GPU"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU

    shape = tuple(job.contract.input_shape)
    profile = builder.create_optimization_profile()
    profile.set_shape(job.contract.input_name, shape, shape, shape)  # static: min = opt = max
    config.add_optimization_profile(profile)
    calibrator = _set_precision(trt, builder, config, job, profile)

    timing = attach_timing_cache(config, timing_path)
    monitor = progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    else:
        log.info("building %s engine (workspace %d MiB%s); this takes minutes on a Jetson, progress is "
                 "logged per phase", options.precision.upper(), options.workspace_mib,
                 f", DLA core {options.dla_core}" if options.dla_core is not None else "")
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if calibrator is not None:
        calibrator.raise_failure()
    if serialized is None:
        raise TensorRTError(
            f"TensorRT could not build an engine from {job.onnx_path} (see the TensorRT errors above); if it ran "
            f"out of memory, close other GPU programs or lower --workspace (now {options.workspace_mib} MiB), or "
            "build on a larger device of the same model and TensorRT version"
        )
    _phase("build", t)
    return bytes(serialized), timing


def _check_network(trt, network, contract: ModelContract, onnx_path: Path) -> None:
    """Check the parsed network has the contract's single static uint8 input and float32 output."""
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise ModelError(f"{onnx_path}: expected 1 input and 1 output, TensorRT sees "
                         f"{network.num_inputs} and {network.num_outputs}; re-export the model")
    inp, out = network.get_input(0), network.get_output(0)
    wrong_input = inp.name != contract.input_name or tuple(inp.shape) != tuple(contract.input_shape)
    if wrong_input or inp.dtype != trt.DataType.UINT8:
        raise ModelError(
            f"{onnx_path}: TensorRT input {inp.name} {tuple(inp.shape)} {inp.dtype} differs from the contract's "
            f"{contract.input_name} {contract.input_shape} uint8; re-export with `fcn-road-seg export`"
        )
    if out.name != contract.output_name or out.dtype != trt.DataType.FLOAT:
        raise ModelError(f"{onnx_path}: TensorRT output {out.name} {out.dtype} differs from the contract's "
                         f"{contract.output_name} float32; re-export with `fcn-road-seg export`")


def cached_plan(onnx_path: Path, options: BuildOptions, cache_root: Path | None = None) -> tuple[Path, GpuInfo]:
    """Return where ``cached_engine`` keeps the plan of ``onnx_path`` built with ``options`` here, and the GPU.

    The key is the model's hash, this GPU, the TensorRT version and the precision.
    """
    gpu = current_gpu(options.device_index)
    plan = cached_plan_path(file_sha256(onnx_path), gpu, import_tensorrt().__version__, options.precision, cache_root)
    return plan, gpu


def plan_ready(plan: Path) -> bool:
    """Return whether a cached plan is complete: the plan and its sidecar (written last) are both there."""
    return plan.is_file() and sidecar_path(plan).is_file()


def cached_engine(onnx_path: str | Path, options: BuildOptions | None = None, *, cache_root: Path | None = None
                  ) -> Path:
    """Return the cached plan for ``onnx_path`` on this GPU and TensorRT version, built on first use.

    A lock file serialises concurrent starts: the first builds, the others wait and then reuse the plan.
    """
    trt = import_tensorrt()
    options = options or BuildOptions()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"model file not found: {onnx_path}")
    plan, gpu = cached_plan(onnx_path, options, cache_root)
    if options.timing_cache is None:
        options = replace(options, timing_cache=timing_cache_path(gpu, trt.__version__, cache_root))
    with exclusive_lock(plan):
        if plan_ready(plan):
            log.info("engine cache hit: %s", plan)
            return plan
        log.info("engine cache miss: building %s for %s (TensorRT %s) -> %s; later starts reuse it",
                 options.precision.upper(), gpu.name, trt.__version__, plan)
        return build_engine(onnx_path, plan, options)
