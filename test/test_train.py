"""The training loop on a tiny FCN and real CamVid frames: learning, resume, export with metrics, bad input."""
from __future__ import annotations

import argparse
import csv
import shutil

import pytest
import torch

from fcn_road_seg import cli
from fcn_road_seg.contract import read_onnx_contract
from fcn_road_seg.training.samples import IGNORE
from fcn_road_seg.errors import ModelError
from fcn_road_seg.training.export import load_checkpoint
from fcn_road_seg.training.model import FCN, FCNConfig
from fcn_road_seg.training.train import build_datasets
from fcn_road_seg.training.train import main as train_main
from fcn_road_seg.training.train import road_loss
from fcn_road_seg.training.args import add_train_args


@pytest.fixture()
def two_frames(shared_data, tmp_path):
    """Make a class-index dataset of two real CamVid frames, used for both training and validation."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    names = (shared_data / "camvid" / "train.txt").read_text().split()[100:102]
    for n in names:
        shutil.copy(shared_data / "camvid" / "images" / n, root / "images")
        shutil.copy(shared_data / "camvid" / "labels" / n, root / "labels")
    (root / "train.txt").write_text("\n".join(names) + "\n")
    return root


def _args(data, out, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    return parser.parse_args([
        "--data", str(data), "--val-split", "train.txt", "--out", str(out), "--input-size", "96", "128",
        "--width", "0.125", "--fc-width", "32", "--encoder", "vgg16_bn", "--dropout", "0", "--batch-size", "2",
        "--workers", "0", "--scale", "1", "1", "--aspect", "1", "1", "--hflip", "0", "--jitter", "0", *extra,
    ])


def _losses(run) -> list[float]:
    with (run / "log.csv").open() as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f)]


def test_overfits_two_frames_and_exports_metrics(two_frames, tmp_path, caplog):
    run = tmp_path / "run"
    onnx_path = train_main(_args(two_frames, run, "--epochs", "15", "--lr", "1e-2", "--warmup-epochs", "0",
                                 "--val-every", "15"))
    assert "2 of 2 validation frames are also training frames" in caplog.text
    losses = _losses(run)
    assert len(losses) == 15 and losses[-1] < 0.5 * losses[0]
    best = load_checkpoint(run / "best.pt")
    assert best["metrics"]["MaxF"] > 0.9  # memorised the two frames it validates on
    assert best["split"] == {"train": best["split"]["val"], "val": best["split"]["val"]}
    contract = read_onnx_contract(onnx_path)
    assert contract.metrics == best["metrics"]
    assert (contract.input_height, contract.input_width) == (96, 128)
    assert contract.width_mult == 0.125 and "train.txt (2 frames" in contract.training_data
    assert (run / "split.json").is_file() and any((run / "tensorboard").iterdir())


def test_resume_reproduces_an_uninterrupted_run(two_frames, tmp_path):
    common = ("--epochs", "2", "--no-export", "--scale", "0.75", "1.25", "--hflip", "0.5", "--dropout", "0.3")
    train_main(_args(two_frames, tmp_path / "straight", *common, "--save-every", "1"))
    # Resume from the snapshot after epoch 1 as if the run had been stopped there.
    train_main(_args(two_frames, tmp_path / "split", *common, "--resume", str(tmp_path / "straight" / "epoch1.pt")))
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 1
    for key, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][key], rtol=0, atol=0, msg=key)
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert a["scheduler"] == b["scheduler"]


def test_init_fine_tunes_a_trained_checkpoint(two_frames, tmp_path, capsys):
    common = ("--epochs", "1", "--no-export")
    train_main(_args(two_frames, tmp_path / "first", *common, "--lr", "1e-2", "--warmup-epochs", "0"))
    first = load_checkpoint(tmp_path / "first" / "last.pt")
    # With a zero learning rate the fine-tuned weights are exactly the checkpoint's: --init loaded all of them,
    # and the run starts its own epoch count, optimiser and schedule.
    train_main(_args(two_frames, tmp_path / "tuned", *common, "--lr", "0", "--init",
                     str(tmp_path / "first" / "last.pt")))
    tuned = load_checkpoint(tmp_path / "tuned" / "last.pt")
    assert tuned["epoch"] == 0 and tuned["args"]["init"] == str(tmp_path / "first" / "last.pt")
    params = {name for name, _ in FCN(FCNConfig.from_dict(first["config"])).named_parameters()}
    for name in params:
        torch.testing.assert_close(tuned["model"][name], first["model"][name], rtol=0, atol=0, msg=name)
    with pytest.raises(ModelError, match="holds a FCN-8s head over a VGG16-BN .*--encoder vgg16_bn"):
        train_main(_args(two_frames, tmp_path / "other", *common, "--encoder", "vgg16",
                         "--init", str(tmp_path / "first" / "last.pt")))
    assert cli.main(["train", "--data", str(two_frames), "--out", str(tmp_path / "both"), "--init",
                     str(tmp_path / "first" / "last.pt"), "--resume", str(tmp_path / "first" / "last.pt")]) == 2
    assert "drop --resume" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(two_frames), "--out", str(tmp_path / "none"), "--init",
                     str(tmp_path / "nowhere.pt")]) == 2
    assert "--init " + str(tmp_path / "nowhere.pt") + " not found" in capsys.readouterr().err


def test_loss_ignores_pixels():
    logits = torch.randn(1, 2, 4, 4)
    target = torch.ones(1, 4, 4, dtype=torch.long)
    partly = target.clone()
    partly[0, :2] = IGNORE
    logits_changed = logits.clone()
    logits_changed[0, :, :2] = 100.0  # changing ignored pixels must not change the loss
    assert torch.isclose(road_loss(logits, partly), road_loss(logits_changed, partly))
    assert road_loss(logits, torch.full_like(target, IGNORE)).item() == 0.0


def test_cli_reports_bad_data(tmp_path, capsys):
    assert cli.main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "train.txt").write_text("")
    assert cli.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # failed before training started


def test_kitti_layout_is_detected_and_split(shared_data, tmp_path):
    args = _args(shared_data / "kitti_road", tmp_path / "run", "--val-fraction", "0.5", "--input-size", "96", "320")
    train_set, val_set, desc = build_datasets(args)
    assert train_set.datasets[0].spec.kind == "kitti" and len(train_set) == len(val_set) == 1
    assert {s.name for s in train_set.samples + val_set.samples} == {"um_000000.png", "um_000001.png"}
    x, y = train_set[0]
    assert x.shape == (3, 96, 320) and "KITTI road" in desc
    _, y_val = val_set[0]
    assert y_val.shape == (375, 1242)  # validation scores the full-resolution label


@pytest.fixture()
def kitti_mix(shared_data, tmp_path):
    """Split lists for a few real KITTI road and KITTI semantics frames (train) and one KITTI road frame (val)."""
    lists = {"road_train.txt": "um_000000\numm_000000\n", "road_val.txt": "uu_000000\n",
             "sem_train.txt": "000000_10\n000001_10\n"}
    for name, text in lists.items():
        (tmp_path / name).write_text(text)
    road, sem = shared_data / "kitti_road_train", shared_data / "kitti_semantics"
    return ["--data", str(road), str(tmp_path / "road_train.txt"), "--data", str(sem), str(tmp_path / "sem_train.txt"),
            "--val-data", str(road), str(tmp_path / "road_val.txt")]


ENCODER_RUNS = {
    "vgg16": ("--width", "0.125", "--fc-width", "32"),
    "vgg16_bn": ("--width", "0.125", "--fc-width", "32"),
    "efficientnet-lite0": ("--pretrained", "imagenet", "--freeze-early"),
    "efficientnet-lite1": ("--pretrained", "imagenet"),
    "efficientnet-lite2": ("--pretrained", "imagenet"),
}


@pytest.mark.parametrize("encoder", ENCODER_RUNS)
def test_a_step_per_encoder_on_mixed_kitti_sets(encoder, kitti_mix, tmp_path):
    run = tmp_path / "run"
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    args = parser.parse_args([*kitti_mix, "--encoder", encoder, *ENCODER_RUNS[encoder], "--out", str(run),
                              "--input-size", "64", "192", "--batch-size", "2", "--max-steps", "1", "--epochs", "1",
                              "--workers", "0", "--no-export", "--lr", "1e-3"])
    train_main(args)
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["config"]["encoder"] == encoder
    assert ckpt["split"]["train"] == ["um_000000.jpg", "umm_000000.jpg", "000000_10.jpg", "000001_10.jpg"]
    assert ckpt["split"]["val"] == ["uu_000000.jpg"]
    assert "KITTI road" in ckpt["training_data"] and "KITTI semantics" in ckpt["training_data"]
    assert 0.0 < _losses(run)[0] < 1.0 and 0.0 <= ckpt["metrics"]["MaxF"] <= 1.0
    assert torch.count_nonzero(ckpt["model"]["score_fr.weight"]) > 0  # the steps trained the zero-initialised head
    if encoder.startswith("efficientnet"):
        assert ckpt["normalization"]["mean"][0] == pytest.approx(127 / 255)


def test_torchrun_two_cpu_ranks_stay_in_step(kitti_mix, tmp_path):
    """`torchrun --standalone --nproc_per_node 2` on the CPU (gloo): a few steps on real frames.

    Both ranks report identical weights and the same mean loss after the epoch, and only rank 0 writes checkpoints.
    """
    import os
    import subprocess
    import sys

    from conftest import ROOT

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fcn_road_seg.cli", "train", *kitti_mix, "--encoder", "efficientnet-lite0", "--pretrained",
           "imagenet", "--input-size", "64", "192", "--batch-size", "1", "--max-steps", "2", "--epochs", "1",
           "--workers", "0", "--threads", "1", "--no-export", "--out", str(run)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if "in step with rank 0" in line]
    assert len(lines) == 2 and {line.split(" of 2 ")[0][-6:] for line in lines} == {"rank 0", "rank 1"}
    assert len({line.rsplit("mean over ranks", 1)[1] for line in lines}) == 1
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "last.pt"]
    assert len(_losses(run)) == 1
    assert load_checkpoint(run / "last.pt")["epoch"] == 0
