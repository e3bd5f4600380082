"""The ``LabelMaskExport`` operator: vector label masks from a class band.

A sink: it streams a class band (``class_id`` of the ProgressiveClassifier)
chunk by chunk through :mod:`snap_operators.science.vectorize` and writes one polygon
feature per connected region, with its class and true area, to a GeoPackage,
Shapefile, GeoJSON or FlatGeobuf file, the format named by the file's
extension unless ``formatName`` says otherwise; beside it a QGIS style
(``<stem>.qml``; for GeoPackage also inside the file) and a per-class area
table of the polygons (``<stem>_areas.csv``, columns ``vector_area_m2`` and
``vector_area_km2``: after the ``minArea`` sieve, unlike the classifier's raster
table). See ``docs/label_masks.md``. Masked regions
(class 254: cloud, cloud shadow, snow; not land cover) are exported as
features of their own, ``class_name`` "Masked: cloud, shadow, snow", unless
``includeMasked`` is false; training (``snap-pc dataset``) never learns them.

The change band of ``ChangeDetection`` (:func:`snap_operators.science.change.change_coding`)
is exported as change polygons: layer ``change``, fields ``change_code``
(the code), ``from_class``, ``from_name``, ``to_class``, ``to_name``, and an area
table with the same columns. An empty ``file`` exports nothing: the rest of
the graph runs (``-Plabels=``).

Regions that end inside a chunk are written as soon as the chunk is
computed; regions crossing chunk borders wait, as pieces, for their
neighbouring chunks and are merged exactly. Everything is written under
hidden staged names (:mod:`snap_operators.core.staging`), checked when the layer
is closed (feature count; a GeoPackage's spatial index and integrity, which
GDAL may fail to write on a full disk without raising) and renamed into
place only when every output of the run is complete; on failure nothing is
left.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import glob
import io
import logging
import math
import os
import queue
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import ProductWriteError, SnapPcError, describe, node_label
from ..core.legend import (
    LAND_COVER,
    MASKED,
    MASKED_INFO,
    NO_DATA,
    UNCLASSIFIED,
    UNCLASSIFIED_INFO,
)
from ..core.operator import Operator, TileKernel, register
from ..core.outputs import output_problem, stage_text
from ..core.product import Band, ClassInfo, Product
from ..core.spec import OperatorSpec, Parameter, SourceSpec
from ..core.staging import StagedFiles, remove
from ..core.streaming import SinkPlan
from ..grid.areas import row_pixel_areas_m2
from ..io.qgis_style import categorized_qml, store_gpkg_style
from ..science import change, vectorize

#: formatName -> (extensions accepted, extension added).
FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "GPKG": ((".gpkg",), ".gpkg"),
    "ESRI Shapefile": ((".shp",), ".shp"),
    "GeoJSON": ((".geojson", ".json"), ".geojson"),
    "FlatGeobuf": ((".fgb",), ".fgb"),
}
#: Format of a file named without an extension when no formatName is given.
DEFAULT_FORMAT = "GPKG"

#: Files a Shapefile consists of (written: .shp .shx .dbf .prj .cpg).
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")

#: Largest sieve halo (pixels) the tiled sieve accepts; chains get shorter
#: for large minimum areas so the halo stays within it.
MAX_SIEVE_DEPTH = 1024

#: Area columns of the area table ``<stem>_areas.csv``: areas of the exported polygons, after the
#: sieve (``minArea``); the classifier's table has the raster's, ``raster_area_km2``.
TABLE_AREAS = ("regions", "vector_area_m2", "vector_area_km2")
#: Layer name of label masks, and of change polygons, when ``layerName`` is empty.
LAYER = "label_masks"
CHANGE_LAYER = "change"

#: Record batches waiting for the layer writer (each one chunk's regions).
MAX_PENDING_BATCHES = 8
#: GeoPackage version written (GDAL VERSION creation option): the one GDAL 3.6 reads without a warning.
GPKG_VERSION = "1.2"

log = logging.getLogger(__name__)

_INTEGER_KINDS = "iu"
_UNKNOWN_COLOR = (128, 128, 128)


def output_path(file: str | os.PathLike, format_name: str) -> Path:
    """`file` with the format's extension added unless it already ends with one (as SNAP's Write does)."""
    path = Path(os.path.expanduser(str(file))).absolute()
    accepted, added = FORMATS[format_name]
    if path.suffix.lower() in accepted:
        return path
    return path.with_name(path.name + added)


def format_of(file: str | os.PathLike) -> str | None:
    """The format whose extension `file` ends with; :data:`DEFAULT_FORMAT` without one; None for another.

    >>> format_of("labels.shp"), format_of("labels.JSON"), format_of("labels"), format_of("labels.kml")
    ('ESRI Shapefile', 'GeoJSON', 'GPKG', None)
    """
    suffix = Path(str(file)).suffix.lower()
    if not suffix:
        return DEFAULT_FORMAT
    return next((name for name, (accepted, _) in FORMATS.items() if suffix in accepted), None)


def supported_extensions() -> str:
    """The extensions :func:`format_of` knows, for messages: ``.gpkg (GPKG), .shp (ESRI Shapefile), ...``."""
    return ", ".join(f"{' or '.join(accepted)} ({name})" for name, (accepted, _) in FORMATS.items())


@dataclass(frozen=True)
class LayerSchema:
    """What one exported band value becomes: a layer's fields and their values.

    Attributes
    ----------
    layer : str
        Layer name used when ``layerName`` is empty.
    code : str
        The integer field holding the band value (the QGIS style categorizes on it).
    attributes : tuple of (str, str)
        The fields describing a value, after `code`: ``(name, "int" | "str")``.
    describe : callable
        ``describe(value) -> tuple``: the values of `attributes` (None: null).
    """

    layer: str
    code: str
    attributes: tuple[tuple[str, str], ...]
    describe: Callable[[int], tuple]

    @property
    def fields(self) -> tuple[str, ...]:
        """Attribute columns of a feature, in order (the geometry column ``geom`` comes last)."""
        return (self.code, *(name for name, _ in self.attributes), "area_m2", "area_km2")

    @property
    def table_columns(self) -> tuple[str, ...]:
        """Columns of the area table ``<stem>_areas.csv``."""
        return (self.code, *(name for name, _ in self.attributes), *TABLE_AREAS)

    def in_format(self, format_name: str) -> "LayerSchema":
        """The fields as `format_name` stores them: a Shapefile's dBase table keeps 10 characters of a name
        (``change_code`` becomes ``change_cod``, as GDAL would cut it, but said here and in the style)."""
        if format_name != "ESRI Shapefile":
            return self
        return dataclasses.replace(self, code=self.code[:10],
                                   attributes=tuple((name[:10], kind) for name, kind in self.attributes))


def class_schema(legend: dict[int, ClassInfo]) -> LayerSchema:
    """Label masks: ``class_id`` and ``class_name`` (the legend's, else ``class N``)."""

    def describe(value: int) -> tuple:
        c = legend.get(value)
        return (c.name if c is not None else f"class {value}",)

    return LayerSchema(LAYER, "class_id", (("class_name", "str"),), describe)


def change_schema(coding: change.ChangeCoding) -> LayerSchema:
    """Change polygons: ``change_code`` (the code of the change band and of the transition matrix), then
    ``from_class``, ``from_name``, ``to_class``, ``to_name`` (in a Shapefile ``change_cod``: :meth:`LayerSchema.in_format`).

    Regions of "No change" (code 0, exported only with ``includeUnclassified``) have null from/to fields:
    their class is the same on both dates but not known from the change band.
    """

    def describe(code: int) -> tuple:
        pair = coding.decode(code)
        if pair is None:
            return (None, None, None, None)
        a, b = pair
        return (a, coding.name(a), b, coding.name(b))

    attributes = (("from_class", "int"), ("from_name", "str"), ("to_class", "int"), ("to_name", "str"))
    return LayerSchema(CHANGE_LAYER, "change_code", attributes, describe)


#: Attribute columns of a label mask feature (the geometry column is ``geom``).
FIELDS = class_schema({}).fields
#: Attribute columns of a change polygon (the change band of ChangeDetection).
CHANGE_FIELDS = change_schema(change.ChangeCoding(10, {})).fields


@register
class LabelMaskExport(Operator):
    """Exports the regions of a class band as polygons with class and area."""

    spec = OperatorSpec(
        alias="LabelMaskExport",
        description="Exports the connected regions of a class band as polygon label masks with class and area.",
        category="Raster/Export",
        sources=(SourceSpec("sourceProduct", "The product holding the class band."),),
        parameters=(
            Parameter(
                "file", "File",
                description="The output vector file; empty: nothing is exported (the rest of the graph runs).",
            ),
            Parameter(
                "formatName", "String", value_set=tuple(FORMATS),
                description="Vector format; empty: the one the extension of 'file' names (.gpkg GPKG, "
                ".shp ESRI Shapefile, .geojson or .json GeoJSON, .fgb FlatGeobuf; no extension: GPKG). "
                "A format given is written as SNAP's Write does: its extension is appended to 'file' "
                "unless the name ends with it.",
            ),
            Parameter("sourceBand", "String", default="class_id", description="The class band to vectorize."),
            Parameter(
                "connectivity", "int", default=4, value_set=("4", "8"),
                description="Pixel connectivity of regions: 4 (edges; GDAL's default, valid simple polygons) "
                "or 8 (edges and corners; regions touching at corners become multipolygons).",
            ),
            Parameter(
                "minArea", "double", default=0.0, interval="[0,*)", unit="m^2",
                description="Minimum mapping unit: regions smaller than this are merged into a neighbouring "
                "region before export (a sieve); 0 keeps every region.",
            ),
            Parameter(
                "simplify", "double", default=0.0, interval="[0,*)", unit="CRS units",
                description="Simplification tolerance; shared boundaries stay shared (no gaps or overlaps); "
                "0 keeps the exact pixel outlines.",
            ),
            Parameter(
                "layerName", "String",
                description="Layer name (GPKG, GeoJSON, FlatGeobuf); empty: label_masks, or change for the "
                "change band of ChangeDetection.",
            ),
            Parameter(
                "includeUnclassified", "boolean", default=False,
                description="Also export regions of class 0 (unclassified; 'No change' of a change band).",
            ),
            Parameter(
                "includeMasked", "boolean", default=True,
                description="Also export regions of class 254 (masked: cloud, cloud shadow, snow; not land cover), "
                "so users see where the map could not look.",
            ),
            Parameter(
                "areaTable", "boolean", default=True,
                description="Write the per-class area table <stem>_areas.csv beside the output: regions and "
                "area of the exported polygons (vector_area_m2, vector_area_km2), after the minArea sieve.",
            ),
        ),
        sink=True,
    )

    #: Parameters naming what this node writes (all others that name files are read).
    output_parameters = ("file",)

    # --- GPF ------------------------------------------------------------------------
    def initialize(self) -> Product:
        """Check the class band and parameters; the target is the source itself.

        With an empty ``file`` nothing is checked and nothing will be written
        (one log line says so): the node is no sink then (:attr:`is_sink`).
        """
        source = self.source_product()
        self.outputs = []
        file = self.parameters.get("file")
        label = node_label(self.spec.alias, self.node_id)
        if not file:
            log.warning("%s: parameter 'file' is empty: no vector export (the rest of the graph runs)", label)
            return source
        fmt = self.format_name  # refuses an extension no format has, before any work
        named = format_of(file)
        if named not in (None, fmt) and Path(str(file)).suffix:
            log.warning("%s: formatName is %s but '%s' has the extension of %s: writing '%s' (the format's "
                        "extension is appended, as SNAP's Write does); leave formatName empty to write what the "
                        "name says", label, fmt, Path(str(file)).name, named, self.output_path.name)
        band = self.class_band
        if band.dtype.kind not in _INTEGER_KINDS or band.dtype.itemsize > 4 or band.dtype == np.uint32:
            raise self.error(f"band '{band.name}' is {band.dtype}, not an integer class band (uint8/16, int16/32)")
        if band.transform is None:
            raise self.error(f"band '{band.name}' has no map geocoding; cannot place polygons")
        if source.crs is None:
            raise self.error(f"product '{source.name}' has no CRS; areas in m² need one")
        self.sieve_size()  # validates minArea against the halo limit
        return source

    @property
    def is_sink(self) -> bool:
        """True unless ``file`` is empty: then the node writes nothing and the graph runs without it."""
        return bool(self.parameters.get("file"))

    @property
    def format_name(self) -> str:
        """``formatName``, else the format the extension of ``file`` names (:func:`format_of`).

        Raises
        ------
        OperatorError
            ``formatName`` is empty and the extension is none of :data:`FORMATS`' (one line listing them).
        """
        given = self.parameters.get("formatName")
        if given:
            return given
        raw = str(self.parameters.get("file") or "")
        found = format_of(raw)
        if found is None:
            raise self.error(f"cannot tell the vector format of '{Path(raw).name}' from its extension "
                             f"'{Path(raw).suffix}': supported are {supported_extensions()}")
        return found

    @property
    def coding(self) -> change.ChangeCoding | None:
        """How the band codes transitions when it is ChangeDetection's change band, else None."""
        return change.change_coding(self.source_product(), self.class_band)

    @property
    def schema(self) -> LayerSchema:
        """Fields of the features and the area table: a change band's (:func:`change_schema`) or a class band's."""
        coding = self.coding
        return change_schema(coding) if coding is not None else class_schema(self.legend())

    @property
    def layer_name(self) -> str:
        return self.parameters.get("layerName") or self.schema.layer

    @functools.cached_property
    def class_band(self) -> Band:
        name = self.parameters.get("sourceBand") or "class_id"
        source = self.source_product()
        if not source.has_band(name):
            raise self.error(f"product '{source.name}' has no band '{name}'; bands: {source.bands_listed()}")
        band = source.band(name)
        # a class map written with its margin is float32 (one sample type per GeoTIFF)
        return change.whole_classes(band) if band.dtype.kind == "f" and band.classes else band

    @property
    def output_path(self) -> Path:
        """The vector file, with the format's extension ensured."""
        raw = self.parameters.get("file")
        if not raw:
            raise self._fail("parameter 'file' is required")
        return output_path(raw, self.format_name)

    @property
    def no_data(self) -> int:
        nd = self.class_band.no_data
        return int(nd) if nd is not None and not (isinstance(nd, float) and math.isnan(nd)) else NO_DATA

    def final_paths(self) -> list[Path]:
        """Every file a successful run writes (vector file and its sidecars)."""
        path = self.output_path
        files = [path]
        if self.format_name == "ESRI Shapefile":
            files += [path.with_suffix(ext) for ext in (".shx", ".dbf", ".prj", ".cpg")]
        files.append(path.with_suffix(".qml"))
        if self.parameters.get("areaTable", True):
            files.append(path.with_name(path.stem + "_areas.csv"))
        return files

    def legend(self) -> dict[int, ClassInfo]:
        """Value -> ClassInfo: the band's classes, else the project legend.

        A change band's categories are its transitions, "No change" (0) included; masked pixels
        are no-data there, so 254 is no category of it.
        """
        band = self.class_band
        if self.coding is not None:
            return {int(c.value): c for c in band.classes or ()}
        legend = {int(c.value): c for c in band.classes or LAND_COVER}
        legend.setdefault(UNCLASSIFIED, UNCLASSIFIED_INFO)
        if band.dtype.itemsize == 1:  # 254 is the masked class only in uint8 class maps
            legend.setdefault(MASKED, MASKED_INFO)
        return legend

    @property
    def sieved(self) -> bool:
        """Whether regions below ``minArea`` are merged first: the export then streams the
        sieved class band, not the class band itself."""
        return self.sieve_size()[0] > 1

    def tile_kernel(self) -> TileKernel:
        """The class band passed through tile by tile (the target is the source); its tiles are the
        export's chunks unless sieved, when a host computes the sieved chunks from the band."""
        band = self.class_band
        name = band.name
        return TileKernel(func=lambda tiles: {name: tiles[name]}, inputs={name: name}, outputs={name: band.dtype},
                          sink_output=None if self.sieved else name)

    def sieve_size(self) -> tuple[int, int]:
        """``(pixels, hops)`` of the sieve: regions below `pixels` are merged."""
        min_area = float(self.parameters.get("minArea") or 0.0)
        if min_area <= 0:
            return 0, vectorize.SIEVE_HOPS
        band = self.class_band
        pixel = row_pixel_areas_m2(band.transform, self.source_product().crs, band.shape)[band.height // 2]
        size = max(1, math.ceil(min_area / pixel - 1e-9))
        if size <= 1:
            return 0, vectorize.SIEVE_HOPS
        hops = min(vectorize.SIEVE_HOPS, MAX_SIEVE_DEPTH // (size - 1) - 1)
        if hops < 1:
            largest = (MAX_SIEVE_DEPTH // 2 + 1) * pixel
            raise self.error(
                f"minArea {min_area:g} m² is {size} pixels; the tiled sieve handles up to {largest:g} m² "
                f"({MAX_SIEVE_DEPTH // 2 + 1} pixels)"
            )
        return size, hops

    # --- sink protocol ----------------------------------------------------------------
    def prepare(self) -> None:
        """Check the target without touching the disk.

        Raises
        ------
        ProductWriteError
            The target is one of the graph's inputs, exists (without
            ``overwrite``), or its folder is missing or not writable.
        """
        problem = output_problem(self.final_paths(), self.context)
        if problem:
            raise self._fail(problem)

    def open(self) -> SinkPlan:
        """Open the temporary outputs; the plan streams the (sieved) class band."""
        classes = self.class_band.data
        if self.sieved:
            size, hops = self.sieve_size()
            classes = vectorize.sieve_dask(classes, size, self.connectivity, self.no_data, hops)
        export = _Export(self, classes.chunks)
        try:
            export.open()
        except BaseException:
            export.abort()
            raise

        def publish() -> None:
            export.publish()
            self.outputs = [str(p) for p in export.written]

        return SinkPlan([classes], [export], export.finish, export.abort,
                        description=f"{self.format_name} {self.output_path}", publish=publish)

    def output_files(self) -> list[Path]:
        """Every path this node writes (see :meth:`final_paths`); none with an empty ``file``."""
        return self.final_paths() if self.is_sink else []

    def execute(self, progress=None) -> None:
        """Initialize, then export; with an empty ``file`` nothing (:meth:`initialize` logs it)."""
        if self.target is None:
            self.target = self.initialize()
        if self.is_sink:
            super().execute(progress)

    @property
    def connectivity(self) -> int:
        return int(self.parameters.get("connectivity") or 4)

    def _fail(self, message: str) -> ProductWriteError:
        return ProductWriteError(str(self.error(message)))


class _Export:
    """The block target of one export: polygonizes chunks, merges, writes.

    ``export[(rows, cols)] = block`` may be called from several threads in any
    order; polygonization runs unlocked, the region bookkeeping and the file
    writes each under a lock.
    """

    def __init__(self, op: LabelMaskExport, chunks):
        self.op = op
        band = op.class_band
        self.transform = band.transform
        self.crs = op.source_product().crs
        self.row_areas = row_pixel_areas_m2(self.transform, self.crs, band.shape)
        self.no_data = op.no_data
        self.include0 = bool(op.parameters.get("includeUnclassified"))
        self.include_masked = bool(op.parameters.get("includeMasked", True))
        # A change band has no masked class (masked pixels are its no-data): its code 254, a transition
        # of a base-100 legend, is exported like any other.
        self.masked = MASKED if op.coding is None else None
        self.connectivity = op.connectivity
        tolerance = float(op.parameters.get("simplify") or 0.0)
        sx = math.hypot(self.transform.a, self.transform.d)
        sy = math.hypot(self.transform.b, self.transform.e)
        self.tolerance_px = tolerance / sx if tolerance > 0 else 0.0
        self.y_scale = sy / sx
        self.exact = self.tolerance_px == 0
        self.merger = vectorize.RegionMerger(chunks[0], chunks[1], self.connectivity)
        self.legend = op.legend()
        self.schema = op.schema
        self.format_name = op.format_name
        self.layer = op.layer_name
        self.final = op.final_paths()
        self.path = self.final[0]
        self.staged = StagedFiles()
        self.tmp_main = self.staged.add(self.path)
        self.stats: dict[int, list] = {}
        self.features = 0
        self.written: list[Path] = []
        self._merge_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._sink = None
        self._writer = None  # kept after close so abort can still wait for its thread
        self._closed = False

    # --- files ---
    def _tmp(self, suffix: str) -> Path:
        """A file the driver writes beside the staged main file (Shapefile parts, GPKG journal)."""
        return self.tmp_main.with_suffix(suffix)

    def open(self) -> None:
        self._sink = self._writer = _LayerWriter(
            self.tmp_main, self.format_name, self.layer, self.schema.in_format(self.format_name), self.crs.to_wkt(),
            self.op._fail,
        )

    # --- streaming ---
    def __setitem__(self, region: tuple[slice, slice], block: np.ndarray) -> None:
        origin = (region[0].start or 0, region[1].start or 0)
        block = np.asarray(block)
        exported = block != self.no_data
        if not self.include0:
            exported &= block != UNCLASSIFIED
        if not self.include_masked and self.masked is not None:
            exported &= block != self.masked
        index = self.merger.index(origin)
        part = vectorize.polygonize_chunk(
            block, origin, exported, self.merger.internal_sides(index), self.connectivity, self.tolerance_px,
            self.y_scale,
        )
        self._write(part.complete)
        with self._merge_lock:
            done = self.merger.add(index, part)
        if done:
            self._write([(v, vectorize.merge_pieces(p, self.exact, self.connectivity)) for v, p in done])

    def _write(self, regions: list) -> None:
        if not regions:
            return
        values = np.array([v for v, _ in regions], dtype=np.int64)
        geoms_px = np.array([g for _, g in regions], dtype=object)
        areas = vectorize.areas_m2(geoms_px, self.row_areas)
        wkb = vectorize.multipolygon_wkb(geoms_px, self.transform)
        classes, index = np.unique(values, return_inverse=True)
        described = [self.schema.describe(v) for v in classes.tolist()]
        attributes = [np.array([d[k] for d in described], dtype=object)[index]
                      for k in range(len(self.schema.attributes))]
        counts = np.bincount(index, minlength=len(classes)).tolist()
        sums = np.bincount(index, weights=areas, minlength=len(classes)).tolist()
        with self._write_lock:
            if self._closed:
                raise ProductWriteError(str(self.op.error("export already finished")))
            self._sink.put(values, attributes, areas, wkb)
            self.features += len(values)
            for v, n, a in zip(classes.tolist(), counts, sums):
                s = self.stats.setdefault(v, [0, 0.0])
                s[0] += n
                s[1] += a

    # --- end ---
    def classes(self) -> list[ClassInfo]:
        """Exported classes in legend order, then any others seen."""
        wanted = [c for v, c in sorted(self.legend.items()) if v != self.no_data and (v != UNCLASSIFIED or self.include0)
                  and (v != self.masked or (self.include_masked and v in self.stats))]
        known = {c.value for c in wanted}
        extra = [ClassInfo(v, f"class {v}", _UNKNOWN_COLOR) for v in sorted(self.stats) if v not in known]
        return wanted + extra

    def finish(self) -> None:
        """Close the layer, add style and area table, verify; everything stays staged.

        Raises
        ------
        ProductWriteError
            Anything failed (the staged files are removed).
        """
        try:
            if self.merger.open_regions:
                raise self.op._fail(f"{self.merger.open_regions} regions still wait for chunks that never came")
            with self._write_lock:
                self._closed = True
                sink, self._sink = self._sink, None
            sink.close()
            classes = self.classes()
            qml = categorized_qml(classes, self.schema.in_format(self.format_name).code, self.layer)
            if self.format_name == "GPKG":
                store_gpkg_style(self.tmp_main, self.layer, qml, "geom", self.layer, "LabelMaskExport class style")
            self._verify()
            if self.format_name == "ESRI Shapefile":
                for ext in SHAPEFILE_PARTS:
                    if ext != ".shp" and self._tmp(ext).exists():
                        self.staged.attach(self._tmp(ext), self.path.with_suffix(ext))
            stage_text(self.staged, self.path.with_suffix(".qml"), qml)
            if self.op.parameters.get("areaTable", True):
                stage_text(self.staged, self.path.with_name(self.path.stem + "_areas.csv"), self._area_table(classes))
        except SnapPcError:
            self.abort()
            raise
        except Exception as exc:
            self.abort()
            raise self.op._fail(f"cannot write '{self.path}': {describe(exc)}") from None

    def _verify(self) -> None:
        """Check the closed staged layer holds every feature (and, in a GeoPackage, its spatial index).

        GDAL builds a GeoPackage's R-tree when the layer closes and only logs
        a failure there (a full disk): the file then opens, but without the
        index or with a damaged page.
        """
        hint = "the disk may be full, or a file size limit reached"
        if self.format_name == "GPKG":
            table = self.layer.replace('"', '""')
            try:
                check = gpkg_query(self.tmp_main, "PRAGMA quick_check")
                n = gpkg_query(self.tmp_main, f'SELECT count(*) FROM "{table}"')[0]
                # Without R*Tree in the SQLite GDAL runs on, no index is ever built: nothing to check.
                rtree = gpkg_query(self.tmp_main, f'SELECT count(*) FROM "rtree_{table}_geom"')[0] \
                    if gdal_builds_rtree() else n
            except Exception as exc:  # noqa: BLE001 - any driver error means an unreadable file
                raise self.op._fail(f"cannot write '{self.path}': the GeoPackage or its spatial index is "
                                    f"incomplete ({hint}): {describe(exc)}") from None
            check = "; ".join(map(str, check[:3])) or "no answer"
            if check != "ok":
                raise self.op._fail(f"cannot write '{self.path}': the GeoPackage is damaged ({hint}): {check}")
            if n != self.features or rtree != self.features:
                raise self.op._fail(f"cannot write '{self.path}': {n} features and {rtree} index entries of "
                                    f"{self.features} written ({hint})")
            return
        import pyogrio

        try:
            n = pyogrio.read_info(str(self.tmp_main), force_feature_count=True)["features"]
        except Exception as exc:  # noqa: BLE001 - any driver error means an unreadable file
            raise self.op._fail(f"cannot write '{self.path}': the file written is unreadable ({hint}): "
                                f"{describe(exc)}") from None
        if n != self.features:
            raise self.op._fail(f"cannot write '{self.path}': {n} of {self.features} features written ({hint})")

    def _area_table(self, classes: list[ClassInfo]) -> str:
        """CSV text: per class (or transition) the regions exported and their summed area (m², km²)."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(self.schema.table_columns)
        for c in classes:
            n, area = self.stats.get(int(c.value), (0, 0.0))
            described = ["" if v is None else v for v in self.schema.describe(int(c.value))]
            w.writerow([int(c.value), *described, n, repr(float(area)), repr(float(area) / 1e6)])
        return buf.getvalue()

    def publish(self) -> None:
        """Rename the staged files into place; parts of a replaced Shapefile this one lacks go."""
        if self.format_name == "ESRI Shapefile":
            staged = {dst for _, dst in self.staged.moves}
            for ext in SHAPEFILE_PARTS:
                old = self.path.with_suffix(ext)
                if old not in staged:
                    remove(old)
        self.staged.publish()
        self.written = list(self.staged.published)

    def commit(self) -> None:
        """:meth:`finish` and :meth:`publish` (an export used on its own)."""
        self.finish()
        self.publish()

    def abort(self) -> None:
        """Stop the layer writer, wait for its thread, remove every staged file; never raises."""
        with self._write_lock:
            self._closed = True
            self._sink = None
        if self._writer is not None:
            self._writer.abort()  # also after close() was cut short: its thread must end before we return
        self.merger.finish()
        self.staged.abort()
        prefix = self.tmp_main.name[: -len(self.tmp_main.suffix) or None]
        for p in self.path.parent.glob(glob.escape(prefix) + "*"):  # what the driver added (parts, journal)
            remove(p)


class _LayerWriter:
    """One vector layer written by GDAL from record batches, on its own thread.

    ``pyogrio.write_arrow`` consumes a stream of Arrow record batches (the
    schema's fields, WKB geometry) fed through a bounded queue by
    :meth:`put`: the dataset stays open for the whole export, its features go
    through GDAL's Arrow batch path (no per-feature Python objects), and a
    GeoPackage's spatial index is built once, in bulk, when the layer closes
    (appending to an indexed layer updates the R-tree feature by feature).

    Parameters
    ----------
    path : pathlib.Path
        The file to create.
    driver, layer : str
        OGR driver and layer name.
    schema : LayerSchema
        The attribute fields.
    crs_wkt : str
    fail : callable
        ``fail(message) -> Exception``: the error raised for a failed write.
    """

    _END = object()

    def __init__(self, path: Path, driver: str, layer: str, schema: LayerSchema, crs_wkt: str, fail):
        import pyarrow as pa

        self.path = path
        self._fail = fail
        self._pa = pa
        kinds = {"int": pa.int64(), "str": pa.string()}
        self._schema = pa.schema([
            (schema.code, pa.int64()),
            *((name, kinds[kind]) for name, kind in schema.attributes),
            ("area_m2", pa.float64()),
            ("area_km2", pa.float64()),
            pa.field("geom", pa.binary(), metadata={"ARROW:extension:name": "geoarrow.wkb"}),
        ])
        self._queue: queue.Queue = queue.Queue(MAX_PENDING_BATCHES)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        options: dict = {"layer": layer}
        if driver == "ESRI Shapefile":
            options = {"encoding": "UTF-8"}  # also writes the .cpg
        elif driver == "GPKG":
            # GeoPackage 1.2: GDAL 3.6 (many QGIS LTR installs) warns that 1.4 "may only be
            # partially supported", and nothing written here needs 1.3 or 1.4
            options["dataset_options"] = {"VERSION": GPKG_VERSION}
        self._thread = threading.Thread(
            target=self._run, args=(driver, crs_wkt, options), name=f"write {path.name}", daemon=True,
        )
        self._thread.start()

    def _batches(self):
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    raise RuntimeError("export aborted") from None
                continue
            if item is self._END:
                return
            yield item

    def _run(self, driver: str, crs_wkt: str, options: dict) -> None:
        from pyogrio.raw import write_arrow

        stream = self._pa.RecordBatchReader.from_batches(self._schema, self._batches())
        try:
            write_arrow(stream, str(self.path), driver=driver, geometry_name="geom", geometry_type="MultiPolygon",
                        crs=crs_wkt, **options)
        except BaseException as exc:  # handed to the streaming threads
            self._error = exc
            self._stop.set()

    def put(self, values: np.ndarray, attributes: list[np.ndarray], areas: np.ndarray, wkb: np.ndarray) -> None:
        """Queue one batch of features (`attributes`: one column per schema attribute); blocks while the
        writer is behind."""
        pa = self._pa
        types = [f.type for f in self._schema][1:1 + len(attributes)]
        batch = pa.record_batch(
            [pa.array(values, pa.int64()), *(pa.array(a, t) for a, t in zip(attributes, types)),
             pa.array(areas, pa.float64()), pa.array(areas / 1e6, pa.float64()), pa.array(wkb, pa.binary())],
            schema=self._schema,
        )
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._fail(f"cannot write '{self.path.name}': {describe(self._error)}") from None
        if self._stop.is_set() or not self._thread.is_alive():
            raise self._fail("the export was aborted")

    def close(self) -> None:
        """End the stream, wait for GDAL to close the file; raise its error if any."""
        while self._thread.is_alive():
            try:
                self._queue.put(self._END, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        if self._error is not None:
            raise self._fail(f"cannot write '{self.path.name}': {describe(self._error)}") from None

    def abort(self) -> None:
        """Stop the writer and wait for it to let go of the file; never raises."""
        self._stop.set()
        self._thread.join()


def gpkg_query(path, sql: str) -> list:
    """The first column of `sql`'s rows on a GeoPackage, read by a SQLite that can read it.

    Python's ``sqlite3`` and GDAL may run on different SQLite libraries in one process: one
    loaded after TensorFlow binds to TensorFlow's, which lacks the R*Tree module. Where GDAL
    built the spatial index and Python's ``sqlite3`` cannot read it (``sqlite3`` first used after
    TensorFlow was imported, GDAL before), GDAL reads the file; elsewhere ``sqlite3`` does (GDAL
    on TensorFlow's SQLite crashes on some statements).
    """
    if gdal_builds_rtree() and not python_sqlite_has_rtree():
        from pyogrio.raw import read

        _, _, _, columns = read(str(path), sql=sql, read_geometry=False)
        return columns[0].tolist() if len(columns) else []
    db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute(sql)]
    finally:
        db.close()


@functools.lru_cache(maxsize=1)
def python_sqlite_has_rtree() -> bool:
    """Whether Python's ``sqlite3`` has the R*Tree module in this process (a GeoPackage's index)."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE probe USING rtree(id, min_x, max_x)")
        return True
    except sqlite3.Error:
        return False
    finally:
        db.close()


@functools.lru_cache(maxsize=1)
def gdal_builds_rtree() -> bool:
    """Whether GDAL builds a GeoPackage's spatial index in this process.

    It does not when a library loaded before it (TensorFlow does) brings a
    SQLite built without the R*Tree module: GDAL then writes GeoPackages
    without an index and only logs it. Probed once on a one-feature file.
    """
    import tempfile

    import pyarrow as pa
    import shapely
    from pyogrio.raw import write_arrow

    schema = pa.schema([("geom", pa.binary())])
    wkb = pa.array([shapely.to_wkb(shapely.MultiPolygon([shapely.box(0, 0, 1, 1)]))], pa.binary())
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "probe.gpkg")
        try:
            write_arrow(pa.RecordBatchReader.from_batches(schema, [pa.record_batch([wkb], schema=schema)]), path,
                        driver="GPKG", geometry_name="geom", geometry_type="MultiPolygon", layer="probe",
                        crs="EPSG:4326")
            db = sqlite3.connect(path)
            try:
                found = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'rtree_probe_geom'").fetchone()[0]
            finally:
                db.close()
        except Exception:  # noqa: BLE001 - a probe that fails proves nothing: keep checking
            return True
    if not found:
        log.warning("GDAL builds GeoPackages without a spatial index in this process (its SQLite lacks R*Tree, "
                    "e.g. after importing TensorFlow); the label masks open everywhere but draw slower in QGIS")
    return bool(found)
