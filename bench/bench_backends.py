#!/usr/bin/env python3
"""Benchmark the inference backends in ONE run and print a markdown table.

Per backend spec (backend:precision[+option...]) it measures
  - model latency (engine forward on a fixed normalised input; mean, p50, p95, min),
  - end-to-end latency for a 640x480 uint8 frame (upload, resize, normalise, forward, depth
    upsampling, arg-max, download: `PerceptionPipeline.run`, the node's path), resized with the
    "fixed" rule to --size
    so the network input is the same as in the model-only timing,
  - throughput (images/s of the model forward at --batch),
  - peak memory: process RSS sampled during the backend's runs on CPU,
    torch.cuda.max_memory_allocated on GPU (allocations made by onnxruntime / TensorRT are not
    seen by torch),
  - ratios measured in the same run: to eager fp32, to the Hugging Face transformers DPT forward
    (DPTForDepthEstimation with the same architecture hyper-parameters, random weights), and to the
    FLOP limit = FLOPs / fp32 matmul peak (FLOPs from torch.utils.flop_counter.FlopCounterMode plus
    4*N^2*D per attention layer when the counter does not count attention itself, e.g. CPU SDPA;
    peak from 2048^3 fp32 matmuls),
  - agreement with eager fp32 on the benchmark input (depth relative error after least-squares
    scale/shift alignment, label agreement %).
All backends, the peer and a matmul probe are timed in interleaved rounds (one call each per
round), so load from other processes on a shared machine affects them alike; the peak is the
fastest probe. GPU timings use CUDA events. Example (the table in docs/benchmarks.md):
    python bench/bench_backends.py --config hybrid --size 384 --iters 10 --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpt_perception.inference.backends import make_engine  # noqa: E402
from dpt_perception.inference.backends.agreement import compare_outputs  # noqa: E402
from dpt_perception.inference.backends.model_configs import CONFIG_NAMES, config_by_name, parse_heads  # noqa: E402
from dpt_perception.inference.pipeline import PerceptionPipeline  # noqa: E402
from dpt_perception.model import DPT  # noqa: E402

DEFAULT_CPU_SPECS = (
    "eager:fp32,eager:fp32+channels_last,eager:bf16,eager:bf16+weights,"
    "compiled:fp32+freezing,compiled:bf16+freezing,onnxruntime:fp32"
)
DEFAULT_GPU_SPECS = (
    "eager:fp32,eager:fp16+channels_last,eager:bf16+channels_last,eager:fp16+cuda_graphs,"
    "compiled:fp16+channels_last,onnxruntime:fp32,tensorrt:fp16"
)
OPTION_FLAGS = {
    "channels_last": dict(channels_last=True),
    "weights": dict(precision_mode="weights"),
    "freezing": dict(freezing=True),
    "cuda_graphs": dict(cuda_graphs=True),
    "max_autotune": dict(compile_mode="max-autotune-no-cudagraphs"),
}


def parse_spec(spec: str) -> tuple[str, str, dict, str]:
    """ "compiled:bf16+freezing" -> ("compiled", "bf16", {"freezing": True}, spec)."""
    head, *flags = spec.strip().split("+")
    backend, _, precision = head.partition(":")
    options: dict = {}
    for flag in flags:
        if flag not in OPTION_FLAGS:
            raise SystemExit(f"unknown option {flag!r} in {spec!r}; known: {sorted(OPTION_FLAGS)}")
        options.update(OPTION_FLAGS[flag])
    return backend, precision or "fp32", options, spec.strip()


def parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    return int(parts[0]), int(parts[1])


# ---- timing and memory ---------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stats(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"mean": statistics.fmean(times), "p50": statistics.median(times), "p95": p95, "min": ordered[0]}


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """Samples the process RSS every few ms on a thread; `peak` is the max seen."""

    def __enter__(self):
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


# ---- the machine's limit and the model's FLOPs ----------------------------------------------------
def count_flops(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(total FLOPs, attention FLOPs added by hand) of one forward."""
    from torch.utils.flop_counter import FlopCounterMode

    attention_shapes = []
    hooks = [
        m.register_forward_hook(lambda _m, inp, _out: attention_shapes.append(tuple(inp[0].shape)))
        for m in model.modules()
        if type(m).__name__ == "Attention"
    ]
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    counted = counter.get_total_flops()
    ops = {str(k) for k in counter.get_flop_counts().get("Global", {})}
    if any("attention" in op for op in ops):
        return float(counted), 0.0
    extra = sum(4 * b * n * n * d for b, n, d in attention_shapes)  # QK^T and AV: 2 * 2*N^2*D
    return float(counted + extra), float(extra)


