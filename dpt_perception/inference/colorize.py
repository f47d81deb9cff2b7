"""Colour images for viewing: depth through a perceptual colour map, class ids through a palette.

Depth: values are mapped linearly between robust percentiles (computed on a strided subsample,
which is 16x cheaper than on every pixel and statistically the same for a smooth depth map) and
looked up in a 256-entry LUT (turbo or inferno, taken from OpenCV); NaN / Inf pixels are black.
Labels: palette lookup, optionally alpha-blended over the camera image.
"""
from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from dpt_perception.model.classes import default_palette

COLORMAPS = {"turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO}


@cache
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of a named colour map ("turbo" or "inferno")."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colour map {name!r}; expected one of {tuple(COLORMAPS)}")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(ramp, COLORMAPS[name]).reshape(256, 3)
    lut = np.ascontiguousarray(bgr[:, ::-1])
    lut.setflags(write=False)
    return lut


def robust_range(values: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0),
                 max_samples: int = 20000) -> tuple[float, float] | None:
    """(lo, hi) percentiles of the finite values, on a strided subsample; None if none finite."""
    flat = values.reshape(-1)
    step = max(1, flat.size // max_samples)
    sample = flat[::step]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    lo, hi = np.percentile(sample, percentiles)
    return float(lo), float(hi)


def colorize_depth(depth: np.ndarray, cmap: str = "turbo", vmin: float | None = None,
                   vmax: float | None = None, percentiles: tuple[float, float] = (2.0, 98.0),
                   invert: bool = False) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8 RGB. Range: vmin/vmax when given, else robust percentiles.
    invert=True maps large values to the low end of the colour map (e.g. metres, so that near is
    bright with turbo, like inverse depth is). Non-finite pixels are black."""
    if depth.ndim != 2:
        raise ValueError(f"depth must be a 2-D (H, W) array, got shape {depth.shape}")
    lut = colormap_lut(cmap)
    if vmin is None or vmax is None:
        rng = robust_range(depth, percentiles)
        if rng is None:
            return np.zeros(depth.shape + (3,), dtype=np.uint8)
        vmin = rng[0] if vmin is None else vmin
        vmax = rng[1] if vmax is None else vmax
    span = max(float(vmax) - float(vmin), 1e-12)
    a, b = (-255.0 / span, 255.0 * vmax / span) if invert else (255.0 / span, -255.0 * vmin / span)
    scaled = depth.astype(np.float32, copy=True)
    scaled *= np.float32(a)
    scaled += np.float32(b)
    np.clip(scaled, 0, 255, out=scaled)  # NaN stays NaN here; its pixels are blacked out below
    with np.errstate(invalid="ignore"):
        idx = scaled.astype(np.uint8)
    out = apply_lut(idx, lut)
    finite = np.isfinite(depth)
    if not finite.all():
        out[~finite] = 0
    return out


def _as_cv_lut(table: np.ndarray) -> np.ndarray:
    """(N <= 256, 3) uint8 -> the (256, 1, 3) table cv2.applyColorMap takes (rows past N black)."""
    padded = np.zeros((256, 1, 3), dtype=np.uint8)
    padded[: len(table), 0] = table
    return padded


def apply_lut(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """table[ids] for (H, W) ids: OpenCV's LUT for uint8 ids (~30x faster than numpy fancy
    indexing at 640x480), numpy indexing otherwise. Channel order is the table's."""
    if ids.dtype == np.uint8 and len(table) <= 256:
        return cv2.applyColorMap(np.ascontiguousarray(ids), _as_cv_lut(table))
    return table[ids]


def colorize_labels(labels: np.ndarray, palette: np.ndarray | None = None, image: np.ndarray | None = None,
                    alpha: float = 0.5) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB via `palette` ((N, 3) uint8; default: the default
    palette sized to the largest id). With `image` (H, W, 3 uint8 RGB), returns
    (1 - alpha) * image + alpha * colours."""
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    top = int(labels.max()) if labels.size else 0
    if palette is None:
        palette = default_palette(max(top + 1, 1))
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.ndim != 2 or palette.shape[1] != 3:
        raise ValueError(f"palette must be (N, 3) RGB, got shape {palette.shape}")
    if labels.size and (top >= len(palette) or int(labels.min()) < 0):
        raise ValueError(f"label ids must be in [0, {len(palette) - 1}] for a palette of {len(palette)} "
                         f"colours; got ids in [{int(labels.min())}, {top}]")
    coloured = apply_lut(labels, palette)
    if image is None:
        return coloured
    if image.shape != coloured.shape or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 {coloured.shape} to blend with the labels, got "
                         f"{image.dtype} {image.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return cv2.addWeighted(image, 1.0 - alpha, coloured, alpha, 0.0)
