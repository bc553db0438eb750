"""The one preprocessing step of every path: a camera frame -> the network's uint8 NHWC batch.

A core leaf (imports only ``contract``), so the pipeline and the TensorRT build side (INT8 calibration,
check-trt) share it without importing each other.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from .contract import ModelContract

__all__ = ["preprocess", "preprocess_files", "RESIZE_INTERPOLATION"]

# The OpenCV interpolation ``preprocess`` resizes with, shrinking or enlarging (why: its docstring).
RESIZE_INTERPOLATION = cv2.INTER_LINEAR


def preprocess(
    frame: np.ndarray, contract: ModelContract, *, color_order: str = "bgr", out: np.ndarray | None = None
) -> np.ndarray:
    """Resize ``frame`` to the contract's network size in its channel order: the (1, H, W, 3) uint8 batch.

    The one preprocessing step of every path (segment, INT8 calibration, checks); writes into ``out`` if given.
    Bilinear both ways: shrinking a KITTI frame with it is several times faster than INTER_AREA at the same
    validation MaxF (docs/performance.md, "Preprocessing"); the channel swap runs in place on the small image.
    """
    order = color_order.upper()
    if order not in ("RGB", "BGR"):
        raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
    net_h, net_w = contract.input_height, contract.input_width
    batch = np.empty(contract.input_shape, dtype=np.uint8) if out is None else out
    net_input = batch[0]  # resized straight into the network batch, channels swapped in place
    cv2.resize(frame, (net_w, net_h), dst=net_input, interpolation=RESIZE_INTERPOLATION)
    if order != contract.channel_order:
        cv2.cvtColor(net_input, cv2.COLOR_BGR2RGB, dst=net_input)
    return batch


def preprocess_files(paths: Iterable[Path], contract: ModelContract) -> Iterator[tuple[Path, np.ndarray]]:
    """(path, batch) for each image file, read and preprocessed exactly as RoadSegmenter feeds its backend."""
    from .images import read_bgr

    for path in paths:
        yield path, preprocess(read_bgr(path), contract, color_order="bgr")
