"""SNAP Python operators (esa_snappy) made from the project's operators.

SNAP's ``PyOperator`` imports a plugin module, instantiates its class with no
arguments and calls, holding one lock for all Python code of the process
(``synchronized (PyLib.class)``):

* ``initialize(context)`` once, ``context`` being the Java ``Operator``;
* ``computeTile(context, band, tile)`` for every tile of every target band
  that is read, from several Java threads in any order;
* ``dispose(context)`` at the end of a successful run (gpt's
  ``GraphProcessor`` skips it after a failure).

:func:`make_operator_class` builds that class for any operator listed in
:data:`~snap_operators.snap.descriptors.PLUGIN_OPERATORS`, from what the
operator declares and nothing else: its spec, its
:class:`~snap_operators.core.operator.TileKernel`
(:meth:`~snap_operators.core.operator.Operator.tile_kernel`) and, for sinks,
its sink protocol. ``initialize`` reads the parameters with ``context.getParameter``
and converts them with the spec, wraps the Java source products as lazy
:class:`~snap_operators.core.product.Product` whose chunks are SNAP source tiles,
and initializes the standalone operator on them exactly as the graph engine
does (Otsu/samples thresholds are resolved there, on the decimated read of
those tiles). It then builds the Java target product. The first
``computeTile`` of a rectangle reads the kernel's source tiles and calls the
operator's own pure per-tile function on whole-tile numpy arrays, for all
target bands at once: a handful of Java calls per tile, never one per pixel;
the other bands' tiles wait in :class:`_TileResults` until SNAP asks for
them. Why ``computeTile`` and not ``computeTileStack``: see
:class:`SnapOperator`. An operator that needs context around a tile (the
U-Net's halo) names the larger source rectangle to read for each target
rectangle (``TileKernel.context``). A sink's scene-wide outputs (the area
table CSV, the label masks, the change tables) come from its own sink plan
(``Operator.open``), fed tile by tile (:class:`_SinkFeed`) and committed when
the last tile has arrived; a run
that stops earlier leaves nothing behind: a failed tile of ours removes
them at once, ``dispose`` does after a cancelled run, and when another node
fails (gpt exits without ``dispose``) the next run into the folder removes
the hidden staged files of the dead process.

The Java API is an injectable object: ``esa_snappy`` (imported only when
needed) inside SNAP, a stand-in in tests.
"""

from __future__ import annotations

import collections
import datetime as _dt
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..core import errors
from ..core.errors import OperatorError, SnapPcError
from ..core.product import Band, ClassInfo, MetadataElement, Product, fill_value

log = logging.getLogger(__name__)

#: Tile edge used when a source product has no preferred tile size (SNAP's usual default).
DEFAULT_TILE = 512

_POINT = "org.esa.snap.core.datamodel.ColorPaletteDef$Point"
_TYPE_NAMES = {
    "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
    "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32", "uint64": "TYPE_UINT64",
    "float32": "TYPE_FLOAT32", "float64": "TYPE_FLOAT64",
}
_UNKNOWN_COLOR = (128, 128, 128)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MJD2000 = _dt.datetime(2000, 1, 1)


def java_api(api: Any = None) -> Any:
    """`api`, or ``esa_snappy`` (imported here: only SNAP's Python has it)."""
    if api is not None:
        return api
    try:
        import esa_snappy
    except ImportError as exc:
        raise OperatorError(
            f"esa_snappy is not importable ({exc}); these operators run inside SNAP (configure SNAP's Python "
            "with 'snap-pc snap install')"
        ) from None
    return esa_snappy


# --- Java values ---------------------------------------------------------------------------


class _Types:
    """SNAP classes esa_snappy does not preload, looked up once through ``jpy.get_type``."""

    def __init__(self, api: Any):
        get = api.jpy.get_type
        self.IndexCoding = get("org.esa.snap.core.datamodel.IndexCoding")
        self.ImageInfo = get("org.esa.snap.core.datamodel.ImageInfo")
        self.ColorPaletteDef = get("org.esa.snap.core.datamodel.ColorPaletteDef")
        self.Point = get(_POINT)
        self.MetadataElement = get("org.esa.snap.core.datamodel.MetadataElement")
        self.Color = get("java.awt.Color")
        # TYPE_INT64/UINT64 are recent; older SNAPs simply lack them.
        codes = {name: getattr(api.ProductData, const, None) for name, const in _TYPE_NAMES.items()}
        codes = {name: code for name, code in codes.items() if code is not None}
        self.type_code = codes
        self.dtype_of = {code: np.dtype(name) for name, code in codes.items()}


