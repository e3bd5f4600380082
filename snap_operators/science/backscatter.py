"""Radar backscatter between linear units and decibels, per tile (SNAP's ``LinearToFromdB``).

A backscatter tile in linear units (intensity ``Sigma0``, or amplitude) becomes
``10 log10(x)``; a tile in dB becomes ``10 ** (x / 10)``. Invalid pixels (NaN)
stay NaN. A linear value that is not positive has no dB: it becomes NaN, as in
``SpectralIndices`` (SNAP writes ``-1e-30`` there, i.e. 0 dB, as bright as the
pixel itself; 0 is the fill value of terrain-corrected products and negative
intensity comes from noise subtraction, neither a measurement).

Example
-------
>>> import numpy as np
>>> convert_tile({"VV": np.array([[0.1, 1.0, 0.0]], np.float32)}, to_db={"VV": True})["VV"]
array([[-10.,   0.,  nan]], dtype=float32)
>>> convert_tile({"VV": np.array([[-10.0, 0.0]], np.float32)}, to_db={"VV": False})["VV"]
array([[0.1, 1. ]], dtype=float32)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..core.product import float_values

__all__ = ["convert_tile", "db_to_linear", "linear_to_db", "to_db_hint"]

_F32 = np.float32
#: SNAP's ``Unit.DB`` suffix of band names and units (``Sigma0_VV_db``, ``intensity_db``).
DB_SUFFIX = "_db"


def linear_to_db(x: np.ndarray) -> np.ndarray:
    """``10 log10(x)`` as float32, NaN where `x` is not positive (or NaN); same shape."""
    x = np.asarray(x, dtype=_F32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 0, _F32(10) * np.log10(x), _F32(np.nan)).astype(_F32, copy=False)


def db_to_linear(x_db: np.ndarray) -> np.ndarray:
    """``10 ** (x_db / 10)`` as float32, NaN where `x_db` is NaN; same shape."""
    with np.errstate(over="ignore"):
        return np.power(_F32(10), np.asarray(x_db, dtype=_F32) / _F32(10)).astype(_F32, copy=False)


def convert_tile(tiles: Mapping[str, np.ndarray], *, to_db: Mapping[str, bool],
                 no_data: Mapping[str, float | int | None] | None = None) -> dict[str, np.ndarray]:
    """Each tile of `tiles` to dB (``to_db[key]`` true) or from dB to linear units.

    Parameters
    ----------
    tiles : dict of str to numpy.ndarray
        2-D tiles of physical values, NaN where invalid (any numeric dtype).
    to_db : dict of str to bool
        For each key of `tiles`: True converts linear units to dB, False dB to linear.
    no_data : dict of str to number, optional
        The value marking invalid pixels of each tile, which become NaN.

    Returns
    -------
    dict of str to numpy.ndarray
        float32 tiles under the same keys, NaN where invalid.
    """
    no_data = no_data or {}
    return {k: (linear_to_db if to_db[k] else db_to_linear)(float_values(t, no_data.get(k))) for k, t in tiles.items()}


def to_db_hint(missing: Sequence[str], present: Sequence[str]) -> str | None:
    """How to make the dB bands of `missing` from linear bands of `present` (``Sigma0_VV_db`` from
    ``Sigma0_VV``: ASF's terrain-corrected products are linear), or None when none is there.

    >>> to_db_hint(["Sigma0_VV_db", "NDVI"], ["B2", "Sigma0_VV"])
    'the product holds Sigma0_VV in linear units: convert to dB first with LinearToFromdB (sourceBands=Sigma0_VV), which writes Sigma0_VV_db'
    """
    linear = [n[:-len(DB_SUFFIX)] for n in missing if n.endswith(DB_SUFFIX) and n[:-len(DB_SUFFIX)] in present]
    if not linear:
        return None
    return (f"the product holds {', '.join(linear)} in linear units: convert to dB first with LinearToFromdB "
            f"(sourceBands={','.join(linear)}), which writes {', '.join(n + DB_SUFFIX for n in linear)}")
