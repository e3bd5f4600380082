"""Spectral (Sentinel-2) and backscatter (Sentinel-1) indices on numpy tiles.

Every index is a pure function of float32 tiles that returns float32, NaN
wherever an input is NaN or no-data, a denominator is 0 or a logarithm or
square root is undefined. The numpy functions in :data:`INDICES` are the
reference; :func:`compute_indices` computes any set of indices in one pass over
the pixels with a fused numba kernel (compiled on first use) and falls back to
the numpy reference when numba is not installed.

Inputs are named by *role*: the Sentinel-2 band they stand for (``B2``,
``B3``, ``B4``, ``B8``, ``B11``, ``B12``; reflectance, 0..1) or the Sentinel-1
polarisation (``VV``, ``VH``; backscatter intensity, linear or dB as stated
by ``sar_db``). Matching product bands to roles is the operator's business
(:mod:`snap_operators.ops.spectral_indices`).

Any other name of the Awesome Spectral Indices catalogue (``EVI``, ``kNDVI``,
``NBR``...; ``ASI:BI`` for the catalogue's own ``BI``) is computed from the
catalogue's formula (:mod:`snap_operators.science.catalogue`), with the
catalogue's constants unless `constants` overrides them, on any Sentinel-2
band (:data:`ALL_S2_ROLES`) and VV/VH as linear intensity; this project's own
names keep their fused implementation.

Example
-------
>>> import numpy as np
>>> from snap_operators.science.indices import compute_indices
>>> b4 = np.array([[0.1, 0.2]], np.float32)
>>> b8 = np.array([[0.5, 0.2]], np.float32)
>>> [round(float(v), 3) for v in compute_indices({"B4": b4, "B8": b8}, ["NDVI"])["NDVI"][0]]
[0.667, 0.0]
>>> b2 = np.array([[0.05, 0.1]], np.float32)
>>> [round(float(v), 3) for v in compute_indices({"B2": b2, "B4": b4, "B8": b8}, ["EVI"])["EVI"][0]]
[0.58, 0.0]
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ..core.errors import OperatorError, ParameterError
from . import catalogue
from .backscatter import to_db_hint
from .jit import compile_now

log = logging.getLogger(__name__)

_F32 = np.float32
_NAN = np.float32(np.nan)
#: dB -> linear: 10 ** (x / 10) == exp(x * ln(10) / 10).
_DB_TO_LN = np.float32(math.log(10.0) / 10.0)

#: Input roles in kernel order.
S2_ROLES = ("B2", "B3", "B4", "B8", "B11", "B12")
#: PANTEX: window radius (7 x 7), displacements, context needed around a
#: tile (window radius + one displacement), and brightness units per
#: reflectance unit (B2 + B3 + B4 in 1e-4 steps, so the mean of the three
#: bands is 1 / 30000 of it).
_PANTEX_R = 3
_PANTEX_DIRS = ((0, 1), (1, 0), (1, 1), (1, -1))
PANTEX_HALO = _PANTEX_R + 1
#: Brightness steps per reflectance unit of B2 + B3 + B4 (1e-3), and the
#: largest step difference a pair counts with (0.167 of mean brightness): 49
#: squared differences then sum to at most 1.2e7 < 2**24, so float32 window
#: sums are exact integers whatever the order, hence tiling-independent.
_PANTEX_UNITS = np.float32(1.0e3)
_PANTEX_CAP = np.float32(500.0)
S1_ROLES = ("VV", "VH")
ROLES = S2_ROLES + S1_ROLES
#: Every Sentinel-2 band an index may read (the catalogue's indices read B1, B5 ... B9 and B8A too), band order.
ALL_S2_ROLES = catalogue.S2_BANDS
#: Every input role, Sentinel-2 then Sentinel-1.
ALL_ROLES = ALL_S2_ROLES + S1_ROLES
#: :attr:`IndexDef.code` of an index computed from the Awesome Spectral Indices catalogue's formula.
CATALOGUE_CODE = -2


# --- numpy reference ------------------------------------------------------


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)``, NaN where ``a + b == 0``."""
    return _ratio(a - b, a + b)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / den, _NAN).astype(_F32, copy=False)


def ndvi(b8, b4):
    """Normalized difference vegetation index, ``(B8 - B4) / (B8 + B4)``."""
    return _nd(b8, b4)


def ndwi(b3, b8):
    """McFeeters' normalized difference water index, ``(B3 - B8) / (B3 + B8)``."""
    return _nd(b3, b8)


def mndwi(b3, b11):
    """Xu's modified NDWI, ``(B3 - B11) / (B3 + B11)``."""
    return _nd(b3, b11)


def savi(b8, b4, savi_l=0.5):
    """Soil-adjusted vegetation index, ``(1 + L) (B8 - B4) / (B8 + B4 + L)``."""
    L = _F32(savi_l)
    return _ratio((_F32(1) + L) * (b8 - b4), b8 + b4 + L)


def msavi2(b8, b4):
    """Modified SAVI (MSAVI2), ``(2 B8 + 1 - sqrt((2 B8 + 1)^2 - 8 (B8 - B4))) / 2``."""
    t = _F32(2) * b8 + _F32(1)
    with np.errstate(invalid="ignore"):
        return ((t - np.sqrt(t * t - _F32(8) * (b8 - b4))) / _F32(2)).astype(_F32, copy=False)


def ndbi(b11, b8):
    """Normalized difference built-up index, ``(B11 - B8) / (B11 + B8)``."""
    return _nd(b11, b8)


def bsi(b11, b4, b8, b2):
    """Bare soil index, ``((B11 + B4) - (B8 + B2)) / ((B11 + B4) + (B8 + B2))``."""
    return _nd(b11 + b4, b8 + b2)


def ndmi(b8, b11):
    """Normalized difference moisture index, ``(B8 - B11) / (B8 + B11)``."""
    return _nd(b8, b11)


def ndti(b4, b3):
    """Normalized difference turbidity index, ``(B4 - B3) / (B4 + B3)``."""
    return _nd(b4, b3)


def awei_nsh(b3, b11, b8, b12):
    """Automated water extraction index, no shadows: ``4 (B3 - B11) - (0.25 B8 + 2.75 B12)``."""
    return (_F32(4) * (b3 - b11) - (_F32(0.25) * b8 + _F32(2.75) * b12)).astype(_F32, copy=False)


def awei_sh(b2, b3, b8, b11, b12):
    """AWEI with shadows: ``B2 + 2.5 B3 - 1.5 (B8 + B11) - 0.25 B12``."""
    return (b2 + _F32(2.5) * b3 - _F32(1.5) * (b8 + b11) - _F32(0.25) * b12).astype(_F32, copy=False)


