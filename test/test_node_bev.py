"""~/bev_grid with real rclpy: a real KITTI frame and its calibration in, a nav_msgs/OccupancyGrid out.

The grid is checked cell by cell against the calibration's own projection of the node's ~/probability.
"""
import array
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (pip install '.[ros]' or source a ROS 2 install)")
pytest.importorskip("nav_msgs", reason="nav_msgs is not installed (pip install '.[ros]')")

import yaml  # noqa: E402
from nav_msgs.msg import OccupancyGrid  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402

from fcn_road_seg.evaluation.bev import CameraPose, kitti_camera_pose, read_kitti_calib  # noqa: E402
from fcn_road_seg.ros.bev_grid import BEV_DEFAULTS, BEV_LIVE  # noqa: E402
from fcn_road_seg.ros.node import NODE_NAME, RoadSegmentationNode  # noqa: E402

from ros_frames import image_msg  # noqa: E402
from ros_harness import RAW_TOPIC, remap_image, status_values, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 0.57  # inside the random test model's probability span on KITTI frames (see test_node.py)
GRID, PROBABILITY = f"/{NODE_NAME}/bev_grid", f"/{NODE_NAME}/probability"
INFO_TOPIC = RAW_TOPIC.rpartition("/")[0] + "/camera_info"


@pytest.fixture(scope="module")
def kitti(shared_data):
    root = shared_data / "kitti_road" / "training"
    return cv2.imread(str(root / "image_2" / "um_000000.png")), read_kitti_calib(root / "calib" / "um_000000.txt")


class Grids:
    """OccupancyGrids heard on ~/bev_grid, by stamp."""

    def __init__(self, probe, qos=10) -> None:
        self.cond = threading.Condition()
        self.by_stamp: dict[tuple, OccupancyGrid] = {}
        self.sub = probe.create_subscription(OccupancyGrid, GRID, self._store, qos)

    def _store(self, msg: OccupancyGrid) -> None:
        with self.cond:
            self.by_stamp[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
            self.cond.notify_all()

    def wait(self, header, timeout: float = 10.0) -> OccupancyGrid:
        key = (header.stamp.sec, header.stamp.nanosec)
        with self.cond:
            assert self.cond.wait_for(lambda: key in self.by_stamp, timeout=timeout), f"no grid for {key}"
            return self.by_stamp[key]


@pytest.fixture(scope="module")
def node(harness, tiny_onnx, kitti):
    _, calib = kitti
    pose = CameraPose.from_matrix(kitti_camera_pose(calib))
    node = harness.add(RoadSegmentationNode(context=harness.context, cli_args=remap_image(), parameter_overrides=[
        Parameter("model", value=str(tiny_onnx)), Parameter("threshold", value=THRESHOLD),
        Parameter("publish_bev_grid", value=True),
        Parameter("bev_pose_source", value="parameters"), Parameter("camera_height", value=pose.height),
        Parameter("camera_pitch", value=pose.pitch), Parameter("camera_roll", value=pose.roll),
        Parameter("camera_yaw", value=pose.yaw), Parameter("camera_x", value=pose.x),
        Parameter("camera_y", value=pose.y)]))
    yield node
    harness.remove(node)


def pixels(msg) -> np.ndarray:
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width)


def _camera_info(calib, width, height) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = array.array("d", calib["P2"][:, :3].ravel())
    info.p = array.array("d", calib["P2"].ravel())
    info.header.frame_id = "kitti_camera_left"
    return info


