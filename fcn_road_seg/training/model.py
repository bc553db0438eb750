"""FCN-32s/16s/8s over VGG16 (Long, Shelhamer, Darrell, CVPR 2015), in PyTorch.

Differences from the Caffe reference, chosen so the output is aligned to the input without crops:
fc6 is a 7x7 conv with padding 3 (instead of padding conv1_1 by 100), and every upsampling layer is a
transposed conv with kernel 2s, stride s, padding s/2, initialised to bilinear interpolation. Skip score
layers (pool4, pool3) start at zero, so training starts from the coarser net's prediction (the paper's
staged scheme folded into one run). The trunk is built exactly like torchvision's ``vgg16``/``vgg16_bn``
``features`` so their ImageNet weights load by name.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "FCNConfig",
    "FCN",
    "VARIANTS",
    "VGG16_URLS",
    "bilinear_kernel",
    "build_model",
    "load_imagenet_vgg16",
    "count_parameters",
    "count_flops",
]

log = logging.getLogger(__name__)

VARIANTS = ("fcn32s", "fcn16s", "fcn8s")
VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# torchvision's published ImageNet weights (torchvision.models.VGG16_Weights / VGG16_BN_Weights IMAGENET1K_V1).
VGG16_URLS = {
    False: "https://download.pytorch.org/models/vgg16-397923af.pth",
    True: "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
}


@dataclass(frozen=True)
class FCNConfig:
    """Architecture of one FCN; stored in checkpoints and (in part) in the ONNX contract."""

    variant: str = "fcn8s"
    num_classes: int = 2
    width_mult: float = 1.0
    fc_width: int = 4096
    batch_norm: bool = False
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if not 0.0 < self.width_mult <= 4.0:
            raise ValueError(f"width_mult must lie in (0, 4], got {self.width_mult}")
        if self.fc_width < 1 or self.num_classes < 2:
            raise ValueError("fc_width must be >= 1 and num_classes >= 2")

    def channels(self, base: int) -> int:
        return max(8, int(round(base * self.width_mult)))


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weight for a per-channel bilinear upsampling transposed conv, shape (C, C, k, k)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - torch.abs(og - center) / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt
    return weight


def _upsample(channels: int, factor: int) -> nn.ConvTranspose2d:
    layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return layer


def _vgg16_features(cfg: FCNConfig) -> nn.Sequential:
    """The 13-conv VGG16 trunk, layer for layer as torchvision's ``make_layers``."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out_ch = cfg.channels(int(v))
        layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
        in_ch = out_ch
    return nn.Sequential(*layers)


class FCN(nn.Module):
    """FCN over VGG16 returning per-class logits at the input's size (sides must be multiples of 32)."""

    def __init__(self, config: FCNConfig | None = None) -> None:
        super().__init__()
        self.config = config or FCNConfig()
        cfg = self.config
        nc = cfg.num_classes
        self.features = _vgg16_features(cfg)
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self._pool3_end, self._pool4_end = pools[2] + 1, pools[3] + 1

        c3, c4, c5 = cfg.channels(256), cfg.channels(512), cfg.channels(512)
        self.fc6 = nn.Conv2d(c5, cfg.fc_width, kernel_size=7, padding=3)
        self.fc7 = nn.Conv2d(cfg.fc_width, cfg.fc_width, kernel_size=1)
        self.drop6 = nn.Dropout2d(cfg.dropout)
        self.drop7 = nn.Dropout2d(cfg.dropout)
        self.relu = nn.ReLU(inplace=True)
        self.score_fr = nn.Conv2d(cfg.fc_width, nc, kernel_size=1)

        if cfg.variant == "fcn32s":
            self.upscore = _upsample(nc, 32)
        else:
            self.score_pool4 = nn.Conv2d(c4, nc, kernel_size=1)
            self.upscore2 = _upsample(nc, 2)
            if cfg.variant == "fcn16s":
                self.upscore = _upsample(nc, 16)
            else:
                self.score_pool3 = nn.Conv2d(c3, nc, kernel_size=1)
                self.upscore_pool4 = _upsample(nc, 2)
                self.upscore = _upsample(nc, 8)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for name in ("score_fr", "score_pool4", "score_pool3"):
            layer = getattr(self, name, None)
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"FCN input sides must be multiples of 32, got {h}x{w}")
        pool3 = self.features[: self._pool3_end](x)
        pool4 = self.features[self._pool3_end : self._pool4_end](pool3)
        pool5 = self.features[self._pool4_end :](pool4)
        h = self.drop6(self.relu(self.fc6(pool5)))
        h = self.drop7(self.relu(self.fc7(h)))
        score = self.score_fr(h)
        variant = self.config.variant
        if variant != "fcn32s":
            score = self.upscore2(score) + self.score_pool4(pool4)
            if variant == "fcn8s":
                score = self.upscore_pool4(score) + self.score_pool3(pool3)
        return self.upscore(score)


