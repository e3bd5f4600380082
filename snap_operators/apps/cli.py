"""The ``snap-pc`` command line.

``snap-pc run GRAPH.xml -Pinput=S2.tif ...`` runs a SNAP graph on Dask, the way
``gpt GRAPH.xml -Pinput=...`` runs it in SNAP; ``snap-pc OP -Pname=value -t
OUT SOURCE...`` runs one operator, as ``gpt OP`` does, and ``snap-pc OP -h``
describes it. Errors print one line and exit with status 1 (``-e`` adds the
traceback, as gpt's ``-e``). SIGINT (Ctrl-C) and SIGTERM (``kill``,
``timeout``, batch schedulers) both stop a command the same way: its staged
outputs are removed, one line is printed, and the exit status is 128 + the
signal number (130, 143).

What follows gpt (``snap-gpf``'s ``org.esa.snap.core.gpf.main``):

* ``CommandLineArgs``: ``-Pname=value``, ``-Sname=file`` (also ``-S name=file``;
  names and values trimmed), ``-t`` (default ``target.dim``), ``-f`` (default:
  from the extension of ``-t``, else ``BEAM-DIMAP``; an unknown extension is
  an error), ``-p``, ``-e``, ``-h``; source files after the graph or operator
  are ``sourceProduct``, ``sourceProduct.1``, ``sourceProduct1`` (the first),
  ``sourceProduct.2``, ``sourceProduct2`` (the second)...
* ``CommandLineTool.runGraph``: every source gets a Read node ``ReadOp@<name>``
  (one per file) and the template variable ``${<name>}`` holding that node id;
  ``${sourceProducts}`` lists ``sourceProduct1..N`` (``GraphIO``); a graph
  without a Write node whose last node is not a sink (``autoWriteDisabled``)
  gets ``WriteOp@<last node>`` writing it to ``-t`` in format ``-f``.
* ``CommandLineTool.runOperator``: the sources as above, parameters from
  ``-p`` then ``-P`` (an unknown one is an error), the target written to
  ``-t``/``-f`` unless the operator writes its own files (a sink).
* ``CommandLineUsage.getUsageTextForOperator``: ``snap-pc OP -h`` and
  ``snap-pc help OP``.

Kept from snap-pc: existing outputs are replaced only with ``--overwrite``;
``-q N`` is gpt's parallelism (``--workers N``); ``--quiet`` hides the progress
(a bar on a terminal; else, as gpt, ``....10%....20%`` on stdout).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

from .. import __version__
from ..core.allocator import keep_freed_memory
from ..core.errors import SnapPcError, closest, one_line
from ..core.spec import format_value
from ..core.staging import interrupts_raise

log = logging.getLogger("snap_operators")

#: gpt's defaults (``CommandLineArgs.DEFAULT_TARGET_FILEPATH``, ``ProductIO.DEFAULT_FORMAT_NAME``).
DEFAULT_TARGET = "target.dim"
DEFAULT_FORMAT = "BEAM-DIMAP"
#: Writer format by target extension (gpt's ``detectWriterFormat``, over the formats Write has).
EXTENSION_FORMATS = {".dim": "BEAM-DIMAP", ".tif": "GeoTIFF", ".tiff": "GeoTIFF"}
#: Read parameters gpt takes from -P for the sources it reads (``CommandLineTool.additionalReadParameters``).
READ_PARAMETERS = ("pixelRegion", "geometryRegion")

EPILOG = """\
Any other first word is an operator, run on its own as `gpt OP` does:
  snap-pc OP [-Pname=value ...] [-p params.properties|params.xml] [-S<name>=<file> ...]
             [-t target] [-f format] [source-file ...]
  snap-pc OP -h        the operator's sources, parameters and graph XML, as `gpt OP -h`

examples:
  snap-pc synth demo --size 1024 --seed 1
  snap-pc run graphs/progressive_classifier_s2.xml -Pinput=demo/s2.tif -Poutput=classes.tif -Plabels=labels.gpkg
  snap-pc run my_graph.xml -p params.properties --scheduler tcp://scheduler:8786
  snap-pc Resample -PtargetResolution=10 -t s2_10m.tif S2.SAFE
  snap-pc BandMaths -p ndvi.xml -t ndvi.dim s2_10m.tif
  snap-pc ops
  snap-pc Resample -h
