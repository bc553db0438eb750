"""Truncated or corrupt JPEG/PNG files are refused wherever images are decoded.

OpenCV alone would decode a half JPEG with its missing rows filled grey, and the network marks that grey as road.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_road_seg.errors import DatasetError, InputImageError
from fcn_road_seg.image_messages import header, message_to_bgr, typestore
from fcn_road_seg.images import decode_bgr, read_bgr, read_labels, verify_encoded

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_JPEG = ROOT / "samples" / "kitti_um_000000.jpg"


def _half(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def test_opencv_alone_decodes_a_half_jpeg(tmp_path):
    # Why the check exists: this is what every path did before.
    half = tmp_path / "half.jpg"
    half.write_bytes(_half(SAMPLE_JPEG))
    frame = cv2.imread(str(half))
    assert frame is not None and frame.shape == (375, 1242, 3)


def test_every_real_frame_and_label_passes(shared_data):
    files = sorted(ROOT.glob("samples/*.jpg"))
    files += sorted((shared_data / "kitti_road_train" / "training" / "image_2").glob("*.jpg"))[:40]
    files += sorted((shared_data / "kitti_road_train" / "training" / "gt_image_2").glob("*.png"))[:10]
    files += sorted((shared_data / "kitti_road" / "training").glob("*/*.png"))
    files += sorted((shared_data / "camvid" / "labels").glob("*.png"))[:10]
    assert len(files) > 60
    for path in files:
        assert verify_encoded(path.read_bytes(), str(path)) == ("jpeg" if path.suffix == ".jpg" else "png")
    # progressive JPEG with restart markers, grey PNG, BMP: valid encodings of other kinds pass too
    frame = cv2.imread(str(SAMPLE_JPEG))
    for ext, params in ((".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_RST_INTERVAL, 8]),
                        (".png", []), (".bmp", [])):
        ok, buf = cv2.imencode(ext, frame, params)
        assert ok
        np.testing.assert_array_equal(decode_bgr(buf.tobytes(), ext), cv2.imdecode(buf, cv2.IMREAD_COLOR))


@pytest.mark.parametrize("damage", ["half", "last_byte", "eoi_zeroed", "bad_marker"])
def test_damaged_jpeg_is_refused(tmp_path, damage):
    data = bytearray(SAMPLE_JPEG.read_bytes())
    if damage == "half":
        data = data[: len(data) // 2]
    elif damage == "last_byte":
        data = data[:-1]
    elif damage == "eoi_zeroed":  # a file preallocated and not completely written
        data[len(data) // 2:] = bytes(len(data) - len(data) // 2)
    else:  # a byte in the entropy-coded data turned into an invalid marker
        at = data.index(b"\xff\x00", len(data) // 2)
        data[at + 1] = 0x42
    path = tmp_path / "frame.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(InputImageError, match="corrupt JPEG data"):
        read_bgr(path)


def test_damaged_png_is_refused(shared_data, tmp_path):
    png = shared_data / "kitti_road" / "training" / "image_2" / "um_000000.png"
    data = png.read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10  # one bit in the image data: zlib may still inflate it
    (tmp_path / "flip.png").write_bytes(bytes(flipped))
    with pytest.raises(InputImageError, match="truncated inside the 'IDAT' chunk"):
        read_bgr(tmp_path / "half.png")
    with pytest.raises(InputImageError, match="CRC mismatch"):
        read_bgr(tmp_path / "flip.png")
    gt = (shared_data / "kitti_road" / "training" / "gt_image_2" / "um_road_000000.png").read_bytes()
    (tmp_path / "gt.png").write_bytes(gt[:-20])
    with pytest.raises(InputImageError, match="label image .*corrupt PNG"):
        read_labels(tmp_path / "gt.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InputImageError, match="not a PNG, JPEG or BMP"):
        read_bgr(tmp_path / "notes.png")


def test_infer_refuses_a_truncated_jpeg_and_writes_no_mask(tmp_path, tiny_onnx):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "trunc.jpg").write_bytes(_half(SAMPLE_JPEG))
    shutil.copy(SAMPLE_JPEG, inputs / "good.jpg")
    res = subprocess.run([sys.executable, "-m", "fcn_road_seg.cli", "infer", "--model", str(tiny_onnx), str(inputs),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "1 frame segmented, 1 failed" in res.stdout
    assert "trunc.jpg: corrupt JPEG data (truncated" in res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_mask.png", "good_overlay.png"]


def test_evaluate_skips_and_counts_a_truncated_kitti_image(tmp_path, tiny_onnx, shared_data):
    src = shared_data / "kitti_road_train" / "training"
    root = tmp_path / "kitti"
    (root / "image_2").mkdir(parents=True)
    (root / "gt_image_2").mkdir()
    for name in ("um_000000", "um_000001"):
        shutil.copy(src / "image_2" / f"{name}.jpg", root / "image_2")
        shutil.copy(src / "gt_image_2" / f"um_road_{name[3:]}.png", root / "gt_image_2")
    (root / "image_2" / "um_000001.jpg").write_bytes(_half(src / "image_2" / "um_000001.jpg"))
    res = subprocess.run([sys.executable, "-m", "fcn_road_seg.cli", "evaluate", str(root), "--model", str(tiny_onnx),
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    frames = json.loads((tmp_path / "r" / "report.json").read_text())["frames"]
    assert frames["evaluated"] == 1 and frames["skipped"] == 1
    assert "corrupt JPEG data" in frames["skipped_examples"][0]


def test_compressed_bag_frame_truncated_is_refused():
    ts = typestore()
    stamped = header(10**9, "camera")
    data = np.frombuffer(SAMPLE_JPEG.read_bytes(), np.uint8)
    make = ts.types["sensor_msgs/msg/CompressedImage"]
    assert message_to_bgr(make(header=stamped, format="jpeg", data=data)).shape == (375, 1242, 3)
    with pytest.raises(InputImageError, match=r"CompressedImage 'jpeg' \(\d+ bytes\): corrupt JPEG data"):
        message_to_bgr(make(header=stamped, format="jpeg", data=data[: len(data) // 2]))
    hit = data.copy()  # a transmission error: OpenCV's imdecode returns the frame with its rest grey
    hit[bytes(hit).index(b"\xff\x00", len(hit) // 2) + 1] = 0x42
    with pytest.raises(InputImageError, match="invalid marker 0xFF42"):
        message_to_bgr(make(header=stamped, format="jpeg", data=hit))


def test_training_refuses_a_truncated_image_before_it_starts(shared_data, tmp_path):
    pytest.importorskip("torch", reason="training needs PyTorch (the 'train' extra)")
    from fcn_road_seg.training.samples import check_sizes, class_index_samples

    camvid = tmp_path / "camvid"
    (camvid / "images").mkdir(parents=True)
    (camvid / "labels").mkdir()
    names = (shared_data / "camvid" / "test.txt").read_text().split()[:2]
    for name in names:
        shutil.copy(shared_data / "camvid" / "labels" / name, camvid / "labels")
        shutil.copy(shared_data / "camvid" / "images" / name, camvid / "images")
    (camvid / "test.txt").write_text("\n".join(names) + "\n")
    samples = class_index_samples(camvid, "test.txt")
    check_sizes(samples, "training")
    (camvid / "images" / names[1]).write_bytes(_half(shared_data / "camvid" / "images" / names[1]))
    with pytest.raises(DatasetError, match=f"1 training files are unreadable: .*{names[1]}: corrupt PNG"):
        check_sizes(samples, "training")
