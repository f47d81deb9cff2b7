"""`resolve_device`: the one reading of a device name ("auto", "cpu", "cuda", "cuda:N") for the
PerceptionPipeline, the inference engines, the node and the training / evaluation loops."""

from __future__ import annotations

import torch

DEVICE_NAMES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def resolve_device(device: str | torch.device, local_rank: int | None = None) -> torch.device:
    """"auto" -> CUDA when available, else CPU; explicit CUDA without a GPU is a ValueError.

    local_rank: for a process of a multi-GPU job (torchrun's LOCAL_RANK): a CUDA device without an
    index becomes this rank's GPU (local_rank modulo the GPU count), made the current device."""
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"unknown device {device!r}; expected {DEVICE_NAMES}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use 'auto' or 'cpu')")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; expected {DEVICE_NAMES}")
    if local_rank is not None and dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev
