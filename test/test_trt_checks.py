"""TensorRT readiness checks that run without TensorRT or a GPU (operators, shapes, FP16 fidelity and range)."""
import sys

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import make_random_net
from fcn_road_seg.contract import ModelContract, read_onnx_contract
from fcn_road_seg.training.export import export_onnx
from fcn_road_seg.images import read_bgr
from fcn_road_seg.trt.check import (
    FP16_MAX,
    MIN_MASK_AGREEMENT,
    RULES,
    activation_range,
    check_operators,
    convert_to_fp16,
    fp16_fidelity,
    supported_operators,
)


@pytest.fixture(scope="session")
def deploy_model(shipped_model):
    """Return the model users deploy: the shipped one (absent: a skip, or a failure in CI; conftest.missing)."""
    return shipped_model


@pytest.fixture(scope="session")
def real_frames(kitti_images, camvid_images):
    return kitti_images + camvid_images


TARGETS = {"8.6", "10.x", "11.x"}


def test_support_table_names_its_sources():
    data = supported_operators()
    table = data["targets"]
    assert set(table) == TARGETS
    assert "UINT8" in data["uint8_rule"] and "Cast" in data["uint8_rule"]
    for entry in table.values():
        assert entry["sources"]["operators"].startswith("https://github.com/onnx/onnx-tensorrt/")
        assert {"operators", "ir_version", "uint8"} <= set(entry["sources"])
        assert entry["opset_min"] <= 17 <= entry["opset_max"] and entry["ir_version_max"] >= 8
        for op in ("Conv", "ConvTranspose", "MaxPool", "Relu", "Sigmoid", "Cast", "Transpose", "Gather"):
            assert "FP32" in entry["operators"][op] and "FP16" in entry["operators"][op]
        assert "UINT8" in entry["operators"]["Cast"] and "UINT8" not in entry["operators"]["Transpose"]
    assert "Hardmax" not in table["8.6"]["operators"] and "Hardmax" in table["10.x"]["operators"]
    assert (table["8.6"]["opset_max"], table["10.x"]["opset_max"], table["11.x"]["opset_max"]) == (17, 20, 25)


def test_deploy_model_passes_every_rule_on_every_target(deploy_model):
    report = check_operators(deploy_model)
    assert report.shape_problems == []
    assert report.failures == {t: [] for t in TARGETS}, report.lines()
    assert {"Conv", "ConvTranspose", "Cast", "Sigmoid"} <= set(report.op_counts)  # MaxPool: VGG16 only
    model = onnx.load(str(deploy_model))
    assert [n.op_type for n in model.graph.node if "image" in n.input] == ["Cast"]
    text = "\n".join(report.lines())
    assert all(rule in text for rule in RULES) and "TensorRT 8.6: OK" in text


def test_shipped_model_input_feeds_only_a_cast(shipped_model):
    shipped = shipped_model
    model = onnx.load(str(shipped))
    assert [n.op_type for n in model.graph.node if "image" in n.input] == ["Cast"]
    assert read_onnx_contract(shipped).contract_version == 2 and model.ir_version == 8
    assert check_operators(shipped).ok


@pytest.mark.parametrize("variant", ["fcn16s", "fcn32s"])
def test_other_variants_at_opset17_pass_every_target(tmp_path, variant):
    from fcn_road_seg.training.export import contract_for

    net = make_random_net(variant)
    path = export_onnx(net, contract_for(net.config, (64, 192)), tmp_path / f"{variant}.onnx", opset=17)
    report = check_operators(path)
    assert report.ok, report.lines()
    assert report.op_counts["ConvTranspose"] == {"fcn16s": 2, "fcn32s": 1}[variant]


