"""`snap-pc assess`: confusion matrix and metrics against raster and vector references."""

import json
import math

import fiona
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

from snap_operators.apps.assess import (
    accuracy_metrics,
    assess,
    confusion_matrix,
)
from snap_operators.apps.cli import main
from snap_operators.core.errors import SnapPcError
from snap_operators.io.reference import parse_mapping

T = from_origin(500000, 4000000, 10, 10)


@pytest.fixture
def write_raster(write_tif):
    """``write_raster(path, arr, nodata=None)``: a one-band GeoTIFF on a 10 m UTM 38N grid."""

    def write(path, arr, nodata=None):
        return write_tif(path, [arr], crs="EPSG:32638", transform=T, nodata=nodata)

    return write


def test_metrics_by_hand():
    # reference rows x classified cols, labels 1, 2, 3
    m = np.array([[50, 5, 5], [10, 20, 10], [0, 0, 100]])
    met = accuracy_metrics(m, [1, 2, 3])
    n = 200
    po = 170 / n
    pe = (60 * 60 + 40 * 25 + 100 * 115) / n**2
    assert met["overall_accuracy"] == pytest.approx(po)
    assert met["kappa"] == pytest.approx((po - pe) / (1 - pe))
    c2 = met["per_class"][1]
    assert c2["producers_accuracy"] == pytest.approx(20 / 40)
    assert c2["users_accuracy"] == pytest.approx(20 / 25)
    assert c2["f1"] == pytest.approx(2 * 0.5 * 0.8 / 1.3)
    assert c2["iou"] == pytest.approx(20 / (40 + 25 - 20))


def test_confusion_matrix_ignores_unlisted_labels():
    ref = np.array([1, 1, 2, 3, 9])
    cls = np.array([1, 2, 2, 3, 1])
    assert confusion_matrix(ref, cls, [1, 2]).tolist() == [[1, 1], [0, 1]]


def test_reference_of_class_names_scores_as_its_codes(tmp_path):
    """The Aberystwyth polygons (tests/data) carry both a code and a name per polygon: the rules' map scores the
    same against either, mapped alike; without a mapping the names are refused with the way to map them."""
    from pathlib import Path

    from snap_operators.core.context import ExecutionContext
    from snap_operators.engine.runner import load_graph, run_graph

    root = Path(__file__).resolve().parents[2]
    polygons = root / "tests" / "data" / "aberystwyth" / "class_polygons.geojson"
    classes = tmp_path / "classes.tif"
    run_graph(load_graph(root / "graphs" / "progressive_classifier_s2.xml",
                         {"input": str(root / "tests" / "data" / "aberystwyth" / "s2_20210527_sref.tif"),
                          "output": str(classes), "labels": ""}), ExecutionContext(overwrite=True))
    by_code = assess(classes, polygons, field="class_code", mapping=parse_mapping("1:1,2:3,4:4"))
    by_name = assess(classes, polygons, field="class", mapping=parse_mapping("water:1,Forest:3,urban:4"))
    np.testing.assert_array_equal(by_name.matrix, by_code.matrix)
    assert by_name.metrics["overall_accuracy"] == by_code.metrics["overall_accuracy"] > 0.9
    assert by_name.metrics["mapping"] == {"water": 1, "Forest": 3, "urban": 4}
    # beside it, the trivial map on the same pixels: the polygons' most frequent class (water, 809 of 1678
    # scored pixels: forest 263, urban 606) everywhere
    rows = by_code.matrix.sum(axis=1)
    base = by_code.metrics["baseline_majority"]
    assert (base["class_id"], base["class_name"]) == (1, "Water")
    assert base["overall_accuracy"] == pytest.approx(rows.max() / rows.sum()) and 0.4 < base["overall_accuracy"] < 0.6
    assert base["mean_iou"] == pytest.approx(base["overall_accuracy"] / 3)
    with pytest.raises(SnapPcError, match=r"class holds class names, not codes \(forest, grass, urban, water\)"):
        assess(classes, polygons, field="class")


