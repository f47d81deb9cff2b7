"""Evaluation metrics: depth error/accuracy measures and segmentation confusion-matrix scores.

Depth (per image, then averaged over images, the usual Eigen/MiDaS protocol):
  AbsRel = mean |p - g| / g, SqRel = mean (p - g)^2 / g, RMSE = sqrt(mean (p - g)^2),
  RMSE-log = sqrt(mean (log p - log g)^2), delta_k = fraction with max(p/g, g/p) < 1.25**k,
  SILog = 100 * sqrt(mean e^2 - (mean e)^2) with e = log p - log g, log10 = mean |log10 p - log10 g|
  (the formulas of the BTS evaluation script the DPT paper's NYU/KITTI numbers come from; the
  published protocols, with their crops and caps, are in ``protocols.py``).
Only ground-truth pixels that are valid and inside ``[min_depth, max_depth]`` count.
- relative models: the raw inverse-depth prediction is aligned to the ground-truth inverse
  depth per image by least-squares scale + shift (as MiDaS evaluates), the aligned inverse
  depth is clamped to at least ``1 / max_depth`` (the disparity cap), then inverted;
- metric models: the raw output is converted with the model's own scale/shift
  (``1 / max(scale * x + shift, 1e-8)``) and used unaligned, clamped to [min_depth, max_depth].

Segmentation: a confusion matrix accumulated over the whole set (rows = truth, columns =
prediction, ignore-index pixels skipped). Pixel accuracy = trace / total. IoU_c =
TP / (TP + FP + FN). A class that never occurs in the ground truth *and* is never predicted has
an undefined IoU (0/0): it is reported as NaN (null in JSON) and excluded from mIoU. A class
that is predicted but never present in the truth has IoU 0 and does count.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dpt_perception.model.depth_units import depth_from_inverse
from dpt_perception.training.alignment import apply_scale_shift, fit_scale_shift

DEPTH_METRIC_NAMES = (
    "abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "log10", "delta1", "delta2", "delta3"
)
# Lower is better for errors, higher for accuracies (used by keep-best).
HIGHER_IS_BETTER = {"delta1", "delta2", "delta3", "pixel_accuracy", "miou", "mean_accuracy"}


def depth_errors(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The depth metrics (`DEPTH_METRIC_NAMES`) per image for metric depths (B,H,W); images
    without valid pixels get NaN. Returns name -> (B,) float64 tensor."""
    pred = pred.double()
    gt = gt.double()
    m = mask & (gt > 0) & (pred > 0)
    n = m.sum(dim=(1, 2)).double()
    safe_gt = torch.where(m, gt, torch.ones_like(gt))
    safe_pred = torch.where(m, pred, torch.ones_like(pred))
    diff = safe_pred - safe_gt
    ratio = torch.maximum(safe_pred / safe_gt, safe_gt / safe_pred)

    def mean(x: torch.Tensor) -> torch.Tensor:
        total = torch.where(m, x, torch.zeros_like(x)).sum(dim=(1, 2))
        return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(n, float("nan")))

    log_diff = torch.log(safe_pred) - torch.log(safe_gt)
    silog_var = (mean(log_diff**2) - mean(log_diff) ** 2).clamp(min=0.0)  # >= 0 up to rounding
    return {
        "abs_rel": mean(diff.abs() / safe_gt),
        "sq_rel": mean(diff**2 / safe_gt),
        "rmse": mean(diff**2).sqrt(),
        "rmse_log": mean(log_diff**2).sqrt(),
        "silog": silog_var.sqrt() * 100.0,
        "log10": mean((torch.log10(safe_pred) - torch.log10(safe_gt)).abs()),
        "delta1": mean((ratio < 1.25).double()),
        "delta2": mean((ratio < 1.25**2).double()),
        "delta3": mean((ratio < 1.25**3).double()),
    }


def relative_to_depth(
    pred_inverse: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, max_depth: float
) -> torch.Tensor:
    """Align a relative inverse-depth prediction to ``1 / gt`` on ``mask`` (per image, least
    squares in inverse-depth space), cap it at ``1 / max_depth`` and return metric depth."""
    pred_inverse = pred_inverse.double()
    gt_inverse = torch.where(mask, 1.0 / gt.double().clamp(min=1e-12), torch.zeros_like(pred_inverse))
    scale, shift = fit_scale_shift(pred_inverse, gt_inverse, mask)
    aligned = apply_scale_shift(pred_inverse, scale, shift).clamp(min=1.0 / max_depth)
    return 1.0 / aligned


