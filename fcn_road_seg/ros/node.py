"""ROS 2 node ``road_segmentation``: camera frames in, drivable-area masks out.

Threading (see docs/architecture.md): the subscription callback only keeps the newest message (the one
it replaces is counted as dropped) and wakes the worker; one worker thread converts the frame, runs the
RoadSegmenter and publishes ``~/mask`` (mono8 0/255), ``~/overlay`` (bgr8) and ``~/probability``
(mono8, ``metrics.quantize_probability``) with the input's header, and, when ``publish_bev_grid`` is on,
``~/bev_grid`` (nav_msgs/OccupancyGrid on the ground, ``bev_grid.py``). Outputs nobody subscribes to are not
computed. Frames with no usable content (blank, saturated, frozen: ``camera_faults``) are counted and get
no output; ``/diagnostics`` reports rate, latency, drops, bad frames and camera faults once a second
(ERROR while a camera fault lasts).

Run: ``ros2 run fcn_road_seg road_seg_node --ros-args --params-file config/road_seg.yaml`` or
``python -m fcn_road_seg.ros.node``.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from ..backends import BACKENDS
from ..errors import FcnRoadSegError, InputImageError, ModelError
from ..evaluation.metrics import quantize_probability
from ..pipeline import RoadSegmenter
from .bev_grid import BevGridPublisher
from .camera_faults import CameraFaultCheck, FaultLimits
from .image_msgs import CONVERTER, array_to_image, describe, message_to_bgr
from .params import out_of_range, ranged_descriptor
from .spin import spin_node

__all__ = ["RoadSegmentationNode", "NodeConfig", "LiveSettings", "DEFAULTS", "check_parameter", "main"]

NODE_NAME = "road_segmentation"
DIAGNOSTICS_PERIOD_S = 1.0
ERROR_THROTTLE_S = 5.0
LATENCY_WINDOW = 200  # frames kept for the latency percentiles

# Defaults; config/road_seg.yaml carries the same values (a test keeps them equal).
DEFAULTS = {
    "model": "",
    "backend": "auto",
    "precision": "fp16",
    "image_topic": "/camera/image_raw",
    "input_transport": "raw",
    "input_qos": "sensor_data",
    "output_qos": "reliable",
    "threshold": 0.0,
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
}
LIVE = ("threshold", "overlay_alpha", "publish_overlay", "publish_probability", "max_rate_hz", "blank_stddev",
        "saturated_fraction", "frozen_frames")
_RANGES = {"threshold": (0.0, 1.0), "overlay_alpha": (0.0, 1.0), "max_rate_hz": (0.0, 1000.0),
           "blank_stddev": (0.0, 255.0), "saturated_fraction": (0.5, 1.0), "frozen_frames": (0, 1000)}
_DESCRIPTIONS = {
    "model": "road model: .onnx or TensorRT plan; empty = the shipped model",
    "backend": "inference runtime: auto (TensorRT, else OpenVINO, else ONNX Runtime; one warning), tensorrt, openvino "
               "or onnxruntime",
    "precision": "TensorRT engine precision when the node builds one from an .onnx on first use (cached)",
    "image_topic": "camera topic (with input_transport compressed, <image_topic>/compressed is used)",
    "input_transport": "raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage (JPEG/PNG)",
    "input_qos": "sensor_data: best effort, depth 1 (cameras); reliable: reliable, depth 1",
    "output_qos": "reliable (REP-2003) or sensor_data (best effort)",
    "threshold": "road when probability >= threshold, in [0, 1); 0 = the model's own default",
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
    if name == "image_topic" and not value:
        return "image_topic must not be empty"
    problem = out_of_range(name, value, _RANGES)
    if problem:
        return problem
    if name == "threshold" and value >= 1.0:
        return "threshold must be below 1 (at 1 no pixel would be road); 0 selects the model's default"
    return None


def _descriptor(name: str) -> ParameterDescriptor:
    descriptor = ranged_descriptor(name, _DESCRIPTIONS[name], name not in LIVE, DEFAULTS[name], _RANGES)
    if name in CHOICES:
        descriptor.additional_constraints = "one of: " + ", ".join(CHOICES[name])
    return descriptor


@dataclass(frozen=True)
class NodeConfig:
    """Settings fixed at start (read-only parameters)."""

    model: str
    backend: str
    precision: str
    image_topic: str
    input_transport: str
    input_qos: str
    output_qos: str


@dataclass(frozen=True)
class LiveSettings:
    """Settings that may change while running; replaced as a whole, read once per frame."""

    threshold: float
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


def _qos(kind: str, depth: int) -> QoSProfile:
    reliability = ReliabilityPolicy.BEST_EFFORT if kind == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


class _Stats:
    """Counters and recent timings shared by the callback, the worker and the diagnostics timer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = self.processed = self.dropped = self.bad_frames = self.errors = self.idle = 0
        self.camera_faults = 0
        self.fault: str | None = None  # the camera fault of the newest frame looked at; None once a frame is fine
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.pipeline_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.done_at: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.first_done: float | None = None

    def finished(self, latency_ms: float, pipeline_ms: float) -> None:
        with self.lock:
            self.processed += 1
            self.latency_ms.append(latency_ms)
            self.pipeline_ms.append(pipeline_ms)
            now = time.monotonic()
            self.done_at.append(now)
            if self.first_done is None:
                self.first_done = now

    def count(self, field: str) -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + 1)

    def snapshot(self, window_s: float = 5.0) -> dict[str, float]:
        """Counters, output rate over the last ``window_s`` (or since the first frame) and latency
        percentiles (ms from receiving a frame to publishing its outputs) over recent frames."""
        with self.lock:
            now = time.monotonic()
            recent = sum(1 for t in self.done_at if now - t <= window_s)
            # count over the window, or since the first frame (at least 1 s) while the node is young
            span = max(1.0, min(window_s, now - self.first_done)) if self.first_done is not None else 1.0
            latency = np.array(self.latency_ms) if self.latency_ms else None
            pipeline = np.array(self.pipeline_ms) if self.pipeline_ms else None
            snap = {k: getattr(self, k) for k in ("received", "processed", "dropped", "bad_frames", "camera_faults",
                                                  "errors", "idle")}
            snap["camera_fault"] = self.fault or "none"
        snap["rate_hz"] = recent / span
        nan = float("nan")
        snap["latency_p50_ms"] = float(np.percentile(latency, 50)) if latency is not None else nan
        snap["latency_p95_ms"] = float(np.percentile(latency, 95)) if latency is not None else nan
        snap["pipeline_p50_ms"] = float(np.percentile(pipeline, 50)) if pipeline is not None else nan
        return snap


