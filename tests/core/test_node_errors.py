"""One way to tell an error in its graph node: core.errors.in_node / node_label.

The engine's build and output claims, the SNAP adapter and every operator that
re-raises an error from below once prefixed it each their own way
(``node 'x' (Op): ...`` in the engine, ``Op (node 'x'): ...`` in operators),
skipped the prefix whenever the node id occurred anywhere in the message
(node ``e`` in almost any English message), and turned some errors into
others (a rules error into a bare ParameterError), losing attributes.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from snap_operators.core import operator as operator_module
from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import (
    ExpressionError,
    OperatorError,
    ParameterError,
    ProductReadError,
    ProductWriteError,
    in_node,
    node_label,
)
from snap_operators.core.operator import Operator
from snap_operators.core.outputs import sink_files
from snap_operators.core.spec import OperatorSpec, Parameter
from snap_operators.engine.graph import parse_graph
from snap_operators.engine.runner import build, run_graph


def test_label_and_prefix():
    assert node_label("Read", "r1") == "Read (node 'r1')"
    assert node_label("Read", "Read") == node_label("Read", None) == "Read"
    err = in_node(ProductReadError("file not found: a.tif"), "r1", "Read")
    assert type(err) is ProductReadError and str(err) == "Read (node 'r1'): file not found: a.tif"
    # Said once, whoever said it first.
    assert str(in_node(err, "r1", "Read")) == str(err)
    assert str(in_node(OperatorError("Read: band 'B9' missing"), "r1", "Read")) == "Read (node 'r1'): band 'B9' missing"
    assert str(in_node(OperatorError("Read: band 'B9' missing"), "Read", "Read")) == "Read: band 'B9' missing"
    # The node id inside the message is no reason to leave the node out.
    assert str(in_node(ParameterError("parameter 'targetWidth': cannot read 'e'"), "e", "Resample")) == \
        "Resample (node 'e'): parameter 'targetWidth': cannot read 'e'"


def test_the_error_stays_itself():
    exc = ExpressionError("Could not parse expression", column=5, expression="B4 + * B8")
    err = in_node(exc, "ndvi", "BandMaths")
    assert type(err) is ExpressionError and (err.column, err.expression) == (5, "B4 + * B8")
    assert str(err) == "BandMaths (node 'ndvi'): Could not parse expression (column 5)"
    write = in_node(ProductReadError("disk full"), "w", "Write", ProductWriteError)
    assert type(write) is ProductWriteError and str(write) == "Write (node 'w'): disk full"


def test_operator_error_uses_the_same_label():
    class Op(Operator):
        spec = OperatorSpec("LabelTestOp", "", sources=())

    assert str(Op(node_id="x").error("boom")) == f"{node_label('LabelTestOp', 'x')}: boom"
    assert str(Op().error("boom")) == "LabelTestOp: boom"


# --- the engine --------------------------------------------------------------------------------


def write_tif(path):
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="float32", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
        dst.write(np.ones((8, 8), np.float32), 1)
    return path


def graph(tmp_path, resample_id: str, width: str):
    text = f"""<graph id="g"><version>1.0</version>
      <node id="Read"><operator>Read</operator><parameters><file>{write_tif(tmp_path / "in.tif")}</file></parameters></node>
      <node id="{resample_id}"><operator>Resample</operator><sources><sourceProduct refid="Read"/></sources>
        <parameters><targetWidth>{width}</targetWidth></parameters></node>
      <node id="Write"><operator>Write</operator><sources><sourceProduct refid="{resample_id}"/></sources>
        <parameters><file>{tmp_path / "out.tif"}</file><formatName>GeoTIFF</formatName></parameters></node>
    </graph>"""
    return parse_graph("g.xml", text=text)


@pytest.mark.parametrize("node_id", ["e", "resample", "Resample"])
def test_build_tells_the_node_once(tmp_path, node_id):
    with pytest.raises(ParameterError) as err:
        build(graph(tmp_path, node_id, "wide"), ExecutionContext())
    label = node_label("Resample", node_id)
    message = str(err.value)
    assert message.startswith(f"{label}: ") and message.count(label) == 1 and "Resample: Resample" not in message
    assert "parameter 'targetWidth'" in message


class _SaysNoOp(Operator):
    """A sink whose output_files() refuses its parameter, as a sink may before any work."""

    spec = OperatorSpec("SaysNoTestOp", "", parameters=(Parameter("file", "File"),), sink=True)
    output_parameters = ("file",)

    def initialize(self):
        return self.source_product()

    def output_files(self):
        raise ProductWriteError(f"'{self.parameters['file']}' is no file name")


def test_output_claims_tell_the_node(tmp_path, monkeypatch):
    monkeypatch.setitem(operator_module._OPERATORS, "SaysNoTestOp", _SaysNoOp)
    text = f"""<graph id="g"><version>1.0</version>
      <node id="Read"><operator>Read</operator><parameters><file>{write_tif(tmp_path / "in.tif")}</file></parameters></node>
      <node id="no"><operator>SaysNoTestOp</operator><sources><sourceProduct refid="Read"/></sources>
        <parameters><file>nothing</file></parameters></node>
    </graph>"""
    with pytest.raises(ProductWriteError, match=r"^SaysNoTestOp \(node 'no'\): 'nothing' is no file name$"):
        run_graph(parse_graph("g.xml", text=text), ExecutionContext())
    op = _SaysNoOp({}, {"file": "nothing"}, node_id="no")
    with pytest.raises(ProductWriteError, match=r"^SaysNoTestOp \(node 'no'\): "):
        sink_files(op)  # the SNAP adapter's clean-up asks the same way


def test_a_node_that_writes_nothing_claims_nothing():
    class Quiet(Operator):
        spec = OperatorSpec("QuietTestOp", "", sources=())

    assert sink_files(Quiet()) == []
