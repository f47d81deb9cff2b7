"""The DPT network, its configuration and checkpoint loaders (`dpt_perception.model.checkpoints`)."""

from .config import PRESETS, DPTConfig
from .dpt import DPT, build_encoder, depth_to_metric

__all__ = ["DPT", "DPTConfig", "PRESETS", "build_encoder", "depth_to_metric"]
