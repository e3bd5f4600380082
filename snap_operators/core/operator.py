"""Operator base class, execution context and registry (SNAP's GPF shape).

An operator is a spec plus two methods, as in SNAP's GPF:

* ``initialize()`` checks sources and parameters and returns the *target
  product*, whose bands are lazy Dask arrays (SNAP's ``initialize`` +
  ``setTargetProduct``);
* the per-tile science lives in a pure numpy function, mapped over chunks with
  :func:`map_tiles` (SNAP's ``computeTile``). Operators that also run tile by
  tile inside SNAP declare that function, the bands it reads and the bands it
  writes as a :class:`TileKernel` (:meth:`Operator.tile_kernel`); the SNAP
  adapter (:mod:`snap_operators.snap.adapter`) needs nothing else.

Operators that write something (``Write``, ``LabelMaskExport``; the
classifier's area table) implement the sink protocol declared on
:class:`Operator`: :attr:`~Operator.is_sink`, :meth:`~Operator.prepare`,
:meth:`~Operator.output_files` and :meth:`~Operator.open`, which hands the
engine a :class:`~snap_operators.core.streaming.SinkPlan`;
:meth:`~Operator.execute` runs that protocol for one operator alone.

Example
-------
>>> from snap_operators.core.operator import Operator, register
>>> from snap_operators.core.spec import OperatorSpec
>>> @register
... class Identity(Operator):
...     spec = OperatorSpec(alias="IdentityExample", description="Copies its source.")
...     def initialize(self):
...         return self.source_product().copy()
"""

from __future__ import annotations

import importlib
import logging
import operator
import pkgutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from .context import ExecutionContext
from .errors import GraphError, OperatorError, ParameterError, node_label
from .product import Product
from .spec import OperatorSpec

if TYPE_CHECKING:
    from .streaming import SinkPlan

log = logging.getLogger(__name__)

