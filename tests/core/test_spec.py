"""Parameter values as a graph or ``-P`` gives them (core.spec): absent, empty, set."""

from __future__ import annotations

import pytest

from snap_operators.core.operator import get_operator
from snap_operators.core.spec import Parameter
from snap_operators.engine.graph import parse_graph


def test_an_empty_value_takes_the_default_unless_empty_means_none():
    rules = Parameter("rules", "String", default="mosul-5class")
    assert rules.convert(None) == rules.convert("", given=True) == rules.convert(" ", given=True) == "mosul-5class"
    mask = Parameter("maskBand", "String", default="cloud_mask", keep_empty=True)
    assert mask.convert(None) == "cloud_mask"  # absent
    assert mask.convert(None, given=True) == mask.convert(" ", given=True) == ""  # <maskBand/>, -PmaskBand=
    assert mask.convert("snow_mask", given=True) == "snow_mask"
    with pytest.raises(ValueError, match="keep_empty is for String"):
        Parameter("n", "int", default=1, keep_empty=True)


@pytest.mark.parametrize("alias", ["ProgressiveClassifier", "AttentionUNetInference"])
def test_mask_band_set_empty_in_a_graph_is_no_mask(alias):
    nodes = "".join(f'<node id="n{k}"><operator>{alias}</operator><parameters>{p}</parameters></node>'
                    for k, p in enumerate(["<maskBand/>", "<maskBand></maskBand>", "<maskBand>${mask}</maskBand>",
                                           "<maskBand>snow_mask</maskBand>", ""]))
    graph = parse_graph("g.xml", text=f'<graph id="g">{nodes}</graph>').substitute({"mask": ""})
    spec = get_operator(alias).spec
    got = [spec.convert_parameters(node.parameters)[0]["maskBand"] for node in graph.nodes.values()]
    assert got == ["", "", "", "snow_mask", "cloud_mask"]
