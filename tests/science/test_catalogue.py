"""The Awesome Spectral Indices catalogue (snap_operators.science.catalogue) and this project's indices against it.

* the band-symbol table and constants come from the catalogue (spyndex's bundled copy);
* formulas are parsed, never ``eval``-ed, and anything but plain arithmetic is refused;
* every catalogue index computable from Sentinel-1/2 equals ``spyndex.computeIndex`` on the same arrays;
* this project's indices that the catalogue also defines agree with its formulas on random and real
  reflectance; where they differ (SAVI's default L, AWEI_nsh's sign) the difference is the one
  ``docs/indices.md`` states.
"""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
import spyndex

from snap_operators.core.errors import ParameterError
from snap_operators.science import catalogue as cat
from snap_operators.science.indices import INDICES, compute_indices, lookup

METHODS = ("numpy", "numba")
# The band-symbol table of the issue; the module reads it from the catalogue's own sentinel2a entries.
EXPECTED_BANDS = {"A": "B1", "B": "B2", "G": "B3", "R": "B4", "RE1": "B5", "RE2": "B6", "RE3": "B7", "N": "B8",
                  "N2": "B8A", "WV": "B9", "S1": "B11", "S2": "B12", "VV": "VV", "VH": "VH"}
SHAPE = (16, 24)
PAR = 1.3  # the one constant without a catalogue default (NIRvP)

# --- this project's indices and the catalogue ----------------------------------------------------
# Project index -> (catalogue index of the same definition, constants that make them one).
SAME = {
    "NDVI": ("NDVI", {}),
    "NDWI": ("NDWI", {}),  # McFeeters, (G - N) / (G + N)
    "MNDWI": ("MNDWI", {}),
    "SAVI": ("SAVI", {"L": 0.5}),  # the same formula; the defaults differ: saviL = 0.5 here, L = 1.0 there
    "MSAVI2": ("MSAVI", {}),  # the catalogue's MSAVI is Qi et al.'s MSAVI2
    "NDBI": ("NDBI", {}),
    "BSI": ("BI", {}),  # the catalogue's BI is the Bare Soil Index (this project's BI is a brightness)
    "NDMI": ("NDMI", {}),
    "NDTI": ("NDTI", {}),
    "AWEI_sh": ("AWEIsh", {}),
    "BI": ("BIXS", {}),  # sqrt((G^2 + R^2) / 2), the SPOT XS brightness index
    "CMR": ("STI", {}),  # S1 / S2: the catalogue names the same ratio Simple Tillage Index
    "NGBDI": ("NDYI", {}),  # (G - B) / (G + B): the catalogue's Normalized Difference Yellowness Index
    "RVI": ("DpRVIVV", {}),  # 4 VH / (VV + VH), linear
    "CR": ("VHVVR", {}),  # VH / VV, linear
}
# Project indices whose catalogue namesake is defined otherwise.
DIFFERENT = {
    # The catalogue writes 4 (G - S1) - 0.25 N + 2.75 S2; Feyisa et al. (2014) subtract 0.25 NIR + 2.75 SWIR2
    # (the parenthesis is lost), as this project does: the two differ by 5.5 B12.
    "AWEI_nsh": "AWEInsh",
}
# Project indices the catalogue has no entry for.
ABSENT = {
    "BI2": "brightness of B4, B3 and B8 (SNAP Bi2Op); the catalogue's brightness indices read visible bands only",
    "IOR": "iron oxide ratio B4 / B2: no catalogue entry",
    "PANTEX": "a neighbourhood texture, not a per-pixel formula",
    "VV_db": "a unit conversion", "VH_db": "a unit conversion", "VV_lin": "a unit conversion",
    "VH_lin": "a unit conversion",
    "CR_db": "a dB difference; the catalogue's radar indices are in linear power (its VHVVD is VH - VV, linear)",
    "SBI": "a dB mean; the catalogue's radar indices are in linear power",
}


def spyndex_params(index: cat.CatalogueIndex, tiles, constants, kernel="RBF"):
    """The inputs of ``spyndex.computeIndex`` for `index`: its bands, constants and kernels (spyndex.computeKernel)."""
    params = {s: tiles[r] for s, r in index.bands}
    params.update({c: constants[c] for c in index.constants})
    for sym, a, b in index.kernels:
        extra = {"sigma": constants["sigma"]} if kernel == "RBF" else (
            {"c": constants["c"], "p": constants["p"]} if kernel == "poly" else {})
        params[sym] = spyndex.computeKernel(kernel, {"a": params.get(a, constants.get(a)),
                                                     "b": params.get(b, constants.get(b)), **extra})
    return params


