"""Strict stand-in of the SNAP Java API surface the SNAP adapter uses, as esa_snappy/jpy expose it.

Pass this module as the adapter's ``api`` (where SNAP passes ``esa_snappy``).
Every class mirrors its Java class by name, camelCase method names and
argument order; anything not mirrored raises
``AttributeError("SNAP's <Class> has no method <name>")``, so an adapter
call that SNAP does not have fails here too. Values live in numpy arrays.

jpy behaviours mirrored (jpy's ``src/main/c/jpy_jtype.c``, ``jpy_jmethod.c``):

* a returned object is typed by the method's *declared* return type:
  ``getSceneGeoCoding()`` gives a ``GeoCoding``, ``getImageToMapTransform()``
  a ``MathTransform``; reaching the concrete class needs ``jpy.cast``;
* ``jpy.get_type(name)`` for classes esa_snappy does not preload (nested
  classes as ``Outer$Inner``); ``jpy.array(type, items)``;
* Java primitive arrays come back as buffers (here read-only
  ``memoryview``), not numpy arrays; numpy arrays passed to a Java
  ``float[]``/``byte[]``... parameter must be 1-D and of a matching type;
* Java exceptions surface as ``RuntimeError``;
* a Java ``int``/``short``/``long`` parameter takes a Python ``int`` only:
  numpy integers are not ``PyLong`` and match no overload
  (``JType_MatchPyArgAsJIntParam``); a ``double`` takes any number;
* ``jpy.cast(obj, type)`` needs the type object: jpy 0.13 (SNAP 10/11)
  crashes the JVM on a type name.

Module-level Java names are only the ones esa_snappy preloads
(``esa_snappy/__init__.py``: ``Product``, ``Band``, ``Mask``, ``ProductData``,
``ProductUtils``, ``GeoCoding``, ``CrsGeoCoding``, ``TiePointGeoCoding``,
``Rectangle``, ``File``, ``String``, ``Tile``, ``Operator``,
``ProductNodeGroup``, ``jpy``); the others (``IndexCoding``, ``ImageInfo``,
``MetadataElement``, ``java.awt.Color``...) only through ``jpy.get_type``.

SNAP classes and methods mirrored, checked in senbox-org/snap-engine
(master @ 048ce3a253) and senbox-org/esa-snappy (12.x):

* ``org.esa.snap.core.gpf.Operator`` (snap-gpf/.../core/gpf/Operator.java):
  ``getSourceProduct()``, ``getSourceProduct(String)``, ``getSourceProducts()``,
  ``getParameter(String)``, ``setTargetProduct(Product)``, ``getTargetProduct()``,
  ``getSourceTile(RasterDataNode, Rectangle)``;
* ``org.esa.snap.core.gpf.Tile`` (snap-gpf/.../gpf/Tile.java, internal/TileImpl.java):
  ``getRectangle()``, ``getMinX/MinY/Width/Height()``, ``getRasterDataNode()``,
  ``getSamplesFloat()``/``getSamplesDouble()`` (geophysical, NaN where the
  valid mask is false), ``getSamplesInt()`` (0 where invalid),
  ``setSamples(byte[]|short[]|int[]|float[]|double[])``;
* ``org.esa.snap.core.datamodel.Product`` (snap-core/.../datamodel/Product.java):
  ``Product(String, String, int, int)``, ``getName``, ``getProductType``,
  ``getDescription``/``setDescription``, ``getSceneRasterWidth/Height``,
  ``isMultiSize``, ``addBand(String, int)``, ``getBand``, ``getBands``,
  ``getBandNames``, ``getNumBands``, ``containsBand``, ``getSceneGeoCoding``/
  ``setSceneGeoCoding``, ``getStartTime/getEndTime/setStartTime/setEndTime``,
  ``getMetadataRoot``, ``getIndexCodingGroup``, ``getMaskGroup``,
  ``addMask(String, String, String, Color, double)``,
  ``getPreferredTileSize``/``setPreferredTileSize(int, int)``,
  ``getFileLocation``/``setFileLocation``;
* ``Band`` / ``RasterDataNode`` / ``DataNode`` / ``ProductNode``:
  ``Band(String, int, int, int)``, ``getName``, ``getDataType``,
  ``getGeophysicalDataType``, ``isScalingApplied``, ``getRasterWidth/Height``,
  ``getUnit/setUnit``, ``getDescription/setDescription``,
  ``getNoDataValue/setNoDataValue``, ``isNoDataValueUsed/setNoDataValueUsed``,
  ``getValidPixelExpression/setValidPixelExpression``, ``isValidMaskUsed``,
  ``getScalingFactor/setScalingFactor``, ``getScalingOffset/setScalingOffset``
  (``getGeophysicalDataType``: scaled 8/16-bit integers are float32, 32-bit
  ones float64; tiles' ``getSamplesFloat/Double`` give ``factor * raw +
  offset``, NaN where the no-data value or the valid-pixel expression says
  invalid, as a Sentinel-2 L2A band read by SNAP has them),
  ``getSpectralWavelength/setSpectralWavelength``, ``getGeoCoding``,
  ``getSampleCoding/setSampleCoding`` (integer bands only), ``getIndexCoding``,
  ``getImageInfo/setImageInfo``, ``isSourceImageSet``, ``getProduct``;
* ``Mask`` (Mask.java): ``getName``, ``getDescription``, ``getImageColor``,
  ``getImageTransparency``; ``Mask$BandMathsType.getExpression(Mask)``;
* ``IndexCoding`` / ``SampleCoding`` (IndexCoding.java, SampleCoding.java):
  ``IndexCoding(String)``, ``addIndex(String, int, String)``, ``getIndexNames``,
  ``getIndexValue``, ``getIndex`` -> ``MetadataAttribute`` (``getName``,
  ``getDescription``), ``getName``;
* ``ImageInfo(ColorPaletteDef)``, ``getColorPaletteDef``;
  ``ColorPaletteDef(Point[], int)`` / ``(Point[])``, ``getPoints``,
  ``getNumPoints``, ``getNumColors``; ``ColorPaletteDef$Point(double, Color, String)``,
  ``getSample``, ``getColor``, ``getLabel`` (ImageInfo.java, ColorPaletteDef.java);
* ``MetadataElement`` (MetadataElement.java): ``MetadataElement(String)``,
  ``getName``, ``addElement``, ``getElement``, ``getElements``,
  ``getElementNames``, ``getNumElements``, ``setAttributeString/Int/Double``,
  ``getAttributeString``, ``getAttributeDouble``, ``getAttributeInt``,
  ``getAttributeNames``, ``containsAttribute``, ``getNumAttributes``;
* ``ProductNodeGroup``: ``add``, ``get(String|int)``, ``contains``,
  ``getNodeCount``, ``getNodeNames``;
* ``ProductData`` constants ``TYPE_*``; ``ProductData$UTC(int, int, int)``,
  ``getDaysFraction``, ``getSecondsFraction``, ``getMicroSecondsFraction``, ``getMJD``;
* ``org.esa.snap.core.util.ProductUtils`` (snap-core/.../util/ProductUtils.java):
  ``copyGeoCoding(Product, Product)``, ``copyMetadata(Product, Product)``,
  ``copyTimeInformation(Product, Product)``,
  ``copyBand(String, Product, Product, boolean)``, ``copyMasks(Product, Product)``;
* ``GeoCoding`` (interface; GeoCoding.java): ``getImageToMapTransform``,
  ``getMapCRS``; ``CrsGeoCoding(CoordinateReferenceSystem, Rectangle, AffineTransform)``
  (CrsGeoCoding.java); GeoTools ``MathTransform.toWKT``,
  ``CoordinateReferenceSystem.toWKT``, ``org.geotools.referencing.CRS.decode/parseWKT``;
* ``java.awt``: ``Rectangle(int, int, int, int)`` (fields ``x, y, width,
  height``), ``Dimension`` (fields ``width, height``), ``Color(int, int, int)``
  (``getRed/Green/Blue/Alpha``), ``geom.AffineTransform(m00, m10, m01, m11,
  m02, m12)`` with ``getScaleX/ShearX/TranslateX/ShearY/ScaleY/TranslateY``;
  ``java.io.File(String)`` (``getPath``, ``toString``).

Stricter than SNAP on purpose: ``Product.addMask`` refuses expressions naming
unknown rasters (SNAP logs a warning), a target tile left unset fails the
run (SNAP would write zeros), ``getSourceTile`` refuses rectangles outside
the raster, and metadata changed after a writer wrote the product header
(:class:`gpf.WriteNode`) fails (SNAP silently leaves the file without it).

The end of the module emulates GPF (not API): :func:`run_operator` calls
``initialize``, ``computeTile`` per band and tile (``computeTileStack`` per
tile for an operator without ``computeTile``) in any order, then ``dispose``
(``OperatorExecutor`` in snap-gpf); :mod:`.gpf` runs graphs of operators on
threads with GPF's and esa_snappy's locks; :func:`target_tiles`,
:func:`tile_grid`, :func:`random_partition`, :func:`raster`,
:func:`set_raster`, :func:`crs_geocoding`, :func:`utc` help tests build
products and tiles. :data:`CALLS` and :data:`SECONDS` count the Java calls.
"""

