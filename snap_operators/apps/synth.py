"""Synthetic Sentinel-2 / Sentinel-1 scenes with known land-cover truth.

The scene is a square UTM grid (default near Mosul, Iraq, 10 m pixels) with a
meandering river (water) lined by wet alluvium banks and riparian trees, a city
with a road grid plus a few villages (urban), and a patchwork of fields that
are either vegetated or bare soil. Every pixel value is a pure function of its
global ``(row, col)``, the scene `size` and the `seed`, so any window of the
scene can be computed on its own and a scene written in blocks of any size is
the same scene. Spectra and backscatter values, their sources and the noise
model are documented in ``docs/synthetic.md``.

:func:`synthetic_arrays` computes one window in memory;
:func:`write_synthetic_scene` streams a whole scene to GeoTIFFs
(``s2.tif``, ``s1.tif``, ``truth.tif``) window by window.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from tqdm.auto import tqdm

from ..core.errors import ProductWriteError, SnapPcError
from ..core.legend import CLASS_NAMES as _CLASS_NAMES
from ..core.legend import LAND_COVER
from ..core.outputs import staged_outputs
from ..core.product import ClassInfo  # noqa: F401  (re-exported for callers)

__all__ = [
    "S2_BANDS",
    "S2_WAVELENGTHS_NM",
    "S1_BANDS",
    "TRUTH_BAND",
    "TRUTH_CLASSES",
    "CLASS_NAMES",
    "MIN_SIZE",
    "LandChange",
    "SynthParameterError",
    "synthetic_arrays",
    "write_synthetic_scene",
]


class SynthParameterError(SnapPcError, ValueError):
    """An argument of the synthetic-scene generator is invalid."""


#: Sentinel-2 bands written to ``s2.tif``, in file order.
S2_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
#: Nominal central wavelengths (nm) of :data:`S2_BANDS`.
S2_WAVELENGTHS_NM = (490.0, 560.0, 665.0, 705.0, 740.0, 783.0, 842.0, 865.0, 1610.0, 2190.0)
#: Sentinel-2A bandwidths (FWHM, nm) of :data:`S2_BANDS`.
S2_FWHM_NM = (66.0, 36.0, 31.0, 15.0, 15.0, 20.0, 106.0, 21.0, 91.0, 175.0)
#: Sentinel-1 bands written to ``s1.tif`` (sigma0 in dB).
S1_BANDS = ("Sigma0_VV_db", "Sigma0_VH_db")
#: Name (band description) of the class band in ``truth.tif``.
TRUTH_BAND = "truth"
#: Smallest scene edge (pixels) the generator accepts.
MIN_SIZE = 64

WATER, BARE_SOIL, TREES, URBAN, ALLUVIUM = 1, 2, 3, 4, 5
#: The five truth classes (value, name, display color).
TRUTH_CLASSES = LAND_COVER  # the project's legend: one set of ids, names and colors
CLASS_NAMES = dict(_CLASS_NAMES)

#: Acquisition times written as dataset tags (UTC, ISO 8601); a summer
#: morning Sentinel-2 overpass and an evening ascending Sentinel-1 pass.
S2_START_TIME = "2023-07-10T07:46:21.024Z"
S1_START_TIME = "2023-07-10T15:02:31.512Z"
S1_STOP_TIME = "2023-07-10T15:02:56.511Z"

# --- materials ------------------------------------------------------------
# Spectral end-members; two of them (roofs, roads) belong to one class.
_M_WATER, _M_SOIL, _M_TREES, _M_ROOF, _M_ROAD, _M_ALLUVIUM = range(6)
_MATERIAL_CLASS = np.array([WATER, BARE_SOIL, TREES, URBAN, URBAN, ALLUVIUM], dtype=np.uint8)
#: The material a :class:`LandChange` gives to pixels turned into a class.
_CLASS_MATERIAL = {WATER: _M_WATER, BARE_SOIL: _M_SOIL, TREES: _M_TREES, URBAN: _M_ROOF, ALLUVIUM: _M_ALLUVIUM}


@dataclass(frozen=True)
class LandChange:
    """A known land-cover change painted onto the scene (for change-detection tests).

    Pixels inside the rectangle ``rows`` x ``cols`` (global pixel indices,
    end-exclusive) whose truth class is `from_class` (any class when None)
    become `to_class`, with that class's spectra and backscatter.

    Examples
    --------
    >>> clearing = LandChange(rows=(0, 64), cols=(0, 64), to_class=2, from_class=3)  # trees cut
    >>> flood = LandChange(rows=(100, 120), cols=(0, 256), to_class=1)  # everything under water
    """

    rows: tuple[int, int]
    cols: tuple[int, int]
    to_class: int
    from_class: int | None = None

#: Mean surface reflectance (0-1) per material (rows) and band (S2_BANDS);
#: sources in docs/synthetic.md.
_REFLECTANCE = np.array(
    [
        # B2     B3     B4     B5     B6     B7     B8     B8A    B11    B12
        [0.050, 0.066, 0.052, 0.040, 0.024, 0.020, 0.018, 0.015, 0.006, 0.004],  # water
        [0.120, 0.170, 0.225, 0.255, 0.275, 0.290, 0.305, 0.315, 0.380, 0.335],  # dry soil
        [0.030, 0.060, 0.035, 0.095, 0.240, 0.300, 0.320, 0.335, 0.170, 0.080],  # trees
        [0.180, 0.200, 0.215, 0.225, 0.235, 0.245, 0.255, 0.260, 0.300, 0.280],  # roofs
        [0.090, 0.100, 0.110, 0.115, 0.120, 0.125, 0.130, 0.132, 0.160, 0.150],  # roads
        [0.075, 0.095, 0.115, 0.130, 0.140, 0.148, 0.155, 0.160, 0.175, 0.135],  # alluvium
    ],
    dtype=np.float32,
)
#: Mean sigma0 (dB) per material: columns VV, VH.
_SIGMA0_DB = np.array(
    [[-21.0, -27.0], [-14.0, -22.5], [-7.5, -13.5], [-4.0, -11.5], [-11.0, -18.0], [-10.5, -18.5]],
    dtype=np.float32,
)
#: Pixel-to-pixel texture (standard deviation, dB) of sigma0 per material,
#: before speckle: point scatterers make built-up areas the most variable.
_TEXTURE_DB = np.array([1.0, 1.5, 1.0, 3.0, 2.0, 1.5], dtype=np.float32)

# --- imperfections (opt-in: what the rules cannot classify) ----------------
#: Reflectance of the haze layer per band (thin cloud and aerosol: bright, a little bluish, less in the SWIR).
_HAZE_REFLECTANCE = np.array([0.32, 0.30, 0.29, 0.28, 0.28, 0.27, 0.27, 0.27, 0.22, 0.18], dtype=np.float32)
#: Largest fraction of the ground signal the haze replaces.
_HAZE_MAX = 0.35
#: Feature size of the haze field (scene units) and the share of its values left clear.
_HAZE_SPACING, _HAZE_CLEAR = 0.3, 0.55

# --- noise model ----------------------------------------------------------
_SPECTRAL_NOISE_REL = 0.02  # per-pixel, per-band relative noise (1 sigma)
_SPECTRAL_NOISE_ABS = 0.0015  # per-pixel additive noise floor (reflectance)
_ENL = 4.4  # equivalent number of looks of Sentinel-1 IW GRDH
_REFLECTANCE_QUANTUM = 1e-4  # Sentinel-2 L2A stores reflectance as DN / 10000

# --- geometry (pixels unless noted) ---------------------------------------
_NOISE_TILE = 256  # random noise is drawn in fixed tiles of the global grid
_PARCEL_H, _PARCEL_W = 40, 64  # field parcels (400 m x 640 m)
_BLOCK_PITCH, _ROAD_W = 14, 2  # city blocks 140 m apart, 20 m streets
_AVENUE_EVERY, _AVENUE_W = 6, 4  # every 6th street is a 40 m avenue

_U64 = np.uint64
_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------
# hashing and noise fields
# --------------------------------------------------------------------------
def _mix64(x: int) -> int:
    """SplitMix64 finalizer of a Python int (64-bit)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _stream_key(seed: int, stream: int) -> int:
    """A 64-bit key for one independent random stream of a scene."""
    return _mix64(_mix64(seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) ^ (stream * 0xD1B54A32D192ED03))


