"""Radiometric augmentation: patches seen through another atmosphere (models/augment.py)."""

from __future__ import annotations

import numpy as np
import pytest

from snap_operators.science.indices import INDICES
from snap_pc_models.augment import (
    FLOOR,
    AugmentError,
    atmospheric_offset,
    check_channels,
    path_reflectance,
    random_atmospheres,
)

CHANNELS = ["B2", "B3", "B4", "B8", "B11", "NDVI", "MNDWI", "NDBI", "BSI", "VV_db", "PANTEX"]


def _patches(rng, n=3, size=4):
    x = rng.uniform(0.02, 0.4, (n, size, size, len(CHANNELS))).astype("float32")
    named = {c.lower(): x[..., i] for i, c in enumerate(CHANNELS[:5])}
    for i, c in enumerate(CHANNELS[5:9], start=5):
        x[..., i] = INDICES[c].reference(*(named[a] for a in INDICES[c].args))
    x[..., 9] = rng.uniform(-20, -5, x.shape[:3])
    x[..., 10] = rng.uniform(0, 0.05, x.shape[:3])
    return x


def test_the_path_reflectance_falls_with_wavelength_and_takes_its_sign():
    p = path_reflectance(["B2", "B3", "B4", "B8", "B11"], np.array([0.04, -0.02]), np.array([1.0, 2.0]))
    assert p.shape == (2, 5)
    assert p[0, 0] == pytest.approx(0.04) and p[1, 0] == pytest.approx(-0.02)
    assert (np.diff(p[0]) < 0).all() and (np.diff(p[1]) > 0).all()
    # lambda ** -k: B11 (1613.7 nm) against B2 (492.7 nm)
    assert p[0, 4] == pytest.approx(0.04 * 492.7 / 1613.7, rel=1e-5)
    assert p[1, 4] == pytest.approx(-0.02 * (492.7 / 1613.7) ** 2, rel=1e-5)


def test_bands_shift_and_indices_follow_them_radar_and_texture_stay():
    rng = np.random.default_rng(0)
    x = _patches(rng)
    amp, k = np.array([0.03, -0.015, 0.0]), np.array([1.0, 1.5, 2.0])
    y = atmospheric_offset(x, CHANNELS, amp, k)
    shift = path_reflectance(CHANNELS[:5], amp, k)
    np.testing.assert_allclose(y[..., :5], np.maximum(x[..., :5] + shift[:, None, None, :], FLOOR), rtol=1e-6)
    named = {c.lower(): y[..., i] for i, c in enumerate(CHANNELS[:5])}
    for i, c in enumerate(CHANNELS[5:9], start=5):
        np.testing.assert_allclose(y[..., i], INDICES[c].reference(*(named[a] for a in INDICES[c].args)), atol=1e-6)
    assert not np.allclose(y[0, ..., 5], x[0, ..., 5])  # NDVI moved with the bands
    np.testing.assert_array_equal(y[..., 9:], x[..., 9:])
    np.testing.assert_allclose(y[2], x[2], atol=1e-6)  # no atmosphere, no change
    assert y is not x and np.array_equal(x, _patches(np.random.default_rng(0)))  # input left alone


def test_a_catalogue_index_channel_follows_the_bands_too():
    """SpectralIndices also writes the Awesome Spectral Indices catalogue's indices (GNDVI); left
    as they were beside shifted bands they would describe another pixel."""
    x = np.zeros((2, 3, 3, 3), "float32")
    x[..., 0], x[..., 1] = 0.05, 0.3  # B3, B8
    x[..., 2] = (0.3 - 0.05) / (0.3 + 0.05)
    y = atmospheric_offset(x, ["B3", "B8", "GNDVI"], np.array([0.04, -0.02]), np.array([1.0, 2.0]))
    np.testing.assert_allclose(y[..., 2], (y[..., 1] - y[..., 0]) / (y[..., 1] + y[..., 0]), atol=1e-6)
    assert not np.allclose(y[..., 2], x[..., 2])
    assert [i for i, _ in check_channels(["B3", "B8", "GNDVI", "VV"])[1]] == [2]  # VV: not an index, left alone
    with pytest.raises(AugmentError, match="GNDVI needs band.*B3"):
        check_channels(["B8", "GNDVI"])


def test_a_negative_offset_stops_at_the_floor():
    x = np.full((1, 2, 2, 3), 0.005, "float32")
    y = atmospheric_offset(x, ["B4", "B8", "NDVI"], np.array([-0.05]), np.array([1.0]))
    assert (y[..., :2] == np.float32(FLOOR)).all()
    assert np.isfinite(y).all()


def test_an_index_without_its_bands_is_refused():
    with pytest.raises(AugmentError, match="NDBI needs band.*B11"):
        check_channels(["B2", "B4", "B8", "NDBI"])
    with pytest.raises(AugmentError, match="no Sentinel-2 band"):
        check_channels(["VV_db", "VH_db"])
    bands, indices = check_channels(CHANNELS)
    assert bands == [0, 1, 2, 3, 4] and [i for i, _ in indices] == [5, 6, 7, 8]


def test_random_atmospheres_span_both_signs_within_the_bounds():
    a, k = random_atmospheres(np.random.default_rng(1), 1000, 0.04)
    assert a.min() >= -0.04 and a.max() <= 0.04 and (a < -0.03).any() and (a > 0.03).any()
    assert k.min() >= 1.0 and k.max() <= 2.0


def test_on_real_surface_reflectance_the_offset_moves_dark_water_not_trees(shared_data):
    """Buffalo, Sen2Cor L2A: clear water has a near-black NIR at the surface (NDVI about -0.8). A
    top-of-atmosphere-like path reflectance lifts it towards the -0.2 to 0 of the L1C scenes' water;
    water stays water and trees stay green."""
    rasterio = pytest.importorskip("rasterio")
    folder = shared_data("buffalo_urban")
    with rasterio.open(folder / "s2_buffalo_20170921_L2A_10band.tif") as ds:
        names = list(ds.descriptions)
        img = ds.read([names.index(b) + 1 for b in ("B4", "B8")]).astype("float32") / 10000
    with rasterio.open(folder / "labels_buffalo_pure50.tif") as ds:
        labels = ds.read(1)
    x = np.moveaxis(img, 0, -1)[None]
    x = np.concatenate([x, INDICES["NDVI"].reference(x[..., 1], x[..., 0])[..., None]], axis=-1)
    y = atmospheric_offset(x, ["B4", "B8", "NDVI"], np.array([0.03]), np.array([1.5]))
    water, trees = labels == 5, labels == 3
    assert np.median(x[0, ..., 2][water]) < -0.6
    assert np.median(y[0, ..., 2][water]) - np.median(x[0, ..., 2][water]) > 0.15
    assert np.median(y[0, ..., 2][water]) < 0 and np.median(y[0, ..., 2][trees]) > 0.6
