"""`DPT`: one shared encoder feeding a depth and/or a segmentation head (see docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import DPTConfig
from .depth_units import depth_from_inverse
from .heads import AuxiliaryHead, DepthHead, SegmentationHead
from .neck import Neck
from .resnet_hybrid import HybridPatchEmbed
from .vit import VisionTransformer


def build_encoder(config: DPTConfig) -> VisionTransformer:
    if config.variant == "vit_hybrid":
        return VisionTransformer(config, patch_embed=HybridPatchEmbed(config))
    return VisionTransformer(config)


def depth_to_metric(inverse_depth: torch.Tensor, scale: float, shift: float) -> torch.Tensor:
    """Metric depth from a metric fine-tune's raw output: 1 / max(scale * x + shift, 1e-8)
    (`dpt_perception.model.depth_units.depth_from_inverse`)."""
    return depth_from_inverse(inverse_depth, scale, shift)


class DPT(nn.Module):
    """forward(pixel_values (B,3,H,W), normalised, H and W multiples of 16) -> dict of outputs:
    "depth" (B,H,W) non-negative inverse depth, "segmentation" (B,C,H,W) logits, and in training
    with `aux_head`, "aux" (B,C,H/2,W/2). Only enabled heads appear; the encoder runs once."""

    def __init__(self, config: DPTConfig):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config)
        self.necks = nn.ModuleDict(
            {name: Neck(config, config.use_batch_norm_in_fusion[name]) for name in config.neck_names}
        )
        heads: dict[str, nn.Module] = {}
        if "depth" in config.heads:
            heads["depth"] = DepthHead(config.fusion_channels)
        if "segmentation" in config.heads:
            heads["segmentation"] = SegmentationHead(
                config.fusion_channels, config.num_classes, config.segmentation_dropout
            )
        self.heads = nn.ModuleDict(heads)
        self.aux_head = AuxiliaryHead(config.fusion_channels, config.num_classes) if config.has_aux else None

    def decoder_parameters(self):
        """Everything except the encoder (necks and heads): the "decoder" parameter group."""
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder_ids]

    def forward_features(
        self, pixel_values: torch.Tensor, heads: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """The fused map each requested task's head reads (task -> (B, fusion_channels, H/2, W/2)),
        from ONE encoder pass; `heads` restricts the run to a subset of the enabled heads (e.g.
        only "depth" when nobody wants labels): the necks of the other tasks are skipped."""
        tasks = self._tasks(heads)
        features, grid = self.encoder(pixel_values)
        needed_necks = {self.config.neck_for(task) for task in tasks}
        fused = {name: neck(features, grid) for name, neck in self.necks.items() if name in needed_necks}
        return {task: fused[self.config.neck_for(task)] for task in tasks}

    def forward(
        self, pixel_values: torch.Tensor, heads: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Task outputs at the input resolution for the enabled heads (or the subset `heads`)."""
        fused = self.forward_features(pixel_values, heads)
        out = {task: self.heads[task](features) for task, features in fused.items()}
        if self.aux_head is not None and self.training and "segmentation" in fused:
            out["aux"] = self.aux_head(fused["segmentation"])
        return out

    def _tasks(self, heads: Sequence[str] | None) -> list[str]:
        tasks = list(self.heads) if heads is None else [t for t in self.heads if t in heads]
        if heads is not None and len(tasks) != len(set(heads)):
            raise ValueError(
                f"heads={list(heads)} asks for a head this model lacks; it has {list(self.heads)}"
            )
        return tasks

    def depth_to_metric(self, inverse_depth: torch.Tensor) -> torch.Tensor:
        return depth_to_metric(inverse_depth, self.config.depth_scale, self.config.depth_shift)
