"""`DPTConfig`: everything needed to build a DPT model, JSON round-trippable.

The defaults of each variant follow the paper and the reference release; `DPTConfig.tiny()` shrinks
every dimension for tests while keeping the same code path; `DPTConfig.preset(name)` describes the
six official checkpoints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dpt_perception.model.classes import ADE20K_CLASS_NAMES, default_class_colors
from dpt_perception.model.depth_units import DEPTH_KINDS

VARIANTS = ("vit_base", "vit_large", "vit_hybrid")
READOUTS = ("ignore", "add", "project")
HEADS = ("depth", "segmentation")
NUMERICS = ("official", "hf")
DEPTH_KINDS = DEPTH_KINDS  # what the depth head outputs (model.depth_units)

# Per-variant architecture: (hidden, layers, heads, taps, reassemble channels).
_VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "vit_base": dict(
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        out_indices=[2, 5, 8, 11],
        reassemble_channels=[96, 192, 384, 768],
    ),
    "vit_large": dict(
        hidden_size=1024,
        num_layers=24,
        num_heads=16,
        out_indices=[5, 11, 17, 23],
        reassemble_channels=[256, 512, 1024, 1024],
    ),
    # Hybrid: levels 0 and 1 are the ResNet stage outputs R0 (1/4) and R1 (1/8); only blocks 8
    # and 11 are tapped from the transformer.
    "vit_hybrid": dict(
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        out_indices=[8, 11],
        reassemble_channels=[256, 512, 768, 768],
    ),
}

@dataclass
class DPTConfig:
    variant: str = "vit_hybrid"
    # Encoder size (None = the variant's default; set by `tiny()` or for custom models).
    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    mlp_ratio: float = 4.0
    patch_size: int = 16
    image_size: int = 384  # side of the square grid the position embeddings were trained on
    out_indices: list[int] | None = None
    # Hybrid ResNet (stem width, stage widths, depths, GroupNorm groups).
    resnet_stem_width: int = 64
    resnet_widths: list[int] = field(default_factory=lambda: [256, 512, 1024])
    resnet_depths: list[int] = field(default_factory=lambda: [3, 4, 9])
    resnet_groups: int = 32
    # Neck.
    reassemble_channels: list[int] | None = None
    fusion_channels: int = 256
    readout: str = "project"
    share_neck: bool = False
    # Batch norm in the fusion residual units, per neck ("depth", "segmentation", "shared").
    # Segmentation checkpoints use it (and no conv bias); depth checkpoints do not.
    use_batch_norm_in_fusion: dict[str, bool] = field(
        default_factory=lambda: {"depth": False, "segmentation": True, "shared": False}
    )
    # Heads.
    heads: list[str] = field(default_factory=lambda: ["depth", "segmentation"])
    num_classes: int = 150
    class_names: list[str] | None = None
    class_colors: list[list[int]] | None = None
    aux_head: bool = True
    segmentation_dropout: float = 0.1
    depth_kind: str = "relative"
    depth_scale: float = 1.0
    depth_shift: float = 0.0
    # Input.
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    net_size: list[int] = field(default_factory=lambda: [384, 384])  # (height, width)
    # Numerics family: "official" (timm 0.4.5: LayerNorm eps 1e-6, weight standardisation
    # (w-mean)/(std+1e-5)) or "hf" (LayerNorm eps 1e-12, (w-mean)/sqrt(var+1e-8)).
    numerics: str = "official"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"DPTConfig.variant must be one of {VARIANTS}, got {self.variant!r}")
        defaults = _VARIANT_DEFAULTS[self.variant]
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, list(value) if isinstance(value, list) else value)
        self.heads = list(self.heads)
        self.out_indices = list(self.out_indices)
        self.reassemble_channels = list(self.reassemble_channels)
        self.net_size = [int(v) for v in self.net_size]
        self.mean = [float(v) for v in self.mean]
        self.std = [float(v) for v in self.std]
        # Necks without an explicit entry get the reference choice (BN only for segmentation).
        self.use_batch_norm_in_fusion = {
            **{"depth": False, "segmentation": True, "shared": False},
            **{str(k): bool(v) for k, v in self.use_batch_norm_in_fusion.items()},
        }
        self._validate()
        if "segmentation" in self.heads:
            if self.class_names is None:
                self.class_names = (
                    list(ADE20K_CLASS_NAMES)
                    if self.num_classes == len(ADE20K_CLASS_NAMES)
                    else [f"class_{i}" for i in range(self.num_classes)]
                )
            if self.class_colors is None:
                self.class_colors = default_class_colors(self.num_classes)
            self.class_names = [str(n) for n in self.class_names]
            self.class_colors = [[int(c) for c in rgb] for rgb in self.class_colors]

    def _validate(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"invalid DPTConfig: {msg}")

        if self.readout not in READOUTS:
            raise bad(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.numerics not in NUMERICS:
            raise bad(f"numerics must be one of {NUMERICS}, got {self.numerics!r}")
        if self.depth_kind not in DEPTH_KINDS:
            raise bad(f"depth_kind must be one of {DEPTH_KINDS}, got {self.depth_kind!r}")
        if (
            not self.heads
            or any(h not in HEADS for h in self.heads)
            or len(set(self.heads)) != len(self.heads)
        ):
            raise bad(f"heads must be a non-empty subset of {HEADS}, got {self.heads!r}")
        expected_taps = 2 if self.variant == "vit_hybrid" else 4
        if len(self.out_indices) != expected_taps:
            raise bad(f"{self.variant} needs {expected_taps} out_indices, got {self.out_indices}")
        if any(not 0 <= i < self.num_layers for i in self.out_indices) or sorted(self.out_indices) != list(
            self.out_indices
        ):
            raise bad(f"out_indices {self.out_indices} must be increasing block indices < {self.num_layers}")
        if len(self.reassemble_channels) != 4:
            raise bad(f"reassemble_channels needs 4 entries, got {self.reassemble_channels}")
        if self.variant == "vit_hybrid":
            if self.readout != "project":
                # The reference hybrid and HF's port only define the projected readout.
                raise bad("vit_hybrid supports only readout='project'")
            if len(self.resnet_widths) != 3 or len(self.resnet_depths) != 3:
                raise bad("vit_hybrid needs 3 ResNet stages (resnet_widths, resnet_depths)")
            if self.reassemble_channels[:2] != self.resnet_widths[:2]:
                raise bad(
                    f"vit_hybrid reassemble_channels[:2] {self.reassemble_channels[:2]} must equal the "
                    f"ResNet stage widths {self.resnet_widths[:2]} (R0/R1 are used unprojected)"
                )
        if self.hidden_size % self.num_heads:
            raise bad(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise bad(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if len(self.net_size) != 2 or any(s % 32 for s in self.net_size):
            raise bad(f"net_size must be [height, width] with multiples of 32, got {self.net_size}")
        if "segmentation" in self.heads:
            if self.num_classes < 1:
                raise bad(f"num_classes must be >= 1, got {self.num_classes}")
            if self.class_names is not None and len(self.class_names) != self.num_classes:
                raise bad(f"{len(self.class_names)} class_names for num_classes={self.num_classes}")
            if self.class_colors is not None and (
                len(self.class_colors) != self.num_classes or any(len(c) != 3 for c in self.class_colors)
            ):
                raise bad(f"class_colors must be {self.num_classes} RGB triples")
        unknown_necks = set(self.use_batch_norm_in_fusion) - {"depth", "segmentation", "shared"}
        if unknown_necks:
            raise bad(f"use_batch_norm_in_fusion keys must be depth/segmentation/shared, got {unknown_necks}")

    # ---- derived -----------------------------------------------------------------------------
    @property
    def neck_names(self) -> list[str]:
        """Neck keys: one shared neck, or one per enabled head."""
        return ["shared"] if self.share_neck else list(self.heads)

    def neck_for(self, head: str) -> str:
        return "shared" if self.share_neck else head

    @property
    def layer_norm_eps(self) -> float:
        return 1e-6 if self.numerics == "official" else 1e-12

    @property
    def mlp_hidden_size(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def has_aux(self) -> bool:
        return self.aux_head and "segmentation" in self.heads

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DPTConfig:
        if "depth_mode" in data and "depth_kind" not in data:
            # Files written before the field was renamed (the node's `depth_mode` parameter is a
            # different fact: where its metres come from): same values, "relative" | "metric".
            data = {("depth_kind" if k == "depth_mode" else k): v for k, v in data.items()}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DPTConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> DPTConfig:
        data = self.to_dict()
        data.update(changes)
        return DPTConfig.from_dict(data)

    # ---- factories -----------------------------------------------------------------------------
    @classmethod
    def tiny(
        cls,
        variant: str = "vit_base",
        heads: tuple[str, ...] | list[str] = ("depth", "segmentation"),
        **overrides: Any,
    ) -> DPTConfig:
        """A few-thousand-parameter model with the variant's structure (same code path)."""
        size: dict[str, Any] = dict(
            hidden_size=32, num_heads=2, image_size=64, fusion_channels=16, num_classes=5
        )
        if variant == "vit_base":
            size.update(num_layers=4, out_indices=[0, 1, 2, 3], reassemble_channels=[8, 16, 24, 32])
        elif variant == "vit_large":
            size.update(num_layers=8, out_indices=[1, 3, 5, 7], reassemble_channels=[16, 24, 32, 32])
        elif variant == "vit_hybrid":
            size.update(
                num_layers=4,
                out_indices=[2, 3],
                resnet_stem_width=16,
                resnet_widths=[16, 32, 64],
                resnet_depths=[1, 2, 2],
                resnet_groups=4,
                reassemble_channels=[16, 32, 32, 32],
            )
        else:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        size.update(overrides)
        return cls(variant=variant, heads=list(heads), **size)

    @classmethod
    def preset(cls, name: str) -> DPTConfig:
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
        return cls.from_dict(PRESETS[name]["config"])


