"""Run a segmenter on frames (sanity and latency), and compare a candidate's masks with a reference's.

``measure`` runs one ``RoadSegmenter`` through the product's own path (``segment``) and keeps the first pass's
probabilities and masks; ``compare`` sets two measurements side by side, per frame, at full frame size.
The doctor compares ONNX Runtime (the reference) with the TensorRT FP16 engine and with the FP16 ONNX copy;
tests compare ONNX Runtime with itself, with a shifted threshold, or with a fake TensorRT.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..pipeline import RoadSegmenter
from ..trt.check import MIN_MASK_AGREEMENT

__all__ = ["Frame", "Measurement", "Comparison", "percentiles", "measure", "compare", "compare_segmenters"]

Frame = tuple[str, np.ndarray]  # (name, HxWx3 uint8 BGR frame)


def percentiles(values: list[float]) -> dict:
    """p50 and p95 of ``values`` (milliseconds), and how many there were."""
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "n": len(values)}


@dataclass
class Measurement:
    """One segmenter on the frames: the first pass's results, and the timings of every timed pass."""

    backend: str
    device: str
    threshold: float
    names: list[str] = field(default_factory=list)
    probabilities: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    infer_ms: list[float] = field(default_factory=list)
    pipeline_ms: list[float] = field(default_factory=list)
    backend_stage_ms: dict[str, list[float]] = field(default_factory=dict)  # e.g. TensorRT's h2d/execute/d2h

    def frames(self) -> list[dict]:
        """Per frame: road fraction of the mask, probability range, and whether every value is finite."""
        out = []
        for name, prob, mask in zip(self.names, self.probabilities, self.masks):
            finite = bool(np.isfinite(prob).all())
            out.append({"frame": name, "road_fraction": round(float(np.count_nonzero(mask)) / mask.size, 4),
                        "probability_min": round(float(np.nanmin(prob)), 5),
                        "probability_max": round(float(np.nanmax(prob)), 5), "finite": finite})
        return out

    def problems(self) -> list[str]:
        """Frames whose probability is not a probability (NaN/inf, or outside [0, 1])."""
        bad = []
        for f in self.frames():
            if not f["finite"] or f["probability_min"] < 0.0 or f["probability_max"] > 1.0:
                bad.append(f"{self.backend} on {f['frame']}: probability not finite or outside [0, 1] "
                           f"(min {f['probability_min']}, max {f['probability_max']}, finite {f['finite']})")
        return bad

    def latency_ms(self) -> dict:
        out = {"infer": percentiles(self.infer_ms), "pipeline": percentiles(self.pipeline_ms)}
        out.update({f"backend_{k}": percentiles(v) for k, v in self.backend_stage_ms.items()})
        return out

    def to_dict(self) -> dict:
        return {"backend": self.backend, "device": self.device, "threshold": self.threshold,
                "frames": self.frames(), "latency_ms": self.latency_ms()}


def measure(segmenter: RoadSegmenter, frames: list[Frame], *, repeat: int = 1, desc: str | None = None
            ) -> Measurement:
    """Segment every frame ``repeat`` times after one untimed warm-up call; keep the first pass's results.

    Infer time is the pipeline's own ``timings_ms["infer"]``; pipeline time is the whole ``segment`` call.
    """
    from tqdm import tqdm

    if not frames:
        raise ValueError("measuring a segmenter needs at least one frame")
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    backend = segmenter.backend
    result = Measurement(backend=backend.name, device=str(backend.device), threshold=segmenter.threshold)
    segmenter.segment(frames[0][1])  # warm-up: first-call allocations, lazy kernel selection
    work = [(p, name, frame) for p in range(repeat) for name, frame in frames]
    for pass_index, name, frame in tqdm(work, desc=desc or backend.name, unit="frame", disable=None, leave=False):
        t0 = time.perf_counter()
        mask = segmenter.segment(frame)
        result.pipeline_ms.append((time.perf_counter() - t0) * 1e3)
        result.infer_ms.append(mask.timings_ms["infer"])
        for stage, ms in (getattr(backend, "last_timings_ms", None) or {}).items():
            result.backend_stage_ms.setdefault(stage, []).append(float(ms))
        if pass_index == 0:
            result.names.append(name)
            result.probabilities.append(mask.probability)
            result.masks.append(mask.mask)
    return result


@dataclass(frozen=True)
class Comparison:
    """A candidate's masks against a reference's on the same frames."""

    reference: str
    candidate: str
    per_frame: list[dict]  # {"frame", "agreement", "max_prob_diff"}
    required: float  # every frame's agreement must reach this

    @property
    def min_agreement(self) -> float:
        return min(f["agreement"] for f in self.per_frame)

    @property
    def mean_agreement(self) -> float:
        return float(np.mean([f["agreement"] for f in self.per_frame]))

    @property
    def max_prob_diff(self) -> float:
        return max(f["max_prob_diff"] for f in self.per_frame)

    @property
    def worst_frame(self) -> str:
        return min(self.per_frame, key=lambda f: f["agreement"])["frame"]

    @property
    def ok(self) -> bool:
        return self.min_agreement >= self.required

    def failure(self) -> str | None:
        """Why the candidate fails, or None."""
        if self.ok:
            return None
        return (f"{self.candidate} masks agree with {self.reference} on only {100 * self.min_agreement:.3f}% of the "
                f"pixels of {self.worst_frame} (need >= {100 * self.required:.1f}% on every frame)")

    def line(self) -> str:
        return (f"mask agreement {self.candidate} vs {self.reference}: min {100 * self.min_agreement:.3f}% "
                f"({self.worst_frame}), mean {100 * self.mean_agreement:.3f}%, max |dp| {self.max_prob_diff:.4f}"
                f" -> {'OK' if self.ok else 'FAIL'} (need >= {100 * self.required:.1f}% per frame)")

    def to_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "per_frame": self.per_frame,
                "min_agreement": self.min_agreement, "mean_agreement": self.mean_agreement,
                "max_prob_diff": self.max_prob_diff, "worst_frame": self.worst_frame, "required": self.required,
                "ok": self.ok}


def compare(reference: Measurement, candidate: Measurement, *, required: float = MIN_MASK_AGREEMENT,
            names: tuple[str, str] | None = None) -> Comparison:
    """Per frame: the fraction of pixels whose mask value is the same, and the largest probability difference."""
    if reference.names != candidate.names:
        raise ValueError(f"the measurements ran on different frames: {reference.names} vs {candidate.names}")
    per_frame = []
    for name, p_ref, m_ref, p_cand, m_cand in zip(reference.names, reference.probabilities, reference.masks,
                                                  candidate.probabilities, candidate.masks):
        per_frame.append({"frame": name, "agreement": float(np.count_nonzero(m_ref == m_cand)) / m_ref.size,
                          "max_prob_diff": float(np.abs(p_ref - p_cand).max())})
    ref_name, cand_name = names or (reference.backend, candidate.backend)
    return Comparison(reference=ref_name, candidate=cand_name, per_frame=per_frame, required=required)


def compare_segmenters(reference: RoadSegmenter, candidate: RoadSegmenter, frames: list[Frame], *,
                       repeat: int = 1, required: float = MIN_MASK_AGREEMENT
                       ) -> tuple[Comparison, Measurement, Measurement]:
    """Measure both segmenters on ``frames`` and compare the candidate's masks with the reference's."""
    ref = measure(reference, frames, repeat=repeat)
    cand = measure(candidate, frames, repeat=repeat)
    return compare(ref, cand, required=required), ref, cand
