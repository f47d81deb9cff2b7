"""Scale/shift fitting of relative inverse depth to sparse metric depth."""
import numpy as np
import pytest
import torch

from dpt_perception.inference.metric_depth import (
    FixedScaleShift,
    ScaleShiftFitter,
    depth_from_inverse,
    sparse_depth_points,
)

SCALE, SHIFT = 2.5e-4, 0.05  # inverse metres per model unit, inverse metres


def scene(seed=0, h=60, w=80, scale=SCALE, shift=SHIFT):
    """A relative inverse-depth map (model units, in the thousands like MiDaS) and its true depth."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    inv = (500.0 + 3000.0 * yy / h + 300.0 * np.sin(xx / 7.0) + rng.normal(0, 5, (h, w))).astype(np.float32)
    return inv, 1.0 / (scale * inv + shift)


def sparse_from(depth, rng, fraction=0.05, noise=0.01, outliers=0.2, upscale=2):
    """Sparse metric depth at `upscale` x the prediction size (nearest), with noise and outliers."""
    big = np.repeat(np.repeat(depth, upscale, 0), upscale, 1)
    keep = rng.random(big.shape) < fraction
    sparse = np.zeros(big.shape, np.float32)
    values = big[keep] * (1 + rng.normal(0, noise, keep.sum()))
    bad = rng.random(values.size) < outliers
    values[bad] = rng.uniform(0.3, 30.0, bad.sum())
    sparse[keep] = values
    return sparse


def test_recovers_known_scale_and_shift_with_noise_and_outliers():
    inv, depth = scene()
    rng = np.random.default_rng(1)
    fitter = ScaleShiftFitter(ema=1.0, seed=0)
    result = fitter.update(inv, sparse_from(depth, rng))
    assert result.accepted, result.reason
    assert fitter.scale == pytest.approx(SCALE, rel=0.03)
    assert fitter.shift == pytest.approx(SHIFT, rel=0.1, abs=0.01)
    assert 0.6 < result.inlier_ratio < 0.95  # ~20% outliers
    assert result.residual < 0.03
    metric = fitter.to_metric(inv)
    assert np.median(np.abs(metric - depth) / depth) < 0.03


def test_uint16_millimetres_input():
    inv, depth = scene(seed=2)
    rng = np.random.default_rng(3)
    sparse_m = sparse_from(depth, rng, outliers=0.0)
    sparse_mm = np.round(sparse_m * 1000).astype(np.uint16)
    result = ScaleShiftFitter(ema=1.0).update(inv, sparse_mm)
    assert result.accepted and result.frame_scale == pytest.approx(SCALE, rel=0.03)


def test_sparse_points_map_to_the_prediction_grid():
    sparse = np.zeros((4, 6), np.float32)
    sparse[3, 5] = 2.0
    sparse[0, 0] = np.nan
    rows, cols, d, n = sparse_depth_points(sparse, (2, 3))
    assert rows.tolist() == [1] and cols.tolist() == [2] and d.tolist() == [2.0] and n == 1
    mm = np.zeros((4, 6), np.uint16)
    mm[1, 2], mm[2, 4], mm[3, 0] = 1500, 30, 9000  # 30 mm and 9 m fall outside [0.05, 8] m
    rows, cols, d, n = sparse_depth_points(mm, (4, 6), min_depth=0.05, max_depth=8.0)
    assert (rows.tolist(), cols.tolist(), d.tolist(), n) == ([1], [2], [1.5], 1)
    dense = np.ones((50, 60), np.float32)
    rows, cols, d, n = sparse_depth_points(dense, (50, 60), max_points=100, rng=np.random.default_rng(0))
    assert n == 3000 and rows.size == 100 and len(set(zip(rows.tolist(), cols.tolist()))) == 100
    with pytest.raises(ValueError, match="uint16 millimetres or float metres"):
        sparse_depth_points(np.zeros((4, 4), np.int32), (4, 4))


def test_too_few_points_and_outlier_frames_are_rejected():
    inv, depth = scene()
    fitter = ScaleShiftFitter(min_points=50, ema=1.0, max_jump=0.3, reset_after=3)
    few = np.zeros_like(depth)
    few[0, :10] = depth[0, :10]
    result = fitter.update(inv, few)
    assert not result.accepted and "too few valid points (10 < 50)" in result.reason
    assert fitter.scale is None
    with pytest.raises(RuntimeError, match="no scale/shift yet"):
        fitter.to_metric(inv)

    rng = np.random.default_rng(4)
    assert fitter.update(inv, sparse_from(depth, rng, outliers=0.0)).accepted
    good_scale = fitter.scale
    _, far = scene(scale=2 * SCALE, shift=2 * SHIFT)  # everything suddenly half as far
    for _ in range(2):
        result = fitter.update(inv, sparse_from(far, rng, outliers=0.0))
        assert not result.accepted and "outlier frame" in result.reason
        assert fitter.scale == good_scale
    result = fitter.update(inv, sparse_from(far, rng, outliers=0.0))  # persists: a real change
    assert result.accepted and "re-initialised" in result.reason
    assert fitter.scale == pytest.approx(2 * SCALE, rel=0.03)


def test_low_inlier_ratio_rejects_the_frame():
    inv, depth = scene()
    rng = np.random.default_rng(5)
    result = ScaleShiftFitter(min_inlier_ratio=0.5).update(inv, sparse_from(depth, rng, outliers=0.8))
    assert not result.accepted and "inlier ratio" in result.reason


def test_ema_smooths_small_changes():
    inv, depth = scene()
    rng = np.random.default_rng(6)
    fitter = ScaleShiftFitter(ema=0.5, max_jump=0.5)
    fitter.update(inv, sparse_from(depth, rng, outliers=0.0, noise=0.0))
    s0 = fitter.scale
    _, depth2 = scene(scale=1.2 * SCALE)
    result = fitter.update(inv, sparse_from(depth2, rng, outliers=0.0, noise=0.0))
    assert result.accepted and result.reason == "updated"
    assert fitter.scale == pytest.approx(0.5 * s0 + 0.5 * result.frame_scale, rel=1e-9)
    assert s0 < fitter.scale < result.frame_scale


def test_depth_from_inverse_numpy_and_torch():
    inv = np.array([0.0, 1.0, 10.0, -1e9], np.float32)
    out = depth_from_inverse(inv, 0.5, 0.1)
    expected = 1.0 / np.maximum(0.5 * inv.astype(np.float64) + 0.1, 1e-8)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32
    t = depth_from_inverse(torch.from_numpy(inv), 0.5, 0.1)
    np.testing.assert_allclose(t.numpy(), expected, rtol=1e-6)


def test_fixed_mode_and_validation():
    fixed = FixedScaleShift(0.000305, 0.1378)  # the NYU fine-tune's pair
    r = fixed.update()
    assert r.accepted and (r.scale, r.shift) == (0.000305, 0.1378)
    np.testing.assert_allclose(fixed.to_metric(np.array([1000.0])), [1.0 / (0.305 + 0.1378)], rtol=1e-6)
    with pytest.raises(ValueError, match="scale must be positive"):
        FixedScaleShift(0.0, 1.0)
    with pytest.raises(ValueError, match="min_points"):
        ScaleShiftFitter(min_points=1)
