"""Connected regions of equal pixels and their contacts (compiled kernels).

:func:`label` numbers the 4- or 8-connected regions of equal value of a 2-D
array; :func:`touching_pairs` lists, for chosen regions, every pixel contact
with another region in the order GDAL's sieve filter meets them. Both are
numba kernels that release the GIL, so two chunks are labelled at once on
two cores; the sieve and the polygonizer of :mod:`snap_operators.science.vectorize`
are built on them.

Example
-------
>>> import numpy as np
>>> from snap_operators.science.regions import label
>>> labels, values, sizes = label(np.array([[1, 1, 2], [3, 1, 2]]))
>>> labels.tolist(), values.tolist(), sizes.tolist()
([[1, 1, 2], [3, 1, 2]], [1, 2, 3], [3, 2, 1])
"""

from __future__ import annotations

import numpy as np

from .jit import compile_now

__all__ = ["label", "touching_pairs", "paint"]


@compile_now
def _find(parent, a):
    root = a
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:
        parent[a], a = root, parent[a]
    return root


@compile_now
def _label(block, valid, eight):
    h, w = block.shape
    labels = np.zeros((h, w), dtype=np.int32)
    # Provisional ids, one per run of equal valid pixels along a row, joined
    # with a union-find whose roots are the smallest id: the run holding the
    # region's first pixel in row-major order.
    parent = np.empty(h * w + 1, dtype=np.int32)
    run_value = np.empty(h * w + 1, dtype=np.int64)
    run_size = np.empty(h * w + 1, dtype=np.int64)
    parent[0] = 0
    n_runs = 0
    for y in range(h):
        x = 0
        while x < w:
            if not valid[y, x]:
                x += 1
                continue
            v = block[y, x]
            s = x
            while x < w and valid[y, x] and block[y, x] == v:
                x += 1
            n_runs += 1
            run = n_runs
            parent[run] = run
            run_value[run] = v
            run_size[run] = x - s
            for c in range(s, x):
                labels[y, c] = run
            if y == 0:
                continue
            lo = s - 1 if eight and s > 0 else s
            hi = x + 1 if eight and x < w else x
            last = 0
            for c in range(lo, hi):
                above = labels[y - 1, c]
                if above == 0 or above == last or block[y - 1, c] != v:
                    continue
                last = above
                ra = _find(parent, run)
                rb = _find(parent, above)
                if ra < rb:
                    parent[rb] = ra
                elif rb < ra:
                    parent[ra] = rb
    # Final ids in order of each root run, hence of each region's first pixel.
    final = np.zeros(n_runs + 1, dtype=np.int32)
    n = 0
    for run in range(1, n_runs + 1):
        root = _find(parent, run)
        if root == run:
            n += 1
            final[run] = n
        else:
            final[run] = final[root]
    values = np.zeros(n, dtype=np.int64)
    sizes = np.zeros(n, dtype=np.int64)
    for run in range(1, n_runs + 1):
        k = final[run] - 1
        values[k] = run_value[run]
        sizes[k] += run_size[run]
    for y in range(h):
        for x in range(w):
            labels[y, x] = final[labels[y, x]]
    return labels, values, sizes


