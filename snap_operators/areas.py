"""Area per class of a class band: pixel counting, areas in km², the table.

Areas are exact for the grid: in a projected CRS every pixel has the area of
the affine parallelogram ``|a e - b d|`` (converted to metres with the CRS's
linear unit); in a geographic CRS the area of a pixel depends on its latitude,
so pixels are counted per row and each row's pixel area is the geodesic area
of one pixel on the CRS's ellipsoid (WGS84 for EPSG:4326), from
:meth:`pyproj.Geod.polygon_area_perimeter`.

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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .classes import LAND_COVER, MASKED, MASKED_INFO, NO_DATA, UNCLASSIFIED_INFO
from .crs import geod, metres_per_unit
from .product import ClassInfo

#: Name of the area table's row of masked pixels (class 254: cloud, cloud shadow, snow).
MASKED_ROW_NAME = f"{MASKED_INFO.name} (not observed)"

#: Header of the printed table (layout fixed by the project).
TABLE_HEADER = "Class ID | Class Name | Area (sq km)"
CSV_FIELDS = ("class_id", "class_name", "pixels", "area_km2")


@dataclass(frozen=True)
class AreaRow:
    """One line of the area table (``class_id`` None for the total)."""

    class_id: int | None
    name: str
    pixels: int
    area_km2: float


def row_pixel_areas_km2(transform: Any, crs: Any, shape: tuple[int, int]) -> np.ndarray:
    """Area of one pixel in each row, km².

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
        float64 ``(rows,)``; constant in a projected CRS. NaN without a
        CRS or transform.
    """
    h, w = shape
    if transform is None or crs is None:
        return np.full(h, np.nan)
    t = transform
    ellipsoid = geod(crs)
    if ellipsoid is None:
        factor = metres_per_unit(crs)
        return np.full(h, abs(t.a * t.e - t.b * t.d) * factor * factor / 1e6)
    # A rotated grid's pixel area also varies along the row; the middle column
    # stands for the row (exact for north-up grids).
    col = w // 2
    rows = np.arange(h, dtype=np.float64)
    corners = [(col, rows), (col + 1, rows), (col + 1, rows + 1), (col, rows + 1)]
    lons = np.stack([t.c + t.a * x + t.b * y for x, y in corners], axis=1)
    lats = np.stack([t.f + t.d * x + t.e * y for x, y in corners], axis=1)
    out = np.empty(h)
    for i in range(h):
        area, _ = ellipsoid.polygon_area_perimeter(lons[i], lats[i])
        out[i] = abs(area) / 1e6
    return out


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
    """CSV text with columns ``class_id, class_name, pixels, area_km2``."""
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
    from .outputs import write_text

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