"""


def parse_assignments(items: list[str] | None, flag: str = "-P", loose: list[str] | None = None) -> dict[str, str]:
    """``name=value`` items of `flag` (``-P``, ``-S``), as gpt's ``parseNameValuePair``: both sides trimmed.

    `loose` are the command's free arguments (source files): ``-Pinput
    scene.tif`` leaves ``scene.tif`` there, and the error says what was meant.
    """
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            hint = f"; did you mean {flag}{item.strip()}={loose[0]}?" if loose else ""
            raise SnapPcError(f"Missing '=' in '{flag}{item}' (expected {flag}name=value, one word, no spaces){hint}")
        k, v = item.split("=", 1)
        if not k.strip():
            raise SnapPcError(f"Empty identifier in '{flag}{item}' (expected {flag}name=value)")
        out[k.strip()] = v.strip()
    return out


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `snap-pc run GRAPH` and `snap-pc OP` (gpt's, then the engine's)."""
    p.add_argument("-P", dest="variables", action="append", metavar="NAME=VALUE",
                   help="a graph variable ${NAME}, or an operator parameter (repeatable)")
    p.add_argument("-p", dest="properties", metavar="FILE",
                   help="name=value lines (for an operator also XML: <parameters>...</parameters>); -P wins")
    p.add_argument("-S", dest="named_sources", action="append", metavar="NAME=FILE",
                   help="a source product: in a graph ${NAME} becomes the id of a Read node of FILE (repeatable)")
    p.add_argument("-t", "--target", metavar="FILE",
                   help=f"target file where no Write node (graph) or no own output (operator) says (default {DEFAULT_TARGET})")
    p.add_argument("-f", "--format", metavar="FORMAT",
                   help=f"format of -t: BEAM-DIMAP, GeoTIFF, GeoTIFF-BigTIFF, COG (default: from the extension of -t, "
                   f"else {DEFAULT_FORMAT})")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address, e.g. tcp://127.0.0.1:8786")
    p.add_argument("-q", "--workers", type=int, metavar="N",
                   help="threads for the local scheduler, as gpt's -q (default: all cores)")
    p.add_argument("--tile-size", type=int, default=1024, metavar="N", help="chunk edge in pixels (default 1024)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress (a bar on a terminal, else gpt's '....10%%....20%%' lines on stdout)")
    p.add_argument("-e", "--debug", action="store_true", dest="debug_run", help="print the full traceback on errors")


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="snap-pc",
        description="Progressive land-cover classification of Sentinel-1/2 data; runs SNAP graph XML files "
        "and SNAP operators on Dask without SNAP.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"snap-pc {__version__}")
    p.add_argument("-e", "--debug", action="store_true", help="print the full traceback on errors (as gpt -e)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser(
        "run",
        help="run a SNAP graph XML file",
        description="Run a SNAP graph XML file with the standalone Dask engine (like `gpt GRAPH.xml`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(
            f"""\
            Variables: ${{name}} or $name in the graph are replaced by -Pname=value, by a properties
            file given with -p, or by GRAPH.properties beside the graph (defaults), in that priority,
            as gpt's template reader does: $name ends at the first character that is not a letter,
            digit, '_', '$' or '.', and an unset $name stays as written ($sourceProduct.1.B4 in an
            expression reaches the expression parser). An unset ${{name}} stops the run.

            Sources: -Sname=FILE and source files after the graph (sourceProduct, sourceProduct.1 and
            sourceProduct1 for the first, sourceProduct.2 ... for the second) each get a Read node
            ReadOp@name; ${{name}} is its id (<sourceProduct refid="${{name}}"/>), ${{sourceProducts}}
            the list of them all.

            Target: a graph without a Write node whose last node does not write its own files gets
            gpt's Write node WriteOp@LAST writing that node to -t (default {DEFAULT_TARGET}) in
            format -f (default: from the extension of -t, .dim BEAM-DIMAP, .tif GeoTIFF; none:
            {DEFAULT_FORMAT}).

            Scheduling: by default the graph runs on this machine with Dask's threaded scheduler
            (--workers threads). With --scheduler tcp://HOST:8786 it runs on a dask.distributed
            cluster: chunks are computed by the workers (which must see the input files at the same
            paths) and written by this process. The scheduler must answer within
            SNAP_PC_CONNECT_TIMEOUT seconds (default 10); a cluster left without workers for
            SNAP_PC_NO_WORKER_TIMEOUT seconds (default 60) ends the run with one line.

            Outputs: all of a run's outputs appear together when it succeeds, none when it fails or
            is stopped (Ctrl-C, SIGTERM); two runs on the same outputs cannot both succeed.
            """
        ),
    )
    r.add_argument("graph", help="graph XML file")
    r.add_argument("sources", nargs="*", metavar="SOURCE", help="source product files (sourceProduct, sourceProduct.2, ...)")
    _add_run_options(r)

    sub.add_parser("ops", help="list operators", description="List the operators the standalone engine runs.")

    h = sub.add_parser("help", help="describe an operator's options (same as snap-pc OP -h)",
                       description="Describe an operator, like `gpt OP -h` (the same text as `snap-pc OP -h`).")
    h.add_argument("operator", help="operator alias, e.g. BandMaths (any case)")

    s = sub.add_parser(
        "synth",
        help="write a synthetic Sentinel-2/Sentinel-1 scene with known truth",
        description="Write s2.tif (10 reflectance bands), s1.tif (Sigma0_VV_db, Sigma0_VH_db) and truth.tif "
        "(class ids 1..5) on one UTM grid. See docs/synthetic.md.",
    )
    s.add_argument("out_dir", help="output folder (created)")
    s.add_argument("--size", type=int, required=True, help="width and height in pixels (64 and more)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--haze", action="store_true",
                   help="haze patches over about a third of the scene (lower contrast; not flagged as cloud)")
    s.add_argument("--mixed-pixels", action="store_true",
                   help="pixel spectra mix in their neighbours', as a sensor footprint does (class borders, streets)")

    _add_extra_commands(sub)
    return p