#: A pixel rectangle ``(x, y, width, height)``, as SNAP's ``java.awt.Rectangle``.
Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class TileKernel:
    """An operator's per-tile step, declared for hosts that compute tiles one by one (SNAP).

    The host reads the tiles of :attr:`inputs` from the operator's sources,
    calls :attr:`func` once per target rectangle and writes the tiles of
    :attr:`outputs` into the target bands of the same names; every other band
    of the operator's target passes through from its source.

    Attributes
    ----------
    func : callable
        The operator's pure per-tile function, the one its ``initialize()``
        maps over chunks: ``func({key: tile}) -> {name: tile}``, every tile a
        2-D numpy array of the target rectangle's shape; with :attr:`context`,
        ``func({key: tile}, source, target) -> {name: tile}``, the input tiles
        covering the `source` rectangle and the outputs the `target`
        rectangle (both :data:`Rect`). It may return more arrays than
        :attr:`outputs` (e.g. one that feeds the sink, :attr:`sink_output`).
    inputs : dict of str to str
        Key of `func`'s input -> name of the source band it reads (physical
        values; floats NaN where invalid, integers their no-data value).
    outputs : dict of str to numpy.dtype
        Target band computed per tile -> its dtype.
    context : callable, optional
        For functions that need pixels around the tile (a halo):
        ``context(target) -> source``, the source rectangle, inside the
        scene, to read for target rectangle `target` (:meth:`HaloTiles.source_window`
        for a plain halo). None: the tiles of the target rectangle itself.
    tile : (int, int), optional
        Preferred target tile ``(rows, cols)`` in pixels; None: the source
        product's.
    sources : dict of str to str, optional
        Source id each input key reads from, for operators with several
        sources; None: every input from the first source.
    sink_output : str, optional
        For operators that are sinks (:attr:`Operator.is_sink`): the output of
        `func` whose tiles equal the chunks of the first array of the
        operator's sink plan (``open().arrays[0]``), so that a host feeds them
        to the plan's target instead of computing that array again. None: the
        host computes each chunk of that array itself once the tiles covering
        it are done.
    """

    func: Callable[..., Mapping[str, np.ndarray]]
    inputs: Mapping[str, str]
    outputs: Mapping[str, np.dtype]
    context: Callable[[Rect], Rect] | None = None
    tile: tuple[int, int] | None = None
    sources: Mapping[str, str] | None = None
    sink_output: str | None = None


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

    Attributes
    ----------
    target : Product or None
        The target product, once initialized.
    outputs : list of str
        Sinks: the paths written, set when their outputs are published.
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
        self.outputs: list[str] = []

    # --- GPF-like API ---------------------------------------------------
    def initialize(self) -> Product:
        """Build and return the lazy target product."""
        raise NotImplementedError

    def tile_kernel(self) -> TileKernel | None:
        """The per-tile step a tile-by-tile host (the SNAP adapter) runs; after :meth:`initialize`.

        Returns
        -------
        TileKernel or None
            None (the default) for operators that do not run tile by tile
            outside the engine (readers, writers, operators SNAP has itself).

        Raises
        ------
        OperatorError
            This node cannot be computed tile by tile from its sources as
            given (one line saying what to change).
        """
        return None

    # --- sink protocol ----------------------------------------------------
    @property
    def is_sink(self) -> bool:
        """Whether this node writes something in the engine's streaming pass.

        ``spec.sink`` by default; an operator whose :meth:`open` streams
        only when configured to (a file parameter given) overrides it.
        Valid after :meth:`initialize`. The engine, the SNAP adapter and
        :meth:`execute` drive :meth:`prepare`, :meth:`output_files` and
        :meth:`open` of the nodes for which it is True, and only of those.
        """
        return self.spec.sink

    @classmethod
    def may_sink(cls) -> bool:
        """Whether nodes of this operator can be sinks, known before any is created.

        True for sinks (``spec.sink``) and for operators that implement
        :meth:`open`; :attr:`is_sink` then decides per node. The engine
        initializes only the nodes these feed.
        """
        return cls.spec.sink or cls.open is not Operator.open

    def prepare(self) -> None:
        """Sinks: check the targets without side effects (nothing written, nothing created).

        Raises a one-line ``ProductWriteError`` when a target exists
        without ``context.overwrite``, is one of ``context.input_files``, or
        its folder is missing or not writable. The default checks nothing.
        """

    def output_files(self) -> list[Path]:
        """Sinks: every path the node writes, side files included (default: none).

        The engine checks them against every file the run reads and every
        other output, then locks them for the run; staged leftovers of dead
        runs in their folders are removed.
        """
        return []

    def open(self) -> SinkPlan:
        """Sinks: create the staged outputs and say what to stream into them.

        Returns
        -------
        SinkPlan
            Arrays to compute and one block target each
            (``target[(rows, cols)] = block``, called from several threads),
            then ``finish`` (close and verify the staged files; may fail),
            ``publish`` (renames only) or, on any error, ``abort`` (remove
            the staged files; never raises). ``publish`` sets
            :attr:`outputs`. Staged names: :mod:`snap_operators.core.staging`.
        """
        raise NotImplementedError(f"{self.spec.alias} is not a sink")

    def execute(self, progress: Callable[[int], None] | None = None) -> None:
        """Sinks only: check, open, stream, then commit (or abort on any error).

        This is what the engine does for all sinks of a graph at once; here
        for this one operator alone (scripts, tests).
        """
        from .streaming import store

        if self.target is None:
            self.target = self.initialize()
        if not self.is_sink:
            raise NotImplementedError(f"{self.spec.alias} is not a sink")
        self.prepare()
        plan = self.open()
        try:
            store(plan.arrays, plan.targets, self.context)
            plan.commit()
        except BaseException:
            plan.abort()
            raise

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

    def named_sources(self, names: Sequence[str], what: str) -> dict[str, str]:
        """Source id of each of `names`: the source of that name, else the unnamed sources in graph
        order (``sourceProduct``, ``sourceProduct.1``, or a ``<sourceProducts>`` list).

        Raises
        ------
        OperatorError
            Not exactly one source per name (`what` names them in the message, e.g. "class maps").
        """
        ids = {k: k for k in names if k in self.sources}
        others = [k for k in self.sources if k not in names]
        for name in names:
            if name not in ids and others:
                ids[name] = others.pop(0)
        listed = " and ".join(f"'{n}'" for n in names)
        count = len(self.sources)
        if len(ids) < len(names):
            raise self.error(f"needs {_count_word(len(names))} {what}, {listed}; got {count} source product(s)")
        if others:
            raise self.error(f"needs exactly {_count_word(len(names))} {what}, {listed}; got {count} source products")
        return {n: ids[n] for n in names}

    def error(self, message: str) -> OperatorError:
        """An OperatorError prefixed with the operator alias and node id."""
        return OperatorError(f"{node_label(self.spec.alias, self.node_id)}: {message}")

    def require_bands(self, product: Product, names: Sequence[str], parameter: str = "sourceBands") -> None:
        """Raise a ParameterError naming the bands of `names` (given as `parameter`) that `product` lacks."""
        unknown = [n for n in names if n not in product.bands]
        if unknown:
            raise ParameterError(str(self.error(f"{parameter} {', '.join(unknown)} not in product '{product.name}'; "
                                                f"bands: {product.bands_listed()}")))

    @classmethod
    def create(cls, sources=None, raw_parameters: Mapping[str, Any] | None = None, **kwargs) -> "Operator":
        """Instantiate from raw (string) parameter values, converting with the spec."""
        values, unknown = cls.spec.convert_parameters(raw_parameters or {})
        for name in unknown:
            log.info("%s: parameter '%s' is not used by the standalone engine", cls.spec.alias, name)
        return cls(sources, values, **kwargs)


