"""Tiled inference of ONNX land-cover networks with ONNX Runtime.

The scene is cut into a fixed grid of ``tile`` x ``tile`` tiles, starting at
pixel (0, 0), the last row and column of tiles clipped at the scene edge. A
tile is predicted from its *window*: the tile and ``halo`` pixels of context
on every side. Outside the scene the window is mirrored as JAI's
``BorderExtenderReflect`` (SNAP) mirrors an image, edge pixel repeated
(``... c b a | a b c | c b a ...``), so a tile's input depends only on its
position and the scene: the standalone engine (Dask blocks of any size) and
the SNAP adapter (SNAP tiles of any size) predict the same values.

Blends:

``center``
    Each tile keeps only its centre, predicted with the halo as context.
``cosine``
    Each window keeps its whole prediction, weighted by raised-cosine ramps
    over the ``2 * halo`` band it shares with each neighbour (``sin**2``
    rising, ``cos**2`` falling, so the weights of overlapping windows sum to
    1) and by 1 between them; at the scene edge there is no ramp.

A window is normalized with the model's mean and standard deviation (no-data
set to 0, the band mean, so it does not spread through the convolutions),
mirrored up to the model's size multiple, and predicted in batches; with a
test-time augmentation (:data:`AUGMENTATIONS`) each batch is also predicted
mirrored and turned, and the probabilities, turned back, are averaged.
Windows whose kept pixels are all no-data are skipped: the model never
runs on them. One ONNX Runtime session serves each process (a module-level
cache keyed by model file, modification time, providers, threads and
optimization level), whatever the number of tiles or threads.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.cache import LruCache
from ..core.errors import SnapPcError
from ..core.limits import MAX_HALO, MAX_INFERENCE_BATCH_BYTES
from ..io.onnx_model import ModelError, ModelMetadata, open_session

#: Name and element type of the input every snap-pc model takes (``snap-pc train`` exports it so).
INPUT_NAME = "bands"
INPUT_TYPE = "tensor(float)"

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
BLENDS = ("center", "cosine")
#: Test-time augmentations: the orientations ``(quarter turns, mirrored left-right)`` each window
#: is predicted in, the class probabilities turned back and averaged. ``flips`` is the group of
#: mirrors (as is, left-right, half turn, top-bottom), ``dihedral`` adds the quarter turns: the
#: eight orientations training draws from (random quarter turns and flips).
AUGMENTATIONS = {
    "none": ((0, False),),
    "flips": ((0, False), (0, True), (2, False), (2, True)),
    "dihedral": tuple((turns, mirrored) for turns in range(4) for mirrored in (False, True)),
}
#: ONNX Runtime graph optimization levels by name. ``all`` adds layout
#: optimizations (NCHWc convolutions) that ``extended`` lacks: measurably
#: faster for the U-Net on CPU (benchmarks/bench_unet_inference.py).
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")
DEFAULT_OPTIMIZATION = "all"

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


#: Sessions by model, providers and options: every tile and thread of a process shares one; a long
#: session (SNAP, a notebook) switching models keeps the most recent few (each holds its weights).
_SESSIONS: LruCache = LruCache(4)


class InferenceError(SnapPcError):
    """Inference cannot run as asked: device, tile size or halo."""


# --- sessions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionKey:
    """What identifies one ONNX Runtime session of a process (picklable, hashable).

    Attributes
    ----------
    path : str
        Absolute path of the ONNX file.
    mtime_ns, size : int
        File modification time and size: a replaced model gets a new session.
    device : str
        ``auto``, ``cpu`` or ``cuda``, as asked.
    providers : tuple of str
        Execution providers requested, in preference order.
    threads : int
        ``intra_op_num_threads``: threads of one ``session.run``; 0 lets
        ONNX Runtime choose (one per core).
    optimization : str
        Graph optimization level, one of :data:`OPTIMIZATION_LEVELS`.
    """

    path: str
    mtime_ns: int
    size: int
    device: str
    providers: tuple[str, ...]
    threads: int = 1
    optimization: str = DEFAULT_OPTIMIZATION


def available_providers() -> list[str]:
    """Execution providers this ONNX Runtime build offers."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def select_providers(device: str) -> tuple[str, ...]:
    """Execution providers for `device`, in preference order.

    ``auto`` takes CUDA when ONNX Runtime offers it (onnxruntime-gpu), else
    the CPU; ``cuda`` without the CUDA provider is an error.
    """
    if device not in DEVICES:
        raise InferenceError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "cpu":
        return (CPU,)
    available = available_providers()
    if CUDA in available:
        return (CUDA, CPU)
    if device == "cuda":
        raise InferenceError(
            f"device 'cuda' needs ONNX Runtime's {CUDA}, which this installation lacks (it has "
            f"{', '.join(available)}); install onnxruntime-gpu (pip install 'snap-progressive-classifier[gpu]') "
            "or set device to auto or cpu"
        )
    return (CPU,)


