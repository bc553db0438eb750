"""launch/eval.launch.py: always compiled and checked against the package; expanded where `launch` and
`launch_ros` are importable (a system ROS 2 install; they are not installable from PyPI)."""
import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / "launch" / "eval.launch.py"


def test_eval_launch_compiles_and_starts_this_package_s_executables():
    source = LAUNCH_FILE.read_text()
    tree = ast.parse(source)
    compile(tree, str(LAUNCH_FILE), "exec")
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    scripts = set(re.findall(r'"([\w-]+) = fcn_road_seg\.[\w.]+:main"', (ROOT / "setup.py").read_text()))
    executables = set(re.findall(r'executable="(\w+)"', source))
    assert executables == {"road_seg_node", "road_evaluator", "bag_player"} and executables <= scripts
    # the evaluator listens to the node's ~/probability; every parameter the launch sets is declared
    from fcn_road_seg.ros.node import NODE_NAME

    assert f'PROBABILITY_TOPIC = "/{NODE_NAME}/probability"' in source
    launch_params = {
        "evaluator_node": {"out", "bag", "model", "gt_topic", "probability_topic"},
        "bag_player": {"bag", "topics", "rate", "loop", "wait_for_subscribers"},
    }
    for module, params in launch_params.items():
        module_source = (ROOT / "fcn_road_seg" / "ros" / f"{module}.py").read_text()
        for param in params:
            assert f'"{param}": ' in source, (module, param)
            assert f'declare_parameter("{param}"' in module_source, (module, param)


@pytest.fixture(scope="module")
def launch_module():
    pytest.importorskip("launch.actions", reason="`launch` is not installed (system ROS 2 only; not on PyPI)")
    pytest.importorskip("launch_ros.actions", reason="`launch_ros` is not installed (system ROS 2 only; not on PyPI)")
    spec = importlib.util.spec_from_file_location("eval_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("player", ["bag_player", "ros2"])
def test_eval_launch_expands(launch_module, player):
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    description = launch_module.generate_launch_description()
    context = LaunchContext()
    for d in (e for e in description.entities if isinstance(e, DeclareLaunchArgument)):
        context.launch_configurations[d.name] = "".join(s.perform(context) for s in d.default_value)
    context.launch_configurations.update(bag="/data/kitti_bag", player=player)
    (setup,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    actions = setup.execute(context)
    assert [a.node_executable for a in actions[:2]] == ["road_seg_node", "road_evaluator"]
    assert len(actions) == 4  # node, evaluator, delayed player, shutdown when the player exits
