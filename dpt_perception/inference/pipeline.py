"""`PerceptionPipeline`: decoded frames in, every requested output out, around one model.

The one inference path of the package: the node, the demo, evaluation, the benchmarks and the
tests all call it. Frames are H x W x 3 uint8 RGB (numpy); outputs (`OUTPUTS`) are numpy arrays at
the frame's size: depth in its semantics (`depth_kind`), class ids, network-resolution logits,
colourised depth and labels, and organised XYZ points (given the camera's P and metric depth).
The model runs on the pipeline's device (CPU or CUDA); colours and points are computed on the
host from the downloaded depth and labels with the same functions the node publishes through
(`inference.colorize`, `inference.geometry`), so each of them has one implementation.

Per batch: uint8 cubic resize to the network size ("minimal" rule, multiples of 32),
in-place normalisation on the model's device, ONE forward for all enabled heads, then
post-processing:
  - depth: (metric configs: 1 / max(scale*x + shift, 1e-8) at network resolution, as the reference
    does inside its model), bicubic resize to the source size (reference; on CPU through OpenCV,
    whose cubic kernel and pixel-centre mapping are torch's, ~10x faster), clamped at >= 0
    because bicubic overshoots below zero next to depth edges;
  - labels: "bilinear" (default) gives the reference's ids: all logits resized bilinearly to the
    source size, then argmax. On CPU they are computed exactly but without resizing 150 x H x W
    logits: from the head's half-resolution logits (the model skips its x2 upsample), an argmax
    there settles every pixel away from class boundaries and only boundary pixels are resolved
    (inference/labels.py). "nearest" takes the argmax at network resolution and upsamples the ids
    (differs from the reference within about one network pixel of class boundaries).
Same-shaped frames of a batch go through one forward; frames of different sizes are grouped.

`preprocessing="reference"` instead reproduces the official DPT scripts end to end: float
pipeline in (`preprocess.reference_input`: x / 255, cubic resize of the floats, unclipped), depth
bicubic (align_corners=False) through torch without the clamp at 0, labels = argmax of the
bicubically resized logits (`labels.labels_bicubic`; the official run_segmentation resizes its
logits bicubically, not bilinearly). `label_upsampling` is then not used.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dpt_perception.inference import memory
from dpt_perception.inference.colorize import colorize_depth, colorize_labels
from dpt_perception.inference.geometry import PointCloudProjector
from dpt_perception.inference.labels import (
    LABEL_UPSAMPLING,
    label_dtype,
    labels_bicubic,
    labels_bilinear,
    labels_from_logits,
    labels_nearest,
    logits_hwc,
)
from dpt_perception.inference.preprocess import (
    check_preprocessing,
    check_rgb_image,
    net_input_shape,
    parse_net_size,
    preprocess_many,
)
from dpt_perception.model.classes import default_palette
from dpt_perception.model.depth_units import METRIC, RELATIVE, depth_from_inverse, metres_from_relative
from dpt_perception.model.devices import resolve_device

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: what `run` can return per frame (see `Prediction`)
OUTPUTS = ("depth", "labels", "logits", "depth_color", "labels_color", "points")
# On out-of-memory a single frame is retried with the net size times this (multiples of 32, >= 32).
OOM_SHRINK = 0.75


@dataclass
class Prediction:
    """Outputs for one frame, all at the source image size (H x W) unless stated; an output that
    was not requested (or that the model cannot give) is None.

    depth: float32 (H, W) in the semantics `depth_kind` names: "relative" (relative inverse depth,
      larger = closer, affine-invariant, no unit) or "metric" (metres: a metric model, or a relative
      one converted with the frame's `metric_scale_shift`). >= 0 with "fast" preprocessing;
      "reference" keeps the bicubic overshoot, which can dip slightly below 0 next to depth edges,
      as the official scripts' output does.
    labels: class ids (H, W), uint8 for <= 256 classes else uint16.
    logits: float32 (num_classes, h, w) at NETWORK resolution.
    depth_color / labels_color: uint8 (H, W, 3) RGB (depth through the colour map between robust
      percentiles, near = warm for both kinds; labels through the palette).
    points: float32 (H, W, 3) organised XYZ in the camera's optical frame (NaN = no point).
    timings: milliseconds per stage ("preprocess", "forward", "depth", "labels", "total"); stages
      shared by a batch are reported with the batch's time for every frame of it.
    """

    depth: np.ndarray | None
    depth_kind: str | None
    labels: np.ndarray | None
    source_shape: tuple[int, int]
    net_shape: tuple[int, int]
    logits: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    depth_color: np.ndarray | None = None
    labels_color: np.ndarray | None = None
    points: np.ndarray | None = None


class ModelRunner(torch.nn.Module):
    """The pipeline's one call into the model, as a module (so forward hooks, e.g. the node's
    `model.pair.EncoderPassCounter`, see every pass whichever path it takes): the model's own
    forward, or with `class_ids_only` the composed `forward_for_class_ids`. Engines that are not
    modules are held as plain attributes and always run whole."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.composable = hasattr(model, "forward_features") and hasattr(model, "heads")
        self.takes_heads = "heads" in inspect.signature(model.forward).parameters

    def forward(self, x: torch.Tensor, heads: tuple[str, ...], class_ids_only: bool = False):
        if class_ids_only and self.composable:
            return forward_for_class_ids(self.model, x, heads)
        if self.takes_heads:
            return self.model(x, heads=heads)
        return self.model(x)