def session_key(path: str | os.PathLike, device: str = "auto", threads: int = 1,
                optimization: str = DEFAULT_OPTIMIZATION) -> SessionKey:
    """The :class:`SessionKey` of a model file for the given device and threads."""
    p = Path(path).expanduser().absolute()
    try:
        st = p.stat()
    except OSError:
        raise ModelError(f"model file not found: {p}") from None
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    if optimization not in OPTIMIZATION_LEVELS:
        raise InferenceError(f"optimization {optimization!r} is not one of {', '.join(OPTIMIZATION_LEVELS)}")
    if threads < 0:
        raise InferenceError(f"threads must be >= 0 (0: ONNX Runtime's default), got {threads}")
    return SessionKey(str(p), st.st_mtime_ns, st.st_size, device, select_providers(device), int(threads), optimization)


def session_options(threads: int = 1, optimization: str = DEFAULT_OPTIMIZATION):
    """``onnxruntime.SessionOptions`` with the optimization level and intra-op threads."""
    import onnxruntime as ort

    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    options.intra_op_num_threads = int(threads)
    # Concurrency comes from the scheduler's threads; the U-Net is a chain of
    # nodes, so parallel node execution would only add threads.
    options.inter_op_num_threads = 1
    # Several tiles run at once (Dask, SNAP): idle pool threads that spin for
    # work steal the cores the other calls need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: tf2onnx graphs warn about unused initializers
    return options


def get_session(key: SessionKey):
    """This process's ONNX Runtime session for `key` and the model's metadata.

    Created on first use and cached, so every tile and thread of a process
    shares one session (ONNX Runtime sessions are thread-safe). The provider
    actually used is logged; ``device='cuda'`` whose session fell back to the
    CPU (no GPU, CUDA libraries missing) is an error.

    Returns
    -------
    (onnxruntime.InferenceSession, ModelMetadata)
    """
    return _SESSIONS.get(key, lambda: _open(key))


def _open(key: SessionKey):
    """A new session for `key`, checked, with the provider it really uses logged."""
    options = session_options(key.threads, key.optimization)
    session, meta = open_session(key.path, key.providers, options)
    check_input(session, meta, key.path)
    used = session.get_providers()
    if key.device == "cuda" and CUDA not in used:
        raise InferenceError(f"device 'cuda': ONNX Runtime could not start {CUDA} (no GPU visible, or CUDA/cuDNN "
                             "libraries missing); set device to auto or cpu")
    if CUDA in key.providers and CUDA not in used:
        log.warning("ONNX Runtime offers %s but could not start it (no GPU or CUDA libraries); running on the CPU",
                    CUDA)
    import onnxruntime as ort

    log.info("model %s (%s %s) runs on %s (ONNX Runtime %s, optimization %s, %s intra-op threads, pid %d)",
             Path(key.path).name, meta.model_name, meta.model_version, used[0], ort.__version__,
             key.optimization, key.threads or "default", os.getpid())
    return session, meta


def clear_sessions() -> None:
    """Forget this process's cached sessions (tests, benchmarks)."""
    _SESSIONS.clear()


# --- pixels ------------------------------------------------------------------------------------


