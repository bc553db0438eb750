"""TensorRT readiness checks that run without TensorRT or a GPU (operators, shapes, FP16 fidelity and range)."""
import sys

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import make_random_net
from fcn_road_seg.contract import ModelContract, read_onnx_contract
from fcn_road_seg.training.export import export_onnx
from fcn_road_seg.errors import ModelError
from fcn_road_seg.images import read_bgr
from fcn_road_seg.trt.check import (
    FP16_MAX,
    MIN_MASK_AGREEMENT,
    activation_range,
    check_operators,
    convert_to_fp16,
    fp16_fidelity,
    supported_operators,
)


@pytest.fixture(scope="session")
def deploy_model(tiny_onnx):
    """The shipped model when it is in the tree, else the compact random FCN-8s."""
    from fcn_road_seg.resources import default_model_path

    try:
        return default_model_path()
    except ModelError:
        return tiny_onnx


@pytest.fixture(scope="session")
def real_frames(kitti_images, camvid_images):
    return kitti_images + camvid_images


def test_support_table_names_its_sources():
    table = supported_operators()["targets"]
    assert {"8.6", "10.15"} <= set(table)
    for entry in table.values():
        assert entry["source"].startswith("https://github.com/onnx/onnx-tensorrt/")
        assert {"Conv", "ConvTranspose", "MaxPool", "Relu", "Sigmoid", "Cast"} <= set(entry["operators"])
    assert "Hardmax" not in table["8.6"]["operators"] and "Hardmax" in table["10.15"]["operators"]


def test_deploy_model_operators_and_static_shapes(deploy_model):
    report = check_operators(deploy_model)
    assert report.shape_problems == []
    assert report.failures["10.15"] == []
    assert {"Conv", "ConvTranspose", "Cast", "Sigmoid"} <= set(report.op_counts)  # MaxPool: VGG16 only
    assert report.failures["8.6"] == []  # exported at opset 17, so JetPack 6.0's TensorRT parses it too


@pytest.mark.parametrize("variant", ["fcn16s", "fcn32s"])
def test_other_variants_at_opset17_pass_every_target(tmp_path, variant):
    from fcn_road_seg.training.export import contract_for

    net = make_random_net(variant)
    path = export_onnx(net, contract_for(net.config, (64, 192)), tmp_path / f"{variant}.onnx", opset=17)
    report = check_operators(path)
    assert report.ok, report.lines()
    assert report.op_counts["ConvTranspose"] == {"fcn16s": 2, "fcn32s": 1}[variant]


def _handmade_model(path, op="Hardmax", batch_dim=1):
    """uint8 image -> Cast -> <op> -> Gather channel 0 -> road_probability, with a contract."""
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [batch_dim, 32, 64, 3])
    out = helper.make_tensor_value_info("road_probability", TensorProto.FLOAT, [batch_dim, 32, 64])
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node(op, ["x"], ["y"], axis=3),
        helper.make_node("Gather", ["y", "zero"], ["road_probability"], axis=3),
    ]
    zero = helper.make_tensor("zero", TensorProto.INT64, [], [0])
    graph = helper.make_graph(nodes, "g", [image], [out], initializer=[zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in ModelContract(32, 64).to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_unsupported_operator_is_named_per_target(tmp_path):
    report = check_operators(_handmade_model(tmp_path / "hardmax.onnx"))
    assert report.failures["10.15"] == [] and report.shape_problems == []
    assert report.failures["8.6"] == ["not in the parser's supported list: Hardmax"]
    assert not report.ok


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
    assert "TensorRT 10.15: OK" in done.stdout and "TensorRT 8.6: OK" in done.stdout
    assert "FP16 mask agreement" in done.stdout and "all checks passed" in done.stdout
    # An opset-18 export fails for TensorRT 8.6 and the command says how to re-export, with exit 1.
    newer = export_onnx(tiny_net, read_onnx_contract(tiny_onnx), tmp_path / "opset18.onnx", opset=18)
    done = subprocess.run(cmd[:4] + [str(newer)] + cmd[5:], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "--opset 17" in done.stdout
