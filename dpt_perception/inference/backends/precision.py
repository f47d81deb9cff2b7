"""Precision names shared by every backend, and the rules for where each one is allowed."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# "autocast": fp32 weights, matmuls/convs run in the low precision (accuracy-preserving ops such as
# softmax and layer norms stay fp32). "weights": the weights themselves are converted (half the
# weight memory, no per-call casts; reductions run in the low precision too).
PRECISION_MODES = ("autocast", "weights")


def check_precision(precision: str, device: torch.device, mode: str = "autocast") -> torch.dtype:
    """Validate a precision for a device; returns its torch dtype."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {tuple(PRECISIONS)}")
    if mode not in PRECISION_MODES:
        raise ValueError(f"unknown precision mode {mode!r}; expected one of {PRECISION_MODES}")
    if precision == "fp16" and device.type != "cuda":
        # CPU fp16 kernels are missing or far slower than fp32; bf16 is the CPU low precision.
        raise ValueError(f"precision 'fp16' needs a CUDA device, got {device}; on CPU use 'bf16' or 'fp32'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision 'bf16' is not supported by {torch.cuda.get_device_name(device)}; use 'fp16'"
        )
    return PRECISIONS[precision]


def autocast_context(precision: str, device: torch.device):
    """An autocast context for a low precision, or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])
