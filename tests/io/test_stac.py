"""STAC Item reading: a real Sentinel-2 L2A patch (BigEarthNet, ../shared/data) written as COGs, described by
STAC items as Earth Search and Planetary Computer write them, read in place; no network.

Earth Search names assets ``blue`` ... ``swir22`` and gives ``raster:bands`` scale 0.0001 and, from
processing baseline 04.00 on, offset -0.1; Planetary Computer names them ``B02`` ... and gives no
``raster:bands``, so the offset comes from ``s2:processing_baseline``. The 04.00 variants hold the
patch's digital numbers + 1000, as a 04.00 product stores them.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import urllib.request
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import ProductReadError
from snap_operators.io import detect_format, input_paths, open_product
from snap_operators.io.raster_bands import LazyRasterBand
from snap_operators.io.stac import asset_band, gdal_path, is_url, stac_type, write_items
from snap_operators.ops.read import Read

ROOT = Path(__file__).resolve().parents[2]
PATCH = ("bigearthnet", "BigEarthNet-S2-Example", "S2A_MSIL2A_20170613T101031_87_48")
WHEN = dt.datetime(2017, 6, 13, 10, 10, 31, tzinfo=dt.timezone.utc)
#: Earth Search's asset keys (= eo:bands names and common names) of the patch's band files.
EARTH_SEARCH = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
                "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
                "B11": "swir16", "B12": "swir22"}
#: SNAP's names, in SNAP's order (the L2A patch has no B10).
BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
TOKEN = {"B1": "B01", "B2": "B02", "B3": "B03", "B4": "B04", "B5": "B05", "B6": "B06", "B7": "B07", "B8": "B08",
         "B8A": "B8A", "B9": "B09", "B11": "B11", "B12": "B12"}


@pytest.fixture
def patch(shared_data):
    """The patch's folder of per-band GeoTIFFs (uint16 DN, 10/20/60 m)."""
    return shared_data(*PATCH)


def write_cogs(patch: Path, dest: Path, add: int = 0, nodata_corner: bool = True) -> dict[str, np.ndarray]:
    """Cloud-optimized GeoTIFFs ``dest/B02.tif`` ... of the patch's bands holding DN + `add` (a 2 x 2 DN-0 corner
    unless not `nodata_corner`): 32 px tiles and overviews (GDAL's COG driver wants 128 px tiles, more than a
    patch); returns the digital numbers written, by file token."""
    dest.mkdir(parents=True, exist_ok=True)
    written = {}
    for f in sorted(patch.glob("*_B*.tif")):
        token = f.stem.rsplit("_", 1)[1]
        with rasterio.open(f) as ds:
            dn = ds.read(1) + np.uint16(add)
            profile = dict(driver="GTiff", width=ds.width, height=ds.height, count=1, dtype="uint16", crs=ds.crs,
                           transform=ds.transform, nodata=0, tiled=True, blockxsize=32, blockysize=32,
                           compress="deflate")
        if nodata_corner:
            dn[:2, :2] = 0
        with rasterio.open(dest / f"{token}.tif", "w", **profile) as out:
            out.write(dn, 1)
            out.build_overviews([2, 4], Resampling.average)
        written[token] = dn
    return written


def earth_search_item(tokens, *, offset=-0.1, baseline="04.00", item_id="S2A_33UUP_20170613_0_L2A", when=WHEN,
                      prefix="") -> pystac.Item:
    """An Earth Search v1 style item: keys ``blue``..., eo:bands, raster:bands scale 0.0001 and `offset`, a JPEG 2000
    duplicate per band on requester-pays S3 (never opened: the COG is preferred), a thumbnail and metadata."""
    props = {"platform": "sentinel-2a", "s2:product_type": "S2MSI2A", "s2:processing_baseline": baseline,
             "proj:epsg": 32633}
    item = pystac.Item(item_id, None, None, when, props, collection="sentinel-2-l2a")
    for token in tokens:
        key = EARTH_SEARCH[token]
        fields = {"eo:bands": [{"name": key, "common_name": key.rstrip("123")}],
                  "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": offset}]}
        item.add_asset(key, pystac.Asset(f"{prefix}{token}.tif", media_type=pystac.MediaType.COG, roles=["data"],
                                         extra_fields=fields))
        item.add_asset(f"{key}-jp2", pystac.Asset(f"s3://sentinel-s2-l2a/tiles/33/U/UP/{token}.jp2",
                                                  media_type=pystac.MediaType.JPEG2000, roles=["data"],
                                                  extra_fields=dict(fields)))
    item.add_asset("thumbnail", pystac.Asset("thumbnail.jpg", media_type=pystac.MediaType.JPEG, roles=["thumbnail"]))
    item.add_asset("granule_metadata", pystac.Asset("metadata.xml", media_type=pystac.MediaType.XML,
                                                    roles=["metadata"]))
    return item


