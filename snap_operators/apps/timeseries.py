"""``snap-pc timeseries``: class areas over N dates, trend fits, correlations and plots.

Inputs are class maps (one per date) or, with ``--graph``, raw products the
graph classifies first. Each map is streamed once, chunk by chunk, to count
its pixels per class (per image row in a geographic CRS, for exact km²).
With ``--graph``, a STAC ItemCollection (``.json``, e.g. a saved
``pystac_client`` search) stands for its items, one date each, written as
item files to ``OUT/items/`` for the graph runs (``docs/stac.md``).

**Dates.** ``--dates`` (a list or a CSV) wins; otherwise the product's
sensing time (``PRODUCT_START_TIME`` / ``ACQUISITION_DATE`` tags, SAFE or
BEAM-DIMAP start time), else a date in the file name (``S2L1C_2015-07-11.tif``,
``S2A_MSIL1C_20150711T100006_...``), else the TIFF's ``TIFFTAG_DATETIME``
(last: it is usually when the file was written, not sensed).

**Invalid pixels.** No-data pixels of the class map, values outside its
legend, masked pixels (class 254: cloud, cloud shadow or snow found by
``CloudMask``, not observed) and, for raw products of class maps made without
a cloud mask, cloud pixels (blue TOA/BOA reflectance above
``cloud_threshold``: clouds are bright in the blue band where land and water
are dark; a crude test that gives way to the mask wherever the map has one)
are invalid and are not counted in any class. A date whose invalid
fraction exceeds ``max_invalid_fraction``, or that has no valid pixel, is
reported and left out of the trends, correlations and plots; its areas are
left empty, never zero.

**Trends.** Per class, polynomials of degree 1..3 in days since the first
date (:func:`numpy.polyfit`; only degrees below ``n_dates - 1``), the degree
chosen by leave-one-out cross-validation (smallest RMSE) or by adjusted R²;
R² is reported. **Correlation**: Pearson's r between the classes' area
change rates (km²/day between consecutive used dates), with its two-sided
p-value (Student's t, ``n - 2`` degrees of freedom for ``n`` intervals); not
computed from fewer than ``MIN_CORRELATION_INTERVALS`` intervals.

**Cloud check.** Raw products (``--graph``) get the blue-band test unless the
map has a mask; class maps given directly are checked only through their own
mask (class 254 in the legend, :func:`is_masked_map`): without one, a warning
says their dates are not checked for clouds.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import logging
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import dask.array as da
import numpy as np

from ..core.errors import SnapPcError
from ..core.legend import LAND_COVER, MASKED, NO_DATA, hex_color
from ..core.outputs import claims_problem, stage_figure, stage_text, staged_outputs
from ..core.product import Band, ClassInfo, Product
from ..grid.areas import AreaAccumulator, AreaRow, class_areas, format_area_table
from ..grid.crs import is_geographic
from ..science import change

log = logging.getLogger(__name__)

#: Selection rules for the trend degree.
SELECTIONS = ("loocv", "adjusted-r2")
#: Highest polynomial degree tried.
MAX_DEGREE = 3
#: Default largest share of invalid (no-data, cloud) pixels a used date may have.
DEFAULT_MAX_INVALID = 0.5
#: Default cloud test: blue reflectance above this is cloud. Thick clouds are
#: 0.3-0.6 in B02; clear land and water stay below 0.15, bright roofs and
#: haze below about 0.23 (docs/change_detection.md).
DEFAULT_CLOUD_THRESHOLD = 0.25
#: Blue band names tried for the cloud test.
BLUE_BANDS = ("B02", "B2")
#: Fewest area change intervals (consecutive used dates) a correlation is computed from. With n
#: intervals Pearson's r has n - 2 degrees of freedom: at n = 4 only |r| > 0.95 is significant at 5 %,
#: and two classes that trade area with each other are at r = -1 whatever happened, so the plot
#: read ±1.00 everywhere; at n = 5, |r| > 0.88 is (docs/change_detection.md).
MIN_CORRELATION_INTERVALS = 5
#: Significance level of the correlation plot: cells with a larger p-value are hatched.
SIGNIFICANCE = 0.05
#: Counter bins: class values 0..253, 255 no-data, 256 not observed (masked 254, or the blue cloud test),
#: 257 outside legend.
_CLOUD, _OUTSIDE, _BINS = 256, 257, 258


class TimeSeriesError(SnapPcError):
    """The inputs of a time series are unusable (one line)."""


# --- dates ---------------------------------------------------------------------------

_NAME_DATE = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?:T(\d{2})(\d{2})(\d{2}))?(?!\d)")


def date_from_name(name: str) -> _dt.datetime | None:
    """The first valid date in a file name (``2015-07-11`` or ``20150711[T100006]``), UTC.

    >>> date_from_name("S2L1C_2015-07-11.tif").isoformat()
    '2015-07-11T00:00:00+00:00'
    >>> date_from_name("S2A_MSIL1C_20170216T101101_N0204_R022_T33UUU_20170216T101140.SAFE").isoformat()
    '2017-02-16T10:11:01+00:00'
    >>> date_from_name("scene_v2.tif") is None
    True
    """
    for m in _NAME_DATE.finditer(name):
        y, mo, d, hh, mm, ss = (int(g) if g else 0 for g in m.groups())
        try:
            return _dt.datetime(y, mo, d, hh, mm, ss, tzinfo=_dt.timezone.utc)
        except ValueError:
            continue
    return None


def product_date(product: Product, path: str | os.PathLike) -> tuple[_dt.datetime | None, str]:
    """``(date, where it came from)``: sensing time, else file name, else TIFFTAG_DATETIME."""
    tiff = product.metadata.element("TIFF_Metadata")
    tags = tiff.attributes if tiff is not None else {}
    from_tiff_time_only = tiff is not None and not any(tags.get(k) for k in ("PRODUCT_START_TIME", "ACQUISITION_DATE"))
    named = date_from_name(Path(path).name)
    if product.start_time is not None and not from_tiff_time_only:
        if named is not None and abs((product.start_time - named).total_seconds()) > 86400:
            log.warning("%s: sensing time %s differs from the date in its name (%s); using the sensing time",
                        path, product.start_time.date(), named.date())
        return product.start_time, "metadata"
    if named is not None:
        return named, "file name"
    if product.start_time is not None:
        return product.start_time, "TIFFTAG_DATETIME"
    return None, ""


def parse_dates_option(text: str, inputs: Sequence[Path]) -> list[_dt.datetime]:
    """Dates given by the user, one per input: a comma-separated list or a CSV file.

    The CSV has a ``date`` column and, optionally, a ``file`` column naming
    each input (path, file name or stem); without it, rows follow the inputs.
    """
    from ..io.times import parse_datetime

    p = Path(text)
    if p.suffix.lower() == ".csv" or (p.is_file() and "," not in text):
        try:
            rows = list(csv.DictReader(p.read_text(encoding="utf-8-sig").splitlines()))
        except OSError as exc:
            raise TimeSeriesError(f"--dates: cannot read {p}: {exc.strerror or exc}") from None
        if not rows or "date" not in rows[0]:
            raise TimeSeriesError(f"--dates: {p} needs a header with a 'date' column (and optionally 'file')")
        if "file" in rows[0]:
            by_name = {}
            for r in rows:
                key = (r.get("file") or "").strip()
                by_name[key] = r["date"]
                by_name[Path(key).name] = r["date"]
                by_name[Path(key).stem] = r["date"]
            raw = []
            for inp in inputs:
                hit = next((by_name[k] for k in (str(inp), inp.name, inp.stem) if k in by_name), None)
                if hit is None:
                    raise TimeSeriesError(f"--dates: {p} has no row for {inp.name}")
                raw.append(hit)
        else:
            raw = [r["date"] for r in rows]
        where = str(p)
    else:
        raw = [s.strip() for s in text.split(",") if s.strip()]
        where = "--dates"
    if len(raw) != len(inputs):
        raise TimeSeriesError(f"{where}: {len(raw)} date(s) for {len(inputs)} input(s); give one date per input")
    out = []
    for r in raw:
        d = parse_datetime(r)
        if d is None:
            raise TimeSeriesError(f"{where}: cannot read {r!r} as a date (expected YYYY-MM-DD)")
        out.append(d)
    return out


# --- counting ------------------------------------------------------------------------


def _bins_block(cls: np.ndarray, cloud: np.ndarray | None, values: np.ndarray, no_data) -> np.ndarray:
    """Counter bin of each pixel: its class value, 255 no-data, 256 not observed (masked or cloud),
    257 outside the legend."""
    idx = change.class_index(cls, values, no_data)
    n = values.size
    out = np.where(idx < n, values[np.minimum(idx, n - 1)], np.where(idx == n, NO_DATA, _OUTSIDE))
    out = np.where(cls == MASKED, _CLOUD, out)
    if cloud is not None:
        out = np.where(cloud & (idx < n), _CLOUD, out)
    return out.astype(np.uint16)


def cloud_mask(raw: Product, band: Band, crs, threshold: float) -> da.Array | None:
    """Lazy cloud mask of raw product `raw` on the grid of class `band`, or None without a blue band."""
    from ..grid.regrid import regrid

    name = next((b for b in BLUE_BANDS if b in raw.bands), None)
    if name is None:
        return None
    blue = raw.bands[name]
    mask = blue.data > np.float32(threshold)
    if blue.transform is not None and band.transform is not None:
        mask = regrid(mask, blue.transform, band.shape, band.transform, src_crs=raw.crs, dst_crs=crs,
                      tile_size=max(band.data.chunksize))
    elif blue.shape != band.shape:
        return None
    return mask.rechunk(band.data.chunks)


def is_masked_map(band: Band) -> bool:
    """True when a class band was made with a cloud mask: its legend lists the masked class (254)."""
    return any(int(c.value) == MASKED for c in (band.classes or ()))


def count_classes(product: Product, band: Band, cloud: da.Array | None, context) -> np.ndarray:
    """Stream `band` once: counts per counter bin, ``(258,)`` or ``(rows, 258)`` in a geographic CRS."""
    from ..core.streaming import store

    values = np.asarray([c.value for c in change.legend_classes(band.classes, LAND_COVER)], dtype=np.int64)
    arrays = [band.data] + ([cloud] if cloud is not None else [])

    def block(cls, *rest):
        return _bins_block(cls, rest[0] if rest else None, values, band.no_data)

    bins = da.map_blocks(block, *arrays, dtype=np.uint16)
    counter = AreaAccumulator(band.shape, per_row=is_geographic(product.crs), bins=_BINS)
    store([bins], [counter], context)
    return counter.counts


# --- one date --------------------------------------------------------------------------


@dataclass
class DateAreas:
    """Class areas of one date and whether the date is used."""

    date: _dt.datetime
    date_source: str
    path: Path
    raw: Path | None
    rows: list[AreaRow]
    pixels: int
    no_data_pixels: int
    cloud_pixels: int
    outside_pixels: int
    excluded: str | None = None
    days: float = 0.0

    @property
    def invalid_fraction(self) -> float:
        bad = self.no_data_pixels + self.cloud_pixels + self.outside_pixels
        return bad / self.pixels if self.pixels else 1.0

    @property
    def cloud_fraction(self) -> float:
        return self.cloud_pixels / self.pixels if self.pixels else 0.0

    @property
    def label(self) -> str:
        return self.date.strftime("%Y-%m-%d")

    def area(self, class_id: int) -> float:
        return next(r.area_km2 for r in self.rows if r.class_id == class_id)


def measure(product: Product, band: Band, path: Path, date, date_source: str, *, raw: Product | None = None,
            raw_path: Path | None = None, cloud_threshold: float = DEFAULT_CLOUD_THRESHOLD, context=None) -> DateAreas:
    """Class areas and invalid pixels of one class map."""
    cloud = None
    if raw is not None and cloud_threshold > 0 and is_masked_map(band):
        log.info("%s: the class map carries a cloud mask (class %d); no blue-band cloud test", path, MASKED)
    elif raw is not None and cloud_threshold > 0:
        cloud = cloud_mask(raw, band, product.crs, cloud_threshold)
        if cloud is None:
            log.warning("%s: no blue band (%s); no cloud test", raw_path, "/".join(BLUE_BANDS))
    counts = count_classes(product, band, cloud, context)
    total = counts.sum(axis=0) if counts.ndim == 2 else counts
    # class_areas lists Unclassified (0) itself
    classes = [c for c in change.legend_classes(band.classes, LAND_COVER) if c.value != 0]
    rows = class_areas(counts[..., :256], band.transform, product.crs, band.shape, classes)
    h, w = band.shape
    return DateAreas(date, date_source, path, raw_path, rows, h * w, int(total[NO_DATA]), int(total[_CLOUD]),
                     int(total[_OUTSIDE]))


# --- trends and correlation ------------------------------------------------------------------


@dataclass
class Trend:
    """A polynomial fit of one class's area against days since the first date.

    ``coefficients[k]`` multiplies ``days**k`` (km²/day^k).
    """

    class_id: int
    class_name: str
    degree: int
    coefficients: list[float]
    r2: float
    adjusted_r2: float
    loocv_rmse: float
    n: int
    selection: str
    candidates: dict[int, dict[str, float]] = field(default_factory=dict)

    def __call__(self, days) -> np.ndarray:
        return np.polynomial.polynomial.polyval(np.asarray(days, dtype=np.float64), self.coefficients)


def _polyfit(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray | None:
    """numpy.polyfit coefficients (highest first), None when the fit is rank-deficient."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.RankWarning)
        try:
            return np.polyfit(x, y, degree)
        except (np.exceptions.RankWarning, np.linalg.LinAlgError):
            return None


