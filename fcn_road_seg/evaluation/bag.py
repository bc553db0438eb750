"""rosbag2 files with ``rosbags`` (no ROS install needed): writing labelled datasets, reading them back.

``fcn-road-seg bag from-kitti`` / ``bag from-folder`` write an image topic, a GT topic and (KITTI, when
``calib/`` is present) a camera_info topic (P = P2) and, on ``/tf``, each frame's camera pose in a REP-103
road frame ``road`` (x forward, y left, z up, on the road; from Tr_cam_to_road and R0_rect), which
``evaluate --bev`` turns back into the devkit's bird's-eye view and a tf2-enabled node can use; frames get
synthetic stamps at ``rate_hz``, used both as
header stamps and as bag times. The frame names are kept in the bag's ``custom_data`` (metadata.yaml) so
an evaluation of the bag reports per-category numbers like the folder does. Bags are rosbag2 format
version 8 (what ROS 2 Jazzy's ``ros2 bag play`` reads), sqlite3 by default or MCAP.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BagError
from ..image_messages import header, image_message, typestore
from ..outputs import check_room, output_error
from ..progress import track
from ..wording import plural
from .bev import (kitti_camera_pose, quaternion_from_matrix, read_kitti_calib, transform_matrix,
                  road_projection_from_pose)
from .groundtruth import FolderSource, encode_mono8_gt, kitti_calib_path

__all__ = [
    "BagWriteConfig",
    "BagOut",
    "STORAGES",
    "FRAME_NAMES_KEY",
    "read_kitti_calib",
    "camera_info_message",
    "road_transform_message",
    "read_bev_geometry",
    "TF_TOPIC",
    "write_dataset_bag",
    "open_bag",
    "bag_frame_names",
    "find_connection",
    "stamp_ns",
    "PARTIAL_SUFFIX",
    "check_finished_bag",
]

log = logging.getLogger(__name__)
STORAGES = ("sqlite3", "mcap")
FRAME_NAMES_KEY = "fcn_road_seg.frame_names"  # custom_data key: JSON {stamp_ns: frame name}
TF_TOPIC = "/tf"
BAG_VERSION = 8  # rosbag2 metadata version of ROS 2 Jazzy
PARTIAL_SUFFIX = ".partial"  # a bag being written lives in NAME.partial/NAME until it is complete
_TOPIC_NAME = re.compile(r"(/[A-Za-z_][A-Za-z0-9_]*)+")  # an absolute ROS 2 topic name


def stamp_ns(msg) -> int:
    """Header stamp of a message in nanoseconds."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def camera_info_message(calib: dict[str, np.ndarray], width: int, height: int, stamp_ns_: int, frame_id: str):
    """CameraInfo of KITTI's rectified left colour camera (P2): K = P2[:, :3], no distortion, R = I."""
    ts = typestore()
    p2 = calib["P2"]
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns_, frame_id), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=p2[:, :3].reshape(-1).copy(), r=np.eye(3).reshape(-1), p=p2.reshape(-1).copy(),
        binning_x=0, binning_y=0, roi=roi,
    )