# Java exceptions reach Python as RuntimeError through jpy, whatever their Java type.
# ruff: noqa: TRY004
from __future__ import annotations

import collections
import datetime as _dt
import functools
import math
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: Calls of mirrored Java methods, ``"Class.method" -> count`` (tests reset it).
CALLS: collections.Counter = collections.Counter()
#: Seconds spent in mirrored Java methods called from outside the stand-in (benchmarks).
SECONDS: collections.Counter = collections.Counter()

_TYPES: dict[str, type] = {}
_depth = [0]


def _counted(key: str, fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        CALLS[key] += 1
        if _depth[0]:
            return fn(*args, **kwargs)
        _depth[0] += 1
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SECONDS[key] += time.perf_counter() - t0
            _depth[0] -= 1

    return call


class _JavaClass(type):
    """Metaclass: registers the Java name, counts calls, refuses unknown statics."""

    def __new__(mcls, name, bases, ns, java=None, **kw):
        for key, value in list(ns.items()):
            if key.startswith("_") or isinstance(value, type):
                continue
            if isinstance(value, staticmethod):
                ns[key] = staticmethod(_counted(f"{name}.{key}", value.__func__))
            elif callable(value):
                ns[key] = _counted(f"{name}.{key}", value)
        cls = super().__new__(mcls, name, bases, ns)
        if java is not None:
            _TYPES[java] = cls
        cls._java = java or getattr(cls, "_java", "java.lang.Object")
        return cls

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"SNAP's {cls.__name__.lstrip('_')} has no method or field {name}")


class JavaObject(metaclass=_JavaClass):
    """``java.lang.Object``: strict attribute access."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"SNAP's {type(self).__name__.lstrip('_')} has no method {name}")

    def toString(self) -> str:
        return f"{type(self)._java}@{id(self):x}"

    def __str__(self) -> str:  # jpy's str() calls toString()
        return self.toString()


def _java_error(message: str) -> RuntimeError:
    return RuntimeError(f"java.lang.IllegalArgumentException: {message}")


def _check(value, kinds, what: str):
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _as_tuple(kinds)):
        raise RuntimeError(f"no matching Java method overloads found for {what}")
    return value


def _as_tuple(kinds):
    return kinds if isinstance(kinds, tuple) else (kinds,)


class JavaArray(tuple):
    """A Java object array as jpy returns it: a sequence, nothing more."""

    def __new__(cls, items: Iterable, component: str = "java.lang.Object"):
        arr = super().__new__(cls, items)
        arr.component = component
        return arr


def _primitive_array(a: np.ndarray) -> memoryview:
    """A Java primitive array as jpy returns it: a read-only 1-D buffer."""
    a = np.ascontiguousarray(a).reshape(-1)
    a.flags.writeable = False
    return memoryview(a)


# --- declared types (interfaces) --------------------------------------------------


class _Interface(JavaObject):
    methods: frozenset = frozenset()


class _Declared:
    """A Java object as jpy returns it from a method whose declared type is `iface`."""

    __slots__ = ("_iface", "_obj")

    def __init__(self, obj: Any, iface: type):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_iface", iface)

    def __getattr__(self, name):
        if name in self._iface.methods:
            return getattr(self._obj, name)
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"SNAP's {self._iface.__name__.lstrip('_')} has no method {name} "
            f"(jpy types the value as the declared {self._iface.__name__.lstrip('_')}; use jpy.cast)"
        )

    def __str__(self) -> str:
        return str(self._obj)


def _declared(obj, iface):
    return None if obj is None else _Declared(obj, iface)


def _unwrap(obj):
    return obj._obj if isinstance(obj, _Declared) else obj


class GeoCoding(_Interface, java="org.esa.snap.core.datamodel.GeoCoding"):
    methods = frozenset({"getImageToMapTransform", "getMapCRS", "canGetGeoPos", "canGetPixelPos", "toString"})


class _MathTransform(_Interface, java="org.opengis.referencing.operation.MathTransform"):
    methods = frozenset({"toWKT", "getSourceDimensions", "getTargetDimensions", "toString"})


class _CoordinateReferenceSystem(_Interface, java="org.opengis.referencing.crs.CoordinateReferenceSystem"):
    methods = frozenset({"toWKT", "toString"})


# --- java.* --------------------------------------------------------------------------


class String(JavaObject, java="java.lang.String"):
    pass


class File(JavaObject, java="java.io.File"):
    def __init__(self, pathname):
        self._path = str(_check(pathname, str, "File(String)"))

    def getPath(self) -> str:
        return self._path

    def toString(self) -> str:
        return self._path


class Rectangle(JavaObject, java="java.awt.Rectangle"):
    def __init__(self, x, y, width, height):
        for v in (x, y, width, height):
            _check(v, int, "Rectangle(int, int, int, int)")
        self.x, self.y, self.width, self.height = int(x), int(y), int(width), int(height)

    def toString(self) -> str:
        return f"java.awt.Rectangle[x={self.x},y={self.y},width={self.width},height={self.height}]"


class _Dimension(JavaObject, java="java.awt.Dimension"):
    def __init__(self, width, height):
        self.width, self.height = int(width), int(height)


class _Color(JavaObject, java="java.awt.Color"):
    def __init__(self, r, g, b):
        for v in (r, g, b):
            _check(v, int, "Color(int, int, int)")
            if not 0 <= v <= 255:
                raise _java_error("Color parameter outside of expected range")
        self._rgb = (int(r), int(g), int(b))

    def getRed(self) -> int:
        return self._rgb[0]

    def getGreen(self) -> int:
        return self._rgb[1]

    def getBlue(self) -> int:
        return self._rgb[2]

    def getAlpha(self) -> int:
        return 255


class _AffineTransform(JavaObject, java="java.awt.geom.AffineTransform"):
    """``AffineTransform(m00, m10, m01, m11, m02, m12)``, Java's argument order."""

    def __init__(self, m00, m10, m01, m11, m02, m12):
        self._m = tuple(float(_check(v, (int, float, np.floating, np.integer), "AffineTransform(double...)"))
                        for v in (m00, m10, m01, m11, m02, m12))

    def getScaleX(self) -> float:
        return self._m[0]

    def getShearY(self) -> float:
        return self._m[1]

    def getShearX(self) -> float:
        return self._m[2]

    def getScaleY(self) -> float:
        return self._m[3]

    def getTranslateX(self) -> float:
        return self._m[4]

    def getTranslateY(self) -> float:
        return self._m[5]


