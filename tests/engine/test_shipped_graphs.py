"""The graphs in graphs/: SNAP format, Graph Builder layout, defaults, and what the engine says of each."""

from pathlib import Path

import pytest

from snap_operators.core.errors import GraphError
from snap_operators.core.operator import SNAP_ONLY_OPERATORS, operators
from snap_operators.engine.graph import load_properties, parse_graph
from snap_operators.engine.runner import build, load_graph

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"
ALL = sorted(GRAPHS.glob("*.xml"))


def test_expected_graphs_are_shipped():
    names = {p.name for p in ALL}
    assert {"progressive_classifier_s2.xml", "progressive_classifier_s1s2.xml", "s1_preprocessing.xml"} <= names


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_graph_builder_layout_and_known_operators(path):
    g = parse_graph(path)
    g.check()
    pres = [a for a in g.application_data if a.get("id") == "Presentation"]
    assert pres, "Graph Builder needs <applicationData id='Presentation'>"
    placed = {n.get("id") for n in pres[0].findall("node") if n.find("displayPosition") is not None}
    assert placed == set(g.nodes)
    for node in g.nodes.values():
        assert node.operator in operators() or node.operator in SNAP_ONLY_OPERATORS


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_only_io_variables_are_required(path):
    """Optional variables have defaults in GRAPH.properties; only inputs/outputs must be given."""
    io = {"input", "inputS1", "output", "labels", "before", "after", "model"}
    g = load_graph(path, {v: f"/tmp/{v}" for v in io})
    assert g.variables() <= set()  # everything resolved


def test_s1_preprocessing_is_reported_as_snap_only():
    g = load_graph(GRAPHS / "s1_preprocessing.xml", {"input": "/data/S1.zip", "output": "/tmp/out.dim"})
    with pytest.raises(GraphError, match="operator Apply-Orbit-File is provided by SNAP; run this graph with gpt"):
        build(g)


def test_classifier_graph_rules_override(tmp_path):
    g = load_graph(GRAPHS / "progressive_classifier_s2.xml",
                   {"input": "a.tif", "output": "b.tif", "labels": "c.gpkg", "rules": "coastal-4class"})
    assert g.nodes["ProgressiveClassifier"].parameters["rules"] == "coastal-4class"
    g = load_graph(GRAPHS / "progressive_classifier_s2.xml", {"input": "a.tif", "output": "b.tif", "labels": "c.gpkg"})
    assert g.nodes["ProgressiveClassifier"].parameters["rules"] == "mosul-5class"
    assert not g.nodes["ProgressiveClassifier"].parameters["areaTableFile"]  # empty: no table


EXPORTING = [p for p in ALL if "LabelMaskExport" in p.read_text()]


@pytest.mark.parametrize("path", EXPORTING, ids=lambda p: p.name)
def test_output_formats_are_variables_with_defaults(path):
    """rasterFormat (Write) and vectorFormat (LabelMaskExport) are graph variables; vectorFormat's default,
    empty, lets the labels file's extension name the format."""
    g = parse_graph(path)
    assert g.nodes["Write"].parameters["formatName"] == "${rasterFormat}"
    assert g.nodes["LabelMaskExport"].parameters["formatName"] == "${vectorFormat}"
    defaults = load_properties(path.with_suffix(".properties"))
    assert defaults["rasterFormat"] == "GeoTIFF" and defaults["vectorFormat"] == ""
    assert defaults["minArea"] == "500"  # one minimum mapping unit for label masks and change polygons
    text = path.read_text()
    assert "rasterFormat" in text.split("<node")[0] and "vectorFormat" in text.split("<node")[0]  # documented
