"""The pretrained Sentinel-2 Attention U-Net shipped in the package (snap_operators/io/pretrained)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snap_operators.core.errors import SnapPcError
from snap_operators.core.legend import LAND_COVER
from snap_operators.engine.graph import load_properties
from snap_operators.io import onnx_model as M
from snap_operators.io.bandfolder import S2_BANDS
from snap_operators.io.onnx_model import ModelError, open_session, pretrained_model
from snap_operators.science.rules import load_rules

ROOT = Path(__file__).resolve().parents[2]
PRECISIONS = ("fp32", "int8")


def test_shipped_files_are_in_the_package_and_small():
    paths = {p: pretrained_model(p) for p in PRECISIONS}
    assert paths == {"fp32": M.PRETRAINED_DIR / "attention_unet_s2.onnx",
                     "int8": M.PRETRAINED_DIR / "attention_unet_s2.int8.onnx"}
    assert M.PRETRAINED_DIR == ROOT / "snap_operators" / "io" / "pretrained"
    assert pretrained_model() == paths["fp32"]
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 10_000, path  # a network, not a placeholder
    assert sum(p.stat().st_size for p in paths.values()) < 5 * 2**20
    # the model card and the Keras weights for fine-tuning travel with them
    assert (M.PRETRAINED_DIR / "attention_unet_s2.card.md").stat().st_size > 0
    assert (M.PRETRAINED_DIR / "attention_unet_s2.keras").stat().st_size > 10_000


@pytest.mark.parametrize("precision", PRECISIONS)
def test_shipped_model_reads_the_default_graph_stack(precision):
    session, meta = open_session(pretrained_model(precision))
    assert meta.class_ids == (1, 2, 3, 4, 5)
    assert [(c.value, c.name, tuple(c.color)) for c in meta.classes] == \
        [(c.value, c.name, tuple(c.color)) for c in LAND_COVER]
    # graphs/unet_inference.xml: Resample keeps every Sentinel-2 band, SpectralIndices adds the indices
    # of its properties file; the shipped model must find its bands there without -Pindices
    indices = load_properties(ROOT / "graphs" / "unet_inference.properties")["indices"].split(",")
    assert set(meta.input_bands) <= set(S2_BANDS) | set(indices), meta.input_bands
    # the graph computes no index that neither the model nor the rules of its RuleFusion read
    rules = load_rules(load_properties(ROOT / "graphs" / "unet_inference.properties")["rules"])
    assert set(indices) <= set(meta.input_bands) | set(rules.bands)
    assert session.get_inputs()[0].shape[1] == len(meta.input_bands)
    # it predicts: probabilities over the five classes, summing to one
    x = np.random.default_rng(0).normal(size=(1, len(meta.input_bands), 32, 32)).astype(np.float32)
    (probs,) = session.run(None, {session.get_inputs()[0].name: x})
    assert probs.shape == (1, 5, 32, 32)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_missing_shipped_model_is_a_one_line_model_error(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "PRETRAINED_DIR", tmp_path / "pretrained")
    for precision, name in (("fp32", "attention_unet_s2.onnx"), ("int8", "attention_unet_s2.int8.onnx")):
        with pytest.raises(ModelError, match=f"shipped pretrained model {name} is missing from .*pretrained "
                           r"\(a broken install\?\): reinstall snap-progressive-classifier, or give a model file") as exc:
            pretrained_model(precision)
        assert "\n" not in str(exc.value) and isinstance(exc.value, SnapPcError)
    with pytest.raises(ModelError, match="precision 'fp16' is not one of fp32, int8"):
        pretrained_model("fp16")