def r_squared(y: np.ndarray, fitted: np.ndarray) -> float:
    """Coefficient of determination; NaN for a constant series."""
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot <= 1e-12 * max(1.0, float(np.sum(y ** 2))):
        return float("nan")
    return 1.0 - float(np.sum((y - fitted) ** 2)) / ss_tot


def adjusted_r2(r2: float, n: int, degree: int) -> float:
    """Adjusted R² of a degree-`degree` polynomial on `n` points (``n > degree + 1``)."""
    return 1.0 - (1.0 - r2) * (n - 1) / (n - degree - 1)


def loocv_rmse(x: np.ndarray, y: np.ndarray, degree: int) -> float:
    """Leave-one-out RMSE of a polynomial fit (NaN when a fold cannot be fitted)."""
    errors = []
    for i in range(x.size):
        keep = np.arange(x.size) != i
        coef = _polyfit(x[keep], y[keep], degree)
        if coef is None:
            return float("nan")
        errors.append(np.polyval(coef, x[i]) - y[i])
    return float(np.sqrt(np.mean(np.square(errors))))


def fit_trend(days: Sequence[float], areas: Sequence[float], *, max_degree: int = MAX_DEGREE,
              selection: str = "loocv", class_id: int = 0, class_name: str = "") -> Trend:
    """Fit degrees 1..`max_degree` (below ``n - 1``) and keep the one `selection` prefers.

    Parameters
    ----------
    days : sequence of float
        Days since the first date, one per used date (``n >= 3``).
    areas : sequence of float
        Class area per date, km².
    max_degree : int
        Highest degree tried (1..3).
    selection : {'loocv', 'adjusted-r2'}
        Smallest leave-one-out RMSE, or largest adjusted R²; ties (constant
        series included) go to the lower degree.

    Examples
    --------
    >>> t = fit_trend([0, 10, 20, 30, 40, 50], [1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
    >>> t.degree, round(t.coefficients[1], 3), round(t.r2, 6)
    (1, 0.02, 1.0)
    """
    if selection not in SELECTIONS:
        raise TimeSeriesError(f"unknown trend selection {selection!r}; use {' or '.join(SELECTIONS)}")
    x = np.asarray(days, dtype=np.float64)
    y = np.asarray(areas, dtype=np.float64)
    n = x.size
    top = min(int(max_degree), MAX_DEGREE, n - 2)
    if top < 1:
        raise TimeSeriesError(f"a trend needs at least 3 dates, got {n}")
    candidates: dict[int, dict[str, float]] = {}
    coefs: dict[int, np.ndarray] = {}
    for d in range(1, top + 1):
        coef = _polyfit(x, y, d)
        if coef is None:
            continue
        r2 = r_squared(y, np.polyval(coef, x))
        coefs[d] = coef
        candidates[d] = {"r2": r2, "adjusted_r2": adjusted_r2(r2, n, d), "loocv_rmse": loocv_rmse(x, y, d)}
    if not candidates:
        raise TimeSeriesError(f"class {class_id} '{class_name}': no polynomial could be fitted to {n} dates")

    def score(d: int) -> float:
        c = candidates[d]
        value = c["loocv_rmse"] if selection == "loocv" else -c["adjusted_r2"]
        return math.inf if math.isnan(value) else value

    best = min(candidates, key=lambda d: (round(score(d), 12), d))
    c = candidates[best]
    return Trend(class_id, class_name, best, [float(v) for v in coefs[best][::-1]], c["r2"], c["adjusted_r2"],
                 c["loocv_rmse"], n, selection, candidates)


