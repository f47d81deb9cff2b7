"""Reader of KITTI depth ground truth (depth completion / prediction benchmark).

Depth PNGs are 16-bit, ``metres = value / 256``, 0 = no measurement. Three layouts:

``layout="annotated"`` (default): ``root`` is ``data_depth_annotated``, ``raw_root`` the KITTI
raw data (for the RGB images and the calibration)::

    root/{train,val}/<date>_drive_<id>_sync/proj_depth/groundtruth/image_02/<frame>.png
    raw_root/<date>/<date>_drive_<id>_sync/image_02/data/<frame>.png      RGB (same frame)
    raw_root/<date>/calib_cam_to_cam.txt                                  optional: P_rect_02 -> K

  (``<date>`` is the first 10 characters of the drive name, e.g. ``2011_09_26``; cameras
  ``image_02``/``image_03``). The RGB is also looked up next to the depth, under
  ``root/<split>/<drive>/image_02/data/<frame>.png``, for copies that keep them together.

``layout="selection"``: ``root`` is ``depth_selection/val_selection_cropped``::

    root/image/<drive>_image_<frame>_image_02.png
    root/groundtruth_depth/<drive>_groundtruth_depth_<frame>_image_02.png
    root/intrinsics/<drive>_image_<frame>_image_02.txt     optional: 9 numbers, row-major K

``layout="pairs"``: ``pairs_file`` lists one frame per line, ``<rgb> <depth> [<focal>]``
(whitespace separated; paths relative to ``rgb_root`` / ``depth_root``, which default to the
list's folder). A depth of ``None`` marks a frame without ground truth: such lines are
skipped unless ``keep_missing_depth`` (then the sample has no depth). A focal column sets
``K`` with the principal point at the image centre.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .base import SampleDataset, Transform
from .fileio import read_depth_file, read_rgb
from .sample import DEFAULT_IGNORE_INDEX, CorruptSampleError, make_sample

log = logging.getLogger(__name__)
KITTI_DEPTH_SCALE = 256.0
_SPLITS = {"train": "train", "training": "train", "val": "val", "validation": "val"}


def read_kitti_calib_intrinsics(calib_file: Path, camera: str) -> np.ndarray | None:
    """K (3x3) from ``P_rect_0X`` of a KITTI ``calib_cam_to_cam.txt`` (None if absent)."""
    key = f"P_rect_{camera[-2:]}:"
    try:
        for line in calib_file.read_text().splitlines():
            if line.startswith(key):
                values = np.array([float(x) for x in line[len(key) :].split()])
                if values.size == 12:
                    return values.reshape(3, 4)[:, :3].copy()
    except (OSError, ValueError):
        return None
    return None


class KITTIDepthDataset(SampleDataset):
    """KITTI RGB + sparse metric depth (samples have depth only). See the module docstring."""

    def __init__(
        self,
        root: str | Path | None = None,
        layout: str = "annotated",
        split: str = "train",
        raw_root: str | Path | None = None,
        cameras: tuple[str, ...] | list[str] = ("image_02", "image_03"),
        pairs_file: str | Path | None = None,
        rgb_root: str | Path | None = None,
        depth_root: str | Path | None = None,
        keep_missing_depth: bool = False,
        allow_missing_rgb: bool = False,
        transform: Transform | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
    ):
        super().__init__(transform, ignore_index)
        self.layout = layout
        # each item: (name, rgb path, depth path or None, K or None)
        self.items: list[tuple[str, Path, Path | None, np.ndarray | None]] = []
        if layout == "annotated":
            if root is None:
                raise ValueError("layout 'annotated' needs root (the data_depth_annotated folder)")
            if split not in _SPLITS:
                raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
            self._index_annotated(Path(root), _SPLITS[split], raw_root, tuple(cameras), allow_missing_rgb)
        elif layout == "selection":
            if root is None:
                raise ValueError("layout 'selection' needs root (depth_selection/val_selection_cropped)")
            self._index_selection(Path(root), allow_missing_rgb)
        elif layout == "pairs":
            if pairs_file is None:
                raise ValueError("layout 'pairs' needs pairs_file")
            self._index_pairs(Path(pairs_file), rgb_root, depth_root, keep_missing_depth, allow_missing_rgb)
        else:
            raise ValueError(f"layout must be 'annotated', 'selection' or 'pairs', got {layout!r}")
        if not self.items:
            raise FileNotFoundError(
                f"no KITTI frames found (layout {layout!r}, root {root}, pairs {pairs_file})"
            )

    def _missing_rgb(self, rgb: Path, allow: bool) -> None:
        if not allow:
            raise FileNotFoundError(
                f"RGB image {rgb} for a depth frame is missing (set allow_missing_rgb to skip)"
            )
        log.warning("KITTI: skipping frame without RGB image %s", rgb)
        self.num_missing_rgb += 1

    def _index_annotated(
        self, root: Path, split: str, raw_root: Any, cameras: tuple[str, ...], allow: bool
    ) -> None:
        self.num_missing_rgb = 0
        split_dir = root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir} does not exist (expected data_depth_annotated/{split})")
        calib_cache: dict[tuple[str, str], np.ndarray | None] = {}
        for drive_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            drive, date = drive_dir.name, drive_dir.name[:10]
            for cam in cameras:
                gt_dir = drive_dir / "proj_depth" / "groundtruth" / cam
                if not gt_dir.is_dir():
                    continue
                if (date, cam) not in calib_cache:
                    calib_cache[(date, cam)] = (
                        read_kitti_calib_intrinsics(Path(raw_root) / date / "calib_cam_to_cam.txt", cam)
                        if raw_root
                        else None
                    )
                for depth in sorted(gt_dir.glob("*.png")):
                    candidates = [drive_dir / cam / "data" / depth.name]
                    if raw_root is not None:
                        candidates.insert(0, Path(raw_root) / date / drive / cam / "data" / depth.name)
                    rgb = next((c for c in candidates if c.exists()), None)
                    if rgb is None:
                        self._missing_rgb(candidates[0], allow)
                        continue
                    self.items.append((f"{drive}_{cam}_{depth.stem}", rgb, depth, calib_cache[(date, cam)]))

    def _index_selection(self, root: Path, allow: bool) -> None:
        self.num_missing_rgb = 0
        gt_dir = root / "groundtruth_depth"
        if not gt_dir.is_dir():
            raise FileNotFoundError(
                f"{gt_dir} does not exist (expected val_selection_cropped/groundtruth_depth)"
            )
        for depth in sorted(gt_dir.glob("*.png")):
            if "_groundtruth_depth_" not in depth.name:
                raise ValueError(
                    f"unexpected file name {depth.name} "
                    "(expected <drive>_groundtruth_depth_<frame>_<cam>.png)"
                )
            image_name = depth.name.replace("_groundtruth_depth_", "_image_", 1)
            rgb = root / "image" / image_name
            if not rgb.exists():
                self._missing_rgb(rgb, allow)
                continue
            K = None
            intr = root / "intrinsics" / (Path(image_name).stem + ".txt")
            if intr.exists():
                try:
                    K = np.array([float(x) for x in intr.read_text().split()]).reshape(3, 3)
                except ValueError as exc:
                    raise ValueError(f"{intr}: expected 9 numbers (row-major K): {exc}") from exc
            self.items.append((Path(image_name).stem, rgb, depth, K))

    def _index_pairs(
        self, pairs_file: Path, rgb_root: Any, depth_root: Any, keep_missing: bool, allow: bool
    ) -> None:
        self.num_missing_rgb = 0
        rgb_base = Path(rgb_root) if rgb_root is not None else pairs_file.parent
        depth_base = Path(depth_root) if depth_root is not None else pairs_file.parent
        for lineno, line in enumerate(pairs_file.read_text().splitlines(), 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) not in (2, 3):
                raise ValueError(f"{pairs_file}:{lineno}: expected '<rgb> <depth> [<focal>]', got {line!r}")
            rgb = rgb_base / parts[0]
            depth = None if parts[1] == "None" else depth_base / parts[1]
            if depth is None and not keep_missing:
                continue
            focal = float(parts[2]) if len(parts) == 3 else None
            if not rgb.exists():
                self._missing_rgb(rgb, allow)
                continue
            K = np.array([[focal, 0.0, np.nan], [0.0, focal, np.nan], [0.0, 0.0, 1.0]]) if focal else None
            name = f"{Path(parts[0]).parent.as_posix().replace('/', '_')}_{Path(parts[0]).stem}".strip("_")
            self.items.append((name, rgb, depth, K))

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> dict[str, Any]:
        name, rgb_path, depth_path, K = self.items[index]
        image = read_rgb(rgb_path)
        depth = read_depth_file(depth_path, KITTI_DEPTH_SCALE) if depth_path is not None else None
        if depth is not None and depth.shape != image.shape[:2]:
            raise CorruptSampleError(
                depth_path, f"depth is {depth.shape} but the RGB {rgb_path.name} is {image.shape[:2]}"
            )
        if K is not None and np.isnan(K).any():
            # focal-only pairs: principal point at the image centre
            K = K.copy()
            K[0, 2] = (image.shape[1] - 1) / 2.0
            K[1, 2] = (image.shape[0] - 1) / 2.0
        return make_sample(
            image, name=name, depth=depth, K=K, ignore_index=self.ignore_index, source=str(rgb_path)
        )
