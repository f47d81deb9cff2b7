"""Sample camera frames (RGB + intrinsics) for the demo camera and the tests.

Uses the project's synthetic scene generator (`dpt_perception.training.data.synthetic`, random
indoor/outdoor scenes with exact depth) when it is present; otherwise renders a small ray-cast
scene itself: a textured floor plane, a back wall
and a sphere that moves from frame to frame, seen by a pinhole camera. Either way the frames are
deterministic, so runs are reproducible.
"""

from __future__ import annotations

import numpy as np


def pinhole_k(height: int, width: int, hfov_deg: float = 70.0) -> np.ndarray:
    """3x3 intrinsics of an ideal pinhole camera with the given horizontal field of view."""
    fx = 0.5 * width / np.tan(np.radians(hfov_deg) / 2.0)
    return np.array([[fx, 0.0, (width - 1) / 2.0], [0.0, fx, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _from_synthetic(count: int, height: int, width: int):
    """Frames from the project's synthetic scene generator, or None when it is not installed."""
    try:
        from dpt_perception.training.data.synthetic import random_scene, render_scene
    except ImportError:
        return None
    frames = []
    for i in range(count):
        out = render_scene(random_scene([7, i], width=width, height=height))
        depth = out["depth"].astype(np.float32)
        depth[depth <= 0] = np.nan  # the generator marks sky (no surface) with 0
        frames.append((out["image"], np.asarray(out["K"], dtype=np.float64), depth))
    return frames


def _render(index: int, height: int, width: int, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one frame: floor (y = 1.2 m below the camera), wall (z = 8 m), moving sphere."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], axis=-1)
    depth = np.full((height, width), 8.0)  # back wall
    color = np.zeros((height, width, 3))
    wall_hit = rays * 8.0
    stripes = (np.floor(wall_hit[..., 0] * 2.0) % 2).astype(bool)
    color[:] = np.where(stripes[..., None], [0.75, 0.7, 0.6], [0.6, 0.55, 0.5])
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(rays[..., 1] > 1e-6, 1.2 / rays[..., 1], np.inf)
    floor = t_floor < depth
    hit = rays * np.where(floor, t_floor, 0.0)[..., None]
    checker = ((np.floor(hit[..., 0]) + np.floor(hit[..., 2])) % 2).astype(bool)
    floor_color = np.where(checker[..., None], [0.2, 0.45, 0.2], [0.8, 0.8, 0.75])
    color[floor] = floor_color[floor]
    depth[floor] = t_floor[floor]
    # Sphere moving left-right across frames.
    center = np.array([1.5 * np.sin(index * 0.4), 0.4, 4.0])
    radius = 0.8
    b = rays @ center
    rr = (rays * rays).sum(-1)
    disc = b * b - rr * (center @ center - radius * radius)
    with np.errstate(invalid="ignore"):
        t_sphere = np.where(disc > 0, (b - np.sqrt(np.maximum(disc, 0))) / rr, np.inf)
    sphere = t_sphere < depth
    normal = rays * np.where(sphere, t_sphere, 0.0)[..., None] - center
    shade = np.clip(-(normal / radius) @ np.array([0.4, 0.8, -0.45]), 0.15, 1.0)
    color[sphere] = (np.array([0.85, 0.25, 0.2]) * shade[..., None])[sphere]
    # Depth cue the eye (and a model) can use: darker with distance.
    color *= (1.0 / (1.0 + 0.06 * depth))[..., None] * 1.3
    return np.clip(color * 255.0, 0, 255).astype(np.uint8), depth.astype(np.float32)


def sample_frames(count: int, height: int = 240, width: int = 320):
    """`count` distinct frames as (rgb uint8 HxWx3, K 3x3, depth float32 HxW metres, NaN = none)."""
    frames = _from_synthetic(count, height, width)
    if frames is not None:
        return frames
    k = pinhole_k(height, width)
    frames = []
    for i in range(count):
        rgb, depth = _render(i, height, width, k)
        frames.append((rgb, k, depth))
    return frames
