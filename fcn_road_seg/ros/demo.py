"""The quickstart's main job without ``ros2 launch``: image_folder_publisher -> road_segmentation -> overlays on disk.

It runs with real rclpy in one process (one executor thread; inference runs on the node's worker), headless.

The folder publisher plays the bundled samples (or any folder) as a camera on /camera/image_raw; the
node segments them exactly as it would a live camera (newest frame wins, drops counted); a collector
saves each overlay as ``<image stem>_overlay.png`` and measures end-to-end latency (input stamp to
overlay received, same clock).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FcnRoadSegError, InputImageError, ModelError
from ..images import list_images
from ..outputs import write_image
from ..progress import Progress
from ..wording import plural

__all__ = ["DemoConfig", "DemoReport", "run_demo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """What the demo plays and for how long (the ``fcn-road-seg demo`` flags; errors name them)."""

    out: Path = Path("out/demo")
    images: Path | None = None  # None = the bundled samples
    model: Path | None = None  # None = the shipped model
    backend: str = "auto"
    threshold: float = 0.0  # 0 = the model's own default
    rate_hz: float = 2.0  # publisher frame rate
    frames: int = 10  # stop after this many overlays...
    seconds: float = 120.0  # ...or after this long, whichever comes first

    def __post_init__(self) -> None:
        if not 0.1 <= self.rate_hz <= 1000:
            raise ValueError(f"--rate must lie in [0.1, 1000] frames per second, got {self.rate_hz:g}")
        if self.frames < 1:
            raise ValueError(f"--frames must be at least 1, got {self.frames}")
        if self.seconds <= 0:
            raise ValueError(f"--seconds must be positive, got {self.seconds:g}")


@dataclass
class DemoReport:
    """What the demo measured."""

    published: int
    segmented: int
    dropped: int
    bad_frames: int
    wall_s: float
    rate_hz: float  # overlays received per second of wall time after the first one
    latency_ms: dict[str, float]  # node: receive -> publish, p50/p95
    end_to_end_ms: dict[str, float]  # input stamp -> overlay received, p50/p95
    backend: str
    model: str
    saved: list[Path] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C ended the run: the numbers are those so far

    def summary(self) -> str:
        return (
            f"{plural(self.segmented, 'frame')} segmented in {self.wall_s:.1f} s ({self.rate_hz:.2f} Hz) of "
            f"{self.published} published, {self.dropped} dropped (newest frame wins), {self.bad_frames} bad\n"
            f"latency in the node (receive -> publish): p50 {self.latency_ms['p50']:.1f} ms, "
            f"p95 {self.latency_ms['p95']:.1f} ms; end to end (stamp -> overlay): p50 "
            f"{self.end_to_end_ms['p50']:.1f} ms, p95 {self.end_to_end_ms['p95']:.1f} ms\n"
            f"backend {self.backend}, model {self.model}; {plural(len(self.saved), 'overlay')} saved"
        )


def run_demo(config: DemoConfig) -> DemoReport:
    """Run publisher, node and collector until ``frames`` overlays arrived or ``seconds`` passed."""
    if config.images is not None:  # a missing or empty folder is said before the model loads
        try:
            list_images([config.images])
        except InputImageError as err:
            raise InputImageError(f"--images: {err}; give a folder of PNG/JPG frames") from err
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # a demo stays on this machine
    try:
        import rclpy
    except ImportError as err:
        raise FcnRoadSegError(
            "the demo needs rclpy: run scripts/setup_env.sh (ROS 2 Jazzy wheels from PyPI), "
            "pip install 'fcn_road_seg[ros]', or source a ROS 2 install"
        ) from err
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.task import Future
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from .image_folder_publisher import ImageFolderPublisher
    from .node import RoadSegmentationNode
    from ..resources import samples_dir
    from ..image_messages import message_to_bgr

    images = config.images or samples_dir()
    context = rclpy.Context()
    rclpy.init(context=context)
    nodes = []
    executor = SingleThreadedExecutor(context=context)
    # Callbacks run in this thread, so once it has returned none is in flight when the executor and the nodes
    # are torn down (a Ctrl-C at any moment leaves no callback failing on a destroyed handle).
    stop = Future()
    spinner = threading.Thread(target=executor.spin_until_future_complete, args=(stop,), name="demo_executor",
                               daemon=True)
    try:
        try:
            road = RoadSegmentationNode(context=context, parameter_overrides=[
                Parameter("model", value=str(config.model or "")), Parameter("backend", value=config.backend),
                Parameter("threshold", value=float(config.threshold)), Parameter("publish_probability", value=False),
                Parameter("input_qos", value="reliable"),  # as the folder publisher: no frame lost on the way
                Parameter("frozen_frames", value=0)])  # a looping folder repeats its frames by design
        except ModelError as err:  # the node's message names its ROS parameter; the demo's user gave --model
            raise ModelError(f"cannot open the road model ({err.__cause__ or err}). Fix: pass --model with an "
                             "exported .onnx or TensorRT plan, or leave it out for the shipped model "
                             "(`fcn-road-seg model-path`)") from err
        nodes.append(road)
        collector = rclpy.create_node("fcn_road_seg_demo_collector", context=context)
        nodes.append(collector)
        overlays: list[tuple[float, Image]] = []
        arrived = threading.Condition()

        def on_overlay(msg: Image) -> None:
            with arrived:
                overlays.append((time.time(), msg))
                arrived.notify()

        collector.create_subscription(Image, road.overlay_pub.topic_name, on_overlay, 10)
        for node in nodes:
            executor.add_node(node)
        spinner.start()
        deadline = time.monotonic() + 10.0
        while road.overlay_pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # discovery on localhost, before frames flow
        publisher = ImageFolderPublisher(context=context, parameter_overrides=[
            Parameter("folder", value=str(images)), Parameter("rate_hz", value=float(config.rate_hz)),
            Parameter("wait_for_subscribers", value=1)])  # the node subscribes (lazily) once the collector listens
        # both in the root namespace: the publisher's `image` is the node's `image`
        nodes.append(publisher)
        executor.add_node(publisher)

        start = time.monotonic()
        stop_at = start + config.seconds
        saved: dict[str, Path] = {}
        interrupted = False
        with Progress(config.frames, "demo") as bar:
            try:
                while bar.done < config.frames and time.monotonic() < stop_at:
                    with arrived:
                        arrived.wait_for(lambda: len(overlays) > bar.done,
                                         timeout=max(0.0, stop_at - time.monotonic()))
                        new = overlays[bar.done:]
                    for _, msg in new:
                        source = publisher.source_of(msg.header)
                        name = f"{source.stem if source else f'frame_{bar.done:04d}'}_overlay.png"
                        saved[name] = write_image(config.out / name, message_to_bgr(msg))
                    bar.update(len(new))
            except KeyboardInterrupt:  # Ctrl-C: stop and report what was measured so far
                interrupted = True
        wall = time.monotonic() - start
        stats = road.stats()
        arrivals = [t for t, _ in overlays]
        e2e = [(t - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)) * 1e3 for t, m in overlays]
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
        backend = road.segmenter.backend
        return DemoReport(
            published=publisher.published,
            segmented=stats["processed"],
            dropped=stats["dropped"],
            bad_frames=stats["bad_frames"],
            wall_s=wall,
            rate_hz=(len(arrivals) - 1) / span if span > 0 else 0.0,
            latency_ms={"p50": stats["latency_p50_ms"], "p95": stats["latency_p95_ms"]},
            end_to_end_ms={k: float(np.percentile(e2e, q)) if e2e else float("nan")
                           for k, q in (("p50", 50), ("p95", 95))},
            backend=f"{backend.name} ({backend.device})",
            model=str(getattr(backend, "path", config.model or "shipped")),
            saved=sorted(saved.values()),
            interrupted=interrupted,
        )
    finally:
        stop.set_result(None)
        if spinner.is_alive():
            spinner.join(timeout=5.0)
        executor.shutdown(timeout_sec=5.0)
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown(context=context)