def test_raster_reference_with_mapping_and_nodata(write_raster, tmp_path):
    rng = np.random.default_rng(0)
    cls = rng.integers(1, 4, (300, 200)).astype("uint8")
    cls[:10] = 255  # no-data rows: left out
    cls[10:20] = 0  # unclassified: counted as a prediction
    ref_codes = np.where(rng.random(cls.shape) < 0.8, cls, rng.integers(1, 4, cls.shape)).astype("uint8")
    ref_codes[10:20] = 1
    # reference uses other codes: 11 -> 1, 12 -> 2, 13 -> 3; code 0 unlabelled
    ref = np.where(ref_codes > 0, ref_codes + 10, 0).astype("uint8")
    ref[:, :5] = 0
    write_raster(tmp_path / "c.tif", cls)
    write_raster(tmp_path / "r.tif", ref)
    res = assess(tmp_path / "c.tif", tmp_path / "r.tif", mapping={11: 1, 12: 2, 13: 3})
    valid = (cls != 255) & (ref > 0)
    refm = ref_codes[valid].astype(int)
    clsm = cls[valid].astype(int)
    assert res.labels[-1] == 0
    assert res.matrix.sum() == valid.sum()
    oa = np.mean(refm == clsm)
    assert res.metrics["overall_accuracy"] == pytest.approx(oa)
    assert res.matrix[res.labels.index(1), res.labels.index(0)] == 10 * 195


def test_a_water_not_water_reference_scores_every_land_class_as_one(write_raster, tmp_path, capsys):
    """Sen1Floods11's labels (-1 no data, 0 not water, 1 water): mapped 1:1,0:2+3+4+5, a pixel of code 0
    is right as any of 2-5 (and, with 0 in the group, unclassified); the groups' scores are those of the
    map with the classes merged beforehand, and a class in two reference classes is refused."""
    rng = np.random.default_rng(1)
    cls = rng.integers(0, 6, (120, 90)).astype("uint8")
    cls[:5] = 255
    ref = np.where(rng.random(cls.shape) < 0.3, 1, 0).astype("int16")
    ref[:, :4] = -1
    write_raster(tmp_path / "c.tif", cls)
    write_raster(tmp_path / "r.tif", ref)
    scored = (cls != 255) & (ref >= 0)
    for group in ((2, 3, 4, 5), (0, 2, 3, 4, 5)):
        res = assess(tmp_path / "c.tif", tmp_path / "r.tif", mapping={1: 1, 0: group})
        right = np.where(ref == 1, cls == 1, np.isin(cls, group))
        assert res.metrics["overall_accuracy"] == pytest.approx(right[scored].mean())
        assert res.metrics["pixels"] == scored.sum() and res.metrics["class_groups"] == {"2": list(group)}
        merged = np.where(np.isin(cls, group), 2, cls).astype("uint8")
        write_raster(tmp_path / "merged.tif", merged)
        plain = assess(tmp_path / "merged.tif", tmp_path / "r.tif", mapping={1: 1, 0: 2})
        for key in ("overall_accuracy", "kappa", "sampling"):
            assert res.metrics[key] == plain.metrics[key], key
        assert res.metrics["baseline_majority"] == {**plain.metrics["baseline_majority"],
                                                    "class_name": f"any of {'+'.join(map(str, group))}"}
        assert [p["producers_accuracy"] for p in res.metrics["per_class"]] == \
            [p["producers_accuracy"] for p in plain.metrics["per_class"]]
    assert main(["assess", str(tmp_path / "c.tif"), "--reference", str(tmp_path / "r.tif"),
                 "--mapping", "1:1,0:2+3+4+5", "--out", str(tmp_path / "acc")]) == 0
    out = capsys.readouterr().out
    assert "       2 | any of 2+3+4+5 " in out and "1 Water" not in out.split("baseline")[0]
    # the files name the group as the report does; the map's unclassified pixels are a column of their own
    header = (tmp_path / "acc" / "confusion_matrix.csv").read_text().splitlines()[0]
    assert header == "reference \\ classified,1 Water,2 any of 2+3+4+5,0 Unclassified"
    assert json.loads((tmp_path / "acc" / "metrics.json").read_text())["class_groups"] == {"2": [2, 3, 4, 5]}
    assert main(["assess", str(tmp_path / "c.tif"), "--reference", str(tmp_path / "r.tif"),
                 "--mapping", "1:1,0:1+2"]) == 1
    err = capsys.readouterr().err
    assert "class 1 is in 1 and in 1+2" in err and len(err.strip().splitlines()) == 1


