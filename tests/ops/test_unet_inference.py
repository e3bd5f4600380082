"""AttentionUNetInference: tiled ONNX Runtime inference in the engine, on a cluster, in graphs and in SNAP.

A small Attention U-Net is trained for a few epochs on a synthetic scene (its
truth as labels) and exported with its metadata, as ``snap-pc train`` does;
tiny hand-made ONNX graphs stand for broken models. Tiled inference is
compared with one pass of the network over the whole image.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from types import SimpleNamespace

import dask
import dask.array as da
import fiona
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from snap_operators.apps.synth import write_synthetic_scene
from snap_operators.core.errors import OperatorError, SnapPcError
from snap_operators.core.legend import LAND_COVER, NO_DATA
from snap_operators.core.operator import ExecutionContext, get_operator
from snap_operators.core.product import Band, Product
from snap_operators.engine.runner import load_graph, run_graph
from snap_operators.io import onnx_model
from snap_operators.io.onnx_model import ModelError, ModelMetadata, pretrained_model, read_metadata
from snap_operators.ops.unet_inference import block_chunks
from snap_operators.science import inference as I

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"
TESTS_DATA = Path(__file__).resolve().parents[1] / "data"
EPSG = "EPSG:32638"
T = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4030000.0)
S2 = ("B2", "B3", "B4", "B8", "B11", "B12")
S1 = ("Sigma0_VV_db", "Sigma0_VH_db")
INDICES = ("NDVI", "MNDWI", "NDBI", "BSI")
LEGEND = {"class_ids": tuple(c.value for c in LAND_COVER), "class_names": tuple(c.name for c in LAND_COVER),
          "class_colors": tuple(tuple(c.color) for c in LAND_COVER)}


# --- models ------------------------------------------------------------------------------------------


def _meta(bands, halo, mean=None, std=None, multiple=8) -> ModelMetadata:
    n = len(bands)
    return ModelMetadata("attention_unet_small", "1.0.0", tuple(bands), tuple(mean if mean is not None else [0.0] * n),
                         tuple(std if std is not None else [1.0] * n), size_multiple=multiple, halo=halo, opset=17,
                         **LEGEND)


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    """A small Attention U-Net trained 5 epochs on a 384 px synthetic scene, and an untrained S1+S2 one."""
    pytest.importorskip("tensorflow", reason="TensorFlow (the 'train' extra) is needed to build the test U-Net")
    keras = pytest.importorskip("keras", reason="Keras (the 'train' extra) is needed to build the test U-Net")
    pytest.importorskip("tf2onnx", reason="tf2onnx (the 'train' extra) is needed to export the test U-Net")
    from snap_pc_models.attention_unet import (
        build_attention_unet,
        receptive_field_radius,
    )
    from snap_pc_models.dataset import build_input_product
    from snap_pc_models.export import effective_halo, export_onnx

    out = tmp_path_factory.mktemp("unet")
    paths = write_synthetic_scene(out / "scene", 384, seed=7)
    product, order = build_input_product(paths["s2"], tile_size=384)  # the stack the graphs build
    x = np.stack([product.band(b).data.compute() for b in order], -1)
    with rasterio.open(paths["truth"]) as src:
        truth = src.read(1)
    mean, std = np.nanmean(x, axis=(0, 1)), np.nanstd(x, axis=(0, 1))
    xn = np.nan_to_num((x - mean) / std)
    P = 64
    corners = [(i, j) for i in range(0, 384 - P + 1, P // 2) for j in range(0, 384 - P + 1, P // 2)]
    xs = np.stack([xn[i:i + P, j:j + P] for i, j in corners]).astype("float32")
    ys = np.stack([truth[i:i + P, j:j + P] for i, j in corners]).astype("int32") - 1
    keras.utils.set_random_seed(0)
    model = build_attention_unet(len(order), 5, "small")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", jit_compile=False)
    model.fit(xs, ys, batch_size=16, epochs=5, verbose=0)
    halo = effective_halo(model, len(order), 8, receptive_field_radius(3))
    meta = _meta(order, halo, mean, std)
    export_onnx(model, meta, out / "s2.onnx", check_inputs=[xs[:2]])

    bands12 = S2 + S1 + INDICES
    untrained = build_attention_unet(len(bands12), 5, "small")
    export_onnx(untrained, _meta(bands12, 16), out / "s1s2.onnx")
    return SimpleNamespace(dir=out, paths=paths, s2=out / "s2.onnx", s1s2=out / "s1s2.onnx", meta=meta,
                           stack=np.moveaxis(x, -1, 0), truth=truth, order=order)


def _onnx_model(path: Path, props: dict | None, channels: int = 10, classes: int = 5, size=("height", "width"),
                weight: float | None = None):
    """A one-layer ONNX network (1x1 convolution + softmax) with the given metadata; random weights, or all
    `weight` (0: every class equally likely everywhere, so the first class wins: a one-class model)."""
    onnx = pytest.importorskip("onnx", reason="onnx (the 'train' extra) builds the test's broken models")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(classes, channels, 1, 1)).astype("float32")
    if weight is not None:
        w[:] = weight
    graph = helper.make_graph(
        [helper.make_node("Conv", ["bands", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("bands", TensorProto.FLOAT, ["batch", channels, *size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes, *size])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (props or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


# --- products ----------------------------------------------------------------------------------------


@pytest.fixture
def stack_product(make_product):
    """``stack_product(stack, names, chunk=256, name="scene")``: an in-memory product holding `stack`
    (bands, rows, cols) as lazy float32 bands, NaN no-data."""

    def build(stack: np.ndarray, names, chunk: int = 256, name: str = "scene") -> Product:
        return make_product(dict(zip(names, stack)), name=name, product_type="S2_MSI_Level-2A",
                             crs=CRS.from_string(EPSG), transform=T, chunks=chunk, dtype=np.float32)

    return build


def run_op(product: Product, model, tile_size: int = 256, **params):
    raw = {"modelFile": str(model)}
    raw.update({k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()})
    op = get_operator("AttentionUNetInference").create({"sourceProduct": product}, raw,
                                                       context=ExecutionContext(tile_size=tile_size))
    op.target = op.initialize()
    return op


def full_pass(op, stack: np.ndarray) -> np.ndarray:
    """Probabilities of one pass of the network over the whole image (mirrored to the size multiple)."""
    return op.tile_kernel().func.predictor.predict_tile(stack)


def compute(op, *names):
    """The target bands `names`, computed together (the network runs once per block)."""
    return list(dask.compute(*(op.target.band(n).data for n in names)))


def assert_several_classes(cls: np.ndarray, minimum: int = 3) -> None:
    """`cls` holds only legend classes (and no-data), at least `minimum` of them: a model predicting one class
    everywhere fails here, also where a test compares two runs of it (test_one_class_model_fails_the_class_check)."""
    found = set(np.unique(cls).tolist()) - {NO_DATA}
    assert found <= set(LEGEND["class_ids"]), f"classes outside the legend: {sorted(found - set(LEGEND['class_ids']))}"
    assert len(found) >= minimum, f"the map uses only class(es) {sorted(found)}, expected at least {minimum}"


# --- tiling -----------------------------------------------------------------------------------------


def test_mirror_is_jai_reflect_and_cosine_weights_sum_to_one():
    # JAI BorderExtenderReflect: the image as a tile of an infinite image of alternately flipped copies
    n = 5
    want = [(i % (2 * n)) if (i % (2 * n)) < n else 2 * n - 1 - (i % (2 * n)) for i in range(-17, 23)]
    assert I.mirror_index(-17, 23, n).tolist() == want
    assert I.mirror_index(-3, 0, 4).tolist() == [2, 1, 0]  # edge pixel repeated
    # cosine windows of every tile, placed on the scene, weigh each pixel 1 in total
    for n, tile, halo in ((1000, 128, 24), (130, 64, 32), (70, 64, 16)):
        total = np.zeros(n + 2 * halo)
        edges = I.tile_edges(n, tile)
        for a, b in itertools.pairwise(edges):
            total[a:b + 2 * halo] += I.cosine_weights(a, b, n, halo)
        np.testing.assert_allclose(total[halo:n + halo], 1.0, atol=1e-6)
        assert total[halo:n + halo].min() > 0.999
    assert block_chunks(1050, 512, 32) == (512, 538)  # a sliver thinner than the halo joins its neighbour
    assert block_chunks(1100, 512, 64) == (512, 512, 76)
    assert block_chunks(100, 512, 32) == (100,)


@pytest.mark.slow
@pytest.mark.parametrize("blend", ["center", "cosine"])
def test_tiled_equals_one_pass_without_seams(stack_product, unet, blend):
    stack, order = unet.stack, unet.order
    tile = 96
    op = run_op(stack_product(stack, order, chunk=192), unet.s2, tile_size=192, tileSize=tile, blend=blend,
                outputProbabilities=True, batchSize=3)
    assert op.tile_kernel().func.predictor.halo == unet.meta.halo > 0
    names = ["class_id"] + [f"probability_{c.value}" for c in LAND_COVER]
    cls, *probs = compute(op, *names)
    probs = np.stack(probs)
    full = I.class_ids(full_pass(op, stack), unet.meta.class_ids)
    agreement = (cls == full).mean()
    assert agreement >= 0.995, f"{blend}: tiled and one-pass classes agree on {agreement:.4%} of pixels"
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)  # blending keeps probabilities
    assert np.isin(cls, unet.meta.class_ids).all()
    assert_several_classes(cls, 5)  # the scene's five classes
    # Seams: label changes between the last row (column) of a tile and the first of the next, against
    # the changes between other rows (columns) at the same phase of the network's pooling grid (its
    # size multiple), where an undertrained U-Net has its own block artefacts, in one pass too.
    n, m = cls.shape[0], unet.meta.size_multiple
    borders = np.arange(tile, n, tile) - 1
    interior = np.setdiff1d(np.arange(tile - 1, n - 1, m), borders)

    def change_rate(c, lines):
        return np.concatenate([(c[:, 1:] != c[:, :-1]).mean(axis=0)[lines], (c[1:] != c[:-1]).mean(axis=1)[lines]]).mean()

    at_borders, elsewhere = change_rate(cls, borders), change_rate(cls, interior)
    assert elsewhere > 0.01  # the scene has class edges to compare with
    assert at_borders <= 1.25 * elsewhere, f"{blend}: {at_borders:.4f} changes per border pixel vs {elsewhere:.4f}"
    assert at_borders <= change_rate(full, borders) + 0.01  # as in one pass over the whole image


@pytest.mark.slow
def test_blocks_of_any_size_predict_the_same_tiles(stack_product, unet):
    """The tile grid is global: Dask blocks of 64 or 384 px give the same center-blend result."""
    stack, order = unet.stack, unet.order
    small = run_op(stack_product(stack, order, chunk=64), unet.s2, tile_size=64, tileSize=64, outputProbabilities=True)
    large = run_op(stack_product(stack, order, chunk=384), unet.s2, tile_size=512, tileSize=64, outputProbabilities=True)
    assert small.target.band("class_id").data.chunks != large.target.band("class_id").data.chunks
    for name in ("class_id", "probability_3"):
        np.testing.assert_array_equal(*(compute(op, name)[0] for op in (small, large)))
    assert_several_classes(compute(small, "class_id")[0], 5)


@pytest.mark.slow
def test_odd_size_scene_with_no_data(stack_product, unet):
    """777 x 513 px (no multiple of the tile), a no-data rectangle and scattered no-data pixels."""
    rng = np.random.default_rng(1)
    reps = (1, 2, 3)
    stack = np.tile(unet.stack, reps)[:, :513, :777].copy()
    clean = stack.copy()
    stack[:, 40:90, 300:420] = np.nan  # a gap in every band
    holes = rng.random(stack.shape[1:]) < 0.002
    stack[4][holes] = np.nan  # one band missing here and there
    order = unet.order
    tiled = run_op(stack_product(stack, order, chunk=256), unet.s2, tile_size=256, tileSize=128,
                   outputConfidence=True, outputProbabilities=True)
    cls, conf, p1 = compute(tiled, "class_id", "confidence", "probability_1")
    assert cls.shape == conf.shape == (513, 777)
    invalid = ~np.isfinite(stack).all(axis=0)
    assert ((cls == NO_DATA) == invalid).all()
    assert np.isnan(conf[invalid]).all() and np.isnan(p1[invalid]).all()
    assert np.isfinite(conf[~invalid]).all() and (conf[~invalid] >= 1 / 5 - 1e-6).all()
    # no-data does not spread: away from the gaps the result is the one of the clean scene
    ref = run_op(stack_product(clean, order, chunk=256), unet.s2, tile_size=256, tileSize=128)
    (ref_cls,) = compute(ref, "class_id")
    h = tiled.tile_kernel().func.predictor.halo
    near = np.zeros_like(invalid)
    near[max(0, 40 - 128 - h):90 + 128 + h, max(0, 300 - 128 - h):420 + 128 + h] = True
    far = ~near & ~invalid
    assert (cls[far] == ref_cls[far]).mean() > 0.999
    assert_several_classes(cls, 5)
    full = I.class_ids(full_pass(ref, clean), unet.meta.class_ids)
    assert (ref_cls == full).mean() >= 0.995


@pytest.mark.slow
def test_all_no_data_scene_never_runs_the_model(stack_product, unet, monkeypatch):
    stack = np.full((len(unet.order), 200, 150), np.nan, np.float32)
    op = run_op(stack_product(stack, unet.order, chunk=128), unet.s2, tile_size=128, tileSize=64, halo=16,
                blend="cosine", outputConfidence=True)

    def boom(self, x):
        raise AssertionError("the model ran on a no-data tile")

    windows = []
    real_window = I.mirror_window

    def counting_window(*args, **kwargs):
        windows.append(args[2])
        return real_window(*args, **kwargs)

    monkeypatch.setattr(I.TiledPredictor, "run", boom)
    monkeypatch.setattr(I, "mirror_window", counting_window)
    cls, conf = compute(op, "class_id", "confidence")
    assert (cls == NO_DATA).all() and np.isnan(conf).all()
    assert len(set(windows)) == 4 * 3  # every window of the 4 x 3 tiles looked at, none predicted


@pytest.mark.slow
def test_one_session_per_process_and_provider_logged(stack_product, unet, monkeypatch, caplog):
    opened = []
    real = I.open_session

    def counting(*args, **kwargs):
        opened.append(args[0])
        return real(*args, **kwargs)

    predicted = []
    real_predict = I.TiledPredictor._predict

    def counting_predict(self, xs):
        predicted.append(len(xs))
        return real_predict(self, xs)

    I.clear_sessions()
    monkeypatch.setattr(I, "open_session", counting)
    monkeypatch.setattr(I.TiledPredictor, "_predict", counting_predict)
    with caplog.at_level(logging.INFO, logger="snap_operators.science.inference"):
        op = run_op(stack_product(unet.stack, unet.order, chunk=128), unet.s2, tile_size=128, tileSize=64, device="cpu")
        compute(op, "class_id")
    assert sum(predicted) == 36  # 6 x 6 tiles ...
    assert len(opened) == 1  # ... one session
    assert "runs on CPUExecutionProvider" in caplog.text
    assert op.target.metadata.element("AttentionUNetInference").attributes["providers"] == "CPUExecutionProvider"


@pytest.mark.slow
def test_device_cuda_needs_the_cuda_provider(stack_product, unet):
    if "CUDAExecutionProvider" in I.available_providers():
        pytest.skip("ONNX Runtime here has the CUDA provider; the GPU path is measured by the benchmark")
    product = stack_product(unet.stack, unet.order)
    with pytest.raises(I.InferenceError, match="device 'cuda' needs ONNX Runtime's CUDAExecutionProvider") as exc:
        run_op(product, unet.s2, device="cuda")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("AttentionUNetInference")
    assert I.select_providers("auto") == ("CPUExecutionProvider",)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
def test_cuda_offered_but_not_starting_falls_back_or_fails(stack_product, unet, monkeypatch, caplog):
    """onnxruntime-gpu without a usable GPU: auto runs on the CPU and says so, cuda is an error."""
    if "CUDAExecutionProvider" in I.available_providers():
        pytest.skip("a CUDA provider is present here")
    monkeypatch.setattr(I, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    I.clear_sessions()
    product = stack_product(unet.stack[:, :64, :64], unet.order)
    with caplog.at_level(logging.INFO, logger="snap_operators.science.inference"):
        op = run_op(product, unet.s2, device="auto")
    assert op.tile_kernel().func.predictor.key.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert "could not start it" in caplog.text and "runs on CPUExecutionProvider" in caplog.text
    assert np.isin(compute(op, "class_id")[0], LEGEND["class_ids"]).all()
    with pytest.raises(I.InferenceError, match="device 'cuda': ONNX Runtime could not start CUDAExecutionProvider"):
        run_op(product, unet.s2, device="cuda")
    I.clear_sessions()


# --- refused input ------------------------------------------------------------------------------------


def test_broken_models_are_refused_in_one_line(stack_product, tmp_path):
    names = S2 + INDICES
    product = stack_product(np.zeros((len(names), 32, 32), np.float32), names)
    props = _meta(names, 8).to_props()
    cases = [
        (_onnx_model(tmp_path / "plain.onnx", None), ModelError, "not a snap-pc model, metadata missing snap_pc_schema"),
        (_onnx_model(tmp_path / "partial.onnx", {k: v for k, v in props.items() if k != "norm_std"}), ModelError,
         "metadata missing norm_std"),
        (_onnx_model(tmp_path / "rgb.onnx", props, channels=3), ModelError,
         "graph input has 3 channels but the metadata lists 10 bands"),
        (_onnx_model(tmp_path / "fixed.onnx", props, size=(64, 64)), I.InferenceError,
         r"input is fixed at 64 x 64 px but tileSize \+ 2 \* halo is 144; use e.g. tileSize 48 with halo 8"),
        (tmp_path / "absent.onnx", ModelError, "model file not found"),
    ]
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    cases.append((tmp_path / "junk.onnx", ModelError, "cannot load ONNX model"))
    for path, kind, message in cases:
        with pytest.raises(kind, match=message) as exc:
            run_op(product, path, tileSize=128)
        assert "\n" not in str(exc.value) and "AttentionUNetInference" in str(exc.value)
    # the fixed-size model works with the tile it asks for
    op = run_op(product, tmp_path / "fixed.onnx", tileSize=48)
    assert np.isin(compute(op, "class_id")[0], LEGEND["class_ids"]).all()
    with pytest.raises(I.InferenceError, match="cosine' needs tileSize >= 2 \\* halo"):
        run_op(product, _onnx_model(tmp_path / "ok.onnx", props), tileSize=16, halo=12, blend="cosine")


def test_missing_bands_are_listed(stack_product, tmp_path):
    names = S2 + INDICES
    model = _onnx_model(tmp_path / "m.onnx", _meta(names, 8).to_props())
    product = stack_product(np.zeros((7, 32, 32), np.float32), ("B2", "B03", "b4", "B8", "B12", "NDVI", "MNDWI"))
    with pytest.raises(OperatorError) as exc:
        run_op(product, model)
    msg = str(exc.value)
    assert "reads band(s) B11, NDBI, BSI that product 'scene' lacks" in msg
    assert "add NDBI, BSI to the SpectralIndices 'indices' parameter" in msg
    # the model's other source bands came through, so the image itself has no B11
    assert "the image has no B11: use a model trained on the bands it has" in msg and "copySourceBands" not in msg
    only_indices = stack_product(np.zeros((2, 32, 32), np.float32), ("NDVI", "MNDWI"))
    with pytest.raises(OperatorError, match="set copySourceBands to true in SpectralIndices"):
        run_op(only_indices, model)  # no source band came through: SpectralIndices did not copy them
    # zero-padded and lower-case Sentinel-2 names stand for the model's B3 and B4
    product.add_band(Band("B11", product.band("B2").data, T, float("nan")))
    for n in ("NDBI", "BSI"):
        product.add_band(Band(n, product.band("B2").data, T, float("nan")))
    op = run_op(product, model)
    assert op.target.band("class_id").shape == (32, 32)
    product.add_band(Band("B04", product.band("B2").data, T, float("nan")))
    with pytest.raises(OperatorError, match="several bands could be the model's B4: b4, B04"):
        run_op(product, model)


def test_one_class_model_fails_the_class_check(tmp_path, stack_product):
    """assert_several_classes catches a model that predicts one class everywhere; a varied one passes."""
    names = S2 + INDICES
    stack = np.random.default_rng(0).uniform(-1, 1, (len(names), 64, 64)).astype(np.float32)
    props = _meta(names, 8).to_props()
    constant = run_op(stack_product(stack, names), _onnx_model(tmp_path / "c.onnx", props, weight=0.0), tileSize=32)
    (cls,) = compute(constant, "class_id")
    assert np.unique(cls).tolist() == [LEGEND["class_ids"][0]]  # one class everywhere
    with pytest.raises(AssertionError, match="uses only class"):
        assert_several_classes(cls)
    varied = run_op(stack_product(stack, names), _onnx_model(tmp_path / "v.onnx", props), tileSize=32)
    assert_several_classes(compute(varied, "class_id")[0])


# --- test-time augmentation ----------------------------------------------------------------------------


def test_orientations_are_the_eight_symmetries_and_undo_exactly():
    x = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    seen = set()
    for turns, mirrored in I.AUGMENTATIONS["dihedral"]:
        y = I.orient(x, turns, mirrored)
        assert y.shape[-2:] == ((5, 3) if turns % 2 else (3, 5))
        seen.add(y.tobytes() + bytes(y.shape))
        np.testing.assert_array_equal(I.unorient(y, turns, mirrored), x)
    assert len(seen) == 8  # no two orientations alike
    assert set(I.AUGMENTATIONS["flips"]) < set(I.AUGMENTATIONS["dihedral"])
    assert all(t % 2 == 0 for t, _ in I.AUGMENTATIONS["flips"])  # shape-preserving: fixed-size models can run them


def test_augmented_averages_the_predictions_turned_back():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 8, 16)).astype(np.float32)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    calls = []

    def pointwise(b):  # a 1x1 convolution + softmax: equivariant, every orientation agrees
        calls.append(b.shape)
        z = np.einsum("kc,nchw->nkhw", w, b)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    plain = I.augmented(pointwise, x, "none")
    assert calls == [x.shape]
    np.testing.assert_array_equal(plain, pointwise(x))  # one call, bit for bit what it was before
    for name, n in (("flips", 4), ("dihedral", 8)):
        calls.clear()
        got = I.augmented(pointwise, x, name)
        assert len(calls) == n and got.dtype == np.float32 and got.shape == (2, 4, 8, 16)
        assert (calls.count((2, 3, 16, 8)) == 4) is (name == "dihedral")  # quarter turns swap rows and columns
        np.testing.assert_allclose(got, plain, atol=1e-6)

    def left_heavy(b):  # not equivariant: the class of the left half of what it is shown
        out = np.zeros((b.shape[0], 2) + b.shape[2:], np.float32)
        out[:, 0, :, : b.shape[-1] // 2] = 1.0
        out[:, 1, :, b.shape[-1] // 2:] = 1.0
        return out

    flips = I.augmented(left_heavy, x, "flips")
    # as is and half turn disagree with the two mirrors everywhere: half and half
    np.testing.assert_allclose(flips, 0.5)
    dihedral = I.augmented(left_heavy, x, "dihedral")
    np.testing.assert_allclose(dihedral.sum(axis=1), 1.0, atol=1e-6)
    manual = np.mean([I.unorient(left_heavy(np.ascontiguousarray(I.orient(x, t, m))), t, m)
                      for t, m in I.AUGMENTATIONS["dihedral"]], axis=0)
    np.testing.assert_allclose(dihedral, manual, atol=1e-6)


def test_test_time_augmentation_is_checked_when_the_model_is_loaded(stack_product, tmp_path):
    names = S2 + INDICES
    product = stack_product(np.zeros((len(names), 32, 32), np.float32), names)
    props = _meta(names, 8).to_props()
    with pytest.raises(OperatorError, match="'rotations' is not one of none, flips, dihedral"):
        run_op(product, _onnx_model(tmp_path / "ok.onnx", props), testTimeAugmentation="rotations")
    oblong = _onnx_model(tmp_path / "oblong.onnx", props, size=(64, "width"))
    with pytest.raises(I.InferenceError, match="'dihedral' turns each window a quarter turn, but the model's input "
                       "is fixed at 64 x any px \\(rows x cols\\); use 'flips'") as exc:
        run_op(product, oblong, tileSize=48, testTimeAugmentation="dihedral")
    assert "\n" not in str(exc.value) and "AttentionUNetInference" in str(exc.value)
    op = run_op(product, oblong, tileSize=48, testTimeAugmentation="flips")
    assert np.isin(compute(op, "class_id")[0], LEGEND["class_ids"]).all()


@pytest.mark.slow
def test_test_time_augmentation_through_the_network(stack_product, unet):
    """A trained U-Net read in eight orientations: the one-pass probabilities are the mean of the
    network's on the turned scene, turned back; tiled equals one pass; the map moves a little."""
    stack, order = unet.stack, unet.order  # 384 px: a multiple of the size multiple, no padding
    plain = run_op(stack_product(stack, order, chunk=192), unet.s2, tile_size=192, tileSize=96,
                   outputProbabilities=True)
    aug = run_op(stack_product(stack, order, chunk=192), unet.s2, tile_size=192, tileSize=96,
                 outputProbabilities=True, testTimeAugmentation="dihedral")
    one_pass = full_pass(aug, stack)
    manual = np.mean([I.unorient(full_pass(plain, np.ascontiguousarray(I.orient(stack, t, m))), t, m)
                      for t, m in I.AUGMENTATIONS["dihedral"]], axis=0)
    np.testing.assert_allclose(one_pass, manual, atol=1e-5)
    names = ["class_id"] + [f"probability_{c.value}" for c in LAND_COVER]
    cls, *probs = compute(aug, *names)
    np.testing.assert_allclose(np.sum(probs, axis=0), 1.0, atol=1e-4)
    assert (cls == I.class_ids(one_pass, unet.meta.class_ids)).mean() >= 0.995
    assert_several_classes(cls, 5)
    (cls_plain,) = compute(plain, "class_id")
    changed = (cls != cls_plain).mean()
    assert 0 < changed < 0.1, f"dihedral augmentation changed {changed:.2%} of the classes"
    assert (cls == unet.truth).mean() >= (cls_plain == unet.truth).mean() - 0.01
    assert aug.target.metadata.element("AttentionUNetInference").attributes["testTimeAugmentation"] == "dihedral"


