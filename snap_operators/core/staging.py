"""Staged writes: pid-tagged temporary names, output locks, stale clean-up, deferred signals.

Every file a run writes is first written under a hidden *staged* name beside
its final path and renamed into place only when every output of the run is
complete (see :func:`snap_operators.engine.runner.run_graph`). This module is the
one place that knows how those names look and how runs keep out of each
other's way:

* :func:`staged_path` names a staged file ``.<name>.part-<host>-<pid>-<token><suffix>``,
  so a later run can tell the leftovers of a dead writer (its pid is gone)
  from the files of a run still going on;
* :func:`clean_stale` removes the leftovers of dead writers from a folder;
* :class:`OutputLocks` holds an exclusive ``flock`` on a lock file beside
  every output, so two runs cannot write the same output at once (the
  kernel drops the lock when a process dies, so no lock goes stale);
* :func:`deferred_signals` holds SIGINT/SIGTERM back while outputs are
  renamed into place, so an interrupt never leaves half of them published;
* :func:`interrupts_raise` turns SIGTERM into the same clean path as Ctrl-C.

Example
-------
>>> from pathlib import Path
>>> p = staged_path(Path("/data/classes.tif"))
>>> p.name.startswith(".classes.tif.part-") and p.suffix == ".tif"
True
>>> staged_owner(p.name) == (HOST, os.getpid())
True
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Iterable, Iterator

from .errors import ProductWriteError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None

log = logging.getLogger(__name__)

#: This machine, shortened: staged names on a shared folder (NFS) must not
#: let one host judge another host's pids.
HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]

_STAGED = re.compile(r"^\..+\.part-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}")
LOCK_SUFFIX = ".snap-pc-lock"


def staged_path(final: str | os.PathLike, suffix: str | None = None) -> Path:
    """A hidden staged name beside `final`, tagged with this host and process.

    Parameters
    ----------
    final : path
        The output the staged file will become.
    suffix : str, optional
        Ending of the staged name (default: `final`'s suffix); drivers that
        pick a format or add sibling files by extension (GDAL, matplotlib,
        Shapefile parts) need it.

    Returns
    -------
    pathlib.Path
        In the same folder as `final`, so the rename into place is atomic.
    """
    final = Path(final)
    end = final.suffix if suffix is None else suffix
    return final.with_name(f".{final.name}.part-{HOST}-{os.getpid()}-{secrets.token_hex(4)}{end}")


def staged_owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of the run that staged file `name`, or None for other names."""
    m = _STAGED.match(name)
    return (m["host"], int(m["pid"])) if m else None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (one we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove(path: str | os.PathLike) -> None:
    """Remove a file or folder tree if present; never raises (clean-up must not mask the cause)."""
    path = Path(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - best effort
        log.warning("could not remove '%s': %s", path, exc.strerror or exc)


def clean_stale(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the staged files of dead runs of this host, and unheld lock files, from `folders`.

    Files of a live process (a concurrent run) are left alone; so are files
    staged on another host, whose pids mean nothing here.

    Returns
    -------
    list of pathlib.Path
        What was removed.
    """
    removed = []
    for folder in {Path(f) for f in folders}:
        try:
            names = [e.name for e in os.scandir(folder) if e.name.startswith(".")]
        except OSError:
            continue
        for name in names:
            path = folder / name
            owner = staged_owner(name)
            if owner is not None and owner[0] == HOST and owner[1] != os.getpid() and not pid_alive(owner[1]):
                remove(path)
                removed.append(path)
            elif name.endswith(LOCK_SUFFIX) and _remove_unheld_lock(path):
                removed.append(path)
    for path in removed:
        log.info("removed '%s', left by a run that ended without cleaning up", path)
    return removed


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of `output`: hidden, beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}{LOCK_SUFFIX}")


class OutputLocks:
    """Exclusive locks on a run's outputs, held from the checks to the last rename.

    A lock is ``flock(LOCK_EX)`` on ``.<name>.snap-pc-lock`` beside the
    output; the file holds ``<host> <pid>`` for the message another run
    prints. The kernel releases a lock when its process dies, so a lock
    file left by a killed run is simply taken over.

    Parameters
    ----------
    outputs : iterable of path
        Every path the run will write.

    Raises
    ------
    ProductWriteError
        On entering, when another run holds one of the locks.
    """

    def __init__(self, outputs: Iterable[str | os.PathLike]):
        self.outputs = sorted({Path(p) for p in outputs})
        self._held: list[tuple[Path, int]] = []

    def __enter__(self) -> "OutputLocks":
        try:
            for out in self.outputs:
                self._held.append(_acquire(out))
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    def release(self) -> None:
        """Release and remove every lock taken; never raises."""
        held, self._held = self._held, []
        for path, fd in held:
            try:
                path.unlink()  # before unlocking: a waiter then sees the file is gone and retries
            except OSError:
                pass
            with contextlib.suppress(OSError):
                os.close(fd)


def _acquire(output: Path) -> tuple[Path, int]:
    path = lock_path(output)
    for _ in range(20):  # retries only while other runs remove lock files under us
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            raise ProductWriteError(f"output folder '{path.parent}' does not exist") from None
        except OSError as exc:
            raise ProductWriteError(f"cannot lock '{output}': {exc.strerror or exc}") from None
        if fcntl is None:  # pragma: no cover - no advisory locks: the file itself is the lock
            return path, fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _lock_owner(fd)
            os.close(fd)
            who = f" (pid {owner})" if owner else ""
            raise ProductWriteError(f"'{output}' is being written by another run{who}") from None
        if not _same_file(fd, path):  # the holder released and removed it meanwhile: lock the new one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{HOST} {os.getpid()}\n".encode(), 0)
        return path, fd
    raise ProductWriteError(f"cannot lock '{output}': its lock file keeps changing")  # pragma: no cover


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _lock_owner(fd: int) -> str | None:
    try:
        parts = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    except OSError:
        return None
    return parts[1] if len(parts) == 2 and parts[1].isdigit() else None


def _remove_unheld_lock(path: Path) -> bool:
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    try:
        if _same_file(fd, path):
            path.unlink()
            return True
        return False
    except OSError:
        return False
    finally:
        os.close(fd)


# --- signals -----------------------------------------------------------------------------------

#: The signals a run treats as "stop now, clean up".
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives.

    A KeyboardInterrupt, so every ``except BaseException`` clean-up path that
    handles Ctrl-C handles SIGTERM the same way.

    Attributes
    ----------
    signum : int
    """

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


_state = threading.local()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread.

    Only the first one does: a second signal while the first is being
    cleaned up is ignored, so clean-up is never cut short. Outside the main
    thread this does nothing (Python runs handlers only there).
    """
    if not _in_main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for the block; deliver one held signal after it.

    Used around the renames that publish a run's outputs, so they happen all
    or (when a signal came before) none; the delivered signal then reaches
    the handler in force before the block. A no-op outside the main thread.
    """
    if not _in_main_thread() or getattr(_state, "deferring", False):
        yield
        return
    held: list[int] = []

    def hold(signum, frame):
        held.append(signum)

    previous = {s: signal.signal(s, hold) for s in STOP_SIGNALS}
    _state.deferring = True
    try:
        yield
    finally:
        _state.deferring = False
        for s, h in previous.items():
            signal.signal(s, h)
        if held:
            signal.raise_signal(held[0])


class StagedFiles:
    """The staged files of one writer: named here, then all published or all removed.

    Usage: ``tmp = staged.add(final)``; write `tmp`; after every writer of
    the run finished, :meth:`publish` renames each staged file onto its final
    path (renames only: nothing there can fail half-way for want of space);
    on failure :meth:`abort` removes them.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> staged = StagedFiles()
    >>> _ = staged.add(folder / "a.csv").write_text("x")
    >>> staged.publish()
    >>> sorted(p.name for p in folder.iterdir())
    ['a.csv']
    """

    def __init__(self):
        self.moves: list[tuple[Path, Path]] = []
        self.published: list[Path] = []

    def add(self, final: str | os.PathLike, suffix: str | None = None) -> Path:
        """Name a staged file for `final` (see :func:`staged_path`) and remember it."""
        final = Path(final)
        tmp = staged_path(final, suffix)
        self.moves.append((tmp, final))
        return tmp

    def attach(self, staged: str | os.PathLike, final: str | os.PathLike) -> None:
        """Publish `staged`, a file a driver added beside one of ours (a Shapefile's parts), as `final`."""
        self.moves.append((Path(staged), Path(final)))

    def drop(self, staged: str | os.PathLike) -> None:
        """Remove the staged file `staged` and forget it (failed, or replaced by another)."""
        staged = Path(staged)
        remove(staged)
        self.moves = [m for m in self.moves if m[0] != staged]

    def publish(self) -> None:
        """Rename every staged file onto its final path.

        Raises
        ------
        ProductWriteError
            A rename failed (the staged files not yet renamed are removed).
        """
        moves, self.moves = self.moves, []
        for k, (src, dst) in enumerate(moves):
            try:
                os.replace(src, dst)
            except OSError as exc:
                for rest, _ in moves[k:]:
                    remove(rest)
                raise ProductWriteError(f"cannot move the output into place at '{dst}': {exc.strerror or exc}") from None
            self.published.append(dst)

    def abort(self) -> None:
        """Remove every staged file not yet published; never raises."""
        moves, self.moves = self.moves, []
        for src, _ in moves:
            remove(src)
            remove(Path(f"{src}.aux.xml"))  # GDAL PAM a driver may add beside a staged raster
