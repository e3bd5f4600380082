"""Sentinel-2 SAFE reading: real product metadata + generated band images.

The four metadata sets in ../shared/data/safe_s2_metadata are real (no
images). Metadata parsing is checked on them directly; for whole reads each
is copied into tmp_path and small band images (lossless JPEG2000 for L1C,
GeoTIFF for the L2A products whose ``imageFormat`` is GeoTIFF) are written at
the paths the metadata lists.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from snap_operators.core.errors import ProductReadError
from snap_operators.io import detect_format, open_product
from snap_operators.io.raster_bands import LazyRasterBand
from snap_operators.io.safe import (
    band_images,
    parse_product_metadata,
    read_safe,
    read_safe_metadata,
)

L1C_0301 = "S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE"
L1C_0510 = "S2A_MSIL1C_20240101T102431_N0510_R065_T30NWM_20240101T122107.SAFE"
L2A_0212 = "S2B_MSIL2A_20191228T210519_N0212_R071_T01CCV_20201003T104658.SAFE"
L2A_0400 = "S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE"

#: Known truth from the products (see ../shared/data/README.md).
EXPECTED = {
    L1C_0301: dict(level="Level-1C", baseline="03.01", offset=0.0, spacecraft="Sentinel-2A",
                   tile=("EPSG:32646", 499980.0, 3100020.0), epsg=32646),
    L1C_0510: dict(level="Level-1C", baseline="05.10", offset=-1000.0, spacecraft="Sentinel-2A",
                   tile=None, epsg=32630),
    L2A_0212: dict(level="Level-2A", baseline="02.12", offset=0.0, spacecraft="Sentinel-2B",
                   tile=("EPSG:32701", 300000.0, 2000020.0), epsg=32701),
    L2A_0400: dict(level="Level-2A", baseline="04.00", offset=-1000.0, spacecraft="Sentinel-2B",
                   tile=("EPSG:32633", 499980.0, 8900040.0), epsg=32633),
}


@pytest.fixture(autouse=True)
def safe_dir(make_safe):
    """The real metadata sets; every test here needs them (skipped without ../shared/data)."""
    return make_safe.metadata


def reflectance(dn: np.ndarray, offset: float) -> np.ndarray:
    out = ((dn.astype(np.float64) + offset) / 10000.0).astype(np.float32)
    out[dn == 0] = np.nan
    return out


# --- metadata ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED))
def test_product_metadata_parsed(make_safe, safe_dir, name):
    exp = EXPECTED[name]
    md = read_safe_metadata(safe_dir / name)
    assert md.level == exp["level"]
    assert md.processing_baseline == exp["baseline"]
    assert md.quantification == 10000.0
    assert md.spacecraft == exp["spacecraft"]
    assert md.nodata == 0 and md.saturated == 65535
    stamp = re.search(r"_(\d{8}T\d{6})_", name)[1]
    assert md.start_time.strftime("%Y%m%dT%H%M%S") == stamp
    assert md.product_uri == name
    if exp["offset"]:
        bands = [b.name for b in md.spectral]
        assert set(md.offsets) == set(bands) and len(bands) == 13
        assert all(v == exp["offset"] for v in md.offsets.values())
        assert md.offset_tag == ("BOA_ADD_OFFSET" if exp["level"] == "Level-2A" else "RADIO_ADD_OFFSET")
        assert md.baseline >= (4, 0)
    else:
        assert md.offsets == {} and md.baseline < (4, 0)
    assert {b.name: b.resolution for b in md.spectral} == make_safe.native
    assert md.image_files and all(f.startswith("GRANULE/") for f in md.image_files)


def test_l2a_picks_native_resolution_images(safe_dir):
    md = read_safe_metadata(safe_dir / L2A_0212)
    images = band_images(md)
    assert "B10" not in images and len(images) == 12
    assert images["B2"].split("/")[-2:] == ["R10m", "T01CCV_20191228T210519_B02_10m"]
    assert images["B5"].split("/")[-2] == "R20m"
    assert images["B1"].split("/")[-2] == "R60m"
    assert images["B8A"].endswith("B8A_20m")


def test_metadata_errors(tmp_path):
    with pytest.raises(ProductReadError, match="malformed XML"):
        parse_product_metadata(b"<Level-1C_User_Product><unclosed>", "x.xml")
    with pytest.raises(ProductReadError, match="not Sentinel-2"):
        parse_product_metadata(b"<Something/>", "x.xml")
    with pytest.raises(ProductReadError, match="no QUANTIFICATION_VALUE"):
        parse_product_metadata(b"<n1:Level-1C_User_Product xmlns:n1='u'/>", "x.xml")
    evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><Level-1C_User_Product>&e;</Level-1C_User_Product>'
    with pytest.raises(ProductReadError):
        parse_product_metadata(evil, "evil.xml")
    bad_zip = tmp_path / "p.zip"
    bad_zip.write_bytes(b"PK not really")
    with pytest.raises(ProductReadError, match="p.zip"):
        open_product(bad_zip)
    other = tmp_path / "other"
    other.mkdir()
    (other / "readme.txt").write_text("x")
    shutil.make_archive(str(tmp_path / "other"), "zip", other)
    with pytest.raises(ProductReadError, match="no MTD_MSIL1C.xml or MTD_MSIL2A.xml inside"):
        open_product(tmp_path / "other.zip")


def test_images_missing(safe_dir, tmp_path):
    shutil.copytree(safe_dir / L1C_0301, tmp_path / L1C_0301)
    with pytest.raises(ProductReadError, match="none of the 14 image files"):
        open_product(tmp_path / L1C_0301)


# --- whole reads -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED))
def test_whole_safe_read(make_safe, tmp_path, name):
    exp = EXPECTED[name]
    dns = make_safe(name, tmp_path)
    safe = tmp_path / name
    assert detect_format(safe) == "safe"
    prod = open_product(safe, tile_size=16)
    l2a = exp["level"] == "Level-2A"
    expected_names = [b for b in make_safe.native if not (l2a and b == "B10")]
    assert prod.band_names == expected_names
    assert prod.product_type == f"S2_MSI_{exp['level']}"
    assert prod.name == name[:-5]
    assert prod.crs.to_epsg() == exp["epsg"]
    assert prod.start_time.tzinfo is not None
    assert prod.is_multi_size and prod.scene_shape == (60, 60)
    for band in prod.bands.values():
        res = make_safe.native[band.name]
        assert band.shape == (make_safe.pixels[res], make_safe.pixels[res])
        assert band.resolution == (res, res)
        if exp["tile"]:  # geocoding from the granule MTD_TL.xml, not from the image
            assert (band.transform.c, band.transform.f) == exp["tile"][1:]
        else:
            assert (band.transform.c, band.transform.f) == make_safe.origin
        assert band.dtype == np.float32 and np.isnan(band.no_data)
        assert band.unit == "dl" and band.wavelength is not None
        out = band.data.compute()
        np.testing.assert_array_equal(out, reflectance(dns[band.name], exp["offset"]))  # NaN == NaN here
        assert np.isnan(out[0]).all()
    if exp["offset"]:
        assert prod.band("B2").data[1, 1].compute() == np.float32(-0.0001)
        assert prod.band("B2").data[1, 2].compute() == 0.0
    radiometric = prod.metadata.element(f"{exp['level']}_User_Product").element("Radiometric")
    assert radiometric.attributes["QUANTIFICATION_VALUE"] == 10000.0
    assert radiometric.attributes["PROCESSING_BASELINE"] == exp["baseline"]
    offsets = radiometric.element(radiometric.attributes["OFFSET_TAG"]).attributes
    assert offsets["B4"] == exp["offset"]
    general = prod.metadata.element(f"{exp['level']}_User_Product").element("General_Info")
    assert general.attributes["SPACECRAFT_NAME"] == exp["spacecraft"]
    assert (prod.metadata.element("Granules") is not None) == bool(exp["tile"])


def test_wavelengths_from_metadata(make_safe, tmp_path):
    make_safe(L2A_0400, tmp_path)
    prod = open_product(tmp_path / L2A_0400)
    assert prod.band("B2").wavelength == 492.3 and prod.band("B12").wavelength == 2185.7  # S2B values


def test_l2a_reads_native_folder_not_resampled_copies(make_safe, tmp_path):
    dns = make_safe(L2A_0400, tmp_path, seed=3)
    prod = open_product(tmp_path / L2A_0400, band_names=["B2", "B1"])
    assert prod.band_names == ["B2", "B1"]
    np.testing.assert_array_equal(prod.band("B2").data.compute(), reflectance(dns["B2"], -1000.0))
    # B1 is listed in R20m too; the 60 m original is read
    assert prod.band("B1").shape == (10, 10)
    np.testing.assert_array_equal(prod.band("B1").data.compute(), reflectance(dns["B1"], -1000.0))


@pytest.mark.parametrize("name", [L1C_0510, L2A_0212])
def test_zipped_and_mtd_inputs_read_the_same(make_safe, tmp_path, name):
    dns = make_safe(name, tmp_path / "unzipped")
    archive = shutil.make_archive(str(tmp_path / name), "zip", tmp_path / "unzipped", name)
    offset = EXPECTED[name]["offset"]
    for source in (Path(archive), next((tmp_path / "unzipped" / name).glob("MTD_MSIL*.xml"))):
        assert detect_format(source) == "safe"
        prod = open_product(source, tile_size=32)
        assert prod.band("B8A").shape == (30, 30)
        for band in ("B2", "B8A", "B9"):
            np.testing.assert_array_equal(prod.band(band).data.compute(), reflectance(dns[band], offset))
    zipped = read_safe(archive, band_names=["B4"])
    assert zipped.file_location == archive and zipped.band_names == ["B4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([Path(archive).name, "unzipped"])  # read in place


def test_pixel_region_on_safe(make_safe, tmp_path):
    dns = make_safe(L1C_0301, tmp_path)
    prod = open_product(tmp_path / L1C_0301, pixel_region="6,12,30,24")
    np.testing.assert_array_equal(prod.band("B2").data.compute(), reflectance(dns["B2"][12:36, 6:36], 0.0))
    np.testing.assert_array_equal(prod.band("B5").data.compute(), reflectance(dns["B5"][6:18, 3:18], 0.0))
    np.testing.assert_array_equal(prod.band("B1").data.compute(), reflectance(dns["B1"][2:6, 1:6], 0.0))
    assert prod.band("B1").transform.c == 499980.0 + 60 and prod.band("B1").transform.f == 3100020.0 - 120


def test_safe_build_reads_no_pixels(make_safe, tmp_path, monkeypatch):
    make_safe(L1C_0510, tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("pixels read while building")

    monkeypatch.setattr(LazyRasterBand, "_read", refuse)
    prod = open_product(tmp_path / L1C_0510)
    assert len(prod.bands) == 13
    assert prod.stop_time == dt.datetime(2024, 1, 1, 10, 24, 31, 24000, tzinfo=dt.timezone.utc)
    with pytest.raises(AssertionError, match="pixels read"):  # a read is seen: the band images go through _read
        prod.band("B2").data.compute()


# --- the L2A scene classification (SCL) ---------------------------------------------------------------


def write_scl(make_safe, name: str, dest: Path, seed: int = 0) -> np.ndarray:
    """SCL images (20 m and 60 m) at the paths the real L2A metadata lists; returns the 20 m values."""
    safe = dest / name
    text = next(safe.glob("MTD_MSIL2A.xml")).read_text(encoding="utf-8")
    rng = np.random.default_rng(seed)
    scl20 = rng.integers(0, 12, (make_safe.pixels[20], make_safe.pixels[20])).astype(np.uint8)
    for entry in re.findall(r"<IMAGE_FILE>([^<]+_SCL_(\d+)m)</IMAGE_FILE>", text):
        res = int(entry[1])
        n = make_safe.pixels[res]
        values = scl20 if res == 20 else scl20[::3, ::3]
        path = safe / (entry[0] + ".tif")
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint8",
                           crs=f"EPSG:{make_safe.epsg(name)}",
                           transform=Affine(res, 0.0, make_safe.origin[0], 0.0, -res, make_safe.origin[1])) as ds:
            ds.write(values, 1)
    return scl20


def test_l2a_scene_classification_is_read_resampled_and_masked(make_safe, tmp_path):
    from snap_operators.core.context import ExecutionContext
    from snap_operators.core.operator import get_operator
    from snap_operators.science import cloudmask as cm

    make_safe(L2A_0400, tmp_path)
    scl = write_scl(make_safe, L2A_0400, tmp_path)
    prod = open_product(tmp_path / L2A_0400, tile_size=16)
    band = prod.band("quality_scene_classification")  # SNAP's S2 reader's name for the SCL
    assert prod.band_names[-1] == "quality_scene_classification"
    assert band.shape == (30, 30) and band.dtype == np.uint8 and band.no_data == 0
    assert band.resolution == (20, 20) and (band.transform.c, band.transform.f) == (499980.0, 8900040.0)
    assert [c.name for c in band.classes][3] == "Cloud shadows" and len(band.classes) == 12
    np.testing.assert_array_equal(band.data.compute(), scl)  # the 20 m file, not the 60 m one

    ctx = ExecutionContext(tile_size=16)
    res = get_operator("Resample").create({"sourceProduct": prod}, {"referenceBand": "B2", "upsampling": "Bilinear",
                                                                    "downsampling": "Mean"}, context=ctx).initialize()
    up = res.band("quality_scene_classification").data.compute()
    np.testing.assert_array_equal(up, np.repeat(np.repeat(scl, 2, 0), 2, 1))  # nearest, never blended
    op = get_operator("CloudMask").create({"sourceProduct": res}, {"computeCloudBuffer": "false"}, context=ctx)
    mask = op.initialize().band("cloud_mask").data.compute()
    assert op.tile_kernel().func.method == "scl"
    np.testing.assert_array_equal(mask, cm.scl_codes(up))
    assert set(np.unique(mask).tolist()) == {0, 1, 2, 3, 255}


def test_scl_band_selected_by_name_and_absent_in_l1c(make_safe, tmp_path):
    make_safe(L2A_0212, tmp_path / "a")
    write_scl(make_safe, L2A_0212, tmp_path / "a")
    prod = open_product(tmp_path / "a" / L2A_0212, band_names=["quality_scene_classification", "B4"])
    assert prod.band_names == ["quality_scene_classification", "B4"]
    make_safe(L1C_0301, tmp_path / "b")
    assert "quality_scene_classification" not in open_product(tmp_path / "b" / L1C_0301).bands


def test_missing_band_image_is_named_unless_the_band_is_not_read(make_safe, tmp_path):
    make_safe(L1C_0301, tmp_path)
    safe = tmp_path / L1C_0301
    b11 = next(safe.rglob("*_B11.jp2"))
    b11.unlink()  # an interrupted download
    with pytest.raises(ProductReadError, match=r"1 image file\(s\) listed in .*MTD_MSIL1C.xml missing: "
                                              r"GRANULE/.*_B11 \(B11\); the product is incomplete"):
        open_product(safe, tile_size=16)
    prod = open_product(safe, tile_size=16, band_names=["B4", "B8"])  # the bands that are there still read
    assert prod.band_names == ["B4", "B8"]
