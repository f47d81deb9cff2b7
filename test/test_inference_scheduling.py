"""Latest-frame-wins mailboxes, batch gathering and the worker thread, with real threads.

Synchronisation is by events only; timeouts are generous upper bounds against hangs, never
assertions about speed."""
import threading

import pytest

from dpt_perception.inference.scheduling import FrameGatherer, InferenceWorker, LatestFrameMailbox

HANG = 10.0  # seconds; only ever reached when something is broken


def test_put_replaces_and_counts_drops():
    box = LatestFrameMailbox()
    assert box.put(1) is False
    assert box.put(2) is True
    assert box.put(3) is True
    assert (box.received, box.dropped) == (3, 2)
    assert box.take() == 3
    assert box.take() is None
    assert box.put(4) is False  # the slot was emptied by take


def test_wait_times_out_and_wakes_on_put_from_another_thread():
    box = LatestFrameMailbox()
    assert box.wait(timeout=0.01) is None
    waiting = threading.Event()
    got = []

    def consumer():
        waiting.set()
        got.append(box.wait(timeout=HANG))

    t = threading.Thread(target=consumer)
    t.start()
    assert waiting.wait(HANG)
    box.put("frame")
    t.join(HANG)
    assert got == ["frame"]


def test_gather_is_bounded_and_round_robin():
    g = FrameGatherer()
    for key in ("a", "b", "c"):
        g.put(key, f"{key}1")
    first = g.gather(max_batch=2, timeout=0)
    assert [f.key for f in first] == ["a", "b"]
    g.put("a", "a2")
    second = g.gather(max_batch=2, timeout=0)
    assert [f.key for f in second] == ["c", "a"]  # continues after the last camera served
    assert [f.item for f in second] == ["c1", "a2"]
    assert g.gather(max_batch=2, timeout=0) == []
    with pytest.raises(ValueError, match="max_batch"):
        g.gather(max_batch=0)


def test_gather_returns_on_close():
    g = FrameGatherer()
    g.mailbox("cam")
    started = threading.Event()
    result = []

    def consumer():
        started.set()
        result.append(g.gather(timeout=HANG))

    t = threading.Thread(target=consumer)
    t.start()
    assert started.wait(HANG)
    g.close()
    t.join(HANG)
    assert not t.is_alive() and result == [[]]


def test_worker_processes_latest_frames_and_reports_drops():
    entered = threading.Event()
    release = threading.Event()
    finished = threading.Event()
    seen = []

    def fn(batch):
        seen.append([f.item for f in batch])
        if len(seen) == 1:
            entered.set()
            assert release.wait(HANG)
        if [f.item for f in batch] == [9]:
            finished.set()

    with InferenceWorker(fn, max_batch=4) as worker:
        worker.submit(0)
        assert entered.wait(HANG)  # the worker is busy with frame 0
        for i in range(1, 10):
            assert worker.submit(i) is (i > 1)  # each put after the first replaces a pending frame
        release.set()
        assert finished.wait(HANG)
    assert seen == [[0], [9]]  # frames 1..8 were superseded, never processed
    stats = worker.stats()
    assert (stats.received, stats.dropped, stats.processed, stats.errors) == (10, 8, 2, 0)
    assert stats.latency_ms_max >= stats.latency_ms_mean >= 0.0
    assert stats.input_hz > 0
    assert not worker.running


def test_worker_batches_across_cameras():
    batches = []
    done = threading.Event()
    gate = threading.Event()

    def fn(batch):
        assert gate.wait(HANG)
        batches.append(sorted(f.key for f in batch))
        if sum(len(b) for b in batches) >= 3:
            done.set()

    worker = InferenceWorker(fn, max_batch=3)
    for cam in ("left", "right", "front"):
        worker.submit(f"img-{cam}", key=cam)
    worker.start()  # all three are pending before the first gather
    gate.set()
    assert done.wait(HANG)
    worker.stop()
    assert batches == [["front", "left", "right"]]


def test_worker_survives_errors():
    errors = []
    second = threading.Event()

    def fn(batch):
        if batch[0].item == "bad":
            raise ValueError("broken frame")
        second.set()

    failed = threading.Event()

    def on_error(exc):
        errors.append(exc)
        failed.set()

    with InferenceWorker(fn, on_error=on_error) as worker:
        worker.submit("bad")
        assert failed.wait(HANG)
        worker.submit("good")
        assert second.wait(HANG)
    stats = worker.stats()
    assert stats.errors == 1 and stats.processed == 1
    assert stats.last_error == "ValueError: broken frame"
    assert isinstance(errors[0], ValueError)
