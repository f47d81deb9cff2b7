"""Writing point clouds as PLY (binary little-endian or ASCII) with colour and class ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_ply(
    path: str | Path,
    xyz: np.ndarray,
    rgb: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    binary: bool = True,
) -> int:
    """Write the finite points of `xyz` ((..., 3) float) with optional uint8 `rgb` ((..., 3)) and
    integer `labels` ((...)); returns the number of points written."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    columns = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if rgb is not None:
        rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
        columns += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if labels is not None:
        labels = np.asarray(labels).reshape(-1).astype(np.uint16)
        columns += [("label", "u2")]
    points = np.zeros(int(keep.sum()), dtype=np.dtype([(n, "<" + t) for n, t in columns]))
    points["x"], points["y"], points["z"] = xyz[keep].T
    if rgb is not None:
        points["red"], points["green"], points["blue"] = rgb[keep].T
    if labels is not None:
        points["label"] = labels[keep]
    ply_types = {"f4": "float", "u1": "uchar", "u2": "ushort"}
    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment written by dpt_perception (camera optical frame: x right, y down, z forward, metres)",
        f"element vertex {len(points)}",
    ]
    header += [f"property {ply_types[t]} {n}" for n, t in columns]
    header.append("end_header")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            f.write(points.tobytes())
        else:
            for row in points:
                f.write(
                    (
                        " ".join(repr(float(v)) if isinstance(v, np.floating) else str(int(v)) for v in row)
                        + "\n"
                    ).encode("ascii")
                )
    return len(points)


def read_ply(path: str | Path) -> np.ndarray:
    """Read back a PLY written by `write_ply` (structured array with the written columns)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    count = next(int(line.split()[2]) for line in lines if line.startswith("element vertex"))
    types = {"float": "<f4", "uchar": "u1", "ushort": "<u2"}
    dtype = np.dtype(
        [(line.split()[2], types[line.split()[1]]) for line in lines if line.startswith("property")]
    )
    if "binary_little_endian" in lines[1]:
        return np.frombuffer(data[end:], dtype=dtype, count=count)
    rows = [tuple(float(v) for v in line.split()) for line in data[end:].decode("ascii").splitlines()[:count]]
    return np.array(rows, dtype=dtype)
