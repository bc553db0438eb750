"""Model files a user gets wrong (issue 22, items 10, 13, 15).

One check says what the file is and what was expected (folder, empty file, text or Git LFS pointer, a checkpoint where a
model belongs and the reverse) for every command and the node; paths are checked before any model loads; re-exported
metrics say their size.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import pytest

from fcn_road_seg import cli
from fcn_road_seg.contract import check_model_file, read_onnx_contract
from fcn_road_seg.errors import ModelError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "kitti_um_000000.jpg"
FIX = "the fix"


@pytest.fixture()
def bad_models(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    (folder / "inner.onnx").write_bytes(b"")
    files = {"folder": folder, "empty": tmp_path / "empty.onnx", "text": tmp_path / "notes.onnx",
             "lfs": tmp_path / "lfs.onnx", "blank": tmp_path / "blank.plan"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("model goes here\nsecond line\n")
    files["lfs"].write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 4096\n")
    files["blank"].write_text("\n \n")
    return files


EXPECTED = {
    "folder": "is a folder (it holds inner.onnx), not an ONNX model",
    "empty": "is empty (0 bytes), not an ONNX model",
    "text": "is a text file (it starts 'model goes here'), not an ONNX model",
    "lfs": "a Git LFS pointer: run `git lfs pull`), not an ONNX model",
    "blank": "is a text file of blank lines, not a TensorRT plan",
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_one_check_names_what_the_file_is(bad_models, kind):
    path = bad_models[kind]
    with pytest.raises(ModelError) as err:
        check_model_file(path, "plan" if path.suffix == ".plan" else "onnx", FIX)
    message = str(err.value)
    assert message.startswith(f"{path} ") and EXPECTED[kind] in message and message.endswith(FIX)
    with pytest.raises(ModelError, match=f"model file not found: {path.parent / 'nope.onnx'}; {FIX}"):
        check_model_file(path.parent / "nope.onnx", "onnx", FIX)


def test_checkpoints_and_models_are_told_apart(tmp_path, tiny_onnx, tiny_net):
    torch = pytest.importorskip("torch", reason="a real checkpoint needs PyTorch (the 'train' extra)")
    ckpt = tmp_path / "best.pt"
    torch.save({"model": tiny_net.state_dict(), "config": asdict(tiny_net.config)}, ckpt)
    as_onnx = tmp_path / "best.onnx"
    as_onnx.write_bytes(ckpt.read_bytes())  # a checkpoint renamed .onnx
    with pytest.raises(ModelError, match=f"{as_onnx} is a PyTorch checkpoint, not an ONNX model; export it first"):
        check_model_file(as_onnx, "onnx", FIX)
    renamed = tmp_path / "model.pt"
    renamed.write_bytes(tiny_onnx.read_bytes())  # an ONNX model renamed .pt
    with pytest.raises(ModelError, match=f"{renamed} is an exported model, not a training checkpoint; {FIX}"):
        check_model_file(renamed, "checkpoint", FIX)
    assert check_model_file(ckpt, "checkpoint", FIX) == ckpt
    assert check_model_file(tiny_onnx, "onnx", FIX) == tiny_onnx


def _run(capsys, *argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, err


def test_every_command_says_what_the_model_file_is(capsys, tmp_path, bad_models, shared_data):
    pytest.importorskip("torch", reason="export needs PyTorch (the 'train' extra)")
    for kind, path in bad_models.items():
        if kind == "blank":
            continue
        for argv in (["infer", SAMPLE, "--model", path, "--out", tmp_path / "o"],
                     ["infer", SAMPLE, "--model", path, "--backend", "onnxruntime", "--out", tmp_path / "o"],
                     ["evaluate", shared_data / "kitti_road", "--model", path, "--out", tmp_path / "r"],
                     ["model-info", path], ["check-trt", path], ["build-engine", path, "-o", tmp_path / "e.plan"]):
            code, err = _run(capsys, *argv)
            assert code == 2 and EXPECTED[kind] in err, (argv, err)
        code, err = _run(capsys, "export", path, "-o", tmp_path / "x.onnx")
        assert code == 2 and EXPECTED[kind].replace("an ONNX model", "a training checkpoint (.pt)") in err, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists() and not (tmp_path / "x.onnx").exists()


def test_the_node_says_what_the_model_file_is(harness, bad_models):
    from rclpy.parameter import Parameter

    from fcn_road_seg.ros.node import RoadSegmentationNode

    with pytest.raises(ModelError, match=r"cannot open the road model \(.*is empty \(0 bytes\), not an ONNX model"):
        RoadSegmentationNode(context=harness.context, parameter_overrides=[
            Parameter("model", value=str(bad_models["empty"]))])


def test_paths_are_checked_before_the_model_loads(capsys, tmp_path, bad_models, tiny_onnx):
    # the model is bad too: the message about the path proves the path was looked at first
    code, err = _run(capsys, "demo", "--images", tmp_path / "nonexistent", "--model", bad_models["text"],
                     "--out", tmp_path / "demo")
    assert code == 2 and f"--images: input not found: {tmp_path / 'nonexistent'}" in err
    (tmp_path / "empty_dir").mkdir()
    code, err = _run(capsys, "demo", "--images", tmp_path / "empty_dir", "--model", bad_models["text"],
                     "--out", tmp_path / "demo")
    assert code == 2 and f"--images: no images (.png/.jpg/.jpeg/.bmp) in {tmp_path / 'empty_dir'}" in err
    assert not (tmp_path / "demo").exists()
    # build-engine: the ONNX file is checked before TensorRT is looked for (not installed here)
    code, err = _run(capsys, "build-engine", tmp_path / "missing.onnx", "-o", tmp_path / "e.plan")
    assert code == 2 and f"model file not found: {tmp_path / 'missing.onnx'}" in err and "TensorRT" not in err
    code, err = _run(capsys, "build-engine", tiny_onnx, "-o", tmp_path / "e.plan", "--int8", "--calib", tmp_path / "no")
    assert code == 2 and f"calibration folder not found: {tmp_path / 'no'}" in err and "TensorRT" not in err


def test_reexport_at_another_size_drops_the_old_metrics_and_labels_the_kept_ones(tmp_path, tiny_net, caplog,
                                                                                 shared_data):
    torch = pytest.importorskip("torch", reason="export needs PyTorch (the 'train' extra)")
    from fcn_road_seg.training.export import export_checkpoint

    metrics = {"MaxF": 0.9, "AP": 0.8, "threshold_maxf": 0.4}
    torch.save({"model": tiny_net.state_dict(), "config": asdict(tiny_net.config), "input_size": [64, 96],
                "training_data": "unit test", "metrics": metrics}, tmp_path / "c.pt")
    same = read_onnx_contract(export_checkpoint(tmp_path / "c.pt", tmp_path / "same.onnx"))
    assert same.metrics == metrics and same.metrics_input_size == [64, 96]
    with caplog.at_level(logging.INFO, logger="fcn_road_seg"):
        other = read_onnx_contract(export_checkpoint(tmp_path / "c.pt", tmp_path / "other.onnx", input_size=(96, 128),
                                                     calibrate_on=(shared_data / "kitti_road", None)))
    assert (other.input_height, other.input_width) == (96, 128) and other.calibration["temperature"] > 0
    assert other.metrics == {} and other.metrics_input_size == []
    assert "measured at 64x96) are not copied into this 96x128 export" in caplog.text