def test_a_mapping_onto_a_class_the_map_does_not_have_is_warned_of(write_raster, tmp_path, caplog):
    cls = np.tile(np.array([1, 3], "uint8"), (20, 10))
    write_raster(tmp_path / "c.tif", cls)
    write_raster(tmp_path / "r.tif", cls + 10)
    with caplog.at_level("WARNING"):
        res = assess(tmp_path / "c.tif", tmp_path / "r.tif", mapping={11: 1, 13: 3})
    assert res.metrics["overall_accuracy"] == 1.0 and "--mapping" not in caplog.text
    with caplog.at_level("WARNING"):
        res = assess(tmp_path / "c.tif", tmp_path / "r.tif", mapping={11: 1, 13: 9})  # 9 for 3: a typo
    assert res.metrics["overall_accuracy"] == 0.5
    assert "maps reference codes to class(es) 9 (200 px), which class map" in caplog.text


def test_vector_reference_in_other_crs_and_report_files(write_raster, tmp_path, capsys):
    cls = np.zeros((100, 100), "uint8")
    cls[:, :50] = 1
    cls[:, 50:] = 3
    write_raster(tmp_path / "c.tif", cls)
    tr = Transformer.from_crs("EPSG:32638", "EPSG:4326", always_xy=True)

    def shp_transform(_, geom):
        return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))

    to_ll = None
    left = box(500000 + 10, 4000000 - 990, 500000 + 490, 4000000 - 10)  # inside the class-1 half
    right = box(500000 + 410, 4000000 - 990, 500000 + 990, 4000000 - 10)  # straddles: 9 cols of class 1
    schema = {"geometry": "Polygon", "properties": {"code": "int"}}
    with fiona.open(tmp_path / "ref.gpkg", "w", driver="GPKG", crs="EPSG:4326", schema=schema) as dst:
        dst.write({"geometry": mapping(shp_transform(to_ll, left)), "properties": {"code": 5}})
        dst.write({"geometry": mapping(shp_transform(to_ll, right)), "properties": {"code": 2}})
    code = main(["assess", "--classes", str(tmp_path / "c.tif"), "--reference", str(tmp_path / "ref.gpkg"),
                 "--field", "code", "--mapping", "5:1,2:3", "--out", str(tmp_path / "acc")])
    out = capsys.readouterr().out
    assert code == 0
    assert "Overall accuracy" in out and "Cohen's kappa" in out
    met = json.loads((tmp_path / "acc" / "metrics.json").read_text())
    per = {p["class_id"]: p for p in met["per_class"]}
    # class 3 reference polygon covers cols ~41..98: the first ~9 columns are classified 1
    assert 0.8 < per[3]["producers_accuracy"] < 0.9
    assert per[1]["producers_accuracy"] > 0.99
    assert (tmp_path / "acc" / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "acc" / "confusion_matrix.csv").read_text().startswith("reference")


