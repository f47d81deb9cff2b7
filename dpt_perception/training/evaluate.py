"""Command line: ``python -m dpt_perception.training.evaluate --weights W --data SPEC [--out DIR]``.

``--weights``: anything ``dpt_perception.model.checkpoints.load_model`` reads (our
``.safetensors`` + ``.json``, official / Hugging Face checkpoints) or a training checkpoint
(``checkpoints/last.pt``). ``--data``: a dataset spec as a YAML file, an inline YAML mapping
(``'{type: synthetic, length: 32}'``) or a folder (read as ``{type: folder, root: DIR}``).
Options: the `EvalConfig` defaults, then a ``--config`` YAML file (any of its keys, e.g.
config/eval_synthetic.yaml), then the flags (``--max-depth 10`` is ``--set max_depth=10``), then
each ``--set key=value`` in order; ``--help`` lists them all. Writes ``report.json``,
``report.md`` and ``plots/`` to ``out``.

Frames are evaluated one by one through `inference.PerceptionPipeline` at their own size, the path a user
of the package gets; ``--preprocessing reference`` (the default) is the official DPT float
pipeline with bicubic output resampling, ``fast`` the node's uint8 path. ``--protocol`` applies
a published protocol (``training.protocols``: crops, caps, ignore index), printed in the report.
Of a dataset spec's ``transform`` only ``net_size`` is used (the PerceptionPipeline resizes as inference
does).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from dpt_perception.command_line import package_file, program_name
from dpt_perception.inference.preprocess import check_preprocessing
from dpt_perception.training.config import (
    Config,
    add_flags,
    check_all,
    describe_options,
    flag_overrides,
    load_config,
    option,
)
from dpt_perception.training.protocols import DEFAULT_MAX_DEPTH, DEFAULT_MIN_DEPTH, PROTOCOL_NAMES, PROTOCOLS
from dpt_perception.training.report import markdown_report

DEPTH_KINDS = ("auto", "relative", "metric")
AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class EvalConfig(Config):
    data: dict | str | None = option(
        None,
        "dataset spec (required): a mapping ({type: synthetic, length: 32}), a YAML file, an inline YAML "
        "mapping or a folder-format directory (read as {type: folder, root: DIR})",
    )
    protocol: str = option(
        "none",
        "published protocol: nyu (Eigen crop, 10 m), kitti (KB input crop, Garg crop, 80 m), ade20k "
        "(150 classes, annotation 0 ignored) or none",
    )
    preprocessing: str = option(
        "reference",
        "reference (the official float pipeline, bicubic outputs) or fast (the node's uint8 path)",
    )
    png_quantize: bool = option(
        False, "quantise depth as the official flow's uint16 PNGs do (1/256 m KITTI, 1 mm NYU)"
    )
    batch_size: int = option(4, "frames per pipeline call; same-sized ones share a forward")
    num_workers: int = option(0, "DataLoader workers reading the frames")
    depth_kind: str = option(
        "auto", "relative: align each image; metric: use the model's scale/shift; auto: from the model"
    )
    # None, not a number, so that "set by the user" is visible: nyu and kitti fix the depth range,
    # and a range given with them is an error rather than silently ignored.
    min_depth: float | None = option(
        None,
        f"ignore ground truth below this depth in m (None = {DEFAULT_MIN_DEPTH:g}; fixed by protocol "
        "nyu/kitti, which do not take it)",
    )
    max_depth: float | None = option(
        None,
        f"ignore ground truth beyond this depth in m, cap predictions (None = {DEFAULT_MAX_DEPTH:g}; "
        "fixed by protocol nyu/kitti, which do not take it)",
    )
    max_batches: int = option(0, "stop after this many batches (0 = all)")
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    amp: str = option("none", "autocast precision: none | bf16 | fp16")
    num_examples: int = option(4, "examples drawn as depth error maps")
    out: str = option("eval_report", "output folder (report.json, report.md, plots/)")

    def validate(self) -> None:
        check_all([
            (
                self.protocol in PROTOCOL_NAMES,
                f"unknown protocol {self.protocol!r}; expected one of {PROTOCOL_NAMES}",
            ),
            (
                self.depth_kind in DEPTH_KINDS,
                f"depth_kind must be one of {DEPTH_KINDS}, got {self.depth_kind!r}",
            ),
            (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, got {self.amp!r}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
        ])
        check_preprocessing(self.preprocessing)
        fixed = PROTOCOLS[self.protocol]
        for key in ("min_depth", "max_depth"):
            if getattr(self, key) is not None and getattr(fixed, key) is not None:
                raise ValueError(f"{key} is fixed by protocol {fixed.name!r} ({getattr(fixed, key):g} m); "
                                 "use --protocol none to choose it")


# Every option has a flag of its own (--max-depth 10 == --set max_depth=10).
_FLAGS = {f.name: f.name for f in dataclasses.fields(EvalConfig)}


def parse_data_spec(spec: dict | str) -> dict:
    """A dataset spec from a mapping, a folder, a YAML file or an inline YAML mapping."""
    if isinstance(spec, str):
        path = Path(spec)
        if path.is_dir():
            return {"type": "folder", "root": str(path)}
        text, spec = spec, yaml.safe_load(path.read_text() if path.is_file() else spec)
    else:
        text = spec
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(
            f"data {text!r} is neither a folder, a YAML file nor a (inline YAML) mapping with a 'type' "
            "(e.g. '{type: synthetic, length: 32}')"
        )
    return spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("dpt_perception.training.evaluate", "eval"),
        description="Evaluate a DPT on a dataset: depth d1-d3/AbsRel/SqRel/RMSE/RMSElog/SILog/log10 "
        "per image, averaged (relative models aligned per image by least-squares scale+shift in "
        "inverse depth), and segmentation pixel accuracy / mIoU / per-class IoU. Options come from the "
        "defaults, then the --config YAML file, then the flags, then the --set overrides in order.",
        epilog=describe_options(EvalConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--weights",
        required=True,
        help="model file (.safetensors+.json, official .pt, HF) or training checkpoint",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML file with any of the options below; a relative path not found here is looked up in "
        "the installed package, e.g. config/eval_synthetic.yaml",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="override one option, value parsed as YAML (repeatable), e.g. --set max_depth=10",
    )
    add_flags(parser, EvalConfig, _FLAGS)
    return parser


def resolve_options(args: argparse.Namespace) -> EvalConfig:
    """The evaluation options of a parsed command line, the dataset spec resolved to a mapping."""
    config = package_file(args.config) if args.config is not None else None
    cfg = load_config(EvalConfig, config, flag_overrides(args, _FLAGS) + list(args.overrides))
    if cfg.data is None:
        raise ValueError("no dataset: give --data, --set data=SPEC or 'data' in --config")
    return dataclasses.replace(cfg, data=parse_data_spec(cfg.data))


_PRECISION = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}


def run_evaluation(model, options: EvalConfig, dataset=None):
    """(results, extras, protocol) of `model` on ``options.data`` (or `dataset`: raw samples)."""
    import copy

    from torch.utils.data import DataLoader

    from dpt_perception.inference.pipeline import PerceptionPipeline
    from dpt_perception.model.devices import resolve_device
    from dpt_perception.training.data import build_dataset
    from dpt_perception.training.eval_loop import as_list, evaluate_frames
    from dpt_perception.training.protocols import get_protocol

    options.validate()  # also when built in code: a depth range the protocol fixes is an error
    spec = copy.deepcopy(options.data) or {}
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
        device=resolve_device(options.device),
        precision=_PRECISION[options.amp],
        net_size=tuple(net_size) if isinstance(net_size, list) else net_size,
        preprocessing=options.preprocessing,
    )
    depth_range = {k: v for k in ("min_depth", "max_depth") if (v := getattr(options, k)) is not None}
    protocol = get_protocol(options.protocol, **depth_range)
    batches = DataLoader(dataset, batch_size=options.batch_size, shuffle=False,
                         num_workers=options.num_workers, collate_fn=as_list)
    depth_kind = model.config.depth_kind if options.depth_kind == "auto" else options.depth_kind
    results, extras = evaluate_frames(
        predictor,
        batches,
        protocol,
        relative=depth_kind == "relative",
        max_batches=options.max_batches,
        num_examples=options.num_examples,
        quantize_png=options.png_quantize,
    )
    results["meta"] = {
        "protocol": "; ".join([protocol.name] + protocol.describe()),
        "preprocessing": options.preprocessing,
        "png_quantize": options.png_quantize,
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
    results["meta"].update(weights=str(args.weights), data=options.data.get("type"))
    written = write_report(
        results,
        extras,
        options.out,
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
