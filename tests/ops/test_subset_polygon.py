"""Subset: SNAP's own SubsetOpTest cases, polygonRegion/vectorFile and tiePointGrids.

The product mirrors SubsetOpTest.createTestProduct(100, 100): bands radiance_1 (int32, 1),
radiance_2 (float32, 2.5), radiance_3 (int16, 6; here already scaled by 0.5 to 3.0, the engine
holds physical values), pixel centres (0.5, 0.5) at 10N 10W and (99.5, 99.5) at 10S 10E.
"""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from snap_operators.core.errors import SnapPcError
from snap_operators.core.context import ExecutionContext
from snap_operators.core.product import Band, Product
from snap_operators.ops.subset import SubsetOp

WGS84 = CRS.from_epsg(4326)
T_SNAP = Affine(20 / 99, 0, -10 - 10 / 99, 0, -20 / 99, 10 + 10 / 99)
PENTAGON = "POLYGON((-8.08 8.08, -8.08 -8.09, 8.09 -8.09, 9.11 1.01, 8.09 8.08, -8.08 8.08))"
BOX5 = "POLYGON((-5 5, 5 5, 5 -5, -5 -5, -5 5))"
IDX = np.arange(100 * 100, dtype=np.int32).reshape(100, 100)


def snap_product(no_data_1=None, chunks=32) -> Product:
    p = Product("p", "t", crs=WGS84)
    p.add_band(Band("radiance_1", da.from_array(IDX + 1, chunks=chunks), T_SNAP, no_data_1))
    p.add_band(Band("radiance_2", da.from_array(np.full((100, 100), 2.5, np.float32), chunks=32), T_SNAP,
                    float("nan")))
    p.add_band(Band("radiance_3", da.from_array(np.full((100, 100), 3.0, np.float32), chunks=32), T_SNAP,
                    float("nan")))
    return p


def subset(p: Product, **params) -> Product:
    raw = {k: str(v) for k, v in params.items()}
    return SubsetOp.create({"sourceProduct": p}, raw, context=ExecutionContext(tile_size=32)).initialize()


def bbox(x, y, w, h) -> str:
    return f"POLYGON(({x} {y}, {x + w} {y}, {x + w} {y + h}, {x} {y + h}, {x} {y}))"


# --- SubsetOpTest -----------------------------------------------------------------------------


def test_geometry():
    # testGeometry: region (25, 25, 50, 50).
    out = subset(snap_product(), bandNames="radiance_1,radiance_3", geoRegion=BOX5)
    assert list(out.bands) == ["radiance_1", "radiance_3"]
    np.testing.assert_array_equal(out.bands["radiance_1"].data.compute(), IDX[25:75, 25:75] + 1)


def test_instantiation_with_gpf_full_swath():
    # testInstantiationWithGPF: geoRegion + fullSwath + sourceBands -> 100 x 50, one band.
    out = subset(snap_product(), geoRegion=BOX5, fullSwath="true", sourceBands="radiance_3")
    assert list(out.bands) == ["radiance_3"]
    assert out.bands["radiance_3"].shape == (50, 100)


@pytest.mark.parametrize("params", [{}, {"sourceBands": "radiance_3"}])
def test_polygon_subset(params):
    # testSetPolygonForSubset2 / testInstantiationWithGPFForPolygonSubset2: 85 x 80.
    out = subset(snap_product(), polygonRegion=PENTAGON, **params)
    for band in out.bands.values():
        assert band.shape == (80, 85)
    assert len(out.bands) == (1 if params else 3)


def test_computation_of_pixel_regions_on_a_north_up_grid():
    # testComputationOfProductGeometriesAndPixelRegions: a 360 x 180 lon/lat grid with rows going north,
    # subset to (130, 65, 100, 50), then geometries on that subset.
    grid = Affine(1, 0, -180, 0, 1, -90)
    p = Product("N", "T", crs=WGS84)
    p.add_band(Band("b", da.from_array(np.arange(180 * 360, dtype=np.float32).reshape(180, 360), chunks=64),
                    grid, float("nan")))
    whole = subset(p, geoRegion=bbox(-180, -90, 360, 180))
    assert whole.bands["b"] is p.bands["b"]  # Rectangle(360, 180): the whole product
    sub = subset(p, region="130,65,100,50")
    expected = {bbox(0, 0, 10, 10): (50, 25, 10, 10), bbox(45.5, 20.5, 100, 50): (95, 45, 5, 5),
                bbox(-180, -90, 360, 180): (0, 0, 100, 50)}
    data = sub.bands["b"].data.compute()
    for wkt, (x, y, w, h) in expected.items():
        out = subset(sub, geoRegion=wkt).bands["b"]
        np.testing.assert_array_equal(out.data.compute(), data[y:y + h, x:x + w], err_msg=wkt)
    # "BBOX not contained": SNAP returns an empty product; the engine stops with one line.
    with pytest.raises(SnapPcError, match="does not intersect"):
        subset(sub, geoRegion=bbox(60, 0, 10, 10))


