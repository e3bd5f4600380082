"""Fixtures of the API tests: one small synthetic scene for the whole folder."""

from __future__ import annotations

import pytest

#: Edge (pixels) and seed of the synthetic scene: one 256 px chunk, as the graphs' default tiles read it.
SIZE, SEED = 256, 0


@pytest.fixture(scope="session")
def scene(tmp_path_factory):
    """``{"s2": ..., "s1": ..., "truth": ...}``: paths of a 256 px synthetic scene (seed 0), written once."""
    from snap_operators.apps.synth import write_synthetic_scene

    return write_synthetic_scene(tmp_path_factory.mktemp("api") / "scene", SIZE, SEED)


#: Earth Search v1 asset keys of the synthetic scene's bands.
EARTH_SEARCH_KEYS = {"B2": "blue", "B3": "green", "B4": "red", "B5": "rededge1", "B6": "rededge2", "B7": "rededge3",
                     "B8": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22"}


@pytest.fixture(scope="session")
def stac_item(scene, tmp_path_factory):
    """A local STAC item of the synthetic scene, as Earth Search serves an L2A scene of baseline 04.00: one
    tiled GeoTIFF per band in digital numbers (reflectance * 10000 + 1000), ``raster:bands`` scale 0.0001
    and offset -0.1, ``eo:bands`` common names, relative hrefs. Returns the item file's path."""
    import datetime as dt
    import json

    import numpy as np
    import pystac
    import rasterio

    folder = tmp_path_factory.mktemp("stac")
    with rasterio.open(scene["s2"]) as ds:
        profile = dict(driver="GTiff", width=ds.width, height=ds.height, count=1, dtype="uint16", crs=ds.crs,
                       transform=ds.transform, nodata=0, tiled=True, blockxsize=128, blockysize=128,
                       compress="deflate")
        reflectance = {name: ds.read(i + 1) for i, name in enumerate(ds.descriptions)}
    item = pystac.Item("S2B_38SLF_20230710_0_L2A", None, None, dt.datetime(2023, 7, 10, 7, 46, 21, tzinfo=dt.timezone.utc),
                       {"s2:product_type": "S2MSI2A", "s2:processing_baseline": "05.09"}, collection="sentinel-2-l2a")
    for band, key in EARTH_SEARCH_KEYS.items():
        dn = np.round(reflectance[band] * 10000 + 1000).astype(np.uint16)
        with rasterio.open(folder / f"{band}.tif", "w", **profile) as out:
            out.write(dn, 1)
        fields = {"eo:bands": [{"name": key, "common_name": key.rstrip("123")}],
                  "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}]}
        item.add_asset(key, pystac.Asset(f"{band}.tif", media_type=pystac.MediaType.COG, roles=["data"],
                                         extra_fields=fields))
    path = folder / "item.json"
    path.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)), encoding="utf-8")
    return path
