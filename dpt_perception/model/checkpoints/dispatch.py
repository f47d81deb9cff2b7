"""`load_model`: pick the right loader for a path or a preset name."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import PRESETS
from ..dpt import DPT
from .common import FAMILY_DESCRIPTIONS, CheckpointError, guess_family, read_state_dict
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


def load_model(path_or_name: str | Path, preset: str | None = None, strict: bool = True) -> DPT:
    """Load a DPT (eval mode) from any supported checkpoint family; see the package docstring."""
    from .official import load_official

    text = str(path_or_name)
    if text == DEMO_NAME and not Path(text).exists():
        return load_native(DEMO_WEIGHTS, strict=strict)
    if text in PRESETS and not Path(text).exists():
        path = weights_dir() / PRESETS[text]["file"]
        if not path.is_file():
            raise CheckpointError(
                f"preset {text!r} needs {PRESETS[text]['file']} in {weights_dir()} "
                f"(download it: python -m dpt_perception.inference.weights download {text})"
            )
        return load_official(path, text, strict=strict)
    path = Path(path_or_name)
    if is_hf_checkpoint(path):
        return load_hf(path, strict=strict)
    if is_native(path):
        return load_native(path, strict=strict)
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a directory but not an HF checkpoint (needs config.json and model.safetensors or "
            f"pytorch_model.bin)"
        )
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint file/directory, and not a preset name (presets: {sorted(PRESETS)})"
        )
    state_dict = read_state_dict(path)
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