def _depth_preset(variant: str, **extra: Any) -> dict[str, Any]:
    cfg = dict(
        variant=variant,
        heads=["depth"],
        aux_head=False,
        net_size=[384, 384],
        numerics="official",
        use_batch_norm_in_fusion={"depth": False, "shared": False},
    )
    cfg.update(extra)
    return cfg


def _seg_preset(variant: str) -> dict[str, Any]:
    return dict(
        variant=variant,
        heads=["segmentation"],
        num_classes=150,
        aux_head=True,
        net_size=[480, 480],
        numerics="official",
        use_batch_norm_in_fusion={"segmentation": True, "shared": True},
    )


# The six checkpoints of the reference release, the one registry of them: alias -> the release file
# (its name ends in the first 8 hex digits of its SHA-256; dpt_perception.inference.weights
# downloads and checks it), the training data, and the model config (heads, metric scale/shift,
# net size). The weights registry, `load_model` names and `DPTConfig.preset` all read this table.
PRESETS: dict[str, dict[str, Any]] = {
    "dpt_hybrid_midas": dict(
        file="dpt_hybrid-midas-501f0c75.pt", data="MiDaS mix", config=_depth_preset("vit_hybrid")
    ),
    "dpt_large_midas": dict(
        file="dpt_large-midas-2f21e586.pt", data="MiDaS mix", config=_depth_preset("vit_large")
    ),
    "dpt_hybrid_ade20k": dict(
        file="dpt_hybrid-ade20k-53898607.pt", data="ADE20K", config=_seg_preset("vit_hybrid")
    ),
    "dpt_large_ade20k": dict(
        file="dpt_large-ade20k-b12dca68.pt", data="ADE20K", config=_seg_preset("vit_large")
    ),
    "dpt_hybrid_kitti": dict(
        file="dpt_hybrid_kitti-cb926ef4.pt",
        data="fine-tuned on KITTI",
        config=_depth_preset(
            "vit_hybrid",
            depth_kind="metric",
            depth_scale=0.00006016,
            depth_shift=0.00579,
            net_size=[352, 1216],
        ),
    ),
    "dpt_hybrid_nyu": dict(
        file="dpt_hybrid_nyu-2ce69ec7.pt",
        data="fine-tuned on NYUv2",
        config=_depth_preset(
            "vit_hybrid", depth_kind="metric", depth_scale=0.000305, depth_shift=0.1378, net_size=[480, 640]
        ),
    ),
}
