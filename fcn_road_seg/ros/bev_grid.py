"""``~/bev_grid``: the node's road probability on the ground as a ``nav_msgs/OccupancyGrid`` (Nav2, planners).

Road = 0 (free), not road = 100 (occupied), cells the camera does not see = -1 (unknown), in the frame
``bev_frame`` (REP-103: x forward, y left, the ground is z = 0), with the input image's stamp, published
reliable + transient local, depth 1 (REP-2003 for maps: a late subscriber such as Nav2's StaticLayer gets the
newest grid at once; ``bev_transient_local: false`` makes it volatile). The grid covers ``bev_width`` m across
and ``bev_ahead`` m forward of the frame's origin at ``bev_resolution`` m. Intrinsics come from ``CameraInfo``
(P, else K; rectified images: distortion is not modelled) on ``camera_info``, the sibling of the resolved
image topic (image_transport's convention: remap ``image`` and the info follows; a remap of ``camera_info``
itself wins). The camera pose comes from tf2 (``bev_frame`` <- the image's frame_id, at the image's stamp,
waiting at most ``bev_tf_timeout``; else the latest transform, logged and counted) when ``tf2_ros`` is
importable, else from the ``camera_*`` parameters (``bev_pose_source`` chooses). The lookup table
(``evaluation.bev.ground_lut``) is rebuilt only when CameraInfo, the pose or the grid changes; per frame it
is one ``cv2.remap`` and a threshold. Off by default (``publish_bev_grid``); until CameraInfo arrives
nothing is published and /diagnostics says why.
"""
from __future__ import annotations

import array
import math
import threading
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from ..evaluation.bev import CameraPose, GroundGrid, ground_lut, occupancy, sibling_topic, transform_matrix
from .params import out_of_range, ranged_descriptor

try:  # system ROS 2 only (not on PyPI)
    from tf2_ros import TransformException
    from tf2_ros.buffer import Buffer
    from tf2_ros.transform_listener import TransformListener
except ImportError:
    Buffer = None

__all__ = ["BevGridPublisher", "BEV_DEFAULTS", "BEV_LIVE", "check_bev_parameter", "TF2_AVAILABLE"]

TF2_AVAILABLE = Buffer is not None
MAX_CELLS = 4_000_000
BEV_DEFAULTS = {
    "publish_bev_grid": False,
    "bev_frame": "base_link",
    "bev_transient_local": True,
    "bev_pose_source": "auto",
    "bev_tf_timeout": 0.05,
    "bev_resolution": 0.1,
    "bev_width": 20.0,
    "bev_ahead": 40.0,
    "camera_height": 1.5,
    "camera_pitch": 0.0,
    "camera_roll": 0.0,
    "camera_yaw": 0.0,
    "camera_x": 0.0,
    "camera_y": 0.0,
}
BEV_LIVE = ("publish_bev_grid", "bev_resolution", "bev_width", "bev_ahead", "camera_height", "camera_pitch",
            "camera_roll", "camera_yaw", "camera_x", "camera_y")
_POSE_SOURCES = ("auto", "tf", "parameters")
_RANGES = {"bev_tf_timeout": (0.0, 1.0), "bev_resolution": (0.01, 5.0), "bev_width": (0.1, 500.0),
           "bev_ahead": (0.1, 500.0),
           "camera_height": (0.01, 100.0), "camera_pitch": (-1.5, 1.5), "camera_roll": (-math.pi, math.pi),
           "camera_yaw": (-math.pi, math.pi), "camera_x": (-100.0, 100.0), "camera_y": (-100.0, 100.0)}
