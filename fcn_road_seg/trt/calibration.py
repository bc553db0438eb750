"""INT8 entropy calibration for TensorRT 8.6 / 10.x: the frames, the calibrator TensorRT drives, and its cache.

TensorRT calls the calibrator from C++ (python/src/infer/pyInt8.cpp): ``get_batch_size``, then ``get_batch``
until it returns None, then ``write_calibration_cache``; ``read_calibration_cache`` first, and a cache it
returns replaces the frames. The binding catches every Python exception in these callbacks (``get_batch``'s
becomes "no more batches"), so the calibrator keeps what went wrong and ``raise_failure`` fails the build
naming the frame. The cache file starts with a key line (ONNX sha256 and input size): a cache made for
another model or size is never handed to TensorRT.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..contract import ModelContract
from ..errors import DatasetError, InputImageError, OutputError, TensorRTError
from ..outputs import write_bytes
from ..preprocess import preprocess_files

__all__ = ["calibration_images", "calibration_cache_key", "entropy_calibrator"]

log = logging.getLogger(__name__)

CACHE_KEY_PREFIX = b"fcn_road_seg INT8 calibration cache v1"


def calibration_images(image_dir: str | Path, max_images: int = 500) -> list[Path]:
    """Return the calibration frames, checked before any build starts (DatasetError naming the fix)."""
    from ..images import list_images

    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DatasetError(f"calibration folder not found: {image_dir}; pass --calib with a folder of frames")
    try:
        return list_images([image_dir])[:max_images]
    except InputImageError as err:
        raise DatasetError(f"{err}; INT8 calibration needs a few hundred frames like the camera's") from err


def calibration_cache_key(onnx_sha256: str, contract: ModelContract) -> bytes:
    """Return the first line of a calibration cache file: which model and input size its scales belong to."""
    shape = "x".join(map(str, contract.input_shape))
    return CACHE_KEY_PREFIX + f" onnx_sha256={onnx_sha256} input={shape}\n".encode()


def entropy_calibrator(trt, images: list[Path], contract: ModelContract, cache_path: Path, cache_key: bytes):
    """Make an IInt8EntropyCalibrator2 that copies preprocessed uint8 frames to one device buffer via pycuda.

    Create it inside the CUDA context the build uses; call ``free()`` after the build and then
    ``raise_failure()``.
    """
    import pycuda.driver as cuda

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._images = images
            self._batches = preprocess_files(images, contract)  # exactly as RoadSegmenter feeds its backend
            self._device = cuda.mem_alloc(int(np.prod(contract.input_shape)))
            self._count = 0
            self.failure: str | None = None  # the frame and error that stopped calibration, if any

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            if self.failure is not None or self._count >= len(self._images):
                log.info("INT8 calibration used %d frames", self._count)
                return None
            frame = self._images[self._count]
            try:
                _, batch = next(self._batches)
                cuda.memcpy_htod(self._device, np.ascontiguousarray(batch))
            except Exception as err:  # noqa: BLE001 - TensorRT would swallow it as "no more batches"
                self.failure = f"frame {self._count + 1} of {len(self._images)}, {frame} ({type(err).__name__}: {err})"
                log.error("INT8 calibration stopped at %s", self.failure)
                return None
            self._count += 1
            log.debug("calibration frame %d: %s", self._count, frame.name)
            return [int(self._device)]

        def read_calibration_cache(self):
            if not cache_path.is_file():
                return None
            data = cache_path.read_bytes()
            if not data.startswith(cache_key):
                log.warning("INT8 calibration cache %s was made for another model or input size; calibrating "
                            "again and replacing it", cache_path)
                return None
            log.info("using INT8 calibration cache %s", cache_path)
            return data[len(cache_key):]

        def write_calibration_cache(self, cache) -> None:
            try:
                write_bytes(cache_path, cache_key + bytes(cache))
            except OutputError as err:  # the engine is fine; only the next build calibrates again
                log.warning("could not save the INT8 calibration cache %s (%s); make %s writable or pass "
                            "--calib-cache PATH", cache_path, err, cache_path.parent)
                return
            log.info("wrote INT8 calibration cache %s", cache_path)

        def free(self) -> None:
            self._device.free()

        def raise_failure(self) -> None:
            if self.failure is not None:
                raise TensorRTError(f"INT8 calibration stopped at {self.failure}; fix or remove that frame from "
                                    "the --calib folder and build again")

    return EntropyCalibrator()
