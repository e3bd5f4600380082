"""The SNAP adapter, driven as SNAP drives Python operators, against the standalone engine.

SNAP is not installed here: ``snap_standin.jpy_api`` is a strict stand-in of
the Java API surface the adapter uses; :func:`jpy_api.run_operator` calls
``initialize``, ``computeTileStack`` per tile (shuffled, partial border
tiles, or a random partition of the scene) and ``dispose``, like GPF. Every
result must equal the standalone operator's on the same input bit for bit.
"""

from __future__ import annotations

import datetime as _dt
import datetime as dt
import importlib
import subprocess
import sys
from pathlib import Path

import dask.array as da
import fiona
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import shape
from snap_standin import gpf as G
from snap_standin import jpy_api as J

from snap_operators.apps.synth import S1_BANDS, S2_BANDS, synthetic_arrays
from snap_operators.core.errors import OperatorError, ParameterError, SnapPcError
from snap_operators.core.context import ExecutionContext
from snap_operators.core.operator import get_operator
from snap_operators.core.product import Band, MetadataElement, Product
from snap_operators.snap import adapter
from snap_operators.snap.adapter import make_operator_class
from snap_operators.snap.descriptors import PLUGIN_OPERATORS

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

H, W = 257, 300  # tiles of 64 or 100x37 do not divide it
EPSG = "EPSG:32638"
T = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4030000.0)
START, STOP = dt.datetime(2021, 6, 1, 7, 50, 31, 24000), dt.datetime(2021, 6, 1, 7, 50, 44, 918000)
INDICES = "NDVI,NDWI,MNDWI,NDBI,BSI,SAVI,NDMI,BI2,AWEI_sh,VV_db,RVI,CR_db,SBI,NGBDI,PANTEX"
PLUGIN = Path(adapter.__file__).parent / "plugin"

SpectralIndicesOp = make_operator_class("SpectralIndices", api=J)
ProgressiveClassifierOp = make_operator_class("ProgressiveClassifier", api=J)
LabelMaskExportOp = make_operator_class("LabelMaskExport", api=J)
ChangeDetectionOp = make_operator_class("ChangeDetection", api=J)

#: Tilings SNAP may use: square with partial borders, oblong, one tile larger than the scene.
GRIDS = [(64, 64), (100, 37), (512, 512)]


# --- scenes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene() -> dict[str, np.ndarray]:
    arrays = synthetic_arrays(W, seed=5, window=(slice(0, H), slice(0, W)))
    rows, cols = np.mgrid[0:H, 0:W]
    outside = cols < (rows - 150) * 2  # a no-data wedge, like the edge of a swath
    for name in S2_BANDS + S1_BANDS:
        arrays[name][outside] = np.nan
    return arrays


def java_product(arrays: dict, name="S2_scene", tile=None) -> J.Product:
    """A Java source product as a SNAP reader gives it: float bands, CRS geocoding, times, metadata."""
    p = J.float_product(name, arrays, EPSG, tuple(T)[:6])
    for n in arrays:
        p.getBand(n).setUnit("dB" if n.endswith("_db") else "dl")
    p.setStartTime(J.utc(START))
    p.setEndTime(J.utc(STOP))
    history = J.jpy.get_type("org.esa.snap.core.datamodel.MetadataElement")("Processing_Graph")
    history.setAttributeString("node", "Read")
    p.getMetadataRoot().addElement(history)
    p.setFileLocation(J.File("/data/S2_scene.dim"))
    if tile is not None:
        p.setPreferredTileSize(*tile)
    return p


def python_product(arrays: dict, classes: dict | None = None, no_data=float("nan"), name="S2_scene") -> Product:
    """The same scene as the standalone engine holds it."""
    p = Product(name, "S2_MSI_Level-2A", crs=CRS.from_string(EPSG), start_time=START, stop_time=STOP)
    for n, a in arrays.items():
        nd = no_data if a.dtype.kind != "f" else float("nan")
        cls = (classes or {}).get(n)
        p.add_band(Band(n, da.from_array(a, chunks=64), T, nd, classes=cls))
    return p


def s2s1(scene) -> dict:
    return {n: scene[n] for n in S2_BANDS + S1_BANDS}


def standalone(alias: str, source: Product, **params):
    raw = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    op = get_operator(alias).create({"sourceProduct": source}, raw, context=ExecutionContext(tile_size=64, overwrite=True))
    op.target = op.initialize()
    return op


def bits(a: np.ndarray) -> np.ndarray:
    """Exact bit pattern, so NaN payloads and -0.0 count too."""
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.dtype.itemsize}")


def assert_bits_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(bits(got), bits(want))


def indices_context(source: J.Product, source_id="sourceProduct", **params) -> J.Operator:
    values = {"indices": J.jpy.array("java.lang.String", INDICES.split(",")), "saviL": 0.5, "sarUnit": "auto",
              "copySourceBands": False}
    values.update(params)
    spec = get_operator("SpectralIndices").spec
    return J.Operator.from_descriptor(spec.alias, {source_id: source}, values)


@pytest.fixture(scope="module")
def indices_reference(scene):
    op = standalone("SpectralIndices", python_product(s2s1(scene)), indices=INDICES)
    return {n: b.data.compute() for n, b in op.target.bands.items()}, op.target


@pytest.fixture(scope="module")
def java_indices(scene):
    """SpectralIndices run through the adapter: the Java product the classifier reads next (64 px tiles)."""
    return J.run_operator(SpectralIndicesOp(), indices_context(java_product(s2s1(scene), tile=(64, 64))))


# --- SpectralIndices ----------------------------------------------------------------------------


@pytest.mark.parametrize("grid", GRIDS + ["partition"])
def test_spectral_indices_equal_standalone_bit_for_bit(scene, indices_reference, grid):
    ref, _ = indices_reference
    kwargs = {"rects": J.random_partition(W, H, seed=11, min_size=9)} if grid == "partition" else {"tile_size": grid}
    target = J.run_operator(SpectralIndicesOp(), indices_context(java_product(s2s1(scene))), seed=len(str(grid)), **kwargs)
    assert list(target.getBandNames()) == INDICES.split(",")
    for name, want in ref.items():
        assert_bits_equal(J.raster(target.getBand(name)), want)
    assert np.isnan(ref["NDVI"]).sum() < ref["NDVI"].size  # a real comparison, not NaN = NaN


