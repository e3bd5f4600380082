"""The C allocator of a ``snap-pc`` process: freed tile memory kept for the next tiles.

A graph allocates and frees the same few sizes of array for every chunk
(4 MiB bands, 20 MiB probability blocks, 36 MiB input stacks). glibc's
``malloc`` hands allocations above its ``mmap`` threshold straight back to
the kernel when they are freed and, with one arena per thread and core,
keeps other freed memory in many places at once; each new chunk then
touches fresh pages. Where a page fault is expensive (virtual machines under
nested virtualization, where it costs 20 to 100 µs instead of about 1 µs) the
kernel's share of a run reaches a third of it (``benchmarks/README.md``).

:func:`keep_freed_memory` tells glibc to keep that memory for reuse: blocks up
to 32 MiB from its heaps, up to 256 MiB of free heap kept, two arenas. On the
4096² inference graph with the rules this removed half the page faults and
9 % of the time, with a lower peak RSS. It is process-wide, so the command
line calls it for graph and operator runs (where it was measured), never an
import: a program that uses the library keeps its allocator as it set it. A
``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or
``MALLOC_TOP_PAD_`` in the environment (glibc's own settings) wins: nothing is
changed then.

Example
-------
>>> from snap_operators.core.allocator import GLIBC_SETTINGS, keep_freed_memory
>>> GLIBC_SETTINGS[0]  # set in the environment, it leaves glibc as configured there
'MALLOC_ARENA_MAX'
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

__all__ = ["keep_freed_memory", "GLIBC_SETTINGS"]

# mallopt(3) parameter numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8

#: The environment variables of glibc's allocator; any of them set: the user's choice stands.
GLIBC_SETTINGS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

#: ``mallopt`` values: a 1024² chunk of up to eight float32 bands (32 MiB, glibc's largest
#: threshold) comes from the heap; 256 MiB of free heap is kept; two arenas share the threads.
_SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 256 << 20), (_M_ARENA_MAX, 2))


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse in this process (see the module docstring).

    Returns
    -------
    bool
        True when applied; False off Linux, without glibc's ``mallopt`` (musl) or
        when one of :data:`GLIBC_SETTINGS` is in the environment.
    """
    if not sys.platform.startswith("linux") or any(k in os.environ for k in GLIBC_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc's, absent from musl (whose mallopt does nothing)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = all(mallopt(param, value) == 1 for param, value in _SETTINGS)
    log.debug("glibc allocator: keep freed memory (%s)", "applied" if applied else "refused")
    return applied
