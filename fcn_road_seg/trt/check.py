"""Checks that a model will build and stay faithful as a TensorRT FP16 engine, runnable without TensorRT.

1. Parser rules, per target TensorRT release (``data/trt_onnx_ops.json``, with the source of each rule):
   every operator in the parser's supported list and its input type in that operator's supported types;
   uint8 only as a network input/output, and every consumer of a uint8 input a Cast; opset within the
   documented range; IR version no newer than the parser's onnx library. Each failure names the node,
   the rule and the fix.
2. Shapes: every tensor in the graph has a static shape, and input/output match the contract.
3. FP16 fidelity: the model converted to float16 (``fp16.convert_to_fp16``, the conversion the TensorRT 11
   build uses) and run with ONNX Runtime on the CPU gives the same road mask as the FP32 model on
   real frames, through the same RoadSegmenter path the product uses.
4. FP16 range: the largest |activation| of the FP32 model on those frames stays below float16's maximum.

``fcn-road-seg check-trt MODEL.onnx`` prints the report; tests call the same functions.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..contract import read_onnx_contract
from ..preprocess import preprocess_files
from .fp16 import convert_to_fp16

__all__ = [
    "FP16_MAX",
    "MIN_MASK_AGREEMENT",
    "RULES",
    "OperatorReport",
    "FidelityReport",
    "RangeReport",
    "supported_operators",
    "check_operators",
    "convert_to_fp16",
    "fp16_fidelity",
    "activation_range",
    "run_checks",
]

log = logging.getLogger(__name__)

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
MIN_MASK_AGREEMENT = 0.995
OPS_FILE = "trt_onnx_ops.json"


def supported_operators() -> dict:
    """Load the parser support table shipped with the package.

    It holds targets -> operators and types, opset/IR limits, sources.
    """
    return json.loads(resources.files(__package__).joinpath("data", OPS_FILE).read_text())


# ONNX element types by the names operators.md uses.
_TYPE_NAMES = {"FLOAT": "FP32", "FLOAT16": "FP16", "BFLOAT16": "BF16", "FLOAT8E4M3FN": "FP8", "FLOAT4E2M1": "FP4"}
RULES = (
    "opset within the parser's documented range",
    "IR version no newer than the parser's onnx library",
    "every operator in the parser's supported list",
    "every operator's input type in its supported types",
    "uint8 only as a network input or output",
    "every consumer of a uint8 network input is a Cast",
    "Q/DQ (explicit quantization): constant scales, zero point 0, activations per tensor, weights per output channel",
)
# The output-channel axis of a weight, per consuming operator (Conv: (K, C, R, S); ConvTranspose: (C, K, R, S)).
_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}


def _type_name(elem_type: int) -> str:
    from onnx import TensorProto

    name = TensorProto.DataType.Name(elem_type)
    return _TYPE_NAMES.get(name, name)


@dataclass
class OperatorReport:
    """Parser rules (operators, input types, uint8, opset, IR version) and static shapes, per TensorRT target."""

    op_counts: dict[str, int]
    opset: int
    ir_version: int
    failures: dict[str, list[str]] = field(default_factory=dict)  # target -> "node ...: rule ...; fix: ..."
    shape_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.shape_problems and not any(self.failures.values())

    def lines(self) -> list[str]:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.op_counts.items()))
        out = [f"operators (opset {self.opset}, IR version {self.ir_version}): {ops}",
               "TensorRT ONNX parser rules checked: " + "; ".join(RULES)]
        for target, problems in self.failures.items():
            out.append(f"  TensorRT {target}: " + ("OK" if not problems else "FAIL"))
            out.extend(f"    - {p}" for p in problems)
        shapes = "OK" if not self.shape_problems else "FAIL: " + "; ".join(self.shape_problems)
        out.append("static shapes matching the contract: " + shapes)
        return out


def _dims(value_info) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def _node_label(node, index: int) -> str:
    return f"node {node.name or '#' + str(index)} ({node.op_type})"


def _uint8_problems(graph, types: dict[str, int]) -> list[str]:
    """Check the parser's UINT8 rule: uint8 only at the network's edges, and a uint8 input feeds Casts only."""
    from onnx import TensorProto

    outputs = {o.name for o in graph.output}
    uint8_inputs = {i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.UINT8}
    problems = []
    for index, node in enumerate(graph.node):
        label = _node_label(node, index)
        fed = [name for name in node.input if name in uint8_inputs]
        if fed and node.op_type != "Cast":
            problems.append(
                f"{label} reads the uint8 network input {fed[0]}: rule 'every consumer of a uint8 network input is "
                "a Cast' (TensorRT rejects any other reader); fix: cast the input to float first, e.g. "
                "`image.to(torch.float32).permute(0, 3, 1, 2)` in PyTorch (`fcn-road-seg export` does), so the "
                "input's only consumer is a Cast")
        for name in node.output:
            if types.get(name) == TensorProto.UINT8 and name not in outputs:
                problems.append(
                    f"{label} makes the uint8 intermediate tensor {name}: rule 'uint8 only as a network input or "
                    "output' ('TensorRT does not support UINT8 types for intermediate tensors'); fix: cast to float "
                    "(or int32) right after the network input and keep later tensors in that type")
    return problems


def _qdq_problems(graph) -> list[str]:
    """TensorRT's explicit quantization is symmetric.

    Every QuantizeLinear/DequantizeLinear has a constant scale and a zero point of 0; scales are per tensor,
    except a weight's, which may be per output channel.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    problems = []
    for index, node in enumerate(graph.node):
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        label, rule = _node_label(node, index), "rule 'Q/DQ (explicit quantization)'"
        scale = inits.get(node.input[1])
        zero = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            problems.append(f"{label}: {rule}: its scale {node.input[1]} is computed, TensorRT needs a constant; "
                            "fix: quantize with constant (initializer) scales")
            continue
        if zero is not None and np.any(numpy_helper.to_array(zero) != 0):
            problems.append(f"{label}: {rule}: zero point {node.input[2]} is not 0 (TensorRT quantizes "
                            "symmetrically); fix: quantize with symmetric activations and weights (`fcn-road-seg "
                            "quantize --symmetric` does)")
        if numpy_helper.to_array(scale).size == 1:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        outs = [node.output[0]]  # a weight's QuantizeLinear feeds the DequantizeLinear that feeds the conv
        if node.op_type == "QuantizeLinear":
            outs = [u.output[0] for u in consumers.get(outs[0], []) if u.op_type == "DequantizeLinear"]
        wanted = {_WEIGHT_AXIS.get(u.op_type) for out in outs for u in consumers.get(out, [])
                  if len(u.input) > 1 and u.input[1] == out}
        if node.input[0] not in inits or wanted != {axis}:
            what = "an activation" if node.input[0] not in inits else "a weight, not along its output channels"
            problems.append(f"{label}: {rule}: per-channel scales (axis {axis}) on {what}; fix: per-tensor scales "
                            "for activations, per output channel for Conv (axis 0) and ConvTranspose (axis 1) weights")
    return problems


