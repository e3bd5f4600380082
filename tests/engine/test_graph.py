"""Graph XML parsing: gpt's format, variables, safety, DAG checks."""

import pytest
from helpers import SHARED_DATA

from snap_operators.core.errors import GraphError
from snap_operators.core.operator import SNAP_ONLY_OPERATORS, get_operator, operators
from snap_operators.engine.graph import parse_graph
from snap_operators.engine.runner import build, load_graph

GRAPHS = SHARED_DATA / "snap_graphs"


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
    assert g.variables() == {"input"}  # ${input} must be set; gpt replaces a bare $output only when set
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
    # SourceList.Converter names list items sourceProducts0, sourceProducts1, ...
    assert g.nodes["m"].sources == [("sourceProducts0", "a"), ("sourceProducts1", "b")]
    assert g.nodes["n"].sources == [("sourceProduct", "a"), ("sourceProduct.1", "b")]


def test_source_products_list_is_split_as_gpt_does():
    nodes = """<node id="a"><operator>Read</operator></node><node id="b"><operator>Read</operator></node>
               <node id="m"><operator>BandMerge</operator><sources><sourceProducts>%s</sourceProducts></sources></node>"""
    # empty items dropped (StringTokenizer), the whole text trimmed
    g = parse_graph("t.xml", text=_g(nodes % "  a,,b \n"))
    assert g.nodes["m"].sources == [("sourceProducts0", "a"), ("sourceProducts1", "b")]
    # items are not trimmed: ' b' is no node id in gpt either
    g = parse_graph("t.xml", text=_g(nodes % "a, b"))
    with pytest.raises(GraphError, match="unknown node ' b'; gpt does not trim spaces"):
        g.check()


def test_source_products_with_refid_is_refused():
    # gpt's SourceList.Converter reads only the text of <sourceProducts>: refid alone adds no source
    text = _g("""<node id="a"><operator>Read</operator></node>
                 <node id="m"><operator>BandMerge</operator><sources><sourceProducts refid="a"/></sources></node>""")
    with pytest.raises(GraphError, match=r"node 'm': <sourceProducts refid=\"a\"/> is ignored by gpt"):
        parse_graph("t.xml", text=text)


@pytest.mark.parametrize("sources", [
    '<sourceProduct refid="a"/><sourceProduct.1 refid="a"/>',
    "<sourceProducts>a,a</sourceProducts>",
])
def test_one_node_read_twice_by_a_node_is_refused(sources):
    text = _g(f"""<node id="a"><operator>Read</operator></node>
                  <node id="m"><operator>BandMerge</operator><sources>{sources}</sources></node>""")
    with pytest.raises(GraphError, match="node 'm': source '.*' reads node 'a' a second time; gpt refuses"):
        parse_graph("t.xml", text=text).check()


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
    assert g.variables() == {"x"}
    s = g.substitute({"x": "X", "y2": "<evil/>"})
    p = s.nodes["c"].parameters
    assert p["a"] == "X/y"
    assert p["b"] == "X-<evil/>"  # values are text, never parsed as XML
    assert p["referenceComponentPattern"] == "${ORIGINAL_NAME}_M"


def test_unresolved_variable_is_named():
    g = parse_graph("t.xml", text=READ_WRITE.replace("$output", "${output}"))
    with pytest.raises(GraphError, match=r"unresolved graph variable\(s\): \$\{output\} \(node 'Write' parameter 'file'\); "
                                         r"give them with -Poutput=VALUE"):
        g.substitute({"input": "a.tif"})
    # gpt leaves an unset bare $output as written (TemplateReader); it is no error
    assert parse_graph("t.xml", text=READ_WRITE).substitute({"input": "a.tif"}).nodes["Write"].parameters["file"] == "$output"


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


@pytest.mark.real_data
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


# --- gpt's template reader (ceres TemplateReader, applied by GraphIO.read) ----------------------

from snap_operators.engine.graph import template  # noqa: E402


@pytest.mark.parametrize(
    "props, text, expected",
    [  # TemplateReaderTest, case for case
        ({}, "<module><symbolicName>${id}</symbolicName></module>", "<module><symbolicName>${id}</symbolicName></module>"),
        ({"id": "com.bc.x"}, "<s>$id</s>", "<s>com.bc.x</s>"),
        ({"id": "com.bc.x"}, "<s>${id}</s><v>${version}</v>", "<s>com.bc.x</s><v>${version}</v>"),
        ({"id": "com.bc.x", "version": "1.0"}, "<s>${id}</s><v>${version}</v>", "<s>com.bc.x</s><v>1.0</v>"),
        ({"bar": "foo"}, "blah, blah, $bar", "blah, blah, foo"),
        ({"bar": "foo"}, "${bar}, blah, blah", "foo, blah, blah"),
        ({"bar": "foo"}, "$bar$bar, blah, blah", "$bar$bar, blah, blah"),  # '$' continues a key: 'bar$bar'
        ({"bar": "foo"}, "${bar} ${bar}, blah, blah", "foo foo, blah, blah"),
        ({"bar": "foo"}, "${bar}-${bar}, blah, blah", "foo-foo, blah, blah"),
        ({"bar": "foo"}, "${bar, blah, blah", "${bar, blah, blah"),
        ({"bar": "foo"}, "blah, blah $-bar", "blah, blah $-bar"),
        ({"emptyValue": ""}, "$emptyValue more text", " more text"),
        ({"spaceValue": " "}, "${spaceValue}_more text", " _more text"),
        ({"nlValue": "\n"}, "$nlValue more text", "\n more text"),
    ],
)
def test_template_reader_cases(props, text, expected):
    assert template(text, props) == expected


