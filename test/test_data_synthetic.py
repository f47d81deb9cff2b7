"""Synthetic scene generator: exact depth against analytic geometry, labels, determinism, folder export."""

import numpy as np
import pytest

from dpt_perception.training.data import FolderDataset, SyntheticDataset, write_folder_dataset
from dpt_perception.training.data.synthetic import (
    BOX,
    FLOOR,
    SKY,
    SPHERE,
    WALL,
    Box,
    Camera,
    Scene,
    Sphere,
    Wall,
    random_scene,
    render_scene,
)


def backproject_world(depth, K, cam):  # noqa: N803
    """World points (H,W,3) of every pixel, computed independently of the renderer's ray setup."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    pts_cam = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=-1)
    yaw, pitch = cam.yaw, cam.pitch
    forward = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), -np.sin(pitch)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.cross(forward, right)
    return pts_cam[..., 0:1] * right + pts_cam[..., 1:2] * down + pts_cam[..., 2:3] * forward + cam.position


def test_floor_depth_equals_analytic_plane_depth():
    cam = Camera.from_fov(64, 48, 60.0, position=(0.0, 0.0, 1.5), yaw=0.0, pitch=0.0)
    r = render_scene(Scene(camera=cam, noise_std=0.0, max_depth=1e6))
    v = np.arange(48, dtype=np.float64)[:, None]
    below = np.broadcast_to(v > cam.cy, (48, 64))
    expected = np.where(below, 1.5 * cam.fy / np.where(below, v - cam.cy, 1.0), 0.0)
    np.testing.assert_allclose(r["depth"][below], expected[below], rtol=1e-6)
    assert (r["labels"][below] == FLOOR).all()
    assert (r["labels"][~below] == SKY).all() and (r["depth"][~below] == 0).all()
    np.testing.assert_allclose(r["K"], cam.K)


def test_pitched_camera_floor_and_wall_points_lie_on_their_planes():
    cam = Camera.from_fov(80, 60, 70.0, position=(0.3, -0.2, 1.2), yaw=np.radians(15), pitch=np.radians(12))
    scene = Scene(
        camera=cam, walls=[Wall(axis=0, offset=6.0, top=2.5), Wall(axis=1, offset=3.0)], noise_std=0.0
    )
    r = render_scene(scene)
    pts = backproject_world(r["depth"], r["K"], cam)
    floor, wall = r["labels"] == FLOOR, r["labels"] == WALL
    assert floor.sum() > 500 and wall.sum() > 500
    np.testing.assert_allclose(pts[floor][:, 2], 0.0, atol=1e-5 * 10)
    on_back = np.abs(pts[wall][:, 0] - 6.0) < 1e-3
    on_side = np.abs(pts[wall][:, 1] - 3.0) < 1e-3
    assert (on_back | on_side).all()
    assert (pts[wall][on_back][:, 2] <= 2.5 + 1e-3).all()  # the back wall stops at its top


def test_box_and_sphere_pixels_lie_on_their_surfaces():
    cam = Camera.from_fov(96, 72, 60.0, position=(0.0, 0.0, 1.4), pitch=np.radians(10))
    box = Box(x=4.0, y=0.8, size=(1.0, 0.6, 0.9), yaw=0.5)
    sph = Sphere(x=3.5, y=-0.9, radius=0.5)
    r = render_scene(Scene(camera=cam, boxes=[box], spheres=[sph], noise_std=0.0))
    pts = backproject_world(r["depth"], r["K"], cam)
    s_pts = pts[r["labels"] == SPHERE]
    assert len(s_pts) > 50
    np.testing.assert_allclose(np.linalg.norm(s_pts - [3.5, -0.9, 0.5], axis=1), 0.5, atol=2e-5)
    b_pts = pts[r["labels"] == BOX] - [4.0, 0.8, 0.45]
    c, s = np.cos(0.5), np.sin(0.5)
    local = b_pts @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])  # world offset -> box frame
    assert len(local) > 50
    np.testing.assert_allclose(np.max(np.abs(local) / [0.5, 0.3, 0.45], axis=1), 1.0, atol=1e-4)


def test_labels_and_depth_validity_agree_and_classes_appear():
    seen = set()
    for i in range(6):
        r = render_scene(random_scene([3, i], 64, 48))
        assert ((r["depth"] > 0) == (r["labels"] != SKY)).all()
        assert r["image"].dtype == np.uint8 and r["image"].shape == (48, 64, 3)
        seen |= set(np.unique(r["labels"]).tolist())
    assert {FLOOR, BOX} <= seen


def test_dataset_is_deterministic_per_seed_and_sized():
    a = SyntheticDataset(3, seed=7, width=40, height=30)
    b = SyntheticDataset(3, seed=7, width=40, height=30)
    c = SyntheticDataset(3, seed=8, width=40, height=30)
    s1, s2, s3 = a[1], b[1], c[1]
    for key in ("image", "depth", "labels", "K"):
        np.testing.assert_array_equal(s1[key], s2[key])
    assert not np.array_equal(s1["image"], s3["image"])
    assert not np.array_equal(a[0]["image"], a[1]["image"])
    assert s1["image"].shape == (30, 40, 3) and s1["has_depth"] and s1["has_labels"]
    assert len(a) == 3 and a.num_classes == 5
    with pytest.raises(IndexError):
        a[3]


@pytest.mark.parametrize("depth_format", ["png", "npy", "pfm"])
def test_write_folder_dataset_round_trips_through_folder_reader(tmp_path, depth_format):
    names = write_folder_dataset(tmp_path, 2, seed=4, width=48, height=32, depth_format=depth_format)
    ds = FolderDataset(tmp_path)
    ref = SyntheticDataset(2, seed=4, width=48, height=32)
    assert [f["name"] for f in ds.frames] == names and ds.class_names[0] == "floor"
    for i in range(2):
        got, want = ds[i], ref[i]
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["labels"], want["labels"])
        np.testing.assert_array_equal(got["depth_valid"], want["depth_valid"])
        atol = 0.0005 if depth_format == "png" else 0.0  # millimetre rounding
        np.testing.assert_allclose(got["depth"], want["depth"], atol=atol)
        np.testing.assert_allclose(got["K"], want["K"])


def test_write_synthetic_cli_with_fixed_fov_writes_shared_intrinsics(tmp_path):
    from dpt_perception.training.data.write_synthetic import main

    assert (
        main([str(tmp_path / "demo"), "--count", "2", "--width", "40", "--height", "30", "--hfov", "60"]) == 0
    )
    ds = FolderDataset(tmp_path / "demo")
    f = 20.0 / np.tan(np.radians(30.0))
    for i in range(2):
        np.testing.assert_allclose(ds[i]["K"], [[f, 0, 19.5], [0, f, 14.5], [0, 0, 1]])
    assert (tmp_path / "demo" / "camera.json").exists()