def road_transform_message(road_from_camera: np.ndarray, stamp_ns_: int, road_frame: str, camera_frame: str):
    """tf2_msgs/TFMessage holding the camera's pose in the road frame (4x4 road <- camera)."""
    ts = typestore()
    t = road_from_camera[:3, 3]
    qx, qy, qz, qw = quaternion_from_matrix(road_from_camera[:3, :3])
    transform = ts.types["geometry_msgs/msg/Transform"](
        translation=ts.types["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=ts.types["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
    stamped = ts.types["geometry_msgs/msg/TransformStamped"](
        header=header(stamp_ns_, road_frame), child_frame_id=camera_frame, transform=transform)
    return ts.types["tf2_msgs/msg/TFMessage"](transforms=[stamped])


def read_bev_geometry(reader, camera_info_topic: str) -> dict[int, np.ndarray]:
    """Return {stamp_ns: 3x4 KITTI road -> image projection} from a bag's camera_info and /tf.

    It uses camera_info's P and the /tf camera poses with the same stamps (as ``write_dataset_bag`` writes them);
    BagError when the bag has neither topic.
    """
    info_conn = find_connection(reader, camera_info_topic)
    tf_conn = find_connection(reader, TF_TOPIC)
    ts = typestore()
    projections: dict[int, np.ndarray] = {}
    poses: dict[tuple[int, str], np.ndarray] = {}
    frames: dict[int, str] = {}
    for conn, _, raw in reader.messages(connections=[info_conn, tf_conn]):
        msg = ts.deserialize_cdr(raw, conn.msgtype)
        if conn is info_conn:
            projections[stamp_ns(msg)] = np.asarray(msg.p, np.float64).reshape(3, 4)
            frames[stamp_ns(msg)] = msg.header.frame_id
            continue
        for t in msg.transforms:
            poses[(stamp_ns(t), t.child_frame_id)] = transform_matrix(t.transform)
    return {stamp: road_projection_from_pose(p, poses[(stamp, frames[stamp])])
            for stamp, p in projections.items() if (stamp, frames[stamp]) in poses}


@dataclass(frozen=True)
class BagWriteConfig:
    """How a dataset becomes a bag."""

    image_topic: str = "/camera/image_raw"
    gt_topic: str = "/camera/road_gt"
    camera_info_topic: str = "/camera/camera_info"
    frame_id: str = "camera"
    road_frame: str = "road"  # parent frame of the camera pose written on /tf (KITTI)
    rate_hz: float = 10.0
    start_ns: int = 1_700_000_000_000_000_000  # first synthetic stamp
    storage: str = "sqlite3"
    limit: int | None = None

    def __post_init__(self) -> None:
        """Topics absolute and distinct, rate finite and positive (named by their ``fcn-road-seg bag`` flags)."""
        topics = {"--image-topic": self.image_topic, "--gt-topic": self.gt_topic,
                  "--camera-info-topic": self.camera_info_topic}
        for flag, topic in topics.items():
            if not _TOPIC_NAME.fullmatch(topic) or "__" in topic:
                raise ValueError(f"{flag} {topic!r} is not an absolute ROS topic name (/ then letters, digits and "
                                 "_ per level); give e.g. /camera/image_raw")
        if len({*topics.values(), TF_TOPIC}) < len(topics) + 1:
            raise ValueError(f"--image-topic, --gt-topic and --camera-info-topic must differ from each other and "
                             f"from {TF_TOPIC}, got {', '.join(topics.values())}")
        if not math.isfinite(self.rate_hz) or self.rate_hz <= 0:
            raise ValueError(f"--rate must be a finite number of frames per second above 0, got {self.rate_hz}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {self.limit}; leave it out for every frame")


def _storage_plugin(storage: str):
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGES:
        raise BagError(f"unknown bag storage {storage!r}; choose one of {', '.join(STORAGES)}")
    return StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3


class BagOut:
    """A new bag with Image topics; ``write_image`` adds one frame. Use as a context manager.

    The bag is written inside ``PATH.partial/`` and moved to ``PATH`` only when it closed without error: an
    interrupted or failed run leaves no bag that looks complete (its ``.partial`` folder is removed). A
    write the disk refuses (full, file-size limit) is an ``OutputError`` naming the bag.
    """

    def __init__(self, path: str | Path, storage: str = "sqlite3") -> None:
        from rosbags.rosbag2 import Writer

        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; rosbag2 writers only create new bags, choose another -o")
        self.partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        if self.partial.exists():
            log.info("removing %s, the unfinished bag of an earlier run", self.partial)
            shutil.rmtree(self.partial)
        self.writer = Writer(self.partial / self.path.name, version=BAG_VERSION,
                             storage_plugin=_storage_plugin(storage))
        self.connections: dict[str, object] = {}

    def __enter__(self) -> BagOut:
        try:
            self.partial.mkdir(parents=True)
            self.writer.open()
        except OSError as err:
            shutil.rmtree(self.partial, ignore_errors=True)
            raise output_error(self.path, err) from err
        return self

    def __exit__(self, exc_type, *_) -> None:
        try:
            if exc_type is not None:  # the run's own error (or Ctrl-C) is what the user sees
                with contextlib.suppress(Exception):
                    self.writer.abort()
                return
            self.writer.close()
            os.replace(self.writer.path, self.path)
        except (OSError, sqlite3.Error) as err:
            raise output_error(self.path, err) from err
        finally:
            shutil.rmtree(self.partial, ignore_errors=True)

    def check_room(self, frames: int, frame_bytes: int) -> None:
        """Up front: ``frames`` more frames of about ``frame_bytes`` each fit on the disk (OutputError if not)."""
        check_room(self.path, frames * frame_bytes, f"{plural(frames, 'frame')} of a bag")

    def write(self, topic: str, msg, time_ns: int) -> None:
        """Serialise ``msg`` (a rosbags message) to ``topic`` at bag time ``time_ns``."""
        ts = typestore()
        try:
            conn = self.connections.get(topic)
            if conn is None:
                conn = self.connections[topic] = self.writer.add_connection(topic, msg.__msgtype__, typestore=ts)
            self.writer.write(conn, time_ns, ts.serialize_cdr(msg, msg.__msgtype__))
        except (OSError, sqlite3.Error) as err:  # sqlite: "database or disk is full"; MCAP: the OS error
            raise output_error(self.path, err) from err

    def write_image(self, topic: str, array: np.ndarray, encoding: str, stamp: int, frame_id: str) -> None:
        self.write(topic, image_message(array, encoding, header(stamp, frame_id)), stamp)

    def set_custom_data(self, key: str, value: str) -> None:
        self.writer.set_custom_data(key, value)


def write_dataset_bag(source: FolderSource, out: str | Path, config: BagWriteConfig = BagWriteConfig()) -> int:
    """Write ``source``'s frames (bgr8 image + mono8 GT [+ camera_info]) to a new bag; returns frames written."""
    period = int(round(1e9 / config.rate_hz))
    names: dict[str, str] = {}
    skipped = 0
    count = 0
    pairs = source.pairs[: config.limit] if config.limit else source.pairs
    source_iter = iter(source)
    with BagOut(out, config.storage) as bag:
        for (image_path, _), frame in track(zip(pairs, source_iter), len(pairs), "bag"):
            if frame.error:
                log.error("skipped %s: %s", frame.name, frame.error)
                skipped += 1
                continue
            if count == 0:  # bgr8 image + mono8 GT per frame
                bag.check_room(len(pairs) - skipped, frame.image.size + frame.road.size)
            stamp = config.start_ns + count * period
            bag.write_image(config.image_topic, frame.image, "bgr8", stamp, config.frame_id)
            bag.write_image(config.gt_topic, encode_mono8_gt(frame.road, frame.valid), "mono8", stamp, config.frame_id)
            calib = kitti_calib_path(image_path) if source.layout == "kitti" else None
            if calib is not None:
                h, w = frame.image.shape[:2]
                values = read_kitti_calib(calib)
                bag.write(config.camera_info_topic, camera_info_message(values, w, h, stamp, config.frame_id), stamp)
                if "Tr_cam_to_road" in values and "R0_rect" in values:
                    pose = kitti_camera_pose(values)
                    bag.write(TF_TOPIC, road_transform_message(pose, stamp, config.road_frame, config.frame_id), stamp)
            names[str(stamp)] = frame.name
            count += 1
        bag.set_custom_data(FRAME_NAMES_KEY, json.dumps(names))
        if count == 0:  # raised inside: the .partial bag is removed
            raise BagError(f"no frame of {source.root} could be read ({skipped} unreadable); nothing written to {out}")
    log.info("wrote %s to %s (%d skipped)", plural(count, "frame"), out, skipped)
    return count


def check_finished_bag(path: str | Path) -> None:
    """Raise BagError for a bag an interrupted or failed writer left.

    Such a bag is a ``.partial`` folder, or a bag folder with storage files and no metadata.yaml (rosbag2 writers
    write it last).
    """
    path = Path(path)
    unfinished = next((p for p in (path, *path.parents) if p.name.endswith(PARTIAL_SUFFIX)), None)
    if unfinished is not None:
        raise BagError(f"{path} is an unfinished bag ({unfinished} is where an interrupted or failed run was "
                       "writing); write the bag again")
    storage_files = any(path.glob("*.db3")) or any(path.glob("*.mcap")) if path.is_dir() else False
    if storage_files and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} has no metadata.yaml: its writer did not finish (interrupted or crashed), so "
                       "the bag may be incomplete; write it again")


