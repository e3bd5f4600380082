"""Operator base class, execution context and registry (SNAP's GPF shape).

An operator is a spec plus two methods, as in SNAP's GPF:

* ``initialize()`` checks sources and parameters and returns the *target
  product*, whose bands are lazy Dask arrays (SNAP's ``initialize`` +
  ``setTargetProduct``);
* the per-tile science lives in a pure numpy function, mapped over chunks with
  :func:`map_tiles` (SNAP's ``computeTile``/``computeTileStack``).

Sink operators (``Write``, ``LabelMaskExport``) also implement
``execute(progress)``, which streams their target to disk.

Example
-------
>>> from snap_operators.operator import Operator, register
>>> from snap_operators.spec import OperatorSpec
>>> @register
... class Identity(Operator):
...     spec = OperatorSpec(alias="IdentityExample", description="Copies its source.")
...     def initialize(self):
...         return self.source_product().copy()
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import dask.array as da
import numpy as np

from .errors import GraphError, OperatorError
from .product import DEFAULT_TILE_SIZE, Product
from .spec import OperatorSpec

log = logging.getLogger(__name__)


@dataclass
class ExecutionContext:
    """Run-wide settings handed to every operator of a graph run.

    Attributes
    ----------
    tile_size : int
        Chunk edge in pixels for products read from disk.
    overwrite : bool
        Allow sinks to replace existing targets.
    input_files : set of str
        Resolved paths read by the graph; sinks refuse to write over them.
    client : distributed.Client or None
        Cluster client when running on ``dask.distributed``.
    num_workers : int or None
        Threads for the local scheduler.
    progress : bool
        Show progress bars.
    """

    tile_size: int = DEFAULT_TILE_SIZE
    overwrite: bool = False
    input_files: set[str] = field(default_factory=set)
    client: Any = None
    num_workers: int | None = None
    progress: bool = False


class Operator:
    """Base class of all operators.

    Parameters
    ----------
    sources : dict
        Source name -> Product (``sourceProduct``, ``sourceProduct.1``, ...).
    parameters : dict
        Typed parameter values (already converted by the spec).
    context : ExecutionContext, optional
    node_id : str, optional
        Graph node id, used in error messages.
    """

    spec: ClassVar[OperatorSpec]

    def __init__(
        self,
        sources: Mapping[str, Product] | None = None,
        parameters: Mapping[str, Any] | None = None,
        context: ExecutionContext | None = None,
        node_id: str | None = None,
    ):
        self.sources = dict(sources or {})
        given = dict(parameters or {})
        defaults = {p.name: p.default for p in self.spec.parameters}
        defaults.update(given)
        self.parameters = defaults
        self.context = context or ExecutionContext()
        self.node_id = node_id or self.spec.alias
        self.target: Product | None = None

    # --- GPF-like API ---------------------------------------------------
    def initialize(self) -> Product:
        """Build and return the lazy target product."""
        raise NotImplementedError

    def execute(self, progress: Callable[[int], None] | None = None) -> None:
        """Sinks only: check, open, stream, then commit (or abort on any error).

        This is what the engine does for all sinks of a graph at once; here
        for this one operator alone (scripts, tests, the SNAP adapter).
        """
        from .engine import store

        open_plan = getattr(self, "open", None)
        if open_plan is None:
            raise NotImplementedError(f"{self.spec.alias} is not a sink")
        if self.target is None:
            self.target = self.initialize()
        prepare = getattr(self, "prepare", None)
        if prepare is not None:
            prepare()
        plan = open_plan()
        try:
            store(plan.arrays, plan.targets, self.context)
            plan.commit()
        except BaseException:
            plan.abort()
            raise

    @property
    def is_sink(self) -> bool:
        """Whether this node writes something in the engine's streaming pass.

        True for sink operators; an operator may override it to join the pass
        only when configured to (e.g. when given an output file parameter).
        """
        return self.spec.sink

    # --- helpers --------------------------------------------------------
    def source_product(self, name: str | None = None) -> Product:
        """The source called `name`, else the first one (SNAP's fallback)."""
        if name is not None and name in self.sources:
            return self.sources[name]
        if not self.sources:
            raise OperatorError(f"{self.spec.alias}: node '{self.node_id}' has no source product")
        return next(iter(self.sources.values()))

    def source_products(self) -> list[Product]:
        """All sources in graph order (sourceProduct, sourceProduct.1, ...)."""
        return list(self.sources.values())

    def error(self, message: str) -> OperatorError:
        """An OperatorError prefixed with the operator alias and node id."""
        prefix = self.spec.alias if self.node_id == self.spec.alias else f"{self.spec.alias} (node '{self.node_id}')"
        return OperatorError(f"{prefix}: {message}")

    @classmethod
    def create(cls, sources=None, raw_parameters: Mapping[str, Any] | None = None, **kwargs) -> "Operator":
        """Instantiate from raw (string) parameter values, converting with the spec."""
        values, unknown = cls.spec.convert_parameters(raw_parameters or {})
        for name in unknown:
            log.info("%s: parameter '%s' is not used by the standalone engine", cls.spec.alias, name)
        return cls(sources, values, **kwargs)


def map_tiles(
    func: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    inputs: Mapping[str, da.Array],
    outputs: Mapping[str, Any],
    halo: int = 0,
) -> dict[str, da.Array]:
    """Map a pure per-tile function over aligned chunks of several bands.

    Parameters
    ----------
    func : callable
        ``func({band: tile}) -> {output: tile}``; every tile is a 2-D numpy
        array of the same shape. This is the function the SNAP adapter calls
        with SNAP's tiles too.
    inputs : dict of str to dask.array.Array
        Input bands, all of one shape.
    outputs : dict of str to dtype
        Output names and dtypes.
    halo : int
        Pixels of context `func` needs around each tile: it then gets tiles
        `halo` pixels larger on every side (from the neighbouring chunks;
        NaN, or 0 for integer bands, beyond the scene) and returns the
        outputs of the inner part only (:class:`HaloTiles` does this for
        SNAP's tiles).

    Returns
    -------
    dict of str to dask.array.Array
        One lazy array per output; the function runs once per chunk even when
        several outputs are used.

    Examples
    --------
    >>> import dask.array as da
    >>> a = da.ones((4, 4), chunks=2)
    >>> out = map_tiles(lambda t: {"twice": t["a"] * 2}, {"a": a}, {"twice": "float64"})
    >>> float(out["twice"].sum().compute())
    32.0
    """
    names = list(inputs)
    out_names = list(outputs)
    arrays = list(inputs.values())
    if not arrays:
        raise ValueError("map_tiles needs at least one input band")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise OperatorError(f"bands differ in size: {sorted(shapes)}; add a Resample node")

    def call(*blocks):
        result = func(dict(zip(names, blocks)))
        # Cast to the declared dtypes so dask's metadata never lies about a chunk.
        out = tuple(np.asarray(result[o]).astype(dt, copy=False) for o, dt in zip(out_names, dtypes))
        return out[0] if len(out) == 1 else out

    dtypes = [np.dtype(outputs[o]) for o in out_names]
    if halo:
        return _map_tiles_halo(func, names, arrays, out_names, dtypes, int(halo))
    signature = ",".join("()" for _ in names) + "->" + (
        "()" if len(out_names) == 1 else "(" + "),(".join("" for _ in out_names) + ")"
    )
    res = da.apply_gufunc(
        call,
        signature,
        *arrays,
        output_dtypes=dtypes[0] if len(dtypes) == 1 else dtypes,
        vectorize=False,
        allow_rechunk=False,
    )
    if len(out_names) == 1:
        res = (res,)
    return dict(zip(out_names, res))


def _map_tiles_halo(func, names, arrays, out_names, dtypes, halo: int) -> dict[str, da.Array]:
    first = arrays[0]
    aligned = [first] + [a.rechunk(first.chunks) for a in arrays[1:]]
    if min(min(c) for c in first.chunks) < halo:  # dask's overlap needs chunks at least as deep as the halo
        size = max(halo, max(max(c) for c in first.chunks))
        aligned = [a.rechunk(size) for a in aligned]
    padded = [da.overlap.overlap(a, depth=halo, boundary=np.nan if a.dtype.kind == "f" else 0) for a in aligned]

    def call(*blocks):
        result = func(dict(zip(names, blocks)))
        h, w = blocks[0].shape
        stack = np.full((len(out_names), h, w), np.nan if all(d.kind == "f" for d in dtypes) else 0, dtype=np.result_type(*dtypes))
        for k, o in enumerate(out_names):
            stack[k, halo:h - halo, halo:w - halo] = result[o]
        return stack

    dtype = np.result_type(*dtypes)
    stacked = da.map_blocks(call, *padded, new_axis=0, chunks=((len(out_names),),) + padded[0].chunks, dtype=dtype)
    trimmed = da.overlap.trim_internal(stacked, {0: 0, 1: halo, 2: halo})
    if trimmed.shape[1:] != first.shape:  # the scene's outer rim came from the boundary padding
        trimmed = trimmed[:, halo:-halo, halo:-halo]
    return {o: trimmed[k].astype(dt, copy=False) for k, (o, dt) in enumerate(zip(out_names, dtypes))}


class HaloTiles:
    """A tile function with context, for callers that read any source window (SNAP).

    Wraps ``func(tiles) -> outputs`` that needs `halo` pixels around each
    tile (as :func:`map_tiles` hands it over): :meth:`source_window` names
    the source rectangle a target rectangle needs (clipped to the scene) and
    calling the wrapper with the tiles of that window pads them with NaN (0
    for integers) where the window was clipped, then returns the target
    tile's outputs. Results equal those of :func:`map_tiles` for any tiling.
    """

    def __init__(self, func: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]], halo: int,
                 scene: tuple[int, int]):
        self.func, self.halo, self.scene = func, int(halo), (int(scene[0]), int(scene[1]))

    def source_window(self, rect: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of the source pixels the target tile ``(x, y, w, h)`` needs."""
        x, y, w, h = rect
        r = self.halo
        x0, y0 = max(0, x - r), max(0, y - r)
        x1, y1 = min(self.scene[1], x + w + r), min(self.scene[0], y + h + r)
        return (x0, y0, x1 - x0, y1 - y0)

    def __call__(self, tiles: dict[str, np.ndarray], source: tuple[int, int, int, int],
                 target: tuple[int, int, int, int]) -> Mapping[str, np.ndarray]:
        r = self.halo
        sx, sy, sw, sh = source
        x, y, w, h = target
        top, left = r - (y - sy), r - (x - sx)
        padded = {}
        for k, t in tiles.items():
            t = np.asarray(t)
            out = np.full((h + 2 * r, w + 2 * r), np.nan if t.dtype.kind == "f" else 0, dtype=t.dtype)
            out[top:top + sh, left:left + sw] = t
            padded[k] = out
        return self.func(padded)


# --- registry -------------------------------------------------------------

_OPERATORS: dict[str, type[Operator]] = {}
_BUILTIN_MODULES = (
    "snap_operators.ops.read",
    "snap_operators.ops.write",
    "snap_operators.ops.resample",
    "snap_operators.ops.subset",
    "snap_operators.ops.bandmaths",
    "snap_operators.ops.bandmerge",
    "snap_operators.ops.collocate",
)
#: Modules with science operators, registered when present (later issues).
_OPTIONAL_MODULES = (
    "snap_operators.ops.spectral_indices",
    "snap_operators.ops.cloud_mask",
    "snap_operators.ops.progressive_classifier",
    "snap_operators.ops.label_mask_export",
    "snap_operators.ops.unet_inference",
    "snap_operators.ops.change_detection",
)
_loaded = False

#: Operators that exist in SNAP (its toolboxes) but not in the standalone engine.
SNAP_ONLY_OPERATORS = frozenset(
    """Apply-Orbit-File Calibration Terrain-Correction Speckle-Filter ThermalNoiseRemoval
    Remove-GRD-Border-Noise LinearToFromdB TOPSAR-Split TOPSAR-Deburst TOPSAR-Merge Multilook
    Ellipsoid-Correction-GG Ellipsoid-Correction-RD Terrain-Flattening SAR-Simulation SRGR GRD-Post
    SliceAssembly Back-Geocoding Enhanced-Spectral-Diversity Interferogram TopoPhaseRemoval
    Goldstein-Phase-Filtering SnaphuExport SnaphuImport Phase-To-Displacement Polarimetric-Decomposition
    Polarimetric-Matrices Polarimetric-Speckle-Filter Offset-Tracking Coherence CreateStack
    Cross-Correlation Warp Land-Sea-Mask AddElevation Convert-Datatype Undersample Oversample
    BiophysicalOp Biophysical10mOp S2Resampling Idepix.Sentinel2 Sen2Cor C2RCC.MSI Reproject Mosaic
    Merge Image-Filter KMeansClusterAnalysis EMClusterAnalysis RandomForestClassifier
    Binning PixEx StatisticsOp TileWriter ProductSet-Reader Multi-Temporal-Speckle-Filter
    Generic-Region-Merging Forest-Cover-Change Flip Fill-DEM-Hole""".split()
)


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator adding an operator to the registry under its alias."""
    alias = cls.spec.alias
    if alias in _OPERATORS and _OPERATORS[alias] is not cls:
        raise ValueError(f"operator alias {alias!r} registered twice")
    _OPERATORS[alias] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)
    for mod in _OPTIONAL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def operators() -> dict[str, type[Operator]]:
    """All registered operators, alias -> class, sorted by alias."""
    _load_builtins()
    return dict(sorted(_OPERATORS.items()))


def get_operator(alias: str, node_id: str | None = None) -> type[Operator]:
    """The operator class for `alias`, or a one-line error that says why not."""
    ops = operators()
    if alias in ops:
        return ops[alias]
    where = f"node '{node_id}': " if node_id else ""
    if alias in SNAP_ONLY_OPERATORS:
        raise GraphError(f"{where}operator {alias} is provided by SNAP; run this graph with gpt")
    raise GraphError(f"{where}unknown operator '{alias}'; known operators: {', '.join(ops)}")


def replace_parameters(op: Operator, **changes: Any) -> Operator:
    """A new operator like `op` with some parameters replaced (for tests/tools)."""
    params = dict(op.parameters)
    params.update(changes)
    return type(op)(op.sources, params, dataclasses.replace(op.context), op.node_id)
