"""Published evaluation protocols: crop masks, caps and metrics against independent NumPy
computations of the published formulas (BTS eval_with_pngs; ADE20K pixel accuracy / mIoU)."""
import math

import cv2
import numpy as np
import pytest
import torch

from dpt_perception.training.data import ADE20KDataset
from dpt_perception.training.metrics import DEPTH_METRIC_NAMES, ConfusionMatrix
from dpt_perception.training.protocols import (
    PROTOCOLS,
    clip_prediction,
    depth_eval_mask,
    eigen_crop_mask,
    garg_crop_mask,
    get_protocol,
    image_depth_errors,
    kb_crop,
    kb_crop_origin,
    kb_uncrop,
    png_quantize,
)


def bts_errors(gt, pred):
    """compute_errors of the BTS script, on the valid pixels' 1-D arrays."""
    thresh = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return {
        "delta1": (thresh < 1.25).mean(), "delta2": (thresh < 1.25**2).mean(),
        "delta3": (thresh < 1.25**3).mean(),
        "rmse": np.sqrt(((gt - pred) ** 2).mean()),
        "rmse_log": np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean()),
        "abs_rel": np.mean(np.abs(gt - pred) / gt), "sq_rel": np.mean((gt - pred) ** 2 / gt),
        "silog": np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100,
        "log10": np.mean(np.abs(np.log10(pred) - np.log10(gt))),
    }


def bts_frame(gt, pred, min_depth, max_depth, crop):
    """The script's per-frame steps: clip the prediction, strict valid range, crop mask."""
    pred = pred.astype(np.float64).copy()
    pred[pred < min_depth] = min_depth
    pred[pred > max_depth] = max_depth
    pred[np.isinf(pred)] = max_depth
    pred[np.isnan(pred)] = min_depth
    valid = np.logical_and(gt > min_depth, gt < max_depth) & crop
    return bts_errors(gt[valid].astype(np.float64), pred[valid])


def assert_same(ours, ref):
    assert set(ours) == set(DEPTH_METRIC_NAMES) == set(ref)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-9), key


# ---- crops --------------------------------------------------------------------------------------
def test_eigen_crop_is_rows_45_to_470_and_columns_41_to_600():
    mask = eigen_crop_mask((480, 640))
    assert mask.sum() == (471 - 45) * (601 - 41)
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (45, 470, 41, 600)
    with pytest.raises(ValueError, match="480x640 frames, got 240x320"):
        eigen_crop_mask((240, 320))


def test_garg_crop_on_a_kitti_frame():
    mask = garg_crop_mask((375, 1242))
    rows, cols = np.nonzero(mask)
    # int(0.40810811*375)=153, int(0.99189189*375)=371, int(0.03594771*1242)=44, int(0.96405229*1242)=1197
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (153, 371, 44, 1197)
    assert mask.sum() == (371 - 153) * (1197 - 44)


def test_kb_crop_takes_the_bottom_rows_and_the_centre_columns():
    assert kb_crop_origin((375, 1242)) == (23, 13)
    assert kb_crop_origin((370, 1224)) == (18, 4)
    frame = np.arange(375 * 1242).reshape(375, 1242)
    crop = kb_crop(frame)
    assert crop.shape == (352, 1216) and crop[0, 0] == frame[23, 13] and crop[-1, -1] == frame[374, 1228]
    full = kb_uncrop(crop.astype(np.float32), (375, 1242))
    assert full.shape == (375, 1242) and full[:23].sum() == 0 and full[:, :13].sum() == 0
    assert full[:, 1229:].sum() == 0 and np.array_equal(full[23:, 13:1229], crop)
    with pytest.raises(ValueError, match="at least 352x1216, got 300x1242"):
        kb_crop_origin((300, 1242))
    with pytest.raises(ValueError, match="KB-cropped prediction"):
        kb_uncrop(np.zeros((10, 10)), (375, 1242))


