"""BEAM-DIMAP: the real MERIS product, the SNAP 13 Sentinel-1 header, and write -> read round trips."""

from __future__ import annotations

import datetime as dt
import math
import pickle
import xml.etree.ElementTree as ET
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from snap_operators.core.errors import ProductReadError, ProductWriteError
from snap_operators.core.product import Band, ClassInfo, MetadataElement, Product
from snap_operators.io.dimap import (
    dimap_header_xml,
    format_snap_time,
    parse_snap_time,
    read_dimap,
    read_dimap_header,
    write_dimap,
)

UTC = dt.timezone.utc
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


@pytest.fixture
def meris(shared_data):
    """The real MERIS FRS L1b subset (../shared/data/beam_dimap)."""
    return shared_data("beam_dimap", "MER_FRS_L1B_SUBSET.dim")


@pytest.fixture
def s1_header(shared_data):
    """The SNAP 13 Sentinel-1 SLC header, without its .data folder."""
    return next(shared_data("beam_dimap", "s1_slc_split_header_only").glob("*.dim"))


# --- the real MERIS product ---------------------------------------------------------------


def test_meris_header_bands_and_times(meris):
    p = read_dimap(meris, tile_size=64)
    assert p.band_names == [f"radiance_{i}" for i in range(1, 16)] + ["l1_flags", "detector_index"]
    assert p.scene_shape == (184, 221)
    assert p.product_type == "MER_FRS_1P"
    assert p.start_time == dt.datetime(2007, 7, 9, 11, 14, 55, 493954, tzinfo=UTC)
    assert p.stop_time == dt.datetime(2007, 7, 9, 11, 15, 3, 545405, tzinfo=UTC)
    assert p.crs is None and p.transform is None  # tie-point geocoding: no map grid
    r1 = p.band("radiance_1")
    assert r1.dtype == np.float32 and r1.unit == "mW/(m^2*sr*nm)"
    assert r1.wavelength == pytest.approx(412.691) and r1.description == "TOA radiance band 1"
    assert isinstance(r1.data, da.Array) and r1.data.chunks == ((64, 64, 56), (64, 64, 64, 29))
    assert p.band("l1_flags").dtype == np.uint8 and p.band("detector_index").dtype == np.int16
    assert p.metadata.element("MPH").attributes["ABS_ORBIT"] == 28004
    assert p.metadata.element("SPH").attributes["BAND_WAVELEN"][:2] == [412691, 442559]
    assert p.metadata.element("MPH").attributes["PROC_TIME"] == "09-JUL-2007 12:01:24.421338"  # type="ascii"
    assert p.metadata.element("MPH").attributes["DELTA_UT1"] == -0.162321
    assert p.file_location == str(meris)


@pytest.mark.parametrize("band, factor", [("radiance_1", 0.009474839083850384), ("radiance_13", 0.00355434138327837)])
def test_meris_scaling_and_byte_order_match_gdal(meris, band, factor):
    """GDAL's ENVI driver (which honours ``byte order = 1``) gives the raw counts."""
    p = read_dimap(meris, tile_size=100)
    with rasterio.open(meris.with_suffix(".data") / f"{band}.img") as ds:
        raw = ds.read(1)
    assert raw.dtype == np.uint16
    # Right byte order gives a smooth image; swapped bytes turn the low byte into noise.
    assert np.median(np.abs(np.diff(raw.astype(int), axis=1))) < 0.05 * raw.mean()
    np.testing.assert_allclose(p.band(band).data.compute(), raw.astype("float32") * np.float32(factor), rtol=1e-6)
    window = p.band(band).data[100:150, 30:90].compute()  # a window reads only its chunks
    np.testing.assert_allclose(window, raw[100:150, 30:90] * np.float32(factor), rtol=1e-6)


def test_meris_integer_bands_and_pickled_reader(meris):
    p = read_dimap(meris)
    with rasterio.open(meris.with_suffix(".data") / "detector_index.img") as ds:
        np.testing.assert_array_equal(p.band("detector_index").data.compute(), ds.read(1))
    flags = pickle.loads(pickle.dumps(p.band("l1_flags").data)).compute()  # dask.distributed ships it
    assert flags.dtype == np.uint8 and flags.max() > 0