@pytest.fixture(scope="module")
def tiles():
    """Random reflectance of every Sentinel-2 band and linear VV/VH, float32."""
    rng = np.random.default_rng(7)
    out = {r: rng.uniform(0.01, 0.6, SHAPE).astype(np.float32) for r in cat.S2_BANDS}
    out["VV"] = rng.uniform(0.005, 0.5, SHAPE).astype(np.float32)
    out["VH"] = rng.uniform(0.0005, 0.1, SHAPE).astype(np.float32)
    return out


def rough_tiles(shape, seed=3):
    """As tests/ops: reflectance in [-0.05, 0.8) with NaN and zeros; VV/VH linear with NaN, zeros and negatives."""
    rng = np.random.default_rng(seed)
    out = {r: rng.uniform(-0.05, 0.8, shape).astype(np.float32) for r in cat.S2_BANDS}
    out["VV"] = rng.uniform(-0.01, 0.5, shape).astype(np.float32)
    out["VH"] = rng.uniform(0, 0.1, shape).astype(np.float32)
    for t in out.values():
        t[rng.random(shape) < 0.07] = np.nan
        t[rng.random(shape) < 0.02] = 0.0
    return out


def evaluate(bound: cat.BoundIndex, tiles):
    return bound(**{r.lower(): tiles[r] for r in bound.roles})


# --- the catalogue ---------------------------------------------------------------------------------


def test_band_symbols_are_the_catalogues_sentinel2_bands():
    table = cat.band_symbols()
    assert table == EXPECTED_BANDS
    for sym, role in table.items():
        if sym not in ("VV", "VH"):
            assert spyndex.bands[sym].sentinel2a.band == role == spyndex.bands[sym].sentinel2b.band
    assert not {"T", "T1", "T2", "Y", "G1"} & set(table)  # bands Sentinel-2 does not have


def test_constant_defaults_are_the_catalogues_and_wavelengths_sentinel2a():
    defaults = cat.constant_defaults()
    assert set(defaults) == set(spyndex.constants)
    for name in spyndex.constants:
        if spyndex.constants[name].default is not None:
            assert defaults[name] == spyndex.constants[name].default, name
    assert (defaults["L"], defaults["g"], defaults["C1"], defaults["C2"], defaults["sigma"]) == (1.0, 2.5, 6.0, 7.5, 0.5)
    # Central wavelengths have no catalogue default: Sentinel-2A's, in nm.
    assert defaults["lambdaN"] == spyndex.bands.N.sentinel2a.wavelength == 832.8
    assert defaults["lambdaS1"] == 1613.7 and defaults["lambdaN2"] == 864.7
    assert defaults["PAR"] is None


def test_available_indices_are_those_for_sentinel2_or_sentinel1_vv_vh():
    available = set(cat.available())
    platforms = {n: spyndex.indices[n].platforms for n in spyndex.indices}
    expected = {n for n, p in platforms.items() if "Sentinel-2" in p or "Sentinel-1 (Dual Polarisation VV-VH)" in p}
    assert available == expected
    assert len(available) >= 250 and {"EVI", "kNDVI", "NBR", "NDREI", "IRECI", "DpRVIVV", "CRSWIR"} <= available
    assert not {"DpRVIHH", "QpRVI", "NDBaI", "CCI", "LST" if "LST" in platforms else "NBLI"} & available


def test_names_are_found_in_any_case_unless_ambiguous():
    assert cat.find("kndvi") == "kNDVI" and cat.find("EVI") == "EVI" and cat.find("evi") == "EVI"
    assert cat.find("BaI") == "BaI" and cat.find("BAI") == "BAI"  # two entries: exact spelling wins
    with pytest.raises(ParameterError, match="'bai' could be catalogue index BAI or BaI"):
        cat.find("bai")
    assert cat.find("NDXI") is None


@pytest.mark.parametrize("name, message", [
    ("NDBaI", r"catalogue index NDBaI \(.*\) needs T \(Thermal Infrared\): Sentinel-2 has no such band$"),
    ("CCI", r"needs G1 \(Green 1\): Sentinel-2 has no such band$"),
    ("RFDI", r"needs HH \(HH polarisation\), HV \(HV polarisation\): SpectralIndices reads Sentinel-1 VV and VH only$"),
    ("EVl", r"unknown catalogue index 'EVl'; did you mean EVI\?$"),
])
def test_indices_sentinel_1_2_cannot_give_are_refused_in_one_line(name, message):
    with pytest.raises(ParameterError, match=message) as exc:
        cat.lookup(name)
    assert "\n" not in str(exc.value)


