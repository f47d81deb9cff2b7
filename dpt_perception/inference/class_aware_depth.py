"""Class-aware depth: the segmentation head improving the geometry the node publishes.

Two rules, both applied to metric depth with the label image of the same frame:

- "too far" classes (by default the class named ``sky`` when the model has one): their pixels are
  ``+Inf`` in ``depth`` (REP 118: beyond the sensor's range, not "invalid") and produce no point.
  A monocular network always predicts *some* finite depth for the sky; publishing it puts a dome of
  phantom points a few tens of metres around the robot.
- excluded classes (e.g. ``person``, ``car``, for mapping only the static world): their pixels produce
  no point and are NaN in the optional ``depth/static`` image; ``depth`` itself keeps them.

ROS-free: the node builds one `ClassAwareDepth` from its parameters and the model's class names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

AUTO = "auto"  # too-far classes: the classes named "sky", if the model has any
NONE = "none"  # turn the rule off
SKY_NAMES = ("sky",)


class UnknownClassError(ValueError):
    """A class name that the model does not have; the message lists the valid names."""


@dataclass(frozen=True)
class ClassAwareResult:
    depth: np.ndarray  # metres, too-far classes +Inf
    points_depth: np.ndarray  # metres, too-far and excluded classes NaN (no point)
    static_depth: np.ndarray | None  # metres, excluded classes NaN, too-far +Inf; None when not asked


def _requested(names: Sequence[str]) -> list[str]:
    """Parameter values as given by ROS: '' entries are the empty-list placeholder, ignored."""
    return [str(n).strip() for n in names if str(n).strip()]


def _ids_of(names: Sequence[str], class_names: Sequence[str], what: str) -> np.ndarray:
    index = {name.lower(): i for i, name in enumerate(class_names)}
    unknown = [n for n in names if n.lower() not in index]
    if unknown:
        raise UnknownClassError(
            f"{what}: unknown class name(s) {unknown}; this model's classes are: {list(class_names)}"
        )
    return np.array(sorted({index[n.lower()] for n in names}), dtype=np.int64)


@dataclass(frozen=True)
class ClassAwareDepth:
    """Which class ids are "too far" and which are excluded from points / depth/static."""

    too_far_ids: np.ndarray
    excluded_ids: np.ndarray
    class_names: tuple[str, ...] = ()

    @classmethod
    def from_names(
        cls,
        class_names: Sequence[str] | None,
        too_far: Sequence[str] = (AUTO,),
        exclude: Sequence[str] = (),
    ) -> ClassAwareDepth:
        """`too_far`: [AUTO] (sky if the model has it, else off), [NONE] or [] (off), or class names
        (each must exist). `exclude`: class names (each must exist), [] or [NONE] for none.
        Raises UnknownClassError naming the valid classes."""
        names = tuple(class_names or ())
        far = _requested(too_far)
        excl = [n for n in _requested(exclude) if n.lower() != NONE]
        if any(n.lower() in (AUTO, NONE) for n in far) and len(far) > 1:
            raise ValueError(f"too-far classes: '{AUTO}' and '{NONE}' stand alone, got {far}")
        if far and far[0].lower() == AUTO:
            far = [n for n in names if n.lower() in SKY_NAMES]
        elif far and far[0].lower() == NONE:
            far = []
        if (far or excl) and not names:
            raise UnknownClassError(
                f"class-aware depth needs a segmentation head: the model has no classes, but "
                f"too-far classes {far} / excluded classes {excl} were requested"
            )
        return cls(
            too_far_ids=_ids_of(far, names, "too-far classes"),
            excluded_ids=_ids_of(excl, names, "classes excluded from points"),
            class_names=names,
        )

    @property
    def active(self) -> bool:
        return bool(self.too_far_ids.size or self.excluded_ids.size)

    def names(self, ids: np.ndarray) -> list[str]:
        return [self.class_names[i] for i in ids]

    def _mask(self, labels: np.ndarray, ids: np.ndarray) -> np.ndarray | None:
        if not ids.size:
            return None
        # A lookup table is O(pixels) whatever the number of classes (np.isin sorts per call).
        table = np.zeros(max(int(labels.max(initial=0)), int(ids.max())) + 1, dtype=bool)
        table[ids] = True
        return table[labels]

    def apply(
        self, depth_m: np.ndarray, labels: np.ndarray | None, want_static: bool = False
    ) -> ClassAwareResult:
        """`depth_m` (H, W) float32 metres and `labels` (H, W) integer ids of the same frame.
        Inputs are never modified; without labels or rules the depth passes through."""
        depth = np.asarray(depth_m, dtype=np.float32)
        if labels is None or not self.active:
            return ClassAwareResult(depth, depth, depth if want_static else None)
        if labels.shape != depth.shape:
            raise ValueError(f"labels {labels.shape} and depth {depth.shape} must have the same shape")
        far = self._mask(labels, self.too_far_ids)
        excluded = self._mask(labels, self.excluded_ids)
        if far is not None:
            depth = depth.copy()
            depth[far] = np.inf
        points = depth
        if far is not None or excluded is not None:
            points = depth.copy()
            if far is not None:
                points[far] = np.nan
            if excluded is not None:
                points[excluded] = np.nan
        static = None
        if want_static:
            static = depth if excluded is None else np.where(excluded, np.float32(np.nan), depth)
        return ClassAwareResult(depth, points, static)
