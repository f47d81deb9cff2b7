"""Command line: ``python -m dpt_perception.training.evaluate --weights W --data SPEC [--out DIR]``.

``--weights``: anything ``dpt_perception.model.checkpoints.load_model`` reads (our
``.safetensors`` + ``.json``, official / Hugging Face checkpoints) or a training checkpoint
(``checkpoints/last.pt``). ``--data``: a dataset spec as a YAML file, an inline YAML mapping
(``'{type: synthetic, length: 32}'``) or a folder (read as ``{type: folder, root: DIR}``).
``--config`` reads the same options from a YAML file (keys: data, batch_size, num_workers,
depth_mode, min_depth, max_depth, max_batches, device, amp, num_examples, out); flags win.
Writes ``report.json``, ``report.md`` and ``plots/`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from dpt_perception.command_line import package_file, program_name
from dpt_perception.training.report import markdown_report

_DEFAULTS = {
    "data": None,
    "batch_size": 4,
    "num_workers": 0,
    "depth_mode": "auto",
    "min_depth": 1e-3,
    "max_depth": 80.0,
    "max_batches": 0,
    "device": "auto",
    "amp": "none",
    "num_examples": 4,
    "out": "eval_report",
}


def parse_data_spec(text: str) -> dict:
    path = Path(text)
    if path.is_dir():
        return {"type": "folder", "root": str(path)}
    if path.is_file():
        spec = yaml.safe_load(path.read_text())
    else:
        spec = yaml.safe_load(text)
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(
            f"--data {text!r} is neither a folder, a YAML file nor an inline YAML mapping with a 'type' "
            "(e.g. '{type: synthetic, length: 32}')"
        )
    return spec


def load_weights(path: str):
    """A DPT in eval mode from a model file or a training checkpoint."""
    p = Path(path)
    if p.suffix == ".pt" and p.is_file():
        import torch

        state = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model_config" in state and "model" in state:
            from dpt_perception.model import DPT, DPTConfig

            model = DPT(DPTConfig.from_dict(state["model_config"]))
            model.load_state_dict(state["model"])
            return model.eval()
    from dpt_perception.model.checkpoints import load_model

    return load_model(path).eval()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("dpt_perception.training.evaluate", "eval"),
        description="Evaluate a DPT on a dataset: depth AbsRel/SqRel/RMSE/RMSE-log/δ (relative models "
        "aligned per image by least-squares scale+shift in inverse depth) and segmentation pixel "
        "accuracy / mIoU / per-class IoU.",
    )
    parser.add_argument(
        "--weights",
        required=True,
        help="model file (.safetensors+.json, official .pt, HF) or training checkpoint",
    )
    parser.add_argument(
        "--data", help="dataset spec: YAML file, inline YAML mapping, or a folder-format directory"
    )
    parser.add_argument("--config", type=Path, help="YAML file with any of the options below")
    parser.add_argument("--out", help=f"output folder (default {_DEFAULTS['out']})")
    parser.add_argument(
        "--batch-size", type=int, help=f"images per batch (default {_DEFAULTS['batch_size']})"
    )
    parser.add_argument("--num-workers", type=int, help="DataLoader workers (default 0)")
    parser.add_argument(
        "--depth-mode",
        choices=["auto", "relative", "metric"],
        help="relative: align each image; metric: use the model's scale/shift; auto: from the model",
    )
    parser.add_argument(
        "--min-depth", type=float, help="ignore ground truth below this depth in m (default 1e-3)"
    )
    parser.add_argument(
        "--max-depth",
        type=float,
        help="ignore ground truth beyond this depth in m; cap predictions (default 80)",
    )
    parser.add_argument("--max-batches", type=int, help="stop after this many batches (0 = all)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], help="autocast precision (default none)")
    parser.add_argument("--num-examples", type=int, help="examples drawn as depth error maps (default 4)")
    return parser


def resolve_options(args: argparse.Namespace) -> dict:
    options = dict(_DEFAULTS)
    if args.config is not None:
        loaded = yaml.safe_load(package_file(args.config).read_text()) or {}
        unknown = sorted(set(loaded) - set(_DEFAULTS))
        if unknown:
            raise ValueError(f"{args.config}: unknown option(s) {unknown}; valid: {sorted(_DEFAULTS)}")
        options.update(loaded)
    for key in _DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    if options["data"] is None:
        raise ValueError("no dataset: give --data or 'data' in --config")
    if isinstance(options["data"], str):
        options["data"] = parse_data_spec(options["data"])
    return options


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = resolve_options(args)
    except (ValueError, FileNotFoundError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from dpt_perception.training.datasets import build_eval_loader, build_split
    from dpt_perception.training.distributed import resolve_device
    from dpt_perception.training.evaluation import evaluate_model
    from dpt_perception.training.report import write_report

    device = resolve_device(options["device"])
    model = load_weights(args.weights).to(device)
    config = model.config
    dataset = build_split(options["data"], train=False, model_options=config.to_dict())
    loader = build_eval_loader(dataset, options["batch_size"], options["num_workers"])
    depth_mode = config.depth_mode if options["depth_mode"] == "auto" else options["depth_mode"]
    results, extras = evaluate_model(
        model,
        loader,
        device,
        depth_mode=depth_mode,
        min_depth=float(options["min_depth"]),
        max_depth=float(options["max_depth"]),
        max_batches=int(options["max_batches"]),
        amp=options["amp"],
        num_examples=int(options["num_examples"]),
    )
    results["meta"] = {
        "weights": str(args.weights),
        "data": options["data"].get("type"),
        "device": str(device),
    }
    written = write_report(
        results,
        extras,
        options["out"],
        title=f"Evaluation of {Path(args.weights).name}",
        mean=config.mean,
        std=config.std,
        class_colors=config.class_colors,
    )
    print(markdown_report(results, f"Evaluation of {Path(args.weights).name}"))
    print(f"report written to {written['json'].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
