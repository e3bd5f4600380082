"""Scene-adaptive thresholds: histogram splits, the bimodality test, tiles, and adaptive bounds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from snap_operators.core.legend import MASKED
from snap_operators.ops.progressive_classifier import classify_tile
from snap_operators.science.adaptive import (
    resolve_rules,
    scene_sample,
    thresholds_metadata,
)
from snap_operators.science.rules import RulesError, read_rule_text
from snap_operators.science.thresholds import (
    METHODS,
    kittler_threshold,
    otsu_threshold,
    Split,
    split_threshold,
    tile_histograms,
    tiled_split,
    valley,
)

RANGE = (-1.0, 1.0)


def two_modes(n_low, n_high, low=-0.4, high=0.5, sd=0.06, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(low, sd, n_low), rng.normal(high, sd, n_high)])


@pytest.mark.parametrize("method", METHODS)
def test_balanced_bimodal_histogram_splits_between_the_modes(method):
    s = split_threshold(two_modes(5000, 5000), RANGE, method=method)
    assert s.bimodal and -0.25 < s.value < 0.35
    assert s.valley < 0.05 and 0.45 < s.low_share < 0.55


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("values", [
    np.random.default_rng(1).normal(0.1, 0.15, 20000),  # one Gaussian mode
    np.random.default_rng(2).gamma(2.0, 0.1, 20000) - 0.6,  # one skewed mode
    np.random.default_rng(3).uniform(-0.5, 0.5, 20000),  # no mode at all
], ids=["gaussian", "skewed", "flat"])
def test_unimodal_histograms_give_no_split(method, values):
    s = split_threshold(values, RANGE, method=method)
    assert not s.bimodal, s


def test_a_small_mode_is_found_by_minimum_error_not_by_otsu():
    values = two_modes(98800, 1200, low=-0.4, high=0.4, sd=0.1)  # 1.2 % water
    kittler = split_threshold(values, RANGE, method="kittler")
    assert kittler.bimodal and -0.05 < kittler.value < 0.2
    otsu = split_threshold(values, RANGE, method="otsu")
    assert not otsu.bimodal and otsu.value < -0.3  # Otsu drifts into the big mode


def test_histogram_thresholds_and_the_valley():
    counts, edges = np.histogram(two_modes(3000, 1000), bins=256, range=RANGE)
    for t in (otsu_threshold(counts, edges), kittler_threshold(counts, edges)):
        ratio, position = valley(counts, edges, t)
        assert ratio < 0.05 and -0.25 < position < 0.35
    assert otsu_threshold(np.array([0, 9, 0, 0]), np.linspace(0, 1, 5)) is None
    assert kittler_threshold(np.array([0, 9, 0, 0]), np.linspace(0, 1, 5)) is None


def test_tiles_find_a_rare_class_the_whole_histogram_hides():
    # A river of 0.5 % of a 400 x 400 scene, 2 px wide: one mode lost among the land pixels.
    rng = np.random.default_rng(4)
    scene = rng.normal(-0.4, 0.12, (400, 400))
    scene[:, 199:201] = rng.normal(0.5, 0.06, (400, 2))
    whole = split_threshold(scene, RANGE, method="otsu")
    assert not whole.bimodal
    tiled = tiled_split([scene], RANGE, 8, method="otsu")
    assert tiled.bimodal and tiled.tiles >= 40 and -0.2 < tiled.value < 0.4


def test_too_few_bimodal_tiles_fall_back_to_the_whole_sample():
    scene = np.full((64, 64), -0.4) + np.random.default_rng(5).normal(0, 0.05, (64, 64))
    scene[:16, :8] = 0.5  # one bimodal tile of sixteen
    s = tiled_split([scene], RANGE, 16, method="otsu", min_tiles=4)
    assert s.tiles == 0  # the whole sample decided
    assert tiled_split([scene], RANGE, 16, method="otsu", min_tiles=1).tiles == 1


def _tiled_split_reference(blocks, value_range, tile, method, min_tiles=4):
    """tiled_split as first written: one split_threshold per tile."""
    chosen = []
    for block in blocks:
        h, w = block.shape
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                t = block[y:y + tile, x:x + tile].ravel()
                t = t[np.isfinite(t)]
                if t.size >= max(32, tile * tile // 4) and split_threshold(t, value_range, method=method,
                                                                            min_share=0.1).bimodal:
                    chosen.append(t)
    if len(chosen) < min_tiles:
        return split_threshold(np.concatenate([b.ravel() for b in blocks]), value_range, method=method)
    s = split_threshold(np.concatenate(chosen), value_range, method=method)
    return Split(s.value, s.valley, s.low_share, s.pixels, s.bimodal, len(chosen), s.mode)


_VALUES = st.one_of(st.floats(-1.5, 1.5, width=32), st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 1.0, 0.0, 0.5]))


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40), elements=_VALUES),
       st.integers(1, 16), st.sampled_from([2, 7, 64, 256]), st.sampled_from([(-1.0, 1.0), (0.0, 0.5), (-30.0, 5.0)]))
def test_tile_histograms_equal_numpy_histograms_of_each_tile(block, tile, bins, value_range):
    # Values on the edges, outside the range, NaN and infinities: the bins np.histogram gives them.
    edges = np.histogram_bin_edges(np.empty(0), bins=bins, range=value_range)
    clipped, counts = tile_histograms(block, value_range, tile, edges)
    h, w = block.shape
    k = 0
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            t = block[y:y + tile, x:x + tile].astype(np.float64).ravel()
            t = np.clip(t[np.isfinite(t)], *value_range)
            np.testing.assert_array_equal(counts[k], np.histogram(t, bins=bins, range=value_range)[0])
            k += 1
    assert k == len(counts)
    np.testing.assert_array_equal(np.isnan(clipped), ~np.isfinite(block))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(METHODS), st.sampled_from([4, 8, 16]), st.floats(0.0, 0.3))
def test_tiled_split_equals_a_split_per_tile(seed, method, tile, nan_share):
    # Scenes with a rare class in some tiles, holes and infinities, several blocks: the one-pass
    # tile histograms pick the same tiles and give the same split, field by field.
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(int(rng.integers(1, 4))):
        b = rng.normal(-0.4, 0.12, (int(rng.integers(8, 70)), int(rng.integers(8, 70))))
        b[:, int(rng.integers(0, b.shape[1])):][:, :int(rng.integers(1, 6))] = rng.normal(0.5, 0.06)
        if seed % 3:  # on the bin edges of 256 bins over -1..1, where the thresholds fall
            b = np.round(b * 128) / 128
        b[rng.random(b.shape) < nan_share] = np.nan
        b[rng.random(b.shape) < 0.01] = np.inf
        blocks.append(b.astype(np.float32 if seed % 2 else np.float64))
    for min_tiles in (1, 4):
        got = tiled_split(blocks, RANGE, tile, method=method, min_tiles=min_tiles)
        want = _tiled_split_reference(blocks, RANGE, tile, method, min_tiles=min_tiles)
        assert repr(got) == repr(want)  # repr: NaN fields compare equal


# --- adaptive bounds in rule sets -----------------------------------------------------------------

CLASSES = """classes:
  - {id: 1, name: Water, color: "#0070ff"}
  - {id: 3, name: Trees, color: "#267300"}
