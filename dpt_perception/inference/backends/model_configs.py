"""Named model configurations for the export and benchmark commands (random weights).

"hybrid" / "base" / "large" are the paper's architectures at full size with both heads; "tiny"
is `DPTConfig.tiny` of the hybrid variant (seconds to build and run, for tests and smoke runs).
"""

from __future__ import annotations

from dpt_perception.model import DPTConfig

CONFIG_NAMES = ("hybrid", "base", "large", "tiny")
_VARIANTS = {"hybrid": "vit_hybrid", "base": "vit_base", "large": "vit_large", "tiny": "vit_hybrid"}


def config_by_name(name: str, heads=("depth", "segmentation"), num_classes: int | None = None) -> DPTConfig:
    """A `DPTConfig` for a short name; `heads` picks the enabled heads."""
    if name not in _VARIANTS:
        raise ValueError(f"unknown model config {name!r}; expected one of {CONFIG_NAMES}")
    heads = list(heads)
    extra = {} if num_classes is None else {"num_classes": num_classes}
    if name == "tiny":
        return DPTConfig.tiny(_VARIANTS[name], heads=heads, **extra)
    return DPTConfig(variant=_VARIANTS[name], heads=heads, **extra)


def parse_heads(text: str) -> tuple[str, ...]:
    """ "depth,segmentation" -> ("depth", "segmentation"), validated."""
    heads = tuple(h.strip() for h in text.split(",") if h.strip())
    bad = [h for h in heads if h not in ("depth", "segmentation")]
    if not heads or bad:
        raise ValueError(f"heads must be a comma list of 'depth' and/or 'segmentation', got {text!r}")
    return heads
