import numpy as np
import pytest

from fcn_road_seg.contract import ModelContract
from fcn_road_seg.evaluation.metrics import RoadMetrics, mask_threshold, quantize_probability
from fcn_road_seg.pipeline import RoadSegmenter

from recording_backend import RecordingBackend


def devkit_reference(frames, threshold=0.5):
    """Brute force, as the KITTI devkit's evalExp + pxEval_maximizeFMeasure: every threshold, every pixel."""
    thres = np.arange(256) / 255.0
    tp, fp, fn, tn = (np.zeros(256) for _ in range(4))
    for prob, road, valid in frames:
        p = quantize_probability(prob).astype(np.float64) / 255.0
        for i, t in enumerate(thres):
            pred = p >= t
            tp[i] += np.sum(pred & road & valid)
            fp[i] += np.sum(pred & ~road & valid)
            fn[i] += np.sum(~pred & road & valid)
            tn[i] += np.sum(~pred & ~road & valid)
    recall = tp / (tp + fn)
    precision = tp / (tp + fp + 1e-10)
    keep = ~((recall == 0) & (precision == 0))
    r, pr = recall[keep], precision[keep]
    ap = np.mean([pr[r >= lv].max() for lv in np.arange(0, 1.1, 0.1)])
    f = 2 * pr * r / (pr + r + 1e-10)
    b = np.argmax(f)
    i = np.flatnonzero(keep)[b]
    k = int(np.ceil(threshold * 255))
    return dict(MaxF=f[b], AP=ap, PRE=pr[b], REC=r[b], FPR=fp[i] / (fp[i] + tn[i]), FNR=fn[i] / (fn[i] + tp[i]),
                IoU=tp[k] / (tp[k] + fp[k] + fn[k]))


def test_matches_brute_force_devkit_reference():
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        road = rng.random((30, 40)) < 0.4
        prob = np.clip(road * 0.35 + rng.random((30, 40)) * 0.65, 0, 1).astype(np.float32)
        valid = rng.random((30, 40)) > 0.1
        frames.append((prob, road, valid))
    metrics = RoadMetrics(threshold=0.5)
    for f in frames:
        metrics.update(*f)
    got = metrics.compute().as_dict()
    want = devkit_reference(frames)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert got["frames"] == 4 and got["pixels"] == sum(int(v.sum()) for _, _, v in frames)


def test_hand_computed_case():
    # 4 road pixels (prob 1.0, 1.0, 0.6, 0.2) and 4 non-road (0.8, 0.0, 0.0, 0.0); one ignored pixel.
    prob = np.array([[1.0, 1.0, 0.6, 0.2, 0.8, 0.0, 0.0, 0.0, 1.0]], np.float32)
    road = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 0]], bool)
    valid = np.array([[1, 1, 1, 1, 1, 1, 1, 1, 0]], bool)
    metrics = RoadMetrics(threshold=0.5)
    metrics.update(prob, road, valid)
    s = metrics.compute()
    # Best F: threshold in (0, 0.2]: TP 4, FP 1 (the 0.8), FN 0 -> P 0.8, R 1, F 8/9; ties keep the lowest.
    assert s.MaxF == pytest.approx(8 / 9) and s.PRE == pytest.approx(0.8) and s.REC == pytest.approx(1.0)
    assert s.FPR == pytest.approx(0.25) and s.FNR == pytest.approx(0.0)
    assert s.threshold_maxf == pytest.approx(1 / 255)
    assert s.IoU == pytest.approx(3 / 5)  # at 0.5: TP 3, FP 1, FN 1
    # 11-point AP: recall 0..0.5 reach precision 1.0 (threshold above 0.8); 0.6..1.0 reach 0.8.
    assert s.AP == pytest.approx((6 * 1.0 + 5 * 0.8) / 11)


def test_perfect_prediction_and_uint8_input():
    road = np.zeros((10, 10), bool)
    road[5:] = True
    metrics = RoadMetrics()
    metrics.update(np.where(road, 255, 0).astype(np.uint8), road)
    s = metrics.compute()
    assert s.MaxF == pytest.approx(1.0) and s.AP == pytest.approx(1.0) and s.IoU == pytest.approx(1.0)
    assert s.FPR == 0 and s.FNR == 0


