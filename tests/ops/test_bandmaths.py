"""BandMaths: the expression parser/evaluator and the operator (the engine's own tests).

SNAP's expected values, case by case with the Java source they come from,
are in ``test_bandmaths_snap.py``. Plain ``parse(text).evaluate(env)`` types
the expression from `env` without type checks, as SNAP's ``BandArithmetic``
does for virtual bands; the operator checks types as gpt's BandMaths does.
"""

import functools
import math
import pickle
import re
import sys

import dask
import dask.array as da
import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import (
    ExpressionError,
    GraphError,
    OperatorError,
    ParameterError,
)
from snap_operators.core.expressions import FUNCTIONS, MAX_NESTING, parse
from snap_operators.core.operator import get_operator
from snap_operators.core.product import Band, Product
from snap_operators.engine.graph import parse_graph
from snap_operators.engine.runner import build
from snap_operators.ops.bandmaths import BandMathsOp, store_value, to_target_type

RNG = np.random.default_rng(42)
A = RNG.uniform(-3, 3, (5, 7))
B = RNG.uniform(0.5, 4, (5, 7))
C = RNG.uniform(-2, 2, (5, 7))
D = RNG.uniform(-1, 1, (5, 7))
ENV = {"a": A, "b": B, "c": C, "d": D}
TRANSFORM = Affine(10, 0, 500000, 0, -10, 5800000)


def ev(text, env=ENV, **kw):
    return parse(text).evaluate(env, **kw)


def f(x):
    return np.asarray(x, dtype=float)


# --- parser: precedence and associativity ------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("a + b * c", A + (B * C)),
        ("a * b + c", (A * B) + C),
        ("a - b - c", (A - B) - C),
        ("a - b + c - d", ((A - B) + C) - D),
        ("a / b / c", (A / B) / C),
        ("a / b * c", (A / B) * C),
        ("a % b * c", np.fmod(A, B) * C),
        ("-a * b", (-A) * B),
        ("- -a", A),
        ("+a - -b", A + B),
        ("(a + b) * c", (A + B) * C),
        ("a + b > c * d", (A + B) > (C * D)),
        ("a < b == c < d", f(f(A < B) == C) < D),
        ("a > 0 || b > 1 && c > 0", (A > 0) | ((B > 1) & (C > 0))),
        ("!a > 0", f(np.logical_not(A)) > 0),
        ("not a > 0 and b > 1", (f(np.logical_not(A)) > 0) & (B > 1)),
        ("a > 0 ? b : c", np.where(A > 0, B, C)),
        ("a > 0 ? b : c > 0 ? c : d", np.where(A > 0, B, np.where(C > 0, C, D))),
        ("a > 0 ? b > 1 ? 1 : 2 : 3", np.where(A > 0, np.where(B > 1, 1.0, 2.0), 3.0)),
        ("1 + a ? b : c", np.where(1 + A != 0, B, C)),
        ("a > 0 ? 1 : 0 + 5", np.where(A > 0, 1.0, 5.0)),
        ("if a > 0 then b else if c > 0 then c else d", np.where(A > 0, B, np.where(C > 0, C, D))),
        ("if a > 0 then b else c + 1", np.where(A > 0, B, C + 1)),
        ("a*b-c/d", A * B - C / D),
        ("2 * 3 + 4 * 5 - 6 / 3", 24.0),
    ],
)
def test_precedence_and_associativity(text, expected):
    np.testing.assert_allclose(f(ev(text)), f(np.broadcast_to(expected, A.shape)), rtol=1e-12)


@pytest.mark.parametrize(
    "text, expected",
    [
        # SNAP's jexp: comparison binds LOOSER than the bit operators (unlike C).
        ("1 | 2 == 3", 1.0),
        ("6 & 3 + 1", 4.0),  # & looser than +
        ("1 ^ 3 & 2", 3.0),  # & tighter than ^
        ("5 | 2 ^ 7", 5.0),  # ^ tighter than |
        ("~5", -6.0),
        ("7.9 & 3", 3.0),  # operands truncated to int, as Java's (int)
        ("-7.9 | 0", -7.0),
        ("NaN | 0", 0.0),
    ],
)
def test_bit_operators_follow_snap(text, expected):
    assert float(parse(text).evaluate({})) == expected
    if "." in text or "NaN" in text:  # gpt's BandMaths (type-checked) refuses bit operators on doubles
        with pytest.raises(ExpressionError, match="Integer operands expected for binary"):
            parse(text, {})


def test_numbers_constants_and_keywords():
    assert float(ev("0x1F + 1.5e1 + .5 + 2. + 1E-1")) == pytest.approx(31 + 15 + 0.5 + 2 + 0.1)
    assert float(ev("010")) == 10.0  # no octal (SNAP reads it as decimal)
    assert float(ev("PI")) == math.pi and float(ev("E")) == math.e
    assert math.isnan(float(ev("NaN")))
    with pytest.raises(ExpressionError, match="Undefined symbol 'nan'"):  # only 'NaN' is a constant
        ev("nan")
    assert ev("true").dtype == bool and bool(ev("TRUE")) and not bool(ev("False"))
    # keywords are case-insensitive as in SNAP; names are not
    np.testing.assert_array_equal(ev("a > 0 AND b > 1 Or NOT (c > 0)"), ((A > 0) & (B > 1)) | ~(C > 0))
    np.testing.assert_array_equal(ev("IF a > 0 THEN 1 ELSE 2"), np.where(A > 0, 1.0, 2.0))


def test_names_quotes_dots_and_symbols():
    env = {"B4": A, "my band": B, "sigma0.VV": C, "it's": D}
    expr = parse("B4 + 'my band' * sigma0.VV - 'it''s' + X + PI")
    assert expr.symbols == {"B4", "my band", "sigma0.VV", "it's"}
    assert "X" in expr.names and "PI" in expr.names
    x = np.arange(7) + 0.5
    np.testing.assert_allclose(expr.evaluate(env), A + B * C - D + x[None, :] + math.pi)
    # a band or variable named like a built-in wins, as in SNAP's namespaces
    np.testing.assert_allclose(ev("E + X", {"E": A, "X": 2}), A + 2)


