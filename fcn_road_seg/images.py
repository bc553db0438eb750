"""Reading image files the same way everywhere (CLI, datasets, evaluator, folder publisher)."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from .errors import InputImageError

__all__ = ["IMAGE_SUFFIXES", "read_bgr", "read_labels", "list_images"]

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_bgr(path: str | Path) -> np.ndarray:
    """Read an 8-bit image as HxWx3 BGR.

    Grey images are replicated to three channels and 4-channel images lose their alpha (each with a
    warning: the model was trained on colour); 16-bit and unreadable files raise InputImageError.
    """
    path = Path(path)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputImageError(f"cannot read {path}: missing, corrupt or not an image (PNG/JPEG/BMP expected)")
    if image.dtype != np.uint8:
        raise InputImageError(f"{path} is {image.dtype}, not 8-bit; convert it to 8-bit PNG/JPEG first")
    if image.ndim == 2 or image.shape[2] == 1:
        log.warning("%s is grey: replicated to 3 channels (the model expects colour; masks may be worse)", path)
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        log.warning("%s has an alpha channel: dropped", path)
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def read_labels(path: str | Path) -> np.ndarray:
    """Read a ground-truth/label image exactly as stored (class indices or colour codes, no conversion)."""
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise InputImageError(f"cannot read label image {path}: missing or corrupt")
    return labels


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (non-recursive, sorted) into image paths; missing paths raise."""
    inputs = [Path(i) for i in inputs]
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif item.is_file():
            found.append(item)
        else:
            raise InputImageError(f"input not found: {item}")
    if not found:
        raise InputImageError(f"no images ({'/'.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return found
