"""Procedural RGB-D + segmentation scenes rendered by vectorised ray casting (numpy only).

Each scene is a pinhole camera in a world with Z up: a textured ground plane (z = 0), optional
room walls (vertical planes, possibly of limited height so the sky shows above them), boxes
standing on the floor (rotated about Z) and spheres resting on the floor. Every pixel casts
one ray through its centre (OpenCV convention: pixel (u, v) centre at integer coordinates,
``K = [[fx,0,cx],[0,fy,cy],[0,0,1]]``); the camera-frame ray is ``((u-cx)/fx, (v-cy)/fy, 1)``,
so the ray parameter of the nearest hit *is* the depth along the optical axis, exactly.

Class table (``CLASS_NAMES`` / ``CLASS_COLORS``, ids are label values):

==  ========  ===============  ==============================================
id  name      colour (RGB)     what
==  ========  ===============  ==============================================
0   floor     (128, 64, 128)   the ground plane z = 0 (checker texture)
1   wall      (102, 102, 156)  room walls (stripe / brick texture)
2   box       (190, 153, 153)  boxes standing on the floor
3   sphere    (220, 20, 60)    spheres resting on the floor
4   sky       (70, 130, 180)   no surface within ``max_depth``: depth invalid (0)
==  ========  ===============  ==============================================

Scenes are deterministic per seed (``numpy.random.default_rng``); :class:`SyntheticDataset`
draws scene ``i`` from the seed sequence ``[base_seed, i]``. :func:`write_folder_dataset`
writes scenes in the folder format of :mod:`.folder` (with per-frame intrinsics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .base import SampleDataset, Transform
from .fileio import write_depth_png_mm, write_pfm, write_rgb
from .sample import DEFAULT_IGNORE_INDEX, make_sample

CLASS_NAMES = ("floor", "wall", "box", "sphere", "sky")
CLASS_COLORS = ((128, 64, 128), (102, 102, 156), (190, 153, 153), (220, 20, 60), (70, 130, 180))
FLOOR, WALL, BOX, SPHERE, SKY = range(5)

_EPS = 1e-6


@dataclass
class Camera:
    """Pinhole camera at ``position`` (world, metres) looking along yaw/pitch (radians).

    yaw turns left about world Z from the +X direction, pitch > 0 looks down. Camera axes:
    x right, y down, z forward (optical axis).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: tuple[float, float, float] = (0.0, 0.0, 1.5)
    yaw: float = 0.0
    pitch: float = 0.0

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the standard name of the camera matrix
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def rotation(self) -> np.ndarray:
        """Camera-to-world rotation: columns are the camera x (right), y (down), z (forward) axes."""
        cy_, sy_ = np.cos(self.yaw), np.sin(self.yaw)
        cp, sp = np.cos(self.pitch), np.sin(self.pitch)
        forward = np.array([cy_ * cp, sy_ * cp, -sp])
        right = np.array([sy_, -cy_, 0.0])
        down = np.cross(forward, right)
        return np.stack([right, down, forward], axis=1)

    @staticmethod
    def from_fov(width: int, height: int, hfov_deg: float, **pose: Any) -> Camera:
        f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
        return Camera(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0, **pose)


@dataclass
class Wall:
    """Vertical plane ``axis`` (0: x, 1: y) = ``offset``, from z = 0 up to ``top`` (inf = no top)."""

    axis: int
    offset: float
    top: float = float("inf")
    albedo: tuple[float, float, float] = (0.7, 0.7, 0.7)
    pattern: str = "stripes"  # "stripes" | "bricks" | "plain"
    period: float = 0.5


@dataclass
class Box:
    """Box standing on the floor: centre (x, y) on the ground, ``size`` (sx, sy, sz), ``yaw`` about Z."""

    x: float
    y: float
    size: tuple[float, float, float]
    yaw: float = 0.0
    albedo: tuple[float, float, float] = (0.8, 0.4, 0.2)


@dataclass
class Sphere:
    """Sphere resting on the floor at ground point (x, y)."""

    x: float
    y: float
    radius: float
    albedo: tuple[float, float, float] = (0.2, 0.5, 0.9)


