"""Accuracy figures as estimates from a sample of reference units, and tests of their differences.

A reference of hand-drawn polygons is a sample of places, not of pixels: the pixels of one polygon
are alike, so counting each as an independent observation makes every interval too narrow and
every p-value too small. Here the sampling unit is the polygon (a point, a connected region of one
class in a raster reference), and a map's accuracy is the ratio of two unit totals, right pixels
over scored pixels, with the variance of a ratio estimator under cluster sampling (Cochran 1977,
6.11; Stehman & Czaplewski 1998, Remote Sens. Environ. 64, 331-344). Where every unit is one pixel
this is the binomial proportion.

Example
-------
>>> iv = ratio_interval([10, 9, 10, 4], [10, 10, 10, 10])   # four polygons of 10 px, 33 px right
>>> round(iv["estimate"], 3), round(iv["low"], 2), round(iv["high"], 2), iv["units"]
(0.825, 0.29, 0.98, 4)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["clustered_mcnemar_p", "mcnemar_p", "ratio_interval"]

#: The confidence level of every interval the reports print.
LEVEL = 0.95


def ratio_interval(right, scored, level: float = LEVEL, design_effect: float | None = None) -> dict:
    """A proportion over sampling units, with its confidence interval.

    The estimate is ``sum(right) / sum(scored)``; its variance that of a ratio estimator over the
    units (units with no scored pixel are left out). The interval is Wilson's score interval on the
    effective sample size (the pixels over the design effect: the estimate's variance over that of
    as many independent pixels), adjusted to the units' degrees of freedom (Korn & Graubard 1998,
    Survey Methodology 24(2), 193-201): it stays inside [0, 1] and widens as units get fewer or
    more alike inside.

    Where every pixel is right (or every one wrong), or every unit is right in the same proportion,
    the variance is zero and says nothing of how alike a unit's pixels are: the design effect is
    then `design_effect`, one measured on the same units for another figure (the map's overall
    accuracy for a class's), else the units themselves are the sample size, as if each unit's
    pixels were all alike.

    Parameters
    ----------
    right, scored : array_like
        ``(n,)`` pixels right and pixels scored in each unit.
    level : float
        Confidence level (0.95: a 95 % interval).
    design_effect : float, optional
        The design effect to assume where it cannot be measured (above).

    Returns
    -------
    dict
        ``estimate``, ``low``, ``high`` (None with fewer than two units: no variance),
        ``units`` (units with a scored pixel), ``pixels``, ``effective_size`` (the sample size
        of independent pixels the interval is worth) and ``design_effect`` (None where it was not
        measured but assumed).

    Examples
    --------
    Every unit one pixel: the binomial proportion's Wilson interval.

    >>> iv = ratio_interval([1] * 90 + [0] * 10, [1] * 100)
    >>> round(iv["low"], 3), round(iv["high"], 3), round(iv["effective_size"])
    (0.825, 0.945, 100)
    """
    from scipy import stats

    y = np.asarray(right, dtype=np.float64)
    x = np.asarray(scored, dtype=np.float64)
    keep = x > 0
    y, x = y[keep], x[keep]
    units, pixels = int(x.size), int(x.sum())
    out = {"estimate": float(y.sum() / pixels) if pixels else None, "low": None, "high": None,
           "units": units, "pixels": pixels, "effective_size": None, "design_effect": None}
    if units < 2:
        return out
    p = out["estimate"]
    variance = units / (units - 1) * float(((y - p * x) ** 2).sum()) / pixels ** 2
    # this variance over that of as many independent pixels (whose unbiased variance is p(1-p)/(n-1))
    measured = (pixels - 1) * variance / (p * (1 - p)) if 0 < p < 1 else 0.0
    # units of one same proportion leave only rounding (1e-30), which must not pass for a measurement
    if measured > 1e-9:
        out["design_effect"] = max(measured, 1.0)
        n_eff = pixels / out["design_effect"]
    elif design_effect:
        n_eff = max(float(units), pixels / max(design_effect, 1.0))
    else:
        n_eff = float(units)
    z = float(stats.norm.ppf(0.5 + level / 2))
    n_adj = n_eff * (z / float(stats.t.ppf(0.5 + level / 2, units - 1))) ** 2
    centre = (p + z * z / (2 * n_adj)) / (1 + z * z / n_adj)
    half = z / (1 + z * z / n_adj) * math.sqrt(p * (1 - p) / n_adj + z * z / (4 * n_adj * n_adj))
    # Wilson's interval holds the estimate; the clamp keeps rounding from moving a bound past it (p = 0)
    out.update(low=min(max(0.0, centre - half), p), high=max(min(1.0, centre + half), p), effective_size=n_eff)
    return out


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided p-value of McNemar's test that two maps scored on the same pixels are equally accurate.

    The field's test for comparing classifications on one reference (Foody 2004, PE&RS 70(5)); it reads
    only the pixels one map has right and the other wrong. Exact (binomial) up to 1000 such pixels, the
    chi-square with continuity correction beyond. It takes each pixel as independent: on a reference
    of polygons, :func:`clustered_mcnemar_p` takes the polygons.

    Parameters
    ----------
    only_a, only_b : int
        Pixels right in map A only, and in map B only.

    Examples
    --------
    >>> round(mcnemar_p(9, 1), 4), mcnemar_p(3, 3), round(mcnemar_p(600, 500), 4)
    (0.0215, 1.0, 0.0028)
    """
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    if n <= 1000:
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
        return min(1.0, 2 * tail)
    chi2 = (abs(only_a - only_b) - 1) ** 2 / n
    return math.erfc(math.sqrt(chi2 / 2))


def clustered_mcnemar_p(only_a, only_b) -> float:
    """Two-sided p-value of McNemar's test over sampling units (Durkalski et al. 2003, Statistics in
    Medicine 22, 2417-2428).

    Each unit (polygon) gives the difference of its pixels right in map A only and in map B only;
    the statistic ``(sum d)^2 / sum d^2`` is chi-square with one degree of freedom when the maps
    are equally accurate. A polygon where A wins on 30 pixels then weighs as one polygon, not as 30
    independent pixels. With one discordant pixel per unit it is McNemar's chi-square.

    Parameters
    ----------
    only_a, only_b : array_like
        ``(n,)`` pixels right in map A only, and in map B only, per unit.

    Examples
    --------
    Thirty pixels for A in one polygon, two for B in two others:

    >>> round(clustered_mcnemar_p([30, 0, 0], [0, 1, 1]), 2), f"{mcnemar_p(30, 2):.1g}"
    (0.35, '2e-07')
    """
    d = np.asarray(only_a, dtype=np.float64) - np.asarray(only_b, dtype=np.float64)
    denominator = float((d * d).sum())
    if denominator == 0:
        return 1.0
    return math.erfc(math.sqrt(float(d.sum()) ** 2 / denominator / 2))
