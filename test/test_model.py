import pytest
import torch
import torch.nn.functional as F

from fcn_road_seg.training.model import (
    FCN,
    VARIANTS,
    FCNConfig,
    bilinear_kernel,
    count_flops,
    count_parameters,
)
from fcn_road_seg.training.pretrained import load_imagenet_vgg16

SMALL = dict(width_mult=0.125, fc_width=32)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [(32, 32), (64, 96), (96, 320), (160, 128)])
def test_output_aligned_to_input(variant, size):
    net = FCN(FCNConfig(variant=variant, **SMALL)).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, *size))
    assert out.shape == (2, 2, *size)


def test_rejects_sides_not_multiple_of_32():
    with pytest.raises(ValueError, match="multiples of 32"):
        FCN(FCNConfig(**SMALL))(torch.randn(1, 3, 100, 96))


def test_skip_layers_start_at_zero_so_fcn8s_equals_its_fcn32s_path():
    """Freshly built, FCN-8s's pool4/pool3 skips add nothing: its output is the stride-32 score alone.

    That score is upsampled through its 2x, 2x and 8x layers (score_fr is given weights so that output is not all zero).
    """
    torch.manual_seed(1)
    net = FCN(FCNConfig(variant="fcn8s", **SMALL)).eval()
    with torch.no_grad():
        net.score_fr.weight.normal_(0, 0.5)
        x = torch.randn(2, 3, 128, 192)
        out = net(x)
        _, _, top = net.encode(x)
        coarse = net.upscore(net.upscore_pool4(net.upscore2(net.score_fr(top))))
    assert out.abs().max() > 1.0 and torch.equal(out, coarse)


