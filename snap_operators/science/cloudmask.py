"""Clouds, cloud shadows and snow in Sentinel-2 tiles: the science of ``CloudMask``.

Pure functions over numpy tiles (numba kernels where a loop is needed), used by
the ``CloudMask`` operator in the standalone engine and, through the very same
:class:`CloudMaskFunction`, by its SNAP adapter. Methods and references are in
``docs/cloud_mask.md``.

**Codes** of the ``cloud_mask`` band (uint8): 0 clear, 1 cloud (opaque or
cirrus, and the cloud buffer), 2 cloud shadow, 3 snow/ice, 255 no-data.

**Two resolutions.** Per-pixel tests run at the scene's resolution (10 m):
the Sentinel-2 L2A scene classification (SCL) lookup, the spectral tests of
the fallback, the snow test and the dark-pixel shadow candidates. What needs
neighbours runs on a coarse grid of ``factor`` x ``factor`` pixel blocks
anchored at the scene's upper-left corner (160 m by default, the resolution
s2cloudless is run at by its authors): the s2cloudless probability of each
block's mean reflectance, its averaging over a disk, the cloud buffer and the
search for shadows near clouds. Coarse results are upsampled (each pixel takes
its block's value) and combined with the per-pixel codes. Every coarse value
depends only on the blocks within :attr:`CloudMaskFunction.halo` blocks, and
every computation is done in a fixed order, so any tiling of the scene (the
engine's chunks, SNAP's tiles) gives the same mask bit for bit.

Example
-------
>>> import numpy as np
>>> scl = np.array([[0, 4, 3], [8, 9, 11]], dtype=np.uint8)
>>> scl_codes(scl).tolist()
[[255, 0, 2], [1, 1, 3]]
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..core.errors import OperatorError
from ..core.product import ClassInfo
from ..io.safe import SCL_BAND, SCL_CLASSES, SCL_NAMES, SCL_NO_DATA  # noqa: F401 - the SCL as the reader names it
from .jit import jit

log = logging.getLogger(__name__)


#: Codes of the ``cloud_mask`` band.
CLEAR, CLOUD, SHADOW, SNOW = 0, 1, 2, 3
#: No-data code of the ``cloud_mask`` band.
MASK_NO_DATA = 255
#: Name of the band ``CloudMask`` adds.
CLOUD_MASK_BAND = "cloud_mask"
#: Categories of the ``cloud_mask`` band (writers emit them as a color table).
MASK_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(CLEAR, "Clear", (70, 150, 70), "Observed surface: no cloud, cloud shadow or snow found"),
    ClassInfo(CLOUD, "Cloud", (250, 250, 250), "Opaque cloud, cirrus, or within the cloud buffer"),
    ClassInfo(SHADOW, "Cloud shadow", (90, 60, 30), "Shadow of a cloud"),
    ClassInfo(SNOW, "Snow/ice", (120, 220, 255), "Snow or ice"),
)

#: Codes of the per-pixel stage (raw codes); RAW_DARK marks shadow candidates.
RAW_CLEAR, RAW_CLOUD, RAW_SHADOW, RAW_SNOW, RAW_DARK, RAW_NO_DATA = 0, 1, 2, 3, 4, 255
#: Bits of the coarse stage: cloud (s2cloudless), cloud buffer, near a cloud
#: (shadow search), near a cloud core (the spectral fallback keeps cloud pixels there only).
BIT_CLOUD, BIT_BUFFER, BIT_NEAR, BIT_SUPPORT = 1, 2, 4, 8

# --- Sentinel-2 L2A scene classification (SCL) ---------------------------------------------

#: SCL values masked, by mask code.
SCL_CLOUD = (8, 9, 10)
SCL_SHADOW = (3,)
SCL_SNOW = (11,)


def scl_lut(shadow: bool = True, snow: bool = True) -> np.ndarray:
    """Raw code of every SCL value (256 entries): no-data 0 and values above 11 -> 255."""
    lut = np.full(256, RAW_NO_DATA, dtype=np.uint8)
    lut[1:12] = RAW_CLEAR
    lut[list(SCL_CLOUD)] = RAW_CLOUD
    if shadow:
        lut[list(SCL_SHADOW)] = RAW_SHADOW
    if snow:
        lut[list(SCL_SNOW)] = RAW_SNOW
    return lut


def scl_codes(scl: np.ndarray, *, shadow: bool = True, snow: bool = True, no_data=None) -> np.ndarray:
    """Raw codes of an SCL tile.

    Parameters
    ----------
    scl : numpy.ndarray
        ``(rows, cols)`` SCL values 0..11 (any integer or float dtype; NaN and
        `no_data` are no-data, as SCL 0 is).
    shadow, snow : bool
        Keep SCL cloud shadows (3) and snow/ice (11); else they count as clear.
    no_data : number, optional
        The band's own no-data value, if any.

    Returns
    -------
    numpy.ndarray
        uint8 ``(rows, cols)``: 0 clear, 1 cloud (SCL 8, 9, 10), 2 cloud
        shadow (3), 3 snow/ice (11), 255 no-data (SCL 0, values above 11).
    """
    a = np.asarray(scl)
    bad = None
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        a = np.where(bad, 0, a)
    idx = np.clip(a, 0, 255).astype(np.uint8) if a.dtype != np.uint8 else a
    out = scl_lut(shadow, snow)[idx]
    if bad is not None:
        out[bad] = RAW_NO_DATA
    if no_data is not None and not (isinstance(no_data, float) and math.isnan(no_data)):
        out[np.asarray(scl) == no_data] = RAW_NO_DATA
    return out


# --- spectral fallback -------------------------------------------------------------------


@dataclass(frozen=True)
class SpectralTests:
    """Thresholds of the per-pixel tests (reflectance 0-1, TOA or BOA).

    Cloud (all must hold; Zhu & Woodcock 2012, Fmask's potential cloud pixels
    without the thermal band): ``B2 > blue``; NDSI and NDVI below
    ``max_ndsi_ndvi`` (0.8); whiteness ``sum |Bi - mean| / mean`` over B2 B3 B4
    below ``whiteness`` (0.7); haze-optimized transformation ``B2 - 0.5 B4 -
    0.08 > 0`` (Zhang et al. 2002); ``B8 / B11 > nir_swir`` (0.75, Irish 2000).
    Cirrus, where B10 exists (L1C): ``B10 > cirrus`` (0.012, Sen2Cor's
    threshold). Snow (Hall et al. 1995): ``NDSI > snow_ndsi`` (0.4), ``B8 >
    snow_nir`` (0.2; Hall's 0.11 presumes a water mask, and turbid flood water
    reaches 0.15 in B8 with NDSI above 0.4), ``B3 > 0.1``. Shadow candidates: ``B8 < shadow_nir`` (0.15) and NDSI
    (= MNDWI) below 0, which leaves water out.

    Object size (the fallback's answer to bright roofs, which pass every
    spectral test): a cloud pixel is kept only within one block of a *cloud
    core*, a block where at least ``core_fraction`` (0.75) of the valid pixels
    pass the cloud tests; the buffer and the shadow search start from the cores.
    """

    blue: float = 0.2
    max_ndsi_ndvi: float = 0.8
    whiteness: float = 0.7
    nir_swir: float = 0.75
    cirrus: float = 0.012
    snow_ndsi: float = 0.4
    snow_nir: float = 0.2
    snow_green: float = 0.1
    shadow_nir: float = 0.15
    core_fraction: float = 0.75


#: Bands of the spectral fallback (B10, optional, adds the cirrus test).
SPECTRAL_BANDS = ("B2", "B3", "B4", "B8", "B11")
#: Bands the snow test and the shadow candidates read.
SNOW_SHADOW_BANDS = ("B3", "B8", "B11")


@jit
def _spectral_kernel(b2, b3, b4, b8, b11, b10, has_b10, cloud_test, shadow, snow, t, out):
    # Ratios are compared multiplied out (a/b > k as a > k b for b > 0): no division per pixel.
    # Branch-free per pixel (every test evaluated, the code chosen by priority: no-data, cirrus,
    # snow, cloud, shadow candidate, clear), so the loop vectorizes. B2 and B4 are held in
    # float64, as before (the sums with them are float64).
    blue, max_nd, white_max, nir_swir, cirrus, snow_ndsi, snow_nir, snow_green, shadow_nir = (
        t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8])
    h, w = out.shape
    for y in range(h):
        rg = b3[y]
        rn = b8[y]
        rs = b11[y]
        rb = b2[y] if cloud_test else b3[y]  # b2, b4, b10 are 1 x 1 placeholders when unused
        rr = b4[y] if cloud_test else b3[y]
        rc = b10[y] if has_b10 else b3[y]
        o = out[y]
        for x in range(w):
            g = rg[x]
            n = rn[x]
            s1 = rs[x]
            bl = np.float64(rb[x]) if cloud_test else 0.0
            r = np.float64(rr[x]) if cloud_test else 0.0
            ci = rc[x]
            bad = not (g == g and n == n and s1 == s1)
            if cloud_test:
                bad = bad or not (bl == bl and r == r)
                if has_b10:
                    bad = bad or not (ci == ci)
            cirr = cloud_test and has_b10 and ci > cirrus
            gs = g + s1
            sn = snow and gs > 0 and g - s1 > snow_ndsi * gs and n > snow_nir and g > snow_green
            mean = (bl + g + r) / 3.0
            cl = (cloud_test and bl > blue and gs > 0 and g - s1 < max_nd * gs and n + r > 0
                  and n - r < max_nd * (n + r) and s1 > 0 and n > nir_swir * s1 and bl - 0.5 * r - 0.08 > 0
                  and abs(bl - mean) + abs(g - mean) + abs(r - mean) < white_max * mean)
            sh = shadow and n < shadow_nir and g < s1
            code = np.uint8(0)
            if sh:
                code = np.uint8(4)
            if cl:
                code = np.uint8(1)
            if sn:
                code = np.uint8(3)
            if cirr:
                code = np.uint8(1)
            if bad:
                code = np.uint8(255)
            o[x] = code


def spectral_codes(tiles: Mapping[str, np.ndarray], *, cloud_test: bool = True, shadow: bool = True,
                   snow: bool = True, tests: SpectralTests = SpectralTests()) -> np.ndarray:
    """Raw codes from reflectance tiles: the fallback's per-pixel tests.

    Parameters
    ----------
    tiles : dict of str to numpy.ndarray
        ``(rows, cols)`` reflectance (0-1, NaN = no data): ``B3``, ``B8``,
        ``B11``; with `cloud_test` also ``B2``, ``B4`` and optionally ``B10``.
    cloud_test : bool
        Run the cloud and cirrus tests (False: s2cloudless finds the clouds,
        only snow and shadow candidates come from here).
    shadow, snow : bool
        Mark shadow candidates (code 4) and snow (3).
    tests : SpectralTests

    Returns
    -------
    numpy.ndarray
        uint8 ``(rows, cols)``: 0 clear, 1 cloud, 3 snow, 4 dark (a shadow
        candidate), 255 no-data (a needed band is NaN).
    """
    def arr(name):
        return np.ascontiguousarray(tiles[name], dtype=np.float32)

    b3, b8, b11 = arr("B3"), arr("B8"), arr("B11")
    dummy = np.zeros((1, 1), np.float32)
    b2 = arr("B2") if cloud_test else dummy
    b4 = arr("B4") if cloud_test else dummy
    has_b10 = cloud_test and "B10" in tiles
    b10 = arr("B10") if has_b10 else dummy
    t = np.array([tests.blue, tests.max_ndsi_ndvi, tests.whiteness, tests.nir_swir, tests.cirrus, tests.snow_ndsi,
                  tests.snow_nir, tests.snow_green, tests.shadow_nir], dtype=np.float64)
    out = np.empty(b3.shape, np.uint8)
    _spectral_kernel(b2, b3, b4, b8, b11, b10, has_b10, cloud_test, shadow, snow, t, out)
    return out


# --- s2cloudless ---------------------------------------------------------------------------

#: Input bands of the s2cloudless model, in its feature order (L1C TOA reflectance 0-1).
S2CLOUDLESS_BANDS = ("B1", "B2", "B4", "B5", "B8", "B8A", "B9", "B10", "B11", "B12")
#: The LightGBM model file the s2cloudless package ships.
S2CLOUDLESS_MODEL = "pixel_s2_cloud_detector_lightGBM_v0.1.txt"
_booster_lock = threading.Lock()


def s2cloudless_model_path() -> str | None:
    """Path of the s2cloudless LightGBM model file, or None when s2cloudless or lightgbm is not installed.

    The package is located, not imported: its ``__init__`` imports
    ``sentinelhub`` and OpenCV, which only its download helpers need.
    """
    try:
        spec = importlib.util.find_spec("s2cloudless")
        have_lgbm = importlib.util.find_spec("lightgbm") is not None
    except (ImportError, ValueError):
        return None
    if spec is None or not have_lgbm or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", S2CLOUDLESS_MODEL)
    return path if os.path.isfile(path) else None


@functools.lru_cache(maxsize=2)
def _booster(path: str):
    import lightgbm

    return lightgbm.Booster(model_file=path)


def s2cloudless_probability(features: np.ndarray, model_path: str | None = None) -> np.ndarray:
    """s2cloudless cloud probability of each pixel (or block mean) of a feature stack.

    Parameters
    ----------
    features : numpy.ndarray
        ``(10, rows, cols)`` reflectance (0-1) of :data:`S2CLOUDLESS_BANDS`;
        NaN where a pixel has no data.
    model_path : str, optional
        Default: the model the s2cloudless package ships.

    Returns
    -------
    numpy.ndarray
        float32 ``(rows, cols)`` probability 0-1 (the model's output, as
        ``S2PixelCloudDetector.get_cloud_probability_maps``), NaN where any
        feature is NaN.
    """
    path = model_path or s2cloudless_model_path()
    if path is None:
        raise ImportError("s2cloudless (with lightgbm) is not installed; pip install 'snap-progressive-classifier[cloud]'")
    nb, h, w = features.shape
    x = features.reshape(nb, -1).T
    ok = np.isfinite(x).all(axis=1)
    out = np.full(h * w, np.nan, np.float32)
    if ok.any():
        booster = _booster(path)
        with _booster_lock:  # one prediction at a time, one thread each: same bits in any order
            p = booster.predict(np.ascontiguousarray(x[ok]), num_threads=1)
        out[ok] = np.asarray(p, dtype=np.float32)
    return out.reshape(h, w)


# --- blocks ------------------------------------------------------------------------------------


@jit
def _block_mean(band, valid, f, out):
    # Row-major streaming; each block's sum still runs over its pixels in row-major order.
    h, w = band.shape
    hc, wc = out.shape
    sums = np.zeros(wc, np.float64)
    counts = np.zeros(wc, np.int64)
    for i in range(hc):
        sums[:] = 0.0
        counts[:] = 0
        for y in range(i * f, min(h, (i + 1) * f)):
            for j in range(wc):
                s = sums[j]
                n = counts[j]
                for x in range(j * f, min(w, (j + 1) * f)):
                    if valid[y, x]:
                        s += band[y, x]
                        n += 1
                sums[j] = s
                counts[j] = n
        for j in range(wc):
            out[i, j] = sums[j] / counts[j] if counts[j] else np.nan


def coarse_shape(shape: tuple[int, int], factor: int) -> tuple[int, int]:
    """Blocks covering `shape` (partial blocks at the lower and right edges count)."""
    return (-(-int(shape[0]) // factor), -(-int(shape[1]) // factor))


def block_means(bands: list[np.ndarray], factor: int) -> np.ndarray:
    """Mean of each band over each ``factor`` x ``factor`` block, over the pixels valid in every band.

    Parameters
    ----------
    bands : list of numpy.ndarray
        ``(rows, cols)`` float tiles whose upper-left pixel starts a block.
    factor : int
        Block edge in pixels.

    Returns
    -------
    numpy.ndarray
        float32 ``(len(bands), ceil(rows/factor), ceil(cols/factor))``; NaN
        for blocks without a valid pixel. Sums run in float64 in row-major
        order within each block, so a block's mean does not depend on the
        tile holding it.
    """
    valid = np.ones(bands[0].shape, dtype=bool)
    for b in bands:
        valid &= np.isfinite(b)
    hc, wc = coarse_shape(bands[0].shape, factor)
    out = np.empty((len(bands), hc, wc), np.float32)
    tmp = np.empty((hc, wc), np.float64)
    for k, b in enumerate(bands):
        _block_mean(np.ascontiguousarray(b), valid, factor, tmp)
        out[k] = tmp
    return out


@jit
def _block_fraction(raw, value, f, out):
    h, w = raw.shape
    hc, wc = out.shape
    hits = np.zeros(wc, np.int64)
    counts = np.zeros(wc, np.int64)
    for i in range(hc):
        hits[:] = 0
        counts[:] = 0
        for y in range(i * f, min(h, (i + 1) * f)):
            for j in range(wc):
                k = 0
                n = 0
                for x in range(j * f, min(w, (j + 1) * f)):
                    v = raw[y, x]
                    n += v != 255
                    k += v == value
                hits[j] += k
                counts[j] += n
        for j in range(wc):
            out[i, j] = hits[j] / counts[j] if counts[j] else np.nan


def block_fraction(raw: np.ndarray, factor: int, value: int = RAW_CLOUD) -> np.ndarray:
    """Share of each block's valid pixels (raw code not 255) whose raw code is `value`; NaN without any."""
    out = np.empty(coarse_shape(raw.shape, factor), np.float32)
    _block_fraction(np.ascontiguousarray(raw, dtype=np.uint8), value, factor, out)
    return out


