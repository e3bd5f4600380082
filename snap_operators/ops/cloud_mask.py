"""``CloudMask``: clouds, cloud shadows and snow of a Sentinel-2 product, as a band.

The target holds the source bands (passed through, lazily; ``copySourceBands``)
and ``cloud_mask`` (uint8: 0 clear, 1 cloud, 2 cloud shadow, 3 snow/ice, 255
no-data, with named categories), which ``ProgressiveClassifier`` reads
(``maskBand``) to give masked pixels class 254 instead of a land-cover class.
The method (``method``):

* ``scl``: the Sentinel-2 L2A scene classification, band
  ``quality_scene_classification`` (SNAP's name; ``SCL`` in GeoTIFFs):
  3 cloud shadow, 8/9 cloud medium/high probability, 10 thin cirrus,
  11 snow/ice; 0 is no-data;
* ``s2cloudless``: Sentinel Hub's LightGBM cloud detector (optional package,
  ``pip install 'snap-progressive-classifier[cloud]'``) on block means of the
  L1C bands B1 B2 B4 B5 B8 B8A B9 B10 B11 B12, at ``detectionResolution``
  (160 m, as its authors run it), plus the snow and dark-pixel shadow tests;
* ``spectral``: the documented fallback (Fmask-style cloud tests with a
  cloud-core size rule, cirrus with B10, NDSI snow, dark pixels near clouds)
  on B2 B3 B4 B8 B11;
* ``auto`` (default): ``scl`` when the product has it, else ``s2cloudless``
  when its bands and the package are there, else ``spectral`` with a warning
  saying what is missing; ``none``: the source passes through unmasked.

The science is :mod:`snap_operators.science.cloudmask`; ``docs/cloud_mask.md`` has
the tests, references, parameters and the evaluation on real scenes. The
standalone engine computes the per-pixel codes chunk by chunk, the coarse
block scores once per chunk and the neighbourhoods (buffer, shadow search,
probability averaging) on the small coarse grid with a halo of blocks; the
SNAP adapter calls :class:`~snap_operators.science.cloudmask.CloudMaskFunction` on
each tile with the source window it names. Both give the same bits.
"""

from __future__ import annotations

import logging
import math
import re

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ..core.errors import OperatorError, ParameterError, in_node
from ..core.operator import Operator, TileKernel, register
from ..core.product import Band, Product
from ..core.spec import OperatorSpec, Parameter, SourceSpec, TargetBandSpec
from ..grid.crs import is_geographic, metres_per_unit
from ..grid.regrid import grid_mismatch
from ..science import cloudmask as cm
from ..science.indices import find_s2_band

log = logging.getLogger(__name__)

METHODS = ("auto", "scl", "s2cloudless", "spectral", "none")
#: Metres per degree of latitude, for products in a geographic CRS (block sizes only).
_METRES_PER_DEGREE = 111_320.0
_INSTALL = "pip install 'snap-progressive-classifier[cloud]'"


def find_scl_band(product: Product) -> Band | None:
    """The scene classification band: ``quality_scene_classification`` (also ``_20m``...) or ``SCL``."""
    for b in product.bands.values():
        if re.fullmatch(r"quality_scene_classification(_\d+m)?|scl", b.name, flags=re.IGNORECASE):
            return b
    return None


