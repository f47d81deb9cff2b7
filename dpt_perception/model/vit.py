"""Vision Transformer encoder with timm's parameter names (so reference and timm state dicts map 1:1).

`forward_intermediates(x, indices)` returns the token sequences (CLS first) after the requested
blocks; blocks after the last requested one and the final `norm` are not run (DPT never uses them;
`norm` is kept so official/timm weights load strictly).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dpt_perception.caches import LRUCache

from .config import DPTConfig

#: Position-embedding grids kept per model (least recently used dropped): a camera stream uses one,
#: a few sizes at once are common, every new image size from a sender must not add one for good.
POS_CACHE_GRIDS = 8
#: ... and at most this many bytes of them (vit_large at a 4096 x 4096 input: 268 MB per grid).
POS_CACHE_BYTES = 128 << 20


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: (B,3,H,W) -> (B, H/p * W/p, D)."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.proj(x).flatten(2).transpose(1, 2), []


class Attention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, hidden_size: int, mlp_hidden_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, mlp_hidden_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp_hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm `Block`)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_hidden_size: int, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=eps)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = Mlp(hidden_size, mlp_hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def resample_position_grid(
    pos_embed: torch.Tensor, num_prefix: int, grid: tuple[int, int], side: int | None = None
) -> torch.Tensor:
    """Bilinearly resample the square position grid of `pos_embed` (1, prefix+G*G, D) to `grid` (h, w).

    Matches the reference: bilinear, align_corners=False, no antialiasing; prefix (CLS) untouched.
    `side` (G) may be given so tracing/export never has to derive it from a traced shape.
    """
    prefix, posemb_grid = pos_embed[:, :num_prefix], pos_embed[0, num_prefix:]
    if side is None:
        num = int(posemb_grid.shape[0])
        side = math.isqrt(num)
        if side * side != num:
            raise ValueError(f"position embedding has {num} grid tokens, not a square grid")
    if (side, side) == tuple(grid):
        return pos_embed
    posemb_grid = posemb_grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    posemb_grid = F.interpolate(posemb_grid, size=tuple(grid), mode="bilinear", align_corners=False)
    posemb_grid = posemb_grid.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)
    return torch.cat([prefix, posemb_grid], dim=1)


class VisionTransformer(nn.Module):
    """ViT encoder (patch 16, CLS token, learned position embeddings on a square training grid)."""

    num_prefix_tokens = 1

    def __init__(self, config: DPTConfig, patch_embed: nn.Module | None = None):
        super().__init__()
        D = config.hidden_size
        self.patch_size = config.patch_size
        self.hidden_size = D
        self.out_indices = list(config.out_indices)
        self.patch_embed = patch_embed if patch_embed is not None else PatchEmbed(config.patch_size, 3, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_grid_side = config.image_size // config.patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid_side**2 + 1, D))
        self.blocks = nn.ModuleList(
            Block(D, config.num_heads, config.mlp_hidden_size, config.layer_norm_eps)
            for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self._pos_cache = LRUCache("pos_embed", POS_CACHE_GRIDS, POS_CACHE_BYTES)  # grid -> embeddings
        self._pos_cache_owner: tuple[torch.Tensor, int] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings for a token grid, cached when no gradient can flow through them.

        The cache key includes the parameter's version counter, so `load_state_dict` or any
        in-place update invalidates it; in training or with grad enabled it is recomputed.
        """
        cacheable = (
            not self.training
            and not torch.is_grad_enabled()
            and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
        )
        if not cacheable:
            return resample_position_grid(self.pos_embed, self.num_prefix_tokens, grid, self.pos_grid_side)
        p = self.pos_embed
        owner = self._pos_cache_owner
        if owner is None or owner[0] is not p or owner[1] != p._version:
            # New weights (loaded, updated in place, replaced or moved): drop every cached grid.
            # (A tuple, so the parameter is not registered a second time on this module.)
            self._pos_cache.clear()
            self._pos_cache_owner = (p, p._version)
        return self._pos_cache.get_or_create(
            tuple(grid), lambda: resample_position_grid(p, self.num_prefix_tokens, grid, self.pos_grid_side)
        )

    def _apply(self, fn, *args, **kwargs):
        self._pos_cache.clear()  # device / dtype moves
        self._pos_cache_owner = None
        return super()._apply(fn, *args, **kwargs)

    def check_input(self, x: torch.Tensor) -> tuple[int, int]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected pixel_values of shape (B,3,H,W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"input size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        return H // self.patch_size, W // self.patch_size

    def forward_intermediates(
        self, x: torch.Tensor, indices: list[int] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], tuple[int, int]]:
        """Run the encoder; return (tokens after each block in `indices` (B,1+N,D),
        stem feature maps (hybrid ResNet stages, else empty), token grid (h, w))."""
        indices = self.out_indices if indices is None else list(indices)
        grid = self.check_input(x)
        tokens, stem_features = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.position_embedding(grid)
        outputs = []
        last = max(indices)
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in indices:
                outputs.append(tokens)
            if i == last:
                break
        return outputs, stem_features, grid

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """DPT features: stem maps (hybrid) followed by the tapped token sequences, and the grid."""
        tokens, stem_features, grid = self.forward_intermediates(x)
        return list(stem_features) + tokens, grid
