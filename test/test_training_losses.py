"""Losses: invariances, masks, ignore index, task masks, against independent numpy computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpt_perception.training.losses import (
    MultiTaskLoss,
    gradient_matching_loss,
    inverse_depth_target,
    scale_shift_invariant_loss,
    segmentation_loss,
    silog_loss,
)


def make_depth(seed=0, shape=(2, 16, 16)):
    rng = np.random.default_rng(seed)
    depth = torch.from_numpy(rng.uniform(1.0, 10.0, size=shape).astype(np.float32))
    valid = torch.from_numpy(rng.uniform(size=shape) > 0.2)
    return depth, valid


@pytest.mark.parametrize("trim", [0.0, 0.2])
def test_ssi_is_zero_for_affine_transformed_prediction(trim):
    depth, valid = make_depth()
    target, mask = inverse_depth_target(depth, valid)
    pred = 4.0 * target + 0.7
    assert scale_shift_invariant_loss(pred, target, mask, trim).item() == pytest.approx(0.0, abs=1e-6)
    assert gradient_matching_loss(pred, target, mask).item() == pytest.approx(0.0, abs=1e-5)
    noisy = pred + 0.3 * torch.randn_like(pred)
    assert scale_shift_invariant_loss(noisy, target, mask, trim).item() > 1e-3
    assert gradient_matching_loss(noisy, target, mask).item() > 1e-3


def test_ssi_ignores_masked_pixels():
    depth, valid = make_depth(1)
    target, mask = inverse_depth_target(depth, valid)
    pred = torch.rand_like(target)
    base = scale_shift_invariant_loss(pred, target, mask, 0.2)
    changed = torch.where(mask, pred, torch.full_like(pred, 1e3))
    assert scale_shift_invariant_loss(changed, target, mask, 0.2).item() == pytest.approx(
        base.item(), rel=1e-6
    )
    assert gradient_matching_loss(changed, target, mask).item() == pytest.approx(
        gradient_matching_loss(pred, target, mask).item(), rel=1e-6
    )


def test_trimmed_ssi_matches_numpy_lstsq_and_sorting():
    rng = np.random.default_rng(2)
    target = rng.uniform(0.1, 1.0, size=(2, 10, 10))
    mask = rng.uniform(size=target.shape) > 0.25
    pred = rng.uniform(0.0, 1.0, size=target.shape)
    loss = scale_shift_invariant_loss(
        torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(mask), 0.2
    )
    per_image = []
    for b in range(2):
        p, t = pred[b][mask[b]], target[b][mask[b]]
        (s, sh), *_ = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), t, rcond=None)
        r = np.sort(np.abs(s * p + sh - t))
        keep = int(np.floor(0.8 * len(r)))
        per_image.append(r[:keep].mean())
    assert loss.item() == pytest.approx(np.mean(per_image), rel=1e-4)


def test_inverse_depth_target_is_unit_free():
    depth, valid = make_depth(4)
    t_m, _ = inverse_depth_target(depth, valid)
    t_mm, _ = inverse_depth_target(depth * 1000.0, valid)
    torch.testing.assert_close(t_m, t_mm)


def test_silog_matches_numpy_and_is_zero_at_truth():
    depth, valid = make_depth(5)
    pred = depth * torch.exp(0.1 * torch.randn_like(depth))
    loss = silog_loss(pred, depth, valid, 0.85)
    ref = []
    for b in range(2):
        g = np.log(pred[b][valid[b]].double().numpy()) - np.log(depth[b][valid[b]].double().numpy())
        ref.append(np.sqrt(np.mean(g**2) - 0.85 * np.mean(g) ** 2 + 1e-8))
    assert loss.item() == pytest.approx(np.mean(ref), rel=1e-5)
    assert silog_loss(depth, depth, valid).item() == pytest.approx(0.0, abs=1e-3)
    # lambda = 1 makes it fully scale invariant.
    assert silog_loss(3.0 * depth, depth, valid, 1.0).item() == pytest.approx(0.0, abs=1e-3)


def test_segmentation_loss_respects_ignore_index_like_numpy():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 5, 6))
    labels[rng.uniform(size=labels.shape) < 0.3] = 255
    loss = segmentation_loss(torch.from_numpy(logits), torch.from_numpy(labels))
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    keep = labels != 255
    b, y, x = np.nonzero(keep)
    ref = -log_p[b, labels[keep], y, x].mean()
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="outside"):
        segmentation_loss(torch.from_numpy(logits), torch.full((2, 5, 6), 9))


def _batch(depth, valid, labels, has_depth, has_labels):
    return {
        "depth": depth,
        "depth_valid": valid,
        "labels": labels,
        "has_depth": torch.tensor(has_depth),
        "has_labels": torch.tensor(has_labels),
    }


def test_multitask_weights_aux_and_task_masks():
    torch.manual_seed(0)
    depth, valid = make_depth(7)
    labels = torch.randint(0, 3, (2, 16, 16))
    outputs = {
        "depth": torch.rand(2, 16, 16, requires_grad=True),
        "segmentation": torch.randn(2, 3, 16, 16, requires_grad=True),
        "aux": torch.randn(2, 3, 8, 8, requires_grad=True),
    }
    loss_fn = MultiTaskLoss(depth_loss="ssi", gradient_weight=0.5, segmentation_weight=2.0, aux_weight=0.4)
    total, parts = loss_fn(outputs, _batch(depth, valid, labels, [True, True], [True, True]))
    aux_up = F.interpolate(outputs["aux"], size=(16, 16), mode="bilinear", align_corners=False)
    ce = F.cross_entropy(outputs["segmentation"], labels)
    aux = F.cross_entropy(aux_up, labels)
    assert parts["segmentation_ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert parts["segmentation_aux_ce"].item() == pytest.approx(aux.item(), rel=1e-5)
    expected = parts["depth_ssi"] + 0.5 * parts["depth_gradient"] + 2.0 * (ce + 0.4 * aux)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)

    # Sample 1 has neither depth nor labels: it must get no gradient, and the loss equals the
    # loss of sample 0 alone.
    total, _ = loss_fn(outputs, _batch(depth, valid, labels, [True, False], [True, False]))
    total.backward()
    assert outputs["depth"].grad[1].abs().max() == 0
    assert outputs["segmentation"].grad[1].abs().max() == 0
    assert outputs["depth"].grad[0].abs().max() > 0
    single = {k: v[:1].detach() for k, v in outputs.items()}
    alone, _ = loss_fn(single, _batch(depth[:1], valid[:1], labels[:1], [True], [True]))
    assert total.item() == pytest.approx(alone.item(), rel=1e-5)


def test_multitask_without_any_supervision_is_zero_but_differentiable():
    outputs = {
        "depth": torch.rand(1, 8, 8, requires_grad=True),
        "segmentation": torch.randn(1, 2, 8, 8, requires_grad=True),
    }
    batch = _batch(
        torch.zeros(1, 8, 8),
        torch.zeros(1, 8, 8, dtype=torch.bool),
        torch.zeros(1, 8, 8, dtype=torch.long),
        [False],
        [False],
    )
    total, _ = MultiTaskLoss()(outputs, batch)
    total.backward()
    assert total.item() == 0.0
    assert outputs["depth"].grad is not None and outputs["depth"].grad.abs().max() == 0


def test_silog_multitask_uses_model_conversion():
    depth, valid = make_depth(8)
    raw = (1.0 / depth).requires_grad_()
    loss_fn = MultiTaskLoss(depth_loss="silog", depth_to_metric=lambda x: 1.0 / x.clamp(min=1e-8))
    total, parts = loss_fn(
        {"depth": raw},
        _batch(depth, valid, torch.zeros(2, 16, 16, dtype=torch.long), [True, True], [True, True]),
    )
    assert parts["depth_silog"].item() == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="depth_to_metric"):
        MultiTaskLoss(depth_loss="silog")


def test_median_normalised_loss_matches_numpy_and_is_positive_affine_invariant():
    from dpt_perception.training.losses import median_normalised_loss

    rng = np.random.default_rng(9)
    target = rng.uniform(0.1, 1.0, size=(2, 9, 11))
    mask = rng.uniform(size=target.shape) > 0.25
    pred = rng.uniform(0.0, 1.0, size=target.shape)
    loss = median_normalised_loss(
        torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(mask), 0.2
    )
    per_image = []
    for b in range(2):

        def norm(x, b=b):
            v = x[b][mask[b]]
            med = np.median(v) if len(v) % 2 else np.sort(v)[len(v) // 2 - 1]  # torch's lower median
            return (v - med) / np.mean(np.abs(v - med))

        r = np.sort(np.abs(norm(pred) - norm(target)))
        per_image.append(r[: int(np.floor(0.8 * len(r)))].mean())
    assert loss.item() == pytest.approx(np.mean(per_image), rel=1e-4)
    t = torch.from_numpy(target)
    m = torch.from_numpy(mask)
    assert median_normalised_loss(3.0 * t + 2.0, t, m).item() == pytest.approx(0.0, abs=1e-5)
    assert median_normalised_loss(-3.0 * t + 2.0, t, m).item() > 0.1  # the sign is not free
    assert gradient_matching_loss(3.0 * t + 2.0, t, m, alignment="median").item() == pytest.approx(
        0.0, abs=1e-4
    )
