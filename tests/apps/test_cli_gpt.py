"""`snap-pc` as gpt's command line: -S sources, -t/-f and the default Write, `snap-pc OP`, `snap-pc OP -h`.

Each test names the gpt behaviour it checks (snap-gpf's org.esa.snap.core.gpf.main and its tests).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from snap_operators.apps.cli import (
    describe_operator,
    graph_for_operator,
    graph_for_run,
    parse_assignments,
    source_map,
    source_node_ids,
    target_and_format,
)
from snap_operators.core import operator as operator_module
from snap_operators.core.errors import SnapPcError
from snap_operators.core.operator import Operator
from snap_operators.core.spec import OperatorSpec, Parameter, SourceSpec

NDVI_PARAMS = """<parameters>
  <targetBands>
    <targetBand><name>ndvi</name><type>float32</type><expression>(B8 - B4) / (B8 + B4)</expression>
      <noDataValue>NaN</noDataValue></targetBand>
  </targetBands>
</parameters>"""

#: A graph without a Write node whose sources come from gpt's -S / source file arguments.
NO_WRITE = """<graph id="g"><version>1.0</version>
  <node id="BandMaths"><operator>BandMaths</operator>
    <sources><sourceProduct>${sourceProduct}</sourceProduct><sourceProduct.1 refid="${second}"/></sources>
    <parameters><targetBands><targetBand><name>d</name><type>float32</type>
      <expression>$sourceProduct.1.B8 - B4</expression><noDataValue>NaN</noDataValue></targetBand></targetBands>
    </parameters></node>
</graph>"""

MULTI = """<graph id="chain1"><version>1.0</version>
  <node id="node1"><operator>BandMerge</operator>
    <sources><sourceProducts>${sourceProducts}</sourceProducts></sources></node>
