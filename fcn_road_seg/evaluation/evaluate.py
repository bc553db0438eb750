"""Offline evaluation over a KITTI road folder, a class-index folder or a rosbag2 bag, then the report.

Every frame goes through the same ``RoadSegmenter`` as the node and the same ``metrics.RoadMetrics``.
Bags: images from ``image_topic``; ground truth either from ``gt_topic`` (mono8 255/0/other=ignore, or
KITTI colour-coded rgb8/bgr8), matched to images by header stamp, or from ``gt_dir`` files, matched by the
frame names the bag carries (bags written by ``fcn-road-seg bag``) or else by order.
With ``bev`` each frame is also scored in the KITTI devkit's bird's-eye view (``bev.py``): folders from
their ``calib/`` files, bags from camera_info (P) and the /tf camera pose that ``bag from-kitti`` writes.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..image_messages import message_to_bgr, typestore
from .bag import (BagOut, bag_frame_names, check_finished_bag, find_connection, open_bag, read_bev_geometry,
                  stamp_ns)
from .bev import KITTI_BEV, kitti_bev_lut, sibling_topic, warp_image, warp_labels, warp_probability
from ..errors import BagError, DatasetError, InputImageError
from .streaming import Evaluation
from ..images import IMAGE_SUFFIXES, read_labels
from ..progress import track
from .groundtruth import (FolderSource, LabelledFrame, category_of, decode_class_index,
                          decode_kitti_gt, decode_mono8_gt, read_split)
from .report import write_report

__all__ = ["EvalConfig", "BagSource", "BevEvaluation", "decode_gt_message", "open_source", "run_evaluation",
           "MASK_TOPIC", "OVERLAY_TOPIC",
           "PROBABILITY_TOPIC"]

log = logging.getLogger(__name__)
MASK_TOPIC = "/road_segmentation/mask"
OVERLAY_TOPIC = "/road_segmentation/overlay"
PROBABILITY_TOPIC = "/road_segmentation/probability"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
GT_TYPES = ("sensor_msgs/msg/Image",)


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and where the report goes."""

    source: Path
    out: Path
    layout: str = "auto"  # auto | kitti | class-index | bag
    split: str | None = None
    road_id: int = 3
    ignore_id: int | None = 11
    image_topic: str | None = None
    gt_topic: str | None = None
    gt_dir: Path | None = None
    gt_format: str = "auto"  # auto | kitti | class-index | mono8 (files in gt_dir)
    limit: int | None = None
    keep: int = 3
    write_bag: Path | None = None
    write_bag_storage: str = "sqlite3"
    overlay_alpha: float = 0.5
    bev: bool = False  # also the KITTI devkit's bird's-eye-view metrics (calib/ per frame, or camera_info + /tf)
    camera_info_topic: str | None = None  # bag with --bev: default <image_topic>/../camera_info

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {self.limit}; leave it out for every frame")


def decode_gt_message(msg) -> tuple[np.ndarray, np.ndarray]:
    """GT Image message -> (road, valid): mono8 (255/0/other=ignore) or KITTI colour (rgb8/bgr8)."""
    from rosbags.image import ImageError, message_to_cvimage

    if msg.encoding not in ("mono8", "rgb8", "bgr8"):
        raise InputImageError(f"GT encoding {msg.encoding!r} unsupported; use mono8 (255 road, 0 not) or KITTI rgb8")
    try:
        if msg.encoding == "mono8":
            return decode_mono8_gt(message_to_cvimage(msg, "mono8"))
        return decode_kitti_gt(message_to_cvimage(msg, "bgr8"))
    except (ImageError, ValueError, TypeError) as err:  # TypeError: data shorter than h*step
        raise InputImageError(f"cannot decode GT message ({err})") from err


def _decode_gt_file(path: Path, fmt: str, road_id: int, ignore_id: int | None) -> tuple[np.ndarray, np.ndarray]:
    labels = read_labels(path)
    if fmt == "auto":
        fmt = "kitti" if labels.ndim == 3 else "class-index"
    if fmt == "kitti":
        return decode_kitti_gt(labels[..., :3] if labels.ndim == 3 else labels)
    if fmt == "mono8":
        return decode_mono8_gt(labels)
    return decode_class_index(labels, road_id, ignore_id)


