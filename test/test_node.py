"""The road_segmentation node with real rclpy (localhost DDS, the test's ROS_DOMAIN_ID) and a compact random FCN-8s.

Headers, encodings, compressed input, bad frames, bursts, live parameters, shutdown.
"""
import array
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (pip install '.[ros]' or source a ROS 2 install)")

import yaml  # noqa: E402  (PyYAML comes with rclpy)
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from fcn_road_seg.evaluation.metrics import quantize_probability  # noqa: E402
from fcn_road_seg.ros.node import DEFAULTS, LIVE, NODE_NAME, RoadSegmentationNode  # noqa: E402
from fcn_road_seg.pipeline import RoadSegmenter  # noqa: E402
from fcn_road_seg.image_messages import message_to_bgr  # noqa: E402

from ros_frames import ENCODINGS, compressed_msg, image_msg  # noqa: E402
from ros_harness import RAW_TOPIC, remap_image, status_values, wait_until  # noqa: E402
from recording_backend import RecordingBackend, expected_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MASK, OVERLAY, PROBABILITY = (f"/{NODE_NAME}/{t}" for t in ("mask", "overlay", "probability"))
# The random test model's road probability spans about 0.50-0.66 on these frames: a threshold inside
# that span gives masks with both road and background.
THRESHOLD = 0.57


@pytest.fixture(scope="module")
def road(harness, tiny_onnx):
    node = harness.add(RoadSegmentationNode(context=harness.context, cli_args=remap_image(), parameter_overrides=[
        Parameter("model", value=str(tiny_onnx)), Parameter("threshold", value=THRESHOLD)]))
    probe = harness.probe
    for topic in (MASK, OVERLAY, PROBABILITY):
        probe.listen(topic)
    wait_until(lambda: probe.raw_pub.get_subscription_count() >= 1 and node.mask_pub.get_subscription_count() >= 1
               and node.overlay_pub.get_subscription_count() >= 1
               and node.probability_pub.get_subscription_count() >= 1, what="discovery")
    yield node
    harness.remove(node)


@pytest.fixture(scope="module")
def offline(tiny_onnx):
    with RoadSegmenter(tiny_onnx, backend="onnxruntime", threshold=THRESHOLD) as seg:
        yield seg


@pytest.fixture(scope="module")
def kitti_frame(kitti_images):
    return cv2.imread(str(kitti_images[0]))


@pytest.fixture(scope="module")
def camvid_frame(camvid_images):
    return cv2.imread(str(camvid_images[0]))


def roundtrip(harness, msg, topics=(MASK,), publisher=None):
    msg.header = harness.probe.header()
    (publisher or harness.probe.raw_pub).publish(msg)
    return [harness.probe.wait_for(t, msg.header) for t in topics]


def pixels(msg, channels=1):
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    return np.frombuffer(msg.data, np.uint8).reshape(shape)


def assert_same_mask(got, expected, what):
    # Same model, same frame: the node and an offline RoadSegmenter agree pixel for pixel, up to the
    # handful of pixels whose probability sits on the threshold (ONNX Runtime sessions may reduce in a
    # different order).
    agree = (got == expected).mean()
    assert agree > 0.999, f"{what}: node mask agrees with the offline pipeline on only {agree:.2%} of pixels"


def test_outputs_keep_the_input_header_and_match_the_offline_pipeline(harness, road, offline, kitti_frame):
    msg = image_msg(kitti_frame, "bgr8")
    mask, overlay, probability = roundtrip(harness, msg, (MASK, OVERLAY, PROBABILITY))
    for out, encoding in ((mask, "mono8"), (overlay, "bgr8"), (probability, "mono8")):
        assert out.header == msg.header  # stamp and frame_id unchanged
        assert (out.width, out.height, out.encoding) == (1242, 375, encoding)
        assert out.step == out.width * (3 if encoding == "bgr8" else 1)
    expected = offline.segment(kitti_frame, color_order="bgr", overlay_alpha=DEFAULTS["overlay_alpha"])
    got_mask = pixels(mask)
    assert set(np.unique(got_mask)) == {0, 255}  # the random model marks some pixels, not all
    assert_same_mask(got_mask, expected.mask, "bgr8")
    q = pixels(probability).astype(int)
    assert np.abs(q - quantize_probability(expected.probability)).max() <= 1
    assert ((q / 255 >= THRESHOLD) == (got_mask == 255)).mean() > 0.99  # mask = probability >= threshold
    off = got_mask == 0
    np.testing.assert_array_equal(pixels(overlay, 3)[off], kitti_frame[off])  # tint only on road


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding(harness, road, offline, camvid_frame, encoding):
    msg = image_msg(camvid_frame, encoding)
    (mask,) = roundtrip(harness, msg)
    assert mask.header == msg.header and (mask.width, mask.height) == (480, 360)
    assert_same_mask(pixels(mask), offline.segment(message_to_bgr(msg)).mask, encoding)


