"""The facts a report about this machine needs: OS, Python, package versions, GPU, TensorRT, cache folder.

Every probe returns plain data (JSON-ready) and never raises for a missing or broken package: what failed is
recorded with the reason. The GPU is read through pycuda where it imports and through ``nvidia-smi`` where
it is on PATH; TensorRT through the same ``import_tensorrt``, ``CudaDevice`` and logger the engine builder uses.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .. import __version__
from ..errors import BackendUnavailableError
from ..outputs import existing_ancestor, probe_error
from ..trt.plan import cache_dir, cache_dir_source

__all__ = ["PACKAGES", "DESKTOP_INSTALL", "JETSON_INSTALL", "jetson_model", "install_line", "platform_facts",
           "package_versions", "gpu_facts", "tensorrt_facts", "cache_facts", "writable_error"]

# Report name -> import name. openvino is listed where present (another backend may use it); nothing needs it.
PACKAGES = {"numpy": "numpy", "opencv": "cv2", "onnxruntime": "onnxruntime", "onnx": "onnx",
            "onnxconverter-common": "onnxconverter_common", "rclpy": "rclpy", "tensorrt": "tensorrt",
            "pycuda": "pycuda", "openvino": "openvino"}
DESKTOP_INSTALL = "pip install 'fcn_road_seg[tensorrt]'"
JETSON_INSTALL = ("TensorRT comes with JetPack: sudo apt install python3-libnvinfer; pycuda builds from source: "
                  "export PATH=/usr/local/cuda/bin:$PATH && pip install 'pycuda>=2024.1.1'")


def jetson_model() -> str | None:
    """Return the Jetson board's name (device tree), "Jetson (L4T)" where only the L4T release file says so, or None."""
    try:
        model = Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    except OSError:
        model = ""
    if "jetson" in model.lower():
        return model
    return "Jetson (L4T)" if Path("/etc/nv_tegra_release").is_file() else None


def install_line(jetson: str | None) -> str:
    """How to get TensorRT and pycuda on this platform."""
    return JETSON_INSTALL if jetson else DESKTOP_INSTALL


def platform_facts() -> dict:
    return {"os": platform.platform(), "machine": platform.machine(), "jetson": jetson_model(),
            "python": platform.python_version(), "python_executable": sys.executable,
            "fcn_road_seg": __version__, "ros_distro": os.environ.get("ROS_DISTRO")}


def _distribution_version(module_name: str) -> str:
    """Version of the installed distribution(s) that provide ``module_name`` (for modules without __version__)."""
    dists = importlib.metadata.packages_distributions().get(module_name, [])
    found = {d: importlib.metadata.version(d) for d in dict.fromkeys(dists)}
    if len(set(found.values())) == 1:
        return next(iter(found.values()))
    return " / ".join(f"{v} ({d})" for d, v in found.items()) or "unknown"


def package_versions() -> tuple[dict[str, str | None], dict[str, str]]:
    """(name -> version, None where not installed), (name -> why it is installed but does not import)."""
    versions: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for name, module_name in PACKAGES.items():
        versions[name] = None
        if importlib.util.find_spec(module_name) is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # a broken install: missing shared libraries (OSError), ABI errors
            errors[name] = f"{type(err).__name__}: {err}"
            continue
        version = getattr(module, "__version__", None)
        versions[name] = str(version) if version else _distribution_version(module_name)
    return versions, errors


def _cuda_version(encoded: int) -> str:
    """CUDA's integer version (12020) as text (12.2)."""
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