def test_the_class_map_may_be_the_first_word(write_raster, tmp_path, capsys):
    """`snap-pc assess classes.tif --reference ...`, as `snap-pc train DATASET` and gpt take their
    input, gives the report --classes gives (it once stopped: "--classes is required"); a map given
    both ways, or none, is one line and exit 1."""
    cls = np.ones((20, 20), "uint8")
    cls[:, 10:] = 3
    write_raster(tmp_path / "c.tif", cls)
    write_raster(tmp_path / "ref.tif", np.where(np.arange(20) < 12, 1, 3).astype("uint8")[None, :].repeat(20, 0))
    ref = ["--reference", str(tmp_path / "ref.tif")]
    assert main(["assess", "--classes", str(tmp_path / "c.tif")] + ref) == 0
    flagged = capsys.readouterr().out
    assert main(["assess", str(tmp_path / "c.tif")] + ref) == 0
    assert capsys.readouterr().out == flagged and "Overall accuracy: 0.9000" in flagged
    for args in (["assess"] + ref, ["assess", str(tmp_path / "c.tif"), "--classes", str(tmp_path / "c.tif")] + ref):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "give one class map, as CLASSES or --classes" in err


@pytest.mark.parametrize("case", ["no-field", "bad-field", "disjoint", "missing", "not-geodata"])
def test_bad_references(write_raster, tmp_path, capsys, case):
    cls = np.ones((20, 20), "uint8")
    write_raster(tmp_path / "c.tif", cls)
    schema = {"geometry": "Polygon", "properties": {"code": "int"}}
    far = box(0, 0, 10, 10) if case == "disjoint" else box(500000, 3999900, 500100, 4000000)
    with fiona.open(tmp_path / "ref.gpkg", "w", driver="GPKG", crs="EPSG:32638", schema=schema) as dst:
        dst.write({"geometry": mapping(far), "properties": {"code": 1}})
    args = ["assess", "--classes", str(tmp_path / "c.tif"), "--reference", str(tmp_path / "ref.gpkg")]
    if case == "bad-field":
        args += ["--field", "klass"]
    elif case in ("disjoint",):
        args += ["--field", "code"]
    elif case == "missing":
        args = ["assess", "--classes", str(tmp_path / "c.tif"), "--reference", str(tmp_path / "nope.gpkg")]
    elif case == "not-geodata":  # once called "a vector file" and asked for --field
        (tmp_path / "notes.txt").write_text("class 1 is water\n")
        args = ["assess", "--classes", str(tmp_path / "c.tif"), "--reference", str(tmp_path / "notes.txt")]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    expect = {"no-field": "--field", "bad-field": "klass", "disjoint": "no pixel is labelled", "missing": "does not exist",
              "not-geodata": "notes.txt is neither a raster nor a vector file GDAL can read"}[case]
    assert expect in err


def test_masked_pixels_are_not_scored_but_counted(write_raster, tmp_path):
    cls = np.array([[1, 1, 254, 254], [2, 2, 2, 255]], np.uint8)
    ref = np.array([[1, 2, 1, 0], [2, 2, 1, 2]], np.uint8)
    write_raster(tmp_path / "c.tif", cls, nodata=255)
    write_raster(tmp_path / "r.tif", ref)
    res = assess(tmp_path / "c.tif", tmp_path / "r.tif")
    assert res.metrics["masked_pixels"] == 1  # the other masked pixel has no reference
    assert res.metrics["pixels"] == 5 and 254 not in res.labels
    from snap_operators.apps.assess import format_report

    assert "Masked, not scored: 1 reference pixels" in format_report(res)
    # the reference's regions of one class with a pixel scored: (0,0); (0,1)-(1,0)-(1,1); (0,2)-(1,2)
    assert res.metrics["sampling"]["units"] == 3 and "95% interval" in format_report(res)
    # 6 of the 8 pixels labelled and seen (one of them masked): a wall-to-wall reference, said so
    assert res.metrics["sampling"]["coverage"] == 6 / 8
    assert "the reference covers 75% of the map, so the overall accuracy is the scene's own" in format_report(res)
    write_raster(tmp_path / "one.tif", np.full((2, 4), 2, np.uint8))  # one region: no interval, said so
    one = assess(tmp_path / "c.tif", tmp_path / "one.tif")
    assert one.metrics["sampling"]["overall_accuracy_interval"] is None
    assert "no 95% interval: the reference is one sampling unit (region)" in format_report(one)
    write_raster(tmp_path / "all.tif", np.full((2, 4), 254, np.uint8), nodata=255)
    with pytest.raises(SnapPcError, match="every reference pixel of the class map is masked"):
        assess(tmp_path / "all.tif", tmp_path / "r.tif")
    # compared with a map masked or without data elsewhere: both scored where both map, by hand
    other = np.array([[1, 254, 1, 1], [255, 2, 1, 2]], np.uint8)
    write_raster(tmp_path / "o.tif", other, nodata=255)
    res = assess(tmp_path / "c.tif", tmp_path / "r.tif", compare=tmp_path / "o.tif")
    # scored: (0,0) ref 1: c 1, o 1; (1,1) ref 2: c 2, o 2; (1,2) ref 1: c 2, o 1 -> masked 2 ((0,1), (0,2))
    assert res.metrics["pixels"] == res.metrics["compare"]["pixels"] == 3 and res.metrics["masked_pixels"] == 2
    assert res.metrics["overall_accuracy"] == pytest.approx(2 / 3) and res.metrics["compare"]["overall_accuracy"] == 1
    # the one discordant pixel lies in the region of 1s at (0,2)-(1,2): one unit, d = -1, chi-square 1
    assert res.metrics["mcnemar"] == {"right_only_in_classes": 0, "right_only_in_compare": 1, "p_value": 1.0,
                                      "units_p_value": pytest.approx(math.erfc(math.sqrt(0.5))), "units": 1,
                                      "unit_kind": "regions"}