@pytest.mark.parametrize("source_id", ["sourceProduct", "sourceProduct.1", "source"])
def test_source_names_of_graph_builder_gpt_and_the_fallback(scene, indices_reference, source_id):
    """Graph Builder wires sourceProduct / sourceProduct.1; other ids reach us through getSourceProduct()."""
    ref, _ = indices_reference
    context = indices_context(java_product(s2s1(scene)), source_id=source_id, indices=J.jpy.array("java.lang.String", ["BSI"]))
    target = J.run_operator(SpectralIndicesOp(), context, tile_size=(100, 37))
    assert_bits_equal(J.raster(target.getBand("BSI")), ref["BSI"])


def test_spectral_indices_target_product(scene, java_indices, indices_reference):
    _, ref_target = indices_reference
    t = java_indices
    assert t.getName() == ref_target.name and (t.getSceneRasterWidth(), t.getSceneRasterHeight()) == (W, H)
    assert t.getProductType() == "S2_MSI_Level-2A"
    for name in INDICES.split(","):
        b, ref = t.getBand(name), ref_target.band(name)
        assert b.getDataType() == J.ProductData.TYPE_FLOAT32
        assert b.isNoDataValueUsed() and np.isnan(b.getNoDataValue())
        assert b.getDescription() == ref.description and b.getUnit() == ref.unit
        assert not b.isSourceImageSet()  # computed by the operator, tile by tile
    # Geocoding, times and metadata copied from the source; the operator's element added.
    crs, transform = adapter.map_geocoding(J, t.getSceneGeoCoding())
    assert transform == T and crs == CRS.from_string(EPSG)
    assert adapter.utc_datetime(t.getStartTime()) == START and adapter.utc_datetime(t.getEndTime()) == STOP
    root = t.getMetadataRoot()
    assert root.getElement("Processing_Graph").getAttributeString("node") == "Read"
    el = root.getElement("SpectralIndices")
    want = ref_target.metadata.element("SpectralIndices").attributes
    assert el.getAttributeString("indices") == want["indices"] == INDICES
    assert el.getAttributeDouble("saviL") == want["saviL"] == 0.5
    assert el.getAttributeString("inputs") == want["inputs"]
    assert (t.getPreferredTileSize().width, t.getPreferredTileSize().height) == (64, 64)  # the source's
    untiled = J.run_operator(SpectralIndicesOp(), indices_context(java_product(s2s1(scene)), indices="NDVI"))
    assert (untiled.getPreferredTileSize().width, untiled.getPreferredTileSize().height) == (512, 512)


def test_a_source_without_product_type_still_gets_a_typed_target(scene):
    """SNAP's Product constructor refuses a null or empty type; a reader may leave the source's unset."""
    with pytest.raises(RuntimeError, match="type\\] is null or empty"):
        J.Product("x", "", 4, 4)
    source = java_product(s2s1(scene))
    source.getProductType = lambda: None
    t = J.run_operator(SpectralIndicesOp(), indices_context(source, indices="NDVI"))
    assert t.getProductType() == "SpectralIndices"


def test_parameters_arrive_as_java_values(scene):
    """String[] as a Java array, double/boolean boxed, enum text: converted through the spec."""
    src = java_product(s2s1(scene), tile=(128, 96))
    context = indices_context(src, indices=J.jpy.array("java.lang.String", ["SAVI", "VV_db"]), saviL=0.25,
                              copySourceBands=True, sarUnit="dB")
    t = J.run_operator(SpectralIndicesOp(), context)  # the target's preferred tile grid: the source's
    assert (t.getPreferredTileSize().width, t.getPreferredTileSize().height) == (128, 96)
    ref = standalone("SpectralIndices", python_product(s2s1(scene)), indices="SAVI,VV_db", saviL=0.25,
                     copySourceBands=True, sarUnit="dB").target
    assert list(t.getBandNames()) == ref.band_names
    assert_bits_equal(J.raster(t.getBand("SAVI")), ref.band("SAVI").data.compute())
    assert t.getMetadataRoot().getElement("SpectralIndices").getAttributeDouble("saviL") == 0.25
    copied = t.getBand("B4")
    assert copied.isSourceImageSet() and copied.getUnit() == "dl"  # SNAP's copyBand: shares the source image
    np.testing.assert_array_equal(J.raster(copied), scene["B4"])


@pytest.mark.parametrize(("params", "message"), [
    ({"saviL": 2.0}, "saviL"),
    ({"indices": J.jpy.array("java.lang.String", ["NDVI", "NOPE"])}, "NOPE"),
    ({"sarUnit": "decibel"}, "sarUnit"),
])
def test_bad_parameters_fail_in_initialize_with_one_line(scene, params, message):
    op = SpectralIndicesOp()
    with pytest.raises(ParameterError, match=message) as info:
        op.initialize(indices_context(java_product(s2s1(scene)), **params))
    assert "\n" not in str(info.value)


def test_missing_bands_and_missing_source_are_one_line_errors(scene):
    src = java_product({n: scene[n] for n in ("B2", "B3")})
    with pytest.raises(OperatorError, match="NDVI needs") as info:
        SpectralIndicesOp().initialize(indices_context(src, indices=J.jpy.array("java.lang.String", ["NDVI"])))
    assert "\n" not in str(info.value)
    with pytest.raises(OperatorError, match="no source product"):
        SpectralIndicesOp().initialize(J.Operator({}, {}))