def _add_extra_commands(sub) -> None:
    """Commands of the registry (:mod:`.commands`): assessment, quicklooks, training..."""
    from .commands import add_commands

    add_commands(sub)


# --- gpt's command line: sources, target, default Write -------------------------------


def _check_run_options(args) -> None:
    if args.tile_size < 16:
        raise SnapPcError("--tile-size must be at least 16")
    if args.workers is not None and args.workers < 1:
        raise SnapPcError("--workers must be at least 1")


def _extension(path: str) -> str:
    """The extension of `path` with its dot, '' if none (gpt's ``FileUtils.getExtension``)."""
    dot = path.rfind(".")
    return path[dot:] if dot > 0 and dot > max(path.rfind("/"), path.rfind("\\")) else ""


def target_and_format(target: str | None, format_name: str | None) -> tuple[str, str]:
    """gpt's ``-t``/``-f``: the target file and its format name.

    Without ``-f`` the format comes from the target's extension (``.dim``
    BEAM-DIMAP, ``.tif``/``.tiff`` GeoTIFF), or is BEAM-DIMAP when there is
    none; an extension no writer has is gpt's "Output format unknown".
    Format names are matched in any case, as gpt's plug-in registry does.
    """
    from ..ops.write import FORMAT_NAMES

    target = target or DEFAULT_TARGET
    if format_name:
        match = [f for f in FORMAT_NAMES if f.lower() == format_name.strip().lower()]
        if not match:
            raise SnapPcError(f"Output format unknown: '{format_name}' (-f); use one of {', '.join(FORMAT_NAMES)}")
        return target, match[0]
    ext = _extension(target)
    if not ext:
        return target, DEFAULT_FORMAT
    fmt = EXTENSION_FORMATS.get(ext.lower())
    if fmt is None:
        raise SnapPcError(f"Output format unknown for target '{target}' (extension '{ext}'); give -f with one of "
                          f"{', '.join(FORMAT_NAMES)}, or a target ending in {', '.join(EXTENSION_FORMATS)}")
    return target, fmt


def source_map(files: list[str] | None, named: dict[str, str] | None) -> dict[str, str]:
    """gpt's source map (``CommandLineArgs.getSourceFilePathMap``): source name -> file, sorted by name.

    The i-th source file (from 1) is ``sourceProduct.i`` and ``sourceProducti``,
    the first also ``sourceProduct``; ``-Sname=file`` adds (or replaces) ``name``.
    """
    out: dict[str, str] = {}
    for i, path in enumerate(files or [], start=1):
        if i == 1:
            out["sourceProduct"] = path
        out[f"sourceProduct.{i}"] = path
        out[f"sourceProduct{i}"] = path
    out.update(named or {})
    return dict(sorted(out.items()))  # a Java TreeMap


def _canonical(path: str) -> str:
    return os.path.realpath(path)


def source_node_ids(sources: dict[str, str]) -> dict[str, str]:
    """Source name -> id of the Read node of its file: ``ReadOp@`` + the first name (in order) of that
    file, one node per file (gpt's ``getSourceNodeIdMap``)."""
    by_file: dict[str, str] = {}
    return {name: by_file.setdefault(_canonical(path), f"ReadOp@{name}") for name, path in sources.items()}


def _check_sources(sources: dict[str, str]) -> None:
    """Every source file exists (gpt reads each, used or not: ReadOp's message)."""
    seen = set()
    for name, path in sources.items():
        if path in seen:
            continue
        seen.add(path)
        if not path or not os.path.exists(path):
            raise SnapPcError(f"source '{name}': Specified 'file' [{path}] does not exist.")


def _read_parameters(values: dict[str, str]) -> dict[str, str]:
    """``pixelRegion``/``geometryRegion`` for the Read nodes of the sources (gpt: at most one of them)."""
    found = {k: values[k] for k in READ_PARAMETERS if k in values}
    if len(found) > 1:
        raise SnapPcError("Parameters pixelRegion and geometryRegion should not be simultaneously set")
    return found


def add_source_reads(graph, sources: dict[str, str], ids: dict[str, str], read_params: dict[str, str] | None = None) -> None:
    """A Read node for every source file whose node id the graph does not have (gpt's ``runGraph``)."""
    from ..engine.graph import Node

    for name, path in sources.items():
        nid = ids[name]
        if nid in graph.nodes:
            continue
        params = {"file": path}
        if read_params:  # ReadOp considers them only with useAdvancedOptions
            params["useAdvancedOptions"] = "true"
            params.update(read_params)
        graph.nodes[nid] = Node(nid, "Read", [], params)