def _hash_u64(i: np.ndarray, j: np.ndarray, key: int) -> np.ndarray:
    """Vectorized 64-bit hash of integer lattice coordinates ``(i, j)``."""
    with np.errstate(over="ignore"):
        z = (np.asarray(i, dtype=np.int64).astype(_U64) * _U64(0x9E3779B97F4A7C15)) ^ (
            np.asarray(j, dtype=np.int64).astype(_U64) * _U64(0xC2B2AE3D27D4EB4F)
        )
        z ^= _U64(key)
        z ^= z >> _U64(30)
        z *= _U64(0xBF58476D1CE4E5B9)
        z ^= z >> _U64(27)
        z *= _U64(0x94D049BB133111EB)
        z ^= z >> _U64(31)
    return z


def _uniform_pair(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent float32 uniforms in [0, 1) from the halves of hash `z`."""
    scale = np.float32(2.0**-24)
    hi = (z >> _U64(40)).astype(np.float32) * scale
    lo = ((z >> _U64(8)) & _U64(0xFFFFFF)).astype(np.float32) * scale
    return hi, lo


def _value_noise(y: np.ndarray, x: np.ndarray, spacing: float, key: int) -> np.ndarray:
    """Smooth value noise in [0, 1] on the grid ``y`` (rows) x ``x`` (cols).

    Parameters
    ----------
    y, x : numpy.ndarray
        1-D coordinates of the rows and columns, any unit.
    spacing : float
        Lattice spacing in the unit of `y` and `x` (feature size).
    key : int
        Stream key; different keys give independent fields.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(len(y), len(x))``.
    """
    fy, fx = y / spacing, x / spacing
    iy, ix = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
    ty, tx = fy - iy, fx - ix
    wy = (ty * ty * (3.0 - 2.0 * ty)).astype(np.float32)[:, None]
    wx = (tx * tx * (3.0 - 2.0 * tx)).astype(np.float32)
    i0, j0 = int(iy.min()), int(ix.min())
    ii = np.arange(i0, int(iy.max()) + 2)[:, None]
    jj = np.arange(j0, int(ix.max()) + 2)[None, :]
    lattice, _ = _uniform_pair(_hash_u64(ii, jj, key))
    # Separable interpolation: along x for each lattice row, then along y.
    cx = ix - j0
    along_x = lattice[:, cx] * (1.0 - wx) + lattice[:, cx + 1] * wx
    ry = iy - i0
    return along_x[ry] * (1.0 - wy) + along_x[ry + 1] * wy


def _noise_tiles(seed: int, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel random numbers of a window, drawn tile by tile.

    Each ``_NOISE_TILE``-square tile of the global grid has its own Philox
    counter, so a pixel's numbers do not depend on which window asks for them.

    Returns
    -------
    normal : numpy.ndarray
        float32 ``(12, h, w)`` standard normals: 10 spectral bands, then the
        VV and VH texture.
    speckle : numpy.ndarray
        float32 ``(2, h, w)`` unit-mean Gamma(ENL) intensity speckle (VV, VH).
    """
    h, w = rows.stop - rows.start, cols.stop - cols.start
    normal = np.empty((12, h, w), dtype=np.float32)
    speckle = np.empty((2, h, w), dtype=np.float32)
    key = _stream_key(seed, 1)
    t = _NOISE_TILE
    for tr in range(rows.start // t, (rows.stop - 1) // t + 1):
        for tc in range(cols.start // t, (cols.stop - 1) // t + 1):
            gen = np.random.Generator(np.random.Philox(key=key, counter=[0, 0, tr, tc]))
            tile_n = gen.standard_normal((12, t, t), dtype=np.float32)
            tile_s = gen.standard_gamma(_ENL, (2, t, t), dtype=np.float32)
            r0, r1 = max(rows.start, tr * t), min(rows.stop, (tr + 1) * t)
            c0, c1 = max(cols.start, tc * t), min(cols.stop, (tc + 1) * t)
            src = (slice(None), slice(r0 - tr * t, r1 - tr * t), slice(c0 - tc * t, c1 - tc * t))
            dst = (slice(None), slice(r0 - rows.start, r1 - rows.start), slice(c0 - cols.start, c1 - cols.start))
            normal[dst] = tile_n[src]
            speckle[dst] = tile_s[src]
    speckle *= np.float32(1.0 / _ENL)
    return normal, speckle


# --------------------------------------------------------------------------
# scene layout
# --------------------------------------------------------------------------
def _scene_parameters(seed: int) -> dict[str, Any]:
    """Large-scale layout drawn from `seed` (normalized scene units 0..1)."""
    rng = np.random.default_rng([seed, 0x5EED])
    river = dict(
        a1=rng.uniform(0.08, 0.14), f1=rng.uniform(0.7, 1.3), p1=rng.uniform(0, 1),
        a2=rng.uniform(0.02, 0.05), f2=rng.uniform(2.0, 3.5), p2=rng.uniform(0, 1),
    )
    cy = rng.uniform(0.3, 0.7)
    city = dict(cy=cy, dx=rng.uniform(-0.06, 0.12) * rng.choice([-1.0, 1.0]), radius=rng.uniform(0.2, 0.25))
    villages = [
        dict(cy=rng.uniform(0.1, 0.9), side=rng.choice([-1.0, 1.0]), dist=rng.uniform(0.2, 0.35),
             radius=rng.uniform(0.04, 0.06))
        for _ in range(2)
    ]
    return dict(river=river, city=city, villages=villages)


def _river_centre(v: np.ndarray, p: dict[str, float], seed: int) -> np.ndarray:
    """Column (normalized) of the river centre line at rows `v` (normalized)."""
    wiggle = _value_noise(v, np.zeros(1), 0.25, _stream_key(seed, 10))[:, 0] - 0.5
    return (
        0.5
        + p["a1"] * np.sin(2 * np.pi * (p["f1"] * v + p["p1"]))
        + p["a2"] * np.sin(2 * np.pi * (p["f2"] * v + p["p2"]))
        + 0.06 * wiggle
    )


def _fields(size: int, seed: int, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Field parcels of rows `r` x cols `c` (pixel indices): material, brightness, SAR offset.

    Parcels are ``_PARCEL_H`` x ``_PARCEL_W`` pixels, each parcel row shifted
    by its own random offset (a staggered pattern). A parcel is vegetated
    when its random number is below a regional probability taken at the
    parcel centre, so parcels are never split.
    """
    prow = (r // _PARCEL_H).astype(np.int64)
    shift_u, _ = _uniform_pair(_hash_u64(prow, np.zeros_like(prow), _stream_key(seed, 20)))
    shift = np.floor(shift_u * _PARCEL_W).astype(np.int64)
    ci = c.astype(np.int64)
    material = np.empty((r.size, c.size), dtype=np.uint8)
    brightness = np.empty((r.size, c.size), dtype=np.float32)
    sar_offset = np.empty((r.size, c.size), dtype=np.float32)
    starts = np.flatnonzero(np.r_[True, prow[1:] != prow[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], prow.size]):
        pr, s = prow[a], shift[a]
        pcol = (ci + s) // _PARCEL_W
        ids = np.arange(pcol[0], pcol[-1] + 1)
        centre_y = np.array([(pr + 0.5) * _PARCEL_H / size])
        centre_x = ((ids + 0.5) * _PARCEL_W - s) / size
        p_veg = 0.08 + 0.5 * _value_noise(centre_y, centre_x, 0.3, _stream_key(seed, 22))[0]
        pu, pb = _uniform_pair(_hash_u64(np.full_like(ids, pr), ids, _stream_key(seed, 21)))
        k = pcol - ids[0]
        material[a:b] = np.where(pu < p_veg, _M_TREES, _M_SOIL).astype(np.uint8)[k]
        brightness[a:b] = (0.9 + 0.2 * pb)[k]
        sar_offset[a:b] = (3.0 * (pu - 0.5))[k]  # field roughness / moisture
    return material, brightness, sar_offset


def _material_map(
    size: int, seed: int, rows: slice, cols: slice, changes: Sequence[LandChange] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Material index, optical brightness factor and SAR offset (dB) of a window.

    Returns
    -------
    material : numpy.ndarray
        uint8 ``(h, w)`` indices into the material tables.
    brightness : numpy.ndarray
        float32 ``(h, w)`` multiplicative reflectance factor (patch variation).
    sar_offset : numpy.ndarray
        float32 ``(h, w)`` per-patch backscatter offset in dB.
    """
    par = _scene_parameters(seed)
    r = np.arange(rows.start, rows.stop, dtype=np.float64)
    c = np.arange(cols.start, cols.stop, dtype=np.float64)
    v, u = (r + 0.5) / size, (c + 0.5) / size  # normalized scene coordinates

    def key(stream: int) -> int:
        return _stream_key(seed, stream)

    # River: horizontal distance to a meandering centre line; banks and
    # riparian trees at distances that vary slowly along the river.
    xc = _river_centre(v, par["river"], seed).astype(np.float32)
    edge = (_value_noise(r, c, 12.0, key(11)) - 0.5) * np.float32(6.0 / size)  # +-3 px ragged edges
    d = np.abs(u.astype(np.float32)[None, :] - xc[:, None]) + edge
    half_width = 0.028 * (0.8 + 0.4 * _value_noise(v, np.zeros(1), 0.2, key(12)))  # (h, 1)
    bank = half_width + 0.03 * (0.6 + 0.8 * _value_noise(v, u, 0.15, key(13)))
    riparian = bank + 0.045 * (0.3 + 1.4 * _value_noise(v, u, 0.12, key(14)))

    # Fields: staggered parcels, vegetated with a regionally varying probability.
    material, brightness, sar_offset = _fields(size, seed, r, c)

    # Settlements: a city beside (or across) the river and two villages.
    urban = np.zeros(material.shape, dtype=bool)
    city = par["city"]
    cx = float(_river_centre(np.array([city["cy"]]), par["river"], seed)[0]) + city["dx"]
    towns = [(city["cy"], cx, city["radius"])]
    for vil in par["villages"]:
        vx = float(_river_centre(np.array([vil["cy"]]), par["river"], seed)[0])
        towns.append((vil["cy"], vx + vil["side"] * vil["dist"], vil["radius"]))
    outline = 0.75 + 0.5 * _value_noise(v, u, 0.1, key(30))
    for ty, tx, radius in towns:
        dist2 = (v[:, None] - ty) ** 2 + (u[None, :] - tx) ** 2
        urban |= dist2 < (radius * outline) ** 2
    ri = (r.astype(np.int64) % (_BLOCK_PITCH * _AVENUE_EVERY))[:, None]
    ci = (c.astype(np.int64) % (_BLOCK_PITCH * _AVENUE_EVERY))[None, :]
    road = ((ri % _BLOCK_PITCH) < _ROAD_W) | ((ci % _BLOCK_PITCH) < _ROAD_W) | (ri < _AVENUE_W) | (ci < _AVENUE_W)
    block_u, block_b = _uniform_pair(
        _hash_u64((r // _BLOCK_PITCH).astype(np.int64)[:, None], (c // _BLOCK_PITCH).astype(np.int64)[None, :], key(31))
    )
    block_material = np.where(block_u < 0.10, _M_TREES, np.where(block_u < 0.16, _M_SOIL, _M_ROOF))
    town_material = np.where(road, _M_ROAD, block_material).astype(np.uint8)
    material = np.where(urban, town_material, material)
    brightness = np.where(urban & ~road, 0.85 + 0.3 * block_b, brightness)
    sar_offset = np.where(urban & ~road, 4.0 * (block_b - 0.5), sar_offset)  # street orientation

    # The river corridor overrides everything (parks along the river in town).
    material[d < riparian] = _M_TREES
    material[d < bank] = _M_ALLUVIUM
    material[d < half_width] = _M_WATER
    corridor = d < riparian
    brightness = np.where(corridor, 1.0, brightness)
    sar_offset = np.where(corridor, 0.0, sar_offset)

    # Known changes last, so they override the layout exactly inside their rectangles.
    for change in changes:
        inside = _rectangle_mask(change, rows, cols)
        if change.from_class is not None:
            inside &= _MATERIAL_CLASS[material] == change.from_class
        material = np.where(inside, np.uint8(_CLASS_MATERIAL[change.to_class]), material)

    # Smooth within-patch variation (moisture, turbidity, canopy density).
    brightness = brightness * (0.94 + 0.12 * _value_noise(r, c, 24.0, key(40)))
    return material, brightness.astype(np.float32), sar_offset.astype(np.float32)


def _rectangle_mask(change: LandChange, rows: slice, cols: slice) -> np.ndarray:
    """True where the window ``rows`` x ``cols`` lies inside the change's rectangle."""
    r = np.arange(rows.start, rows.stop)
    c = np.arange(cols.start, cols.stop)
    in_r = (r >= change.rows[0]) & (r < change.rows[1])
    in_c = (c >= change.cols[0]) & (c < change.cols[1])
    return in_r[:, None] & in_c[None, :]


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SynthParameterError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise SynthParameterError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_window(window: Any, size: int) -> tuple[slice, slice]:
    if window is None:
        return slice(0, size), slice(0, size)
    if isinstance(window, Window):
        window = window.toslices()
    try:
        rows, cols = window
        rows, cols = slice(*rows.indices(size)), slice(*cols.indices(size))
    except (TypeError, ValueError, AttributeError):
        raise SynthParameterError(f"window must be (rows, cols) slices, got {window!r}") from None
    for s in (rows, cols):
        if s.step != 1 or s.stop <= s.start:
            raise SynthParameterError(f"window must be non-empty slices with step 1 inside the {size} px scene")
    return rows, cols


def _check_changes(changes: Any) -> tuple[LandChange, ...]:
    try:
        changes = tuple(changes or ())
    except TypeError:
        raise SynthParameterError(f"changes must be a sequence of LandChange, got {changes!r}") from None
    for ch in changes:
        if not isinstance(ch, LandChange):
            raise SynthParameterError(f"changes must be LandChange objects, got {ch!r}")
        for cid in (ch.to_class, ch.from_class):
            if cid is not None and cid not in _CLASS_MATERIAL:
                raise SynthParameterError(f"LandChange class {cid!r} is not one of {sorted(_CLASS_MATERIAL)}")
        for name, (a, b) in (("rows", ch.rows), ("cols", ch.cols)):
            if not (isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)) and 0 <= a < b):
                raise SynthParameterError(f"LandChange {name} must be (start, stop) pixel indices, got {(a, b)!r}")
    return changes


def _haze(size: int, seed: int, rows: slice, cols: slice) -> np.ndarray:
    """Fraction of the ground signal the haze replaces, float32 ``(h, w)`` in [0, :data:`_HAZE_MAX`].

    A smooth field of a few patches covering about a third of the scene,
    fading in over a few hundred metres, as haze and thin cloud do.
    """
    v = (np.arange(rows.start, rows.stop, dtype=np.float64) + 0.5) / size
    u = (np.arange(cols.start, cols.stop, dtype=np.float64) + 0.5) / size
    field = _value_noise(v, u, _HAZE_SPACING, _stream_key(seed, 50))
    return (np.clip((field - _HAZE_CLEAR) / 0.2, 0.0, 1.0) * _HAZE_MAX).astype(np.float32)


def _blur_121(x: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    """The [1, 2, 1] / 4 filter along both axes (a pixel's footprint reaching into its neighbours).

    `x` carries a one-pixel halo on each side except where `pad` (top,
    bottom, left, right) is 1: there the scene ends and its edge is repeated.
    Returns the filtered interior.
    """
    top, bottom, left, right = pad
    x = np.pad(x, ((top, bottom), (left, right)), mode="edge")
    x = (x[:-2] + 2 * x[1:-1] + x[2:]) * np.float32(0.25)
    return (x[:, :-2] + 2 * x[:, 1:-1] + x[:, 2:]) * np.float32(0.25)


def synthetic_arrays(size: int, seed: int = 0, *, window: Any = None, changes: Sequence[LandChange] = (),
                     haze: bool = False, mixed_pixels: bool = False) -> dict[str, np.ndarray]:
    """Pixels of a window of the synthetic scene.

    Parameters
    ----------
    size : int
        Scene edge in pixels (the scene is ``size`` x ``size``), at least
        :data:`MIN_SIZE`.
    seed : int
        Non-negative scene seed.
    window : tuple of slice or rasterio.windows.Window, optional
        ``(rows, cols)`` of the scene to compute; default the whole scene.
        Negative or open-ended slices are resolved against `size`.
    changes : sequence of LandChange, optional
        Known changes painted over the scene (the same scene otherwise, noise
        included), e.g. the "after" scene of a change-detection test.
    haze : bool
        Haze patches over about a third of the scene: up to 35 % of each
        pixel's reflectance replaced by a bright haze layer, which lowers
        NDVI and the contrast between classes (the truth is the ground).
    mixed_pixels : bool
        Each pixel's spectrum mixes in its neighbours' ([1, 2, 1] / 4 along
        both axes, as a sensor footprint does), so pixels at class borders,
        streets and river banks are mixtures (the truth is the pixel's own
        class).

    Returns
    -------
    dict of str to numpy.ndarray
        ``B2`` ... ``B12`` (float32 surface reflectance, 0-1),
        ``Sigma0_VV_db`` and ``Sigma0_VH_db`` (float32, dB) and ``truth``
        (uint8 class ids 1-5), each of shape ``(rows, cols)`` of the window.
    """
    size = _check_int("size", size, MIN_SIZE)
    seed = _check_int("seed", seed, 0)
    rows, cols = _check_window(window, size)
    changes = _check_changes(changes)

    # Mixed pixels need the neighbours' spectra: a one-pixel halo inside the scene, the edge repeated outside.
    halo = int(mixed_pixels)
    outer = (slice(max(0, rows.start - halo), min(size, rows.stop + halo)),
             slice(max(0, cols.start - halo), min(size, cols.stop + halo)))
    pad = (halo - (rows.start - outer[0].start), halo - (outer[0].stop - rows.stop),
           halo - (cols.start - outer[1].start), halo - (outer[1].stop - cols.stop))
    material, brightness, sar_offset = _material_map(size, seed, *outer, changes)
    spectra_of = material, brightness
    inner = (slice(rows.start - outer[0].start, rows.stop - outer[0].start),
             slice(cols.start - outer[1].start, cols.stop - outer[1].start))
    material, brightness, sar_offset = material[inner], brightness[inner], sar_offset[inner]
    hazed = _haze(size, seed, rows, cols) if haze else None
    normal, speckle = _noise_tiles(seed, rows, cols)
    out: dict[str, np.ndarray] = {}
    for b, name in enumerate(S2_BANDS):
        mean = _REFLECTANCE[:, b][spectra_of[0]] * spectra_of[1]
        mean = _blur_121(mean, pad) if mixed_pixels else mean
        if hazed is not None:
            mean = mean * (1 - hazed) + hazed * _HAZE_REFLECTANCE[b]
        value = mean + (_SPECTRAL_NOISE_REL * mean + _SPECTRAL_NOISE_ABS) * normal[b]
        value = np.round(value * np.float32(1 / _REFLECTANCE_QUANTUM)) * np.float32(_REFLECTANCE_QUANTUM)
        out[name] = np.clip(value, np.float32(0.0), np.float32(1.0))
    texture = _TEXTURE_DB[material]
    for p, name in enumerate(S1_BANDS):
        db = _SIGMA0_DB[:, p][material] + sar_offset + texture * normal[10 + p]
        out[name] = (db + np.float32(10.0) * np.log10(np.maximum(speckle[p], np.float32(1e-6)))).astype(np.float32)
    out[TRUTH_BAND] = _MATERIAL_CLASS[material]
    return out


def _profiles(size: int, crs: CRS, transform: Affine) -> dict[str, dict[str, Any]]:
    common = dict(
        driver="GTiff", width=size, height=size, crs=crs, transform=transform,
        tiled=True, blockxsize=512, blockysize=512, compress="deflate",
        BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS", ZLEVEL=1,
        # Band-interleaved like the per-band files of a real product: reading
        # two bands must not decompress all ten.
        INTERLEAVE="BAND",
    )
    return {
        "s2": dict(common, count=len(S2_BANDS), dtype="float32", nodata=float("nan"), predictor=3),
        "s1": dict(common, count=len(S1_BANDS), dtype="float32", nodata=float("nan"), predictor=3),
        "truth": dict(common, count=1, dtype="uint8", predictor=2),
    }


def _describe(datasets: dict[str, Any], size: int, seed: int, changes: Sequence[LandChange] = (),
              effects: dict[str, bool] | None = None) -> None:
    """Band names, units, tags and the class color table."""
    provenance = dict(SYNTHETIC_SEED=str(seed), SYNTHETIC_SIZE=str(size), SYNTHETIC_GENERATOR="snap_operators.apps.synth")
    provenance.update({f"SYNTHETIC_{k.upper()}": "true" for k in effects or {}})
    if changes:
        provenance["SYNTHETIC_CHANGES"] = json.dumps(
            [{"rows": list(c.rows), "cols": list(c.cols), "to_class": c.to_class, "from_class": c.from_class}
             for c in changes])
    s2 = datasets["s2"]
    s2.update_tags(PRODUCT_TYPE="SYNTHETIC_S2", PRODUCT_START_TIME=S2_START_TIME, PRODUCT_STOP_TIME=S2_START_TIME,
                   MISSION="SENTINEL-2 (synthetic)", **provenance)
    for i, (name, wl, fwhm) in enumerate(zip(S2_BANDS, S2_WAVELENGTHS_NM, S2_FWHM_NM), start=1):
        s2.set_band_description(i, name)
        s2.set_band_unit(i, "1")
        s2.update_tags(i, WAVELENGTH=f"{wl:g}", WAVELENGTH_UNIT="nm", BANDWIDTH=f"{fwhm:g}",
                       DESCRIPTION=f"surface reflectance, {wl:g} nm")
        s2.update_tags(i, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=f"{wl / 1000:g}", FWHM_UM=f"{fwhm / 1000:g}")
    s1 = datasets["s1"]
    s1.update_tags(PRODUCT_TYPE="SYNTHETIC_S1", PRODUCT_START_TIME=S1_START_TIME, PRODUCT_STOP_TIME=S1_STOP_TIME,
                   MISSION="SENTINEL-1 (synthetic)", **provenance)
    for i, name in enumerate(S1_BANDS, start=1):
        s1.set_band_description(i, name)
        s1.set_band_unit(i, "dB")
        s1.update_tags(i, DESCRIPTION=f"sigma0 {name.split('_')[1]} in dB, {_ENL:g} looks")
    truth = datasets["truth"]
    truth.update_tags(PRODUCT_TYPE="SYNTHETIC_TRUTH", PRODUCT_START_TIME=S2_START_TIME, **provenance)
    truth.set_band_description(1, TRUTH_BAND)
    truth.update_tags(1, CLASS_NAMES=json.dumps({str(k.value): k.name for k in TRUTH_CLASSES}),
                      DESCRIPTION="land-cover class id (no unclassified pixels)")
    colormap = {v: (0, 0, 0, 0) for v in range(256)}
    colormap.update({k.value: (*k.color, 255) for k in TRUTH_CLASSES})
    truth.write_colormap(1, colormap)


def _windows(size: int, block: int) -> list[tuple[slice, slice]]:
    return [
        (slice(r, min(r + block, size)), slice(c, min(c + block, size)))
        for r in range(0, size, block)
        for c in range(0, size, block)
    ]


def write_synthetic_scene(
    out_dir: str | os.PathLike,
    size: int,
    seed: int = 0,
    *,
    block: int = 1024,
    progress: bool = False,
    crs: Any = "EPSG:32638",
    origin: tuple[float, float] = (300000.0, 4030000.0),
    resolution: float = 10.0,
    changes: Sequence[LandChange] = (),
    haze: bool = False,
    mixed_pixels: bool = False,
) -> dict[str, Path]:
    """Write a synthetic scene as ``s2.tif``, ``s1.tif`` and ``truth.tif``.

    The scene is computed in ``block`` x ``block`` windows (at most a few of
    them in memory at once, computed on a small thread pool), so memory does
    not grow with `size`. Files are written under temporary names in
    `out_dir` and renamed when all three are complete; existing files of the
    same names are replaced.

    Parameters
    ----------
    out_dir : path
        Output folder, created if missing.
    size : int
        Scene edge in pixels, at least :data:`MIN_SIZE`.
    seed : int
        Non-negative scene seed.
    block : int
        Window edge in pixels (rows and columns) computed at a time; it does
        not change the result. Multiples of 512 (the GeoTIFF tile) write fastest.
    progress : bool
        Show a tqdm progress bar; otherwise print nothing.
    crs : str or rasterio.crs.CRS
        Coordinate reference system of the grid (default UTM 38N, WGS 84).
    origin : tuple of float
        ``(x, y)`` of the upper-left corner, in CRS units.
    resolution : float
        Pixel size in CRS units (metres for UTM).
    changes : sequence of LandChange, optional
        Known land-cover changes painted over the scene (recorded in the tag
        ``SYNTHETIC_CHANGES``); see :func:`synthetic_arrays`.
    haze, mixed_pixels : bool
        Haze patches and mixed pixels, which the rules cannot classify
        (recorded in the tags ``SYNTHETIC_HAZE``, ``SYNTHETIC_MIXED_PIXELS``);
        see :func:`synthetic_arrays`.

    Returns
    -------
    dict of str to pathlib.Path
        ``{"s2": ..., "s1": ..., "truth": ...}`` paths written.

    Raises
    ------
    SynthParameterError
        An argument is invalid.
    ProductWriteError
        `out_dir` is a file or the files cannot be written.
    """
    size = _check_int("size", size, MIN_SIZE)
    seed = _check_int("seed", seed, 0)
    block = _check_int("block", block, 1)
    changes = _check_changes(changes)
    try:
        crs = CRS.from_user_input(crs)
    except (rasterio.errors.CRSError, TypeError, ValueError) as exc:
        raise SynthParameterError(f"invalid crs {crs!r}: {str(exc).splitlines()[0]}") from None
    try:
        x0, y0 = (float(o) for o in origin)
        resolution = float(resolution)
    except (TypeError, ValueError):
        raise SynthParameterError("origin must be (x, y) numbers and resolution a number") from None
    if not np.isfinite([x0, y0, resolution]).all() or resolution <= 0:
        raise SynthParameterError(f"origin must be finite and resolution positive, got {origin!r}, {resolution!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ProductWriteError(f"output folder {out} is an existing file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProductWriteError(f"cannot create output folder {out}: {exc.strerror or exc}") from None

    transform = Affine(resolution, 0.0, x0, 0.0, -resolution, y0)
    finals = {k: out / f"{k}.tif" for k in ("s2", "s1", "truth")}
    windows = _windows(size, block)
    with staged_outputs(finals.values(), who="synth") as staged:
        temps = {k: staged.add(finals[k]) for k in finals}
        datasets: dict[str, Any] = {}
        try:
            for k, profile in _profiles(size, crs, transform).items():
                datasets[k] = rasterio.open(temps[k], "w", **profile)
            effects = {k: True for k, on in (("haze", haze), ("mixed_pixels", mixed_pixels)) if on}
            _describe(datasets, size, seed, changes, effects)
            _stream(datasets, windows, size, seed, progress, changes, effects)
            for k in list(datasets):
                datasets.pop(k).close()
        except (rasterio.errors.RasterioError, OSError) as exc:
            raise ProductWriteError(f"cannot write synthetic scene to {out}: {str(exc).splitlines()[0]}") from None
        finally:
            for ds in datasets.values():  # still open only after a failure
                try:
                    ds.close()
                except Exception:  # noqa: BLE001 - cleanup must not mask the original error
                    pass
    return finals


def _stream(datasets: dict[str, Any], windows: list, size: int, seed: int, progress: bool,
            changes: tuple[LandChange, ...] = (), effects: dict[str, bool] | None = None) -> None:
    """Compute `windows` on a few threads and write them in order."""
    # One generator thread overlaps with GDAL's compression threads; more only
    # pay off with cores to spare (numpy's large allocations contend).
    cpus = os.cpu_count() or 1
    workers = 1 if cpus <= 2 else min(4, cpus // 2)
    bar = tqdm(total=len(windows), unit="block", desc="synth", disable=not progress)
    pending: deque = deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synth") as pool:
        try:
            for win in windows:
                pending.append((win, pool.submit(_compute, size, seed, win, changes, effects)))
                if len(pending) > workers:
                    _write(datasets, *_pop(pending))
                    bar.update()
            while pending:
                _write(datasets, *_pop(pending))
                bar.update()
        finally:
            for _, fut in pending:
                fut.cancel()
            bar.close()


def _compute(size: int, seed: int, win: tuple[slice, slice], changes: tuple[LandChange, ...] = (),
             effects: dict[str, bool] | None = None) -> dict[str, np.ndarray]:
    # A module-level lookup, so that a spy replacing synthetic_arrays sees every call.
    extra = dict(effects or {}, **({"changes": changes} if changes else {}))
    return synthetic_arrays(size, seed, window=win, **extra)


def _pop(pending: deque) -> tuple[tuple[slice, slice], dict[str, np.ndarray]]:
    win, fut = pending.popleft()
    return win, fut.result()


def _write(datasets: dict[str, Any], win: tuple[slice, slice], arrays: dict[str, np.ndarray]) -> None:
    window = Window.from_slices(*win)
    datasets["s2"].write(np.stack([arrays[b] for b in S2_BANDS]), window=window)
    datasets["s1"].write(np.stack([arrays[b] for b in S1_BANDS]), window=window)
    datasets["truth"].write(arrays[TRUTH_BAND], 1, window=window)