def test_resolution_changes_mid_stream(harness, road, kitti_frame, camvid_frame):
    for frame in (kitti_frame, camvid_frame, cv2.resize(kitti_frame, (621, 188)), kitti_frame):
        (mask,) = roundtrip(harness, image_msg(frame, "rgb8"))
        assert (mask.height, mask.width) == frame.shape[:2]


def test_bad_frames_are_counted_and_the_node_keeps_answering(harness, road, camvid_frame, capfd):
    before = road.stats()["bad_frames"]
    probe = harness.probe
    bad = [image_msg(camvid_frame, "rgb8"), image_msg(camvid_frame, "rgb8"), image_msg(camvid_frame[:20, :20], "bgr8")]
    bad[0].encoding = "mono16"  # unsupported
    bad[1].height = 200  # data does not match the size
    for i, msg in enumerate(bad, start=1):
        msg.header = probe.header()
        probe.raw_pub.publish(msg)
        # One at a time: a newer frame would replace this one in the mailbox before the worker looks.
        wait_until(lambda: road.stats()["bad_frames"] == before + i, what=f"bad frame {i} to be counted")
    (mask,) = roundtrip(harness, image_msg(camvid_frame, "bgr8"))
    assert (mask.width, mask.height) == (480, 360)
    for msg in bad:
        assert msg.header.stamp.sec not in {k[0] for k in probe.images[MASK]}  # no output for bad frames
    assert road.stats()["bad_frames"] == before + 3
    status = probe.latest_status(NODE_NAME, lambda s: int(status_values(s)["bad_frames"]) >= before + 3)
    values = status_values(status)
    assert status.level == status.WARN and "bad frames" in status.message
    assert values["backend"] in ("openvino", "onnxruntime") and values["model"].endswith("tiny.onnx")  # auto, CPU
    for key in ("rate_hz", "latency_p50_ms", "latency_p95_ms", "dropped", "received", "processed", "device"):
        assert key in values
    assert float(values["latency_p95_ms"]) >= float(values["latency_p50_ms"]) > 0
    # the (throttled) error names the encoding and the topic
    assert f"bad frame on {RAW_TOPIC} (Image 'mono16' 480x360)" in capfd.readouterr().err


def test_burst_is_absorbed_without_backlog(harness, road, camvid_frame):
    """100 Hz into a node capped at 20 Hz (a model that slow): drops counted, newest frame wins."""
    probe = harness.probe
    results = probe.set_parameters(NODE_NAME, max_rate_hz=20.0)
    assert results[0].successful
    roundtrip(harness, image_msg(camvid_frame, "bgr8"))  # settle
    time.sleep(0.1)
    start = road.stats()
    frame = image_msg(camvid_frame, "bgr8")
    headers = []
    t0 = time.monotonic()
    for i in range(100):
        frame.data[i % 50] = i  # a camera's noise: no two frames alike (identical ones count as a frozen camera)
        frame.header = probe.header()
        headers.append(frame.header)
        probe.raw_pub.publish(frame)
        time.sleep(max(0.0, t0 + (i + 1) * 0.01 - time.monotonic()))
    burst_s = time.monotonic() - t0
    last = probe.wait_for(MASK, headers[-1], timeout=2.0)  # the newest frame comes out
    assert last.header == headers[-1]
    time.sleep(0.3)
    end = road.stats()
    received = end["received"] - start["received"]
    processed = end["processed"] - start["processed"]
    dropped = end["dropped"] - start["dropped"]
    print(f"burst of 100 at 100 Hz in {burst_s:.2f} s: {received} received, {processed} segmented, {dropped} dropped")
    # The subscription keeps depth 1 (newest wins already in DDS), so frames arriving faster than the
    # executor takes them are replaced there; the callback itself must keep taking them at a high rate.
    assert received >= 50, f"the executor took only {received}/100 frames: is the callback blocking?"
    assert processed + dropped == received  # every frame is either segmented or counted as dropped
    assert dropped >= received - (burst_s + 0.2) * 20 - 2
    assert processed <= (burst_s + 0.2) * 20 + 2
    burst = {(h.stamp.sec, h.stamp.nanosec, h.frame_id) for h in headers}
    arrived = [key for _, key in probe.arrivals[MASK] if key in burst]
    assert arrived[-1][0] == headers[-1].stamp.sec  # nothing older trails in after the newest
    assert probe.set_parameters(NODE_NAME, max_rate_hz=0.0)[0].successful