@register
class CloudMaskOp(Operator):
    """Mask clouds, cloud shadows and snow of a Sentinel-2 product."""

    spec = OperatorSpec(
        alias="CloudMask",
        category="Optical/Pre-Processing",
        label="Cloud, Shadow and Snow Mask",
        description="Clouds, cloud shadows and snow/ice of a Sentinel-2 product as a band 'cloud_mask' "
        "(0 clear, 1 cloud, 2 cloud shadow, 3 snow/ice, 255 no-data): from the L2A scene classification, "
        "s2cloudless, or spectral tests; the classifier does not map land cover where it is set.",
        sources=(SourceSpec("sourceProduct", "Sentinel-2 product on one grid (after Resample)."),),
        parameters=(
            Parameter("method", "String", default="auto", value_set=METHODS, label="Method",
                      description="auto: the L2A scene classification when present, else s2cloudless when its bands "
                      "and package are there, else the spectral tests (with a warning); scl; s2cloudless (L1C); "
                      "spectral; none (no mask band)."),
            Parameter("detectionResolution", "double", default=160.0, interval="(0,*)", unit="m",
                      label="Detection resolution",
                      description="Size of the blocks s2cloudless classifies (their mean reflectance) and on which "
                      "the cloud buffer and the shadow search run; results are upsampled to the pixels."),
            Parameter("cloudProbabilityThreshold", "double", default=0.4, interval="[0,1]",
                      label="Cloud probability threshold",
                      description="s2cloudless: blocks whose averaged cloud probability exceeds it are cloud."),
            Parameter("probabilityAveraging", "double", default=640.0, interval="[0,*)", unit="m",
                      label="Probability averaging radius",
                      description="s2cloudless: radius of the disk its probability is averaged over before the "
                      "threshold (its average_over; 4 blocks of 160 m); 0: none."),
            Parameter("computeCloudBuffer", "boolean", default=True, label="Compute a cloud buffer",
                      description="Mark pixels near clouds as cloud too (cloud edges, thin cloud around)."),
            Parameter("cloudBufferWidth", "double", default=320.0, interval="[0,*)", unit="m",
                      label="Width of cloud buffer",
                      description="Width of the cloud buffer in metres (IdePix counts it in pixels); rounded to "
                      "whole blocks of detectionResolution."),
            Parameter("computeCloudShadow", "boolean", default=True, label="Compute cloud shadow",
                      description="Mark cloud shadows: the SCL's, or dark pixels (B8 < 0.15, not water) near clouds."),
            Parameter("shadowSearchDistance", "double", default=1000.0, interval="[0,*)", unit="m",
                      label="Shadow search distance",
                      description="s2cloudless and spectral: dark pixels at most this far from a cloud are shadow."),
            Parameter("computeSnow", "boolean", default=True, label="Compute snow/ice",
                      description="Mark snow and ice (SCL 11, or NDSI > 0.4 with B8 > 0.11 and B3 > 0.1)."),
            Parameter("copySourceBands", "boolean", default=True, label="Copy source bands",
                      description="Also copy the source bands into the target product (as IdePix's "
                      "copyToaReflectances)."),
        ),
        target_bands=(TargetBandSpec(cm.CLOUD_MASK_BAND, "uint8", None,
                                     "0 clear, 1 cloud, 2 cloud shadow, 3 snow/ice, 255 no-data."),),
    )

    def initialize(self) -> Product:
        source = self.source_product()
        p = self.parameters
        requested = p["method"] or "auto"
        method, inputs, reason = self._choose(source, requested)
        target_bands = list(source.bands.values()) if p["copySourceBands"] else []
        if method == "none":  # the source bands pass through, nothing is computed
            self._kernel = TileKernel(func=_no_bands, inputs={}, outputs={})
            target = source.copy(name=f"{source.name}_cloudmask", bands=target_bands)
            target.metadata.add_element(self.spec.alias, method="none", methodRequested=requested)
            return target
        if cm.CLOUD_MASK_BAND in source.bands and p["copySourceBands"]:
            raise self.error(f"product '{source.name}' already has a band '{cm.CLOUD_MASK_BAND}'; "
                             "set copySourceBands to false or remove the band (Subset)")
        bands = list(inputs.values())
        sizes = grid_mismatch(bands)
        if sizes:
            raise self.error(f"input bands are not on one grid ({sizes}); add a Resample node before CloudMask")
        ref = bands[0]
        pixel_m = self._pixel_metres(source, ref)
        factor = max(1, int(round(float(p["detectionResolution"]) / pixel_m)))
        block_m = factor * pixel_m

        def blocks(metres: float, at_least: int = 0) -> int:
            return max(at_least, int(round(float(metres) / block_m))) if metres > 0 else 0

        shadow = bool(p["computeCloudShadow"])
        func = cm.CloudMaskFunction(
            method=method,
            bands=tuple(inputs),
            factor=factor,
            threshold=float(p["cloudProbabilityThreshold"]),
            average_radius=blocks(p["probabilityAveraging"]) if method == "s2cloudless" else 0,
            buffer_radius=blocks(p["cloudBufferWidth"], 1) if p["computeCloudBuffer"] else 0,
            shadow_radius=blocks(p["shadowSearchDistance"], 1) if shadow and method != "scl" else 0,
            shadow=shadow,
            snow=bool(p["computeSnow"]),
            no_data=tuple((k, b.no_data) for k, b in inputs.items()
                          if b.no_data is not None and not (isinstance(b.no_data, float) and math.isnan(b.no_data))),
            scene=ref.shape,
            model_path=cm.s2cloudless_model_path() if method == "s2cloudless" else None,
        )
        # The function needs whole blocks and a halo of blocks around each tile: it names the
        # source window (clipped to the scene) and computes any tile from it, as mask_array's
        # staged graph does chunk by chunk.
        self._kernel = TileKernel(func=func, inputs={k: b.name for k, b in inputs.items()}, outputs=func.outputs(),
                                  context=func.source_window)
        mask = mask_array(func, {k: b.data for k, b in inputs.items()})
        desc = {"scl": "L2A scene classification", "s2cloudless": "s2cloudless", "spectral": "spectral tests"}[method]
        band = Band(cm.CLOUD_MASK_BAND, mask, ref.transform, no_data=cm.MASK_NO_DATA, unit=None,
                    description=f"Cloud mask ({desc}): 0 clear, 1 cloud, 2 cloud shadow, 3 snow/ice, 255 no-data",
                    classes=list(cm.MASK_CLASSES))
        target = source.copy(name=f"{source.name}_cloudmask", bands=target_bands + [band])
        attrs = {
            "method": method, "methodRequested": requested, "inputs": ",".join(f"{k}={b.name}" for k, b in inputs.items()),
            "codes": "0=clear,1=cloud,2=cloud shadow,3=snow/ice,255=no-data",
            "blockPixels": factor, "blockMetres": round(block_m, 3),
            "cloudBufferBlocks": func.buffer_radius, "shadowSearchBlocks": func.shadow_radius,
            "computeCloudShadow": shadow, "computeSnow": func.snow,
        }
        if method == "s2cloudless":
            attrs.update(cloudProbabilityThreshold=func.threshold, averagingBlocks=func.average_radius,
                         model=cm.S2CLOUDLESS_MODEL)
        if reason:
            attrs["fallbackReason"] = reason
        target.metadata.add_element(self.spec.alias, **attrs)
        log.info("%s: method %s on %s (blocks of %d px = %g m)", self.spec.alias, method, source.name, factor, block_m)
        return target

    def tile_kernel(self) -> TileKernel:
        """The mask function over tiles, each computed from the source window it names; with
        method none, no band (the source bands pass through)."""
        return self._kernel

    # --- method and bands ---------------------------------------------------------------
    def _choose(self, source: Product, requested: str) -> tuple[str, dict[str, Band], str]:
        """``(method, {input key: band}, why the fallback was taken)``."""
        p = self.parameters
        if requested not in METHODS:
            raise ParameterError(str(self.error(f"parameter 'method': {requested!r} is not one of {', '.join(METHODS)}")))
        if requested == "none":
            return "none", {}, ""
        extra = cm.SNOW_SHADOW_BANDS if (p["computeSnow"] or p["computeCloudShadow"]) else ()
        scl = find_scl_band(source)
        s2c_bands, s2c_missing = self._bands(source, cm.S2CLOUDLESS_BANDS + tuple(b for b in extra if b not in
                                                                                   cm.S2CLOUDLESS_BANDS))
        model = cm.s2cloudless_model_path()
        if requested == "scl" or (requested == "auto" and scl is not None):
            if scl is None:
                raise self.error(f"method scl needs the L2A scene classification band ({cm.SCL_BAND} or SCL); "
                                 f"product '{source.name}' has {self._list(source)}")
            if scl.dtype.kind not in "iuf":
                raise self.error(f"band '{scl.name}' is {scl.dtype}, not a scene classification")
            return "scl", {"SCL": scl}, ""
        if requested == "s2cloudless" or (requested == "auto" and not s2c_missing and model is not None):
            if s2c_missing:
                raise self.error(f"method s2cloudless needs bands {', '.join(s2c_missing)} that product "
                                 f"'{source.name}' lacks (bands: {self._list(source)}); s2cloudless reads the L1C "
                                 f"bands {', '.join(cm.S2CLOUDLESS_BANDS)}")
            if model is None:
                raise self.error(f"method s2cloudless needs the s2cloudless package ({_INSTALL})")
            if "2A" in (source.product_type or "").upper():
                log.warning("%s: s2cloudless is made for L1C top-of-atmosphere reflectance; '%s' is %s "
                            "(prefer its scene classification, method scl)", self.spec.alias, source.name,
                            source.product_type)
            return "s2cloudless", s2c_bands, ""
        spec_bands, spec_missing = self._bands(source, cm.SPECTRAL_BANDS)
        if spec_missing:
            if requested == "spectral":
                raise self.error(f"method spectral needs bands {', '.join(spec_missing)} that product "
                                 f"'{source.name}' lacks (bands: {self._list(source)})")
            raise self.error(f"no cloud mask method fits product '{source.name}': no scene classification band "
                             f"({cm.SCL_BAND} or SCL), s2cloudless bands missing ({', '.join(s2c_missing)}), "
                             f"spectral tests need {', '.join(spec_missing)}; set method to none to go on unmasked")
        b10 = self._bands(source, ("B10",))[0]
        spec_bands.update(b10)
        reason = ""
        if requested == "auto":
            why = [f"no scene classification band ({cm.SCL_BAND} or SCL)"]
            if s2c_missing:
                why.append(f"s2cloudless needs bands {', '.join(s2c_missing)}")
            elif model is None:
                why.append(f"s2cloudless is not installed ({_INSTALL})")
            reason = "; ".join(why)
            log.warning("%s: %s: using the spectral fallback on %s (coarser: misses thin cloud and haze; "
                        "docs/cloud_mask.md)", self.spec.alias, reason, source.name)
        return "spectral", spec_bands, reason

    def _bands(self, source: Product, names) -> tuple[dict[str, Band], list[str]]:
        found, missing = {}, []
        for n in names:
            try:
                b = find_s2_band(source, n)
            except OperatorError as exc:
                raise in_node(exc, self.node_id, self.spec.alias) from None
            if b is None:
                missing.append(n)
            else:
                found[n] = b
        return found, missing

    @staticmethod
    def _list(source: Product) -> str:
        return source.bands_listed()

    def _pixel_metres(self, source: Product, band: Band) -> float:
        if band.transform is None:
            log.warning("%s: '%s' has no map geocoding; taking its pixels as 10 m", self.spec.alias, source.name)
            return 10.0
        size = math.sqrt(abs(band.transform.a * band.transform.e - band.transform.b * band.transform.d))
        if source.crs is not None and is_geographic(source.crs):
            return size * _METRES_PER_DEGREE
        return size * (metres_per_unit(source.crs) if source.crs is not None else 1.0)


