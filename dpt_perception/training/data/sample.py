"""The common sample representation every reader returns, and the error for broken samples.

A *raw sample* (before augmentation) is a plain dict:

=============== ======================= ==================================================
key             type                    meaning
=============== ======================= ==================================================
``image``       (H,W,3) uint8           RGB image
``depth``       (H,W) float32           metric depth in metres (z along the optical axis);
                                        only present when ``has_depth``; invalid pixels are 0
``depth_valid`` (H,W) bool              True where ``depth`` is a measurement; only with depth
``labels``      (H,W) int64             class ids ``0..C-1``; ``ignore_index`` = no label;
                                        only present when ``has_labels``
``has_depth``   bool                    whether the sample carries depth supervision
``has_labels``  bool                    whether the sample carries segmentation supervision
``name``        str                     identifier (file stem, frame index, ...)
``ignore_index`` int                    the label value that means "no label"
``K``           (3,3) float64, optional pinhole intrinsics of ``image`` (OpenCV convention:
                                        pixel centres at integer coordinates)
=============== ======================= ==================================================

Readers mark depth values that are 0, negative, NaN or infinite as invalid and store them as
0 so no NaN can reach a loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_IGNORE_INDEX = 255


class CorruptSampleError(RuntimeError):
    """A sample that cannot be read or is inconsistent (unreadable file, wrong dtype, shape mismatch).

    ``source`` names the file (or bag message) and ``reason`` says what was wrong.
    """

    def __init__(self, source: str, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"corrupt sample {self.source}: {reason}")


def valid_depth_mask(depth: np.ndarray) -> np.ndarray:
    """True where ``depth`` is a usable measurement (finite and > 0)."""
    return np.isfinite(depth) & (depth > 0)


def make_sample(
    image: np.ndarray,
    *,
    name: str,
    depth: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    K: np.ndarray | None = None,  # noqa: N803 - the standard name of the camera matrix
    num_classes: int | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Validate the parts of a sample and assemble the raw sample dict.

    Raises :class:`CorruptSampleError` (naming ``source``, or ``name``) when the parts do not
    fit together: a non-RGB image, a depth/label map of another size, labels outside
    ``0..num_classes-1`` that are not ``ignore_index``.
    """
    src = source or name
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise CorruptSampleError(src, f"image must be (H,W,3) uint8 RGB, got {image.shape} {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise CorruptSampleError(src, f"image is empty {image.shape}")
    hw = image.shape[:2]
    sample: dict[str, Any] = {
        "image": np.ascontiguousarray(image),
        "name": str(name),
        "ignore_index": int(ignore_index),
        "has_depth": depth is not None,
        "has_labels": labels is not None,
    }
    if depth is not None:
        depth = np.asarray(depth, dtype=np.float32)
        if depth.shape != hw:
            raise CorruptSampleError(src, f"depth is {depth.shape[:2]} but image is {hw} (H,W)")
        valid = valid_depth_mask(depth)
        sample["depth"] = np.where(valid, depth, np.float32(0.0)).astype(np.float32, copy=False)
        sample["depth_valid"] = valid
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape != hw:
            raise CorruptSampleError(src, f"labels are {labels.shape} but image is {hw} (H,W)")
        if not np.issubdtype(labels.dtype, np.integer):
            raise CorruptSampleError(src, f"labels must be integers, got {labels.dtype}")
        labels = labels.astype(np.int64, copy=False)
        if num_classes is not None:
            bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
            if bad.any():
                raise CorruptSampleError(
                    src,
                    f"{int(bad.sum())} label pixels outside 0..{num_classes - 1} "
                    f"(e.g. {int(labels[bad][0])}) and not the ignore index {ignore_index}",
                )
        sample["labels"] = labels
    if K is not None:
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise CorruptSampleError(src, f"camera matrix K must be 3x3, got {K.shape}")
        sample["K"] = K
    return sample


def scale_intrinsics(
    K: np.ndarray,  # noqa: N803
    sx: float,
    sy: float,
) -> np.ndarray:
    """Intrinsics after resizing the image by (sx, sy), OpenCV pixel-centre convention.

    A pixel centre u maps to (u + 0.5) * sx - 0.5, so fx scales by sx and cx by the same affine map.
    """
    K2 = np.array(K, dtype=np.float64, copy=True)
    K2[0, 0] *= sx
    K2[0, 1] *= sx
    K2[0, 2] = (K2[0, 2] + 0.5) * sx - 0.5
    K2[1, 1] *= sy
    K2[1, 2] = (K2[1, 2] + 0.5) * sy - 0.5
    return K2
