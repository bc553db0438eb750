"""ONNX Runtime backend: CPU by default, CUDA where the GPU build of onnxruntime is installed."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..contract import ModelContract, read_onnx_contract
from ..errors import BackendUnavailableError, ModelError

__all__ = ["OnnxRuntimeBackend"]

log = logging.getLogger(__name__)


class OnnxRuntimeBackend:
    """Run an exported road model with ONNX Runtime."""

    name = "onnxruntime"
    selection = "opened directly (not through open_backend)"
    fallback = None

    def __init__(self, path: str | Path, *, device: str = "auto", threads: int = 0, spin_wait: bool = False) -> None:
        """``device``: ``auto`` (CUDA if available, else CPU), ``cpu`` or ``cuda``; ``threads``: 0 = ORT's choice.

        ``spin_wait``: let ORT's worker threads busy-wait between runs. Off by default: on a small shared
        CPU (a robot, the node's own ROS threads) spinning threads steal the cores the next frame needs.
        """
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailableError("onnxruntime is not installed: pip install onnxruntime") from err
        self.path = Path(path)
        self.contract: ModelContract = read_onnx_contract(self.path)
        present = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in present:
            raise BackendUnavailableError(
                "device 'cuda' asked for but this onnxruntime has no CUDA provider; "
                "install onnxruntime-gpu or use device 'cpu'"
            )
        use_cuda = device in ("auto", "cuda") and "CUDAExecutionProvider" in present
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as err:
            raise ModelError(f"ONNX Runtime cannot load {self.path}: {err}") from err
        self.device = "cuda" if use_cuda else "cpu"
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.contract.check_graph(self.path, [i.name for i in inputs], [o.name for o in outputs], inputs[0].shape)
        log.info("onnxruntime %s on %s: %s", ort.__version__, self.device, self.path.name)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.contract.output_name], {self.contract.input_name: batch})[0]

    def close(self) -> None:
        self.session = None
