"""launch/road.launch.py for real: `ros2 launch` (test/ros2_cli.py finds or installs the command line).

Masks read with `ros2 topic echo`, parameters set with `ros2 param`, lifecycle transitions with `ros2 lifecycle`, topics
and QoS read from the ROS graph with rclpy. Without a ROS 2 command line they skip with the reason.
"""
from __future__ import annotations

import ast
import json
import threading
import time
from pathlib import Path

import cv2
import pytest
import yaml

pytest.importorskip("rclpy", reason="rclpy is not installed (pip install '.[ros]' or source a ROS 2 install)")

from rclpy.qos import DurabilityPolicy, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from ros_harness import wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / "launch" / "road.launch.py"


def _pure_function(name: str):
    """Return a function of the launch file that needs neither `launch` nor `launch_ros`, compiled from the source."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    namespace: dict = {}
    exec(compile(ast.Module(body=[func], type_ignores=[]), str(LAUNCH_FILE), "exec"), namespace)
    return namespace[name]


def test_images_make_the_node_input_reliable_like_the_folder_publisher():
    from fcn_road_seg.ros.node import CHOICES, DEFAULTS

    overrides = _pure_function("node_overrides")
    args = {"model": "", "backend": "", "input_qos": "", "images": ""}
    assert overrides(args) == {}  # no images: everything from params_file (input_qos sensor_data for cameras)
    with_images = overrides({**args, "images": "/data/frames"})
    assert with_images == {"input_qos": "reliable", "frozen_frames": 0}
    assert with_images["input_qos"] in CHOICES["input_qos"] and DEFAULTS["input_qos"] == "sensor_data"
    assert overrides({**args, "images": "/data/frames", "input_qos": "sensor_data"})["input_qos"] == "sensor_data"
    assert overrides({**args, "input_qos": "reliable", "model": "/m.onnx"}) == {"input_qos": "reliable",
                                                                                "model": "/m.onnx"}


@pytest.fixture(scope="module")
def ros2():
    from ros2_cli import find

    cli, why = find()
    if cli is None:
        pytest.skip(why)
    return cli


@pytest.fixture(scope="module")
def samples(ros2) -> Path:
    share = ros2.share()
    assert (share / "launch" / "road.launch.py").read_text() == LAUNCH_FILE.read_text()  # this checkout's
    return share / "samples"


@pytest.fixture()
def launched(ros2, tmp_path):
    """Start `ros2 launch fcn_road_seg road.launch.py ARGS`; stopped with Ctrl-C (SIGINT) at the end."""
    running = []

    def start(*args: str):
        launch = ros2.launch("fcn_road_seg", "road.launch.py", *args, log=tmp_path / f"launch{len(running)}.log")
        running.append(launch)
        return launch

    yield start
    for launch in running:
        launch.kill()


def _stop_cleanly(launch) -> str:
    assert launch.stop() == 0, launch.output()[-3000:]
    out = launch.output()
    assert out.count("process has finished cleanly") >= 2 and "Traceback" not in out, out[-3000:]
    return out


class Masks:
    """Masks heard on a topic by a probe node of the test's rclpy context."""

    def __init__(self, probe, topic: str) -> None:
        self.cond = threading.Condition()
        self.msgs: list[Image] = []
        self.sub = probe.create_subscription(Image, topic, self._store, 10)

    def _store(self, msg: Image) -> None:
        with self.cond:
            self.msgs.append(msg)
            self.cond.notify_all()

    def wait(self, count: int = 1, timeout: float = 60.0) -> Image:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.msgs) >= count, timeout=timeout), f"{count} masks"
            return self.msgs[-1]


def _the_one(query, topic: str):
    """Return the single endpoint ``query`` (a graph query of the probe) finds on ``topic``, once discovery shows it."""
    def found():  # DDS discovery names the endpoint's node a moment after the endpoint itself
        infos = query(topic)
        return len(infos) == 1 and infos[0].node_name != "_NODE_NAME_UNKNOWN_"

    wait_until(found, timeout=30, what=f"one endpoint on {topic} in the ROS graph, with its node's name")
    (info,) = query(topic)
    return info