def test_logic_results_are_booleans_usable_as_numbers_only_without_type_checks():
    r = ev("a > 0")
    assert r.dtype == bool
    np.testing.assert_allclose(ev("(a > 0) + (b > 1) * 2"), f(A > 0) + f(B > 1) * 2)
    np.testing.assert_allclose(ev("true + true"), 2.0)  # arithmetic, not numpy's logical or
    # a number used as a condition is true when != 0; NaN is true (Java semantics)
    np.testing.assert_array_equal(ev("NaN ? 1 : 2", {}), 1.0)
    np.testing.assert_array_equal(ev("!NaN", {}), False)
    np.testing.assert_array_equal(ev("0 || 2", {}), True)
    # gpt's BandMaths checks types: each of these is a parse error there and here
    for text in ["(a > 0) + (b > 1) * 2", "true + true", "NaN ? 1 : 2", "!NaN", "0 || 2"]:
        with pytest.raises(ExpressionError, match="expected"):
            parse(text, {"a": "double", "b": "double"})
        with pytest.raises(ExpressionError, match="expected"):
            parse(text).evaluate(ENV, type_checking=True)


def test_division_by_zero_gives_inf_and_nan_without_warnings():
    env = {"x": np.array([1.0, -1.0, 0.0]), "z": np.zeros(3)}
    with np.errstate(all="raise"):
        r = ev("x / z", env)
        m = ev("x % z", env)
        s = ev("sqrt(-1) + log(0)", env)
    assert r[0] == np.inf and r[1] == -np.inf and np.isnan(r[2])
    assert np.isnan(m).all() and np.isnan(s).all()


def test_float32_inputs_are_evaluated_in_double_like_snap():
    b4 = np.array([0.1, 0.2], dtype=np.float32)
    # float32(0.1) = 0.100000001490116..., so in double (SNAP) it is > 0.1
    np.testing.assert_array_equal(ev("B4 > 0.1", {"B4": b4}), [True, True])
    r = ev("B4 * 3", {"B4": b4})
    assert r.dtype == np.float64
    np.testing.assert_array_equal(r, b4.astype(np.float64) * 3)


def test_evaluation_never_modifies_inputs():
    env = {k: v.copy() for k, v in ENV.items()}
    for text in ["-a", "a + b - c * d", "-(a + b)", "a > 0 ? a : b", "a", "+a", "-a + 1", "sq(a) - a"]:
        out = parse(text).evaluate(env)
        for k in env:
            np.testing.assert_array_equal(env[k], ENV[k])
        assert not any(np.shares_memory(out, v) for v in env.values())


def test_integer_and_bool_inputs():
    env = {"scl": np.array([[0, 4, 8]], dtype=np.uint8), "m": np.array([[True, False, True]])}
    # int / int is an int term, but the top of an expression is evaluated in double (Term.Div.evalD)
    np.testing.assert_allclose(ev("scl / 8", env), [[0, 0.5, 1.0]])
    np.testing.assert_array_equal(ev("scl / 8 == 0", env), [[True, True, False]])  # EqI: int division
    np.testing.assert_allclose(ev("scl - 5", env), [[-5, -1, 3]])  # no uint8 wrap-around
    np.testing.assert_allclose(ev("m * 2 + scl", env), [[2, 4, 10]])


# --- every function ------------------------------------------------------------

X_ = np.array([-2.5, -0.5, 0.0, 0.3, 0.5, 1.5, 2.5, np.nan, np.inf])
Y_ = np.array([1.0, 2.0, -1.5, 0.3000001, 0.5, 3.0, -2.0, 1.0, 1.0])


with np.errstate(all="ignore"):  # the expected values include NaN and inf on purpose
    FUNCTION_CASES = [
        ("sin(x)", np.sin(X_)), ("cos(x)", np.cos(X_)), ("tan(x)", np.tan(X_)),
        ("asin(x / 3)", np.arcsin(X_ / 3)), ("acos(x / 3)", np.arccos(X_ / 3)), ("atan(x)", np.arctan(X_)),
        ("atan2(x, y)", np.arctan2(X_, Y_)), ("sinh(x)", np.sinh(X_)), ("cosh(x)", np.cosh(X_)),
        ("tanh(x)", np.tanh(X_)), ("sech(x)", 2 / (np.exp(X_) + np.exp(-X_))),
        ("cosech(x)", 2 / (np.exp(X_) - np.exp(-X_))),
        ("log(y)", np.log(Y_)), ("log10(y)", np.log10(Y_)), ("exp(x)", np.exp(X_)),
        ("exp10(x)", 10.0 ** X_), ("sq(x)", X_ * X_), ("sqrt(y)", np.sqrt(Y_)),
        # Java's pow: 1 ** NaN and (+-1) ** (+-inf) are NaN (C and numpy say 1)
        ("pow(y, x)", np.where(np.isnan(X_) | (np.isinf(X_) & (np.abs(Y_) == 1)), np.nan, Y_ ** X_)),
        ("min(x, y)", np.minimum(X_, Y_)), ("max(x, y)", np.maximum(X_, Y_)),
        ("floor(x)", np.floor(X_)), ("ceil(x)", np.ceil(X_)),
        # Java Math.round: half up (-2.5 -> -2, 0.5 -> 1), NaN -> 0, inf -> Long.MAX_VALUE
        ("round(x)", np.nan_to_num(np.floor(X_ + 0.5), nan=0.0, posinf=2.0**63)),
        ("rint(x)", np.rint(X_)),  # half to even (2.5 -> 2)
        ("sign(x)", np.sign(X_)), ("abs(x)", np.abs(X_)),
        ("deg(x)", np.degrees(X_)), ("rad(x)", np.radians(X_)),
        ("ampl(x, y)", np.sqrt(X_ * X_ + Y_ * Y_)), ("phase(x, y)", np.arctan2(Y_, X_)),
        ("nan(x)", np.isnan(X_)), ("inf(x)", np.isinf(X_)),
        ("feq(x, y)", (X_ == Y_) | (np.abs(X_ - Y_) <= 1e-6)),
        ("feq(x, y, 0.6)", (X_ == Y_) | (np.abs(X_ - Y_) <= 0.6)),
        ("fneq(x, y)", ~((X_ == Y_) | (np.abs(X_ - Y_) <= 1e-6))),
        ("fneq(x, y, 0.6)", ~((X_ == Y_) | (np.abs(X_ - Y_) <= 0.6))),
        ("avg(x, y, 1)", (X_ + Y_ + 1) / 3),
        ("stddev(x, y)", np.sqrt((X_ ** 2 + Y_ ** 2) / 2 - ((X_ + Y_) / 2) ** 2)),
        ("coef_var(x, y)", np.sqrt((X_ ** 4 + Y_ ** 4) / 2 - ((X_ ** 2 + Y_ ** 2) / 2) ** 2) / ((X_ ** 2 + Y_ ** 2) / 2)),
        ("distance(x, y, 0, 0)", np.sqrt((0 - X_) ** 2 + (0 - Y_) ** 2)),
        ("distance_deriv(x, y, 1, 2)", np.abs((Y_ - X_) - 1.0)),
        ("distance_integ(x, y, 1, 2)", np.sqrt((1 - X_) ** 2 + (3 - X_ - Y_) ** 2)),
        ("inrange(x, 0, 1)", ~((X_ < 0) | (X_ > 1))),  # NaN passes, as in SNAP
        ("inrange(x, y, -1, -1, 1, 2)", ~((X_ < -1) | (X_ > 1)) & ~((Y_ < -1) | (Y_ > 2))),
        ("inrange_deriv(x, y, 0, 0.5, 1, 2)", ~(((Y_ - X_) < 0.5) | ((Y_ - X_) > 1))),
        ("inrange_integ(x, y, -1, -1, 1, 1)", ~((X_ < -1) | (X_ > 1)) & ~(((X_ + Y_) < -2) | ((X_ + Y_) > 2))),
        ("bit_set(5, 0) + 2 * bit_set(5, 1) + 4 * bit_set(5, 2)", 1 + 0 + 4),
    ]


