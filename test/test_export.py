from dataclasses import asdict

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fcn_road_seg.contract import METADATA_PREFIX, ModelContract, read_onnx_contract
from fcn_road_seg.errors import ContractError, ModelError
from fcn_road_seg.training.export import DeployableFCN, export_checkpoint


def test_graph_is_uint8_nhwc_in_probability_out(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 96, 320, 3]
    assert out.name == "road_probability" and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, 96, 320]
    # TensorRT's parser takes uint8 only as a network input feeding a Cast; IR 8 is what TensorRT 8.6 knows.
    consumers = [n for n in model.graph.node if "image" in n.input]
    assert [(n.op_type, onnx.helper.get_attribute_value(n.attribute[0])) for n in consumers] == [
        ("Cast", onnx.TensorProto.FLOAT)]
    assert model.ir_version == 8


def test_contract_round_trip(tiny_onnx):
    contract = read_onnx_contract(tiny_onnx)
    assert (contract.input_height, contract.input_width) == (96, 320)
    assert contract.channel_order == "RGB" and contract.input_dtype == "uint8" and contract.input_layout == "NHWC"
    assert contract.output == "road_probability" and contract.variant == "fcn8s"
    assert contract.training_data == "random weights (tests)" and contract.metrics == {"MaxF": 0.5}
    keys = {p.key for p in onnx.load(str(tiny_onnx), load_external_data=False).metadata_props}
    for field in ("input_height", "input_width", "channel_order", "input_dtype", "normalization", "output",
                  "default_threshold", "variant", "training_data", "metrics", "package_version"):
        assert METADATA_PREFIX + field in keys
    assert ModelContract.from_metadata(contract.to_metadata()) == contract