def open_bag(path: str | Path):
    """Open a rosbag2 bag (folder, .db3 or .mcap) with rosbags; BagError naming the problem otherwise."""
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    check_finished_bag(path)
    try:
        reader = Reader(path)
        reader.open()
    except ReaderError as err:
        raise BagError(
            f"cannot open {path} as a rosbag2 bag ({err}); supported storages are sqlite3 and mcap, "
            "given as the bag folder (with metadata.yaml) or a single .db3 / .mcap file"
        ) from err
    return reader


def bag_frame_names(path: str | Path) -> dict[int, str]:
    """{stamp_ns: name} stored by ``write_dataset_bag``; empty for other bags."""
    metadata = Path(path) / "metadata.yaml"
    if not metadata.is_file():
        return {}
    from ruamel.yaml import YAML

    info = YAML(typ="safe").load(metadata.read_text()).get("rosbag2_bagfile_information", {})
    raw = (info.get("custom_data") or {}).get(FRAME_NAMES_KEY)
    return {int(k): v for k, v in json.loads(raw).items()} if raw else {}


def find_connection(reader, topic: str):
    """Return the connection of ``topic``; BagError listing the bag's topics when absent."""
    for conn in reader.connections:
        if conn.topic == topic:
            return conn
    have = ", ".join(f"{t} [{i.msgtype}]" for t, i in sorted(reader.topics.items())) or "none"
    raise BagError(f"topic {topic!r} is not in {reader.path}; it has: {have}")