def add_default_write(graph, last_id: str, target: str, format_name: str) -> str | None:
    """gpt's ``runGraph``: add ``WriteOp@<last>`` writing node `last_id` to `target`, unless the graph has a
    Write node (``findWriterNode``) or the last node's operator writes its own files (its descriptor's
    ``autoWriteDisabled``: a sink here). Returns the new node's id, or None."""
    from ..core.operator import get_operator
    from ..engine.graph import Node

    last = graph.nodes[last_id]
    if get_operator(last.operator, last.id).spec.sink:
        return None
    if any(node.operator == "Write" for node in graph.nodes.values()):
        return None
    nid = f"WriteOp@{last_id}"
    graph.nodes[nid] = Node(nid, "Write", [("sourceProduct", last_id)],
                            {"file": target, "formatName": format_name, "clearCacheAfterRowWrite": "false"})
    return nid


def _source_products_variable(values: dict[str, str]) -> str:
    """gpt's ``${sourceProducts}`` (``GraphIO.addSourceProductsVariable``): the values of
    ``sourceProduct1``, ``sourceProduct2``... in index order, comma-separated."""
    by_index: dict[int, str] = {}
    for key in sorted(values):
        m = re.fullmatch(r"sourceProduct([0-9]+)", key)
        if m:
            by_index.setdefault(int(m.group(1)), values[key])
    return ",".join(by_index[i] for i in sorted(by_index))


def _refuse_node_ids_as_values(graph, sources: dict[str, str], ids: dict[str, str], named: dict[str, str]) -> None:
    """A -S variable used where the graph wants a value (``<file>${input}</file>``) is a mistake gpt
    only reports as a missing file 'ReadOp@input': say what to give instead."""
    owners: dict[str, str] = {}
    for name, nid in ids.items():
        if name in named or nid not in owners:
            owners[nid] = name
    for node in graph.nodes.values():
        for pname, value in node.parameters.items():
            if isinstance(value, str) and value in owners:
                name = owners[value]
                raise SnapPcError(
                    f"node '{node.id}' parameter '{pname}' is the source node id '{value}': -S{name}= (or a source "
                    f"file argument) makes ${{{name}}} the id of a Read node, for <sourceProduct refid=\"${{{name}}}\"/>; "
                    f"to give this parameter a file, use -P{name}={sources[name]}")


def graph_for_run(path: str, variables: dict[str, str] | None = None, properties: str | None = None,
                  files: list[str] | None = None, named: dict[str, str] | None = None,
                  target: str | None = None, format_name: str | None = None):
    """The graph `snap-pc run` executes, built as gpt's ``CommandLineTool.runGraph`` builds it.

    Template variables, lowest priority first: ``GRAPH.properties`` beside the
    graph (snap-pc's defaults), `properties` (``-p``), `variables` (``-P``),
    the source node ids (``-S``, `files`) and ``sourceProducts``. Then a Read
    node for every source file the graph has no node for, and gpt's default
    Write of the graph's last node when the graph has no Write node.
    """
    from ..engine.graph import load_properties, parse_graph

    target_file, fmt = target_and_format(target, format_name)
    sources = source_map(files, named)
    ids = source_node_ids(sources)
    values: dict[str, str] = {}
    sidecar = Path(path).with_suffix(".properties")
    if sidecar.is_file():
        values.update(load_properties(sidecar))
    if properties:
        values.update(load_properties(properties))
    values.update(variables or {})
    read_params = _read_parameters(values)
    values.update(ids)
    values["sourceProducts"] = _source_products_variable(values)
    parsed = parse_graph(path)
    _warn_unused(parsed, variables or {}, values, sources)
    graph = parsed.substitute(values)
    _check_sources(sources)
    last = list(graph.nodes)[-1]
    add_source_reads(graph, sources, ids, read_params)
    _refuse_node_ids_as_values(graph, sources, ids, named or {})
    if add_default_write(graph, last, target_file, fmt) is None and (target or format_name):
        log.warning("-t/-f are not used: the graph writes its own outputs (gpt uses them only for a graph "
                    "without a Write node)")
    return graph


def _warn_unused(graph, variables: dict[str, str], values: dict[str, str], sources: dict[str, str]) -> None:
    """Warn for each ``-P`` name the graph never mentions: a misspelling would otherwise run with the default.

    gpt hands ``pixelRegion``/``geometryRegion`` to the Read nodes of the
    source files, so those two are used when there are sources.
    """
    used = graph.mentioned()
    known = sorted(used | {k for k in values if k not in variables})
    for name in variables:
        if name in used or (sources and name in READ_PARAMETERS):
            continue
        hint = _did_you_mean(name, known) or (f"; it uses {', '.join(sorted(used))}" if used else "")
        log.warning("-P%s is not used: graph '%s' has no variable '%s'%s", name, graph.id, name, hint)


