"""Streaming evaluation state shared by the offline evaluator and the live ``road_evaluator`` node.

Memory does not grow with the number of frames: metrics are 256-bin histograms (``metrics.RoadMetrics``),
latencies go into fixed log-spaced histograms, and only a few downscaled tiles of the best and worst
frames are kept for the montage.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import cv2
import numpy as np

from .metrics import RoadMetrics, quantize_probability

__all__ = ["LatencyHistogram", "Evaluation", "frame_iou", "error_tile", "label_banner", "TILE_WIDTH", "LABEL_HEIGHT"]

TILE_WIDTH = 400
LABEL_HEIGHT = 24  # the white strip above each tile that carries its name and IoU
_LAT_EDGES = np.geomspace(1e-3, 1e5, 1601)  # ms; neighbouring edges differ by 1.2 %


class LatencyHistogram:
    """Latency percentiles in constant memory: counts over log-spaced bins (1.2 % resolution)."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(_LAT_EDGES) + 1, np.int64)
        self.total = 0.0
        self.n = 0

    def add(self, ms: float) -> None:
        self.counts[np.searchsorted(_LAT_EDGES, ms)] += 1
        self.total += ms
        self.n += 1

    def percentile(self, q: float) -> float:
        """Upper edge of the bin holding the q-th percentile (ms)."""
        rank = int(np.ceil(q / 100.0 * self.n))
        i = int(np.searchsorted(np.cumsum(self.counts), max(rank, 1)))
        return float(_LAT_EDGES[min(i, len(_LAT_EDGES) - 1)])

    def summary(self) -> dict[str, float]:
        return {"p50": self.percentile(50), "p95": self.percentile(95), "p99": self.percentile(99),
                "mean": self.total / self.n, "frames": self.n}


def frame_iou(q: np.ndarray, road: np.ndarray, valid: np.ndarray, threshold: float) -> float | None:
    """IoU of one frame at ``threshold`` over valid pixels; None when GT and prediction are both empty."""
    pred = q >= int(np.ceil(threshold * 255 - 1e-9))
    inter = np.count_nonzero(pred & road & valid)
    union = np.count_nonzero((pred | road) & valid)
    return inter / union if union else None


def error_tile(q: np.ndarray, road: np.ndarray, valid: np.ndarray, threshold: float, image: np.ndarray | None,
               label: str) -> np.ndarray:
    """Downscaled BGR picture of one frame under a banner with ``label``.

    TP green, FP red, FN blue over the image, grey GT without one.
    """
    pred = q >= int(np.ceil(threshold * 255 - 1e-9))
    base = image if image is not None else cv2.cvtColor(np.where(valid, 96, 0).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    colour = np.zeros_like(base)
    colour[pred & road & valid] = (0, 200, 0)
    colour[pred & ~road & valid] = (0, 0, 255)
    colour[~pred & road & valid] = (255, 0, 0)
    tinted = np.where(colour.any(axis=2, keepdims=True), cv2.addWeighted(base, 0.45, colour, 0.55, 0), base)
    h, w = tinted.shape[:2]
    tile = cv2.resize(tinted, (TILE_WIDTH, max(1, round(h * TILE_WIDTH / w))), interpolation=cv2.INTER_AREA)
    return np.vstack([label_banner(label, TILE_WIDTH), tile])


def label_banner(text: str, width: int) -> np.ndarray:
    """``text`` in black on a white strip ``LABEL_HEIGHT`` px high: readable over any frame.

    (Outlined text drawn on the picture came out garbled with OpenCV 5, whose glyph advance depends on the stroke
    thickness.)
    """
    banner = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
    cv2.putText(banner, text, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return banner


@dataclass
class Evaluation:
    """Everything an evaluation accumulates; ``add`` one frame at a time, then write a report."""

    threshold: float = 0.5
    keep: int = 3  # best and worst frames kept for the montage
    overall: RoadMetrics = field(init=False)
    categories: dict[str, RoadMetrics] = field(default_factory=dict)
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    unmatched_images: int = 0
    unmatched_gt: int = 0
    wall_s: float = 0.0
    _best: list = field(default_factory=list)  # min-heap of (iou, seq, name, tile): the highest IoUs
    _worst: list = field(default_factory=list)  # min-heap of (-iou, seq, name, tile): the lowest IoUs
    _seq: itertools.count = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.overall = RoadMetrics(self.threshold)

    @property
    def frames(self) -> int:
        return self.overall.frames

    def add(self, name: str, category: str, probability: np.ndarray, road: np.ndarray, valid: np.ndarray,
            image: np.ndarray | None = None, timings_ms: dict[str, float] | None = None) -> float | None:
        """Add one frame (probability float [0,1] or uint8); returns its IoU at the threshold."""
        q = quantize_probability(probability)
        self.overall.update(q, road, valid)
        self.categories.setdefault(category, RoadMetrics(self.threshold)).update(q, road, valid)
        for stage, ms in (timings_ms or {}).items():
            self.latency.setdefault(stage, LatencyHistogram()).add(ms)
        iou = frame_iou(q, road, valid, self.threshold)
        if iou is not None and self.keep:
            self._rank(name, iou, q, road, valid, image)
        return iou

    def _rank(self, name, iou, q, road, valid, image) -> None:
        seq = next(self._seq)
        for heap, key in ((self._best, iou), (self._worst, -iou)):
            if len(heap) < self.keep or key > heap[0][0]:
                tile = error_tile(q, road, valid, self.threshold, image, f"{name}  IoU {iou:.3f}")
                item = (key, seq, name, tile)
                heapq.heappush(heap, item) if len(heap) < self.keep else heapq.heapreplace(heap, item)

    def skip(self, name: str, reason: str) -> None:
        """Count a frame that could not be evaluated (corrupt, undecodable, wrong size)."""
        self.skipped += 1
        if len(self.skipped_examples) < 10:
            self.skipped_examples.append(f"{name}: {reason}")

    def best(self) -> list[tuple[str, float, np.ndarray]]:
        """(name, IoU, tile) of the best frames, best first."""
        return [(n, k, t) for k, _, n, t in sorted(self._best, key=lambda x: (-x[0], x[1]))]

    def worst(self) -> list[tuple[str, float, np.ndarray]]:
        """(name, IoU, tile) of the worst frames, worst first."""
        return [(n, -k, t) for k, _, n, t in sorted(self._worst, key=lambda x: (-x[0], x[1]))]
