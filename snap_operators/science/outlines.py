"""Boundary tracing of labelled pixel pieces into polygon rings (compiled).

:func:`piece_polygons` turns a label array (piece id ``1..n`` per pixel, 0
for none) into one polygon per piece, in pixel space (x = column, y = row,
pixel corners at integer coordinates). The rings are GDAL's
(``GDALPolygonize`` with 4-connectivity, as ``rasterio.features.shapes``
returns them) up to ring order, start vertex and direction: vertices only
where the outline turns, and where a piece touches itself at a corner the
outline is split so every polygon is valid (a hole touching the shell, or
two holes touching, at one point; GDAL does the same).

The tracer is a numba kernel that releases the GIL and builds no Python
object per ring: its output goes to shapely in one
``shapely.from_ragged_array`` call. That is what makes vector label masks of
a full Sentinel-2 tile cheap next to reading it.

Example
-------
>>> import numpy as np
>>> from snap_operators.science.outlines import piece_polygons
>>> labels = np.array([[1, 1, 2], [1, 2, 2]], dtype="int32")
>>> [g.wkt for g in piece_polygons(labels, 2)]
['POLYGON ((0 0, 2 0, 2 1, 1 1, 1 2, 0 2, 0 0))', 'POLYGON ((2 0, 3 0, 3 2, 1 2, 1 1, 2 1, 2 0))']
"""

from __future__ import annotations

import numpy as np
import shapely

from .jit import compile_now

__all__ = ["trace_rings", "piece_polygons"]


@compile_now
def _at(labels, y, x):
    h, w = labels.shape
    if y < 0 or x < 0 or y >= h or x >= w:
        return 0
    return labels[y, x]


@compile_now
def _ahead(labels, x, y, d):
    """Labels of the pixels ahead-left and ahead-right of vertex (x, y), heading d."""
    if d == 0:
        return _at(labels, y - 1, x), _at(labels, y, x)
    if d == 1:
        return _at(labels, y, x), _at(labels, y, x - 1)
    if d == 2:
        return _at(labels, y, x - 1), _at(labels, y - 1, x - 1)
    return _at(labels, y - 1, x - 1), _at(labels, y - 1, x)


@compile_now
def _trace(labels, n, split):
    h, w = labels.shape
    # Bounds: a ring has at most one vertex per boundary edge plus its
    # closing vertex, and at least one top edge (its lowest horizontal run
    # of edges has the piece below it).
    edges = 0
    tops = 0
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            if lab == 0:
                continue
            if _at(labels, y - 1, x) != lab:
                edges += 1
                tops += 1
            if _at(labels, y + 1, x) != lab:
                edges += 1
            if _at(labels, y, x - 1) != lab:
                edges += 1
            if _at(labels, y, x + 1) != lab:
                edges += 1
    xs = np.empty(edges + tops, dtype=np.int32)
    ys = np.empty(edges + tops, dtype=np.int32)
    ring_start = np.empty(tops + 1, dtype=np.int64)
    ring_label = np.empty(tops, dtype=np.int32)
    done = np.zeros((h, w), dtype=np.bool_)  # top edge already traced
    # Headings in pixel space (y grows downwards): east, south, west, north.
    dx = np.array([1, 0, -1, 0])
    dy = np.array([0, 1, 0, -1])
    nv = 0
    nr = 0
    for y0 in range(h):
        for x0 in range(w):
            lab = labels[y0, x0]
            if lab == 0 or done[y0, x0] or _at(labels, y0 - 1, x0) == lab:
                continue
            # A new ring, from the top-left corner of this pixel heading east
            # with the piece on the right; rings are found in row-major order
            # of their first top edge, so a piece's first ring is its shell.
            ring_start[nr] = nv
            ring_label[nr] = lab
            nr += 1
            xs[nv] = x0
            ys[nv] = y0
            nv += 1
            x, y, d = x0, y0, 0
            while True:
                if d == 0:
                    done[y, x] = True
                x += dx[d]
                y += dy[d]
                left, right = _ahead(labels, x, y, d)
                # Where the piece meets itself only at this corner, turning
                # left keeps following it (8-connected at corners): the
                # outline splits into valid rings there, as GDAL's does.
                if left == lab:
                    nd = (d + 3) % 4
                elif right == lab:
                    nd = d
                else:
                    nd = (d + 1) % 4
                if x == x0 and y == y0 and nd == 0:
                    break
                # Along a split side every pixel corner is a vertex too.
                on_split = (
                    (d % 2 == 0 and ((y == 0 and split[0]) or (y == h and split[1])))
                    or (d % 2 == 1 and ((x == 0 and split[2]) or (x == w and split[3])))
                )
                if nd != d or on_split:
                    xs[nv] = x
                    ys[nv] = y
                    nv += 1
                    d = nd
            xs[nv] = x0
            ys[nv] = y0
            nv += 1
    ring_start[nr] = nv

    # Group rings by piece (shell first, then holes in scan order).
    per_piece = np.zeros(n + 1, dtype=np.int64)
    for r in range(nr):
        per_piece[ring_label[r]] += 1
    poly_offsets = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        poly_offsets[k + 1] = poly_offsets[k] + per_piece[k + 1]
    slot = poly_offsets[:-1].copy()
    order = np.empty(nr, dtype=np.int64)
    for r in range(nr):
        k = ring_label[r] - 1
        order[slot[k]] = r
        slot[k] += 1
    ring_offsets = np.empty(nr + 1, dtype=np.int64)
    coords = np.empty((nv, 2), dtype=np.float64)
    pos = 0
    for i in range(nr):
        r = order[i]
        ring_offsets[i] = pos
        for v in range(ring_start[r], ring_start[r + 1]):
            coords[pos, 0] = xs[v]
            coords[pos, 1] = ys[v]
            pos += 1
    ring_offsets[nr] = pos
    return coords, ring_offsets, poly_offsets


