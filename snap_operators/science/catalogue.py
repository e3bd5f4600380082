"""Indices of the Awesome Spectral Indices catalogue on Sentinel-2 and Sentinel-1 tiles.

The catalogue (Montero, D., et al. (2023). A standardized catalogue of
spectral indices to advance the use of remote sensing in Earth system
research. Scientific Data 10, 197; MIT licence) is read from the copy that
``spyndex`` bundles: ``spyndex.indices`` (formulas, names, references),
``spyndex.bands`` (its band symbols and, per symbol, the Sentinel-2A band and
central wavelength) and ``spyndex.constants`` (default values). Nothing is
fetched over the network.

Band symbols map to Sentinel-2 bands through the catalogue's own
``sentinel2a`` entries (A -> B1, B -> B2, G -> B3, R -> B4, RE1 -> B5,
RE2 -> B6, RE3 -> B7, N -> B8, N2 -> B8A, WV -> B9, S1 -> B11, S2 -> B12);
``VV`` and ``VH`` are the Sentinel-1 polarisations, given to the formulas as
linear intensity, as the catalogue defines them. Symbols Sentinel-2 lacks
(thermal ``T``, ``T1``, ``T2``, yellow ``Y``, MODIS ``G1``) and the HH/HV
polarisations make an index unavailable here. The central wavelengths
``lambdaG``, ``lambdaN``... have no catalogue default; they default to the
Sentinel-2A central wavelengths (nm) of their bands. Kernel symbols
``kXY`` are the kernel ``k(X, Y)`` of two band symbols (or a band and a
constant: ``kNL`` in kEVI), by :data:`KERNELS` (``RBF`` by default).

Formulas are never handed to ``eval``: each is parsed with :mod:`ast` and
accepted only if it is a plain arithmetic expression (numbers, ``+ - * / **``,
unary minus, parentheses) of the index's own symbols; anything else (calls,
attributes, subscripts, comparisons, names it does not declare) is refused.
Constant sub-expressions are folded once in Python floats (as ``eval`` would
compute them), the rest is evaluated node by node with numpy on the tile's
float32 arrays, so the result is float32 and equals ``spyndex.computeIndex``
on the same arrays wherever that is finite. NaN wherever an input is NaN, a
denominator is 0, or a result is not finite (a root of a negative number, an
overflow), as for this project's own indices.

Example
-------
>>> import numpy as np
>>> from snap_operators.science.catalogue import bind, lookup
>>> evi = bind(lookup("EVI"))
>>> evi.roles
('B8', 'B4', 'B2')
>>> n, r, b = (np.array([[v]], np.float32) for v in (0.5, 0.1, 0.05))
>>> round(float(evi(b8=n, b4=r, b2=b)[0, 0]), 4)
0.5797
"""

from __future__ import annotations

import ast
import difflib
import functools
import math
import operator
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..core.errors import ParameterError

_F32 = np.float32
_NAN = np.float32(np.nan)

#: Prefix that asks for the catalogue's definition of a name this project also defines (``ASI:BI``).
PREFIX = "ASI:"
#: Kernels of the kernel indices (``kNDVI``...): ``k(a, b)``.
KERNELS = ("RBF", "linear", "poly")
#: Constants each kernel reads.
KERNEL_CONSTANTS = {"RBF": ("sigma",), "linear": (), "poly": ("c", "p")}
#: The value of ``sigma`` that makes the RBF length-scale the mean of the kernel's two inputs,
#: per pixel (Camps-Valls et al. 2021: sigma = 0.5 (N + R), so kNDVI = tanh(NDVI^2)).
SIGMA_MEAN = "mean"
#: Sentinel-1 polarisations the catalogue's radar indices use and this project reads.
RADAR_SYMBOLS = ("VV", "VH")
#: Radar symbols the project does not read (HH/HV products).
UNREAD_RADAR = {"HH": "HH polarisation", "HV": "HV polarisation"}
#: Sentinel-2 bands the catalogue's symbols can map to, in band order.
S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
#: Longest formula accepted (the longest in the catalogue has about 300 characters).
MAX_FORMULA_CHARS = 2000
_MAX_DEPTH = 64
CITATION = ("Montero, D., Aybar, C., Mahecha, M.D., Martinuzzi, F., Söchting, M., Wieneke, S. (2023). "
            "A standardized catalogue of spectral indices to advance the use of remote sensing in Earth system "
            "research. Scientific Data 10, 197 (Awesome Spectral Indices, MIT licence).")


