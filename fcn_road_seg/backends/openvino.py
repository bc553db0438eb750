"""OpenVINO backend: Intel's CPU runtime (also runs on AMD and ARM CPUs), reading the .onnx directly.

The precision is chosen explicitly, never left to the plugin (whose default on a CPU with bf16 units is bf16):
``f32`` computes what ONNX Runtime computes; ``bf16`` runs the float layers in bfloat16 where the CPU has
bf16 units (AVX512-BF16, AMX); an INT8 QDQ file (`fcn-road-seg quantize`) runs its quantized convs in int8
and its float ends at the hint.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..contract import ModelContract, read_onnx_contract
from ..errors import BackendUnavailableError, ModelError

__all__ = ["OpenVinoBackend", "PRECISION_HINTS"]

log = logging.getLogger(__name__)

PRECISION_HINTS = ("f32", "bf16")


class OpenVinoBackend:
    """Run an exported road model with OpenVINO on the CPU."""

    name = "openvino"
    selection = "opened directly (not through open_backend)"
    fallback = None

    def __init__(self, path: str | Path, *, precision: str = "f32", threads: int = 0) -> None:
        """``precision``: the inference precision hint for float layers, ``f32`` or ``bf16``.

        ``threads``: 0 = OpenVINO's choice (one per physical core).
        """
        if precision not in PRECISION_HINTS:
            raise ValueError(f"OpenVINO precision must be one of {', '.join(PRECISION_HINTS)}, got {precision!r}")
        try:
            import openvino as ov
        except ImportError as err:
            raise BackendUnavailableError("openvino is not installed: pip install openvino") from err
        self.path = Path(path)
        self.contract: ModelContract = read_onnx_contract(self.path)
        core = ov.Core()
        if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise BackendUnavailableError(
                "precision bf16 asked for but this CPU has no bf16 units (AVX512-BF16 or AMX); use f32 or the "
                "INT8 model")
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            model = core.read_model(str(self.path))
            compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as err:
            raise ModelError(f"OpenVINO cannot load {self.path}: {str(err).splitlines()[0]}") from err
        inputs = compiled.inputs  # infer() reads output 0: the probability must be one of its names
        self.contract.check_graph(self.path, [i.get_any_name() for i in inputs],
                                  sorted(compiled.outputs[0].get_names()), inputs[0].get_shape())
        self._request = compiled.create_infer_request()
        self.precision = precision
        self.device = "cpu"
        log.info("openvino %s on CPU (%s hint): %s", ov.__version__, precision, self.path.name)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._request.infer({0: batch})
        return self._request.get_output_tensor(0).data.copy()

    def close(self) -> None:
        self._request = None
