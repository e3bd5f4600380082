"""SNAP band-maths expressions: tokenizer, type-checking parser and numpy evaluator.

The language, its types and its evaluation rules are those of SNAP's
``jexp`` package (``snap-core/.../core/jexp``: ``impl/Tokenizer``,
``impl/ParserImpl``, ``Term``, ``impl/Functions``, ``impl/DefaultNamespace``,
``impl/ExtMath``), which BandMaths in gpt uses. Binary operators, lowest
binding first::

    if c then a else b     c ? a : b       (right-associative)
    ||  or
    &&  and
    <  <=  >  >=  ==  !=                   (one level, as in SNAP)
    |
    ^
    &
    +  -
    *  /  %
    unary  -  +  !  not  ~
    numbers, names, 'quoted names', f(args), ( ... )

Keywords (``and or not true false if then else``) are case-insensitive,
names and function names are case-sensitive. Names hold letters, digits,
``_``, ``$`` and ``.``; any other name is written in single quotes (``'my
band'``, a quote doubled inside). ``NaN`` is a constant; ``PI`` and ``E`` are
constants a band or variable of that name hides; ``X`` and ``Y`` are the
pixel-centre coordinates (column + 0.5, row + 0.5) of the evaluated grid.

Types
-----
Every term has one of SNAP's three types, ``boolean``, ``int`` or
``double`` (``Term.TYPE_B/I/D``): ``true``/``false`` and comparisons are
boolean, integer literals (decimal or ``0x`` hex, int32 range) and integer
bands are int, everything else is double. With type checking (what gpt's
BandMaths does when it initializes) booleans and numbers do not mix: ``(a >
0) * 2``, ``a && b`` on numbers, ``c ? 1 : 0`` with a numeric ``c``, ``&``
on doubles are refused with SNAP's message (``Numeric operands expected for
binary '*' operator.``). Without type checking (SNAP's ``BandArithmetic``
default, used for virtual bands and valid-pixel expressions) they are
converted as Java does (``true`` is 1, a number is true when ``!= 0``).

Evaluation follows ``Term.evalB/evalI/evalD`` exactly: the *caller* decides
in which type a term is evaluated. The top of an expression is evaluated in
double (``BandMathsOp.computeTile`` calls ``term.evalD``), so ``7 / 2`` is
3.5; an integer comparison, a bit operator or an int function (``min``,
``max``, ``abs``, ``sign`` of int arguments) evaluates its operands in int, so
``7 / 2 == 3`` is true and ``min(7 / 2, 4)`` is 3. Int arithmetic is Java's
(int32, wraps around, division truncates toward zero, ``x / 0`` and ``x % 0``
raise). Everything is computed with numpy over whole tiles, in the type the
Java code would use; nothing is ever handed to Python's ``eval``.

Examples
--------
>>> import numpy as np
>>> expr = parse("(B8 - B4) / (B8 + B4)")
>>> sorted(expr.symbols)
['B4', 'B8']
>>> expr.evaluate({"B4": np.array([0.1]), "B8": np.array([0.3])})
array([0.5])
>>> float(parse("7 / 2").evaluate({})), bool(parse("7 / 2 == 3").evaluate({}))
(3.5, True)
>>> parse("(B4 > 0) * 2", {"B4": "double"})
Traceback (most recent call last):
...
snap_operators.core.errors.ExpressionError: Could not parse expression: '(B4 > 0) * 2'. Numeric operands expected for binary '*' operator. (column 10)
"""

from __future__ import annotations

import difflib
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .errors import ExpressionError

__all__ = [
    "Expression", "parse", "FUNCTIONS", "BUILTIN_SYMBOLS", "MAX_NESTING", "TYPE_B", "TYPE_I", "TYPE_D",
    "TYPE_NAMES", "ComputedD",
]

#: Deepest nesting of parentheses, function calls, conditionals and unary
#: operators; deeper input gets a clear error instead of a RecursionError.
MAX_NESTING = 64

#: SNAP's term types (``Term.TYPE_B``, ``TYPE_I``, ``TYPE_D``).
TYPE_B, TYPE_I, TYPE_D = 1, 2, 3
#: Type names as SNAP prints them (``ParserImpl.getParamTypeString``).
TYPE_NAMES = {TYPE_B: "boolean", TYPE_I: "int", TYPE_D: "double"}
_TYPE_OF_NAME = {"boolean": TYPE_B, "int": TYPE_I, "double": TYPE_D}

#: Names the evaluator knows without an environment (a band or variable of
#: the same name takes precedence, as in SNAP's namespaces).
BUILTIN_SYMBOLS = frozenset({"PI", "E", "X", "Y"})

_KEYWORDS = frozenset({"and", "or", "not", "true", "false", "if", "then", "else"})
_SPECIAL = ("==", "<=", ">=", "!=", "&&", "||", "<<", ">>")  # Tokenizer.specialTokens
_ORDINARY = frozenset("(){}[],:<>=!?|&%$+-*/^~")  # Tokenizer.ordinaryChars ('"' starts a string)
_UNARY = frozenset({"-", "+", "!", "~", "not"})

# Binary operator levels, lowest precedence first (SNAP's ParserImpl order).
_LEVELS = (
    ("||",),
    ("&&",),
    ("<", "<=", ">", ">=", "==", "!="),
    ("|",),
    ("^",),
    ("&",),
    ("+", "-"),
    ("*", "/", "%"),
)
_LEVEL_OF = {op: i for i, ops in enumerate(_LEVELS) for op in ops}
_KEYWORD_OPS = {"or": "||", "and": "&&", "not": "!"}

_F8 = np.float64
_I4 = np.int32
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MAX = 2**63 - 1


# --- tokens -------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    # kind: "int", "hex", "double", "name", "qname", "string", "kw", "op", "unknown", "eos"
    kind: str
    text: str
    pos: int  # 0-based offset in the expression
    value: Any = None


def _is_white(c: str) -> bool:
    """Java's ``Character.isWhitespace`` (no-break spaces are not white)."""
    if c == " " or c in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f":
        return True
    if c in "\u00a0\u2007\u202f" or c.isascii():
        return False
    return unicodedata.category(c) in ("Zs", "Zl", "Zp")


def _is_digit(c: str) -> bool:
    """Java's ``Character.isDigit``: any Unicode decimal digit (category Nd)."""
    return c.isdecimal()


def _tokenize(text: str, fail: Callable[[str, int], Exception]) -> Iterator[_Token]:
    """Tokens of `text`, lazily, so errors are reported left to right (SNAP's ``Tokenizer``)."""
    i, n = 0, len(text)
    while True:
        while i < n and _is_white(text[i]):
            i += 1
        if i >= n:
            yield _Token("eos", "", n)
            return
        c = text[i]
        start = i
        if c.isalpha() or c in "_$":
            i += 1
            while i < n and (text[i].isalpha() or _is_digit(text[i]) or text[i] in "_$."):
                i += 1
            word = text[start:i]
            if word.lower() in _KEYWORDS:
                yield _Token("kw", word, start, word.lower())
            else:
                yield _Token("name", word, start, word)
        elif c == "'":
            i += 1
            chars = []
            while True:
                if i >= n:
                    # SNAP silently takes the rest of the line as the name; a clear error is kinder.
                    raise fail("Unterminated quoted name: a closing ' is missing.", start)
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        chars.append("'")
                        i += 2
                        continue
                    i += 1
                    break
                chars.append(text[i])
                i += 1
            yield _Token("qname", text[start:i], start, "".join(chars))
        elif c == '"':
            # SNAP parses "..." as a string constant (Term.ConstS), usable only in var(...).
            raise fail('String constants ("...") are not supported by this engine.', start)
        elif c == "0" and i + 1 < n and text[i + 1] in "xXm":
            # Tokenizer.isHexNumberStart also takes '0m' as a hex prefix.
            i += 2
            while i < n and (_is_digit(text[i]) or text[i] in "abcdefABCDEF"):
                i += 1
            yield _Token("hex", text[start:i], start)
        elif _is_digit(c) or (c == "." and i + 1 < n and _is_digit(text[i + 1])):
            kind = "int"
            while i < n and _is_digit(text[i]):
                i += 1
            if i < n and text[i] == ".":
                kind = "double"
                i += 1
                while i < n and _is_digit(text[i]):
                    i += 1
            if i < n and text[i] in "eE" and (
                (i + 1 < n and _is_digit(text[i + 1]))
                or (i + 2 < n and text[i + 1] in "+-" and _is_digit(text[i + 2]))
            ):
                kind = "double"
                i += 2
                while i < n and _is_digit(text[i]):
                    i += 1
            # SNAP's octal detection is dead code ('010' is 10), so every integer is decimal.
            yield _Token(kind, text[start:i], start)
        else:
            special = next((sp for sp in _SPECIAL if text.startswith(sp, i)), None)
            if special is not None:
                i += len(special)
                yield _Token("op", special, start)
            elif c in _ORDINARY:
                i += 1
                yield _Token("op", c, start)
            else:
                i += 1
                yield _Token("unknown", c, start)


