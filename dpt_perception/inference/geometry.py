"""Camera geometry for published depth: CameraInfo scaling and organised point clouds.

Conventions follow image_pipeline:
- `scale_camera_info_matrices` scales like image_proc's ResizeNode: fx, cx, Tx by sx and fy, cy by
  sy, with the plain multiplication cx' = cx * sx (not the pixel-centre form (cx+0.5)*sx-0.5).
  We keep ResizeNode's choice so our CameraInfo matches what a ROS user gets from image_proc for
  the same resize; the two differ by 0.5*(sx-1) px, i.e. < 0.5 px. Unlike ResizeNode we also scale
  Ty = P[1,3] by sy (it is fy*ty; zero for monocular cameras, so this only matters for stereo).
- `roi_binning_matrices` reduces K and P to a region of interest and binning as image_geometry's
  PinholeCameraModel does (from the raw ROI).
- `PointCloudProjector` follows depth_image_proc's point_cloud_xyz(rgb): intrinsics from the
  rectified P matrix, X = (u - cx) * Z / fx, Y = (v - cy) * Z / fy, Z = depth (metres; 16UC1 depth
  in millimetres), NaN for invalid depth (non-finite or <= 0, 0 for 16UC1), organised H x W,
  rgb packed as float32 with bit pattern 0x00RRGGBB.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np

from dpt_perception.caches import LRUCache


def _matrix(m, shape: tuple[int, int], name: str) -> np.ndarray:
    a = np.asarray(m, dtype=np.float64)
    if a.size != shape[0] * shape[1]:
        raise ValueError(f"{name} must have {shape[0] * shape[1]} values ({shape[0]}x{shape[1]}), "
                         f"got shape {a.shape}")
    return a.reshape(shape).copy()


def _hw(size, name: str) -> tuple[int, int]:
    if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
        raise ValueError(f"{name} must be (height, width) with positive sides, got {size!r}")
    return int(size[0]), int(size[1])


def scale_camera_info_matrices(K, P, src_size, dst_size) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """Scale K (3x3 or 9 values) and P (3x4 or 12 values) from src_size to dst_size, both
    (height, width). Returns float64 arrays in the shape they were given (flat stays flat, so
    the result can be assigned to CameraInfo.k / .p directly)."""
    src_h, src_w = _hw(src_size, "src_size")
    dst_h, dst_w = _hw(dst_size, "dst_size")
    sx, sy = dst_w / src_w, dst_h / src_h
    k = _matrix(K, (3, 3), "K")
    p = _matrix(P, (3, 4), "P")
    k[0, 0] *= sx
    k[0, 2] *= sx
    k[1, 1] *= sy
    k[1, 2] *= sy
    p[0, 0] *= sx
    p[0, 2] *= sx
    p[0, 3] *= sx
    p[1, 1] *= sy
    p[1, 2] *= sy
    p[1, 3] *= sy
    k_shape = np.shape(K)
    p_shape = np.shape(P)
    return k.reshape(k_shape), p.reshape(p_shape)


def roi_binning_matrices(K, P, offset, binning) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """K and P of the calibrated (full) image -> those of the image a camera sends with a region of
    interest starting at `offset` (x, y) and `binning` (x, y), as image_geometry's
    PinholeCameraModel reduces them: cx, cy minus the offset, then fx, cx (and P's Tx) divided by
    binning x and fy, cy (and Ty) by binning y. Same shapes in and out, like
    `scale_camera_info_matrices`."""
    (x0, y0), (bx, by) = offset, binning
    if bx < 1 or by < 1:
        raise ValueError(f"binning must be >= 1 on both axes, got {binning!r}")
    k = _matrix(K, (3, 3), "K")
    p = _matrix(P, (3, 4), "P")
    for m in (k, p):  # pixel u' = (u - x0) / bx: rows of the homogeneous projection
        m[0, :] = (m[0, :] - x0 * m[2, :]) / bx
        m[1, :] = (m[1, :] - y0 * m[2, :]) / by
    return k.reshape(np.shape(K)), p.reshape(np.shape(P))


def pack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float32 whose bits are 0x00RRGGBB (PointCloud2 "rgb").

    Built as little-endian bytes B, G, R, 0 and reinterpreted, which is what depth_image_proc's
    uint8 field iterators write; no arithmetic on the floats (many patterns are NaNs/denormals).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    if sys.byteorder == "little":
        packed = np.zeros((h, w, 4), dtype=np.uint8)
        packed[..., 0] = rgb[..., 2]
        packed[..., 1] = rgb[..., 1]
        packed[..., 2] = rgb[..., 0]
        return packed.view(np.float32)[..., 0]
    word = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    return word.view(np.float32)


def unpack_rgb_float(packed: np.ndarray) -> np.ndarray:
    """Inverse of `pack_rgb_float`: (H, W) float32 -> (H, W, 3) uint8 RGB."""
    word = np.ascontiguousarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(word >> 16) & 0xFF, (word >> 8) & 0xFF, word & 0xFF], axis=-1).astype(np.uint8)


def intrinsics_from_p(P) -> tuple[float, float, float, float]:  # noqa: N803
    """(fx, fy, cx, cy) of the rectified camera (P matrix), as image_geometry reads them."""
    p = _matrix(P, (3, 4), "P")
    fx, fy, cx, cy = p[0, 0], p[1, 1], p[0, 2], p[1, 2]
    if not (fx > 0 and fy > 0 and np.isfinite([fx, fy, cx, cy]).all()):
        # NaN / Inf would not fail loudly later: they give clouds of NaN or of x = y = 0.
        raise ValueError(
            f"P must have positive focal lengths and a principal point, all finite; got fx={fx}, fy={fy}, "
            f"cx={cx}, cy={cy} (uncalibrated camera?)"
        )
    return float(fx), float(fy), float(cx), float(cy)


class PointCloudProjector:
    """Organised point clouds from depth images, with ray grids cached per (size, intrinsics).

    max_range: points with depth beyond it (metres) become NaN (None = keep all). Note this differs
      from depth_image_proc's `invalid_depth` parameter, which instead REPLACES invalid depth.
    decimation: keep every n-th row and column (the cloud is ceil(H/n) x ceil(W/n)), with the
      pixel coordinates of the kept pixels, so points stay exact.
    """

    def __init__(self, max_range: float | None = None, decimation: int = 1, cache_size: int = 8):
        if max_range is not None and not max_range > 0:
            raise ValueError(f"max_range must be positive or None, got {max_range}")
        if int(decimation) != decimation or decimation < 1:
            raise ValueError(f"decimation must be an integer >= 1, got {decimation}")
        self.max_range = max_range
        self.decimation = int(decimation)
        self._cache = LRUCache("point_rays", cache_size)

    def rays(self, shape: tuple[int, int], P) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
        """x factors (1, W') = (u - cx) / fx and y factors (H', 1) = (v - cy) / fy for the kept pixels."""
        fx, fy, cx, cy = intrinsics_from_p(P)
        key = (shape[0], shape[1], fx, fy, cx, cy, self.decimation)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        d = self.decimation
        u = np.arange(0, shape[1], d, dtype=np.float64)
        v = np.arange(0, shape[0], d, dtype=np.float64)
        rays = (((u - cx) / fx).astype(np.float32)[None, :], ((v - cy) / fy).astype(np.float32)[:, None])
        self._cache.put(key, rays)
        return rays

    def _metric_z(self, depth: np.ndarray) -> np.ndarray:
        """Decimated depth in metres, float32, NaN where invalid or beyond max_range (a new array)."""
        if depth.ndim != 2:
            raise ValueError(f"depth must be a 2-D (H, W) image, got shape {depth.shape}")
        d = self.decimation
        sub = depth[::d, ::d] if d > 1 else depth
        if depth.dtype == np.uint16:  # 16UC1 millimetres, 0 = invalid
            z = sub.astype(np.float32)
            z *= np.float32(0.001)
            z[sub == 0] = np.nan
        elif depth.dtype == np.float32 or depth.dtype == np.float64:
            z = sub.astype(np.float32, copy=True)
            with np.errstate(invalid="ignore"):
                # <= 0, NaN and +-Inf are invalid; a single comparison chain catches all of them.
                bad = ~(z > 0) | (z == np.inf)
            z[bad] = np.nan
        else:
            raise ValueError(f"depth must be float32 metres or uint16 millimetres, got dtype {depth.dtype}")
        if self.max_range is not None:
            with np.errstate(invalid="ignore"):
                z[z > self.max_range] = np.nan
        return z

    def project(self, depth: np.ndarray, P) -> np.ndarray:  # noqa: N803
        """(H, W) depth -> (H', W', 3) float32 XYZ in the optical frame, NaN for invalid pixels."""
        z = self._metric_z(depth)
        xr, yr = self.rays(depth.shape, P)
        out = np.empty(z.shape + (3,), dtype=np.float32)
        np.multiply(xr, z, out=out[..., 0])
        np.multiply(yr, z, out=out[..., 1])
        out[..., 2] = z
        return out

    def project_xyzrgb(self, depth: np.ndarray, P, rgb: np.ndarray) -> np.ndarray:  # noqa: N803
        """(H', W', 4) float32: x, y, z and the packed colour; the bytes of this array are the
        PointCloud2 data for fields x, y, z, rgb at offsets 0, 4, 8, 12 (point_step 16).
        The colour image is resized (bilinear) to the depth size first when it differs."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
        if rgb.shape[:2] != depth.shape:
            rgb = cv2.resize(rgb, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_LINEAR)
        z = self._metric_z(depth)
        xr, yr = self.rays(depth.shape, P)
        out = np.empty(z.shape + (4,), dtype=np.float32)
        np.multiply(xr, z, out=out[..., 0])
        np.multiply(yr, z, out=out[..., 1])
        out[..., 2] = z
        d = self.decimation
        colour = rgb[::d, ::d] if d > 1 else rgb
        # Write the packed colour bytes straight into the 4th float of each point (B, G, R, 0).
        if sys.byteorder == "little":
            as_bytes = out.view(np.uint8).reshape(z.shape + (16,))
            as_bytes[..., 12] = colour[..., 2]
            as_bytes[..., 13] = colour[..., 1]
            as_bytes[..., 14] = colour[..., 0]
            as_bytes[..., 15] = 0
        else:
            out[..., 3] = pack_rgb_float(np.ascontiguousarray(colour))
        return out