# --- neighbourhoods on the coarse grid ------------------------------------------------------------


def disk_half_widths(radius: int) -> np.ndarray:
    """Half width of each row ``-r..r`` of the disk ``dx² + dy² <= r²`` (s2cloudless's ``cv2_disk``)."""
    r = int(radius)
    dy = np.arange(-r, r + 1)
    return np.floor(np.sqrt(np.maximum(r * r - dy * dy, 0)) + 1e-9).astype(np.int64)


@jit
def _disk_mean(score, half, out):
    h, w = score.shape
    r = (half.size - 1) // 2
    for y in range(h):
        for x in range(w):
            s = 0.0
            n = 0
            for k in range(half.size):
                yy = y + k - r
                if yy < 0 or yy >= h:
                    continue
                hw = half[k]
                for xx in range(max(0, x - hw), min(w, x + hw + 1)):
                    v = score[yy, xx]
                    if v == v:
                        s += v
                        n += 1
            out[y, x] = s / n if n else np.nan


@jit
def _dilate(mask, half, out):
    # A pixel is set when a set pixel lies in the disk around it: per disk row,
    # a window count from the row's prefix sums (integers: exact in any tile).
    h, w = mask.shape
    r = (half.size - 1) // 2
    prefix = np.zeros((h, w + 1), np.int64)
    for y in range(h):
        for x in range(w):
            prefix[y, x + 1] = prefix[y, x] + (1 if mask[y, x] else 0)
    for y in range(h):
        for x in range(w):
            hit = False
            for k in range(half.size):
                yy = y + k - r
                if yy < 0 or yy >= h:
                    continue
                hw = half[k]
                if prefix[yy, min(w, x + hw + 1)] - prefix[yy, max(0, x - hw)] > 0:
                    hit = True
                    break
            out[y, x] = hit


