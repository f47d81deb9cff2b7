"""Shared checkpoint plumbing: safe reading, family recognition and strict loading with clear errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

FAMILY_DESCRIPTIONS = {
    "official_depth": "official DPT depth checkpoint (isl-org/DPT release, `pretrained.*`/`scratch.*`)",
    "official_segmentation": "official DPT segmentation checkpoint (isl-org/DPT release, with `auxlayer.*`)",
    "hf_depth": "Hugging Face transformers DPTForDepthEstimation (`dpt.*`, `neck.*`, `head.head.*`)",
    "hf_segmentation": "Hugging Face transformers DPTForSemanticSegmentation (with BN head)",
    "timm_vit": "timm ImageNet ViT (`blocks.*`, `patch_embed.proj.*`)",
    "timm_vit_hybrid": "timm ImageNet ViT-Hybrid (`patch_embed.backbone.*`)",
    "ours": "dpt_perception native format (`encoder.*`, `necks.*`, `heads.*`)",
    "unknown": "no known checkpoint family",
}


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not match the model it is loaded into."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from `*.safetensors` or a torch file (weights only, never arbitrary pickles).

    A torch file may be a plain state dict or wrap it as {"model": ...} / {"state_dict": ...}.
    """
    return unwrap_state_dict(read_checkpoint(path), str(Path(path)))


def read_checkpoint(path: str | Path) -> object:
    """What a `*.safetensors` (a dict of tensors) or torch file (weights only) holds, unwrapped
    by nothing: a state dict, a {"model": ...} wrapper or a training checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError) as exc:  # truncated, empty or not a safetensors file
            raise CheckpointError(f"cannot read {path} as a safetensors file: {exc}") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # re-raised with the file name
        raise CheckpointError(f"cannot read {path} as a weights-only torch file: {exc}") from exc
    return obj


def unwrap_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict", "model_state_dict"):
            inner = obj.get(wrapper)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{source}: expected a state dict (or {{'model': state_dict}}), got {type(obj)}"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: non-tensor entries in the state dict: {bad[:10]}")
    return {str(k): v for k, v in obj.items()}


def guess_family(keys: Iterable[str]) -> str:
    """Name the checkpoint family a set of state-dict keys looks like (see FAMILY_DESCRIPTIONS)."""
    keys = set(keys)

    def any_prefix(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if any_prefix("pretrained.model.") or any_prefix("scratch."):
        seg = any_prefix("auxlayer.") or "scratch.output_conv.1.running_mean" in keys
        return "official_segmentation" if seg else "official_depth"
    if any_prefix("dpt.embeddings.") or any_prefix("neck.fusion_stage."):
        seg = any_prefix("auxiliary_head.") or "head.head.1.running_mean" in keys
        return "hf_segmentation" if seg else "hf_depth"
    if any_prefix("encoder.") and (any_prefix("necks.") or any_prefix("heads.")):
        return "ours"
    if any_prefix("patch_embed.backbone."):
        return "timm_vit_hybrid"
    if any_prefix("blocks.") and "pos_embed" in keys:
        return "timm_vit"
    return "unknown"


def _listing(title: str, items: list[str], limit: int = 25) -> str:
    if not items:
        return ""
    shown = "\n    ".join(items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}):\n    {shown}{more}"


def load_state_dict_checked(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    strict: bool = True,
    original_keys: Iterable[str] | None = None,
) -> list[str]:
    """Load `state_dict` into `module`; with `strict`, any missing, unexpected or shape-mismatched
    key raises a CheckpointError listing all three and naming the family the file looks like.
    Returns the keys of `module` that were not loaded (non-strict)."""
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in own)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    if mismatched or (strict and (missing or unexpected)):
        family = guess_family(original_keys if original_keys is not None else state_dict.keys())
        raise CheckpointError(
            f"{source} does not match the model: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} shape-mismatched keys. The file looks like: {FAMILY_DESCRIPTIONS[family]}."
            + _listing("missing", missing)
            + _listing("unexpected", unexpected)
            + _listing("shape mismatch", mismatched)
        )
    loadable = {k: v for k, v in state_dict.items() if k in own}
    module.load_state_dict(loadable, strict=False)
    return missing
