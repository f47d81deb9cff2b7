"""Metric depth from relative inverse depth: a fixed scale/shift, or an online robust fit.

DPT/MiDaS-style models predict affine-invariant INVERSE depth x. Metric depth follows from
1 / (s * x + t); with sparse metric depth d (an RGB-D depth image, projected lidar) the pair
(s, t) is a line fit of 1/d against x, done here in inverse-depth space where the model is
affine (fitting in depth space would not be linear).

`ScaleShiftFitter.update(pred, sparse)`:
  1. collects the valid sparse points (16UC1 mm with 0 = invalid, or 32FC1 m with NaN/Inf/<=0
     invalid, optional [min_depth, max_depth]) and maps each to the prediction grid by nearest
     pixel (point mapping, so sparse lidar points survive a downscale);
  2. subsamples to at most `max_points` (before any per-point work, so a dense 640x480 RGB-D
     image costs ~2 ms); needs at least `min_points`;
  3. RANSAC over 2-point line hypotheses (vectorised) with a RELATIVE inlier threshold (residual
     / target inverse depth, i.e. relative depth error), then a least-squares refit on the inliers;
  4. rejects the frame when the inlier ratio is low or the scale is not positive, and treats a
     fit far from the current estimate as an outlier frame (`max_jump`, relative change of the
     predicted inverse depth on this frame's points) unless that persists for `reset_after` frames
     (a real change, e.g. a new scene), in which case it re-initialises;
  5. otherwise blends into the running estimate with an exponential moving average (`ema`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The conversion 1 / max(scale * x + shift, 1e-8) itself (used here and re-exported for callers).
from dpt_perception.model.depth_units import METRIC_EPS, depth_from_inverse


@dataclass
class FitResult:
    """Outcome of one update. scale/shift are the values in use after this update (None before
    the first accepted fit); frame_scale/frame_shift the fit of this frame alone (None if none)."""

    accepted: bool
    reason: str
    scale: float | None
    shift: float | None
    frame_scale: float | None = None
    frame_shift: float | None = None
    n_points: int = 0
    inlier_ratio: float = 0.0
    residual: float = float("nan")  # median |relative inverse-depth error| of the inliers


def sparse_depth_points(sparse: np.ndarray, pred_shape: tuple[int, int], min_depth: float = 0.0,
                        max_depth: float = np.inf, max_points: int | None = None,
                        rng: np.random.Generator | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Valid points of a metric depth image as (rows, cols) on the prediction grid (nearest pixel),
    their depth in metres, and the number of valid points before subsampling to `max_points`
    (random, without replacement; a dense 640x480 RGB-D image has 300k). Accepts uint16 (mm) or
    float (m) images at any resolution."""
    if sparse.ndim != 2:
        raise ValueError(f"sparse depth must be a 2-D image, got shape {sparse.shape}")
    if sparse.dtype == np.uint16:
        unit = 1e-3
        valid = (sparse > 0) & (sparse >= min_depth / unit) & (sparse <= min(max_depth / unit, 65535))
    elif np.issubdtype(sparse.dtype, np.floating):
        unit = 1.0
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(sparse) & (sparse > 0) & (sparse >= min_depth) & (sparse <= max_depth)
    else:
        raise ValueError(f"sparse depth must be uint16 millimetres or float metres, got dtype {sparse.dtype}")
    flat = np.flatnonzero(valid)
    n_valid = int(flat.size)
    if max_points is not None and n_valid > max_points:
        rng = rng if rng is not None else np.random.default_rng()
        flat = rng.choice(flat, size=max_points, replace=False)
    sh, sw = sparse.shape
    rows, cols = np.divmod(flat, sw)
    depth_m = sparse.reshape(-1)[flat].astype(np.float64) * unit
    ph, pw = pred_shape
    if (sh, sw) != (ph, pw):  # pixel-centre mapping to the nearest prediction pixel
        rows = np.minimum(((rows + 0.5) * (ph / sh)).astype(np.int64), ph - 1)
        cols = np.minimum(((cols + 0.5) * (pw / sw)).astype(np.int64), pw - 1)
    return rows, cols, depth_m, n_valid


def fit_line_ransac(x: np.ndarray, y: np.ndarray, rel_threshold: float, iterations: int,
                    rng: np.random.Generator) -> tuple[float, float, np.ndarray] | None:
    """Robust y ~ s*x + t with s > 0. Inliers: |s*x + t - y| <= rel_threshold * y. Returns
    (s, t, inlier mask) after a least-squares refit on the inliers, or None."""
    n = x.size
    if n < 2:
        return None
    i = rng.integers(0, n, size=iterations)
    j = rng.integers(0, n, size=iterations)
    dx = x[j] - x[i]
    ok = np.abs(dx) > 1e-12 * max(1.0, float(np.abs(x).max()))
    s = np.where(ok, (y[j] - y[i]) / np.where(ok, dx, 1.0), 0.0)
    t = y[i] - s * x[i]
    ok &= s > 0
    if not ok.any():
        return None
    s, t = s[ok], t[ok]
    tol = rel_threshold * y
    inliers = np.abs(s[:, None] * x[None, :] + t[:, None] - y[None, :]) <= tol[None, :]
    best = int(np.argmax(inliers.sum(axis=1)))
    mask = inliers[best]
    for _ in range(2):  # refit, recompute inliers with the refined line, refit once more
        if mask.sum() < 2:
            return None
        A = np.stack([x[mask], np.ones(int(mask.sum()))], axis=1)
        (s_fit, t_fit), *_ = np.linalg.lstsq(A, y[mask], rcond=None)
        if not s_fit > 0:
            return None
        mask = np.abs(s_fit * x + t_fit - y) <= tol
    return float(s_fit), float(t_fit), mask


