#!/usr/bin/env python3
"""The start-up engine choice (`precision: auto`, `backend: auto`) on this machine, in one run.

Hybrid (DPTConfig.preset("dpt_hybrid_nyu"), random weights) at its default size: the candidates
for the device, the auto choice (measured into a temporary cache, then read back from it), and the
chosen engine next to eager fp32 with the agreement figures. With `--also bf16` (default on CPU)
bf16 autocast is timed too even where it is not a candidate (no native bf16), to show why.
A few forwards only:
    python bench/bench_autotune.py                      # docs/benchmarks.md "Engine choice"
    python bench/bench_autotune.py --preset dpt_hybrid_nyu --size 384 512 --repeats 2
    python bench/bench_autotune.py --candidates eager/fp32,eager/bf16   # measure bf16 even if emulated
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpt_perception.inference import autotune  # noqa: E402
from dpt_perception.inference.backends import make_engine  # noqa: E402
from dpt_perception.inference.backends.agreement import compare_outputs  # noqa: E402
from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.model.devices import resolve_device  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="dpt_hybrid_nyu")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="default: the preset's net_size")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=2, help="timed forwards per engine (median)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--also", default=None,
                   help="extra precision to time next to fp32 (default: bf16 on CPU; 'none': no extra)")
    p.add_argument("--candidates", default=None,
                   help=f"replace the candidate list (sets {autotune.CANDIDATES_ENV}), "
                   "e.g. eager/fp32,eager/bf16")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.candidates:
        os.environ[autotune.CANDIDATES_ENV] = args.candidates
    torch.manual_seed(0)
    config = DPTConfig.preset(args.preset)
    model = DPT(config).eval()
    size = tuple(args.size) if args.size else tuple(config.net_size)
    print(f"machine: {autotune.machine_id(device)}; torch {torch.__version__}; device {device}")
    if device.type == "cpu":
        print(f"CPU model: {autotune.cpu_model()}; native bf16 (avx512_bf16/amx_bf16): "
              f"{autotune.cpu_has_native_bf16()}; torch CPU capability "
              f"{torch.backends.cpu.get_cpu_capability()}")
    print(f"model: {args.preset} (random weights), net input {size[0]}x{size[1]}, repeats {args.repeats}")
    found = autotune.candidates(device)
    print("candidates for auto: " + ", ".join(c.name for c in found))

    measure = lambda engine, x: autotune.time_engine(engine, x, repeats=args.repeats)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "autotune.json"
        t0 = time.perf_counter()
        choice = autotune.choose(model, device, size, model_id=args.preset, cache_path=cache, measure=measure)
        chose_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = autotune.choose(model, device, size, model_id=args.preset, cache_path=cache, measure=measure)
        cached_s = time.perf_counter() - t0
    print(f"auto choice: {choice.summary()}")
    print(f"time spent choosing: {chose_s:.1f} s; next start: {cached_s * 1e3:.1f} ms "
          f"({'cached choice' if again.cached else 'not cached'})")

    # The table: the timed trials of the choice as they were measured, plus eager fp32 and the
    # extra precision when the choice did not time them (measured here the same way).
    trials = {t.candidate: t for t in choice.trials
              if isinstance(t, autotune.Trial) and t.agreement is not None}
    rows = [autotune.Candidate("eager", "fp32"), *trials]
    extra = args.also or ("bf16" if device.type == "cpu" else None)
    if extra and extra != "none":
        rows.append(autotune.Candidate("eager", extra))
    rows = list(dict.fromkeys(rows))
    x = autotune.check_input(size, device)
    reference = None
    print("\n| engine | median ms | vs eager fp32 | depth rel. diff | labels agree % | auto |")
    print("|---|---|---|---|---|---|")
    base = None
    for cand in rows:
        trial = trials.get(cand)
        if trial is not None and trial.ms is not None:
            ms, agreement, how = trial.ms, trial.agreement, trial.status
        else:
            if reference is None:
                with torch.inference_mode():
                    reference = make_engine(model, "eager", device=device)(x)
            engine = make_engine(model, cand.backend, device=device, precision=cand.precision)
            with torch.inference_mode():
                agreement = compare_outputs(engine(x), reference)
                ms = autotune.time_engine(engine, x, repeats=args.repeats)
            how = trial.status if trial is not None else (
                "chosen" if (cand.backend, cand.precision) == (choice.backend, choice.precision)
                else "not a candidate here" if cand not in found else "candidate")
        base = ms if base is None else base
        depth = "-" if agreement.depth_error is None else f"{agreement.depth_error:.2e}"
        labels = "-" if agreement.label_agreement is None else f"{agreement.label_agreement:.2f}"
        print(f"| {cand.name} | {ms:.0f} | {ms / base:.2f} | {depth} | {labels} | {how} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
