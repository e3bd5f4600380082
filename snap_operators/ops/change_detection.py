"""``ChangeDetection``: land-cover change between two class maps of the same area.

Sources ``before`` and ``after`` (or any two other sources in graph order:
``sourceProduct`` and ``sourceProduct.1``, or a ``<sourceProducts>`` list). The class band of
``after`` is collocated onto the grid of ``before`` by nearest neighbour
when the grids differ (any CRS; pixels outside its footprint are no-data);
maps that do not overlap at all, or whose legends differ, are refused.

The target band ``change`` codes each pixel's transition (see
:mod:`snap_operators.science.change`): ``from * 10 + to`` (uint8; ``from * 100 +
to`` in uint16 for class ids above 9), 0 where the class did not change,
255 (65535) where either date has no data or is masked (class 254: cloud,
cloud shadow, snow; counted in the matrix's "Masked" row and column). It carries one category per
transition ("Water -> Bare Soil"), each in a colour of its own
(:func:`~snap_operators.science.change.transition_colors`), so writers store a colour table and
category names. The target's product type, ``CLASS_CHANGE``, marks the band as a change band
(:func:`~snap_operators.science.change.change_coding`): ``LabelMaskExport`` then writes the change
polygons (it skips 0) as layer ``change`` with the fields ``change_code``, ``from_class``, ``from_name``,
``to_class``, ``to_name``, with no parameter to set.

With ``matrixFile`` and/or ``gainLossFile`` the operator joins the engine's
streaming pass: it counts the from-to pairs of the very chunks the Write
node writes, then writes the transition matrix (pixels and km²) and the
per-class gain, loss and net change as CSV (temporary names, renamed at the
end) and prints them.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import OperatorError, ProductWriteError, SnapPcError, in_node
from ..core.legend import LAND_COVER
from ..core.operator import Operator, TileKernel, map_tiles, register
from ..core.outputs import output_problem, stage_text
from ..core.product import Band, MetadataElement, Product
from ..core.spec import OperatorSpec, Parameter, SourceSpec, TargetBandSpec
from ..core.staging import StagedFiles
from ..grid.areas import AreaAccumulator, counts_to_km2
from ..grid.crs import is_geographic
from ..grid.regrid import output_no_data, regrid, same_transform
from ..science import change

log = logging.getLogger(__name__)

MATRIX_FIELDS = ("from_class_id", "from_class_name", "to_class_id", "to_class_name", "change_code", "pixels",
                 "area_km2")
GAIN_LOSS_FIELDS = ("class_id", "class_name", "before_km2", "after_km2", "unchanged_km2", "gain_km2", "loss_km2",
                    "net_km2", "swap_km2", "before_pixels", "after_pixels", "unchanged_pixels", "gain_pixels",
                    "loss_pixels", "net_pixels")


@register
class ChangeDetectionOp(Operator):
    """From-to change of two class maps, with transition matrix and gain/loss/net."""

    spec = OperatorSpec(
        alias="ChangeDetection",
        category="Raster/Change Detection",
        label="Class Change Detection",
        description="Land-cover change between two class maps: a 'change' band coding from-class and to-class "
        "(from*10+to; 0 unchanged), the from-to transition matrix in pixels and km2, and per-class gain, loss "
        "and net change.",
        sources=(
            SourceSpec("before", "The earlier class map (its grid is the target grid).", optional=True),
            SourceSpec("after", "The later class map (collocated onto the grid of before when it differs).",
                       optional=True),
            SourceSpec("sourceProducts", "before and after, in this order (when not named).", optional=True,
                       multiple=True),
        ),
        parameters=(
            Parameter("sourceBand", "String", label="Class band",
                      description="Class band of both products; empty: class_id, else the product's only "
                      "band with classes."),
            Parameter("matrixFile", "File", label="Transition matrix file",
                      description="CSV written when the graph runs: one row per from-to class pair with pixels "
                      "and area in km2 (also printed)."),
            Parameter("gainLossFile", "File", label="Gain/loss file",
                      description="CSV written when the graph runs: per class area before and after, unchanged, "
                      "gain, loss, net and swap, in km2 and pixels."),
        ),
        target_bands=(
            TargetBandSpec("change", "uint8", None,
                           "from*10+to where the class changed, 0 unchanged, 255 no-data (uint16, from*100+to "
                           "and 65535 for class ids above 9)."),
        ),
    )

    #: Parameters naming what this node writes (all others that name files are read).
    output_parameters = ("matrixFile", "gainLossFile")
    #: Print the tables when written (as gpt does; the Python API returns them instead).
    print_tables = True

    # --- GPF ------------------------------------------------------------------
    def initialize(self) -> Product:
        self.outputs = []
        before, after = self._before_after()
        b_band = self._class_band(before)
        a_band = self._class_band(after)
        self.classes = change.legend_classes(b_band.classes, LAND_COVER)
        after_classes = change.legend_classes(a_band.classes, LAND_COVER)
        diff = change.legend_differences(self.classes, after_classes)
        if diff:
            raise self.error(f"'{before.name}' and '{after.name}' have different class legends: {'; '.join(diff)}")
        values = [c.value for c in self.classes]
        try:
            self.base = change.code_base(values)
        except OperatorError as exc:
            raise in_node(exc, self.node_id, self.spec.alias) from None
        a_data, a_no_data, collocated = self._on_before_grid(before, b_band, after, a_band)
        self.code_no_data = change.no_data_code(self.base)
        dtype = change.code_dtype(self.base)
        func = functools.partial(change.change_tile, values=values, base=self.base,
                                 before_no_data=b_band.no_data, after_no_data=a_no_data)
        arrays = map_tiles(func, {"before": b_band.data, "after": a_data}, {"change": dtype, "pair": np.uint16})
        # The tables count the from-to pairs of the very tiles the change band comes from.
        self._kernel = TileKernel(func=func, inputs={"before": b_band.name, "after": a_band.name},
                                  outputs={"change": dtype}, sources=dict(self.source_ids),
                                  sink_output="pair")
        self.collocated = collocated
        self.pairs = arrays["pair"]
        band = Band(
            change.CHANGE_BAND, arrays["change"], b_band.transform, no_data=self.code_no_data, unit=None,
            description=f"Class change {before.name} -> {after.name}: from*{self.base}+to, "
            f"{change.NO_CHANGE} unchanged, {self.code_no_data} no-data",
            classes=change.transition_legend(self.classes, self.base),
        )
        target = before.copy(name=f"{before.name}_change", bands=[band])
        target.product_type = change.CHANGE_PRODUCT_TYPE  # what tells LabelMaskExport it polygonizes changes
        target.stop_time = after.stop_time or after.start_time or before.stop_time
        attributes = {
            "before": before.name,
            "after": after.name,
            "beforeStartTime": before.start_time,
            "afterStartTime": after.start_time,
            "classBandBefore": b_band.name,
            "classBandAfter": a_band.name,
            "codeBase": self.base,
            "noChangeCode": change.NO_CHANGE,
            "noDataCode": self.code_no_data,
            "collocated": collocated,
        }
        target.metadata.elements.append(
            MetadataElement(self.spec.alias, {k: v for k, v in attributes.items() if v is not None}))
        return target

    def tile_kernel(self) -> TileKernel:
        """The change codes over tiles of the two class maps, which must share one grid; the
        from-to pairs of each tile feed the tables.

        Raises
        ------
        OperatorError
            The maps are on different grids: a tile host reads source tiles as they are and
            cannot collocate.
        """
        if self.collocated:
            raise self.error("the two class maps are on different grids; in SNAP put a Collocate node before "
                             "ChangeDetection")
        return self._kernel

    def _before_after(self) -> tuple[Product, Product]:
        #: Source id of each map (a tile-by-tile host reads the tiles from them).
        self.source_ids = ids = self.named_sources(("before", "after"), "class maps")
        return self.sources[ids["before"]], self.sources[ids["after"]]

    def _class_band(self, product: Product) -> Band:
        try:
            band = change.find_class_band(product, self.parameters.get("sourceBand"), hint="set sourceBand")
        except OperatorError as exc:
            raise self.error(str(exc)) from None
        if band.transform is None or product.crs is None:
            raise self.error(f"product '{product.name}' has no map geocoding (CRS and geotransform)")
        return band

    def _on_before_grid(self, before: Product, b_band: Band, after: Product, a_band: Band):
        """The after class band on the before grid: ``(array, no-data, collocated?)``."""
        same_crs = before.crs == after.crs
        if same_crs and a_band.shape == b_band.shape and same_transform(a_band.transform, b_band.transform):
            data = a_band.data
            if data.chunks != b_band.data.chunks:  # e.g. read with another tile size: align the tiles
                data = data.rechunk(b_band.data.chunks)
            return data, a_band.no_data, False
        overlap = _overlap_fraction(b_band, before.crs, a_band, after.crs)
        if overlap <= 0:
            raise self.error(f"'{before.name}' and '{after.name}' do not overlap: their extents are disjoint")
        if overlap < 1 - 1e-9:
            log.warning("%s: '%s' covers %.1f %% of '%s'; the rest is no-data in the change band",
                        self.spec.alias, after.name, 100 * overlap, before.name)
        no_data = output_no_data(a_band.dtype, a_band.no_data)
        data = regrid(a_band.data, a_band.transform, b_band.shape, b_band.transform, src_crs=after.crs,
                      dst_crs=before.crs, upsampling="nearest", downsampling="nearest", no_data=a_band.no_data,
                      tile_size=max(b_band.data.chunksize))
        if data.chunks != b_band.data.chunks:
            data = data.rechunk(b_band.data.chunks)
        log.info("%s: '%s' collocated onto the grid of '%s' (nearest neighbour)", self.spec.alias, after.name,
                 before.name)
        return data, no_data, True

    # --- streaming pass (matrix and gain/loss tables) -------------------------------
    @property
    def is_sink(self) -> bool:
        """True when ``matrixFile`` or ``gainLossFile`` is set: the tables are filled in the engine's pass."""
        return bool(self.parameters.get("matrixFile") or self.parameters.get("gainLossFile"))

    def table_paths(self) -> dict[str, Path]:
        """``{'matrix': path, 'gain_loss': path}`` of the tables asked for."""
        out = {}
        for key, param in (("matrix", "matrixFile"), ("gain_loss", "gainLossFile")):
            raw = self.parameters.get(param)
            if raw:
                out[key] = Path(os.path.expanduser(str(raw))).absolute()
        if len(set(out.values())) < len(out):
            raise self._fail("matrixFile and gainLossFile are the same file")
        return out

    def prepare(self) -> None:
        """Check the table targets without touching the disk."""
        paths = list(self.table_paths().values())
        for p in paths:
            problem = output_problem([p], self.context)
            if problem:
                raise self._fail(problem)

    def pair_counter(self) -> AreaAccumulator:
        """An empty count of the target's from-to pairs (the extended matrix's cells), fed by ``self.pairs``."""
        band = self.target.band(change.CHANGE_BAND)
        return AreaAccumulator(band.shape, per_row=is_geographic(self.target.crs),
                               bins=change.pair_bins(len(self.classes)))

    def counted(self, counter: AreaAccumulator) -> tuple[np.ndarray, np.ndarray]:
        """The extended matrices of a filled :meth:`pair_counter`: ``(pixels, area_km2)``, each ``(n+3, n+3)``."""
        band = self.target.band(change.CHANGE_BAND)
        pixels, km2 = counts_to_km2(counter.counts, band.transform, self.target.crs, band.shape)
        k = change.extended_size(len(self.classes))
        return np.asarray(pixels).reshape(k, k), np.asarray(km2, dtype=np.float64).reshape(k, k)

    def warn_masked(self, pixels: np.ndarray) -> None:
        """Log :func:`masked_warning` of the counted pixels, if any."""
        warning = masked_warning(pixels, len(self.classes))
        if warning:
            log.warning("%s: %s", self.spec.alias, warning)

    def open(self):
        """A :class:`~snap_operators.core.streaming.SinkPlan` counting from-to pairs per chunk."""
        from ..core.streaming import SinkPlan

        if self.target is None:
            self.target = self.initialize()
        paths = self.table_paths()
        staged = StagedFiles()
        counter = self.pair_counter()
        report = []

        def finish() -> None:
            pixels, km2 = self.tables = self.counted(counter)
            texts = {
                "matrix": lambda: rows_csv_text(MATRIX_FIELDS, matrix_rows(pixels, km2, self.classes, self.base)),
                "gain_loss": lambda: rows_csv_text(GAIN_LOSS_FIELDS, gain_loss_rows(pixels, km2, self.classes)),
            }
            try:
                for key, path in paths.items():
                    stage_text(staged, path, texts[key]())
            except SnapPcError as exc:
                staged.abort()
                raise in_node(exc, self.node_id, self.spec.alias, ProductWriteError) from None
            report[:] = [format_change_report(pixels, km2, self.classes)]

        def publish() -> None:
            staged.publish()
            if self.print_tables:
                print(report[0], flush=True)
            self.warn_masked(self.tables[0])
            self.outputs = [str(p) for p in paths.values()]
            for p in paths.values():
                log.info("%s: wrote %s", self.spec.alias, p)

        return SinkPlan([self.pairs], [counter], finish, staged.abort, description="change tables", publish=publish)

    def output_files(self) -> list[Path]:
        """The transition matrix and gain/loss tables asked for."""
        return list(self.table_paths().values())

    def execute(self, progress: Callable[[int], None] | None = None) -> None:
        """Standalone run: count the transitions and write the tables (needs matrixFile or gainLossFile)."""
        if not self.is_sink:
            raise self.error("nothing to execute: set matrixFile or gainLossFile, or write the target with Write")
        super().execute(progress)

    def _fail(self, message: str) -> ProductWriteError:
        return ProductWriteError(str(self.error(message)))


