"""``LinearToFromdB``: radar backscatter bands to dB, or back to linear units (SNAP's ``LinearTodBOp``).

As SNAP's operator (snap-engine, ``snap-raster``): each band of ``sourceBands``
(default: every band) whose unit ends in ``db`` is converted to linear units,
``10 ** (x / 10)``, its name losing a ``_db`` suffix and its unit the ``_db``
(``Sigma0_VV_db``, ``intensity_db`` -> ``Sigma0_VV``, ``intensity``); any other
band is converted to dB, ``10 log10(x)``, as ``<name>_db`` with unit
``<unit>_db`` (``Sigma0_VV``, ``intensity`` -> ``Sigma0_VV_db``,
``intensity_db``). A band without a unit is taken as amplitude, as SNAP does
(``amplitude_db``), which ``SpectralIndices`` refuses: give such a band its
unit (``intensity``) first. The target holds the converted bands only, float32,
with the source's name plus ``_dB``, grid, times and metadata.

Where it differs from SNAP, on purpose:

* a linear value that is not positive becomes no-data (NaN), as in
  ``SpectralIndices``; SNAP writes ``-1e-30`` there, which reads as 0 dB;
* units and the ``_db`` suffix of names are compared without case (``dB`` is
  dB; SNAP would take it for a linear unit and write the logarithm of dB
  values), and a unit ``dB`` without a linear part converts to ``intensity``;
* a band of ``sourceBands`` that the product lacks is an error (SNAP leaves it
  out without a word); complex (real/imaginary) pairs, which SNAP turns into
  intensity in dB, are refused (the engine reads no complex products);
* a band whose values contradict its unit (read as linear but mostly below 0,
  so already dB; read as dB but never below 0, so intensity) is refused: the
  conversion would give NaN, or nonsense, everywhere;
* a band with a class legend (a class map's ``class_id``, ``CloudMask``'s
  ``cloud_mask`` in a collocated product) is not backscatter: named in
  ``sourceBands`` it is refused, and every band (the default) leaves it out.

The per-tile arithmetic is :func:`snap_operators.science.backscatter.convert_tile`.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from ..core.operator import Operator, map_tiles, register
from ..core.product import Band, Product
from ..core.spec import OperatorSpec, Parameter, SourceSpec
from ..science import backscatter, guards
from ..science.backscatter import DB_SUFFIX

log = logging.getLogger(__name__)

#: Units SNAP's operator cannot convert (``Unit.REAL``, ``Unit.IMAGINARY``).
COMPLEX_UNITS = ("real", "imaginary")


@register
class LinearToFromdBOp(Operator):
    """Convert backscatter bands to dB, or from dB back to linear units."""

    spec = OperatorSpec(
        alias="LinearToFromdB",
        category="Raster/Data Conversion",
        description="Converts bands to/from dB",
        sources=(SourceSpec("sourceProduct", "The product holding the bands to convert."),),
        parameters=(
            Parameter("sourceBands", "String[]", label="Source Bands",
                      description="The list of source bands (default: every band)."),
        ),
    )

    def initialize(self) -> Product:
        source = self.source_product()
        named = self.parameters["sourceBands"]
        wanted = named or list(source.bands)
        self.require_bands(source, wanted)
        bands, to_db, classes = [], {}, []
        for name in wanted:
            band = source.band(name)
            if band.classes:  # a class map's or a cloud mask's band: its logarithm means nothing
                if named:
                    raise self.error(f"band '{name}' holds classes ({len(band.classes)} in its legend), not "
                                     "backscatter: there is nothing to convert")
                classes.append(name)
                continue
            unit = band.unit or "amplitude"  # SNAP's assumption for a band without a unit
            if unit.strip().lower() in COMPLEX_UNITS:
                raise self.error(f"band '{name}' is the {unit} part of complex data; the engine reads no complex "
                                 "products (SNAP's LinearToFromdB makes intensity in dB of a real/imaginary pair)")
            is_db = unit.strip().lower().endswith("db")
            if is_db:
                target = name[:-len(DB_SUFFIX)] if name.lower().endswith(DB_SUFFIX) else name
                cut = unit.lower().rfind(DB_SUFFIX)
                target_unit = unit[:cut] if cut > 0 else "intensity"
            else:
                target, target_unit = name + DB_SUFFIX, unit + DB_SUFFIX
            if target in to_db:  # SNAP keeps the first band of a name
                continue
            self._check_values(band, is_db)  # a sample read: only of the bands converted
            to_db[target] = not is_db
            bands.append((target, band, target_unit))
        if classes:
            log.info("%s: class band(s) %s left out (not backscatter)", self.spec.alias, ", ".join(classes))
        if not bands:
            raise self.error(f"product '{source.name}' has no band to convert"
                             + (f" (its class band(s) {', '.join(classes)} are not backscatter)" if classes else ""))
        inputs = {target: band.data for target, band, _ in bands}
        func = functools.partial(backscatter.convert_tile, to_db=to_db,
                                 no_data={target: band.no_data for target, band, _ in bands})
        arrays = map_tiles(func, inputs, {target: np.float32 for target in inputs})
        out = [Band(target, arrays[target], band.transform, no_data=np.nan, unit=unit, description=band.description)
               for target, band, unit in bands]
        product = source.copy(name=f"{source.name}_dB", bands=out)
        product.metadata.add_element(self.spec.alias, sourceBands=",".join(b.name for _, b, _ in bands))
        return product

    def _check_values(self, band: Band, is_db: bool) -> None:
        """Refuse a band whose sampled values contradict its unit (docs/guards.md, "Backscatter unit")."""
        seen = guards.unit_contradiction(guards.band_sample(band), "dB" if is_db else "linear")
        if seen is None:
            return
        if is_db:
            raise self.error(f"band '{band.name}' is taken as dB (unit {band.unit}) but holds linear values ({seen}; "
                             "dB backscatter is below 0 almost everywhere): give it the unit intensity (e.g. "
                             "BandMaths with unit) to convert it to dB")
        raise self.error(f"band '{band.name}' is taken as linear (unit {band.unit or 'none: amplitude'}) but holds dB "
                         f"({seen}; linear backscatter is never negative): its logarithm would be NaN; it is dB "
                         "already, or give it the unit intensity_db (e.g. BandMaths with unit) to convert it to linear")
