"""The published evaluation protocols behind the DPT paper's numbers (``evaluate --protocol``).

Depth (NYUv2, KITTI): the BTS evaluation script (``eval_with_pngs.py``) the DPT release points
to, per image and then averaged over the images:

* valid pixels: ``min_depth < gt < max_depth`` (strict), finite, inside the protocol's crop;
* predictions clipped to ``[min_depth, max_depth]``, +inf -> ``max_depth``, NaN -> ``min_depth``;
* metrics ``metrics.DEPTH_METRIC_NAMES`` (d1..d3, AbsRel, SqRel, RMSE, RMSElog, SILog, log10).

=========  ======================================================================================
``nyu``    480x640 frames, Eigen crop rows 45:471, columns 41:601; cap 10 m, min 1e-3 m.
``kitti``  input cropped to 352x1216 before the network (KB crop: the bottom 352 rows, the centre
           1216 columns; the official ``--kitti_crop``), the prediction pasted back into a zero
           frame of the ground truth's size (``--do_kb_crop``), metric inside the Garg crop (rows
           0.40810811..0.99189189, columns 0.03594771..0.96405229 of the frame, ``int()`` of
           each bound); cap 80 m, min 1e-3 m.
``ade20k`` 150 classes, ignore index 0 of the raw annotation (the official script adds 1 to the
           argmax, so its ids and the annotation's share the numbering 1..150; this project's
           ids are 0..149 = official - 1, and the ADE20K reader maps annotation 0 to its
           ignore index); pixel accuracy and mIoU from one confusion matrix over the set,
           single scale.
``none``   no crop; min/max depth from the command line.
=========  ======================================================================================

Affine-invariant (relative) models are aligned per image as the official MiDaS/DPT gists do:
least squares scale and shift of the inverse-depth prediction against 1 / gt on the valid
pixels, the aligned inverse depth capped at ``1 / max_depth``, then inverted
(``metrics.relative_to_depth``).

The official flow writes predictions to uint16 PNGs before evaluating them (``depth * 256`` for
KITTI, ``depth * 1000`` for NYU, truncated by ``astype``); ``png_quantize`` reproduces that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dpt_perception.training.metrics import depth_errors, relative_to_depth

#: rows, columns of the NYU Eigen crop (BTS ``--eigen_crop``), on 480x640 frames
NYU_EIGEN_CROP = ((45, 471), (41, 601))
NYU_FRAME_HW = (480, 640)
#: Garg crop as fractions of (height, height, width, width) (BTS ``--garg_crop``)
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
#: KITTI network input (KB crop, the official ``--kitti_crop``)
KB_CROP_HW = (352, 1216)
PROTOCOL_NAMES = ("nyu", "kitti", "ade20k", "none")
#: the depth range of protocol "none" when none is given (m)
DEFAULT_MIN_DEPTH = 1e-3
DEFAULT_MAX_DEPTH = 80.0


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol (see the module docstring)."""

    name: str
    task: str  # "depth", "segmentation" or "any"
    min_depth: float | None = None
    max_depth: float | None = None
    eval_crop: str | None = None  # "eigen" | "garg" | None
    input_crop: str | None = None  # "kb" | None
    png_scale: float | None = None  # the official prediction PNGs: value / png_scale metres
    num_classes: int | None = None

    def describe(self) -> list[str]:
        """Lines for the report: what is cropped, capped and ignored (empty for "none" without
        a depth range)."""
        lines = []
        if self.min_depth is not None:
            lines.append(f"depth: valid {self.min_depth:g} < gt < {self.max_depth:g} m, "
                         f"predictions clipped to [{self.min_depth:g}, {self.max_depth:g}] m")
        if self.input_crop == "kb":
            lines.append(f"input crop: KB {KB_CROP_HW[0]}x{KB_CROP_HW[1]} (bottom rows, centre columns)")
        if self.eval_crop == "eigen":
            (r0, r1), (c0, c1) = NYU_EIGEN_CROP
            lines.append(f"metric crop: Eigen rows {r0}:{r1}, columns {c0}:{c1} of 480x640")
        elif self.eval_crop == "garg":
            top, bottom, left, right = GARG_CROP
            lines.append(f"metric crop: Garg rows int({top} H):int({bottom} H), "
                         f"columns int({left} W):int({right} W)")
        if self.num_classes is not None:
            lines.append(f"segmentation: {self.num_classes} classes, annotation 0 ignored, single scale")
        return lines


PROTOCOLS: dict[str, Protocol] = {
    "nyu": Protocol("nyu", "depth", 1e-3, 10.0, eval_crop="eigen", png_scale=1000.0),
    "kitti": Protocol("kitti", "depth", 1e-3, 80.0, eval_crop="garg", input_crop="kb", png_scale=256.0),
    "ade20k": Protocol("ade20k", "segmentation", num_classes=150),
    "none": Protocol("none", "any"),
}


