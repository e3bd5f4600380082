"""Running graph files from Python, as ``snap-pc run`` runs them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core.product import DEFAULT_TILE_SIZE, Product
from ._options import as_text, python_hints


@dataclass(frozen=True)
class GraphRun:
    """What a graph run wrote.

    Attributes
    ----------
    outputs : list of pathlib.Path
        Every file written (class maps, label masks and their side files,
        area tables), in the order of the graph's sink nodes.
    products : dict of str to Product
        Node id -> the node's target product (lazy: computing one again
        recomputes it; :func:`~snap_operators.api.to_xarray` converts it).
    """

    outputs: list[Path] = field(default_factory=list)
    products: dict[str, Product] = field(default_factory=dict)


def run_graph(
    graph: str | os.PathLike,
    *sources: str | os.PathLike,
    variables: Mapping[str, Any] | None = None,
    properties: str | os.PathLike | None = None,
    named_sources: Mapping[str, str | os.PathLike] | None = None,
    target: str | os.PathLike | None = None,
    format_name: str | None = None,
    overwrite: bool = False,
    tile_size: int = DEFAULT_TILE_SIZE,
    workers: int | None = None,
    client: Any = None,
    progress: bool | str = False,
    **graph_variables: Any,
) -> GraphRun:
    """Run a SNAP graph file as ``snap-pc run GRAPH -Pname=value ...`` does, and return what it wrote.

    The graph is built by the command line's own code
    (:func:`snap_operators.apps.cli.graph_for_run`): variables from the
    ``GRAPH.properties`` file beside the graph (defaults), then
    `properties` (``-p``), then the keyword arguments (``-P``); a Read node
    per source file; gpt's default Write of the last node to `target` when
    the graph has no Write node. All outputs appear together when the run
    succeeds, none when it fails.

    Parameters
    ----------
    graph : str or Path
        A graph XML file, or the name of a graph shipped with the package
        (``"progressive_classifier_s2"``, with or without ``.xml``).
    *sources : str or Path
        Source product files (``sourceProduct``, ``sourceProduct.2``...), as
        the files after the graph on the command line.
    variables : dict, optional
        More graph variables, for names that are no Python identifier or
        that clash with an option below (the keyword arguments win).
    properties : str or Path, optional
        A ``name=value`` file (``-p``).
    named_sources : dict, optional
        Source name -> file (``-Sname=file``).
    target, format_name : str, optional
        ``-t`` and ``-f``: only for a graph without a Write node.
    overwrite : bool
        Replace existing outputs. False by default, as ``snap-pc run``
        without ``--overwrite``: an existing output stops the run before any
        work, with a message naming it.
    tile_size : int
        Chunk edge in pixels (``--tile-size``), at least 16.
    workers : int, optional
        Threads of the local scheduler (``--workers``; default: all cores).
    client : distributed.Client, optional
        Run on this ``dask.distributed`` cluster (``--scheduler``); the
        caller keeps and closes it.
    progress : bool or {"bar", "lines"}
        A progress bar on stderr (True or ``"bar"``), gpt's ``....10%``
        lines on stdout (``"lines"``), or nothing (False, the default).
    **graph_variables
        Graph variables (``-Pname=value``): ``input="s2.tif"``,
        ``minArea=500``, ``labels=None`` (empty: ``-Plabels=``). Lists become
        comma-separated text, booleans ``true``/``false``.

    Returns
    -------
    GraphRun
        ``.outputs`` (paths written), ``.products`` (each node's target).
        Nodes print what they print under ``snap-pc run`` (the
        classifier's area table when ``areaTable`` is set); this function
        prints nothing of its own.

    Raises
    ------
    SnapPcError
        Whatever ``snap-pc run`` reports as its one-line error (missing
        variable or input, existing output without `overwrite`, ...).
    ValueError
        `tile_size` below 16 or `workers` below 1.

    Examples
    --------
    >>> from snap_operators.api import run_graph
    >>> run = run_graph("progressive_classifier_s2", input="s2.tif", output="classes.tif",
    ...                 labels="labels.gpkg")                             # doctest: +SKIP
    >>> [p.name for p in run.outputs]                                     # doctest: +SKIP
    ['classes.tif', 'labels.gpkg', 'labels.qml', 'labels_areas.csv']
    """
    from ..apps.cli import graph_for_run
    from ..core.context import ExecutionContext
    from ..engine.runner import run_graph as run_engine

    if int(tile_size) < 16:
        raise ValueError(f"tile_size must be at least 16, not {tile_size}")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    values = {str(k): as_text(v) for k, v in {**(variables or {}), **graph_variables}.items()}
    named = {str(k): os.fspath(v) for k, v in (named_sources or {}).items()}
    path = _graph_path(graph)
    context = ExecutionContext(tile_size=int(tile_size), overwrite=bool(overwrite), client=client,
                               num_workers=workers, progress="bar" if progress is True else progress)
    with python_hints():
        built = graph_for_run(str(path), values, os.fspath(properties) if properties is not None else None,
                              [os.fspath(s) for s in sources], named,
                              os.fspath(target) if target is not None else None, format_name)
        result = run_engine(built, context)
    return GraphRun([Path(p) for p in result.outputs], dict(result.products))


def _graph_path(graph: str | os.PathLike) -> Path:
    """`graph` itself when it is a file, else the shipped graph of that name."""
    path = Path(os.path.expanduser(os.fspath(graph)))
    if path.is_file() or path.parent != Path("."):
        return path  # a path with a folder that is missing: the engine's message names it
    from ..snap.install import default_graphs_dir

    folder = default_graphs_dir()
    name = path.name if path.suffix == ".xml" else path.name + ".xml"
    if folder is not None and (folder / name).is_file():
        return folder / name
    return path
