"""Deterministic, resumable, DDP-aware data order with per-sample augmentation seeds.

Each epoch's order is a permutation drawn from a ``torch.Generator`` seeded with
``(seed, epoch)``; the global batch at position ``p`` of the epoch holds permutation entries
``[p*B, (p+1)*B)`` and DDP rank ``r`` of ``W`` takes the ``r``-th of ``W`` equal slices (the
role ``DistributedSampler`` plays, but defined on the *global* batch so 1 process and W
processes see the same samples per optimizer step). Every sample also gets its own seed
derived from ``(seed, epoch, position in the epoch)``; :class:`SeededDataset` seeds the Python,
NumPy and torch RNGs with it before loading, so random augmentation is identical whatever the
number of workers or processes, and a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_SEED_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant (golden ratio) spreading seeds apart


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(num_samples, generator=generator)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return (seed * _SEED_MIX + epoch * 1_000_003 + position) % (2**32)


class ResumableBatchSampler(Sampler[list]):
    """Yields this rank's share of each global batch as ``[(index, sample_seed), ...]``.

    Iterating yields the batches of the *current* epoch from ``position`` on (so a resumed run
    skips what was consumed); the trainer calls :meth:`advance` after each consumed batch and
    :meth:`start_epoch` when an epoch ends. ``state_dict``/``load_state_dict`` save the data
    order exactly (seed, epoch, position).
    """

    def __init__(self, num_samples: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by the {world_size} processes")
        if num_samples < global_batch:
            raise ValueError(
                f"the training set has {num_samples} samples, fewer than one global batch of {global_batch}"
            )
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.global_batch  # incomplete last batch dropped

    def __len__(self) -> int:
        return self.batches_per_epoch - self.position

    def __iter__(self) -> Iterator[list]:
        order = epoch_permutation(self.num_samples, self.seed, self.epoch).tolist()
        for p in range(self.position, self.batches_per_epoch):
            start = p * self.global_batch + self.rank * self.local_batch
            yield [
                (order[i], sample_seed(self.seed, self.epoch, i))
                for i in range(start, start + self.local_batch)
            ]

    def advance(self) -> bool:
        """Mark one batch consumed; returns True when the epoch is exhausted."""
        self.position += 1
        return self.position >= self.batches_per_epoch

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.position = 0

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "num_samples": self.num_samples,
            "global_batch": self.global_batch,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "num_samples", "global_batch"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"cannot resume the data order: checkpoint has {key}={state[key]}, this run has "
                    f"{getattr(self, key)} (an exact resume needs the same dataset, seed and global batch)"
                )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


class SeededDataset(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is loaded with all global RNGs seeded by
    ``seed`` (and restored afterwards, so the main process's RNG streams are untouched)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        py_state = random.getstate()
        np_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            try:
                if hasattr(self.dataset, "set_sample_seed"):
                    self.dataset.set_sample_seed(seed)
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
