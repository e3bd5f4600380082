"""The ``snap-pc`` command line.

``snap-pc run GRAPH.xml -Pinput=S2.tif ...`` runs a SNAP graph on Dask, the way
``gpt GRAPH.xml -Pinput=...`` runs it in SNAP. Errors print one line and exit
with status 1 (``-e`` adds the traceback, as gpt's ``-e``). SIGINT (Ctrl-C)
and SIGTERM (``kill``, ``timeout``, batch schedulers) both stop a command the
same way: its staged outputs are removed, one line is printed, and the exit
status is 128 + the signal number (130, 143).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import textwrap
import time

from . import __version__
from .errors import SnapPcError, one_line
from .staging import interrupts_raise

log = logging.getLogger("snap_operators")

EPILOG = """\
examples:
  snap-pc synth demo --size 1024 --seed 1
  snap-pc run graphs/progressive_classifier_s2.xml -Pinput=demo/s2.tif -Poutput=classes.tif -Plabels=labels.gpkg
  snap-pc run my_graph.xml -p params.properties --scheduler tcp://scheduler:8786
  snap-pc ops
  snap-pc help BandMaths
"""


def _parse_assignments(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise SnapPcError(f"-P{item}: expected -Pname=value")
        k, v = item.split("=", 1)
        if not k:
            raise SnapPcError(f"-P{item}: empty variable name")
        out[k] = v
    return out


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="snap-pc",
        description="Progressive land-cover classification of Sentinel-1/2 data; runs SNAP graph XML files on Dask without SNAP.",
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
            """\
            Variables: ${name} or $name in the graph are replaced by -Pname=value, by a properties
            file given with -p, or by GRAPH.properties beside the graph (defaults), in that priority.

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
    r.add_argument("-P", dest="variables", action="append", metavar="NAME=VALUE", help="set a graph variable (repeatable)")
    r.add_argument("-p", dest="properties", metavar="FILE", help="properties file with name=value lines")
    r.add_argument("--overwrite", action="store_true", help="replace existing output files")
    r.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address, e.g. tcp://127.0.0.1:8786")
    r.add_argument("--workers", type=int, metavar="N", help="threads for the local scheduler (default: all cores)")
    r.add_argument("--tile-size", type=int, default=1024, metavar="N", help="chunk edge in pixels (default 1024)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.add_argument("-e", "--debug", action="store_true", dest="debug_run", help="print the full traceback on errors")

    sub.add_parser("ops", help="list operators", description="List the operators the standalone engine runs.")

    h = sub.add_parser("help", help="describe an operator's parameters", description="Describe an operator, like `gpt OP -h`.")
    h.add_argument("operator", help="operator alias, e.g. BandMaths")

    s = sub.add_parser(
        "synth",
        help="write a synthetic Sentinel-2/Sentinel-1 scene with known truth",
        description="Write s2.tif (10 reflectance bands), s1.tif (Sigma0_VV_db, Sigma0_VH_db) and truth.tif "
        "(class ids 1..5) on one UTM grid. See docs/synthetic.md.",
    )
    s.add_argument("out_dir", help="output folder (created)")
    s.add_argument("--size", type=int, required=True, help="width and height in pixels (64 and more)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    _add_extra_commands(sub)
    return p


def _add_extra_commands(sub) -> None:
    """Commands contributed by later modules (assessment, training...)."""
    for modname in ("snap_operators.cli_extra",):
        try:
            mod = __import__(modname, fromlist=["add_commands"])
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
            continue
        mod.add_commands(sub)


def _cmd_run(args) -> int:
    from .engine import load_graph, run_graph
    from .operator import ExecutionContext

    if args.tile_size < 16:
        raise SnapPcError("--tile-size must be at least 16")
    if args.workers is not None and args.workers < 1:
        raise SnapPcError("--workers must be at least 1")
    variables = _parse_assignments(args.variables)
    graph = load_graph(args.graph, variables, args.properties)
    progress = not args.quiet and sys.stderr.isatty()
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
    from .cluster import connect

    return connect(address)  # bounded by SNAP_PC_CONNECT_TIMEOUT (default 10 s)


def _cmd_ops(args) -> int:
    from .operator import operators

    ops = operators()
    width = max(len(a) for a in ops)
    for alias, cls in ops.items():
        first = cls.spec.description.strip().splitlines()[0] if cls.spec.description else ""
        print(f"  {alias:<{width}}  {first}")
    return 0


def describe_operator(alias: str) -> str:
    """``gpt OP -h``-like text for operator `alias`."""
    from .operator import get_operator

    cls = get_operator(alias)
    spec = cls.spec
    lines = ["Usage:", f"  in a graph: <operator>{spec.alias}</operator>", "", "Description:"]
    lines += ["  " + ln for ln in textwrap.wrap(spec.description, 90)] or ["  -"]
    lines += ["", "Sources:"]
    if not spec.sources:
        lines.append("  (none)")
    for s in spec.sources:
        extra = " (any number: sourceProduct, sourceProduct.1, ...)" if s.multiple else ""
        opt = " (optional)" if s.optional else ""
        lines.append(f"  {s.name}{extra}{opt}  {s.description}".rstrip())
    lines += ["", "Parameters:"]
    if not spec.parameters:
        lines.append("  (none)")
    for prm in spec.parameters:
        head = f"  {prm.name} <{prm.type}>"
        if prm.required:
            head += "  (required)"
        lines.append(head)
        if prm.description:
            lines += ["      " + ln for ln in textwrap.wrap(prm.description, 86)]
        if prm.default is not None:
            lines.append(f"      Default value is '{_fmt_default(prm.default)}'.")
        if prm.unit:
            lines.append(f"      Unit: {prm.unit}.")
        if prm.interval:
            lines.append(f"      Valid interval is {prm.interval}.")
        if prm.value_set:
            lines.append(f"      Value must be one of {', '.join(repr(v) for v in prm.value_set)}.")
    lines += ["", "Graph XML format:", "  <node id=\"someNodeId\">", f"    <operator>{spec.alias}</operator>", "    <sources>"]
    for s in spec.sources:
        lines.append(f"      <{s.name}>${{{s.name}}}</{s.name}>")
    lines += ["    </sources>", "    <parameters>"]
    for prm in spec.parameters:
        if prm.type == "element[]":
            lines.append(f"      <{prm.name}>")
            lines.append(f"        <{prm.item or 'item'}>...</{prm.item or 'item'}>")
            lines.append(f"      </{prm.name}>")
        else:
            val = _fmt_default(prm.default) if prm.default is not None else ""
            lines.append(f"      <{prm.name}>{val}</{prm.name}>")
    lines += ["    </parameters>", "  </node>"]
    return "\n".join(lines)


def _fmt_default(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def _cmd_help(args) -> int:
    print(describe_operator(args.operator))
    return 0


def _cmd_synth(args) -> int:
    from .synth import write_synthetic_scene

    paths = write_synthetic_scene(args.out_dir, args.size, args.seed, progress=sys.stderr.isatty())
    for name, path in paths.items():
        print(f"wrote {path}")
    return 0


COMMANDS = {"run": _cmd_run, "ops": _cmd_ops, "help": _cmd_help, "synth": _cmd_synth}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``snap-pc``; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or getattr(args, "debug_run", False)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rasterio").setLevel(max(level, logging.WARNING))
    if args.command is None:
        parser.print_help()
        return 2
    handler = getattr(args, "handler", None) or COMMANDS[args.command]
    with _c_stderr_silenced(enabled=not debug and args.verbose == 0), interrupts_raise():
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
    except Exception as exc:  # unexpected: still one line unless -e
        if debug:
            import traceback

            traceback.print_exc()
        print(f"Error: {one_line(f'{type(exc).__name__}: {exc}')} (run with -e for the traceback)", file=sys.stderr)
        return 1


class _c_stderr_silenced:
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
