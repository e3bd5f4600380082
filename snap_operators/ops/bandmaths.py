"""The ``BandMaths`` operator: new bands from band-maths expressions.

Mirrors SNAP's ``BandMathsOp`` (``snap-gpf/.../gpf/common/BandMathsOp.java``):
parameters ``targetBands`` (``targetBand`` elements with ``name``, ``type``,
``expression``, ``description``, ``unit``, ``validExpression``,
``noDataValue``, ``spectralBandIndex``, ``spectralWavelength``,
``spectralBandwidth``...) and ``variables`` (``variable`` elements with
``name``, ``type``, ``value``). The target product holds only the target
bands; geocoding, metadata and description come from the first source, the
sensing times from the first source that has both.

Names (``BandArithmetic.createDefaultNamespace``): a name is a variable, else
a band of the *first* source (``B4``, raw value ``B4.raw``), ``X``/``Y``
(pixel centre), ``LAT``/``LON`` (map-projected sources), else ``PI``/``E``.
With more than one source, the bands of every source are also named
``$<source id>.<band>`` (``$sourceProduct.1.B4``) and ``$<n>.<band>`` (``$2.B4``,
n counting sources from 1). A name found only in another source is an error,
as in gpt.

Expressions are typed and checked as gpt does (see
:mod:`.bandmaths_expr`). Every pixel is computed from the source values as
they are: a source's no-data value or NaN is not masked (SNAP's
``computeTile`` reads raw samples); only a NaN or infinite *result* becomes
the target's no-data value (``noDataValue`` when given; else NaN, which an
integer type stores as 0). Results are stored as gpt's tiles store them:
``(float)`` for float32, Java's ``(int)`` cast (truncation, saturation at
the int32 range) then the narrowing of the type (wrap-around) for integer
types. ``validExpression`` only sets SNAP's valid-pixel expression property:
checked for syntax, kept on the band and written (BEAM-DIMAP
``VALID_MASK_TERM``), never applied to pixels, as in gpt.

Source values are what SNAP's ``fillSymbolWithData`` reads: the samples as
the file stores them (:class:`~snap_operators.core.product.StoredValues`), scaled
to float32 for a scaled band, so ``B4 == -999`` holds at the no-data pixels
of a float band whose no-data value is -999 and a Sentinel-2 count band
reads 0 * scale + offset there. SNAP fills ``B4.raw`` the same way: for a
scaled band it holds the scaled floats, typed int (rounded with
``Math.round`` where an int is needed), and so it does here.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import dask.array as da
import numpy as np
from dask.base import tokenize

from ..core.errors import ExpressionError, ParameterError, node_label
from ..core.expressions import TYPE_B, TYPE_D, TYPE_I, ComputedD, Expression, parse
from ..core.operator import Operator, register
from ..core.product import Band, Product
from ..core.spec import OperatorSpec, Parameter, SourceSpec

log = logging.getLogger(__name__)

#: Target data types SNAP's BandMaths can create (``ProductData`` type names
#: that ``ImageManager.getDataBufferType`` maps to a Java image buffer).
TARGET_TYPES = {
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "float32": np.float32,
    "float64": np.float64,
}

#: Variable types (``ProductData.getType``, case-sensitive): floating-point
#: types are read with ``Double.parseDouble``, integer types with
#: ``Long.parseLong``; both become *double* constants (SymbolFactory has no
#: long constant, so Java picks ``createConstant(String, double)``).
_FLOAT_VARIABLE_TYPES = ("float32", "float64")
_INT_VARIABLE_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")

_TARGET_BAND_KEYS = (
    "name", "type", "expression", "description", "unit", "validExpression", "noDataValue",
    "spectralBandIndex", "spectralWavelength", "spectralBandwidth", "angularValue",
    "angularBandIndex", "scalingOffset", "scalingFactor",
)

# Java's Double.parseDouble grammar (after trimming), decimal and hex forms.
_JAVA_DOUBLE = re.compile(
    r"[+-]?(NaN|Infinity|(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)[fFdD]?)\Z"
)
_JAVA_HEX_DOUBLE = re.compile(r"[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+[fFdD]?\Z")
_JAVA_LONG = re.compile(r"[+-]?\d+\Z")


def java_double(text: str) -> float:
    """Java's ``Double.parseDouble``: NaN, Infinity, ``1e3``, ``2.5f``, hex floats; ValueError otherwise."""
    s = text.strip("".join(map(chr, range(33))))  # String.trim: every char <= ' '
    body = s[:-1] if s[-1:] in ("f", "F", "d", "D") else s  # a float/double suffix
    if _JAVA_DOUBLE.match(s):
        return float(body.replace("Infinity", "inf"))
    if _JAVA_HEX_DOUBLE.match(s):
        return float.fromhex(body)
    raise ValueError(f'For input string: "{text}"')


