"""The bounded cache of compiled kernels and ONNX sessions."""

import threading
import time

import pytest

from snap_operators.core.cache import LruCache
from snap_operators.science import classify, inference


def test_least_recently_used_goes_first():
    cache = LruCache(2)
    assert cache.get("a", lambda: 1) == 1
    assert cache.get("b", lambda: 2) == 2
    assert cache.get("a", lambda: 99) == 1  # a hit: 'a' is now the most recent
    assert cache.get("c", lambda: 3) == 3
    assert "b" not in cache and "a" in cache and len(cache) == 2


def test_threads_asking_for_one_missing_key_build_it_once():
    cache, builds = LruCache(4), []

    def build():
        builds.append(1)
        time.sleep(0.05)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("k", build))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and all(g is got[0] for g in got)


def test_size_must_be_positive():
    with pytest.raises(ValueError):
        LruCache(0)


def test_module_caches_are_bounded():
    # a long SNAP or notebook session meeting many rule structures or models keeps a few only
    assert isinstance(classify._KERNELS, LruCache) and classify._KERNELS.maxsize <= 64
    assert isinstance(inference._SESSIONS, LruCache) and inference._SESSIONS.maxsize <= 8