def describe_graph(path: str) -> str:
    """What ``snap-pc run GRAPH.xml -h`` prints: the graph's own comment, its variables with their defaults
    (from ``GRAPH.properties`` beside it) and its nodes, the way ``snap-pc OP -h`` describes an operator."""
    from ..engine.graph import load_properties, parse_graph

    graph = parse_graph(path)
    sidecar = Path(path).with_suffix(".properties")
    defaults = load_properties(sidecar) if sidecar.is_file() else {}
    lines = [f"Graph '{graph.id}' ({path})"]
    comment = re.search(r"<!--(.*?)-->", Path(path).read_text(encoding="utf-8", errors="replace"), re.S)
    if comment:
        first, _, rest = comment.group(1).strip().partition("\n")
        lines += ["", f"  {first}", textwrap.indent(textwrap.dedent(rest).rstrip(), "  ")]
    refs = {ref for node in graph.nodes.values() for _, ref in node.sources}
    sources = {k for k in graph.variables() if f"${{{k}}}" in refs}
    variables = sorted(graph.variables() - sources - {"sourceProducts"}, key=str.lower)
    where = f"defaults from {sidecar.name}" if defaults else "no GRAPH.properties beside the graph: no defaults"
    lines += ["", f"Variables (-Pname=value; {where}):"]
    width = max((len(v) for v in variables), default=0) + 2
    for name in variables:
        value = defaults.get(name)
        shown = "(required)" if value is None else ("'' (empty)" if value == "" else value)
        lines.append(f"  {name.ljust(width)}{shown}")
    if not variables:
        lines.append("  (none)")
    if sources:
        lines += ["", "Sources (a file after the graph, or -Sname=FILE):"]
        lines += [f"  {name}" for name in sorted(sources)]
    lines += ["", "Nodes (id: operator <- sources):"]
    width = max(len(n) for n in graph.nodes) + 2 if graph.nodes else 0
    for node in graph.nodes.values():
        feeds = ", ".join(ref for _, ref in node.sources)
        lines.append(f"  {(node.id + ':').ljust(width)}{node.operator}{f' <- {feeds}' if feeds else ''}")
    required = " ".join(f"-P{v}=..." for v in variables if v not in defaults)
    lines += ["", f"Run: snap-pc run {path} {required}".rstrip() + " [options]   (snap-pc run --help: the options)"]
    return "\n".join(lines)


def _cmd_run(args) -> int:
    _check_run_options(args)
    graph = graph_for_run(args.graph, parse_assignments(args.variables, loose=args.sources), args.properties, args.sources,
                          parse_assignments(args.named_sources, "-S"), args.target, args.format)
    return _execute(graph, args)


def _execute(graph, args) -> int:
    """Run a graph with the engine options of `args`; print what was written."""
    from ..core.context import ExecutionContext
    from ..engine.runner import run_graph

    from ..core.progress import mode_for

    progress = mode_for(args.quiet)
    client = None
    if args.scheduler:
        client = _connect(args.scheduler)
    ctx = ExecutionContext(
        tile_size=args.tile_size,
        overwrite=args.overwrite,
        client=client,
        num_workers=args.workers,
        progress=progress,
    )
    t0 = time.perf_counter()
    try:
        result = run_graph(graph, ctx)
    finally:
        if client is not None:
            client.close()
    dt = time.perf_counter() - t0
    for path in result.outputs:
        print(f"wrote {path}")
    print(f"done in {dt:.1f} s")
    return 0


def _connect(address: str):
    from ..core.cluster import connect

    return connect(address)  # bounded by SNAP_PC_CONNECT_TIMEOUT (default 10 s)


# --- one operator, as `gpt OP` ------------------------------------------------------------


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one-line SnapPcErrors."""

    def error(self, message):
        raise SnapPcError(f"{self.prog}: {message}")


def _operator_sources(files: list[str], named: dict[str, str], node_of_file: dict[str, str]) -> list[tuple[str, str]]:
    """The operator's sources: the files in order as ``sourceProduct.1``, ``sourceProduct.2``... (gpt's
    numbering), then the -S names; -S naming one of the files' names replaces that file."""
    entries: dict[str, str] = {f"sourceProduct.{i}": path for i, path in enumerate(files, start=1)}
    for name, path in named.items():
        m = re.fullmatch(r"sourceProduct\.?([0-9]*)", name)
        if m:
            entries.pop(f"sourceProduct.{int(m.group(1) or 1)}", None)
        entries[name] = path
    return [(name, node_of_file[_canonical(path)]) for name, path in entries.items()]