def _subscriptions(probe, name: str, namespace: str) -> set[str]:
    return {topic for topic, _ in probe.get_subscriber_names_and_types_by_node(name, namespace)}


def _echo_once(ros2, topic: str) -> dict:
    res = ros2.run("topic", "echo", "--once", "--no-arr", topic, "sensor_msgs/msg/Image", timeout=90)
    assert res.returncode == 0, res.stdout
    return yaml.safe_load(res.stdout.split("---")[0])


def test_samples_launch_publishes_masks_and_takes_live_parameters(ros2, samples, launched, harness):
    """`ros2 launch fcn_road_seg road.launch.py images:=samples`, the shipped model, as the README starts it."""
    launch = launched(f"images:={samples}")
    mask = _echo_once(ros2, "/road_segmentation/mask")
    sizes = {cv2.imread(str(p)).shape[:2] for p in samples.glob("*.jpg")}
    assert mask["encoding"] == "mono8" and (mask["height"], mask["width"]) in sizes
    assert mask["header"]["frame_id"] == "camera"  # the input's header
    # the grid is latched for Nav2 (REP-2003 maps); the masks are reliable; read from the ROS graph
    probe = harness.probe
    grid = _the_one(probe.get_publishers_info_by_topic, "/road_segmentation/bev_grid")
    assert grid.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert grid.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    out = _the_one(probe.get_publishers_info_by_topic, "/road_segmentation/mask")
    assert out.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    # live parameters: set, read back; out of range and read-only ones are refused with the reason
    res = ros2.run("param", "set", "/road_segmentation", "threshold", "0.6")
    assert "Set parameter successful" in res.stdout, res.stdout
    assert "0.6" in ros2.run("param", "get", "/road_segmentation", "threshold").stdout
    res = ros2.run("param", "set", "/road_segmentation", "threshold", "1.5")
    assert "Setting parameter failed" in res.stdout and "threshold" in res.stdout, res.stdout
    res = ros2.run("param", "set", "/road_segmentation", "backend", "tensorrt")
    assert "Setting parameter failed" in res.stdout and "read-only" in res.stdout, res.stdout
    assert "parameters changed: threshold=0.6" in _stop_cleanly(launch)


def test_namespace_and_image_topic_move_every_input(ros2, samples, launched, harness, tiny_onnx):
    """namespace:=r1 image_topic:=front/image: the node subscribes to /r1/front/image and its camera_info beside it.

    Nothing is left on /camera/...; the folder publisher publishes there, reliable, like the node's input.
    """
    launch = launched(f"images:={samples}", "namespace:=r1", "image_topic:=front/image", f"model:={tiny_onnx}",
                      "backend:=onnxruntime")
    probe = harness.probe
    masks = Masks(probe, "/r1/road_segmentation/mask")
    masks.wait()
    topics = _subscriptions(probe, "road_segmentation", "/r1")
    assert {"/r1/front/image", "/r1/front/camera_info"} <= topics and not any(t.startswith("/camera") for t in topics)
    publisher = _the_one(probe.get_publishers_info_by_topic, "/r1/front/image")
    subscription = _the_one(probe.get_subscriptions_info_by_topic, "/r1/front/image")
    assert publisher.node_name == "image_folder_publisher" and publisher.node_namespace == "/r1"
    assert publisher.qos_profile.reliability == subscription.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    # lazy subscription: with nobody listening to its outputs, the node lets go of the camera
    probe.destroy_subscription(masks.sub)
    wait_until(lambda: "/r1/front/image" not in _subscriptions(probe, "road_segmentation", "/r1"), timeout=20,
               what="the node to unsubscribe from the camera")
    out = _stop_cleanly(launch)
    assert out.count("subscribed to /r1/front/image") == 1, out  # once, without flapping, then let go
    assert "unsubscribed from /r1/front/image" in out


