"""Classification kernels of the Progressive Classifier.

Semantics (both kernels): a pixel is **no-data** (255) when every band the
rule set reads is NaN, or when any band of the first stage's ANDed
``conditions`` is NaN. Otherwise the stages are tried in order and the first
whose conditions hold claims the pixel (class id, 1-based stage number); a
pixel no stage claims is 0 (Unclassified). A condition ``min <= v < max`` is
false for NaN ``v``, so a NaN band only stops the stages that read it.

:func:`classify` runs a numba kernel generated for the resolved rule set (one
pass, no temporaries, compiled once per rule set and cached);
:func:`classify_numpy` is the plain numpy reference with the same results.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..core.cache import LruCache
from ..core.legend import NO_DATA, UNCLASSIFIED
from .jit import row_buffer
from .rules import Condition, RuleSet, Stage

log = logging.getLogger(__name__)

__all__ = ["classify", "classify_numpy", "nodata_mask", "stage_holds", "conditions_hold", "kernel_source",
           "compile_kernel"]


def _check(bands: Mapping[str, np.ndarray], rules: RuleSet) -> list[np.ndarray]:
    if not rules.is_resolved:
        raise ValueError(f"rule set '{rules.name}' has unresolved otsu/samples thresholds; call resolve_rules first")
    missing = [n for n in rules.bands if n not in bands]
    if missing:
        raise KeyError(f"missing band(s) {', '.join(missing)}")
    arrays = [np.asarray(bands[n]) for n in rules.bands]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or len(arrays[0].shape) != 2:
        raise ValueError(f"bands must be 2-D arrays of one shape, got {sorted(shapes)}")
    return arrays


# --------------------------------------------------------------------------
# numpy reference
# --------------------------------------------------------------------------
def _isnan(a: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.floating):
        return np.isnan(a)
    return np.zeros(a.shape, dtype=bool)


def nodata_mask(bands: Mapping[str, np.ndarray], rules: RuleSet) -> np.ndarray:
    """Boolean mask of no-data pixels (see the module docstring)."""
    names = rules.bands
    all_nan = np.ones(np.shape(bands[names[0]]), dtype=bool)
    for n in names:
        all_nan &= _isnan(np.asarray(bands[n]))
    for n in rules.required_bands:
        all_nan |= _isnan(np.asarray(bands[n]))
    return all_nan


def stage_holds(stage: Stage, bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """Where every ANDed condition of `stage` and, if it has ``any`` groups, every condition of one
    of them hold (resolved bounds; False for NaN); whether earlier stages claimed the pixel aside."""
    shape = np.shape(bands[stage.all_conditions()[0].band])
    m = conditions_hold(stage.conditions, bands, shape)
    if stage.any:
        alt = np.zeros(shape, dtype=bool)
        for g in stage.any:
            alt |= conditions_hold(g, bands, shape)
        m &= alt
    return m


def conditions_hold(conditions: Sequence[Condition], bands: Mapping[str, np.ndarray], shape) -> np.ndarray:
    """Where every one of `conditions` holds (all of `shape` for none)."""
    m = np.ones(shape, dtype=bool)
    for c in conditions:
        m &= condition_holds(c, np.asarray(bands[c.band]))
    return m


def condition_holds(c: Condition, a: np.ndarray) -> np.ndarray:
    """Where ``min <= a < max`` holds (resolved bounds; False for NaN)."""
    m = np.ones(a.shape, dtype=bool)
    if c.min is not None:
        m &= a >= c.min.value
    if c.max is not None:
        m &= a < c.max.value
    return m


def classify_numpy(
    bands: Mapping[str, np.ndarray], rules: RuleSet, *, with_stage: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Reference classification with plain numpy (one temporary per condition).

    Parameters
    ----------
    bands : dict of str to numpy.ndarray
        Every band ``rules.bands`` names, 2-D arrays of one shape.
    rules : RuleSet
        A resolved rule set (all thresholds numbers).
    with_stage : bool
        Also return the 1-based number of the claiming stage (0 = none).

    Returns
    -------
    class_id : numpy.ndarray
        uint8, same shape: class ids, 0 unclassified, 255 no-data.
    stage : numpy.ndarray or None
        uint8 stage numbers when `with_stage`.
    """
    arrays = dict(zip(rules.bands, _check(bands, rules)))
    shape = next(iter(arrays.values())).shape
    out = np.full(shape, UNCLASSIFIED, dtype=np.uint8)
    stage_out = np.zeros(shape, dtype=np.uint8) if with_stage else None
    nodata = nodata_mask(arrays, rules)
    out[nodata] = NO_DATA
    free = ~nodata
    for k, s in enumerate(rules.stages, start=1):
        m = free & stage_holds(s, arrays)
        out[m] = s.class_id
        if stage_out is not None:
            stage_out[m] = k
        free &= ~m
    return out, stage_out


