"""Training / evaluation transforms (raw numpy sample -> torch tensors) and the batch collate.

Training (DPT paper): resize so the longest side equals ``net_size`` (keeping the aspect ratio,
optionally times a random scale), take a random ``net_size`` x ``net_size`` crop (padding with
invalid depth / ignore labels where the image is smaller), flip horizontally at random, jitter
brightness / contrast / saturation (image only), normalise with mean = std = 0.5.

Evaluation: the reference "minimal" resize of the image (the scale closer to 1 of the two that
would map each side to the net size, applied to both sides, each side rounded to a multiple
of 32); ground truth stays at the source size by default so metrics are computed there.

Depth, its validity mask and labels are resized by nearest neighbour with pixel-centre
alignment (no interpolation across object edges); the image by bicubic (upscaling) or area
(downscaling) interpolation. Every transform output has

=============== ===================== ==============================================
``image``       (3,H,W) float32       normalised image
``depth``       (H,W) float32         metres, 0 where invalid or absent
``depth_valid`` (H,W) bool            False where invalid, padded or absent
``labels``      (H,W) int64           ``ignore_index`` where padded or absent
``has_depth``   () bool               the sample carries depth supervision
``has_labels``  () bool               the sample carries label supervision
``name``        str
``K``           (3,3) float32         only when the sample has intrinsics (adjusted)
``orig_size``   (2,) int64            source (H, W)
=============== ===================== ==============================================
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from .sample import DEFAULT_IGNORE_INDEX, scale_intrinsics

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source index of each destination pixel for a nearest resize, pixel centres aligned."""
    return np.minimum(np.floor((np.arange(dst) + 0.5) * (src / dst)).astype(np.int64), src - 1)


