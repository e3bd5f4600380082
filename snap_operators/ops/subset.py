"""``Subset``: a spatial and/or band subset of a product (SNAP's ``SubsetOp``).

The pixel region comes, in this order of precedence (as ``SubsetOp.initialize``), from

* ``polygonRegion`` (WKT polygon in WGS84 longitude/latitude) or ``vectorFile``
  (a ``.wkt``/``.txt`` file holding one): the integer extent of the polygon in
  pixels (:func:`~snap_operators.grid.region.polygon_pixel_region`);
  pixels of that rectangle farther than 0.75 pixel from the polygon become
  no-data, and ``subSamplingX``/``subSamplingY`` are reset to 1 (SNAP does
  both);
* ``geoRegion`` (any WKT geometry in WGS84 longitude/latitude): every pixel
  the geometry touches, clipped to the scene
  (:func:`~snap_operators.grid.region.geometry_pixel_region`); on a
  multi-size product each band gets its own window with SNAP's rounding of
  vertex positions;
* ``region`` (``x,y,width,height`` in pixels; a zero width or height, or an
  empty value, means the whole scene; a region running past the scene edge is
  clipped, as SNAP does).

``fullSwath`` widens the region to the full scene width. On a multi-size
product ``region`` (and a polygon's extent) is in pixels of ``referenceBand``
(default: the finest band, SNAP's scene raster) and is scaled to every other
band by map coordinates, rounding outwards. Each band is sliced lazily (and
sub-sampled) and its geotransform is shifted and scaled exactly, so the subset
stays georeferenced to the pixel. The engine has no tie-point grids:
``tiePointGrids`` naming a band adds that band (as SNAP's node list does),
any other name is an error.
"""

from __future__ import annotations

import logging
import math

import dask.array as da
import numpy as np
import shapely
from affine import Affine

from ..core.errors import ParameterError
from ..core.operator import Operator, register
from ..core.product import Band, MetadataElement, Product, chunks_for
from ..core.spec import OperatorSpec, Parameter, SourceSpec
from ..grid.region import (
    geometry_window,
    mask_outside_polygon,
    parse_pixel_region,
    parse_wkt,
    polygon_parameter,
    polygon_to_band,
    scene_polygon,
    shift_polygon,
)
from ..grid.regrid import same_transform

