"""Will a forward at this network size fit? A closed-form peak-activation estimate and the memory
available on the device, so a `net_size` that cannot run is refused or lowered before it is tried
(a 4096 x 4096 input took 40 s and 5 GB on a CPU before it failed or swapped).

`estimate_forward_bytes` walks the model's stages with the tensors alive at the worst moment of
each (inference mode frees every intermediate as soon as the next layer has consumed it):

* encoder: the hybrid ResNet stem and stages (at 1/2 .. 1/16 of the input), then per transformer
  block x, its norm, qkv (3 D) and the attention output, or the MLP's two M-wide activations, plus
  the token sequences kept for the necks (one per tapped block). Attention needs no tokens^2
  buffer: PyTorch's fused kernels (flash / memory-efficient, CPU and CUDA) work in tiles
  (measured: 2.5 MiB for 16384 tokens where the score matrix would be 2 GiB); its time is
  O(tokens^2), its memory O(tokens).
* each neck: the reassembled maps (1/4 .. 1/32), their projections to the fusion width F, and
  the last fusion block's work at 1/4 resolution with its x2 output (F channels at 1/2), which
  stays alive until the heads have run;
* heads: depth (F/2 channels upsampled to full size, then 32 channels and the ReLU's copy, per band
  of `DEPTH_HEAD_BAND_PIXELS` for larger inputs), the
  segmentation head (F at 1/2, logits at 1/2 or, unless only low-resolution logits are wanted,
  upsampled to full size).

The largest phase times `WORKSPACE_FACTOR` (convolution workspaces and allocator slack, measured
on the tiny model: `test/test_inference_memory.py` checks the estimate against the process's peak
RSS) is the estimate. `check_net_size` compares it with `available_bytes(device)` x
`MEMORY_HEADROOM` (/proc/meminfo MemAvailable on Linux, `torch.cuda.mem_get_info` plus the
caching allocator's free blocks on CUDA) and names the largest multiple-of-32 size that fits.

`OutlierTrim` + `release_freed_memory` give the heap back to the system after an unusually big
frame, so the resident set returns to its steady state (glibc keeps freed heap pages otherwise).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import sys
from collections import deque
from dataclasses import dataclass

import torch

from dpt_perception.model.heads import DEPTH_HEAD_BAND_PIXELS, DEPTH_HEAD_HIDDEN

#: Peak RSS over the tensors counted, measured on tiny models (CPU, fp32, oneDNN convolutions):
#: 1.2x-1.9x at 256..2048-pixel sides; the estimate errs on the high side.
WORKSPACE_FACTOR = 1.25
#: Share of the available memory one forward may use (the rest: post-processing, messages, other
#: processes, the page cache MemAvailable counts as free).
MEMORY_HEADROOM = 0.8
_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def estimate_forward_bytes(config, net_shape: tuple[int, int], batch: int = 1, precision: str = "fp32",
                           heads=None, lowres_logits: bool = False) -> int:
    """Peak activation bytes of one forward of a DPT built from `config` at input `net_shape`
    (h, w) with `batch` frames (see the module docstring; weights not included)."""
    h, w = (int(v) for v in net_shape)
    e = _BYTES.get(precision, 4) * int(batch)
    px = h * w
    heads = list(config.heads) if heads is None else [t for t in config.heads if t in heads]
    d, m = config.hidden_size, config.mlp_hidden_size
    tokens = px // (config.patch_size ** 2) + 1
    taps = len(config.out_indices)

    # Encoder.
    kept = taps * tokens * d
    stem = 0
    if config.variant == "vit_hybrid":
        s, (w0, w1, w2) = config.resnet_stem_width, config.resnet_widths
        stem = max(3 * s * px // 4, 4 * w0 * px // 16, 4 * w1 * px // 64, 4 * w2 * px // 256)
        kept += w0 * px // 16 + w1 * px // 64
    block = tokens * max(6 * d, 2 * d + 2 * m)
    encoder = max(stem, kept + block)

    # Necks (run one after the other; each fused map is kept for the heads).
    f = config.fusion_channels
    c = config.reassemble_channels
    scales = (16, 64, 256, 1024)  # pixels per map pixel at 1/4, 1/8, 1/16, 1/32
    maps = sum(ch * px // s for ch, s in zip(c, scales))
    projected = sum(f * px // s for s in scales)
    fusion = 4 * f * px // 16 + f * px // 4
    necks = len({config.neck_for(t) for t in heads})
    fused = f * px // 4
    neck = kept + (necks - 1) * fused + maps + projected + fusion

    # Heads (after the necks: fused maps and earlier outputs stay alive).
    outputs = 0
    head_peak = 0
    if "depth" in heads:
        half = f // 2
        hidden = DEPTH_HEAD_HIDDEN
        # The full-size 3x3 convolution reads a reordered copy of its input (oneDNN's blocked layout).
        # Above DEPTH_HEAD_BAND_PIXELS it runs on bands of rows (eager inference): the upsampled map
        # stays alive for all of them, the copy and the hidden activations are one band's.
        band = min(px, DEPTH_HEAD_BAND_PIXELS)
        if band < px:
            full = half * px + px + max(half * band + hidden * band, 2 * hidden * band)
        else:
            full = max(2 * half * px + hidden * px, 2 * hidden * px)
        depth = max(f * px // 4 + half * px // 4, half * px // 4 + half * px, full)
        head_peak = max(head_peak, outputs + depth)
        outputs += px
    if "segmentation" in heads:
        k = config.num_classes
        seg = max(2 * f * px // 4, f * px // 4 + k * px // 4)
        if not lowres_logits:
            seg = max(seg, k * px // 4 + k * px)
        head_peak = max(head_peak, outputs + seg)
    peak_elements = max(encoder, neck, necks * fused + head_peak)
    return int(WORKSPACE_FACTOR * peak_elements * e)


def estimate_model_bytes(model, net_shape: tuple[int, int], batch: int = 1, precision: str = "fp32",
                         heads=None, lowres_logits: bool = False) -> int:
    """`estimate_forward_bytes` for anything with a `.config` (a DPT, an engine); a depth +
    segmentation pair (`model.pair.TaskPair`) runs its two models one after the other: the larger
    of the two, plus the depth map kept while the second runs."""
    parts = [getattr(model, "depth_model", None), getattr(model, "segmentation_model", None)]
    if not all(part is not None and hasattr(part, "config") for part in parts):
        return estimate_forward_bytes(model.config, net_shape, batch, precision, heads, lowres_logits)
    wanted = list(model.config.heads) if heads is None else list(heads)
    total = 0
    depth_map = 0
    if "depth" in wanted:
        total = estimate_forward_bytes(parts[0].config, net_shape, batch, precision, ["depth"])
        depth_map = net_shape[0] * net_shape[1] * _BYTES.get(precision, 4) * batch
    if "segmentation" in wanted:
        seg = estimate_forward_bytes(parts[1].config, net_shape, batch, precision, ["segmentation"],
                                     lowres_logits)
        total = max(total, seg + depth_map)
    return total


def available_bytes(device) -> int | None:
    """Memory a forward can still use on `device`: MemAvailable of /proc/meminfo for the CPU (None
    where that file does not exist), free device memory plus the caching allocator's reserved but
    unused blocks on CUDA, None for other devices."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class MemoryCheck:
    """The estimate for `net_size` against `limit` (None: unknown, taken to fit), and the largest
    multiple-of-32 size of the same aspect ratio that fits (None when not even 32 x 32 does)."""

    net_size: tuple[int, int]
    estimate: int
    limit: int | None
    largest: tuple[int, int] | None

    @property
    def fits(self) -> bool:
        return self.limit is None or self.estimate <= self.limit

    def message(self) -> str:
        text = (f"net_size {list(self.net_size)} needs about {_mib(self.estimate)} for one forward, "
                f"more than the {_mib(self.limit)} available ({MEMORY_HEADROOM:.0%} of free memory)")
        if self.largest is None:
            return text + "; not even [32, 32] fits"
        return text + f"; the largest that fits is {list(self.largest)}"