def disk_mean(score: np.ndarray, radius: int) -> np.ndarray:
    """Mean of the non-NaN values within a disk of `radius` around each pixel (NaN where none)."""
    out = np.empty(score.shape, np.float64)
    _disk_mean(np.ascontiguousarray(score, dtype=np.float32), disk_half_widths(radius), out)
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of `mask` by a disk of `radius` pixels (the array's edges end it)."""
    if radius <= 0:
        return np.asarray(mask, dtype=bool).copy()
    out = np.empty(mask.shape, np.bool_)
    _dilate(np.ascontiguousarray(mask, dtype=np.bool_), disk_half_widths(radius), out)
    return out


@jit
def _finalize(raw, bits, f, need_support, out):
    h, w = raw.shape
    wc = bits.shape[1]
    for y in range(h):
        i = y // f
        for j in range(wc):
            b = bits[i, j]
            for x in range(j * f, min(w, (j + 1) * f)):
                r = raw[y, x]
                if r == 255:
                    out[y, x] = 255
                elif (r == 1 and (not need_support or (b & 8) != 0)) or (b & 3) != 0:
                    out[y, x] = 1
                elif r == 2 or (r == 4 and (b & 4) != 0):
                    out[y, x] = 2
                elif r == 3:
                    out[y, x] = 3
                else:
                    out[y, x] = 0


# --- the whole mask --------------------------------------------------------------------------------

#: Methods a :class:`CloudMaskFunction` runs (``auto`` and ``none`` are resolved by the operator).
METHODS = ("scl", "s2cloudless", "spectral")


@dataclass(frozen=True)
class CloudMaskFunction:
    """The cloud mask of one method and parameter set, stage by stage and per tile.

    Attributes
    ----------
    method : {'scl', 's2cloudless', 'spectral'}
    bands : tuple of str
        Keys of the input tiles (``SCL`` for the scene classification,
        Sentinel-2 band names otherwise), in the order of :meth:`inputs`.
    factor : int
        Edge of the coarse blocks in pixels.
    threshold : float
        s2cloudless: cloud where the (averaged) probability exceeds it.
    average_radius, buffer_radius, shadow_radius : int
        In blocks: s2cloudless probability averaging disk; cloud buffer;
        distance from clouds within which dark pixels are shadows (0: off).
    shadow, snow : bool
    tests : SpectralTests
    no_data : dict
        Input key -> the band's own integer no-data value (SCL), if any.
    scene : (rows, cols)
        Scene size (for the SNAP adapter's source windows).
    model_path : str, optional
        s2cloudless model file.
    """

    method: str
    bands: tuple[str, ...]
    factor: int
    threshold: float = 0.4
    average_radius: int = 0
    buffer_radius: int = 0
    shadow_radius: int = 0
    shadow: bool = True
    snow: bool = True
    tests: SpectralTests = SpectralTests()
    no_data: tuple[tuple[str, float | int], ...] = ()
    scene: tuple[int, int] = (0, 0)
    model_path: str | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")

    # --- geometry ---
    @property
    def halo(self) -> int:
        """Blocks of context a block's result depends on, on each side."""
        reach = max(self.buffer_radius, self.shadow_radius if self.shadow else 0,
                    1 if self.method == "spectral" else 0)
        return (self.average_radius if self.method == "s2cloudless" else 0) + reach

    def outputs(self) -> dict[str, np.dtype]:
        return {CLOUD_MASK_BAND: np.dtype(np.uint8)}

    # --- stages ---
    def raw(self, tiles: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per-pixel stage: raw codes (0 clear, 1 cloud, 2 shadow, 3 snow, 4 dark, 255 no-data)."""
        if self.method == "scl":
            nd = dict(self.no_data).get("SCL")
            return scl_codes(tiles["SCL"], shadow=self.shadow, snow=self.snow, no_data=nd)
        if self.method == "spectral":
            return spectral_codes(tiles, shadow=self.shadow, snow=self.snow, tests=self.tests)
        # s2cloudless: clouds come from the coarse grid; snow and shadow candidates per pixel.
        ok = np.ones(np.shape(tiles["B2"]), dtype=bool)
        for b in S2CLOUDLESS_BANDS:
            ok &= np.isfinite(tiles[b])
        if self.shadow or self.snow:
            out = spectral_codes(tiles, cloud_test=False, shadow=self.shadow, snow=self.snow, tests=self.tests)
        else:
            out = np.zeros(ok.shape, np.uint8)
        out[~ok] = RAW_NO_DATA
        return out

    def coarse(self, tiles: Mapping[str, np.ndarray], raw: np.ndarray | None = None) -> np.ndarray:
        """Coarse stage: a float32 score per block (s2cloudless probability; else the share of cloud pixels).

        The tiles' upper-left pixel must start a block.
        """
        if self.method == "s2cloudless":
            means = block_means([tiles[b] for b in S2CLOUDLESS_BANDS], self.factor)
            return s2cloudless_probability(means, self.model_path)
        if raw is None:
            raw = self.raw(tiles)
        return block_fraction(raw, self.factor)

    def neighbourhood(self, score: np.ndarray) -> np.ndarray:
        """Coarse flags from the scores of a window of blocks: bits 1 cloud, 2 buffer, 4 near a cloud."""
        support = None
        if self.method == "s2cloudless":
            s = disk_mean(score, self.average_radius) if self.average_radius > 0 else score.astype(np.float64)
            cloud = np.nan_to_num(s, nan=0.0) > self.threshold
        elif self.method == "spectral":
            cloud = np.nan_to_num(score, nan=0.0) >= self.tests.core_fraction
            support = dilate(cloud, 1)
        else:
            cloud = np.nan_to_num(score, nan=0.0) > 0
        bits = np.zeros(score.shape, np.uint8)
        if self.method == "s2cloudless":
            bits[cloud] |= BIT_CLOUD
        if support is not None:
            bits[support] |= BIT_SUPPORT
        if self.buffer_radius > 0:
            bits[dilate(cloud, self.buffer_radius)] |= BIT_BUFFER
        if self.shadow and self.shadow_radius > 0 and self.method != "scl":
            bits[dilate(cloud, self.shadow_radius)] |= BIT_NEAR
        return bits

    def finalize(self, raw: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """The ``cloud_mask`` codes of a tile from its raw codes and its blocks' flags.

        `raw` starts a block at its upper-left pixel; `bits` holds its blocks.
        Per pixel: no-data; else cloud (a raw cloud - in the spectral fallback only
        near a cloud core -, an s2cloudless block or the buffer); else shadow (SCL's,
        or a dark pixel near a cloud); else snow; else clear.
        """
        out = np.empty(raw.shape, np.uint8)
        _finalize(np.ascontiguousarray(raw, dtype=np.uint8), np.ascontiguousarray(bits, dtype=np.uint8),
                  self.factor, self.method == "spectral", out)
        return out

    # --- one tile with its context (the SNAP adapter) ---
    def source_window(self, rect: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """Source rectangle ``(x, y, w, h)`` a target tile ``(x, y, w, h)`` needs: whole blocks, `halo` around."""
        x, y, w, h = rect
        f, m = self.factor, self.halo
        rows, cols = self.scene
        y0 = max(0, (y // f - m) * f)
        x0 = max(0, (x // f - m) * f)
        y1 = min(rows, (-(-(y + h) // f) + m) * f)
        x1 = min(cols, (-(-(x + w) // f) + m) * f)
        return (x0, y0, x1 - x0, y1 - y0)

    def __call__(self, tiles: Mapping[str, np.ndarray], source: tuple[int, int, int, int],
                 target: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
        """``cloud_mask`` of tile `target` from source tiles covering `source` (both ``(x, y, w, h)``)."""
        sx, sy = source[0], source[1]
        raw = self.raw(tiles)
        bits = self.neighbourhood(self.coarse(tiles, raw))
        x, y, w, h = target
        f = self.factor
        # the blocks of the target, from the block holding its upper-left pixel
        by0, bx0 = (y - sy) // f, (x - sx) // f
        by1, bx1 = -(-(y + h - sy) // f), -(-(x + w - sx) // f)
        full = self.finalize(raw[by0 * f:by1 * f, bx0 * f:bx1 * f], bits[by0:by1, bx0:bx1])
        oy, ox = y - sy - by0 * f, x - sx - bx0 * f
        return {CLOUD_MASK_BAND: full[oy:oy + h, ox:ox + w]}


# --- applying a mask band (the classifiers) -------------------------------------------------------


def masked_pixels(mask: np.ndarray, no_data: float | None) -> np.ndarray:
    """Pixels a cloud mask band flags: not 0, not its no-data, not NaN.

    >>> masked_pixels(np.array([0, 1, 4, 255], np.uint8), 255).tolist()
    [False, True, True, False]
    """
    mask = np.asarray(mask)
    out = mask != 0
    if no_data is not None and not (isinstance(no_data, float) and math.isnan(no_data)):
        out &= mask != no_data
    if mask.dtype.kind == "f":
        out &= ~np.isnan(mask)
    return out


def mask_classes(class_id: np.ndarray, mask: np.ndarray, no_data: float | None, masked: int,
                 class_no_data: int) -> np.ndarray:
    """`class_id` with `masked` wherever `mask` flags a pixel that has a class (a copy).

    Parameters
    ----------
    class_id : numpy.ndarray
        Class map tile, shape ``(rows, cols)``.
    mask : numpy.ndarray
        The mask band over the same pixels.
    no_data : float or None
        The mask band's no-data value.
    masked, class_no_data : int
        The class of masked pixels and the map's no-data class (left as it is).
    """
    out = np.array(class_id, copy=True)
    out[masked_pixels(mask, no_data) & (out != class_no_data)] = masked
    return out


def find_mask_band(product, name: str | None, ref, who: str):
    """The mask band `name` of `product`, checked against the grid of band `ref`; None when not wanted or absent.

    A missing band is logged as a warning (clouds would become land cover);
    a band on another grid or not numeric raises ``OperatorError`` (the
    message without `who`: the operator adds its node).

    Parameters
    ----------
    product : Product
    name : str or None
        The operator's ``maskBand`` parameter (empty: no mask wanted).
    ref : Band
        A band of the grid the operator classifies.
    who : str
        The operator, for messages.
    """
    name = (name or "").strip()
    if not name:
        return None
    band = product.bands.get(name)
    if band is None:
        log.warning(
            "%s: no mask band '%s' in product '%s': clouds, cloud shadows and snow are classified as land cover "
            "(add a CloudMask node before SpectralIndices, or set maskBand to empty)", who, name, product.name)
        return None
    if band.shape != ref.shape:
        raise OperatorError(f"mask band '{name}' is {band.width}x{band.height}, the input bands "
                            f"{ref.width}x{ref.height}; add a Resample node before {who}")
    if band.dtype.kind not in "uif":
        raise OperatorError(f"mask band '{name}' must be numeric, not {band.dtype}")
    return band