# --------------------------------------------------------------------------
# generated numba kernel
# --------------------------------------------------------------------------
def _bounds(rules: RuleSet) -> list[tuple[Condition, str]]:
    """Every threshold of `rules` as ``(condition, 'min' | 'max')``, in the kernel's argument order."""
    out = []
    for s in rules.stages:
        for c in list(s.conditions) + [c for g in s.any for c in g]:
            if c.min is not None:
                out.append((c, "min"))
            if c.max is not None:
                out.append((c, "max"))
    return out


def _thresholds(rules: RuleSet) -> np.ndarray:
    """The kernel's threshold argument: float64 values in :func:`_bounds` order (NaN, inf kept)."""
    return np.array([float(getattr(c, side).value) for c, side in _bounds(rules)], dtype=np.float64)


def _float32_thresholds(th: np.ndarray) -> np.ndarray:
    """Each threshold raised to the nearest float32 at or above it (NaN kept).

    For a float32 pixel ``v`` and any number ``t``, ``v >= t`` and ``v < t``
    hold exactly when they hold against that float32 (it is the smallest
    float32 ``>= t``), so float32 bands compare in float32 with the same result.
    """
    with np.errstate(over="ignore"):
        up = th.astype(np.float32)
    low = up.astype(np.float64) < th  # rounded down (NaN compares False)
    up[low] = np.nextafter(up[low], np.float32(np.inf))
    return up


def kernel_source(rules: RuleSet, *, with_stage: bool = False, parallel: bool = True) -> str:
    """Python source of the per-rule-set kernel ``kernel(out, stage, th, b0, s0, b1, s1, ...)``.

    ``b<i>`` is band i as a contiguous 1-D buffer and ``s<i>`` its row
    stride in elements (:func:`~snap_operators.science.jit.row_buffer`); ``th`` holds the thresholds
    (:func:`_thresholds`; float32 ones for float32 bands,
    :func:`_float32_thresholds`), read into locals once.

    One loop over pixels; each stage is an ``if`` whose conditions are
    evaluated left to right with short-circuit, so a pixel stops at the first
    stage that claims it and at the first failing condition. The source
    depends on the rule set's structure only, not on its threshold values:
    one compiled kernel serves every scene, however its scene-adaptive
    thresholds resolve.
    """
    names = rules.bands
    var = {n: f"v{i}" for i, n in enumerate(names)}
    bounds = _bounds(rules)
    tname: dict[tuple[int, str], str] = {}
    for k, (c, side) in enumerate(bounds):
        tname.setdefault((id(c), side), f"t{k}")

    def expr(c: Condition) -> str:
        parts = []
        if c.min is not None:
            parts.append(f"{var[c.band]} >= {tname[id(c), 'min']}")
        if c.max is not None:
            parts.append(f"{var[c.band]} < {tname[id(c), 'max']}")
        return " and ".join(parts)

    args = ", ".join(f"b{i}, s{i}" for i in range(len(names)))
    rng = "prange" if parallel else "range"
    L = [f"def kernel(out, stage, th, {args}):", "    nrows, ncols = out.shape"]
    L += [f"    t{k} = th[{k}]" for k in range(len(bounds))]
    L += [f"    for r in {rng}(nrows):"]
    for i in range(len(names)):
        # Bands come as contiguous 1-D buffers plus a row stride, so tiles that
        # are views into a larger array still compile to contiguous loads.
        L.append(f"        row{i} = b{i}[r * s{i}:r * s{i} + ncols]")
    L += ["        orow = out[r]"]
    if with_stage:
        L += ["        srow = stage[r]"]
    L += ["        for c in range(ncols):"]
    for i in range(len(names)):
        L.append(f"            v{i} = row{i}[c]")
    # No-data: a required band NaN, or every band NaN.
    nan_terms = [f"{var[n]} != {var[n]}" for n in rules.required_bands]
    all_nan = " and ".join(f"{var[n]} != {var[n]}" for n in names)
    nodata = " or ".join(nan_terms + [f"({all_nan})"])
    L.append(f"            if {nodata}:")
    L.append(f"                cls = {NO_DATA}; st = 0")
    for k, s in enumerate(rules.stages, start=1):
        terms = [expr(c) for c in s.conditions]
        if s.any:
            terms.append("(" + " or ".join("(" + " and ".join(expr(c) for c in g) + ")" for g in s.any) + ")")
        L.append(f"            elif {' and '.join(terms)}:")
        L.append(f"                cls = {s.class_id}; st = {k}")
    L.append("            else:")
    L.append(f"                cls = {UNCLASSIFIED}; st = 0")
    L.append("            orow[c] = cls")
    if with_stage:
        L.append("            srow[c] = st")
    return "\n".join(L) + "\n"


