"""Dense-CRF refinement: it moves a blurred boundary onto a colour edge.

It runs on real frames through the pipeline, the CLI and the evaluator, and without the ``crf`` extra fails with the
install command.
"""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_road_seg.pipeline import RoadSegmenter
from fcn_road_seg.refine import CRF_INSTALL_HINT, CrfConfig, DenseCrfRefiner

ROOT = Path(__file__).resolve().parent.parent
try:
    import pydensecrf.densecrf  # noqa: F401
    HAVE_CRF = True
except ImportError:
    HAVE_CRF = False
needs_crf = pytest.mark.skipif(not HAVE_CRF, reason=f"pydensecrf2 is not installed ({CRF_INSTALL_HINT})")


def run_cli(*args, block_crf: bool = False):
    """Run the CLI in a fresh interpreter; ``block_crf`` makes ``import pydensecrf`` fail there, as if not installed."""
    code = ("import sys\n" + ("sys.modules['pydensecrf'] = None  # import pydensecrf now raises ImportError\n"
                              if block_crf else "") +
            "from fcn_road_seg.cli import main\nsys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def edge_scene(textured: bool, edge: int = 100, shift: int = 12, blur: float = 6.0):
    """Make a 120x200 frame and a road probability that is a blurred step (a coarse FCN boundary).

    The frame's colour changes at column ``edge`` (or does not, ``textured=False``); the step is centred ``shift``
    columns right of the edge.
    """
    rng = np.random.default_rng(0)
    frame = np.full((120, 200, 3), (90, 90, 90), np.float32)  # grey road on the left
    if textured:
        frame[:, edge:] = (40, 140, 60)  # green verge on the right
    frame = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
    x = np.arange(200, dtype=np.float32)
    probability = np.tile(1.0 / (1.0 + np.exp((x - (edge + shift)) / blur)), (120, 1)).astype(np.float32)
    return frame, probability


def boundary_error(probability: np.ndarray, edge: int = 100) -> float:
    """Mean over rows of |road pixels in the row (at p >= 0.5) - edge|: the boundary's distance from the edge."""
    return float(np.abs((probability >= 0.5).sum(axis=1) - edge).mean())


def test_config_refuses_values_the_crf_cannot_use():
    for bad in ({"gaussian_sxy": 0}, {"bilateral_srgb": -1}, {"bilateral_compat": -0.5}, {"iterations": 0},
                {"iterations": 2.5}):
        with pytest.raises(ValueError, match="CRF"):
            CrfConfig(**bad)


@needs_crf
def test_crf_moves_a_blurred_boundary_onto_the_colour_edge():
    frame, probability = edge_scene(textured=True)
    refined = DenseCrfRefiner()(frame, probability)
    assert refined.dtype == np.float32 and refined.shape == probability.shape
    assert 0.0 <= refined.min() and refined.max() <= 1.0
    before, after = boundary_error(probability), boundary_error(refined)
    assert before >= 11.0  # the network's boundary is 12 columns off
    assert after <= 2.0, (before, after)  # the CRF puts it on the colour edge
    # Without a colour edge the same probability is not pulled there: the edge is what moved it.
    flat_frame, _ = edge_scene(textured=False)
    assert boundary_error(DenseCrfRefiner()(flat_frame, probability)) >= 8.0


@needs_crf
def test_segment_with_crf_on_a_real_kitti_frame(kitti_images):
    frame = cv2.imread(str(kitti_images[0]))
    with RoadSegmenter(backend="onnxruntime") as plain, \
            RoadSegmenter(backend="onnxruntime", refine=CrfConfig(iterations=3)) as crf:
        a, b = plain.segment(frame), crf.segment(frame, overlay_alpha=0.5)
    assert "refine" not in a.timings_ms and b.timings_ms["refine"] > 0
    assert b.probability.shape == frame.shape[:2] and b.probability.dtype == np.float32
    assert 0.0 <= b.probability.min() and b.probability.max() <= 1.0
    np.testing.assert_array_equal(b.mask, np.where(b.probability >= crf.threshold, 255, 0).astype(np.uint8))
    changed = np.mean(a.mask != b.mask)
    assert 0.0 < changed < 0.2  # the CRF edits the mask, near boundaries only
    assert b.overlay.shape == frame.shape


@needs_crf
def test_cli_infer_and_evaluate_with_crf_on_real_frames(tmp_path, kitti_images, shared_data):
    res = run_cli("infer", kitti_images[0], "--out", tmp_path / "infer", "--refine", "crf", "--crf-iterations", "2")
    assert res.returncode == 0, res.stderr
    assert "refine" in res.stdout and (tmp_path / "infer" / f"{kitti_images[0].stem}_mask.png").is_file()
    res = run_cli("evaluate", shared_data / "kitti_road", "--out", tmp_path / "eval", "--refine", "crf",
                  "--crf-bilateral-srgb", "5")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["backend"]["refine"]["crf"]["bilateral_srgb"] == 5.0
    assert report["latency_ms"]["refine"]["p50"] > 0 and report["frames"]["evaluated"] == 2


def test_without_the_extra_the_cli_names_it_and_exits_2(tmp_path, kitti_images):
    res = run_cli("infer", kitti_images[0], "--out", tmp_path / "crf", "--refine", "crf", block_crf=True)
    assert res.returncode == 2
    assert CRF_INSTALL_HINT in res.stderr and "pydensecrf2" in res.stderr and "Traceback" not in res.stderr
    assert not list((tmp_path / "crf").glob("*.png"))
    # The normal path never needs the extra.
    res = run_cli("infer", kitti_images[0], "--out", tmp_path / "plain", block_crf=True)
    assert res.returncode == 0, res.stderr


def test_crf_flags_need_refine_crf_and_valid_values(tmp_path, kitti_images):
    res = run_cli("infer", kitti_images[0], "--out", tmp_path, "--crf-iterations", "3")
    assert res.returncode == 2 and "--refine crf" in res.stderr
    res = run_cli("evaluate", kitti_images[0].parents[1], "--out", tmp_path, "--refine", "crf", "--crf-iterations", "0")
    assert res.returncode == 2 and "iterations must be a whole number >= 1" in res.stderr


@needs_crf
def test_crf_bench_times_the_crf_inside_segment_on_the_kitti_frame():
    from bench.crf import measure_latency, search_configs

    lat = measure_latency(None, iterations=1, warmup=0)
    json.dumps(lat)
    assert lat["frame"].endswith("1242x375")
    assert "refine" not in lat["segment_without_crf"] and lat["crf_alone"]["n"] == 1
    assert lat["segment_with_crf"]["total"]["p50"] >= lat["crf_alone"]["p50"] > 0
    configs = search_configs()
    assert CrfConfig() in configs and len(set(configs)) == len(configs) == 12
