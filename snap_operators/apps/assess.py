"""Accuracy assessment of a class map against a reference raster or vector file.

The confusion matrix is accumulated window by window (memory bounded by the
window, not the scene). Rows are reference classes, columns the classified
ids (0 = Unclassified counts as a prediction, so unclassified reference
pixels lower the producer's accuracy); no-data (255) and unlabelled reference
pixels are left out. Masked pixels (254: cloud, cloud shadow or snow, not
observed) are not scored either: their count is reported
(``masked_pixels``).

Example
-------
>>> import numpy as np
>>> m = confusion_matrix(np.array([1, 1, 2, 2]), np.array([1, 2, 2, 2]), labels=[1, 2])
>>> m.tolist()
[[1, 1], [0, 2]]
>>> float(round(accuracy_metrics(m, [1, 2])["overall_accuracy"], 2))
0.75
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..core.errors import SnapPcError
from ..core.legend import CLASS_NAMES, MASKED, NO_DATA, UNCLASSIFIED
from ..core.outputs import save_figure, stage_figure, stage_text, staged_outputs
from ..io.reference import class_groups, mapping_record, parse_mapping, reference_reader
from ..science.sampling import LEVEL, clustered_mcnemar_p, mcnemar_p, ratio_interval

log = logging.getLogger(__name__)

#: Rows of pixels per window when accumulating the matrix.
WINDOW_ROWS = 1024


def count_rows(acc: dict[tuple[int, ...], int], *columns: np.ndarray) -> None:
    """Count the rows of integer `columns` (one value per pixel each) into `acc`, by row.

    The rows are numbered as one int64 each, so one sort of a 1-D array counts them (a sort of
    rows, ``np.unique(axis=1)``, is several times slower on a window of millions of pixels).

    >>> acc = {}
    >>> count_rows(acc, np.array([3, 3, 1]), np.array([2, 2, 0])); acc
    {(1, 0): 1, (3, 2): 2}
    """
    cols = [np.asarray(c, dtype=np.int64).ravel() for c in columns]
    if not cols[0].size:
        return
    lows = [int(c.min()) for c in cols]
    spans = [int(c.max()) - low + 1 for c, low in zip(cols, lows)]
    if math.prod(spans) < 2 ** 62:
        key = np.zeros(cols[0].size, dtype=np.int64)
        for c, low, span in zip(cols, lows, spans):
            key = key * span + (c - low)
        keys, counts = np.unique(key, return_counts=True)
        rows = []
        for low, span in zip(reversed(lows), reversed(spans)):
            keys, digit = np.divmod(keys, span)
            rows.append(digit + low)
        rows = np.stack(rows[::-1])
    else:
        rows, counts = np.unique(np.stack(cols), axis=1, return_counts=True)
    for row, n in zip(rows.T.tolist(), counts.tolist()):
        acc[tuple(row)] = acc.get(tuple(row), 0) + n


def pair_labels(*accs: dict[tuple[int, int], int]) -> list[int]:
    """Every class of the pair counts `accs`, sorted, unclassified predictions last."""
    labels = sorted({k for acc in accs for pair in acc for k in pair})
    if UNCLASSIFIED in labels:
        labels.remove(UNCLASSIFIED)
        labels.append(UNCLASSIFIED)
    return labels


def pair_matrix(acc: dict[tuple[int, int], int], labels: Sequence[int]) -> np.ndarray:
    """The confusion matrix ``m[i, j]`` (reference ``labels[i]``, class ``labels[j]``) of pair counts."""
    idx = {v: i for i, v in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for (r, c), n in acc.items():
        m[idx[r], idx[c]] += n
    return m


def scored_reference(reference: np.ndarray) -> np.ndarray:
    """Where `reference` (class ids, as read and mapped) is scored: labelled (> 0), and neither
    masked (254) nor no-data (255), the class maps' own codes, which a reference made from a class
    map holds, as does one whose no-data 255 its file does not declare.

    >>> scored_reference(np.array([0, 3, 254, 255, -1])).tolist()
    [False, True, False, False, False]
    """
    return (reference > 0) & (reference != MASKED) & (reference != NO_DATA)


def warn_foreign_reference(acc: Mapping[tuple[int, int], int], legend: Mapping[int, str], reference, classes,
                           mapped: bool) -> None:
    """Warn of reference classes that the map's `legend` lacks and no pixel was classified as: every
    pixel of them counts as an error, which is nearly always a legend mismatch (a reference in
    another legend, unmapped; or a typo in the mapping), not the map's fault."""
    predicted = {c for _, c in acc}
    foreign: dict[int, int] = {}
    for (r, c), n in acc.items():
        if r not in legend and r not in predicted:
            foreign[r] = foreign.get(r, 0) + n
    if not foreign:
        return
    listed = ", ".join(f"{r} ({foreign[r]} px)" for r in sorted(foreign))
    if mapped:
        log.warning("--mapping maps reference codes to class(es) %s, which class map %s neither has in its legend "
                    "nor gives any pixel: its reference pixels all count as errors", listed, classes)
    else:
        log.warning("reference %s holds code(s) %s, which class map %s neither has in its legend (%s) nor gives any "
                    "pixel: they all count as errors; a reference in another legend needs --mapping CODE:ID pairs "
                    "(codes not mapped are left out)", reference, listed, classes,
                    ", ".join(f"{k} {v}" for k, v in sorted(legend.items())))


