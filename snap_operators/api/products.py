"""Reading products: whatever the engine's ``Read`` node reads."""

from __future__ import annotations

from typing import Any

from ..core.product import Product
from ..io import open_product as _open_product


def open_product(source: Any, **options: Any) -> Product:
    """Open a product lazily, as a graph's ``Read`` node does (only headers are read).

    Parameters
    ----------
    source : str, Path or any input :func:`snap_operators.io.open_product` accepts
        GeoTIFF/COG, Sentinel-2 ``.SAFE`` folder, ``.zip`` or
        ``MTD_MSIL*.xml``, BEAM-DIMAP ``.dim``, a folder of band files (and
        whatever else the reader learns to read: it is handed over as is).
    **options
        The reader's options: ``tile_size`` (chunk edge in pixels, default
        1024, as ``snap-pc run --tile-size``; the classifier's scene sample
        reads whole chunks, so use the same value to reproduce a graph run),
        ``band_names``, ``pixel_region`` (``(x, y, width, height)``),
        ``format_name``.

    Returns
    -------
    Product
        Bands of physical values as lazy Dask arrays; may be multi-size
        (a SAFE's 10/20/60 m bands): :func:`~snap_operators.api.resample` it
        before :func:`~snap_operators.api.to_xarray`.

    Raises
    ------
    ProductReadError
        Missing, unknown or corrupt input (one line naming it).

    Examples
    --------
    >>> from snap_operators.api import open_product
    >>> product = open_product("s2.tif", tile_size=512)    # doctest: +SKIP
    >>> product.band_names                                 # doctest: +SKIP
    ['B2', 'B3', 'B4', 'B5', 'B6', 'B7', 'B8', 'B8A', 'B11', 'B12']
    """
    return _open_product(source, **options)
