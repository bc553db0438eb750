"""`fcn-road-seg quantize`: an INT8 QDQ copy calibrated on real KITTI frames.

With uint8 activations for the CPU, or ``--symmetric``, TensorRT's form: its float ends kept, its contract carried over
and marked int8, refused inputs named. Also the shipped INT8 copy and the TensorRT Q/DQ rule.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from fcn_road_seg.contract import file_sha256, read_onnx_contract
from fcn_road_seg.resources import default_model_path
from fcn_road_seg.trt.check import check_operators, run_checks

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_INT8 = ROOT / "models" / "fcn8s_lite0_kitti_road_int8.onnx"
CLI = [sys.executable, "-m", "fcn_road_seg.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def kitti_train(shared_data) -> Path:
    root = shared_data / "kitti_road_train"
    if not root.is_dir():
        pytest.skip(f"{root} not found (CI has it beside the repo)")
    return root


def _quantize(tiny_onnx, out, kitti_train, *extra) -> Path:
    done = _cli("quantize", str(tiny_onnx), "-o", str(out), "--calib", str(kitti_train),
                str(ROOT / "splits" / "kitti_road_train.txt"), "--max-frames", "6", *extra)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    return out


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory, tiny_onnx, kitti_train) -> Path:
    """Quantize the default copy: uint8 activations (CPU speed)."""
    return _quantize(tiny_onnx, tmp_path_factory.mktemp("int8") / "tiny_int8.onnx", kitti_train)


@pytest.fixture(scope="module")
def tiny_int8_symmetric(tmp_path_factory, tiny_onnx, kitti_train) -> Path:
    """``--symmetric``: TensorRT's explicit-quantization form."""
    return _quantize(tiny_onnx, tmp_path_factory.mktemp("int8") / "tiny_sym.onnx", kitti_train, "--symmetric")


