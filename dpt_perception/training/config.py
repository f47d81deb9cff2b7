"""Typed configurations: dataclasses with defaults, YAML loading, dotted command-line overrides.

One mechanism for every command line that takes a configuration: training (`TrainConfig`, below),
evaluation (`training.evaluate.EvalConfig`) and distillation (`training.distill.DistillConfig`).

A configuration is a dataclass (`Config`) whose fields are options made with ``option(default,
help)`` or sections (nested dataclasses). A YAML file holds any subset of them; missing keys keep
their defaults and unknown keys are errors (with the valid names listed). ``--set key=value``
overrides one value, dotted for nested keys (the value is parsed as YAML, so ``--set
train.lr_encoder=1e-5``, ``--set data.train.type=folder`` and ``--set model.config.heads=[depth]``
all work). Values are checked against the fields' annotations. ``describe_options(cls)`` renders
every option with its default and meaning for ``--help``; ``add_flags`` / ``flag_overrides`` give
common options a flag of their own that is exactly a ``--set``.

Kept in-house rather than OmegaConf (2.4, pure Python, needs only PyYAML): its merge goes into
mappings key by key, where here a mapping given for an option (a dataset spec, a model config)
replaces the default one as a whole, and its errors are its own words rather than these, which
name the option and list the valid ones; a new runtime dependency of the ROS package for what
this small, tested loader already does.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def option(default, help: str):  # noqa: A002 - mirrors argparse's wording
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def check_all(checks: list[tuple[bool, str]]) -> None:
    """ValueError with the message of the first failed (ok, message) check."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


