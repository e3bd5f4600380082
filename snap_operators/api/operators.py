"""The science operators as functions of an ``xarray.Dataset`` (or a Product).

Each function builds the engine's operator on a Product made from its
input (:func:`~snap_operators.api.xarray.from_xarray`), with parameters
converted exactly as from a graph file, calls ``initialize()`` and converts
the lazy target back: the same tile functions, the same checks and the same
results as the graph node, without re-implementing anything. A Product in
gives a Product out, a Dataset in a Dataset out.

Parameters are the operator's, as ``snap-pc OP -h`` and the graph XML name
them (``minArea``), or in snake_case (``min_area``); None keeps the
operator's default. The defaults are the operator's own, not a graph's: the
shipped Sentinel-2 graph sets some (``Resample``'s ``referenceBand=B2``,
``SpectralIndices``' ``copySourceBands=true``); pass them to get its results.

When pixels are read or computed:

* never by :func:`resample`, :func:`cloud_mask`, :func:`unet_predict`,
  :func:`rule_fusion`, :func:`change_detection` and :func:`to_xarray`: they return lazy arrays;
* a spread sample of chunks, at call time, by :func:`spectral_indices` (the
  input checks of ``checkInputs``) and :func:`progressive_classify`
  (scene-adaptive thresholds);
* the whole scene by :func:`label_masks`, :func:`area_table` and :func:`change_tables` (each
  computes what it needs chunk by chunk; ``.persist()`` a small result first
  to compute it once) and by xarray's own ``.compute()``/``.plot()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..core.context import ExecutionContext
from ..core.errors import ParameterError
from ..core.operator import Operator, get_operator
from ..core.product import Product
from ._options import python_hints, raw_parameters, snake_case
from .xarray import from_xarray, to_xarray


def _operator(alias: str, data, params: dict[str, Any], context: ExecutionContext | None = None) -> Operator:
    """Operator `alias` on `data` (Dataset or Product; or a dict of them by source name, for operators
    with named sources) with `params`, initialized (``op.target`` set)."""
    named = data if isinstance(data, dict) else {"sourceProduct": data}
    sources = {k: d if isinstance(d, Product) else from_xarray(d) for k, d in named.items()}
    cls = get_operator(alias)
    raw = raw_parameters(cls.spec, params)
    op = cls.create(sources, raw, context=context or ExecutionContext(), node_id=alias)
    op.target = op.initialize()
    return op


def _same_kind(data, product: Product):
    """`product` as what the caller gave: a Product, or a Dataset."""
    return product if isinstance(data, Product) else to_xarray(product)


def resample(data, **params: Any):
    """Put every band on one grid: the ``Resample`` node.

    Parameters
    ----------
    data : xarray.Dataset or Product
        A Product may be multi-size (a Sentinel-2 SAFE); a Dataset has one
        grid already (the call then changes nothing unless a target grid is
        given).
    **params
        ``Resample``'s parameters: exactly one of ``referenceBand``,
        ``targetWidth`` + ``targetHeight``, ``targetResolution`` (CRS units);
        ``upsampling`` (Nearest, Bilinear, Bicubic), ``downsampling`` (First,
        Min, Max, Mean, Median), ``bandResamplings``... (``snap-pc Resample -h``).
        The Sentinel-2 graph uses ``referenceBand="B2", upsampling="Bilinear",
        downsampling="Mean"``.

    Returns
    -------
    xarray.Dataset or Product
        As `data`; every band on the target grid, lazily (bands already on it
        are the same arrays).

    Examples
    --------
    >>> from snap_operators.api import open_product, resample, to_xarray
    >>> ds = to_xarray(resample(open_product("S2.SAFE"), referenceBand="B2",
    ...                         upsampling="Bilinear", downsampling="Mean"))  # doctest: +SKIP
    """
    return _same_kind(data, _operator("Resample", data, params).target)


def cloud_mask(data, **params: Any):
    """Clouds, cloud shadows and snow as a band ``cloud_mask``: the ``CloudMask`` node.

    Parameters
    ----------
    data : xarray.Dataset or Product
        Sentinel-2 bands on one grid (reflectance, float).
    **params
        ``CloudMask``'s parameters: ``method`` (auto, scl, s2cloudless,
        spectral, none), ``copySourceBands`` (default true: the source bands
        are kept), buffers and distances in metres (``snap-pc CloudMask -h``,
        ``docs/cloud_mask.md``).

    Returns
    -------
    xarray.Dataset or Product
        The source bands and ``cloud_mask`` (uint8 ``(rows, cols)``: 0 clear,
        1 cloud, 2 cloud shadow, 3 snow/ice, 255 no-data; its legend in the
        ``classes`` attribute), which :func:`progressive_classify` and
        :func:`unet_predict` apply.

    Examples
    --------
    >>> ds = cloud_mask(ds)                          # doctest: +SKIP
    >>> ds.cloud_mask.attrs["flag_meanings"]         # doctest: +SKIP
    'Clear Cloud Cloud_shadow Snow/ice'
    """
    return _same_kind(data, _operator("CloudMask", data, params).target)


def spectral_indices(data, indices: Iterable[str] | str | None = None, **params: Any):
    """Spectral and backscatter indices, one float32 band each: the ``SpectralIndices`` node.

    Parameters
    ----------
    data : xarray.Dataset or Product
        Sentinel-2 reflectance bands (``B2`` or ``B02``...) and/or
        Sentinel-1 backscatter (``Sigma0_VV``, ``VV_db``...) on one grid.
    indices : list of str or str, optional
        ``["NDVI", "MNDWI"]`` or ``"NDVI,MNDWI"`` (``docs/indices.md``);
        default: the operator's default list.
    **params
        ``saviL``, ``sarUnit``, ``copySourceBands`` (default false: only the
        index bands; the Sentinel-2 graph sets it true so the classifier also
        sees the cloud mask), ``checkInputs``, ``maxDateGap``.

    Returns
    -------
    xarray.Dataset or Product
        One float32 ``(rows, cols)`` band per index, named as the index, NaN
        where undefined (and the source bands with ``copySourceBands``).

    Raises
    ------
    OperatorError
        A band an index needs is missing, or the input checks fail
        (digital numbers instead of reflectance, ...): one line.

    Examples
    --------
    >>> idx = spectral_indices(ds, ["NDVI", "MNDWI"])    # doctest: +SKIP
    >>> float(idx.NDVI.mean())                           # doctest: +SKIP
    0.31
    """
    if indices is not None:
        params = {**params, "indices": [indices] if isinstance(indices, str) else list(indices)}
    return _same_kind(data, _operator("SpectralIndices", data, params).target)


def progressive_classify(data, rules: str | os.PathLike = "mosul-5class", **params: Any):
    """Land-cover classes by ordered threshold stages: the ``ProgressiveClassifier`` node.

    Parameters
    ----------
    data : xarray.Dataset or Product
        The index bands the rules read (``spectral_indices``), and, when
        present, the cloud mask band ``cloud_mask`` (``maskBand``): its cloud,
        shadow and snow pixels get class 254, as in the graph.
    rules : str or Path
        A preset (``mosul-5class``, ``mosul-5class-s1s2``, ``coastal-4class``)
        or a YAML/JSON rule file (``docs/rules.md``).
    **params
        ``samplesFile``, ``samplesClassField``, ``samplesMapping``, ``outputStage``,
        ``outputMargin``, ``otsuSubsampling``, ``sampleTiles``, ``maskBand``. The area table is
        :func:`area_table`, not ``areaTableFile``.

    Returns
    -------
    xarray.Dataset or Product
        ``class_id`` (uint8 ``(rows, cols)``: 0 unclassified, class ids, 254
        masked, 255 no-data; the legend in its attributes) and, with
        ``outputStage``, ``stage``; with ``outputMargin``, ``margin`` (float32,
        how far from a threshold that would change the class, in scene
        interquartile ranges: :mod:`snap_operators.science.margin`).

    Notes
    -----
    Scene-adaptive thresholds are found now, from a spread sample of chunks;
    the class map is computed when used. The graph's warning about a large
    masked share comes from its writing pass, which happens elsewhere here:
    :func:`area_table` lists the masked pixels.

    Examples
    --------
    >>> classes = progressive_classify(idx, rules="mosul-5class")   # doctest: +SKIP
    >>> classes.class_id.attrs["flag_meanings"].split()[:2]         # doctest: +SKIP
    ['Unclassified', 'Water']
    """
    if params.get("areaTableFile") or params.get("area_table_file"):
        raise ParameterError("ProgressiveClassifier: areaTableFile is written by a graph's pass; here use "
                             "area_table(classes, path)")
    params = {k: v for k, v in params.items() if k not in ("areaTableFile", "area_table_file")}
    return _same_kind(data, _operator("ProgressiveClassifier", data, {**params, "rules": rules}).target)


def unet_predict(data, model: str | os.PathLike | None = None, **params: Any):
    """Land cover from a trained Attention U-Net (ONNX): the ``AttentionUNetInference`` node.

    Parameters
    ----------
    data : xarray.Dataset or Product
        The bands the model reads, by name (the shipped model: B2, B3, B4,
        B8, B11, NDVI, MNDWI, NDBI, BSI: ``spectral_indices(...,
        copySourceBands=True)``), and the cloud mask band when present.
    model : str or Path, optional
        An ONNX model written by ``snap-pc train``; None: the pretrained
        Sentinel-2 model shipped with the package. Runs on ONNX Runtime:
        TensorFlow is never imported.
    **params
        ``device`` (auto, cpu, cuda), ``tileSize``, ``halo``, ``blend``,
        ``testTimeAugmentation`` (none, flips, dihedral), ``batchSize``,
        ``threads``, ``outputProbabilities``, ``outputConfidence``, ``maskBand``.

    Returns
    -------
    xarray.Dataset or Product
        ``class_id`` (uint8 ``(rows, cols)``, the model's legend), and
        ``probability_<id>`` / ``confidence`` (float32) when asked for;
        predicted lazily, tile by tile, when computed.

    Examples
    --------
    >>> pred = unet_predict(idx)                   # doctest: +SKIP
    >>> pred.class_id.dtype                        # doctest: +SKIP
    dtype('uint8')
    """
    if model is not None:
        if params.get("modelFile") or params.get("model_file"):
            raise ParameterError("AttentionUNetInference: give the model once, as model= or as modelFile=")
        params = {**params, "modelFile": model}
    return _same_kind(data, _operator("AttentionUNetInference", data, params).target)


def rule_fusion(rules, network, **params: Any):
    """The rules' class where their margin is large, the network's elsewhere: the ``RuleFusion`` node.

    Parameters
    ----------
    rules : xarray.Dataset or Product
        :func:`progressive_classify` with ``outputMargin=True`` (``class_id`` and ``margin``).
    network : xarray.Dataset or Product
        :func:`unet_predict` on the same grid (``class_id``).
    **params
        ``minMargin`` (scene interquartile ranges; default 0.03, ``inf``: the network's map),
        ``sourceBand``, ``outputSource``.

    Returns
    -------
    xarray.Dataset or Product
        ``class_id`` (uint8 ``(rows, cols)``, the network's legend) and, with ``outputSource``,
        ``fusion_source`` (1 the rules' class, 2 the network's, 0 no-data); lazy.

    Examples
    --------
    >>> fused = rule_fusion(progressive_classify(idx, outputMargin=True), unet_predict(idx))  # doctest: +SKIP
    """
    return _same_kind(network, _operator("RuleFusion", {"rules": rules, "network": network}, params).target)


def label_masks(data, path: str | os.PathLike, *, overwrite: bool = False, **params: Any) -> list[Path]:
    """Write a class band's regions as polygons with class and area: the ``LabelMaskExport`` node.

    Parameters
    ----------
    data : xarray.Dataset or Product
        Holds the class band (``class_id`` of :func:`progressive_classify`
        or :func:`unet_predict`, or ``sourceBand``).
    path : str or Path
        The vector file; its extension names the format (``.gpkg``,
        ``.shp``, ``.geojson``/``.json``, ``.fgb``).
    overwrite : bool
        Replace existing files (default False, as ``snap-pc run``).
    **params
        ``minArea`` (m², the minimum mapping unit; the Sentinel-2 graph's is
        500), ``connectivity``, ``simplify``, ``layerName``,
        ``includeUnclassified``, ``includeMasked``, ``areaTable``,
        ``formatName``, ``sourceBand``.

    Returns
    -------
    list of pathlib.Path
        Every file written: the vector file, its QGIS style ``.qml`` and
        ``<stem>_areas.csv`` (areas of the polygons, after the sieve), plus a
        Shapefile's parts. The class band is computed here, chunk by chunk.

    Examples
    --------
    >>> label_masks(classes, "labels.gpkg", minArea=500)     # doctest: +SKIP
    [PosixPath('labels.gpkg'), PosixPath('labels.qml'), PosixPath('labels_areas.csv')]
    """
    from ..core.streaming import write_all

    if "file" in params:
        raise ParameterError("LabelMaskExport: the vector file is the argument 'path', not 'file'")
    context = ExecutionContext(overwrite=bool(overwrite))
    with python_hints():
        op = _operator("LabelMaskExport", data, {**params, "file": os.fspath(path)}, context)
        if not op.is_sink:
            return []
        written = op.output_files()
        # As the engine writes a sink: outputs locked, stale staged files removed, all published or none.
        write_all(written, (op.open() for _ in (1,)), context, op.prepare)  # opened after prepare()
    return [Path(p) for p in op.outputs]


def area_table(data, path: str | os.PathLike | None = None, *, band: str = "class_id", overwrite: bool = False):
    """Pixels and area per class of a class band: the classifier's raster area table.

    Parameters
    ----------
    data : xarray.Dataset or Product
        Holds the class band (uint8 class ids, its legend in the attributes).
    path : str or Path, optional
        Also write the table as CSV there, the file a graph's
        ``-PareaTable=`` writes.
    band : str
        The class band.
    overwrite : bool
        Replace an existing CSV (default False).

    Returns
    -------
    pandas.DataFrame
        Columns ``class_id`` (nullable int; <NA> on the Total row),
        ``class_name``, ``pixels``, ``raster_area_km2``: 0 Unclassified,
        every class of the legend, the Total, then the masked pixels (254)
        when there are any, not counted in the Total. Every pixel counts
        (no minimum mapping unit), each with its true area (per row in a
        geographic CRS). The class band is computed here, chunk by chunk.

    Examples
    --------
    >>> area_table(classes)                                  # doctest: +SKIP
       class_id                           class_name  pixels  raster_area_km2
    0         0                         Unclassified       0           0.0000
    1         1                                Water    3696           0.3696
    ...
    """
    import pandas as pd

    from ..core.errors import ProductWriteError
    from ..core.legend import LAND_COVER, MASKED, NO_DATA, UNCLASSIFIED
    from ..core.outputs import output_problem
    from ..core.streaming import store
    from ..grid.areas import AreaAccumulator, class_areas, write_area_csv
    from ..grid.crs import is_geographic

    product = data if isinstance(data, Product) else from_xarray(data)
    b = product.band(band)
    if b.dtype != np.uint8:  # class ids 0..255, as the classifier's table counts them
        raise ParameterError(f"area_table: band '{band}' is {b.dtype}, not a uint8 class band")
    context = ExecutionContext(overwrite=bool(overwrite))
    target = None if path is None else Path(os.path.expanduser(os.fspath(path))).absolute()
    with python_hints():
        if target is not None:
            problem = output_problem([target], context)
            if problem:
                raise ProductWriteError(f"area_table: {problem}")
        # The classifier's sink counts the same way (AreaAccumulator over the class chunks).
        acc = AreaAccumulator(b.shape, per_row=is_geographic(product.crs))
        store([b.data], [acc], context)
        # The rows of the band's legend (the project's without one); 0, 254 and 255 get their own rows.
        classes = [c for c in b.classes or LAND_COVER if c.value not in (UNCLASSIFIED, MASKED, NO_DATA)]
        rows = class_areas(acc.counts, b.transform, product.crs, b.shape, classes)
        if target is not None:
            write_area_csv(rows, target)
    return pd.DataFrame({
        "class_id": pd.array([r.class_id for r in rows], dtype="Int64"),
        "class_name": [r.name for r in rows],
        "pixels": [r.pixels for r in rows],
        "raster_area_km2": [r.area_km2 for r in rows],
    })


def change_detection(before, after, **params: Any):
    """The change of class between two class maps: the ``ChangeDetection`` node's ``change`` band.

    Parameters
    ----------
    before, after : xarray.Dataset or Product
        Class maps of one legend (:func:`progressive_classify`, :func:`unet_predict`, or maps read
        back). `after` is collocated onto the grid of `before` (nearest neighbour) when the grids differ.
    **params
        ``sourceBand`` (empty: ``class_id``, else the only band with classes).

    Returns
    -------
    xarray.Dataset or Product
        As `before`: ``change`` (uint8 ``(rows, cols)``: ``from * 10 + to`` where the class changed,
        0 unchanged, 255 where either date has no data or is masked; uint16, ``from * 100 + to`` and
        65535 for class ids above 9), with one category per transition; lazy.

    Examples
    --------
    >>> moved = change_detection(classes_2019, classes_2023)             # doctest: +SKIP
    >>> int((moved.change == 31).sum())    # pixels of trees that became water  # doctest: +SKIP
    """
    return _same_kind(before, _operator("ChangeDetection", {"before": before, "after": after}, params).target)


def change_tables(before, after, *, matrix_path: str | os.PathLike | None = None,
                  gain_loss_path: str | os.PathLike | None = None, overwrite: bool = False, **params: Any):
    """The transition matrix and per-class gain, loss and net change of two class maps.

    The tables ``ChangeDetection`` writes as ``matrixFile`` and ``gainLossFile`` (the change
    detection graph's ``<output>.matrix.csv`` and ``<output>.gain_loss.csv``), counted chunk by
    chunk over :func:`change_detection`'s pixels, each with its true area (per row in a
    geographic CRS). A warning says so when clouds hide more than half of what both dates cover.

    Parameters
    ----------
    before, after : xarray.Dataset or Product
        Class maps, as :func:`change_detection` takes them.
    matrix_path, gain_loss_path : str or Path, optional
        Also write the tables as CSV there (both published together, or neither).
    overwrite : bool
        Replace existing CSV files (default False, as ``snap-pc run``).
    **params
        ``sourceBand``.

    Returns
    -------
    tuple of pandas.DataFrame
        The matrix: ``from_class_id``, ``from_class_name``, ``to_class_id``, ``to_class_name``,
        ``change_code``, ``pixels``, ``area_km2``, one row per pair of the legend (unchanged pairs
        with code 0), then the non-empty no-data, outside-legend and masked cells (ids <NA>). The
        gain/loss: ``class_id`` (<NA> on the Total row), ``class_name``, ``before_km2``,
        ``after_km2``, ``unchanged_km2``, ``gain_km2``, ``loss_km2``, ``net_km2``, ``swap_km2``
        and the same counts in pixels, over the pixels of a legend class on both dates.

    Examples
    --------
    >>> matrix, gain_loss = change_tables(classes_2019, classes_2023)    # doctest: +SKIP
    >>> gain_loss.set_index("class_name")["net_km2"]                   # doctest: +SKIP
    """
    import pandas as pd

    from ..core.streaming import store, write_all
    from ..ops import change_detection as cd

    files = {"matrixFile": matrix_path, "gainLossFile": gain_loss_path}
    for name, argument in (("matrixFile", "matrix_path"), ("gainLossFile", "gain_loss_path")):
        if name in params or snake_case(name) in params:
            raise ParameterError(f"ChangeDetection: the table file is the argument '{argument}', not '{name}'")
    context = ExecutionContext(overwrite=bool(overwrite))
    with python_hints():
        op = _operator("ChangeDetection", {"before": before, "after": after},
                       {**params, **{k: os.fspath(v) for k, v in files.items() if v is not None}}, context)
        op.print_tables = False
        if op.is_sink:
            write_all(op.output_files(), (op.open() for _ in (1,)), context, op.prepare)
            pixels, km2 = op.tables
        else:
            counter = op.pair_counter()
            store([op.pairs], [counter], context)
            pixels, km2 = op.counted(counter)
            op.warn_masked(pixels)
    ids = {"from_class_id", "to_class_id", "change_code", "class_id"}

    def frame(fields, rows):
        return pd.DataFrame({f: pd.array([r[i] for r in rows], dtype="Int64") if f in ids else [r[i] for r in rows]
                             for i, f in enumerate(fields)})

    return (frame(cd.MATRIX_FIELDS, cd.matrix_rows(pixels, km2, op.classes, op.base)),
            frame(cd.GAIN_LOSS_FIELDS, cd.gain_loss_rows(pixels, km2, op.classes)))