def test_live_parameters_are_validated_and_applied(harness, road, offline, kitti_frame):
    probe = harness.probe
    accepted = probe.set_parameters(NODE_NAME, threshold=0.6, overlay_alpha=1.0)
    assert all(r.successful for r in accepted)
    mask, overlay = roundtrip(harness, image_msg(kitti_frame, "bgr8"), (MASK, OVERLAY))
    expected = offline.segment(kitti_frame)
    assert_same_mask(pixels(mask), np.where(expected.probability >= 0.6, 255, 0), "threshold 0.6")
    on = pixels(mask) == 255
    assert 0 < on.mean() < 0.5 and (pixels(overlay, 3)[on] == (0, 255, 0)).all()  # alpha 1: pure tint

    rejected = {
        "threshold": (1.0, "below 1"),
        "overlay_alpha": (1.5, "out of range"),
        "max_rate_hz": (float("nan"), "out of range"),
        "publish_overlay": ("yes", "type"),
        "model": ("/other.onnx", "read-only"),
        "backend": ("tensorrt", "read-only"),
    }
    for name, (value, reason) in rejected.items():
        (result,) = probe.set_parameters(NODE_NAME, **{name: value})
        assert not result.successful and reason in result.reason, (name, result.reason)
    assert road.get_parameter("threshold").value == 0.6

    assert all(r.successful for r in probe.set_parameters(NODE_NAME, publish_overlay=False, threshold=0.0,
                                                          overlay_alpha=0.5))
    msg = image_msg(kitti_frame, "bgr8")
    (mask,) = roundtrip(harness, msg)
    default = offline.contract.default_threshold  # 0 selects the model's own threshold (0.5 here)
    assert_same_mask(pixels(mask), np.where(expected.probability >= default, 255, 0), "threshold 0")
    time.sleep(0.3)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) not in probe.images[OVERLAY]
    assert all(r.successful for r in probe.set_parameters(NODE_NAME, publish_overlay=True, threshold=THRESHOLD))


