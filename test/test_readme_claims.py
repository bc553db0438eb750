"""The README's claims about errors and exit codes, each run (issue 22, item 18).

Arguments, inputs, split lists and data folders are checked before any model loads (every case below also passes a bad
model: the message proves which was looked at first), `--out` appears only after that, and the CRF numbers the README
quotes are the model card's.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fcn_road_seg import cli

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "kitti_um_000000.jpg"


def _run(capsys, *argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, err


@pytest.fixture()
def bad_model(tmp_path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_text("not a model\n")
    return path


def test_inputs_are_checked_before_the_model_loads(capsys, tmp_path, bad_model, shared_data):
    out = tmp_path / "out"
    code, err = _run(capsys, "infer", tmp_path / "missing.png", "--model", bad_model, "--out", out)
    assert code == 2 and f"input not found: {tmp_path / 'missing.png'}" in err
    code, err = _run(capsys, "evaluate", tmp_path / "missing", "--model", bad_model, "--out", out)
    assert code == 2 and f"{tmp_path / 'missing'} not found; give a KITTI/class-index folder or a rosbag2 bag" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, err = _run(capsys, "evaluate", shared_data / "kitti_road", "--split", empty, "--model", bad_model,
                     "--out", out)
    assert code == 2 and f"split file {empty} is empty" in err
    code, err = _run(capsys, "check-trt", bad_model, "--images", tmp_path / "missing_frames")
    assert code == 2 and f"input not found: {tmp_path / 'missing_frames'}" in err
    assert not out.exists()


def test_export_checks_the_calibration_folder_before_the_checkpoint(capsys, tmp_path, bad_model):
    pytest.importorskip("torch", reason="export needs PyTorch (the 'train' extra)")
    code, err = _run(capsys, "export", bad_model, "--calibrate", tmp_path / "no_val", "-o", tmp_path / "m.onnx")
    assert code == 2 and f"--calibrate {tmp_path / 'no_val'} is not a folder" in err
    assert not (tmp_path / "m.onnx").exists()


def test_demo_with_a_bad_model_creates_no_out_folder(capsys, tmp_path, bad_model):
    pytest.importorskip("rclpy", reason="the demo needs rclpy")
    code, err = _run(capsys, "demo", "--model", bad_model, "--out", tmp_path / "demo")
    assert code == 2 and "cannot open the road model" in err and "is a text file" in err
    assert not (tmp_path / "demo").exists()


def test_the_readme_quotes_the_model_card_s_crf_numbers():
    card = (ROOT / "docs" / "model_card.md").read_text()
    readme = " ".join((ROOT / "README.md").read_text().split())
    rows = {(data, refine): [float(v) for v in values.split(" | ")]
            for data, refine, values in re.findall(r"^\| (KITTI road val|CamVid test) \| (none|crf \(defaults\)) \| "
                                                   r"([\d. |]+?) \|$", card, re.M)}
    kitti = rows[("KITTI road val", "crf (defaults)")][0] - rows[("KITTI road val", "none")][0]
    camvid = rows[("CamVid test", "crf (defaults)")][0] - rows[("CamVid test", "none")][0]
    kitti_ap = rows[("KITTI road val", "crf (defaults)")][1] - rows[("KITTI road val", "none")][1]
    camvid_ap = rows[("CamVid test", "crf (defaults)")][1] - rows[("CamVid test", "none")][1]
    p50 = re.search(r"the CRF alone p50 \*\*(\d+) ms\*\*", " ".join(card.split())).group(1)
    assert (f"moved MaxF by {kitti:+.2f} on the KITTI validation split (parameters searched there; AP "
            f"{kitti_ap:+.1f}) and {camvid:+.2f} on CamVid test (AP {camvid_ap:+.2f})") in readme
    assert f"p50 {p50} ms;" in readme and f"about **{int(p50) / 1000:.1f} s per 1242x375 frame**" in readme
