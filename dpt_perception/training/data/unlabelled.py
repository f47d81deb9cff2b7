"""Unlabelled RGB frames (for distillation, where the teachers provide the targets).

Sources, by ``spec["type"]``:

* ``folder``: every image under ``path`` (recursive; .png .jpg .jpeg .bmp .webp), sorted by path;
* ``video``: the frames of a video file read with OpenCV (``stride`` = keep every n-th frame);
* ``rosbag2``: an image topic (``sensor_msgs/msg/Image`` or ``CompressedImage``) of a rosbag2
  recording (directory, ``.db3`` or ``.mcap``), decoded on demand with ``rosbags``.

Common keys: ``stride`` (keep every n-th frame, default 1) and ``max_frames`` (0 = all). Frames
are indexed up front (paths, frame numbers or message times), read lazily, and each DataLoader
worker opens its own video capture or bag reader.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .fileio import read_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SOURCE_TYPES = ("folder", "video", "rosbag2")


class FrameSource:
    """`len(source)` frames; `source.read(i)` -> (H, W, 3) uint8 RGB."""

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class FolderFrames(FrameSource):
    def __init__(self, path: str | Path, stride: int = 1, max_frames: int = 0):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"image folder {self.path} does not exist")
        files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        self.files = _keep(files, stride, max_frames)
        if not self.files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {self.path}")

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        return read_rgb(self.files[index])

    def describe(self) -> str:
        return f"{len(self)} images under {self.path}"


class VideoFrames(FrameSource):
    def __init__(self, path: str | Path, stride: int = 1, max_frames: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file {self.path} does not exist")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise ValueError(f"OpenCV cannot open {self.path} as a video")
        total = 0
        while capture.grab():  # the container's frame count is not always right: count by decoding
            total += 1
        capture.release()
        self.frames = _keep(list(range(total)), stride, max_frames)
        if not self.frames:
            raise ValueError(f"{self.path} has no decodable frames")
        self._capture: Any = None
        self._pid: int | None = None
        self._next = -1

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, index: int) -> np.ndarray:
        frame_number = self.frames[index]
        if self._capture is None or self._pid != os.getpid():
            self._capture, self._pid, self._next = cv2.VideoCapture(str(self.path)), os.getpid(), 0
        if frame_number != self._next:  # sequential reads (the common case) need no seek
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, frame_number)
        ok, bgr = self._capture.read()
        if not ok:
            raise ValueError(f"{self.path}: frame {frame_number} could not be decoded")
        self._next = frame_number + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def describe(self) -> str:
        return f"{len(self)} frames of {self.path}"


class RosbagFrames(FrameSource):
    def __init__(self, path: str | Path, topic: str, stride: int = 1, max_frames: int = 0):
        from rosbags.rosbag2 import Reader

        from .rosbag_rgbd import IMAGE_TYPES

        self.path, self.topic = Path(path), topic
        with Reader(self.path) as reader:
            conns = [c for c in reader.connections if c.topic == topic]
            if not conns:
                available = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
                raise ValueError(f"topic {topic!r} is not in {self.path}; topics: {available}")
            if any(c.msgtype not in IMAGE_TYPES for c in conns):
                raise ValueError(
                    f"topic {topic!r} has type {conns[0].msgtype}, expected one of {IMAGE_TYPES}"
                )
            times = [log_ns for _, log_ns, _ in reader.messages(connections=conns)]
        self.times = _keep(times, stride, max_frames)
        if not self.times:
            raise ValueError(f"topic {topic!r} of {self.path} has no messages")
        self._reader: Any = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.times)

    def read(self, index: int) -> np.ndarray:
        from rosbags.rosbag2 import Reader

        from .ros_image import image_msg_to_rgb
        from .rosbag_rgbd import _typestore

        if self._reader is None or self._pid != os.getpid():
            self._reader, self._pid = Reader(self.path), os.getpid()
            self._reader.open()
            self._typestore = _typestore()
        conns = [c for c in self._reader.connections if c.topic == self.topic]
        t = self.times[index]
        for conn, _, raw in self._reader.messages(connections=conns, start=t, stop=t + 1):
            return image_msg_to_rgb(self._typestore.deserialize_cdr(raw, conn.msgtype))
        raise ValueError(f"{self.path}: no {self.topic} message at log time {t}")

    def describe(self) -> str:
        return f"{len(self)} {self.topic} frames of {self.path}"


def _keep(items: list, stride: int, max_frames: int) -> list:
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_frames < 0:
        raise ValueError(f"max_frames must be >= 0 (0 = all), got {max_frames}")
    kept = items[::stride]
    return kept[:max_frames] if max_frames else kept


def open_frames(spec: dict) -> FrameSource:
    """The frame source a spec names, e.g. {type: folder, path: images/} or
    {type: rosbag2, path: run.mcap, topic: /camera/color/image_raw, stride: 5}."""
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in SOURCE_TYPES:
        raise ValueError(f"data type must be one of {SOURCE_TYPES}, got {kind!r}")
    if "path" not in spec:
        raise ValueError(f"a {kind} data source needs a 'path'")
    common = {"stride": int(spec.pop("stride", 1)), "max_frames": int(spec.pop("max_frames", 0))}
    path = spec.pop("path")
    if kind == "rosbag2":
        if "topic" not in spec:
            raise ValueError("a rosbag2 data source needs the image 'topic'")
        source: FrameSource = RosbagFrames(path, spec.pop("topic"), **common)
    elif kind == "video":
        source = VideoFrames(path, **common)
    else:
        source = FolderFrames(path, **common)
    if spec:
        raise ValueError(f"unknown key(s) {sorted(spec)} for a {kind} data source")
    return source


def crop_to_size(rgb: np.ndarray, size: tuple[int, int], rng: np.random.Generator | None) -> np.ndarray:
    """Scale `rgb` (keeping its aspect) so it covers `size` (H, W), then crop it there: at random
    with `rng`, centred without. Cubic when enlarging, area when shrinking."""
    h, w = rgb.shape[:2]
    out_h, out_w = size
    scale = max(out_h / h, out_w / w)
    new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    if (new_h, new_w) != (h, w):
        interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
    if rng is None:
        top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    else:
        top, left = int(rng.integers(0, new_h - out_h + 1)), int(rng.integers(0, new_w - out_w + 1))
    return np.ascontiguousarray(rgb[top : top + out_h, left : left + out_w])