def test_compressed_transport(harness, tiny_onnx, offline, kitti_frame):
    node = harness.add(RoadSegmentationNode(context=harness.context, namespace="compressed", cli_args=remap_image(),
                                            parameter_overrides=[
        Parameter("model", value=str(tiny_onnx)), Parameter("threshold", value=THRESHOLD),
        Parameter("input_transport", value="compressed"), Parameter("input_qos", value="reliable")]))
    probe = harness.probe
    try:
        assert node.input_topic == RAW_TOPIC + "/compressed"
        topic = "/compressed" + MASK
        probe.listen(topic)
        wait_until(lambda: probe.compressed_pub.get_subscription_count() >= 1
                   and node.mask_pub.get_subscription_count() >= 1, what="discovery")
        for fmt in ("jpeg", "png"):
            msg = compressed_msg(kitti_frame, fmt)
            (mask,) = roundtrip(harness, msg, (topic,), probe.compressed_pub)
            assert mask.header == msg.header and (mask.width, mask.height) == (1242, 375)
            decoded = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
            assert_same_mask(pixels(mask), offline.segment(decoded).mask, fmt)
        corrupt = compressed_msg(kitti_frame, "jpeg")
        corrupt.data = corrupt.data[:200]
        corrupt.header = probe.header()
        probe.compressed_pub.publish(corrupt)
        wait_until(lambda: node.stats()["bad_frames"] == 1, what="the corrupt frame to be counted")
        # Damaged real frames: half a JPEG or PNG, and a JPEG hit by a transmission error (an invalid marker
        # in its entropy-coded data), which OpenCV decodes with everything after it grey (marked road).
        for n, (fmt, damage) in enumerate((("jpeg", "half"), ("png", "half"), ("jpeg", "bad marker")), start=2):
            damaged = compressed_msg(kitti_frame, fmt)
            data = bytearray(damaged.data)
            if damage == "half":
                data = data[: len(data) // 2]
            else:
                data[data.index(b"\xff\x00", len(data) // 2) + 1] = 0x42
            damaged.data = array.array("B", bytes(data))
            damaged.header = probe.header()
            probe.compressed_pub.publish(damaged)
            wait_until(lambda n=n: node.stats()["bad_frames"] == n, what=f"the {damage} {fmt} to be counted")
            time.sleep(0.2)
            assert damaged.header.stamp.sec not in {k[0] for k in probe.images[topic]}  # nothing published
        (mask,) = roundtrip(harness, compressed_msg(kitti_frame, "png"), (topic,), probe.compressed_pub)
    finally:
        harness.remove(node)


def test_camera_faults_publish_nothing_and_set_diagnostics_to_error(harness, road, kitti_frame, camvid_frame):
    probe = harness.probe
    ERROR = DiagnosticStatus.ERROR

    def published(msg) -> bool:
        return (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) in probe.images[MASK]

    def send_faulty(frame, reason):
        before = road.stats()["camera_faults"]
        msg = image_msg(frame, "bgr8", probe.header())
        probe.raw_pub.publish(msg)
        wait_until(lambda: road.stats()["camera_faults"] == before + 1, what=f"the {reason} frame to be counted")
        assert road.stats()["camera_fault"].startswith(reason)
        status = probe.latest_status(NODE_NAME, lambda s: s.level == ERROR and reason in s.message)
        assert status_values(status)["camera_fault"].startswith(reason)
        time.sleep(0.2)
        assert not published(msg)  # no mask, overlay or probability for it
        return msg

    # a real frame at dusk (a quarter of the light) is still a frame to segment
    roundtrip(harness, image_msg((kitti_frame * 0.25).astype(np.uint8), "bgr8"))
    rng = np.random.default_rng(0)
    send_faulty(np.full_like(kitti_frame, 128), "blank")  # featureless grey
    noise = np.clip(rng.normal(60, 1.0, kitti_frame.shape), 0, 255).astype(np.uint8)  # capped lens: noise only
    send_faulty(noise, "blank")
    send_faulty(cv2.convertScaleAbs(kitti_frame, alpha=40), "saturated")  # over-exposed real frame: white
    send_faulty(np.where(kitti_frame > 245, kitti_frame, 0).astype(np.uint8), "saturated")  # night: black but glare
    # frozen: the same real frame byte for byte; the first frozen_frames repeats are still segmented
    frozen = image_msg(camvid_frame, "bgr8")
    for _ in range(DEFAULTS["frozen_frames"]):
        roundtrip(harness, frozen)
    for _ in range(2):
        before = road.stats()["camera_faults"]
        frozen.header = probe.header()
        probe.raw_pub.publish(frozen)
        wait_until(lambda: road.stats()["camera_faults"] == before + 1, what="the frozen frame to be counted")
        assert road.stats()["camera_fault"].startswith("frozen camera")
    probe.latest_status(NODE_NAME, lambda s: s.level == ERROR and "frozen camera" in s.message)
    time.sleep(0.2)
    assert not published(frozen)
    # the camera recovers: masks again, and the fault is cleared in diagnostics
    roundtrip(harness, image_msg(kitti_frame, "bgr8"))
    assert road.stats()["camera_fault"] == "none"
    status = probe.latest_status(NODE_NAME, lambda s: status_values(s)["camera_fault"] == "none"
                                 and int(status_values(s)["camera_faults"]) >= 6)
    assert status.level != ERROR
    # the limits are live parameters, checked like the others; frozen_frames 0 turns that check off
    (result,) = probe.set_parameters(NODE_NAME, saturated_fraction=0.2)
    assert not result.successful and "out of range" in result.reason
    assert probe.set_parameters(NODE_NAME, frozen_frames=0)[0].successful
    for _ in range(DEFAULTS["frozen_frames"] + 2):
        roundtrip(harness, frozen)
    assert probe.set_parameters(NODE_NAME, frozen_frames=DEFAULTS["frozen_frames"])[0].successful


def test_lazy_subscription_follows_the_listeners_and_shutdown_is_clean(harness, road, tiny_onnx, camvid_frame):
    probe = harness.probe
    lazy = harness.add(RoadSegmentationNode(context=harness.context, namespace="lazy", cli_args=remap_image(),
                                            parameter_overrides=[Parameter("model", value=str(tiny_onnx))]))
    eager = harness.add(RoadSegmentationNode(context=harness.context, namespace="eager", cli_args=remap_image(),
                                             parameter_overrides=[Parameter("model", value=str(tiny_onnx)),
                                                                  Parameter("lazy_subscription", value=False)]))
    try:
        # nobody listens to either: the lazy node does not subscribe to the camera, the eager one does and
        # counts its frames as idle, with no inference at all
        wait_until(lambda: eager.subscription is not None and probe.raw_pub.get_subscription_count() >= 2,
                   what="the eager node's subscription")
        assert lazy.subscription is None and lazy.input_topic == RAW_TOPIC
        probe.raw_pub.publish(image_msg(camvid_frame, "bgr8"))
        wait_until(lambda: eager.stats()["idle"] == 1, what="an idle frame")
        assert eager.stats()["processed"] == 0 and lazy.stats()["received"] == 0
        status = probe.latest_status("/lazy/" + NODE_NAME, lambda s: "idle" in s.message)
        assert status.level == DiagnosticStatus.OK and status_values(status)["subscribed"] == "False"
        # a listener on an output: the lazy node subscribes and segments; the last one leaving unsubscribes it
        probe.listen("/lazy" + MASK)
        wait_until(lambda: lazy.subscription is not None and lazy.mask_pub.get_subscription_count() >= 1,
                   what="the lazy node's subscription")
        wait_until(lambda: probe.raw_pub.get_subscription_count() >= 3, what="discovery")
        roundtrip(harness, image_msg(camvid_frame, "bgr8"), ("/lazy" + MASK,))
        assert lazy.stats()["processed"] == 1
        probe.unlisten("/lazy" + MASK)
        wait_until(lambda: lazy.subscription is None, what="the lazy node to unsubscribe")
    finally:
        workers = [t for t in threading.enumerate() if t.name == "road_segmentation_worker"]
        assert len(workers) == 3  # these two nodes' and the module's node
        harness.remove(lazy)
        harness.remove(eager)
    assert sum(t.is_alive() for t in workers) == 1  # joined in destroy_node


def test_folder_publisher_process_to_a_reliable_node_loses_no_frame(harness, tiny_onnx, tmp_path, shared_data):
    """What road.launch.py images:=DIR starts: image_folder_publisher (reliable) and the node with input_qos reliable.

    The publisher runs in its own process; every large raw frame arrives (best effort lost most of them).
    """
    frames = sorted((shared_data / "kitti_road_train" / "training" / "image_2").glob("*.jpg"))[:8]
    folder = tmp_path / "frames"
    folder.mkdir()
    for path in frames:
        shutil.copy(path, folder)
    topic = "/fcn_test/folder_qos"
    node = harness.add(RoadSegmentationNode(context=harness.context, namespace="qos", cli_args=remap_image(topic),
                                            parameter_overrides=[Parameter("model", value=str(tiny_onnx)),
                                                                 Parameter("input_qos", value="reliable"),
                                                                 Parameter("lazy_subscription", value=False)]))
    proc = subprocess.Popen([sys.executable, "-m", "fcn_road_seg.ros.image_folder_publisher", "--ros-args",
                             "-p", f"folder:={folder}", "-p", "rate_hz:=4.0", "-p", "loop:=false",
                             "-r", f"image:={topic}", "-p", "wait_for_subscribers:=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        wait_until(lambda: node.stats()["received"] >= len(frames), timeout=60, what="every frame at the node")
        time.sleep(0.5)
        assert node.stats()["received"] == len(frames)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        harness.remove(node)
    assert f"published all {len(frames)} images" in out, out


def test_parameters_are_declared_with_yaml_defaults(road):
    config = yaml.safe_load((ROOT / "config" / "road_seg.yaml").read_text())
    (params,) = [v["ros__parameters"] for k, v in config.items() if k.endswith(NODE_NAME)]
    assert {k: v for k, v in params.items() if k in DEFAULTS} == DEFAULTS  # BEV ones: test_node_bev.py
    for name in DEFAULTS:
        descriptor = road.describe_parameter(name)
        assert descriptor.description and descriptor.read_only == (name not in LIVE)
    assert road.describe_parameter("threshold").floating_point_range[0].to_value == 1.0


def test_rviz_config_shows_the_topics_the_node_uses(road):
    rviz = yaml.safe_load((ROOT / "config" / "road_seg.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    topics = {d["Name"]: d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Image"}
    assert topics == {"Input": "/camera/image_raw", "Overlay": road.overlay_pub.topic_name,
                      "Mask": road.mask_pub.topic_name}


def test_image_folder_publisher_plays_a_folder_once_or_looping(harness, tmp_path, kitti_images, camvid_images):
    from fcn_road_seg.errors import FcnRoadSegError, InputImageError
    from fcn_road_seg.ros.image_folder_publisher import ImageFolderPublisher

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, path in enumerate([kitti_images[0], camvid_images[0]]):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.imread(str(path)))
    (folder / "notes.txt").write_text("not an image")
    half = (ROOT / "samples" / "kitti_um_000000.jpg").read_bytes()
    (folder / "2_truncated.jpg").write_bytes(half[: len(half) // 2])  # skipped: OpenCV would fill it grey
    topic = "/fcn_test/folder"
    probe = harness.probe
    probe.listen(topic)
    publisher = ImageFolderPublisher(context=harness.context, cli_args=remap_image(topic), parameter_overrides=[
        Parameter("folder", value=str(folder)), Parameter("rate_hz", value=20.0), Parameter("loop", value=False),
        Parameter("frame_id", value="cam_front")])
    wait_until(lambda: publisher.publisher.get_subscription_count() >= 1, what="discovery")
    harness.add(publisher)
    try:
        wait_until(lambda: len(probe.images[topic]) == 2, what="both frames")
        time.sleep(0.3)  # not looping: nothing more comes
        assert publisher.published == 2 and len(probe.images[topic]) == 2
        frames = sorted(probe.images[topic].values(), key=lambda m: (m.header.stamp.sec, m.header.stamp.nanosec))
        assert [(m.width, m.height, m.encoding, m.header.frame_id) for m in frames] == [
            (1242, 375, "bgr8", "cam_front"), (480, 360, "bgr8", "cam_front")]
        np.testing.assert_array_equal(message_to_bgr(frames[1]), cv2.imread(str(folder / "1.png")))
        assert publisher.source_of(frames[0].header) == folder / "0.png"
    finally:
        harness.remove(publisher)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputImageError, match="no images"):
        ImageFolderPublisher(context=harness.context, parameter_overrides=[Parameter("folder", value=str(empty))])
    with pytest.raises(FcnRoadSegError, match="'folder' is empty.*--ros-args -p folder:=DIR"):
        ImageFolderPublisher(context=harness.context)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_the_backend_gets_the_message_s_frame_in_the_model_s_channel_order(harness, road, kitti_frame, monkeypatch,
                                                                           encoding):
    """Through the node's message conversion, the backend's batch is the frame resized, in the model's (RGB) order.

    This holds whichever of rgb8/bgr8 the camera sends (a recording backend in place of the node's).
    """
    contract = road.segmenter.contract
    recorder = RecordingBackend(contract)
    monkeypatch.setattr(road.segmenter, "backend", recorder)
    roundtrip(harness, image_msg(kitti_frame, encoding))
    assert contract.channel_order == "RGB" and recorder.batches
    np.testing.assert_array_equal(recorder.batches[-1], expected_batch(kitti_frame, contract))


def test_tta_parameter_is_validated_and_applied_live(harness, road, offline, kitti_frame):
    probe = harness.probe
    (rejected,) = probe.set_parameters(NODE_NAME, tta="mirror")
    assert not rejected.successful and "tta must be one of none, flip" in rejected.reason
    assert road.get_parameter("tta").value == "none"
    assert probe.set_parameters(NODE_NAME, tta="flip")[0].successful
    try:
        (mask,) = roundtrip(harness, image_msg(kitti_frame, "bgr8"))
        offline.tta = "flip"
        flipped = offline.segment(kitti_frame).mask
    finally:
        offline.tta = "none"
        assert probe.set_parameters(NODE_NAME, tta="none")[0].successful
    assert (flipped != offline.segment(kitti_frame).mask).any()  # flip changes this model's mask
    assert_same_mask(pixels(mask), flipped, "tta flip")
