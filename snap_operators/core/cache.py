"""A bounded, thread-safe cache for what is costly to build and shared by threads.

Compiled kernels and ONNX Runtime sessions are built once per process and
used by every tile; a long-lived process (a SNAP session, a notebook) that
meets many rule sets or models must not keep them all, so each cache keeps
its most recently used entries only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class LruCache(Generic[V]):
    """At most `maxsize` values by key; the least recently used goes first.

    ``get(key, build)`` returns the cached value or builds it once: threads
    asking for the same missing key wait for one build (building twice would
    compile twice or open two sessions).

    Parameters
    ----------
    maxsize : int
        Entries kept, at least 1.

    Examples
    --------
    >>> cache = LruCache(2)
    >>> cache.get("a", lambda: 1), cache.get("b", lambda: 2), cache.get("c", lambda: 3)
    (1, 2, 3)
    >>> "a" in cache, len(cache)
    (False, 2)
    """

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = int(maxsize)
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value for `key`, built by ``build()`` on a miss (under the cache's lock)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = build()
            self._items[key] = value
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
            return value

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._items.clear()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
