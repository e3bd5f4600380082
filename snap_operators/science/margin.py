"""Rule margin: how far each pixel is from the thresholds that would change its class.

The Progressive Classifier's decision is crisp, but not equally sure
everywhere: a pixel whose NDVI is 0.401 against a vegetation threshold of
0.4 is claimed as firmly as one at 0.8. The *margin* measures that, as the
robustness of signal temporal logic does for a Boolean formula:

* a condition ``min <= v < max`` scores ``min((v - min) / s, (max - v) / s)``
  (positive where it holds, negative where it fails; ``s`` is the band's
  scale, below); a NaN value scores ``-inf``;
* an AND of conditions scores their minimum, an ``any`` (OR) of groups the
  maximum of the groups' scores;
* a pixel claimed by stage ``k`` has margin ``min(r_k, -r_1, ..., -r_{k-1})``:
  the distance to the nearest threshold whose crossing would either release
  it from stage ``k`` or let an earlier stage claim it. An unclassified pixel
  has ``min_j(-r_j)``, how far it is from any stage.

Every band is measured in units of its own spread in the scene, ``s`` = its
interquartile range (:func:`band_scales`), so a margin of 0.1 means "a tenth
of the scene's interquartile range of the deciding index away from a
threshold", comparable between indices (PANTEX varies over 0.01, NDVI over
0.5) and between scenes. Training the U-Net only on pixels above a margin
(``snap-pc train --margin``) keeps the rule labels the thresholds are sure of.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..core.legend import MASKED, NO_DATA
from .jit import jit, row_buffer
from .rules import Condition, RuleSet, Stage

__all__ = ["band_scales", "rule_margin", "margin_of_classes"]


def band_scales(samples: Mapping[str, np.ndarray] | list[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Robust spread of each band: its interquartile range over the finite values.

    Falls back to the standard deviation where the quartiles coincide (a band
    mostly constant) and to 1 where that is 0 too or no value is finite.

    Parameters
    ----------
    samples : dict of str to numpy.ndarray, or a list of them
        Band values (any shape), e.g. the blocks of the scene sample the
        adaptive thresholds are resolved on.

    Returns
    -------
    dict of str to float
        Positive scale per band, in the band's units.

    Examples
    --------
    >>> band_scales({"NDVI": np.array([0.0, 0.2, 0.4, 0.6, 0.8])})
    {'NDVI': 0.4}
    """
    blocks = [samples] if isinstance(samples, Mapping) else list(samples)
    out = {}
    for name in blocks[0]:
        v = np.concatenate([np.asarray(b[name], dtype=np.float64).ravel() for b in blocks])
        v = v[np.isfinite(v)]
        scale = 0.0
        if v.size:
            q1, q3 = np.percentile(v, [25, 75])
            scale = float(q3 - q1) or float(v.std())
        out[name] = round(scale, 12) if scale > 0 and np.isfinite(scale) else 1.0
    return out


def _condition_score(c: Condition, a: np.ndarray, scale: float) -> np.ndarray:
    # float32 bands (every product's) stay float32: a margin needs no more, and half the memory
    # traffic of float64. Float64 bands are classified in float64, so their distances are taken
    # in float64 too (rounded to float32 once, at the end): a value within a float32 step of a
    # threshold would otherwise get a margin larger than its real distance.
    a = _score_dtype(a)
    dt = a.dtype.type
    r = None
    for side, bound in c.bounds():
        t = dt(bound.value)
        d = (a - t) if side == "min" else (t - a)
        d *= dt(1.0 / scale)
        r = d if r is None else np.minimum(r, d, out=r)
    if r is None:
        return np.full(a.shape, np.inf, np.float32)
    r[np.isnan(r)] = -np.inf  # NaN value or NaN threshold: the condition never holds
    return r.astype(np.float32, copy=False)


def _score_dtype(a) -> np.ndarray:
    """`a` as the float type its distances are taken in: float64 stays, anything else is float32."""
    a = np.asarray(a)
    return a.astype(np.float64 if a.dtype == np.float64 else np.float32, copy=False)


def _all_of(conditions, bands, scales, shape) -> np.ndarray:
    r = np.full(shape, np.inf, np.float32)
    for c in conditions:
        np.minimum(r, _condition_score(c, bands[c.band], scales[c.band]), out=r)
    return r


def _stage_score(s: Stage, all_of) -> np.ndarray:
    """Stage `s`'s score: its ANDed conditions' with the best of its ``any`` groups'.

    ``all_of(conditions, slot)`` scores an AND of conditions as a float32 array; `slot` (0 the
    stage's own conditions, 1 its first group, 2 the others) lets it write into reused buffers.
    """
    r = all_of(s.conditions, 0)
    if s.any:
        alt = all_of(s.any[0], 1)
        for g in s.any[1:]:
            np.maximum(alt, all_of(g, 2), out=alt)
        np.minimum(r, alt, out=r)
    return r


# --------------------------------------------------------------------------
# numba kernels: the same arithmetic as the numpy functions above, in one pass
# per condition and one per stage, without temporaries (the numpy version
# makes about ten full-tile arrays per condition; through the inference
# graph, where the margin is on by default, it cost 30 x the classification)
# --------------------------------------------------------------------------
@jit
def _min_condition(r, a, stride, lo, hi, has_lo, has_hi, inv, first):
    # r = minimum(r, score) (the score itself when `first`), the score as _condition_score takes
    # it: in a's type, NaN -> -inf, rounded to float32; minimum as numpy's (the second operand
    # where equal). `a` is the band as a 1-D buffer with rows `stride` apart (row_buffer):
    # views into larger arrays are read with contiguous loads, without a copy.
    neg = np.float32(-np.inf)
    for i in range(r.shape[0]):
        row = a[i * stride:i * stride + r.shape[1]]
        for j in range(r.shape[1]):
            v = row[j]
            if has_lo:
                d = (v - lo) * inv
                if has_hi:
                    e = (hi - v) * inv
                    if e != e or (d == d and not d < e):  # numpy's minimum: NaN from either side
                        d = e
            else:
                d = (hi - v) * inv
            x = neg if d != d else np.float32(d)
            if first or not r[i, j] < x:
                r[i, j] = x


