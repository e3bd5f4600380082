"""Products <-> xarray.Dataset (snap_operators.api.xarray): lazy, georeferenced, legends kept, both ways."""

from __future__ import annotations

import datetime as dt
import json
import math

import dask.array as da
import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from snap_operators.api import from_xarray, open_product, to_xarray
from snap_operators.core.errors import OperatorError
from snap_operators.core.legend import LAND_COVER, MASKED_INFO, UNCLASSIFIED_INFO
from snap_operators.core.product import Band, Product

xr = pytest.importorskip("xarray")
pytest.importorskip("rioxarray")

T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5800000.0)
CLASSES = [UNCLASSIFIED_INFO, *LAND_COVER, MASKED_INFO]


def _untouchable(shape, dtype):
    """A Dask array whose every chunk raises when computed: proves a conversion computes nothing."""

    def boom(block):
        raise AssertionError("a pixel was computed")

    return da.zeros(shape, dtype=dtype, chunks=16).map_blocks(boom, dtype=dtype)


def _product(transform=T, crs=CRS.from_epsg(32633), data=None) -> Product:
    start = dt.datetime(2023, 7, 10, 7, 46, 21, tzinfo=dt.timezone.utc)
    p = Product("scene", "S2_TEST", crs=crs, start_time=start, stop_time=start, description="a test scene")
    p.metadata.add_element("SpectralIndices", indices="NDVI", saviL=0.5).add_element("When", at=start)
    p.add_band(Band("B4", data if data is not None else _untouchable((40, 30), np.float32), transform,
                    float("nan"), unit="1", description="red", wavelength=665.0))
    p.add_band(Band("class_id", _untouchable((40, 30), np.uint8), transform, 255, description="classes",
                    classes=CLASSES, valid_expression="class_id != 255"))
    return p


def test_to_xarray_is_lazy_georeferenced_and_keeps_band_attributes():
    p = _product()
    ds = to_xarray(p)  # nothing computed: the arrays raise if anything is
    assert list(ds.data_vars) == ["B4", "class_id"]
    assert ds.B4.dims == ("y", "x") and ds.B4.shape == (40, 30)
    # the bands' own Dask graphs (same keys), not copies
    assert ds.B4.data.name == p.band("B4").data.name and ds.class_id.data.name == p.band("class_id").data.name
    # pixel centres from the corner transform
    assert ds.x.values[0] == 500005.0 and ds.x.values[-1] == 500000.0 + 10 * 29.5
    assert ds.y.values[0] == 5799995.0 and ds.y.values[-1] == 5800000.0 - 10 * 39.5
    assert ds.rio.crs.to_epsg() == 32633
    assert ds.rio.transform() == T and ds.rio.transform(recalc=True) == T  # stored and from the coordinates
    assert (ds.rio.x_dim, ds.rio.y_dim) == ("x", "y")
    assert math.isnan(ds.B4.rio.nodata) and ds.class_id.rio.nodata == 255
    assert ds.B4.attrs["units"] == "1" and ds.B4.attrs["description"] == "red" and ds.B4.attrs["wavelength"] == 665.0
    attrs = ds.class_id.attrs
    assert attrs["flag_values"].tolist() == [0, 1, 2, 3, 4, 5, 254] and attrs["flag_values"].dtype == np.uint8
    assert attrs["flag_meanings"].split()[:3] == ["Unclassified", "Water", "Bare_Soil"]
    legend = json.loads(attrs["classes"])
    assert legend["1"] == {"name": "Water", "color": "#0070ff", "description": LAND_COVER[0].description}
    assert legend["254"]["name"] == MASKED_INFO.name
    assert attrs["valid_pixel_expression"] == "class_id != 255"
    assert ds.attrs["product_name"] == "scene" and ds.attrs["start_time"] == "2023-07-10T07:46:21+00:00"
    # every attribute is of a type netCDF, Zarr and GeoTIFF tags can store
    for var in [ds, ds.B4, ds.class_id]:
        for k, v in var.attrs.items():
            assert isinstance(v, (str, int, float, np.ndarray, np.generic)), (k, type(v))


def test_round_trip_keeps_grid_crs_no_data_classes_times_and_metadata():
    p = _product()
    q = from_xarray(to_xarray(p))
    assert q.band_names == p.band_names and q.name == p.name and q.product_type == p.product_type
    assert q.crs == p.crs and q.start_time == p.start_time and q.stop_time == p.stop_time
    assert q.description == p.description
    for name in p.band_names:
        a, b = p.band(name), q.band(name)
        assert b.data.name == a.data.name  # the same lazy array (Dask keys), not a copy
        assert b.transform == a.transform and b.shape == a.shape and b.dtype == a.dtype
        assert b.unit == a.unit and b.description == a.description and b.wavelength == a.wavelength
        assert b.valid_expression == a.valid_expression
    assert math.isnan(q.band("B4").no_data) and q.band("class_id").no_data == 255
    assert q.band("class_id").classes == CLASSES
    el = q.metadata.element("SpectralIndices")
    assert el.attributes == {"indices": "NDVI", "saviL": 0.5}
    assert el.element("When").attributes["at"] == p.start_time  # a date comes back as a date