def _expected(calib, probability: np.ndarray, grid: OccupancyGrid, threshold: float) -> np.ndarray:
    """Each cell's centre (x forward, y left) is KITTI road point (X, Y, Z) = (-y, 0, x).

    Project it with P2 R0_rect Tr_cam_to_road^-1 and read the node's own ~/probability at the nearest pixel.
    """
    res, rows, cols = grid.info.resolution, grid.info.height, grid.info.width
    x = grid.info.origin.position.x + (np.arange(cols) + 0.5) * res
    y = grid.info.origin.position.y + (np.arange(rows) + 0.5) * res
    xx, yy = np.meshgrid(x, y)
    r0, tr = np.eye(4), np.eye(4)
    r0[:3, :3], tr[:3, :] = calib["R0_rect"], calib["Tr_cam_to_road"]
    pts = np.stack([-yy.ravel(), np.zeros(xx.size), xx.ravel(), np.ones(xx.size)])
    u, v, w = calib["P2"] @ r0 @ np.linalg.solve(tr, pts)
    u, v = np.round(u / w).astype(int), np.round(v / w).astype(int)
    h, wd = probability.shape
    seen = (w > 0) & (u >= 0) & (u < wd) & (v >= 0) & (v < h)
    out = np.full(xx.size, -1, np.int8)
    out[seen] = np.where(probability[v[seen], u[seen]] >= np.ceil(threshold * 255 - 1e-9), 0, 100)
    return out.reshape(rows, cols)


def test_bev_grid_from_a_real_kitti_frame(harness, node, kitti):
    frame, calib = kitti
    probe = harness.probe
    grids = Grids(probe)
    probe.listen(PROBABILITY)
    info_pub = probe.create_publisher(CameraInfo, INFO_TOPIC, 10)
    wait_until(lambda: node.bev.publisher.get_subscription_count() >= 1
               and probe.raw_pub.get_subscription_count() >= 1 and info_pub.get_subscription_count() >= 1
               and node.probability_pub.get_subscription_count() >= 1, what="discovery")
    # camera_info is the sibling of the resolved (remapped) image topic, as image_transport's CameraSubscriber
    assert node.bev.camera_info_topic == INFO_TOPIC and node.bev.pose_source == "parameters"

    # no CameraInfo yet: the frame is segmented, no grid goes out, and /diagnostics says why
    msg = image_msg(frame, "bgr8", probe.header())
    probe.raw_pub.publish(msg)
    probe.wait_for(PROBABILITY, msg.header)
    wait_until(lambda: node.bev.skipped >= 1, what="the skipped grid")
    assert not grids.by_stamp
    status = probe.latest_status("bev grid", lambda s: "waiting for CameraInfo" in s.message)
    assert INFO_TOPIC in status.message and status_values(status)["published"] == "0"

    info_pub.publish(_camera_info(calib, frame.shape[1], frame.shape[0]))
    wait_until(lambda: node.bev._intrinsics is not None, what="CameraInfo at the node")
    msg = image_msg(frame, "bgr8", probe.header())
    probe.raw_pub.publish(msg)
    grid = grids.wait(msg.header)
    probability = pixels(probe.wait_for(PROBABILITY, msg.header))
    assert grid.header.frame_id == "base_link" and grid.header.stamp == msg.header.stamp
    assert (grid.info.width, grid.info.height, grid.info.resolution) == (400, 200, pytest.approx(0.1))
    assert (grid.info.origin.position.x, grid.info.origin.position.y) == (0.0, pytest.approx(-10.0))
    cells = np.array(grid.data, np.int8).reshape(200, 400)
    expected = _expected(calib, probability, grid, node.segmenter.threshold)
    assert set(np.unique(cells)) == {-1, 0, 100}
    assert (cells == -1).mean() > 0.1 and (cells[:, :50] == -1).all()  # the first 5 m are below the view
    assert ((cells == -1) == (expected == -1)).mean() > 0.999
    known = (cells != -1) & (expected != -1)
    assert (cells[known] == expected[known]).mean() > 0.97  # bilinear vs nearest at road borders
    rebuilds = node.bev.rebuilds
    msg = image_msg(frame, "bgr8", probe.header())
    probe.raw_pub.publish(msg)
    np.testing.assert_array_equal(np.array(grids.wait(msg.header).data, np.int8).reshape(200, 400), cells)
    assert node.bev.rebuilds == rebuilds  # same CameraInfo and pose: the lookup table is reused

    # a live pose change is validated, then rebuilds the table; a bad value is refused with a reason
    (bad,) = probe.set_parameters(NODE_NAME, camera_height=-1.0)
    assert not bad.successful and "camera_height" in bad.reason
    (ok,) = probe.set_parameters(NODE_NAME, camera_height=3.2)
    assert ok.successful
    msg = image_msg(frame, "bgr8", probe.header())
    probe.raw_pub.publish(msg)
    higher = np.array(grids.wait(msg.header).data, np.int8).reshape(200, 400)
    assert node.bev.rebuilds == rebuilds + 1 and not np.array_equal(higher, cells)
    # a grid narrower than one cell is refused up front (GroundGrid's own rule), not accepted and then failing
    coarsest, bad = probe.set_parameters(NODE_NAME, bev_resolution=1.0, bev_width=0.5)
    assert coarsest.successful
    assert not bad.successful and "bev_width and bev_ahead must be at least bev_resolution" in bad.reason
    (ok,) = probe.set_parameters(NODE_NAME, bev_resolution=0.2)
    msg = image_msg(frame, "bgr8", probe.header())
    probe.raw_pub.publish(msg)
    coarse = grids.wait(msg.header)
    assert ok.successful and (coarse.info.width, coarse.info.height) == (200, 100)
    status = probe.latest_status("bev grid", lambda s: s.level == s.OK and "grids published" in s.message)
    assert status_values(status)["pose_source"] == "parameters"

    # the grid is latched (reliable, transient local, depth 1, as REP-2003 asks of maps): a subscriber that
    # comes late, with Nav2 StaticLayer's QoS (map_subscribe_transient_local), gets the newest grid at once
    (info,) = probe.get_publishers_info_by_topic(GRID)
    assert (info.qos_profile.durability, info.qos_profile.reliability) == (
        DurabilityPolicy.TRANSIENT_LOCAL, ReliabilityPolicy.RELIABLE)
    late = Grids(probe, QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                   reliability=ReliabilityPolicy.RELIABLE))
    assert late.wait(msg.header).info.width == 200


