"""Attention U-Net: model, training on a synthetic scene, ONNX export with metadata, and the model loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="TensorFlow (the 'train' extra) is not installed")
keras = pytest.importorskip("keras", reason="Keras (the 'train' extra) is not installed")
onnx = pytest.importorskip("onnx", reason="onnx (the 'train' extra) is not installed")
pytest.importorskip("tf2onnx", reason="tf2onnx (the 'train' extra) is not installed")

from snap_pc_models import export as export_mod  # noqa: E402
from snap_pc_models.attention_unet import (  # noqa: E402
    build_attention_unet,
    get_config,
    load_keras_model,
    receptive_field_radius,
)
from snap_pc_models.dataset import build_dataset  # noqa: E402
from snap_pc_models.export import ExportError, export_onnx  # noqa: E402
from snap_pc_models.train import (  # noqa: E402
    TrainError,
    class_weights,
    failure_text,
    train,
    under_majority,
    vanished_classes,
)

from snap_operators.apps.cli import main  # noqa: E402
from snap_operators.apps.synth import write_synthetic_scene  # noqa: E402
from snap_operators.core.errors import SnapPcError  # noqa: E402
from snap_operators.core.legend import LAND_COVER  # noqa: E402
from snap_operators.core.context import ExecutionContext
from snap_operators.engine.runner import load_graph, run_graph  # noqa: E402
from snap_operators.io.onnx_model import (  # noqa: E402
    REQUIRED_KEYS,
    ModelError,
    ModelMetadata,
    open_session,
)

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Synthetic 1024² scene -> Progressive Classifier label masks -> 64 px patches."""
    out = tmp_path_factory.mktemp("unet-train")
    paths = write_synthetic_scene(out / "scene", 1024, 1)
    run_graph(load_graph(GRAPHS / "progressive_classifier_s2.xml",
                         {"input": str(paths["s2"]), "output": str(out / "classes.tif"), "labels": str(out / "labels.gpkg")}),
              ExecutionContext(overwrite=True))
    build_dataset(paths["s2"], out / "labels.gpkg", out / "ds", patch_size=64, block_size=256, seed=0)
    return out


@pytest.fixture(scope="module")
def trained(dataset):
    return train(dataset / "ds", dataset / "model.onnx", config="small", epochs=12, seed=0, verbose=False)


def test_architecture_has_gates_upconvs_and_named_configs():
    for name, depth in (("small", 3), ("default", 4)):
        cfg = get_config(name)
        assert cfg.depth == depth and cfg.patch_size % cfg.size_multiple == 0
        model = build_attention_unet(7, 5, name)
        layers = {type(layer).__name__: 0 for layer in model.layers}
        for layer in model.layers:
            layers[type(layer).__name__] += 1
        ups = [layer for layer in model.layers if type(layer).__name__ == "Conv2DTranspose" and layer.trainable]
        assert len(ups) == depth and all(u.kernel_size == (2, 2) and u.strides == (2, 2) for u in ups)
        assert layers["MaxPooling2D"] == depth
        assert sum(1 for layer in model.layers if layer.name.endswith("_psi")) == depth  # a gate per skip
        assert layers["BatchNormalization"] == 2 * (2 * depth + 1)
        y = model(np.zeros((1, 2 * cfg.size_multiple, 3 * cfg.size_multiple, 7), "float32"), training=False)
        assert tuple(y.shape) == (1, 2 * cfg.size_multiple, 3 * cfg.size_multiple, 5)
        np.testing.assert_allclose(np.asarray(y).sum(axis=-1), 1.0, rtol=1e-5)  # softmax
    assert build_attention_unet(7, 5, "small", depth=2, base_filters=4).count_params() < \
        build_attention_unet(7, 5, "small").count_params()
    with pytest.raises(ValueError, match="not a multiple"):
        get_config("small", patch_size=60)
    assert receptive_field_radius(4) > receptive_field_radius(3) > 0


def test_class_weights_favour_rare_classes():
    w = class_weights({"1": 1000, "2": 100000, "3": 10000}, [1, 2, 3, 4])
    assert w[0] > w[2] > w[1]
    counts = np.array([1000, 100000, 10000])
    assert np.isclose((w[:3] * counts).sum() / counts.sum(), 1.0, rtol=0.2)
    with pytest.raises(TrainError, match="no labelled pixel"):
        class_weights({}, [1, 2])


@pytest.mark.slow
def test_small_model_beats_the_majority_baseline(trained, capsys):
    m = trained["metrics"]
    for split in ("val", "test"):
        s, base = m[split], m[split]["baseline_majority"]
        assert s["overall_accuracy"] > base["overall_accuracy"] + 0.25
        assert s["mean_iou"] > 3 * base["mean_iou"]
        assert s["kappa"] > 0.6
        assert {"iou", "f1"} <= set(s["per_class"][0])
    # every class of the training labels is predicted somewhere: none vanished
    assert m["status"] == "ok" and m["vanished_classes"] == []
    # one dataset from scratch: label smoothing by default (docs/unet.md "Label smoothing")
    assert m["levers"]["loss"] == "smooth"
    assert all(m["predicted_pixels"][str(c)] > 0 for c in m["class_weights"])
    with capsys.disabled():
        print(f"\n  small U-Net on the synthetic scene: test mean IoU {m['test']['mean_iou']:.3f} "
              f"(majority class {m['test']['baseline_majority']['mean_iou']:.3f}), "
              f"OA {m['test']['overall_accuracy']:.3f}")


