"""Network input size and image normalisation, following the DPT reference preprocessing.

The reference resizes an RGB image with cubic interpolation so that both sides are multiples of
32 while keeping the aspect ratio ("minimal" rule), then normalises with mean = std = 0.5.
Two ways to do it (`PREPROCESSING`):

- "fast" (the node's default): the resize runs on the uint8 image with OpenCV (4x less memory
  traffic than on floats) and the normalisation runs in place on the tensor that is handed to
  the network, on its device, so the only full-size float copy made is the network input
  itself. The resized pixels are rounded and clipped to 0..255 (cubic overshoots at edges).
- "reference" (evaluation's default): the official scripts' float pipeline: the image as
  floats in [0, 1] (x / 255), cubic resize of the floats (no rounding, no clipping of the
  overshoot), (x - mean) / std, HWC -> CHW, cast to float32 last. Like the official code
  (`cv2.imread(...) / 255.0` is float64) it computes in float64: OpenCV's float32 cubic resize
  differs from its float64 one by up to ~4e-6 (measured in the tests), float64 matches the
  official input to float32 rounding.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from dpt_perception.caches import LRUCache

RESIZE_RULES = ("minimal", "lower_bound", "upper_bound", "fixed")
#: preprocessing + output resampling of the PerceptionPipeline and of evaluation (docs/model.md)
PREPROCESSING = ("fast", "reference")


def check_preprocessing(name) -> str:
    """`name` if it is one of `PREPROCESSING`, else a ValueError naming the valid choices."""
    if name not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {name!r}; expected one of {PREPROCESSING} "
                         "('reference' = the official float pipeline, 'fast' = the uint8 path)")
    return name


def parse_net_size(net_size) -> tuple[int, int]:
    """Turn an int or an (h, w) pair into a validated (h, w) tuple of positive ints."""
    if isinstance(net_size, (int, np.integer)) and not isinstance(net_size, bool):
        hw = (int(net_size), int(net_size))
    elif isinstance(net_size, Sequence) and not isinstance(net_size, str) and len(net_size) == 2:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in net_size):
            raise ValueError(f"net_size must hold two integers (h, w), got {net_size!r}")
        hw = (int(net_size[0]), int(net_size[1]))
    else:
        raise ValueError(f"net_size must be an int or an (h, w) pair of ints, got {net_size!r}")
    if hw[0] <= 0 or hw[1] <= 0:
        raise ValueError(f"net_size sides must be positive, got {hw}")
    return hw


def _to_multiple(x: float, multiple: int, min_val: int = 0, max_val: int | None = None) -> int:
    """The reference rounding: nearest multiple (numpy round-half-even), floored when it would
    exceed max_val and ceiled when below min_val. Never below one multiple (the reference can
    return 0 for tiny images, which no network accepts)."""
    y = int(np.round(x / multiple) * multiple)
    if max_val is not None and y > max_val:
        y = int(np.floor(x / multiple) * multiple)
    if y < min_val:
        y = int(np.ceil(x / multiple) * multiple)
    return max(y, multiple)


#: The network input holds at most this many times the target's pixels (net_h x net_w). The
#: aspect-keeping rules exceed the target's area by the image's aspect ratio relative to the
#: target's (1.78 for 16:9 into a square); for a strip that is unbounded: a 64 x 8192 image at target
#: 64 x 64 kept 64 x 8192 under "minimal" (128x the work, 45 s on a CPU core).
MAX_NET_AREA_RATIO = 4


def net_input_shape(h: int, w: int, net_size, multiple: int = 32, rule: str = "minimal") -> tuple[int, int]:
    """Network input (height, width) for an h x w image: `_rule_shape` (see there), then both sides
    shrunk (multiples of `multiple`, at least one) until it holds at most MAX_NET_AREA_RATIO x the
    target's pixels, the aspect ratio kept as far as the multiples allow."""
    nh, nw = _rule_shape(h, w, net_size, multiple, rule)
    net_h, net_w = parse_net_size(net_size)
    budget = MAX_NET_AREA_RATIO * max(net_h * net_w, multiple * multiple)
    if nh * nw <= budget:
        return nh, nw
    scale = (budget / (nh * nw)) ** 0.5
    nh, nw = (max(multiple, int(side * scale) // multiple * multiple) for side in (nh, nw))
    if nh * nw > budget:  # one side held at one multiple: the other takes what is left
        if nh == multiple:
            nw = max(multiple, budget // nh // multiple * multiple)
        else:
            nh = max(multiple, budget // nw // multiple * multiple)
    return int(nh), int(nw)


def _rule_shape(h: int, w: int, net_size, multiple: int = 32, rule: str = "minimal") -> tuple[int, int]:
    """Network input (height, width) for an h x w image, by the resize rule alone.

    net_size: an int (square target) or an (h, w) pair. Rules (as in the DPT reference Resize):
      - "minimal": keep the aspect ratio, applying whichever of the two scale factors is closer
        to 1 to both sides (the image is changed as little as possible);
      - "lower_bound": keep the aspect ratio, both sides at least the target;
      - "upper_bound": keep the aspect ratio, both sides at most the target;
      - "fixed": ignore the aspect ratio, use the target size itself.
    Each side is then rounded to a multiple of `multiple`.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    if not isinstance(multiple, (int, np.integer)) or multiple <= 0:
        raise ValueError(f"multiple must be a positive int, got {multiple!r}")
    if rule not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {rule!r}; expected one of {RESIZE_RULES}")
    net_h, net_w = parse_net_size(net_size)
    scale_h, scale_w = net_h / h, net_w / w
    if rule == "fixed":
        return _to_multiple(net_h, multiple), _to_multiple(net_w, multiple)
    if rule == "minimal":
        scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
        return _to_multiple(scale * h, multiple), _to_multiple(scale * w, multiple)
    if rule == "lower_bound":
        scale = max(scale_h, scale_w)
        return (_to_multiple(scale * h, multiple, min_val=net_h),
                _to_multiple(scale * w, multiple, min_val=net_w))
    scale = min(scale_h, scale_w)  # upper_bound
    return (_to_multiple(scale * h, multiple, max_val=net_h),
            _to_multiple(scale * w, multiple, max_val=net_w))


def check_rgb_image(rgb, what: str = "image") -> np.ndarray:
    """Validate an H x W x 3 uint8 array; returns it C-contiguous (a copy only when it is not)."""
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"{what} must be a numpy array (H x W x 3 uint8 RGB), got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{what} must have shape (H, W, 3), got {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 RGB, got dtype {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {rgb.shape}")
    return rgb if rgb.flags.c_contiguous else np.ascontiguousarray(rgb)


def resize_rgb(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Cubic resize of a uint8 RGB image to (h, w); no copy when the size already matches."""
    h, w = shape
    if rgb.shape[:2] == (h, w):
        return rgb
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)


_AFFINE_CACHE = LRUCache("normalise", 8)  # (mean, std, device, dtype) -> (a, b)


def _normalise_affine(mean, std, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(1,3,1,1) multiplier and offset so that x_uint8 * a - b == (x / 255 - mean) / std."""
    key = (tuple(float(m) for m in mean), tuple(float(s) for s in std), str(device), dtype)
    cached = _AFFINE_CACHE.get(key)
    if cached is None:
        mean_a = np.asarray(key[0], dtype=np.float64)
        std_a = np.asarray(key[1], dtype=np.float64)
        if mean_a.shape != (3,) or std_a.shape != (3,):
            raise ValueError(f"mean and std need 3 values (R, G, B), got {mean!r} and {std!r}")
        if np.any(std_a <= 0):
            raise ValueError(f"std values must be positive, got {std!r}")
        a = torch.tensor(1.0 / (255.0 * std_a), dtype=dtype, device=device).view(1, 3, 1, 1)
        b = torch.tensor(mean_a / std_a, dtype=dtype, device=device).view(1, 3, 1, 1)
        cached = (a, b)
        _AFFINE_CACHE.put(key, cached)
    return cached


def reference_input(rgb: np.ndarray, shape: tuple[int, int], mean, std) -> np.ndarray:
    """The official float pipeline for one uint8 RGB image: float32 (3, h, w) network input.

    x / 255 in float64 (as the official `read_image`), cubic resize of the floats (OpenCV
    INTER_CUBIC, overshoot kept), (x - mean) / std per channel, HWC -> CHW, float32."""
    rgb = check_rgb_image(rgb)
    mean_a = np.asarray(mean, dtype=np.float64).reshape(-1)
    std_a = np.asarray(std, dtype=np.float64).reshape(-1)
    if mean_a.shape != (3,) or std_a.shape != (3,):
        raise ValueError(f"mean and std need 3 values (R, G, B), got {mean!r} and {std!r}")
    if np.any(std_a <= 0):
        raise ValueError(f"std values must be positive, got {std!r}")
    h, w = shape
    x = rgb / 255.0
    if x.shape[:2] != (h, w):
        x = cv2.resize(x, (w, h), interpolation=cv2.INTER_CUBIC)
    x = (x - mean_a) / std_a
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def preprocess_many(images: Sequence[np.ndarray], shape: tuple[int, int], mean, std, device="cpu",
                    dtype: torch.dtype = torch.float32, preprocessing: str = "fast") -> torch.Tensor:
    """Resize and normalise same-purpose images into one (B, 3, h, w) tensor on `device`.

    "fast": the uint8 pixels travel to the device (4x less than floats), the layout change
    HWC -> CHW and the cast happen in one copy there, and the normalisation is in place.
    "reference": `reference_input` per image on the CPU, then one copy to the device.
    """
    check_preprocessing(preprocessing)
    if len(images) == 0:
        raise ValueError("preprocess needs at least one image")
    if preprocessing == "reference":
        floats = [reference_input(check_rgb_image(im, f"image {i}"), shape, mean, std)
                  for i, im in enumerate(images)]
        stacked = floats[0][None] if len(floats) == 1 else np.stack(floats)
        return torch.from_numpy(stacked).to(device=device, dtype=dtype)
    resized = [resize_rgb(check_rgb_image(im, f"image {i}"), shape) for i, im in enumerate(images)]
    stacked = resized[0][None] if len(resized) == 1 else np.stack(resized)
    pixels = torch.from_numpy(stacked).to(device, non_blocking=True)  # (B, h, w, 3) uint8
    x = pixels.permute(0, 3, 1, 2).to(dtype=dtype, memory_format=torch.contiguous_format)
    a, b = _normalise_affine(mean, std, x.device, dtype)
    return x.mul_(a).sub_(b)


def preprocess(rgb_uint8: np.ndarray, shape: tuple[int, int], mean, std, device="cpu",
               dtype: torch.dtype = torch.float32, preprocessing: str = "fast") -> torch.Tensor:
    """One H x W x 3 uint8 RGB image -> normalised (1, 3, h, w) tensor on `device`."""
    return preprocess_many([rgb_uint8], shape, mean, std, device, dtype, preprocessing)