class _AffineTransform2D(_AffineTransform, _MathTransform, java="org.geotools.referencing.operation.transform.AffineTransform2D"):
    def toWKT(self) -> str:
        m00, m10, m01, m11, m02, m12 = self._m
        elements = {"elt_0_0": (m00, 1.0), "elt_0_1": (m01, 0.0), "elt_0_2": (m02, 0.0),
                    "elt_1_0": (m10, 0.0), "elt_1_1": (m11, 1.0), "elt_1_2": (m12, 0.0)}
        params = ['PARAMETER["num_row", 3]', 'PARAMETER["num_col", 3]']
        params += [f'PARAMETER["{k}", {_java_double(v)}]' for k, (v, default) in elements.items() if v != default]
        return 'PARAM_MT["Affine", \n  ' + ", \n  ".join(params) + "]"

    def getSourceDimensions(self) -> int:
        return 2

    def getTargetDimensions(self) -> int:
        return 2

    def toString(self) -> str:
        return self.toWKT()


class _Crs(_CoordinateReferenceSystem):
    def __init__(self, wkt: str):
        self._wkt = wkt

    def toWKT(self) -> str:
        return self._wkt

    def toString(self) -> str:
        return self._wkt


class _GeoToolsCRS(JavaObject, java="org.geotools.referencing.CRS"):
    """``org.geotools.referencing.CRS``: static factory methods."""

    @staticmethod
    def decode(code):
        from pyproj import CRS

        return _declared(_Crs(CRS.from_user_input(_check(code, str, "CRS.decode(String)")).to_wkt("WKT1_GDAL", pretty=True)),
                         _CoordinateReferenceSystem)

    @staticmethod
    def parseWKT(wkt):
        return _declared(_Crs(_check(wkt, str, "CRS.parseWKT(String)")), _CoordinateReferenceSystem)