def forward_for_class_ids(model, x: torch.Tensor, heads=None) -> dict[str, torch.Tensor]:
    """A DPT / TaskPair forward composed from its parts (`forward_features`, `heads`) with the
    segmentation head's final x2 upsample left out: "segmentation" is (B, C, h/2, w/2) logits
    (`SegmentationHead.half_resolution_logits`), what the exact CPU label path resamples, without
    ~num_classes x h x w upsampled floats of memory traffic. Other tasks are as in forward."""
    fused = model.forward_features(x, heads)
    head = model.heads
    return {task: head[task].half_resolution_logits(f) if task == "segmentation" else head[task](f)
            for task, f in fused.items()}


def check_outputs(outputs) -> tuple[str, ...]:
    """`outputs` as a tuple, or a ValueError naming the unknown ones and the valid choices."""
    if isinstance(outputs, str):
        outputs = (outputs,)
    wanted = tuple(outputs)
    unknown = [o for o in wanted if o not in OUTPUTS]
    if unknown:
        raise ValueError(f"unknown outputs {unknown}; expected some of {OUTPUTS}")
    return wanted


def is_out_of_memory(exc: BaseException) -> bool:
    """True for errors that mean "this size does not fit": `torch.OutOfMemoryError` (CUDA and other
    accelerators) and a failed host allocation, which torch raises as a plain RuntimeError from
    its CPU allocator ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def upsample_depth(depth_lowres: torch.Tensor, size: tuple[int, int], clamp: bool = True) -> torch.Tensor:
    """(B, h, w) -> (B, H, W) bicubic (align_corners=False, as the reference), clamped >= 0
    unless `clamp` is False (the official scripts keep the overshoot)."""
    out = F.interpolate(depth_lowres.unsqueeze(1).float(), size=size, mode="bicubic", align_corners=False)
    out = out.squeeze(1)
    return out.clamp_(min=0.0) if clamp else out


def upsample_depth_numpy(depth_lowres: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """CPU fast path of `upsample_depth` for one map: OpenCV's cubic (same a=-0.75 kernel and
    half-pixel centres as torch's bicubic) is ~10x faster than torch's on CPU."""
    h, w = size
    out = depth_lowres if depth_lowres.shape == (h, w) else cv2.resize(
        depth_lowres, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.maximum(out, 0.0, out=out if out is not depth_lowres else None)


class PerceptionPipeline:
    """Runs a model on numpy RGB frames and returns the requested outputs. Calls from several
    threads are serialised by a lock; settings (net size, resize rule) can change between calls.

    Args:
        model: a `dpt_perception.model.DPT` or `TaskPair`, or an engine called like one
            (`inference.backends.make_engine`); anything with `.config` and the DPT forward contract.
        device: "auto" | "cpu" | "cuda" | "cuda:N".
        precision: "fp32" | "fp16" | "bf16" (autocast; fp16 only on CUDA).
        net_size: int or (h, w) target for the resize rule; None = the model config's net_size.
        resize_rule: see `net_input_shape` ("minimal" is the reference rule).
        label_upsampling: "bilinear" (the reference's ids: logits resized to the frame, then argmax;
            exact and the cheapest on CPU) or "nearest" (argmax at network resolution,
            nearest-upsampled ids).
        outputs: what `run` returns when a call names none (some of `OUTPUTS`). Heads nobody
            needs are not run, outputs nobody asked for are never computed.
        channels_last: run the model and its input in channels-last memory format (~0.9x time
            on CPU per the project's measurements; engines pick their own layout and ignore it).
        preprocessing: "fast" (uint8 resize, exact-bilinear labels, depth clamped at 0) or
            "reference" (the official float pipeline and bicubic outputs; see the module docstring).
        depth_cmap: colour map of "depth_color" ("turbo" or "inferno").
        palette: (num_classes, 3) uint8 colours of "labels_color" (default: the config's
            class_colors, else `model.classes.default_palette`).
        max_range: "points" farther than this (metres) become NaN (None = no limit).
    """

    def __init__(self, model: torch.nn.Module, device: str = "auto", precision: str = "fp32",
                 net_size=None, resize_rule: str = "minimal", label_upsampling: str = "bilinear",
                 outputs=("depth", "labels"), channels_last: bool = False, preprocessing: str = "fast",
                 depth_cmap: str = "turbo", palette: np.ndarray | None = None,
                 max_range: float | None = None):
        if not hasattr(model, "config"):
            raise TypeError("model must be a DPT with a .config (DPTConfig); got "
                            f"{type(model).__name__} without one")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {tuple(PRECISIONS)}")
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision 'fp16' needs a CUDA device; on CPU use 'bf16' or 'fp32'")
        if label_upsampling not in LABEL_UPSAMPLING:
            raise ValueError(f"unknown label_upsampling {label_upsampling!r}; "
                             f"expected one of {LABEL_UPSAMPLING}")
        self.preprocessing = check_preprocessing(preprocessing)
        self.outputs = check_outputs(outputs)
        self.precision = precision
        self.config = model.config
        self.model = model.eval().to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.resize_rule = resize_rule
        self.label_upsampling = label_upsampling
        self.heads = tuple(self.config.heads)
        self.runner = ModelRunner(self.model)
        self.depth_cmap = depth_cmap
        if palette is None and self.has_labels:
            colors = getattr(self.config, "class_colors", None)
            n = self.config.num_classes
            palette = np.asarray(colors, dtype=np.uint8) if colors else default_palette(n)
        self.palette = palette
        self.projector = PointCloudProjector(max_range)
        self._lock = threading.Lock()
        self._batch_cap: int | None = None  # most frames per forward after an out-of-memory
        self.oom_events = 0
        self._trim = memory.OutlierTrim()  # freed heap pages go back after an unusually big batch
        self._net_size = parse_net_size(self.config.net_size)
        self.set_net_size(net_size)
        self.set_resize_rule(resize_rule)

    # ---- settings ----------------------------------------------------------------------------
    @property
    def net_size(self) -> tuple[int, int]:
        return self._net_size

    def set_net_size(self, net_size) -> None:
        """Change the resize target at runtime: int, (h, w), or None for the config's default.
        Sides must be positive multiples of 32 (ValueError otherwise; the old value stays)."""
        hw = parse_net_size(self.config.net_size if net_size is None else net_size)
        if hw[0] % 32 or hw[1] % 32:
            raise ValueError(f"net_size sides must be multiples of 32 (the network's stride), got {hw}")
        self._net_size = hw

    def check_memory(self, net_size=None, batch: int = 1) -> memory.MemoryCheck:
        """Whether one forward at `net_size` (default: the current one) fits in the memory available
        on the device now (`inference.memory.check_net_size`: a closed-form estimate for the model
        with every head, against /proc/meminfo MemAvailable or the free CUDA memory)."""
        hw = self._net_size if net_size is None else parse_net_size(net_size)
        lowres = self._use_lowres_logits(self.has_labels, "logits" in self.outputs)
        return memory.check_net_size(self.model, hw, self.device, self.precision, batch,
                                     lowres_logits=lowres)

    def set_resize_rule(self, rule: str) -> None:
        net_input_shape(32, 32, 32, rule=rule)  # validates the name with its own clear error
        self.resize_rule = rule

    @property
    def has_depth(self) -> bool:
        return "depth" in self.heads

    @property
    def has_labels(self) -> bool:
        return "segmentation" in self.heads

    @property
    def depth_kind(self) -> str:
        """What the model's depth means: "metric" (metres) or "relative" (relative inverse depth)."""
        return METRIC if self.config.depth_kind == METRIC else RELATIVE

    def net_shape_for(self, h: int, w: int) -> tuple[int, int]:
        return net_input_shape(h, w, self._net_size, multiple=32, rule=self.resize_rule)

    # ---- inference -----------------------------------------------------------------------------
    def infer_image(self, rgb: np.ndarray, outputs=None) -> Prediction:
        """One H x W x 3 uint8 RGB frame -> Prediction at H x W (numpy in, numpy out)."""
        return self.run([rgb], outputs)[0]

    def infer_batch(self, images: Sequence[np.ndarray], outputs=None) -> list[Prediction]:
        """Several frames; same-sized frames share one forward. Results keep the input order."""
        return self.run(images, outputs)

    def run(self, images: Sequence[np.ndarray], outputs=None, P=None,  # noqa: N803
            metric_scale_shift: Sequence[tuple[float, float] | None] | None = None) -> list[Prediction]:
        """Frames -> one Prediction per frame holding `outputs` (default: the pipeline's `outputs`).

        P: the camera's 3x4 projection for "points": one matrix for every frame, or one per frame.
        metric_scale_shift: per frame, None or the (scale, shift) that turns a relative model's
            inverse depth into metres (`depth_units.metres_from_relative`: 1 / (scale * x + shift),
            +Inf where that is <= 0; e.g. fitted online by `inference.metric_depth`); such frames'
            depth is then "metric". Points need metric depth.
        """
        if isinstance(images, np.ndarray):
            raise TypeError("run takes a list of H x W x 3 arrays; use infer_image for one array")
        wanted = self.outputs if outputs is None else check_outputs(outputs)
        n = len(images)
        checked = [check_rgb_image(im, f"image {i}") for i, im in enumerate(images)]
        metric = [None] * n if metric_scale_shift is None else list(metric_scale_shift)
        if len(metric) != n:
            raise ValueError(f"metric_scale_shift needs one entry (None or (scale, shift)) per frame: "
                             f"{n} frames, got {len(metric)}")
        cameras = self._per_frame_p(P, n) if "points" in wanted else [None] * n
        if "points" in wanted and self.has_depth and self.depth_kind != METRIC:
            missing = [i for i, m in enumerate(metric) if m is None]
            if missing:
                raise ValueError(f"points need metric depth: frames {missing} have no metric_scale_shift "
                                 "and the model outputs relative inverse depth")
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(checked):
            groups.setdefault(im.shape[:2], []).append(i)
        results: list[Prediction | None] = [None] * n
        for size, indices in groups.items():
            predictions = self._infer_degrading([checked[i] for i in indices], size, wanted)
            for idx, pred in zip(indices, predictions):
                results[idx] = self._finish(pred, wanted, metric[idx], cameras[idx])
        return results  # type: ignore[return-value]

    @staticmethod
    def _per_frame_p(P, n: int) -> list:  # noqa: N803
        if P is None:
            raise ValueError("points need the camera's 3x4 projection matrix P")
        if np.asarray(P, dtype=object).size == 12:
            return [P] * n
        per_frame = list(P)
        if len(per_frame) != n:
            raise ValueError(f"P must be one 3x4 matrix or one per frame ({n}), got {len(per_frame)}")
        return per_frame

    def _finish(self, pred: Prediction, wanted: tuple[str, ...], metric, P) -> Prediction:  # noqa: N803
        """Host-side outputs of one frame: metric conversion, colours, points."""
        if pred.depth is not None and metric is not None and pred.depth_kind == RELATIVE:
            pred.depth = metres_from_relative(pred.depth, *metric)
            pred.depth_kind = METRIC
        if pred.depth is not None:
            if "depth_color" in wanted:
                # Near = warm for both kinds: inverse depth grows towards the camera, metres shrink.
                pred.depth_color = colorize_depth(pred.depth, cmap=self.depth_cmap,
                                                  invert=pred.depth_kind == METRIC)
            if "points" in wanted:
                pred.points = self.projector.project(pred.depth, P)
            if "depth" not in wanted:
                pred.depth = pred.depth_kind = None
        if pred.labels is not None:
            if "labels_color" in wanted:
                pred.labels_color = colorize_labels(pred.labels, self.palette)
            if "labels" not in wanted:
                pred.labels = None
        return pred

    def _infer_degrading(self, images: list[np.ndarray], size: tuple[int, int],
                         wanted: tuple[str, ...]) -> list[Prediction]:
        """`_infer_same_size`, but an out-of-memory error degrades instead of failing: a batch is split
        in halves (later batches are capped at the size that fit), a single frame is retried at a
        lower network resolution (kept for later frames). Each step is logged as a warning; at the
        smallest resolution the error is raised."""
        cap = self._batch_cap
        if cap is not None and len(images) > cap:
            chunks = [images[i:i + cap] for i in range(0, len(images), cap)]
            return [p for chunk in chunks for p in self._infer_degrading(chunk, size, wanted)]
        try:
            return self._infer_same_size(images, size, wanted)
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.oom_events += 1
            net_shape = self.net_shape_for(*size)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
            if len(images) > 1:
                half = (len(images) + 1) // 2
                self._batch_cap = half if self._batch_cap is None else min(self._batch_cap, half)
                log.warning(f"out of memory with {len(images)} frames at network input {net_shape}; "
                            f"batches are now at most {self._batch_cap} frames ({reason})")
                return (self._infer_degrading(images[:half], size, wanted)
                        + self._infer_degrading(images[half:], size, wanted))
            smaller = self._smaller_net_size(size)
            if smaller is None:
                raise
            old = self._net_size
            self._net_size = smaller
            log.warning(f"out of memory for one frame at network input {net_shape}; net_size lowered from "
                        f"{list(old)} to {list(smaller)} (input now {self.net_shape_for(*size)}) ({reason})")
            return self._infer_degrading(images, size, wanted)

    def _smaller_net_size(self, size: tuple[int, int]) -> tuple[int, int] | None:
        """The next net_size (x OOM_SHRINK, multiples of 32) that gives a frame of `size` a smaller
        network input, or None when the input is already as small as it gets."""
        current = self.net_shape_for(*size)
        target = self._net_size
        while target != (32, 32):
            target = tuple(max(32, int(side * OOM_SHRINK) // 32 * 32) for side in target)
            shape = net_input_shape(size[0], size[1], target, multiple=32, rule=self.resize_rule)
            if shape[0] * shape[1] < current[0] * current[1]:
                return target
        return None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def _forward(
        self, x: torch.Tensor, heads: tuple[str, ...], lowres_logits: bool
    ) -> dict[str, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            return self.runner(x, heads, class_ids_only=lowres_logits)

    def _use_lowres_logits(self, do_labels: bool, want_logits: bool) -> bool:
        """Half-resolution logits feed the exact CPU label path; returned logits stay full size."""
        return (do_labels and not want_logits and self.runner.composable
                and self.preprocessing == "fast"
                and self.label_upsampling == "bilinear" and self.device.type == "cpu")

    @torch.inference_mode()
    def _infer_same_size(self, images: list[np.ndarray], size: tuple[int, int],
                         wanted: tuple[str, ...]) -> list[Prediction]:
        """Depth (model semantics), labels and logits for same-sized frames: one forward."""
        do_depth = self.has_depth and any(o in wanted for o in ("depth", "depth_color", "points"))
        do_labels = self.has_labels and any(o in wanted for o in ("labels", "labels_color"))
        want_logits = "logits" in wanted and self.has_labels
        heads = tuple(h for h, on in (("depth", do_depth), ("segmentation", do_labels or want_logits)) if on)
        h, w = size
        net_shape = self.net_shape_for(h, w)
        n = len(images)
        if not heads:
            return [Prediction(None, None, None, size, net_shape) for _ in range(n)]

        with self._lock:
            t0 = time.perf_counter()
            x = preprocess_many(images, net_shape, self.config.mean, self.config.std, self.device,
                                preprocessing=self.preprocessing)
            self._sync()
            t1 = time.perf_counter()
            lowres = self._use_lowres_logits(do_labels, want_logits)
            out = self._forward(x, heads, lowres)
            self._sync()
            del x
            work = n * (h * w + net_shape[0] * net_shape[1])
            if self._trim.is_outlier(work):
                # An outlier's forward left its freed buffers in the heap; post-processing (threads,
                # other malloc arenas) would allocate beside them: give them back first.
                memory.release_freed_memory()
            t2 = time.perf_counter()
            depths = self._post_depth(out["depth"], size) if do_depth else [None] * n
            t3 = time.perf_counter()
            seg = out.get("segmentation") if (do_labels or want_logits) else None
            labels = self._post_labels(seg, size, lowres) if do_labels else [None] * n
            logits = list(seg.float().cpu().numpy()) if want_logits else [None] * n
            t4 = time.perf_counter()
            del out, seg
            self._trim.after(work)

        timings = {"preprocess": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3, "depth": (t3 - t2) * 1e3,
                   "labels": (t4 - t3) * 1e3, "total": (t4 - t0) * 1e3}
        kind = self.depth_kind if do_depth else None
        return [Prediction(depths[i], kind, labels[i], size, net_shape, logits[i], dict(timings))
                for i in range(n)]

    def _post_depth(self, depth: torch.Tensor, size: tuple[int, int]) -> list[np.ndarray]:
        depth = depth.float()
        if self.depth_kind == METRIC:
            # The reference converts at network resolution (inside its model), then resizes.
            depth = depth_from_inverse(depth, self.config.depth_scale, self.config.depth_shift)
        if self.preprocessing == "reference":
            return list(upsample_depth(depth, size, clamp=False).cpu().numpy())
        if self.device.type == "cpu":
            return [upsample_depth_numpy(d, size) for d in depth.numpy()]
        return list(upsample_depth(depth, size).cpu().numpy())

    def _post_labels(self, logits: torch.Tensor, size: tuple[int, int], lowres: bool) -> list[np.ndarray]:
        dtype = label_dtype(logits.shape[1])
        if self.preprocessing == "reference":
            return [a.astype(dtype) for a in labels_bicubic(logits, size).cpu().numpy()]
        if self.label_upsampling == "bilinear":
            if self.device.type == "cpu":
                return labels_from_logits(logits, size, lowres=lowres)
            return [a.astype(dtype) for a in labels_bilinear(logits, size).cpu().numpy()]
        if self.device.type == "cpu":  # the head's logits are channels-last: argmax reads them in order
            ids = logits_hwc(logits).argmax(axis=-1).astype(dtype)
        else:
            ids = logits.max(dim=1).indices.to(torch.int32).cpu().numpy().astype(dtype)
        return [labels_nearest(a, size) for a in ids]