def trace_rings(
    labels: np.ndarray, n: int | None = None, split: tuple[bool, bool, bool, bool] = (False,) * 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outline rings of every piece of a label array, as ragged arrays.

    Parameters
    ----------
    labels : numpy.ndarray
        int32, shape ``(h, w)``: piece id ``1..n`` per pixel, 0 for none.
        Every piece must be 4-connected and every id in ``1..n`` used.
    n : int, optional
        Number of pieces (default: ``labels.max()``).
    split : (bool, bool, bool, bool)
        For the ``top, bottom, left, right`` sides of the array: put a vertex
        at every pixel corner along that side. Pieces of neighbouring blocks
        then share their edges vertex for vertex, a valid coverage that
        ``shapely.coverage_union_all`` joins in linear time.

    Returns
    -------
    coords : numpy.ndarray
        float64, shape ``(m, 2)``: ring vertices (x = column, y = row),
        each ring closed.
    ring_offsets : numpy.ndarray
        int64, shape ``(r + 1,)``: where each ring starts in `coords`.
    poly_offsets : numpy.ndarray
        int64, shape ``(n + 1,)``: where each piece's rings start; a piece's
        first ring is its shell.
    """
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    if n is None:
        n = int(labels.max()) if labels.size else 0
    return _trace(labels, int(n), np.array(split, dtype=np.bool_))


def piece_polygons(
    labels: np.ndarray,
    n: int | None = None,
    origin: tuple[int, int] = (0, 0),
    split: tuple[bool, bool, bool, bool] = (False,) * 4,
) -> np.ndarray:
    """One shapely Polygon per piece of `labels` (index ``k - 1`` for piece ``k``).

    Parameters
    ----------
    labels, n, split
        As in :func:`trace_rings`.
    origin : (int, int)
        ``(row, col)`` added to the coordinates: the block's place in the scene.

    Returns
    -------
    numpy.ndarray of shapely.Polygon
        Shape ``(n,)``, pixel-space coordinates.
    """
    coords, ring_offsets, poly_offsets = trace_rings(labels, n, split)
    if len(poly_offsets) == 1:
        return np.zeros(0, dtype=object)
    if origin != (0, 0):
        coords += (origin[1], origin[0])
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords, (ring_offsets, poly_offsets))
