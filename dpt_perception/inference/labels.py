"""Class ids at the camera's size from segmentation logits.

The reference (Hugging Face's `post_process_semantic_segmentation`) resizes every class's logits
bilinearly to the image size, then takes the argmax: for 150 classes at 640x480 that moves 46 M
floats, ~200 ms on one CPU core. `exact_labels` returns the same ids (float rounding aside) for a
small fraction of that, from the logits the model has *before* its head's x2 upsample:

* Both resizes (the head's x2 with align_corners=True, then the resize to the image with
  align_corners=False) are linear with non-negative weights, so each output pixel's logits are a
  convex combination of a few source pixels (per axis: `AxisTaps`, composed once per geometry).
* If all those source pixels have the same argmax c, every other class loses at every one of them,
  hence in any convex combination: the output is c. That settles all pixels away from class
  boundaries with one argmax at the low resolution and one gather.
* Along boundaries (a few % of a real scene), when the block around a pixel holds only two
  classes A < B: the answer is A or B unless a third class could win, which is ruled out when
  score(winner) > sum_s w_s * second_s (each tap's second-best logit bounds every class that is not
  its own argmax). Only pixels where that certificate fails, or blocks with 3+ classes, compute
  all classes' interpolated logits.

`labels_bilinear` is the straightforward reference path (also used on CUDA, where bandwidth makes
it cheap), `labels_nearest` upsamples ids computed at network resolution.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dpt_perception.caches import bounded_cache

#: label paths of the PerceptionPipeline (see the module docstring)
LABEL_UPSAMPLING = ("bilinear", "nearest")

#: one linear resampling step along an axis: (output length, align_corners)
Stage = tuple[int, bool]

#: above this fraction of boundary pixels (noisy logits, e.g. an untrained model) the per-pixel
#: work costs more than resampling every logit; `exact_labels` then takes the reference path.
MAX_BOUNDARY_FRACTION = 0.25
_FALLBACK_CHUNK = 16384  # pixels whose full class vectors are built at once (bounded memory)
_MIN_BAND_ROWS = 32  # output rows per thread below which splitting a frame does not pay


def label_dtype(num_classes: int) -> np.dtype:
    """uint8 up to 256 classes (mono8), else uint16 (16UC1)."""
    if num_classes > 65536:
        raise ValueError(f"{num_classes} classes do not fit a uint16 label image")
    return np.dtype(np.uint8) if num_classes <= 256 else np.dtype(np.uint16)


# ---- per-axis interpolation weights -------------------------------------------------------------
def _stage_coords(n_in: int, n_out: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, frac) per output of torch's linear interpolation: output o is
    (1 - frac) * in[i0] + frac * in[i1], source coordinates computed in float32 as torch does for
    float32 tensors (upsample_bilinear2d's area_pixel_* helpers)."""
    dst = np.arange(n_out, dtype=np.float32)
    if align_corners:
        scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
        src = dst * scale
    else:
        scale = np.float32(n_in) / np.float32(n_out)
        src = np.maximum((dst + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float64)


@dataclass(frozen=True, eq=False)  # hashed by identity: instances come from the axis_taps cache
class AxisTaps:
    """Composite linear resampling along one axis, as `taps` consecutive source samples per
    output sample: output o reads sources first[o] .. first[o] + span[o] - 1 (clamped to the
    axis) with weights weight[o, :span[o]] (zeros after)."""

    first: np.ndarray  # (n_out,) intp
    span: np.ndarray  # (n_out,) intp, 1..taps
    weight: np.ndarray  # (n_out, taps) float32
    taps: int
    n_src: int


@bounded_cache("label_taps", 32)
def axis_taps(n_src: int, stages: tuple[Stage, ...]) -> AxisTaps:
    """Compose `stages` (applied in order, starting from `n_src` samples) into per-output taps.

    Built tap window by tap window, O(n_out x taps) memory and time (a dense n_out x n_src matrix
    product was 275 GFLOP and 1 GB for an 8192-wide strip). A tap is a source whose weight is > 0."""
    first = np.arange(n_src, dtype=np.intp)
    weight = np.ones((n_src, 1))
    for n_out, align_corners in stages:
        i0, i1, frac = _stage_coords(len(first), n_out, align_corners)
        shift = first[i1] - first[i0]  # >= 0: windows move forward with the output
        taps = weight.shape[1]
        window = np.zeros((n_out, int(shift.max()) + taps))
        same = i0 == i1  # clamped at the edge: one source with weight (1 - frac) + frac
        window[:, :taps] = np.where(same, (1.0 - frac) + frac, 1.0 - frac)[:, None] * weight[i0]
        two = np.flatnonzero(~same)
        cols = shift[two, None] + np.arange(taps)
        window[two[:, None], cols] += frac[two, None] * weight[i1[two]]
        positive = window > 0
        lead = positive.argmax(1)
        span = window.shape[1] - lead - positive[:, ::-1].argmax(1)
        width = int(span.max())
        index = np.minimum(lead[:, None] + np.arange(width), window.shape[1] - 1)
        rows = np.arange(n_out)[:, None]
        weight = np.where(np.arange(width) < span[:, None], window[rows, index], 0.0)
        first = first[i0] + lead
    span = (weight > 0).shape[1] - (weight > 0)[:, ::-1].argmax(1)
    return AxisTaps(first, span.astype(np.intp), weight.astype(np.float32), int(span.max()), n_src)


# One intp per output pixel (25 MB at 8192x384), kept from a geometry's second frame on: a one-off
# odd-sized frame (a strip) leaves none of its own behind to add to the next one's peak.
@bounded_cache("label_gather", 16, max_bytes=64 << 20, admit_on_repeat=True)
def _gather_index(rows: AxisTaps, cols: AxisTaps, h: int, w: int) -> np.ndarray:
    """Flat index into the (ky, kx, h, w) stack of block codes for every output pixel: the block
    anchored at its first taps, with its own span per axis."""
    row = ((rows.span - 1) * cols.taps * h + rows.first) * w
    col = (cols.span - 1) * h * w + cols.first
    return (row[:, None] + col[None, :]).astype(np.intp)


# ---- exact labels --------------------------------------------------------------------------------
def exact_labels(logits_hwc: np.ndarray, rows: AxisTaps, cols: AxisTaps) -> np.ndarray:
    """argmax over classes of the resampled logits, for (h, w, C) float32 logits (C contiguous).
    Returns (len(rows.first), len(cols.first)) ids in `label_dtype(C)`."""
    h, w, c = logits_hwc.shape
    if (h, w) != (rows.n_src, cols.n_src):
        raise ValueError(f"logits are {h}x{w} but the taps were built for {rows.n_src}x{cols.n_src}")
    dtype = label_dtype(c)
    flat = logits_hwc.reshape(h * w, c)
    ids = flat.argmax(axis=1).astype(np.int32).reshape(h, w)
    ky, kx = rows.taps, cols.taps

    # equal[i][j]: the pixel (i, j) further down/right in the block (edge-replicated) has the same id
    padded = np.pad(ids, ((0, ky - 1), (0, kx - 1)), mode="edge")
    equal = [[padded[i:i + h, j:j + w] == ids for j in range(kx)] for i in range(ky)]
    # Blocks with more than one id ("anchors") get a negative code -1 - k; their pixels are refined.
    uniform_full = np.logical_and.reduce([e for row in equal for e in row])
    anchors = np.flatnonzero(~uniform_full)
    codes_of_anchors = np.zeros(h * w, np.int32)
    codes_of_anchors[anchors] = -1 - np.arange(len(anchors), dtype=np.int32)
    codes_of_anchors = codes_of_anchors.reshape(h, w)
    # One code map per block span (sy, sx): the id where the sy x sx block is uniform.
    codes = np.empty((ky, kx, h, w), np.int32)
    for sy in range(ky):
        row_uniform = np.logical_and.reduce([equal[i][0] for i in range(sy + 1)])
        for sx in range(kx):
            uniform = row_uniform if sx == 0 else np.logical_and.reduce(
                [equal[i][j] for i in range(sy + 1) for j in range(sx + 1)])
            codes[sy, sx] = np.where(uniform, ids, codes_of_anchors)
    out = codes.ravel().take(_gather_index(rows, cols, h, w))

    out_flat = out.ravel()
    boundary = np.flatnonzero(out_flat < 0)  # (flat indices: ~8x faster than 2-D nonzero)
    if len(boundary) == 0:
        return out.astype(dtype)
    if len(boundary) > MAX_BOUNDARY_FRACTION * out.size:
        return _reference_labels(logits_hwc, rows, cols).astype(dtype)
    ys, xs = np.divmod(boundary, out.shape[1])
    anchor = -1 - out_flat[boundary]
    out_flat[boundary] = _refine(flat, ids, anchors, anchor, rows, cols, ys, xs)
    return out.astype(dtype)


def _refine(flat, ids, anchors, anchor, rows: AxisTaps, cols: AxisTaps, ys, xs) -> np.ndarray:
    """Ids of the boundary pixels (ys, xs), each inside the block at anchors[anchor]."""
    h, w = ids.shape
    c = flat.shape[1]
    ky, kx = rows.taps, cols.taps
    # The ky x kx source pixels of every anchor's block, their ids, and its two candidate classes.
    ar, ac = np.divmod(anchors, w)
    tap_rows = np.minimum(ar[:, None] + np.arange(ky), h - 1)
    tap_cols = np.minimum(ac[:, None] + np.arange(kx), w - 1)
    taps = (tap_rows[:, :, None] * w + tap_cols[:, None, :]).reshape(len(anchors), ky * kx)
    block_ids = ids.ravel()[taps]
    low, high = block_ids.min(1), block_ids.max(1)
    two_classes = ((block_ids == low[:, None]) | (block_ids == high[:, None])).all(1)

    # Second-best logit of every tap: each tap's own id is one of the two candidates, so this
    # bounds the logit of every other class there.
    is_tap = np.zeros(h * w, bool)
    is_tap[taps.ravel()] = True
    tap_pixels = np.flatnonzero(is_tap)
    scores = flat[tap_pixels]  # a copy (fancy index)
    scores[np.arange(len(tap_pixels)), ids.ravel()[tap_pixels]] = -np.inf
    second = np.zeros(h * w, np.float32)
    second[tap_pixels] = scores.max(1)

    # Per block and tap: logit(high) - logit(low), and logit(low) - the bound of the other classes.
    flat_1d = flat.ravel()
    logit_low = flat_1d[taps * c + low[:, None]]
    diff = (flat_1d[taps * c + high[:, None]] - logit_low).reshape(-1, ky, kx)
    margin = (logit_low - second[taps]).reshape(-1, ky, kx)

    wy, wx = rows.weight[ys], cols.weight[xs]
    d = _weighted(diff[anchor], wy, wx)  # score(high) - score(low)
    e = _weighted(margin[anchor], wy, wx)  # score(low) - upper bound of every other class
    result = np.where(d > 0, high[anchor], low[anchor])
    certain = two_classes[anchor] & (e + np.maximum(d, 0) > 0)
    uncertain = np.flatnonzero(~certain)
    for start in range(0, len(uncertain), _FALLBACK_CHUNK):  # junctions of 3+ classes, near-ties
        part = uncertain[start:start + _FALLBACK_CHUNK]
        weights = (wy[part][:, :, None] * wx[part][:, None, :]).reshape(len(part), 1, ky * kx)
        vectors = flat[taps[anchor[part]]]  # (n, taps, C)
        result[part] = np.matmul(weights, vectors)[:, 0].argmax(1)
    return result


def _weighted(values: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """sum_ij wy[n, i] * wx[n, j] * values[n, i, j] without (n, ky, kx) temporaries."""
    total = np.zeros(len(values), np.float32)
    for i in range(values.shape[1]):
        inner = values[:, i, 0] * wx[:, 0]
        for j in range(1, values.shape[2]):
            inner += values[:, i, j] * wx[:, j]
        total += wy[:, i] * inner
    return total


def _reference_labels(logits_hwc: np.ndarray, rows: AxisTaps, cols: AxisTaps) -> np.ndarray:
    """Every class resampled with the composite taps (bands of rows), then argmax."""
    h, w, c = logits_hwc.shape
    n_out, m_out = len(rows.first), len(cols.first)
    col_index = np.minimum(cols.first[:, None] + np.arange(cols.taps), w - 1)
    out = np.empty((n_out, m_out), np.int32)
    band = max(1, (32 << 20) // (4 * c * max(w, m_out) * max(rows.taps, cols.taps)))
    for top in range(0, n_out, band):
        sel = slice(top, min(top + band, n_out))
        row_index = np.minimum(rows.first[sel, None] + np.arange(rows.taps), h - 1)
        vertical = np.einsum("rt,rtwc->rwc", rows.weight[sel], logits_hwc[row_index])
        horizontal = np.einsum("mt,rmtc->rmc", cols.weight, vertical[:, col_index])
        out[sel] = horizontal.argmax(-1)
    return out


def resize_stages(
    logits_shape: tuple[int, int], size: tuple[int, int], lowres: bool
) -> tuple[tuple[Stage, ...], ...]:
    """Per-axis stages from the logits to `size`: the head's x2 (align_corners=True) when the logits
    are the pre-upsample ones, then the reference resize to the image (align_corners=False)."""
    return tuple(((2 * n, True), (m, False)) if lowres else ((m, False),) for n, m in zip(logits_shape, size))


def labels_from_logits(
    logits: torch.Tensor, size: tuple[int, int], lowres: bool, threads: int | None = None
) -> list[np.ndarray]:
    """(B, C, h, w) CPU logits -> B id maps at `size`, exactly the reference's ids. `lowres`: the
    logits are the head's pre-upsample ones (h, w = half the network input). `threads`: bands of
    rows resolved in parallel (numpy releases the GIL in the heavy steps); default: torch's
    intra-op thread count, the cores the node's forward uses too."""
    b, c, h, w = logits.shape
    stages_y, stages_x = resize_stages((h, w), size, lowres)
    rows, cols = axis_taps(h, stages_y), axis_taps(w, stages_x)
    threads = torch.get_num_threads() if threads is None else threads
    return [exact_labels_threaded(frame, rows, cols, threads) for frame in logits_hwc(logits)]


def logits_hwc(logits: torch.Tensor) -> np.ndarray:
    """(B, C, h, w) CPU logits -> (B, h, w, C) float32 numpy, class axis contiguous. No copy for the
    head's channels-last fp32 logits; bf16 ones convert 3x faster once contiguous."""
    return logits.permute(0, 2, 3, 1).contiguous().float().numpy()


def exact_labels_threaded(logits_hwc: np.ndarray, rows: AxisTaps, cols: AxisTaps, threads: int) -> np.ndarray:
    """`exact_labels` on `threads` bands of output rows at once (each band reads only its rows)."""
    parts = min(threads, len(rows.first) // _MIN_BAND_ROWS)
    if parts <= 1:
        return exact_labels(logits_hwc, rows, cols)
    pool = _thread_pool(parts)
    futures = [pool.submit(exact_labels, logits_hwc[start:stop], taps, cols)
               for taps, start, stop in _row_bands(rows, parts)]
    return np.concatenate([f.result() for f in futures])


@bounded_cache("label_bands", 32)
def _row_bands(rows: AxisTaps, parts: int) -> tuple[tuple[AxisTaps, int, int], ...]:
    """`parts` bands of output rows: (their taps relative to the band's first source row, the
    source rows [start, stop) they read)."""
    bands = []
    edges = np.linspace(0, len(rows.first), parts + 1).astype(int)
    for top, bottom in zip(edges[:-1], edges[1:]):
        start = int(rows.first[top])
        stop = min(rows.n_src, int(rows.first[bottom - 1]) + rows.taps)
        taps = AxisTaps(rows.first[top:bottom] - start, rows.span[top:bottom], rows.weight[top:bottom],
                        rows.taps, stop - start)
        bands.append((taps, start, stop))
    return tuple(bands)


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)  # idle workers exit; running bands finish
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="dpt-labels")
            _pool_size = workers
        return _pool


# ---- the simple paths ------------------------------------------------------------------------
def labels_nearest(ids_lowres: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest upsampling of a class-id map with pixel-centre alignment (the mapping bilinear
    align_corners=False uses), so ids stay where the logits were."""
    h, w = size
    if ids_lowres.shape == (h, w):
        return ids_lowres
    return cv2.resize(ids_lowres, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def labels_bilinear(logits: torch.Tensor, size: tuple[int, int],
                    max_band_bytes: int = 256 << 20) -> torch.Tensor:
    """Reference label path: bilinear logits to (H, W) (align_corners=False), then argmax.

    When the full-size logits would exceed `max_band_bytes` (150 classes at 1920x1080 are 1.2 GB
    per frame), the work is done in bands of output rows so they never exist at once: each band
    blends its two source rows per output row with the source coordinates torch uses, then
    interpolates horizontally only (a same-height bilinear resize is the identity vertically).
    Same result as one F.interpolate call up to float rounding."""
    b, c, h, w = logits.shape
    out_h, out_w = size
    band_rows = max(1, max_band_bytes // (4 * b * c * out_w))
    if band_rows >= out_h:
        up = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
        return up.max(dim=1).indices
    ids = torch.empty((b, out_h, out_w), dtype=torch.int64, device=logits.device)
    scale = h / out_h
    for top in range(0, out_h, band_rows):
        rows = torch.arange(top, min(top + band_rows, out_h), device=logits.device, dtype=torch.float64)
        src = ((rows + 0.5) * scale - 0.5).clamp_(min=0.0)
        y0 = src.floor().long().clamp_(max=h - 1)
        y1 = (y0 + 1).clamp_(max=h - 1)
        wy = (src - y0.double()).to(torch.float32).view(1, 1, -1, 1)
        band = logits[:, :, y0, :].float()
        band = band.add_(logits[:, :, y1, :].float().sub_(band).mul_(wy))
        band = F.interpolate(band, size=(band.shape[2], out_w), mode="bilinear", align_corners=False)
        ids[:, top:top + band.shape[2]] = band.max(dim=1).indices
    return ids


def labels_bicubic(logits: torch.Tensor, size: tuple[int, int],
                   max_chunk_bytes: int = 256 << 20) -> torch.Tensor:
    """The official DPT script's label path ("reference" preprocessing): every class's logits
    resized bicubically to (H, W) (align_corners=False), then argmax (0-based ids; the official
    script adds 1 to number ADE20K's classes 1..150).

    Classes are resized in chunks small enough for `max_chunk_bytes` with a running maximum, so
    the full 150 x H x W stack never exists; each class is resized on its own either way, so the
    ids are exactly those of one F.interpolate call (ties go to the lowest id, as argmax)."""
    b, c, _, _ = logits.shape
    out_h, out_w = size
    chunk = max(1, min(c, max_chunk_bytes // max(1, 4 * b * out_h * out_w)))
    best = ids = None
    for first in range(0, c, chunk):
        up = F.interpolate(logits[:, first:first + chunk].float(), size=size, mode="bicubic",
                           align_corners=False)
        value, index = up.max(dim=1)
        if best is None:
            best, ids = value, index
        else:
            better = value > best
            best = torch.where(better, value, best)
            ids = torch.where(better, index + first, ids)
    return ids
