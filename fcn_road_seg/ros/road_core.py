"""The road_segmentation node's processing, shared by its node classes.

It holds the parameters, the newest-frame hand-off, the worker thread that converts, checks, segments and
publishes, and ``/diagnostics``.

``RoadSegmentationCore`` is mixed into an rclpy ``Node`` or ``LifecycleNode``; it works in the lifecycle's
steps: ``_declare`` (parameters), ``_configure`` (open the model, create the publishers), ``_activate`` (worker,
camera subscription, diagnostics), ``_deactivate`` and ``_cleanup``. The plain node runs the first three at
start. Inputs are the relative names ``image`` (``<image>/compressed`` with ``input_transport: compressed``)
and, for the grid, ``camera_info``: resolved in the node's namespace and remappable. With ``lazy_subscription``
the camera is subscribed only while someone subscribes to an output (publisher "matched" events).

Threading (see docs/architecture.md): the subscription callback only keeps the newest message (the one it
replaces is counted as dropped) and wakes the worker; one worker thread converts the frame, runs the
RoadSegmenter and publishes the outputs someone subscribes to. Camera frames and output images cross rclpy as
their CDR bytes (a raw subscription, ``publish(bytes)``), decoded and encoded by ``image_messages`` with
``rosbags``: the pixels are never converted between C and Python objects (~0.8 ms a 1242x375 frame).
"""
from __future__ import annotations

import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ..backends import CPU_RUNTIMES
from ..errors import FcnRoadSegError, InputImageError, ModelError
from ..evaluation.metrics import quantize_probability
from ..image_messages import (COMPRESSED_IMAGE, IMAGE, decode, describe, encode, image_message, message_to_bgr,
                              require_converter)
from ..pipeline import RoadSegmenter
from .bad_frames import cause_of
from .bev_grid import BevGridPublisher
from .camera_faults import CameraFaultCheck
from .frame_stats import FrameStats
from .road_params import DEFAULTS, LIVE, LiveSettings, NodeConfig, check_parameter, descriptor, qos

__all__ = ["RoadSegmentationCore", "DIAGNOSTICS_PERIOD_S", "ERROR_THROTTLE_S"]

DIAGNOSTICS_PERIOD_S = 1.0
ERROR_THROTTLE_S = 5.0
# input_transport -> (rclpy message class to subscribe with, rosbags type to decode, topic suffix)
_INPUTS = {"raw": (Image, IMAGE, ""), "compressed": (CompressedImage, COMPRESSED_IMAGE, "/compressed")}