def bi(b4, b3):
    """Brightness index, ``sqrt((B4^2 + B3^2) / 2)``."""
    with np.errstate(invalid="ignore"):
        return np.sqrt((b4 * b4 + b3 * b3) / _F32(2)).astype(_F32, copy=False)


def bi2(b4, b3, b8):
    """Second brightness index, ``sqrt((B4^2 + B3^2 + B8^2) / 3)``."""
    with np.errstate(invalid="ignore"):
        return np.sqrt((b4 * b4 + b3 * b3 + b8 * b8) / _F32(3)).astype(_F32, copy=False)


def cmr(b11, b12):
    """Clay minerals ratio, ``B11 / B12``."""
    return _ratio(b11, b12)


def ior(b4, b2):
    """Iron oxide ratio, ``B4 / B2``."""
    return _ratio(b4, b2)


def ngbdi(b3, b2):
    """Normalized green-blue difference index, ``(B3 - B2) / (B3 + B2)``."""
    return _nd(b3, b2)


def pantex(b2, b3, b4, halo=PANTEX_HALO):
    """Built-up texture (PanTex-like) of visible brightness ``(B2 + B3 + B4) / 3``, reflectance.

    For each pixel and each of four displacements ``d`` (1 pixel right,
    down, down-right, down-left), the mean of ``(v(p + d) - v(p))**2`` over
    the pairs whose first pixel ``p`` lies in the 7 x 7 window around the
    pixel (pairs with a NaN left out); the index is the square root of the
    smallest of the four means (Pesaresi et al. 2008: the minimum over
    directions keeps the dense, isotropic texture of built-up areas and drops
    the one-directional edges of fields and roads).

    The inputs are tiles with `halo` pixels of context on every side (NaN
    beyond the scene); the result is the inner ``(rows - 2 halo, cols - 2 halo)``
    part. Brightness is summed in integer units of 1e-4 reflectance, so the
    window sums are exact and the result does not depend on how a scene is
    tiled.
    """
    v = _brightness_units(b2, b3, b4)
    h, w = v.shape[0] - 2 * halo, v.shape[1] - 2 * halo
    best = np.full((max(h, 0), max(w, 0)), np.inf)
    for dy, dx in _PANTEX_DIRS:
        q = np.full_like(v, np.nan)
        ys, xs = slice(max(0, -dy), v.shape[0] - max(0, dy)), slice(max(0, -dx), v.shape[1] - max(0, dx))
        yd, xd = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
        q[ys, xs] = v[yd, xd]
        d2 = np.minimum(np.abs(q - v), float(_PANTEX_CAP)) ** 2
        ok = np.isfinite(d2)
        d2 = np.where(ok, d2, 0.0)
        s = _box(d2, _PANTEX_R)[halo : halo + h, halo : halo + w]
        c = _box(ok.astype(np.float64), _PANTEX_R)[halo : halo + h, halo : halo + w]
        with np.errstate(invalid="ignore", divide="ignore"):
            best = np.minimum(best, np.where(c > 0, s / c, np.inf))
    centre = v[halo : halo + h, halo : halo + w]
    with np.errstate(invalid="ignore"):
        out = np.sqrt(best.astype(_F32)) / _F32(3 * _PANTEX_UNITS)
    return np.where(np.isfinite(centre) & np.isfinite(out), out, np.nan).astype(_F32)


def _brightness_units(b2, b3, b4) -> np.ndarray:
    """``B2 + B3 + B4`` (float32 sum) in whole 1e-3 reflectance steps, as float64 (NaN kept)."""
    with np.errstate(invalid="ignore"):
        t = np.asarray(b2, _F32) + np.asarray(b3, _F32) + np.asarray(b4, _F32)
        return np.round(t * _PANTEX_UNITS).astype(np.float64)


