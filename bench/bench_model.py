#!/usr/bin/env python3
"""Benchmark the DPT model on CPU against peers measured in the same run; prints a markdown table.

Measures (batch 1, freshly initialised weights, `inference_mode`, medians over --runs after --warmup):
  * our fp32 forward vs Hugging Face transformers' DPT forward of the same architecture and weights
    (ratio, target <= 1.0; the max |difference| of the outputs is reported too),
  * our time / the FLOP limit (FLOPs counted with torch.utils.flop_counter plus 4*N^2*D per
    transformer layer for attention, which the counter misses on CPU, divided by a fp32 matmul
    peak measured in this run),
  * bf16 autocast vs fp32 (target <= 0.6) and the bf16 output error relative to fp32,
  * depth+segmentation in one forward vs two separate models (target <= 0.75) and with a shared
    neck (target <= 0.6).

Example: python bench/bench_model.py --threads 2 --variants vit_hybrid --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpt_perception.model import DPT, DPTConfig  # noqa: E402


def count_gflop(model: DPT, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    flops = counter.get_total_flops()
    # Attention (QK^T and AV: 4*N^2*D per layer) is not counted for CPU SDPA; add it by hand,
    # unless this torch version counts it already (checked on one SDPA call).
    q = torch.randn(1, 1, 8, 8)
    with torch.inference_mode(), FlopCounterMode(display=False) as probe:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    if probe.get_total_flops() == 0:
        cfg = model.config
        n_tokens = (x.shape[-2] // cfg.patch_size) * (x.shape[-1] // cfg.patch_size) + 1
        layers_run = max(cfg.out_indices) + 1
        flops += 4 * n_tokens**2 * cfg.hidden_size * layers_run
    return flops / 1e9


def hf_model_like(model: DPT, task: str):
    from transformers import DPTConfig as HFConfig
    from transformers import DPTForDepthEstimation, DPTForSemanticSegmentation

    from dpt_perception.model.checkpoints.hf import to_hf_config_dict, to_hf_state_dict

    cls = DPTForSemanticSegmentation if task == "segmentation" else DPTForDepthEstimation
    hf = cls(HFConfig(**to_hf_config_dict(model.config, task))).eval()
    hf.load_state_dict(to_hf_state_dict(model, task), strict=True)
    return hf


def interleaved_medians(fns: dict, runs: int, warmup: int) -> dict[str, float]:
    """Median ms of each function, timed round-robin so load drifts on a shared machine hit all
    candidates alike (their ratios are what this benchmark reports)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for _ in range(runs):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_variant(variant: str, size: int, runs: int, warmup: int, skip_hf: bool) -> list[list[str]]:
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size)
    # "hf" numerics so HF can run the very same function; the cost is identical to "official".
    depth = DPT(DPTConfig(variant=variant, heads=["depth"], numerics="hf", aux_head=False)).eval()
    with torch.no_grad():  # fresh init can leave the final ReLU dead; keep the output informative
        depth.heads["depth"].output_conv.bias.fill_(0.1)
    gflop = count_gflop(depth, x)

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return depth(x)

    # The fp32 matmul peak is timed in the same round-robin, so the FLOP limit sees the same load.
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    fns = {"ours": lambda: depth(x), "bf16": bf16, "matmul": lambda: a @ b}
    hf_note = None
    if skip_hf:
        hf = None
    elif variant == "vit_hybrid" and size != depth.config.image_size:
        hf, hf_note = None, f"HF's hybrid runs only {depth.config.image_size}x{depth.config.image_size}"
    else:
        try:
            hf = hf_model_like(depth, "depth")
            fns["hf"] = lambda: hf(pixel_values=x)
        except ImportError as exc:
            hf, hf_note = None, f"transformers unavailable: {exc}"
    t = interleaved_medians(fns, runs, warmup)
    peak = 2 * n**3 / (t["matmul"] * 1e-3) / 1e9
    limit_ms = gflop / peak * 1e3
    with torch.inference_mode():
        ref = depth(x)["depth"]
        rel = ((bf16()["depth"].float() - ref).norm() / ref.norm().clamp_min(1e-12)).item()
        err = (hf(pixel_values=x).predicted_depth - ref).abs().max().item() if hf is not None else None
    rows = [
        [
            variant,
            "ours fp32 depth",
            f"{t['ours']:.0f}",
            "",
            f"{gflop:.0f} GFLOP; {t['ours'] / limit_ms:.2f}x the FLOP limit (peak {peak:.0f} GFLOP/s)",
        ]
    ]
    if hf is not None:
        rows.append(
            [
                variant,
                "HF transformers fp32 depth (same weights)",
                f"{t['hf']:.0f}",
                f"ours/HF {t['ours'] / t['hf']:.2f} (<= 1.0)",
                f"max abs diff {err:.1e} (max abs out {ref.abs().max().item():.1e})",
            ]
        )
    elif hf_note:
        rows.append([variant, "HF transformers fp32 depth", "-", "-", hf_note])
    rows.append(
        [
            variant,
            "ours bf16 autocast depth",
            f"{t['bf16']:.0f}",
            f"bf16/fp32 {t['bf16'] / t['ours']:.2f} (<= 0.6)",
            f"rel. L2 error vs fp32 {rel:.3f} (untrained weights)",
        ]
    )
    fns.clear()  # release the HF model before building three more
    hf = None
    seg = DPT(DPTConfig(variant=variant, heads=["segmentation"], numerics="hf")).eval()
    both = DPT(DPTConfig(variant=variant, numerics="hf")).eval()
    shared = DPT(DPTConfig(variant=variant, numerics="hf", share_neck=True)).eval()
    t = interleaved_medians(
        {"two": lambda: (depth(x), seg(x)), "both": lambda: both(x), "shared": lambda: shared(x)},
        runs,
        warmup,
    )
    rows.append([variant, "two models (depth + seg)", f"{t['two']:.0f}", "1.00", ""])
    rows.append(
        [
            variant,
            "one model, shared encoder",
            f"{t['both']:.0f}",
            f"{t['both'] / t['two']:.2f} (<= 0.75)",
            "",
        ]
    )
    rows.append(
        [
            variant,
            "one model, shared encoder + neck",
            f"{t['shared']:.0f}",
            f"{t['shared'] / t['two']:.2f} (<= 0.6)",
            "",
        ]
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument(
        "--size", type=int, default=384, help="square input side, multiple of 32 (default 384)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["vit_hybrid"],
        choices=["vit_base", "vit_large", "vit_hybrid"],
        help="full-size variants to measure",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before each measurement")
    parser.add_argument("--skip-hf", action="store_true", help="do not run the transformers peer")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, input 1x3x{args.size}x{args.size}, "
        "(the FLOP limit uses a 2048^3 fp32 matmul timed alongside the model)\n"
    )
    rows = []
    for variant in args.variants:
        rows += bench_variant(variant, args.size, args.runs, args.warmup, args.skip_hf)
    print("| variant | measurement | median ms | ratio (target) | notes |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
