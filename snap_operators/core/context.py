"""The run-wide settings every operator and sink of a run sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .product import DEFAULT_TILE_SIZE


@dataclass
class ExecutionContext:
    """Run-wide settings handed to every operator of a graph run.

    Attributes
    ----------
    tile_size : int
        Chunk edge in pixels for products read from disk.
    overwrite : bool
        Allow sinks to replace existing targets.
    input_files : set of str
        Resolved paths read by the graph; sinks refuse to write over them.
    client : distributed.Client or None
        Cluster client when running on ``dask.distributed``.
    num_workers : int or None
        Threads for the local scheduler.
    progress : bool, str or None
        Progress display (:mod:`snap_operators.core.progress`): ``"bar"`` (or
        True) a bar on stderr, ``"lines"`` gpt's concise lines on stdout,
        False or None nothing.
    """

    tile_size: int = DEFAULT_TILE_SIZE
    overwrite: bool = False
    input_files: set[str] = field(default_factory=set)
    client: Any = None
    num_workers: int | None = None
    progress: bool | str | None = False
