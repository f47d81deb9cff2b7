"""RefineNet-style feature fusion (deepest level first), as in the paper and reference release."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), with optional BatchNorm after each conv (then convs have no bias)."""

    def __init__(self, channels: int, use_batch_norm: bool):
        super().__init__()
        self.use_batch_norm = use_batch_norm
        self.convolution1 = nn.Conv2d(channels, channels, 3, padding=1, bias=not use_batch_norm)
        self.convolution2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not use_batch_norm)
        if use_batch_norm:
            self.batch_norm1 = nn.BatchNorm2d(channels)
            self.batch_norm2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convolution1(F.relu(x))
        if self.use_batch_norm:
            y = self.batch_norm1(y)
        y = self.convolution2(F.relu(y))
        if self.use_batch_norm:
            y = self.batch_norm2(y)
        return y + x


class FusionBlock(nn.Module):
    """out = proj(up2(RCU2(deeper + RCU1(skip)))); the deepest block has no skip input."""

    def __init__(self, channels: int, use_batch_norm: bool):
        super().__init__()
        self.residual_layer1 = ResidualConvUnit(channels, use_batch_norm)
        self.residual_layer2 = ResidualConvUnit(channels, use_batch_norm)
        self.projection = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            if skip.shape[-2:] != x.shape[-2:]:
                # Input sides that are not multiples of 32 make the upsampled deeper map and the
                # skip differ by a pixel; resample the skip to the deeper map (as HF's port does).
                skip = F.interpolate(skip, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.residual_layer1(skip)
        x = self.residual_layer2(x)
        # The reference upsamples, then applies the 1x1 projection. Both are linear and the bilinear
        # weights sum to one, so projecting first gives the same result (up to rounding) at a
        # quarter of the projection's cost.
        x = self.projection(x)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class FusionStage(nn.Module):
    """`layers[0]` fuses the deepest level (the reference's refinenet4)."""

    def __init__(self, channels: int, use_batch_norm: bool, num_levels: int = 4):
        super().__init__()
        self.layers = nn.ModuleList(FusionBlock(channels, use_batch_norm) for _ in range(num_levels))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: shallow -> deep, already projected to `channels`; returns the 1/2-res map."""
        fused = None
        for layer, feature in zip(self.layers, reversed(features)):
            fused = layer(feature) if fused is None else layer(fused, feature)
        return fused
