"""SpectralIndices with indices of the Awesome Spectral Indices catalogue: names, bands, constants, errors, graphs."""

import math
import re
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import OperatorError, ParameterError
from snap_operators.engine.graph import parse_graph
from snap_operators.engine.runner import run_graph
from snap_operators.ops.spectral_indices import SpectralIndicesOp
from snap_operators.science.indices import compute_indices

T = Affine(10, 0, 500000, 0, -10, 4000000)
ALL_S2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


@pytest.fixture
def s2(make_product):
    """``s2(names=ALL_S2, shape=(40, 50), chunks=16, seed=0)``: random reflectance bands, unit dl."""

    def build(names=ALL_S2, shape=(40, 50), chunks=16, seed=0, no_data=None):
        rng = np.random.default_rng(seed)
        arrays = {n: rng.uniform(0.01, 0.6, shape).astype(np.float32) for n in names}
        return make_product(arrays, name="S2_test", product_type="S2_MSI_Level-1C", transform=T, chunks=chunks,
                            unit="dl", **({"no_data": no_data} if no_data is not None else {}))

    return build


def run_op(product, **params):
    return SpectralIndicesOp.create({"sourceProduct": product}, {k: str(v) for k, v in params.items()}).initialize()


def data(product, name):
    return product.band(name).data.compute()


def test_catalogue_indices_are_bands_named_by_their_short_name(s2):
    p = s2()
    t = run_op(p, indices="NDVI,EVI,kNDVI,NDREI,IRECI,NBR")
    assert t.band_names == ["NDVI", "EVI", "kNDVI", "NDREI", "IRECI", "NBR"]
    n, r, b, re1, re2, re3, s2b = (data(p, x) for x in ("B08", "B04", "B02", "B05", "B06", "B07", "B12"))
    np.testing.assert_allclose(data(t, "EVI"), 2.5 * (n - r) / (n + 6 * r - 7.5 * b + 1), rtol=1e-5)
    np.testing.assert_allclose(data(t, "kNDVI"), np.tanh((n - r) ** 2), rtol=1e-5, atol=1e-7)  # RBF, sigma 0.5
    np.testing.assert_allclose(data(t, "NDREI"), (n - re1) / (n + re1), rtol=1e-5)
    np.testing.assert_allclose(data(t, "IRECI"), (re3 - r) / (re1 / re2), rtol=1e-5)
    np.testing.assert_allclose(data(t, "NBR"), (n - s2b) / (n + s2b), rtol=1e-5)
    for band in t.bands.values():
        assert band.dtype == np.float32 and band.unit == "1" and math.isnan(band.no_data) and band.transform == T
    evi = t.band("EVI").description
    assert evi.startswith("Enhanced Vegetation Index (EVI, Awesome Spectral Indices): g * (N - R) / (N + C1 * R - "
                          "C2 * B + L) with N=B08, R=B04, B=B02; g=2.5, C1=6, C2=7.5, L=1; https://doi.org/")
    assert "RBF kernel" in t.band("kNDVI").description and "sigma=0.5" in t.band("kNDVI").description
    meta = t.metadata.element("SpectralIndices").attributes
    assert meta["indices"] == "NDVI,EVI,kNDVI,NDREI,IRECI,NBR" and meta["kernel"] == "RBF"
    assert meta["constants"] == "g=2.5,C1=6,C2=7.5,L=1,sigma=0.5"
    assert "B5=B05" in meta["inputs"] and "B8A" not in meta["inputs"]  # only the bands read


def test_band_names_b8a_and_lower_case_resolve(s2):
    p = s2(names=("b8a", "B11", "B12", "B8"))
    t = run_op(p, indices="NBR2,ndmi")  # NBR2 = (S1 - S2) / (S1 + S2); NDMI is this project's
    s1, s2b = data(p, "B11"), data(p, "B12")
    np.testing.assert_allclose(data(t, "NBR2"), (s1 - s2b) / (s1 + s2b), rtol=1e-5)
    t = run_op(p, indices="CRSWIR")  # reads N2 = B8A and the central wavelengths
    n2 = data(p, "b8a")
    expected = s1 / (n2 + (s2b - n2) / (2202.4 - 864.7) * (1613.7 - 864.7))
    np.testing.assert_allclose(data(t, "CRSWIR"), expected, rtol=1e-5)
    assert "B8A=b8a" in t.metadata.element("SpectralIndices").attributes["inputs"]


