"""Rule sets: presets, validation errors (one line each), Otsu and threshold resolution."""

import json

import dask.array as da
import numpy as np
import pytest

from snap_operators.core.legend import LAND_COVER
from snap_operators.science.adaptive import resolve_rules, thresholds_metadata
from snap_operators.science.indices import INDICES
from snap_operators.science.rules import (
    PRESETS,
    SCHEMA,
    RulesError,
    check_samples,
    load_rules,
    parse_rules,
    read_rule_text,
)
from snap_operators.science.thresholds import otsu_threshold

CLASSES = """
classes:
  - {id: 1, name: Water, color: "#0070ff"}
  - {id: 3, name: Trees, color: [38, 115, 0]}
"""


def rule_text(stages: str, header: str = f"schema: {SCHEMA}\nname: t\n", classes: str = CLASSES) -> str:
    return header + classes + "stages:\n" + stages


def error_of(text: str, fmt: str = "yaml") -> str:
    with pytest.raises(RulesError) as exc:
        read_rule_text(text, "test.yaml", fmt)
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert msg.startswith("rules test.yaml:"), msg
    return msg


# --- presets -------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_read_known_bands(name):
    rules = load_rules(name)
    assert rules.name == name
    assert rules.stages and all(s.class_id in {c.value for c in rules.classes} for s in rules.stages)
    for band in rules.bands:
        assert band in INDICES, f"{name} reads {band}, which SpectralIndices does not compute"
    assert parse_rules(rules.to_dict(), name) == rules  # the schema round-trips


def test_default_preset_uses_the_project_legend():
    rules = load_rules(None)
    assert rules.name == "mosul-5class"
    assert [(c.value, c.name, tuple(c.color)) for c in rules.classes] == [
        (c.value, c.name, tuple(c.color)) for c in LAND_COVER
    ]
    assert {s.class_id for s in rules.stages} == {1, 2, 3, 4, 5}
    assert rules.required_bands == ["BI2"]


def test_rule_file_from_path_json_and_yaml(tmp_path):
    data = load_rules("mosul-5class").to_dict()
    (tmp_path / "r.json").write_text(json.dumps(data))
    (tmp_path / "r.yaml").write_text(rule_text("  - {class: 1, conditions: [{index: MNDWI, min: 0.2}]}\n"))
    assert load_rules(tmp_path / "r.json").stages == load_rules("mosul-5class").stages
    r = load_rules(str(tmp_path / "r.yaml"))
    assert r.stages[0].conditions[0].min.value == pytest.approx(0.2)
    assert r.stages[0].name == "stage 1"


# --- validation ----------------------------------------------------------------


def test_unknown_index_lists_the_known_ones():
    msg = error_of(rule_text("  - {class: 1, conditions: [{index: NDXI, min: 0}]}\n"))
    assert "unknown index 'NDXI'" in msg and "NDVI" in msg and "MNDWI" in msg and "BSI" in msg


def test_source_bands_and_free_band_names_are_accepted():
    r = read_rule_text(rule_text(
        "  - {class: 1, conditions: [{index: B8, max: 0.05}, {index: Sigma0_VV_db, max: -18}, {band: my_band, min: 1}]}\n"
    ))
    assert r.bands == ["B8", "Sigma0_VV_db", "my_band"]
    assert parse_rules(r.to_dict()) == r.replace(source="<rules>")


def test_min_above_max():
    msg = error_of(rule_text("  - {class: 1, conditions: [{index: NDVI, min: 0.5, max: 0.2}]}\n"))
    assert "min 0.5 > max 0.2" in msg


def test_stage_class_not_in_classes():
    msg = error_of(rule_text("  - {class: 4, conditions: [{index: NDVI, min: 0.5}]}\n"))
    assert "unknown class 4" in msg and "classes: 1, 3" in msg


def test_duplicate_class_ids():
    classes = "classes:\n  - {id: 1, name: A, color: '#000000'}\n  - {id: 1, name: B, color: '#ffffff'}\n"
    msg = error_of(rule_text("  - {class: 1, conditions: [{index: NDVI, min: 0.5}]}\n", classes=classes))
    assert "duplicate class id 1" in msg


@pytest.mark.parametrize("cid", [254, 255])
def test_reserved_class_ids(cid):
    classes = f"classes:\n  - {{id: {cid}, name: A, color: '#000000'}}\n"
    msg = error_of(rule_text(f"  - {{class: {cid}, conditions: [{{index: NDVI, min: 0}}]}}\n", classes=classes))
    assert "outside 1..253" in msg and "254 = masked" in msg


def test_wrong_schema_version():
    msg = error_of(rule_text("  - {class: 1, conditions: [{index: NDVI, min: 0}]}\n", header="schema: snap-pc/rules/9\nname: t\n"))
    assert "unsupported schema 'snap-pc/rules/9'" in msg and SCHEMA in msg


def test_missing_schema():
    assert "missing 'schema'" in error_of("name: t\n" + CLASSES + "stages: []\n")


def test_bad_yaml_reports_the_line():
    text = rule_text("  - {class: 1, conditions: [{index: NDVI, min: 0}]}\n  - {class: 1, conditions: [\n")
    msg = error_of(text)
    assert "bad YAML at line" in msg
    line = int(msg.split("line ")[1].split(",")[0])
    assert 9 <= line <= 11  # the unclosed flow sequence near the end


