"""Checks every sink makes before it writes anything, and whole-file writes.

One rule set for all outputs (rasters, DIMAP folders, vector files, tables):
never write over an input of the graph, never replace an existing file unless
asked to, never write a device, FIFO or socket, never write one path twice in
a run, and fail before any work when the target folder is missing or not
writable.

Whole files (reports, tables, figures, styles, descriptors, module files)
are written one way: under a hidden staged name beside the target
(:func:`snap_operators.core.staging.staged_path`, the only temporary-name
scheme of the package) and renamed into place, so a reader never sees half a
file. Several files of one command: :func:`staged_outputs` with
:func:`stage_bytes`, :func:`stage_text`, :func:`stage_figure` (all renamed at
the end, or none); one file: :func:`write_bytes`, :func:`write_text`,
:func:`save_figure`.

Example
-------
>>> from snap_operators.core.context import ExecutionContext
>>> output_problem(["/nonexistent-folder/out.tif"], ExecutionContext())
"output folder '/nonexistent-folder' does not exist"
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .errors import ProductWriteError, SnapPcError, in_node
from .staging import OutputLocks, StagedFiles, deferred_signals

#: File types a run never writes over (writing "into" them is no output at all).
_SPECIAL = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
            (stat.S_ISSOCK, "a socket"))


def output_problem(paths: Iterable[str | os.PathLike], context, *, folder_suffix: str | None = None) -> str | None:
    """Why the sink may not write `paths`, or None when it may.

    Parameters
    ----------
    paths : iterable of path
        Every file the sink will create; the first is the main output.
    context : ExecutionContext
        Supplies ``input_files`` and ``overwrite``.
    folder_suffix : str, optional
        Outputs with this suffix are folders (BEAM-DIMAP's ``.data``): they
        may exist as folders, and an input inside one counts as that output.
    """
    paths = [Path(p) for p in paths]
    target = paths[0]
    resolved = [p.resolve() for p in paths]
    for raw in context.input_files:
        inp = Path(raw).resolve()
        for p in resolved:
            inside = folder_suffix is not None and p.suffix == folder_suffix and inp.is_relative_to(p)
            if inp == p or inside:
                detail = "" if inp == target.resolve() else f" ({inp})"
                return f"refusing to write '{target}': it is an input of this graph{detail}"
    for p in paths:
        special = special_file(p)
        if special:
            return f"refusing to write '{p}': it is {special}, not a regular file"
    if not context.overwrite:
        existing = [p for p in paths if p.exists() or p.is_symlink()]
        if existing:
            return f"'{existing[0]}' already exists; use --overwrite to replace it"
    folder = target.parent
    if not folder.is_dir():
        return f"output folder '{folder}' does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"output folder '{folder}' is not writable"
    for p in paths:
        if p.is_dir() and (folder_suffix is None or p.suffix != folder_suffix):
            return f"'{p}' is a folder, not a file"
    return None


def sink_files(op) -> list[Path]:
    """Every path sink `op` (an Operator) writes, side files included, as its ``output_files()`` says.

    The graph engine claims and locks these before a run; the SNAP adapter
    cleans dead runs' staged files beside them.

    Raises
    ------
    SnapPcError
        ``output_files()`` refused a parameter; told in `op`'s node (:func:`~.errors.in_node`).
    """
    try:
        return [Path(p) for p in op.output_files()]
    except SnapPcError as exc:
        raise in_node(exc, op.node_id, op.spec.alias) from None


def special_file(path: str | os.PathLike) -> str | None:
    """What `path` is when it is a device, FIFO or socket ("a FIFO"...); None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((what for test, what in _SPECIAL if test(mode)), None)


def _identity(path: Path) -> tuple:
    """A key equal for two names of one file: (device, inode) when it exists, else the resolved path."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return (str(path.resolve()),)


def claims_problem(claims: Sequence[tuple[str, Sequence[str | os.PathLike]]],
                   inputs: Iterable[str | os.PathLike] = ()) -> str | None:
    """Why the outputs a run claims may not be written together, or None when they may.

    Parameters
    ----------
    claims : sequence of (str, sequence of path)
        Who writes (e.g. ``"Write (node 'save')"``, see
        :func:`~snap_operators.core.errors.node_label`) and every path it
        writes, side files included (``.aux.xml``, ``.qml``, ``_areas.csv``...).
        A path ending in ``.data`` is a BEAM-DIMAP folder.
    inputs : iterable of path
        Every file the run reads (products, rules, samples, models...).

    Notes
    -----
    Paths are compared by file identity where they exist (so hard links and
    ``..`` detours count) and by resolved name where they do not.
    """
    read = {}
    for raw in inputs:
        p = Path(raw)
        read[_identity(p)] = p
    resolved_inputs = [p.resolve() for p in read.values()]
    seen: dict[tuple, tuple[str, Path]] = {}
    for who, paths in claims:
        for raw in paths:
            p = Path(raw)
            special = special_file(p)
            if special:
                return f"{who}: refusing to write '{p}': it is {special}, not a regular file"
            key = _identity(p)
            if key in read:
                return f"{who}: refusing to write '{p}': it is an input of this run"
            if p.suffix == ".data":
                inside = next((i for i in resolved_inputs if i.is_relative_to(p.resolve())), None)
                if inside is not None:
                    return f"{who}: refusing to write '{p}': it holds an input of this run ({inside})"
            if key in seen:
                other, first = seen[key]
                by = "twice" if other == who else f"by {other} too"
                return f"{who}: '{p}' would be written {by}; give each output its own path"
            seen[key] = (who, p)
    return None


def check_claims(claims: Sequence[tuple[str, Sequence[str | os.PathLike]]],
                 inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Raise :class:`ProductWriteError` with :func:`claims_problem`'s reason, if any."""
    problem = claims_problem(claims, inputs)
    if problem:
        raise ProductWriteError(problem)


def stage_bytes(staged: StagedFiles, path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a staged file of `path` in `staged`; checks the size written.

    The staged file gets the permissions of a plain ``open`` (0666 less the umask).

    Raises
    ------
    ProductWriteError
        The write failed (disk full...) or came out short; nothing is left.
    """
    tmp = staged.add(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # a full disk may only tell at this point (NFS, delayed allocation)
        if tmp.stat().st_size != len(data):
            raise OSError(f"{tmp.stat().st_size} of {len(data)} bytes written")
    except OSError as exc:
        staged.drop(tmp)
        raise ProductWriteError(f"cannot write '{path}': {exc.strerror or exc}") from None
    return tmp


def stage_text(staged: StagedFiles, path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8, newlines as given) to a staged file of `path` in `staged` (:func:`stage_bytes`)."""
    return stage_bytes(staged, path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_outputs(paths: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike] = (),
                   who: str = "this command") -> Iterator[StagedFiles]:
    """Outputs written together: staged in the block, all renamed into place at its end, or none.

    The paths are checked first (:func:`check_claims`: no input, no device,
    none twice) and locked until the renames are done; the renames run with
    SIGINT/SIGTERM held back. On any error every staged file is removed.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with staged_outputs([folder / "a.txt", folder / "b.txt"]) as staged:
    ...     _ = stage_text(staged, folder / "a.txt", "1")
    ...     _ = stage_text(staged, folder / "b.txt", "2")
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt', 'b.txt']
    """
    paths = [Path(p) for p in paths]
    check_claims([(who, paths)], inputs)
    staged = StagedFiles()
    try:
        with OutputLocks(paths):
            yield staged
            with deferred_signals():
                staged.publish()
    finally:
        staged.abort()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a staged file beside `path`, then rename it to `path` (locked meanwhile).

    Raises
    ------
    ProductWriteError
        `path` is a device or FIFO, is being written by another run, or the
        write failed; nothing is left but an older `path`, untouched.
    """
    with staged_outputs([path], who=f"'{path}'") as staged:
        stage_bytes(staged, path, data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`write_bytes` of `text` in UTF-8."""
    return write_bytes(path, text.encode("utf-8"))


def stage_figure(staged: StagedFiles, fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure to a staged file of `path` in `staged`, then close the figure.

    Raises
    ------
    ProductWriteError
        Saving failed or produced an empty file; nothing is left.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = staged.add(path)  # the staged name keeps the suffix: it tells matplotlib the format
    try:
        fig.savefig(tmp)
        if tmp.stat().st_size == 0:
            raise OSError("empty file written")
    except (OSError, ValueError) as exc:
        staged.drop(tmp)
        raise ProductWriteError(f"cannot write '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        plt.close(fig)
    return tmp


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure through a staged name beside `path` (locked meanwhile), then close it."""
    try:
        with staged_outputs([path], who=f"'{path}'") as staged:
            stage_figure(staged, fig, path)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)  # also when the path was refused before the figure was saved
    return Path(path)