class RoadSegmentationNode(Node):
    """Subscribe to a camera, segment road on one worker thread, publish mask/overlay/probability."""

    def __init__(self, **node_kwargs) -> None:
        """``node_kwargs`` go to rclpy's Node (``namespace``, ``context``, ``parameter_overrides``, ...)."""
        super().__init__(NODE_NAME, **node_kwargs)
        self._stats = _Stats()
        self._cond = threading.Condition()
        self._pending: tuple[Image | CompressedImage, float] | None = None
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._segmenter: RoadSegmenter | None = None
        self._faults = CameraFaultCheck()
        try:
            for name, default in DEFAULTS.items():
                self.declare_parameter(name, default, _descriptor(name))
            self.config = self._read_config()
            self._live = self._read_live()
            self._segmenter = self._open_segmenter()
            self._segmenter.threshold = self._live.threshold or self._segmenter.contract.default_threshold
            self.bev = BevGridPublisher(self, self.config.image_topic, _qos(self.config.output_qos, depth=1))
        except Exception:
            super().destroy_node()
            raise
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        out_qos = _qos(self.config.output_qos, depth=5)
        self.mask_pub = self.create_publisher(Image, "~/mask", out_qos)
        self.overlay_pub = self.create_publisher(Image, "~/overlay", out_qos)
        self.probability_pub = self.create_publisher(Image, "~/probability", out_qos)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        compressed = self.config.input_transport == "compressed"
        topic = f"{self.config.image_topic.rstrip('/')}/compressed" if compressed else self.config.image_topic
        self.subscription = self.create_subscription(
            CompressedImage if compressed else Image, topic, self._on_image, _qos(self.config.input_qos, depth=1)
        )
        self.input_topic = self.subscription.topic_name
        self._worker = threading.Thread(target=self._run_worker, name="road_segmentation_worker", daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        contract = self._segmenter.contract
        self.get_logger().info(
            f"segmenting {self.input_topic} ({self.config.input_transport}, {self.config.input_qos} QoS) with "
            f"{self._segmenter.backend.name} on {self._segmenter.backend.device}: {contract.variant} "
            f"{contract.input_width}x{contract.input_height}, threshold {self._segmenter.threshold:g}; "
            f"publishing {self.mask_pub.topic_name}, {self.overlay_pub.topic_name}, {self.probability_pub.topic_name}"
        )

    # -- set-up ------------------------------------------------------------------------------------------
    def _read_config(self) -> NodeConfig:
        values = {name: self.get_parameter(name).value for name in NodeConfig.__dataclass_fields__}
        for name, value in values.items():
            reason = check_parameter(name, value)
            if reason:
                raise ValueError(f"parameter {reason}")
        return NodeConfig(**values)

    def _read_live(self, changed: dict | None = None) -> LiveSettings:
        values = {name: self.get_parameter(name).value for name in LIVE}
        values.update(changed or {})
        for name, value in values.items():
            reason = check_parameter(name, value)
            if reason:
                raise ValueError(f"parameter {reason}")
        return LiveSettings(**values)

    def _open_segmenter(self) -> RoadSegmenter:
        model = self.config.model or None
        try:
            return RoadSegmenter(model, backend=self.config.backend, precision=self.config.precision)
        except FcnRoadSegError as err:
            raise ModelError(
                f"cannot open the road model ({err}). Fix: set the 'model' parameter to an exported .onnx or "
                "TensorRT plan, e.g. `ros2 run fcn_road_seg road_seg_node --ros-args -p model:=/path/model.onnx` "
                "(`fcn-road-seg model-path` shows the shipped one)"
            ) from err

    # -- parameters ------------------------------------------------------------------------------------------
    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for param in params:
            if param.name in DEFAULTS:
                reason = check_parameter(param.name, param.value)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        live = {p.name: p.value for p in params if p.name in LIVE}
        if live:
            self._live = self._read_live(live)
            self.get_logger().info("parameters changed: " + ", ".join(f"{k}={v}" for k, v in live.items()))
            with self._cond:
                self._cond.notify()  # a new max_rate_hz takes effect now

    # -- input ----------------------------------------------------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Keep only the newest frame; never blocks on inference."""
        received = time.monotonic()
        with self._cond:
            replaced = self._pending is not None
            self._pending = (msg, received)
            self._cond.notify()
        with self._stats.lock:
            self._stats.received += 1
            self._stats.dropped += replaced

    def _next_frame(self, not_before: float) -> tuple[Image | CompressedImage, float] | None:
        """Wait for a frame (and for ``not_before``, the rate cap); None when stopping."""
        with self._cond:
            while not self._stopping:
                delay = not_before - time.monotonic() if self._live.max_rate_hz > 0 else 0.0
                if self._pending is not None and delay <= 0:
                    item, self._pending = self._pending, None
                    return item
                self._cond.wait(timeout=delay if self._pending is not None else None)
            return None

    # -- worker -----------------------------------------------------------------------------------------------
    def _run_worker(self) -> None:
        not_before = 0.0
        while (item := self._next_frame(not_before)) is not None:
            started = time.monotonic()
            try:
                self._process(*item)
            except Exception as err:  # keep serving frames whatever one frame did; say what happened
                self._stats.count("errors")
                self.get_logger().error(f"pipeline failed on a frame from {self.input_topic}: {err!r}",
                                        throttle_duration_sec=ERROR_THROTTLE_S)
            rate = self._live.max_rate_hz
            not_before = started + 1.0 / rate if rate > 0 else 0.0

    def _process(self, msg: Image | CompressedImage, received: float) -> None:
        live = self._live
        want_mask = self.mask_pub.get_subscription_count() > 0
        want_overlay = live.publish_overlay and self.overlay_pub.get_subscription_count() > 0
        want_probability = live.publish_probability and self.probability_pub.get_subscription_count() > 0
        want_bev = self.bev.wanted()
        if not (want_mask or want_overlay or want_probability or want_bev):
            self._stats.count("idle")
            return
        segmenter = self._segmenter
        segmenter.threshold = live.threshold or segmenter.contract.default_threshold
        try:
            frame = message_to_bgr(msg)
            if not self._usable(frame, msg, live):
                return
            result = segmenter.segment(frame, color_order="bgr",
                                       overlay_alpha=live.overlay_alpha if want_overlay else None)
        except InputImageError as err:
            self._stats.count("bad_frames")
            self.get_logger().error(f"bad frame on {self.input_topic} ({describe(msg)}): {err}",
                                    throttle_duration_sec=ERROR_THROTTLE_S)
            return
        header = msg.header
        if want_mask:
            self.mask_pub.publish(array_to_image(result.mask, "mono8", header))
        if want_overlay:
            self.overlay_pub.publish(array_to_image(result.overlay, "bgr8", header))
        if want_probability:
            self.probability_pub.publish(array_to_image(quantize_probability(result.probability), "mono8", header))
        if want_bev:
            self.bev.publish(result.probability, segmenter.threshold, header)
        self._stats.finished((time.monotonic() - received) * 1e3, sum(result.timings_ms.values()))

    def _usable(self, frame: np.ndarray, msg: Image | CompressedImage, live: LiveSettings) -> bool:
        """False (counted, logged, no output) for a frame with a camera fault; tracks while the fault lasts."""
        fault = self._faults.check(frame, msg.data, live.fault_limits)
        with self._stats.lock:
            previous, self._stats.fault = self._stats.fault, fault
            self._stats.camera_faults += fault is not None
        if fault is None:
            if previous is not None:
                self.get_logger().info(f"camera fault cleared on {self.input_topic}; segmenting again")
        elif previous is None:
            self.get_logger().error(f"camera fault on {self.input_topic}: {fault}; publishing no masks until it clears")
        else:
            self.get_logger().warn(f"camera fault continues on {self.input_topic}: {fault}",
                                   throttle_duration_sec=ERROR_THROTTLE_S)
        return fault is None

    @property
    def segmenter(self) -> RoadSegmenter:
        """The pipeline this node runs (its backend, contract and current threshold)."""
        return self._segmenter

    # -- diagnostics --------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Counters and timings as published on /diagnostics."""
        return self._stats.snapshot()

    def _publish_diagnostics(self) -> None:
        segmenter = self._segmenter
        if segmenter is None:  # shutting down
            return
        snap = self.stats()
        backend = segmenter.backend
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: road segmentation",
                                  hardware_id=f"{backend.name}/{backend.device}")
        if snap["camera_fault"] != "none":
            status.level = DiagnosticStatus.ERROR
            status.message = f"camera fault, no masks published: {snap['camera_fault']}"
        elif snap["received"] == 0:
            status.level, status.message = DiagnosticStatus.WARN, f"no frames received on {self.input_topic}"
        elif snap["bad_frames"] or snap["errors"]:
            status.level = DiagnosticStatus.WARN
            status.message = f"{snap['bad_frames']} bad frames, {snap['errors']} pipeline errors so far"
        else:
            status.level, status.message = DiagnosticStatus.OK, f"{snap['rate_hz']:.1f} Hz"
        contract = segmenter.contract
        fields = {
            **{k: f"{v:.2f}" if isinstance(v, float) else str(v) for k, v in snap.items()},
            "backend": backend.name,
            "device": backend.device,
            "backend_selection": backend.selection,
            "model": str(getattr(backend, "path", self.config.model or "shipped")),
            "network_input": f"{contract.input_width}x{contract.input_height}",
            "threshold": f"{segmenter.threshold:g}",
            "input_topic": self.input_topic,
            "converter": CONVERTER,
        }
        status.values = [KeyValue(key=k, value=v) for k, v in fields.items()]
        array = DiagnosticArray(status=[status, *self.bev.diagnostics(self.get_fully_qualified_name())])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    # -- shutdown -----------------------------------------------------------------------------------------------
    def destroy_node(self) -> None:
        """Stop and join the worker, release the model, then destroy the ROS entities."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        if self._segmenter is not None:
            self._segmenter.close()
            self._segmenter = None
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``road_seg_node``; returns the exit status (1: bad model or parameters, said why)."""
    return spin_node(RoadSegmentationNode, NODE_NAME, args,
                     fatal=(FcnRoadSegError, ValueError, ParameterException, NameValidationException))


if __name__ == "__main__":
    sys.exit(main())