def _overlap_fraction(ref: Band, ref_crs, other: Band, other_crs) -> float:
    """Share of `ref`'s extent that `other`'s extent covers (0 when disjoint)."""
    import rasterio.warp

    def bounds(band: Band):
        t, (h, w) = band.transform, band.shape
        xs = [t.c, t.c + t.a * w + t.b * h, t.c + t.a * w, t.c + t.b * h]
        ys = [t.f, t.f + t.d * w + t.e * h, t.f + t.d * w, t.f + t.e * h]
        return min(xs), min(ys), max(xs), max(ys)

    left, bottom, right, top = bounds(ref)
    try:
        o = rasterio.warp.transform_bounds(other_crs, ref_crs, *bounds(other), densify_pts=21)
    except Exception:  # noqa: BLE001 - a footprint outside the reference CRS's domain
        return 0.0
    if not all(math.isfinite(v) for v in o):
        return 0.0
    w = min(right, o[2]) - max(left, o[0])
    h = min(top, o[3]) - max(bottom, o[1])
    if w <= 0 or h <= 0:
        return 0.0
    return min(1.0, (w * h) / ((right - left) * (top - bottom)))


# --- tables -------------------------------------------------------------------------


def _km2(value: float) -> str:
    # round() + 0.0 turns -0.0 (a net change that cancels) into 0.0
    return "" if value is None or not math.isfinite(value) else f"{round(float(value), 6) + 0.0:.6f}"


