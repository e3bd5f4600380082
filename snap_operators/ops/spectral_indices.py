"""``SpectralIndices``: Sentinel-2 spectral and Sentinel-1 backscatter indices.

One float32 band per requested index, named as the index (``NDVI``,
``MNDWI``, ``RVI``...), NaN where undefined; the formulas and citations are in
:mod:`snap_operators.science.indices` and ``docs/indices.md``. Only the bands the
requested indices need are read, all in one fused pass per tile.

Any other index of the Awesome Spectral Indices catalogue (``EVI``,
``kNDVI``, ``NBR``...; ``ASI:BI`` for the catalogue's definition of a name
this project also uses) is computed from the catalogue's formula
(:mod:`snap_operators.science.catalogue`): its band symbols map to Sentinel-2
bands by the catalogue's own table (N -> B8, RE1 -> B5, N2 -> B8A...), VV/VH
to the Sentinel-1 bands as linear intensity, and its constants take the
catalogue's defaults unless ``constants`` (``L=0.5,g=2.5``) says otherwise.

Source bands are found by name:

* Sentinel-2: SNAP's names (``B2``, ``B8A``), zero-padded (``B02``) and lower
  case (``b2``, ``b02``);
* Sentinel-1: ``Sigma0_VV``/``Sigma0_VH`` (linear, SNAP's Calibration
  output), ``*_VV_db``/``*_VH_db`` (dB, SNAP's LinearToFromdB output), and
  ``Gamma0_VV``, ``Beta0_VV``, plain ``VV``, whose unit must come from the
  band's unit (SNAP's ``intensity`` / ``intensity_db``) or from ``sarUnit``.

A name may end in a Collocate suffix (``_M``, ``_S``, ``_S0``...). Linear vs
dB: the name, the band unit and ``sarUnit`` must agree where they say
anything; where none says it (Google Earth Engine's plain ``VV``), a sample of
the band's values must say it clearly (intensity is never negative, dB of a
real scene nearly always is), else the operator asks for ``sarUnit``.

Before any index is computed, ``initialize()`` checks the input on a small
sample of chunks (:mod:`snap_operators.science.guards`, ``docs/guards.md``):
reflectance that is digital numbers or still carries the +0.1 offset of
processing baseline 04.00+, and Sentinel-1 covering less than half of the
Sentinel-2 pixels, stop with a one-line error; Sentinel-1 and Sentinel-2
acquired more than ``maxDateGap`` days apart is a warning.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass

import numpy as np

from ..core.errors import OperatorError, ParameterError, in_node
from ..core.operator import HaloTiles, Operator, TileKernel, map_tiles, register
from ..core.product import COLLOCATE_SUFFIX, Band, Product, valid_mask, float_values
from ..core.spec import OperatorSpec, Parameter, SourceSpec, TargetBandSpec
from ..grid.regrid import same_transform
from ..io.raster_bands import negative_share
from ..science import catalogue, guards
from ..science.indices import (
    ALL_S2_ROLES,
    DEFAULT_INDICES,
    INDICES,
    S1_ROLES,
    IndexDef,
    compute_indices,
    lookup,
    request_name,
)

log = logging.getLogger(__name__)

_COLLOCATED = rf"(?P<suffix>{COLLOCATE_SUFFIX})?"
_S2_NAME = re.compile(r"^B0?(?P<num>\d{1,2})(?P<a>A?)" + _COLLOCATED + "$", re.IGNORECASE)
_S1_NAME = re.compile(
    r"^(?:(?P<cal>Sigma0|Gamma0|Beta0)_)?(?P<pol>VV|VH)(?P<db>_db)?" + _COLLOCATED + "$", re.IGNORECASE
)
LINEAR, DB = "linear", "dB"


@dataclass(frozen=True)
class ResolvedBand:
    """A source band chosen for an input role.

    Attributes
    ----------
    role : str
        ``B4``, ``VV``...
    band : Band
    unit : str or None
        ``"linear"`` or ``"dB"`` for Sentinel-1 roles, None for reflectance.
    """

    role: str
    band: Band
    unit: str | None = None

    @property
    def name(self) -> str:
        return self.band.name


@dataclass(frozen=True)
class _Match:
    role: str
    band: Band
    family: str  # calibration + Collocate suffix: bands of one family belong together
    name_unit: str | None


def sar_unit_of(band: Band) -> str | None:
    """``"linear"``, ``"dB"`` or None, from a band's unit as SNAP reads it (``Unit.getUnitType``).

    Raises
    ------
    OperatorError
        For amplitude bands, which the indices do not accept.
    """
    unit = (band.unit or "").strip().lower()
    if "amplitude" in unit:
        raise OperatorError(f"band '{band.name}' holds amplitude ({band.unit}); calibrate to Sigma0 intensity first")
    if "db" in unit:
        return DB
    if "intensity" in unit or unit == "linear":
        return LINEAR
    return None


def _matches(product: Product, roles: tuple[str, ...]) -> dict[str, list[_Match]]:
    found: dict[str, list[_Match]] = {r: [] for r in roles}
    for band in product.bands.values():
        m = _S2_NAME.match(band.name)
        if m:
            role = f"B{int(m['num'])}{m['a'].upper()}"
            if role in found:
                found[role].append(_Match(role, band, (m["suffix"] or "").upper(), None))
            continue
        m = _S1_NAME.match(band.name)
        if m:
            role = m["pol"].upper()
            if role in found:
                cal = (m["cal"] or "").lower()
                name_unit = DB if m["db"] else (LINEAR if cal == "sigma0" else None)
                found[role].append(_Match(role, band, f"{cal}{(m['suffix'] or '').upper()}", name_unit))
    return found


def _accepted(role: str) -> str:
    if role in S1_ROLES:
        return f"Sigma0_{role}[_db], Gamma0_{role}[_db], Beta0_{role}[_db] or {role}[_db]"
    padded = f"B{int(role[1:].rstrip('A')):02d}{'A' if role.endswith('A') else ''}"
    return role if padded == role else f"{role} or {padded}"


def _needs(d: IndexDef) -> str:
    """``NDVI needs B8, B4``; a catalogue index names its symbols: ``EVI needs N=B8, R=B4, B=B2``."""
    if d.symbols:
        return f"index {d.name} needs {', '.join(f'{s}={r}' for s, r in d.symbols)}"
    return f"index {d.name} needs {', '.join(d.bands)}"


def resolve_bands(product: Product, defs: list[IndexDef], sar_unit: str = "auto") -> dict[str, ResolvedBand]:
    """Choose the source band for every input role the indices `defs` need.

    Parameters
    ----------
    product : Product
    defs : list of IndexDef
    sar_unit : {"auto", "linear", "dB"}
        Unit of the Sentinel-1 bands; ``auto`` takes it from band names and
        units, else from a clear sample of the values (:func:`_sar_unit_from_values`),
        else refuses.

    Returns
    -------
    dict of str to ResolvedBand
        Role -> band, for every role needed.

    Raises
    ------
    OperatorError
        One line: bands missing (naming the indices that need them and the
        bands there are), ambiguous, or of unknown or contradictory unit.
    """
    roles = tuple(r for r in ALL_S2_ROLES + S1_ROLES if any(r in d.bands for d in defs))
    found = _matches(product, roles)
    missing = [r for r in roles if not found[r]]
    if missing:
        wanting = [d for d in defs if set(d.bands) & set(missing)]
        needs = " and ".join(_needs(d) for d in wanting)
        looked = ", ".join(f"{r} (as {_accepted(r)})" for r in missing)
        # a GeoTIFF per polarisation (GEE, ASF, BigEarthNet) given alone reads as band_1 without its twin
        split = ("; Sentinel-1 backscatter in one GeoTIFF per polarisation (NAME_VV.tif, NAME_VH.tif) reads as "
                 "one product (Sigma0_VV_db and Sigma0_VH_db, or Sigma0_VV and Sigma0_VH if linear) from the "
                 "folder holding them: give that folder as the Sentinel-1 input") if set(missing) & set(S1_ROLES) else ""
        raise OperatorError(
            f"{needs}; missing: {looked}; bands in product: {product.bands_listed()}{split}"
        )
    out: dict[str, ResolvedBand] = {}
    for group in (ALL_S2_ROLES, S1_ROLES):
        needed = [r for r in roles if r in group]
        if not needed:
            continue
        chosen = _one_family(found, needed)
        for role in needed:
            if role in S1_ROLES:
                out[role] = _choose_sar(chosen[role], sar_unit)
            else:
                if len(chosen[role]) > 1:
                    names = ", ".join(m.band.name for m in chosen[role])
                    raise OperatorError(f"several bands could be {role}: {names}; keep one (Subset or BandSelect)")
                out[role] = ResolvedBand(role, chosen[role][0].band)
    return {r: out[r] for r in roles}


def _one_family(found: dict[str, list[_Match]], needed: list[str]) -> dict[str, list[_Match]]:
    """Matches of one family (same calibration and Collocate suffix) covering every role."""
    families = sorted({m.family for r in needed for m in found[r]})
    complete = [f for f in families if all(any(m.family == f for m in found[r]) for r in needed)]
    if len(complete) == 1:
        return {r: [m for m in found[r] if m.family == complete[0]] for r in needed}
    bands = ", ".join(m.band.name for r in needed for m in found[r])
    if not complete:
        raise OperatorError(
            f"bands {', '.join(needed)} do not come from one calibration or product ({bands}); rename or resample them alike"
        )
    raise OperatorError(f"ambiguous input bands ({bands}): several sets fit {', '.join(needed)}; keep one (Subset or BandSelect)")


def _choose_sar(matches: list[_Match], sar_unit: str) -> ResolvedBand:
    wanted = None if sar_unit == "auto" else sar_unit
    units = []
    for m in matches:
        band_unit = sar_unit_of(m.band)
        if m.name_unit and band_unit and m.name_unit != band_unit:
            raise OperatorError(
                f"band '{m.band.name}' has unit '{m.band.unit}' ({band_unit}) but its name says {m.name_unit}; fix the band unit"
            )
        units.append(m.name_unit or band_unit)
    if wanted is not None:
        fit = [(m, u) for m, u in zip(matches, units) if u in (wanted, None)]
        if not fit:
            said = ", ".join(f"{m.band.name} is {u}" for m, u in zip(matches, units))
            raise OperatorError(f"sarUnit is {wanted} but {said} (from its name or unit); set sarUnit to auto or {units[0]}")
        exact = [(m, u) for m, u in fit if u == wanted]
        fit = exact or fit
    else:
        fit = [(m, u) for m, u in zip(matches, units) if u is not None]
        if not fit and len(matches) == 1:
            unit = _sar_unit_from_values(matches[0].band)
            fit = [(matches[0], unit)] if unit else []
        if not fit:
            names = ", ".join(m.band.name for m in matches)
            raise OperatorError(
                f"cannot tell whether {names} holds linear intensity or dB (neither its name, its unit nor its "
                "values say); set sarUnit to linear or dB (or give the band the unit intensity or intensity_db)"
            )
        fit = [(m, u) for m, u in fit if u == LINEAR] or fit  # both copies present: take the linear one
    if len(fit) > 1:
        names = ", ".join(m.band.name for m, _ in fit)
        raise OperatorError(f"several bands could be {matches[0].role}: {names}; keep one (Subset or BandSelect)")
    m, unit = fit[0]
    return ResolvedBand(m.role, m.band, unit or wanted)


#: Share of a backscatter band's non-zero values below 0 beyond which its values alone say its unit
#: (dB above the upper, intensity under the lower), when neither its name nor its unit does:
#: real scenes are at 99.7-100 % in dB and 0 % in intensity (docs/guards.md).
SAR_UNIT_DECISIVE = (0.1, 0.9)


def _sar_unit_from_values(band: Band) -> str | None:
    """``"dB"`` or ``"linear"`` as a sample of `band`'s values says (Google Earth Engine's ``VV``
    carries neither a dB name nor a unit), None when they do not say it clearly."""
    share, n = negative_share(guards.band_sample(band))
    if n < guards.MIN_SAMPLE_PIXELS or SAR_UNIT_DECISIVE[0] <= share <= SAR_UNIT_DECISIVE[1]:
        return None
    unit = DB if share > SAR_UNIT_DECISIVE[1] else LINEAR
    log.info("SpectralIndices: %s read as %s: %.1f %% of its %d sampled non-zero values below 0 (neither its name nor "
             "its unit says)", band.name, unit, 100 * share, n)
    return unit


@register
class SpectralIndicesOp(Operator):
    """Compute spectral and backscatter indices as new bands."""

    spec = OperatorSpec(
        alias="SpectralIndices",
        category="Optical/Thematic Land Processing",
        description="Sentinel-2 spectral indices (NDVI, MNDWI, NDBI, BSI...) and Sentinel-1 backscatter "
        "indices (RVI, VH/VV ratio, dB/linear), and any Sentinel-1/2 index of the Awesome Spectral Indices "
        "catalogue (EVI, kNDVI, NBR...), one float32 band per index.",
        sources=(SourceSpec("sourceProduct", "Single-size product with the bands the indices need."),),
        parameters=(
            Parameter("indices", "String[]", default=DEFAULT_INDICES, label="Indices",
                      description="Indices to compute, comma-separated, any case: this project's ("
                      + ", ".join(INDICES) + ") or any Sentinel-1/2 index of the Awesome Spectral Indices "
                      "catalogue by its short name (EVI, kNDVI, NBR...; ASI:name for the catalogue's definition "
                      "of a name listed before). Formulas: docs/indices.md."),
            Parameter("constants", "String[]", label="Catalogue constants",
                      description="Constants of the catalogue's indices as name=value, comma-separated (e.g. "
                      "L=0.5,g=2.5; names as the catalogue spells them); the others keep the catalogue's "
                      "defaults. sigma=mean: the RBF length-scale is the mean of the kernel's two bands. "
                      "This project's SAVI reads saviL instead."),
            Parameter("kernel", "String", default="RBF", value_set=catalogue.KERNELS, label="Kernel",
                      description="Kernel k(a, b) of the catalogue's kernel indices (kNDVI, kEVI...): RBF "
                      "(constant sigma), linear or poly (constants c, p)."),
            Parameter("saviL", "double", default=0.5, interval="[0,1]", label="SAVI L",
                      description="Soil brightness correction factor L of SAVI."),
            Parameter("sarUnit", "String", default="auto", value_set=("auto", LINEAR, DB), label="SAR unit",
                      description="Unit of the Sentinel-1 bands: auto (from band names and units; where neither "
                      "says, from the values when they say it clearly: intensity is never negative, dB nearly always "
                      "is), linear (intensity) or dB."),
            Parameter("copySourceBands", "boolean", default=False, label="Copy source bands",
                      description="Also copy the source bands into the target product."),
            Parameter("checkInputs", "boolean", default=True, label="Check inputs",
                      description="Check a sample of the input first: reflectance given as digital numbers or "
                      "still carrying the +0.1 offset of baseline 04.00+, Sentinel-1 covering under half of "
                      "the Sentinel-2 pixels (errors), far-apart S1/S2 dates (warning); docs/guards.md."),
            Parameter("maxDateGap", "double", default=guards.MAX_DATE_GAP_DAYS, interval="[0,*)", unit="days",
                      label="Max. S1/S2 date gap",
                      description="Warn when the Sentinel-1 and Sentinel-2 acquisitions are more than this many "
                      "days apart."),
        ),
        target_bands=(TargetBandSpec("{index}", "float32", None, "One band per requested index, named as the index."),),
    )

    def initialize(self) -> Product:
        source = self.source_product()
        p = self.parameters
        try:
            constants = catalogue.parse_constants(p["constants"])
            defs = lookup(list(p["indices"] or DEFAULT_INDICES), constants=constants, kernel=p["kernel"])
        except ParameterError as exc:
            raise in_node(exc, self.node_id, self.spec.alias) from None
        savi_l = float(p["saviL"])
        if not (math.isfinite(savi_l) and 0.0 <= savi_l <= 1.0):
            raise ParameterError(str(self.error(f"parameter 'saviL': {savi_l} is outside [0,1]")))
        try:
            resolved = resolve_bands(source, defs, p["sarUnit"])
        except OperatorError as exc:
            raise in_node(exc, self.node_id, self.spec.alias) from None
        self._check_grid(resolved)
        max_gap = float(p["maxDateGap"])
        if not (math.isfinite(max_gap) and max_gap >= 0):
            raise ParameterError(str(self.error(f"parameter 'maxDateGap': {max_gap} is not a number of days >= 0")))
        if p["checkInputs"]:
            self._check_inputs(source, resolved, max_gap)

        names = tuple(d.name for d in defs)
        halo = max(d.halo for d in defs)
        func = functools.partial(
            compute_indices,
            names=tuple(request_name(d) for d in defs),  # ASI:BI stays the catalogue's BI
            savi_l=savi_l,
            sar_db={r: rb.unit == DB for r, rb in resolved.items() if r in S1_ROLES},
            no_data={r: _no_data(rb.band) for r, rb in resolved.items()},
            halo=halo,
            constants=constants,
            kernel=p["kernel"],
        )
        ref = next(iter(resolved.values())).band
        outputs = {n: np.dtype(np.float32) for n in names}
        # A neighbourhood index (PANTEX) reads its tiles with context: HaloTiles does for any
        # rectangle what map_tiles(..., halo) does for the chunks, so both give the same bits.
        windowed = HaloTiles(func, halo, ref.shape) if halo else None
        self._kernel = TileKernel(func=windowed or func, inputs={r: rb.name for r, rb in resolved.items()},
                                  outputs=outputs, context=windowed.source_window if windowed else None)
        arrays = map_tiles(func, {r: rb.band.data for r, rb in resolved.items()}, outputs, halo=halo)
        index_bands = [
            Band(
                name=d.name,
                data=arrays[d.name],
                transform=ref.transform,
                no_data=float("nan"),
                unit=d.unit,
                description=_description(d, resolved),
            )
            for d in defs
        ]
        bands = list(source.bands.values()) if p["copySourceBands"] else []
        clash = [b.name for b in index_bands if b.name in source.bands] if bands else []
        if clash:
            raise self.error(f"source already has band(s) {', '.join(clash)}; set copySourceBands to false")
        target = source.copy(name=f"{source.name}_indices", bands=bands + index_bands)
        listed = [d.bound for d in defs if d.bound is not None]
        used = {k: v for b in listed for k, v in b.constants}
        extra = {"constants": ",".join(f"{k}={catalogue.format_constant(v)}" for k, v in used.items())} if used else {}
        if any(b.kernel for b in listed):
            extra["kernel"] = p["kernel"]
        target.metadata.add_element(
            "SpectralIndices",
            indices=",".join(names),
            saviL=savi_l,
            sarUnit=p["sarUnit"],
            inputs=",".join(f"{r}={rb.name}" + (f" ({rb.unit})" if rb.unit else "") for r, rb in resolved.items()),
            **extra,
        )
        return target

    def tile_kernel(self) -> TileKernel:
        """The fused index function over tiles: the resolved source bands in, one float32 band
        per index out (a neighbourhood index reads its tiles with a halo)."""
        return self._kernel

    # --- guards against silent wrong results (snap_operators.science.guards) ---------------------------
    def _check_inputs(self, source: Product, resolved: dict[str, ResolvedBand], max_gap: float) -> None:
        """Run the input guards on a few sampled chunks: raise errors, log warnings."""
        s2 = {r: rb.band for r, rb in resolved.items() if r in ALL_S2_ROLES}
        s1 = {r: rb.band for r, rb in resolved.items() if r in S1_ROLES}
        grid = list(s2.values())
        if s1 and not s2:
            # S1 indices on a product that also has S2 bands (after Collocate): their grid is the S2 grid.
            grid = _s2_band_on_grid(source, next(iter(s1.values())))
        if s1 and grid:
            s2_names, s1_names = [b.name for b in grid], [b.name for b in s1.values()]
            t2, t1 = guards.band_times(source.start_time, source.metadata, s2_names, s1_names)
            self._report(guards.check_date_gap(t2, t1, max_gap))
        bands = list(s2.values()) if s2 else grid
        pixels = guards.guard_sample([b.data for b in bands] + [b.data for b in s1.values()])
        k = len(bands)
        if s1:
            s1_values = {b.name: float_values(a, b.no_data) for a, b in zip(pixels[k:], s1.values())}
            self._report(guards.check_backscatter_unit(s1_values, {b.name: resolved[r].unit for r, b in s1.items()}))
        if not grid:
            return  # S1 alone: no S2 grid to compare with, no reflectance
        s2_valid = np.logical_and.reduce([valid_mask(a, b.no_data) for a, b in zip(pixels[:k], bands)])
        if s2:
            values = {r: np.where(s2_valid, pixels[i].astype(np.float64), np.nan) for i, r in enumerate(s2)}
            stats = guards.reflectance_stats(values)
            self._report(guards.check_digital_numbers(stats))
            self._report(guards.check_reflectance_offset(stats))
        if s1:
            s1_valid = np.logical_and.reduce([valid_mask(a, b.no_data) for a, b in zip(pixels[k:], s1.values())])
            names = ", ".join(b.name for b in s1.values())
            self._report(guards.check_s1_coverage(s2_valid, s1_valid, f"Sentinel-1 bands {names}"))

    def _report(self, finding: guards.Finding | None) -> None:
        if finding is None:
            return
        message = self.error(finding.message)
        if finding.level == "error":
            raise message
        (log.warning if finding.level == "warning" else log.info)("%s", message)

    def _check_grid(self, resolved: dict[str, ResolvedBand]) -> None:
        bands = [rb.band for rb in resolved.values()]
        ref = bands[0]
        if all(b.shape == ref.shape and same_transform(b.transform, ref.transform) for b in bands[1:]):
            return
        sizes = ", ".join(f"{b.name} {b.width}x{b.height}" for b in bands)
        raise self.error(f"input bands are not on one grid ({sizes}); add a Resample node before SpectralIndices")


def _s2_band_on_grid(product: Product, like: Band) -> list[Band]:
    """One Sentinel-2 band of `product` on `like`'s grid (the lowest band number), as a list (empty: none)."""
    found = []
    for band in product.bands.values():
        m = _S2_NAME.match(band.name)
        if m and band.shape == like.shape and same_transform(band.transform, like.transform):
            found.append((int(m["num"]), band))
    return [min(found, key=lambda t: t[0])[1]] if found else []


def _no_data(band: Band) -> float | None:
    nd = band.no_data
    if nd is None or (isinstance(nd, float) and math.isnan(nd)):
        return None
    return float(nd)


def _description(d: IndexDef, resolved: dict[str, ResolvedBand]) -> str:
    if d.bound is not None:
        b = d.bound
        used = ", ".join(f"{s}={resolved[r].name}" + (" (linear)" if r in S1_ROLES else "") for s, r in d.symbols)
        text = f"{b.index.long_name} ({d.name}, Awesome Spectral Indices): {b.index.formula} with {used}"
        if b.constants:
            text += f"; {b.values_text()}"
        if b.kernel:
            text += f"; {b.kernel} kernel"
        return f"{text}; {b.index.reference}; NaN where undefined"
    renamed = [f"{r}={resolved[r].name}" for r in d.bands if resolved[r].name != r]
    where = f" with {', '.join(renamed)}" if renamed else ""
    return f"{d.name} = {d.formula}{where}; NaN where undefined"
