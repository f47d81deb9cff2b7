"""`load_model`: the one loader, picking the right family for a path or an official name."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..config import PRESETS, DPTConfig
from ..dpt import DPT
from .common import (
    FAMILY_DESCRIPTIONS,
    CheckpointError,
    guess_family,
    load_state_dict_checked,
    read_checkpoint,
    unwrap_state_dict,
)
from .hf import is_hf_checkpoint, load_hf
from .native import is_native, load_native

WEIGHTS_CACHE_ENV = "DPT_PERCEPTION_CACHE"
# The bundled demo model (small, depth + 5 classes, trained on the synthetic demo scenes only),
# shipped as package data; `load_model("demo")` and the node's `weights: demo` name it.
DEMO_NAME = "demo"
DEMO_WEIGHTS = (Path(__file__).resolve().parents[2] / "data"
                / "demo_weights" / "dpt_demo_synthetic.safetensors")


def weights_dir() -> Path:
    """The one weights cache (preset lookups here, downloads by `dpt_perception.inference.weights`):
    $DPT_PERCEPTION_CACHE, else ~/.cache/dpt_perception."""
    return Path(os.environ.get(WEIGHTS_CACHE_ENV, Path.home() / ".cache" / "dpt_perception")).expanduser()


def preset_for_file(path: str | Path) -> str | None:
    name = Path(path).name
    for preset, info in PRESETS.items():
        if name == info["file"]:
            return preset
    return None


def load_model(path_or_name: str | Path, preset: str | None = None, strict: bool = True,
               download: bool = False) -> DPT:
    """The one loader: a DPT (eval mode) from any supported checkpoint, by path or by name.

    A path: our format (`x.safetensors` + `x.json`, or the stem `x`), an HF directory, an official
    `.pt` (preset from its file name or `preset=`), or a training checkpoint of
    `dpt_perception.training` (`{"model": state_dict, "model_config": ...}`).
    A name of an official checkpoint (alias such as `dpt_hybrid_nyu`, file stem or file name): the
    file in the weights cache (`weights_dir()`); `download=True` fetches it there once, SHA-256
    checked (by `dpt_perception.inference.weights`), when it is missing."""
    from .official import load_official

    text = str(path_or_name)
    if text == DEMO_NAME and not Path(text).exists():
        return load_native(DEMO_WEIGHTS, strict=strict)
    path = Path(path_or_name).expanduser()
    native_parts = [path.with_suffix(".safetensors"), path.with_suffix(".json")]
    if not (path.exists() or any(p.is_file() for p in native_parts)):
        path, alias = _official_file(text, download)
        return load_official(path, preset or alias, strict=strict)
    if is_hf_checkpoint(path):
        return load_hf(path, strict=strict)
    if is_native(path) or not path.exists():  # our format (one of its two files missing: says so)
        return load_native(path, strict=strict)
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a directory but not an HF checkpoint (needs config.json and model.safetensors or "
            f"pytorch_model.bin)"
        )
    stored = read_checkpoint(path)
    if isinstance(stored, Mapping) and "model_config" in stored and "model" in stored:
        return _from_training_checkpoint(stored, path, strict)
    state_dict = unwrap_state_dict(stored, str(path))
    family = guess_family(state_dict.keys())
    if family.startswith("official"):
        preset = preset or preset_for_file(path)
        if preset is None:
            raise CheckpointError(
                f"{path} looks like an {FAMILY_DESCRIPTIONS[family]} but its file name is not "
                f"one of the release names; pass preset= one of {sorted(PRESETS)}"
            )
        return load_official(state_dict, preset, strict=strict, source=str(path))
    raise CheckpointError(
        f"cannot load {path} as a full model: it looks like {FAMILY_DESCRIPTIONS[family]} "
        f"(timm ImageNet weights initialise an encoder: see checkpoints.timm_init)"
    )


def _official_file(name: str, download: bool) -> tuple[Path, str]:
    """(cached file, alias) of an official checkpoint name; CheckpointError when it is not one or
    is not cached (and download is False)."""
    # The registry, its cache and the verified download live in inference.weights (built on PRESETS).
    from dpt_perception.inference.weights import lookup, resolve_weights

    try:
        entry = lookup(name)
    except KeyError:
        raise CheckpointError(
            f"{name}: no such checkpoint file/directory, and not a preset name (presets: {sorted(PRESETS)})"
        ) from None
    try:
        return resolve_weights(entry.name, download=download), entry.alias
    except FileNotFoundError as exc:
        raise CheckpointError(f"preset {name!r}: {exc}") from None


def _from_training_checkpoint(stored: Mapping, path: Path, strict: bool) -> DPT:
    """The model of a `dpt_perception.training` checkpoint (its config travels with it)."""
    try:
        config = DPTConfig.from_dict(stored["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: training checkpoint with an invalid model_config: {exc}") from exc
    model = DPT(config)
    load_state_dict_checked(model, unwrap_state_dict(stored, str(path)), strict=strict, source=str(path))
    return model.eval()
