"""The one bounded cache of the package: everything memoised per image size, grid or shape.

Every cache keyed by something a sender controls (the image size, hence the network input, the
token grid, the label resampling geometry, an engine's input shape) is an `LRUCache` with a fixed
bound: a stream of ever-new sizes evicts the least recently used entries instead of growing the
process. Each cache has a name; `live_caches()` finds those alive in the process and
`cache_report()` is the line the node publishes on /diagnostics ("caches": "pos_embed 3/8,
label_taps 2/32, ..."). `bounded_cache(name, maxsize)` is the decorator form for module-level
functions (instead of functools.lru_cache, so those are reported too).

A copy (copy.deepcopy, pickling with the model) is an empty cache with the same name and bound:
cached values derive from weights or devices the copy may not share.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable

_LIVE: weakref.WeakSet = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


class LRUCache:
    """A mapping of at most `maxsize` entries; a hit makes its entry the most recent, an insert
    beyond the bound drops the least recently used one. Thread-safe (one lock per cache)."""

    def __init__(self, name: str, maxsize: int):
        if int(maxsize) != maxsize or maxsize < 1:
            raise ValueError(f"cache {name!r}: maxsize must be an integer >= 1, got {maxsize!r}")
        self.name = name
        self.maxsize = int(maxsize)
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        with _LIVE_LOCK:
            _LIVE.add(self)

    def get(self, key: Hashable, default=None):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return default

    def put(self, key: Hashable, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
                self.evictions += 1

    def get_or_create(self, key: Hashable, factory: Callable[[], object]):
        """The cached value of `key`, else `factory()` stored under it (computed outside the lock:
        two threads missing at once may both compute; the later one is kept)."""
        sentinel = _MISSING
        value = self.get(key, sentinel)
        if value is sentinel:
            value = factory()
            self.put(key, value)
        return value

    def pop(self, key: Hashable, default=None):
        with self._lock:
            return self._data.pop(key, default)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def keys(self) -> list:
        """The keys, least recently used first."""
        with self._lock:
            return list(self._data)

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"LRUCache({self.name!r}, {len(self)}/{self.maxsize})"

    # Copies start empty (see the module docstring); a lock cannot be copied anyway.
    def __deepcopy__(self, memo) -> LRUCache:
        return LRUCache(self.name, self.maxsize)

    def __copy__(self) -> LRUCache:
        return LRUCache(self.name, self.maxsize)

    def __reduce__(self):
        return LRUCache, (self.name, self.maxsize)


_MISSING = object()


def bounded_cache(name: str, maxsize: int):
    """Decorator: memoise a function of hashable positional arguments in an `LRUCache` (exposed as
    the wrapper's `.cache`; `.cache_clear()` empties it)."""

    def decorate(fn):
        cache = LRUCache(name, maxsize)

        @functools.wraps(fn)
        def wrapper(*args):
            return cache.get_or_create(args, lambda: fn(*args))

        wrapper.cache = cache
        wrapper.cache_clear = cache.clear
        return wrapper

    return decorate


def live_caches() -> list[LRUCache]:
    """Every `LRUCache` alive in this process (module-level ones and those of live objects)."""
    with _LIVE_LOCK:
        return list(_LIVE)


def cache_usage(caches: Iterable[LRUCache] | None = None) -> dict[str, tuple[int, int, int]]:
    """{name: (entries, bound, number of caches)}; caches of one name (one per model, projector,
    engine...) are summed."""
    usage: dict[str, list[int]] = {}
    for cache in live_caches() if caches is None else caches:
        entry = usage.setdefault(cache.name, [0, 0, 0])
        entry[0] += len(cache)
        entry[1] += cache.maxsize
        entry[2] += 1
    return {name: tuple(v) for name, v in sorted(usage.items())}


def cache_report(caches: Iterable[LRUCache] | None = None) -> str:
    """'name entries/bound' per cache name, e.g. 'label_taps 2/32, pos_embed 1/8' (a name held by
    several caches shows their sums and 'xN')."""
    parts = []
    for name, (size, bound, count) in cache_usage(caches).items():
        parts.append(f"{name} {size}/{bound}" + (f" x{count}" if count > 1 else ""))
    return ", ".join(parts) if parts else "none"