# ---- the Hugging Face peer -----------------------------------------------------------------------
def hf_peer(config, size: tuple[int, int]):
    """transformers DPTForDepthEstimation with our architecture, or (None, reason)."""
    try:
        from transformers import DPTConfig as HFConfig
        from transformers import DPTForDepthEstimation
    except ImportError as exc:
        return None, f"transformers unavailable ({exc})"
    if config.hidden_size < 64:
        return None, "no HF peer for tiny configs"
    if size[0] != size[1]:
        return None, "HF DPT runs only square inputs"
    hybrid = config.variant == "vit_hybrid"
    if hybrid and size != (384, 384):
        return None, "HF hybrid runs only 384x384"
    # The same architecture description our HF converter writes (one source of truth).
    from dpt_perception.model.checkpoints.hf import to_hf_config_dict

    hf = HFConfig(**to_hf_config_dict(config, "depth"))
    torch.manual_seed(0)
    return DPTForDepthEstimation(hf).eval(), ""


def time_once(fn, device: torch.device) -> float:
    """Milliseconds of one call (CUDA events on GPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def build_backend(
    model, config, backend, precision, options, x, frame, e2e_outputs, size, reference, args, device
) -> dict:
    """Build one engine, run it once (compiles / captures / builds) and measure its memory."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    onnx_based = backend in ("onnxruntime", "tensorrt")
    before = rss_mb()
    with PeakRss() as rss:
        t0 = time.perf_counter()
        extra = {"shape": tuple(x.shape) if args.batch == 1 else None} if onnx_based else {}
        engine = make_engine(model, backend, device=device, precision=precision, **extra, **options)
        out = engine(x)
        setup_s = time.perf_counter() - t0
        for _ in range(args.warmup):
            engine(x)
        sync(device)
    agreement = compare_outputs(out, reference)
    if device.type == "cuda":
        mem = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        mem = rss.peak
    pipe = None
    if not args.no_e2e and (args.batch == 1 or not onnx_based):
        pipe = PerceptionPipeline(engine, device=str(device), net_size=size, resize_rule="fixed")
        # Warm the end-to-end path too: its input is made under inference_mode, which a compiled
        # engine specialises on (one more compile on the first call).
        for _ in range(max(1, args.warmup)):
            pipe.run([frame], e2e_outputs)
    return dict(
        engine=engine,
        pipe=pipe,
        setup=setup_s,
        mem=mem,
        growth=rss_mb() - before,
        agreement=agreement,
        model_ms=[],
        e2e_ms=[],
    )


