"""Running statistics of one camera stream and their /diagnostics representation."""

from __future__ import annotations

import threading
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


class StreamStats:
    """Thread-safe counters for one camera: input rate, latency, dropped frames, errors.

    Rates and latencies cover a sliding window of the last `window` seconds so they follow
    changes (a new resolution, a slower camera) instead of averaging over the whole run.
    """

    def __init__(self, window: float = 5.0):
        self._window = window
        self._lock = threading.Lock()
        self._arrivals: deque[float] = deque()
        self._latencies: deque[tuple[float, float]] = deque()  # (when, seconds)
        self._ages: deque[tuple[float, float]] = deque()  # (when, seconds from receive to publish)
        self.received = 0
        self.processed = 0
        self.dropped = 0  # replaced by a newer frame before inference took it
        self.skipped = 0  # taken, but no output had a subscriber
        self.errors = 0
        self.last_error = ""
        self.net_shape: tuple[int, int] | None = None
        self.image_shape: tuple[int, int] | None = None

    def _trim(self, now: float) -> None:
        cutoff = now - self._window
        for queue in (self._arrivals,):
            while queue and queue[0] < cutoff:
                queue.popleft()
        for queue in (self._latencies, self._ages):
            while queue and queue[0][0] < cutoff:
                queue.popleft()

    def on_received(self) -> None:
        now = time.monotonic()
        with self._lock:
            self.received += 1
            self._arrivals.append(now)
            self._trim(now)

    def on_dropped(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def on_skipped(self) -> None:
        with self._lock:
            self.skipped += 1

    def on_error(self, text: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = text

    def on_processed(self, latency_s: float, age_s: float, net_shape, image_shape) -> None:
        now = time.monotonic()
        with self._lock:
            self.processed += 1
            self._latencies.append((now, latency_s))
            self._ages.append((now, age_s))
            self.net_shape = tuple(net_shape) if net_shape is not None else None
            self.image_shape = tuple(image_shape)
            self._trim(now)

    def snapshot(self) -> dict:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            rate = 0.0
            if len(self._arrivals) >= 2:
                span = self._arrivals[-1] - self._arrivals[0]
                rate = (len(self._arrivals) - 1) / span if span > 0 else 0.0
            latencies = [v for _, v in self._latencies]
            ages = [v for _, v in self._ages]
            return dict(
                input_rate_hz=rate,
                received=self.received,
                processed=self.processed,
                dropped=self.dropped,
                skipped=self.skipped,
                errors=self.errors,
                last_error=self.last_error,
                latency_mean_ms=1000.0 * sum(latencies) / len(latencies) if latencies else float("nan"),
                latency_max_ms=1000.0 * max(latencies) if latencies else float("nan"),
                age_max_ms=1000.0 * max(ages) if ages else float("nan"),
                net_shape=self.net_shape,
                image_shape=self.image_shape,
            )


def stream_status(
    name: str, hardware_id: str, stats: dict, extra: dict[str, str], warnings: list[str]
) -> DiagnosticStatus:
    """One DiagnosticStatus for a camera stream. Level: ERROR on recent conversion errors with
    nothing processed, WARN for configuration warnings or when no frames arrive, else OK."""
    values = {
        "input rate (Hz)": f"{stats['input_rate_hz']:.2f}",
        "frames received": str(stats["received"]),
        "frames processed": str(stats["processed"]),
        "frames dropped (replaced by newer)": str(stats["dropped"]),
        "frames skipped (no subscribers)": str(stats["skipped"]),
        "bad messages": str(stats["errors"]),
        "inference latency mean (ms)": f"{stats['latency_mean_ms']:.1f}",
        "inference latency max (ms)": f"{stats['latency_max_ms']:.1f}",
        "output age max (ms)": f"{stats['age_max_ms']:.1f}",
        "network input (HxW)": "x".join(map(str, stats["net_shape"])) if stats["net_shape"] else "",
        "image (HxW)": "x".join(map(str, stats["image_shape"])) if stats["image_shape"] else "",
    }
    values.update(extra)
    if stats["last_error"]:
        values["last bad message"] = stats["last_error"]
    level, message = DiagnosticStatus.OK, "ok"
    if stats["received"] == 0:
        level, message = DiagnosticStatus.WARN, "no images received yet"
    if warnings:
        level, message = DiagnosticStatus.WARN, "; ".join(warnings)
    if stats["errors"] and stats["processed"] == 0:
        level, message = DiagnosticStatus.ERROR, f"every image so far was rejected: {stats['last_error']}"
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in values.items()],
    )