_DESCRIPTIONS = {
    "publish_bev_grid": "publish ~/bev_grid (nav_msgs/OccupancyGrid: road 0, not road 100, unseen -1)",
    "bev_frame": "frame of ~/bev_grid (REP-103, ground at z = 0), e.g. base_link or base_footprint",
    "bev_transient_local": "~/bev_grid durability: transient local (REP-2003 maps, Nav2 StaticLayer) or volatile",
    "bev_pose_source": "camera pose: tf (tf2_ros), parameters (camera_*), auto = tf when tf2_ros is installed",
    "bev_tf_timeout": "s to wait for the tf at the image's stamp before falling back to the latest transform",
    "bev_resolution": "~/bev_grid cell size (m)",
    "bev_width": "~/bev_grid extent across, centred on bev_frame's x axis (m)",
    "bev_ahead": "~/bev_grid extent forward of bev_frame's origin (m)",
    "camera_height": "camera height above the ground in bev_frame (m; pose from parameters)",
    "camera_pitch": "camera pitch (rad, > 0 looks down; pose from parameters)",
    "camera_roll": "camera roll (rad; pose from parameters)",
    "camera_yaw": "camera yaw (rad, > 0 looks left; pose from parameters)",
    "camera_x": "camera position forward of bev_frame's origin (m; pose from parameters)",
    "camera_y": "camera position left of bev_frame's origin (m; pose from parameters)",
}


def check_bev_parameter(name: str, value, values: dict | None = None) -> str | None:
    """Why ``value`` is unacceptable for BEV parameter ``name`` (``values``: the others, for the grid size)."""
    if name == "bev_pose_source" and value not in _POSE_SOURCES:
        return f"bev_pose_source must be one of {', '.join(_POSE_SOURCES)}, got {value!r}"
    if name == "bev_pose_source" and value == "tf" and not TF2_AVAILABLE:
        return "bev_pose_source tf needs tf2_ros (a system ROS 2 install); use parameters (camera_*)"
    if name == "bev_frame" and not value:
        return "bev_frame must not be empty"
    problem = out_of_range(name, value, _RANGES)
    if problem:
        return problem
    if values is not None and name in ("bev_resolution", "bev_width", "bev_ahead"):
        v = {**values, name: value}
        try:
            rows, cols = GroundGrid(v["bev_resolution"], v["bev_width"], v["bev_ahead"]).shape
        except ValueError as err:
            return f"bev_width and bev_ahead must be at least bev_resolution ({err})"
        cells = rows * cols
        if cells > MAX_CELLS:
            return f"~/bev_grid would have {cells} cells (> {MAX_CELLS}); use a coarser bev_resolution"
    return None


@dataclass(frozen=True)
class _Settings:
    enabled: bool
    grid: GroundGrid
    pose: np.ndarray  # 4x4 ground <- camera optical frame, from the camera_* parameters


@dataclass(frozen=True)
class _Intrinsics:
    projection: np.ndarray  # P (3x4), or K (3x3) when P is all zero
    size: tuple[int, int]  # (height, width)
    key: bytes


