"""Reading (and writing) the image, depth and label files the readers use.

Every reader goes through these functions so a broken file always ends as a
:class:`CorruptSampleError` naming the file and what was wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from dpt_perception.inference.image_decoding import ImageDecodeError, decode_image

from .sample import CorruptSampleError


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as (H,W,3) uint8 RGB (grey images are replicated, alpha dropped, 16-bit scaled)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = "file does not exist" if not path.exists() else f"cannot read: {exc.strerror or exc}"
        raise CorruptSampleError(path, reason) from None
    try:  # size-checked first; a truncated JPEG is refused (libjpeg would fill it grey)
        img = decode_image(data, cv2.IMREAD_UNCHANGED)
    except ImageDecodeError as exc:
        raise CorruptSampleError(path, f"not a decodable image: {exc}") from None
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise CorruptSampleError(path, f"unsupported image dtype {img.dtype} (expected 8- or 16-bit)")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise CorruptSampleError(path, f"image has {img.shape[2]} channels (expected 1, 3 or 4)")


def read_png16(path: str | Path) -> np.ndarray:
    """A single-channel 16-bit PNG as uint16, refusing 8-bit or colour files (a wrong depth encoding)."""
    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        reason = "file does not exist" if not path.exists() else "not a decodable image"
        raise CorruptSampleError(path, reason)
    if img.ndim != 2:
        raise CorruptSampleError(path, f"depth PNG must be single-channel, got shape {img.shape}")
    if img.dtype != np.uint16:
        raise CorruptSampleError(path, f"depth PNG must be 16-bit, got {img.dtype}")
    return img


def read_depth_file(path: str | Path, png_scale: float) -> np.ndarray:
    """Depth in metres (float32) from ``.png`` (uint16 / ``png_scale``), ``.npy`` (metres) or ``.pfm``.

    Folder-format PNGs store millimetres (``png_scale`` 1000), KITTI PNGs store metres*256.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        return read_png16(path).astype(np.float32) / np.float32(png_scale)
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorruptSampleError(path, f"unreadable .npy: {exc}") from exc
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
            raise CorruptSampleError(
                path, f"depth .npy must be a 2-D float array (metres), got {arr.shape} {arr.dtype}"
            )
        return arr.astype(np.float32)
    if suffix == ".pfm":
        arr = read_pfm(path)
        if arr.ndim != 2:
            raise CorruptSampleError(path, f"depth .pfm must be single-channel ('Pf'), got shape {arr.shape}")
        return arr
    raise CorruptSampleError(path, f"unknown depth file type {suffix!r} (expected .png, .npy or .pfm)")


def read_label_png(path: str | Path) -> np.ndarray:
    """A label PNG (8- or 16-bit class ids) as int64 (H,W); colour PNGs are refused unless grey."""
    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        reason = "file does not exist" if not path.exists() else "not a decodable image"
        raise CorruptSampleError(path, reason)
    if img.ndim == 3:
        # A grey image saved as RGB carries ids in every channel; a real colour map needs the palette.
        if not (np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 0], img[:, :, 2])):
            raise CorruptSampleError(path, "label PNG must hold class ids (single channel), not colours")
        img = img[:, :, 0]
    if img.dtype not in (np.uint8, np.uint16):
        raise CorruptSampleError(path, f"label PNG must be 8- or 16-bit, got {img.dtype}")
    return img.astype(np.int64)


_PFM_DIMS = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")


def read_pfm(path: str | Path) -> np.ndarray:
    """A PFM file as float32, rows top-to-bottom ((H,W) for ``Pf``, (H,W,3) for ``PF``).

    PFM: header lines ``PF``/``Pf``, ``width height``, ``scale`` (negative = little-endian),
    then raw float32 rows stored bottom-to-top.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            kind = f.readline().strip()
            dims = f.readline()
            scale_line = f.readline()
            payload = f.read()
    except OSError as exc:
        raise CorruptSampleError(path, f"cannot read: {exc}") from exc
    if kind not in (b"PF", b"Pf"):
        raise CorruptSampleError(path, f"not a PFM file (header {kind[:10]!r})")
    m = _PFM_DIMS.match(dims)
    if not m:
        raise CorruptSampleError(path, f"bad PFM size line {dims[:40]!r}")
    width, height = int(m.group(1)), int(m.group(2))
    try:
        scale = float(scale_line)
    except ValueError as exc:
        raise CorruptSampleError(path, f"bad PFM scale line {scale_line[:40]!r}") from exc
    channels = 3 if kind == b"PF" else 1
    count = width * height * channels
    dtype = "<f4" if scale < 0 else ">f4"
    if len(payload) < 4 * count:
        raise CorruptSampleError(path, f"truncated PFM: {len(payload)} bytes for {width}x{height}x{channels}")
    arr = np.frombuffer(payload, dtype=dtype, count=count).astype(np.float32)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.ascontiguousarray(arr.reshape(shape)[::-1])


def write_pfm(path: str | Path, array: np.ndarray) -> None:
    """Write a (H,W) or (H,W,3) float array as little-endian PFM."""
    array = np.asarray(array, dtype="<f4")
    kind = b"Pf" if array.ndim == 2 else b"PF"
    with open(path, "wb") as f:
        f.write(kind + b"\n" + f"{array.shape[1]} {array.shape[0]}\n".encode() + b"-1.0\n")
        f.write(np.ascontiguousarray(array[::-1]).tobytes())


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an (H,W,3) uint8 RGB image (PNG or JPEG by suffix)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(np.asarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")


def write_depth_png_mm(path: str | Path, depth_m: np.ndarray) -> None:
    """Write depth in metres as a 16-bit PNG of millimetres (invalid/out of range -> 0)."""
    depth_m = np.asarray(depth_m, dtype=np.float64)
    ok = np.isfinite(depth_m) & (depth_m > 0)
    mm = np.where(ok, np.round(depth_m * 1000.0), 0.0)
    mm[mm > 65535] = 0  # beyond 65.535 m cannot be stored: mark invalid rather than clip to a wrong value
    if not cv2.imwrite(str(path), mm.astype(np.uint16)):
        raise OSError(f"could not write depth PNG {path}")
