"""Dataset readers on the real KITTI road, KITTI semantics and CamVid samples, the split, augmentation and bad input."""
from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest

from fcn_road_seg.training.datasets import AugmentConfig, RoadEvalDataset, RoadTrainDataset
from fcn_road_seg.training.samples import (
    IGNORE,
    NON_ROAD,
    ROAD,
    LabelSpec,
    Sample,
    check_sizes,
    class_index_samples,
    count_unexpected_colours,
    kitti_road_samples,
    kitti_semantics_samples,
    read_target,
    split_kitti,
)
from fcn_road_seg.errors import DatasetError

from conftest import ROOT


def _colour_mask(gt_bgr: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    bgr = rgb[::-1]
    return cv2.inRange(gt_bgr, bgr, bgr) > 0


def test_kitti_reader_decodes_road_colours(shared_data):
    samples = kitti_road_samples(shared_data / "kitti_road")  # accepts data_road/ as well as training/
    assert [s.image.name for s in samples] == ["um_000000.png", "um_000001.png"]
    assert all("_road_" in s.label.name and s.group == "um" for s in samples)
    for s in samples:
        target, unexpected = read_target(s.label, LabelSpec("kitti"))
        gt = cv2.imread(str(s.label))
        assert unexpected == 0
        np.testing.assert_array_equal(target == ROAD, _colour_mask(gt, (255, 0, 255)))
        np.testing.assert_array_equal(target == NON_ROAD, _colour_mask(gt, (255, 0, 0)))
        np.testing.assert_array_equal(target == IGNORE, _colour_mask(gt, (0, 0, 0)))
        assert (target == ROAD).mean() > 0.05 and (target == IGNORE).any()


def test_kitti_unexpected_colours_are_ignored_and_warned_once(shared_data, tmp_path, caplog):
    src = shared_data / "kitti_road" / "training"
    for sub in ("image_2", "gt_image_2"):
        (tmp_path / sub).mkdir()
    for i in (0, 1):
        shutil.copy(src / "image_2" / f"um_00000{i}.png", tmp_path / "image_2")
        gt = cv2.imread(str(src / "gt_image_2" / f"um_road_00000{i}.png"))
        gt[200:210, 600:610] = (0, 255, 0)  # 100 green pixels
        cv2.imwrite(str(tmp_path / "gt_image_2" / f"um_road_00000{i}.png"), gt)
    samples = kitti_road_samples(tmp_path)
    target, unexpected = read_target(samples[0].label, LabelSpec("kitti"))
    assert unexpected == 100 and (target[200:210, 600:610] == IGNORE).all()
    with caplog.at_level(logging.WARNING, logger="fcn_road_seg.training.samples"):
        assert count_unexpected_colours(samples) == 200
    warnings = [r.getMessage() for r in caplog.records if "not magenta, red or black" in r.getMessage()]
    assert len(warnings) == 1 and "200 pixels in 2 of 2" in warnings[0]
    _, y = RoadEvalDataset(samples, LabelSpec("kitti"), (96, 320))[0]
    assert (y[200:210, 600:610] == IGNORE).all()


def test_camvid_reader_maps_ids(shared_data):
    root = shared_data / "camvid"
    samples = class_index_samples(root, "test.txt")
    assert len(samples) == 62
    ids = cv2.imread(str(samples[0].label), cv2.IMREAD_UNCHANGED)
    target, _ = read_target(samples[0].label, LabelSpec("index", road_id=3, ignore_id=11))
    np.testing.assert_array_equal(target == ROAD, ids == 3)
    np.testing.assert_array_equal(target == IGNORE, ids == 11)
    np.testing.assert_array_equal(target == NON_ROAD, (ids != 3) & (ids != 11))
    no_ignore, _ = read_target(samples[0].label, LabelSpec("index", road_id=3, ignore_id=None))
    assert not (no_ignore == IGNORE).any()


def test_kitti_jpeg_images_pair_with_png_gt_from_a_split_list(shared_data):
    root = shared_data / "kitti_road_train"
    samples = kitti_road_samples(root, ROOT / "splits" / "kitti_road_val.txt")
    assert len(samples) == 48 and {s.group for s in samples} == {"um", "umm", "uu"}
    first = samples[0]
    assert first.image.name == "um_000060.jpg" and first.label.name == "um_road_000060.png"
    rgb = cv2.imread(str(first.image))
    target, _ = read_target(first.label, LabelSpec("kitti"))
    assert target.shape == rgb.shape[:2] and (target == ROAD).mean() > 0.05 and (target == NON_ROAD).any()


def test_kitti_semantics_reader_road_is_id_7_and_id_0_is_ignored(shared_data):
    root = shared_data / "kitti_semantics"
    samples = kitti_semantics_samples(root)
    assert len(samples) == 150 and samples[0].image.suffix == ".jpg" and samples[0].label.name == "000000_10.png"
    spec = LabelSpec("index", road_id=7, ignore_id=0)
    for sample in samples[:10]:
        ids = cv2.imread(str(sample.label), cv2.IMREAD_UNCHANGED)
        target, _ = read_target(sample.label, spec)
        np.testing.assert_array_equal(target == ROAD, ids == 7)
        np.testing.assert_array_equal(target == IGNORE, ids == 0)
        assert not ((ids == 8) & (target != NON_ROAD)).any()  # sidewalk is not road
    assert (target == ROAD).any()
    with pytest.raises(DatasetError, match="KITTI semantics image_2 folder not found"):
        kitti_semantics_samples(shared_data / "camvid")


def test_kitti_split_is_stratified_and_seeded(tmp_path):
    counts = {"um": 95, "umm": 96, "uu": 98}  # the full data_road training set
    samples = [Sample(tmp_path / f"{g}_{i:06d}.png", tmp_path / f"{g}_road_{i:06d}.png", g)
               for g, n in counts.items() for i in range(n)]
    train, val = split_kitti(samples, 0.2, seed=0)
    assert {s.name for s in train}.isdisjoint(s.name for s in val)
    assert len(train) + len(val) == len(samples)
    assert {g: sum(s.group == g for s in val) for g in counts} == {"um": 19, "umm": 19, "uu": 20}
    assert split_kitti(samples, 0.2, seed=0) == (train, val)
    assert split_kitti(samples, 0.2, seed=1)[1] != val


def test_augmentation_is_seeded_and_pads_with_ignore(shared_data):
    samples = class_index_samples(shared_data / "camvid", "test.txt")[:2]
    # aspect 0.25 squeezes the frame to 120 px wide: the crop must be padded with ignore.
    aug = AugmentConfig((352, 480), (128, 192), scale=(1.0, 1.0), aspect=(0.25, 0.25), hflip=0.5, jitter=0.3)
    ds = RoadTrainDataset(samples, LabelSpec("index"), aug, seed=3)
    x, t = ds[1]
    assert x.shape == (3, 128, 192) and t.shape == (128, 192)
    assert set(np.unique(t.numpy())) <= {NON_ROAD, ROAD, IGNORE}
    assert (t == IGNORE).float().mean() >= (192 - 120) / 192 - 0.01
    x2, t2 = ds[1]
    assert np.array_equal(x.numpy(), x2.numpy()) and np.array_equal(t.numpy(), t2.numpy())
    ds.set_epoch(1)
    assert not np.array_equal(x.numpy(), ds[1][0].numpy())


def test_bad_inputs_raise_dataset_errors(shared_data, tmp_path):
    with pytest.raises(DatasetError, match="image_2 folder not found"):
        kitti_road_samples(tmp_path)
    (tmp_path / "image_2").mkdir()
    (tmp_path / "gt_image_2").mkdir()
    shutil.copy(shared_data / "kitti_road" / "training" / "image_2" / "um_000000.png", tmp_path / "image_2")
    shutil.copy(shared_data / "kitti_road" / "training" / "gt_image_2" / "um_lane_000000.png", tmp_path / "gt_image_2")
    with pytest.raises(DatasetError, match="1 of 1 images .* have no road GT"):
        kitti_road_samples(tmp_path)

    camvid = tmp_path / "camvid"
    (camvid / "images").mkdir(parents=True)
    (camvid / "labels").mkdir()
    name = "0001TP_008550.png"
    shutil.copy(shared_data / "camvid" / "images" / name, camvid / "images")
    label = cv2.imread(str(shared_data / "camvid" / "labels" / name), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(camvid / "labels" / name), label[:300])
    (camvid / "empty.txt").write_text("\n")
    (camvid / "one.txt").write_text(name + "\n")
    (camvid / "ghost.txt").write_text("nope.png\n")
    with pytest.raises(DatasetError, match="is empty"):
        class_index_samples(camvid, "empty.txt")
    with pytest.raises(DatasetError, match="lack an image"):
        class_index_samples(camvid, "ghost.txt")
    with pytest.raises(DatasetError, match="split list not found"):
        class_index_samples(camvid, "missing.txt")
    with pytest.raises(DatasetError, match="differ in size"):
        check_sizes(class_index_samples(camvid, "one.txt"), "training")
    with pytest.raises(DatasetError, match="split is empty"):
        check_sizes([], "validation")