class RoadSegmentationCore:
    """Segmentation behaviour of a ``road_segmentation`` node; mix into an rclpy ``Node`` (listed first)."""

    def _declare(self) -> None:
        """Declare, read and check the parameters (the grid's too) and register the live-parameter callbacks."""
        self._stats = FrameStats()
        self._cond = threading.Condition()
        self._pending: tuple[bytes, float] | None = None  # the newest frame's CDR bytes, when received
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._segmenter: RoadSegmenter | None = None
        self._faults = CameraFaultCheck()
        self._active = False
        self._input_lock = threading.Lock()
        self.subscription = self._diag_timer = None
        self.mask_pub = self.overlay_pub = self.probability_pub = self.diagnostics_pub = None
        self.bev: BevGridPublisher | None = None
        if "image_topic" in self._parameter_overrides:  # an old params file: refuse it rather than ignore it
            raise ValueError("parameter image_topic was removed: the node subscribes to 'image' (remappable). Fix: "
                             "`--ros-args -r image:=/camera/image_raw`, or road.launch.py image_topic:=... "
                             "(drop image_topic from the params file)")
        for name, default in DEFAULTS.items():
            self.declare_parameter(name, default, descriptor(name))
        self.config = self._read_config()
        self._live = self._read_live()
        self.bev = BevGridPublisher(self)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    def _configure(self) -> None:
        """Open the model (a TensorRT engine is built here, on first use) and create the publishers."""
        self._input_class, self._input_msgtype, suffix = _INPUTS[self.config.input_transport]
        if self._input_msgtype == IMAGE:
            require_converter()  # at start, not as an error on every frame
        self._segmenter = self._open_segmenter()
        self._segmenter.threshold = self._live.threshold or self._segmenter.contract.default_threshold
        reason = self._segmenter.backend.fallback
        if reason:
            name = self._segmenter.backend.name
            self.get_logger().warn(f"{reason}: using {CPU_RUNTIMES[name]} (set backend:={name} to choose it without "
                                   "trying TensorRT; docs/tensorrt.md installs TensorRT)")
        image = self.resolve_topic_name("image")
        self.input_topic = image + suffix
        out_qos = qos(self.config.output_qos, depth=5)
        self.mask_pub, self.overlay_pub, self.probability_pub = (
            self.create_publisher(Image, f"~/{name}", out_qos, event_callbacks=self._matched_events())
            for name in ("mask", "overlay", "probability"))
        self.bev.open(image, self._matched_events())
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _activate(self) -> None:
        """Start the worker, the camera subscription (now, or when someone listens) and the diagnostics."""
        with self._cond:
            self._stopping = False
        self._worker = threading.Thread(target=self._run_worker, name="road_segmentation_worker", daemon=True)
        self._worker.start()
        self._active = True
        self._update_subscription()
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        contract = self._segmenter.contract
        self.get_logger().info(
            f"segmenting {self.input_topic} ({self.config.input_transport}, {self.config.input_qos} QoS"
            f"{', while someone subscribes to an output' if self.config.lazy_subscription else ''}) with "
            f"{self._segmenter.backend.name} on {self._segmenter.backend.device}: {contract.variant} "
            f"{contract.input_width}x{contract.input_height}, threshold {self._segmenter.threshold:g}; "
            f"publishing {self.mask_pub.topic_name}, {self.overlay_pub.topic_name}, {self.probability_pub.topic_name}"
        )

    def _deactivate(self) -> None:
        """Unsubscribe, stop and join the worker, stop the diagnostics (the publishers stay)."""
        self._active = False
        self._update_subscription()
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None

    def _cleanup(self) -> None:
        """Destroy the publishers and release the model (its backend: TensorRT context, ORT session)."""
        for publisher in (self.mask_pub, self.overlay_pub, self.probability_pub, self.diagnostics_pub):
            if publisher is not None:
                self.destroy_publisher(publisher)
        self.mask_pub = self.overlay_pub = self.probability_pub = self.diagnostics_pub = None
        if self.bev is not None:
            self.bev.close()
        if self._segmenter is not None:
            self._segmenter.close()
            self._segmenter = None

    def destroy_node(self) -> None:
        """Stop and join the worker and free the model whatever the state, then destroy the ROS entities."""
        self._deactivate()
        self._cleanup()
        super().destroy_node()  # the rclpy Node or LifecycleNode this is mixed into

    # -- lazy subscription --------------------------------------------------------------------------------------
    def _matched_events(self) -> PublisherEventCallbacks:
        return PublisherEventCallbacks(matched=self._update_subscription)

    def _listened(self) -> bool:
        outputs = (self.mask_pub, self.overlay_pub, self.probability_pub)
        return any(p is not None and p.get_subscription_count() > 0 for p in outputs) or self.bev.listened()

    def _update_subscription(self, _event=None) -> None:
        """Subscribe to the camera while active (and, with lazy_subscription, while an output has a listener)."""
        with self._input_lock:
            want = self._active and (not self.config.lazy_subscription or self._listened())
            if want and self.subscription is None:
                self.subscription = self.create_subscription(self._input_class, self.input_topic, self._on_image,
                                                             qos(self.config.input_qos, depth=1), raw=True)
                if self.config.lazy_subscription:
                    self.get_logger().info(f"an output has a subscriber: subscribed to {self.input_topic}")
            elif not want and self.subscription is not None:
                self.destroy_subscription(self.subscription)
                self.subscription = None
                if self._active:
                    self.get_logger().info(f"no output has a subscriber: unsubscribed from {self.input_topic}")

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
    def _on_image(self, raw: bytes) -> None:
        """Keep only the newest frame (its CDR bytes); never blocks on inference."""
        received = time.monotonic()
        with self._cond:
            replaced = self._pending is not None
            self._pending = (raw, received)
            self._cond.notify()
        with self._stats.lock:
            self._stats.received += 1
            self._stats.dropped += replaced

    def _next_frame(self, not_before: float) -> tuple[bytes, float] | None:
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
                if self._stats.bad_frame("pipeline_error"):
                    self.get_logger().error(f"pipeline failed on a frame from {self.input_topic}: {err!r}")
            rate = self._live.max_rate_hz
            not_before = started + 1.0 / rate if rate > 0 else 0.0

    def _process(self, raw: bytes, received: float) -> None:
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
        segmenter.tta = live.tta
        msg = None
        try:
            msg = decode(raw, self._input_msgtype)
            frame = message_to_bgr(msg)
            if not self._usable(frame, msg, live):
                return
            result = segmenter.segment(frame, color_order="bgr",
                                       overlay_alpha=live.overlay_alpha if want_overlay else None)
        except InputImageError as err:
            cause = cause_of(err)
            if self._stats.bad_frame(cause):  # each cause's first, then at most one per cause every LOG_EVERY_S
                what = describe(msg) if msg is not None else f"{len(raw)} bytes"
                self.get_logger().error(f"bad frame on {self.input_topic} ({what}): {err} [{cause}]")
            return
        header = msg.header  # a rosbags Header: the outputs are built and serialized by rosbags
        if want_mask:
            self.mask_pub.publish(encode(image_message(result.mask, "mono8", header)))
        if want_overlay:
            self.overlay_pub.publish(encode(image_message(result.overlay, "bgr8", header)))
        if want_probability:
            self.probability_pub.publish(encode(image_message(quantize_probability(result.probability), "mono8",
                                                              header)))
        if want_bev:  # the grid (tf lookups, OccupancyGrid) works with rclpy's Header
            grid_header = Header(frame_id=header.frame_id)
            grid_header.stamp.sec, grid_header.stamp.nanosec = header.stamp.sec, header.stamp.nanosec
            self.bev.publish(result.probability, segmenter.threshold, grid_header)
        self._stats.finished((time.monotonic() - received) * 1e3, sum(result.timings_ms.values()))

    def _usable(self, frame: np.ndarray, msg, live: LiveSettings) -> bool:
        """Return False (counted, logged, no output) for a frame with a camera fault.

        Tracks while the fault lasts.
        """
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
        elif self.subscription is None:
            status.level = DiagnosticStatus.OK
            status.message = f"idle: nobody subscribes to an output, so {self.input_topic} is not subscribed"
        elif snap["received"] == 0:
            status.level, status.message = DiagnosticStatus.WARN, f"no frames received on {self.input_topic}"
        elif snap["bad_frames_warning"] != "none":
            status.level, status.message = DiagnosticStatus.WARN, snap["bad_frames_warning"]
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
            "tta": segmenter.tta,
            "input_topic": self.input_topic,
            "subscribed": str(self.subscription is not None),
            "converter": "rosbags-image",
        }
        status.values = [KeyValue(key=k, value=v) for k, v in fields.items()]
        array = DiagnosticArray(status=[status, *self.bev.diagnostics(self.get_fully_qualified_name())])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)