def test_meris_write_read_round_trip(meris, tmp_path):
    p = read_dimap(meris)
    write_dimap(p, tmp_path / "copy")
    q = read_dimap(tmp_path / "copy.dim")
    assert q.band_names == p.band_names and q.start_time == p.start_time and q.product_type == p.product_type
    for name in ("radiance_7", "l1_flags", "detector_index"):
        assert q.band(name).dtype == p.band(name).dtype
        np.testing.assert_array_equal(q.band(name).data.compute(), p.band(name).data.compute())
    assert q.band("radiance_7").wavelength == p.band("radiance_7").wavelength
    assert q.metadata.element("MPH").attributes == p.metadata.element("MPH").attributes


# --- the SNAP 13 Sentinel-1 header without its .data folder -------------------------------


def test_s1_header_parses_without_band_data(s1_header):
    h = read_dimap_header(s1_header)
    assert h.version == "2.13.0"
    assert (h.width, h.height) == (20513, 1488)
    assert [b.name for b in h.bands] == ["i_IW1_VH", "q_IW1_VH", "Intensity_IW1_VH"]
    assert [b.data_type for b in h.bands] == ["int16", "int16", "float32"]
    assert h.bands[2].is_virtual and "i_IW1_VH * i_IW1_VH" in h.bands[2].expression
    assert h.bands[0].no_data_used and h.bands[0].unit == "real"
    assert h.start_time == dt.datetime(2018, 11, 15, 12, 50, 3, 549975, tzinfo=UTC)
    assert h.crs is None and h.bands[0].transform is None
    abstracted = h.metadata.element("Abstracted_Metadata")
    assert abstracted.attributes["MISSION"] == "SENTINEL-1A"
    assert abstracted.attributes["ABS_ORBIT"] == 24599
    assert isinstance(abstracted.attributes["first_line_time"], dt.datetime)


def test_s1_header_without_data_folder_is_a_one_line_read_error(s1_header):
    with pytest.raises(ProductReadError) as err:
        read_dimap(s1_header)
    msg = str(err.value)
    assert "\n" not in msg and "i_IW1_VH.img" in msg and ".data folder" in msg


# --- writing ------------------------------------------------------------------------------


T20 = Affine(20.0, 0.0, 399960.0, 0.0, -20.0, 5000040.0)
LEGEND = [ClassInfo(1, "Water", (0, 112, 255), "Open water"), ClassInfo(2, "Bare Soil", (210, 180, 140)),
          ClassInfo(4, "Urban Area/High Reflected sediments", (230, 0, 0))]


def sample_product():
    rng = np.random.default_rng(7)
    refl = rng.uniform(0, 0.5, (150, 130)).astype("float32")
    refl[10:20, 30:40] = np.nan
    cls = rng.choice(np.array([0, 1, 2, 4, 255], dtype="uint8"), (150, 130))
    p = Product("S2_scene", "S2_MSI_Level-2A", crs=CRS.from_epsg(32631),
                start_time=dt.datetime(2019, 3, 4, 10, 30, 21, 24000, tzinfo=UTC),
                stop_time=dt.datetime(2019, 3, 4, 10, 30, 29, tzinfo=UTC), description="test scene")
    p.add_band(Band("B4", da.from_array(refl, chunks=64), T20, np.nan, "1", "Red", 664.6))
    p.add_band(Band("land_cover", da.from_array(cls, chunks=(40, 130)), T20, 255, None, "classes", None, list(LEGEND)))
    hist = p.metadata.add_element("Processing_Graph")
    node = hist.add_element("node.0", operator="ProgressiveClassifier", tiles=12, threshold=0.35)
    node.attributes["bands"] = [2, 3, 8]
    node.attributes["weights"] = [0.5, 0.25]
    node.attributes["when"] = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    node.attributes["big"] = 3906249773
    return p, refl, cls


