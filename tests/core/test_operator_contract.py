"""The operator contract: a declared tile kernel, one sink protocol, and a SNAP adapter generic over both.

Every operator published to SNAP declares its per-tile step
(``Operator.tile_kernel``); that kernel must compute, from the source tiles
it names, exactly what the operator's own target holds, and its
``sink_output`` exactly what its sink plan streams. The adapter keeps no
table per operator, and sinks are recognised one way (``Operator.is_sink``,
``Operator.may_sink``), never by probing for methods. A new operator is one
class plus one ``PLUGIN_OPERATORS`` line: the adapter runs it, sink included.
"""

from __future__ import annotations

import ast
import functools
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

import snap_operators.core.operator as core_operator
from snap_operators.apps.synth import S1_BANDS, S2_BANDS, synthetic_arrays
from snap_operators.core.legend import LAND_COVER
from snap_operators.core.context import ExecutionContext
from snap_operators.core.operator import Operator, TileKernel, get_operator, map_tiles, operators
from snap_operators.core.outputs import stage_text
from snap_operators.core.product import Band, Product
from snap_operators.core.spec import OperatorSpec, Parameter, SourceSpec
from snap_operators.core.staging import StagedFiles
from snap_operators.core.streaming import SinkPlan
from snap_operators.snap import adapter
from snap_operators.snap import descriptors as D

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

H, W = 80, 96
EPSG = "EPSG:32638"
T = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4030000.0)
PACKAGE = Path(core_operator.__file__).resolve().parents[1]
#: Where sinks are driven: the files that must recognise them one way.
SINK_DRIVERS = ("core/operator.py", "engine/runner.py", "snap/adapter.py")
SINK_PROTOCOL = {"is_sink", "may_sink", "prepare", "output_files", "open", "outputs"}


# --- products and operators ---------------------------------------------------------------------------


def product(arrays: dict[str, np.ndarray], name: str = "scene") -> Product:
    p = Product(name, "S2_MSI_Level-2A", crs=CRS.from_string(EPSG))
    for n, a in arrays.items():
        classes = list(LAND_COVER) if n == "class_id" else None
        p.add_band(Band(n, da.from_array(a, chunks=32), T, float("nan") if a.dtype.kind == "f" else 255,
                        classes=classes))
    return p


def initialized(alias: str, sources: dict[str, Product], **params) -> Operator:
    raw = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    op = get_operator(alias).create(sources, raw, context=ExecutionContext(tile_size=32, overwrite=True))
    op.target = op.initialize()
    return op


@pytest.fixture(scope="module")
def scene() -> dict[str, np.ndarray]:
    return synthetic_arrays(W, seed=3, window=(slice(0, H), slice(0, W)))


def class_map(scene, seed: int) -> Product:
    truth = scene["truth"].copy()
    truth[np.random.default_rng(seed).random(truth.shape) < 0.1] = 2  # some change between the dates
    return product({"class_id": truth}, name=f"classes_{seed}")


