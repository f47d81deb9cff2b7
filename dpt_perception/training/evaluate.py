"""Command line: ``python -m dpt_perception.training.evaluate --weights W --data SPEC [--out DIR]``.

``--weights``: anything ``dpt_perception.model.checkpoints.load_model`` reads (our
``.safetensors`` + ``.json``, official / Hugging Face checkpoints) or a training checkpoint
(``checkpoints/last.pt``). ``--data``: a dataset spec as a YAML file, an inline YAML mapping
(``'{type: synthetic, length: 32}'``) or a folder (read as ``{type: folder, root: DIR}``).
``--config`` reads the same options from a YAML file (keys: data, protocol, preprocessing,
png_quantize, batch_size, num_workers, depth_mode, min_depth, max_depth, max_batches, device, amp,
num_examples, out); flags win. Writes ``report.json``, ``report.md`` and ``plots/`` to ``--out``.

Frames are evaluated one by one through `inference.PerceptionPipeline` at their own size, the path a user
of the package gets; ``--preprocessing reference`` (the default) is the official DPT float
pipeline with bicubic output resampling, ``fast`` the node's uint8 path. ``--protocol`` applies
a published protocol (``training.protocols``: crops, caps, ignore index), printed in the report.
Of a dataset spec's ``transform`` only ``net_size`` is used (the PerceptionPipeline resizes as inference
does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from dpt_perception.command_line import package_file, program_name
from dpt_perception.inference.preprocess import PREPROCESSING, check_preprocessing
from dpt_perception.training.protocols import PROTOCOL_NAMES, PROTOCOLS
from dpt_perception.training.report import markdown_report

_DEFAULTS = {
    "data": None,
    "protocol": "none",
    "preprocessing": "reference",
    "png_quantize": False,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("dpt_perception.training.evaluate", "eval"),
        description="Evaluate a DPT on a dataset: depth d1-d3/AbsRel/SqRel/RMSE/RMSElog/SILog/log10 "
        "per image, averaged (relative models aligned per image by least-squares scale+shift in "
        "inverse depth), and segmentation pixel accuracy / mIoU / per-class IoU.",
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
        "--protocol",
        choices=list(PROTOCOL_NAMES),
        help="published protocol: nyu (Eigen crop, 10 m), kitti (KB input crop, Garg crop, 80 m), "
        "ade20k (150 classes, annotation 0 ignored) or none (default)",
    )
    parser.add_argument(
        "--preprocessing",
        choices=list(PREPROCESSING),
        help="reference (default: the official float pipeline, bicubic outputs) or fast (the node's "
        "uint8 path)",
    )
    parser.add_argument(
        "--png-quantize",
        action="store_true",
        default=None,
        help="quantise depth as the official flow's uint16 PNGs do (1/256 m KITTI, 1 mm NYU)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="frames per PerceptionPipeline call; same-sized ones share a forward "
        f"(default {_DEFAULTS['batch_size']})",
    )
    parser.add_argument("--num-workers", type=int, help="DataLoader workers reading the frames (default 0)")
    parser.add_argument(
        "--depth-mode",
        choices=["auto", "relative", "metric"],
        help="relative: align each image; metric: use the model's scale/shift; auto: from the model",
    )
    parser.add_argument(
        "--min-depth",
        type=float,
        help="ignore ground truth below this depth in m (default 1e-3; fixed by --protocol nyu/kitti)",
    )
    parser.add_argument(
        "--max-depth",
        type=float,
        help="ignore ground truth beyond this depth in m; cap predictions (default 80; fixed by "
        "--protocol nyu/kitti)",
    )
    parser.add_argument("--max-batches", type=int, help="stop after this many batches (0 = all)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], help="autocast precision (default none)")
    parser.add_argument("--num-examples", type=int, help="examples drawn as depth error maps (default 4)")
    return parser


def resolve_options(args: argparse.Namespace) -> dict:
    options = dict(_DEFAULTS)
    explicit: set[str] = set()
    if args.config is not None:
        loaded = yaml.safe_load(package_file(args.config).read_text()) or {}
        unknown = sorted(set(loaded) - set(_DEFAULTS))
        if unknown:
            raise ValueError(f"{args.config}: unknown option(s) {unknown}; valid: {sorted(_DEFAULTS)}")
        options.update(loaded)
        explicit |= set(loaded)
    for key in _DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
            explicit.add(key)
    if options["protocol"] not in PROTOCOL_NAMES:
        raise ValueError(f"unknown protocol {options['protocol']!r}; expected one of {PROTOCOL_NAMES}")
    check_preprocessing(options["preprocessing"])
    fixed = PROTOCOLS[options["protocol"]]
    for key in ("min_depth", "max_depth"):
        if key in explicit and getattr(fixed, key) is not None:
            raise ValueError(f"{key} is fixed by protocol {fixed.name!r} ({getattr(fixed, key):g} m); "
                             "use --protocol none to choose it")
    if options["data"] is None:
        raise ValueError("no dataset: give --data or 'data' in --config")
    if isinstance(options["data"], str):
        options["data"] = parse_data_spec(options["data"])
    return options


_PRECISION = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}


def run_evaluation(model, options: dict, dataset=None):
    """(results, extras, protocol) of `model` on ``options["data"]`` (or `dataset`: raw samples)."""
    import copy

    from torch.utils.data import DataLoader

    from dpt_perception.inference.pipeline import PerceptionPipeline
    from dpt_perception.model.devices import resolve_device
    from dpt_perception.training.data import build_dataset
    from dpt_perception.training.eval_loop import as_list, evaluate_frames
    from dpt_perception.training.protocols import get_protocol

    spec = copy.deepcopy(options["data"]) or {}
    transform = dict(spec.pop("transform", None) or {})
    unused = sorted(set(transform) - {"net_size"})
    if unused:
        raise ValueError(f"data transform options {unused} are not used by evaluation: frames are resized "
                         "by the PerceptionPipeline as in inference; only 'net_size' applies")
    if dataset is None:
        spec.setdefault("skip_corrupt", False)  # a broken frame is an error, never a substitute
        dataset = build_dataset(spec)
    net_size = transform.get("net_size")
    predictor = PerceptionPipeline(
        model,
        device=resolve_device(options["device"]),
        precision=_PRECISION[options["amp"]],
        net_size=tuple(net_size) if isinstance(net_size, list) else net_size,
        preprocessing=options["preprocessing"],
    )
    protocol = get_protocol(options["protocol"], float(options["min_depth"]), float(options["max_depth"]))
    batches = DataLoader(dataset, batch_size=int(options["batch_size"]), shuffle=False,
                         num_workers=int(options["num_workers"]), collate_fn=as_list)
    depth_mode = model.config.depth_mode if options["depth_mode"] == "auto" else options["depth_mode"]
    results, extras = evaluate_frames(
        predictor,
        batches,
        protocol,
        relative=depth_mode == "relative",
        max_batches=int(options["max_batches"]),
        num_examples=int(options["num_examples"]),
        quantize_png=bool(options["png_quantize"]),
    )
    results["meta"] = {
        "protocol": "; ".join([protocol.name] + protocol.describe()),
        "preprocessing": options["preprocessing"],
        "png_quantize": bool(options["png_quantize"]),
        "device": str(predictor.device),
    }
    return results, extras, protocol


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = resolve_options(args)
    except (ValueError, FileNotFoundError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from dpt_perception.model.checkpoints import load_model
    from dpt_perception.training.report import write_report

    model = load_model(args.weights)
    config = model.config
    try:
        results, extras, _ = run_evaluation(model, options)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results["meta"].update(weights=str(args.weights), data=options["data"].get("type"))
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