def get_protocol(
    name: str, min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH
) -> Protocol:
    """The named protocol; "none" takes its depth range from the arguments."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; expected one of {PROTOCOL_NAMES}")
    if name == "none":
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        return Protocol("none", "any", float(min_depth), float(max_depth))
    return PROTOCOLS[name]


# ---- crops ------------------------------------------------------------------------------------
def eigen_crop_mask(shape: tuple[int, int]) -> np.ndarray:
    """True inside the NYU Eigen crop; defined on 480x640 frames only."""
    if tuple(shape) != NYU_FRAME_HW:
        raise ValueError(f"the NYU Eigen crop is defined on 480x640 frames, got {shape[0]}x{shape[1]}")
    mask = np.zeros(shape, dtype=bool)
    (r0, r1), (c0, c1) = NYU_EIGEN_CROP
    mask[r0:r1, c0:c1] = True
    return mask


def garg_crop_mask(shape: tuple[int, int]) -> np.ndarray:
    """True inside the Garg crop of an h x w KITTI frame (int() of each fractional bound)."""
    h, w = shape
    top, bottom, left, right = GARG_CROP
    mask = np.zeros((h, w), dtype=bool)
    mask[int(top * h):int(bottom * h), int(left * w):int(right * w)] = True
    return mask


def kb_crop_origin(shape: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of the 352x1216 KB crop in an h x w KITTI frame."""
    h, w = shape[:2]
    ch, cw = KB_CROP_HW
    if h < ch or w < cw:
        raise ValueError(f"the KITTI KB crop needs frames of at least {ch}x{cw}, got {h}x{w}")
    return h - ch, (w - cw) // 2


def kb_crop(image: np.ndarray) -> np.ndarray:
    """The network input of the KITTI protocol: the KB crop of an (H, W, ...) frame."""
    top, left = kb_crop_origin(image.shape[:2])
    return image[top:top + KB_CROP_HW[0], left:left + KB_CROP_HW[1]]


def kb_uncrop(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A 352x1216 prediction pasted into a zero frame of `shape` (BTS ``--do_kb_crop``)."""
    if pred.shape != KB_CROP_HW:
        raise ValueError(f"a KB-cropped prediction is {KB_CROP_HW}, got {pred.shape}")
    top, left = kb_crop_origin(shape)
    full = np.zeros(shape, dtype=pred.dtype)
    full[top:top + KB_CROP_HW[0], left:left + KB_CROP_HW[1]] = pred
    return full


def crop_mask(protocol: Protocol, shape: tuple[int, int]) -> np.ndarray:
    if protocol.eval_crop == "eigen":
        return eigen_crop_mask(shape)
    if protocol.eval_crop == "garg":
        return garg_crop_mask(shape)
    return np.ones(shape, dtype=bool)


# ---- depth ------------------------------------------------------------------------------------
def depth_eval_mask(protocol: Protocol, gt: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Pixels the metrics use: finite, min_depth < gt < max_depth, inside the crop (and `valid`)."""
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(gt) & (gt > protocol.min_depth) & (gt < protocol.max_depth)
    mask &= crop_mask(protocol, gt.shape)
    return mask if valid is None else mask & valid


def clip_prediction(protocol: Protocol, pred: np.ndarray) -> np.ndarray:
    """BTS: below min -> min, above max -> max, +inf -> max, NaN -> min (float64 copy)."""
    out = np.array(pred, dtype=np.float64)
    out[np.isnan(out)] = protocol.min_depth
    return np.clip(out, protocol.min_depth, protocol.max_depth)


def png_quantize(pred: np.ndarray, png_scale: float) -> np.ndarray:
    """Depth as the official flow reads it back: ``uint16(depth * png_scale) / png_scale`` (the
    cast truncates; values are kept in the uint16 range, where the cast is defined)."""
    stored = np.trunc(np.clip(np.nan_to_num(pred * png_scale, nan=0.0), 0, 65535))
    return stored / png_scale


def protocol_depth(protocol: Protocol, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray,
                   relative: bool = False) -> np.ndarray:
    """The metres the metrics see: `pred` (metres, or with `relative` an affine-invariant inverse
    depth aligned on `mask` as the official gists do), clipped as the BTS script does."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    if relative:
        gt_t = torch.from_numpy(np.where(mask, gt, 1.0).astype(np.float64))[None]
        pred = relative_to_depth(torch.from_numpy(np.asarray(pred, np.float64))[None], gt_t,
                                 torch.from_numpy(mask)[None], protocol.max_depth)[0].numpy()
    return clip_prediction(protocol, pred)


def image_depth_errors(protocol: Protocol, pred: np.ndarray, gt: np.ndarray,
                       valid: np.ndarray | None = None, relative: bool = False) -> dict[str, float] | None:
    """The metrics of one frame under `protocol` (`pred` as in `protocol_depth`, at the frame's
    size). None when the frame has no valid pixel (it is then left out of the averages)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    mask = depth_eval_mask(protocol, gt, valid)
    if not mask.any():
        return None
    depth = torch.from_numpy(protocol_depth(protocol, pred, gt, mask, relative))[None]
    gt_t = torch.from_numpy(np.where(mask, gt, 1.0).astype(np.float64))[None]
    return {k: float(v[0]) for k, v in depth_errors(depth, gt_t, torch.from_numpy(mask)[None]).items()}
