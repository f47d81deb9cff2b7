"""ResNetV2 (non-pre-activation bottlenecks, weight-standardised convs, GroupNorm) for ViT-Hybrid.

Structure and parameter names follow timm 0.4.5's `ResNetV2(layers=(3,4,9), preact=False,
stem_type='same', conv_layer=StdConv2dSame)` as used by the reference DPT-Hybrid, so its state
dict loads under `patch_embed.backbone.*` unchanged. Two numerics families exist:
"official" standardises weights as (w - mean) / (std + 1e-5) (population std), "hf" as
(w - mean) / sqrt(var + 1e-8) (Hugging Face's BiT). Padding is TensorFlow "SAME" in both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import DPTConfig


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) for one spatial dimension."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top or bottom or left or right:
        x = F.pad(x, [left, right, top, bottom], value=value)
    return x


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor` (never below 90% of `value`), as timm does."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class StdConv2dSame(nn.Conv2d):
    """Weight-standardised conv with TF 'SAME' padding (static when symmetric, else dynamic)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        numerics: str = "official",
    ):
        # Stride 1 with an odd kernel pads symmetrically: a static padding is then identical.
        self.dynamic_pad = stride > 1
        padding = 0 if self.dynamic_pad else (kernel_size - 1) // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        if numerics not in ("official", "hf"):
            raise ValueError(f"unknown numerics {numerics!r}")
        self.numerics = numerics
        self._cache_key: tuple | None = None
        self._cached_weight: torch.Tensor | None = None

    def standardized_weight(self) -> torch.Tensor:
        # In inference the standardised weight only changes with the weight itself: cache it, keyed
        # on the parameter's version counter (bumped by load_state_dict and any in-place update).
        cacheable = (
            not self.training
            and not torch.is_grad_enabled()
            and not torch.jit.is_tracing()
            and not (torch.compiler.is_compiling())
        )
        if cacheable:
            w = self.weight
            # Holding `w` itself in the key means a replaced parameter can never alias a cached one.
            if self._cache_key is None or self._cache_key[0] is not w or self._cache_key[1] != w._version:
                self._cached_weight = self._standardize()
                self._cache_key = (w, w._version)
            return self._cached_weight
        return self._standardize()

    def _standardize(self) -> torch.Tensor:
        w = self.weight
        if self.numerics == "official":
            std, mean = torch.std_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
            return (w - mean) / (std + 1e-5)
        var, mean = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
        return (w - mean) * torch.rsqrt(var + 1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_pad:
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.standardized_weight(), None, self.stride, self.padding)


class GroupNormAct(nn.GroupNorm):
    def __init__(self, num_groups: int, channels: int, apply_act: bool = True):
        super().__init__(num_groups, channels, eps=1e-5)
        self.apply_act = apply_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.weight.dtype and x.device.type == "cpu":
            # Under bf16 autocast, group_norm would run in fp32 with a full cast of the activation
            # each way; the CPU kernel takes bf16 input with fp32 affine parameters directly
            # (statistics still accumulate in fp32), which halves this layer's cost.
            with torch.autocast("cpu", enabled=False):
                x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        else:
            x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.relu(x, inplace=True) if self.apply_act else x


class Stem(nn.Module):
    """7x7/2 conv, GroupNorm+ReLU, 3x3/2 max-pool, all 'SAME' padded (total stride 4)."""

    def __init__(self, out_channels: int, groups: int, numerics: str):
        super().__init__()
        self.conv = StdConv2dSame(3, out_channels, 7, stride=2, numerics=numerics)
        self.norm = GroupNormAct(groups, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        # Inputs are >= 0 after ReLU, so zero padding equals the -inf padding of a true 'SAME' pool.
        return F.max_pool2d(pad_same(x, 3, 2), kernel_size=3, stride=2)


class DownsampleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int, numerics: str):
        super().__init__()
        self.conv = StdConv2dSame(in_channels, out_channels, 1, stride=stride, numerics=numerics)
        self.norm = GroupNormAct(groups, out_channels, apply_act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """Non-pre-activation bottleneck (1x1, 3x3 with the stride, 1x1 x4), ReLU after the residual add."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        groups: int,
        numerics: str,
        first_in_stage: bool,
    ):
        super().__init__()
        mid = make_divisible(out_channels * 0.25)
        # The first block of every stage projects its shortcut (even at stride 1), as in the reference.
        self.downsample = (
            DownsampleConv(in_channels, out_channels, stride, groups, numerics) if first_in_stage else None
        )
        self.conv1 = StdConv2dSame(in_channels, mid, 1, numerics=numerics)
        self.norm1 = GroupNormAct(groups, mid)
        self.conv2 = StdConv2dSame(mid, mid, 3, stride=stride, numerics=numerics)
        self.norm2 = GroupNormAct(groups, mid)
        self.conv3 = StdConv2dSame(mid, out_channels, 1, numerics=numerics)
        self.norm3 = GroupNormAct(groups, out_channels, apply_act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return F.relu(x + shortcut)


class ResNetStage(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, stride: int, depth: int, groups: int, numerics: str
    ):
        super().__init__()
        self.blocks = nn.Sequential(
            *[
                Bottleneck(
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    stride if i == 0 else 1,
                    groups,
                    numerics,
                    first_in_stage=i == 0,
                )
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetV2(nn.Module):
    """Stem + stages (strides 1, 2, 2): outputs at 1/4, 1/8, 1/16."""

    def __init__(self, config: DPTConfig):
        super().__init__()
        g, n = config.resnet_groups, config.numerics
        self.stem = Stem(config.resnet_stem_width, g, n)
        in_ch = config.resnet_stem_width
        stages = []
        for i, (width, depth) in enumerate(zip(config.resnet_widths, config.resnet_depths)):
            stages.append(ResNetStage(in_ch, width, 1 if i == 0 else 2, depth, g, n))
            in_ch = width
        self.stages = nn.ModuleList(stages)
        self.out_channels = in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class HybridPatchEmbed(nn.Module):
    """ResNet backbone then a 1x1 projection to the transformer width; also returns R0 and R1."""

    def __init__(self, config: DPTConfig):
        super().__init__()
        self.backbone = ResNetV2(config)
        self.proj = nn.Conv2d(self.backbone.out_channels, config.hidden_size, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.backbone(x)
        tokens = self.proj(features[-1]).flatten(2).transpose(1, 2)
        return tokens, features[:2]
