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

from dpt_perception.model.config import DPTConfig  # noqa: E402
from dpt_perception.model.dpt import DPT  # noqa: E402
from dpt_perception.model.pair import EncoderPassCounter, make_pair  # noqa: E402
from dpt_perception.training.distill import init_student  # noqa: E402


def timed(model, x, repeats: int) -> float:
    """Median milliseconds of a forward (one warm-up run first)."""
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            start = time.perf_counter()
            model(x, lowres_logits=True)
            if i:
                times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


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
    student, _ = init_student(pair)
    x = torch.randn(1, 3, *args.size)
    counters = {"pair": EncoderPassCounter(pair), "shared": EncoderPassCounter(student)}
    pair_ms = timed(pair, x, args.repeats)
    shared_ms = timed(student, x, args.repeats)
    print(
        f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"DPT-Hybrid {args.size[0]}x{args.size[1]}, batch 1, fp32 eager, median of {args.repeats}"
    )
    print("| model | encoder passes / frame | model time (ms) | vs pair |")
    print("|---|---|---|---|")
    for name, ms in (("pair (depth + seg releases)", pair_ms), ("distilled shared encoder", shared_ms)):
        key = "pair" if name.startswith("pair") else "shared"
        print(f"| {name} | {counters[key].per_frame():.0f} | {ms:.0f} | {ms / pair_ms:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
