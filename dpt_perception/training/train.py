"""Command line: ``python -m dpt_perception.training.train --config config/train_synthetic.yaml [overrides]``.

A config file with a ``distill:`` mapping (config/distill_*.yaml) runs distillation instead
(`training.distill`: a depth + segmentation teacher pair into one shared-encoder student).

Multi-process: ``torchrun --nproc_per_node=2 -m dpt_perception.training.train --config ...``
(gloo on CPU, NCCL on GPU; ``data.batch_size`` is the global batch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from dpt_perception.command_line import package_file, program_name
from dpt_perception.training.config import (
    TrainConfig,
    add_flags,
    describe_options,
    flag_overrides,
    load_config,
)

# Explicit flags for the most common overrides (each maps to one --set assignment).
_FLAG_OPTIONS = {
    "output_dir": "output.dir",
    "max_steps": "train.max_steps",
    "batch_size": "data.batch_size",
    "lr_encoder": "train.lr_encoder",
    "lr_decoder": "train.lr_decoder",
    "device": "train.device",
    "amp": "train.amp",
    "seed": "train.seed",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("dpt_perception.training.train", "train"),
        description="Train a shared-encoder DPT (depth + segmentation). A --config file with a 'distill' "
        "mapping distils a depth + segmentation teacher pair instead (see config/distill_hybrid.yaml and "
        "python -m dpt_perception.training.distill --help). Settings come from the defaults, "
        "then the --config YAML file, then the explicit flags below, then the --set overrides in order.",
        epilog=describe_options(TrainConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML configuration file (see the options below); a relative path not found here is looked "
        "up in the installed package, e.g. config/train_synthetic.yaml",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.OPTION=VALUE",
        help="override one option, value parsed as YAML (repeatable), e.g. --set train.lr_encoder=1e-5",
    )
    parser.add_argument(
        "--resume",
        metavar="PATH|auto",
        help="continue exactly from a training checkpoint; "
        "'auto' = <output.dir>/checkpoints/last.pt if it exists",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration and exit"
    )
    add_flags(parser, TrainConfig, _FLAG_OPTIONS)
    return parser


def resolve(args: argparse.Namespace):
    config = package_file(args.config) if args.config is not None else None
    return load_config(TrainConfig, config, flag_overrides(args, _FLAG_OPTIONS) + list(args.overrides))


def main(argv: list[str] | None = None) -> int:
    from dpt_perception.training.distill import is_distill_config

    raw = sys.argv[1:] if argv is None else list(argv)
    peek = argparse.ArgumentParser(add_help=False)  # only --config, the rest is parsed below
    peek.add_argument("--config")
    config_path = peek.parse_known_args(raw)[0].config
    try:  # found where the training config would be (the package's share dir for relative paths)
        config_path = package_file(config_path) if config_path else None
    except FileNotFoundError:
        config_path = None  # the training path below reports the missing file
    if is_distill_config(config_path):  # a `distill:` file: teachers -> one shared-encoder student
        from dpt_perception.training.distill import main as distill_main

        return distill_main(raw)
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve(args)
    except (ValueError, FileNotFoundError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    resume = args.resume
    if resume == "auto":
        candidate = Path(cfg.output.dir) / "checkpoints" / "last.pt"
        resume = candidate if candidate.is_file() else None
    from dpt_perception.training.train_loop import Trainer

    trainer = Trainer(cfg, resume=resume)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    if trainer.dist.is_main:
        final = summary.get("final_eval") or {}
        parts = []
        if "depth" in final:
            parts.append(f"AbsRel {final['depth']['abs_rel']:.4f}")
        if "segmentation" in final:
            parts.append(f"mIoU {final['segmentation']['miou']:.4f}")
        print(
            f"finished at step {summary['step']}; {', '.join(parts) or 'no validation set'}; "
            f"outputs in {summary['output']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
