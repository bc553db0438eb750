"""``bag_player`` node: replay a rosbag2 bag (sqlite3 or MCAP, read with rosbags) into rclpy publishers.

For machines without the rosbag2 C++ tools (``ros2 bag play``). Messages are published as their recorded
CDR bytes (no re-encoding), with the bag's timing divided by ``rate`` (``rate`` 0: as fast as possible),
optionally looping. ``wait_for_subscribers`` holds playback until every played topic has that many
subscribers, so a test or launch file loses no frame to discovery.

    python -m fcn_road_seg.ros.bag_player --ros-args -p bag:=drive.bag -p rate:=0.5 -p loop:=false
"""
from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..evaluation.bag import find_connection, open_bag
from ..errors import BagError, FcnRoadSegError

__all__ = ["BagPlayer", "PlayerConfig", "message_class", "main"]


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class; BagError naming the package when absent."""
    package, _, name = msgtype.rpartition("/")
    try:
        return getattr(importlib.import_module(package.replace("/", ".")), name)
    except (ImportError, AttributeError) as err:
        raise BagError(f"message type {msgtype} is not installed for rclpy; install its ROS package") from err


@dataclass(frozen=True)
class PlayerConfig:
    """Parameters of the player node."""

    bag: str
    topics: tuple[str, ...] = ()  # empty: every topic in the bag
    rate: float = 1.0
    loop: bool = False
    reliable: bool = True
    depth: int = 100
    wait_for_subscribers: int = 0
    wait_timeout_s: float = 30.0


class BagPlayer(Node):
    """Publishes a bag's messages on their recorded topics with their recorded spacing."""

    def __init__(self, config: PlayerConfig | None = None) -> None:
        super().__init__("bag_player")
        if config is None:
            config = PlayerConfig(
                bag=self.declare_parameter("bag", "").value,
                topics=tuple(self.declare_parameter("topics", [""]).value or ()),
                rate=float(self.declare_parameter("rate", 1.0).value),
                loop=bool(self.declare_parameter("loop", False).value),
                reliable=bool(self.declare_parameter("reliable", True).value),
                depth=int(self.declare_parameter("qos_depth", 100).value),
                wait_for_subscribers=int(self.declare_parameter("wait_for_subscribers", 0).value),
                wait_timeout_s=float(self.declare_parameter("wait_timeout_s", 30.0).value),
            )
        config = PlayerConfig(**{**config.__dict__, "topics": tuple(t for t in config.topics if t)})
        if not config.bag:
            raise BagError("parameter 'bag' is empty; pass -p bag:=PATH (a rosbag2 folder or .mcap file)")
        if config.rate < 0:
            raise ValueError(f"parameter 'rate' must be >= 0 (0 = as fast as possible), got {config.rate}")
        self.config = config
        self.reader = open_bag(config.bag)
        names = config.topics or tuple(sorted(self.reader.topics))
        self.connections = [find_connection(self.reader, t) for t in names]
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=config.depth,
            reliability=ReliabilityPolicy.RELIABLE if config.reliable else ReliabilityPolicy.BEST_EFFORT,
        )
        self.pubs = {c.topic: self.create_publisher(message_class(c.msgtype), c.topic, qos) for c in self.connections}
        self.published = 0
        self.get_logger().info(f"playing {config.bag}: {', '.join(self.pubs)} at rate {config.rate:g}"
                               f"{' (loop)' if config.loop else ''}")

    def wait_for_subscribers(self) -> None:
        """Block until every topic has ``wait_for_subscribers`` subscribers; BagError after the timeout."""
        need = self.config.wait_for_subscribers
        deadline = time.monotonic() + self.config.wait_timeout_s
        while need > 0:
            short = [t for t, p in self.pubs.items() if p.get_subscription_count() < need]
            if not short:
                return
            if time.monotonic() > deadline:
                raise BagError(f"no {need} subscriber(s) on {', '.join(short)} after {self.config.wait_timeout_s:g} s")
            time.sleep(0.05)

    def play_once(self, stop: threading.Event) -> int:
        """Publish the bag once with its timing scaled by ``rate``; returns messages published."""
        start_wall, start_bag, count = time.monotonic(), None, 0
        for conn, time_ns, raw in self.reader.messages(connections=self.connections):
            if stop.is_set() or not rclpy.ok():
                break
            start_bag = time_ns if start_bag is None else start_bag
            if self.config.rate > 0:
                delay = start_wall + (time_ns - start_bag) / 1e9 / self.config.rate - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
            self.pubs[conn.topic].publish(bytes(raw))
            count += 1
        self.published += count
        return count

    def play(self, stop: threading.Event | None = None) -> int:
        """Wait for subscribers, then play once or until stopped when looping; returns messages published."""
        stop = stop or threading.Event()
        self.wait_for_subscribers()
        while True:
            n = self.play_once(stop)
            self.get_logger().info(f"published {n} messages")
            if not self.config.loop or stop.is_set() or n == 0:
                return self.published

    def destroy_node(self) -> None:
        self.reader.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    executor = SingleThreadedExecutor()
    spinner = threading.Thread(target=executor.spin, daemon=True)
    player = None
    try:
        player = BagPlayer()
        executor.add_node(player)
        spinner.start()
        player.play()
        time.sleep(0.5)  # let reliable publishers deliver what is queued before the process ends
        return 0
    except (FcnRoadSegError, ValueError) as err:
        rclpy.logging.get_logger("bag_player").error(f"error: {err}")
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        executor.shutdown()  # wakes and ends the spinning thread before the node goes away
        if spinner.is_alive():
            spinner.join(timeout=5)
        if player is not None:
            player.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
