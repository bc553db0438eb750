"""ROS 2 node ``road_segmentation``: camera frames in, drivable-area masks out.

Threading (see docs/architecture.md): the subscription callback only keeps the newest message (the one
it replaces is counted as dropped) and wakes the worker; one worker thread converts the frame, runs the
RoadSegmenter and publishes ``~/mask`` (mono8 0/255), ``~/overlay`` (bgr8) and ``~/probability``
(mono8, ``metrics.quantize_probability``) with the input's header, and, when ``publish_bev_grid`` is on,
``~/bev_grid`` (nav_msgs/OccupancyGrid on the ground, ``bev_grid.py``). Outputs nobody subscribes to are not
computed. Frames with no usable content (blank, saturated, frozen: ``camera_faults``) are counted and get
no output; ``/diagnostics`` reports rate, latency, drops, bad frames and camera faults once a second
(ERROR while a camera fault lasts). The processing lives in ``road_core.py``, the parameters in
``road_params.py``.

Run: ``ros2 run fcn_road_seg road_seg_node --ros-args --params-file config/road_seg.yaml`` or
``python -m fcn_road_seg.ros.node``.
"""
from __future__ import annotations

import sys
import threading

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from ..errors import FcnRoadSegError
from .bev_grid import BevGridPublisher
from .road_core import DIAGNOSTICS_PERIOD_S, RoadSegmentationCore
from .road_params import CHOICES, DEFAULTS, LIVE, LiveSettings, NodeConfig, check_parameter, descriptor, qos
from .spin import spin_node

__all__ = ["RoadSegmentationNode", "NodeConfig", "LiveSettings", "DEFAULTS", "CHOICES", "LIVE", "check_parameter",
           "NODE_NAME", "main"]

NODE_NAME = "road_segmentation"


class RoadSegmentationNode(RoadSegmentationCore, Node):
    """Subscribe to a camera, segment road on one worker thread, publish mask/overlay/probability."""

    def __init__(self, **node_kwargs) -> None:
        """``node_kwargs`` go to rclpy's Node (``namespace``, ``context``, ``parameter_overrides``, ...)."""
        super().__init__(NODE_NAME, **node_kwargs)
        self._init_core()
        try:
            for name, default in DEFAULTS.items():
                self.declare_parameter(name, default, descriptor(name))
            self.config = self._read_config()
            self._live = self._read_live()
            self._segmenter = self._open_segmenter()
            self._segmenter.threshold = self._live.threshold or self._segmenter.contract.default_threshold
            self.bev = BevGridPublisher(self, self.config.image_topic, qos(self.config.output_qos, depth=1))
        except Exception:
            super().destroy_node()
            raise
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        out_qos = qos(self.config.output_qos, depth=5)
        self.mask_pub = self.create_publisher(Image, "~/mask", out_qos)
        self.overlay_pub = self.create_publisher(Image, "~/overlay", out_qos)
        self.probability_pub = self.create_publisher(Image, "~/probability", out_qos)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        compressed = self.config.input_transport == "compressed"
        topic = f"{self.config.image_topic.rstrip('/')}/compressed" if compressed else self.config.image_topic
        self.subscription = self.create_subscription(
            CompressedImage if compressed else Image, topic, self._on_image, qos(self.config.input_qos, depth=1)
        )
        self.input_topic = self.subscription.topic_name
        self._worker = threading.Thread(target=self._run_worker, name="road_segmentation_worker", daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        contract = self._segmenter.contract
        self.get_logger().info(
            f"segmenting {self.input_topic} ({self.config.input_transport}, {self.config.input_qos} QoS) with "
            f"{self._segmenter.backend.name} on {self._segmenter.backend.device}: {contract.variant} "
            f"{contract.input_width}x{contract.input_height}, threshold {self._segmenter.threshold:g}; "
            f"publishing {self.mask_pub.topic_name}, {self.overlay_pub.topic_name}, {self.probability_pub.topic_name}"
        )

    def destroy_node(self) -> None:
        """Stop and join the worker, release the model, then destroy the ROS entities."""
        self._close_core()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``road_seg_node``; returns the exit status (1: bad model or parameters, said why)."""
    return spin_node(RoadSegmentationNode, NODE_NAME, args,
                     fatal=(FcnRoadSegError, ValueError, ParameterException, NameValidationException))


if __name__ == "__main__":
    sys.exit(main())
