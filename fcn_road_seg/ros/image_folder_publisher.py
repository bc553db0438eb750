"""ROS 2 node ``image_folder_publisher``: publish a folder of PNG/JPG frames as a camera, looping.

A demo or a test needs no camera: ``ros2 run fcn_road_seg image_folder_publisher --ros-args
-p folder:=samples -p rate_hz:=5.0``. Frames go out as bgr8 sensor_msgs/Image stamped now, with the
``frame_id`` parameter, on the relative topic ``image`` (resolved in the node's namespace; remap it:
``-r image:=/camera/image_raw``) with reliable QoS (REP-2003: compatible with best-effort and reliable
subscribers).
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.node import Node
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ..errors import FcnRoadSegError
from ..image_messages import encode, header, image_message
from ..images import list_images, read_bgr
from .spin import spin_node

__all__ = ["ImageFolderPublisher", "main"]

NODE_NAME = "image_folder_publisher"
MAX_CACHED_FRAMES = 64  # folders up to this size are decoded once; larger ones frame by frame
STAMP_HISTORY = 1000


def _read_only(description: str) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=True)


class ImageFolderPublisher(Node):
    """Publish the images of ``folder`` (sorted by name) at ``rate_hz``."""

    def __init__(self, **node_kwargs) -> None:
        """``node_kwargs`` go to rclpy's Node (``namespace``, ``context``, ``parameter_overrides``, ...)."""
        super().__init__(NODE_NAME, **node_kwargs)
        folder = self.declare_parameter("folder", "", _read_only("folder of PNG/JPG frames")).value
        rate = ParameterDescriptor(description="frames per second", read_only=True,
                                   floating_point_range=[FloatingPointRange(from_value=0.1, to_value=1000.0)])
        self.rate_hz = self.declare_parameter("rate_hz", 10.0, rate).value
        self.loop = self.declare_parameter("loop", True, _read_only("start again after the last frame")).value
        self.frame_id = self.declare_parameter("frame_id", "camera", _read_only("header.frame_id")).value
        self.wait_for = self.declare_parameter("wait_for_subscribers", 0, _read_only(
            "hold the first frame until this many subscribers are matched (0 = start at once)")).value
        try:
            if not folder:
                raise FcnRoadSegError("parameter 'folder' is empty; set it to a folder of PNG/JPG images: "
                                      "`ros2 run fcn_road_seg image_folder_publisher --ros-args -p folder:=DIR` "
                                      "(or `python -m fcn_road_seg.ros.image_folder_publisher --ros-args -p "
                                      "folder:=DIR`)")
            self.paths = list_images([Path(folder).expanduser()])
        except Exception:
            self.destroy_node()
            raise
        self._cache: dict[Path, np.ndarray] = {}
        self._unreadable: set[Path] = set()  # logged once, then skipped
        self._next = 0
        self.published = 0
        self._sources: OrderedDict[tuple[int, int], Path] = OrderedDict()
        self.publisher = self.create_publisher(Image, "image", 10)
        self.timer = self.create_timer(1.0 / self.rate_hz, self._tick)
        self.get_logger().info(f"publishing {len(self.paths)} images from {folder} on {self.publisher.topic_name} "
                               f"at {self.rate_hz:g} Hz{' (looping)' if self.loop else ''}")

    def _frame(self, path: Path) -> np.ndarray:
        frame = self._cache.get(path)
        if frame is None:
            frame = read_bgr(path)
            if len(self.paths) <= MAX_CACHED_FRAMES:
                self._cache[path] = frame
        return frame

    def _tick(self) -> None:
        if self.published == 0 and self.publisher.get_subscription_count() < self.wait_for:
            return
        while True:
            if len(self._unreadable) == len(self.paths):
                self.timer.cancel()
                self.get_logger().error(f"none of the {len(self.paths)} images is readable; publishing nothing")
                return
            if self._next >= len(self.paths):
                if not self.loop:
                    self.timer.cancel()
                    self.get_logger().info(f"published all {len(self.paths)} images; not looping")
                    return
                self._next = 0
            path = self.paths[self._next]
            self._next += 1
            if path in self._unreadable:  # said once, when first read; the next frame goes out instead
                continue
            try:
                frame = self._frame(path)
                break
            except FcnRoadSegError as err:
                self._unreadable.add(path)
                self.get_logger().error(f"skipping {path}, now and on later loops: {err}")
                return
        stamp = self.get_clock().now().nanoseconds
        self.publisher.publish(encode(image_message(frame, "bgr8", header(stamp, self.frame_id))))
        self.published += 1
        self._sources[divmod(stamp, 1_000_000_000)] = path
        if len(self._sources) > STAMP_HISTORY:
            self._sources.popitem(last=False)

    def source_of(self, header: Header) -> Path | None:
        """Return the file a recently published frame came from, by its header stamp."""
        return self._sources.get((header.stamp.sec, header.stamp.nanosec))


def main(args: list[str] | None = None) -> int:
    """Entry point of ``image_folder_publisher``; returns the exit status."""
    return spin_node(ImageFolderPublisher, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
