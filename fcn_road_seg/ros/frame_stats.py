"""Counters and recent timings of the road_segmentation node.

They are shared by its subscription callback, worker thread and diagnostics timer.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from .bad_frames import CAUSES, BadFrames

__all__ = ["FrameStats", "LATENCY_WINDOW"]

LATENCY_WINDOW = 200  # frames kept for the latency percentiles


class FrameStats:
    """Counters and recent timings shared by the callback, the worker and the diagnostics timer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = self.processed = self.dropped = self.idle = self.camera_faults = 0
        self.fault: str | None = None  # the camera fault of the newest frame looked at; None once a frame is fine
        self.bad = BadFrames()  # bad frames and pipeline errors per cause (bad_frames.py): the only count of them
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.pipeline_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.done_at: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.first_done: float | None = None

    def finished(self, latency_ms: float, pipeline_ms: float) -> None:
        with self.lock:
            self.processed += 1
            self.latency_ms.append(latency_ms)
            self.pipeline_ms.append(pipeline_ms)
            now = time.monotonic()
            self.bad.good(now)
            self.done_at.append(now)
            if self.first_done is None:
                self.first_done = now

    def count(self, field: str) -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + 1)

    def bad_frame(self, cause: str) -> bool:
        """Count a bad frame (a cause of CAUSES) or a pipeline error ("pipeline_error"); True: log it."""
        with self.lock:
            return self.bad.bad(cause, time.monotonic())

    def snapshot(self, window_s: float = 5.0) -> dict[str, float]:
        """Counters, output rate and latency percentiles.

        The output rate is over the last ``window_s`` (or since the first frame), the latency percentiles (ms from
        receiving a frame to publishing its outputs) over recent frames.
        """
        with self.lock:
            now = time.monotonic()
            recent = sum(1 for t in self.done_at if now - t <= window_s)
            # count over the window, or since the first frame (at least 1 s) while the node is young
            span = max(1.0, min(window_s, now - self.first_done)) if self.first_done is not None else 1.0
            latency = np.array(self.latency_ms) if self.latency_ms else None
            pipeline = np.array(self.pipeline_ms) if self.pipeline_ms else None
            snap = {k: getattr(self, k) for k in ("received", "processed", "dropped")}
            snap["bad_frames"] = sum(self.bad.counts[cause] for cause in CAUSES)
            snap.update(camera_faults=self.camera_faults, errors=self.bad.counts["pipeline_error"], idle=self.idle)
            snap["camera_fault"] = self.fault or "none"
            snap.update({f"bad_frames_{cause}": self.bad.counts[cause] for cause in CAUSES})
            snap["bad_frames_warning"] = self.bad.warning(now) or "none"
        snap["rate_hz"] = recent / span
        nan = float("nan")
        snap["latency_p50_ms"] = float(np.percentile(latency, 50)) if latency is not None else nan
        snap["latency_p95_ms"] = float(np.percentile(latency, 95)) if latency is not None else nan
        snap["pipeline_p50_ms"] = float(np.percentile(pipeline, 50)) if pipeline is not None else nan
        return snap
