"""Prediction heads on the fused 1/2-resolution map (reference layouts, so indices map 1:1)."""

from __future__ import annotations

import torch
from torch import nn

DEPTH_HEAD_HIDDEN = 32
#: Without autograd (inference), the depth head's full-resolution stage (the 3x3 conv to
#: DEPTH_HEAD_HIDDEN channels, ReLU, the 1x1 conv, ReLU) runs on bands of rows holding at most
#: this many output pixels: its working set (the conv's reordered input, its hidden output and
#: workspace) is then bounded by the band, not the image. Unbanded it was the forward's peak:
#: +155 MiB of +171 for a 3520x160 input of the tiny 150-class model. Bit-identical on CPU (the 3x3
#: conv of a band reads one real row beyond each of its edges). Inputs up to 512 x 512 pixels (the
#: 384 x 384 releases) run whole; NYU's 480 x 640 runs as two bands, KITTI's 352 x 1216 as two.
DEPTH_HEAD_BAND_PIXELS = 1 << 18


class DepthHead(nn.Module):
    """conv3x3 C->C/2, bilinear x2, conv3x3 ->32, ReLU, conv1x1 ->1, ReLU: non-negative inverse depth.
    In eager inference the stage after the x2 runs in bands of rows (`DEPTH_HEAD_BAND_PIXELS`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(channels // 2, DEPTH_HEAD_HIDDEN, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(DEPTH_HEAD_HIDDEN, 1, kernel_size=1),
            nn.ReLU(),
        )

    @property
    def output_conv(self) -> nn.Conv2d:
        """The last conv (32 -> 1) before the final ReLU: its bias sets the initial depth level."""
        return self.head[4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _may_band():  # (first: a trace must not see the size arithmetic below)
            return self.head(x).squeeze(1)
        height, width = 2 * x.shape[-2], 2 * x.shape[-1]  # after the x2 upsample
        rows = max(1, DEPTH_HEAD_BAND_PIXELS // width)
        if height <= rows:
            return self.head(x).squeeze(1)  # (each intermediate freed as soon as the next exists)
        x = self.head[1](self.head[0](x))  # C/2 channels at full resolution, kept for every band
        bands = []
        for top in range(0, height, rows):
            lo = max(0, top - 1)  # one row of context each side (zero padding only at the image's edges)
            out = self.head[2:](x[:, :, lo:top + rows + 1])
            bands.append(out[:, 0, top - lo:top - lo + rows])
        return torch.cat(bands, dim=1)


def _may_band() -> bool:
    """Bands only in eager inference: autograd keeps every band's activations anyway, and a trace
    (ONNX export, torch.compile, TorchScript) must not bake one input size's band count in."""
    if torch.is_grad_enabled() or torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    compiler = getattr(torch, "compiler", None)
    for check in ("is_compiling", "is_exporting"):
        if compiler is not None and getattr(compiler, check, lambda: False)():
            return False
    return not torch.onnx.is_in_onnx_export()


class SegmentationHead(nn.Module):
    """conv3x3 (no bias), BN, ReLU, Dropout, conv1x1 -> classes, bilinear x2 (logits at input size).

    The 1x1 classifier runs as a matmul whose result is laid out channels-last (class axis
    innermost) under the usual (B, C, H, W) shape: same numbers as the convolution, but the x2
    upsample is ~2x faster on CPU in that layout, and a per-pixel argmax reads each pixel's
    scores contiguously (see inference/labels.py)."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1, upsample: bool = True):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv2d(channels, num_classes, kernel_size=1),
        ]
        if upsample:
            layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True))
        self.head = nn.Sequential(*layers)  # indices match the reference checkpoints' keys
        self.upsamples = upsample

    @property
    def classifier(self) -> nn.Conv2d:
        """The 1x1 conv from features to class logits."""
        return self.head[4]

    def half_resolution_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores at the fused map's resolution (half the network input), before the final
        x2 upsample: what a caller that only wants class ids resamples exactly (inference/labels.py)
        without paying for ~num_classes x H x W upsampled floats."""
        return classify_channels_last(self.classifier, self.head[:4](x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.half_resolution_logits(x)
        return self.head[5](logits) if self.upsamples else logits


def classify_channels_last(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution computed as (B,H*W,Cin) @ (Cin,K): (B,K,H,W) logits in channels-last memory.
    baddbmm reads the NCHW features as transposed matrices without copying them (einsum / matmul
    fold the batch into rows and copy for B > 1); it exports to ONNX as MatMul + Add."""
    b, c, h, w = x.shape
    weight = conv.weight.reshape(conv.out_channels, c).t().expand(b, c, conv.out_channels)
    features = x.flatten(2).transpose(1, 2)  # (B, H*W, Cin), a view
    if conv.bias is None:
        out = torch.bmm(features, weight)
    else:
        out = torch.baddbmm(conv.bias, features, weight)
    return out.view(b, h, w, conv.out_channels).permute(0, 3, 1, 2)


class AuxiliaryHead(SegmentationHead):
    """Training-only segmentation head on the fused map, without the final upsample."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__(channels, num_classes, dropout=0.1, upsample=False)
