"""Graph XML parsing: gpt's format, variables, safety, DAG checks."""

from pathlib import Path

import pytest

from snap_operators.engine import build, load_graph
from snap_operators.errors import GraphError
from snap_operators.graph import parse_graph
from snap_operators.operator import SNAP_ONLY_OPERATORS, get_operator, operators

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GRAPHS = DATA / "snap_graphs"


def _g(body: str, version: str = "1.0") -> str:
    return f'<graph id="t"><version>{version}</version>{body}</graph>'


READ_WRITE = _g(
    """
    <node id="Read"><operator>Read</operator><sources/>
      <parameters class="com.bc.ceres.binding.dom.XppDomElement"><file>${input}</file></parameters></node>
    <node id="Write"><operator>Write</operator><sources><sourceProduct refid="Read"/></sources>
      <parameters><file>$output</file><formatName>GeoTIFF</formatName></parameters></node>
    <applicationData id="Presentation"><Description/><node id="Read"><displayPosition x="1" y="2"/></node></applicationData>
    """
)


def test_parse_nodes_sources_parameters_and_application_data():
    g = parse_graph("t.xml", text=READ_WRITE)
    assert list(g.nodes) == ["Read", "Write"]
    assert g.nodes["Write"].sources == [("sourceProduct", "Read")]
    assert g.nodes["Write"].parameters == {"file": "$output", "formatName": "GeoTIFF"}
    assert g.variables() == {"input", "output"}
    assert len(g.application_data) == 1 and g.application_data[0].get("id") == "Presentation"
    assert g.check() == ["Read", "Write"]


def test_source_as_text_and_source_products_list():
    g = parse_graph(
        "t.xml",
        text=_g(
            """<node id="a"><operator>Read</operator></node><node id="b"><operator>Read</operator></node>
            <node id="m"><operator>BandMerge</operator><sources><sourceProducts>a,b</sourceProducts></sources></node>
            <node id="n"><operator>BandMerge</operator><sources><sourceProduct>a</sourceProduct>
            <sourceProduct.1 refid="b"/></sources></node>"""
        ),
    )
    assert g.nodes["m"].sources == [("sourceProduct", "a"), ("sourceProduct.1", "b")]
    assert g.nodes["n"].sources == [("sourceProduct", "a"), ("sourceProduct.1", "b")]


def test_nested_parameters_keep_structure():
    g = parse_graph(
        "t.xml",
        text=_g(
            """<node id="bm"><operator>BandMaths</operator><parameters><targetBands><targetBand>
            <name>ndvi</name><type>float32</type><expression>(B8 - B4) / (B8 + B4)</expression><noDataValue>NaN</noDataValue>
            </targetBand></targetBands><variables/></parameters></node>"""
        ),
    )
    tb = g.nodes["bm"].parameters["targetBands"]
    assert tb[0][0] == "targetBand"
    assert dict(tb[0][1])["expression"] == "(B8 - B4) / (B8 + B4)"
    assert g.nodes["bm"].parameters["variables"] is None


def test_substitution_braced_bare_and_reserved():
    g = parse_graph(
        "t.xml",
        text=_g(
            """<node id="c"><operator>Collocate</operator><parameters>
            <a>${x}/y</a><b>$x-$y2</b><referenceComponentPattern>${ORIGINAL_NAME}_M</referenceComponentPattern>
            </parameters></node>"""
        ),
    )
    assert g.variables() == {"x", "y2"}
    s = g.substitute({"x": "X", "y2": "<evil/>"})
    p = s.nodes["c"].parameters
    assert p["a"] == "X/y"
    assert p["b"] == "X-<evil/>"  # values are text, never parsed as XML
    assert p["referenceComponentPattern"] == "${ORIGINAL_NAME}_M"


def test_unresolved_variable_is_named():
    g = parse_graph("t.xml", text=READ_WRITE)
    with pytest.raises(GraphError, match=r"\$\{output\}"):
        g.substitute({"input": "a.tif"})


def test_properties_file_and_sidecar_defaults(tmp_path):
    graph = tmp_path / "g.xml"
    graph.write_text(READ_WRITE)
    (tmp_path / "g.properties").write_text("# defaults\ninput=default.tif\noutput = out.tif\n")
    props = tmp_path / "p.properties"
    props.write_text("input=fromfile.tif\n")
    g = load_graph(graph)
    assert g.nodes["Read"].parameters["file"] == "default.tif"
    g = load_graph(graph, properties=props)
    assert g.nodes["Read"].parameters["file"] == "fromfile.tif"
    assert g.nodes["Write"].parameters["file"] == "out.tif"
    g = load_graph(graph, {"input": "cli.tif"}, properties=props)
    assert g.nodes["Read"].parameters["file"] == "cli.tif"