class Config:
    """Base of a top-level configuration dataclass: dict round trip and a validation hook."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None):
        return from_dict(cls, data)

    def validate(self) -> None:
        """Checks across options, run after loading (a subclass overrides it)."""


@dataclass
class ModelSection:
    tiny: bool = option(
        False,
        "build the model with DPTConfig.tiny(**config) (small test models) instead of DPTConfig(**config)",
    )
    config: dict = option(
        {"variant": "vit_base", "heads": ["depth", "segmentation"]},
        "keyword arguments of DPTConfig (variant, heads, num_classes, class_names, readout, aux_head, "
        "depth_kind, ...)",
    )
    init_weights: str | None = option(
        None, "start from these weights (anything dpt_perception.model.load_model reads; None = random init)"
    )
    depth_output_bias: float | None = option(
        1.0,
        "initial bias of the depth head's last conv when that head starts untrained (None = keep the model's "
        "init); a positive bias keeps the final ReLU from dying, and the shift-invariant losses leave it "
        "in place",
    )


@dataclass
class DataSection:
    train: dict = option(
        {"type": "synthetic"},
        "training dataset spec for build_dataset ({type: synthetic|folder|nyu|ade20k|kitti|rosbag2, ...})",
    )
    val: dict | None = option(None, "validation dataset spec (None = no periodic evaluation)")
    batch_size: int = option(8, "GLOBAL batch per micro-step, split evenly over DDP processes")
    eval_batch_size: int = option(8, "batch size of evaluation (rank 0 only)")
    num_workers: int = option(2, "DataLoader worker processes per training process")


@dataclass
class TrainSection:
    max_steps: int = option(1000, "optimizer steps to train (one step = grad_accum micro-batches)")
    lr_encoder: float = option(1e-5, "peak learning rate of model.encoder")
    lr_decoder: float = option(1e-4, "peak learning rate of everything else (necks and heads)")
    weight_decay: float = option(0.0, "Adam L2 weight decay")
    betas: list = option([0.9, 0.999], "Adam betas")
    adam_eps: float = option(
        1e-8, "Adam epsilon (larger values damp updates of parameters with tiny gradients)"
    )
    warmup_steps: int = option(100, "linear warm-up steps from warmup_start_factor*lr to lr")
    warmup_start_factor: float = option(0.01, "learning-rate factor at step 0 of the warm-up")
    schedule: str = option("cosine", "decay after warm-up: cosine | poly | constant")
    poly_power: float = option(0.9, "exponent of the poly schedule")
    min_lr_ratio: float = option(0.0, "final learning rate as a fraction of the peak (cosine and poly)")
    grad_accum: int = option(1, "micro-batches accumulated per optimizer step")
    grad_clip: float = option(0.0, "clip the global gradient norm to this value (0 = off)")
    amp: str = option("none", "mixed precision: none | bf16 | fp16 (fp16 uses a GradScaler)")
    freeze_encoder: bool = option(
        False, "train only the necks and heads (encoder frozen, not in the optimizer)"
    )
    seed: int = option(0, "seed of model init, data order and augmentation")
    device: str = option("auto", "auto | cpu | cuda | cuda:N (under torchrun: the local rank's GPU)")
    threads: int = option(0, "torch.set_num_threads per process (0 = leave torch's default)")


@dataclass
class LossSection:
    depth: str = option(
        "ssi_mad",
        "depth loss: ssi_mad (MiDaS trimmed MAE after median/MAD normalisation; trains from scratch) | ssi "
        "(least-squares aligned MSE) | ssi_trim (least-squares aligned MAE without the largest `trim` "
        "residuals) "
        "| silog (metric depth); the least-squares ones stall from a random init, use them to fine-tune",
    )
    depth_weight: float = option(1.0, "weight of the depth loss")
    gradient_weight: float = option(0.5, "weight of multi-scale gradient matching (relative depth losses)")
    gradient_scales: int = option(4, "number of scales of gradient matching")
    trim: float = option(0.2, "fraction of largest residuals dropped per image by ssi_trim and ssi_mad")
    silog_variance_focus: float = option(0.85, "lambda of the SILog loss")
    segmentation_weight: float = option(1.0, "weight of the segmentation cross-entropy")
    aux_weight: float = option(0.4, "relative weight of the auxiliary segmentation head")
    ignore_index: int = option(255, "label id without supervision")


@dataclass
class EvalSection:
    every: int = option(500, "evaluate every this many optimizer steps (0 = only at the end)")
    max_batches: int = option(0, "evaluate at most this many batches (0 = the whole validation set)")
    best_metric: str = option(
        "auto", "metric that selects the best checkpoint (auto = miou if segmenting, else abs_rel)"
    )
    depth_kind: str = option("auto", "relative (align per image) | metric | auto (from the model config)")
    min_depth: float = option(1e-3, "ground truth below this depth (m) is ignored")
    max_depth: float = option(80.0, "ground truth beyond this depth (m) is ignored; predictions capped here")


@dataclass
class OutputSection:
    dir: str = option("runs/dpt", "output folder (checkpoints/, tensorboard/, metrics/, export/, report/)")
    log_every: int = option(10, "log scalars every this many optimizer steps")
    image_every: int = option(200, "TensorBoard image panels every this many steps (0 = off)")
    checkpoint_every: int = option(500, "write checkpoints/last.pt every this many steps (and at the end)")
    tensorboard: bool = option(True, "write TensorBoard event files")
    progress: bool = option(True, "show a tqdm progress bar (rank 0)")
    export: bool = option(True, "export final (and best) weights with save_model for the ROS node")


@dataclass
class TrainConfig(Config):
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    loss: LossSection = field(default_factory=LossSection)
    eval: EvalSection = field(default_factory=EvalSection)
    output: OutputSection = field(default_factory=OutputSection)

    def validate(self) -> None:
        t = self.train
        check_all([
            (t.max_steps >= 1, f"train.max_steps must be >= 1, got {t.max_steps}"),
            (t.grad_accum >= 1, f"train.grad_accum must be >= 1, got {t.grad_accum}"),
            (
                t.schedule in ("cosine", "poly", "constant"),
                f"train.schedule must be cosine|poly|constant, got {t.schedule!r}",
            ),
            (t.amp in ("none", "bf16", "fp16"), f"train.amp must be none|bf16|fp16, got {t.amp!r}"),
            (t.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {t.warmup_steps}"),
            (self.data.batch_size >= 1, f"data.batch_size must be >= 1, got {self.data.batch_size}"),
            (
                self.eval.depth_kind in ("auto", "relative", "metric"),
                f"eval.depth_kind must be auto|relative|metric, got {self.eval.depth_kind!r}",
            ),
            (
                isinstance(self.data.train, dict) and "type" in self.data.train,
                "data.train must be a dataset spec with a 'type'",
            ),
            (
                self.loss.depth in ("ssi", "ssi_trim", "ssi_mad", "silog"),
                f"loss.depth must be ssi|ssi_trim|ssi_mad|silog, got {self.loss.depth!r}",
            ),
        ])


# ---- the generic loader --------------------------------------------------------------------------
def _is_section(hint) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def from_dict(cls, data: dict | None, prefix: str = ""):
    """An instance of the dataclass `cls` from a (nested) mapping, each value checked against its
    field's annotation; a dataclass's ``validate()`` runs once its fields are set."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        where = f"config section '{prefix.rstrip('.')}'" if prefix else f"a {cls.__name__}"
        raise ValueError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        if all(_is_section(hints[name]) for name in fields):
            raise ValueError(f"unknown config section(s) {unknown}; valid sections: {sorted(fields)}")
        raise ValueError(f"unknown option(s) {[prefix + u for u in unknown]}; valid: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if _is_section(hints[name]):
            kwargs[name] = from_dict(hints[name], data.get(name), f"{prefix}{name}.")
        else:
            value = data[name] if name in data else _default(f)
            kwargs[name] = _coerce(value, hints[name], prefix + name)
    instance = cls(**kwargs)
    if hasattr(instance, "validate"):
        instance.validate()
    return instance


_KINDS = {bool: "true or false", float: "a number", int: "an integer", str: "a string", dict: "a dict",
          list: "a list"}


def _coerce(value, hint, name: str):
    """`value` checked against the annotation `hint` (a type, or a union of types and None); ints
    are accepted for floats (YAML '1' vs '1.0') and so are strings like '1e-5' (YAML 1.1 reads
    them as strings)."""
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = [typing.get_origin(t) or t for t in members if t is not type(None)]  # list[int] -> list
    if value is None and type(None) in members:
        return None
    for kind in kinds if value is not None else ():
        if kind not in _KINDS:  # Any and the like: not checked
            return value
        if kind is float and not isinstance(value, bool):
            try:
                return float(value)
            except (TypeError, ValueError):
                continue
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
    expected = " or ".join(_KINDS.get(kind, str(kind)) for kind in kinds)
    raise ValueError(f"{name} must be {expected}, got {value!r}")


def parse_value(text: str) -> Any:
    """A command-line value as YAML (numbers, booleans, lists, mappings); '1e-5' becomes a float."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value):
        return float(value)
    return value


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``key=value`` (``section.key=value`` for nested keys) to a config dict in place."""
    if "=" not in assignment:
        raise ValueError(f"override {assignment!r} must look like key=value or section.key=value")
    key, text = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ValueError(f"override {assignment!r} names no option before '='")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ValueError(f"cannot set {key}: {part} is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = parse_value(text)


def load_config(cls, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()):
    """The configuration dataclass `cls`: its defaults, then the YAML file (if any), then each
    override in order; checked and validated."""
    data = dataclasses.asdict(cls())
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a configuration file must be a YAML mapping, got {loaded!r}")
        data = _merge(cls, data, loaded)
    for assignment in overrides:
        apply_override(data, assignment)
    return from_dict(cls, data)


def _merge(cls, base: dict, update: dict) -> dict:
    """`update` merged into `base` section by section; any other value, a mapping included, replaces
    the default as a whole (a YAML dataset spec or model config is not merged with the default)."""
    out = dict(base)
    hints = typing.get_type_hints(cls)
    for key, value in update.items():
        hint = hints.get(key)
        if _is_section(hint) and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(hint, out[key], value)
        else:
            out[key] = value
    return out


def _describe(cls, prefix: str, indent: str) -> list[str]:
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _is_section(hints[f.name]):
            lines.append(f"{indent}{prefix}{f.name}:")
            lines += _describe(hints[f.name], f"{prefix}{f.name}.", indent + "  ")
        else:
            lines.append(f"{indent}{prefix}{f.name} (default: {_default(f)!r})")
            lines.append(f"{indent}    {f.metadata.get('help', '')}")
    return lines


def describe_options(cls) -> str:
    """Every option of the configuration dataclass `cls` with its default and meaning (``--help``)."""
    header = "configuration options (YAML keys; override any with --set KEY=VALUE, dotted for nested keys):"
    return "\n".join([header] + _describe(cls, "", "  "))


def add_flags(parser: argparse.ArgumentParser, cls, flags: dict[str, str]) -> None:
    """One ``--flag-name`` per {flag_name: dotted key of `cls`}, exactly ``--set key=VALUE``; the
    flag of a true/false option takes no value and sets it true."""
    for flag, key in flags.items():
        hint = cls
        for part in key.split("."):
            hint = typing.get_type_hints(hint)[part]
        name = f"--{flag.replace('_', '-')}"
        if hint is bool:
            parser.add_argument(name, dest=flag, action="store_const", const="true",
                                help=f"same as --set {key}=true")
        else:
            parser.add_argument(name, dest=flag, metavar="VALUE", help=f"same as --set {key}=VALUE")


def flag_overrides(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    """The ``key=value`` overrides of the `add_flags` flags given on the command line."""
    return [f"{key}={getattr(args, flag)}" for flag, key in flags.items() if getattr(args, flag) is not None]
