"""What the published depth means, made explicit (the `depth_mode` parameter).

A DPT depth head trained on mixed data outputs *relative inverse depth*: affine-invariant, no
unit. Metres need a scale and shift from somewhere:

- "model": a metric fine-tune (NYU / KITTI presets) already outputs metres.
- "fixed": 1/z = depth_scale * x + depth_shift with a configured pair (e.g. calibrated once
  against a range sensor). Without calibration the metres are only as good as that pair.
- "fit": the pair is fitted online, robustly, against a sparse metric depth topic
  (lidar projected into the image, an RGB-D sensor's valid pixels...). Until a fit exists no
  metric depth is published rather than guessing.
- "auto" (default): "model" for metric models, else "fit" when a sparse topic is configured,
  else "fixed" with a warning (in the log and on /diagnostics) that metres are uncalibrated.

Relative inverse depth is always published on its own topic, unitless. This module has no ROS
dependency; the node owns one `DepthSemantics` and one fitter per camera.
"""

from __future__ import annotations

import numpy as np

from dpt_perception.inference.metric_depth import ScaleShiftFitter
from dpt_perception.model.depth_units import METRIC, metres_from_relative


class DepthModeError(ValueError):
    """A depth_mode that cannot work with the loaded model / configuration."""


def resolve_depth_mode(
    requested: str, model_is_metric: bool, has_depth_head: bool, sparse_depth_topic: str
) -> tuple[str, list[str]]:
    """(effective mode, warnings). Raises DepthModeError for impossible combinations."""
    if not has_depth_head:
        return "none", []
    if requested == "auto":
        if model_is_metric:
            return "model", []
        if sparse_depth_topic:
            return "fit", []
        return "fixed", [
            "depth in metres comes from the configured depth_scale/depth_shift of a relative "
            "model (uncalibrated unless you measured them); set sparse_depth_topic for an online "
            "fit or use a metric model"
        ]
    if requested == "model" and not model_is_metric:
        raise DepthModeError(
            "depth_mode 'model' needs a metric model (e.g. weights dpt_hybrid_nyu or "
            "dpt_hybrid_kitti); this model outputs relative inverse depth. Use 'fixed' or 'fit'."
        )
    if requested in ("fixed", "fit") and model_is_metric:
        raise DepthModeError(
            f"depth_mode {requested!r} applies a scale/shift to relative inverse depth, but this "
            "model is metric already; use 'model' (or 'auto')."
        )
    if requested == "fit" and not sparse_depth_topic:
        raise DepthModeError("depth_mode 'fit' needs sparse_depth_topic (a sparse metric depth image)")
    return requested, []


class CameraDepth:
    """Per-camera conversion of a Prediction's depth into (metres or None, relative inverse)."""

    def __init__(self, mode: str, scale: float = 1.0, shift: float = 0.0):
        self.mode = mode
        self.scale, self.shift = float(scale), float(shift)
        self.fitter = ScaleShiftFitter() if mode == "fit" else None
        self.last_fit = None  # FitResult of the latest sparse frame (fit mode)

    def set_fixed(self, scale: float, shift: float) -> None:
        self.scale, self.shift = float(scale), float(shift)

    def observe_sparse(self, relative_inverse: np.ndarray, sparse_metric: np.ndarray) -> None:
        """Fit mode: feed one frame's relative inverse depth and the sparse metric depth of the
        same instant (any resolution; float metres with NaN/<=0 or uint16 mm with 0 = no measurement)."""
        if self.fitter is not None:
            self.last_fit = self.fitter.update(relative_inverse, sparse_metric)

    def fit_state(self) -> tuple[float, float] | None:
        if self.fitter is None or self.fitter.scale is None:
            return None
        return self.fitter.scale, self.fitter.shift

    def convert(self, depth: np.ndarray, depth_kind: str) -> tuple[np.ndarray | None, np.ndarray]:
        """(metric depth in metres or None when not available yet, relative inverse depth)."""
        if depth_kind == METRIC:
            with np.errstate(divide="ignore"):
                inverse = np.float32(1.0) / depth
            return depth, inverse.astype(np.float32, copy=False)
        if self.mode == "fixed":
            return metres_from_relative(depth, self.scale, self.shift), depth
        if self.mode == "fit":
            state = self.fit_state()
            if state is None:
                return None, depth
            return metres_from_relative(depth, *state), depth
        return None, depth

