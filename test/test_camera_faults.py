"""CameraFaultCheck on real KITTI frames.

The saturated test counts a pixel only when every channel is dark (<= 5) or bright (>= 250), and the frozen test counts
byte-identical repeats of the message data.
"""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from fcn_road_seg.ros.camera_faults import SUBSAMPLE, CameraFaultCheck, FaultLimits

NO_FROZEN = FaultLimits(frozen_frames=0)


@pytest.fixture(scope="module")
def kitti_frame(kitti_images):
    return cv2.imread(str(kitti_images[0]))


def _data(frame: np.ndarray) -> array.array:
    data = array.array("B")
    data.frombytes(frame.tobytes())
    return data


def _check(frame: np.ndarray, limits: FaultLimits = NO_FROZEN) -> str | None:
    return CameraFaultCheck().check(frame, _data(frame), limits)


@pytest.mark.parametrize("level, kind", [(5, "black"), (250, "white"), (255, "white"), (0, "black")])
def test_a_frame_at_the_dark_or_bright_limit_in_every_channel_is_saturated(kitti_frame, level, kind):
    frame = kitti_frame.copy()
    frame[:, 40:] = level  # all but a 40-column strip: ~97 % of the pixels
    fault = _check(frame)
    assert fault is not None and fault.startswith("saturated") and kind in fault
    assert _check(kitti_frame) is None


@pytest.mark.parametrize("level, channel_level", [(5, 6), (250, 249)])
def test_one_channel_past_the_limit_keeps_a_pixel_out_of_the_saturated_count(kitti_frame, level, channel_level):
    frame = kitti_frame.copy()
    frame[:, 40:] = level
    frame[:, 40:, 1] = channel_level  # green just outside the range: not black (or white) in every channel
    assert _check(frame) is None


def test_saturated_fraction_is_the_share_of_subsampled_pixels(kitti_frame):
    frame = kitti_frame.copy()
    rows = frame[::SUBSAMPLE].shape[0]
    frame[: int(rows * 0.6) * SUBSAMPLE] = 255  # the top 60 % of the subsampled rows white
    assert _check(frame, FaultLimits(frozen_frames=0, saturated_fraction=0.55)).startswith("saturated")
    assert _check(frame, FaultLimits(frozen_frames=0, saturated_fraction=0.65)) is None


def test_frozen_counts_byte_identical_repeats_and_a_changed_byte_resets_it(kitti_frame):
    check, limits = CameraFaultCheck(), FaultLimits(frozen_frames=2)
    data = _data(kitti_frame)
    assert [check.check(kitti_frame, data, limits) for _ in range(2)] == [None, None]
    assert check.check(kitti_frame, data, limits).startswith("frozen camera: the same image 3 frames")
    changed = array.array("B", data)
    changed[-1] ^= 1  # one bit of the last pixel
    assert check.check(kitti_frame, changed, limits) is None and check.repeats == 0
    assert check.check(kitti_frame, changed, FaultLimits(frozen_frames=0)) is None  # 0 turns it off
    assert check.check(kitti_frame, changed, limits) is None and check.repeats == 0
