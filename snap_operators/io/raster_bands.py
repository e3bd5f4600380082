"""Lazy, window-by-window band reading with rasterio.

A :class:`LazyRasterBand` is a tiny picklable array-like: it names a file, a
band and a window and reads only the pixels a Dask chunk asks for.
:func:`lazy_band_array` wraps one in a chunked Dask array, and
:func:`build_bands` turns reader-neutral :class:`BandSource` descriptions into
the :class:`~snap_operators.core.product.Band` objects of a product, applying a
band selection and a pixel region without reading any pixel.

GDAL dataset handles are not thread-safe, so every thread keeps its own small
cache of open datasets (``threading.local``); the array-like itself holds no
handle and therefore pickles to ``dask.distributed`` workers.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import dask.array as da
import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from dask.base import tokenize
from rasterio.windows import Window

from ..core.errors import ProductReadError
from ..core.limits import MAX_BAND_PIXELS, MAX_COMPRESSION_RATIO, MIN_RATIO_FILE_BYTES
from ..core.product import DEFAULT_TILE_SIZE, Band, ClassInfo, StoredValues, chunks_for
from ..grid.region import parse_pixel_region

log = logging.getLogger(__name__)

#: Open datasets kept per thread; beyond this the least recently used closes.
MAX_OPEN_PER_THREAD = 32

_local = threading.local()


# --- conversion ---------------------------------------------------------------


#: Share of a backscatter band's non-zero values below 0 that tells dB from linear intensity:
#: intensity is never negative, dB of every real scene here is negative in >= 99.7 % of its
#: pixels (BigEarthNet's twelve S1 bands, pyroSAR's gamma0; docs/guards.md).
DB_NEGATIVE_SHARE = 0.5


def backscatter_values(values: np.ndarray) -> np.ndarray:
    """The finite non-zero `values`, 1-D float64: 0 is a fill value in dB and intensity alike."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v) & (v != 0)]


def negative_share(values: np.ndarray) -> tuple[float, int]:
    """``(share below 0, count)`` of :func:`backscatter_values` of `values`.

    Backscatter holds dB when the share is above :data:`DB_NEGATIVE_SHARE`.

    >>> negative_share(np.array([-12.0, -8.0, 0.0, np.nan, 0.05]))
    (0.6666666666666666, 3)
    """
    v = backscatter_values(values)
    return (float((v < 0).mean()) if v.size else math.nan), int(v.size)


def physical_dtype(file_dtype, scale: float = 1.0, offset: float = 0.0) -> np.dtype:
    """Dtype of physical values for raw `file_dtype` with `scale`/`offset`.

    Scaled integers become float32 (float64 for 32/64-bit integers, which
    float32 cannot hold exactly); float data keep their type; unscaled
    integers (class bands, counts) stay integers.
    """
    file_dtype = np.dtype(file_dtype)
    if np.issubdtype(file_dtype, np.floating) or np.issubdtype(file_dtype, np.complexfloating):
        return file_dtype
    if scale == 1.0 and offset == 0.0:
        return file_dtype
    return np.dtype(np.float64) if file_dtype.itemsize >= 4 else np.dtype(np.float32)


