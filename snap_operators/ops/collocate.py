"""``Collocate``: resample secondary products onto a reference product's grid (SNAP's CollocateOp).

Sources: ``reference``/``master`` and ``secondary``/``slave`` (SNAP 8+ and
older names), or any number of ``sourceProduct``, ``sourceProduct.1``, ...
among which ``referenceProductName`` (or ``masterProductName``) names the
reference; without a name the first single-size product is the reference, as
in SNAP. Every secondary band is reprojected lazily onto the reference grid
(any CRS) with :func:`snap_operators.grid.regrid.regrid`; pixels outside a
secondary's footprint are NaN (no-data for integer bands). As in SNAP, each
secondary adds an int8 band ``collocationFlags`` (``collocationFlags_S0``, ...
when there are several) that is 1 where the secondary has data.

Band names follow SNAP: reference bands become ``referenceComponentPattern``
with ``${ORIGINAL_NAME}`` replaced (default ``${ORIGINAL_NAME}_M``), secondary
bands ``secondaryComponentPattern`` (default ``${ORIGINAL_NAME}_S${SLAVE_NUMBER_ID}``)
where the number id is the secondary's 0-based index when there are several
secondaries and empty when there is one (so ``B2_S``, not ``B2_S0``).
``${SECONDARY_NUMBER_ID}`` is accepted as a synonym of ``${SLAVE_NUMBER_ID}``.

Times and metadata follow SNAP's CollocateOp (snap-engine, ``snap-collocation``):
the target's start/stop times and metadata are the reference's; with
``copySecondaryMetadata`` each secondary's metadata is copied under
``SecondaryMetadata/<secondary product name>`` (where a Sentinel-1 product
processed in SNAP carries ``Abstracted_Metadata/first_line_time``). SNAP keeps
no secondary time otherwise; as products here hold their times outside the
metadata tree, this Collocate also always adds an element ``Collocate`` with
one child per secondary (named as the product) holding ``productName``,
``productType``, ``startTime``/``stopTime`` (when known) and ``bands`` (its
band names in the target), so that ``SpectralIndices`` can compare the
Sentinel-1 and Sentinel-2 dates (:func:`snap_operators.science.guards.band_times`).
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from ..core.errors import ParameterError
from ..core.operator import Operator, register
from ..core.product import Band, MetadataElement, Product, chunks_for
from ..core.spec import OperatorSpec, Parameter, SourceSpec
from ..grid.regrid import output_no_data, regrid

ORIGINAL_NAME = "${ORIGINAL_NAME}"
NUMBER_IDS = ("${SLAVE_NUMBER_ID}", "${SECONDARY_NUMBER_ID}")
REFERENCE_NUMBER_IDS = ("${MASTER_NUMBER_ID}", "${REFERENCE_NUMBER_ID}")
DEFAULT_REFERENCE_PATTERN = "${ORIGINAL_NAME}_M"
DEFAULT_SECONDARY_PATTERN = "${ORIGINAL_NAME}_S${SLAVE_NUMBER_ID}"

#: SNAP resampling types -> regrid (upsampling, downsampling). Collocation
#: samples the secondary at each reference pixel centre in both directions.
RESAMPLING = {
    "NEAREST_NEIGHBOUR": ("nearest", "nearest"),
    "BILINEAR_INTERPOLATION": ("bilinear", "bilinear"),
    "CUBIC_CONVOLUTION": ("cubic", "cubic"),
}
UNSUPPORTED_RESAMPLING = ("BISINC_CONVOLUTION", "BICUBIC_CONVOLUTION")

_REFERENCE_SOURCES = ("reference", "master")
_SECONDARY_SOURCES = ("secondary", "slave")


@register
class CollocateOp(Operator):
    """Collocate products: secondary bands resampled onto the reference grid."""

    spec = OperatorSpec(
        alias="Collocate",
        category="Raster/Geometric",
        description="Collocates two products based on their geo-codings.",
        sources=(
            SourceSpec("reference", "The source product which serves as reference.", optional=True),
            SourceSpec("secondary", "The source product which serves as secondary.", optional=True),
            SourceSpec("master", "Older name of reference.", optional=True),
            SourceSpec("slave", "Older name of secondary.", optional=True),
            SourceSpec("sourceProducts", "The source products (reference chosen by referenceProductName).",
                       optional=True, multiple=True),
        ),
        parameters=(
            Parameter("sourceProductPaths", "String[]",
                      description="Paths of further source products (not supported; use Read nodes)."),
            Parameter("referenceProductName", "String", label="Reference product name",
                      description="Name of the reference product among the sources."),
            Parameter("masterProductName", "String", description="Older name of referenceProductName."),
            Parameter("targetProductName", "String", default="_collocated",
                      description="The name of the target product."),
            Parameter("targetProductType", "String", default="COLLOCATED",
                      description="The product type string for the target product (informal)."),
            Parameter("copySecondaryMetadata", "boolean", default=False,
                      description="Copy the secondary products' metadata under SecondaryMetadata."),
            Parameter("renameReferenceComponents", "boolean", default=True,
                      description="Rename reference bands with referenceComponentPattern."),
            Parameter("renameMasterComponents", "boolean", description="Older name of renameReferenceComponents."),
            Parameter("renameSecondaryComponents", "boolean", default=True,
                      description="Rename secondary bands with secondaryComponentPattern."),
            Parameter("renameSlaveComponents", "boolean", description="Older name of renameSecondaryComponents."),
            Parameter("referenceComponentPattern", "String", default=DEFAULT_REFERENCE_PATTERN,
                      description="Pattern for renamed reference bands."),
            Parameter("masterComponentPattern", "String", description="Older name of referenceComponentPattern."),
            Parameter("secondaryComponentPattern", "String", default=DEFAULT_SECONDARY_PATTERN,
                      description="Pattern for renamed secondary bands."),
            Parameter("slaveComponentPattern", "String", description="Older name of secondaryComponentPattern."),
            Parameter("resamplingType", "String", default="NEAREST_NEIGHBOUR",
                      value_set=tuple(RESAMPLING) + UNSUPPORTED_RESAMPLING,
                      description="Method resampling the secondary grid onto the reference grid."),
        ),
    )

    def initialize(self) -> Product:
        p = self._resolved_parameters()
        if p["sourceProductPaths"]:
            raise self._param_error("sourceProductPaths is not supported by the standalone engine; add Read nodes")
        if p["resamplingType"] in UNSUPPORTED_RESAMPLING:
            raise self._param_error(
                f"resamplingType {p['resamplingType']} is not supported; use {', '.join(RESAMPLING)}"
            )
        reference, secondaries = self._split_sources(p["referenceProductName"])
        if reference.is_multi_size:
            raise self.error(
                f"reference product '{reference.name}' is multi-size; add a Resample node before Collocate"
            )
        for product in (reference, *secondaries):
            if product.crs is None or any(b.transform is None for b in product.bands.values()):
                raise self.error(f"product '{product.name}' has no map geocoding (CRS and geotransform)")
        for key in ("referenceComponentPattern", "secondaryComponentPattern"):
            rename_key = "renameReferenceComponents" if key.startswith("reference") else "renameSecondaryComponents"
            if p[rename_key] and not p[key]:
                raise self._param_error(f"parameter '{key}' must be a non-empty pattern when {rename_key} is true")

        shape, transform = reference.scene_shape, reference.transform
        up, down = RESAMPLING[p["resamplingType"]]
        tile = self.context.tile_size
        target = Product(
            name=p["targetProductName"] or f"{reference.name}_collocated",
            product_type=p["targetProductType"] or reference.product_type,
            crs=reference.crs,
            start_time=reference.start_time,
            stop_time=reference.stop_time,
            metadata=reference.metadata.copy(),
            description=reference.description,
        )
        for band in reference.bands.values():
            name = band.name
            if p["renameReferenceComponents"]:
                name = _expand(p["referenceComponentPattern"], band.name, REFERENCE_NUMBER_IDS, "")
            self._add(target, band if name == band.name else band.replace(name=name))

        flag_names = self._flag_names(target, secondaries, p["secondaryComponentPattern"])
        record = MetadataElement("Collocate", {"referenceProduct": reference.name, "resamplingType": p["resamplingType"]})
        for i, product in enumerate(secondaries):
            number = str(i) if len(secondaries) > 1 else ""
            before = set(target.bands)
            for band in product.bands.values():
                name = band.name
                if p["renameSecondaryComponents"] or name in target.bands:
                    if not p["secondaryComponentPattern"]:
                        raise self._param_error(
                            f"target already has a band '{name}'; set secondaryComponentPattern"
                        )
                    name = _expand(p["secondaryComponentPattern"], band.name, NUMBER_IDS, number)
                linear = band.classes is None
                data = regrid(
                    band.data, band.transform, shape, transform,
                    src_crs=product.crs, dst_crs=reference.crs,
                    upsampling=up if linear else "nearest", downsampling=down if linear else "nearest",
                    no_data=band.no_data, tile_size=tile,
                )
                no_data = band.no_data if band.no_data is not None else output_no_data(band.dtype, None)
                self._add(target, band.replace(name=name, data=data, transform=transform, no_data=no_data))
            self._add(target, self._presence_band(flag_names[i], product, shape, transform, reference.crs, tile))
            record.elements.append(_secondary_record(product, [n for n in target.bands if n not in before]))
        target.metadata.elements.append(record)

        if p["copySecondaryMetadata"]:
            element = target.metadata.add_element("SecondaryMetadata")
            for product in secondaries:
                copy = product.metadata.copy()
                copy.name = product.name
                element.elements.append(copy)
        return target

    # --- sources and parameters ---------------------------------------------------
    def _param_error(self, message: str) -> ParameterError:
        return ParameterError(str(self.error(message)))

    def _resolved_parameters(self) -> dict:
        """Parameters with SNAP 7 names folded into the SNAP 8+ ones."""
        p = dict(self.parameters)
        synonyms = {
            "referenceProductName": "masterProductName",
            "renameReferenceComponents": "renameMasterComponents",
            "renameSecondaryComponents": "renameSlaveComponents",
            "referenceComponentPattern": "masterComponentPattern",
            "secondaryComponentPattern": "slaveComponentPattern",
        }
        defaults = {q.name: q.default for q in self.spec.parameters}
        for new, old in synonyms.items():
            if p.get(old) is not None and p.get(new) == defaults[new]:
                p[new] = p[old]
        return p

    def _split_sources(self, reference_name: str | None) -> tuple[Product, list[Product]]:
        named_ref = [self.sources[k] for k in _REFERENCE_SOURCES if k in self.sources]
        named_sec = [self.sources[k] for k in _SECONDARY_SOURCES if k in self.sources]
        others = [v for k, v in self.sources.items() if k not in _REFERENCE_SOURCES + _SECONDARY_SOURCES]
        if len(named_ref) > 1:
            raise self.error("give the reference product once (reference or master), not both")
        products = named_ref + others + named_sec
        if len(products) < 2:
            raise self.error(f"needs at least two source products, got {len(products)}")
        if named_ref:
            reference = named_ref[0]
            if reference_name and reference_name != reference.name:
                raise self._param_error(
                    f"referenceProductName '{reference_name}' differs from the reference source '{reference.name}'"
                )
        elif reference_name:
            matches = [q for q in products if q.name == reference_name]
            if not matches:
                raise self._param_error(
                    f"referenceProductName '{reference_name}' is not among the sources: "
                    f"{', '.join(q.name for q in products)}"
                )
            reference = matches[0]
        else:
            single = [q for q in products if not q.is_multi_size]
            if not single:
                raise self.error("no single-size source to serve as reference; add a Resample node")
            reference = single[0]
        secondaries = [q for q in products if q is not reference]
        if not secondaries:
            raise self.error("needs at least one secondary product besides the reference")
        return reference, secondaries

    def _flag_names(self, target: Product, secondaries: list[Product], pattern: str) -> list[str]:
        names = []
        for i in range(len(secondaries)):
            if len(secondaries) == 1:
                base, count = "collocationFlags", 0
                name = base
                while name in target.bands:
                    count += 1
                    name = f"{base}{count}"
            else:
                pattern = pattern or DEFAULT_SECONDARY_PATTERN
                name = _expand(pattern, "collocationFlags", NUMBER_IDS, str(i))
                count = 0
                while name in target.bands or name in names:
                    count += 1
                    name = _expand(pattern, "collocationFlags", NUMBER_IDS, f"{i}_{count}")
            names.append(name)
        return names

    def _presence_band(self, name, product: Product, shape, transform, crs, tile) -> Band:
        """int8 band: 1 where the secondary scene covers the reference pixel centre."""
        ref = product.reference_band()
        ones = da.ones(ref.shape, dtype=np.int8, chunks=chunks_for(ref.shape, tile))
        data = regrid(
            ones, ref.transform, shape, transform, src_crs=product.crs, dst_crs=crs,
            upsampling="nearest", downsampling="nearest", no_data=0, tile_size=tile,
        )
        return Band(name, data, transform, description=f"collocationFlags_{product.name}")

    def _add(self, target: Product, band: Band) -> None:
        if band.name in target.bands:
            raise self.error(f"band name '{band.name}' occurs twice in the target; change the component patterns")
        target.bands[band.name] = band


def _secondary_record(product: Product, bands: list[str]) -> MetadataElement:
    """What the target keeps of a secondary: name, type, times (when known) and its band names."""
    attributes = {"productName": product.name, "productType": product.product_type or ""}
    if product.start_time is not None:
        attributes["startTime"] = product.start_time
    if product.stop_time is not None:
        attributes["stopTime"] = product.stop_time
    attributes["bands"] = ",".join(bands)
    return MetadataElement(product.name or "secondary", attributes)


def _expand(pattern: str, original: str, number_keys: tuple[str, ...], number: str) -> str:
    name = pattern.replace(ORIGINAL_NAME, original)
    for key in number_keys:
        name = name.replace(key, number)
    return name