def planetary_item(tokens, *, baseline="04.00", scl: str | None = None) -> pystac.Item:
    """A Planetary Computer style item: keys ``B01``..., eo:bands names ``B02`` with common names, no
    raster:bands; a 3-band ``visual`` COG, a preview and product metadata beside them."""
    props = {"platform": "Sentinel-2A", "s2:product_type": "S2MSI2A", "s2:processing_baseline": baseline}
    item = pystac.Item("S2A_MSIL2A_20170613T101031_R022_T33UUP_20201006T000000", None, None, WHEN, props,
                       collection="sentinel-2-l2a")
    for token in tokens:
        band = {"name": token, "common_name": EARTH_SEARCH[token].rstrip("123"), "center_wavelength": 0.5}
        item.add_asset(token, pystac.Asset(f"{token}.tif", media_type=pystac.MediaType.COG, roles=["data"],
                                           extra_fields={"eo:bands": [band], "gsd": 10}))
    if scl:
        item.add_asset("SCL", pystac.Asset(scl, media_type=pystac.MediaType.COG, roles=["data"]))
    visual = [{"name": n, "common_name": c} for n, c in (("B04", "red"), ("B03", "green"), ("B02", "blue"))]
    item.add_asset("visual", pystac.Asset("TCI.tif", media_type=pystac.MediaType.COG, roles=["data"],
                                          extra_fields={"eo:bands": visual}))
    item.add_asset("rendered_preview", pystac.Asset("https://example.com/preview.png", media_type=pystac.MediaType.PNG,
                                                    roles=["overview"]))
    item.add_asset("product-metadata", pystac.Asset("MTD_MSIL2A.xml", media_type=pystac.MediaType.XML,
                                                    roles=["metadata"]))
    return item


