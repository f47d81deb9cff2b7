"""Metrics against independent numpy computations on hand-made cases."""

import math

import numpy as np
import pytest
import torch

from dpt_perception.training.alignment import fit_scale_shift
from dpt_perception.training.metrics import ConfusionMatrix, DepthMetrics, depth_errors, finite_or_none


def numpy_depth_metrics(pred, gt, mask):
    p, g = pred[mask].astype(np.float64), gt[mask].astype(np.float64)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": np.mean(np.abs(p - g) / g),
        "sq_rel": np.mean((p - g) ** 2 / g),
        "rmse": np.sqrt(np.mean((p - g) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)),
        "delta1": np.mean(ratio < 1.25),
        "delta2": np.mean(ratio < 1.25**2),
        "delta3": np.mean(ratio < 1.25**3),
    }


def random_depth(rng, shape=(2, 12, 16)):
    return rng.uniform(0.5, 20.0, size=shape).astype(np.float32)


def test_perfect_relative_prediction_scores_perfectly():
    rng = np.random.default_rng(0)
    gt = random_depth(rng)
    metrics = DepthMetrics("relative", max_depth=100.0)
    metrics.update(torch.from_numpy(1.0 / gt), torch.from_numpy(gt), torch.ones(gt.shape, dtype=torch.bool))
    out = metrics.compute()
    assert out["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert out["rmse"] == pytest.approx(0.0, abs=1e-5)
    assert out["delta1"] == 1.0 and out["num_images"] == 2


def test_fit_scale_shift_recovers_known_affine_map_like_numpy_lstsq():
    rng = np.random.default_rng(1)
    target = rng.uniform(0.05, 2.0, size=(3, 8, 9))
    mask = rng.uniform(size=target.shape) > 0.3
    scales, shifts = np.array([2.0, 0.5, 7.0]), np.array([-0.3, 0.1, 4.0])
    pred = (target - shifts[:, None, None]) / scales[:, None, None]
    pred = pred + np.where(mask, 0.0, rng.normal(size=pred.shape))  # garbage outside the mask
    s, t = fit_scale_shift(torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(mask))
    np.testing.assert_allclose(s.numpy(), scales, rtol=1e-8)
    np.testing.assert_allclose(t.numpy(), shifts, rtol=1e-8, atol=1e-10)
    # Noisy case: same answer as numpy's least squares.
    noisy = pred + rng.normal(scale=0.05, size=pred.shape)
    s, t = fit_scale_shift(torch.from_numpy(noisy), torch.from_numpy(target), torch.from_numpy(mask))
    for b in range(3):
        A = np.stack([noisy[b][mask[b]], np.ones(mask[b].sum())], axis=1)
        (ref_s, ref_t), *_ = np.linalg.lstsq(A, target[b][mask[b]], rcond=None)
        assert s[b].item() == pytest.approx(ref_s, rel=1e-8) and t[b].item() == pytest.approx(ref_t, rel=1e-7)


def test_relative_metrics_are_invariant_to_scale_and_shift_of_inverse_depth():
    rng = np.random.default_rng(2)
    gt = random_depth(rng)
    mask = torch.ones(gt.shape, dtype=torch.bool)
    metrics = DepthMetrics("relative", max_depth=100.0)
    metrics.update(torch.from_numpy(3.0 * (1.0 / gt) + 0.25), torch.from_numpy(gt), mask)
    assert metrics.compute()["abs_rel"] == pytest.approx(0.0, abs=1e-6)


def test_relative_metrics_match_numpy_alignment_then_formulas():
    rng = np.random.default_rng(3)
    gt = random_depth(rng)
    valid = rng.uniform(size=gt.shape) > 0.2
    pred = 1.0 / gt * rng.uniform(0.7, 1.3, size=gt.shape)
    metrics = DepthMetrics("relative", min_depth=1.0, max_depth=15.0)
    metrics.update(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(valid))
    out = metrics.compute()
    per_image = []
    for b in range(gt.shape[0]):
        m = valid[b] & (gt[b] >= 1.0) & (gt[b] <= 15.0)
        A = np.stack([pred[b][m], np.ones(m.sum())], axis=1)
        (s, t), *_ = np.linalg.lstsq(A, 1.0 / gt[b][m].astype(np.float64), rcond=None)
        aligned = np.maximum(s * pred[b] + t, 1.0 / 15.0)
        per_image.append(numpy_depth_metrics(1.0 / aligned, gt[b], m))
    for key in per_image[0]:
        assert out[key] == pytest.approx(np.mean([r[key] for r in per_image]), rel=1e-6), key


def test_metric_mode_uses_model_scale_shift_without_alignment_and_caps():
    gt = np.array([[[1.0, 2.0, 4.5, 50.0]]], dtype=np.float32)
    valid = np.array([[[True, True, True, True]]])
    raw = np.array([[[1.0, 0.5, 0.1, 0.001]]], dtype=np.float32)
    scale, shift = 2.0, 0.0  # depth = 1 / (2 * raw): 0.5, 1.0, 5.0, 500 -> capped at max 10
    metrics = DepthMetrics("metric", min_depth=0.5, max_depth=10.0, depth_scale=scale, depth_shift=shift)
    metrics.update(torch.from_numpy(raw), torch.from_numpy(gt), torch.from_numpy(valid))
    out = metrics.compute()
    # gt 50 is outside [0.5, 10] so it is ignored.
    p = np.array([0.5, 1.0, 5.0])
    g = np.array([1.0, 2.0, 4.5])
    ref = numpy_depth_metrics(p, g, np.ones(3, bool))
    for key, value in ref.items():
        assert out[key] == pytest.approx(value, rel=1e-6), key


def test_depth_errors_skip_images_without_valid_pixels():
    gt = torch.ones(2, 4, 4) * 2
    valid = torch.zeros(2, 4, 4, dtype=torch.bool)
    valid[0, 1, 1] = True
    errors = depth_errors(gt * 1.5, gt, valid)
    assert errors["abs_rel"][0].item() == pytest.approx(0.5)
    assert math.isnan(errors["abs_rel"][1].item())
    metrics = DepthMetrics("metric", max_depth=10)
    metrics.update(1.0 / (gt * 1.5), gt, valid)
    assert metrics.num_images == 1


def test_confusion_matrix_known_case_iou_and_absent_class_excluded():
    # 4 classes; class 3 never appears in truth nor prediction -> NaN, excluded from mIoU.
    labels = torch.tensor([[0, 0, 1, 1, 2, 255], [0, 2, 2, 1, 255, 0]])
    pred = torch.tensor([[0, 1, 1, 1, 2, 3 - 3], [0, 2, 0, 1, 1, 0]])
    cm = ConfusionMatrix(4, ignore_index=255, class_names=["a", "b", "c", "d"])
    cm.update(pred.unsqueeze(0), labels.unsqueeze(0))
    expected = np.zeros((4, 4), np.int64)
    for g, p in zip(labels.flatten().tolist(), pred.flatten().tolist()):
        if g != 255:
            expected[g, p] += 1
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)
    out = cm.compute()
    tp = np.diag(expected)
    union = expected.sum(0) + expected.sum(1) - tp
    iou = [tp[c] / union[c] for c in range(3)]
    assert out["per_class_iou"]["a"] == pytest.approx(iou[0])
    assert math.isnan(out["per_class_iou"]["d"])
    assert out["miou"] == pytest.approx(np.mean(iou))
    assert out["pixel_accuracy"] == pytest.approx(tp.sum() / expected.sum())
    assert out["present_classes"] == 3 and out["num_pixels"] == 10
    assert finite_or_none(out)["per_class_iou"]["d"] is None


def test_confusion_matrix_predicted_but_absent_class_counts_as_zero():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 0]]]))
    out = cm.compute()
    assert out["per_class_iou"]["1"] == 0.0
    assert out["miou"] == pytest.approx((0.5 + 0.0) / 2)


def test_confusion_matrix_accepts_logits_and_rejects_bad_labels():
    cm = ConfusionMatrix(3)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2] = 1.0
    cm.update(logits, torch.full((1, 2, 2), 2))
    assert cm.compute()["pixel_accuracy"] == 1.0
    with pytest.raises(ValueError, match="label ids must be in"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
