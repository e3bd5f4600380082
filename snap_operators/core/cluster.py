"""Graph runs on a ``dask.distributed`` cluster (``snap-pc run --scheduler``).

Three things a cluster run needs that a local run does not:

* :func:`connect` -- a client with bounded connect and first-answer times: a
  scheduler address that accepts TCP but never answers fails in seconds
  instead of hanging;
* :func:`store` -- the chunks computed on the cluster in a bounded window of
  blocks and written here, from **one** optimized graph (see below);
* a lost-worker watchdog inside :func:`store`: a worker that dies is replaced
  by the others (the scheduler reruns its tasks there); when no worker is left
  for :data:`NO_WORKER_TIMEOUT` seconds the run fails with one line.

Why one graph: submitting each block as its own collection
(``client.compute(array.blocks[idx])``) lets Dask optimize every submission
on its own, and linear fusion names fused tasks after the chain it found in
*that* submission. A chunk that two neighbouring blocks both need (halo
context, coarse cloud-mask blocks) was then sent once as a fused task and once
as an alias, under the same key, with different dependencies; the scheduler
keeps the first definition, forgets its dependencies when the first block is
released, and the second block fails with ``KeyError`` / "missing keys" or
waits forever. Here the whole plan is optimized once and every submission is
a cull of that graph, so a key always means the same task.

Timeouts are read from the environment at each call:
``SNAP_PC_CONNECT_TIMEOUT`` (seconds, default 10) and
``SNAP_PC_NO_WORKER_TIMEOUT`` (seconds, default 60).
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import threading
import time
from typing import Any, Sequence

import dask.array as da
import numpy as np

from .errors import SnapPcError, describe
from .progress import progress as show_progress

#: Seconds to open a connection to the scheduler and get its first answer.
CONNECT_TIMEOUT = 10.0
#: Seconds a run waits for a worker once the cluster has none before it fails.
NO_WORKER_TIMEOUT = 60.0
#: Seconds between two looks at the cluster while no block is finished.
_POLL = 0.5


class ClusterError(SnapPcError):
    """The Dask cluster cannot be reached, or cannot finish the run."""


def _seconds(env: str, default: float) -> float:
    raw = os.environ.get(env)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ClusterError(f"{env} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise ClusterError(f"{env} must be positive, not {raw!r}")
    return value


def connect_timeout() -> float:
    """Connect and first-answer timeout in seconds (``SNAP_PC_CONNECT_TIMEOUT``, default 10)."""
    return _seconds("SNAP_PC_CONNECT_TIMEOUT", CONNECT_TIMEOUT)


def no_worker_timeout() -> float:
    """Seconds without any worker before a run fails (``SNAP_PC_NO_WORKER_TIMEOUT``, default 60)."""
    return _seconds("SNAP_PC_NO_WORKER_TIMEOUT", NO_WORKER_TIMEOUT)


# --- connecting -------------------------------------------------------------


def connect(address: str, timeout: float | None = None):
    """A ``distributed.Client`` for the scheduler at `address`, or a one-line error.

    The scheduler must answer an ``identity`` request within `timeout`
    seconds before the client is made: ``distributed.Client`` itself waits
    without bound on a port that accepts connections but does not speak the
    Dask protocol.

    Parameters
    ----------
    address : str
        Scheduler address, e.g. ``tcp://10.0.0.5:8786``.
    timeout : float, optional
        Seconds for connecting and for the first answer; default
        :func:`connect_timeout`.

    Returns
    -------
    distributed.Client

    Raises
    ------
    ClusterError
        No Dask scheduler answered at `address` in time.
    """
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a core dependency
        raise ClusterError("--scheduler needs the 'distributed' package") from None
    timeout = connect_timeout() if timeout is None else float(timeout)
    t0 = time.monotonic()
    try:
        # distributed retries a refused connection until its timeout: say so at once instead.
        _tcp_reachable(address, timeout)
        asyncio.run(asyncio.wait_for(_identity(address, timeout), timeout))
    except (asyncio.TimeoutError, TimeoutError):
        raise ClusterError(f"no Dask scheduler answered at {address} within {timeout:g} s") from None
    except (OSError, ValueError, TypeError) as exc:
        raise ClusterError(f"cannot connect to Dask scheduler {address}: {describe(exc)}") from None
    left = max(1.0, timeout - (time.monotonic() - t0))
    try:
        client = Client(address, timeout=f"{left}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot connect to Dask scheduler {address}: {describe(exc)}") from None
    _guard(client, address)
    return client


def _guard(client, address: str) -> threading.Thread:
    """Watch `client`'s cluster while the client is open; cancel its work once no worker is left for too long.

    :func:`store` has the same watchdog in its own loop; this one also frees
    computations that operators start outside it (samples in
    ``initialize()``), which would otherwise wait for a worker forever:
    cancelled, they raise with the watchdog's message.
    """
    from distributed import Future

    watch = _Watchdog(client, address, None)

    def loop():
        while getattr(client, "status", "closed") in ("newly-created", "connecting", "running"):
            time.sleep(1.0)
            message = watch.expired()
            if message is None:
                continue
            client._snap_pc_lost = message
            keys = list(client.futures)
            if keys:
                try:
                    client.cancel([Future(k, client) for k in keys], reason="lost-workers", msg=message)
                except Exception:  # pragma: no cover - the client is closing
                    pass
            watch.progressed()

    t = threading.Thread(target=loop, name="snap-pc-cluster-watchdog", daemon=True)
    t.start()
    return t


def _tcp_reachable(address: str, timeout: float) -> None:
    """Raise OSError when a ``tcp://`` `address` refuses or cannot be reached (other schemes: no check)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, loc = parse_address(address)
    if scheme != "tcp":
        return
    host, port = parse_host_port(loc)
    with socket.create_connection((host, port), timeout=timeout):
        pass