def _java_double(v: float) -> str:
    """``Double.toString`` formatting."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0 or 1e-3 <= abs(v) < 1e7:
        return repr(v)
    mantissa, exponent = np.format_float_scientific(v, unique=True, trim="0").split("e")
    return f"{mantissa}E{int(exponent)}"


# --- data model ------------------------------------------------------------------------


class ProductData(JavaObject, java="org.esa.snap.core.datamodel.ProductData"):
    TYPE_UNDEFINED = 0
    TYPE_INT8 = 10
    TYPE_INT16 = 11
    TYPE_INT32 = 12
    TYPE_INT64 = 13
    TYPE_UINT8 = 20
    TYPE_UINT16 = 21
    TYPE_UINT32 = 22
    TYPE_UINT64 = 23
    TYPE_FLOAT32 = 30
    TYPE_FLOAT64 = 31
    TYPE_ASCII = 41
    TYPE_UTC = 51


#: ProductData type -> numpy dtype of the raster.
DTYPES = {10: np.int8, 11: np.int16, 12: np.int32, 13: np.int64, 20: np.uint8, 21: np.uint16, 22: np.uint32,
          23: np.uint64, 30: np.float32, 31: np.float64}

_MJD2000 = _dt.datetime(2000, 1, 1)


class _UTC(JavaObject, java="org.esa.snap.core.datamodel.ProductData$UTC"):
    """``ProductData.UTC(days, seconds, microSeconds)`` since 2000-01-01 00:00 UTC."""

    def __init__(self, days, seconds, microSeconds):
        self._t = (int(days), int(seconds), int(microSeconds))

    def getDaysFraction(self) -> int:
        return self._t[0]

    def getSecondsFraction(self) -> int:
        return self._t[1]

    def getMicroSecondsFraction(self) -> int:
        return self._t[2]

    def getMJD(self) -> float:
        d, s, us = self._t
        return d + (s + us * 1e-6) / 86400.0


class ProductNodeGroup(JavaObject, java="org.esa.snap.core.datamodel.ProductNodeGroup"):
    def __init__(self, name):
        self._name = name
        self._nodes: list = []

    def add(self, node) -> bool:
        if self.contains(node.getName()):
            raise _java_error(f"group '{self._name}' already contains a node named '{node.getName()}'")
        self._nodes.append(node)
        return True

    def get(self, key):
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self._nodes[key]
        for n in self._nodes:
            if n.getName() == key:
                return n
        return None

    def contains(self, name) -> bool:
        return any(n.getName() == name for n in self._nodes)

    def getNodeCount(self) -> int:
        return len(self._nodes)

    def getNodeNames(self) -> JavaArray:
        return JavaArray((n.getName() for n in self._nodes), "java.lang.String")


class _MetadataAttribute(JavaObject, java="org.esa.snap.core.datamodel.MetadataAttribute"):
    def __init__(self, name, value, type_, description=None):
        self._name, self._value, self._type, self._description = name, value, type_, description

    def getName(self) -> str:
        return self._name

    def getDescription(self):
        return self._description

    def _string(self) -> str:
        if self._type == ProductData.TYPE_FLOAT64:
            return _java_double(self._value)
        return str(self._value)

    def _clone(self) -> _MetadataAttribute:
        return _MetadataAttribute(self._name, self._value, self._type, self._description)


class _MetadataElement(JavaObject, java="org.esa.snap.core.datamodel.MetadataElement"):
    def __init__(self, name):
        name = _check(name, str, "MetadataElement(String)").strip()
        if not name:
            raise _java_error("name must not be empty")
        self._name = name
        self._elements: list[_MetadataElement] = []
        self._attributes: list[_MetadataAttribute] = []
        self._frozen = False  # a writer wrote its header with this element (gpf.WriteNode)

    def getName(self) -> str:
        return self._name

    def _check_unfrozen(self) -> None:
        if self._frozen:
            raise RuntimeError(f"stand-in: metadata element '{self._name}' changed after the writer wrote the "
                               "product header; GeoTIFF and BEAM-DIMAP would not have the change")

    def _freeze(self) -> None:
        self._frozen = True
        for e in self._elements:
            e._freeze()

    def addElement(self, element) -> None:
        if not isinstance(element, _MetadataElement):
            raise RuntimeError("no matching Java method overloads found for addElement(MetadataElement)")
        self._check_unfrozen()
        self._elements.append(element)

    def getElement(self, name):
        return next((e for e in self._elements if e._name == name), None)

    def getElements(self) -> JavaArray:
        return JavaArray(self._elements, "org.esa.snap.core.datamodel.MetadataElement")

    def getElementNames(self) -> JavaArray:
        return JavaArray((e._name for e in self._elements), "java.lang.String")

    def getNumElements(self) -> int:
        return len(self._elements)

    def _set(self, name, value, type_) -> None:
        self._check_unfrozen()
        for a in self._attributes:
            if a._name == name:
                if a._type != type_:
                    raise _java_error(f"attribute '{name}' has another data type")
                a._value = value
                return
        self._attributes.append(_MetadataAttribute(name, value, type_))

    def setAttributeString(self, name, value) -> None:
        self._set(_check(name, str, "setAttributeString"), _check(value, str, "setAttributeString(String, String)"),
                  ProductData.TYPE_ASCII)

    def setAttributeInt(self, name, value) -> None:
        value = _check(value, int, "setAttributeInt(String, int)")
        if not -2**31 <= value < 2**31:
            raise RuntimeError("OverflowError: value does not fit a Java int")
        self._set(_check(name, str, "setAttributeInt"), int(value), ProductData.TYPE_INT32)

    def setAttributeDouble(self, name, value) -> None:
        self._set(_check(name, str, "setAttributeDouble"),
                  float(_check(value, (int, float, np.floating, np.integer), "setAttributeDouble(String, double)")),
                  ProductData.TYPE_FLOAT64)

    def _attribute(self, name) -> _MetadataAttribute:
        for a in self._attributes:
            if a._name == name:
                return a
        raise _java_error(f"attribute '{name}' not found")

    def getAttributeString(self, name) -> str:
        return self._attribute(name)._string()

    def getAttributeDouble(self, name) -> float:
        a = self._attribute(name)
        if a._type == ProductData.TYPE_ASCII:
            raise _java_error(f"attribute '{name}' is not numeric")
        return float(a._value)

    def getAttributeInt(self, name) -> int:
        a = self._attribute(name)
        if a._type == ProductData.TYPE_ASCII:
            raise _java_error(f"attribute '{name}' is not numeric")
        return int(a._value)

    def getAttributeNames(self) -> JavaArray:
        return JavaArray((a._name for a in self._attributes), "java.lang.String")

    def containsAttribute(self, name) -> bool:
        return any(a._name == name for a in self._attributes)

    def getNumAttributes(self) -> int:
        return len(self._attributes)

    def _clone(self) -> _MetadataElement:
        e = _MetadataElement(self._name)
        e._elements = [c._clone() for c in self._elements]
        e._attributes = [a._clone() for a in self._attributes]
        return e


class _IndexCoding(_MetadataElement, java="org.esa.snap.core.datamodel.IndexCoding"):
    def addIndex(self, name, value, description) -> _MetadataAttribute:
        _check(name, str, "addIndex(String, int, String)")
        _check(value, int, "addIndex(String, int, String)")
        if description is not None:
            _check(description, str, "addIndex(String, int, String)")
        attr = _MetadataAttribute(name.strip(), int(value), ProductData.TYPE_UINT32, description)
        self._attributes.append(attr)
        return attr

    def getIndexNames(self) -> JavaArray:
        return self.getAttributeNames()

    def getIndexValue(self, name) -> int:
        return int(self._attribute(name)._value)

    def getIndex(self, name):
        return next((a for a in self._attributes if a._name == name), None)


class _ColorPaletteDefPoint(JavaObject, java="org.esa.snap.core.datamodel.ColorPaletteDef$Point"):
    def __init__(self, sample, color, label=None):
        _check(sample, (int, float, np.integer, np.floating), "Point(double, Color, String)")
        if not isinstance(color, _Color):
            raise RuntimeError("no matching Java method overloads found for Point(double, Color, String)")
        self._sample, self._color, self._label = float(sample), color, label

    def getSample(self) -> float:
        return self._sample

    def getColor(self) -> _Color:
        return self._color

    def getLabel(self):
        return self._label


class _ColorPaletteDef(JavaObject, java="org.esa.snap.core.datamodel.ColorPaletteDef"):
    def __init__(self, points, numColors=None):
        if not isinstance(points, JavaArray) or points.component != _ColorPaletteDefPoint._java:
            raise RuntimeError("no matching Java method overloads found for ColorPaletteDef(Point[], int): "
                               "pass jpy.array('org.esa.snap.core.datamodel.ColorPaletteDef$Point', points)")
        self._points = list(points)
        self._num_colors = int(numColors) if numColors is not None else 256
        self._discrete = False

    def getPoints(self) -> JavaArray:
        return JavaArray(self._points, _ColorPaletteDefPoint._java)

    def getNumPoints(self) -> int:
        return len(self._points)

    def getNumColors(self) -> int:
        return self._num_colors

    def isDiscrete(self) -> bool:
        return self._discrete

    def setDiscrete(self, discrete) -> None:
        self._discrete = bool(_check(discrete, bool, "setDiscrete(boolean)"))


class _ImageInfo(JavaObject, java="org.esa.snap.core.datamodel.ImageInfo"):
    def __init__(self, colorPaletteDef):
        if not isinstance(colorPaletteDef, _ColorPaletteDef):
            raise RuntimeError("no matching Java method overloads found for ImageInfo(ColorPaletteDef)")
        self._cpd = colorPaletteDef

    def getColorPaletteDef(self) -> _ColorPaletteDef:
        return self._cpd


class CrsGeoCoding(GeoCoding, java="org.esa.snap.core.datamodel.CrsGeoCoding"):
    """``CrsGeoCoding(CoordinateReferenceSystem mapCRS, Rectangle imageBounds, AffineTransform imageToMap)``."""

    def __init__(self, mapCRS, imageBounds, imageToMap):
        crs = _unwrap(mapCRS)
        if not isinstance(crs, _CoordinateReferenceSystem) or not isinstance(imageBounds, Rectangle) \
                or not isinstance(_unwrap(imageToMap), _AffineTransform):
            raise RuntimeError("no matching Java method overloads found for CrsGeoCoding(CRS, Rectangle, AffineTransform)")
        self._crs = crs
        m = _unwrap(imageToMap)._m
        self._i2m = _AffineTransform2D(*m)
        self._bounds = imageBounds

    def getImageToMapTransform(self):
        return _declared(self._i2m, _MathTransform)

    def getMapCRS(self):
        return _declared(self._crs, _CoordinateReferenceSystem)

    def canGetGeoPos(self) -> bool:
        return True

    def canGetPixelPos(self) -> bool:
        return True


class TiePointGeoCoding(GeoCoding, java="org.esa.snap.core.datamodel.TiePointGeoCoding"):
    """A geocoding without a map CRS (swath products): only for tests of that case."""

    def getImageToMapTransform(self):
        return _declared(_AffineTransform2D(1.0, 0.0, 0.0, 1.0, 0.0, 0.0), _MathTransform)

    def getMapCRS(self):
        return _GeoToolsCRS.decode("EPSG:4326")


class _Raster(JavaObject):
    """``RasterDataNode``: what bands and masks share."""

    def getName(self) -> str:
        return self._name

    def getDescription(self):
        return self._description

    def setDescription(self, description) -> None:
        self._description = None if description is None else _check(description, str, "setDescription(String)")

    def getProduct(self):
        return self._product

    def getRasterWidth(self) -> int:
        return self._w

    def getRasterHeight(self) -> int:
        return self._h


class Band(_Raster, java="org.esa.snap.core.datamodel.Band"):
    def __init__(self, name, dataType, width, height):
        _check(name, str, "Band(String, int, int, int)")
        if dataType not in DTYPES:
            raise _java_error(f"unsupported data type {dataType}")
        self._name, self._type, self._w, self._h = name.strip(), int(dataType), int(width), int(height)
        self._product = None
        self._description = None
        self._unit = None
        self._no_data, self._no_data_used = 0.0, False
        self._valid_expression = None
        self._scaling_factor, self._scaling_offset = 1.0, 0.0
        self._wavelength = 0.0
        self._coding = None
        self._image_info = None
        self._source = None  # band whose source image this band shares (ProductUtils.copyBand(..., true))
        self._raster = None  # raw samples, numpy (rows, cols)
        self._image = None  # the operator image computing this band's tiles on demand (gpf.py)

    def getDataType(self) -> int:
        return self._type

    def getGeophysicalDataType(self) -> int:
        # RasterDataNode.getGeophysicalDataType -> ReinterpretDescriptor.getTargetDataType: scaled
        # 8/16-bit integers become float32, 32-bit ones float64; floats keep their type.
        if not self.isScalingApplied() or np.dtype(DTYPES[self._type]).kind == "f":
            return self._type
        return ProductData.TYPE_FLOAT32 if np.dtype(DTYPES[self._type]).itemsize <= 2 else ProductData.TYPE_FLOAT64

    def isScalingApplied(self) -> bool:
        return self._scaling_factor != 1.0 or self._scaling_offset != 0.0

    def getScalingFactor(self) -> float:
        return self._scaling_factor

    def setScalingFactor(self, scalingFactor) -> None:
        self._scaling_factor = float(_check(scalingFactor, (int, float, np.integer, np.floating),
                                            "setScalingFactor(double)"))

    def getScalingOffset(self) -> float:
        return self._scaling_offset

    def setScalingOffset(self, scalingOffset) -> None:
        self._scaling_offset = float(_check(scalingOffset, (int, float, np.integer, np.floating),
                                            "setScalingOffset(double)"))

    def _geophysical(self, raw: np.ndarray) -> np.ndarray:
        """``RasterDataNode.scale``: ``factor * raw + offset`` in double."""
        if not self.isScalingApplied():
            return raw.astype(np.float64)
        return self._scaling_factor * raw.astype(np.float64) + self._scaling_offset

    def getUnit(self):
        return self._unit

    def setUnit(self, unit) -> None:
        self._unit = None if unit is None else _check(unit, str, "setUnit(String)")

    def getNoDataValue(self) -> float:
        return self._no_data

    def setNoDataValue(self, noDataValue) -> None:
        self._no_data = float(_check(noDataValue, (int, float, np.integer, np.floating), "setNoDataValue(double)"))

    def isNoDataValueUsed(self) -> bool:
        return self._no_data_used

    def setNoDataValueUsed(self, noDataValueUsed) -> None:
        self._no_data_used = _check(noDataValueUsed, bool, "setNoDataValueUsed(boolean)")

    def getValidPixelExpression(self):
        return self._valid_expression

    def setValidPixelExpression(self, expression) -> None:
        self._valid_expression = None if expression is None else _check(expression, str,
                                                                         "setValidPixelExpression(String)")

    def isValidMaskUsed(self) -> bool:
        return self._no_data_used or bool(self._valid_expression)

    def getSpectralWavelength(self) -> float:
        return self._wavelength

    def setSpectralWavelength(self, spectralWavelength) -> None:
        self._wavelength = float(np.float32(spectralWavelength))

    def getGeoCoding(self):
        return None if self._product is None else self._product.getSceneGeoCoding()

    def getSampleCoding(self):
        return self._coding

    def setSampleCoding(self, sampleCoding) -> None:
        if sampleCoding is not None:
            if not isinstance(sampleCoding, _IndexCoding):
                raise RuntimeError("no matching Java method overloads found for setSampleCoding(SampleCoding)")
            if np.dtype(DTYPES[self._type]).kind == "f":
                raise _java_error("band does not contain integer pixels")
        self._coding = sampleCoding

    def getIndexCoding(self):
        return self._coding

    def getImageInfo(self):
        return self._image_info

    def setImageInfo(self, imageInfo) -> None:
        if imageInfo is not None and not isinstance(imageInfo, _ImageInfo):
            raise RuntimeError("no matching Java method overloads found for setImageInfo(ImageInfo)")
        self._image_info = imageInfo

    def isSourceImageSet(self) -> bool:
        return self._source is not None

    def toString(self) -> str:
        return f"org.esa.snap.core.datamodel.Band[{self._name},{self._type},{self._w},{self._h}]"

    # --- pixels (TileImpl) ---
    def _raw(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        if self._source is not None:
            return self._source._raw(y0, x0, h, w)
        if self._image is not None:
            return self._image.read(y0, x0, h, w)
        if self._raster is None:
            raise RuntimeError(f"band '{self._name}' has no data: its tiles were never computed")
        return self._raster[y0:y0 + h, x0:x0 + w]

    def _valid(self, raw: np.ndarray, y0: int, x0: int) -> np.ndarray:
        """``RasterDataNode.isPixelValid`` over a tile: the no-data test on the raw samples
        (``band.raw != noData``; NaN no-data: not NaN) and the valid-pixel expression."""
        ok = np.ones(raw.shape, dtype=bool)
        if self._no_data_used:
            nd = self._no_data
            ok &= ~np.isnan(raw) if math.isnan(nd) else raw != np.asarray(nd).astype(raw.dtype)
        if self._valid_expression:
            ok &= _valid_expression(self._product, self._valid_expression, y0, x0, *raw.shape)
        return ok


class Mask(_Raster, java="org.esa.snap.core.datamodel.Mask"):
    def __init__(self, name, width, height, expression, description, color, transparency):
        self._name, self._w, self._h = name, width, height
        self._expression, self._description = expression, description
        self._color, self._transparency = color, float(transparency)
        self._product = None

    def getImageColor(self) -> _Color:
        return self._color

    def getImageTransparency(self) -> float:
        return self._transparency


class _MaskBandMathsType(JavaObject, java="org.esa.snap.core.datamodel.Mask$BandMathsType"):
    @staticmethod
    def getExpression(mask) -> str:
        return mask._expression


def _valid_expression(product, expression: str, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """A valid-pixel expression over a window: SNAP band maths' comparisons, ``&&``/``and``,
    ``||``/``or``, ``!``/``not``, numbers, band names (geophysical values) and ``band.raw``
    (raw samples). Enough for the expressions readers set (``B2.raw > 0 && B8.raw > 0``)."""
    import ast

    names: dict[str, np.ndarray] = {}

    def value(match: re.Match) -> str:
        name = match.group(0)
        if name.lower() in ("and", "or", "not"):
            return name.lower()
        if name.lower() in ("true", "false"):
            return name.capitalize()
        raw = name.endswith(".raw")
        band = product.getBand(name[:-4] if raw else name) if product is not None else None
        if band is None:
            raise RuntimeError(f"stand-in: valid-pixel expression '{expression}': unknown raster '{name}'")
        data = band._raw(y0, x0, h, w)
        key = f"_v{len(names)}"
        names[key] = data if raw else band._geophysical(data)
        return key

    text = expression.replace("&&", " and ").replace("||", " or ")
    text = re.sub(r"!(?!=)", " not ", text)
    text = re.sub(r"[A-Za-z_][A-Za-z0-9_]*(?:\.raw)?", value, text)

    class Vectorize(ast.NodeTransformer):
        def visit_BoolOp(self, node):
            self.generic_visit(node)
            fn = "logical_and" if isinstance(node.op, ast.And) else "logical_or"
            out = node.values[0]
            for v in node.values[1:]:
                out = ast.Call(ast.Attribute(ast.Name("np", ast.Load()), fn, ast.Load()), [out, v], [])
            return out

        def visit_UnaryOp(self, node):
            self.generic_visit(node)
            if isinstance(node.op, ast.Not):
                return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), "logical_not", ast.Load()), [node.operand], [])
            return node

    tree = ast.fix_missing_locations(Vectorize().visit(ast.parse(text.strip(), mode="eval")))
    with np.errstate(invalid="ignore"):
        result = eval(compile(tree, "<valid-pixel expression>", "eval"), {"np": np, "__builtins__": {}}, names)
    return np.broadcast_to(np.asarray(result, dtype=bool), (h, w))


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_KEYWORDS = {"and", "or", "not", "true", "false", "nan", "NaN", "if", "then", "else"}


class Product(JavaObject, java="org.esa.snap.core.datamodel.Product"):
    def __init__(self, name, type, sceneRasterWidth, sceneRasterHeight):
        _check(name, str, "Product(String, String, int, int)")
        _check(type, str, "Product(String, String, int, int)")
        if not type:  # Guardian.assertNotNullOrEmpty("type", type) in SNAP's constructor
            raise RuntimeError("java.lang.IllegalArgumentException: [type] is null or empty")
        for v in (sceneRasterWidth, sceneRasterHeight):
            _check(v, int, "Product(String, String, int, int)")
        self._name, self._type = name.strip(), type
        self._w, self._h = int(sceneRasterWidth), int(sceneRasterHeight)
        self._description = None
        self._bands: list[Band] = []
        self._geocoding = None
        self._start = self._end = None
        self._metadata = _MetadataElement("metadata")
        self._index_codings = ProductNodeGroup("indexCodingGroup")
        self._masks = ProductNodeGroup("maskGroup")
        self._tile_size = None
        self._file = None

    def getName(self) -> str:
        return self._name

    def getProductType(self) -> str:
        return self._type

    def getDescription(self):
        return self._description

    def setDescription(self, description) -> None:
        self._description = description

    def getSceneRasterWidth(self) -> int:
        return self._w

    def getSceneRasterHeight(self) -> int:
        return self._h

    def isMultiSize(self) -> bool:
        return any((b._w, b._h) != (self._w, self._h) for b in self._bands)

    def _contains_raster(self, name: str) -> bool:
        return self.containsBand(name) or self._masks.contains(name)

    def _add(self, band: Band) -> Band:
        if self._contains_raster(band._name):
            raise _java_error(f"The Product '{self._name}' already contains a band with the name '{band._name}'.")
        band._product = self
        self._bands.append(band)
        return band

    def addBand(self, bandName, dataType) -> Band:
        _check(bandName, str, "addBand(String, int)")
        _check(dataType, int, "addBand(String, int)")
        return self._add(Band(bandName, int(dataType), self._w, self._h))

    def getBand(self, name):
        return next((b for b in self._bands if b._name == name), None)

    def getBands(self) -> JavaArray:
        return JavaArray(self._bands, Band._java)

    def getBandNames(self) -> JavaArray:
        return JavaArray((b._name for b in self._bands), "java.lang.String")

    def getNumBands(self) -> int:
        return len(self._bands)

    def containsBand(self, name) -> bool:
        return self.getBand(name) is not None

    def getSceneGeoCoding(self):
        return _declared(self._geocoding, GeoCoding)

    def setSceneGeoCoding(self, sceneGeoCoding) -> None:
        gc = _unwrap(sceneGeoCoding)
        if gc is not None and not isinstance(gc, GeoCoding):
            raise RuntimeError("no matching Java method overloads found for setSceneGeoCoding(GeoCoding)")
        self._geocoding = gc

    def getStartTime(self):
        return self._start

    def setStartTime(self, startTime) -> None:
        self._start = startTime

    def getEndTime(self):
        return self._end

    def setEndTime(self, endTime) -> None:
        self._end = endTime

    def getMetadataRoot(self) -> _MetadataElement:
        return self._metadata

    def getIndexCodingGroup(self) -> ProductNodeGroup:
        return self._index_codings

    def getMaskGroup(self) -> ProductNodeGroup:
        return self._masks

    def addMask(self, maskName, expression, description, color, transparency) -> Mask:
        _check(maskName, str, "addMask(String, String, String, Color, double)")
        _check(expression, str, "addMask(String, String, String, Color, double)")
        if not isinstance(color, _Color):
            raise RuntimeError("no matching Java method overloads found for addMask(String, String, String, Color, double)")
        unknown = [n for n in _NAME.findall(expression) if n not in _KEYWORDS and not self._contains_raster(n)]
        if unknown:
            raise RuntimeError(f"stand-in: mask expression '{expression}' names unknown rasters {unknown}")
        if self._contains_raster(maskName):
            raise _java_error(f"The Product '{self._name}' already contains a raster named '{maskName}'.")
        mask = Mask(maskName, self._w, self._h, expression, description, color, transparency)
        mask._product = self
        self._masks.add(mask)
        return mask

    def getPreferredTileSize(self):
        return self._tile_size

    def setPreferredTileSize(self, *args) -> None:
        if len(args) == 1 and isinstance(args[0], _Dimension):
            self._tile_size = args[0]
        elif len(args) == 2:
            w, h = (_check(v, int, "setPreferredTileSize(int, int)") for v in args)
            self._tile_size = _Dimension(w, h)
        else:
            raise RuntimeError("no matching Java method overloads found for setPreferredTileSize")

    def getFileLocation(self):
        return self._file

    def setFileLocation(self, fileLocation) -> None:
        self._file = fileLocation

    def toString(self) -> str:
        return f"org.esa.snap.core.datamodel.Product[name={self._name}]"


class ProductUtils(JavaObject, java="org.esa.snap.core.util.ProductUtils"):
    @staticmethod
    def copyGeoCoding(sourceProduct, targetProduct) -> None:
        _products(sourceProduct, targetProduct, "copyGeoCoding(Product, Product)")
        targetProduct._geocoding = sourceProduct._geocoding

    @staticmethod
    def copyMetadata(source, target) -> None:
        _products(source, target, "copyMetadata(Product, Product)")
        root = target._metadata
        for e in source._metadata._elements:
            root._elements.append(e._clone())
        for a in source._metadata._attributes:
            root._attributes.append(a._clone())

    @staticmethod
    def copyTimeInformation(source, target) -> None:
        _products(source, target, "copyTimeInformation(Product, Product)")
        target._start, target._end = source._start, source._end

    @staticmethod
    def copyBand(sourceBandName, sourceProduct, targetProduct, copySourceImage):
        _products(sourceProduct, targetProduct, "copyBand(String, Product, Product, boolean)")
        _check(copySourceImage, bool, "copyBand(String, Product, Product, boolean)")
        src = sourceProduct.getBand(sourceBandName)
        if src is None:
            return None
        band = targetProduct._add(Band(sourceBandName, src._type, src._w, src._h))
        band._description, band._unit = src._description, src._unit
        band._no_data, band._no_data_used = src._no_data, src._no_data_used
        band._valid_expression, band._wavelength = src._valid_expression, src._wavelength
        band._scaling_factor, band._scaling_offset = src._scaling_factor, src._scaling_offset
        if src._coding is not None:  # copyRasterDataNodeProperties: index coding and image info
            coding = targetProduct._index_codings.get(src._coding._name)
            if coding is None:
                coding = _IndexCoding(src._coding._name)
                coding._attributes = [a._clone() for a in src._coding._attributes]
                targetProduct._index_codings.add(coding)
            band._coding = coding
            band._image_info = src._image_info
        if copySourceImage:
            band._source = src
        return band

    @staticmethod
    def copyMasks(sourceProduct, targetProduct) -> None:
        _products(sourceProduct, targetProduct, "copyMasks(Product, Product)")
        for mask in sourceProduct._masks._nodes:
            names = [n for n in _NAME.findall(mask._expression) if n not in _KEYWORDS]
            if targetProduct._masks.contains(mask._name) or not all(targetProduct._contains_raster(n) for n in names):
                continue  # SNAP: canTransferMask is false
            copy = Mask(mask._name, targetProduct._w, targetProduct._h, mask._expression, mask._description,
                        mask._color, mask._transparency)
            copy._product = targetProduct
            targetProduct._masks.add(copy)


def _products(a, b, what):
    if not isinstance(a, Product) or not isinstance(b, Product):
        raise RuntimeError(f"no matching Java method overloads found for {what}")


# --- GPF ----------------------------------------------------------------------------------


class Tile(JavaObject, java="org.esa.snap.core.gpf.Tile"):
    """A tile of a raster (``TileImpl``): source tiles read, target tiles are written."""

    def __init__(self, raster: Band, rect: Rectangle, writable: bool):
        self._band, self._rect, self._writable = raster, rect, writable
        self._written = None
        self._read = None

    def getRectangle(self) -> Rectangle:
        r = self._rect
        return Rectangle(r.x, r.y, r.width, r.height)

    def getMinX(self) -> int:
        return self._rect.x

    def getMinY(self) -> int:
        return self._rect.y

    def getWidth(self) -> int:
        return self._rect.width

    def getHeight(self) -> int:
        return self._rect.height

    def getRasterDataNode(self) -> Band:
        return self._band

    def _current(self) -> np.ndarray:
        if self._written is not None:
            return self._written
        r = self._rect
        if self._writable:
            return np.zeros((r.height, r.width), DTYPES[self._band._type])
        if self._read is None:
            self._read = self._band._raw(r.y, r.x, r.height, r.width)
        return self._read

    def _invalid(self, raw: np.ndarray) -> np.ndarray | None:
        if not self._band.isValidMaskUsed():
            return None
        return ~self._band._valid(raw, self._rect.y, self._rect.x)

    def getSamplesFloat(self) -> memoryview:
        raw = self._current()
        out = self._band._geophysical(raw).astype(np.float32) if not self._writable else raw.astype(np.float32)
        invalid = None if self._writable else self._invalid(raw)
        if invalid is not None:
            out[invalid] = np.nan
        return _primitive_array(out)

    def getSamplesDouble(self) -> memoryview:
        raw = self._current()
        out = self._band._geophysical(raw) if not self._writable else raw.astype(np.float64)
        invalid = None if self._writable else self._invalid(raw)
        if invalid is not None:
            out[invalid] = np.nan
        return _primitive_array(out)

    def getSamplesInt(self) -> memoryview:
        raw = self._current()
        geo = self._band._geophysical(raw) if not self._writable and self._band.isScalingApplied() else raw
        with np.errstate(invalid="ignore"):
            out = np.where(np.isnan(geo), 0, geo).astype(np.int32) if geo.dtype.kind == "f" else geo.astype(np.int32)
        invalid = None if self._writable else self._invalid(raw)
        if invalid is not None:
            out[invalid] = 0
        return _primitive_array(out)

    def setSamples(self, samples) -> None:
        if not self._writable:
            raise RuntimeError("java.lang.NullPointerException: source tiles are read-only")
        try:
            buf = memoryview(samples)
        except TypeError:
            raise RuntimeError("no matching Java method overloads found for setSamples: pass a 1-D numpy array") from None
        kinds = {"b": np.int8, "B": np.int8, "h": np.int16, "H": np.int16, "i": np.int32, "f": np.float32, "d": np.float64}
        if buf.ndim != 1 or buf.format not in kinds or not buf.c_contiguous:
            raise RuntimeError(
                f"no matching Java method overloads found for setSamples({buf.format!r}, ndim={buf.ndim}): "
                "jpy passes 1-D byte/short/int/float/double buffers only"
            )
        r = self._rect
        if buf.shape[0] != r.width * r.height:
            raise RuntimeError(f"java.lang.ArrayIndexOutOfBoundsException: {buf.shape[0]} samples for a "
                               f"{r.width}x{r.height} tile")
        values = np.frombuffer(buf, dtype=kinds[buf.format]).reshape(r.height, r.width)  # Java: signed
        target = np.dtype(DTYPES[self._band._type])
        if target.kind == "f":
            self._written = values.astype(target)
        else:
            if values.dtype.kind == "f":  # Java (int) cast: truncation, NaN -> 0
                values = np.nan_to_num(np.trunc(values), nan=0.0, posinf=0.0, neginf=0.0)
            self._written = values.astype(np.int64).astype(target)  # raster keeps the low bits


class _JavaMap(JavaObject, java="java.util.Map"):
    """``Map<Band, Tile>`` as computeTileStack receives it."""

    def __init__(self, items: dict):
        self._items = dict(items)

    def get(self, key):
        return self._items.get(key)

    def keySet(self) -> JavaArray:
        return JavaArray(self._items.keys(), Band._java)

    def size(self) -> int:
        return len(self._items)


_PRIMITIVE_ZERO = {"int": 0, "long": 0, "short": 0, "byte": 0, "double": 0.0, "float": 0.0, "boolean": False}


def _descriptor_value(kind: str, default: str | None):
    """A parameter's value after SNAP's ``setParameterDefaultValues`` (Java-like Python value)."""
    if default is None:
        return _PRIMITIVE_ZERO.get(kind)
    if kind in ("int", "long", "short", "byte", "java.lang.Integer", "java.lang.Long"):
        return int(default)
    if kind in ("double", "float", "java.lang.Double", "java.lang.Float"):
        return float(default)
    if kind in ("boolean", "java.lang.Boolean"):
        return default.strip().lower() == "true"
    if kind == "java.io.File":
        return File(default)
    if kind == "String[]":
        return jpy.array("java.lang.String", [v for v in default.split(",")])
    return default


class Operator(JavaObject, java="org.esa.snap.core.gpf.Operator"):
    """The ``context`` a Python operator receives: SNAP's ``PyOperator`` instance.

    Parameters (test construction, not Java API)
    ----------
    sources : dict of str to Product
        Source id -> product, as a graph or gpt wires them.
    parameters : dict
        Parameter name -> Java-like value (``str``, Python number or bool,
        :class:`File`, ``jpy.array('java.lang.String', [...])``).
    declared : iterable of str, optional
        Parameter names the descriptor declares; others are refused.
    """

    def __init__(self, sources: dict | None = None, parameters: dict | None = None,
                 declared: Iterable[str] | None = None):
        self._sources = dict(sources or {})
        self._parameters = dict(parameters or {})
        self._declared = None if declared is None else set(declared)
        self._target = None

    @classmethod
    def from_descriptor(cls, alias: str, sources: dict | None = None, parameters: dict | None = None) -> "Operator":
        """The context SNAP builds for plugin operator `alias`: parameters filled from its ``-info.xml``.

        As ``PyOperatorSpi.createOperator`` -> ``setParameterDefaultValues``: every declared
        parameter gets its ``defaultValue``; one without takes its type's default, ``0`` /
        ``0.0`` / ``false`` for a primitive ``dataType`` (never "not given") and null otherwise;
        the given `parameters` then replace them.
        """
        from xml.etree import ElementTree

        from snap_operators.snap.descriptors import PLUGIN_DIR, plugin_operator

        root = ElementTree.parse(PLUGIN_DIR / f"{plugin_operator(alias).module}-info.xml").getroot()
        filled = {}
        for el in root.iter("parameter"):
            name, kind, default = el.findtext("name"), el.findtext("dataType"), el.findtext("defaultValue")
            filled[name] = _descriptor_value(kind, default)
        filled.update(parameters or {})
        return cls(sources, filled, declared=filled)

    def getSourceProduct(self, *args):
        if args:
            (sid,) = args
            return self._sources.get(_check(sid, str, "getSourceProduct(String)"))
        product = self._sources.get("sourceProduct")
        if product is not None:
            return product
        return next(iter(self._sources.values()), None)

    def getSourceProducts(self) -> JavaArray:
        return JavaArray(self._sources.values(), Product._java)

    def getParameter(self, name):
        _check(name, str, "getParameter(String)")
        if self._declared is not None and name not in self._declared:
            raise RuntimeError(f"stand-in: parameter '{name}' is not declared by the operator descriptor")
        return self._parameters.get(name)

    def setTargetProduct(self, targetProduct) -> None:
        if not isinstance(targetProduct, Product):
            raise RuntimeError("no matching Java method overloads found for setTargetProduct(Product)")
        self._target = targetProduct

    def getTargetProduct(self):
        if self._target is None:
            raise RuntimeError("org.esa.snap.core.gpf.OperatorException: the target product has not been set")
        return self._target

    def getSourceTile(self, rasterDataNode, region) -> Tile:
        if not isinstance(rasterDataNode, Band) or not isinstance(region, Rectangle):
            raise RuntimeError("no matching Java method overloads found for getSourceTile(RasterDataNode, Rectangle)")
        if not any(rasterDataNode._product is p for p in self._sources.values()):
            raise RuntimeError(f"stand-in: band '{rasterDataNode._name}' is not a band of a source product")
        r = region
        if r.width <= 0 or r.height <= 0 or r.x < 0 or r.y < 0 or r.x + r.width > rasterDataNode._w \
                or r.y + r.height > rasterDataNode._h:
            raise RuntimeError(f"stand-in: {r.toString()} is outside band '{rasterDataNode._name}' "
                               f"({rasterDataNode._w}x{rasterDataNode._h})")
        tile = Tile(rasterDataNode, Rectangle(r.x, r.y, r.width, r.height), writable=False)
        tile._current()  # GPF pulls here (image.getData), computing upstream tiles as needed
        return tile


class _Jpy:
    """The ``jpy`` module as esa_snappy exposes it."""

    def get_type(self, name, resolve=True):
        try:
            return _TYPES[name]
        except KeyError:
            raise ValueError(f"Java class '{name}' not found") from None

    def cast(self, obj, type):
        if isinstance(type, str):
            # jpy 0.13.0, the wheels esa-snappy 10 and 11 ship, reads a type name here as a type
            # object (jpy_module.c) and brings the JVM down; only jpy 0.16+ accepts names.
            raise TypeError("stand-in: jpy.cast with a type name crashes jpy 0.13 (SNAP 10/11); "
                            "pass the type object from jpy.get_type(name)")
        cls = type
        obj = _unwrap(obj)
        return obj if isinstance(obj, cls) else None

    def array(self, type, init):
        name = type if isinstance(type, str) else type._java
        if isinstance(init, int):
            return JavaArray([None] * init, name)
        cls = str if name == "java.lang.String" else _TYPES.get(name)
        items = list(init)
        if cls is not None and not all(i is None or isinstance(_unwrap(i), cls) for i in items):
            raise ValueError(f"jpy.array: not all items are {name}")
        return JavaArray(items, name)


jpy = _Jpy()


def __getattr__(name):  # module level: esa_snappy preloads only some classes
    if name in ("IndexCoding", "ImageInfo", "ColorPaletteDef", "MetadataElement", "Color", "AffineTransform"):
        raise AttributeError(f"esa_snappy has no attribute {name}; use jpy.get_type(...)")
    raise AttributeError(f"esa_snappy has no attribute {name}")


# --- GPF emulation and test helpers (not Java API) ------------------------------------------


def tile_grid(width: int, height: int, tile_width: int, tile_height: int) -> list[tuple[int, int, int, int]]:
    """``(x, y, w, h)`` of SNAP's tile grid: tiles of the preferred size, clipped at the borders."""
    return [(x, y, min(tile_width, width - x), min(tile_height, height - y))
            for y in range(0, height, tile_height) for x in range(0, width, tile_width)]


