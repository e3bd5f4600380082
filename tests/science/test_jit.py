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
