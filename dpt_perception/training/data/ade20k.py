"""Reader of the ADE20K scene-parsing benchmark (``ADEChallengeData2016``).

Layout::

    ADEChallengeData2016/
      images/training/ADE_train_00000001.jpg        RGB
      images/validation/ADE_val_00000001.jpg
      annotations/training/ADE_train_00000001.png   8-bit class ids, same stem as the image
      annotations/validation/ADE_val_00000001.png
      objectInfo150.csv                             optional: Idx,Ratio,Train,Val,Name

Annotation value 0 ("other" / unlabelled) becomes ``ignore_index``; classes 1..150 become
0..149. Values above 150 make the sample corrupt. Class names come from ``objectInfo150.csv``
(first synonym of each Name) when it is there. Samples carry labels only (no depth).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from dpt_perception.model.classes import ADE20K_CLASS_NAMES

from .base import SampleDataset, Transform
from .fileio import read_label_png, read_rgb
from .sample import DEFAULT_IGNORE_INDEX, CorruptSampleError, make_sample

ADE_NUM_CLASSES = len(ADE20K_CLASS_NAMES)  # 150
_SPLITS = {"training": "training", "train": "training", "validation": "validation", "val": "validation"}


def read_object_info(path: Path) -> list[str] | None:
    """Class names (index 0 = ADE class 1) from objectInfo150.csv, or None when unusable."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        by_idx = {int(r["Idx"]): r["Name"].split(";")[0].strip() for r in rows}
    except (OSError, KeyError, ValueError):
        return None
    if sorted(by_idx) != list(range(1, ADE_NUM_CLASSES + 1)):
        return None
    return [by_idx[i] for i in range(1, ADE_NUM_CLASSES + 1)]


class ADE20KDataset(SampleDataset):
    """ADE20K images and labels of one split ("training"/"train" or "validation"/"val")."""

    def __init__(
        self,
        root: str | Path,
        split: str = "training",
        transform: Transform | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
    ):
        super().__init__(transform, ignore_index)
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        if 0 <= ignore_index < ADE_NUM_CLASSES:
            raise ValueError(f"ignore_index {ignore_index} collides with ADE20K class ids 0..149")
        self.root = Path(root)
        self.split = _SPLITS[split]
        image_dir = self.root / "images" / self.split
        ann_dir = self.root / "annotations" / self.split
        if not image_dir.is_dir():
            raise FileNotFoundError(
                f"{image_dir} does not exist (expected ADEChallengeData2016/images/{self.split})"
            )
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not images:
            raise FileNotFoundError(f"no images in {image_dir}")
        self.items = [(p, ann_dir / f"{p.stem}.png") for p in images]
        missing = [a for _, a in self.items if not a.exists()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} images have no annotation, e.g. {missing[0]}")
        self.class_names = read_object_info(self.root / "objectInfo150.csv") or [
            f"ade_{i}" for i in range(1, ADE_NUM_CLASSES + 1)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> dict[str, Any]:
        image_path, ann_path = self.items[index]
        image = read_rgb(image_path)
        ann = read_label_png(ann_path)
        if ann.max() > ADE_NUM_CLASSES:
            raise CorruptSampleError(ann_path, f"annotation values must be 0..150, found {int(ann.max())}")
        labels = np.where(ann == 0, self.ignore_index, ann - 1)
        return make_sample(
            image,
            name=image_path.stem,
            labels=labels,
            ignore_index=self.ignore_index,
            num_classes=ADE_NUM_CLASSES,
            source=str(image_path),
        )
