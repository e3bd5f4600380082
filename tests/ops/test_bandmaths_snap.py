"""BandMaths against SNAP: cases with SNAP's expected values, by category.

Every case names its source in snap-engine: a Java test (``ParserImplTest.
testAddition``: the expected value is the test's) or the class whose code
decides the value (``Term.Div.evalI``: the expected value is what that Java
code computes). Paths: ``snap-core/src/{main,test}/java/org/esa/snap/core/
jexp/...``, ``.../core/dataop/barithm/...``, ``snap-gpf/src/{main,test}/java/
org/esa/snap/core/gpf/common/BandMathsOp*.java``.

The per-category counts in ``docs/bandmaths.md`` are checked against these
cases (:func:`test_conformance_table_is_current`); ``python
tests/ops/test_bandmaths_snap.py`` prints the current table.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import ExpressionError, OperatorError, ParameterError
from snap_operators.core.expressions import parse
from snap_operators.core.product import Band, Product, StoredValues, geophysical_values
from snap_operators.core.streaming import stream_writer
from snap_operators.engine.graph import parse_graph
from snap_operators.engine.runner import build
from snap_operators.io import open_product as read_product
from snap_operators.io.dimap import read_dimap, write_dimap
from snap_operators.io.geotiff_writer import GeoTiffWriter
from snap_operators.ops.bandmaths import BandMathsOp

CATEGORIES = ("arithmetic", "precedence", "logical", "conditional", "functions", "constants",
              "integer semantics", "NaN", "types", "multi-source", "names", "syntax", "storage")
DOC = Path(__file__).resolve().parents[2] / "docs" / "bandmaths.md"


@dataclass(frozen=True)
class Case:
    """One expression with SNAP's result.

    Attributes
    ----------
    category : str
    text : str
        The expression.
    expected : object
        The value (scalar or list, compared exactly; NaN equals NaN, the sign
        of zero counts), or for an error case the message SNAP gives.
    source : str
        The Java test or class in snap-engine the value comes from.
    env : dict
        Name -> values; the numpy dtype is the band's data type (int32 and
        uint8 are SNAP int bands, float32/float64 double bands, bool masks).
    mode : str
        Type the top term is evaluated in (``evalD`` = 'double', as
        ``BandMathsOp.computeTile``; the Java tests also call evalI/evalB).
    error : str or None
        ``'parse'`` or ``'eval'`` when SNAP fails instead.
    checked : bool
        With SNAP's type checks (gpt's BandMaths) or without (BandArithmetic).
    type : str or None
        SNAP's type of the whole term, when the Java test asserts it.
    tol : float
        Relative tolerance, only for FastMath functions (within 1 ulp of libm).
    """

    category: str
    text: str
    expected: Any
    source: str
    env: dict = field(default_factory=dict)
    mode: str = "double"
    error: str | None = None
    checked: bool = True
    type: str | None = None
    tol: float = 0.0

    @property
    def id(self) -> str:
        extra = ("" if self.checked else ", unchecked") + (f", {'/'.join(self.env)}" if self.env else "")
        return f"{self.category}: {self.text} [{self.mode}{extra}]"


def C(category, text, expected, source, **kw):
    return Case(category, text, expected, source, **kw)


def E(category, text, message, source, **kw):
    """A parse error: SNAP's message text."""
    return Case(category, text, message, source, error="parse", **kw)


X3 = {"x": np.array([-10.0, 0.0, 10.0])}  # ParserImplTest's variable x at -10, 0, 10
F64 = np.float64
I32 = np.int32


def _distance(a):  # ParserImplTest.testDistanceFunction, with Functions.DISTANCE's order of operations
    n = len(a) // 2
    return math.sqrt(sum((a[i + n] - a[i]) ** 2 for i in range(n)))


