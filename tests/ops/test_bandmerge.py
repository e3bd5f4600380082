"""BandMerge: band order, SNAP's renaming of duplicates, sourceBands, grid compatibility checks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from snap_operators.core.errors import OperatorError, ParameterError
from snap_operators.core.product import Band, Product
from snap_operators.ops.bandmerge import BandMergeOp, grid_mismatch
from snap_operators.ops.resample import ResampleOp

UTM = CRS.from_epsg(32633)
T10 = Affine(10, 0, 330000.0, 0, -10, 5822040.0)


def product(name, bands, transform=T10, shape=(6, 8), crs=UTM) -> Product:
    p = Product(name, product_type=name.upper(), crs=crs)
    p.metadata.add_element(f"{name}_meta")
    for i, b in enumerate(bands):
        p.bands[b] = Band(b, da.full(shape, float(i + 1), chunks=4), transform)
    return p


def merge(*products, **params) -> Product:
    sources = {("sourceProduct" + (f".{i}" if i else "")): p for i, p in enumerate(products)}
    return BandMergeOp.create(sources, {k: str(v) for k, v in params.items()}).initialize()


def test_merges_in_source_order_and_keeps_master_identity():
    a, b = product("a", ["B2", "B3"]), product("b", ["NDVI"])
    out = merge(a, b)
    assert list(out.bands) == ["B2", "B3", "NDVI"]
    assert out.bands["NDVI"] is b.bands["NDVI"] and out.bands["B2"] is a.bands["B2"]
    assert out.name == "a" and out.product_type == "A" and out.crs == UTM
    assert out.metadata.element("a_meta") is not None and out.metadata.element("b_meta") is None


def test_duplicate_names_get_snap_suffixes():
    a, b, c = product("a", ["B2", "B3"]), product("b", ["B2"]), product("c", ["B2", "B3"])
    out = merge(a, b, c)
    assert list(out.bands) == ["B2", "B3", "B2_2", "B2_3", "B3_2"]
    assert out.bands["B2_2"].data is b.bands["B2"].data
    assert out.bands["B2_3"].name == "B2_3" and c.bands["B2"].name == "B2"  # sources untouched


def test_source_bands_filter():
    a, b = product("a", ["B2", "B3", "B4"]), product("b", ["NDVI", "lai"])
    out = merge(a, b, sourceBands="B4,NDVI,B2")
    assert list(out.bands) == ["B2", "B4", "NDVI"]
    with pytest.raises(ParameterError, match="B9") as exc:
        merge(a, b, sourceBands="B2,B9")
    assert "\n" not in str(exc.value)


def test_size_mismatch_is_a_one_line_error():
    a, b = product("a", ["B2"]), product("b", ["NDVI"], shape=(6, 9))
    with pytest.raises(OperatorError, match=r"'b'.*size 9x6 differs from 8x6") as exc:
        merge(a, b)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("BandMerge")


def test_geographic_error_tolerance():
    a = product("a", ["B2"])
    shifted = product("b", ["X"], transform=Affine(10, 0, 330010.0, 0, -10, 5822040.0))  # one pixel east
    with pytest.raises(OperatorError, match="geographicError"):
        merge(a, shifted)
    assert merge(a, shifted, geographicError=0.001).band_names == ["B2", "X"]
    nudged = product("c", ["Y"], transform=Affine(10, 0, 330000.1, 0, -10, 5822040.0))  # 0.1 m ~ 1.5e-6 deg
    assert merge(a, nudged).band_names == ["B2", "Y"]


def test_same_grid_in_another_crs_description_is_compatible():
    a = product("a", ["B2"])
    b = product("b", ["X"], crs=CRS.from_wkt(UTM.to_wkt()))
    assert grid_mismatch(a, b, 1e-5) is None
    c = product("c", ["Y"], crs=CRS.from_epsg(32632))  # same numbers, another zone: far away
    assert "corner pixels differ" in grid_mismatch(a, c, 1e-5)


def test_products_without_crs_compare_in_crs_units():
    a = product("a", ["B2"], crs=None)
    b = product("b", ["X"], transform=Affine(10, 0, 330000.5, 0, -10, 5822040.0), crs=None)
    assert "CRS units" in grid_mismatch(a, b, 1e-5)
    assert grid_mismatch(a, b, 1.0) is None
    assert "geocoding" in grid_mismatch(a, product("c", ["Z"], transform=None, crs=None), 1e-5)


def test_real_s2_bands_merged_with_a_derived_band(shared_data):
    folder = shared_data("bigearthnet", "BigEarthNet-S2-Example", "S2A_MSIL2A_20170613T101031_87_48")
    from snap_operators.io import open_product

    s2 = ResampleOp.create({"sourceProduct": open_product(folder)}, {"referenceBand": "B2"}).initialize()
    derived = Product("ndvi", crs=s2.crs)
    b4, b8 = s2.bands["B4"].data, s2.bands["B8"].data
    derived.bands["NDVI"] = Band("NDVI", (b8 - b4) / (b8 + b4), s2.bands["B2"].transform)
    out = merge(derived, s2, sourceBands="NDVI,B4,B8")
    assert list(out.bands) == ["NDVI", "B4", "B8"]
    ndvi = out.bands["NDVI"].data.compute()
    assert ndvi.shape == (120, 120) and np.isfinite(ndvi).all() and (np.abs(ndvi) <= 1).all()