def to_physical(raw: np.ndarray, dtype, scale: float = 1.0, offset: float = 0.0, nodata=None) -> np.ndarray:
    """Physical values ``raw * scale + offset`` as `dtype`; `nodata` -> NaN for floats.

    The product is computed in float64 and rounded once to `dtype`, so a
    Sentinel-2 value equals ``float32((DN + add_offset) / quantification)``.
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        return raw.astype(dtype, copy=False)
    invalid = None
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        invalid = raw == nodata
    if scale != 1.0 or offset != 0.0:
        out = (raw.astype(np.float64) * scale + offset).astype(dtype)
    else:
        out = raw.astype(dtype, copy=True)
    if invalid is not None and invalid.any():
        out[invalid] = np.nan
    return out


def _representable(value, dtype: np.dtype) -> bool:
    if value is None:
        return False
    if np.issubdtype(dtype, np.integer):
        if isinstance(value, float) and (math.isnan(value) or not value.is_integer()):
            return False
        info = np.iinfo(dtype)
        return info.min <= value <= info.max
    return True


# --- per-thread dataset cache ----------------------------------------------------


def _local_file(path: str) -> str:
    """The local file behind a GDAL path (``/vsizip//a/b.zip/x.jp2`` -> ``/a/b.zip``)."""
    if path.startswith("/vsizip/"):
        inner = path[len("/vsizip/"):]
        i = inner.lower().find(".zip")
        return inner[: i + 4] if i >= 0 else inner
    return path


def _signature(path: str):
    try:
        st = os.stat(_local_file(path))
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _cache() -> "OrderedDict[str, tuple]":
    cache = getattr(_local, "datasets", None)
    if cache is None:
        cache = _local.datasets = OrderedDict()
    return cache


#: warnings.catch_warnings swaps one process-wide filter list in and out: two threads inside it at
#: once restore each other's lists, which leaves "ignore" filters behind for good and lets the
#: warning through meanwhile. Engine threads open band files concurrently, so the swap is serialised;
#: a file once seen georeferenced opens without it (no warning to hold back), so remote files
#: (/vsicurl/) do not wait on each other's round trips.
_QUIET_OPEN = threading.Lock()
_GEOREFERENCED: set[str] = set()


def open_quietly(path: str, **kwargs):
    """``rasterio.open(path, **kwargs)`` without ``NotGeoreferencedWarning``, safe to call from
    several threads at once. A raster without a geotransform is read in pixel coordinates; the
    operators that need a map geocoding refuse it with their own error."""
    if path in _GEOREFERENCED:
        return rasterio.open(path, **kwargs)
    with _QUIET_OPEN, warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        ds = rasterio.open(path, **kwargs)
    if not ds.transform.is_identity or ds.gcps[0] or ds.rpcs:
        _GEOREFERENCED.add(path)
    return ds


def open_dataset(path: str):
    """This thread's open rasterio dataset for `path` (reopened if the file changed)."""
    cache = _cache()
    sig = _signature(path)
    hit = cache.get(path)
    if hit is not None:
        old_sig, ds = hit
        if old_sig == sig and not ds.closed:
            cache.move_to_end(path)
            return ds
        ds.close()
        del cache[path]
    try:
        ds = open_quietly(path, sharing=False)
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise ProductReadError(f"cannot open {path}: {error_text(exc)}") from None
    cache[path] = (sig, ds)
    while len(cache) > MAX_OPEN_PER_THREAD:
        _, (_, old) = cache.popitem(last=False)
        old.close()
    return ds


def _forget(path: str) -> None:
    hit = _cache().pop(path, None)
    if hit is not None:
        hit[1].close()


#: GDAL/libtiff messages of data the file does not hold: a file cut short (an interrupted copy or download).
_TRUNCATED = re.compile(r"read error|got \d+ bytes, expected|TIFFFill|TIFFRead|unexpected end|short read|"
                        r"premature end|failed to read directory", re.I)


def damage_hint(text: str) -> str:
    """``"; the file is truncated or damaged ..."`` when GDAL's message `text` says data is missing, else ``""``."""
    return "; the file is truncated or damaged (copy or download it again)" if _TRUNCATED.search(text) else ""


def error_text(exc: BaseException) -> str:
    """The most specific message of a (GDAL) exception chain, on one line."""
    messages = []
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = " ".join(str(e).split())
        if text:
            messages.append(text)
        e = e.__cause__ or e.__context__
    useful = [m for m in messages if "see previous exception" not in m.lower()]
    return (useful or messages or [type(exc).__name__])[-1]


# --- the array-like ------------------------------------------------------------------


@dataclass(frozen=True)
class LazyRasterBand:
    """Array-like view of a window of one band of a raster file.

    Indexing with slices reads just that part of the window and returns
    physical values. Holds no open handle, so it pickles.

    Parameters
    ----------
    path : str
        File path or GDAL virtual path (``/vsizip/...``).
    band : int
        1-based band index in the file.
    row_off, col_off : int
        Window origin in file pixels.
    shape : tuple of int
        ``(rows, cols)`` of the window.
    file_dtype : str
        Dtype stored in the file.
    scale, offset : float
        Physical value = raw * scale + offset.
    nodata : float or int, optional
        Raw value marking invalid pixels (NaN in float outputs).
    name : str, optional
        The band's name in the product (``B11``), for messages.
    """

    path: str
    band: int
    row_off: int
    col_off: int
    shape: tuple[int, int]
    file_dtype: str
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | int | None = None
    name: str | None = None
    dtype: np.dtype = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "dtype", physical_dtype(self.file_dtype, self.scale, self.offset))

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        dots = [i for i, k in enumerate(key) if k is Ellipsis]
        if dots:
            i = dots[0]
            key = key[:i] + (slice(None),) * (3 - len(key)) + key[i + 1:]
        if len(key) > 2:
            raise IndexError(f"too many indices for a 2-D band: {len(key)}")
        key = key + (slice(None),) * (2 - len(key))
        slices, squeeze = [], []
        for axis, (k, n) in enumerate(zip(key, self.shape)):
            if isinstance(k, (int, np.integer)):
                i = int(k) + n if k < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} out of range for axis {axis} of size {n}")
                k = slice(i, i + 1)
                squeeze.append(axis)
            if not isinstance(k, slice):
                raise TypeError(f"LazyRasterBand supports slices only, got {type(k).__name__}")
            slices.append(k.indices(n))
        (r0, r1, rs), (c0, c1, cs) = slices
        if rs < 0 or cs < 0:
            raise TypeError("LazyRasterBand does not support negative steps")
        if r1 <= r0 or c1 <= c0:
            out = np.empty((max(0, len(range(r0, r1, rs))), max(0, len(range(c0, c1, cs)))), self.dtype)
        else:
            raw = self._read(r0, r1, c0, c1)
            if rs != 1 or cs != 1:
                raw = raw[::rs, ::cs]
            out = to_physical(raw, self.dtype, self.scale, self.offset, self.nodata)
        return out.squeeze(axis=tuple(squeeze)) if squeeze else out

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        window = Window(self.col_off + c0, self.row_off + r0, c1 - c0, r1 - r0)
        ds = open_dataset(self.path)
        try:
            return ds.read(self.band, window=window)
        except (rasterio.errors.RasterioError, OSError, ValueError) as exc:
            _forget(self.path)
            text = error_text(exc)
            which = f"band {self.name} (band {self.band} of the file)" if self.name else f"band {self.band}"
            raise ProductReadError(
                f"cannot read {which} of {self.path}, rows {window.row_off}..{window.row_off + window.height}, "
                f"cols {window.col_off}..{window.col_off + window.width}: {text}{damage_hint(text)}"
            ) from None

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)


