"""Product readers and writers.

:func:`open_product` is the single entry point for reading; it looks at what
the path is and hands it to the matching reader:

=================================================  ==========================
input                                              reader
=================================================  ==========================
``*.tif``, ``*.tiff`` (GeoTIFF, COG), ``*.jp2``    :mod:`.geotiff`
``*.dim`` (BEAM-DIMAP)                             :mod:`.dimap`
``*.SAFE`` folder, ``*.zip`` holding one,          :mod:`.safe` (Sentinel-2
``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``            L1C / L2A)
folder of ``*_B02.jp2`` / ``*_B8A.tif`` /          :mod:`.bandfolder`
``*_VV.tif`` files
STAC Item ``*.json``, its http(s) URL, a           :mod:`.stac` (Sentinel-2
:class:`pystac.Item` (or an ItemCollection of      assets, COGs read in place)
one item)
=================================================  ==========================

Every reader returns a lazy :class:`~snap_operators.core.product.Product`: only
headers are read; pixels are read chunk by chunk when computed.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Iterable

from ..core.errors import ProductReadError, SnapPcError
from ..core.product import DEFAULT_TILE_SIZE, Product

log = logging.getLogger(__name__)

#: SNAP format names (``Read``'s ``formatName``) -> reader.
FORMAT_NAMES = {
    "GEOTIFF": "geotiff",
    "GEOTIFF-BIGTIFF": "geotiff",
    "COG": "geotiff",
    "GDAL-GTIFF-READER": "geotiff",
    "GDAL-COG-READER": "geotiff",
    "JP2": "geotiff",
    "BEAM-DIMAP": "dimap",
    "SENTINEL-2-MSI": "safe",
    "SAFE": "safe",
    "BANDFOLDER": "bandfolder",
    "STAC": "stac",
}

_SAFE_MTD = re.compile(r"^MTD_MSIL(1C|2A)\.xml$", re.IGNORECASE)
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")


def detect_format(path: str | Path) -> str:
    """The reader for `path`: ``geotiff``, ``dimap``, ``safe``, ``bandfolder`` or ``stac``.

    An http(s) URL is a STAC item (the only product read from a URL); a
    ``.json`` file is one when it holds a STAC Item or ItemCollection.

    Raises
    ------
    ProductReadError
        If `path` does not exist or is not a known product.
    """
    from .stac import is_url, stac_type

    if is_url(path):
        return "stac"
    p = Path(path)
    if not p.exists():
        raise ProductReadError(f"file not found: {p}")
    if p.is_dir():
        if p.suffix.upper() == ".SAFE" or any((p / n).is_file() for n in ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml")):
            return "safe"
        return "bandfolder"
    suffix = p.suffix.lower()
    if suffix in _RASTER_SUFFIXES:
        return "geotiff"
    if suffix == ".dim":
        return "dimap"
    if suffix == ".zip" or _SAFE_MTD.match(p.name):
        return "safe"
    if suffix == ".json":
        if stac_type(p):
            return "stac"
        raise ProductReadError(f"{p}: unknown product format (a .json file, but not a STAC Item or ItemCollection: "
                               "no \"type\": \"Feature\" with a \"stac_version\")")
    raise ProductReadError(
        f"{p}: unknown product format (expected .tif/.tiff, .dim, a Sentinel-2 .SAFE folder, .zip or "
        "MTD_MSIL1C.xml/MTD_MSIL2A.xml, a folder of *_B02.jp2/*_B02.tif band files, or a STAC item .json)"
    )


def _format_reader(format_name: str) -> str:
    key = format_name.strip().upper()
    if key in FORMAT_NAMES:
        return FORMAT_NAMES[key]
    if key.startswith("SENTINEL-2-MSI") or key.startswith("S2_MSI"):
        return "safe"
    known = sorted({"GeoTIFF", "GeoTIFF-BigTIFF", "COG", "BEAM-DIMAP", "SENTINEL-2-MSI-MultiRes", "BandFolder",
                    "STAC"})
    raise ProductReadError(f"unknown format name '{format_name}'; known: {', '.join(known)}")


def open_product(
    path,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    band_names: Iterable[str] | None = None,
    pixel_region=None,
    format_name: str | None = None,
) -> Product:
    """Open a product lazily, whatever its format.

    Parameters
    ----------
    path : str, Path, pystac.Item or pystac.ItemCollection
        GeoTIFF/COG, BEAM-DIMAP ``.dim``, Sentinel-2 ``.SAFE`` folder / ``.zip``
        / ``MTD_MSIL*.xml``, a folder of per-band files, or a STAC Item: its
        ``.json`` file, http(s) URL or pystac object (an ItemCollection of
        one item; :mod:`.stac`).
    tile_size : int
        Chunk edge in pixels.
    band_names : list of str, optional
        Bands to keep, in this order (default: all).
    pixel_region : str or tuple of int, optional
        ``(x, y, width, height)`` in scene pixels (the finest band's grid);
        coarser bands of a multi-size product get the window that covers it.
    format_name : str, optional
        SNAP format name forcing a reader (``GeoTIFF``, ``BEAM-DIMAP``,
        ``SENTINEL-2-MSI-MultiRes``, ``STAC``...).

    Returns
    -------
    Product
        Bands hold physical values; no pixel has been read.

    Raises
    ------
    ProductReadError
        Missing, unknown or corrupt input, or an unknown band name; the
        message is one line and names the path.
    """
    from .stac import is_url

    if is_url(path) or not isinstance(path, (str, os.PathLike)):
        # A STAC item URL or pystac object: nothing on disk to look at.
        p = path.strip() if isinstance(path, str) else path
        kind = "stac"
        if format_name and _format_reader(format_name) != "stac":
            raise ProductReadError(f"{p}: formatName '{format_name}' reads files; a URL or pystac object is read as "
                                   "a STAC item (formatName STAC)")
    else:
        p = Path(path).expanduser()
        kind = _format_reader(format_name) if format_name else detect_format(p)
        if not p.exists():
            raise ProductReadError(f"file not found: {p}")
    kwargs = dict(tile_size=tile_size, band_names=band_names, pixel_region=pixel_region)
    try:
        if kind == "stac":
            from .stac import read_stac

            return read_stac(p, **kwargs)
        if kind == "geotiff":
            from .geotiff import read_geotiff

            return read_geotiff(p, **kwargs)
        if kind == "bandfolder":
            from .bandfolder import read_band_folder

            return read_band_folder(p, **kwargs)
        if kind == "safe":
            from .safe import read_safe

            return read_safe(p, **kwargs)
        try:
            from .dimap import read_dimap
        except ImportError as exc:
            raise ProductReadError(f"{p}: the BEAM-DIMAP reader is not available ({exc})") from None
        product = read_dimap(p, tile_size=tile_size)
        return subset_product(product, band_names=band_names, pixel_region=pixel_region, where=str(p))
    except SnapPcError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        # A reader let a library error through: still one line naming the input.
        from .raster_bands import error_text

        raise ProductReadError(f"cannot read {p}: {error_text(exc)}") from None


def subset_product(product: Product, band_names=None, pixel_region=None, where: str | None = None) -> Product:
    """`product` limited to some bands and a scene-pixel region, lazily.

    Used for readers that cannot window natively; the bands' arrays are
    sliced (no pixel is read) and their transforms shifted.
    """
    from ..grid.region import parse_pixel_region
    from .raster_bands import band_windows, select_names, window_transform

    where = where or product.name
    names = select_names(product.band_names, band_names, where)
    region = parse_pixel_region(pixel_region, error=ProductReadError)
    if region is None and names == product.band_names:
        return product
    windows = None
    if region is not None:
        windows = band_windows({b.name: (b.shape, b.transform) for b in product.bands.values()}, region, where)
    bands = []
    for name in names:
        band = product.bands[name]
        if windows is not None:
            win = windows[name]
            band = band.select(
                lambda a, win=win: a[win.toslices()],
                transform=None if band.transform is None else window_transform(win, band.transform),
            )
        bands.append(band)
    out = product.copy(bands=bands)
    out.file_location = product.file_location
    return out


def input_paths(path) -> set[str]:
    """Resolved paths a product at `path` reads (to keep writers off them).

    The path itself, and for folders (``.SAFE``, band folders) and
    BEAM-DIMAP products every file they contain, for a STAC item file or
    pystac object the local files of its band assets; none for a URL (its
    JSON is not fetched again).
    """
    from .stac import is_url, local_asset_files

    if is_url(path):
        return set()
    if not isinstance(path, (str, os.PathLike)):
        return local_asset_files(path)
    p = Path(path).expanduser().resolve()
    found = {str(p)}
    if p.suffix.lower() == ".json" and p.is_file():
        found.update(local_asset_files(p))
    roots = [p] if p.is_dir() else []
    if p.suffix.lower() == ".dim":
        roots.append(p.with_suffix(".data"))
    if _SAFE_MTD.match(p.name):
        roots.append(p.parent)
    for root in roots:
        if root.is_dir():
            found.add(str(root))
            found.update(str(f) for f in root.rglob("*") if f.is_file())
    return found
