"""Our own format: `<path>.safetensors` (weights) + `<path>.json` (the full DPTConfig)."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import DPTConfig
from ..dpt import DPT
from .common import CheckpointError, load_state_dict_checked, read_state_dict

FORMAT_NAME = "dpt_perception"
FORMAT_VERSION = 1


def _base(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def save_model(model: DPT, path: str | Path, extra: dict | None = None) -> tuple[Path, Path]:
    """Write `<path>.safetensors` and `<path>.json`; returns both paths. `extra` entries (e.g. the
    teachers of a distilled model) are stored in the JSON beside the config; loading ignores them."""
    from safetensors.torch import save_file

    base = _base(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    weights, config_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
    # safetensors refuses shared storage; a contiguous clone per tensor is cheap at save time.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(weights), metadata={"format": FORMAT_NAME, "version": str(FORMAT_VERSION)})
    meta = {**(extra or {}), "format": FORMAT_NAME, "version": FORMAT_VERSION}
    meta["config"] = model.config.to_dict()
    config_path.write_text(json.dumps(meta, indent=2))
    return weights, config_path


def is_native(path: str | Path) -> bool:
    base = _base(path)
    return base.with_suffix(".safetensors").is_file() and base.with_suffix(".json").is_file()


def load_native(path: str | Path, strict: bool = True) -> DPT:
    base = _base(path)
    config_path, weights = base.with_suffix(".json"), base.with_suffix(".safetensors")
    if not config_path.is_file() or not weights.is_file():
        raise CheckpointError(f"our format needs both {weights} and {config_path}")
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"cannot read {config_path} as JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME or "config" not in meta:
        raise CheckpointError(f"{config_path} is not a {FORMAT_NAME} config (no 'format'/'config' keys)")
    version = meta.get("version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path} has format version {version!r}, expected an integer <= {FORMAT_VERSION}"
        )
    try:
        config = DPTConfig.from_dict(meta["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{config_path}: invalid model config: {exc}") from exc
    model = DPT(config)
    load_state_dict_checked(model, read_state_dict(weights), str(weights), strict=strict)
    return model.eval()
