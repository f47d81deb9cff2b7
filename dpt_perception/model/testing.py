"""Helpers for tests and benchmarks: tiny models with a live depth map, non-trivial random parameters,
segmentation logits of a known layout.

Fresh models have zero position embeddings, identity batch norms and zero biases, which would let
a parity test pass even with swapped or dropped weights; randomising everything avoids that.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dpt_perception.model.config import DPTConfig
from dpt_perception.model.dpt import DPT


@torch.no_grad()
def tiny_model(
    *args, seed: int = 0, depth_bias: float = 0.5, depth_weight_scale: float = 1.0, **overrides
) -> DPT:
    """`DPT(DPTConfig.tiny(*args, **overrides))` in eval mode, initialised under `torch.manual_seed(seed)`.

    Random weights can leave the ReLU-terminated depth head all zero, which would make depth
    comparisons vacuous: its last conv gets `depth_bias` as bias and its weights are multiplied by
    `depth_weight_scale` (a large spread next to a small offset, so low-precision tests measure more
    than the output rounding)."""
    torch.manual_seed(seed)
    model = DPT(DPTConfig.tiny(*args, **overrides)).eval()
    if "depth" in model.heads:
        last = model.heads["depth"].output_conv
        last.weight.mul_(depth_weight_scale)
        last.bias.fill_(depth_bias)
    return model


@torch.no_grad()
def randomize_(module: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """Perturb every float tensor of `module` in place (deterministic per `seed`); returns it.

    Norm weights stay near 1 and BN running variances stay positive so deep stacks keep a sane range.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in sorted(module.state_dict(keep_vars=True).items()):
        if not tensor.is_floating_point():
            continue
        noise = torch.randn(tensor.shape, generator=gen, dtype=torch.float32).to(tensor.dtype)
        if name.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen).to(tensor.dtype))
        elif name.endswith("running_mean"):
            tensor.copy_(noise * 0.1)
        elif tensor.ndim == 1 and name.endswith("weight"):  # LayerNorm / GroupNorm / BatchNorm scale
            tensor.copy_(1.0 + noise * 0.1)
        elif "cls_token" in name or "pos_embed" in name or "position_embeddings" in name:
            tensor.copy_(noise * 0.5)
        else:
            tensor.add_(noise * scale)
    return module


def voronoi_layout(h: int, w: int, regions: int, num_classes: int, seed: int = 0) -> np.ndarray:
    """(h, w) int64 class ids: `regions` Voronoi cells with a random class each (distinct when
    there are enough classes), a stand-in for a segmented scene."""
    rng = np.random.default_rng(seed)
    centres = rng.random((regions, 2)) * [h, w]
    yy, xx = np.mgrid[0:h, 0:w]
    cell = ((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2).argmin(-1)
    return rng.choice(num_classes, regions, replace=num_classes < regions)[cell]


def layout_logits(layout: np.ndarray, num_classes: int, seed: int = 0, margin: float = 6.0) -> torch.Tensor:
    """(1, C, h, w) channels-last logits whose argmax follows `layout` away from its boundaries:
    smooth unit noise for every class (the decoder's token-grid scale) plus `margin` on the
    layout's class, blurred over 5x5 so boundaries have near-ties and third classes come close."""
    h, w = layout.shape
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, num_classes, max(2, h // 8), max(2, w // 8), generator=gen)
    logits = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=True)
    onehot = F.one_hot(torch.from_numpy(layout).long(), num_classes).permute(2, 0, 1)[None].float()
    logits = logits + margin * F.avg_pool2d(onehot, 5, stride=1, padding=2, count_include_pad=False)
    return logits.contiguous(memory_format=torch.channels_last)