def _nvidia_smi(facts: dict) -> None:
    """Fill what pycuda did not give from ``nvidia-smi`` (absent on most Jetsons)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return
    fields = ("name", "compute_cap", "driver_version", "memory.total")
    try:
        out = subprocess.run([smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode != 0:  # drivers before 510 have no compute_cap field
            fields = ("name", "driver_version", "memory.total")
            out = subprocess.run([smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=20)
        header = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        facts["nvidia_smi_error"] = str(err)
        return
    rows = [line.split(", ") for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not rows:
        facts["nvidia_smi_error"] = (out.stderr or out.stdout).strip()[:300] or f"exit status {out.returncode}"
        return
    facts["sources"].append("nvidia-smi")
    row = dict(zip(fields, rows[0]))
    facts["count"] = facts["count"] or len(rows)
    facts["name"] = facts["name"] or row.get("name")
    facts["compute_capability"] = facts["compute_capability"] or row.get("compute_cap")
    facts["driver_version"] = row.get("driver_version")
    if facts["memory_gib"] is None and row.get("memory.total", "").strip().isdigit():
        facts["memory_gib"] = round(int(row["memory.total"]) / 1024, 1)
    match = re.search(r"CUDA Version:\s*([\d.]+)", header)
    if match:
        facts["cuda_driver_version"] = facts["cuda_driver_version"] or match.group(1)


def _pycuda_versions(cuda, facts: dict) -> None:
    """Return the newest CUDA the driver runs (``cuDriverGetVersion``) and the CUDA pycuda was built with."""
    try:
        facts["cuda_driver_version"] = _cuda_version(cuda.get_driver_version())
        facts["pycuda_cuda_version"] = ".".join(map(str, cuda.get_version()))
    except Exception as err:  # a driver error; the GPU's name and capability above still stand
        facts["cuda_version_error"] = f"{type(err).__name__}: {err}"


def gpu_facts() -> dict:
    """GPU 0's name, compute capability and memory, driver and CUDA versions; ``available`` and why not."""
    from ..trt.cuda_io import import_pycuda

    facts = {"available": False, "count": 0, "name": None, "compute_capability": None, "memory_gib": None,
             "driver_version": None, "cuda_driver_version": None, "pycuda_cuda_version": None, "sources": [],
             "reason": None}
    notes = []
    try:
        if importlib.util.find_spec("pycuda") is None:
            raise BackendUnavailableError("pycuda is not installed")
        cuda = import_pycuda()
        facts["count"] = cuda.Device.count()
        if facts["count"]:
            device = cuda.Device(0)
            facts["name"] = device.name()
            facts["compute_capability"] = ".".join(map(str, device.compute_capability()))
            facts["memory_gib"] = round(device.total_memory() / 2**30, 1)
        facts["sources"].append("pycuda")
        if not facts["count"]:
            notes.append("pycuda sees no CUDA device")
        _pycuda_versions(cuda, facts)
    except BackendUnavailableError as err:
        notes.append(str(err))
    except Exception as err:  # pycuda's driver errors
        notes.append(f"pycuda cannot query the GPU ({type(err).__name__}: {err})")
    _nvidia_smi(facts)
    if "nvidia-smi" not in facts["sources"]:
        notes.append(facts.get("nvidia_smi_error") or "nvidia-smi is not on PATH")
    facts["available"] = bool(facts["count"] and facts["name"])
    if not facts["available"]:
        facts["reason"] = "no CUDA device found: " + "; ".join(notes)
    return facts


def tensorrt_facts() -> dict:
    """TensorRT's version and whether its builder starts on GPU 0 (through the engine builder's own imports)."""
    from ..trt.cuda_io import CudaDevice
    from ..trt.engine import import_tensorrt, trt_logger

    facts = {"available": False, "version": None, "builder": None, "reason": None}
    if importlib.util.find_spec("tensorrt") is None:
        facts["reason"] = "TensorRT is not installed"
        return facts
    try:
        trt = import_tensorrt()
        facts["version"] = trt.__version__
        device = CudaDevice(0)
    except BackendUnavailableError as err:
        facts["reason"] = str(err)
        return facts
    try:
        with device.active():
            builder = trt.Builder(trt_logger(trt))
            config = builder.create_builder_config()
            facts["builder"] = {"works": builder is not None and config is not None,
                                "dla_cores": int(builder.num_DLA_cores)}
            del config, builder
    except Exception as err:  # TensorRT's RuntimeError/TypeError, pycuda's driver errors
        facts["builder"] = {"works": False, "error": f"{type(err).__name__}: {err}"}
    facts["available"] = facts["builder"]["works"]
    if not facts["available"]:
        facts["reason"] = f"TensorRT {trt.__version__}'s builder does not start on {device.info.name}: " \
                          f"{facts['builder'].get('error', 'Builder or builder config is None')}"
    return facts


def writable_error(folder: Path) -> str | None:
    """None if a file can be created in ``folder`` (tried: a temporary file, removed again), else why not."""
    if not folder.is_dir():
        return f"{folder} is not a folder" if folder.exists() else f"folder {folder} does not exist"
    err = probe_error(folder)
    return f"cannot create files in {folder} ({err.strerror or err})" if err is not None else None


def cache_facts() -> dict:
    """List the engine cache folder (``trt.plan.cache_dir``), what sets it, and whether engines can be written there."""
    folder = cache_dir()
    facts = {"folder": str(folder), "set_by": cache_dir_source(), "exists": folder.is_dir(), "writable": False,
             "reason": None}
    probe = existing_ancestor(folder)  # not made yet: the first build creates it
    error = writable_error(probe)
    if error is None:
        facts["writable"] = True
        if probe != folder:
            facts["reason"] = f"does not exist yet; the first engine build creates it under {probe}"
    else:
        facts["reason"] = f"{error}; set FCN_ROAD_SEG_CACHE to a writable folder"
    return facts
