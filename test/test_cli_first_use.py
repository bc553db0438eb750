"""What a new user trips over on the command line (issue 14).

Every case runs the real CLI as a subprocess on real frames/bags and checks the exit status, the message (the fix in the
user's words, no traceback) and what is left on disk.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fcn_road_seg.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "kitti_um_000000.jpg"


def run_cli(*args, cwd=None):
    res = subprocess.run([sys.executable, "-m", "fcn_road_seg.cli", *map(str, args)], capture_output=True, text=True,
                         cwd=cwd, timeout=600)
    assert "Traceback" not in res.stderr, res.stderr
    return res


@pytest.fixture(scope="module")
def kitti_bag(tmp_path_factory, shared_data):
    from fcn_road_seg.evaluation.bag import write_dataset_bag
    from fcn_road_seg.evaluation.groundtruth import FolderSource

    out = tmp_path_factory.mktemp("bags") / "kitti"
    write_dataset_bag(FolderSource(shared_data / "kitti_road" / "training", "kitti"), out)
    return out


def test_gt_topic_of_the_wrong_type_is_named_before_the_model_loads(kitti_bag, tmp_path):
    res = run_cli("evaluate", kitti_bag, "--image-topic", "/camera/image_raw", "--gt-topic", "/camera/camera_info",
                  "--model", tmp_path / "nope.onnx", "--out", tmp_path / "r")
    assert res.returncode == 2
    assert "--gt-topic /camera/camera_info carries sensor_msgs/msg/CameraInfo, not sensor_msgs/msg/Image" in res.stderr
    assert "/camera/road_gt [sensor_msgs/msg/Image]" in res.stderr  # the topics that would do
    res = run_cli("evaluate", kitti_bag, "--model", tmp_path / "nope.onnx", "--out", tmp_path / "r")
    assert res.returncode == 2 and "needs --image-topic" in res.stderr  # bag without topics: before the model
    assert not (tmp_path / "r").exists()


def test_inputs_with_the_same_name_are_refused_before_anything_is_written(tmp_path, tiny_onnx):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        shutil.copy(SAMPLE, tmp_path / d / "frame.jpg")
    res = run_cli("infer", tmp_path / "d1", tmp_path / "d2", "--model", tiny_onnx, "--out", tmp_path / "out")
    assert res.returncode == 2
    assert f"{tmp_path / 'd1' / 'frame.jpg'} and {tmp_path / 'd2' / 'frame.jpg'} -> frame_mask.png" in res.stderr
    shutil.copy(SAMPLE, tmp_path / "d1" / "frame.png")  # x.jpg + x.png in one folder
    res = run_cli("infer", tmp_path / "d1", "--model", tiny_onnx, "--out", tmp_path / "out")
    assert res.returncode == 2 and "frame.jpg and" in res.stderr
    assert not (tmp_path / "out").exists()
    res = run_cli("infer", SAMPLE, SAMPLE, "--model", tiny_onnx, "--out", tmp_path / "out")  # the same file twice
    assert res.returncode == 0 and "1 frame segmented, 0 failed" in res.stdout


def test_out_naming_a_file_and_failed_runs_leave_nothing(tmp_path, tiny_onnx, shared_data):
    file = tmp_path / "taken"
    file.write_text("")
    res = run_cli("infer", SAMPLE, "--model", tiny_onnx, "--out", file)
    assert res.returncode == 2 and f"--out {file} is a file; give a folder" in res.stderr
    res = run_cli("evaluate", shared_data / "kitti_road" / "training", "--model", tiny_onnx, "--out", file)
    assert res.returncode == 2 and f"--out {file} is a file" in res.stderr
    for bad in (["--model", tmp_path / "nope.onnx"], ["--model", tiny_onnx, "--threshold", "1.5"]):
        res = run_cli("infer", SAMPLE, *bad, "--out", tmp_path / "new" / "out")
        assert res.returncode == 2
        assert not (tmp_path / "new").exists()  # created only once inputs and model are fine
    # the threshold is checked before the model loads
    res = run_cli("infer", SAMPLE, "--model", tmp_path / "nope.onnx", "--threshold", "1.0", "--out", tmp_path / "o")
    assert res.returncode == 2 and "--threshold must lie in (0, 1), got 1.0" in res.stderr


def test_hints_name_the_fix_in_the_user_s_vocabulary(tmp_path, kitti_bag, tiny_onnx):
    res = run_cli("model-info", tmp_path / "nope.onnx")
    assert res.returncode == 2 and "model file not found" in res.stderr and "--model" not in res.stderr
    existing = tmp_path / "bag_out"
    existing.mkdir()
    res = run_cli("evaluate", kitti_bag, "--image-topic", "/camera/image_raw", "--gt-topic", "/camera/road_gt",
                  "--model", tiny_onnx, "--out", tmp_path / "r", "--write-bag", existing)
    assert res.returncode == 2 and f"--write-bag {existing} exists already" in res.stderr and " -o" not in res.stderr
    res = run_cli("demo", "--rate", "0", "--out", tmp_path / "demo")
    assert res.returncode == 2 and "--rate must lie in [0.1, 1000] frames per second, got 0" in res.stderr
    assert "DemoConfig" not in res.stderr
    res = run_cli("train", "--data", tmp_path, "--resume", tmp_path / "nope.pt", "--out", tmp_path / "run")
    assert res.returncode == 2 and f"--resume {tmp_path / 'nope.pt'} not found" in res.stderr
    assert "Errno" not in res.stderr


def test_export_of_an_onnx_file_says_it_needs_a_checkpoint(tiny_onnx, tmp_path):
    pytest.importorskip("torch", reason="export needs PyTorch (the 'train' extra)")
    res = run_cli("export", tiny_onnx, "-o", tmp_path / "x.onnx")
    assert res.returncode == 2
    assert "is an exported model, not a training checkpoint" in res.stderr and "RUN/best.pt" in res.stderr
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"\x00not a checkpoint\xff")
    res = run_cli("export", fake, "-o", tmp_path / "x.onnx")
    assert res.returncode == 2 and "is not a readable PyTorch checkpoint" in res.stderr and "RUN/best.pt" in res.stderr


def test_export_prints_other_libraries_chatter_only_with_verbose(tmp_path):
    pytest.importorskip("torch", reason="export needs PyTorch (the 'train' extra)")
    args = ["export", "--untrained", "--width", "0.125", "--fc-width", "32", "--input-size", "64", "96"]
    quiet = run_cli(*args, "-o", tmp_path / "q.onnx")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.splitlines() == [f"INFO fcn_road_seg.training.export: exporting fcn8s at 64x96 (opset 17) to "
                                         f"{tmp_path / 'q.onnx'}"]
    loud = run_cli("--verbose", *args, "-o", tmp_path / "v.onnx")
    assert loud.returncode == 0, loud.stderr
    assert "onnx_ir" in loud.stderr or "onnxscript" in loud.stderr
    import onnx

    assert onnx.load(str(tmp_path / "q.onnx")).opset_import[0].version == 17


def test_help_shows_the_defaults():
    """Every flag's --help shows its default (what docs/training.md promises for `train --help`)."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    shown = 0
    for name, sub in subparsers.choices.items():
        text = re.sub(r"\s+", " ", sub.format_help())
        for action in sub._actions:
            default = action.default
            if (not action.option_strings or default in (None, argparse.SUPPRESS) or isinstance(default, bool)
                    or action.help is None):
                continue
            if "default" in action.help:
                continue  # the help text already says what the default is
            value = " ".join(map(str, default)) if isinstance(default, list) else str(default)
            assert f"(default: {value})" in text, (name, action.dest)
            shown += 1
    assert shown > 40
    train = re.sub(r"\s+", " ", subparsers.choices["train"].format_help())
    assert "--epochs EPOCHS training epochs (default: 100)" in train
    assert "(default: 384 1248)" in train
    assert "--rate RATE frames per second the folder is published at (default: 2.0)" in re.sub(
        r"\s+", " ", subparsers.choices["demo"].format_help())


