"""RGB-D training pairs from a rosbag2 recording (sqlite3 ``.db3`` or ``.mcap``), read with ``rosbags``.

Input: a rosbag2 directory (with ``metadata.yaml``) or a single ``.db3`` / ``.mcap`` file holding

* an RGB topic (``sensor_msgs/msg/Image`` rgb8/bgr8/rgba8/bgra8/mono8 or ``CompressedImage``),
* a depth topic registered to the RGB camera (``Image`` 16UC1 millimetres / 32FC1 metres, or
  ``CompressedImage`` PNG / compressedDepth PNG), of the same resolution,
* optionally a ``sensor_msgs/msg/CameraInfo`` topic of the RGB camera (its ``k`` becomes ``K``).

Pairing: every RGB frame takes the depth frame with the nearest ``header.stamp``; pairs further
apart than ``max_time_diff`` seconds are dropped, and a depth frame nearest to several RGB
frames is kept only with the closest one (no duplicate pairs). The index stores only
(log time, header stamp) per message; images are read and decoded on demand, so memory does
not grow with the recording. Each DataLoader worker opens its own reader.
"""

from __future__ import annotations

import bisect
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import SampleDataset, Transform
from .ros_image import depth_msg_to_metres, header_stamp_ns, image_msg_to_rgb
from .sample import DEFAULT_IGNORE_INDEX, CorruptSampleError, make_sample

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


def pair_by_stamp(rgb_stamps: list[int], depth_stamps: list[int], max_diff_ns: int) -> list[tuple[int, int]]:
    """(rgb index, depth index) pairs: nearest depth stamp per RGB frame within ``max_diff_ns``,
    each depth frame used at most once (by its closest RGB frame). Sorted by RGB index."""
    order = sorted(range(len(depth_stamps)), key=depth_stamps.__getitem__)
    sorted_stamps = [depth_stamps[i] for i in order]
    best: dict[int, tuple[int, int]] = {}  # depth index -> (|dt|, rgb index)
    for ri, t in enumerate(rgb_stamps):
        j = bisect.bisect_left(sorted_stamps, t)
        cands = [k for k in (j - 1, j) if 0 <= k < len(sorted_stamps)]
        if not cands:
            continue
        k = min(cands, key=lambda c: abs(sorted_stamps[c] - t))
        dt = abs(sorted_stamps[k] - t)
        if dt > max_diff_ns:
            continue
        di = order[k]
        if di not in best or dt < best[di][0]:
            best[di] = (dt, ri)
    return sorted((ri, di) for di, (_, ri) in best.items())


