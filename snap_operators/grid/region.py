"""Spatial subset regions from geometries, as SNAP computes them from headers.

``Read`` (``geometryRegion``, ``polygonRegion``, ``vectorFile``) and
``Subset`` (``geoRegion``, ``polygonRegion``, ``vectorFile``) turn a WKT
geometry into a pixel rectangle before any pixel is read. Two SNAP code paths
exist and are reproduced here, rounding rules included:

* **geometry region** (:func:`geometry_pixel_region`, SNAP's
  ``GeoUtils.computePixelRegionUsingGeometry``): the WKT is in WGS84
  longitude/latitude; it is intersected, in longitude/latitude, with the
  outline through the centres of the scene's edge pixels; every vertex of the
  intersection is projected to pixel coordinates and the rectangle runs from
  ``floor`` of the smallest to ``ceil`` of the largest (``round`` for both
  on SNAP's multi-size paths), clipped to the scene. A region thinner than a
  pixel still selects the one pixel it touches. Pixels inside the rectangle
  but outside the geometry are kept.
* **polygon subset** (:func:`polygon_pixel_region`, SNAP's
  ``ProductSubsetByPolygon`` + ``GeoUtils.computePolygonExtent``): the
  polygon (lon/lat, or pixel x/y for a ``vectorFile`` whose text starts with a
  space) is clipped, in lon/lat, to the outline through the edge pixel centres
  (a point every 100 pixels), projected to pixels, clipped to
  ``[0, width-1] x [0, height-1]``; the rectangle is the integer part of its
  extent: ``x = int(min x)``, ``width = int(max x) - int(min x)`` (so a
  polygon covering the whole scene loses the last column and row, as in
  SNAP). Pixels of the rectangle whose corner point ``(col, row)`` lies more
  than 0.75 pixel from the polygon (its vertices truncated to integers) are
  set to the band's no-data value (:func:`mask_outside_polygon`, SNAP's
  ``ProductSubsetBuilder.readBandRasterDataSubsampled``).

Pixel positions are rounded to 1e-6 pixel before ``floor``/``ceil`` so that a
coordinate meant to lie on a pixel edge (``51.995`` on a 0.001 degree grid)
does not move a whole pixel because of floating-point noise; SNAP does not do
this, so it can differ by one pixel in such cases. A product crossing the
antimeridian is refused (SNAP splits its outline; not implemented here).
"""

from __future__ import annotations

import math
import operator
import re
from pathlib import Path
from typing import Callable

import dask.array as da
import numpy as np
import shapely
import shapely.wkt
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from shapely.errors import GEOSException, ShapelyError
from shapely.geometry import MultiPolygon, Polygon

from ..core.errors import ParameterError
from ..core.product import Band

#: A pixel window ``(col0, row0, col1, row1)``, end-exclusive.
Window = tuple[int, int, int, int]
#: Builds the exception raised for a bad or unusable geometry.
ErrorFactory = Callable[[str], Exception]

#: Distance (pixels) within which a pixel corner point is inside a polygon subset
#: (``ProductSubsetBuilder.readBandRasterDataSubsampled``: ``isWithinDistance(polygon, 0.75)``).
POLYGON_TOLERANCE = 0.75
#: Pixel step of the product outline a polygon subset is clipped to (``FeatureUtils.createGeoBoundaryPolygon``).
POLYGON_OUTLINE_STEP = 100
#: Vector files ``vectorFile`` can name here (SNAP also reads .shp, .kml, .kmz, .json, .placemark, .pnx).
VECTOR_FILE_SUFFIXES = (".wkt", ".txt")


# --- parsing ----------------------------------------------------------------------------


