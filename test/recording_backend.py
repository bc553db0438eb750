"""A Backend (the interface in ``fcn_road_seg.backends``) written for tests.

It keeps a copy of every batch the pipeline hands it and answers a chosen probability (a constant, or an (H, W)
map at the network's size), so a test can pin the exact network input and put the probability exactly where it
wants (e.g. on the threshold).
"""
from __future__ import annotations

import cv2
import numpy as np

from fcn_road_seg.contract import ModelContract
from fcn_road_seg.preprocess import RESIZE_INTERPOLATION


class RecordingBackend:
    name = "recording"
    device = "test"
    selection = "a test's recording backend"
    fallback = None

    def __init__(self, contract: ModelContract, probability: float | np.ndarray = 0.25) -> None:
        self.contract = contract
        self.probability = np.asarray(probability, np.float32)
        self.batches: list[np.ndarray] = []

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        return np.broadcast_to(self.probability, batch.shape[:3]).copy()

    def close(self) -> None:
        pass


def expected_batch(bgr: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Return the (1, H, W, 3) batch the contract promises for a BGR frame.

    It is computed independently of ``preprocess``: the frame resized with the pipeline's declared interpolation,
    then turned into the contract's channel order.
    """
    net_hw = (contract.input_height, contract.input_width)
    resized = cv2.resize(bgr, net_hw[::-1], interpolation=RESIZE_INTERPOLATION)
    return (cv2.cvtColor(resized, cv2.COLOR_BGR2RGB) if contract.channel_order == "RGB" else resized)[None]