def _target_problems(target: str, entry: dict, graph, types: dict[str, int], opset: int, ir_version: int,
                     foreign: set[str]) -> list[str]:
    problems = []
    if opset > entry["opset_max"]:
        problems.append(f"opset {opset}: rule 'opset within the parser's documented range' (TensorRT {target}: "
                        f"{entry['opset_min']}-{entry['opset_max']}); fix: re-export with "
                        f"`fcn-road-seg export ... --opset {entry['opset_max']}`")
    if opset < entry["opset_min"]:
        problems.append(f"opset {opset}: rule 'opset within the parser's documented range' (TensorRT {target}: "
                        f"{entry['opset_min']}-{entry['opset_max']}); fix: re-export at opset >= {entry['opset_min']}")
    if ir_version > entry["ir_version_max"]:
        problems.append(
            f"IR version {ir_version}: rule 'IR version no newer than the parser's onnx library' (TensorRT {target} "
            f"is built with IR {entry['ir_version_max']}; fields added later are unknown to it); fix: re-export with "
            f"`fcn-road-seg export` (writes IR 8 at opset <= 17), or set `model.ir_version = "
            f"{entry['ir_version_max']}` with the onnx library if the model uses nothing newer")
    problems += [f"custom-domain op {op}: rule 'every operator in the parser's supported list'; fix: provide a "
                 "TensorRT plugin for it or replace it" for op in sorted(foreign)]
    table = entry["operators"]
    missing_reported: set[str] = set()
    for index, node in enumerate(graph.node):
        label = _node_label(node, index)
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type not in table:
            if node.op_type not in missing_reported:
                missing_reported.add(node.op_type)
                problems.append(f"{label}: rule 'every operator in the parser's supported list' ({node.op_type} is not "
                                f"supported by TensorRT {target}); fix: replace it with supported operators or "
                                "add a TensorRT plugin")
            continue
        allowed = table[node.op_type]
        if allowed is None or not node.input or node.input[0] not in types:
            continue  # types not documented, or an optional first input left empty
        name = _type_name(types[node.input[0]])
        if name == "INT64" and entry.get("int64_as_int32"):
            name = "INT32"
        if name == "UINT8" and node.op_type != "Cast":
            continue  # reported by the uint8 rule, with its fix
        if name not in allowed:
            problems.append(f"{label} reads {name} ({node.input[0]}): rule 'every operator's input type in its "
                            f"supported types' ({node.op_type} on TensorRT {target}: {', '.join(allowed)}); fix: "
                            f"cast its input to one of those types first")
    return problems


