"""The ``road_segmentation`` node as a managed (lifecycle) node: ``road_seg_lifecycle_node``.

Same parameters, topics and processing as ``road_seg_node`` (``road_core.py``), started unconfigured and
driven by ``ros2 lifecycle set`` or a lifecycle manager (Nav2's ``lifecycle_manager``):

- configure: read the parameters, open the model (builds the TensorRT engine on first use), create the outputs;
- activate: start the worker, subscribe to the camera (lazily, as the plain node), publish diagnostics;
- deactivate: unsubscribe and stop the worker (the outputs stay, silent);
- cleanup: destroy the outputs and free the backend; shutdown: all of it, from any state.

A model that cannot be opened fails the configure transition (logged with the fix); the node stays unconfigured.
"""
from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .node import FATAL, NODE_NAME
from .road_core import RoadSegmentationCore
from .spin import spin_node

__all__ = ["RoadSegmentationLifecycleNode", "main"]


class RoadSegmentationLifecycleNode(RoadSegmentationCore, LifecycleNode):
    """``road_segmentation`` whose model and topics follow the lifecycle's transitions."""

    def __init__(self, **node_kwargs) -> None:
        """``node_kwargs`` go to rclpy's LifecycleNode (``namespace``, ``context``, ``parameter_overrides``, ...)."""
        super().__init__(NODE_NAME, **node_kwargs)
        try:
            self._declare()
        except Exception:
            self.destroy_node()
            raise

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except FATAL as err:
            self.get_logger().error(f"configure failed: {err}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS


def main(args: list[str] | None = None) -> int:
    """Entry point of ``road_seg_lifecycle_node``; returns the exit status (1: bad parameters, said why)."""
    return spin_node(RoadSegmentationLifecycleNode, NODE_NAME, args, fatal=FATAL)


if __name__ == "__main__":
    sys.exit(main())