def test_constants_parameter_overrides_only_the_catalogue(s2):
    p = s2()
    n, r, b = (data(p, x) for x in ("B08", "B04", "B02"))
    t = run_op(p, indices="SAVI,EVI", constants="L=0.25,g=2", saviL=0.5)
    np.testing.assert_allclose(data(t, "EVI"), 2 * (n - r) / (n + 6 * r - 7.5 * b + 0.25), rtol=1e-5)
    np.testing.assert_allclose(data(t, "SAVI"), 1.5 * (n - r) / (n + r + 0.5), rtol=1e-5)  # saviL, not L
    assert t.metadata.element("SpectralIndices").attributes["constants"] == "g=2,C1=6,C2=7.5,L=0.25"
    # The catalogue's SAVI reads L: with L = saviL the two agree.
    own = run_op(p, indices="SAVI", saviL=0.25)
    listed = run_op(p, indices="ASI:SAVI", constants="L=0.25")
    np.testing.assert_allclose(data(listed, "SAVI"), data(own, "SAVI"), rtol=1e-5, atol=1e-7)
    assert not np.allclose(data(run_op(p, indices="ASI:SAVI"), "SAVI"), data(own, "SAVI"))  # L = 1 by default
    # sigma=mean: kNDVI = tanh(NDVI^2).
    k = run_op(p, indices="kNDVI", constants="sigma=mean")
    np.testing.assert_allclose(data(k, "kNDVI"), np.tanh(((n - r) / (n + r)) ** 2), rtol=1e-5, atol=1e-7)
    lin = run_op(p, indices="kNDVI", kernel="linear")
    np.testing.assert_allclose(data(lin, "kNDVI"), (n - r) / (n + r), rtol=1e-5, atol=1e-7)
    assert "constants" not in run_op(p, indices="NDVI").metadata.element("SpectralIndices").attributes


def test_asi_prefix_gives_the_catalogues_definition_of_a_shared_name(s2):
    p = s2()
    t = run_op(p, indices="BI,BSI")
    listed = run_op(p, indices="asi:BI")
    assert listed.band_names == ["BI"]
    np.testing.assert_allclose(data(listed, "BI"), data(t, "BSI"), rtol=1e-5)  # the catalogue's BI: bare soil
    assert not np.allclose(data(listed, "BI"), data(t, "BI"))  # this project's BI: brightness
    assert listed.band("BI").description.startswith("Bare Soil Index (BI, Awesome Spectral Indices)")
    with pytest.raises(ParameterError, match="two requested indices would both be band BI"):
        run_op(p, indices="BI,ASI:BI")
    assert run_op(p, indices="NDVI,ndvi,NDVI").band_names == ["NDVI"]


def test_errors_are_one_line(s2):
    p = s2(names=("B04", "B08", "B03"))
    cases = [
        (dict(indices="NDVI,EVI"), OperatorError,
         r"^SpectralIndices: index EVI needs N=B8, R=B4, B=B2; missing: B2 \(as B2 or B02\); bands in product: B04, B08, B03$"),
        (dict(indices="CRSWIR"), OperatorError, r"index CRSWIR needs S1=B11, N2=B8A, S2=B12; missing: B8A \(as B8A "
                                                r"or B08A\), B11 \(as B11\), B12 \(as B12\)"),
        (dict(indices="EVl"), ParameterError, r"^SpectralIndices: unknown index 'EVl': .* catalogue; did you mean EVI\?$"),
        (dict(indices="NDBaI"), ParameterError, r"^SpectralIndices: catalogue index NDBaI .* needs T \(Thermal "
                                                r"Infrared\): Sentinel-2 has no such band$"),
        (dict(indices="DpRVIHH"), ParameterError, "needs HV .*, HH .*: SpectralIndices reads Sentinel-1 VV and VH only$"),
        (dict(indices="NIRvP"), ParameterError, "needs constant PAR .* give it in constants, e.g. PAR=1$"),
        (dict(indices="EVI", constants="l=0.5"), ParameterError,
         r"^SpectralIndices: constants: unknown constant 'l'; did you mean L\?"),
        (dict(indices="kNDVI", kernel="gauss"), ParameterError, "kernel.*'gauss' is not one of RBF, linear, poly"),
        (dict(indices="bai"), ParameterError, "'bai' could be catalogue index BAI or BaI"),
    ]
    for params, kind, message in cases:
        with pytest.raises(kind) as exc:
            run_op(p, **params)
        msg = str(exc.value)
        assert "\n" not in msg
        assert re.search(message, msg), (message, msg)


