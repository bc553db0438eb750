"""sensor_msgs Image/CompressedImage <-> numpy.

Incoming raw frames are converted to HxWx3 BGR uint8 with cv_bridge where it is installed (system ROS 2),
else with ``rosbags-image``, which reads rclpy messages directly (same field names). Only the 8-bit
colour/grey/Bayer/YUV 4:2:2 encodings the model can use are accepted; anything else, corrupt data or a
size/step mismatch raises InputImageError naming the encoding and the size. Compressed frames are
verified (truncated or corrupt JPEG/PNG is refused) and decoded by ``images.decode_bgr``, as files are.

Outgoing mono8/bgr8 messages are filled from a contiguous numpy buffer with one copy into the
message's ``array('B')`` (assigning bytes would make rclpy check every element in Python).
"""
from __future__ import annotations

import array
from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ..errors import FrameSizeError, InputImageError, UnsupportedEncodingError
from ..images import decode_bgr

try:  # a system ROS 2 install ships cv_bridge; the PyPI wheels do not
    from cv_bridge import CvBridge, CvBridgeError
except ImportError:  # pragma: no cover - depends on the machine
    CvBridge = CvBridgeError = None

__all__ = [
    "SUPPORTED_ENCODINGS",
    "CONVERTER",
    "describe",
    "image_to_bgr",
    "compressed_to_bgr",
    "message_to_bgr",
    "array_to_image",
]

# encoding -> bytes per pixel; yuv422 is UYVY and yuv422_yuy2 is YUYV (ROS image_encodings names).
_BYTES_PER_PIXEL = {
    "bgr8": 3, "rgb8": 3, "bgra8": 4, "rgba8": 4, "mono8": 1,
    "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1, "bayer_grbg8": 1,
    "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2,
}
SUPPORTED_ENCODINGS = tuple(_BYTES_PER_PIXEL)
_OUTPUT_CHANNELS = {"mono8": 1, "bgr8": 3}
_BRIDGE = CvBridge() if CvBridge is not None else None
CONVERTER = "cv_bridge" if _BRIDGE is not None else "rosbags-image"
_CONVERSION_ERRORS = (cv2.error, ValueError, TypeError, AssertionError) + (
    (CvBridgeError,) if CvBridgeError is not None else ()
)


@dataclass(frozen=True)
class _PackedImage:
    """An Image with its row padding removed, for converters that assume step == width * bpp."""

    encoding: str
    height: int
    width: int
    is_bigendian: int
    step: int
    data: np.ndarray


def describe(msg: Image | CompressedImage) -> str:
    """Encoding and size of a message, as used in error messages and logs."""
    if isinstance(msg, CompressedImage):
        return f"CompressedImage '{msg.format}' ({len(msg.data)} bytes)"
    return f"Image '{msg.encoding}' {msg.width}x{msg.height}"


def _checked_raw(msg: Image) -> Image | _PackedImage:
    """Validate encoding, size and step; drop row padding if there is any."""
    bpp = _BYTES_PER_PIXEL.get(msg.encoding)
    if bpp is None:
        raise UnsupportedEncodingError(
            f"{describe(msg)}: unsupported encoding; supported: {', '.join(SUPPORTED_ENCODINGS)} "
            "(convert 16-bit/depth/other formats to an 8-bit colour encoding before this node)"
        )
    row = msg.width * bpp
    if msg.width == 0 or msg.height == 0 or msg.step < row or len(msg.data) != msg.step * msg.height:
        raise FrameSizeError(
            f"{describe(msg)}: step {msg.step} and {len(msg.data)} data bytes do not match the size "
            f"(need step >= {row} and step x height bytes); fix the publisher's width/height/step"
        )
    if msg.step == row:
        return msg
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :row]
    return _PackedImage(msg.encoding, msg.height, msg.width, msg.is_bigendian, row, np.ascontiguousarray(rows))


def image_to_bgr(msg: Image) -> np.ndarray:
    """sensor_msgs/Image in a supported encoding -> HxWx3 BGR uint8 (may share the message's buffer)."""
    checked = _checked_raw(msg)
    try:
        if _BRIDGE is not None:
            frame = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="bgr8")
        else:
            from rosbags.image import image_to_cvimage

            frame = image_to_cvimage(checked, "bgr8")
    except _CONVERSION_ERRORS as err:
        raise InputImageError(f"{describe(msg)}: cannot convert to bgr8 ({err})") from err
    return frame


def compressed_to_bgr(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG) -> HxWx3 BGR uint8.

    The bytes are verified first (``images.verify_encoded``): a truncated or corrupt frame raises
    InputImageError instead of decoding with its missing part filled in.
    """
    if "compresseddepth" in msg.format.lower():
        raise UnsupportedEncodingError(f"{describe(msg)}: depth images cannot be segmented; subscribe to a colour "
                                       "topic")
    return decode_bgr(bytes(msg.data), describe(msg), warn=False)


def message_to_bgr(msg: Image | CompressedImage) -> np.ndarray:
    """Either message type -> HxWx3 BGR uint8."""
    if isinstance(msg, CompressedImage):
        return compressed_to_bgr(msg)
    return image_to_bgr(msg)


def array_to_image(pixels: np.ndarray, encoding: str, header: Header) -> Image:
    """HxW (mono8) or HxWx3 (bgr8) uint8 array -> Image with ``header``; one copy into the message."""
    channels = _OUTPUT_CHANNELS.get(encoding)
    if channels is None:
        raise ValueError(f"output encoding must be one of {', '.join(_OUTPUT_CHANNELS)}, got {encoding!r}")
    expected_ndim = 2 if channels == 1 else 3
    if pixels.dtype != np.uint8 or pixels.ndim != expected_ndim or (channels > 1 and pixels.shape[2] != channels):
        raise ValueError(f"{encoding} needs a uint8 array of {expected_ndim} dims, got {pixels.dtype} {pixels.shape}")
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    data = array.array("B")
    data.frombytes(pixels.reshape(-1).data)
    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                step=width * channels)
    msg.data = data
    return msg
