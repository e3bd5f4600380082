"""The Write operator: GeoTIFF / BigTIFF / COG / BEAM-DIMAP output, target checks, atomic commit."""

from __future__ import annotations

import datetime as dt
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS

from snap_operators.core import staging
from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import OperatorError, ParameterError, ProductWriteError
from snap_operators.core.product import Band, ClassInfo, Product
from snap_operators.core.streaming import SinkPlan, store
from snap_operators.io.dimap import read_dimap
from snap_operators.io.geotiff_writer import GeoTiffWriter, output_dtype
from snap_operators.ops.write import Write

T10 = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5800000.0)
START = dt.datetime(2021, 6, 1, 10, 20, 30, 123456, tzinfo=dt.timezone.utc)
STOP = dt.datetime(2021, 6, 1, 10, 20, 35, tzinfo=dt.timezone.utc)
CLASSES = [ClassInfo(1, "Water", (0, 112, 255)), ClassInfo(2, "Bare Soil", (210, 180, 140)),
           ClassInfo(3, "Trees/Shrubbery", (38, 115, 0))]


@pytest.fixture
def product(make_product):
    """``product(*bands, name="scene")``: an S2_TEST product of `bands` sensed from START to STOP."""

    def build(*bands: Band, name="scene") -> Product:
        return make_product(bands, name=name, product_type="S2_TEST", crs=CRS.from_epsg(32633), start_time=START,
                            stop_time=STOP)

    return build


def float_band(name, shape=(300, 420), seed=0, chunks=128, wavelength=None):
    a = np.random.default_rng(seed).uniform(0.0, 0.6, shape).astype("float32")
    a[5:9, 7:11] = np.nan
    return Band(name, da.from_array(a, chunks=chunks), T10, np.nan, "1", f"{name} reflectance", wavelength), a


def class_band(name="class", shape=(300, 420), seed=1, chunks=128):
    c = np.random.default_rng(seed).integers(0, 4, shape).astype("uint8")
    c[0, :] = 255
    return Band(name, da.from_array(c, chunks=chunks), T10, 255, None, None, None, list(CLASSES)), c


def write(prod, path, fmt="GeoTIFF", context=None, node_id="Write"):
    """Run a Write node the way the engine does (initialize, prepare, open, store, commit/abort)."""
    op = Write.create({"sourceProduct": prod}, {"file": str(path), "formatName": fmt},
                      context=context or ExecutionContext(), node_id=node_id)
    op.target = op.initialize()
    op.execute()
    return op


# --- GeoTIFF -------------------------------------------------------------------------------