def _zero_points(path: Path) -> list[np.ndarray]:
    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return [inits[n.input[2]] for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


def _producers(graph) -> dict:
    return {out: node for node in graph.node for out in node.output}


def test_the_copy_is_qdq_with_float_ends_and_an_int8_contract(tiny_onnx, tiny_int8):
    graph = onnx.load(str(tiny_int8)).graph
    ops = [n.op_type for n in graph.node]
    convs = sum(op in ("Conv", "ConvTranspose") for op in ops)
    assert ops.count("DequantizeLinear") >= 2 * convs - 1  # every conv but the final upsampling: input and weight
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weights = [inits[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weights and all(w.dtype == np.int8 for w in weights)
    assert {z.dtype for z in _zero_points(tiny_int8)} == {np.dtype(np.int8), np.dtype(np.uint8)}  # weights, acts
    produced_by = _producers(graph)
    first_conv = next(n for n in graph.node if n.op_type == "Conv")
    assert produced_by[first_conv.input[0]].op_type == "DequantizeLinear"
    # The input path (Cast, Transpose, normalisation) and the tail from the final upsampling on run in float.
    kept = read_onnx_contract(tiny_int8).quantization["float_nodes"]
    by_name = {n.name: n for n in graph.node}
    assert {by_name[name].op_type for name in kept} >= {"Cast", "Transpose", "Mul", "Add", "Sigmoid"}
    tail = [name for name in kept if by_name[name].op_type != "ConvTranspose"]  # the final upsampling reads a DQ
    assert len(tail) < len(kept)
    for name in tail:
        assert all(produced_by.get(i) is None or produced_by[i].op_type != "DequantizeLinear"
                   for i in by_name[name].input), name
    contract, source = read_onnx_contract(tiny_int8), read_onnx_contract(tiny_onnx)
    assert contract.precision == "int8" and source.precision == "fp32"
    assert contract.quantization["source_sha256"] == file_sha256(tiny_onnx)
    assert "6 frames" in contract.quantization["calibration"]
    assert contract.quantization["activations"].startswith("uint8")
    assert (contract.input_shape, contract.metrics, contract.calibration) == (
        source.input_shape, source.metrics, source.calibration)


def test_the_symmetric_copy_keeps_the_tensorrt_rules_and_the_default_one_does_not(tiny_int8, tiny_int8_symmetric):
    assert all(z.dtype == np.int8 and not z.any() for z in _zero_points(tiny_int8_symmetric))
    assert read_onnx_contract(tiny_int8_symmetric).quantization["activations"].startswith("int8 symmetric")
    assert check_operators(tiny_int8_symmetric).ok
    report = check_operators(tiny_int8)  # uint8 activations: CPU only, and check-trt says why
    problems = report.failures["10.x"]
    assert not report.ok and any("uint8 intermediate tensor" in p for p in problems)
    assert any("zero point" in p and "is not 0" in p for p in problems)


def test_refusals_name_the_fix(tmp_path, tiny_onnx, tiny_int8, kitti_train):
    cases = [
        (["quantize", str(tiny_int8), "-o", str(tmp_path / "a.onnx"), "--calib", str(kitti_train)], "already int8"),
        (["quantize", str(tiny_onnx), "-o", str(tiny_onnx), "--calib", str(kitti_train)], "is the input model"),
        (["quantize", str(tiny_onnx), "-o", str(tmp_path / "b.onnx"), "--calib", str(tmp_path / "nope")],
         "is not a folder"),
        (["quantize", str(tiny_onnx), "-o", str(tmp_path / "c.onnx"), "--calib", str(kitti_train),
          str(ROOT / "splits" / "README.md")], "are not in"),
        (["quantize", str(tiny_onnx), "-o", str(tmp_path / "d.onnx"), "--calib", str(kitti_train), "--max-frames",
          "0"], "--max-frames must be >= 1"),
    ]
    for args, message in cases:
        done = _cli(*args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not list(tmp_path.glob("*.onnx*"))  # nothing half-written


def test_shipped_int8_copy_is_of_the_shipped_model_for_the_cpu():
    contract = read_onnx_contract(SHIPPED_INT8)
    assert contract.precision == "int8"
    assert contract.quantization["source_sha256"] == file_sha256(default_model_path())
    assert "kitti_road_train.txt" in contract.quantization["calibration"]  # not the validation frames
    assert contract.quantization["activations"].startswith("uint8")  # the CPU form (docs/tensorrt.md)
    assert check_operators(SHIPPED_INT8).op_counts["QuantizeLinear"] > 50


def test_check_trt_on_the_int8_copy_reports_the_parser_rules_without_an_fp16_copy():
    """`check-trt` on a Q/DQ model: the parser rules, and no FP16 conversion of the Q/DQ graph.

    The CPU copy's asymmetric zero points fail the parser rules, named. ONNX Runtime cannot even load an FP16 conversion
    of the Q/DQ graph (it used to end there).
    """
    ok, lines = run_checks(SHIPPED_INT8, [ROOT / "samples" / "kitti_um_000000.jpg"])
    text = "\n".join(lines)
    assert not ok and "zero point" in text and "`fcn-road-seg quantize --symmetric` does" in text
    assert "not run for an INT8 (Q/DQ) model" in text and "FP16 mask agreement (" not in text


def test_the_qdq_rule_catches_asymmetric_and_misplaced_per_channel_scales(tmp_path, tiny_int8_symmetric):
    model = onnx.load(str(tiny_int8_symmetric))
    inits = {t.name: t for t in model.graph.initializer}
    quant = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    zero = inits[quant.input[2]]
    zero.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zero.name))
    weight = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                  and numpy_helper.to_array(inits[n.input[1]]).size > 1)
    next(a for a in weight.attribute if a.name == "axis").i = 1
    onnx.save(model, str(tmp_path / "broken.onnx"))
    problems = check_operators(tmp_path / "broken.onnx", ["10.x"]).failures["10.x"]
    assert any(quant.name in p and "zero point" in p and "is not 0" in p for p in problems), problems
    assert any(weight.name in p and "per-channel scales (axis 1)" in p for p in problems), problems