def test_radar_indices_read_linear_intensity_from_db_or_linear_bands(make_band, make_product):
    rng = np.random.default_rng(4)
    vv = rng.uniform(0.005, 0.5, (20, 30)).astype(np.float32)
    vh = rng.uniform(0.0005, 0.1, (20, 30)).astype(np.float32)

    def product(names, units, a, b):
        return make_product([make_band(n, x, T, None, 8, unit=u) for n, x, u in zip(names, (a, b), units)],
                            name="S1", product_type="GRD")

    lin = product(("Sigma0_VV", "Sigma0_VH"), ("intensity", "intensity"), vv, vh)
    db = product(("Sigma0_VV_db", "Sigma0_VH_db"), ("intensity_db", "intensity_db"),
                 10 * np.log10(vv), 10 * np.log10(vh))
    names = "RVI,DpRVIVV,VHVVR,NDPolI,DPDD"
    a, b = run_op(lin, indices=names), run_op(db, indices=names)
    for n in names.split(","):
        np.testing.assert_allclose(data(b, n), data(a, n), rtol=1e-4, err_msg=n)
    np.testing.assert_allclose(data(a, "DpRVIVV"), data(a, "RVI"), rtol=1e-6)  # the same definition
    np.testing.assert_allclose(data(a, "NDPolI"), (vv - vh) / (vv + vh), rtol=1e-5)
    np.testing.assert_allclose(data(a, "DPDD"), (vv + vh) / 2**0.5, rtol=1e-5)
    assert "VV=Sigma0_VV_db (linear)" in b.band("DpRVIVV").description
    with pytest.raises(OperatorError, match=r"index DpRVIVV needs VH=VH, VV=VV; missing: VH \(as Sigma0_VH"):
        run_op(product(("Sigma0_VV", "B04"), ("intensity", None), vv, vh), indices="DpRVIVV")


def test_no_data_nan_and_zero_denominators_give_nan_without_warnings(make_product):
    rng = np.random.default_rng(1)
    bands = {n: rng.uniform(0.01, 0.6, (4, 5)).astype(np.float32) for n in ("B02", "B04", "B08")}
    bands["B08"][0, 0], bands["B08"][0, 1] = np.nan, -1.0  # NaN, and the no-data value
    bands["B08"][0, 2] = bands["B04"][0, 2] = 0.0  # NDVI 0 / 0
    p = make_product(bands, transform=T, chunks=2, no_data=-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = run_op(p, indices="EVI,NDVI", checkInputs="false")
        evi, ndvi = data(t, "EVI"), data(t, "NDVI")
    assert np.isnan(evi[0, :2]).all() and np.isnan(ndvi[0, :3]).all()
    assert np.isfinite(evi[1:]).all() and np.isfinite(evi[0, 2:]).all()


def test_chunked_with_a_neighbourhood_index_equals_one_tile(s2):
    """PANTEX (4 px halo) beside catalogue indices: the halo path hands them the inner tile."""
    p = s2(names=("B02", "B03", "B04", "B05", "B08"), shape=(45, 38), chunks=(16, 11))
    t = run_op(p, indices="PANTEX,EVI,NDREI,NDVI")
    tiles = {r: data(p, n) for r, n in (("B2", "B02"), ("B3", "B03"), ("B4", "B04"), ("B5", "B05"), ("B8", "B08"))}
    whole = compute_indices(tiles, ["EVI", "NDREI", "NDVI"])
    for n, expected in whole.items():
        np.testing.assert_array_equal(data(t, n), expected, err_msg=n)
    assert np.isfinite(data(t, "PANTEX")).all()


def test_tile_kernel_gives_the_same_bits(s2):
    p = s2(names=ALL_S2, shape=(32, 32), chunks=32)
    op = SpectralIndicesOp.create({"sourceProduct": p}, {"indices": "NDVI,EVI,NDREI,kNDVI"})
    t = op.initialize()
    kernel = op.tile_kernel()
    out = kernel.func({r: data(p, n) for r, n in kernel.inputs.items()})
    for n in ("NDVI", "EVI", "NDREI", "kNDVI"):
        np.testing.assert_array_equal(out[n], data(t, n), err_msg=n)


GRAPH = """<graph id="catalogue"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
  <node id="SpectralIndices"><operator>SpectralIndices</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><indices>NDVI,EVI,kNDVI</indices><constants>L=0.5,sigma=mean</constants><kernel>RBF</kernel></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="SpectralIndices"/></sources>
    <parameters><file>${output}</file><formatName>GeoTIFF</formatName></parameters></node>
</graph>"""


def test_graph_with_catalogue_indices_and_constants(write_tif, tmp_path):
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.01, 0.6, (3, 24, 40)).astype(np.float32)
    src = write_tif(tmp_path / "s2.tif", raw, descriptions=("B02", "B04", "B08"), crs="EPSG:32633", transform=T)
    out = tmp_path / "out.tif"
    graph = parse_graph("g.xml", text=GRAPH).substitute({"input": str(src), "output": str(out)})
    run_graph(graph, ExecutionContext(tile_size=16))
    b, r, n = raw
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.descriptions == ("NDVI", "EVI", "kNDVI") and ds.dtypes == ("float32",) * 3
        np.testing.assert_allclose(ds.read(2), 2.5 * (n - r) / (n + 6 * r - 7.5 * b + 0.5), rtol=1e-5)
        np.testing.assert_allclose(ds.read(3), np.tanh(((n - r) / (n + r)) ** 2), rtol=1e-5, atol=1e-7)


