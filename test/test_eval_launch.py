"""launch/eval.launch.py for real, as `ros2 launch fcn_road_seg eval.launch.py`.

It replays a small real KITTI bag through the node into the evaluator, shuts itself down when playback ends and leaves
the report. Skips without a ROS 2 command line (test/ros2_cli.py) or without the shared KITTI frames.
"""
from __future__ import annotations

import json

import pytest

from fcn_road_seg.evaluation.bag import write_dataset_bag
from fcn_road_seg.evaluation.groundtruth import FolderSource


@pytest.fixture(scope="module")
def ros2():
    from ros2_cli import find

    cli, why = find()
    if cli is None:
        pytest.skip(why)
    return cli


def test_eval_launch_replays_a_bag_and_writes_the_report(ros2, shared_data, tiny_onnx, tmp_path):
    bag = tmp_path / "kitti_bag"
    write_dataset_bag(FolderSource(shared_data / "kitti_road" / "training", "kitti"), bag)  # 2 frames + GT
    out = tmp_path / "report"
    launch = ros2.launch("fcn_road_seg", "eval.launch.py", f"bag:={bag}", f"out:={out}", f"model:={tiny_onnx}",
                         "backend:=onnxruntime", "start_delay:=1.0", "shutdown_after:=2.0", "rate:=0.2",
                         log=tmp_path / "launch.log")
    try:
        code = launch.wait(timeout=180)  # the launch ends by itself once the player is done
    finally:
        launch.kill()
    log = launch.output()
    assert code == 0 and "Traceback" not in log, log[-3000:]
    assert "was required: shutting down" in log  # the player's exit ended the launch
    assert "escalating to 'SIGTERM'" not in log, log[-3000:]  # the evaluator had the time to write its report
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["frames"] == 2, report["metrics"]
