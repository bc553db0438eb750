"""The PyTorch model rebuilt from an exported ONNX file (onnx_weights).

Same function as the graph, BatchNorm statistics fitted for fine-tuning, and `train --init MODEL.onnx`.
"""
from __future__ import annotations

import argparse
import copy

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fcn_road_seg.errors import ModelError
from fcn_road_seg.resources import default_model_path
from fcn_road_seg.training.args import add_train_args
from fcn_road_seg.training.calibrate import Calibration
from fcn_road_seg.training.export import DeployableFCN, contract_for, export_onnx
from fcn_road_seg.training.model import FCN, FCNConfig
from fcn_road_seg.training.onnx_weights import fit_batchnorm, model_from_onnx
from fcn_road_seg.training.train import _init_from, build_datasets


def _onnx_logits(path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ONNX Runtime's probability and its two-class logits, added as a second graph output.

    The logits: the last ConvTranspose, before the calibration tail.
    """
    model = onnx.load(str(path))
    logits = [n for n in model.graph.node if n.op_type == "ConvTranspose"][-1].output[0]
    model.graph.output.append(onnx.helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    prob, out = session.run(None, {model.graph.input[0].name: batch})
    return prob, out


def _kitti_batch(shared_data, contract) -> np.ndarray:
    frame = cv2.imread(str(shared_data / "kitti_road" / "training" / "image_2" / "um_000000.png"))[:, :, ::-1]
    return cv2.resize(frame, (contract.input_width, contract.input_height), interpolation=cv2.INTER_AREA)[None].copy()


def _net_input(wrapper: DeployableFCN, batch: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(batch).float().permute(0, 3, 1, 2)
    return x * wrapper.scale.view(1, 3, 1, 1) + wrapper.shift.view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def shipped(shared_data):
    net, contract = model_from_onnx(default_model_path())
    batch = _kitti_batch(shared_data, contract)
    norm = contract.normalization
    wrapper = DeployableFCN(net, norm["mean"], norm["std"], Calibration(**contract.calibration)).eval()
    return net, contract, batch, wrapper


@torch.no_grad()
def test_rebuilt_shipped_model_equals_onnxruntime_on_a_kitti_frame(shipped):
    net, contract, batch, wrapper = shipped
    assert contract.encoder == "efficientnet-lite0" and not net.training
    prob_ort, logits_ort = _onnx_logits(default_model_path(), batch)
    logits = net(_net_input(wrapper, batch)).numpy()
    assert np.abs(logits_ort).max() > 5  # a trained model's confident logits, not zeros
    np.testing.assert_allclose(logits, logits_ort, rtol=0, atol=2e-3)
    # With the contract's calibration the whole graph matches too.
    np.testing.assert_allclose(wrapper(torch.from_numpy(batch)).numpy(), prob_ort, rtol=0, atol=1e-4)


@torch.no_grad()
def test_fit_batchnorm_keeps_the_function_and_makes_training_mode_agree(shipped):
    net, _, batch, wrapper = shipped
    x = _net_input(wrapper, batch)
    before = net(x)
    net = copy.deepcopy(net)  # a training-mode pass updates the running statistics
    net.drop7.p, net.features._drop_connect = 0.0, 0.0  # only BatchNorm differs between the modes
    # The identity BatchNorms model_from_onnx sets: training mode (batch statistics) is another function.
    assert (copy.deepcopy(net).train()(x) - before).abs().max() > 1.0
    assert fit_batchnorm(net, [x]) == 49  # every folded BatchNorm of EfficientNet-Lite0
    torch.testing.assert_close(net(x), before, rtol=0, atol=2e-3)
    # Statistics fitted on this very batch: batch normalisation reproduces the eval-mode function.
    torch.testing.assert_close(net.train()(x), before, rtol=0, atol=2e-2)


def test_contract_naming_another_architecture_is_refused(tmp_path, tiny_net):
    contract = contract_for(FCNConfig(encoder="vgg16_bn", width_mult=0.125, fc_width=64), (96, 320))
    path = export_onnx(tiny_net, contract, tmp_path / "lying.onnx")
    with pytest.raises(ModelError, match="not an fcn_road_seg export of a FCN-8s head over a VGG16-BN"):
        model_from_onnx(path)


def test_train_init_from_an_onnx_export_reproduces_its_function(shared_data, tmp_path):
    torch.manual_seed(0)
    config = FCNConfig(encoder="vgg16_bn", width_mult=0.125, fc_width=32, dropout=0.0)
    trained = FCN(config)
    with torch.no_grad():  # every tensor distinct and non-zero, as after training (the exporter drops zero
        for name, tensor in trained.state_dict().items():  # biases and merges identical initialisers)
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif not name.endswith("num_batches_tracked"):
                tensor.add_(torch.randn_like(tensor) * (0.05 if "score" in name else 0.2))
    trained.eval()
    path = export_onnx(trained, contract_for(config, (96, 320)), tmp_path / "m.onnx")
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    args = parser.parse_args(["--data", str(shared_data / "kitti_road"), "--val-fraction", "0.5", "--input-size",
                              "96", "320", "--out", str(tmp_path / "run"), "--encoder", "vgg16_bn", "--width",
                              "0.125", "--fc-width", "32", "--init", str(path)])
    train_set, _, _ = build_datasets(args)
    model = FCN(config)
    _init_from(model, path, train_set)
    bn = model.features[1]  # its statistics come from the training crops, not the identity the graph implies
    assert not torch.allclose(bn.running_var, torch.full_like(bn.running_var, 1 - bn.eps))
    x = train_set[0][0][None]
    with torch.no_grad():
        expected = trained(x)
        torch.testing.assert_close(model.eval()(x), expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
