"""Streaming primitives: compute lazy arrays chunk by chunk into block targets.

What every sink builds on (SNAP's ``GraphProcessor`` pulling tiles into
writers): a :class:`SinkPlan` says what a sink wants computed and how it
ends; :func:`store` computes arrays chunk by chunk into their targets with
bounded memory (Dask's threaded scheduler, or a ``distributed`` cluster);
:func:`write_all` is the one write lifecycle of a run (lock, clean stale,
open, stream, finish all, publish all with signals held, or abort all);
:func:`stream_writer` runs it for one writer outside a graph.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence

import dask
import dask.array as da
import numpy as np
from dask.callbacks import Callback

from . import staging
from .context import ExecutionContext
from .errors import ProductWriteError
from .outputs import check_claims
from .progress import progress

log = logging.getLogger(__name__)

try:  # dask's pool that hands context variables on to its threads
    from dask.threaded import ContextAwareThreadPoolExecutor as _Pool
except ImportError:  # pragma: no cover - older dask
    _Pool = ThreadPoolExecutor


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


def write_all(written: Sequence[Path], plans: Iterable[SinkPlan], context: ExecutionContext,
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


class _ProgressCallback(Callback):
    """Progress (:mod:`.progress`: a bar or concise lines) over the tasks of a local Dask computation."""

    def __init__(self, mode, desc: str = "computing"):
        super().__init__()
        self._mode = mode
        self._desc = desc
        self._bar = None
        self._lock = threading.Lock()

    def _start_state(self, dsk, state):
        total = sum(len(state[k]) for k in ("ready", "waiting", "running")) + len(state.get("finished", ()))
        self._bar = progress(self._mode, total, self._desc)

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
        from ..core.cluster import store as store_on_cluster

        store_on_cluster(arrays, targets, context.client, context.progress)
        return
    callbacks = [_ProgressCallback(context.progress, "writing")] if context.progress else []
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
    write_all(files, map(_writer_plan, [writer]), context)
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
