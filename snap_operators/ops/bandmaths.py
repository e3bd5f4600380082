"""The ``BandMaths`` operator: new bands from band-maths expressions.

Mirrors SNAP's ``BandMathsOp`` (``snap-gpf``): parameters ``targetBands``
(``targetBand`` elements with ``name``, ``type``, ``expression``,
``description``, ``unit``, ``validExpression``, ``noDataValue``,
``spectralBandIndex``, ``spectralWavelength``, ``spectralBandwidth``...)
and ``variables`` (``variable`` elements with ``name``, ``type``,
``value``). The target product holds only the target bands; geocoding,
metadata and description come from the first source, the sensing times from
the first source that has both.

Names in an expression are looked up in the variables, then in the bands of
every source in order (the first source with the band wins); a band of a
given source can be named ``$<source>.<band>``, e.g. ``$sourceProduct.1.B4``.
``X``/``Y`` are pixel-centre coordinates, ``LAT``/``LON`` geographic
coordinates of the pixel centre (map-projected products).

A target pixel gets the no-data value where the result is NaN or infinite
(SNAP's rule), where any band the expression reads is invalid (NaN or its
no-data value) and where ``validExpression`` is false. The last two differ
from SNAP's operator, which keeps computing on invalid inputs and stores
``validExpression`` as a band property; this engine has no valid-pixel
expressions, so validity is written into the data. One consequence: an
expression cannot fill gaps (``nan(B4) ? 0 : B4`` stays no-data where
``B4`` is NaN). The no-data value is ``noDataValue`` when given, else NaN
for float types and :func:`snap_operators.product.fill_value` for integer
types. Values are truncated toward zero when stored in integer types, as
SNAP does, and saturate at the type's range (SNAP wraps around).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

import dask.array as da
import numpy as np
from dask.base import tokenize

from ..errors import ExpressionError, ParameterError
from ..operator import Operator, register
from ..product import Band, Product, fill_value, valid_mask
from ..spec import OperatorSpec, Parameter, SourceSpec
from .bandmaths_expr import BUILTIN_SYMBOLS, Expression, parse

log = logging.getLogger(__name__)

#: Target data types SNAP's BandMaths accepts (``ProductData`` type names).
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

_TARGET_BAND_KEYS = (
    "name", "type", "expression", "description", "unit", "validExpression", "noDataValue",
    "spectralBandIndex", "spectralWavelength", "spectralBandwidth", "angularValue",
    "angularBandIndex", "scalingOffset", "scalingFactor",
)
_GEO_SYMBOLS = frozenset({"LAT", "LON"})


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
        number = float(text)
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
        On a missing name or expression, an unknown type, a bad number or a
        no-data value the type cannot hold.
    """
    if not items:
        raise ParameterError(f"{alias}: no target bands specified (parameter 'targetBands')")
    out: list[TargetBandDescriptor] = []
    seen: set[str] = set()
    for k, item in enumerate(items, 1):
        if not isinstance(item, Mapping):
            raise ParameterError(f"{alias}: targetBand {k} must contain elements")
        label = f"{alias}: targetBand {k}"
        try:
            name = _text(item.get("name"))
            if name is None:
                raise ParameterError(f"{label}: missing <name>")
            label = f"{alias}: targetBand '{name}'"
            unknown = [key for key in item if key not in _TARGET_BAND_KEYS]
            if unknown:
                log.warning("%s: ignoring unknown element(s) %s", label, ", ".join(f"<{u}>" for u in unknown))
            if name in seen:
                raise ParameterError(f"{label}: a target band of this name is already defined")
            seen.add(name)
            expression = _text(item.get("expression"))
            if expression is None:
                raise ParameterError(f"{label}: missing <expression>")
            type_name = (_text(item.get("type")) or "float32").lower()
            if type_name not in TARGET_TYPES:
                raise ParameterError(f"{label}: unknown type '{type_name}'; types: {', '.join(TARGET_TYPES)}")
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
    dtype = np.dtype(TARGET_TYPES[type_name])
    if dtype.kind == "f":
        return
    info = np.iinfo(dtype)
    if not (math.isfinite(value) and value.is_integer() and info.min <= value <= info.max):
        raise ParameterError(f"{label}: noDataValue {value:g} does not fit type {type_name} ({info.min}..{info.max})")