def _graph_model(path, nodes, batch_dim=1, opset=17, ir_version=8, initializers=()):
    """uint8 image (1x32x64x3) -> ``nodes`` -> float road_probability (1x32x64), with a contract."""
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [batch_dim, 32, 64, 3])
    out = helper.make_tensor_value_info("road_probability", TensorProto.FLOAT, [batch_dim, 32, 64])
    zero = helper.make_tensor("zero", TensorProto.INT64, [], [0])
    graph = helper.make_graph(nodes, "g", [image], [out], initializer=[zero, *initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    for key, value in ModelContract(32, 64).to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _handmade_model(path, op="Hardmax", batch_dim=1, opset=17, ir_version=8):
    """uint8 image -> Cast -> <op> -> Gather channel 0 -> road_probability."""
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node(op, ["x"], ["y"], name="op", axis=3),
        helper.make_node("Gather", ["y", "zero"], ["road_probability"], name="channel0", axis=3),
    ]
    return _graph_model(path, nodes, batch_dim, opset, ir_version)


def test_unsupported_operator_is_named_per_target(tmp_path):
    report = check_operators(_handmade_model(tmp_path / "hardmax.onnx"))
    assert report.failures["10.x"] == [] and report.failures["11.x"] == [] and report.shape_problems == []
    (problem,) = report.failures["8.6"]
    assert problem.startswith("node op (Hardmax)") and "every operator in the parser's supported list" in problem
    assert "fix: replace it" in problem
    assert not report.ok


def test_uint8_input_transposed_before_cast_fails_naming_node_rule_and_fix(tmp_path):
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["nchw"], ["x"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["x"], ["nhwc"], name="back", perm=[0, 2, 3, 1]),
        helper.make_node("Gather", ["nhwc", "zero"], ["road_probability"], name="channel0", axis=3),
    ]
    report = check_operators(_graph_model(tmp_path / "transpose_first.onnx", nodes))
    for target in TARGETS:
        problems = report.failures[target]
        assert len(problems) == 2, problems
        reader, intermediate = problems
        assert reader.startswith("node to_nchw (Transpose) reads the uint8 network input image")
        assert "rule 'every consumer of a uint8 network input is a Cast'" in reader
        assert "fix: cast the input to float first" in reader and "image.to(torch.float32)" in reader
        assert intermediate.startswith("node to_nchw (Transpose) makes the uint8 intermediate tensor nchw")
        assert "rule 'uint8 only as a network input or output'" in intermediate and "fix: cast to float" in intermediate
    assert not report.ok


