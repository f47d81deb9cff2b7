"""Helpers for tests and benchmarks: give every parameter and buffer non-trivial random values.

Fresh models have zero position embeddings, identity batch norms and zero biases, which would let
a parity test pass even with swapped or dropped weights; randomising everything avoids that.
"""

from __future__ import annotations

import torch
from torch import nn


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
