"""Reader of the project's documented folder format.

Layout (``<name>`` is any file stem; depth and labels are optional per sample)::

    root/
      rgb/<name>.png | .jpg | .jpeg        RGB image (8-bit; 16-bit is scaled to 8-bit)
      depth/<name>.png                     16-bit single channel, millimetres, 0 = invalid
      depth/<name>.npy                     float (H,W) metres; 0 / NaN / inf = invalid
      depth/<name>.pfm                     single-channel PFM, metres; 0 / NaN / inf = invalid
      labels/<name>.png                    8- or 16-bit single channel class ids
      classes.json                         optional: {"names": [...], "colors": [[r,g,b], ...],
                                           "ignore_index": 255}
      camera.json                          optional intrinsics for every frame:
                                           {"K": [[fx,0,cx],[0,fy,cy],[0,0,1]], "width": W, "height": H}
      camera/<name>.json                   optional per-frame intrinsics (same keys, overrides camera.json)

A frame needs its ``rgb`` file; at most one depth file per name. When the camera file gives
``width``/``height`` that differ from the image, ``K`` is scaled to the image size. With
``classes.json`` present, label ids outside ``0..len(names)-1`` (other than the ignore index)
make the sample corrupt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .base import SampleDataset, Transform
from .fileio import read_depth_file, read_label_png, read_rgb
from .sample import DEFAULT_IGNORE_INDEX, CorruptSampleError, make_sample, scale_intrinsics

RGB_SUFFIXES = (".png", ".jpg", ".jpeg")
DEPTH_SUFFIXES = (".png", ".npy", ".pfm")


def _stems(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Map stem -> file for the files in ``folder`` with one of ``suffixes`` (error on duplicates)."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in suffixes:
            if p.stem in found:
                raise ValueError(
                    f"two files for frame {p.stem!r} in {folder}: {found[p.stem].name} and {p.name}"
                )
            found[p.stem] = p
    return found


def load_camera_json(path: Path, image_hw: tuple[int, int] | None = None) -> np.ndarray:
    """K from a camera json file, scaled to ``image_hw`` when the file names another size."""
    try:
        data = json.loads(path.read_text())
        K = np.asarray(data["K"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptSampleError(path, f"camera file needs a 3x3 'K': {exc}") from exc
    if K.shape != (3, 3):
        raise CorruptSampleError(path, f"'K' must be 3x3, got {K.shape}")
    if image_hw is not None and "width" in data and "height" in data:
        h, w = image_hw
        if (int(data["width"]), int(data["height"])) != (w, h):
            K = scale_intrinsics(K, w / float(data["width"]), h / float(data["height"]))
    return K


class FolderDataset(SampleDataset):
    """The folder format above.

    Args:
        root: dataset folder.
        names: frame names to use (default: every rgb file, sorted); or ``names_file``, a text
            file with one name per line (a split list).
        depth_png_scale: PNG depth units per metre (1000 = millimetres).
        require_depth / require_labels: keep only frames that have depth / labels.
        use_depth / use_labels: set False to ignore that modality even where files exist.
    """

    def __init__(
        self,
        root: str | Path,
        names: list[str] | None = None,
        names_file: str | Path | None = None,
        depth_png_scale: float = 1000.0,
        require_depth: bool = False,
        require_labels: bool = False,
        use_depth: bool = True,
        use_labels: bool = True,
        transform: Transform | None = None,
        ignore_index: int | None = None,
    ):
        self.root = Path(root)
        rgb = _stems(self.root / "rgb", RGB_SUFFIXES)
        if not rgb:
            raise FileNotFoundError(f"no images in {self.root / 'rgb'} (expected rgb/<name>.png|jpg)")
        classes_path = self.root / "classes.json"
        classes: dict[str, Any] = {}
        if classes_path.exists():
            classes = json.loads(classes_path.read_text())
            if not isinstance(classes.get("names"), list):
                raise ValueError(f"{classes_path} must hold a 'names' list")
            self.class_names = [str(n) for n in classes["names"]]
            if classes.get("colors") is not None:
                self.class_colors = [tuple(int(c) for c in col) for col in classes["colors"]]
        if ignore_index is None:
            ignore_index = int(classes.get("ignore_index", DEFAULT_IGNORE_INDEX))
        super().__init__(transform, ignore_index)
        self.depth_png_scale = float(depth_png_scale)
        depth = _stems(self.root / "depth", DEPTH_SUFFIXES) if use_depth else {}
        labels = _stems(self.root / "labels", (".png",)) if use_labels else {}
        cams = _stems(self.root / "camera", (".json",))
        self.global_camera = self.root / "camera.json" if (self.root / "camera.json").exists() else None

        if names_file is not None:
            names = [ln.strip() for ln in Path(names_file).read_text().splitlines() if ln.strip()]
        if names is None:
            names = sorted(rgb)
        missing = [n for n in names if n not in rgb]
        if missing:
            raise FileNotFoundError(f"{len(missing)} listed frames have no rgb file, e.g. {missing[:3]}")
        self.frames: list[dict[str, Any]] = []
        for n in names:
            if require_depth and n not in depth:
                continue
            if require_labels and n not in labels:
                continue
            self.frames.append(
                {
                    "name": n,
                    "rgb": rgb[n],
                    "depth": depth.get(n),
                    "labels": labels.get(n),
                    "camera": cams.get(n),
                }
            )

    def __len__(self) -> int:
        return len(self.frames)

    def load(self, index: int) -> dict[str, Any]:
        f = self.frames[index]
        image = read_rgb(f["rgb"])
        depth = read_depth_file(f["depth"], self.depth_png_scale) if f["depth"] is not None else None
        labels = read_label_png(f["labels"]) if f["labels"] is not None else None
        cam = f["camera"] or self.global_camera
        K = load_camera_json(cam, image.shape[:2]) if cam is not None else None
        return make_sample(
            image,
            name=f["name"],
            depth=depth,
            labels=labels,
            K=K,
            ignore_index=self.ignore_index,
            num_classes=self.num_classes,
            source=str(f["rgb"]),
        )
