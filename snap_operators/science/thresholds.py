"""Scene-adaptive thresholds: a split of one band's histogram into two classes.

The classifier's adaptive bounds (``docs/rules.md``) take their value from
the scene: the histogram of one band over the pixels a stage may still
claim, split into two modes. Three ingredients, all from the
thresholding literature:

* the split itself: Otsu's between-class variance (Otsu 1979), Kittler
  and Illingworth's minimum error (1986), which assumes two Gaussian modes
  and, unlike Otsu, does not drift into a small mode, or the valley: the
  lowest point of the smoothed histogram between the two modes;
* a test that the histogram *has* two modes: the smoothed histogram must
  dip between the mode on each side of the split to at most half the lower
  of the two peaks (a unimodal histogram, split anywhere, has no such dip),
  and each side must hold a minimum share of the pixels. A unimodal
  histogram gives no split and the bound falls back to its fixed default;
* tiles (Martinis et al. 2009, Chini et al. 2017): the scene is cut into
  tiles, the tiles whose own histogram is bimodal are kept and the split is
  taken over their pixels only. Where one class is rare (a river in a
  forest scene), its mode is lost in the whole-scene histogram but not in
  the tiles along its banks.

All functions are plain numpy over histograms or 1-D/2-D arrays.

Example
-------
>>> import numpy as np
>>> from snap_operators.science.thresholds import split_threshold
>>> rng = np.random.default_rng(0)
>>> v = np.concatenate([rng.normal(-0.4, 0.05, 9000), rng.normal(0.5, 0.05, 1000)])
>>> s = split_threshold(v, (-1, 1), method="kittler")
>>> round(s.value, 2), s.bimodal
(0.05, True)
>>> split_threshold(rng.normal(0, 0.1, 5000), (-1, 1)).bimodal
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

METHODS = ("otsu", "kittler", "valley")
#: Largest ratio of the valley between two modes to the lower mode's peak
#: (smoothed histogram) for the modes to count as two.
MAX_VALLEY = 0.5
#: Standard deviation, in bins, of the Gaussian that smooths histograms for
#: the valley test (256 bins over -1..1: 0.016).
SMOOTH_BINS = 2.0
#: Smallest share of the pixels on either side of a split for it to count.
MIN_SHARE = 0.01
#: Tiles: smallest share of the minority side inside a tile for the tile to
#: take part (a tile mostly of one class says nothing about the split).
TILE_MIN_SHARE = 0.1
#: Tiles: fewest bimodal tiles whose union decides the split; with fewer, one
#: or two tiles would speak for the whole scene, and the whole sample does.
MIN_TILES = 4


@dataclass(frozen=True)
class Split:
    """A histogram split.

    Attributes
    ----------
    value : float
        Threshold: values below it form the low class, values at or above it
        the high class (NaN when the histogram holds fewer than two values).
    valley : float
        Height of the valley between the two modes relative to the lower
        mode's peak (smoothed histogram): 0 an empty gap, 1 no dip at all.
    low_share : float
        Share of the pixels below `value`.
    pixels : int
        Pixels in the histogram.
    bimodal : bool
        Whether the split separates two modes (valley and shares).
    tiles : int
        Tiles whose pixels made the histogram (0: the whole sample).
    mode : float
        The histogram's highest point (smoothed), NaN without values.
    """

    value: float
    valley: float
    low_share: float
    pixels: int
    bimodal: bool
    tiles: int = 0
    mode: float = math.nan


def otsu_threshold(counts: np.ndarray, edges: np.ndarray) -> float | None:
    """Otsu's threshold of a histogram.

    Parameters
    ----------
    counts : numpy.ndarray
        ``(bins,)`` pixel counts.
    edges : numpy.ndarray
        ``(bins + 1,)`` bin edges.

    Returns
    -------
    float or None
        The edge that maximizes the between-class variance (pixels below it
        form one class, pixels at or above it the other); None when fewer than
        two bins hold pixels.

    Examples
    --------
    >>> otsu_threshold(np.array([5, 0, 0, 5]), np.linspace(0, 4, 5))
    2.0
    """
    counts = np.asarray(counts, dtype=np.float64)
    if np.count_nonzero(counts) < 2:
        return None
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts)[:-1]
    total = counts.sum()
    w1 = total - w0
    s0 = np.cumsum(counts * centers)[:-1]
    m0 = np.divide(s0, w0, out=np.zeros_like(s0), where=w0 > 0)
    m1 = np.divide(s0[-1] + counts[-1] * centers[-1] - s0, w1, out=np.zeros_like(s0), where=w1 > 0)
    between = w0 * w1 * (m0 - m1) ** 2
    return _plateau_edge(between, edges, np.argmax)


def kittler_threshold(counts: np.ndarray, edges: np.ndarray) -> float | None:
    """Kittler and Illingworth's minimum-error threshold of a histogram.

    Fits a Gaussian to each side of every candidate edge and takes the edge
    that minimizes the classification error criterion
    ``J = P1 ln(s1 / P1) + P2 ln(s2 / P2)``. A small mode keeps its own
    spread instead of being absorbed by a large one, as in Otsu's method.

    Parameters, Returns
        As :func:`otsu_threshold`.

    Examples
    --------
    >>> kittler_threshold(np.array([1, 4, 1, 0, 0, 1, 2, 1]), np.linspace(0, 8, 9))
    4.0
    """
    counts = np.asarray(counts, dtype=np.float64)
    if np.count_nonzero(counts) < 2:
        return None
    centers = 0.5 * (edges[:-1] + edges[1:])
    width = float(edges[1] - edges[0])
    total = counts.sum()
    c0 = np.cumsum(counts)[:-1]
    s0 = np.cumsum(counts * centers)[:-1]
    q0 = np.cumsum(counts * centers**2)[:-1]
    c1, s1, q1 = total - c0, (counts * centers).sum() - s0, (counts * centers**2).sum() - q0
    with np.errstate(divide="ignore", invalid="ignore"):
        # Sheppard's correction: each bin is a spread of width w, not a point.
        v0 = np.maximum(q0 / c0 - (s0 / c0) ** 2, 0.0) + width**2 / 12.0
        v1 = np.maximum(q1 / c1 - (s1 / c1) ** 2, 0.0) + width**2 / 12.0
        p0, p1 = c0 / total, c1 / total
        j = p0 * (0.5 * np.log(v0) - np.log(p0)) + p1 * (0.5 * np.log(v1) - np.log(p1))
    j = np.where((c0 > 0) & (c1 > 0), j, np.inf)
    if not np.isfinite(j).any():
        return None
    return _plateau_edge(-j, edges, np.argmax)


def _plateau_edge(score: np.ndarray, edges: np.ndarray, pick) -> float:
    k = int(pick(score))
    # Ties (a plateau of empty bins between modes): take the middle of it.
    best = np.flatnonzero(score >= score[k] - abs(score[k]) * 1e-12)
    k_mid = (best[0] + best[-1]) / 2.0
    lo_edge, hi_edge = edges[int(math.floor(k_mid)) + 1], edges[int(math.ceil(k_mid)) + 1]
    return float(0.5 * (lo_edge + hi_edge))


def histogram_threshold(counts: np.ndarray, edges: np.ndarray, method: str = "otsu") -> float | None:
    """The `method` (``otsu``, ``kittler`` or ``valley``) threshold of a histogram."""
    if method == "otsu":
        return otsu_threshold(counts, edges)
    if method == "kittler":
        return kittler_threshold(counts, edges)
    if method == "valley":
        # Seeded by the minimum-error split, which finds a small mode.
        t = kittler_threshold(counts, edges)
        return None if t is None else valley(counts, edges, t)[1]
    raise ValueError(f"unknown threshold method {method!r}; known: {', '.join(METHODS)}")


def smooth_histogram(counts: np.ndarray, sigma: float = SMOOTH_BINS) -> np.ndarray:
    """`counts` convolved with a Gaussian of `sigma` bins (same length)."""
    counts = np.asarray(counts, dtype=np.float64)
    r = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return np.convolve(counts, k / k.sum(), mode="same")


def valley(counts: np.ndarray, edges: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(ratio, position)`` of the valley between the modes on each side of `threshold`.

    The modes are the highest bins of the smoothed histogram below and
    above `threshold`; the valley is its lowest bin between them (the middle
    of a flat bottom). `ratio` is the valley's height over the lower peak:
    0 for an empty gap, 1 when there is no dip.
    """
    h = smooth_histogram(counts)
    k = min(max(int(np.searchsorted(edges, threshold)) - 1, 0), h.size - 1)
    if k == 0 or k >= h.size:
        return 1.0, float(threshold)
    il = int(np.argmax(h[:k]))
    ir = k + int(np.argmax(h[k:]))
    low_peak = min(h[il], h[ir])
    if low_peak <= 0:
        return 1.0, float(threshold)
    seg = h[il : ir + 1]
    m = float(seg.min())
    flat = np.flatnonzero(seg <= m * (1 + 1e-9) + 1e-12)
    iv = il + (flat[0] + flat[-1]) / 2.0
    centers = 0.5 * (edges[:-1] + edges[1:])
    pos = float(np.interp(iv, np.arange(centers.size), centers))
    return float(m / low_peak), pos