@pytest.mark.parametrize("text, expected", FUNCTION_CASES)
def test_functions(text, expected):
    got = ev(text, {"x": X_, "y": Y_})
    np.testing.assert_allclose(f(got), f(np.broadcast_to(expected, X_.shape)), rtol=1e-12, atol=1e-15)


def test_every_function_is_tested_and_arity_checked():
    tested = {
        "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "sech", "cosech", "log",
        "log10", "exp", "exp10", "sq", "sqrt", "pow", "min", "max", "floor", "ceil", "round", "rint", "sign",
        "abs", "deg", "rad", "ampl", "phase", "nan", "inf", "feq", "fneq", "avg", "stddev", "coef_var",
        "distance", "distance_deriv", "distance_integ", "inrange", "inrange_deriv", "inrange_integ", "bit_set",
        "random_uniform", "random_gaussian",
    }
    assert set(FUNCTIONS) == tested
    for name, overloads in FUNCTIONS.items():
        counts = {fn.nargs for fn in overloads}
        if -1 in counts:  # SNAP's variadic functions take any number of arguments, even none
            parse(f"{name}()")
            continue
        n_bad = max(counts) + 1
        shown = ",".join(["int"] * n_bad)
        with pytest.raises(ExpressionError, match=re.escape(f"Undefined function '{name}({shown})'.")) as info:
            parse(f"{name}(" + ", ".join(["1"] * n_bad) + ")", {})
        assert info.value.column == 1


def test_random_functions_have_the_tile_shape_and_range():
    u = ev("random_uniform()", {}, shape=(50, 40))
    g = ev("random_gaussian()", {}, shape=(50, 40))
    assert u.shape == g.shape == (50, 40)
    assert 0 <= u.min() and u.max() < 1 and 0.3 < u.mean() < 0.7
    assert -0.3 < g.mean() < 0.3 and 0.8 < g.std() < 1.2


# --- X / Y -----------------------------------------------------------------------

def test_xy_are_pixel_centres_with_tile_offset():
    r = ev("X * 1000 + Y", {}, shape=(2, 3), x0=10, y0=100)
    np.testing.assert_array_equal(r, [[10.5 * 1000 + 100.5, 11.5 * 1000 + 100.5, 12.5 * 1000 + 100.5],
                                      [10.5 * 1000 + 101.5, 11.5 * 1000 + 101.5, 12.5 * 1000 + 101.5]])
    assert ev("1", {}, shape=(2, 3)).shape == (2, 3)


def test_xy_across_chunk_boundaries_match_unchunked(product):
    data = RNG.uniform(0, 1, (23, 31)).astype("float32")
    expr = "B4 * 0 + X * 100 + Y + (X > 15 ? 1 : 0)"
    chunked = bandmaths(product({"B4": data}, chunks=(7, 8)), [("xy", "float64", expr)])
    whole = bandmaths(product({"B4": data}, chunks=(23, 31)), [("xy", "float64", expr)])
    a = chunked.band("xy").data
    assert a.numblocks == (4, 4)
    np.testing.assert_array_equal(a.compute(), whole.band("xy").data.compute())
    cols, rows = np.meshgrid(np.arange(31) + 0.5, np.arange(23) + 0.5)
    np.testing.assert_array_equal(a.compute(), cols * 100 + rows + (cols > 15))


# --- syntax errors and hostile input ----------------------------------------------

@pytest.mark.parametrize(
    "text, message, column",
    [
        ("B4 + * B8", "Term expected. Found '*'.", 6),
        ("B4 +", "Term expected. Found the end of the expression.", 5),
        ("(B4 + B8", "Missing ')'.", 9),
        ("B4 B8", "Incomplete expression. Unexpected 'B8'.", 4),
        ("B4 = 1", "Variable expected on the left side of assignment '='. Use '==' to compare.", 4),
        ("B4 > 0 ? 1", "Missing ':' part of conditional '?:' term.", 11),
        ("if B4 > 0 then 1", "Missing 'else' in a conditional 'if' term.", 17),
        ("if B4 > 0 1 else 2", "Missing 'then' in a conditional 'if' term.", 11),
        ("B4 # 2", "Incomplete expression. Unexpected the character '#'.", 4),
        ("B4 + \"x\"", 'String constants ("...") are not supported by this engine.', 6),
        ("'B4 + 1", "Unterminated quoted name", 1),
        ("sqrt(B4", "Missing ')' or ','.", 8),
        ("B4 then", "Incomplete expression. Unexpected 'then'.", 4),
        ("then", "Unexpected keyword 'then'.", 1),
        ("0x", "Token '0x' is not a valid hexadecimal constant.", 1),
        ("B4 << 2", "Incomplete expression. Unexpected '<<'. SNAP has no shift operators.", 4),
        ("var(\"a\", 1)", 'String constants ("...") are not supported by this engine.', 5),
        ("var(1)", "var(...) variable definitions are not supported by this engine.", 1),
    ],
)
def test_syntax_errors_name_the_column(text, message, column):
    with pytest.raises(ExpressionError, match=re.escape(message)) as info:
        parse(text)
    assert info.value.column == column
    msg = str(info.value)
    assert msg.startswith("Could not parse expression: '") and msg.endswith(f"(column {column})")
    assert "\n" not in msg