def label(block: np.ndarray, mask: np.ndarray | None = None, connectivity: int = 4):
    """Connected regions of equal value of `block`, valid where `mask`.

    Parameters
    ----------
    block : numpy.ndarray
        2-D integer array.
    mask : numpy.ndarray of bool, optional
        Pixels that belong to regions (default: all).
    connectivity : {4, 8}
        Neighbours across edges only, or across corners too.

    Returns
    -------
    labels : numpy.ndarray
        int32, shape of `block`: region id ``1..n``, numbered in row-major
        order of each region's first pixel; 0 outside `mask`.
    values : numpy.ndarray
        int64, shape ``(n,)``: the value of each region.
    sizes : numpy.ndarray
        int64, shape ``(n,)``: pixels per region.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, not {connectivity}")
    block = np.ascontiguousarray(block)
    if block.dtype.kind not in "iub":
        raise ValueError(f"expected an integer array, got {block.dtype}")
    valid = np.ones(block.shape, dtype=bool) if mask is None else np.ascontiguousarray(mask, dtype=bool)
    return _label(block, valid, connectivity == 8)


@compile_now
def _pairs(labels, chosen, eight):
    h, w = labels.shape
    # GDAL's sieve compares each pixel with its up, up-left, up-right and
    # left neighbour (keys 0-3) in row-major order; a contact is keyed by
    # the later pixel of the two, so both regions see it at the same place.
    ups = np.array([0, 1, 2, 3]) if eight else np.array([0, 3])
    dy = np.array([-1, -1, -1, 0])
    dx = np.array([0, -1, 1, -1])
    cap = 0
    for y in range(h):
        for x in range(w):
            if chosen[labels[y, x]]:
                cap += 8 if eight else 4
    src = np.empty(cap, dtype=np.int64)
    dst = np.empty(cap, dtype=np.int64)
    key = np.empty(cap, dtype=np.int64)
    m = 0
    for y in range(h):
        for x in range(w):
            me = labels[y, x]
            if not chosen[me]:
                continue
            for k in ups:
                # The neighbour before me (sign -1: I am the later pixel of
                # the two) and the one after me (sign 1: it is).
                for sign in (-1, 1):
                    yy, xx = y - sign * dy[k], x - sign * dx[k]
                    if 0 <= yy < h and 0 <= xx < w:
                        other = labels[yy, xx]
                        if other != me and other > 0:
                            later = y * w + x if sign < 0 else yy * w + xx
                            src[m] = me
                            dst[m] = other
                            key[m] = later * 4 + k
                            m += 1
    return src[:m], dst[:m], key[:m]


def touching_pairs(labels: np.ndarray, chosen: np.ndarray, connectivity: int = 4):
    """Every contact of a chosen region's pixel with another region's pixel.

    Parameters
    ----------
    labels : numpy.ndarray
        int32 region ids (0: none), as returned by :func:`label`.
    chosen : numpy.ndarray of bool
        Shape ``(n + 1,)``: the regions whose contacts are wanted (index 0,
        no region, must be False).
    connectivity : {4, 8}

    Returns
    -------
    src, dst, key : numpy.ndarray
        int64, one entry per contact: the chosen region, the region it
        touches, and GDAL's comparison order of the contact
        (``pixel index * 4 + direction``, the later pixel's index).
    """
    chosen = np.ascontiguousarray(chosen, dtype=bool)
    if len(chosen) and chosen[0]:
        raise ValueError("region 0 (no region) cannot be chosen")
    return _pairs(np.ascontiguousarray(labels, dtype=np.int32), chosen, connectivity == 8)


@compile_now
def _paint(block, labels, new_values, changed):
    out = block.copy()
    h, w = block.shape
    for y in range(h):
        for x in range(w):
            k = labels[y, x]
            if changed[k]:
                out[y, x] = new_values[k]
    return out


def paint(block: np.ndarray, labels: np.ndarray, new_values: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """A copy of `block` where the pixels of each `changed` region take its new value.

    Parameters
    ----------
    block : numpy.ndarray
        2-D integer array.
    labels : numpy.ndarray
        int32 region ids of `block` (0: none), as returned by :func:`label`.
    new_values : numpy.ndarray
        Shape ``(n + 1,)``: value per region id, in `block`'s dtype.
    changed : numpy.ndarray of bool
        Shape ``(n + 1,)``: regions to repaint (index 0 must be False).
    """
    block = np.ascontiguousarray(block)
    return _paint(block, np.ascontiguousarray(labels, dtype=np.int32),
                  np.asarray(new_values).astype(block.dtype), np.ascontiguousarray(changed, dtype=bool))
