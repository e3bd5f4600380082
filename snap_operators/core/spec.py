"""Declarative operator specs (SNAP's ``@OperatorMetadata``, ``@Parameter``...).

An :class:`OperatorSpec` is the single description of an operator: its alias,
sources, typed parameters and target bands. The graph engine converts and
validates XML parameter values with it, ``snap-pc help OP`` prints it, and the
SNAP adapter's ``-info.xml`` descriptors are generated from it.

Parameter types use SNAP's names: ``double``, ``float``, ``int``,
``boolean``, ``String``, ``String[]``, ``int[]``, ``File``, and ``element[]``
for nested lists such as BandMaths' ``targetBands/targetBand``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ParameterError

#: XML parameter values as the graph parser yields them: a leaf is its text
#: (``None`` for an empty element), an element with children is a list of
#: ``(tag, value)`` pairs in document order.
XmlValue = Any

_TYPES = ("double", "float", "int", "boolean", "String", "String[]", "int[]", "double[]", "File", "element[]")

#: Our parameter types -> SNAP's ``dataType`` in an operator descriptor
#: (resolved by SNAP's ``JavaTypeConverter``: primitives, ``java.lang``/``java.util``
#: names, or fully qualified class names). SNAP cannot resolve arrays of
#: primitives (``int[]``), so those travel as the comma-separated text our
#: engine also reads from graph XML. ``element[]`` has no SNAP descriptor form.
JAVA_TYPES: dict[str, str] = {
    "double": "double",
    "float": "float",
    "int": "int",
    "boolean": "boolean",
    "String": "String",
    "String[]": "String[]",
    "int[]": "String",
    "double[]": "String",
    "File": "java.io.File",
}

#: Boxed types of SNAP's primitive ``dataType`` names, for parameters without a default.
BOXED: dict[str, str] = {"double": "java.lang.Double", "float": "java.lang.Float", "int": "java.lang.Integer",
                         "boolean": "java.lang.Boolean"}


def format_value(value: Any) -> str:
    """A parameter value as SNAP's text: a descriptor's ``defaultValue``, gpt's "Default value is '...'".

    Booleans are ``true``/``false`` and lists comma-separated, as SNAP's
    converters write and read them; anything else is ``str()``.

    >>> format_value(True), format_value(["NDVI", "NDWI"]), format_value(0.5)
    ('true', 'NDVI,NDWI', '0.5')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Parameter:
    """One operator parameter.

    Parameters
    ----------
    name : str
        Name as written in graph XML (SNAP's parameter name).
    type : str
        One of ``double, float, int, boolean, String, String[], int[],
        double[], File, element[]``.
    default : object, optional
        Value used when the parameter is absent or empty (but see `keep_empty`).
    description, label, unit : str, optional
    interval : str, optional
        SNAP interval notation, e.g. ``"[0,1]"``, ``"(0,*)"``.
    value_set : tuple of str, optional
        Allowed values (case-sensitive, as SNAP).
    required : bool
        Error when absent and there is no default.
    item : str, optional
        For ``element[]``: the child element name (``targetBand``).
    keep_empty : bool
        A ``String`` set to an empty value keeps it (``""``) instead of
        taking the default: for parameters whose empty value means "none"
        (``maskBand``). SNAP's converters give an empty String for an empty
        value too; the other parameters take their default, more leniently.
    """

    name: str
    type: str = "String"
    default: Any = None
    description: str = ""
    label: str | None = None
    unit: str | None = None
    interval: str | None = None
    value_set: tuple[str, ...] | None = None
    required: bool = False
    item: str | None = None
    keep_empty: bool = False

    def __post_init__(self):
        if self.type not in _TYPES:
            raise ValueError(f"parameter {self.name}: unknown type {self.type!r}")
        if self.keep_empty and self.type != "String":
            raise ValueError(f"parameter {self.name}: keep_empty is for String parameters, not {self.type}")

    @property
    def java_type(self) -> str:
        """SNAP's ``dataType`` of this parameter (:data:`JAVA_TYPES`; not for ``element[]``).

        A primitive without a default is boxed: SNAP sets every parameter from
        its descriptor when it creates the operator (``setParameterDefaultValues``),
        and a primitive would become 0 or false, never "not given"; the boxed
        type stays null, so the operator's own default applies.
        """
        java = JAVA_TYPES[self.type]
        return BOXED.get(java, java) if self.default is None else java

    @property
    def type_name(self) -> str:
        """The type as gpt's help names it (``CommandLineUsage.getTypeName`` of :attr:`java_type`).

        The class's simple name with a lower-case first letter (``string``,
        ``file``, ``double``); arrays ``string,string,string,...``.

        >>> Parameter("file", "File").type_name, Parameter("bands", "String[]").type_name
        ('file', 'string,string,string,...')
        """
        java = self.java_type
        array = java.endswith("[]")
        simple = java.removesuffix("[]").rsplit(".", 1)[-1]
        name = simple[:1].lower() + simple[1:]
        return f"{name},{name},{name},..." if array else name

    def convert(self, raw: XmlValue, operator: str = "", given: bool = False) -> Any:
        """Convert a raw XML value to this parameter's Python type and validate it.

        `given`: the value was set, even if empty (an empty element, ``-Pname=``);
        with :attr:`keep_empty` it is then ``""``, not the default.
        """
        where = f"{operator}: parameter '{self.name}'" if operator else f"parameter '{self.name}'"
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            if given and self.keep_empty:
                return ""
            if self.required and self.default is None:
                raise ParameterError(f"{where} is required")
            return self.default
        try:
            value = _convert(self, raw)
        except (ValueError, TypeError) as exc:
            raise ParameterError(f"{where}: cannot read {_short(raw)!r} as {self.type} ({exc})") from None
        if self.value_set is not None:
            values = value if isinstance(value, list) else [value]
            for v in values:
                if str(v) not in self.value_set:
                    raise ParameterError(
                        f"{where}: {v!r} is not one of {', '.join(self.value_set)}"
                    )
        if self.interval is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not _in_interval(value, self.interval):
                raise ParameterError(f"{where}: {value} is outside {self.interval}")
        return value


