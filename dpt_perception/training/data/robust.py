"""Skipping corrupt samples without hiding them."""

from __future__ import annotations

import logging
import multiprocessing
from typing import Any

from torch.utils.data import Dataset

from .sample import CorruptSampleError

log = logging.getLogger(__name__)


class SkipCorrupt(Dataset):
    """Wrap a dataset so a :class:`CorruptSampleError` is logged, counted and replaced by the next
    readable sample (index + 1, + 2, ... wrapping around), keeping batch sizes constant.

    Nothing broken is ever returned: the replacement is a different, fully read sample. With
    ``fail_fast`` the error is re-raised instead. After ``max_consecutive`` failures in a row the
    dataset is considered unusable and a RuntimeError is raised. Other exceptions (bugs)
    propagate unchanged.

    Counters: ``num_corrupt`` counts failures over all DataLoader workers (shared memory);
    ``corrupt`` maps index -> reason for failures seen in *this* process, and indices known to be
    bad are skipped without re-reading.
    """

    def __init__(self, dataset: Any, fail_fast: bool = False, max_consecutive: int = 50):
        self.dataset = dataset
        self.fail_fast = fail_fast
        self.max_consecutive = int(max_consecutive)
        self._count = multiprocessing.Value("q", 0)
        self.corrupt: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def num_corrupt(self) -> int:
        return int(self._count.value)

    def __getattr__(self, name: str) -> Any:
        # class_names, num_classes, ... of the wrapped dataset
        if name in ("dataset", "_count", "corrupt"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        n = len(self.dataset)
        if n == 0:
            raise IndexError("empty dataset")
        failures = 0
        i = index % n
        while True:
            if i not in self.corrupt:
                try:
                    return self.dataset[i]
                except CorruptSampleError as exc:
                    with self._count.get_lock():
                        self._count.value += 1
                    self.corrupt[i] = str(exc)
                    if self.fail_fast:
                        raise
                    log.warning("skipping corrupt sample %d: %s", i, exc)
            failures += 1
            if failures >= min(self.max_consecutive, n):
                raise RuntimeError(
                    f"{failures} consecutive corrupt samples from index {index}; last: {self.corrupt.get(i)}"
                )
            i = (i + 1) % n