def normalize(stack: np.ndarray, meta: ModelMetadata) -> tuple[np.ndarray, np.ndarray]:
    """The network input of a stack of physical values, and its validity.

    Parameters
    ----------
    stack : ndarray, shape (bands, rows, cols)
        Bands in the metadata's order; NaN (or inf) where there is no data.
    meta : ModelMetadata

    Returns
    -------
    x : ndarray of float32, shape (bands, rows, cols)
        ``(value - mean) / std``, 0 (the band mean) where the value is invalid.
    valid : ndarray of bool, shape (rows, cols)
        True where every band holds a finite value.
    """
    mean = np.asarray(meta.norm_mean, np.float32)[:, None, None]
    inv_std = (1.0 / np.asarray(meta.norm_std, np.float64)).astype(np.float32)[:, None, None]
    x = (np.asarray(stack, np.float32) - mean) * inv_std
    finite = np.isfinite(x)
    valid = finite.all(axis=0)
    if not valid.all():
        x[~finite] = 0.0
    return x, valid


def mirror_index(start: int, stop: int, n: int) -> np.ndarray:
    """Indices into ``[0, n)`` of positions ``start..stop-1``, mirrored beyond the edges.

    The image repeats as tiles alternately flipped, edge pixel included, as
    JAI's ``BorderExtenderReflect`` extends an image in SNAP:

    >>> mirror_index(-3, 6, 4).tolist()
    [2, 1, 0, 0, 1, 2, 3, 3, 2]
    """
    i = np.arange(start, stop) % (2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def mirror_window(stack: np.ndarray, origin: tuple[int, int], box: tuple[int, int, int, int],
                  scene: tuple[int, int]) -> np.ndarray:
    """The window `box` of a scene, from a stack holding the part of it inside the scene.

    Parameters
    ----------
    stack : ndarray, shape (bands, rows, cols)
        Scene pixels from global ``origin = (row, col)`` on.
    box : (row0, row1, col0, col1)
        Global window, possibly reaching outside the scene.
    scene : (rows, cols)
        Scene shape.

    Returns
    -------
    ndarray, shape (bands, row1 - row0, col1 - col0)
    """
    r = mirror_index(box[0], box[1], scene[0]) - origin[0]
    c = mirror_index(box[2], box[3], scene[1]) - origin[1]
    if r.min() < 0 or c.min() < 0 or r.max() >= stack.shape[1] or c.max() >= stack.shape[2]:
        raise ValueError(f"window {box} needs scene pixels outside the stack given "
                         f"(origin {origin}, shape {stack.shape[1:]})")
    if (np.diff(r) == 1).all() and (np.diff(c) == 1).all():
        return stack[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1]  # inside the scene: a view
    return stack[:, r[:, None], c[None, :]]


def padded_size(size: int, multiple: int, fixed: int | None = None) -> int:
    """Network input edge for a window edge: `fixed` when the model has one, else the next multiple."""
    if fixed is not None:
        return fixed
    return -(-size // multiple) * multiple


def pad_to(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`x` (..., h, w) mirrored at its bottom and right up to (rows, cols)."""
    h, w = x.shape[-2:]
    if (h, w) == (rows, cols):
        return x
    r = mirror_index(0, rows, h)
    c = mirror_index(0, cols, w)
    return x[..., r[:, None], c[None, :]]


def ramp(n: int) -> np.ndarray:
    """Rising raised-cosine ramp of `n` samples, ``sin(pi/2 * (i + 0.5) / n)**2`` (float32).

    A ramp and its reverse sum to 1 sample by sample:

    >>> bool(np.allclose(ramp(8) + ramp(8)[::-1], 1))
    True
    """
    u = (np.arange(n, dtype=np.float64) + 0.5) / n
    return (np.sin(0.5 * np.pi * u) ** 2).astype(np.float32)


def cosine_weights(a: int, b: int, n: int, halo: int) -> np.ndarray:
    """Weights along one axis of the window ``[a - halo, b + halo)`` of tile ``[a, b)``.

    A rising ramp over ``[a - halo, a + halo)``, 1 between the ramps, a
    falling ramp over ``[b - halo, b + halo)``; no ramp (1) where the tile
    touches the scene edge (0 or `n`). Shape ``(b - a + 2 * halo,)``, float32.
    """
    w = np.ones(b - a + 2 * halo, np.float32)
    if halo == 0:
        return w
    up = ramp(2 * halo)
    if a > 0:
        w[:2 * halo] *= up
    if b < n:
        w[-2 * halo:] *= up[::-1]
    return w


def tile_edges(n: int, tile: int) -> np.ndarray:
    """Global tile boundaries along an axis of `n` pixels: ``[0, tile, 2 tile, ..., n]``."""
    return np.append(np.arange(0, n, tile), n)


# --- prediction ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TiledPredictor:
    """Tiled, blended prediction of one model; picklable, so Dask workers get it whole.

    Attributes
    ----------
    key : SessionKey
        The session each process opens once (:func:`get_session`).
    meta : ModelMetadata
    tile : int
        Tile edge in pixels.
    halo : int
        Context around each tile in pixels.
    blend : str
        ``center`` or ``cosine``.
    batch_size : int
        Windows per ``session.run``.
    input_size : (int or None, int or None) or None
        Fixed network input (rows, cols) when the model has one.
    augmentation : str
        Test-time augmentation, a key of :data:`AUGMENTATIONS`.
    """

    key: SessionKey
    meta: ModelMetadata
    tile: int
    halo: int
    blend: str = "center"
    batch_size: int = 1
    input_size: tuple[int | None, int | None] | None = None
    augmentation: str = "none"

    def __dask_tokenize__(self):
        return ("TiledPredictor", self.key, self.tile, self.halo, self.blend, self.batch_size, self.input_size,
                self.augmentation)

    @property
    def n_classes(self) -> int:
        return len(self.meta.class_ids)

    @property
    def reach(self) -> int:
        """How far beyond its tile a window's kept prediction reaches (pixels)."""
        return self.halo if self.blend == "cosine" else 0

    # --- network ---
    def run(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, classes, h, w)`` of a normalized batch ``(n, bands, h, w)``, averaged
        over the orientations of the predictor's test-time augmentation."""
        session, _ = get_session(self.key)

        def once(batch: np.ndarray) -> np.ndarray:
            return session.run(None, {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]

        return augmented(once, x, self.augmentation)

    def predict_tile(self, stack: np.ndarray) -> np.ndarray:
        """Probabilities of one window of physical values, in one pass.

        Parameters
        ----------
        stack : ndarray, shape (bands, rows, cols)
            Window (tile and halo) in the metadata's band order; NaN where
            there is no data.

        Returns
        -------
        ndarray of float32, shape (classes, rows, cols)
            NaN where any band is invalid.
        """
        x, valid = normalize(stack, self.meta)
        out = self._predict([x])[0]
        out[:, ~valid] = np.nan
        return out

    def _padded(self, h: int, w: int) -> tuple[int, int]:
        m = self.meta.size_multiple
        fixed = self.input_size or (None, None)
        return padded_size(h, m, fixed[0]), padded_size(w, m, fixed[1])

    def _predict(self, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Probabilities of normalized windows, batched by input size (a list of ``(classes, h, w)``)."""
        out: list = [None] * len(xs)
        groups: dict[tuple[int, int], list[int]] = {}
        for k, x in enumerate(xs):
            groups.setdefault(self._padded(*x.shape[1:]), []).append(k)
        for (ph, pw), members in groups.items():
            for s in range(0, len(members), self.batch_size):
                part = members[s:s + self.batch_size]
                batch = np.stack([pad_to(xs[k], ph, pw) for k in part])
                probs = self.run(batch)
                for k, p in zip(part, probs):
                    h, w = xs[k].shape[1:]
                    out[k] = np.array(p[:, :h, :w], dtype=np.float32)
        return out

    # --- tiles ---
    def tiles(self, lo: int, hi: int, n: int) -> list[tuple[int, int]]:
        """Tiles ``(a, b)`` along an axis of `n` whose kept prediction meets ``[lo, hi)``."""
        edges = tile_edges(n, self.tile)
        r = self.reach
        return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if a - r < hi and b + r > lo]

    def source_box(self, box: tuple[int, int, int, int], scene: tuple[int, int]) -> tuple[int, int, int, int]:
        """The scene pixels ``(row0, row1, col0, col1)`` predicting `box` needs (windows clipped to the scene)."""
        rows = self.tiles(box[0], box[1], scene[0])
        cols = self.tiles(box[2], box[3], scene[1])
        h = self.halo
        return (max(0, rows[0][0] - h), min(scene[0], rows[-1][1] + h),
                max(0, cols[0][0] - h), min(scene[1], cols[-1][1] + h))

    def region(self, stack: np.ndarray, origin: tuple[int, int], scene: tuple[int, int],
               box: tuple[int, int, int, int], rows: Sequence[tuple[int, int]] | None = None,
               cols: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
        """Blended probabilities of the pixels in `box`.

        Parameters
        ----------
        stack : ndarray, shape (bands, h, w)
            Physical values of the scene from global ``origin = (row, col)``
            on, covering every window used (clipped to the scene); NaN where
            there is no data.
        origin : (int, int)
        scene : (rows, cols)
            Scene shape.
        box : (row0, row1, col0, col1)
            Output pixels; may reach outside the scene (cosine canvases).
        rows, cols : list of (a, b), optional
            Tiles to predict along each axis; default every tile whose kept
            prediction meets `box`. A subset yields a partial sum (cosine).

        Returns
        -------
        ndarray of float32, shape (classes, row1 - row0, col1 - col0)
            Probabilities; NaN at invalid pixels of the scene; 0 where no
            listed window reaches.
        """
        y0, y1, x0, x1 = box
        rows = self.tiles(y0, y1, scene[0]) if rows is None else rows
        cols = self.tiles(x0, x1, scene[1]) if cols is None else cols
        out = np.zeros((self.n_classes, y1 - y0, x1 - x0), np.float32)
        h, r = self.halo, self.reach
        pending: list[tuple] = []
        for a, b in rows:
            for c, d in cols:
                win = mirror_window(stack, origin, (a - h, b + h, c - h, d + h), scene)
                x, valid = normalize(win, self.meta)
                # the kept part inside the scene: skip the model where it holds no data
                ky0, ky1 = max(a - r, 0) - (a - h), min(b + r, scene[0]) - (a - h)
                kx0, kx1 = max(c - r, 0) - (c - h), min(d + r, scene[1]) - (c - h)
                if not valid[ky0:ky1, kx0:kx1].any():
                    continue
                pending.append(((a, b, c, d), x))
                if len(pending) == self.batch_size:
                    self._compose(out, box, scene, pending)
                    pending = []
        if pending:
            self._compose(out, box, scene, pending)
        # no-data: every scene pixel of the box with an invalid band
        sy0, sy1, sx0, sx1 = max(y0, 0), min(y1, scene[0]), max(x0, 0), min(x1, scene[1])
        if sy1 > sy0 and sx1 > sx0:
            inner = stack[:, sy0 - origin[0]:sy1 - origin[0], sx0 - origin[1]:sx1 - origin[1]]
            invalid = ~np.isfinite(inner).all(axis=0)
            if invalid.any():
                out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0][:, invalid] = np.nan
        return out

    def _compose(self, out: np.ndarray, box, scene, pending) -> None:
        """Predict the pending windows and add (cosine) or copy (center) them into `out`."""
        probs = self._predict([p[1] for p in pending])
        y0, y1, x0, x1 = box
        h, r = self.halo, self.reach
        for ((a, b, c, d), _), p in zip(pending, probs):
            # kept extent of this window, clipped to the box
            ky0, ky1 = max(a - r, y0), min(b + r, y1)
            kx0, kx1 = max(c - r, x0), min(d + r, x1)
            if ky1 <= ky0 or kx1 <= kx0:
                continue
            src = p[:, ky0 - (a - h):ky1 - (a - h), kx0 - (c - h):kx1 - (c - h)]
            dst = out[:, ky0 - y0:ky1 - y0, kx0 - x0:kx1 - x0]
            if self.blend == "cosine":
                wy = cosine_weights(a, b, scene[0], h)[ky0 - (a - h):ky1 - (a - h)]
                wx = cosine_weights(c, d, scene[1], h)[kx0 - (c - h):kx1 - (c - h)]
                dst += src * (wy[:, None] * wx[None, :])
            else:
                dst[...] = src


def overlap_add(extended: np.ndarray, halo: int) -> np.ndarray:
    """Sum a block's cosine canvas with its neighbours' margins (the Dask engine's second step).

    Parameters
    ----------
    extended : ndarray, shape (classes, rows + 4 halo, cols + 4 halo)
        The block's canvas (its windows' weighted sum over the block and
        `halo` around it) with the last `halo` rows/columns of the canvases
        above/left of it and the first `halo` of those below/right (zeros
        beyond the scene).

    Returns
    -------
    ndarray, shape (classes, rows, cols)
        The block's blended probabilities.
    """
    h = halo
    rows, cols = extended.shape[1] - 4 * h, extended.shape[2] - 4 * h
    # (output slice, extended slice) for the neighbour before, the block itself and the neighbour after
    spans_y = ((slice(0, h), slice(0, h)), (slice(0, rows), slice(2 * h, 2 * h + rows)),
               (slice(rows - h, rows), slice(rows + 3 * h, rows + 4 * h)))
    spans_x = ((slice(0, h), slice(0, h)), (slice(0, cols), slice(2 * h, 2 * h + cols)),
               (slice(cols - h, cols), slice(cols + 3 * h, cols + 4 * h)))
    out = np.zeros((extended.shape[0], rows, cols), np.float32)
    for oy, ey in spans_y:  # in window order, as the SNAP adapter adds them
        for ox, ex in spans_x:
            out[:, oy, ox] += extended[:, ey, ex]
    return out


def orient(x: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """`x` (``(..., rows, cols)``) turned `turns` quarter turns counter-clockwise, then mirrored
    left-right if `mirrored` (a view).

    >>> orient(np.array([[1, 2], [3, 4]]), 1, True)
    array([[4, 2],
           [3, 1]])
    """
    out = np.rot90(x, turns, axes=(-2, -1))
    return out[..., ::-1] if mirrored else out


def unorient(y: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """The inverse of :func:`orient`: ``unorient(orient(x, t, m), t, m)`` is `x`."""
    return np.rot90(y[..., ::-1] if mirrored else y, -turns, axes=(-2, -1))


def augmented(predict, x: np.ndarray, augmentation: str = "none") -> np.ndarray:
    """Test-time augmentation: the mean of `predict` over the orientations of `augmentation`.

    Parameters
    ----------
    predict : callable
        ``(n, bands, h, w)`` -> ``(n, classes, h, w)`` float32 probabilities; a fully convolutional
        network (``dihedral`` gives it windows of ``w`` x ``h``).
    x : ndarray, shape (n, bands, h, w)
    augmentation : str
        A key of :data:`AUGMENTATIONS`; ``none`` is one call of `predict`, unchanged.

    Returns
    -------
    ndarray of float32, shape (n, classes, h, w)
        Each orientation's probabilities turned back onto `x`'s pixels, averaged.

    Examples
    --------
    A "network" that only sees the column index is made symmetric by the mirrors:

    >>> x = np.zeros((1, 1, 2, 3), np.float32)
    >>> column = lambda b: np.broadcast_to(np.arange(b.shape[-1], dtype=np.float32), b.shape).copy()
    >>> augmented(column, x, "flips")[0, 0]
    array([[1., 1., 1.],
           [1., 1., 1.]], dtype=float32)
    """
    orientations = AUGMENTATIONS[augmentation]
    if len(orientations) == 1:
        return predict(x)
    total = None
    for turns, mirrored in orientations:
        probs = unorient(predict(np.ascontiguousarray(orient(x, turns, mirrored))), turns, mirrored)
        total = probs.astype(np.float64) if total is None else total + probs
    return (total / len(orientations)).astype(np.float32)


def class_ids(probs: np.ndarray, ids: Sequence[int], no_data: int = 255) -> np.ndarray:
    """uint8 class id of the most probable class; `no_data` where probabilities are NaN."""
    lookup = np.asarray(ids, np.uint8)
    invalid = np.isnan(probs[0])
    best = np.argmax(np.where(invalid, 0, probs), axis=0)
    out = lookup[best]
    out[invalid] = no_data
    return out


def confidence(probs: np.ndarray) -> np.ndarray:
    """Probability of the most probable class (float32, NaN where no data)."""
    with np.errstate(invalid="ignore"):
        return np.max(probs, axis=0).astype(np.float32, copy=False)


def check_input(session, meta: ModelMetadata, where: str) -> None:
    """Refuse, when the model is loaded, an input that :meth:`TiledPredictor.run` could not feed.

    :func:`~snap_operators.io.onnx_model.check_signature` has checked the
    shapes against the metadata; a model exported by another tool may still
    name its input otherwise or take another element type, which ONNX
    Runtime would only report at the first tile.
    """
    first = session.get_inputs()[0]
    if first.name != INPUT_NAME or first.type != INPUT_TYPE:
        raise ModelError(f"{where}: the model's input is {first.name!r} ({first.type}) but snap-pc models take "
                         f"{INPUT_NAME!r} ({INPUT_TYPE}, N x {len(meta.input_bands)} x H x W: the bands "
                         f"{', '.join(meta.input_bands)}); export the model with snap-pc train")


def check_geometry(tile: int, halo: int, blend: str, meta: ModelMetadata,
                   input_size: tuple[int | None, int | None] | None = None, batch_size: int = 1,
                   augmentation: str = "none") -> None:
    """Refuse tile, halo, blend, batch and augmentation combinations the model, the blend or memory
    cannot work with.

    The halo may come from the model's metadata: it is bounded here
    (:data:`~snap_operators.core.limits.MAX_HALO`), as is the memory of one batch
    of windows (:data:`~snap_operators.core.limits.MAX_INFERENCE_BATCH_BYTES`),
    before any array is made.
    """
    if blend not in BLENDS:
        raise InferenceError(f"blend {blend!r} is not one of {', '.join(BLENDS)}")
    if augmentation not in AUGMENTATIONS:
        raise InferenceError(f"testTimeAugmentation {augmentation!r} is not one of {', '.join(AUGMENTATIONS)}")
    if augmentation == "dihedral" and input_size and input_size[0] != input_size[1]:
        shown = " x ".join("any" if v is None else str(v) for v in input_size)
        raise InferenceError(f"testTimeAugmentation 'dihedral' turns each window a quarter turn, but the model's "
                             f"input is fixed at {shown} px (rows x cols); use 'flips'")
    if tile < meta.size_multiple:
        raise InferenceError(f"tileSize {tile} is smaller than the model's size multiple {meta.size_multiple}")
    if halo < 0:
        raise InferenceError(f"halo must be >= 0, got {halo}")
    if halo > MAX_HALO:
        raise InferenceError(f"halo {halo} (the model's metadata or the halo parameter) is above MAX_HALO = "
                             f"{MAX_HALO}; give a smaller halo parameter")
    window = max([tile + 2 * halo] + [v for v in input_size or () if v is not None])
    batch_bytes = batch_size * window * window * (len(meta.input_bands) + len(meta.class_ids)) * 4
    if batch_bytes > MAX_INFERENCE_BATCH_BYTES:
        raise InferenceError(f"a batch of {batch_size} windows of {window} x {window} px needs {batch_bytes >> 20} MiB, "
                             f"more than MAX_INFERENCE_BATCH_BYTES ({MAX_INFERENCE_BATCH_BYTES >> 20} MiB); "
                             "use a smaller tileSize, halo or batchSize")
    if blend == "cosine" and tile < 2 * halo:
        raise InferenceError(f"blend 'cosine' needs tileSize >= 2 * halo ({2 * halo}), got tileSize {tile}")
    for fixed in input_size or ():
        need = tile + 2 * halo
        if fixed is not None and fixed != need:
            hint = fixed - 2 * halo
            fix = f"e.g. tileSize {hint} with halo {halo}" if hint >= meta.size_multiple else "a smaller halo"
            shown = " x ".join("any" if v is None else str(v) for v in input_size)
            raise InferenceError(f"the model's input is fixed at {shown} px but tileSize + 2 * halo is {need}; use {fix}")


def fixed_input_size(session) -> tuple[int | None, int | None] | None:
    """The model's fixed input ``(rows, cols)`` (None for a dynamic edge), or None when both are dynamic."""
    shape = session.get_inputs()[0].shape
    size = tuple(v if isinstance(v, int) else None for v in shape[2:4])
    return None if size == (None, None) else size

