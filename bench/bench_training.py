#!/usr/bin/env python3
"""Training-step throughput of a small multi-task DPT under several settings, as ratios against
the plain fp32 step measured in the same run (absolute numbers depend on the machine).

    python bench/bench_training.py [--size 128] [--batch 4] [--steps 6] [--threads 2]

Settings: fp32 (reference), frozen encoder, bf16 autocast, gradient accumulation x2 (same
images per optimizer step), and the loss alone (its share of a step).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.training.evaluation import autocast_context  # noqa: E402
from dpt_perception.training.losses import MultiTaskLoss  # noqa: E402
from dpt_perception.training.optim import build_optimizer  # noqa: E402


def make_batch(batch: int, size: int, classes: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(batch, 3, size, size, generator=g),
        "depth": torch.rand(batch, size, size, generator=g) * 10 + 0.5,
        "depth_valid": torch.ones(batch, size, size, dtype=torch.bool),
        "labels": torch.randint(0, classes, (batch, size, size), generator=g),
        "has_depth": torch.ones(batch, dtype=torch.bool),
        "has_labels": torch.ones(batch, dtype=torch.bool),
    }


def time_steps(step, steps: int) -> float:
    step()  # warm-up (allocations, autocast caches)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=128, help="square input side (multiple of 32)")
    parser.add_argument("--batch", type=int, default=4, help="images per optimizer step")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per setting")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = DPTConfig.tiny(hidden_size=96, num_heads=4, fusion_channels=48, image_size=args.size)
    batch = make_batch(args.batch, args.size, config.num_classes)
    loss_fn = MultiTaskLoss()

    def trainer(freeze=False, amp="none", accum=1):
        torch.manual_seed(0)
        model = DPT(config).train()
        opt = build_optimizer(model, 1e-5, 1e-4, freeze_encoder=freeze)
        chunks = [{k: v[i::accum] for k, v in batch.items()} for i in range(accum)]

        def step():
            opt.zero_grad(set_to_none=True)
            for chunk in chunks:
                with autocast_context(torch.device("cpu"), amp):
                    out = model(chunk["image"])
                loss, _ = loss_fn(out, chunk)
                (loss / accum).backward()
            opt.step()

        return step

    model = DPT(config).train()
    with torch.no_grad():
        outputs = {k: v.detach().requires_grad_() for k, v in model(batch["image"]).items()}

    def loss_only():
        loss, _ = loss_fn(outputs, batch)
        loss.backward()

    reference = time_steps(trainer(), args.steps)
    rows = [
        ("fp32 full step", reference),
        ("frozen encoder", time_steps(trainer(freeze=True), args.steps)),
        ("bf16 autocast", time_steps(trainer(amp="bf16"), args.steps)),
        ("grad accumulation x2", time_steps(trainer(accum=2), args.steps)),
        ("loss + its backward only", time_steps(loss_only, args.steps)),
    ]
    print(f"DPT tiny(hidden 96), {args.batch}x{args.size}x{args.size}, {args.threads} threads")
    print(f"{'setting':28s} {'ms/step':>9s} {'img/s':>8s} {'time vs fp32':>13s}")
    for name, seconds in rows:
        print(f"{name:28s} {seconds * 1e3:9.1f} {args.batch / seconds:8.1f} {seconds / reference:12.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