def gpt_command_line_sources(*products) -> dict:
    """Source ids of ``gpt Operator a.dim b.dim``, as ``CommandLineArgs`` registers them.

    The first file is ``sourceProduct``, ``sourceProduct.1`` and
    ``sourceProduct1``; the k-th also ``sourceProduct.k`` and
    ``sourceProductk``. gpt reads each file once, so the ids of one file
    hold the same product.
    """
    ids = {}
    for k, product in enumerate(products, start=1):
        if k == 1:
            ids["sourceProduct"] = product
        ids[f"sourceProduct.{k}"] = product
        ids[f"sourceProduct{k}"] = product
    return ids


def random_partition(width: int, height: int, seed: int = 0, min_size: int = 8) -> list[tuple[int, int, int, int]]:
    """Rectangles of random sizes tiling the scene exactly (no grid), by random cuts."""
    rng = random.Random(seed)
    out = []
    todo = [(0, 0, width, height)]
    while todo:
        x, y, w, h = todo.pop()
        cut_x, cut_y = w >= 2 * min_size and rng.random() < 0.8, h >= 2 * min_size and rng.random() < 0.8
        if cut_x and (not cut_y or rng.random() < 0.5):
            c = rng.randint(min_size, w - min_size)
            todo += [(x, y, c, h), (x + c, y, w - c, h)]
        elif cut_y:
            c = rng.randint(min_size, h - min_size)
            todo += [(x, y, w, c), (x, y + c, w, h - c)]
        else:
            out.append((x, y, w, h))
    return out


