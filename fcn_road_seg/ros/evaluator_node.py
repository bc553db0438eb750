"""``road_evaluator`` node: live KITTI road metrics of the segmentation node against a GT topic.

Subscribes to the node's ``~/probability`` (mono8, ``metrics.quantize_probability`` of the road
probability, with the input frame's header) and to the GT topic (mono8 255/0/other=ignore, or KITTI
colour rgb8/bgr8), pairs them by header stamp (at most ``max_pending`` unpaired messages are held per
topic; older ones are counted unmatched), and accumulates the same ``Evaluation`` as the offline
evaluator. The report (same files) is written on the ``~/write_report`` service (std_srvs/Trigger) and
on shutdown. Live reports have no per-stage latency (the segmentation node publishes its own on
/diagnostics) and montage tiles are drawn over the GT, not the camera image.

    python -m fcn_road_seg.ros.evaluator_node --ros-args -p out:=report/ -p gt_topic:=/camera/road_gt
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from ..evaluation.bag import bag_frame_names
from ..errors import FcnRoadSegError, InputImageError
from ..evaluation.evaluate import decode_gt_message
from ..evaluation.streaming import Evaluation
from ..evaluation.groundtruth import category_of
from ..evaluation.report import write_report
from .spin import spin_node
from ..wording import plural

__all__ = ["RoadEvaluator", "main"]


def _stamp(msg: Image) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _mono8(msg: Image):
    from rosbags.image import message_to_cvimage

    if msg.encoding != "mono8":
        raise InputImageError(f"probability topic must be mono8 (quantised probability), got {msg.encoding!r}")
    return message_to_cvimage(msg, "mono8")


class RoadEvaluator(Node):
    """Pairs probability and GT images by stamp and accumulates road metrics."""

    def __init__(self) -> None:
        super().__init__("road_evaluator")
        self.probability_topic = self.declare_parameter("probability_topic", "/road_segmentation/probability").value
        self.gt_topic = self.declare_parameter("gt_topic", "/camera/road_gt").value
        self.out = self.declare_parameter("out", "").value
        threshold = float(self.declare_parameter("threshold", 0.0).value)
        model = self.declare_parameter("model", "").value
        bag = self.declare_parameter("bag", "").value
        self.max_pending = int(self.declare_parameter("max_pending", 64).value)
        depth = int(self.declare_parameter("qos_depth", 100).value)
        if not self.out:
            raise FcnRoadSegError("parameter 'out' is empty; pass -p out:=REPORT_DIR")
        self.contract = None
        if model:
            from ..contract import read_onnx_contract

            self.contract = read_onnx_contract(model)
        if threshold <= 0.0:
            threshold = self.contract.default_threshold if self.contract else 0.5
        self.names = bag_frame_names(bag) if bag else {}
        self.evaluation = Evaluation(threshold=threshold)
        self.lock = threading.Lock()
        self.probabilities: OrderedDict[int, Image] = OrderedDict()
        self.gts: OrderedDict[int, Image] = OrderedDict()
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Image, self.probability_topic, self._on_probability, qos)
        self.create_subscription(Image, self.gt_topic, self._on_gt, qos)
        self.create_service(Trigger, "~/write_report", self._on_write_report)
        self.get_logger().info(
            f"pairing {self.probability_topic} with {self.gt_topic} by stamp -> report in {self.out}")

    def _on_probability(self, msg: Image) -> None:
        self._pair(msg, self.probabilities, self.gts, probability_first=True)

    def _on_gt(self, msg: Image) -> None:
        self._pair(msg, self.gts, self.probabilities, probability_first=False)

    def _pair(self, msg: Image, mine: OrderedDict, other: OrderedDict, probability_first: bool) -> None:
        stamp = _stamp(msg)
        with self.lock:
            partner = other.pop(stamp, None)
            if partner is None:
                mine[stamp] = msg
                if len(mine) > self.max_pending:
                    mine.popitem(last=False)
                    self._count_unmatched(mine is self.probabilities, 1)
                return
            prob_msg, gt_msg = (msg, partner) if probability_first else (partner, msg)
            self._evaluate(stamp, prob_msg, gt_msg)

    def _count_unmatched(self, probability: bool, n: int) -> None:
        if probability:
            self.evaluation.unmatched_images += n
        else:
            self.evaluation.unmatched_gt += n

    def _evaluate(self, stamp: int, prob_msg: Image, gt_msg: Image) -> None:
        name = self.names.get(stamp, str(stamp))
        try:
            q = _mono8(prob_msg)
            road, valid = decode_gt_message(gt_msg)
            if q.shape != road.shape:
                raise InputImageError(f"probability is {q.shape[::-1]}, GT {road.shape[::-1]}")
        except InputImageError as err:
            self.get_logger().warning(f"skipped {name}: {err}")
            self.evaluation.skip(name, str(err))
            return
        self.evaluation.add(name, category_of(name), q, road, valid)

    def _on_write_report(self, request, response):
        try:
            report = self.write_report()
        except FcnRoadSegError as err:
            response.success, response.message = False, str(err)
            return response
        m = report["metrics"]
        response.success = True
        response.message = (f"{plural(report['frames']['evaluated'], 'frame')}: MaxF {m['MaxF']:.4f} AP {m['AP']:.4f} "
                            f"IoU {m['IoU']:.4f} -> {self.out}")
        return response

    def write_report(self) -> dict:
        """Write the report of everything paired so far (still-unpaired messages count as unmatched)."""
        with self.lock:
            ev = self.evaluation
            pending_p, pending_g = len(self.probabilities), len(self.gts)
            ev.unmatched_images += pending_p
            ev.unmatched_gt += pending_g
            try:
                source = {"kind": "live", "path": f"{self.probability_topic} vs {self.gt_topic}",
                          "probability_topic": self.probability_topic, "gt_topic": self.gt_topic}
                report = write_report(ev, self.out, source=source, contract=self.contract,
                                      backend={"name": "segmentation node", "device": "see its /diagnostics"})
            finally:
                ev.unmatched_images -= pending_p  # they may still be paired later
                ev.unmatched_gt -= pending_g
        self._safe_logger().info(f"report written to {Path(self.out)} ({plural(ev.frames, 'frame')})")
        return report

    def _safe_logger(self):
        """Return the node's logger while its context is up, else a logger of another name.

        After Ctrl-C shut the context down (the report is written on exit), that other logger does not try the
        then-invalid /rosout publisher.
        """
        return self.get_logger() if self.context.ok() else get_logger(f"{self.get_name()}.exit")


def _write_final_report(node: RoadEvaluator) -> None:
    try:
        node.write_report()
    except FcnRoadSegError as err:  # e.g. nothing was paired: say so instead of writing zeros
        node._safe_logger().error(f"no report written: {err}")


def main(args: list[str] | None = None) -> int:
    """Entry point of ``road_evaluator``; writes the report on shutdown."""
    return spin_node(RoadEvaluator, "road_evaluator", args, status=2, on_exit=_write_final_report)


if __name__ == "__main__":
    raise SystemExit(main())