CASES = [
    # --- constants: ParserImplTest, Tokenizer, ParserImpl.convert*Token ---------------------
    C("constants", "true", True, "ParserImplTest.testBooleanConst", mode="boolean", type="boolean"),
    C("constants", "true", 1, "ParserImplTest.testBooleanConst", mode="int"),
    C("constants", "true", 1.0, "ParserImplTest.testBooleanConst"),
    C("constants", "85321", True, "ParserImplTest.testIntegerConst", mode="boolean", type="int"),
    C("constants", "85321", 85321, "ParserImplTest.testIntegerConst", mode="int"),
    C("constants", "85321", 85321.0, "ParserImplTest.testIntegerConst"),
    C("constants", "2147483647", 2147483647, "ParserImplTest.testIntegerMaxValueConst", mode="int"),
    E("constants", "-2147483648", "Integer constant '2147483648' is out of range.",
      "ParserImplTest.testIntegerMinValueConst"),
    C("constants", "+4", 4, "ParserImplTest.testPositiveNumber", mode="int", type="int"),
    C("constants", "4", 4, "ParserImplTest.testPositiveNumber", mode="int", type="int"),
    C("constants", "+0.4", 0.4, "ParserImplTest.testPositiveNumber", type="double"),
    C("constants", "0.4", 0.4, "ParserImplTest.testPositiveNumber", type="double"),
    C("constants", "+.4", 0.4, "ParserImplTest.testPositiveNumber", type="double"),
    C("constants", ".4", 0.4, "ParserImplTest.testPositiveNumber", type="double"),
    C("constants", "-4", -4, "ParserImplTest.testNegativeNumber", mode="int", type="int"),
    C("constants", "-0.4", -0.4, "ParserImplTest.testNegativeNumber", type="double"),
    C("constants", "-.4", -0.4, "ParserImplTest.testNegativeNumber", type="double"),
    C("constants", "1.79", True, "ParserImplTest.testFloatConst", mode="boolean"),
    C("constants", "1.79", 1, "ParserImplTest.testFloatConst", mode="int"),
    C("constants", "1.79", 1.79, "ParserImplTest.testFloatConst"),
    C("constants", "NaN", math.nan, "ParserImplTest.testNaNConst", type="double"),
    C("constants", "PI", math.pi, "Symbols.PI"),
    C("constants", "E", math.e, "Symbols.E"),
    C("constants", "0x20", 32, "FunctionsTest.testBitSet (0x20); Tokenizer.eatHexNumber", mode="int", type="int"),
    C("constants", "0x7fffffff", 2147483647, "ParserImpl.convertHexIntToken", mode="int"),
    E("constants", "0x80000000", "Hexadecimal constant '0x80000000' is out of range.", "ParserImpl.convertHexIntToken"),
    E("constants", "0x", "Token '0x' is not a valid hexadecimal constant.", "ParserImpl.convertHexIntToken"),
    C("constants", "0m10", 16, "Tokenizer.isHexNumberStart ('0m' is a hex prefix too)", mode="int"),
    C("constants", "010", 10, "Tokenizer.eatNumber (the octal test always falls back to TT_INT)", mode="int"),
    # SNAP writes "Token  '" (two spaces); errors.one_line keeps single spaces
    E("constants", "99999999999999999999", "Token '99999999999999999999' is not a valid integer constant.",
      "ParserImpl.convertIntToken"),
    C("constants", "1e999", math.inf, "ParserImpl.convertDoubleToken (Double.parseDouble)"),
    C("constants", "TRUE", True, "Tokenizer(source) is case-insensitive for keywords", mode="boolean"),
    C("constants", "NaN", math.nan, "ParserImpl.parsePrimary: 'NaN' before any symbol", env={"NaN": np.array([1], I32)}),

    # --- arithmetic: ParserImplTest, Term.Add/Sub/Mul/Div/Mod ---------------------------------
    C("arithmetic", "24 + 4", 28, "ParserImplTest.testAddition", mode="int"),
    C("arithmetic", "24 - 4", 20, "ParserImplTest.testSubstraction", mode="int"),
    C("arithmetic", "24 +4", 28, "ParserImplTest.testAdditionNumber", mode="int"),
    C("arithmetic", "24 -4", 20, "ParserImplTest.testSubstractionNumber", mode="int"),
    C("arithmetic", "24 - -4", 28, "ParserImplTest.testSubstractionNegative", mode="int"),
    C("arithmetic", "24--4", 28, "ParserImplTest.testSubstractionNegative", mode="int"),
    C("arithmetic", "24-(-4)", 28, "ParserImplTest.testSubstractionNegative", mode="int"),
    C("arithmetic", "(24--4)", 28, "ParserImplTest.testSubstractionNegative", mode="int"),
    C("arithmetic", "24.0--------------------++++++++++++++++++++++(4)", 28,
      "ParserImplTest.testSubstractionNegative", mode="int"),
    C("arithmetic", "24 - +4", 20, "ParserImplTest.testSubstractionPositive", mode="int"),
    C("arithmetic", "24-4", 20, "ParserImplTest.testSubstractionWithoutSpaces", mode="int"),
    C("arithmetic", "24+4", 28, "ParserImplTest.testAdditionWithoutSpaces", mode="int"),
    C("arithmetic", "1.0 / 0.0", math.inf, "Term.Div.evalD (BandMathsOpTest.testDivisionByZero)"),
    C("arithmetic", "0.0 / 0.0", math.nan, "Term.Div.evalD"),
    C("arithmetic", "7.5 % 2", 1.5, "Term.Mod.evalD (Java's % on doubles)"),
    C("arithmetic", "-7.5 % 2", -1.5, "Term.Mod.evalD (sign of the dividend)"),
    C("arithmetic", "B4 * 3", [float(np.float32(0.1)) * 3], "RasterDataSymbol.evalD (float32 read as double)",
      env={"B4": np.array([0.1], np.float32)}),
    C("arithmetic", "B4 > 0.1", [True], "RasterDataSymbol.evalD + Term.GtD: 0.1f > 0.1 in double",
      env={"B4": np.array([0.1], np.float32)}, mode="boolean"),

    # --- precedence: ParserImpl's descent order, Term.*_PRE ---------------------------------------
    C("precedence", "1 | 2 == 3", True, "ParserImpl.parseComparison calls parseBitwiseOr", mode="boolean"),
    C("precedence", "6 & 3 + 1", 4, "ParserImpl.parseBitwiseAnd calls parseAdd", mode="int"),
    C("precedence", "1 ^ 3 & 2", 3, "ParserImpl.parseBitwiseXOr calls parseBitwiseAnd", mode="int"),
    C("precedence", "5 | 2 ^ 7", 5, "ParserImpl.parseBitwiseOr calls parseBitwiseXOr", mode="int"),
    C("precedence", "2 * 3 + 4 * 5 - 6 / 3", 24.0, "ParserImpl.parseAdd calls parseMul"),
    C("precedence", "2 + 3 * 4", 14, "ParserImpl.parseAdd calls parseMul", mode="int"),
    C("precedence", "(2 + 3) * 4", 20, "ParserImpl.parsePrimary '('", mode="int"),
    C("precedence", "10 - 4 - 3", 3, "ParserImpl.parseAdd (left-associative loop)", mode="int"),
    C("precedence", "100 / 10 / 5", 2, "ParserImpl.parseMul (left-associative loop)", mode="int"),
    C("precedence", "true || false && false", True, "ParserImpl.parseLogicalOr calls parseLogicalAnd",
      mode="boolean"),
    C("precedence", "!true || true", True, "ParserImpl.parseUnary binds tighter than '||'", mode="boolean"),
    C("precedence", "1 < 2 == true", True, "ParserImpl.parseComparison: one level, left to right (EqB)",
      mode="boolean"),
    C("precedence", "true ? 1 : 0 + 5", 1, "ParserImpl.parseConditional is the lowest level", mode="int"),
    C("precedence", "-2 * 3 + 1", -5, "ParserImpl.parseUnary folds '-' into the constant", mode="int"),

    # --- logical: Term.AndB/OrB/NotB/EqB/NEqB -----------------------------------------------------
    C("logical", "true && false", False, "Term.AndB", mode="boolean"),
    C("logical", "true and true", True, "Term.AndB, keyword 'and'", mode="boolean"),
    C("logical", "false || true", True, "Term.OrB", mode="boolean"),
    C("logical", "false or false", False, "Term.OrB, keyword 'or'", mode="boolean"),
    C("logical", "not true", False, "Term.NotB, keyword 'not'", mode="boolean"),
    C("logical", "!false", True, "Term.NotB", mode="boolean"),
    C("logical", "true == false", False, "Term.EqB", mode="boolean"),
    C("logical", "true != false", True, "Term.NEqB", mode="boolean"),
    C("logical", "a > 0 && a < 2", [True, False, False], "Term.AndB of Term.GtD, LtD",
      env={"a": np.array([1.0, 3.0, -1.0])}, mode="boolean"),
    C("logical", "j != 0 && i / j > 2", [True, False], "Term.AndB.evalB short-circuits (no / by zero)",
      env={"i": np.array([7, 5], I32), "j": np.array([2, 0], I32)}, mode="boolean"),
    C("logical", "j == 0 || i / j > 2", [True, True], "Term.OrB.evalB short-circuits (no / by zero)",
      env={"i": np.array([7, 5], I32), "j": np.array([2, 0], I32)}, mode="boolean"),

    # --- conditional: ParserImplTest.testConditional / testNestedConditional, Term.Cond ----------
    C("conditional", "x > 0 ? 1 : 0", [0, 0, 1], "ParserImplTest.testConditional", env=X3, mode="int"),
    C("conditional", "IF x > 0 THEN 1 ELSE 0", [0, 0, 1], "ParserImplTest.testConditional", env=X3, mode="int"),
    C("conditional", "x > 0 ? 1 : x < 0 ? -1 : 0", [-1, 0, 1], "ParserImplTest.testNestedConditionalIfThenElse",
      env=X3, mode="int"),
    C("conditional", "x <= 0 ? (x==0?0:-1):1", [-1, 0, 1], "ParserImplTest.testNestedConditionalIfThenElse",
      env=X3, mode="int"),
    C("conditional", "IF x > 0 THEN 1 ELSE (if x < 0 then -1 else 0)", [-1, 0, 1],
      "ParserImplTest.testNestedConditionalIfThenElse", env=X3, mode="int"),
    C("conditional", "IF x > 0 THEN 1 ELSE IF x < 0 THEN -1 ELSE 0", [-1, 0, 1],
      "ParserImplTest.testNestedConditionalIfThenElse", env=X3, mode="int"),
    C("conditional", "IF x <= 0 THEN (if x == 0 then 0 else -1) ELSE 1", [-1, 0, 1],
      "ParserImplTest.testNestedConditionalIfThenElse", env=X3, mode="int"),
    C("conditional", "true ? 1 : 2.5", 1.0, "ParserImpl.createConditionTerm (int, double -> double)", type="double"),
    C("conditional", "x > 0 ? 7 / 2 : 0", [0.0, 0.0, 3.5], "Term.Cond.evalD -> Term.Div.evalD", env=X3, type="int"),
    C("conditional", "(x > 0 ? 7 / 2 : 0) == 3", [False, False, True], "Term.EqI -> Term.Cond.evalI -> Div.evalI",
      env=X3, mode="boolean"),
    C("conditional", "x > 0 ? true : false", [False, False, True], "ParserImpl.createConditionTerm (boolean)",
      env=X3, mode="boolean", type="boolean"),

    # --- functions: ParserImplTest, FunctionsTest, Functions, DefaultNamespace, ExtMath ----------
    C("functions", "distance(0.1, 0.2, 0.3, 0.4, 0.3, 0.1)", _distance([0.1, 0.2, 0.3, 0.4, 0.3, 0.1]),
      "ParserImplTest.testDistanceFunction"),
    C("functions", "distance_deriv(0.1, 0.2, 0.3, 1.4, 1.3, 1.1)",
      math.sqrt(((0.2 - 0.1) - (1.3 - 1.4)) ** 2 + ((0.3 - 0.2) - (1.1 - 1.3)) ** 2),
      "ParserImplTest.testDistanceDerivFunction", tol=1e-15),
    C("functions", "distance_integ(0.1, 0.2, 0.3, 1.4, 1.3, 1.1)",
      math.sqrt((0.1 - 1.4) ** 2 + ((0.1 + 0.2) - (1.4 + 1.3)) ** 2 + ((0.1 + 0.2 + 0.3) - (1.4 + 1.3 + 1.1)) ** 2),
      "ParserImplTest.testDistanceIntegFunction", tol=1e-15),
    C("functions", "pow(10, ix)", 10.0, "ParserImplTest.testPow", env={"ix": np.array(1, I32)}),
    C("functions", "pow(10, dx)", 10.0, "ParserImplTest.testPow", env={"dx": np.array(1.0)}),
    C("functions", "pow(10.0, ix)", 100.0, "ParserImplTest.testPow", env={"ix": np.array(2, I32)}),
    C("functions", "pow(10.0, dx)", 100.0, "ParserImplTest.testPow", env={"dx": np.array(2.0)}),
    C("functions", "bit_set(1, 0)", True, "FunctionsTest.testBitSet", mode="boolean"),
    C("functions", "bit_set(0x20, 5)", True, "FunctionsTest.testBitSet", mode="boolean"),
    C("functions", "bit_set(0x20, 4)", False, "FunctionsTest.testBitSet", mode="boolean"),
    C("functions", "bit_set(-2147483647 - 1, 31)", True, "FunctionsTest.testBitSet", mode="boolean"),
    C("functions", "round(2.5)", 3.0, "Functions.ROUND (Math.round: ties toward +inf)"),
    C("functions", "round(-2.5)", -2.0, "Functions.ROUND (Math.round: ties toward +inf)"),
    C("functions", "round(0.49999999999999994)", 0.0, "Functions.ROUND (Math.round is exact, not floor(x + 0.5))"),
    C("functions", "rint(2.5)", 2.0, "Functions.RINT (Math.rint: ties to even)"),
    C("functions", "sign(-0.0)", 0.0, "ExtMath.sign(double): 0.0 for both zeros"),
    C("functions", "sign(-3.5)", -1.0, "ExtMath.sign(double)"),
    C("functions", "ampl(3, 4)", 5.0, "Functions.AMPL (Math.sqrt(a * a + b * b))"),
    C("functions", "sech(0)", 1.0, "ExtMath.sech"),
    C("functions", "cosech(1)", 2.0 / (math.exp(1) - math.exp(-1)), "ExtMath.cosech"),
    C("functions", "avg(1, 2, 4)", 7.0 / 3.0, "ExtMath.mean"),
    C("functions", "avg()", math.nan, "ExtMath.mean: 0.0 / 0 (numArgs -1 takes no arguments too)"),
    C("functions", "stddev(1, 3)", 1.0, "Functions.STDDEV"),
    C("functions", "coef_var(1, 3)", math.sqrt((1 + 81) / 2 - 25) / 5, "Functions.COEF_VAR"),
    C("functions", "inrange(1, 2)", True, "DefaultNamespace inrange: n = 2 / 3 = 0 triples", mode="boolean"),
    C("functions", "inrange(0.5, 0, 1)", True, "DefaultNamespace inrange", mode="boolean"),
    C("functions", "inrange(1.5, 0, 1)", False, "DefaultNamespace inrange", mode="boolean"),
    C("functions", "distance(1, 2, 3)", 1.0, "Functions.DISTANCE: n = 3 / 2 = 1 pair"),
    C("functions", "min(-0.0, 0.0)", -0.0, "Functions.MIN_D (Math.min: -0.0 < 0.0)"),
    C("functions", "max(-0.0, 0.0)", 0.0, "Functions.MAX_D (Math.max)"),
    C("functions", "feq(1.0, 1.0000001)", True, "Functions.FEQ (eps 1e-6)", mode="boolean"),
    C("functions", "fneq(1, 1.1, 0.05)", True, "Functions.FNEQ_EPS", mode="boolean"),
    C("functions", "deg(PI)", 180.0, "Functions.DEG (Math.toDegrees)"),
    C("functions", "rad(180)", math.pi, "Functions.RAD (Math.toRadians)"),
    C("functions", "exp10(2)", 100.0, "Functions.EXP10 (FastMath.pow(10, x))"),
    C("functions", "atan2(1, 1)", math.pi / 4, "Functions.ATAN2", tol=1e-15),
    C("functions", "phase(1, 1)", math.pi / 4, "Functions.PHASE (atan2(b, a))", tol=1e-15),
    C("functions", "log10(1000)", 3.0, "Functions.LOG10 (Math.log10 is exact for powers of ten)"),
    C("functions", "sqrt(2)", math.sqrt(2), "Functions.SQRT"),
    C("functions", "sin(1)", math.sin(1), "Functions.SIN (FastMath.sin)", tol=2.3e-16),
    E("functions", "pow(1, 2, 3)", "Undefined function 'pow(int,int,int)'.",
      "ParserImpl.parseCallOrRef / NamespaceImpl.resolveFunction"),
    E("functions", "sin()", "Undefined function 'sin()'.", "ParserImpl.parseCallOrRef"),
    E("functions", "nan(1, 2)", "Undefined function 'nan(int,int)'.", "ParserImpl.parseCallOrRef"),
    E("functions", "sqr(a)", "Undefined function 'sqr(double)'.", "ParserImpl.getFunctionCallString",
      env={"a": np.array([1.0])}),

    # --- integer semantics: Term (evalI of Add/Sub/Mul/Div/Mod), Functions.*_I --------------------
    C("integer semantics", "7 / 2", 3.5, "BandMathsOp.computeTile calls evalD; Term.Div.evalD", type="int"),
    C("integer semantics", "7 / 2", 3, "Term.Div.evalI (Java int division)", mode="int"),
    C("integer semantics", "7 / 2 == 3", True, "ParserImpl.parseComparison -> Term.EqI -> Div.evalI",
      mode="boolean"),
    C("integer semantics", "min(7 / 2, 4)", 3.0, "NamespaceImpl.resolveFunction picks Functions.MIN_I", type="int"),
    C("integer semantics", "min(7 / 2, 4.0)", 3.5, "NamespaceImpl.resolveFunction picks Functions.MIN_D",
      type="double"),
    C("integer semantics", "max(true, false)", 1.0, "NamespaceImpl.resolveFunction: tie, first registered (MAX_I)",
      type="int"),
    C("integer semantics", "abs(-7 / 2)", 3.0, "Functions.ABS_I"),
    C("integer semantics", "sign(-7 / 2)", -1.0, "Functions.SIGN_I"),
    C("integer semantics", "round(7 / 2)", 4.0, "Functions.ROUND is double only: Math.round(3.5)"),
    C("integer semantics", "(7 / 2) * 2", 7.0, "Term.Mul.evalD -> Term.Div.evalD"),
    C("integer semantics", "-7 / 2 == -3", True, "Term.Div.evalI truncates toward zero", mode="boolean"),
    C("integer semantics", "-7 % 3", -1, "Term.Mod.evalI (Java %: sign of the dividend)", mode="int"),
    C("integer semantics", "7 % -3", 1, "Term.Mod.evalI", mode="int"),
    C("integer semantics", "2147483647 + 1", 2147483648.0, "Term.Add.evalD (double arithmetic)"),
    C("integer semantics", "2147483647 + 1 == -2147483647 - 1", True, "Term.Add.evalI wraps (int32)",
      mode="boolean"),
    C("integer semantics", "(-2147483647 - 1) / -1 == -2147483647 - 1", True,
      "Term.Div.evalI: Integer.MIN_VALUE / -1", mode="boolean"),
    C("integer semantics", "abs(-2147483647 - 1) < 0", True, "Functions.ABS_I: Math.abs(Integer.MIN_VALUE)",
      mode="boolean"),
    C("integer semantics", "i / j", [3.5, -3.5], "RasterDataSymbol TYPE_I; Term.Div.evalD at the top",
      env={"i": np.array([7, -7], I32), "j": np.array([2, 2], I32)}, type="int"),
    C("integer semantics", "i / j == 3", [True, False], "Term.EqI -> Div.evalI -> getElemIntAt",
      env={"i": np.array([7, -7], I32), "j": np.array([2, 2], I32)}, mode="boolean"),
    C("integer semantics", "i / j > 0 ? i / j : 0", [3.5, 0.0], "Term.GtI (evalI), Term.Cond.evalD (evalD)",
      env={"i": np.array([7, -7], I32), "j": np.array([2, 2], I32)}),
    C("integer semantics", "max(i / j, 0)", [3.0, 0.0], "Functions.MAX_I",
      env={"i": np.array([7, -7], I32), "j": np.array([2, 2], I32)}),
    C("integer semantics", "i / 0", [math.inf, -math.inf], "Term.Div.evalD: no exception in double",
      env={"i": np.array([7, -7], I32)}),
    Case("integer semantics", "i / 0 == 1", "Integer division by zero", "Term.Div.evalI: ArithmeticException",
         env={"i": np.array([7, -7], I32)}, error="eval"),
    Case("integer semantics", "i % 0 == 1", "Integer division by zero", "Term.Mod.evalI: ArithmeticException",
         env={"i": np.array([7, -7], I32)}, error="eval"),
    C("integer semantics", "bit_set(2.7, 0)", False, "Term.ConstD.evalI: (int) 2.7 = 2", mode="boolean"),
    C("integer semantics", "bit_set(f, 0)", [True, False, False], "ProductData.Float.getElemIntAt: Math.round",
      env={"f": np.array([2.5, -2.5, np.nan], np.float32)}, mode="boolean"),
    C("integer semantics", "bit_set(g, 0)", [True, False], "ProductData.Double.getElemIntAt: (int) Math.round",
      env={"g": np.array([2.5, 3e9])}, mode="boolean"),
    C("integer semantics", "bit_set(u, 31)", [True, False], "ProductData.UInt.getElemIntAt: the raw int",
      env={"u": np.array([2**31, 1], np.uint32)}, mode="boolean"),
    C("integer semantics", "u + 0.5", [2147483648.5, 1.5], "ProductData.UInt.getElemDoubleAt: unsigned",
      env={"u": np.array([2**31, 1], np.uint32)}),
    C("integer semantics", "~5", -6, "Term.NotI", mode="int"),

    # --- NaN ------------------------------------------------------------------------------------------
    C("NaN", "inf(x) || nan(x)", [False, True, True, False, True, True], "ParserImplTest.testNaNAndInf",
      env={"x": np.array([0.0, -np.inf, float(np.float32(-np.inf)), 0.0, np.nan, float(np.float32(np.nan))])},
      mode="boolean"),
    C("NaN", "nan(a)", [False, True], "Functions.NAN", env={"a": np.array([1.0, np.nan])}, mode="boolean"),
    C("NaN", "a != a", [False, True], "Term.NEqD (Java's != on doubles)", env={"a": np.array([1.0, np.nan])},
      mode="boolean"),
    C("NaN", "a == a", [True, False], "Term.EqD", env={"a": np.array([1.0, np.nan])}, mode="boolean"),
    C("NaN", "!(a > 0)", [False, True], "Term.NotB of Term.GtD", env={"a": np.array([1.0, np.nan])},
      mode="boolean"),
    C("NaN", "nan(a) ? 0 : a", [1.0, 0.0], "Term.Cond: NaN pixels can be filled",
      env={"a": np.array([1.0, np.nan])}),
    C("NaN", "inrange(a, 0, 2)", [True, True], "DefaultNamespace inrange: v < v1 || v > v2 is false for NaN",
      env={"a": np.array([1.0, np.nan])}, mode="boolean"),
    C("NaN", "a > 0 ? 1 : 0", [1.0, 0.0], "Term.GtD: NaN > 0 is false (a value, not no-data)",
      env={"a": np.array([1.0, np.nan])}),
    C("NaN", "a + 1", [2.0, math.nan], "Term.Add.evalD", env={"a": np.array([1.0, np.nan])}),
    C("NaN", "max(a, 0)", [1.0, math.nan], "Functions.MAX_D (Math.max: NaN wins)", env={"a": np.array([1.0, np.nan])}),
    C("NaN", "round(NaN)", 0.0, "Functions.ROUND: Math.round(NaN) == 0"),
    C("NaN", "feq(NaN, NaN)", False, "ExtMath.feq", mode="boolean"),
    C("NaN", "bit_set(NaN, 0)", False, "Term.ConstD.evalI: (int) NaN == 0", mode="boolean"),
    C("NaN", "pow(1, NaN)", math.nan, "Functions.POW (FastMath.pow(1, NaN) is NaN, C's pow gives 1)"),
    C("NaN", "NaN ? 1 : 0", 1.0, "Term.toB(double): NaN != 0.0 (BandArithmetic, no type checks)", checked=False),

    # --- types: ParserImpl's type checks (gpt's BandMaths parses with typeChecking = true) ---------
    E("types", "(a > 0) * 2", "Numeric operands expected for binary '*' operator.", "ParserImpl.parseMul",
      env={"a": np.array([1.0])}),
    E("types", "true + 1", "Numeric operands expected for binary '+' operator.", "ParserImpl.parseAdd"),
    E("types", "i && j", "Boolean operands expected for binary '&&' or 'and' operator.", "ParserImpl.parseLogicalAnd",
      env={"i": np.array([1], I32), "j": np.array([1], I32)}),
    E("types", "a or true", "Boolean operands expected for binary '||' or 'or' operator.", "ParserImpl.parseLogicalOr",
      env={"a": np.array([1.0])}),
    E("types", "a ? 1 : 0", "Boolean operand expected before '?' in conditional term.", "ParserImpl.parseConditional",
      env={"a": np.array([1.0])}),
    E("types", "if a then 1 else 0", "Boolean operand expected after 'if' in conditional term.",
      "ParserImpl.parseConditional", env={"a": np.array([1.0])}),
    E("types", "a > 0 ? 1 : true", "Boolean or numeric operands expected in conditional term.",
      "ParserImpl.createConditionTerm", env={"a": np.array([1.0])}),
    E("types", "a & 1", "Integer operands expected for binary '&' operator.", "ParserImpl.parseBitwiseAnd",
      env={"a": np.array([1.0])}),
    E("types", "1.5 | 2", "Integer operands expected for binary '|' operator.", "ParserImpl.parseBitwiseOr"),
    E("types", "1 ^ 2.0", "Integer operands expected for binary '^' operator.", "ParserImpl.parseBitwiseXOr"),
    E("types", "~1.5", "Integer operand expected for unary '~' operator.", "ParserImpl.parseUnary"),
    E("types", "!a", "Boolean operand expected for unary '!' or 'not' operator.", "ParserImpl.parseUnary",
      env={"a": np.array([1.0])}),
    E("types", "not 1", "Boolean operand expected for unary '!' or 'not' operator.", "ParserImpl.parseUnary"),
    E("types", "-true", "Numeric operand expected for unary '-' operator.", "ParserImpl.parseUnary"),
    E("types", "+false", "Numeric operand expected for unary '+' operator.", "ParserImpl.parseUnary"),
    E("types", "(a > 0) == 1.0", "Numeric operands expected for binary '==' operator.", "ParserImpl.parseComparison",
      env={"a": np.array([1.0])}),
    E("types", "(a > 0) < 1", "Numeric operands expected for binary '<' operator.", "ParserImpl.parseComparison",
      env={"a": np.array([1.0])}),
    C("types", "(a > 0) == 1", [True, False], "ParserImpl.parseComparison: boolean == int is Term.EqI",
      env={"a": np.array([1.0, -1.0])}, mode="boolean"),
    C("types", "i == true", [True, False], "ParserImpl.parseComparison: Term.EqI", env={"i": np.array([1, 2], I32)},
      mode="boolean"),
    C("types", "sin(a > 0)", [math.sin(1.0), 0.0], "NamespaceImpl.resolveFunction checks no argument types",
      env={"a": np.array([1.0, -1.0])}, tol=2.3e-16),
    C("types", "m ? 1 : 0", [1.0, 0.0], "RasterDataSymbol of a Mask is TYPE_B", env={"m": np.array([True, False])}),
    C("types", "i", [1.0, 2.0], "RasterDataSymbol: integer data is TYPE_I", env={"i": np.array([1, 2], np.uint8)},
      type="int"),
    C("types", "(a > 0) * 2", [2.0, 0.0], "BandArithmetic.parseExpression: no type checks, Term.toD(boolean)",
      env={"a": np.array([1.0, -1.0])}, checked=False),
    C("types", "true + 1", 2.0, "Term.Add(numType) without type checks", checked=False),
    C("types", "a & 3", [3.0, 2.0], "Term.AndI without type checks: evalI of double data rounds",
      env={"a": np.array([6.6, 2.2])}, checked=False),
    C("types", "7.9 & 3", 3.0, "Term.AndI without type checks: evalI of a double constant truncates",
      checked=False),

    # --- names: standalone namespace rules --------------------------------------------------------------
    C("names", "'250m_16_days_EVI'", [0.5], "ParserImplTest.testSymbolStartingWithNumber; TokenizerTest",
      env={"250m_16_days_EVI": np.array([0.5])}),
    C("names", "PI", [7.0], "NamespaceImpl: product symbols before DefaultNamespace's PI",
      env={"PI": np.array([7.0])}),
    E("names", "nan", "Undefined symbol 'nan'.", "Symbols.getAll has only PI and E; 'NaN' is a token"),
    E("names", "B99 + 1", "Undefined symbol 'B99'.", "ParserImpl.parseCallOrRef"),

    # --- syntax: ParserImpl's messages --------------------------------------------------------------
    E("syntax", "B4 + * B8", "Term expected.", "ParserImpl.parsePrimary", env={"B4": np.array([1.0]),
                                                                             "B8": np.array([1.0])}),
    E("syntax", "B4 +", "Term expected.", "ParserImpl.parsePrimary", env={"B4": np.array([1.0])}),
    E("syntax", "(B4 + 1", "Missing ')'.", "ParserImpl.parsePrimary", env={"B4": np.array([1.0])}),
    E("syntax", "B4 B4", "Incomplete expression.", "ParserImpl.parseImpl", env={"B4": np.array([1.0])}),
    E("syntax", "B4 = 1", "Variable expected on the left side of assignment '='.", "ParserImpl.parseAssign",
      env={"B4": np.array([1.0])}),
    E("syntax", "true ? 1", "Missing ':' part of conditional '?:' term.", "ParserImpl.parseConditional"),
    E("syntax", "if true then 1", "Missing 'else' in a conditional 'if' term.", "ParserImpl.parseConditional"),
    E("syntax", "if true 1 else 2", "Missing 'then' in a conditional 'if' term.", "ParserImpl.parseConditional"),
    E("syntax", "sqrt(2", "Missing ')' or ','.", "ParserImpl.parseArgumentList"),
    E("syntax", "then", "Unexpected keyword 'then'.", "ParserImpl.parsePrimary"),
    E("syntax", "1 << 2", "Incomplete expression.", "Tokenizer.specialTokens: '<<' has no parser rule"),
    E("syntax", "1 # 2", "Incomplete expression.", "Tokenizer: '#' is TT_UNKNOWN"),
    E("syntax", "", "Empty expression.", "BandMathsOpTest.testEmptyExpressionGraph"),
]