def save(item: pystac.Item, path: Path) -> Path:
    """The item as JSON at `path`, hrefs as given (relative ones stay relative)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)), encoding="utf-8")
    return path


def physical(dn: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """DN * scale + offset rounded once to float32, NaN at DN 0 (what the readers give)."""
    out = (dn.astype(np.float64) * scale + offset).astype(np.float32)
    out[dn == 0] = np.nan
    return out


# --- recognising items and hrefs ----------------------------------------------------------------------


def test_hrefs_map_to_gdal_paths():
    assert gdal_path("https://sentinel-cogs.s3.us-west-2.amazonaws.com/a/B04.tif") == \
        "/vsicurl/https://sentinel-cogs.s3.us-west-2.amazonaws.com/a/B04.tif"
    signed = "https://sentinel2l2a01.blob.core.windows.net/c/T33UUP/B04_10m.tif?st=2024&se=2025&sig=a%2Bb"
    assert gdal_path(signed) == "/vsicurl/" + signed  # the signature travels with the URL
    assert gdal_path("http://localhost:8000/B04.tif") == "/vsicurl/http://localhost:8000/B04.tif"
    assert gdal_path("s3://sentinel-s2-l2a/tiles/33/U/UP/R10m/B04.jp2") == "/vsis3/sentinel-s2-l2a/tiles/33/U/UP/R10m/B04.jp2"
    assert gdal_path("file:///data/scene/B04.tif") == "/data/scene/B04.tif"
    assert gdal_path("/data/scene/B04.tif") == "/data/scene/B04.tif"
    with pytest.raises(ProductReadError, match="the scheme ftp:// is not read"):
        gdal_path("ftp://example.com/B04.tif")
    assert is_url("HTTPS://x/item.json") and not is_url("/x/item.json") and not is_url(Path("x"))


def test_assets_are_matched_by_eo_bands_name_key_or_common_name():
    assert asset_band("B02", {"eo:bands": [{"name": "B02", "common_name": "blue"}]}) == "B2"
    assert asset_band("blue", {"eo:bands": [{"name": "blue", "common_name": "blue"}]}) == "B2"
    assert asset_band("rededge3", {"eo:bands": [{"name": "rededge3", "common_name": "rededge"}]}) == "B7"
    assert asset_band("B8A_20m", {}) == "B8A" and asset_band("nir08-jp2", {}) == "B8A"
    assert asset_band("band_a", {"bands": [{"name": "x", "eo:common_name": "swir16"}]}) == "B11"  # STAC 1.1
    assert asset_band("scl", {}) == asset_band("SCL_20m", {}) == "quality_scene_classification"
    assert asset_band("aot", {}) is None and asset_band("wvp", {}) is None
    assert asset_band("visual", {"eo:bands": [{"name": "B04"}, {"name": "B03"}, {"name": "B02"}]}) is None


def test_item_files_are_told_from_other_json(tmp_path):
    item = save(earth_search_item(["B04"]), tmp_path / "item.json")
    assert stac_type(item) == "Feature" and detect_format(item) == "stac"
    search = tmp_path / "search.json"  # pystac_client's ItemCollection.save_object: no stac_version of its own
    search.write_text(json.dumps({"type": "FeatureCollection", "features": [json.loads(item.read_text())]}))
    assert stac_type(search) == "FeatureCollection" and detect_format(search) == "stac"
    assert detect_format("https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/x") == "stac"
    geojson = tmp_path / "fields.json"
    geojson.write_text(json.dumps({"type": "Feature", "geometry": None, "properties": {}}))
    with pytest.raises(ProductReadError, match=r"fields.json: unknown product format \(a .json file, but not a STAC "
                                               r"Item or ItemCollection"):
        open_product(geojson)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ProductReadError, match="broken.json: not JSON"):
        open_product(broken)


# --- reading --------------------------------------------------------------------------------------------


def test_earth_search_item_reads_every_band_at_its_resolution_with_the_offset(patch, tmp_path):
    dns = write_cogs(patch, tmp_path, add=1000)  # baseline 04.00 digital numbers
    path = save(earth_search_item(dns), tmp_path / "item.json")
    prod = open_product(path, tile_size=32)
    assert prod.band_names == BANDS
    assert prod.name == "S2A_33UUP_20170613_0_L2A" and prod.product_type == "S2_MSI_Level-2A"
    assert prod.start_time == prod.stop_time == WHEN and prod.crs.to_epsg() == 32633
    assert prod.file_location == str(path)
    for name in BANDS:
        band, dn = prod.band(name), dns[TOKEN[name]]
        with rasterio.open(patch / f"{PATCH[-1]}_{TOKEN[name]}.tif") as ds:
            assert band.shape == ds.shape and band.transform == ds.transform  # native grid, from the file
        assert band.dtype == np.float32 and np.isnan(band.no_data) and band.unit == "dl"
        np.testing.assert_array_equal(band.data.compute(), physical(dn, 0.0001, -0.1))
    assert {b: prod.band(b).resolution[0] for b in ("B1", "B2", "B5", "B8A", "B9")} == \
        {"B1": 60, "B2": 10, "B5": 20, "B8A": 20, "B9": 60}
    # the offset undoes the +1000: the patch's own reflectance, as its band folder reads
    folder = open_product(patch)
    np.testing.assert_allclose(prod.band("B4").data[2:, 2:].compute(), folder.band("B4").data[2:, 2:].compute(),
                               atol=1e-7, rtol=0)
    assets = prod.metadata.element("STAC_Item").element("assets")
    assert assets.element("red").attributes == {"band": "B4", "href": str(tmp_path / "B04.tif"), "scale": 0.0001,
                                                "offset": -0.1, "nodata": 0}
    assert assets.element("red-jp2") is None  # the COG was preferred, the JPEG 2000 not opened
    props = prod.metadata.element("STAC_Item").element("properties").attributes
    assert props["s2:processing_baseline"] == "04.00"


@pytest.mark.parametrize("baseline, offset", [("04.00", -1000.0), ("02.05", 0.0)])
def test_planetary_computer_item_takes_the_offset_from_the_processing_baseline(patch, tmp_path, baseline, offset):
    dns = write_cogs(patch, tmp_path, add=-offset)
    scl = np.random.default_rng(1).integers(0, 12, (60, 60)).astype(np.uint8)
    with rasterio.open(patch / f"{PATCH[-1]}_B05.tif") as ds:
        crs, transform = ds.crs, ds.transform  # the 20 m grid
    with rasterio.open(tmp_path / "SCL.tif", "w", driver="GTiff", width=60, height=60, count=1, dtype="uint8",
                       crs=crs, transform=transform, nodata=0, tiled=True, blockxsize=32, blockysize=32) as out:
        out.write(scl, 1)
    path = save(planetary_item(dns, baseline=baseline, scl="SCL.tif"), tmp_path / "item.json")
    prod = open_product(path, tile_size=32)
    assert prod.band_names == [*BANDS, "quality_scene_classification"]  # no visual, preview or metadata
    for name in BANDS:  # as the SAFE reader: (DN + BOA_ADD_OFFSET) / 10000
        dn = dns[TOKEN[name]]
        expected = ((dn.astype(np.float64) + offset) / 10000.0).astype(np.float32)
        expected[dn == 0] = np.nan
        np.testing.assert_array_equal(prod.band(name).data.compute(), expected)
    assert prod.band("B2").wavelength == 500.0  # eo:bands center_wavelength, µm -> nm
    band = prod.band("quality_scene_classification")
    assert band.dtype == np.uint8 and band.no_data == 0 and band.resolution == (20, 20)
    assert len(band.classes) == 12 and band.classes[9].name == "Cloud high probability"
    np.testing.assert_array_equal(band.data.compute(), scl)
    radiometric = prod.metadata.element("Radiometric").attributes
    assert radiometric["PROCESSING_BASELINE"] == baseline and radiometric["OFFSET_TAG"] == "BOA_ADD_OFFSET"


def test_open_reads_no_pixels(patch, tmp_path, monkeypatch):
    dns = write_cogs(patch, tmp_path)
    path = save(earth_search_item(dns, offset=0.0, baseline="02.05"), tmp_path / "item.json")

    def refuse(*args, **kwargs):
        raise AssertionError("pixels read while building")

    monkeypatch.setattr(LazyRasterBand, "_read", refuse)
    prod = open_product(path, pixel_region="10,20,40,30")
    assert prod.band("B2").shape == (30, 40) and prod.band("B5").shape == (15, 20)
    with pytest.raises(AssertionError, match="pixels read"):  # the pixels go through _read
        prod.band("B2").data.compute()


def test_pystac_item_objects_and_relative_hrefs(patch, tmp_path):
    dns = write_cogs(patch, tmp_path / "cogs", add=1000)
    path = save(earth_search_item(dns, prefix="../cogs/"), tmp_path / "items" / "item.json")
    by_file = open_product(path)  # relative to the item file, not to the working folder
    assert by_file.metadata.element("STAC_Item").element("assets").element("nir").attributes["href"] == \
        str(tmp_path / "cogs" / "B08.tif")
    item = pystac.Item.from_file(str(path))
    by_object = open_product(item, band_names=["B8", "B4"])
    assert by_object.band_names == ["B8", "B4"] and by_object.file_location == str(path)
    np.testing.assert_array_equal(by_object.band("B8").data.compute(), by_file.band("B8").data.compute())
    assert input_paths(path) >= {str(path), str(tmp_path / "cogs" / "B08.tif")}  # writers keep off the assets

    floating = earth_search_item(dns, prefix="../cogs/")  # built in memory: nothing to resolve against
    with pytest.raises(ProductReadError, match=r"STAC item S2A_33UUP_20170613_0_L2A: asset '\w+' has the relative "
                                               r"href '../cogs/B\w+.tif' and the item no location"):
        open_product(floating)


def test_missing_asset_file_is_named_unless_the_band_is_not_read(patch, tmp_path):
    dns = write_cogs(patch, tmp_path)
    path = save(earth_search_item(dns), tmp_path / "item.json")
    (tmp_path / "B11.tif").unlink()  # an interrupted download
    with pytest.raises(ProductReadError) as err:
        open_product(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: 1 asset file(s) missing: asset 'swir16' (B11): ")
    assert str(tmp_path / "B11.tif") in message
    assert open_product(path, band_names=["B4", "B8"]).band_names == ["B4", "B8"]


def test_item_without_sentinel2_bands_is_refused(tmp_path):
    item = pystac.Item("dem", None, None, WHEN, {})
    item.add_asset("data", pystac.Asset("dem.tif", media_type=pystac.MediaType.COG, roles=["data"]))
    item.add_asset("thumbnail", pystac.Asset("t.png", media_type=pystac.MediaType.PNG, roles=["thumbnail"]))
    path = save(item, tmp_path / "dem.json")
    with pytest.raises(ProductReadError, match=r"dem.json: no Sentinel-2 band among the item's assets \(data, "
                                               r"thumbnail\)"):
        open_product(path)


def test_proj_fields_are_checked_against_the_file(patch, tmp_path, caplog):
    dns = write_cogs(patch, tmp_path)
    item = earth_search_item(dns)
    with rasterio.open(tmp_path / "B04.tif") as ds:
        truth = ds.transform
    item.assets["red"].extra_fields.update({"proj:shape": [120, 120], "proj:transform": list(truth)[:6]})
    item.assets["nir"].extra_fields.update({"proj:shape": [120, 120],
                                            "proj:transform": list(truth @ Affine.translation(1, 0))[:6]})
    with caplog.at_level(logging.WARNING, logger="snap_operators.io.stac"):
        prod = open_product(save(item, tmp_path / "item.json"))
    assert prod.band("B8").transform == truth  # the file wins
    warned = [r.getMessage() for r in caplog.records if r.name == "snap_operators.io.stac"]
    assert len(warned) == 1 and "asset 'nir': proj:transform (10.0, 0.0, 404410.0" in warned[0]


def test_item_collections_need_one_item(patch, tmp_path):
    dns = write_cogs(patch, tmp_path)
    first = earth_search_item(dns).to_dict(include_self_link=False, transform_hrefs=False)
    second = earth_search_item(dns, item_id="S2A_33UUP_20170703_0_L2A",
                               when=dt.datetime(2017, 7, 3, 10, tzinfo=dt.timezone.utc)).to_dict(
        include_self_link=False, transform_hrefs=False)
    two = tmp_path / "search.json"
    two.write_text(json.dumps({"type": "FeatureCollection", "features": [first, second]}))
    with pytest.raises(ProductReadError) as err:
        open_product(two)
    assert str(err.value).startswith(f"{two}: an ItemCollection of 2 items (dates 2017-06-13, 2017-07-03); ")
    assert "snap-pc timeseries" in str(err.value) and "\n" not in str(err.value)
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"type": "FeatureCollection", "features": [first]}))
    assert open_product(one).name == "S2A_33UUP_20170613_0_L2A"
    loose = pystac.ItemCollection.from_file(str(one))  # pystac gives its items no location: relative hrefs fail
    with pytest.raises(ProductReadError, match="asset 'coastal' has the relative href 'B01.tif' and the item no "
                                               "location to resolve it against"):
        open_product(loose)

    written = write_items(two, tmp_path / "items")  # what snap-pc timeseries reads, one item per date
    assert [p.name for p in written] == ["S2A_33UUP_20170613_0_L2A.json", "S2A_33UUP_20170703_0_L2A.json"]
    moved = json.loads(written[1].read_text())
    assert moved["assets"]["red"]["href"] == str(tmp_path / "B04.tif")  # resolved against the collection
    assert open_product(written[1]).start_time == dt.datetime(2017, 7, 3, 10, tzinfo=dt.timezone.utc)
    absolute = pystac.ItemCollection([pystac.Item.from_file(str(written[0]))])
    assert open_product(absolute).band_names == BANDS


def test_read_takes_an_item_url(patch, tmp_path, monkeypatch):
    """Read's `file` may be an http(s) URL; the JSON is fetched (here: served from memory), no path check."""
    dns = write_cogs(patch, tmp_path)
    # file:// hrefs: a plain "/tmp/..." in a JSON served over https means that path on the server
    item = earth_search_item(dns, prefix=f"{tmp_path.as_uri()}/")
    data = json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)).encode()
    asked = []

    def urlopen(request, timeout):
        asked.append(request.full_url)
        return io.BytesIO(data)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    url = "https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/S2A_33UUP_20170613_0_L2A"
    ctx = ExecutionContext(tile_size=32)
    prod = Read.create(None, {"file": url, "useAdvancedOptions": "true", "bandNames": "B4"}, context=ctx).initialize()
    assert prod.band_names == ["B4"] and prod.file_location == url and asked[0] == url
    np.testing.assert_array_equal(prod.band("B4").data.compute(), physical(dns["B04"], 0.0001, -0.1))
    assert len(asked) == 1  # fetched once, not again to list the input files
    assert open_product(url, format_name="STAC").name == "S2A_33UUP_20170613_0_L2A"
    with pytest.raises(ProductReadError, match="formatName 'GeoTIFF' reads files"):
        open_product(url, format_name="GeoTIFF")


