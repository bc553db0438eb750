"""RoadSegmenter: the one path a frame takes, shared by the node, the CLI, the evaluator and the benchmarks.

frame (HxWx3 uint8, RGB or BGR, any size) -> resize to the contract's network size -> backend ->
probability resized back to the frame's size -> (dense-CRF refinement, when asked for) -> mask (0/255 at the
threshold) -> overlay on request. With test-time flip (``tta="flip"``) the network also runs on the mirrored
frame and the two road probabilities are averaged (the mirror's mirrored back): two inferences per frame.
A RoadSegmenter may be shared by threads: one frame at a time goes through its batch buffer and backend.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .backends import Backend, open_backend
from .contract import ModelContract
from .errors import FrameSizeError, InputImageError
from .preprocess import preprocess
from .refine import CrfConfig, DenseCrfRefiner

__all__ = ["RoadSegmenter", "RoadMask", "overlay", "MAX_UPSCALE", "MIN_SIDE", "TTA_MODES"]

# A frame is refused when the network would have to enlarge it more than this (it would invent detail),
# or when a side is shorter than MIN_SIDE pixels.
MAX_UPSCALE = 4.0
MIN_SIDE = 32
OVERLAY_COLOR_BGR = (0, 255, 0)
TTA_MODES = ("none", "flip")  # test-time augmentation: none, or the average with the horizontal mirror


@dataclass
class RoadMask:
    """The result for one frame, at the frame's size."""

    probability: np.ndarray  # float32 HxW in [0, 1]
    mask: np.ndarray  # uint8 HxW, 0 or 255
    timings_ms: dict[str, float] = field(default_factory=dict)
    overlay: np.ndarray | None = None  # uint8 HxWx3 in the frame's channel order


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5, color_order: str = "bgr") -> np.ndarray:
    """Blend a green road tint into ``frame`` where ``mask`` is set; returns a new image."""
    color = OVERLAY_COLOR_BGR if color_order.lower() == "bgr" else OVERLAY_COLOR_BGR[::-1]
    tint = np.empty_like(frame)
    tint[0] = color  # one row, then whole rows: ~50x faster than broadcasting a 3-tuple over every pixel
    tint[1:] = tint[0]
    blended = cv2.addWeighted(frame, 1.0 - alpha, tint, alpha, 0.0, dst=tint)
    out = frame.copy()
    cv2.copyTo(blended, mask, out)  # where mask != 0; OpenCV's masked copy, ~50x faster than np.copyto(where=)
    return out


class RoadSegmenter:
    """Segment road in camera frames with a model that carries its contract."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        backend: str | Backend = "auto",
        threshold: float | None = None,
        refine: CrfConfig | None = None,
        tta: str = "none",
        **backend_options,
    ) -> None:
        """Open ``model`` (default: the shipped model) with ``backend`` (a name, or an opened Backend).

        ``refine``: refine every probability map with a dense CRF of these parameters (needs the ``crf``
        extra; raises MissingExtraError naming it when absent). None (default): no refinement.
        ``tta``: one of TTA_MODES; "flip" averages the frame's road probability with its mirror's (2x inference).
        """
        self.refine = refine
        self._refiner = DenseCrfRefiner(refine) if refine is not None else None
        if isinstance(backend, str):
            if model is None:
                from .resources import default_model_path

                model = default_model_path()
            backend = open_backend(model, backend, **backend_options)
        self.backend: Backend = backend
        self.contract: ModelContract = backend.contract
        self.threshold = self.contract.default_threshold if threshold is None else threshold
        self._net_hw = (self.contract.input_height, self.contract.input_width)
        self._batch = np.empty(self.contract.input_shape, dtype=np.uint8)
        self._mirror = np.empty_like(self._batch)
        self._busy = threading.Lock()  # the batch buffers and a backend's output buffer serve one frame at a time
        self.tta = tta

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {value}")
        self._threshold = float(value)

    @property
    def tta(self) -> str:
        return self._tta

    @tta.setter
    def tta(self, value: str) -> None:
        if value not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {value!r}")
        self._tta = value

    def _infer(self) -> np.ndarray:
        """Road probability at the network size for the preprocessed batch (with its mirror's, under tta)."""
        prob = self.backend.infer(self._batch)[0]
        if self._tta == "flip":
            prob = prob.copy()  # a backend may hand out its output buffer, which the next call overwrites
            np.copyto(self._mirror, self._batch[:, :, ::-1])
            prob += self.backend.infer(self._mirror)[0][:, ::-1]
            prob *= 0.5
        return prob

    def check_frame(self, frame: np.ndarray) -> None:
        """Raise InputImageError naming the fix if ``frame`` cannot be segmented."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            dtype = getattr(frame, "dtype", type(frame).__name__)
            raise InputImageError(f"frame must be a uint8 numpy array, got {dtype}; convert to 8-bit first")
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise InputImageError(
                f"frame must be HxWx3 (colour), got shape {frame.shape}; convert grey or 4-channel images "
                "with cv2.cvtColor (GRAY2BGR / BGRA2BGR) first"
            )
        h, w = frame.shape[:2]
        net_h, net_w = self._net_hw
        if min(h, w) < MIN_SIDE or net_h / h > MAX_UPSCALE or net_w / w > MAX_UPSCALE:
            raise FrameSizeError(
                f"frame {w}x{h} is too small for this model's {net_w}x{net_h} input (at most {MAX_UPSCALE:g}x "
                f"enlargement, sides >= {MIN_SIDE}px); use a larger image or a model exported at a smaller size"
            )

    def segment(self, frame: np.ndarray, *, color_order: str = "bgr", overlay_alpha: float | None = None) -> RoadMask:
        """Segment one frame; ``color_order`` declares the frame's channels ("bgr" or "rgb").

        Pass ``overlay_alpha`` to also get the overlay (skipped otherwise).
        """
        self.check_frame(frame)
        h, w = frame.shape[:2]
        with self._busy:
            t0 = time.perf_counter()
            preprocess(frame, self.contract, color_order=color_order, out=self._batch)
            t1 = time.perf_counter()
            prob_net = self._infer()
            t2 = time.perf_counter()
            probability = cv2.resize(prob_net, (w, h), interpolation=cv2.INTER_LINEAR)
        refine_s = 0.0
        if self._refiner is not None:
            t_refine = time.perf_counter()
            probability = self._refiner(frame, probability)
            refine_s = time.perf_counter() - t_refine
        # 255 where probability >= threshold (compared in float32, as numpy does), 0 elsewhere.
        mask = cv2.compare(probability, self._threshold, cv2.CMP_GE)
        t3 = time.perf_counter()
        timings = {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2 - refine_s) * 1e3}
        if self._refiner is not None:
            timings["refine"] = refine_s * 1e3
        result = RoadMask(probability=probability, mask=mask, timings_ms=timings)
        if overlay_alpha is not None:
            result.overlay = overlay(frame, mask, overlay_alpha, color_order)
            timings["overlay"] = (time.perf_counter() - t3) * 1e3
        return result

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> RoadSegmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
