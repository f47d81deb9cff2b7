"""GPU-resident data path: uint8 frames in, only the requested results out.

Each batch of uint8 H x W x 3 frames is copied to the device ONCE (through a reused pinned host
buffer with a non-blocking copy on CUDA); resize, normalisation, the forward, depth upsampling,
arg-max, colourising and point-cloud back-projection all run there in torch, and only the
outputs asked for come back to the host. On CPU the same code runs on CPU tensors (no pinned
memory, no copies beyond the float conversion), which is how it is tested against the numpy
reference functions of `inference/` (preprocess, predictor post-processing, colorize, geometry).

Outputs (per frame, numpy, at the source size):
  "depth"        float32 (H, W): inverse relative depth, or metres for metric configs / when a
                 per-frame metric (scale, shift) is given (1 / max(scale*x + shift, 1e-8));
  "labels"       uint8/uint16 (H, W) class ids;
  "depth_color"  uint8 (H, W, 3) RGB through a colour map between robust percentiles;
  "labels_color" uint8 (H, W, 3) RGB palette colours;
  "points"       float32 (H, W, 3) organised XYZ in the optical frame (NaN = invalid), needs metric
                 depth and the camera's P matrix; "points_rgb" float32 (H, W, 4) with the colour
                 packed as in PointCloud2 (bit pattern 0x00RRGGBB).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dpt_perception.caches import LRUCache
from dpt_perception.inference.colorize import colormap_lut
from dpt_perception.inference.geometry import intrinsics_from_p
from dpt_perception.inference.labels import LABEL_UPSAMPLING
from dpt_perception.inference.preprocess import _as_hw, check_rgb_image, net_input_shape
from dpt_perception.model.classes import default_palette
from dpt_perception.model.depth_units import depth_from_inverse

OUTPUTS = ("depth", "labels", "depth_color", "labels_color", "points", "points_rgb")
# Robust colour range: percentiles over a strided subsample of about this many pixels (as colorize).
_RANGE_SAMPLES = 20000


def _as_tensor_lut(table: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.array(table, dtype=np.uint8, copy=True), device=device)


def _centre_index(n_in: int, n_out: int, device) -> torch.Tensor:
    """floor((dst + 0.5) * n_in / n_out) for dst in [0, n_out), exactly (integers)."""
    dst = torch.arange(n_out, device=device)
    return ((2 * dst + 1) * n_in).div(2 * n_out, rounding_mode="floor").clamp_(max=n_in - 1)


class DevicePipeline:
    """Pre-process, run and post-process frames on one device.

    Args:
        engine: anything called like the model (`engine(x) -> dict`): a `DPT` on `device` or an
            `Engine` from `make_engine`.
        config: the model's `DPTConfig` (default: `engine.config`).
        device: where the data path runs (default: the engine's device, else CPU).
        net_size / resize_rule: the network input size rule (see `preprocess.net_input_shape`).
        label_upsampling: "bilinear" (logits upsampled, then arg-max: the reference) or "nearest"
            (arg-max at network resolution, ids upsampled with pixel-centre alignment).
        depth_cmap: "turbo" or "inferno". palette: (N, 3) uint8 class colours (default: the
            config's class_colors, else `model.classes.default_palette`).
        max_range: points farther than this (metres) become NaN.
    """

    def __init__(
        self,
        engine: Callable,
        config=None,
        device=None,
        net_size=None,
        resize_rule: str = "minimal",
        label_upsampling: str = "bilinear",
        depth_cmap: str = "turbo",
        palette: np.ndarray | None = None,
        max_range: float | None = None,
    ):
        self.engine = engine
        self.config = config if config is not None else engine.config
        if device is None:
            device = getattr(engine, "device", None)
            if device is None:
                params = list(engine.parameters()) if hasattr(engine, "parameters") else []
                device = params[0].device if params else "cpu"
        self.device = torch.device(device)
        if label_upsampling not in LABEL_UPSAMPLING:
            raise ValueError(
                f"unknown label_upsampling {label_upsampling!r}; expected one of {LABEL_UPSAMPLING}"
            )
        net_input_shape(32, 32, 32, rule=resize_rule)  # validates the rule name
        self.net_size = _as_hw(self.config.net_size if net_size is None else net_size)
        self.resize_rule = resize_rule
        self.label_upsampling = label_upsampling
        self.max_range = max_range
        mean = torch.tensor(self.config.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        # x_uint8 * a - b == (x / 255 - mean) / std
        self._norm_a = 1.0 / (255.0 * std)
        self._norm_b = mean / std
        self._cmap = _as_tensor_lut(colormap_lut(depth_cmap), self.device)
        if palette is None:
            colors = getattr(self.config, "class_colors", None)
            n = getattr(self.config, "num_classes", 1)
            palette = np.asarray(colors, dtype=np.uint8) if colors else default_palette(n)
        self._palette = _as_tensor_lut(palette, self.device)
        self._pinned = LRUCache("pinned_uploads", 4, max_bytes=256 << 20)  # (B, H, W, 3) -> host buffer
        self._rays = LRUCache("device_rays", 16)  # (size, fx, fy, cx, cy) -> ray factors

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.config.heads)

    # ---- stages (each usable on its own; the tests compare them with the numpy references) ----
    def upload(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Same-sized uint8 frames -> (B, H, W, 3) uint8 tensor on the device (one copy)."""
        checked = [check_rgb_image(im, f"image {i}") for i, im in enumerate(images)]
        shape = checked[0].shape
        if any(im.shape != shape for im in checked):
            raise ValueError(f"one upload needs frames of one size, got {[im.shape for im in checked]}")
        if self.device.type == "cpu":
            if len(checked) == 1:
                return torch.from_numpy(checked[0]).unsqueeze(0)
            return torch.from_numpy(np.stack(checked))
        key = (len(checked),) + shape
        pinned = self._pinned.get(key)
        if pinned is None:
            pinned = torch.empty(key, dtype=torch.uint8, pin_memory=True)
            self._pinned.put(key, pinned)
        # The previous non-blocking copy out of this buffer finished: every run ends with a sync.
        host = pinned.numpy()
        for i, im in enumerate(checked):
            host[i] = im
        return pinned.to(self.device, non_blocking=True)

    def preprocess(self, pixels: torch.Tensor, net_shape: tuple[int, int]) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, h, w) float32 normalised network input.

        Bicubic (a = -0.75, half-pixel centres, edge replication: OpenCV's INTER_CUBIC kernel), then
        rounded and clamped to the uint8 range as OpenCV's uint8 resize does, so this matches the
        CPU reference preprocessing to within one grey level.
        """
        x = pixels.permute(0, 3, 1, 2).float()
        if tuple(x.shape[-2:]) != tuple(net_shape):
            x = F.interpolate(x, size=net_shape, mode="bicubic", align_corners=False).round_().clamp_(0, 255)
        return x.mul_(self._norm_a).sub_(self._norm_b).contiguous()

    def depth_at(self, raw: torch.Tensor, size: tuple[int, int], metric: list | None = None) -> torch.Tensor:
        """Raw (B, h, w) head output -> (B, H, W): metric conversion at network resolution (config
        metric mode, or per-frame (scale, shift) pairs), bicubic upsampling, clamped at >= 0."""
        depth = raw.float()
        if metric is not None:
            scale = torch.tensor([s for s, _ in metric], dtype=torch.float32, device=depth.device).view(
                -1, 1, 1
            )
            shift = torch.tensor([t for _, t in metric], dtype=torch.float32, device=depth.device).view(
                -1, 1, 1
            )
            depth = depth_from_inverse(depth, scale, shift)
        elif self.config.depth_mode == "metric":
            depth = depth_from_inverse(depth, self.config.depth_scale, self.config.depth_shift)
        if tuple(depth.shape[-2:]) != tuple(size):
            depth = F.interpolate(depth.unsqueeze(1), size=size, mode="bicubic", align_corners=False).squeeze(
                1
            )
        return depth.clamp_(min=0.0)

    def labels_at(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, C, h, w) logits -> (B, H, W) int64 class ids."""
        if self.label_upsampling == "bilinear":
            up = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
            return up.max(dim=1).indices
        ids = logits.max(dim=1).indices
        if tuple(ids.shape[-2:]) == tuple(size):
            return ids
        # Pixel-centre nearest: source index floor((dst + 0.5) * in / out), in exact integer
        # arithmetic (float rounding would flip indices that fall exactly on a boundary).
        (h, w), (H, W) = ids.shape[-2:], size
        iy = _centre_index(h, H, ids.device)
        ix = _centre_index(w, W, ids.device)
        return ids[:, iy][:, :, ix]

    def colorize_depth(
        self, depth: torch.Tensor, invert: bool = False, percentiles: tuple[float, float] = (2.0, 98.0)
    ) -> torch.Tensor:
        """(B, H, W) -> (B, H, W, 3) uint8 through the colour map, per-frame robust range.

        Same arithmetic as `colorize.colorize_depth` (range and affine map in float64, applied in
        float32), but with no host synchronisation: the percentiles stay on the device.
        """
        q = torch.tensor([p / 100.0 for p in percentiles], dtype=torch.float64, device=depth.device)
        out = []
        for d in depth:
            flat = d.reshape(-1)
            sample = flat[:: max(1, flat.numel() // _RANGE_SAMPLES)].double()
            sample = torch.where(torch.isfinite(sample), sample, torch.full_like(sample, math.nan))
            lo, hi = torch.nanquantile(sample, q)  # NaN when no pixel is finite: all black below
            span = (hi - lo).clamp(min=1e-12)
            if invert:
                a, b = -255.0 / span, 255.0 * hi / span
            else:
                a, b = 255.0 / span, -255.0 * lo / span
            scaled = (d.float() * a.float() + b.float()).clamp_(0, 255)
            idx = torch.nan_to_num(scaled, nan=0.0).to(torch.uint8).long()
            rgb = self._cmap[idx]
            rgb[~torch.isfinite(d)] = 0
            out.append(rgb)
        return torch.stack(out)

    def colorize_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, H, W) ids -> (B, H, W, 3) uint8 palette colours."""
        if labels.numel() and int(labels.max()) >= len(self._palette):
            raise ValueError(
                f"label id {int(labels.max())} has no colour in a palette of {len(self._palette)}"
            )
        return self._palette[labels]

    def rays(self, size: tuple[int, int], P) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: N803
        """(1, W) x factors (u - cx) / fx and (H, 1) y factors (v - cy) / fy, cached per camera."""
        fx, fy, cx, cy = intrinsics_from_p(P)
        key = (size, fx, fy, cx, cy)
        hit = self._rays.get(key)
        if hit is None:
            u = torch.arange(size[1], dtype=torch.float64, device=self.device)
            v = torch.arange(size[0], dtype=torch.float64, device=self.device)
            hit = (((u - cx) / fx).float().view(1, -1), ((v - cy) / fy).float().view(-1, 1))
            self._rays.put(key, hit)
        return hit

    def back_project(self, depth_m: torch.Tensor, P) -> torch.Tensor:  # noqa: N803
        """(H, W) metric depth -> (H, W, 3) XYZ; NaN where depth is not finite, <= 0 or beyond max_range."""
        xr, yr = self.rays(tuple(depth_m.shape), P)
        z = depth_m.float()
        bad = ~(z > 0) | ~torch.isfinite(z)
        if self.max_range is not None:
            bad |= z > self.max_range
        z = z.masked_fill(bad, math.nan)
        return torch.stack([xr * z, yr * z, z], dim=-1)

    @staticmethod
    def pack_rgb(pixels: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 -> (H, W) float32 whose bits are 0x00RRGGBB (PointCloud2 "rgb")."""
        p = pixels.to(torch.int32)
        return ((p[..., 0] << 16) | (p[..., 1] << 8) | p[..., 2]).view(torch.float32)

    # ---- the whole path ------------------------------------------------------------------------
    @torch.inference_mode()
    def run(
        self,
        images: Sequence[np.ndarray],
        outputs: Sequence[str] = ("depth", "labels"),
        P=None,  # noqa: N803
        metric_scale_shift: Sequence[tuple[float, float]] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """Same-sized frames -> one dict of numpy outputs per frame (only `outputs`).

        P: the camera's 3x4 projection (one for all frames or one per frame), needed for points.
        metric_scale_shift: per-frame (scale, shift) turning relative inverse depth into metres
            (e.g. fitted by `metric_depth`); metric configs convert on their own.
        """
        wanted = tuple(outputs)
        unknown = [o for o in wanted if o not in OUTPUTS]
        if unknown:
            raise ValueError(f"unknown outputs {unknown}; expected some of {OUTPUTS}")
        if not images:
            return []
        needs_depth = any(o in wanted for o in ("depth", "depth_color", "points", "points_rgb"))
        needs_labels = any(o in wanted for o in ("labels", "labels_color"))
        if needs_depth and "depth" not in self.heads:
            raise ValueError(f"outputs {wanted} need the depth head; the model has {self.heads}")
        if needs_labels and "segmentation" not in self.heads:
            raise ValueError(f"outputs {wanted} need the segmentation head; the model has {self.heads}")
        n = len(images)
        points_wanted = "points" in wanted or "points_rgb" in wanted
        if metric_scale_shift is not None and len(metric_scale_shift) != n:
            raise ValueError(
                f"metric_scale_shift needs one (scale, shift) per frame: {n}, got {len(metric_scale_shift)}"
            )
        if points_wanted:
            if P is None:
                raise ValueError("point clouds need the camera's P matrix (3x4)")
            if self.config.depth_mode != "metric" and metric_scale_shift is None:
                raise ValueError(
                    "point clouds need metric depth: use a metric model or pass metric_scale_shift"
                )
        per_frame_p = [P] * n if P is None or np.asarray(P).size == 12 else list(P)
        if len(per_frame_p) != n:
            raise ValueError(f"P must be one 3x4 matrix or one per frame ({n}), got {len(per_frame_p)}")

        pixels = self.upload(images)
        size = tuple(pixels.shape[1:3])
        net_shape = net_input_shape(size[0], size[1], self.net_size, multiple=32, rule=self.resize_rule)
        x = self.preprocess(pixels, net_shape)
        heads = tuple(h for h, on in (("depth", needs_depth), ("segmentation", needs_labels)) if on)
        raw = self._forward(x, heads)

        results: dict[str, torch.Tensor] = {}
        if needs_depth:
            depth = self.depth_at(raw["depth"], size, metric_scale_shift)
            results["depth"] = depth
            if "depth_color" in wanted:
                metric = metric_scale_shift is not None or self.config.depth_mode == "metric"
                results["depth_color"] = self.colorize_depth(depth, invert=metric)
            if points_wanted:
                pts = torch.stack([self.back_project(depth[i], per_frame_p[i]) for i in range(n)])
                if "points" in wanted:
                    results["points"] = pts
                if "points_rgb" in wanted:
                    packed = torch.stack([self.pack_rgb(pixels[i]) for i in range(n)])
                    results["points_rgb"] = torch.cat([pts, packed.unsqueeze(-1)], dim=-1)
        if needs_labels:
            labels = self.labels_at(raw["segmentation"], size)
            label_dtype = torch.uint8 if len(self._palette) <= 256 else torch.int32
            results["labels"] = labels.to(label_dtype)
            if "labels_color" in wanted:
                results["labels_color"] = self.colorize_labels(labels)
        host = self._download({k: v for k, v in results.items() if k in wanted})
        out = [{k: v[i] for k, v in host.items()} for i in range(n)]
        if "labels" in wanted and len(self._palette) > 256:
            for frame in out:
                frame["labels"] = frame["labels"].astype(np.uint16)
        return out

    def _forward(self, x: torch.Tensor, heads: tuple[str, ...]) -> dict[str, torch.Tensor]:
        try:
            return self.engine(x, heads=heads)
        except TypeError:  # a plain DPT: its forward takes no `heads`
            return self.engine(x)

    def _download(self, tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Requested tensors -> numpy; on CUDA all copies are queued, then one synchronisation."""
        if self.device.type == "cpu":
            return {k: v.numpy() for k, v in tensors.items()}
        staged = {}
        for k, v in tensors.items():
            buf = torch.empty(v.shape, dtype=v.dtype, pin_memory=True)
            buf.copy_(v, non_blocking=True)
            staged[k] = buf
        torch.cuda.current_stream(self.device).synchronize()
        return {k: v.numpy() for k, v in staged.items()}