def test_round_trip_values_geocoding_times_and_classes(tmp_path):
    p, refl, cls = sample_product()
    path = write_dimap(p, tmp_path / "out")
    assert path == tmp_path / "out.dim"
    q = read_dimap(path, tile_size=64)
    assert q.name == "out" and q.product_type == p.product_type and q.description == "test scene"
    assert (q.start_time, q.stop_time) == (p.start_time, p.stop_time)
    assert q.crs.to_epsg() == 32631
    assert q.band("B4").transform == T20 and q.transform == T20
    np.testing.assert_array_equal(q.band("B4").data.compute(), refl)
    assert math.isnan(q.band("B4").no_data)
    assert (q.band("B4").unit, q.band("B4").description, q.band("B4").wavelength) == ("1", "Red", 664.6)
    lc = q.band("land_cover")
    assert lc.dtype == np.uint8 and lc.no_data == 255
    np.testing.assert_array_equal(lc.data.compute(), cls)
    assert [(c.value, c.name, tuple(c.color), c.description) for c in lc.classes] == [
        (c.value, c.name, c.color, c.description) for c in LEGEND
    ]


def test_metadata_tree_round_trip(tmp_path):
    p, _, _ = sample_product()
    q = read_dimap(write_dimap(p, tmp_path / "m.dim"))
    node = q.metadata.element("Processing_Graph").element("node.0")
    assert node.attributes == {
        "operator": "ProgressiveClassifier", "tiles": 12, "threshold": 0.35, "bands": [2, 3, 8],
        "weights": [0.5, 0.25], "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "big": 3906249773,
    }


def test_header_is_what_snap_desktop_reads(tmp_path):
    p, _, _ = sample_product()
    write_dimap(p, tmp_path / "h.dim")
    root = ET.parse(tmp_path / "h.dim").getroot()
    assert root.tag == "Dimap_Document" and root.find("Metadata_Id/METADATA_FORMAT").text == "DIMAP"
    ic = root.find("Index_Coding[@name='land_cover']")
    assert [i.findtext("INDEX_VALUE") for i in ic.iter("Index")] == ["1", "2", "4"]
    # SNAP node names exclude '/': the name is cleaned, the palette label keeps it
    assert ic.findall("Index")[2].findtext("INDEX_NAME") == "Urban Area_High Reflected sediments"
    sbi = root.findall("Image_Interpretation/Spectral_Band_Info")
    assert [s.findtext("BAND_NAME") for s in sbi] == ["B4", "land_cover"]
    assert sbi[1].findtext("INDEX_CODING_NAME") == "land_cover"
    assert (sbi[1].findtext("NO_DATA_VALUE_USED"), sbi[1].findtext("NO_DATA_VALUE")) == ("true", "255.0")
    assert (sbi[0].findtext("NO_DATA_VALUE_USED"), sbi[0].findtext("NO_DATA_VALUE")) == ("true", "NaN")
    assert sbi[0].findtext("IMAGE_TO_MODEL_TRANSFORM") == "20.0,0.0,0.0,-20.0,399960.0,5000040.0"
    stats = root.find("Image_Display/Band_Statistics")
    assert stats.findtext("BAND_INDEX") == "1"
    points = stats.findall("Color_Palette_Point")
    assert [(pt.findtext("SAMPLE"), pt.findtext("LABEL")) for pt in points][0] == ("1.0", "Water")
    assert points[0].find("COLOR").attrib == {"red": "0", "green": "112", "blue": "255", "alpha": "255"}
    assert root.findtext("Production/PRODUCT_SCENE_RASTER_START_TIME") == "04-MAR-2019 10:30:21.024000"
    assert CRS.from_wkt(root.findtext("Coordinate_Reference_System/WKT")).to_epsg() == 32631
    for df in root.iter("DATA_FILE_PATH"):  # every referenced file exists
        assert (tmp_path / df.get("href")).is_file()
        assert (tmp_path / df.get("href")).with_suffix(".img").is_file()