def lazy_band_array(
    path: str,
    band: int,
    shape: tuple[int, int],
    file_dtype,
    *,
    window_offset: tuple[int, int] = (0, 0),
    scale: float = 1.0,
    offset: float = 0.0,
    nodata=None,
    tile_size: int = DEFAULT_TILE_SIZE,
    name: str | None = None,
) -> da.Array:
    """A Dask array of physical values whose chunks each read only their window.

    Parameters
    ----------
    path : str
        Raster file (any GDAL path).
    band : int
        1-based band index.
    shape : tuple of int
        ``(rows, cols)`` of the window to expose.
    file_dtype : dtype
        Dtype stored in the file.
    window_offset : tuple of int
        ``(row, col)`` of the window's upper-left pixel in the file.
    scale, offset : float
        Physical value = raw * scale + offset.
    nodata : number, optional
        Raw no-data value; becomes NaN when the output is float.
    tile_size : int
        Chunk edge in pixels (chunks are ``tile_size`` squares).
    name : str, optional
        The band's name, which read errors give.

    Returns
    -------
    dask.array.Array
        Shape `shape`; no pixel is read until a chunk is computed.
    """
    file_dtype = np.dtype(file_dtype)
    if not _representable(nodata, file_dtype):
        nodata = None
    reader = LazyRasterBand(
        str(path), int(band), int(window_offset[0]), int(window_offset[1]), tuple(shape), file_dtype.str,
        float(scale), float(offset), nodata, name,
    )
    token = tokenize(reader.path, _signature(reader.path), reader.band, reader.row_off, reader.col_off,
                     reader.shape, reader.file_dtype, reader.scale, reader.offset, reader.nodata, tile_size)
    return da.from_array(
        reader,
        chunks=chunks_for(reader.shape, tile_size),
        name=f"read-{os.path.basename(_local_file(reader.path))}-b{reader.band}-{token}",
        inline_array=True,
        asarray=True,
        fancy=False,
        lock=False,
        meta=np.empty((0, 0), dtype=reader.dtype),
    )


# --- reader-neutral band descriptions -------------------------------------------------


@dataclass(frozen=True)
class BandSource:
    """Where a band's pixels are and how they become physical values.

    Readers describe their bands with these; :func:`build_bands` makes the
    lazy :class:`~snap_operators.core.product.Band` objects.
    """

    name: str
    path: str
    index: int
    shape: tuple[int, int]
    file_dtype: str
    transform: Affine | None = None
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | int | None = None
    unit: str | None = None
    description: str | None = None
    wavelength: float | None = None
    classes: tuple[ClassInfo, ...] | None = None
    valid_expression: str | None = None

    @property
    def dtype(self) -> np.dtype:
        return physical_dtype(self.file_dtype, self.scale, self.offset)


