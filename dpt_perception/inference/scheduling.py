"""Latest-frame-wins scheduling: per-camera mailboxes, batch gathering, and a worker thread.

When inference is slower than the cameras, queues must not grow and outputs must not be stale:
each camera has a one-slot mailbox whose `put` never blocks and replaces an unconsumed frame
(counted as a drop). A consumer waits for ANY mailbox to hold a new frame and takes up to
`max_batch` of them, starting after the camera served last so no camera starves.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


class LatestFrameMailbox:
    """One-slot, overwrite-on-put mailbox. Thread-safe. Items are stored with their put time."""

    def __init__(self, key: Hashable = "default", condition: threading.Condition | None = None):
        self.key = key
        self._cond = condition if condition is not None else threading.Condition()
        self._item: Any = None
        self._stamp = 0.0
        self._full = False
        self.received = 0
        self.dropped = 0
        self._put_times: deque[float] = deque(maxlen=64)

    def put(self, item: Any) -> bool:
        """Store `item`, replacing any frame not taken yet. Never blocks (beyond the short lock).
        Returns True when an older frame was dropped."""
        now = time.monotonic()
        with self._cond:
            dropped = self._full
            self._item, self._stamp, self._full = item, now, True
            self.received += 1
            self.dropped += int(dropped)
            self._put_times.append(now)
            self._cond.notify_all()
        return dropped

    def _take_locked(self) -> tuple[Any, float] | None:
        if not self._full:
            return None
        item, stamp = self._item, self._stamp
        self._item, self._full = None, False
        return item, stamp

    def take(self) -> Any:
        """The pending frame (removing it), or None."""
        with self._cond:
            got = self._take_locked()
        return None if got is None else got[0]

    def wait(self, timeout: float | None = None) -> Any:
        """Block until a frame is pending (or timeout), then take it; None on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full, timeout=timeout):
                return None
            return self._take_locked()[0]

    @property
    def pending(self) -> bool:
        with self._cond:
            return self._full

    def input_rate(self) -> float:
        """Frames per second put over the recent window (0 with fewer than two)."""
        with self._cond:
            times = list(self._put_times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


@dataclass
class GatheredFrame:
    key: Hashable
    item: Any
    put_time: float  # time.monotonic() of the put


class FrameGatherer:
    """A set of per-camera mailboxes sharing one condition, so a consumer can wait on all."""

    def __init__(self):
        self._cond = threading.Condition()
        self._boxes: dict[Hashable, LatestFrameMailbox] = {}
        self._order: list[Hashable] = []
        self._next = 0
        self._closed = False

    def mailbox(self, key: Hashable) -> LatestFrameMailbox:
        """The mailbox of camera `key` (created on first use)."""
        with self._cond:
            box = self._boxes.get(key)
            if box is None:
                box = self._boxes[key] = LatestFrameMailbox(key, self._cond)
                self._order.append(key)
            return box

    def put(self, key: Hashable, item: Any) -> bool:
        return self.mailbox(key).put(item)

    @property
    def mailboxes(self) -> list[LatestFrameMailbox]:
        with self._cond:
            return [self._boxes[k] for k in self._order]

    def close(self) -> None:
        """Wake every waiting consumer; later gathers return [] immediately."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def gather(self, max_batch: int | None = None, timeout: float | None = None) -> list[GatheredFrame]:
        """Wait until at least one mailbox holds a frame, then take up to max_batch frames (one per
        camera, round-robin from the camera after the last one served). [] on timeout / close."""
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
        with self._cond:
            def ready() -> bool:
                return self._closed or any(b._full for b in self._boxes.values())

            if not self._cond.wait_for(ready, timeout=timeout) or self._closed:
                return []
            n = len(self._order)
            limit = n if max_batch is None else min(max_batch, n)
            out: list[GatheredFrame] = []
            start = self._next
            for step in range(n):
                if len(out) >= limit:
                    break
                idx = (start + step) % n
                key = self._order[idx]
                got = self._boxes[key]._take_locked()
                if got is not None:
                    out.append(GatheredFrame(key, got[0], got[1]))
                    self._next = (idx + 1) % n
            return out


@dataclass
class WorkerStats:
    received: int
    dropped: int
    processed: int
    errors: int
    input_hz: float
    output_hz: float
    latency_ms_last: float
    latency_ms_mean: float  # over the recent window: put -> callable returned
    latency_ms_max: float
    busy_ms_mean: float  # time inside the callable per batch, recent window
    last_error: str | None


class InferenceWorker:
    """Runs `fn(batch)` on a thread with the latest frames, off the producer's thread.

    fn receives a list of `GatheredFrame` (one per camera with a new frame, at most max_batch).
    Producers call `submit(item, key)`; it never blocks. Exceptions from fn are counted, kept in
    stats().last_error, passed to on_error if given, and the worker goes on.
    """

    def __init__(self, fn: Callable[[list[GatheredFrame]], Any], max_batch: int = 1,
                 on_error: Callable[[BaseException], Any] | None = None, name: str = "dpt-inference",
                 window: int = 50):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn = fn
        self.max_batch = max_batch
        self.on_error = on_error
        self.gatherer = FrameGatherer()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._processed = 0
        self._errors = 0
        self._last_error: str | None = None
        self._latencies: deque[float] = deque(maxlen=window)
        self._busy: deque[float] = deque(maxlen=window)
        self._done_times: deque[float] = deque(maxlen=window)

    def submit(self, item: Any, key: Hashable = "default") -> bool:
        """Hand a frame to the worker; returns True if it replaced an unprocessed one."""
        return self.gatherer.put(key, item)

    def start(self) -> InferenceWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop after the batch in progress (if any); joins the thread."""
        self._stop.set()
        self.gatherer.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> InferenceWorker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self.gatherer.gather(self.max_batch, timeout=0.5)
            if not batch:
                continue
            t0 = time.monotonic()
            try:
                self.fn(batch)
            except Exception as exc:  # a live node keeps going; the error is reported in stats
                with self._lock:
                    self._errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                if self.on_error is not None:
                    self.on_error(exc)
                continue
            t1 = time.monotonic()
            with self._lock:
                self._processed += len(batch)
                self._busy.append(t1 - t0)
                self._done_times.append(t1)
                for frame in batch:
                    self._latencies.append(t1 - frame.put_time)

    def stats(self) -> WorkerStats:
        boxes = self.gatherer.mailboxes
        with self._lock:
            lat = list(self._latencies)
            busy = list(self._busy)
            done = list(self._done_times)
            processed, errors, last_error = self._processed, self._errors, self._last_error
        output_hz = (len(done) - 1) / (done[-1] - done[0]) if len(done) >= 2 and done[-1] > done[0] else 0.0
        return WorkerStats(
            received=sum(b.received for b in boxes), dropped=sum(b.dropped for b in boxes),
            processed=processed, errors=errors, input_hz=sum(b.input_rate() for b in boxes),
            output_hz=output_hz, latency_ms_last=lat[-1] * 1e3 if lat else 0.0,
            latency_ms_mean=sum(lat) / len(lat) * 1e3 if lat else 0.0,
            latency_ms_max=max(lat) * 1e3 if lat else 0.0,
            busy_ms_mean=sum(busy) / len(busy) * 1e3 if busy else 0.0, last_error=last_error)