def test_bad_json_reports_the_line():
    msg = error_of('{\n  "schema": "snap-pc/rules/1",\n  "name": ,\n}', fmt="json")
    assert "bad JSON at line 3" in msg


def test_yaml_tags_are_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    text = f"schema: !!python/object/apply:os.system ['touch {marker}']\n"
    error_of(text)
    assert not marker.exists()


def test_unknown_keys_and_modes():
    assert "unknown key(s) maximum" in error_of(rule_text("  - {class: 1, conditions: [{index: NDVI, maximum: 0}]}\n"))
    assert "unknown threshold mode 'kmeans'" in error_of(rule_text("  - {class: 1, conditions: [{index: NDVI, min: {kmeans: {}}}]}\n"))
    assert "needs 'min' and/or 'max'" in error_of(rule_text("  - {class: 1, conditions: [{index: NDVI}]}\n"))
    assert "percentile" in error_of(rule_text("  - {class: 1, conditions: [{index: NDVI, min: {samples: {percentile: 120}}}]}\n"))
    assert "expected a number" in error_of(rule_text("  - {class: 1, conditions: [{index: NDVI, min: 'x'}]}\n"))


def test_samples_without_samples_file():
    r = read_rule_text(rule_text("  - {class: 1, conditions: [{index: MNDWI, min: {samples: {percentile: 5}}}]}\n"))
    assert r.needs_samples
    with pytest.raises(RulesError, match="samples thresholds need a samples file"):
        check_samples(r, None)
    check_samples(r, "samples.gpkg")  # no error


def test_unknown_preset_or_missing_file():
    with pytest.raises(RulesError, match="neither a preset .*mosul-5class.* nor an existing file"):
        load_rules("mosul-6class")


def test_nesting_limits_stop_alias_bombs():
    cond = "{index: NDVI, min: 0}"
    groups = ", ".join(["*g"] * 40)
    text = rule_text(f"  - class: 1\n    conditions: &g [{cond}]\n    any: [{groups}]\n")
    assert "more than 16 groups" in error_of(text)


# --- Otsu and resolution -------------------------------------------------------


def test_otsu_threshold_lies_between_two_modes():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(-0.4, 0.05, 6000), rng.normal(0.5, 0.08, 2000)])
    counts, edges = np.histogram(values, bins=256, range=(-1, 1))
    t = otsu_threshold(counts, edges)
    assert -0.25 < t < 0.3
    assert otsu_threshold(np.array([0, 5, 0, 0]), np.linspace(0, 1, 5)) is None


def test_otsu_bound_uses_only_pixels_still_unclassified(bimodal_scene, otsu_rules):
    x, y, group = bimodal_scene()
    rules = read_rule_text(otsu_rules)
    bands = {"NDVI": da.from_array(x, chunks=64), "NDWI": da.from_array(y, chunks=64)}
    resolved = resolve_rules(rules, bands, subsampling=1)
    t = resolved.stages[1].conditions[0].min.value
    assert 0.2 < t < 0.6, t  # between the two modes left after stage 1
    # Over all pixels Otsu would have split -0.6 from the rest instead.
    all_t = otsu_threshold(*np.histogram(x, bins=200, range=(-1, 1)))
    assert all_t < 0.0
    assert resolved.stages[0] == rules.stages[0]
    meta = thresholds_metadata(resolved)
    cond = meta.element("stage_2").element("condition")
    assert cond.attributes["min"] == pytest.approx(t) and cond.attributes["min_mode"] == "otsu"


def test_otsu_with_subsampling_is_close_and_clip_applies(bimodal_scene, otsu_rules):
    x, y, _ = bimodal_scene(400)
    bands = {"NDVI": da.from_array(x, chunks=100), "NDWI": da.from_array(y, chunks=100)}
    full = resolve_rules(read_rule_text(otsu_rules), bands, subsampling=1).stages[1].conditions[0].min.value
    sub = resolve_rules(read_rule_text(otsu_rules), bands, subsampling=4).stages[1].conditions[0].min.value
    assert abs(full - sub) < 0.05
    clipped = read_rule_text(otsu_rules.replace("{bins: 200}", "{bins: 200, clip: [0.5, 0.6]}"))
    assert resolve_rules(clipped, bands, subsampling=4).stages[1].conditions[0].min.value == pytest.approx(0.5)


def test_otsu_without_pixels_uses_default():
    x = np.full((50, 50), np.nan, np.float32)
    rules = read_rule_text(rule_text("  - {class: 1, conditions: [{index: MNDWI, min: {otsu: {default: 0.3}}}]}\n"))
    r = resolve_rules(rules, {"MNDWI": da.from_array(x, chunks=25)})
    assert r.stages[0].conditions[0].min.value == pytest.approx(0.3)


def test_otsu_range_from_data_for_unbounded_bands():
    rng = np.random.default_rng(0)
    vv = np.where(rng.random((100, 100)) < 0.3, -22.0, -9.0) + rng.normal(0, 1.0, (100, 100))
    rules = read_rule_text(rule_text("  - {class: 1, conditions: [{index: VV_db, max: {otsu: {}}}]}\n"))
    t = resolve_rules(rules, {"VV_db": da.from_array(vv.astype(np.float32), chunks=50)}, subsampling=1)
    assert -19 < t.stages[0].conditions[0].max.value < -12