# ---- depth metrics ------------------------------------------------------------------------------
def test_a_ten_percent_overestimate_gives_the_known_values():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 7.0, (480, 640))  # 1.3 x gt stays below the 10 m cap
    out = image_depth_errors(PROTOCOLS["nyu"], 1.1 * gt, gt)
    g = gt[eigen_crop_mask(gt.shape)]
    assert out["abs_rel"] == pytest.approx(0.1)
    assert out["sq_rel"] == pytest.approx(0.01 * g.mean())
    assert out["rmse"] == pytest.approx(0.1 * math.sqrt((g**2).mean()))
    assert out["rmse_log"] == pytest.approx(math.log(1.1))
    assert out["log10"] == pytest.approx(math.log10(1.1))
    assert out["silog"] == pytest.approx(0.0, abs=1e-4)  # a constant log ratio has no variance
    assert out["delta1"] == out["delta2"] == out["delta3"] == 1.0
    assert image_depth_errors(PROTOCOLS["nyu"], 1.3 * gt, gt)["delta1"] == 0.0


@pytest.mark.parametrize("name,shape", [("nyu", (480, 640)), ("kitti", (375, 1242))])
def test_protocol_metrics_equal_the_bts_script_with_caps_and_bad_values(name, shape):
    protocol = PROTOCOLS[name]
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.0, protocol.max_depth * 1.2, shape)
    gt[rng.uniform(size=shape) < 0.3] = 0.0  # no measurement
    gt[0:5, 200:260] = protocol.max_depth  # exactly at the cap: excluded (strict)
    gt[200, 100:140] = protocol.min_depth  # exactly at the minimum: excluded
    pred = gt * rng.uniform(0.7, 1.4, shape) + rng.normal(0, 0.3, shape)
    pred[rng.uniform(size=shape) < 0.01] = np.inf
    pred[rng.uniform(size=shape) < 0.01] = np.nan
    pred[rng.uniform(size=shape) < 0.01] = -np.inf
    pred[rng.uniform(size=shape) < 0.05] = protocol.max_depth * 3  # beyond the cap: clipped
    crop = eigen_crop_mask(shape) if name == "nyu" else garg_crop_mask(shape)
    ref = bts_frame(gt, pred, protocol.min_depth, protocol.max_depth, crop)
    assert_same(image_depth_errors(protocol, pred, gt), ref)


def test_cap_and_minimum_edges():
    protocol = get_protocol("none", 1e-3, 10.0)
    gt = np.array([[10.0, 1e-3, 9.999, 5.0, 11.0]])
    pred = np.array([[1.0, 1.0, 12.0, np.nan, 1.0]])
    mask = depth_eval_mask(protocol, gt)
    np.testing.assert_array_equal(mask, [[False, False, True, True, False]])
    np.testing.assert_array_equal(clip_prediction(protocol, pred), [[1.0, 1.0, 10.0, 1e-3, 1.0]])
    out = image_depth_errors(protocol, pred, gt)
    assert out["abs_rel"] == pytest.approx(np.mean([abs(10.0 - 9.999) / 9.999, abs(1e-3 - 5.0) / 5.0]))
    # a frame without any valid pixel is left out (BTS would average a NaN)
    assert image_depth_errors(protocol, pred, np.full_like(gt, 20.0)) is None
    with pytest.raises(ValueError, match="unknown protocol 'eigen'"):
        get_protocol("eigen")
    with pytest.raises(ValueError, match="differ in size"):
        image_depth_errors(protocol, pred[:, :2], gt)