def resize_nearest(array: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    ys = nearest_indices(array.shape[0], size_hw[0])
    xs = nearest_indices(array.shape[1], size_hw[1])
    return array[ys[:, None], xs[None, :]]


def resize_image(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    h, w = size_hw
    if (h, w) == image.shape[:2]:
        return image
    shrink = h < image.shape[0] and w < image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def minimal_resize_shape(h: int, w: int, net_hw: tuple[int, int], multiple_of: int = 32) -> tuple[int, int]:
    """The reference "minimal" rule: scale both sides by whichever of (net_h/h, net_w/w) is closer
    to 1, then round each side to a multiple of ``multiple_of`` (at least one multiple)."""
    sh, sw = net_hw[0] / h, net_hw[1] / w
    s = sw if abs(1.0 - sw) < abs(1.0 - sh) else sh

    def snap(x: float) -> int:
        return max(multiple_of, int(np.round(x / multiple_of)) * multiple_of)

    return snap(h * s), snap(w * s)


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(H,W,3) uint8 or [0,1] float -> (3,H,W) float32 normalised."""
    x = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _resize_targets(sample: dict[str, Any], size_hw: tuple[int, int]) -> tuple[Any, Any, Any]:
    depth = valid = labels = None
    if sample.get("has_depth"):
        depth = resize_nearest(sample["depth"], size_hw)
        valid = resize_nearest(sample["depth_valid"], size_hw)
    if sample.get("has_labels"):
        labels = resize_nearest(sample["labels"], size_hw)
    return depth, valid, labels


def _pack(
    sample: dict[str, Any],
    image_chw: np.ndarray,
    depth: np.ndarray | None,
    valid: np.ndarray | None,
    labels: np.ndarray | None,
    target_hw: tuple[int, int],
    ignore_index: int,
    K: np.ndarray | None,  # noqa: N803
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "image": torch.from_numpy(image_chw),
        "depth": torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
        if depth is not None
        else torch.zeros(target_hw, dtype=torch.float32),
        "depth_valid": torch.from_numpy(np.ascontiguousarray(valid, dtype=bool))
        if valid is not None
        else torch.zeros(target_hw, dtype=torch.bool),
        "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
        if labels is not None
        else torch.full(target_hw, ignore_index, dtype=torch.int64),
        "has_depth": torch.tensor(depth is not None),
        "has_labels": torch.tensor(labels is not None),
        "name": sample.get("name", ""),
        "orig_size": torch.tensor(sample["image"].shape[:2], dtype=torch.int64),
    }
    if K is not None:
        out["K"] = torch.from_numpy(np.asarray(K, dtype=np.float32))
    return out


@dataclass
class TrainTransform:
    """Random resize / square crop / flip / colour jitter; see the module docstring.

    ``scale_range`` multiplies the longest-side resize (1, 1 = the paper's depth setting;
    e.g. (0.5, 2.0) for segmentation). Random numbers come from ``generator`` when given,
    else from torch's global RNG (which DataLoader seeds differently in every worker). A given
    generator is re-seeded once inside each DataLoader worker (from its seed and the worker's),
    so workers do not repeat each other's augmentations.
    """

    net_size: int = 384
    scale_range: tuple[float, float] = (1.0, 1.0)
    hflip_prob: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    ignore_index: int | None = None
    generator: torch.Generator | None = None
    _seeded_pid: int | None = field(default=None, init=False, repr=False, compare=False)

    def _rng(self) -> torch.Generator | None:
        if self.generator is not None and self._seeded_pid != os.getpid():
            info = torch.utils.data.get_worker_info()
            if info is not None:  # a copy of the parent's generator: give this worker its own stream
                self.generator.manual_seed((self.generator.initial_seed() + info.seed) % 2**63)
            self._seeded_pid = os.getpid()
        return self.generator

    def _uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self._rng()))

    def _randint(self, n: int) -> int:
        """Uniform integer in [0, n]."""
        return int(torch.randint(0, n + 1, (), generator=self._rng())) if n > 0 else 0

    def colour_jitter(self, image: np.ndarray) -> np.ndarray:
        """Brightness, contrast and saturation factors in [1-x, 1+x] on a [0,1] float image."""
        x = image.astype(np.float32) / 255.0
        if self.brightness > 0:
            x = x * self._uniform(1 - self.brightness, 1 + self.brightness)
        if self.contrast > 0:
            c = self._uniform(1 - self.contrast, 1 + self.contrast)
            m = float((x @ _LUMA).mean())
            x = (x - m) * c + m
        if self.saturation > 0:
            s = self._uniform(1 - self.saturation, 1 + self.saturation)
            grey = (x @ _LUMA)[:, :, None]
            x = (x - grey) * s + grey
        return np.clip(x, 0.0, 1.0)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        S = int(self.net_size)
        ignore = (
            sample.get("ignore_index", DEFAULT_IGNORE_INDEX)
            if self.ignore_index is None
            else self.ignore_index
        )
        h, w = sample["image"].shape[:2]
        scale = S / max(h, w) * self._uniform(*self.scale_range)
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        image = resize_image(sample["image"], (nh, nw))
        depth, valid, labels = _resize_targets(sample, (nh, nw))
        K = scale_intrinsics(sample["K"], nw / w, nh / h) if "K" in sample else None

        # Crop offset (source larger than S) or paste offset (smaller), per axis.
        cy, py = (self._randint(nh - S), 0) if nh >= S else (0, self._randint(S - nh))
        cx, px = (self._randint(nw - S), 0) if nw >= S else (0, self._randint(S - nw))
        ch, cw = min(nh, S), min(nw, S)
        crop = (slice(cy, cy + ch), slice(cx, cx + cw))
        paste = (slice(py, py + ch), slice(px, px + cw))
        flip = float(torch.rand((), generator=self._rng())) < self.hflip_prob

        img = self.colour_jitter(image[crop])
        canvas = np.zeros((S, S, 3), np.float32)
        canvas[paste] = (img - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        out_depth = out_valid = out_labels = None
        if depth is not None:
            out_depth = np.zeros((S, S), np.float32)
            out_valid = np.zeros((S, S), bool)
            out_depth[paste] = depth[crop]
            out_valid[paste] = valid[crop]
        if labels is not None:
            out_labels = np.full((S, S), ignore, np.int64)
            out_labels[paste] = labels[crop]
        if K is not None:
            K = K.copy()
            K[0, 2] += px - cx
            K[1, 2] += py - cy
        if flip:
            canvas = canvas[:, ::-1]
            out_depth = out_depth[:, ::-1] if out_depth is not None else None
            out_valid = out_valid[:, ::-1] if out_valid is not None else None
            out_labels = out_labels[:, ::-1] if out_labels is not None else None
            if K is not None:
                K[0, 2] = (S - 1) - K[0, 2]
        image_chw = np.ascontiguousarray(canvas.transpose(2, 0, 1))
        return _pack(sample, image_chw, out_depth, out_valid, out_labels, (S, S), ignore, K)


@dataclass
class EvalTransform:
    """Deterministic resize for evaluation / inference; see the module docstring.

    ``net_size`` is an int (square target) or (height, width). With ``keep_aspect`` the
    "minimal" multiple-of-``multiple_of`` rule is used, otherwise the image is resized to the
    net size exactly. ``resize_targets`` resizes depth / labels (nearest) to the network input
    instead of keeping them at the source size.
    """

    net_size: int | tuple[int, int] = 384
    keep_aspect: bool = True
    multiple_of: int = 32
    resize_targets: bool = False
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    ignore_index: int | None = None

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        net = (self.net_size, self.net_size) if isinstance(self.net_size, int) else tuple(self.net_size)
        if self.keep_aspect:
            return minimal_resize_shape(h, w, net, self.multiple_of)  # type: ignore[arg-type]
        return int(net[0]), int(net[1])

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        ignore = (
            sample.get("ignore_index", DEFAULT_IGNORE_INDEX)
            if self.ignore_index is None
            else self.ignore_index
        )
        h, w = sample["image"].shape[:2]
        nh, nw = self.output_size(h, w)
        image_chw = normalise(resize_image(sample["image"], (nh, nw)), self.mean, self.std)
        if self.resize_targets:
            depth, valid, labels = _resize_targets(sample, (nh, nw))
            target_hw = (nh, nw)
            K = scale_intrinsics(sample["K"], nw / w, nh / h) if "K" in sample else None
        else:
            depth, valid, labels = sample.get("depth"), sample.get("depth_valid"), sample.get("labels")
            target_hw = (h, w)
            K = sample.get("K")
        return _pack(sample, image_chw, depth, valid, labels, target_hw, ignore, K)


def collate(batch: Sequence[dict[str, Any]], ignore_index: int = DEFAULT_IGNORE_INDEX) -> dict[str, Any]:
    """Batch transformed samples, mixing samples with and without depth / labels.

    A sample lacking ``depth`` gets zeros, ``depth_valid`` False and ``has_depth`` False; one
    lacking ``labels`` gets ``ignore_index`` and ``has_labels`` False. ``K`` is batched only
    when every sample has it. Images (and targets) must share one size per batch.
    """
    if not batch:
        raise ValueError("collate got an empty batch")
    first = batch[0]["image"]
    if not isinstance(first, torch.Tensor) or first.ndim != 3:
        raise TypeError(
            "collate expects transformed samples ((3,H,W) tensor images): apply TrainTransform/EvalTransform"
        )
    images = [s["image"] for s in batch]
    if any(im.shape != first.shape for im in images):
        sizes = sorted({tuple(im.shape[1:]) for im in images})
        raise ValueError(
            f"images in a batch differ in size {sizes}: use a fixed-size transform or batch_size=1"
        )
    target_hw = None
    for s in batch:
        for key in ("depth", "labels"):
            if key in s:
                target_hw = tuple(s[key].shape)
                break
        if target_hw is not None:
            break
    if target_hw is None:
        target_hw = tuple(first.shape[1:])
    depth, valid, labels, has_depth, has_labels = [], [], [], [], []
    for s in batch:
        d_ok = "depth" in s and bool(s.get("has_depth", True))
        l_ok = "labels" in s and bool(s.get("has_labels", True))
        for key, present in (("depth", d_ok), ("labels", l_ok)):
            if present and tuple(s[key].shape) != target_hw:
                raise ValueError(
                    f"{key} of {s.get('name', '?')} is {tuple(s[key].shape)}, batch targets are {target_hw}: "
                    "use batch_size=1 or EvalTransform(resize_targets=True) for mixed source sizes"
                )
        depth.append(s["depth"] if d_ok else torch.zeros(target_hw, dtype=torch.float32))
        valid.append(s["depth_valid"] if d_ok else torch.zeros(target_hw, dtype=torch.bool))
        labels.append(s["labels"] if l_ok else torch.full(target_hw, ignore_index, dtype=torch.int64))
        has_depth.append(d_ok)
        has_labels.append(l_ok)
    out: dict[str, Any] = {
        "image": torch.stack(images),
        "depth": torch.stack(depth),
        "depth_valid": torch.stack(valid),
        "labels": torch.stack(labels),
        "has_depth": torch.tensor(has_depth),
        "has_labels": torch.tensor(has_labels),
        "name": [s.get("name", "") for s in batch],
    }
    if all("orig_size" in s for s in batch):
        out["orig_size"] = torch.stack([s["orig_size"] for s in batch])
    if all("K" in s for s in batch):
        out["K"] = torch.stack([torch.as_tensor(s["K"], dtype=torch.float32) for s in batch])
    return out
