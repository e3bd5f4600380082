"""GPF's tile pulling as it locks: graphs of Python and Java operators on threads.

Emulates, for the stand-in products of :mod:`.jpy_api`, how SNAP computes
tiles (snap-engine master @ 048ce3a253, esa-snappy 12.x):

* ``PyOperator`` runs every call into Python inside ``synchronized
  (PyLib.class)``: one reentrant lock for all Python operators of the JVM
  (:attr:`Graph.python`);
* ``OperatorContext`` gives an operator that must compute stack-wise (it has
  ``computeTileStack`` and no ``computeTile``) ``OperatorImageTileStack``
  images, all bands of one tile sharing one lock held while the stack is
  computed; otherwise plain ``OperatorImage``s, no lock. An operator whose
  descriptor says ``autoWriteSuppressed`` is an *output node*: its stack
  gets no target tiles and nothing is cached (``OperatorImageTileStack``'s
  "tb 2020-03-09" branch);
* a band copied with its source image (``ProductUtils.copyBand(..., true)``)
  reads the upstream image; the operator still holds an image of its own
  for it, pulled only when the operator is an end node;
* ``GraphProcessor.executeGraph`` pulls, for every tile of the end nodes'
  grid, every end node on JAI's scheduler threads (``-q`` at once): a
  stack-wise node by its first band's image, others by every band's image;
  ``dispose`` follows only a successful run (``graphContext.dispose()`` is
  not in a ``finally``);
* ``OperatorExecutor`` (gpt with one operator, SNAP Desktop's dialogs)
  pulls every band image of the operator, tile by tile;
* ``WriteOp`` writes the product header, metadata included, before the
  first tile: metadata changed later fails here (:class:`WriteNode`).

Deadlocks are found whatever the threads' timing: every lock a thread takes
(or would take on a cache miss) while holding others adds an edge to a
lock-order graph, as Linux's lockdep does, and a cycle raises
:class:`PotentialDeadlock` at once. Real locks also time out
(:class:`Deadlock`), as a backstop.

Example
-------
>>> graph = Graph(threads=4)                                   # doctest: +SKIP
>>> src = SourceNode(graph, product)                           # doctest: +SKIP
>>> cl = PythonNode(graph, ProgressiveClassifierOp(), J.Operator.from_descriptor(...))  # doctest: +SKIP
>>> graph.run([WriteNode(graph, cl), PythonNode(graph, LabelMaskExportOp(), ...)])     # doctest: +SKIP
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from . import jpy_api as J


class Deadlock(RuntimeError):
    """A lock was not granted within the graph's timeout."""


class PotentialDeadlock(RuntimeError):
    """Two threads can take the same locks in opposite orders."""


class Lock:
    """A Java monitor: reentrant, named for messages."""

    def __init__(self, name: str):
        self.name = name
        self.monitor = threading.RLock()

    def __repr__(self) -> str:
        return self.name


