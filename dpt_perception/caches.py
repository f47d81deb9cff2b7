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


def nbytes(value) -> int:
    """Bytes held by the arrays / tensors in `value` (tuples, lists, dicts and plain objects are
    walked; anything else counts 0)."""
    if hasattr(value, "nbytes") and isinstance(value.nbytes, int):
        return value.nbytes  # numpy arrays
    if hasattr(value, "element_size") and hasattr(value, "numel"):
        return value.element_size() * value.numel()  # torch tensors
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return sum(nbytes(v) for v in vars(value).values())
    return 0


class LRUCache:
    """A mapping of at most `maxsize` entries (and, with `max_bytes`, at most that many bytes of
    arrays / tensors in its values, `nbytes`); a hit makes its entry the most recent, an insert
    beyond a bound drops the least recently used ones (a value larger than `max_bytes` on its own
    is not kept). `admit_on_repeat`: `get_or_create` stores a value only the second time its key
    is asked for (the last `maxsize` keys asked for once are remembered), so a key seen once, such
    as one odd-sized frame among a camera's, leaves nothing resident. Thread-safe (one lock per
    cache)."""

    def __init__(self, name: str, maxsize: int, max_bytes: int | None = None, admit_on_repeat: bool = False):
        if int(maxsize) != maxsize or maxsize < 1:
            raise ValueError(f"cache {name!r}: maxsize must be an integer >= 1, got {maxsize!r}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"cache {name!r}: max_bytes must be >= 1 or None, got {max_bytes!r}")
        self.name = name
        self.maxsize = int(maxsize)
        self.max_bytes = max_bytes
        self.admit_on_repeat = admit_on_repeat
        self._seen_once: OrderedDict = OrderedDict()  # keys asked for once (admit_on_repeat)
        self._data: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self.bytes = 0
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
        size = nbytes(value) if self.max_bytes is not None else 0
        with self._lock:
            self._drop(key)
            if self.max_bytes is not None and size > self.max_bytes:
                return
            self._data[key] = value
            self._sizes[key] = size
            self.bytes += size
            limit = self.bytes if self.max_bytes is None else self.max_bytes
            while len(self._data) > self.maxsize or self.bytes > limit:
                self._drop(next(iter(self._data)))
                self.evictions += 1

    def _drop(self, key):
        if key in self._data:
            self.bytes -= self._sizes.pop(key)
            return self._data.pop(key)
        return None

    def get_or_create(self, key: Hashable, factory: Callable[[], object]):
        """The cached value of `key`, else `factory()` stored under it (computed outside the lock:
        two threads missing at once may both compute; the later one is kept)."""
        sentinel = _MISSING
        value = self.get(key, sentinel)
        if value is sentinel:
            value = factory()
            if self.admit_on_repeat:
                with self._lock:
                    first = self._seen_once.pop(key, sentinel) is sentinel
                    if first:
                        self._seen_once[key] = None
                        if len(self._seen_once) > self.maxsize:
                            self._seen_once.popitem(last=False)
                if first:
                    return value
            self.put(key, value)
        return value

    def pop(self, key: Hashable, default=None):
        with self._lock:
            return self._drop(key) if key in self._data else default

    def clear(self) -> None:
        with self._lock:
            self._seen_once.clear()
            self._data.clear()
            self._sizes.clear()
            self.bytes = 0

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
        return LRUCache(self.name, self.maxsize, self.max_bytes, self.admit_on_repeat)

    def __copy__(self) -> LRUCache:
        return LRUCache(self.name, self.maxsize, self.max_bytes, self.admit_on_repeat)

    def __reduce__(self):
        return LRUCache, (self.name, self.maxsize, self.max_bytes, self.admit_on_repeat)


_MISSING = object()


def bounded_cache(name: str, maxsize: int, max_bytes: int | None = None, admit_on_repeat: bool = False):
    """Decorator: memoise a function of hashable positional arguments in an `LRUCache` (exposed as
    the wrapper's `.cache`; `.cache_clear()` empties it)."""

    def decorate(fn):
        cache = LRUCache(name, maxsize, max_bytes, admit_on_repeat)

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


def cache_usage(caches: Iterable[LRUCache] | None = None) -> dict[str, tuple[int, int, int, int, int | None]]:
    """{name: (entries, bound, number of caches, bytes, byte bound or None)}; caches of one name
    (one per model, projector, engine...) are summed."""
    usage: dict[str, list] = {}
    for cache in live_caches() if caches is None else caches:
        entry = usage.setdefault(cache.name, [0, 0, 0, 0, 0])
        entry[0] += len(cache)
        entry[1] += cache.maxsize
        entry[2] += 1
        entry[3] += cache.bytes
        entry[4] = None if cache.max_bytes is None or entry[4] is None else entry[4] + cache.max_bytes
    return {name: tuple(v) for name, v in sorted(usage.items())}


def cache_report(caches: Iterable[LRUCache] | None = None) -> str:
    """'name entries/bound' per cache name, with 'MiB/MiB' for byte-bounded ones, e.g.
    'label_gather 1/16 3.1/64 MiB, pos_embed 1/8 0.2/128 MiB' (a name held by several caches shows
    their sums and 'xN')."""
    parts = []
    for name, (size, bound, count, used, byte_bound) in cache_usage(caches).items():
        text = f"{name} {size}/{bound}"
        if byte_bound is not None:
            text += f" {used / 2**20:.1f}/{byte_bound / 2**20:.0f} MiB"
        parts.append(text + (f" x{count}" if count > 1 else ""))
    return ", ".join(parts) if parts else "none"
