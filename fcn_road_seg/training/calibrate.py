"""Probability calibration of a trained FCN on a validation set (Platt scaling: a temperature and a bias).

The network's road logit ``z = l_road - l_non_road`` becomes ``sigmoid((z - bias) / temperature)``. Both are
fitted by minimising the pixel-wise negative log-likelihood on validation frames (scored at the label's full
resolution, as the evaluator does), and the export bakes them into the graph, so every runtime returns the
calibrated probability and the contract's default threshold 0.5 sits near the best (MaxF) threshold.
The transform is monotonic: MaxF and AP do not change, only which threshold reaches them.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from .datasets import IGNORE, ROAD, RoadEvalDataset
from .model import FCN

__all__ = ["Calibration", "road_logits", "fit_calibration", "calibrate"]

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
    """Road logits and labels of up to ``pixels_per_frame`` random valid pixels per frame, the logit map
    resized to the label's full size (bilinear) as the evaluator resizes the probability."""
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


def fit_calibration(logits: torch.Tensor, labels: torch.Tensor, fitted_on: str = "") -> Calibration:
    """Temperature and bias minimising the binary NLL of ``labels`` under ``sigmoid((logits - b) / T)``."""
    if logits.numel() == 0 or labels.min() == labels.max():
        raise ValueError("calibration needs valid pixels of both classes (road and non-road)")
    log_t = torch.zeros((), requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t, bias], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

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
    return Calibration(log_t.exp().item(), bias.item(), fitted_on, int(logits.numel()), before, after)


def calibrate(net: FCN, dataset: RoadEvalDataset, fitted_on: str) -> Calibration:
    """Fit the calibration of ``net`` on every frame of ``dataset``."""
    result = fit_calibration(*road_logits(net, dataset), fitted_on=fitted_on)
    log.info("calibration on %s: temperature %.3f, bias %.3f; NLL %.4f -> %.4f (%d pixels)", fitted_on,
             result.temperature, result.bias, result.nll_before, result.nll_after, result.pixels)
    return result