@dataclass
class SamePixels:
    """What :func:`count_on_same_pixels` counts, per map."""

    #: ``{(reference class, map class): pixels}``.
    pairs: dict[str, dict[tuple[int, int], int]]
    #: Reference pixels masked (254) in some map: scored in none.
    masked: int
    #: Per map but the one compared against: ``[right in it only, right in against only]``.
    discordant: dict[str, list[int]]
    #: Per map, ``{(unit, reference class, map class): pixels}`` (:func:`unit_scores` reads them).
    unit_pairs: dict[str, dict[tuple[int, int, int], int]]
    #: As `discordant`, per unit: ``{unit: [right in it only, right in against only]}``.
    unit_discordant: dict[str, dict[int, list[int]]]
    #: What the units are (``polygons``, ``points``, ``regions``...).
    unit_kind: str | None = None
    #: The share of the grid's pixels the reference labels (masked ones included).
    coverage: float = 0.0


def count_on_same_pixels(read_reference: Callable, readers: Mapping[str, Callable], shape: tuple[int, int],
                         against: str | None = None, rows: int = WINDOW_ROWS,
                         groups: Mapping[int, Sequence[int]] | None = None) -> SamePixels:
    """Pair counts of several class maps against one reference, on the pixels every map sees, in all
    and per sampling unit of the reference (polygon, point, raster region), for intervals and tests
    that take the units, not the pixels, as the sample (:func:`unit_scores`).

    Window by window (`rows` rows of the grid of `shape`): a pixel counts where the reference
    labels it (:func:`scored_reference`) and no map is without data (255) there; pixels masked
    (254: cloud, cloud shadow, snow) in any map are counted apart and scored in none.

    Parameters
    ----------
    read_reference : ReferenceReader
        The reference's class ids and units (:func:`reference_reader`).
    readers : dict of str to callable
        ``read(window) -> array`` of each map's classes, 255 where it has no data.
    shape : (int, int)
        Rows and columns of the grid.
    against : str, optional
        A name of `readers`: every other map is compared with it pixel by pixel (McNemar's test).
    groups : dict of int to sequence of int, optional
        Classes scored as one (:func:`snap_operators.io.reference.class_groups`): each map's
        classes of a group read as the group's id, the class the reference's code was mapped to.

    Returns
    -------
    SamePixels
    """
    from rasterio.windows import Window

    height, width = shape
    unit_pairs: dict[str, dict[tuple[int, int, int], int]] = {name: {} for name in readers}
    unit_discordant: dict[str, dict[int, list[int]]] = {
        name: {} for name in readers if against is not None and name != against}
    masked = labelled = 0
    for row0 in range(0, height, rows):
        win = Window(0, row0, width, min(rows, height - row0))
        ref, unit = read_reference.with_units(win)
        blocks = {name: merge_groups(read(win), groups) for name, read in readers.items()}
        valid = scored_reference(ref)
        for block in blocks.values():
            valid &= block != NO_DATA
        is_masked = valid & np.logical_or.reduce([block == MASKED for block in blocks.values()])
        masked += int(is_masked.sum())
        labelled += int(valid.sum())
        valid &= ~is_masked
        ref, unit = ref[valid], unit[valid]
        for name, block in blocks.items():
            count_rows(unit_pairs[name], unit, ref, block[valid])
        if unit_discordant:
            right_against = blocks[against][valid] == ref
            for name, per_unit in unit_discordant.items():
                right = blocks[name][valid] == ref
                for k, where in enumerate((right & ~right_against, ~right & right_against)):
                    for u, n in zip(*np.unique(unit[where], return_counts=True)):
                        per_unit.setdefault(int(u), [0, 0])[k] += int(n)
    # a raster's regions that the windows cut apart, whole again
    unit_of = read_reference.unit
    unit_pairs = {name: _merged(((unit_of(u), r, c), n) for (u, r, c), n in acc.items())
                  for name, acc in unit_pairs.items()}
    unit_discordant = {name: _merged((unit_of(u), counts) for u, counts in acc.items())
                       for name, acc in unit_discordant.items()}
    # the totals over the units
    pairs = {name: _merged(((r, c), n) for (_, r, c), n in acc.items()) for name, acc in unit_pairs.items()}
    discordant = {name: [sum(c[k] for c in acc.values()) for k in (0, 1)] for name, acc in unit_discordant.items()}
    return SamePixels(pairs, masked, discordant, unit_pairs, unit_discordant, read_reference.unit_kind,
                      labelled / (height * width) if height * width else 0.0)