def matrix_rows(pixels, area_km2, classes, base: int) -> list[list]:
    """Rows of the transition matrix table (:data:`MATRIX_FIELDS`): every from-to pair of the legend, then
    the non-empty no-data, outside-legend and masked cells; None where a cell has no class or code."""
    return [[r.from_id, r.from_name, r.to_id, r.to_name, r.code, r.pixels, r.area_km2]
            for r in change.transitions(pixels, area_km2, classes, base)]


def _valid_block(matrix, n: int) -> np.ndarray:
    k = change.extended_size(n)
    return np.asarray(matrix).reshape(k, k)[:n, :n]


def gain_loss_rows(pixels, area_km2, classes) -> list[list]:
    """Rows of the gain/loss table (:data:`GAIN_LOSS_FIELDS`): per class, then a Total row (class id None;
    total gain = total loss = changed area)."""
    n = len(classes)
    px = change.gain_loss(_valid_block(pixels, n))
    km = change.gain_loss(_valid_block(np.asarray(area_km2, dtype=np.float64), n))
    keys = ("before", "after", "unchanged", "gain", "loss", "net")
    rows = [[c.value, c.name, *(float(km[k][i]) for k in (*keys, "swap")), *(int(px[k][i]) for k in keys)]
            for i, c in enumerate(classes)]
    rows.append([None, "Total", *(float(np.sum(km[k])) for k in (*keys, "swap")),
                 *(int(np.sum(px[k])) for k in keys)])
    return rows


