"""``ProgressiveClassifier``: land cover from index bands by ordered threshold stages.

Each stage of the rule set (:mod:`snap_operators.science.rules`) claims one class
from the pixels no earlier stage claimed. The target band ``class_id``
(uint8; 0 = Unclassified, 255 = no-data) carries the rule set's classes
(names and colors) so writers emit a color table; ``outputStage`` adds a
``stage`` band (1-based number of the claiming stage, 0 none) and
``outputMargin`` a ``margin`` band (float32: how sure the thresholds are,
:mod:`snap_operators.science.margin`).

Thresholds given as ``adaptive``, ``otsu`` or ``samples`` are resolved in
``initialize()`` from the scene (stage by stage, each over the pixels the
earlier stages left unclassified, in a spread sample of the scene's chunks),
recorded in the target's metadata element ``ProgressiveClassifier`` and
logged. Where the source has a cloud mask band (``maskBand``, the output of
``CloudMask``), masked pixels get class 254 (not observed) and take part in
no threshold. With ``areaTableFile`` the operator joins the engine's
streaming pass: it counts the class pixels of the very chunks the Write node
writes, then writes the CSV and prints the table.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.errors import OperatorError, ParameterError, ProductWriteError, SnapPcError, in_node
from ..core.legend import MASKED, MASKED_INFO, NO_DATA, UNCLASSIFIED, UNCLASSIFIED_INFO
from ..core.operator import Operator, TileKernel, map_tiles, register
from ..core.outputs import output_problem, stage_text
from ..core.product import Band, Product
from ..core.sample import DEFAULT_MAX_BLOCKS
from ..core.spec import OperatorSpec, Parameter, SourceSpec, TargetBandSpec
from ..core.staging import StagedFiles
from ..grid.areas import RASTER_TABLE_TITLE, AreaAccumulator, area_csv_text, class_areas, format_area_table
from ..grid.crs import is_geographic
from ..grid.regrid import grid_mismatch
from ..io.reference import ReferenceDataError, parse_mapping
from ..science.adaptive import resolve_rules, scene_sample, thresholds_metadata
from ..science.classify import classify
from ..science.cloudmask import find_mask_band, masked_pixels
from ..science.indices import missing_bands_hint
from ..science.margin import band_scales, margin_of_classes, rule_margin
from ..science.rules import (
    PRESETS,
    RulesError,
    RuleSet,
    check_index_parameters,
    check_samples,
    load_rules,
    read_samples,
)

log = logging.getLogger(__name__)


def classify_tile(tiles: dict[str, np.ndarray], rules: RuleSet, with_stage: bool,
                  mask_band: str | None = None, mask_no_data: float | None = None,
                  use_numba: bool = True, margin_scales: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """The per-tile function: ``{band: tile}`` -> ``{'class_id': ..., 'stage': ..., 'margin': ...}``.

    Pure; the SNAP adapter calls it with SNAP's tiles. Runs the compiled
    kernel single-threaded: the scheduler already runs one tile per core.
    With `mask_band`, pixels where that tile is neither 0 nor `mask_no_data`
    are claimed only by the rule set's ``masked`` stages (Sentinel-1), else
    they become :data:`~snap_operators.core.legend.MASKED` (stage 0); no-data
    stays no-data. `use_numba` as in :func:`~snap_operators.science.classify.classify`
    (False skips compiling a kernel, for one-off rule sets). With `margin_scales`
    (:func:`~snap_operators.science.margin.band_scales`) the output has a float32
    ``margin`` (:mod:`snap_operators.science.margin`): each pixel scored against
    the stages that apply to it (the clear-sky stages, or under the mask the
    ``masked`` ones), NaN where no-data or masked and unclaimed.
    """
    clear, under = _split(rules)
    with_margin = margin_scales is not None
    cls, stage = classify(tiles, clear, with_stage=with_stage or with_margin, parallel=False, use_numba=use_numba)
    margin = margin_of_classes(tiles, clear, cls, stage, margin_scales) if with_margin else None
    if with_stage and under is not None:
        numbers = np.array([0] + [k for k, s in enumerate(rules.stages, start=1) if not s.masked], np.uint8)
        stage = numbers[stage]
    if mask_band is not None:
        m = masked_pixels(tiles[mask_band], mask_no_data) & (cls != NO_DATA)
        cls[m] = MASKED
        if with_stage:
            stage[m] = 0
        if with_margin:
            margin[m] = np.nan
        if under is not None and m.any():
            got, got_stage = classify(tiles, under, with_stage=True, parallel=False, use_numba=use_numba)
            claimed = m & (got != UNCLASSIFIED) & (got != NO_DATA)
            cls[claimed] = got[claimed]
            if with_margin:
                margin[claimed] = rule_margin(tiles, under, got_stage, margin_scales)[claimed]
            if with_stage:
                numbers = np.array([0] + [k for k, s in enumerate(rules.stages, start=1) if s.masked], np.uint8)
                stage[claimed] = numbers[got_stage[claimed]]
    out = {"class_id": cls}
    if with_stage:
        out["stage"] = stage
    if with_margin:
        out["margin"] = margin
    return out


_SPLITS: dict[int, tuple[RuleSet, RuleSet, RuleSet | None]] = {}


def _split(rules: RuleSet) -> tuple[RuleSet, RuleSet | None]:
    # One split per rule set, not one per tile: compiled kernels are found by their rule set object.
    hit = _SPLITS.get(id(rules))
    if hit is None or hit[0] is not rules:
        if len(_SPLITS) > 64:
            _SPLITS.clear()
        hit = _SPLITS[id(rules)] = (rules, *rules.split_masked())  # keeps `rules` alive: its id stays unique
    return hit[1], hit[2]


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
                      description="Preset (" + ", ".join(PRESETS) + ") or path of a YAML/JSON rule file. The "
                      "presets (scene-adaptive thresholds) are calibrated for cloud-masked, snow-free scenes at "
                      "10 m in the growing or dry season, temperate to arid and tropical lowlands; not for snow, "
                      "deep mountain shadow or dormant winter vegetation: there, use a rule file with 'samples' "
                      "thresholds from your own samples (docs/rules.md)."),
            Parameter("samplesFile", "File", label="Samples file",
                      description="Vector file (GeoPackage, Shapefile, GeoJSON...) with sample polygons or points "
                      "per class, for rules with 'samples' thresholds."),
            Parameter("samplesClassField", "String", default="class_id", label="Samples class field",
                      description="Attribute of the samples file that holds the class id."),
            Parameter("samplesMapping", "String", label="Samples class mapping",
                      description="The samples' codes, or the class names of a samplesClassField of names, as "
                      "class ids: e.g. 5:1,2:3 or water:1,forest:3 (codes or names not mapped are left out). "
                      "Empty: the codes are the rule set's class ids."),
            Parameter("outputStage", "boolean", default=False, label="Output stage band",
                      description="Add a uint8 band 'stage': 1-based number of the stage that claimed the pixel, 0 none."),
            Parameter("outputMargin", "boolean", default=False, label="Output margin band",
                      description="Add a float32 band 'margin': how far the pixel's indices are from the nearest "
                      "threshold that would change its class, in units of each index's interquartile range in the "
                      "scene (0 = on a threshold; NaN no-data or masked). A confidence for the rule labels: "
                      "snap-pc train --margin keeps the labels above a margin."),
            Parameter("areaTableFile", "File", label="Area table file",
                      description="CSV written when the graph runs: pixels and area per class of the class "
                      "raster, every pixel counted (column raster_area_km2; also printed). LabelMaskExport's "
                      "<stem>_areas.csv holds the areas of its polygons, after its minArea sieve."),
            Parameter("otsuSubsampling", "int", default=4, interval="[1,64]", label="Threshold subsampling",
                      description="Decimation step (rows and columns) inside the tiles read for the scene-adaptive "
                      "thresholds."),
            Parameter("sampleTiles", "int", default=DEFAULT_MAX_BLOCKS, interval="[1,4096]", label="Sample tiles",
                      description="Tiles read, spread over the scene, for the scene-adaptive thresholds and the "
                      "masked share (scenes with fewer tiles are read whole)."),
            Parameter("maskBand", "String", default="cloud_mask", label="Mask band", keep_empty=True,
                      description="Band of the source flagging pixels not to classify (CloudMask's cloud_mask: "
                      "cloud, shadow, snow): they get class 254. Empty: no mask."),
            Parameter("maskedShareWarning", "double", default=0.5, interval="[0,1]", label="Masked share warning",
                      description="Warn when more than this share of the valid pixels is masked."),
        ),
        target_bands=(
            TargetBandSpec("class_id", "uint8", None, "Class id: 0 unclassified, 255 no-data."),
            TargetBandSpec("stage", "uint8", None, "Claiming stage (with outputStage)."),
            TargetBandSpec("margin", "float32", None, "Distance to the nearest deciding threshold, in scene "
                           "interquartile ranges (with outputMargin)."),
        ),
    )

    #: Parameters naming what this node writes (all others that name files are read).
    output_parameters = ("areaTableFile",)
    #: The cloud mask band applied (None: no mask), known after initialize().
    mask_band: str | None = None

    # --- GPF ------------------------------------------------------------------
    def initialize(self) -> Product:
        source = self.source_product()
        p = self.parameters
        self.outputs = []
        try:
            rules = load_rules(p["rules"])
            check_samples(rules, p["samplesFile"])
        except RulesError as exc:
            raise in_node(exc, self.node_id, self.spec.alias) from None
        try:
            samples_mapping = parse_mapping(p["samplesMapping"], "samplesMapping")
        except ReferenceDataError as exc:
            raise ParameterError(str(self.error(str(exc)))) from None
        bands = self._input_bands(source, rules)
        for msg in check_index_parameters(rules, _index_parameters(source)):
            log.warning("%s: %s", self.spec.alias, msg)
        ref = bands[0]
        mask = self._mask_band(source, ref)
        arrays_in = {b.name: b.data for b in bands}
        try:
            samples = None
            if rules.needs_samples:
                samples = read_samples(
                    p["samplesFile"], p["samplesClassField"] or "class_id", source.crs, ref.transform,
                    ref.data.chunks, [c.value for c in rules.classes], mapping=samples_mapping,
                )
            scene = None
            with_margin = bool(p["outputMargin"])
            if with_margin or any(b.mode in ("adaptive", "otsu") for s in rules.stages for c in s.all_conditions()
                                  for _, b in c.bounds()):
                # The mask band stays out of the sample: a cloud mask needs neighbourhoods (buffers,
                # shadow search) that would read most of the scene; clouds are bright and fall
                # outside the stages' histograms (water's BI2 < 0.2, vegetation's NDVI), and the
                # masked share is counted exactly in the streaming pass.
                scene = scene_sample(arrays_in, subsampling=int(p["otsuSubsampling"] or 1),
                                     max_blocks=int(p["sampleTiles"] or DEFAULT_MAX_BLOCKS))
            # The margin's scales need only the sample: their quantiles (numpy, GIL released) run on
            # another core while the thresholds resolve (mostly Python), both before any tile is
            # computed, when the engine's workers are idle.
            with ThreadPoolExecutor(1) as pool:
                scaling = pool.submit(band_scales, scene.blocks) if with_margin else None
                resolved = resolve_rules(rules, arrays_in, samples=samples,
                                         subsampling=int(p["otsuSubsampling"] or 1), scene=scene)
                scales = scaling.result() if scaling is not None else None
        except RulesError as exc:
            raise in_node(exc, self.node_id, self.spec.alias) from None
        self.rules = resolved
        for k, s in enumerate(resolved.stages, start=1):
            log.info("%s: stage %d '%s' -> %d %s where %s", self.spec.alias, k, s.name, s.class_id,
                     resolved.class_info(s.class_id).name, s.describe())
        for line in _adaptive_notes(resolved):
            log.info("%s: %s", self.spec.alias, line)

        with_stage = bool(p["outputStage"])
        outputs = {"class_id": np.dtype(np.uint8)}
        if with_stage:
            outputs["stage"] = np.dtype(np.uint8)
        if with_margin:
            outputs["margin"] = np.dtype(np.float32)
            log.info("%s: margin scales (interquartile ranges): %s", self.spec.alias,
                     ", ".join(f"{n} {v:.4g}" for n, v in scales.items()))
        self.mask_band = mask.name if mask is not None else None
        func = functools.partial(classify_tile, rules=resolved, with_stage=with_stage, mask_band=self.mask_band,
                                 mask_no_data=mask.no_data if mask is not None else None, margin_scales=scales)
        if mask is not None:
            arrays_in[mask.name] = mask.data
        # The area table counts the class tiles themselves (sink_output): no second classification.
        self._kernel = TileKernel(func=func, inputs={n: n for n in arrays_in}, outputs=outputs,
                                  sink_output="class_id")
        arrays = map_tiles(func, arrays_in, outputs)
        classes = [UNCLASSIFIED_INFO, *resolved.classes] + ([MASKED_INFO] if mask is not None else [])
        target_bands = [
            Band("class_id", arrays["class_id"], ref.transform, no_data=NO_DATA, unit=None,
                 description=f"Land-cover class ({resolved.name}); 0 unclassified"
                 + (f", {MASKED} masked (cloud, shadow, snow)" if mask is not None else "") + f", {NO_DATA} no-data",
                 classes=classes)
        ]
        if with_stage:
            target_bands.append(Band("stage", arrays["stage"], ref.transform, no_data=None, unit=None,
                                     description="1-based number of the stage that claimed the pixel; 0 none"))
        if with_margin:
            target_bands.append(Band("margin", arrays["margin"], ref.transform, no_data=float("nan"), unit=None,
                                     description="Distance to the nearest threshold that would change the class, "
                                     "in scene interquartile ranges of the deciding index; NaN no-data or masked"))
        target = source.copy(name=f"{source.name}_classified", bands=target_bands)
        target.metadata.elements.append(thresholds_metadata(resolved, scales))
        return target

    def tile_kernel(self) -> TileKernel:
        """The compiled rule set over tiles: the rule bands (and the mask band) in, ``class_id``
        (and ``stage``) out; the class tiles feed the area table."""
        return self._kernel

    def _mask_band(self, source: Product, ref: Band) -> Band | None:
        """The cloud mask band of the source, or None (with a warning when absent)."""
        try:
            return find_mask_band(source, self.parameters.get("maskBand"), ref, self.spec.alias)
        except OperatorError as exc:
            raise in_node(exc, self.node_id, self.spec.alias) from None

    def report_masked(self, counts: np.ndarray) -> float:
        """Warn when more than ``maskedShareWarning`` of the valid pixels is masked; the share.

        `counts` are the pixel counts per class value of the whole map (``(256,)`` or per row).
        """
        counts = np.asarray(counts).reshape(-1, 256).sum(axis=0)
        valid = int(counts.sum() - counts[NO_DATA])
        share = counts[MASKED] / valid if valid else 0.0
        limit = float(self.parameters.get("maskedShareWarning", 0.5))
        if share > limit:
            log.warning("%s: %.0f %% of the scene is masked (cloud, cloud shadow, snow; limit %.0f %%): the map "
                        "covers only the rest; choose a clearer date if you can", self.spec.alias, 100 * share, 100 * limit)
        return float(share)

    def _input_bands(self, source: Product, rules: RuleSet) -> list[Band]:
        missing = [n for n in rules.bands if n not in source.bands]
        if missing:
            hint = missing_bands_hint(missing, list(source.bands), "use rules that read the bands it has (rules)",
                                      "graphs/progressive_classifier_s1s2.xml")
            raise self.error(
                f"rule set '{rules.name}' reads band(s) {', '.join(missing)} that product '{source.name}' lacks "
                f"(bands: {source.bands_listed()}); {hint}"
            )
        bands = [source.bands[n] for n in rules.bands]
        sizes = grid_mismatch(bands)
        if sizes:
            raise self.error(f"input bands are not on one grid ({sizes}); add a Resample node before {self.spec.alias}")
        return bands

    # --- streaming pass (area table, masked share) ---------------------------------
    @property
    def is_sink(self) -> bool:
        """True when ``areaTableFile`` is set or a mask is applied: the class pixels are counted in
        the engine's pass (for the table, and for the masked-share warning)."""
        return bool(self.parameters.get("areaTableFile")) or self.mask_band is not None

    @property
    def area_table_path(self) -> Path | None:
        f = self.parameters.get("areaTableFile")
        return Path(os.path.expanduser(str(f))).absolute() if f else None

    def prepare(self) -> None:
        """Check the area table target without touching the disk."""
        if self.area_table_path is None:
            return
        problem = output_problem([self.area_table_path], self.context)
        if problem:
            raise self._fail(problem)

    def open(self):
        """A :class:`~snap_operators.core.streaming.SinkPlan` counting class pixels per chunk."""
        from ..core.streaming import SinkPlan

        target = self.target if self.target is not None else self.initialize()
        band = target.band("class_id")
        path = self.area_table_path
        staged = StagedFiles()
        acc = AreaAccumulator(band.shape, per_row=is_geographic(target.crs))
        classes = self.rules.classes
        rows = []

        def finish() -> None:
            if self.mask_band is not None:
                self.report_masked(acc.counts)
            if path is None:
                return
            rows[:] = class_areas(acc.counts, band.transform, target.crs, band.shape, classes)
            try:
                stage_text(staged, path, area_csv_text(rows))
            except SnapPcError as exc:
                raise in_node(exc, self.node_id, self.spec.alias, ProductWriteError) from None

        def publish() -> None:
            if path is None:
                return
            staged.publish()
            nodata = int(acc.counts[..., NO_DATA].sum())
            log.info("%s: area table written to %s (%d no-data pixels not counted)", self.spec.alias, path, nodata)
            print(f"{RASTER_TABLE_TITLE} ({path.name})\n{format_area_table(rows)}", flush=True)
            self.outputs = [str(path)]

        return SinkPlan([band.data], [acc], finish, staged.abort,
                        description=f"area table {path}" if path else "class counts", publish=publish)

    def output_files(self) -> list[Path]:
        """The area table, when one is asked for."""
        return [self.area_table_path] if self.area_table_path is not None else []

    def execute(self, progress: Callable[[int], None] | None = None) -> None:
        """Standalone run: classify and write the area table (needs ``areaTableFile``)."""
        if self.area_table_path is None:
            raise self.error("nothing to execute: set areaTableFile or write the target with Write")
        super().execute(progress)

    def _fail(self, message: str) -> ProductWriteError:
        return ProductWriteError(str(self.error(message)))


def _adaptive_notes(rules: RuleSet) -> list[str]:
    """One log line per scene-adaptive bound: value, split found, fallback or clip."""
    lines = []
    for k, s in enumerate(rules.stages, start=1):
        for c in s.all_conditions():
            for side, b in c.bounds():
                if not b.note:
                    continue
                n = b.note
                how = f"{n.get('method')} split {n.get('split'):.3f}" if n.get("split") == n.get("split") else "no split"
                if n.get("fallback"):
                    how += ", no second mode: default"
                if n.get("clipped"):
                    how += ", clipped"
                if "tiles" in n:
                    how += f", {n['tiles']} bimodal tiles"
                lines.append(f"stage {k} '{s.name}': {c.band} {side} = {b.value:g} ({how}; {n.get('pixels')} px sampled)")
    return lines


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
