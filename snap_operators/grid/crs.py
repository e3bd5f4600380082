"""CRS helpers shared by area tables and label masks: pyproj views of any CRS.

Example
-------
>>> is_geographic("EPSG:4326"), metres_per_unit("EPSG:32638")
(True, 1.0)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


def to_pyproj(crs: Any):
    """A ``pyproj.CRS`` from a rasterio CRS, ``"EPSG:4326"``, WKT or pyproj CRS; None stays None."""
    import pyproj

    if crs is None or isinstance(crs, pyproj.CRS):
        return crs
    if hasattr(crs, "to_wkt"):
        return _parse(crs.to_wkt())
    return _parse(crs) if isinstance(crs, str) else pyproj.CRS.from_user_input(crs)


@lru_cache(maxsize=64)
def _parse(text: str):
    # Parsing WKT costs about a millisecond; area tables and label masks ask
    # for the same CRS once per chunk.
    import pyproj

    return pyproj.CRS.from_user_input(text)


def is_geographic(crs: Any) -> bool:
    """True when `crs` has angular (degree) axes."""
    c = to_pyproj(crs)
    return bool(c is not None and c.is_geographic)


def geod(crs: Any):
    """The ``pyproj.Geod`` (ellipsoid) of a geographic `crs`, else None."""
    c = to_pyproj(crs)
    if c is None or not c.is_geographic:
        return None
    return c.get_geod()


def metres_per_unit(crs: Any) -> float:
    """Metres per linear unit of projected `crs` (1 when unknown)."""
    c = to_pyproj(crs)
    if c is not None:
        for axis in c.axis_info:
            if axis.unit_conversion_factor:
                return float(axis.unit_conversion_factor)
    return 1.0
