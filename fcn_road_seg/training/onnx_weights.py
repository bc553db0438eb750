"""Rebuild the PyTorch training model from an exported ONNX file (e.g. to fine-tune the shipped model).

The export folds every BatchNorm into the convolution before it: the graph holds ``W' = W * g / s`` as
``<conv>.weight`` and ``b' = beta - mean * g / s`` as ``<conv>.weight_bias`` (``s = sqrt(var + eps)``), so the
BatchNorm's own four tensors are gone. Any BatchNorm that maps the convolution ``W' x`` to ``W' x + b'`` in
eval mode reproduces the graph exactly; :func:`model_from_onnx` uses the identity one (weight 1, bias ``b'``,
mean 0, variance ``1 - eps``). In training mode a BatchNorm normalises by the batch's statistics instead, so
that identity would rescale every channel to unit variance: :func:`fit_batchnorm` re-expresses each folded
BatchNorm with the per-channel mean ``m`` and variance ``v`` of ``W' x`` on training frames (weight
``sqrt(v + eps)``, bias ``b' + m``): the same eval-mode function, and training-mode outputs close to it.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..contract import ModelContract, read_onnx_contract
from ..errors import ModelError
from .model import FCN, FCNConfig

__all__ = ["model_from_onnx", "fit_batchnorm", "onnx_checkpoint", "FOLDED_BIAS_SUFFIX"]

FOLDED_BIAS_SUFFIX = "_bias"  # the exporter names a folded conv's bias "<conv>.weight_bias"
_PREFIX = "net."  # DeployableFCN's attribute holding the FCN


def _folded_pairs(net: FCN) -> dict[str, tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Each convolution followed by a BatchNorm (registered right after it, the one it feeds), by conv name."""
    pairs, conv_name, conv = {}, None, None
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            conv_name, conv = name, module
        elif isinstance(module, nn.BatchNorm2d) and conv is not None:
            pairs[conv_name] = (conv, module)
            conv_name, conv = None, None
    return pairs


def model_from_onnx(path: str | Path) -> tuple[FCN, ModelContract]:
    """Return the FCN (eval mode) whose forward pass equals the ONNX graph's before its calibration tail.

    Also returns the graph's contract (size, normalisation, calibration, metrics). Raises ModelError when the
    file's weights do not fit the architecture its contract names.
    """
    import onnx
    from onnx import numpy_helper

    contract = read_onnx_contract(path)
    config = FCNConfig(variant=contract.variant, encoder=contract.encoder, width_mult=contract.width_mult,
                       fc_width=contract.fc_width)
    net = FCN(config).eval()
    weights = {i.name[len(_PREFIX):]: torch.from_numpy(numpy_helper.to_array(i).copy())
               for i in onnx.load(str(path)).graph.initializer if i.name.startswith(_PREFIX)}
    names = {id(m): n for n, m in net.named_modules()}
    folded: set[str] = set()
    for conv_name, (conv, bn) in _folded_pairs(net).items():
        bn_name = names[id(bn)]
        if f"{bn_name}.running_var" in weights:
            continue  # not folded: loads by name
        # Folded into the conv: a bias-free conv's folded bias is "<conv>.weight_bias"; a conv with a bias
        # keeps its name for the folded one (then the BatchNorm's bias is zero).
        name = f"{conv_name}.bias" if conv.bias is not None else f"{conv_name}.weight{FOLDED_BIAS_SUFFIX}"
        if name not in weights:
            raise ModelError(f"{path} has no folded bias for {conv_name}; it is not an fcn_road_seg export of a "
                             f"{config.name}")
        bias = weights.pop(name) if conv.bias is None else torch.zeros_like(bn.bias)
        with torch.no_grad():
            bn.weight.fill_(1.0)
            bn.bias.copy_(bias)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        folded.update(f"{bn_name}.{k}" for k in ("weight", "bias", "running_mean", "running_var"))
    state = net.state_dict()
    wrong = [f"{k} {tuple(v.shape)}" for k, v in weights.items() if k not in state or state[k].shape != v.shape]
    missing = [k for k in state if k not in weights and k not in folded and not k.endswith("num_batches_tracked")]
    if wrong or missing:
        raise ModelError(f"{path}: the weights do not fit the {config.name} its contract names (unexpected "
                         f"{', '.join(wrong[:3]) or 'none'}; missing {', '.join(missing[:3]) or 'none'})")
    net.load_state_dict(weights, strict=False)
    return net, contract


@torch.no_grad()
def fit_batchnorm(net: FCN, batches: Iterable[torch.Tensor]) -> int:
    """Re-express every folded BatchNorm of ``net`` (from :func:`model_from_onnx`) with statistics from ``batches``.

    The statistics are those of its convolution's output on ``batches`` (normalised NCHW input); the eval-mode
    function does not change. Returns the number of BatchNorm layers set.
    """
    pairs = list(_folded_pairs(net).values())  # also unfolded ones: the same re-expression is exact there
    sums: dict[int, list[torch.Tensor | int]] = {}

    def hook(conv, _inputs, out):
        x = out.detach().double()
        entry = sums.setdefault(id(conv), [0, 0, 0])
        entry[0] += x.sum(dim=(0, 2, 3))
        entry[1] += (x * x).sum(dim=(0, 2, 3))
        entry[2] += x.numel() // x.shape[1]

    handles = [conv.register_forward_hook(hook) for conv, _ in pairs]
    was_training = net.training
    net.eval()
    try:
        for x in batches:
            net(x)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    for conv, bn in pairs:
        total, squares, count = sums[id(conv)]
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0.0)
        # Eval mode computes a * W'x + c; keep that function with (m, v) as the running statistics.
        a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        c = bn.bias - bn.running_mean * a
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(a * torch.sqrt(var + bn.eps))
        bn.bias.copy_(c + a * mean)
    return len(pairs)


def onnx_checkpoint(net: FCN, contract: ModelContract, source: str | Path) -> dict[str, Any]:
    """Build a checkpoint dict (the keys ``train --init`` and ``export`` read) for a model rebuilt from ``source``."""
    from dataclasses import asdict

    return {"model": net.state_dict(), "config": asdict(net.config), "epoch": -1,
            "input_size": [contract.input_height, contract.input_width], "normalization": contract.normalization,
            "training_data": contract.training_data, "metrics": dict(contract.metrics),
            "source": str(source)}
