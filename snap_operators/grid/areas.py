"""Area per class of a class band: pixel counting, areas in km², the table.

The table counts every pixel of the class raster: its CSV column is
``raster_area_km2``. ``LabelMaskExport``'s table (``<labels>_areas.csv``,
columns ``vector_area_m2``/``vector_area_km2``) sums the polygons instead, after
the minimum mapping unit (``minArea``) merged small regions into their
neighbours, so its areas differ from these by what the sieve moved.

The area of a pixel is :func:`row_pixel_areas_m2`, the one pixel area of the
package: area tables count pixels per class with it, and label masks
(:func:`snap_operators.science.vectorize.areas_m2`) weigh each row's share of
a polygon with it, so both give the same km² for the same pixels. In a
projected CRS every pixel has the area of the affine parallelogram
``|a e - b d|`` (converted to metres with the CRS's linear unit); in a
geographic CRS the area of a pixel depends on its latitude, so pixels are
counted per row and each row's pixel area is the exact area on the CRS's
ellipsoid (WGS84 for EPSG:4326) of the cell between the pixel's parallels and
meridians.

Example
-------
>>> import numpy as np
>>> from affine import Affine
>>> rows = class_areas(np.bincount([1, 1, 3], minlength=256), Affine(10, 0, 0, 0, -10, 0), "EPSG:32638", (1, 3))
>>> [(r.class_id, r.pixels, round(r.area_km2, 4)) for r in rows][:4]
[(0, 0, 0.0), (1, 2, 0.0002), (2, 0, 0.0), (3, 1, 0.0001)]
"""

from __future__ import annotations

import csv
import io
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.legend import LAND_COVER, MASKED, MASKED_INFO, NO_DATA, UNCLASSIFIED_INFO
from ..core.product import ClassInfo
from .crs import geod, metres_per_unit

#: Name of the area table's row of masked pixels (class 254: cloud, cloud shadow, snow).
MASKED_ROW_NAME = f"{MASKED_INFO.name} (not observed)"

#: Header of the printed table (layout fixed by the project).
TABLE_HEADER = "Class ID | Class Name | Area (sq km)"
#: Title printed above the table by the classifier: which of the two area tables it is.
RASTER_TABLE_TITLE = "Raster class areas: every pixel of the class map, before any minimum mapping unit"
#: Columns of the CSV: the area is the raster's (pixels x pixel area), not the label masks' polygons'.
CSV_FIELDS = ("class_id", "class_name", "pixels", "raster_area_km2")


@dataclass(frozen=True)
class AreaRow:
    """One line of the area table (``class_id`` None for the total)."""

    class_id: int | None
    name: str
    pixels: int
    area_km2: float