class DepthMetrics:
    """Accumulates per-image depth metrics over an evaluation set.

    ``mode``: "relative" (align each image) or "metric" (convert with ``depth_scale`` /
    ``depth_shift`` and compare directly).
    """

    def __init__(
        self,
        mode: str = "relative",
        min_depth: float = 1e-3,
        max_depth: float = 80.0,
        depth_scale: float = 1.0,
        depth_shift: float = 0.0,
    ) -> None:
        if mode not in ("relative", "metric"):
            raise ValueError(f"depth metric mode must be 'relative' or 'metric', got {mode!r}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.mode = mode
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.depth_scale = depth_scale
        self.depth_shift = depth_shift
        self._values: dict[str, list[float]] = {k: [] for k in DEPTH_METRIC_NAMES}

    def prediction_to_depth(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Metric depth the metrics are computed on (also used for error maps in reports)."""
        if self.mode == "relative":
            return relative_to_depth(pred, gt, mask, self.max_depth)
        metric = depth_from_inverse(pred.double(), self.depth_scale, self.depth_shift)
        return metric.clamp(self.min_depth, self.max_depth)

    def eval_mask(self, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return valid & (gt >= self.min_depth) & (gt <= self.max_depth) & torch.isfinite(gt)

    def update(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Add a batch: raw head output ``pred`` (B,H,W), ground truth metres ``gt`` (B,H,W),
        ``valid`` (B,H,W) bool. Images without any valid pixel are skipped. Returns the
        metric depth used (B,H,W) for visualisation."""
        mask = self.eval_mask(gt, valid)
        depth = self.prediction_to_depth(pred, gt, mask)
        errors = depth_errors(depth, gt, mask)
        keep = mask.flatten(1).any(dim=1)
        for name, values in errors.items():
            self._values[name].extend(values[keep].tolist())
        return depth

    @property
    def num_images(self) -> int:
        return len(self._values["abs_rel"])

    def compute(self) -> dict[str, float]:
        """Mean of each metric over the images seen (NaN when none), plus ``num_images``."""
        out: dict[str, float] = {}
        for name, values in self._values.items():
            out[name] = float(np.mean(values)) if values else float("nan")
        out["num_images"] = self.num_images
        return out

    def state(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self._values.items()}

    def merge(self, state: dict[str, list[float]]) -> None:
        """Add another accumulator's per-image values (used to gather across DDP ranks)."""
        for name in DEPTH_METRIC_NAMES:
            self._values[name].extend(state[name])


class ConfusionMatrix:
    """Segmentation confusion matrix (rows = ground truth, columns = prediction)."""

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names=None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, labels: torch.Tensor) -> None:
        """``pred``: (B,H,W) predicted class ids (or (B,C,H,W) logits); ``labels``: (B,H,W)."""
        if pred.dim() == 4:
            pred = pred.argmax(dim=1)
        if pred.shape != labels.shape:
            raise ValueError(
                f"prediction {tuple(pred.shape)} and labels {tuple(labels.shape)} differ in shape"
            )
        pred = pred.detach().cpu().long().flatten()
        labels = labels.detach().cpu().long().flatten()
        keep = labels != self.ignore_index
        pred, labels = pred[keep], labels[keep]
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"label ids must be in [0, {self.num_classes}) or {self.ignore_index}, "
                f"found range [{int(labels.min())}, {int(labels.max())}]"
            )
        index = labels * self.num_classes + pred
        self.matrix += torch.bincount(index, minlength=self.num_classes**2).view(self.num_classes, -1)

    def merge(self, matrix: torch.Tensor) -> None:
        self.matrix += matrix.to(self.matrix)

    def compute(self) -> dict:
        """``pixel_accuracy``, ``miou``, ``mean_accuracy``, ``per_class_iou`` (name -> IoU or
        NaN), ``present_classes`` (count of classes with a defined IoU) and ``num_pixels``."""
        cm = self.matrix.double()
        tp = cm.diag()
        gt_count = cm.sum(dim=1)
        pred_count = cm.sum(dim=0)
        union = gt_count + pred_count - tp
        total = cm.sum()
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        acc = torch.where(gt_count > 0, tp / gt_count.clamp(min=1), torch.full_like(tp, float("nan")))
        defined = ~torch.isnan(iou)
        return {
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
            "miou": float(iou[defined].mean()) if bool(defined.any()) else float("nan"),
            "mean_accuracy": float(acc[~torch.isnan(acc)].mean())
            if bool((~torch.isnan(acc)).any())
            else float("nan"),
            "per_class_iou": {name: float(v) for name, v in zip(self.class_names, iou.tolist())},
            "present_classes": int(defined.sum()),
            "num_pixels": int(total),
        }


def finite_or_none(value):
    """JSON-friendly: NaN/inf become None (recursively through dicts and lists)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
