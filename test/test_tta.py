"""Test-time horizontal flip (RoadSegmenter tta="flip", `--tta flip`): what the backend sees, what comes back."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fcn_road_seg import cli
from fcn_road_seg.backends import open_backend
from fcn_road_seg.pipeline import RoadSegmenter


class RecordingBackend:
    """The real ONNX Runtime backend, keeping a copy of every batch it is given."""

    def __init__(self, model) -> None:
        self.inner = open_backend(model, "onnxruntime")
        self.batches: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        return self.inner.infer(batch)


@pytest.fixture(scope="module")
def kitti_frame(kitti_images):
    return cv2.imread(str(kitti_images[0]))


def test_flip_averages_the_frame_and_its_mirror_mirrored_back(tiny_onnx, kitti_frame):
    backend = RecordingBackend(tiny_onnx)
    seg = RoadSegmenter(backend=backend, tta="flip")
    result = seg.segment(kitti_frame)
    assert len(backend.batches) == 2
    batch, mirrored = backend.batches
    np.testing.assert_array_equal(mirrored, batch[:, :, ::-1])  # the backend saw the frame, then its mirror
    p = backend.inner.infer(batch)[0]
    q = backend.inner.infer(mirrored)[0]
    assert np.abs(p - q[:, ::-1]).max() > 1e-3  # the random model is not mirror-symmetric: the average matters
    h, w = kitti_frame.shape[:2]
    expected = cv2.resize((p + q[:, ::-1]) / 2, (w, h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(result.probability, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(result.mask == 255, result.probability >= seg.threshold)

    seg.tta = "none"  # switched off (the node's live parameter): one inference, the plain probability
    backend.batches.clear()
    plain = seg.segment(kitti_frame).probability
    assert len(backend.batches) == 1
    np.testing.assert_allclose(plain, cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="tta must be one of none, flip, got 'mirror'"):
        seg.tta = "mirror"
    with pytest.raises(ValueError, match="tta must be one of"):
        RoadSegmenter(tiny_onnx, backend="onnxruntime", tta="hflip")


def test_flip_makes_the_shipped_model_mirror_equivariant_on_a_kitti_frame(kitti_frame):
    mirror = np.ascontiguousarray(kitti_frame[:, ::-1])
    gaps = {}
    for tta in ("none", "flip"):
        with RoadSegmenter(backend="onnxruntime", tta=tta) as seg:
            a = seg.segment(kitti_frame).probability
            b = seg.segment(mirror).probability[:, ::-1]
        gaps[tta] = np.abs(a - b).max()
    # Without TTA the network answers a mirrored street differently (up to ~0.4 at road borders); with it,
    # the answer for the mirror is the mirror of the answer (to float rounding).
    assert gaps["none"] > 0.05 and gaps["flip"] < 1e-3, gaps


def test_cli_infer_and_evaluate_take_tta_flip(tmp_path, tiny_onnx, kitti_images, shared_data, capsys):
    frame_path = kitti_images[0]
    assert cli.main(["infer", "--model", str(tiny_onnx), str(frame_path), "--out", str(tmp_path / "i"),
                     "--tta", "flip", "--threshold", "0.57"]) == 0
    mask = cv2.imread(str(tmp_path / "i" / f"{frame_path.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    with RoadSegmenter(tiny_onnx, backend="onnxruntime", threshold=0.57) as seg:
        plain = seg.segment(cv2.imread(str(frame_path))).mask
        seg.tta = "flip"
        flipped = seg.segment(cv2.imread(str(frame_path))).mask
    assert (mask == flipped).mean() > 0.999 and (mask != plain).any()

    assert cli.main(["evaluate", str(shared_data / "kitti_road"), "--model", str(tiny_onnx), "--out",
                     str(tmp_path / "e"), "--tta", "flip"]) == 0
    assert json.loads((tmp_path / "e" / "report.json").read_text())["backend"]["tta"] == "flip"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate", str(shared_data / "kitti_road"), "--out", str(tmp_path / "x"), "--tta", "mirror"])
    assert exit_.value.code == 2 and "invalid choice: 'mirror'" in capsys.readouterr().err