def test_band_files_are_big_endian_envi(tmp_path):
    p, refl, cls = sample_product()
    write_dimap(p, tmp_path / "be.dim")
    data = tmp_path / "be.data"
    hdr = (data / "B4.hdr").read_text()
    assert "byte order = 1" in hdr and "data type = 4" in hdr and "samples = 130" in hdr and "lines = 150" in hdr
    np.testing.assert_array_equal(np.fromfile(data / "B4.img", dtype=">f4").reshape(150, 130), refl)
    with rasterio.open(data / "B4.img") as ds:  # GDAL agrees
        assert ds.driver == "ENVI"
        np.testing.assert_array_equal(ds.read(1), refl)
    assert (data / "land_cover.img").stat().st_size == 150 * 130


def test_geographic_crs_wkt_has_lon_lat_axes(tmp_path):
    a = np.arange(12, dtype="float32").reshape(3, 4)
    p = Product("geo", crs=CRS.from_epsg(4326))
    p.add_band(Band("v", da.from_array(a), Affine(0.1, 0, 10.0, 0, -0.1, 50.0), np.nan))
    write_dimap(p, tmp_path / "geo.dim")
    wkt = ET.parse(tmp_path / "geo.dim").getroot().findtext("Coordinate_Reference_System/WKT")
    assert "AXIS" not in wkt  # WKT1 default (lon, lat), matching SNAP's transform
    q = read_dimap(tmp_path / "geo.dim")
    assert q.crs.to_epsg() == 4326 and q.transform == Affine(0.1, 0, 10.0, 0, -0.1, 50.0)


def test_unstorable_band_name_is_refused(tmp_path):
    p = Product("x")
    p.add_band(Band("a/b", da.zeros((4, 4), dtype="float32")))
    with pytest.raises(ProductWriteError, match="a/b"):
        write_dimap(p, tmp_path / "x.dim")
    assert list(tmp_path.iterdir()) == []


# --- hand-made headers: scaling, little-endian files, bad input -----------------------------


@pytest.mark.parametrize("order", [">", "<"])
def test_scaled_integer_band_with_no_data(make_dimap, tmp_path, order):
    raw = np.array([[0, 2, 4], [-6, 300, 0]], dtype="int16")
    p = read_dimap(make_dimap(tmp_path, raw, byte_order=order))
    assert p.start_time == dt.datetime(2020, 2, 1, 0, 0, 1, tzinfo=UTC)
    b = p.band("b")
    assert b.dtype == np.float32 and math.isnan(b.no_data)
    expected = raw * 0.5 + 1.0
    expected[raw == 0] = np.nan
    np.testing.assert_array_equal(b.data.compute(), expected.astype("float32"))


def test_log10_scaled_band(make_dimap, tmp_path):
    raw = np.array([[0, 1], [2, 3]], dtype="uint8")
    p = read_dimap(make_dimap(tmp_path, raw, dtype="uint8", envi_type=1, factor=1.0, offset=0.0,
                              nodata_used="false", extra="<LOG10_SCALED>true</LOG10_SCALED>"))
    np.testing.assert_allclose(p.band("b").data.compute(), 10.0 ** raw)


def test_unscaled_integer_band_keeps_dtype_and_nodata(make_dimap, tmp_path):
    raw = np.array([[1, 2], [3, 9]], dtype="uint16")
    b = read_dimap(make_dimap(tmp_path, raw, dtype="uint16", envi_type=12, factor=1.0, offset=0.0, nodata="9.0")).band("b")
    assert b.dtype == np.uint16 and b.no_data == 9
    np.testing.assert_array_equal(b.data.compute(), raw)


def add_virtual_band(dim: Path, index: int, name: str, expression: str, nodata_used="true"):
    tree = ET.parse(dim)
    sbi = ET.SubElement(tree.getroot().find("Image_Interpretation"), "Spectral_Band_Info")
    for tag, text in (("BAND_INDEX", str(index)), ("BAND_NAME", name), ("DATA_TYPE", "float32"),
                      ("PHYSICAL_UNIT", "intensity"), ("NO_DATA_VALUE_USED", nodata_used),
                      ("NO_DATA_VALUE", "0.0"), ("VIRTUAL_BAND", "true"), ("EXPRESSION", expression)):
        ET.SubElement(sbi, tag).text = text
    tree.write(dim)