def test_nav2_costmap_recipe_reads_the_grid_as_published(node):
    """config/nav2_road_costmap.yaml: a rolling local costmap in odom whose StaticLayer subscribes to this node's grid.

    It subscribes with the grid's own durability, and keeps unseen cells unknown.
    """
    (costmap,) = [v["ros__parameters"] for v in yaml.safe_load(
        (ROOT / "config" / "nav2_road_costmap.yaml").read_text())["local_costmap"].values()]
    assert costmap["rolling_window"] is True and costmap["global_frame"] == "odom"
    assert costmap["track_unknown_space"] is True and costmap["resolution"] == BEV_DEFAULTS["bev_resolution"]
    (static,) = [costmap[name] for name in costmap["plugins"]
                 if costmap[name]["plugin"] == "nav2_costmap_2d::StaticLayer"]
    assert static["map_topic"] == node.bev.publisher.topic_name == GRID
    transient = node.bev.qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert static["map_subscribe_transient_local"] is transient is BEV_DEFAULTS["bev_transient_local"]


def test_bev_parameters_in_yaml_and_rviz(node):
    config = yaml.safe_load((ROOT / "config" / "road_seg.yaml").read_text())
    (params,) = [v["ros__parameters"] for k, v in config.items() if k.endswith(NODE_NAME)]
    assert {k: params[k] for k in BEV_DEFAULTS} == BEV_DEFAULTS
    for name in BEV_DEFAULTS:
        assert node.describe_parameter(name).read_only == (name not in BEV_LIVE)
    rviz = yaml.safe_load((ROOT / "config" / "road_seg.rviz").read_text())
    (display,) = [d for d in rviz["Visualization Manager"]["Displays"] if d["Class"] == "rviz_default_plugins/Map"]
    assert display["Topic"]["Value"] == node.bev.publisher.topic_name
    assert display["Topic"]["Durability Policy"] == "Transient Local"  # as the node publishes it
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == BEV_DEFAULTS["bev_frame"]