@jit
def _settle_stage(out, earlier, r, stage, k):
    # Pixels of stage k take min(r, earlier); every pixel's earlier takes min(earlier, -r).
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            x = r[i, j]
            e = earlier[i, j]
            if stage[i, j] == k:
                out[i, j] = x if x < e else e
            n = -x
            earlier[i, j] = e if e < n else n


@jit
def _finish(out, earlier, stage):
    # Unclaimed pixels take earlier; every margin is clipped at 0 (boundary pixels may score -0).
    zero = np.float32(0.0)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            x = earlier[i, j] if stage[i, j] == 0 else out[i, j]
            out[i, j] = x if (x > zero or x != x) else zero


def _all_of_numba(conditions, bands, scales, r: np.ndarray) -> np.ndarray:
    """:func:`_all_of` written into `r` (a float32 buffer of the tile's shape)."""
    first = True
    for c in conditions:
        lo, hi = c.min, c.max
        if lo is None and hi is None:
            continue  # +inf: no bound, no change
        a = _score_dtype(bands[c.band])
        dt = a.dtype.type
        _min_condition(r, *row_buffer(a), dt(lo.value if lo is not None else 0.0),
                       dt(hi.value if hi is not None else 0.0), lo is not None, hi is not None,
                       dt(1.0 / scales[c.band]), first)
        first = False
    if first:
        r.fill(np.inf)
    return r


def rule_margin(bands: Mapping[str, np.ndarray], rules: RuleSet, stage: np.ndarray,
                scales: Mapping[str, float], *, use_numba: bool = True) -> np.ndarray:
    """Margin of each pixel's rule decision (module docstring), in band scales.

    Parameters
    ----------
    bands : dict of str to numpy.ndarray
        The bands `rules` reads, 2-D, one shape.
    rules : RuleSet
        The resolved rule set that classified them.
    stage : numpy.ndarray
        uint8, same shape: the 1-based claiming stage of `rules`
        (``classify(..., with_stage=True)``), 0 where none claimed. Pixels
        that are no-data must be marked by the caller (the result there is
        meaningless); :func:`margin_of_classes` does it.
    scales : dict of str to float
        Positive scale per band (:func:`band_scales`).
    use_numba : bool
        Compiled kernels (default) or the numpy reference: the same values.

    Returns
    -------
    numpy.ndarray
        float32, same shape, >= 0 (``inf`` where no threshold bears on the
        pixel: a catch-all stage with no earlier stage reading its bands).

    Examples
    --------
    >>> from snap_operators.science.rules import parse_rules
    >>> rules = parse_rules({"schema": "snap-pc/rules/1", "name": "x",
    ...     "classes": [{"id": 3, "name": "Trees", "color": "#267300"}],
    ...     "stages": [{"name": "trees", "class": 3, "conditions": [{"index": "NDVI", "min": 0.4}]}]})
    >>> ndvi = np.array([[0.3, 0.45, 0.8]])
    >>> m = rule_margin({"NDVI": ndvi}, rules, np.array([[0, 1, 1]], np.uint8), {"NDVI": 0.5})
    >>> m.astype(float).round(2).tolist()
    [[0.2, 0.1, 0.8]]
    """
    stage = np.asarray(stage)
    shape = stage.shape
    missing = [n for n in rules.bands if n not in scales or not scales[n] > 0]
    if missing:
        raise ValueError(f"no positive scale for band(s) {', '.join(missing)}")
    earlier = np.full(shape, np.inf, np.float32)  # min over the stages tried so far of -r_j (how far each was from claiming)
    out = np.full(shape, np.nan, np.float32)
    # Without unclaimed pixels, stages after the last claiming one bear on no margin.
    last = len(rules.stages) if (stage == 0).any() else int(stage.max(initial=0))
    if use_numba and stage.size:
        stage = np.ascontiguousarray(stage)  # a byte per pixel: cheaper copied than read strided
        buffers = [np.empty(shape, np.float32) for _ in range(3)]
        for k, s in enumerate(rules.stages[:last], start=1):
            r = _stage_score(s, lambda conditions, slot: _all_of_numba(conditions, bands, scales, buffers[slot]))
            _settle_stage(out, earlier, r, stage, k)
        _finish(out, earlier, stage)
        return out
    for k, s in enumerate(rules.stages[:last], start=1):
        r = _stage_score(s, lambda conditions, slot: _all_of(conditions, bands, scales, shape))
        claimed = stage == k
        out[claimed] = np.minimum(r[claimed], earlier[claimed])
        np.negative(r, out=r)
        np.minimum(earlier, r, out=earlier)
    none = stage == 0
    out[none] = earlier[none]
    return np.maximum(out, np.float32(0.0), out=out)  # boundary pixels (v == max) may score -0: clip


def margin_of_classes(bands: Mapping[str, np.ndarray], rules: RuleSet, class_id: np.ndarray, stage: np.ndarray,
                      scales: Mapping[str, float]) -> np.ndarray:
    """:func:`rule_margin` with NaN where `class_id` is no-data (255) or masked (254)."""
    out = rule_margin(bands, rules, stage, scales)
    out[(class_id == NO_DATA) | (class_id == MASKED)] = np.nan
    return out

