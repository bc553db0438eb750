"""The road_segmentation node's parameters: defaults, choices, ranges, descriptions and checks.

Also the typed settings read from them (``NodeConfig`` at start, ``LiveSettings`` while running).

``config/road_seg.yaml`` carries the same defaults (a test keeps them equal).
"""
from __future__ import annotations

from dataclasses import dataclass

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..backends import BACKENDS
from ..pipeline import TTA_MODES
from .camera_faults import FaultLimits
from .params import out_of_range, ranged_descriptor

__all__ = ["DEFAULTS", "CHOICES", "LIVE", "NodeConfig", "LiveSettings", "check_parameter", "descriptor", "qos"]

# Defaults; config/road_seg.yaml carries the same values (a test keeps them equal).
DEFAULTS = {
    "model": "",
    "backend": "auto",
    "precision": "fp16",
    "input_transport": "raw",
    "input_qos": "sensor_data",
    "output_qos": "reliable",
    "lazy_subscription": True,
    "threshold": 0.0,
    "tta": "none",
    "overlay_alpha": 0.5,
    "publish_overlay": True,
    "publish_probability": True,
    "max_rate_hz": 0.0,
    "blank_stddev": FaultLimits.blank_stddev,
    "saturated_fraction": FaultLimits.saturated_fraction,
    "frozen_frames": FaultLimits.frozen_frames,
}
CHOICES = {
    "backend": BACKENDS,
    "precision": ("fp16", "fp32"),
    "input_transport": ("raw", "compressed"),
    "input_qos": ("sensor_data", "reliable"),
    "output_qos": ("reliable", "sensor_data"),
    "tta": TTA_MODES,
}
LIVE = ("threshold", "tta", "overlay_alpha", "publish_overlay", "publish_probability", "max_rate_hz", "blank_stddev",
        "saturated_fraction", "frozen_frames")
_RANGES = {"threshold": (0.0, 1.0), "overlay_alpha": (0.0, 1.0), "max_rate_hz": (0.0, 1000.0),
           "blank_stddev": (0.0, 255.0), "saturated_fraction": (0.5, 1.0), "frozen_frames": (0, 1000)}
_DESCRIPTIONS = {
    "model": "road model: .onnx or TensorRT plan; empty = the shipped model",
    "backend": "inference runtime: auto (TensorRT, else OpenVINO, else ONNX Runtime; one warning), tensorrt, openvino "
               "or onnxruntime",
    "precision": "TensorRT engine precision when the node builds one from an .onnx on first use (cached)",
    "input_transport": "raw: sensor_msgs/Image on image; compressed: sensor_msgs/CompressedImage (JPEG/PNG) on "
                       "<image>/compressed",
    "input_qos": "sensor_data: best effort, depth 1 (cameras); reliable: reliable, depth 1",
    "output_qos": "reliable (REP-2003) or sensor_data (best effort)",
    "lazy_subscription": "subscribe to the camera only while someone subscribes to an output",
    "threshold": "road when probability >= threshold, in [0, 1); 0 = the model's own default",
    "tta": "test-time augmentation: none, or flip (average with the mirrored frame: 2x inference time)",
    "overlay_alpha": "opacity of the green road tint on ~/overlay",
    "publish_overlay": "compute and publish ~/overlay (only while someone subscribes)",
    "publish_probability": "compute and publish ~/probability (only while someone subscribes)",
    "max_rate_hz": "most frames segmented per second; 0 = as fast as the model runs",
    "blank_stddev": "camera fault 'blank': every channel's standard deviation below this (grey levels); 0 = off",
    "saturated_fraction": "camera fault 'saturated': more than this share of pixels black or white; 1 = off",
    "frozen_frames": "camera fault 'frozen': this many byte-identical repeats of a frame in a row; 0 = off",
}


def check_parameter(name: str, value) -> str | None:
    """Why ``value`` is unacceptable for parameter ``name``; None when it is fine."""
    if name in CHOICES and value not in CHOICES[name]:
        return f"{name} must be one of {', '.join(CHOICES[name])}, got {value!r}"
    problem = out_of_range(name, value, _RANGES)
    if problem:
        return problem
    if name == "threshold" and value >= 1.0:
        return "threshold must be below 1 (at 1 no pixel would be road); 0 selects the model's default"
    return None


def descriptor(name: str) -> ParameterDescriptor:
    """Parameter ``name``'s descriptor: description, read-only unless live, range or choices."""
    result = ranged_descriptor(name, _DESCRIPTIONS[name], name not in LIVE, DEFAULTS[name], _RANGES)
    if name in CHOICES:
        result.additional_constraints = "one of: " + ", ".join(CHOICES[name])
    return result


@dataclass(frozen=True)
class NodeConfig:
    """Settings fixed at start (read-only parameters)."""

    model: str
    backend: str
    precision: str
    input_transport: str
    input_qos: str
    output_qos: str
    lazy_subscription: bool


@dataclass(frozen=True)
class LiveSettings:
    """Settings that may change while running; replaced as a whole, read once per frame."""

    threshold: float
    tta: str
    overlay_alpha: float
    publish_overlay: bool
    publish_probability: bool
    max_rate_hz: float
    blank_stddev: float
    saturated_fraction: float
    frozen_frames: int

    @property
    def fault_limits(self) -> FaultLimits:
        return FaultLimits(self.blank_stddev, self.saturated_fraction, self.frozen_frames)


def qos(kind: str, depth: int) -> QoSProfile:
    """``input_qos`` / ``output_qos`` kind -> a volatile keep-last profile of ``depth``."""
    reliability = ReliabilityPolicy.BEST_EFFORT if kind == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)