def _short(raw: Any) -> str:
    s = str(raw)
    return s if len(s) < 60 else s[:57] + "..."


def _convert(p: Parameter, raw: XmlValue) -> Any:
    t = p.type
    if t == "element[]":
        if isinstance(raw, str):
            raise ValueError("expected nested elements")
        items = []
        for tag, value in raw:
            if p.item is not None and tag != p.item:
                raise ValueError(f"unexpected element <{tag}>, expected <{p.item}>")
            if isinstance(value, str) or value is None:
                raise ValueError(f"<{tag}> must contain elements")
            items.append({k: v for k, v in value})
        return items
    if not isinstance(raw, str):
        # A list given as child elements (<bands><band>B2</band>...</bands>).
        if t.endswith("[]"):
            raw = ",".join(v for _, v in raw if isinstance(v, str))
        else:
            raise ValueError("expected a value, got nested elements")
    s = raw.strip()
    if t in ("double", "float"):
        return _real(s)
    if t == "int":
        return _java_int(s)
    if t == "boolean":
        low = s.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError("expected true or false")
    if t == "String[]":
        return [x.strip() for x in s.split(",") if x.strip()]
    if t == "int[]":
        return [_java_int(x.strip()) for x in s.split(",") if x.strip()]
    if t == "double[]":
        return [_real(x.strip()) for x in s.split(",") if x.strip()]
    return s  # String, File


#: Java's int, which SNAP's int parameters are: larger values would overflow
#: numpy's int32 arrays and Java alike.
_INT_RANGE = (-(2**31), 2**31 - 1)
_INFINITY = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})


def _real(s: str) -> float:
    """A double; a finite literal too large for one is an error, not infinity (``inf`` is asked for by name)."""
    f = float(s)
    if math.isinf(f) and s.lower() not in _INFINITY:
        raise ValueError("too large for a double (at most about 1.8e308)")
    return f


def _java_int(s: str) -> int:
    """An int of Java's range from an integer literal (``12``, ``1e3``, ``12.0``)."""
    f = float(s)
    if not math.isfinite(f) or not f.is_integer():
        raise ValueError("not an integer")
    if not _INT_RANGE[0] <= f <= _INT_RANGE[1]:
        raise ValueError(f"outside the int range {_INT_RANGE[0]}..{_INT_RANGE[1]}")
    return int(f)


_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,]*)\s*,\s*([^\])]*)\s*([\])])\s*$")


def _in_interval(value: float, interval: str) -> bool:
    m = _INTERVAL.match(interval)
    if not m:
        return True
    lo_b, lo, hi, hi_b = m.groups()
    lo_v = -math.inf if lo.strip() in ("", "*") else float(lo)
    hi_v = math.inf if hi.strip() in ("", "*") else float(hi)
    ok_lo = value >= lo_v if lo_b == "[" else value > lo_v
    ok_hi = value <= hi_v if hi_b == "]" else value < hi_v
    return ok_lo and ok_hi


@dataclass(frozen=True)
class SourceSpec:
    """A source product slot.

    ``multiple=True`` accepts any number of sources (SNAP's
    ``@SourceProducts``): graph sources named ``sourceProduct``,
    ``sourceProduct.1``, ... or ``sourceProducts`` all land there.
    """

    name: str = "sourceProduct"
    description: str = ""
    optional: bool = False
    multiple: bool = False


@dataclass(frozen=True)
class TargetBandSpec:
    """A band the operator writes (name may be a pattern such as ``{index}``)."""

    name: str
    dtype: str = "float32"
    unit: str | None = None
    description: str = ""


@dataclass(frozen=True)
class OperatorSpec:
    """Declarative description of an operator (SNAP's ``OperatorMetadata``)."""

    alias: str
    description: str
    sources: tuple[SourceSpec, ...] = (SourceSpec(),)
    parameters: tuple[Parameter, ...] = ()
    target_bands: tuple[TargetBandSpec, ...] = ()
    category: str = "Raster"
    version: str = "1.0"
    authors: str = "snap-progressive-classifier"
    label: str | None = None
    sink: bool = False  # writes files itself (Write, LabelMaskExport)

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def convert_parameters(self, raw: Mapping[str, XmlValue], strict: bool = False) -> tuple[dict[str, Any], list[str]]:
        """Typed parameter dict from raw XML values.

        Returns the converted values (every declared parameter present, with
        its default when absent) and the names of raw parameters this spec
        does not declare; SNAP graphs saved by Graph Builder carry many such
        UI-only parameters, so they are reported, not fatal, unless `strict`.
        """
        known = {p.name for p in self.parameters}
        unknown = [k for k in raw if k not in known]
        if strict and unknown:
            raise ParameterError(f"{self.alias}: unknown parameter(s) {', '.join(unknown)}")
        values = {p.name: p.convert(raw.get(p.name), self.alias, given=p.name in raw) for p in self.parameters}
        return values, unknown
