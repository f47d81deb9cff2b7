"""CameraInfo scaling and depth_image_proc-style point clouds (dpt_perception.inference.geometry)."""
import numpy as np
import pytest

from dpt_perception.inference.geometry import (
    PointCloudProjector,
    pack_rgb_float,
    roi_binning_matrices,
    scale_camera_info_matrices,
    unpack_rgb_float,
)

K = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
P = [500.0, 0.0, 321.0, -25.0, 0.0, 510.0, 241.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_scale_camera_info_like_image_proc_resize():
    k2, p2 = scale_camera_info_matrices(K, P, (480, 640), (240, 160))  # sy = 0.5, sx = 0.25
    assert k2.shape == (9,) and p2.shape == (12,)  # flat in, flat out
    np.testing.assert_allclose(k2, [125.0, 0, 80.0, 0, 255.0, 120.0, 0, 0, 1])
    np.testing.assert_allclose(p2, [125.0, 0, 80.25, -6.25, 0, 255.0, 120.5, 0, 0, 0, 1, 0])
    k3, p3 = scale_camera_info_matrices(np.reshape(K, (3, 3)), np.reshape(P, (3, 4)), (480, 640), (480, 640))
    assert k3.shape == (3, 3) and p3.shape == (3, 4)
    np.testing.assert_array_equal(k3.ravel(), K)


def test_roi_binning_matrices_like_image_geometry():
    """image_geometry's reduced model: cx, cy minus the ROI offset, then divided with fx, fy by the
    binning; checked on values and on projection: a 3-D point lands at (U - x0) / bx, (V - y0) / by
    of its full-resolution pixel (U, V)."""
    k2, p2 = roi_binning_matrices(K, P, (100, 40), (2, 4))
    assert k2.shape == (9,) and p2.shape == (12,)
    np.testing.assert_allclose(k2, [250.0, 0, 110.0, 0, 127.5, 50.0, 0, 0, 1])
    np.testing.assert_allclose(p2, [250.0, 0, 110.5, -12.5, 0, 127.5, 50.25, 0, 0, 0, 1, 0])
    points = np.random.default_rng(0).uniform([-2, -2, 0.5], [2, 2, 9], (50, 3))
    homogeneous = np.hstack([points, np.ones((50, 1))])
    pairs = ((np.reshape(P, (3, 4)), p2.reshape(3, 4)), (np.reshape(K, (3, 3)), k2.reshape(3, 3)))
    for full, reduced in pairs:
        xyz = homogeneous if full.shape[1] == 4 else points
        uvw_full, uvw = xyz @ full.T, xyz @ reduced.T
        np.testing.assert_allclose(uvw[:, 0] / uvw[:, 2], (uvw_full[:, 0] / uvw_full[:, 2] - 100) / 2)
        np.testing.assert_allclose(uvw[:, 1] / uvw[:, 2], (uvw_full[:, 1] / uvw_full[:, 2] - 40) / 4)
    np.testing.assert_array_equal(roi_binning_matrices(K, P, (0, 0), (1, 1))[0], K)
    with pytest.raises(ValueError, match="binning must be >= 1"):
        roi_binning_matrices(K, P, (0, 0), (0, 1))


def test_scale_camera_info_rejects_bad_input():
    with pytest.raises(ValueError, match="K must have 9 values"):
        scale_camera_info_matrices([1, 2, 3], P, (480, 640), (240, 320))
    with pytest.raises(ValueError, match="dst_size"):
        scale_camera_info_matrices(K, P, (480, 640), (0, 320))


def loop_cloud(depth, p, max_range=None):
    """Per-pixel reference: depth_image_proc's formula written out."""
    fx, fy, cx, cy = p[0], p[5], p[2], p[6]
    h, w = depth.shape
    out = np.full((h, w, 3), np.nan, np.float32)
    for v in range(h):
        for u in range(w):
            z = float(depth[v, u])
            if depth.dtype == np.uint16:
                if z == 0:
                    continue
                z /= 1000.0
            elif not np.isfinite(z) or z <= 0:
                continue
            if max_range is not None and z > max_range:
                continue
            out[v, u] = ((u - cx) * z / fx, (v - cy) * z / fy, z)
    return out


def test_projection_matches_per_pixel_formula_with_invalid_pixels():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 10.0, (12, 16)).astype(np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2], depth[3, 3], depth[4, 4] = 0.0, -1.0, np.nan, np.inf, -np.inf
    cloud = PointCloudProjector().project(depth, P)
    assert cloud.shape == (12, 16, 3) and cloud.dtype == np.float32
    np.testing.assert_allclose(cloud, loop_cloud(depth, P), rtol=1e-6, equal_nan=True)
    assert np.isnan(cloud[[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]).all()


def test_points_reproject_onto_their_pixels():
    depth = np.full((6, 8), 2.0, np.float32)
    cloud = PointCloudProjector().project(depth, P)
    u = 500.0 * cloud[..., 0] / cloud[..., 2] + 321.0
    v = 510.0 * cloud[..., 1] / cloud[..., 2] + 241.0
    np.testing.assert_allclose(u, np.broadcast_to(np.arange(8), (6, 8)), atol=1e-4)
    np.testing.assert_allclose(v, np.broadcast_to(np.arange(6)[:, None], (6, 8)), atol=1e-4)


def test_uint16_millimetres_max_range_and_decimation():
    rng = np.random.default_rng(1)
    depth_mm = rng.integers(0, 8000, (10, 14)).astype(np.uint16)
    depth_mm[0, :3] = 0
    full = PointCloudProjector(max_range=5.0).project(depth_mm, P)
    np.testing.assert_allclose(full, loop_cloud(depth_mm, P, max_range=5.0), rtol=1e-6, equal_nan=True)
    assert np.isnan(full[depth_mm > 5000]).all()
    dec = PointCloudProjector(max_range=5.0, decimation=3).project(depth_mm, P)
    assert dec.shape == (4, 5, 3)
    np.testing.assert_allclose(dec, full[::3, ::3], rtol=1e-6, equal_nan=True)


def test_ray_grid_is_cached_per_size_and_intrinsics():
    proj = PointCloudProjector()
    a = proj.rays((6, 8), P)
    assert proj.rays((6, 8), P) is a
    assert proj.rays((6, 9), P) is not a
    p_other = list(P)
    p_other[2] = 300.0
    assert proj.rays((6, 8), p_other) is not a


def test_pack_rgb_float_bit_pattern_and_round_trip():
    rgb = np.array([[[1, 2, 3], [255, 128, 0]]], np.uint8)
    packed = pack_rgb_float(rgb)
    assert packed.dtype == np.float32 and packed.shape == (1, 2)
    np.testing.assert_array_equal(packed.view(np.uint32), [[0x00010203, 0x00FF8000]])
    noise = np.random.default_rng(2).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(unpack_rgb_float(pack_rgb_float(noise)), noise)


def test_xyzrgb_layout_and_colour_resize():
    rng = np.random.default_rng(3)
    depth = rng.uniform(1, 3, (6, 8)).astype(np.float32)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    proj = PointCloudProjector()
    cloud = proj.project_xyzrgb(depth, P, rgb)
    assert cloud.shape == (6, 8, 4)
    np.testing.assert_array_equal(cloud[..., :3], proj.project(depth, P))
    np.testing.assert_array_equal(cloud[..., 3].view(np.uint32), pack_rgb_float(rgb).view(np.uint32))
    # A colour image at twice the depth size is resized to it: a uniform colour stays exact.
    big = np.zeros((12, 16, 3), np.uint8)
    big[...] = (10, 20, 30)
    cloud = proj.project_xyzrgb(depth, P, big)
    assert (cloud[..., 3].view(np.uint32) == 0x000A141E).all()


def test_projector_validation():
    with pytest.raises(ValueError, match="decimation"):
        PointCloudProjector(decimation=0)
    with pytest.raises(ValueError, match="max_range"):
        PointCloudProjector(max_range=-1.0)
    with pytest.raises(ValueError, match="dtype"):
        PointCloudProjector().project(np.zeros((4, 4), np.int32), P)
    with pytest.raises(ValueError, match="positive focal"):
        PointCloudProjector().project(np.ones((4, 4), np.float32), [0.0] * 12)