def rows_csv_text(fields: tuple[str, ...], rows: list[list]) -> str:
    """CSV of table rows: None as an empty cell, areas (floats) in km² with 6 decimals."""
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(fields)
    for row in rows:
        wr.writerow(["" if v is None else _km2(v) if isinstance(v, float) else v for v in row])
    return buf.getvalue()


def masked_warning(pixels, n_classes: int) -> str | None:
    """What to say when clouds (class 254) hide too much of what both dates have data for, else None.

    A cloudy date compared with a clear one gives a matrix of the few pixels seen on both, which reads
    as "little changed" unless the share is said.
    """
    masked, _, compared = change.not_compared(pixels, n_classes)
    seen = masked + compared
    if not seen or masked <= change.MAX_MASKED_SHARE * seen:
        return None
    return (f"{masked / seen:.1%} of the pixels with data on both dates ({masked} of {seen}) are masked (cloud, "
            f"cloud shadow, snow) on one date or both: the transition matrix and gain/loss describe the other "
            f"{compared} pixels only; compare clearer dates")


def format_change_report(pixels, area_km2, classes) -> str:
    """The printed summary: from-to matrix in km² (rows before, columns after), then gain/loss/net."""
    n = len(classes)
    km = _valid_block(np.asarray(area_km2, dtype=np.float64), n)
    k = change.extended_size(n)
    px = np.asarray(pixels).reshape(k, k)
    short = [f"{c.value} {c.name.split('/')[0][:14]}" for c in classes]
    width = max(16, *(len(s) for s in short))
    lines = ["Transition matrix (sq km; rows: before, columns: after)",
             " " * width + " | " + " | ".join(f"{s:>{width}}" for s in short)]
    for s, row in zip(short, km):
        lines.append(f"{s:<{width}} | " + " | ".join(f"{v:>{width}.4f}" for v in row))
    gl = change.gain_loss(km)
    lines += ["", "Class ID | Class Name | Gain (sq km) | Loss (sq km) | Net (sq km)"]
    for i, c in enumerate(classes):
        lines.append(f"{c.value} | {c.name} | {gl['gain'][i]:.4f} | {gl['loss'][i]:.4f} | {gl['net'][i]:+.4f}")
    masked, no_data, _ = change.not_compared(px, n)
    if no_data:
        lines.append(f"({no_data} pixels without data on one date or outside the legend are not counted)")
    if masked:
        lines.append(f"({masked} pixels masked (cloud, cloud shadow, snow) on one date or both are not compared)")
    return "\n".join(lines)

