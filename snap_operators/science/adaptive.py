"""Scene-adaptive rule sets: every ``adaptive``/``otsu``/``samples`` bound resolved to a number for one scene.

Apart from the rule model (:mod:`.rules`) because resolving a stage needs
the classifier (:mod:`.classify`) to know which pixels the earlier stages
already claimed: model <- classifier <- resolution, no circle.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.product import MetadataElement
from ..core.sample import DEFAULT_MAX_BLOCKS, sample_blocks
from .classify import conditions_hold, nodata_mask, stage_holds
from .rules import (
    DEFAULT_METHOD,
    OTSU_BINS,
    SCHEMA,
    Bound,
    Condition,
    RulesError,
    RuleSet,
    SampleSet,
    Stage,
    float32_value,
    index_range,
)
from .thresholds import split_threshold, tiled_split

log = logging.getLogger(__name__)

#: Fewest pixels a scene sample keeps: decimation stops short of it, so small
#: scenes give the threshold histograms every pixel they have.
MIN_SAMPLE_PIXELS = 1 << 20

@dataclass(frozen=True)
class ThresholdSample:
    """Chunks of a scene's bands, decimated, that adaptive bounds are resolved on.

    Attributes
    ----------
    blocks : list of dict
        One ``{band: 2-D block}`` per sampled chunk.
    step : int
        Decimation step of the blocks (1: every pixel).
    """

    blocks: list[dict[str, np.ndarray]]
    step: int


def scene_sample(
    bands: Mapping[str, Any], *, subsampling: int = 4, max_blocks: int = DEFAULT_MAX_BLOCKS
) -> ThresholdSample:
    """The scene sample adaptive bounds are resolved on: chunks of `bands`.

    Parameters
    ----------
    bands : dict of str to array
        Same-grid 2-D bands (Dask or numpy), those the rules read and
        optionally a mask band.
    subsampling : int
        Largest decimation step (rows and columns) inside the chunks; smaller
        where the sample would keep fewer than ``MIN_SAMPLE_PIXELS`` pixels.
    max_blocks : int
        Chunks read at most (:func:`snap_operators.core.sample.sample_blocks`);
        numpy bands are one chunk.

    Returns
    -------
    ThresholdSample
    """
    names = list(bands)
    first = bands[names[0]]
    if all(isinstance(bands[n], np.ndarray) for n in names):
        step = _sample_step(first.size, subsampling)
        return ThresholdSample([{n: np.asarray(bands[n])[::step, ::step] for n in names}], step)
    nblocks = min(max(1, int(max_blocks)), first.npartitions)
    step = _sample_step(first.size / first.npartitions * nblocks, subsampling)
    sample = sample_blocks([bands[n] for n in names], max_blocks=max_blocks, step=step)
    return ThresholdSample([dict(zip(names, blocks)) for _, blocks in sample.blocks], step)


def _sample_step(pixels: float, largest: int) -> int:
    step = max(1, int(largest))
    while step > 1 and pixels / (step * step) < MIN_SAMPLE_PIXELS:
        step -= 1
    return step


def resolve_rules(
    rules: RuleSet,
    bands: Mapping[str, Any],
    *,
    samples: SampleSet | None = None,
    subsampling: int = 4,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
    scene: ThresholdSample | None = None,
) -> RuleSet:
    """Turn every ``adaptive``/``otsu``/``samples`` bound of `rules` into a number for one scene.

    Stage by stage: the histogram of a bound is taken over the pixels the
    stage may still claim: not no-data, unclassified by the (already
    resolved) earlier stages, and meeting the stage's other fixed conditions
    that must hold with it (its ANDed conditions and the rest of its ``any``
    group), in a sample of the scene's chunks (:func:`scene_sample`: every
    chunk of a small scene). Samples percentiles use every sample
    pixel of the class (samples are usually few; no decimation).

    Parameters
    ----------
    rules : RuleSet
    bands : dict of str to dask.array.Array or numpy.ndarray
        The bands the rules read, all on one grid.
    samples : SampleSet, optional
        Needed when the rules have ``samples`` bounds.
    subsampling : int
        Largest decimation step inside the sampled chunks (1 = every pixel).
    max_blocks : int
        Chunks of the scene sample.
    scene : ThresholdSample, optional
        A scene sample already read (:func:`scene_sample` of at least the
        rule bands); `bands` is then used for ``samples`` bounds only.

    Returns
    -------
    RuleSet
        A copy with all bounds fixed (float32-rounded numbers); adaptive
        bounds carry a ``note`` on how they were resolved.
    """
    if rules.is_resolved:
        return rules
    adaptive = [b for s in rules.stages for c in s.all_conditions() for _, b in c.bounds() if b.mode in ("adaptive", "otsu")]
    if adaptive and scene is None:
        scene = scene_sample({n: bands[n] for n in rules.bands}, subsampling=subsampling, max_blocks=max_blocks)
    stages = list(rules.stages)
    unclaimed = _Unclaimed(rules, scene.blocks) if scene is not None else None
    for k, stage in enumerate(stages):
        pending = [(c, side, b) for c in stage.all_conditions() for side, b in c.bounds() if not b.resolved]
        if not pending:
            continue
        values: dict[tuple[int, str], tuple[float, dict]] = {}
        split = [(c, side, b) for c, side, b in pending if b.mode in ("adaptive", "otsu")]
        if split:
            free = unclaimed.after(stages[:k])
            for c, side, b in split:
                peers = _peer_conditions(stage, c)
                here = ([f & conditions_hold(peers, blk, f.shape) for f, blk in zip(free, scene.blocks)]
                        if peers else free)
                values[(id(c), side)] = _adaptive_value(c.band, b, [blk[c.band] for blk in scene.blocks], here,
                                                        scene.step)
        for c, side, b in pending:
            if b.mode == "samples":
                cid = b.options.get("class", stage.class_id)
                v = _samples_value(c.band, cid, b.options["percentile"], bands[c.band], samples, rules)
                values[(id(c), side)] = (v, {})
        stages[k] = _with_values(stage, values)
        for c in stages[k].all_conditions():
            if c.min is not None and c.max is not None and c.min.value > c.max.value:
                log.warning("%s: stage '%s': resolved min %g > max %g for %s; the condition never holds",
                            rules.name, stage.name, c.min.value, c.max.value, c.band)
        log.debug("%s: stage %d '%s' resolved: %s", rules.name, k + 1, stage.name, stages[k].describe())
    return rules.replace(stages=tuple(stages))


def _with_values(stage: Stage, values: Mapping[tuple[int, str], tuple[float, dict]]) -> Stage:
    def fix(c: Condition) -> Condition:
        changes = {}
        for side, b in c.bounds():
            if not b.resolved:
                v, note = values[(id(c), side)]
                changes[side] = dataclasses.replace(b, value=float32_value(v), note=note)
        return dataclasses.replace(c, **changes)

    return dataclasses.replace(
        stage,
        conditions=tuple(fix(c) for c in stage.conditions),
        any=tuple(tuple(fix(c) for c in g) for g in stage.any),
    )


def _peer_conditions(stage: Stage, cond: Condition) -> list[Condition]:
    """The fixed conditions that must hold with `cond` for `stage` to claim a pixel: the stage's
    ANDed conditions and, for a condition of an ``any`` group, the rest of that group."""
    group = next((g for g in stage.any if any(c is cond for c in g)), ())
    peers = [c for c in (*stage.conditions, *group) if c is not cond]
    return [c for c in peers if all(b.resolved for _, b in c.bounds())]


class _Unclaimed:
    """Per sampled block, the pixels a stage may still claim: valid and claimed by none of the
    resolved stages before it. What the reference classification of those stages
    (:func:`~.classify.classify_numpy`) leaves unclassified or no-data, built up one stage at a time
    instead of classified again for every stage."""

    def __init__(self, rules: RuleSet, blocks: Sequence[Mapping[str, np.ndarray]]):
        self._blocks = [{n: np.asarray(blk[n]) for n in rules.bands} for blk in blocks]
        self._valid = [~nodata_mask(b, rules) for b in self._blocks]  # the whole rule set defines no-data
        self._claimed = [np.zeros(v.shape, dtype=bool) for v in self._valid]
        self._seen = 0

    def after(self, done: Sequence[Stage]) -> list[np.ndarray]:
        """The free pixels of each block for the stage after the resolved stages `done` (which
        extends the `done` of the previous call)."""
        for s in done[self._seen:]:
            if not s.masked:
                for claimed, b in zip(self._claimed, self._blocks):
                    claimed |= stage_holds(s, b)
        self._seen = len(done)
        # Where the earlier stages alone would say no-data (classify_numpy's 255) they claim nothing
        # here either: their required bands are the whole rule set's (the first stage that is not
        # masked), so such a pixel is not valid, and a pixel without any of their bands meets none
        # of their conditions (a stage has at least one; NaN meets none).
        return [v & ~c for v, c in zip(self._valid, self._claimed)]


def _adaptive_value(band: str, bound: Bound, blocks: Sequence[np.ndarray], free: Sequence[np.ndarray],
                    step: int) -> tuple[float, dict]:
    """The value of one adaptive (or legacy Otsu) bound, and how it was found."""
    opts = bound.options
    legacy = bound.mode == "otsu"
    method = "otsu" if legacy else opts.get("method", DEFAULT_METHOD)
    bins = int(opts.get("bins", OTSU_BINS))
    vals = [np.where(f, np.asarray(b, dtype=np.float64), np.nan) for b, f in zip(blocks, free)]

    def finite() -> np.ndarray:  # the pixels as one array, where a split needs them (tiles do not)
        return np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.empty(0)

    rng = opts.get("range") or index_range(band)
    if rng is None:  # unbounded bands (dB, ratios): the data's own range
        values = finite()
        rng = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        if rng[0] == rng[1]:
            rng = (rng[0] - 0.5, rng[1] + 0.5)
    tiles = int(opts.get("tiles", 0))
    if tiles > 0:
        split = tiled_split(vals, rng, max(4, tiles // step), method=method, bins=bins)
    else:
        split = split_threshold(finite(), rng, method=method, bins=bins)
    note: dict[str, Any] = {"method": method, "pixels": split.pixels, "split": split.value,
                            "bimodal": split.bimodal, "valley": round(split.valley, 3)}
    if tiles > 0:
        note["tiles"] = split.tiles
    default = opts.get("default", math.nan)
    clip = opts.get("clip")
    if math.isnan(split.value) or (not legacy and not split.bimodal):
        t = default
        note["fallback"] = True
        why = "no values" if math.isnan(split.value) else "no second mode"
        if opts.get("unimodal") == "away" and not math.isnan(split.mode) and not clip[0] <= split.mode <= clip[1]:
            t = clip[0] if split.mode > clip[1] else clip[1]
            note["mode"] = round(split.mode, 3)
            why += f" (its mode {split.mode:.3f} is outside {clip[0]:g}..{clip[1]:g}: the end away from it)"
        log.info("%s threshold: %s among the pixels still unclassified (%d sampled); using %s",
                 band, why, split.pixels, t)
    else:
        t = split.value
    if clip is not None and not math.isnan(t):
        c = min(max(t, clip[0]), clip[1])
        if c != t:
            note["clipped"] = True
        t = c
    return t, note


def _samples_value(band: str, class_id: int, percentile: float, array: Any, samples: SampleSet | None, rules: RuleSet) -> float:
    import dask
    import dask.array as da

    if samples is None:
        raise RulesError(f"rules {rules.source or rules.name}: samples thresholds need a samples file (samplesFile)")
    if class_id not in samples.counts:
        name = rules.class_info(class_id).name
        raise RulesError(f"samplesFile: no samples of class {class_id} ({name}) inside the image")
    arr = da.asarray(array).rechunk(samples.chunks)

    def pick(block, labels):
        v = block[labels == class_id]
        return v[~np.isnan(v)] if np.issubdtype(v.dtype, np.floating) else v

    parts = dask.compute(*[dask.delayed(pick)(arr.blocks[i, j], lab) for (i, j), lab in samples.blocks.items()])
    values = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]) if parts else np.empty(0)
    if values.size == 0:
        raise RulesError(f"samplesFile: the samples of class {class_id} hold no valid {band} value")
    return float(np.percentile(values, percentile))


def thresholds_metadata(rules: RuleSet, margin_scales: Mapping[str, float] | None = None):
    """A ``ProgressiveClassifier`` MetadataElement with the resolved thresholds per stage
    (and the band scales of the ``margin`` band, when given)."""
    root = MetadataElement(
        "ProgressiveClassifier",
        {"rules": rules.name, "source": rules.source, "schema": SCHEMA, "stages": len(rules.stages)},
    )
    if margin_scales:
        root.add_element("margin_scales", **{n: float(v) for n, v in margin_scales.items()})
    for k, s in enumerate(rules.stages, start=1):
        el = MetadataElement(f"stage_{k}", {"name": s.name, "class_id": s.class_id,
                                            "class_name": rules.class_info(s.class_id).name, "expression": s.describe()})
        root.elements.append(el)
        groups = [("all", s.conditions)] + [(f"any_{g + 1}", grp) for g, grp in enumerate(s.any)]
        for gname, conds in groups:
            for c in conds:
                attrs: dict[str, Any] = {"group": gname, "band": c.band}
                for side, b in c.bounds():
                    attrs[side] = b.value
                    attrs[f"{side}_mode"] = b.mode
                    for key, v in b.note.items():
                        attrs[f"{side}_{key}"] = v
                el.add_element("condition", **attrs)
    return root
