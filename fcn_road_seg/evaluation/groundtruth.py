"""Ground truth for evaluation: decoding road/valid maps and walking labelled folders frame by frame.

Three ground-truth encodings are understood, each decoded to ``road`` and ``valid`` boolean maps:

* KITTI road colour code (``gt_image_2/*_road_*.png``): road where blue > 0 (magenta), evaluated where
  red > 0; black is not evaluated (as the KITTI devkit reads it).
* class-index labels (CamVid layout): road where ``label == road_id``, not evaluated where ``label == ignore_id``.
* mono8 masks (our bags' GT topic): 255 road, 0 non-road, any other value (we write 128) not evaluated.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, InputImageError
from ..images import IMAGE_SUFFIXES, read_bgr, read_labels
from .bev import kitti_road_projection, read_kitti_calib

__all__ = [
    "GT_IGNORE_VALUE",
    "LabelledFrame",
    "FolderSource",
    "decode_kitti_gt",
    "decode_class_index",
    "decode_mono8_gt",
    "encode_mono8_gt",
    "kitti_pairs",
    "kitti_frames",
    "kitti_gt_path",
    "select_split",
    "kitti_calib_path",
    "category_of",
    "class_index_pairs",
]

GT_IGNORE_VALUE = 128  # mono8 GT value for "not evaluated"
KITTI_CATEGORIES = ("um", "umm", "uu")


def category_of(name: str) -> str:
    """KITTI road category of a frame name (``um_000012`` -> ``um``), ``all`` for other names."""
    prefix = name.partition("_")[0]
    return prefix if prefix in KITTI_CATEGORIES else "all"


@dataclass
class LabelledFrame:
    """One frame to evaluate: BGR image and its ground truth, or the error that made it unusable."""

    name: str
    category: str
    image: np.ndarray | None = None
    road: np.ndarray | None = None
    valid: np.ndarray | None = None
    stamp_ns: int | None = None
    frame_id: str = "camera"
    error: str | None = None
    road_projection: np.ndarray | None = None  # 3x4 KITTI road frame -> image, for the BEV (bev.py)
    bev_error: str | None = None  # why there is no road_projection


def decode_kitti_gt(gt_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KITTI colour-coded GT (HxWx3 BGR) -> (road, valid)."""
    if gt_bgr.ndim != 3 or gt_bgr.shape[2] != 3:
        raise InputImageError(f"KITTI ground truth must be a colour image, got shape {gt_bgr.shape}")
    return gt_bgr[..., 0] > 0, gt_bgr[..., 2] > 0