def merge_groups(block: np.ndarray, groups: Mapping[int, Sequence[int]] | None) -> np.ndarray:
    """A class map's `block` with the classes of each group as the group's id (its key).

    >>> merge_groups(np.array([1, 3, 4, 255]), {2: (2, 3, 4, 5)}).tolist()
    [1, 2, 2, 255]
    """
    for gid, members in (groups or {}).items():
        block = np.where(np.isin(block, members), gid, block)
    return block


def group_names(groups: Mapping[int, Sequence[int]]) -> dict[int, str]:
    """Names of class groups for reports, by the group's id: the classes any of which is right.

    >>> group_names({2: (2, 3, 4, 5)})
    {2: 'any of 2+3+4+5'}
    """
    return {gid: "any of " + "+".join(map(str, members)) for gid, members in groups.items()}


def _merged(items) -> dict:
    """``{key: value}`` of ``(key, value)`` items, values of one key summed (numbers, or lists of numbers)."""
    out: dict = {}
    for key, value in items:
        if key not in out:
            out[key] = list(value) if isinstance(value, list) else value
        elif isinstance(value, list):
            out[key] = [a + b for a, b in zip(out[key], value)]
        else:
            out[key] += value
    return out


def unit_scores(unit_pairs: Mapping[tuple[int, int, int], int], labels: Sequence[int], level: float = LEVEL,
                design_effect: float | None = None) -> dict:
    """Overall, producer's and user's accuracy of one map as estimates over the reference's sampling
    units, with their intervals (:func:`snap_operators.science.sampling.ratio_interval`).

    A class's figure that is all right (or all wrong), whose design effect cannot be measured,
    takes the overall accuracy's; an overall accuracy of 1 (or 0) takes `design_effect`.

    Parameters
    ----------
    unit_pairs : dict
        ``{(unit, reference class, map class): pixels}`` (:func:`count_on_same_pixels` with units).
    labels : sequence of int
        The classes to give producer's and user's accuracy of.
    design_effect : float, optional
        Measured on the same units for another map (:func:`add_intervals`).

    Returns
    -------
    dict
        ``{"units", "overall_accuracy": interval, "per_class": {class: {"producers_accuracy":
        interval, "users_accuracy": interval}}}``, each interval as ``ratio_interval`` gives it.

    Examples
    --------
    Two polygons of water (1), one of them half called trees (3):

    >>> s = unit_scores({(1, 1, 1): 10, (2, 1, 1): 5, (2, 1, 3): 5}, [1, 3])
    >>> s["units"], s["overall_accuracy"]["estimate"], s["per_class"][3]["users_accuracy"]["estimate"]
    (2, 0.75, 0.0)
    """
    keys = np.array(list(unit_pairs), dtype=np.int64).reshape(-1, 3)
    n = np.array(list(unit_pairs.values()), dtype=np.float64)
    ids, unit = np.unique(keys[:, 0], return_inverse=True)
    ref, cls = keys[:, 1], keys[:, 2]

    def per_unit(weights):
        return np.bincount(unit, weights=weights, minlength=ids.size)

    right = n * (ref == cls)
    oa = ratio_interval(per_unit(right), per_unit(n), level, design_effect)
    deff = oa["design_effect"] or design_effect
    out = {"units": int(ids.size), "overall_accuracy": oa, "per_class": {}}
    for k in labels:
        out["per_class"][int(k)] = {
            "producers_accuracy": ratio_interval(per_unit(right * (ref == k)), per_unit(n * (ref == k)), level, deff),
            "users_accuracy": ratio_interval(per_unit(right * (cls == k)), per_unit(n * (cls == k)), level, deff)}
    return out


def unit_scores_alike(unit_pairs: Mapping[str, Mapping[tuple[int, int, int], int]],
                      labels: Mapping[str, Sequence[int]], level: float = LEVEL) -> dict[str, dict]:
    """:func:`unit_scores` of several maps scored on the same pixels, by name: a map with every pixel
    right (or every one wrong), whose design effect cannot be measured, takes that of the first map
    whose was, measured on the same units.

    Examples
    --------
    >>> pairs = {"a": {(1, 1, 1): 10, (2, 1, 1): 5, (2, 1, 3): 5}, "b": {(1, 1, 1): 10, (2, 1, 1): 10}}
    >>> s = unit_scores_alike(pairs, {"a": [], "b": []})
    >>> s["b"]["overall_accuracy"]["design_effect"] is None, s["b"]["overall_accuracy"]["effective_size"] > 2
    (True, True)
    """
    scores = {name: unit_scores(unit_pairs[name], classes, level) for name, classes in labels.items()}
    measured = [s["overall_accuracy"]["design_effect"] for s in scores.values() if s["overall_accuracy"]["design_effect"]]
    for name, s in scores.items():
        if measured and not s["overall_accuracy"]["design_effect"]:
            scores[name] = unit_scores(unit_pairs[name], labels[name], level, measured[0])
    return scores