def parse_variables(items: list[Mapping[str, Any]] | None, alias: str = "BandMaths") -> dict[str, float | int | bool]:
    """Name -> constant from the ``variables`` parameter (SNAP's ``Variable``).

    ``type`` is a target type name (float types give floats, integer types
    integers) or ``boolean``; absent, the value is read as a float.
    """
    out: dict[str, float | int | bool] = {}
    for k, item in enumerate(items or (), 1):
        if not isinstance(item, Mapping):
            raise ParameterError(f"{alias}: variable {k} must contain elements")
        name = _text(item.get("name"))
        if name is None:
            raise ParameterError(f"{alias}: variable {k}: missing <name>")
        label = f"{alias}: variable '{name}'"
        type_name = (_text(item.get("type")) or "float64").lower()
        value = _text(item.get("value"))
        if value is None:
            raise ParameterError(f"{label}: missing <value>")
        try:
            if type_name == "boolean":
                out[name] = value.lower() == "true"  # Java's Boolean.parseBoolean
            elif type_name in ("float32", "float64", "float", "double"):
                out[name] = float(value)
            elif type_name in TARGET_TYPES or type_name in ("int64", "uint64"):
                out[name] = int(value)
            else:
                raise ParameterError(
                    f"{label}: illegal type '{type_name}'; types: {', '.join(TARGET_TYPES)}, boolean"
                )
        except ValueError:
            raise ParameterError(f"{label}: cannot read {value!r} as {type_name}") from None
    return out


# --- per-tile computation ------------------------------------------------------


@dataclass(frozen=True)
class _Binding:
    """How a name of an expression gets its value in a tile."""

    symbol: str
    kind: str  # "band" (a source band tile), "target" (another target band), "geo"
    key: str = ""  # input key for "band", target name for "target"


@dataclass(frozen=True)
class _TargetPlan:
    name: str
    expression: Expression
    bindings: tuple[_Binding, ...]
    dtype: np.dtype
    fill: float | int


@dataclass(frozen=True)
class _Geo:
    """What LAT/LON need: the grid's CRS and geotransform."""

    crs_wkt: str
    transform: tuple[float, ...]


@functools.lru_cache(maxsize=16)
def _to_lonlat(crs_wkt: str):
    from pyproj import CRS, Transformer

    return Transformer.from_crs(CRS.from_wkt(crs_wkt), CRS.from_epsg(4326), always_xy=True)