def test_each_tile_is_a_few_whole_tile_java_calls(scene):
    """SNAP runs Python tile calls one at a time: Java calls per tile must not grow with its size."""
    op = SpectralIndicesOp()
    context = indices_context(java_product(s2s1(scene)), indices=J.jpy.array("java.lang.String", ["NDVI", "BSI"]))
    op.initialize(context)
    target = context.getTargetProduct()
    counts = []
    for size in (16, 200):
        rect = J.Rectangle(7, 5, size, size // 2 + 1)
        tiles = J.target_tiles(target.getBands(), rect)
        J.CALLS.clear()
        for band in target.getBands():  # one call per band; the first computes both
            op.computeTile(context, band, tiles.get(band))
        counts.append(dict(J.CALLS))
    op.dispose(context)
    assert counts[0] == counts[1]
    assert counts[0]["Operator.getSourceTile"] == 4  # B2, B4, B8, B11, once for both bands
    assert counts[0]["Tile.setSamples"] == 2 and sum(counts[0].values()) < 30


def l2a_product(arrays: dict) -> tuple[J.Product, dict[str, np.ndarray]]:
    """A Sentinel-2 L2A product as SNAP's reader gives it, and its geophysical values.

    uint16 digital numbers with scaling factor 1e-4 and offset -0.1 (processing
    baseline 04.00+), no-data 0, and a valid-pixel expression (saturated SWIR
    pixels invalid in every band). The values are what ``Tile.getSamplesFloat``
    gives: ``(float) (1e-4 * DN - 0.1)``, NaN where invalid.
    """
    p = J.Product("S2B_MSIL2A", "S2_MSI_Level-2A", W, H)
    dns = {}
    for n in S2_BANDS:
        dn = np.where(np.isnan(arrays[n]), 0, np.clip(np.round((arrays[n] + 0.1) * 10000), 1, 65534))
        dns[n] = dn.astype(np.uint16)
    dns["B11"][100:110, 200:230] = 65535  # saturated
    valid = (dns["B11"] < 65535) & (dns["B2"] > 0)
    geo = {}
    for n, dn in dns.items():
        b = p.addBand(n, J.ProductData.TYPE_UINT16)
        b.setScalingFactor(1e-4)
        b.setScalingOffset(-0.1)
        b.setNoDataValue(0.0)
        b.setNoDataValueUsed(True)
        b.setValidPixelExpression("B11.raw < 65535 && B2.raw > 0")
        b.setUnit("dl")
        J.set_raster(b, dn)
        geo[n] = np.where(valid & (dn != 0), (1e-4 * dn.astype(np.float64) - 0.1).astype(np.float32), np.float32(np.nan))
    p.setSceneGeoCoding(J.crs_geocoding(EPSG, tuple(T)[:6], W, H))
    p.setStartTime(J.utc(START))
    p.setEndTime(J.utc(STOP))
    return p, geo


def test_scaled_integer_bands_are_read_as_snap_gives_them(scene):
    """An L2A product read by SNAP: uint16 with scaling and a valid-pixel expression. The
    operators see SNAP's geophysical float32 values (NaN where invalid), as the engine would."""
    java, geo = l2a_product(scene)
    band = java.getBand("B4")
    assert band.getGeophysicalDataType() == J.ProductData.TYPE_FLOAT32 and band.isScalingApplied()
    assert np.isnan(geo["B4"][100:110, 200:230]).all() and np.isnan(geo["B4"]).mean() < 0.5
    names = ["NDVI", "MNDWI", "NDBI", "BSI", "SAVI"]
    context = indices_context(java, indices=J.jpy.array("java.lang.String", names), copySourceBands=True)
    t = J.run_operator(SpectralIndicesOp(), context, tile_size=(64, 64))
    ref = standalone("SpectralIndices", python_product(geo), indices=",".join(names), saviL=0.5,
                     copySourceBands=False)
    for n in names:
        assert_bits_equal(J.raster(t.getBand(n)), ref.target.band(n).data.compute())
    # Source bands pass through as SNAP copies them: raw, with their scaling and valid-pixel expression.
    copied = t.getBand("B4")
    assert copied.isSourceImageSet() and copied.getScalingFactor() == 1e-4 and copied.getScalingOffset() == -0.1
    assert copied.getValidPixelExpression() == "B11.raw < 65535 && B2.raw > 0"


# --- ProgressiveClassifier -------------------------------------------------------------------


def classifier_context(source: J.Product, source_id="sourceProduct", **params) -> J.Operator:
    values = {"rules": "coastal-4class", "samplesClassField": "class_id", "outputStage": True, "otsuSubsampling": 2}
    values.update(params)
    spec = get_operator("ProgressiveClassifier").spec
    return J.Operator.from_descriptor(spec.alias, {source_id: source}, values)


@pytest.fixture(scope="module")
def classifier_reference(indices_reference, tmp_path_factory):
    """The standalone classifier on the standalone indices, writing its area table."""
    ref, ref_target = indices_reference
    src = ref_target.copy(bands=[b.replace(data=da.from_array(ref[n], chunks=64)) for n, b in ref_target.bands.items()])
    csv = tmp_path_factory.mktemp("standalone") / "areas.csv"
    op = standalone("ProgressiveClassifier", src, rules="coastal-4class", outputStage=True, otsuSubsampling=2,
                    areaTableFile=csv)
    op.execute()
    return op, {n: b.data.compute() for n, b in op.target.bands.items()}, csv.read_bytes()


@pytest.mark.parametrize(("grid", "source_id"), [((64, 64), "sourceProduct"), ((100, 37), "sourceProduct.1"),
                                                 ("partition", "input")])
def test_classifier_equals_standalone_with_otsu_and_area_table(java_indices, classifier_reference, tmp_path, capsys,
                                                                 grid, source_id):
    ref_op, ref, ref_csv = classifier_reference
    csv = tmp_path / "areas.csv"
    kwargs = {"rects": J.random_partition(W, H, seed=3, min_size=7)} if grid == "partition" else {"tile_size": grid}
    context = classifier_context(java_indices, source_id, areaTableFile=J.File(str(csv)))
    t = J.run_operator(ProgressiveClassifierOp(), context, **kwargs)
    assert list(t.getBandNames()) == ["class_id", "stage"]
    assert_bits_equal(J.raster(t.getBand("class_id")), ref["class_id"])
    assert_bits_equal(J.raster(t.getBand("stage")), ref["stage"])
    assert len(np.unique(ref["class_id"])) >= 3
    # The scene-adaptive water threshold was resolved in initialize from SNAP tiles: the same number
    # as standalone.
    stage = ref_op.target.metadata.element("ProgressiveClassifier").element("stage_1")
    k = next(i for i, e in enumerate(stage.elements) if e.attributes.get("band") == "MNDWI")
    want = stage.elements[k].attributes
    got = t.getMetadataRoot().getElement("ProgressiveClassifier").getElement("stage_1").getElements()[k]
    assert want["min_mode"] == "adaptive" and got.getAttributeString("min_mode") == "adaptive"
    assert got.getAttributeDouble("min") == want["min"]
    # The area table: the same CSV bytes, printed once, nothing temporary left.
    assert csv.read_bytes() == ref_csv
    assert capsys.readouterr().out.count("Class ID | Class Name | Area (sq km)") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["areas.csv"]


def test_classifier_target_product_classes_colors_masks_and_metadata(java_indices, classifier_reference):
    ref_op, ref, _ = classifier_reference
    context = classifier_context(java_indices, outputStage=False)
    t = J.run_operator(ProgressiveClassifierOp(), context, tile_size=(64, 64))
    assert list(t.getBandNames()) == ["class_id"]
    band = t.getBand("class_id")
    assert band.getDataType() == J.ProductData.TYPE_UINT8
    assert band.isNoDataValueUsed() and band.getNoDataValue() == 255
    classes = ref_op.target.band("class_id").classes
    coding = band.getIndexCoding()
    assert t.getIndexCodingGroup().get("class_id") is coding
    assert list(coding.getIndexNames()) == [c.name for c in classes]
    assert [coding.getIndexValue(c.name) for c in classes] == [c.value for c in classes]
    assert [coding.getIndex(c.name).getDescription() for c in classes] == [c.description for c in classes]
    points = band.getImageInfo().getColorPaletteDef().getPoints()
    assert [(p.getSample(), p.getLabel()) for p in points] == [(c.value, c.name) for c in classes]
    assert [(p.getColor().getRed(), p.getColor().getGreen(), p.getColor().getBlue()) for p in points] == \
        [c.color for c in classes]
    assert band.getImageInfo().getColorPaletteDef().getNumColors() == len(classes)
    masks = t.getMaskGroup()
    assert masks.getNodeCount() == len(classes)
    water = masks.get("class_id_Water")
    assert J.jpy.get_type("org.esa.snap.core.datamodel.Mask$BandMathsType").getExpression(water) == "class_id == 1"
    assert water.getImageColor().getBlue() == 255
    assert masks.get("class_id_Trees_Shrubbery_vegetation") is not None
    # The metadata is the engine's (the thresholds), complete at initialize: nothing is added after the
    # last tile, when SNAP's writers have written their header long before (the area table goes to CSV).
    ours = t.getMetadataRoot().getElement("ProgressiveClassifier")
    want = ref_op.target.metadata.element("ProgressiveClassifier")
    assert list(ours.getElementNames()) == [e.name for e in want.elements]
    assert ours.getElement("area_table") is None


def test_tiles_computed_twice_are_counted_once(java_indices, tmp_path):
    """SNAP's tile cache may recompute a tile: area counts and regions must take it once."""
    grid = J.tile_grid(W, H, 64, 64)
    rects = grid[:10] + grid[:5] + [(0, 0, 10, 10), (60, 60, 9, 9)] + grid[10:]
    csv_once, csv_twice = tmp_path / "once.csv", tmp_path / "twice.csv"
    J.run_operator(ProgressiveClassifierOp(), classifier_context(java_indices, outputStage=False,
                                                                 areaTableFile=J.File(str(csv_once))), rects=grid)
    t = J.run_operator(ProgressiveClassifierOp(), classifier_context(java_indices, outputStage=False,
                                                                     areaTableFile=J.File(str(csv_twice))),
                       rects=rects, shuffle=False)
    assert csv_twice.read_text() == csv_once.read_text()
    valid = int((J.raster(t.getBand("class_id")) != 255).sum())
    assert f",{valid}," in csv_once.read_text() and valid > 0.8 * H * W  # the total row counts each pixel once
    once, twice = tmp_path / "once.gpkg", tmp_path / "twice.gpkg"
    J.run_operator(LabelMaskExportOp(), export_context(t, file=J.File(str(once))), rects=grid)
    J.run_operator(LabelMaskExportOp(), export_context(t, file=J.File(str(twice))), rects=rects, shuffle=False)
    assert features(twice) == features(once)


def test_cancelled_runs_leave_nothing_behind(java_indices, tmp_path):
    csv = tmp_path / "areas.csv"
    t = J.run_operator(ProgressiveClassifierOp(), classifier_context(java_indices, areaTableFile=J.File(str(csv))),
                       tile_size=(64, 64), stop_after=4)
    assert list(tmp_path.iterdir()) == []
    assert t.getMetadataRoot().getElement("ProgressiveClassifier").getElement("area_table") is None
    classes = J.run_operator(ProgressiveClassifierOp(), classifier_context(java_indices), tile_size=(64, 64))
    gpkg = tmp_path / "masks.gpkg"
    J.run_operator(LabelMaskExportOp(), export_context(classes, file=J.File(str(gpkg))), tile_size=(64, 64),
                   stop_after=7)
    assert list(tmp_path.iterdir()) == []


def test_rules_error_is_one_line(java_indices, tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("schema: snap-pc/rules/1\nname: x\nclasses: []\nstages: []\n")
    with pytest.raises(ParameterError) as info:
        ProgressiveClassifierOp().initialize(classifier_context(java_indices, rules=J.File(str(bad))))
    assert "\n" not in str(info.value) and "ProgressiveClassifier" in str(info.value)


# --- LabelMaskExport -------------------------------------------------------------------------


def export_context(source: J.Product, source_id="sourceProduct", **params) -> J.Operator:
    values = {"formatName": "GPKG", "sourceBand": "class_id", "connectivity": 4, "minArea": 0.0, "simplify": 0.0,
              "layerName": "label_masks", "includeUnclassified": False, "areaTable": True}
    values.update(params)
    spec = get_operator("LabelMaskExport").spec
    return J.Operator.from_descriptor(spec.alias, {source_id: source}, values)


@pytest.fixture(scope="module")
def java_classes(java_indices):
    return J.run_operator(ProgressiveClassifierOp(), classifier_context(java_indices, outputStage=False), tile_size=(100, 37))


def features(path, layer=None):
    with fiona.open(path, layer=layer) as src:
        rows = sorted(
            (f["properties"]["class_id"], f["properties"]["class_name"], f["properties"]["area_m2"],
             f["properties"]["area_km2"], shapely.normalize(shape(f["geometry"])).wkb)
            for f in src
        )
        return rows, CRS.from_wkt(src.crs_wkt)


@pytest.mark.parametrize(("grid", "params"), [
    ((64, 64), {}),
    ((100, 37), {"connectivity": 8, "includeUnclassified": True}),
    ("partition", {"minArea": 2500.0}),  # a sieve: each chunk is the standalone graph's, halo read through SNAP
    ((512, 512), {"formatName": "GeoJSON", "layerName": "lm"}),
])
def test_label_mask_export_writes_the_standalone_file(java_classes, classifier_reference, tmp_path, grid, params):
    ref_op, ref, _ = classifier_reference
    classes = ref_op.target.band("class_id").classes
    src = python_product({"class_id": ref["class_id"]}, {"class_id": classes}, no_data=255)
    suffix = ".geojson" if params.get("formatName") == "GeoJSON" else ".gpkg"
    (tmp_path / "standalone").mkdir()
    (tmp_path / "snap").mkdir()
    want_path = tmp_path / "standalone" / f"masks{suffix}"
    standalone("LabelMaskExport", src, file=want_path, **params).execute()

    got_path = tmp_path / "snap" / f"masks{suffix}"
    kwargs = {"rects": J.random_partition(W, H, seed=8, min_size=6)} if grid == "partition" else {"tile_size": grid}
    t = J.run_operator(LabelMaskExportOp(), export_context(java_classes, file=J.File(str(got_path)), **params), **kwargs)

    got, got_crs = features(got_path)
    want, want_crs = features(want_path)
    assert len(want) >= 10 and got == want
    assert got_crs == want_crs == CRS.from_string(EPSG)
    for sidecar in ("masks.qml", "masks_areas.csv"):
        assert (tmp_path / "snap" / sidecar).read_bytes() == (tmp_path / "standalone" / sidecar).read_bytes()
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == sorted(p.name for p in (tmp_path / "standalone").iterdir())
    # The target is the source (as standalone): the class band passes through with its coding.
    assert list(t.getBandNames()) == ["class_id"]
    np.testing.assert_array_equal(J.raster(t.getBand("class_id")), ref["class_id"])
    assert list(t.getBand("class_id").getIndexCoding().getIndexNames()) == [c.name for c in classes]
    assert t.getMaskGroup().getNodeCount() == len(classes)


def test_label_mask_export_keeps_other_bands_and_refuses_float_bands(java_classes, java_indices, tmp_path):
    both = J.Product("both", "T", W, H)
    J.ProductUtils.copyGeoCoding(java_classes, both)
    for src, name in ((java_classes, "class_id"), (java_indices, "NDVI")):
        J.ProductUtils.copyBand(name, src, both, True)
    t = J.run_operator(LabelMaskExportOp(), export_context(both, file=J.File(str(tmp_path / "m.gpkg"))),
                       tile_size=(128, 128))
    assert list(t.getBandNames()) == ["class_id", "NDVI"]
    assert t.getBand("NDVI").isSourceImageSet() and not t.getBand("class_id").isSourceImageSet()
    assert (tmp_path / "m.gpkg").exists()
    with pytest.raises(OperatorError, match="not an integer class band") as info:
        LabelMaskExportOp().initialize(export_context(both, file=J.File(str(tmp_path / "n.gpkg")), sourceBand="NDVI"))
    assert "\n" not in str(info.value)


def test_label_mask_export_needs_map_geocoding(java_classes, tmp_path):
    swath = J.Product("swath", "T", W, H)
    J.ProductUtils.copyBand("class_id", java_classes, swath, True)
    with pytest.raises(OperatorError, match="no map geocoding"):
        LabelMaskExportOp().initialize(export_context(swath, file=J.File(str(tmp_path / "m.gpkg"))))
    swath.setSceneGeoCoding(J.TiePointGeoCoding())
    assert adapter.map_geocoding(J, swath.getSceneGeoCoding()) == (None, None)
    with pytest.raises(OperatorError, match="no map geocoding"):
        LabelMaskExportOp().initialize(export_context(swath, file=J.File(str(tmp_path / "m.gpkg"))))
    assert list(tmp_path.iterdir()) == []


# --- the stand-in and the plugin -----------------------------------------------------------------


# --- ChangeDetection (two named sources) -----------------------------------------------------


def class_maps() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    before = np.repeat(np.repeat(rng.integers(1, 6, size=(H // 16 + 1, W // 16 + 1)), 16, 0), 16, 1)[:H, :W]
    after = before.copy()
    after[40:120, 50:200] = 2  # a clearing
    after[rng.random((H, W)) < 0.02] = 1  # scattered flooding
    before[:10, :] = 255  # no-data rows on one date only
    return before.astype(np.uint8), after.astype(np.uint8)


def java_class_product(name: str, a: np.ndarray) -> J.Product:
    p = J.Product(name, "CLASSES", W, H)
    b = p.addBand("class_id", J.ProductData.TYPE_UINT8)
    b.setNoDataValue(255.0)
    b.setNoDataValueUsed(True)
    J.set_raster(b, a)
    p.setSceneGeoCoding(J.crs_geocoding(EPSG, tuple(T)[:6], W, H))
    return p


@pytest.mark.parametrize("grid", [(64, 64), (100, 37), "partition"])
def test_change_detection_equals_standalone_with_named_sources(tmp_path, capsys, grid):
    from snap_operators.core.legend import LAND_COVER

    before, after = class_maps()
    classes = {"class_id": list(LAND_COVER)}
    ref_csv = tmp_path / "ref" / "matrix.csv"
    ref_csv.parent.mkdir()
    op = get_operator("ChangeDetection").create(
        {"before": python_product({"class_id": before}, classes, 255, "before"),
         "after": python_product({"class_id": after}, classes, 255, "after")},
        {"matrixFile": str(ref_csv)}, context=ExecutionContext(tile_size=64, overwrite=True))
    op.target = op.initialize()
    op.execute()
    ref = op.target.band("change").data.compute()
    capsys.readouterr()

    csv = tmp_path / "matrix.csv"
    spec = get_operator("ChangeDetection").spec
    context = J.Operator.from_descriptor(
        spec.alias, {"before": java_class_product("before", before), "after": java_class_product("after", after)},
        {"sourceBand": "class_id", "matrixFile": J.File(str(csv))})
    kwargs = {"rects": J.random_partition(W, H, seed=5, min_size=9)} if grid == "partition" else {"tile_size": grid}
    t = J.run_operator(ChangeDetectionOp(), context, **kwargs)
    assert list(t.getBandNames()) == ["change"]
    assert_bits_equal(J.raster(t.getBand("change")), ref)
    assert (ref == 255).sum() == 10 * W and (ref == 0).any()
    assert (ref[40:120, 50:200] == 12).any() and (ref[40:120, 50:200] == 32).any()  # the clearing
    assert csv.read_bytes() == ref_csv.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matrix.csv", "ref"]


def test_change_detection_from_gpt_command_line_sources(tmp_path):
    """``gpt ChangeDetection before.dim after.dim``: three ids for the first file, two for the second."""
    before, after = class_maps()
    spec = get_operator("ChangeDetection").spec
    named = J.Operator.from_descriptor(spec.alias, {"before": java_class_product("before", before),
                                                    "after": java_class_product("after", after)}, {})
    ref = J.raster(J.run_operator(ChangeDetectionOp(), named).getBand("change"))
    sources = J.gpt_command_line_sources(java_class_product("before", before), java_class_product("after", after))
    assert len(sources) == 5 and len({id(p) for p in sources.values()}) == 2
    context = J.Operator.from_descriptor(spec.alias, sources, {})
    target = J.run_operator(ChangeDetectionOp(), context)
    assert_bits_equal(J.raster(target.getBand("change")), ref)
    # Three files are three maps: refused, not silently reduced to two.
    third = J.gpt_command_line_sources(*(java_class_product(n, before) for n in ("a", "b", "c")))
    with pytest.raises(OperatorError, match="needs exactly two class maps"):
        ChangeDetectionOp().initialize(J.Operator.from_descriptor(spec.alias, third, {}))


def test_change_detection_in_snap_spans_from_before_to_after():
    """The change product starts when 'before' does and ends when 'after' does, as in the engine."""
    from snap_operators.snap.adapter import java_utc, utc_datetime

    before, after = class_maps()
    maps = {"before": java_class_product("before", before), "after": java_class_product("after", after)}
    times = {"before": (_dt.datetime(2019, 6, 1, 10, 30), _dt.datetime(2019, 6, 1, 10, 31)),
             "after": (_dt.datetime(2023, 7, 2, 10, 40, 5, 250), _dt.datetime(2023, 7, 2, 10, 41))}
    for k, (start, stop) in times.items():
        maps[k].setStartTime(java_utc(J, start))
        maps[k].setEndTime(java_utc(J, stop))
    spec = get_operator("ChangeDetection").spec
    target = J.run_operator(ChangeDetectionOp(), J.Operator.from_descriptor(spec.alias, maps, {}))
    assert utc_datetime(target.getStartTime()) == times["before"][0]
    assert utc_datetime(target.getEndTime()) == times["after"][1]


def test_change_detection_in_snap_refuses_maps_on_different_grids(tmp_path):
    before, after = class_maps()
    other = J.Product("after", "CLASSES", W // 2, H // 2)
    b = other.addBand("class_id", J.ProductData.TYPE_UINT8)
    J.set_raster(b, after[: H // 2 * 2:2, : W // 2 * 2:2])
    other.setSceneGeoCoding(J.crs_geocoding(EPSG, (20.0, 0.0, 300000.0, 0.0, -20.0, 4030000.0), W // 2, H // 2))
    spec = get_operator("ChangeDetection").spec
    context = J.Operator.from_descriptor(spec.alias, {"before": java_class_product("before", before), "after": other},
                                         {"sourceBand": "class_id"})
    with pytest.raises(OperatorError, match="put a Collocate node before ChangeDetection"):
        ChangeDetectionOp().initialize(context)


def test_the_stand_in_is_strict():
    p = J.Product("p", "t", 4, 3)
    with pytest.raises(AttributeError, match="SNAP's Product has no method getRasterSize"):
        p.getRasterSize()
    with pytest.raises(AttributeError, match="SNAP's ProductUtils has no method or field copyEverything"):
        J.ProductUtils.copyEverything(p, p)
    with pytest.raises(AttributeError, match="esa_snappy has no attribute IndexCoding"):
        J.IndexCoding  # noqa: B018 - esa_snappy does not preload it: jpy.get_type
    with pytest.raises(ValueError, match="not found"):
        J.jpy.get_type("org.esa.snap.core.datamodel.NoSuchThing")
    p.setSceneGeoCoding(J.crs_geocoding(EPSG, (10, 0, 0, 0, -10, 0), 4, 3))
    gc = p.getSceneGeoCoding()
    with pytest.raises(AttributeError, match="declared MathTransform; use jpy.cast"):
        gc.getImageToMapTransform().getScaleX()  # jpy types it as the interface
    affine = J.jpy.get_type("java.awt.geom.AffineTransform")
    assert J.jpy.cast(gc.getImageToMapTransform(), affine).getScaleX() == 10.0
    with pytest.raises(TypeError, match="crashes jpy 0.13"):  # a name, as only jpy 0.16+ takes
        J.jpy.cast(gc.getImageToMapTransform(), "java.awt.geom.AffineTransform")
    assert "elt_0_0" in gc.getImageToMapTransform().toWKT()
    band = p.addBand("b", J.ProductData.TYPE_UINT8)
    tile = J.Tile(band, J.Rectangle(0, 0, 4, 3), True)
    with pytest.raises(RuntimeError, match="1-D"):
        tile.setSamples(np.zeros((3, 4), np.uint8))  # jpy takes 1-D buffers
    with pytest.raises(RuntimeError, match="no matching Java method"):
        tile.setSamples(np.zeros(12, np.int64))  # no long[] overload
    with pytest.raises(RuntimeError, match="integer pixels"):
        p.addBand("f", J.ProductData.TYPE_FLOAT32).setSampleCoding(J.jpy.get_type(
            "org.esa.snap.core.datamodel.IndexCoding")("c"))
    with pytest.raises(RuntimeError, match="outside"):
        J.Operator({"sourceProduct": p}).getSourceTile(band, J.Rectangle(2, 2, 4, 3))
    with pytest.raises(AttributeError):
        tile.getSamplesFloat().reshape(3, 4)  # a Java float[] is a buffer, not a numpy array
    assert adapter.java_samples(np.array([[255, 0]], np.uint8), np.dtype(np.uint8)).dtype == np.int8
    with pytest.raises(RuntimeError, match=r"no matching Java method overloads found for Rectangle"):
        J.Rectangle(np.int64(0), 0, 4, 3)  # jpy: a numpy integer is no Python int, so no Java int
    band.setNoDataValue(np.float32(1.0))  # a double takes any number
    # Metadata a writer already wrote in its header is frozen: SNAP would silently lose a later change.
    root = p.getMetadataRoot()
    root._freeze()
    with pytest.raises(RuntimeError, match="after the writer wrote the product header"):
        root.addElement(J.jpy.get_type("org.esa.snap.core.datamodel.MetadataElement")("late"))


def test_adapter_does_not_import_esa_snappy_and_plugin_names_match():
    code = (
        f"import sys, importlib; sys.path.insert(0, {str(PLUGIN)!r})\n"
        f"mods = [importlib.import_module(m) for m in {[p.module for p in PLUGIN_OPERATORS]!r}]\n"
        "print(' '.join(f'{m.__name__}.{c}' for m in mods for c in dir(m) if c.endswith('Op')))\n"
        "assert 'esa_snappy' not in sys.modules\n"
        "op = mods[0].SpectralIndicesOp()\n"
        "try:\n    op.initialize(None)\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    names = out[0].split()
    assert names == [p.service for p in PLUGIN_OPERATORS]
    assert {"SpectralIndices", "ProgressiveClassifier", "LabelMaskExport", "AttentionUNetInference",
            "ChangeDetection"} <= {p.alias for p in PLUGIN_OPERATORS}
    assert out[1].startswith("OperatorError esa_snappy is not importable")
    services = PLUGIN / "META-INF" / "services" / "eu.esa.snap.snappy.gpf.PyOperatorSpi"
    if services.exists():  # written from the same names by snap_operators.snap.descriptors
        listed = [ln.strip() for ln in services.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert sorted(listed) == sorted(names)
    for qualified in names:  # also importable from the installed package
        module, name = qualified.split(".")
        cls = getattr(importlib.import_module(f"snap_operators.snap.plugin.{module}"), name)
        assert cls.__name__ == name and cls.alias == {p.class_name: p.alias for p in PLUGIN_OPERATORS}[name]
        for method in ("initialize", "computeTile", "dispose"):
            assert callable(getattr(cls, method))
        # Without computeTileStack, SNAP gives the operator plain OperatorImages (no tile-stack locks).
        assert not J.must_compute_tile_stack(cls())


def test_unknown_alias_and_metadata_conversion():
    with pytest.raises(SnapPcError, match="no SNAP adapter for operator 'BandMaths'"):
        make_operator_class("BandMaths")
    types = adapter._Types(J)
    el = MetadataElement("x", {"n": 3, "big": 2**40, "f": 0.1, "flag": True, "s": "a", "none": None,
                               "t": dt.datetime(2020, 1, 2)})
    j = adapter.java_element(types, el)
    assert j.getAttributeInt("n") == 3 and j.getAttributeDouble("big") == 2**40 and j.getAttributeDouble("f") == 0.1
    assert j.getAttributeString("flag") == "true" and j.getAttributeString("t") == "2020-01-02T00:00:00"
    assert not j.containsAttribute("none")


# --- CloudMask (a kernel with a halo of blocks) ------------------------------------------------------------

CloudMaskOp = make_operator_class("CloudMask", api=J)


def cloudy(scene) -> dict[str, np.ndarray]:
    """The scene's S2 bands with a thick cloud, its shadow and a dark patch far from it."""
    arrays = {n: scene[n].copy() for n in ("B2", "B3", "B4", "B8", "B11")}
    for n, v in (("B2", 0.45), ("B3", 0.45), ("B4", 0.44), ("B8", 0.46), ("B11", 0.4)):
        arrays[n][30:110, 60:200] = v
    for n, v in (("B2", 0.02), ("B3", 0.03), ("B4", 0.02), ("B8", 0.06), ("B11", 0.05)):
        arrays[n][115:140, 80:160] = v
        arrays[n][10:30, 270:290] = v
    return arrays


@pytest.mark.parametrize("grid", [(64, 64), (100, 37), "partition"])
@pytest.mark.parametrize("method", ["spectral", "scl"])
def test_cloud_mask_equals_standalone_bit_for_bit(scene, grid, method):
    arrays = cloudy(scene)
    if method == "scl":
        scl = np.where(np.isnan(arrays["B2"]), 0, 4).astype(np.uint8)
        scl[30:110, 60:200] = 9
        scl[115:140, 80:160] = 3
        scl[200:, :20] = 11
        arrays = {"B2": arrays["B2"], "quality_scene_classification": scl}
    params = {"method": method, "detectionResolution": 40.0, "shadowSearchDistance": 200.0, "cloudBufferWidth": 40.0}
    ref_op = standalone("CloudMask", python_product(arrays, no_data=0), **params)
    ref = ref_op.target.band("cloud_mask").data.compute()
    assert (ref == 1).any() and (ref == 2).any() and (ref == 255).any() and (ref == 0).any()

    source = java_product({n: a for n, a in arrays.items() if a.dtype.kind == "f"})
    if method == "scl":
        b = source.addBand("quality_scene_classification", J.ProductData.TYPE_UINT8)
        b.setNoDataValue(0.0)
        b.setNoDataValueUsed(True)
        J.set_raster(b, arrays["quality_scene_classification"])
    spec = get_operator("CloudMask").spec
    context = J.Operator.from_descriptor(spec.alias, {"sourceProduct": source}, params)
    kwargs = {"rects": J.random_partition(W, H, seed=3, min_size=7)} if grid == "partition" else {"tile_size": grid}
    t = J.run_operator(CloudMaskOp(), context, **kwargs)
    assert list(t.getBandNames()) == list(arrays) + ["cloud_mask"]
    assert_bits_equal(J.raster(t.getBand("cloud_mask")), ref)
    coding = t.getBand("cloud_mask").getIndexCoding()
    assert list(coding.getIndexNames()) == ["Clear", "Cloud", "Cloud shadow", "Snow/ice"]
    assert t.getMetadataRoot().getElement("CloudMask").getAttributeString("method") == method


# --- graphs in gpt: threads, GPF's tile locks and esa_snappy's Python lock ---------------------


def shipped_graph(scene, tmp_path, threads=4, tile=(64, 64), **export):
    """SpectralIndices -> ProgressiveClassifier -> (Write, LabelMaskExport): the shipped classifier
    graphs' shape, two end nodes reading one Python operator, on `threads` JAI threads."""
    graph = G.Graph(threads=threads, timeout=60)
    source = G.SourceNode(graph, java_product(s2s1(scene), tile=tile))
    indices = G.PythonNode(graph, SpectralIndicesOp(), indices_context(source.target))
    classes = G.PythonNode(graph, ProgressiveClassifierOp(), classifier_context(
        indices.target, outputStage=True, areaTableFile=J.File(str(tmp_path / "areas.csv"))))
    write = G.WriteNode(graph, classes, fail_at=export.pop("fail_write_at", None))
    labels = G.PythonNode(graph, LabelMaskExportOp(), export_context(
        classes.target, file=J.File(str(tmp_path / "labels.gpkg")), **export), output_node=True)
    return graph, write, labels


def test_two_end_nodes_over_one_python_operator_do_not_deadlock(scene, classifier_reference, tmp_path):
    """Write and LabelMaskExport both read the classifier, on 4 threads, as in gpt -q 4.

    With computeTileStack, SNAP would guard each classifier tile with a lock taken before the
    Python lock, while LabelMaskExport asks for that tile holding the Python lock: a deadlock
    (see the stack-wise operator below). Our operators compute per band, without tile locks.
    """
    _, ref, ref_csv = classifier_reference
    graph, write, labels = shipped_graph(scene, tmp_path)
    graph.run([write, labels])
    assert_bits_equal(write.rasters["class_id"], ref["class_id"])
    assert_bits_equal(write.rasters["stage"], ref["stage"])
    assert (tmp_path / "areas.csv").read_bytes() == ref_csv
    want = tmp_path / "standalone.gpkg"
    ref_op = classifier_reference[0]
    src = python_product({"class_id": ref["class_id"]}, {"class_id": ref_op.target.band("class_id").classes}, no_data=255)
    standalone("LabelMaskExport", src, file=want).execute()
    assert features(tmp_path / "labels.gpkg") == features(want)
    # The header Write wrote holds all the metadata: nothing was added after it.
    assert "ProgressiveClassifier" in write.header
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["areas.csv", "labels.gpkg", "labels.qml", "labels_areas.csv", "standalone.gpkg", "standalone.qml",
         "standalone_areas.csv"])


class _StackPassThroughOp:
    """A Python operator as esa_snappy's examples write them: computeTileStack only."""

    def initialize(self, context):
        source = context.getSourceProduct()
        target = J.Product("copy", "T", source.getSceneRasterWidth(), source.getSceneRasterHeight())
        target.addBand("class_id", J.ProductData.TYPE_UINT8)
        target.setPreferredTileSize(64, 64)
        context.setTargetProduct(target)
        self.band = source.getBand("class_id")

    def computeTileStack(self, context, tiles, rect):
        data = context.getSourceTile(self.band, rect).getSamplesInt()
        for band in tiles.keySet():
            tiles.get(band).setSamples(np.frombuffer(data, np.int32).astype(np.int8))

    def dispose(self, context):
        pass


def test_the_stand_in_finds_the_tile_stack_deadlock(scene, java_classes):
    """The emulation is strict enough to see the deadlock esa_snappy's own style of operator has."""
    graph = G.Graph(threads=4, timeout=20)
    source = G.SourceNode(graph, java_classes)
    stacked = G.PythonNode(graph, _StackPassThroughOp(), J.Operator({"sourceProduct": source.target}))
    reader = G.PythonNode(graph, _StackPassThroughOp(), J.Operator({"sourceProduct": stacked.target}))
    with pytest.raises(G.PotentialDeadlock, match=r"lock order cycle .*PyLib.class"):
        graph.run([G.WriteNode(graph, stacked), reader])


def test_label_mask_export_runs_once_per_tile_in_single_operator_runs(java_classes, java_indices, tmp_path):
    """gpt LabelMaskExport ... and SNAP Desktop pull every band image of the operator (it is an
    output node: autoWriteSuppressed); its Python work must not repeat per band."""
    both = J.Product("both", "T", W, H)
    J.ProductUtils.copyGeoCoding(java_classes, both)
    for src, names in ((java_classes, ["class_id"]), (java_indices, ["NDVI", "BSI", "MNDWI"])):
        for name in names:
            J.ProductUtils.copyBand(name, src, both, True)
    both.setPreferredTileSize(64, 64)
    graph = G.Graph(threads=2)
    G.SourceNode(graph, both)
    node = G.PythonNode(graph, LabelMaskExportOp(), export_context(both, file=J.File(str(tmp_path / "m.gpkg"))),
                        output_node=True)
    J.CALLS.clear()
    graph.execute_operator(node)
    tiles = len(node.tile_grid())
    python_calls = sum(n for (alias, method), n in graph.calls.items() if alias == "LabelMaskExport"
                       and method.startswith("compute"))
    assert python_calls == tiles  # the class band's tiles only; the copied bands call no Python
    assert J.CALLS["Operator.getSourceTile"] == tiles
    assert features(tmp_path / "m.gpkg")[0]


def test_a_failed_gpt_run_leaves_no_staged_files(scene, tmp_path, monkeypatch):
    """gpt calls no dispose after a failure. Our own failed tile removes the staged outputs at once;
    when another node fails, gpt exits and the next run into the folder removes what it left."""
    from snap_operators.core import staging

    def staged(folder):
        return sorted(p.name for p in folder.iterdir() if staging.staged_owner(p.name))

    # Our own tile fails: its outputs go at once, and later tiles start nothing new.
    out = tmp_path / "own"
    out.mkdir()
    graph, write, labels = shipped_graph(scene, out)
    calls = {"n": 0}
    real = adapter.read_tile

    def failing(context, band, rect, dtype, fill):
        calls["n"] += 1
        if calls["n"] == 40:
            raise RuntimeError("java.io.IOException: read error")
        return real(context, band, rect, dtype, fill)

    monkeypatch.setattr(adapter, "read_tile", failing)
    with pytest.raises((RuntimeError, OperatorError), match="read error"):  # whichever thread reports first
        graph.run([write, labels])
    assert sorted(p.name for p in out.iterdir()) == []
    monkeypatch.setattr(adapter, "read_tile", real)

    # The writer fails on its 20th tile in another gpt process, which then exits.
    out = tmp_path / "other"
    out.mkdir()
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]\n"
        "import numpy as np, test_adapter as T\n"
        "scene = T.synthetic_arrays(T.W, seed=5, window=(slice(0, T.H), slice(0, T.W)))\n"
        "graph, write, labels = T.shipped_graph(scene, T.Path(sys.argv[2]), fail_write_at=20)\n"
        "try:\n    graph.run([write, labels])\nexcept RuntimeError:\n    import os; os._exit(3)\n"
    )  # os._exit: the JVM exits and its embedded Python is never finalized
    r = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(out)], capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 3, r.stderr[-2000:]
    left = staged(out)
    assert left  # the dead run's staged label masks
    graph, write, labels = shipped_graph(scene, out)
    graph.run([write, labels])
    assert staged(out) == [] and (out / "labels.gpkg").exists()
