"""TensorRT backend: engines built from the exported ONNX file, cached on disk.

Building a TensorRT engine takes minutes for a full-size DPT, and an engine only runs on the GPU
model and TensorRT version it was built with, for the input shape(s) of its optimisation
profile. So engines are cached under
    <cache>/tensorrt/<onnx stem>-<onnx sha256[:16]>-<B>x<H>x<W>-<precision>-<gpu>-trt<version>.engine
(the cache directory is $DPT_PERCEPTION_CACHE or ~/.cache/dpt_perception): changing the weights,
the size, the precision, the GPU or TensorRT builds a new engine; everything else reuses it.
One engine per input shape (like the CUDA graphs): a resolution change builds or loads another.

The `tensorrt` Python package is optional; without it (or without CUDA) constructing the engine
raises a clear error and nothing else in the package is affected.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from dpt_perception.caches import LRUCache
from dpt_perception.model import DPTConfig

from .base import Engine

INPUT_NAME = "pixel_values"


def default_cache_dir() -> Path:
    from dpt_perception.inference.weights import default_cache_dir as weights_cache

    return weights_cache()


def onnx_sha256(path: str | Path) -> str:
    """Hash of the ONNX file and, when present, its external-data file(s) next to it."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] + sorted(p for p in path.parent.glob(path.name + "*.data"))
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def engine_cache_path(
    onnx_path: str | Path,
    shape: tuple[int, int, int, int],
    precision: str,
    gpu_name: str,
    trt_version: str,
    cache_dir: str | Path | None = None,
) -> Path:
    """Where the engine for this (model, shape, precision, GPU, TensorRT version) lives."""
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"unknown TensorRT precision {precision!r}; expected fp32, fp16 or bf16")
    if len(shape) != 4:
        raise ValueError(f"shape must be (B, 3, H, W), got {shape}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "tensorrt"
    gpu = re.sub(r"[^A-Za-z0-9]+", "_", gpu_name).strip("_") or "gpu"
    b, _, h, w = shape
    stem = Path(onnx_path).stem
    return (
        root / f"{stem}-{onnx_sha256(onnx_path)[:16]}-{b}x{h}x{w}-{precision}-{gpu}-trt{trt_version}.engine"
    )


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ImportError(
            "the TensorRT backend needs the optional `tensorrt` Python package (NVIDIA); "
            "install it matching your CUDA version, or use the onnxruntime / torch backends"
        ) from exc
    if not torch.cuda.is_available():
        raise RuntimeError("the TensorRT backend needs a CUDA device; none is available")
    return trt


def build_engine_file(
    onnx_path: str | Path,
    shape: tuple[int, int, int, int],
    precision: str = "fp16",
    cache_dir: str | Path | None = None,
    workspace_gib: float = 4.0,
    device_index: int = 0,
) -> Path:
    """Build (or find in the cache) a serialized engine for one input shape; returns its path."""
    trt = _import_tensorrt()
    gpu_name = torch.cuda.get_device_name(device_index)
    target = engine_cache_path(onnx_path, tuple(shape), precision, gpu_name, trt.__version__, cache_dir)
    if target.is_file():
        return target
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if (
        hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
        and int(trt.__version__.split(".")[0]) < 10
    ):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        if not hasattr(trt.BuilderFlag, "BF16"):
            raise RuntimeError(f"TensorRT {trt.__version__} has no bf16 support; use fp16")
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    shape = tuple(int(s) for s in shape)
    profile.set_shape(INPUT_NAME, shape, shape, shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path} at {shape} ({precision})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(target)  # atomic: a crashed build never leaves a truncated engine in the cache
    return target


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.int8: torch.int8,
        trt.bool: torch.bool,
    }
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dtype not in table:
        raise RuntimeError(f"unsupported TensorRT tensor type {dtype}")
    return table[dtype]


class TensorRTEngine(Engine):
    """Runs cached TensorRT engines built from an exported ONNX file (one per input shape).

    Args:
        onnx_path: a file written by `export_onnx` (fixed or dynamic size).
        device: a CUDA device.
        precision: "fp16" (default), "bf16" or "fp32" (TensorRT's builder precision flags).
        cache_dir: engine cache directory (default <cache>/tensorrt).
        max_engines: engines kept in GPU memory at once (each holds its own workspace).
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | Path,
        device="cuda",
        precision: str = "fp16",
        config: DPTConfig | None = None,
        cache_dir: str | Path | None = None,
        workspace_gib: float = 4.0,
        max_engines: int = 2,
    ):
        self._trt = _import_tensorrt()
        from dpt_perception.inference.export import read_metadata

        self.path = Path(onnx_path)
        if config is None:
            meta = read_metadata(self.path)
            if "dpt_config" not in meta:
                raise ValueError(
                    f"{self.path} has no dpt_config metadata (not written by our exporter); pass config="
                )
            config = DPTConfig.from_dict(json.loads(meta["dpt_config"]))
        dev = torch.device(device)
        if dev.type != "cuda":
            raise ValueError(f"the TensorRT backend runs on CUDA devices only, got {device}")
        super().__init__(config, dev, precision)
        self.cache_dir = cache_dir
        self.workspace_gib = workspace_gib
        self.max_engines = max_engines
        self._logger = self._trt.Logger(self._trt.Logger.WARNING)
        self._runtime = self._trt.Runtime(self._logger)
        self._contexts = LRUCache("trt_engines", max_engines)  # shape -> (engine, context)

    def _context_for(self, shape: tuple[int, ...]):
        entry = self._contexts.get(shape)
        if entry is None:
            path = build_engine_file(
                self.path, shape, self.precision, self.cache_dir, self.workspace_gib, self.device.index or 0
            )
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise RuntimeError(f"TensorRT could not load {path}; delete it to rebuild")
            context = engine.create_execution_context()
            context.set_input_shape(INPUT_NAME, shape)
            entry = (engine, context)
            self._contexts.put(shape, entry)
        return entry

    def _run(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        trt = self._trt
        x = pixel_values.detach().to(self.device, torch.float32).contiguous()
        engine, context = self._context_for(tuple(x.shape))
        context.set_tensor_address(INPUT_NAME, x.data_ptr())
        outputs = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
                continue
            out = torch.empty(
                tuple(context.get_tensor_shape(name)),
                device=self.device,
                dtype=_torch_dtype(trt, engine.get_tensor_dtype(name)),
            )
            context.set_tensor_address(name, out.data_ptr())
            outputs[name] = out
        stream = torch.cuda.current_stream(self.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution failed for input {tuple(x.shape)}")
        return outputs  # ordered on torch's current stream: later torch ops see finished results