def _types(env):
    return {k: np.asarray(v).dtype for k, v in env.items()}


def _check_value(got, case: Case):
    expected = np.asarray(case.expected)
    want = {"double": np.float64, "int": np.int32, "boolean": np.bool_}[case.mode]
    assert got.dtype == want
    assert got.shape == expected.shape
    if case.tol:
        np.testing.assert_allclose(got, expected, rtol=case.tol, atol=0)
    else:
        np.testing.assert_array_equal(got, expected)
    if case.mode == "double":  # the sign of zero matters too (1 / -0.0 is -inf)
        zeros = np.asarray(expected == 0)
        np.testing.assert_array_equal(np.signbit(got)[zeros], np.signbit(expected)[zeros])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_snap_expression_case(case: Case):
    env = {k: np.asarray(v) for k, v in case.env.items()}
    if case.error == "parse":
        with pytest.raises(ExpressionError) as info:
            parse(case.text, _types(env), type_checking=case.checked)
        assert case.expected in str(info.value)
        assert "\n" not in str(info.value)
        return
    expr = parse(case.text, _types(env), type_checking=case.checked)
    if case.type is not None:
        assert expr.type == case.type
    if case.error == "eval":
        with pytest.raises(ExpressionError, match=case.expected):
            expr.evaluate(env, mode=case.mode)
        return
    _check_value(expr.evaluate(env, mode=case.mode), case)


