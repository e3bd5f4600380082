"""Class labels from a raster or vector file, read window by window on a target grid.

Used by ``snap-pc assess`` (reference data) and ``snap-pc dataset`` (training
labels): a raster is warped onto the grid by nearest neighbour; polygons or
points are reprojected and rasterized with their class attribute.

Example
-------
>>> read = reference_reader("LULC.tif", crs, transform, 100, 101)   # doctest: +SKIP
>>> read(Window(0, 0, 100, 50)).shape                                # doctest: +SKIP
(50, 100)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .errors import SnapPcError

__all__ = ["ReferenceError", "reference_reader"]


class ReferenceError(SnapPcError):
    """A reference/label file that cannot be used on the target grid."""


def reference_reader(path, crs, transform, width: int, height: int, field: str | None = None,
                     *, require_overlap: bool = False) -> Callable:
    """A function ``read(window) -> int64 array`` of class codes on the grid.

    Parameters
    ----------
    path : str or Path
        Raster (any grid and CRS) or vector file (polygons or points).
    crs : rasterio.crs.CRS
        Target grid's CRS.
    transform : affine.Affine
        Target grid's pixel-corner transform.
    width, height : int
        Target grid size in pixels.
    field : str, optional
        Class attribute of a vector file (required for vectors).
    require_overlap : bool
        Raise if the file's extent does not intersect the grid.

    Returns
    -------
    callable
        ``read(window)`` -> ``(window.height, window.width)`` int64 codes, 0
        where the file says nothing.
    """
    import rasterio

    path = Path(path)
    if not path.exists():
        raise ReferenceError(f"reference {path} does not exist")
    try:
        ref_ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError:
        return _vector_reader(path, crs, transform, width, height, field, require_overlap)
    return _raster_reader(path, ref_ds, crs, transform, width, height, require_overlap)


def _grid_bounds(transform, width, height):
    from rasterio.transform import array_bounds

    return array_bounds(height, width, transform)  # (west, south, east, north)


def _raster_reader(path, ref_ds, crs, transform, width, height, require_overlap):
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds

    if ref_ds.crs is None:
        raise ReferenceError(f"reference raster {path} has no CRS")
    if require_overlap:
        b = transform_bounds(ref_ds.crs, crs, *ref_ds.bounds)
        _check_overlap(path, b, _grid_bounds(transform, width, height))
    vrt = WarpedVRT(ref_ds, crs=crs, transform=transform, width=width, height=height,
                    resampling=Resampling.nearest, nodata=0)

    def read(win):
        return vrt.read(1, window=win).astype(np.int64)

    return read


def _check_overlap(path, b, grid):
    if b[0] >= grid[2] or b[2] <= grid[0] or b[1] >= grid[3] or b[3] <= grid[1]:
        raise ReferenceError(f"labels {path} do not overlap the image (labels {tuple(round(v) for v in b)}, "
                             f"image {tuple(round(v) for v in grid)} in the image CRS)")


def _vector_reader(path, crs, transform, width, height, field, require_overlap):
    import fiona
    import shapely
    from fiona.transform import transform_geom
    from rasterio import features, windows

    if not field:
        raise ReferenceError(f"reference {path} is a vector file: give the class attribute (--field)")
    try:
        src = fiona.open(path)
    except Exception as exc:
        raise ReferenceError(f"cannot open reference {path}: {' '.join(str(exc).split())}") from None
    with src:
        props = list(src.schema["properties"])
        if field not in props:
            raise ReferenceError(f"reference {path} has no attribute '{field}'; attributes: {', '.join(props)}")
        src_crs = src.crs_wkt or None
        geoms, values = [], []
        for feat in src:
            geom, value = feat.geometry, feat.properties.get(field)
            if geom is None or value is None:
                continue
            g = dict(geom.__geo_interface__) if hasattr(geom, "__geo_interface__") else geom
            if src_crs:
                g = transform_geom(src_crs, crs.to_wkt(), g)
            geoms.append(shapely.geometry.shape(g))
            try:
                values.append(int(value))
            except (TypeError, ValueError):
                raise ReferenceError(f"reference {path}: attribute '{field}' holds {value!r}, not a class code") from None
    if not geoms:
        raise ReferenceError(f"reference {path} has no features with attribute '{field}'")
    geoms = np.asarray(geoms, dtype=object)
    values = np.asarray(values, dtype=np.int64)
    if require_overlap:
        _check_overlap(path, shapely.total_bounds(geoms), _grid_bounds(transform, width, height))
    # Windows ask only for the shapes they touch, so a large label file costs
    # per window what lies under it, not the whole file.
    tree = shapely.STRtree(geoms)

    def read(win):
        t = windows.transform(win, transform)
        h, w = int(win.height), int(win.width)
        west, south, east, north = _grid_bounds(t, w, h)
        hits = tree.query(shapely.box(west, south, east, north))
        if hits.size == 0:
            return np.zeros((h, w), dtype=np.int64)
        hits.sort()  # file order: later features win where they overlap, as in rasterize
        return features.rasterize(zip(geoms[hits], values[hits].tolist()), out_shape=(h, w), transform=t,
                                  fill=0, dtype="int32", all_touched=False).astype(np.int64)

    return read
