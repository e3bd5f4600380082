"""Exception types.

Every error a user can cause is a :class:`SnapPcError` whose message fits on one
line; the CLI prints it as ``Error: <message>`` and exits non-zero.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable

from .limits import MAX_ERROR_CHARS

# C0/C1 controls, DEL and the bidirectional overrides that could rewrite or hide what a terminal shows.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`message` as one printable line of at most `limit` characters.

    Whitespace runs (newlines included) become one space; other control
    characters are escaped (``\\x1b``), so a message quoting hostile input
    cannot move the cursor or fake output. A longer message keeps its start
    (which input) and its end (how to fix it) around an ellipsis.

    Examples
    --------
    >>> one_line("bad\\nnode '\\x1b[2J'")
    "bad node '\\\\x1b[2J'"
    >>> len(one_line("x" * 10_000))
    1000
    """
    text = " ".join(str(message).split())
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        text)
    if len(text) <= limit:
        return text
    tail = limit // 3
    return text[: limit - tail - 3] + "..." + text[-tail:]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate spelled most like `name`, ignoring case (:mod:`difflib`, cutoff 0.6), or None:
    what a one-line error's "did you mean" offers.

    >>> closest("minarae", ["minArea", "rules"]), closest("xyz", ["minArea"])
    ('minArea', None)
    """
    lower = {c.lower(): c for c in candidates}
    hit = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    return lower[hit[0]] if hit else None


def describe(exc: BaseException) -> str:
    """An exception as one line for a message: its text, else its type's name (:func:`one_line`)."""
    return one_line(str(exc)) or type(exc).__name__


class SnapPcError(Exception):
    """Base class of all user-facing errors; ``str()`` is :func:`one_line` of the message."""

    def __str__(self) -> str:
        return one_line(super().__str__())


def node_label(alias: str, node_id: str | None) -> str:
    """How messages name a graph node: ``Alias (node 'id')``, or just ``Alias`` when the id is the alias.

    >>> node_label("BandMaths", "ndvi"), node_label("Read", "Read")
    ("BandMaths (node 'ndvi')", 'Read')
    """
    return alias if node_id is None or node_id == alias else f"{alias} (node '{node_id}')"


def in_node(exc: SnapPcError, node_id: str | None, alias: str, kind: type[SnapPcError] | None = None) -> SnapPcError:
    """`exc` re-raised by graph node `node_id` (operator `alias`): its message prefixed with the node.

    The one way an error from below (a reader, a writer, a rule file...) is
    told in the node that met it: ``raise in_node(exc, self.node_id,
    self.spec.alias) from None``. A message that already names the node
    (it starts with :func:`node_label`, or quotes ``node 'id'``) is kept as it
    is; one that starts with the alias alone gets the node id added.

    Parameters
    ----------
    exc : SnapPcError
        The error caught.
    node_id : str or None
        Id of the graph node (None or `alias` when there is no graph: the alias alone names it).
    alias : str
        Operator alias of the node.
    kind : type, optional
        Error class of the result (default: `exc`'s own), e.g. ProductWriteError
        for a sink that reports every failure as a write error.

    Returns
    -------
    SnapPcError
        A new error of `kind`; attributes of `exc` (``column``...) are carried
        over when the class stays the same.

    Examples
    --------
    >>> str(in_node(ProductReadError("file not found: a.tif"), "r1", "Read"))
    "Read (node 'r1'): file not found: a.tif"
    >>> str(in_node(OperatorError("Read (node 'r1'): no band 'B9'"), "r1", "Read"))
    "Read (node 'r1'): no band 'B9'"
    >>> str(in_node(ParameterError("Read: parameter 'x' is required"), "r1", "Read"))
    "Read (node 'r1'): parameter 'x' is required"
    """
    label = node_label(alias, node_id)
    message = str(exc)
    if not (message.startswith(f"{label}:") or (node_id is not None and f"node '{node_id}'" in message)):
        message = f"{label}: {message.removeprefix(f'{alias}: ')}"
    kind = kind or type(exc)
    out = kind(message)
    if kind is type(exc):
        out.__dict__.update(exc.__dict__)
    return out


class GraphError(SnapPcError):
    """The graph XML is malformed, unsafe, cyclic or references unknown things."""


class OperatorError(SnapPcError):
    """An operator cannot be initialized with the given sources and parameters."""


class ParameterError(OperatorError):
    """A parameter value is missing, of the wrong type or out of range."""


class ProductReadError(SnapPcError):
    """A product cannot be opened or read."""


class ProductWriteError(SnapPcError):
    """A product cannot be written."""


class ExpressionError(SnapPcError):
    """A band-maths expression cannot be parsed or evaluated.

    Attributes
    ----------
    column : int or None
        1-based column of the offending character in the expression.
    """

    def __init__(self, message, column=None, expression=None):
        self.column = column
        self.expression = expression
        if column is not None:
            message = f"{message} (column {column})"
        super().__init__(message)
