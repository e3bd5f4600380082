"""GeoTIFF reading, lazy windows and the Read operator, on generated files."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import dask
import numpy as np
import pytest
from affine import Affine

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import OperatorError, ProductReadError, SnapPcError
from snap_operators.io import detect_format, input_paths, open_product, raster_bands
from snap_operators.io.geotiff import read_geotiff
from snap_operators.io.raster_bands import LazyRasterBand, lazy_band_array
from snap_operators.io.times import parse_datetime
from snap_operators.ops.read import Read

#: The grid of conftest's write_tif: 10 m pixels from this corner on EPSG:32633.
ORIGIN = (500000.0, 5800000.0)


@pytest.fixture
def rng():
    return np.random.default_rng(42)


# --- GeoTIFF ---------------------------------------------------------------------------


def test_band_names_from_descriptions_else_numbered(write_tif, tmp_path, rng):
    a = rng.random((20, 30), dtype=np.float32)
    p = write_tif(tmp_path / "named.tif", [a, a * 2, a * 3], descriptions=["red", None, "nir"])
    prod = open_product(p)
    assert prod.band_names == ["red", "band_2", "nir"]
    np.testing.assert_array_equal(prod.band("band_2").data.compute(), a * 2)
    assert prod.name == "named"
    assert prod.crs.to_epsg() == 32633
    assert prod.band("red").transform == Affine(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1])


def test_float_nodata_becomes_nan(write_tif, tmp_path, rng):
    a = rng.random((16, 16), dtype=np.float32)
    a[3, 4] = -9999.0
    prod = open_product(write_tif(tmp_path / "nd.tif", [a], nodata=-9999.0))
    band = prod.band("band_1")
    out = band.data.compute()
    assert np.isnan(out[3, 4]) and np.isnan(band.no_data)
    assert np.isnan(out).sum() == 1
    np.testing.assert_array_equal(out[~np.isnan(out)], a[a != -9999.0])


def test_integer_without_scale_stays_integer_with_its_nodata(write_tif, tmp_path, rng):
    a = rng.integers(-50, 50, (12, 10)).astype(np.int16)
    prod = open_product(write_tif(tmp_path / "i16.tif", [a], nodata=-32768))
    band = prod.band("band_1")
    assert band.dtype == np.int16 and band.no_data == -32768
    np.testing.assert_array_equal(band.data.compute(), a)


def test_scale_offset_give_physical_float32(write_tif, tmp_path, rng):
    dn = rng.integers(1, 12000, (25, 33)).astype(np.uint16)
    dn[0, 0] = 0
    p = write_tif(tmp_path / "scaled.tif", [dn], nodata=0, scales=[0.0001], offsets=[-0.1], units=["dl"])
    band = open_product(p).band("band_1")
    assert band.dtype == np.float32 and band.unit == "dl"
    out = band.data.compute()
    expected = ((dn.astype(np.float64) - 1000) / 10000).astype(np.float32)
    assert np.isnan(out[0, 0])
    np.testing.assert_array_equal(out.ravel()[1:], expected.ravel()[1:])


def test_class_band_from_colormap_and_class_names(write_tif, tmp_path, rng):
    labels = rng.integers(0, 4, (20, 20)).astype(np.uint8)
    names = {"0": "no data", "1": "water", "2": "forest", "3": "urban"}
    cmap = {0: (0, 0, 0, 255), 1: (0, 0, 255, 255), 2: (0, 128, 0, 255), 3: (200, 0, 0, 255)}
    p = write_tif(tmp_path / "classes.tif", [labels], descriptions=["land_cover"],
                  band_tags={1: {"CLASS_NAMES": json.dumps(names)}}, colormap=cmap)
    band = open_product(p).band("land_cover")
    assert band.dtype == np.uint8
    assert [(c.value, c.name, c.color) for c in band.classes] == [
        (0, "no data", (0, 0, 0)), (1, "water", (0, 0, 255)), (2, "forest", (0, 128, 0)), (3, "urban", (200, 0, 0))
    ]
    np.testing.assert_array_equal(band.data.compute(), labels)


def test_colormap_without_class_names_is_not_a_class_band(write_tif, tmp_path):
    p = write_tif(tmp_path / "cmap.tif", [np.zeros((4, 4), np.uint8)], colormap={0: (1, 2, 3, 255)})
    assert open_product(p).band("band_1").classes is None


def test_times_and_tags(write_tif, tmp_path):
    a = np.zeros((4, 4), np.float32)
    p = write_tif(tmp_path / "t.tif", [a], tags={"PRODUCT_START_TIME": "2021-09-08T04:27:01.024Z",
                                                  "PRODUCT_STOP_TIME": "2021-09-08T04:27:05Z",
                                                  "MISSION": "Sentinel-2A"})
    prod = open_product(p)
    assert prod.start_time == dt.datetime(2021, 9, 8, 4, 27, 1, 24000, tzinfo=dt.timezone.utc)
    assert prod.stop_time == dt.datetime(2021, 9, 8, 4, 27, 5, tzinfo=dt.timezone.utc)
    tiff = prod.metadata.element("TIFF_Metadata")
    assert tiff.attributes["MISSION"] == "Sentinel-2A"

    p2 = write_tif(tmp_path / "t2.tif", [a], tags={"TIFFTAG_DATETIME": "2020:01:02 03:04:05"})
    assert open_product(p2).start_time == dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def test_parse_datetime_forms():
    utc = dt.timezone.utc
    assert parse_datetime("2024-01-01T10:24:31.024Z") == dt.datetime(2024, 1, 1, 10, 24, 31, 24000, tzinfo=utc)
    assert parse_datetime("2017-06-13 10:10:31") == dt.datetime(2017, 6, 13, 10, 10, 31, tzinfo=utc)
    assert parse_datetime("2015-07-11") == dt.datetime(2015, 7, 11, tzinfo=utc)
    assert parse_datetime("not a date") is None and parse_datetime("") is None


# --- errors ------------------------------------------------------------------------------


def test_truncated_file_fails_when_opened_with_one_line_naming_it(write_tif, tmp_path, rng):
    a = rng.integers(0, 10000, (256, 256)).astype(np.uint16)
    good = write_tif(tmp_path / "good.tif", [a], tiled=True, blockxsize=64, blockysize=64)
    data = good.read_bytes()
    bad = tmp_path / "truncated.tif"
    bad.write_bytes(data[: len(data) // 2])
    # the header is intact, so GDAL opens it; its last block is gone (tests/io/test_geotiff_messages.py: reads)
    with pytest.raises(ProductReadError) as info:
        open_product(bad)
    msg = str(info.value)
    assert "truncated.tif is truncated or damaged" in msg and "\n" not in msg


def test_corrupt_missing_and_unknown_inputs(tmp_path):
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(ProductReadError, match="garbage.tif"):
        open_product(garbage)
    with pytest.raises(ProductReadError, match="file not found: .*nothere.tif"):
        open_product(tmp_path / "nothere.tif")
    other = tmp_path / "table.csv"
    other.write_text("a,b\n")
    with pytest.raises(ProductReadError, match="table.csv: unknown product format"):
        open_product(other)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(ProductReadError, match="no band files found"):
        open_product(empty)


def test_unknown_band_name_lists_the_bands(write_tif, tmp_path):
    p = write_tif(tmp_path / "b.tif", [np.zeros((4, 4), np.float32)] * 2, descriptions=["x", "y"])
    with pytest.raises(ProductReadError, match=r"no band 'z'; bands: x, y"):
        open_product(p, band_names=["z"])


def test_unknown_format_name(write_tif, tmp_path):
    p = write_tif(tmp_path / "b.tif", [np.zeros((4, 4), np.float32)])
    with pytest.raises(ProductReadError, match="unknown format name 'ENVI-FOO'"):
        open_product(p, format_name="ENVI-FOO")
    assert open_product(p, format_name="GeoTIFF").band_names == ["band_1"]


# --- subsets -------------------------------------------------------------------------------


def test_band_names_subset_keeps_requested_order(write_tif, tmp_path, rng):
    arrays = [rng.random((8, 8), dtype=np.float32) for _ in range(3)]
    p = write_tif(tmp_path / "s.tif", arrays, descriptions=["a", "b", "c"])
    prod = open_product(p, band_names=["c", "a"])
    assert prod.band_names == ["c", "a"]
    np.testing.assert_array_equal(prod.band("c").data.compute(), arrays[2])


def test_pixel_region_reads_the_window(write_tif, tmp_path, rng):
    a = rng.random((100, 120), dtype=np.float32)
    p = write_tif(tmp_path / "r.tif", [a])
    prod = open_product(p, pixel_region="10,20,50,30", tile_size=16)
    band = prod.band("band_1")
    assert band.shape == (30, 50)
    assert band.data.chunks == ((16, 14), (16, 16, 16, 2))  # chunks start at the region corner
    np.testing.assert_array_equal(band.data.compute(), a[20:50, 10:60])
    assert band.transform == Affine(10.0, 0.0, ORIGIN[0] + 100, 0.0, -10.0, ORIGIN[1] - 200)
    # clipped at the scene edge, as SNAP does
    assert open_product(p, pixel_region=(100, 90, 50, 50)).band("band_1").shape == (10, 20)


def test_pixel_region_errors(write_tif, tmp_path):
    p = write_tif(tmp_path / "r.tif", [np.zeros((10, 10), np.float32)])
    with pytest.raises(ProductReadError, match="outside the scene"):
        open_product(p, pixel_region="20,0,5,5")
    with pytest.raises(ProductReadError, match="x,y,width,height"):
        open_product(p, pixel_region="1,2,3")
    with pytest.raises(ProductReadError, match="width and height > 0"):
        open_product(p, pixel_region="0,0,0,5")


def test_pixel_region_scales_per_band_in_multi_size_folder(write_tif, tmp_path, rng):
    b2 = rng.integers(1, 5000, (60, 80)).astype(np.uint16)
    b5 = rng.integers(1, 5000, (30, 40)).astype(np.uint16)
    b1 = rng.integers(1, 5000, (10, 14)).astype(np.uint16)
    write_tif(tmp_path / "T33XXX_20200101T100000_B02.tif", [b2], transform=Affine(10, 0.0, ORIGIN[0], 0.0, -10, ORIGIN[1]))
    write_tif(tmp_path / "T33XXX_20200101T100000_B05.tif", [b5], transform=Affine(20, 0.0, ORIGIN[0], 0.0, -20, ORIGIN[1]))
    write_tif(tmp_path / "T33XXX_20200101T100000_B01.tif", [b1], transform=Affine(60, 0.0, ORIGIN[0], 0.0, -60, ORIGIN[1]))
    prod = open_product(tmp_path, pixel_region="7,13,20,30")
    assert prod.band_names == ["B1", "B2", "B5"]
    assert prod.band("B2").shape == (30, 20)
    assert prod.band("B5").shape == (16, 11)  # rows 6..22, cols 3..14: covers the region outwards
    assert prod.band("B1").shape == (6, 4)   # rows 2..8, cols 1..5
    np.testing.assert_array_equal(prod.band("B5").data.compute(), (b5[6:22, 3:14] / 10000).astype(np.float32))
    np.testing.assert_array_equal(prod.band("B1").data.compute(), (b1[2:8, 1:5] / 10000).astype(np.float32))
    assert prod.band("B5").transform.c == ORIGIN[0] + 3 * 20
    assert prod.band("B1").transform.f == ORIGIN[1] - 2 * 60
    assert prod.start_time == dt.datetime(2020, 1, 1, 10, tzinfo=dt.timezone.utc)


# --- laziness, chunks, pickling, threads ---------------------------------------------------------


def test_chunks_follow_tile_size(write_tif, tmp_path, rng):
    p = write_tif(tmp_path / "c.tif", [rng.random((150, 200), dtype=np.float32)])
    assert open_product(p, tile_size=64).band("band_1").data.chunks == ((64, 64, 22), (64, 64, 64, 8))
    assert open_product(p).band("band_1").data.chunks == ((150,), (200,))


def test_building_a_product_reads_no_pixels(write_tif, tmp_path, rng, monkeypatch):
    p = write_tif(tmp_path / "l.tif", [rng.random((50, 50), dtype=np.float32)] * 2)

    def refuse(*args, **kwargs):
        raise AssertionError("pixels were read while building the product")

    monkeypatch.setattr(LazyRasterBand, "_read", refuse)
    prod = open_product(p, pixel_region="5,5,20,20", band_names=["band_2"], tile_size=8)
    assert prod.band("band_2").shape == (20, 20)
    with pytest.raises(AssertionError, match="pixels were read"):
        prod.band("band_2").data.compute()


def test_lazy_array_reads_only_the_requested_window(write_tif, tmp_path, rng, monkeypatch):
    a = rng.random((64, 64), dtype=np.float32)
    p = write_tif(tmp_path / "w.tif", [a], tiled=True, blockxsize=16, blockysize=16)
    windows = []
    original = LazyRasterBand._read

    def spy(self, r0, r1, c0, c1):
        windows.append((r0, r1, c0, c1))
        return original(self, r0, r1, c0, c1)

    monkeypatch.setattr(LazyRasterBand, "_read", spy)
    arr = lazy_band_array(str(p), 1, (64, 64), "float32", tile_size=16)
    np.testing.assert_array_equal(arr[16:32, 48:64].compute(), a[16:32, 48:64])
    assert windows == [(16, 32, 48, 64)]


def test_lazy_band_pickles_and_reads_after_unpickling(write_tif, tmp_path, rng):
    dn = rng.integers(0, 10000, (40, 30)).astype(np.uint16)
    p = write_tif(tmp_path / "p.tif", [dn])
    reader = LazyRasterBand(str(p), 1, 5, 3, (20, 10), "<u2", 1e-4, 0.0, 0)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone == reader
    expected = to_refl(dn[5:25, 3:13])
    np.testing.assert_array_equal(clone[:, :], expected)
    np.testing.assert_array_equal(clone[2:4, 1], expected[2:4, 1])
    np.testing.assert_array_equal(clone[..., -1], expected[..., -1])
    assert clone[3:3].shape == (0, 10)
    arr = lazy_band_array(str(p), 1, (40, 30), "uint16", scale=1e-4, nodata=0, tile_size=16)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(arr)).compute(), to_refl(dn))


def to_refl(dn):
    out = (dn.astype(np.float64) / 10000).astype(np.float32)
    out[dn == 0] = np.nan
    return out


def test_threads_get_their_own_datasets(write_tif, tmp_path, rng):
    a = rng.random((256, 256), dtype=np.float32)
    p = write_tif(tmp_path / "t.tif", [a], tiled=True, blockxsize=32, blockysize=32)
    arr = lazy_band_array(str(p), 1, (256, 256), "float32", tile_size=32)
    with dask.config.set(scheduler="threads", num_workers=4):
        np.testing.assert_array_equal(arr.compute(), a)
    barrier = threading.Barrier(3)

    def grab(_):
        ds = raster_bands.open_dataset(str(p))
        barrier.wait(timeout=10)  # three live threads at once
        return id(ds)

    with ThreadPoolExecutor(3) as pool:
        ids = set(pool.map(grab, range(3)))
    assert len(ids) == 3
    # the same thread reuses its dataset
    assert raster_bands.open_dataset(str(p)) is raster_bands.open_dataset(str(p))


def test_rewritten_file_is_reopened(write_tif, tmp_path):
    p = tmp_path / "x.tif"
    write_tif(p, [np.full((8, 8), 1.0, np.float32)])
    assert float(open_product(p).band("band_1").data.sum().compute()) == 64.0
    write_tif(p, [np.full((8, 8), 2.0, np.float32)])
    assert float(open_product(p).band("band_1").data.sum().compute()) == 128.0


# --- BEAM-DIMAP dispatch -------------------------------------------------------------------------


def test_dim_goes_to_read_dimap_and_subsets_after(write_tif, tmp_path, rng, monkeypatch):
    a = rng.random((20, 30), dtype=np.float32)
    tif = write_tif(tmp_path / "inner.tif", [a, a + 1], descriptions=["p", "q"])
    dim = tmp_path / "prod.dim"
    dim.write_text("<Dimap_Document/>")
    calls = []

    def fake_read_dimap(path, tile_size=1024):
        calls.append((str(path), tile_size))
        return read_geotiff(tif, tile_size=tile_size)

    monkeypatch.setitem(sys.modules, "snap_operators.io.dimap",
                        types.SimpleNamespace(read_dimap=fake_read_dimap))
    assert detect_format(dim) == "dimap"
    prod = open_product(dim, tile_size=8, band_names=["q"], pixel_region="4,5,10,6")
    assert calls == [(str(dim), 8)]
    assert prod.band_names == ["q"] and prod.band("q").shape == (6, 10)
    np.testing.assert_array_equal(prod.band("q").data.compute(), a[5:11, 4:14] + 1)
    assert prod.band("q").transform.c == ORIGIN[0] + 40


# --- the Read operator -----------------------------------------------------------------------


def make_read(params, node_id="read", context=None):
    return Read.create(None, params, context=context or ExecutionContext(tile_size=32), node_id=node_id)


def test_read_operator_opens_lazily_and_records_inputs(write_tif, tmp_path, rng):
    arrays = [rng.random((64, 48), dtype=np.float32) for _ in range(3)]
    p = write_tif(tmp_path / "in.tif", arrays, descriptions=["B2", "B3", "B4"], tags={"K": "v"})
    ctx = ExecutionContext(tile_size=32)
    op = make_read({"file": str(p), "sourceBands": "B4,B2", "pixelRegion": "8,4,16,20",
                    "useAdvancedOptions": "true", "formatName": "GeoTIFF"}, context=ctx)
    prod = op.initialize()
    assert prod.band_names == ["B4", "B2"]
    np.testing.assert_array_equal(prod.band("B4").data.compute(), arrays[2][4:24, 8:24])
    assert str(p.resolve()) in ctx.input_files
    assert prod.metadata.element("TIFF_Metadata").attributes["K"] == "v"
    assert Read.spec.sources == () and Read.spec.parameter("copyMetadata").default is True


def test_read_operator_copy_metadata_false(write_tif, tmp_path):
    p = write_tif(tmp_path / "in.tif", [np.zeros((4, 4), np.float32)], tags={"K": "v"})
    prod = make_read({"file": str(p), "copyMetadata": "false", "useAdvancedOptions": "true"}).initialize()
    assert prod.metadata.elements == []


def test_read_operator_missing_file_names_node_and_file(tmp_path):
    with pytest.raises(ProductReadError) as info:
        make_read({"file": str(tmp_path / "absent.tif")}, node_id="Read(2)").initialize()
    msg = str(info.value)
    assert "Read(2)" in msg and "absent.tif" in msg and "\n" not in msg


def test_read_operator_unknown_band_lists_bands(write_tif, tmp_path):
    p = write_tif(tmp_path / "in.tif", [np.zeros((4, 4), np.float32)] * 2, descriptions=["B2", "B3"])
    with pytest.raises(SnapPcError, match=r"node 'r1'.*no band 'B9'; bands: B2, B3"):
        make_read({"file": str(p), "bandNames": "B9", "useAdvancedOptions": "true"}, node_id="r1").initialize()


def test_read_operator_requires_file():
    with pytest.raises((OperatorError, SnapPcError), match="file"):
        make_read({}).initialize()


def test_input_paths_cover_folder_contents(write_tif, tmp_path):
    write_tif(tmp_path / "X_B02.tif", [np.ones((4, 4), np.uint16)])
    found = input_paths(tmp_path)
    assert str(tmp_path.resolve()) in found and str((tmp_path / "X_B02.tif").resolve()) in found
