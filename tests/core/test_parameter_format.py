"""One formatter of parameter values and types (core.spec) for ``snap-pc OP -h`` and the SNAP descriptors.

gpt's help prints a descriptor's ``defaultValue`` text and ``getTypeName`` of
its ``dataType``; the help and the descriptors once formatted both separately
(lists of booleans as ``True,False`` in one, ``true,false`` in the other;
``int`` in the help where SNAP has ``java.lang.Integer``, which gpt names
``integer``).
"""

from __future__ import annotations

import re

import pytest

from snap_operators.apps.cli import describe_operator
from snap_operators.core import operator as operator_module
from snap_operators.core.operator import Operator, operators
from snap_operators.core.spec import OperatorSpec, Parameter, format_value
from snap_operators.snap.descriptors import parameter_element


def test_values_as_snap_reads_them():
    assert format_value(True) == "true" and format_value(False) == "false"
    assert format_value(["NDVI", "NDWI"]) == "NDVI,NDWI" and format_value((True, False)) == "true,false"
    assert format_value(0.25) == "0.25" and format_value(4) == "4" and format_value("Nearest") == "Nearest"


@pytest.mark.parametrize("param, java, name", [
    (Parameter("s", "String"), "String", "string"),
    (Parameter("f", "File"), "java.io.File", "file"),
    (Parameter("b", "String[]"), "String[]", "string,string,string,..."),
    (Parameter("d", "double", default=1.0), "double", "double"),
    (Parameter("d", "double"), "java.lang.Double", "double"),
    (Parameter("i", "int", default=3), "int", "int"),
    (Parameter("i", "int"), "java.lang.Integer", "integer"),  # gpt's <integer>, as for ResamplingOp's Integer fields
    (Parameter("l", "int[]"), "String", "string"),  # SNAP cannot resolve int[]: comma-separated text
])
def test_types_as_snap_and_gpt_name_them(param, java, name):
    assert (param.java_type, param.type_name) == (java, name)


def _help_entries(alias: str) -> dict[str, tuple[str, str | None]]:
    """Parameter -> (type name, default text) as ``snap-pc ALIAS -h`` prints them."""
    text = describe_operator(alias)
    params = text.split("\nParameter Options:\n", 1)[1].split("\nGraph XML Format:\n", 1)[0]
    out, current = {}, None
    for line in params.splitlines():
        m = re.match(r"  -P(\w+)=<([^>]*)>", line)
        if m:
            current = m.group(1)
            out[current] = (m.group(2), None)
        d = re.search(r"Default value is '(.*)'\.$", line)
        if d and current:
            out[current] = (out[current][0], d.group(1))
    return out


@pytest.mark.parametrize("alias", sorted(operators()))
def test_help_says_what_the_descriptor_says(alias):
    spec = operators()[alias].spec
    entries = _help_entries(alias) if any(p.type != "element[]" for p in spec.parameters) else {}
    for p in spec.parameters:
        if p.type == "element[]":
            continue
        el = parameter_element(p)
        default = el.findtext("defaultValue")
        assert entries[p.name] == (p.type_name, default), p.name
        assert p.java_type == el.findtext("dataType")


def test_a_list_of_booleans_reads_alike(monkeypatch):
    class FlagsOp(Operator):
        spec = OperatorSpec("FlagsTestOp", "", sources=(),
                            parameters=(Parameter("flags", "String[]", default=[True, False]),))

    monkeypatch.setitem(operator_module._OPERATORS, "FlagsTestOp", FlagsOp)
    assert _help_entries("FlagsTestOp")["flags"] == ("string,string,string,...", "true,false")
    assert parameter_element(FlagsOp.spec.parameters[0]).findtext("defaultValue") == "true,false"
    assert "-PtargetWidth=<integer>" in describe_operator("Resample")
