"""Chunked polygonization of class rasters: regions, sieve, simplification.

Pure functions (and one bookkeeping class) with no operator code; the
``LabelMaskExport`` operator streams a class band through them.

Geometry is built in **pixel space** (x = column, y = row, pixel corners at
integer coordinates) where GDAL's polygons are exact and unions of pieces
from neighbouring chunks are exact too; :func:`pixel_to_crs` maps the result
to the CRS with GDAL's own arithmetic, so the output equals what
``rasterio.features.shapes`` gives on the whole raster (up to ring order
and start vertex). The pixel work is compiled: region labelling and
contacts in :mod:`snap_operators.science.regions`, outlines in
:mod:`snap_operators.science.outlines`.

Pipeline, per chunk of the class array:

1. :func:`sieve_block` (through :func:`sieve_dask`, a ``map_overlap``)
   removes regions below the minimum mapping unit;
2. :func:`polygonize_chunk` polygonizes the chunk and splits its regions into
   *complete* ones (touching no internal chunk border: written at once) and
   *border* ones;
3. :class:`RegionMerger` matches border regions of neighbouring chunks on
   their border pixel labels (union-find) and hands back a region once every
   chunk it could extend into has arrived; :func:`merge_pieces` unions its
   pieces.

Example
-------
>>> import numpy as np
>>> from snap_operators.science.vectorize import polygonize
>>> classes = np.array([[1, 1, 2], [1, 2, 2]], dtype="uint8")
>>> [(v, g.area) for v, g in sorted(polygonize(classes, chunk=2), key=lambda r: r[0])]
[(1, 3.0), (2, 3.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import dask.array as da
import numpy as np
import shapely
from affine import Affine

from . import regions
from .outlines import piece_polygons

#: Sieve chain length: a small region whose largest neighbour is itself small
#: follows that neighbour's choice, as GDAL does, for at most this many hops.
SIEVE_HOPS = 3

#: Sides of a chunk, in the order strips are kept.
SIDES = ("top", "bottom", "left", "right")



# --- connected regions ---------------------------------------------------------


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component id (the smallest member) of nodes ``0..n-1`` joined by edges ``a-b``."""
    parent = np.arange(n)
    if len(a) == 0:
        return parent
    while True:
        ra, rb = parent[a], parent[b]
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        todo = lo != hi
        if not todo.any():
            return parent
        # Hook roots onto smaller roots (never a cycle), then compress paths.
        np.minimum.at(parent, hi[todo], lo[todo])
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def _diagonal_pairs(labels: np.ndarray, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels of diagonally touching pixels of equal value (the 8-only links)."""
    out_a, out_b = [], []
    for (ya, xa), (yb, xb) in (
        ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
        ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),
    ):
        la, lb = labels[ya, xa], labels[yb, xb]
        m = (la != lb) & (la > 0) & (lb > 0) & (block[ya, xa] == block[yb, xb])
        out_a.append(la[m])
        out_b.append(lb[m])
    return np.concatenate(out_a), np.concatenate(out_b)


@dataclass
class Pieces:
    """The 4-connected polygons of a block and their pixel labels.

    Attributes
    ----------
    geoms : numpy.ndarray of shapely.Polygon, or None
        One polygon per piece (a 4-connected set of equal pixels), in block
        pixel coordinates (x = column, y = row); None when not asked for.
    values : numpy.ndarray
        Pixel value of each piece, shape ``(n,)``.
    labels : numpy.ndarray
        Shape of the block, int32: piece index + 1 per pixel, 0 where masked.
    region : numpy.ndarray
        Shape ``(n,)``: region index of each piece (equals the piece index
        with 4-connectivity; 8-connectivity joins pieces touching at corners).
    """

    geoms: np.ndarray | None
    values: np.ndarray
    labels: np.ndarray
    region: np.ndarray

    @property
    def count(self) -> int:
        return len(self.values)


def piece_labels(block: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label the 4-connected pieces of equal value of `block`, valid where `mask`.

    Returns
    -------
    labels : numpy.ndarray
        int32, shape of `block`: piece id ``1..n`` per pixel, numbered in
        row-major order of each piece's first pixel; 0 where masked.
    values : numpy.ndarray
        Shape ``(n,)``: pixel value of each piece.
    """
    labels, values, _ = regions.label(block, mask, 4)
    return labels, values


def label_pieces(
    block: np.ndarray,
    connectivity: int = 4,
    mask: np.ndarray | None = None,
    geometries: bool = True,
    origin: tuple[int, int] = (0, 0),
    split: tuple[bool, bool, bool, bool] = (False,) * 4,
) -> Pieces:
    """Polygonize `block` into 4-connected pieces and label its pixels.

    Parameters
    ----------
    block : numpy.ndarray
        2-D integer array.
    connectivity : {4, 8}
        Region connectivity; pieces are always 4-connected (GDAL's polygons
        of 8-connected regions self-touch and are invalid), 8-connected
        regions are groups of pieces (`Pieces.region`).
    mask : numpy.ndarray of bool, optional
        Pixels to polygonize; others get label 0 and belong to no piece.
    geometries : bool
        Also return the pieces as shapely polygons, GDAL's up to ring order
        and start (:func:`snap_operators.science.outlines.piece_polygons`; pieces are
        numbered as by :func:`piece_labels` either way).
    origin : (int, int)
        ``(row, col)`` of the block's first pixel: the polygons' offset.
    split : (bool, bool, bool, bool)
        Sides (``top, bottom, left, right``) along which the polygons get a
        vertex at every pixel corner, so pieces of neighbouring chunks meet
        vertex for vertex (see :func:`merge_pieces`).
    """
    block = np.asarray(block)
    labels, values = piece_labels(block, mask)
    geoms = piece_polygons(labels, len(values), origin, split) if geometries else None
    region = np.arange(len(values))
    if connectivity == 8 and len(values):
        a, b = _diagonal_pairs(labels, block)
        region = _components(len(values) + 1, a, b)[1:] - 1
    return Pieces(geoms, values, labels, region)


def region_labels(block: np.ndarray, connectivity: int = 4, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Connected regions of equal value (4- or 8-`connectivity`), valid where `mask`.

    Returns
    -------
    labels : numpy.ndarray
        int32, shape of `block`: region id ``1..n`` per pixel, 0 where masked.
    values : numpy.ndarray
        Shape ``(n + 1,)``: value of each region (index 0 unused).
    """
    labels, values, _ = regions.label(block, mask, connectivity)
    return labels, np.r_[0, values]


# --- sieve --------------------------------------------------------------------


def sieve_depth(size: int, hops: int = SIEVE_HOPS) -> int:
    """Halo (pixels) that makes :func:`sieve_block` exact for regions < `size` pixels.

    A connected region of fewer than `size` pixels spans at most ``size - 2``
    pixels from any of its pixels, so every region a chain of `hops` largest
    neighbours can visit, and each of their neighbours, lies within
    ``(hops + 1) * (size - 1)`` pixels of the chunk: see :func:`sieve_block`.
    """
    return max(0, (hops + 1) * (int(size) - 1))


def sieve(
    classes: np.ndarray,
    size: int,
    connectivity: int = 4,
    no_data: int | None = 255,
    hops: int = SIEVE_HOPS,
    gdal: bool = False,
) -> np.ndarray:
    """Sieve a whole in-memory class array (see :func:`sieve_block`).

    With `gdal`, neighbours are compared by their true sizes and chains are
    followed to their end: exactly ``rasterio.features.sieve`` (whole arrays
    only; kept to check this implementation against GDAL).
    """
    return sieve_block(classes, size, connectivity, no_data, hops, halo=False, gdal=gdal)


def sieve_block(
    window: np.ndarray,
    size: int,
    connectivity: int = 4,
    no_data: int | None = 255,
    hops: int = SIEVE_HOPS,
    halo: bool = True,
    gdal: bool = False,
) -> np.ndarray:
    """Merge regions smaller than `size` pixels into a neighbouring region.

    The semantics of ``rasterio.features.sieve`` (GDAL's sieve filter), made
    exact on tiles: a connected region of fewer than `size` valid pixels
    ("small") takes the value of its largest neighbouring region; when that
    neighbour is itself small, the neighbour's own choice is followed (GDAL's
    chain; at most `hops` hops; a cycle leaves the region unchanged). No-data
    pixels are never changed, never counted and never neighbours; a region
    without valid neighbours stays. One pass, as GDAL: regions are not
    re-examined after merging.

    Parameters
    ----------
    window : numpy.ndarray
        2-D integer class array (a chunk plus its halo, or a whole scene).
    size : int
        Minimum region size in pixels; 0 or 1 changes nothing.
    connectivity : {4, 8}
    no_data : int, optional
        Value of pixels to leave out.
    hops : int
        Longest chain of small largest neighbours followed.
    halo : bool
        Whether `window` ends in a halo (regions reaching its outermost ring
        may continue beyond it); False for a whole scene.
    gdal : bool
        GDAL's rule: true sizes, unlimited chains (whole scenes only).

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as `window`.

    Notes
    -----
    Tiled exactness. GDAL compares the *true* sizes of neighbours, which may
    span the whole scene, so its result for one pixel can depend on pixels
    anywhere. Here sizes count only up to `size`: every neighbour of at least `size` pixels
    is equally "large"; a small region with large neighbours takes the class
    that shares the longest border with it among them (ties: the class met
    first in row-major order); among small neighbours the largest wins, ties
    to the one met first in row-major order (GDAL's rule). Every decision
    then depends only on pixels near the region, and the function is exact
    on a chunk padded with a halo of :func:`sieve_depth` pixels
    (``map_overlap``; beyond the scene the halo is no-data):

    * a region of fewer than `size` pixels spans at most ``size - 2`` pixels,
      so one that reaches the chunk lies whole in the window and off its
      outermost ring; a region reaching the ring is treated as large and is
      never sieved from this window's view (it may continue outside, and a
      small region meeting the chunk cannot reach the ring);
    * likewise every neighbour of each region of a chain of `hops` hops is
      seen whole when small, and reaches the ring or has `size` pixels in view
      when large. A large region cut in two by the window edge still counts
      once per class, so border lengths add up as in the whole scene.

    Identical to ``rasterio.features.sieve`` wherever GDAL's choice does not
    depend on which of two large neighbours of different classes is larger
    and chains are at most `hops` hops (e.g. specks and clusters of specks
    inside one class); a small region between two large ones goes to the
    class it shares more border with, where GDAL picks the larger region.
    """
    window = np.asarray(window)
    if size <= 1 or window.size == 0:
        return window
    if gdal and halo:
        raise ValueError("the GDAL rule needs the whole scene (halo=False)")
    valid = None if no_data is None else window != no_data
    labels, values, sizes = regions.label(window, valid, connectivity)
    n = len(values)
    if n == 0:
        return window
    values, sizes = np.r_[0, values], np.r_[0, sizes]
    large = sizes >= size
    if halo:
        ring = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        large[ring] = True
    large[0] = True
    if large[1:].all():
        return window
    if gdal:
        rank, by_class, hops = sizes, np.zeros(n + 1, dtype=bool), n + 1
    else:
        rank, by_class = np.where(large, size, sizes), large

    src, dst, key = regions.touching_pairs(labels, ~large, connectivity)
    if len(src) == 0:
        return window
    # Candidates: one per small neighbour, one per class of large neighbours,
    # each with its first meeting (GDAL's order) and its border length.
    group = np.where(by_class[dst], -1 - values[dst], dst)
    order = np.lexsort((key, group, src))
    src, dst, group, key = src[order], dst[order], group[order], key[order]
    starts = np.flatnonzero(np.r_[True, (src[1:] != src[:-1]) | (group[1:] != group[:-1])])
    c_src, c_dst, c_key = src[starts], dst[starts], key[starts]
    border = np.diff(np.r_[starts, len(src)])
    c_border = np.where(by_class[c_dst], border, 0)
    best = np.lexsort((c_key, -c_border, -rank[c_dst], c_src))
    c_src, c_dst = c_src[best], c_dst[best]
    head = np.r_[True, c_src[1:] != c_src[:-1]]
    biggest = np.full(n + 1, -1, dtype=np.int64)
    biggest[c_src[head]] = c_dst[head]

    origin = np.flatnonzero(~large)
    cur = biggest[origin]
    target = np.full(len(origin), -1, dtype=np.int64)
    alive = cur >= 0
    seen = np.zeros((0, len(origin)), dtype=np.int64) if gdal else [origin]
    visited = {}
    for hop in range(hops):
        hit = alive & large[np.maximum(cur, 0)]
        target[hit] = cur[hit]
        alive &= ~hit
        if gdal:
            # Unlimited chains: a per-origin visited set, as GDAL keeps.
            for i in np.flatnonzero(alive):
                v = visited.setdefault(i, {int(origin[i])})
                if int(cur[i]) in v:
                    alive[i] = False
                else:
                    v.add(int(cur[i]))
        else:
            for s in seen:
                alive &= cur != s
        if hop == hops - 1 or not alive.any():
            break
        if not gdal:
            seen.append(cur.copy())
        cur = np.where(alive, biggest[np.maximum(cur, 0)], -1)
        alive &= cur >= 0

    new_values = values.copy()
    ok = target >= 0
    new_values[origin[ok]] = values[target[ok]]
    changed = new_values != values
    if not changed.any():
        return window
    return regions.paint(window, labels, new_values, changed)


def sieve_dask(
    classes: da.Array, size: int, connectivity: int = 4, no_data: int | None = 255, hops: int = SIEVE_HOPS
) -> da.Array:
    """Lazy :func:`sieve_block` of a whole class array, chunk by chunk with a halo.

    Memory per task is one chunk plus a halo of :func:`sieve_depth` pixels;
    chunks smaller than the halo are merged by ``map_overlap``. The halo
    beyond the scene is `no_data`, so regions on the scene edge are seen whole.
    """
    if size <= 1:
        return classes
    if no_data is None:
        raise ValueError("sieve_dask needs a no-data value to pad the scene with")
    depth = sieve_depth(size, hops)
    # An axis shorter than the halo fits in one chunk: that chunk sees the whole extent, so one pixel of
    # no-data beyond the scene is all the halo it needs (map_overlap refuses a depth beyond the array).
    short = [axis for axis in (0, 1) if depth >= classes.shape[axis]]
    if short:
        classes = classes.rechunk({axis: -1 for axis in short})
    return classes.map_overlap(
        sieve_block,
        depth={axis: 1 if axis in short else depth for axis in (0, 1)},
        boundary=no_data,
        trim=True,
        dtype=classes.dtype,
        meta=np.empty((0, 0), dtype=classes.dtype),
        size=int(size),
        connectivity=connectivity,
        no_data=no_data,
        hops=hops,
    )


# --- chunk polygonization --------------------------------------------------------


@dataclass
class ChunkRegions:
    """A chunk's regions, split into complete ones and those on internal borders.

    Coordinates are scene pixel coordinates.

    Attributes
    ----------
    complete : list of (int, shapely geometry)
        Regions touching no internal chunk border: final.
    border_values : numpy.ndarray
        Value of each border region, shape ``(m,)``.
    border_pieces : list of list of shapely.Polygon
        Pieces of each border region.
    strips : dict
        For each internal side (``top, bottom, left, right``), the border
        region index of each pixel along it (-1: none), int64.
    """

    complete: list
    border_values: np.ndarray
    border_pieces: list
    strips: dict


def polygonize_chunk(
    block: np.ndarray,
    origin: tuple[int, int],
    exported: np.ndarray,
    internal: dict[str, bool],
    connectivity: int = 4,
    tolerance: float = 0.0,
    y_scale: float = 1.0,
) -> ChunkRegions:
    """Polygonize one chunk of a class array.

    Parameters
    ----------
    block : numpy.ndarray
        2-D integer chunk.
    origin : (int, int)
        ``(row, col)`` of the chunk's first pixel in the scene.
    exported : numpy.ndarray of bool
        Pixels whose regions are wanted (valid and of an exported class).
    internal : dict of str to bool
        For each side, whether another chunk lies beyond it.
    connectivity : {4, 8}
    tolerance : float
        Simplification tolerance in pixels (x pixels); 0 keeps GDAL's exact
        pixel outlines. The chunk's pieces, of every class, are simplified as
        one coverage with its outline (chunk borders) fixed: shared edges stay
        shared, and the pieces of a region met again across a chunk border
        still match there.
    y_scale : float
        Row height over column width (non-square pixels), so the tolerance is
        one distance in both directions.
    """
    block = np.asarray(block)
    row0, col0 = origin
    if tolerance > 0:
        # Every class takes part so edges along unexported classes and no-data
        # are simplified too, consistently with their neighbours.
        pieces = label_pieces(block, connectivity=4, mask=None)
        hits = np.bincount(pieces.labels.ravel(), weights=exported.ravel(), minlength=pieces.count + 1)
        keep = hits[1:] > 0
        geoms = _simplify_coverage(pieces.geoms, tolerance, y_scale)
        labels = np.where(exported, pieces.labels, 0)
        if len(geoms):
            geoms = shapely.transform(geoms, lambda xy: xy + (col0, row0))
    else:
        split = tuple(bool(internal.get(side)) for side in SIDES)
        pieces = label_pieces(block, connectivity=4, mask=exported, origin=origin, split=split)
        keep = np.ones(pieces.count, dtype=bool)
        geoms = pieces.geoms
        labels = pieces.labels
    n = len(geoms)
    values = pieces.values

    # Regions (8-connectivity joins pieces that touch at corners).
    region = np.arange(n)
    if connectivity == 8 and n:
        a, b = _diagonal_pairs(labels, block)
        region = _components(n + 1, a, b)[1:] - 1

    side_pixels = {
        "top": labels[0, :],
        "bottom": labels[-1, :],
        "left": labels[:, 0],
        "right": labels[:, -1],
    }
    on_border = np.zeros(n, dtype=bool)
    for side, px in side_pixels.items():
        if internal.get(side):
            hit = px[px > 0] - 1
            on_border[region[hit]] = True

    border_index = np.full(n, -1, dtype=np.int64)
    if connectivity == 4:
        # One piece per region: split them in bulk.
        kept = np.flatnonzero(keep)
        inner, outer = kept[~on_border[kept]], kept[on_border[kept]]
        complete = list(zip(values[inner].tolist(), geoms[inner]))
        border_index[outer] = np.arange(len(outer))
        border_values = values[outer].tolist()
        border_pieces = [[g] for g in geoms[outer]]
    else:
        complete = []
        members: dict[int, list[int]] = {}
        for i in np.flatnonzero(keep):
            members.setdefault(int(region[i]), []).append(int(i))
        border_values, border_pieces = [], []
        for r, idx in members.items():
            if on_border[r]:
                border_index[r] = len(border_pieces)
                border_values.append(int(values[idx[0]]))
                border_pieces.append([geoms[i] for i in idx])
            else:
                # A complete region touches no internal border, so a lone
                # piece has no border vertices for merge_pieces to drop.
                geom = geoms[idx[0]] if len(idx) == 1 else merge_pieces([geoms[i] for i in idx], tolerance == 0, 8)
                complete.append((int(values[idx[0]]), geom))

    lut = np.full(n + 1, -1, dtype=np.int64)
    if n:
        lut[1:] = border_index[region]
    strips = {side: lut[px] for side, px in side_pixels.items() if internal.get(side)}
    return ChunkRegions(complete, np.array(border_values, dtype=np.int64), border_pieces, strips)


def _simplify_coverage(geoms: np.ndarray, tolerance: float, y_scale: float) -> np.ndarray:
    """``shapely.coverage_simplify`` with the outline fixed, in pixel space.

    GDAL's polygons have vertices only where their own outline turns, so an
    edge shared by one polygon with two others lacks the junction vertex on
    its side: not a valid coverage for GEOS. Splitting edges at every pixel
    corner makes the shared edges match vertex for vertex. Simplification
    only removes vertices, so rounding brings the kept ones back to their
    exact integer pixel corners after the y scaling.
    """
    if len(geoms) == 0:
        return geoms
    arr = shapely.segmentize(geoms, 1.0)
    if y_scale != 1.0:
        arr = shapely.transform(arr, lambda xy: xy * (1.0, y_scale))
    out = shapely.coverage_simplify(arr, tolerance, simplify_boundary=False)
    if y_scale != 1.0:
        out = shapely.transform(out, lambda xy: np.round(xy / (1.0, y_scale)))
    return out


def merge_pieces(pieces: Sequence, exact: bool = True, connectivity: int = 4):
    """One region's geometry from its pieces (pixel space).

    Pieces of a region come from neighbouring chunks and share edges exactly
    (integer coordinates), so their union is exact. With `exact`, vertices
    in the middle of straight edges are removed, which gives GDAL's polygon
    of the whole region (up to vertex order); simplified regions keep them:
    they are nodes shared with neighbours.

    With 4-connectivity only the outer rings are unioned and the pieces'
    holes are added back: a hole lies inside its chunk (a hole reaching the
    chunk border would be open to the outside), and no piece of the same
    region can lie in it (it would be 4-connected to the surrounding piece
    inside the chunk, hence part of it). That avoids overlaying the
    thousands of holes a large region collects. Exact pieces carry a vertex
    at every pixel corner along chunk borders (:func:`polygonize_chunk`), so
    their shells are a coverage and ``shapely.coverage_union_all`` joins
    them without an overlay.
    """
    if len(pieces) == 1:
        return drop_collinear(pieces[0]) if exact else pieces[0]
    arr = np.array(pieces, dtype=object)
    if connectivity == 4:
        shells = shapely.polygons(shapely.get_exterior_ring(arr))
        shells = shapely.coverage_union_all(shells) if exact else shapely.union_all(shells)
        if shells.geom_type == "Polygon":
            if exact:
                shells = drop_collinear(shells)
            rings, owner = shapely.get_rings(arr, return_index=True)
            holes = rings[np.r_[False, owner[1:] == owner[:-1]]]  # all but each piece's shell
            rings = np.concatenate([shapely.get_rings(shells), holes])
            return shapely.polygons(rings, indices=np.zeros(len(rings), dtype=np.intp))[0]
    merged = shapely.union_all(arr)
    return drop_collinear(merged) if exact else merged


def drop_collinear(geom):
    """`geom` without the vertices in the middle of straight edges.

    Exact for the integer pixel-space coordinates used here. (``shapely
    .simplify(geom, 0)`` does the same through GEOS's topology-preserving
    simplifier, which needs about 500 bytes per vertex: 600 MB for a large
    region of a Sentinel-2 tile.)
    """
    parts = shapely.get_parts(geom)
    rings, part = shapely.get_rings(parts, return_index=True)
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    open_ = np.r_[ring[1:] != ring[:-1], True]  # the closing point of each ring
    xy, ring = xy[~open_], ring[~open_]
    first = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    last = np.r_[first[1:] - 1, len(ring) - 1]
    prev = np.roll(xy, 1, axis=0)
    prev[first] = xy[last]
    nxt = np.roll(xy, -1, axis=0)
    nxt[last] = xy[first]
    a, b = xy - prev, nxt - xy
    keep = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0] != 0
    rings = shapely.linearrings(xy[keep], indices=ring[keep])
    polys = shapely.polygons(rings, indices=part)
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(list(polys))


# --- merging across chunks ----------------------------------------------------------


@dataclass
class _Chunk:
    strips: dict
    gid: np.ndarray  # global id of each border region
    values: np.ndarray


class RegionMerger:
    """Joins border regions of neighbouring chunks into whole regions.

    Chunks may arrive in any order (not thread-safe: callers lock). Each
    border region waits for the chunks beyond the internal borders it touches
    (and, with 8-connectivity, beyond the corners it occupies); when the last
    of them has arrived for every member of its union-find set, the set is a
    whole region and :meth:`add` returns it. Only border regions and the
    pixel strips along not yet matched borders are kept.

    Parameters
    ----------
    row_chunks, col_chunks : sequence of int
        Chunk heights and widths of the scene grid (dask ``chunks``).
    connectivity : {4, 8}
    """

    def __init__(self, row_chunks: Sequence[int], col_chunks: Sequence[int], connectivity: int = 4):
        self.connectivity = connectivity
        self.row_starts = {int(s): i for i, s in enumerate(np.r_[0, np.cumsum(row_chunks)[:-1]])}
        self.col_starts = {int(s): j for j, s in enumerate(np.r_[0, np.cumsum(col_chunks)[:-1]])}
        self.shape = (len(row_chunks), len(col_chunks))
        self._arrived: set[tuple[int, int]] = set()
        self._chunks: dict[tuple[int, int], _Chunk] = {}
        self._parent: dict[int, int] = {}
        self._waiting: dict[int, int] = {}  # root -> number of (member, chunk) waits
        self._members: dict[int, list] = {}  # root -> pieces
        self._gids: dict[int, list[int]] = {}  # root -> member ids
        self._value: dict[int, int] = {}
        self._waiting_on: dict[tuple[int, int], list[int]] = {}
        self._next = 0

    # --- grid ---
    def index(self, origin: tuple[int, int]) -> tuple[int, int]:
        """Chunk index ``(i, j)`` of the chunk starting at scene pixel `origin`."""
        return self.row_starts[int(origin[0])], self.col_starts[int(origin[1])]

    def internal_sides(self, index: tuple[int, int]) -> dict[str, bool]:
        i, j = index
        ni, nj = self.shape
        return {"top": i > 0, "bottom": i < ni - 1, "left": j > 0, "right": j < nj - 1}

    def _neighbours(self, index):
        """(neighbour index, my side or corner) for every existing neighbour."""
        i, j = index
        steps = [((-1, 0), "top"), ((1, 0), "bottom"), ((0, -1), "left"), ((0, 1), "right")]
        if self.connectivity == 8:
            steps += [((-1, -1), "tl"), ((-1, 1), "tr"), ((1, -1), "bl"), ((1, 1), "br")]
        ni, nj = self.shape
        for (di, dj), where in steps:
            k = (i + di, j + dj)
            if 0 <= k[0] < ni and 0 <= k[1] < nj:
                yield k, where

    @staticmethod
    def _touching(strips: dict, where: str) -> np.ndarray:
        """Border region indices on a side, or on a corner pixel."""
        if where in SIDES:
            ids = strips[where]
        else:
            side = "top" if where[0] == "t" else "bottom"
            ids = strips[side][:1] if where[1] == "l" else strips[side][-1:]
        return np.unique(ids[ids >= 0])

    # --- union-find ---
    def _find(self, g: int) -> int:
        root = g
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[g] != root:
            self._parent[g], g = root, self._parent[g]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return
        if len(self._members[ra]) < len(self._members[rb]):
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._members[ra].extend(self._members.pop(rb))
        self._gids[ra].extend(self._gids.pop(rb))
        self._waiting[ra] += self._waiting.pop(rb)
        self._value.pop(rb)

    # --- chunks ---
    def add(self, index: tuple[int, int], chunk: ChunkRegions) -> list[tuple[int, list]]:
        """Register a chunk's border regions; return the regions now whole.

        Returns
        -------
        list of (int, list)
            ``(value, pieces)`` of every region completed by this chunk.
        """
        if index in self._arrived:
            raise ValueError(f"chunk {index} given twice")
        m = len(chunk.border_pieces)
        gid = np.arange(self._next, self._next + m, dtype=np.int64)
        self._next += m
        for k in range(m):
            g = int(gid[k])
            self._parent[g] = g
            self._members[g] = list(chunk.border_pieces[k])
            self._gids[g] = [g]
            self._value[g] = int(chunk.border_values[k])
            self._waiting[g] = 0
        self._chunks[index] = _Chunk(chunk.strips, gid, chunk.border_values)
        self._arrived.add(index)
        touched: list[int] = list(gid)

        for nb, where in self._neighbours(index):
            mine = self._touching(chunk.strips, where) if m else np.zeros(0, np.int64)
            if nb not in self._arrived:
                for k in mine:
                    g = int(gid[k])
                    self._waiting[self._find(g)] += 1
                    self._waiting_on.setdefault(nb, []).append(g)
                continue
            self._stitch(index, nb, where)
        for g in self._waiting_on.pop(index, []):
            r = self._find(g)
            self._waiting[r] -= 1
            touched.append(r)
        for k in [index, *(nb for nb, _ in self._neighbours(index))]:
            if k in self._chunks and all(nb in self._arrived for nb, _ in self._neighbours(k)) and k in self._arrived:
                del self._chunks[k]

        done = []
        for g in touched:
            if g not in self._parent:
                continue  # completed above through another member
            r = self._find(g)
            if self._waiting[r] == 0:
                done.append((self._value.pop(r), self._members.pop(r)))
                del self._waiting[r]
                for member in self._gids.pop(r):
                    del self._parent[member]
        return done

    def _stitch(self, index, nb, where) -> None:
        """Union the regions of chunk `index` and arrived chunk `nb` that touch."""
        a, b = self._chunks[index], self._chunks[nb]
        opposite = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}
        if where in SIDES:
            sa, sb = a.strips[where], b.strips[opposite[where]]
            offsets = (0, -1, 1) if self.connectivity == 8 else (0,)
            for off in offsets:
                # pixel p of my side touches pixel p + off of theirs
                if off >= 0:
                    xa, xb = sa[: len(sa) - off], sb[off:]
                else:
                    xa, xb = sa[-off:], sb[: len(sb) + off]
                self._union_pairs(a, b, xa, xb)
        else:
            flip = {"t": "b", "b": "t", "l": "r", "r": "l"}
            xa = self._touching(a.strips, where)
            xb = self._touching(b.strips, flip[where[0]] + flip[where[1]])
            self._union_pairs(a, b, xa[:1], xb[:1])

    def _union_pairs(self, a: _Chunk, b: _Chunk, xa: np.ndarray, xb: np.ndarray) -> None:
        m = (xa >= 0) & (xb >= 0)
        xa, xb = xa[m], xb[m]
        same = a.values[xa] == b.values[xb]
        ga, gb = a.gid[xa[same]], b.gid[xb[same]]
        if len(ga) == 0:
            return
        # One union per distinct pair: a long shared border repeats it per pixel.
        span = int(gb.max()) + 1
        for pair in np.unique(ga * span + gb).tolist():
            self._union(pair // span, pair % span)

    def finish(self) -> list[tuple[int, list]]:
        """Regions still open (only when chunks are missing); empties the merger."""
        done = [(self._value[r], self._members[r]) for r in list(self._members)]
        for d in (self._members, self._value, self._waiting, self._gids, self._parent, self._chunks, self._waiting_on):
            d.clear()
        return done

    @property
    def open_regions(self) -> int:
        """Number of regions waiting for a neighbouring chunk."""
        return len(self._members)


# --- coordinates and areas -------------------------------------------------------------


def pixel_to_crs(geoms, transform: Affine):
    """Map pixel-space geometries to the CRS with `transform`.

    Uses GDAL's ``gt[0] + x * gt[1] + y * gt[2]`` evaluation order, so the
    coordinates are bit-identical to ``rasterio.features.shapes(transform=...)``.
    """
    t = transform

    def f(xy):
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([t.c + x * t.a + y * t.b, t.f + x * t.d + y * t.e])

    return shapely.transform(geoms, f)


def multipolygon_wkb(geoms_px, transform: Affine) -> np.ndarray:
    """WKB ``MultiPolygon`` of each pixel-space polygon or multipolygon, in the CRS.

    The coordinates are those of :func:`pixel_to_crs`; Polygons are promoted
    to one-part MultiPolygons (the layer's type) by prefixing their WKB with
    a MultiPolygon header, which is byte for byte the WKB of the one-part
    MultiPolygon without building one geometry per region.

    Returns
    -------
    numpy.ndarray
        ``bytes`` objects, shape ``(n,)``.
    """
    geoms_px = np.asarray(geoms_px, dtype=object)
    if geoms_px.size == 0:
        return np.zeros(0, dtype=object)
    kind = shapely.get_type_id(geoms_px)
    if not np.isin(kind, (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON)).all():
        raise ValueError("expected polygons")
    wkb = shapely.to_wkb(pixel_to_crs(geoms_px, transform), byte_order=1)
    single = np.flatnonzero(kind == shapely.GeometryType.POLYGON)
    wkb[single] = [_ONE_PART + w for w in wkb[single].tolist()]
    return wkb


#: Little-endian WKB header of a MultiPolygon of one part (type 6, one polygon follows).
_ONE_PART = b"\x01" + (6).to_bytes(4, "little") + (1).to_bytes(4, "little")


def areas_m2(geoms_px, row_areas: np.ndarray) -> np.ndarray:
    """True area in m² of pixel-space geometries, each row weighed with its pixel area.

    Parameters
    ----------
    geoms_px : array-like of shapely geometries
        ``(n,)`` polygons in scene pixel coordinates (rows ``0 .. len(row_areas)``).
    row_areas : numpy.ndarray
        ``(rows,)`` area of one pixel in each row, m²
        (:func:`snap_operators.grid.areas.row_pixel_areas_m2`, the pixel area of
        the area tables too).

    Returns
    -------
    numpy.ndarray
        float64 ``(n,)``. A polygon's share of row ``r`` (in pixels) counts
        ``row_areas[r]`` m² per pixel, so the regions of an unsieved map add
        up to the area table's areas. Exact for pixel outlines; an edge
        crossing rows diagonally (simplified) is exact to the relative change
        of pixel area from one row to the next (tan(latitude) x pixel height
        in radians: 1e-4 for 0.001° pixels at 80°).

    Notes
    -----
    Mapping ``y`` to ``W(y)``, the area of one column of pixels above ``y``
    (piecewise linear between row edges), makes plane area equal to the
    weighted area: a pixel's image is ``1 x row_areas[r]``.
    """
    geoms_px = np.asarray(geoms_px, dtype=object)
    if geoms_px.size == 0:
        return np.zeros(0)
    row_areas = np.asarray(row_areas, dtype=np.float64)
    if np.all(row_areas == row_areas[0]):  # a projected grid: one pixel area, no mapping to round
        return shapely.area(geoms_px) * row_areas[0]
    edges = np.arange(row_areas.size + 1, dtype=np.float64)
    above = np.concatenate([[0.0], np.cumsum(row_areas)])
    weighted = shapely.transform(geoms_px, lambda xy: np.column_stack([xy[:, 0], np.interp(xy[:, 1], edges, above)]))
    return shapely.area(weighted)


# --- whole arrays (tests, small scenes) -----------------------------------------------------


def polygonize(
    classes: np.ndarray,
    chunk: int | None = None,
    connectivity: int = 4,
    exported: np.ndarray | None = None,
    tolerance: float = 0.0,
) -> list[tuple[int, object]]:
    """All regions of an in-memory class array, polygonized chunk by chunk.

    The same path the operator streams, for arrays that fit in memory.

    Parameters
    ----------
    classes : numpy.ndarray
        2-D integer array.
    chunk : int, optional
        Chunk edge in pixels (default: the whole array as one chunk).
    connectivity : {4, 8}
    exported : numpy.ndarray of bool, optional
        Pixels to polygonize (default: all).
    tolerance : float
        Simplification tolerance in pixels.

    Returns
    -------
    list of (int, shapely geometry)
        ``(value, geometry)`` per region, pixel-space coordinates.
    """
    classes = np.asarray(classes)
    if exported is None:
        exported = np.ones(classes.shape, dtype=bool)
    h, w = classes.shape
    c = chunk or max(h, w, 1)
    rows = [min(c, h - y) for y in range(0, h, c)]
    cols = [min(c, w - x) for x in range(0, w, c)]
    merger = RegionMerger(rows, cols, connectivity)
    out = []
    for y in range(0, h, c):
        for x in range(0, w, c):
            idx = merger.index((y, x))
            sl = (slice(y, y + c), slice(x, x + c))
            part = polygonize_chunk(classes[sl], (y, x), exported[sl], merger.internal_sides(idx), connectivity, tolerance)
            out.extend(part.complete)
            for value, pieces in merger.add(idx, part):
                out.append((value, merge_pieces(pieces, tolerance == 0, connectivity)))
    if merger.open_regions:  # pragma: no cover - every chunk was given
        raise RuntimeError("regions left open")
    return out
