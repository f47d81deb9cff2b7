"""Build the node's output messages from one frame's results (no publishing, no state)."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from std_msgs.msg import ColorRGBA

from dpt_perception.inference.colorize import colorize_labels
from dpt_perception.inference.geometry import (
    PointCloudProjector,
    pack_rgb_float,
    roi_binning_matrices,
    scale_camera_info_matrices,
)
from dpt_perception.msg import ClassInfo, ClassTable
from dpt_perception.ros.image_conversion import ImageConversionError, array_to_image, output_image_to_array
from dpt_perception.ros.pointcloud2 import make_cloud

NO_IGNORE_ID = 65535


def scaled_camera_info(info: CameraInfo, header, shape: tuple[int, int]) -> CameraInfo:
    """`info` for an image of `shape` (H, W), with the header of the source image.

    The camera's image is the info's region of interest (all zeros: the whole calibrated image)
    divided by its binning (0 = 1); K and P are reduced to it as image_geometry does, then scaled
    from its size to `shape`. A CameraInfo without a size is taken to describe `shape`. The result
    has no ROI and no binning. Raises ValueError for an ROI outside the calibrated image, and for an
    ROI with do_rectify (its rectified ROI depends on the distortion and is not computed here)."""
    height, width = shape
    full_h, full_w = info.height or height, info.width or width
    roi = info.roi
    bx, by = max(1, int(info.binning_x)), max(1, int(info.binning_y))
    x0, y0, roi_w, roi_h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if (x0, y0, roi_w, roi_h) == (0, 0, 0, 0):
        roi_w, roi_h = full_w, full_h
    elif roi_w <= 0 or roi_h <= 0 or x0 + roi_w > full_w or y0 + roi_h > full_h:
        raise ValueError(
            f"CameraInfo ROI (x_offset {x0}, y_offset {y0}, {roi_w}x{roi_h}) is not inside the "
            f"calibrated {full_w}x{full_h} image"
        )
    elif roi.do_rectify and (x0, y0, roi_w, roi_h) != (0, 0, full_w, full_h):
        raise ValueError(
            f"CameraInfo ROI ({x0}, {y0}, {roi_w}x{roi_h}) with do_rectify: its rectified ROI depends "
            "on the distortion model and is not computed here; send the full image or do_rectify false"
        )
    if roi_w // bx == 0 or roi_h // by == 0:
        raise ValueError(f"CameraInfo binning {bx}x{by} leaves no pixels of its {roi_w}x{roi_h} image")
    k, p = roi_binning_matrices(np.asarray(info.k), np.asarray(info.p), (x0, y0), (bx, by))
    k, p = scale_camera_info_matrices(k, p, (roi_h // by, roi_w // bx), shape)
    out = CameraInfo(
        header=header,
        height=int(height),
        width=int(width),
        distortion_model=info.distortion_model,
        binning_x=0,
        binning_y=0,
        roi=RegionOfInterest(),
    )
    out.d = list(info.d)
    out.k = [float(v) for v in k]
    out.r = list(info.r)
    out.p = [float(v) for v in p]
    return out


def _usable(fx: float, fy: float, cx: float, cy: float) -> bool:
    return bool(np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0)


def projection_matrix(info: CameraInfo) -> np.ndarray:
    """P of a CameraInfo, or [K | 0] when the driver left P empty (zeros). Raises ValueError when
    neither has finite, positive focal lengths and a finite principal point."""
    p = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
    if _usable(p[0, 0], p[1, 1], p[0, 2], p[1, 2]):
        return p
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if not _usable(k[0, 0], k[1, 1], k[0, 2], k[1, 2]):
        raise ValueError(
            "CameraInfo has no usable P or K (focal lengths must be finite and > 0, the principal point "
            f"finite; got P fx={p[0, 0]}, fy={p[1, 1]}, K fx={k[0, 0]}, fy={k[1, 1]}): "
            "is the camera calibrated?"
        )
    return np.hstack([k, np.zeros((3, 1))])


def metric_depth_image(depth_m: np.ndarray, header, max_depth: float) -> Image:
    """32FC1 metres (REP 118): invalid stays NaN, beyond max_depth is +Inf (REP 117 'too far')."""
    depth = np.asarray(depth_m, dtype=np.float32)
    if max_depth > 0:
        depth = depth.copy()
        with np.errstate(invalid="ignore"):
            depth[depth > max_depth] = np.inf
    return array_to_image(depth, "32FC1", header)


def labels_image(labels: np.ndarray, header) -> Image:
    """mono8 for <= 256 classes (uint8 ids), 16UC1 beyond."""
    if labels.dtype == np.uint8:
        return array_to_image(labels, "mono8", header)
    return array_to_image(labels.astype(np.uint16, copy=False), "16UC1", header)


def labels_color_image(
    labels: np.ndarray, palette: np.ndarray, rgb: np.ndarray, blend: float, header
) -> Image:
    """rgb8 class colours, optionally blended over the camera image (blend = image weight)."""
    if blend > 0:
        coloured = colorize_labels(labels, palette, image=np.ascontiguousarray(rgb), alpha=1.0 - blend)
    else:
        coloured = colorize_labels(labels, palette)
    return array_to_image(coloured, "rgb8", header)


def point_cloud(
    projector: PointCloudProjector,
    depth_m: np.ndarray,
    projection: np.ndarray,
    colour: np.ndarray,
    labels: np.ndarray | None,
    header,
):
    """Organised cloud (depth_image_proc semantics): x, y, z, rgb (+ label) in the optical frame."""
    xyz = projector.project(depth_m, projection)
    d = projector.decimation
    packed = pack_rgb_float(np.ascontiguousarray(colour[::d, ::d]))
    label = None if labels is None else labels[::d, ::d]
    return make_cloud(xyz, header=header, rgb=packed, label=label)


def class_table(names, colors, model_name: str, stamp, ignore_id: int = NO_IGNORE_ID) -> ClassTable:
    table = ClassTable(model_name=model_name, ignore_id=int(ignore_id))
    table.header.stamp = stamp
    table.classes = [
        ClassInfo(
            id=i, name=str(name), color=ColorRGBA(r=c[0] / 255.0, g=c[1] / 255.0, b=c[2] / 255.0, a=1.0)
        )
        for i, (name, c) in enumerate(zip(names, colors))
    ]
    return table


def sparse_depth_array(msg: Image) -> np.ndarray:
    """A sparse metric depth image as the fitter takes it: float32 metres (32FC1; NaN, Inf or <= 0 =
    no measurement) or uint16 millimetres (16UC1 / mono16; 0 = no measurement), any resolution."""
    if msg.encoding not in ("32FC1", "16UC1", "mono16"):
        raise ImageConversionError(
            f"sparse depth must be 32FC1 (metres) or 16UC1 (millimetres), got {msg.encoding!r}"
        )
    return output_image_to_array(msg)