def _count_word(n: int) -> str:
    return {2: "two", 3: "three"}.get(n, str(n))


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
    if len(out_names) == 1:  # one blockwise task per chunk (apply_gufunc adds two more)
        res = da.map_blocks(call, *arrays, dtype=dtypes[0], meta=np.empty((0, 0), dtype=dtypes[0]))
        return {out_names[0]: res}
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
    # One task per chunk pads the chunk of every input with `halo` pixels from its eight
    # neighbours, calls `func` once and hands back its outputs, each output array taking its
    # own item: no concatenated overlap arrays, no stack of the outputs, no trimming pass.
    # The context comes from one small task per chunk position that copies the edges of all
    # inputs there, so a chunk is released once its own call and its edges are done.
    first = arrays[0]
    chunks = tuple(_at_least(c, halo) for c in first.chunks)  # a halo comes from the next chunk only
    aligned = [a if a.chunks == chunks else a.rechunk(chunks) for a in arrays]
    rows, cols = chunks
    ny, nx = len(rows), len(cols)
    token = uuid.uuid4().hex
    call_name = f"halo-tiles-{token}"
    edges_name = f"halo-edges-{token}"
    r = halo
    fills = [np.nan if a.dtype.kind in "fc" else 0 for a in aligned]
    dsk: dict = {}
    for i in range(ny):
        for j in range(nx):
            dsk[(edges_name, i, j)] = (_edges, r, [(a.name, i, j) for a in aligned])
    for i in range(ny):
        for j in range(nx):
            around = [(edges_name, i + di, j + dj) if 0 <= i + di < ny and 0 <= j + dj < nx else None
                      for di in (-1, 0, 1) for dj in (-1, 0, 1)]
            around[4] = None  # the chunk itself
            dsk[(call_name, i, j)] = (_halo_call, func, names, out_names, dtypes, r, fills,
                                      [(a.name, i, j) for a in aligned], around)
    graph = HighLevelGraph.from_collections(call_name, dsk, dependencies=aligned)
    mapped = _HaloMap(func, tuple(names), tuple(aligned), tuple(out_names), tuple(dtypes), r, token)
    out = {}
    for k, (o, dt) in enumerate(zip(out_names, dtypes)):
        name = f"{o}-halo-{token}"
        layer = {(name, i, j): (operator.getitem, (call_name, i, j), k) for i in range(ny) for j in range(nx)}
        out[o] = da.Array(_with_layer(graph, name, layer, call_name), name, chunks, meta=np.empty((0, 0), dtype=dt))
        _HALO_OUTPUTS[name] = (mapped, k)
    while len(_HALO_OUTPUTS) > 256:
        _HALO_OUTPUTS.pop(next(iter(_HALO_OUTPUTS)))
    return out


def _with_layer(graph: HighLevelGraph, name: str, layer: dict, on: str) -> HighLevelGraph:
    """`graph` plus the layer `name` that depends on its layer `on`."""
    return HighLevelGraph({**graph.layers, name: layer}, {**graph.dependencies, name: {on}})