@pytest.mark.slow
def test_outputs_beside_the_model(trained, dataset):
    files = trained["files"]
    for key in ("best.keras", "history.csv", "curves.png", "metrics.json", "confusion_val.png",
                "confusion_test.png", "card.md"):
        assert files[key].is_file() and files[key].stat().st_size > 0, key
    metrics = json.loads(files["metrics.json"].read_text())
    assert metrics["best_epoch"] == int(np.argmin(trained["history"]["val_loss"])) + 1
    card = files["card.md"].read_text()
    for section in ("## Data", "## Bands", "## Training", "## Metrics", "## Intended use", "## Limits"):
        assert section in card
    assert "NDVI" in card and f"{metrics['test']['mean_iou']:.3f}" in card
    # the best checkpoint reloads and predicts as the exported model
    best = load_keras_model(files["best.keras"])
    assert best.count_params() > 0
    assert not list(dataset.glob(".*part*"))  # no temporary left behind


@pytest.mark.slow
def test_onnx_metadata_complete_and_parity(trained, dataset):
    session, meta = open_session(trained["onnx"])
    info = json.loads((dataset / "ds" / "dataset.json").read_text())
    assert list(meta.input_bands) == info["bands"]
    np.testing.assert_allclose(meta.norm_mean, info["norm_mean"], rtol=1e-6)
    np.testing.assert_allclose(meta.norm_std, info["norm_std"], rtol=1e-6)
    assert meta.class_ids == tuple(c.value for c in LAND_COVER)
    assert meta.class_names == tuple(c.name for c in LAND_COVER)
    assert meta.class_colors == tuple(tuple(c.color) for c in LAND_COVER)
    assert meta.size_multiple == 8 and 8 <= meta.halo <= receptive_field_radius(3) + 8 and meta.opset == 17
    props = {p.key: p.value for p in onnx.load(str(trained["onnx"])).metadata_props}
    assert set(REQUIRED_KEYS) <= set(props)
    assert props["model_name"] == "attention_unet_small" and props["model_version"]
    # dynamic height/width, NCHW: a real test patch of another size through ORT equals Keras
    best = load_keras_model(trained["files"]["best.keras"])
    x = np.load(dataset / "ds" / info["splits"]["test"]["shards"][0]["x"])[:2, :40, :56]
    x = ((x - np.float32(meta.norm_mean)) / np.float32(meta.norm_std)).astype("float32")
    got = session.run(None, {"bands": x.transpose(0, 3, 1, 2)})[0]
    assert got.shape == (2, 5, 40, 56)
    assert np.abs(got.transpose(0, 2, 3, 1) - np.asarray(best(x, training=False))).max() < 1e-4
    assert trained["metrics"]["onnx"]["max_abs_diff_vs_tensorflow"] < 1e-4


@pytest.mark.slow
def test_training_is_reproducible(dataset, tmp_path):
    runs = [train(dataset / "ds", tmp_path / f"m{i}.onnx", config="small", epochs=2, seed=7, verbose=False,
                  base_filters=4) for i in range(2)]
    assert runs[0]["history"]["loss"] == runs[1]["history"]["loss"]
    x = np.random.default_rng(0).normal(size=(1, 10, 32, 48)).astype("float32")
    a, b = (open_session(r["onnx"])[0].run(None, {"bands": x})[0] for r in runs)
    np.testing.assert_array_equal(a, b)
    assert runs[0]["metrics"]["test"]["overall_accuracy"] == runs[1]["metrics"]["test"]["overall_accuracy"]


def _meta(n_bands=3, **changes):
    base = dict(model_name="t", model_version="1", input_bands=tuple(f"B{i + 1}" for i in range(n_bands)),
                norm_mean=(0.0,) * n_bands, norm_std=(1.0,) * n_bands, class_ids=(1, 2, 3, 4, 5),
                class_names=tuple(c.name for c in LAND_COVER), class_colors=tuple(c.color for c in LAND_COVER),
                size_multiple=4, halo=8, opset=17)
    base.update(changes)
    return ModelMetadata(**base)


def test_export_refuses_a_model_onnx_does_not_reproduce(tmp_path, monkeypatch):
    model = build_attention_unet(3, 5, "small", depth=2, base_filters=4)
    monkeypatch.setattr(export_mod, "TOLERANCE", 0.0)
    with pytest.raises(ExportError, match="disagree"):
        export_onnx(model, _meta(), tmp_path / "m.onnx", tolerance=0.0)
    assert not list(tmp_path.iterdir())  # nothing written, not even the temporary


