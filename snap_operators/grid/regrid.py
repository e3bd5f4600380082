"""Lazy, chunked regridding of one band onto another grid.

:func:`regrid` puts a 2-D Dask array given on one grid (shape + affine
pixel-corner transform + CRS) onto a target grid and returns a new Dask array,
built target chunk by target chunk: each chunk task reads only the source
window it needs (plus a small margin for interpolation), so memory per task is
bounded by the chunk size however large the scene.

Three computation paths:

* **aligned** (same CRS, north-up grids, and for block reductions an integer
  ratio with origins on common pixel edges): pure numpy index arithmetic,
  exact and SNAP-like — ``nearest`` takes the source pixel under the target
  pixel centre (upsampling by ``k`` = repeat), ``first`` the upper-left source
  pixel of each block (SNAP's ``First``), ``bilinear`` interpolates between
  pixel centres (edge pixels are replicated), and ``mean``/``min``/``max``/
  ``median`` reduce each ``k x k`` block ignoring invalid pixels;
* **point** (any CRS, rotation or ratio; ``nearest``, ``bilinear``, ``cubic``,
  and ``first``, which here takes the pixel under the target centre):
  every target pixel centre is mapped to source pixel coordinates — exactly
  within one CRS, across CRSs from exact coordinates on a fixed lattice of
  target pixels interpolated to within 1e-4 source pixel — and sampled there,
  as SNAP's Collocate does. The lattice does not depend on the chunking, so
  results are identical however the target is chunked;
* **gdal** (block reductions that are not aligned): :func:`rasterio.warp.reproject`
  (``average``, ``min``, ``max``, ``med``) on each window.

Invalid source pixels (NaN, or equal to the band's no-data value) never
contribute to interpolation or reductions; bilinear weights are renormalised
over the valid neighbours (as GDAL does). Target pixels with no valid source
get the no-data value: NaN for float bands without a numeric no-data value,
else the band's no-data value (integer bands without one get
:func:`~snap_operators.core.product.fill_value`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import rasterio.crs
import rasterio.warp
from affine import Affine
from dask.base import tokenize
from rasterio.enums import Resampling

from ..core.product import DEFAULT_TILE_SIZE, chunks_for, fill_value

#: Methods for a target pixel smaller than (or as large as) a source pixel.
UPSAMPLING_METHODS = ("nearest", "bilinear", "cubic")
#: Methods for a target pixel larger than a source pixel. ``nearest``,
#: ``bilinear`` and ``cubic`` sample at the target pixel centre (Collocate's
#: point resampling); the others aggregate the covered source pixels.
DOWNSAMPLING_METHODS = ("first", "nearest", "bilinear", "cubic", "mean", "min", "max", "median")

_REDUCTIONS = ("mean", "min", "max", "median")
_GDAL = {
    "mean": Resampling.average,
    "min": Resampling.min,
    "max": Resampling.max,
    "median": Resampling.med,
}
# rasterio's reproject of arrays opens in-memory datasets before it gives them their transform, under
# warnings.catch_warnings, which is not thread-safe: with several engine threads warping at once the
# suppression is undone and "Dataset has no geotransform" reaches the user although every dataset has
# one (rasterio's own MEM datasets; results identical to a single-threaded run). Only that warning,
# as reproject raises it, is ignored.
warnings.filterwarnings("ignore", message="Dataset has no geotransform", category=rasterio.errors.NotGeoreferencedWarning,
                        module=r"rasterio\.warp")

#: Stand-in CRS for grids without one (the gdal path needs one): identical on
#: both sides, so only the affine transforms apply.
_LOCAL_CRS = rasterio.crs.CRS.from_epsg(3857)
#: Decimals kept when turning target positions into source indices, so that
#: positions on exact pixel edges do not flip by floating-point noise.
_DECIMALS = 9


def regrid(
    data: da.Array,
    src_transform: Affine,
    dst_shape: tuple[int, int],
    dst_transform: Affine,
    *,
    src_crs=None,
    dst_crs=None,
    upsampling: str = "nearest",
    downsampling: str = "first",
    no_data: float | int | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
) -> da.Array:
    """Regrid a lazy band onto a target grid, chunk by chunk.

    Parameters
    ----------
    data : dask.array.Array
        Source band, shape ``(rows, cols)``.
    src_transform, dst_transform : affine.Affine
        Pixel-corner geotransforms of source and target grids (CRS units).
    dst_shape : tuple of int
        Target ``(rows, cols)``.
    src_crs, dst_crs : CRS or None
        Source and target CRS (anything :class:`rasterio.crs.CRS` accepts);
        None on both sides means "same, unknown".
    upsampling : {'nearest', 'bilinear', 'cubic'}
        Used along axes where a target pixel is not larger than a source pixel.
    downsampling : {'first', 'nearest', 'bilinear', 'cubic', 'mean', 'min', 'max', 'median'}
        Used along axes where a target pixel is larger than a source pixel.
    no_data : float or int or None
        The band's no-data value: source pixels equal to it are invalid and
        target pixels without valid data get it (NaN for floats when None).
    tile_size : int
        Chunk edge of the returned array (pixels).

    Returns
    -------
    dask.array.Array
        Shape `dst_shape`, the source dtype, chunks ``tile_size`` square. The
        source array itself when both grids are identical.
    """
    if upsampling not in UPSAMPLING_METHODS:
        raise ValueError(f"unknown upsampling method {upsampling!r}")
    if downsampling not in DOWNSAMPLING_METHODS:
        raise ValueError(f"unknown downsampling method {downsampling!r}")
    src_crs, dst_crs = _as_crs(src_crs), _as_crs(dst_crs)
    if (src_crs is None) != (dst_crs is None):
        raise ValueError("regrid: both grids need a CRS, or neither")
    dst_shape = (int(dst_shape[0]), int(dst_shape[1]))
    dtype = np.dtype(data.dtype)
    if dtype == np.bool_:  # masks: regrid as 0/1, missing pixels become False
        as_int = regrid(data.astype(np.uint8), src_transform, dst_shape, dst_transform, src_crs=src_crs,
                        dst_crs=dst_crs, upsampling="nearest", downsampling="first", tile_size=tile_size)
        return as_int == 1
    fill = output_no_data(dtype, no_data)
    same_crs = src_crs is None or src_crs == dst_crs
    if same_crs and tuple(data.shape) == dst_shape and same_transform(src_transform, dst_transform):
        return data
    if min(dst_shape) == 0:
        return da.full(dst_shape, fill, dtype=dtype, chunks=chunks_for(dst_shape, tile_size))

    spec = _Spec(dtype, no_data, fill, upsampling, downsampling)
    if same_crs and _north_up(src_transform) and _north_up(dst_transform):
        axes = (
            _aligned_axis(data.shape[0], src_transform.f, src_transform.e, dst_transform.f, dst_transform.e, spec),
            _aligned_axis(data.shape[1], src_transform.c, src_transform.a, dst_transform.c, dst_transform.a, spec),
        )
        if None not in axes:
            return _regrid_aligned(data, dst_shape, axes, spec, tile_size)
    if src_crs is None:
        src_crs = dst_crs = _LOCAL_CRS
    return _regrid_warp(data, src_transform, src_crs, dst_shape, dst_transform, dst_crs, spec, tile_size)


def output_no_data(dtype, no_data: float | int | None) -> float | int:
    """Value given to target pixels without data for a band of `dtype`.

    NaN for floats unless the band has a numeric no-data value; the band's
    no-data value for integers, else :func:`~snap_operators.core.product.fill_value`.
    """
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return float("nan") if no_data is None else float(no_data)
    if no_data is None or (isinstance(no_data, float) and math.isnan(no_data)):
        return fill_value(dtype)
    return int(no_data)


def same_transform(t1: Affine | None, t2: Affine | None, tolerance: float = 1e-6) -> bool:
    """True when two geotransforms agree to `tolerance` of a pixel."""
    if t1 is None or t2 is None:
        return t1 is t2
    size = min(abs(t1.a) or 1.0, abs(t1.e) or 1.0)
    return all(abs(p - q) <= tolerance * size for p, q in zip(t1[:6], t2[:6]))


def grid_mismatch(bands) -> str | None:
    """None when `bands` share one grid, else ``"B4 100x100, B11 50x50"`` naming the odd ones.

    Example
    -------
    >>> grid_mismatch([])
    """
    if not bands:
        return None
    ref = bands[0]
    off = [b for b in bands[1:] if b.shape != ref.shape or not same_transform(b.transform, ref.transform)]
    return ", ".join(f"{b.name} {b.width}x{b.height}" for b in [ref, *off]) if off else None


def _as_crs(crs):
    if crs is None or isinstance(crs, rasterio.crs.CRS):
        return crs
    return rasterio.crs.CRS.from_user_input(crs)


def _north_up(t: Affine) -> bool:
    return t.b == 0 and t.d == 0 and t.a != 0 and t.e != 0


@dataclass(frozen=True)
class _Spec:
    dtype: np.dtype
    no_data: float | int | None
    fill: float | int
    upsampling: str
    downsampling: str

    @property
    def is_float(self) -> bool:
        return bool(np.issubdtype(self.dtype, np.floating))


def _assemble(dst_shape, work: tuple[int, int], tile_size: int, make_block) -> da.Array:
    """Concatenate per-window arrays and rechunk to square tiles."""
    rows = []
    for y0 in range(0, dst_shape[0], work[0]):
        y1 = min(y0 + work[0], dst_shape[0])
        rows.append([
            make_block(y0, y1, x0, min(x0 + work[1], dst_shape[1]))
            for x0 in range(0, dst_shape[1], work[1])
        ])
    out = rows[0][0] if len(rows) == 1 and len(rows[0]) == 1 else da.block(rows)
    chunks = chunks_for(dst_shape, tile_size)
    if out.chunksize != chunks:
        out = out.rechunk(chunks)
    return out


def _delayed_block(func, name: str, iy: int, ix: int, shape, dtype, *args) -> da.Array:
    task = dask.delayed(func, pure=True)(*args, dask_key_name=(f"{name}-{iy}-{ix}"))
    return da.from_delayed(task, shape, dtype=dtype, name=f"{name}-block-{iy}-{ix}")


def _to_float(win: np.ndarray, spec: _Spec) -> np.ndarray:
    """`win` as float64 with NaN wherever it is invalid."""
    f = win.astype(np.float64)
    if spec.no_data is not None and not (isinstance(spec.no_data, float) and math.isnan(spec.no_data)):
        f[win == spec.no_data] = np.nan
    return f


def _from_float(f: np.ndarray, spec: _Spec, truncate: bool) -> np.ndarray:
    """Back to the band dtype: NaN -> fill; integers rounded (or truncated, as SNAP's integer Mean)."""
    missing = np.isnan(f)
    if spec.is_float:
        out = f.astype(spec.dtype)
        if not (isinstance(spec.fill, float) and math.isnan(spec.fill)):
            out[missing] = spec.fill
        return out
    info = np.iinfo(spec.dtype)
    g = np.trunc(f) if truncate else np.round(f)
    g = np.clip(np.where(missing, 0, g), info.min, info.max)
    out = g.astype(spec.dtype)
    out[missing] = spec.fill
    return out


# --- aligned path: same CRS, north-up grids ------------------------------------


@dataclass(frozen=True)
class _Axis:
    """How one axis maps target pixels to source pixels.

    Positions are in source pixel units: target edge ``i`` lies at
    ``offset + i * ratio`` (``ratio`` = source pixels per target pixel).
    """

    n: int
    offset: float
    ratio: float
    method: str  # nearest | first | linear | mean | min | max | median
    k: int = 1  # block size of a reduction

    def plan(self, i0: int, i1: int):
        """Source range ``[lo, hi)`` target pixels ``[i0, i1)`` need and local indices.

        Returns None when no target pixel of the range sees the source.
        """
        i = np.arange(i0, i1, dtype=np.float64)
        if self.method in _REDUCTIONS:
            start = int(round(self.offset)) + np.arange(i0, i1) * self.k
            valid = (start + self.k > 0) & (start < self.n)
            if not valid.any():
                return None
            lo = max(int(start[0]), 0)
            hi = min(int(start[-1]) + self.k, self.n)
            return lo, hi, _Reduce(self.method, self.k, lo - int(start[0]), int(start[-1]) + self.k - hi, valid)
        if self.method == "linear":
            u = self.offset + (i + 0.5) * self.ratio - 0.5
            centre = np.round(u + 0.5, _DECIMALS)
            valid = (centre >= 0) & (centre <= self.n)
            if not valid.any():
                return None
            lower = np.floor(np.round(u, _DECIMALS))
            weight = np.where(valid, np.clip(u - lower, 0.0, 1.0), 0.0)
            lower = lower.astype(np.int64)
            a = np.clip(lower, 0, self.n - 1)
            b = np.clip(lower + 1, 0, self.n - 1)
            lo, hi = int(a[valid].min()), int(b[valid].max()) + 1
            return lo, hi, _Linear(np.where(valid, a - lo, 0), np.where(valid, b - lo, 0), weight, valid)
        pos = self.offset + (i if self.method == "first" else i + 0.5) * self.ratio
        idx = np.floor(np.round(pos, _DECIMALS)).astype(np.int64)
        valid = (idx >= 0) & (idx < self.n)
        if not valid.any():
            return None
        lo, hi = int(idx[valid].min()), int(idx[valid].max()) + 1
        return lo, hi, _Gather(np.where(valid, idx - lo, 0), valid)


@dataclass(frozen=True)
class _Gather:
    idx: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class _Linear:
    lower: np.ndarray
    upper: np.ndarray
    weight: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class _Reduce:
    method: str
    k: int
    pad_before: int
    pad_after: int
    valid: np.ndarray


def _aligned_axis(n: int, src_origin: float, src_step: float, dst_origin: float, dst_step: float, spec: _Spec):
    """Plan for one axis, or None when only the warp path can do it exactly."""
    if (src_step > 0) != (dst_step > 0):
        return None  # flipped axis
    ratio = dst_step / src_step
    offset = (dst_origin - src_origin) / src_step
    integral_offset = abs(offset - round(offset)) < 1e-6
    if abs(ratio - 1) < 1e-9 and integral_offset:
        return _Axis(n, float(round(offset)), 1.0, "nearest")
    if ratio <= 1 + 1e-9:
        method = {"nearest": "nearest", "bilinear": "linear"}.get(spec.upsampling)
        return None if method is None else _Axis(n, offset, ratio, method)
    method = spec.downsampling
    if method in _REDUCTIONS:
        k = round(ratio)
        if abs(ratio - k) > 1e-6 or not integral_offset:
            return None
        return _Axis(n, float(round(offset)), float(k), method, k)
    method = {"first": "first", "nearest": "nearest", "bilinear": "linear"}.get(method)
    return None if method is None else _Axis(n, offset, ratio, method)


def _regrid_aligned(data: da.Array, dst_shape, axes: tuple[_Axis, _Axis], spec: _Spec, tile_size: int) -> da.Array:
    # Work windows shrink when downsampling so that each task's source window
    # stays about one tile large; _assemble rechunks to full tiles afterwards.
    work = tuple(max(1, int(tile_size // max(1.0, ax.ratio))) for ax in axes)
    name = "regrid-" + tokenize(data, dst_shape, axes, spec, tile_size)

    def make_block(y0, y1, x0, x1):
        shape = (y1 - y0, x1 - x0)
        py, px = axes[0].plan(y0, y1), axes[1].plan(x0, x1)
        if py is None or px is None:
            return da.full(shape, spec.fill, dtype=spec.dtype)
        window = data[py[0]:py[1], px[0]:px[1]]
        return _delayed_block(_aligned_block, name, y0, x0, shape, spec.dtype, window, py[2], px[2], spec)

    return _assemble(dst_shape, work, tile_size, make_block)


def _aligned_block(win: np.ndarray, ay, ax, spec: _Spec) -> np.ndarray:
    """One target window from its source window (the aligned path's task)."""
    if isinstance(ay, _Gather) and isinstance(ax, _Gather):
        # Pure selection: raw values, any dtype, no float round trip.
        out = win[np.ix_(ay.idx, ax.idx)]
        if not (ay.valid.all() and ax.valid.all()):
            out = out.copy()
            out[~ay.valid, :] = spec.fill
            out[:, ~ax.valid] = spec.fill
        return out
    f = _to_float(win, spec)
    truncate = False
    if isinstance(ay, _Reduce) or isinstance(ax, _Reduce):
        f, ay, ax, truncate = _reduce_blocks(f, ay, ax)
    return _from_float(_interpolate(f, ay, ax), spec, truncate)


def _reduce_blocks(f: np.ndarray, ay, ax):
    """Apply block reductions along the reduced axes; they become identity gathers."""
    ky = ay.k if isinstance(ay, _Reduce) else 1
    kx = ax.k if isinstance(ax, _Reduce) else 1
    pads = [
        (ay.pad_before, ay.pad_after) if isinstance(ay, _Reduce) else (0, 0),
        (ax.pad_before, ax.pad_after) if isinstance(ax, _Reduce) else (0, 0),
    ]
    if any(p for pair in pads for p in pair):
        f = np.pad(f, pads, constant_values=np.nan)
    blocks = f.reshape(f.shape[0] // ky, ky, f.shape[1] // kx, kx)
    method = ay.method if isinstance(ay, _Reduce) else ax.method  # same downsampling on both axes
    # A block with no valid pixel is NaN. NumPy's nan-reductions warn on one, and silencing that with
    # warnings.catch_warnings in the engine's worker threads races with the other threads' filters
    # (one global list), so the reductions here warn of nothing; mean, min and max as fast as NumPy's.
    if method == "mean":
        valid = ~np.isnan(blocks)
        with np.errstate(invalid="ignore", divide="ignore"):  # NumPy's error state is the thread's own
            reduced = np.where(valid, blocks, 0.0).sum(axis=(1, 3)) / valid.sum(axis=(1, 3))
    elif method in ("min", "max"):
        reduced = (np.fmin if method == "min" else np.fmax).reduce(blocks, axis=(1, 3))  # NaN: NaN everywhere
    else:
        empty = np.isnan(blocks).all(axis=(1, 3))
        reduced = np.nanmedian(np.where(empty[:, None, :, None], 0.0, blocks) if empty.any() else blocks,
                               axis=(1, 3))
        reduced[empty] = np.nan
    if isinstance(ay, _Reduce):
        ay = _Gather(np.arange(reduced.shape[0]), ay.valid)
    if isinstance(ax, _Reduce):
        ax = _Gather(np.arange(reduced.shape[1]), ax.valid)
    return reduced, ay, ax, True


def _linear_terms(a):
    if isinstance(a, _Gather):
        return [(a.idx, np.ones(a.idx.shape))], a.valid
    return [(a.lower, 1.0 - a.weight), (a.upper, a.weight)], a.valid


def _interpolate(f: np.ndarray, ay, ax) -> np.ndarray:
    """Separable nearest/bilinear combination, renormalised over valid neighbours."""
    ty, vy = _linear_terms(ay)
    tx, vx = _linear_terms(ax)
    if not np.isnan(f).any():
        # All valid: weights sum to one, so interpolate rows then columns.
        rows = sum(wy[:, None] * f[iy, :] for iy, wy in ty if wy.any())
        out = sum(rows[:, ix] * wx[None, :] for ix, wx in tx if wx.any())
        out[~vy, :] = np.nan
        out[:, ~vx] = np.nan
        return out
    acc = np.zeros((len(vy), len(vx)))
    wsum = np.zeros_like(acc)
    for iy, wy in ty:
        if not wy.any():
            continue
        for ix, wx in tx:
            if not wx.any():
                continue
            v = f[np.ix_(iy, ix)]
            w = np.outer(wy, wx)
            ok = ~np.isnan(v) & (w > 0)
            acc += np.where(ok, v * w, 0.0)
            wsum += np.where(ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(wsum > 0, acc / wsum, np.nan)
    out[~vy, :] = np.nan
    out[:, ~vx] = np.nan
    return out


# --- general paths: any CRS, rotation, non-integer ratios ----------------------------


#: Target points sampled per window edge to find its source footprint.
_SAMPLES = 21
#: Extra source pixels around a footprint (cubic needs 2 on each side).
_MARGIN = 3
#: Point-sampling methods done here; block reductions go to GDAL.
_POINT_METHODS = ("nearest", "first", "bilinear", "cubic")
#: Largest acceptable error (source pixels) of interpolated coordinates.
_COORD_TOLERANCE = 1e-4


@dataclass(frozen=True)
class _Mapping:
    """Target pixel -> source pixel coordinates, identical for every chunking.

    Across CRSs, exact coordinates are computed on a lattice of target pixel
    corners every `step` pixels (the same lattice whatever the chunk) and
    interpolated bilinearly in between; `step` is chosen once per grid pair so
    that interpolation stays within ``_COORD_TOLERANCE`` source pixels.
    """

    src_transform: Affine
    src_crs: object
    dst_transform: Affine
    dst_crs: object
    step: int

    @property
    def same_crs(self) -> bool:
        return self.src_crs == self.dst_crs

    def exact(self, cols, rows):
        """Source pixel coordinates of target pixel coordinates (NaN where undefined)."""
        return _to_source_pixels(cols, rows, self.src_transform, self.src_crs, self.dst_transform, self.dst_crs)

    def centres(self, y0: int, y1: int, x0: int, x1: int):
        """Source ``(col, row)`` of the target pixel centres of a window, shape ``(y1-y0, x1-x0)``."""
        cols = np.arange(x0, x1, dtype=np.float64) + 0.5
        rows = np.arange(y0, y1, dtype=np.float64) + 0.5
        if self.same_crs or self.step <= 1:
            gc, gr = np.meshgrid(cols, rows)
            c, r = self.exact(gc.ravel(), gr.ravel())
            return c.reshape(gc.shape), r.reshape(gc.shape)
        L = self.step
        kx = np.arange(math.floor(cols[0] / L), math.floor(cols[-1] / L) + 2)
        ky = np.arange(math.floor(rows[0] / L), math.floor(rows[-1] / L) + 2)
        nx, ny = np.meshgrid(kx * float(L), ky * float(L))
        nc, nr = self.exact(nx.ravel(), ny.ravel())
        fx, fy = cols / L - kx[0], rows / L - ky[0]
        ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
        tx, ty = fx - ix, fy - iy
        c = _lerp2(nc.reshape(nx.shape), iy, ix, ty, tx)
        r = _lerp2(nr.reshape(nx.shape), iy, ix, ty, tx)
        missing = ~(np.isfinite(c) & np.isfinite(r))
        if missing.any():  # lattice nodes outside the CRS domain: exact where needed
            gr, gc = np.nonzero(missing)
            ec, er = self.exact(cols[gc], rows[gr])
            c[missing], r[missing] = ec, er
        return c, r


def _lerp2(nodes, iy, ix, ty, tx):
    """Bilinear interpolation of lattice `nodes`, separably: along x per lattice row, then along y."""
    along_x = nodes[:, ix] * (1 - tx) + nodes[:, ix + 1] * tx
    return along_x[iy, :] * (1 - ty)[:, None] + along_x[iy + 1, :] * ty[:, None]


def _lattice_step(src_transform, src_crs, dst_shape, dst_transform, dst_crs) -> int:
    """Largest power-of-two lattice step whose interpolation error stays tolerable."""
    if src_crs == dst_crs:
        return 1
    h, w = dst_shape
    exact = _Mapping(src_transform, src_crs, dst_transform, dst_crs, 1).exact
    for step in (64, 32, 16, 8, 4, 2):
        # Lattice cell midpoints spread over the grid, where interpolation errs most.
        ys = (np.linspace(0, max(h - 1, 0), 9).astype(int) // step) * step + step / 2
        xs = (np.linspace(0, max(w - 1, 0), 9).astype(int) // step) * step + step / 2
        px, py = np.repeat(xs, len(ys)), np.tile(ys, len(xs))
        kx, ky = np.floor(px / step), np.floor(py / step)
        corners = [(kx + dx) * step for dx in (0, 1)], [(ky + dy) * step for dy in (0, 1)]
        nc, nr = exact(np.concatenate([corners[0][dx] for dy in (0, 1) for dx in (0, 1)]),
                       np.concatenate([corners[1][dy] for dy in (0, 1) for dx in (0, 1)]))
        n = len(px)
        tx, ty = px / step - kx, py / step - ky

        def lerp(v):
            a, b, c, d = v[:n], v[n:2 * n], v[2 * n:3 * n], v[3 * n:]
            return (1 - ty) * ((1 - tx) * a + tx * b) + ty * ((1 - tx) * c + tx * d)

        ec, er = exact(px, py)
        err = np.maximum(np.abs(lerp(nc) - ec), np.abs(lerp(nr) - er))
        err = err[np.isfinite(err)]
        if err.size and err.max() <= _COORD_TOLERANCE:
            return step
    return 1


def _regrid_warp(data, src_transform, src_crs, dst_shape, dst_transform, dst_crs, spec: _Spec, tile_size: int):
    src_shape = tuple(data.shape)
    area = _pixel_area_ratio(src_transform, src_crs, dst_shape, dst_transform, dst_crs)
    method = spec.downsampling if area > 1 + 1e-6 else spec.upsampling
    step = max(1.0, math.sqrt(area)) if math.isfinite(area) else 1.0
    work = (max(1, int(tile_size // step)),) * 2
    point = method in _POINT_METHODS
    mapping = None
    if point:
        mapping = _Mapping(src_transform, src_crs, dst_transform, dst_crs,
                           _lattice_step(src_transform, src_crs, dst_shape, dst_transform, dst_crs))
    name = "regrid-warp-" + tokenize(
        data, src_transform, str(src_crs), dst_shape, dst_transform, str(dst_crs), spec, tile_size
    )

    def make_block(y0, y1, x0, x1):
        shape = (y1 - y0, x1 - x0)
        win = _source_window(src_shape, src_transform, src_crs, dst_transform, dst_crs, (y0, y1, x0, x1))
        if win is None:
            return da.full(shape, spec.fill, dtype=spec.dtype)
        r0, r1, c0, c1 = win
        window = data[r0:r1, c0:c1]
        if point:
            return _delayed_block(_point_block, name, y0, x0, shape, spec.dtype,
                                  window, (r0, c0), src_shape, mapping, (y0, y1, x0, x1), method, spec)
        return _delayed_block(
            _gdal_block, name, y0, x0, shape, spec.dtype, window,
            src_transform @ Affine.translation(c0, r0), src_crs,
            dst_transform @ Affine.translation(x0, y0), dst_crs,
            shape, _GDAL[method], spec,
        )

    return _assemble(dst_shape, work, tile_size, make_block)


def _to_source_pixels(cols, rows, src_transform, src_crs, dst_transform, dst_crs):
    """Target pixel coordinates -> source pixel coordinates (NaN where undefined)."""
    xs, ys = dst_transform @ (np.asarray(cols, dtype=np.float64), np.asarray(rows, dtype=np.float64))
    if src_crs != dst_crs:
        with np.errstate(all="ignore"):
            try:
                xs, ys = rasterio.warp.transform(dst_crs, src_crs, np.ravel(xs), np.ravel(ys))
            except Exception:  # noqa: BLE001 - points outside a projection's domain
                return np.full(np.size(cols), np.nan), np.full(np.size(cols), np.nan)
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        bad = ~(np.isfinite(xs) & np.isfinite(ys)) | (np.abs(xs) > 1e30) | (np.abs(ys) > 1e30)
        xs, ys = np.where(bad, np.nan, xs), np.where(bad, np.nan, ys)
    c, r = ~src_transform @ (np.ravel(xs), np.ravel(ys))
    return np.asarray(c, dtype=np.float64), np.asarray(r, dtype=np.float64)


def _source_window(src_shape, src_transform, src_crs, dst_transform, dst_crs, box):
    """Source ``(row0, row1, col0, col1)`` covering target `box`, or None if disjoint."""
    y0, y1, x0, x1 = box
    gy, gx = np.meshgrid(np.linspace(y0, y1, _SAMPLES), np.linspace(x0, x1, _SAMPLES), indexing="ij")
    c, r = _to_source_pixels(gx.ravel(), gy.ravel(), src_transform, src_crs, dst_transform, dst_crs)
    ok = np.isfinite(c) & np.isfinite(r)
    if not ok.any():
        return None
    c0 = max(int(math.floor(c[ok].min())) - _MARGIN, 0)
    c1 = min(int(math.ceil(c[ok].max())) + _MARGIN, src_shape[1])
    r0 = max(int(math.floor(r[ok].min())) - _MARGIN, 0)
    r1 = min(int(math.ceil(r[ok].max())) + _MARGIN, src_shape[0])
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _pixel_area_ratio(src_transform, src_crs, dst_shape, dst_transform, dst_crs) -> float:
    """Source pixels covered by one target pixel at the target centre."""
    cy, cx = dst_shape[0] / 2.0, dst_shape[1] / 2.0
    c, r = _to_source_pixels([cx, cx + 1, cx], [cy, cy, cy + 1], src_transform, src_crs, dst_transform, dst_crs)
    if not (np.isfinite(c).all() and np.isfinite(r).all()):
        return 1.0
    return abs((c[1] - c[0]) * (r[2] - r[0]) - (c[2] - c[0]) * (r[1] - r[0]))


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    """Keys cubic convolution (a = -0.5) weights of the 4 taps at offsets -1, 0, 1, 2."""
    a = -0.5

    def k(x):
        x = np.abs(x)
        return np.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                        np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0))

    return [k(t + 1), k(t), k(1 - t), k(2 - t)]


def _point_block(win, origin, src_shape, mapping: _Mapping, box, method: str, spec: _Spec) -> np.ndarray:
    """One target window sampled at its pixel centres (the point path's task)."""
    y0, y1, x0, x1 = box
    c, r = mapping.centres(y0, y1, x0, x1)
    h, w = src_shape
    r0, c0 = origin
    wh, ww = win.shape
    with np.errstate(invalid="ignore"):
        inside = (c >= 0) & (r >= 0) & (c <= w) & (r <= h)
    c = np.where(inside, c, 0.0)
    r = np.where(inside, r, 0.0)
    # Indices are clamped to the window; it spans every needed source pixel, and
    # at the scene border the clamp replicates the edge pixels.
    if method in ("nearest", "first"):
        ci, ri = np.floor(c).astype(np.int64), np.floor(r).astype(np.int64)
        inside &= (ci < w) & (ri < h)
        flat = (np.clip(ri, r0, r0 + wh - 1) - r0) * ww + (np.clip(ci, c0, c0 + ww - 1) - c0)
        out = np.ravel(win).take(flat)
        if not inside.all():
            out[~inside] = spec.fill
        return out
    f = _to_float(win, spec).ravel()
    has_nan = bool(np.isnan(f).any())
    u, v = c - 0.5, r - 0.5
    ui, vi = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    tu, tv = u - ui, v - vi
    if method == "bilinear":
        offsets, wx, wy = (0, 1), [1 - tu, tu], [1 - tv, tv]
    else:
        offsets, wx, wy = (-1, 0, 1, 2), _cubic_weights(tu), _cubic_weights(tv)
    rows = [(np.clip(vi + o, r0, r0 + wh - 1) - r0) * ww for o in offsets]
    cols = [np.clip(ui + o, c0, c0 + ww - 1) - c0 for o in offsets]
    acc = np.zeros(c.shape)
    wsum = np.zeros(c.shape) if has_nan else None
    for base, wyy in zip(rows, wy):
        for lj, wxx in zip(cols, wx):
            val = f.take(base + lj)
            wt = wyy * wxx
            if has_nan:
                ok = ~np.isnan(val)
                acc += np.where(ok, val * wt, 0.0)
                wsum += np.where(ok, wt, 0.0)
            else:
                acc += val * wt  # the weights of both kernels sum to one
    if has_nan:
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(np.abs(wsum) > 1e-6, acc / wsum, np.nan)
    acc[~inside] = np.nan
    return _from_float(acc, spec, truncate=False)


def _gdal_block(win, src_transform, src_crs, dst_transform, dst_crs, shape, resampling, spec: _Spec):
    """One target window aggregated by GDAL (block reductions across grids)."""
    if spec.is_float:
        src = _to_float(win, spec).astype(win.dtype) if spec.no_data is not None else win
        dst = np.full(shape, np.nan, dtype=spec.dtype)
        src_nodata = dst_nodata = np.nan
    else:
        src = win
        dst = np.full(shape, spec.fill, dtype=spec.dtype)
        src_nodata, dst_nodata = spec.no_data, spec.fill
    rasterio.warp.reproject(
        np.ascontiguousarray(src), dst,
        src_transform=src_transform, src_crs=src_crs, src_nodata=src_nodata,
        dst_transform=dst_transform, dst_crs=dst_crs, dst_nodata=dst_nodata,
        resampling=resampling, init_dest_nodata=True, num_threads=1,
    )
    if spec.is_float and not (isinstance(spec.fill, float) and math.isnan(spec.fill)):
        dst[np.isnan(dst)] = spec.fill
    return dst