# --- the operator ------------------------------------------------------------------------------------

#: Operator-level cases: test function name -> (category, source).
OPERATOR_CASES: dict[str, tuple[str, str]] = {}


def snap_case(category: str, source: str):
    """Register an operator-level test as a conformance case of `category`."""
    assert category in CATEGORIES

    def register(fn):
        OPERATOR_CASES[fn.__name__] = (category, source)
        return fn

    return register


def snap_test_product(w=4, h=4, pixel=0.1, name="p"):
    """``BandMathsOpTest.createTestProduct``: band1 int32 = 1, band2 float32 = 2.5, band3 = int16 6, scaled 0.5.

    band3 is as a reader gives a scaled band: physical float32 3.0, stored
    int16 6 with scaling factor 0.5. WGS84, pixel centre (0.5, 0.5) at (0, 0).
    """
    t = Affine(pixel, 0, -pixel / 2, 0, -pixel, pixel / 2)

    def band(bname, values, **kw):
        return Band(bname, da.from_array(values, chunks=(2, 2)), t, None if values.dtype.kind in "iu" else np.nan, **kw)

    stored = StoredValues(da.from_array(np.full((h, w), 6, np.int16), chunks=(2, 2)), np.dtype(np.int16), scale=0.5)
    bands = {
        "band1": band("band1", np.full((h, w), 1, np.int32)),
        "band2": band("band2", np.full((h, w), 2.5, np.float32)),
        "band3": band("band3", np.full((h, w), 3.0, np.float32), stored=stored),
    }
    return Product(name, "t", bands=bands, crs=CRS.from_epsg(4326),
                   start_time=dt.datetime(2011, 4, 1, 11, 22, 33), stop_time=dt.datetime(2011, 4, 2, 11, 22, 33))