def test_loader_refuses_missing_or_wrong_metadata(tmp_path):
    model = build_attention_unet(3, 5, "small", depth=2, base_filters=4)
    export_onnx(model, _meta(), tmp_path / "ok.onnx")
    assert open_session(tmp_path / "ok.onnx")[1].input_bands == ("B1", "B2", "B3")

    def rewrite(name, edit):
        proto = onnx.load(str(tmp_path / "ok.onnx"))
        props = {p.key: p.value for p in proto.metadata_props}
        edit(props)
        del proto.metadata_props[:]
        for k, v in props.items():
            e = proto.metadata_props.add()
            e.key, e.value = k, v
        onnx.save(proto, str(tmp_path / name))
        return tmp_path / name

    cases = {
        "missing metadata": (lambda p: p.clear(), "metadata missing"),
        "no halo": (lambda p: p.pop("halo"), "missing halo"),
        "zero std": (lambda p: p.update(norm_std="[1, 0, 1]"), "std > 0"),
        "band count vs graph": (lambda p: p.update(input_bands='["B1", "B2"]', norm_mean="[0, 0]", norm_std="[1, 1]"),
                                "3 channels but the metadata lists 2 bands"),
        "class count vs graph": (lambda p: p.update(class_ids="[1, 2]", class_names='["a", "b"]',
                                                    class_colors="[[0,0,0],[1,1,1]]"), "5 channels but"),
        "bad JSON": (lambda p: p.update(input_bands="B1,B2,B3"), "not valid JSON"),
        "reserved id": (lambda p: p.update(class_ids="[1, 2, 3, 4, 255]"), "reserved"),
        "layout": (lambda p: p.update(layout="NHWC"), "layout"),
    }
    for name, (edit, message) in cases.items():
        path = rewrite(name.replace(" ", "_") + ".onnx", edit)
        with pytest.raises(ModelError, match=message):
            open_session(path)
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07not an onnx file")
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        open_session(tmp_path / "corrupt.onnx")
    with pytest.raises(ModelError, match="not found"):
        open_session(tmp_path / "absent.onnx")


