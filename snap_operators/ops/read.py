"""``Read``: open a product from disk (SNAP's ``ReadOp``).

The product is opened lazily (headers only) with
:func:`snap_operators.io.open_product`. The subset parameters are applied
while reading, so only the selected bands and window are ever read:

* ``bandNames`` (alias ``sourceBands``): the bands to keep;
* ``pixelRegion`` (``x,y,width,height`` in scene pixels, i.e. of the finest
  band) or ``geometryRegion`` (WKT in WGS84 longitude/latitude: every pixel
  the geometry touches, clipped to the scene, as SNAP's
  ``GeometrySubsetRegion``); giving both is an error, as in SNAP;
* ``polygonRegion`` (WKT polygon in longitude/latitude) or ``vectorFile`` (a
  ``.wkt``/``.txt`` file holding one): SNAP's polygon subset, which has
  precedence over the two regions: the integer extent of the polygon, and
  pixels of it farther than 0.75 pixel from the polygon set to the band's
  no-data value;
* ``copyMetadata``: false drops the metadata tree.

The geometry rules (CRS, rounding, clipping) are those of
:mod:`snap_operators.grid.region`. As gpt's ``ReadOp``, all of these
apply only when ``useAdvancedOptions`` is true (its default is false): without
it the whole product is read, with a warning naming what was ignored, so a
graph writes here what it writes in gpt. The engine has no masks:
``maskNames`` (alias ``sourceMasks``) is refused when it would apply.
"""

from __future__ import annotations

import logging
from pathlib import Path

from affine import Affine

from ..core.errors import ParameterError, ProductReadError, in_node, node_label
from ..core.operator import Operator, register
from ..core.product import MetadataElement, Product
from ..core.spec import OperatorSpec, Parameter
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
from ..io import input_paths, open_product
from ..io.stac import is_url

log = logging.getLogger(__name__)

#: Parameters that make a subset; SNAP's ReadOp honours them only with useAdvancedOptions.
SUBSET_PARAMETERS = ("bandNames", "sourceBands", "pixelRegion", "geometryRegion", "polygonRegion", "vectorFile")