def run(sources, targets, variables=()):
    """Target product of BandMaths; targets: (name, type, expression[, extra elements])."""
    if isinstance(sources, Product):
        sources = {"sourceProduct": sources}
    tbs = []
    for t in targets:
        items = [("name", t[0]), ("type", t[1]), ("expression", t[2]), ("description", "aDescription")]
        if len(t) > 3:
            items += list(t[3].items())
        tbs.append(("targetBand", items))
    raw = {"targetBands": tbs,
           "variables": [("variable", [("name", n), ("type", ty), ("value", v)]) for n, ty, v in variables] or None}
    return BandMathsOp.create(sources, raw).initialize()


def values(product, band):
    return product.band(band).data.compute()


@snap_case("storage", "BandMathsOpTest.testSimplestCase")
def test_simplest_case():
    src = snap_test_product()
    out = run(src, [("aBandName", "float32", "1.0", {"unit": "bigUnits"})])
    b = out.band("aBandName")
    assert b.dtype == np.float32 and b.unit == "bigUnits" and b.description == "aDescription"
    np.testing.assert_array_equal(values(out, "aBandName"), np.ones((4, 4), np.float32))
    assert (out.start_time, out.stop_time) == (src.start_time, src.stop_time)


@snap_case("storage", "BandMathsOpTest.testGeoCodingIsCopiedWithRasterInExpresssion")
def test_geocoding_is_copied_with_raster_in_expression():
    src = snap_test_product()
    out = run(src, [("aBandName", "uint8", "band1 * 2.0")])
    assert out.crs == src.crs and out.band("aBandName").transform == src.band("band1").transform
    np.testing.assert_array_equal(values(out, "aBandName"), np.full((4, 4), 2, np.uint8))


@snap_case("storage", "BandMathsOpTest.testSimplestCaseWithFactoryMethod")
def test_boolean_expression_into_int8():
    out = run(snap_test_product(), [("band1", "int8", "band1 > 0")])
    np.testing.assert_array_equal(values(out, "band1"), np.ones((4, 4), np.int8))


@snap_case("storage", "BandMathsOpTest.testTwoSourceBandsOneTargetBand")
def test_two_source_bands_one_target_band():
    out = run(snap_test_product(), [("aBandName", "float32", "band1 + band2")])
    np.testing.assert_array_equal(values(out, "aBandName"), np.full((4, 4), 3.5, np.float32))


@snap_case("storage", "BandMathsOpTest.testTwoSourceBandsTwoTargetBands")
def test_two_source_bands_two_target_bands():
    out = run(snap_test_product(), [("b1", "int8", "band1 + band2 < 3.0", {"unit": "milliUnit"}),
                                    ("b2", "int32", "band1 + band2 + 2.5", {"unit": "maxiUnit"})])
    assert out.band("b1").unit == "milliUnit" and out.band("b2").unit == "maxiUnit"
    np.testing.assert_array_equal(values(out, "b1"), np.zeros((4, 4), np.int8))
    np.testing.assert_array_equal(values(out, "b2"), np.full((4, 4), 6, np.int32))


@snap_case("NaN", "BandMathsOpTest.testDivisionByZero")
def test_division_by_zero_is_no_data():
    out = run(snap_test_product(), [("aBandName", "float32", "band1/0.0")])
    assert np.isnan(values(out, "aBandName")).all()


@snap_case("names", "BandMathsOpTest.testScaledInputBand")
def test_scaled_input_band():
    out = run(snap_test_product(), [("aBandName", "float32", "band3"), ("bBandName", "int32", "band3.raw & 64")])
    np.testing.assert_array_equal(values(out, "aBandName"), np.full((4, 4), 3.0, np.float32))
    np.testing.assert_array_equal(values(out, "bBandName"), np.zeros((4, 4), np.int32))


@snap_case("types", "RasterDataSymbol.computeSymbolType: a scaled band is double, its '.raw' int")
def test_raw_of_a_scaled_band_is_int_and_the_band_double():
    with pytest.raises(ExpressionError, match=r"Integer operands expected for binary '&' operator.*\(column 7\)"):
        run(snap_test_product(), [("b", "int32", "band3 & 64")])
    # BandMathsOp.fillSymbolWithData fills '.raw' of a scaled band with the scaled floats: 3.0, not 6
    out = run(snap_test_product(), [("r", "int32", "band3.raw == 3"), ("d", "float32", "band3.raw")])
    np.testing.assert_array_equal(values(out, "r"), np.ones((4, 4), np.int32))
    np.testing.assert_array_equal(values(out, "d"), np.full((4, 4), 3.0, np.float32))


@snap_case("names", "RasterDataSymbolTest.testConstructor (raw of an int band is TYPE_I)")
def test_raw_of_an_int_band_is_int():
    out = run(snap_test_product(), [("r", "int32", "band1.raw & 1"), ("s", "float32", "band2.raw")])
    np.testing.assert_array_equal(values(out, "r"), np.ones((4, 4), np.int32))
    np.testing.assert_array_equal(values(out, "s"), np.full((4, 4), 2.5, np.float32))


@snap_case("names", "ProductNamespaceExtenderImplTest.testPixelXYSymbols")
def test_pixel_x_y_symbols():
    src = snap_test_product(10, 10)
    out = run(src, [("x", "float64", "X"), ("y", "float64", "Y")])
    x, y = values(out, "x"), values(out, "y")
    for (px, py), (ex, ey) in {(0, 0): (0.5, 0.5), (0, 9): (0.5, 9.5), (9, 0): (9.5, 0.5), (9, 9): (9.5, 9.5)}.items():
        assert (x[py, px], y[py, px]) == (ex, ey)


@snap_case("names", "ProductNamespaceExtenderImplTest.testPixelLatLonSymbols")
def test_pixel_lat_lon_symbols():
    out = run(snap_test_product(10, 10), [("lat", "float64", "LAT"), ("lon", "float64", "LON")])
    lat, lon = values(out, "lat"), values(out, "lon")
    for (px, py), (elat, elon) in {(0, 0): (0.0, 0.0), (0, 9): (-0.9, 0.0), (9, 0): (0.0, 0.9),
                                   (9, 9): (-0.9, 0.9)}.items():
        assert lat[py, px] == pytest.approx(elat, abs=1e-6) and lon[py, px] == pytest.approx(elon, abs=1e-6)


