"""Exception types.

Every error a user can cause is a :class:`SnapPcError` whose message fits on one
line; the CLI prints it as ``Error: <message>`` and exits non-zero.
"""


class SnapPcError(Exception):
    """Base class of all user-facing errors."""


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
