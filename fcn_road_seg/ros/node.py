"""ROS 2 node ``road_segmentation``: camera frames in, drivable-area masks out.

Inputs (relative names, resolved in the node's namespace, remappable as in image_pipeline): ``image``
(sensor_msgs/Image; ``image/compressed`` with ``input_transport: compressed``) and, for ``~/bev_grid``,
``camera_info`` beside the resolved image topic. Outputs: ``~/mask`` (mono8 0/255), ``~/overlay`` (bgr8) and
``~/probability`` (mono8, ``metrics.quantize_probability``) with the input's header, and, when
``publish_bev_grid`` is on, ``~/bev_grid`` (nav_msgs/OccupancyGrid on the ground, ``bev_grid.py``). Outputs
nobody subscribes to are not computed, and with ``lazy_subscription`` (default) the camera is not even
subscribed while nobody listens. Frames with no usable content (blank, saturated, frozen: ``camera_faults``)
are counted and get no output; ``/diagnostics`` reports rate, latency, drops, bad frames and camera faults
once a second (ERROR while a camera fault lasts). The processing lives in ``road_core.py``, the parameters in
``road_params.py``; ``lifecycle_node.py`` is the same node as a managed (lifecycle) node.

Run: ``ros2 run fcn_road_seg road_seg_node --ros-args -r image:=/camera/image_raw --params-file
config/road_seg.yaml`` or ``python -m fcn_road_seg.ros.node``.
"""
from __future__ import annotations

import sys

from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.node import Node

from ..errors import FcnRoadSegError
from .road_core import RoadSegmentationCore
from .road_params import CHOICES, DEFAULTS, LIVE, LiveSettings, NodeConfig, check_parameter
from .spin import spin_node

__all__ = ["RoadSegmentationNode", "NodeConfig", "LiveSettings", "DEFAULTS", "CHOICES", "LIVE", "check_parameter",
           "NODE_NAME", "main"]

NODE_NAME = "road_segmentation"
# Start-up errors said in one line with the fix (bad model, bad parameter or name), without a traceback.
FATAL = (FcnRoadSegError, ValueError, ParameterException, NameValidationException)


class RoadSegmentationNode(RoadSegmentationCore, Node):
    """Subscribe to a camera, segment road on one worker thread, publish mask/overlay/probability."""

    def __init__(self, **node_kwargs) -> None:
        """``node_kwargs`` go to rclpy's Node (``namespace``, ``context``, ``parameter_overrides``, ...)."""
        super().__init__(NODE_NAME, **node_kwargs)
        try:
            self._declare()
            self._configure()
            self._activate()
        except Exception:
            self.destroy_node()
            raise


def main(args: list[str] | None = None) -> int:
    """Entry point of ``road_seg_node``; returns the exit status (1: bad model or parameters, said why)."""
    return spin_node(RoadSegmentationNode, NODE_NAME, args, fatal=FATAL)


if __name__ == "__main__":
    sys.exit(main())
