"""Batched multi-camera inference with a bounded batch size.

The scheduling module's `InferenceWorker` hands its callable the newest frame of up to
`max_batch` cameras (one slot per camera, latest frame wins). `MultiCameraBatcher` is that
callable: it groups the frames by image size (one forward needs one input size), splits each
group into batches of at most `max_batch_size`, runs them through a `DevicePipeline`, and
passes each camera's result to `on_result`. The bound keeps GPU memory and the latency of the
slowest camera predictable when many cameras are attached.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpt_perception.inference.scheduling import GatheredFrame, InferenceWorker

from .device_pipeline import DevicePipeline


@dataclass
class CameraFrame:
    """One camera frame and what its outputs need: the P matrix for point clouds, an optional
    metric (scale, shift) for relative-depth models, and anything the caller wants back (`meta`,
    e.g. the ROS header)."""

    image: np.ndarray
    P: Any = None  # noqa: N815
    metric_scale_shift: tuple[float, float] | None = None
    meta: Any = None


@dataclass
class CameraResult:
    key: Hashable
    frame: CameraFrame
    outputs: dict[str, np.ndarray]
    batch_size: int
    put_time: float = 0.0
    extra: dict = field(default_factory=dict)


def _as_frame(item: Any) -> CameraFrame:
    if isinstance(item, CameraFrame):
        return item
    if isinstance(item, np.ndarray):
        return CameraFrame(item)
    raise TypeError(
        f"camera items must be CameraFrame or an H x W x 3 uint8 array, got {type(item).__name__}"
    )


class MultiCameraBatcher:
    """Callable for `InferenceWorker`: frames of several cameras -> batched pipeline runs.

    Args:
        pipeline: the `DevicePipeline` (engine + pre/post-processing on one device).
        max_batch_size: most frames in one forward (>= 1).
        outputs: pipeline outputs computed for every frame.
        on_result: called with each `CameraResult` (e.g. to publish); results are also returned.
    """

    def __init__(
        self,
        pipeline: DevicePipeline,
        max_batch_size: int = 4,
        outputs: Sequence[str] = ("depth", "labels"),
        on_result: Callable[[CameraResult], Any] | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.pipeline = pipeline
        self.max_batch_size = max_batch_size
        self.outputs = tuple(outputs)
        self.on_result = on_result
        self.batch_sizes: list[int] = []  # sizes of the forwards run so far (for stats and tests)

    def plan(self, frames: Sequence[CameraFrame]) -> list[list[int]]:
        """Indices of `frames` per forward: same image size, in arrival order, at most
        max_batch_size per forward. Frames needing points only share a batch when their
        metric conversion is given per frame (always the case via CameraFrame)."""
        groups: dict[tuple, list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(frame.image.shape, []).append(i)
        batches = []
        for indices in groups.values():
            for start in range(0, len(indices), self.max_batch_size):
                batches.append(indices[start : start + self.max_batch_size])
        return batches

    def run(
        self, keys: Sequence[Hashable], items: Sequence[Any], put_times: Sequence[float] | None = None
    ) -> list[CameraResult]:
        frames = [_as_frame(item) for item in items]
        put_times = list(put_times) if put_times is not None else [0.0] * len(frames)
        results: list[CameraResult | None] = [None] * len(frames)
        needs_points = any(o in self.outputs for o in ("points", "points_rgb"))
        for batch in self.plan(frames):
            chosen = [frames[i] for i in batch]
            metric = None
            if any(f.metric_scale_shift is not None for f in chosen):
                if not all(f.metric_scale_shift is not None for f in chosen):
                    raise ValueError("within one batch either every frame or none carries metric_scale_shift")
                metric = [f.metric_scale_shift for f in chosen]
            P = [f.P for f in chosen] if needs_points else None  # noqa: N806
            outs = self.pipeline.run([f.image for f in chosen], self.outputs, P=P, metric_scale_shift=metric)
            self.batch_sizes.append(len(batch))
            for i, out in zip(batch, outs):
                results[i] = CameraResult(keys[i], frames[i], out, len(batch), put_times[i])
        done = [r for r in results if r is not None]
        if self.on_result is not None:
            for r in done:
                self.on_result(r)
        return done

    def __call__(self, gathered: Sequence[GatheredFrame]) -> list[CameraResult]:
        return self.run([g.key for g in gathered], [g.item for g in gathered], [g.put_time for g in gathered])


def make_worker(
    pipeline: DevicePipeline,
    max_batch_size: int = 4,
    outputs: Sequence[str] = ("depth", "labels"),
    on_result: Callable[[CameraResult], Any] | None = None,
    **worker_options,
) -> InferenceWorker:
    """An `InferenceWorker` (not started) whose batches go through a `MultiCameraBatcher`.
    Producers call `worker.submit(CameraFrame(...), key=camera_name)`."""
    batcher = MultiCameraBatcher(pipeline, max_batch_size, outputs, on_result)
    worker = InferenceWorker(batcher, max_batch=max_batch_size, **worker_options)
    worker.batcher = batcher
    return worker