def band_windows(
    grids: Mapping[str, tuple[tuple[int, int], Affine | None]],
    region: tuple[int, int, int, int],
    where: str = "product",
) -> dict[str, Window]:
    """Per-band windows covering a region given in scene pixels.

    Parameters
    ----------
    grids : dict
        Band name -> ``(shape, transform)``. The largest band is the scene
        grid; the region is mapped to the other bands through the
        transforms (or the size ratio when a band has none), rounding
        outwards so a coarse band covers the whole region.
    region : tuple of int
        ``(x, y, width, height)`` in scene pixels; clipped to the scene.

    Returns
    -------
    dict of str to rasterio.windows.Window
    """
    if not grids:
        return {}
    ref_name = max(grids, key=lambda n: grids[n][0][0] * grids[n][0][1])
    (ref_h, ref_w), ref_t = grids[ref_name]
    x, y, w, h = region
    x1, y1 = min(x + w, ref_w), min(y + h, ref_h)
    if x >= ref_w or y >= ref_h or x1 <= x or y1 <= y:
        raise ProductReadError(
            f"{where}: pixel region {x},{y},{w},{h} lies outside the scene ({ref_w}x{ref_h} pixels)"
        )
    out: dict[str, Window] = {}
    for name, ((bh, bw), t) in grids.items():
        if t is not None and ref_t is not None:
            inv = ~t
            cols, rows = zip(*(inv @ (ref_t @ (px, py)) for px, py in ((x, y), (x1, y), (x, y1), (x1, y1))))
        else:
            fx, fy = bw / ref_w, bh / ref_h
            cols, rows = (x * fx, x1 * fx), (y * fy, y1 * fy)
        c0 = max(0, math.floor(round(min(cols), 6)))
        c1 = min(bw, math.ceil(round(max(cols), 6)))
        r0 = max(0, math.floor(round(min(rows), 6)))
        r1 = min(bh, math.ceil(round(max(rows), 6)))
        if c1 <= c0 or r1 <= r0:
            raise ProductReadError(f"{where}: pixel region {x},{y},{w},{h} does not overlap band '{name}'")
        out[name] = Window(c0, r0, c1 - c0, r1 - r0)
    return out


def window_transform(window: Window, transform: Affine) -> Affine:
    """Geotransform of `window`'s upper-left pixel corner on a grid `transform`."""
    return transform @ Affine.translation(window.col_off, window.row_off)


def refuse_missing_files(missing: Sequence[tuple[str, str]], band_names: Iterable[str] | None, where: str,
                         listed: str, fix: str) -> None:
    """Stop a read when a file the product's description lists for a wanted band is not there.

    An incomplete product (an interrupted download or copy) would otherwise
    fail later, as a band the product lacks. Bands not wanted (not in
    `band_names`) are only logged.

    Parameters
    ----------
    missing : sequence of (str, str)
        ``(band name, the file as the message names it)`` of each missing file.
    band_names : iterable of str, optional
        The bands the read keeps (all when None or empty).
    where : str
        The product, as messages name it.
    listed : str
        What the files are, e.g. ``"image file(s) listed in MTD_MSIL2A.xml"``.
    fix : str
        What to do, before ``", or read only the other bands (Read's bandNames)"``.

    Raises
    ------
    ProductReadError
        A wanted band's file is missing (one line naming every such file).
    """
    wanted = set(band_names) if band_names else None
    needed = [file for band, file in missing if wanted is None or band in wanted]
    if needed:
        raise ProductReadError(f"{where}: {len(needed)} {listed} missing: {', '.join(needed)}; {fix}, or read only "
                               "the other bands (Read's bandNames)")
    if missing:
        log.info("%s: no file for band(s) %s (not read)", where, ", ".join(band for band, _ in missing))


def select_names(available: Sequence[str], band_names: Iterable[str] | None, where: str) -> list[str]:
    """`band_names` in the requested order, checked against `available` (all if None/empty)."""
    if not band_names:
        return list(available)
    wanted = list(dict.fromkeys(band_names))
    missing = [n for n in wanted if n not in available]
    if missing:
        raise ProductReadError(
            f"{where}: no band {', '.join(repr(m) for m in missing)}; bands: {', '.join(available) or '(none)'}"
        )
    return wanted


def check_transform(transform, where: str, band: str) -> None:
    """Refuse a geotransform with a zero or non-finite pixel size (None: no georeferencing, allowed).

    Raises
    ------
    ProductReadError
        One line naming `where` and `band`.
    """
    t = transform
    if t is not None and not (all(math.isfinite(v) for v in t[:6]) and t.determinant != 0):
        raise ProductReadError(f"{where}: {band} has the geotransform {tuple(t[:6])} (zero or "
                               "non-finite pixel size); fix the file's georeferencing")