def test_empty_expression_has_no_column():
    for text in ["", "   ", "\t\n"]:
        with pytest.raises(ExpressionError, match=r"Empty expression\.$") as info:
            parse(text)
        assert info.value.column is None


def test_error_message_format_matches_the_documented_example():
    with pytest.raises(ExpressionError) as info:
        parse("B4 + * B8")
    assert str(info.value) == "Could not parse expression: 'B4 + * B8'. Term expected. Found '*'. (column 6)"


def test_unknown_function_is_an_error_with_a_suggestion():
    with pytest.raises(ExpressionError, match=r"Undefined function 'sqr\(\?\)'\. Did you mean 'sqrt'\?") as info:
        parse("B4 + sqr(B8)")
    assert info.value.column == 6
    with pytest.raises(ExpressionError, match=r"Undefined function 'sqr\(double\)'\."):  # typed: SNAP's text
        parse("B4 + sqr(B8)", {"B4": "double", "B8": "double"})


@pytest.mark.parametrize(
    "text",
    ["__import__('os')", "__import__('os').system('ls')", "eval('1')", "exec('import os')", "open('/etc/passwd')"],
)
def test_python_injection_is_just_an_unknown_function(text):
    with pytest.raises(ExpressionError, match=r"Could not parse expression: .*Undefined function"):
        parse(text)


@pytest.mark.parametrize("text", ["B4.__class__", "B4[0]", "lambda: 1", "{}", "B4; B8"])
def test_python_syntax_is_rejected_or_harmless(text):
    try:
        expr = parse(text)
    except ExpressionError as exc:
        assert "Could not parse expression" in str(exc)
    else:
        assert expr.symbols == {"B4.__class__"}  # only a (non-existent) band name
        with pytest.raises(ExpressionError, match="Undefined symbol 'B4.__class__'"):
            expr.evaluate({"B4": A})


def test_deep_nesting_is_a_clear_error_not_recursion_error():
    limit = sys.getrecursionlimit()
    for text in ["(" * 5000 + "1" + ")" * 5000, "-" * 5000 + "1", "sqrt(" * 500 + "1" + ")" * 500,
                 "!" * 2000 + "1", "1 ? " * 2000 + "1" + " : 2" * 2000]:
        with pytest.raises(ExpressionError, match="nested too deeply"):
            parse(text)
    assert sys.getrecursionlimit() == limit
    ok = "(" * MAX_NESTING + "1" + ")" * (MAX_NESTING)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse(ok)  # the top level counts as one
    assert float(parse("(" * (MAX_NESTING - 1) + "1" + ")" * (MAX_NESTING - 1)).evaluate({})) == 1.0


def test_long_flat_expressions_work():
    n = 20000
    r = parse(" + ".join(["a"] * n)).evaluate(ENV)
    np.testing.assert_allclose(r, A * n)
    # a long lookup table of right-nested conditionals is flat too
    table = " : ".join(f"c == {k} ? {k * 10}" for k in range(500)) + " : -1"
    env = {"c": np.array([0.0, 7.0, 499.0, 600.0])}
    np.testing.assert_array_equal(parse(table).evaluate(env), [0, 70, 4990, -1])
    chain = " else ".join(f"if c == {k} then {k}" for k in range(500)) + " else -1"
    np.testing.assert_array_equal(parse(chain).evaluate(env), [0, 7, 499, -1])


def test_long_expression_errors_stay_on_one_short_line():
    text = " + ".join(["a"] * 5000) + " + * b"
    with pytest.raises(ExpressionError) as info:
        parse(text)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 250
    assert info.value.column == len(text) - 2
    with pytest.raises(ExpressionError) as info:
        parse("B4 +\n\t* B8")
    assert "\n" not in str(info.value) and info.value.column == 7


def test_expression_is_picklable_for_distributed_workers():
    expr = pickle.loads(pickle.dumps(parse("a > 0 ? sqrt(b) : X")))
    np.testing.assert_allclose(expr.evaluate(ENV), np.where(A > 0, np.sqrt(B), np.arange(7) + 0.5))


# --- the operator ---------------------------------------------------------------

@pytest.fixture
def band(make_band):
    """``band(name, data, chunks=(4, 5), no_data=NaN, transform=TRANSFORM)``: a lazy band."""

    def build(name, data, chunks=(4, 5), no_data=np.nan, transform=TRANSFORM):
        return make_band(name, data, transform, no_data, chunks)

    return build


@pytest.fixture
def product(make_product):
    """``product(arrays, name="S2", chunks=(4, 5), no_data={}, start_time=None, stop_time=None)``: a Level-2A
    product of `arrays` (no-data NaN for float bands, none for integer bands, unless `no_data` names one)."""
    return functools.partial(make_product, name="S2", product_type="S2_MSI_Level-2A", crs=CRS.from_epsg(32633),
                             transform=TRANSFORM, chunks=(4, 5))


def xml_params(targets, variables=()):
    """Raw parameters exactly as the graph parser yields them for the XML."""
    tbs = []
    for t in targets:
        if isinstance(t, dict):
            tbs.append(("targetBand", list(t.items())))
        else:
            name, typ, expr = t
            tbs.append(("targetBand", [("name", name), ("type", typ), ("expression", expr),
                                       ("description", None), ("unit", None)]))
    raw = {"targetBands": tbs}
    raw["variables"] = [("variable", [("name", n), ("type", ty), ("value", v)]) for n, ty, v in variables] or None
    return raw


def bandmaths(sources, targets, variables=(), node_id=None):
    if isinstance(sources, Product):
        sources = {"sourceProduct": sources}
    op = BandMathsOp.create(sources, xml_params(targets, variables), node_id=node_id)
    return op.initialize()


B4 = RNG.uniform(0.01, 0.5, (9, 11)).astype("float32")
B8 = RNG.uniform(0.01, 0.5, (9, 11)).astype("float32")