# --- typed syntax tree ----------------------------------------------------
# Every node carries its SNAP type (TYPE_B/I/D, None when a name's type is
# unknown) and `idiv`: whether an integer division or modulo is inside (only
# then does evaluation track which pixels a branch really reaches).


@dataclass(frozen=True)
class Const:
    value: bool | int | float
    type: int | None
    idiv: bool = False


@dataclass(frozen=True)
class Ref:
    name: str
    pos: int
    type: int | None
    idiv: bool = False


@dataclass(frozen=True)
class Unary:
    op: str  # "Neg", "NotB", "NotI"
    operand: Any
    pos: int
    type: int | None
    idiv: bool = False


@dataclass(frozen=True)
class Chain:
    """A left-associative run of one precedence level: ``a op b op c ...``.

    Kept flat (not nested pairs) so a long sum is evaluated by a loop, not
    by recursion as deep as the sum is long. ``steps`` holds ``(opcode,
    node)`` with SNAP's term class as opcode (``"Add"``, ``"LtD"``,
    ``"EqI"``, ``"AndB"``...), ``types`` the type of the chain after each
    step.
    """

    first: Any
    steps: tuple
    types: tuple
    type: int | None
    idiv: bool = False


@dataclass(frozen=True)
class Cond:
    """``c1 ? v1 : c2 ? v2 : ... : default``; ``if/then/else`` chains alike."""

    branches: tuple  # ((cond, value), ...)
    default: Any
    type: int | None
    idiv: bool = False


@dataclass(frozen=True)
class Call:
    name: str
    function: Any  # _Function, or None when the overload depends on unknown types
    args: tuple
    pos: int
    type: int | None
    idiv: bool = False


_ARITH = frozenset({"Add", "Sub", "Mul", "Div", "Mod"})
_OP_ARITH = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div", "%": "Mod"}
_OP_COMPARE = {"<": "Lt", ">": "Gt", "<=": "Le", ">=": "Ge", "==": "Eq", "!=": "NEq"}
_OP_BITWISE = {"|": "OrI", "^": "XOrI", "&": "AndI"}


# --- functions ------------------------------------------------------------


def _java_int(x):
    """Java's ``(int)`` cast of doubles, elementwise: truncate, NaN -> 0, saturate to int32."""
    x = np.asarray(x, dtype=_F8)
    x = np.nan_to_num(np.trunc(x), nan=0.0, posinf=_INT_MAX, neginf=_INT_MIN)
    return np.clip(x, _INT_MIN, _INT_MAX).astype(_I4)


def _java_round_long(x):
    """Java's ``Math.round(double)`` as a double: the closest long, ties up, NaN -> 0, saturated."""
    x = np.asarray(x, dtype=_F8)
    r = np.floor(x)
    r = r + (x - r >= 0.5)  # exact: no x + 0.5 rounding (Math.round(0.49999999999999994) is 0)
    r = np.nan_to_num(r, nan=0.0)
    return np.clip(r, -(2.0**63), 2.0**63)  # 2**63 is (double) Long.MAX_VALUE


def _float_elem_int(x):
    """``ProductData.Float.getElemIntAt``: ``Math.round(float)``, saturated to int32."""
    r = _java_round_long(x)
    return np.clip(r, _INT_MIN, _INT_MAX).astype(_I4)


def _double_elem_int(x):
    """``ProductData.Double.getElemIntAt``: ``(int) Math.round(double)``: the long wraps to int32."""
    r = _java_round_long(x)
    big = r >= 2.0**63  # Long.MAX_VALUE, whose low 32 bits are -1
    out = np.where(big, 0.0, r).astype(np.int64).astype(_I4)
    if np.any(big):
        out = np.where(big, _I4(-1), out)
    return out


def _java_pow(x, y):
    """``FastMath.pow`` / ``Math.pow``: as C's pow, but NaN for 1**NaN and (+-1)**(+-inf)."""
    x = np.asarray(x, dtype=_F8)
    y = np.asarray(y, dtype=_F8)
    r = np.power(x, y)
    bad = (np.isnan(y) & (y != 0)) | (np.isinf(y) & (np.abs(x) == 1.0))
    if np.any(bad):
        r = np.where(bad, np.nan, r)
    return r


def _java_min(a, b):
    """``Math.min(double, double)``: NaN wins, -0.0 is less than 0.0."""
    r = np.minimum(a, b)
    zeros = (a == 0) & (b == 0)
    if np.any(zeros):
        r = np.where(zeros, np.where(np.signbit(a), a, b), r)
    return r


def _java_max(a, b):
    """``Math.max(double, double)``: NaN wins, 0.0 is greater than -0.0."""
    r = np.maximum(a, b)
    zeros = (a == 0) & (b == 0)
    if np.any(zeros):
        r = np.where(zeros, np.where(np.signbit(a), b, a), r)
    return r


def _sign_d(a):
    # ExtMath.sign(double): NaN stays NaN, both zeros give +0.0 (numpy keeps -0.0).
    return np.sign(a) + 0.0


def _feq(a, b, eps=1e-6):
    # ExtMath.feq: x1 == x2 || Math.abs(x1 - x2) <= eps
    return np.logical_or(np.equal(a, b), np.less_equal(np.abs(np.subtract(a, b)), eps))


def _mean(args):
    # ExtMath.mean: sum in argument order from 0.0, then / n (n == 0 gives NaN).
    acc = _F8(0.0)
    for a in args:
        acc = acc + a
    return acc / _F8(len(args))


def _mean2(args):
    acc = _F8(0.0)
    for a in args:
        acc = acc + a * a
    return acc / _F8(len(args))


def _mean4(args):
    acc = _F8(0.0)
    for a in args:
        acc = acc + np.power(a, 4.0)
    return acc / _F8(len(args))


def _stddev(args):
    m = _mean(args)
    return np.sqrt(_mean2(args) - m * m)


def _coef_var(args):
    m2 = _mean2(args)
    return np.sqrt(_mean4(args) - m2 * m2) / m2


def _distance(args):
    n = len(args) // 2
    acc = _F8(0.0)
    for i in range(n):
        d = args[i + n] - args[i]
        acc = acc + d * d
    return np.sqrt(acc)


def _distance_deriv(args):
    n = len(args) // 2
    acc = _F8(0.0)
    for i in range(n - 1):
        v1 = args[i + 1] - args[i]
        v2 = args[i + n + 1] - args[i + n]
        acc = acc + (v1 - v2) * (v1 - v2)
    return np.sqrt(acc)


def _distance_integ(args):
    n = len(args) // 2
    acc = s1 = s2 = _F8(0.0)
    for i in range(n):
        s1 = s1 + args[i]
        s2 = s2 + args[i + n]
        acc = acc + (s2 - s1) * (s2 - s1)
    return np.sqrt(acc)


