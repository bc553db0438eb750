"""Build real sensor_msgs messages in every input encoding from a BGR frame (test data only)."""
from __future__ import annotations

import array

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

# OpenCV colour codes producing each packed encoding from BGR; Bayer mosaics are sampled below.
_FROM_BGR = {
    "bgr8": None,
    "rgb8": cv2.COLOR_BGR2RGB,
    "bgra8": cv2.COLOR_BGR2BGRA,
    "rgba8": cv2.COLOR_BGR2RGBA,
    "mono8": cv2.COLOR_BGR2GRAY,
    "yuv422": cv2.COLOR_BGR2YUV_UYVY,
    "yuv422_yuy2": cv2.COLOR_BGR2YUV_YUY2,
}
# Bayer pattern -> channel (B=0, G=1, R=2) at (row%2, col%2).
_BAYER = {
    "bayer_rggb8": ((2, 1), (1, 0)),
    "bayer_bggr8": ((0, 1), (1, 2)),
    "bayer_gbrg8": ((1, 0), (2, 1)),
    "bayer_grbg8": ((1, 2), (0, 1)),
}
ENCODINGS = tuple(_FROM_BGR) + tuple(_BAYER)


def encode(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """BGR frame -> pixel array in ``encoding`` (what a camera driver would send)."""
    if encoding in _BAYER:
        mosaic = np.empty(bgr.shape[:2], np.uint8)
        for dy in (0, 1):
            for dx in (0, 1):
                mosaic[dy::2, dx::2] = bgr[dy::2, dx::2, _BAYER[encoding][dy][dx]]
        return mosaic
    code = _FROM_BGR[encoding]
    return bgr.copy() if code is None else cv2.cvtColor(bgr, code)


def image_msg(bgr: np.ndarray, encoding: str, header: Header | None = None, padding: int = 0) -> Image:
    """Build a sensor_msgs/Image in ``encoding``; ``padding`` extra bytes at the end of each row."""
    pixels = encode(bgr, encoding)
    h, w = bgr.shape[:2]
    rows = pixels.reshape(h, -1)
    if padding:
        rows = np.concatenate([rows, np.full((h, padding), 7, np.uint8)], axis=1)
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(rows).tobytes())
    msg = Image(header=header or Header(), height=h, width=w, encoding=encoding, is_bigendian=0,
                step=rows.shape[1])
    msg.data = data
    return msg


def compressed_msg(bgr: np.ndarray, fmt: str, header: Header | None = None) -> CompressedImage:
    """Build a sensor_msgs/CompressedImage, ``fmt`` 'jpeg' or 'png'."""
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr)
    assert ok
    msg = CompressedImage(header=header or Header(), format=fmt)
    msg.data = array.array("B", buf.tobytes())
    return msg
