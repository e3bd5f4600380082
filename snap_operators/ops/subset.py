"""``Subset``: a spatial and/or band subset of a product (SNAP's SubsetOp).

The pixel region comes from ``geoRegion`` (a WKT geometry in WGS84
longitude/latitude, transformed to the product CRS; the bounding box of its
intersection with the scene, in whole pixels) or else from ``region``
(``x,y,width,height`` in pixels; a zero width or height, or an empty value,
means the whole scene; a region running past the scene edge is clipped, as
SNAP does). ``fullSwath`` widens it to the full scene width.

On a multi-size product the region is in pixels of ``referenceBand`` (default:
the finest band, SNAP's scene raster) and is scaled to every other band by
map coordinates, rounding outwards. Each band is sliced lazily (and
sub-sampled by ``subSamplingX``/``subSamplingY``) and its geotransform is
shifted and scaled exactly, so the subset stays georeferenced to the pixel.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
import shapely.affinity
import shapely.wkt
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from shapely.errors import ShapelyError

from ..errors import ParameterError
from ..operator import Operator, register
from ..product import Band, MetadataElement, Product, chunks_for
from ..regrid import same_transform
from ..spec import OperatorSpec, Parameter, SourceSpec

#: A pixel window ``(col0, row0, col1, row1)``, end-exclusive.
Window = tuple[int, int, int, int]


@register
class SubsetOp(Operator):
    """Create a spatial and/or spectral subset of a product."""

    spec = OperatorSpec(
        alias="Subset",
        category="Raster",
        description="Create a spatial and/or spectral subset of a data product.",
        sources=(SourceSpec("sourceProduct", "The source product to create the subset from."),),
        parameters=(
            Parameter("sourceBands", "String[]", label="Source Bands",
                      description="Bands to keep (default: all)."),
            Parameter("bandNames", "String[]", description="Synonym of sourceBands (SNAP's field name)."),
            Parameter("region", "String", label="Region", unit="pixels",
                      description="Pixel region x,y,width,height; empty or 0,0,0,0 means the whole scene. "
                                  "geoRegion has precedence."),
            Parameter("referenceBand", "String", label="Reference Band",
                      description="Band whose pixels region refers to on multi-size products."),
            Parameter("masterBand", "String", description="Older name of referenceBand."),
            Parameter("geoRegion", "String", label="Geo Region",
                      description="Region as WKT in WGS84 lon/lat, e.g. POLYGON((lon1 lat1, ..., lon1 lat1))."),
            Parameter("subSamplingX", "int", default=1, interval="[1,*)",
                      description="Pixel sub-sampling step in X."),
            Parameter("subSamplingY", "int", default=1, interval="[1,*)",
                      description="Pixel sub-sampling step in Y."),
            Parameter("fullSwath", "boolean", default=False,
                      description="Extend the region to the full scene width."),
            Parameter("tiePointGrids", "String[]", description="Tie-point grids to keep (accepted; none here)."),
            Parameter("tiePointGridNames", "String[]", description="Older name of tiePointGrids (accepted)."),
            Parameter("copyMetadata", "boolean", default=True,
                      description="Copy the metadata of the source product."),
            Parameter("vectorFile", "File", description="Polygon file (not supported; use geoRegion)."),
            Parameter("polygonRegion", "String", description="Polygon WKT (not supported; use geoRegion)."),
        ),
    )

    def initialize(self) -> Product:
        p = self.parameters
        src = self.source_product("sourceProduct")
        if not src.bands:
            raise self.error(f"product '{src.name}' has no bands")
        for name in ("vectorFile", "polygonRegion"):
            if p.get(name):
                raise self._param_error(f"{name} is not supported by the standalone engine; use geoRegion")
        names = self._selected_bands(src)
        ref = self._reference_band(src)
        window = self._reference_window(src, ref)
        ssx, ssy = p["subSamplingX"], p["subSamplingY"]

        bands = []
        for name in names:
            band = src.bands[name]
            w = band_window(band, ref, window)
            bands.append(subset_band(band, w, ssx, ssy, self.context.tile_size))
        out = src.copy(name=f"Subset_{src.name}", bands=bands)
        if not p["copyMetadata"]:
            out.metadata = MetadataElement(src.metadata.name)
        return out

    # --- parameters -------------------------------------------------------------
    def _param_error(self, message: str) -> ParameterError:
        return ParameterError(str(self.error(message)))

    def _selected_bands(self, src: Product) -> list[str]:
        wanted = self.parameters["sourceBands"] or self.parameters["bandNames"] or []
        unknown = [n for n in wanted if n not in src.bands]
        if unknown:
            raise self._param_error(
                f"sourceBands {', '.join(unknown)} not in product '{src.name}'; bands: {', '.join(src.bands)}"
            )
        ref = self.parameters["referenceBand"] or self.parameters["masterBand"]
        chosen = set(wanted) if wanted else set(src.bands)
        if ref and ref in src.bands:
            chosen.add(ref)  # SNAP keeps the reference band in the subset
        return [n for n in src.bands if n in chosen]

    def _reference_band(self, src: Product) -> Band:
        ref = self.parameters["referenceBand"] or self.parameters["masterBand"]
        if not ref:
            return src.reference_band()
        if ref not in src.bands:
            raise self._param_error(f"referenceBand '{ref}' not in product '{src.name}'; bands: {', '.join(src.bands)}")
        return src.bands[ref]

    def _reference_window(self, src: Product, ref: Band) -> Window:
        p = self.parameters
        h, w = ref.shape
        if p["geoRegion"]:
            if src.crs is None or ref.transform is None:
                raise self._param_error(f"geoRegion needs a georeferenced product; '{src.name}' has no CRS")
            x0, y0, x1, y1 = geo_region_window(p["geoRegion"], src.crs, ref.transform, ref.shape, self._param_error)
        elif p["region"]:
            x0, y0, x1, y1 = self._pixel_region(p["region"], (h, w))
        else:
            x0, y0, x1, y1 = 0, 0, w, h
        if p["fullSwath"]:
            x0, x1 = 0, w
        return x0, y0, x1, y1

    def _pixel_region(self, text: str, shape: tuple[int, int]) -> Window:
        h, w = shape
        try:
            x, y, rw, rh = (int(v) for v in text.split(","))
        except ValueError:
            raise self._param_error(f"region '{text}' must be four integers x,y,width,height") from None
        if min(x, y, rw, rh) < 0:
            raise self._param_error(f"region '{text}' has negative values")
        if rw == 0 or rh == 0:
            return 0, 0, w, h  # SNAP: an empty rectangle means the whole scene
        if x >= w or y >= h:
            raise self._param_error(f"region '{text}' lies outside the scene ({w}x{h} pixels)")
        return x, y, min(x + rw, w), min(y + rh, h)


def geo_region_window(wkt: str, crs, transform: Affine, shape: tuple[int, int], error=ParameterError) -> Window:
    """Pixel window of a WGS84 lon/lat WKT geometry on a grid, clipped to it.

    Parameters
    ----------
    wkt : str
        Geometry in WKT, coordinates longitude latitude (degrees).
    crs : CRS
        Grid CRS (anything pyproj accepts, e.g. a rasterio CRS).
    transform : affine.Affine
        Pixel-corner geotransform of the grid.
    shape : tuple of int
        Grid ``(rows, cols)``.
    error : callable
        Builds the exception raised for bad or disjoint geometries.

    Returns
    -------
    tuple of int
        ``(col0, row0, col1, row1)``, end-exclusive: every pixel the
        geometry's bounding box (after intersecting the scene) touches.
    """
    try:
        geom = shapely.wkt.loads(wkt)
    except (ShapelyError, ValueError, TypeError) as exc:
        raise error(f"geoRegion is not valid WKT ({str(exc).splitlines()[0]})") from None
    if geom.is_empty:
        raise error("geoRegion is empty")
    # Densify in degrees so that edges bend correctly in the product projection.
    minx, miny, maxx, maxy = geom.bounds
    step = max(maxx - minx, maxy - miny) / 64 or 1.0
    if geom.geom_type in ("Polygon", "MultiPolygon", "LineString", "MultiLineString", "LinearRing"):
        geom = shapely.segmentize(geom, step)
    to_crs = Transformer.from_crs(ProjCRS.from_epsg(4326), ProjCRS.from_user_input(_wkt_or_obj(crs)), always_xy=True)
    projected = shapely.transform(geom, lambda xy: np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1])))
    coords = shapely.get_coordinates(projected)
    if not np.isfinite(coords).all():
        raise error("geoRegion lies (partly) outside the domain of the product's CRS")
    inv = ~transform
    pixels = shapely.affinity.affine_transform(projected, [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])
    h, w = shape
    inside = pixels.intersection(shapely.box(0, 0, w, h))
    if inside.is_empty:
        raise error(f"geoRegion does not intersect the scene ({wkt[:60]}{'...' if len(wkt) > 60 else ''})")
    c0, r0, c1, r1 = inside.bounds
    x0, y0 = max(int(math.floor(_snap(c0))), 0), max(int(math.floor(_snap(r0))), 0)
    x1, y1 = min(int(math.ceil(_snap(c1))), w), min(int(math.ceil(_snap(r1))), h)
    # A geometry thinner than a pixel still selects the pixel it touches.
    return x0, y0, max(x1, min(x0 + 1, w)), max(y1, min(y0 + 1, h))


def band_window(band: Band, ref: Band, window: Window) -> Window:
    """`window` (pixels of `ref`) expressed in pixels of `band`, rounded outwards."""
    if band.shape == ref.shape and same_transform(band.transform, ref.transform):
        return window
    x0, y0, x1, y1 = window
    if band.transform is None or ref.transform is None:
        sx, sy = band.width / ref.width, band.height / ref.height
        cols, rows = np.array([x0 * sx, x1 * sx]), np.array([y0 * sy, y1 * sy])
    else:
        xs, ys = ref.transform @ (np.array([x0, x1, x0, x1], float), np.array([y0, y0, y1, y1], float))
        cols, rows = ~band.transform @ (xs, ys)
    bx0 = max(int(math.floor(_snap(np.min(cols)))), 0)
    by0 = max(int(math.floor(_snap(np.min(rows)))), 0)
    bx1 = min(int(math.ceil(_snap(np.max(cols)))), band.width)
    by1 = min(int(math.ceil(_snap(np.max(rows)))), band.height)
    if bx0 >= bx1 or by0 >= by1:
        raise ParameterError(f"Subset: the region does not cover band '{band.name}'")
    return bx0, by0, bx1, by1


def subset_band(band: Band, window: Window, step_x: int = 1, step_y: int = 1, tile_size: int | None = None) -> Band:
    """Lazy slice of `band` over `window` (its pixels), sub-sampled, with the exact transform.

    Parameters
    ----------
    band : Band
    window : tuple of int
        ``(col0, row0, col1, row1)``, end-exclusive, in `band` pixels.
    step_x, step_y : int
        Sub-sampling steps; the target keeps pixels ``col0, col0 + step_x, ...``.
    tile_size : int, optional
        Rechunk to this square size after sub-sampling (which shrinks chunks).
    """
    x0, y0, x1, y1 = window
    if (x0, y0, x1, y1) == (0, 0, band.width, band.height) and step_x == step_y == 1:
        return band
    data = band.data[y0:y1:step_y, x0:x1:step_x]
    if tile_size and (step_x > 1 or step_y > 1):
        data = data.rechunk(chunks_for(data.shape, tile_size))
    transform = None
    if band.transform is not None:
        transform = band.transform @ Affine.translation(x0, y0) @ Affine.scale(step_x, step_y)
    return band.replace(data=data, transform=transform)


def _snap(v: float) -> float:
    """Round away floating-point noise so exact pixel edges stay exact."""
    return round(float(v), 6)


def _wkt_or_obj(crs):
    to_wkt = getattr(crs, "to_wkt", None)
    return to_wkt() if callable(to_wkt) else crs
