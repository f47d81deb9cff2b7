"""Reader of NYU Depth v2 labelled data, ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5).

The file is read with h5py. MATLAB stores arrays column-major, so h5py sees every array with
its axes reversed relative to MATLAB's (H, W, ...) layout:

============ ======================= ==========================================================
dataset      h5py shape              content
============ ======================= ==========================================================
images       (N, 3, W, H) uint8      RGB; sample i is ``images[i].transpose(2, 1, 0)`` -> (H,W,3)
depths       (N, W, H) float32       in-painted depth, metres
rawDepths    (N, W, H) float32       raw Kinect depth, metres, 0 = missing (``raw_depth=True``)
labels       (N, W, H) uint16        0 = unlabelled, 1..894 = class ids
names        (1, 894) object refs    optional: class names (MATLAB char arrays = uint16)
============ ======================= ==========================================================

Labels become 0-based with 0 -> ``ignore_index``. With ``class_mapping`` (the 894 -> 40 map of
Gupta et al., an int array indexed by the 1-based class id: length 894 as ``map[id-1]``, or
length 895 as ``map[id]``; its values are 1-based target ids with 0 = unlabelled) labels become
``map(id) - 1`` and ``num_classes`` is ``max(map)``. The standard split is a list of indices
(``indices``, 0-based). The intrinsics of the NYU Kinect RGB camera (from the dataset's toolbox)
go into ``K``; the labelled 640x480 frames are not cropped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import SampleDataset, Transform
from .sample import DEFAULT_IGNORE_INDEX, CorruptSampleError, make_sample

# RGB intrinsics of the NYU Depth v2 Kinect (toolbox camera_params.m), pixels, 640x480.
NYU_K = np.array([[518.8579, 0.0, 325.5824], [0.0, 519.4696, 253.7362], [0.0, 0.0, 1.0]])


def _load_mapping(class_mapping: Any) -> np.ndarray | None:
    if class_mapping is None:
        return None
    if isinstance(class_mapping, (str, os.PathLike)):
        p = Path(class_mapping)
        mapping = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, dtype=np.int64)
    else:
        mapping = np.asarray(class_mapping)
    mapping = np.asarray(mapping, dtype=np.int64).ravel()
    if len(mapping) == 894:
        mapping = np.concatenate([[0], mapping])  # index by the 1-based class id
    if len(mapping) != 895:
        raise ValueError(
            f"class_mapping must have 894 (map[id-1]) or 895 (map[id]) entries, got {len(mapping)}"
        )
    if mapping[0] != 0:
        raise ValueError("class_mapping must map the unlabelled id 0 to 0")
    if (mapping < 0).any():
        raise ValueError("class_mapping values must be >= 0 (0 = unlabelled, 1.. = target classes)")
    return mapping


class NYUDepthV2Dataset(SampleDataset):
    """Samples of ``nyu_depth_v2_labeled.mat``: RGB, depth (metres), labels, ``K``.

    Args:
        path: the .mat file.
        indices: 0-based frame indices to use (default: all).
        raw_depth: use ``rawDepths`` (with holes) instead of the in-painted ``depths``.
        use_labels: False drops the labels (depth-only training).
        class_mapping: optional 894 -> N mapping (array, .npy or whitespace text file).
        class_names: names of the mapped classes (default: the file's ``names`` when unmapped).
    """

    def __init__(
        self,
        path: str | Path,
        indices: list[int] | None = None,
        raw_depth: bool = False,
        use_labels: bool = True,
        class_mapping: Any = None,
        class_names: list[str] | None = None,
        transform: Transform | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
    ):
        super().__init__(transform, ignore_index)
        import h5py

        self.path = Path(path)
        self.depth_key = "rawDepths" if raw_depth else "depths"
        self.use_labels = use_labels
        self.mapping = _load_mapping(class_mapping)
        self._file: Any = None
        self._pid: int | None = None
        try:
            with h5py.File(self.path, "r") as f:
                for key in ("images", self.depth_key) + (("labels",) if use_labels else ()):
                    if key not in f:
                        raise ValueError(f"{self.path} has no '{key}' dataset (keys: {sorted(f.keys())})")
                images = f["images"]
                if images.ndim != 4 or images.shape[1] != 3:
                    raise ValueError(f"{self.path}: 'images' must be (N,3,W,H), got {images.shape}")
                n, _, w, h = images.shape
                for key in (self.depth_key,) + (("labels",) if use_labels else ()):
                    if f[key].shape != (n, w, h):
                        raise ValueError(
                            f"{self.path}: '{key}' is {f[key].shape}, expected {(n, w, h)} like images"
                        )
                file_names = self._read_names(f) if "names" in f else None
        except OSError as exc:
            raise OSError(f"cannot open {self.path} as HDF5 (NYU labelled .mat v7.3): {exc}") from exc
        self.size_hw = (h, w)
        self.indices = list(range(n)) if indices is None else [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < n]
        if bad:
            raise IndexError(f"indices out of range 0..{n - 1}: {bad[:5]}")
        if self.mapping is not None:
            self.class_names = (
                list(class_names) if class_names else [f"class_{i}" for i in range(int(self.mapping.max()))]
            )
        elif use_labels:
            self.class_names = list(class_names) if class_names else file_names
        if (
            self.class_names is not None
            and self.mapping is not None
            and len(self.class_names) != int(self.mapping.max())
        ):
            raise ValueError(
                f"{len(self.class_names)} class_names for a mapping to {int(self.mapping.max())} classes"
            )
        n_classes = 894 if self.mapping is None else int(self.mapping.max())
        if use_labels and 0 <= self.ignore_index < n_classes:
            raise ValueError(
                f"ignore_index {self.ignore_index} is a valid class id for {n_classes} classes: use a "
                f"class_mapping (e.g. 894 -> 40) or an ignore_index outside 0..{n_classes - 1} (e.g. -1)"
            )

    @staticmethod
    def _read_names(f: Any) -> list[str] | None:
        """Class names from the 'names' cell array (object references to uint16 char arrays)."""
        try:
            refs = f["names"][()].ravel()
            return ["".join(chr(c) for c in np.asarray(f[r]).ravel()) for r in refs]
        except (KeyError, TypeError, ValueError):
            return None

    def _h5(self) -> Any:
        # One handle per process: DataLoader workers must not share the parent's HDF5 handle.
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = None
        return state

    def load(self, index: int) -> dict[str, Any]:
        i = self.indices[index]
        src = f"{self.path}[{i}]"
        f = self._h5()
        try:
            image = np.ascontiguousarray(f["images"][i].transpose(2, 1, 0))
            depth = np.ascontiguousarray(f[self.depth_key][i].T).astype(np.float32)
            raw_labels = np.ascontiguousarray(f["labels"][i].T).astype(np.int64) if self.use_labels else None
        except (OSError, KeyError, ValueError) as exc:
            raise CorruptSampleError(src, f"HDF5 read failed: {exc}") from exc
        labels = None
        if raw_labels is not None:
            top = 894 if self.mapping is None else len(self.mapping) - 1
            if raw_labels.min() < 0 or raw_labels.max() > top:
                raise CorruptSampleError(
                    src, f"label ids must be 0..{top}, got {raw_labels.min()}..{raw_labels.max()}"
                )
            ids = raw_labels if self.mapping is None else self.mapping[raw_labels]
            labels = np.where(ids == 0, self.ignore_index, ids - 1)
        return make_sample(
            image,
            name=f"nyu_{i:04d}",
            depth=depth,
            labels=labels,
            K=NYU_K if self.size_hw == (480, 640) else None,
            ignore_index=self.ignore_index,
            num_classes=self.num_classes,
            source=src,
        )
