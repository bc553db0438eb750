"""Evaluation and bag inputs a user gets wrong (issue 22, items 5-9).

Split lists for bags, an image without its GT, an empty split file, bad bag topics/rates and --limit. Real KITTI frames
(a temp copy of a few of ../shared/data/kitti_road_train), real bags written by rosbags, the CLI's own exit codes and
messages.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_road_seg import cli
from fcn_road_seg.evaluation.bag import BagOut, bag_frame_names, open_bag
from fcn_road_seg.images import read_bgr

IMAGE, GT = "/camera/image_raw", "/camera/road_gt"
FRAMES = ("um_000000", "umm_000000", "uu_000000", "uu_000001")


@pytest.fixture(scope="module")
def kitti_copy(tmp_path_factory, shared_data) -> Path:
    """Four real KITTI road training frames (image, GT, calib) in a temp folder of the official layout."""
    src = shared_data / "kitti_road_train" / "training"
    if not src.is_dir():
        pytest.skip(f"{src} not found (the 231-frame KITTI road set beside the repo)")
    root = tmp_path_factory.mktemp("kitti") / "training"
    for sub in ("image_2", "gt_image_2", "calib"):
        (root / sub).mkdir(parents=True)
    for name in FRAMES:
        category, _, index = name.partition("_")
        shutil.copy(src / "image_2" / f"{name}.jpg", root / "image_2")
        shutil.copy(src / "gt_image_2" / f"{category}_road_{index}.png", root / "gt_image_2")
        shutil.copy(src / "calib" / f"{name}.txt", root / "calib")
    return root


def _run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refusals
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def _evaluate(capsys, tiny_onnx, source, out, *extra):
    return _run(capsys, "evaluate", source, "--out", out, "--model", tiny_onnx, "--backend", "onnxruntime", *extra)


def test_a_kitti_image_without_gt_is_counted_listed_and_skipped(capsys, tmp_path, kitti_copy, tiny_onnx):
    root = tmp_path / "training"
    shutil.copytree(kitti_copy, root)
    (root / "gt_image_2" / "umm_road_000000.png").unlink()
    code, out, err = _evaluate(capsys, tiny_onnx, root, tmp_path / "r")
    assert code == 1, err  # like an undecodable frame: the run finishes, then exits 1
    assert "3 frames (1 skipped" in out
    assert "skipped umm_000000: no ground truth for umm_000000.jpg (gt_image_2/)" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["frames"]["evaluated"] == 3 and report["frames"]["skipped"] == 1
    assert report["frames"]["skipped_examples"] == ["umm_000000: no ground truth for umm_000000.jpg (gt_image_2/)"]
    # the bag writer skips it too, and says so
    code, out, err = _run(capsys, "bag", "from-kitti", root, "-o", tmp_path / "bag")
    assert code == 0 and "wrote 3 frames" in out and "skipped umm_000000" in err
    assert sorted(bag_frame_names(tmp_path / "bag").values()) == ["um_000000", "uu_000000", "uu_000001"]


def test_an_empty_split_file_is_named(capsys, tmp_path, kitti_copy, tiny_onnx):
    empty = tmp_path / "val.txt"
    empty.write_text("\n\n")
    code, _, err = _evaluate(capsys, tiny_onnx, kitti_copy, tmp_path / "r", "--split", empty)
    assert code == 2 and f"split file {empty} is empty" in err
    code, _, err = _run(capsys, "bag", "from-kitti", kitti_copy, "-o", tmp_path / "bag", "--split", empty)
    assert code == 2 and f"split file {empty} is empty" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "bag").exists()


def test_bag_split_is_written_and_honoured(capsys, tmp_path, kitti_copy, tiny_onnx):
    split = tmp_path / "three.txt"
    split.write_text("uu_000001\num_000000\nuu_000000\n")
    bag = tmp_path / "bag"
    code, out, err = _run(capsys, "bag", "from-kitti", kitti_copy, "-o", bag, "--split", split)
    assert code == 0, err
    assert sorted(bag_frame_names(bag).values()) == ["um_000000", "uu_000000", "uu_000001"]
    reader = open_bag(bag)
    try:
        assert reader.topics[IMAGE].msgcount == 3
    finally:
        reader.close()

    two = tmp_path / "two.txt"
    two.write_text("uu_000001\num_000000.jpg\n")
    bag_args = ("--image-topic", IMAGE, "--gt-topic", GT)
    code, out, err = _evaluate(capsys, tiny_onnx, bag, tmp_path / "r_bag", *bag_args, "--split", two)
    assert code == 0, err
    report = json.loads((tmp_path / "r_bag" / "report.json").read_text())
    assert report["frames"]["evaluated"] == 2 and report["frames"]["unmatched_gt"] == 0
    assert report["source"]["split"] == str(two)
    assert report["model"]["metrics"] == {"MaxF": 0.5} and report["model"]["metrics_input_size"] == [96, 320]
    assert set(report["per_category"]) == {"um", "uu"}
    assert {b["name"] for b in report["best"]} == {"uu_000001", "um_000000"}
    # the same frames from the folder give the same numbers
    code, _, err = _evaluate(capsys, tiny_onnx, kitti_copy, tmp_path / "r_dir", "--split", two)
    folder = json.loads((tmp_path / "r_dir" / "report.json").read_text())
    assert code == 0 and folder["metrics"] == report["metrics"]

    # a name the bag does not hold, and a bag without recorded names, are refused before the model loads
    ghost = tmp_path / "ghost.txt"
    ghost.write_text("um_000000\nuu_000099\n")
    code, _, err = _run(capsys, "evaluate", bag, *bag_args, "--split", ghost, "--model", tmp_path / "nope.onnx",
                        "--out", tmp_path / "r2")
    assert code == 2 and f"1 frames of split {ghost} are not in {bag} (e.g. uu_000099" in err
    plain = tmp_path / "plain_bag"
    with BagOut(plain) as out_bag:
        image = read_bgr(kitti_copy / "image_2" / "um_000000.jpg")
        out_bag.write_image(IMAGE, image, "bgr8", 1_700_000_000_000_000_000, "camera")
        out_bag.write_image(GT, image[..., 0], "mono8", 1_700_000_000_000_000_000, "camera")
    code, _, err = _run(capsys, "evaluate", plain, *bag_args, "--split", two, "--model", tmp_path / "nope.onnx",
                        "--out", tmp_path / "r3")
    assert code == 2 and "--split needs the frame names" in err and f"{plain} has none" in err
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--image-topic", "/camera/road_gt"], "must differ from each other"),
    (["--gt-topic", "/camera/camera_info"], "must differ from each other"),
    (["--image-topic", "/tf"], "must differ from each other and from /tf"),
    (["--image-topic", "camera/image_raw"], "--image-topic 'camera/image_raw' is not an absolute ROS topic name"),
    (["--gt-topic", "/camera/road gt"], "--gt-topic '/camera/road gt' is not an absolute ROS topic name"),
    (["--camera-info-topic", "/camera/"], "--camera-info-topic '/camera/' is not an absolute"),
    (["--rate", "nan"], "--rate must be a finite number of frames per second above 0, got nan"),
    (["--rate", "inf"], "got inf"),
    (["--rate", "0"], "got 0.0"),
    (["--rate", "-5"], "got -5.0"),
])
def test_bag_topics_and_rate_are_checked_up_front(capsys, tmp_path, flags, message):
    # the dataset folder does not even exist: the flags are refused before it is looked at
    code, _, err = _run(capsys, "bag", "from-kitti", tmp_path / "no_such_folder", "-o", tmp_path / "bag", *flags)
    assert code == 2 and message in err
    assert not (tmp_path / "bag").exists()


@pytest.mark.parametrize("command", ["evaluate", "from-kitti", "from-folder"])
@pytest.mark.parametrize("limit", ["0", "-3", "two"])
def test_limit_must_be_a_positive_number_of_frames(capsys, tmp_path, kitti_copy, tiny_onnx, command, limit):
    argv = (["evaluate", kitti_copy, "--out", tmp_path / "r", "--model", tiny_onnx] if command == "evaluate"
            else ["bag", command, kitti_copy, "-o", tmp_path / "bag"])
    code, out, err = _run(capsys, *argv, "--limit", limit)
    assert code == 2 and "argument --limit:" in err
    assert ("must be at least 1" if limit != "two" else "expected a whole number of frames") in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "bag").exists()


def _reference_label(text: str, width: int) -> np.ndarray:
    """Draw the label as it should read: black Hershey simplex 0.5, stroke 1, on a clean white 24 px strip."""
    strip = np.full((24, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def test_montage_labels_read_as_their_text(capsys, tmp_path, kitti_copy, tiny_onnx):
    code, _, err = _evaluate(capsys, tiny_onnx, kitti_copy, tmp_path / "r")
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    montage = cv2.imread(str(tmp_path / "r" / "montage.png"))
    width = montage.shape[1]
    tile_h = round(375 * 400 / 1242) + 24  # a KITTI frame's tile and its label strip
    row_h = 24 + tile_h
    assert montage.shape[0] == 2 * row_h
    for r, (title, frames) in enumerate((("best (highest IoU)", report["best"]),
                                         ("worst (lowest IoU)", report["worst"]))):
        y = r * row_h
        np.testing.assert_array_equal(montage[y:y + 24], _reference_label(title, width), err_msg=title)
        for c, frame in enumerate(frames):
            label = montage[y + 24:y + 48, c * 400:(c + 1) * 400]
            text = f"{frame['name']}  IoU {frame['IoU']:.3f}"
            np.testing.assert_array_equal(label, _reference_label(text, 400), err_msg=text)
            assert (montage[y + 48:y + row_h, c * 400:(c + 1) * 400] != 255).any()  # the picture below it