async def _identity(address: str, timeout: float) -> dict:
    from distributed.comm import connect as comm_connect

    comm = await comm_connect(address, timeout=timeout)
    try:
        await comm.write({"op": "identity", "reply": True})
        answer = await comm.read()
    finally:
        comm.abort()
    if not isinstance(answer, dict) or "workers" not in answer and answer.get("type") != "Scheduler":
        raise ValueError("the server there is not a Dask scheduler")
    return answer


# --- storing ----------------------------------------------------------------


def store(arrays: Sequence[da.Array], targets: Sequence[Any], client, progress: bool | str | None = False,
          no_workers_after: float | None = None) -> None:
    """Compute `arrays` on the cluster block by block and write each block to its target here.

    Arrays with identical chunking are computed together per block index, so
    work they share upstream runs once per block. At most a window of blocks
    (one row of blocks and a few more, or two per worker thread when that is
    more) is on the cluster at a time, so worker memory stays bounded and
    context shared by neighbouring blocks is usually still there when the
    next row needs it.

    Parameters
    ----------
    arrays : sequence of dask.array.Array
        2-D arrays to compute.
    targets : sequence
        One block target per array: ``target[(rows, cols)] = block``.
    client : distributed.Client
    progress : bool, str or None
        Progress over blocks (:func:`snap_operators.core.progress.progress`'s mode).
    no_workers_after : float, optional
        Seconds the cluster may have no worker before the run fails; default
        :func:`no_worker_timeout`.

    Raises
    ------
    ClusterError
        The cluster lost all its workers (and got none back in time), lost
        its scheduler, or a task killed the workers that ran it.
    """
    if not arrays:
        return
    limit = no_worker_timeout() if no_workers_after is None else float(no_workers_after)
    address = getattr(client.scheduler, "address", None) or "?"
    graph, deps = _optimized_graph(arrays)
    groups: dict[tuple, list[int]] = {}
    for k, a in enumerate(arrays):
        groups.setdefault((a.shape, a.chunks), []).append(k)
    jobs = []
    widest = 1
    for (_, chunks), members in groups.items():
        widest = max(widest, len(chunks[1]))
        for idx, region in _block_slices(chunks):
            jobs.append((members, idx, region))
    window = max(2 * _threads(client, address), widest + 2)

    bar = show_progress(progress, sum(len(m) for m, _, _ in jobs), "writing", unit="block")
    done: queue.Queue = queue.Queue()
    live: dict[int, Any] = {}  # job number -> its futures, while on the cluster
    waiting: dict[int, int] = {}  # job number -> futures not yet finished
    nxt = 0

    def submit() -> None:
        nonlocal nxt
        members, idx, _ = jobs[nxt]
        keys = [(arrays[k].name, *idx) for k in members]
        futures = client.get(_cull(graph, deps, keys), keys, sync=False, priority=-nxt)
        live[nxt] = futures
        waiting[nxt] = len(futures)
        for f in futures:
            # Runs on a client thread: only hand the job number over.
            f.add_done_callback(lambda _f, n=nxt: done.put(n))
        nxt += 1

    if getattr(client, "_snap_pc_lost", None):
        client._snap_pc_lost = None  # workers came back since an earlier run lost them
    watch = _Watchdog(client, address, limit)
    try:
        while nxt < len(jobs) and len(live) < window:
            submit()
        while live:
            try:
                n = done.get(timeout=_POLL)
            except queue.Empty:
                watch.check()
                continue
            watch.progressed()
            waiting[n] -= 1
            if waiting[n]:
                continue
            del waiting[n]
            futures = live.pop(n)
            members, _, region = jobs[n]
            blocks = [_result(f, address) for f in futures]
            del futures
            for k, block in zip(members, blocks):
                targets[k][region] = np.asarray(block)
                if bar is not None:
                    bar.update(1)
            del blocks
            if nxt < len(jobs):
                submit()
    finally:
        if live:
            # Stop the work nobody will collect (on errors and interrupts).
            pending = [f for fs in live.values() for f in fs]
            try:
                client.cancel(pending)
            except Exception:  # pragma: no cover - the cluster may already be gone
                pass
        live.clear()
        if bar is not None:
            bar.close()


