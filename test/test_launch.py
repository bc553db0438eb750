"""launch/road.launch.py: always syntax- and consistency-checked; loaded and expanded where `launch`
and `launch_ros` are importable (a system ROS 2 install; they are not installable from PyPI)."""
import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / "launch" / "road.launch.py"
EXPECTED_ARGUMENTS = {"model", "backend", "image_topic", "input_qos", "namespace", "params_file", "use_rviz", "images",
                      "rate_hz"}


def _arguments_from_source(tree: ast.Module) -> set[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ARGUMENTS" for t in node.targets):
            return {k.value for k in node.value.keys}
    raise AssertionError("ARGUMENTS table not found in the launch file")


def test_launch_file_compiles_and_is_consistent_with_the_package():
    source = LAUNCH_FILE.read_text()
    tree = ast.parse(source)
    compile(tree, str(LAUNCH_FILE), "exec")
    assert _arguments_from_source(tree) == EXPECTED_ARGUMENTS
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    # the executables it starts are console scripts of this package; the files it reads are shipped
    scripts = set(re.findall(r'"([\w-]+) = fcn_road_seg\.[\w.]+:main"', (ROOT / "setup.py").read_text()))
    for executable in re.findall(r'executable="(\w+)"', source):
        assert executable in scripts | {"rviz2"}, executable
    for name in ("road_seg.yaml", "road_seg.rviz"):
        assert f'"{name}"' in source and (ROOT / "config" / name).is_file()
    # the topics the launch file remaps for rviz2 are the ones written in the RViz config
    rviz = (ROOT / "config" / "road_seg.rviz").read_text()
    assert re.search(r'RVIZ_INPUT = "(\S+)"', source).group(1) in rviz
    displays = yaml.safe_load(rviz)["Visualization Manager"]["Displays"]
    assert {d["Name"] for d in displays} == {"Input", "Overlay", "Mask", "BEV grid"}


def _pure_function(name: str):
    """A function of the launch file that needs neither `launch` nor `launch_ros`, compiled from the source."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    namespace: dict = {}
    exec(compile(ast.Module(body=[func], type_ignores=[]), str(LAUNCH_FILE), "exec"), namespace)
    return namespace[name]


def test_images_make_the_node_input_reliable_like_the_folder_publisher():
    from fcn_road_seg.ros.node import CHOICES, DEFAULTS

    overrides = _pure_function("node_overrides")
    args = {name: "" for name in EXPECTED_ARGUMENTS}
    assert overrides(args) == {}  # no images: everything from params_file (input_qos sensor_data for cameras)
    with_images = overrides({**args, "images": "/data/frames"})
    assert with_images == {"input_qos": "reliable", "frozen_frames": 0}
    assert with_images["input_qos"] in CHOICES["input_qos"] and DEFAULTS["input_qos"] == "sensor_data"
    assert overrides({**args, "images": "/data/frames", "input_qos": "sensor_data"})["input_qos"] == "sensor_data"
    assert overrides({**args, "input_qos": "reliable", "model": "/m.onnx"}) == {"input_qos": "reliable",
                                                                                "model": "/m.onnx"}
    # the folder publisher it starts publishes reliable (the QoS the node is given must match it)
    source = (ROOT / "fcn_road_seg" / "ros" / "image_folder_publisher.py").read_text()
    assert "self.create_publisher(Image, topic, 10)" in source  # depth 10 = rclpy's reliable default profile


@pytest.fixture(scope="module")
def launch_module():
    # launch.actions, not launch: this repository's launch/ folder is importable as a namespace package
    pytest.importorskip("launch.actions", reason="`launch` is not installed (system ROS 2 only; not on PyPI)")
    pytest.importorskip("launch_ros.actions", reason="`launch_ros` is not installed (system ROS 2 only; not on PyPI)")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory("fcn_road_seg")
    except PackageNotFoundError:
        pytest.skip("fcn_road_seg is not installed in an ament index (colcon build && source install/setup.bash)")
    spec = importlib.util.spec_from_file_location("road_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expand(module, **values):
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    description = module.generate_launch_description()
    context = LaunchContext()
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert {d.name for d in declared} == EXPECTED_ARGUMENTS
    for d in declared:
        context.launch_configurations[d.name] = values.get(d.name, "".join(
            s.perform(context) for s in d.default_value))
    (setup,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    return setup.execute(context)


def test_default_launch_starts_only_the_node(launch_module):
    (node,) = _expand(launch_module)
    assert (node.node_package, node.node_executable) == ("fcn_road_seg", "road_seg_node")


def test_images_and_rviz(launch_module, tmp_path):
    actions = _expand(launch_module, images=str(ROOT / "samples"), use_rviz="true", namespace="car1",
                      image_topic="front/image_raw")
    assert [a.node_executable for a in actions] == ["road_seg_node", "image_folder_publisher", "rviz2"]
    assert launch_module.node_overrides({"model": "", "backend": "", "image_topic": "", "input_qos": "",
                                         "images": "x"})["input_qos"] == "reliable"
    assert launch_module._resolve("front/image_raw", "car1") == "/car1/front/image_raw"
    assert launch_module._resolve("/cam/image", "car1") == "/cam/image"
    params = tmp_path / "p.yaml"
    params.write_text("/**/road_segmentation:\n  ros__parameters:\n    image_topic: /other/image\n")
    assert launch_module._file_image_topic(str(params)) == "/other/image"