# --- confusion figure titles: which map, which split ----------------------------------------------


@pytest.fixture
def titles(monkeypatch):
    """Titles of the confusion figures the assess module saves (the figures are saved as usual)."""
    import snap_operators.apps.assess as assess_mod

    seen = []
    stage, save = assess_mod.stage_figure, assess_mod.save_figure

    def stage_figure(staged, fig, path):
        seen.append(fig.axes[0].get_title())
        return stage(staged, fig, path)

    def save_figure(fig, path):
        seen.append(fig.axes[0].get_title())
        return save(fig, path)

    monkeypatch.setattr(assess_mod, "stage_figure", stage_figure)
    monkeypatch.setattr(assess_mod, "save_figure", save_figure)
    return seen


def test_assess_confusion_title_names_map_and_reference(write_raster, tmp_path, capsys, titles):
    cls = np.repeat(np.array([[1, 2]], "uint8"), 20, axis=0).repeat(10, axis=1)
    write_raster(tmp_path / "classes.tif", cls)
    write_raster(tmp_path / "reference.tif", np.ones_like(cls))
    code = main(["assess", "--classes", str(tmp_path / "classes.tif"), "--reference", str(tmp_path / "reference.tif"),
                 "--out", str(tmp_path / "acc")])
    assert code == 0, capsys.readouterr().err
    assert len(titles) == 1
    # a matrix of two classes is a narrow figure: the scores are wrapped to it, not cut off at its edge
    subject, *scores = titles[0].split("\n")
    assert subject == "classes.tif vs reference.tif" and len(scores) == 2 and max(map(len, scores)) <= 43
    scores = " ".join(" ".join(scores).split())
    assert scores.startswith("OA 0.500 (one class everywhere: 1.000) kappa ") and scores.endswith("(400 px)")
    assert "  baseline:       1.0000 (a map of the reference's most frequent class everywhere: 1 Water)" \
        in capsys.readouterr().out


def test_confusion_title_takes_a_subject(tmp_path, titles):
    from snap_operators.apps.assess import Assessment, plot_confusion

    m = np.array([[8, 2], [1, 9]])
    result = Assessment([1, 2], m, accuracy_metrics(m, [1, 2]))  # no files: a training split's result
    plot_confusion(result, tmp_path / "plain.png")
    plot_confusion(result, tmp_path / "val.png", "Attention U-Net small, validation split")
    assert titles[0].startswith("OA 0.850   kappa ") and "\n" not in titles[0]
    assert titles[1].split("\n") == ["Attention U-Net small, validation split", titles[0]]
    assert (tmp_path / "val.png").stat().st_size > 1000