def _mib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**20:.0f} MiB"


def check_net_size(model, net_size: tuple[int, int], device, precision: str = "fp32", batch: int = 1,
                   heads=None, lowres_logits: bool = False, available: int | None = None) -> MemoryCheck:
    """`estimate_model_bytes` of `model` (anything with a `.config`) at `net_size` against
    MEMORY_HEADROOM x `available` (default: read now with `available_bytes(device)`)."""
    free = available_bytes(device) if available is None else available
    limit = None if free is None else int(free * MEMORY_HEADROOM)

    def estimate(shape):
        return estimate_model_bytes(model, shape, batch, precision, heads, lowres_logits)

    net_size = (int(net_size[0]), int(net_size[1]))
    need = estimate(net_size)
    if limit is None or need <= limit:
        return MemoryCheck(net_size, need, limit, net_size)
    # Memory grows with the pixel count: shrink both sides by the same factor, then step down.
    scale = (limit / need) ** 0.5
    side = max(net_size)
    largest = None
    for target in range(max(32, int(side * scale) // 32 * 32 + 32), 31, -32):
        shape = tuple(max(32, round(s * target / side / 32) * 32) for s in net_size)
        if shape[0] * shape[1] < net_size[0] * net_size[1] and estimate(shape) <= limit:
            largest = shape
            break
    return MemoryCheck(net_size, need, limit, largest)


# ---- giving freed memory back ------------------------------------------------------------------
_libc = None


def release_freed_memory() -> bool:
    """Return the heap's free pages to the system (glibc `malloc_trim(0)`); False where there is no
    glibc. Tensors of a few MB come from the heap (glibc raises its mmap threshold up to 32 MB as
    big blocks are freed), and freed heap memory stays in the process: after one 8192x384 strip
    frame the resident set stayed ~55 MiB above its steady state, back to it after a trim."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim  # noqa: B018 (musl has none)
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    _libc.malloc_trim(0)
    return True


class OutlierTrim:
    """Decides when a trim pays: after an outlier, a batch whose work (pixels in and through the
    network) is more than `factor` x the median of the last `window` batches, the next ordinary
    batch trims (by then the outlier's results have been used and freed). Ordinary traffic never
    trims (a trim makes the next frame fault its pages in again); a strip, an oversized frame or
    a one-off big batch is followed by one."""

    def __init__(self, factor: float = 2.0, window: int = 16, warmup: int = 4):
        self.factor = factor
        self.warmup = warmup
        self._sizes: deque[int] = deque(maxlen=window)
        self._pending = False
        self.trims = 0

    def is_outlier(self, size: int) -> bool:
        """Whether a batch of `size` work is an outlier for the batches recorded so far."""
        if len(self._sizes) < self.warmup:
            return False
        return size > self.factor * statistics.median(self._sizes)

    def after(self, size: int) -> bool:
        """Record a batch of `size` work; True when this call trimmed."""
        outlier = self.is_outlier(size)  # judged against the batches before this one
        self._sizes.append(size)
        if outlier:
            self._pending = True
            return False
        if not self._pending:
            return False
        self._pending = False
        self.trims += 1
        return release_freed_memory()
