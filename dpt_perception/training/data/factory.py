"""``build_dataset(spec)``: datasets from YAML-friendly dicts, so training configs can name them.

Spec keys: ``type`` (one of :data:`DATASET_TYPES`, aliases rosbag2 / ade / nyuv2, or ``"concat"``
with ``datasets``: a list of specs), the reader's own options (the keyword arguments of its
class), and the common keys

* ``skip_corrupt`` (default True): wrap in :class:`SkipCorrupt` (``fail_fast`` passes through);
* ``limit``: keep only the first N samples (quick experiments).

Example (YAML)::

    train_data:
      type: concat
      datasets:
        - {type: nyu, path: /data/nyu_depth_v2_labeled.mat, class_mapping: /data/nyu40.txt}
        - {type: folder, root: /data/my_robot_frames, require_depth: true}
"""

from __future__ import annotations

import inspect
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset

from .ade20k import ADE20KDataset
from .base import Transform
from .folder import FolderDataset
from .kitti import KITTIDepthDataset
from .nyu import NYUDepthV2Dataset
from .robust import SkipCorrupt
from .rosbag_rgbd import RosbagRGBDDataset
from .synthetic import SyntheticDataset

DATASET_TYPES: dict[str, type] = {
    "folder": FolderDataset,
    "nyu": NYUDepthV2Dataset,
    "ade20k": ADE20KDataset,
    "kitti": KITTIDepthDataset,
    "rosbag": RosbagRGBDDataset,
    "synthetic": SyntheticDataset,
}
_ALIASES = {"rosbag2": "rosbag", "ade": "ade20k", "nyuv2": "nyu"}
_COMMON = ("skip_corrupt", "fail_fast", "limit")


def _accepted(cls: type) -> tuple[set[str], bool]:
    params = inspect.signature(cls.__init__).parameters
    names = {p for p in params if p not in ("self", "transform")}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return names - {n for n, p in params.items() if p.kind is inspect.Parameter.VAR_KEYWORD}, var_kw


def find_class_info(dataset: Any) -> tuple[list[str] | None, list[tuple[int, int, int]] | None]:
    """(class_names, class_colors) of a built dataset, looking through SkipCorrupt / Subset /
    ConcatDataset wrappers. Children without labels (no class names) are ignored; labelled
    children with different class lists are an error (their label ids would mean different things)."""
    found: list[tuple[list[str], Any]] = []

    def walk(ds: Any) -> None:
        if isinstance(ds, ConcatDataset):
            for child in ds.datasets:
                walk(child)
        elif isinstance(ds, (SkipCorrupt, Subset)):
            walk(ds.dataset)
        elif getattr(ds, "class_names", None) is not None:
            found.append((list(ds.class_names), getattr(ds, "class_colors", None)))

    walk(dataset)
    if not found:
        return None, None
    names, colors = found[0]
    for other, _ in found[1:]:
        if other != names:
            raise ValueError(f"datasets disagree on classes: {names[:5]}... vs {other[:5]}...")
    return names, colors


def build_dataset(spec: dict[str, Any], transform: Transform | None = None) -> Dataset:
    """Build the dataset ``spec`` describes, with ``transform`` applied to every sample."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a dataset spec must be a dict with a 'type' key, got {spec!r}")
    options = {k: v for k, v in spec.items() if k not in ("type",) + _COMMON}
    kind = _ALIASES.get(spec["type"], spec["type"])
    if kind == "concat":
        children = options.pop("datasets", None)
        if options:
            raise ValueError(
                f"unknown options for 'concat': {sorted(options)} (accepted: datasets, {', '.join(_COMMON)})"
            )
        if not children:
            raise ValueError("'concat' needs a non-empty 'datasets' list of specs")
        # children keep their own skip_corrupt / fail_fast; the outer wrapper would see no errors
        dataset: Dataset = ConcatDataset([build_dataset(c, transform) for c in children])
    else:
        if kind not in DATASET_TYPES:
            raise ValueError(
                f"unknown dataset type {kind!r}; expected one of {sorted(DATASET_TYPES) + ['concat']}"
            )
        cls = DATASET_TYPES[kind]
        accepted, var_kw = _accepted(cls)
        unknown = sorted(set(options) - accepted)
        if unknown and not var_kw:
            raise ValueError(
                f"unknown options for dataset type {kind!r}: {unknown}; "
                f"accepted: {sorted(accepted) + list(_COMMON)}"
            )
        if kind == "kitti" and "cameras" in options:
            options["cameras"] = tuple(options["cameras"])
        dataset = cls(transform=transform, **options)
        if spec.get("skip_corrupt", True):
            dataset = SkipCorrupt(dataset, fail_fast=bool(spec.get("fail_fast", False)))
    limit = spec.get("limit")
    if limit is not None:
        dataset = Subset(dataset, range(min(int(limit), len(dataset))))
    return dataset
