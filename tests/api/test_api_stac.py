"""From a STAC item to a class map, label masks and an area table in Python: the graph run's results."""

from __future__ import annotations

import fiona
import numpy as np
import pytest
import rasterio
from helpers import ROOT

pytest.importorskip("xarray")
pytest.importorskip("rioxarray")


def test_a_stac_item_gives_the_graph_runs_class_map_labels_and_areas(stac_item, tmp_path, run_cli):
    from snap_operators import api

    graph = ROOT / "graphs" / "progressive_classifier_s2.xml"
    code, _, err = run_cli("run", graph, f"-Pinput={stac_item}", f"-Poutput={tmp_path / 'graph.tif'}",
                           f"-Plabels={tmp_path / 'graph.gpkg'}", f"-PareaTable={tmp_path / 'graph_raster_areas.csv'}",
                           "--quiet")
    assert code == 0, err

    # the walk-through of docs/python.md, on the item
    product = api.resample(api.open_product(stac_item), referenceBand="B2", upsampling="Bilinear",
                           downsampling="Mean")
    ds = api.cloud_mask(api.to_xarray(product))
    ds = api.spectral_indices(ds, ["NDVI", "MNDWI", "BI2", "NDBI", "NGBDI", "PANTEX", "BSI"], copySourceBands=True)
    classes = api.progressive_classify(ds, rules="mosul-5class")
    api.label_masks(classes, tmp_path / "api.gpkg", minArea=500)
    api.area_table(classes, tmp_path / "api_raster_areas.csv")

    assert ds.attrs["start_time"].startswith("2023-07-10T07:46:21")  # the item's datetime
    assert ds.B2.dtype == np.float32 and float(ds.B2.min()) >= -0.1  # DN * 0.0001 - 0.1: reflectance
    with rasterio.open(tmp_path / "graph.tif") as g:
        expected = g.read(1)
    np.testing.assert_array_equal(classes.class_id.values, expected)
    assert len(np.unique(expected)) >= 4
    areas = {}
    for name in ("graph", "api"):
        with fiona.open(tmp_path / f"{name}.gpkg") as src:
            areas[name] = sorted((f.properties["class_id"], f.properties["area_m2"]) for f in src)
    assert areas["api"] == areas["graph"] and len(areas["graph"]) > 10
    rows = [(tmp_path / f"{n}_raster_areas.csv").read_text().splitlines() for n in ("graph", "api")]
    assert rows[0] == rows[1] and rows[0][0].endswith("raster_area_km2")