def test_virtual_bands_are_computed_from_their_expression(tmp_path):
    """As SNAP's S1 SLC products: Intensity = i == 0 ? 0 : i*i + q*q, no-data 0."""
    rng = np.random.default_rng(3)
    i = rng.integers(-50, 50, (70, 90)).astype("int16")
    q = rng.integers(-50, 50, (70, 90)).astype("int16")
    i[:5] = 0
    p = Product("slc")
    p.add_band(Band("i_IW1_VH", da.from_array(i, chunks=32), no_data=0, unit="real"))
    p.add_band(Band("q_IW1_VH", da.from_array(q, chunks=32), no_data=0, unit="imaginary"))
    dim = write_dimap(p, tmp_path / "slc.dim")
    add_virtual_band(dim, 2, "Intensity_IW1_VH", "i_IW1_VH == 0.0 ? 0.0 : i_IW1_VH * i_IW1_VH + q_IW1_VH * q_IW1_VH")
    add_virtual_band(dim, 3, "Y_plus", "Y + q_IW1_VH", nodata_used="false")
    add_virtual_band(dim, 4, "masked", "l1_flags.INVALID ? 0 : q_IW1_VH")  # reads a flag: skipped
    back = read_dimap(dim, tile_size=32)
    assert back.band_names == ["i_IW1_VH", "q_IW1_VH", "Intensity_IW1_VH", "Y_plus"]
    intensity = back.band("Intensity_IW1_VH")
    assert intensity.dtype == np.float32 and intensity.unit == "intensity"
    expected = (i.astype("float64") ** 2 + q.astype("float64") ** 2).astype("float32")
    expected[(i == 0) | (expected == 0)] = np.nan
    np.testing.assert_array_equal(intensity.data.compute(), expected)
    rows = np.arange(70)[:, None] + 0.5  # Y is the pixel-centre row, per chunk offset
    np.testing.assert_array_equal(back.band("Y_plus").data.compute(), (rows + q).astype("float32"))


def test_truncated_band_file_is_refused(make_dimap, tmp_path):
    path = make_dimap(tmp_path, np.zeros((10, 10), dtype="int16"))
    img = tmp_path / "hand.data" / "b.img"
    img.write_bytes(img.read_bytes()[:50])
    with pytest.raises(ProductReadError, match="truncated"):
        read_dimap(path)


@pytest.mark.parametrize("text, match", [
    ("not xml at all <", "not a valid BEAM-DIMAP"),
    ("<graph/>", "not a BEAM-DIMAP header"),
    ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "boom">]><Dimap_Document>&x;</Dimap_Document>', "unsafe XML"),
])
def test_bad_headers_are_one_line_errors(tmp_path, text, match):
    (tmp_path / "bad.dim").write_text(text)
    with pytest.raises(ProductReadError, match=match) as err:
        read_dimap(tmp_path / "bad.dim")
    assert "\n" not in str(err.value)


def test_snap_time_format():
    t = dt.datetime(2007, 7, 9, 11, 14, 55, 493954, tzinfo=UTC)
    assert format_snap_time(t) == "09-JUL-2007 11:14:55.493954"
    assert parse_snap_time("09-JUL-2007 11:14:55.493954") == t
    assert parse_snap_time("09-jul-2007 11:14:55") == t.replace(microsecond=0)
    assert parse_snap_time("yesterday") is None
    cet = dt.timezone(dt.timedelta(hours=1))
    assert format_snap_time(dt.datetime(2020, 1, 1, 1, 0, tzinfo=cet)) == "01-JAN-2020 00:00:00.000000"


def test_header_xml_without_crs_has_no_geocoding():
    p = Product("plain")
    p.add_band(Band("v", da.zeros((3, 3), dtype="float32")))
    root = ET.fromstring(dimap_header_xml(p, "plain"))
    assert root.find("Coordinate_Reference_System") is None and root.find("Geoposition") is None
    assert root.find("Dataset_Sources") is None  # empty metadata tree, as SNAP
    p.metadata = MetadataElement("metadata", {"a": "b"})
    assert ET.fromstring(dimap_header_xml(p, "plain")).find("Dataset_Sources/MDElem/MDATTR").text == "b"