def _inrange(args):
    # SNAP fails a pixel only on v < lo or v > hi, so NaN counts as in range.
    n1 = len(args) // 3
    ok = np.bool_(True)
    for i in range(n1):
        v, lo, hi = args[i], args[i + n1], args[i + 2 * n1]
        ok = ok & ~(np.less(v, lo) | np.greater(v, hi))
    return ok


def _inrange_deriv(args):
    n1 = len(args) // 3
    ok = np.bool_(True)
    for i in range(n1 - 1):
        v = args[i + 1] - args[i]
        lo = args[i + n1 + 1] - args[i + n1]
        hi = args[i + 2 * n1 + 1] - args[i + 2 * n1]
        ok = ok & ~(np.less(v, lo) | np.greater(v, hi))
    return ok


def _inrange_integ(args):
    n1 = len(args) // 3
    ok = np.bool_(True)
    v = lo = hi = _F8(0.0)
    for i in range(n1):
        v = v + args[i]
        lo = lo + args[i + n1]
        hi = hi + args[i + 2 * n1]
        ok = ok & ~(np.less(v, lo) | np.greater(v, hi))
    return ok


def _bit_set(args):
    # (value & (1L << bitIndex)) != 0: the int value is sign-extended to long and
    # Java masks a long shift count to 6 bits.
    value = np.asarray(args[0]).astype(np.int64)
    bit = np.asarray(args[1]).astype(np.int64) & 63
    return np.not_equal(np.bitwise_and(value, np.left_shift(np.int64(1), bit)), 0)


@dataclass(frozen=True)
class _Function:
    """One SNAP function overload (``AbstractFunction``).

    Attributes
    ----------
    name : str
    nargs : int
        Number of arguments; -1 for any number (SNAP's ``numArgs``).
    type : int
        Return type, also the declared type of every argument (SNAP's
        ``AbstractFunction`` constructor), which overload resolution uses.
    arg_mode : int
        The type the implementation evaluates its arguments in
        (``args[i].evalD`` / ``evalI``).
    impl : callable
        ``impl(args, evaluator)``: numpy implementation on the evaluated
        arguments, returning a value of `type`.
    """

    name: str
    nargs: int
    type: int
    arg_mode: int
    impl: Callable[[list, "_Evaluator"], Any]

    def __reduce__(self):
        # The implementations are lambdas: pickle a reference into the table (for dask workers).
        return _function_named, (self.name, self.nargs, self.type)


def _function_named(name: str, nargs: int, type_: int) -> "_Function":
    return next(fn for fn in FUNCTIONS[name] if fn.nargs == nargs and fn.type == type_)


def _d1(name, ufunc):
    return _Function(name, 1, TYPE_D, TYPE_D, lambda a, ev: ufunc(a[0]))


# SNAP's registration order: Functions.getAll() (declaration order), then the
# extra functions of DefaultNamespace. The order decides ties in resolution.
_OVERLOADS = (
    _Function("avg", -1, TYPE_D, TYPE_D, lambda a, ev: _mean(a)),
    _Function("fneq", 2, TYPE_B, TYPE_D, lambda a, ev: np.logical_not(_feq(a[0], a[1]))),
    _Function("feq", 2, TYPE_B, TYPE_D, lambda a, ev: _feq(a[0], a[1])),
    _d1("sin", np.sin),
    _d1("cos", np.cos),
    _d1("tan", np.tan),
    _d1("asin", np.arcsin),
    _d1("acos", np.arccos),
    _d1("atan", np.arctan),
    _Function("atan2", 2, TYPE_D, TYPE_D, lambda a, ev: np.arctan2(a[0], a[1])),
    _d1("log", np.log),
    _d1("log10", np.log10),
    _d1("exp", np.exp),
    _Function("exp10", 1, TYPE_D, TYPE_D, lambda a, ev: _java_pow(10.0, a[0])),
    _Function("sq", 1, TYPE_D, TYPE_D, lambda a, ev: a[0] * a[0]),
    _d1("sqrt", np.sqrt),
    _Function("pow", 2, TYPE_D, TYPE_D, lambda a, ev: _java_pow(a[0], a[1])),
    _Function("min", 2, TYPE_I, TYPE_I, lambda a, ev: np.minimum(a[0], a[1])),
    _Function("min", 2, TYPE_D, TYPE_D, lambda a, ev: _java_min(a[0], a[1])),
    _Function("max", 2, TYPE_I, TYPE_I, lambda a, ev: np.maximum(a[0], a[1])),
    _Function("max", 2, TYPE_D, TYPE_D, lambda a, ev: _java_max(a[0], a[1])),
    _d1("floor", np.floor),
    # Math.round returns a long: NaN -> 0, ties up, saturated at the long range.
    _Function("round", 1, TYPE_D, TYPE_D, lambda a, ev: _java_round_long(a[0])),
    _d1("ceil", np.ceil),
    _d1("rint", np.rint),  # Math.rint: half to even, as numpy
    _Function("sign", 1, TYPE_I, TYPE_I, lambda a, ev: np.sign(a[0])),
    _Function("sign", 1, TYPE_D, TYPE_D, lambda a, ev: _sign_d(a[0])),
    _Function("abs", 1, TYPE_I, TYPE_I, lambda a, ev: np.abs(a[0])),  # abs(MIN_VALUE) wraps, as in Java
    _Function("abs", 1, TYPE_D, TYPE_D, lambda a, ev: np.abs(a[0])),
    _d1("deg", np.degrees),  # x * (180 / PI), as Math.toDegrees
    _d1("rad", np.radians),
    # Math.sqrt(a * a + b * b), not hypot (which rounds differently and never overflows)
    _Function("ampl", 2, TYPE_D, TYPE_D, lambda a, ev: np.sqrt(a[0] * a[0] + a[1] * a[1])),
    _Function("phase", 2, TYPE_D, TYPE_D, lambda a, ev: np.arctan2(a[1], a[0])),
    _Function("fneq", 3, TYPE_B, TYPE_D, lambda a, ev: np.logical_not(_feq(a[0], a[1], a[2]))),
    _Function("inf", 1, TYPE_B, TYPE_D, lambda a, ev: np.isinf(a[0])),
    _Function("nan", 1, TYPE_B, TYPE_D, lambda a, ev: np.isnan(a[0])),
    _Function("distance", -1, TYPE_D, TYPE_D, lambda a, ev: _distance(a)),
    _Function("feq", 3, TYPE_B, TYPE_D, lambda a, ev: _feq(a[0], a[1], a[2])),
    _Function("stddev", -1, TYPE_D, TYPE_D, lambda a, ev: _stddev(a)),
    _Function("coef_var", -1, TYPE_D, TYPE_D, lambda a, ev: _coef_var(a)),
    _Function("random_uniform", 0, TYPE_D, TYPE_D, lambda a, ev: ev.random("uniform")),
    _Function("random_gaussian", 0, TYPE_D, TYPE_D, lambda a, ev: ev.random("gaussian")),
    _d1("sinh", np.sinh),
    _d1("cosh", np.cosh),
    _d1("tanh", np.tanh),
    # ExtMath.sech / cosech: 2 / (exp(x) +- exp(-x)), not 1 / cosh(x)
    _Function("sech", 1, TYPE_D, TYPE_D, lambda a, ev: 2.0 / (np.exp(a[0]) + np.exp(-a[0]))),
    _Function("cosech", 1, TYPE_D, TYPE_D, lambda a, ev: 2.0 / (np.exp(a[0]) - np.exp(-a[0]))),
    _Function("bit_set", 2, TYPE_B, TYPE_I, lambda a, ev: _bit_set(a)),
    _Function("distance_deriv", -1, TYPE_D, TYPE_D, lambda a, ev: _distance_deriv(a)),
    _Function("distance_integ", -1, TYPE_D, TYPE_D, lambda a, ev: _distance_integ(a)),
    _Function("inrange", -1, TYPE_B, TYPE_D, lambda a, ev: _inrange(a)),
    _Function("inrange_deriv", -1, TYPE_B, TYPE_D, lambda a, ev: _inrange_deriv(a)),
    _Function("inrange_integ", -1, TYPE_B, TYPE_D, lambda a, ev: _inrange_integ(a)),
)

