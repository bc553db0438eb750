from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_road_seg.backends import open_backend
from fcn_road_seg.contract import ModelContract
from fcn_road_seg.errors import BackendUnavailableError, ContractError, InputImageError, ModelError
from fcn_road_seg.pipeline import RoadSegmenter, overlay

from recording_backend import RecordingBackend


def test_mask_at_frame_size_with_binary_values(segmenter, kitti_images, camvid_images):
    for path in kitti_images + camvid_images:
        frame = cv2.imread(str(path))
        result = segmenter.segment(frame, color_order="bgr")
        assert result.mask.shape == frame.shape[:2] == result.probability.shape
        assert result.mask.dtype == np.uint8 and set(np.unique(result.mask)) <= {0, 255}
        np.testing.assert_array_equal(result.mask == 255, result.probability >= segmenter.threshold)
        assert result.overlay is None and set(result.timings_ms) == {"pre", "infer", "post"}


def test_declared_channel_order_is_honoured(segmenter, kitti_images):
    bgr = cv2.imread(str(kitti_images[0]))
    a = segmenter.segment(bgr, color_order="bgr").probability
    b = segmenter.segment(np.ascontiguousarray(bgr[..., ::-1]), color_order="rgb").probability
    np.testing.assert_array_equal(a, b)
    c = segmenter.segment(bgr, color_order="rgb").probability  # lying about the order changes the answer
    assert np.abs(a - c).max() > 1e-3


def test_overlay_tints_only_the_mask(segmenter, camvid_images):
    frame = cv2.imread(str(camvid_images[0]))
    result = segmenter.segment(frame, overlay_alpha=0.5)
    assert result.overlay.shape == frame.shape and "overlay" in result.timings_ms
    off = result.mask == 0
    np.testing.assert_array_equal(result.overlay[off], frame[off])
    manual = overlay(frame, np.full(frame.shape[:2], 255, np.uint8), alpha=1.0)
    assert (manual == (0, 255, 0)).all()


def test_threshold_from_contract_and_validated(tiny_onnx):
    seg = RoadSegmenter(tiny_onnx, backend="onnxruntime")
    assert seg.threshold == seg.contract.default_threshold == 0.5
    for bad in (0.0, 1.0, -1, 2):
        with pytest.raises(ValueError, match="threshold"):
            seg.threshold = bad


@pytest.mark.parametrize("frame,match", [
    (np.zeros((375, 1242), np.uint8), "HxWx3"),
    (np.zeros((375, 1242, 4), np.uint8), "BGRA2BGR"),
    (np.zeros((375, 1242, 3), np.float32), "uint8"),
    (np.zeros((20, 60, 3), np.uint8), "too small"),
    (np.zeros((40, 40, 3), np.uint8), "too small"),
])
def test_bad_frames_are_refused_with_the_fix(segmenter, frame, match):
    with pytest.raises(InputImageError, match=match):
        segmenter.segment(frame)


def test_bad_models(tmp_path, tiny_onnx):
    with pytest.raises(ModelError, match="not found"):
        RoadSegmenter(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="TensorRT plan"):
        plan = tmp_path / "m.plan"
        plan.write_bytes(b"x")
        open_backend(plan, "onnxruntime")
    with pytest.raises(BackendUnavailableError, match="choose one of"):
        open_backend(tiny_onnx, "tflite")
    bad = tmp_path / "text.onnx"
    bad.write_text("hello")
    with pytest.raises(ModelError):
        RoadSegmenter(bad, backend="onnxruntime")
    assert not issubclass(ContractError, InputImageError)


def test_overlay_blends_exactly_the_masked_pixels(camvid_images):
    frame = cv2.imread(str(camvid_images[1]))
    mask = np.zeros(frame.shape[:2], np.uint8)
    mask[::3] = 255
    mask[:, :40] = 0
    out = overlay(frame, mask, alpha=0.3)
    on = mask > 0
    expected = np.clip(np.rint(frame * 0.7 + np.array((0, 255, 0)) * 0.3), 0, 255)
    assert np.abs(out[on].astype(int) - expected[on]).max() <= 1
    np.testing.assert_array_equal(out[~on], frame[~on])


def test_mask_follows_a_threshold_inside_the_probability_range(tiny_onnx, kitti_images):
    seg = RoadSegmenter(tiny_onnx, backend="onnxruntime")
    frame = cv2.imread(str(kitti_images[0]))
    seg.threshold = float(np.median(seg.segment(frame).probability))
    result = seg.segment(frame)
    np.testing.assert_array_equal(result.mask == 255, result.probability >= np.float32(seg.threshold))
    assert 0.3 < (result.mask == 255).mean() < 0.7


def test_onnxruntime_threads_do_not_spin_unless_asked(tiny_onnx):
    from fcn_road_seg.backends.onnxruntime import OnnxRuntimeBackend

    for spin, expected in ((False, "0"), (True, "1")):
        backend = OnnxRuntimeBackend(tiny_onnx, device="cpu", threads=1, spin_wait=spin)
        options = backend.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected
        assert options.intra_op_num_threads == 1
        backend.close()


@pytest.mark.parametrize("threshold", [0.5, 0.625, 0.3125])
def test_a_probability_exactly_at_the_threshold_is_road_and_just_below_is_not(threshold):
    """The mask is probability >= threshold.

    A backend answering exactly the threshold (float32-representable) marks every pixel road; the next float32 below
    marks none.
    """
    assert float(np.float32(threshold)) == threshold
    frame = cv2.imread(str(Path(__file__).resolve().parent.parent / "samples" / "kitti_um_000000.jpg"))
    contract = ModelContract(input_height=96, input_width=320)
    for probability, road in ((threshold, True), (np.nextafter(np.float32(threshold), np.float32(0)), False)):
        with RoadSegmenter(backend=RecordingBackend(contract, probability), threshold=threshold) as seg:
            result = seg.segment(frame)
        assert (result.probability == np.float32(probability)).all()  # the resize back keeps the constant
        assert (result.mask == (255 if road else 0)).all(), (probability, threshold)


def test_one_segmenter_shared_by_threads_gives_each_frame_its_own_mask(segmenter, kitti_images, camvid_images):
    """The batch buffer and the backend's output serve one frame at a time: no thread gets another's mask."""
    from concurrent.futures import ThreadPoolExecutor

    frames = [cv2.imread(str(p)) for p in (kitti_images[:3] + camvid_images[:3])]
    expected = [segmenter.segment(f).probability for f in frames]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(4):
            got = list(pool.map(lambda f: segmenter.segment(f).probability, frames * 3))
            for i, probability in enumerate(got):
                np.testing.assert_array_equal(probability, expected[i % len(frames)])
