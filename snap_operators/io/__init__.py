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
=================================================  ==========================

Every reader returns a lazy :class:`~snap_operators.core.product.Product`: only
headers are read; pixels are read chunk by chunk when computed.
"""

from __future__ import annotations

import logging
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
}

_SAFE_MTD = re.compile(r"^MTD_MSIL(1C|2A)\.xml$", re.IGNORECASE)
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")


def detect_format(path: str | Path) -> str:
    """The reader for `path`: ``geotiff``, ``dimap``, ``safe`` or ``bandfolder``.

    Raises
    ------
    ProductReadError
        If `path` does not exist or is not a known product.
    """
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
    raise ProductReadError(
        f"{p}: unknown product format (expected .tif/.tiff, .dim, a Sentinel-2 .SAFE folder, .zip or "
        "MTD_MSIL1C.xml/MTD_MSIL2A.xml, or a folder of *_B02.jp2/*_B02.tif band files)"
    )


def _format_reader(format_name: str) -> str:
    key = format_name.strip().upper()
    if key in FORMAT_NAMES:
        return FORMAT_NAMES[key]
    if key.startswith("SENTINEL-2-MSI") or key.startswith("S2_MSI"):
        return "safe"
    known = sorted({"GeoTIFF", "GeoTIFF-BigTIFF", "COG", "BEAM-DIMAP", "SENTINEL-2-MSI-MultiRes", "BandFolder"})
    raise ProductReadError(f"unknown format name '{format_name}'; known: {', '.join(known)}")


def open_product(
    path: str | Path,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    band_names: Iterable[str] | None = None,
    pixel_region=None,
    format_name: str | None = None,
) -> Product:
    """Open a product lazily, whatever its format.

    Parameters
    ----------
    path : str or Path
        GeoTIFF/COG, BEAM-DIMAP ``.dim``, Sentinel-2 ``.SAFE`` folder / ``.zip``
        / ``MTD_MSIL*.xml``, or a folder of per-band files.
    tile_size : int
        Chunk edge in pixels.
    band_names : list of str, optional
        Bands to keep, in this order (default: all).
    pixel_region : str or tuple of int, optional
        ``(x, y, width, height)`` in scene pixels (the finest band's grid);
        coarser bands of a multi-size product get the window that covers it.
    format_name : str, optional
        SNAP format name forcing a reader (``GeoTIFF``, ``BEAM-DIMAP``,
        ``SENTINEL-2-MSI-MultiRes``...).

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
    p = Path(path).expanduser()
    kind = _format_reader(format_name) if format_name else detect_format(p)
    if not p.exists():
        raise ProductReadError(f"file not found: {p}")
    kwargs = dict(tile_size=tile_size, band_names=band_names, pixel_region=pixel_region)
    try:
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


def input_paths(path: str | Path) -> set[str]:
    """Resolved paths a product at `path` reads (to keep writers off them).

    The path itself, and for folders (``.SAFE``, band folders) and
    BEAM-DIMAP products every file they contain.
    """
    p = Path(path).expanduser().resolve()
    found = {str(p)}
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