class BevGridPublisher:
    """Owns the ``~/bev_grid`` parameters.

    Between ``open`` and ``close`` it also owns the grid's publisher, the CameraInfo subscription and the lookup
    table.
    """

    def __init__(self, node) -> None:
        """Declare and check the BEV parameters on ``node`` (topics come with ``open``)."""
        self.node = node
        for name, default in BEV_DEFAULTS.items():
            descriptor = ranged_descriptor(name, _DESCRIPTIONS[name], name not in BEV_LIVE, default, _RANGES)
            node.declare_parameter(name, default, descriptor)
        values = self._values()
        for name, value in values.items():
            reason = check_bev_parameter(name, value, values)
            if reason:
                raise ValueError(f"parameter {reason}")
        self.frame = values["bev_frame"]
        source = values["bev_pose_source"]
        self.pose_source = "tf" if source == "tf" or (source == "auto" and TF2_AVAILABLE) else "parameters"
        self._tf_timeout = Duration(seconds=values["bev_tf_timeout"])
        self.qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL if values["bev_transient_local"]
                              else DurabilityPolicy.VOLATILE)
        self._settings = self._make_settings(values)
        self._lock = threading.Lock()
        self._intrinsics: _Intrinsics | None = None
        self._lut = None
        self._lut_key: tuple | None = None
        self.published = self.rebuilds = self.skipped = self.tf_fallbacks = 0
        self.problem: str | None = None  # why the last frame gave no grid
        self.publisher = self.info_subscription = None
        self.camera_info_topic = ""
        node.add_on_set_parameters_callback(self._validate)
        node.add_post_set_parameters_callback(self._apply)

    def open(self, image_topic: str, events: PublisherEventCallbacks | None = None) -> None:
        """Create ``~/bev_grid`` and subscribe to the CameraInfo beside ``image_topic`` (resolved, remapped)."""
        node = self.node
        remapped = node.resolve_topic_name("camera_info")
        self.camera_info_topic = (remapped if remapped != node.resolve_topic_name("camera_info", only_expand=True)
                                  else sibling_topic(image_topic))
        self.publisher = node.create_publisher(OccupancyGrid, "~/bev_grid", self.qos, event_callbacks=events)
        self.info_subscription = node.create_subscription(CameraInfo, self.camera_info_topic, self._on_camera_info,
                                                          qos_profile_sensor_data)
        if self.pose_source == "tf":
            self._tf_buffer = Buffer()
            self._tf_listener = TransformListener(self._tf_buffer, node)

    def close(self) -> None:
        """Destroy the publisher, the subscription and the tf listener (``open`` makes them again)."""
        with self._lock:
            if self.publisher is not None:
                self.node.destroy_publisher(self.publisher)
                self.node.destroy_subscription(self.info_subscription)
                self.publisher = self.info_subscription = None
            if getattr(self, "_tf_listener", None) is not None:
                self._tf_listener.unregister()
                self._tf_listener = self._tf_buffer = None
            self._intrinsics = None

    # -- parameters ---------------------------------------------------------------------------------------------
    def _values(self, changed: dict | None = None) -> dict:
        values = {name: self.node.get_parameter(name).value for name in BEV_DEFAULTS}
        values.update(changed or {})
        return values

    @staticmethod
    def _make_settings(v: dict) -> _Settings:
        return _Settings(v["publish_bev_grid"], GroundGrid(v["bev_resolution"], v["bev_width"], v["bev_ahead"]),
                         CameraPose(v["camera_x"], v["camera_y"], v["camera_height"], v["camera_roll"],
                                    v["camera_pitch"], v["camera_yaw"]).matrix())

    def _validate(self, params) -> SetParametersResult:
        changed = {p.name: p.value for p in params if p.name in BEV_DEFAULTS}
        values = self._values(changed)
        for name, value in changed.items():
            reason = check_bev_parameter(name, value, values)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply(self, params) -> None:
        if any(p.name in BEV_DEFAULTS for p in params):
            self._settings = self._make_settings(self._values())  # the lookup table follows on the next frame

    # -- inputs -------------------------------------------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        p = np.asarray(msg.p, np.float64).reshape(3, 4)
        projection = p if p.any() else np.asarray(msg.k, np.float64).reshape(3, 3)
        key = projection.tobytes() + bytes(f"{msg.width}x{msg.height}", "ascii")
        if self._intrinsics is None or self._intrinsics.key != key:
            self._intrinsics = _Intrinsics(projection, (msg.height, msg.width), key)

    def listened(self) -> bool:
        """Whether someone subscribes to ``~/bev_grid``."""
        publisher = self.publisher
        return publisher is not None and publisher.get_subscription_count() > 0

    def wanted(self) -> bool:
        """Whether this frame should give a grid (enabled and someone listens)."""
        return self._settings.enabled and self.listened()

    def _pose(self, header: Header, settings: _Settings) -> np.ndarray | None:
        """Return the camera pose at the image's stamp (tf: that stamp, else the latest transform, counted)."""
        if self.pose_source == "parameters":
            return settings.pose
        try:
            t = self._tf_buffer.lookup_transform(self.frame, header.frame_id, Time.from_msg(header.stamp),
                                                 timeout=self._tf_timeout)
        except TransformException as at_stamp:
            try:
                t = self._tf_buffer.lookup_transform(self.frame, header.frame_id, Time())
            except TransformException as err:
                self.problem = f"no tf from {header.frame_id!r} to {self.frame!r} ({err})"
                return None
            self.tf_fallbacks += 1
            self.node.get_logger().warn(
                f"no tf from {header.frame_id!r} to {self.frame!r} at the image's stamp ({at_stamp}); the grid uses "
                f"the latest transform ({self.tf_fallbacks} times so far)", throttle_duration_sec=5.0)
        return transform_matrix(t.transform)

    # -- per frame ----------------------------------------------------------------------------------------------
    def publish(self, probability: np.ndarray, threshold: float, header: Header) -> bool:
        """Publish the grid of one frame's road probability; False (and ``problem`` says why) when it cannot."""
        with self._lock:
            ok = self._publish(probability, threshold, header)
            self.skipped += not ok
            return ok

    def _publish(self, probability: np.ndarray, threshold: float, header: Header) -> bool:
        settings, intrinsics = self._settings, self._intrinsics
        if intrinsics is None or self.publisher is None:
            self.problem = f"waiting for CameraInfo on {self.camera_info_topic}: no grid without intrinsics"
            return False
        if intrinsics.size != probability.shape[:2]:
            self.problem = (f"CameraInfo on {self.camera_info_topic} is {intrinsics.size[1]}x{intrinsics.size[0]}, "
                            f"frames are {probability.shape[1]}x{probability.shape[0]}")
            return False
        pose = self._pose(header, settings)
        if pose is None:
            return False
        key = (intrinsics.key, pose.tobytes(), settings.grid)
        if key != self._lut_key:
            self._lut, self._lut_key = ground_lut(intrinsics.projection, pose, intrinsics.size, settings.grid), key
            self.rebuilds += 1
        cells = occupancy(self._lut, probability, threshold)
        msg = OccupancyGrid(header=Header(stamp=header.stamp, frame_id=self.frame))
        grid = settings.grid
        msg.info.map_load_time = header.stamp
        msg.info.resolution = float(grid.resolution)
        msg.info.height, msg.info.width = cells.shape
        msg.info.origin.position.x, msg.info.origin.position.y = grid.origin
        msg.data = array.array("b", cells.tobytes())
        self.publisher.publish(msg)
        self.published += 1
        self.problem = None
        return True

    # -- diagnostics --------------------------------------------------------------------------------------------
    def diagnostics(self, node_name: str) -> list[DiagnosticStatus]:
        """Return a /diagnostics status for the grid while it is enabled (none while it is off)."""
        settings = self._settings
        if not settings.enabled:
            return []
        status = DiagnosticStatus(name=f"{node_name}: bev grid", hardware_id=self.frame)
        problem = self.problem
        if self._intrinsics is None:
            problem = f"waiting for CameraInfo on {self.camera_info_topic}: no grid without intrinsics"
        if problem:
            status.level, status.message = DiagnosticStatus.WARN, problem
        else:
            status.level, status.message = DiagnosticStatus.OK, f"{self.published} grids published"
        rows, cols = settings.grid.shape
        fields = {"camera_info_topic": self.camera_info_topic, "pose_source": self.pose_source, "frame": self.frame,
                  "cells": f"{cols}x{rows}", "resolution": f"{settings.grid.resolution:g}",
                  "published": str(self.published), "skipped": str(self.skipped),
                  "lut_rebuilds": str(self.rebuilds), "tf_fallbacks": str(self.tf_fallbacks),
                  "topic": self.publisher.topic_name if self.publisher is not None else "closed"}
        status.values = [KeyValue(key=k, value=v) for k, v in fields.items()]
        return [status]