def test_the_advised_threshold_is_accepted_and_gives_the_maxf_point(tmp_path, shared_data, shipped_model):
    """The report's best threshold becomes a --threshold the pipeline accepts.

    That threshold is the devkit's i/255 (1.000 for the shipped model on KITTI), and a mask at it is exactly the MaxF
    operating point.
    """
    kitti = shared_data / "kitti_road" / "training"
    res = run_cli("evaluate", kitti, "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    advised = re.search(r"MaxF point: probability >= ([0-9.]+)", res.stdout).group(1)
    assert 0 < float(advised) < 1
    assert f"probability >= {advised}" in (tmp_path / "r" / "report.md").read_text()
    res = run_cli("evaluate", kitti, "--threshold", advised, "--out", tmp_path / "t")
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "t" / "report.json").read_text())["metrics"]
    assert m["threshold"] == float(advised)
    assert m["IoU"] == pytest.approx(1 / (1 / m["PRE"] + 1 / m["REC"] - 1), rel=1e-9)  # IoU at the MaxF point
    res = run_cli("infer", kitti / "image_2", "--threshold", advised, "--out", tmp_path / "masks")
    assert res.returncode == 0 and "2 frames segmented" in res.stdout


def test_summaries_label_units_and_count_in_words(tmp_path, tiny_onnx, shared_data):
    res = run_cli("infer", SAMPLE, "--model", tiny_onnx, "--out", tmp_path / "o")
    assert "1 frame segmented, 0 failed" in res.stdout and "at 320x96 (W x H)" in res.stdout
    res = run_cli("model-info", tiny_onnx)
    assert '"metrics_split": "validation"' in res.stdout  # the contract's metrics are validation metrics
    assert "at 96x320 (W x H; input 96x320" not in res.stdout and "(W x H; input 320x96" in res.stdout
    one = tmp_path / "one"
    (one / "image_2").mkdir(parents=True)
    (one / "gt_image_2").mkdir()
    shutil.copy(shared_data / "kitti_road" / "training" / "image_2" / "um_000000.png", one / "image_2")
    shutil.copy(shared_data / "kitti_road" / "training" / "gt_image_2" / "um_road_000000.png", one / "gt_image_2")
    res = run_cli("evaluate", one, "--model", tiny_onnx, "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    assert re.search(r"^1 frame \(0 skipped.*MaxF [0-9.]+ %  AP [0-9.]+ %", res.stdout, re.M), res.stdout
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["metrics_unit"].startswith("fraction") and 0 < report["metrics"]["MaxF"] <= 1
    assert "1 frame evaluated" in (tmp_path / "r" / "report.md").read_text()


def test_demo_summary_counts_in_words():
    from fcn_road_seg.ros.demo import DemoReport

    report = DemoReport(published=1, segmented=1, dropped=0, bad_frames=0, wall_s=1.0, rate_hz=1.0,
                        latency_ms={"p50": 1.0, "p95": 1.0}, end_to_end_ms={"p50": 1.0, "p95": 1.0},
                        backend="onnxruntime (cpu)", model="m.onnx", saved=[Path("a_overlay.png")])
    assert "1 frame segmented" in report.summary() and "1 overlay saved" in report.summary()
