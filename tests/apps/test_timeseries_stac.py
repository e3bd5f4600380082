"""snap-pc timeseries on a STAC ItemCollection: each item one date, classified by --graph.

The three items are a real Sentinel-2 L2A patch (BigEarthNet, ../shared/data) and two copies of it
whose near-infrared is lowered (less vegetation), as COGs beside the collection file, with relative
hrefs and Earth Search's keys and raster:bands.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.enums import Resampling

from snap_operators.core.context import ExecutionContext
from snap_operators.engine.runner import load_graph, run_graph

GRAPH = Path(__file__).resolve().parents[2] / "graphs" / "progressive_classifier_s2.xml"
PATCH = ("bigearthnet", "BigEarthNet-S2-Example", "S2A_MSIL2A_20170613T101031_87_48")
KEYS = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
        "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22"}
#: Item date -> factor on the near-infrared bands (B08, B8A) of that date's copy.
DATES = {dt.date(2017, 6, 13): 1.0, dt.date(2017, 7, 3): 0.8, dt.date(2017, 7, 23): 0.6}


def write_item(patch: Path, folder: Path, when: dt.date, nir: float) -> pystac.Item:
    """Tiled GeoTIFFs with overviews of the patch's bands (B08/B8A times `nir`) in ``folder/<date>/`` and their item
    (hrefs relative to `folder`, where the collection file goes)."""
    sub = folder / when.isoformat()
    sub.mkdir(parents=True)
    stamp = dt.datetime(when.year, when.month, when.day, 10, 10, 31, tzinfo=dt.timezone.utc)
    item = pystac.Item(f"S2A_33UUP_{when:%Y%m%d}_0_L2A", None, None, stamp,
                       {"s2:processing_baseline": "02.05", "s2:product_type": "S2MSI2A"}, collection="sentinel-2-l2a")
    for f in sorted(patch.glob("*_B*.tif")):
        token = f.stem.rsplit("_", 1)[1]
        with rasterio.open(f) as ds:
            dn = ds.read(1)
            profile = dict(driver="GTiff", width=ds.width, height=ds.height, count=1, dtype="uint16", crs=ds.crs,
                           transform=ds.transform, nodata=0, tiled=True, blockxsize=32, blockysize=32)
        if token in ("B08", "B8A"):
            dn = np.round(dn * nir).astype(np.uint16)
        with rasterio.open(sub / f"{token}.tif", "w", **profile) as out:
            out.write(dn, 1)
            out.build_overviews([2, 4], Resampling.average)
        fields = {"eo:bands": [{"name": KEYS[token]}], "raster:bands": [{"nodata": 0, "scale": 0.0001, "offset": 0.0}]}
        item.add_asset(KEYS[token], pystac.Asset(f"{when.isoformat()}/{token}.tif", media_type=pystac.MediaType.COG,
                                                 roles=["data"], extra_fields=fields))
    return item


@pytest.fixture
def collection(shared_data, tmp_path):
    """``search.json``: an ItemCollection of the three dates, as pystac_client saves a search."""
    patch = shared_data(*PATCH)
    folder = tmp_path / "stac"
    items = [write_item(patch, folder, when, nir) for when, nir in DATES.items()]
    path = folder / "search.json"
    features = [i.to_dict(include_self_link=False, transform_hrefs=False) for i in reversed(items)]  # any order
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


def test_item_collection_is_one_date_per_item(collection, shared_data, tmp_path, run_cli):
    out = tmp_path / "series"
    code, stdout, err = run_cli("timeseries", collection, "--graph", GRAPH, "--out", out, "--tile-size", 64)
    assert code == 0, err
    items = sorted(p.name for p in (out / "items").iterdir())
    assert items == [f"S2A_33UUP_{d:%Y%m%d}_0_L2A.json" for d in DATES]
    with open(out / "dates.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["date"] for r in rows] == [d.isoformat() for d in DATES]
    assert {r["date_source"] for r in rows} == {"metadata"}  # the items' datetime
    assert [Path(r["raw_product"]).name for r in rows] == items and {r["status"] for r in rows} == {"used"}
    assert "wrote" in stdout

    # The first date's class map is the one the graph writes from the patch's band folder.
    direct = tmp_path / "direct"
    run_graph(load_graph(GRAPH, {"input": str(shared_data(*PATCH)), "output": str(direct), "labels": ""}),
              ExecutionContext(tile_size=64))
    maps = {}
    for d in DATES:
        with rasterio.open(out / "classes" / f"classes_{d.isoformat()}.tif") as ds:
            maps[d] = ds.read(1)
    with rasterio.open(f"{direct}.tif") as ds:
        np.testing.assert_array_equal(maps[dt.date(2017, 6, 13)], ds.read(1))
    with open(out / "class_areas.csv", newline="", encoding="utf-8") as f:
        trees = [float(r["3 Trees/Shrubbery vegetation (sq km)"]) for r in csv.DictReader(f)]
    assert trees[0] > trees[1] > trees[2]  # each date its own item: the lowered near-infrared, less vegetation


def test_item_collection_needs_a_graph(collection, tmp_path, run_cli, one_line_error):
    code, _, err = run_cli("timeseries", collection, "--out", tmp_path / "series")
    assert code != 0
    assert "search.json: a STAC ItemCollection holds raw scenes, not class maps; give --graph" in one_line_error(err)