# --- the shipped pretrained model ---------------------------------------------------------------------


def test_no_model_file_uses_the_shipped_model(stack_product, caplog):
    """modelFile absent or empty: the pretrained Sentinel-2 model in the package, said in one INFO line."""
    meta = read_metadata(pretrained_model())
    stack = np.random.default_rng(1).uniform(0.0, 0.4, (len(meta.input_bands), 48, 48)).astype(np.float32)
    product = stack_product(stack, meta.input_bands)
    absent = get_operator("AttentionUNetInference").create({"sourceProduct": product}, {"tileSize": "32"},
                                                           context=ExecutionContext(tile_size=64))
    absent.target = absent.initialize()
    with caplog.at_level(logging.INFO, logger="snap_operators.ops.unet_inference"):
        empty = run_op(product, "", tileSize=32)
    for op in (absent, empty):
        md = op.target.metadata.element("AttentionUNetInference").attributes
        assert md["modelFile"] == str(pretrained_model()) and md["modelFile"].endswith("attention_unet_s2.onnx")
        assert (md["modelName"], md["modelVersion"]) == (meta.model_name, meta.model_version)
        assert md["inputBands"] == ",".join(meta.input_bands)
        (cls,) = compute(op, "class_id")
        assert cls.shape == (48, 48) and np.isin(cls, (1, 2, 3, 4, 5)).all()
    said = [r.getMessage() for r in caplog.records if "shipped pretrained model" in r.getMessage()]
    assert said == [f"AttentionUNetInference: no modelFile given: using the shipped pretrained model "
                    f"{meta.model_name} {meta.model_version} ({pretrained_model()})"]
    assert all(r.levelno == logging.INFO for r in caplog.records if "shipped" in r.getMessage())
    # a model file given is used, and nothing is said about the shipped one
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="snap_operators.ops.unet_inference"):
        given = run_op(product, pretrained_model("int8"), tileSize=32)
    assert given.target.metadata.element("AttentionUNetInference").attributes["modelFile"] == \
        str(pretrained_model("int8"))
    assert not [r for r in caplog.records if "shipped" in r.getMessage()]