def test_registered_under_snap_alias_and_spec():
    assert get_operator("BandMaths") is BandMathsOp
    names = [p.name for p in BandMathsOp.spec.parameters]
    assert names == ["targetBands", "variables"]
    assert BandMathsOp.spec.parameter("targetBands").item == "targetBand"
    assert BandMathsOp.spec.sources[0].multiple


def test_ndvi_and_product_properties(product):
    src = product({"B4": B4, "B8": B8, "B2": B4}, start_time=None)
    src.metadata.add_element("Processing_Graph", node="Read")
    out = bandmaths(src, [{"name": "NDVI", "type": "float32", "expression": "(B8 - B4) / (B8 + B4)",
                           "description": "vegetation", "unit": "1", "spectralWavelength": "833.0",
                           "spectralBandIndex": "3"}])
    assert out.band_names == ["NDVI"]  # only the target bands
    assert out.name == "S2_BandMath" and out.product_type == "BandMath"
    assert out.crs == src.crs and out.metadata.element("Processing_Graph") is not None
    nd = out.band("NDVI")
    assert nd.dtype == np.float32 and nd.transform == TRANSFORM and math.isnan(nd.no_data)
    assert nd.unit == "1" and nd.description == "vegetation" and nd.wavelength == 833.0
    assert nd.data.chunks == src.band("B4").data.chunks
    expected = (B8.astype(float) - B4) / (B8.astype(float) + B4)
    np.testing.assert_allclose(nd.data.compute(), expected.astype("float32"), rtol=1e-7)


def test_only_referenced_bands_are_read(product):
    def explode(block):
        raise AssertionError("an unreferenced band was read")

    src = product({"B4": B4, "B8": B8})
    src.bands["B11"] = Band("B11", da.from_array(B4, chunks=(4, 5)).map_blocks(explode, dtype="float32"), TRANSFORM, np.nan)
    out = bandmaths(src, [("r", "float32", "B4 * 2")])
    np.testing.assert_allclose(out.band("r").data.compute(), B4 * 2)
    graph = dict(out.band("r").data.__dask_graph__())
    assert not any("explode" in str(k) for k in graph)


def test_no_data_only_from_nan_or_inf_results_never_from_inputs(product):
    # BandMathsOp.computeTile evaluates every pixel on the raw source samples and
    # only turns a NaN/infinite result into the target's no-data value.
    b4 = B4.copy()
    b4[0, 0] = np.nan
    b8 = B8.copy()
    b8[1, 1] = -1.0  # B8's no-data value: an ordinary value for BandMaths
    b8[2, 2] = 0.0
    src = product({"B4": b4, "B8": b8}, no_data={"B8": -1.0})
    out = bandmaths(src, [
        ("plain", "float32", "B8 / (B8 - B8)"),  # inf / nan everywhere
        ("cmp", "float32", "B4 > 0.2 ? 1 : 0"),  # NaN > 0.2 is false: 0, not no-data
        ("fill", "float32", "nan(B4) ? 0 : B4"),  # an expression can fill gaps
        ("nd", "float32", "B4 + B8"),
        {"name": "nd999", "type": "float32", "expression": "B4 + B8", "noDataValue": "-999"},
    ])
    assert np.isnan(out.band("plain").data.compute()).all()
    cmp = out.band("cmp").data.compute()
    assert cmp[0, 0] == 0.0
    np.testing.assert_array_equal(cmp.ravel()[1:], (B4 > 0.2).astype("float32").ravel()[1:])
    fill = out.band("fill").data.compute()
    assert fill[0, 0] == 0.0 and fill[1, 1] == B4[1, 1]
    nd = out.band("nd").data.compute()
    assert np.isnan(nd[0, 0]) and nd[1, 1] == np.float32(np.float64(B4[1, 1]) - 1.0)
    assert nd[2, 2] == pytest.approx(B4[2, 2])
    nd999 = out.band("nd999")
    assert nd999.no_data == -999.0
    v = nd999.data.compute()
    assert v[0, 0] == -999 and v[1, 1] != -999 and np.isfinite(v).all()


def test_integer_targets_truncate_then_wrap_like_java(product):
    data = np.array([[0.4, 1.9, -1.9, 300.7], [-5.0, np.nan, 65.5, 1e12]], dtype="float64")
    src = product({"v": data}, chunks=(2, 2))
    out = bandmaths(src, [
        {"name": "u8", "type": "uint8", "expression": "v"},
        {"name": "u8nd", "type": "uint8", "expression": "v", "noDataValue": "0"},
        {"name": "i16", "type": "int16", "expression": "v / 0 * 0 + v", "noDataValue": "-32768"},
        {"name": "i32", "type": "int32", "expression": "v"},
        {"name": "f64", "type": "float64", "expression": "v"},
    ])
    # Tile.setSample(double) into a byte/short/int buffer: (int) v (truncation, int32 saturation),
    # then the buffer keeps the low bits: -1.9 -> -1 -> 255, 300.7 -> 300 -> 44, 1e12 -> 2**31-1 -> 255.
    u8 = out.band("u8")
    assert u8.dtype == np.uint8 and u8.no_data is None  # no noDataValue: none (SNAP: not used)
    np.testing.assert_array_equal(u8.data.compute(), [[0, 1, 255, 44], [251, 0, 65, 255]])  # NaN -> (int) NaN = 0
    u8nd = out.band("u8nd")
    assert u8nd.no_data == 0
    np.testing.assert_array_equal(u8nd.data.compute(), [[0, 1, 255, 44], [251, 0, 65, 255]])
    i16 = out.band("i16")
    assert i16.dtype == np.int16 and i16.no_data == -32768
    np.testing.assert_array_equal(i16.data.compute(), [[-32768] * 4, [-32768, -32768, -32768, -32768]])
    i32 = out.band("i32").data.compute()
    assert i32.dtype == np.int32
    np.testing.assert_array_equal(i32, [[0, 1, -1, 300], [-5, 0, 65, np.iinfo(np.int32).max]])
    f64 = out.band("f64").data.compute()
    assert f64.dtype == np.float64 and f64[0, 3] == 300.7


def test_boolean_result_into_uint8(product):
    src = product({"B4": B4, "B8": B8})
    out = bandmaths(src, [{"name": "veg", "type": "uint8", "expression": "B8 > B4 && B8 > 0.2", "noDataValue": "255"}])
    np.testing.assert_array_equal(out.band("veg").data.compute(), ((B8 > B4) & (B8 > 0.2)).astype("uint8"))