class FormulaError(ValueError):
    """A formula that is not a plain arithmetic expression of known symbols."""


# --- the catalogue ------------------------------------------------------------------------------


@functools.cache
def _spyndex():
    import spyndex  # imported on first use: about 0.1 s (it imports requests)

    return spyndex


@functools.cache
def band_symbols() -> dict[str, str]:
    """Catalogue band symbol -> input role: the Sentinel-2 band (``N`` -> ``B8``) or ``VV``/``VH``.

    Read from each symbol's ``sentinel2a`` entry in ``spyndex.bands``; symbols
    without one (``T``, ``Y``, ``G1``...) are absent.
    """
    sp = _spyndex()
    out = {}
    for sym in sp.bands:
        s2 = getattr(sp.bands[sym], "sentinel2a", None)
        if s2 is not None:
            if s2.band not in S2_BANDS:  # pragma: no cover - a catalogue update would show here
                raise RuntimeError(f"catalogue maps {sym} to unknown Sentinel-2 band {s2.band!r}")
            out[sym] = s2.band
    for sym in RADAR_SYMBOLS:
        out[sym] = sym
    return out


@functools.cache
def constant_defaults() -> dict[str, float | None]:
    """Constant -> default value: the catalogue's, and Sentinel-2A central wavelengths (nm) for ``lambdaX``.

    None where neither gives one (``PAR``): an index reading it needs it given.
    """
    sp = _spyndex()
    out: dict[str, float | None] = {}
    for name in sp.constants:
        value = sp.constants[name].default
        out[name] = None if value is None else float(value)
    for sym in band_symbols():
        key = "lambda" + sym
        if key in out and out[key] is None:
            out[key] = float(sp.bands[sym].sentinel2a.wavelength)
    return out


def constant_description(name: str) -> str:
    """The catalogue's description of constant `name`."""
    return str(_spyndex().constants[name].description)


@functools.cache
def _entries() -> dict[str, object]:
    sp = _spyndex()
    return {name: sp.indices[name] for name in sp.indices}


def names() -> list[str]:
    """Every index name of the catalogue (computable here or not)."""
    return list(_entries())


def available() -> list[str]:
    """The catalogue's indices computable from Sentinel-2 bands and/or Sentinel-1 VV/VH."""
    out = []
    for name in _entries():
        try:
            lookup(name)
        except ParameterError:
            continue
        out.append(name)
    return out


@dataclass(frozen=True)
class CatalogueIndex:
    """One catalogue index, its formula checked and parsed.

    Attributes
    ----------
    name, long_name, reference, domain : str
        Short name (target band name), long name, reference URL, application domain.
    formula : str
        The formula, spaced (``ast.unparse`` of the catalogue's).
    bands : tuple of (str, str)
        ``(symbol, role)`` of each band symbol, in the order of the catalogue's list.
    constants : tuple of str
        Constants the formula reads (kernel constants are added by :func:`bind`).
    kernels : tuple of (str, str, str)
        ``(symbol, a, b)`` of each kernel symbol ``k(a, b)``.
    tree : tuple
        The parsed formula.
    """

    name: str
    long_name: str
    formula: str
    reference: str
    domain: str
    bands: tuple[tuple[str, str], ...]
    constants: tuple[str, ...]
    kernels: tuple[tuple[str, str, str], ...]
    tree: tuple = field(repr=False)


