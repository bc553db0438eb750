"""Reading image files and compressed frames the same way everywhere.

The same code serves the CLI, datasets, evaluator, folder publisher and the node's CompressedImage input.

Compressed bytes are checked before they are decoded, because OpenCV's decoders repair what they can:
a truncated JPEG decodes with its missing part filled grey (libjpeg only prints "Premature end of JPEG
file"), and the network would mark that grey as road. ``verify_encoded`` walks the file's structure:
JPEG markers and segment lengths up to the end-of-image marker (with the byte stuffing of the
entropy-coded data checked), PNG chunks with their CRCs up to IEND, BMP's declared size. A file that
fails is refused with InputImageError, like any other unreadable frame.
"""
from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from .errors import InputImageError, UnsupportedEncodingError

__all__ = ["IMAGE_SUFFIXES", "verify_encoded", "decode_bgr", "read_bgr", "read_labels", "list_images"]

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG markers without a length field: TEM, RST0-7 (SOI/EOI are handled on their own).
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (DHT, JPG and DAC are not)


def _verify_jpeg(data: bytes) -> None:
    """Check a JPEG's structure; raise ValueError with the defect.

    It must be SOI, then marker segments with lengths that fit, a frame header before the first scan, entropy-coded
    data with valid stuffing (0xFF followed by 0x00 or RSTn), and EOI.
    """
    buf = np.frombuffer(data, np.uint8)
    pos, size, seen_frame = 2, len(data), False
    while True:
        if pos >= size:
            raise ValueError("truncated: no end-of-image marker")
        if data[pos] != 0xFF:
            raise ValueError(f"byte {pos} should start a marker")
        while pos < size and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= size:
            raise ValueError("truncated: no end-of-image marker")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI; bytes after it (padding) are ignored
            return
        if marker in _STANDALONE:
            continue
        if marker < 0xC0 or marker == 0xD8:
            raise ValueError(f"invalid marker 0xFF{marker:02X} at byte {pos - 2}")
        if pos + 2 > size:
            raise ValueError("truncated inside a marker segment")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > size:
            raise ValueError(f"truncated: segment 0xFF{marker:02X} at byte {pos - 2} runs past the end")
        pos += length
        seen_frame |= marker in _SOF
        if marker != 0xDA:  # not SOS: the next marker follows the segment
            continue
        if not seen_frame:
            raise ValueError("scan before the frame header")
        # Entropy-coded data up to the next marker: every 0xFF must be stuffed (0x00) or a restart marker.
        ff = np.flatnonzero(buf[pos:size - 1] == 0xFF) + pos
        after = buf[ff + 1]
        ends = ff[(after != 0x00) & ((after < 0xD0) | (after > 0xD7))]
        if ends.size == 0:
            raise ValueError("truncated: no end-of-image marker")
        pos = int(ends[0])


def _verify_png(data: bytes) -> None:
    """IHDR first, every chunk complete with a matching CRC, IEND last. Raises ValueError with the defect."""
    pos, size, first = 8, len(data), True
    while True:
        if pos + 8 > size:
            raise ValueError("truncated: no IEND chunk")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length + 4
        if end > size:
            raise ValueError(f"truncated inside the {kind.decode('latin-1')!r} chunk")
        if first and kind != b"IHDR":
            raise ValueError("the first chunk is not IHDR")
        first = False
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(data[pos + 4:end - 4]) != crc:
            raise ValueError(f"CRC mismatch in the {kind.decode('latin-1')!r} chunk at byte {pos}")
        if kind == b"IEND":
            return
        pos = end


def _verify_bmp(data: bytes) -> None:
    if len(data) < 26:
        raise ValueError("truncated header")
    declared, _, offset = struct.unpack("<I4sI", data[2:14])
    if declared > len(data) or offset >= len(data):
        raise ValueError(f"truncated: {len(data)} of {declared} bytes")


def verify_encoded(data: bytes, name: str) -> str:
    """Check that ``data`` is a complete, uncorrupted JPEG, PNG or BMP; returns 'jpeg', 'png' or 'bmp'.

    Raises InputImageError naming ``name`` and the defect (truncated, CRC mismatch, bad marker, not an image).
    """
    if data[:3] == b"\xff\xd8\xff":
        kind, check = "jpeg", _verify_jpeg
    elif data[:8] == _PNG_SIGNATURE:
        kind, check = "png", _verify_png
    elif data[:2] == b"BM":
        kind, check = "bmp", _verify_bmp
    else:
        raise InputImageError(f"{name}: corrupt or not a PNG, JPEG or BMP image (no such signature in its "
                              f"{len(data)} bytes); convert it to PNG/JPEG")
    try:
        check(data)
    except (ValueError, struct.error) as err:
        raise InputImageError(f"{name}: corrupt {kind.upper()} data ({err}); refused, not segmented (a damaged "
                              "file or a partial transfer: copy or record it again)") from err
    return kind


def _decode(data: bytes, name: str) -> np.ndarray:
    verify_encoded(data, name)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputImageError(f"cannot decode {name}: corrupt or not an image (PNG/JPEG/BMP expected)")
    return image


def decode_bgr(data: bytes, name: str, *, warn: bool = True) -> np.ndarray:
    """Decode verified JPEG/PNG/BMP bytes -> HxWx3 BGR uint8.

    Grey images are replicated to three channels and 4-channel images lose their alpha (each with a
    warning when ``warn``: the model was trained on colour); 16-bit, truncated or corrupt data raise
    InputImageError.
    """
    image = _decode(data, name)
    if image.dtype != np.uint8:
        raise UnsupportedEncodingError(f"{name} is {image.dtype}, not 8-bit; convert it to 8-bit PNG/JPEG first")
    if image.ndim == 2 or image.shape[2] == 1:
        if warn:
            log.warning("%s is grey: replicated to 3 channels (the model expects colour; masks may be worse)", name)
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        if warn:
            log.warning("%s has an alpha channel: dropped", name)
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise InputImageError(f"cannot read {what} {path}: {err.strerror or err}") from err


def read_bgr(path: str | Path) -> np.ndarray:
    """Read an 8-bit image file as HxWx3 BGR (verified first; see ``decode_bgr``)."""
    path = Path(path)
    return decode_bgr(_read_bytes(path, "image"), str(path))


def read_labels(path: str | Path) -> np.ndarray:
    """Read a ground-truth/label image exactly as stored (class indices or colour codes, no conversion)."""
    path = Path(path)
    return _decode(_read_bytes(path, "label image"), f"label image {path}")


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (non-recursive, sorted) into image paths; missing paths raise."""
    inputs = [Path(i) for i in inputs]
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif item.is_file():
            found.append(item)
        else:
            raise InputImageError(f"input not found: {item}")
    if not found:
        raise InputImageError(f"no images ({'/'.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return found