def test_missing_shipped_model_is_a_one_line_error_of_the_node(stack_product, tmp_path, monkeypatch):
    shipped = pretrained_model()
    meta = read_metadata(shipped)
    product = stack_product(np.zeros((len(meta.input_bands), 32, 32), np.float32), meta.input_bands)
    monkeypatch.setattr(onnx_model, "PRETRAINED_DIR", tmp_path / "gone")  # a broken install
    with pytest.raises(ModelError, match="AttentionUNetInference.*shipped pretrained model attention_unet_s2.onnx "
                       "is missing from .*gone") as exc:
        run_op(product, "")
    assert "\n" not in str(exc.value)
    # a model file given does not need the shipped one
    op = run_op(product, shipped, tileSize=32)
    assert op.target.band("class_id").shape == (32, 32)


# --- graphs, cluster, real data ------------------------------------------------------------------------


def _graph(name, unet, tmp_path, model, **extra):
    variables = {"input": str(unet.paths["s2"]), "model": str(model), "output": str(tmp_path / "unet.tif"),
                 "labels": str(tmp_path / "labels.gpkg")}
    variables.update({k: str(v) for k, v in extra.items()})
    return load_graph(GRAPHS / name, variables)


@pytest.mark.slow
def test_s2_graph_end_to_end(unet, tmp_path):
    result = run_graph(_graph("unet_inference.xml", unet, tmp_path, unet.s2, tileSize=128, blend="cosine"),
                       ExecutionContext(tile_size=256))
    assert str(tmp_path / "unet.tif") in result.outputs
    with rasterio.open(tmp_path / "unet.tif") as src:
        assert src.descriptions == ("class_id",) and src.dtypes == ("uint8",) and src.crs == CRS.from_string(EPSG)
        cls = src.read(1)
        colors = src.colormap(1)
    assert {c.value: tuple(c.color) for c in LAND_COVER} == {v: colors[v][:3] for v in range(1, 6)}
    assert (cls == unet.truth).mean() > 0.6  # five epochs of training already learnt the scene (measured 0.93)
    assert_several_classes(cls, 5)
    for k in (1, 2, 3, 4):  # each class but the last is mostly found (measured 0.98 .. 1.00; class 5: 0.02)
        assert (cls[unet.truth == k] == k).mean() > 0.5, k
    with fiona.open(tmp_path / "labels.gpkg") as layer:
        found = {f["properties"]["class_id"] for f in layer}
    assert found == set(np.unique(cls).tolist()) - {NO_DATA}
    # a model that needs Sentinel-1 bands cannot run on this graph's stack
    (tmp_path / "x").mkdir()
    with pytest.raises(OperatorError, match="reads band\\(s\\) Sigma0_VV_db, Sigma0_VH_db that product.*; "
                       "collocate the Sentinel-1 product onto the Sentinel-2 grid \\(graphs/unet_inference_s1s2.xml\\)$"):
        run_graph(_graph("unet_inference.xml", unet, tmp_path / "x", unet.s1s2), ExecutionContext())


