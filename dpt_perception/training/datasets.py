"""Bridge between the training loop and :mod:`dpt_perception.training.data`.

A dataset spec is the data package's ``build_dataset`` spec plus an optional ``transform``
mapping: the options of ``TrainTransform`` (training split: ``net_size``, ``scale_range``,
``hflip_prob``, ``brightness``, ``contrast``, ``saturation``) or ``EvalTransform`` (evaluation
split: ``net_size``, ``keep_aspect``, ``multiple_of``, ``resize_targets``). ``net_size``,
``mean`` and ``std`` default to the model's (``model.config``), so the network always sees
inputs normalised the way it expects.
"""

from __future__ import annotations

import copy

import torch
from torch.utils.data import DataLoader

_DEFAULT_NET_SIZE = [384, 384]
_DEFAULT_NORM = [0.5, 0.5, 0.5]


def build_split(spec: dict, train: bool, model_options: dict | None = None):
    """A transformed dataset from ``spec`` (``{"type": ..., "transform": {...}, ...}``)."""
    from dpt_perception.training.data import EvalTransform, TrainTransform, build_dataset

    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a dataset spec must be a mapping with a 'type', got {spec!r}")
    spec = copy.deepcopy(spec)
    options = dict(spec.pop("transform", None) or {})
    model_options = model_options or {}
    net = list(model_options.get("net_size") or _DEFAULT_NET_SIZE)
    options.setdefault("mean", tuple(model_options.get("mean") or _DEFAULT_NORM))
    options.setdefault("std", tuple(model_options.get("std") or _DEFAULT_NORM))
    options["mean"], options["std"] = tuple(options["mean"]), tuple(options["std"])
    try:
        if train:
            options.setdefault("net_size", int(max(net)))
            if "scale_range" in options:
                options["scale_range"] = tuple(options["scale_range"])
            transform = TrainTransform(**options)
        else:
            options.setdefault("net_size", tuple(net))
            if isinstance(options["net_size"], list):
                options["net_size"] = tuple(options["net_size"])
            transform = EvalTransform(**options)
    except TypeError as exc:
        kind = "TrainTransform" if train else "EvalTransform"
        raise ValueError(f"bad 'transform' options {sorted(options)} for {kind}: {exc}") from None
    return build_dataset(spec, transform=transform)


def dataset_class_names(dataset) -> tuple[list[str] | None, list | None]:
    """Class names/colours of a (possibly wrapped: Subset, ConcatDataset, SkipCorrupt) dataset."""
    seen = 0
    while dataset is not None and seen < 10:
        names = getattr(dataset, "class_names", None) if not hasattr(dataset, "datasets") else None
        if names:
            return list(names), getattr(dataset, "class_colors", None)
        if hasattr(dataset, "datasets"):
            dataset = dataset.datasets[0]
        else:
            dataset = getattr(dataset, "dataset", None)
        seen += 1
    return None, None


def count_corrupt(dataset) -> int:
    """Corrupt samples skipped so far by the ``SkipCorrupt`` wrappers inside ``dataset``."""
    from dpt_perception.training.data import SkipCorrupt

    if isinstance(dataset, SkipCorrupt):
        return int(dataset.num_corrupt)
    if hasattr(dataset, "datasets"):  # ConcatDataset
        return sum(count_corrupt(d) for d in dataset.datasets)
    inner = getattr(dataset, "dataset", None)  # Subset, SeededDataset
    return count_corrupt(inner) if inner is not None else 0


def collate_fn():
    from dpt_perception.training.data import collate

    return collate


def build_eval_loader(dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn(),
        generator=torch.Generator().manual_seed(0),
    )
