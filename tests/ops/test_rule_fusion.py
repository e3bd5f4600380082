"""RuleFusion: the operator over two products, its checks, and the graph that runs it."""

from __future__ import annotations

import numpy as np
import pytest

from snap_operators.core.errors import OperatorError
from snap_operators.core.legend import LAND_COVER
from snap_operators.core.operator import get_operator
from snap_operators.science.fusion import NETWORK, RULES

RULES_CLASS = np.array([[1, 3, 0, 4], [5, 2, 254, 255]], np.uint8)
MARGIN = np.array([[0.5, 0.01, 0.2, 0.04], [np.inf, 0.02, 1.0, np.nan]], np.float32)
NETWORK_CLASS = np.array([[3, 4, 2, 5], [1, 3, 3, 255]], np.uint8)


@pytest.fixture
def pair(make_product):
    def build(margin=True, classes=LAND_COVER, shape=None, **net):
        bands = {"class_id": RULES_CLASS, **({"margin": MARGIN} if margin else {})}
        rules = make_product(bands, name="rules", no_data={"class_id": 255, "margin": np.nan}, classes=classes)
        data = NETWORK_CLASS if shape is None else np.ones(shape, np.uint8)
        network = make_product({"class_id": data}, name="unet", no_data=255, classes=LAND_COVER, **net)
        return rules, network
    return build


def fuse(sources, **params):
    cls = get_operator("RuleFusion")
    op = cls.create(sources, {k: str(v) for k, v in params.items()}, node_id="fusion")
    op.target = op.initialize()
    return op


def test_fuses_named_and_ordered_sources_alike(pair):
    rules, network = pair()
    named = fuse({"rules": rules, "network": network}, outputSource="true")
    ordered = fuse({"sourceProduct": rules, "sourceProduct.1": network}, outputSource="true")
    for op in (named, ordered):
        assert op.target.band("class_id").data.compute().tolist() == [[1, 4, 2, 4], [5, 3, 3, 255]]
        assert op.target.band("fusion_source").data.compute().tolist() == [
            [RULES, NETWORK, NETWORK, RULES], [RULES, NETWORK, NETWORK, 0]]
    band = named.target.band("class_id")
    assert band.dtype == np.uint8 and band.no_data == 255 and [c.value for c in band.classes] == [
        c.value for c in network.band("class_id").classes]
    md = named.target.metadata.element("RuleFusion").attributes
    assert md["minMargin"] == 0.03 and md["rules"] == "rules" and md["network"] == "unet"
    assert list(named.target.bands) == ["class_id", "fusion_source"]
    assert list(fuse({"rules": rules, "network": network}).target.bands) == ["class_id"]


def test_infinity_gives_the_network_map_without_reading_the_rules(pair):
    rules, network = pair()
    op = fuse({"rules": rules, "network": network}, minMargin="Infinity", outputSource="true")
    np.testing.assert_array_equal(op.target.band("class_id").data.compute(), NETWORK_CLASS)
    assert op.target.band("fusion_source").data.compute().tolist() == [[NETWORK] * 4, [NETWORK] * 3 + [0]]
    assert set(op.tile_kernel().inputs) == {"network"}
    # the target's task graph holds no task of the rules' bands: a graph never computes them
    graph = dict(op.target.band("class_id").data.__dask_graph__())
    rules_keys = {k[0] if isinstance(k, tuple) else k for k in rules.band("class_id").data.__dask_graph__()}
    assert not rules_keys & {k[0] if isinstance(k, tuple) else k for k in graph}


def test_the_tile_kernel_is_the_engine_function(pair):
    rules, network = pair()
    op = fuse({"rules": rules, "network": network})
    k = op.tile_kernel()
    assert k.sources == {"rules": "rules", "margin": "rules", "network": "network"}
    tiles = {"rules": RULES_CLASS, "margin": MARGIN, "network": NETWORK_CLASS}
    np.testing.assert_array_equal(k.func(tiles)["class_id"], op.target.band("class_id").data.compute())


@pytest.mark.parametrize("case, message", [
    ("no margin", "product 'rules' has no band 'margin': set outputMargin to true on its ProgressiveClassifier"),
    ("one source", "needs two products, 'rules' and 'network'; got 1 source product"),
    ("other grid", "'rules' and 'unet' are not on one grid"),
    ("other legend", "have different class legends: class 5 'Alluvium/Clay Silts sediments/roof' only in the "
                     "second"),
])
def test_refuses_what_it_cannot_fuse(pair, case, message):
    rules, network = pair(margin=case != "no margin", classes=LAND_COVER[:4] if case == "other legend" else LAND_COVER,
                          shape=(3, 4) if case == "other grid" else None)
    sources = {"rules": rules} if case == "one source" else {"rules": rules, "network": network}
    with pytest.raises(OperatorError, match="RuleFusion.*fusion.*" + message.replace("(", "\\(")) as exc:
        fuse(sources)
    assert "\n" not in str(exc.value)


def test_negative_margin_is_refused(pair):
    rules, network = pair()
    with pytest.raises(Exception, match="minMargin"):
        fuse({"rules": rules, "network": network}, minMargin="-0.1")


def test_an_unknown_class_band_names_the_parameter_to_set(pair):
    rules, network = pair()
    with pytest.raises(OperatorError, match="RuleFusion.*has no class band 'labels'") as exc:
        fuse({"rules": rules, "network": network}, sourceBand="labels")
    assert "\n" not in str(exc.value)


def test_reads_the_rules_written_with_their_margin(make_product, pair, tmp_path):
    """`snap-pc run progressive_classifier_s2.xml -PoutputMargin=true` writes a float32 GeoTIFF (the writer
    promotes both bands): its class band, whole numbers with NaN where neither band has data, is read as is."""
    _, network = pair()
    as_float = RULES_CLASS.astype(np.float32)
    as_float[1, 3] = np.nan
    rules = make_product({"class_id": as_float, "margin": MARGIN}, name="rules", no_data=np.nan, classes=LAND_COVER)
    op = fuse({"rules": rules, "network": network})
    with np.errstate(invalid="raise"):  # no NaN is ever cast to an integer
        fused = op.target.band("class_id").data.compute()
    assert fused.dtype == np.uint8 and fused.tolist() == [[1, 4, 2, 4], [5, 3, 3, 255]]
    # a float class band is accepted from the rules' product only
    with pytest.raises(OperatorError, match="float32, not an integer class band"):
        fuse({"rules": rules, "network": make_product({"class_id": as_float}, name="unet", no_data=np.nan)})