@pytest.mark.slow
def test_s1s2_graph_end_to_end(unet, tmp_path):
    graph = _graph("unet_inference_s1s2.xml", unet, tmp_path, unet.s1s2, inputS1=unet.paths["s1"])
    run_graph(graph, ExecutionContext(tile_size=512))
    with rasterio.open(tmp_path / "unet.tif") as src:
        cls = src.read(1)
        assert src.shape == unet.truth.shape
    assert np.isin(cls, LEGEND["class_ids"]).all()
    assert (tmp_path / "labels.gpkg").is_file()
    # That untrained U-Net says class 5 nearly everywhere. A network whose classes follow its twelve input bands
    # (random 1 x 1 weights) shows the graph feeds it a real S1+S2 stack: several classes come out.
    varied = _onnx_model(tmp_path / "varied.onnx", _meta(S2 + S1 + INDICES, 16).to_props(), channels=12)
    (tmp_path / "varied").mkdir()
    run_graph(_graph("unet_inference_s1s2.xml", unet, tmp_path / "varied", varied, inputS1=unet.paths["s1"]),
              ExecutionContext(tile_size=512))
    with rasterio.open(tmp_path / "varied" / "unet.tif") as src:
        assert_several_classes(src.read(1))


def _default_unet_graph(image, tmp_path):
    """graphs/unet_inference.xml with its defaults (the shipped model) on `image`: (graph, result);
    writes unet.tif and labels.gpkg in `tmp_path`."""
    if not image.is_file():
        pytest.skip(f"{image} not found")
    graph = load_graph(GRAPHS / "unet_inference.xml", {"input": str(image), "output": str(tmp_path / "unet.tif"),
                                                        "labels": str(tmp_path / "labels.gpkg")})
    return graph, run_graph(graph, ExecutionContext())


