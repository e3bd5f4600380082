"""The API's operator calls give the graphs' results, bit for bit.

graphs/progressive_classifier_s2.xml run by ``snap-pc run`` and the same nodes called from Python
(open_product -> resample -> to_xarray -> cloud_mask -> spectral_indices -> progressive_classify ->
label_masks, area_table) on one synthetic scene: the same class array, the same label mask features
and the same area tables; likewise graphs/unet_inference.xml and unet_predict + progressive_classify + rule_fusion.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from helpers import ROOT

from snap_operators import api
from snap_operators.api._options import as_text
from snap_operators.core.operator import get_operator
from snap_operators.engine.runner import load_graph

pytest.importorskip("xarray")
pytest.importorskip("rioxarray")

GRAPHS = ROOT / "graphs"
#: graphs/progressive_classifier_s2.xml's nodes with the defaults of its .properties, as the API calls them.
S2_NODES = {
    "Resample": dict(referenceBand="B2", upsampling="Bilinear", downsampling="Mean", flagDownsampling="First",
                     resampleOnPyramidLevels=True),
    "CloudMask": dict(method="auto", copySourceBands=True),
    "SpectralIndices": dict(indices=["NDVI", "MNDWI", "BI2", "NDBI", "NGBDI", "PANTEX", "BSI"], saviL=0.5,
                            copySourceBands=True),
    "ProgressiveClassifier": dict(rules="mosul-5class", outputStage=False, outputMargin=False),
    "LabelMaskExport": dict(sourceBand="class_id", minArea=500),
}


def _converted(alias: str, raw: dict) -> dict:
    return get_operator(alias).spec.convert_parameters(raw)[0]


def test_the_api_calls_mirror_the_graph_nodes():
    """The parameters below are the graph's (after its defaults): a change of the graph shows here."""
    graph = load_graph(GRAPHS / "progressive_classifier_s2.xml", {"input": "s2.tif", "output": "c.tif", "labels": "l.gpkg"})
    for nid, params in S2_NODES.items():
        node = graph.nodes[nid]
        # every parameter the node sets is here, but for the outputs the API takes as arguments
        assert set(node.parameters) - set(params) <= {"file", "formatName", "areaTableFile"}, nid
        theirs = _converted(node.operator, node.parameters)
        mine = _converted(node.operator, {k: as_text(v) for k, v in params.items()})
        assert {k: theirs[k] for k in params} == {k: mine[k] for k in params}, nid
    chain = [(n.id, [ref for _, ref in n.sources]) for n in graph.nodes.values()]
    assert chain == [("Read", []), ("Resample", ["Read"]), ("CloudMask", ["Resample"]),
                     ("SpectralIndices", ["CloudMask"]), ("ProgressiveClassifier", ["SpectralIndices"]),
                     ("Write", ["ProgressiveClassifier"]), ("LabelMaskExport", ["ProgressiveClassifier"])]


def _features(path):
    """(class_id, class_name, area_m2, geometry WKB) of every feature, sorted."""
    from pyogrio.raw import read

    meta, _, geometry, fields = read(path, layer="label_masks")
    names = list(meta["fields"])
    rows = zip(*(fields[names.index(f)] for f in ("class_id", "class_name", "area_m2")), geometry)
    return sorted((int(c), str(n), float(a), bytes(g)) for c, n, a, g in rows)


def test_classifier_graph_and_api_give_the_same_class_map_labels_and_areas(scene, tmp_path, run_cli):
    by_graph, by_api = tmp_path / "graph", tmp_path / "api"
    by_graph.mkdir()
    by_api.mkdir()
    code, _, err = run_cli("run", GRAPHS / "progressive_classifier_s2.xml", f"-Pinput={scene['s2']}",
                           f"-Poutput={by_graph / 'classes.tif'}", f"-Plabels={by_graph / 'labels.gpkg'}",
                           f"-PareaTable={by_graph / 'areas.csv'}", "--quiet")
    assert code == 0, err

    n = S2_NODES
    product = api.resample(api.open_product(scene["s2"]), **n["Resample"])
    ds = api.cloud_mask(api.to_xarray(product), **n["CloudMask"])
    ds = api.spectral_indices(ds, **n["SpectralIndices"])
    classes = api.progressive_classify(ds, **n["ProgressiveClassifier"])
    written = api.label_masks(classes, by_api / "labels.gpkg", **n["LabelMaskExport"])
    table = api.area_table(classes, by_api / "areas.csv")

    assert "cloud_mask" in ds and 254 in classes.class_id.attrs["flag_values"]  # the mask applied, as in the graph
    with rasterio.open(by_graph / "classes.tif") as src:
        expected, transform, crs = src.read(1), src.transform, src.crs
    got = classes.class_id.values
    assert got.dtype == expected.dtype == np.uint8
    assert got.tobytes() == expected.tobytes()
    assert classes.rio.transform() == transform and classes.rio.crs == crs
    assert [p.name for p in written] == ["labels.gpkg", "labels.qml", "labels_areas.csv"]
    assert _features(by_api / "labels.gpkg") == _features(by_graph / "labels.gpkg")
    for name in ("labels_areas.csv", "labels.qml", "areas.csv"):
        assert (by_api / name).read_text() == (by_graph / name).read_text(), name
    total = table[table.class_name == "Total"].iloc[0]
    assert total.pixels == got.size - int((got == 255).sum()) - int((got == 254).sum())


