"""Radiometric augmentation: the same ground seen through another atmosphere.

Top-of-atmosphere (L1C) and surface (L2A) reflectance of one scene differ
mostly by the atmosphere's path reflectance, an offset that falls with
wavelength (Rayleigh scattering as lambda**-4, aerosols as lambda**-1 to -2:
Kaufman, Y.J. et al. (1997), JGR 102(D14), 17051-17067). Over dark targets
that offset is the signal: clear water has a near-zero NIR reflectance at the
surface (NDVI about -0.8) and not at the top of the atmosphere (NDVI about
-0.1). A network trained on a few scenes of one processing level learns their
offset and misses water on a scene of the other (docs/unet.md).
:func:`atmospheric_offset` adds a random path reflectance to each training
patch, positive or negative, and recomputes the index channels from the
shifted bands, so the network sees every scene under a spread of atmospheres.

Example
-------
>>> import numpy as np
>>> x = np.zeros((1, 2, 2, 3), dtype="float32")                # B4, B8, NDVI of water at the top
>>> x[..., 0], x[..., 1] = 0.03, 0.02                          # of the atmosphere: NDVI -0.2
>>> y = atmospheric_offset(x, ["B4", "B8", "NDVI"], np.array([-0.03]), np.array([1.0]))
>>> round(float(y[0, 0, 0, 2]), 2)                             # at the surface: dark NIR
-0.55
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from snap_operators.core.errors import ParameterError
from snap_operators.io.bandfolder import S2A_WAVELENGTHS
from snap_operators.science.indices import compute_indices, lookup, request_name

__all__ = ["PATH_EXPONENTS", "REFERENCE_BAND", "FLOOR", "AugmentError", "check_channels", "path_reflectance",
           "atmospheric_offset", "random_atmospheres"]

#: Band at which the path reflectance's amplitude is given (blue: where it is largest of the 10 m bands).
REFERENCE_BAND = "B2"
#: Range of the spectral exponent k of the path reflectance ``a (lambda / lambda_B2) ** -k``: from
#: aerosol-dominated (1) to half-way to Rayleigh (2).
PATH_EXPONENTS = (1.0, 2.0)
#: Least reflectance a shifted band keeps: a negative offset (a scene seen through less atmosphere
#: than it was) cannot make a dark surface darker than black.
FLOOR = 1e-4


class AugmentError(ValueError):
    """The channels cannot be augmented consistently (an index's band is missing)."""


def check_channels(channels: Sequence[str]) -> tuple[list[int], list[tuple[int, object]]]:
    """Which channels the offset shifts and which index channels it recomputes.

    Index channels are named as SpectralIndices names its bands: this
    project's indices and the Awesome Spectral Indices catalogue's alike
    (:func:`snap_operators.science.indices.lookup`).

    Returns
    -------
    (list of int, list of (int, IndexDef))
        Positions of the Sentinel-2 band channels; positions and definitions of
        the per-pixel optical index channels, recomputed from the shifted bands.
        Radar channels, neighbourhood indices (PANTEX: contrasts, which an
        offset leaves unchanged) and other channels stay as they are.

    Raises
    ------
    AugmentError
        If an optical index needs a band that is not a channel: shifted bands
        beside an unshifted index would teach the network an impossible pixel.
    """
    return _channel_plan(tuple(channels))


@lru_cache(maxsize=32)
def _channel_plan(channels: tuple[str, ...]) -> tuple[list[int], list[tuple[int, object]]]:
    # once per band list, not per batch: a catalogue name is looked up in the catalogue
    bands = [i for i, c in enumerate(channels) if c in S2A_WAVELENGTHS]
    if not bands:
        raise AugmentError(f"no Sentinel-2 band among the channels ({', '.join(channels)}) to shift")
    indices = []
    for i, c in enumerate(channels):
        if c in S2A_WAVELENGTHS:
            continue
        try:
            (d,) = lookup([c])
        except ParameterError:  # not an index: a radar band or another channel
            continue
        if d.sensor != "S2" or d.halo:
            continue
        missing = [b for b in d.bands if b not in channels]
        if missing:
            raise AugmentError(f"index channel {c} needs band(s) {', '.join(missing)}, which are not channels: "
                               "add them to the dataset's bands or train without the atmospheric augmentation")
        indices.append((i, d))
    return bands, indices


def path_reflectance(bands: Sequence[str], amplitude: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """Path reflectance of each band: ``amplitude * (lambda / lambda_B2) ** -exponent``.

    Parameters
    ----------
    bands : list of str
        Sentinel-2 band names (``B2`` ... ``B12``).
    amplitude, exponent : ndarray, shape (n,)
        Offset at B2 (reflectance, may be negative) and spectral exponent, per patch.

    Returns
    -------
    ndarray, shape (n, len(bands)), float32
    """
    ratio = np.array([S2A_WAVELENGTHS[b] / S2A_WAVELENGTHS[REFERENCE_BAND] for b in bands])
    return (np.asarray(amplitude)[:, None] * ratio[None, :] ** -np.asarray(exponent)[:, None]).astype("float32")


def atmospheric_offset(x: np.ndarray, channels: Sequence[str], amplitude: np.ndarray,
                       exponent: np.ndarray) -> np.ndarray:
    """Patches `x` under another atmosphere: bands shifted, index channels recomputed.

    Parameters
    ----------
    x : ndarray, shape (n, h, w, c)
        Patches in physical units (reflectance 0..1), channels named by `channels`.
    channels : list of str
        Channel names (dataset ``bands``: bands, then indices).
    amplitude, exponent : ndarray, shape (n,)
        Per patch: path reflectance added at B2 and its spectral exponent
        (:func:`path_reflectance`).

    Returns
    -------
    ndarray, shape (n, h, w, c), float32
        A new array; shifted bands are kept at or above :data:`FLOOR`.
    """
    band_pos, index_defs = check_channels(channels)
    out = np.array(x, dtype="float32", copy=True)
    shift = path_reflectance([channels[i] for i in band_pos], amplitude, exponent)
    out[..., band_pos] = np.maximum(out[..., band_pos] + shift[:, None, None, :], FLOOR)
    if index_defs:
        # the patches as one 2-D tile per band; the reference formulas (numpy), as SpectralIndices defines them
        tiles = {channels[i]: out[..., i].reshape(-1, out.shape[2]) for i in band_pos}
        values = compute_indices(tiles, [request_name(d) for _, d in index_defs], method="numpy")
        for i, d in index_defs:
            out[..., i] = values[d.name].reshape(out.shape[:3])
    return out


def random_atmospheres(rng: np.random.Generator, n: int, max_amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """``(amplitude, exponent)`` of `n` patches: amplitude uniform in ``[-max, max]``, exponent in
    :data:`PATH_EXPONENTS`."""
    return rng.uniform(-max_amplitude, max_amplitude, n), rng.uniform(*PATH_EXPONENTS, n)