@pytest.mark.real_data
def test_s2_graph_without_model_runs_the_shipped_model_on_a_real_scene(tmp_path):
    """graphs/unet_inference.xml without -Pmodel (model= in its properties) on the Aberystwyth scene (tests/data)."""
    scene = TESTS_DATA / "aberystwyth"
    graph, result = _default_unet_graph(scene / "s2_20210527_sref.tif", tmp_path)
    assert graph.nodes["AttentionUNetInference"].parameters["modelFile"] == ""  # ${model} is empty, not unset
    md = result.products["AttentionUNetInference"].metadata.element("AttentionUNetInference").attributes
    assert md["modelFile"] == str(pretrained_model())
    with rasterio.open(tmp_path / "unet.tif") as src, rasterio.open(scene / "labels.tif") as ref:
        assert src.descriptions == ("class_id",) and src.shape == ref.shape == (390, 320)
        cls, truth = src.read(1), ref.read(1)
    found = set(np.unique(cls).tolist())
    assert found <= {1, 2, 3, 4, 5} and len(found) >= 3, found
    # the reference polygons (1 water, 2 forest, 3 grass, 4 urban) in the model's legend
    # (the shipped model of 2026-12-05, seed 1: water 1.00, vegetation 1.00, urban 0.95; Aberystwyth is in
    # its training)
    assert (cls[truth == 1] == 1).mean() > 0.9  # Water
    assert (cls[(truth == 2) | (truth == 3)] == 3).mean() > 0.8  # Trees/Shrubbery vegetation
    assert (cls[truth == 4] == 4).mean() > 0.5  # Urban Area
    with fiona.open(tmp_path / "labels.gpkg") as layer:
        assert {f["properties"]["class_id"] for f in layer} <= found