@snap_case("names", "BandMathsOp.createNamespace: variables are registered after the bands")
def test_variables_hide_bands_and_int_variables_are_doubles():
    out = run(snap_test_product(), [("r", "float32", "band1 + N / 2")],
              variables=[("band1", "float64", "10"), ("N", "int32", "3")])
    # Long.parseLong -> SymbolFactory.createConstant(String, double): N is a double, 3 / 2 = 1.5
    np.testing.assert_array_equal(values(out, "r"), np.full((4, 4), 11.5, np.float32))
    with pytest.raises(ExpressionError, match=r"Integer operands expected for binary '&' operator"):
        run(snap_test_product(), [("r", "int32", "N & 1")], variables=[("N", "int32", "3")])


@snap_case("names", "BandMathsOp.createNamespace: Boolean.parseBoolean, Long.parseLong")
def test_variable_value_parsing():
    out = run(snap_test_product(), [("r", "float32", "B ? 1 : 0")], variables=[("B", "boolean", "TRUE")])
    np.testing.assert_array_equal(values(out, "r"), np.ones((4, 4), np.float32))
    out = run(snap_test_product(), [("r", "float32", "B ? 1 : 0")], variables=[("B", "boolean", "yes")])
    np.testing.assert_array_equal(values(out, "r"), np.zeros((4, 4), np.float32))
    with pytest.raises(ParameterError, match=r"cannot read '1.5' as int32 \(Long.parseLong\)"):
        run(snap_test_product(), [("r", "float32", "N")], variables=[("N", "int32", "1.5")])


@snap_case("names", "ProductNamespaceExtenderImpl.registerPixelSymbols: TIME/MJD (not supported here)")
def test_time_symbols_are_refused_clearly():
    with pytest.raises(ExpressionError, match=r"'TIME' \(pixel time, MJD\) is not supported by this engine"):
        run(snap_test_product(), [("t", "float64", "TIME")])


@snap_case("multi-source", "BandMathsOpTest.testTwoSourceProductsOneTargetBand")
def test_two_source_products_one_target_band():
    # GPF.createProduct(..., p1, p2) names the sources sourceProduct.1 and sourceProduct.2
    sources = {"sourceProduct.1": snap_test_product(), "sourceProduct.2": snap_test_product()}
    out = run(sources, [("aBandName", "float32", "$sourceProduct.1.band1 + $sourceProduct.2.band2")])
    np.testing.assert_array_equal(values(out, "aBandName"), np.full((4, 4), 3.5, np.float32))


@snap_case("multi-source", "BandMathsOpTest.testReferencingTwoProducts")
def test_referencing_two_products():
    sources = {"sourceProduct.1": snap_test_product(), "sourceProduct.2": snap_test_product()}
    out = run(sources, [("aBandName1WithDot", "float32", "$sourceProduct.1.band1 + $sourceProduct.1.band2"),
                        ("aBandName2WithDot", "float32", "$sourceProduct.1.band1 + $sourceProduct.2.band3")])
    assert values(out, "aBandName1WithDot")[0, 0] == 3.5
    assert values(out, "aBandName2WithDot")[0, 0] == 4.0


@snap_case("multi-source", "BandMathsOpTest.testTwoSourceProductsWithNames")
def test_two_source_products_with_names():
    sources = {"numberOne": snap_test_product(), "numberTwo": snap_test_product()}
    out = run(sources, [("aBandName", "float32", "$numberOne.band1 + $numberTwo.band2")])
    np.testing.assert_array_equal(values(out, "aBandName"), np.full((4, 4), 3.5, np.float32))


@snap_case("multi-source", "BandArithmeticTest.testCreateDefaultNamespaceWithMultipleProducts / GetRefRasterDataSymbols")
def test_ref_numbers_name_every_source():
    p1, p2 = snap_test_product(name="p1"), snap_test_product(name="p2")
    p2.bands = {"band1": p2.bands["band1"].replace(data=p2.bands["band1"].data * 5)}
    sources = {"sourceProduct": p1, "sourceProduct.1": p2}
    out = run(sources, [("a", "float32", "band1 + $2.band1"), ("b", "float32", "$1.band2 + $1.X + $2.Y")])
    np.testing.assert_array_equal(values(out, "a"), np.full((4, 4), 6.0, np.float32))
    assert values(out, "b")[1, 2] == 2.5 + 2.5 + 1.5
    with pytest.raises(ExpressionError, match=r"Undefined symbol '\$2\.band2'\."):  # band2 is only in $1
        run(sources, [("c", "float32", "$2.band2")])


@snap_case("multi-source", "BandArithmeticTest.testCreateDefaultNamespaceWithOneProduct")
def test_no_prefixes_with_one_source():
    for text in ["$1.band1", "$1.X", "$sourceProduct.band1"]:
        with pytest.raises(ExpressionError, match=re.escape(f"Undefined symbol '{text}'.")):
            run(snap_test_product(), [("c", "float32", text)])


@snap_case("multi-source", "BandArithmeticTest.testAreRastersEqualInSize_multipleProducts")
def test_unknown_ref_number_is_undefined():
    with pytest.raises(ExpressionError, match=r"Undefined symbol '\$2\.b1'\."):
        run({"sourceProduct": snap_test_product()}, [("c", "float32", "band2 + $2.b1")])


@snap_case("multi-source", "BandArithmetic.createDefaultNamespace: plain names are products[0]'s only")
def test_plain_name_of_the_second_source_is_undefined():
    p2 = snap_test_product(name="p2")
    p2.bands["VV"] = p2.bands["band2"].replace(name="VV")
    with pytest.raises(ExpressionError, match=r"Undefined symbol 'VV'\. It is a band of source 'sourceProduct\.1'"):
        run({"sourceProduct": snap_test_product(), "sourceProduct.1": p2}, [("c", "float32", "band1 + VV")])


@snap_case("multi-source", "BandMathsOpTest.testOneExpressionWithMultiSize")
def test_one_expression_with_multi_size_fails():
    src = snap_test_product()
    src.bands["band4"] = Band("band4", da.full((10, 10), 12, dtype=np.int16, chunks=5), src.bands["band1"].transform)
    with pytest.raises(OperatorError, match="All source rasters must have the same size of 4 x 4 pixels"):
        run(src, [("aBandName", "uint8", "band1 * band4")])


def _stored(type_name, data, no_data=None):
    src = Product("p", "t", bands={"v": Band("v", da.from_array(np.asarray(data, np.float64).reshape(1, -1)))})
    extra = {} if no_data is None else {"noDataValue": no_data}
    out = run(src, [("t", type_name, "v", extra)])
    return out.band("t"), values(out, "t")[0]


@snap_case("storage", "TileImpl.setSample(double) -> DataBuffer.setElemDouble: (int), then (byte)")
def test_uint8_truncates_then_wraps():
    band, got = _stored("uint8", [0.4, 1.9, -1.9, 300.7, -5.0, np.nan, 65.5, 1e12])
    assert band.no_data is None  # no noDataValue: SNAP's band has none
    np.testing.assert_array_equal(got, [0, 1, 255, 44, 251, 0, 65, 255])


@snap_case("storage", "DataBufferByte (int8 is TYPE_BYTE, read signed)")
def test_int8_wraps():
    np.testing.assert_array_equal(_stored("int8", [200.0, -129.0, 127.9])[1], [-56, 127, 127])


@snap_case("storage", "DataBufferShort / DataBufferUShort: (short) of (int)")
def test_int16_and_uint16_wrap():
    np.testing.assert_array_equal(_stored("int16", [40000.0, -32769.0])[1], [-25536, 32767])
    np.testing.assert_array_equal(_stored("uint16", [70000.0, -1.0])[1], [4464, 65535])


@snap_case("storage", "ImageManager: uint32 is DataBuffer.TYPE_INT, (int) saturates at 2**31 - 1")
def test_uint32_is_stored_in_an_int():
    np.testing.assert_array_equal(_stored("uint32", [-1.0, 3e9, 7.9])[1], [2**32 - 1, 2**31 - 1, 7])


@snap_case("storage", "BandMathsOp.computeTile: NaN/Inf -> (float) noDataValue, else NaN ((int) NaN == 0)")
def test_no_data_fill_is_the_float_no_data_value():
    band, got = _stored("int32", [np.nan, np.inf, 5.0])
    assert band.no_data is None
    np.testing.assert_array_equal(got, [0, 0, 5])
    band, got = _stored("uint8", [np.nan, -np.inf, 5.0], no_data="255")
    assert band.no_data == 255
    np.testing.assert_array_equal(got, [255, 255, 5])
    band, got = _stored("float32", [np.nan, 1.0], no_data="NaN")
    assert math.isnan(band.no_data) and np.isnan(got[0]) and got[1] == 1.0
    band, got = _stored("float64", [np.nan, 1.0], no_data="0.1")
    # fv = (float) noDataValue: the pixel holds float32(0.1), the band property the double 0.1
    assert band.no_data == 0.1 and got[0] == float(np.float32(0.1)) and got[1] == 1.0


@snap_case("storage", "BandMathsOp.computeTile: only NaN/Inf results are no-data ((float) 1e39 is inf)")
def test_float32_overflow_is_infinity_not_no_data():
    band, got = _stored("float32", [1e39, np.nan], no_data="-1")
    assert np.isposinf(got[0]) and got[1] == -1