def implements(py_operator: Any, method: str) -> bool:
    """Whether the Python operator has `method` (``PyOperator.initMethodImplFlags``: an attribute lookup)."""
    return callable(getattr(py_operator, method, None))


def must_compute_tile_stack(py_operator: Any) -> bool:
    """``OperatorContext.operatorMustComputeTileStack``: stack-wise only without ``computeTile``."""
    return implements(py_operator, "computeTileStack") and not implements(py_operator, "computeTile")


def run_operator(
    py_operator: Any,
    context: Operator,
    tile_size: tuple[int, int] | None = None,
    rects: Sequence[tuple[int, int, int, int]] | None = None,
    shuffle: bool = True,
    seed: int = 0,
    dispose: bool = True,
    stop_after: int | None = None,
) -> Product:
    """Drive a Python operator as GPF does: initialize, every tile of every computed band, dispose.

    An operator with ``computeTile`` gets one call per band and tile (SNAP's
    ``OperatorImage``), the bands of a tile in shuffled order; one with only
    ``computeTileStack`` one call per tile for all bands
    (``OperatorImageTileStack``). Tiles come from `rects`, else the grid of
    `tile_size`, else the target's preferred tile size; in shuffled order
    (GPF's threads finish in any order). `stop_after` tiles emulates a
    cancelled run. Computed tiles are stored in the target bands, so the
    target can feed the next operator.
    """
    py_operator.initialize(context)
    target = context.getTargetProduct()
    computed = [b for b in target._bands if b._source is None]
    if rects is None:
        if tile_size is None:
            pref = target.getPreferredTileSize()
            tile_size = (pref.width, pref.height) if pref is not None else (512, 512)
        rects = tile_grid(target._w, target._h, *tile_size)
    rects = list(rects)
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(rects)
    for b in computed:
        b._raster = np.zeros((b._h, b._w), DTYPES[b._type])
    per_band = not must_compute_tile_stack(py_operator)
    try:
        for k, (x, y, w, h) in enumerate(rects):
            if stop_after is not None and k >= stop_after:
                break
            rect = Rectangle(x, y, w, h)
            tiles = {b: Tile(b, rect, writable=True) for b in computed}
            if per_band:
                order = list(tiles.items())
                if shuffle:
                    rng.shuffle(order)
                for b, t in order:
                    py_operator.computeTile(context, b, t)
            else:
                py_operator.computeTileStack(context, _JavaMap(tiles), rect)
            for b, t in tiles.items():
                if t._written is None:
                    raise AssertionError(f"the operator left the tile {rect.toString()} of band '{b._name}' unset")
                b._raster[y:y + h, x:x + w] = t._written
    finally:
        if dispose:
            py_operator.dispose(context)
    return target