def _no_bands(tiles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tile function of method none: no band computed."""
    return {}


# --- the engine's lazy mask ------------------------------------------------------------------


def _regular(n: int, c: int) -> tuple[int, ...]:
    return tuple([c] * (n // c) + ([n % c] if n % c else [])) or (n,)


def mask_array(func: cm.CloudMaskFunction, arrays: dict[str, da.Array]) -> da.Array:
    """The lazy ``cloud_mask`` of bands `arrays` (keys as :attr:`CloudMaskFunction.bands`).

    Chunks are whole blocks (the engine's tile size rounded to a multiple of
    the block edge); each chunk is read once: its per-pixel codes and block
    scores are computed from it, the neighbourhood runs on the coarse grid
    with :attr:`~CloudMaskFunction.halo` blocks of overlap, and each output
    chunk combines its codes with its blocks' flags. The result has the
    chunks of the first input band.
    """
    first = next(iter(arrays.values()))
    f = func.factor
    tile = max(first.chunksize)
    c = f * max(1, round(tile / f))
    chunks = tuple(_regular(int(n), c) for n in first.shape)
    names = list(arrays)
    arrs = [a.rechunk(chunks) for a in arrays.values()]
    raw = da.map_blocks(_raw_block, *arrs, names=names, kernel=func, dtype=np.uint8,
                        meta=np.empty((0, 0), np.uint8))
    coarse_chunks = tuple(tuple(-(-k // f) for k in axis) for axis in chunks)
    if func.method == "s2cloudless":
        model = [arrs[names.index(b)] for b in cm.S2CLOUDLESS_BANDS]
        score = da.map_blocks(_probability_block, *model, kernel=func, chunks=coarse_chunks, dtype=np.float32,
                              meta=np.empty((0, 0), np.float32))
    else:
        score = raw.map_blocks(cm.block_fraction, f, chunks=coarse_chunks, dtype=np.float32,
                               meta=np.empty((0, 0), np.float32))
    halo = func.halo
    depth = {}
    for ax in (0, 1):
        if halo > 0 and len(score.chunks[ax]) > 1 and halo >= score.shape[ax]:
            score = score.rechunk({ax: score.shape[ax]})  # the halo spans the axis: one chunk along it
        depth[ax] = halo if len(score.chunks[ax]) > 1 else 0
    if any(depth.values()) and all(min(score.chunks[ax]) >= depth[ax] for ax in (0, 1) if depth[ax]):
        bits = _neighbourhood_array(func.neighbourhood, score, depth[0], depth[1])
    elif any(depth.values()):
        bits = score.map_overlap(func.neighbourhood, depth=depth, boundary="none", trim=True, dtype=np.uint8,
                                 meta=np.empty((0, 0), np.uint8))
    else:
        bits = score.map_blocks(func.neighbourhood, dtype=np.uint8, meta=np.empty((0, 0), np.uint8))
    if bits.chunks != coarse_chunks:  # merged above, or by map_overlap where chunks are thinner than the halo
        bits = bits.rechunk(coarse_chunks)
    mask = da.map_blocks(func.finalize, raw, bits, dtype=np.uint8, chunks=chunks,
                         meta=np.empty((0, 0), np.uint8))
    return mask.rechunk(first.chunks) if mask.chunks != first.chunks else mask


def _neighbourhood_array(fn, score: da.Array, dy: int, dx: int) -> da.Array:
    """``score.map_overlap(fn, depth={0: dy, 1: dx}, boundary="none", trim=True)`` as one task per chunk.

    The coarse chunks are small (64 x 64 blocks for 1024 px chunks of 16 px
    blocks): each task takes its neighbours' whole chunks, cuts the window
    (`dy`, `dx` blocks beyond the chunk where there is a neighbour, none beyond
    the scene), applies `fn` and trims the window back to the chunk. Same
    result as ``map_overlap``, without its slice and concatenate tasks. Every
    chunk must be at least as deep as the halo along an axis with a halo.
    """
    rows, cols = score.chunks
    ny, nx = len(rows), len(cols)
    name = f"cloudmask-neighbourhood-{tokenize(fn, score.name, dy, dx)}"
    dsk = {}
    for i in range(ny):
        for j in range(nx):
            around = [[(score.name, i + di, j + dj) if 0 <= i + di < ny and 0 <= j + dj < nx
                       and (dy or not di) and (dx or not dj) else None for dj in (-1, 0, 1)] for di in (-1, 0, 1)]
            dsk[(name, i, j)] = (_neighbourhood_block, fn, dy, dx, around)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[score])
    return da.Array(graph, name, score.chunks, meta=np.empty((0, 0), np.uint8))


def _neighbourhood_block(fn, dy: int, dx: int, around) -> np.ndarray:
    cut_y = {-1: slice(-dy, None) if dy else slice(0, 0), 0: slice(None), 1: slice(0, dy)}
    cut_x = {-1: slice(-dx, None) if dx else slice(0, 0), 0: slice(None), 1: slice(0, dx)}
    rows = []
    for di in (-1, 0, 1):
        parts = [b[cut_y[di], cut_x[dj]] for dj, b in zip((-1, 0, 1), around[di + 1]) if b is not None]
        if parts:
            rows.append(np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0])
    window = np.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]
    top = dy if around[0][1] is not None else 0
    left = dx if around[1][0] is not None else 0
    h, w = around[1][1].shape
    return np.asarray(fn(window))[top:top + h, left:left + w]


def _raw_block(*blocks, names, kernel):
    return kernel.raw(dict(zip(names, blocks)))


def _probability_block(*blocks, kernel):
    return kernel.coarse(dict(zip(cm.S2CLOUDLESS_BANDS, blocks)))