def tiny_unet(path: Path, bands) -> Path:
    """A one-layer ONNX network (1x1 convolution + softmax) with snap-pc metadata."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from snap_operators.io.onnx_model import ModelMetadata

    n = len(bands)
    meta = ModelMetadata("tiny", "1.0.0", tuple(bands), (0.0,) * n, (1.0,) * n, size_multiple=8, halo=8, opset=17,
                         class_ids=tuple(c.value for c in LAND_COVER), class_names=tuple(c.name for c in LAND_COVER),
                         class_colors=tuple(tuple(c.color) for c in LAND_COVER))
    w = np.random.default_rng(0).normal(size=(len(LAND_COVER), n, 1, 1)).astype("float32")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["bands", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("bands", TensorProto.FLOAT, ["batch", n, "height", "width"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(LAND_COVER), "height", "width"])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in meta.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


def plugin_op(alias: str, scene, tmp_path: Path, variant: str = "") -> Operator:
    """An initialized node of every operator the adapter serves; sinks configured to stream."""
    s2s1 = product({n: scene[n] for n in S2_BANDS + S1_BANDS})
    if alias == "SpectralIndices":
        return initialized(alias, {"sourceProduct": s2s1}, indices="NDVI,MNDWI,BSI,PANTEX")  # PANTEX: a halo
    if alias == "CloudMask":
        return initialized(alias, {"sourceProduct": s2s1}, method="spectral", detectionResolution=40.0)
    if alias == "ProgressiveClassifier":
        indices = initialized("SpectralIndices", {"sourceProduct": s2s1}, copySourceBands=True).target
        return initialized(alias, {"sourceProduct": indices}, maskBand="", outputStage=True,
                           areaTableFile=tmp_path / "areas.csv")
    if alias == "LabelMaskExport":
        params = {"minArea": 500.0} if variant == "sieved" else {}
        return initialized(alias, {"sourceProduct": class_map(scene, 0)}, file=tmp_path / "labels.gpkg", **params)
    if alias == "ChangeDetection":
        return initialized(alias, {"before": class_map(scene, 0), "after": class_map(scene, 1)},
                           matrixFile=tmp_path / "matrix.csv")
    if alias == "AttentionUNetInference":
        model = tiny_unet(tmp_path / "tiny.onnx", S2_BANDS)
        return initialized(alias, {"sourceProduct": s2s1}, modelFile=model, tileSize=16, outputConfidence=True)
    if alias == "RuleFusion":
        indices = initialized("SpectralIndices", {"sourceProduct": s2s1}, copySourceBands=True).target
        rules = initialized("ProgressiveClassifier", {"sourceProduct": indices}, maskBand="", outputMargin=True)
        return initialized(alias, {"rules": rules.target, "network": class_map(scene, 1)}, minMargin=0.5,
                           outputSource=True)
    raise AssertionError(f"no test scene for plugin operator {alias}: add one here")


def source_tiles(op: Operator, kernel: TileKernel, rect) -> dict[str, np.ndarray]:
    x, y, w, h = rect
    first = op.source_product()
    tiles = {}
    for key, name in kernel.inputs.items():
        sid = (kernel.sources or {}).get(key)
        band = (op.sources[sid] if sid else first).band(name)
        tiles[key] = np.asarray(band.data[y:y + h, x:x + w].compute())
    return tiles


def run_kernel(op: Operator, kernel: TileKernel, rect) -> dict[str, np.ndarray]:
    """The kernel on one target rectangle, as a tile host calls it."""
    if kernel.context is None:
        return kernel.func(source_tiles(op, kernel, rect))
    source = kernel.context(rect)
    return kernel.func(source_tiles(op, kernel, source), source, rect)


# --- tile kernels -------------------------------------------------------------------------------------


CASES = [(p.alias, "") for p in D.PLUGIN_OPERATORS] + [("LabelMaskExport", "sieved")]


@pytest.mark.parametrize("alias,variant", CASES, ids=lambda v: v or "plain")
def test_plugin_operators_declare_the_kernel_of_their_own_target(alias, variant, scene, tmp_path):
    """On any rectangle the kernel gives the target's pixels; its sink output is what the sink plan streams."""
    assert get_operator(alias).tile_kernel is not Operator.tile_kernel
    op = plugin_op(alias, scene, tmp_path, variant)
    kernel = op.tile_kernel()
    assert isinstance(kernel, TileKernel) and kernel.outputs and set(kernel.outputs) <= set(op.target.bands)
    assert all(op.target.band(n).dtype == dt for n, dt in kernel.outputs.items())
    plan = op.open() if op.is_sink else None
    try:
        for x, y, w, h in ((0, 0, W, H), (13, 7, 41, 29), (W - 10, H - 6, 10, 6)):
            out = run_kernel(op, kernel, (x, y, w, h))
            for name in kernel.outputs:
                np.testing.assert_array_equal(out[name], op.target.band(name).data[y:y + h, x:x + w].compute())
            if plan is not None and kernel.sink_output is not None:
                np.testing.assert_array_equal(out[kernel.sink_output], plan.arrays[0][y:y + h, x:x + w].compute())
    finally:
        if plan is not None:
            plan.abort()
    assert op.is_sink == (alias in ("ProgressiveClassifier", "LabelMaskExport", "ChangeDetection"))
    if variant == "sieved":
        assert kernel.sink_output is None  # the sieved band is not the class band: the host computes it


def test_operators_outside_snap_declare_no_kernel():
    write = get_operator("Write").create({"sourceProduct": product({"a": np.zeros((4, 4), np.float32)})},
                                         {"file": "x.tif", "formatName": "GeoTIFF"})
    assert write.tile_kernel() is None


# --- the sink protocol ----------------------------------------------------------------------------------


def test_sink_protocol_defaults_and_who_may_sink(tmp_path):
    ops = operators()
    assert ops["Write"].may_sink() and ops["LabelMaskExport"].may_sink()
    # Not sinks by spec, but they implement open(): they stream when configured to.
    assert ops["ProgressiveClassifier"].may_sink() and not ops["ProgressiveClassifier"].spec.sink
    assert ops["ChangeDetection"].may_sink() and not ops["ChangeDetection"].spec.sink
    assert not any(ops[a].may_sink() for a in ("BandMaths", "Read", "SpectralIndices", "CloudMask", "Resample"))
    op = initialized("SpectralIndices", {"sourceProduct": product({"B4": np.ones((8, 8), np.float32),
                                                                    "B8": np.ones((8, 8), np.float32)})},
                     indices="NDVI", checkInputs=False)
    assert not op.is_sink and op.prepare() is None and op.output_files() == [] and op.outputs == []
    with pytest.raises(NotImplementedError, match="SpectralIndices is not a sink"):
        op.open()
    with pytest.raises(NotImplementedError, match="SpectralIndices is not a sink"):
        op.execute()


