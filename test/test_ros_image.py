"""sensor_msgs <-> numpy on real KITTI frames, every supported encoding, the way the node meets them.

A message serialized by rclpy (what a camera driver publishes), taken as CDR bytes and decoded with rosbags.
"""
import array

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages (ros extra) are not installed")

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from fcn_road_seg.errors import InputImageError  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402

from fcn_road_seg.image_messages import (  # noqa: E402
    SUPPORTED_ENCODINGS,
    decode,
    encode,
    header,
    image_message,
    message_to_bgr,
)

from ros_frames import ENCODINGS, compressed_msg, image_msg  # noqa: E402


def received(msg: Image | CompressedImage):
    """``msg`` as the node's raw subscription gets it: rclpy's CDR bytes, decoded by rosbags."""
    kind = "sensor_msgs/msg/CompressedImage" if isinstance(msg, CompressedImage) else "sensor_msgs/msg/Image"
    return decode(serialize_message(msg), kind)


def node_bgr(msg: Image | CompressedImage):
    """Return the BGR frame the node makes of ``msg``."""
    return message_to_bgr(received(msg))


@pytest.fixture(scope="module")
def frame(kitti_images):
    return cv2.imread(str(kitti_images[0]))  # 1242x375: even width, as YUV 4:2:2 needs


def test_every_listed_encoding_is_supported():
    assert set(ENCODINGS) <= set(SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8"])
def test_lossless_encodings_give_back_the_frame(frame, encoding):
    np.testing.assert_array_equal(node_bgr(image_msg(frame, encoding)), frame)


def test_mono8_is_replicated_grey(frame):
    out = node_bgr(image_msg(frame, "mono8"))
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert out.shape == frame.shape
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8",
                                      "bayer_grbg8"])
def test_subsampled_encodings_reconstruct_the_frame(frame, encoding):
    out = node_bgr(image_msg(frame, encoding))
    assert out.shape == frame.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - frame.astype(int))
    # chroma subsampling / demosaicking blur edges but keep colours: a wrong pattern or channel order
    # (e.g. reading RGGB as BGGR) gives a mean error of 10.5 levels on this frame, the right one < 4.
    assert err.mean() < 8, f"{encoding}: mean abs error {err.mean():.1f}"
    assert np.abs(out.mean(axis=(0, 1)) - frame.mean(axis=(0, 1))).max() < 4


def test_wrong_bayer_pattern_would_be_caught(frame):
    msg = image_msg(frame, "bayer_rggb8")
    msg.encoding = "bayer_bggr8"  # lie about the pattern: red and blue swap
    err = np.abs(node_bgr(msg).astype(int) - frame.astype(int))
    assert err.mean() >= 8


def test_row_padding_is_honoured(frame):
    for encoding in ("rgb8", "mono8", "yuv422"):
        padded = node_bgr(image_msg(frame, encoding, padding=6))
        np.testing.assert_array_equal(padded, node_bgr(image_msg(frame, encoding)))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed(frame, fmt):
    msg = compressed_msg(frame, fmt)
    out = node_bgr(msg)
    assert out.shape == frame.shape
    np.testing.assert_array_equal(out, cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR))
    if fmt == "png":
        np.testing.assert_array_equal(out, frame)
    else:  # JPEG quality 95 on a detailed road scene
        assert np.abs(out.astype(int) - frame.astype(int)).mean() < 8
    np.testing.assert_array_equal(message_to_bgr(msg), out)


def test_grey_png_becomes_three_channels(frame):
    ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    msg = CompressedImage(format="png")
    msg.data = array.array("B", buf.tobytes())
    assert node_bgr(msg).shape == frame.shape


@pytest.mark.parametrize("encoding", ["mono16", "32FC1", "rgb16", "nv12"])
def test_unsupported_encodings_are_named(frame, encoding):
    msg = image_msg(frame, "rgb8")
    msg.encoding = encoding
    with pytest.raises(InputImageError, match=f"'{encoding}' 1242x375: unsupported encoding; supported: bgr8"):
        node_bgr(msg)


def test_size_and_step_mismatches_are_named(frame):
    msg = image_msg(frame, "rgb8")
    msg.height = 400  # more rows than data
    with pytest.raises(InputImageError, match=r"'rgb8' 1242x400: step 3726 and 1397250 data bytes"):
        node_bgr(msg)
    msg = image_msg(frame, "rgb8")
    msg.step = 1242  # shorter than a row of rgb8
    with pytest.raises(InputImageError, match="need step >= 3726"):
        node_bgr(msg)
    empty = Image(encoding="bgr8")
    with pytest.raises(InputImageError, match="'bgr8' 0x0"):
        node_bgr(empty)


def test_odd_width_yuv_is_refused_not_crashed():
    msg = image_msg(np.zeros((40, 64, 3), np.uint8), "yuv422")
    msg.width, msg.step = 63, 126
    msg.data = array.array("B", bytes(126 * 40))
    with pytest.raises(InputImageError, match="'yuv422' 63x40"):
        node_bgr(msg)


def test_corrupt_compressed_is_named(frame):
    msg = compressed_msg(frame, "jpeg")
    msg.data = msg.data[:100]  # truncated JPEG header: nothing decodes
    with pytest.raises(InputImageError, match=r"CompressedImage 'jpeg' \(100 bytes\): corrupt"):
        node_bgr(msg)
    msg.data = array.array("B", b"not an image at all")
    with pytest.raises(InputImageError, match="corrupt"):
        node_bgr(msg)
    depth = CompressedImage(format="16UC1; compressedDepth png")
    with pytest.raises(InputImageError, match="depth"):
        node_bgr(depth)


def test_rclpy_messages_convert_directly(frame):
    """Tools that subscribe with rclpy (the demo, tests) convert its messages with the same function."""
    np.testing.assert_array_equal(message_to_bgr(image_msg(frame, "rgb8")), frame)
    np.testing.assert_array_equal(message_to_bgr(compressed_msg(frame, "png")), frame)


def test_bytes_that_are_not_the_message_are_refused():
    with pytest.raises(InputImageError, match="sensor_msgs/msg/Image: 19 bytes do not decode as that message"):
        decode(b"not an image at all", "sensor_msgs/msg/Image")
    wire = serialize_message(CompressedImage(format="jpeg"))
    with pytest.raises(InputImageError, match="do not decode"):
        decode(wire[:-6], "sensor_msgs/msg/CompressedImage")


def test_image_message_bytes_are_what_rclpy_reads(frame):
    stamped = header(12 * 10**9 + 345, "cam")
    bgr = deserialize_message(encode(image_message(frame, "bgr8", stamped)), Image)
    assert (bgr.encoding, bgr.width, bgr.height, bgr.step) == ("bgr8", 1242, 375, 3726)
    assert bgr.header.frame_id == "cam" and (bgr.header.stamp.sec, bgr.header.stamp.nanosec) == (12, 345)
    np.testing.assert_array_equal(node_bgr(bgr), frame)
    mask = np.where(frame[..., 1] > 100, 255, 0).astype(np.uint8)
    mono = deserialize_message(encode(image_message(mask[:, ::2], "mono8", stamped)), Image)  # packed
    assert (mono.width, mono.step) == (621, 621)
    np.testing.assert_array_equal(np.frombuffer(mono.data, np.uint8).reshape(375, 621), mask[:, ::2])
    with pytest.raises(ValueError, match="uint8 array of 2 dims"):
        image_message(frame, "mono8", stamped)
    with pytest.raises(ValueError, match="output encoding"):
        image_message(frame, "yuv422", stamped)
