"""Numba compilation on first call, for the science modules' kernels.

numba is a dependency but costs about a second to import: a kernel
decorated here imports it, and compiles, when it is first called, not when
its module is imported (``snap_operators`` stays light to import).
"""

from __future__ import annotations

import functools
import threading

__all__ = ["jit"]


def jit(fn):
    """`fn` compiled by numba (``nogil``, no bounds checks, cached on disk) on its first call.

    Where no cache location is writable it is compiled once per process.
    No fastmath: it would let LLVM assume no NaNs and drop the kernels' NaN
    checks.

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
                    import numba

                    try:
                        compiled = numba.njit(nogil=True, cache=True, boundscheck=False)(fn)
                    except RuntimeError:  # no writable cache location: compile per process
                        compiled = numba.njit(nogil=True, boundscheck=False)(fn)
        return compiled(*args)

    return call
