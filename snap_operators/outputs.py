"""Checks every sink makes before it writes anything, and whole-file writes.

One rule set for all outputs (rasters, DIMAP folders, vector files, tables):
never write over an input of the graph, never replace an existing file unless
asked to, and fail before any work when the target folder is missing or not
writable. Reports (text, figures) are written under a hidden temporary name
beside the target and renamed, so a reader never sees half a file.

Example
-------
>>> from snap_operators.operator import ExecutionContext
>>> output_problem(["/nonexistent-folder/out.tif"], ExecutionContext())
"output folder '/nonexistent-folder' does not exist"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable


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


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to a hidden temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure through a temporary name beside `path`, then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.part{path.suffix}")  # the suffix tells matplotlib the format
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
