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

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import BagError, InputImageError
from ..images import decode_bgr
from .bev import (kitti_camera_pose, quaternion_from_matrix, read_kitti_calib, transform_matrix,
                  road_projection_from_pose)
from .groundtruth import FolderSource, encode_mono8_gt, kitti_calib_path

__all__ = [
    "BagWriteConfig",
    "BagOut",
    "STORAGES",
    "FRAME_NAMES_KEY",
    "typestore",
    "image_message",
    "message_to_bgr",
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
]

log = logging.getLogger(__name__)
STORAGES = ("sqlite3", "mcap")
FRAME_NAMES_KEY = "fcn_road_seg.frame_names"  # custom_data key: JSON {stamp_ns: frame name}
TF_TOPIC = "/tf"
BAG_VERSION = 8  # rosbag2 metadata version of ROS 2 Jazzy
_TYPESTORE = None


def typestore():
    """The ROS 2 Jazzy message type store (created once)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
    return _TYPESTORE


def _header(stamp_ns: int, frame_id: str):
    ts = typestore()
    time = ts.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return ts.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)


def image_message(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    """numpy HxW (mono8) or HxWx3 (bgr8/rgb8) uint8 -> rosbags sensor_msgs/msg/Image."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = array.shape[:2]
    return typestore().types["sensor_msgs/msg/Image"](
        header=_header(stamp_ns, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
        step=array.strides[0], data=array.reshape(-1),
    )


def message_to_bgr(msg) -> np.ndarray:
    """rosbags Image/CompressedImage -> HxWx3 BGR uint8; InputImageError when it cannot be decoded."""
    from rosbags.image import ImageError, message_to_cvimage

    if msg.__msgtype__ == "sensor_msgs/msg/CompressedImage":  # verified first: truncated JPEG/PNG is refused
        return decode_bgr(bytes(msg.data), f"CompressedImage '{msg.format}'", warn=False)
    try:
        frame = message_to_cvimage(msg, "bgr8")
    except (ImageError, ValueError, TypeError, cv2.error) as err:  # TypeError: data shorter than h*step
        raise InputImageError(f"cannot decode image message ({err})") from err
    if frame is None or frame.ndim != 3:
        raise InputImageError("image message decoded to nothing (corrupt compressed data?)")
    return frame


def stamp_ns(msg) -> int:
    """Header stamp of a message in nanoseconds."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def camera_info_message(calib: dict[str, np.ndarray], width: int, height: int, stamp_ns_: int, frame_id: str):
    """CameraInfo of KITTI's rectified left colour camera (P2): K = P2[:, :3], no distortion, R = I."""
    ts = typestore()
    p2 = calib["P2"]
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp_ns_, frame_id), height=height, width=width, distortion_model="plumb_bob",
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
        header=_header(stamp_ns_, road_frame), child_frame_id=camera_frame, transform=transform)
    return ts.types["tf2_msgs/msg/TFMessage"](transforms=[stamped])


def read_bev_geometry(reader, camera_info_topic: str) -> dict[int, np.ndarray]:
    """{stamp_ns: 3x4 KITTI road -> image projection} from a bag's camera_info (P) and /tf camera poses with
    the same stamps (as ``write_dataset_bag`` writes them); BagError when the bag has neither topic."""
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


def _storage_plugin(storage: str):
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGES:
        raise BagError(f"unknown bag storage {storage!r}; choose one of {', '.join(STORAGES)}")
    return StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3


class BagOut:
    """A new bag with Image topics; ``write_image`` adds one frame. Use as a context manager."""

    def __init__(self, path: str | Path, storage: str = "sqlite3") -> None:
        from rosbags.rosbag2 import Writer

        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; rosbag2 writers only create new bags, choose another -o")
        self.writer = Writer(self.path, version=BAG_VERSION, storage_plugin=_storage_plugin(storage))
        self.connections: dict[str, object] = {}

    def __enter__(self) -> BagOut:
        self.writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()

    def write(self, topic: str, msg, time_ns: int) -> None:
        """Serialise ``msg`` (a rosbags message) to ``topic`` at bag time ``time_ns``."""
        ts = typestore()
        conn = self.connections.get(topic)
        if conn is None:
            conn = self.connections[topic] = self.writer.add_connection(topic, msg.__msgtype__, typestore=ts)
        self.writer.write(conn, time_ns, ts.serialize_cdr(msg, msg.__msgtype__))

    def write_image(self, topic: str, array: np.ndarray, encoding: str, stamp: int, frame_id: str) -> None:
        self.write(topic, image_message(array, encoding, stamp, frame_id), stamp)

    def set_custom_data(self, key: str, value: str) -> None:
        self.writer.set_custom_data(key, value)


def write_dataset_bag(source: FolderSource, out: str | Path, config: BagWriteConfig = BagWriteConfig()) -> int:
    """Write ``source``'s frames (bgr8 image + mono8 GT [+ camera_info]) to a new bag; returns frames written."""
    if config.rate_hz <= 0:
        raise ValueError(f"rate must be positive, got {config.rate_hz}")
    period = int(round(1e9 / config.rate_hz))
    names: dict[str, str] = {}
    skipped = 0
    count = 0
    pairs = source.pairs[: config.limit] if config.limit else source.pairs
    source_iter = iter(source)
    with BagOut(out, config.storage) as bag:
        for (image_path, _), frame in tqdm(zip(pairs, source_iter), total=len(pairs), desc="bag", unit="frame",
                                           disable=None):
            if frame.error:
                log.error("skipped %s: %s", frame.name, frame.error)
                skipped += 1
                continue
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
    if count == 0:
        raise BagError(f"no frame of {source.root} could be read ({skipped} unreadable); nothing written to {out}")
    log.info("wrote %d frames to %s (%d skipped)", count, out, skipped)
    return count


def open_bag(path: str | Path):
    """Open a rosbag2 bag (folder, .db3 or .mcap) with rosbags; BagError naming the problem otherwise."""
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
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
    """The connection of ``topic``; BagError listing the bag's topics when absent."""
    for conn in reader.connections:
        if conn.topic == topic:
            return conn
    have = ", ".join(f"{t} [{i.msgtype}]" for t, i in sorted(reader.topics.items())) or "none"
    raise BagError(f"topic {topic!r} is not in {reader.path}; it has: {have}")