class Graph:
    """Locks, lock order and scheduling of one gpt run.

    Parameters
    ----------
    threads : int
        JAI's parallelism (gpt's ``-q``).
    timeout : float
        Seconds a thread waits for a lock before :class:`Deadlock`.
    """

    def __init__(self, threads: int = 4, timeout: float = 30.0):
        self.threads = threads
        self.timeout = timeout
        self.python = Lock("PyLib.class")
        self._mutex = threading.Lock()
        self._held = threading.local()
        self.order: dict[Lock, set[Lock]] = collections.defaultdict(set)
        self.nodes: list[Node] = []
        #: Python calls per operator and method, e.g. ``("LabelMaskExport", "computeTile")``.
        self.calls: collections.Counter = collections.Counter()

    # --- locks ---
    def _stack(self) -> list[Lock]:
        if not hasattr(self._held, "stack"):
            self._held.stack = []
        return self._held.stack

    def _edge(self, a: Lock, b: Lock) -> None:
        if b in self.order[a]:
            return
        path = self._path(b, a)
        if path is not None:
            cycle = " -> ".join(map(repr, [a, *path]))
            raise PotentialDeadlock(f"lock order cycle {cycle}: two threads taking these locks can deadlock")
        self.order[a].add(b)

    def _path(self, start: Lock, goal: Lock) -> list[Lock] | None:
        seen, todo = {start}, [[start]]
        while todo:
            path = todo.pop()
            if path[-1] is goal:
                return path
            for nxt in self.order.get(path[-1], ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(path + [nxt])
        return None

    def would_take(self, chain: Sequence[Lock]) -> None:
        """Record the order of `chain`, taken one after the other after the locks held (a cache
        miss would take them), without taking them."""
        held = list(dict.fromkeys(self._stack()))
        with self._mutex:
            for lock in chain:
                if lock in held:
                    continue
                for h in held:
                    self._edge(h, lock)
                held.append(lock)

    def take(self, lock: Lock) -> None:
        self.would_take([lock])
        if not lock.monitor.acquire(timeout=self.timeout):
            raise Deadlock(f"{threading.current_thread().name} waited {self.timeout:g} s for {lock!r}, held by "
                           f"another thread (holding {self._stack()})")
        self._stack().append(lock)

    def release(self, lock: Lock) -> None:
        stack = self._stack()
        stack.reverse()
        stack.remove(lock)
        stack.reverse()
        lock.monitor.release()

    def python_call(self, alias: str, method: str, fn, *args):
        """``synchronized (PyLib.class) { pythonProcessor.method(args) }``."""
        self.take(self.python)
        try:
            self.calls[(alias, method)] += 1
            return fn(*args)
        finally:
            self.release(self.python)

    # --- runs ---
    def run(self, end_nodes: Sequence[Node]) -> None:
        """``GraphProcessor.executeGraph``: every tile of every end node, then ``dispose``.

        Writers write their header first. On failure nothing is disposed (as
        in gpt) and the first error is raised.
        """
        for node in end_nodes:
            node.execute()
        grid = {node.tile_grid() for node in end_nodes}
        if len(grid) != 1:
            raise AssertionError("stand-in: end nodes on different tile grids")
        rects = grid.pop()
        self._pull_all([(node, r) for r in rects for node in end_nodes], lambda node, r: node.pull(r))
        for node in self.nodes:
            node.dispose()

    def execute_operator(self, node: PythonNode) -> None:
        """``OperatorExecutor.execute`` (gpt with one operator, SNAP Desktop): every band
        image of `node`, tile by tile; no ``dispose``."""
        jobs = [(image, r) for r in node.tile_grid() for image in node.images.values()]
        self._pull_all(jobs, lambda image, r: image.get(r))

    def _pull_all(self, jobs, pull) -> None:
        with ThreadPoolExecutor(self.threads, thread_name_prefix="JAI-tile") as pool:
            futures = [pool.submit(pull, *job) for job in jobs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                for f in futures:
                    f.cancel()
                raise failed[0].exception()


class Node:
    """A graph node: its target product."""

    target: J.Product

    def tile_grid(self) -> tuple[tuple[int, int, int, int], ...]:
        pref = self.target.getPreferredTileSize()
        tw, th = (pref.width, pref.height) if pref is not None else (512, 512)
        return tuple(J.tile_grid(self.target._w, self.target._h, tw, th))

    def execute(self) -> None:
        """Before the first tile (``Operator.execute``)."""

    def pull(self, rect) -> None:
        """Pulled as an end node for one tile."""
        raise AssertionError(f"stand-in: {type(self).__name__} cannot be an end node")

    def dispose(self) -> None:
        """After a successful run."""


class SourceNode(Node):
    """A product read from disk (``Read``): bands with their pixels."""

    def __init__(self, graph: Graph, product: J.Product):
        self.graph, self.target = graph, product
        graph.nodes.append(self)


class PythonNode(Node):
    """A Python operator (``PyOperator``) initialized on its context.

    Parameters
    ----------
    graph : Graph
    py_operator : object
        The Python operator instance (our plugin class).
    context : jpy_api.Operator
        Its sources and parameters.
    output_node : bool
        The descriptor's ``autoWriteSuppressed`` (``OperatorContext.isOutputNode``).
    """

    def __init__(self, graph: Graph, py_operator: Any, context: J.Operator, output_node: bool = False):
        self.graph, self.py, self.context = graph, py_operator, context
        self.alias = type(py_operator).__name__.removesuffix("Op")
        self.output_node = output_node
        graph.python_call(self.alias, "initialize", py_operator.initialize, context)
        self.target = context.getTargetProduct()
        self.stack = J.must_compute_tile_stack(py_operator)
        self.computing = [b for b in self.target._bands if b._source is None]
        self.locks: dict[tuple, Lock] = {}
        self.images: dict[J.Band, _Image] = {}
        for band in self.target._bands:
            image = _Image(self, band, computing=band._source is None)
            self.images[band] = image
            if band._source is None:
                band._image = image
        graph.nodes.append(self)

    def lock(self, rect) -> Lock | None:
        """The tile's lock shared by all images of the stack, if stack-wise."""
        if not self.stack:
            return None
        with self.graph._mutex:
            return self.locks.setdefault(rect, Lock(f"{self.alias}.tile{rect[:2]}"))

    def pull(self, rect) -> None:
        images = list(self.images.values())
        for image in images[:1] if self.stack else images:
            image.get(rect)

    def dispose(self) -> None:
        self.graph.python_call(self.alias, "dispose", self.py.dispose, self.context)

    def compute(self, image: _Image, rect) -> None:
        """``OperatorImage(TileStack).computeRect`` for `image`'s band at `rect` (locks held)."""
        x, y, w, h = rect
        jrect = J.Rectangle(x, y, w, h)
        if self.stack:
            tiles = {} if self.output_node else {b: J.Tile(b, jrect, writable=True) for b in self.computing}
            self.graph.python_call(self.alias, "computeTileStack", self.py.computeTileStack, self.context,
                                   J._JavaMap(tiles), jrect)
            for band, tile in tiles.items():
                self.images[band].store(rect, tile, jrect)
            if self.output_node and image.computing:
                image.store(rect, None, jrect)  # zeros: output nodes get no target tiles
        elif image.computing:
            tile = J.Tile(image.band, jrect, writable=True)
            self.graph.python_call(self.alias, "computeTile", self.py.computeTile, self.context, image.band, tile)
            image.store(rect, tile, jrect)


class _Image:
    """One band's operator image: tiles computed on demand, cached (JAI's tile cache)."""

    def __init__(self, node: PythonNode, band: J.Band, computing: bool):
        self.node, self.band, self.computing = node, band, computing
        self.cache: dict[tuple, np.ndarray] = {}

    def get(self, rect) -> np.ndarray | None:
        graph, node = self.node.graph, self.node
        lock = node.lock(rect)
        chain = [lock] if lock is not None else []
        if node.stack or self.computing:
            chain.append(graph.python)
        with graph._mutex:
            hit = self.cache.get(rect)
        if hit is not None:
            graph.would_take(chain)  # a miss at this moment would have taken them in this order
            return hit
        if lock is not None:
            graph.take(lock)
        try:
            with graph._mutex:
                hit = self.cache.get(rect)
            if hit is None:
                node.compute(self, rect)
                with graph._mutex:
                    hit = self.cache.get(rect)
                    if node.output_node and node.stack:
                        self.cache.pop(rect, None)  # output nodes cache nothing
            return hit
        finally:
            if lock is not None:
                graph.release(lock)

    def store(self, rect, tile: J.Tile | None, jrect) -> None:
        if tile is not None and tile._written is None:
            raise AssertionError(f"{self.node.alias} left the tile {jrect.toString()} of band '{self.band._name}' unset")
        data = tile._written if tile is not None else np.zeros((rect[3], rect[2]), J.DTYPES[self.band._type])
        with self.node.graph._mutex:
            self.cache[rect] = data

    def read(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """``image.getData(rect)``: the tiles overlapping the rectangle."""
        out = np.empty((h, w), J.DTYPES[self.band._type])
        for rect in self.node.tile_grid():
            rx, ry, rw, rh = rect
            ix0, iy0, ix1, iy1 = max(rx, x0), max(ry, y0), min(rx + rw, x0 + w), min(ry + rh, y0 + h)
            if ix0 >= ix1 or iy0 >= iy1:
                continue
            data = self.get(rect)
            if data is None:
                raise AssertionError(f"stand-in: no tile {rect} of band '{self.band._name}'")
            out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = data[iy0 - ry:iy1 - ry, ix0 - rx:ix1 - rx]
        return out


class WriteNode(Node):
    """``Write``: the source product's header (metadata included) first, then every band's tiles.

    Parameters
    ----------
    fail_at : int, optional
        Raise on this tile (0-based, in pull order): a writer failing mid-run
        (disk full).
    """

    def __init__(self, graph: Graph, source: Node, fail_at: int | None = None):
        self.graph, self.source, self.target = graph, source, source.target
        self.fail_at = fail_at
        self.rasters: dict[str, np.ndarray] = {}
        self.header: list[str] = []
        self._pulled = 0
        graph.nodes.append(self)

    def execute(self) -> None:
        root = self.target.getMetadataRoot()
        self.header = list(root.getElementNames())
        root._freeze()
        for band in self.target._bands:
            self.rasters[band._name] = np.zeros((band._h, band._w), J.DTYPES[band._type])

    def pull(self, rect) -> None:
        with self.graph._mutex:
            k, self._pulled = self._pulled, self._pulled + 1
        if self.fail_at is not None and k == self.fail_at:
            raise RuntimeError("java.io.IOException: No space left on device")
        x, y, w, h = rect
        for band in self.target._bands:
            self.rasters[band._name][y:y + h, x:x + w] = band._raw(y, x, h, w)
