"""Real rclpy in the test process: an executor thread and a probe node.

The probe node publishes frames and collects the node's outputs and /diagnostics (no fakes; DDS on localhost in
the test's domain).
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

RAW_TOPIC = "/fcn_test/image_raw"


def remap_image(topic: str = RAW_TOPIC) -> list[str]:
    """Node arguments that remap a node's relative input ``image`` to ``topic`` (as ``-r image:=topic``)."""
    return ["--ros-args", "-r", f"image:={topic}"]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def stamp_key(header: Header) -> tuple[int, int, str]:
    return header.stamp.sec, header.stamp.nanosec, header.frame_id


class Probe(Node):
    """Publishes test frames; records every Image it hears per topic and the diagnostics."""

    def __init__(self, context) -> None:
        super().__init__("fcn_test_probe", context=context)
        self._cond = threading.Condition()
        self.images: dict[str, dict[tuple, Image]] = defaultdict(dict)
        self.arrivals: dict[str, list[tuple[float, tuple]]] = defaultdict(list)
        self.diagnostics: list[DiagnosticStatus] = []
        self._count = 0
        self.raw_pub = self.create_publisher(Image, RAW_TOPIC, 10)
        self.compressed_pub = self.create_publisher(CompressedImage, RAW_TOPIC + "/compressed", 10)
        self._subs = {}
        self._param_clients: dict[str, AsyncParameterClient] = {}
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def listen(self, topic: str) -> None:
        if topic not in self._subs:
            self._subs[topic] = self.create_subscription(Image, topic, lambda m, t=topic: self._store(t, m), 50)

    def unlisten(self, topic: str) -> None:
        self.destroy_subscription(self._subs.pop(topic))

    def _store(self, topic: str, msg: Image) -> None:
        with self._cond:
            self.images[topic][stamp_key(msg.header)] = msg
            self.arrivals[topic].append((time.monotonic(), stamp_key(msg.header)))
            self._cond.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._cond:
            self.diagnostics.extend(msg.status)
            self._cond.notify_all()

    def header(self, frame_id: str = "kitti_camera_left") -> Header:
        """Return a header with a stamp no other frame in this test run has."""
        self._count += 1
        header = Header(frame_id=frame_id)
        header.stamp.sec, header.stamp.nanosec = 1_700_000_000 + self._count, 123_456_789 - self._count
        return header

    def wait_for(self, topic: str, header: Header, timeout: float = 10.0) -> Image:
        key = stamp_key(header)
        with self._cond:
            if not self._cond.wait_for(lambda: key in self.images[topic], timeout=timeout):
                raise AssertionError(f"no message with stamp {key} on {topic} within {timeout:g} s")
            return self.images[topic][key]

    def latest_status(self, name_part: str, predicate=lambda s: True, timeout: float = 5.0) -> DiagnosticStatus:
        """Return the newest diagnostics status whose name contains ``name_part`` and satisfies ``predicate``."""
        def find():
            for status in reversed(self.diagnostics):
                if name_part in status.name and predicate(status):
                    return status
            return None

        with self._cond:
            if not self._cond.wait_for(lambda: find() is not None, timeout=timeout):
                raise AssertionError(f"no /diagnostics status for {name_part} matching within {timeout:g} s")
            return find()

    def set_parameters(self, node_name: str, **values) -> list:
        """Set parameters through the node's real parameter service; returns the SetParametersResults."""
        client = self._param_clients.get(node_name)
        if client is None:
            client = self._param_clients[node_name] = AsyncParameterClient(self, node_name)
        assert client.wait_for_services(timeout_sec=10.0), f"parameter services of {node_name} not found"
        future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        wait_until(future.done, what=f"set_parameters on {node_name}")
        return list(future.result().results)


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


class RosHarness:
    """One rclpy context with a SingleThreadedExecutor spinning in a background thread, as `ros2 run` spins a node."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.probe = Probe(self.context)
        self.executor.add_node(self.probe)
        self._thread = threading.Thread(target=self._spin, name="test_executor", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def add(self, node: Node) -> Node:
        self.executor.add_node(node)
        return node

    def remove(self, node: Node) -> None:
        self.executor.remove_node(node)
        node.destroy_node()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        self.probe.destroy_node()
        rclpy.shutdown(context=self.context)


class RosoutRecorder:
    """The /rosout records of the graph, kept per logger name.

    Transient local, as rcl publishes /rosout, so the lines a node logs while it starts, before discovery, arrive
    too.
    """

    def __init__(self, node: Node) -> None:
        from rcl_interfaces.msg import Log
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        self._lock = threading.Lock()
        self.records: list = []
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._sub = node.create_subscription(Log, "/rosout", self._store, qos)

    def _store(self, msg) -> None:
        with self._lock:
            self.records.append(msg)

    def lines(self, name: str, level: int | None = None, containing: str = "") -> list[str]:
        """Messages of logger ``name`` (at ``level``, a rcl_interfaces/Log level, if given) with ``containing``."""
        with self._lock:
            return [m.msg for m in self.records
                    if m.name == name and (level is None or m.level == level) and containing in m.msg]
