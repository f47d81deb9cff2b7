"""Export a DPT model to ONNX and check the exported file against PyTorch.

    python -m dpt_perception.inference.export --weights dpt_hybrid_midas --output dpt.onnx
    ros2 run dpt_perception export --config tiny --dynamic --output tiny.onnx

The ONNX graph has one input "pixel_values" (B,3,H,W float32, normalised like the model's
config) and one output per enabled head, named "depth" (B,H,W) and "segmentation" (B,C,H,W).
The input size is fixed (the default, what TensorRT likes best) or dynamic (batch, height and
width symbolic). The model's config, heads, input size and a hash of its weights are stored in
the file's metadata so the runtime backends can rebuild the PerceptionPipeline settings from the file
alone. After export the file is run with onnxruntime on the same inputs as PyTorch, the max
error is printed, and the export fails (exit code 1) when it exceeds the tolerance.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dpt_perception.command_line import program_name
from dpt_perception.inference.backends.model_configs import CONFIG_NAMES, config_by_name, parse_heads

INPUT_NAME = "pixel_values"
MIN_OPSET = 17
DEFAULT_OPSET = 18
EXPORTERS = ("dynamo", "torchscript")
METADATA_KEYS = ("dpt_config", "dpt_heads", "dpt_input_shape", "dpt_dynamic", "dpt_weights_sha256")


class ExportError(RuntimeError):
    """The export failed or the exported model does not match PyTorch within tolerance."""


class _TupleOutputs(nn.Module):
    """ONNX outputs are positional: return the enabled heads in a fixed order (depth, seg)."""

    def __init__(self, model: nn.Module, heads: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.heads = heads

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(pixel_values)
        return tuple(out[h] for h in self.heads)


def weights_sha256(model: nn.Module) -> str:
    """Hash of the parameters and buffers (names, shapes, dtypes and values). Uses the module's
    de-duplicated parameter list, so a tensor registered under two names counts once."""
    digest = hashlib.sha256()
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    for name, tensor in sorted(tensors.items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass
class VerifyReport:
    shapes: list[tuple[int, ...]]
    max_abs_error: dict[str, float] = field(default_factory=dict)
    allowed: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.max_abs_error[k] <= self.allowed[k] for k in self.max_abs_error)

    def lines(self) -> list[str]:
        return [
            f"  {name}: max |onnx - torch| = {err:.3e} (allowed {self.allowed[name]:.3e}) "
            f"{'ok' if err <= self.allowed[name] else 'TOO LARGE'}"
            for name, err in self.max_abs_error.items()
        ]


def _example_input(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Normalised-range pixels ((x/255 - 0.5) / 0.5 lies in [-1, 1]), reproducible."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen) * 2 - 1


def export_onnx(
    model: nn.Module,
    path: str | Path,
    height: int,
    width: int,
    dynamic: bool = False,
    batch_size: int = 1,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    heads: tuple[str, ...] | None = None,
    max_batch: int = 64,
) -> Path:
    """Write `model` (a DPT, fp32, CPU) to `path` as ONNX; returns the path.

    dynamic: batch, height and width become symbolic (any multiple of 32 at run time); the
    example used for tracing is then at least batch 2 because torch.export specialises size-1
    dimensions. max_batch: upper bound of the symbolic batch (dynamo exporter).
    """
    path = Path(path)
    config = model.config
    heads = tuple(h for h in ("depth", "segmentation") if h in (heads or config.heads))
    missing = [h for h in heads if h not in config.heads]
    if missing or not heads:
        raise ValueError(f"cannot export heads {missing or heads}: the model has {config.heads}")
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise ValueError(f"export size must be positive multiples of 32, got {height}x{width}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (LayerNorm and friends), got {opset}")
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; expected one of {EXPORTERS}")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    model = model.eval()
    wrapper = _TupleOutputs(model, heads).eval()
    if dynamic and (height, width) == (config.image_size, config.image_size):
        # At the position-embedding grid's own size the resampling step is skipped and tracing
        # would bake that branch in: trace one size off so every size takes the resampling path.
        width += 32
    example = _example_input((max(batch_size, 2) if dynamic else batch_size, 3, height, width), seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict = dict(input_names=[INPUT_NAME], output_names=list(heads), opset_version=opset)
    if exporter == "dynamo":
        if dynamic:
            dim = torch.export.Dim
            kwargs["dynamic_shapes"] = {
                INPUT_NAME: {0: dim("batch", min=1, max=max_batch), 2: dim.DYNAMIC, 3: dim.DYNAMIC}
            }
        with torch.no_grad():
            program = torch.onnx.export(wrapper, (example,), dynamo=True, verbose=False, **kwargs)
        program.save(str(path))
    else:
        if dynamic:
            axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
            axes.update(
                {
                    h: (
                        {0: "batch", 1: "height", 2: "width"}
                        if h == "depth"
                        else {0: "batch", 2: "height", 3: "width"}
                    )
                    for h in heads
                }
            )
            kwargs["dynamic_axes"] = axes
        with torch.no_grad():
            torch.onnx.export(wrapper, (example,), str(path), dynamo=False, **kwargs)
    _write_metadata(path, model, heads, (height, width), dynamic)
    return path


def _write_metadata(path: Path, model: nn.Module, heads, size, dynamic: bool) -> None:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    meta = {
        "dpt_config": json.dumps(model.config.to_dict()),
        "dpt_heads": ",".join(heads),
        "dpt_input_shape": f"{size[0]}x{size[1]}",
        "dpt_dynamic": "1" if dynamic else "0",
        "dpt_weights_sha256": weights_sha256(model),
    }
    kept = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The dpt_* metadata of an exported file (empty dict for foreign ONNX files)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith("dpt_")}


def verify_onnx(
    path: str | Path,
    model: nn.Module,
    shapes: list[tuple[int, ...]],
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 1,
) -> VerifyReport:
    """Run the ONNX file (onnxruntime, CPU) and the PyTorch model on the same inputs.

    An output passes when max |onnx - torch| <= atol + rtol * max |torch| (over all shapes).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    report = VerifyReport(shapes=list(shapes))
    scale: dict[str, float] = {}
    model = model.eval()
    for i, shape in enumerate(shapes):
        x = _example_input(tuple(shape), seed=seed + i)
        with torch.inference_mode():
            ref = model(x)
        got = dict(zip(names, session.run(names, {INPUT_NAME: x.numpy()})))
        for name in names:
            r = ref[name].float().numpy()
            if got[name].shape != r.shape:
                raise ExportError(
                    f"ONNX output {name!r} has shape {got[name].shape} for input {shape}, "
                    f"PyTorch gives {r.shape}"
                )
            err = float(np.abs(got[name] - r).max())
            report.max_abs_error[name] = max(err, report.max_abs_error.get(name, 0.0))
            scale[name] = max(float(np.abs(r).max()), scale.get(name, 0.0))
    report.allowed = {name: atol + rtol * scale[name] for name in report.max_abs_error}
    return report