def test_to_target_type_directly():
    v = np.array([1.5, np.inf, -np.inf, np.nan, 70000.0, -1.0, 3e9])
    np.testing.assert_array_equal(to_target_type(v, np.uint16, 9), [1, 9, 9, 9, 70000 - 65536, 65535, 65535])
    np.testing.assert_array_equal(to_target_type(v, np.uint32, 7), [1, 7, 7, 7, 70000, 2**32 - 1, 2**31 - 1])
    np.testing.assert_array_equal(to_target_type(v, np.int8, 0), [1, 0, 0, 0, 70000 % 256, -1, -1])
    f32 = to_target_type(np.array([1e39, np.nan]), np.float32, np.float32(-1))
    assert np.isinf(f32[0]) and f32[1] == -1  # a finite double beyond float range is stored as inf
    assert store_value(np.float32(0.1), np.float64) == float(np.float32(0.1))


def test_valid_expression_never_changes_pixels(product):
    # BandMathsOp only sets it as the band's valid-pixel expression (a property), so gpt's
    # pixels are computed everywhere; the band carries the property.
    src = product({"B4": B4, "B8": B8})
    out = bandmaths(src, [
        {"name": "ratio", "type": "float32", "expression": "B8 / B4", "validExpression": "ratio >= 1 && B4 > 0.05"},
        {"name": "other", "type": "int16", "expression": "B4 * 100", "validExpression": "ratio > 2",
         "noDataValue": "-1"},
    ])
    ratio = (B8.astype(float) / B4).astype("float32")
    np.testing.assert_array_equal(out.band("ratio").data.compute(), ratio)
    np.testing.assert_array_equal(out.band("other").data.compute(), np.trunc(B4.astype(float) * 100).astype("int16"))
    assert out.band("ratio").valid_expression == "ratio >= 1 && B4 > 0.05"
    assert out.band("other").valid_expression == "ratio > 2"


def test_variables_are_constants_and_override_bands(product):
    src = product({"B4": B4, "B8": B8, "K": B8})
    out = bandmaths(src, [("r", "float64", "B4 * SOLAR + K + (FLAG ? 1 : 0) + N")],
                    variables=[("SOLAR", "float32", "914.5"), ("K", "float64", "2"), ("FLAG", "boolean", "True"),
                               ("N", "int32", "3")])
    np.testing.assert_allclose(out.band("r").data.compute(), B4.astype(float) * 914.5 + 2 + 1 + 3)
    with pytest.raises(ParameterError, match="variable 'N': cannot read '1.5' as int32"):
        bandmaths(src, [("r", "float32", "N")], variables=[("N", "int32", "1.5")])
    with pytest.raises(ParameterError, match="variable 'N': Illegal type name in variable declaration: char"):
        bandmaths(src, [("r", "float32", "N")], variables=[("N", "char", "1")])
    with pytest.raises(ParameterError, match="Illegal type name in variable declaration: double"):  # not a type
        bandmaths(src, [("r", "float32", "N")], variables=[("N", "double", "1")])


def test_multi_source_plain_names_are_the_first_source_and_prefixes(product):
    s1 = product({"B4": B4, "B8": B8}, name="first")
    vv = RNG.uniform(-20, 0, B4.shape).astype("float32")
    s2 = product({"B4": B4 * 10, "VV": vv}, name="second")
    sources = {"sourceProduct": s1, "sourceProduct.1": s2}
    out = bandmaths(sources, [
        ("a", "float32", "B4 + $2.VV"),  # plain B4: the first source
        ("b", "float32", "$sourceProduct.1.B4"),
        ("c", "float32", "$sourceProduct.B4 + $1.B8"),
    ])
    np.testing.assert_allclose(out.band("a").data.compute(), B4 + vv, rtol=1e-6)
    np.testing.assert_allclose(out.band("b").data.compute(), B4 * 10)
    np.testing.assert_allclose(out.band("c").data.compute(), B4 + B8, rtol=1e-6)
    assert out.name == "first_BandMath"
    with pytest.raises(ExpressionError, match=r"Undefined symbol 'VV'\. It is a band of source 'sourceProduct\.1'"):
        bandmaths(sources, [("a", "float32", "B4 + VV")])
    with pytest.raises(ExpressionError, match=r"Undefined symbol '\$sourceProduct\.0\.B8'"):
        bandmaths(sources, [("a", "float32", "$sourceProduct.0.B8")])


def test_times_from_first_source_that_has_both(product):
    import datetime as dt

    t0, t1 = dt.datetime(2020, 5, 1, 10), dt.datetime(2020, 5, 1, 10, 1)
    s1 = product({"B4": B4})
    s2 = product({"VV": B4}, name="s1", start_time=t0, stop_time=t1)
    out = bandmaths({"sourceProduct": s1, "sourceProduct.1": s2}, [("a", "float32", "$2.VV")])
    assert (out.start_time, out.stop_time) == (t0, t1)


def test_unknown_band_error_names_band_and_lists_bands(product):
    src = product({"B4": B4, "B8": B8})
    with pytest.raises(ExpressionError) as info:
        bandmaths(src, [("r", "float32", "B4 + B99 * 2")])
    msg = str(info.value)
    assert msg == ("BandMaths: target band 'r': Could not parse expression: 'B4 + B99 * 2'. "
                   "Undefined symbol 'B99'. Bands: B4, B8. (column 6)")
    assert info.value.column == 6


def test_syntax_error_through_operator_is_one_line_with_column(product):
    src = product({"B4": B4, "B8": B8})
    with pytest.raises(ExpressionError) as info:
        bandmaths(src, [("r", "float32", "B4 + * B8")], node_id="ndvi")
    assert str(info.value) == (
        "BandMaths (node 'ndvi'): target band 'r': Could not parse expression: 'B4 + * B8'. "
        "Term expected. Found '*'. (column 6)"
    )
    with pytest.raises(ExpressionError, match="validExpression: Could not parse expression: 'r >'. Term expected"):
        bandmaths(src, [{"name": "r", "type": "float32", "expression": "B4", "validExpression": "r >"}])
    with pytest.raises(ExpressionError, match=r"Undefined symbol 'os'"):  # SNAP parses arguments first
        bandmaths(src, [("r", "float32", "__import__('os').system('true')")])
    with pytest.raises(ExpressionError, match=r"Undefined function '__import__\(double\)'"):
        bandmaths(src, [("r", "float32", "__import__(B4)")])
    with pytest.raises(ExpressionError, match=r"Numeric operands expected for binary '\*' operator\. \(column 10\)"):
        bandmaths(src, [("r", "float32", "(B4 > 0) * 2")])