def test_streaming_equals_one_big_batch_and_merge():
    rng = np.random.default_rng(1)
    probs = rng.random((6, 20, 20)).astype(np.float32)
    roads = rng.random((6, 20, 20)) < 0.5
    one, two, a, b = RoadMetrics(), RoadMetrics(), RoadMetrics(), RoadMetrics()
    for p, r in zip(probs, roads):
        one.update(p, r)
    two.update(probs.reshape(-1, 20), roads.reshape(-1, 20))
    for k, (p, r) in enumerate(zip(probs, roads)):
        (a if k % 2 else b).update(p, r)
    a.merge(b)
    assert one.compute().MaxF == two.compute().MaxF == a.compute().MaxF
    assert one.pos_hist.nbytes == 256 * 8  # constant memory


def test_errors():
    with pytest.raises(ValueError, match="same size"):
        RoadMetrics().update(np.zeros((2, 2)), np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="no valid road pixels"):
        m = RoadMetrics()
        m.update(np.zeros((2, 2)), np.zeros((2, 2), bool))
        m.compute()
    with pytest.raises(ValueError, match="threshold"):
        RoadMetrics(threshold=1.5)


def _probabilities_around_every_threshold() -> np.ndarray:
    """float32 probabilities at, and 1-2 float32 steps either side of, every (i - 0.5)/255 and i/255."""
    points = np.concatenate([(np.arange(256) - 0.5) / 255, np.arange(256) / 255]).astype(np.float32)
    near = [points]
    for direction in (0.0, 1.0):
        step = points
        for _ in range(2):
            step = np.nextafter(step, np.float32(direction))
            near.append(step)
    return np.unique(np.clip(np.concatenate(near), 0, 1)).astype(np.float32)


def test_mask_threshold_gives_the_pipeline_exactly_the_devkit_s_mask():
    """For every quantised threshold i/255, the pipeline's mask at mask_threshold(i/255) is exactly q >= i.

    q is the devkit's 8-bit probability; this holds also for probabilities on the rounding ties. The devkit's 1.0
    becomes < 1.
    """
    probs = _probabilities_around_every_threshold()
    assert probs.size <= 32 * 320
    net = np.resize(probs, (32, 320))  # frame = network size: no resampling
    contract = ModelContract(input_height=32, input_width=320)
    frame = np.full((32, 320, 3), 90, np.uint8)
    q = quantize_probability(net).astype(int)
    with RoadSegmenter(backend=RecordingBackend(contract, net)) as seg:
        for i in range(1, 256):
            seg.threshold = mask_threshold(i / 255)
            result = seg.segment(frame)
            np.testing.assert_array_equal(result.probability, net)
            np.testing.assert_array_equal(result.mask == 255, q >= i, err_msg=f"threshold {i}/255")
    assert mask_threshold(1.0) == mask_threshold(255 / 255) < 1 and mask_threshold(0.0) == mask_threshold(1 / 255)
    assert mask_threshold(0.5) == 0.5  # 127.5/255: the tie rounds to 128, which is even


@pytest.mark.parametrize("i", [1, 77, 128, 200, 254])
def test_devkit_counts_a_probability_of_exactly_i_over_255_at_threshold_i_over_255(i):
    """A pixel predicts road at threshold i/255 when its probability is i/255 (q >= i), not one step below."""
    exact, below = np.float32(i / 255), np.nextafter(np.float32((i - 0.5) / 255), np.float32(0))
    metrics = RoadMetrics(threshold=i / 255)
    metrics.update(np.array([[exact, below, exact, below]], np.float32), np.array([[1, 1, 0, 0]], bool))
    tp, fp, fn, tn = metrics.counts()
    assert (tp[i], fn[i], fp[i], tn[i]) == (1, 1, 1, 1)  # the pixels at i/255 count as road, those below not
    assert (tp[i + 1], fp[i + 1]) == (0, 0)
    assert metrics.compute().IoU == pytest.approx(1 / 3)  # at the configured threshold i/255: TP 1, FP 1, FN 1
