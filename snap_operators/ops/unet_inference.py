"""``AttentionUNetInference``: land cover from a trained ONNX network, tile by tile.

Without ``modelFile`` the pretrained Sentinel-2 model shipped in the package
(:func:`snap_operators.io.onnx_model.pretrained_model`) is used. The model
file says which bands it reads (by name, in channel order), how to
normalize them and which classes it predicts (:mod:`snap_operators.io.onnx_model`).
The operator picks those bands from its source product (the output of
``SpectralIndices`` with ``copySourceBands=true``), predicts tiles of
``tileSize`` pixels with ``halo`` pixels of context, blends them
(:mod:`snap_operators.science.inference`) and writes

* ``class_id`` (uint8): the most probable class, with the model's ids, names
  and colors (the Progressive Classifier's legend); 255 where any input band
  has no data;
* ``probability_<id>`` (float32, with ``outputProbabilities``): one band per
  class;
* ``confidence`` (float32, with ``outputConfidence``): the winning class's
  probability.

In the standalone engine the scene is cut into Dask blocks of whole tiles
(``tileSize`` times the number of tiles nearest the engine's tile size),
each block read with ``halo`` pixels of its neighbours (``map_overlap``), so
memory holds a few rows of blocks, never the scene; ``cosine`` adds a second
overlapping pass that sums each block's weighted windows with its
neighbours' margins. The SNAP adapter calls :class:`UNetTileFunction` on
SNAP's tiles; both predict the same tile grid (``docs/unet_inference.md``).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import dask.array as da
import numpy as np

from ..core.errors import OperatorError, in_node
from ..core.legend import MASKED, MASKED_INFO, NO_DATA
from ..core.operator import Operator, TileKernel, register
from ..core.product import Band, Product
from ..core.spec import OperatorSpec, Parameter, SourceSpec, TargetBandSpec
from ..grid.regrid import grid_mismatch
from ..io.onnx_model import ModelError, pretrained_model
from ..science.cloudmask import find_mask_band, mask_classes
from ..science.indices import find_s2_band, missing_bands_hint
from ..science.inference import (
    AUGMENTATIONS,
    BLENDS,
    DEVICES,
    InferenceError,
    TiledPredictor,
    check_geometry,
    class_ids,
    confidence,
    fixed_input_size,
    get_session,
    overlap_add,
    session_key,
    tile_edges,
)

log = logging.getLogger(__name__)

DEFAULT_TILE = 256
DEFAULT_BATCH = 1


def probability_band(class_id: int) -> str:
    """Name of the probability band of class `class_id` (``probability_3``)."""
    return f"probability_{int(class_id)}"


@dataclass(frozen=True)
class UNetTileFunction:
    """The per-tile function, as the SNAP adapter calls it (picklable).

    Attributes
    ----------
    predictor : TiledPredictor
    bands : tuple of str
        The model's input bands in channel order (the keys of the tiles given).
    no_data : tuple
        No-data value of each band (None: none; NaN is always no-data).
    scene : (rows, cols)
    probabilities, with_confidence : bool
        Which optional bands to produce.
    mask : str, optional
        Key of the cloud mask tile: its flagged pixels get class 254 (not
        observed) in ``class_id``; the probabilities stay the network's.
    mask_no_data : float, optional
        The mask band's no-data value.
    """

    predictor: TiledPredictor
    bands: tuple[str, ...]
    no_data: tuple
    scene: tuple[int, int]
    probabilities: bool = False
    with_confidence: bool = False
    mask: str | None = None
    mask_no_data: float | None = None

    def outputs(self) -> dict[str, np.dtype]:
        """Target band name -> dtype."""
        out = {"class_id": np.dtype(np.uint8)}
        if self.probabilities:
            out.update({probability_band(i): np.dtype(np.float32) for i in self.predictor.meta.class_ids})
        if self.with_confidence:
            out["confidence"] = np.dtype(np.float32)
        return out

    def stack(self, tiles: list[np.ndarray]) -> np.ndarray:
        """``(bands, rows, cols)`` float32, NaN wherever a band has no data."""
        out = np.empty((len(tiles),) + np.shape(tiles[0]), np.float32)
        for k, (tile, nd) in enumerate(zip(tiles, self.no_data)):
            out[k] = tile
            if nd is not None and not (isinstance(nd, float) and np.isnan(nd)):
                out[k][np.asarray(tile) == nd] = np.nan
        return out

    def split(self, probs: np.ndarray) -> dict[str, np.ndarray]:
        """Target bands of a probability block ``(classes, rows, cols)``."""
        ids = self.predictor.meta.class_ids
        out = {"class_id": class_ids(probs, ids, NO_DATA)}
        if self.probabilities:
            out.update({probability_band(i): probs[k] for k, i in enumerate(ids)})
        if self.with_confidence:
            out["confidence"] = confidence(probs)
        return out

    def masked(self, class_id: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """`class_id` with :data:`~snap_operators.core.legend.MASKED` where the mask tile flags a pixel."""
        return mask_classes(class_id, mask, self.mask_no_data, MASKED, NO_DATA)

    def source_window(self, rect: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """SNAP rectangle ``(x, y, w, h)`` of source pixels a target tile ``(x, y, w, h)`` needs."""
        x, y, w, h = rect
        r0, r1, c0, c1 = self.predictor.source_box((y, y + h, x, x + w), self.scene)
        return (c0, r0, c1 - c0, r1 - r0)

    def __call__(self, tiles: dict[str, np.ndarray], source: tuple[int, int, int, int],
                 target: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
        """Target bands of the tile `target` from source tiles covering `source` (both ``(x, y, w, h)``)."""
        stack = self.stack([tiles[b] for b in self.bands])
        x, y, w, h = target
        probs = self.predictor.region(stack, (source[1], source[0]), self.scene, (y, y + h, x, x + w))
        out = self.split(probs)
        if self.mask is not None:
            r0, c0 = y - source[1], x - source[0]
            out["class_id"] = self.masked(out["class_id"], np.asarray(tiles[self.mask])[r0:r0 + h, c0:c0 + w])
        return out


@register
class AttentionUNetInferenceOp(Operator):
    """Classify land cover with a trained Attention U-Net (ONNX), tile by tile."""

    spec = OperatorSpec(
        alias="AttentionUNetInference",
        category="Optical/Thematic Land Processing",
        description="Land-cover classification with a trained Attention U-Net (ONNX Runtime, CPU or CUDA): "
        "bands picked by name from the model's metadata, tiled with a halo, blended without seams.",
        sources=(SourceSpec("sourceProduct", "Product with the model's input bands on one grid "
                            "(SpectralIndices with copySourceBands=true)."),),
        parameters=(
            Parameter("modelFile", "File", label="Model file",
                      description="ONNX model written by 'snap-pc train' (its metadata lists bands, "
                      "normalization, classes and halo); empty: the pretrained Sentinel-2 model shipped with "
                      "snap-pc (B2, B3, B4, B8, B11, NDVI, MNDWI, NDBI, BSI; classes 1-5)."),
            Parameter("device", "String", default="auto", value_set=DEVICES, label="Device",
                      description="auto: CUDA when onnxruntime-gpu sees a GPU, else CPU; cpu; cuda (error without GPU)."),
            Parameter("tileSize", "int", default=DEFAULT_TILE, interval="[8,8192]", unit="pixels", label="Tile size",
                      description="Edge of the tiles predicted at once, without the halo."),
            Parameter("halo", "int", interval="[0,1024]", unit="pixels", label="Halo",
                      description="Context around each tile; default: the model's recommended halo (its metadata)."),
            Parameter("blend", "String", default="center", value_set=BLENDS, label="Blend",
                      description="center: each tile keeps its centre, predicted with the halo as context; cosine: "
                      "tiles and halos kept, weighted by cosine ramps over the overlaps and summed."),
            Parameter("batchSize", "int", default=DEFAULT_BATCH, interval="[1,256]", label="Batch size",
                      description="Tiles per ONNX Runtime call."),
            Parameter("threads", "int", default=1, interval="[0,1024]", label="Threads",
                      description="ONNX Runtime threads per tile batch; 1 suits the engine and SNAP, which run one "
                      "tile batch per core; 0: ONNX Runtime's default (one per core)."),
            Parameter("testTimeAugmentation", "String", default="none", value_set=tuple(AUGMENTATIONS),
                      label="Test-time augmentation",
                      description="Average the class probabilities of each window over orientations: none; flips "
                      "(4: as is, mirrored left-right, top-bottom, turned half); dihedral (8: also quarter turns, "
                      "as the network was trained). 4 or 8 times the prediction time; a small, steady gain "
                      "(docs/unet.md)."),
            Parameter("outputProbabilities", "boolean", default=False, label="Output probabilities",
                      description="Add one float32 band probability_<class id> per class."),
            Parameter("outputConfidence", "boolean", default=False, label="Output confidence",
                      description="Add a float32 band 'confidence': the probability of the winning class."),
            Parameter("maskBand", "String", default="cloud_mask", label="Mask band", keep_empty=True,
                      description="Band whose non-zero pixels (CloudMask: cloud, cloud shadow, snow) get class "
                      f"{MASKED} (not observed) instead of the network's class; empty: no mask. A missing band "
                      "is a warning."),
        ),
        target_bands=(
            TargetBandSpec("class_id", "uint8", None, f"Most probable class; {NO_DATA} no-data."),
            TargetBandSpec("probability_{class_id}", "float32", None, "Class probability (outputProbabilities)."),
            TargetBandSpec("confidence", "float32", None, "Probability of the winning class (outputConfidence)."),
        ),
    )

    #: Edge in pixels of the engine's chunks and of the target's preferred tiles: whole model tiles.
    block: int

    def initialize(self) -> Product:
        source = self.source_product()
        p = self.parameters
        model = p.get("modelFile")
        shipped = not (model and str(model).strip())
        try:
            if shipped:
                model = pretrained_model()
            key = session_key(model, p["device"] or "auto", int(p["threads"]))
            session, meta = get_session(key)
            if shipped:
                log.info("%s: no modelFile given: using the shipped pretrained model %s %s (%s)", self.spec.alias,
                         meta.model_name, meta.model_version, key.path)
            input_size = fixed_input_size(session)
            tile = int(p["tileSize"])
            halo = meta.halo if p["halo"] is None else int(p["halo"])
            augmentation = p["testTimeAugmentation"]
            check_geometry(tile, halo, p["blend"], meta, input_size, int(p["batchSize"]), augmentation)
        except (ModelError, InferenceError) as exc:
            raise in_node(exc, self.node_id, self.spec.alias) from None
        bands = self._input_bands(source, meta.input_bands)
        ref = bands[0]
        scene = ref.shape
        try:
            mask = find_mask_band(source, p.get("maskBand"), ref, self.spec.alias)
        except OperatorError as exc:
            raise in_node(exc, self.node_id, self.spec.alias) from None
        # The model's band names never start with a space: the mask's key cannot shadow one.
        mask_key = f" mask {mask.name}" if mask is not None else None
        predictor = TiledPredictor(key, meta, tile, halo, p["blend"], int(p["batchSize"]), input_size, augmentation)
        func = UNetTileFunction(predictor, meta.input_bands, tuple(b.no_data for b in bands), scene,
                                bool(p["outputProbabilities"]), bool(p["outputConfidence"]), mask_key,
                                mask.no_data if mask is not None else None)
        # Blocks of whole tiles, as near the engine's tile size as tiles allow.
        self.block = tile * max(1, round(self.context.tile_size / tile))
        inputs = {n: b.name for n, b in zip(meta.input_bands, bands)}
        if mask is not None:
            inputs[mask_key] = mask.name
        # The function predicts the engine's tile grid from any rectangle: it reads the window
        # it names (tiles + halo, clipped to the scene) and mirrors it beyond the scene itself.
        self._kernel = TileKernel(func=func, inputs=inputs, outputs=func.outputs(), context=func.source_window,
                                  tile=(self.block, self.block))
        probs = predict_blocks([b.data for b in bands], func, self.block)
        arrays = split_blocks(probs, func)
        if mask is not None:
            classes_ = arrays["class_id"]
            arrays["class_id"] = da.map_blocks(func.masked, classes_, mask.data.rechunk(classes_.chunks),
                                               dtype=np.uint8, meta=np.empty((0, 0), np.uint8))

        classes = list(meta.classes) + ([MASKED_INFO] if mask is not None else [])
        target_bands = [Band("class_id", arrays["class_id"], ref.transform, no_data=NO_DATA, unit=None,
                             description=f"Most probable class ({meta.model_name} {meta.model_version}); "
                             + (f"{MASKED} masked (cloud, shadow, snow), " if mask is not None else "")
                             + f"{NO_DATA} no-data", classes=classes)]
        if func.probabilities:
            for c in meta.classes:  # the network's classes: masked (254) is no class it gives a probability of
                name = probability_band(c.value)
                target_bands.append(Band(name, arrays[name], ref.transform, no_data=float("nan"), unit="1",
                                         description=f"Probability of class {c.value} {c.name}"))
        if func.with_confidence:
            target_bands.append(Band("confidence", arrays["confidence"], ref.transform, no_data=float("nan"),
                                     unit="1", description="Probability of the most probable class"))
        target = source.copy(name=f"{source.name}_unet", bands=target_bands)
        target.metadata.add_element(
            self.spec.alias, modelFile=key.path, modelName=meta.model_name, modelVersion=meta.model_version,
            inputBands=",".join(meta.input_bands), classIds=",".join(map(str, meta.class_ids)), tileSize=tile,
            halo=halo, blend=p["blend"], batchSize=int(p["batchSize"]), testTimeAugmentation=augmentation,
            device=key.device, providers=",".join(key.providers),
        )
        log.info("%s: %s on %d x %d px, tiles %d + halo %d, blend %s, test-time augmentation %s, blocks of %d px",
                 self.spec.alias, meta.model_name, scene[1], scene[0], tile, halo, p["blend"], augmentation, self.block)
        return target

    def tile_kernel(self) -> TileKernel:
        """The network over tiles: each target tile predicted from the window it names (the
        model's tiles around it, with their halo), in tiles of whole model tiles."""
        return self._kernel

    def _input_bands(self, source: Product, names: tuple[str, ...]) -> list[Band]:
        try:
            found = {n: find_s2_band(source, n, f"the model's {n}") for n in names}
        except OperatorError as exc:
            raise in_node(exc, self.node_id, self.spec.alias) from None
        missing = [n for n, b in found.items() if b is None]
        if missing:
            hint = missing_bands_hint(missing, list(source.bands),
                                      "use a model trained on the bands it has (snap-pc train --bands)",
                                      "graphs/unet_inference_s1s2.xml")
            raise self.error(
                f"the model reads band(s) {', '.join(missing)} that product '{source.name}' lacks "
                f"(bands: {source.bands_listed()}); {hint}"
            )
        bands = [found[n] for n in names]
        renamed = [f"{n}={b.name}" for n, b in found.items() if b.name != n]
        if renamed:
            log.info("%s: model bands read as %s", self.spec.alias, ", ".join(renamed))
        sizes = grid_mismatch(bands)
        if sizes:
            raise self.error(f"input bands are not on one grid ({sizes}); add a Resample node before {self.spec.alias}")
        return bands


# --- Dask ------------------------------------------------------------------------------------------


def block_chunks(n: int, block: int, depth: int) -> tuple[int, ...]:
    """Chunks of `block` pixels along an axis of `n`; a last chunk thinner than `depth` joins the one before.

    >>> block_chunks(1050, 512, 32)
    (512, 538)
    """
    chunks = [block] * (n // block)
    rest = n - block * len(chunks)
    if rest:
        if chunks and rest < depth:
            chunks[-1] += rest
        else:
            chunks.append(rest)
    return tuple(chunks) or (n,)


def _offsets(chunks: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(v) for v in np.concatenate([[0], np.cumsum(chunks)]))


def predict_blocks(bands: list[da.Array], func: UNetTileFunction, block: int) -> da.Array:
    """Blended probabilities of a scene, lazily: ``(classes, rows, cols)`` float32, one chunk per block.

    Parameters
    ----------
    bands : list of dask.array.Array
        2-D bands in the model's channel order, on one grid.
    func : UNetTileFunction
        Its predictor, and the bands' no-data values.
    block : int
        Block edge in pixels, a multiple of the tile edge.
    """
    predictor = func.predictor
    scene = tuple(int(v) for v in bands[0].shape)
    h = predictor.halo
    chunks = tuple(block_chunks(n, block, h) for n in scene)
    # One (bands, rows, cols) chunk per block, NaN for no-data: the band chunks are released
    # as soon as they are stacked, and the overlap below moves one array, not one per band.
    stack = da.map_blocks(_stack_block, *[b.rechunk(chunks) for b in bands], kernel=func, new_axis=[0],
                          chunks=((len(bands),),) + chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    # no neighbour along an axis of one chunk: no overlap there
    depth = {0: 0, 1: h if len(chunks[0]) > 1 else 0, 2: h if len(chunks[1]) > 1 else 0}
    offsets = tuple(_offsets(c) for c in chunks)
    n = predictor.n_classes
    meta = np.empty((0, 0, 0), np.float32)
    common = {"depth": depth, "boundary": "none", "trim": False, "dtype": np.float32, "meta": meta,
              "predictor": predictor, "scene": scene, "offsets": offsets, "depth_used": (depth[1], depth[2])}
    if predictor.blend == "center" or h == 0:
        return da.map_overlap(_center_block, stack, chunks=((n,),) + chunks, **common)
    canvas_chunks = tuple(tuple(c + 2 * h for c in cs) for cs in chunks)
    canvas = da.map_overlap(_cosine_canvas, stack, chunks=((n,),) + canvas_chunks, **common)
    return da.map_overlap(
        overlap_add, canvas, depth={0: 0, 1: h, 2: h}, boundary={0: "none", 1: 0, 2: 0}, trim=False,
        chunks=((n,),) + chunks, dtype=np.float32, meta=meta, halo=h,
    )


def _stack_block(*blocks, kernel):
    return kernel.stack(blocks)


def _block_geometry(block_id, offsets, depth_used):
    i, j = block_id[-2:]
    (ry, rx) = offsets
    box = (ry[i], ry[i + 1], rx[j], rx[j + 1])
    origin = (max(0, box[0] - depth_used[0]), max(0, box[2] - depth_used[1]))
    return box, origin


def _center_block(stack, block_id=None, predictor=None, scene=None, offsets=None, depth_used=None):
    box, origin = _block_geometry(block_id, offsets, depth_used)
    return predictor.region(stack, origin, scene, box)


def _cosine_canvas(stack, block_id=None, predictor=None, scene=None, offsets=None, depth_used=None):
    """The weighted sum of this block's own windows over the block and `halo` around it."""
    (y0, y1, x0, x1), origin = _block_geometry(block_id, offsets, depth_used)
    edges_y, edges_x = tile_edges(scene[0], predictor.tile), tile_edges(scene[1], predictor.tile)
    rows = [(int(a), int(b)) for a, b in itertools.pairwise(edges_y) if y0 <= a < y1]
    cols = [(int(a), int(b)) for a, b in itertools.pairwise(edges_x) if x0 <= a < x1]
    h = predictor.halo
    return predictor.region(stack, origin, scene, (y0 - h, y1 + h, x0 - h, x1 + h), rows, cols)


def split_blocks(probs: da.Array, func: UNetTileFunction) -> dict[str, da.Array]:
    """The target bands of a lazy probability array, each a 2-D Dask array."""
    ids = func.predictor.meta.class_ids
    out = {"class_id": probs.map_blocks(class_ids, ids, NO_DATA, drop_axis=0, dtype=np.uint8,
                                        meta=np.empty((0, 0), np.uint8))}
    if func.probabilities:
        for k, i in enumerate(ids):
            out[probability_band(i)] = probs[k]
    if func.with_confidence:
        out["confidence"] = probs.map_blocks(confidence, drop_axis=0, dtype=np.float32,
                                             meta=np.empty((0, 0), np.float32))
    return out