# ---- main ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=CONFIG_NAMES, default="hybrid", help="architecture (random weights)")
    p.add_argument(
        "--heads",
        default="depth",
        help="enabled heads, comma separated; 'depth' matches the HF peer (DPTForDepthEstimation)",
    )
    p.add_argument("--size", default="384", help="network input size: N or HxW (multiples of 32)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the model-latency timing")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first (compiles, captures)")
    p.add_argument(
        "--backends",
        default=None,
        help="comma list of backend:precision[+option...]; options: "
        + ", ".join(OPTION_FLAGS)
        + f". Default CPU: {DEFAULT_CPU_SPECS}; default GPU: {DEFAULT_GPU_SPECS}",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=2, help="torch / onnxruntime CPU threads")
    p.add_argument("--frame", default="480x640", help="end-to-end frame size HxW")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end timing")
    p.add_argument("--no-hf", action="store_true", help="skip the Hugging Face peer")
    p.add_argument(
        "--ratio-stat",
        choices=("min", "p50", "mean"),
        default="min",
        help="statistic the ratio columns use (min is the most robust on a shared machine)",
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    size = parse_size(args.size)
    frame_hw = parse_size(args.frame)
    specs = [
        parse_spec(s)
        for s in (args.backends or (DEFAULT_GPU_SPECS if device.type == "cuda" else DEFAULT_CPU_SPECS)).split(
            ","
        )
    ]
    config = config_by_name(args.config, heads=parse_heads(args.heads)).replace(net_size=list(size))
    torch.manual_seed(0)
    model = DPT(config).eval()
    x = (torch.rand((args.batch, 3, *size), generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    frame = np.random.default_rng(0).integers(0, 256, (*frame_hw, 3), dtype=np.uint8)
    e2e_outputs = tuple(o for o, h in (("depth", "depth"), ("labels", "segmentation")) if h in config.heads)
    flops, attn_flops = count_flops(model, x.cpu()[:1])
    flops *= args.batch
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"# DPT backends: config {args.config} ({n_params / 1e6:.1f} M params), "
        f"heads {','.join(config.heads)}, input {args.batch}x3x{size[0]}x{size[1]}, "
        f"e2e frame {frame_hw[0]}x{frame_hw[1]}"
    )
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device {device} ({gpu}), {args.threads} threads, torch {torch.__version__}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, iters {args.iters}"
    )

    with torch.inference_mode():
        reference = {k: v.float().cpu() for k, v in model.to(device)(x).items()}
    rows: dict[str, dict] = {}
    for backend, precision, options, spec in specs:
        try:
            rows[spec] = build_backend(
                model,
                config,
                backend,
                precision,
                options,
                x,
                frame,
                e2e_outputs,
                size,
                reference,
                args,
                device,
            )
        except Exception as exc:  # one failing backend must not hide the others' numbers
            print(f"{spec}: FAILED ({type(exc).__name__}: {exc})", flush=True)
            continue
        rows[spec]["is_eager_fp32"] = backend == "eager" and precision == "fp32" and not options
        print(
            f"{spec}: built in {rows[spec]['setup']:.1f} s; {rows[spec]['agreement'].summary()}", flush=True
        )

    peer = None
    if not args.no_hf:
        peer, why = hf_peer(config, size)
        if peer is None:
            print(f"HF peer: skipped ({why})")
        else:
            peer = peer.to(device)
    a = torch.randn(2048, 2048, device=device)
    b = torch.randn(2048, 2048, device=device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False

    # Interleaved rounds: every backend, the peer and the matmul probe run once per round, so
    # load from other processes on a shared machine hits all of them alike.
    hf_times, mm_times = [], []
    with torch.inference_mode():
        for _ in range(args.warmup):
            if peer is not None:
                peer(pixel_values=x)
        for _ in range(args.iters):
            mm_times.append(time_once(lambda: torch.mm(a, b), device))
            if peer is not None:
                hf_times.append(time_once(lambda: peer(pixel_values=x), device))
            for row in rows.values():
                engine = row["engine"]
                row["model_ms"].append(time_once(lambda: engine(x), device))  # noqa: B023
                if row["pipe"] is not None:
                    pipe = row["pipe"]
                    row["e2e_ms"].append(time_once(lambda: pipe.run([frame], e2e_outputs), device))  # noqa: B023
    peak = 2 * 2048**3 / (min(mm_times) / 1e3)
    limit_ms = flops / peak * 1e3
    # Ratios use the per-backend MINIMUM: on a shared machine the fastest of interleaved runs is the
    # best estimate of the uncontended time (means and p95 carry the other processes' load).
    stat = args.ratio_stat
    hf_ms = stats(hf_times)[stat] if hf_times else None
    print(
        f"fp32 matmul peak {peak / 1e9:.0f} GFLOP/s; forward {flops / 1e9:.1f} GFLOP "
        f"(attention by hand {attn_flops * args.batch / 1e9:.1f}); FLOP limit {limit_ms:.0f} ms"
    )
    if hf_ms:
        hs = stats(hf_times)
        print(
            f"HF DPTForDepthEstimation: min {hs['min']:.1f} ms, p50 {hs['p50']:.1f} ms, "
            f"FLOP-limit ratio ({stat}) {hf_ms / limit_ms:.2f}"
        )
    eager_ms = next((stats(r["model_ms"])[stat] for r in rows.values() if r["is_eager_fp32"]), None)
    print()

    mem_label = "peak GPU MiB (torch)" if device.type == "cuda" else "peak RSS MiB (+engine)"
    print(
        f"\n| backend | model mean ms | p50 | p95 | min | e2e mean ms | e2e p50 | img/s | {mem_label} | "
        f"vs eager fp32 ({stat}) | vs HF ({stat}) | vs FLOP limit ({stat}) | depth err | labels % |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for spec, r in rows.items():
        t = stats(r["model_ms"])
        e = stats(r["e2e_ms"]) if r["e2e_ms"] else None
        a = r["agreement"]
        cells = [
            spec,
            f"{t['mean']:.1f}",
            f"{t['p50']:.1f}",
            f"{t['p95']:.1f}",
            f"{t['min']:.1f}",
            f"{e['mean']:.1f}" if e else "-",
            f"{e['p50']:.1f}" if e else "-",
            f"{1e3 * args.batch / t['mean']:.2f}",
            f"{r['mem']:.0f} (+{r['growth']:.0f})" if device.type == "cpu" else f"{r['mem']:.0f}",
            f"{t[stat] / eager_ms:.2f}" if eager_ms else "-",
            f"{t[stat] / hf_ms:.2f}" if hf_ms else "-",
            f"{t[stat] / limit_ms:.2f}",
            f"{a.depth_error:.1e}" if a.depth_error is not None else "-",
            f"{a.label_agreement:.2f}" if a.label_agreement is not None else "-",
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