def test_bands_of_different_size_are_refused(band, product):
    src = product({"B4": B4})
    src.bands["B5"] = band("B5", B4[::2, ::2], transform=TRANSFORM @ Affine.scale(2))
    with pytest.raises(OperatorError, match=r"All source rasters must have the same size of 11 x 9 pixels\. "
                                             r"\('B4' is 11x9, 'B5' 6x5\); add a Resample node"):
        bandmaths(src, [("r", "float32", "B4 + B5")])
    # a band on its own grid alone is fine: the target takes that grid
    out = bandmaths(src, [("r", "float32", "B5 * 2")])
    assert out.band("r").shape == (5, 6) and out.band("r").transform == TRANSFORM @ Affine.scale(2)
    shifted = product({"S": B4})
    shifted.bands["S"] = band("S", B4, transform=TRANSFORM @ Affine.translation(3, 0))
    with pytest.raises(OperatorError, match="different grids"):
        bandmaths({"sourceProduct": src, "sourceProduct.1": shifted}, [("r", "float32", "B4 + $2.S")])


@pytest.mark.parametrize(
    "target, message",
    [
        ({"type": "float32", "expression": "1"}, "targetBand 1: Missing band name."),
        ({"name": "x", "expression": "1"}, "targetBand 'x': Missing data type for band x."),
        ({"name": "x", "type": "int64", "expression": "1"}, "unknown type 'int64'"),
        ({"name": "x", "type": "float128", "expression": "1"}, "unknown type 'float128'"),
        ({"name": "x", "type": "uint8", "expression": "1", "noDataValue": "-1"}, "noDataValue -1 does not fit type uint8"),
        ({"name": "x", "type": "int16", "expression": "1", "noDataValue": "0.5"}, "does not fit"),
        ({"name": "x", "type": "float32", "expression": "1", "noDataValue": "abc"},
         "targetBand 'x': <noDataValue> 'abc' is not a number"),
        ({"name": "x", "type": "float32", "expression": "1", "scalingFactor": "0.5"},
         "scalingFactor/scalingOffset are not supported"),
    ],
)
def test_bad_target_band_descriptors(product, target, message):
    with pytest.raises(ParameterError, match=message):
        bandmaths(product({"B4": B4}), [target])


def test_missing_expression_is_snaps_empty_expression(product):
    # BandMathsOpTest.testEmptyExpressionGraph: an absent or empty <expression> is null to SNAP
    for target in [{"name": "x", "type": "float32"}, {"name": "x", "type": "float32", "expression": ""}]:
        with pytest.raises(ExpressionError) as info:
            bandmaths(product({"B4": B4}), [target])
        assert str(info.value) == "BandMaths: target band 'x': Could not parse expression: 'null'. Empty expression."


def test_missing_target_bands_and_duplicates(product):
    src = product({"B4": B4})
    with pytest.raises(ParameterError, match="'targetBands' is required"):
        BandMathsOp.create({"sourceProduct": src}, {}).initialize()
    with pytest.raises(ParameterError, match="already defined"):
        bandmaths(src, [("a", "float32", "1"), ("a", "float32", "2")])
    with pytest.raises(OperatorError, match="No source products given."):
        BandMathsOp.create({}, xml_params([("a", "float32", "1")])).initialize()


def test_type_is_required_and_case_insensitive(product):
    out = bandmaths(product({"B4": B4}), [{"name": "b", "type": "UINT16", "expression": "B4 * 1000"}])
    assert out.band("b").dtype == np.uint16
    with pytest.raises(ParameterError, match="Missing data type for band a."):  # BandMathsOp.createBand
        bandmaths(product({"B4": B4}), [{"name": "a", "expression": "B4"}])


def test_constant_expression_takes_the_scene_grid(product):
    src = product({"B4": B4}, chunks=(4, 5))
    out = bandmaths(src, [("one", "float32", "1 + PI"), ("xy", "float64", "X + Y * 1000")])
    one = out.band("one")
    assert one.shape == B4.shape and one.data.chunks == src.band("B4").data.chunks
    np.testing.assert_allclose(one.data.compute(), np.full(B4.shape, 1 + math.pi, dtype="float32"))
    cols, rows = np.meshgrid(np.arange(11) + 0.5, np.arange(9) + 0.5)
    np.testing.assert_array_equal(out.band("xy").data.compute(), cols + rows * 1000)


def test_lat_lon_are_pixel_centre_coordinates(product):
    src = product({"B4": B4})
    out = bandmaths(src, [("lat", "float64", "LAT"), ("lon", "float64", "LON")])
    t = Transformer.from_crs(32633, 4326, always_xy=True)
    x, y = TRANSFORM @ (2.5, 3.5)
    lon, lat = t.transform(x, y)
    assert out.band("lat").data.compute()[3, 2] == pytest.approx(lat, abs=1e-9)
    assert out.band("lon").data.compute()[3, 2] == pytest.approx(lon, abs=1e-9)
    nocrs = product({"B4": B4})
    nocrs.crs = None
    with pytest.raises(ExpressionError, match="'LAT' needs a map-projected source product"):
        bandmaths(nocrs, [("lat", "float64", "LAT")])


def test_lazy_on_a_full_sentinel2_tile():
    big = Band("B4", da.ones((10980, 10980), dtype="float32", chunks=1024), TRANSFORM, np.nan)
    src = Product("T33UUU", bands={"B4": big, "B8": big.replace(name="B8")}, crs=CRS.from_epsg(32633))
    out = bandmaths(src, [("ndvi", "float32", "(B8 - B4) / (B8 + B4 + 1)")])
    data = out.band("ndvi").data
    assert data.shape == (10980, 10980) and data.numblocks == (11, 11)
    np.testing.assert_array_equal(data.blocks[10, 10].compute(), np.zeros((740, 740), dtype="float32"))


