"""sensor_msgs <-> numpy conversions on real KITTI/CamVid frames, every supported encoding."""
import array

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages (ros extra) are not installed")

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fcn_road_seg.errors import InputImageError  # noqa: E402
from fcn_road_seg.ros.image_msgs import (  # noqa: E402
    SUPPORTED_ENCODINGS,
    array_to_image,
    compressed_to_bgr,
    image_to_bgr,
    message_to_bgr,
)

from ros_frames import ENCODINGS, compressed_msg, image_msg  # noqa: E402


@pytest.fixture(scope="module")
def frame(kitti_images):
    return cv2.imread(str(kitti_images[0]))  # 1242x375: even width, as YUV 4:2:2 needs


def test_every_listed_encoding_is_supported():
    assert set(ENCODINGS) <= set(SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8"])
def test_lossless_encodings_give_back_the_frame(frame, encoding):
    np.testing.assert_array_equal(image_to_bgr(image_msg(frame, encoding)), frame)


def test_mono8_is_replicated_grey(frame):
    out = image_to_bgr(image_msg(frame, "mono8"))
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert out.shape == frame.shape
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8",
                                      "bayer_grbg8"])
def test_subsampled_encodings_reconstruct_the_frame(frame, encoding):
    out = image_to_bgr(image_msg(frame, encoding))
    assert out.shape == frame.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - frame.astype(int))
    # chroma subsampling / demosaicking blur edges but keep colours: a wrong pattern or channel order
    # (e.g. reading RGGB as BGGR) gives a mean error of 10.5 levels on this frame, the right one < 4.
    assert err.mean() < 8, f"{encoding}: mean abs error {err.mean():.1f}"
    assert np.abs(out.mean(axis=(0, 1)) - frame.mean(axis=(0, 1))).max() < 4


def test_wrong_bayer_pattern_would_be_caught(frame):
    msg = image_msg(frame, "bayer_rggb8")
    msg.encoding = "bayer_bggr8"  # lie about the pattern: red and blue swap
    err = np.abs(image_to_bgr(msg).astype(int) - frame.astype(int))
    assert err.mean() >= 8


def test_row_padding_is_honoured(frame):
    for encoding in ("rgb8", "mono8", "yuv422"):
        padded = image_to_bgr(image_msg(frame, encoding, padding=6))
        np.testing.assert_array_equal(padded, image_to_bgr(image_msg(frame, encoding)))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed(frame, fmt):
    msg = compressed_msg(frame, fmt)
    out = compressed_to_bgr(msg)
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
    assert compressed_to_bgr(msg).shape == frame.shape


@pytest.mark.parametrize("encoding", ["mono16", "32FC1", "rgb16", "nv12"])
def test_unsupported_encodings_are_named(frame, encoding):
    msg = image_msg(frame, "rgb8")
    msg.encoding = encoding
    with pytest.raises(InputImageError, match=f"'{encoding}' 1242x375: unsupported encoding; supported: bgr8"):
        image_to_bgr(msg)


def test_size_and_step_mismatches_are_named(frame):
    msg = image_msg(frame, "rgb8")
    msg.height = 400  # more rows than data
    with pytest.raises(InputImageError, match=r"'rgb8' 1242x400: step 3726 and 1397250 data bytes"):
        image_to_bgr(msg)
    msg = image_msg(frame, "rgb8")
    msg.step = 1242  # shorter than a row of rgb8
    with pytest.raises(InputImageError, match="need step >= 3726"):
        image_to_bgr(msg)
    empty = Image(encoding="bgr8")
    with pytest.raises(InputImageError, match="'bgr8' 0x0"):
        image_to_bgr(empty)


def test_odd_width_yuv_is_refused_not_crashed():
    msg = image_msg(np.zeros((40, 64, 3), np.uint8), "yuv422")
    msg.width, msg.step = 63, 126
    msg.data = array.array("B", bytes(126 * 40))
    with pytest.raises(InputImageError, match="'yuv422' 63x40"):
        image_to_bgr(msg)


def test_corrupt_compressed_is_named(frame):
    msg = compressed_msg(frame, "jpeg")
    msg.data = msg.data[:100]  # truncated JPEG header: nothing decodes
    with pytest.raises(InputImageError, match=r"CompressedImage 'jpeg' \(100 bytes\): corrupt"):
        compressed_to_bgr(msg)
    msg.data = array.array("B", b"not an image at all")
    with pytest.raises(InputImageError, match="corrupt"):
        compressed_to_bgr(msg)
    depth = CompressedImage(format="16UC1; compressedDepth png")
    with pytest.raises(InputImageError, match="depth"):
        compressed_to_bgr(depth)


def test_array_to_image_round_trip(frame):
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    bgr = array_to_image(frame, "bgr8", header)
    assert (bgr.encoding, bgr.width, bgr.height, bgr.step) == ("bgr8", 1242, 375, 3726)
    assert bgr.header.frame_id == "cam" and bgr.header.stamp.nanosec == 345
    np.testing.assert_array_equal(image_to_bgr(bgr), frame)
    mask = np.where(frame[..., 1] > 100, 255, 0).astype(np.uint8)
    mono = array_to_image(mask[:, ::2], "mono8", header)  # non-contiguous input is packed
    assert (mono.width, mono.step) == (621, 621)
    np.testing.assert_array_equal(np.frombuffer(mono.data, np.uint8).reshape(375, 621), mask[:, ::2])
    with pytest.raises(ValueError, match="uint8 array of 2 dims"):
        array_to_image(frame, "mono8", header)
    with pytest.raises(ValueError, match="output encoding"):
        array_to_image(frame, "rgb8", header)