def test_training_confusion_subjects_name_model_and_split():
    from snap_pc_models.train import _confusion_subject

    assert _confusion_subject("small", "val") == "Attention U-Net small, validation split"
    assert _confusion_subject("mosul_v2", "test") == "Attention U-Net mosul_v2, test split"


def test_a_reference_in_another_legend_is_warned_of_and_255_is_no_data(write_raster, tmp_path, caplog):
    """A class map used as the reference keeps 254 (masked) and 255 (no-data), often undeclared in the file: those
    pixels are not scored (they once counted as a class 255 the map never gives, lowering the accuracy without a
    word). A reference code the map's legend lacks and never predicts (a reference in another legend, unmapped)
    still counts as errors, now with a warning that says how to map it."""
    cls = np.tile(np.array([1, 3], "uint8"), (20, 10))
    write_raster(tmp_path / "c.tif", cls)
    ref = cls.copy()
    ref[:5] = 255
    ref[5:8] = 254
    write_raster(tmp_path / "r.tif", ref)  # no declared no-data
    with caplog.at_level("WARNING"):
        res = assess(tmp_path / "c.tif", tmp_path / "r.tif")
    assert res.metrics["overall_accuracy"] == 1.0 and res.labels == [1, 3] and res.matrix.sum() == 12 * 20
    assert caplog.text == ""
    ref[:5] = 7
    write_raster(tmp_path / "r7.tif", ref)
    with caplog.at_level("WARNING"):
        res = assess(tmp_path / "c.tif", tmp_path / "r7.tif")
    assert res.metrics["overall_accuracy"] == pytest.approx(12 / 17) and 7 in res.labels
    assert "holds code(s) 7 (100 px), which class map" in caplog.text
    assert "a reference in another legend needs --mapping CODE:ID pairs" in caplog.text


