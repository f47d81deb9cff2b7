#!/usr/bin/env python3
"""Training throughput (images/s) of the multi-task DPT on this CPU, per setting, as ratios
against the plain fp32 step measured in the same run (absolute numbers depend on the machine).

    python bench/bench_training.py --config tiny   [--size 384] [--batch 4] [--steps 6]
    python bench/bench_training.py --config hybrid [--size 384] [--batch 1] [--steps 3]

Every step is the project's own training step, ``Trainer.train_step``: procedural synthetic
scenes rendered by DataLoader workers through the real TrainTransform and collate, the model
from ``build_model``, the configured MultiTaskLoss (depth ssi_mad + gradient matching,
segmentation cross-entropy + auxiliary head), Adam with the encoder/decoder parameter groups
and the learning-rate schedule, backward and the optimizer step.

Configs:
  tiny    the model section of config/train_demo.yaml (DPTConfig.tiny, ViT-Base structure,
          hidden 96, depth + segmentation, shared neck), position grid and input at --size
  hybrid  the full-size DPT-Hybrid (ResNet-50 stem + ViT-Base, DPTConfig(variant="vit_hybrid"))
          with depth and segmentation heads and --classes segmentation classes

Settings (each with a fresh model, optimizer and DataLoader):
  fp32             the reference
  bf16             bf16 autocast (train.amp=bf16)
  frozen           encoder frozen (train.freeze_encoder), only necks and heads train
  accum2           gradient accumulation x2: two micro-batches of batch/2 (1 when --batch 1),
                   same optimizer step
  loss             the loss and its backward alone, on outputs of the last fp32 step (its share)

Per setting: median step time and images/s over the timed steps (after --warmup untimed
steps, which include starting the DataLoader workers), and the loader wait share: time blocked
waiting for the next batch / wall time of the timed steps. Loading is reported as the
bottleneck of a setting when that share exceeds 10 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dpt_perception.training.config import TrainConfig, load_config  # noqa: E402
from dpt_perception.training.train_loop import Trainer  # noqa: E402

SETTINGS = ("fp32", "bf16", "frozen", "accum2", "loss")
LABELS = {
    "fp32": "fp32 (reference)",
    "bf16": "bf16 autocast",
    "frozen": "frozen encoder (fp32)",
    "accum2": "grad accumulation x2 (fp32)",
    "loss": "loss + its backward only",
}
LOADER_BOTTLENECK_SHARE = 0.10
DEMO_CONFIG = ROOT / "config" / "train_demo.yaml"


def model_section(config: str, size: int, classes: int | None) -> dict:
    """The ``model`` section of a TrainConfig for ``config`` at input ``size``."""
    if config == "tiny":
        section = load_config(TrainConfig, DEMO_CONFIG).to_dict()["model"]
        section["config"].update(image_size=size, net_size=[size, size])
    else:
        section = {"tiny": False, "config": {"variant": "vit_hybrid", "heads": ["depth", "segmentation"]}}
        section["config"]["net_size"] = [size, size]
    if classes is not None:
        section["config"]["num_classes"] = classes
    return section


def train_config(args: argparse.Namespace, setting: str, out_dir: str) -> TrainConfig:
    accum = 2 if setting == "accum2" else 1
    micro_batch = max(1, args.batch // accum)
    return TrainConfig.from_dict(
        {
            "model": model_section(args.config, args.size, args.classes),
            "data": {
                # Rendered at the input size: the transform's resize is then a no-op and the
                # loader cost is scene rendering + crop/flip/jitter/normalise + collate.
                "train": {
                    "type": "synthetic",
                    "length": 100_000,
                    "seed": 0,
                    "width": args.size,
                    "height": args.size,
                },
                "batch_size": micro_batch,
                "num_workers": args.workers,
            },
            "train": {
                "max_steps": 1000,
                "warmup_steps": 10,
                "grad_accum": accum,
                "amp": "bf16" if setting == "bf16" else "none",
                "freeze_encoder": setting == "frozen",
                "device": "cpu",
                "threads": args.threads,
                "seed": 0,
            },
            "eval": {"every": 0},
            "output": {"dir": out_dir, "tensorboard": False, "progress": False, "export": False},
        }
    )


class LoaderWaitTimer:
    """Wraps ``trainer._next_batch`` (the ``next(iterator)`` of the training loop, including
    re-creating the iterator at an epoch boundary) and adds up the time spent blocked in it."""

    def __init__(self, trainer: Trainer):
        self.seconds = 0.0
        self._next = trainer._next_batch
        trainer._next_batch = self

    def __call__(self) -> dict:
        start = time.perf_counter()
        try:
            return self._next()
        finally:
            self.seconds += time.perf_counter() - start


def measure(step, steps: int, warmup: int, timer: LoaderWaitTimer | None) -> dict:
    for _ in range(warmup):  # allocations, autocast caches, DataLoader worker start-up
        step()
    times = []
    wait_before = timer.seconds if timer is not None else 0.0
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    wait = (timer.seconds - wait_before) if timer is not None else 0.0
    return {"step_s": statistics.median(times), "wait_share": wait / sum(times)}


def run_setting(args: argparse.Namespace, setting: str, out_dir: str, fp32_state: dict) -> dict:
    if setting == "loss":
        # The fp32 trainer's own loss on its last batch and outputs (as leaves: no model backward).
        loss_fn, batch = fp32_state["loss_fn"], fp32_state["batch"]
        leaves = {k: v.detach().requires_grad_() for k, v in fp32_state["outputs"].items()}

        def loss_step():
            loss, _ = loss_fn(leaves, batch)
            loss.backward()

        result = measure(loss_step, args.steps, args.warmup, None)
        result.update(wait_share=float("nan"), images=fp32_state["images"])
        result["img_s"] = result["images"] / result["step_s"]
        return result
    trainer = Trainer(train_config(args, setting, out_dir))
    try:
        timer = LoaderWaitTimer(trainer)
        result = measure(trainer.train_step, args.steps, args.warmup, timer)
    finally:
        trainer._iterator = None  # shuts the DataLoader workers down
    result["images"] = trainer.cfg.data.batch_size * trainer.cfg.train.grad_accum
    result["img_s"] = result["images"] / result["step_s"]
    if setting == "fp32":
        result["params"] = sum(p.numel() for p in trainer.model.parameters())
        result["classes"] = trainer.model_config.num_classes
        fp32_state.update(
            loss_fn=trainer.loss_fn,
            batch=trainer._last_batch,
            outputs=trainer._last_outputs,
            images=result["images"],
        )
    return result


def print_table(args: argparse.Namespace, results: dict[str, dict]) -> None:
    ref = results["fp32"]
    print(
        f"\nDPT {args.config} (multi-task, {ref['params'] / 1e6:.2f} M parameters, "
        f"{ref['classes']} classes), "
        f"{args.size}x{args.size}, batch {args.batch}, {args.threads} torch threads, {args.workers} loader "
        f"workers, median of {args.steps} steps after {args.warmup} warm-up\n"
    )
    print(
        "| setting | images/step | step time (s) | step time vs fp32 | images/s | images/s vs fp32 "
        "| loader wait share |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for setting, r in results.items():
        share = "n/a" if r["wait_share"] != r["wait_share"] else f"{100 * r['wait_share']:.1f} %"
        print(
            f"| {LABELS[setting]} | {r['images']} | {r['step_s']:.3f} | {r['step_s'] / ref['step_s']:.2f}x "
            f"| {r['img_s']:.2f} | {r['img_s'] / ref['img_s']:.2f}x | {share} |"
        )
    loaded = {s: r for s, r in results.items() if r["wait_share"] == r["wait_share"]}
    worst = max(loaded, key=lambda s: loaded[s]["wait_share"])
    share = loaded[worst]["wait_share"]
    verdict = "WAS" if share > LOADER_BOTTLENECK_SHARE else "was not"
    print(
        f"\nData loading {verdict} the bottleneck: highest loader wait share {100 * share:.1f} % "
        f"({LABELS[worst]}), threshold {100 * LOADER_BOTTLENECK_SHARE:.0f} %."
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", choices=("tiny", "hybrid"), default="tiny", help="model to train (see above)"
    )
    parser.add_argument("--size", type=int, default=384, help="square input side in pixels (multiple of 16)")
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="images per optimizer step (default: 4 for tiny, 1 for hybrid, whose fp32 step takes seconds)",
    )
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per setting")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing, per setting")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch intra-op threads of the training process"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="DataLoader worker processes (0 = load in the training process)",
    )
    parser.add_argument(
        "--classes",
        type=int,
        default=None,
        help="segmentation classes (default: tiny 5, the synthetic scenes' classes; hybrid 150, ADE20K's)",
    )
    parser.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help=f"comma-separated subset of {','.join(SETTINGS)} (fp32 is always measured: it is the reference)",
    )
    args = parser.parse_args()
    if args.batch is None:
        args.batch = 4 if args.config == "tiny" else 1
    if args.classes is None and args.config == "hybrid":
        args.classes = 150
    chosen = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; expected a subset of {list(SETTINGS)}")
    for name, value, low in (
        ("--batch", args.batch, 1),
        ("--steps", args.steps, 1),
        ("--threads", args.threads, 1),
    ):
        if value < low:
            parser.error(f"{name} must be >= {low}, got {value}")
    if args.size % 16:
        parser.error(f"--size must be a multiple of 16 (the patch size), got {args.size}")

    results: dict[str, dict] = {}
    fp32_state: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_training_") as out_dir:
        for setting in [s for s in SETTINGS if s == "fp32" or s in chosen]:
            results[setting] = run_setting(args, setting, out_dir, fp32_state)
            r = results[setting]
            print(f"  {LABELS[setting]}: {r['step_s']:.3f} s/step, {r['img_s']:.2f} img/s", flush=True)
    print_table(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
