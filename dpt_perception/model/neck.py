"""A DPT neck: reassemble -> per-level 3x3 projection to the fusion width -> fusion."""

from __future__ import annotations

import torch
from torch import nn

from .config import DPTConfig
from .fusion import FusionStage
from .reassemble import ReassembleStage


class Neck(nn.Module):
    def __init__(self, config: DPTConfig, use_batch_norm: bool):
        super().__init__()
        self.reassemble_stage = ReassembleStage(config)
        self.projections = nn.ModuleList(
            nn.Conv2d(c, config.fusion_channels, kernel_size=3, padding=1, bias=False)
            for c in config.reassemble_channels
        )
        self.fusion_stage = FusionStage(config.fusion_channels, use_batch_norm)

    def forward(self, features: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        maps = self.reassemble_stage(features, grid)
        return self.fusion_stage([proj(m) for proj, m in zip(self.projections, maps)])