def change_rates(days: Sequence[float], areas: np.ndarray) -> np.ndarray:
    """Area change per day between consecutive dates: ``(n-1, classes)`` from ``(n, classes)`` areas."""
    a = np.asarray(areas, dtype=np.float64)
    dt = np.diff(np.asarray(days, dtype=np.float64))
    return np.diff(a, axis=0) / dt[:, None]


def pearson_matrix(samples: np.ndarray) -> np.ndarray:
    """Pearson's r between the columns of `samples` ``(n, k)``; NaN for constant columns.

    >>> r = pearson_matrix(np.array([[1.0, -2.0, 5.0], [2.0, -4.0, 5.0], [4.0, -8.0, 5.0]]))
    >>> np.round(r, 6).tolist()
    [[1.0, -1.0, nan], [-1.0, 1.0, nan], [nan, nan, nan]]
    """
    s = np.asarray(samples, dtype=np.float64)
    centred = s - s.mean(axis=0)
    norm = np.sqrt((centred ** 2).sum(axis=0))
    scale = np.abs(s).max(axis=0) if s.size else np.zeros(s.shape[1])
    constant = norm <= 1e-12 * np.maximum(scale, 1e-300) * math.sqrt(max(s.shape[0], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (centred.T @ centred) / np.outer(norm, norm)
    r[constant, :] = np.nan
    r[:, constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def pearson_p_value(r: float, n: int) -> float:
    """Two-sided p-value of Pearson's `r` from `n` pairs (null hypothesis: no correlation).

    ``t = r sqrt((n - 2) / (1 - r²))`` follows Student's t with ``ν = n - 2``
    degrees of freedom. For integer ν its two-sided tail is a finite series in
    ``cos θ = sqrt(1 - r²)`` and ``sin θ = |r|`` (Abramowitz & Stegun 26.7.3,
    26.7.4), so no scipy is needed (it is only in the ``train`` extra).

    Parameters
    ----------
    r : float
        Pearson's correlation coefficient.
    n : int
        Number of pairs it was computed from.

    Returns
    -------
    float
        The p-value; NaN when `r` is NaN or ``n < 3``.

    Examples
    --------
    >>> round(pearson_p_value(0.8783, 5), 3)  # the 5 % critical value at 3 degrees of freedom
    0.05
    >>> pearson_p_value(-1.0, 4), pearson_p_value(0.5, 2)
    (0.0, nan)
    """
    if n < 3 or not math.isfinite(r):
        return float("nan")
    nu = n - 2
    s = min(abs(float(r)), 1.0)
    c2 = 1.0 - s * s
    total = 0.0
    if nu % 2:  # odd: (2/π)[θ + sin θ (cos θ + 2/3 cos³θ + ... + cos^(ν-2)θ terms)]
        term = math.sqrt(c2)
        for k in range(1, (nu - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        inside = 2.0 / math.pi * (math.atan2(s, math.sqrt(c2)) + s * total)
    else:  # even: sin θ [1 + 1/2 cos²θ + (1·3)/(2·4) cos⁴θ + ... + cos^(ν-2)θ term]
        term = 1.0
        for k in range(1, nu // 2 + 1):
            total += term
            term *= c2 * (2 * k - 1) / (2 * k)
        inside = s * total
    return max(0.0, 1.0 - inside)


def pearson_p_values(r: np.ndarray, n: int) -> np.ndarray:
    """:func:`pearson_p_value` of every cell of a correlation matrix; NaN on the diagonal (no test)."""
    p = np.array([[pearson_p_value(v, n) for v in row] for row in np.asarray(r, dtype=np.float64)]).reshape(
        np.shape(r))
    np.fill_diagonal(p, np.nan)
    return p


# --- the whole series ---------------------------------------------------------------------------


@dataclass
class TimeSeries:
    """Result of :func:`run_timeseries`."""

    dates: list[DateAreas]
    classes: list[ClassInfo]
    trends: list[Trend]
    #: Pearson's r of the change rates of `correlation_classes`; NaN unless :attr:`correlated`.
    correlation: np.ndarray
    #: Its two-sided p-values (:func:`pearson_p_values`).
    correlation_p: np.ndarray
    correlation_classes: list[ClassInfo]
    outputs: list[Path]

    @property
    def used(self) -> list[DateAreas]:
        return [d for d in self.dates if d.excluded is None]

    @property
    def intervals(self) -> int:
        """Area change intervals between consecutive used dates: the n of the correlation."""
        return len(self.used) - 1

    @property
    def correlated(self) -> bool:
        """Whether there are intervals enough for a correlation (``MIN_CORRELATION_INTERVALS``)."""
        return self.intervals >= MIN_CORRELATION_INTERVALS


def run_timeseries(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    dates: str | Sequence | None = None,
    graph: str | os.PathLike | None = None,
    variables: Mapping[str, str] | None = None,
    properties: str | os.PathLike | None = None,
    band: str | None = None,
    max_invalid_fraction: float = DEFAULT_MAX_INVALID,
    cloud_threshold: float = DEFAULT_CLOUD_THRESHOLD,
    max_degree: int = MAX_DEGREE,
    selection: str = "loocv",
    overwrite: bool = False,
    tile_size: int = 1024,
    progress: bool = False,
) -> TimeSeries:
    """Class areas per date, trends, correlations and plots, written into `out_dir`.

    Parameters
    ----------
    inputs : sequence of path or pystac.ItemCollection
        Class maps, one per date; with `graph`, raw products the graph
        classifies first (into ``out_dir/classes/classes_<date>.tif``); a STAC
        ItemCollection (``.json`` or object) stands for its items, one date
        each (:func:`stac_dates`).
    out_dir : path
        Output folder (created).
    dates : str or sequence, optional
        One date per input: a comma-separated list, a CSV path (see
        :func:`parse_dates_option`) or datetimes; default from metadata/names.
    graph : path, optional
        Graph run on each input with ``-Pinput=<input> -Poutput=<class map>``
        (``labels`` too when the graph uses it); `variables` add or override
        others, ``{name}`` in a value becoming the input's name.
    band : str, optional
        Class band (default ``class_id``, else the map's only class band).
    max_invalid_fraction : float
        Dates with more invalid (no-data, cloud, outside-legend) pixels are left out.
    cloud_threshold : float
        Blue reflectance above which a raw product's pixel is cloud; 0 disables.
    max_degree, selection
        Trend fit options (:func:`fit_trend`).

    Returns
    -------
    TimeSeries
    """
    from ..core.context import ExecutionContext

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TimeSeriesError(f"output folder {out} is a file")
    inputs = [Path(p) for p in stac_dates(inputs, out, graph)]
    if len(inputs) < 3:
        raise TimeSeriesError(f"a time series needs class maps of at least 3 dates (trend fits need 3); "
                              f"got {len(inputs)}")
    for p in inputs:
        if not p.exists():
            raise TimeSeriesError(f"input not found: {p}")
    if not 0 <= max_invalid_fraction <= 1:
        raise TimeSeriesError(f"--max-invalid-fraction must be in [0, 1], got {max_invalid_fraction}")
    if not 1 <= max_degree <= MAX_DEGREE:
        raise TimeSeriesError(f"--max-degree must be 1..{MAX_DEGREE}, got {max_degree}")
    if selection not in SELECTIONS:
        raise TimeSeriesError(f"unknown trend selection {selection!r}; use {' or '.join(SELECTIONS)}")
    context = ExecutionContext(tile_size=tile_size, overwrite=overwrite)

    from ..io import open_product

    products = [open_product(p, tile_size=tile_size) for p in inputs]
    given = _given_dates(dates, inputs)
    when: list[tuple[_dt.datetime, str]] = []
    for i, (p, prod) in enumerate(zip(inputs, products)):
        if given is not None:
            when.append((given[i], "given"))
            continue
        d, src = product_date(prod, p)
        if d is None:
            raise TimeSeriesError(f"no date for {p.name}: no sensing time in its metadata and none in its name; "
                                  "give --dates")
        when.append((d, src))
    _check_unique_dates(inputs, when)
    order = sorted(range(len(inputs)), key=lambda i: when[i][0])

    out.mkdir(parents=True, exist_ok=True)
    final = _output_paths(out, [when[i][0] for i in order])
    _check_outputs(final, overwrite)
    problem = claims_problem([("time series", list(final.values()))], [*inputs, *([graph] if graph else [])])
    if problem:
        raise TimeSeriesError(problem)

    from tqdm.auto import tqdm

    measured: list[DateAreas] = []
    unmasked: list[Path] = []  # class maps given as they are, without a cloud mask
    first_legend: tuple[Path, list[ClassInfo]] | None = None
    first_grid: tuple[Path, Product, Band] | None = None
    for i in tqdm(order, desc="dates", unit="date", disable=not progress):
        d, src = when[i]
        raw, raw_path = None, None
        path = inputs[i]
        if graph is not None:
            raw, raw_path = products[i], inputs[i]
            path = _run_graph(graph, raw_path, out / "classes", d, variables or {}, properties, context)
            product = open_product(path, tile_size=tile_size)
        else:
            product = products[i]
        try:
            cls_band = change.find_class_band(product, band)
        except SnapPcError as exc:
            raise TimeSeriesError(f"{path.name}: {exc}") from None
        legend = change.legend_classes(cls_band.classes, LAND_COVER)
        if first_legend is None:
            first_legend = (path, legend)
        else:
            diff = change.legend_differences(first_legend[1], legend)
            if diff:
                raise TimeSeriesError(f"{first_legend[0].name} and {path.name} have different class legends: "
                                      + "; ".join(diff))
        if first_grid is None:
            first_grid = (path, product, cls_band)
        else:
            _check_same_area(first_grid, (path, product, cls_band))
        if graph is None and not is_masked_map(cls_band):
            unmasked.append(path)
        measured.append(measure(product, cls_band, path, d, src, raw=raw, raw_path=raw_path,
                                cloud_threshold=cloud_threshold, context=context))

    if unmasked:
        # Without raw products there is no blue band to test, and a cloud the classifier did not
        # mask is counted as the land cover it was classified as: say so once, not once per map.
        which = ("" if len(unmasked) == len(inputs)
                 else f" ({len(unmasked)} of {len(inputs)}: {', '.join(p.name for p in unmasked)})")
        log.warning("class maps carry no cloud mask%s (no class %d in their legend): dates are not checked for "
                    "clouds, and cloud counts as the class it was mapped as; use maps made with CloudMask "
                    "(docs/cloud_mask.md) or the raw products with --graph", which, MASKED)
    t0 = measured[0].date
    for m in measured:
        m.days = (m.date - t0).total_seconds() / 86400.0
        valid = m.pixels - m.no_data_pixels - m.cloud_pixels - m.outside_pixels
        if m.outside_pixels:
            log.warning("%s: %d pixels hold values outside the legend; counted as invalid", m.path.name,
                        m.outside_pixels)
        if valid <= 0:
            m.excluded = "no valid pixel"
        elif m.invalid_fraction > max_invalid_fraction:
            m.excluded = (f"invalid fraction {m.invalid_fraction:.1%} > {max_invalid_fraction:.1%} "
                          f"(cloud {m.cloud_fraction:.1%}, no-data {m.no_data_pixels / m.pixels:.1%})")
        if m.excluded:
            log.warning("%s (%s): left out: %s", m.label, m.path.name, m.excluded)
    used = [m for m in measured if m.excluded is None]
    if len(used) < 3:
        left = "; ".join(f"{m.label}: {m.excluded}" for m in measured if m.excluded) or "none left out"
        raise TimeSeriesError(f"trend fits need at least 3 usable dates, got {len(used)} of {len(measured)} "
                              f"({left})")

    classes = first_legend[1]
    days = np.array([m.days for m in used])
    areas = np.array([[m.area(c.value) for c in classes] for m in used])
    trends = [fit_trend(days, areas[:, k], max_degree=max_degree, selection=selection, class_id=c.value,
                        class_name=c.name) for k, c in enumerate(classes)]
    present = [k for k in range(len(classes)) if np.any(areas[:, k] > 0)]
    corr_classes = [classes[k] for k in present]
    undefined = np.full((len(present), len(present)), np.nan)
    series = TimeSeries(measured, classes, trends, undefined, undefined.copy(), corr_classes, [])
    if series.correlated:
        series.correlation = pearson_matrix(change_rates(days, areas[:, present]))
        series.correlation_p = pearson_p_values(series.correlation, series.intervals)
    else:
        log.warning("correlation not computed: too few dates (n=%d change intervals between %d used dates; "
                    "it needs at least %d)", series.intervals, len(used), MIN_CORRELATION_INTERVALS)
    series.outputs = _write_outputs(series, final, overwrite)
    return series


def stac_dates(inputs: Sequence, out: Path, graph) -> list:
    """`inputs` with each STAC ItemCollection replaced by its items, one input (date) each.

    A graph's ``Read`` opens a file, so the items are written as item files
    ``out/items/<id>.json`` (asset hrefs made absolute), which the graph
    runs read; other inputs are kept as they are.

    Parameters
    ----------
    inputs : sequence of path or pystac.ItemCollection
    out : Path
        The output folder.
    graph : path or None
        Items are raw scenes: they need the graph that classifies them.

    Raises
    ------
    TimeSeriesError
        An ItemCollection without `graph`.
    """
    import pystac

    from ..io.stac import stac_type, write_items

    expanded: list = []
    for p in inputs:
        collection = isinstance(p, pystac.ItemCollection) or (
            Path(p).suffix.lower() == ".json" and Path(p).is_file() and stac_type(Path(p)) == "FeatureCollection")
        if not collection:
            expanded.append(p)
            continue
        name = "ItemCollection" if isinstance(p, pystac.ItemCollection) else Path(p).name
        if graph is None:
            raise TimeSeriesError(f"{name}: a STAC ItemCollection holds raw scenes, not class maps; give --graph "
                                  "to classify each item (e.g. graphs/progressive_classifier_s2.xml)")
        items = write_items(p, out / "items")
        log.info("%s: %d items, one date each (written to %s)", name, len(items), out / "items")
        expanded.extend(items)
    return expanded


def _check_outputs(final: dict[str, Path], overwrite: bool) -> None:
    existing = [p for p in final.values() if p.exists()]
    if existing and not overwrite:
        raise TimeSeriesError(f"'{existing[0]}' already exists; use --overwrite to replace it")


def _given_dates(dates, inputs: Sequence[Path]) -> list[_dt.datetime] | None:
    from ..io.times import parse_datetime

    if dates is None or (isinstance(dates, str) and not dates.strip()):
        return None
    if isinstance(dates, (str, os.PathLike)):
        return parse_dates_option(str(dates), inputs)
    out = []
    for d in dates:
        if isinstance(d, _dt.datetime):
            out.append(d if d.tzinfo else d.replace(tzinfo=_dt.timezone.utc))
        elif isinstance(d, _dt.date):
            out.append(_dt.datetime(d.year, d.month, d.day, tzinfo=_dt.timezone.utc))
        else:
            parsed = parse_datetime(str(d))
            if parsed is None:
                raise TimeSeriesError(f"cannot read {d!r} as a date (expected YYYY-MM-DD)")
            out.append(parsed)
    if len(out) != len(inputs):
        raise TimeSeriesError(f"{len(out)} date(s) for {len(inputs)} input(s); give one date per input")
    return out


def _check_unique_dates(inputs: Sequence[Path], when) -> None:
    seen: dict[str, Path] = {}
    for p, (d, _) in zip(inputs, when):
        key = d.strftime("%Y-%m-%d")
        if key in seen:
            raise TimeSeriesError(f"{seen[key].name} and {p.name} have the same date {key}; "
                                  "one class map per date (give --dates if a date is wrong)")
        seen[key] = p


def _check_same_area(first, other) -> None:
    """Refuse maps of another area: disjoint, or extents differing by more than a pixel."""
    (p1, prod1, b1), (p2, prod2, b2) = first, other
    if b1.transform is None or b2.transform is None or prod1.crs is None or prod2.crs is None:
        raise TimeSeriesError(f"{(p1 if b1.transform is None or prod1.crs is None else p2).name} has no map "
                              "geocoding; class areas need one")
    if prod1.crs != prod2.crs:
        raise TimeSeriesError(f"{p1.name} and {p2.name} are in different CRSs; collocate the maps onto one grid")
    e1, e2 = _extent(b1), _extent(b2)
    overlap_w = min(e1[2], e2[2]) - max(e1[0], e2[0])
    overlap_h = min(e1[3], e2[3]) - max(e1[1], e2[1])
    if overlap_w <= 0 or overlap_h <= 0:
        raise TimeSeriesError(f"{p1.name} and {p2.name} do not overlap: their extents are disjoint")
    px = max(abs(b1.transform.a), abs(b1.transform.e))
    if max(abs(a - b) for a, b in zip(e1, e2)) > px:
        raise TimeSeriesError(f"{p1.name} and {p2.name} cover different areas ({_fmt_extent(e1)} vs "
                              f"{_fmt_extent(e2)}); areas over time need one extent: collocate or subset the maps")


def _extent(b: Band) -> tuple[float, float, float, float]:
    t, (h, w) = b.transform, b.shape
    xs = [t.c, t.c + t.a * w + t.b * h]
    ys = [t.f, t.f + t.d * w + t.e * h]
    return min(xs), min(ys), max(xs), max(ys)


def _fmt_extent(e) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in e) + ")"


def _run_graph(graph, raw: Path, folder: Path, date: _dt.datetime, variables: Mapping[str, str], properties,
               context) -> Path:
    """Run `graph` on raw product `raw`; the class map it wrote."""
    from ..engine.graph import parse_graph
    from ..engine.runner import load_graph, run_graph

    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"classes_{date:%Y-%m-%d}"
    name = raw.name[: -len(raw.suffix)] if raw.suffix else raw.name
    if re.match(r"^MTD_MSIL(1C|2A)$", name, re.IGNORECASE):
        name = raw.parent.name
    values = {"input": str(raw), "output": str(stem)}
    if "labels" in parse_graph(graph).variables():
        values["labels"] = str(folder / f"labels_{date:%Y-%m-%d}.gpkg")
    values.update({k: str(v).replace("{name}", name) for k, v in variables.items()})
    g = load_graph(graph, values, properties)
    result = run_graph(g, context)
    written = [Path(p) for p in result.outputs if Path(p).name.startswith(stem.name)
               and Path(p).suffix.lower() in (".tif", ".tiff", ".dim")]
    if not written:
        raise TimeSeriesError(f"graph {Path(graph).name} wrote no class map for {raw.name} "
                              f"(expected {stem}.tif from a Write node with file ${{output}})")
    return written[0]


# --- outputs ----------------------------------------------------------------------------------


def _output_paths(out: Path, dates: Sequence[_dt.datetime]) -> dict[str, Path]:
    paths = {
        "dates": out / "dates.csv",
        "areas": out / "class_areas.csv",
        "trends": out / "trends.csv",
        "correlation": out / "correlation.csv",
        "trends_png": out / "areas_trends.png",
        "correlation_png": out / "correlation.png",
        "stacked_png": out / "stacked_areas.png",
    }
    for d in dates:
        paths[f"date:{d:%Y-%m-%d}"] = out / f"areas_{d:%Y-%m-%d}.csv"
    return paths


def _num(v: float, digits: int = 6) -> str:
    return "" if v is None or not math.isfinite(v) else f"{round(float(v), digits) + 0.0:.{digits}f}"


def _csv(rows: Sequence[Sequence]) -> str:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerows(rows)
    return buf.getvalue()


def dates_csv_text(series: TimeSeries) -> str:
    """One row per input date: where the date came from, invalid fractions, used or why not."""
    rows = [("date", "days_since_first", "date_source", "class_map", "raw_product", "pixels", "no_data_fraction",
             "cloud_fraction", "invalid_fraction", "status")]
    for m in series.dates:
        rows.append((m.label, _num(m.days, 3), m.date_source, str(m.path), "" if m.raw is None else str(m.raw),
                     m.pixels, _num(m.no_data_pixels / m.pixels), _num(m.cloud_fraction), _num(m.invalid_fraction),
                     "used" if m.excluded is None else f"excluded: {m.excluded}"))
    return _csv(rows)


def class_areas_csv_text(series: TimeSeries) -> str:
    """Wide table: one row per date, one column per class (km²); left-out dates have empty areas."""
    head = ["date", "days_since_first", "status"] + [f"{c.value} {c.name} (sq km)" for c in series.classes]
    rows = [head]
    for m in series.dates:
        areas = [_num(m.area(c.value)) if m.excluded is None else "" for c in series.classes]
        rows.append([m.label, _num(m.days, 3), "used" if m.excluded is None else "excluded", *areas])
    return _csv(rows)


def seed_table_csv_text(m: DateAreas) -> str:
    """One date in the project's ``Class ID | Class Name | Area (sq km)`` layout, as CSV."""
    rows = [("Class ID", "Class Name", "Area (sq km)")]
    for r in m.rows:
        rows.append(("" if r.class_id is None else r.class_id, r.name, _num(r.area_km2, 4)))
    return _csv(rows)


def trends_csv_text(series: TimeSeries) -> str:
    """Selected fit per class: degree, R², adjusted R², LOOCV RMSE, coefficients c0..c3 (km²/day^k)."""
    rows = [("class_id", "class_name", "dates", "selection", "degree", "r2", "adjusted_r2", "loocv_rmse_km2",
             "c0_km2", "c1_km2_per_day", "c2_km2_per_day2", "c3_km2_per_day3")]
    for t in series.trends:
        coef = list(t.coefficients) + [float("nan")] * (MAX_DEGREE + 1 - len(t.coefficients))
        rows.append((t.class_id, t.class_name, t.n, t.selection, t.degree, _num(t.r2), _num(t.adjusted_r2),
                     _num(t.loocv_rmse), *(f"{c:.9g}" if math.isfinite(c) else "" for c in coef)))
    return _csv(rows)


def correlation_csv_text(series: TimeSeries) -> str:
    """One row per pair of classes: change intervals n, Pearson's r of the area change rates, its p-value.

    r and p are empty where undefined, with the reason in ``note``: too few
    dates (fewer than ``MIN_CORRELATION_INTERVALS`` intervals) or a class whose
    area never changes.
    """
    names = [f"{c.value} {c.name}" for c in series.correlation_classes]
    rows = [("class_a", "class_b", "intervals", "r", "p_value", "note")]
    too_few = (f"too few dates (n={series.intervals} intervals < {MIN_CORRELATION_INTERVALS})"
               if not series.correlated else "")
    for i, j in zip(*np.triu_indices(len(names), k=1)):
        r = series.correlation[i, j]
        note = too_few or ("" if math.isfinite(r) else "area constant: undefined")
        rows.append((names[i], names[j], series.intervals, _num(r, 4), _num(series.correlation_p[i, j], 6), note))
    return _csv(rows)


def _write_outputs(series: TimeSeries, final: dict[str, Path], overwrite: bool = True) -> list[Path]:
    """Write every output under a staged name, then rename them all; on failure remove them.

    The outputs are locked meanwhile, and checked again under the locks: a
    concurrent run into the same folder fails instead of replacing them.
    """
    texts = {
        "dates": dates_csv_text(series),
        "areas": class_areas_csv_text(series),
        "trends": trends_csv_text(series),
        "correlation": correlation_csv_text(series),
    }
    for m in series.used:
        texts[f"date:{m.label}"] = seed_table_csv_text(m)
    figures = {"trends_png": trends_figure, "correlation_png": correlation_figure, "stacked_png": stacked_figure}
    try:
        with staged_outputs(final.values(), who="time series") as staged:
            _check_outputs(final, overwrite)  # again under the locks: a concurrent run may have finished
            for key, text in texts.items():
                stage_text(staged, final[key], text)
            for key, figure in figures.items():
                stage_figure(staged, figure(series), final[key])
    except OSError as exc:
        raise TimeSeriesError(f"cannot write the time-series outputs in {final['dates'].parent}: "
                              f"{exc.strerror or exc}") from None
    return [final[k] for k in (*texts, *figures)]


# --- plots ------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(classes: Sequence[ClassInfo]) -> list[str]:
    return [hex_color(c.color) for c in classes]


#: ``gid`` of the dotted lines marking left-out dates (the tests find them by it).
LEFT_OUT_GID = "left out"


def _mark_left_out(axes, series: TimeSeries) -> str:
    """Draw a dotted vertical line at each left-out date on every axes of `axes`.

    Parameters
    ----------
    axes : iterable of matplotlib.axes.Axes
        Axes with dates on x.
    series : TimeSeries
        Its dates with ``excluded`` set are marked.

    Returns
    -------
    str
        The note for the figure's title (``" (dotted: left out <dates>)"``), empty without left-out dates.
    """
    left_out = [m for m in series.dates if m.excluded]
    for ax in axes:
        for m in left_out:
            ax.axvline(m.date, color="grey", ls=":", lw=1, gid=LEFT_OUT_GID)
    return f" (dotted: left out {', '.join(m.label for m in left_out)})" if left_out else ""


def trends_figure(series: TimeSeries):
    """One panel per class present: areas of the used dates, the fitted trend, left-out dates marked.

    Returns
    -------
    matplotlib.figure.Figure
        Saved (and closed) with :func:`~snap_operators.core.outputs.stage_figure`
        or :func:`~snap_operators.core.outputs.save_figure`.
    """
    plt = _pyplot()
    used = series.used
    t0 = series.dates[0].date
    keep = [k for k, c in enumerate(series.classes) if any(m.area(c.value) > 0 for m in used)] or [0]
    cols = 2 if len(keep) > 1 else 1
    rows = math.ceil(len(keep) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 2.8 * rows + 0.6), dpi=110, squeeze=False,
                             sharex=True)
    note = _mark_left_out(axes.ravel()[: len(keep)], series)
    days = np.array([m.days for m in used])
    dense = np.linspace(days.min(), days.max(), 200)
    dense_dates = [t0 + _dt.timedelta(days=float(x)) for x in dense]
    for ax, k in zip(axes.ravel(), keep):
        c, t = series.classes[k], series.trends[k]
        color = hex_color(c.color)
        ax.plot([m.date for m in used], [m.area(c.value) for m in used], "o", color=color, mec="black")
        ax.plot(dense_dates, t(dense), "-", color=color,
                label=f"degree {t.degree}, R² {'n/a' if math.isnan(t.r2) else f'{t.r2:.3f}'}")
        ax.set_title(f"{c.value} {c.name.split('/')[0]}", fontsize=10)
        ax.set_ylabel("area (km²)")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(keep):]:
        ax.set_visible(False)
    fig.suptitle("Class areas and fitted trends" + note, fontsize=11)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


#: ``gid`` of the hatched patches over the correlation cells that are not significant.
NOT_SIGNIFICANT_GID = "not significant"


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def correlation_figure(series: TimeSeries):
    """Heat map of Pearson's r between the classes' area change rates (a figure, as :func:`trends_figure`).

    Each cell reads ``r=…`` and ``p=…``; cells with ``p >= SIGNIFICANCE`` are
    hatched and the title gives n (change intervals). With too few intervals
    (``MIN_CORRELATION_INTERVALS``) the figure holds only that message.
    """
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    n = series.intervals
    title = f"Pearson r of area change rates (km²/day), n = {n} intervals between {n + 1} used dates"
    if not series.correlated:
        fig, ax = plt.subplots(figsize=(7, 3), dpi=110)
        ax.set_axis_off()
        ax.set_title(title, fontsize=10)
        ax.text(0.5, 0.5, f"too few dates (n={n}) for a correlation:\nat least {MIN_CORRELATION_INTERVALS} "
                f"change intervals ({MIN_CORRELATION_INTERVALS + 1} used dates) are needed", ha="center",
                va="center", fontsize=11, transform=ax.transAxes)
        return fig
    r, p = series.correlation, series.correlation_p
    names = [f"{c.value} {c.name.split('/')[0]}" for c in series.correlation_classes]
    k = max(len(names), 1)
    fig, ax = plt.subplots(figsize=(1.3 * k + 3, 1.1 * k + 2), dpi=110)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(r) if r.size else np.zeros((1, 1)), cmap=cmap, vmin=-1, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            v, pv = r[i, j], p[i, j]
            if math.isnan(v):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=8)
                continue
            weak = math.isfinite(pv) and pv >= SIGNIFICANCE
            if weak:  # hatched and washed out: an r that n dates cannot tell from none
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="white", alpha=0.6, hatch="///",
                                       edgecolor="grey", lw=0, gid=NOT_SIGNIFICANT_GID))
            text = f"r={v:.2f}" + ("" if math.isnan(pv) else "\n" + _p_text(pv))
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if not weak and abs(v) > 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_title(f"{title}\nhatched: not significant (p ≥ {SIGNIFICANCE:g}); grey: area constant", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def stacked_figure(series: TimeSeries):
    """Stacked area chart of the class areas over the used dates, left-out dates marked as in
    :func:`trends_figure` (a figure, as that one)."""
    plt = _pyplot()
    used = series.used
    classes = [c for c in series.classes if any(m.area(c.value) > 0 for m in used)] or series.classes[:1]
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    ax.stackplot([m.date for m in used], [[m.area(c.value) for m in used] for c in classes],
                 labels=[f"{c.value} {c.name.split('/')[0]}" for c in classes], colors=_colors(classes),
                 edgecolor="black", linewidth=0.3)
    ax.set_ylabel("area (km²)")
    ax.set_title("Class areas over time" + _mark_left_out([ax], series))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


# --- command line ----------------------------------------------------------------------------------


def format_summary(series: TimeSeries) -> str:
    """Printed report: each date's table (the project's layout), left-out dates, the trends."""
    lines = []
    for m in series.dates:
        lines.append(f"{m.label} ({m.date_source}; invalid {m.invalid_fraction:.1%})")
        lines.append(f"  left out: {m.excluded}" if m.excluded else format_area_table(m.rows))
        lines.append("")
    lines.append("Class ID | Class Name | Degree | R2 | Slope (sq km/day)")
    for t in series.trends:
        slope = t.coefficients[1] if len(t.coefficients) > 1 else float("nan")
        r2 = "n/a" if math.isnan(t.r2) else f"{t.r2:.3f}"
        lines.append(f"{t.class_id} | {t.class_name} | {t.degree} | {r2} | {slope:+.6f}")
    return "\n".join(lines)


def add_command(sub) -> None:
    """Register ``snap-pc timeseries``."""
    p = sub.add_parser(
        "timeseries",
        help="class areas over dates: trends, correlations, plots",
        description="Area per class per date of N class maps (or raw products classified with --graph), "
        "per-class polynomial trends (degree 1-3 by leave-one-out CV or adjusted R2), the Pearson correlation "
        "of the classes' area changes, and PNG plots. Dates with too many cloud/no-data pixels are reported "
        "and left out. See docs/change_detection.md.",
        epilog="examples:\n"
        "  snap-pc timeseries classes_*.tif --out series/\n"
        "  snap-pc timeseries a.tif b.tif c.tif d.tif --dates 2020-05-01,2020-06-01,2020-07-01,2020-08-01 --out s/\n"
        "  snap-pc timeseries S2*.SAFE --graph graphs/progressive_classifier_s2.xml --out series/\n"
        "  snap-pc timeseries search.json --graph graphs/progressive_classifier_s2.xml --out series/  "
        "(a STAC ItemCollection)",
    )
    p.add_argument("inputs", nargs="+", help="class maps (or raw products with --graph), one per date; with "
                   "--graph, a STAC ItemCollection .json stands for its items, one date each")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dates", help="one date per input: YYYY-MM-DD,... or a CSV with 'date' (and 'file') columns "
                   "(default: product metadata, else the date in the file name)")
    p.add_argument("--graph", help="graph classifying each input first (-Pinput/-Poutput set per date)")
    p.add_argument("-P", dest="variables", action="append", metavar="NAME=VALUE",
                   help="graph variable for --graph runs ({name} = the input's name)")
    p.add_argument("-p", dest="properties", metavar="FILE", help="properties file for --graph runs")
    p.add_argument("--band", help="class band (default: class_id, else the map's only class band)")
    p.add_argument("--max-invalid-fraction", type=float, default=DEFAULT_MAX_INVALID, metavar="F",
                   help=f"leave out dates with more cloud/no-data pixels than this share (default {DEFAULT_MAX_INVALID})")
    p.add_argument("--cloud-threshold", type=float, default=DEFAULT_CLOUD_THRESHOLD, metavar="R",
                   help="with --graph: blue (B02) reflectance above which a pixel is cloud; 0 disables "
                   f"(default {DEFAULT_CLOUD_THRESHOLD})")
    p.add_argument("--max-degree", type=int, default=MAX_DEGREE, choices=(1, 2, 3), help="highest trend degree")
    p.add_argument("--selection", choices=SELECTIONS, default="loocv",
                   help="trend degree by leave-one-out CV (default) or adjusted R2")
    p.add_argument("--tile-size", type=int, default=1024, metavar="N", help="chunk edge in pixels")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(handler=_cmd_timeseries)


def _cmd_timeseries(args) -> int:
    from .cli import parse_assignments

    if args.variables and not args.graph:
        raise TimeSeriesError("-P sets graph variables; it needs --graph")
    series = run_timeseries(
        args.inputs, args.out, dates=args.dates, graph=args.graph, variables=parse_assignments(args.variables),
        properties=args.properties, band=args.band, max_invalid_fraction=args.max_invalid_fraction,
        cloud_threshold=args.cloud_threshold, max_degree=args.max_degree, selection=args.selection,
        overwrite=args.overwrite, tile_size=args.tile_size, progress=sys.stderr.isatty(),
    )
    print(format_summary(series))
    for path in series.outputs:
        print(f"wrote {path}")
    return 0