"""


def rules(stages: str):
    return read_rule_text(f"schema: snap-pc/rules/1\nname: t\n{CLASSES}stages:\n{stages}", "t.yaml")


ADAPTIVE = "{adaptive: {method: %s, clip: [0.0, 0.35], default: 0.1}}"


@pytest.mark.parametrize("method", METHODS)
def test_adaptive_bound_splits_a_bimodal_scene_and_records_how(method):
    x = two_modes(6000, 4000, seed=7).reshape(100, 100).astype(np.float32)
    r = rules(f"  - {{name: water, class: 1, conditions: [{{index: MNDWI, min: {ADAPTIVE % method}}}]}}\n")
    b = resolve_rules(r, {"MNDWI": x}, subsampling=1).stages[0].conditions[0].min
    assert b.note["bimodal"] and not b.note.get("fallback")
    assert b.value == pytest.approx(min(max(b.note["split"], 0.0), 0.35), abs=1e-6)
    assert 0.0 <= b.value <= 0.35
    cond = thresholds_metadata(resolve_rules(r, {"MNDWI": x}, subsampling=1)).element("stage_1").element("condition")
    assert cond.attributes["min_mode"] == "adaptive" and cond.attributes["min_method"] == method
    assert cond.attributes["min_bimodal"] is True


def test_adaptive_bound_falls_back_to_its_default_on_a_unimodal_scene():
    x = np.random.default_rng(8).normal(-0.4, 0.1, (100, 100)).astype(np.float32)
    r = rules(f"  - {{class: 1, conditions: [{{index: MNDWI, min: {ADAPTIVE % 'kittler'}}}]}}\n")
    b = resolve_rules(r, {"MNDWI": x}, subsampling=1).stages[0].conditions[0].min
    assert b.value == pytest.approx(0.1) and b.note["fallback"] and not b.note["bimodal"]


def test_adaptive_bound_is_clipped():
    x = two_modes(5000, 5000, low=0.5, high=0.9, seed=9).reshape(100, 100).astype(np.float32)
    r = rules(f"  - {{class: 1, conditions: [{{index: MNDWI, min: {ADAPTIVE % 'otsu'}}}]}}\n")
    b = resolve_rules(r, {"MNDWI": x}, subsampling=1).stages[0].conditions[0].min
    assert b.value == pytest.approx(0.35) and b.note["clipped"] and b.note["split"] > 0.6


def test_adaptive_histogram_takes_only_pixels_the_stage_may_claim():
    # Water candidates are dark (BI2 < 0.2); bright pixels with high MNDWI (snow, white roofs) must
    # not move the water split.
    rng = np.random.default_rng(10)
    mndwi = np.concatenate([rng.normal(-0.4, 0.05, 4000), rng.normal(0.6, 0.05, 3000), rng.normal(0.25, 0.03, 3000)])
    bi2 = np.concatenate([np.full(4000, 0.1), np.full(3000, 0.05), np.full(3000, 0.5)])
    r = rules(f"  - {{class: 1, conditions: [{{index: BI2, max: 0.2}}, {{index: MNDWI, min: {ADAPTIVE % 'otsu'}}}]}}\n")
    b = resolve_rules(r, {"MNDWI": mndwi.reshape(100, 100), "BI2": bi2.reshape(100, 100)}, subsampling=1)
    t = b.stages[0].conditions[1].min.value
    assert -0.3 < t < 0.35 and b.stages[0].conditions[1].min.note["pixels"] == 7000


@pytest.mark.parametrize("bad, message", [
    ("{adaptive: {method: otsu}}", "missing 'default'"),
    ("{adaptive: {method: mean, default: 0.1}}", "unknown method 'mean'"),
    ("{adaptive: {clip: [0.0, 0.2], default: 0.5}}", "0.5 is outside clip"),
    ("{adaptive: {tiles: -1, default: 0.1}}", "expected an integer in 0..4096"),
])
def test_adaptive_bound_errors(bad, message):
    with pytest.raises(RulesError, match=message):
        rules(f"  - {{class: 1, conditions: [{{index: MNDWI, min: {bad}}}]}}\n")


@pytest.mark.parametrize("preset", ["mosul-5class", "mosul-5class-s1s2", "coastal-4class"])
def test_the_pixels_a_stage_may_claim_are_what_the_stages_before_it_leave(preset):
    # Built up one stage at a time, they must be what classifying the scene with the earlier
    # (unmasked) stages leaves unclassified or no-data, among the rule set's valid pixels: with holes
    # in single bands (a stage that reads only those says no-data, and claims nothing there), in
    # every band, and a masked stage in between.
    from snap_operators.science.adaptive import _Unclaimed
    from snap_operators.science.classify import classify_numpy, nodata_mask
    from snap_operators.science.rules import load_rules

    rng = np.random.default_rng(12)
    base = load_rules(preset)
    blocks = []
    for shape in ((40, 30), (25, 25)):
        blk = {n: rng.uniform(*((-30, 5) if n.endswith("_db") else (-0.6, 0.9)), shape).astype(np.float32)
               for n in base.bands}
        for n in blk:
            blk[n][rng.random(shape) < 0.1] = np.nan
        for n in blk:
            blk[n][:3] = np.nan
        blk[base.bands[-1]][5:9] = np.nan
        blocks.append(blk)
    resolved = resolve_rules(base, {n: np.concatenate([b[n].ravel() for b in blocks])[None] for n in base.bands},
                             subsampling=1)
    unclaimed = _Unclaimed(resolved, blocks)
    tried = 0
    for k in range(len(resolved.stages)):
        done = resolved.stages[:k]
        got = unclaimed.after(done)
        for free, blk in zip(got, blocks):
            want = ~nodata_mask(blk, resolved)
            clear = tuple(s for s in done if not s.masked)
            if clear:
                cls, _ = classify_numpy(blk, resolved.replace(stages=clear))
                want &= (cls == 0) | (cls == 255)
            np.testing.assert_array_equal(free, want)
            tried += int(want.sum() < (~nodata_mask(blk, resolved)).sum())
    assert tried >= len(resolved.stages)  # earlier stages did claim pixels


def test_the_scene_sample_keeps_small_scenes_whole():
    big = np.zeros((4096, 4096), np.float32)
    assert scene_sample({"a": big}, subsampling=4).step == 4
    assert scene_sample({"a": big[:1500, :1500]}, subsampling=4).step == 1  # 2.25 Mpx: every pixel would be
    assert scene_sample({"a": big[:2100, :2100]}, subsampling=4).step == 2  # under 2**20 at step 3


# --- masked stages ----------------------------------------------------------------------------------


def test_masked_stages_claim_only_masked_pixels():
    r = rules(
        "  - {name: radar water, class: 1, masked: true, conditions: [{index: VV_db, max: -18}]}\n"
        "  - {name: water, class: 1, conditions: [{index: MNDWI, min: 0.2}]}\n"
        "  - {name: trees, class: 3, conditions: [{index: MNDWI, max: 0.2}]}\n")
    assert r.required_bands == ["MNDWI"]  # the first stage that is not masked defines no-data
    mndwi = np.array([[0.5, -0.4, -0.4, np.nan, 0.5]], np.float32)
    vv = np.array([[-9.0, -22.0, -22.0, -22.0, -22.0]], np.float32)
    mask = np.array([[0, 0, 1, 1, 1]], np.uint8)
    out = classify_tile({"MNDWI": mndwi, "VV_db": vv, "m": mask}, r, True, mask_band="m", mask_no_data=255)
    # clear: optical stages only (the dark radar pixel in column 1 stays trees); masked: radar only.
    assert out["class_id"].tolist() == [[1, 3, 1, 255, 1]]
    assert out["stage"].tolist() == [[2, 3, 1, 0, 1]]
    out = classify_tile({"MNDWI": mndwi, "VV_db": np.full_like(vv, -9.0), "m": mask}, r, False, mask_band="m",
                        mask_no_data=255)
    assert out["class_id"].tolist() == [[1, 3, MASKED, 255, MASKED]]


def test_unimodal_away_takes_the_end_of_the_clip_range_away_from_the_single_mode():
    rng = np.random.default_rng(11)
    away = "{adaptive: {method: otsu, clip: [0.0, 0.35], default: 0.05, unimodal: away}}"
    r = rules(f"  - {{class: 1, conditions: [{{index: MNDWI, min: {away}}}]}}\n")
    land = rng.normal(-0.4, 0.1, (100, 100)).astype(np.float32)  # no water: stay strict
    lake = rng.normal(0.6, 0.05, (100, 100)).astype(np.float32)  # all water: take it all
    middle = rng.normal(0.2, 0.05, (100, 100)).astype(np.float32)  # mode inside the range: the default
    got = [resolve_rules(r, {"MNDWI": x}, subsampling=1).stages[0].conditions[0].min for x in (land, lake, middle)]
    assert [b.value for b in got] == pytest.approx([0.35, 0.0, 0.05])
    assert got[0].note["fallback"] and got[0].note["mode"] < 0
    with pytest.raises(RulesError, match="'away' needs a clip range"):
        rules("  - {class: 1, conditions: [{index: MNDWI, min: {adaptive: {default: 0.1, unimodal: away}}}]}\n")


@pytest.mark.parametrize("preset", ["mosul-5class", "mosul-5class-s1s2", "coastal-4class"])
def test_preset_water_split_keeps_a_floods_turbid_water(preset):
    # A flood over a floodplain (the Brahmaputra chip of docs/accuracy.md, in shape): land at
    # MNDWI -0.2, sediment-laden water around 0.2 and clear channels at 0.85. Otsu splits the
    # two waters (above 0.3); the preset's ceiling keeps the split just above land's tail.
    from snap_operators.science.rules import load_rules

    rules = load_rules(preset)
    water = next(s for s in rules.stages if s.name == "water")
    rng = np.random.default_rng(12)
    land, turbid, clear = rng.normal(-0.2, 0.05, 4000), rng.normal(0.2, 0.04, 2500), rng.normal(0.85, 0.03, 3500)
    mndwi = np.concatenate([land, turbid, clear]).reshape(100, 100).astype(np.float32)
    bands = {"MNDWI": mndwi, "NDVI": np.full_like(mndwi, 0.05), "BI2": np.full_like(mndwi, 0.1)}
    b = next(c.min for c in resolve_rules(rules.replace(stages=(water,)), bands, subsampling=1).stages[0]
             .all_conditions() if c.band == "MNDWI")
    assert b.note["split"] > 0.3 and b.note["clipped"]
    assert (turbid >= b.value).mean() > 0.8 and (land >= b.value).mean() < 0.01