@register
class Read(Operator):
    """Reads a data product from a given file location."""

    spec = OperatorSpec(
        alias="Read",
        description="Reads a data product from a given file location.",
        category="Input-Output",
        sources=(),
        parameters=(
            Parameter("file", "File", required=True,
                      description="The file from which the data product is read (also a STAC item .json or "
                                  "its http(s) URL)."),
            Parameter("formatName", "String",
                      description="An (optional) format name (GeoTIFF, BEAM-DIMAP, SENTINEL-2-MSI-MultiRes, "
                                  "STAC...)."),
            Parameter("bandNames", "String[]", description="The list of source bands."),
            Parameter("sourceBands", "String[]", description="Alias of bandNames."),
            Parameter("maskNames", "String[]",
                      description="The list of source masks (not supported: the engine has no masks)."),
            Parameter("sourceMasks", "String[]", description="Alias of maskNames (not supported)."),
            Parameter("pixelRegion", "String",
                      description="The subset region in pixel coordinates: x,y,width,height. "
                                  "For multi-size products in pixels of the finest band."),
            Parameter("geometryRegion", "String",
                      description="The subset region in geographical coordinates as WKT in WGS84 lon/lat, "
                                  "e.g. POLYGON((lon1 lat1, lon2 lat2, ..., lon1 lat1)); every pixel it "
                                  "touches is read. Not together with pixelRegion."),
            Parameter("vectorFile", "File",
                      description="A .wkt/.txt file with the subset polygon (lon/lat; pixel x y if the text "
                                  "starts with a space). Has precedence over geometryRegion and pixelRegion."),
            Parameter("polygonRegion", "String",
                      description="The subset polygon as WKT in WGS84 lon/lat; pixels of its extent outside "
                                  "it become no-data. Has precedence over vectorFile and the regions."),
            Parameter("useAdvancedOptions", "boolean", default=False,
                      description="Whether to use advanced options for reading: the band, region and "
                                  "polygon subsets and copyMetadata apply only when true (as in SNAP)."),
            Parameter("copyMetadata", "boolean", default=True,
                      description="Whether to copy the metadata of the source product."),
        ),
    )

    def _prefix(self) -> str:
        return node_label(self.spec.alias, self.node_id)

    def _param_error(self, message: str) -> ParameterError:
        return ParameterError(f"{self._prefix()}: {message}")

    def initialize(self) -> Product:
        p = self.parameters
        file = p.get("file")
        if file is None or not str(file).strip():
            raise self.error("parameter 'file' is required")
        if is_url(str(file)):
            path = str(file).strip()  # a STAC item served over http(s): Path would fold its '//'
        else:
            path = Path(str(file).strip()).expanduser()
            if not path.exists():
                raise ProductReadError(f"{self._prefix()}: file not found: {path}")
        if p.get("pixelRegion") and p.get("geometryRegion"):
            # ReadOp.initialize refuses this before anything else, useAdvancedOptions or not.
            raise self._param_error("both pixelRegion and geometryRegion are given; at most one may be set")
        if not p.get("useAdvancedOptions"):
            ignored = [k for k in (*SUBSET_PARAMETERS, "maskNames", "sourceMasks") if p.get(k)]
            ignored += ["copyMetadata=false"] if p.get("copyMetadata") is False else []
            if ignored:
                # ReadOp builds its subset only when useAdvancedOptions is true: gpt reads it all.
                log.warning("%s: %s ignored, as gpt does, because useAdvancedOptions is false: the whole "
                            "product is read (set useAdvancedOptions to true to apply them)",
                            self._prefix(), ", ".join(ignored))
            product = self._read(path, None, None)
            self.context.input_files.update(input_paths(path))
            return product
        if p.get("maskNames") or p.get("sourceMasks"):
            raise self._param_error("maskNames is not supported (the standalone engine has no masks); "
                                    "remove it or select bands with bandNames")
        band_names = list(p.get("bandNames") or []) + [
            n for n in (p.get("sourceBands") or []) if n not in (p.get("bandNames") or [])
        ]
        polygon_text = polygon_parameter(p, self._param_error)
        geometry = p.get("geometryRegion")

        def read(pixel_region, names=band_names) -> Product:
            return self._read(path, pixel_region, names)

        polygon = None
        if polygon_text is None and not geometry:
            product = read(parse_pixel_region(p.get("pixelRegion"), "pixelRegion", error=self._param_error))
        else:
            # Headers first, all bands: the region is in pixels of the scene (the finest band of the
            # file, whatever bands are selected); then reopen on just that window.
            scene = read(None, names=None)
            if polygon_text is not None:
                polygon, region = self._polygon_region(scene, *polygon_text)
            else:
                region = self._geometry_region(scene, geometry)
            product = read(region)
        if polygon is not None:
            product = self._mask(product, polygon, region, scene.reference_band().transform)
        if not p.get("copyMetadata", True):
            product.metadata = MetadataElement("metadata")
        self.context.input_files.update(input_paths(path))
        return product

    def _read(self, path: Path | str, pixel_region, names) -> Product:
        try:
            return open_product(path, tile_size=self.context.tile_size, band_names=names or None,
                                pixel_region=pixel_region, format_name=self.parameters.get("formatName") or None)
        except ProductReadError as exc:
            raise in_node(exc, self.node_id, self.spec.alias) from None

    # --- geometry subsets -------------------------------------------------------------
    def _scene(self, product: Product, name: str):
        scene = product.reference_band()  # SNAP's scene raster: the finest band
        if product.crs is None or scene.transform is None:
            raise self._param_error(f"{name} needs a georeferenced product; '{product.name}' has no CRS")
        return scene

    def _geometry_region(self, product: Product, wkt: str) -> tuple[int, int, int, int]:
        """GeometrySubsetRegion.computeProductPixelRegion (floor/ceil) as ``(x, y, w, h)``."""
        geom = parse_wkt(wkt, "geometryRegion", self._param_error)
        scene = self._scene(product, "geometryRegion")
        x0, y0, x1, y1 = geometry_window(geom, product.crs, scene.transform, scene.shape, name="geometryRegion",
                                         text=wkt, error=self._param_error)
        return x0, y0, x1 - x0, y1 - y0

    def _polygon_region(self, product: Product, text: str, pixel: bool, name: str):
        """``(polygon in scene pixels, extent)`` (ProductSubsetByPolygon)."""
        poly, (x, y, w, h) = scene_polygon(product, text, pixel, name, self._param_error)
        if w <= 0 or h <= 0:
            # SNAP's PixelSubsetRegion refuses the empty extent of a polygon thinner than a pixel.
            raise self._param_error(f"{name} is thinner than a pixel (extent {x},{y},{w},{h}); SNAP refuses "
                                    "such a region")
        return poly, (x, y, w, h)

    def _mask(self, product: Product, polygon, region, scene_transform) -> Product:
        """Pixels outside the polygon -> no-data (AbstractProductReader + ProductSubsetBuilder)."""
        # The polygon moves with the window, its vertices truncated to integers, as SNAP does.
        poly = shift_polygon(polygon, region[0], region[1])
        x, y, w, h = region
        window_transform = None if scene_transform is None else scene_transform @ Affine.translation(x, y)
        bands = []
        for band in product.bands.values():
            same = band.shape == (h, w) and same_transform(band.transform, window_transform)
            poly_band = polygon_to_band(poly, window_transform, band.transform, same)
            bands.append(mask_outside_polygon(band, poly_band))
        out = product.copy(bands=bands)
        out.file_location = product.file_location
        return out