def _frames(paths, size_hw):
    for path in paths:
        bgr = cv2.imread(str(path))
        rgb = cv2.cvtColor(cv2.resize(bgr, size_hw[::-1], interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        yield path.name, rgb[None]


def _assert_ort_matches_pytorch(onnx_path, net, paths):
    """ONNX Runtime within 1e-4 of the PyTorch wrapper on every frame, on maps that vary."""
    contract = read_onnx_contract(onnx_path)
    wrapper = DeployableFCN(net, contract.normalization["mean"], contract.normalization["std"]).eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    spread = []
    for name, batch in _frames(paths, (contract.input_height, contract.input_width)):
        (ours,) = session.run(None, {"image": batch})
        with torch.no_grad():
            ref = wrapper(torch.from_numpy(batch)).numpy()
        assert np.abs(ours - ref).max() <= 1e-4, name
        assert 0.0 <= ours.min() and ours.max() <= 1.0
        spread.append(ours.max() - ours.min())
    assert min(spread) > 0.01  # the comparison is not between two constant maps


def test_onnxruntime_matches_pytorch_on_real_frames(tiny_onnx, tiny_net, kitti_images, camvid_images):
    _assert_ort_matches_pytorch(tiny_onnx, tiny_net, kitti_images + camvid_images)


def test_efficientnet_lite_export_is_opset17_and_matches_pytorch_on_real_frames(tmp_path, kitti_images,
                                                                                camvid_images):
    """The ImageNet-initialised Lite0 FCN (random score layers, so the maps vary) exported at opset 17.

    Plain ONNX ops only, and ONNX Runtime within 1e-4 of PyTorch on real KITTI and CamVid frames.
    """
    from fcn_road_seg.training.export import contract_for, export_onnx
    from fcn_road_seg.training.model import FCN, FCNConfig
    from fcn_road_seg.training.pretrained import load_imagenet

    torch.manual_seed(0)
    net = FCN(FCNConfig(encoder="efficientnet-lite0"))
    load_imagenet(net)
    with torch.no_grad():
        for name in ("score_fr", "score_pool4", "score_pool3"):
            getattr(net, name).weight.normal_(0, 0.05)
    net.eval()
    path = export_onnx(net, contract_for(net.config, (64, 192)), tmp_path / "lite0.onnx", opset=17)
    model = onnx.load(str(path))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert {n.op_type for n in model.graph.node} <= {
        "Cast", "Transpose", "Mul", "Add", "Sub", "Conv", "Clip", "ConvTranspose", "Gather", "Sigmoid"}
    contract = read_onnx_contract(path)
    assert contract.encoder == "efficientnet-lite0" and contract.normalization["std"][0] == pytest.approx(128 / 255)
    _assert_ort_matches_pytorch(path, net, kitti_images + camvid_images)


def test_checkpoint_export_carries_size_and_metrics(tmp_path, tiny_net):
    ckpt = {"model": tiny_net.state_dict(), "config": asdict(tiny_net.config),
            "input_size": [64, 96], "training_data": "unit test", "metrics": {"MaxF": 0.9, "AP": 0.8}}
    torch.save(ckpt, tmp_path / "c.pt")
    out = export_checkpoint(tmp_path / "c.pt", tmp_path / "c.onnx")
    contract = read_onnx_contract(out)
    assert (contract.input_height, contract.input_width) == (64, 96)
    assert contract.metrics == {"MaxF": 0.9, "AP": 0.8} and contract.training_data == "unit test"


def test_missing_and_non_onnx_and_contractless_models(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        read_onnx_contract(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf at all \x00\xff" * 10)
    with pytest.raises(ModelError, match="not a readable ONNX"):
        read_onnx_contract(junk)
    bare = tmp_path / "bare.onnx"
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    onnx.save(onnx.helper.make_model(graph), str(bare))
    with pytest.raises(ContractError, match="fcn-road-seg export"):
        read_onnx_contract(bare)


def test_calibration_puts_the_maxf_operating_point_at_one_half_and_fits_the_temperature():
    from fcn_road_seg.training.calibrate import fit_calibration, maxf_logit

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, generator=gen) * 4
    labels = torch.bernoulli(torch.sigmoid((z - 1.5) / 2.5), generator=gen)
    best = maxf_logit(z, labels)
    f1 = {t: 2 * ((z >= t) & (labels == 1)).sum() / ((z >= t).sum() + labels.sum())
          for t in (best, best - 0.3, best + 0.3)}
    assert f1[best] >= f1[best - 0.3] and f1[best] >= f1[best + 0.3]
    cal = fit_calibration(z, labels)
    assert cal.bias == best and cal.apply(torch.sigmoid(torch.tensor(best)).item()) == pytest.approx(0.5, abs=1e-6)
    # The data were drawn with temperature 2.5; with the bias held at the F1 cut the NLL fit lands near it.
    assert 2.0 < cal.temperature < 3.2 and cal.nll_after < cal.nll_before


def test_calibrated_export_bakes_temperature_and_bias_into_the_graph(tmp_path, shared_data, tiny_net):
    """`export --calibrate` fits on real KITTI frames; the graph returns sigmoid((z - b) / T).

    The contract records the calibration and where the validation MaxF threshold moved.
    """
    from fcn_road_seg.training.calibrate import Calibration

    ckpt = {"model": tiny_net.state_dict(), "config": asdict(tiny_net.config), "input_size": [64, 192],
            "metrics": {"MaxF": 0.9, "threshold_maxf": 0.3}}
    torch.save(ckpt, tmp_path / "c.pt")
    out = export_checkpoint(tmp_path / "c.pt", tmp_path / "c.onnx",
                            calibrate_on=(shared_data / "kitti_road", None))
    contract = read_onnx_contract(out)
    cal = Calibration(**contract.calibration)
    assert cal.pixels > 0 and cal.temperature > 0 and "kitti_road" in cal.fitted_on
    assert contract.metrics["threshold_maxf"] == pytest.approx(cal.apply(0.3))
    frame = cv2.resize(cv2.imread(str(shared_data / "kitti_road" / "training" / "image_2" / "um_000000.png")),
                       (192, 64))[None, ..., ::-1].copy()
    (prob,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": frame})
    plain = DeployableFCN(tiny_net, contract.normalization["mean"], contract.normalization["std"]).eval()
    with torch.no_grad():
        z = torch.logit(plain(torch.from_numpy(frame)).double(), eps=1e-12)
    expected = torch.sigmoid((z - cal.bias) / cal.temperature).numpy()
    assert np.abs(prob - expected).max() <= 1e-4
