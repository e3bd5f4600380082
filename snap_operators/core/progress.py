"""Progress of long work: a bar on a terminal, gpt's concise lines in logs.

A run started from a terminal shows a ``tqdm`` bar on stderr. Under
``nohup``, cron or a batch scheduler nobody sees a bar, so a run whose
stderr is not a terminal prints what gpt's
``PrintWriterConciseProgressMonitor`` prints on stdout instead: the task's
name, then ``....10%....20%`` as the work advances (flushed, so ``tail -f``
follows it) and `` done.`` at the end.

Example
-------
>>> import io
>>> out = io.StringIO()
>>> p = ConciseProgress(4, "writing", stream=out)
>>> for _ in range(4):
...     p.update(1)
>>> p.close()
>>> out.getvalue()
'writing\\n....10%....20%....30%....40%....50%....60%....70%....80%....90%....100% done.\\n'
"""

from __future__ import annotations

import sys
from typing import IO, Protocol

#: Progress modes of :attr:`ExecutionContext.progress`: a bar, concise lines, or nothing.
BAR, LINES = "bar", "lines"


class Progress(Protocol):
    """What the writers call: ``update`` after each unit of work, ``close`` once at the end."""

    def update(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


class ConciseProgress:
    """gpt's concise progress monitor: every full 10 % as ``....NN%`` on one line, then `` done.``.

    Parameters
    ----------
    total : int
        Units of work (tasks, blocks).
    desc : str
        The task's name, printed on its own line first.
    stream : file, optional
        Where to print; default ``sys.stdout`` (where gpt prints it).
    """

    def __init__(self, total: int, desc: str, stream: IO[str] | None = None):
        self._stream = stream or sys.stdout
        self._total = max(1, int(total))
        self._done = 0
        self._shown = 0  # the last percentage printed, a multiple of 10
        self._closed = False
        self._write(f"{desc}\n")

    def update(self, n: int = 1) -> None:
        self._done += n
        reached = min(100, 100 * self._done // self._total) // 10 * 10
        if reached > self._shown:
            self._write("".join(f"....{p}%" for p in range(self._shown + 10, reached + 1, 10)))
            self._shown = reached

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            # A run that failed or was stopped ends its line without claiming success.
            self._write(" done.\n" if self._shown == 100 else "\n")

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed pipe or file must not fail the run
            pass


def progress(mode: bool | str | None, total: int, desc: str, unit: str = "task") -> Progress | None:
    """A progress display for `total` units of work, or None.

    Parameters
    ----------
    mode : bool, str or None
        :data:`LINES` for :class:`ConciseProgress`; :data:`BAR` or True for a
        ``tqdm`` bar on stderr; False or None for nothing.
    total : int
    desc : str
        What is being done (``"writing"``).
    unit : str
        The bar's unit.
    """
    if not mode:
        return None
    if mode == LINES:
        return ConciseProgress(total, desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)


def mode_for(quiet: bool, stream: IO[str] | None = None) -> str | None:
    """The progress mode of a command: nothing when `quiet`, a bar when `stream` (stderr) is a terminal, else lines."""
    if quiet:
        return None
    stream = stream or sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return BAR if tty else LINES
