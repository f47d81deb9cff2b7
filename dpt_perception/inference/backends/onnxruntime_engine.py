"""onnxruntime backend: runs an exported DPT ONNX file (see `dpt_perception.inference.export`).

Execution providers: CPU here; on a CUDA device the CUDA provider, and the TensorRT provider
first when onnxruntime was built with it (its engines are cached on disk next to our own
TensorRT engines). On CUDA the input and outputs stay on the GPU (I/O binding to torch tensors),
so no host round trip happens inside the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dpt_perception.model import DPTConfig

from .base import Engine

INPUT_NAME = "pixel_values"


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def default_providers(
    device: torch.device, precision: str, use_tensorrt: bool = True, trt_cache_dir: str | Path | None = None
) -> list:
    """Provider list (with options) for a device, best first."""
    have = available_providers()
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in have:
        raise RuntimeError(
            f"onnxruntime on {device} needs the CUDA execution provider (package "
            f"onnxruntime-gpu); this onnxruntime has only {have}"
        )
    index = device.index or 0
    providers: list = []
    if use_tensorrt and "TensorrtExecutionProvider" in have:
        from .tensorrt_engine import default_cache_dir

        cache = Path(trt_cache_dir) if trt_cache_dir else default_cache_dir() / "onnxruntime_trt"
        cache.mkdir(parents=True, exist_ok=True)
        providers.append(
            (
                "TensorrtExecutionProvider",
                {
                    "device_id": index,
                    "trt_fp16_enable": precision == "fp16",
                    "trt_bf16_enable": precision == "bf16",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(cache),
                },
            )
        )
    providers.append(("CUDAExecutionProvider", {"device_id": index}))
    providers.append("CPUExecutionProvider")
    return providers


class OnnxRuntimeEngine(Engine):
    """Engine over an ONNX file written by `export_onnx`.

    Args:
        onnx_path: the exported file; its metadata holds the DPT config unless `config` is given.
        device: "cpu" or a CUDA device.
        precision: "fp32" everywhere; "fp16"/"bf16" only through the TensorRT provider (the
            exported graph itself is fp32).
        providers: explicit onnxruntime providers (overrides the device default).
        threads: CPU intra-op threads (default: torch's thread count).
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        device="cpu",
        precision: str = "fp32",
        config: DPTConfig | None = None,
        providers: list | None = None,
        threads: int | None = None,
        use_tensorrt: bool = True,
        trt_cache_dir: str | Path | None = None,
    ):
        import onnxruntime as ort

        from dpt_perception.inference.export import read_metadata

        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"ONNX file {path} does not exist; create it with `python -m dpt_perception.inference.export`"
            )
        meta = read_metadata(path)
        if config is None:
            if "dpt_config" not in meta:
                raise ValueError(
                    f"{path} has no dpt_config metadata (not written by our exporter); pass config="
                )
            config = DPTConfig.from_dict(json.loads(meta["dpt_config"]))
        dev = torch.device(device)
        super().__init__(config, dev, precision)
        if providers is None:
            providers = default_providers(dev, precision, use_tensorrt, trt_cache_dir)
        names = [p if isinstance(p, str) else p[0] for p in providers]
        if precision != "fp32" and "TensorrtExecutionProvider" not in names:
            raise ValueError(
                f"onnxruntime runs the exported fp32 graph; precision {precision!r} needs the "
                f"TensorRT execution provider, which is not in use ({names})"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or max(1, torch.get_num_threads())
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.providers = self.session.get_providers()
        self.path = path
        self.output_names = [o.name for o in self.session.get_outputs()]
        unknown = [n for n in self.output_names if n not in ("depth", "segmentation")]
        if unknown:
            raise ValueError(
                f"{path} has outputs {self.output_names}; expected 'depth' and/or 'segmentation'"
            )
        self.heads = tuple(self.output_names)
        self.input_shape = list(self.session.get_inputs()[0].shape)  # ints, or strings for symbolic dims
        seg = [o for o in self.session.get_outputs() if o.name == "segmentation"]
        self.num_classes = seg[0].shape[1] if seg and isinstance(seg[0].shape[1], int) else config.num_classes

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        for axis, (want, got) in enumerate(zip(self.input_shape, x.shape)):
            if isinstance(want, int) and want != got:
                raise ValueError(
                    f"{self.path.name} was exported with a fixed input shape {self.input_shape}; got "
                    f"{tuple(x.shape)} (axis {axis}). Re-export at this size or with --dynamic."
                )

    def _output_shape(self, name: str, x: torch.Tensor) -> tuple[int, ...]:
        b, _, h, w = x.shape
        return (b, h, w) if name == "depth" else (b, self.num_classes, h, w)

    def _run(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        x = pixel_values.detach().float().contiguous()
        if self.device.type == "cpu":
            results = self.session.run(self.output_names, {INPUT_NAME: x.numpy()})
            return {n: torch.from_numpy(r) for n, r in zip(self.output_names, results)}
        # CUDA: bind torch memory directly; torch's pending work on the input must be done first.
        index = x.device.index or 0
        torch.cuda.current_stream(x.device).synchronize()
        binding = self.session.io_binding()
        binding.bind_input(INPUT_NAME, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        outputs = {}
        for name in self.output_names:
            out = torch.empty(self._output_shape(name, x), dtype=torch.float32, device=x.device)
            binding.bind_output(name, "cuda", index, np.float32, tuple(out.shape), out.data_ptr())
            outputs[name] = out
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return outputs

    def describe(self) -> str:
        return f"onnxruntime/{self.precision} on {self.device} ({self.providers[0]})"
