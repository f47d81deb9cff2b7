"""Per-image least-squares scale/shift alignment, shared by the losses and the metrics.

DPT's relative depth head predicts inverse depth only up to an unknown affine map, so both the
scale-and-shift-invariant loss and the relative-depth evaluation first fit, for every image,
the scale ``s`` and shift ``t`` minimising ``sum_valid (s * pred + t - target)^2`` and then
compare ``s * pred + t`` with the target.
"""

from __future__ import annotations

import torch

# Below this variance (relative to the squared magnitude) the prediction is constant over the
# valid pixels up to rounding, so the scale is unidentifiable: we keep s = 0 and fit the shift.
_DEGENERATE_VAR = 1e-12


def fit_scale_shift(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form least-squares ``(scale, shift)`` per image.

    ``pred``, ``target``: (B,H,W) float; ``mask``: (B,H,W) bool. Returns two (B,) tensors.
    Images with no valid pixel get scale 0 and shift 0; images whose prediction is constant on
    the valid pixels get scale 0 and the mean target as shift. Gradients flow through the
    solution (as in MiDaS), so the loss is truly invariant to the affine part.
    """
    if pred.shape != target.shape or pred.shape != mask.shape:
        raise ValueError(
            f"fit_scale_shift needs pred, target and mask of one shape, got {tuple(pred.shape)}, "
            f"{tuple(target.shape)}, {tuple(mask.shape)}"
        )
    m = mask.to(pred.dtype)
    dims = tuple(range(1, pred.dim()))
    view = (-1,) + (1,) * (pred.dim() - 1)
    count = m.sum(dims)
    n = count.clamp(min=1.0)
    mean_pred = (m * pred).sum(dims) / n
    mean_target = (m * target).sum(dims) / n
    # Centred sums: the textbook a00*a11 - a01^2 form cancels catastrophically in float32 when the
    # prediction is a large offset plus a small variation (e.g. a freshly initialised head).
    pc = (pred - mean_pred.view(view)) * m
    tc = (target - mean_target.view(view)) * m
    var = (pc * pc).sum(dims) / n
    cov = (pc * tc).sum(dims) / n
    ok = (count >= 2) & (var > _DEGENERATE_VAR * (mean_pred.abs() + 1.0) ** 2)
    scale = torch.where(ok, cov / torch.where(ok, var, torch.ones_like(var)), torch.zeros_like(var))
    shift = mean_target - scale * mean_pred
    return scale, shift


def apply_scale_shift(pred: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``scale[b] * pred[b] + shift[b]`` for a (B,H,W) prediction."""
    view = (-1,) + (1,) * (pred.dim() - 1)
    return pred * scale.view(view) + shift.view(view)