def graph_for_operator(name: str, parameters: dict | None = None, files: list[str] | None = None,
                       named: dict[str, str] | None = None, target: str | None = None,
                       format_name: str | None = None):
    """A graph running operator `name` as gpt's ``CommandLineTool.runOperator`` runs it.

    `parameters` are raw values (text, or nested elements from an XML ``-p``
    file); an unknown one is gpt's error. Sources are read by Read nodes
    ``ReadOp@<name>`` (one per file); the operator is node `name` (its alias);
    its target is written by ``WriteOp@<alias>`` to `target` (``-t``) in
    `format_name` (``-f``) unless the operator writes its own files (a sink:
    gpt's ``autoWriteDisabled``).
    """
    from ..engine.graph import Graph, Node

    spec = find_operator(name, exact=True, commands=_COMMAND_NAMES).spec
    alias = spec.alias
    raw = dict(parameters or {})
    known = {q.name: q for q in spec.parameters}
    read_params = _read_parameters({k: v for k, v in raw.items() if k not in known})
    for k in read_params:  # gpt hands these to the reader of the sources
        del raw[k]
    for k, v in raw.items():
        if k not in known:
            hint = _did_you_mean(k, list(known)) or f"; snap-pc {alias} -h lists its parameters"
            raise SnapPcError(f"Operator '{alias}': unknown parameter '{k}'{hint}")
        if known[k].type == "element[]" and (v is None or isinstance(v, str)):
            raise SnapPcError(f"Operator '{alias}': parameter '{k}' is a list of <{known[k].item or 'item'}> "
                              f"elements; give it in an XML parameter file (-p params.xml, see snap-pc {alias} -h)")
    files, named = list(files or []), dict(named or {})
    sources = source_map(files, named)
    if not sources and any(not s.optional for s in spec.sources):
        names = ", ".join(f"-S{s.name}=<file>" for s in spec.sources if not s.multiple) or "<source-file> ..."
        raise SnapPcError(f"Operator '{alias}': no source product given; give the source file(s) after the options "
                          f"or {names}")
    target_file, fmt = target_and_format(target, format_name)
    _check_sources(sources)
    ids = source_node_ids(sources)
    graph = Graph(alias, {})
    add_source_reads(graph, sources, ids, read_params)
    node_of_file = {_canonical(path): ids[n] for n, path in sources.items()}
    graph.nodes[alias] = Node(alias, alias, _operator_sources(files, named, node_of_file), raw)
    if add_default_write(graph, alias, target_file, fmt) is None and (target or format_name):
        log.warning("-t/-f are not used: %s writes its own outputs (see its parameters)", alias)
    return graph


def _cmd_operator(args) -> int:
    from ..engine.graph import load_parameters

    name, rest = args.op_argv[0], args.op_argv[1:]
    if "-h" in rest or "--help" in rest:
        _print(describe_operator(name))
        return 0
    alias = find_operator(name, exact=True, commands=_COMMAND_NAMES).spec.alias
    p = _OneLineParser(prog=f"snap-pc {alias}", add_help=False)
    _add_run_options(p)
    p.add_argument("sources", nargs="*")
    ns = p.parse_intermixed_args(rest)
    _check_run_options(ns)
    raw: dict = {}
    if ns.properties:
        raw.update(load_parameters(ns.properties))
    raw.update(parse_assignments(ns.variables, loose=ns.sources))
    graph = graph_for_operator(alias, raw, ns.sources, parse_assignments(ns.named_sources, "-S"), ns.target,
                               ns.format)
    return _execute(graph, ns)


# --- operator help, as `gpt OP -h` ------------------------------------------------------


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = closest(name, candidates)
    return f"; did you mean '{close}'?" if close else ""


def find_operator(name: str, exact: bool = False, commands=()):
    """The operator class called `name`; any case unless `exact`. Else a one-line error with a suggestion."""
    from ..core.operator import SNAP_ONLY_OPERATORS, operators

    ops = operators()
    if name in ops:
        return ops[name]
    by_lower = {a.lower(): a for a in ops}
    if not exact and name.lower() in by_lower:
        return ops[by_lower[name.lower()]]
    snap = {a.lower(): a for a in SNAP_ONLY_OPERATORS}
    if name.lower() in snap:
        raise SnapPcError(f"operator {snap[name.lower()]} is provided by SNAP; run it with gpt")
    what = "command or operator" if commands else "operator"
    if name.lower().endswith(".xml") or "/" in name or "\\" in name:
        raise SnapPcError(f"'{name}' is no {what}; to run a graph file: snap-pc run {name}")
    hint = _did_you_mean(name, list(ops) + list(commands)) or "; snap-pc ops lists the operators"
    raise SnapPcError(f"unknown {what} '{name}'{hint}")


def _doc_elements(elements: list[tuple[str, list[str]]]) -> str:
    """gpt's ``appendDocElementList``, sorted as its ``sortAlphabetically``."""
    elements = sorted(elements, key=lambda e: e[0].lower())
    width = max((len(s) for s, _ in elements), default=0)
    out = []
    for syntax, lines in elements:
        out.append(syntax)
        if not lines:
            out.append("\n")
            continue
        pad = 4 + width - len(syntax)
        for line in lines:
            parts = line.split("\n")
            out.append(" " * pad + parts[0] + "\n")
            out.extend(" " * (4 + width) + part + "\n" for part in parts[1:])
            pad = 4 + width
    return "".join(out)


