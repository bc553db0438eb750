"""Probability calibration of a trained FCN on a validation set: a bias and a temperature in the graph.

The network's road logit ``z = l_road - l_non_road`` becomes ``sigmoid((z - bias) / temperature)``, fitted on
validation frames scored at the label's full resolution (as the evaluator does): the bias is the logit of the
validation MaxF operating point, so the contract's default threshold 0.5 is the best one there; the
temperature then minimises the pixel-wise negative log-likelihood (temperature scaling). Plain NLL fitting of
both (Platt scaling) left the MaxF threshold near 0.36 on KITTI: the F1-best cut is not where the classes
are equally likely. The export bakes both into the graph, so every runtime returns the calibrated
probability. The transform is monotonic: MaxF and AP do not change, only which threshold reaches them.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from .datasets import RoadEvalDataset
from .samples import IGNORE, ROAD
from .model import FCN

__all__ = ["Calibration", "road_logits", "maxf_logit", "fit_calibration", "calibrate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """``sigmoid((z - bias) / temperature)``; NLL per valid pixel before and after, on ``fitted_on``."""

    temperature: float = 1.0
    bias: float = 0.0
    fitted_on: str = ""
    pixels: int = 0
    nll_before: float = float("nan")
    nll_after: float = float("nan")

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    def apply(self, probability: float) -> float:
        """Where an uncalibrated probability (e.g. a threshold) lands after calibration."""
        p = min(max(probability, 1e-7), 1 - 1e-7)
        return 1.0 / (1.0 + math.exp(-(math.log(p / (1 - p)) - self.bias) / self.temperature))

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


@torch.no_grad()
def road_logits(net: FCN, dataset: RoadEvalDataset, pixels_per_frame: int = 100_000,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Road logits and labels of up to ``pixels_per_frame`` random valid pixels per frame.

    The logit map is resized to the label's full size (bilinear) as the evaluator resizes the probability.
    """
    net.eval()
    gen = torch.Generator().manual_seed(seed)
    logits, labels = [], []
    for image, target in tqdm(DataLoader(dataset, batch_size=1), desc="calibrate", unit="frame", leave=False,
                              disable=None):
        out = net(image)
        z = (out[:, ROAD] - out[:, 1 - ROAD])[:, None]
        z = F.interpolate(z, size=target.shape[-2:], mode="bilinear", align_corners=False)[0, 0].flatten()
        t = target[0].flatten()
        valid = torch.nonzero(t != IGNORE).flatten()
        pick = valid[torch.randperm(valid.numel(), generator=gen)[:pixels_per_frame]]
        logits.append(z[pick])
        labels.append((t[pick] == ROAD).float())
    return torch.cat(logits), torch.cat(labels)


def maxf_logit(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Return the logit threshold with the largest F1 (road where ``logit >= threshold``) over these pixels.

    It is the validation MaxF operating point, halfway between the last pixel it takes and the next.
    """
    order = torch.argsort(logits, descending=True)
    z, y = logits[order], labels[order].double()
    tp = torch.cumsum(y, 0)
    f1 = 2 * tp / (torch.arange(1, len(y) + 1, dtype=torch.float64) + y.sum())  # 2TP / (TP + FP + P)
    i = int(torch.argmax(f1))
    return float(z[i] + z[i + 1]) / 2 if i + 1 < len(z) else float(z[i])


def fit_calibration(logits: torch.Tensor, labels: torch.Tensor, fitted_on: str = "") -> Calibration:
    """Fit the bias at the validation MaxF operating point and the temperature minimising the binary NLL.

    The bias makes that point land on probability 0.5, the contract's default threshold; the NLL is that of
    ``labels`` under ``sigmoid((z - b) / T)``.
    """
    if logits.numel() == 0 or labels.min() == labels.max():
        raise ValueError("calibration needs valid pixels of both classes (road and non-road)")
    bias = maxf_logit(logits, labels)
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        return F.binary_cross_entropy_with_logits((logits - bias) / log_t.exp(), labels)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nll()
        loss.backward()
        return loss

    before = float(F.binary_cross_entropy_with_logits(logits, labels))
    opt.step(closure)
    with torch.no_grad():
        after = float(nll())
    return Calibration(log_t.exp().item(), bias, fitted_on, int(logits.numel()), before, after)


def calibrate(net: FCN, dataset: RoadEvalDataset, fitted_on: str) -> Calibration:
    """Fit the calibration of ``net`` on every frame of ``dataset``."""
    result = fit_calibration(*road_logits(net, dataset), fitted_on=fitted_on)
    log.info("calibration on %s: temperature %.3f, bias %.3f; NLL %.4f -> %.4f (%d pixels)", fitted_on,
             result.temperature, result.bias, result.nll_before, result.nll_after, result.pixels)
    return result
