"""PyTorch datasets over the training samples (``samples.py``).

Augmented training crops (OpenCV geometry and colour jitter, reproducible per seed, epoch and index), a mix of
several sources, and whole validation frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from ..errors import DatasetError
from ..images import read_bgr
from .model import IMAGENET_NORMALIZATION
from .samples import IGNORE, LabelSpec, Sample, read_target

__all__ = ["AugmentConfig", "RoadTrainDataset", "MixedTrainDataset", "RoadEvalDataset"]


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time geometry and colour augmentation.

    The frame is first resized to the network's input size (as at inference, where the whole frame is
    squeezed into it), then scaled by ``scale`` (both axes) and ``aspect`` (width only, log-uniform), so a
    model trained on 4:3 frames also sees the horizontal squeeze of wide KITTI frames; then a random crop
    of ``crop`` (padded with ignore where the frame is smaller), a horizontal flip and colour jitter.
    """

    input_size: tuple[int, int]
    crop: tuple[int, int]
    scale: tuple[float, float] = (0.75, 1.5)
    aspect: tuple[float, float] = (0.5, 1.25)
    hflip: float = 0.5
    jitter: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1] or not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"scale {self.scale} and aspect {self.aspect} must be positive (min, max) ranges")
        if any(s % 32 for s in self.crop) or any(s % 32 for s in self.input_size):
            raise ValueError(f"crop {self.crop} and input size {self.input_size} must be multiples of 32")


def _normalize(rgb: np.ndarray, normalization: dict[str, list[float]]) -> torch.Tensor:
    mean = np.asarray(normalization["mean"], np.float32) * 255.0
    std = np.asarray(normalization["std"], np.float32) * 255.0
    x = (rgb.astype(np.float32) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


@dataclass
class _Base:
    samples: list[Sample]
    spec: LabelSpec
    normalization: dict[str, list[float]]

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        sample = self.samples[index]
        rgb = cv2.cvtColor(read_bgr(sample.image), cv2.COLOR_BGR2RGB)
        target, _ = read_target(sample.label, self.spec)
        if rgb.shape[:2] != target.shape:
            raise DatasetError(f"{sample.image} and {sample.label} differ in size; labels must be pixel-aligned")
        return rgb, target


class RoadTrainDataset(_Base, Dataset):
    """Augmented crops: (normalised CHW float tensor, int64 target with IGNORE=255).

    Randomness comes from a generator seeded by (seed, epoch, index), so a run is reproducible whatever
    the number of DataLoader workers, and a resumed run draws the same crops as an uninterrupted one.
    """

    def __init__(self, samples: list[Sample], spec: LabelSpec, augment: AugmentConfig, seed: int = 0,
                 normalization: dict[str, list[float]] | None = None) -> None:
        super().__init__(samples, spec, normalization or IMAGENET_NORMALIZATION)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, target = self._load(index)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        rgb, target = self._geometry(rgb, target, rng)
        rgb = self._colour(rgb, rng)
        return _normalize(rgb, self.normalization), torch.from_numpy(target.astype(np.int64))

    def _geometry(self, rgb: np.ndarray, target: np.ndarray, rng: np.random.Generator):
        aug = self.augment
        h, w = target.shape
        s = rng.uniform(*aug.scale)
        a = math.exp(rng.uniform(math.log(aug.aspect[0]), math.log(aug.aspect[1])))
        out_h = max(1, int(round(aug.input_size[0] * s)))
        out_w = max(1, int(round(aug.input_size[1] * s * a)))
        interp = cv2.INTER_AREA if out_h * out_w < h * w else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (out_w, out_h), interpolation=interp)
        target = cv2.resize(target, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
        ch, cw = aug.crop
        pad_h, pad_w = max(0, ch - out_h), max(0, cw - out_w)
        if pad_h or pad_w:
            top, left = int(rng.integers(0, pad_h + 1)), int(rng.integers(0, pad_w + 1))
            border = (top, pad_h - top, left, pad_w - left)
            mean = [int(round(m * 255)) for m in self.normalization["mean"]]
            rgb = cv2.copyMakeBorder(rgb, *border, cv2.BORDER_CONSTANT, value=mean)
            target = cv2.copyMakeBorder(target, *border, cv2.BORDER_CONSTANT, value=IGNORE)
        y = int(rng.integers(0, rgb.shape[0] - ch + 1))
        x = int(rng.integers(0, rgb.shape[1] - cw + 1))
        rgb, target = rgb[y : y + ch, x : x + cw], target[y : y + ch, x : x + cw]
        if rng.random() < aug.hflip:
            rgb, target = rgb[:, ::-1], target[:, ::-1]
        return np.ascontiguousarray(rgb), np.ascontiguousarray(target)

    def _colour(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        j = self.augment.jitter
        if j <= 0:
            return rgb
        x = rgb.astype(np.float32)
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * rng.uniform(1 - j, 1 + j)  # saturation
        x = (x - x.mean()) * rng.uniform(1 - j, 1 + j) + x.mean()  # contrast
        x = x * rng.uniform(1 - j, 1 + j)  # brightness
        x = x * rng.uniform(1 - j / 3, 1 + j / 3, size=3).astype(np.float32)  # colour cast
        return np.clip(x, 0, 255).astype(np.uint8)


class MixedTrainDataset(ConcatDataset):
    """Several training sets, each with its own reader, drawn together (shuffled by the loader) every epoch."""

    def __init__(self, datasets: list[RoadTrainDataset]) -> None:
        super().__init__(datasets)
        self.samples = [s for d in datasets for s in d.samples]

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)


class RoadEvalDataset(_Base, Dataset):
    """Whole frames resized to the network input (as the runtime pipeline does), with full-size targets."""

    def __init__(self, samples: list[Sample], spec: LabelSpec, input_size: tuple[int, int],
                 normalization: dict[str, list[float]] | None = None) -> None:
        super().__init__(samples, spec, normalization or IMAGENET_NORMALIZATION)
        self.input_size = input_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, target = self._load(index)
        h, w = target.shape
        net_h, net_w = self.input_size
        interp = cv2.INTER_AREA if h * w > net_h * net_w else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (net_w, net_h), interpolation=interp)
        return _normalize(rgb, self.normalization), torch.from_numpy(target.astype(np.int64))