# --- formulas: parsed, checked, never eval-ed ---------------------------------------------------------

HOSTILE = [
    "__import__('os').system('touch pwned')",
    "N.__class__", "N[0]", "N > R", "N if R else 0", "(lambda: 0)()", "[N]", "'N'", "True + N", "1j * N",
    "N; R", "Q + N", "abs(N)", "N @ R", "N // R", "N % R", "not N", "~N", "f'{N}'", "(x := 1)", "open('x')",
    "1e999 * N", "", "   ", "N +", "-" * 100 + "N", "N + " * 100 + "N", "N" + " + N" * 1000,
    "N or R", "N & R", "N << 2", "{N: R}", "N.real", "(N, R)", "*N",
]


@pytest.mark.parametrize("formula", HOSTILE)
def test_anything_but_plain_arithmetic_of_known_symbols_is_refused(formula):
    with pytest.raises(cat.FormulaError):
        cat.compile_formula(formula, {"N", "R"})


def test_plain_arithmetic_evaluates_as_python_does():
    tree = cat.compile_formula("-(N - R) ** 2.0 / +R + 2 ** -1 * N - -3", {"N", "R"})
    n, r = np.float32([0.5, 0.3]), np.float32([0.1, 0.2])
    expected = -(n - r) ** 2.0 / +r + 2 ** -1 * n - -3
    got = cat._evaluate(cat._fold(tree, {}), {"N": n, "R": r})
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float32