#: SNAP's band-maths functions (``jexp.impl.Functions`` and
#: ``DefaultNamespace``): name -> its overloads, in SNAP's registration order.
FUNCTIONS: dict[str, tuple[_Function, ...]] = {}
for _fn in _OVERLOADS:
    FUNCTIONS[_fn.name] = FUNCTIONS.get(_fn.name, ()) + (_fn,)
del _fn


def _resolve_function(name: str, arg_types: list) -> tuple[_Function | None, bool]:
    """SNAP's ``NamespaceImpl.resolveFunction``: the best overload by argument count and types.

    Returns ``(function, found)``; `function` is None with `found` True when
    the choice depends on arguments of unknown type (an untyped parse).
    """
    best, best_validity = None, -1
    candidates = []
    for fn in FUNCTIONS.get(name, ()):
        if fn.nargs != len(arg_types) and fn.nargs != -1:
            continue
        candidates.append(fn)
        validity = 10 if fn.nargs == len(arg_types) else 0
        for t in arg_types:
            if t == fn.type:
                validity += 4
            elif fn.type == TYPE_D and t in (TYPE_I, TYPE_D):
                validity += 2
            elif fn.type == TYPE_I and t in (TYPE_I, TYPE_D):
                validity += 1
        if validity > best_validity:  # strictly greater: the first registered wins ties
            best, best_validity = fn, validity
    if best is None:
        return None, False
    if None in arg_types and len({fn.type for fn in candidates}) > 1:
        return None, True
    return best, True


# --- parser -----------------------------------------------------------------