def _at_least(sizes: tuple[int, ...], halo: int) -> tuple[int, ...]:
    """Chunk sizes along an axis with every chunk at least `halo` (short ones merged into a neighbour)."""
    out = list(sizes)
    k = 0
    while len(out) > 1 and k < len(out):
        if out[k] < halo:
            m = k - 1 if k == len(out) - 1 else k + 1
            out[min(k, m)] = out[k] + out[m]
            del out[max(k, m)]
            k = max(0, min(k, m) - 1)
        else:
            k += 1
    return tuple(out)


def _edges(halo: int, blocks: list) -> list:
    """The context a chunk gives its eight neighbours, per input: ``{(di, dj): copy}``.

    ``(di, dj)`` is where the chunk lies as seen from the neighbour (-1: above or
    left); the neighbour takes the chunk's last `halo` rows where ``di == -1``,
    its first where ``di == 1``, all of them where ``di == 0`` (columns alike).
    """
    cut = {-1: slice(-halo, None), 0: slice(None), 1: slice(0, halo)}
    return [{(di, dj): np.array(b[cut[di], cut[dj]]) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj}
            for b in blocks]


def _halo_call(func, names, out_names, dtypes, halo: int, fills, blocks, around) -> tuple:
    tiles = {}
    for k, (name, block) in enumerate(zip(names, blocks)):
        h, w = block.shape
        tile = _take((h + 2 * halo, w + 2 * halo), block.dtype)
        rows = (slice(0, halo), slice(halo, halo + h), slice(halo + h, h + 2 * halo))
        cols = (slice(0, halo), slice(halo, halo + w), slice(halo + w, w + 2 * halo))
        for n in range(9):
            di, dj = n // 3 - 1, n % 3 - 1
            part = tile[rows[n // 3], cols[n % 3]]
            if n == 4:
                part[...] = block
            elif around[n] is None:
                part[...] = fills[k]
            else:
                part[...] = around[n][k][(di, dj)]
        tiles[name] = tile
    result = func(tiles)
    outs = []
    for o, dt in zip(out_names, dtypes):
        x = np.asarray(result[o]).astype(dt, copy=False)
        if any(np.may_share_memory(x, t) for t in tiles.values()):
            x = x.copy()  # the padded tiles go back to the pool
        outs.append(x)
    del result
    for t in tiles.values():
        _give(t)
    return tuple(outs)


# Padded tiles are large (5 bands: 21 MB per 1024² chunk) and needed only during one call:
# each worker thread keeps a few for its next chunks instead of having fresh pages mapped
# (and faulted in) for every chunk. A tile is out of the pool while a call uses it.
_pool = threading.local()
_POOL_TILES = 8


def _take(shape: tuple[int, int], dtype) -> np.ndarray:
    free = getattr(_pool, "free", None)
    if free is None:
        free = _pool.free = []
    dtype = np.dtype(dtype)
    for n, t in enumerate(free):
        if t.shape == shape and t.dtype == dtype:
            return free.pop(n)
    return np.empty(shape, dtype=dtype)


def _give(tile: np.ndarray) -> None:
    free = _pool.free
    free.append(tile)
    if len(free) > _POOL_TILES:
        free.pop(0)


@dataclass(frozen=True, eq=False)
class _HaloMap:
    """A tile function with context as :func:`map_tiles` mapped it (for :func:`halo_chunk`)."""

    func: Callable
    names: tuple[str, ...]
    inputs: tuple[da.Array, ...]
    out_names: tuple[str, ...]
    dtypes: tuple[np.dtype, ...]
    halo: int
    token: str


#: Outputs of map_tiles(..., halo > 0): array name -> (how it was mapped, output index); the latest 256.
_HALO_OUTPUTS: dict[str, tuple[_HaloMap, int]] = {}


def array_halo(array: da.Array) -> int:
    """Context in pixels an output of :func:`map_tiles` needs around each tile (0: none, or not such an output)."""
    hit = _HALO_OUTPUTS.get(getattr(array, "name", None))
    return hit[0].halo if hit is not None else 0


def halo_chunk(array: da.Array, i: int, j: int, window: tuple[slice, slice] | None = None) -> da.Array | None:
    """Chunk ``(i, j)`` of an output of :func:`map_tiles` with a halo, computed from windows of its inputs.

    The values equal ``array.blocks[i, j]`` (or ``array[window]`` for a
    `window` of scene rows and columns inside that chunk); what differs is
    what is read: an input that comes straight from a file (any
    ``dask.array.from_array`` source) is read as the one window the target
    needs with its halo, not as the nine whole chunks around it. For
    computing a few chunks on their own (a spread sample of the scene in
    ``initialize()``), where the neighbours are not needed otherwise. The
    outputs of one mapping share one call per chunk when computed together.
    None for any other array.
    """
    hit = _HALO_OUTPUTS.get(getattr(array, "name", None))
    if hit is None or array.chunks != hit[0].inputs[0].chunks:
        return None
    m, k = hit
    rows, cols = array.chunks
    y, x = sum(rows[:i]), sum(cols[:j])
    if window is None:
        target = (x, y, cols[j], rows[i])
    else:
        ys, xs = window
        target = (xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
        if not (x <= target[0] and target[0] + target[2] <= x + cols[j] and y <= target[1]
                and target[1] + target[3] <= y + rows[i]):
            raise ValueError(f"window {window} is not inside chunk {(i, j)}")
    tiles = HaloTiles(m.func, m.halo, array.shape)
    sx, sy, sw, sh = source = tiles.source_window(target)
    call = f"halo-window-{m.token}-{i}-{j}-{'-'.join(map(str, target))}"
    dsk: dict = {}
    deps = []
    windows = []
    for n, a in enumerate(m.inputs):
        reader = _file_source(a)
        if reader is not None:
            key = (f"read-{n}-{call}", 0, 0)
            dsk[key] = (_read_window, reader, slice(sy, sy + sh), slice(sx, sx + sw))
        else:
            window = a[sy:sy + sh, sx:sx + sw].rechunk((sh, sw))
            deps.append(window)
            key = (window.name, 0, 0)
        windows.append(key)
    dsk[(call, 0, 0)] = (_window_call, tiles, m.names, m.out_names, m.dtypes, windows, source, target)
    name = f"{array.name}-{call}"
    dsk[(name, 0, 0)] = (operator.getitem, (call, 0, 0), k)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    return da.Array(graph, name, ((target[3],), (target[2],)), meta=np.empty((0, 0), dtype=m.dtypes[k]))


def _file_source(a: da.Array):
    """The array-like a ``from_array`` array reads chunks from (whole, unsliced), or None."""
    try:
        if len(a.dask.layers) != 1:
            return None
        task = a.dask[(a.name,) + (0,) * a.ndim]
        func, args = getattr(task, "func", None), getattr(task, "args", None)
        if func not in (da.core.getter, da.core.getter_nofancy, da.core.getter_inline) or not args:
            return None
        source = getattr(args[0], "value", args[0])  # a DataNode in dask's task spec
        if not hasattr(source, "__getitem__") or tuple(getattr(source, "shape", ())) != a.shape:
            return None
        return source
    except Exception:  # another dask layout: read chunks as usual
        return None


def _read_window(source, rows: slice, cols: slice) -> np.ndarray:
    return np.asarray(source[rows, cols])


def _window_call(tiles: "HaloTiles", names, out_names, dtypes, windows, source, target) -> tuple:
    result = tiles(dict(zip(names, windows)), source, target)
    return tuple(np.asarray(result[o]).astype(dt, copy=False) for o, dt in zip(out_names, dtypes))


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
#: Package whose every module defines (and registers) operators: one file per operator.
OPS_PACKAGE = "snap_operators.ops"
_loaded = False

#: Operators that exist in SNAP (its toolboxes) but not in the standalone engine.
SNAP_ONLY_OPERATORS = frozenset(
    """Apply-Orbit-File Calibration Terrain-Correction Speckle-Filter ThermalNoiseRemoval
    Remove-GRD-Border-Noise TOPSAR-Split TOPSAR-Deburst TOPSAR-Merge Multilook
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
    # Every module of the package, so that a new operator is a new file there and nothing else.
    package = importlib.import_module(OPS_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{OPS_PACKAGE}.{module.name}")


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