def test_a_hostile_catalogue_entry_is_refused_and_nothing_runs(monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    entry = types.SimpleNamespace(bands=["N", "R"], formula=f"__import__('pathlib').Path({str(marker)!r}).touch()",
                                  long_name="hostile", reference="", application_domain="vegetation")
    cat.lookup.cache_clear()
    monkeypatch.setattr(cat, "_entries", lambda: {"EVIL": entry})
    try:
        with pytest.raises(ParameterError, match="catalogue index EVIL: .* is not plain arithmetic"):
            cat.lookup("EVIL")
        entry.formula = "N - R + SECRET"  # a name the entry does not declare
        with pytest.raises(ParameterError, match="unknown symbol 'SECRET'"):
            cat.lookup("EVIL")
    finally:
        cat.lookup.cache_clear()
    assert not marker.exists()


def test_nan_inputs_stay_nan_where_arithmetic_would_drop_them(monkeypatch):
    """``NaN ** 0`` is 1 and a listed band the formula does not read never reaches it: still NaN."""
    entries = {
        "POW0": types.SimpleNamespace(bands=["N", "R"], formula="N ** 0.0 + 0 * R ** 0.0", long_name="p",
                                      reference="", application_domain="vegetation"),
        "UNREAD": types.SimpleNamespace(bands=["N", "R"], formula="2 * N", long_name="u", reference="",
                                        application_domain="vegetation"),
        "PLAIN": types.SimpleNamespace(bands=["N", "R"], formula="N - R", long_name="x", reference="",
                                       application_domain="vegetation"),
    }
    cat.lookup.cache_clear()
    cat._bound.cache_clear()
    monkeypatch.setattr(cat, "_entries", lambda: entries)
    try:
        n = np.float32([[np.nan, 0.5, 0.5]])
        r = np.float32([[0.1, np.nan, 0.1]])
        pow0, unread, plain = (cat.bind(cat.lookup(k)) for k in ("POW0", "UNREAD", "PLAIN"))
        assert pow0.recheck_nan and unread.recheck_nan and not plain.recheck_nan
        np.testing.assert_array_equal(pow0(b8=n, b4=r), [[np.nan, np.nan, 1.0]])
        np.testing.assert_array_equal(unread(b8=n, b4=r), [[np.nan, np.nan, 1.0]])
        np.testing.assert_allclose(plain(b8=n, b4=r), [[np.nan, np.nan, 0.4]])
    finally:
        cat.lookup.cache_clear()
        cat._bound.cache_clear()


# --- the catalogue's formulas against spyndex ------------------------------------------------------


def test_every_available_index_equals_spyndex_compute_index(tiles):
    constants = {**cat.constant_defaults(), "PAR": PAR}
    for name in cat.available():
        bound = cat.bound(name, {"PAR": PAR})
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # ours raise no floating-point warnings
            ours = evaluate(bound, tiles)
        with np.errstate(all="ignore"):
            ref = np.asarray(spyndex.computeIndex(name, spyndex_params(bound.index, tiles, constants)))
        assert ours.dtype == np.float32 and ours.shape == SHAPE, name
        finite = np.isfinite(ref)
        np.testing.assert_array_equal(np.isnan(ours), ~finite, err_msg=name)
        np.testing.assert_array_equal(ours[finite], ref[finite].astype(np.float32), err_msg=name)


@pytest.mark.parametrize("kernel, constants", [("RBF", {"sigma": 0.3}), ("linear", {}), ("poly", {"c": 0.5, "p": 3.0})])
def test_kernel_indices_equal_spyndex_for_each_kernel(tiles, kernel, constants):
    values = {**cat.constant_defaults(), **constants}
    for name in ("kNDVI", "kEVI", "kIPVI", "kRVI", "kVARI"):
        bound = cat.bound(name, constants, kernel)
        ours = evaluate(bound, tiles)
        with np.errstate(all="ignore"):
            ref = np.asarray(spyndex.computeIndex(name, spyndex_params(bound.index, tiles, values, kernel)))
        np.testing.assert_allclose(ours, ref, rtol=2e-6, err_msg=f"{name} {kernel}")


def test_kndvi_kernels_are_what_the_paper_says(tiles):
    n, r = tiles["B8"], tiles["B4"]
    ndvi = (n - r) / (n + r)
    knd = lambda **kw: evaluate(cat.bound("kNDVI", **kw), tiles)  # noqa: E731
    # Camps-Valls et al. (2021): RBF with sigma = 0.5 (N + R) gives kNDVI = tanh(NDVI^2).
    np.testing.assert_allclose(knd(constants={"sigma": "mean"}), np.tanh(ndvi**2), rtol=1e-5, atol=1e-7)
    # The catalogue's default sigma = 0.5: tanh(((N - R) / (2 sigma))^2) = tanh((N - R)^2).
    np.testing.assert_allclose(knd(), np.tanh((n - r) ** 2), rtol=1e-5, atol=1e-7)
    # A linear kernel gives NDVI back: (N N - N R) / (N N + N R).
    np.testing.assert_allclose(knd(kernel="linear"), ndvi, rtol=1e-5, atol=1e-7)


def test_nan_inputs_zero_denominators_and_roots_of_negatives_give_nan_without_warnings():
    t = rough_tiles((1, 6))
    t["B8"][0, :4] = [np.nan, 0.0, 0.4, 0.5]
    t["B3"][0, :4] = [0.2, 0.0, 0.2, 0.2]  # GNDVI (N - G) / (N + G): 0/0 at 1
    t["B4"][0, :4] = [0.1, 0.1, 0.1, 0.1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gndvi = evaluate(cat.bound("GNDVI"), t)
        msavi = evaluate(cat.bound("MSAVI"), {**t, "B8": np.float32([[0.5] * 6]), "B4": np.float32([[-0.1] * 6])})
        dprvi = evaluate(cat.bound("DpRVIVV"), {"VV": np.float32([[0.0, np.nan, 0.1]]), "VH": np.float32([[0.0, 0.1, 0.01]])})
    assert np.isnan(gndvi[0, 0]) and np.isnan(gndvi[0, 1]) and gndvi[0, 2] == pytest.approx(0.2 / 0.6, rel=1e-6)
    assert np.isnan(msavi).all()  # (2 N + 1)^2 - 8 (N - R) = 4 - 4.8 < 0
    assert np.isnan(dprvi[0, :2]).all() and dprvi[0, 2] == pytest.approx(0.04 / 0.11, rel=1e-6)


# --- constants -------------------------------------------------------------------------------------


def test_constants_are_parsed_and_checked():
    assert cat.parse_constants(["L=0.5", " g = 2 ", "sigma=MEAN"]) == {"L": 0.5, "g": 2.0, "sigma": "mean"}
    assert cat.parse_constants(None) == {} and cat.parse_constants({"alpha": "0.2"}) == {"alpha": 0.2}
    for items, message in [
        (["l=0.5"], r"unknown constant 'l'; did you mean L\?"),
        (["gama=1"], r"unknown constant 'gama'; did you mean gamma"),
        (["N=0.3"], "N is a band of the catalogue, not a constant"),
        (["L=0.5", "L=1"], "L is given twice"),
        (["L=half"], "L='half' is not a number"),
        (["L=inf"], "L=inf is not a finite number"),
        (["L"], r"'L' is not name=value \(e.g. L=0.5\)"),
        (["=1"], "is not name=value"),
        (["L=mean"], "only sigma may be mean"),
    ]:
        with pytest.raises(ParameterError, match=message):
            cat.bound("EVI", cat.parse_constants(items))


def test_constants_override_the_defaults(tiles):
    n, r, b = tiles["B8"], tiles["B4"], tiles["B2"]
    default = evaluate(cat.bound("EVI"), tiles)
    np.testing.assert_allclose(default, 2.5 * (n - r) / (n + 6 * r - 7.5 * b + 1), rtol=1e-5)
    given = cat.bound("EVI", {"g": 2.0, "L": 0.5})
    assert given.values_text() == "g=2, C1=6, C2=7.5, L=0.5"
    np.testing.assert_allclose(evaluate(given, tiles), 2 * (n - r) / (n + 6 * r - 7.5 * b + 0.5), rtol=1e-5)


def test_binding_errors():
    with pytest.raises(ParameterError, match=r"index NIRvP needs constant PAR \(Photosynthetically Active "
                                             r"Radiation\), which has no default: give it in constants"):
        cat.bound("NIRvP")
    assert cat.bound("NIRvP", {"PAR": 2.0}).values_text() == "PAR=2"
    with pytest.raises(ParameterError, match="kernel 'gaussian' is not one of RBF, linear, poly"):
        cat.bound("kNDVI", kernel="gaussian")
    with pytest.raises(ParameterError, match="sigma must not be 0"):
        cat.bound("kNDVI", {"sigma": 0.0})
    # Constants that make a denominator 0 stop at once, not as NaN tiles later.
    with pytest.raises(ParameterError, match=r"index CRSWIR: the constants make the denominator of .* 0"):
        cat.bound("CRSWIR", {"lambdaS2": 864.7})
    with pytest.raises(ParameterError, match="index CRSWIR: the constants make"):
        cat.bound("CRSWIR", {"lambdaS2": 1e308, "lambdaN2": -1e308})  # overflow


# --- this project's indices against the catalogue --------------------------------------------------


def test_every_project_index_is_classified_once():
    assert set(SAME) | set(DIFFERENT) | set(ABSENT) == set(INDICES)
    assert not (set(SAME) & set(DIFFERENT) or set(SAME) & set(ABSENT) or set(DIFFERENT) & set(ABSENT))


def test_the_classification_holds_against_every_catalogue_formula(tiles):
    """Which catalogue indices (at their defaults) equal each project index on random data."""
    listed = {n: evaluate(cat.bound(n, {"PAR": PAR}), tiles) for n in cat.available()}
    sar = {"VV": False, "VH": False}
    for name, d in INDICES.items():
        if d.halo:
            continue
        ours = compute_indices(tiles, [name], sar_db=sar, method="numpy")[name]
        equal = {n for n, v in listed.items() if np.allclose(v, ours, rtol=1e-5, atol=1e-6, equal_nan=True)}
        if name in SAME and not SAME[name][1]:
            assert SAME[name][0] in equal, name
        if name in ABSENT or name in DIFFERENT:
            assert not equal, (name, equal)
    # SAVI agrees only at one L: not at the catalogue's default L = 1.
    savi = compute_indices(tiles, ["SAVI"], method="numpy")["SAVI"]
    assert not np.allclose(listed["SAVI"], savi, rtol=1e-3)


def agree(a, b, what):
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
    ok = ~np.isnan(a)
    np.testing.assert_allclose(a[ok], b[ok], rtol=1e-5, atol=2e-6, err_msg=what)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sar_db", [False, True])
def test_same_definitions_agree_on_random_data(method, sar_db):
    t = rough_tiles((37, 53))
    if sar_db:
        with np.errstate(all="ignore"):
            t["VV"], t["VH"] = (np.where(x > 0, 10 * np.log10(x), np.nan).astype(np.float32) for x in (t["VV"], t["VH"]))
    sar = {"VV": sar_db, "VH": sar_db}
    for name, (listed, constants) in SAME.items():
        ours = compute_indices(t, [name], sar_db=sar, method=method)[name]
        theirs = compute_indices(t, [cat.PREFIX + listed], sar_db=sar, method=method, constants=constants)[listed]
        assert theirs.dtype == np.float32
        agree(ours, theirs, f"{name} vs {listed}")
    assert np.isnan(ours).any()  # the NaN rules were exercised


def test_documented_differences_are_what_the_docs_say():
    t = rough_tiles((37, 53), seed=5)
    with np.errstate(all="ignore"):
        # SAVI: the catalogue's default L = 1 is this project's SAVI with saviL = 1.
        agree(compute_indices(t, ["ASI:SAVI"])["SAVI"], compute_indices(t, ["SAVI"], savi_l=1.0)["SAVI"], "SAVI L=1")
        # AWEI_nsh: the catalogue adds 2.75 S2 where Feyisa et al. subtract it, a difference of 5.5 B12.
        diff = compute_indices(t, ["AWEInsh"])["AWEInsh"] - compute_indices(t, ["AWEI_nsh"])["AWEI_nsh"]
        ok = ~np.isnan(diff)
        np.testing.assert_allclose(diff[ok], 5.5 * t["B12"][ok], rtol=1e-5, atol=4e-6)
        # Names both lists use for different indices: BI and RVI.
        agree(compute_indices(t, ["ASI:BI"])["BI"], compute_indices(t, ["BSI"])["BSI"], "catalogue BI = BSI")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(t["B4"] != 0, t["B6"] / t["B4"], np.nan)
        agree(compute_indices(t, ["ASI:RVI"])["RVI"], ratio, "catalogue RVI = RE2 / R")
    assert lookup(["BI"])[0] is INDICES["BI"] and lookup(["rvi"])[0] is INDICES["RVI"]


def test_same_definitions_agree_on_real_sentinel2_reflectance(shared_data):
    """eo-learn's Slovenia scenes: 5 dates of Sentinel-2 L1C reflectance, all 13 bands, one cloudy."""
    scenes = np.load(shared_data("eolearn_slovenia") / "REFERENCE_SCENES.npy")
    order = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
    assert scenes.shape[-1] == len(order) and scenes.dtype == np.float32
    t = {r: np.ascontiguousarray(scenes[..., i].reshape(-1, scenes.shape[2])) for i, r in enumerate(order)}
    checked = 0
    for name, (listed, constants) in SAME.items():
        if INDICES[name].sensor != "S2":
            continue
        for method in METHODS:
            ours = compute_indices(t, [name], method=method)[name]
            theirs = compute_indices(t, [cat.PREFIX + listed], constants=constants, method=method)[listed]
            agree(ours, theirs, f"{name} vs {listed}")
            assert np.isfinite(ours).mean() > 0.99, name
        checked += 1
    assert checked == 13
    # And the catalogue's path equals spyndex on the same real arrays (a few vegetation/water/burn indices).
    defaults = cat.constant_defaults()
    for name in ("EVI", "NBR", "NDREI", "IRECI", "CRSWIR", "kNDVI", "MCARI", "S2REP"):
        bound = cat.bound(name)
        with np.errstate(all="ignore"):
            ref = np.asarray(spyndex.computeIndex(name, spyndex_params(bound.index, t, defaults)))
        ours = compute_indices(t, [name])[name]
        finite = np.isfinite(ref)
        assert finite.mean() > 0.99, name
        np.testing.assert_array_equal(ours[finite], ref[finite].astype(np.float32), err_msg=name)


def test_same_definitions_agree_on_real_sentinel1_backscatter(shared_data):
    """BigEarthNet's Sentinel-1 patches (VV, VH in dB): RVI and CR against DpRVIVV and VHVVR."""
    import rasterio

    patches = sorted(shared_data("bigearthnet", "BigEarthNet-S1-Example").iterdir())
    assert patches
    for patch in patches:
        t = {}
        for pol in ("VV", "VH"):
            with rasterio.open(next(patch.glob(f"*_{pol}.tif"))) as ds:
                t[pol] = ds.read(1).astype(np.float32)
        for name in ("RVI", "CR"):
            listed = SAME[name][0]
            ours = compute_indices(t, [name], sar_db={"VV": True, "VH": True})[name]
            theirs = compute_indices(t, [listed], sar_db={"VV": True, "VH": True})[listed]
            assert np.isfinite(ours).all(), patch.name
            agree(ours, theirs, f"{name} vs {listed} {patch.name}")