log = logging.getLogger(__name__)

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
                      description="Region as WKT in WGS84 lon/lat, e.g. POLYGON((lon1 lat1, ..., lon1 lat1)); "
                                  "every pixel it touches is kept."),
            Parameter("subSamplingX", "int", default=1, interval="[1,*)",
                      description="Pixel sub-sampling step in X."),
            Parameter("subSamplingY", "int", default=1, interval="[1,*)",
                      description="Pixel sub-sampling step in Y."),
            Parameter("fullSwath", "boolean", default=False,
                      description="Extend the region to the full scene width."),
            Parameter("tiePointGrids", "String[]",
                      description="Tie-point grids to keep (the engine reads none; a band name adds the band)."),
            Parameter("tiePointGridNames", "String[]", description="Older name of tiePointGrids."),
            Parameter("copyMetadata", "boolean", default=True,
                      description="Copy the metadata of the source product."),
            Parameter("vectorFile", "File",
                      description="A .wkt/.txt file with the subset polygon (lon/lat; pixel x y if the text "
                                  "starts with a space). Has precedence over geoRegion and region."),
            Parameter("polygonRegion", "String",
                      description="Subset polygon as WKT in WGS84 lon/lat; pixels of its extent outside it "
                                  "become no-data. Has precedence over vectorFile, geoRegion and region."),
        ),
    )

    def initialize(self) -> Product:
        p = self.parameters
        src = self.source_product("sourceProduct")
        if not src.bands:
            raise self.error(f"product '{src.name}' has no bands")
        names = self._selected_bands(src)
        ref = self._reference_band(src)
        ssx, ssy = p["subSamplingX"], p["subSamplingY"]
        polygon = self._polygon(src, ref)
        if polygon is not None and (ssx, ssy) != (1, 1):
            log.warning("%s: subSamplingX/subSamplingY are reset to 1 with a polygon subset (as SNAP does)",
                        self.spec.alias)
            ssx = ssy = 1
        windows = self._windows(src, ref, names, polygon)

        bands = []
        for name in names:
            band = src.bands[name]
            w = windows[name]
            out = subset_band(band, w, ssx, ssy, self.context.tile_size)
            if polygon is not None:
                same = band.shape == ref.shape and same_transform(band.transform, ref.transform)
                poly = polygon_to_band(polygon[0], ref.transform, band.transform, same)
                out = mask_outside_polygon(out, shift_polygon(poly, w[0], w[1]))
            bands.append(out)
        out = src.copy(name=f"Subset_{src.name}", bands=bands)
        if not p["copyMetadata"]:
            out.metadata = MetadataElement(src.metadata.name)
        return out

    # --- parameters -------------------------------------------------------------
    def _param_error(self, message: str) -> ParameterError:
        return ParameterError(str(self.error(message)))

    def _selected_bands(self, src: Product) -> list[str]:
        p = self.parameters
        wanted = p["sourceBands"] or p["bandNames"] or []
        self.require_bands(src, wanted)
        grids = list(p["tiePointGrids"] or []) + list(p["tiePointGridNames"] or [])
        missing = [n for n in grids if n not in src.bands]
        if missing:
            # SNAP fails the same way for a name that is no raster of the product.
            raise self._param_error(
                f"tiePointGrids: product '{src.name}' has no raster named {', '.join(missing)} "
                "(the standalone engine reads no tie-point grids)"
            )
        ref = p["referenceBand"] or p["masterBand"]
        chosen = set(wanted) if wanted else set(src.bands)
        chosen.update(grids)  # SNAP's node list takes them whatever their kind
        if ref and ref in src.bands:
            chosen.add(ref)  # SNAP keeps the reference band in the subset
        return [n for n in src.bands if n in chosen]

    def _reference_band(self, src: Product) -> Band:
        ref = self.parameters["referenceBand"] or self.parameters["masterBand"]
        if not ref:
            return src.reference_band()
        if ref not in src.bands:
            raise self._param_error(f"referenceBand '{ref}' not in product '{src.name}'; bands: {src.bands_listed()}")
        return src.bands[ref]

    def _polygon(self, src: Product, ref: Band):
        """``(polygon in pixels of ref, extent x,y,w,h)`` from polygonRegion/vectorFile, or None."""
        found = polygon_parameter(self.parameters, self._param_error)
        if found is None:
            return None
        poly, extent = scene_polygon(src, *found, self._param_error)
        scene = src.reference_band()  # SNAP loads the polygon on the scene raster
        if ref is not scene and not (ref.shape == scene.shape and same_transform(ref.transform, scene.transform)):
            # SubsetOp with a referenceBand: the polygon and its extent in that band's pixels.
            poly = polygon_to_band(poly, scene.transform, ref.transform, same_grid=False)
            c = shapely.get_coordinates(poly)
            x0, y0 = int(c[:, 0].min()), int(c[:, 1].min())
            extent = (x0, y0, int(c[:, 0].max()) - x0, int(c[:, 1].max()) - y0)
        return poly, extent

    def _windows(self, src: Product, ref: Band, names: list[str], polygon) -> dict[str, Window]:
        """Every selected band's window, in its own pixels."""
        p = self.parameters
        h, w = ref.shape
        if polygon is not None:
            x, y, rw, rh = polygon[1]
            # SNAP: an empty extent (a polygon thinner than a pixel) is no region: the whole scene.
            window = (0, 0, w, h) if rw <= 0 or rh <= 0 else (x, y, min(x + rw, w), min(y + rh, h))
        elif p["geoRegion"]:
            if src.crs is None or ref.transform is None:
                raise self._param_error(f"geoRegion needs a georeferenced product; '{src.name}' has no CRS")
            geom = parse_wkt(p["geoRegion"], "geoRegion", self._param_error)
            if src.is_multi_size:
                return self._geo_windows_multi_size(src, names, geom)
            window = self._geo_window(geom, src, ref, round_pixels=False)
        elif p["region"]:
            window = self._pixel_region(p["region"], (h, w))
        else:
            window = (0, 0, w, h)
        if p["fullSwath"]:
            window = (0, window[1], w, window[3])
        return {name: band_window(src.bands[name], ref, window) for name in names}

    def _geo_window(self, geom, src: Product, band: Band, round_pixels: bool) -> Window:
        where = "the scene" if band is src.reference_band() else f"band {band.name!r}"
        return geometry_window(geom, src.crs, band.transform, band.shape, name="geoRegion",
                               text=self.parameters["geoRegion"], where=where, round_pixels=round_pixels,
                               error=self._param_error)

    def _geo_windows_multi_size(self, src: Product, names: list[str], geom) -> dict[str, Window]:
        """SubsetOp.computeRegionMap(geoRegion, ...): each band on its own grid, vertex positions rounded."""
        out = {}
        for name in names:
            band = src.bands[name]
            if band.transform is None:
                raise self._param_error(f"geoRegion needs georeferenced bands; band '{name}' has no geotransform")
            window = self._geo_window(geom, src, band, round_pixels=True)
            if self.parameters["fullSwath"]:
                # SNAP ignores fullSwath on this path; the engine honours it rather than drop it silently.
                window = (0, window[1], band.width, window[3])
            out[name] = window
        return out

    def _pixel_region(self, text: str, shape: tuple[int, int]) -> Window:
        h, w = shape
        region = parse_pixel_region(text, "region", empty="scene", error=self._param_error)
        if region is None:
            return 0, 0, w, h  # SubsetOp: an empty rectangle is no region, the whole scene
        x, y, rw, rh = region
        if x >= w or y >= h:
            raise self._param_error(f"region '{text}' lies outside the scene ({w}x{h} pixels)")
        return x, y, min(x + rw, w), min(y + rh, h)


def geo_region_window(wkt: str, crs, transform: Affine, shape: tuple[int, int], error=ParameterError) -> Window:
    """Pixel window of a WGS84 lon/lat WKT geometry on a grid, clipped to it (single-size ``geoRegion``).

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
        ``(col0, row0, col1, row1)``, end-exclusive (see
        :func:`~snap_operators.grid.region.geometry_pixel_region`).
    """
    return geometry_window(wkt, crs, transform, shape, name="geoRegion", text=wkt, where="the scene", error=error)


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
    rechunk = bool(tile_size) and (step_x > 1 or step_y > 1)

    def pick(a: da.Array) -> da.Array:
        a = a[y0:y1:step_y, x0:x1:step_x]
        return a.rechunk(chunks_for(a.shape, tile_size)) if rechunk else a

    transform = None
    if band.transform is not None:
        transform = band.transform @ Affine.translation(x0, y0) @ Affine.scale(step_x, step_y)
    return band.select(pick, transform=transform)


def _snap(v: float) -> float:
    """Round away floating-point noise so exact pixel edges stay exact."""
    return round(float(v), 6)

