"""Exception types.

Every error a user can cause is a :class:`SnapPcError` whose message fits on one
line; the CLI prints it as ``Error: <message>`` and exits non-zero.
"""

from __future__ import annotations

import re

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


def describe(exc: BaseException) -> str:
    """An exception as one line for a message: its text, else its type's name (:func:`one_line`)."""
    return one_line(str(exc)) or type(exc).__name__


class SnapPcError(Exception):
    """Base class of all user-facing errors; ``str()`` is :func:`one_line` of the message."""

    def __str__(self) -> str:
        return one_line(super().__str__())


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
