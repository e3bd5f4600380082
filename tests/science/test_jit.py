"""science.jit: numba kernels compiled on their first call, once."""

import time
from concurrent.futures import ThreadPoolExecutor

import numba

from snap_operators.science.jit import jit


def test_a_kernel_first_met_by_several_threads_is_compiled_once(monkeypatch):
    made = []
    real = numba.njit

    def counting(*a, **k):  # ours slow to make: without the lock, every thread would make its own
        if k.get("nogil"):  # numba's own calls (its overloads) pass none
            made.append(k)
            time.sleep(0.05)
        return real(*a, **k)

    def add_one(x):
        return x + 1

    kernel = jit(add_one)
    monkeypatch.setattr(numba, "njit", counting)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(kernel, range(16)))
    assert got == list(range(1, 17)) and len(made) == 1


def test_every_kernel_runs_where_numba_can_cache_nothing():
    """A read-only install with no writable home: numba's ``cache=True`` alone raises on decoration
    (the label masks' region and outline kernels once failed to import there). Every kernel then
    compiles per process: regions, outlines, the fused indices, a :func:`jit` kernel."""
    import subprocess
    import sys

    code = """
import numba.core.caching as caching
caching.CacheImpl._locator_classes = []  # no location numba may cache in
import numpy as np
from snap_operators.science.regions import label
from snap_operators.science.outlines import trace_rings
from snap_operators.science.indices import compute_indices
from snap_operators.science.jit import jit
labels, values, sizes = label(np.array([[1, 1, 2], [3, 1, 2]]))
assert sizes.tolist() == [3, 2, 1]
assert trace_rings(labels)[1].tolist() == [0, 7, 12, 17]  # three rings, of 7, 5 and 5 vertices
b = {r: np.full((4, 4), v, np.float32) for r, v in (("B4", 0.1), ("B8", 0.3))}
ndvi = compute_indices(b, ["NDVI"], method="numba")["NDVI"]
assert np.allclose(ndvi, 0.5)
assert jit(lambda x: x + 1)(1) == 2
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
