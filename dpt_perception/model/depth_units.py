"""Metric depth from (metric) inverse depth: the one conversion z = 1 / max(scale * x + shift, eps).

A metric fine-tune's head (NYU, KITTI) outputs metric inverse depth up to the checkpoint's
(scale, shift); a relative model's output becomes metres with a fixed or fitted pair. Every such
conversion in the package (the model, the PerceptionPipeline, the GPU pipeline, the node's depth modes,
the training metrics and losses) calls `depth_from_inverse`.
"""

from __future__ import annotations

import numpy as np

METRIC_EPS = 1e-8  # smallest metric inverse depth: 1e8 m, "infinitely far" for any camera

#: What a depth map means, one vocabulary for the model config (`DPTConfig.depth_kind`), the
#: pipeline's `Prediction.depth_kind`, evaluation and the metrics: "relative" = relative inverse
#: depth (affine-invariant, larger = closer, no unit), "metric" = metres.
RELATIVE, METRIC = "relative", "metric"
DEPTH_KINDS = (RELATIVE, METRIC)


def depth_from_inverse(inv, scale, shift):
    """Metric depth 1 / max(scale * inv + shift, 1e-8).

    torch tensors: computed in the tensor's dtype (the caller picks it, e.g. `.double()`);
    `scale` / `shift` are numbers or tensors broadcasting against `inv` (per-image pairs).
    Anything else: a numpy float32 array (computed in float32, one output allocation)."""
    if hasattr(inv, "clamp_"):  # torch tensor
        return (inv * scale + shift).clamp_(min=METRIC_EPS).reciprocal_()
    out = np.asarray(inv, dtype=np.float32) * np.float32(scale)
    out += np.float32(shift)
    np.maximum(out, np.float32(METRIC_EPS), out=out)
    return np.reciprocal(out, out=out)


def metres_from_relative(relative: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """Metres from a relative model's inverse depth with a fixed or fitted (scale, shift):
    `depth_from_inverse`, except that a metric inverse depth <= METRIC_EPS (the pair puts the pixel
    at or beyond infinity) is +Inf, REP 117's "too far", rather than the huge finite 1e8 m."""
    metres = depth_from_inverse(relative, scale, shift)
    inverse = np.asarray(relative, dtype=np.float32) * np.float32(scale) + np.float32(shift)
    with np.errstate(invalid="ignore"):
        metres[inverse <= METRIC_EPS] = np.inf
    return metres