def decode_class_index(labels: np.ndarray, road_id: int, ignore_id: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Class-index labels (HxW integers) -> (road, valid)."""
    if labels.ndim != 2:
        raise InputImageError(f"class-index labels must be single-channel, got shape {labels.shape}")
    valid = np.ones(labels.shape, bool) if ignore_id is None else labels != ignore_id
    return labels == road_id, valid


def decode_mono8_gt(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mono8 GT (255 road, 0 non-road, other values not evaluated) -> (road, valid)."""
    road = mask == 255
    return road, road | (mask == 0)


def encode_mono8_gt(road: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(road, valid) -> mono8 GT as written to bags; the inverse of ``decode_mono8_gt``."""
    out = np.full(road.shape, GT_IGNORE_VALUE, np.uint8)
    out[valid & road] = 255
    out[valid & ~road] = 0
    return out


def _training_dir(root: Path) -> Path:
    for candidate in (root, root / "training", root / "data_road" / "training"):
        if (candidate / "image_2").is_dir():
            return candidate
    raise DatasetError(
        f"{root} is not a KITTI road folder: expected image_2/ and gt_image_2/ in it or in {root}/training "
        "(the layout of the official data_road download)"
    )


def read_split(split: str | Path, root: Path) -> list[str]:
    """Frame names (file stems) listed in a split file (one per line; a path or suffix is ignored)."""
    split_file = Path(split) if Path(split).is_file() else root / split
    if not split_file.is_file():
        raise DatasetError(f"split list {split} not found (looked in {root} too); give e.g. --split test.txt")
    names = [Path(line).stem for line in split_file.read_text().split()]
    if not names:
        raise DatasetError(f"split file {split_file} is empty; list one frame name per line (e.g. um_000000)")
    return names


def select_split(images: list[Path], split: str | Path, root: Path, folder: Path) -> list[Path]:
    """Return the ``images`` (of ``folder``) that ``split`` lists, in its order.

    A listed name missing there is an error.
    """
    wanted = read_split(split, root)
    by_stem = {p.stem: p for p in images}
    unknown = [n for n in wanted if n not in by_stem]
    if unknown:
        raise DatasetError(f"{len(unknown)} frames of split {split} are not in {folder} "
                           f"(e.g. {unknown[0]}); list image names such as um_000000")
    return [by_stem[n] for n in wanted]


def _kitti_images(root: str | Path, split: str | Path | None) -> list[Path]:
    """Return the images of a KITTI ``data_road/training`` folder, sorted, or those of a split list in its order."""
    train = _training_dir(Path(root))
    images = sorted(p for p in (train / "image_2").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if split is not None:
        images = select_split(images, split, Path(root), train / "image_2")
    if not images:
        raise DatasetError(f"no images in {train / 'image_2'}")
    return images


def kitti_gt_path(image: Path) -> Path | None:
    """Return the road GT file of a KITTI image (``gt_image_2/<cat>_road_<idx>``), when present.

    The GT is PNG whatever the image's suffix: JPEG copies of the images keep PNG GT.
    """
    category, _, index = image.stem.partition("_")
    gt_dir = image.parent.parent / "gt_image_2"
    return next((c for c in (gt_dir / f"{category}_road_{index}{s}" for s in (".png", image.suffix)) if c.is_file()),
                None)


def kitti_frames(root: str | Path, split: str | Path | None = None) -> list[tuple[Path, Path | None]]:
    """(image, road GT or None) of a KITTI folder, optionally only a split list's frames.

    Raises when no image has GT (KITTI testing/).
    """
    frames = [(image, kitti_gt_path(image)) for image in _kitti_images(root, split)]
    if all(gt is None for _, gt in frames):
        raise DatasetError(f"none of the {len(frames)} images in {frames[0][0].parent} has road GT in gt_image_2/ "
                           f"(e.g. {frames[0][0].name}); KITTI testing/ has no GT, evaluate the training/ folder")
    return frames


def kitti_pairs(root: str | Path, split: str | Path | None = None) -> list[tuple[Path, Path]]:
    """(image, road GT) pairs of a KITTI folder for training; an image without GT raises."""
    frames = [(image, kitti_gt_path(image)) for image in _kitti_images(root, split)]
    missing = [image.name for image, gt in frames if gt is None]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(frames)} images in {frames[0][0].parent} have no road GT in "
                           f"gt_image_2/ (e.g. {missing[0]}); add it, or leave those frames out with a split list")
    return frames


def kitti_calib_path(image: Path) -> Path | None:
    """Return the calib/ file of a KITTI image, when present."""
    calib = image.parent.parent / "calib" / f"{image.stem}.txt"
    return calib if calib.is_file() else None


def class_index_pairs(root: str | Path, split: str | None = None) -> list[tuple[Path, Path | None]]:
    """(image, label or None) of a class-index folder (``images/`` + ``labels/``), optionally from a split list.

    Raises when no image has a label.
    """
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise DatasetError(f"{root} is not a class-index folder: expected images/ and labels/ (CamVid layout)")
    if split is not None:
        suffix_of = {p.stem: p.suffix for p in images_dir.iterdir()}
        names = [n + suffix_of.get(n, ".png") for n in read_split(split, root)]
    else:
        names = sorted(p.name for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise DatasetError(f"no images in {images_dir}")
    pairs = [(images_dir / n, _class_index_label(labels_dir, n)) for n in names]
    if all(label is None for _, label in pairs):
        raise DatasetError(f"none of the {len(names)} images has a label in {labels_dir} (expected "
                           f"{Path(names[0]).stem}.png for {names[0]}, as training expects)")
    return pairs


def _class_index_label(labels_dir: Path, image_name: str) -> Path | None:
    """Return the label of an image: ``<stem>.png`` (lossless, what training reads).

    Else one with the image's own name.
    """
    for label in (labels_dir / f"{Path(image_name).stem}.png", labels_dir / image_name):
        if label.is_file():
            return label
    return None


@dataclass
class FolderSource:
    """Labelled frames from a KITTI road folder or a class-index folder, read lazily one at a time."""

    root: Path
    layout: str = "kitti"  # "kitti" or "class-index"
    split: str | None = None
    road_id: int = 3
    ignore_id: int | None = 11
    calib: bool = False  # KITTI: read each frame's calib/ for the BEV

    def __post_init__(self) -> None:
        if self.layout not in ("kitti", "class-index"):
            raise ValueError(f"layout must be 'kitti' or 'class-index', got {self.layout!r}")
        # an image without GT stays in ``pairs`` (GT None) and is yielded as an error frame: counted, listed
        # and skipped like an undecodable one
        self.pairs = (kitti_frames(self.root, self.split) if self.layout == "kitti"
                      else class_index_pairs(self.root, self.split))

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[LabelledFrame]:
        for image_path, gt_path in self.pairs:
            name = image_path.stem
            category = category_of(name)
            try:
                if gt_path is None:
                    raise InputImageError(f"no ground truth for {image_path.name} "
                                          f"({'gt_image_2/' if self.layout == 'kitti' else 'labels/'})")
                image = read_bgr(image_path)
                road, valid = self.read_gt(gt_path)
                if road.shape != image.shape[:2]:
                    raise InputImageError(f"GT {gt_path.name} is {road.shape[::-1]}, image {image.shape[1::-1]}")
            except InputImageError as err:
                yield LabelledFrame(name, category, error=str(err))
                continue
            frame = LabelledFrame(name, category, image, road, valid)
            if self.calib:
                self._read_calib(frame, image_path)
            yield frame

    @staticmethod
    def _read_calib(frame: LabelledFrame, image_path: Path) -> None:
        path = kitti_calib_path(image_path)
        if path is None:
            frame.bev_error = f"no calib/{image_path.stem}.txt beside image_2/ (the BEV needs it)"
            return
        try:
            frame.road_projection = kitti_road_projection(read_kitti_calib(path))
        except InputImageError as err:
            frame.bev_error = str(err)

    def read_gt(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Decode one GT file of this layout."""
        if self.layout == "kitti":
            return decode_kitti_gt(read_bgr(path))
        return decode_class_index(read_labels(path), self.road_id, self.ignore_id)