def java_long(text: str) -> int:
    """Java's ``Long.parseLong``: an optional sign and digits in the long range; ValueError otherwise."""
    if not _JAVA_LONG.match(text or "") or not (-(2**63) <= int(text) < 2**63):
        raise ValueError(f'For input string: "{text}"')
    return int(text)


@dataclass(frozen=True)
class TargetBandDescriptor:
    """One ``targetBand`` element (SNAP's ``BandMathsOp.BandDescriptor``)."""

    name: str
    expression: str
    type: str = "float32"
    description: str | None = None
    unit: str | None = None
    valid_expression: str | None = None
    no_data_value: float | None = None
    spectral_band_index: int | None = None
    spectral_wavelength: float | None = None
    spectral_bandwidth: float | None = None


def _text(value: Any) -> str | None:
    """An XML leaf as stripped text; None for absent, empty or ``null``."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        raise ValueError("expected a value, got nested elements")
    text = str(value).strip()
    return None if text == "" or text == "null" else text


def _number(item: Mapping[str, Any], key: str, kind=float):
    text = _text(item.get(key))
    if text is None:
        return None
    try:
        number = java_double(text)
    except ValueError:
        raise ValueError(f"<{key}> {text!r} is not a number") from None
    if kind is int:
        if not number.is_integer():
            raise ValueError(f"<{key}> {text!r} is not an integer")
        return int(number)
    return number


def parse_target_bands(items: list[Mapping[str, Any]] | None, alias: str = "BandMaths") -> list[TargetBandDescriptor]:
    """Typed target-band descriptors from the ``targetBands`` parameter.

    Parameters
    ----------
    items : list of dict
        One dict per ``targetBand`` element (child tag -> text), as the spec
        converts ``element[]`` parameters.

    Raises
    ------
    ParameterError
        On a missing name, type or expression (SNAP's messages), an unknown
        type, a bad number, a no-data value an integer type cannot hold, or
        scaling (not supported here).
    """
    if not items:
        raise ParameterError(f"{alias}: No target bands specified. (parameter 'targetBands')")
    out: list[TargetBandDescriptor] = []
    seen: set[str] = set()
    for k, item in enumerate(items, 1):
        if not isinstance(item, Mapping):
            raise ParameterError(f"{alias}: targetBand {k} must contain elements")
        label = f"{alias}: targetBand {k}"
        try:
            name = _text(item.get("name"))
            if name is None:
                raise ParameterError(f"{label}: Missing band name.")
            label = f"{alias}: targetBand '{name}'"
            unknown = [key for key in item if key not in _TARGET_BAND_KEYS]
            if unknown:
                log.warning("%s: ignoring unknown element(s) %s", label, ", ".join(f"<{u}>" for u in unknown))
            if name in seen:
                raise ParameterError(f"{label}: a target band of this name is already defined")
            seen.add(name)
            type_text = _text(item.get("type"))
            if type_text is None:  # BandMathsOp.createBand: no default type
                raise ParameterError(f"{label}: Missing data type for band {name}.")
            type_name = type_text.lower()  # SNAP lower-cases the type
            if type_name not in TARGET_TYPES:
                raise ParameterError(f"{label}: unknown type '{type_name}'; types: {', '.join(TARGET_TYPES)}")
            # SNAP reads an empty <expression/> as null: "Could not parse expression: 'null'. Empty expression."
            expression = item.get("expression")
            if isinstance(expression, (list, tuple)):
                raise ValueError("<expression> must be text, got nested elements")
            expression = None if expression is None or str(expression) == "" else str(expression)
            factor = _number(item, "scalingFactor")
            offset = _number(item, "scalingOffset")
            if (factor not in (None, 1.0)) or (offset not in (None, 0.0)):
                raise ParameterError(
                    f"{label}: scalingFactor/scalingOffset are not supported by the standalone engine; "
                    "scale in the expression instead"
                )
            no_data = _number(item, "noDataValue")
            if no_data is not None:
                _check_no_data(no_data, type_name, label)
            out.append(
                TargetBandDescriptor(
                    name=name,
                    expression=expression,
                    type=type_name,
                    description=_text(item.get("description")),
                    unit=_text(item.get("unit")),
                    valid_expression=_text(item.get("validExpression")),
                    no_data_value=no_data,
                    spectral_band_index=_number(item, "spectralBandIndex", int),
                    spectral_wavelength=_number(item, "spectralWavelength"),
                    spectral_bandwidth=_number(item, "spectralBandwidth"),
                )
            )
        except ValueError as exc:
            raise ParameterError(f"{label}: {exc}") from None
    return out


def _check_no_data(value: float, type_name: str, label: str) -> None:
    # SNAP accepts any double and stores (int)(float) of it, wrapped to the type, while the band
    # keeps the double: pixels and property then disagree. Refused here instead.
    dtype = np.dtype(TARGET_TYPES[type_name])
    if dtype.kind == "f":
        return
    info = np.iinfo(dtype)
    if not (math.isfinite(value) and value.is_integer() and info.min <= value <= info.max):
        raise ParameterError(f"{label}: noDataValue {value:g} does not fit type {type_name} ({info.min}..{info.max})")


def parse_variables(items: list[Mapping[str, Any]] | None, alias: str = "BandMaths") -> dict[str, float | bool]:
    """Name -> constant from the ``variables`` parameter (``BandMathsOp.createNamespace``).

    ``type`` is a ``ProductData`` type name, case-sensitive: ``float32`` and
    ``float64`` are read as Java doubles, ``int8`` ... ``uint64`` as Java
    longs; both become double constants, as in SNAP. ``boolean`` is true
    when the value is ``true`` in any case (``Boolean.parseBoolean``).
    """
    out: dict[str, float | bool] = {}
    for k, item in enumerate(items or (), 1):
        if not isinstance(item, Mapping):
            raise ParameterError(f"{alias}: variable {k} must contain elements")
        name = _text(item.get("name"))
        if name is None:
            raise ParameterError(f"{alias}: variable {k}: missing <name>")
        label = f"{alias}: variable '{name}'"
        type_name = _text(item.get("type"))
        value = _text(item.get("value"))
        if type_name not in _FLOAT_VARIABLE_TYPES + _INT_VARIABLE_TYPES + ("boolean",):
            raise ParameterError(
                f"{label}: Illegal type name in variable declaration: {type_name}. "
                f"Types: {', '.join(_FLOAT_VARIABLE_TYPES + _INT_VARIABLE_TYPES)}, boolean"
            )
        if value is None and type_name != "boolean":
            raise ParameterError(f"{label}: missing <value>")
        try:
            if type_name == "boolean":
                out[name] = (value or "").lower() == "true"
            elif type_name in _FLOAT_VARIABLE_TYPES:
                out[name] = java_double(value)
            else:
                out[name] = float(java_long(value))
        except ValueError:
            java = "Double.parseDouble" if type_name in _FLOAT_VARIABLE_TYPES else "Long.parseLong"
            raise ParameterError(f"{label}: cannot read {value!r} as {type_name} ({java})") from None
    return out


# --- names -------------------------------------------------------------------


@dataclass(frozen=True)
class _Symbol:
    """What a name of an expression stands for (an entry of SNAP's namespace)."""

    kind: str  # "band", "variable", "xy", "geo", "refused"
    type: int | str  # TYPE_B/I/D, or the refusal message for "refused"
    source: int = 0  # index of the source product
    band: Band | None = None
    value: Any = None  # variable value; "X"/"Y"/"LAT"/"LON" for xy/geo


def _band_type(band: Band, raw: bool = False) -> int:
    """SNAP's ``RasterDataSymbol`` type of a band (`raw`: of ``band.raw``).

    From the stored type when the band has one: double for float storage or,
    except for ``.raw``, a scaled band; else int. Bands an operator computed
    are typed from their data.
    """
    if band.stored is not None:
        floating = np.dtype(band.stored.dtype).kind == "f"
        return TYPE_D if floating or (band.stored.scaled and not raw) else TYPE_I
    kind = np.dtype(band.dtype).kind
    return TYPE_I if kind in "iu" else TYPE_B if kind == "b" else TYPE_D


def _symbol_data(band: Band) -> tuple[da.Array, bool]:
    """What ``BandMathsOp.fillSymbolWithData`` reads of `band`, and whether it is SNAP's exactly.

    The stored samples, scaled for a scaled band (float32), for both ``B4``
    and ``B4.raw`` as SNAP fills both from the tile; nothing masked. A band
    whose stored view an operator detached gives its physical data, with NaN
    where SNAP reads the stored no-data value: not exact.
    """
    stored = band.stored
    if stored is None:
        return band.data, True
    if stored.data is None:
        return band.data, stored.no_data is None
    return stored.geophysical(), True


def _source_ids(sources: Mapping[str, Product]) -> tuple[list[Product], list[str]]:
    """Distinct source products in order and the id SNAP names each by.

    ``OperatorContext`` keeps one list entry per product object and
    ``getSourceProductId`` prefers an id holding a '.'.
    """
    products: list[Product] = []
    ids: list[str] = []
    for key, product in sources.items():
        for i, p in enumerate(products):
            if p is product:
                if "." in key:
                    ids[i] = key
                break
        else:
            products.append(product)
            ids.append(key)
    return products, ids


def _namespace(products: list[Product], ids: list[str], variables: Mapping[str, Any]) -> dict[str, _Symbol]:
    """Name -> symbol, registered in SNAP's order so later entries win (``NamespaceImpl``)."""
    ns: dict[str, _Symbol] = {}

    def extend(i: int, prefix: str) -> None:
        # ProductNamespaceExtenderImpl.extendNamespace: pixel symbols, then bands
        for xy in ("X", "Y"):
            ns[prefix + xy] = _Symbol("xy", TYPE_D, i, value=xy)
        for geo in ("LAT", "LON"):
            ns[prefix + geo] = _Symbol("geo", TYPE_D, i, value=geo)
        for t in ("TIME", "MJD"):
            ns[prefix + t] = _Symbol("refused", f"'{prefix + t}' (pixel time, MJD) is not supported by this engine.")
        for band in products[i].bands.values():
            ns[prefix + band.name] = _Symbol("band", _band_type(band), i, band)
            ns[prefix + band.name + ".raw"] = _Symbol("band", _band_type(band, raw=True), i, band)

    extend(0, "")
    if len(products) > 1:  # SNAP registers prefixes only for several sources
        for i, key in enumerate(ids):
            extend(i, f"${key}.")
            extend(i, f"${i + 1}.")
    for name, value in variables.items():
        ns[name] = _Symbol("variable", TYPE_B if isinstance(value, bool) else TYPE_D, value=value)
    return ns


def _undefined_hint(name: str, products: list[Product], ids: list[str]) -> str:
    """SNAP's message for an undefined name, with what the user probably meant."""
    msg = f"Undefined symbol '{name}'."
    for i, product in enumerate(products[1:], 1):
        if name in product.bands or name.removesuffix(".raw") in product.bands:
            return (f"{msg} It is a band of source '{ids[i]}': gpt resolves plain names in the first source only; "
                    f"write '${ids[i]}.{name}' or '${i + 1}.{name}'.")
    if name.startswith("$") and len(products) == 1:
        return f"{msg} SNAP registers '$' prefixes only when BandMaths has more than one source product."
    if name.startswith("$"):
        prefixes = ", ".join(f"'${key}.'" for key in ids) + ", " + ", ".join(f"'${i + 1}.'" for i in range(len(ids)))
        return f"{msg} Source prefixes: {prefixes}."
    base, _, prop = name.rpartition(".")
    if base in products[0].bands:
        return (f"{msg} Band properties, flags and masks ('{base}.{prop}') are not supported by this engine; "
                f"'{base}.raw' is.")
    bands = products[0].bands_listed()
    return f"{msg} Bands: {bands}."


# --- per-tile computation ------------------------------------------------------


@dataclass(frozen=True)
class _TargetPlan:
    name: str
    expression: Expression
    dtype: np.dtype
    fill: float | int  # stored where the result is NaN or infinite


@dataclass(frozen=True)
class _Geo:
    """What LAT/LON of one source need: its CRS, scene geotransform and size."""

    crs_wkt: str
    transform: tuple[float, ...]
    shape: tuple[int, int]


@functools.lru_cache(maxsize=16)
def _to_lonlat(crs_wkt: str):
    from pyproj import CRS, Transformer

    return Transformer.from_crs(CRS.from_wkt(crs_wkt), CRS.from_epsg(4326), always_xy=True)


class _Kernel:
    """Computes one target band's tile from its input tiles (``BandMathsOp.computeTile``).

    A plain picklable object (not a closure), so tiles can be computed on
    ``dask.distributed`` workers too.

    Parameters
    ----------
    plan : _TargetPlan
    inputs : tuple of str
        Input keys, in block order.
    bindings : dict
        Expression name -> input key (bands), or ``("xy", "X")`` /
        ``("geo", "LAT", source index)`` for pixel symbols.
    constants : dict
        Variable name -> value.
    geos : dict
        Source index -> _Geo, for LAT/LON.
    """

    def __init__(self, plan, inputs, bindings, constants, geos):
        self.plan = plan
        self.inputs = inputs
        self.bindings = bindings
        self.constants = constants
        self.geos = geos

    def __call__(self, *blocks, block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        shape = (y1 - y0, x1 - x0)
        data = dict(zip(self.inputs, blocks))
        env: dict[str, Any] = dict(self.constants)
        lonlat: dict[int, dict[str, np.ndarray]] = {}
        for name, what in self.bindings.items():
            if isinstance(what, str):
                env[name] = data[what]
            elif what[0] == "xy":
                if what[1] == "X":
                    env[name] = ComputedD((np.arange(shape[1], dtype=np.float64) + (x0 + 0.5))[None, :])
                else:
                    env[name] = ComputedD((np.arange(shape[0], dtype=np.float64) + (y0 + 0.5))[:, None])
            else:
                source = what[2]
                if source not in lonlat:
                    lonlat[source] = _lonlat(self.geos[source], x0, y0, shape)
                env[name] = ComputedD(lonlat[source][what[1]])
        value = self.plan.expression.evaluate(env, x0=x0, y0=y0, shape=shape)
        return to_target_type(value, self.plan.dtype, self.plan.fill)


def _lonlat(geo: _Geo, x0: int, y0: int, shape) -> dict[str, np.ndarray]:
    """LAT/LON of pixel centres from a source's scene geocoding; NaN outside its scene (as SNAP)."""
    a, b, c, d, e, f = geo.transform
    h, w = shape
    cols = np.arange(w, dtype=np.float64)[None, :] + x0
    rows = np.arange(h, dtype=np.float64)[:, None] + y0
    xs = np.broadcast_to(a * (cols + 0.5) + b * (rows + 0.5) + c, shape)
    ys = np.broadcast_to(d * (cols + 0.5) + e * (rows + 0.5) + f, shape)
    lon, lat = _to_lonlat(geo.crs_wkt).transform(xs, ys)
    outside = np.broadcast_to((cols >= geo.shape[1]) | (rows >= geo.shape[0]), shape)
    lon = np.where(outside, np.nan, np.asarray(lon, dtype=np.float64))
    lat = np.where(outside, np.nan, np.asarray(lat, dtype=np.float64))
    return {"LON": lon, "LAT": lat}


def store_value(value: float, dtype) -> float | int:
    """One double stored into a tile of `dtype` as Java's ``Tile.setSample`` does.

    float32: ``(float)``; integer types: ``(int)`` (truncation, NaN -> 0,
    saturation at the int32 range), then the buffer's narrowing to the type
    (``(byte)``, ``(short)``...: wrap-around; uint32 is stored in an int).
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":  # NaN and infinities are stored as they are
        return np.array([value], dtype=np.float64).astype(dtype)[0].item()
    return to_target_type(np.array([value], dtype=np.float64), dtype, 0)[0].item()  # (int) NaN == 0


def to_target_type(value: np.ndarray, dtype, fill) -> np.ndarray:
    """Store expression results in `dtype` as ``BandMathsOp.computeTile`` does.

    Parameters
    ----------
    value : numpy.ndarray
        Expression result (float64, or bool for a boolean expression, which
        SNAP's ``evalD`` gives as 1.0/0.0), shape ``(rows, cols)``.
    dtype : numpy dtype
        Target type.
    fill : float or int
        Value stored where the result is NaN or infinite (already the
        stored form of the no-data value, see :func:`store_value`).

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` of `dtype`.

    Notes
    -----
    Java writes a double into an integer image buffer with
    ``DataBuffer.setElemDouble``, i.e. ``setElem((int) v)``: the cast
    truncates toward zero and saturates at the int32 range; the byte or
    short buffer then keeps the low bits (300.7 -> 300 -> 44 in uint8, -1.9
    -> -1 -> 255). float32 stores ``(float) v`` (a finite double beyond the
    float range becomes infinity, not no-data, as in SNAP).
    """
    dtype = np.dtype(dtype)
    v = value if value.dtype == np.float64 else value.astype(np.float64)
    invalid = ~np.isfinite(v)
    with np.errstate(all="ignore"):
        if dtype.kind == "f":
            out = v.astype(dtype)
        else:
            t = np.where(invalid, 0.0, v)
            np.trunc(t, out=t)
            np.clip(t, -(2**31), 2**31 - 1, out=t)
            out = t.astype(np.int32).astype(dtype)  # int32 -> narrower (or uint32): C-style wrap
    if invalid.any():
        out[invalid] = fill
    return out


# --- the operator -------------------------------------------------------------


@register
class BandMathsOp(Operator):
    """Create a product with one or more bands using mathematical expressions."""

    spec = OperatorSpec(
        alias="BandMaths",
        description="Create a product with one or more bands using mathematical expressions.",
        sources=(SourceSpec("sourceProducts", "Any number of source products.", multiple=True),),
        parameters=(
            Parameter(
                "targetBands",
                "element[]",
                item="targetBand",
                required=True,
                description="List of descriptors defining the target bands.",
            ),
            Parameter(
                "variables",
                "element[]",
                item="variable",
                description="List of variables which can be used within the expressions.",
            ),
        ),
        version="1.1",
    )

    def initialize(self) -> Product:
        if not self.source_products():
            raise self.error("No source products given.")
        alias = self._prefix
        descriptors = parse_target_bands(self.parameters.get("targetBands"), alias)
        constants = parse_variables(self.parameters.get("variables"), alias)
        products, ids = _source_ids(self.sources)
        self._products, self._ids = products, ids
        self._constants = constants
        self._ns = _namespace(products, ids, constants)

        first = products[0]
        target = first.copy(name=f"{first.name}_BandMath", bands=[])
        target.product_type = "BandMath"
        target.file_location = None
        timed = next((p for p in products if p.start_time is not None and p.stop_time is not None), None)
        target.start_time = timed.start_time if timed else None
        target.stop_time = timed.stop_time if timed else None
        for desc in descriptors:
            target.add_band(self._target_band(desc))
        return target

    # --- helpers ---------------------------------------------------------
    @property
    def _prefix(self) -> str:
        return node_label(self.spec.alias, self.node_id)

    def _resolve(self, name: str):
        """The parser's resolver: a name's type, None (undefined) or a refusal message."""
        sym = self._ns.get(name)
        if sym is None:
            if name in ("PI", "E"):  # DefaultNamespace constants, below every product symbol
                return TYPE_D
            return _undefined_hint(name, self._products, self._ids)
        if sym.kind == "refused":
            return sym.type
        if sym.kind == "geo":
            product = self._products[sym.source]
            if product.crs is None or product.transform is None:
                return (f"'{name}' needs a map-projected source product; '{product.name}' has no CRS "
                        "(tie-point geocodings are not supported by this engine).")
        return sym.type

    def _parse(self, text: str | None, band: str) -> Expression:
        prefix = f"{self._prefix}: target band '{band}': "
        if text is None or not text.strip():
            raise ExpressionError(f"{prefix}Could not parse expression: '{text or 'null'}'. Empty expression.")
        try:
            return parse(text, self._resolve, type_checking=True)
        except ExpressionError as exc:
            raise _with_prefix(exc, prefix) from None

    def _target_band(self, desc: TargetBandDescriptor) -> Band:
        expr = self._parse(desc.expression, desc.name)
        if desc.valid_expression is not None:
            try:
                parse(desc.valid_expression)  # syntax only: SNAP sets it as a property, evaluates nothing
            except ExpressionError as exc:
                raise _with_prefix(exc, f"{self._prefix}: target band '{desc.name}': validExpression: ") from None

        # Referenced rasters in SNAP's order (depth-first, left to right) and how each name binds.
        bindings: dict[str, Any] = {}
        rasters: list[tuple[str, Band]] = []
        geos: dict[int, _Geo] = {}
        for name in sorted(expr.positions, key=lambda n: (expr.positions[n], n)):
            sym = self._ns.get(name)
            if sym is None or sym.kind == "variable":
                continue
            if sym.kind == "band":
                key = f"{sym.source}:{sym.band.name}"
                bindings[name] = key
                if all(k != key for k, _ in rasters):
                    rasters.append((key, sym.band))
            elif sym.kind == "xy":
                if name not in ("X", "Y"):  # plain X/Y are the evaluator's built-ins
                    bindings[name] = ("xy", sym.value)
            elif sym.kind == "geo":
                bindings[name] = ("geo", sym.value, sym.source)
                product = self._products[sym.source]
                ref = product.reference_band()
                geos[sym.source] = _Geo(product.crs.to_wkt(), tuple(ref.transform)[:6], ref.shape)

        grid = self._grid(desc.name, rasters)
        dtype = np.dtype(TARGET_TYPES[desc.type])
        if desc.no_data_value is not None:
            # computeTile: fv = (float) band.getNoDataValue(), written with setSample(x, y, fv)
            fill = store_value(float(np.float32(desc.no_data_value)), dtype)
            band_no_data = desc.no_data_value if dtype.kind == "f" else int(desc.no_data_value)
        else:
            fill = store_value(math.nan, dtype)  # NaN, or (int) NaN == 0 for integer types
            band_no_data = math.nan if dtype.kind == "f" else None  # the project's float convention
        plan = _TargetPlan(desc.name, expr, dtype, fill)

        keys = [k for k, _ in rasters]
        chunks = grid.data.chunks
        arrays = []
        for _, b in rasters:
            a, exact = _symbol_data(b)
            if not exact:
                log.warning(
                    "%s: target band '%s': band '%s' lost its stored values upstream (an operator changed its "
                    "pixels), so its no-data pixels read as NaN here, while gpt computes with the stored no-data "
                    "value %s; results at those pixels may differ from gpt's", self._prefix, desc.name, b.name,
                    b.stored.no_data,
                )
            arrays.append(a if a.chunks == chunks else a.rechunk(chunks))
        kernel = _Kernel(plan, tuple(keys), bindings, dict(self._constants), geos)
        token = tokenize(
            desc, dtype.str, fill, sorted((k, repr(v)) for k, v in self._constants.items()),
            [a.name for a in arrays], chunks, sorted((k, repr(v)) for k, v in bindings.items()),
            sorted((k, repr(v)) for k, v in geos.items()),
        )
        if arrays:
            data = da.map_blocks(kernel, *arrays, dtype=dtype, chunks=chunks, meta=np.empty((0, 0), dtype=dtype),
                                 name=f"bandmaths-{desc.name}-{token}")
        else:
            # No band read: the target takes the first source's scene grid (findTargetBandSize).
            data = da.map_blocks(kernel, dtype=dtype, chunks=chunks, meta=np.empty((0, 0), dtype=dtype),
                                 name=f"bandmaths-{desc.name}-{token}")
        return Band(
            name=desc.name,
            data=data,
            transform=grid.transform,
            no_data=band_no_data,
            unit=desc.unit,
            description=desc.description,
            wavelength=desc.spectral_wavelength,
            valid_expression=desc.valid_expression,
        )

    def _grid(self, band: str, rasters: list[tuple[str, Band]]) -> Band:
        """The band whose grid the target takes; all `rasters` must share it."""
        if not rasters:
            return self._products[0].reference_band()
        ref = rasters[0][1]
        for _, b in rasters[1:]:
            if b.shape != ref.shape:
                raise self.error(
                    f"target band '{band}': All source rasters must have the same size of {ref.width} x "
                    f"{ref.height} pixels. ('{ref.name}' is {ref.width}x{ref.height}, '{b.name}' "
                    f"{b.width}x{b.height}); add a Resample node"
                )
            if ref.transform is not None and b.transform is not None and not ref.transform.almost_equals(b.transform, 1e-6):
                raise self.error(
                    f"target band '{band}': bands '{ref.name}' and '{b.name}' are on different grids; "
                    "add a Collocate node"
                )
        return ref


def _with_prefix(exc: ExpressionError, prefix: str, suffix: str = "") -> ExpressionError:
    """`exc` with `prefix` before its message and `suffix` after it (the column is kept)."""
    text = exc.args[0] if exc.args else ""
    tail = f" (column {exc.column})"
    if exc.column is not None and text.endswith(tail):
        text = text[: -len(tail)]
    return ExpressionError(prefix + text + suffix, column=exc.column, expression=exc.expression)