def row_pixel_areas_m2(transform: Any, crs: Any, shape: tuple[int, int]) -> np.ndarray:
    """True area of one pixel in each row, m²: the pixel area every area in the package uses.

    Parameters
    ----------
    transform : affine.Affine
        Pixel-corner geotransform.
    crs : CRS-like
        Anything pyproj accepts (rasterio CRS, ``"EPSG:4326"``, WKT).
    shape : tuple of int
        ``(rows, cols)``.

    Returns
    -------
    numpy.ndarray
        float64 ``(rows,)``, m². Projected CRS: ``|a e - b d|`` times the
        square of the linear unit in metres, the same for every row.
        Geographic CRS (degrees): the area on the CRS's ellipsoid of the
        quadrilateral with the pixel's corners whose edges are straight in
        longitude and latitude, exact for a north-up pixel, whose edges are
        meridians and parallels (geodesic edges, as
        :meth:`pyproj.Geod.polygon_area_perimeter` takes, would cut the
        parallels). A rotated grid's pixel area also varies along the row;
        the middle column stands for the row. NaN without a CRS or transform.

    Notes
    -----
    On the ellipsoid the area between the equator and latitude φ, per radian
    of longitude, is ``S(φ) = b²/2 (sin φ / (1 - e² sin² φ) + atanh(e sin φ) / e)``
    (the authalic latitude's integral), so ``(λ, S(φ))`` is an equal-area
    plane: a pixel's area is the planar area of its corners there.

    Examples
    --------
    >>> from affine import Affine
    >>> row_pixel_areas_m2(Affine(10, 0, 0, 0, -10, 0), "EPSG:32638", (2, 2)).tolist()
    [100.0, 100.0]
    >>> a = row_pixel_areas_m2(Affine(1, 0, 0, 0, -1, 1), "EPSG:4326", (2, 1))  # 1° cells: 0..1°N, 0..1°S
    >>> (a / 1e6).round(1).tolist()
    [12308.5, 12308.5]
    """
    h, w = shape
    if transform is None or crs is None:
        return np.full(h, np.nan)
    t = transform
    ellipsoid = geod(crs)
    if ellipsoid is None:
        factor = metres_per_unit(crs)
        return np.full(h, abs(t.a * t.e - t.b * t.d) * factor * factor)
    col = w // 2
    rows = np.arange(h, dtype=np.float64)
    corners = [(col, rows), (col + 1, rows), (col + 1, rows + 1), (col, rows + 1)]
    lam = [np.radians(t.a * x + t.b * y) for x, y in corners]  # longitudes relative to the grid's origin
    s0 = _zone_area(t.f + t.d * col, ellipsoid)  # S relative to the first row's: small values, small rounding
    s = [_zone_area(t.f + t.d * x + t.e * y, ellipsoid) - s0 for x, y in corners]
    # A quadrilateral's area is half the cross product of its diagonals.
    return 0.5 * np.abs((lam[2] - lam[0]) * (s[3] - s[1]) - (lam[3] - lam[1]) * (s[2] - s[0]))


def _zone_area(lat_deg, ellipsoid) -> np.ndarray:
    """``S(φ)``, m² per radian of longitude between the equator and latitude `lat_deg` (degrees)."""
    sin = np.sin(np.radians(lat_deg))
    es = ellipsoid.es
    b2 = ellipsoid.b ** 2
    if es == 0:  # a sphere
        return b2 * sin
    e = math.sqrt(es)
    return 0.5 * b2 * (sin / (1.0 - es * sin * sin) + np.arctanh(e * sin) / e)


def row_pixel_areas_km2(transform: Any, crs: Any, shape: tuple[int, int]) -> np.ndarray:
    """:func:`row_pixel_areas_m2` in km², float64 ``(rows,)``."""
    return row_pixel_areas_m2(transform, crs, shape) / 1e6