def test_bilinear_kernel_matches_interpolation_in_the_interior():
    for factor in (2, 8, 32):
        k = 2 * factor
        w = bilinear_kernel(3, k)
        assert w.shape == (3, 3, k, k)
        assert torch.count_nonzero(w[0, 1]) == 0  # no cross-channel mixing
        x = torch.rand(1, 3, 6, 7)
        up = F.conv_transpose2d(x, w, stride=factor, padding=factor // 2)
        ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        assert up.shape == ref.shape
        m = factor  # borders differ (zero padding vs edge replication)
        assert torch.allclose(up[..., m:-m, m:-m], ref[..., m:-m, m:-m], atol=1e-5)


def test_upsampling_layers_are_initialised_bilinear():
    net = FCN(FCNConfig(variant="fcn8s", **SMALL))
    assert torch.equal(net.upscore.weight, bilinear_kernel(2, 16))
    assert torch.equal(net.upscore2.weight, bilinear_kernel(2, 4))


# VGG16 (configuration D of Simonyan & Zisserman 2015, Table 1): 3x3 convolutions per stage, (in, out) channels.
VGG16_STAGES = [[(3, 64), (64, 64)], [(64, 128), (128, 128)], [(128, 256), (256, 256), (256, 256)],
                [(256, 512), (512, 512), (512, 512)], [(512, 512)] * 3]


def test_full_fcn8s_size_matches_the_paper():
    """Parameters and FLOPs of the full FCN-8s, derived here from the layer table of Long et al. 2015.

    The layers: VGG16 convolutions, fc6 as a 7x7 and fc7 as a 1x1 convolution, 2-class score layers on fc7/pool4/pool3,
    bias-free 2x, 2x, 8x transposed convolutions. 134,271,430 = VGG16's 138,357,544 less its 1000-class fc8 (4,097,000),
    plus 9,734 score and 1,152 upsampling weights: the "134.27 M" that `model-info` prints (test_cli) and README quotes.
    FLOPs count 2 per multiply-add, as PyTorch's FlopCounterMode (count_flops).
    """
    conv_params = sum(9 * cin * cout + cout for stage in VGG16_STAGES for cin, cout in stage)
    fc = 512 * 7 * 7 * 4096 + 4096 + 4096 * 4096 + 4096
    score = (4096 + 1) * 2 + (512 + 1) * 2 + (256 + 1) * 2
    upsampling = 2 * 2 * (4 * 4 + 4 * 4 + 16 * 16)
    cfg = FCNConfig(variant="fcn8s")
    with torch.device("meta"):
        params = count_parameters(FCN(cfg))
    assert params == conv_params + fc + score + upsampling == 134_271_430
    assert conv_params + fc + 4096 * 1000 + 1000 == 138_357_544  # VGG16's published parameter count

    def conv_flops(k, cin, cout, h, w):
        return 2 * k * k * cin * cout * h * w

    h, w = 384, 1248
    flops = sum(conv_flops(3, cin, cout, h >> s, w >> s) for s, stage in enumerate(VGG16_STAGES)
                for cin, cout in stage)
    head = ((7, 512, 4096), (1, 4096, 4096), (1, 4096, 2), (4, 2, 2))
    flops += sum(conv_flops(k, cin, cout, h >> 5, w >> 5) for k, cin, cout in head)
    flops += conv_flops(1, 512, 2, h >> 4, w >> 4) + conv_flops(4, 2, 2, h >> 4, w >> 4)  # pool4 skip, 2x up
    flops += conv_flops(1, 256, 2, h >> 3, w >> 3) + conv_flops(16, 2, 2, h >> 3, w >> 3)  # pool3 skip, 8x up
    assert count_flops(cfg, h, w) == flops  # 405.1 GFLOP (README, docs/performance.md)


def _torchvision_like_state(batch_norm: bool) -> dict[str, torch.Tensor]:
    """Build a state dict with torchvision vgg16(_bn)'s keys and shapes, random values (no download)."""
    state, idx, in_ch = {}, 0, 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(v, in_ch, 3, 3)
        state[f"features.{idx}.bias"] = torch.randn(v)
        if batch_norm:
            for name in ("weight", "bias", "running_mean", "running_var"):
                state[f"features.{idx + 1}.{name}"] = torch.rand(v)
            state[f"features.{idx + 1}.num_batches_tracked"] = torch.tensor(5)
            idx += 1
        idx += 2
        in_ch = v
    for i, (o, n) in {0: (4096, 25088), 3: (4096, 4096), 6: (1000, 4096)}.items():
        state[f"classifier.{i}.weight"] = torch.randn(o, n)
        state[f"classifier.{i}.bias"] = torch.randn(o)
    return state


@pytest.mark.parametrize("batch_norm", [False, True])
def test_imagenet_mapping_by_name_and_fc_reshape(tmp_path, batch_norm):
    state = _torchvision_like_state(batch_norm)
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    net = FCN(FCNConfig(variant="fcn8s", encoder="vgg16_bn" if batch_norm else "vgg16"))
    loaded = load_imagenet_vgg16(net, path)
    own = net.state_dict()
    assert torch.equal(own["features.0.weight"], state["features.0.weight"])
    last_conv = "features.40.weight" if batch_norm else "features.28.weight"
    assert torch.equal(own[last_conv], state[last_conv])
    assert torch.equal(own["fc6.weight"], state["classifier.0.weight"].view(4096, 512, 7, 7))
    assert torch.equal(own["fc7.weight"], state["classifier.3.weight"].view(4096, 4096, 1, 1))
    assert torch.equal(own["fc6.bias"], state["classifier.0.bias"])
    assert "score_fr.weight" not in loaded and torch.count_nonzero(own["score_fr.weight"]) == 0
    # fc6 as a conv computes exactly the classifier's first layer on a 7x7 pool5 map.
    pool5 = torch.randn(1, 512, 7, 7)
    conv = F.conv2d(pool5, own["fc6.weight"], own["fc6.bias"])[0, :, 0, 0]
    linear = F.linear(pool5.flatten(), state["classifier.0.weight"], state["classifier.0.bias"])
    assert torch.allclose(conv, linear, rtol=1e-4, atol=1e-3)


def test_imagenet_init_refuses_compact_models(tmp_path):
    with pytest.raises(ValueError, match="width_mult=1.0"):
        load_imagenet_vgg16(FCN(FCNConfig(**SMALL)), tmp_path / "missing.pth")


def test_imagenet_init_refuses_wrong_trunk(tmp_path):
    path = tmp_path / "vgg16_bn.pth"
    torch.save(_torchvision_like_state(batch_norm=True), path)
    with pytest.raises(ValueError, match="does not fit"):
        load_imagenet_vgg16(FCN(FCNConfig(encoder="vgg16")), path)
