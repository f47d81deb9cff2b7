#!/usr/bin/env python3
"""Per-frame model time of a depth + segmentation pair (two Hybrid encoders, as the official
single-task releases run together) vs the distilled shared-encoder student (one encoder, both
heads), measured in the same run at the same size.

Models: the release architectures (`dpt_hybrid_nyu` depth and `dpt_hybrid_ade20k` 150-class
segmentation presets) with random weights: time does not depend on the weight values. Both run
the node's forward (`heads` = both, segmentation logits at half resolution as the node asks).

    python bench/bench_pair.py                      # 384x384, batch 1, fp32, 3 timed runs
    python bench/bench_pair.py --size 480 640 --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_preprocessing import cpu_model  # noqa: E402

from dpt_perception.inference.pipeline import forward_for_class_ids  # noqa: E402
from dpt_perception.model.config import DPTConfig  # noqa: E402
from dpt_perception.model.dpt import DPT  # noqa: E402
from dpt_perception.model.pair import EncoderPassCounter, make_pair  # noqa: E402
from dpt_perception.training.distill import init_student  # noqa: E402


def timed(models: dict, x, repeats: int) -> dict[str, float]:
    """Median milliseconds of a forward per model; the models take turns within each repeat (one
    warm-up round first), so a change in machine load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for i in range(repeats + 1):
            for name, model in models.items():
                start = time.perf_counter()
                forward_for_class_ids(model, x)  # the node's CPU label path
                if i:
                    times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, nargs=2, default=[384, 384], metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    depth = DPT(DPTConfig.preset("dpt_hybrid_nyu")).eval()
    seg = DPT(DPTConfig.preset("dpt_hybrid_ade20k")).eval()
    pair = make_pair(depth, seg).eval()
    models = {
        "pair (depth + seg releases)": pair,
        "distilled: one encoder, two necks": init_student(pair)[0],
        "distilled: one encoder, one neck (share_neck)": init_student(pair, share_neck=True)[0],
    }
    x = torch.randn(1, 3, *args.size)
    counters = {name: EncoderPassCounter(model) for name, model in models.items()}
    ms = timed(models, x, args.repeats)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"DPT-Hybrid {args.size[0]}x{args.size[1]}, batch 1, fp32 eager, median of {args.repeats}")
    print("| model | encoder passes / frame | model time (ms) | vs pair |")
    print("|---|---|---|---|")
    base = ms["pair (depth + seg releases)"]
    for name in models:
        print(f"| {name} | {counters[name].per_frame():.0f} | {ms[name]:.0f} | {ms[name] / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
