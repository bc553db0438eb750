import subprocess
import sys

import cv2
import numpy as np


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fcn_road_seg.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_infer_end_to_end(tmp_path, tiny_onnx, kitti_images, camvid_images):
    res = run_cli("infer", "--model", tiny_onnx, *kitti_images, camvid_images[0], "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "3 frames segmented, 0 failed" in res.stdout and "mean ms per stage" in res.stdout
    for path in kitti_images + [camvid_images[0]]:
        mask = cv2.imread(str(tmp_path / f"{path.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        over = cv2.imread(str(tmp_path / f"{path.stem}_overlay.png"))
        src = cv2.imread(str(path))
        assert mask.shape == src.shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert over.shape == src.shape


def test_infer_folder_grey_and_rgba_are_converted(tmp_path, tiny_onnx, kitti_images):
    src = cv2.imread(str(kitti_images[0]))
    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "grey.png"), cv2.cvtColor(src, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(inputs / "rgba.png"), cv2.cvtColor(src, cv2.COLOR_BGR2BGRA))
    res = run_cli("infer", "--model", tiny_onnx, inputs, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "grey: replicated" in res.stderr and "alpha channel: dropped" in res.stderr
    assert (tmp_path / "out" / "grey_mask.png").is_file() and (tmp_path / "out" / "rgba_mask.png").is_file()


def test_infer_bad_inputs_exit_nonzero_with_the_fix(tmp_path, tiny_onnx, kitti_images):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((16, 16, 3), np.uint8))
    res = run_cli("infer", "--model", tiny_onnx, kitti_images[0], corrupt, tiny, "--out", tmp_path / "o")
    assert res.returncode == 1
    assert "1 frame segmented, 2 failed" in res.stdout
    assert "corrupt" in res.stderr and "too small" in res.stderr

    res = run_cli("infer", "--model", tmp_path / "missing.onnx", kitti_images[0], "--out", tmp_path / "o")
    assert res.returncode == 2 and "model file not found" in res.stderr

    notonnx = tmp_path / "m.onnx"
    notonnx.write_bytes(b"\x08\x07not a protobuf \xff\x00" * 8)
    res = run_cli("infer", "--model", notonnx, kitti_images[0], "--out", tmp_path / "o")
    assert res.returncode == 2 and "not a readable ONNX" in res.stderr

    res = run_cli("infer", "--model", tiny_onnx, tmp_path / "nothing_here.png", "--out", tmp_path / "o")
    assert res.returncode == 2 and "input not found" in res.stderr


def test_model_info_and_export(tmp_path):
    # Golden numbers and their sources: 134.27 M is the full FCN-8s's 134,271,430 parameters, derived from the
    # paper's layer table in test_model.test_full_fcn8s_size_matches_the_paper. 3.38 M and 3.3 GFLOP are
    # count_parameters/count_flops of FCN-8s over EfficientNet-Lite0 at 256x832 (3,375,030 and 3.268e9):
    # Lite0's 3,371,008 feature-layer parameters (its published ~4.7 M less the 1,281,000 of its 1000-class
    # classifier) plus a 4,022-parameter head; docs/model_card.md quotes the same figures.
    res = run_cli("model-info")
    assert res.returncode == 0 and "134.27 M parameters" in res.stdout and "GFLOP" in res.stdout
    res = run_cli("model-info", "--encoder", "efficientnet-lite0", "--size", "256", "832")
    assert res.returncode == 0 and "FCN-8s head over an EfficientNet-Lite0 encoder: 3.38 M parameters, 3.3 GFLOP" \
        in res.stdout
    out = tmp_path / "u.onnx"
    res = run_cli("export", "--untrained", "--width", "0.125", "--fc-width", "32", "--input-size", "64", "96",
                  "-o", out)
    assert res.returncode == 0, res.stderr
    res = run_cli("model-info", out)
    assert res.returncode == 0 and '"input_height": 64' in res.stdout
    res = run_cli("export", "--untrained", "--input-size", "60", "96", "-o", out)
    assert res.returncode == 2 and "multiple of 32" in res.stderr
