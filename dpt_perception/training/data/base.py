"""Base class of every reader: ``load(i)`` returns a raw sample, ``__getitem__`` applies the transform."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from .sample import DEFAULT_IGNORE_INDEX

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class SampleDataset(Dataset):
    """A map-style dataset of raw samples (see :mod:`.sample`) with an optional transform.

    Subclasses implement ``__len__`` and ``load(index)``. ``class_names`` / ``class_colors``
    describe the label ids when the dataset knows them (``None`` otherwise).
    """

    class_names: list[str] | None = None
    class_colors: list[tuple[int, int, int]] | None = None

    def __init__(self, transform: Transform | None = None, ignore_index: int = DEFAULT_IGNORE_INDEX):
        self.transform = transform
        self.ignore_index = int(ignore_index)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names is not None else None
