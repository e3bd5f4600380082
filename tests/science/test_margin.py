"""Rule margin: a pixel moved by less than its margin keeps its class; one moved past it does not."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from snap_operators.science.adaptive import resolve_rules, scene_sample
from snap_operators.science.classify import classify_numpy
from snap_operators.science.margin import band_scales, margin_of_classes, rule_margin
from snap_operators.science.rules import PRESETS, SCHEMA, load_rules, read_rule_text

RULES = read_rule_text(f"""schema: {SCHEMA}
name: t
classes:
  - {{id: 1, name: Water, color: "#0070ff"}}
  - {{id: 3, name: Trees, color: "#267300"}}
  - {{id: 4, name: Urban, color: "#e60000"}}
stages:
  - name: water
    class: 1
    conditions: [{{index: MNDWI, min: 0.1}}]
    any:
      - [{{index: NDVI, max: 0.2}}]
      - [{{index: BI2, max: 0.02}}]
  - name: trees
    class: 3
    conditions: [{{index: NDVI, min: 0.4, max: 0.95}}]
  - name: urban
    class: 4
    conditions: [{{index: NDBI, min: 0.0}}]
""")


def scene(names, shape=(60, 70), seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(-1, 1, shape) if n != "PANTEX" else rng.uniform(0, 0.05, shape) for n in names}


def resolved(name):
    rules = load_rules(name)
    bands = scene(rules.bands, seed=3)
    return resolve_rules(rules, bands, scene=scene_sample(bands))


RESOLVED = {name: resolved(name) for name in PRESETS}


def test_margin_is_the_distance_to_the_deciding_threshold():
    b = {"MNDWI": np.array([[0.5, 0.5, -0.5, -0.5, -0.5, 0.12]]),
         "NDVI": np.array([[0.1, 0.3, 0.5, 0.9, 0.2, 0.19]]),
         "BI2": np.array([[0.5, 0.01, 0.5, 0.5, 0.5, 0.5]]),
         "NDBI": np.array([[0.0, 0.0, 0.0, 0.0, 0.3, -0.2]])}
    cls, stage = classify_numpy(b, RULES, with_stage=True)
    assert cls.tolist() == [[1, 1, 3, 3, 4, 1]]
    m = rule_margin(b, RULES, stage, {n: 1.0 for n in RULES.bands})
    assert m.dtype == np.float32
    # water by NDVI (0.1 under 0.2); water by BI2 (0.01 under 0.02, NDVI alone fails); trees 0.1 above 0.4;
    # trees 0.05 under 0.95; urban: NDBI 0.3 but NDVI 0.2 is 0.2 from trees' 0.4; water: MNDWI 0.02 above 0.1
    np.testing.assert_allclose(m, [[0.1, 0.01, 0.1, 0.05, 0.2, 0.01]], atol=1e-6)
    half = rule_margin(b, RULES, stage, {n: 0.5 for n in RULES.bands})
    np.testing.assert_allclose(half, 2 * m, atol=1e-6)  # in units of the band scale


def test_unclassified_pixels_get_their_distance_to_every_stage():
    b = {"MNDWI": np.array([[-0.3]]), "NDVI": np.array([[0.3]]), "BI2": np.array([[0.5]]), "NDBI": np.array([[-0.05]])}
    cls, stage = classify_numpy(b, RULES, with_stage=True)
    assert cls.tolist() == [[0]]
    # urban is nearest: NDBI 0.05 under its 0
    np.testing.assert_allclose(rule_margin(b, RULES, stage, {n: 1.0 for n in RULES.bands}), [[0.05]], atol=1e-6)


def test_nan_bands_do_not_bound_a_margin_and_no_data_is_nan():
    b = {"MNDWI": np.array([[0.5, np.nan]]), "NDVI": np.array([[0.7, np.nan]]),
         "BI2": np.array([[np.nan, np.nan]]), "NDBI": np.array([[np.nan, np.nan]])}
    cls, stage = classify_numpy(b, RULES, with_stage=True)
    assert cls.tolist() == [[3, 255]]
    m = margin_of_classes(b, RULES, cls, stage, {n: 1.0 for n in RULES.bands})
    # a NaN BI2 can never make the pixel water (-inf, not 0 under its 0.02): water is 0.5 away (NDVI),
    # trees' own upper bound 0.25
    assert m[0, 0] == pytest.approx(0.25) and np.isnan(m[0, 1])


def test_margin_needs_a_scale_per_band():
    b = {n: np.zeros((1, 1)) for n in RULES.bands}
    with pytest.raises(ValueError, match="NDBI"):
        rule_margin(b, RULES, np.zeros((1, 1), np.uint8), {"MNDWI": 1.0, "NDVI": 1.0, "BI2": 1.0, "NDBI": 0.0})


@pytest.mark.parametrize("name", PRESETS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
# a float64 BI2 8e-8 under water's float32 threshold: its margin was once taken in float32, larger
# than the real distance, and a move within it changed the class
@example(seed=1149999252)
def test_moving_a_pixel_by_less_than_its_margin_keeps_its_class(name, seed):
    """The defining property, on every preset: each band moved by up to 0.95 of the margin (in its
    scale), in random directions, classifies the same; moved by 1.05 of the margin toward the
    deciding threshold of a one-condition stage, it changes."""
    rules = RESOLVED[name]
    rng = np.random.default_rng(seed)
    bands = scene(rules.bands, shape=(20, 20), seed=seed)
    scales = band_scales(bands)
    cls, stage = classify_numpy(bands, rules, with_stage=True)
    m = rule_margin(bands, rules, stage, scales).astype(np.float64)
    assert (m >= 0).all()
    finite = np.isfinite(m)
    moved = {n: a + np.where(finite, 0.95 * m * scales[n], 0) * rng.choice([-1.0, 1.0], a.shape)
             for n, a in bands.items()}
    got, _ = classify_numpy(moved, rules)
    np.testing.assert_array_equal(got[finite], cls[finite])


def test_a_move_just_past_the_margin_changes_the_class():
    b = {"MNDWI": np.array([[-0.5]]), "NDVI": np.array([[0.6]]), "BI2": np.array([[0.5]]), "NDBI": np.array([[0.3]])}
    cls, stage = classify_numpy(b, RULES, with_stage=True)
    m = float(rule_margin(b, RULES, stage, {n: 1.0 for n in RULES.bands})[0, 0])
    assert cls[0, 0] == 3 and m == pytest.approx(0.2)
    b["NDVI"] = b["NDVI"] - 1.05 * m
    assert classify_numpy(b, RULES)[0][0, 0] == 4


def test_band_scales_are_interquartile_ranges_with_fallbacks():
    v = np.linspace(0, 1, 101)
    flat = np.r_[np.zeros(90), np.ones(10)]
    s = band_scales([{"A": v[:50], "B": flat[:50], "C": np.zeros(5), "D": np.full(3, np.nan)},
                     {"A": v[50:], "B": flat[50:], "C": np.zeros(5), "D": np.full(3, np.nan)}])
    assert s["A"] == pytest.approx(0.5)          # quartiles 0.25 and 0.75
    assert s["B"] == pytest.approx(flat.std())   # quartiles coincide: the standard deviation
    assert s["C"] == 1.0 and s["D"] == 1.0       # constant, or nothing finite
    assert band_scales({"A": np.r_[v, np.nan]})["A"] == pytest.approx(0.5)  # NaN ignored


@pytest.mark.parametrize("name", ["test", *PRESETS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_compiled_margin_equals_the_numpy_reference(name, dtype, seed):
    """The numba kernels take every distance in the numpy version's types and order (float32 bands
    in float32, float64 ones in float64 rounded once), NaN and inf pixels included: the same bits."""
    rules = RULES if name == "test" else RESOLVED[name]
    rng = np.random.default_rng(seed)
    bands = {n: a.astype(dtype) for n, a in scene(rules.bands, shape=(23, 31), seed=seed).items()}
    for a in bands.values():
        a[rng.random(a.shape) < 0.05] = np.nan
        a[rng.random(a.shape) < 0.02] = rng.choice([-np.inf, np.inf])
    scales = band_scales(bands)
    cls, stage = classify_numpy(bands, rules, with_stage=True)
    compiled = rule_margin(bands, rules, stage, scales)
    np.testing.assert_array_equal(compiled, rule_margin(bands, rules, stage, scales, use_numba=False))
    # a non-contiguous window of the tile (the engine's halo-free views) gives its part of the same result
    window = {n: a[2:-3, 1:-4] for n, a in bands.items()}
    part = rule_margin(window, rules, stage[2:-3, 1:-4], scales)
    np.testing.assert_array_equal(part, compiled[2:-3, 1:-4])
    np.testing.assert_array_equal(part, rule_margin(window, rules, stage[2:-3, 1:-4], scales, use_numba=False))

