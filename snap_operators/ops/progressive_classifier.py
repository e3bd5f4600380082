"""``ProgressiveClassifier``: land cover from index bands by ordered threshold stages.

Each stage of the rule set (:mod:`snap_operators.rules`) claims one class
from the pixels no earlier stage claimed. The target band ``class_id``
(uint8; 0 = Unclassified, 255 = no-data) carries the rule set's classes
(names and colors) so writers emit a color table; ``outputStage`` adds a
``stage`` band (1-based number of the claiming stage, 0 none).

Thresholds given as ``otsu`` or ``samples`` are resolved in ``initialize()``
with scene-wide Dask reductions (stage by stage, each over the pixels the
earlier stages left unclassified), recorded in the target's metadata element
``ProgressiveClassifier`` and logged. With ``areaTableFile`` the operator
joins the engine's streaming pass: it counts the class pixels of the very
chunks the Write node writes, then writes the CSV and prints the table.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..areas import (
    AreaAccumulator,
    class_areas,
    format_area_table,
    temporary_path,
    write_area_csv,
)
from ..classes import NO_DATA, UNCLASSIFIED_INFO
from ..classify import classify
from ..crs import is_geographic
from ..errors import ParameterError, ProductWriteError, SnapPcError
from ..operator import Operator, map_tiles, register
from ..outputs import output_problem
from ..product import Band, Product
from ..regrid import grid_mismatch
from ..rules import (
    PRESETS,
    RulesError,
    RuleSet,
    check_index_parameters,
    check_samples,
    known_indices,
    load_rules,
    read_samples,
    resolve_rules,
    thresholds_metadata,
)
from ..spec import OperatorSpec, Parameter, SourceSpec, TargetBandSpec

log = logging.getLogger(__name__)


def classify_tile(tiles: dict[str, np.ndarray], rules: RuleSet, with_stage: bool) -> dict[str, np.ndarray]:
    """The per-tile function: ``{band: tile}`` -> ``{'class_id': ..., 'stage': ...}``.

    Pure; the SNAP adapter calls it with SNAP's tiles. Runs the compiled
    kernel single-threaded: the scheduler already runs one tile per core.
    """
    cls, stage = classify(tiles, rules, with_stage=with_stage, parallel=False)
    out = {"class_id": cls}
    if with_stage:
        out["stage"] = stage
    return out


@register
class ProgressiveClassifierOp(Operator):
    """Classify index bands into land-cover classes by ordered threshold stages."""

    spec = OperatorSpec(
        alias="ProgressiveClassifier",
        category="Optical/Thematic Land Processing",
        description="Progressive land-cover classification: ordered threshold stages on spectral and "
        "backscatter indices, each claiming one class from the pixels still unclassified.",
        sources=(SourceSpec("sourceProduct", "Output of SpectralIndices (index bands, optionally source bands)."),),
        parameters=(
            Parameter("rules", "String", default=PRESETS[0], label="Rule set",
                      description="Preset (" + ", ".join(PRESETS) + ") or path of a YAML/JSON rule file."),
            Parameter("samplesFile", "File", label="Samples file",
                      description="Vector file (GeoPackage, Shapefile, GeoJSON...) with sample polygons or points "
                      "per class, for rules with 'samples' thresholds."),
            Parameter("samplesClassField", "String", default="class_id", label="Samples class field",
                      description="Attribute of the samples file that holds the class id."),
            Parameter("outputStage", "boolean", default=False, label="Output stage band",
                      description="Add a uint8 band 'stage': 1-based number of the stage that claimed the pixel, 0 none."),
            Parameter("areaTableFile", "File", label="Area table file",
                      description="CSV written when the graph runs: area per class in km2 (also printed)."),
            Parameter("otsuSubsampling", "int", default=4, interval="[1,64]", label="Otsu subsampling",
                      description="Decimation step (rows and columns) of the scene-wide Otsu histograms."),
        ),
        target_bands=(
            TargetBandSpec("class_id", "uint8", None, "Class id: 0 unclassified, 255 no-data."),
            TargetBandSpec("stage", "uint8", None, "Claiming stage (with outputStage)."),
        ),
    )

    outputs: list[str]

    # --- GPF ------------------------------------------------------------------
    def initialize(self) -> Product:
        source = self.source_product()
        p = self.parameters
        self.outputs = []
        try:
            rules = load_rules(p["rules"])
            check_samples(rules, p["samplesFile"])
        except RulesError as exc:
            raise ParameterError(str(self.error(str(exc)))) from None
        bands = self._input_bands(source, rules)
        for msg in check_index_parameters(rules, _index_parameters(source)):
            log.warning("%s: %s", self.spec.alias, msg)
        ref = bands[0]
        try:
            samples = None
            if rules.needs_samples:
                samples = read_samples(
                    p["samplesFile"], p["samplesClassField"] or "class_id", source.crs, ref.transform,
                    ref.data.chunks, [c.value for c in rules.classes],
                )
            resolved = resolve_rules(
                rules, {b.name: b.data for b in bands}, samples=samples, subsampling=int(p["otsuSubsampling"] or 1)
            )
        except RulesError as exc:
            raise ParameterError(str(self.error(str(exc)))) from None
        self.rules = resolved
        for k, s in enumerate(resolved.stages, start=1):
            log.info("%s: stage %d '%s' -> %d %s where %s", self.spec.alias, k, s.name, s.class_id,
                     resolved.class_info(s.class_id).name, s.describe())

        with_stage = bool(p["outputStage"])
        outputs = {"class_id": "uint8"}
        if with_stage:
            outputs["stage"] = "uint8"
        func = functools.partial(classify_tile, rules=resolved, with_stage=with_stage)
        arrays = map_tiles(func, {b.name: b.data for b in bands}, outputs)
        target_bands = [
            Band("class_id", arrays["class_id"], ref.transform, no_data=NO_DATA, unit=None,
                 description=f"Land-cover class ({resolved.name}); 0 unclassified, {NO_DATA} no-data",
                 classes=[UNCLASSIFIED_INFO, *resolved.classes])
        ]
        if with_stage:
            target_bands.append(Band("stage", arrays["stage"], ref.transform, no_data=None, unit=None,
                                     description="1-based number of the stage that claimed the pixel; 0 none"))
        target = source.copy(name=f"{source.name}_classified", bands=target_bands)
        target.metadata.elements.append(thresholds_metadata(resolved))
        return target

    def _input_bands(self, source: Product, rules: RuleSet) -> list[Band]:
        missing = [n for n in rules.bands if n not in source.bands]
        if missing:
            indices = [n for n in missing if n in known_indices()]
            hint = []
            if indices:
                hint.append(f"add {', '.join(indices)} to the SpectralIndices 'indices' parameter")
            if len(indices) < len(missing):
                hint.append("set copySourceBands to true in SpectralIndices (or BandMerge the source bands)")
            raise self.error(
                f"rule set '{rules.name}' reads band(s) {', '.join(missing)} that product '{source.name}' lacks "
                f"(bands: {', '.join(source.bands) or '(none)'}); {' and '.join(hint)}"
            )
        bands = [source.bands[n] for n in rules.bands]
        sizes = grid_mismatch(bands)
        if sizes:
            raise self.error(f"input bands are not on one grid ({sizes}); add a Resample node before {self.spec.alias}")
        return bands

    # --- streaming pass (area table) -----------------------------------------
    @property
    def is_sink(self) -> bool:
        """True when ``areaTableFile`` is set: the table is filled in the engine's pass."""
        return bool(self.parameters.get("areaTableFile"))

    @property
    def area_table_path(self) -> Path:
        return Path(os.path.expanduser(str(self.parameters["areaTableFile"]))).absolute()

    def prepare(self) -> None:
        """Check the area table target without touching the disk."""
        problem = output_problem([self.area_table_path], self.context)
        if problem:
            raise self._fail(problem)

    def open(self):
        """A :class:`~snap_operators.engine.SinkPlan` counting class pixels per chunk."""
        from ..engine import SinkPlan

        target = self.target if self.target is not None else self.initialize()
        band = target.band("class_id")
        path = self.area_table_path
        tmp = temporary_path(path)
        try:
            tmp.touch(exist_ok=False)
        except OSError as exc:
            raise self._fail(f"cannot create '{tmp}': {exc.strerror or exc}") from None
        acc = AreaAccumulator(band.shape, per_row=is_geographic(target.crs))
        classes = self.rules.classes

        def commit() -> None:
            rows = class_areas(acc.counts, band.transform, target.crs, band.shape, classes)
            try:
                write_area_csv(rows, path, tmp)
            except SnapPcError as exc:
                raise self._fail(str(exc)) from None
            nodata = int(acc.counts[..., NO_DATA].sum())
            log.info("%s: area table written to %s (%d no-data pixels not counted)", self.spec.alias, path, nodata)
            print(format_area_table(rows), flush=True)
            self.outputs = [str(path)]

        def abort() -> None:
            tmp.unlink(missing_ok=True)

        return SinkPlan([band.data], [acc], commit, abort, description=f"area table {path}")

    def execute(self, progress: Callable[[int], None] | None = None) -> None:
        """Standalone run: classify and write the area table (needs ``areaTableFile``)."""
        if not self.is_sink:
            raise self.error("nothing to execute: set areaTableFile or write the target with Write")
        super().execute(progress)

    def _fail(self, message: str) -> ProductWriteError:
        return ProductWriteError(str(self.error(message)))


def _index_parameters(product: Product) -> dict[str, Any]:
    """Index parameters recorded by SpectralIndices in the product's metadata."""
    out: dict[str, Any] = {}
    for el in product.metadata.walk():
        if el.name == "SpectralIndices":
            for k, v in el.attributes.items():
                try:
                    f = float(v)
                except (TypeError, ValueError):
                    continue
                if math.isfinite(f):
                    out[k] = f
    return out