def check_operators(model_path: str | Path, targets: list[str] | None = None) -> OperatorReport:
    """Check ``model_path`` against the TensorRT ONNX parser's documented rules for each target, and its shapes."""
    import onnx

    contract = read_onnx_contract(model_path)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)), strict_mode=True)
    table = supported_operators()["targets"]
    targets = targets or list(table)
    unknown = [t for t in targets if t not in table]
    if unknown:
        raise ValueError(f"unknown TensorRT target(s) {unknown}; choose from {', '.join(table)}")
    graph = model.graph
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in list(graph.input) + list(graph.output) + list(graph.value_info)}
    types.update({init.name: init.data_type for init in graph.initializer})
    counts: dict[str, int] = {}
    foreign: set[str] = set()
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            foreign.add(f"{node.domain}::{node.op_type}")
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    report = OperatorReport(op_counts=counts, opset=opset, ir_version=model.ir_version)
    uint8 = _uint8_problems(graph, types) + _qdq_problems(graph)
    for target in targets:
        report.failures[target] = uint8 + _target_problems(target, table[target], graph, types, opset,
                                                           model.ir_version, foreign)

    expected = {contract.input_name: list(contract.input_shape),
                contract.output_name: [1, contract.input_height, contract.input_width]}
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        dims = _dims(vi)
        if any(not isinstance(d, int) or d <= 0 for d in dims):
            report.shape_problems.append(f"{vi.name} has a dynamic shape {dims}; re-export at a fixed size")
        if vi.name in expected and dims != expected[vi.name]:
            report.shape_problems.append(f"{vi.name} shape {dims} differs from the contract's {expected[vi.name]}")
    names = [i.name for i in graph.input], [o.name for o in graph.output]
    if names != ([contract.input_name], [contract.output_name]):
        report.shape_problems.append(f"graph inputs/outputs {names} differ from the contract's "
                                     f"{contract.input_name} -> {contract.output_name}")
    return report


@dataclass
class FidelityReport:
    """FP16 vs FP32 masks through RoadSegmenter on real frames."""

    frames: int
    pixels: int
    agreement: float  # fraction of pixels with the same mask value
    worst_frame: str
    worst_agreement: float
    max_prob_diff: float
    threshold: float

    @property
    def ok(self) -> bool:
        return self.agreement >= MIN_MASK_AGREEMENT

    def lines(self) -> list[str]:
        return [
            f"FP16 mask agreement (ONNX Runtime CPU, float16 model vs float32, threshold {self.threshold:g}): "
            f"{100 * self.agreement:.3f}% of {self.pixels} pixels on {self.frames} frames "
            f"(worst {self.worst_frame}: {100 * self.worst_agreement:.3f}%; max |dp| {self.max_prob_diff:.4f}) "
            f"-> {'OK' if self.ok else 'FAIL'} (need >= {100 * MIN_MASK_AGREEMENT:.1f}%)"
        ]