class FixedScaleShift:
    """Configured scale and shift (e.g. a calibrated pair), same interface as the fitter."""

    def __init__(self, scale: float, shift: float):
        if not scale > 0:
            raise ValueError(f"scale must be positive (larger inverse depth = closer), got {scale}")
        self.scale = float(scale)
        self.shift = float(shift)

    def update(self, pred_inverse=None, sparse_depth=None) -> FitResult:
        return FitResult(True, "fixed", self.scale, self.shift, self.scale, self.shift)

    def to_metric(self, pred_inverse):
        return depth_from_inverse(pred_inverse, self.scale, self.shift)


class ScaleShiftFitter:
    """Online robust scale/shift fit of relative inverse depth to sparse metric depth.

    Args: min_points (valid points needed), max_points (subsample size), rel_threshold (RANSAC
    inlier tolerance, relative), iterations, min_inlier_ratio, ema (weight of a new frame's fit,
    1 = no smoothing), max_jump / reset_after (outlier-frame rejection, see module doc),
    min_depth / max_depth (metres, range of trusted sparse depth), seed.
    """

    def __init__(self, min_points: int = 50, max_points: int = 2000, rel_threshold: float = 0.1,
                 iterations: int = 100, min_inlier_ratio: float = 0.5, ema: float = 0.3,
                 max_jump: float = 0.3, reset_after: int = 5, min_depth: float = 0.05,
                 max_depth: float = 1000.0, seed: int | None = 0):
        if min_points < 2:
            raise ValueError(f"min_points must be >= 2 (a line needs two points), got {min_points}")
        if max_points < min_points:
            raise ValueError(f"max_points ({max_points}) must be >= min_points ({min_points})")
        if not 0 < ema <= 1:
            raise ValueError(f"ema must be in (0, 1], got {ema}")
        if not 0 <= min_inlier_ratio <= 1:
            raise ValueError(f"min_inlier_ratio must be in [0, 1], got {min_inlier_ratio}")
        if not rel_threshold > 0 or not max_jump > 0:
            raise ValueError("rel_threshold and max_jump must be positive")
        self.min_points, self.max_points = int(min_points), int(max_points)
        self.rel_threshold, self.iterations = float(rel_threshold), int(iterations)
        self.min_inlier_ratio, self.ema = float(min_inlier_ratio), float(ema)
        self.max_jump, self.reset_after = float(max_jump), int(reset_after)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self._rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        self.scale: float | None = None
        self.shift: float | None = None
        self._jumps = 0
        self.frames_accepted = 0
        self.frames_rejected = 0

    def to_metric(self, pred_inverse):
        if self.scale is None:
            raise RuntimeError("no scale/shift yet: call update() with sparse depth until a fit is accepted")
        return depth_from_inverse(pred_inverse, self.scale, self.shift)

    def _reject(self, reason: str, **kw) -> FitResult:
        self.frames_rejected += 1
        return FitResult(False, reason, self.scale, self.shift, **kw)

    def update(self, pred_inverse: np.ndarray, sparse_depth: np.ndarray) -> FitResult:
        """Fit this frame and fold it into the running estimate (see the module doc)."""
        pred = np.asarray(pred_inverse)
        if pred.ndim != 2:
            raise ValueError(f"pred_inverse must be a 2-D (H, W) map, got shape {pred.shape}")
        rows, cols, depth_m, n = sparse_depth_points(sparse_depth, pred.shape, self.min_depth, self.max_depth,
                                                     self.max_points, self._rng)
        x = pred[rows, cols].astype(np.float64)
        finite = np.isfinite(x)
        x, y = x[finite], 1.0 / depth_m[finite]
        if x.size < self.min_points:  # (max_points >= min_points, so subsampling never causes this)
            return self._reject(f"too few valid points ({x.size} < {self.min_points})", n_points=n)
        # Normalise x for conditioning (relative outputs can be in the thousands).
        x_scale = float(np.median(np.abs(x))) or 1.0
        fit = fit_line_ransac(x / x_scale, y, self.rel_threshold, self.iterations, self._rng)
        if fit is None:
            return self._reject("no line with positive scale fits the points", n_points=n)
        s_n, t, mask = fit
        s = s_n / x_scale
        ratio = float(mask.mean())
        rel = np.abs(s * x[mask] + t - y[mask]) / y[mask]
        residual = float(np.median(rel)) if rel.size else float("nan")
        info = dict(frame_scale=s, frame_shift=t, n_points=n, inlier_ratio=ratio, residual=residual)
        if ratio < self.min_inlier_ratio:
            return self._reject(f"inlier ratio {ratio:.2f} < {self.min_inlier_ratio:.2f}", **info)

        if self.scale is None:
            return self._accept(s, t, "initialised", info)
        current = self.scale * x + self.shift
        jump = float(np.median(np.abs((s * x + t) - current) / np.maximum(np.abs(current), METRIC_EPS)))
        if jump > self.max_jump:
            self._jumps += 1
            if self._jumps < self.reset_after:
                return self._reject(f"outlier frame: fit changes inverse depth by {jump:.0%} "
                                    f"(> {self.max_jump:.0%}), {self._jumps}/{self.reset_after} before reset",
                                    **info)
            return self._accept(s, t, f"re-initialised after {self._jumps} consecutive jumps", info)
        a = self.ema
        return self._accept((1 - a) * self.scale + a * s, (1 - a) * self.shift + a * t, "updated", info)

    def _accept(self, s: float, t: float, reason: str, info: dict) -> FitResult:
        self.scale, self.shift = float(s), float(t)
        self._jumps = 0
        self.frames_accepted += 1
        return FitResult(True, reason, self.scale, self.shift, **info)
