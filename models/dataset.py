"""Training patches from a product and label masks, split by spatial blocks, written as shards.

The input stack is built by the same operators the inference graph runs
(Read -> Resample onto B2's grid -> [Collocate Sentinel-1] -> SpectralIndices
with the source bands copied), so a band named here is the band inference
finds. Labels (LabelMaskExport vectors, any polygon/point file with a class
attribute, or a class raster) are reprojected and rasterized onto that grid.

Patches never straddle two splits: the scene is cut into square blocks, each
block goes to train, validation or test, and a patch is kept only if every
block it touches has the same split. Normalization statistics come from the
training split only. Shards are ``.npy`` pairs (``x``: ``(n, P, P, bands)``
float32 physical values; ``y``: ``(n, P, P)`` uint8 class ids, 0 unlabelled),
written as the scene is read, so memory holds one row of patches at a time.

Example
-------
>>> info = build_dataset("S2.tif", "labels.gpkg", "ds/", patch_size=64)   # doctest: +SKIP
>>> info["splits"]["train"]["patches"]                                     # doctest: +SKIP
412
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from snap_operators.core import staging
from snap_operators.core.errors import SnapPcError
from snap_operators.core.legend import CLASS_NAMES, LAND_COVER, MASKED, NO_DATA, UNCLASSIFIED, class_list, class_name

__all__ = [
    "DatasetError", "DEFAULT_S2_BANDS", "DEFAULT_S1_BANDS", "DEFAULT_INDICES", "DEFAULT_MIN_MARGIN", "SPLITS",
    "build_input_product", "split_sizes", "assign_blocks", "block_class_counts", "patch_origins", "build_dataset", "unlearnt_classes", "label_mapping", "lacking_classes", "load_dataset_info", "open_split",
]

log = logging.getLogger(__name__)

DEFAULT_S2_BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")
DEFAULT_S1_BANDS = ("Sigma0_VV_db", "Sigma0_VH_db")
DEFAULT_INDICES = ("NDVI", "MNDWI", "NDBI", "BSI")
#: Least rule margin a label keeps with ``margin`` (scene interquartile ranges; docs/unet.md).
DEFAULT_MIN_MARGIN = 0.2
#: Patch edge (px) of images too small for the configuration's patches in blocks of four.
SMALL_PATCH = 32
#: Blocks a chosen block edge fits along the image's short side at least, so that the
#: stratified split has blocks enough to deal out (:func:`split_sizes`).
MIN_BLOCKS_ACROSS = 5
SPLITS = ("train", "val", "test")
INFO_FILE = "dataset.json"
#: Split codes in the block map: 0 train, 1 validation, 2 test.
TRAIN, VAL, TEST = 0, 1, 2


class DatasetError(SnapPcError):
    """Training data that cannot be built: bad labels, bands, sizes or splits."""


_STACK_GRAPH = """<graph id="UNetInputStack">
  <version>1.0</version>
  <node id="Read"><operator>Read</operator><sources/>
    <parameters><file>${input}</file></parameters></node>
  <node id="Resample"><operator>Resample</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><referenceBand>B2</referenceBand><upsampling>Bilinear</upsampling>
      <downsampling>Mean</downsampling></parameters></node>
  %s
  <node id="SpectralIndices"><operator>SpectralIndices</operator><sources><sourceProduct refid="%s"/></sources>
    <parameters><indices>${indices}</indices><copySourceBands>true</copySourceBands></parameters></node>