def test_band_maths_references_reach_the_expression_parser():
    """`$1.B4` is no key; `$sourceProduct.1.B4` is the key 'sourceProduct.1.B4', not 'sourceProduct'."""
    expr = "($sourceProduct.1.B8 - $1.B4) / ($sourceProduct.B8 + $2.B4) * $k"
    g = parse_graph("t.xml", text=_g(f"""<node id="bm"><operator>BandMaths</operator>
        <sources><sourceProduct refid="${{sourceProduct}}"/></sources><parameters><targetBands><targetBand>
        <name>x</name><expression>{expr}</expression></targetBand></targetBands></parameters></node>"""))
    assert g.variables() == {"sourceProduct"}
    s = g.substitute({"sourceProduct": "ReadOp@sourceProduct", "k": "2"})
    assert s.nodes["bm"].sources == [("sourceProduct", "ReadOp@sourceProduct")]
    band = dict(s.nodes["bm"].parameters["targetBands"][0][1])
    assert band["expression"] == "($sourceProduct.1.B8 - $1.B4) / ($sourceProduct.B8 + $2.B4) * 2"
    # only a set key with its dots is replaced, braced or bare
    assert template("$a.b ${a.b} $a.b.c", {"a": "X", "a.b": "Y"}) == "Y Y $a.b.c"


def test_unset_source_variable_names_the_source_and_gpt_option():
    g = parse_graph("t.xml", text=_g("""<node id="n"><operator>BandMerge</operator>
        <sources><sourceProduct>${sourceProduct}</sourceProduct></sources></node>"""))
    with pytest.raises(GraphError) as e:
        g.substitute({})
    assert str(e.value) == ("unresolved graph variable(s): ${sourceProduct} (node 'n' source 'sourceProduct'); "
                            "give them with -SsourceProduct=FILE (a source product) or -PsourceProduct=NODE_ID")


def test_variable_gpt_would_not_replace_is_an_error():
    """gpt's reader copies the character after a replaced ${a} unexamined: in ${a}${b} it never sees ${b}."""
    g = parse_graph("t.xml", text=_g("<node id='w'><operator>Write</operator><parameters><file>${dir}${name}</file>"
                                     "</parameters></node>"))
    assert g.variables() == {"dir", "name"}
    with pytest.raises(GraphError, match=r"\$\{name\} \(node 'w' parameter 'file'\) is set but gpt's template reader "
                                         r"does not replace it there"):
        g.substitute({"dir": "/o/", "name": "x.tif"})
    ok = parse_graph("t.xml", text=_g("<node id='w'><operator>Write</operator><parameters><file>${dir}/${name}</file>"
                                      "</parameters></node>"))
    assert ok.substitute({"dir": "/o", "name": "x.tif"}).nodes["w"].parameters["file"] == "/o/x.tif"


def test_operator_patterns_are_optional_but_replaced_when_set():
    g = parse_graph("t.xml", text=_g("<node id='c'><operator>Collocate</operator><parameters>"
                                     "<referenceComponentPattern>${ORIGINAL_NAME}_M</referenceComponentPattern>"
                                     "</parameters></node>"))
    assert g.variables() == set()
    assert g.substitute({}).nodes["c"].parameters["referenceComponentPattern"] == "${ORIGINAL_NAME}_M"
    assert g.substitute({"ORIGINAL_NAME": "b"}).nodes["c"].parameters["referenceComponentPattern"] == "b_M"


def test_source_products_list_is_split_after_substitution():
    """gpt's SourceList reads <sourceProducts> as comma-separated ids of the substituted text."""
    text = _g("""<node id="m"><operator>BandMerge</operator>
        <sources><sourceProducts>${sourceProducts}</sourceProducts></sources></node>""")
    g = parse_graph("t.xml", text=text)
    assert g.variables() == {"sourceProducts"}
    s = g.substitute({"sourceProducts": "ReadOp@sourceProduct,ReadOp@sourceProduct.2"})
    assert s.nodes["m"].sources == [("sourceProducts0", "ReadOp@sourceProduct"), ("sourceProducts1", "ReadOp@sourceProduct.2")]
    assert g.substitute({"sourceProducts": ""}).nodes["m"].sources == []


def test_unset_bare_whole_value_is_kept_with_a_warning(caplog):
    g = parse_graph("t.xml", text=READ_WRITE)
    with caplog.at_level("WARNING"):
        s = g.substitute({"input": "a.tif"})
    assert s.nodes["Write"].parameters["file"] == "$output"
    assert "node 'Write' parameter 'file' is '$output', but no variable 'output' is set" in caplog.text