def confusion_matrix(reference: np.ndarray, classified: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Counts ``m[i, j]`` of pixels with reference ``labels[i]`` classified as ``labels[j]``.

    Pixels whose reference or class is not in `labels` are ignored.
    """
    labels = np.asarray(labels)
    lut = np.full(256 if max(labels.max(), 0) < 256 else int(labels.max()) + 1, -1, dtype=np.int64)
    lut[labels] = np.arange(len(labels))
    ref = np.asarray(reference).ravel().astype(np.int64)
    cls = np.asarray(classified).ravel().astype(np.int64)
    ok = (ref >= 0) & (ref < lut.size) & (cls >= 0) & (cls < lut.size)
    ri = lut[ref[ok]]
    ci = lut[cls[ok]]
    keep = (ri >= 0) & (ci >= 0)
    n = len(labels)
    return np.bincount(ri[keep] * n + ci[keep], minlength=n * n).reshape(n, n)


def accuracy_metrics(matrix: np.ndarray, labels: Sequence[int], names: Mapping[int, str] | None = None) -> dict:
    """Overall accuracy, Cohen's kappa and per-class PA, UA, F1, IoU.

    Classes with no reference pixels get ``None`` for PA/F1/IoU. Each class is named (``class_name``)
    as `names` names it, else as the legend does (0: Unclassified).
    """
    m = np.asarray(matrix, dtype=np.float64)
    total = m.sum()
    if total == 0:
        raise SnapPcError("no pixel is labelled in both the class map and the reference (check extents, CRS and --mapping)")
    diag = np.diag(m)
    rows = m.sum(axis=1)
    cols = m.sum(axis=0)
    po = diag.sum() / total
    pe = (rows * cols).sum() / total**2
    kappa = (po - pe) / (1 - pe) if pe < 1 else 1.0
    names = {UNCLASSIFIED: "Unclassified", **CLASS_NAMES, **(names or {})}  # the legend's, unless named
    per_class = []
    for k, label in enumerate(labels):
        tp = diag[k]
        pa = tp / rows[k] if rows[k] else None
        ua = tp / cols[k] if cols[k] else None
        f1 = (2 * pa * ua / (pa + ua)) if pa and ua else (0.0 if rows[k] else None)
        denom = rows[k] + cols[k] - tp
        iou = tp / denom if rows[k] else None
        per_class.append(
            {
                "class_id": int(label),
                "class_name": names.get(int(label), str(label)),
                "reference_pixels": int(rows[k]),
                "classified_pixels": int(cols[k]),
                "producers_accuracy": pa,
                "users_accuracy": ua,
                "f1": f1,
                "iou": iou,
            }
        )
    return {"overall_accuracy": po, "kappa": kappa, "pixels": int(total), "per_class": per_class}


#: How the reports introduce McNemar's test.
MCNEMAR_TITLE = "McNemar test of the difference"


def add_intervals(maps: Mapping[str, dict], unit_pairs: Mapping[str, Mapping[tuple[int, int, int], int]],
                  unit_kind: str | None, level: float = LEVEL, coverage: float | None = None) -> None:
    """Add to each map's :func:`accuracy_metrics` the intervals of its figures over the reference's
    sampling units (:func:`unit_scores`): ``sampling`` (``unit_kind``, ``units``, ``level``,
    ``overall_accuracy_interval``, ``effective_size``, ``design_effect``, ``coverage``) and, per
    class, ``producers_accuracy_interval`` and ``users_accuracy_interval`` (``[low, high]``, None
    where there is no interval).

    Parameters
    ----------
    maps : dict of str to dict
        Metrics of maps scored on the same pixels, by name (:func:`unit_scores_alike`).
    unit_pairs : dict of str to dict
        Each map's :attr:`SamePixels.unit_pairs`.
    coverage : float, optional
        The share of the map's pixels the reference labels (:attr:`SamePixels.coverage`).
    """
    scores = unit_scores_alike(unit_pairs, {name: [p["class_id"] for p in m["per_class"]] for name, m in maps.items()},
                               level)
    for name, metrics in maps.items():
        s = scores[name]
        oa = s["overall_accuracy"]
        metrics["sampling"] = {"unit_kind": unit_kind, "units": s["units"], "level": level,
                               "overall_accuracy_interval": _bounds(oa), "effective_size": oa["effective_size"],
                               "design_effect": oa["design_effect"], "coverage": coverage}
        for p in metrics["per_class"]:
            per_class = s["per_class"][p["class_id"]]
            p["producers_accuracy_interval"] = _bounds(per_class["producers_accuracy"])
            p["users_accuracy_interval"] = _bounds(per_class["users_accuracy"])


def _bounds(interval: Mapping) -> list[float] | None:
    return None if interval["low"] is None else [interval["low"], interval["high"]]


def unit_mcnemar(counts: SamePixels, name: str) -> dict:
    """McNemar's test of map `name` against the one :func:`count_on_same_pixels` compared it with, over
    the reference's units (:func:`~snap_operators.science.sampling.clustered_mcnemar_p`):
    ``{"units_p_value", "units", "unit_kind"}``, units being those with a pixel right in one map only."""
    per_unit = list(counts.unit_discordant[name].values())
    p = clustered_mcnemar_p([a for a, _ in per_unit], [b for _, b in per_unit])
    return {"units_p_value": p, "units": len(per_unit), "unit_kind": counts.unit_kind}


def mcnemar_text(test: Mapping, right_here: int, right_there: int) -> str:
    """``"..., p = 0.0004; over the 19 polygons (..., clustered): p = 0.04"``: the p-values of a McNemar
    result (``p_value``, and ``units_p_value`` where the reference's units are not single pixels)."""
    text = f"{format_p(test['p_value'])} with each pixel independent"
    if test.get("units_p_value") is not None and right_here + right_there > test.get("units", 0):
        text += (f"; with the {test['units']} {test.get('unit_kind') or 'units'} holding such pixels as the sample "
                 f"(Durkalski's clustered test) {format_p(test['units_p_value'])}")
    return text


def interval_text(sampling: Mapping) -> str:
    """How sure the overall accuracy is: ``"95 % interval 0.933-0.986 (19 polygons as the sample, worth
    312 independent pixels)"``, from ``metrics["sampling"]`` (:func:`add_intervals`)."""
    if sampling["overall_accuracy_interval"] is None:
        return (f"no {sampling['level']:.0%} interval: the reference is one sampling unit "
                f"({(sampling.get('unit_kind') or 'units').rstrip('s')}), which says nothing of how the accuracy "
                "varies from place to place")
    size = sampling.get("effective_size")
    kind = sampling.get("unit_kind") or "units"
    worth = f", worth {size:.0f} independent pixels" if size is not None else ""
    if (sampling.get("coverage") or 0) >= 0.5:  # a wall-to-wall reference is the scene, not a sample of it
        worth += (f"; the reference covers {sampling['coverage']:.0%} of the map, so the overall accuracy is "
                  f"the scene's own and the interval what its {kind} say of other places like them")
    return (f"{sampling['level']:.0%} interval {format_interval(sampling['overall_accuracy_interval'])} "
            f"({sampling['units']} {kind} as the sample{worth})")


def format_interval(bounds: Sequence[float] | None, digits: int = 3) -> str:
    """``"0.933-0.986"``, or ``"-"`` without an interval.

    >>> format_interval([0.93312, 0.98641]), format_interval(None)
    ('0.933-0.986', '-')
    """
    return "-" if bounds is None else f"{bounds[0]:.{digits}f}-{bounds[1]:.{digits}f}"


def format_p(p: float) -> str:
    """A p-value as the reports print it: two figures, or below 0.0001.

    >>> format_p(0.0501), format_p(1.0), format_p(3e-9)
    ('p = 0.05', 'p = 1', 'p < 0.0001')
    """
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"


def constant_map_scores(matrix: np.ndarray, labels: Sequence[int], class_id: int) -> dict:
    """Scores of a map of `class_id` everywhere, on the pixels of a confusion matrix: the trivial baseline.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(n, n)`` pixel counts, rows reference, columns map, in the order of `labels`.
    labels : sequence of int
        The classes of the rows and columns; `class_id` must be one of them.
    class_id : int
        The class the baseline map gives every pixel.

    Returns
    -------
    dict
        ``class_id``, ``overall_accuracy`` (the class's share of the reference) and ``mean_iou``
        (its IoU, that share, averaged over the classes the reference holds).

    Examples
    --------
    >>> constant_map_scores(np.array([[8, 2], [1, 9]]), [1, 3], 3)
    {'class_id': 3, 'overall_accuracy': 0.5, 'mean_iou': 0.25}
    """
    rows = np.asarray(matrix, dtype=np.float64).sum(axis=1)
    share = float(rows[list(labels).index(class_id)] / rows.sum())  # TP = its reference pixels; union = every pixel
    return {"class_id": int(class_id), "overall_accuracy": share, "mean_iou": share / int((rows > 0).sum())}


@dataclass
class Assessment:
    labels: list[int]
    matrix: np.ndarray
    metrics: dict
    #: The second map of ``assess(..., compare=)``, scored on the same pixels (its metrics are also
    #: ``metrics["compare"]``).
    compared: "Assessment | None" = None


def assess(classes_path: str | Path, reference_path: str | Path, *, field: str | None = None,
           mapping: Mapping[int, int] | Mapping[str, int] | None = None,
           names: Mapping[int, str] | None = None, compare: str | Path | None = None) -> Assessment:
    """Compare a class raster with a reference raster or vector file.

    Parameters
    ----------
    classes_path : path
        Single-band class raster (ids 0..253, 254 masked, 255 no-data).
    reference_path : path
        Reference raster (any grid/CRS: resampled onto the class grid by
        nearest neighbour) or vector file (polygons or points, rasterized onto
        the class grid with attribute `field`).
    field : str, optional
        Attribute of the vector reference holding the class code or class
        name (required for vectors).
    mapping : dict, optional
        Reference code -> class id, or (a vector attribute of names) class
        name -> class id (:func:`parse_mapping`); codes or names not mapped
        are left out. Without a mapping reference codes are used as class ids.
        A code may map to a tuple of class ids, any of which is right there
        (``{1: 1, 0: (2, 3, 4, 5)}``: a water / not-water reference): the map's
        classes of the tuple are scored as one class, named ``any of 2+3+4+5``
        (:func:`snap_operators.io.reference.class_groups`).
    compare : path, optional
        A second class raster on the same grid (the rules' map beside the network's): both are
        scored on the pixels both map (masked or without data in either, left out of both), its
        metrics under ``"compare"`` and McNemar's test of the difference under ``"mcnemar"``
        (:func:`mcnemar_p`).
    """
    import contextlib

    given = mapping
    mapping, groups = class_groups(given)
    paths = [classes_path] + ([compare] if compare is not None else [])
    with contextlib.ExitStack() as stack:
        maps = [stack.enter_context(_open_class_map(path)) for path in paths]
        cls_ds = maps[0]
        for path, ds in zip(paths[1:], maps[1:]):
            if (ds.crs, ds.transform, ds.width, ds.height) != (cls_ds.crs, cls_ds.transform, cls_ds.width,
                                                               cls_ds.height):
                raise SnapPcError(f"class map {path} is not on the grid of {classes_path}: a pixel-by-pixel "
                                  "comparison needs one grid (Collocate or Resample one onto the other)")
        ref_reader = reference_reader(reference_path, cls_ds.crs, cls_ds.transform, cls_ds.width, cls_ds.height, field,
                                      mapping=mapping)
        class_names = dict(CLASS_NAMES)
        tag = cls_ds.tags(1).get("CLASS_NAMES")
        if tag:
            try:
                class_names.update({int(k): v for k, v in json.loads(tag).items()})
            except (ValueError, AttributeError):
                pass
        class_names.update(names or {})
        class_names.update(group_names(groups))
        readers = {name: functools.partial(_class_block, ds) for name, ds in zip(("classes", "compare"), maps)}
        counts = count_on_same_pixels(ref_reader, readers, (cls_ds.height, cls_ds.width),
                                      against="compare" if compare is not None else None, groups=groups)
    acc, masked = counts.pairs["classes"], counts.masked
    if not acc:
        if masked:
            raise SnapPcError(f"every reference pixel of the class map is masked (cloud, cloud shadow, snow: "
                              f"{masked} pixels); nothing to assess")
        raise SnapPcError("no pixel is labelled in both the class map and the reference (check extents, CRS and --mapping)")
    warn_foreign_reference(acc, class_names, reference_path, classes_path, mapped=bool(mapping))
    labels, m, metrics = _map_scores(acc, class_names)
    metrics["masked_pixels"] = masked
    metrics["classes"] = str(classes_path)
    metrics["reference"] = str(reference_path)
    metrics["mapping"] = mapping_record(given)
    if groups:
        metrics["class_groups"] = {str(k): list(v) for k, v in groups.items()}
    compared = None
    if compare is not None:
        other_labels, other_m, other = _map_scores(counts.pairs["compare"], class_names)
        other.update(classes=str(compare), reference=str(reference_path), masked_pixels=masked)
        compared = Assessment(other_labels, other_m, other)
        metrics["compare"] = other
        only = counts.discordant["classes"]  # right in the class map only, in the compared map only
        metrics["mcnemar"] = {"right_only_in_classes": only[0], "right_only_in_compare": only[1],
                              "p_value": mcnemar_p(*only), **unit_mcnemar(counts, "classes")}
    add_intervals({"classes": metrics, **({"compare": compared.metrics} if compared else {})}, counts.unit_pairs,
                  counts.unit_kind, coverage=counts.coverage)
    return Assessment(labels, m, metrics, compared)


def _open_class_map(path):
    import rasterio

    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise SnapPcError(f"cannot open class map {path}: {exc}") from None
    if ds.crs is None:
        ds.close()
        raise SnapPcError(f"class map {path} has no CRS")
    return ds


def _class_block(ds, window) -> np.ndarray:
    """Band 1 of the open class map `ds` in `window`, 255 where its declared no-data is."""
    block = ds.read(1, window=window)
    return block if ds.nodata is None else np.where(block == ds.nodata, NO_DATA, block)


def _map_scores(acc: dict[tuple[int, int], int], class_names: Mapping[int, str]) -> tuple[list[int], np.ndarray, dict]:
    """``(labels, matrix, metrics)`` of one map's pair counts: :func:`accuracy_metrics` with the classes
    of the reference or the map only, and the trivial baseline (``baseline_majority``)."""
    ref_labels = {r for r, _ in acc}
    labels = pair_labels(acc)
    m = pair_matrix(acc, labels)
    metrics = accuracy_metrics(m, labels, class_names)
    metrics["per_class"] = [p for p in metrics["per_class"] if p["class_id"] in ref_labels or p["classified_pixels"]]
    metrics["labels"] = labels
    majority = labels[int(np.argmax(m.sum(axis=1)))]  # a map of the reference's most frequent class everywhere
    metrics["baseline_majority"] = {**constant_map_scores(m, labels, majority),
                                    "class_name": class_names.get(majority, str(majority))}
    return labels, m, metrics


def write_report(result: Assessment, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json``, ``confusion_matrix.csv`` and ``confusion_matrix.png`` (and, for a compared
    map, ``confusion_matrix_compare.csv`` and ``.png``), all or none."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "metrics.json", "csv": out / "confusion_matrix.csv", "png": out / "confusion_matrix.png"}
    if result.compared is not None:
        paths.update(compare_csv=out / "confusion_matrix_compare.csv", compare_png=out / "confusion_matrix_compare.png")
    inputs = [result.metrics["classes"], result.metrics["reference"]] + \
        ([result.compared.metrics["classes"]] if result.compared is not None else [])
    with staged_outputs(paths.values(), inputs, who="assess") as staged:
        stage_text(staged, paths["json"], json.dumps(result.metrics, indent=2, default=float))
        for key, r in (("", result), ("compare_", result.compared)):
            if r is not None:
                stage_text(staged, paths[key + "csv"], _confusion_csv(r))
                stage_figure(staged, confusion_figure(r), paths[key + "png"])
    return paths


def _label_names(result: Assessment) -> dict[int, str]:
    """The name of each of the matrix's classes as :func:`accuracy_metrics` named it (the map's own
    class names, class groups, else the legend's)."""
    names = {p["class_id"]: p["class_name"] for p in result.metrics["per_class"]}
    return {c: names.get(c, str(c)) for c in result.labels}


def _confusion_csv(result: Assessment) -> str:
    names = _label_names(result)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["reference \\ classified"] + [f"{c} {names[c]}" for c in result.labels])
    for c, row in zip(result.labels, result.matrix):
        w.writerow([f"{c} {names[c]}"] + [int(v) for v in row])
    return buf.getvalue()


def plot_confusion(result: Assessment, path: str | Path, subject: str | None = None) -> None:
    """Row-normalized confusion matrix heat map with counts, as PNG (:func:`confusion_figure`)."""
    save_figure(confusion_figure(result, subject), path)


def confusion_subject(result: Assessment) -> str | None:
    """``"classes.tif vs reference.gpkg"``: the files an :func:`assess` result compares; None for other results."""
    met = result.metrics
    if not met.get("classes") or not met.get("reference"):
        return None
    return f"{Path(met['classes']).name} vs {Path(met['reference']).name}"


def confusion_figure(result: Assessment, subject: str | None = None):
    """The figure of :func:`plot_confusion` (matplotlib ``Figure``).

    Parameters
    ----------
    result : Assessment
    subject : str, optional
        What was assessed, the title's first line (e.g. ``"Attention U-Net
        small, test split"``); default :func:`confusion_subject`. The
        second line gives OA (and, from :func:`assess`, its majority-class baseline), kappa and the
        pixels scored.
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = result.matrix.astype(float)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    names = _label_names(result)
    labels = [f"{c} {names[c].split('/')[0]}" for c in result.labels]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 * n + 3, 1.0 * n + 2.5), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(m[i, j])}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), labels, rotation=30, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("classified")
    ax.set_ylabel("reference")
    met = result.metrics
    base = met.get("baseline_majority")
    title = (f"OA {met['overall_accuracy']:.3f}" + (f" (one class everywhere: {base['overall_accuracy']:.3f})"
                                                     if base else "")
             + f"   kappa {met['kappa']:.3f}   ({met['pixels']} px)")
    subject = subject or confusion_subject(result)
    # wrapped to the figure: long file names, and the figures of a matrix of two classes, must not run off its edges
    title = "\n".join(textwrap.fill(line, width=int(fig.get_figwidth() * 8)) for line in (subject, title) if line)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of reference row")
    fig.tight_layout()
    return fig


def format_report(result: Assessment) -> str:
    """Plain-text summary: OA, kappa and a per-class table."""
    met = result.metrics
    lines = [f"Overall accuracy: {met['overall_accuracy']:.4f}", f"Cohen's kappa:    {met['kappa']:.4f}",
             f"Pixels assessed:  {met['pixels']}"]
    base = met.get("baseline_majority")
    if base:
        lines.insert(1, f"  baseline:       {base['overall_accuracy']:.4f} (a map of the reference's most frequent "
                        f"class everywhere: {base['class_id']} {base['class_name']})")
    sampling = met.get("sampling")
    if sampling:
        lines.insert(1 + bool(base), "  " + interval_text(sampling))
    if met.get("masked_pixels"):
        lines.append(f"Masked, not scored: {met['masked_pixels']} reference pixels (cloud, cloud shadow, snow)")
    level = f"{(sampling or {}).get('level', LEVEL):.0%}"
    lines += ["", f"{'Class ID':>8} | {'Class Name':<38} | {'PA':>6} | {'UA':>6} | {'F1':>6} | {'IoU':>6} | "
                  f"{'PA ' + level:>11} | {'UA ' + level:>11}"]

    def f(v):
        return f"{v:6.3f}" if v is not None else "     -"

    for p in met["per_class"]:
        lines.append(f"{p['class_id']:>8} | {p['class_name'][:38]:<38} | {f(p['producers_accuracy'])} | "
                     f"{f(p['users_accuracy'])} | {f(p['f1'])} | {f(p['iou'])} | "
                     f"{format_interval(p.get('producers_accuracy_interval')):>11} | "
                     f"{format_interval(p.get('users_accuracy_interval')):>11}")
    other = met.get("compare")
    if other:
        a, b = Path(met["classes"]).name, Path(other["classes"]).name
        t = met["mcnemar"]
        within = (f" ({other['sampling']['level']:.0%} interval "
                  f"{format_interval(other['sampling']['overall_accuracy_interval'])})" if other.get("sampling") else "")
        lines += ["", f"Compared on the same pixels: {b} overall accuracy {other['overall_accuracy']:.4f}{within}, kappa "
                      f"{other['kappa']:.4f} ({a} {met['overall_accuracy'] - other['overall_accuracy']:+.4f})",
                  f"{MCNEMAR_TITLE}: {a} right where {b} is wrong on {t['right_only_in_classes']} px, the reverse on "
                  f"{t['right_only_in_compare']} px: "
                  f"{mcnemar_text(t, t['right_only_in_classes'], t['right_only_in_compare'])}",
                  "", f"{'Class ID':>8} | {'Class Name':<38} | {'PA':>6} | {'PA cmp':>6} | {'UA':>6} | {'UA cmp':>6}"]
        theirs = {p["class_id"]: p for p in other["per_class"]}
        for p in met["per_class"]:
            q = theirs.get(p["class_id"], {})
            lines.append(f"{p['class_id']:>8} | {p['class_name'][:38]:<38} | {f(p['producers_accuracy'])} | "
                         f"{f(q.get('producers_accuracy'))} | {f(p['users_accuracy'])} | {f(q.get('users_accuracy'))}")
    return "\n".join(lines)


def add_command(sub) -> None:
    """Register ``snap-pc assess``."""
    p = sub.add_parser(
        "assess",
        help="accuracy of a class map against a reference raster or vector file",
        description="Confusion matrix, overall accuracy, Cohen's kappa, producer's/user's accuracy, F1 and IoU "
        "per class of a class map against a reference, with 95% intervals that take the reference's polygons "
        "(points, a raster's connected regions of one class) as the sample, not its pixels. Writes metrics.json, "
        "confusion_matrix.csv and confusion_matrix.png into --out.",
        epilog="examples: snap-pc assess classes.tif --reference LULC.tif --mapping 2:3,5:1,8:4 --out assess/; "
        "snap-pc assess classes.tif --reference flood_labels.tif --mapping 1:1,0:2+3+4+5 (water / not water); "
        "snap-pc assess --classes unet.tif --compare rules.tif --reference ref.gpkg --field class "
        "--mapping water:1,forest:3,urban:4",
    )
    p.add_argument("classes_map", nargs="?", metavar="CLASSES", help="class map (the same as --classes)")
    p.add_argument("--classes", help="class map (GeoTIFF, class ids, 255 = no-data)")
    p.add_argument("--reference", required=True, help="reference raster or vector file (GeoPackage, Shapefile, ...)")
    p.add_argument("--field", help="class attribute of a vector reference")
    p.add_argument("--mapping", help="reference code -> class id pairs, e.g. 5:1,2:3, or class name -> class id "
                   "pairs for a vector attribute of names, e.g. water:1,forest:3 (unmapped codes or names are left "
                   "out); a code any of several classes matches joins them with +, scored as one class: "
                   "1:1,0:2+3+4+5 for a water / not-water reference")
    p.add_argument("--compare", metavar="MAP", help="a second class map on the same grid (e.g. the rules' map beside "
                   "the U-Net's): both scored on the pixels both map, with McNemar's test of the difference, over the pixels and "
                   "over the reference's polygons (its confusion matrix: confusion_matrix_compare.csv/png)")
    p.add_argument("--out", help="folder for metrics.json, confusion_matrix.csv/png")
    p.set_defaults(handler=_cmd_assess)


def _cmd_assess(args) -> int:
    if (args.classes is None) == (args.classes_map is None):
        raise SnapPcError("snap-pc assess: give one class map, as CLASSES or --classes"
                          + (f" (got {args.classes_map} and {args.classes})" if args.classes else ""))
    result = assess(args.classes or args.classes_map, args.reference, field=args.field,
                    mapping=parse_mapping(args.mapping, groups=True), compare=args.compare)
    print(format_report(result))
    if args.out:
        paths = write_report(result, args.out)
        for p in paths.values():
            print(f"wrote {p}")
    return 0