def _probes(path: Path) -> list[str]:
    """``hasattr(x, "name")`` / ``getattr(x, "name", ...)`` calls naming a sink-protocol member."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in SINK_PROTOCOL):
            found.append(f"{path.name}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_sinks_are_recognised_one_way():
    """The engine, the adapter and Operator.execute ask the operator; none probes for methods."""
    assert [p for rel in SINK_DRIVERS for p in _probes(PACKAGE / rel)] == []


def test_adapter_holds_no_table_per_operator():
    for name in ("_KERNELS", "_SINKS", "CLASS_NAMES", "TileKernel", "_AreaTable", "_LabelMasks", "_ChangeTables"):
        assert not hasattr(adapter, name), name
    tree = ast.parse(Path(adapter.__file__).read_text())
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert strings.isdisjoint(operators()), "the adapter names an operator"


# --- a new operator: one class and one PLUGIN_OPERATORS line --------------------------------------------


def _scale(tiles: dict[str, np.ndarray], factor: float) -> dict[str, np.ndarray]:
    return {"scaled": (tiles["x"] * factor).astype(np.float32)}


class _Sum:
    """Block target adding up every chunk (from several threads)."""

    def __init__(self):
        self.value = 0.0
        self._lock = threading.Lock()

    def __setitem__(self, region, block) -> None:
        with self._lock:
            self.value += float(np.nansum(block, dtype=np.float64))


class ScaleOp(Operator):
    """Scales band ``x``; with ``sumFile`` also writes the sum of the scaled band."""

    spec = OperatorSpec(
        alias="ContractScale",
        description="Scales band x by a factor.",
        sources=(SourceSpec("sourceProduct", "Product with a band x."),),
        parameters=(Parameter("factor", "double", default=2.0), Parameter("sumFile", "File")),
    )

    def initialize(self) -> Product:
        source = self.source_product()
        band = source.band("x")
        self._kernel = TileKernel(func=functools.partial(_scale, factor=float(self.parameters["factor"])),
                                  inputs={"x": "x"}, outputs={"scaled": np.dtype(np.float32)}, sink_output="scaled")
        scaled = map_tiles(self._kernel.func, {"x": band.data}, self._kernel.outputs)["scaled"]
        return source.copy(name=f"{source.name}_scaled", bands=[Band("scaled", scaled, band.transform, float("nan"))])

    def tile_kernel(self) -> TileKernel:
        return self._kernel

    @property
    def is_sink(self) -> bool:
        return bool(self.parameters.get("sumFile"))

    def output_files(self) -> list[Path]:
        return [Path(self.parameters["sumFile"])]

    def open(self) -> SinkPlan:
        total, staged, path = _Sum(), StagedFiles(), Path(self.parameters["sumFile"])

        def publish() -> None:
            staged.publish()
            self.outputs = [str(path)]

        return SinkPlan([self.target.band("scaled").data], [total], lambda: stage_text(staged, path, f"{total.value}\n"),
                        staged.abort, publish=publish)


def test_a_new_operator_runs_in_snap_without_touching_the_adapter(monkeypatch, tmp_path, jpy_api):
    J = jpy_api
    operators()  # the built-in registry first, then the test's operator beside it for this test only
    monkeypatch.setitem(core_operator._OPERATORS, ScaleOp.spec.alias, ScaleOp)
    entry = D.PluginOperator("ContractScale", "snap_pc_contract_scale", "ContractScaleOp", "_scaled")
    monkeypatch.setattr(D, "PLUGIN_OPERATORS", D.PLUGIN_OPERATORS + (entry,))
    namespace: dict = {}
    exec(D.module_text(entry), namespace)  # the thin plugin module --write would generate
    assert namespace["ContractScaleOp"].alias == "ContractScale"

    x = np.random.default_rng(1).random((H, W)).astype(np.float32)
    x[:5, :7] = np.nan
    source = J.Product("scene", "TEST", W, H)
    band = source.addBand("x", J.ProductData.TYPE_FLOAT32)
    band.setNoDataValue(float("nan"))
    band.setNoDataValueUsed(True)
    J.set_raster(band, x)
    source.setSceneGeoCoding(J.crs_geocoding(EPSG, tuple(T)[:6], W, H))
    out = tmp_path / "sum.txt"
    context = J.Operator({"sourceProduct": source}, {"factor": 3.0, "sumFile": J.File(str(out))})
    target = J.run_operator(adapter.make_operator_class("ContractScale", api=J)(), context, tile_size=(17, 13))

    standalone = initialized("ContractScale", {"sourceProduct": product({"x": x})}, factor=3.0)
    want = standalone.target.band("scaled").data.compute()
    np.testing.assert_array_equal(J.raster(target.getBand("scaled")), want)
    assert float(out.read_text()) == pytest.approx(float(np.nansum(want, dtype=np.float64)))