def test_real_sentinel2_scene_through_the_cli(shared_data, run_cli, tmp_path, one_line_error):
    """eo-learn's Slovenia scene (13 bands, L1C reflectance) with red-edge, NIR-2 and kernel indices."""
    src = shared_data("eolearn_slovenia") / "S2L1C_2015-07-11.tif"
    out = tmp_path / "idx.tif"
    code, _, err = run_cli("SpectralIndices", "-Pindices=NDVI,EVI,kNDVI,NDREI,S2REP,CRSWIR", "-Pconstants=sigma=mean",
                           "-t", str(out), str(src), "--quiet")
    assert code == 0, err
    with rasterio.open(src) as ds:
        bands = dict(zip(ds.descriptions, ds.read().astype(np.float32)))
    with rasterio.open(out) as ds:
        got = dict(zip(ds.descriptions, ds.read()))
    n, r = bands["B08"], bands["B04"]
    ndvi = (n - r) / (n + r)
    np.testing.assert_allclose(got["kNDVI"], np.tanh(ndvi**2), rtol=1e-5, atol=1e-7)
    assert np.nanmedian(got["NDVI"]) > 0.5 and 0.3 < np.nanmedian(got["EVI"]) < 1.0  # a green July scene
    assert 705 < np.nanmedian(got["S2REP"]) < 740  # the red-edge position, nm
    assert np.isfinite(got["CRSWIR"]).all()
    code, _, err = run_cli("SpectralIndices", "-Pindices=NDVI,EVl", "-t", str(tmp_path / "x.tif"), str(src))
    assert code == 1 and one_line_error(err).endswith("did you mean EVI?")
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.parametrize("method", ["numpy", "numba"])
def test_outputs_never_alias_or_write_the_input_tiles(method):
    rng = np.random.default_rng(9)
    tiles = {r: rng.uniform(0.01, 0.6, (8, 9)).astype(np.float32) for r in ("B2", "B4", "B8")}
    tiles["VV"] = np.full((8, 9), -10.0, np.float32)
    tiles["VH"] = np.full((8, 9), -20.0, np.float32)
    for t in tiles.values():
        t.flags.writeable = False  # as tiles read from a file may be
    kept = {r: t.copy() for r, t in tiles.items()}
    out = compute_indices(tiles, ["VV_db", "NDVI", "EVI", "DpRVIVV"], sar_db={"VV": True, "VH": True}, method=method)
    for name, a in out.items():
        assert a.flags.writeable and not any(np.shares_memory(a, t) for t in tiles.values()), name
    for r, t in tiles.items():
        np.testing.assert_array_equal(t, kept[r])
    np.testing.assert_array_equal(out["VV_db"], tiles["VV"])
    np.testing.assert_allclose(out["DpRVIVV"], 4 * 0.01 / 0.11, rtol=1e-5)
