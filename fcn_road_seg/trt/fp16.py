"""A float16 copy of an exported road model, and how far its masks move from the float32 model's.

Used by ``check-trt`` (FP16 fidelity without a GPU) and by the TensorRT 11 build: TensorRT 11 networks are
strongly typed (no ``BuilderFlag.FP16``), so an FP16 engine is built from an FP16 ONNX. The copy keeps
the uint8 input, its Cast to float32 and the probability head in float32 (everything after the last
convolution: Gather/Sub, the calibration's Mul/Sub by constants, Sigmoid or Softmax), with Casts to and
from float16 around the float16 body (onnxconverter-common).

Imports only the core leaves (contract, images, preprocess), so the build side can use it.
"""
from __future__ import annotations

import warnings

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract import read_onnx_contract
from ..errors import BackendUnavailableError

__all__ = ["HEAD_OPS", "convert_to_fp16", "MaskAgreement", "mask_agreement"]

# Ops between the last convolution and the probability output: cheap, and kept in float32 so the
# probability is computed from float32 logits (the sigmoid's difference of two large logits loses most in FP16).
HEAD_OPS = frozenset({"Sigmoid", "Softmax", "LogSoftmax", "Sub", "Gather", "Slice", "Squeeze", "Reshape"})
# The calibration's affine ops (x 1/T, - b): part of the head when one operand is a constant.
AFFINE_OPS = frozenset({"Mul", "Div", "Add"})


def _float32_nodes(model) -> list[str]:
    """Names of nodes to keep in float32: the input's Cast (and layout ops on uint8) and the output head."""
    graph = model.graph
    uint8 = {i.name for i in graph.input}
    keep = []
    for node in graph.node:
        if node.input and node.input[0] in uint8 and node.op_type in ("Transpose", "Reshape", "Cast"):
            keep.append(node.name)
            if node.op_type != "Cast":
                uint8.add(node.output[0])
    producer = {out: node for node in graph.node for out in node.output}
    constants = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}

    def in_head(node) -> bool:
        if node.op_type in AFFINE_OPS:
            return any(name in constants for name in node.input)
        return node.op_type in HEAD_OPS

    todo = [o.name for o in graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is not None and in_head(node) and node.name not in keep:
            keep.append(node.name)
            todo.extend(node.input)
    return keep


def _restore_float32_outputs(half, original: dict[str, int]) -> None:
    """Undo the converter's Cast to float16 after a float32 node that writes a float32 graph output."""
    from onnx import TensorProto

    graph = half.graph
    for output in graph.output:
        producer = next((n for n in graph.node if output.name in n.output), None)
        to = next((a.i for a in producer.attribute if a.name == "to"), None) if producer is not None else None
        if producer is None or producer.op_type != "Cast" or to != TensorProto.FLOAT16:
            continue
        if original.get(output.name) != TensorProto.FLOAT:
            continue
        source = producer.input[0]
        graph.node.remove(producer)
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == source:
                    node.output[i] = output.name
        output.type.tensor_type.elem_type = TensorProto.FLOAT


def convert_to_fp16(model_path: str | Path, out_path: str | Path) -> Path:
    """Write a float16 copy of the model: uint8 in, its Cast and the probability head float32, the rest float16."""
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError as err:
        raise BackendUnavailableError(
            "converting the model to FP16 needs onnxconverter-common: pip install onnxconverter-common "
            "(or pip install 'fcn_road_seg[trt]')"
        ) from err
    import onnx

    model = onnx.load(str(model_path))
    nodes = [n for n in model.graph.node if not n.name]
    if nodes:
        raise ValueError(f"{model_path}: {len(nodes)} unnamed node(s); re-export with `fcn-road-seg export`")
    # one line per tiny weight clipped to FP16's range; the fidelity check measures the effect
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        half = convert_float_to_float16(model, keep_io_types=True, node_block_list=_float32_nodes(model))
    _restore_float32_outputs(half, {o.name: o.type.tensor_type.elem_type for o in model.graph.output})
    out_path = Path(out_path)
    onnx.save(half, str(out_path))
    return out_path


@dataclass(frozen=True)
class MaskAgreement:
    """FP16 vs FP32 masks at the network's resolution, ONNX Runtime on the CPU."""

    frames: int
    agreement: float  # fraction of pixels with the same mask value
    max_prob_diff: float

    def line(self) -> str:
        return (f"FP16 ONNX vs FP32 on {self.frames} frames at network size (ONNX Runtime CPU): mask agreement "
                f"{100 * self.agreement:.3f}%, max |dp| {self.max_prob_diff:.4f}")


def mask_agreement(fp32_path: str | Path, fp16_path: str | Path, images: list[Path]) -> MaskAgreement:
    """Run both models on ``images`` (preprocessed like the pipeline does) and compare their masks."""
    import onnxruntime as ort

    from ..preprocess import preprocess_files

    if not images:
        raise ValueError("the FP16 mask agreement needs at least one image")
    contract = read_onnx_contract(fp32_path)
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32_path, fp16_path)]
    same = total = 0
    max_diff = 0.0
    for _, batch in preprocess_files(images, contract):
        full, half = (s.run([contract.output_name], {contract.input_name: batch})[0] for s in sessions)
        threshold = contract.default_threshold
        same += int(np.count_nonzero((full >= threshold) == (half >= threshold)))
        total += full.size
        max_diff = max(max_diff, float(np.abs(full - half).max()))
    return MaskAgreement(frames=len(images), agreement=same / total, max_prob_diff=max_diff)