@pytest.mark.slow
def test_cli_train_from_image_and_labels(dataset, tmp_path, capsys):
    code = main(["train", "--image", str(dataset / "scene" / "s2.tif"), "--labels", str(dataset / "labels.gpkg"),
                 "--out", str(tmp_path / "cli.onnx"), "--epochs", "1", "--indices", "NDVI", "--bands", "B4,B8",
                 "--patch-size", "40", "--block-size", "160"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "baseline" not in out and "majority class" in out and "wrote" in out
    assert open_session(tmp_path / "cli.onnx")[1].input_bands == ("B4", "B8", "NDVI")
    assert (tmp_path / "cli.dataset" / "dataset.json").is_file()
    # bad input: one line, exit 1, no model
    code = main(["train", str(tmp_path / "cli.dataset"), "--out", str(tmp_path / "x.onnx"), "--config", "default"])
    err = capsys.readouterr().err
    assert code == 1 and "not a multiple of 16" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()
    code = main(["train", "--out", str(tmp_path / "y.onnx")])
    assert code == 1 and "dataset folder or --image" in capsys.readouterr().err


def test_a_network_under_the_majority_class_on_both_held_out_splits_is_warned_of():
    def metrics(*splits):
        base = {"class_id": 3, "overall_accuracy": 0.985, "mean_iou": 0.493}
        return {s: {"overall_accuracy": a, "mean_iou": u, "baseline_majority": base}
                for s, (a, u) in zip(("val", "test"), splits)}

    text = under_majority(metrics((0.790, 0.441), (0.890, 0.482)))  # a 120 px BigEarthNet patch after 2 epochs
    assert text.startswith("the network scores under the majority-class baseline (class 3 everywhere) on both")
    assert "val OA 0.790 against 0.985, mean IoU 0.441 against 0.493; test OA 0.890" in text and "--epochs" in text
    assert under_majority(metrics((0.990, 0.441), (0.890, 0.482))) is None  # one split above it: no verdict
    # under the majority's OA but finding the rare classes (class-balanced training): no warning
    assert under_majority(metrics((0.970, 0.700), (0.960, 0.650))) is None


def test_labels_of_one_class_are_warned_of_before_the_epochs(caplog):
    """Slovenia's clear 2015-07-11 through the S2 graph: its label masks hold Trees alone (the built-up
    pixels are under the 500 m2 mapping unit), and the network learns to call every pixel a tree."""
    from snap_pc_models.train import warn_one_class

    assert warn_one_class({"3": 11730, "4": 0})
    assert "hold one class only (3 Trees/Shrubbery vegetation, 11730 px): the network will map every pixel" \
        in caplog.text and "--init" not in caplog.text
    caplog.clear()
    assert warn_one_class({"3": 11730}, init="pretrained.onnx") and "forgets the others" in caplog.text
    caplog.clear()
    assert not warn_one_class({"3": 11730, "4": 12}) and not warn_one_class({}) and not caplog.text


def test_cli_train_refuses_bad_options_before_it_builds_a_dataset(tmp_path, capsys):
    """Every option is checked before the dataset (minutes on a large scene) is built: one line,
    exit 1, nothing written. A mapping onto a class the network does not have once scored OA 0."""
    import re

    scene = GRAPHS.parent / "tests" / "data" / "aberystwyth"
    labels = scene / "labels.tif"
    base = ["train", "--image", str(scene / "s2_20210527_sref.tif"), "--labels", str(labels),
            "--out", str(tmp_path / "m.onnx")]
    for extra, message in ((["--reference", str(tmp_path / "absent.tif")], r"reference \S*absent.tif does not exist"),
                           (["--reference", str(labels), "--mapping", "1:1,2:9"],
                            r"to class\(es\) 9, which the network does not have \(its classes: 1 Water, "),
                           # the same option by the name --reference-field suggests
                           (["--reference", str(labels), "--reference-mapping", "1:1,2:9"],
                            r"to class\(es\) 9, which the network does not have \(its classes: 1 Water, "),
                           # a group of classes (a water / not-water reference) is checked member by member
                           (["--reference", str(labels), "--mapping", "1:1,2:0+2+3+9"],
                            r"to class\(es\) 9, which the network does not have"),
                           (["--reference", str(labels), "--mapping", "1:1,2:1+3"],
                            r"--mapping: class 1 is in 1 and in 1\+3; a map's class can be one reference class only"),
                           (["--reference", str(labels), "--rules-map", str(tmp_path / "absent.tif")],
                            r"rules map \S*absent.tif does not exist"),
                           (["--epochs", "0"], "epochs must be >= 1"),
                           # each once trained: a ZeroDivisionError, a run without early stopping, a model
                           # left as initialized (0) or trained uphill (-1) then refused as failed
                           (["--batch-size", "0"], "batch size must be >= 1, got 0"),
                           (["--patience", "-1"], "patience must be >= 0 epochs, got -1"),
                           (["--learning-rate", "0"], r"learning rate must be a number > 0, got 0\.0"),
                           (["--learning-rate", "-1"], r"learning rate must be a number > 0, got -1\.0"),
                           (["--learning-rate", "nan"], "learning rate must be a number > 0, got nan"),
                           (["--seed", "-1"], "seed must be >= 0, got -1"),  # once NumPy's ValueError
                           # once refused by the training, after the dataset was built and left behind
                           (["--patch-size", "12"], r"--patch-size 12 is not a multiple of 8 \(2\*\*depth"),
                           (["--reference", str(GRAPHS.parent / "README.md")],
                            r"README.md is neither a raster nor a vector file GDAL can read"),
                           # a reference of class names, without the mapping of them: found now, not after training
                           (["--reference", str(scene / "class_polygons.geojson"), "--reference-field", "class"],
                            r"class holds class names, not codes \(forest, grass, urban, water\): map them to class "
                            r"ids with --mapping NAME:ID pairs"),
                           (["--reference", str(scene / "class_polygons.geojson")],
                            r"is a vector file: give the class attribute \(--reference-field\)"),
                           (["--label-mapping", "80-1"], r"--label-mapping: cannot read '80-1'; expected CODE:CLASS"),
                           (["--label-mapping", "1:1,2:9"], r"--label-mapping maps labels to class\(es\) 9, which")):
        code = main(base + extra)
        err = capsys.readouterr().err
        assert code == 1 and re.search(message, err) and len(err.strip().splitlines()) == 1, err
        assert list(tmp_path.iterdir()) == [], extra
    code = main(base[:4] + [str(tmp_path / "absent.gpkg")] + base[5:])
    err = capsys.readouterr().err
    assert code == 1 and re.search(r"labels \S*absent.gpkg does not exist", err), err


@pytest.mark.slow
def test_network_and_rules_scored_against_the_reference_on_the_same_pixels(trained, dataset, tmp_path, caplog):
    from snap_pc_models.dataset import load_dataset_info
    import rasterio
    from snap_pc_models.evaluate import compare_with_reference, format_comparison, predict_probabilities, predict_scene

    info = load_dataset_info(dataset / "ds")
    classes = predict_scene(trained["onnx"], info, tmp_path / "classes.tif")
    # the probabilities in memory (a seed ensemble averages them) give the written class map
    ids, probs = predict_probabilities(trained["onnx"], info)
    with rasterio.open(classes) as ds:
        written = ds.read(1)
    assert ids == [1, 2, 3, 4, 5] and probs.shape == (5,) + written.shape and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    assert np.array_equal(np.asarray(ids, np.uint8)[probs.argmax(axis=0)], written)
    truth = dataset / "scene" / "truth.tif"  # the synthetic scene's known land cover: independent of both maps
    got = compare_with_reference(classes, info, truth)
    u, r = got["unet"], got["rules"]
    assert got["pixels"] == u["pixels"] == r["pixels"] > 0.9 * info["width"] * info["height"]
    # the rules are good on this scene; the network learnt them well (synthetic: easy)
    assert r["overall_accuracy"] > 0.85 and u["overall_accuracy"] > 0.8
    assert {p["class_id"] for p in u["per_class"]} == {p["class_id"] for p in r["per_class"]} == {1, 2, 3, 4, 5}
    for cid, change in got["recall_change"].items():
        pu = next(p for p in u["per_class"] if p["class_id"] == int(cid))
        pr = next(p for p in r["per_class"] if p["class_id"] == int(cid))
        assert change == pytest.approx(pu["producers_accuracy"] - pr["producers_accuracy"])
    lines = format_comparison(got)
    assert lines[0].startswith(f"against {truth}") and "rules (the label masks the network learnt from)" in lines[0]
    assert lines[1].startswith("95% intervals of the overall accuracy, with the reference's ")
    assert lines[2].startswith("McNemar test of the difference") and len(lines) == 5 + 5 + 1
    # without the rules' map, the report says how to score the map the inference graph writes
    assert lines[-1].startswith("(the inference graph's map is the U-Net's fused with the rules") and \
        "--rules-map" in lines[-1]
    # labels that are not the classifier's masks (an analyst's polygons: dataset.json's rule_labels) are
    # labels in the report, never "rules"
    own = format_comparison(compare_with_reference(classes, {**info, "rule_labels": False}, truth))
    assert ", labels " in own[0] and "rules" not in own[0] and "| recall labels |" in own[3]
    assert own[-1].startswith("| 5 ")  # an analyst's labels are no rules to fuse with: no hint
    # the intervals hold the figures; the truth's regions of one class are the sample
    for m in (u, r):
        low, high = m["sampling"]["overall_accuracy_interval"]
        assert low < m["overall_accuracy"] < high and m["sampling"]["unit_kind"] == "regions"
    assert u["sampling"]["units"] == r["sampling"]["units"] > 1
    t = got["mcnemar"]["unet"]  # the pixels right in one map only: their difference is the OA difference
    assert (t["right_only_here"] - t["right_only_in_rules"]) / got["pixels"] == pytest.approx(
        u["overall_accuracy"] - r["overall_accuracy"], abs=1e-12)
    # a water / not-water reading of the truth (1:1, the rest one class any land class matches): every map's
    # land classes are scored as one, the water's recall as before
    binary = compare_with_reference(classes, info, truth, mapping={1: 1, 2: (2, 3, 4, 5), 3: (2, 3, 4, 5),
                                                                   4: (2, 3, 4, 5), 5: (2, 3, 4, 5)})
    assert binary["pixels"] == got["pixels"] and binary["mapping"]["2"] == [2, 3, 4, 5]
    for name in ("unet", "rules"):
        per = {p["class_id"]: p for p in binary[name]["per_class"]}
        assert sorted(per) == [1, 2] and per[2]["class_name"] == "any of 2+3+4+5"
        water = next(p for p in got[name]["per_class"] if p["class_id"] == 1)
        assert per[1]["producers_accuracy"] == water["producers_accuracy"]
        assert binary[name]["overall_accuracy"] >= got[name]["overall_accuracy"]
    assert format_comparison(binary)[-2].startswith("| 2 any of 2+3+4+5 |")
    # a mapping that leaves every code out: nothing to score, one line
    with pytest.raises(SnapPcError, match="no pixel of .* is labelled"):
        compare_with_reference(classes, info, truth, mapping={9: 1})
    # 255 (a class map's no-data, undeclared) is not scored; a code the network lacks counts, with a warning
    with rasterio.open(truth) as src:
        t, profile = src.read(1), src.profile
    t[:20], t[20:40] = 255, 9
    with rasterio.open(tmp_path / "truth_9.tif", "w", **{**profile, "nodata": None}) as dst:
        dst.write(t, 1)
    with rasterio.open(truth) as src:
        before = src.read(1)
    with caplog.at_level("WARNING"):
        other = compare_with_reference(classes, info, tmp_path / "truth_9.tif")
    assert other["pixels"] == got["pixels"] - int((before[:20] > 0).sum()) + int((before[20:40] == 0).sum())
    assert "holds code(s) 9 (" in caplog.text and 9 in {p["class_id"] for p in other["unet"]["per_class"]}


@pytest.mark.slow
def test_fine_tuning_with_a_reference_scores_the_model_it_started_from(trained, dataset, tmp_path, caplog):
    import rasterio
    from snap_pc_models.dataset import load_dataset_info
    from snap_pc_models.evaluate import compare_with_reference, predict_scene

    info = load_dataset_info(dataset / "ds")
    truth = dataset / "scene" / "truth.tif"
    # a learning rate 170 x the configuration's wrecks what the start knew in one epoch: a fine-tuning
    # that loses to its start, as three epochs do on four of docs/unet.md's ten fine-tuning readings
    with caplog.at_level("WARNING"):
        tuned = train(dataset / "ds", tmp_path / "ft.onnx", config="small", epochs=1, seed=0, verbose=False,
                      init=trained["onnx"], reference=truth, learning_rate=0.5)
    ref = tuned["metrics"]["reference"]
    assert ref["init"] == str(trained["onnx"]) and tuned["files"]["init.tif"] == tmp_path / "ft.init.tif"
    # the start's map is the one the model makes as it was, scored on the same pixels as the others
    own = predict_scene(trained["onnx"], info, tmp_path / "own.tif")
    with rasterio.open(tmp_path / "ft.init.tif") as a, rasterio.open(own) as b:
        assert np.array_equal(a.read(1), b.read(1))
    alone = compare_with_reference(own, info, truth)["unet"]
    assert ref["start"]["overall_accuracy"] == pytest.approx(alone["overall_accuracy"])
    assert ref["start"]["pixels"] == ref["unet"]["pixels"] == ref["pixels"]
    assert set(ref["start_recall_change"]) == set(ref["recall_change"])
    card = (tmp_path / "ft.card.md").read_text()
    assert "the model it was fine-tuned from (model.onnx), as it was: " in card
    # fine-tuned: cross-entropy by default, as the shipped model learnt (smoothing is measured from scratch)
    assert tuned["metrics"]["levers"]["loss"] == "ce" and "weighted cross-entropy + soft Dice" in card
    assert ref["unet"]["overall_accuracy"] < ref["start"]["overall_accuracy"] - 0.05
    assert "fine-tuning ended under the model it started from" in caplog.text
    assert "**Warning:** fine-tuning ended under the model it started from" in card


def test_fine_tuning_loss_is_told_only_when_the_start_was_better():
    from snap_pc_models.evaluate import format_comparison
    from snap_pc_models.train import fine_tuning_loss

    def result(tuned, was):
        m = lambda oa: {"overall_accuracy": oa, "per_class": []}  # noqa: E731
        return {"reference": "ref.gpkg", "pixels": 10, "unet": m(tuned), "rules": m(0.8), "recall_change": {},
                **({"start": m(was), "init": "/models/shipped.onnx"} if was is not None else {})}

    lost = fine_tuning_loss(result(0.90, 0.93))
    assert lost.startswith("fine-tuning ended under the model it started from") and "0.900, 0.930 before" in lost
    assert "use shipped.onnx as it is" in lost
    assert fine_tuning_loss(result(0.93, 0.93)) is None and fine_tuning_loss(result(0.95, None)) is None
    assert "fine-tuned from (shipped.onnx), as it was: 0.930 (fine-tuning -0.030)" in format_comparison(result(0.90, 0.93))[0]


def test_training_labels_read_through_their_mapping_everywhere(tmp_path, capsys):
    """Labels in another legend's codes (WorldCover's, made from the real Aberystwyth polygons) train through
    --label-mapping; scored against those polygons by name, the labels column reads them through the same
    mapping (so it agrees with the polygons on every pixel) and the model card says the mapping."""
    import rasterio

    scene = GRAPHS.parent / "tests" / "data" / "aberystwyth"
    with rasterio.open(scene / "labels.tif") as src:  # 1 water, 2 forest, 3 grass, 4 urban
        codes, profile = src.read(1), src.profile
    worldcover = tmp_path / "worldcover.tif"
    with rasterio.open(worldcover, "w", **{**profile, "dtype": "uint8", "nodata": 0}) as dst:
        dst.write(np.select([codes == 1, codes == 2, codes == 3, codes == 4], [80, 10, 30, 50], 0).astype("uint8"), 1)
    code = main(["train", "--image", str(scene / "s2_20210527_sref.tif"), "--labels", str(worldcover),
                 "--label-mapping", "80:1,10:3,50:4", "--min-labelled", "0.001", "--out", str(tmp_path / "m.onnx"),
                 "--epochs", "1", "--reference", str(scene / "class_polygons.geojson"), "--reference-field", "class",
                 "--mapping", "water:1,forest:3,urban:4"])
    out = capsys.readouterr().out
    assert code == 0, out
    got = json.loads((tmp_path / "m.metrics.json").read_text())["reference"]
    assert got["pixels"] == int(np.isin(codes, (1, 2, 4)).sum())
    assert got["rules"]["overall_accuracy"] == 1.0
    assert {p["class_id"] for p in got["rules"]["per_class"]} == {1, 3, 4}
    card = (tmp_path / "m.card.md").read_text()
    assert "mapped to class ids `80:1,10:3,50:4`" in card
    # labels of another legend are not the rules' masks: neither the report nor the card calls them so
    assert ", labels 1.000 (U-Net " in out and "| class | recall U-Net | recall labels | change |" in out
    assert "(the network, the training labels, same pixels)" in card and "recall rules" not in card


def test_cli_train_with_a_reference_reports_both_maps(dataset, tmp_path, capsys):
    code = main(["train", "--image", str(dataset / "scene" / "s2.tif"), "--labels", str(dataset / "labels.gpkg"),
                 "--out", str(tmp_path / "ref.onnx"), "--epochs", "1", "--indices", "NDVI", "--bands", "B4,B8",
                 "--patch-size", "40", "--block-size", "160", "--reference", str(dataset / "scene" / "truth.tif"),
                 "--test-time-augmentation", "flips"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "overall accuracy U-Net" in out and "| class | recall U-Net | recall rules | change |" in out
    metrics = json.loads((tmp_path / "ref.metrics.json").read_text())
    assert metrics["reference"]["pixels"] > 0 and metrics["reference"]["augmentation"] == "flips"
    card = (tmp_path / "ref.card.md").read_text()
    assert "## Accuracy against the reference" in card and "testTimeAugmentation flips" in card
    # the scored map is the one the inference graph makes with flips
    import rasterio
    from snap_pc_models.dataset import load_dataset_info
    from snap_pc_models.evaluate import predict_scene

    again = predict_scene(tmp_path / "ref.onnx", load_dataset_info(tmp_path / "ref.dataset"), tmp_path / "again.tif",
                          augmentation="flips")
    with rasterio.open(tmp_path / "ref.classes.tif") as a, rasterio.open(again) as b:
        assert np.array_equal(a.read(1), b.read(1))
    # an augmentation without a reference to score would do nothing: refused before training
    code = main(["train", str(tmp_path / "ref.dataset"), "--out", str(tmp_path / "z.onnx"),
                 "--test-time-augmentation", "dihedral"])
    err = capsys.readouterr().err
    assert code == 1 and "give --reference" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "z.onnx").exists()
    code = main(["train", str(tmp_path / "ref.dataset"), "--out", str(tmp_path / "x.onnx"),
                 "--reference", str(tmp_path / "missing.tif")])
    assert code == 1 and "reference" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_cli_train_scores_the_map_the_inference_graph_writes(dataset, tmp_path, capsys):
    import rasterio

    from snap_pc_models.evaluate import fuse_scene

    rules_map = tmp_path / "rules.tif"  # the rules' class map with its margin, as the inference graph fuses it
    run_graph(load_graph(GRAPHS / "progressive_classifier_s2.xml",
                         {"input": str(dataset / "scene" / "s2.tif"), "output": str(rules_map), "labels": "",
                          "outputMargin": "true"}), ExecutionContext(overwrite=True))
    args = ["train", "--image", str(dataset / "scene" / "s2.tif"), "--labels", str(dataset / "labels.gpkg"),
            "--epochs", "1", "--indices", "NDVI", "--bands", "B4,B8", "--patch-size", "40", "--block-size", "160",
            "--reference", str(dataset / "scene" / "truth.tif")]
    code = main(args + ["--out", str(tmp_path / "f.onnx"), "--rules-map", str(rules_map), "--min-rule-margin", "0.1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "fused with the rules as the inference graph does (RuleFusion, minMargin 0.1)" in out
    assert "| class | recall U-Net | recall rules | change | recall fused | change |" in out
    ref = json.loads((tmp_path / "f.metrics.json").read_text())["reference"]
    assert ref["min_rule_margin"] == 0.1 and ref["rules_map"] == str(rules_map)
    assert ref["fused"]["pixels"] == ref["unet"]["pixels"] == ref["pixels"] > 0
    # with --rules-map the rules scored are that map, as snap-pc assess scores it, not the label masks
    from snap_operators.apps.assess import assess

    both = assess(tmp_path / "f.classes.tif", dataset / "scene" / "truth.tif", compare=rules_map)
    assert ref["rules_source"] == "map" and "the rules' map rules.tif" in out
    assert both.metrics["pixels"] == ref["pixels"]
    assert ref["rules"]["overall_accuracy"] == pytest.approx(both.metrics["compare"]["overall_accuracy"])
    assert ref["unet"]["overall_accuracy"] == pytest.approx(both.metrics["overall_accuracy"])
    # McNemar's counts are the pixels right in one map only: their difference is the two maps' OA difference
    for name in ("unet", "fused"):
        t = ref["mcnemar"][name]
        assert (t["right_only_here"] - t["right_only_in_rules"]) / ref["pixels"] == pytest.approx(
            ref[name]["overall_accuracy"] - ref["rules"]["overall_accuracy"], abs=1e-12)
        assert 0 <= t["p_value"] <= 1
    assert ("McNemar test of the difference: "
            f"U-Net right where the rules are wrong on {ref['mcnemar']['unet']['right_only_here']} px") in out
    # the intervals and the test over the reference's units are assess's on the same pixels
    assert ref["rules"]["sampling"] == both.metrics["compare"]["sampling"]
    assert ref["unet"]["sampling"] == both.metrics["sampling"]
    assert ref["mcnemar"]["unet"]["units_p_value"] == pytest.approx(both.metrics["mcnemar"]["units_p_value"])
    assert "their fusion" in (tmp_path / "f.card.md").read_text()
    # the fused map: the rules' class where their margin reaches 0.1, the network's elsewhere
    with rasterio.open(rules_map) as r, rasterio.open(tmp_path / "f.classes.tif") as u, \
            rasterio.open(tmp_path / "f.fused.tif") as f:
        names = list(r.descriptions)
        rules, margin = r.read(names.index("class_id") + 1), r.read(names.index("margin") + 1)
        unet, fused = u.read(1), f.read(1)
    sure = margin >= 0.1
    assert 0 < sure.mean() < 1 and np.array_equal(fused, np.where(sure, rules, unet).astype(np.uint8))
    assert 0.5 < ref["fused"]["overall_accuracy"] <= 1
    for cid, change in ref["fused_recall_change"].items():
        pf = next(p for p in ref["fused"]["per_class"] if p["class_id"] == int(cid))
        pr = next(p for p in ref["rules"]["per_class"] if p["class_id"] == int(cid))
        assert change == pytest.approx(pf["producers_accuracy"] - pr["producers_accuracy"])
    # Infinity keeps no class of the rules: the network's map
    alone = fuse_scene(tmp_path / "f.classes.tif", rules_map, tmp_path / "inf.tif", min_margin=float("inf"))
    with rasterio.open(alone) as a:
        assert np.array_equal(a.read(1), unet)
    # refused before training, in one line, nothing written
    with rasterio.open(rules_map) as r:  # the same map 100 m east: another grid
        profile, data, names = r.profile, r.read(), r.descriptions
    profile["transform"] = rasterio.Affine.translation(100, 0) @ profile["transform"]
    with rasterio.open(tmp_path / "shifted.tif", "w", **profile) as w:
        w.write(data)
        w.descriptions = names
    for extra, message in ((["--rules-map", str(dataset / "classes.tif")], "has no band 'margin'"),
                           (["--rules-map", str(tmp_path / "shifted.tif")], "not on the training image's grid"),
                           (["--rules-map", str(tmp_path / "absent.tif")], "does not exist"),
                           (["--rules-map", str(rules_map), "--min-rule-margin", "-1"], "must be >= 0")):
        code = main(args + ["--out", str(tmp_path / "x.onnx"), *extra])
        err = capsys.readouterr().err
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x.onnx").exists()
        assert not (tmp_path / "x.dataset").exists()  # checked before the dataset is built
    code = main(["train", str(tmp_path / "f.dataset"), "--out", str(tmp_path / "y.onnx"), "--rules-map", str(rules_map)])
    assert code == 1 and "give --reference" in capsys.readouterr().err


def test_a_class_of_the_labels_never_predicted_is_a_failed_training():
    class_ids = [1, 3, 4]
    gone = vanished_classes(class_ids, {"1": 5000, "3": 4000, "4": 60}, [5400, 3660, 0])
    assert gone == [{"class_id": 4, "class_name": "Urban Area/High Reflected sediments", "train_pixels": 60}]
    # a class without training pixels cannot vanish; predicted classes never do
    assert vanished_classes(class_ids, {"1": 5000, "3": 4000}, [5400, 3600, 0]) == []
    assert vanished_classes(class_ids, {"1": 5000, "3": 4000, "4": 60}, [5400, 3600, 1]) == []
    assert failure_text(gone).startswith("training failed: the model never predicts class 4 Urban")


def test_cli_reports_a_failed_training_and_exits_1(tmp_path, monkeypatch, capsys):
    import snap_pc_models.train as train_mod

    split = {"overall_accuracy": 0.99, "kappa": 0.0, "mean_iou": 0.5,
             "baseline_majority": {"class_id": 3, "overall_accuracy": 0.99, "mean_iou": 0.5}}
    vanished = [{"class_id": 4, "class_name": "Urban Area/High Reflected sediments", "train_pixels": 60}]
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: {
        "onnx": tmp_path / "m.onnx", "files": {},
        "metrics": {"val": split, "test": split, "onnx": {"max_abs_diff_vs_tensorflow": 0.0, "halo": 8},
                    "vanished_classes": vanished, "status": "failed"}})
    (tmp_path / "ds").mkdir()
    code = main(["train", str(tmp_path / "ds"), "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 1 and "training failed: the model never predicts class 4 Urban" in err
    assert "outputs kept for inspection" in err


@pytest.mark.slow
def test_quantize_checks_int8_against_fp32(trained, dataset, tmp_path, capsys, caplog):
    pytest.importorskip("onnxruntime.quantization", reason="onnxruntime.quantization is not available")
    with caplog.at_level("WARNING"):
        code = main(["quantize", str(trained["onnx"]), "--dataset", str(dataset / "ds"), "--out",
                     str(tmp_path / "q.onnx")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "unsupported type to quantize" not in caplog.text  # ONNX Runtime's note per integer tensor
    assert "agree with fp32" in out
    session, meta = open_session(tmp_path / "q.onnx")
    assert meta == open_session(trained["onnx"])[1]  # the contract travels unchanged
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "q.onnx")).metadata_props}
    assert props["quantization"].startswith("int8")
    assert any(n.op_type == "QLinearConv" for n in onnx.load(str(tmp_path / "q.onnx")).graph.node)
    # every pixel as fp32 (int8 rounds some ~0.1 % differently): checked, refused in one line, nothing written
    code = main(["quantize", str(trained["onnx"]), "--dataset", str(dataset / "ds"), "--out",
                 str(tmp_path / "q2.onnx"), "--min-agreement", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "was not written" in err and len(err.strip().splitlines()) == 1
    # a share that is no share: refused before the work (once quantized first, or, nan, written unchecked)
    for bad in ("1.01", "nan", "-0.5"):
        code = main(["quantize", str(trained["onnx"]), "--dataset", str(dataset / "ds"), "--out",
                     str(tmp_path / "q2.onnx"), "--min-agreement", bad])
        err = capsys.readouterr().err
        assert code == 1 and f"--min-agreement is a share of the test pixels, in [0, 1]; got {float(bad)}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]