def test_round_trip_is_exact_for_degrees_and_follows_selections():
    deg = 8.983152841195214e-05  # 10 m in degrees: centres and back do not give these bits by arithmetic
    t = Affine(deg, 0.0, 44.1234567, 0.0, -deg, 36.3456789)
    data = da.from_array(np.arange(40 * 30, dtype=np.float32).reshape(40, 30), chunks=16)
    p = _product(t, CRS.from_epsg(4326), data)
    ds = to_xarray(p)
    assert from_xarray(ds).band("B4").transform == t
    window = from_xarray(ds.isel(x=slice(5, 25), y=slice(3, 13)))
    assert window.band("B4").transform.almost_equals(t @ Affine.translation(5, 3), precision=1e-12)
    np.testing.assert_array_equal(window.band("B4").data.compute(), data[3:13, 5:25].compute())
    # every other pixel: the grid follows the coordinates, double pixels centred on the ones kept
    coarse = from_xarray(ds.isel(x=slice(None, None, 2), y=slice(None, None, 2)))
    expected = Affine(2 * deg, 0, t.c - deg / 2, 0, -2 * deg, t.f + deg / 2)
    assert coarse.band("B4").transform.almost_equals(expected, precision=1e-12)


def test_multi_size_products_are_refused_with_how_to_resample():
    p = _product()
    p.add_band(Band("B11", _untouchable((20, 15), np.float32), Affine(20.0, 0, 500000.0, 0, -20.0, 5800000.0),
                    float("nan")))
    with pytest.raises(OperatorError, match=r"2 grids .*resample\(product, referenceBand='B4'\).*bands=\[") as e:
        to_xarray(p)
    assert "\n" not in str(e.value)
    assert list(to_xarray(p, bands=["B11"]).data_vars) == ["B11"]  # the bands of one grid


def test_rotated_grids_are_refused():
    p = _product(Affine(10.0, 1.0, 500000.0, 0.0, -10.0, 5800000.0))
    with pytest.raises(OperatorError, match="rotated or sheared"):
        to_xarray(p)


def test_from_xarray_takes_plain_and_rioxarray_data(scene):
    rioxarray = pytest.importorskip("rioxarray")
    # rioxarray's (band, y, x) array: one band per layer, named by the file's band descriptions
    raster = rioxarray.open_rasterio(scene["s2"], chunks={"band": 1, "y": 128, "x": 128})
    p = from_xarray(raster)
    ref = open_product(scene["s2"])
    assert p.band_names == ref.band_names and p.crs == ref.crs
    assert p.band("B4").transform == ref.band("B4").transform and p.band("B4").unit == ref.band("B4").unit == "1"
    np.testing.assert_array_equal(p.band("B4").data.compute(), ref.band("B4").data.compute())
    # a numpy-backed Dataset built by hand: chunked on the way in; CF flags without colours read as classes
    values = np.array([[1, 2], [255, 3]], np.uint8)
    ds = xr.Dataset({"cls": (("y", "x"), values, {"flag_values": [1, 2, 3], "flag_meanings": "Water Bare_Soil Trees",
                                                  "_FillValue": 255})},
                    coords={"x": [5.0, 15.0], "y": [25.0, 15.0]})
    q = from_xarray(ds)
    band = q.band("cls")
    assert isinstance(band.data, da.Array) and band.transform == Affine(10, 0, 0, 0, -10, 30) and q.crs is None
    assert band.no_data == 255 and [c.name for c in band.classes] == ["Water", "Bare Soil", "Trees"]
    # stored values with a scale (rioxarray without mask_and_scale) become physical values, no-data NaN
    dn = xr.DataArray(np.array([[0, 1000], [2000, 3000]], np.uint16), dims=("y", "x"), name="B8",
                      coords={"x": [5.0, 15.0], "y": [25.0, 15.0]},
                      attrs={"scale_factor": 1e-4, "add_offset": -0.1, "_FillValue": 0})
    b8 = from_xarray(dn).band("B8")
    np.testing.assert_allclose(b8.data.compute(), [[np.nan, 0.0], [0.1, 0.2]], atol=1e-6)
    assert math.isnan(b8.no_data)


def test_from_xarray_refuses_what_is_no_band():
    ds = xr.Dataset({"v": (("time", "y", "x"), np.zeros((2, 3, 3)))}, coords={"x": [0.5, 1.5, 2.5], "y": [2.5, 1.5, 0.5]})
    with pytest.raises(OperatorError, match=r"'v' has dims \('time', 'y', 'x'\).*isel"):
        from_xarray(ds)
    uneven = xr.Dataset({"v": (("y", "x"), np.zeros((2, 3)))}, coords={"x": [0.0, 1.0, 3.0], "y": [1.0, 0.0]})
    with pytest.raises(OperatorError, match="not evenly spaced"):
        from_xarray(uneven)


def test_products_without_geocoding_convert_both_ways():
    p = Product("plain")
    p.add_band(Band("v", da.arange(12, dtype=np.float32, chunks=6).reshape(3, 4), None, None))
    ds = to_xarray(p)
    assert ds.v.dims == ("y", "x") and "x" not in ds.coords and ds.rio.crs is None
    q = from_xarray(ds)
    assert q.crs is None and q.band("v").transform is None and q.band("v").no_data is None
    np.testing.assert_array_equal(q.band("v").data.compute(), p.band("v").data.compute())
