"""Live replay over real DDS: bag_player (process) -> road_segmentation node -> road_evaluator (process).

The node runs in the test process, so the test can wait until its ~/probability publisher has matched the evaluator.

With reliable QoS and a slow replay no frame is dropped, so the live report must equal the offline evaluation of the
same bag exactly (same model, same quantised probability, same metrics code).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (pip install '.[ros]' or source a ROS 2 install)")

from rclpy.parameter import Parameter  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from fcn_road_seg.evaluation.bag import write_dataset_bag  # noqa: E402
from fcn_road_seg.evaluation.evaluate import EvalConfig, run_evaluation  # noqa: E402
from fcn_road_seg.evaluation.groundtruth import FolderSource  # noqa: E402
from fcn_road_seg.pipeline import RoadSegmenter  # noqa: E402
from fcn_road_seg.ros.node import RoadSegmentationNode  # noqa: E402

from ros_harness import remap_image, wait_until  # noqa: E402

IMAGE, GT, PROBABILITY = "/camera/image_raw", "/camera/road_gt", "/road_segmentation/probability"
WRITE_REPORT = "/road_evaluator/write_report"
METRICS = ("MaxF", "AP", "PRE", "REC", "FPR", "FNR", "IoU", "threshold_maxf", "frames", "pixels")


def _ros(module: str, *params: str, remaps: tuple[str, ...] = ()) -> subprocess.Popen:
    args = [sys.executable, "-m", f"fcn_road_seg.ros.{module}", "--ros-args"]
    for p in params:
        args += ["-p", p]
    for r in remaps:
        args += ["-r", r]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out


def _write_report(client, timeout: float = 20.0) -> Trigger.Response:
    """Call the evaluator's ~/write_report service (answered only while the evaluator spins)."""
    assert client.wait_for_service(timeout_sec=timeout), "the evaluator's write_report service did not appear"
    future = client.call_async(Trigger.Request())
    wait_until(future.done, timeout, "write_report")
    return future.result()


def test_live_replay_equals_offline_evaluation(tmp_path, shared_data, tiny_onnx, harness):
    bag = tmp_path / "kitti_bag"
    write_dataset_bag(FolderSource(shared_data / "kitti_road" / "training", "kitti"), bag)
    with RoadSegmenter(tiny_onnx, backend="onnxruntime") as segmenter:
        offline = run_evaluation(EvalConfig(source=bag, out=tmp_path / "offline", image_topic=IMAGE, gt_topic=GT),
                                 segmenter)

    out = tmp_path / "live"
    evaluator = _ros("evaluator_node", f"out:={out}", f"bag:={bag}", f"model:={tiny_onnx}", f"gt_topic:={GT}",
                     f"probability_topic:={PROBABILITY}")
    seg = harness.add(RoadSegmentationNode(context=harness.context, cli_args=remap_image(IMAGE), parameter_overrides=[
        Parameter("model", value=str(tiny_onnx)), Parameter("backend", value="onnxruntime"),
        Parameter("input_qos", value="reliable")]))
    procs = [evaluator]
    try:
        # The node computes ~/probability only once its own publisher has matched a subscriber (it skips
        # unwatched outputs); the evaluator is its only one here. The player waits for its own subscribers.
        wait_until(lambda: seg.probability_pub.get_subscription_count() >= 1, 60,
                   "the node's ~/probability publisher to match the evaluator")
        # the bag is stamped at 10 Hz; rate 0.2 leaves 0.5 s per frame for the CPU model: nothing is dropped
        player = _ros("bag_player", f"bag:={bag}", f"topics:=[{IMAGE},{GT}]", "rate:=0.2", "wait_for_subscribers:=1")
        procs.append(player)
        code, log = _stop_after(player, 60)
        assert code == 0, log
        assert "published 4 messages" in log

        wait_until(lambda: seg.stats()["processed"] >= 2, 20, "the node to segment both frames")
        client = harness.probe.create_client(Trigger, WRITE_REPORT)
        deadline = time.monotonic() + 20
        while not (reply := _write_report(client)).message.startswith("2 frames"):
            assert time.monotonic() < deadline, reply.message  # the last probability may still be in flight
            time.sleep(0.1)
        live = json.loads((out / "report.json").read_text())
        assert {k: live["metrics"][k] for k in METRICS} == {k: offline["metrics"][k] for k in METRICS}
        assert live["per_category"] == offline["per_category"]
        assert live["frames"]["skipped"] == 0 and live["frames"]["unmatched_images"] == 0
        assert live["model"] == offline["model"] and live["source"]["kind"] == "live"

        # shutdown writes the report too
        (out / "report.json").unlink()
        code, log = _stop(evaluator)
        assert code == 0, log
        again = json.loads((out / "report.json").read_text())
        assert again["metrics"] == live["metrics"]
    finally:
        harness.remove(seg)
        for proc in procs:
            _stop(proc)


def _stop_after(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return _stop(proc)
    return proc.returncode, out


def test_player_names_missing_topic_and_bad_bag(tmp_path, shared_data):
    bag = tmp_path / "kitti_bag"
    write_dataset_bag(FolderSource(shared_data / "kitti_road" / "training", "kitti"), bag, )
    code, log = _stop_after(_ros("bag_player", f"bag:={bag}", "topics:=[/nope]"), 30)
    assert code == 2 and "'/nope' is not in" in log and f"{IMAGE} [sensor_msgs/msg/Image]" in log
    code, log = _stop_after(_ros("bag_player", f"bag:={tmp_path / 'missing'}"), 30)
    assert code == 2 and "bag not found" in log


def test_evaluator_without_frames_says_so(tmp_path, harness):
    evaluator = _ros("evaluator_node", f"out:={tmp_path / 'r'}")
    client = harness.probe.create_client(Trigger, WRITE_REPORT)
    reply = _write_report(client, timeout=60)  # answered: it spins, so Ctrl-C reaches its shutdown path
    assert not reply.success and "no frame was evaluated" in reply.message
    code, log = _stop(evaluator)
    assert code == 0 and "no report written: no frame was evaluated" in log
    assert not (tmp_path / "r" / "report.json").exists()
