"""The evaluation loop shared by periodic evaluation during training and the ``evaluate`` CLI."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dpt_perception.model.depth_units import METRIC, RELATIVE, depth_from_inverse
from dpt_perception.training.metrics import ConfusionMatrix, DepthMetrics

# Points kept for the predicted-vs-true depth scatter plot (subsampled evenly over the set).
_SCATTER_POINTS_PER_IMAGE = 256


def autocast_context(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


def resize_outputs(outputs: dict, size_hw: tuple[int, int]) -> dict:
    """Predictions at the targets' size when the network ran at another one (targets kept at
    the source size): depth bicubic (clamped non-negative), logits bilinear, as the reference."""
    out = dict(outputs)
    if "depth" in out and tuple(out["depth"].shape[-2:]) != size_hw:
        depth = F.interpolate(out["depth"].unsqueeze(1), size=size_hw, mode="bicubic", align_corners=False)
        out["depth"] = depth.squeeze(1).clamp(min=0)
    if "segmentation" in out and tuple(out["segmentation"].shape[-2:]) != size_hw:
        out["segmentation"] = F.interpolate(
            out["segmentation"], size=size_hw, mode="bilinear", align_corners=False
        )
    return out


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader,
    device: torch.device,
    *,
    depth_kind: str = "relative",
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    ignore_index: int = 255,
    max_batches: int = 0,
    amp: str = "none",
    num_examples: int = 0,
) -> tuple[dict, dict]:
    """Run ``model`` over ``loader`` and return ``(results, extras)``.

    ``results`` holds ``depth`` (see :class:`DepthMetrics`) and/or ``segmentation``
    (see :class:`ConfusionMatrix`) metric dicts, ``num_images`` and ``seconds``.
    ``extras`` holds the raw confusion matrix, up to ``num_examples`` example dicts (image,
    predictions, targets, metric depth) for plots, and (pred, true) depth pairs for a scatter.
    """
    config = getattr(model, "config", None)
    was_training = model.training
    model.eval()
    depth_metrics = None
    confusion = None
    examples: list[dict] = []
    scatter_pred: list[np.ndarray] = []
    scatter_true: list[np.ndarray] = []
    generator = np.random.default_rng(0)
    start = time.perf_counter()
    num_images = 0
    try:
        for b, batch in enumerate(loader):
            if max_batches and b >= max_batches:
                break
            images = batch["image"].to(device, non_blocking=True)
            with autocast_context(device, amp):
                outputs = model(images)
            outputs = {k: v.float().cpu() for k, v in outputs.items() if k in ("depth", "segmentation")}
            outputs = resize_outputs(outputs, tuple(batch["depth"].shape[-2:]))
            num_images += images.shape[0]
            metric_depth = None
            if "depth" in outputs and bool(batch["has_depth"].any()):
                if depth_metrics is None:
                    depth_metrics = DepthMetrics(
                        depth_kind,
                        min_depth,
                        max_depth,
                        depth_scale=getattr(config, "depth_scale", 1.0),
                        depth_shift=getattr(config, "depth_shift", 0.0),
                    )
                has = batch["has_depth"].view(-1, 1, 1)
                valid = batch["depth_valid"] & has
                metric_depth = depth_metrics.update(outputs["depth"], batch["depth"], valid)
                mask = depth_metrics.eval_mask(batch["depth"], valid)
                for i in range(images.shape[0]):
                    idx = torch.nonzero(mask[i].flatten()).flatten().numpy()
                    if idx.size:
                        pick = generator.choice(
                            idx, size=min(idx.size, _SCATTER_POINTS_PER_IMAGE), replace=False
                        )
                        scatter_pred.append(metric_depth[i].flatten().numpy()[pick])
                        scatter_true.append(batch["depth"][i].flatten().numpy()[pick])
            if "segmentation" in outputs and bool(batch["has_labels"].any()):
                if confusion is None:
                    confusion = ConfusionMatrix(
                        outputs["segmentation"].shape[1], ignore_index, getattr(config, "class_names", None)
                    )
                labels = batch["labels"].masked_fill(~batch["has_labels"].view(-1, 1, 1), ignore_index)
                confusion.update(outputs["segmentation"], labels)
            for i in range(images.shape[0]):
                if len(examples) >= num_examples:
                    break
                examples.append(
                    {
                        "image": batch["image"][i],
                        "outputs": {k: v[i] for k, v in outputs.items()},
                        "depth": batch["depth"][i] if "depth" in batch else None,
                        "depth_valid": (batch["depth_valid"][i] & batch["has_depth"][i])
                        if "depth_valid" in batch
                        else None,
                        "labels": batch["labels"][i] if bool(batch["has_labels"][i]) else None,
                        "metric_depth": metric_depth[i] if metric_depth is not None else None,
                    }
                )
    finally:
        model.train(was_training)
    results: dict = {"num_images": num_images, "seconds": time.perf_counter() - start}
    extras: dict = {"examples": examples}
    if depth_metrics is not None:
        results["depth"] = depth_metrics.compute()
        results["depth"]["mode"] = depth_kind
        if scatter_pred:
            extras["scatter"] = (np.concatenate(scatter_pred), np.concatenate(scatter_true))
    if confusion is not None:
        results["segmentation"] = confusion.compute()
        extras["confusion_matrix"] = confusion.matrix.clone()
    return results, extras


def flat_metrics(results: dict) -> dict[str, float]:
    """``{"abs_rel": ..., "miou": ...}``: the scalar metrics of an evaluation, one level deep."""
    flat: dict[str, float] = {}
    for section in ("depth", "segmentation"):
        for key, value in results.get(section, {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[key] = float(value)
    return flat


def as_list(batch: list) -> list:
    """DataLoader collate for raw samples of any size: the list itself."""
    return batch


def evaluate_frames(
    predictor,
    batches,
    protocol,
    *,
    relative: bool,
    max_batches: int = 0,
    num_examples: int = 0,
    quantize_png: bool = False,
) -> tuple[dict, dict]:
    """Evaluate an `inference.PerceptionPipeline` on raw samples (uint8 images at their own size, no
    transform; `batches` yields lists of them, e.g. a DataLoader with `as_list`) under a
    `protocols.Protocol`: the path a user of the package gets, with the predictor's
    `preprocessing` ("reference" reproduces the official scripts). Same-sized frames of a batch
    share a forward.

    Depth: KB input crop when the protocol has one (the prediction is pasted back into a zero
    frame), optional PNG quantisation as the official flow stores predictions, then
    `protocols.image_depth_errors` per frame, averaged over the frames with valid pixels.
    Labels: one confusion matrix over the set (the sample's ignore index skipped).
    Returns ``(results, extras)`` shaped like `evaluate_model`'s, for `report.write_report`."""
    from dpt_perception.training.data.augment import normalise
    from dpt_perception.training.protocols import (
        depth_eval_mask,
        image_depth_errors,
        kb_crop,
        kb_uncrop,
        png_quantize,
        protocol_depth,
    )

    config = predictor.config
    if protocol.task == "depth" and not predictor.has_depth:
        raise ValueError(f"protocol {protocol.name!r} evaluates depth but the model has no depth head")
    if protocol.task == "segmentation":
        if not predictor.has_labels:
            raise ValueError(f"protocol {protocol.name!r} evaluates labels but the model has no "
                             "segmentation head")
        if config.num_classes != protocol.num_classes:
            raise ValueError(f"protocol {protocol.name!r} needs a {protocol.num_classes}-class model, "
                             f"this one has {config.num_classes} classes")
    want_depth = protocol.task in ("depth", "any")
    want_labels = protocol.task in ("segmentation", "any")
    outputs = tuple(name for name, on in (("depth", want_depth), ("labels", want_labels)) if on)
    depth_metrics = DepthMetrics(RELATIVE if relative else METRIC, protocol.min_depth or 1e-3,
                                 protocol.max_depth or 80.0)
    confusion_box: list[ConfusionMatrix] = []  # created at the first labelled frame
    scatter_pred: list[np.ndarray] = []
    scatter_true: list[np.ndarray] = []
    generator = np.random.default_rng(0)
    cropped = protocol.input_crop == "kb"

    def _score_frame(sample: dict, pred) -> np.ndarray | None:
        """Add one frame to the metrics; returns the metres scored (None without depth)."""
        metric_depth = None
        if want_depth and sample.get("has_depth") and pred.depth is not None:
            gt, valid = sample["depth"], sample["depth_valid"]
            depth = pred.depth
            if relative and pred.depth_kind == METRIC:  # aligned in inverse depth
                depth = depth_from_inverse(depth, 1.0, 0.0)  # 1 / max(z, eps): metres -> inverse
            elif not relative and pred.depth_kind == RELATIVE:  # the config's conversion
                depth = depth_from_inverse(depth, config.depth_scale, config.depth_shift)
            depth = kb_uncrop(depth, gt.shape) if cropped else depth
            if quantize_png and protocol.png_scale and not relative:
                depth = png_quantize(depth, protocol.png_scale)
            errors = image_depth_errors(protocol, depth, gt, valid, relative)
            if errors is not None:
                depth_metrics.merge({k: [v] for k, v in errors.items()})
                mask = depth_eval_mask(protocol, gt, valid)
                metric_depth = protocol_depth(protocol, depth, gt, mask, relative)
                idx = np.flatnonzero(mask)
                pick = generator.choice(idx, size=min(idx.size, _SCATTER_POINTS_PER_IMAGE), replace=False)
                scatter_pred.append(metric_depth.ravel()[pick])
                scatter_true.append(gt.ravel()[pick])
        if want_labels and sample.get("has_labels") and pred.labels is not None:
            if not confusion_box:
                confusion_box.append(ConfusionMatrix(config.num_classes, int(sample["ignore_index"]),
                                                     getattr(config, "class_names", None)))
            labels = torch.from_numpy(np.asarray(sample["labels"], np.int64))[None]
            confusion_box[0].update(torch.from_numpy(pred.labels.astype(np.int64))[None], labels)
        return metric_depth

    examples: list[dict] = []
    start = time.perf_counter()
    num_images = 0
    for b, batch in enumerate(batches):
        if max_batches and b >= max_batches:
            break
        images = [kb_crop(s["image"]) if cropped else s["image"] for s in batch]
        preds = predictor.infer_batch(images, outputs)
        for sample, pred in zip(batch, preds):
            num_images += 1
            metric_depth = _score_frame(sample, pred)
            if len(examples) < num_examples and metric_depth is not None:
                examples.append({
                    "image": torch.from_numpy(normalise(sample["image"], config.mean, config.std)),
                    "outputs": {},
                    "depth": torch.from_numpy(sample["depth"]),
                    "depth_valid": torch.from_numpy(depth_eval_mask(protocol, sample["depth"],
                                                                    sample["depth_valid"])),
                    "labels": None,
                    "metric_depth": torch.from_numpy(metric_depth.astype(np.float32)),
                })
    results: dict = {"num_images": num_images, "seconds": time.perf_counter() - start}
    extras: dict = {"examples": examples}
    if depth_metrics.num_images:
        results["depth"] = depth_metrics.compute()
        results["depth"]["mode"] = "relative (aligned per image)" if relative else "metric"
        extras["scatter"] = (np.concatenate(scatter_pred), np.concatenate(scatter_true))
    if confusion_box:
        results["segmentation"] = confusion_box[0].compute()
        extras["confusion_matrix"] = confusion_box[0].matrix.clone()
    return results, extras