def test_mcnemar_p_is_the_exact_binomial_then_its_chi_square():
    """Two maps on the same pixels: 9 pixels right only in one, 1 only in the other. Exact two-sided:
    2 * (C(10,0) + C(10,1)) / 2^10 = 22/1024. Beyond 1000 discordant pixels the continuity-corrected
    chi-square, which agrees with the exact test there to a few per cent."""
    from math import comb

    from snap_operators.apps.assess import mcnemar_p

    assert mcnemar_p(9, 1) == mcnemar_p(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_p(0, 0) == mcnemar_p(5, 5) == 1.0 and mcnemar_p(0, 1) == 1.0
    exact = 2 * sum(comb(1001, i) for i in range(431)) / 2.0 ** 1001  # 430 vs 571
    assert mcnemar_p(430, 571) == pytest.approx(exact, rel=0.05) and mcnemar_p(430, 571) < 1e-4
    assert mcnemar_p(480, 520) == pytest.approx(0.2174, abs=1e-3)  # exact, n = 1000


@pytest.mark.real_data
def test_two_maps_compared_on_the_same_pixels_with_mcnemar(tmp_path, capsys):
    """Real: Aberystwyth's rules map (the S2 graph) and the shipped model's map (the inference graph), both
    against the hand-drawn polygons: scored on the same pixels, their OA difference is McNemar's counts'
    difference over those pixels; a map on another grid is refused."""
    from pathlib import Path

    import rasterio

    pytest.importorskip("onnxruntime")
    root = Path(__file__).resolve().parents[2]
    scene = root / "tests" / "data" / "aberystwyth"
    for graph, out in (("progressive_classifier_s2", "rules.tif"), ("unet_inference", "unet.tif")):
        code = main(["run", str(root / "graphs" / f"{graph}.xml"), f"-Pinput={scene / 's2_20210527_sref.tif'}",
                     f"-Poutput={tmp_path / out}", "-Plabels=", "--quiet"])
        assert code == 0, capsys.readouterr().err
    args = ["assess", "--classes", str(tmp_path / "unet.tif"), "--compare", str(tmp_path / "rules.tif"),
            "--reference", str(scene / "class_polygons.geojson"), "--field", "class",
            "--mapping", "water:1,forest:3,urban:4", "--out", str(tmp_path / "acc")]
    assert main(args) == 0
    out = capsys.readouterr().out
    met = json.loads((tmp_path / "acc" / "metrics.json").read_text())
    other, t = met["compare"], met["mcnemar"]
    assert other["pixels"] == met["pixels"] > 1000 and other["classes"] == str(tmp_path / "rules.tif")
    assert (t["right_only_in_classes"] - t["right_only_in_compare"]) / met["pixels"] == pytest.approx(
        met["overall_accuracy"] - other["overall_accuracy"], abs=1e-12)
    assert "McNemar test of the difference" in out and "unet.tif right where rules.tif is wrong on" in out
    # the sample is the 18 polygons, not the 1678 pixels: intervals around the figures, worth far fewer
    # pixels, and a test over the polygons that doubts more than the pixels'
    s = met["sampling"]
    assert s["unit_kind"] == "polygons" and s["units"] == 18 and s["effective_size"] < met["pixels"] / 5
    for m in (met, other):
        low, high = m["sampling"]["overall_accuracy_interval"]
        assert low < m["overall_accuracy"] < high and f"95% interval {low:.3f}-{high:.3f}" in out
        for p in m["per_class"]:
            if p["producers_accuracy_interval"]:
                assert p["producers_accuracy_interval"][0] <= p["producers_accuracy"] <= p["producers_accuracy_interval"][1]
    assert t["units_p_value"] > t["p_value"] and 0 < t["units"] <= 18
    assert "18 polygons as the sample, worth" in out and "the scene's own" not in out  # polygons: a sample
    assert f"with the {t['units']} polygons holding such pixels as the sample (Durkalski's clustered test)" in out
    # each map's confusion matrix, the compared one's beside the first's
    written = sorted(p.name for p in (tmp_path / "acc").iterdir())
    assert written == ["confusion_matrix.csv", "confusion_matrix.png", "confusion_matrix_compare.csv",
                       "confusion_matrix_compare.png", "metrics.json"]
    import csv

    with open(tmp_path / "acc" / "confusion_matrix_compare.csv", newline="") as f:
        matrix = np.array([[int(v) for v in row[1:]] for row in list(csv.reader(f))[1:]])
    assert np.trace(matrix) == round(other["overall_accuracy"] * other["pixels"]) and matrix.sum() == other["pixels"]
    # neither map masks a pixel of the polygons: the rules' map alone scores the same
    alone = assess(tmp_path / "rules.tif", scene / "class_polygons.geojson", field="class",
                   mapping=parse_mapping("water:1,forest:3,urban:4"))
    assert alone.metrics["masked_pixels"] == met["masked_pixels"] == 0
    assert alone.metrics["overall_accuracy"] == pytest.approx(other["overall_accuracy"])
    assert alone.metrics["baseline_majority"] == other["baseline_majority"]
    assert alone.metrics["sampling"] == other["sampling"]
    # the polygons burnt into a raster (labels.tif): its regions of one class are the same 18 units
    raster = assess(tmp_path / "rules.tif", scene / "labels.tif", mapping={1: 1, 2: 3, 4: 4})
    assert raster.metrics["sampling"] == {**alone.metrics["sampling"], "unit_kind": "regions"}
    with rasterio.open(tmp_path / "rules.tif") as src:  # the same map 10 m east: another grid
        profile, data = src.profile, src.read()
    profile["transform"] = rasterio.Affine.translation(10, 0) @ profile["transform"]
    with rasterio.open(tmp_path / "shifted.tif", "w", **profile) as dst:
        dst.write(data)
    with pytest.raises(SnapPcError, match=r"shifted.tif is not on the grid of .*unet.tif: a pixel-by-pixel "):
        assess(tmp_path / "unet.tif", scene / "class_polygons.geojson", field="class",
               mapping=parse_mapping("water:1,forest:3,urban:4"), compare=tmp_path / "shifted.tif")