@pytest.mark.parametrize(
    "text, message",
    [
        (_g("<node id='a'><operator>Read</operator></node>", version="2.0"), "version"),
        ("<notagraph/>", "expected <graph>"),
        ("<graph><node id='a'><operator>Read</operator>", "malformed"),
        (_g("<node id='a'><operator>Read</operator></node><node id='a'><operator>Read</operator></node>"), "duplicate node id 'a'"),
        (_g("<node id='a'><sources/></node>"), "no <operator>"),
        (_g(""), "no nodes"),
    ],
)
def test_malformed_graphs(text, message):
    with pytest.raises(GraphError, match=message):
        parse_graph("bad.xml", text=text)


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<graph id="g"><version>1.0</version><node id="a"><operator>Read</operator><parameters><file>&lol3;</file></parameters></node></graph>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE g [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<graph id="g"><version>1.0</version><node id="a"><operator>Read</operator><parameters><file>&xxe;</file></parameters></node></graph>"""


@pytest.mark.parametrize("text", [BOMB, XXE], ids=["entity-bomb", "external-entity"])
def test_hostile_xml_is_refused(text):
    with pytest.raises(GraphError, match="unsafe XML refused"):
        parse_graph("evil.xml", text=text)


def test_cycle_and_unknown_refid():
    cyc = parse_graph(
        "t.xml",
        text=_g(
            """<node id="a"><operator>BandMaths</operator><sources><sourceProduct refid="b"/></sources></node>
            <node id="b"><operator>BandMaths</operator><sources><sourceProduct refid="a"/></sources></node>"""
        ),
    )
    with pytest.raises(GraphError, match="cycle: a -> b -> a|cycle: b -> a -> b"):
        cyc.check()
    dangling = parse_graph(
        "t.xml", text=_g("""<node id="a"><operator>Write</operator><sources><sourceProduct refid="nope"/></sources></node>""")
    )
    with pytest.raises(GraphError, match="unknown node 'nope'"):
        dangling.check()


def test_unknown_and_snap_only_operators_fail_before_work():
    g = parse_graph("t.xml", text=_g("<node id='x'><operator>Frobnicate</operator></node>"))
    with pytest.raises(GraphError) as e:
        build(g)
    msg = str(e.value)
    assert "node 'x'" in msg and "Frobnicate" in msg and "BandMaths" in msg and "Read" in msg
    g = parse_graph("t.xml", text=_g("<node id='cal'><operator>Calibration</operator></node>"))
    with pytest.raises(GraphError, match="node 'cal': operator Calibration is provided by SNAP; run this graph with gpt"):
        build(g)


def test_registry_has_builtins_and_no_overlap_with_snap_only():
    ops = operators()
    for alias in ("Read", "Write", "Resample", "Subset", "BandMaths", "BandMerge", "Collocate"):
        assert alias in ops
        assert ops[alias].spec.alias == alias
    assert not set(ops) & SNAP_ONLY_OPERATORS
    assert get_operator("Write").spec.sink


def _real_graphs():
    if not GRAPHS.is_dir():
        return []
    return sorted(GRAPHS.rglob("*.xml"))


@pytest.mark.skipif(not GRAPHS.is_dir(), reason=f"../shared/data/snap_graphs not found at {GRAPHS}")
@pytest.mark.parametrize("path", _real_graphs(), ids=lambda p: p.name)
def test_every_real_snap_graph_parses(path):
    g = parse_graph(path)
    order = g.check()
    assert set(order) == set(g.nodes)
    g2 = g.substitute({v: f"/nonexistent/{v}" for v in g.variables()})
    snap_only = [n for n in g2.nodes.values() if n.operator in SNAP_ONLY_OPERATORS]
    ours = operators()
    for n in g2.nodes.values():
        assert n.operator in ours or n.operator in SNAP_ONLY_OPERATORS, n.operator
    if snap_only:
        with pytest.raises(GraphError, match="is provided by SNAP; run this graph with gpt"):
            build(g2)