def test_relative_predictions_are_aligned_in_inverse_depth_then_inverted():
    """The official gists: least squares scale/shift of the prediction to 1/gt on the valid
    pixels, disparity capped at 1/max_depth, inverted, then the same metrics."""
    protocol = PROTOCOLS["nyu"]
    rng = np.random.default_rng(2)
    gt = rng.uniform(0.5, 9.5, (480, 640))
    exact = image_depth_errors(protocol, 3.0 / gt + 0.2, gt, relative=True)  # affine in 1/gt
    assert exact["abs_rel"] == pytest.approx(0.0, abs=1e-9) and exact["delta1"] == 1.0
    pred = 3.0 / gt + 0.2 + rng.normal(0, 0.05, gt.shape)
    mask = depth_eval_mask(protocol, gt)
    a = np.stack([pred[mask], np.ones(mask.sum())], 1)
    (s, t), *_ = np.linalg.lstsq(a, 1.0 / gt[mask], rcond=None)
    aligned = np.maximum(s * pred + t, 1.0 / protocol.max_depth)
    ref = bts_frame(gt, 1.0 / aligned, protocol.min_depth, protocol.max_depth, eigen_crop_mask(gt.shape))
    out = image_depth_errors(protocol, pred, gt, relative=True)
    for key in ref:
        assert out[key] == pytest.approx(ref[key], rel=1e-7), key


def test_png_quantize_reads_back_what_the_official_uint16_png_holds():
    pred = np.array([1.23456, 79.99, 0.0, -0.5, 300.0])
    stored = (np.clip(pred, 0, 65535 / 256) * 256).astype(np.uint16)  # the official astype truncates
    np.testing.assert_array_equal(png_quantize(pred, 256.0), stored / 256.0)
    assert png_quantize(np.array([1.2345]), 1000.0)[0] == pytest.approx(1.234)


# ---- ADE20K -------------------------------------------------------------------------------------
def official_ade_scores(pred_official, ann):
    """Pixel accuracy and mIoU with the official numbering: ids 1..150, annotation 0 ignored;
    mIoU over the classes with a non-empty union on the labelled pixels."""
    labelled = ann > 0
    correct = (pred_official == ann) & labelled
    ious = []
    for c in range(1, 151):
        p, g = (pred_official == c) & labelled, (ann == c) & labelled
        union = (p | g).sum()
        if union:
            ious.append((p & g).sum() / union)
    return correct.sum() / labelled.sum(), np.mean(ious), len(ious)


def test_ade20k_protocol_ignores_annotation_zero_and_matches_the_official_numbering(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    rng = np.random.default_rng(3)
    anns, preds = [], []
    for i in range(3):
        ann = rng.integers(0, 12, (20, 30))  # 0 = unlabelled, plus a few classes
        ann[:4] = 0
        if i == 2:
            ann[:] = 0  # a frame without any labelled pixel
        pred = np.where(rng.uniform(size=ann.shape) < 0.7, ann, rng.integers(1, 14, ann.shape))
        pred[:4] = 150  # class 150 predicted only on unlabelled pixels: must not count
        pred = np.maximum(pred, 1)  # official ids are argmax + 1 >= 1
        (root / "images" / "validation").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / "validation").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / "validation" / f"ADE_val_{i:08d}.jpg"),
                    np.zeros((20, 30, 3), np.uint8))
        cv2.imwrite(str(root / "annotations" / "validation" / f"ADE_val_{i:08d}.png"), ann.astype(np.uint8))
        anns.append(ann)
        preds.append(pred)
    dataset = ADE20KDataset(root, split="validation")
    protocol = PROTOCOLS["ade20k"]
    confusion = ConfusionMatrix(protocol.num_classes, dataset.ignore_index, dataset.class_names)
    for i in range(len(dataset)):
        ours = torch.from_numpy(preds[i] - 1)  # this project's ids are official - 1
        confusion.update(ours[None], torch.from_numpy(dataset[i]["labels"])[None])
    scores = confusion.compute()
    acc, miou, n_classes = official_ade_scores(np.stack(preds), np.stack(anns))
    assert scores["pixel_accuracy"] == pytest.approx(acc, rel=1e-12)
    assert scores["miou"] == pytest.approx(miou, rel=1e-12)
    assert scores["present_classes"] == n_classes and math.isnan(scores["per_class_iou"]["ade_150"])
    assert scores["num_pixels"] == sum(int((a > 0).sum()) for a in anns)