def _optimized_graph(arrays: Sequence[da.Array]) -> tuple[dict, dict]:
    """The optimized low-level graph of all `arrays` and each key's dependencies."""
    from dask.base import collections_to_expr

    expr = collections_to_expr(list(arrays), optimize_graph=True)
    graph = dict(expr.__dask_graph__())
    deps = {k: getattr(v, "dependencies", ()) for k, v in graph.items()}
    return graph, deps


def _cull(graph: dict, deps: dict, keys: list) -> dict:
    """The part of `graph` that `keys` need."""
    out = {}
    stack = list(keys)
    while stack:
        k = stack.pop()
        if k in out or k not in graph:
            continue
        out[k] = graph[k]
        stack.extend(deps[k])
    return out


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


def _threads(client, address: str) -> int:
    try:
        info = client.scheduler_info(n_workers=-1)
    except Exception as exc:
        raise ClusterError(f"the Dask scheduler at {address} does not answer: {describe(exc)}") from None
    return max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))


def _result(future, address: str):
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as exc:
        raise ClusterError(
            f"the Dask cluster at {address} lost the workers that ran task {exc.task!r} "
            f"{exc.allowed_failures + 1} times; giving up (a worker crash, often out of memory)"
        ) from None
    except Exception as exc:
        error = cancelled_error(exc, future.client, address)
        if error is not None:
            raise error from None
        raise


def cancelled_error(exc: BaseException, client, address: str | None = None) -> ClusterError | None:
    """The one-line error for a computation the cluster cancelled (`exc`), or None for other errors.

    Futures cancelled by the lost-worker watchdog carry its message; any
    computation on the cluster may meet them, in the streaming pass or in an
    operator's ``initialize()`` (scene samples).
    """
    if type(exc).__name__ not in {"CancelledError", "FutureCancelledError"}:
        return None
    lost = getattr(client, "_snap_pc_lost", None)
    if lost:
        return ClusterError(lost)
    where = address or getattr(getattr(client, "scheduler", None), "address", "the scheduler")
    return ClusterError(f"the Dask cluster at {where} dropped the run ({describe(exc)})")


class _Watchdog:
    """Fails a run that waits on a cluster without workers (or without scheduler) for too long."""

    def __init__(self, client, address: str, limit: float | None):
        self.client, self.address, self.limit = client, address, limit
        self.since: float | None = None  # when the cluster was first seen without workers
        self.last_look = 0.0

    def progressed(self) -> None:
        self.since = None

    def check(self) -> None:
        """Raise :class:`ClusterError` once the cluster has been without workers for too long."""
        message = getattr(self.client, "_snap_pc_lost", None) or self.expired()
        if message is not None:
            raise ClusterError(message)

    def expired(self) -> str | None:
        """The error message once the cluster has been without workers for too long, else None."""
        now = time.monotonic()
        if now - self.last_look < 1.0:
            return None
        self.last_look = now
        if self._workers() > 0:
            self.since = None
            return None
        limit = no_worker_timeout() if self.limit is None else self.limit
        if self.since is None:
            self.since = now
        elif now - self.since >= limit:
            return (f"the Dask cluster at {self.address} lost its workers; no result after {limit:g} s "
                    "(set SNAP_PC_NO_WORKER_TIMEOUT to wait longer)")
        return None

    def _workers(self) -> int:
        """Workers the scheduler knows of; 0 when the scheduler does not answer in time."""
        if getattr(self.client, "status", "running") not in ("running", "connecting"):
            return 0
        try:
            info = self.client.sync(self.client.scheduler.identity, n_workers=-1, callback_timeout=5)
        except Exception:
            return 0
        return len(info.get("workers", {}))