def counts_to_km2(counts: np.ndarray, transform: Any, crs: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and true km² per value from :class:`AreaAccumulator` counts.

    Parameters
    ----------
    counts : numpy.ndarray
        ``(bins,)``, or ``(rows, bins)`` per image row (needed for exact
        areas where pixel areas vary by row, i.e. a geographic CRS).
    transform, crs, shape
        The grid, as in :func:`row_pixel_areas_km2`.

    Returns
    -------
    pixels, area_km2 : numpy.ndarray
        ``(bins,)`` int64 and float64 (NaN without a CRS or transform).
    """
    counts = np.asarray(counts, dtype=np.int64)
    per_row = np.asarray(row_pixel_areas_km2(transform, crs, shape))
    if counts.ndim == 2:
        return counts.sum(axis=0), (counts * per_row[: counts.shape[0], None]).sum(axis=0)
    if per_row.size and not np.allclose(per_row, per_row[0], equal_nan=True):
        raise ValueError("pixel areas vary by row: count per row (AreaAccumulator(per_row=True))")
    return counts, counts * (per_row[0] if per_row.size else np.nan)


def class_areas(
    counts: np.ndarray,
    transform: Any,
    crs: Any,
    shape: tuple[int, int],
    classes: Sequence[ClassInfo] = LAND_COVER,
) -> list[AreaRow]:
    """Area table rows: 0 Unclassified, then every class of `classes`, then the total.

    Parameters
    ----------
    counts : numpy.ndarray
        Pixel counts per class value: ``(256,)``, or ``(rows, 256)`` per
        image row (needed for exact areas in a geographic CRS).
    transform, crs, shape
        The grid, as in :func:`row_pixel_areas_km2`.
    classes : sequence of ClassInfo
        Classes to list (absent ones get a row with 0).

    Returns
    -------
    list of AreaRow
        No-data (255) is not a class and is left out of the rows and the total.
        Masked pixels (254: cloud, cloud shadow, snow) are not land cover: when
        there are any (or `classes` lists 254) they get a row of their own
        after the total, :data:`MASKED_ROW_NAME`, not counted in it.
    """
    pixels, areas = counts_to_km2(counts, transform, crs, shape)
    rows = []
    for info in [UNCLASSIFIED_INFO, *sorted(classes, key=lambda c: c.value)]:
        v = info.value
        if v in (NO_DATA, MASKED):
            continue
        n = int(pixels[v]) if v < pixels.size else 0
        rows.append(AreaRow(v, info.name, n, float(areas[v]) if v < areas.size else 0.0))
    rows.append(AreaRow(None, "Total", sum(r.pixels for r in rows), float(sum(r.area_km2 for r in rows))))
    masked = int(pixels[MASKED]) if MASKED < pixels.size else 0
    if masked or any(c.value == MASKED for c in classes):
        rows.append(AreaRow(MASKED, MASKED_ROW_NAME, masked, float(areas[MASKED]) if masked else 0.0))
    return rows


def format_area_table(rows: Sequence[AreaRow]) -> str:
    """The table as printed: ``Class ID | Class Name | Area (sq km)``, one line per row."""
    lines = [TABLE_HEADER]
    for r in rows:
        cid = "" if r.class_id is None else str(r.class_id)
        area = "n/a" if np.isnan(r.area_km2) else f"{r.area_km2:.4f}"
        lines.append(f"{cid} | {r.name} | {area}")
    return "\n".join(lines)


def area_csv_text(rows: Sequence[AreaRow]) -> str:
    """CSV text with the columns :data:`CSV_FIELDS`: ``class_id, class_name, pixels, raster_area_km2``."""
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(CSV_FIELDS)
    for r in rows:
        wr.writerow(["" if r.class_id is None else r.class_id, r.name, r.pixels,
                     "" if np.isnan(r.area_km2) else f"{r.area_km2:.6f}"])
    return buf.getvalue()


def write_area_csv(rows: Sequence[AreaRow], path: str | Path) -> Path:
    """Write the CSV to a staged file beside `path`, check it, then rename it to `path`.

    Raises
    ------
    ProductWriteError
        The write failed; nothing is left.
    """
    from ..core.outputs import write_text

    return write_text(path, area_csv_text(rows))


class AreaAccumulator:
    """Block target that counts the values of integer blocks, thread-safely.

    ``acc[(rows, cols)] = block`` adds ``np.bincount`` of the block; with
    ``per_row=True`` counts are kept per image row (shape ``(rows, bins)``),
    as geographic grids need. Pass the counts to :func:`counts_to_km2` or
    :func:`class_areas`.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the whole band.
    per_row : bool
    bins : int
        Values counted, ``0 .. bins-1``: 256 for uint8 class bands, more for
        ChangeDetection's from-to pairs.
    """

    def __init__(self, shape: tuple[int, int], per_row: bool = False, bins: int = 256):
        self.shape = tuple(shape)
        self.per_row = per_row
        self.bins = int(bins)
        self.counts = np.zeros((shape[0], self.bins) if per_row else self.bins, dtype=np.int64)
        self._lock = threading.Lock()

    def __setitem__(self, region: tuple[slice, slice], block: np.ndarray) -> None:
        block = np.asarray(block)
        if self.per_row:
            h = block.shape[0]
            idx = block.astype(np.intp) + (np.arange(h, dtype=np.intp) * self.bins)[:, None]
            part = np.bincount(idx.ravel(), minlength=h * self.bins).reshape(h, self.bins)
            with self._lock:
                self.counts[region[0]] += part
        else:
            part = np.bincount(block.ravel(), minlength=self.bins)
            with self._lock:
                self.counts += part