@dataclass
class Scene:
    camera: Camera
    walls: list[Wall] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    spheres: list[Sphere] = field(default_factory=list)
    floor_albedo: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (0.75, 0.75, 0.7),
        (0.35, 0.3, 0.3),
    )
    floor_period: float = 1.0
    light_dir: tuple[float, float, float] = (0.3, 0.2, 1.0)  # towards the light, world frame
    ambient: float = 0.35
    max_depth: float = 50.0
    noise_std: float = 2.0  # image noise in 8-bit levels
    noise_seed: int = 0


def _rows_times(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``v @ m`` for (N,3) rows and a 3x3 or 3-vector ``m``, written out: numpy's matmul with an
    inner size of 3 goes through BLAS, which is several times slower here and threads badly."""
    if m.ndim == 1:
        return v[:, 0] * m[0] + v[:, 1] * m[1] + v[:, 2] * m[2]
    return v[:, 0:1] * m[0] + v[:, 1:2] * m[1] + v[:, 2:3] * m[2]


def _ray_directions(cam: Camera) -> np.ndarray:
    """World-frame ray directions (H*W, 3) whose camera-frame z component is exactly 1."""
    u = np.arange(cam.width, dtype=np.float64)
    v = np.arange(cam.height, dtype=np.float64)
    uu, vv = np.meshgrid(u, v)
    d_cam = np.stack([(uu - cam.cx) / cam.fx, (vv - cam.cy) / cam.fy, np.ones_like(uu)], axis=-1).reshape(
        -1, 3
    )
    return _rows_times(d_cam, cam.rotation.T)


def _hit_floor(o: np.ndarray, rays: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -o[2] / rays[:, 2]
    return np.where((rays[:, 2] < 0) & (t > _EPS), t, np.inf)


def _shade_floor(scene: Scene, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cell = (np.floor(p[:, 0] / scene.floor_period) + np.floor(p[:, 1] / scene.floor_period)).astype(
        np.int64
    ) % 2
    a, b = (np.asarray(c) for c in scene.floor_albedo)
    return np.array([0.0, 0.0, 1.0]), np.where(cell[:, None] == 0, a, b)


def _hit_wall(o: np.ndarray, rays: np.ndarray, wall: Wall) -> np.ndarray:
    k = wall.axis
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (wall.offset - o[k]) / rays[:, k]
        z = o[2] + t * rays[:, 2]
    return np.where((t > _EPS) & (z >= 0.0) & (z <= wall.top), t, np.inf)


def _shade_wall(o: np.ndarray, wall: Wall, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = wall.axis
    normal = np.zeros(3)
    normal[k] = -1.0 if wall.offset > o[k] else 1.0  # faces the camera side of the room
    z, along = p[:, 2], p[:, 1 - k]
    if wall.pattern == "stripes":
        shade = 0.75 + 0.25 * (np.floor(z / wall.period) % 2)
    elif wall.pattern == "bricks":
        rows = z / (wall.period * 0.5)
        row = np.floor(rows)
        cols = along / wall.period + 0.5 * (row % 2)
        mortar = (np.abs(rows - np.round(rows)) < 0.06) | (np.abs(cols - np.round(cols)) < 0.03)
        shade = np.where(mortar, 1.25, 0.8 + 0.075 * ((row * 7 + np.floor(cols) * 3) % 3))
    else:
        shade = np.ones(len(p))
    return normal, np.clip(np.asarray(wall.albedo) * shade[:, None], 0.0, 1.0)


def _box_frame(box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # box-to-world
    half = np.asarray(box.size, dtype=np.float64) / 2.0
    return R, half, np.array([box.x, box.y, half[2]])


def _slab(o_l: np.ndarray, d_l: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry distance and entry face of rays (box frame) against the box [-half, half]."""
    d_safe = np.where(np.abs(d_l) < 1e-12, 1e-12, d_l)
    t1 = (-half - o_l) / d_safe
    t2 = (half - o_l) / d_safe
    t_near = np.minimum(t1, t2)
    t_enter = t_near.max(axis=1)
    t_exit = np.maximum(t1, t2).min(axis=1)
    t = np.where((t_exit >= t_enter) & (t_enter > _EPS), t_enter, np.inf)
    return t, t_near.argmax(axis=1)


def _hit_box(o: np.ndarray, rays: np.ndarray, box: Box) -> np.ndarray:
    R, half, centre = _box_frame(box)
    # Cull with the bounding sphere first: boxes cover few pixels, the slab test is the costly part.
    oc = o - centre
    b = _rows_times(rays, oc)
    a = _rows_times(rays * rays, np.ones(3))
    candidates = np.flatnonzero(b * b - a * (oc @ oc - half @ half) >= 0)
    t = np.full(len(rays), np.inf)
    if len(candidates):
        t[candidates] = _slab(R.T @ oc, _rows_times(rays[candidates], R), half)[0]
    return t


def _shade_box(o: np.ndarray, rays: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    R, half, centre = _box_frame(box)
    o_l = R.T @ (o - centre)
    d_l = _rows_times(rays, R)
    t, face = _slab(o_l, d_l, half)
    rows = np.arange(len(rays))
    n_l = np.zeros_like(d_l)
    n_l[rows, face] = -np.sign(d_l[rows, face])
    # grid lines on the faces give the boxes texture
    p_l = o_l + t[:, None] * d_l
    near_line = np.abs(p_l / 0.25 - np.round(p_l / 0.25)) < 0.04
    near_line[rows, face] = False
    albedo = np.asarray(box.albedo) * np.where(near_line.any(axis=1), 0.6, 1.0)[:, None]
    return _rows_times(n_l, R.T), albedo


def _hit_sphere(o: np.ndarray, rays: np.ndarray, sph: Sphere) -> np.ndarray:
    oc = o - np.array([sph.x, sph.y, sph.radius])
    a = _rows_times(rays * rays, np.ones(3))
    b = _rows_times(rays, oc)
    disc = b * b - a * (oc @ oc - sph.radius**2)
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    return np.where((disc >= 0) & (t > _EPS), t, np.inf)


def _shade_sphere(sph: Sphere, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (p - np.array([sph.x, sph.y, sph.radius])) / sph.radius, np.asarray(sph.albedo)


def render_scene(scene: Scene) -> dict[str, np.ndarray]:
    """Ray-cast ``scene``: ``image`` (H,W,3) uint8, ``depth`` (H,W) float32 metres (0 = sky),
    ``labels`` (H,W) int64 class ids, ``K`` (3,3).

    Two passes: the nearest hit over all surfaces (distances only), then normals and albedo
    only for the pixels each surface won.
    """
    cam = scene.camera
    o = np.asarray(cam.position, dtype=np.float64)
    rays = _ray_directions(cam)
    surfaces: list[tuple[int, Any]] = [(FLOOR, None)]
    surfaces += [(WALL, w) for w in scene.walls]
    surfaces += [(BOX, b) for b in scene.boxes]
    surfaces += [(SPHERE, s) for s in scene.spheres]

    best_t = np.full(len(rays), np.inf)
    best = np.full(len(rays), -1, dtype=np.int64)
    for k, (cls, obj) in enumerate(surfaces):
        if cls == FLOOR:
            t = _hit_floor(o, rays)
        elif cls == WALL:
            t = _hit_wall(o, rays, obj)
        elif cls == BOX:
            t = _hit_box(o, rays, obj)
        else:
            t = _hit_sphere(o, rays, obj)
        closer = t < best_t
        best_t[closer] = t[closer]
        best[closer] = k
    best[~(best_t <= scene.max_depth)] = -1

    labels = np.full(len(rays), SKY, dtype=np.int64)
    normal = np.zeros((len(rays), 3))
    albedo = np.zeros((len(rays), 3))
    for k, (cls, obj) in enumerate(surfaces):
        idx = np.flatnonzero(best == k)
        if not len(idx):
            continue
        labels[idx] = cls
        dk = rays[idx]
        p = o + best_t[idx, None] * dk
        if cls == FLOOR:
            n, a = _shade_floor(scene, p)
        elif cls == WALL:
            n, a = _shade_wall(o, obj, p)
        elif cls == BOX:
            n, a = _shade_box(o, dk, obj)
        else:
            n, a = _shade_sphere(obj, p)
        normal[idx] = n
        albedo[idx] = a

    sky = best < 0
    light = np.asarray(scene.light_dir, dtype=np.float64)
    light = light / np.linalg.norm(light)
    lambert = np.clip(_rows_times(normal, light), 0.0, 1.0)
    # distance fog keeps far surfaces from aliasing into noise
    fog = np.exp(-np.where(sky, 0.0, best_t) / (scene.max_depth * 0.8))[:, None]
    sky_rgb = np.array([0.55, 0.7, 0.92])
    colour = albedo * (scene.ambient + (1.0 - scene.ambient) * lambert)[:, None] * fog + sky_rgb * (1.0 - fog)
    if sky.any():
        ds = rays[sky]
        elevation = np.clip(ds[:, 2] / np.linalg.norm(ds, axis=1), 0.0, 1.0)[:, None]
        colour[sky] = sky_rgb * (1.0 - 0.5 * elevation) + np.array([0.25, 0.35, 0.5]) * elevation
    image = colour.reshape(cam.height, cam.width, 3) * 255.0
    if scene.noise_std > 0:
        noise = np.random.default_rng(scene.noise_seed).standard_normal(image.shape, dtype=np.float32)
        image += scene.noise_std * noise
    depth = np.where(sky, 0.0, best_t).reshape(cam.height, cam.width).astype(np.float32)
    return {
        "image": np.clip(np.rint(image), 0, 255).astype(np.uint8),
        "depth": depth,
        "labels": labels.reshape(cam.height, cam.width),
        "K": cam.K,
    }


def _colour(rng: np.random.Generator, lo: float = 0.2, hi: float = 0.95) -> tuple[float, float, float]:
    return tuple(float(x) for x in rng.uniform(lo, hi, 3))


def random_scene(
    seed: int | list[int] | np.random.SeedSequence,
    width: int = 256,
    height: int = 256,
    hfov_deg: float | tuple[float, float] = (55.0, 75.0),
    indoor_probability: float = 0.75,
    max_boxes: int = 4,
    max_spheres: int = 3,
    max_depth: float = 50.0,
    noise_std: float = 2.0,
) -> Scene:
    """A random scene, fully determined by ``seed`` (an int or a sequence of ints)."""
    rng = np.random.default_rng(seed)
    fov = float(rng.uniform(*hfov_deg)) if isinstance(hfov_deg, (tuple, list)) else float(hfov_deg)
    cam = Camera.from_fov(
        width,
        height,
        fov,
        position=(0.0, float(rng.uniform(-0.5, 0.5)), float(rng.uniform(0.8, 1.8))),
        yaw=float(np.radians(rng.uniform(-20.0, 20.0))),
        pitch=float(np.radians(rng.uniform(0.0, 20.0))),
    )
    walls: list[Wall] = []
    x_far, y_half = 30.0, 12.0
    if rng.uniform() < indoor_probability:
        x_far = float(rng.uniform(5.0, 12.0))
        y_half = float(rng.uniform(2.5, 6.0))
        top = float("inf") if rng.uniform() < 0.5 else float(rng.uniform(2.4, 4.0))
        for axis, offset in ((0, x_far), (1, y_half), (1, -y_half), (0, -float(rng.uniform(1.0, 3.0)))):
            walls.append(
                Wall(
                    axis,
                    offset,
                    top,
                    _colour(rng, 0.4, 0.95),
                    str(rng.choice(["stripes", "bricks", "plain"])),
                    float(rng.uniform(0.3, 0.8)),
                )
            )
    boxes = []
    for _ in range(int(rng.integers(1, max_boxes + 1)) if max_boxes > 0 else 0):
        size = tuple(float(x) for x in rng.uniform(0.3, 1.5, 3))
        boxes.append(
            Box(
                float(rng.uniform(2.0, x_far - 1.0)),
                float(rng.uniform(-y_half + 1.0, y_half - 1.0)),
                size,  # type: ignore[arg-type]
                float(rng.uniform(0.0, np.pi)),
                _colour(rng),
            )
        )
    spheres = []
    for _ in range(int(rng.integers(0, max_spheres + 1))):
        spheres.append(
            Sphere(
                float(rng.uniform(2.0, x_far - 1.0)),
                float(rng.uniform(-y_half + 1.0, y_half - 1.0)),
                float(rng.uniform(0.2, 0.8)),
                _colour(rng),
            )
        )
    light = (float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)), float(rng.uniform(0.5, 1.5)))
    return Scene(
        camera=cam,
        walls=walls,
        boxes=boxes,
        spheres=spheres,
        floor_albedo=(_colour(rng, 0.5, 0.95), _colour(rng, 0.1, 0.5)),
        floor_period=float(rng.uniform(0.4, 1.5)),
        light_dir=light,
        ambient=float(rng.uniform(0.25, 0.45)),
        max_depth=max_depth,
        noise_std=noise_std,
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


class SyntheticDataset(SampleDataset):
    """``length`` procedural scenes; scene ``i`` comes from the seed sequence ``[seed, i]``.

    Samples carry depth, labels (:data:`CLASS_NAMES`) and ``K``. Options of
    :func:`random_scene` (``hfov_deg``, ``indoor_probability``, ``max_boxes``, ...) pass through.
    """

    class_names = list(CLASS_NAMES)
    class_colors = [tuple(c) for c in CLASS_COLORS]

    def __init__(
        self,
        length: int = 100,
        seed: int = 0,
        width: int = 256,
        height: int = 256,
        transform: Transform | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        **scene_options: Any,
    ):
        super().__init__(transform, ignore_index)
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.length = int(length)
        self.seed = int(seed)
        self.width = int(width)
        self.height = int(height)
        self.scene_options = scene_options

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> Scene:
        return random_scene([self.seed, index], self.width, self.height, **self.scene_options)

    def load(self, index: int) -> dict[str, Any]:
        r = render_scene(self.scene(index))
        return make_sample(
            r["image"],
            name=f"synthetic_{self.seed}_{index:06d}",
            depth=r["depth"],
            labels=r["labels"],
            K=r["K"],
            ignore_index=self.ignore_index,
        )


def write_folder_dataset(
    root: str | Path,
    count: int,
    seed: int = 0,
    width: int = 256,
    height: int = 256,
    depth_format: str = "png",
    image_format: str = "png",
    **scene_options: Any,
) -> list[str]:
    """Render ``count`` scenes into ``root`` in the folder format; returns the frame names.

    Writes ``rgb/<name>.<image_format>``, ``depth/<name>.png`` (uint16 mm) or ``.npy`` (float32 m)
    or ``.pfm``, ``labels/<name>.png``, ``camera/<name>.json`` ({"K", "width", "height"}) and
    ``classes.json``.
    """
    if depth_format not in ("png", "npy", "pfm"):
        raise ValueError(f"depth_format must be 'png', 'npy' or 'pfm', got {depth_format!r}")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    root = Path(root)
    for sub in ("rgb", "depth", "labels", "camera"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ds = SyntheticDataset(count, seed, width, height, **scene_options)
    names = []
    for i in range(count):
        r = render_scene(ds.scene(i))
        name = f"{i:06d}"
        write_rgb(root / "rgb" / f"{name}.{image_format}", r["image"])
        if depth_format == "png":
            write_depth_png_mm(root / "depth" / f"{name}.png", r["depth"])
        elif depth_format == "npy":
            np.save(root / "depth" / f"{name}.npy", r["depth"])
        else:
            write_pfm(root / "depth" / f"{name}.pfm", r["depth"])
        cv2.imwrite(str(root / "labels" / f"{name}.png"), r["labels"].astype(np.uint8))
        cam = {"K": r["K"].tolist(), "width": width, "height": height}
        (root / "camera" / f"{name}.json").write_text(json.dumps(cam, indent=1))
        names.append(name)
    classes = {"names": list(CLASS_NAMES), "colors": [list(c) for c in CLASS_COLORS]}
    (root / "classes.json").write_text(json.dumps(classes, indent=1))
    return names