def test_graph_is_deterministic_and_picklable(product):
    src = product({"B4": B4, "B8": B8})
    a = bandmaths(src, [("r", "float32", "B4 + B8")]).band("r").data
    b = bandmaths(src, [("r", "float32", "B4 + B8")]).band("r").data
    c = bandmaths(src, [("r", "float32", "B4 - B8")]).band("r").data
    assert a.name == b.name and a.name != c.name
    graph = pickle.loads(pickle.dumps(dict(a.__dask_graph__())))
    with dask.config.set(scheduler="sync"):
        np.testing.assert_allclose(dask.get(graph, (a.name, 1, 1)), a.blocks[1, 1].compute())


# --- through the engine ---------------------------------------------------------------

GRAPH = """<graph id="g"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>{src}</file></parameters></node>
  <node id="Read(2)"><operator>Read</operator><parameters><file>{src2}</file></parameters></node>
  <node id="BandMaths">
    <operator>BandMaths</operator>
    <sources><sourceProduct refid="Read"/><sourceProduct.1 refid="Read(2)"/></sources>
    <parameters class="com.bc.ceres.binding.dom.XppDomElement">
      <targetBands>
        <targetBand>
          <name>NDVI</name>
          <type>float32</type>
          <expression>(B8 - B4) / (B8 + B4)</expression>
          <description/>
          <unit/>
          <noDataValue>0.0</noDataValue>
        </targetBand>
        <targetBand>
          <name>flag</name>
          <type>uint8</type>
          <expression>B8 &gt; T and $sourceProduct.1.VV &lt; -10 ? 1 : 0</expression>
          <noDataValue>255</noDataValue>
        </targetBand>
      </targetBands>
      <variables>
        <variable><name>T</name><type>float32</type><value>0.25</value></variable>
      </variables>
    </parameters>
  </node>
</graph>"""


def test_through_the_engine_from_graph_xml(write_tif, tmp_path):
    b4, b8 = B4.copy(), B8.copy()
    b4[0, 0] = np.nan
    vv = RNG.uniform(-20, 0, B4.shape).astype("float32")
    write_tif(tmp_path / "s2.tif", {"B4": b4, "B8": b8}, dtype="float32", transform=TRANSFORM, nodata=np.nan)
    write_tif(tmp_path / "s1.tif", {"VV": vv}, dtype="float32", transform=TRANSFORM, nodata=np.nan)
    text = GRAPH.format(src=tmp_path / "s2.tif", src2=tmp_path / "s1.tif")
    ops = build(parse_graph("g.xml", text=text), ExecutionContext(tile_size=4))
    out = ops["BandMaths"].target
    assert out.band_names == ["NDVI", "flag"]
    ndvi = out.band("NDVI")
    assert ndvi.no_data == 0.0 and ndvi.data.chunks[0] == (4, 4, 1)
    expected = ((b8.astype(float) - b4) / (b8.astype(float) + b4)).astype("float32")
    got = ndvi.data.compute()
    assert got[0, 0] == 0.0  # NaN source -> noDataValue
    np.testing.assert_allclose(got.ravel()[1:], expected.ravel()[1:], rtol=1e-6)
    flag = out.band("flag").data.compute()
    np.testing.assert_array_equal(flag, ((b8 > np.float64(0.25)) & (vv < -10)).astype("uint8"))


def test_raw_graph_parameters_drive_the_operator_directly(product):
    graph = parse_graph("g.xml", text=GRAPH.format(src="a.tif", src2="b.tif"))
    raw = graph.nodes["BandMaths"].parameters
    s2 = product({"B4": B4, "B8": B8})
    vv = np.full(B4.shape, -12.0, dtype="float32")
    s1 = product({"VV": vv}, name="S1")
    op = BandMathsOp.create({"sourceProduct": s2, "sourceProduct.1": s1}, raw)
    out = op.initialize()
    np.testing.assert_array_equal(out.band("flag").data.compute(), (B8 > np.float64(0.25)).astype("uint8"))


def test_graph_errors_are_one_line_and_name_the_node(write_tif, tmp_path):
    write_tif(tmp_path / "s2.tif", {"B4": B4, "B8": B8}, dtype="float32", transform=TRANSFORM, nodata=np.nan)
    write_tif(tmp_path / "s1.tif", {"VV": B4}, dtype="float32", transform=TRANSFORM, nodata=np.nan)
    text = GRAPH.format(src=tmp_path / "s2.tif", src2=tmp_path / "s1.tif").replace("(B8 - B4)", "(B8 - B44)")
    with pytest.raises(ExpressionError) as info:
        build(parse_graph("g.xml", text=text), ExecutionContext())
    msg = str(info.value)
    assert "\n" not in msg and "Undefined symbol 'B44'" in msg and "BandMaths" in msg and "Bands: B4, B8." in msg


def test_unknown_operator_alias_is_not_bandmaths():
    with pytest.raises(GraphError):
        get_operator("Bandmaths")


# --- real data ------------------------------------------------------------------------

def test_real_snap_graph_parameters_on_real_sentinel2(shared_data):
    graph_file = shared_data("snap_graphs", "snap-gpt-tests", "graphBandMathNBR.xml")
    scene = shared_data("eolearn_slovenia", "S2L1C_2015-07-11.tif")
    from snap_operators.io import open_product

    graph = parse_graph(graph_file).substitute({
        "input1": str(scene), "subsetRegion": "0,0,100,101", "out1": "unused.dim", "sourceBands": "NBR",
        "mathExpression": "(B08 - B12) / (B08 + B12)",
    })
    raw = graph.nodes["BandMaths"].parameters
    src = open_product(scene)
    out = BandMathsOp.create({"sourceProduct": src}, raw, node_id="BandMaths").initialize()
    nbr = out.band("NBR")
    assert nbr.no_data == 0.0 and nbr.dtype == np.float32
    ref = np.load(shared_data("eolearn_slovenia", "REFERENCE_SCENES.npy"))[4]  # 2015-07-11, (y, x, band)
    b08, b12 = ref[..., 7].astype(float), ref[..., 12].astype(float)
    with np.errstate(all="ignore"):
        expected = ((b08 - b12) / (b08 + b12)).astype("float32")
    expected[~np.isfinite(expected)] = 0.0
    got = nbr.data.compute()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert 0.2 < float(np.mean(got)) < 0.9  # a clear July scene: vegetation dominates
