"""Adam with separate encoder/decoder learning rates and a warm-up + decay schedule."""

from __future__ import annotations

import math

import torch
from torch import nn


def split_parameters(model: nn.Module, freeze_encoder: bool) -> tuple[list, list]:
    """(encoder params, decoder params) among those that train. ``model.encoder`` is the
    encoder; everything else is the decoder. A frozen encoder gets ``requires_grad=False``."""
    if not hasattr(model, "encoder"):
        raise AttributeError(
            f"{type(model).__name__} has no 'encoder' attribute; the split learning rates need it"
        )
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    if freeze_encoder:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    decoder = [p for p in model.parameters() if id(p) not in encoder_ids and p.requires_grad]
    return encoder, decoder


def build_optimizer(
    model: nn.Module,
    lr_encoder: float,
    lr_decoder: float,
    weight_decay: float = 0.0,
    betas=(0.9, 0.999),
    freeze_encoder: bool = False,
    eps: float = 1e-8,
) -> torch.optim.Adam:
    encoder, decoder = split_parameters(model, freeze_encoder)
    groups = []
    if encoder:
        groups.append({"params": encoder, "lr": lr_encoder, "name": "encoder"})
    if decoder:
        groups.append({"params": decoder, "lr": lr_decoder, "name": "decoder"})
    if not groups:
        raise ValueError("no trainable parameters (is everything frozen?)")
    return torch.optim.Adam(groups, betas=tuple(betas), weight_decay=weight_decay, eps=eps)


def lr_factor(
    step: int,
    max_steps: int,
    warmup_steps: int,
    schedule: str,
    warmup_start_factor: float = 0.01,
    poly_power: float = 0.9,
    min_lr_ratio: float = 0.0,
) -> float:
    """Learning-rate multiplier for optimizer step ``step`` (0-based).

    Linear warm-up from ``warmup_start_factor`` to 1 over ``warmup_steps``; then "cosine"
    (half cosine down to ``min_lr_ratio``), "poly" (``(1 - progress)**poly_power`` scaled into
    ``[min_lr_ratio, 1]``) or "constant".
    """
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    if schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "poly":
        shape = (1.0 - progress) ** poly_power
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected cosine, poly or constant")
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    max_steps: int,
    warmup_steps: int,
    schedule: str,
    warmup_start_factor: float = 0.01,
    poly_power: float = 0.9,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        return lr_factor(
            step, max_steps, warmup_steps, schedule, warmup_start_factor, poly_power, min_lr_ratio
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
