"""How closely a backend's outputs follow the eager fp32 reference.

Depth: DPT's depth is affine-invariant inverse depth, so a backend is judged after the
least-squares scale/shift that best maps its output onto the reference (per image):
relative error = ||s*pred + t - ref||_2 / ||ref - mean(ref)||_2. Dividing by the reference's
spread (not its magnitude) keeps the number meaningful when the map has a large offset.
Segmentation: percentage of pixels whose arg-max class matches the reference's.

The tolerances (docs/deployment.md "Agreement with eager fp32") live here, once: the backend
tests and the start-up engine choice (`inference/autotune.py`) use these.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: (max aligned depth error, min label agreement %) for fp32 variants (channels-last, compiled,
#: onnxruntime fp32) and for the low precisions (bf16, fp16, TensorRT fp16).
FP32_TOLERANCE = (1e-4, 99.9)
LOW_PRECISION_TOLERANCE = (5e-2, 95.0)


def tolerance_for(precision: str) -> tuple[float, float]:
    """The agreement tolerance an engine of `precision` must meet against eager fp32."""
    return FP32_TOLERANCE if precision == "fp32" else LOW_PRECISION_TOLERANCE


def aligned_depth_error(pred: torch.Tensor, ref: torch.Tensor) -> float:
    """Worst per-image relative L2 error after per-image least-squares scale/shift alignment."""
    if pred.shape != ref.shape:
        raise ValueError(f"depth shapes differ: {tuple(pred.shape)} vs reference {tuple(ref.shape)}")
    p = pred.detach().double().reshape(pred.shape[0] if pred.ndim == 3 else 1, -1)
    r = ref.detach().double().reshape(p.shape)
    errors = []
    for pi, ri in zip(p, r):
        design = torch.stack([pi, torch.ones_like(pi)], dim=1)
        solution = torch.linalg.lstsq(design, ri.unsqueeze(1)).solution.squeeze(1)
        aligned = design @ solution
        spread = torch.linalg.vector_norm(ri - ri.mean())
        if spread == 0:
            errors.append(float(torch.linalg.vector_norm(aligned - ri)))
        else:
            errors.append(float(torch.linalg.vector_norm(aligned - ri) / spread))
    return max(errors)


def label_agreement(pred_logits: torch.Tensor, ref_logits: torch.Tensor) -> float:
    """Percentage (0-100) of pixels whose arg-max over classes (dim 1) agrees."""
    if pred_logits.shape != ref_logits.shape:
        raise ValueError(
            f"logit shapes differ: {tuple(pred_logits.shape)} vs reference {tuple(ref_logits.shape)}"
        )
    same = pred_logits.argmax(dim=1) == ref_logits.argmax(dim=1)
    return 100.0 * float(same.double().mean())


@dataclass
class Agreement:
    depth_error: float | None  # aligned relative L2 (0 = identical)
    label_agreement: float | None  # percent of pixels
    max_abs_error: dict[str, float]  # raw, per output

    def within(self, max_depth_error: float, min_label_agreement: float) -> bool:
        ok_depth = self.depth_error is None or self.depth_error <= max_depth_error
        ok_labels = self.label_agreement is None or self.label_agreement >= min_label_agreement
        return ok_depth and ok_labels

    def summary(self) -> str:
        parts = []
        if self.depth_error is not None:
            parts.append(f"depth aligned rel. error {self.depth_error:.2e}")
        if self.label_agreement is not None:
            parts.append(f"labels {self.label_agreement:.2f}% agree")
        parts += [f"max |diff| {k} {v:.2e}" for k, v in self.max_abs_error.items()]
        return ", ".join(parts)


def compare_outputs(out: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> Agreement:
    """Compare every output present in both dicts (on the CPU, in float64 where it matters)."""
    common = [k for k in ("depth", "segmentation") if k in out and k in ref]
    if not common:
        raise ValueError(f"no common outputs to compare: {list(out)} vs reference {list(ref)}")
    cpu = {k: out[k].detach().float().cpu() for k in common}
    cref = {k: ref[k].detach().float().cpu() for k in common}
    max_abs = {k: float((cpu[k] - cref[k]).abs().max()) for k in common}
    depth = aligned_depth_error(cpu["depth"], cref["depth"]) if "depth" in common else None
    labels = label_agreement(cpu["segmentation"], cref["segmentation"]) if "segmentation" in common else None
    return Agreement(depth, labels, max_abs)
