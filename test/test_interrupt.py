"""Ctrl-C and missing extras on the real command line (issue 22, items 3 and 4).

SIGINT is sent to a real ``fcn-road-seg`` subprocess once it has started working (its first output is on disk); it must
print one line ("interrupted after N of M frames"), exit 130, show no traceback and leave no bag that looks complete. A
bag whose writer was killed outright is refused by ``evaluate``, naming it.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "fcn_road_seg.cli"]


@pytest.fixture(scope="module")
def kitti_train(shared_data) -> Path:
    root = shared_data / "kitti_road_train" / "training"
    if not (root / "image_2").is_dir():
        pytest.skip(f"{root} not found (the 231-frame KITTI training set in ../shared/data)")
    return root


def start(*args, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"exited {proc.returncode} before it got going: {proc.communicate()}"
        assert time.monotonic() < deadline, "no progress on disk in time"
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen, signum: int = signal.SIGINT) -> tuple[int, str, str]:
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def assert_one_interrupt_line(err: str, total: int, unit: str = "frames") -> int:
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(rf"interrupted after (\d+) of {total} {unit}", last)
    assert match, last
    return int(match.group(1))


def bag_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in (".db3", ".yaml", ".mcap"))


def test_ctrl_c_in_infer_stops_with_one_line_and_exit_130(tmp_path, kitti_train):
    out = tmp_path / "masks"
    proc = start("infer", kitti_train / "image_2", "--backend", "onnxruntime", "--out", out)  # the shipped model
    wait_for(proc, lambda: any(out.glob("*_overlay.png")))
    code, stdout, err = interrupt(proc)
    assert code == 130
    done = assert_one_interrupt_line(err, 231)
    assert done < 231 and "segmented" not in stdout  # no success summary
    assert len(list(out.glob("*_overlay.png"))) in (done, done + 1)  # whole files only, no temporary ones
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_ctrl_c_in_bag_from_kitti_leaves_no_bag(tmp_path, kitti_train):
    bag = tmp_path / "bag"
    proc = start("bag", "from-kitti", kitti_train, "-o", bag)
    db = tmp_path / "bag.partial" / "bag" / "bag.db3"
    wait_for(proc, lambda: db.is_file() and db.stat().st_size > 6_000_000)  # 2 frames or more written (1.9 MB each)
    code, _, err = interrupt(proc)
    assert code == 130
    assert 1 <= assert_one_interrupt_line(err, 231) < 231
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_ctrl_c_in_evaluate_leaves_no_write_bag_and_no_report(tmp_path, kitti_train):
    out, bag = tmp_path / "report", tmp_path / "out_bag"
    proc = start("evaluate", kitti_train, "--backend", "onnxruntime", "--out", out, "--write-bag", bag)
    db = tmp_path / "out_bag.partial" / "out_bag" / "out_bag.db3"
    wait_for(proc, lambda: db.is_file() and db.stat().st_size > 9_000_000)  # 2 frames or more (4 images, 2.9 MB)
    code, _, err = interrupt(proc)
    assert code == 130
    assert 1 <= assert_one_interrupt_line(err, 231) < 231
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither the bag nor a report folder


def test_a_bag_whose_writer_was_killed_is_refused_and_rewritten(tmp_path, kitti_train, shared_data):
    bag = tmp_path / "bag"
    proc = start("bag", "from-kitti", kitti_train, "-o", bag)
    db = tmp_path / "bag.partial" / "bag" / "bag.db3"
    wait_for(proc, lambda: db.is_file() and db.stat().st_size > 2_000_000)
    code, _, _ = interrupt(proc, signal.SIGKILL)  # no chance to clean up: what a crash or power cut leaves
    assert code == -signal.SIGKILL and bag_files(tmp_path) == ["bag.partial/bag/bag.db3"]
    for given in (tmp_path / "bag.partial", tmp_path / "bag.partial" / "bag"):
        res = subprocess.run([*CLI, "evaluate", given, "--image-topic", "/camera/image_raw", "--gt-topic",
                              "/camera/road_gt", "--model", tmp_path / "nope.onnx", "--out", tmp_path / "r"],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert f"error: {given} is an unfinished bag ({tmp_path / 'bag.partial'} is where an interrupted or " \
               "failed run was writing); write the bag again" in res.stderr
    moved = tmp_path / "copied_bag"  # the same storage without its metadata under another name
    (tmp_path / "bag.partial" / "bag").rename(moved)
    res = subprocess.run([*CLI, "evaluate", moved, "--image-topic", "/camera/image_raw",
                          "--gt-topic", "/camera/road_gt", "--model", tmp_path / "nope.onnx", "--out", tmp_path / "r"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and f"{moved} has no metadata.yaml: its writer did not finish" in res.stderr
    moved.rename(tmp_path / "bag.partial" / "bag")

    res = subprocess.run([*CLI, "bag", "from-kitti", shared_data / "kitti_road" / "training", "-o", bag],
                         capture_output=True, text=True, timeout=300)  # the stale .partial is replaced
    assert res.returncode == 0, res.stderr
    assert bag_files(tmp_path) == ["bag/bag.db3", "bag/metadata.yaml"]


def test_ctrl_c_in_the_demo_prints_its_summary_so_far(tmp_path):
    pytest.importorskip("rclpy", reason="the demo needs rclpy (scripts/setup_env.sh)")
    out = tmp_path / "demo"
    proc = start("demo", "--backend", "onnxruntime", "--out", out, "--frames", "200", "--rate", "5")
    wait_for(proc, lambda: any(out.glob("*_overlay.png")))
    code, stdout, err = interrupt(proc)
    assert code == 130
    saved = assert_one_interrupt_line(err, 200)
    assert re.search(r"^\d+ frames? segmented in [0-9.]+ s", stdout, re.M) and f"overlays -> {out}" in stdout
    assert 1 <= saved < 200


def test_ctrl_c_in_train_keeps_whole_checkpoints_and_log(tmp_path, shared_data):
    torch = pytest.importorskip("torch", reason="train needs PyTorch (the 'train' extra)")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    names = (shared_data / "camvid" / "train.txt").read_text().split()[100:102]
    for n in names:
        for sub in ("images", "labels"):
            (data / sub / n).write_bytes((shared_data / "camvid" / sub / n).read_bytes())
    (data / "train.txt").write_text("\n".join(names) + "\n")
    run = tmp_path / "run"
    proc = start("train", "--data", data, "--out", run, "--epochs", "500", "--input-size", "96", "128", "--width",
                 "0.125", "--fc-width", "32", "--encoder", "vgg16_bn", "--batch-size", "2", "--workers", "0",
                 "--val-split", "train.txt", "--val-every", "1")
    log = run / "log.csv"
    wait_for(proc, lambda: log.is_file() and len(log.read_text().splitlines()) >= 3)  # 2 epochs logged
    code, _, err = interrupt(proc)
    assert code == 130
    epochs = assert_one_interrupt_line(err, 500, "epochs")
    assert 1 <= epochs < 500
    rows = log.read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) - 1 in (epochs, epochs + 1)  # whole lines only
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] + 1 in (epochs, epochs + 1)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("command", [["train", "--data", "DATA", "--out", "RUN"],
                                     ["export", "--untrained", "--input-size", "64", "64", "-o", "m.onnx"],
                                     ["model-info"]])
def test_commands_that_need_pytorch_say_so_without_it(tmp_path, command):
    shim = tmp_path / "no_torch"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None  # import torch -> ImportError\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), *filter(None, [os.environ.get("PYTHONPATH")])])}
    (tmp_path / "DATA").mkdir()
    args = [str(tmp_path / a) if a in ("DATA", "RUN", "m.onnx") else a for a in command]
    res = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == "error: this command needs PyTorch: pip install 'fcn_road_seg[train]'"
    assert not (tmp_path / "RUN").exists() and not (tmp_path / "m.onnx").exists()


def test_ctrl_c_on_the_evaluator_node_logs_without_rosout_errors(tmp_path):
    pytest.importorskip("rclpy", reason="the evaluator node needs rclpy (scripts/setup_env.sh)")
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "fcn_road_seg.ros.evaluator_node", "--ros-args", "-p",
                                 f"out:={tmp_path / 'report'}"], stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        wait_for(proc, lambda: "pairing /road_segmentation/probability" in log.read_text(), timeout=60)
        time.sleep(1.0)  # logged at the end of its constructor: now it spins
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    err = log.read_text()
    assert "no report written: no frame was evaluated" in err  # logged on exit, after Ctrl-C
    assert "Failed to publish log message to rosout" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_truncated_bag_is_refused_naming_it(tmp_path, shared_data, storage):
    bag = tmp_path / "bag"
    res = subprocess.run([*CLI, "bag", "from-kitti", shared_data / "kitti_road" / "training", "-o", bag, "--storage",
                          storage], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (data,) = [p for p in bag.iterdir() if p.suffix in (".db3", ".mcap")]
    os.truncate(data, data.stat().st_size // 2)  # a copy cut short, metadata.yaml intact
    res = subprocess.run([*CLI, "evaluate", bag, "--image-topic", "/camera/image_raw", "--gt-topic", "/camera/road_gt",
                          "--model", tmp_path / "nope.onnx", "--out", tmp_path / "r"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"error: cannot open {bag} as a rosbag2 bag (" in res.stderr and not (tmp_path / "r").exists()
