"""Evaluation reports: JSON (machine-readable), Markdown (tables for humans), PNG plots.

Plots (matplotlib, Agg backend, no display needed): per-class IoU bars, depth error maps
(input, true, predicted, AbsRel error per pixel) for a few examples, and a predicted-vs-true
depth scatter on log axes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402

from dpt_perception.training.metrics import DEPTH_METRIC_NAMES, finite_or_none  # noqa: E402
from dpt_perception.training.visualize import denormalize_image  # noqa: E402

_DEPTH_HEADERS = {
    "abs_rel": "AbsRel",
    "sq_rel": "SqRel",
    "rmse": "RMSE",
    "rmse_log": "RMSE-log",
    "silog": "SILog",
    "log10": "log10",
    "delta1": "δ<1.25",
    "delta2": "δ<1.25²",
    "delta3": "δ<1.25³",
}


def write_json(data: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite_or_none(data), indent=2, sort_keys=True) + "\n")
    return path


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown_report(results: dict, title: str = "Evaluation") -> str:
    lines = [f"# {title}", ""]
    meta = results.get("meta", {})
    for key in sorted(meta):
        lines.append(f"- {key}: {meta[key]}")
    lines.append(f"- images: {results.get('num_images', 'n/a')}")
    lines.append("")
    depth = results.get("depth")
    if depth:
        lines += [f"## Depth ({depth.get('mode', '?')}, {depth.get('num_images', 0)} images)", ""]
        lines.append("| " + " | ".join(_DEPTH_HEADERS[k] for k in DEPTH_METRIC_NAMES) + " |")
        lines.append("|" + "---|" * len(DEPTH_METRIC_NAMES))
        lines.append("| " + " | ".join(_fmt(depth.get(k)) for k in DEPTH_METRIC_NAMES) + " |")
        lines.append("")
    seg = results.get("segmentation")
    if seg:
        lines += [
            "## Segmentation",
            "",
            "| pixel acc | mIoU | mean acc | classes in mIoU |",
            "|---|---|---|---|",
        ]
        lines.append(
            f"| {_fmt(seg.get('pixel_accuracy'))} | {_fmt(seg.get('miou'))} "
            f"| {_fmt(seg.get('mean_accuracy'))} "
            f"| {seg.get('present_classes')} |"
        )
        lines += [
            "",
            "Classes absent from both ground truth and prediction (IoU n/a) are excluded from mIoU.",
            "",
        ]
        lines += ["| class | IoU |", "|---|---|"]
        for name, iou in seg.get("per_class_iou", {}).items():
            lines.append(f"| {name} | {_fmt(iou)} |")
        lines.append("")
    return "\n".join(lines)


def plot_per_class_iou(per_class_iou: dict, path: Path, class_colors=None) -> Path:
    names = list(per_class_iou)
    values = [v if v is not None and math.isfinite(v) else 0.0 for v in per_class_iou.values()]
    defined = [v is not None and math.isfinite(v) for v in per_class_iou.values()]
    colors = [
        (
            np.asarray(class_colors[i]) / 255.0
            if class_colors is not None and i < len(class_colors)
            else "tab:blue"
        )
        if ok
        else "lightgrey"
        for i, ok in enumerate(defined)
    ]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(names) + 1.5), 3.5))
    ax.bar(range(len(names)), values, color=colors, edgecolor="black", linewidth=0.4)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU")
    ax.set_title("Per-class IoU (grey: class absent, excluded from mIoU)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_depth_errors(example: dict, path: Path, mean, std) -> Path | None:
    """Input, true depth, predicted (aligned/metric) depth and per-pixel AbsRel for one example."""
    depth = example.get("depth")
    pred = example.get("metric_depth")
    if depth is None or pred is None:
        return None
    gt = depth.numpy()
    valid = example["depth_valid"].numpy() & (gt > 0)
    if not valid.any():
        return None
    pred = pred.numpy()
    vmin, vmax = np.percentile(gt[valid], [2, 98])
    err = np.where(valid, np.abs(pred - gt) / np.maximum(gt, 1e-6), np.nan)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
    axes[0].imshow(denormalize_image(example["image"], mean, std))
    axes[0].set_title("input")
    im = axes[1].imshow(np.where(valid, gt, np.nan), cmap="magma_r", vmin=vmin, vmax=vmax)
    axes[1].set_title("true depth (m)")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    im = axes[2].imshow(pred, cmap="magma_r", vmin=vmin, vmax=vmax)
    axes[2].set_title("predicted depth (m)")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    im = axes[3].imshow(err, cmap="viridis", vmin=0, vmax=max(0.05, float(np.nanpercentile(err, 98))))
    axes[3].set_title(f"AbsRel error (mean {np.nanmean(err):.3f})")
    fig.colorbar(im, ax=axes[3], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_depth_scatter(pred: np.ndarray, true: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(true, pred, s=2, alpha=0.3, edgecolors="none")
    lo = float(max(1e-3, min(true.min(), pred.min())))
    hi = float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="red", linewidth=1, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("true depth (m)")
    ax.set_ylabel("predicted depth (m)")
    ax.set_title("Predicted vs true depth")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(
    results: dict,
    extras: dict,
    out_dir: str | Path,
    *,
    title: str = "Evaluation",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    class_colors=None,
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``plots/*.png`` under ``out_dir``; returns paths."""
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    written = {"json": write_json(results, out_dir / "report.json")}
    md = out_dir / "report.md"
    md.write_text(markdown_report(results, title))
    written["markdown"] = md
    seg = results.get("segmentation")
    if seg and seg.get("per_class_iou"):
        written["per_class_iou"] = plot_per_class_iou(
            seg["per_class_iou"], plots / "per_class_iou.png", class_colors
        )
    for i, example in enumerate(extras.get("examples", [])):
        p = plot_depth_errors(example, plots / f"depth_errors_{i:02d}.png", mean, std)
        if p is not None:
            written[f"depth_errors_{i:02d}"] = p
    if "scatter" in extras:
        written["depth_scatter"] = plot_depth_scatter(*extras["scatter"], plots / "depth_scatter.png")
    return written