def build_model(**kwargs) -> FCN:
    """Build an FCN from FCNConfig keyword arguments."""
    return FCN(FCNConfig(**kwargs))


def load_imagenet_vgg16(model: FCN, source: str | Path = "torchvision") -> list[str]:
    """Initialise the trunk, fc6 and fc7 from torchvision's ImageNet VGG16 weights.

    ``source`` is ``"torchvision"`` (download the published weights through ``torch.hub``, cached in
    ``$TORCH_HOME``) or a path to a local ``.pth`` state dict with torchvision's keys. Conv weights are
    mapped by name; the classifier's fc6 (25088->4096) and fc7 (4096->4096) are reshaped into the 7x7 and
    1x1 conv layers, as the FCN paper does. Returns the names of the loaded parameters.
    """
    cfg = model.config
    if cfg.width_mult != 1.0 or cfg.fc_width != 4096:
        raise ValueError(
            "ImageNet VGG16 weights fit only the full network: use width_mult=1.0 and fc_width=4096 "
            f"(got width_mult={cfg.width_mult}, fc_width={cfg.fc_width}), or train the compact one from scratch"
        )
    if str(source) == "torchvision":
        url = VGG16_URLS[cfg.batch_norm]
        log.info("downloading ImageNet VGG16 weights from %s", url)
        state = torch.hub.load_state_dict_from_url(url, progress=True, map_location="cpu")
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights not found: {path}; pass a torchvision VGG16 .pth file")
        state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("features."):
            if key not in own or own[key].shape != value.shape:
                raise ValueError(
                    f"{key} {tuple(value.shape)} does not fit this model; "
                    f"use the {'vgg16_bn' if cfg.batch_norm else 'vgg16'} weights for batch_norm={cfg.batch_norm}"
                )
            loaded[key] = value
    fc_map = {"classifier.0": ("fc6", (4096, 512, 7, 7)), "classifier.3": ("fc7", (4096, 4096, 1, 1))}
    for src, (dst, shape) in fc_map.items():
        try:
            loaded[f"{dst}.weight"] = state[f"{src}.weight"].reshape(shape)
            loaded[f"{dst}.bias"] = state[f"{src}.bias"]
        except KeyError as err:
            raise ValueError(f"pretrained state dict lacks {err.args[0]}: is it a torchvision VGG16?") from err
    missing = [k for k in own if k.startswith("features.") and k not in loaded and "num_batches" not in k]
    if missing:
        raise ValueError(f"pretrained state dict lacks trunk weights: {', '.join(missing[:4])} ...")
    model.load_state_dict(loaded, strict=False)
    return sorted(loaded)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(config: FCNConfig, height: int, width: int) -> int:
    """Forward FLOPs (2 per multiply-add) at one input size, counted by PyTorch's FlopCounterMode.

    The model is built on the ``meta`` device, so counting costs no compute or memory.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = FCN(config).eval()
        x = torch.zeros(1, 3, height, width)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops()