</graph>"""


@pytest.fixture
def work(write_s2, tmp_path, monkeypatch):
    """A folder with two small scenes, used as the working directory (gpt's default target.dim lands here)."""
    monkeypatch.chdir(tmp_path)
    a = write_s2(tmp_path / "a.tif", size=64, seed=1)
    b = write_s2(tmp_path / "b.tif", size=64, seed=2)
    return tmp_path, a, b


def _touch(folder, *names):
    for n in names:
        (Path(folder) / n).write_bytes(b"")
    return [str(Path(folder) / n) for n in names]


# --- CommandLineArgs -----------------------------------------------------------------------


def test_source_map_as_command_line_args():
    """CommandLineArgsTest.testOpWithSource / testMultiSourceOptions / testSourceOptions."""
    assert source_map(["source.dim"], {}) == {
        "sourceProduct": "source.dim", "sourceProduct.1": "source.dim", "sourceProduct1": "source.dim"}
    m = source_map(["./inp/cloud-mask.dim", "source.dim", "input.dim"], {"ndvi": "./inp/NDVI.dim"})
    assert m == {
        "ndvi": "./inp/NDVI.dim",
        "sourceProduct": "./inp/cloud-mask.dim", "sourceProduct.1": "./inp/cloud-mask.dim",
        "sourceProduct.2": "source.dim", "sourceProduct.3": "input.dim",
        "sourceProduct1": "./inp/cloud-mask.dim", "sourceProduct2": "source.dim", "sourceProduct3": "input.dim",
    }
    assert list(m) == sorted(m)  # a TreeMap
    assert parse_assignments(["ndviProduct=./inp/NDVI.dim", " cloudProduct = ./inp/cloud-mask.dim "], "-S") == {
        "ndviProduct": "./inp/NDVI.dim", "cloudProduct": "./inp/cloud-mask.dim"}  # names and values trimmed


@pytest.mark.parametrize("item, message", [("foo", "Missing '=' in '-Sfoo'"), ("=x.dim", "Empty identifier in '-S=x.dim'")])
def test_name_value_errors_as_gpt(item, message):
    with pytest.raises(SnapPcError, match=message):
        parse_assignments([item], "-S")


@pytest.mark.parametrize(
    "target, fmt, expected",
    [
        (None, None, ("target.dim", "BEAM-DIMAP")),           # DEFAULT_TARGET_FILEPATH, DEFAULT_FORMAT_NAME
        ("output.dim", None, ("output.dim", "BEAM-DIMAP")),   # testOpWithTargetAndSource
        ("out", None, ("out", "BEAM-DIMAP")),                 # no extension: the default format
        ("out.tif", None, ("out.tif", "GeoTIFF")),            # detectWriterFormat by extension
        ("dir.v2/out.TIFF", None, ("dir.v2/out.TIFF", "GeoTIFF")),
        ("target.tif", "GeoTIFF", ("target.tif", "GeoTIFF")),  # testFormatOption
        ("x.tif", "cog", ("x.tif", "COG")),                   # format names in any case (ProductIOPlugInManager)
    ],
)
def test_target_and_format(target, fmt, expected):
    assert target_and_format(target, fmt) == expected


def test_unknown_target_format_is_gpts_error():
    with pytest.raises(SnapPcError, match="Output format unknown for target 'x.png'"):
        target_and_format("x.png", None)
    with pytest.raises(SnapPcError, match="Output format unknown: 'HDF5'"):
        target_and_format("x.h5", "HDF5")


# --- CommandLineTool.runGraph: -S sources, ${sourceProducts}, the default Write -----------


def test_source_node_ids_one_read_per_file():
    """getSourceNodeIdMap: ReadOp@ + the first name of each file, in name order."""
    m = source_map(["ernie.dim", "idefix.dim"], {"Vincent": "vincent.dim"})
    ids = source_node_ids(m)
    assert ids["sourceProduct"] == ids["sourceProduct.1"] == ids["sourceProduct1"] == "ReadOp@sourceProduct"
    assert ids["sourceProduct.2"] == ids["sourceProduct2"] == "ReadOp@sourceProduct.2"
    assert ids["Vincent"] == "ReadOp@Vincent"


@pytest.mark.parametrize(
    "files, named, reads",
    [  # CommandLineToolMultiSourceGraphTest
        (["ernie.dim", "idefix.dim"], {}, {"ReadOp@sourceProduct": "ernie.dim", "ReadOp@sourceProduct.2": "idefix.dim"}),
        (["ernie.dim", "idefix.dim", "obelix.dim"], {},
         {"ReadOp@sourceProduct": "ernie.dim", "ReadOp@sourceProduct.2": "idefix.dim", "ReadOp@sourceProduct.3": "obelix.dim"}),
        (["ernie.dim", "idefix.dim"], {"Vincent": "vincent.dim"},
         {"ReadOp@Vincent": "vincent.dim", "ReadOp@sourceProduct": "ernie.dim", "ReadOp@sourceProduct.2": "idefix.dim"}),
        ([], {"Vincent": "vincent.dim", "ernie": "ernie.dim", "idefix": "idefix.dim"},
         {"ReadOp@Vincent": "vincent.dim", "ReadOp@ernie": "ernie.dim", "ReadOp@idefix": "idefix.dim"}),
    ],
)
def test_graph_sources_reads_and_default_write(tmp_path, monkeypatch, files, named, reads):
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path, *files, *named.values())
    (tmp_path / "graph.xml").write_text(MULTI)
    g = graph_for_run("graph.xml", files=files, named=named)
    assert len(g.nodes) == 1 + len(reads) + 1
    for nid, path in reads.items():
        assert g.nodes[nid].operator == "Read" and g.nodes[nid].parameters == {"file": path}
    # ${sourceProducts}: the ids of sourceProduct1..N (GraphIO.addSourceProductsVariable)
    positional = [source_node_ids(source_map(files, named))[f"sourceProduct{i}"] for i in range(1, len(files) + 1)]
    assert [ref for _, ref in g.nodes["node1"].sources] == positional
    write = g.nodes["WriteOp@node1"]
    assert write.operator == "Write" and write.sources == [("sourceProduct", "node1")]
    assert write.parameters["file"] == "target.dim" and write.parameters["formatName"] == "BEAM-DIMAP"


def test_graph_variables_and_sources_together(tmp_path, monkeypatch):
    """CommandLineToolGraphTest.testGraphWithParametersAndSourceOptions: -P values, -S ids, Write of the last node."""
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path, "ernie.dim", "idefix.dim")
    (tmp_path / "graph.xml").write_text("""<graph id="chain1"><version>1.0</version>
      <node id="node1"><operator>Resample</operator><sources><input>${sourceProduct}</input></sources>
        <parameters><targetResolution>${threshold}</targetResolution></parameters></node>
      <node id="node2"><operator>BandMerge</operator><sources><input1 refid="node1"/><input2>${sourceProduct2}</input2>
        </sources><parameters><sourceBands>${expression}</sourceBands></parameters></node></graph>""")
    g = graph_for_run("graph.xml", {"expression": "a,b", "threshold": "20"}, named={
        "sourceProduct": "ernie.dim", "sourceProduct2": "idefix.dim"}, target="out.tif")
    assert len(g.nodes) == 5
    assert g.nodes["node1"].sources == [("input", "ReadOp@sourceProduct")]
    assert g.nodes["node1"].parameters["targetResolution"] == "20"
    assert g.nodes["node2"].sources == [("input1", "node1"), ("input2", "ReadOp@sourceProduct2")]
    assert g.nodes["node2"].parameters["sourceBands"] == "a,b"
    assert g.nodes["WriteOp@node2"].parameters["file"] == "out.tif"
    assert g.nodes["WriteOp@node2"].parameters["formatName"] == "GeoTIFF"