@pytest.mark.slow
@pytest.mark.distributed
def test_local_cluster_equals_local_run(unet, tmp_path):
    distributed = pytest.importorskip("distributed")
    local, remote = tmp_path / "local", tmp_path / "cluster"
    local.mkdir()
    remote.mkdir()
    run_graph(_graph("unet_inference.xml", unet, local, unet.s2, tileSize=128), ExecutionContext(tile_size=192))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        run_graph(_graph("unet_inference.xml", unet, remote, unet.s2, tileSize=128),
                  ExecutionContext(tile_size=192, client=client))
        pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2
    with rasterio.open(local / "unet.tif") as a, rasterio.open(remote / "unet.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert_several_classes(b.read(1), 5)


@pytest.mark.slow
def test_real_sentinel2_odd_size(unet, shared_data):
    """A real Sentinel-2 L1C subset (101 x 100 px, bands named B02...): smaller than one tile, names resolved."""
    path = shared_data("eolearn_slovenia", "S2L1C_2015-07-11.tif")
    read = get_operator("Read").create({}, {"file": str(path)})
    indices = get_operator("SpectralIndices").create({"sourceProduct": read.initialize()},
                                                     {"indices": ",".join(INDICES), "copySourceBands": "true"})
    op = run_op(indices.initialize(), unet.s2, outputConfidence=True)
    cls, conf = compute(op, "class_id", "confidence")
    assert cls.shape == (101, 100)
    assert np.isin(cls, LEGEND["class_ids"]).all() and np.isfinite(conf).all()
    assert (cls == 3).mean() > 0.8  # a forested valley: Trees (measured 0.998)
    full = I.class_ids(full_pass(op, np.stack([op.source_product().band(b).data.compute() for b in
                                                ("B02", "B03", "B04", "B08", "B11", "B12", *INDICES)])),
                       unet.meta.class_ids)
    assert (cls == full).mean() >= 0.99


@pytest.mark.slow
def test_errors_are_snap_pc_errors(unet, tmp_path):
    with pytest.raises(SnapPcError, match="parameter 'blend': 'gaussian' is not one of center, cosine"):
        run_graph(_graph("unet_inference.xml", unet, tmp_path, unet.s2, blend="gaussian"), ExecutionContext())


# --- SNAP -----------------------------------------------------------------------------------------------


def _java_source(J, stack: np.ndarray, names) -> object:
    """The SpectralIndices output as SNAP hands it over: float bands, NaN no-data, CRS geocoding."""
    return J.float_product("S2_indices", dict(zip(names, stack)), EPSG, tuple(T)[:6])


@pytest.fixture(scope="module")
def snap_scene(unet):
    """257 x 300 px of the scene with a no-data wedge reaching the border, like a swath edge."""
    stack = unet.stack[:, :257, :300].copy()
    rows, cols = np.mgrid[0:257, 0:300]
    stack[:, cols < (rows - 150) * 2] = np.nan
    return stack


@pytest.mark.slow
@pytest.mark.parametrize("blend", ["center", "cosine"])
def test_snap_adapter_equals_the_engine(unet, snap_scene, jpy_api, stack_product, blend):
    from snap_operators.snap.adapter import make_operator_class

    J = jpy_api

    op_class = make_operator_class("AttentionUNetInference", api=J)
    spec = get_operator("AttentionUNetInference").spec
    augmentation = "flips" if blend == "cosine" else "none"  # the mirrors read the same in both runtimes too
    params = {"modelFile": J.File(str(unet.s2)), "device": "cpu", "tileSize": 96, "blend": blend, "batchSize": 2,
              "threads": 0, "outputProbabilities": True, "outputConfidence": True,
              "testTimeAugmentation": augmentation}
    names = ["class_id", *(f"probability_{c.value}" for c in LAND_COVER), "confidence"]
    # Sentinel-2 bands as some readers name them: B02 for the model's B2
    source_names = [f"B{int(b[1:]):02d}" if b in S2 else b for b in unet.order]
    engine = run_op(stack_product(snap_scene, source_names, chunk=128), unet.s2, tile_size=128, tileSize=96,
                    blend=blend, outputProbabilities=True, outputConfidence=True, testTimeAugmentation=augmentation)
    want = dict(zip(names, compute(engine, *names)))
    assert (want["class_id"] == NO_DATA).any() and (want["class_id"] != NO_DATA).mean() > 0.8
    assert_several_classes(want["class_id"], 5)
    runs = {"preferred": {}, "oblong": {"tile_size": (100, 37)},
            "partition": {"rects": J.random_partition(300, 257, seed=3, min_size=48)}}
    for label, grid in runs.items():
        context = J.Operator.from_descriptor(spec.alias, {"sourceProduct": _java_source(J, snap_scene, source_names)}, params)
        target = J.run_operator(op_class(), context, **grid)
        assert list(target.getBandNames()) == names
        for name in names:
            got = J.raster(target.getBand(name))
            if blend == "center":  # the same tiles, predicted from the same windows: bit for bit
                np.testing.assert_array_equal(got.view(f"u{got.dtype.itemsize}"),
                                              want[name].view(f"u{got.dtype.itemsize}"), err_msg=f"{label} {name}")
            elif name == "class_id":  # summed in another order: last-bit differences may flip a tie
                assert (got == want[name]).mean() > 0.9999, label
            else:
                np.testing.assert_allclose(got, want[name], atol=1e-5, err_msg=f"{label} {name}")
        pref = target.getPreferredTileSize()
        assert pref.width == pref.height and pref.width % 96 == 0  # whole tiles per SNAP tile
    band = target.getBand("class_id")
    assert list(band.getIndexCoding().getIndexNames()) == [c.name for c in LAND_COVER]
    element = target.getMetadataRoot().getElement("AttentionUNetInference")
    assert element.getAttributeString("blend") == blend and element.getAttributeInt("halo") == unet.meta.halo
    assert element.getAttributeString("testTimeAugmentation") == augmentation


@pytest.mark.slow
def test_cloud_mask_band_makes_masked_pixels_not_observed_in_both_runtimes(unet, snap_scene, jpy_api, stack_product,
                                                                          caplog):
    from snap_operators.core.legend import MASKED
    from snap_operators.snap.adapter import make_operator_class

    source_names = list(unet.order)
    rows, cols = np.mgrid[0:257, 0:300]
    mask = np.where((rows // 40 + cols // 50) % 3 == 0, 1, 0).astype(np.uint8)  # cloud patches
    mask[200:, :20] = 255  # the mask's own no-data: not a cloud
    with_mask = stack_product(snap_scene, source_names, chunk=128)
    with_mask.add_band(Band("cloud_mask", da.from_array(mask, chunks=128), T, 255))
    masked = compute(run_op(with_mask, unet.s2, tile_size=128, tileSize=96), "class_id")[0]
    plain = compute(run_op(stack_product(snap_scene, source_names, chunk=128), unet.s2, tile_size=128, tileSize=96),
                    "class_id")[0]
    assert_several_classes(plain, 5)
    flagged = (mask == 1) & (plain != NO_DATA)
    assert flagged.any() and (masked[flagged] == MASKED).all()
    np.testing.assert_array_equal(masked[~flagged], plain[~flagged])  # elsewhere the network's class
    op = run_op(with_mask, unet.s2, tile_size=128, tileSize=96)
    assert MASKED in [c.value for c in op.target.band("class_id").classes]
    # Probabilities with a mask: one band per class of the network, none for the masked class.
    probs = run_op(with_mask, unet.s2, tile_size=128, tileSize=96, outputProbabilities=True)
    names = [n for n in probs.target.bands if n.startswith("probability_")]
    assert names == [f"probability_{i}" for i in unet.meta.class_ids]
    p, cls = compute(probs, names[0], "class_id")
    np.testing.assert_array_equal(cls, masked)
    assert np.isfinite(p[flagged]).all()  # the network's probability stays where the class is masked
    # No mask band: a warning, the network's classes everywhere; maskBand empty: no mask and no
    # warning, even where the product has the band.
    with caplog.at_level("WARNING"):
        run_op(stack_product(snap_scene, source_names, chunk=128), unet.s2, tileSize=96)
    assert "no mask band 'cloud_mask'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        run_op(stack_product(snap_scene, source_names, chunk=128), unet.s2, tileSize=96, maskBand="")
        unmasked = compute(run_op(with_mask, unet.s2, tile_size=128, tileSize=96, maskBand=""), "class_id")[0]
    assert "mask band" not in caplog.text
    np.testing.assert_array_equal(unmasked, plain)
    # SNAP calls the same tile function with the mask among its inputs: bit for bit the engine's map.
    J = jpy_api
    op_class = make_operator_class("AttentionUNetInference", api=J)
    spec = get_operator("AttentionUNetInference").spec
    java = _java_source(J, snap_scene, source_names)
    band = java.addBand("cloud_mask", J.ProductData.TYPE_UINT8)
    band.setNoDataValue(255.0)
    band.setNoDataValueUsed(True)
    J.set_raster(band, mask)
    params = {"modelFile": J.File(str(unet.s2)), "device": "cpu", "tileSize": 96, "blend": "center", "batchSize": 1,
              "threads": 0, "outputProbabilities": False, "outputConfidence": False}
    context = J.Operator.from_descriptor(spec.alias, {"sourceProduct": java}, params)
    target = J.run_operator(op_class(), context, rects=J.random_partition(300, 257, seed=5, min_size=48))
    np.testing.assert_array_equal(J.raster(target.getBand("class_id")), masked)


@pytest.mark.real_data
def test_s2_graph_runs_the_shipped_model_on_a_geographic_l2a_scene(tmp_path):
    """The Trombetas scene (tests/data): L2A with the baseline-04.00 offset as the GeoTIFF's band
    offset, on a WGS84 lon/lat grid. The graph reads reflectance and the map stays on that grid."""
    scene = TESTS_DATA / "trombetas"
    _default_unet_graph(scene / "s2_l2a_sen2.tif", tmp_path)
    with rasterio.open(tmp_path / "unet.tif") as src, rasterio.open(scene / "labels.tif") as ref:
        assert src.crs == ref.crs and src.crs.is_geographic and src.transform == ref.transform
        cls, truth = src.read(1), ref.read(1)
    # polygons: 1 dried-out sediment, 2 forest, 3 village, 4 water. The shipped model (seed 1 on the
    # masks of the 0.15 water ceiling; Trombetas in its training): water 1.00, forest 1.00, village 0.972
    assert (cls[truth == 4] == 1).mean() > 0.9  # Water
    assert (cls[truth == 2] == 3).mean() > 0.9  # Trees/Shrubbery vegetation
    assert (cls[truth == 3] == 4).mean() > 0.8  # Urban Area
