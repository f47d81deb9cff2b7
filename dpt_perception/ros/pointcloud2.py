"""Organised sensor_msgs/PointCloud2 <-> numpy, without sensor_msgs_py.

The cloud the node publishes follows depth_image_proc: organised (height x width of the depth
image), `is_dense = False`, invalid points as NaN, x/y/z float32 in the camera optical frame,
`rgb` as a float32 whose bits are 0x00RRGGBB, plus a `label` (uint16 class id) field.
"""

from __future__ import annotations

import array
import sys

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

_HOST_IS_BIGENDIAN = sys.byteorder == "big"

# PointField datatype codes <-> numpy scalar types.
_DATATYPE_TO_NUMPY = {
    PointField.INT8: "i1",
    PointField.UINT8: "u1",
    PointField.INT16: "i2",
    PointField.UINT16: "u2",
    PointField.INT32: "i4",
    PointField.UINT32: "u4",
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
}
_NUMPY_TO_DATATYPE = {np.dtype(v): k for k, v in _DATATYPE_TO_NUMPY.items()}


class PointCloudConversionError(ValueError):
    """A cloud whose fields, sizes or payload do not match what was asked for."""


def make_cloud(
    xyz: np.ndarray,
    header=None,
    rgb: np.ndarray | None = None,
    label: np.ndarray | None = None,
) -> PointCloud2:
    """An organised PointCloud2 from (H, W, 3) float32 points and optional per-point fields.

    rgb: (H, W) float32 packed colour (see `inference.geometry.pack_rgb_float`).
    label: (H, W) integer class ids (stored as uint16).
    """
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise PointCloudConversionError(f"xyz must have shape (H, W, 3), got {xyz.shape}")
    height, width = xyz.shape[:2]
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if rgb is not None:
        fields.append(("rgb", "f4"))
    if label is not None:
        fields.append(("label", "u2"))
    dtype = np.dtype(fields)
    # Pad each point to a multiple of 4 bytes so float fields stay aligned across points.
    itemsize = -(-dtype.itemsize // 4) * 4
    dtype = np.dtype(
        {
            "names": dtype.names,
            "formats": [dtype.fields[n][0] for n in dtype.names],
            "offsets": [dtype.fields[n][1] for n in dtype.names],
            "itemsize": itemsize,
        }
    )
    points = np.zeros((height, width), dtype=dtype)
    points["x"], points["y"], points["z"] = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    for name, values in (("rgb", rgb), ("label", label)):
        if values is None:
            continue
        if values.shape != (height, width):
            raise PointCloudConversionError(f"{name} must have shape {(height, width)}, got {values.shape}")
        points[name] = values
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = [
        PointField(
            name=name,
            offset=int(dtype.fields[name][1]),
            datatype=_NUMPY_TO_DATATYPE[dtype.fields[name][0]],
            count=1,
        )
        for name in dtype.names
    ]
    msg.is_bigendian = _HOST_IS_BIGENDIAN
    msg.point_step = int(itemsize)
    msg.row_step = int(itemsize * width)
    msg.is_dense = False
    msg.data = array.array("B", points.tobytes())
    return msg


def cloud_to_arrays(msg: PointCloud2) -> dict[str, np.ndarray]:
    """Every count-1 field of a cloud as an (H, W) array (H = 1 for unorganised clouds)."""
    byte_order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in msg.fields:
        if field.datatype not in _DATATYPE_TO_NUMPY:
            raise PointCloudConversionError(f"field {field.name!r} has unknown datatype {field.datatype}")
        if field.count != 1:
            continue
        names.append(field.name)
        formats.append(byte_order + _DATATYPE_TO_NUMPY[field.datatype])
        offsets.append(field.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    height, width = int(msg.height), int(msg.width)
    if msg.row_step < width * msg.point_step:
        raise PointCloudConversionError(
            f"row_step {msg.row_step} < width*point_step = {width}*{msg.point_step}"
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size < msg.row_step * height:
        raise PointCloudConversionError(
            f"data holds {buffer.size} bytes, expected row_step*height = {msg.row_step * height}"
        )
    points = np.ndarray(
        (height, width), dtype=dtype, buffer=buffer.data, strides=(msg.row_step, msg.point_step)
    )
    return {name: points[name].astype(points[name].dtype.newbyteorder("=")) for name in names}
