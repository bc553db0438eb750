"""The exact batch a backend receives: the frame resized to the contract's size, in the contract's channel order.

This holds whatever order the caller's frame is in (a recording backend; the expectation computed independently with
OpenCV from the BGR frame). The node's message path is pinned the same way in test_node.py.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_road_seg.contract import ModelContract
from fcn_road_seg.pipeline import RoadSegmenter

from recording_backend import RecordingBackend, expected_batch

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "kitti_um_000000.jpg"


@pytest.fixture(scope="module")
def sample_bgr():
    return cv2.imread(str(SAMPLE))


@pytest.mark.parametrize("model_order", ["RGB", "BGR"])
@pytest.mark.parametrize("frame_order", ["bgr", "rgb"])
@pytest.mark.parametrize("frame_size", [None, (200, 64)], ids=["shrunk", "enlarged"])
def test_backend_gets_the_frame_resized_in_the_model_s_channel_order(sample_bgr, model_order, frame_order,
                                                                     frame_size):
    bgr = sample_bgr if frame_size is None else cv2.resize(sample_bgr, frame_size, interpolation=cv2.INTER_AREA)
    contract = ModelContract(input_height=96, input_width=320, channel_order=model_order)
    backend = RecordingBackend(contract)
    frame = bgr if frame_order == "bgr" else np.ascontiguousarray(bgr[..., ::-1])
    with RoadSegmenter(backend=backend) as seg:
        seg.segment(frame, color_order=frame_order)
    expected = expected_batch(bgr, contract)
    assert len(backend.batches) == 1 and backend.batches[0].dtype == np.uint8
    assert backend.batches[0].shape == (1, 96, 320, 3) == contract.input_shape
    np.testing.assert_array_equal(backend.batches[0], expected)
    assert np.abs(expected.astype(int) - expected[..., ::-1]).mean() > 5  # the other order would not pass
