"""Reassemble: tokens -> image-like feature maps at 1/4, 1/8, 1/16, 1/32 (Read, Concatenate, Resample).

Layout follows the paper: Read handles the CLS (readout) token ("ignore" drops it, "add" adds it
to every token, "project" concatenates it to every token then Linear 2D->D + GELU); Concatenate
folds the N tokens back into the (h, w) grid; Resample is a 1x1 conv D->c then a transposed conv
(x4, x2), nothing (x1) or a 3x3 stride-2 conv (x0.5). Hybrid levels 0 and 1 are ResNet maps and
pass through untouched (`nn.Identity`, to keep level indices aligned with the reference).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import DPTConfig

RESAMPLE_FACTORS = (4, 2, 1, 0.5)


class ReassembleLayer(nn.Module):
    """1x1 projection to `channels`, then the level's resampling."""

    def __init__(self, hidden_size: int, channels: int, factor: float):
        super().__init__()
        self.projection = nn.Conv2d(hidden_size, channels, kernel_size=1)
        if factor > 1:
            self.resize = nn.ConvTranspose2d(channels, channels, kernel_size=int(factor), stride=int(factor))
        elif factor == 1:
            self.resize = nn.Identity()
        else:
            self.resize = nn.Conv2d(
                channels, channels, kernel_size=3, stride=int(round(1 / factor)), padding=1
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.projection(x))


class ReassembleStage(nn.Module):
    def __init__(self, config: DPTConfig):
        super().__init__()
        self.readout = config.readout
        D = config.hidden_size
        # Levels fed by ResNet stages (hybrid) carry no reassemble parameters.
        self.num_map_levels = 2 if config.variant == "vit_hybrid" else 0
        self.layers = nn.ModuleList(
            nn.Identity()
            if level < self.num_map_levels
            else ReassembleLayer(D, config.reassemble_channels[level], RESAMPLE_FACTORS[level])
            for level in range(4)
        )
        if self.readout == "project":
            self.readout_projects = nn.ModuleList(
                nn.Sequential(nn.Identity())
                if level < self.num_map_levels
                else nn.Sequential(nn.Linear(2 * D, D), nn.GELU())
                for level in range(4)
            )

    def read(self, level: int, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1+N, D) -> (B, N, D) according to the readout mode."""
        cls, patches = tokens[:, :1], tokens[:, 1:]
        if self.readout == "ignore":
            return patches
        if self.readout == "add":
            return patches + cls
        return self.readout_projects[level](torch.cat([patches, cls.expand_as(patches)], dim=-1))

    def forward(self, features: list[torch.Tensor], grid: tuple[int, int]) -> list[torch.Tensor]:
        out = []
        for level, feature in enumerate(features):
            if level < self.num_map_levels:
                out.append(feature)
                continue
            x = self.read(level, feature)
            B, N, D = x.shape
            # Concatenate: tokens are row-major over the (h, w) grid. `view`, not Unflatten, keeps
            # tracing/ONNX export happy.
            x = x.transpose(1, 2).reshape(B, D, grid[0], grid[1])
            out.append(self.layers[level](x))
        return out
