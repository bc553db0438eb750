"""road_seg_lifecycle_node with real rclpy: each transition opens or frees what it should.

test_launch.py drives the same transitions through `ros2 lifecycle` in a real launch.
"""
import threading

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (pip install '.[ros]' or source a ROS 2 install)")

from lifecycle_msgs.msg import State  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from fcn_road_seg.ros.lifecycle_node import RoadSegmentationLifecycleNode  # noqa: E402
from fcn_road_seg.ros.node import NODE_NAME  # noqa: E402

from ros_frames import image_msg  # noqa: E402
from ros_harness import RAW_TOPIC, remap_image, wait_until  # noqa: E402

MASK = f"/managed/{NODE_NAME}/mask"


def _workers() -> int:
    return sum(t.name == "road_segmentation_worker" for t in threading.enumerate())


def test_transitions_open_and_free_the_model_and_topics(harness, tiny_onnx, tmp_path, camvid_images):
    import cv2

    probe = harness.probe
    missing = tmp_path / "nope.onnx"
    node = harness.add(RoadSegmentationLifecycleNode(context=harness.context, namespace="managed",
                                                     cli_args=remap_image(),
                                                     parameter_overrides=[Parameter("model", value=str(missing))]))
    try:
        # unconfigured: parameters only; a model that cannot be opened fails configure, said with the fix
        assert node.segmenter is None and node.mask_pub is None and _workers() == 0
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node._state_machine.current_state[1] == "unconfigured" and node.segmenter is None
    finally:
        harness.remove(node)
    node = harness.add(RoadSegmentationLifecycleNode(
        context=harness.context, namespace="managed", cli_args=[*remap_image(), "-r", "camera_info:=/fcn_test/calib"],
        parameter_overrides=[Parameter("model", value=str(tiny_onnx)), Parameter("backend", value="onnxruntime")]))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.bev.camera_info_topic == "/fcn_test/calib"  # a remap of camera_info itself wins over the sibling
        backend = node.segmenter.backend
        assert backend.session is not None and node.mask_pub.topic_name == MASK
        assert node.subscription is None and _workers() == 0  # inactive: no camera, no worker
        probe.listen(MASK)
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_until(lambda: node.subscription is not None and probe.raw_pub.get_subscription_count() >= 1,
                   what="the camera subscription")
        assert node.input_topic == RAW_TOPIC and _workers() == 1
        msg = image_msg(cv2.imread(str(camvid_images[0])), "bgr8", probe.header())
        probe.raw_pub.publish(msg)
        probe.wait_for(MASK, msg.header)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.subscription is None and _workers() == 0 and node.mask_pub is not None
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.segmenter is None and backend.session is None and node.mask_pub is None  # backend freed
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS  # and configurable again
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_INACTIVE
    finally:
        probe.unlisten(MASK)
        harness.remove(node)
    assert _workers() == 0


def test_an_old_params_file_with_image_topic_is_refused_with_the_remap_to_use(harness):
    from fcn_road_seg.ros.node import RoadSegmentationNode

    for node_class in (RoadSegmentationNode, RoadSegmentationLifecycleNode):
        with pytest.raises(ValueError, match=r"image_topic was removed.*-r image:=/camera/image_raw"):
            node_class(context=harness.context, parameter_overrides=[Parameter("image_topic", value="/cam/image")])