def _suggest(text: str, candidates: Sequence[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Up to `n` of `candidates` closest to `text` ignoring case (difflib's ratio); ties keep the candidates' order."""
    lower: dict[str, str] = {}
    for c in candidates:
        lower.setdefault(c.lower(), c)
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(text.lower())
    scored = []
    for rank, (low, original) in enumerate(lower.items()):
        matcher.set_seq1(low)
        if matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff:
            ratio = matcher.ratio()
            if ratio >= cutoff:
                scored.append((-ratio, rank, original))
    return [original for _, _, original in sorted(scored)[:n]]


def did_you_mean(text: str, candidates: Sequence[str]) -> str:
    """``"; did you mean EVI, EVI2?"`` (case-insensitive, :mod:`difflib`), or ``""``."""
    hits = _suggest(text, candidates)
    return f"; did you mean {', '.join(hits)}?" if hits else ""


def find(name: str) -> str | None:
    """The catalogue's spelling of `name` (exact, else the one case-insensitive match), or None.

    Raises
    ------
    ParameterError
        When `name` matches two entries case-insensitively (``bai``: BAI and BaI).
    """
    entries = _entries()
    if name in entries:
        return name
    matches = [n for n in entries if n.lower() == name.lower()]
    if len(matches) > 1:
        raise ParameterError(f"index '{name}' could be catalogue index {' or '.join(matches)}; "
                             "write it as the catalogue does")
    return matches[0] if matches else None


@functools.lru_cache(maxsize=1024)
def lookup(name: str) -> CatalogueIndex:
    """The catalogue index `name` (case-insensitive where unambiguous), checked for Sentinel-1/2.

    Raises
    ------
    ParameterError
        One line: unknown (with a did-you-mean), a band Sentinel-2 lacks or an
        unread polarisation (naming the symbols), or a formula that is not plain arithmetic.
    """
    found = find(name)
    if found is None:
        raise ParameterError(f"unknown catalogue index '{name}'{did_you_mean(name, names())}")
    entry = _entries()[found]
    symbols = list(entry.bands)
    table = band_symbols()
    consts = constant_defaults()
    bands, constants, kernels, lacking = [], [], [], []
    for sym in symbols:
        if sym in table:
            bands.append((sym, table[sym]))
        elif sym in consts:
            constants.append(sym)
        elif sym.startswith("k") and _kernel_args(sym[1:]) is not None:
            a, b = _kernel_args(sym[1:])
            kernels.append((sym, a, b))
        else:
            lacking.append(sym)
    for _, a, b in kernels:  # the kernels' bands and constants
        for s in (a, b):
            if s in table and (s, table[s]) not in bands:
                bands.append((s, table[s]))
            elif s in consts and s not in constants:
                constants.append(s)
    if lacking:
        sp = _spyndex()
        what = ", ".join(f"{s} ({UNREAD_RADAR[s]})" if s in UNREAD_RADAR else
                         f"{s} ({sp.bands[s].long_name})" if s in sp.bands else s for s in lacking)
        radar = any(s in UNREAD_RADAR for s in lacking)
        why = ("SpectralIndices reads Sentinel-1 VV and VH only" if radar else
               "Sentinel-2 has no such band" + ("s" if len(lacking) > 1 else ""))
        raise ParameterError(f"catalogue index {found} ({entry.long_name}) needs {what}: {why}")
    allowed = {s for s, _ in bands} | set(constants) | {k for k, _, _ in kernels}
    try:
        tree = compile_formula(_raw_formula(entry), allowed)
    except FormulaError as exc:
        raise ParameterError(f"catalogue index {found}: {exc}") from None
    return CatalogueIndex(
        name=found,
        long_name=str(entry.long_name),
        formula=ast.unparse(ast.parse(_raw_formula(entry), mode="eval")),
        reference=str(entry.reference),
        domain=str(entry.application_domain),
        bands=tuple(bands),
        constants=tuple(constants),
        kernels=tuple(kernels),
        tree=tree,
    )


def _raw_formula(entry) -> str:
    return str(entry.formula)


def _kernel_args(rest: str) -> tuple[str, str] | None:
    """``"NR"`` -> ``("N", "R")``: the one split of `rest` into two band symbols or constants."""
    known = set(band_symbols()) | set(constant_defaults())
    splits = [(rest[:i], rest[i:]) for i in range(1, len(rest)) if rest[:i] in known and rest[i:] in known]
    return splits[0] if len(splits) == 1 else None


# --- formulas ----------------------------------------------------------------------------------

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_UNARY = {ast.USub: "neg", ast.UAdd: "pos"}


def compile_formula(text: str, symbols: set[str] | frozenset[str]) -> tuple:
    """Parse `text` into a tree of ``("num", x)``, ``("sym", name)``, ``("neg", t)``, ``(op, l, r)``.

    Accepts numbers (int or float literals), the names in `symbols`, the binary
    operators ``+ - * / **``, unary ``-``/``+`` and parentheses, and nothing else.

    Raises
    ------
    FormulaError
    """
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("empty formula")
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaError(f"formula longer than {MAX_FORMULA_CHARS} characters")
    try:
        node = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise FormulaError(f"cannot parse formula {text[:80]!r} ({type(exc).__name__})") from None
    return _node(node.body, symbols, 0)


def _node(n: ast.AST, symbols, depth: int) -> tuple:
    if depth > _MAX_DEPTH:
        raise FormulaError(f"formula nested deeper than {_MAX_DEPTH} levels")
    if isinstance(n, ast.BinOp) and type(n.op) in _BINOPS:
        return (_BINOPS[type(n.op)], _node(n.left, symbols, depth + 1), _node(n.right, symbols, depth + 1))
    if isinstance(n, ast.UnaryOp) and type(n.op) in _UNARY:
        return (_UNARY[type(n.op)], _node(n.operand, symbols, depth + 1))
    if isinstance(n, ast.Constant) and type(n.value) in (int, float):  # not bool, complex, str
        value = float(n.value)
        if not math.isfinite(value):
            raise FormulaError(f"number {n.value!r} is not finite")
        return ("num", value)
    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
        if n.id not in symbols:
            raise FormulaError(f"unknown symbol {n.id!r} (known: {', '.join(sorted(symbols))})")
        return ("sym", n.id)
    shown = ast.unparse(n)
    raise FormulaError(f"{shown[:60]!r} is not plain arithmetic (numbers, symbols, + - * / ** and parentheses)")


def _fold(node: tuple, consts: Mapping[str, float]) -> tuple:
    """`node` with the constants substituted and constant sub-expressions computed (Python floats)."""
    kind = node[0]
    if kind == "num":
        return node
    if kind == "sym":
        return ("num", consts[node[1]]) if node[1] in consts else node
    parts = [_fold(p, consts) for p in node[1:]]
    if kind == "/" and parts[1] == ("num", 0.0):
        raise FormulaError(f"the constants make the denominator of {_show(node)} 0")
    if all(p[0] == "num" for p in parts):
        values = [p[1] for p in parts]
        try:
            value = _scalar(kind, *values)
        except (ZeroDivisionError, OverflowError) as exc:
            raise FormulaError(f"the constants make {_show(node)} undefined ({exc})") from None
        if isinstance(value, complex) or not math.isfinite(value):
            raise FormulaError(f"the constants make {_show(node)} undefined")
        return ("num", value)
    return (kind, *parts)


#: The arithmetic of a formula node, for folded constants and for tiles alike.
_UNARY_FN = {"neg": operator.neg, "pos": operator.pos}
_BINARY_FN = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}


def _scalar(kind: str, a: float, b: float | None = None) -> float:
    return _UNARY_FN[kind](a) if kind in _UNARY_FN else _BINARY_FN[kind](a, b)


def _show(node: tuple) -> str:
    kind = node[0]
    if kind == "num":
        return repr(node[1])
    if kind == "sym":
        return node[1]
    if kind in ("neg", "pos"):
        return ("-" if kind == "neg" else "+") + _show(node[1])
    return f"({_show(node[1])} {kind} {_show(node[2])})"


def _evaluate(node: tuple, values: Mapping[str, np.ndarray | float]):
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "sym":
        return values[node[1]]
    if kind in _UNARY_FN:
        return _UNARY_FN[kind](_evaluate(node[1], values))
    a, b = _evaluate(node[1], values), _evaluate(node[2], values)
    r = _BINARY_FN[kind](a, b)
    if kind == "/" and isinstance(r, np.ndarray) and isinstance(b, np.ndarray):
        np.putmask(r, b == 0, _NAN)  # a fresh array: no input is written
    return r


# --- binding constants --------------------------------------------------------------------------


def parse_constants(items: Sequence[str] | Mapping[str, object] | None) -> dict[str, float | str]:
    """``["L=0.5", "g=2.5"]`` (or a mapping) -> ``{"L": 0.5, "g": 2.5}``, checked against the catalogue.

    Constant names are case-sensitive, as in the catalogue (``n`` is a constant,
    ``N`` the NIR band). ``sigma`` may be ``mean`` (:data:`SIGMA_MEAN`).

    Raises
    ------
    ParameterError
        One line: not ``name=value``, an unknown name (with a did-you-mean), a
        band symbol, a value given twice, or a value that is not a finite number.
    """
    if not items:
        return {}
    pairs = list(items.items()) if isinstance(items, Mapping) else [_split(str(i)) for i in items]
    known = constant_defaults()
    out: dict[str, float | str] = {}
    for name, raw in pairs:
        name = str(name).strip()
        if name not in known:
            if name in band_symbols():
                raise ParameterError(f"constants: {name} is a band of the catalogue, not a constant")
            raise ParameterError(f"constants: unknown constant '{name}'{did_you_mean(name, list(known))} "
                                 f"(constants: {', '.join(known)})")
        if name in out:
            raise ParameterError(f"constants: {name} is given twice")
        text = str(raw).strip()
        if text.lower() == SIGMA_MEAN:
            if name != "sigma":
                raise ParameterError(f"constants: only sigma may be {SIGMA_MEAN}, not {name}")
            out[name] = SIGMA_MEAN
            continue
        try:
            value = float(text)
        except ValueError:
            raise ParameterError(f"constants: {name}={text[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise ParameterError(f"constants: {name}={text[:40]} is not a finite number")
        out[name] = value
    return out


def _split(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ParameterError(f"constants: {item[:60]!r} is not name=value (e.g. L=0.5)")
    return name, value


@dataclass(frozen=True)
class BoundIndex:
    """A catalogue index with its constants and kernel fixed: a function of float32 tiles.

    Call it with the input tiles as keywords named by lower-case role
    (``b8=..., b4=..., vv=...``; VV/VH as linear intensity); it returns a
    float32 array, NaN where an input is NaN, a denominator is 0 or the result
    is not finite.

    Attributes
    ----------
    index : CatalogueIndex
    constants : tuple of (str, float or str)
        Every constant the index reads (its formula and its kernel) with the value used.
    kernel : str or None
        The kernel, for kernel indices.
    """

    index: CatalogueIndex
    constants: tuple[tuple[str, float | str], ...]
    kernel: str | None
    tree: tuple = field(repr=False)
    #: Whether a NaN input might not reach the result by arithmetic alone (``NaN ** 0`` is 1, an RBF
    #: kernel of a band with itself is 1, a band the formula does not read), so inputs are checked too.
    recheck_nan: bool = True

    @property
    def name(self) -> str:
        return self.index.name

    @property
    def roles(self) -> tuple[str, ...]:
        """Input roles (``B8``, ``VV``...), in the catalogue's order of the symbols."""
        return tuple(dict.fromkeys(r for _, r in self.index.bands))

    @property
    def args(self) -> tuple[str, ...]:
        """Keyword names of the inputs: the roles in lower case."""
        return tuple(r.lower() for r in self.roles)

    def values_text(self) -> str:
        """``"g=2.5, C1=6, C2=7.5, L=1"``."""
        return ", ".join(f"{k}={format_constant(v)}" for k, v in self.constants)

    def __call__(self, **tiles: np.ndarray) -> np.ndarray:
        arrays = {r: np.asarray(tiles[r.lower()], dtype=_F32) for r in self.roles}
        shape = np.shape(next(iter(arrays.values())))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            values: dict[str, np.ndarray | float] = {s: arrays[r] for s, r in self.index.bands}
            consts = dict(self.constants)
            for sym, a, b in self.index.kernels:
                values[sym] = _kernel(self.kernel, values.get(a, consts.get(a)), values.get(b, consts.get(b)),
                                      a == b, consts)
            result = _evaluate(self.tree, values)
        if (isinstance(result, np.ndarray) and result.dtype == _F32 and result.shape == shape
                and result.flags.c_contiguous and result.flags.writeable
                and not any(result is a or np.shares_memory(result, a) for a in arrays.values())):
            out = result  # a temporary of the expression: ours to write
        else:
            out = np.array(np.broadcast_to(result, shape), dtype=_F32)  # a copy: never an input tile
        bad = ~np.isfinite(out)
        if self.recheck_nan:
            for a in arrays.values():
                bad |= np.isnan(a)
        np.putmask(out, bad, _NAN)
        return out


def _kernel(kernel: str, a, b, same: bool, consts: Mapping[str, float | str]):
    """``k(a, b)`` as ``spyndex.computeKernel`` computes it (RBF: 1 where the two inputs are one symbol)."""
    if kernel == "linear":
        return a * b
    if kernel == "poly":
        return ((a * b) + consts["c"]) ** consts["p"]
    if same:
        return 1.0
    sigma = consts["sigma"]
    if sigma == SIGMA_MEAN:
        sigma = (a + b) / 2.0
    return np.exp((-1.0 * (a - b) ** 2.0) / (2.0 * sigma**2.0))


def format_constant(v: float | str) -> str:
    return v if isinstance(v, str) else f"{v:g}"


def bind(index: CatalogueIndex, constants: Mapping[str, float | str] | None = None, kernel: str = "RBF") -> BoundIndex:
    """`index` with its constants (`constants`, else the catalogue defaults) and kernel fixed.

    Raises
    ------
    ParameterError
        A constant without default that is not given (``PAR``), an unknown kernel,
        ``sigma`` of 0, or constants that make the formula undefined.
    """
    constants = dict(constants or {})
    if kernel not in KERNELS:
        raise ParameterError(f"kernel '{kernel}' is not one of {', '.join(KERNELS)}")
    used = list(index.constants)
    if index.kernels:
        used += [c for c in KERNEL_CONSTANTS[kernel] if c not in used]
    defaults = constant_defaults()
    values: dict[str, float | str] = {}
    for name in used:
        value = constants.get(name, defaults.get(name))
        if value is None:
            raise ParameterError(f"index {index.name} needs constant {name} ({constant_description(name)}), "
                                 f"which has no default: give it in constants, e.g. {name}=1")
        if value == SIGMA_MEAN and name != "sigma":
            raise ParameterError(f"constants: only sigma may be {SIGMA_MEAN}")
        values[name] = value
    if index.kernels and kernel == "RBF" and values["sigma"] == 0:
        raise ParameterError(f"index {index.name}: the RBF kernel's sigma must not be 0")
    numbers = {k: v for k, v in values.items() if not isinstance(v, str)}
    try:
        tree = _fold(index.tree, numbers)
    except FormulaError as exc:
        raise ParameterError(f"index {index.name}: {exc}") from None
    read = set(_symbols(tree))
    recheck = bool(index.kernels) or _has_pow(tree) or not {s for s, _ in index.bands} <= read
    return BoundIndex(index, tuple(values.items()), kernel if index.kernels else None, tree, recheck)


def _symbols(node: tuple):
    if node[0] == "sym":
        yield node[1]
    elif node[0] != "num":
        for part in node[1:]:
            yield from _symbols(part)


def _has_pow(node: tuple) -> bool:
    return node[0] == "**" or (node[0] not in ("num", "sym") and any(_has_pow(p) for p in node[1:]))


@functools.lru_cache(maxsize=256)
def _bound(name: str, constants: tuple[tuple[str, float | str], ...], kernel: str) -> BoundIndex:
    return bind(lookup(name), dict(constants), kernel)


def bound(name: str, constants: Mapping[str, float | str] | None = None, kernel: str = "RBF") -> BoundIndex:
    """:func:`bind` of :func:`lookup` `name`, cached (tile functions call it for every tile)."""
    return _bound(name, tuple(sorted((constants or {}).items())), kernel)
