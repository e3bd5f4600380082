"""``Read``: open a product from disk (SNAP's ``ReadOp``).

The product is opened lazily (headers only) with
:func:`snap_operators.io.open_product`. ``bandNames`` (or its alias
``sourceBands``) and ``pixelRegion`` are applied while reading, so only the
selected bands and window are ever read; SNAP applies them only when
``useAdvancedOptions`` is true, the standalone engine always does.
``useAdvancedOptions``, ``maskNames`` and ``geometryRegion`` are accepted and
ignored (the engine has no masks; use ``Subset`` with a geometry instead).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ProductReadError
from ..io import input_paths, open_product
from ..operator import Operator, register
from ..product import MetadataElement, Product
from ..spec import OperatorSpec, Parameter

log = logging.getLogger(__name__)


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
                      description="The file from which the data product is read."),
            Parameter("formatName", "String",
                      description="An (optional) format name (GeoTIFF, BEAM-DIMAP, SENTINEL-2-MSI-MultiRes...)."),
            Parameter("bandNames", "String[]", description="The list of source bands."),
            Parameter("sourceBands", "String[]", description="Alias of bandNames."),
            Parameter("maskNames", "String[]", description="The list of source masks (ignored)."),
            Parameter("sourceMasks", "String[]", description="Alias of maskNames (ignored)."),
            Parameter("pixelRegion", "String",
                      description="The subset region in pixel coordinates: x,y,width,height. "
                                  "For multi-size products in pixels of the finest band."),
            Parameter("geometryRegion", "String",
                      description="The subset region in geographical coordinates as WKT (ignored; use Subset)."),
            Parameter("useAdvancedOptions", "boolean", default=False,
                      description="Whether to use advanced options for reading (ignored: "
                                  "bandNames and pixelRegion always apply)."),
            Parameter("copyMetadata", "boolean", default=True,
                      description="Whether to copy the metadata of the source product."),
        ),
    )

    def _prefix(self) -> str:
        alias = self.spec.alias
        return alias if self.node_id == alias else f"{alias} (node '{self.node_id}')"

    def initialize(self) -> Product:
        p = self.parameters
        file = p.get("file")
        if file is None or not str(file).strip():
            raise self.error("parameter 'file' is required")
        path = Path(str(file).strip()).expanduser()
        if not path.exists():
            raise ProductReadError(f"{self._prefix()}: file not found: {path}")
        band_names = list(p.get("bandNames") or []) + [
            n for n in (p.get("sourceBands") or []) if n not in (p.get("bandNames") or [])
        ]
        if p.get("maskNames") or p.get("sourceMasks"):
            log.info("%s: maskNames are ignored (the standalone engine has no masks)", self._prefix())
        if p.get("geometryRegion"):
            log.warning("%s: geometryRegion is ignored; add a Subset node with 'geoRegion'", self._prefix())
        try:
            product = open_product(
                path,
                tile_size=self.context.tile_size,
                band_names=band_names or None,
                pixel_region=p.get("pixelRegion"),
                format_name=p.get("formatName") or None,
            )
        except ProductReadError as exc:
            raise ProductReadError(f"{self._prefix()}: {exc}") from None
        if not p.get("copyMetadata", True):
            product.metadata = MetadataElement("metadata")
        self.context.input_files.update(input_paths(path))
        return product