def test_lifecycle_launch_follows_its_transitions(ros2, samples, launched, harness, tiny_onnx):
    launch = launched(f"images:={samples}", "lifecycle:=true", "namespace:=lc", f"model:={tiny_onnx}",
                      "backend:=onnxruntime")
    node, probe = "/lc/road_segmentation", harness.probe

    def state() -> str:
        return ros2.run("lifecycle", "get", node).stdout.strip()

    def transition(name: str) -> None:
        res = ros2.run("lifecycle", "set", node, name)
        assert "Transitioning successful" in res.stdout, res.stdout

    deadline = time.monotonic() + 60
    while not state().startswith("unconfigured"):
        assert time.monotonic() < deadline, state()
    assert not probe.get_publishers_info_by_topic(f"{node}/mask")  # nothing but the lifecycle services yet
    transition("configure")
    assert state().startswith("inactive")
    _the_one(probe.get_publishers_info_by_topic, f"{node}/mask")
    masks = Masks(probe, f"{node}/mask")
    wait_until(lambda: probe.get_subscriptions_info_by_topic(f"{node}/mask"), what="the probe's subscription")
    assert "/lc/camera/image_raw" not in _subscriptions(probe, "road_segmentation", "/lc")  # inactive: no input
    transition("activate")
    masks.wait()
    transition("deactivate")
    wait_until(lambda: "/lc/camera/image_raw" not in _subscriptions(probe, "road_segmentation", "/lc"),
               what="the camera subscription to go")
    transition("cleanup")
    wait_until(lambda: not probe.get_publishers_info_by_topic(f"{node}/mask"), what="the outputs to go")
    assert state().startswith("unconfigured")
    _stop_cleanly(launch)


def test_rviz_sim_time_and_log_level_reach_the_nodes(ros2):
    """use_rviz:=true, use_sim_time and log_level expanded by the real `launch` (rviz2 is not installable here)."""
    code = f"""
import importlib.util, json
from launch import LaunchContext
from launch.actions import DeclareLaunchArgument, OpaqueFunction
spec = importlib.util.spec_from_file_location("road_launch", {str(LAUNCH_FILE)!r})
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
context = LaunchContext()
description = module.generate_launch_description()
for d in (e for e in description.entities if isinstance(e, DeclareLaunchArgument)):
    context.launch_configurations[d.name] = "".join(s.perform(context) for s in d.default_value)
context.launch_configurations.update(use_rviz="true", namespace="car1", image_topic="front/image_raw",
                                     use_sim_time="true", log_level="debug", images="/frames")
(setup,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
actions = setup.execute(context)
text = lambda subs: "".join(x.perform(context) for x in subs)
print(json.dumps([[a.node_executable, [[text(k), text(v)] for k, v in a._Node__remappings],
                   [text(x) if isinstance(x, (list, tuple)) else str(x) for x in a._Node__ros_arguments],
                   any(isinstance(p, dict) and any(text(k) == "use_sim_time" and getattr(v, "value", v) is True
                                                   for k, v in p.items()) for p in a._Node__parameters)]
                  for a in actions]))
"""
    res = ros2.python(code)
    assert res.returncode == 0, res.stderr
    expanded = json.loads(res.stdout)
    assert [exe for exe, *_ in expanded] == ["road_seg_node", "image_folder_publisher", "rviz2"]
    for _, _, ros_arguments, sim_time in expanded:  # log_level and use_sim_time reach every node
        assert ros_arguments == ["--log-level", "debug"] and sim_time
    actions = {exe: dict(remaps) for exe, remaps, *_ in expanded}
    assert actions["road_seg_node"] == actions["image_folder_publisher"] == {"image": "front/image_raw"}
    rviz = yaml.safe_load((ROOT / "config" / "road_seg.rviz").read_text())["Visualization Manager"]["Displays"]
    shown = {d["Topic"]["Value"] for d in rviz}
    assert actions["rviz2"] == {"/camera/image_raw": "/car1/front/image_raw",
                                **{t: "/car1" + t for t in shown if t.startswith("/road_segmentation/")}}