def parameter_values(context: Any, spec) -> dict[str, str | None]:
    """Raw parameter values as text, read with ``context.getParameter``.

    SNAP hands over Java values (strings, boxed numbers and booleans, arrays,
    ``java.io.File``): each becomes the text the spec converts, as a graph
    XML value would be; arrays are joined with commas.
    """
    raw: dict[str, str | None] = {}
    for p in spec.parameters:
        value = context.getParameter(p.name)
        if value is None:
            raw[p.name] = None
        elif p.type.endswith("[]") and not isinstance(value, str):
            raw[p.name] = ",".join(str(v).strip() for v in value)
        elif isinstance(value, bool):
            raw[p.name] = "true" if value else "false"
        else:
            raw[p.name] = str(value)
    return raw


def source_products(context: Any, names: Sequence[str] = ()) -> dict[str, Any]:
    """Java source products by id, each product once.

    The operator's named sources (`names`, e.g. ``before``) first, then
    ``sourceProduct``, ``sourceProduct.1``, ``sourceProduct.2``, ... (Graph
    Builder, gpt) and the older ``sourceProduct1``, ``sourceProduct2``, ...,
    else SNAP's ``getSourceProduct()`` fallback (the first source). gpt's
    command line registers its first file as ``sourceProduct``,
    ``sourceProduct.1`` and ``sourceProduct1`` and its second as
    ``sourceProduct.2`` and ``sourceProduct2`` (``CommandLineArgs``), so a
    product met again under another id is the same source and is kept once,
    under the first id.
    """
    found: dict[str, Any] = {}

    def add(sid: str, product: Any) -> None:
        if product is not None and not any(_same_object(product, q) for q in found.values()):
            found[sid] = product

    for name in names:
        add(name, context.getSourceProduct(name))
    add("sourceProduct", context.getSourceProduct("sourceProduct"))
    k = 1
    while True:
        dotted, plain = context.getSourceProduct(f"sourceProduct.{k}"), context.getSourceProduct(f"sourceProduct{k}")
        if dotted is None and plain is None:
            break
        add(f"sourceProduct.{k}", dotted if dotted is not None else plain)
        k += 1
    if not found:
        add("sourceProduct", context.getSourceProduct())
    return found


def _same_object(a: Any, b: Any) -> bool:
    # jpy may hand one Java object over in two Python wrappers; Java's equals() of a Product is identity.
    return a is b or bool(a == b)


def map_geocoding(api: Any, geocoding: Any, product_name: str = "") -> tuple[Any, Any]:
    """``(crs, transform)`` of a Java geocoding: a rasterio CRS and the affine
    pixel-corner transform of a ``CrsGeoCoding``; ``(None, None)`` for
    geocodings without a map grid (tie-point, pixel-based)."""
    from affine import Affine

    if geocoding is None:
        return None, None
    crs_geocoding = api.jpy.cast(geocoding, api.CrsGeoCoding)
    if crs_geocoding is None:
        return None, None
    # getImageToMapTransform() is declared as a MathTransform; a CrsGeoCoding's is an AffineTransform2D.
    # A type object, not its name: jpy 0.13 (esa-snappy 10 and 11) crashes the JVM on a name here.
    at = api.jpy.cast(crs_geocoding.getImageToMapTransform(), api.jpy.get_type("java.awt.geom.AffineTransform"))
    if at is None:
        raise OperatorError(f"product '{product_name}': its map geocoding is not affine")
    transform = Affine(at.getScaleX(), at.getShearX(), at.getTranslateX(), at.getShearY(), at.getScaleY(),
                       at.getTranslateY())
    return crs_from_wkt(str(crs_geocoding.getMapCRS().toWKT()), product_name), transform


