"""Initialise our encoder from an ImageNet ViT / ViT-Hybrid state dict in timm naming.

Our encoder uses timm's names, so this only drops the classifier, resamples `pos_embed` when the
pre-training grid differs from the config's, and loads strictly. Note the weight-standardisation
numerics of the hybrid stay those of the model config (timm 0.4.5 weights: "official").
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..vit import VisionTransformer, resample_position_grid
from .common import load_state_dict_checked, read_state_dict

_CLASSIFIER = re.compile(r"^(head|head_drop|pre_logits|fc_norm|patch_embed\.backbone\.head)\.|^head\.")


def timm_to_encoder_state_dict(
    sd: dict[str, torch.Tensor], encoder: VisionTransformer
) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        if key.startswith("module."):  # DataParallel-wrapped exports
            key = key[len("module.") :]
        if _CLASSIFIER.match(key):
            continue
        out[key] = value
    pos = out.get("pos_embed")
    if (
        pos is not None
        and pos.shape != encoder.pos_embed.shape
        and pos.shape[-1] == encoder.pos_embed.shape[-1]
    ):
        side = int(round((encoder.pos_embed.shape[1] - 1) ** 0.5))
        out["pos_embed"] = resample_position_grid(pos.float(), 1, (side, side)).to(pos.dtype)
    return out


def init_encoder_from_timm(
    model_or_encoder: nn.Module, source: str | Path | dict[str, torch.Tensor], strict: bool = True
) -> nn.Module:
    """Load timm ImageNet weights into `model.encoder` (or an encoder); returns the encoder."""
    encoder = getattr(model_or_encoder, "encoder", model_or_encoder)
    if not isinstance(encoder, VisionTransformer):
        raise TypeError(f"expected a DPT or its VisionTransformer encoder, got {type(model_or_encoder)}")
    if isinstance(source, dict):
        sd, name = source, "timm state dict"
    else:
        sd, name = read_state_dict(source), str(source)
    converted = timm_to_encoder_state_dict(sd, encoder)
    load_state_dict_checked(encoder, converted, name, strict=strict, original_keys=sd.keys())
    return encoder