def _wrapped(text: str, width: int = 76) -> str:
    return "\n".join(ln for para in text.strip().split("\n") for ln in (textwrap.wrap(para, width) or [""]))


def describe_operator(alias: str) -> str:
    """``gpt OP -h`` for operator `alias` (any case): CommandLineUsage.getUsageTextForOperator's layout."""
    spec = find_operator(alias).spec
    single = [s for s in spec.sources if not s.multiple]
    multiple = [s for s in spec.sources if s.multiple]
    text = "Usage:\n" + f"  snap-pc {spec.alias} [options] "
    if multiple:
        text += "<source-file-1> <source-file-2> ..."
    text += "\n"
    if spec.description:
        text += "\nDescription:\n" + "".join(f"  {ln}\n" for ln in _wrapped(spec.description).split("\n"))
    text += "\n"
    sources = [(f"  -S{s.name}=<file>",
                [_wrapped(s.description or f"Sets source '{s.name}' to <filepath>."),
                 "This is an optional source." if s.optional else "This is a mandatory source."]) for s in single]
    if sources:
        text += "\nSource Options:\n" + _doc_elements(sources)
    params = []
    for prm in spec.parameters:
        if prm.type == "element[]":  # no text converter: -P cannot set it (gpt lists it in the XML only)
            continue
        lines = [_wrapped(prm.description or f"Sets parameter '{prm.name}' to <{prm.type_name}>.")]
        if prm.interval:
            lines.append(f"Valid interval is {prm.interval}.")
        if prm.value_set:
            lines.append("Value must be one of " + ", ".join(f"'{v}'" for v in prm.value_set) + ".")
        if prm.default is not None:
            lines.append(f"Default value is '{format_value(prm.default)}'.")
        if prm.unit:
            lines.append(f"Parameter unit is '{prm.unit}'.")
        if prm.required:
            lines.append("This is a mandatory parameter.")
        params.append((f"  -P{prm.name}=<{prm.type_name}>", lines))
    if params:
        text += "\nParameter Options:\n" + _doc_elements(params)
    text += "\nGraph XML Format:\n" + "".join(f"  {ln}\n" for ln in _graph_xml(spec))
    return text


def _graph_xml(spec) -> list[str]:
    """gpt's ``appendXmlUsage``: a one-node graph with every source and parameter (types as values)."""
    src = [f"<{s.name}>${{{s.name}}}</{s.name}>" for s in spec.sources if not s.multiple]
    src += [f"<{s.name}>${{{s.name}}}</{s.name}>" for s in spec.sources if s.multiple][:1]
    prm: list[str] = []
    for q in spec.parameters:
        if q.type == "element[]":
            item = q.item or "item"
            prm += [f"<{q.name}>", f"  <{item}/>", "  <.../>", f"</{q.name}>"]
        else:
            prm.append(f"<{q.name}>{q.type_name}</{q.name}>")

    def block(tag: str, children: list[str]) -> list[str]:
        return [f"<{tag}>", *("  " + c for c in children), f"</{tag}>"] if children else [f"<{tag}/>"]

    node = [f"<operator>{spec.alias}</operator>", *block("sources", src), *block("parameters", prm)]
    return ['<graph id="someGraphId">', "  <version>1.0</version>", '  <node id="someNodeId">',
            *("    " + ln for ln in node), "  </node>", "</graph>"]


