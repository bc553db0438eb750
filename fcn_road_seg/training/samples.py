"""Which frames and labels training reads: layouts, label decoding into road targets, seeded splits. PyTorch-free.

The layouts are the KITTI road layout, KITTI semantics and class-index layouts (CamVid).

Targets are uint8 maps with ``NON_ROAD`` (0), ``ROAD`` (1) and ``IGNORE`` (255). Every check that can fail
(missing folders, images without labels, size mismatch, empty split) runs when the sample list is built,
before any training starts, and raises DatasetError naming the fix.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError, InputImageError
from ..evaluation.groundtruth import kitti_pairs, read_split
from ..images import IMAGE_SUFFIXES, read_bgr, read_labels, verify_encoded
from ..outputs import write_json

__all__ = [
    "NON_ROAD",
    "ROAD",
    "IGNORE",
    "Sample",
    "LabelSpec",
    "decode_kitti_road",
    "kitti_road_samples",
    "kitti_semantics_samples",
    "KITTI_SEMANTICS_ROAD_ID",
    "KITTI_SEMANTICS_IGNORE_ID",
    "split_kitti",
    "detect_layout",
    "folder_samples",
    "class_index_samples",
    "check_sizes",
    "count_unexpected_colours",
    "read_target",
    "save_split",
]

log = logging.getLogger(__name__)

NON_ROAD, ROAD, IGNORE = 0, 1, 255
# KITTI semantics labels are Cityscapes ids: road 7; 0 (unlabeled) is not evaluated.
KITTI_SEMANTICS_ROAD_ID, KITTI_SEMANTICS_IGNORE_ID = 7, 0


@dataclass(frozen=True)
class Sample:
    """One image/label pair; ``group`` is the KITTI category (um/umm/uu) or the split name."""

    image: Path
    label: Path
    group: str = ""

    @property
    def name(self) -> str:
        return self.image.name


@dataclass(frozen=True)
class LabelSpec:
    """How to turn a label file into a road target: KITTI colours or class indices."""

    kind: str = "kitti"  # "kitti" or "index"
    road_id: int = 3
    ignore_id: int | None = 11

    def __post_init__(self) -> None:
        if self.kind not in ("kitti", "index"):
            raise ValueError(f"label kind must be 'kitti' or 'index', got {self.kind!r}")


def decode_kitti_road(gt_rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """KITTI road GT (HxWx3 RGB) -> (target, number of pixels of unexpected colour, set to IGNORE).

    Road = magenta, non-road = red, black = ignore. KITTI's PNGs are lossless, but some re-encoded copies
    carry off-colours at region borders; those are counted and ignored, never guessed.
    """
    r, g, b = (gt_rgb[..., i] for i in range(3))
    road = (r == 255) & (g == 0) & (b == 255)
    non_road = (r == 255) & (g == 0) & (b == 0)
    black = (r == 0) & (g == 0) & (b == 0)
    target = np.full(gt_rgb.shape[:2], IGNORE, dtype=np.uint8)
    target[road] = ROAD
    target[non_road] = NON_ROAD
    unexpected = int(gt_rgb.shape[0] * gt_rgb.shape[1] - road.sum() - non_road.sum() - black.sum())
    return target, unexpected


def read_target(label: Path, spec: LabelSpec) -> tuple[np.ndarray, int]:
    """Read one label file into a target map; returns (target, unexpected-colour pixel count)."""
    if spec.kind == "kitti":
        return decode_kitti_road(cv2.cvtColor(read_bgr(label), cv2.COLOR_BGR2RGB))
    ids = read_labels(label)
    if ids.ndim != 2:
        raise DatasetError(f"{label} is not a single-channel class-index PNG; convert it or use the KITTI layout")
    target = np.where(ids == spec.road_id, np.uint8(ROAD), np.uint8(NON_ROAD))
    if spec.ignore_id is not None:
        target[ids == spec.ignore_id] = IGNORE
    return target, 0


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} folder not found: {path}; check --data (expected layout in docs/training.md)")
    return path


def kitti_road_samples(root: str | Path, split: str | Path | None = None) -> list[Sample]:
    """List the image/road-label pairs of a KITTI ``data_road`` (or its ``training``) folder.

    The pairs are ``image_2``/``gt_image_2/<cat>_road_<idx>.png``, optionally only the frames of a split list (the
    evaluator's listing, so both read the same pairs).
    """
    root = Path(root)
    if not any((d / "image_2").is_dir() for d in (root, root / "training", root / "data_road" / "training")):
        raise DatasetError(f"KITTI image_2 folder not found in {root}; check --data (expected layout in "
                           "docs/training.md)")
    pairs = kitti_pairs(root, split)
    return [Sample(image, label, image.stem.partition("_")[0]) for image, label in pairs]


def kitti_semantics_samples(root: str | Path, split: str | Path | None = None) -> list[Sample]:
    """List the ``image_2``/``semantic`` pairs of a KITTI semantic segmentation ``training`` folder.

    The label is ``<stem>.png`` whatever the image suffix; optionally only the frames of a split list.
    """
    root = Path(root)
    train = root / "training" if (root / "training").is_dir() else root
    images_dir = _require_dir(train / "image_2", "KITTI semantics image_2")
    labels_dir = _require_dir(train / "semantic", "KITTI semantics semantic")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if split is not None:
        wanted = set(read_split(split, root))
        images = [p for p in images if p.stem in wanted]
    if not images:
        raise DatasetError(f"no images in {images_dir}{' listed in ' + str(split) if split else ''}")
    missing = [p.name for p in images if not (labels_dir / f"{p.stem}.png").is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} images in {images_dir} have no label in {labels_dir} "
                           f"(e.g. {missing[0]}); expected semantic/<name>.png with Cityscapes ids")
    return [Sample(p, labels_dir / f"{p.stem}.png", "semantics") for p in images]


def detect_layout(data: Path, forced: str = "auto") -> str:
    """``kitti`` (a gt_image_2/ folder), ``kitti-semantics`` (semantic/) or ``index`` (images/ + labels/)."""
    if not data.is_dir():
        raise DatasetError(f"dataset folder not found: {data}; pass --data with the dataset root")
    if forced != "auto":
        return forced
    for d in (data, data / "training", data / "data_road" / "training"):
        if (d / "gt_image_2").is_dir():
            return "kitti"
        if (d / "semantic").is_dir():
            return "kitti-semantics"
    return "index"


def folder_samples(data: Path, split: str | Path | None, layout: str = "auto", road_id: int = 3,
                   ignore_id: int | None = 11) -> tuple[list[Sample], LabelSpec, str]:
    """Return samples, label reader and a description of one dataset folder (all frames, or a split list's).

    A class-index folder needs its split list.
    """
    layout = detect_layout(data, layout)
    name = data.resolve().name
    listed = Path(split).name if split is not None else "all"
    if layout == "kitti":
        samples, spec = kitti_road_samples(data, split), LabelSpec("kitti")
        count_unexpected_colours(samples)
        return samples, spec, f"KITTI road {name} {listed} ({len(samples)} frames)"
    if layout == "kitti-semantics":
        spec = LabelSpec("index", KITTI_SEMANTICS_ROAD_ID, KITTI_SEMANTICS_IGNORE_ID)
        samples = kitti_semantics_samples(data, split)
        return samples, spec, f"KITTI semantics {name} {listed} ({len(samples)} frames; road id 7)"
    if split is None:
        raise DatasetError(f"{data} is a class-index folder: give a split list of its frames (e.g. test.txt)")
    samples = class_index_samples(data, split)
    desc = f"{name} {listed} ({len(samples)} frames; road id {road_id})"
    return samples, LabelSpec("index", road_id, ignore_id), desc


def split_kitti(samples: list[Sample], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Deterministic train/val split, stratified over the KITTI categories (um, umm, uu)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val fraction must lie in [0, 1), got {val_fraction}")
    rng = random.Random(seed)
    train, val = [], []
    for group in sorted({s.group for s in samples}):
        members = sorted((s for s in samples if s.group == group), key=lambda s: s.name)
        rng.shuffle(members)
        n_val = int(round(len(members) * val_fraction))
        if val_fraction > 0 and len(members) > 1:
            n_val = max(1, n_val)
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train, key=lambda s: s.name), sorted(val, key=lambda s: s.name)


def class_index_samples(
    root: str | Path, split: str | Path, *, images: str = "images", labels: str = "labels"
) -> list[Sample]:
    """Pairs listed in a split file (one image name per line) of an ``images/`` + ``labels/`` layout."""
    root = Path(root)
    images_dir = _require_dir(root / images, "images")
    labels_dir = _require_dir(root / labels, "labels")
    split_path = Path(split) if Path(split).is_absolute() else root / split
    if not split_path.is_file():
        raise DatasetError(f"split list not found: {split_path}; pass --train-split/--val-split with a file of names")
    names = [line.split()[0] for line in split_path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"split list {split_path} is empty; list one image file name per line")
    samples, missing = [], []
    for name in names:
        image, label = images_dir / name, labels_dir / Path(name).with_suffix(".png").name
        if not image.is_file() or not label.is_file():
            missing.append(name)
            continue
        samples.append(Sample(image, label, split_path.stem))
    if missing:
        raise DatasetError(
            f"{len(missing)} entries of {split_path} lack an image in {images_dir} or a label in {labels_dir} "
            f"(e.g. {', '.join(missing[:3])}); fix the list or add the files"
        )
    return samples


def check_sizes(samples: list[Sample], what: str) -> None:
    """Check that every image and label is a complete, uncorrupted file of the same size as its pair.

    Completeness is checked with ``images.verify_encoded``, sizes are read from the file headers; DatasetError
    listing the files if not.
    """
    from PIL import Image

    if not samples:
        raise DatasetError(f"the {what} split is empty; check the split list or --val-fraction")
    corrupt = []
    for path in (p for s in samples for p in (s.image, s.label)):
        try:
            verify_encoded(path.read_bytes(), str(path))
        except (InputImageError, OSError) as err:
            corrupt.append(str(err))
    if corrupt:
        raise DatasetError(f"{len(corrupt)} {what} files are unreadable: {'; '.join(corrupt[:3])}; "
                           "replace or remove them (and their pairs) before training")
    bad = []
    for s in samples:
        with Image.open(s.image) as im, Image.open(s.label) as lb:
            if im.size != lb.size:
                bad.append(f"{s.image.name} {im.size[0]}x{im.size[1]} vs label {lb.size[0]}x{lb.size[1]}")
    if bad:
        raise DatasetError(f"{len(bad)} {what} images differ in size from their labels: {'; '.join(bad[:3])}; "
                           "labels must be pixel-aligned with their images")


def count_unexpected_colours(samples: list[Sample]) -> int:
    """Scan KITTI labels once; warn once with the total of pixels that are not magenta/red/black (ignored)."""
    counts = [read_target(s.label, LabelSpec("kitti"))[1] for s in samples]
    total, files = sum(counts), sum(1 for c in counts if c)
    if total:
        log.warning("%d pixels in %d of %d KITTI label files are not magenta, red or black: treated as ignore "
                    "(first: %s)", total, files, len(samples), next(s.label for s, c in zip(samples, counts) if c))
    return total


def save_split(path: str | Path, splits: dict[str, list[Sample]]) -> None:
    """Write the split (image names per subset) as JSON, so a run records exactly what it trained on."""
    data = {k: [s.name for s in v] for k, v in splits.items()}
    write_json(path, data, indent=1)