def _box(a: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1) x (2r+1) window around each pixel, within the array (same shape)."""
    c = np.pad(a, ((r + 1, r), (r + 1, r))).cumsum(0).cumsum(1)
    k = 2 * r + 1
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def vv_db(vv_db):
    """VV backscatter in dB, ``10 log10(VV)``."""
    return vv_db


def vh_db(vh_db):
    """VH backscatter in dB, ``10 log10(VH)``."""
    return vh_db


def vv_lin(vv):
    """VV backscatter as linear intensity."""
    return vv


def vh_lin(vh):
    """VH backscatter as linear intensity."""
    return vh


def rvi(vv, vh):
    """Dual-pol radar vegetation index on linear intensity, ``4 VH / (VV + VH)``."""
    return _ratio(_F32(4) * vh, vv + vh)


def cr(vv, vh):
    """Cross-polarisation ratio on linear intensity, ``VH / VV``."""
    return _ratio(vh, vv)


def cr_db(vv_db, vh_db):
    """Cross-polarisation ratio in dB, ``VH_db - VV_db``."""
    return (vh_db - vv_db).astype(_F32, copy=False)


def sbi(vv_db, vh_db):
    """SAR brightness index: mean of the two dB backscatters, ``(VV_db + VH_db) / 2``."""
    return ((vv_db + vh_db) / _F32(2)).astype(_F32, copy=False)


# --- registry --------------------------------------------------------------


@dataclass(frozen=True)
class IndexDef:
    """One index: its formula, inputs and provenance.

    Attributes
    ----------
    name : str
        Index and target band name (``NDVI``).
    formula : str
        Formula with SNAP band names.
    bands : tuple of str
        Input roles (``B8``, ``B4``; ``VV``, ``VH``).
    args : tuple of str
        Arguments of `reference`: a role in lower case (``b8``; ``vv`` =
        linear intensity) or ``vv_db`` / ``vh_db`` (backscatter in dB).
    reference : callable
        Numpy reference implementation.
    unit : str
        ``"1"`` (dimensionless), ``"dB"`` or ``"intensity"`` (linear backscatter).
    valid_range : tuple of float
        Range of the index for valid inputs (reflectance in [0, 1],
        non-negative intensity); ``inf`` where unbounded.
    citation : str
    code : int
        Branch of the fused kernel that computes it (-1: a neighbourhood
        index, computed apart from the per-pixel kernel; :data:`CATALOGUE_CODE`:
        the catalogue's formula, evaluated with numpy).
    halo : int
        Pixels of context the index needs around each pixel (0: per pixel).
    bound : catalogue.BoundIndex or None
        For a catalogue index: the parsed formula with its constants (also
        `reference`).
    """

    name: str
    formula: str
    bands: tuple[str, ...]
    args: tuple[str, ...]
    reference: Callable[..., np.ndarray]
    unit: str
    valid_range: tuple[float, float]
    citation: str
    code: int
    halo: int = 0
    bound: catalogue.BoundIndex | None = None

    @property
    def sensor(self) -> str:
        """``"S1"`` or ``"S2"``."""
        return "S1" if set(self.bands) <= set(S1_ROLES) else "S2"

    @property
    def symbols(self) -> tuple[tuple[str, str], ...]:
        """``(catalogue symbol, role)`` of a catalogue index's bands (``("N", "B8")``); empty for this project's."""
        return self.bound.index.bands if self.bound is not None else ()


_INF = math.inf
_ROUSE = "Rouse, J.W., Haas, R.H., Schell, J.A., Deering, D.W. (1974). Monitoring vegetation systems in the Great Plains with ERTS. Third ERTS Symposium, NASA SP-351, 309-317."
_FEYISA = "Feyisa, G.L., Meilby, H., Fensholt, R., Proud, S.R. (2014). Automated Water Extraction Index: a new technique for surface water mapping using Landsat imagery. Remote Sensing of Environment 140, 23-35."
_ESCADAFAL = "Escadafal, R. (1989). Remote sensing of arid soil surface color with Landsat thematic mapper. Advances in Space Research 9(1), 159-163 (as implemented in SNAP's BiOp/Bi2Op)."
_DB = "Backscatter in decibels, 10 log10(intensity) (ESA Sentinel-1 Product Definition; SNAP LinearToFromdB)."
_RVI = ("Kim, Y., van Zyl, J.J. (2009). A time-series approach to estimate soil moisture using polarimetric radar data. "
        "IEEE TGRS 47(8), 2519-2527; dual-pol form: Nasirzadehdizaji, R., et al. (2019). Sensitivity analysis of "
        "multi-temporal Sentinel-1 SAR parameters to crop height and canopy coverage. Applied Sciences 9(4), 655.")
_CR = ("Vreugdenhil, M., Wagner, W., et al. (2018). Sensitivity of Sentinel-1 backscatter to vegetation dynamics: "
       "an Austrian case study. Remote Sensing 10(9), 1396.")
_SBI = ("This project's formulation of the built-up criterion of Chini, M., Pelich, R., Hostache, R., Matgen, P., "
        "Lopez-Martinez, C. (2018). Polarimetric and multitemporal information extracted from Sentinel-1 SAR data "
        "to map buildings. IGARSS 2018, 8132-8134 (built-up = high backscatter in both VV and VH): the geometric "
        "mean intensity, in dB.")


def _def(code, name, formula, reference, bands, args, unit, valid_range, citation, halo=0) -> IndexDef:
    return IndexDef(name, formula, tuple(bands), tuple(args), reference, unit, valid_range, citation, code, halo)


#: Every known index, in documentation order.
INDICES: dict[str, IndexDef] = {
    d.name: d
    for d in (
        _def(0, "NDVI", "(B8 - B4) / (B8 + B4)", ndvi, ("B8", "B4"), ("b8", "b4"), "1", (-1.0, 1.0), _ROUSE),
        _def(1, "NDWI", "(B3 - B8) / (B3 + B8)", ndwi, ("B3", "B8"), ("b3", "b8"), "1", (-1.0, 1.0),
             "McFeeters, S.K. (1996). The use of the Normalized Difference Water Index (NDWI) in the delineation "
             "of open water features. International Journal of Remote Sensing 17(7), 1425-1432."),
        _def(2, "MNDWI", "(B3 - B11) / (B3 + B11)", mndwi, ("B3", "B11"), ("b3", "b11"), "1", (-1.0, 1.0),
             "Xu, H. (2006). Modification of normalised difference water index (NDWI) to enhance open water "
             "features in remotely sensed imagery. International Journal of Remote Sensing 27(14), 3025-3033."),
        _def(3, "SAVI", "(1 + L) (B8 - B4) / (B8 + B4 + L), L = saviL", savi, ("B8", "B4"), ("b8", "b4"), "1",
             (-1.0, 1.0),
             "Huete, A.R. (1988). A soil-adjusted vegetation index (SAVI). Remote Sensing of Environment 25(3), 295-309."),
        _def(4, "MSAVI2", "(2 B8 + 1 - sqrt((2 B8 + 1)^2 - 8 (B8 - B4))) / 2", msavi2, ("B8", "B4"), ("b8", "b4"),
             "1", (-1.0, 1.0),
             "Qi, J., Chehbouni, A., Huete, A.R., Kerr, Y.H., Sorooshian, S. (1994). A modified soil adjusted "
             "vegetation index. Remote Sensing of Environment 48(2), 119-126."),
        _def(5, "NDBI", "(B11 - B8) / (B11 + B8)", ndbi, ("B11", "B8"), ("b11", "b8"), "1", (-1.0, 1.0),
             "Zha, Y., Gao, J., Ni, S. (2003). Use of normalized difference built-up index in automatically mapping "
             "urban areas from TM imagery. International Journal of Remote Sensing 24(3), 583-594."),
        _def(6, "BSI", "((B11 + B4) - (B8 + B2)) / ((B11 + B4) + (B8 + B2))", bsi, ("B11", "B4", "B8", "B2"),
             ("b11", "b4", "b8", "b2"), "1", (-1.0, 1.0),
             "Rikimaru, A., Roy, P.S., Miyatake, S. (2002). Tropical forest cover density mapping. "
             "Tropical Ecology 43(1), 39-47."),
        _def(7, "NDMI", "(B8 - B11) / (B8 + B11)", ndmi, ("B8", "B11"), ("b8", "b11"), "1", (-1.0, 1.0),
             "Gao, B.-C. (1996). NDWI - a normalized difference water index for remote sensing of vegetation liquid "
             "water from space. Remote Sensing of Environment 58(3), 257-266; named NDMI by Wilson, E.H., Sader, "
             "S.A. (2002). Remote Sensing of Environment 80(3), 385-396."),
        _def(8, "NDTI", "(B4 - B3) / (B4 + B3)", ndti, ("B4", "B3"), ("b4", "b3"), "1", (-1.0, 1.0),
             "Lacaux, J.P., Tourre, Y.M., Vignolles, C., Ndione, J.A., Lafaye, M. (2007). Classification of ponds "
             "from high-spatial resolution remote sensing: application to Rift Valley Fever epidemics in Senegal. "
             "Remote Sensing of Environment 106(1), 66-74."),
        _def(9, "AWEI_nsh", "4 (B3 - B11) - (0.25 B8 + 2.75 B12)", awei_nsh, ("B3", "B11", "B8", "B12"),
             ("b3", "b11", "b8", "b12"), "1", (-7.0, 4.0), _FEYISA),
        _def(10, "AWEI_sh", "B2 + 2.5 B3 - 1.5 (B8 + B11) - 0.25 B12", awei_sh, ("B2", "B3", "B8", "B11", "B12"),
             ("b2", "b3", "b8", "b11", "b12"), "1", (-3.25, 3.5), _FEYISA),
        _def(11, "BI", "sqrt((B4^2 + B3^2) / 2)", bi, ("B4", "B3"), ("b4", "b3"), "1", (0.0, 1.0), _ESCADAFAL),
        _def(12, "BI2", "sqrt((B4^2 + B3^2 + B8^2) / 3)", bi2, ("B4", "B3", "B8"), ("b4", "b3", "b8"), "1",
             (0.0, 1.0), _ESCADAFAL),
        _def(13, "CMR", "B11 / B12", cmr, ("B11", "B12"), ("b11", "b12"), "1", (0.0, _INF),
             "Clay minerals ratio (Landsat TM5/TM7): Drury, S.A. (1987). Image Interpretation in Geology. "
             "Allen & Unwin, London."),
        _def(14, "IOR", "B4 / B2", ior, ("B4", "B2"), ("b4", "b2"), "1", (0.0, _INF),
             "Iron oxide ratio (Landsat TM3/TM1): Segal, D.B. (1982). Theoretical basis for differentiation of "
             "ferric-iron bearing minerals, using Landsat MSS data. Proc. 2nd Thematic Conference on Remote Sensing "
             "for Exploration Geology, Fort Worth, 949-951."),
        _def(15, "VV_db", "10 log10(VV)", vv_db, ("VV",), ("vv_db",), "dB", (-_INF, _INF), _DB),
        _def(16, "VH_db", "10 log10(VH)", vh_db, ("VH",), ("vh_db",), "dB", (-_INF, _INF), _DB),
        _def(17, "VV_lin", "VV (linear intensity)", vv_lin, ("VV",), ("vv",), "intensity", (0.0, _INF), _DB),
        _def(18, "VH_lin", "VH (linear intensity)", vh_lin, ("VH",), ("vh",), "intensity", (0.0, _INF), _DB),
        _def(19, "RVI", "4 VH / (VV + VH), linear", rvi, ("VV", "VH"), ("vv", "vh"), "1", (0.0, 4.0), _RVI),
        _def(20, "CR", "VH / VV, linear", cr, ("VV", "VH"), ("vv", "vh"), "1", (0.0, _INF), _CR),
        _def(21, "CR_db", "VH_db - VV_db", cr_db, ("VV", "VH"), ("vv_db", "vh_db"), "dB", (-_INF, _INF), _CR),
        _def(22, "SBI", "(VV_db + VH_db) / 2 = 10 log10(sqrt(VV VH))", sbi, ("VV", "VH"), ("vv_db", "vh_db"), "dB",
             (-_INF, _INF), _SBI),
        _def(23, "NGBDI", "(B3 - B2) / (B3 + B2)", ngbdi, ("B3", "B2"), ("b3", "b2"), "1", (-1.0, 1.0),
             "Hunt, E.R., Cavigelli, M., Daughtry, C.S.T., McMurtrey, J.E., Walthall, C.L. (2005). Evaluation of "
             "digital photography from model aircraft for remote sensing of crop biomass and nitrogen status. "
             "Precision Agriculture 6(4), 359-378 (green-blue contrast; near 0 for grey built materials)."),
        _def(-1, "PANTEX", "sqrt(min over 4 directions d of the 7x7 mean of (v(p+d) - v(p))^2), v = (B2 + B3 + B4) / 3",
             pantex, ("B2", "B3", "B4"), ("b2", "b3", "b4"), "1", (0.0, 1.0),
             "Pesaresi, M., Gerhardinger, A., Kayitakire, F. (2008). A robust built-up area presence index by "
             "anisotropic rotation-invariant textural measure. IEEE JSTARS 1(3), 180-192 (PanTex: the minimum of "
             "GLCM contrast over directions); here on the visible brightness of 10 m Sentinel-2, four 1-pixel "
             "displacements, 7 x 7 window.", halo=PANTEX_HALO),
    )
}

#: Indices computed when none are requested: what the default classifier preset reads.
DEFAULT_INDICES: tuple[str, ...] = ("NDVI", "MNDWI", "BI2", "NDBI", "NGBDI", "PANTEX", "BSI")


def lookup(
    names: Sequence[str],
    *,
    constants: Mapping[str, float | str] | None = None,
    kernel: str = "RBF",
) -> list[IndexDef]:
    """Index definitions for `names` (case-insensitive, duplicates dropped, order kept).

    A name is this project's index (:data:`INDICES`) if it is one, else the
    Awesome Spectral Indices catalogue's index of that name
    (:mod:`~snap_operators.science.catalogue`; ``ASI:name`` always the
    catalogue's), with `constants` (name -> value) over the catalogue's
    defaults and `kernel` for the kernel indices.

    Raises
    ------
    ParameterError
        One line: an unknown name (with a did-you-mean over both lists), a
        catalogue index Sentinel-1/2 cannot give, a missing constant, or two
        names that give one band name.
    """
    by_lower = {n.lower(): d for n, d in INDICES.items()}
    out: list[IndexDef] = []
    for name in names:
        text = str(name).strip()
        d = None if _qualified(text) else by_lower.get(text.lower())
        if d is None:
            d = _catalogue_def(text, constants, kernel)
        if d in out:
            continue
        twin = next((o for o in out if o.name == d.name), None)
        if twin is not None:
            raise ParameterError(f"two requested indices would both be band {d.name}: this project's and the "
                                 f"Awesome Spectral Indices catalogue's; request one")
        out.append(d)
    if not out:
        raise ParameterError(f"no index requested; known indices: {', '.join(INDICES)}")
    return out


def _qualified(text: str) -> bool:
    return text[: len(catalogue.PREFIX)].upper() == catalogue.PREFIX


def _catalogue_def(text: str, constants, kernel: str) -> IndexDef:
    """The catalogue index `text` (``ASI:`` prefix allowed) as an :class:`IndexDef`."""
    name = text[len(catalogue.PREFIX):].strip() if _qualified(text) else text
    if not _qualified(text) and catalogue.find(name) is None:
        # Neither list has it: suggest from both.
        known = list(INDICES) + catalogue.names()
        raise ParameterError(
            f"unknown index '{text}': not one of this project's indices ({', '.join(INDICES)}) nor of the "
            f"Awesome Spectral Indices catalogue{catalogue.did_you_mean(text, known)}"
        )
    b = catalogue.bound(name, constants, kernel)
    formula = b.index.formula + " with " + ", ".join(f"{s}={r}" for s, r in b.index.bands)
    if b.constants:
        formula += "; " + b.values_text()
    if b.kernel:
        formula += f"; k = {b.kernel} kernel"
    citation = f"{b.index.long_name}: {b.index.reference}. {catalogue.CITATION}"
    return IndexDef(b.name, formula, b.roles, b.args, b, "1", (-_INF, _INF), citation, CATALOGUE_CODE, 0, b)


def required_roles(names: Sequence[str], **options) -> tuple[str, ...]:
    """Input roles needed by the indices `names` (`options`: :func:`lookup`'s), in :data:`ALL_ROLES` order."""
    needed = {r for d in lookup(names, **options) for r in d.bands}
    return tuple(r for r in ALL_ROLES if r in needed)


#: A Sentinel-2 band name as readers spell it: ``B2``, ``B02``, ``b2``, ``B8A``, ``b08a``.
S2_BAND_NAME = re.compile(r"^B0?(\d{1,2})(A?)$", re.IGNORECASE)


def find_s2_band(product, name: str, what: str | None = None):
    """The band of `product` that band `name` designates, or None.

    The exact name first; for a Sentinel-2 band name also the zero-padded and
    lower-case spellings readers give (``B02``, ``b2`` for ``B2``), as
    ``SpectralIndices`` accepts them. `what` names the band in the error when
    several could be it (default: `name`).

    Raises
    ------
    OperatorError
        Several bands of `product` spell `name`.

    Examples
    --------
    >>> from snap_operators.core.product import Band, Product
    >>> p = Product("p")
    >>> p.add_band(Band("B02", np.zeros((2, 2)))).name
    'B02'
    >>> find_s2_band(p, "B2").name, find_s2_band(p, "NDVI")
    ('B02', None)
    """
    if name in product.bands:
        return product.bands[name]
    m = S2_BAND_NAME.match(name)
    if m is None:
        return None
    want = (int(m[1]), m[2].upper())
    hits = [b for b in product.bands.values()
            if (k := S2_BAND_NAME.match(b.name)) is not None and (int(k[1]), k[2].upper()) == want]
    if len(hits) > 1:
        raise OperatorError(f"several bands could be {what or name}: {', '.join(b.name for b in hits)}; keep one "
                            "(Subset or BandSelect)")
    return hits[0] if hits else None


def missing_bands_hint(missing: Sequence[str], present: Sequence[str], without_them: str, s1s2_graph: str) -> str:
    """What to change upstream when a node's product, with bands `present`, lacks the bands `missing`.

    Indices: add them to SpectralIndices; radar bands on a product without
    Sentinel-1 bands: collocate Sentinel-1 (the graph `s1s2_graph` does); dB
    bands whose linear twins are there: convert those (LinearToFromdB);
    other source bands: copy them through SpectralIndices, unless Sentinel-2
    bands came through, in which case the image has none of them and
    `without_them` (e.g. "use a model trained on the bands it has") is the way.

    Examples
    --------
    >>> missing_bands_hint(["B12", "NDBI"], ["B4", "NDVI"], "use other rules", "s1s2.xml")
    "add NDBI to the SpectralIndices 'indices' parameter and the image has no B12: use other rules"
    """
    radar = re.compile(r"V[VH]")
    indices = [n for n in missing if n in INDICES]
    backscatter = [n for n in missing if n not in INDICES and radar.search(n)]
    others = [n for n in missing if n not in INDICES and not radar.search(n)]
    hint = []
    if indices:
        hint.append(f"add {', '.join(indices)} to the SpectralIndices 'indices' parameter")
    if any(radar.search(n) for n in missing) and not any(radar.search(n) for n in present):
        hint.append(f"collocate the Sentinel-1 product onto the Sentinel-2 grid ({s1s2_graph})")
    elif backscatter:
        hint.append(to_db_hint(backscatter, present)
                    or f"the Sentinel-1 product has no {', '.join(backscatter)}: {without_them}")
    if others and any(S2_BAND_NAME.match(n) for n in present):
        hint.append(f"the image has no {', '.join(others)}: {without_them}")
    elif others:
        hint.append("set copySourceBands to true in SpectralIndices (or BandMerge the source bands)")
    return " and ".join(hint)


# --- tile computation ------------------------------------------------------


def compute_indices(
    tiles: Mapping[str, np.ndarray],
    names: Sequence[str],
    *,
    savi_l: float = 0.5,
    sar_db: Mapping[str, bool] | None = None,
    no_data: Mapping[str, float | None] | None = None,
    method: str = "auto",
    parallel: bool = False,
    out: np.ndarray | None = None,
    halo: int = 0,
    constants: Mapping[str, float | str] | None = None,
    kernel: str = "RBF",
) -> dict[str, np.ndarray]:
    """Compute indices `names` from same-shape 2-D tiles, in one pass.

    Parameters
    ----------
    tiles : dict of str to ndarray
        Role (``B4``, ``VV``...) -> 2-D tile, shape ``(rows, cols)``;
        reflectance for ``B*``, backscatter intensity for ``VV``/``VH``.
    names : sequence of str
        Index names: this project's (:data:`INDICES`) or the Awesome Spectral
        Indices catalogue's (see :func:`lookup`).
    savi_l : float
        SAVI soil-brightness factor L.
    sar_db : dict of str to bool, optional
        ``{"VV": True}`` when that tile holds dB rather than linear intensity.
        Required for every S1 role given.
    no_data : dict of str to float, optional
        Role -> value marking invalid pixels besides NaN.
    method : {"auto", "numba", "numpy"}
        Fused numba kernel ("auto" and "numba") or the numpy reference.
    parallel : bool
        Spread rows over numba's threads, for one large call. Honoured on
        the main thread only: tiles computed by worker threads (Dask, SNAP)
        use the serial kernel, since numba's default ``workqueue`` threading
        layer aborts the process when called from two threads at once.
    out : ndarray, optional
        C-contiguous float32 array of shape ``(len(names), rows, cols)`` to
        write the indices into, in the order of `names` (saves allocating).
    halo : int
        Pixels of context around the tile in every input (NaN beyond the
        scene); at least :func:`halo_of` `names`. The results are the inner
        ``(rows - 2 halo, cols - 2 halo)`` part.
    constants : dict of str to float, optional
        Catalogue constants (``{"L": 0.5}``) over the catalogue's defaults;
        only the catalogue's indices read them (SAVI here reads `savi_l`).
    kernel : {"RBF", "linear", "poly"}
        Kernel of the catalogue's kernel indices (kNDVI...).

    Returns
    -------
    dict of str to ndarray
        Index name -> float32 array of the tiles' shape (views of `out`
        when given).
    """
    defs = lookup(names, constants=constants, kernel=kernel)
    halo = int(halo)
    need = max(d.halo for d in defs)
    if halo < need:
        raise ValueError(f"indices {', '.join(d.name for d in defs if d.halo > halo)} need {need} pixels of context, got {halo}")
    if halo:
        inner = {r: np.asarray(t)[halo:-halo, halo:-halo] for r, t in tiles.items()}
        pixel = [d for d in defs if d.halo == 0]
        result = compute_indices(inner, [request_name(d) for d in pixel], savi_l=savi_l, sar_db=sar_db, no_data=no_data,
                                 method=method, parallel=parallel, constants=constants, kernel=kernel) if pixel else {}
        for d in defs:
            if d.halo:
                result[d.name] = _neighbourhood(d, tiles, no_data, halo, method)
        ordered = {d.name: result[d.name] for d in defs}
        if out is not None:
            for k, d in enumerate(defs):
                out[k] = ordered[d.name]
            return {d.name: out[k] for k, d in enumerate(defs)}
        return ordered
    if need:
        raise ValueError("neighbourhood indices need halo > 0")
    roles = [r for r in ALL_ROLES if any(r in d.bands for d in defs)]
    missing = [r for r in roles if r not in tiles]
    if missing:
        raise ParameterError(f"missing input tiles: {', '.join(missing)}")
    sar_db = dict(sar_db or {})
    for r in roles:
        if r in S1_ROLES and r not in sar_db:
            raise ParameterError(f"say whether the {r} tile is linear or dB (sar_db)")
    shapes = {np.shape(tiles[r]) for r in roles}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ParameterError(f"input tiles must be 2-D and of one shape, got {sorted(shapes)}")
    no_data = {r: v for r, v in (no_data or {}).items() if v is not None}
    if method not in ("auto", "numba", "numpy"):
        raise ValueError(f"method must be auto, numba or numpy, not {method!r}")
    shape = (len(defs),) + tuple(next(iter(shapes)))
    if out is not None and (out.shape != shape or out.dtype != _F32 or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}")
    own = [d for d in defs if d.code != CATALOGUE_CODE]
    kernels = None if method == "numpy" or not own else _numba_kernels()
    if kernels is not None and len(own) < len(defs):
        # The catalogue's indices are numpy expressions; this project's stay in the fused kernel.
        listed = [d for d in defs if d.code == CATALOGUE_CODE]
        result = _compute_numpy(tiles, listed, [r for r in roles if any(r in d.bands for d in listed)],
                                savi_l, sar_db, no_data)
        fused_roles = [r for r in roles if any(r in d.bands for d in own)]
        fused = np.empty((len(own),) + shape[1:], dtype=_F32)
        result.update(_compute_numba(kernels, tiles, own, fused_roles, savi_l, sar_db, no_data, parallel, fused))
        kernels = None
    elif kernels is None:
        result = _compute_numpy(tiles, defs, roles, savi_l, sar_db, no_data)
    if kernels is None:
        if out is None:
            return {d.name: result[d.name] for d in defs}
        for k, d in enumerate(defs):
            out[k] = result[d.name]
        return {d.name: out[k] for k, d in enumerate(defs)}
    if out is None:
        out = np.empty(shape, dtype=_F32)
    return _compute_numba(kernels, tiles, defs, roles, savi_l, sar_db, no_data, parallel, out)


def request_name(d: IndexDef) -> str:
    """The name that asks :func:`lookup` for `d` again (``ASI:BI`` for the catalogue's BI)."""
    return catalogue.PREFIX + d.name if d.code == CATALOGUE_CODE else d.name


def halo_of(names: Sequence[str], **options) -> int:
    """Pixels of context the indices `names` (`options`: :func:`lookup`'s) need around a tile (0: all per pixel)."""
    return max(d.halo for d in lookup(names, **options))


def _neighbourhood(d: IndexDef, tiles, no_data, halo: int, method: str) -> np.ndarray:
    """A neighbourhood index (PANTEX) of tiles with `halo` pixels of context."""
    args = []
    for r in d.bands:
        x = np.asarray(tiles[r])
        nd = (no_data or {}).get(r)
        # Read only: a copy only where no-data is to be set or the kernel's one
        # compiled layout (C-contiguous, writeable float32) is not met.
        if nd is not None or x.dtype != _F32 or not x.flags.c_contiguous or not x.flags.writeable:
            x = np.array(x, dtype=_F32, order="C")
            if nd is not None:
                x[x == _F32(nd)] = _NAN
        args.append(x)
    kernels = None if method == "numpy" else _numba_kernels()
    if kernels is None:
        return d.reference(*args, halo=halo)
    h, w = args[0].shape[0] - 2 * halo, args[0].shape[1] - 2 * halo
    out = np.empty((max(h, 0), max(w, 0)), dtype=_F32)
    kernels[2](args[0], args[1], args[2], halo, out)
    return out


def _compute_numpy(tiles, defs, roles, savi_l, sar_db, no_data) -> dict[str, np.ndarray]:
    args: dict[str, np.ndarray] = {}
    for r in roles:
        # A copy where no-data or negative intensity is overwritten below; else read as given
        # (the reference functions and catalogue formulas never write their inputs).
        x = np.array(tiles[r], dtype=_F32) if r in no_data or (r in S1_ROLES and not sar_db[r]) else \
            np.asarray(tiles[r], dtype=_F32)
        if r in no_data:
            x[x == _F32(no_data[r])] = _NAN
        key = r.lower()
        if r in S1_ROLES:
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                if sar_db[r]:
                    args[key + "_db"] = x
                    args[key] = np.power(_F32(10), x / _F32(10)).astype(_F32)
                else:
                    x[x < 0] = _NAN  # negative intensity is not a measurement
                    args[key] = x
                    args[key + "_db"] = np.where(x > 0, _F32(10) * np.log10(x), _NAN).astype(_F32)
        else:
            args[key] = x
    out = {}
    for d in defs:
        kw = {a: args[a] for a in d.args}
        if d is INDICES["SAVI"]:
            kw["savi_l"] = savi_l
        res = np.asarray(d.reference(**kw), dtype=_F32)
        if any(np.may_share_memory(res, a) for a in kw.values() if isinstance(a, np.ndarray)):
            res = res.copy()  # VV_db of a dB tile is the tile: an output never aliases an input
        out[d.name] = res
    return out


def _compute_numba(kernels, tiles, defs, roles, savi_l, sar_db, no_data, parallel, out) -> dict[str, np.ndarray]:
    empty = np.empty((0, 0), _F32)
    arrays = []
    for r in ROLES:
        if r in roles:
            x = np.ascontiguousarray(tiles[r], dtype=_F32)
            if not x.flags.writeable:  # numba compiles read-only arrays separately
                x = x.copy()
            arrays.append(x)
        else:
            arrays.append(empty)
    nd = np.array([no_data.get(r, np.nan) for r in ROLES], dtype=_F32)
    db = np.array([bool(sar_db.get(r, False)) for r in S1_ROLES], dtype=np.bool_)
    has_sar = any(r in S1_ROLES for r in roles)
    codes = np.array([d.code for d in defs], dtype=np.int64)
    on_main = threading.current_thread() is threading.main_thread()
    kernel = kernels[1] if parallel and on_main else kernels[0]
    kernel(codes, _F32(savi_l), *arrays, nd, db, has_sar, out)
    return {d.name: out[k] for k, d in enumerate(defs)}


# --- fused kernel ----------------------------------------------------------
# Plain Python until _numba_kernels() compiles them; the row helpers become
# numba-callable through register_jitable, so numba is imported only then.
# Each index is one branch-free inner loop over a row whose inputs stay in
# cache, so every input pixel is read from memory once and no full-size
# temporary exists.

_prange = range  # numba.prange once numba is loaded


def _ld(x, i, j, nd):
    v = x[i, j]
    if v == nd:
        return _NAN
    return v


def _nd1(a, b):
    d = a + b
    r = (a - b) / d
    if d == 0:
        return _NAN
    return r


def _div1(a, b):
    r = a / b
    if b == 0:
        return _NAN
    return r


def _sar_rows(i, vv, vh, nd, db, buf):
    # buf rows: 0 VV linear, 1 VH linear, 2 VV dB, 3 VH dB
    w = buf.shape[1]
    for p in range(2):
        x = vv if p == 0 else vh
        if x.shape[0] == 0:
            continue
        ndp = nd[6 + p]
        if db[p]:
            for j in range(w):
                v = _ld(x, i, j, ndp)
                buf[2 + p, j] = v
                buf[p, j] = np.exp(v * _DB_TO_LN)
        else:
            for j in range(w):
                v = _ld(x, i, j, ndp)
                if v < 0:
                    v = _NAN
                buf[p, j] = v
                d = _F32(10) * np.log10(v)
                if not v > 0:
                    d = _NAN
                buf[2 + p, j] = d


def _index_row(c, i, o, L, b2, b3, b4, b8, b11, b12, nd, s):
    w = o.shape[0]
    n2, n3, n4, n8, n11, n12 = nd[0], nd[1], nd[2], nd[3], nd[4], nd[5]
    if c == 0:  # NDVI
        for j in range(w):
            o[j] = _nd1(_ld(b8, i, j, n8), _ld(b4, i, j, n4))
    elif c == 1:  # NDWI
        for j in range(w):
            o[j] = _nd1(_ld(b3, i, j, n3), _ld(b8, i, j, n8))
    elif c == 2:  # MNDWI
        for j in range(w):
            o[j] = _nd1(_ld(b3, i, j, n3), _ld(b11, i, j, n11))
    elif c == 3:  # SAVI
        for j in range(w):
            a = _ld(b8, i, j, n8)
            b = _ld(b4, i, j, n4)
            o[j] = _div1((_F32(1) + L) * (a - b), a + b + L)
    elif c == 4:  # MSAVI2
        for j in range(w):
            a = _ld(b8, i, j, n8)
            b = _ld(b4, i, j, n4)
            t = _F32(2) * a + _F32(1)
            o[j] = (t - np.sqrt(t * t - _F32(8) * (a - b))) / _F32(2)
    elif c == 5:  # NDBI
        for j in range(w):
            o[j] = _nd1(_ld(b11, i, j, n11), _ld(b8, i, j, n8))
    elif c == 6:  # BSI
        for j in range(w):
            o[j] = _nd1(_ld(b11, i, j, n11) + _ld(b4, i, j, n4), _ld(b8, i, j, n8) + _ld(b2, i, j, n2))
    elif c == 7:  # NDMI
        for j in range(w):
            o[j] = _nd1(_ld(b8, i, j, n8), _ld(b11, i, j, n11))
    elif c == 8:  # NDTI
        for j in range(w):
            o[j] = _nd1(_ld(b4, i, j, n4), _ld(b3, i, j, n3))
    elif c == 9:  # AWEI_nsh
        for j in range(w):
            o[j] = _F32(4) * (_ld(b3, i, j, n3) - _ld(b11, i, j, n11)) - (
                _F32(0.25) * _ld(b8, i, j, n8) + _F32(2.75) * _ld(b12, i, j, n12)
            )
    elif c == 10:  # AWEI_sh
        for j in range(w):
            o[j] = (
                _ld(b2, i, j, n2)
                + _F32(2.5) * _ld(b3, i, j, n3)
                - _F32(1.5) * (_ld(b8, i, j, n8) + _ld(b11, i, j, n11))
                - _F32(0.25) * _ld(b12, i, j, n12)
            )
    elif c == 11:  # BI
        for j in range(w):
            r = _ld(b4, i, j, n4)
            g = _ld(b3, i, j, n3)
            o[j] = np.sqrt((r * r + g * g) / _F32(2))
    elif c == 12:  # BI2
        for j in range(w):
            r = _ld(b4, i, j, n4)
            g = _ld(b3, i, j, n3)
            n = _ld(b8, i, j, n8)
            o[j] = np.sqrt((r * r + g * g + n * n) / _F32(3))
    elif c == 13:  # CMR
        for j in range(w):
            o[j] = _div1(_ld(b11, i, j, n11), _ld(b12, i, j, n12))
    elif c == 14:  # IOR
        for j in range(w):
            o[j] = _div1(_ld(b4, i, j, n4), _ld(b2, i, j, n2))
    elif c == 15:  # VV_db
        for j in range(w):
            o[j] = s[2, j]
    elif c == 16:  # VH_db
        for j in range(w):
            o[j] = s[3, j]
    elif c == 17:  # VV_lin
        for j in range(w):
            o[j] = s[0, j]
    elif c == 18:  # VH_lin
        for j in range(w):
            o[j] = s[1, j]
    elif c == 19:  # RVI
        for j in range(w):
            o[j] = _div1(_F32(4) * s[1, j], s[0, j] + s[1, j])
    elif c == 20:  # CR
        for j in range(w):
            o[j] = _div1(s[1, j], s[0, j])
    elif c == 21:  # CR_db
        for j in range(w):
            o[j] = s[3, j] - s[2, j]
    elif c == 22:  # SBI
        for j in range(w):
            o[j] = (s[2, j] + s[3, j]) / _F32(2)
    elif c == 23:  # NGBDI
        for j in range(w):
            o[j] = _nd1(_ld(b3, i, j, n3), _ld(b2, i, j, n2))


def _one_row(i, codes, L, b2, b3, b4, b8, b11, b12, vv, vh, nd, db, has_sar, out):
    w = out.shape[2]
    s = np.empty((4, w if has_sar else 0), dtype=np.float32)
    if has_sar:
        _sar_rows(i, vv, vh, nd, db, s)
    for k in range(codes.shape[0]):
        _index_row(codes[k], i, out[k, i], L, b2, b3, b4, b8, b11, b12, nd, s)


def _kernel_serial(codes, L, b2, b3, b4, b8, b11, b12, vv, vh, nd, db, has_sar, out):
    for i in range(out.shape[1]):
        _one_row(i, codes, L, b2, b3, b4, b8, b11, b12, vv, vh, nd, db, has_sar, out)


def _kernel_parallel(codes, L, b2, b3, b4, b8, b11, b12, vv, vh, nd, db, has_sar, out):
    for i in _prange(out.shape[1]):
        _one_row(i, codes, L, b2, b3, b4, b8, b11, b12, vv, vh, nd, db, has_sar, out)


def _pantex_kernel(b2, b3, b4, halo, out):
    # Window sums in int32: a pair adds 2**24 plus its squared brightness
    # difference (a whole number <= 500**2), or 0 when an end is NaN, so one sum
    # holds the pair count (bits 24-29) and the sum of squares (bits 0-23): 49
    # pairs stay below 2**31 and every sum is exact in any order. Columns: the
    # sums over the 7 rows of pair origins, updated per row from a ring of the
    # last 8 rows of pairs (the row that leaves is subtracted, not recomputed);
    # rows: 7-term sums of the column sums. All four directions advance row by
    # row together. The mean is the float32 quotient s / c, which is the numpy
    # reference's float64 quotient rounded to float32, and the minimum of the
    # rounded means is the rounded minimum. The np.int32 casts keep the integer
    # vectors 32-bit wide (numba widens int32 arithmetic to int64 otherwise).
    i32 = np.int32
    h, w = out.shape
    if h <= 0 or w <= 0:
        return
    k = 2 * _PANTEX_R + 1
    y0 = halo - _PANTEX_R
    x0 = halo - _PANTEX_R
    n = w + k - 1
    W = b2.shape[1]
    cap = _PANTEX_CAP
    one = i32(1 << 24)
    low = i32((1 << 24) - 1)
    inf = np.float32(np.inf)
    nan = np.float32(np.nan)
    units3 = np.float32(3 * _PANTEX_UNITS)
    # Brightness in whole steps (NaN, inf kept) of pair-origin row y0 + t in v[t & 7]:
    # rows t and t + 1 for the pairs, t - 3 for the window centre.
    v = np.empty((8, W), dtype=np.float32)
    ring = np.zeros((4, 8, n), dtype=np.int32)
    col = np.zeros((4, n), dtype=np.int32)
    best = np.empty(w, dtype=np.float32)
    for step in range(-1, h + k - 1):
        r2 = b2[y0 + step + 1]
        r3 = b3[y0 + step + 1]
        r4 = b4[y0 + step + 1]
        vy = v[(step + 1) & 7]
        for x in range(W):
            vy[x] = np.round((r2[x] + r3[x] + r4[x]) * _PANTEX_UNITS)
        if step < 0:
            continue
        # pair-origin row y0 + step enters the column sums, row y0 + step - k leaves them
        for di in range(4):
            dy = 0 if di == 0 else 1
            dx = 1 if di == 0 else (0 if di == 1 else (1 if di == 2 else -1))
            a = v[step & 7, x0:x0 + n]
            b = v[(step + dy) & 7, x0 + dx:x0 + dx + n]
            new = ring[di, step & 7]
            old = ring[di, (step + 1) & 7]  # the pairs of k = 7 steps ago (zeros before)
            c = col[di]
            for x in range(n):
                d = min(abs(b[x] - a[x]), cap)  # NaN stays NaN, inf becomes the cap
                p = i32(d * d) + one
                p = p if d == d else i32(0)
                c[x] = i32(c[x] + i32(p - old[x]))
                new[x] = p
        if step < k - 1:
            continue
        i = step - (k - 1)
        for di in range(4):
            c = col[di]
            for j in range(w):
                s = i32(i32(i32(c[j] + c[j + 1]) + i32(c[j + 2] + c[j + 3]))
                        + i32(i32(c[j + 4] + c[j + 5]) + c[j + 6]))
                cnt = i32(s >> 24)
                m = np.float32(i32(s & low)) / np.float32(cnt) if cnt > 0 else inf
                if di == 0 or m < best[j]:
                    best[j] = m
        centre = v[(step - _PANTEX_R) & 7, x0 + _PANTEX_R:x0 + _PANTEX_R + w]
        o = out[i]
        for j in range(w):
            bj = best[j]
            cv = centre[j]
            o[j] = np.sqrt(bj) / units3 if (cv - cv == 0 and bj < inf) else nan


_kernels: tuple | None = None
_lock = threading.Lock()


def _numba_kernels():
    """``(serial, parallel, texture)`` numba dispatchers, compiled on first use (numba is a dependency)."""
    global _kernels, _prange
    if _kernels is not None:
        return _kernels
    with _lock:
        if _kernels is not None:
            return _kernels
        import numba
        from numba.extending import register_jitable

        for f in (_ld, _nd1, _div1, _sar_rows, _index_row, _one_row):
            register_jitable(f)
        _prange = numba.prange
        # PANTEX sums whole numbers below 2**24 only, so reassociating them
        # (for SIMD) cannot change a result.
        _kernels = (compile_now(_kernel_serial, error_model="numpy"),
                    compile_now(_kernel_parallel, error_model="numpy", parallel=True),
                    compile_now(_pantex_kernel, error_model="numpy", fastmath={"reassoc", "contract"}))
        return _kernels