def test_no_default_write_when_graph_writes_or_last_node_is_a_sink(tmp_path, caplog):
    """findWriterNode; autoWriteDisabled (testGraphWithOpImplementingOutputInterface)."""
    src = _touch(tmp_path, "c.tif")[0]
    writes = tmp_path / "w.xml"
    writes.write_text(f"""<graph id="g"><version>1.0</version>
      <node id="Read"><operator>Read</operator><parameters><file>{src}</file></parameters></node>
      <node id="Write"><operator>Write</operator><sources><sourceProduct refid="Read"/></sources>
        <parameters><file>{tmp_path}/o.tif</file><formatName>GeoTIFF</formatName></parameters></node>
      <node id="Resample"><operator>Resample</operator><sources><sourceProduct refid="Read"/></sources></node></graph>""")
    with caplog.at_level("WARNING"):
        g = graph_for_run(str(writes), target="x.dim")
    assert not [n for n in g.nodes if n.startswith("WriteOp@")]
    assert "-t/-f are not used" in caplog.text
    sink = tmp_path / "s.xml"
    sink.write_text(f"""<graph id="g"><version>1.0</version>
      <node id="Read"><operator>Read</operator><parameters><file>{src}</file></parameters></node>
      <node id="Labels"><operator>LabelMaskExport</operator><sources><sourceProduct refid="Read"/></sources>
        <parameters><file>{tmp_path}/l.gpkg</file></parameters></node></graph>""")
    assert list(graph_for_run(str(sink)).nodes) == ["Read", "Labels"]


def test_run_graph_without_write_writes_gpts_default_target(run_cli, work):
    tmp, a, b = work
    (tmp / "g.xml").write_text(NO_WRITE)
    code, out, err = run_cli("run", "g.xml", "a.tif", "-Ssecond=b.tif", "--tile-size", 32)
    assert code == 0, err
    assert f"wrote {tmp / 'target.dim'}" in out
    from snap_operators.io import open_product

    got = open_product(tmp / "target.dim").band("d").data.compute()
    np.testing.assert_allclose(got[3:, 3:], (b[1] - a[0])[3:, 3:], rtol=1e-6)  # $sourceProduct.1.B8: the source the graph names sourceProduct.1
    code, out, err = run_cli("run", "g.xml", "-t", "d", "-f", "GeoTIFF", "-S", "second=b.tif", "a.tif")
    assert code == 0, err
    with rasterio.open(tmp / "d.tif") as ds:
        assert ds.descriptions == ("d",)


def test_run_graph_bad_target_or_source_one_line_nothing_written(run_cli, one_line_error, files_in, work, capsys):
    tmp, _, _ = work
    (tmp / "g.xml").write_text(NO_WRITE)
    before = files_in(tmp)
    for args, expect in [
        (["-t", "x.png", "a.tif", "-Ssecond=b.tif"], "Output format unknown"),
        (["a.tif", "-Ssecond=nope.tif"], "source 'second': Specified 'file' [nope.tif] does not exist."),
        (["-Ssecond=b.tif"], "unresolved graph variable(s): ${sourceProduct} (node 'BandMaths' source 'sourceProduct')"),
        (["a.tif", "-Ssecond"], "Missing '=' in '-Ssecond'"),
    ]:
        code, _, err = run_cli("run", "g.xml", *args)
        assert code == 1
        assert expect in one_line_error(err)
        assert files_in(tmp) == before
    with pytest.raises(SystemExit) as e:  # argparse's usage and error, as for every command
        run_cli("run", "g.xml", "a.tif", "-Ssecond=b.tif", "--bogus")
    assert e.value.code == 2 and "snap-pc run: error: unrecognized arguments: --bogus" in capsys.readouterr().err
    assert files_in(tmp) == before