class BagSource:
    """Labelled frames from a bag; stamp matching keeps at most ``max_pending`` unmatched messages per topic."""

    def __init__(self, config: EvalConfig, max_pending: int = 64) -> None:
        if not config.image_topic:
            raise BagError("evaluating a bag needs --image-topic (and --gt-topic or --gt-dir)")
        if (config.gt_topic is None) == (config.gt_dir is None):
            raise BagError("evaluating a bag needs exactly one of --gt-topic (GT in the bag) or --gt-dir (GT files)")
        self.config = config
        self.max_pending = max_pending
        self.reader = open_bag(config.source)
        self.unmatched_images = 0
        self.unmatched_gt = 0
        self.gt_files: list[Path] = []
        try:
            self.image_conn = _typed_connection(self.reader, config.image_topic, IMAGE_TYPES, "--image-topic")
            self.gt_conn = (_typed_connection(self.reader, config.gt_topic, GT_TYPES, "--gt-topic")
                            if config.gt_topic else None)
            self.road_projections = read_bev_geometry(self.reader, _camera_info_topic(config)) if config.bev else {}
            self.names = bag_frame_names(config.source)
            self.stamps = _split_stamps(config, self.names) if config.split is not None else None
            if config.gt_dir is not None:
                if not Path(config.gt_dir).is_dir():
                    raise DatasetError(f"--gt-dir {config.gt_dir} is not a folder")
                self.gt_files = sorted(p for p in Path(config.gt_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if not self.gt_files:
                    raise DatasetError(f"no GT images in --gt-dir {config.gt_dir}")
                if self.stamps is not None:  # GT files of frames outside --split are not unmatched
                    chosen = {self.names[stamp] for stamp in self.stamps}
                    self.gt_files = [p for p in self.gt_files if p.stem.replace("_road_", "_") in chosen]
        except DatasetError:
            self.reader.close()
            raise

    def __len__(self) -> int:
        return len(self.stamps) if self.stamps is not None else self.reader.topics[self.config.image_topic].msgcount

    def close(self) -> None:
        self.reader.close()

    def _frame(self, name: str, stamp: int, image_msg, gt) -> LabelledFrame:
        frame = LabelledFrame(name, category_of(name), stamp_ns=stamp, frame_id=image_msg.header.frame_id)
        try:
            frame.image = message_to_bgr(image_msg)
            frame.road, frame.valid = gt() if callable(gt) else decode_gt_message(gt)
            if frame.road.shape != frame.image.shape[:2]:
                raise InputImageError(f"GT is {frame.road.shape[::-1]}, image {frame.image.shape[1::-1]}")
        except InputImageError as err:
            frame.error = str(err)
        if self.config.bev:
            frame.road_projection = self.road_projections.get(stamp)
            if frame.road_projection is None:
                frame.bev_error = (f"no {_camera_info_topic(self.config)} + /tf camera-to-road transform at this "
                                   "stamp (bags from `fcn-road-seg bag from-kitti` have both)")
        return frame

    def __iter__(self) -> Iterator[LabelledFrame]:
        conns = [self.image_conn] + ([self.gt_conn] if self.gt_conn is not None else [])
        images: OrderedDict[int, object] = OrderedDict()
        gts: OrderedDict[int, object] = OrderedDict()
        by_name = {p.stem: p for p in self.gt_files}
        order = matched = 0
        ts = typestore()
        for conn, time_ns, raw in self.reader.messages(connections=conns):
            try:
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                stamp = stamp_ns(msg)
            except Exception as err:  # rosbags raises plain exceptions on truncated CDR
                yield LabelledFrame(f"{conn.topic}@{time_ns}", "all", error=f"undecodable message ({err!r})")
                continue
            if self.stamps is not None and stamp not in self.stamps:
                continue  # not in --split
            name = self.names.get(stamp, f"{stamp}")
            if self.gt_conn is None:  # GT from files
                path = self._gt_path(name, order, by_name)
                order += 1
                if path is None:
                    self.unmatched_images += 1
                    continue
                matched += 1
                cfg = self.config
                yield self._frame(name, stamp, msg,
                                  lambda p=path: _decode_gt_file(p, cfg.gt_format, cfg.road_id, cfg.ignore_id))
                continue
            mine, other = (images, gts) if conn is self.image_conn else (gts, images)
            if stamp in other:
                partner = other.pop(stamp)
                image_msg, gt_msg = (msg, partner) if conn is self.image_conn else (partner, msg)
                yield self._frame(name, stamp, image_msg, gt_msg)
                continue
            mine[stamp] = msg
            if len(mine) > self.max_pending:
                mine.popitem(last=False)
                self._count_unmatched(mine is images, 1)
        self._count_unmatched(True, len(images))
        self._count_unmatched(False, len(gts))
        if self.gt_conn is None:
            self.unmatched_gt += len(self.gt_files) - matched

    def _gt_path(self, name: str, order: int, by_name: dict[str, Path]) -> Path | None:
        if self.names:
            category, _, index = name.partition("_")
            for stem in (name, f"{category}_road_{index}"):
                if stem in by_name:
                    return by_name[stem]
            return None
        return self.gt_files[order] if order < len(self.gt_files) else None

    def _count_unmatched(self, image: bool, n: int) -> None:
        if image:
            self.unmatched_images += n
        else:
            self.unmatched_gt += n


def _typed_connection(reader, topic: str, types: tuple[str, ...], flag: str):
    """Get the connection of ``topic``, refused up front (BagError) unless its message type is one of ``types``."""
    conn = find_connection(reader, topic)
    if conn.msgtype not in types:
        fitting = [f"{t} [{i.msgtype}]" for t, i in sorted(reader.topics.items()) if i.msgtype in types]
        raise BagError(f"{flag} {topic} carries {conn.msgtype}, not {' or '.join(types)}; topics of that type in "
                       f"{reader.path}: {', '.join(fitting) or 'none'}")
    return conn


def _split_stamps(config: EvalConfig, names: dict[int, str]) -> set[int]:
    """Return the image stamps of the frames ``config.split`` lists, by the frame names the bag records.

    Bags from ``fcn-road-seg bag`` record them as custom_data {stamp: name}; a bag without names, or a name it
    lacks, is refused.
    """
    if not names:
        raise DatasetError(f"--split needs the frame names that `fcn-road-seg bag from-kitti/from-folder` records in "
                           f"a bag's metadata.yaml, and {config.source} has none; write the bag with `fcn-road-seg "
                           "bag ... --split FILE`, or drop --split (--limit N takes the first N frames)")
    wanted = set(read_split(config.split, Path(config.source)))
    unknown = sorted(wanted - set(names.values()))
    if unknown:
        raise DatasetError(f"{len(unknown)} frames of split {config.split} are not in {config.source} (e.g. "
                           f"{unknown[0]}; it has {', '.join(sorted(names.values())[:3])}, ...)")
    return {stamp for stamp, name in names.items() if name in wanted}


def _camera_info_topic(config: EvalConfig) -> str:
    return config.camera_info_topic or sibling_topic(config.image_topic)


def open_source(config: EvalConfig):
    """Open the labelled-frame source ``config`` names (folder or bag), checked before any model is loaded."""
    layout = config.layout
    if not Path(config.source).exists():
        raise DatasetError(f"{config.source} not found; give a KITTI/class-index folder or a rosbag2 bag")
    if layout in ("auto", "bag"):
        check_finished_bag(config.source)
    if layout == "auto":
        src = Path(config.source)
        if src.is_file() or (src / "metadata.yaml").is_file() or any(src.glob("*.mcap")) or any(src.glob("*.db3")):
            layout = "bag"
        elif (src / "images").is_dir() and (src / "labels").is_dir():
            layout = "class-index"
        else:
            layout = "kitti"
    if layout == "bag":
        return BagSource(config)
    if config.image_topic or config.gt_topic or config.gt_dir:
        raise DatasetError(f"--image-topic/--gt-topic/--gt-dir apply to bags; {config.source} is a {layout} folder")
    if config.bev and layout != "kitti":
        raise DatasetError(f"--bev needs KITTI calibration (calib/ per frame); {config.source} is a {layout} folder")
    return FolderSource(Path(config.source), layout, config.split, config.road_id, config.ignore_id, calib=config.bev)


class BevEvaluation:
    """The KITTI devkit's bird's-eye view of each frame (GT, probability, image) into a second Evaluation."""

    def __init__(self, threshold: float, keep: int) -> None:
        self.ev = Evaluation(threshold=threshold, keep=keep)
        self._lut = None
        self._key: tuple | None = None

    def add(self, frame: LabelledFrame, probability: np.ndarray) -> None:
        if frame.road_projection is None:
            self.ev.skip(frame.name, frame.bev_error or "no camera-to-road calibration")
            return
        key = (frame.road_projection.tobytes(), frame.road.shape)
        if key != self._key:  # frames of one drive share a calibration
            self._lut, self._key = kitti_bev_lut(frame.road_projection, frame.road.shape), key
        road, valid = warp_labels(self._lut, frame.road, frame.valid)
        self.ev.add(frame.name, frame.category, warp_probability(self._lut, probability), road, valid,
                    warp_image(self._lut, frame.image))

    def grid(self) -> dict:
        g = KITTI_BEV
        return {"definition": "KITTI road devkit BirdsEyeView (devkit_road/python/BirdsEyeView.py)",
                "resolution_m": g.res, "x_range_m": list(g.x_range), "z_range_m": list(g.z_range),
                "rows_cols": list(g.shape)}


def run_evaluation(config: EvalConfig, segmenter, source=None) -> dict:
    """Evaluate ``segmenter`` (a RoadSegmenter) on the configured source (or ``source``, from ``open_source``).

    Writes and returns the report.
    """
    source = source if source is not None else open_source(config)
    ev = Evaluation(threshold=segmenter.threshold, keep=config.keep)
    bev = BevEvaluation(segmenter.threshold, config.keep) if config.bev else None
    total = min(len(source), config.limit) if config.limit else len(source)
    image_topic = config.image_topic or "/camera/image_raw"
    with contextlib.ExitStack() as stack:
        if isinstance(source, BagSource):
            stack.callback(source.close)
        out_bag = stack.enter_context(BagOut(config.write_bag, config.write_bag_storage)) if config.write_bag else None
        alpha = config.overlay_alpha if out_bag is not None else None
        start = time.perf_counter()
        for count, frame in enumerate(track(source, total, "evaluate")):
            if config.limit and count >= config.limit:
                break
            if frame.error:
                log.warning("skipped %s: %s", frame.name, frame.error)
                ev.skip(frame.name, frame.error)
                continue
            try:
                result = segmenter.segment(frame.image, color_order="bgr", overlay_alpha=alpha)
            except InputImageError as err:
                log.warning("skipped %s: %s", frame.name, err)
                ev.skip(frame.name, str(err))
                continue
            timings = dict(result.timings_ms)
            timings["total"] = sum(timings.values())
            ev.add(frame.name, frame.category, result.probability, frame.road, frame.valid, frame.image, timings)
            if bev is not None:
                bev.add(frame, result.probability)
            if out_bag is not None:
                if not out_bag.connections:  # before the first frame: image, mask, overlay, probability
                    out_bag.check_room(total, frame.image.size * 8 // 3)
                _write_frame(out_bag, image_topic, frame, result, count)
        ev.wall_s = time.perf_counter() - start
    if isinstance(source, BagSource):
        ev.unmatched_images, ev.unmatched_gt = source.unmatched_images, source.unmatched_gt
    if ev.unmatched_images or ev.unmatched_gt:
        log.warning("%d images and %d GT frames had no match", ev.unmatched_images, ev.unmatched_gt)
    src = {"kind": "bag" if isinstance(source, BagSource) else source.layout, "path": str(config.source),
           "image_topic": config.image_topic, "gt_topic": config.gt_topic,
           "gt_dir": str(config.gt_dir) if config.gt_dir else None, "split": config.split,
           "write_bag": str(config.write_bag) if config.write_bag else None}
    backend = {"name": segmenter.backend.name, "device": segmenter.backend.device,
               "selection": segmenter.backend.selection,
               "refine": {"crf": asdict(segmenter.refine)} if segmenter.refine is not None else None,
               "tta": segmenter.tta}
    return write_report(ev, config.out, source=src, contract=segmenter.contract, backend=backend,
                        bev=(bev.ev, bev.grid()) if bev is not None else None)


def _write_frame(bag: BagOut, image_topic: str, frame: LabelledFrame, result, index: int) -> None:
    from .metrics import quantize_probability

    stamp = frame.stamp_ns if frame.stamp_ns is not None else 1_700_000_000_000_000_000 + index * 100_000_000
    fid = frame.frame_id
    bag.write_image(image_topic, frame.image, "bgr8", stamp, fid)
    bag.write_image(MASK_TOPIC, result.mask, "mono8", stamp, fid)
    bag.write_image(OVERLAY_TOPIC, result.overlay, "bgr8", stamp, fid)
    bag.write_image(PROBABILITY_TOPIC, quantize_probability(result.probability), "mono8", stamp, fid)
