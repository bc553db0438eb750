"""Checks that a model will build and stay faithful as a TensorRT FP16 engine, runnable without TensorRT.

1. Operators: every node type is in the TensorRT ONNX parser's documented support list for each target
   TensorRT release (``data/trt_onnx_ops.json``, with its sources) and the model's opset is in range.
2. Shapes: every tensor in the graph has a static shape, and input/output match the contract.
3. FP16 fidelity: the model converted to float16 (onnxconverter-common, float32 kept at the uint8 input and
   probability output) and run with ONNX Runtime on the CPU gives the same road mask as the FP32 model on
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

from ..contract import ModelContract, read_onnx_contract
from ..errors import BackendUnavailableError

__all__ = [
    "FP16_MAX",
    "MIN_MASK_AGREEMENT",
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
    """The operator support table shipped with the package (targets -> operators, opset range, source)."""
    return json.loads(resources.files(__package__).joinpath("data", OPS_FILE).read_text())


@dataclass
class OperatorReport:
    """Operator and shape check of one ONNX model against each TensorRT target."""

    op_counts: dict[str, int]
    opset: int
    failures: dict[str, list[str]] = field(default_factory=dict)  # target -> problems
    shape_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.shape_problems and not any(self.failures.values())

    def lines(self) -> list[str]:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.op_counts.items()))
        out = [f"operators (opset {self.opset}): {ops}"]
        for target, problems in self.failures.items():
            out.append(f"  TensorRT {target}: " + ("OK" if not problems else "FAIL: " + "; ".join(problems)))
        out.append("static shapes matching the contract: " + ("OK" if not self.shape_problems
                                                             else "FAIL: " + "; ".join(self.shape_problems)))
        return out


def _dims(value_info) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def check_operators(model_path: str | Path, targets: list[str] | None = None) -> OperatorReport:
    """Check node types, opset and static shapes of ``model_path`` against the shipped support table."""
    import onnx

    contract = read_onnx_contract(model_path)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)), strict_mode=True)
    table = supported_operators()["targets"]
    targets = targets or list(table)
    unknown = [t for t in targets if t not in table]
    if unknown:
        raise ValueError(f"unknown TensorRT target(s) {unknown}; choose from {', '.join(table)}")
    counts: dict[str, int] = {}
    foreign: set[str] = set()
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            foreign.add(f"{node.domain}::{node.op_type}")
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    report = OperatorReport(op_counts=counts, opset=opset)
    for target in targets:
        entry = table[target]
        problems = [f"custom-domain op {op} needs a plugin" for op in sorted(foreign)]
        missing = sorted(set(counts) - set(entry["operators"]))
        if missing:
            problems.append(f"not in the parser's supported list: {', '.join(missing)}")
        if opset > entry["opset_max"]:
            problems.append(f"opset {opset} is above the documented maximum {entry['opset_max']}; re-export with "
                            f"`fcn-road-seg export ... --opset {entry['opset_max']}`")
        if opset < entry.get("opset_min", 1):
            problems.append(f"opset {opset} is below the documented minimum {entry['opset_min']}")
        report.failures[target] = problems

    graph = model.graph
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


def convert_to_fp16(model_path: str | Path, out_path: str | Path) -> Path:
    """Write a float16 copy of the model: float16 weights and activations, uint8 in, float32 probability out."""
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError as err:
        raise BackendUnavailableError(
            "the FP16 check needs onnxconverter-common: pip install 'fcn_road_seg[trt]' (or onnxconverter-common)"
        ) from err
    import onnx

    model = onnx.load(str(model_path))
    # The uint8 input, layout-only ops on it (Transpose/Reshape) and the uint8 -> float Cast stay as they are
    # (the converter would otherwise emit an invalid Cast); a cast to float16 is inserted after them, as
    # TensorRT does with FP16 enabled. Nodes are in topological order, so one pass follows the chain.
    uint8_tensors = {i.name for i in model.graph.input}
    keep = []
    for node in model.graph.node:
        if node.input and node.input[0] in uint8_tensors and node.op_type in ("Transpose", "Reshape", "Cast"):
            keep.append(node.name)
            if node.op_type != "Cast":
                uint8_tensors.add(node.output[0])
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep)
    out_path = Path(out_path)
    onnx.save(half, str(out_path))
    return out_path


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


def _preprocessed_batches(contract: ModelContract, images: list[Path]):
    from ..images import read_bgr
    from ..preprocess import preprocess

    for path in images:
        yield preprocess(read_bgr(path), contract, color_order="bgr")


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
    batches = list(_preprocessed_batches(contract, images))
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
    fidelity = fp16_fidelity(model_path, images)
    ranges = activation_range(model_path, images)
    lines = [f"model {model_path}"] + ops.lines() + fidelity.lines() + ranges.lines()
    return ops.ok and fidelity.ok and ranges.ok, lines