def test_source_variable_used_as_a_file_says_to_use_P(run_cli, one_line_error, ndvi_graph, work):
    """gpt makes ${input} 'ReadOp@input' and later fails on a missing file 'ReadOp@input'; here one line says why."""
    tmp, _, _ = work
    (tmp / "ndvi.xml").write_text(ndvi_graph)
    code, _, err = run_cli("run", "ndvi.xml", "-Sinput=a.tif", "-Poutput=o.tif", "-Pexpr=B8")
    line = one_line_error(err)
    assert code == 1 and "node 'Read' parameter 'file' is the source node id 'ReadOp@input'" in line
    assert "-Pinput=a.tif" in line
    assert not (tmp / "o.tif").exists()


# --- CommandLineTool.runOperator: snap-pc OP ---------------------------------------------


def test_operator_with_parameter_file_and_target(run_cli, work):
    tmp, a, _ = work
    (tmp / "ndvi.xml").write_text(NDVI_PARAMS)
    code, out, err = run_cli("BandMaths", "-p", "ndvi.xml", "-t", "ndvi.tif", "a.tif")
    assert code == 0, err
    assert f"wrote {tmp / 'ndvi.tif'}" in out
    with rasterio.open(tmp / "ndvi.tif") as ds:
        np.testing.assert_allclose(ds.read(1), (a[1] - a[0]) / (a[1] + a[0]), rtol=1e-6)


def test_operator_default_target_and_read_parameters(run_cli, work):
    """No -t: target.dim, BEAM-DIMAP. -PpixelRegion goes to the reader of the sources (additionalReadParameters)."""
    tmp, a, b = work
    code, out, err = run_cli("BandMerge", "-PpixelRegion=0,0,40,30", "a.tif")
    assert code == 0, err
    assert (tmp / "target.dim").is_file() and (tmp / "target.data").is_dir()
    from snap_operators.io import open_product

    p = open_product(tmp / "target.dim")
    assert p.band("B8").data.shape == (30, 40)
    np.testing.assert_allclose(p.band("B8").data.compute(), a[1][:30, :40])


def test_operator_graph_names_and_sink(tmp_path):
    """Sources as gpt numbers them (sourceProduct.1, .2 ...; -S names), Write only for a non-sink operator."""
    a, b, c = _touch(tmp_path, "a.tif", "b.tif", "c.tif")
    g = graph_for_operator("BandMerge", {"geographicError": "0.1"}, [a, b], {"extra": c}, target=str(tmp_path / "m.tif"))
    assert g.nodes["BandMerge"].sources == [
        ("sourceProduct.1", "ReadOp@sourceProduct"), ("sourceProduct.2", "ReadOp@sourceProduct.2"), ("extra", "ReadOp@extra")]
    assert g.nodes["WriteOp@BandMerge"].parameters["formatName"] == "GeoTIFF"
    labels = graph_for_operator("LabelMaskExport", {"file": str(tmp_path / "l.gpkg")}, [a])
    assert "WriteOp@LabelMaskExport" not in labels.nodes  # a sink writes its own files


def test_sink_operator_writes_only_its_own_files(run_cli, work):
    tmp, _, _ = work
    with rasterio.open(tmp / "a.tif") as src:
        profile = src.profile
    profile.update(count=1, dtype="uint8", nodata=255)
    with rasterio.open(tmp / "classes.tif", "w", **profile) as dst:
        cls = np.ones((64, 64), "uint8")
        cls[:, 32:] = 2
        dst.write(cls, 1)
        dst.set_band_description(1, "class_id")
    code, out, err = run_cli("LabelMaskExport", "-Pfile=labels.gpkg", "classes.tif")
    assert code == 0, err
    assert (tmp / "labels.gpkg").is_file() and not (tmp / "target.dim").exists()


@pytest.mark.parametrize(
    "args, expect",
    [
        (["Resample", "-PtargetWidht=48", "a.tif"], "Operator 'Resample': unknown parameter 'targetWidht'; did you mean 'targetWidth'?"),
        (["BandMaths", "-PtargetBands=x", "a.tif"], "parameter 'targetBands' is a list of <targetBand> elements; give it in an XML parameter file"),
        (["Resample", "-PtargetWidth=48"], "Operator 'Resample': no source product given"),
        (["Resample", "-PtargetWidth=48", "nope.tif"], "Specified 'file' [nope.tif] does not exist."),
        (["Resample", "-PtargetWidth=x", "-PtargetHeight=9", "a.tif"], "parameter 'targetWidth': cannot read 'x' as int"),
        (["Resample", "--bogus", "a.tif"], "snap-pc Resample: unrecognized arguments: --bogus"),
        (["Resample", "-t", "out.png", "a.tif"], "Output format unknown"),
        (["resample", "a.tif"], "unknown command or operator 'resample'; did you mean 'Resample'?"),
        (["BandMath", "-h"], "unknown operator 'BandMath'; did you mean 'BandMaths'?"),
        (["rnu", "g.xml"], "did you mean 'run'?"),
        (["Terrain-Correction", "a.tif"], "operator Terrain-Correction is provided by SNAP; run it with gpt"),
        (["graph.xml"], "'graph.xml' is no command or operator; to run a graph file: snap-pc run graph.xml"),
    ],
)
def test_operator_bad_input_one_line_nothing_written(run_cli, one_line_error, files_in, work, args, expect):
    tmp, _, _ = work
    before = files_in(tmp)
    code, out, err = run_cli(*args)
    assert code == 1
    assert expect in one_line_error(err)
    assert files_in(tmp) == before


