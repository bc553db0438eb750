"""Bad frames in the node by cause (issue 22, items 11-12), with real rclpy.

A count per cause in /diagnostics, one log line per cause's first occurrence (a flood of one cause does not hide
another), the WARN cleared once good frames have flowed for WARN_CLEARS_AFTER_S; the folder publisher names an
unreadable file once.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (pip install '.[ros]' or source a ROS 2 install)")

from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from fcn_road_seg.ros import bad_frames  # noqa: E402
from fcn_road_seg.ros.node import NODE_NAME, RoadSegmentationNode  # noqa: E402
from ros_frames import compressed_msg  # noqa: E402
from ros_harness import RosoutRecorder, remap_image, status_values, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rosout(harness):
    return RosoutRecorder(harness.probe)


def _frames(good: np.ndarray) -> dict[str, list]:
    """Compressed frames of each bad cause, built from a real camera frame (and bytes that are no message)."""
    corrupt = compressed_msg(good, "jpeg")
    corrupt.data = corrupt.data[:300]  # truncated JPEG
    depth = compressed_msg(good, "png")
    depth.format = "16UC1; compressedDepth png"
    tiny = compressed_msg(cv2.resize(good, (24, 16)), "png")
    blank = compressed_msg(np.full_like(good, 128), "png")
    garbage = b"\x00\x01\x00\x00 these bytes are no CompressedImage"  # a CDR header, then nonsense
    return {"decode_error": [garbage, corrupt, corrupt], "unsupported_encoding": [depth] * 2, "wrong_size": [tiny] * 2,
            "camera_fault": [blank]}


def test_bad_frames_are_counted_and_logged_per_cause_and_the_warn_clears(harness, rosout, tiny_onnx, kitti_images,
                                                                         monkeypatch):
    monkeypatch.setattr(bad_frames, "WARN_CLEARS_AFTER_S", 2.0)  # documented default 10 s; the rule is the same
    node = harness.add(RoadSegmentationNode(context=harness.context, namespace="causes", cli_args=remap_image(),
                                            parameter_overrides=[
        Parameter("model", value=str(tiny_onnx)),
        Parameter("backend", value="onnxruntime"), Parameter("input_transport", value="compressed"),
        Parameter("input_qos", value="reliable"), Parameter("frozen_frames", value=0)]))  # one good frame, resent
    probe = harness.probe
    mask_topic = f"/causes/{NODE_NAME}/mask"
    probe.listen(mask_topic)
    logger = node.get_logger().name
    try:
        wait_until(lambda: probe.compressed_pub.get_subscription_count() >= 1
                   and node.mask_pub.get_subscription_count() >= 1, what="discovery")
        good = cv2.imread(str(kitti_images[0]))
        sent = 0
        for cause, msgs in _frames(good).items():
            for msg in msgs:
                if not isinstance(msg, bytes):
                    msg.header = probe.header()
                probe.compressed_pub.publish(msg)  # bytes go out as they are, as from a raw publisher
                sent += 1
                # one at a time: a newer frame would replace this one in the mailbox before the worker looks
                wait_until(lambda: node.stats()["bad_frames"] + node.stats()["camera_faults"] == sent,
                           what=f"{cause} frame to be counted")
        stats = node.stats()
        assert (stats["bad_frames_decode_error"], stats["bad_frames_unsupported_encoding"],
                stats["bad_frames_wrong_size"], stats["camera_faults"]) == (3, 2, 2, 1)
        # each cause's first occurrence is logged, however close behind another cause it came; repeats are not
        for cause in bad_frames.CAUSES:
            wait_until(lambda c=cause: rosout.lines(logger, Log.ERROR, f"[{c}]"), what=f"the {cause} log line")
            assert len(rosout.lines(logger, Log.ERROR, f"[{cause}]")) == 1, rosout.lines(logger)
        assert "(CompressedImage '16UC1; compressedDepth png'" in rosout.lines(logger, Log.ERROR, "[unsupported")[0]
        assert "(39 bytes): sensor_msgs/msg/CompressedImage: 39 bytes do not decode" in rosout.lines(
            logger, Log.ERROR, "[decode_error]")[0]

        # a good frame ends the camera fault (ERROR -> WARN); the WARN holds until good frames flowed for 2 s
        msg = compressed_msg(good, "png")
        msg.header = probe.header()
        probe.compressed_pub.publish(msg)
        probe.wait_for(mask_topic, msg.header)
        first_good = time.monotonic()
        status = probe.latest_status(f"/causes/{NODE_NAME}", lambda s: s.level == s.WARN, timeout=5.0)
        values = status_values(status)
        assert "7 bad frames (3 decode error, 2 unsupported encoding, 2 wrong size)" in status.message
        assert (values["bad_frames_decode_error"], values["bad_frames_unsupported_encoding"],
                values["bad_frames_wrong_size"], values["camera_faults"]) == ("3", "2", "2", "1")
        while time.monotonic() - first_good < 3.5:  # good frames keep flowing
            msg = compressed_msg(good, "png")
            msg.header = probe.header()
            probe.compressed_pub.publish(msg)
            probe.wait_for(mask_topic, msg.header)
        ok = probe.latest_status(f"/causes/{NODE_NAME}", lambda s: s.level == s.OK, timeout=5.0)
        assert status_values(ok)["bad_frames_decode_error"] == "3"  # the counts stay
        assert time.monotonic() - first_good >= 2.0
    finally:
        harness.remove(node)


def test_the_folder_publisher_names_an_unreadable_file_once(harness, rosout, tmp_path, kitti_images):
    from fcn_road_seg.ros.image_folder_publisher import ImageFolderPublisher

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), cv2.imread(str(kitti_images[0])))
    half = (ROOT / "samples" / "kitti_um_000000.jpg").read_bytes()
    (folder / "1_truncated.jpg").write_bytes(half[: len(half) // 2])
    topic = "/fcn_test/folder_once"
    probe = harness.probe
    probe.listen(topic)
    publisher = harness.add(ImageFolderPublisher(context=harness.context, cli_args=remap_image(topic),
                                                 parameter_overrides=[Parameter("folder", value=str(folder)),
                                                                      Parameter("rate_hz", value=20.0)]))
    logger = publisher.get_logger().name
    try:
        wait_until(lambda: len(probe.images[topic]) >= 6, what="the folder to loop a few times")
    finally:
        harness.remove(publisher)
    time.sleep(0.5)  # /rosout delivery
    lines = rosout.lines(logger, Log.ERROR, "1_truncated.jpg")
    assert len(lines) == 1, lines
    assert f"skipping {folder / '1_truncated.jpg'}, now and on later loops" in lines[0]
    # the good frame goes out on every tick: the unreadable one no longer costs a tick
    assert all(probe.images[topic][k].width == 1242 for k in probe.images[topic])


def test_a_folder_with_no_readable_image_stops_with_one_line(harness, rosout, tmp_path):
    from fcn_road_seg.ros.image_folder_publisher import ImageFolderPublisher

    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    publisher = harness.add(ImageFolderPublisher(context=harness.context, cli_args=remap_image("/fcn_test/folder_none"),
                                                 parameter_overrides=[Parameter("folder", value=str(tmp_path)),
                                                                      Parameter("rate_hz", value=50.0)]))
    logger = publisher.get_logger().name
    try:
        wait_until(lambda: rosout.lines(logger, Log.ERROR, "none of the 1 images is readable"), what="the stop line")
        time.sleep(0.3)
        assert publisher.published == 0 and len(rosout.lines(logger, Log.ERROR, str(tmp_path / "a.png"))) == 1
        assert len(rosout.lines(logger, Log.ERROR, "none of the 1 images is readable")) == 1
    finally:
        harness.remove(publisher)