def fp16_fidelity(model_path: str | Path, images: list[Path]) -> FidelityReport:
    """Segment ``images`` with the FP32 model and its FP16 conversion; compare masks at full frame size."""
    from tqdm import tqdm

    from ..images import read_bgr
    from ..pipeline import RoadSegmenter

    if not images:
        raise ValueError("the FP16 fidelity check needs at least one image")
    with tempfile.TemporaryDirectory(prefix="fcn_road_seg_fp16_") as tmp:
        half_path = convert_to_fp16(model_path, Path(tmp) / "model_fp16.onnx")
        full = RoadSegmenter(model_path, backend="onnxruntime", device="cpu")
        half = RoadSegmenter(half_path, backend="onnxruntime", device="cpu")
        same = total = 0
        worst = ("", 2.0)
        max_diff = 0.0
        try:
            for path in tqdm(images, desc="fp16 fidelity", unit="frame", disable=None):
                frame = read_bgr(path)
                a, b = full.segment(frame), half.segment(frame)
                agree = int(np.count_nonzero(a.mask == b.mask))
                same += agree
                total += a.mask.size
                if agree / a.mask.size < worst[1]:
                    worst = (Path(path).name, agree / a.mask.size)
                max_diff = max(max_diff, float(np.abs(a.probability - b.probability).max()))
        finally:
            full.close()
            half.close()
    return FidelityReport(frames=len(images), pixels=total, agreement=same / total, worst_frame=worst[0],
                          worst_agreement=worst[1], max_prob_diff=max_diff, threshold=full.threshold)


@dataclass
class RangeReport:
    """Largest |value| of every intermediate float tensor of the FP32 model on real frames."""

    largest: dict[str, float]  # tensor name -> max |value| over the frames

    @property
    def peak(self) -> tuple[str, float]:
        name = max(self.largest, key=self.largest.get)
        return name, self.largest[name]

    @property
    def ok(self) -> bool:
        return self.peak[1] < FP16_MAX

    def lines(self) -> list[str]:
        name, value = self.peak
        top = sorted(self.largest.items(), key=lambda kv: -kv[1])[1:4]
        return [f"largest |activation| of the FP32 model over {len(self.largest)} tensors: {value:.1f} at {name} "
                f"({100 * value / FP16_MAX:.2f}% of the float16 maximum {FP16_MAX:g}) -> {'OK' if self.ok else 'FAIL'}",
                "  next largest: " + ", ".join(f"{n} {v:.1f}" for n, v in top)]


def activation_range(model_path: str | Path, images: list[Path], *, tensors_per_run: int = 8) -> RangeReport:
    """Expose every intermediate float tensor as an output and record its largest |value| on ``images``.

    Tensors are fetched ``tensors_per_run`` at a time so full-size models fit in memory.
    """
    import onnx
    import onnxruntime as ort
    from tqdm import tqdm

    contract = read_onnx_contract(model_path)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    floats = []
    for vi in list(model.graph.value_info) + list(model.graph.output):
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            floats.append(onnx.ValueInfoProto())
            floats[-1].CopyFrom(vi)
    batches = [batch for _, batch in preprocess_files(images, contract)]
    largest: dict[str, float] = {}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    groups = [floats[i:i + tensors_per_run] for i in range(0, len(floats), tensors_per_run)]
    for group in tqdm(groups, desc="activation range", unit="group", disable=None):
        del model.graph.output[:]
        model.graph.output.extend(group)
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [vi.name for vi in group]
        for batch in batches:
            for name, value in zip(names, session.run(names, {contract.input_name: batch})):
                largest[name] = max(largest.get(name, 0.0), float(np.abs(value).max()))
    return RangeReport(largest=largest)


def run_checks(model_path: str | Path, images: list[Path], targets: list[str] | None = None
               ) -> tuple[bool, list[str]]:
    """All checks; returns (all passed, report lines)."""
    ops = check_operators(model_path, targets)
    if read_onnx_contract(model_path).precision == "int8":  # a Q/DQ graph: TensorRT quantizes it as given
        return ops.ok, [f"model {model_path}"] + ops.lines() + [
            "FP16 mask agreement and activation range: not run for an INT8 (Q/DQ) model, which TensorRT builds "
            "with its own scales rather than as an FP16 copy; check the float model it was quantized from"]
    fidelity = fp16_fidelity(model_path, images)
    ranges = activation_range(model_path, images)
    lines = [f"model {model_path}"] + ops.lines() + fidelity.lines() + ranges.lines()
    return ops.ok and fidelity.ok and ranges.ok, lines