def test_empty_region_and_full_swath_without_region_mean_the_whole_product():
    # testEmptyRegionFails, testFullSwathWithNoRegion.
    p = snap_product()
    assert subset(p, region="0,0,0,0").bands["radiance_1"].shape == (100, 100)
    assert subset(p, fullSwath="true").bands["radiance_1"].shape == (100, 100)


# --- polygon masking ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [32, 4])  # 4: whole blocks inside and outside the polygon take shortcuts
def test_polygon_masks_with_each_bands_no_data(chunks):
    out = subset(snap_product(no_data_1=None, chunks=chunks), polygonRegion=PENTAGON)
    r1 = out.bands["radiance_1"].data.compute()
    r2 = out.bands["radiance_2"].data.compute()
    poly = shapely.Polygon([(90, 10), (95, 45), (90, 90), (10, 90), (10, 10)])  # source pixels, truncated
    keep = np.array([[poly.distance(shapely.Point(c, r)) <= 0.75 for c in range(10, 95)] for r in range(10, 90)])
    assert 0 < keep.sum() < keep.size
    # An int band without no-data gets SNAP's default no-data value 0; a float band its NaN.
    np.testing.assert_array_equal(r1, np.where(keep, IDX[10:90, 10:95] + 1, 0))
    np.testing.assert_array_equal(np.isnan(r2), ~keep)
    assert out.bands["radiance_1"].no_data is None
    masked = subset(snap_product(no_data_1=-7), polygonRegion=PENTAGON).bands["radiance_1"].data.compute()
    assert (masked[~keep] == -7).all() and (masked[keep] > 0).all()


def test_polygon_resets_sub_sampling_and_wins_over_geo_region(caplog):
    with caplog.at_level(logging.WARNING, logger="snap_operators.ops.subset"):
        out = subset(snap_product(), polygonRegion=PENTAGON, geoRegion=BOX5, region="0,0,5,5",
                     subSamplingX=2, subSamplingY=3)
    assert out.bands["radiance_1"].shape == (80, 85)
    assert "reset to 1" in caplog.text


def test_polygon_with_full_swath():
    out = subset(snap_product(), polygonRegion=PENTAGON, fullSwath="true")
    assert out.bands["radiance_1"].shape == (80, 100)
    r1 = out.bands["radiance_1"].data.compute()
    assert (r1[:, :10] == 0).all() and (r1[:, 96:] == 0).all()  # outside the polygon, left and right


def test_vector_file_pixel_coordinates(tmp_path):
    f = tmp_path / "p.wkt"
    f.write_text(" POLYGON((20 30, 40 30, 40 50, 20 50, 20 30))")
    out = subset(snap_product(), vectorFile=f)
    np.testing.assert_array_equal(out.bands["radiance_1"].data.compute(), IDX[30:50, 20:40] + 1)


def test_polygon_on_multi_size_with_reference_band():
    # A 20 m-like band at half the resolution: the polygon is taken to the reference band's pixels
    # (vertices truncated) and the region scaled to the other bands.
    p = snap_product()
    coarse = np.arange(50 * 50, dtype=np.float32).reshape(50, 50)
    p.add_band(Band("coarse", da.from_array(coarse, chunks=16), T_SNAP @ Affine.scale(2), float("nan")))
    box = "POLYGON((-6 6, 6 6, 6 -6, -6 -6, -6 6))"  # 10 m pixels 20.3..79.7 -> 20 m pixels 10.15..39.85
    out = subset(p, polygonRegion=box, referenceBand="coarse", sourceBands="radiance_1")
    assert list(out.bands) == ["radiance_1", "coarse"]
    c = out.bands["coarse"].data.compute()
    assert c.shape == (29, 29)  # int(39.85) - int(10.15) = 29
    np.testing.assert_array_equal(c, coarse[10:39, 10:39])
    r1 = out.bands["radiance_1"].data.compute()
    assert r1.shape == (58, 58)
    np.testing.assert_array_equal(r1, IDX[20:78, 20:78] + 1)


# --- tie-point grids ----------------------------------------------------------------------------


def test_tie_point_grids():
    p = snap_product()
    out = subset(p, sourceBands="radiance_1", tiePointGrids="radiance_3")
    assert list(out.bands) == ["radiance_1", "radiance_3"]  # SNAP's node list takes any raster name
    with pytest.raises(SnapPcError, match="no raster named latitude") as info:
        subset(p, tiePointGridNames="latitude")
    assert "\n" not in str(info.value)