def raster(band: Band) -> np.ndarray:
    """The whole band as numpy (raw samples)."""
    return band._raw(0, 0, band._h, band._w).copy()


def set_raster(band: Band, data: np.ndarray) -> Band:
    """Give a source band its pixels (as a reader would)."""
    data = np.asarray(data)
    if data.shape != (band._h, band._w):
        raise ValueError(f"shape {data.shape} != band {band._h}x{band._w}")
    band._raster = data.astype(DTYPES[band._type], copy=True)
    return band


def crs_geocoding(crs: str, transform: Sequence[float], width: int, height: int) -> CrsGeoCoding:
    """A CrsGeoCoding as a reader builds it: ``crs`` like ``"EPSG:32638"``, ``transform`` GDAL order (a, b, c, d, e, f)."""
    a, b, c, d, e, f = transform
    return CrsGeoCoding(_GeoToolsCRS.decode(crs), Rectangle(0, 0, width, height), _AffineTransform(a, d, b, e, c, f))


def float_product(name: str, bands: Mapping[str, np.ndarray], crs: str, transform: Sequence[float],
                  product_type: str = "S2_MSI_Level-2A") -> Product:
    """A source product as a reader gives a float scene: float32 bands with NaN as their (used) no-data
    value, on a CrsGeoCoding (``crs`` like ``"EPSG:32633"``, ``transform`` in GDAL order)."""
    first = np.asarray(next(iter(bands.values())))
    h, w = first.shape
    p = Product(name, product_type, w, h)
    for n, a in bands.items():
        b = p.addBand(n, ProductData.TYPE_FLOAT32)
        b.setNoDataValue(float("nan"))
        b.setNoDataValueUsed(True)
        set_raster(b, a)
    p.setSceneGeoCoding(crs_geocoding(crs, transform, w, h))
    return p


def utc(t: _dt.datetime) -> _UTC:
    """``ProductData.UTC`` of a naive-UTC datetime."""
    delta = t - _MJD2000
    return _UTC(delta.days, delta.seconds, delta.microseconds)


def target_tiles(bands: Iterable[Band], rect: Rectangle) -> _JavaMap:
    """The ``Map<Band, Tile>`` of writable target tiles GPF hands to ``computeTileStack``."""
    return _JavaMap({b: Tile(b, rect, writable=True) for b in bands})
