"""PyTorch backends: eager and `torch.compile`d, fp32 / fp16 / bf16, optional channels-last
layout and CUDA graphs.

Precision modes (see `precision.py`): "autocast" keeps fp32 weights and lets autocast pick the
low-precision ops; "weights" converts a copy of the model to the low precision. The caller's
model is never modified: any conversion (dtype, layout, device) is done on a deep copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from dpt_perception.model.devices import resolve_device

from .base import Engine
from .cuda_graphs import CUDAGraphRunner
from .precision import autocast_context


class TorchEngine(Engine):
    """Eager PyTorch (optionally compiled) around a `DPT`.

    Args:
        model: a `DPT` (any module with `.config` and the DPT forward contract).
        device: "cpu" | "cuda" | "cuda:N" | "auto".
        precision: "fp32" | "fp16" (CUDA only) | "bf16".
        precision_mode: "autocast" or "weights" (ignored for fp32).
        channels_last: run convolutions in NHWC layout (helps on CPU oneDNN and on tensor cores).
        compile: wrap the forward in `torch.compile` (inductor); the first call per input shape
            compiles (tens of seconds for a full-size model), later calls reuse it.
        compile_mode: `torch.compile` mode ("default", "max-autotune", ...). With CUDA graphs
            enabled here, do not also use "reduce-overhead" (that mode captures its own graphs).
        freezing: inductor freezing (weights become constants, conv/bn folding, prepacked
            oneDNN weights on CPU); inference only.
        cuda_graphs: replay a captured CUDA graph per input shape (CUDA only).
        max_graph_shapes: CUDA graphs cached at once.
    """

    def __init__(
        self,
        model: nn.Module,
        device="cpu",
        precision: str = "fp32",
        precision_mode: str = "autocast",
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
        freezing: bool = False,
        cuda_graphs: bool = False,
        max_graph_shapes: int = 4,
    ):
        if not hasattr(model, "config"):
            raise TypeError(f"model must be a DPT with a .config, got {type(model).__name__}")
        dev = resolve_device(device)
        super().__init__(model.config, dev, precision, precision_mode)
        if cuda_graphs and dev.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a CUDA device, got {dev}")
        if freezing and not compile:
            raise ValueError("freezing is an inductor option: it needs compile=True")
        self.precision_mode = precision_mode if precision != "fp32" else "autocast"
        self.channels_last = channels_last
        self.compiled = compile
        self.name = "compiled" if compile else "eager"
        convert_dtype = self.precision_mode == "weights"
        needs_copy = convert_dtype or channels_last or _model_device(model) != dev
        self.model = copy.deepcopy(model) if needs_copy else model
        self.model.eval().to(dev)
        if convert_dtype:
            self.model.to(self.dtype)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.input_dtype = self.dtype if convert_dtype else torch.float32
        self._forward_fn = self.model
        if compile:
            options = {"freezing": True} if freezing else None
            self._forward_fn = torch.compile(self.model, mode=compile_mode, dynamic=False, options=options)
        self._graphs = CUDAGraphRunner(self._inner, max_shapes=max_graph_shapes) if cuda_graphs else None

    def _inner(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # Autocast's weight-cast cache must be off inside CUDA graph capture (cached casts would
        # live outside the graph's memory pool).
        ctx = (
            torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=self._graphs is None)
            if self.precision != "fp32" and self.precision_mode == "autocast"
            else autocast_context("fp32", self.device)
        )
        with ctx:
            return self._forward_fn(x)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.input_dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def _run(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self._prepare(pixel_values)
        if self._graphs is not None:
            return self._graphs(x)
        return self._inner(x)

    def describe(self) -> str:
        extras = [self.precision_mode] if self.precision != "fp32" else []
        if self.channels_last:
            extras.append("channels_last")
        if self._graphs is not None:
            extras.append("cuda_graphs")
        return (
            f"{self.name}/{self.precision}{'(' + ','.join(extras) + ')' if extras else ''} on {self.device}"
        )


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
