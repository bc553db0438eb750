"""Offline evaluation and dataset -> rosbag2 conversion on real KITTI/CamVid samples and real bags."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_road_seg import cli
from fcn_road_seg.evaluation.bag import BagOut, bag_frame_names, open_bag, read_kitti_calib, write_dataset_bag
from fcn_road_seg.image_messages import header, image_message, message_to_bgr, typestore
from fcn_road_seg.errors import BagError, DatasetError, InputImageError
from fcn_road_seg.evaluation.evaluate import EvalConfig, decode_gt_message, run_evaluation
from fcn_road_seg.evaluation.streaming import LatencyHistogram
from fcn_road_seg.evaluation.groundtruth import FolderSource, category_of, decode_kitti_gt
from fcn_road_seg.images import read_bgr
from fcn_road_seg.evaluation.report import REPORT_FILES

METRICS = ("MaxF", "AP", "PRE", "REC", "FPR", "FNR", "IoU", "threshold_maxf", "frames", "pixels")
IMAGE, GT = "/camera/image_raw", "/camera/road_gt"


@pytest.fixture(scope="module")
def kitti_dir(shared_data):
    return shared_data / "kitti_road" / "training"


@pytest.fixture(scope="module")
def kitti_bag(tmp_path_factory, kitti_dir):
    out = tmp_path_factory.mktemp("bags") / "kitti"
    assert write_dataset_bag(FolderSource(kitti_dir, "kitti"), out) == 2
    return out


def _metrics(report: dict) -> dict:
    return {k: report["metrics"][k] for k in METRICS}


def _evaluate(segmenter, tmp_path, source, name="report", **kw):
    return run_evaluation(EvalConfig(source=source, out=tmp_path / name, **kw), segmenter)


def test_kitti_bag_holds_the_dataset(kitti_bag, kitti_dir):
    reader = open_bag(kitti_bag)
    try:
        counts = {t: i.msgcount for t, i in reader.topics.items()}
        assert counts == {IMAGE: 2, GT: 2, "/camera/camera_info": 1, "/tf": 1}
        ts = typestore()
        msgs = [(c.topic, ts.deserialize_cdr(raw, c.msgtype)) for c, _, raw in reader.messages()]
    finally:
        reader.close()
    images = [m for t, m in msgs if t == IMAGE]
    gts = [m for t, m in msgs if t == GT]
    info = next(m for t, m in msgs if t == "/camera/camera_info")
    np.testing.assert_array_equal(message_to_bgr(images[0]), read_bgr(kitti_dir / "image_2" / "um_000000.png"))
    road, valid = decode_kitti_gt(read_bgr(kitti_dir / "gt_image_2" / "um_road_000001.png"))
    got_road, got_valid = decode_gt_message(gts[1])
    np.testing.assert_array_equal(got_road, road)
    np.testing.assert_array_equal(got_valid, valid)
    assert (~valid).any() and road.any(), "sample GT should have ignore and road pixels"
    p2 = read_kitti_calib(kitti_dir / "calib" / "um_000000.txt")["P2"]
    np.testing.assert_allclose(info.p.reshape(3, 4), p2)
    np.testing.assert_allclose(info.k.reshape(3, 3), p2[:, :3])
    assert (info.width, info.height) == (1242, 375)
    assert sorted(bag_frame_names(kitti_bag).values()) == ["um_000000", "um_000001"]


def test_kitti_bag_evaluation_equals_folder_and_report_parses(segmenter, tmp_path, kitti_dir, kitti_bag):
    folder = _evaluate(segmenter, tmp_path, kitti_dir, "folder")
    bag = _evaluate(segmenter, tmp_path, kitti_bag, "bag", image_topic=IMAGE, gt_topic=GT)
    assert _metrics(bag) == _metrics(folder)
    assert bag["per_category"] == folder["per_category"] and set(folder["per_category"]) == {"um"}
    assert folder["metrics"]["frames"] == 2 and 0.0 < folder["metrics"]["MaxF"] <= 1.0
    out = tmp_path / "bag"
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["input_height"] == 96 and report["backend"]["name"] == "onnxruntime"
    assert report["machine"]["cpu_count"] >= 1 and "onnxruntime" in report["machine"]["versions"]
    assert set(report["latency_ms"]) >= {"pre", "infer", "post", "total"}
    assert report["latency_ms"]["infer"]["p50"] <= report["latency_ms"]["infer"]["p99"]
    assert report["throughput_fps"] > 0 and {b["name"] for b in report["best"]} == {"um_000000", "um_000001"}
    assert "| um | 2 |" in (out / "report.md").read_text()
    montage = cv2.imread(str(out / "montage.png"))
    assert montage is not None and montage.shape[1] >= 2 * 300
    assert cv2.imread(str(out / "pr_curve.png")) is not None


def test_kitti_bag_with_gt_dir_matches_by_name(segmenter, tmp_path, kitti_dir, kitti_bag):
    folder = _evaluate(segmenter, tmp_path, kitti_dir, "folder")
    by_dir = _evaluate(segmenter, tmp_path, kitti_bag, "dir", image_topic=IMAGE, gt_dir=kitti_dir / "gt_image_2")
    assert _metrics(by_dir) == _metrics(folder)
    # lane GT files in the same folder do not match any frame: reported, not silently used
    assert by_dir["frames"]["unmatched_gt"] == 2 and by_dir["frames"]["unmatched_images"] == 0


def test_camvid_mcap_bag_equals_folder_through_the_cli(tiny_onnx, tmp_path, shared_data, capsys):
    camvid = shared_data / "camvid"
    split = tmp_path / "three.txt"
    split.write_text("\n".join((camvid / "test.txt").read_text().split()[:3]))
    bag = tmp_path / "camvid_bag"
    assert cli.main(["bag", "from-folder", str(camvid), "--split", str(split), "--storage", "mcap",
                     "-o", str(bag)]) == 0
    assert list(bag.glob("*.mcap"))
    model = ["--model", str(tiny_onnx), "--backend", "onnxruntime"]
    assert cli.main(["evaluate", str(camvid), "--split", str(split), "--out", str(tmp_path / "f"), *model]) == 0
    assert cli.main(["evaluate", str(bag), "--image-topic", IMAGE, "--gt-topic", GT, "--out", str(tmp_path / "b"),
                     "--write-bag", str(tmp_path / "out_bag"), "--storage", "mcap", *model]) == 0
    folder = json.loads((tmp_path / "f" / "report.json").read_text())
    from_bag = json.loads((tmp_path / "b" / "report.json").read_text())
    assert _metrics(from_bag) == _metrics(folder) and folder["metrics"]["frames"] == 3
    assert "3 frames (0 skipped" in capsys.readouterr().out
    # --write-bag: input images plus mask/overlay/probability, all with the input stamps
    reader = open_bag(tmp_path / "out_bag")
    try:
        ts = typestore()
        stamps: dict[str, list[int]] = {}
        for conn, _, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamps.setdefault(conn.topic, []).append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
            if conn.topic.endswith("mask"):
                assert set(np.unique(msg.data)) <= {0, 255} and msg.encoding == "mono8"
    finally:
        reader.close()
    src_stamps = sorted(bag_frame_names(bag))
    assert {t: sorted(s) for t, s in stamps.items()} == {t: src_stamps for t in (
        IMAGE, "/road_segmentation/mask", "/road_segmentation/overlay", "/road_segmentation/probability")}


def test_missing_topic_lists_the_topics_it_has(tiny_onnx, tmp_path, kitti_bag, capsys):
    code = cli.main(["evaluate", str(kitti_bag), "--image-topic", "/cam/image", "--gt-topic", GT,
                     "--out", str(tmp_path / "r"), "--model", str(tiny_onnx)])
    err = capsys.readouterr().err
    assert code == 2 and "'/cam/image' is not in" in err
    assert f"{IMAGE} [sensor_msgs/msg/Image]" in err and "/camera/camera_info" in err


def test_unknown_storage_is_named(segmenter, tmp_path, kitti_bag):
    odd = tmp_path / "drive.bag"
    odd.write_bytes(b"#ROSBAG V2.0\n")  # a ROS 1 bag is not rosbag2
    with pytest.raises(BagError, match="Unrecognized storage format '.bag'.*sqlite3 .*mcap"):
        _evaluate(segmenter, tmp_path, odd, layout="bag", image_topic=IMAGE, gt_topic=GT)
    broken = tmp_path / "broken"
    shutil.copytree(kitti_bag, broken)
    meta = broken / "metadata.yaml"
    meta.write_text(meta.read_text().replace("storage_identifier: sqlite3", "storage_identifier: zstd_db"))
    with pytest.raises(BagError, match="zstd_db"):
        _evaluate(segmenter, tmp_path, broken, image_topic=IMAGE, gt_topic=GT)
    with pytest.raises(BagError, match="exists already"):
        BagOut(kitti_bag)


def _custom_bag(path, kitti_dir, *, corrupt: bool = False, shift_gt: bool = False):
    """Two KITTI frames; optionally the second image truncated, or the second GT with another stamp."""
    source = FolderSource(kitti_dir, "kitti")
    with BagOut(path) as bag:
        for i, frame in enumerate(source):
            stamp = 1_000_000_000 * (i + 1)
            image = frame.image
            if corrupt and i == 1:
                msg = image_message(image, "bgr8", header(stamp, "camera"))
                msg.data = msg.data[: len(msg.data) // 2]
                bag.write(IMAGE, msg, stamp)
            else:
                bag.write_image(IMAGE, image, "bgr8", stamp, "camera")
            gt = cv2.imread(str(source.pairs[i][1]))
            bag.write_image(GT, cv2.cvtColor(gt, cv2.COLOR_BGR2RGB), "rgb8", stamp + (7 if shift_gt and i == 1 else 0),
                            "camera")
    return path


def test_corrupt_frame_is_counted_skipped_and_reported(segmenter, tmp_path, kitti_dir, capsys, tiny_onnx):
    bag = _custom_bag(tmp_path / "corrupt", kitti_dir, corrupt=True)
    code = cli.main(["evaluate", str(bag), "--image-topic", IMAGE, "--gt-topic", GT, "--out", str(tmp_path / "r"),
                     "--model", str(tiny_onnx)])
    assert code == 1, "a run with skipped frames must not look clean"
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["frames"]["evaluated"] == 1 and report["frames"]["skipped"] == 1
    assert "698625 data bytes do not match the size" in report["frames"]["skipped_examples"][0]
    assert "1 skipped" in capsys.readouterr().out
    # the good frame (KITTI rgb8 colour GT) scores exactly like the folder's first frame
    single = tmp_path / "one"
    (single / "image_2").mkdir(parents=True)
    (single / "gt_image_2").mkdir()
    shutil.copy(kitti_dir / "image_2" / "um_000000.png", single / "image_2")
    shutil.copy(kitti_dir / "gt_image_2" / "um_road_000000.png", single / "gt_image_2")
    folder = _evaluate(segmenter, tmp_path, single, "single")
    assert _metrics(report) == _metrics(folder)


def test_gt_image_mismatch_reports_unmatched_counts(segmenter, tmp_path, kitti_dir):
    bag = _custom_bag(tmp_path / "shifted", kitti_dir, shift_gt=True)
    report = _evaluate(segmenter, tmp_path, bag, image_topic=IMAGE, gt_topic=GT)
    assert report["frames"]["evaluated"] == 1
    assert (report["frames"]["unmatched_images"], report["frames"]["unmatched_gt"]) == (1, 1)
    assert "1 images and 1 GT without a match" in (tmp_path / "report" / "report.md").read_text()


def test_nothing_matched_is_an_error_not_a_zero(tiny_onnx, tmp_path, kitti_dir, capsys):
    bag = tmp_path / "no_gt"
    with BagOut(bag) as out:
        for i, frame in enumerate(FolderSource(kitti_dir, "kitti")):
            out.write_image(IMAGE, frame.image, "bgr8", 10**9 * (i + 1), "camera")
            out.write_image(GT, (frame.road * 255).astype(np.uint8), "mono8", 10**9 * (i + 1) + 5, "camera")
    code = cli.main(["evaluate", str(bag), "--image-topic", IMAGE, "--gt-topic", GT, "--out", str(tmp_path / "r"),
                     "--model", str(tiny_onnx)])
    err = capsys.readouterr().err
    assert code == 2 and "no frame was evaluated" in err and "2 images and 2 GT unmatched" in err
    assert not (tmp_path / "r" / "report.json").exists()


def test_bad_dataset_folders_name_the_fix(segmenter, tmp_path, kitti_dir):
    with pytest.raises(DatasetError, match="nowhere not found"):
        _evaluate(segmenter, tmp_path, tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="apply to bags"):
        _evaluate(segmenter, tmp_path, kitti_dir, image_topic=IMAGE)
    with pytest.raises(Exception, match="not a KITTI road folder"):
        FolderSource(tmp_path, "kitti")
    (tmp_path / "calib.txt").write_text("P0: 1 2 3\n")
    with pytest.raises(InputImageError, match="no 12-value P2"):
        read_kitti_calib(tmp_path / "calib.txt")


def test_latency_percentiles_within_bin_resolution():
    rng = np.random.default_rng(0)
    values = rng.lognormal(mean=3.0, sigma=0.5, size=5000)
    hist = LatencyHistogram()
    for v in values:
        hist.add(float(v))
    for q in (50, 95, 99):
        exact = np.percentile(values, q, method="inverted_cdf")
        assert exact <= hist.percentile(q) <= exact * 1.013, q
    assert hist.summary()["mean"] == pytest.approx(values.mean())


def test_compressed_image_bag_equals_folder_and_keeps_few_tiles(segmenter, tmp_path, kitti_dir):
    ts = typestore()
    bag = tmp_path / "compressed"
    with BagOut(bag, "mcap") as out:
        for i, frame in enumerate(FolderSource(kitti_dir, "kitti")):
            stamp = 10**9 * (i + 1)
            stamped = header(stamp, "camera")
            ok, png = cv2.imencode(".png", frame.image)  # lossless: same pixels as the folder
            assert ok
            out.write("/camera/image/compressed", ts.types["sensor_msgs/msg/CompressedImage"](
                header=stamped, format="png", data=png.reshape(-1)), stamp)
            out.write_image(GT, cv2.cvtColor(cv2.imread(str(FolderSource(kitti_dir).pairs[i][1])), cv2.COLOR_BGR2RGB),
                            "rgb8", stamp, "camera")
    folder = _evaluate(segmenter, tmp_path, kitti_dir, "folder", keep=1)
    report = _evaluate(segmenter, tmp_path, bag, "bag", image_topic="/camera/image/compressed", gt_topic=GT, keep=1)
    assert _metrics(report) == _metrics(folder)
    assert len(report["best"]) == len(report["worst"]) == 1  # only `keep` tiles per end are held
    assert report["best"][0]["IoU"] >= report["worst"][0]["IoU"]


def test_kitti_jpeg_folder_pairs_png_gt_and_honours_the_split(shared_data):
    """The JPEG copy of KITTI road keeps PNG GT; the repo's validation split picks 16 frames per category."""
    train_dir = shared_data / "kitti_road_train"
    val = Path(__file__).resolve().parents[1] / "splits" / "kitti_road_val.txt"
    everything = FolderSource(train_dir, "kitti")
    assert len(everything) == 231
    assert all(img.suffix == ".jpg" and gt.suffix == ".png" for img, gt in everything.pairs)
    source = FolderSource(train_dir, "kitti", split=str(val))
    assert [img.stem for img, _ in source.pairs] == val.read_text().split()
    assert {category_of(img.stem) for img, _ in source.pairs} == {"um", "umm", "uu"} and len(source) == 48
    frame = next(iter(source))
    assert frame.error is None and frame.road.shape == frame.image.shape[:2] and frame.road.any()
    bad = Path(str(val) + ".bad")
    with pytest.raises(DatasetError, match="not found"):
        FolderSource(train_dir, "kitti", split=str(bad))


def test_class_index_folder_pairs_jpeg_images_with_png_labels_as_training_does(shared_data, tmp_path):
    """KITTI semantics as a class-index folder: 000000_10.jpg's label is labels/000000_10.png (road: id 7)."""
    semantics = shared_data / "kitti_semantics" / "training"
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for image in sorted((semantics / "image_2").iterdir())[:2]:
        (tmp_path / "images" / image.name).symlink_to(image)
        (tmp_path / "labels" / f"{image.stem}.png").symlink_to(semantics / "semantic" / f"{image.stem}.png")
    source = FolderSource(tmp_path, "class-index", road_id=7, ignore_id=None)
    assert [(img.suffix, gt.name) for img, gt in source.pairs] == [(".jpg", f"{img.stem}.png") for img, _ in
                                                                   source.pairs]
    frame = next(iter(source))
    assert frame.error is None and frame.road.shape == frame.image.shape[:2] and frame.road.any()
    for label in (tmp_path / "labels").iterdir():
        label.unlink()
    with pytest.raises(DatasetError, match=r"expected 000000_10.png for 000000_10.jpg, as training expects"):
        FolderSource(tmp_path, "class-index", road_id=7, ignore_id=None)