def split_threshold(
    values: np.ndarray,
    value_range: tuple[float, float],
    *,
    method: str = "otsu",
    bins: int = 256,
    max_valley: float = MAX_VALLEY,
    min_share: float = MIN_SHARE,
) -> Split:
    """Split `values` (any shape; NaN ignored) into two modes over `value_range`.

    Parameters
    ----------
    values : numpy.ndarray
    value_range : (float, float)
        Histogram range; values outside are clipped into the end bins.
    method : {'otsu', 'kittler'}
    bins : int
    max_valley : float
        Largest valley ratio (:func:`valley`) of a bimodal split.
    min_share : float
        Share of the pixels each side needs.

    Returns
    -------
    Split
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    lo, hi = float(value_range[0]), float(value_range[1])
    v = np.clip(v, lo, hi)
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centers = 0.5 * (edges[:-1] + edges[1:])
    mode = float(centers[int(np.argmax(smooth_histogram(counts)))]) if v.size else math.nan
    found = _histogram_split(counts, edges, method, lambda t: np.count_nonzero(v < t), v.size, max_valley, min_share)
    if found is None:
        return Split(math.nan, 1.0, 0.0, int(v.size), False, mode=mode)
    t, ratio, share, bimodal = found
    return Split(t, ratio, share, int(v.size), bimodal, mode=mode)


def _histogram_split(counts, edges, method: str, below, n: int, max_valley: float, min_share: float):
    """``(threshold, valley ratio, low share, bimodal)`` of a histogram of `n` pixels, `below(t)`
    counting those under ``t``; None where the method finds no threshold. The one bimodality rule
    of :func:`split_threshold` and of each tile of :func:`tiled_split`."""
    t = histogram_threshold(counts, edges, method)
    if t is None:
        return None
    ratio = valley(counts, edges, t)[0]
    share = float(below(t)) / n
    return t, ratio, share, bool(ratio <= max_valley and min(share, 1.0 - share) >= min_share)


def tiled_split(
    blocks: Sequence[np.ndarray],
    value_range: tuple[float, float],
    tile: int,
    *,
    method: str = "otsu",
    bins: int = 256,
    max_valley: float = MAX_VALLEY,
    min_share: float = MIN_SHARE,
    tile_min_share: float = TILE_MIN_SHARE,
    min_tiles: int = MIN_TILES,
) -> Split:
    """Split over the pixels of the bimodal tiles of `blocks`.

    Every 2-D block (NaN where a pixel does not take part) is cut into
    ``tile x tile`` tiles. A tile takes part when its own split separates
    two modes (valley ratio <= `max_valley`) and its smaller side holds at
    least `tile_min_share` of its pixels. The threshold is then taken over
    the union of those tiles. With fewer than `min_tiles` such tiles, the
    split of all pixels is returned (it is bimodal only if the whole
    histogram is).

    Parameters
    ----------
    blocks : sequence of numpy.ndarray
        2-D arrays of the band (a scene sample).
    value_range, method, bins, max_valley, min_share
        As :func:`split_threshold`.
    tile : int
        Tile edge in the blocks' pixels.
    tile_min_share : float
    min_tiles : int

    Returns
    -------
    Split
        With ``tiles`` the number of tiles used.
    """
    lo, hi = float(value_range[0]), float(value_range[1])
    edges = np.histogram_bin_edges(np.empty(0), bins=bins, range=(lo, hi))
    least = max(32, tile * tile // 4)
    chosen = []
    for block in blocks:
        clipped, counts = tile_histograms(block, (lo, hi), tile, edges)
        h, w = clipped.shape
        for k, (y, x) in enumerate((y, x) for y in range(0, h, tile) for x in range(0, w, tile)):
            n = int(counts[k].sum())
            if n < least:
                continue
            part = clipped[y : y + tile, x : x + tile]
            # NaN (no value) is never below a threshold
            found = _histogram_split(counts[k], edges, method, lambda t: np.count_nonzero(part < t), n, max_valley,
                                     tile_min_share)
            if found is not None and found[-1]:
                chosen.append(part[~np.isnan(part)])
    if len(chosen) < min_tiles:
        return split_threshold(np.concatenate([b.ravel() for b in blocks]) if blocks else np.empty(0), value_range,
                               method=method, bins=bins, max_valley=max_valley, min_share=min_share)
    s = split_threshold(np.concatenate(chosen), value_range, method=method, bins=bins,
                        max_valley=max_valley, min_share=min_share)
    return Split(s.value, s.valley, s.low_share, s.pixels, s.bimodal, len(chosen), s.mode)


def tile_histograms(block: np.ndarray, value_range: tuple[float, float], tile: int,
                    edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of the ``tile x tile`` tiles of `block`, in one pass over it.

    The counts equal ``np.histogram`` of each tile's finite values clipped to
    `value_range` (a pixel in bin ``i`` when ``edges[i] <= v < edges[i + 1]``,
    the last bin closed), without a call per tile.

    Parameters
    ----------
    block : numpy.ndarray
        2-D; NaN and infinite pixels take no part.
    value_range : (float, float)
    tile : int
        Tile edge in pixels; the last row and column of tiles may be smaller.
    edges : numpy.ndarray
        ``(bins + 1,)`` bin edges over `value_range`
        (``np.histogram_bin_edges(..., range=value_range)``).

    Returns
    -------
    clipped : numpy.ndarray
        float64, `block`'s shape: the values clipped to `value_range`, NaN
        where not finite.
    counts : numpy.ndarray
        ``(tiles, bins)`` int64, tiles in row-major order.

    Examples
    --------
    >>> edges = np.histogram_bin_edges(np.empty(0), bins=2, range=(0, 1))
    >>> tile_histograms(np.array([[0.1, 0.9], [np.nan, 2.0]]), (0, 1), 1, edges)[1].tolist()
    [[1, 0], [0, 1], [0, 0], [0, 1]]
    """
    b = np.asarray(block, dtype=np.float64)
    finite = np.isfinite(b)
    clipped = np.clip(np.where(finite, b, np.nan), value_range[0], value_range[1])
    bins = len(edges) - 1
    v = clipped[finite]
    # np.histogram's binning: arithmetic, then one step down or up where the edges say so.
    index = ((v - edges[0]) * (bins / (edges[-1] - edges[0]))).astype(np.intp)
    np.minimum(index, bins - 1, out=index)
    index[v < edges[index]] -= 1
    index[(v >= edges[index + 1]) & (index != bins - 1)] += 1
    h, w = b.shape
    nx = -(-w // tile)
    tiles = (np.arange(h) // tile)[:, None] * nx + (np.arange(w) // tile)[None, :]
    n = -(-h // tile) * nx
    counts = np.bincount(tiles[finite] * bins + index, minlength=n * bins).reshape(n, bins)
    return clipped, counts
