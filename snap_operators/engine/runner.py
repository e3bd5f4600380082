"""The standalone graph engine: SNAP graphs on Dask.

Steps, as gpt does them:

1. parse the XML (:mod:`snap_operators.engine.graph`) and substitute variables;
2. check references and cycles, and that every operator is known, before any
   work is done;
3. instantiate and ``initialize()`` the nodes the sinks need, in topological
   order: this builds lazy target products, reading headers only;
4. let every sink (``Write``...) check its target, open temporary outputs and
   hand back a :class:`~snap_operators.core.streaming.SinkPlan` (arrays + block targets);
5. stream all sinks' arrays in **one** pass, so shared upstream work is done
   once, chunk by chunk, with bounded memory; then let every sink *finish*
   its staged files (close, verify: this may fail), and only when all did,
   *publish* them all (renames only, with SIGINT/SIGTERM held back); on any
   error or interrupt, abort every sink (delete its staged files).

Before any work the run claims its outputs: every path a sink writes (side
files included) is checked against every file the graph reads and every
other output, devices and FIFOs are refused, and each output is locked
(:class:`~snap_operators.core.staging.OutputLocks`) until the run ends, so two
runs cannot both write it. Staged files of dead runs in the output folders
are removed (:func:`~snap_operators.core.staging.clean_stale`).

Local runs use Dask's threaded scheduler; with a ``distributed.Client`` the
chunks are computed on the cluster in a bounded window and written here
(:mod:`snap_operators.core.cluster`: timeouts, lost workers).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ..core.context import ExecutionContext
from ..core.errors import GraphError, SnapPcError, in_node, node_label
from ..core.operator import Operator, get_operator
from ..core.outputs import check_claims, sink_files
from ..core.product import Product
from ..core.streaming import write_all
from .graph import Graph, load_properties, parse_graph

log = logging.getLogger(__name__)


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
    # Nodes that may join the streaming pass (e.g. a classifier writing its area table) count as
    # sinks here: whether they do is known only once they are initialized (Operator.is_sink).
    sinks = [nid for nid in order if classes[nid].may_sink()]
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
            raise in_node(exc, nid, node.operator) from exc
        except Exception as exc:
            # A scene sample computed on a cluster that lost its workers: the watchdog's one line.
            from ..core.cluster import cancelled_error

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
    claims = [(node_label(op.spec.alias, op.node_id), sink_files(op)) for op in sinks]
    check_claims(claims, _read_files(ops, claims))
    written = [p for _, paths in claims for p in paths]

    def prepare() -> None:
        for op in sinks:
            op.prepare()

    write_all(written, (op.open() for op in sinks), context, prepare)
    outputs: list[str] = []
    for op in sinks:
        outputs.extend(op.outputs)
    return RunResult({nid: op.target for nid, op in ops.items()}, outputs)


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
        mine = own.get(node_label(op.spec.alias, op.node_id), set()) if outputs is None else set()
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
