"""The reference release (isl-org/DPT) checkpoint layout: loader and exporter.

Layout (see docs/reference): `pretrained.model.*` is the timm encoder (our `encoder.*` verbatim),
`pretrained.act_postprocess{k}.{0.project.0,3,4}` the reassemble layers, `scratch.layer{k}_rn` the
per-level projections, `scratch.refinenet{5-i}` our fusion layer i (refinenet4 is the deepest),
`scratch.output_conv` the task head and `auxlayer` the segmentation auxiliary head.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..config import PRESETS, DPTConfig
from ..dpt import DPT
from .common import (
    FAMILY_DESCRIPTIONS,
    CheckpointError,
    guess_family,
    load_state_dict_checked,
    read_state_dict,
)

# Encoder entries of the release that DPT never uses (the ImageNet classifier).
_UNUSED_ENCODER_KEYS = re.compile(r"^pretrained\.model\.(head|pre_logits|fc_norm)\.")


def _fusion_official_to_ours(rest: str) -> str:
    rest = rest.replace("out_conv.", "projection.")
    rest = re.sub(r"resConfUnit(\d)\.", r"residual_layer\1.", rest)
    rest = re.sub(r"\.conv(\d)\.", r".convolution\1.", rest)
    return re.sub(r"\.bn(\d)\.", r".batch_norm\1.", rest)


def _fusion_ours_to_official(rest: str) -> str:
    rest = rest.replace("projection.", "out_conv.")
    rest = re.sub(r"residual_layer(\d)\.", r"resConfUnit\1.", rest)
    rest = re.sub(r"\.convolution(\d)\.", r".conv\1.", rest)
    return re.sub(r"\.batch_norm(\d)\.", r".bn\1.", rest)


def official_task(keys) -> str:
    family = guess_family(keys)
    if not family.startswith("official"):
        raise CheckpointError(f"not an official DPT checkpoint; it looks like: {FAMILY_DESCRIPTIONS[family]}")
    return "segmentation" if family == "official_segmentation" else "depth"


def convert_official_state_dict(sd: dict[str, torch.Tensor], task: str, neck: str) -> dict[str, torch.Tensor]:
    """Reference names -> ours (unknown keys are kept, marked, so a strict load reports them)."""
    out = {}
    for key, value in sd.items():
        if _UNUSED_ENCODER_KEYS.match(key):
            continue
        new = None
        if key.startswith("pretrained.model."):
            new = "encoder." + key[len("pretrained.model.") :]
        elif m := re.match(r"^pretrained\.act_postprocess(\d)\.0\.project\.0\.(weight|bias)$", key):
            new = f"necks.{neck}.reassemble_stage.readout_projects.{int(m[1]) - 1}.0.{m[2]}"
        elif m := re.match(r"^pretrained\.act_postprocess(\d)\.([34])\.(weight|bias)$", key):
            part = "projection" if m[2] == "3" else "resize"
            new = f"necks.{neck}.reassemble_stage.layers.{int(m[1]) - 1}.{part}.{m[3]}"
        elif m := re.match(r"^scratch\.layer(\d)_rn\.weight$", key):
            new = f"necks.{neck}.projections.{int(m[1]) - 1}.weight"
        elif m := re.match(r"^scratch\.refinenet(\d)\.(.*)$", key):
            new = f"necks.{neck}.fusion_stage.layers.{4 - int(m[1])}." + _fusion_official_to_ours(m[2])
        elif key.startswith("scratch.output_conv."):
            new = f"heads.{task}.head." + key[len("scratch.output_conv.") :]
        elif key.startswith("auxlayer."):
            new = "aux_head.head." + key[len("auxlayer.") :]
        out[new if new is not None else f"<official>{key}"] = value
    return out


def to_official_state_dict(model: DPT, task: str | None = None) -> dict[str, torch.Tensor]:
    """Export one task of `model` (its encoder, that task's neck and head) in the reference layout."""
    config = model.config
    task = task or config.heads[0]
    if task not in config.heads:
        raise ValueError(f"model has no {task!r} head (heads: {config.heads})")
    neck = config.neck_for(task)
    out = {}
    for key, value in model.state_dict().items():
        new = None
        if key.startswith("encoder."):
            new = "pretrained.model." + key[len("encoder.") :]
        elif key.startswith(f"necks.{neck}."):
            rest = key[len(f"necks.{neck}.") :]
            if m := re.match(r"^reassemble_stage\.readout_projects\.(\d)\.0\.(weight|bias)$", rest):
                new = f"pretrained.act_postprocess{int(m[1]) + 1}.0.project.0.{m[2]}"
            elif m := re.match(r"^reassemble_stage\.layers\.(\d)\.(projection|resize)\.(weight|bias)$", rest):
                new = f"pretrained.act_postprocess{int(m[1]) + 1}.{3 if m[2] == 'projection' else 4}.{m[3]}"
            elif m := re.match(r"^projections\.(\d)\.weight$", rest):
                new = f"scratch.layer{int(m[1]) + 1}_rn.weight"
            elif m := re.match(r"^fusion_stage\.layers\.(\d)\.(.*)$", rest):
                new = f"scratch.refinenet{4 - int(m[1])}." + _fusion_ours_to_official(m[2])
        elif key.startswith(f"heads.{task}.head."):
            new = "scratch.output_conv." + key[len(f"heads.{task}.head.") :]
        elif key.startswith("aux_head.head.") and task == "segmentation":
            new = "auxlayer." + key[len("aux_head.head.") :]
        if new is not None:
            out[new] = value.detach().clone()
    return out


def load_official(
    path_or_state_dict: str | Path | dict[str, torch.Tensor],
    preset: str | DPTConfig,
    strict: bool = True,
    source: str | None = None,
) -> DPT:
    """Load a reference-release file (plain state dict or {"model": ...}) into the preset's config.

    `preset` is a name from PRESETS or a DPTConfig with one head (for custom/tiny models).
    """
    if isinstance(path_or_state_dict, dict):
        sd, source = path_or_state_dict, source or "official state dict"
    else:
        sd, source = read_state_dict(path_or_state_dict), source or str(path_or_state_dict)
    config = DPTConfig.preset(preset) if isinstance(preset, str) else preset
    if len(config.heads) != 1:
        raise ValueError(f"an official checkpoint holds one task; config has heads {config.heads}")
    expected = config.heads[0]
    found = official_task(sd.keys())
    if found != expected:
        name = preset if isinstance(preset, str) else f"a {expected} config"
        raise CheckpointError(
            f"{source} is an official {found} checkpoint, but {name} expects a {expected} checkpoint; "
            f"load it with a {found} preset (e.g. {_example_preset(found)})"
        )
    if expected == "segmentation" and not any(k.startswith("auxlayer.") for k in sd) and config.aux_head:
        config = config.replace(aux_head=False)
    model = DPT(config)
    converted = convert_official_state_dict(sd, expected, config.neck_for(expected))
    load_state_dict_checked(model, converted, source, strict=strict, original_keys=sd.keys())
    return model.eval()


def _example_preset(task: str) -> str:
    return next(name for name, info in PRESETS.items() if info["config"]["heads"] == [task])