class _Kernel:
    """Computes one target band's tile from its input tiles.

    A plain picklable object (not a closure), so tiles can be computed on
    ``dask.distributed`` workers too.
    """

    def __init__(self, plan, valid, valid_bindings, others, inputs, no_data, constants, geo):
        self.plan = plan
        self.valid = valid
        self.valid_bindings = valid_bindings
        self.others = others  # target name -> _TargetPlan referenced by validExpression
        self.inputs = inputs  # input keys, in block order
        self.no_data = no_data  # input key -> no-data value
        self.constants = constants
        self.geo = geo

    def __call__(self, *blocks, block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        tile = _Tile(self, dict(zip(self.inputs, blocks)), x0, y0, (y1 - y0, x1 - x0))
        out = tile.target(self.plan)
        if self.valid is not None:
            env, invalid = tile.environment(self.valid_bindings, own=(self.plan.name, out))
            ok = self.valid.evaluate(env, x0=x0, y0=y0, shape=tile.shape)
            invalid |= ~ok.astype(bool)  # NaN counts as true, as in SNAP
            out[invalid] = self.plan.fill
        return out


class _Tile:
    """The inputs of one tile and what has been derived from them."""

    def __init__(self, kernel: _Kernel, blocks: dict[str, np.ndarray], x0: int, y0: int, shape):
        self.kernel = kernel
        self.blocks = blocks
        self.x0, self.y0, self.shape = x0, y0, shape
        self._invalid: dict[str, np.ndarray] = {}
        self._targets: dict[str, np.ndarray] = {}
        self._geo: dict[str, np.ndarray] | None = None

    def invalid(self, key: str) -> np.ndarray:
        if key not in self._invalid:
            self._invalid[key] = ~valid_mask(self.blocks[key], self.kernel.no_data[key])
        return self._invalid[key]

    def lonlat(self) -> dict[str, np.ndarray]:
        if self._geo is None:
            geo = self.kernel.geo
            a, b, c, d, e, f = geo.transform
            h, w = self.shape
            cols = np.arange(w, dtype=np.float64)[None, :] + (self.x0 + 0.5)
            rows = np.arange(h, dtype=np.float64)[:, None] + (self.y0 + 0.5)
            xs = np.broadcast_to(a * cols + b * rows + c, self.shape)
            ys = np.broadcast_to(d * cols + e * rows + f, self.shape)
            lon, lat = _to_lonlat(geo.crs_wkt).transform(xs, ys)
            self._geo = {"LON": np.asarray(lon, dtype=np.float64), "LAT": np.asarray(lat, dtype=np.float64)}
        return self._geo

    def environment(self, bindings, own=None):
        """Symbol -> value for `bindings`, and where any band read is invalid."""
        env: dict[str, Any] = dict(self.kernel.constants)
        invalid = np.zeros(self.shape, dtype=bool)
        for b in bindings:
            if b.kind == "band":
                env[b.symbol] = self.blocks[b.key]
                invalid |= self.invalid(b.key)
            elif b.kind == "target":
                if own is not None and b.key == own[0]:
                    value, fill = own[1], self.kernel.plan.fill
                else:
                    plan = self.kernel.others[b.key]
                    value, fill = self.target(plan), plan.fill
                env[b.symbol] = value
                invalid |= ~valid_mask(value, fill)
            else:
                env[b.symbol] = self.lonlat()[b.symbol]
        return env, invalid

    def target(self, plan: _TargetPlan) -> np.ndarray:
        """Target values of `plan` for this tile: cast, no-data applied."""
        if plan.name not in self._targets:
            env, invalid = self.environment(plan.bindings)
            value = plan.expression.evaluate(env, x0=self.x0, y0=self.y0, shape=self.shape)
            self._targets[plan.name] = to_target_type(value, invalid, plan.dtype, plan.fill)
        return self._targets[plan.name]


def to_target_type(value: np.ndarray, invalid: np.ndarray, dtype, fill) -> np.ndarray:
    """Store expression results in `dtype`, writing `fill` where invalid.

    Parameters
    ----------
    value : numpy.ndarray
        Expression result (float64 or bool), shape ``(rows, cols)``; may be
        modified.
    invalid : numpy.ndarray of bool
        Pixels already invalid (an input band is); modified.
    dtype : numpy dtype
        Target type.
    fill : float or int
        Value for invalid pixels; NaN, ±inf results are invalid too.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` of `dtype`; integers are truncated toward zero and
        saturated at the type's range.
    """
    dtype = np.dtype(dtype)
    v = value if value.dtype == np.float64 else value.astype(np.float64)
    invalid |= ~np.isfinite(v)
    with np.errstate(all="ignore"):
        if dtype.kind == "f":
            out = v.astype(dtype)
        else:
            np.copyto(v, 0.0, where=invalid)
            np.trunc(v, out=v)
            info = np.iinfo(dtype)
            np.clip(v, info.min, info.max, out=v)
            out = v.astype(dtype)
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
        sources = self.source_products()
        if not sources:
            raise self.error("no source products given")
        alias = self._prefix
        descriptors = parse_target_bands(self.parameters.get("targetBands"), alias)
        constants = parse_variables(self.parameters.get("variables"), alias)
        self._constants = constants
        self._prefixes = self._source_prefixes()

        plans: dict[str, _TargetPlan] = {}
        grids: dict[str, tuple[Band, list[tuple[str, Band]]]] = {}
        for desc in descriptors:
            expr = self._parse(desc.expression, desc.name, "expression")
            bindings, bands = self._bind(expr, desc.name, targets=None)
            grid = self._grid(desc.name, bands)
            dtype = np.dtype(TARGET_TYPES[desc.type])
            fill = desc.no_data_value if desc.no_data_value is not None else fill_value(dtype)
            if dtype.kind != "f":
                fill = int(fill)
            plans[desc.name] = _TargetPlan(desc.name, expr, bindings, dtype, fill)
            grids[desc.name] = (grid, bands)

        first = sources[0]
        target = first.copy(name=f"{first.name}_BandMath", bands=[])
        target.product_type = "BandMath"
        target.file_location = None
        timed = next((p for p in sources if p.start_time is not None and p.stop_time is not None), None)
        target.start_time = timed.start_time if timed else None
        target.stop_time = timed.stop_time if timed else None
        for desc in descriptors:
            target.add_band(self._target_band(desc, plans, grids))
        return target

    # --- helpers ---------------------------------------------------------
    @property
    def _prefix(self) -> str:
        alias = self.spec.alias
        return alias if self.node_id == alias else f"{alias} (node '{self.node_id}')"

    def _parse(self, text: str, band: str, what: str) -> Expression:
        try:
            return parse(text)
        except ExpressionError as exc:
            where = "" if what == "expression" else f"{what}: "
            raise _with_prefix(exc, f"{self._prefix}: target band '{band}': {where}") from None

    def _source_prefixes(self) -> list[tuple[str, int]]:
        """``$<source>.`` prefixes naming one source, longest first."""
        prefixes: dict[str, int] = {}
        for i, key in enumerate(self.sources):
            prefixes.setdefault(f"${key}.", i)
            prefixes.setdefault(f"$sourceProduct.{i}.", i)
        prefixes.setdefault("$sourceProduct.", 0)
        return sorted(prefixes.items(), key=lambda kv: -len(kv[0]))

    def _find_band(self, name: str) -> tuple[int, Band] | None:
        sources = self.source_products()
        for i, product in enumerate(sources):
            if name in product.bands:
                return i, product.bands[name]
        if name.startswith("$"):
            for prefix, i in self._prefixes:
                rest = name[len(prefix):]
                if name.startswith(prefix) and rest in sources[i].bands:
                    return i, sources[i].bands[rest]
        return None

    def _bind(self, expr: Expression, band: str, targets: Mapping[str, Any] | None):
        """Resolve every name of `expr`: variable, target band, source band, built-in."""
        bindings: list[_Binding] = []
        bands: list[tuple[str, Band]] = []
        for name in sorted(expr.names, key=lambda n: (expr.positions[n], n)):
            if name in self._constants:
                continue
            if targets is not None and name in targets:
                bindings.append(_Binding(name, "target", name))
                continue
            found = self._find_band(name)
            if found is not None:
                i, b = found
                key = f"{i}:{b.name}"
                bindings.append(_Binding(name, "band", key))
                bands.append((key, b))
                continue
            if name in BUILTIN_SYMBOLS:
                continue
            if name in _GEO_SYMBOLS:
                bindings.append(_Binding(name, "geo"))
                continue
            available = list(dict.fromkeys(n for p in self.source_products() for n in p.bands))
            raise expr.describe(
                f"unknown band '{name}'",
                name,
                prefix=f"{self._prefix}: target band '{band}': ",
                suffix=f"; bands: {', '.join(available) or '(none)'}",
            )
        return tuple(bindings), bands

    def _grid(self, band: str, bands: list[tuple[str, Band]]) -> Band:
        """The band whose grid the target takes; all `bands` must share it."""
        if not bands:
            return self.source_products()[0].reference_band()
        ref = bands[0][1]
        for _, b in bands[1:]:
            if b.shape != ref.shape:
                raise self.error(
                    f"target band '{band}': bands '{ref.name}' ({ref.width}x{ref.height}) and "
                    f"'{b.name}' ({b.width}x{b.height}) differ in size; add a Resample node"
                )
            if ref.transform is not None and b.transform is not None and not ref.transform.almost_equals(b.transform, 1e-6):
                raise self.error(
                    f"target band '{band}': bands '{ref.name}' and '{b.name}' are on different grids; "
                    "add a Collocate node"
                )
        return ref

    def _target_band(self, desc: TargetBandDescriptor, plans, grids) -> Band:
        plan = plans[desc.name]
        grid, bands = grids[desc.name]
        valid = None
        valid_bindings: tuple[_Binding, ...] = ()
        others: dict[str, _TargetPlan] = {}
        all_bands = dict(bands)
        if desc.valid_expression is not None:
            valid = self._parse(desc.valid_expression, desc.name, "validExpression")
            valid_bindings, valid_bands = self._bind(valid, desc.name, targets=plans)
            all_bands.update(valid_bands)
            for b in valid_bindings:
                if b.kind == "target" and b.key != desc.name:
                    others[b.key] = plans[b.key]
                    all_bands.update(grids[b.key][1])
                    other_grid = grids[b.key][0]
                    if other_grid.shape != grid.shape:
                        raise self.error(
                            f"target band '{desc.name}': validExpression reads target band '{b.key}' "
                            f"of another size ({other_grid.width}x{other_grid.height}, not {grid.width}x{grid.height})"
                        )
            self._grid(desc.name, [("", grid)] + list(all_bands.items()))
        uses_geo = any(b.kind == "geo" for b in plan.bindings + valid_bindings) or any(
            b.kind == "geo" for p in others.values() for b in p.bindings
        )
        geo = None
        if uses_geo:
            # The CRS of the source that holds the target's grid band.
            owner = int(bands[0][0].split(":", 1)[0]) if bands else 0
            crs = self.source_products()[owner].crs
            if crs is None or grid.transform is None:
                raise self.error(f"target band '{desc.name}': LAT/LON need a map-projected source product")
            geo = _Geo(crs.to_wkt(), tuple(grid.transform)[:6])

        keys = list(all_bands)
        chunks = grid.data.chunks
        arrays = []
        for key in keys:
            a = all_bands[key].data
            arrays.append(a if a.chunks == chunks else a.rechunk(chunks))
        kernel = _Kernel(
            plan, valid, valid_bindings, others, tuple(keys),
            {key: all_bands[key].no_data for key in keys}, dict(self._constants), geo,
        )
        token = tokenize(
            desc, plan.dtype.str, plan.fill, sorted(self._constants.items()), [a.name for a in arrays],
            chunks, geo, {n: (p.expression.text, p.dtype.str, p.fill) for n, p in others.items()},
        )
        data = da.map_blocks(
            kernel,
            *arrays,
            dtype=plan.dtype,
            chunks=chunks,
            meta=np.empty((0, 0), dtype=plan.dtype),
            name=f"bandmaths-{desc.name}-{token}",
        )
        return Band(
            name=desc.name,
            data=data,
            transform=grid.transform,
            no_data=plan.fill,
            unit=desc.unit,
            description=desc.description,
            wavelength=desc.spectral_wavelength,
        )


def _with_prefix(exc: ExpressionError, prefix: str) -> ExpressionError:
    """`exc` with `prefix` before its message (column kept)."""
    new = ExpressionError(prefix + str(exc))
    new.column, new.expression = exc.column, exc.expression
    return new
