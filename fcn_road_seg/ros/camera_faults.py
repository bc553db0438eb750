"""Camera faults the node must not segment: frames with no usable content.

A featureless grey frame (lens cap, dead sensor, a driver sending a blank buffer) still gets its bottom
part marked road by the network, and so does a frozen camera repeating its last image. ``CameraFaultCheck``
looks at every frame before inference and names the fault:

* **blank**: every colour channel's standard deviation (over a 1/4-subsampled frame) is below
  ``blank_stddev`` grey levels (real road frames: 40-70);
* **saturated**: more than ``saturated_fraction`` of the pixels are black (all channels <= 5) or white
  (all channels >= 250): over-exposed, or no light;
* **frozen**: the message's image bytes were identical to the previous frame's ``frozen_frames`` times in
  a row (a real sensor's noise makes consecutive frames differ).

A limit of 0 (``blank_stddev``, ``frozen_frames``) or 1 (``saturated_fraction``) turns its check off. Pure
numpy/OpenCV, no rclpy: the node calls it from its worker thread.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["FaultLimits", "CameraFaultCheck"]

SUBSAMPLE = 4  # every 4th row and column: the whole check takes ~0.1 ms on a 1242x375 frame
DARK, BRIGHT = 5, 250


@dataclass(frozen=True)
class FaultLimits:
    """When a frame counts as a camera fault (the node's parameters of the same names)."""

    blank_stddev: float = 2.0
    saturated_fraction: float = 0.95
    frozen_frames: int = 5


class CameraFaultCheck:
    """Stateful check of consecutive frames (remembers the previous frame for the frozen test)."""

    def __init__(self) -> None:
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (sample, message bytes as uint8)
        self.repeats = 0  # consecutive frames identical to their predecessor

    def check(self, frame: np.ndarray, data, limits: FaultLimits) -> str | None:
        """Why ``frame`` (HxWx3 uint8, decoded from message bytes ``data``) has no usable content; None if it has.

        ``data`` is kept, not copied, until the next call: pass a buffer nobody modifies meanwhile (a message's).
        """
        h, w = frame.shape[:2]
        # every SUBSAMPLE-th pixel (nearest-neighbour resize: ~3x faster than numpy's strided copy)
        sample = cv2.resize(frame, (max(1, w // SUBSAMPLE), max(1, h // SUBSAMPLE)), interpolation=cv2.INTER_NEAREST)
        frozen = self._frozen(sample, data, limits.frozen_frames)
        if limits.blank_stddev > 0:
            _, std = cv2.meanStdDev(sample)
            if float(std.max()) < limits.blank_stddev:
                return (f"blank frame: no channel varies by {limits.blank_stddev:g} grey levels (standard deviation "
                        f"{float(std.max()):.2f}); lens covered, sensor dead or an empty buffer?")
        if limits.saturated_fraction < 1:
            # inRange marks pixels whose every channel lies in the range: max <= DARK, min >= BRIGHT (~30x
            # faster than numpy's max/min over a 3-long axis)
            pixels = sample.shape[0] * sample.shape[1]
            dark = cv2.countNonZero(cv2.inRange(sample, (0, 0, 0), (DARK,) * 3)) / pixels
            bright = cv2.countNonZero(cv2.inRange(sample, (BRIGHT,) * 3, (255, 255, 255))) / pixels
            if dark + bright > limits.saturated_fraction:
                kind = "black" if dark >= bright else "white"
                return (f"saturated frame: {100 * (dark + bright):.0f} % of the pixels are {kind} (limit "
                        f"{100 * limits.saturated_fraction:.0f} %); check exposure and lighting")
        return frozen

    def _frozen(self, sample: np.ndarray, data, limit: int) -> str | None:
        if limit <= 0:
            self._previous, self.repeats = None, 0
            return None
        current = (sample, np.frombuffer(data, np.uint8))
        previous, self._previous = self._previous, current
        # the samples differ on almost every real frame: only equal ones pay for comparing all the bytes
        same = (previous is not None and np.array_equal(previous[0], sample)
                and np.array_equal(previous[1], current[1]))
        self.repeats = self.repeats + 1 if same else 0
        if self.repeats >= limit:
            return (f"frozen camera: the same image {self.repeats + 1} frames in a row (limit {limit} repeats); "
                    "is the driver re-sending its last buffer?")
        return None
