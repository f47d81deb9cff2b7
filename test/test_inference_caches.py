"""Every per-size cache is bounded (dpt_perception.caches) and reported."""
import copy
import pickle
import re

import numpy as np
import pytest
import torch

from dpt_perception.caches import LRUCache, bounded_cache, cache_report, cache_usage, live_caches
from dpt_perception.inference.geometry import PointCloudProjector
from dpt_perception.inference.labels import axis_taps
from dpt_perception.inference.pipeline import PerceptionPipeline
from dpt_perception.inference.preprocess import preprocess
from dpt_perception.model.testing import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_lru_cache_drops_the_least_recently_used_entry():
    cache = LRUCache("test_lru", 3)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("d", "D")
    assert cache.keys() == ["c", "a", "d"] and "b" not in cache
    assert (cache.hits, cache.evictions, len(cache)) == (1, 1, 3)
    calls = []
    assert cache.get_or_create("e", lambda: calls.append(1) or "E") == "E"
    assert cache.get_or_create("e", lambda: calls.append(1) or "X") == "E" and calls == [1]
    with pytest.raises(ValueError, match="maxsize must be an integer >= 1"):
        LRUCache("bad", 0)


def test_a_byte_bound_drops_old_entries_and_never_keeps_a_value_larger_than_itself():
    cache = LRUCache("test_bytes", 10, max_bytes=1000)
    cache.put("a", np.zeros(100, np.float32))  # 400 B
    cache.put("b", (np.zeros(50, np.float64), torch.zeros(25)))  # 400 + 100 B
    assert cache.bytes == 900 and len(cache) == 2
    cache.put("c", np.zeros(200, np.uint8))  # 1100 B in all: "a" goes
    assert cache.keys() == ["b", "c"] and cache.bytes == 700
    cache.put("huge", np.zeros(2000, np.uint8))
    assert "huge" not in cache and cache.bytes == 700
    cache.put("b", np.zeros(1, np.uint8))  # replacing an entry counts its new size only
    assert cache.bytes == 201
    assert cache_report([cache]) == "test_bytes 2/10 0.0/0 MiB"
    cache.clear()
    assert cache.bytes == 0 and len(cache) == 0


def test_copies_of_a_cache_are_empty_with_the_same_bound():
    cache = LRUCache("test_copy", 2, max_bytes=64, admit_on_repeat=True)
    cache.put(1, torch.zeros(3))
    for twin in (copy.deepcopy(cache), copy.copy(cache), pickle.loads(pickle.dumps(cache))):
        assert (twin.name, twin.maxsize, twin.max_bytes, len(twin), twin.bytes) == ("test_copy", 2, 64, 0, 0)
        assert twin.admit_on_repeat and twin in live_caches()


def test_admit_on_repeat_keeps_a_value_from_its_keys_second_request_on():
    cache = LRUCache("test_admit", 2, admit_on_repeat=True)
    made = []

    def make(key):
        return cache.get_or_create(key, lambda: made.append(key) or f"value {key}")

    assert make("a") == "value a" and len(cache) == 0  # asked once: computed, not kept
    assert make("a") == "value a" and cache.keys() == ["a"]  # asked again: kept
    assert make("a") == "value a" and made == ["a", "a"]  # then a hit
    for key in ("b", "c", "d"):  # remembered once-keys are bounded by maxsize too
        make(key)
    make("b")  # forgotten (only "c", "d" remembered): still not kept
    assert cache.keys() == ["a"] and made == ["a", "a", "b", "c", "d", "b"]


def test_a_one_off_frame_size_leaves_no_label_index_behind():
    """The exact-label gather index (one intp per output pixel: 24 MiB for 8192 x 384) is kept only
    for a size seen twice: a single odd-sized frame among a camera's adds nothing to the resident
    set of the frames after it (it did: +24 MiB per one-off size, until evicted)."""
    from dpt_perception.inference.labels import _gather_index

    pipeline = PerceptionPipeline(tiny_model(seed=0, num_classes=150, net_size=[64, 64]), device="cpu")
    rng = np.random.default_rng(0)
    gather = _gather_index.cache
    gather.clear()  # (other tests' sizes would be evicted by the count bound below)
    pipeline.infer_image(rng.integers(0, 256, (2048, 96, 3), dtype=np.uint8))
    assert gather.bytes == 0
    pipeline.infer_image(rng.integers(0, 256, (2048, 96, 3), dtype=np.uint8))
    assert gather.bytes == 2048 * 96 * np.dtype(np.intp).itemsize  # (one band or several: every pixel)


def test_bounded_cache_decorator_and_the_report():
    @bounded_cache("test_square", 4)
    def square(x):
        return x * x

    for x in range(10):
        assert square(x) == x * x
    assert len(square.cache) == 4 and square.cache.keys() == [(6,), (7,), (8,), (9,)]
    other = LRUCache("test_square", 4)
    other.put(0, 0)
    assert cache_usage([square.cache, other]) == {"test_square": (5, 8, 2, 0, None)}
    assert cache_report([square.cache, other]) == "test_square 5/8 x2"
    assert cache_report([]) == "none"
    square.cache_clear()
    assert len(square.cache) == 0


def test_the_normalisation_constants_cache_is_bounded():
    """One entry per (mean, std, device, dtype): it used to be a plain dict without a bound."""
    from dpt_perception.inference.preprocess import _AFFINE_CACHE

    rgb = np.zeros((8, 8, 3), np.uint8)
    for i in range(3 * _AFFINE_CACHE.maxsize):
        preprocess(rgb, (8, 8), (0.5, 0.5, 0.5), (0.5, 0.5, 0.1 + i / 100), "cpu")
    assert len(_AFFINE_CACHE) == _AFFINE_CACHE.maxsize


def test_a_stream_of_ever_new_widths_keeps_every_cache_within_its_bound():
    """48 frames, each of a new width (24 network widths, 48 label geometries), through the
    PerceptionPipeline: the position-embedding and label-tap caches fill up to their bounds and stay there."""
    model = tiny_model(seed=0)
    predictor = PerceptionPipeline(model, device="cpu", net_size=(96, 96))
    pos_cache = model.encoder._pos_cache
    taps = axis_taps.cache
    projector = PointCloudProjector()
    P = [100.0, 0, 50, 0, 0, 100.0, 40, 0, 0, 0, 1, 0]  # noqa: N806
    rng = np.random.default_rng(0)
    net_shapes = set()
    for width in range(24, 24 + 8 * 48, 8):
        rgb = rng.integers(0, 256, (96, width, 3), dtype=np.uint8)
        prediction = predictor.infer_image(rgb)
        assert prediction.depth.shape == (96, width) and prediction.labels.shape == (96, width)
        projector.project(prediction.depth, P)
        net_shapes.add(prediction.net_shape)
        for cache in live_caches():
            assert len(cache) <= cache.maxsize, cache
            assert cache.max_bytes is None or cache.bytes <= cache.max_bytes, cache
    assert len(net_shapes) > pos_cache.maxsize
    assert len(pos_cache) == pos_cache.maxsize and pos_cache.evictions > 0
    assert len(taps) == taps.maxsize and taps.evictions > 0
    assert len(projector._cache) == projector._cache.maxsize
    report = cache_report()
    for name in ("pos_embed", "label_taps", "label_gather", "point_rays", "normalise"):
        assert re.search(rf"\b{name} \d+/\d+", report), report
    for size, bound in re.findall(r"(\d+)/(\d+)", report):
        assert int(size) <= int(bound), report
