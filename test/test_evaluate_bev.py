"""`evaluate --bev`: the KITTI devkit's bird's-eye-view metrics.

From folders (calib/ per frame) and bags (camera_info + /tf), checked against a per-cell numpy re-implementation of the
devkit's lookup.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import missing
from fcn_road_seg import cli
from fcn_road_seg.errors import DatasetError
from fcn_road_seg.evaluation.bag import open_bag, write_dataset_bag
from fcn_road_seg.image_messages import typestore
from fcn_road_seg.evaluation.bev import read_kitti_calib
from fcn_road_seg.evaluation.evaluate import EvalConfig, run_evaluation
from fcn_road_seg.evaluation.groundtruth import FolderSource, decode_kitti_gt
from fcn_road_seg.images import read_bgr

FRAMES = ("um_000000", "umm_000000", "uu_000001")


@pytest.fixture(scope="module")
def train_dir(shared_data):
    path = shared_data / "kitti_road_train"
    if not (path / "training" / "calib").is_dir():
        missing(f"{path / 'training' / 'calib'} absent (the shared KITTI road training set with calib/)")
    return path


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "three.txt"
    path.write_text("\n".join(FRAMES) + "\n")
    return path


def _devkit_valid_cells(calib_path, gt_path) -> int:
    """Count the evaluated BEV cells of one frame, the devkit's way written out per cell with plain numpy."""
    c = read_kitti_calib(calib_path)
    r0, tr = np.eye(4), np.eye(4)
    r0[:3, :3], tr[:3, :] = c["R0_rect"], c["Tr_cam_to_road"]
    tr33 = (c["P2"] @ r0 @ np.linalg.inv(tr))[:, [0, 2, 3]]
    _, valid = decode_kitti_gt(read_bgr(gt_path))
    h, w = valid.shape
    total = 0
    for row in range(800):
        z = np.float32(45.975 - 0.05 * row)
        for col in range(0, 400):
            x = np.float32(-9.975 + 0.05 * col)
            u, v, s = tr33 @ np.array([x, z, 1.0])
            u, v = u / s, v / s
            if 1 <= u <= w and 1 <= v <= h:
                total += bool(valid[math.floor(v) - 1, math.floor(u) - 1])
    return total


def test_folder_bev_report_beside_perspective(segmenter, tmp_path, train_dir, split):
    report = run_evaluation(EvalConfig(source=train_dir, out=tmp_path / "r", split=str(split), bev=True), segmenter)
    bev = report["bev"]
    assert bev["frames"] == {"evaluated": 3, "skipped": 0, "skipped_examples": []}
    assert set(bev["per_category"]) == {"um", "umm", "uu"} and bev["grid"]["rows_cols"] == [800, 400]
    assert 0 < bev["metrics"]["MaxF"] <= 1 and bev["metrics"]["MaxF"] != report["metrics"]["MaxF"]
    training = train_dir / "training"
    expected = sum(_devkit_valid_cells(training / "calib" / f"{n}.txt",
                                       training / "gt_image_2" / (n.replace("_", "_road_") + ".png")) for n in FRAMES)
    assert bev["metrics"]["pixels"] == expected  # cells the devkit evaluates, summed over the frames
    assert (tmp_path / "r" / "montage_bev.png").is_file() and "montage_bev.png" in report["files"]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Bird's-eye view" in md and "| umm | 1 |" in md.split("## Bird's-eye view")[1]


def test_kitti_bag_evaluates_in_bev_like_the_folder(segmenter, tmp_path, train_dir, split):
    bag = tmp_path / "bag"
    assert write_dataset_bag(FolderSource(train_dir, "kitti", split=str(split)), bag) == 3
    reader = open_bag(bag)
    try:
        assert reader.topics["/tf"].msgcount == 3 and reader.topics["/tf"].msgtype == "tf2_msgs/msg/TFMessage"
        conn = next(c for c in reader.connections if c.topic == "/tf")
        msg = typestore().deserialize_cdr(next(reader.messages(connections=[conn]))[2], conn.msgtype)
    finally:
        reader.close()
    t = msg.transforms[0]
    assert (t.header.frame_id, t.child_frame_id) == ("road", "camera")
    assert t.transform.translation.z == pytest.approx(1.6, abs=0.1)  # the camera is about 1.6 m above the road
    folder = run_evaluation(EvalConfig(source=train_dir, out=tmp_path / "f", split=str(split), bev=True), segmenter)
    report = run_evaluation(EvalConfig(source=bag, out=tmp_path / "b", image_topic="/camera/image_raw",
                                       gt_topic="/camera/road_gt", bev=True), segmenter)
    assert report["bev"]["frames"]["evaluated"] == 3
    # /tf carries the pose as a quaternion: the same grid up to R0_rect's rounding (a handful of border cells)
    got, want = report["bev"]["metrics"], folder["bev"]["metrics"]
    assert got["pixels"] == pytest.approx(want["pixels"], rel=1e-3)
    assert got["MaxF"] == pytest.approx(want["MaxF"], abs=2e-3) and got["AP"] == pytest.approx(want["AP"], abs=2e-3)
    assert set(report["bev"]["per_category"]) == {"um", "umm", "uu"}


def test_frames_without_calibration_are_counted_not_guessed(segmenter, tmp_path, shared_data, capsys, tiny_onnx):
    """kitti_road/ has calib only for um_000000: um_000001 is evaluated in perspective, not in BEV."""
    kitti = shared_data / "kitti_road" / "training"
    code = cli.main(["evaluate", str(kitti), "--bev", "--out", str(tmp_path / "r"), "--model", str(tiny_onnx)])
    assert code == 1, "frames left out of the BEV must not look clean"
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["frames"]["evaluated"] == 2 and report["bev"]["frames"]["evaluated"] == 1
    assert "no calib/um_000001.txt" in report["bev"]["frames"]["skipped_examples"][0]
    assert "BEV (1 frame, 1 without calibration)" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="--bev needs KITTI calibration"):
        run_evaluation(EvalConfig(source=shared_data / "camvid", out=tmp_path / "c", bev=True), segmenter)
