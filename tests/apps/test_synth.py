"""Tests of the synthetic Sentinel-2 / Sentinel-1 scene generator."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from snap_operators.apps import synth
from snap_operators.apps.synth import (
    S1_BANDS,
    S2_BANDS,
    S2_WAVELENGTHS_NM,
    TRUTH_BAND,
    TRUTH_CLASSES,
    SynthParameterError,
    synthetic_arrays,
    write_synthetic_scene,
)
from snap_operators.core.errors import ProductWriteError, SnapPcError

ALL_KEYS = (*S2_BANDS, *S1_BANDS, TRUTH_BAND)
EXPECTED_NAMES = {
    "1": "Water",
    "2": "Bare Soil",
    "3": "Trees/Shrubbery vegetation",
    "4": "Urban Area/High Reflected sediments",
    "5": "Alluvium/Clay Silts sediments/roof",
}


@pytest.fixture(scope="module")
def scene512():
    return synthetic_arrays(512, 0)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene")
    return out, write_synthetic_scene(out, 300, seed=5, block=128)


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def _as_float(a, *names):
    return [a[n].astype(np.float64) for n in names]


# --- in-memory API -----------------------------------------------------
def test_same_seed_same_data_and_different_seed_differs():
    a, b, c = synthetic_arrays(128, 3), synthetic_arrays(128, 3), synthetic_arrays(128, 4)
    for k in ALL_KEYS:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a[TRUTH_BAND], c[TRUTH_BAND])
    assert not np.array_equal(a["B4"], c["B4"])
    assert not np.array_equal(a["Sigma0_VV_db"], c["Sigma0_VV_db"])


def test_window_equals_crop_of_whole_scene():
    # 300 px spans two 256-px noise tiles; the window straddles the tile edge.
    whole = synthetic_arrays(300, 7)
    part = synthetic_arrays(300, 7, window=(slice(37, 290), slice(250, 300)))
    also = synthetic_arrays(300, 7, window=rasterio.windows.Window(250, 37, 50, 253))
    for k in ALL_KEYS:
        np.testing.assert_array_equal(part[k], whole[k][37:290, 250:300])
        np.testing.assert_array_equal(also[k], part[k])


def test_dtypes_shapes_and_ranges(scene512):
    for k in S2_BANDS + S1_BANDS:
        assert scene512[k].dtype == np.float32 and scene512[k].shape == (512, 512)
        assert np.isfinite(scene512[k]).all()
    for k in S2_BANDS:
        assert 0.0 <= scene512[k].min() and scene512[k].max() <= 1.0
    assert scene512[TRUTH_BAND].dtype == np.uint8
    assert set(np.unique(scene512[TRUTH_BAND])) <= {1, 2, 3, 4, 5}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_classes_present_with_reasonable_shares(seed):
    truth = synthetic_arrays(512, seed)[TRUTH_BAND]
    shares = np.bincount(truth.ravel(), minlength=6) / truth.size
    assert shares[0] == 0  # never unclassified
    for c in TRUTH_CLASSES:
        assert shares[c.value] > 0.03, (c.name, shares)


def test_small_scene_has_all_classes():
    truth = synthetic_arrays(256, 11)[TRUTH_BAND]
    shares = np.bincount(truth.ravel(), minlength=6)[1:] / truth.size
    assert (shares > 0.03).all(), shares


def test_spectral_sanity_per_class(scene512):
    a, truth = scene512, scene512[TRUTH_BAND]
    b2, b3, b4, b8, b11 = _as_float(a, "B2", "B3", "B4", "B8", "B11")
    ndvi = (b8 - b4) / (b8 + b4)
    mndwi = (b3 - b11) / (b3 + b11)
    ndbi = (b11 - b8) / (b11 + b8)
    bsi = ((b11 + b4) - (b8 + b2)) / ((b11 + b4) + (b8 + b2))
    med = lambda x, c: float(np.median(x[truth == c]))  # noqa: E731
    assert med(ndvi, synth.TREES) > 0.6
    assert med(mndwi, synth.WATER) > 0.3
    assert med(b8, synth.WATER) < 0.05
    assert med(ndbi, synth.URBAN) > 0
    assert med(bsi, synth.BARE_SOIL) > 0
    # Vegetation is the only class with a strong red edge; water the darkest in NIR.
    assert all(med(ndvi, synth.TREES) > med(ndvi, c.value) + 0.3 for c in TRUTH_CLASSES if c.value != synth.TREES)
    assert all(med(b8, synth.WATER) < med(b8, c.value) for c in TRUTH_CLASSES if c.value != synth.WATER)


def test_noise_is_present_but_moderate(scene512):
    truth = scene512[TRUTH_BAND]
    for c in TRUTH_CLASSES:
        m = truth == c.value
        b8 = scene512["B8"][m]
        rel = np.std(b8) / np.median(b8)
        assert 0.005 < rel < 0.35, (c.name, rel)
        vv = scene512["Sigma0_VV_db"][m]
        assert 1.0 < np.std(vv) < 8.0, (c.name, np.std(vv))  # speckle + texture


def test_sar_class_ordering(scene512):
    truth = scene512[TRUTH_BAND]
    vv = {c.value: float(np.median(scene512["Sigma0_VV_db"][truth == c.value])) for c in TRUTH_CLASSES}
    vh = {c.value: float(np.median(scene512["Sigma0_VH_db"][truth == c.value])) for c in TRUTH_CLASSES}
    assert min(vv, key=vv.get) == synth.WATER
    assert min(vh, key=vh.get) == synth.WATER
    assert max(vv, key=vv.get) == synth.URBAN
    assert vh[synth.TREES] > vh[synth.BARE_SOIL]  # volume scattering
    assert all(vh[c] < vv[c] for c in vv)  # cross-pol is weaker


def test_bad_arguments_are_one_line_errors(tmp_path):
    for kwargs in ({"size": 63}, {"size": "big"}, {"size": 128, "seed": -1}, {"size": True}):
        with pytest.raises(SynthParameterError) as err:
            synthetic_arrays(**kwargs)
        assert "\n" not in str(err.value)
        assert isinstance(err.value, SnapPcError) and isinstance(err.value, ValueError)
    with pytest.raises(SynthParameterError):
        synthetic_arrays(128, window=(slice(10, 10), slice(0, 5)))
    with pytest.raises(SynthParameterError):
        synthetic_arrays(128, window="rows")
    with pytest.raises(SynthParameterError):
        write_synthetic_scene(tmp_path / "x", 64, block=0)
    with pytest.raises(SynthParameterError):
        write_synthetic_scene(tmp_path / "x", 64, crs="EPSG:not-a-code")
    with pytest.raises(SynthParameterError):
        write_synthetic_scene(tmp_path / "x", 64, resolution=-10)
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ProductWriteError) as err:
        write_synthetic_scene(a_file, 64)
    assert "\n" not in str(err.value)
    assert a_file.read_text() == "not a folder"


# --- writer ----------------------------------------------------------------
def test_files_structure(written):
    out, paths = written
    assert set(paths) == {"s2", "s1", "truth"}
    assert sorted(p.name for p in out.iterdir()) == ["s1.tif", "s2.tif", "truth.tif"]  # no temporaries left
    transform = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4030000.0)
    for key, count, dtype in (("s2", 10, "float32"), ("s1", 2, "float32"), ("truth", 1, "uint8")):
        with rasterio.open(paths[key]) as ds:
            assert (ds.count, ds.height, ds.width, ds.dtypes[0]) == (count, 300, 300, dtype)
            assert ds.crs == rasterio.crs.CRS.from_epsg(32638)
            assert ds.transform.almost_equals(transform)
            assert ds.block_shapes[0] == (512, 512)
            assert ds.profile["compress"] == "deflate"
            if dtype == "float32":
                assert np.isnan(ds.nodata)
                assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "3"
            else:
                assert ds.nodata is None
            tags = ds.tags()
            assert tags["SYNTHETIC_SEED"] == "5" and tags["SYNTHETIC_SIZE"] == "300"
            assert dt.datetime.fromisoformat(tags["PRODUCT_START_TIME"]).tzinfo is not None

    with rasterio.open(paths["s2"]) as ds:
        assert ds.descriptions == S2_BANDS
        assert ds.tags()["PRODUCT_TYPE"] == "SYNTHETIC_S2"
        assert [float(ds.tags(i + 1)["WAVELENGTH"]) for i in range(ds.count)] == list(S2_WAVELENGTHS_NM)
        assert float(ds.tags(9, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"]) == pytest.approx(1.61)
    with rasterio.open(paths["s1"]) as ds:
        assert ds.descriptions == S1_BANDS
        assert ds.units == ("dB", "dB")
        assert ds.tags()["PRODUCT_TYPE"] == "SYNTHETIC_S1"
    with rasterio.open(paths["truth"]) as ds:
        assert ds.descriptions == (TRUTH_BAND,)
        assert json.loads(ds.tags(1)["CLASS_NAMES"]) == EXPECTED_NAMES
        assert {str(k): v for k, v in synth.CLASS_NAMES.items()} == EXPECTED_NAMES
        cmap = ds.colormap(1)
        for c in TRUTH_CLASSES:
            assert cmap[c.value][:3] == c.color
        assert len({cmap[c.value][:3] for c in TRUTH_CLASSES}) == 5


def test_files_hold_the_in_memory_scene(written):
    _, paths = written
    ref = synthetic_arrays(300, 5)
    np.testing.assert_array_equal(_read(paths["s2"]), np.stack([ref[b] for b in S2_BANDS]))
    np.testing.assert_array_equal(_read(paths["s1"]), np.stack([ref[b] for b in S1_BANDS]))
    np.testing.assert_array_equal(_read(paths["truth"])[0], ref[TRUTH_BAND])


def test_block_size_does_not_change_the_files(tmp_path):
    small = write_synthetic_scene(tmp_path / "b64", 280, seed=2, block=64)
    large = write_synthetic_scene(tmp_path / "b1000", 280, seed=2, block=1000)
    for key in ("s2", "s1", "truth"):
        np.testing.assert_array_equal(_read(small[key]), _read(large[key]))


def test_writer_asks_only_for_bounded_windows(tmp_path, monkeypatch):
    calls = []
    real = synth.synthetic_arrays

    def spy(size, seed=0, *, window=None):
        calls.append(window)
        return real(size, seed, window=window)

    monkeypatch.setattr(synth, "synthetic_arrays", spy)
    write_synthetic_scene(tmp_path, 200, seed=1, block=48)
    assert calls, "the writer did not use synthetic_arrays"
    covered = np.zeros((200, 200), dtype=np.int32)
    for rows, cols in calls:
        assert rows.stop - rows.start <= 48 and cols.stop - cols.start <= 48
        covered[rows, cols] += 1
    assert (covered == 1).all()  # every pixel computed exactly once


def test_failure_leaves_no_partial_files(tmp_path, monkeypatch):
    old = tmp_path / "s2.tif"
    old.write_bytes(b"previous run")
    calls = []

    def failing(size, seed=0, *, window=None):
        calls.append(window)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return synthetic_arrays(size, seed, window=window)

    monkeypatch.setattr(synth, "synthetic_arrays", failing)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_scene(tmp_path, 256, block=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2.tif"]
    assert old.read_bytes() == b"previous run"


def test_silent_without_progress(tmp_path, capsys):
    write_synthetic_scene(tmp_path, 64, seed=3)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_bar_when_asked(tmp_path, capsys):
    write_synthetic_scene(tmp_path, 128, block=64, progress=True)
    captured = capsys.readouterr()
    assert "synth" in captured.err and "4/4" in captured.err
    assert captured.out == ""


def test_custom_grid(tmp_path):
    paths = write_synthetic_scene(tmp_path, 64, crs="EPSG:32633", origin=(500000, 5800000), resolution=20)
    with rasterio.open(paths["s1"]) as ds:
        assert ds.crs == rasterio.crs.CRS.from_epsg(32633)
        assert ds.transform.almost_equals(Affine(20.0, 0.0, 500000.0, 0.0, -20.0, 5800000.0))


def test_project_reader_restores_names_classes_and_times(written):
    geotiff = pytest.importorskip("snap_operators.io.geotiff")
    _, paths = written
    s2 = geotiff.read_geotiff(paths["s2"])
    assert list(s2.bands) == list(S2_BANDS)
    assert s2.bands["B8A"].wavelength == pytest.approx(865.0)
    assert s2.start_time == dt.datetime.fromisoformat(synth.S2_START_TIME)
    truth = geotiff.read_geotiff(paths["truth"])
    classes = truth.bands[TRUTH_BAND].classes
    assert [(c.value, c.name, tuple(c.color)) for c in classes] == [
        (c.value, c.name, c.color) for c in TRUTH_CLASSES
    ]


def test_haze_and_mixed_pixels_change_the_spectra_not_the_truth():
    from snap_operators.apps.synth import _haze

    clear = synthetic_arrays(256, 5)
    both = synthetic_arrays(256, 5, haze=True, mixed_pixels=True)
    np.testing.assert_array_equal(both[TRUTH_BAND], clear[TRUTH_BAND])
    hazy = _haze(256, 5, slice(0, 256), slice(0, 256)) > 0.2
    assert 0.05 < hazy.mean() < 0.6  # patches, not the whole scene
    ndvi = lambda a: (a["B8"] - a["B4"]) / (a["B8"] + a["B4"])  # noqa: E731
    trees = (clear[TRUTH_BAND] == 3) & hazy
    assert trees.sum() > 100
    assert np.median(ndvi(both)[trees]) < np.median(ndvi(clear)[trees]) - 0.1  # haze lowers the contrast
    assert np.median(both["B2"][hazy]) > np.median(clear["B2"][hazy]) + 0.05  # and brightens the blue


def test_mixed_pixels_mix_at_borders_only_and_any_window_gives_the_same_pixels():
    clear = synthetic_arrays(200, 2)
    mixed = synthetic_arrays(200, 2, mixed_pixels=True)
    truth = clear[TRUTH_BAND]
    interior = np.ones_like(truth, dtype=bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            interior &= np.roll(np.roll(truth, dr, 0), dc, 1) == truth
    diff = np.abs(mixed["B8"] - clear["B8"])
    border = ~interior
    border[[0, -1], :] = border[:, [0, -1]] = False
    assert np.median(diff[border]) > 3 * np.median(diff[interior])  # a border pixel is a mixture
    part = synthetic_arrays(200, 2, mixed_pixels=True, haze=True, window=(slice(0, 77), slice(123, 200)))
    whole = synthetic_arrays(200, 2, mixed_pixels=True, haze=True)
    for band in ("B2", "B8", "B12", TRUTH_BAND):  # the scene edge and window edges: no seams
        np.testing.assert_array_equal(part[band], whole[band][:77, 123:])


def test_haze_and_mixed_pixels_are_recorded_in_the_files(tmp_path):
    paths = write_synthetic_scene(tmp_path, 64, 1, haze=True)
    with rasterio.open(paths["s2"]) as ds:
        assert ds.tags()["SYNTHETIC_HAZE"] == "true" and "SYNTHETIC_MIXED_PIXELS" not in ds.tags()