# ---- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=program_name("dpt_perception.inference.export", "export"),
        description="Export a DPT model (depth and/or segmentation head) to ONNX, check it against "
        "PyTorch with onnxruntime, and optionally build a TensorRT engine from it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--weights",
        metavar="NAME_OR_PATH",
        help="checkpoint to export: our format (.safetensors + .json), an official .pt file, "
        "a Hugging Face DPT directory or a preset name from the weights cache "
        "(anything dpt_perception.model.checkpoints.load_model accepts)",
    )
    src.add_argument(
        "--config",
        choices=CONFIG_NAMES,
        help="export an architecture with RANDOM weights instead (for benchmarks and tests)",
    )
    p.add_argument(
        "--heads",
        default="depth,segmentation",
        help="with --config: enabled heads, comma separated (depth, segmentation)",
    )
    p.add_argument("--output", "-o", required=True, type=Path, help="ONNX file to write")
    p.add_argument(
        "--height",
        type=int,
        default=None,
        help="network input height (multiple of 32); default: the model config's net_size",
    )
    p.add_argument(
        "--width",
        type=int,
        default=None,
        help="network input width (multiple of 32); default: the model config's net_size",
    )
    p.add_argument("--batch-size", type=int, default=1, help="batch size of a fixed-size export")
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="make batch, height and width dynamic (height/width still must be multiples of 32 "
        "at run time); without it the input size is fixed, which TensorRT optimises best",
    )
    p.add_argument("--max-batch", type=int, default=64, help="largest batch a dynamic export accepts")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    p.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="dynamo",
        help="torch.export-based exporter (dynamo) or the legacy TorchScript tracer",
    )
    p.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance of the PyTorch check")
    p.add_argument(
        "--rtol",
        type=float,
        default=1e-3,
        help="relative tolerance of the check, times the largest |output| of PyTorch",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-PyTorch check")
    p.add_argument(
        "--tensorrt",
        action="store_true",
        help="also build (or reuse) a TensorRT engine from the ONNX file for this GPU; needs the "
        "optional `tensorrt` package and a CUDA device",
    )
    p.add_argument(
        "--trt-precision", choices=("fp32", "fp16", "bf16"), default="fp16", help="TensorRT engine precision"
    )
    p.add_argument(
        "--trt-cache-dir",
        type=Path,
        default=None,
        help="TensorRT engine cache (default: $DPT_PERCEPTION_CACHE/tensorrt or "
        "~/.cache/dpt_perception/tensorrt)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and onnxruntime")
    return p


def _load(args) -> nn.Module:
    if args.weights:
        from dpt_perception.model.checkpoints import load_model

        return load_model(args.weights)
    from dpt_perception.model import DPT

    torch.manual_seed(0)
    return DPT(config_by_name(args.config, heads=parse_heads(args.heads)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = _load(args).eval()
        net_h, net_w = model.config.net_size
        height = args.height or net_h
        width = args.width or net_w
        t0 = time.perf_counter()
        path = export_onnx(
            model,
            args.output,
            height,
            width,
            dynamic=args.dynamic,
            batch_size=args.batch_size,
            opset=args.opset,
            exporter=args.exporter,
            max_batch=args.max_batch,
        )
        size = "dynamic batch/height/width" if args.dynamic else f"fixed {args.batch_size}x3x{height}x{width}"
        print(
            f"exported {path} ({size}, opset {args.opset}, outputs {','.join(model.config.heads)}) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        if not args.no_verify:
            shapes = [(args.batch_size, 3, height, width)]
            if args.dynamic:
                # A second batch size and a non-square size that differs from the traced one.
                shapes.append((2, 3, height + 64, max(32, width - 32)))
            report = verify_onnx(path, model, shapes, atol=args.atol, rtol=args.rtol)
            print(f"onnxruntime vs PyTorch on inputs {shapes}:")
            print("\n".join(report.lines()))
            if not report.ok:
                print(
                    f"error: the exported model differs from PyTorch by more than the tolerance "
                    f"(atol {args.atol}, rtol {args.rtol}); {path} should not be used. Try --exporter "
                    "torchscript or another --opset.",
                    file=sys.stderr,
                )
                return 1
        if args.tensorrt:
            from dpt_perception.inference.backends.tensorrt_engine import build_engine_file

            engine_path = build_engine_file(
                path, (args.batch_size, 3, height, width), args.trt_precision, cache_dir=args.trt_cache_dir
            )
            print(f"TensorRT engine: {engine_path}")
    except (ValueError, ExportError, RuntimeError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