@snap_case("NaN", "BandMathsOp.computeTile: source no-data values are ordinary values")
def test_source_no_data_is_not_masked():
    t = Affine(10, 0, 0, 0, -10, 0)
    data = np.array([[0, 7, 100]], np.uint16)
    src = Product("p", "t", bands={"B": Band("B", da.from_array(data), t, 0)}, crs=CRS.from_epsg(32633))
    out = run(src, [("r", "float32", "B + 1"), ("z", "int8", "B == 0")])
    np.testing.assert_array_equal(values(out, "r")[0], [1, 8, 101])
    np.testing.assert_array_equal(values(out, "z")[0], [1, 0, 0])


@snap_case("NaN", "BandMathsOp.computeTile + Term.Cond: NaN source pixels are computed, not blanked")
def test_nan_source_pixels_are_computed():
    t = Affine(10, 0, 0, 0, -10, 0)
    data = np.array([[np.nan, 2.0]], np.float32)
    src = Product("p", "t", bands={"A": Band("A", da.from_array(data), t, np.nan)}, crs=CRS.from_epsg(32633))
    out = run(src, [("fill", "float32", "nan(A) ? -5 : A"), ("cmp", "uint8", "A > 1"), ("sum", "float32", "A + 1")])
    np.testing.assert_array_equal(values(out, "fill")[0], [-5, 2])
    np.testing.assert_array_equal(values(out, "cmp")[0], [0, 1])
    sums = values(out, "sum")[0]
    assert np.isnan(sums[0]) and sums[1] == 3


@snap_case("integer semantics", "Term.Div.evalI: ArithmeticException fails gpt's tile computation")
def test_integer_division_by_zero_fails_at_compute_time():
    src = snap_test_product()
    out = run(src, [("r", "int32", "band1 / (band1 - 1) == 0 ? 1 : 0")])  # parses: the error is a pixel's
    with pytest.raises(ExpressionError, match=r"Integer division by zero .* at pixel x=[0-3], y=[0-3]: gpt fails"):
        values(out, "r")
    out = run(src, [("r", "float32", "band1 / (band1 - 1)")])  # evalD: a double division, inf -> NaN
    assert np.isnan(values(out, "r")).all()


@snap_case("types", "BandMathsOp.initialize: createTerm(expression, true)")
def test_operator_checks_types_like_gpt():
    for text, message in [("(band1 > 0) * 2", "Numeric operands expected for binary '*' operator."),
                          ("band1 && band1", "Boolean operands expected for binary '&&' or 'and' operator."),
                          ("band2 ? 1 : 0", "Boolean operand expected before '?' in conditional term."),
                          ("band2 | 1", "Integer operands expected for binary '|' operator.")]:
        with pytest.raises(ExpressionError, match=re.escape(message)):
            run(snap_test_product(), [("r", "float32", text)])
    out = run(snap_test_product(), [("r", "int32", "band1 | 6")])  # int band: bit operators are fine
    np.testing.assert_array_equal(values(out, "r"), np.full((4, 4), 7, np.int32))


@snap_case("syntax", "BandMathsOpTest.testEmptyExpressionGraph")
def test_empty_expression():
    with pytest.raises(ExpressionError) as info:
        run(snap_test_product(), [("emptyBand", "float32", "", {"noDataValue": "0.0"})])
    assert str(info.value).endswith("Could not parse expression: 'null'. Empty expression.")



# --- stored values: what fillSymbolWithData reads (scaled, never masked) ------------------------------

FLOATS = np.array([[-999.0, 1.5, 2.0], [3.0, -999.0, np.nan]], np.float32)


@pytest.fixture
def float_tif(write_tif):
    """``float_tif(path, data=FLOATS, nodata=-999.0, transform=...)``: a GeoTIFF of one band 'b' holding `data`."""

    def write(path, data=FLOATS, nodata=-999.0, transform=Affine(10, 0, 500000, 0, -10, 4000000)):
        return write_tif(path, {"b": data}, crs="EPSG:32633", transform=transform, nodata=nodata)

    return write


@pytest.fixture
def float_dimap(make_dimap):
    """``float_dimap(folder)``: a BEAM-DIMAP of one float32 band 'b' holding FLOATS, no-data -999."""

    def make(folder):
        return make_dimap(folder, FLOATS, dtype="float32", envi_type=4, factor=1.0, offset=0.0, nodata="-999.0")

    return make


