"""Compose ONE shared-encoder model from a depth model and a segmentation model.

The encoder comes from the model named by `encoder_from`; each task keeps its own neck and head.
Released depth and segmentation checkpoints have different encoders, so the task whose encoder is
replaced sees features it was not trained on: fine-tune that neck/head (the composed model is the
starting point for that) before trusting its outputs.
"""

from __future__ import annotations

from pathlib import Path

from ..config import DPTConfig
from ..dpt import DPT
from .common import CheckpointError

# Config fields that must agree for one encoder forward (and one reassemble layout) to serve both.
_SHARED_FIELDS = (
    "variant",
    "hidden_size",
    "num_layers",
    "num_heads",
    "mlp_ratio",
    "patch_size",
    "image_size",
    "out_indices",
    "resnet_stem_width",
    "resnet_widths",
    "resnet_depths",
    "resnet_groups",
    "reassemble_channels",
    "fusion_channels",
    "readout",
)


def composed_config(
    depth_cfg: DPTConfig, seg_cfg: DPTConfig, encoder_from: str, same_architecture: bool = True
) -> DPTConfig:
    """The config of one model with both tasks: the `encoder_from` model's encoder, each task's own
    neck and head. `same_architecture=False` skips the encoder-compatibility check: the config then
    only describes the joint outputs (a `model.pair.TaskPair` keeps both encoders)."""
    if "depth" not in depth_cfg.heads or "segmentation" not in seg_cfg.heads:
        raise CheckpointError(
            f"compose needs a depth model and a segmentation model; got heads "
            f"{depth_cfg.heads} and {seg_cfg.heads}"
        )
    if encoder_from not in ("depth", "segmentation"):
        raise ValueError(f"encoder_from must be 'depth' or 'segmentation', got {encoder_from!r}")
    diffs = [
        f"{f}: {getattr(depth_cfg, f)} vs {getattr(seg_cfg, f)}"
        for f in _SHARED_FIELDS
        if same_architecture and getattr(depth_cfg, f) != getattr(seg_cfg, f)
    ]
    if diffs:
        raise CheckpointError(
            "the depth and segmentation models have different architectures: " + "; ".join(diffs)
        )
    data = depth_cfg.to_dict()
    data.update(
        heads=["depth", "segmentation"],
        share_neck=False,
        num_classes=seg_cfg.num_classes,
        class_names=seg_cfg.class_names,
        class_colors=seg_cfg.class_colors,
        aux_head=seg_cfg.aux_head,
        segmentation_dropout=seg_cfg.segmentation_dropout,
        use_batch_norm_in_fusion={
            "depth": depth_cfg.use_batch_norm_in_fusion[depth_cfg.neck_for("depth")],
            "segmentation": seg_cfg.use_batch_norm_in_fusion[seg_cfg.neck_for("segmentation")],
            "shared": False,
        },
        numerics=(depth_cfg if encoder_from == "depth" else seg_cfg).numerics,
        net_size=(depth_cfg if encoder_from == "depth" else seg_cfg).net_size,
    )
    return DPTConfig.from_dict(data)


def compose_models(depth_model: DPT, seg_model: DPT, encoder_from: str = "depth") -> DPT:
    """A DPT with both heads: encoder from `encoder_from`, each task's neck and head from its model."""
    config = composed_config(depth_model.config, seg_model.config, encoder_from)
    model = DPT(config)
    source = depth_model if encoder_from == "depth" else seg_model
    model.encoder.load_state_dict(source.encoder.state_dict())
    model.necks["depth"].load_state_dict(depth_model.necks[depth_model.config.neck_for("depth")].state_dict())
    model.necks["segmentation"].load_state_dict(
        seg_model.necks[seg_model.config.neck_for("segmentation")].state_dict()
    )
    model.heads["depth"].load_state_dict(depth_model.heads["depth"].state_dict())
    model.heads["segmentation"].load_state_dict(seg_model.heads["segmentation"].state_dict())
    if model.aux_head is not None and seg_model.aux_head is not None:
        model.aux_head.load_state_dict(seg_model.aux_head.state_dict())
    return model.eval()


def compose_checkpoints(
    depth_checkpoint: str | Path, seg_checkpoint: str | Path, encoder_from: str = "depth"
) -> DPT:
    """`compose_models` on two checkpoints of any family `load_model` reads."""
    from .dispatch import load_model

    return compose_models(load_model(depth_checkpoint), load_model(seg_checkpoint), encoder_from)
