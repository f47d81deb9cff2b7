"""Training configuration: dataclasses with defaults, YAML loading, dotted command-line overrides.

A YAML file holds any subset of the sections below; missing keys keep their defaults and unknown
keys are errors (with the valid names listed). ``--set section.key=value`` overrides one value
(the value is parsed as YAML, so ``--set train.lr_encoder=1e-5``, ``--set data.train.type=folder``
and ``--set model.config.heads=[depth]`` all work). ``describe_options()`` renders every option
with its default and meaning for ``--help``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def _opt(default, help: str):  # noqa: A002 - mirrors argparse's wording
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelSection:
    tiny: bool = _opt(
        False,
        "build the model with DPTConfig.tiny(**config) (small test models) instead of DPTConfig(**config)",
    )
    config: dict = _opt(
        {"variant": "vit_base", "heads": ["depth", "segmentation"]},
        "keyword arguments of DPTConfig (variant, heads, num_classes, class_names, readout, aux_head, "
        "depth_mode, ...)",
    )
    init_weights: str | None = _opt(
        None, "start from these weights (anything dpt_perception.model.load_model reads; None = random init)"
    )
    depth_output_bias: float | None = _opt(
        1.0,
        "initial bias of the depth head's last conv when that head starts untrained (None = keep the model's "
        "init); a positive bias keeps the final ReLU from dying, and the shift-invariant losses leave it "
        "in place",
    )


@dataclass
class DataSection:
    train: dict = _opt(
        {"type": "synthetic"},
        "training dataset spec for build_dataset ({type: synthetic|folder|nyu|ade20k|kitti|rosbag2, ...})",
    )
    val: dict | None = _opt(None, "validation dataset spec (None = no periodic evaluation)")
    batch_size: int = _opt(8, "GLOBAL batch per micro-step, split evenly over DDP processes")
    eval_batch_size: int = _opt(8, "batch size of evaluation (rank 0 only)")
    num_workers: int = _opt(2, "DataLoader worker processes per training process")


@dataclass
class TrainSection:
    max_steps: int = _opt(1000, "optimizer steps to train (one step = grad_accum micro-batches)")
    lr_encoder: float = _opt(1e-5, "peak learning rate of model.encoder")
    lr_decoder: float = _opt(1e-4, "peak learning rate of everything else (necks and heads)")
    weight_decay: float = _opt(0.0, "Adam L2 weight decay")
    betas: list = _opt([0.9, 0.999], "Adam betas")
    adam_eps: float = _opt(
        1e-8, "Adam epsilon (larger values damp updates of parameters with tiny gradients)"
    )
    warmup_steps: int = _opt(100, "linear warm-up steps from warmup_start_factor*lr to lr")
    warmup_start_factor: float = _opt(0.01, "learning-rate factor at step 0 of the warm-up")
    schedule: str = _opt("cosine", "decay after warm-up: cosine | poly | constant")
    poly_power: float = _opt(0.9, "exponent of the poly schedule")
    min_lr_ratio: float = _opt(0.0, "final learning rate as a fraction of the peak (cosine and poly)")
    grad_accum: int = _opt(1, "micro-batches accumulated per optimizer step")
    grad_clip: float = _opt(0.0, "clip the global gradient norm to this value (0 = off)")
    amp: str = _opt("none", "mixed precision: none | bf16 | fp16 (fp16 uses a GradScaler)")
    freeze_encoder: bool = _opt(
        False, "train only the necks and heads (encoder frozen, not in the optimizer)"
    )
    seed: int = _opt(0, "seed of model init, data order and augmentation")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N (under torchrun: the local rank's GPU)")
    threads: int = _opt(0, "torch.set_num_threads per process (0 = leave torch's default)")


@dataclass
class LossSection:
    depth: str = _opt(
        "ssi_mad",
        "depth loss: ssi_mad (MiDaS trimmed MAE after median/MAD normalisation; trains from scratch) | ssi "
        "(least-squares aligned MSE) | ssi_trim (least-squares aligned MAE without the largest `trim` "
        "residuals) "
        "| silog (metric depth); the least-squares ones stall from a random init, use them to fine-tune",
    )
    depth_weight: float = _opt(1.0, "weight of the depth loss")
    gradient_weight: float = _opt(0.5, "weight of multi-scale gradient matching (relative depth losses)")
    gradient_scales: int = _opt(4, "number of scales of gradient matching")
    trim: float = _opt(0.2, "fraction of largest residuals dropped per image by ssi_trim and ssi_mad")
    silog_variance_focus: float = _opt(0.85, "lambda of the SILog loss")
    segmentation_weight: float = _opt(1.0, "weight of the segmentation cross-entropy")
    aux_weight: float = _opt(0.4, "relative weight of the auxiliary segmentation head")
    ignore_index: int = _opt(255, "label id without supervision")


@dataclass
class EvalSection:
    every: int = _opt(500, "evaluate every this many optimizer steps (0 = only at the end)")
    max_batches: int = _opt(0, "evaluate at most this many batches (0 = the whole validation set)")
    best_metric: str = _opt(
        "auto", "metric that selects the best checkpoint (auto = miou if segmenting, else abs_rel)"
    )
    depth_mode: str = _opt("auto", "relative (align per image) | metric | auto (from the model config)")
    min_depth: float = _opt(1e-3, "ground truth below this depth (m) is ignored")
    max_depth: float = _opt(80.0, "ground truth beyond this depth (m) is ignored; predictions capped here")


@dataclass
class OutputSection:
    dir: str = _opt("runs/dpt", "output folder (checkpoints/, tensorboard/, metrics/, export/, report/)")
    log_every: int = _opt(10, "log scalars every this many optimizer steps")
    image_every: int = _opt(200, "TensorBoard image panels every this many steps (0 = off)")
    checkpoint_every: int = _opt(500, "write checkpoints/last.pt every this many steps (and at the end)")
    tensorboard: bool = _opt(True, "write TensorBoard event files")
    progress: bool = _opt(True, "show a tqdm progress bar (rank 0)")
    export: bool = _opt(True, "export final (and best) weights with save_model for the ROS node")


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    loss: LossSection = field(default_factory=LossSection)
    eval: EvalSection = field(default_factory=EvalSection)
    output: OutputSection = field(default_factory=OutputSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> TrainConfig:
        data = data or {}
        if not isinstance(data, dict):
            raise ValueError(f"a training config must be a mapping of sections, got {type(data).__name__}")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ValueError(f"unknown config section(s) {unknown}; valid sections: {sorted(sections)}")
        kwargs = {}
        for name, f in sections.items():
            section_type = f.default_factory().__class__
            kwargs[name] = _section_from_dict(section_type, data.get(name) or {}, name)
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        t = self.train
        checks = [
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
                self.eval.depth_mode in ("auto", "relative", "metric"),
                f"eval.depth_mode must be auto|relative|metric, got {self.eval.depth_mode!r}",
            ),
            (
                isinstance(self.data.train, dict) and "type" in self.data.train,
                "data.train must be a dataset spec with a 'type'",
            ),
            (
                self.loss.depth in ("ssi", "ssi_trim", "ssi_mad", "silog"),
                f"loss.depth must be ssi|ssi_trim|ssi_mad|silog, got {self.loss.depth!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def _section_from_dict(section_type, values: dict, section_name: str):
    if not isinstance(values, dict):
        raise ValueError(f"config section '{section_name}' must be a mapping, got {values!r}")
    names = {f.name for f in dataclasses.fields(section_type)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"unknown option(s) {[f'{section_name}.{u}' for u in unknown]}; valid: {sorted(names)}"
        )
    section = section_type(**values)
    for f in dataclasses.fields(section_type):
        value = getattr(section, f.name)
        default = getattr(section_type(), f.name)
        setattr(section, f.name, _coerce(value, default, f"{section_name}.{f.name}"))
    return section


def _coerce(value, default, name: str):
    """Check a value against its default's type; ints are accepted for floats (YAML '1' vs '1.0')
    and strings like '1e-5' for floats (YAML 1.1 reads them as strings)."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    if isinstance(default, (dict, list)) and not isinstance(value, type(default)):
        raise ValueError(f"{name} must be a {type(default).__name__}, got {value!r}")
    return value