def check_sources(sources: Sequence[BandSource], names: Iterable[str], where: str) -> None:
    """Refuse band descriptions no reader should turn into arrays, before any is made.

    The bands `names` must be real-valued, hold at most
    :data:`~snap_operators.core.limits.MAX_BAND_PIXELS` pixels and have an
    invertible geotransform; a local file must not claim more than
    :data:`~snap_operators.core.limits.MAX_COMPRESSION_RATIO` times its size in
    raw pixels (all its bands together), which no real compression reaches.

    Raises
    ------
    ProductReadError
        One line naming the file, the band and the limit.
    """
    wanted = set(names)
    claimed: dict[str, int] = {}
    for s in sources:
        rows, cols = (int(v) for v in s.shape)
        band = f"band {s.name}" + ("" if s.path == where else f" of {s.path}")
        if rows <= 0 or cols <= 0:
            raise ProductReadError(f"{where}: {band} is {cols} x {rows} px; a band needs pixels")
        if rows * cols > MAX_BAND_PIXELS:
            raise ProductReadError(f"{where}: {band} claims {cols} x {rows} px, more than the "
                                   f"{MAX_BAND_PIXELS} px of MAX_BAND_PIXELS; subset or tile the scene first")
        claimed[s.path] = claimed.get(s.path, 0) + rows * cols * np.dtype(s.file_dtype).itemsize
        if s.name not in wanted:
            continue
        if np.dtype(s.file_dtype).kind not in "biuf":
            raise ProductReadError(f"{where}: {band} holds {np.dtype(s.file_dtype).name} values; "
                                   "only real-valued bands are supported (convert complex data to intensity first)")
        check_transform(s.transform, where, band)
    for path, raw in claimed.items():
        try:
            size = os.stat(path).st_size if not path.startswith("/vsi") else None
        except OSError:
            size = None  # not a local file (GDAL path): only the pixel limit applies
        if size is not None and raw > max(size, MIN_RATIO_FILE_BYTES) * MAX_COMPRESSION_RATIO:
            raise ProductReadError(f"{where}: {path} is {size} bytes but its bands claim {raw} bytes of pixels, more "
                                   f"than MAX_COMPRESSION_RATIO = {MAX_COMPRESSION_RATIO} times its size; the file "
                                   "is corrupt or forged")


def build_bands(
    sources: Sequence[BandSource],
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    band_names: Iterable[str] | None = None,
    pixel_region=None,
    where: str = "product",
) -> list[Band]:
    """Lazy bands for `sources`, optionally a subset of bands and a pixel region.

    The pixel region (scene pixels, see :func:`band_windows`) is computed on
    all bands, so it means the same whatever bands are selected; chunks start
    at the region's corner.
    """
    by_name = {s.name: s for s in sources}
    names = select_names(list(by_name), band_names, where)
    check_sources(sources, names, where)
    region = parse_pixel_region(pixel_region, error=ProductReadError)
    windows = None
    if region is not None:
        windows = band_windows({s.name: (s.shape, s.transform) for s in sources}, region, where)
    bands = []
    for name in names:
        s = by_name[name]
        if windows is None:
            win = Window(0, 0, s.shape[1], s.shape[0])
        else:
            win = windows[name]
        transform = s.transform
        if transform is not None and (win.col_off or win.row_off):
            transform = window_transform(win, transform)
        shape, origin = (int(win.height), int(win.width)), (int(win.row_off), int(win.col_off))
        data = lazy_band_array(s.path, s.index, shape, s.file_dtype, window_offset=origin,
                               scale=s.scale, offset=s.offset, nodata=s.nodata, tile_size=tile_size, name=name)
        file_dtype = np.dtype(s.file_dtype)
        stored = StoredValues(
            lazy_band_array(s.path, s.index, shape, file_dtype, window_offset=origin, tile_size=tile_size,
                            name=name),
            file_dtype, s.scale, s.offset, no_data=s.nodata if _representable(s.nodata, file_dtype) else None,
        )
        if np.issubdtype(data.dtype, np.floating):
            no_data = float("nan")
        elif _representable(s.nodata, np.dtype(s.file_dtype)):
            no_data = int(s.nodata)
        else:
            no_data = None
        bands.append(
            Band(
                name=name,
                data=data,
                transform=transform,
                no_data=no_data,
                unit=s.unit,
                description=s.description,
                wavelength=s.wavelength,
                classes=list(s.classes) if s.classes else None,
                stored=stored,
                valid_expression=s.valid_expression,
            )
        )
    return bands