#: Compiled kernels by rule-set structure (source hash): a long session meeting
#: many rule structures keeps the most recent ones.
_KERNELS: LruCache[Callable[..., None]] = LruCache(32)
_BY_OBJECT: dict[tuple[int, bool, bool], tuple[RuleSet, Callable[..., None]]] = {}


def compile_kernel(rules: RuleSet, *, with_stage: bool = False, parallel: bool = True) -> Callable[..., None]:
    """The numba kernel for `rules` as ``kernel(out, stage, b0, s0, b1, s1, ...)`` (its thresholds bound).

    Compiled once per rule-set structure (cached by its source hash) and
    shared by rule sets that differ in threshold values only.
    """
    # Per-tile calls hand in the same RuleSet object: skip regenerating its source.
    hit = _BY_OBJECT.get((id(rules), with_stage, parallel))
    if hit is not None and hit[0] is rules:
        return hit[1]
    src = kernel_source(rules, with_stage=with_stage, parallel=parallel)
    key = hashlib.sha256(f"{parallel}\n{src}".encode()).hexdigest()

    def build() -> Callable[..., None]:
        import numba

        ns: dict[str, Any] = {"prange": numba.prange}
        exec(compile(src, f"<progressive-classifier {key[:12]}>", "exec"), ns)
        # No fastmath: it would let LLVM assume no NaNs and drop the checks.
        return numba.njit(parallel=parallel, nogil=True, boundscheck=False)(ns["kernel"])

    fn = _KERNELS.get(key, build)
    th = _thresholds(rules)
    bound = functools.partial(_run_kernel, fn, th, _float32_thresholds(th))
    _remember(rules, with_stage, parallel, bound)
    return bound


def _run_kernel(fn: Callable[..., None], th: np.ndarray, th32: np.ndarray, out: np.ndarray, stage: np.ndarray,
                *bands) -> None:
    # Float32 bands compare against float32 thresholds (same results, half the width); any other band
    # type against the float64 thresholds.
    f32 = all(b.dtype == np.float32 for b in bands[0::2])
    fn(out, stage, th32 if f32 else th, *bands)


def _remember(rules: RuleSet, with_stage: bool, parallel: bool, fn: Callable[..., None]) -> None:
    if len(_BY_OBJECT) > 64:
        _BY_OBJECT.clear()
    # The RuleSet is kept alive with its entry, so its id cannot be reused.
    _BY_OBJECT[(id(rules), with_stage, parallel)] = (rules, fn)


def classify(
    bands: Mapping[str, np.ndarray],
    rules: RuleSet,
    *,
    with_stage: bool = False,
    parallel: bool = True,
    use_numba: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Classify with the compiled kernel (numpy fallback without numba).

    Parameters
    ----------
    bands, rules, with_stage
        As in :func:`classify_numpy`.
    parallel : bool
        Spread rows over numba's threads. Use False inside a Dask task, where
        the scheduler already runs one chunk per core.
    use_numba : bool
        The compiled kernel (default) or the numpy reference (same values).

    Returns
    -------
    class_id, stage
        As :func:`classify_numpy` returns them, identical values.
    """
    if not use_numba:
        return classify_numpy(bands, rules, with_stage=with_stage)
    arrays = _check(bands, rules)
    shape = arrays[0].shape
    out = np.empty(shape, dtype=np.uint8)
    stage = np.empty(shape, dtype=np.uint8) if with_stage else np.empty((0, 0), dtype=np.uint8)
    args = []
    for a in arrays:
        args.extend(row_buffer(a if a.dtype.kind == "f" else a.astype(np.float64)))
    if shape[0] and shape[1]:
        compile_kernel(rules, with_stage=with_stage, parallel=parallel)(out, stage, *args)
    return out, (stage if with_stage else None)