def test_uint8_intermediate_after_a_cast_fails(tmp_path):
    nodes = [
        helper.make_node("Cast", ["image"], ["wide"], name="to_int32", to=TensorProto.INT32),
        helper.make_node("Cast", ["wide"], ["narrow"], name="back_to_uint8", to=TensorProto.UINT8),
        helper.make_node("Cast", ["narrow"], ["x"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node("Gather", ["x", "zero"], ["road_probability"], name="channel0", axis=3),
    ]
    report = check_operators(_graph_model(tmp_path / "uint8_mid.onnx", nodes))
    for target in TARGETS:
        (problem,) = report.failures[target]
        assert problem.startswith("node back_to_uint8 (Cast) makes the uint8 intermediate tensor narrow")
        assert "uint8 only as a network input or output" in problem


def test_unsupported_input_type_fails_where_the_table_says_so(tmp_path):
    nodes = [
        helper.make_node("Cast", ["image"], ["ints"], name="to_int32", to=TensorProto.INT32),
        helper.make_node("Relu", ["ints"], ["relu"], name="int_relu"),
        helper.make_node("Cast", ["relu"], ["x"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node("Gather", ["x", "zero"], ["road_probability"], name="channel0", axis=3),
    ]
    report = check_operators(_graph_model(tmp_path / "int_relu.onnx", nodes))
    (problem,) = report.failures["8.6"]  # 8.6 documents Relu for FP32, FP16, INT8 only; 10.x adds INT32
    assert problem.startswith("node int_relu (Relu) reads INT32 (ints)")
    assert "rule 'every operator's input type in its supported types'" in problem and "FP32, FP16, INT8" in problem
    assert "fix: cast its input" in problem
    assert report.failures["10.x"] == [] and report.failures["11.x"] == []


def test_opset_and_ir_version_limits_per_target(tmp_path):
    report = check_operators(_handmade_model(tmp_path / "new.onnx", op="Softmax", opset=21, ir_version=10))
    assert [p.split(":")[0] for p in report.failures["8.6"]] == ["opset 21", "IR version 10"]
    assert "--opset 17" in report.failures["8.6"][0] and "model.ir_version = 8" in report.failures["8.6"][1]
    assert [p.split(":")[0] for p in report.failures["10.x"]] == ["opset 21"]
    assert "--opset 20" in report.failures["10.x"][0]
    assert report.failures["11.x"] == []


def test_dynamic_batch_is_reported(tmp_path):
    report = check_operators(_handmade_model(tmp_path / "dyn.onnx", op="Softmax", batch_dim="N"))
    assert any("image has a dynamic shape" in p for p in report.shape_problems)
    assert any("differs from the contract" in p for p in report.shape_problems)


def test_fp16_copy_keeps_uint8_input_and_float_output(tmp_path, tiny_onnx):
    half = onnx.load(str(convert_to_fp16(tiny_onnx, tmp_path / "half.onnx")))
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    conv_weights = {n.input[1] for n in half.graph.node if n.op_type == "Conv"}
    types = {i.data_type for i in half.graph.initializer if i.name in conv_weights}
    assert types == {TensorProto.FLOAT16}
    # The input's Cast and the probability head stay float32 (what the TensorRT 11 build relies on).
    by_name = {n.name: n for n in half.graph.node}
    model = onnx.load(str(tiny_onnx))
    (cast,) = [n for n in model.graph.node if "image" in n.input]
    assert by_name[cast.name].attribute[0].i == TensorProto.FLOAT
    sigmoid = next(n for n in half.graph.node if n.op_type == "Sigmoid")
    assert sigmoid.output[0] == "road_probability"


def test_fp16_mask_agrees_with_fp32_on_real_frames(deploy_model, real_frames):
    report = fp16_fidelity(deploy_model, real_frames)
    sys.stdout.write("\n" + "\n".join(report.lines()) + "\n")
    expected_pixels = sum(read_bgr(p).shape[0] * read_bgr(p).shape[1] for p in real_frames)
    assert report.frames == len(real_frames) and report.pixels == expected_pixels
    assert report.agreement >= MIN_MASK_AGREEMENT, report.lines()
    assert 0.0 <= report.max_prob_diff < 0.05


def test_activation_range_of_fp32_model_fits_fp16(deploy_model, real_frames):
    from fcn_road_seg.contract import read_onnx_contract
    from fcn_road_seg.preprocess import preprocess

    report = activation_range(deploy_model, real_frames)
    sys.stdout.write("\n" + "\n".join(report.lines()) + "\n")
    model = onnx.load(str(deploy_model))
    assert len(report.largest) > sum(n.op_type == "Conv" for n in model.graph.node)
    assert report.ok and report.peak[1] < FP16_MAX
    # The recorded maximum of the final output equals what ONNX Runtime returns on the same frames.
    contract = read_onnx_contract(deploy_model)
    session = ort.InferenceSession(str(deploy_model), providers=["CPUExecutionProvider"])
    top = max(float(session.run(None, {contract.input_name: preprocess(read_bgr(p), contract)})[0].max())
              for p in real_frames)
    assert report.largest[contract.output_name] == pytest.approx(top, rel=1e-6)


def test_check_trt_cli_prints_report(tmp_path, tiny_onnx, tiny_net, kitti_images):
    import subprocess

    cmd = [sys.executable, "-m", "fcn_road_seg.cli", "check-trt", str(tiny_onnx), "--images", *map(str, kitti_images)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert all(f"TensorRT {v}: OK" in done.stdout for v in ("8.6", "10.x", "11.x"))
    assert "FP16 mask agreement" in done.stdout and "all checks passed" in done.stdout
    # An opset-18 export fails for TensorRT 8.6 and the command says how to re-export, with exit 1.
    newer = export_onnx(tiny_net, read_onnx_contract(tiny_onnx), tmp_path / "opset18.onnx", opset=18)
    done = subprocess.run(cmd[:4] + [str(newer)] + cmd[5:], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "--opset 17" in done.stdout
    # A graph whose uint8 input feeds a Transpose fails with the rule named.
    nodes = [helper.make_node("Transpose", ["image"], ["t"], name="to_nchw", perm=[0, 1, 2, 3]),
             helper.make_node("Cast", ["t"], ["x"], name="to_float", to=TensorProto.FLOAT),
             helper.make_node("Gather", ["x", "zero"], ["road_probability"], name="channel0", axis=3)]
    bad = _graph_model(tmp_path / "transpose_first.onnx", nodes)
    done = subprocess.run(cmd[:4] + [str(bad)] + cmd[5:], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "TensorRT 8.6: FAIL" in done.stdout, done.stdout + done.stderr
    assert "node to_nchw (Transpose) reads the uint8 network input image" in done.stdout
    assert "every consumer of a uint8 network input is a Cast" in done.stdout
