"""A spatially spread sample of a scene's chunks, for scene-wide statistics in ``initialize()``.

Operators that adapt to the scene (the classifier's thresholds, the input
guards of SpectralIndices) need statistics of the whole scene before the
streaming pass. Reading every chunk for them would double the I/O of a
graph, so they read a *sample of whole chunks*, spread over the scene by a
two-dimensional low-discrepancy (R2) sequence, all computed in one Dask
call so that shared upstream work is done once. Small scenes (at most
`max_blocks` chunks) are read whole. A chunk of a band that needs context
(a neighbourhood index such as PANTEX, mapped with a halo) is computed from
one window of its file bands around it, not from its eight neighbouring
chunks (:func:`snap_operators.core.operator.halo_chunk`); when only part of the
scene is sampled, the rim of each chunk that such an index cannot compute
from the chunk alone is left out, so a sampled chunk reads just its own
file tiles.

Example
-------
>>> import dask.array as da
>>> from snap_operators.core.sample import sample_blocks
>>> a = da.arange(64, dtype="f4").reshape(8, 8).rechunk(2)
>>> s = sample_blocks([a], max_blocks=4)
>>> len(s.blocks), s.fraction
(4, 0.25)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import dask
import dask.array as da
import numpy as np

from .operator import array_halo, halo_chunk

#: Chunks read for scene statistics when the scene has more (8 of the 121
#: chunks of a 10980 x 10980 tile at 1024 px: 7 % of its pixels).
DEFAULT_MAX_BLOCKS = 8

# Plastic-number constants of the R2 sequence (Roberts 2018): the most evenly
# spread 2-D low-discrepancy sequence of this simple form.
_R2 = (0.7548776662466927, 0.5698402909980532)


@dataclass(frozen=True)
class SceneSample:
    """Chunks of several same-grid arrays, read together.

    Attributes
    ----------
    blocks : list of tuple
        One entry per sampled chunk: ``((i, j), [array_0_block, array_1_block, ...])``
        with the blocks decimated by `step` in both directions.
    fraction : float
        Share of the scene's chunks in the sample (1.0: the whole scene).
    step : int
        Decimation step applied inside the chunks.
    """

    blocks: list[tuple[tuple[int, int], list[np.ndarray]]]
    fraction: float
    step: int

    def pixels(self, k: int) -> np.ndarray:
        """Array `k`'s sampled pixels as one 1-D array (NaN kept)."""
        parts = [b[k].ravel() for _, b in self.blocks]
        return np.concatenate(parts) if parts else np.empty(0)

    def stacked(self) -> list[np.ndarray]:
        """Every array's sampled pixels, 1-D, aligned across arrays."""
        n = len(self.blocks[0][1]) if self.blocks else 0
        return [self.pixels(k) for k in range(n)]


def spread_blocks(nby: int, nbx: int, count: int) -> list[tuple[int, int]]:
    """`count` chunk indices of an ``nby x nbx`` grid, spread evenly over it.

    Deterministic; every chunk when ``count >= nby * nbx``.

    Examples
    --------
    >>> spread_blocks(2, 2, 9)
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    >>> len(set(spread_blocks(11, 11, 8)))
    8
    """
    total = nby * nbx
    if count >= total:
        return [(i, j) for i in range(nby) for j in range(nbx)]
    chosen: dict[tuple[int, int], None] = {}
    m = 0
    while len(chosen) < count and m < 64 * total:
        y = (0.5 + _R2[0] * m) % 1.0
        x = (0.5 + _R2[1] * m) % 1.0
        chosen.setdefault((min(int(y * nby), nby - 1), min(int(x * nbx), nbx - 1)))
        m += 1
    return sorted(chosen)


def sample_blocks(arrays: Sequence[da.Array], *, max_blocks: int = DEFAULT_MAX_BLOCKS, step: int = 1) -> SceneSample:
    """Compute a spread sample of chunks of `arrays` (2-D, one grid) in one Dask call.

    Parameters
    ----------
    arrays : sequence of dask.array.Array
        Same shape; rechunked to the first array's chunks.
    max_blocks : int
        Chunks to read at most; scenes with fewer chunks are read whole.
    step : int
        Keep every `step`-th row and column of each chunk (saves memory and
        time in the statistics; the chunk is read whole anyway).

    Returns
    -------
    SceneSample
    """
    if not arrays:
        raise ValueError("no arrays to sample")
    first = da.asarray(arrays[0])
    aligned = [first] + [da.asarray(a).rechunk(first.chunks) for a in arrays[1:]]
    nby, nbx = len(first.chunks[0]), len(first.chunks[1])
    picks = spread_blocks(nby, nbx, max(1, int(max_blocks)))
    s = max(1, int(step))
    # A part of the scene leaves out the rim of its chunks that a neighbourhood index cannot
    # compute without the neighbouring chunks' pixels: then every array's sampled pixels are
    # exact and come from the chunk's own file tiles (a halo would read 16 GDAL tiles of 512 px
    # instead of 4 per band). A scene read whole keeps every pixel.
    rim = max(map(array_halo, aligned)) if len(picks) < nby * nbx else 0
    tasks = [[_chunk(a, i, j, rim)[::s, ::s] for a in aligned] for i, j in picks]
    computed = dask.compute(*tasks)
    blocks = [((i, j), [np.asarray(b) for b in bs]) for (i, j), bs in zip(picks, computed)]
    return SceneSample(blocks, len(picks) / float(nby * nbx), s)


def _chunk(a: da.Array, i: int, j: int, rim: int) -> da.Array:
    """Chunk ``(i, j)`` of `a` without `rim` pixels along its sides that face other chunks."""
    rows, cols = a.chunks
    y0, x0 = sum(rows[:i]), sum(cols[:j])
    y1, x1 = y0 + rows[i], x0 + cols[j]
    if rim:
        y0, x0 = y0 + (rim if i > 0 else 0), x0 + (rim if j > 0 else 0)
        y1, x1 = y1 - (rim if i < len(rows) - 1 else 0), x1 - (rim if j < len(cols) - 1 else 0)
    window = (slice(y0, max(y0, y1)), slice(x0, max(x0, x1)))
    # A chunk that needs context (a neighbourhood index) is computed from one window of its file
    # bands, not from its neighbouring chunks: the sample does not need them otherwise.
    chunk = halo_chunk(a, i, j, window)
    return a[window] if chunk is None else chunk
