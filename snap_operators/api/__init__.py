"""The Python API: graphs, products as ``xarray.Dataset``, the science operators as functions.

The top layer: built on the engine, the operators and the command line's
graph builder, re-implementing none of them. Functions only, no state: what
goes in is what a call uses.

* :func:`run_graph`: a graph file run as ``snap-pc run`` runs it; returns the paths written.
* :func:`open_product`: any input the engine reads, as a lazy Product.
* :func:`to_xarray`, :func:`from_xarray`: Product <-> ``xarray.Dataset`` (lazy
  Dask arrays, rioxarray CRS and transform, nodata, class legends).
* :func:`resample`, :func:`cloud_mask`, :func:`spectral_indices`,
  :func:`progressive_classify`, :func:`unet_predict`, :func:`rule_fusion`: the operators of the
  graphs, on a Dataset (or a Product), with the graphs' tile functions.
* :func:`label_masks`, :func:`area_table`: what the graphs write from a class band.
* :func:`change_detection`, :func:`change_tables`: the change between two class maps, and its
  transition matrix and gain/loss tables.

xarray and rioxarray (the ``xarray`` extra) are needed only by the
conversions; TensorFlow and esa_snappy are never imported. See
``docs/python.md``.

Example
-------
>>> from snap_operators import api
>>> ds = api.to_xarray(api.open_product("s2.tif"))                               # doctest: +SKIP
>>> classes = api.progressive_classify(api.spectral_indices(ds, ["NDVI", "MNDWI", "BI2", "NDBI",
...                                     "NGBDI", "PANTEX", "BSI"]))              # doctest: +SKIP
"""

from __future__ import annotations

from .graphs import GraphRun, run_graph
from .operators import (
    area_table,
    change_detection,
    change_tables,
    cloud_mask,
    label_masks,
    progressive_classify,
    resample,
    rule_fusion,
    spectral_indices,
    unet_predict,
)
from .products import open_product
from .xarray import from_xarray, to_xarray

__all__ = [
    "GraphRun",
    "area_table",
    "change_detection",
    "change_tables",
    "cloud_mask",
    "from_xarray",
    "label_masks",
    "open_product",
    "progressive_classify",
    "resample",
    "rule_fusion",
    "run_graph",
    "spectral_indices",
    "to_xarray",
    "unet_predict",
]
