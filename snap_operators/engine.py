"""The standalone graph engine: SNAP graphs on Dask.

Steps, as gpt does them:

1. parse the XML (:mod:`snap_operators.graph`) and substitute variables;
2. check references and cycles, and that every operator is known, before any
   work is done;
3. instantiate and ``initialize()`` the nodes the sinks need, in topological
   order: this builds lazy target products, reading headers only;
4. let every sink (``Write``...) check its target, open temporary outputs and
   hand back a :class:`SinkPlan` (arrays + block targets);
5. stream all sinks' arrays in **one** pass, so shared upstream work is done
   once, chunk by chunk, with bounded memory; then let every sink *finish*
   its staged files (close, verify: this may fail), and only when all did,
   *publish* them all (renames only, with SIGINT/SIGTERM held back); on any
   error or interrupt, abort every sink (delete its staged files).

Before any work the run claims its outputs: every path a sink writes (side
files included) is checked against every file the graph reads and every
other output, devices and FIFOs are refused, and each output is locked
(:class:`~snap_operators.staging.OutputLocks`) until the run ends, so two
runs cannot both write it. Staged files of dead runs in the output folders
are removed (:func:`~snap_operators.staging.clean_stale`).

Local runs use Dask's threaded scheduler; with a ``distributed.Client`` the
chunks are computed on the cluster in a bounded window and written here
(:mod:`snap_operators.cluster`: timeouts, lost workers).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import dask
import dask.array as da
import numpy as np
from dask.callbacks import Callback

from . import staging
from .errors import GraphError, ProductWriteError, SnapPcError
from .graph import Graph, load_properties, parse_graph
from .operator import ExecutionContext, Operator, get_operator
from .outputs import check_claims
from .product import Product

try:  # dask's pool that hands context variables on to its threads
    from dask.threaded import ContextAwareThreadPoolExecutor as _Pool
except ImportError:  # pragma: no cover - older dask
    _Pool = ThreadPoolExecutor

log = logging.getLogger(__name__)


class BlockTarget(Protocol):
    """Receives computed chunks: ``target[region] = block`` (region = 2 slices)."""

    def __setitem__(self, region: tuple[slice, slice], block: np.ndarray) -> None: ...


def _nothing() -> None:
    return None


@dataclass
class SinkPlan:
    """What a sink wants computed, where each chunk goes, and how it ends.

    A sink ends in two steps so that a run's outputs appear all together or
    not at all: every sink's `finish` runs first, then every sink's
    `publish`.

    Attributes
    ----------
    arrays : list of dask.array.Array
        2-D arrays to compute.
    targets : list of BlockTarget
        One per array; must be safe to call from several threads.
    finish : callable
        Called once after every chunk was stored: complete the staged
        outputs (close, write side files) and verify them. May fail.
    abort : callable
        Called on failure, also after `finish`: remove every staged file.
        Must not raise.
    description : str
    publish : callable
        Called after every sink of the run finished: rename the staged
        files into place (renames only). Sinks that write nothing to
        publish (or predate the split) leave the default.
    """

    arrays: list[da.Array]
    targets: list[BlockTarget]
    finish: Callable[[], None]
    abort: Callable[[], None]
    description: str = ""
    publish: Callable[[], None] = _nothing

    def commit(self) -> None:
        """Finish and publish this plan alone (a sink run outside :func:`run_graph`)."""
        self.finish()
        with staging.deferred_signals():
            self.publish()


@dataclass
class RunResult:
    """What a graph run produced."""

    products: dict[str, Product] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)


def load_graph(path: str | Path, variables: Mapping[str, str] | None = None, properties: str | Path | None = None) -> Graph:
    """Parse a graph file and substitute its variables.

    Variable values come, lowest priority first, from a ``GRAPH.properties``
    file beside the graph (defaults), from `properties` (gpt's ``-p``), and
    from `variables` (gpt's ``-Pname=value``).
    """
    graph = parse_graph(path)
    values: dict[str, str] = {}
    sidecar = Path(path).with_suffix(".properties")
    if sidecar.is_file():
        values.update(load_properties(sidecar))
    if properties is not None:
        values.update(load_properties(properties))
    values.update(variables or {})
    return graph.substitute(values)


def build(graph: Graph, context: ExecutionContext | None = None) -> dict[str, Operator]:
    """Validate `graph` and initialize the operators its sinks need.

    Returns node id -> initialized operator (with ``.target`` set), in
    topological order. No pixel is computed.
    """
    context = context or ExecutionContext()
    order = graph.check()
    classes = {nid: get_operator(graph.nodes[nid].operator, nid) for nid in order}
    # Operators with an open() may join the streaming pass (e.g. a classifier
    # writing its area table), so they count as potential sinks here.
    sinks = [nid for nid in order if classes[nid].spec.sink or hasattr(classes[nid], "open")]
    needed = graph.upstream(sinks) if sinks else set(order)
    ops: dict[str, Operator] = {}
    for nid in order:
        if nid not in needed:
            log.info("node '%s' feeds no Write node; skipped", nid)
            continue
        node = graph.nodes[nid]
        sources = _sources_for(node.sources, ops, classes[nid])
        try:
            op = classes[nid].create(sources, node.parameters, context=context, node_id=nid)
            op.target = op.initialize()
        except SnapPcError as exc:
            msg = str(exc)
            if nid not in msg:
                msg = f"node '{nid}' ({node.operator}): {msg}"
            raise type(exc)(msg) from exc
        except Exception as exc:
            # A scene sample computed on a cluster that lost its workers: the watchdog's one line.
            from .cluster import cancelled_error

            lost = cancelled_error(exc, context.client) if context.client is not None else None
            if lost is None:
                raise
            raise lost from None
        ops[nid] = op
    return ops


def _sources_for(refs: Sequence[tuple[str, str]], ops: Mapping[str, Operator], cls) -> dict[str, Product]:
    sources: dict[str, Product] = {}
    for name, ref in refs:
        sources[name] = ops[ref].target  # type: ignore[assignment]
    return sources


def run_graph(
    graph: Graph,
    context: ExecutionContext | None = None,
) -> RunResult:
    """Build and execute `graph`: compute what its sink nodes need and write it.

    Parameters
    ----------
    graph : Graph
        A graph with variables already substituted (see :func:`load_graph`).
    context : ExecutionContext, optional

    Returns
    -------
    RunResult
        Target products of all nodes and the paths written.
    """
    context = context or ExecutionContext()
    ops = build(graph, context)
    sinks = [op for op in ops.values() if op.is_sink]
    if not sinks:
        raise GraphError("graph has no Write node: nothing to compute")
    claims = [(f"node '{op.node_id}' ({op.spec.alias})", [Path(p) for p in _output_files(op)]) for op in sinks]
    check_claims(claims, _read_files(ops, claims))
    written = [p for _, paths in claims for p in paths]

    def prepare() -> None:
        for op in sinks:
            check = getattr(op, "prepare", None)
            if check is not None:
                check()

    _write_all(written, (op.open() for op in sinks), context, prepare)
    outputs: list[str] = []
    for op in sinks:
        outputs.extend(getattr(op, "outputs", []))
    return RunResult({nid: op.target for nid, op in ops.items()}, outputs)


def _write_all(written: Sequence[Path], plans: Iterable[SinkPlan], context: ExecutionContext,
               prepare: Callable[[], None] = lambda: None) -> None:
    """Write a run's outputs: all published together, or none.

    Under a lock on every path in `written`: stale staged files of dead runs
    are removed, `prepare` checks, each plan is opened as `plans` yields it,
    the plans' arrays are streamed in one pass, every plan finishes (closes and
    verifies its staged files), then every plan publishes (renames only) with
    signals held back. Any error aborts every plan opened so far. A signal
    held back during the renames reaches the caller as a ``KeyboardInterrupt``
    with ``published = True``: every output is complete.
    """
    with staging.OutputLocks(written):
        # Under the locks: no other run writes these paths between the checks and the renames.
        staging.clean_stale({Path(p).parent for p in written})
        prepare()
        opened: list[SinkPlan] = []
        published = False
        try:
            for plan in plans:
                opened.append(plan)
            _stream([a for p in opened for a in p.arrays], [t for p in opened for t in p.targets], context)
            for p in opened:
                p.finish()
            with staging.deferred_signals():
                for p in opened:
                    p.publish()
                published = True
        except BaseException as exc:
            if published and isinstance(exc, KeyboardInterrupt):
                exc.published = True  # held back during the renames: every output is complete
                raise
            with staging.deferred_signals():  # an interrupt now would leave staged files behind
                for p in opened:
                    try:
                        p.abort()
                    except Exception:  # pragma: no cover - abort must not mask the cause
                        log.exception("cleanup failed")
            raise


def _output_files(op: Operator) -> list:
    """Every path sink `op` writes (side files included); [] for sinks that do not say."""
    files = getattr(op, "output_files", None)
    if files is None:
        return []
    try:
        return list(files())
    except SnapPcError as exc:
        msg = str(exc)
        raise type(exc)(msg if op.node_id in msg else f"node '{op.node_id}' ({op.spec.alias}): {msg}") from None


def _read_files(ops: Mapping[str, Operator], claims) -> set[str]:
    """Files the graph reads: the products read, and every existing file a parameter names.

    A parameter naming an existing file is read by its node (rules,
    samples, models...) unless it is one of the node's output parameters
    (``output_parameters``; sinks that do not list them: unless it names one
    of the node's own outputs).
    """
    own = {who: {str(p) for p in paths} for who, paths in claims}
    files: set[str] = set()
    for op in ops.values():
        files.update(op.context.input_files)
        outputs = getattr(op, "output_parameters", None)
        mine = own.get(f"node '{op.node_id}' ({op.spec.alias})", set()) if outputs is None else set()
        for name, value in op.parameters.items():
            if name in (outputs or ()) or not isinstance(value, (str, os.PathLike)) or not str(value) \
                    or "\n" in str(value):
                continue
            path = Path(os.path.expanduser(str(value)))
            try:
                if not path.is_file():
                    continue
            except (OSError, ValueError):  # names too long, NUL bytes: not a file
                continue
            if str(path.absolute()) not in mine and str(path.resolve()) not in mine:
                files.add(str(path.resolve()))
    return files


def _stream(arrays: Sequence[da.Array], targets: Sequence[BlockTarget], context: ExecutionContext) -> None:
    """:func:`store` on a thread pool of this run, which is drained before an error leaves.

    On an error or interrupt, the targets refuse further chunks and the
    pool's running tasks are waited for, so no worker thread still writes
    into (or runs Python code beside) files being removed and interpreter
    shutdown never meets a busy thread.
    """
    stop = threading.Event()
    guarded = [_Guarded(t, stop) for t in targets]
    if context.client is not None:
        store(arrays, guarded, context)
        return
    pool = _Pool(context.num_workers or os.cpu_count() or 1)
    try:
        with dask.config.set(pool=pool):
            store(arrays, guarded, context)
    except BaseException:
        stop.set()
        with staging.deferred_signals():
            pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


class _Guarded:
    """A block target that refuses chunks once its run failed or was interrupted."""

    def __init__(self, target: BlockTarget, stop: threading.Event):
        self._target = target
        self._stop = stop

    def __setitem__(self, region, block) -> None:
        if self._stop.is_set():
            raise ProductWriteError("the run was stopped")
        self._target[region] = block


# --- streaming ---------------------------------------------------------------


class _TqdmCallback(Callback):
    """Progress bar over the tasks of a local Dask computation."""

    def __init__(self, desc: str = "computing"):
        super().__init__()
        self._desc = desc
        self._bar = None
        self._lock = threading.Lock()

    def _start_state(self, dsk, state):
        from tqdm.auto import tqdm

        total = sum(len(state[k]) for k in ("ready", "waiting", "running")) + len(state.get("finished", ()))
        self._bar = tqdm(total=total, desc=self._desc, unit="task", dynamic_ncols=True, leave=False)

    def _posttask(self, key, result, dsk, state, worker_id):
        with self._lock:
            if self._bar is not None:
                self._bar.update(1)

    def _finish(self, dsk, state, errored):
        if self._bar is not None:
            self._bar.close()


def store(arrays: Sequence[da.Array], targets: Sequence[BlockTarget], context: ExecutionContext | None = None) -> None:
    """Compute `arrays` chunk by chunk and hand each chunk to its target.

    Memory stays bounded: a chunk is released once stored.
    """
    context = context or ExecutionContext()
    if not arrays:
        return
    if context.client is not None:
        from .cluster import store as store_on_cluster

        store_on_cluster(arrays, targets, context.client, context.progress)
        return
    callbacks = [_TqdmCallback("writing")] if context.progress else []
    wrapped = [_Target(t) for t in targets]
    with dask.config.set(scheduler="threads"):
        with _callbacks(callbacks):
            da.store(list(arrays), wrapped, lock=False, compute=True, num_workers=context.num_workers)


def _writer_plan(writer) -> SinkPlan:
    targets = writer.open()
    return SinkPlan(writer.arrays, targets, writer.finish, writer.abort, publish=writer.publish)


def stream_writer(writer, context: ExecutionContext | None = None):
    """Stream a writer's ``arrays`` into its ``open()`` targets; finish and publish, or abort on any error.

    `writer` is any object with ``path``, ``arrays``, ``open() -> targets``,
    ``finish()``, ``publish()`` and ``abort()`` (the GeoTIFF and BEAM-DIMAP
    writers). Its outputs are locked for the write. Returns ``writer.path``.
    """
    context = context or ExecutionContext()
    files = list(getattr(writer, "output_files", lambda: [writer.path])())
    check_claims([(f"'{writer.path}'", files)], context.input_files)
    _write_all(files, map(_writer_plan, [writer]), context)
    return writer.path


class _Target:
    """A block target with a cheap, unique Dask token.

    ``da.store`` tokenizes its targets; without this, Dask would pickle and
    hash whatever a target holds (open datasets, large buffers) on every run.
    """

    def __init__(self, target: BlockTarget):
        self._target = target
        self._token = uuid.uuid4().hex

    def __setitem__(self, region, block) -> None:
        self._target[region] = block

    def __dask_tokenize__(self):
        return self._token


class _callbacks:
    def __init__(self, cbs):
        self._cbs = cbs

    def __enter__(self):
        for cb in self._cbs:
            cb.register()

    def __exit__(self, *exc):
        for cb in self._cbs:
            cb.unregister()