def crs_from_wkt(wkt: str, product_name: str = ""):
    """A rasterio CRS from SNAP's (GeoTools) WKT; the EPSG CRS itself when the WKT is one exactly."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        crs = CRS.from_wkt(wkt)
    except CRSError as exc:
        raise OperatorError(f"product '{product_name}': cannot read its map CRS ({str(exc).splitlines()[0]})") from None
    epsg = crs.to_epsg(confidence_threshold=100)
    return CRS.from_epsg(epsg) if epsg else crs


def utc_datetime(utc: Any) -> _dt.datetime | None:
    """A naive UTC datetime from ``ProductData.UTC`` (exact: days, seconds, microseconds since 2000)."""
    if utc is None:
        return None
    return _MJD2000 + _dt.timedelta(days=int(utc.getDaysFraction()), seconds=int(utc.getSecondsFraction()),
                                    microseconds=int(utc.getMicroSecondsFraction()))


def java_utc(api: Any, when: _dt.datetime) -> Any:
    """``ProductData.UTC`` of a datetime (naive: UTC), the inverse of :func:`utc_datetime`."""
    if when.tzinfo is not None:
        when = when.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    d = when - _MJD2000
    return api.jpy.get_type("org.esa.snap.core.datamodel.ProductData$UTC")(d.days, d.seconds, d.microseconds)


def band_classes(band: Any) -> list[ClassInfo] | None:
    """Classes of a Java index band: names and values from its IndexCoding, colors
    from its ImageInfo palette points (grey where none)."""
    coding = band.getIndexCoding()
    if coding is None:
        return None
    colors: dict[int, tuple[int, int, int]] = {}
    info = band.getImageInfo()
    palette = info.getColorPaletteDef() if info is not None else None
    if palette is not None:
        for point in palette.getPoints():
            c = point.getColor()
            colors[round(float(point.getSample()))] = (int(c.getRed()), int(c.getGreen()), int(c.getBlue()))
    classes = []
    for name in coding.getIndexNames():
        name = str(name)
        value = int(coding.getIndexValue(name))
        index = coding.getIndex(name)
        description = index.getDescription() if index is not None else None
        classes.append(ClassInfo(value, name, colors.get(value, _UNKNOWN_COLOR), str(description or "")))
    return classes


def read_tile(context: Any, band: Any, rect: Any, dtype: np.dtype, fill: float) -> np.ndarray:
    """One SNAP source tile as a ``(rows, cols)`` numpy array of `dtype`.

    Float bands come from ``getSamplesFloat``/``getSamplesDouble`` (geophysical,
    NaN where SNAP's valid mask is false); integer bands from
    ``getSamplesDouble`` with invalid pixels set to `fill` (their no-data).
    """
    tile = context.getSourceTile(band, rect)
    shape = (int(rect.height), int(rect.width))
    if dtype == np.float32:
        return np.frombuffer(tile.getSamplesFloat(), dtype=np.float32).reshape(shape)
    samples = np.frombuffer(tile.getSamplesDouble(), dtype=np.float64).reshape(shape)
    if dtype == np.float64:
        return samples
    return np.where(np.isnan(samples), fill, samples).astype(dtype)


def java_samples(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`block` as the 1-D buffer ``Tile.setSamples`` takes: byte/short/int/float/double,
    unsigned types passed bit for bit as Java's signed ones."""
    a = np.ascontiguousarray(block, dtype=dtype).reshape(-1)
    if a.dtype.kind == "u" and a.dtype.itemsize <= 4:
        a = a.view(f"i{a.dtype.itemsize}")
    elif a.dtype.kind == "b":
        a = a.view(np.int8)
    elif a.dtype.itemsize == 8 and a.dtype.kind != "f":
        raise OperatorError(f"64-bit integer bands cannot be written to SNAP tiles ({a.dtype})")
    return a


class _TileReader:
    """Array-like over a Java band whose windows are SNAP source tiles (for ``da.from_array``)."""

    ndim = 2

    def __init__(self, api: Any, context: Any, band: Any, shape: tuple[int, int], dtype: np.dtype, fill):
        self.api, self.context, self.band = api, context, band
        self.shape, self.dtype, self.fill = shape, np.dtype(dtype), fill

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (2 - len(key))
        bounds, picks = [], []
        for k, n in zip(key, self.shape):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 1:
                    raise IndexError("SNAP tiles are read with positive steps only")
                stop = max(start, stop)
                bounds.append((start, stop))
                picks.append(slice(None, None, step))
            else:
                i = int(k) + (n if int(k) < 0 else 0)
                bounds.append((i, i + 1))
                picks.append(0)
        (y0, y1), (x0, x1) = bounds
        if y1 <= y0 or x1 <= x0:
            return np.empty((y1 - y0, x1 - x0), self.dtype)[tuple(picks)]
        rect = self.api.Rectangle(x0, y0, x1 - x0, y1 - y0)
        return read_tile(self.context, self.band, rect, self.dtype, self.fill)[tuple(picks)]


def wrap_product(api: Any, types: _Types, context: Any, product: Any, tile: tuple[int, int]) -> Product:
    """A lazy :class:`Product` over a Java product: band names, units, no-data,
    classes, size and map geocoding; each chunk (``tile`` = (rows, cols)) reads
    one SNAP source tile when computed. Metadata elements written by our own
    operators are carried over (the rest stays in Java and is copied there)."""
    import dask.array as da

    from ..core.operator import operators

    name = str(product.getName())
    crs, transform = map_geocoding(api, product.getSceneGeoCoding(), name)
    location = product.getFileLocation()
    out = Product(
        name=name,
        product_type=str(product.getProductType() or ""),
        crs=crs,
        start_time=utc_datetime(product.getStartTime()),
        stop_time=utc_datetime(product.getEndTime()),
        file_location=None if location is None else str(location),
    )
    ours = set(operators())
    for element in product.getMetadataRoot().getElements():
        if str(element.getName()) in ours:
            out.metadata.elements.append(_python_element(element))
    for band_name in product.getBandNames():
        band = product.getBand(band_name)
        h, w = int(band.getRasterHeight()), int(band.getRasterWidth())
        code = int(band.getGeophysicalDataType())
        if code not in types.dtype_of:
            raise OperatorError(f"product '{name}': band '{band_name}' has a SNAP data type ({code}) without a numpy one")
        dtype = types.dtype_of[code]
        if dtype.kind == "f":
            no_data = float("nan")  # SNAP's float samples are NaN wherever the valid mask is false
        elif band.isNoDataValueUsed():
            no_data = int(band.getNoDataValue())
        else:
            no_data = None
        fill = fill_value(dtype) if no_data is None else no_data
        if (h, w) == (int(product.getSceneRasterHeight()), int(product.getSceneRasterWidth())):
            band_transform = transform
        else:
            band_transform = map_geocoding(api, band.getGeoCoding(), name)[1]
        reader = _TileReader(api, context, band, (h, w), dtype, fill)
        data = da.from_array(reader, chunks=(min(tile[0], h), min(tile[1], w)), name=f"snap-{name}-{band_name}-{id(reader):x}",
                             meta=np.empty((0, 0), dtype), asarray=False, lock=False)
        wavelength = float(band.getSpectralWavelength() or 0.0)
        out.add_band(Band(
            name=str(band_name),
            data=data,
            transform=band_transform,
            no_data=no_data,
            unit=None if band.getUnit() is None else str(band.getUnit()),
            description=None if band.getDescription() is None else str(band.getDescription()),
            wavelength=wavelength or None,
            classes=band_classes(band),
        ))
    return out


def _python_element(element: Any) -> MetadataElement:
    out = MetadataElement(str(element.getName()))
    for name in element.getAttributeNames():
        out.attributes[str(name)] = str(element.getAttributeString(name))
    for child in element.getElements():
        out.elements.append(_python_element(child))
    return out


def java_element(types: _Types, element: MetadataElement) -> Any:
    """A Java MetadataElement tree from ours (numbers stay numbers, the rest text)."""
    out = types.MetadataElement(element.name)
    for key, value in element.attributes.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out.setAttributeString(key, "true" if value else "false")
        elif isinstance(value, (int, np.integer)) and -2**31 <= int(value) < 2**31:
            out.setAttributeInt(key, int(value))
        elif isinstance(value, (int, float, np.integer, np.floating)):
            out.setAttributeDouble(key, float(value))
        elif isinstance(value, _dt.datetime):
            out.setAttributeString(key, value.isoformat())
        else:
            out.setAttributeString(key, str(value))
    for child in element.elements:
        out.addElement(java_element(types, child))
    return out


# --- scene-wide outputs ----------------------------------------------------------------------


class _Cells:
    """Gathers tile rectangles of any size and order into the cells of a chunk grid,
    handing each cell on exactly once (SNAP may compute a tile twice)."""

    def __init__(self, chunks: tuple[tuple[int, ...], tuple[int, ...]]):
        self.rows = np.concatenate([[0], np.cumsum(chunks[0])]).astype(int)
        self.cols = np.concatenate([[0], np.cumsum(chunks[1])]).astype(int)
        self.total = len(chunks[0]) * len(chunks[1])
        self.done: set[tuple[int, int]] = set()
        self.partial: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def complete(self) -> bool:
        return len(self.done) == self.total

    def add(self, y: int, x: int, block: np.ndarray) -> list[tuple[tuple[int, int], tuple[slice, slice], np.ndarray]]:
        """Cells completed by `block` at ``(y, x)``: ``(index, region, cell block)``."""
        h, w = block.shape
        out = []
        i0 = int(np.searchsorted(self.rows, y, "right")) - 1
        i1 = int(np.searchsorted(self.rows, y + h, "left"))
        j0 = int(np.searchsorted(self.cols, x, "right")) - 1
        j1 = int(np.searchsorted(self.cols, x + w, "left"))
        for i in range(i0, i1):
            for j in range(j0, j1):
                if (i, j) in self.done:
                    continue
                cy0, cy1, cx0, cx1 = self.rows[i], self.rows[i + 1], self.cols[j], self.cols[j + 1]
                iy0, iy1, ix0, ix1 = max(cy0, y), min(cy1, y + h), max(cx0, x), min(cx1, x + w)
                piece = block[iy0 - y:iy1 - y, ix0 - x:ix1 - x]
                region = (slice(int(cy0), int(cy1)), slice(int(cx0), int(cx1)))
                if (iy0, iy1, ix0, ix1) == (cy0, cy1, cx0, cx1):
                    self.done.add((i, j))
                    out.append(((i, j), region, piece))
                    continue
                buf, covered = self.partial.get((i, j)) or (
                    np.empty((cy1 - cy0, cx1 - cx0), block.dtype), np.zeros((cy1 - cy0, cx1 - cx0), bool))
                buf[iy0 - cy0:iy1 - cy0, ix0 - cx0:ix1 - cx0] = piece
                covered[iy0 - cy0:iy1 - cy0, ix0 - cx0:ix1 - cx0] = True
                if covered.all():
                    self.partial.pop((i, j), None)
                    self.done.add((i, j))
                    out.append(((i, j), region, buf))
                else:
                    self.partial[(i, j)] = (buf, covered)
        return out


class _SinkFeed:
    """A sink operator's own plan (:meth:`~snap_operators.core.operator.Operator.open`), fed tile by tile.

    The plan is opened with the first tile: its staged files (the area table, the
    label masks, the change tables) exist only while the run is on. Each cell of the
    chunk grid of the plan's array goes to the plan's target once, as soon as the
    tiles covering it are computed: the cell of the kernel's ``sink_output`` when it
    declares one, else the chunk computed from the plan's own array (e.g. the sieved
    class band, reading its halo through SNAP). The plan is committed after the last
    cell, and aborted if the run ends before.
    """

    def __init__(self, op: Any, output: str | None):
        self.op = op
        self.output = output
        self.plan = None
        self.cells: _Cells | None = None
        self.finished = False

    def add(self, rect: tuple[int, int, int, int], out: Mapping[str, np.ndarray]) -> None:
        """Take the outputs `out` of the target rectangle ``(x, y, w, h)``."""
        import dask

        if self.finished:
            return
        if self.plan is None:
            self.plan = _open_plan(self.op)
            if len(self.plan.arrays) != 1:
                raise OperatorError(f"{self.op.spec.alias}: a sink fed tile by tile streams one array, "
                                    f"not {len(self.plan.arrays)}")
            self.cells = _Cells(self.plan.arrays[0].chunks)
        array, target = self.plan.arrays[0], self.plan.targets[0]
        x, y, w, h = rect
        # Without a sink output only the coverage counts: a read-only view, no copy.
        tile = out[self.output] if self.output is not None else np.broadcast_to(False, (h, w))
        for (i, j), region, block in self.cells.add(y, x, tile):
            if self.output is None:
                with dask.config.set(scheduler="synchronous"):  # every Java call on SNAP's calling thread
                    block = array.blocks[i, j].compute()
            target[region] = block
        if self.cells.complete:
            self.finished = True
            try:
                self.plan.commit()
            except BaseException:
                self.plan.abort()
                raise

    def close(self) -> None:
        """Remove the staged outputs of a plan that was not committed."""
        if self.plan is not None and not self.finished:
            self.finished = True
            self.plan.abort()


def _open_plan(op: Any) -> Any:
    """`op`'s sink plan, opened as the engine opens it: first the staged leftovers of dead
    runs in its output folders go (gpt calls no ``dispose`` after a failed run, so a killed
    or failed gpt leaves its staged files for the next run to remove)."""
    from ..core import staging
    from ..core.outputs import sink_files

    staging.clean_stale({f.parent for f in sink_files(op)})
    return op.open()


# --- one run ---------------------------------------------------------------------------------


class _Run:
    """An initialized operator inside SNAP: the standalone operator, its tile kernel,
    the Java target and the sink of its scene-wide output."""

    def __init__(self, api: Any, context: Any, alias: str):
        import dask

        from ..core.context import ExecutionContext
        from ..core.operator import get_operator

        self.api = api
        self.alias = alias
        self.types = _Types(api)
        cls = get_operator(alias)
        named = [src.name for src in cls.spec.sources if not src.multiple and not src.name.startswith("sourceProduct")]
        java_sources = source_products(context, named)
        if not java_sources:
            raise OperatorError(f"{alias}: no source product")
        self.java_source = next(iter(java_sources.values()))
        pref = self.java_source.getPreferredTileSize()
        self.tile = (int(pref.height), int(pref.width)) if pref is not None else (DEFAULT_TILE, DEFAULT_TILE)
        sources = {sid: wrap_product(api, self.types, context, p, self.tile) for sid, p in java_sources.items()}
        inputs = {s.file_location for s in sources.values() if s.file_location}
        # SNAP's writers replace existing targets (there is no --overwrite in SNAP).
        exec_context = ExecutionContext(tile_size=max(self.tile), overwrite=True, input_files=inputs)
        raw = parameter_values(context, cls.spec)
        with dask.config.set(scheduler="synchronous"):  # every Java call on SNAP's calling thread
            self.op = cls.create(sources, raw, context=exec_context)
            self.op.target = self.op.initialize()
            if self.op.is_sink:
                self.op.prepare()
        kernel = self.op.tile_kernel()
        if kernel is None:
            raise OperatorError(f"{alias}: declares no tile kernel, so it cannot run tile by tile in SNAP")
        self.kernel = kernel
        source = self.op.source_product()
        self.inputs = {}
        for key, band_name in self.kernel.inputs.items():
            sid = (self.kernel.sources or {}).get(key)
            band = (self.op.sources[sid] if sid else source).band(band_name)
            fill = fill_value(band.dtype) if band.no_data is None or band.dtype.kind == "f" else band.no_data
            jproduct = java_sources[sid] if sid else self.java_source
            self.inputs[key] = (jproduct.getBand(band_name), band.dtype, fill)
        self.failed: str | None = None
        self.results = _TileResults(PENDING_TILE_BYTES)
        self.target, self.computed = self._target(len(source.metadata.elements))
        self.sink = _SinkFeed(self.op, kernel.sink_output) if self.op.is_sink else None

    # --- target ---
    def _target(self, inherited_elements: int) -> tuple[Any, dict[str, tuple[Any, np.dtype]]]:
        api, types, src, t = self.api, self.types, self.java_source, self.op.target
        h, w = t.scene_shape
        # SNAP's Product refuses a null or empty type (Guardian.assertNotNullOrEmpty): keep the source's,
        # else the engine's target type, else the operator's alias.
        kind = str(src.getProductType() or "").strip() or (t.product_type or "").strip() or self.op.spec.alias
        target = api.Product(t.name, kind, int(w), int(h))
        api.ProductUtils.copyGeoCoding(src, target)
        api.ProductUtils.copyMetadata(src, target)
        api.ProductUtils.copyTimeInformation(src, target)
        # The engine's target times are the operator's (ChangeDetection ends when 'after' does),
        # not necessarily the first source's, which copyTimeInformation took.
        if t.start_time is not None:
            target.setStartTime(java_utc(api, t.start_time))
        if t.stop_time is not None:
            target.setEndTime(java_utc(api, t.stop_time))
        tile = self.kernel.tile or self.tile
        target.setPreferredTileSize(tile[1], tile[0])
        computed: dict[str, tuple[Any, np.dtype]] = {}
        class_bands = []
        copied = False
        for band in t.bands.values():
            if band.name not in self.kernel.outputs:
                if api.ProductUtils.copyBand(band.name, src, target, True) is None:
                    raise OperatorError(f"{self.alias}: band '{band.name}' is not in the SNAP source product")
                copied = True
                continue
            dtype = self.kernel.outputs[band.name]
            if dtype.name not in types.type_code:
                raise OperatorError(f"{self.alias}: this SNAP has no {dtype.name} bands (band '{band.name}')")
            jband = target.addBand(band.name, types.type_code[dtype.name])
            if band.unit:
                jband.setUnit(band.unit)
            if band.description:
                jband.setDescription(band.description)
            if band.wavelength:
                jband.setSpectralWavelength(float(band.wavelength))
            if dtype.kind == "f":
                jband.setNoDataValue(float("nan"))
                jband.setNoDataValueUsed(True)
            elif band.no_data is not None:
                jband.setNoDataValue(float(band.no_data))
                jband.setNoDataValueUsed(True)
            if band.classes:
                self._index_coding(target, jband, band)
                class_bands.append(band)
            computed[band.name] = (jband, dtype)
        if copied:
            api.ProductUtils.copyMasks(src, target)
        for band in class_bands:
            self._class_masks(target, band)
        root = target.getMetadataRoot()
        for element in t.metadata.elements[inherited_elements:]:
            root.addElement(java_element(types, element))
        return target, computed

    def _index_coding(self, target: Any, jband: Any, band: Band) -> None:
        types = self.types
        coding = types.IndexCoding(band.name)
        for c in band.classes:
            coding.addIndex(c.name, int(c.value), c.description or "")
        target.getIndexCodingGroup().add(coding)
        jband.setSampleCoding(coding)
        points = [types.Point(float(c.value), types.Color(*map(int, c.color)), c.name) for c in band.classes]
        palette = types.ColorPaletteDef(self.api.jpy.array(_POINT, points), len(points))
        jband.setImageInfo(types.ImageInfo(palette))

    def _class_masks(self, target: Any, band: Band) -> None:
        if not _IDENTIFIER.match(band.name):
            log.warning("%s: no class masks for band '%s' (not a plain band-maths name)", self.alias, band.name)
            return
        group = target.getMaskGroup()
        for c in band.classes:
            slug = re.sub(r"[^0-9A-Za-z]+", "_", c.name).strip("_") or str(c.value)
            name = f"{band.name}_{slug}"
            if group.contains(name) or target.containsBand(name):
                if group.contains(name):
                    continue  # copied from the source with the band
                name = f"{name}_{c.value}"
            target.addMask(name, f"{band.name} == {int(c.value)}", f"{c.name} ({band.name} = {int(c.value)})",
                           self.types.Color(*map(int, c.color)), 0.5)

    # --- tiles ---
    def compute_band(self, context: Any, band: Any, tile: Any) -> None:
        """Fill `tile` of target band `band`: from the results of its rectangle, computed for
        every target band at once the first time one of them is asked for."""
        if self.failed is not None:
            raise OperatorError(f"{self.alias}: stopped after an earlier tile failed ({self.failed})")
        name = str(band.getName())
        if name not in self.computed:
            raise OperatorError(f"{self.alias}: band '{name}' is not computed by this operator")
        rect = tile.getRectangle()
        key = (int(rect.x), int(rect.y), int(rect.width), int(rect.height))
        out = self.results.take(key, name)
        if out is None:
            out = self._compute_rect(context, rect)
            self.results.put(key, out, set(self.computed) - {name})
        tile.setSamples(java_samples(out[name], self.computed[name][1]))

    def _compute_rect(self, context: Any, rect: Any) -> Mapping[str, np.ndarray]:
        target = (int(rect.x), int(rect.y), int(rect.width), int(rect.height))
        if self.kernel.context is None:
            tiles = {key: read_tile(context, jband, rect, dtype, fill) for key, (jband, dtype, fill) in self.inputs.items()}
            out = self.kernel.func(tiles)
        else:
            # The window is clipped to the scene; the kernel pads beyond it itself (NaN, or the
            # U-Net's mirror). SNAP's getSourceTile(band, rect, BorderExtender) would not do:
            # Tile.getSamplesFloat marks every pixel outside the raster invalid (NaN) for bands
            # with a no-data value (RasterDataNode.isPixelValid finds no valid-mask tile there).
            source = self.kernel.context(target)
            window = self.api.Rectangle(*source)
            tiles = {key: read_tile(context, jband, window, dtype, fill)
                     for key, (jband, dtype, fill) in self.inputs.items()}
            out = self.kernel.func(tiles, source, target)
        if self.sink is not None:
            self.sink.add(target, out)
        return out

    def fail(self, exc: BaseException) -> None:
        """Stop after a failed tile: unfinished outputs are removed now (SNAP calls no
        ``dispose`` after a failed run) and no later tile starts new ones."""
        if self.failed is None:
            self.failed = errors.one_line(str(exc) or type(exc).__name__)
        self.close()

    def close(self) -> None:
        self.results.clear()
        if self.sink is not None:
            self.sink.close()


class _TileResults:
    """Results of computed rectangles whose other target bands SNAP has not asked for yet.

    SNAP asks for each target band's tile separately (``computeTile``); the operator
    computes all its bands of a rectangle at once and keeps the rest here until they
    are asked for. Bands nobody reads (an index no node uses) would stay forever, so
    the oldest results go beyond `max_bytes`; asked for later, they are computed again
    (the same values: tile functions are pure).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: collections.OrderedDict = collections.OrderedDict()

    def take(self, key, name: str) -> Mapping[str, np.ndarray] | None:
        entry = self.entries.get(key)
        if entry is None or name not in entry[1]:
            return None
        out, pending, size = entry
        pending.discard(name)
        if not pending:
            del self.entries[key]
            self.bytes -= size
        return out

    def put(self, key, out: Mapping[str, np.ndarray], pending: set[str]) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
        if not pending:
            return
        size = sum(a.nbytes for a in out.values())
        self.entries[key] = (out, pending, size)
        self.bytes += size
        while self.bytes > self.max_bytes and len(self.entries) > 1:
            _, (_, _, dropped) = self.entries.popitem(last=False)
            self.bytes -= dropped

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0


#: Bytes of computed tiles kept for target bands SNAP has not asked for yet.
PENDING_TILE_BYTES = 256 * 2**20


class SnapOperator:
    """Base of the SNAP Python operators: SNAP's ``PyOperatorDelegate`` protocol.

    Subclasses made by :func:`make_operator_class` set ``alias`` (our
    operator) and ``api`` (the Java API module; None means ``esa_snappy``).

    The operators implement ``computeTile``, not ``computeTileStack``: SNAP then
    computes each target band's tiles in a plain ``OperatorImage`` without the
    per-tile locks of ``OperatorImageTileStack``. esa_snappy's ``PyOperator``
    runs all Python under one lock (``synchronized (PyLib.class)``), so with tile
    locks two end nodes reading one Python operator (``Write`` and
    ``LabelMaskExport`` beside it) deadlock: a thread holding a tile's lock
    waits for the Python lock, held by a thread inside another Python operator
    that asks for that very tile. Without them the Python lock is the only lock
    on the way to a tile, and it is reentrant.
    """

    alias: ClassVar[str] = ""
    api: ClassVar[Any] = None

    def __init__(self):
        self._run: _Run | None = None

    def initialize(self, context) -> None:
        """Read parameters and sources, initialize our operator, set the Java target product."""
        self.dispose(context)
        run = _Run(java_api(self.api), context, self.alias)
        context.setTargetProduct(run.target)
        self._run = run

    def computeTile(self, context, band, tile) -> None:
        """Fill one tile of one target band (all target bands of its rectangle are computed together)."""
        run = self._run
        if run is None:
            raise OperatorError(f"{self.alias}: computeTile called before initialize")
        try:
            run.compute_band(context, band, tile)
        except BaseException as exc:
            run.fail(exc)
            raise

    def dispose(self, context) -> None:
        """Release the run; scene-wide outputs not finished by then are removed."""
        run, self._run = self._run, None
        if run is not None:
            run.close()


def make_operator_class(alias: str, api: Any = None) -> type:
    """The SNAP Python operator class for our operator `alias`.

    Parameters
    ----------
    alias : str
        An operator of :data:`~snap_operators.snap.descriptors.PLUGIN_OPERATORS`
        (``SpectralIndices``, ``CloudMask``, ``ProgressiveClassifier``...).
    api : module, optional
        SNAP's Java API as esa_snappy exposes it; default ``esa_snappy``,
        imported when SNAP first initializes the operator.

    Returns
    -------
    type
        A class named as the descriptor says (``SpectralIndicesOp``) with
        ``initialize``, ``computeTile`` and ``dispose``, instantiated by SNAP
        without arguments.
    """
    from ..core.operator import get_operator
    from .descriptors import PLUGIN_OPERATORS, plugin_operator

    try:
        name = plugin_operator(alias).class_name
    except KeyError:
        known = ", ".join(op.alias for op in PLUGIN_OPERATORS)
        raise SnapPcError(f"no SNAP adapter for operator '{alias}'; adapters exist for {known}") from None
    spec = get_operator(alias).spec
    return type(name, (SnapOperator,), {
        "alias": alias,
        "api": api,
        "__doc__": f"SNAP Python operator {alias}: {spec.description}",
        "__module__": __name__,
        "__qualname__": name,
    })