</graph>"""

_COLLOCATE = """<node id="Read(2)"><operator>Read</operator><sources/>
    <parameters><file>${inputS1}</file></parameters></node>
  <node id="Collocate"><operator>Collocate</operator>
    <sources><sourceProduct refid="Resample"/><sourceProduct.1 refid="Read(2)"/></sources>
    <parameters><renameReferenceComponents>false</renameReferenceComponents>
      <renameSecondaryComponents>false</renameSecondaryComponents>
      <resamplingType>BILINEAR_INTERPOLATION</resamplingType></parameters></node>"""


def build_input_product(image, image_s1=None, bands: Sequence[str] | None = None,
                        indices: Sequence[str] = DEFAULT_INDICES, tile_size: int = 512):
    """The lazy input stack: the product the inference graph hands the network.

    Parameters
    ----------
    image : path
        Sentinel-2 product (SAFE, GeoTIFF with band names, band folder, DIMAP).
    image_s1 : path, optional
        Sentinel-1 product in dB (``Sigma0_VV_db``...), collocated onto the
        Sentinel-2 10 m grid.
    bands : list of str, optional
        Source bands in channel order (default: ``DEFAULT_S2_BANDS`` plus
        ``DEFAULT_S1_BANDS`` when `image_s1` is given).
    indices : list of str
        SpectralIndices codes appended after the bands.

    Returns
    -------
    (Product, list of str)
        The product holding every band, and the channel order.
    """
    from snap_operators.core.context import ExecutionContext
    from snap_operators.engine.graph import parse_graph
    from snap_operators.engine.runner import build

    bands = list(bands) if bands is not None else list(DEFAULT_S2_BANDS) + (list(DEFAULT_S1_BANDS) if image_s1 else [])
    indices = [i for i in indices if i]
    order = bands + indices
    if len(set(order)) != len(order):
        raise DatasetError(f"band list names a band twice: {', '.join(order)}")
    text = _STACK_GRAPH % ((_COLLOCATE, "Collocate") if image_s1 else ("", "Resample"))
    variables = {"input": str(image), "indices": ",".join(indices) or "NDVI"}
    if image_s1:
        variables["inputS1"] = str(image_s1)
    graph = parse_graph("unet-input-stack", text=text).substitute(variables)
    ops = build(graph, ExecutionContext(tile_size=tile_size))
    product = ops["SpectralIndices"].target
    # B02 or b2 for B2, as inference reads them: the channels keep the names asked for
    from snap_operators.core.errors import OperatorError
    from snap_operators.science.backscatter import to_db_hint
    from snap_operators.science.indices import find_s2_band

    for name in bands:
        try:
            found = find_s2_band(product, name)
        except OperatorError as exc:
            raise DatasetError(str(exc)) from None
        if found is not None and found.name != name:
            product.add_band(dataclasses.replace(found, name=name))
    missing = [b for b in order if not product.has_band(b)]
    if missing:
        kept = [b for b in bands if b not in missing]
        to_db = to_db_hint(missing, product.band_names)
        hint = (f"; {to_db} (snap-pc LinearToFromdB -t S1_db.tif S1)" if to_db
                else f"; train without them: --bands {','.join(kept)}" if kept and set(missing) <= set(bands) else "")
        raise DatasetError(f"bands {', '.join(missing)} are not in the input (it has: "
                           f"{', '.join(product.band_names)}){hint}")
    return product, order


def split_sizes(shape: tuple[int, int], patch_size: int | None = None, block_size: int | None = None,
                preferred_patch: int = 64) -> tuple[int, int]:
    """Patch and block edges (px) for an image of `shape`, those not given chosen to fit it.

    Candidates, in turn: blocks of four patches of `preferred_patch` (the model
    configuration's), then :data:`SMALL_PATCH` px patches in blocks of two, then in
    blocks of one (the sizes the benchmark's own-mask figures were measured with,
    docs/unet.md). The first whose block fits :data:`MIN_BLOCKS_ACROSS` times along the
    short side is used, else the last: a 320 px scene gets 35 blocks of 64 px, and
    about 70 % of its labels train, where four blocks of 256 px would give the
    training split two. A given `patch_size` is tried in blocks of four, two and one
    patches; a given `block_size` keeps the candidates' patches that fit in it.

    Parameters
    ----------
    shape : (int, int)
        Image rows and columns, px.
    patch_size, block_size : int, optional
        Edges given by the user (kept as they are).
    preferred_patch : int
        Patch edge of the model configuration (``small``: 64).

    Returns
    -------
    (int, int)
        Patch edge and block edge, px.

    Examples
    --------
    >>> split_sizes((10980, 10980)), split_sizes((390, 320)), split_sizes((170, 210))
    ((64, 256), (32, 64), (32, 32))
    >>> split_sizes((390, 320), patch_size=64)
    (64, 64)
    """
    if patch_size is None:
        candidates = [(preferred_patch, 4 * preferred_patch), (SMALL_PATCH, 2 * SMALL_PATCH), (SMALL_PATCH, SMALL_PATCH)]
    else:
        candidates = [(patch_size, k * patch_size) for k in (4, 2, 1)]
    if block_size is not None:
        fitting = [p for p, _ in candidates if p <= block_size]
        return (fitting[0] if fitting else patch_size or preferred_patch), block_size
    short = min(shape)
    return next((c for c in candidates if short >= MIN_BLOCKS_ACROSS * c[1]), candidates[-1])


def assign_blocks(shape: tuple[int, int], block_size: int, fractions=(0.7, 0.15, 0.15), seed: int = 0,
                  class_counts: np.ndarray | None = None, tries: int = 256) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) of each spatial block, shape ``(rows, cols)``.

    Blocks are shuffled with `seed` and dealt out in the given fractions, at
    least one block to each split. With `class_counts` the deal is
    **stratified**: of `tries` shuffles, the one whose splits hold each
    class's pixels nearest the fractions is kept, so a rare class (one lake,
    one village) is not left entirely in the validation or test blocks, where
    the network never learns it.

    Parameters
    ----------
    shape : (int, int)
        Scene rows and columns, px.
    block_size : int
        Block edge, px.
    fractions : (float, float, float)
        Train, validation and test shares of the blocks.
    seed : int
    class_counts : ndarray, shape (rows, cols, classes), optional
        Labelled pixels of each class in each block.
    tries : int
        Shuffles compared when stratifying.

    Example
    -------
    >>> codes = assign_blocks((1000, 1000), 250, seed=1)
    >>> codes.shape, sorted(set(codes.ravel().tolist()))
    ((4, 4), [0, 1, 2])
    """
    rows, cols = -(-shape[0] // block_size), -(-shape[1] // block_size)
    n = rows * cols
    if n < 3:
        raise DatasetError(f"the image ({shape[1]} x {shape[0]} px) holds {n} spatial block(s) of {block_size} px; "
                           "train/validation/test need at least 3: use a smaller --block-size")
    f = np.asarray(fractions, dtype=float)
    f = f / f.sum()
    n_val = max(1, int(round(n * f[1])))
    n_test = max(1, int(round(n * f[2])))
    n_val, n_test = min(n_val, n - 2), min(n_test, n - 1 - min(n_val, n - 2))
    rng = np.random.default_rng(seed)
    counts = np.zeros((n, 0))
    if class_counts is not None:
        counts = np.asarray(class_counts, dtype=np.float64).reshape(n, -1)
        counts = counts[:, counts.sum(axis=0) > 0]
    best, best_cost = None, np.inf
    for _ in range(tries if counts.size else 1):  # no labelled class: the first shuffle
        codes = np.zeros(n, dtype=np.uint8)
        perm = rng.permutation(n)
        codes[perm[:n_val]] = VAL
        codes[perm[n_val:n_val + n_test]] = TEST
        if not counts.size:
            return codes.reshape(rows, cols)
        shares = np.stack([counts[codes == k].sum(axis=0) for k in (TRAIN, VAL, TEST)]) / counts.sum(axis=0)
        # each class's worst split, summed over the classes: every class learnt (train) and checked
        cost = float(np.abs(shares - f[:, None]).max(axis=0).sum())
        if cost < best_cost - 1e-12:
            best, best_cost = codes, cost
    return best.reshape(rows, cols)


def block_class_counts(read_labels, shape: tuple[int, int], block_size: int) -> np.ndarray:
    """Labelled pixels of each class (1..253) per spatial block: ``(rows, cols, 254)`` int64.

    `read_labels(window)` gives the label codes of a rasterio window; the scene is read one
    stripe of blocks at a time.
    """
    from rasterio.windows import Window

    height, width = shape
    rows, cols = -(-height // block_size), -(-width // block_size)
    out = np.zeros((rows, cols, MASKED), dtype=np.int64)
    for i in range(rows):
        r0 = i * block_size
        y = np.asarray(read_labels(Window(0, r0, width, min(block_size, height - r0))))
        for j in range(cols):
            part = y[:, j * block_size:(j + 1) * block_size]
            out[i, j] = np.bincount(part[(part > 0) & (part < MASKED)].ravel(), minlength=MASKED)[:MASKED]
    return out


def patch_origins(shape: tuple[int, int], patch: int, stride: int) -> list[tuple[int, int]]:
    """Upper-left ``(row, col)`` of every patch; the last row/column is shifted to end at the border."""
    def starts(n):
        s = list(range(0, n - patch + 1, stride))
        if s and s[-1] + patch < n:
            s.append(n - patch)
        return s

    return [(r, c) for r in starts(shape[0]) for c in starts(shape[1])]


def _patch_split(blocks: np.ndarray, r: int, c: int, patch: int, block: int) -> int:
    """Split of a patch, or -1 when it touches blocks of different splits."""
    touched = blocks[r // block:(r + patch - 1) // block + 1, c // block:(c + patch - 1) // block + 1]
    first = int(touched.flat[0])
    return first if (touched == first).all() else -1


class _ShardWriter:
    def __init__(self, folder: Path, split: str, n_bands: int, patch: int, shard_size: int):
        self.folder, self.split, self.shard_size = folder, split, shard_size
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self.origins: list[list[int]] = []
        self.files: list[dict] = []
        self.count = 0
        self.class_pixels = np.zeros(256, dtype=np.int64)
        self.sum = np.zeros(n_bands)
        self.sumsq = np.zeros(n_bands)
        self.n = 0

    def add(self, x: np.ndarray, y: np.ndarray, origin: tuple[int, int]) -> None:
        self.origins.append([int(origin[0]), int(origin[1])])
        self.x.append(x)
        self.y.append(y)
        self.count += 1
        self.class_pixels += np.bincount(y.ravel(), minlength=256)
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
        self.sum += flat.sum(axis=0)
        self.sumsq += (flat**2).sum(axis=0)
        self.n += flat.shape[0]
        if len(self.x) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.x:
            return
        stem = f"{self.split}-{len(self.files):05d}"
        np.save(self.folder / f"{stem}.x.npy", np.stack(self.x))
        np.save(self.folder / f"{stem}.y.npy", np.stack(self.y))
        self.files.append({"x": f"{stem}.x.npy", "y": f"{stem}.y.npy", "patches": len(self.x),
                           "origins": self.origins})
        self.x, self.y, self.origins = [], [], []


def build_dataset(image, labels, out, *, image_s1=None, field: str | None = None, mapping=None,
                  bands: Sequence[str] | None = None, indices: Sequence[str] = DEFAULT_INDICES,
                  patch_size: int | None = None, stride: int | None = None, block_size: int | None = None,
                  min_labelled: float = 0.05, fractions=(0.7, 0.15, 0.15), shard_size: int = 256,
                  seed: int = 0, overwrite: bool = False, progress: bool = False,
                  margin=None, min_margin: float = DEFAULT_MIN_MARGIN, preferred_patch: int = 64) -> dict:
    """Build a patch dataset on disk and return its ``dataset.json`` content.

    Parameters
    ----------
    image, image_s1 : path
        Sentinel-2 product and optional Sentinel-1 product (dB).
    labels : path
        Vector label masks (LabelMaskExport output, attribute ``class_id`` by
        default) or any polygon/point file with `field`; or a class raster.
        Codes are the network's class ids (1..5, :data:`LAND_COVER`); 0, 254
        (masked: cloud, shadow, snow) and 255 are unlabelled. Other codes are
        refused unless `mapping` maps them.
    field : str, optional
        Class attribute of a vector file (default ``class_id``).
    mapping : dict, optional
        The labels' codes -> class ids (``{80: 1, 10: 3, 50: 4}``: a land-cover
        product's legend), or class name -> class id for a vector attribute of
        names (``{"water": 1, "forest": 3}``), as
        :func:`snap_operators.io.reference.parse_mapping` reads ``--label-mapping``.
        Codes or names not mapped are left unlabelled.
    out : path
        New folder for the shards and ``dataset.json``.
    bands, indices : list of str
        Channel order (see :func:`build_input_product`).
    patch_size, stride : int, optional
        Patch edge and step in pixels (stride defaults to the patch size).
    block_size : int, optional
        Edge of the spatial blocks dealt to the splits, in pixels. Those not
        given are chosen to fit the image (:func:`split_sizes`).
    preferred_patch : int
        Patch edge of the model configuration, the first choice of :func:`split_sizes`.
    min_labelled : float
        Patches with a smaller fraction of labelled pixels are dropped.
    fractions : (float, float, float)
        Train, validation and test shares of the blocks.
    margin : path, optional
        Raster on the image's grid with the rules' margin (ProgressiveClassifier
        ``outputMargin``: its band ``margin``, or its only band). Labels with a
        margin under `min_margin` (or NaN) are left unlabelled: the network
        learns from the pixels the thresholds are sure of
        (:mod:`snap_operators.science.margin`).
    min_margin : float
        Least margin a label keeps, in scene interquartile ranges.

    Returns
    -------
    dict
        The dataset description (bands, normalization, splits, shards).
    """
    import dask.array as da
    from rasterio.windows import Window
    from tqdm import tqdm

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(f"dataset folder {out} exists and is not empty (use --overwrite)")
        if not (out / INFO_FILE).is_file():
            raise DatasetError(f"refusing to replace {out}: it is not a dataset folder (no {INFO_FILE})")
    if not 0 <= min_labelled <= 1:
        raise DatasetError(f"min labelled fraction must be in [0, 1], got {min_labelled}")
    if seed < 0:
        raise DatasetError(f"seed must be >= 0, got {seed}")
    if not min_margin >= 0:
        raise DatasetError(f"min margin must be >= 0, got {min_margin}")
    lacking = lacking_classes(mapping, "--label-mapping", "labels")
    if lacking:
        raise DatasetError(lacking)
    product, order = build_input_product(image, image_s1, bands, indices)
    height, width = product.scene_shape
    patch_size, block_size = split_sizes((height, width), patch_size, block_size, preferred_patch)
    stride = patch_size if stride is None else stride
    if patch_size < 8 or stride < 1 or block_size < patch_size:
        raise DatasetError(f"need patch size >= 8, stride >= 1 and block size >= patch size "
                           f"(got {patch_size}, {stride}, {block_size})")
    if height < patch_size or width < patch_size:
        raise DatasetError(f"the image ({width} x {height} px) is smaller than one patch ({patch_size} px): "
                           "use a smaller --patch-size")
    ref_band = product.band(order[0])
    if product.crs is None or ref_band.transform is None:
        raise DatasetError(f"{image} has no CRS/geocoding: labels cannot be placed on it")
    labels_path = Path(labels)
    if field is None and not _is_raster(labels_path):
        field = "class_id"
    raw_labels = _label_reader(labels_path, product.crs, ref_band.transform, width, height, field, mapping)

    def confident(read):
        if margin is None:
            return read
        return _confident_labels(read, Path(margin), product.crs, ref_band.transform, width, height, min_margin)

    # stratified split: each class's pixels dealt to the splits in about the fractions. This first
    # pass over the labels also records their codes; the patch pass reads them without that.
    recording, foreign = _recording_foreign_codes(raw_labels)
    counts = block_class_counts(confident(recording), (height, width), block_size)
    _check_codes(foreign, labels_path)
    if not counts.any():
        raise DatasetError(_nothing_labelled(labels_path, image, mapping, margin))
    read_labels = confident(raw_labels)
    blocks = assign_blocks((height, width), block_size, fractions, seed, class_counts=counts)
    row_cols: dict[int, list[int]] = {}
    for r, c in patch_origins((height, width), patch_size, stride):
        row_cols.setdefault(r, []).append(c)
    staging.clean_stale([out.parent])  # folders left by killed runs
    tmp = staging.staged_path(out, suffix="")
    tmp.mkdir(parents=True)
    writers = {name: _ShardWriter(tmp, name, len(order), patch_size, shard_size) for name in SPLITS}
    dropped = {"straddling": 0, "no_data": 0, "few_labels": 0}
    stack = [product.band(b).data for b in order]
    try:
        for r, cols in tqdm(row_cols.items(), desc="patches", unit="row", disable=not progress):
            # One stripe of rows per step: each patch row is read once for all its patches.
            x_rows = np.moveaxis(da.stack([a[r:r + patch_size, :] for a in stack]).compute(), 0, -1)
            y_rows = read_labels(Window(0, r, width, patch_size))
            # 0 unclassified, 254 masked (not observed) and 255 no-data are never learnt
            y_rows = np.where((y_rows > 0) & (y_rows < MASKED), y_rows, UNCLASSIFIED).astype(np.uint8)
            for c in cols:
                split = _patch_split(blocks, r, c, patch_size, block_size)
                if split < 0:
                    dropped["straddling"] += 1
                    continue
                x = x_rows[:, c:c + patch_size]
                if not np.isfinite(x).all():
                    dropped["no_data"] += 1
                    continue
                y = y_rows[:, c:c + patch_size]
                if np.count_nonzero(y) < max(1, min_labelled * y.size):
                    dropped["few_labels"] += 1
                    continue
                writers[SPLITS[split]].add(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y), (r, c))
        for w in writers.values():
            w.flush()
        empty = [name for name, w in writers.items() if w.count == 0]
        if empty:
            total = sum(w.count for w in writers.values())
            raise DatasetError(f"no usable patch in the {', '.join(empty)} split(s) ({total} kept; dropped: "
                               f"{dropped['straddling']} across splits, {dropped['no_data']} with no-data, "
                               f"{dropped['few_labels']} with < {min_labelled:.0%} labelled pixels); "
                               "check that the labels cover the image, or use smaller --patch-size/--block-size"
                               + (" or a lower --min-labelled (0 keeps every patch with a label: survey points "
                                  "label a few pixels of a patch)" if dropped["few_labels"] else ""))
        train = writers["train"]
        mean = train.sum / train.n
        std = np.sqrt(np.maximum(train.sumsq / train.n - mean**2, 0.0))
        std = np.where(std > 1e-6, std, 1.0)
        info = {
            "format": "snap-pc-dataset/1",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "image": str(image), "image_s1": str(image_s1) if image_s1 else None,
            "labels": str(labels), "field": field,
            # pairs, not an object: JSON would make every code a string, a name or not
            "label_mapping": [[k, v] for k, v in (mapping or {}).items()] or None,
            "bands": order, "indices": list(indices),
            "crs": product.crs.to_wkt(), "transform": list(ref_band.transform)[:6],
            "width": width, "height": height,
            "patch_size": patch_size, "stride": stride, "block_size": block_size,
            "min_labelled": min_labelled, "fractions": list(fractions), "seed": seed,
            # what the training report calls the labels: "rules" for the classifier's masks only
            "rule_labels": rule_labels(labels_path, field, mapping),
            "margin": str(margin) if margin is not None else None,
            "min_margin": float(min_margin) if margin is not None else None,
            "classes": [{"id": c.value, "name": c.name, "color": list(c.color)} for c in LAND_COVER],
            "norm_mean": mean.tolist(), "norm_std": std.tolist(),
            "dropped": dropped,
            "blocks": blocks.tolist(),
            "splits": {name: {"patches": w.count, "shards": w.files,
                              "class_pixels": {str(k): int(v) for k, v in enumerate(w.class_pixels) if v}}
                       for name, w in writers.items()},
        }
        unlearnt = unlearnt_classes(counts.sum(axis=(0, 1)), info["splits"])
        if unlearnt:
            log.warning("%s", unlearnt)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def unlearnt_classes(labelled: Sequence[int], splits: dict) -> str | None:
    """What to say of classes the labels hold and no training patch does, else None: a network
    trained on the dataset alone cannot learn them, and its report cannot tell, since it checks
    the classes the training patches hold.

    Parameters
    ----------
    labelled : sequence of int
        Labelled pixels of each class code (index = code) on the image, as the dataset reads the
        labels (those over ``--min-margin`` with ``--margin``).
    splits : dict
        ``{split: {"class_pixels": {"code": px}}}`` of the patches kept (``dataset.json``'s).

    Examples
    --------
    >>> splits = {"train": {"class_pixels": {"3": 900}}, "val": {"class_pixels": {"1": 40, "3": 80}},
    ...           "test": {"class_pixels": {}}}
    >>> print(unlearnt_classes([0, 52, 0, 1000], splits))  # doctest: +NORMALIZE_WHITESPACE
    class 1 Water (52 labelled px, 40 in validation/test patches) is in no training patch: a model
    trained on this dataset alone cannot learn it; try another --seed or a smaller --block-size
    >>> unlearnt_classes([0, 52, 0, 1000], {**splits, "train": {"class_pixels": {"1": 12, "3": 900}}}) is None
    True
    """
    train = {int(k) for k, n in splits["train"]["class_pixels"].items() if n}
    missing = [c for c, n in enumerate(labelled) if n and c not in train]
    if not missing:
        return None
    held = [sum(splits[k]["class_pixels"].get(str(c), 0) for k in SPLITS if k != "train") for c in missing]
    listed = ", ".join(f"{c} {class_name(c)} ({labelled[c]} labelled px, {h} in validation/test patches)"
                       for c, h in zip(missing, held))
    one = len(missing) == 1
    dropped = " (or a lower --min-labelled: patches too little labelled are dropped)" if 0 in held else ""
    return (f"{'class' if one else 'classes'} {listed} {'is' if one else 'are'} in no training patch: a model "
            f"trained on this dataset alone cannot learn {'it' if one else 'them'}; try another --seed or a smaller "
            f"--block-size{dropped}")


def rule_labels(path, field: str | None = None, mapping=None) -> bool:
    """Whether training labels are the rules' own: the masks ``LabelMaskExport`` writes, or a class map
    of the project's legend, read as they are.

    The training report compares the network with its labels and calls them "the rules" only
    then: the analyst's own polygons in codes 1-5 are labels, not rules, and a comparison with
    them says nothing of whether the network beats the classifier.

    Parameters
    ----------
    path : path
        The ``--labels`` file: a vector layer (its fields are checked for ``LabelMaskExport``'s
        ``class_id``, ``class_name`` and ``area_m2``, read by `field` ``class_id``) or a raster
        (its first band for the ``class_id`` band and class names the classifier writes, as GDAL
        reads them or in the header SNAP's GeoTIFF writer adds).
    field : str, optional
        The class attribute read from a vector layer.
    mapping : dict, optional
        A label mapping: labels of another legend are never the rules' masks.

    Examples
    --------
    >>> rule_labels("my_polygons.gpkg", mapping={7: 1})
    False
    """
    if mapping:
        return False
    path = Path(path)
    if _is_raster(path):
        from snap_operators.io import open_product

        # the project's reader names bands and classes from GDAL's tags or SNAP's GeoTIFF header alike
        try:
            first = next(iter(open_product(path).bands.values()))
        except SnapPcError:  # unreadable here: the label reader says why when it reads them
            return False
        return first.name == "class_id" and bool(first.classes)
    if field not in (None, "class_id"):
        return False
    import fiona
    import fiona.errors

    from snap_operators.ops.label_mask_export import FIELDS

    try:
        with fiona.open(str(path)) as src:
            names = set(src.schema["properties"])
    except (fiona.errors.FionaError, OSError):  # unreadable here: the label reader says why when it reads them
        return False
    # a Shapefile keeps 10 characters of a name (class_name fits)
    return {f[:10] for f in FIELDS if f != "area_km2"} <= {n[:10] for n in names}


def _is_raster(path: Path) -> bool:
    import rasterio

    try:
        with rasterio.open(path):
            return True
    except rasterio.errors.RasterioIOError:
        return False


def _confident_labels(read_labels, path: Path, crs, transform, width, height, min_margin: float):
    """`read_labels` with labels whose margin in raster `path` is under `min_margin` (or NaN) set to 0."""
    import rasterio
    from rasterio.windows import Window

    from snap_operators.grid.regrid import same_transform

    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise DatasetError(f"cannot read the margin raster {path}: {exc}") from None
    with ds:
        names = list(ds.descriptions)
        if "margin" in names:
            band = names.index("margin") + 1
        elif ds.count == 1:
            band = 1
        else:
            raise DatasetError(f"{path} has {ds.count} bands and none named 'margin' (bands: "
                               f"{', '.join(n or '?' for n in names)}); write the classifier's margin band "
                               "(ProgressiveClassifier outputMargin=true)")
        same_crs = ds.crs is not None and crs is not None and rasterio.crs.CRS.from_user_input(crs) == ds.crs
        if ds.width != width or ds.height != height or not same_crs or not same_transform(ds.transform, transform):
            raise DatasetError(f"the margin raster {path} ({ds.width} x {ds.height} px) is not on the image's grid "
                               f"({width} x {height} px, same CRS and origin): write it from the same image")

    def read_margin(window: Window) -> np.ndarray:
        with rasterio.open(path) as src:  # one stripe of rows per call
            return src.read(band, window=window, boundless=True, fill_value=np.nan).astype(np.float32)

    def read(window: Window) -> np.ndarray:
        y = read_labels(window)
        return np.where(read_margin(window) >= min_margin, y, 0).astype(y.dtype)

    return read


def _label_reader(path: Path, crs, transform, width, height, field, mapping=None):
    from snap_operators.io.reference import ReferenceDataError, reference_reader

    try:
        return reference_reader(path, crs, transform, width, height, field, require_overlap=True, role="labels",
                                mapping=mapping)
    except ReferenceDataError as exc:
        raise DatasetError(str(exc)) from None


def label_mapping(info: dict) -> dict | None:
    """The ``--label-mapping`` a dataset was built with (``dataset.json``), as :func:`build_dataset` took it."""
    pairs = info.get("label_mapping")
    return {k: v for k, v in pairs} if pairs else None


def _recording_foreign_codes(read_labels):
    """``(read, foreign)``: `read_labels` that adds to the set `foreign` every code it reads that is
    neither a class id nor unlabelled (0, 254, 255; -1: not mapped)."""
    known = np.array([*CLASS_NAMES, 0, -1, MASKED, NO_DATA])
    foreign: set[int] = set()

    def read(window):
        y = read_labels(window)
        odd = y[~np.isin(y, known)]  # a few comparisons per pixel; sorting every window cost more
        if odd.size:
            foreign.update(np.unique(odd).tolist())
        return y

    return read, foreign


def _nothing_labelled(path: Path, image, mapping, margin) -> str:
    """Why labels that overlap the image give it no class pixel, and what to check."""
    why = ["the masks of a class map masked (cloud, shadow, snow: 254) or unclassified (0) everywhere hold "
           "those codes only"]
    if mapping:
        why.append("--label-mapping maps none of the codes they hold there")
    if margin is not None:
        why.append("none is above --min-margin in the --margin raster")
    return (f"labels {path} give no pixel of {image} a class ({class_list()}): nothing to learn ("
            + "; ".join(why) + ")")


def _check_codes(foreign: set[int], path: Path) -> None:
    """Refuse labels with codes the network has no class for: such pixels would be left out
    without a word (and codes over 255 would wrap round to another class in the uint8 shards)."""
    if not foreign:
        return
    codes = sorted(foreign)
    listed = ", ".join(map(str, codes[:12])) + (", ..." if len(codes) > 12 else "")
    raise DatasetError(f"labels {path} hold codes {listed}, which are not the network's classes "
                       f"({class_list()}): map them with --label-mapping CODE:ID pairs (e.g. {codes[0]}:ID,...; "
                       "codes not mapped are left unlabelled)")


def lacking_classes(mapping, option: str, what: str) -> str | None:
    """Why `mapping` (codes or names -> class ids, given as `option`) cannot be used: it maps `what`
    to class ids the network does not have; None when every id is the network's (or, in a group of
    a reference's classes, 0, the map's Unclassified: :func:`snap_operators.io.reference.class_groups`)."""
    ids: set[int] = set()
    for v in (mapping or {}).values():
        ids |= set(v) - {0} if isinstance(v, tuple) else {v}
    lacking = sorted(ids - set(CLASS_NAMES))
    if not lacking:
        return None
    return (f"{option} maps {what} to class(es) {', '.join(map(str, lacking))}, which the network does not have "
            f"(its classes: {class_list()})")


def load_dataset_info(folder) -> dict:
    """``dataset.json`` of a dataset folder, checked."""
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        raise DatasetError(f"{folder} is not a dataset folder (no {INFO_FILE}; build one with `snap-pc dataset`)")
    try:
        info = json.loads(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from None
    if info.get("format") != "snap-pc-dataset/1":
        raise DatasetError(f"{path}: unknown dataset format {info.get('format')!r}")
    for split in SPLITS:
        for shard in info["splits"][split]["shards"]:
            for key in ("x", "y"):
                if not (Path(folder) / shard[key]).is_file():
                    raise DatasetError(f"dataset {folder} is incomplete: {shard[key]} is missing")
    return info


def open_split(folder, info: dict, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Memory-mapped ``x`` and ``y`` shards of one split (nothing read yet)."""
    folder = Path(folder)
    shards = info["splits"][split]["shards"]
    return ([np.load(folder / s["x"], mmap_mode="r") for s in shards],
            [np.load(folder / s["y"], mmap_mode="r") for s in shards])
