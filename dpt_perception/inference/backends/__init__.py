"""Inference backends behind the PerceptionPipeline: PyTorch eager / torch.compile (fp32, fp16, bf16,
channels-last, CUDA graphs), onnxruntime and TensorRT, all called like the model
(`engine(pixel_values) -> {"depth", "segmentation"}`), so `inference.pipeline.PerceptionPipeline`
runs any of them in place of the model.

`make_engine(model, backend, ...)` builds any of them; heavy imports (onnxruntime, tensorrt)
happen only when their backend is requested.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .base import Engine
from .precision import PRECISION_MODES, PRECISIONS

BACKENDS = ("eager", "compiled", "onnxruntime", "tensorrt")

__all__ = ["BACKENDS", "PRECISIONS", "PRECISION_MODES", "Engine", "make_engine", "onnx_for_model"]


def onnx_for_model(
    model,
    shape: tuple[int, int, int, int] | None = None,
    cache_dir: str | Path | None = None,
    dynamic: bool | None = None,
) -> Path:
    """An ONNX export of `model`, reused from the cache when the same weights were exported
    before at the same size. shape=None exports with a dynamic size."""
    from dpt_perception.inference.export import export_onnx, weights_sha256

    from .tensorrt_engine import default_cache_dir

    dynamic = shape is None if dynamic is None else dynamic
    b, _, h, w = shape if shape is not None else (1, 3, *model.config.net_size)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
    tag = "dyn" if dynamic else f"{b}x{h}x{w}"
    path = root / f"dpt-{weights_sha256(model)[:16]}-{tag}.onnx"
    if not path.is_file():
        # Export from CPU fp32 weights without moving the caller's model off its device.
        on_cpu = all(p.device.type == "cpu" for p in model.parameters())
        source = model if on_cpu else copy.deepcopy(model).cpu()
        export_onnx(source.eval(), path, h, w, dynamic=dynamic, batch_size=b)
    return path


def make_engine(
    model,
    backend: str = "eager",
    device="cpu",
    precision: str = "fp32",
    *,
    onnx_path: str | Path | None = None,
    shape: tuple[int, int, int, int] | None = None,
    onnx_cache_dir: str | Path | None = None,
    **options,
) -> Engine:
    """Build an engine.

    backend: "eager" | "compiled" (TorchEngine options: precision_mode, channels_last, freezing,
        compile_mode, cuda_graphs, max_graph_shapes) | "onnxruntime" | "tensorrt".
    For the ONNX-based backends `model` may be None when `onnx_path` is given; otherwise the
    model is exported first (at `shape` = (B,3,H,W), or with a dynamic size when shape is None)
    into `onnx_cache_dir` (default <cache>/onnx), or reused from there.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if backend in ("eager", "compiled"):
        if model is None:
            raise ValueError(f"the {backend} backend needs a model")
        from .torch_engine import TorchEngine

        return TorchEngine(
            model, device=device, precision=precision, compile=backend == "compiled", **options
        )
    if onnx_path is None:
        if model is None:
            raise ValueError(f"the {backend} backend needs a model or an onnx_path")
        onnx_path = onnx_for_model(model, shape, cache_dir=onnx_cache_dir)
    config = model.config if model is not None else None
    if backend == "onnxruntime":
        from .onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(onnx_path, device=device, precision=precision, config=config, **options)
    from .tensorrt_engine import TensorRTEngine

    return TensorRTEngine(onnx_path, device=device, precision=precision, config=config, **options)
