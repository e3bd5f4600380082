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
   once, chunk by chunk, with bounded memory; then commit (rename temporary
   outputs) or, on any error, abort (delete them).

Local runs use Dask's threaded scheduler; with a ``distributed.Client`` the
chunks are computed on the cluster in a bounded window and written here.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import dask
import dask.array as da
import numpy as np
from dask.callbacks import Callback

from .errors import GraphError, SnapPcError
from .graph import Graph, load_properties, parse_graph
from .operator import ExecutionContext, Operator, get_operator
from .product import Product

log = logging.getLogger(__name__)


class BlockTarget(Protocol):
    """Receives computed chunks: ``target[region] = block`` (region = 2 slices)."""

    def __setitem__(self, region: tuple[slice, slice], block: np.ndarray) -> None: ...


@dataclass
class SinkPlan:
    """What a sink wants computed and where each chunk goes.

    Attributes
    ----------
    arrays : list of dask.array.Array
        2-D arrays to compute.
    targets : list of BlockTarget
        One per array; must be safe to call from several threads.
    commit : callable
        Called once after every chunk was stored: finish and rename outputs.
    abort : callable
        Called on failure: remove temporary outputs. Must not raise.
    """

    arrays: list[da.Array]
    targets: list[BlockTarget]
    commit: Callable[[], None]
    abort: Callable[[], None]
    description: str = ""


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
    for op in sinks:
        prepare = getattr(op, "prepare", None)
        if prepare is not None:
            prepare()
    plans: list[SinkPlan] = []
    try:
        for op in sinks:
            plans.append(op.open())
        arrays = [a for p in plans for a in p.arrays]
        targets = [t for p in plans for t in p.targets]
        store(arrays, targets, context)
        outputs: list[str] = []
        for p in plans:
            p.commit()
        for op in sinks:
            outputs.extend(getattr(op, "outputs", []))
    except BaseException:
        for p in plans:
            try:
                p.abort()
            except Exception:  # pragma: no cover - abort must not mask the cause
                log.exception("cleanup failed")
        raise
    return RunResult({nid: op.target for nid, op in ops.items()}, outputs)


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
        _store_distributed(arrays, targets, context)
        return
    callbacks = [_TqdmCallback("writing")] if context.progress else []
    wrapped = [_Target(t) for t in targets]
    with dask.config.set(scheduler="threads"):
        with _callbacks(callbacks):
            da.store(list(arrays), wrapped, lock=False, compute=True, num_workers=context.num_workers)


def stream_writer(writer, context: ExecutionContext | None = None):
    """Stream a writer's ``arrays`` into its ``open()`` targets; commit, or abort on any error.

    `writer` is any object with ``arrays``, ``open() -> targets``, ``commit()``
    and ``abort()`` (the GeoTIFF and BEAM-DIMAP writers). Returns ``writer.path``.
    """
    targets = writer.open()
    try:
        store(writer.arrays, targets, context)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
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


def _block_slices(chunks: tuple[tuple[int, ...], ...]) -> list[tuple[tuple[int, int], tuple[slice, slice]]]:
    out = []
    y = 0
    for i, h in enumerate(chunks[0]):
        x = 0
        for j, w in enumerate(chunks[1]):
            out.append(((i, j), (slice(y, y + h), slice(x, x + w))))
            x += w
        y += h
    return out


def _store_distributed(arrays: Sequence[da.Array], targets: Sequence[BlockTarget], context: ExecutionContext) -> None:
    """Compute chunks on the cluster in a bounded window; write them here.

    Arrays with identical chunking are computed together per block index, so
    work they share upstream runs once per block.
    """
    from distributed import as_completed

    client = context.client
    groups: dict[tuple, list[int]] = {}
    for k, a in enumerate(arrays):
        groups.setdefault((a.shape, a.chunks), []).append(k)
    jobs = []
    for (shape, chunks), members in groups.items():
        for idx, region in _block_slices(chunks):
            jobs.append((members, idx, region))
    nworkers = max(1, len(client.scheduler_info().get("workers", {})))
    window = max(2, 2 * nworkers)
    bar = None
    if context.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(m) for m, _, _ in jobs), desc="writing", unit="block", dynamic_ncols=True, leave=False)
    pending = iter(jobs)
    ac = as_completed()
    meta = {}

    def submit_next() -> bool:
        job = next(pending, None)
        if job is None:
            return False
        members, idx, region = job
        fut = client.compute([arrays[k].blocks[idx] for k in members], sync=False)
        # client.compute on a list returns a list of futures
        for k, f in zip(members, fut):
            meta.setdefault(f.key, []).append((k, region))
            ac.add(f)
        return True

    try:
        for _ in range(window):
            if not submit_next():
                break
        for fut in ac:
            entries = meta.get(fut.key)
            if not entries:
                continue  # same block already written through a twin future
            block = np.asarray(fut.result())
            for k, region in meta.pop(fut.key):
                targets[k][region] = block
                if bar is not None:
                    bar.update(1)
            del fut
            if len(meta) < window:
                submit_next()
    finally:
        if bar is not None:
            bar.close()
