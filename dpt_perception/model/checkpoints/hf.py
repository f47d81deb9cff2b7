"""Hugging Face transformers DPT checkpoints (DPTForDepthEstimation / DPTForSemanticSegmentation).

A checkpoint is a directory with `config.json` and `model.safetensors` or `pytorch_model.bin`.
The converted model uses the "hf" numerics family (LayerNorm eps from the config, BiT weight
standardisation (w-mean)/sqrt(var+1e-8)), so it reproduces HF's outputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from ..config import DPTConfig
from ..dpt import DPT
from ..resnet_hybrid import make_divisible
from .common import CheckpointError, load_state_dict_checked, read_state_dict

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_hf_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return (
        path.is_dir() and (path / "config.json").is_file() and any((path / f).is_file() for f in WEIGHT_FILES)
    )


def _task_from_config(hf: dict[str, Any]) -> str:
    archs = hf.get("architectures") or []
    if "DPTForSemanticSegmentation" in archs:
        return "segmentation"
    if "DPTForDepthEstimation" in archs:
        return "depth"
    raise CheckpointError(
        f"HF config architectures {archs} contain neither DPTForDepthEstimation nor "
        f"DPTForSemanticSegmentation"
    )


def config_from_hf(hf: dict[str, Any], task: str | None = None) -> DPTConfig:
    """Translate a transformers `DPTConfig` (as a dict, e.g. config.json) into ours."""
    task = task or _task_from_config(hf)

    def unsupported(what: str) -> CheckpointError:
        return CheckpointError(f"unsupported HF DPT configuration: {what}")

    if hf.get("model_type", "dpt") != "dpt":
        raise unsupported(f"model_type {hf.get('model_type')!r}")
    is_hybrid = bool(hf.get("is_hybrid", False))
    backbone = hf.get("backbone_config")
    if not is_hybrid and (backbone is not None or hf.get("backbone") is not None):
        raise unsupported("external backbones (DINOv2 / BEiT / Swin based DPT) are not supported")
    factors = [float(f) for f in hf.get("reassemble_factors", [4, 2, 1, 0.5])]
    # The hybrid's first two levels are ResNet maps (identity reassemble), so their factors are moot
    # (Intel/dpt-hybrid-midas ships [1, 1, 1, 0.5]).
    if factors[2 if is_hybrid else 0 :] != [4.0, 2.0, 1.0, 0.5][2 if is_hybrid else 0 :]:
        raise unsupported(f"reassemble_factors {hf.get('reassemble_factors')} (only [4, 2, 1, 0.5])")
    # LayerNorm eps is the only numerics difference of a plain ViT; the hybrid also differs in
    # weight standardisation, where HF always uses its own (BiT) formula.
    eps = float(hf.get("layer_norm_eps", 1e-12))
    if eps == 1e-12:
        numerics = "hf"
    elif eps == 1e-6 and not is_hybrid:
        numerics = "official"
    else:
        raise unsupported(f"layer_norm_eps {eps} (supported: 1e-12, or 1e-6 for plain ViTs)")
    if hf.get("add_projection", False):
        raise unsupported("add_projection=True")
    if hf.get("head_in_index", -1) != -1:
        raise unsupported(f"head_in_index {hf.get('head_in_index')}")
    if hf.get("hidden_act", "gelu") != "gelu" or not hf.get("qkv_bias", True):
        raise unsupported("hidden_act other than 'gelu' or qkv_bias=False")
    use_bn = bool(hf.get("use_batch_norm_in_fusion_residual", False))
    use_bias = hf.get("use_bias_in_fusion_residual")
    if use_bias is not None and bool(use_bias) == use_bn:
        raise unsupported(f"use_bias_in_fusion_residual={use_bias} with batch norm={use_bn}")
    hidden = int(hf.get("hidden_size", 768))
    image_size = hf.get("image_size", 384)
    if isinstance(image_size, (list, tuple)):
        if image_size[0] != image_size[1]:
            raise unsupported(f"non-square image_size {image_size}")
        image_size = image_size[0]
    out_indices = list(hf.get("backbone_out_indices", [2, 5, 8, 11]))
    neck = list(hf.get("neck_hidden_sizes", [96, 192, 384, 768]))
    cfg: dict[str, Any] = dict(
        hidden_size=hidden,
        num_layers=int(hf.get("num_hidden_layers", 12)),
        num_heads=int(hf.get("num_attention_heads", 12)),
        mlp_ratio=int(hf.get("intermediate_size", 3072)) / hidden,
        patch_size=int(hf.get("patch_size", 16)),
        image_size=int(image_size),
        reassemble_channels=neck,
        fusion_channels=int(hf.get("fusion_hidden_size", 256)),
        readout=hf.get("readout_type", "project"),
        heads=[task],
        numerics=numerics,
        use_batch_norm_in_fusion={task: use_bn, "shared": use_bn},
        segmentation_dropout=float(hf.get("semantic_classifier_dropout", 0.1)),
    )
    if is_hybrid:
        bb = dict(backbone or {})
        if (
            bb.get("layer_type", "bottleneck") != "bottleneck"
            or str(bb.get("global_padding", "same")).lower() != "same"
        ):
            raise unsupported(
                f"hybrid backbone layer_type={bb.get('layer_type')} global_padding={bb.get('global_padding')}"
            )
        width_factor = bb.get("width_factor", 1)
        depths = list(bb.get("depths", [3, 4, 9]))
        hidden_sizes = list(bb.get("hidden_sizes", [256, 512, 1024, 2048]))
        cfg.update(
            variant="vit_hybrid",
            out_indices=out_indices[2:],
            resnet_stem_width=int(bb.get("embedding_size", 64)),
            # BiT configs list 4 stage widths; DPT builds only as many stages as `depths` has.
            resnet_widths=[make_divisible(w * width_factor) for w in hidden_sizes[: len(depths)]],
            resnet_depths=depths,
            resnet_groups=int(bb.get("num_groups", 32)),
        )
    else:
        # Large's neck widths end in two equal sizes ([256, 512, 1024, 1024]); Base's do not.
        cfg.update(variant="vit_large" if neck[2] == neck[3] else "vit_base", out_indices=out_indices)
    if task == "segmentation":
        id2label = hf.get("id2label") or {}
        num_classes = len(id2label) if id2label else int(hf.get("num_labels", 150))
        cfg.update(num_classes=num_classes, aux_head=bool(hf.get("use_auxiliary_head", True)))
        if id2label:
            cfg["class_names"] = [
                str(id2label.get(str(i), id2label.get(i, f"class_{i}"))) for i in range(num_classes)
            ]
        cfg["net_size"] = [480, 480] if num_classes == 150 else [384, 384]
    else:
        cfg["aux_head"] = False
    return DPTConfig(**cfg)


_HF_RULES: list[tuple[str, str]] = [
    (r"^dpt\.embeddings\.cls_token$", "encoder.cls_token"),
    (r"^dpt\.embeddings\.position_embeddings$", "encoder.pos_embed"),
    (r"^dpt\.embeddings\.patch_embeddings\.projection\.", "encoder.patch_embed.proj."),
    (r"^dpt\.embeddings\.projection\.", "encoder.patch_embed.proj."),
    (r"^dpt\.embeddings\.backbone\.bit\.embedder\.convolution\.", "encoder.patch_embed.backbone.stem.conv."),
    (r"^dpt\.embeddings\.backbone\.bit\.embedder\.norm\.", "encoder.patch_embed.backbone.stem.norm."),
    (
        r"^dpt\.embeddings\.backbone\.bit\.encoder\.stages\.(\d+)\.layers\.(\d+)\.",
        r"encoder.patch_embed.backbone.stages.\1.blocks.\2.",
    ),
    (r"^dpt\.encoder\.layer\.(\d+)\.layernorm_before\.", r"encoder.blocks.\1.norm1."),
    (r"^dpt\.encoder\.layer\.(\d+)\.layernorm_after\.", r"encoder.blocks.\1.norm2."),
    (r"^dpt\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"encoder.blocks.\1.attn.proj."),
    (r"^dpt\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"encoder.blocks.\1.mlp.fc1."),
    (r"^dpt\.encoder\.layer\.(\d+)\.output\.dense\.", r"encoder.blocks.\1.mlp.fc2."),
    (r"^dpt\.layernorm\.", "encoder.norm."),
    (r"^neck\.reassemble_stage\.", "necks.{neck}.reassemble_stage."),
    (r"^neck\.convs\.", "necks.{neck}.projections."),
    (r"^neck\.fusion_stage\.", "necks.{neck}.fusion_stage."),
    (r"^head\.head\.", "heads.{task}.head."),
    (r"^auxiliary_head\.head\.", "aux_head.head."),
]
_QKV = re.compile(r"^dpt\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")


def convert_hf_state_dict(
    sd: dict[str, torch.Tensor], task: str, neck: str | None = None
) -> dict[str, torch.Tensor]:
    """HF DPT names -> ours; query/key/value are stacked row-wise into qkv."""
    neck = neck or task
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in sd.items():
        m = _QKV.match(key)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        for pattern, repl in _HF_RULES:
            if re.match(pattern, key):
                out[re.sub(pattern, repl.format(neck=neck, task=task), key)] = value
                break
        else:
            unknown.append(key)
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise CheckpointError(
                f"HF layer {layer} {kind}: missing one of query/key/value ({sorted(parts)})"
            )
        out[f"encoder.blocks.{layer}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]]
        )
    for key in unknown:
        # Pass unknown keys through so the strict load reports them as unexpected.
        out[f"<hf>{key}"] = sd[key]
    return out


def load_hf(path: str | Path, strict: bool = True) -> DPT:
    """Load an HF DPT checkpoint directory (config.json + model.safetensors / pytorch_model.bin)."""
    path = Path(path)
    if not is_hf_checkpoint(path):
        raise CheckpointError(
            f"{path} is not an HF checkpoint directory (config.json + one of {WEIGHT_FILES})"
        )
    hf_config = json.loads((path / "config.json").read_text())
    config = config_from_hf(hf_config)
    weights = next(path / f for f in WEIGHT_FILES if (path / f).is_file())
    sd = read_state_dict(weights)
    model = DPT(config)
    converted = convert_hf_state_dict(sd, config.heads[0])
    # HF configs (e.g. Intel/dpt-large) may disable the auxiliary head while we enable it by default.
    load_state_dict_checked(model, converted, str(weights), strict=strict, original_keys=sd.keys())
    return model.eval()


# ---- export (used by the benchmark and for handing models to HF tooling) ------------------------
_OURS_TO_HF: list[tuple[str, str]] = [
    (r"^encoder\.cls_token$", "dpt.embeddings.cls_token"),
    (r"^encoder\.pos_embed$", "dpt.embeddings.position_embeddings"),
    (r"^encoder\.patch_embed\.backbone\.stem\.conv\.", "dpt.embeddings.backbone.bit.embedder.convolution."),
    (r"^encoder\.patch_embed\.backbone\.stem\.norm\.", "dpt.embeddings.backbone.bit.embedder.norm."),
    (
        r"^encoder\.patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.",
        r"dpt.embeddings.backbone.bit.encoder.stages.\1.layers.\2.",
    ),
    (r"^encoder\.blocks\.(\d+)\.norm1\.", r"dpt.encoder.layer.\1.layernorm_before."),
    (r"^encoder\.blocks\.(\d+)\.norm2\.", r"dpt.encoder.layer.\1.layernorm_after."),
    (r"^encoder\.blocks\.(\d+)\.attn\.proj\.", r"dpt.encoder.layer.\1.attention.output.dense."),
    (r"^encoder\.blocks\.(\d+)\.mlp\.fc1\.", r"dpt.encoder.layer.\1.intermediate.dense."),
    (r"^encoder\.blocks\.(\d+)\.mlp\.fc2\.", r"dpt.encoder.layer.\1.output.dense."),
    (r"^encoder\.norm\.", "dpt.layernorm."),
]


def to_hf_config_dict(config: DPTConfig, task: str | None = None) -> dict[str, Any]:
    """A transformers DPTConfig (as kwargs) describing one task of `config` (HF numerics)."""
    task = task or config.heads[0]
    hf: dict[str, Any] = dict(
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.mlp_hidden_size,
        image_size=config.image_size,
        patch_size=config.patch_size,
        layer_norm_eps=config.layer_norm_eps,
        readout_type=config.readout,
        neck_hidden_sizes=list(config.reassemble_channels),
        fusion_hidden_size=config.fusion_channels,
        use_batch_norm_in_fusion_residual=config.use_batch_norm_in_fusion[config.neck_for(task)],
        backbone_out_indices=list(config.out_indices),
    )
    if config.variant == "vit_hybrid":
        grid = config.image_size // config.patch_size
        hf.update(
            is_hybrid=True,
            backbone_out_indices=[0, 1, *config.out_indices],
            backbone_featmap_shape=[1, config.resnet_widths[-1], grid, grid],
            backbone_config=dict(
                embedding_size=config.resnet_stem_width,
                hidden_sizes=list(config.resnet_widths),
                depths=list(config.resnet_depths),
                num_groups=config.resnet_groups,
                out_features=["stage1", "stage2", "stage3"],
                layer_type="bottleneck",
                global_padding="same",
                embedding_dynamic_padding=True,
            ),
        )
    if task == "segmentation":
        hf.update(
            num_labels=config.num_classes,
            use_auxiliary_head=config.has_aux,
            semantic_classifier_dropout=config.segmentation_dropout,
            id2label={i: n for i, n in enumerate(config.class_names)},
            label2id={n: i for i, n in enumerate(config.class_names)},
        )
    return hf


def to_hf_state_dict(model: DPT, task: str | None = None) -> dict[str, torch.Tensor]:
    """Our weights in HF names for one task (qkv split into query/key/value)."""
    config = model.config
    task = task or config.heads[0]
    neck = config.neck_for(task)
    hybrid = config.variant == "vit_hybrid"
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        new = None
        if m := re.match(r"^encoder\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", key):
            for name, part in zip(("query", "key", "value"), value.chunk(3)):
                out[f"dpt.encoder.layer.{m[1]}.attention.attention.{name}.{m[2]}"] = part.clone()
            continue
        if key.startswith("encoder.patch_embed.proj."):
            stem = "dpt.embeddings.projection." if hybrid else "dpt.embeddings.patch_embeddings.projection."
            new = stem + key[len("encoder.patch_embed.proj.") :]
        elif key.startswith(f"necks.{neck}."):
            rest = key[len(f"necks.{neck}.") :]
            new = "neck." + (
                rest.replace("projections.", "convs.", 1) if rest.startswith("projections.") else rest
            )
        elif key.startswith(f"heads.{task}.head."):
            new = "head.head." + key[len(f"heads.{task}.head.") :]
        elif key.startswith("aux_head.head.") and task == "segmentation":
            new = "auxiliary_head.head." + key[len("aux_head.head.") :]
        else:
            for pattern, repl in _OURS_TO_HF:
                if re.match(pattern, key):
                    new = re.sub(pattern, repl, key)
                    break
        if new is not None:
            out[new] = value.detach().clone()
    return out