def parse_value(text: str) -> Any:
    """A command-line value as YAML (numbers, booleans, lists, mappings); '1e-5' becomes a float."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value):
        return float(value)
    return value


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``dotted.key=value`` assignment to a nested config dict in place."""
    if "=" not in assignment:
        raise ValueError(f"override {assignment!r} must look like section.key=value")
    key, text = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) < 2:
        raise ValueError(f"override key {key!r} must name a section and an option, e.g. train.lr_encoder")
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


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults, then the YAML file (if any), then each override in order."""
    data = TrainConfig().to_dict()
    if path is not None:
        text = Path(path).read_text()
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping of sections")
        data = _deep_merge(
            data, loaded, replace_keys={("model", "config"), ("data", "train"), ("data", "val")}
        )
    for assignment in overrides:
        apply_override(data, assignment)
    return TrainConfig.from_dict(data)


def _deep_merge(base: dict, update: dict, replace_keys=frozenset(), prefix=()) -> dict:
    """Merge ``update`` into ``base``; mappings under ``replace_keys`` are replaced, not merged
    (a YAML dataset spec or model config replaces the default one as a whole)."""
    out = dict(base)
    for key, value in update.items():
        path = prefix + (key,)
        if isinstance(value, dict) and isinstance(out.get(key), dict) and path not in replace_keys:
            out[key] = _deep_merge(out[key], value, replace_keys, path)
        else:
            out[key] = value
    return out


def describe_dataclass(section_type, section_name: str) -> str:
    """One section's options with their defaults and meanings (indented for --help)."""
    lines = [f"  {section_name}:"]
    for f in dataclasses.fields(section_type):
        default = getattr(section_type(), f.name)
        lines.append(f"    {section_name}.{f.name} (default: {default!r})")
        lines.append(f"        {f.metadata.get('help', '')}")
    return "\n".join(lines)


def describe_options() -> str:
    """Every option with its default and meaning, for ``--help``."""
    lines = ["configuration options (YAML sections; override any with --set section.option=value):"]
    for section in dataclasses.fields(TrainConfig):
        lines.append(describe_dataclass(section.default_factory().__class__, section.name))
    return "\n".join(lines)
