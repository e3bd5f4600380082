"""Guards against silent wrong results: checks of the input before the indices are computed.

Pure functions over a small sample of the input pixels (numpy) and over
product times and metadata; each returns a :class:`Finding` (or None when
all is well) that the caller raises as a one-line error or logs as a
warning. :class:`~snap_operators.ops.spectral_indices.SpectralIndicesOp`
runs them in ``initialize()``, where bands are first interpreted as
reflectance (Sentinel-2 ``B2`` ... ``B12``) and backscatter (``VV``/``VH``):

=================================  =========  ===========================================================
guard                              level      statistic (thresholds below; evidence: ``docs/guards.md``)
=================================  =========  ===========================================================
digital numbers, not reflectance   error      median of the brightest band > :data:`DN_MEDIAN`
+0.1 offset of baseline >= 04.00   error      every band's 1st percentile >= :data:`OFFSET_FLOOR` and the
                                              darkest targets (water, dense vegetation) are 0.1 too bright
                                   warning    floor near 0.1 (< :data:`OFFSET_NEAR`) with no dark target
                                              to tell a bright scene from the offset
Sentinel-1 covers too little       error      share of valid S2 pixels with valid S1 < :data:`COVERAGE_MIN`
                                   warning    ... < :data:`COVERAGE_WARN`
S1 and S2 dates far apart          warning    more than ``maxDateGap`` days (default :data:`MAX_DATE_GAP_DAYS`)
backscatter unit contradicted      error      read as dB with under :data:`DB_NEGATIVE_SHARE` of its non-zero
by the values                                 values below 0 (it is intensity), read as linear with more (dB)
=================================  =========  ===========================================================

Example
-------
>>> import numpy as np
>>> from snap_operators.science.guards import check_digital_numbers
>>> dn = {"B4": np.array([812.0, 1400.0, 2210.0]), "B8": np.array([2650.0, 3010.0, 1990.0])}
>>> check_digital_numbers(dn).level
'error'
>>> check_digital_numbers({k: v / 10000 for k, v in dn.items()}) is None
True
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..core.product import MetadataElement, float_values
from ..core.sample import sample_blocks
from ..io.raster_bands import DB_NEGATIVE_SHARE, backscatter_values, negative_share

#: Brightest band's median above which values are digital numbers, not
#: reflectance. Reflectance medians stay below 0.5 on every real scene here
#: (snow and clouds reach ~1); Sentinel-2 DN medians are in the hundreds.
DN_MEDIAN = 2.0
#: Low percentile (%) taken as a band's robust minimum.
LOW_PERCENTILE = 1.0
#: Every band's robust minimum at or above this: nothing in the scene is
#: darker than the +0.1 offset allows (real scenes without offset: <= 0.06,
#: except a fully cloudy one at 0.16).
OFFSET_FLOOR = 0.08
#: A floor below this, without a dark target to decide, is "near 0.1": warning.
OFFSET_NEAR = 0.15
#: Median NIR/SWIR of water-like pixels at or above this: water 0.1 too bright
#: (real scenes: <= 0.042 without the offset, >= 0.108 with it).
WATER_DARK_OFFSET = 0.075
#: Median red of dense-vegetation pixels at or above this: vegetation 0.1 too
#: bright (real scenes: <= 0.093 without the offset, >= 0.128 with it).
VEGETATION_RED_OFFSET = 0.12
#: A dark target decides only with at least this many pixels ...
MIN_TARGET_PIXELS = 10
#: ... and this share of the sample.
MIN_TARGET_SHARE = 0.001
#: Fewer valid pixels than this in the sample: no statistics, no finding.
MIN_SAMPLE_PIXELS = 100
#: Sentinel-1 covering less than this share of the valid Sentinel-2 pixels: error.
COVERAGE_MIN = 0.5
#: ... less than this share: warning.
COVERAGE_WARN = 0.9
#: Default largest gap (days) between the Sentinel-1 and Sentinel-2
#: acquisitions without a warning: one Sentinel-1 repeat cycle.
MAX_DATE_GAP_DAYS = 12.0
#: Chunks read for the guards' statistics, and the pixels kept from them
#: (chunks are decimated to about this many pixels in all).
SAMPLE_BLOCKS = 4
SAMPLE_PIXELS = 1 << 18

_VISIBLE = ("B3", "B2", "B4")  # for "greener than NIR": green first
_NIR = ("B8", "B8A")
_DARK_FOR_WATER = ("B8", "B8A", "B11", "B12")

_SCALE_FIX = (
    "set the GeoTIFF's scale (gdal_edit.py -scale 0.0001 FILE; add -offset -0.1 for products of processing "
    "baseline 04.00 or later) or divide by 10000 in a BandMaths node before SpectralIndices "
    "(Read scales SAFE products and Sentinel-2 band folders itself)"
)


@dataclass(frozen=True)
class Finding:
    """What a guard found.

    Attributes
    ----------
    level : {"error", "warning", "info"}
        ``error``: the result would be wrong (stop); ``warning``: it may be;
        ``info``: the guard could not decide (logged at info level).
    message : str
        One line, without the operator prefix.
    """

    level: str
    message: str


@dataclass(frozen=True)
class ReflectanceStats:
    """Statistics of Sentinel-2 reflectance samples (valid pixels only).

    Attributes
    ----------
    pixels : int
        Pixels valid in every band.
    low : dict of str to float
        Band -> :data:`LOW_PERCENTILE` percentile (robust minimum).
    median : dict of str to float
        Band -> median of its non-zero values (0 is Sentinel-2's no-data DN).
    water_pixels, vegetation_pixels : int
        Water-like pixels (greener than NIR, NIR < 0.25) and dense-vegetation
        pixels (NIR >= 3 x red and >= 0.2); both tests hold with and without
        the +0.1 offset.
    water_dark : float
        Median over water-like pixels of their darkest NIR/SWIR band (NaN
        without enough of them).
    vegetation_red : float
        Median red of dense-vegetation pixels (NaN without enough of them).
    """

    pixels: int
    low: dict[str, float]
    median: dict[str, float]
    water_pixels: int
    water_dark: float
    vegetation_pixels: int
    vegetation_red: float

    @property
    def floor(self) -> float:
        """The darkest band's robust minimum (NaN without pixels)."""
        return min(self.low.values()) if self.low else math.nan

    @property
    def floor_band(self) -> str:
        """The band holding :attr:`floor`."""
        return min(self.low, key=self.low.get) if self.low else ""


def _enough(count: int, pixels: int) -> bool:
    return count >= max(MIN_TARGET_PIXELS, MIN_TARGET_SHARE * pixels)


def reflectance_stats(bands: Mapping[str, np.ndarray]) -> ReflectanceStats:
    """Statistics the reflectance guards read.

    Parameters
    ----------
    bands : dict of str to numpy.ndarray
        Sentinel-2 role (``B2``, ``B8A``...) -> sampled values, all the same
        shape and aligned pixel by pixel; NaN marks invalid pixels.

    Returns
    -------
    ReflectanceStats
    """
    arrays = {r: np.asarray(a, dtype=np.float64).ravel() for r, a in bands.items()}
    if not arrays:
        return ReflectanceStats(0, {}, {}, 0, math.nan, 0, math.nan)
    ok = np.logical_and.reduce([np.isfinite(a) for a in arrays.values()])
    v = {r: a[ok] for r, a in arrays.items()}
    n = int(ok.sum())
    if n == 0:
        return ReflectanceStats(0, {}, {}, 0, math.nan, 0, math.nan)
    low = {r: float(np.percentile(a, LOW_PERCENTILE)) for r, a in v.items()}
    median = {}
    for r, a in v.items():
        nz = a[a != 0]
        median[r] = float(np.median(nz)) if nz.size else 0.0

    water_n, water_dark = 0, math.nan
    vis = next((r for r in _VISIBLE if r in v), None)
    nir = next((r for r in _NIR if r in v), None)
    if vis and nir:
        water = (v[vis] > v[nir]) & (v[nir] < 0.25)
        water_n = int(water.sum())
        if _enough(water_n, n):
            dark = np.min([v[r] for r in _DARK_FOR_WATER if r in v], axis=0)
            water_dark = float(np.median(dark[water]))
    veg_n, veg_red = 0, math.nan
    if "B4" in v and nir:
        veg = (v[nir] >= 3.0 * v["B4"]) & (v[nir] >= 0.2)
        veg_n = int(veg.sum())
        if _enough(veg_n, n):
            veg_red = float(np.median(v["B4"][veg]))
    return ReflectanceStats(n, low, median, water_n, water_dark, veg_n, veg_red)


def _stats(bands) -> ReflectanceStats:
    return bands if isinstance(bands, ReflectanceStats) else reflectance_stats(bands)


def check_digital_numbers(bands: Mapping[str, np.ndarray] | ReflectanceStats) -> Finding | None:
    """Error when Sentinel-2 "reflectance" bands hold digital numbers (DN, e.g. 0..10000).

    Parameters
    ----------
    bands : dict of str to numpy.ndarray, or ReflectanceStats
        Sampled values per Sentinel-2 role, or their statistics.

    Returns
    -------
    Finding or None
        An error when the brightest band's median exceeds :data:`DN_MEDIAN`
        (reflectance is 0..1; Sentinel-2 DN medians are in the hundreds or
        thousands), saying how to scale the input.
    """
    s = _stats(bands)
    if not s.median:
        return None
    band = max(s.median, key=s.median.get)
    value = s.median[band]
    if value <= DN_MEDIAN:
        return None
    names = ", ".join(s.median)
    return Finding(
        "error",
        f"bands {names} hold digital numbers, not reflectance (median of {band} is {value:.6g}; reflectance is "
        f"0..1); scale them to reflectance: {_SCALE_FIX}",
    )


def check_reflectance_offset(bands: Mapping[str, np.ndarray] | ReflectanceStats) -> Finding | None:
    """Find reflectance that still carries the +0.1 offset of processing baseline 04.00 and later.

    Since baseline 04.00 (January 2022) Sentinel-2 L1C and L2A digital
    numbers carry ``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` = -1000:
    reflectance = (DN - 1000) / 10000. Data converted as DN / 10000 (e.g.
    GeoTIFF exports) are 0.1 too bright in every band, so no pixel is darker
    than about 0.1.

    Parameters
    ----------
    bands : dict of str to numpy.ndarray, or ReflectanceStats
        Sampled reflectance per Sentinel-2 role, or their statistics.

    Returns
    -------
    Finding or None
        * error: every band's 1st percentile is at least :data:`OFFSET_FLOOR`
          **and** a dark target shows the offset: water-like pixels whose
          darkest NIR/SWIR band has a median >= :data:`WATER_DARK_OFFSET`,
          or (without water) dense vegetation whose red median is >=
          :data:`VEGETATION_RED_OFFSET`;
        * warning: the floor holds and is below :data:`OFFSET_NEAR`, but no
          dark target decides (a bright scene, or the offset);
        * info: the floor holds at or above :data:`OFFSET_NEAR` with no dark
          target (clouds, desert: cannot tell);
        * None otherwise (some band has pixels darker than the offset allows,
          or a dark target is as dark as it should be).
    """
    s = _stats(bands)
    if s.pixels < MIN_SAMPLE_PIXELS or not s.low:
        return None
    floor, at = s.floor, s.floor_band
    if floor < OFFSET_FLOOR:
        return None
    seen = f"every band's {LOW_PERCENTILE:g} % percentile is at least {floor:.3f} (lowest: {at})"
    what = "reflectance still carries the +0.1 offset of Sentinel-2 processing baseline 04.00 and later"
    fix = ("subtract 0.1 (gdal_edit.py -offset -0.1 FILE, with -scale 0.0001 for DN files, or BandMaths "
           "'B - 0.1'; Read applies a SAFE product's offset itself)")
    override = "if the data really have no offset, set checkInputs=false"
    if not math.isnan(s.water_dark):
        if s.water_dark < WATER_DARK_OFFSET:
            return None
        return Finding("error", f"{what}: {seen} and water is too bright (median NIR/SWIR {s.water_dark:.3f} "
                                f"over {s.water_pixels} water pixels, below 0.05 without offset); {fix}; {override}")
    if not math.isnan(s.vegetation_red) and s.vegetation_red >= VEGETATION_RED_OFFSET:
        return Finding("error", f"{what}: {seen} and dense vegetation is too bright in red (median "
                                f"{s.vegetation_red:.3f} over {s.vegetation_pixels} pixels, below 0.1 without "
                                f"offset); {fix}; {override}")
    if floor < OFFSET_NEAR:
        return Finding("warning", f"{what.replace('still carries', 'may still carry')}: {seen}, and no water or "
                                  f"dense vegetation in the sample tells a bright scene from the offset; if it "
                                  f"does, {fix}")
    return Finding("info", f"cannot check the +0.1 reflectance offset: {seen} (a bright scene: clouds, desert) "
                           "and no water or dense vegetation in the sample")


def check_s1_coverage(s2_valid: np.ndarray, s1_valid: np.ndarray, s1_names: str = "Sentinel-1 bands") -> Finding | None:
    """Error when Sentinel-1 covers less than half of the Sentinel-2 pixels.

    Parameters
    ----------
    s2_valid, s1_valid : numpy.ndarray of bool
        Sampled pixels with valid Sentinel-2 (every band) and valid
        Sentinel-1 (every band), aligned.
    s1_names : str
        How the message names the Sentinel-1 bands.

    Returns
    -------
    Finding or None
        Coverage = share of valid Sentinel-2 pixels that have valid
        Sentinel-1. Error below :data:`COVERAGE_MIN`, warning below
        :data:`COVERAGE_WARN`; None with fewer than
        :data:`MIN_SAMPLE_PIXELS` valid Sentinel-2 pixels.
    """
    s2 = np.asarray(s2_valid, dtype=bool).ravel()
    s1 = np.asarray(s1_valid, dtype=bool).ravel()
    n = int(s2.sum())
    if n < MIN_SAMPLE_PIXELS:
        return None
    coverage = float((s2 & s1).sum()) / n
    pct = f"{100 * coverage:.0f} %"
    if coverage < COVERAGE_MIN:
        return Finding("error", f"{s1_names} cover only {pct} of the valid Sentinel-2 pixels (at least "
                                f"{100 * COVERAGE_MIN:.0f} % needed); use a Sentinel-1 scene that overlaps the "
                                "Sentinel-2 tile, or the Sentinel-2-only graph (graphs/progressive_classifier_s2.xml)")
    if coverage < COVERAGE_WARN:
        return Finding("warning", f"{s1_names} cover only {pct} of the valid Sentinel-2 pixels; the other "
                                  "pixels get NaN radar indices")
    return None


def guard_sample(arrays) -> list[np.ndarray]:
    """The guards' sample of `arrays` (2-D, one grid): a few spread chunks
    (``SAMPLE_BLOCKS``), decimated to about ``SAMPLE_PIXELS`` pixels in all;
    one array per input, aligned."""
    first = arrays[0]
    chunk_pixels = (first.shape[0] * first.shape[1]) / max(1, first.npartitions)
    taken = min(SAMPLE_BLOCKS, first.npartitions) * chunk_pixels
    step = max(1, int(math.sqrt(taken / SAMPLE_PIXELS)))
    return sample_blocks(arrays, max_blocks=SAMPLE_BLOCKS, step=step).stacked()


def band_sample(band) -> np.ndarray:
    """The guards' sample of one band (:func:`guard_sample`): float64, NaN where it holds no data."""
    return float_values(guard_sample([band.data])[0], band.no_data)


def unit_contradiction(values: np.ndarray, unit: str | None) -> str | None:
    """What the sampled backscatter `values` show when they contradict `unit` (``"dB"`` or
    ``"linear"``): dB with fewer than :data:`DB_NEGATIVE_SHARE` of the non-zero values below 0,
    linear with more; None when they agree, or with fewer than :data:`MIN_SAMPLE_PIXELS` of them.

    >>> unit_contradiction(np.array([-12.1, -8.4, -17.9, 0.02] * 50), "linear")
    '75.0 % of its values below 0, median -10.2'
    >>> unit_contradiction(np.array([-12.1, -8.4, -17.9, 0.02] * 50), "dB") is None
    True
    """
    negative, n = negative_share(values)
    if n < MIN_SAMPLE_PIXELS or unit not in ("dB", "linear"):
        return None
    if (negative < DB_NEGATIVE_SHARE) if unit == "dB" else (negative > DB_NEGATIVE_SHARE):
        return f"{100 * negative:.1f} % of its values below 0, median {np.median(backscatter_values(values)):.3g}"
    return None


def check_backscatter_unit(values: Mapping[str, np.ndarray], units: Mapping[str, str]) -> Finding | None:
    """Error when a backscatter band's values contradict the unit it is read in.

    Linear intensity (Sigma0) is never negative; in dB nearly every pixel of a
    real scene is (0 dB is a reflector as bright as the pixel itself). A band
    read as dB (its name ``*_db``, its unit, or ``sarUnit``) whose non-zero
    values are mostly positive holds intensity, and the reverse: either way
    every radar index would be wrong without an error.

    Parameters
    ----------
    values : dict of str to numpy.ndarray
        Band name -> sampled values (NaN where invalid).
    units : dict of str to str
        Band name -> ``"dB"`` or ``"linear"``, as the indices will read it.

    Returns
    -------
    Finding or None
        Error for the first band contradicted (share of negative values
        against :data:`DB_NEGATIVE_SHARE`); None with fewer than
        :data:`MIN_SAMPLE_PIXELS` non-zero values.

    Examples
    --------
    >>> db = np.array([-12.1, -8.4, -17.9, -20.3] * 50)
    >>> check_backscatter_unit({"Sigma0_VV_db": db}, {"Sigma0_VV_db": "dB"}) is None
    True
    >>> check_backscatter_unit({"Sigma0_VV_db": 10 ** (db / 10)}, {"Sigma0_VV_db": "dB"}).level
    'error'
    """
    for name, v in values.items():
        unit = units.get(name)
        seen = unit_contradiction(v, unit)
        if seen is None:
            continue
        if unit == "dB":
            return Finding("error", f"{name} is read as dB but holds linear intensity ({seen}; dB backscatter is "
                                    "below 0 almost everywhere): convert it to dB (10*log10) or read it as linear "
                                    "(a name without _db, e.g. Sigma0_VV, or unit intensity, and sarUnit auto or "
                                    "linear); if it really is dB, set checkInputs=false")
        return Finding("error", f"{name} is read as linear intensity but holds dB ({seen}; intensity is never "
                                "negative): read it as dB (sarUnit=dB, or a name ending in _db, e.g. "
                                "Sigma0_VV_db, or unit intensity_db); if it really is intensity, set "
                                "checkInputs=false")
    return None


def as_utc(value: Any) -> _dt.datetime | None:
    """A timezone-aware UTC datetime from a datetime (naive = UTC) or text
    (ISO 8601 or SNAP's ``09-MAR-2015 17:30:17.123456``); None if neither."""
    if isinstance(value, _dt.datetime):
        return value.replace(tzinfo=_dt.timezone.utc) if value.tzinfo is None else value.astimezone(_dt.timezone.utc)
    if isinstance(value, str) and value.strip():
        from ..io.dimap import parse_snap_time
        from ..io.times import parse_datetime

        return parse_snap_time(value) or parse_datetime(value)
    return None


def check_date_gap(s2_time: Any, s1_time: Any, max_days: float = MAX_DATE_GAP_DAYS) -> Finding | None:
    """Warning when Sentinel-1 and Sentinel-2 were acquired more than `max_days` apart.

    Parameters
    ----------
    s2_time, s1_time : datetime or str or None
        Acquisition (start) times; text as :func:`as_utc` reads it.
    max_days : float
        Largest gap in days without a warning.

    Returns
    -------
    Finding or None
        A warning naming both dates and the gap; an info finding when a
        date is unknown; None when the gap is within `max_days`.
    """
    t2, t1 = as_utc(s2_time), as_utc(s1_time)
    if t2 is None or t1 is None:
        unknown = " and ".join(n for n, t in (("Sentinel-2", t2), ("Sentinel-1", t1)) if t is None)
        return Finding("info", f"acquisition date of {unknown} unknown: S1/S2 date gap not checked")
    gap = abs((t1 - t2).total_seconds()) / 86400.0
    if gap <= max_days:
        return None
    return Finding("warning", f"Sentinel-1 ({t1:%Y-%m-%d}) and Sentinel-2 ({t2:%Y-%m-%d}) were acquired {gap:.1f} "
                              f"days apart (more than maxDateGap = {max_days:g}); land cover, above all water in "
                              "floods, may have changed between them")


# --- where each band comes from (times recorded by Collocate) ---------------------------------


@dataclass(frozen=True)
class SecondarySource:
    """A product collocated onto the grid of another, as recorded in metadata.

    Attributes
    ----------
    name : str
        Product name.
    start_time : datetime or None
    bands : tuple of str or None
        Its band names in the collocated product; None when not recorded
        (SNAP's own Collocate).
    mission : str
        ``MISSION`` from SNAP's ``Abstracted_Metadata`` when present.
    """

    name: str
    start_time: _dt.datetime | None
    bands: tuple[str, ...] | None
    mission: str = ""


def secondary_sources(metadata: MetadataElement) -> list[SecondarySource]:
    """The secondary products a metadata tree records, with their times.

    Reads the ``Collocate`` elements this project's Collocate writes (one
    child per secondary: ``productName``, ``startTime``, ``bands``), else
    SNAP's ``SecondaryMetadata`` (written by SNAP's and our Collocate with
    ``copySecondaryMetadata``: one child per secondary holding a copy of its
    metadata, where a Sentinel-1 product's ``Abstracted_Metadata`` gives
    ``first_line_time`` and ``MISSION``).

    Parameters
    ----------
    metadata : MetadataElement
        A product's metadata root.

    Returns
    -------
    list of SecondarySource
    """
    found: list[SecondarySource] = []
    for element in metadata.elements:
        if element.name != "Collocate":
            continue
        for child in element.elements:
            a = child.attributes
            bands = tuple(b for b in str(a.get("bands", "")).split(",") if b)
            found.append(SecondarySource(str(a.get("productName", child.name)), as_utc(a.get("startTime")),
                                         bands or None, str(a.get("mission", ""))))
    if found:
        return found
    secondary = metadata.element("SecondaryMetadata")
    for child in secondary.elements if secondary is not None else []:
        abstracted = child.element("Abstracted_Metadata")
        a = abstracted.attributes if abstracted is not None else {}
        start = as_utc(a.get("first_line_time")) or as_utc(child.attributes.get("PRODUCT_SCENE_RASTER_START_TIME"))
        found.append(SecondarySource(child.name, start, None, str(a.get("MISSION", ""))))
    return found


def band_times(reference_time: Any, metadata: MetadataElement, s2_bands: list[str],
               s1_bands: list[str]) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    """Acquisition times of the Sentinel-2 and the Sentinel-1 bands of one product.

    A band recorded as a secondary's (see :func:`secondary_sources`) has that
    secondary's time; the others have the product's (the reference's) time.
    Without band lists (SNAP's Collocate), a single secondary is taken as the
    Sentinel-1 product unless its ``MISSION`` says Sentinel-2.

    Parameters
    ----------
    reference_time : datetime or None
        The product's start time (Collocate keeps the reference's).
    metadata : MetadataElement
    s2_bands, s1_bands : list of str
        Band names read as Sentinel-2 reflectance and Sentinel-1 backscatter.

    Returns
    -------
    (datetime or None, datetime or None)
        Sentinel-2 time, Sentinel-1 time; ``(t, None)`` when nothing says the
        two come from different acquisitions (one product, e.g. a stack).
    """
    ref = as_utc(reference_time)
    sources = secondary_sources(metadata)
    listed = [s for s in sources if s.bands is not None]
    if listed:
        def time_of(names):
            for s in reversed(listed):  # a later Collocate wins
                if any(n in s.bands for n in names):
                    return s.start_time, True
            return ref, False

        (t2, from2), (t1, from1) = time_of(s2_bands), time_of(s1_bands)
        return (t2, t1) if (from1 or from2) else (ref, None)
    if len(sources) == 1:
        s = sources[0]
        if "SENTINEL-2" in s.mission.upper():
            return s.start_time, ref
        return ref, s.start_time
    return ref, None
