"""Metric depth from (metric) inverse depth: the one conversion z = 1 / max(scale * x + shift, eps).

A metric fine-tune's head (NYU, KITTI) outputs metric inverse depth up to the checkpoint's
(scale, shift); a relative model's output becomes metres with a fixed or fitted pair. Every such
conversion in the package (the model, the Predictor, the GPU pipeline, the node's depth modes,
the training metrics and losses) calls `depth_from_inverse`.
"""

from __future__ import annotations

import numpy as np

METRIC_EPS = 1e-8  # smallest metric inverse depth: 1e8 m, "infinitely far" for any camera


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
