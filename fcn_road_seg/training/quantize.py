"""Static INT8 quantization of an exported road model: ``fcn-road-seg quantize M.onnx -o M_int8.onnx --calib DIR``.

ONNX Runtime's quantizer writes a QDQ graph (QuantizeLinear/DequantizeLinear pairs around every conv):
weights int8 symmetric per output channel, biases left in float32, activations per tensor either uint8 with a
zero point (the default: x86 CPUs multiply uint8 by int8 natively, VNNI's VPDPBUSD; ONNX Runtime runs the
shipped model ~2x faster so than with int8 activations, OpenVINO faster too: docs/performance.md) or, with
``symmetric``, int8 with zero point 0: TensorRT's explicit-quantization form (docs/tensorrt.md). Activation
ranges are calibrated (min/max) on real frames, preprocessed exactly as RoadSegmenter feeds its backend.
Two ends stay in float:

- the input path up to the first conv (uint8 Cast, layout Transpose, normalisation Mul/Add): quantized, the
  normalisation alone costs ONNX Runtime more than the whole INT8 encoder saves;
- the tail from the last conv on (the final upsampling, the two-class logit difference, the calibrated
  temperature/bias and the Sigmoid), so the logits and the probability keep float resolution around the
  threshold; the final upsampling has 2 channels, its cost is negligible.

The contract is carried over with ``precision`` "int8" and a ``quantization`` record (source file and its
SHA-256, calibration frames, scheme); its ``metrics`` stay those of the float model it came from.
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..contract import ModelContract, file_sha256, read_onnx_contract
from ..errors import DatasetError, ModelError
from ..images import list_images
from ..outputs import replacing
from ..preprocess import preprocess_files

__all__ = ["QuantizeConfig", "float_nodes", "calibration_frames", "quantize_model"]

log = logging.getLogger(__name__)

CONV_OPS = ("Conv", "ConvTranspose")


@dataclass(frozen=True)
class QuantizeConfig:
    """Where the calibration frames come from and how many are used."""

    calib_dir: Path
    split: Path | None = None  # a split list (one frame name per line): only those frames
    max_frames: int = 200
    symmetric: bool = False  # int8 activations, zero point 0 (TensorRT's form) instead of uint8 (CPU speed)

    def __post_init__(self) -> None:
        if self.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {self.max_frames}; a few hundred frames calibrate well")


def float_nodes(graph) -> list[str]:
    """Names of the nodes kept in float.

    Every node before the first conv, and the last conv with every node after it (the graph's nodes are in
    topological order, as ONNX requires).
    """
    convs = [i for i, node in enumerate(graph.node) if node.op_type in CONV_OPS]
    if not convs:
        raise ModelError("the model has no Conv node to quantize; give an exported road model")
    unnamed = [i for i, node in enumerate(graph.node) if not node.name]
    if unnamed:
        raise ModelError(f"node #{unnamed[0]} has no name, so it cannot be kept in float; re-export the model "
                         "with `fcn-road-seg export` (names every node)")
    return [node.name for i, node in enumerate(graph.node) if i < convs[0] or i >= convs[-1]]


def calibration_frames(config: QuantizeConfig) -> list[Path]:
    """Return the calibration images, checked before any work starts.

    They come from a KITTI road folder (``image_2/`` in it or in ``training/``) or any folder of images,
    restricted to the frames of ``config.split`` when given.
    """
    from ..evaluation.groundtruth import select_split

    root = Path(config.calib_dir)
    if not root.is_dir():
        raise DatasetError(f"--calib {root} is not a folder; give a folder of frames like the camera's, e.g. "
                           "../shared/data/kitti_road_train")
    folder = next((c / "image_2" for c in (root, root / "training", root / "data_road" / "training")
                   if (c / "image_2").is_dir()), root)
    images = list_images([folder])
    if config.split is not None:
        images = select_split(images, config.split, root, folder)
    if not images:
        raise DatasetError(f"no calibration frames in {folder}")
    if len(images) > config.max_frames:  # an even spread over the list, not its first categories only
        step = len(images) / config.max_frames
        images = [images[int(i * step)] for i in range(config.max_frames)]
    return images


class _Frames:
    """ONNX Runtime's CalibrationDataReader over preprocessed frames."""

    def __init__(self, images: list[Path], contract: ModelContract) -> None:
        self._batches: Iterator[tuple[Path, np.ndarray]] = preprocess_files(images, contract)
        self._name = contract.input_name
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._batches, None)
        if item is None:
            return None
        self.count += 1
        return {self._name: item[1]}


def quantize_model(model: str | Path, output: str | Path, config: QuantizeConfig) -> Path:
    """Write the INT8 QDQ copy of ``model`` to ``output`` (whole or not at all); returns ``output``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model, output = Path(model), Path(output)
    contract = read_onnx_contract(model)
    if contract.precision != "fp32":
        raise ModelError(f"{model} is already {contract.precision}; quantize the float model it came from")
    if output.resolve() == model.resolve():
        raise ModelError(f"-o {output} is the input model; give a new file, e.g. {model.stem}_int8.onnx")
    images = calibration_frames(config)
    proto = onnx.load(str(model))
    keep_float = float_nodes(proto.graph)
    log.info("calibrating INT8 ranges on %d frames from %s; kept in float: %s", len(images), config.calib_dir,
             ", ".join(keep_float))
    reader = _Frames(images, contract)
    with tempfile.TemporaryDirectory(prefix="fcn_road_seg_quant_") as tmp:
        raw = Path(tmp) / "int8.onnx"
        quantize_static(
            proto, raw, reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if config.symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=keep_float, calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": config.symmetric, "WeightSymmetric": True, "QuantizeBias": False,
                           "QDQDisableWeightAdjustForInt32Bias": True},
        )
        quantized = onnx.load(str(raw))
    quantization = {
        "format": "QDQ", "weights": "int8 symmetric, per output channel",
        "activations": ("int8 symmetric (TensorRT's explicit-quantization form)" if config.symmetric
                        else "uint8 with zero point (CPU runtimes; not a TensorRT input)") + ", per tensor",
        "bias": "float32", "calibration": f"min/max over {reader.count} frames of {config.calib_dir}"
        + (f" listed in {Path(config.split).name}" if config.split else ""),
        "float_nodes": keep_float, "source": model.name, "source_sha256": file_sha256(model),
        "metrics_of": "the float source model",
    }
    int8 = replace(contract, precision="int8", quantization=quantization)
    del quantized.metadata_props[:]
    for key, value in int8.to_metadata().items():
        quantized.metadata_props.add(key=key, value=value)
    quantized.ir_version = min(quantized.ir_version, proto.ir_version)
    with replacing(output) as tmp:
        onnx.save(quantized, str(tmp))
    return output