def _shown(text: str, pos: int | None = None, width: int = 100) -> str:
    """The expression on one line, cut around `pos` when long."""
    one_line = "".join(" " if ch.isspace() else ch for ch in text)
    if len(one_line) <= width:
        return one_line
    centre = 0 if pos is None else pos
    lo = max(0, min(centre - width // 2, len(one_line) - width))
    hi = lo + width
    return ("..." if lo else "") + one_line[lo:hi] + ("..." if hi < len(one_line) else "")


def _cut(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _describe(tok: _Token) -> str:
    if tok.kind == "eos":
        return "the end of the expression"
    if tok.kind == "unknown":
        return f"the character {tok.text!r}"
    return f"'{_cut(tok.text)}'"


def _error(text: str, detail: str, pos: int | None) -> ExpressionError:
    """``Could not parse expression: '<text>'. <detail> (column N)`` (BandMathsOp.createTerm's wording)."""
    column = None if pos is None else pos + 1
    return ExpressionError(
        f"Could not parse expression: '{_shown(text, pos)}'. {detail}", column=column, expression=text
    )


def _is_d(t1, t2) -> bool:
    # ParserImpl.isD: one operand double, the other numeric
    return (t1 == TYPE_D and t2 in (TYPE_I, TYPE_D)) or (t1 in (TYPE_I, TYPE_D) and t2 == TYPE_D)


def _num_type(*types) -> int:
    # Term.numType: double if any operand is double, else int
    return TYPE_D if TYPE_D in types else TYPE_I


#: A resolver answers the type of a name: TYPE_B/I/D, None for an undefined
#: name, or a string: the error message for a name that is refused.
Resolver = Callable[[str], "int | str | None"]


class _Parser:
    """SNAP's ``ParserImpl`` (recursive descent, types checked as terms are built).

    With no resolver, names get the unknown type None and only the syntax
    (and the function names and argument counts) are checked.
    """

    def __init__(self, text: str, resolver: Resolver | None, type_checking: bool):
        self.text = text
        self.resolver = resolver
        # Types are only checked once names have types; an untyped parse checks the syntax.
        self.checking = type_checking and resolver is not None
        self.tokens = _tokenize(text, self.error)
        self.tok = next(self.tokens)
        self.depth = 0
        self.positions: dict[str, int] = {}

    # errors
    def error(self, detail: str, pos: int | None) -> ExpressionError:
        return _error(self.text, detail, pos)

    # token helpers
    def peek(self) -> _Token:
        return self.tok

    def next(self) -> _Token:
        tok = self.tok
        if tok.kind != "eos":
            self.tok = next(self.tokens)
        return tok

    def is_op(self, text: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == text

    def is_kw(self, word: str) -> bool:
        return self.tok.kind == "kw" and self.tok.value == word

    def binary_op(self) -> str | None:
        tok = self.tok
        if tok.kind == "op" and tok.text in _LEVEL_OF:
            return tok.text
        if tok.kind == "kw" and tok.value in ("and", "or"):
            return _KEYWORD_OPS[tok.value]
        return None

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"The expression is nested too deeply (more than {MAX_NESTING} levels).", tok.pos)

    def checks(self, *types) -> bool:
        """Whether a type check applies: type checking on and every operand type known."""
        return self.checking and None not in types

    # grammar
    def parse(self):
        if all(_is_white(c) for c in self.text):
            raise self.error("Empty expression.", None)
        node = self.term(required=False)
        tok = self.peek()
        if tok.kind != "eos":
            hint = " SNAP has no shift operators." if tok.text in ("<<", ">>") else ""
            raise self.error(f"Incomplete expression. Unexpected {_describe(tok)}.{hint}", tok.pos)
        if node is None:  # pragma: no cover - only whitespace, caught above
            raise self.error("Empty expression.", None)
        return node

    def term(self, required: bool = True):
        # ParserImpl.parseTerm -> parseAssign
        self.enter(self.peek())
        try:
            node = self.conditional(required)
            if node is not None and self.is_op("="):
                eq = self.next()
                self.term(True)  # SNAP parses the right side first (its errors come first)
                raise self.error(
                    "Variable expected on the left side of assignment '='. Use '==' to compare.", eq.pos
                )
            return node
        finally:
            self.depth -= 1

    def conditional(self, required: bool):
        # ParserImpl.parseConditional. Right-associative chains (a ? b : c ? d : e,
        # if..else if..) are collected in a loop so long lookup tables do not nest.
        branches = []
        marks = []  # position of each branch's 'if' or '?', for errors
        while True:
            tok = self.peek()
            if tok.kind == "kw" and tok.value == "if":
                self.next()
                cond = self.term(True)
                if not self.is_kw("then"):
                    raise self.error(f"Missing 'then' in a conditional 'if' term. Found {_describe(self.peek())}.",
                                     self.peek().pos)
                self.next()
                value = self.term(True)
                if not self.is_kw("else"):
                    raise self.error(f"Missing 'else' in a conditional 'if' term. Found {_describe(self.peek())}.",
                                     self.peek().pos)
                self.next()
                if self.checks(cond.type) and cond.type != TYPE_B:
                    raise self.error("Boolean operand expected after 'if' in conditional term.", tok.pos)
                branches.append((cond, value))
                marks.append(tok.pos)
                continue
            node = self.binary(0, required or bool(branches))
            tok = self.peek()
            if tok.kind == "op" and tok.text == "?":
                if node is None:
                    raise self.error(f"Term expected. Found {_describe(tok)}.", tok.pos)
                self.next()
                value = self.term(True)
                if not self.is_op(":"):
                    raise self.error(
                        f"Missing ':' part of conditional '?:' term. Found {_describe(self.peek())}.", self.peek().pos
                    )
                self.next()
                if self.checks(node.type) and node.type != TYPE_B:
                    raise self.error("Boolean operand expected before '?' in conditional term.", tok.pos)
                branches.append((node, value))
                marks.append(tok.pos)
                continue
            break
        if not branches:
            return node
        # ParserImpl.createConditionTerm, innermost first (the order SNAP meets them)
        rest_type = node.type
        for (cond, value), pos in zip(reversed(branches), reversed(marks)):
            rest_type = self.cond_type(value.type, rest_type, pos)
        idiv = node.idiv or any(c.idiv or v.idiv for c, v in branches)
        return Cond(tuple(branches), node, rest_type, idiv)

    def cond_type(self, t2, t3, pos: int) -> int | None:
        if t2 == TYPE_B and t3 == TYPE_B:
            return TYPE_B
        if _is_d(t2, t3):
            return TYPE_D
        if t2 == TYPE_I and t3 == TYPE_I:
            return TYPE_I
        if None in (t2, t3):
            return None
        if not self.checking:
            return TYPE_D
        raise self.error("Boolean or numeric operands expected in conditional term.", pos)

    def binary(self, min_level: int, required: bool):
        # Precedence climbing; each level's run of operators becomes one Chain.
        lhs = self.unary(required)
        if lhs is None:
            return None
        while True:
            op = self.binary_op()
            if op is None or _LEVEL_OF[op] < min_level:
                return lhs
            level = _LEVEL_OF[op]
            steps, types = [], []
            current = lhs.type
            idiv = lhs.idiv
            while op is not None and _LEVEL_OF[op] == level:
                optok = self.next()
                rhs = self.binary(level + 1, True)
                opcode, current = self.binop(op, current, rhs.type, optok)
                steps.append((opcode, rhs))
                types.append(current)
                idiv = idiv or rhs.idiv or opcode in ("Div", "Mod")
                op = self.binary_op()
            lhs = Chain(lhs, tuple(steps), tuple(types), current, idiv)

    def binop(self, op: str, t1, t2, tok: _Token) -> tuple[str, int | None]:
        """SNAP's term class and result type for ``t1 op t2``, or its type error."""
        known = None not in (t1, t2)
        if op in ("||", "&&"):
            if self.checks(t1, t2) and not (t1 == TYPE_B and t2 == TYPE_B):
                what = "'||' or 'or'" if op == "||" else "'&&' or 'and'"
                raise self.error(f"Boolean operands expected for binary {what} operator.", tok.pos)
            return ("OrB" if op == "||" else "AndB"), TYPE_B
        if op in _OP_COMPARE:
            base = _OP_COMPARE[op]
            if not known:
                return base + "?", TYPE_B
            if _is_d(t1, t2):
                return base + "D", TYPE_B
            if op in ("==", "!="):
                if t1 == TYPE_B and t2 == TYPE_B:
                    return base + "B", TYPE_B
                if t1 in (TYPE_I, TYPE_B) and t2 in (TYPE_I, TYPE_B):
                    return base + "I", TYPE_B
            elif t1 == TYPE_I and t2 == TYPE_I:
                return base + "I", TYPE_B
            if not self.checking:
                return base + "D", TYPE_B
            raise self.error(f"Numeric operands expected for binary '{op}' operator.", tok.pos)
        if op in _OP_BITWISE:
            if self.checks(t1, t2) and not (t1 == TYPE_I and t2 == TYPE_I):
                raise self.error(f"Integer operands expected for binary '{op}' operator.", tok.pos)
            return _OP_BITWISE[op], TYPE_I
        opcode = _OP_ARITH[op]
        if not known:
            return opcode, (TYPE_D if TYPE_D in (t1, t2) else None)
        if _is_d(t1, t2):
            return opcode, TYPE_D
        if t1 == TYPE_I and t2 == TYPE_I:
            return opcode, TYPE_I
        if not self.checking:
            return opcode, _num_type(t1, t2)
        raise self.error(f"Numeric operands expected for binary '{op}' operator.", tok.pos)

    def unary(self, required: bool):
        tok = self.peek()
        op = tok.text if tok.kind == "op" else tok.value if tok.kind == "kw" else None
        if op not in _UNARY:
            return self.primary(required)
        self.next()
        self.enter(tok)
        try:
            operand = self.unary(True)
        finally:
            self.depth -= 1
        t = operand.type
        numeric = t in (TYPE_I, TYPE_D)
        if op == "+":
            if self.checks(t) and not numeric:
                raise self.error("Numeric operand expected for unary '+' operator.", tok.pos)
            return operand  # SNAP returns the operand itself
        if op == "-":
            if isinstance(operand, Const) and operand.type == TYPE_I:
                return Const(int(_I4(-operand.value)) if operand.value != _INT_MIN else _INT_MIN, TYPE_I)
            if isinstance(operand, Const) and operand.type == TYPE_D:
                return Const(-operand.value, TYPE_D)
            if self.checks(t) and not numeric:
                raise self.error("Numeric operand expected for unary '-' operator.", tok.pos)
            return Unary("Neg", operand, tok.pos, None if t is None else _num_type(t), operand.idiv)
        if op in ("!", "not"):
            if self.checks(t) and t != TYPE_B:
                raise self.error("Boolean operand expected for unary '!' or 'not' operator.", tok.pos)
            return Unary("NotB", operand, tok.pos, TYPE_B, operand.idiv)
        if self.checks(t) and t != TYPE_I:  # "~"
            raise self.error("Integer operand expected for unary '~' operator.", tok.pos)
        return Unary("NotI", operand, tok.pos, TYPE_I, operand.idiv)

    def primary(self, required: bool):
        tok = self.peek()
        if tok.kind in ("int", "hex", "double"):
            self.next()
            return self.number(tok)
        if tok.kind == "kw":
            self.next()
            if tok.value in ("true", "false"):
                return Const(tok.value == "true", TYPE_B)
            raise self.error(f"Unexpected keyword '{tok.text}'.", tok.pos)
        if tok.kind in ("name", "qname"):
            self.next()
            name = tok.value
            if name == "NaN":
                return Const(math.nan, TYPE_D)
            if self.is_op("("):
                return self.call(tok)
            return self.ref(tok)
        if tok.kind == "op" and tok.text == "(":
            self.next()
            node = self.term(True)
            if not self.is_op(")"):
                close = self.peek()
                raise self.error(f"Missing ')'. Found {_describe(close)} (the '(' is at column {tok.pos + 1}).",
                                 close.pos)
            self.next()
            return node
        if required:
            raise self.error(f"Term expected. Found {_describe(tok)}.", tok.pos)
        return None

    def number(self, tok: _Token) -> Const:
        text = tok.text
        if tok.kind == "double":
            if not text.isascii():  # Double.parseDouble reads ASCII digits only
                raise self.error(f"Token '{_cut(text)}' is not a valid numeric constant.", tok.pos)
            return Const(float(text), TYPE_D)
        if tok.kind == "int":
            # Long.parseLong also reads any Unicode digits, as int() does; leading zeros are
            # dropped first, as int() refuses strings of over 4300 digits.
            zeros = "".join({c for c in text if unicodedata.digit(c, -1) == 0})
            significant = text.lstrip(zeros)
            value = _LONG_MAX + 1 if len(significant) > 19 else int(significant or "0")
            if value > _LONG_MAX:
                # SNAP's text has two spaces after 'Token'; messages are one line with single spaces
                raise self.error(f"Token '{_cut(text)}' is not a valid integer constant.", tok.pos)
            if value > _INT_MAX:
                raise self.error(f"Integer constant '{_cut(text)}' is out of range.", tok.pos)
            return Const(value, TYPE_I)
        digits = text[2:]
        value = int(digits, 16) if digits else None
        if value is None or value > _LONG_MAX:
            why = " It does not fit in 64 bits (Java's Long.parseLong)." if digits else ""
            raise self.error(f"Token '{_cut(text)}' is not a valid hexadecimal constant.{why}", tok.pos)
        if value > _INT_MAX:
            raise self.error(f"Hexadecimal constant '{_cut(text)}' is out of range.", tok.pos)
        return Const(value, TYPE_I)

    def ref(self, tok: _Token) -> Ref:
        name = tok.value
        self.positions.setdefault(name, tok.pos)
        if self.resolver is None:
            return Ref(name, tok.pos, None)
        t = self.resolver(name)
        if isinstance(t, str):
            raise self.error(t, tok.pos)
        if t is None:
            raise self.error(f"Undefined symbol '{_cut(name, 60)}'.", tok.pos)
        return Ref(name, tok.pos, t)

    def call(self, name_tok: _Token) -> Call:
        name = name_tok.value
        self.next()  # "("
        args = []
        node = self.term(False)
        while node is not None:
            args.append(node)
            if self.is_op(","):
                self.next()
                node = self.term(True)
            else:
                node = None
        if not self.is_op(")"):
            raise self.error(f"Missing ')' or ','. Found {_describe(self.peek())}.", self.peek().pos)
        self.next()
        if name == "var":
            raise self.error("var(...) variable definitions are not supported by this engine.", name_tok.pos)
        types = [a.type for a in args]
        fn, found = _resolve_function(name, types)
        if not found:
            shown = ",".join("?" if t is None else TYPE_NAMES.get(t, "?") for t in types)
            raise self.error(f"Undefined function '{_cut(name, 60)}({shown})'.{_function_hint(name)}", name_tok.pos)
        idiv = any(a.idiv for a in args)
        return Call(name, fn, tuple(args), name_tok.pos, None if fn is None else fn.type, idiv)


def _function_hint(name: str) -> str:
    overloads = FUNCTIONS.get(name)
    if overloads:
        counts = sorted({fn.nargs for fn in overloads})
        return f" '{name}' takes {' or '.join(str(c) for c in counts)} argument(s)."
    close = difflib.get_close_matches(name, FUNCTIONS, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


# --- evaluation ---------------------------------------------------------------


@dataclass(frozen=True)
class ComputedD:
    """Values of a computed double symbol (SNAP's ``AbstractSymbol.D``), e.g. ``LAT``.

    Band data converts to int by rounding (``ProductData.getElemIntAt``);
    such symbols convert with Java's ``(int)`` cast, which truncates.
    """

    values: Any


def _conv(value, src: int, dst: int):
    """A value of type `src` as `dst`, as Java's ``Term`` conversions do."""
    if src == dst:
        return value
    if dst == TYPE_B:
        return np.not_equal(value, 0)  # toB: != 0 (NaN is true)
    if src == TYPE_B:
        return np.asarray(value).astype(_I4 if dst == TYPE_I else _F8)
    if dst == TYPE_D:  # int -> double
        return np.asarray(value).astype(_F8)
    return _java_int(value)  # double -> int: Java's (int) cast


def _fits(acc, other) -> bool:
    """True if `acc` can take ``acc op other`` in place (no broadcasting growth)."""
    return np.shape(acc) == np.broadcast_shapes(np.shape(acc), np.shape(other))


def _live_and(live, mask):
    return mask if live is None else np.logical_and(live, mask)


class _Evaluator:
    """Evaluates a typed tree over numpy tiles, as SNAP's ``Term.evalB/evalI/evalD``.

    ``eval(node, mode, live)`` returns ``(value, owned)``: `value` is the
    node evaluated in `mode` (bool, int32 or float64 arrays or scalars),
    `owned` marks fresh arrays nobody else holds, which later operators may
    overwrite in place. `live` (bool array or None for all) marks the pixels
    where Java would really evaluate the node; it only matters for integer
    ``/`` and ``%``, which raise on zero divisors only where evaluated.
    """

    def __init__(self, expr: "Expression", env: Mapping[str, Any], x0: int, y0: int, shape):
        self.expr = expr
        self.env = env
        self.x0, self.y0 = x0, y0
        self.shape = shape
        self._rng = None

    def value(self, node, mode, live=None):
        return self.eval(node, mode, live)[0]

    def eval(self, node, mode, live=None):
        t = type(node)
        if t is Chain:
            return self.chain(node, mode, live)
        if t is Ref:
            return self.ref(node, mode)
        if t is Const:
            return self.const(node, mode), False
        if t is Call:
            return self.call(node, mode, live)
        if t is Unary:
            return self.unary(node, mode, live)
        if t is Cond:
            return self.cond(node, mode, live)
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    # leaves
    @staticmethod
    def const(node: Const, mode):
        v, t = node.value, node.type
        if mode == TYPE_B:
            return np.bool_(v != 0)
        if mode == TYPE_I:
            if t == TYPE_D:
                return _I4(_java_int(v))
            return _I4(int(v))
        return _F8(v)

    def ref(self, node: Ref, mode):
        name = node.name
        if name in self.env:
            return self.symbol(self.env[name], mode)
        if name in ("PI", "E"):
            v = math.pi if name == "PI" else math.e
            return self.symbol(v, mode)
        if name in ("X", "Y"):
            if self.shape is None or len(self.shape) != 2:
                raise ExpressionError(f"evaluating {name} needs the 2-D tile shape (rows, cols)")
            # A row (X) or column (Y) vector: broadcasting makes the tile.
            if name == "X":
                v = (np.arange(self.shape[1], dtype=_F8) + (self.x0 + 0.5))[None, :]
            else:
                v = (np.arange(self.shape[0], dtype=_F8) + (self.y0 + 0.5))[:, None]
            return self.symbol(ComputedD(v), mode)
        raise _error(self.expr.text, f"Undefined symbol '{_cut(name, 60)}'.", node.pos)  # pragma: no cover

    @staticmethod
    def symbol(v, mode):
        """An environment value in `mode`: band data by its numpy dtype, constants as SNAP's symbols."""
        if isinstance(v, ComputedD):
            # AbstractSymbol.D: evalI is Java's (int) cast, evalB is != 0
            return _conv(np.asarray(v.values, dtype=_F8), TYPE_D, mode), mode != TYPE_D
        if isinstance(v, np.ndarray):
            kind = v.dtype.kind
            if mode == TYPE_D:
                return (v, False) if v.dtype == _F8 else (v.astype(_F8), True)
            if mode == TYPE_B:
                return np.not_equal(v, 0), True  # toB(getElemDoubleAt): NaN is true
            # mode int: ProductData.getElemIntAt
            if kind == "b":
                return v.astype(_I4), True
            if kind in "iu":
                return (v, False) if v.dtype == _I4 else (v.astype(_I4), True)  # uint32/int64 wrap
            if v.dtype == np.float32:
                return _float_elem_int(v), True
            return _double_elem_int(v), True
        # scalar constants (variables): SymbolFactory.ConstantB/I/D
        if isinstance(v, (bool, np.bool_)):
            src = TYPE_B
        elif isinstance(v, (int, np.integer)):
            v, src = _I4(np.int64(v).astype(_I4)), TYPE_I
        else:
            v, src = _F8(v), TYPE_D
        if src == TYPE_B:
            v = np.bool_(v)
        return _conv(v, src, mode), False

    # operators
    def chain(self, node: Chain, mode, live):
        steps = node.steps
        n = len(steps)
        # The mode each prefix of the chain is needed in, from the last step back:
        # an operator decides the type its operands are evaluated in.
        modes = [mode] * (n + 1)
        for k in range(n - 1, -1, -1):
            modes[k] = _operand_mode(steps[k][0], node.types[k], modes[k + 1])
        first_arith = steps[0][0] in _ARITH
        acc, owned = self.operand(node.first, modes[0], live) if first_arith else self.eval(node.first, modes[0], live)
        for k, (opcode, rhs_node) in enumerate(steps):
            out_mode = modes[k + 1]
            opmode = modes[k]  # the operands' mode (acc is already in it)
            rhs_live = live
            if rhs_node.idiv and opcode in ("AndB", "OrB"):  # && and || short-circuit
                rhs_live = _live_and(live, acc if opcode == "AndB" else np.logical_not(acc))
            if opcode in _ARITH:
                rhs = self.operand(rhs_node, opmode, rhs_live)[0]
            else:
                rhs = self.value(rhs_node, opmode, rhs_live)
            if opcode in _ARITH:
                acc, owned = self.arith(opcode, opmode, acc, owned, rhs, live)
                if out_mode == TYPE_B:  # BinaryN.evalB: toB of the natural value
                    acc, owned = np.not_equal(acc, 0), True
                continue
            if opcode in ("AndB", "OrB"):
                acc = np.logical_and(acc, rhs) if opcode == "AndB" else np.logical_or(acc, rhs)
                src = TYPE_B
            elif opcode in ("AndI", "OrI", "XOrI"):
                ufunc = {"AndI": np.bitwise_and, "OrI": np.bitwise_or, "XOrI": np.bitwise_xor}[opcode]
                acc, src = ufunc(acc, rhs), TYPE_I
            else:  # comparisons
                acc, src = _COMPARE[opcode[:-1]](acc, rhs), TYPE_B
            acc, owned = _conv(acc, src, out_mode), True
        return acc, owned

    def operand(self, node, mode, live):
        """An arithmetic operand: like eval, but float band data stays as stored in double mode.

        The arithmetic ufuncs compute in float64 (``dtype=float64``) from
        float32 inputs exactly as from converted ones, so the conversion pass
        is saved (NDVI of float32 tiles: about 2x faster).
        """
        if mode == TYPE_D and type(node) is Ref:
            v = self.env.get(node.name)
            if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                return v, False
        return self.eval(node, mode, live)

    def arith(self, opcode, mode, a, owned, b, live):
        """``a op b`` in int (Java int32) or double."""
        if mode == TYPE_I:
            if opcode == "Div":
                return self.int_div(a, b, live), True
            if opcode == "Mod":
                return self.int_mod(a, b, live), True
            ufunc = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[opcode]
            inplace = owned and isinstance(a, np.ndarray) and a.dtype == _I4 and _fits(a, b)
            return ufunc(a, b, out=a if inplace else None, dtype=_I4), True
        ufunc = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Mod": np.fmod}[opcode]
        inplace = owned and isinstance(a, np.ndarray) and a.dtype == _F8 and _fits(a, b)
        return ufunc(a, b, out=a if inplace else None, dtype=_F8), True

    def check_divisor(self, b, live):
        """Raise Java's ArithmeticException where a zero divisor is really evaluated; the zero mask."""
        zero = np.equal(b, 0)
        hit = zero if live is None or not np.any(zero) else np.logical_and(zero, live)
        if np.any(hit):
            shape = self.shape if self.shape is not None else np.shape(hit)
            where = np.argwhere(np.broadcast_to(hit, shape) if shape else hit)
            at = ""
            if len(where) and len(where[0]) == 2:
                row, col = (int(v) for v in where[0])
                at = f" at pixel x={self.x0 + col}, y={self.y0 + row}"
            raise ExpressionError(
                f"Integer division by zero in expression '{_shown(self.expr.text)}'{at}: "
                "gpt fails here too (java.lang.ArithmeticException: / by zero)"
            )
        return zero

    def int_div(self, a, b, live):
        # Java int division truncates toward zero; MIN_VALUE / -1 wraps to MIN_VALUE.
        zero = self.check_divisor(b, live)
        if np.any(zero):
            b = np.where(zero, _I4(1), b)  # pixels Java never evaluates
        q = np.divide(a, b, dtype=_F8)  # exact for int32 operands: no quotient rounds across an integer
        q = np.trunc(q, out=q if isinstance(q, np.ndarray) else None)
        big = q >= 2.0**31  # only MIN_VALUE / -1
        if np.any(big):
            q = np.where(big, float(_INT_MIN), q)
        return np.asarray(q).astype(_I4)

    def int_mod(self, a, b, live):
        # Java %: the sign of the dividend; x % -1 == 0 (C's INT_MIN % -1 would trap).
        zero = self.check_divisor(b, live)
        bad = zero | np.equal(b, -1)
        if np.any(bad):
            b = np.where(bad, _I4(1), b)
        return np.fmod(np.asarray(a, dtype=_I4), np.asarray(b, dtype=_I4))

    def unary(self, node: Unary, mode, live):
        op = node.op
        if op == "Neg":
            if mode == TYPE_I:
                v, owned = self.eval(node.operand, TYPE_I, live)
                return np.negative(v, out=v if owned and isinstance(v, np.ndarray) else None, dtype=_I4), True
            v, owned = self.eval(node.operand, TYPE_D, live)
            if mode == TYPE_B:  # UnaryN.evalB: toB(evalD)
                return np.not_equal(v, 0), True
            inplace = owned and isinstance(v, np.ndarray) and v.dtype == _F8
            return np.negative(v, out=v if inplace else None, dtype=_F8), True
        if op == "NotB":
            v = np.logical_not(self.value(node.operand, TYPE_B, live))
            return _conv(v, TYPE_B, mode), True
        v = np.invert(np.asarray(self.value(node.operand, TYPE_I, live), dtype=_I4))  # NotI
        return _conv(v, TYPE_I, mode), True

    def cond(self, node: Cond, mode, live):
        # Cond.evalX: arg1.evalB(env) ? arg2.evalX(env) : arg3.evalX(env)
        track = node.idiv
        conds, values = [], []
        remaining = live
        for cond_node, value_node in node.branches:
            c = self.value(cond_node, TYPE_B, remaining if track else None)
            conds.append(c)
            taken = _live_and(remaining, c) if track else None
            values.append(self.value(value_node, mode, taken))
            if track:
                remaining = _live_and(remaining, np.logical_not(c))
        result, owned = self.eval(node.default, mode, remaining if track else None)
        for c, v in zip(reversed(conds), reversed(values)):
            if owned and isinstance(result, np.ndarray) and _fits(result, c) and _fits(result, v):
                np.copyto(result, v, where=np.asarray(c, dtype=bool))
            else:
                result, owned = np.where(c, v, result), True
        return result, owned

    def call(self, node: Call, mode, live):
        fn = node.function
        args = [self.value(a, fn.arg_mode, live) for a in node.args]
        v = fn.impl(args, self)
        if fn.type == TYPE_I:
            v = np.asarray(v).astype(_I4, copy=False)
        return _conv(v, fn.type, mode), True

    def random(self, kind: str):
        if self._rng is None:
            self._rng = np.random.default_rng()
        size = self.shape
        return self._rng.random(size) if kind == "uniform" else self._rng.standard_normal(size)


_COMPARE = {
    "Lt": np.less, "Le": np.less_equal, "Gt": np.greater, "Ge": np.greater_equal, "Eq": np.equal, "NEq": np.not_equal,
}


def _operand_mode(opcode: str, step_type, out_mode) -> int:
    """The type an operator evaluates its operands in, when evaluated in `out_mode`."""
    if opcode in _ARITH:
        # Add.evalI = arg1.evalI + arg2.evalI, evalD likewise; evalB uses the natural type.
        if out_mode in (TYPE_I, TYPE_D):
            return out_mode
        return step_type
    if opcode in ("AndB", "OrB"):
        return TYPE_B
    if opcode in ("AndI", "OrI", "XOrI"):
        return TYPE_I
    return {"B": TYPE_B, "I": TYPE_I, "D": TYPE_D}[opcode[-1]]  # LtI, EqD, NEqB, ...


def _env_type(value) -> int:
    """The SNAP type of an environment value (a band tile or a constant)."""
    if isinstance(value, ComputedD):
        return TYPE_D
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind == "b":
            return TYPE_B
        if kind in "iu":
            return TYPE_I
        if kind == "f":
            return TYPE_D
        raise ExpressionError(f"band data of type {value.dtype} cannot be used in an expression")
    if isinstance(value, (bool, np.bool_)):
        return TYPE_B
    if isinstance(value, (int, np.integer)):
        return TYPE_I
    if isinstance(value, (float, np.floating)):
        return TYPE_D
    raise ExpressionError(f"value of type {type(value).__name__} cannot be used in an expression")


def _type_code(t) -> int:
    if t in (TYPE_B, TYPE_I, TYPE_D):
        return t
    if isinstance(t, str) and t in _TYPE_OF_NAME:
        return _TYPE_OF_NAME[t]
    if isinstance(t, (np.dtype, type)) or hasattr(t, "dtype"):
        return _env_type(np.zeros(0, dtype=getattr(t, "dtype", t)))
    raise ValueError(f"unknown type {t!r}; use 'boolean', 'int' or 'double'")


# --- public API -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Expression:
    """A parsed band-maths expression.

    Attributes
    ----------
    text : str
        The expression as written.
    root : object
        Typed syntax tree (``Const``, ``Ref``, ``Unary``, ``Chain``,
        ``Cond``, ``Call`` nodes).
    positions : mapping of str to int
        Every name the expression reads, built-ins (``X``, ``PI``...)
        included, with the 0-based offset of its first use.
    typed : bool
        Whether names were resolved with their types (``parse(text,
        symbols)``); an untyped expression is typed from the environment
        when evaluated.
    type_checking : bool
        Whether SNAP's type checks were applied when typing.
    """

    text: str
    root: Any
    positions: Mapping[str, int]
    typed: bool = False
    type_checking: bool = True
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def names(self) -> frozenset:
        """Every name the expression reads, built-ins included."""
        return frozenset(self.positions)

    @property
    def symbols(self) -> set[str]:
        """Names the caller must supply: referenced bands and variables."""
        return set(self.names - BUILTIN_SYMBOLS)

    @property
    def type(self) -> str | None:
        """SNAP's type of the expression: ``'boolean'``, ``'int'``, ``'double'`` (None if untyped)."""
        return TYPE_NAMES.get(self.root.type)

    def column(self, name: str) -> int | None:
        """1-based column of the first use of `name`, or None."""
        pos = self.positions.get(name)
        return None if pos is None else pos + 1

    def describe(self, detail: str, name: str | None = None, *, prefix: str = "", suffix: str = "") -> ExpressionError:
        """A one-line error ``"<prefix><detail> in expression '...'<suffix> (column N)"``.

        The column is that of the first use of `name`, when given.
        """
        column = self.column(name) if name is not None else None
        pos = None if column is None else column - 1
        return ExpressionError(
            f"{prefix}{detail} in expression '{_shown(self.text, pos)}'{suffix}", column=column, expression=self.text
        )

    def with_types(self, types: Mapping[str, Any], *, type_checking: bool = True) -> "Expression":
        """This expression typed with the given name types (cached).

        Parameters
        ----------
        types : mapping of str to type
            Name -> ``'boolean'``, ``'int'``, ``'double'`` (or a numpy
            dtype); names not given are undefined, except the built-ins.
        type_checking : bool
            Apply SNAP's type checks (``ParserImpl(namespace, true)``).
        """
        codes = {k: _type_code(v) for k, v in types.items() if k in self.positions}
        key = (tuple(sorted(codes.items())), bool(type_checking))
        typed = self._cache.get(key)
        if typed is None:
            typed = parse(self.text, codes, type_checking=type_checking)
            if len(self._cache) < 64:
                self._cache[key] = typed
        return typed

    def evaluate(
        self,
        env: Mapping[str, Any],
        *,
        x0: int = 0,
        y0: int = 0,
        shape: tuple[int, int] | None = None,
        mode: str | None = None,
        type_checking: bool = False,
    ) -> np.ndarray:
        """Evaluate over numpy tiles.

        Parameters
        ----------
        env : mapping of str to numpy.ndarray, number or ComputedD
            Band tiles (all of one shape, any numeric dtype: integer tiles
            are SNAP int bands, float tiles double bands) and constants by
            name; they take precedence over the built-in symbols.
        x0, y0 : int
            Column and row of the tile's first pixel in its band grid; ``X``
            and ``Y`` are ``x0 + col + 0.5`` and ``y0 + row + 0.5``.
        shape : tuple of int, optional
            Tile shape ``(rows, cols)``; default: the shape of the tiles in
            `env`. Needed when the expression reads no tile but ``X``/``Y``.
        mode : {'double', 'int', 'boolean'}, optional
            The type to evaluate the top term in; default ``'double'`` as
            ``BandMathsOp.computeTile`` does (``term.evalD``), ``'boolean'``
            for a boolean expression.
        type_checking : bool
            For an untyped expression: type it from `env` with SNAP's type
            checks. Default False, as SNAP's ``BandArithmetic`` parses
            virtual-band and valid-pixel expressions.

        Returns
        -------
        numpy.ndarray
            A new array of `shape`: float64 (double), int32 (int) or bool.
            Float division by zero gives inf/NaN silently, as in Java.

        Raises
        ------
        ExpressionError
            On an undefined name or a type error while typing, and on an
            integer division by zero at a pixel (Java's ArithmeticException).

        Notes
        -----
        Doubles are float64 as in SNAP (``Term.evalD``). float32 would be
        about 4x faster, but thresholds would then differ from SNAP's: for
        the float32 pixel 0.1f, ``B4 > 0.1`` is true in double (SNAP) and
        false in float32. Memory stays bounded by the tile (8 MiB per
        float64 1024x1024 temporary; sums and products reuse them in place).
        """
        expr = self
        if not self.typed:
            types = {k: _env_type(v) for k, v in env.items() if k in self.positions}
            expr = self.with_types(types, type_checking=type_checking)
        if shape is None:
            shapes = [np.shape(v.values if isinstance(v, ComputedD) else v)
                      for k, v in env.items() if k in expr.names and isinstance(v, (np.ndarray, ComputedD))]
            shape = np.broadcast_shapes(*shapes) if shapes else None
        shape = None if shape is None else tuple(int(s) for s in shape)
        if mode is None:
            code = TYPE_B if expr.root.type == TYPE_B else TYPE_D
        else:
            code = _TYPE_OF_NAME.get(mode)
            if code is None:
                raise ValueError(f"mode must be 'boolean', 'int' or 'double', not {mode!r}")
        ev = _Evaluator(expr, env, int(x0), int(y0), shape)
        try:
            with np.errstate(all="ignore"):
                value, owned = ev.eval(expr.root, code)
        except RecursionError:
            raise ExpressionError(f"expression '{_shown(self.text)}' is nested too deeply to evaluate") from None
        value = np.asarray(value)
        dtype = {TYPE_B: np.bool_, TYPE_I: _I4, TYPE_D: _F8}[code]
        if value.dtype != dtype:
            value, owned = value.astype(dtype), True
        if shape is not None and value.shape != shape:
            return np.array(np.broadcast_to(value, shape))
        return value if owned else value.copy()

    def __str__(self) -> str:
        return self.text


def parse(
    expression: str,
    symbols: Mapping[str, Any] | Resolver | None = None,
    *,
    type_checking: bool = True,
) -> Expression:
    """Parse a SNAP band-maths expression.

    Parameters
    ----------
    expression : str
        For example ``"(B8 - B4) / (B8 + B4)"`` or
        ``"B4 > 0.1 && not nan(B8) ? 1 : 0"``.
    symbols : mapping or callable, optional
        The namespace: name -> type (``'boolean'``, ``'int'``, ``'double'``
        or a numpy dtype), or a function name -> type code / None
        (undefined) / message (refused). When given, the expression is
        typed as SNAP's ``ParserImpl`` does in one pass: undefined names and
        type errors are reported in SNAP's order. ``PI``, ``E``, ``X``,
        ``Y`` are double built-ins a mapping need not hold. Without it,
        only the syntax, function names and argument counts are checked;
        names are typed when evaluated.
    type_checking : bool
        SNAP's type checks (gpt's BandMaths checks; ``BandArithmetic``
        does not).

    Returns
    -------
    Expression

    Raises
    ------
    ExpressionError
        ``Could not parse expression: '<text>'. <SNAP's message> (column
        N)``: a syntax error, an undefined function or symbol, a type error.
    """
    if not isinstance(expression, str):
        raise ExpressionError(f"expression must be text, got {type(expression).__name__}")
    resolver: Resolver | None
    if symbols is None or callable(symbols):
        resolver = symbols
    else:
        table = {k: _type_code(v) for k, v in symbols.items()}

        def resolver(name: str):
            if name in table:
                return table[name]
            return TYPE_D if name in BUILTIN_SYMBOLS else None

    parser = _Parser(expression, resolver, type_checking)
    try:
        root = parser.parse()
    except RecursionError:
        raise parser.error(f"The expression is nested too deeply (more than {MAX_NESTING} levels).", 0) from None
    return Expression(expression, root, parser.positions, typed=resolver is not None, type_checking=type_checking)