def test_operator_debug_flag_anywhere(run_cli, work):
    code, _, err = run_cli("Resample", "-PtargetWidth=x", "a.tif", "-e")
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("Error:")


# --- CommandLineUsage: snap-pc OP -h ------------------------------------------------------


class _FooOp(Operator):
    spec = OperatorSpec(
        alias="FooOp", description="",
        sources=(SourceSpec("input1"), SourceSpec("input2")),
        parameters=(Parameter("z", "float"), Parameter("y", "String")),
    )


def test_operator_usage_text_as_gpt(monkeypatch):
    """CommandLineUsageTest.testOperatorUsageText (FooOp without its structure parameter), with snap-pc for gpt."""
    monkeypatch.setitem(operator_module._OPERATORS, "FooOp", _FooOp)
    assert describe_operator("FooOp") == (
        "Usage:\n"
        "  snap-pc FooOp [options] \n"
        "\n"
        "\n"
        "Source Options:\n"
        "  -Sinput1=<file>    Sets source 'input1' to <filepath>.\n"
        "                     This is a mandatory source.\n"
        "  -Sinput2=<file>    Sets source 'input2' to <filepath>.\n"
        "                     This is a mandatory source.\n"
        "\n"
        "Parameter Options:\n"
        "  -Py=<string>    Sets parameter 'y' to <string>.\n"
        "  -Pz=<float>     Sets parameter 'z' to <float>.\n"
        "\n"
        "Graph XML Format:\n"
        "  <graph id=\"someGraphId\">\n"
        "    <version>1.0</version>\n"
        "    <node id=\"someNodeId\">\n"
        "      <operator>FooOp</operator>\n"
        "      <sources>\n"
        "        <input1>${input1}</input1>\n"
        "        <input2>${input2}</input2>\n"
        "      </sources>\n"
        "      <parameters>\n"
        "        <z>float</z>\n"
        "        <y>string</y>\n"
        "      </parameters>\n"
        "    </node>\n"
        "  </graph>\n"
    )


def test_operator_help_any_case_one_text(run_cli):
    code, out, _ = run_cli("Resample", "-h")
    assert code == 0
    assert out.startswith("Usage:\n  snap-pc Resample [options] \n\nDescription:\n")
    assert "  -SsourceProduct=<file>    The source product which is to be resampled.\n" in out
    assert ("  -Pupsampling=<string>" in out and "Value must be one of 'Nearest', 'Bilinear', 'Bicubic', "
            "'Cubic_Convolution'.\n" in out and "Default value is 'Nearest'.\n" in out)
    assert "Valid interval is (0,*).\n" in out and "Parameter unit is 'CRS units'.\n" in out
    for args in (["resample", "--help"], ["help", "RESAMPLE"], ["-v", "Resample", "-PtargetWidth=1", "-h"]):
        code, again, _ = run_cli(*args)
        assert code == 0 and again == out
    code, out, _ = run_cli("BandMaths", "-h")
    assert out.startswith("Usage:\n  snap-pc BandMaths [options] <source-file-1> <source-file-2> ...\n")
    assert "<sourceProducts>${sourceProducts}</sourceProducts>" in out and "<targetBand/>" in out
    code, out, _ = run_cli("Write", "-h")
    assert "This is a mandatory parameter." in out and "'BEAM-DIMAP', 'GeoTIFF', 'GeoTIFF-BigTIFF', 'COG'" in out


def test_help_texts_answer():
    run = [sys.executable, "-m", "snap_operators.apps.cli"]
    top = subprocess.run(run + ["--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0 and "snap-pc OP [-Pname=value ...]" in top.stdout and "snap-pc Resample -h" in top.stdout
    r = subprocess.run(run + ["run", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for opt in ("-S NAME=FILE", "-t FILE, --target FILE", "-f FORMAT, --format FORMAT", "WriteOp@LAST", "target.dim"):
        assert opt in r.stdout