def test_geotiff_round_trip(product, files_in, tmp_path):
    b4, a4 = float_band("B4", wavelength=665.0)
    b8, a8 = float_band("B8", seed=2, wavelength=842.0)
    op = write(product(b4, b8), tmp_path / "out")  # no extension: .tif is added, as SNAP does
    out = tmp_path / "out.tif"
    assert op.outputs == [str(out)]
    assert files_in(tmp_path) == ["out.tif"]  # no sidecar, no temporary file
    with rasterio.open(out) as ds:
        assert ds.count == 2 and ds.dtypes == ("float32", "float32")
        np.testing.assert_array_equal(ds.read(1), a4)
        np.testing.assert_array_equal(ds.read(2), a8)
        assert ds.descriptions == ("B4", "B8")
        assert ds.units == ("1", "1")
        assert all(np.isnan(v) for v in ds.nodatavals)
        assert ds.crs.to_epsg() == 32633
        assert ds.transform == T10
        tags = ds.tags()
        assert tags["PRODUCT_NAME"] == "scene" and tags["PRODUCT_TYPE"] == "S2_TEST"
        assert dt.datetime.fromisoformat(tags["PRODUCT_START_TIME"]) == START
        assert dt.datetime.fromisoformat(tags["PRODUCT_STOP_TIME"]) == STOP
        assert float(ds.tags(1, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"]) == pytest.approx(0.665)
        assert ds.profile["tiled"] and ds.block_shapes[0] == (512, 512)
        assert ds.compression.name == "deflate"
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        assert ds.interleaving.name.upper() == "BAND"


def snap_band_names(path) -> list[str]:
    """The band names SNAP's GeoTIFF reader gives a GeoTIFF without its own DIMAP header: the GDAL metadata
    items named BAND, in order, when there is one per band (snap-geotiff Utils.setupBandsFromGdalMetadata),
    else band_1, band_2..."""
    tifffile = pytest.importorskip("tifffile")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        count = page.samplesperpixel
        xml = page.tags.get(42112)
        xml = xml.value if xml is not None else None
    names = [item.text for item in ET.fromstring(xml).iter("Item") if item.get("name") == "BAND"] if xml else []
    return names if len(names) == count else [f"band_{i}" for i in range(1, count + 1)]


@pytest.mark.parametrize("fmt", ["GeoTIFF", "COG"])
def test_snap_reads_the_band_names(product, tmp_path, fmt):
    b4, _ = float_band("B4")
    cls, _ = class_band("class_id")
    write(product(b4, cls), tmp_path / "out.tif", fmt)
    assert snap_band_names(tmp_path / "out.tif") == ["B4", "class_id"]


def test_integer_output_uses_predictor_2_and_keeps_nodata(product, tmp_path):
    a = np.arange(600 * 530, dtype="uint16").reshape(600, 530) % 4000
    write(product(Band("dn", da.from_array(a, chunks=256), T10, 0)), tmp_path / "dn.tif")
    with rasterio.open(tmp_path / "dn.tif") as ds:
        assert ds.dtypes[0] == "uint16" and ds.nodata == 0
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        np.testing.assert_array_equal(ds.read(1), a)


def test_bands_share_a_promoted_dtype_and_keep_their_own_nodata(product, files_in, tmp_path):
    ref, a = float_band("refl")
    cls, c = class_band()
    assert output_dtype([ref, cls]) == np.float32
    assert output_dtype([cls, Band("u16", da.zeros((2, 2), dtype="uint16"))]) == np.uint16
    assert output_dtype([Band("m", da.zeros((2, 2), dtype=bool))]) == np.uint8
    write(product(ref, cls), tmp_path / "mixed.tif")
    with rasterio.open(tmp_path / "mixed.tif") as ds:
        assert ds.dtypes == ("float32", "float32")
        got = ds.read(2)
        # One GDAL_NODATA tag cannot hold NaN and 255: each band's value goes to the PAM sidecar.
        assert np.isnan(ds.nodatavals[0]) and ds.nodatavals[1] == 255
    # Pixel values are written as they are, as SNAP's GeoTIFF writer does: the 255 no-data stays 255.
    np.testing.assert_array_equal(got, c.astype("float32"))
    assert files_in(tmp_path) == ["mixed.tif", "mixed.tif.aux.xml"]




def _round_trip_both(prod, tmp_path, fmt="GeoTIFF"):
    """Write `prod` as `fmt` and as BEAM-DIMAP; return (raw GeoTIFF bands, nodata tags, read-back products)."""
    from snap_operators.io import open_product

    write(prod, tmp_path / "o.tif", fmt=fmt)
    write(prod, tmp_path / "o.dim", fmt="BEAM-DIMAP")
    with rasterio.open(tmp_path / "o.tif") as ds:
        raw, tags = ds.read(), ds.nodatavals
    return raw, tags, open_product(tmp_path / "o.tif"), open_product(tmp_path / "o.dim")


@pytest.mark.parametrize("fmt", ["GeoTIFF", "COG"])
def test_float_nodata_survives_geotiff_as_in_beam_dimap(product, tmp_path, fmt):
    a = np.random.default_rng(3).uniform(-30, 5, (90, 70)).astype("float32")
    a[10:20, 5:9] = -999.0
    a[40, 40] = np.nan  # a NaN that is not the no-data value stays NaN
    b = a[::-1].copy()
    prod = product(Band("sigma0", da.from_array(a, chunks=32), T10, -999.0, "dB"),
                   Band("flip", da.from_array(b, chunks=32), T10, -999.0, "dB"))
    raw, tags, tif, dim = _round_trip_both(prod, tmp_path, fmt)
    # The file keeps the pixels and says -999 is no data (one GDAL_NODATA tag, no sidecar), as SNAP's writer
    # keeps the pixels and the BEAM-DIMAP writer does.
    np.testing.assert_array_equal(raw[0], a)
    np.testing.assert_array_equal(raw[1], b)
    assert tags == (-999.0, -999.0) and not (tmp_path / "o.tif.aux.xml").exists()
    header = ET.parse(tmp_path / "o.dim").getroot()
    info = header.find(".//Spectral_Band_Info")
    assert float(info.findtext("NO_DATA_VALUE")) == -999.0 and info.findtext("NO_DATA_VALUE_USED") == "true"
    dim_raw = np.fromfile(tmp_path / "o.data" / "sigma0.img", dtype=">f4").reshape(a.shape)
    np.testing.assert_array_equal(dim_raw, a)
    # Read back, both formats give the same values and no-data.
    for name in ("sigma0", "flip"):
        t, d = tif.band(name), dim.band(name)
        np.testing.assert_array_equal(t.data.compute(), d.data.compute())
        assert np.isnan(t.data.compute()[10:20, 5:9] if name == "sigma0" else t.data.compute()[-20:-10, 5:9]).all()
        assert np.isnan(t.no_data) and np.isnan(d.no_data)


def test_bands_with_different_float_nodata_get_per_band_pam_values(product, tmp_path):
    a = np.zeros((8, 8), "float32")
    a[0, 0] = -999.0
    prod = product(Band("x", da.from_array(a), T10, -999.0), Band("y", da.from_array(a), T10, np.nan))
    raw, tags, tif, dim = _round_trip_both(prod, tmp_path)
    assert raw[1][0, 0] == -999.0  # band y does not treat -999 as no data: kept as a value
    assert tags[0] == -999.0 and np.isnan(tags[1])
    for name in ("x", "y"):
        np.testing.assert_array_equal(tif.band(name).data.compute(), dim.band(name).data.compute())
    assert np.isnan(tif.band("x").data.compute()[0, 0]) and tif.band("y").data.compute()[0, 0] == -999.0


def test_real_s1_db_nodata_round_trip(shared_data, tmp_path):
    """The pyroSAR Sentinel-1 dB scene (float32, no-data -99) keeps its no-data in both formats."""
    with rasterio.open(shared_data("pyrosar_s1", "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif")) as ds:
        raw_in, nodata, crs, transform = ds.read(1), ds.nodata, ds.crs, ds.transform
    assert nodata == -99
    # This subset has no border; give it the no-data corner a geocoded swath edge has.
    rows, cols = np.indices(raw_in.shape)
    raw_in[rows + cols < 40] = nodata
    p = Product("s1", "GRD", crs=crs)
    p.add_band(Band("Gamma0_VV_db", da.from_array(raw_in, chunks=64), transform, float(nodata), "dB"))
    raw, tags, tif, dim = _round_trip_both(p, tmp_path)
    np.testing.assert_array_equal(raw[0], raw_in)
    assert tags == (-99.0,)
    t, d = tif.band("Gamma0_VV_db").data.compute(), dim.band("Gamma0_VV_db").data.compute()
    np.testing.assert_array_equal(t, d)
    np.testing.assert_array_equal(np.isnan(t), raw_in == -99)


def test_chunks_are_aligned_to_geotiff_blocks(product):
    a = da.zeros((2000, 1500), dtype="float32", chunks=(700, 300))
    w = GeoTiffWriter(product(Band("b", a, T10, np.nan)), "/tmp/unused.tif")
    rows, cols = w.arrays[0].chunks
    assert all(c % 512 == 0 for c in rows[:-1]) and all(c % 512 == 0 for c in cols[:-1])
    aligned = da.zeros((2000, 1500), dtype="float32", chunks=1024)
    assert GeoTiffWriter(product(Band("b", aligned, T10, np.nan)), "/tmp/unused.tif").arrays[0] is aligned


def test_class_band_colormap_names_and_pam_sidecar(product, files_in, tmp_path):
    cls, c = class_band()
    write(product(cls, name="lc"), tmp_path / "lc.tif")
    assert files_in(tmp_path) == ["lc.tif", "lc.tif.aux.xml"]
    with rasterio.open(tmp_path / "lc.tif") as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
        np.testing.assert_array_equal(ds.read(1), c)
        cmap = ds.colormap(1)
        assert json.loads(ds.tags(1)["CLASS_NAMES"]) == {"1": "Water", "2": "Bare Soil", "3": "Trees/Shrubbery"}
    for k in CLASSES:
        assert cmap[k.value][:3] == k.color
    assert cmap[255][3] == 0  # no-data is transparent
    pam = ET.parse(tmp_path / "lc.tif.aux.xml").getroot()
    cats = [e.text or "" for e in pam.find("PAMRasterBand[@band='1']/CategoryNames")]
    assert cats == ["", "Water", "Bare Soil", "Trees/Shrubbery"]
    # GDAL itself picks the names up: a VRT copy serializes what GDAL reports.
    rasterio.shutil.copy(tmp_path / "lc.tif", tmp_path / "copy.vrt", driver="VRT")
    vrt = ET.parse(tmp_path / "copy.vrt").getroot()
    assert [e.text or "" for e in vrt.find("VRTRasterBand/CategoryNames")] == cats


def test_class_band_round_trips_through_the_geotiff_reader(product, tmp_path):
    open_product = pytest.importorskip("snap_operators.io").open_product
    cls, c = class_band()
    write(product(cls), tmp_path / "lc.tif")
    back = open_product(tmp_path / "lc.tif").band("class")
    assert [(k.value, k.name, tuple(k.color)) for k in back.classes] == [(k.value, k.name, k.color) for k in CLASSES]
    np.testing.assert_array_equal(back.data.compute(), c)


def test_cog_is_a_valid_cloud_optimized_geotiff(product, files_in, tmp_path):
    b, a = float_band("B4", shape=(1300, 1100), chunks=512)
    cls, c = class_band(shape=(1300, 1100), chunks=512)
    write(product(b), tmp_path / "refl.tif", "COG")
    write(product(cls), tmp_path / "lc", "COG")
    assert files_in(tmp_path) == ["lc.tif", "lc.tif.aux.xml", "refl.tif"]
    with rasterio.open(tmp_path / "refl.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.profile["tiled"] and ds.block_shapes[0] == (512, 512)
        assert ds.overviews(1) == [2, 4]
        assert ds.compression.name == "deflate"
        np.testing.assert_array_equal(ds.read(1), a)
        assert ds.descriptions == ("B4",) and ds.tags()["PRODUCT_NAME"] == "scene"
    with rasterio.open(tmp_path / "lc.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.colormap(1)[1][:3] == CLASSES[0].color
        assert "Water" in ds.tags(1)["CLASS_NAMES"]
        np.testing.assert_array_equal(ds.read(1), c)
        # nearest-neighbour overviews keep class values
        assert set(np.unique(ds.read(1, out_shape=(325, 275)))) <= {0, 1, 2, 3, 255}


def _tiff_magic(path):
    head = Path(path).read_bytes()[:4]
    assert head[:2] == b"II"
    return int.from_bytes(head[2:4], "little")


def test_bigtiff_flag(product, tmp_path):
    b, _ = float_band("B4", shape=(64, 64))
    write(product(b), tmp_path / "classic.tif", "GeoTIFF")
    write(product(b), tmp_path / "big.tif", "GeoTIFF-BigTIFF")
    assert _tiff_magic(tmp_path / "classic.tif") == 42
    assert _tiff_magic(tmp_path / "big.tif") == 43


def test_multi_size_geotiff_is_refused_and_dimap_keeps_sizes(product, files_in, tmp_path):
    b10, a10 = float_band("B4", shape=(120, 120))
    a20 = np.random.default_rng(5).random((60, 60)).astype("float32")
    b20 = Band("B11", da.from_array(a20, chunks=32), Affine(20.0, 0, 500000.0, 0, -20.0, 5800000.0), np.nan)
    prod = product(b10, b20)
    with pytest.raises(OperatorError, match="Resample") as err:
        write(prod, tmp_path / "x.tif")
    assert "\n" not in str(err.value) and "120x120" in str(err.value)
    write(prod, tmp_path / "multi", "BEAM-DIMAP")
    back = read_dimap(tmp_path / "multi.dim")
    assert back.band("B4").shape == (120, 120) and back.band("B11").shape == (60, 60)
    assert back.band("B11").transform == b20.transform
    np.testing.assert_array_equal(back.band("B11").data.compute(), a20)
    assert files_in(tmp_path) == ["multi.data", "multi.dim"]


# --- parameters -------------------------------------------------------------------------------


def test_parameters_as_snap():
    spec = Write.spec
    assert spec.sink and spec.alias == "Write"
    assert spec.parameter("formatName").default == "BEAM-DIMAP"
    assert spec.parameter("file").required
    for name in ("clearCacheAfterRowWrite", "deleteOutputOnFailure", "writeEntireTileRows"):
        spec.parameter(name)
    with pytest.raises(ParameterError, match="NetCDF4-CF"):
        Write.create({}, {"file": "x", "formatName": "NetCDF4-CF"})
    with pytest.raises(ParameterError, match="file"):
        Write.create({}, {"formatName": "GeoTIFF"})


def test_unstorable_band_name_is_refused_before_any_work(product, files_in, tmp_path):
    bad = Band("B4/B8", da.zeros((8, 8), dtype="float32"), T10, np.nan)
    op = Write.create({"sourceProduct": product(bad)}, {"file": str(tmp_path / "x")}, node_id="save")
    with pytest.raises(ProductWriteError, match=r"Write \(node 'save'\).*B4/B8"):
        op.initialize()
    assert files_in(tmp_path) == []


def test_default_format_is_beam_dimap_with_extension_added(product, tmp_path):
    b, a = float_band("B4", shape=(40, 50))
    op = Write.create({"sourceProduct": product(b)}, {"file": str(tmp_path / "result")})
    op.target = op.initialize()
    op.execute()
    assert op.outputs == [str(tmp_path / "result.dim")]
    np.testing.assert_array_equal(read_dimap(tmp_path / "result.dim").band("B4").data.compute(), a)


# --- target checks ----------------------------------------------------------------------------


def test_refuses_to_overwrite_an_input(product, files_in, tmp_path):
    b, _ = float_band("B4", shape=(32, 32))
    src = tmp_path / "input.tif"
    src.write_bytes(b"original")
    ctx = ExecutionContext(overwrite=True, input_files={str(src.resolve())})
    with pytest.raises(ProductWriteError, match="input") as err:
        write(product(b), tmp_path / "." / "input.tif", context=ctx, node_id="out")
    assert "node 'out'" in str(err.value) and "\n" not in str(err.value)
    assert src.read_bytes() == b"original" and files_in(tmp_path) == ["input.tif"]
    # a BEAM-DIMAP target whose .data folder holds an input file
    data = tmp_path / "prod.data"
    data.mkdir()
    (data / "B4.img").write_bytes(b"raw")
    ctx = ExecutionContext(overwrite=True, input_files={str((data / "B4.img").resolve())})
    with pytest.raises(ProductWriteError, match="input"):
        write(product(b), tmp_path / "prod.dim", "BEAM-DIMAP", context=ctx)
    assert (data / "B4.img").read_bytes() == b"raw"


@pytest.mark.parametrize("fmt, name", [("GeoTIFF", "out.tif"), ("COG", "out.tif"), ("BEAM-DIMAP", "out.dim")])
def test_existing_target_needs_overwrite_then_is_replaced(product, files_in, tmp_path, fmt, name):
    target = tmp_path / name
    target.write_bytes(b"old")
    stale = tmp_path / f"{name}.aux.xml"
    stale.write_text("<PAMDataset/>")
    if fmt == "BEAM-DIMAP":
        (tmp_path / "out.data").mkdir()
        (tmp_path / "out.data" / "old_band.img").write_bytes(b"old")
    b, a = float_band("B4", shape=(64, 64))
    with pytest.raises(ProductWriteError, match="exists.*--overwrite"):
        write(product(b), target, fmt)
    assert target.read_bytes() == b"old"
    write(product(b), target, fmt, context=ExecutionContext(overwrite=True))
    if fmt == "BEAM-DIMAP":
        back = read_dimap(target)
        assert sorted(os.listdir(tmp_path / "out.data")) == ["B4.hdr", "B4.img"]  # old band gone
        np.testing.assert_array_equal(back.band("B4").data.compute(), a)
        assert files_in(tmp_path) == ["out.data", "out.dim", f"{name}.aux.xml"]
    else:
        with rasterio.open(target) as ds:
            np.testing.assert_array_equal(ds.read(1), a)
        assert files_in(tmp_path) == [name]  # the stale sidecar would describe the old file


def test_missing_and_unwritable_folders(product, files_in, tmp_path):
    b, _ = float_band("B4", shape=(16, 16))
    with pytest.raises(ProductWriteError, match="does not exist"):
        write(product(b), tmp_path / "nope" / "x.tif")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running with privileges that ignore folder permissions")
        with pytest.raises(ProductWriteError, match="not writable") as err:
            write(product(b), locked / "x.tif")
        assert str(locked) in str(err.value)
    finally:
        locked.chmod(0o700)
    assert files_in(locked) == []


@pytest.mark.parametrize("fmt", ["GeoTIFF", "BEAM-DIMAP"])
def test_folder_refusing_files_gives_one_line_error(product, fmt):
    """/proc refuses new files even to root: the error names the path, nothing is created."""
    if not Path("/proc/self").exists():
        pytest.skip("no /proc on this system")
    b, _ = float_band("B4", shape=(16, 16))
    with pytest.raises(ProductWriteError, match="/proc") as err:
        write(product(b), "/proc/snap_pc_out", fmt)
    assert "\n" not in str(err.value)
    assert not any(n.startswith(".snap_pc_out") or n.startswith("snap_pc_out") for n in os.listdir("/proc"))


# --- failures ---------------------------------------------------------------------------------


class ChunkFailure(RuntimeError):
    pass


def failing_band(shape=(600, 600), chunks=128, bad=(2, 3)):
    """A float band whose chunk `bad` raises when computed (the others succeed)."""

    def block(x, block_info=None):
        if tuple(block_info[0]["chunk-location"]) == bad:
            raise ChunkFailure("sensor exploded")
        return np.ones(x.shape, "float32")

    base = da.zeros(shape, dtype="float32", chunks=chunks)
    return Band("B4", base.map_blocks(block, dtype="float32"), T10, np.nan)


@pytest.mark.parametrize("fmt", ["GeoTIFF", "GeoTIFF-BigTIFF", "COG", "BEAM-DIMAP"])
def test_failure_mid_write_leaves_nothing(product, files_in, tmp_path, fmt):
    with pytest.raises(ChunkFailure, match="sensor exploded"):
        write(product(failing_band()), tmp_path / "out", fmt)
    assert files_in(tmp_path) == []


def test_failure_keeps_the_previous_output(product, tmp_path):
    b, a = float_band("B4", shape=(64, 64))
    write(product(b), tmp_path / "out.dim", "BEAM-DIMAP")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ChunkFailure):
        write(product(failing_band()), tmp_path / "out.dim", "BEAM-DIMAP", context=ExecutionContext(overwrite=True))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_sink_plan_through_engine_store(product, files_in, tmp_path):
    """The protocol the engine drives: prepare (no side effect), open, store from threads, commit."""
    b, a = float_band("B4", shape=(700, 900), chunks=256)
    cls, c = class_band(shape=(700, 900), chunks=256)
    op = Write.create({"sourceProduct": product(b, cls)}, {"file": str(tmp_path / "p.dim")},
                      context=ExecutionContext(num_workers=4))
    op.target = op.initialize()
    op.prepare()
    assert files_in(tmp_path) == []
    plan = op.open()
    assert isinstance(plan, SinkPlan) and len(plan.arrays) == len(plan.targets) == 2
    hidden = files_in(tmp_path)
    assert hidden and all(staging.staged_owner(n) == (staging.HOST, os.getpid()) for n in hidden)
    store(plan.arrays, plan.targets, op.context)
    plan.finish()
    assert all(staging.staged_owner(n) for n in files_in(tmp_path))  # finished, not yet published
    plan.publish()
    assert op.outputs == [str(tmp_path / "p.dim")]
    assert files_in(tmp_path) == ["p.data", "p.dim"]
    back = read_dimap(tmp_path / "p.dim")
    np.testing.assert_array_equal(back.band("B4").data.compute(), a)
    np.testing.assert_array_equal(back.band("class").data.compute(), c)


def test_abort_removes_temporaries_and_never_raises(product, files_in, tmp_path):
    b, _ = float_band("B4", shape=(64, 64))
    for fmt in ("GeoTIFF", "COG", "BEAM-DIMAP"):
        op = Write.create({"sourceProduct": product(b)}, {"file": str(tmp_path / "o"), "formatName": fmt})
        op.target = op.initialize()
        plan = op.open()
        plan.targets[0][(slice(0, 32), slice(0, 32))] = np.zeros((32, 32), "float32")
        plan.abort()
        plan.abort()  # twice is harmless
        assert files_in(tmp_path) == []
        with pytest.raises(ProductWriteError, match="closed"):  # a straggling chunk after abort
            plan.targets[0][(slice(32, 64), slice(0, 32))] = np.zeros((32, 32), "float32")


def test_read_write_graph_through_run_graph(write_tif, tmp_path):
    from snap_operators.engine.graph import parse_graph
    from snap_operators.engine.runner import run_graph

    a = np.random.default_rng(9).random((2, 80, 90)).astype("float32")
    src = write_tif(tmp_path / "in.tif", {"B4": a[0], "B8": a[1]}, transform=T10, nodata=np.nan)
    graph = parse_graph("g.xml", text=f"""<graph id="g"><version>1.0</version>
      <node id="Read"><operator>Read</operator><parameters><file>{src}</file></parameters></node>
      <node id="Write"><operator>Write</operator><sources><sourceProduct refid="Read"/></sources>
        <parameters><file>{tmp_path / 'out'}</file><formatName>COG</formatName></parameters></node>
    </graph>""")
    result = run_graph(graph, ExecutionContext(tile_size=32))
    assert result.outputs == [str(tmp_path / "out.tif")]
    with rasterio.open(tmp_path / "out.tif") as ds:
        np.testing.assert_array_equal(ds.read(), a)
        assert ds.descriptions == ("B4", "B8")
    with pytest.raises(ProductWriteError, match="input"):
        run_graph(parse_graph("g.xml", text=f"""<graph id="g"><version>1.0</version>
          <node id="Read"><operator>Read</operator><parameters><file>{src}</file></parameters></node>
          <node id="Write"><operator>Write</operator><sources><sourceProduct refid="Read"/></sources>
            <parameters><file>{src}</file><formatName>GeoTIFF</formatName></parameters></node>
        </graph>"""), ExecutionContext(overwrite=True))
