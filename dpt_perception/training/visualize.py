"""Image panels for TensorBoard and reports: input | predicted depth | true depth | predicted
labels | true labels, as uint8 RGB arrays (numpy only, no plotting library needed)."""

from __future__ import annotations

import numpy as np
import torch

# A perceptually ordered dark-to-bright ramp (near -> far is bright -> dark for inverse depth).
_DEPTH_RAMP = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def denormalize_image(image: torch.Tensor, mean, std) -> np.ndarray:
    """(3,H,W) normalised tensor -> (H,W,3) uint8."""
    m = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
    rgb = (image.detach().float().cpu() * s + m).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def colorize_values(values: np.ndarray, mask: np.ndarray | None = None, lo=None, hi=None) -> np.ndarray:
    """Map (H,W) values to RGB with the ramp; ``mask`` False pixels are black. ``lo``/``hi``
    default to the 2nd/98th percentile of the valid values."""
    values = np.asarray(values, dtype=np.float64)
    mask = np.isfinite(values) if mask is None else (np.asarray(mask, bool) & np.isfinite(values))
    out = np.zeros(values.shape + (3,), dtype=np.uint8)
    if not mask.any():
        return out
    v = values[mask]
    lo = np.percentile(v, 2) if lo is None else lo
    hi = np.percentile(v, 98) if hi is None else hi
    t = np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1) * (len(_DEPTH_RAMP) - 1)
    i0 = np.floor(t).astype(int).clip(0, len(_DEPTH_RAMP) - 2)
    frac = (t - i0)[..., None]
    rgb = _DEPTH_RAMP[i0] * (1 - frac) + _DEPTH_RAMP[i0 + 1] * frac
    out[mask] = rgb[mask].astype(np.uint8)
    return out


def colorize_labels(labels: np.ndarray, colors, ignore_index: int = 255) -> np.ndarray:
    labels = np.asarray(labels)
    palette = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    out = np.zeros(labels.shape + (3,), dtype=np.uint8)
    ok = (labels != ignore_index) & (labels >= 0) & (labels < len(palette))
    out[ok] = palette[labels[ok]]
    return out


def sample_panel(
    batch: dict,
    outputs: dict,
    index: int,
    mean,
    std,
    class_colors,
    ignore_index: int = 255,
    depth_metric: torch.Tensor | None = None,
) -> np.ndarray:
    """One row for sample ``index``: input, predicted and true depth (both shown as inverse
    depth, so near is bright), predicted and true labels when the model segments."""
    tiles = [denormalize_image(batch["image"][index], mean, std)]
    if "depth" in outputs:
        pred = outputs["depth"][index].detach().float().cpu().numpy()
        if depth_metric is not None:
            pred = 1.0 / np.maximum(depth_metric[index].detach().float().cpu().numpy(), 1e-6)
        tiles.append(colorize_values(pred))
        gt = batch["depth"][index].cpu().numpy()
        valid = batch["depth_valid"][index].cpu().numpy() & (gt > 0) & bool(batch["has_depth"][index])
        tiles.append(colorize_values(np.where(valid, 1.0 / np.maximum(gt, 1e-6), 0.0), valid))
    if "segmentation" in outputs:
        pred_labels = outputs["segmentation"][index].detach().argmax(0).cpu().numpy()
        tiles.append(colorize_labels(pred_labels, class_colors, ignore_index))
        labels = batch["labels"][index].cpu().numpy()
        if not bool(batch["has_labels"][index]):
            labels = np.full_like(labels, ignore_index)
        tiles.append(colorize_labels(labels, class_colors, ignore_index))
    height = tiles[0].shape[0]
    gap = np.full((height, 2, 3), 255, np.uint8)
    row = []
    for tile in tiles:
        row += [tile, gap]
    return np.concatenate(row[:-1], axis=1)
