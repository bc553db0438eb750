"""sensor_msgs Image/CompressedImage <-> numpy, and to/from their CDR bytes, for the node, the bags and tools.

One conversion for every path: the node takes its camera frames as the serialized bytes rclpy hands a raw
subscription and decodes them here with ``rosbags`` (the pixels stay a view of those bytes: no copy, and none
of rclpy's C -> Python conversion), the evaluator decodes the same CDR from bags. ``message_to_bgr`` reads any
object with the message's fields (rosbags or rclpy messages): only the 8-bit colour/grey/Bayer/YUV 4:2:2
encodings the model can use are accepted, converted with ``rosbags-image``; anything else, corrupt data or a
size/step mismatch raises InputImageError naming the encoding and the size. Compressed frames are verified
(truncated or corrupt JPEG/PNG is refused) and decoded by ``images.decode_bgr``, as files are. Outgoing
images are built as rosbags messages and serialized once (``encode``); rclpy publishes such bytes as they are.
No rclpy import: bag tools and the evaluator use this without ROS 2 installed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import FrameSizeError, InputImageError, MissingDependencyError, UnsupportedEncodingError
from .images import decode_bgr

__all__ = [
    "SUPPORTED_ENCODINGS",
    "IMAGE",
    "COMPRESSED_IMAGE",
    "typestore",
    "header",
    "image_message",
    "describe",
    "message_to_bgr",
    "decode",
    "encode",
    "require_converter",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
# encoding -> bytes per pixel; yuv422 is UYVY and yuv422_yuy2 is YUYV (ROS image_encodings names).
_BYTES_PER_PIXEL = {
    "bgr8": 3, "rgb8": 3, "bgra8": 4, "rgba8": 4, "mono8": 1,
    "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1, "bayer_grbg8": 1,
    "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2,
}
SUPPORTED_ENCODINGS = tuple(_BYTES_PER_PIXEL)
_OUTPUT_CHANNELS = {"mono8": 1, "bgr8": 3, "rgb8": 3}
_TYPESTORE = None


def typestore():
    """Return the ROS 2 Jazzy message type store (created once)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
    return _TYPESTORE


def header(stamp_ns: int, frame_id: str):
    """Build a rosbags std_msgs/msg/Header."""
    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image_message(pixels: np.ndarray, encoding: str, msg_header):
    """HxW (mono8) or HxWx3 (bgr8/rgb8) uint8 array -> rosbags sensor_msgs/msg/Image with ``msg_header``."""
    channels = _OUTPUT_CHANNELS.get(encoding)
    if channels is None:
        raise ValueError(f"output encoding must be one of {', '.join(_OUTPUT_CHANNELS)}, got {encoding!r}")
    expected_ndim = 2 if channels == 1 else 3
    if pixels.dtype != np.uint8 or pixels.ndim != expected_ndim or (channels > 1 and pixels.shape[2] != channels):
        raise ValueError(f"{encoding} needs a uint8 array of {expected_ndim} dims, got {pixels.dtype} {pixels.shape}")
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    return typestore().types[IMAGE](header=msg_header, height=height, width=width, encoding=encoding,
                                    is_bigendian=0, step=width * channels, data=pixels.reshape(-1))


def decode(raw, msgtype: str):
    """CDR bytes (a raw subscription's message, a bag record) -> rosbags message; InputImageError if malformed."""
    try:
        return typestore().deserialize_cdr(raw, msgtype)
    except Exception as err:  # rosbags raises plain Exceptions of several kinds for truncated/garbled CDR
        raise InputImageError(f"{msgtype}: {len(raw)} bytes do not decode as that message ({err}); a corrupt "
                              "payload, or a raw publisher sending other bytes?") from err


def encode(msg) -> bytes:
    """rosbags message -> the CDR bytes rclpy publishes as they are (``Publisher.publish(bytes)``)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def _is_compressed(msg) -> bool:
    return hasattr(msg, "format")  # CompressedImage has ``format``; Image has ``encoding``


def describe(msg) -> str:
    """Describe a message's encoding and size, as used in error messages and logs."""
    if _is_compressed(msg):
        return f"CompressedImage '{msg.format}' ({len(msg.data)} bytes)"
    return f"Image '{msg.encoding}' {msg.width}x{msg.height}"


@dataclass(frozen=True)
class _PackedImage:
    """An Image with its row padding removed, for converters that assume step == width * bpp."""

    encoding: str
    height: int
    width: int
    is_bigendian: int
    step: int
    data: np.ndarray


def _checked_raw(msg):
    """Validate encoding, size and step; drop row padding if there is any."""
    bpp = _BYTES_PER_PIXEL.get(msg.encoding)
    if bpp is None:
        raise UnsupportedEncodingError(
            f"{describe(msg)}: unsupported encoding; supported: {', '.join(SUPPORTED_ENCODINGS)} "
            "(convert 16-bit/depth/other formats to an 8-bit colour encoding first)"
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


def require_converter() -> None:
    """Raise MissingDependencyError naming the install when rosbags-image (raw frame conversion) is missing."""
    try:
        import rosbags.image  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(
            f"raw camera frames are converted with rosbags-image, which is not installed ({err}): "
            "pip install rosbags-image (rosdep has no key for it; see README, Install)") from err


def _raw_to_bgr(msg) -> np.ndarray:
    from rosbags.image import ImageError, image_to_cvimage

    checked = _checked_raw(msg)
    try:
        return image_to_cvimage(checked, "bgr8")
    except (ImageError, cv2.error, ValueError, TypeError, AssertionError) as err:
        raise InputImageError(f"{describe(msg)}: cannot convert to bgr8 ({err})") from err


def _compressed_to_bgr(msg) -> np.ndarray:
    if "compresseddepth" in msg.format.lower():
        raise UnsupportedEncodingError(f"{describe(msg)}: depth images cannot be segmented; subscribe to a colour "
                                       "topic")
    return decode_bgr(bytes(msg.data), describe(msg), warn=False)


def message_to_bgr(msg) -> np.ndarray:
    """Image or CompressedImage (rosbags or rclpy) -> HxWx3 BGR uint8 (a raw frame's may share its buffer)."""
    return _compressed_to_bgr(msg) if _is_compressed(msg) else _raw_to_bgr(msg)