def _print(text: str) -> None:
    """Print `text` (a newline added unless it ends with one); a reader that went away
    (``snap-pc ops | head``) is no error."""
    try:
        print(text, end="" if text.endswith("\n") else "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()


def _stdout_gone() -> None:
    """Point stdout at /dev/null after its reader went away, so Python's flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no file (captured): nothing to redirect
        pass


def _cmd_ops(args) -> int:
    from ..core.operator import operators

    ops = operators()
    width = max(len(a) for a in ops)
    lines = []
    for alias, cls in ops.items():
        first = cls.spec.description.strip().splitlines()[0] if cls.spec.description else ""
        lines.append(f"  {alias:<{width}}  {first}")
    _print("\n".join(lines))
    return 0


def _cmd_help(args) -> int:
    _print(describe_operator(args.operator))
    return 0


def _cmd_synth(args) -> int:
    from .synth import write_synthetic_scene

    paths = write_synthetic_scene(args.out_dir, args.size, args.seed, progress=sys.stderr.isatty(), haze=args.haze,
                                  mixed_pixels=args.mixed_pixels)
    for name, path in paths.items():
        print(f"wrote {path}")
    return 0


COMMANDS = {"run": _cmd_run, "ops": _cmd_ops, "help": _cmd_help, "synth": _cmd_synth}
_COMMAND_NAMES: tuple[str, ...] = ()


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def _operator_at(argv: list[str], commands: list[str]) -> int | None:
    """Index of an operator name given as the first word (``snap-pc OP ...``), or None."""
    for i, a in enumerate(argv):
        if a in ("-e", "--debug", "--verbose") or re.fullmatch(r"-v+", a):
            continue
        if a.startswith("-") or a in commands:
            return None  # -h, --version, a command: argparse answers
        return i
    return None


def _graph_help_at(argv: list[str]) -> str | None:
    """The graph of ``snap-pc run GRAPH.xml ... -h`` (the graph's own help), or None (argparse's help of run)."""
    if "run" not in argv or not ({"-h", "--help"} & set(argv)):
        return None
    rest = argv[argv.index("run") + 1:]
    words = [a for a in rest if not a.startswith("-")]
    return words[0] if words and os.path.isfile(words[0]) else None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``snap-pc``; returns the exit status.

    Run as the program (`argv` None) to run a graph or an operator, it first has the C allocator
    keep the memory of freed tiles for the next ones
    (:func:`~snap_operators.core.allocator.keep_freed_memory`: a setting of the whole process,
    measured on graph runs; not when a program calls ``main`` with its own arguments, nor for the
    other commands, training among them)."""
    global _COMMAND_NAMES
    as_program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    _COMMAND_NAMES = tuple(_subcommands(parser))
    at = _operator_at(argv, list(_COMMAND_NAMES))
    graph_help = _graph_help_at(argv)
    if graph_help is not None:
        with interrupts_raise():
            return _dispatch(lambda _: _print(describe_graph(graph_help)), argparse.Namespace(), "-e" in argv)
    if at is None:
        args, extra = parser.parse_known_args(argv)
        if extra:
            if args.command == "run" and not any(a.startswith("-") for a in extra):
                args.sources = list(args.sources or []) + extra  # source files between the options
            else:
                _subparser(parser, args.command).error("unrecognized arguments: " + " ".join(extra))
    else:
        args = parser.parse_args(argv[:at])
        args.command, args.handler, args.op_argv = "operator", _cmd_operator, argv[at:]
        args.debug_run = "-e" in argv[at:] or "--debug" in argv[at:]  # gpt looks for -e anywhere
    debug = args.debug or getattr(args, "debug_run", False)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rasterio").setLevel(max(level, logging.WARNING))
    if args.command is None:
        parser.print_help()
        return 2
    handler = getattr(args, "handler", None) or COMMANDS[args.command]
    if as_program and args.command in ("run", "operator"):
        keep_freed_memory()
    with c_stderr_silenced(enabled=not debug and args.verbose == 0), interrupts_raise():
        return _dispatch(handler, args, debug)


def _dispatch(handler, args, debug: bool) -> int:
    try:
        return int(handler(args) or 0)
    except SnapPcError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"Error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        done = "after every output was written" if getattr(exc, "published", False) else "staged outputs were removed"
        print(f"Error: interrupted ({signal.Signals(signum).name}); {done}", file=sys.stderr)
        return 128 + int(signum)
    except BrokenPipeError:
        # The reader of stdout went away (snap-pc run ... | head): end quietly, with the status of a tool
        # SIGPIPE stopped; a run stopped before its outputs were published has removed them.
        _stdout_gone()
        return 128 + signal.SIGPIPE
    except Exception as exc:  # unexpected: still one line unless -e
        if debug:
            import traceback

            traceback.print_exc()
        print(f"Error: {one_line(f'{type(exc).__name__}: {exc}')} (run with -e for the traceback)", file=sys.stderr)
        return 1


class c_stderr_silenced:
    """Send what C libraries print on fd 2 (libtiff, GDAL) away from the terminal.

    Python's own stderr (progress bars, our one-line errors) is moved to a
    duplicate of the original fd 2, so only C-level chatter is dropped: every
    failure still reaches the user as our one-line error. ``-v``/``-e`` keep
    everything.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        # Only when sys.stderr is the process's own (not captured by a test or
        # embedding application).
        if not self.enabled or sys.stderr is not sys.__stderr__:
            self.enabled = False
            return self
        try:
            sys.stderr.flush()
            self._saved_fd = os.dup(2)
            self._saved_stderr = sys.stderr
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            sys.stderr = os.fdopen(os.dup(self._saved_fd), "w", buffering=1, encoding="utf-8", errors="replace")
        except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded, captured)
            self.enabled = False
            return self
        # Log handlers made before (logging.basicConfig) hold the old stderr, whose fd 2 now
        # goes nowhere: point them at the new one, or every warning would be lost.
        self._moved = [h for h in logging.getLogger().handlers
                       if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is self._saved_stderr]
        for h in self._moved:
            h.setStream(sys.stderr)
        return self

    def __exit__(self, *exc):
        if not self.enabled:
            return False
        try:
            sys.stderr.flush()
            for h in self._moved:
                h.setStream(self._saved_stderr)
            sys.stderr.close()
        finally:
            sys.stderr = self._saved_stderr
            os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