# --- readers --------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["geotiff", "dimap"])
@snap_case("NaN", "BandMathsOp.fillSymbolWithData: raw samples, no-data not masked")
def test_float_no_data_pixels_read_as_stored(float_tif, float_dimap, tmp_path, reader):
    path = float_tif(tmp_path / "f.tif") if reader == "geotiff" else float_dimap(tmp_path)
    p = read_product(path)
    # the engine's physical view masks them (the science operators' convention) ...
    assert np.isnan(values(p, "b")[0, 0])
    # ... gpt's band maths computes with -999 itself, and a NaN sample stays NaN
    out = run(p, [("eq", "int8", "b == -999"), ("plus", "float32", "b + 1"), ("nan", "int8", "nan(b)")])
    np.testing.assert_array_equal(values(out, "eq"), [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(values(out, "plus"), [[-998, 2.5, 3], [4, -998, np.nan]])
    np.testing.assert_array_equal(values(out, "nan"), [[0, 0, 0], [0, 0, 1]])


@snap_case("NaN", "BandMathsOp.fillSymbolWithData: getSampleFloat of a scaled band, for B and B.raw")
def test_scaled_band_reads_scaled_no_data_and_raw_is_the_scaled_float_typed_int(make_dimap, tmp_path):
    # int16 counts, scale 0.25, offset 1, no-data 0 (used)
    raw = np.array([[0, 2, 4], [-6, 300, 1]], np.int16)
    p = read_dimap(make_dimap(tmp_path, raw, factor=0.25, offset=1.0))
    b = p.band("b")
    assert b.stored.dtype == np.int16 and b.stored.no_data == 0 and np.isnan(values(p, "b")[0, 0])
    physical = raw * 0.25 + 1.0  # 1.0 at the no-data pixel: getSampleFloat scales every sample
    out = run(p, [("v", "float32", "b"), ("raw", "float32", "b.raw"), ("two", "int8", "b.raw == 2"),
              ("zero", "int8", "b.raw == 0"), ("bits", "int32", "b.raw & 3")])
    np.testing.assert_array_equal(values(out, "v"), physical.astype(np.float32))
    # fillSymbolWithData fills 'b.raw' of a scaled band with the scaled floats too; evalD reads them ...
    np.testing.assert_array_equal(values(out, "raw"), physical.astype(np.float32))
    # ... and evalI (an int comparison, a bit operator) rounds them: ProductData.Float.getElemIntAt is
    # Math.round, ties up, so 1.5 -> 2 and -0.5 -> 0
    np.testing.assert_array_equal(values(out, "two"), [[0, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(values(out, "zero"), [[0, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(values(out, "bits"), np.array([[1, 2, 2], [0, 76, 1]]) & 3)
    with pytest.raises(ExpressionError, match=r"Integer operands expected for binary '&' operator"):
        run(p, [("bits", "int32", "b & 3")])  # b itself is double: it is scaled


@snap_case("types", "RasterDataSymbol.computeSymbolType (RAW of an unscaled int band), Term.Div.evalD")
def test_unscaled_integer_band_raw_is_the_stored_counts(make_dimap, tmp_path):
    raw = np.array([[1, 2], [3, 9]], np.uint16)
    p = read_dimap(make_dimap(tmp_path, raw, dtype="uint16", envi_type=12, factor=1.0, offset=0.0, nodata="9.0"))
    out = run(p, [("r", "int32", "b.raw * 2 + b"), ("h", "float32", "b / 2")])
    np.testing.assert_array_equal(values(out, "r"), raw * 3)
    # Div.evalD divides in double: 1 / 2 is 0.5 at the top, as in gpt (7 / 2 == 3 only inside int terms)
    np.testing.assert_array_equal(values(out, "h"), raw / 2)


def test_geophysical_values_round_once_as_snap():
    counts = np.array([0, 1, 1234, 65535], np.uint16)
    got = geophysical_values(counts, 1e-4, -0.1, False)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (counts.astype(np.float64) * 1e-4 - 0.1).astype(np.float32))
    np.testing.assert_allclose(geophysical_values(np.array([1, 2], np.uint8), 1.0, 0.0, True), [10, 100])


@snap_case("NaN", "BandMathsOp.fillSymbolWithData: a scaled band's no-data value is scaled, not masked")
def test_sentinel2_counts_read_scaled_where_the_scene_has_no_data(tmp_path):
    # a Sentinel-2 band as SNAP's reader gives it: uint16 counts, 1/10000, offset -0.1 (baseline 04.00), no-data 0
    counts = np.array([[0, 1000], [2345, 0]], np.uint16)
    stored = StoredValues(da.from_array(counts), np.dtype(np.uint16), 1e-4, -0.1, no_data=0)
    phys = np.where(counts == 0, np.nan, counts * 1e-4 - 0.1).astype(np.float32)
    p = Product("S2", bands={"B4": Band("B4", da.from_array(phys), Affine.identity(), np.nan, stored=stored)})
    out = run(p, [("v", "float32", "B4"), ("valid", "int8", "B4 > -0.1")])
    np.testing.assert_allclose(values(out, "v"), [[-0.1, 0.0], [0.1345, -0.1]], rtol=1e-6)
    np.testing.assert_array_equal(values(out, "valid"), [[0, 1], [1, 0]])


# --- operators that only pick pixels keep the stored view ---------------------------------


GRAPH = """<graph id="g"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>{src}</file>{read}</parameters></node>
  {middle}
  <node id="BandMaths"><operator>BandMaths</operator><sources><sourceProduct refid="{last}"/></sources>
    <parameters><targetBands><targetBand><name>eq</name><type>int8</type><expression>b == -999</expression>
    </targetBand></targetBands></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="BandMaths"/></sources>
    <parameters><file>{out}</file></parameters></node>
</graph>"""


@pytest.fixture
def run_eq(float_tif):
    """``run_eq(folder, read="", middle="", last="Read", src=None)``: band 'eq' (b == -999) of the graph above,
    reading `src` (default: a float_tif in `folder`)."""

    def run(folder, read="", middle="", last="Read", src=None):
        src = src or float_tif(folder / "f.tif")
        text = GRAPH.format(src=src, read=read, middle=middle, last=last, out=folder / "o.dim")
        ops = build(parse_graph("g.xml", text=text), ExecutionContext(tile_size=2))
        return values(ops["BandMaths"].target, "eq")

    return run


def test_read_pixel_region_keeps_stored_values(run_eq, tmp_path):
    got = run_eq(tmp_path, read="<pixelRegion>1,0,2,2</pixelRegion><useAdvancedOptions>true</useAdvancedOptions>")
    np.testing.assert_array_equal(got, [[0, 0], [1, 0]])


def test_subset_region_and_steps_keep_stored_values(run_eq, tmp_path):
    middle = """<node id="Subset"><operator>Subset</operator><sources><sourceProduct refid="Read"/></sources>
      <parameters><region>0,0,3,2</region><subSamplingX>2</subSamplingX></parameters></node>"""
    np.testing.assert_array_equal(run_eq(tmp_path, middle=middle, last="Subset"), [[1, 0], [0, 0]])


def test_subset_polygon_fills_the_stored_no_data_outside(float_tif, run_eq, tmp_path):
    from pyproj import Transformer

    t = Affine(10, 0, 500000, 0, -10, 4000000)
    data = np.full((6, 6), -5.0, np.float32)
    # a triangle over the upper-left half: its lower-right pixels lie outside
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    corners = [to_lonlat.transform(*(t @ xy)) for xy in ((0, 0), (6, 0), (0, 6), (0, 0))]
    wkt = "POLYGON((" + ", ".join(f"{x:.9f} {y:.9f}" for x, y in corners) + "))"
    middle = f"""<node id="Subset"><operator>Subset</operator><sources><sourceProduct refid="Read"/></sources>
      <parameters><polygonRegion>{wkt}</polygonRegion></parameters></node>"""
    got = run_eq(tmp_path, middle=middle, last="Subset", src=float_tif(tmp_path / "six.tif", data=data, transform=t))
    assert got.shape[0] >= 5 and got[0, 0] == 0 and got[-1, -1] == 1  # outside: the stored no-data value, -999


def test_nearest_resample_keeps_stored_values_and_bilinear_warns(float_tif, run_eq, tmp_path, caplog):
    coarse = float_tif(tmp_path / "c.tif")
    text = """<node id="Resample"><operator>Resample</operator><sources><sourceProduct refid="Read"/></sources>
      <parameters><targetResolution>5</targetResolution><upsampling>{up}</upsampling></parameters></node>"""
    got = run_eq(tmp_path, middle=text.format(up="Nearest"), last="Resample", src=coarse)
    np.testing.assert_array_equal(got, np.repeat(np.repeat([[1, 0, 0], [0, 1, 0]], 2, 0), 2, 1))
    with caplog.at_level(logging.WARNING):
        got = run_eq(tmp_path, middle=text.format(up="Bilinear"), last="Resample", src=coarse)
    assert "band 'b' lost its stored values upstream" in caplog.text and "-999" in caplog.text
    assert got[0, 0] == 0  # NaN here where gpt has -999: said, not silent


# --- the valid-pixel expression is kept and written ------------------------------------


@snap_case("names", "BandMathsOp.createBand: setValidPixelExpression; DimapHeaderWriter VALID_MASK_TERM")
def test_valid_expression_round_trips_through_dimap_and_geotiff(float_tif, tmp_path):
    p = read_product(float_tif(tmp_path / "f.tif"))
    raw = {"targetBands": [("targetBand", [("name", "v"), ("type", "float32"), ("expression", "b * 2"),
                                           ("validExpression", "v > 0 && b != -999")])]}
    out = BandMathsOp.create({"sourceProduct": p}, raw).initialize()
    assert out.band("v").valid_expression == "v > 0 && b != -999"
    dim = write_dimap(out, tmp_path / "o.dim")
    term = ET.parse(dim).getroot().find("Image_Interpretation/Spectral_Band_Info/VALID_MASK_TERM")
    assert term is not None and term.text == "v > 0 && b != -999"
    assert read_dimap(dim).band("v").valid_expression == "v > 0 && b != -999"
    tif = stream_writer(GeoTiffWriter(out, tmp_path / "o.tif"))
    assert read_product(tif).band("v").valid_expression == "v > 0 && b != -999"
    # never applied to the pixels, as in gpt
    np.testing.assert_array_equal(read_product(tif).band("v").data.compute()[0], [-1998, 3, 4])


# --- sources listed in <sourceProducts> ----------------------------------------------------


@snap_case("multi-source", "SourceList.Converter: <sourceProducts> items are sourceProducts0, sourceProducts1, ...")
def test_source_products_list_names_sources_as_gpt(float_tif, tmp_path):
    a = float_tif(tmp_path / "a.tif")
    b = float_tif(tmp_path / "b.tif", data=FLOATS * 2, nodata=None)
    text = f"""<graph id="g"><version>1.0</version>
      <node id="A"><operator>Read</operator><parameters><file>{a}</file></parameters></node>
      <node id="B"><operator>Read</operator><parameters><file>{b}</file></parameters></node>
      <node id="BandMaths"><operator>BandMaths</operator><sources><sourceProducts>A,B</sourceProducts></sources>
        <parameters><targetBands><targetBand><name>s</name><type>float32</type>
        <expression>{{expr}}</expression></targetBand></targetBands></parameters></node>
      <node id="Write"><operator>Write</operator><sources><sourceProduct refid="BandMaths"/></sources>
        <parameters><file>{tmp_path / 'o.dim'}</file></parameters></node></graph>"""
    # SourceList.Converter: sourceProducts0, sourceProducts1; $1 and $2 count the sources
    expr = "$sourceProducts0.b + $sourceProducts1.b + $2.b"
    ops = build(parse_graph("g.xml", text=text.replace("{expr}", expr)), ExecutionContext())
    np.testing.assert_array_equal(values(ops["BandMaths"].target, "s")[0], [-999 - 4 * 999, 1.5 + 6, 2 + 8])
    with pytest.raises(ExpressionError, match=r"Undefined symbol '\$sourceProduct\.1\.b'"):
        build(parse_graph("g.xml", text=text.replace("{expr}", "$sourceProduct.1.b")), ExecutionContext())


# --- the conformance table of docs/bandmaths.md ------------------------------------------------------

def case_counts() -> dict[str, int]:
    """Conformance cases per category: expression cases plus operator-level tests."""
    counts = {c: 0 for c in CATEGORIES}
    for case in CASES:
        counts[case.category] += 1
    for category, _ in OPERATOR_CASES.values():
        counts[category] += 1
    return counts


def table_rows() -> list[str]:
    counts = case_counts()
    rows = [f"| {c} | {counts[c]} |" for c in CATEGORIES]
    rows.append(f"| **total** | {sum(counts.values())} |")
    return rows


def test_every_case_has_a_known_category_and_source():
    for case in CASES:
        assert case.category in CATEGORIES and case.source
    assert len({c.id for c in CASES}) == len(CASES)  # ids are unique


def test_conformance_table_is_current():
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- conformance-counts:start -->\n(.*?)\n<!-- conformance-counts:end -->", text, re.S)
    assert block, "docs/bandmaths.md lacks the conformance-counts block"
    lines = [ln for ln in block.group(1).splitlines() if ln.startswith("| ") and not ln.startswith("| category")
             and not ln.startswith("|---")]
    assert lines == table_rows(), "update docs/bandmaths.md with:\n" + "\n".join(table_rows())


if __name__ == "__main__":  # print the table for docs/bandmaths.md
    sys.stdout.write("| category | cases |\n|---|---:|\n" + "\n".join(table_rows()) + "\n")