class RosbagRGBDDataset(SampleDataset):
    """RGB + metric depth pairs from a rosbag2 recording (see the module docstring).

    Args:
        path: bag directory or a ``.db3`` / ``.mcap`` file.
        rgb_topic / depth_topic / camera_info_topic: topic names (camera info optional).
        max_time_diff: largest |RGB stamp - depth stamp| of a pair, seconds.
        depth_scale_16u: metres per unit of 16-bit depth (0.001: millimetres).
        stride: keep every ``stride``-th pair (recordings are highly redundant).
        max_pairs: keep at most this many pairs (after the stride).
    """

    def __init__(
        self,
        path: str | Path,
        rgb_topic: str = "/camera/color/image_raw",
        depth_topic: str = "/camera/aligned_depth_to_color/image_raw",
        camera_info_topic: str | None = None,
        max_time_diff: float = 0.02,
        depth_scale_16u: float = 0.001,
        stride: int = 1,
        max_pairs: int | None = None,
        transform: Transform | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
    ):
        super().__init__(transform, ignore_index)
        from rosbags.rosbag2 import Reader

        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.path = Path(path)
        self.topics = (rgb_topic, depth_topic)
        self.depth_scale_16u = float(depth_scale_16u)
        self.K: np.ndarray | None = None
        self._reader: Any = None
        self._pid: int | None = None
        self._typestore: Any = None
        stamps: tuple[list[int], list[int]] = ([], [])
        # message locators per topic: (log time ns, header stamp ns)
        locators: tuple[list[tuple[int, int]], list[tuple[int, int]]] = ([], [])
        with Reader(self.path) as reader:
            conns = {t: [c for c in reader.connections if c.topic == t] for t in self.topics}
            available = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
            for topic, cs in conns.items():
                if not cs:
                    raise ValueError(f"topic {topic!r} is not in {self.path}; topics: {available}")
                bad = [c.msgtype for c in cs if c.msgtype not in IMAGE_TYPES]
                if bad:
                    raise ValueError(f"topic {topic!r} has type {bad[0]}, expected one of {IMAGE_TYPES}")
            which = {c.id: k for k, t in enumerate(self.topics) for c in conns[t]}
            for conn, log_ns, raw in reader.messages(connections=conns[rgb_topic] + conns[depth_topic]):
                k = which[conn.id]
                try:
                    stamp = header_stamp_ns(raw)
                except ValueError as exc:
                    log.warning(
                        "rosbag %s: skipping unreadable %s message at %d: %s",
                        self.path,
                        conn.topic,
                        log_ns,
                        exc,
                    )
                    continue
                stamps[k].append(stamp)
                locators[k].append((log_ns, stamp))
            if camera_info_topic is not None:
                self.K = self._read_camera_info(reader, camera_info_topic, available)
        pairs = pair_by_stamp(stamps[0], stamps[1], int(round(max_time_diff * 1e9)))[::stride]
        if max_pairs is not None:
            pairs = pairs[: int(max_pairs)]
        self.pairs = [(locators[0][ri], locators[1][di]) for ri, di in pairs]
        self.num_rgb, self.num_depth = len(stamps[0]), len(stamps[1])
        if not self.pairs:
            raise ValueError(
                f"no RGB/depth pairs within {max_time_diff} s in {self.path} "
                f"({self.num_rgb} {rgb_topic} and {self.num_depth} {depth_topic} messages)"
            )

    def _read_camera_info(self, reader: Any, topic: str, available: list[str]) -> np.ndarray:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise ValueError(f"camera info topic {topic!r} is not in {self.path}; topics: {available}")
        if conns[0].msgtype != CAMERA_INFO_TYPE:
            raise ValueError(f"topic {topic!r} has type {conns[0].msgtype}, expected {CAMERA_INFO_TYPE}")
        for conn, _, raw in reader.messages(connections=conns):
            info = _typestore().deserialize_cdr(raw, conn.msgtype)
            K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
            if K[0, 0] > 0 and K[1, 1] > 0:
                return K
        raise ValueError(f"no CameraInfo on {topic!r} in {self.path} has a valid K (fx, fy > 0)")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"] = None
        state["_typestore"] = None
        return state

    def _open(self) -> Any:
        # One reader per process: a forked DataLoader worker must not reuse the parent's handle.
        if self._reader is None or self._pid != os.getpid():
            from rosbags.rosbag2 import Reader

            self._reader = Reader(self.path)
            self._reader.open()
            self._pid = os.getpid()
            self._typestore = _typestore()
        return self._reader

    def _fetch(self, topic: str, locator: tuple[int, int]) -> Any:
        """Deserialise the message of ``topic`` logged at ``locator[0]`` with header stamp ``locator[1]``."""
        log_ns, stamp = locator
        reader = self._open()
        conns = [c for c in reader.connections if c.topic == topic]
        source = f"{self.path}:{topic}@{log_ns}"
        try:
            for conn, _, raw in reader.messages(connections=conns, start=log_ns, stop=log_ns + 1):
                if header_stamp_ns(raw) == stamp:
                    return self._typestore.deserialize_cdr(raw, conn.msgtype)
        except Exception as exc:  # any storage or deserialisation failure makes this sample corrupt
            raise CorruptSampleError(source, f"cannot read/deserialise message: {exc}") from exc
        raise CorruptSampleError(source, "message not found (bag changed since indexing?)")

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict[str, Any]:
        rgb_loc, depth_loc = self.pairs[index]
        rgb_msg = self._fetch(self.topics[0], rgb_loc)
        depth_msg = self._fetch(self.topics[1], depth_loc)
        source = f"{self.path}:{self.topics[0]}@{rgb_loc[0]}"
        try:
            image = image_msg_to_rgb(rgb_msg)
        except ValueError as exc:
            raise CorruptSampleError(source, str(exc)) from exc
        try:
            depth = depth_msg_to_metres(depth_msg, self.depth_scale_16u)
        except ValueError as exc:
            raise CorruptSampleError(f"{self.path}:{self.topics[1]}@{depth_loc[0]}", str(exc)) from exc
        if depth.shape != image.shape[:2]:
            raise CorruptSampleError(
                source,
                f"depth {depth.shape[1]}x{depth.shape[0]} does not match "
                f"RGB {image.shape[1]}x{image.shape[0]}: "
                "the depth topic must be registered (aligned) to the RGB camera",
            )
        return make_sample(
            image,
            name=f"{self.path.name}_{rgb_loc[1]}",
            depth=depth,
            K=self.K,
            ignore_index=self.ignore_index,
            source=source,
        )
