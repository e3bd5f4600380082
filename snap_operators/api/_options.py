"""What the API's functions share: Python values as SNAP text, parameter names, error hints.

Graph variables and operator parameters reach the engine as the text a graph
file or ``-Pname=value`` would give, converted by the operator's spec: so a
Python call and a graph run read their parameters the same way, defaults and
validation included.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Iterator, Mapping

import numpy as np

from ..core.errors import ParameterError, SnapPcError, closest
from ..core.spec import OperatorSpec, format_value


def as_text(value: Any) -> str:
    """A Python value as SNAP's parameter text.

    Booleans become ``true``/``false``, lists and tuples comma-separated
    text, paths their string, None the empty text (gpt's ``-Pname=``: unset).

    Examples
    --------
    >>> as_text(True), as_text(["NDVI", "MNDWI"]), as_text(500), as_text(None)
    ('true', 'NDVI,MNDWI', '500', '')
    """
    if value is None:
        return ""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return ",".join(as_text(v) for v in value)
    if isinstance(value, np.generic):  # numpy scalars print as np.float64(0.5) in repr, not in str
        value = value.item()
    return format_value(value)


def snake_case(name: str) -> str:
    """SNAP's camelCase parameter name in snake_case.

    >>> snake_case("minArea"), snake_case("saviL"), snake_case("copySourceBands")
    ('min_area', 'savi_l', 'copy_source_bands')
    """
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def raw_parameters(spec: OperatorSpec, given: Mapping[str, Any]) -> dict[str, str]:
    """The operator's raw (text) parameters from Python keyword arguments.

    Parameters
    ----------
    spec : OperatorSpec
        The operator's spec.
    given : dict
        Parameter name (SNAP's, ``minArea``, or in snake_case, ``min_area``)
        -> Python value; None leaves the operator's default.

    Returns
    -------
    dict of str to str
        SNAP name -> text, for :meth:`OperatorSpec.convert_parameters`.

    Raises
    ------
    ParameterError
        An unknown name (with the closest known one), or one parameter given
        under both spellings.
    """
    names = {p.name: p.name for p in spec.parameters}
    names.update({snake_case(p.name): p.name for p in spec.parameters})
    out: dict[str, str] = {}
    for key, value in given.items():
        name = names.get(key)
        if name is None:
            close = closest(key, names)
            hint = f"; did you mean '{names[close]}'?" if close else ""
            known = ", ".join(p.name for p in spec.parameters)
            raise ParameterError(f"{spec.alias}: unknown parameter '{key}'{hint} (parameters: {known})")
        if name in out:
            raise ParameterError(f"{spec.alias}: parameter '{name}' given twice (as {name} and {snake_case(name)})")
        if value is not None:
            out[name] = as_text(value)
    return out


@contextlib.contextmanager
def python_hints() -> Iterator[None]:
    """Errors raised inside say what to pass in Python, not which command-line flag to add.

    The engine's messages are written for ``snap-pc`` (``use --overwrite``);
    the same error type is raised again with the keyword argument instead.
    """
    try:
        yield
    except SnapPcError as exc:
        text = str(exc)
        if "--overwrite" not in text:
            raise
        try:
            hinted = type(exc)(text.replace("use --overwrite", "pass overwrite=True"))
        except TypeError:  # an error type with other arguments: keep it as it is
            raise exc from None
        raise hinted from None
