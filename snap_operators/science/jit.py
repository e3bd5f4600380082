"""Numba compilation on first call, for the science modules' kernels, and their array arguments.

numba is a dependency but costs about a second to import: a kernel
decorated here imports it, and compiles, when it is first called, not when
its module is imported (``snap_operators`` stays light to import).
"""

from __future__ import annotations

import functools
import threading

import numpy as np

__all__ = ["jit", "compile_now", "row_buffer"]

#: numba options of every kernel: no GIL (the engine's threads run kernels at once), no bounds
#: checks. No fastmath: it would let LLVM assume no NaNs and drop the kernels' NaN checks.
KERNEL_OPTIONS = {"nogil": True, "boundscheck": False}


def compile_now(fn=None, **options):
    """`fn` as a numba dispatcher (numba is imported now), with :data:`KERNEL_OPTIONS` and `options`.

    Cached on disk; where no cache location is writable (a read-only install
    and home directory) it is compiled once per process instead: numba's
    ``cache=True`` alone raises there. A decorator, bare or with options, for
    kernels that other kernels call (those must be dispatchers when the
    caller compiles); :func:`jit` for the others.

    Examples
    --------
    >>> @compile_now
    ... def half(x):
    ...     return x / 2
    >>> @compile_now(error_model="numpy")  # division by zero gives inf or NaN, as numpy's
    ... def ratio(x, y):
    ...     return half(x) / y
    >>> ratio(8.0, 2.0), ratio(1.0, 0.0)
    (2.0, inf)
    """
    if fn is None:
        return functools.partial(compile_now, **options)
    import numba

    opts = {**KERNEL_OPTIONS, **options}
    try:
        return numba.njit(cache=True, **opts)(fn)
    except RuntimeError:  # no writable cache location
        return numba.njit(**opts)(fn)


def jit(fn):
    """`fn` compiled by :func:`compile_now` on its first call: importing its module imports no numba.

    Examples
    --------
    >>> @jit
    ... def twice(x):
    ...     return 2 * x
    >>> twice(21)
    42
    """
    compiled = None
    # The engine's threads meet a kernel together on their first tiles: one dispatcher for all of
    # them, so it is compiled (or read from the cache) once.
    lock = threading.Lock()

    @functools.wraps(fn)
    def call(*args):
        nonlocal compiled
        if compiled is None:
            with lock:
                if compiled is None:
                    compiled = compile_now(fn)
        return compiled(*args)

    return call


def row_buffer(a: np.ndarray) -> tuple[np.ndarray, int]:
    """``(buffer, row stride)``: 2-D `a` as a 1-D array whose row ``i`` starts at ``i * stride``.

    No copy when the rows of `a` are contiguous (C arrays, and row or column
    windows of them): a kernel reads a window of a larger tile in place, with
    contiguous loads. Other layouts are copied to a C array first.

    Examples
    --------
    >>> a = np.arange(12.0).reshape(3, 4)
    >>> buf, stride = row_buffer(a[:, 1:3])
    >>> stride, buf[1 * stride:1 * stride + 2].tolist()
    (4, [5.0, 6.0])
    """
    item = a.itemsize
    if a.flags.c_contiguous:
        return a.reshape(-1), a.shape[1]
    if a.strides[1] == item and a.strides[0] > 0 and a.strides[0] % item == 0:
        stride = a.strides[0] // item
        n = (a.shape[0] - 1) * stride + a.shape[1]
        return np.lib.stride_tricks.as_strided(a, shape=(n,), strides=(item,), writeable=False), stride
    c = np.ascontiguousarray(a)
    return c.reshape(-1), c.shape[1]