def parse_wkt(text: str, name: str, error: ErrorFactory = ParameterError):
    """A shapely geometry from WKT (SNAP's ``JtsGeometryConverter``).

    Raises
    ------
    Exception
        Built by `error`, one line naming the parameter `name`.
    """
    try:
        geom = shapely.wkt.loads(str(text).strip())
    except (ShapelyError, ValueError, TypeError) as exc:
        raise error(f"{name} is not valid WKT ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if geom is None or geom.is_empty:
        raise error(f"{name} is an empty geometry")
    return geom


#: Pixel rectangle items as Java's ``Integer.parseInt`` reads them (after trimming).
_JAVA_INT = re.compile(r"[+-]?[0-9]+")


def parse_pixel_region(value, name: str = "pixel region", *, empty: str = "error",
                       error: ErrorFactory = ParameterError) -> tuple[int, int, int, int] | None:
    """``(x, y, width, height)`` of a pixel rectangle, read as SNAP reads ``region``/``pixelRegion``.

    The one parser of pixel regions: Subset's ``region`` and Read's
    ``pixelRegion`` (and ``open_product(pixel_region=...)``).

    Parameters
    ----------
    value : str, sequence of int or None
        ``"x,y,width,height"`` (SNAP's ``RectangleConverter``: four
        comma-separated integers, each trimmed, empty items skipped; no
        decimals), or four integers. None or blank text: no region (the
        parameter is not set).
    name : str
        The parameter, for messages.
    empty : {"error", "scene"}
        What a rectangle of width or height 0 (or less) is. SNAP's operators
        differ: Read's ``PixelSubsetRegion`` refuses it (``"error"``);
        Subset's ``SubsetOp`` takes an empty ``Rectangle`` for no region at
        all, the whole scene (``"scene"``: None is returned), and not for
        "to the scene's end" (its ``width == 0`` branch is never reached).
    error : callable
        Builds the exception raised.

    Returns
    -------
    tuple of int or None
        Scene pixels; not clipped to the scene (callers clip, as SNAP does).

    Raises
    ------
    Exception
        From `error`, one line: not four integers, x or y negative (both
        operators refuse it), or empty with ``empty="error"``.

    Examples
    --------
    >>> parse_pixel_region(" 10, 20,50 ,30")
    (10, 20, 50, 30)
    >>> parse_pixel_region("5,5,0,0", "region", empty="scene") is None
    True
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value
        items = [item.strip() for item in value.split(",") if item]  # a StringTokenizer: ",," is one comma
        numbers = [int(item) for item in items if _JAVA_INT.fullmatch(item)]
        if len(numbers) != len(items):
            numbers = []
    else:
        text = ",".join(map(str, value))
        try:
            numbers = [operator.index(item) for item in value]  # ints (numpy's too), never floats
        except TypeError:
            numbers = []
    if len(numbers) != 4:
        raise error(f"{name} '{text}' is not 'x,y,width,height' (four integers)")
    x, y, w, h = numbers
    if x < 0 or y < 0:
        raise error(f"{name} '{text}' has a negative x or y")
    if w <= 0 or h <= 0:
        if empty == "scene":
            return None
        raise error(f"{name} '{text}' is empty: width and height > 0 are needed")
    return x, y, w, h


def read_vector_file(path: str, error: ErrorFactory = ParameterError) -> tuple[str, bool]:
    """``(wkt, pixel_coordinates)`` of a ``vectorFile`` (SNAP's ``readPolygonFromWKTFile``).

    The lines are joined without separator; the coordinates are pixel
    ``x y`` when the text starts with a space, else longitude latitude (SNAP's
    rule). Only ``.wkt`` and ``.txt`` files are supported.
    """
    p = Path(str(path).strip()).expanduser()
    suffix = p.suffix.lower()
    if suffix not in VECTOR_FILE_SUFFIXES:
        raise error(f"vectorFile '{p.name}': only {'/'.join(VECTOR_FILE_SUFFIXES)} (WKT) files are supported by "
                    "the standalone engine; convert it to WKT or give the polygon as polygonRegion")
    try:
        text = "".join(p.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"vectorFile '{p}' cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    return text, text.startswith(" ")


# --- coordinates ------------------------------------------------------------------------


def _pyproj(crs) -> ProjCRS:
    to_wkt = getattr(crs, "to_wkt", None)
    return ProjCRS.from_user_input(to_wkt() if callable(to_wkt) else crs)


class _Grid:
    """Pixel <-> longitude/latitude for one raster grid (SNAP's ``CrsGeoCoding``)."""

    def __init__(self, crs, transform: Affine, shape: tuple[int, int], error: ErrorFactory):
        if crs is None or transform is None:
            raise error("the product has no map geocoding (CRS and geotransform)")
        self.transform = transform
        self.inverse = ~transform
        self.height, self.width = (int(v) for v in shape)
        crs = _pyproj(crs)
        wgs84 = ProjCRS.from_epsg(4326)
        self.to_lonlat = Transformer.from_crs(crs, wgs84, always_xy=True)
        self.from_lonlat = Transformer.from_crs(wgs84, crs, always_xy=True)
        self.error = error

    def pixel_to_lonlat(self, xy: np.ndarray) -> np.ndarray:
        mx, my = self.transform @ (xy[:, 0], xy[:, 1])
        return np.column_stack(self.to_lonlat.transform(mx, my))

    def lonlat_to_map(self, xy: np.ndarray) -> np.ndarray:
        return np.column_stack(self.from_lonlat.transform(xy[:, 0], xy[:, 1]))

    def map_to_pixel(self, xy: np.ndarray) -> np.ndarray:
        return np.column_stack(self.inverse @ (xy[:, 0], xy[:, 1]))

    def outline(self, step: int) -> Polygon:
        """The lon/lat outline through the edge pixel centres, a point every `step` pixels."""
        pixels = np.array(_pixel_boundary(self.width, self.height, step), dtype=float)
        lonlat = self.pixel_to_lonlat(pixels)
        if not np.isfinite(lonlat).all():
            raise self.error("the product outline cannot be expressed in longitude/latitude")
        lon = np.append(lonlat[:, 0], lonlat[0, 0])
        if (np.abs(np.diff(lon)) > 180.0).any():  # as GeoUtils.normalizeGeoPolygon detects a crossing
            raise self.error("the product crosses the antimeridian; geometry subsets of such products "
                             "are not supported by the standalone engine")
        return Polygon(lonlat)


def _pixel_boundary(width: int, height: int, step: int) -> list[tuple[float, float]]:
    """Pixel-centre outline of a ``width x height`` raster (``GeoUtils.createPixelBoundaryFromRect``)."""
    inset = 0.5
    x2, y2 = width - 1, height - 1
    if step <= 0:
        step = 2 * max(width, height)
    pts = []
    last_x = 0
    for x in range(0, x2, step):
        pts.append((x + inset, inset))
        last_x = x
    last_y = 0
    for y in range(0, y2, step):
        pts.append((x2 + inset, y + inset))
        last_y = y
    pts.append((x2 + inset, y2 + inset))
    for x in range(last_x, 0, -step):
        pts.append((x + inset, y2 + inset))
    pts.append((inset, y2 + inset))
    for y in range(last_y, 0, -step):
        pts.append((inset, y + inset))
    return pts


def _snap(v: np.ndarray) -> np.ndarray:
    """Round away floating-point noise so that exact pixel edges stay exact."""
    return np.round(v, 6)


# --- geometry region (geoRegion / geometryRegion) ----------------------------------------


def geometry_pixel_region(
    geom,
    crs,
    transform: Affine,
    shape: tuple[int, int],
    *,
    round_pixels: bool = False,
    name: str = "geoRegion",
    error: ErrorFactory = ParameterError,
) -> Window | None:
    """Pixel window of a lon/lat geometry on a grid (``GeoUtils.computePixelRegionUsingGeometry``).

    Parameters
    ----------
    geom : shapely geometry or str
        Geometry (or WKT), coordinates longitude latitude in degrees (WGS84).
    crs : CRS
        Grid CRS (anything pyproj accepts, e.g. a rasterio CRS).
    transform : affine.Affine
        Pixel-corner geotransform of the grid.
    shape : tuple of int
        Grid ``(rows, cols)``.
    round_pixels : bool
        Round vertex pixel positions (SNAP's multi-size ``Subset`` path)
        instead of ``floor`` for the start and ``ceil`` for the end.
    name : str
        Parameter name for messages.
    error : callable
        Builds the exception raised for bad geometries.

    Returns
    -------
    tuple of int or None
        ``(col0, row0, col1, row1)``, end-exclusive, clipped to the grid;
        None when the geometry does not intersect the grid (SNAP's empty
        rectangle).
    """
    if isinstance(geom, str):
        geom = parse_wkt(geom, name, error)
    grid = _Grid(crs, transform, shape, lambda m: error(f"{name}: {m}"))
    # SNAP steps the outline by a eighth of the shorter side (at least one pixel).
    outline = grid.outline(max(min(grid.width, grid.height) // 8, 1))
    try:
        inside = shapely.intersection(geom, outline)
    except GEOSException as exc:
        raise error(f"{name} is not a valid geometry ({str(exc).splitlines()[0]})") from None
    if inside.is_empty:
        return None
    pixels = grid.map_to_pixel(grid.lonlat_to_map(shapely.get_coordinates(inside)))
    pixels = _snap(pixels[np.isfinite(pixels).all(axis=1)])  # SNAP skips invalid pixel positions
    if not len(pixels):
        return None
    if round_pixels:  # Java's Math.round: half up
        lo = hi = np.floor(pixels + 0.5)
    else:
        lo, hi = np.floor(pixels), np.ceil(pixels)
    x0, y0 = int(lo[:, 0].min()), int(lo[:, 1].min())
    x1, y1 = int(hi[:, 0].max()), int(hi[:, 1].max())
    # java.awt.Rectangle.intersection with the raster.
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, grid.width), min(y1, grid.height)
    if x1 < x0 or y1 < y0 or x0 >= grid.width or y0 >= grid.height:
        return None
    if x1 == x0 or y1 == y0:
        # "subpixeling intersection correction": a geometry thinner than a pixel selects one pixel.
        return x0, y0, x0 + 1, y0 + 1
    return x0, y0, x1, y1


# --- polygon subset (polygonRegion / vectorFile) -----------------------------------------


def _polygon_coordinates(geom, name: str, error: ErrorFactory) -> np.ndarray:
    """The coordinates SNAP builds the subset polygon from (``extractCoordinatesFromWKT``)."""
    if shapely.get_num_coordinates(geom) < 3:
        raise error(f"{name}: cannot create a polygon, 3 or more points are required")
    if isinstance(geom, MultiPolygon):
        if len(geom.geoms) > 1:
            raise error(f"{name}: subsetting by multiple polygons is not supported")
        geom = geom.geoms[0]
    if isinstance(geom, Polygon) and len(geom.interiors):
        # SNAP would chain the hole's points onto the outer ring; refuse instead of cutting a wrong shape.
        raise error(f"{name}: polygons with holes are not supported")
    return shapely.get_coordinates(geom)


def _closed_polygon(coords: np.ndarray) -> Polygon:
    """``GeometryNormalizer.buildPolygonFromCoordinates``: close the ring if needed."""
    return Polygon(coords)


def _single_polygon(geom, name: str, error: ErrorFactory) -> Polygon:
    """``GeometryNormalizer.singlePolygon``."""
    if geom.is_empty:
        raise error(f"{name}: the intersection of the polygon with the product is empty")
    if isinstance(geom, Polygon):
        return geom
    if isinstance(geom, MultiPolygon):
        if len(geom.geoms) > 1:
            raise error(f"{name}: the polygon crosses the product outline more than once "
                        "(subsetting by multiple polygons is not supported)")
        return geom.geoms[0]
    raise error(f"{name}: the intersection with the product bounds is not a polygon")


def _clip_pixel_polygon(poly: Polygon, width: int, height: int, name: str, error: ErrorFactory) -> Polygon:
    """``PolygonClipper.clipPixelPolygonToProductBounds``: clip to ``[0, w-1] x [0, h-1]``."""
    c = shapely.get_coordinates(poly)
    if (c[:, 0] < 0).any() or (c[:, 0] > width - 1).any() or (c[:, 1] < 0).any() or (c[:, 1] > height - 1).any():
        box = Polygon([(0, 0), (0, height - 1), (width - 1, height - 1), (width - 1, 0)])
        try:
            return _single_polygon(shapely.intersection(box, poly), name, error)
        except GEOSException as exc:
            raise error(f"{name} is not a valid polygon ({str(exc).splitlines()[0]})") from None
    return poly


def polygon_pixel_region(
    geom,
    crs,
    transform: Affine,
    shape: tuple[int, int],
    *,
    pixel_coordinates: bool = False,
    name: str = "polygonRegion",
    error: ErrorFactory = ParameterError,
) -> tuple[Polygon, tuple[int, int, int, int]]:
    """The subset polygon in pixels and its extent (``ProductSubsetByPolygon``).

    Parameters
    ----------
    geom : shapely geometry or str
        A polygon (or WKT): longitude latitude, or pixel x y with
        `pixel_coordinates`.
    crs, transform, shape
        The grid (as :func:`geometry_pixel_region`); `crs` and `transform`
        may be None with `pixel_coordinates`.
    pixel_coordinates : bool
        The coordinates are pixels, not degrees.
    name : str
        Parameter name for messages.
    error : callable
        Builds the exception raised for bad polygons.

    Returns
    -------
    polygon : shapely.Polygon
        In (float) pixel coordinates of the grid, inside ``[0, w-1] x [0, h-1]``.
    extent : tuple of int
        ``(x, y, width, height)`` = ``getExtentOfPolygon``; width or height
        may be 0 for a polygon thinner than a pixel.
    """
    if isinstance(geom, str):
        geom = parse_wkt(geom, name, error)
    height, width = (int(v) for v in shape)
    coords = _polygon_coordinates(geom, name, error)
    if pixel_coordinates:
        poly = _closed_polygon(coords)
    else:
        lon, lat = coords[:, 0], coords[:, 1]
        if not (np.isfinite(coords).all() and (np.abs(lat) <= 90).all() and (np.abs(lon) <= 180).all()):
            raise error(f"{name}: coordinates must be longitude latitude in degrees "
                        "(longitude -180..180, latitude -90..90)")
        grid = _Grid(crs, transform, shape, lambda m: error(f"{name}: {m}"))
        geo = _closed_polygon(coords)
        if not geo.is_valid:
            geo = geo.buffer(0)  # FeatureUtils.clipCollection's makeValid
        outline = grid.outline(POLYGON_OUTLINE_STEP)
        if not outline.is_valid:
            outline = outline.buffer(0)
        try:
            clipped = shapely.intersection(geo, outline)
        except GEOSException as exc:
            raise error(f"{name} is not a valid polygon ({str(exc).splitlines()[0]})") from None
        if clipped.is_empty:
            raise error(f"{name} does not intersect the product (the intersection of the polygon with the "
                        "product is empty)")
        clipped = _single_polygon(shapely.transform(clipped, grid.lonlat_to_map), name, error)
        pixels = grid.map_to_pixel(shapely.get_coordinates(clipped))
        if not np.isfinite(pixels).all():
            raise error(f"{name}: cannot project the polygon to the product's pixels")
        poly = _closed_polygon(pixels)
    poly = _clip_pixel_polygon(poly, width, height, name, error)
    c = _snap(shapely.get_coordinates(poly))
    # GeoUtils.computePolygonExtent: Java (int) casts of the extreme coordinates.
    x0, y0 = int(c[:, 0].min()), int(c[:, 1].min())
    x1, y1 = int(c[:, 0].max()), int(c[:, 1].max())
    return poly, (x0, y0, x1 - x0, y1 - y0)


def polygon_to_band(poly: Polygon, from_transform: Affine | None, band_transform: Affine | None,
                    same_grid: bool) -> Polygon:
    """`poly` (pixels of a grid) in a band's pixels, vertices truncated to integers.

    SNAP's ``GeoUtils.projectPolygonToGeocoding``: pixel -> map -> band pixel,
    then ``max(0, (int) v)``. On the same grid only the truncation applies.
    """
    c = _snap(shapely.get_coordinates(poly))
    if not same_grid and from_transform is not None and band_transform is not None:
        mx, my = from_transform @ (c[:, 0], c[:, 1])
        c = _snap(np.column_stack((~band_transform) @ (mx, my)))
    c = np.maximum(np.trunc(c), 0.0)
    return Polygon(c) if len(np.unique(c, axis=0)) >= 3 else shapely.LineString(c)


def shift_polygon(poly, dx: int, dy: int):
    """`poly` translated by ``(-dx, -dy)`` pixels, vertices truncated (``AbstractProductReader``)."""
    c = _snap(shapely.get_coordinates(poly))
    c = np.trunc(c - np.array([dx, dy], dtype=float))
    return Polygon(c) if len(np.unique(c, axis=0)) >= 3 else shapely.LineString(c)


def polygon_keep_mask(poly, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """True where the point ``(col, row)`` lies within 0.75 pixel of `poly` (SNAP's keep rule).

    Parameters
    ----------
    poly : shapely geometry
        Subset polygon in the same pixel coordinates as `rows`/`cols`; it is
        prepared in place, so give each thread its own copy.
    rows, cols : numpy.ndarray
        1-D pixel coordinates of the block's rows and columns.

    Returns
    -------
    numpy.ndarray of bool
        Shape ``(len(rows), len(cols))``.
    """
    xx, yy = np.meshgrid(cols.astype(float), rows.astype(float))
    shapely.prepare(poly)
    keep = shapely.contains_xy(poly, xx, yy)
    # Points just outside: a cheap superset (a 0.8 buffer holds the 0.75 one even with its chords),
    # then exact distances for those only.
    near = shapely.buffer(poly, POLYGON_TOLERANCE + 0.05)
    shapely.prepare(near)
    cand = ~keep & shapely.contains_xy(near, xx, yy)
    if cand.any():
        pts = shapely.points(xx[cand], yy[cand])
        keep[cand] = shapely.distance(poly, pts) <= POLYGON_TOLERANCE
    return keep


def mask_outside_polygon(band: Band, poly) -> Band:
    """`band` with the pixels outside the subset polygon set to its no-data value, lazily.

    `poly` is in the band's own pixel coordinates (after the subset). The
    fill is the band's no-data value; without one, NaN for floats (the
    project's convention) and 0 for integers (SNAP's default no-data value,
    which it does not mark as used).
    """
    # WKB, not the geometry: each block prepares its own copy (prepared GEOS geometries are not
    # shared across threads) and bytes pickle to dask.distributed workers.
    wkb = shapely.to_wkb(poly)

    def masked(array: da.Array, fill) -> da.Array:
        dtype = array.dtype
        if fill is None:
            fill = math.nan if np.issubdtype(dtype, np.floating) else 0

        def apply(block: np.ndarray, block_info=None) -> np.ndarray:
            (r0, r1), (c0, c1) = block_info[0]["array-location"]
            local = shapely.from_wkb(wkb)
            points = shapely.box(c0, r0, c1 - 1, r1 - 1)  # the hull of the block's pixel corner points
            if shapely.covers(local, points):
                return block  # most blocks of a large polygon: nothing to test per pixel
            if shapely.distance(local, points) > POLYGON_TOLERANCE:
                return np.full_like(block, fill)
            keep = polygon_keep_mask(local, np.arange(r0, r1), np.arange(c0, c1))
            if keep.all():
                return block
            out = np.array(block, copy=True)
            out[~keep] = fill
            return out

        return da.map_blocks(apply, array, dtype=dtype, meta=np.empty((0, 0), dtype))

    # the stored samples outside get the stored no-data value, as the physical ones get the band's
    stored = None if band.stored is None else band.stored.map(lambda a: masked(a, band.stored.no_data))
    return band.replace(data=masked(band.data, band.no_data), stored=stored)


def polygon_parameter(params, error: ErrorFactory = ParameterError) -> tuple[str, bool, str] | None:
    """``(wkt, pixel_coordinates, parameter)`` of ``polygonRegion``, else ``vectorFile``, else None.

    SNAP's precedence (``ReadOp``, ``SubsetOp``): ``polygonRegion`` wins over
    ``vectorFile``; a vector file may hold pixel coordinates.
    """
    if params.get("polygonRegion"):
        return params["polygonRegion"], False, "polygonRegion"
    if params.get("vectorFile"):
        text, pixel = read_vector_file(params["vectorFile"], error)
        return text, pixel, "vectorFile"
    return None


def scene_polygon(product, text: str, pixel: bool, name: str, error: ErrorFactory = ParameterError):
    """``(polygon in scene pixels, extent (x, y, w, h))`` of a polygon parameter on `product`'s scene
    raster (its finest band), as ``ProductSubsetByPolygon`` loads it."""
    geom = parse_wkt(text, name, error)
    scene = product.reference_band()
    if not pixel and (product.crs is None or scene.transform is None):
        raise error(f"{name} needs a georeferenced product; '{product.name}' has no CRS")
    return polygon_pixel_region(geom, product.crs, scene.transform, scene.shape, pixel_coordinates=pixel,
                                name=name, error=error)


def geometry_window(geom, crs, transform, shape: tuple[int, int], *, name: str, text: str, where: str = "the product",
                    round_pixels: bool = False, error: ErrorFactory = ParameterError) -> tuple[int, int, int, int]:
    """:func:`geometry_pixel_region`, or `error` naming parameter `name` (value `text`) when the
    geometry misses the grid (`where`: ``"the product"``, ``"the scene"``, ``"band 'B4'"``)."""
    window = geometry_pixel_region(geom, crs, transform, shape, round_pixels=round_pixels, name=name, error=error)
    if window is None:
        raise error(f"{name} does not intersect {where} ({text[:60]}{'...' if len(text) > 60 else ''})")
    return window