def test_unet_graph_and_unet_predict_give_the_same_class_map(scene, tmp_path, run_cli):
    pytest.importorskip("onnxruntime")
    code, _, err = run_cli("run", GRAPHS / "unet_inference.xml", f"-Pinput={scene['s2']}",
                           f"-Poutput={tmp_path / 'unet.tif'}", "-Plabels=", "--quiet")
    assert code == 0, err
    product = api.resample(api.open_product(scene["s2"]), **S2_NODES["Resample"])
    ds = api.cloud_mask(api.to_xarray(product), method="auto", copySourceBands=True)
    ds = api.spectral_indices(ds, ["NDVI", "MNDWI", "BI2", "NDBI", "NGBDI", "PANTEX", "BSI"], saviL=0.5,
                              copySourceBands=True)
    pred = api.unet_predict(ds, model=None, tileSize=256, blend="center", batchSize=1, threads=1)
    rules = api.progressive_classify(ds, rules="mosul-5class", outputMargin=True)
    fused = api.rule_fusion(rules, pred, minMargin=0.03)
    with rasterio.open(tmp_path / "unet.tif") as src:
        expected = src.read(1)
    assert fused.class_id.values.tobytes() == expected.tobytes()
    # the rules decide where they are sure, so the graph's map is neither map alone on this scene
    network, classes = pred.class_id.values, rules.class_id.values
    assert (expected != network).any() and (expected != classes).any()


@pytest.mark.real_data
def test_change_graph_and_change_functions_give_the_same_map_and_tables(shared_data, tmp_path, run_cli):
    """Real: Slovenia's class maps of 2015-07-11 and 2015-09-09 (the S2 graph's) through
    graphs/change_detection.xml and through change_detection + change_tables."""
    import pandas as pd

    maps = []
    for day in ("2015-07-11", "2015-09-09"):
        maps.append(tmp_path / f"classes_{day}.tif")
        code, _, err = run_cli("run", GRAPHS / "progressive_classifier_s2.xml",
                               f"-Pinput={shared_data('eolearn_slovenia', f'S2L1C_{day}.tif')}",
                               f"-Poutput={maps[-1]}", "-Plabels=", "--quiet")
        assert code == 0, err
    code, out, err = run_cli("run", GRAPHS / "change_detection.xml", f"-Pbefore={maps[0]}", f"-Pafter={maps[1]}",
                             f"-Poutput={tmp_path / 'change'}", "-Plabels=")
    assert code == 0, err
    before, after = (api.to_xarray(api.open_product(p)) for p in maps)
    moved = api.change_detection(before, after)
    with rasterio.open(tmp_path / "change.tif") as src:
        assert moved.change.values.tobytes() == src.read(1).tobytes()
    matrix, gain_loss = api.change_tables(before, after)
    for frame, name in ((matrix, "change.matrix.csv"), (gain_loss, "change.gain_loss.csv")):
        written = pd.read_csv(tmp_path / name, dtype=str, keep_default_na=False)
        ours = frame.astype(object).where(frame.notna(), "")
        assert list(written.columns) == list(frame.columns)
        for column in frame.columns:
            if column.endswith("_km2"):
                np.testing.assert_allclose(written[column].astype(float), ours[column].astype(float), atol=5e-7)
            else:
                assert written[column].tolist() == [str(v) for v in ours[column]], column
    assert int(gain_loss.before_pixels.iloc[-1]) > 10000 * 0.99  # a clear pair: nearly every pixel compared
