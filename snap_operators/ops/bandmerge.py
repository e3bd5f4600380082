"""``BandMerge``: copy the bands of several products on one grid into one product.

As SNAP's BandMergeOp (microwave-toolbox): the first source is the master;
the target takes its name, CRS, times and metadata, then the bands of every
source in order. A band whose name is already taken is renamed
``<name>_2``, ``<name>_3``, ... Every source must share the master's scene:
same size and corner pixel centres no further apart than ``geographicError``
(degrees of latitude/longitude; CRS units when a product has no CRS).

``sourceBands``, when given, keeps only the bands with those source names
(SNAP's Graph Builder writes it, SNAP's operator ignores it; here it filters,
and an unknown name is an error).
"""

from __future__ import annotations

import numpy as np
import rasterio.crs
import rasterio.warp

from ..core.errors import ParameterError
from ..core.operator import Operator, register
from ..core.product import Product
from ..core.spec import OperatorSpec, Parameter, SourceSpec


@register
class BandMergeOp(Operator):
    """Merge the bands of products on the same grid."""

    spec = OperatorSpec(
        alias="BandMerge",
        category="Raster",
        description="Allows copying raster data from any number of source products to a specified 'master' product.",
        sources=(SourceSpec("sourceProducts", "The products to be merged into the master product.", multiple=True),),
        parameters=(
            Parameter("sourceBands", "String[]", label="Source Bands",
                      description="Bands to merge (names in the sources; default: all)."),
            Parameter("geographicError", "float", default=1e-5, interval="[0,*)", unit="deg",
                      description="Maximum lat/lon difference between the products' corner pixels."),
        ),
    )

    def initialize(self) -> Product:
        products = self.source_products()
        if not products:
            raise self.error("no source products")
        master = products[0]
        eps = float(self.parameters["geographicError"])
        for i, product in enumerate(products[1:], start=1):
            problem = grid_mismatch(master, product, eps)
            if problem:
                raise self.error(
                    f"product '{product.name}' (source {i}) is not compatible with master '{master.name}': {problem}"
                )

        wanted = self.parameters["sourceBands"] or []
        available = {name for p in products for name in p.bands}
        unknown = [n for n in wanted if n not in available]
        if unknown:
            raise ParameterError(str(self.error(
                f"sourceBands {', '.join(unknown)} not in any source; bands: {', '.join(sorted(available))}"
            )))

        target = master.copy(name=master.name, bands=[])
        for product in products:
            for band in product.bands.values():
                if wanted and band.name not in wanted:
                    continue
                name = band.name
                n = 2
                while name in target.bands:
                    name = f"{band.name}_{n}"
                    n += 1
                target.bands[name] = band if name == band.name else band.replace(name=name)
        if not target.bands:
            raise self.error("no bands to merge")
        return target


def grid_mismatch(master: Product, other: Product, eps: float) -> str | None:
    """Why `other` is not on `master`'s scene grid (SNAP's isCompatibleProduct), or None.

    Compares scene sizes, then the four corner pixel centres: in degrees of
    lon/lat when both products have a CRS, else in CRS units.
    """
    if other is master:
        return None
    if master.bands and other.bands and master.scene_shape != other.scene_shape:
        (h1, w1), (h2, w2) = master.scene_shape, other.scene_shape
        return f"size {w2}x{h2} differs from {w1}x{h1}"
    t1 = master.transform if master.bands else None
    t2 = other.transform if other.bands else None
    if (t1 is None) != (t2 is None):
        return "one product has a geocoding, the other none"
    if t1 is None:
        return None
    if (master.crs is None) != (other.crs is None):
        return "one product has a CRS, the other none"
    h, w = master.scene_shape
    cols = np.array([0.5, w - 0.5, 0.5, w - 0.5])
    rows = np.array([0.5, 0.5, h - 0.5, h - 0.5])
    x1, y1 = t1 @ (cols, rows)
    x2, y2 = t2 @ (cols, rows)
    unit = "CRS units"
    if master.crs is not None:
        wgs84 = rasterio.crs.CRS.from_epsg(4326)
        x1, y1 = rasterio.warp.transform(master.crs, wgs84, x1, y1)
        x2, y2 = rasterio.warp.transform(other.crs, wgs84, x2, y2)
        unit = "deg"
    dist = np.maximum(np.abs(np.subtract(x1, x2)), np.abs(np.subtract(y1, y2)))
    if not np.all(dist <= eps):
        return f"corner pixels differ by up to {float(np.nanmax(dist)):.3g} {unit} (geographicError {eps:g})"
    return None
