"""KITTI road benchmark metrics, one implementation for training, evaluation and the live evaluator.

Semantics follow the KITTI road devkit (``evaluateRoad.py`` / ``computeBaseline.py``): road probability is
read as 8 bits (``q = round(255 p)``, as the devkit reads probability PNGs), thresholds are ``i/255`` for
i = 0..255, a pixel is predicted road at threshold ``t`` when ``q/255 >= t``, and TP/FP/FN are summed over
all images before any ratio is taken. MaxF is the largest F1 over thresholds, AP the 11-point interpolated
precision (recall 0, 0.1, ..., 1), and PRE/REC/FPR/FNR are reported at the MaxF threshold. IoU is taken
at the configured threshold. Ignore pixels are excluded everywhere. Memory is two 256-bin histograms,
whatever the number of frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["mask_threshold", "RoadMetrics", "RoadScores", "quantize_probability", "NUM_THRESHOLDS"]

NUM_THRESHOLDS = 256


def quantize_probability(probability: np.ndarray) -> np.ndarray:
    """Road probability in [0, 1] (float) -> uint8 0..255, the form metrics and the node's topic use."""
    if probability.dtype == np.uint8:
        return probability
    return np.clip(np.rint(probability * 255.0), 0, 255).astype(np.uint8)


def mask_threshold(threshold_q: float) -> float:
    """Return the probability threshold whose mask is exactly the devkit's for a quantised threshold ``i/255``.

    It is a threshold for ``--threshold`` or the node's ``threshold``; ``threshold_maxf`` is such an ``i/255``. The
    devkit's mask is ``q >= i`` with q = round(255 p), so q >= i means p >= (i - 0.5)/255. The devkit's 1.0 becomes
    0.998, a value the pipeline accepts.

    Returned as the smallest float32 (the pipeline compares float32 probabilities) whose q is i: at an exact
    tie, q rounds half to even, so for odd i the float32 nearest (i - 0.5)/255 still has q = i - 1.
    """
    i = min(max(round(threshold_q * 255.0), 1), NUM_THRESHOLDS - 1)
    t = np.float32((i - 0.5) / 255.0)
    up, down = np.float32(1.0), np.float32(0.0)
    while quantize_probability(np.array([t])) < i:
        t = np.nextafter(t, up)
    while quantize_probability(np.array([np.nextafter(t, down)])) >= i:
        t = np.nextafter(t, down)
    return float(t)


@dataclass(frozen=True)
class RoadScores:
    """Benchmark numbers; all ratios in [0, 1]."""

    MaxF: float
    AP: float
    PRE: float
    REC: float
    FPR: float
    FNR: float
    IoU: float
    threshold_maxf: float
    threshold: float
    frames: int
    pixels: int

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


class RoadMetrics:
    """Streaming accumulator of road/non-road probability histograms over valid pixels."""

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self.threshold = threshold
        self.pos_hist = np.zeros(NUM_THRESHOLDS, dtype=np.int64)  # road pixels by quantised probability
        self.neg_hist = np.zeros(NUM_THRESHOLDS, dtype=np.int64)  # non-road pixels likewise
        self.frames = 0

    def update(self, probability: np.ndarray, road: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one frame: probability (float [0,1] or uint8), ground-truth road (bool), valid (bool) maps."""
        if probability.shape != road.shape or (valid is not None and valid.shape != road.shape):
            raise ValueError(
                f"probability {probability.shape}, road {road.shape} and valid "
                f"{None if valid is None else valid.shape} maps must have the same size"
            )
        q = quantize_probability(probability)
        road = road.astype(bool, copy=False)
        if valid is None:
            pos, neg = q[road], q[~road]
        else:
            valid = valid.astype(bool, copy=False)
            pos, neg = q[road & valid], q[~road & valid]
        self.pos_hist += np.bincount(pos, minlength=NUM_THRESHOLDS)
        self.neg_hist += np.bincount(neg, minlength=NUM_THRESHOLDS)
        self.frames += 1

    def merge(self, other: RoadMetrics) -> None:
        """Add another accumulator's counts (e.g. from a per-category split)."""
        self.pos_hist += other.pos_hist
        self.neg_hist += other.neg_hist
        self.frames += other.frames

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """TP, FP, FN, TN at each of the 256 thresholds i/255."""
        # FN(i): road pixels with q < i; FP(i): non-road pixels with q >= i.
        fn = np.concatenate(([0], np.cumsum(self.pos_hist)[:-1]))
        fp = np.cumsum(self.neg_hist[::-1])[::-1]
        tp = self.pos_hist.sum() - fn
        tn = self.neg_hist.sum() - fp
        return tp, fp, fn, tn

    def compute(self) -> RoadScores:
        """Scores over everything added so far; raises ValueError when no road pixel was seen."""
        pos_num = int(self.pos_hist.sum())
        if pos_num == 0:
            raise ValueError("no valid road pixels were accumulated: MaxF/AP are undefined for this data")
        tp, fp, fn, tn = (c.astype(np.float64) for c in self.counts())
        recall = tp / pos_num
        precision = tp / (tp + fp + 1e-10)
        keep = ~((recall == 0) & (precision == 0))
        idx = np.flatnonzero(keep)
        r, p = recall[keep], precision[keep]
        ap = float(np.mean([p[r >= level].max() if (r >= level).any() else 0.0 for level in np.linspace(0, 1, 11)]))
        f = 2 * p * r / (p + r + 1e-10)
        best = int(np.argmax(f))
        i = idx[best]
        q_thr = int(np.ceil(self.threshold * 255 - 1e-9))
        iou = tp[q_thr] / (tp[q_thr] + fp[q_thr] + fn[q_thr]) if tp[q_thr] + fp[q_thr] + fn[q_thr] else 0.0
        return RoadScores(
            MaxF=float(f[best]),
            AP=ap,
            PRE=float(p[best]),
            REC=float(r[best]),
            FPR=float(fp[i] / (fp[i] + tn[i])) if fp[i] + tn[i] else 0.0,
            FNR=float(fn[i] / (fn[i] + tp[i])),
            IoU=float(iou),
            threshold_maxf=i / 255.0,
            threshold=self.threshold,
            frames=self.frames,
            pixels=pos_num + int(self.neg_hist.sum()),
        )