def test_remote_asset_headers_are_opened_at_once(patch, tmp_path, monkeypatch):
    """An item's remote assets are opened on several threads: each open is an HTTP round trip or more."""
    import threading
    import time

    from snap_operators.io import stac

    dns = write_cogs(patch, tmp_path)
    item = earth_search_item(dns, prefix="https://example.com/tiles/")
    real, lock, running, peak = stac._band_source, threading.Lock(), [0], [0]

    def remote(band, key, asset, path, item_, md, where):
        assert path.startswith("/vsicurl/https://example.com/tiles/")
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)  # the round trip
        with lock:
            running[0] -= 1
        return real(band, key, asset, str(tmp_path / path.rsplit("/", 1)[1]), item_, md, where)

    monkeypatch.setattr(stac, "_band_source", remote)
    prod = open_product(item)
    assert peak[0] > 1
    assert prod.band_names[:3] == ["B1", "B2", "B3"] and len(prod.band_names) == len(dns)  # band order kept


# --- a graph -------------------------------------------------------------------------------------------


def test_classifier_graph_maps_the_item_as_its_band_folder(patch, tmp_path, run_cli):
    """The shipped S2 graph on a STAC item of the patch's COGs writes the class map it writes from the patch's
    band folder (same DN; Earth Search's pre-04.00 scale 0.0001 and offset 0)."""
    dns = write_cogs(patch, tmp_path / "cogs", nodata_corner=False)
    item = save(earth_search_item(dns, offset=0.0, baseline="02.05"), tmp_path / "cogs" / "item.json")
    graph = ROOT / "graphs" / "progressive_classifier_s2.xml"
    maps = {}
    for name, source in (("stac", item), ("folder", patch)):
        code, _, err = run_cli("run", graph, f"-Pinput={source}", f"-Poutput={tmp_path / name}", "-Plabels=",
                               "--tile-size", 64)
        assert code == 0, err
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            maps[name] = (ds.read(1), ds.transform, ds.crs)
    np.testing.assert_array_equal(maps["stac"][0], maps["folder"][0])
    assert maps["stac"][1:] == maps["folder"][1:]
    assert len(np.unique(maps["stac"][0])) > 1  # a real map, not one class
