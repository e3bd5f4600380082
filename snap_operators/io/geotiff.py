"""GeoTIFF / Cloud-Optimized GeoTIFF reader.

Conventions, matching what the ``Write`` operator emits:

* band names come from the band descriptions, else ``band_1``, ``band_2``...;
* per-band no-data, scale and offset (GDAL metadata) are applied, so bands
  hold physical values (scaled integers become float32, no-data -> NaN);
* dataset tags go into the metadata element ``TIFF_Metadata``; product times
  come from the tags ``PRODUCT_START_TIME``/``PRODUCT_STOP_TIME`` (ISO 8601),
  else ``ACQUISITION_DATE``, else ``TIFFTAG_DATETIME``;
* the band tag ``VALID_PIXEL_EXPRESSION`` is SNAP's valid-pixel expression
  (``Band.valid_expression``; SNAP itself keeps it in its own TIFF tag);
* a band with a color table and a band tag ``CLASS_NAMES`` (a JSON object
  ``{"value": "name"}``) is a class band: ``Band.classes`` lists its
  categories with their colors;
* a GeoTIFF written by SNAP (File > Export > GeoTIFF, gpt's ``Write`` with
  ``formatName=GeoTIFF``) is read as SNAP reads it back: SNAP stores neither
  band names nor scaling where GDAL looks, but puts the product's DIMAP header
  in its private TIFF tag 65000 (:func:`snap_header`), from which come the band
  names, scaling factor and offset (a Sentinel-2 band's DN -> reflectance,
  with the offset of processing baseline 04.00), no-data values, units,
  wavelengths, valid-pixel expressions, class codings, the virtual bands and
  the product's name, type, times and metadata. Without it every band would
  read as ``band_<n>`` holding raw counts.

A plain multi-band GeoTIFF is read as stored (only its own scales/offsets
are applied); Sentinel-2 DN -> reflectance scaling is done by the band-folder
and SAFE readers, which know the data are Sentinel-2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable

import rasterio
import rasterio.errors
from affine import Affine
from rasterio.windows import Window

from ..core.errors import ProductReadError
from ..core.product import DEFAULT_TILE_SIZE, ClassInfo, MetadataElement, Product
from .dimap import DimapBandInfo, DimapHeader, parse_dimap_header, virtual_band
from .raster_bands import BandSource, build_bands, damage_hint, error_text, open_quietly, select_names
from .times import parse_datetime

log = logging.getLogger(__name__)

#: Tags holding product times, in order of preference.
START_TAGS = ("PRODUCT_START_TIME", "ACQUISITION_DATE", "TIFFTAG_DATETIME")
STOP_TAGS = ("PRODUCT_STOP_TIME",)

#: Band tag holding SNAP's valid-pixel expression of a band.
VALID_EXPRESSION_TAG = "VALID_PIXEL_EXPRESSION"

#: SNAP's private TIFF tag with the product's DIMAP header (snap-geotiff's
#: ``Utils.PRIVATE_BEAM_TIFF_TAG_NUMBER``).
SNAP_HEADER_TAG = 65000
#: Largest header read from it: a Sentinel-2 product's, with its whole metadata tree, is a few MB;
#: a tag claiming more is not read into memory.
SNAP_HEADER_MAX_BYTES = 64 << 20


def open_raster(path: str | Path):
    """``rasterio.open`` with a one-line :class:`ProductReadError` on failure."""
    try:
        return open_quietly(str(path))
    except (rasterio.errors.RasterioError, OSError) as exc:
        text = error_text(exc)
        raise ProductReadError(f"cannot open {path}: {text}{damage_hint(text)}") from None


@contextlib.contextmanager
def gdal_warnings():
    """Collect (and hold back) the GDAL warnings rasterio logs meanwhile; yields the list of their messages.

    A GeoTIFF cut short often still opens: GDAL only warns that it could not
    read some tags ("IO error during reading of GDALMetadata; tag ignored")
    and goes on without the band names and georeferencing. The caller decides
    whether a warning means the file is damaged.
    """
    messages: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        messages.append(record.getMessage())
        return False

    logger = logging.getLogger("rasterio._env")
    logger.addFilter(keep)
    try:
        yield messages
    finally:
        logger.removeFilter(keep)


#: GDAL warnings of tags a file does not hold in full.
_DAMAGED_TAGS = re.compile(r"IO error during reading|apparently corrupt", re.I)


def check_complete(ds, path: str | Path, warned: Iterable[str] = ()) -> None:
    """Refuse a GeoTIFF cut short (an interrupted copy or download) when it is opened.

    Such a file often opens: its header and first blocks are there, while the
    band descriptions GDAL wrote last may be gone, so the bands read as
    ``band_1``... and the first error would blame a missing band. GDAL
    writes the blocks in order, so reading the last block of the last band
    (one block, a few milliseconds) finds the truncation.
    """
    damaged = [m for m in warned if _DAMAGED_TAGS.search(m)]
    if damaged:
        raise ProductReadError(f"{path} is truncated or damaged (GDAL: {' '.join(damaged[0].split())}): its band "
                               "names and georeferencing cannot be read; copy or download it again")
    if ds.driver != "GTiff" or not ds.count:
        return
    bh, bw = ds.block_shapes[-1]
    row, col = (ds.height - 1) // bh * bh, (ds.width - 1) // bw * bw
    window = Window(col, row, min(bw, ds.width - col), min(bh, ds.height - row))
    try:
        ds.read(ds.count, window=window)
    except (rasterio.errors.RasterioError, OSError) as exc:
        size = os.path.getsize(path) if os.path.isfile(path) else None
        raise ProductReadError(
            f"{path} is truncated or damaged ({f'{size} bytes; ' if size is not None else ''}its last block cannot "
            f"be read: {error_text(exc)}): copy or download it again") from None


def georeferencing(ds) -> tuple[Any, Affine | None]:
    """``(crs, transform)`` of an open dataset; transform None when not georeferenced."""
    crs = ds.crs
    transform = ds.transform
    if crs is None and transform == Affine.identity() and not ds.gcps[0]:
        return None, None
    return crs, transform


def class_infos(ds, index: int) -> tuple[ClassInfo, ...] | None:
    """Categories of band `index` (1-based) from its ``CLASS_NAMES`` tag.

    Colors come from the band's color table; a GeoTIFF holds one only for
    band 1 of 8/16-bit files, so other class bands take the project legend's
    color for their value (grey for values outside it).
    """
    raw = ds.tags(index).get("CLASS_NAMES")
    if not raw:
        return None
    try:
        cmap = ds.colormap(index)
    except ValueError:
        from ..core.legend import LAND_COVER

        cmap = {c.value: c.color for c in LAND_COVER}
    try:
        names = json.loads(raw)
        if not isinstance(names, dict):
            raise ValueError("not a JSON object")
        classes = []
        for key, entry in names.items():
            value = int(key)
            if isinstance(entry, dict):
                name, desc = str(entry.get("name", key)), str(entry.get("description", ""))
            else:
                name, desc = str(entry), ""
            color = tuple(int(c) for c in cmap.get(value, (128, 128, 128, 255))[:3])
            classes.append(ClassInfo(value, name, color, desc))
    except (ValueError, TypeError) as exc:
        log.warning("%s: band %d: ignoring malformed CLASS_NAMES tag (%s)", ds.name, index, exc)
        return None
    return tuple(sorted(classes, key=lambda c: c.value))


def _wavelength(ds, index: int) -> float | None:
    tags = ds.tags(index)
    for key in ("WAVELENGTH", "wavelength"):
        if key in tags:
            try:
                return float(tags[key])
            except ValueError:
                pass
    try:
        um = ds.tags(index, ns="IMAGERY").get("CENTRAL_WAVELENGTH_UM")
        return float(um) * 1000.0 if um else None
    except (ValueError, rasterio.errors.RasterioError):
        return None


def band_name(description: str | None, index: int) -> str:
    """Band name from a description, else ``band_<index>`` (1-based)."""
    return description.strip() if description and description.strip() else f"band_{index}"


def _unique(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        candidate, k = n, 2
        while candidate in out:
            candidate, k = f"{n}_{k}", k + 1
        out.append(candidate)
    return out


def band_sources(ds, path: str, header: DimapHeader | None = None) -> list[BandSource]:
    """Descriptions of all bands of an open dataset (physical values as stored).

    With SNAP's `header` (:func:`snap_header`, one that fits the file:
    :func:`_fitting_header`), band ``i`` is its ``i``-th band with data (its
    virtual bands have none in the file), as SNAP's GeoTIFF reader pairs them.
    """
    _, transform = georeferencing(ds)
    stored = _stored_bands(header) if header is not None else [None] * ds.count
    names = _unique(info.name if info is not None else band_name(ds.descriptions[i], i + 1)
                    for i, info in enumerate(stored))
    sources = []
    for i, info in enumerate(stored):
        index = i + 1
        scale = ds.scales[i] if ds.scales[i] is not None else 1.0
        offset = ds.offsets[i] if ds.offsets[i] is not None else 0.0
        tags = ds.tags(index)
        source = BandSource(
            name=names[i],
            path=path,
            index=index,
            shape=(ds.height, ds.width),
            file_dtype=ds.dtypes[i],
            transform=transform,
            scale=float(scale),
            offset=float(offset),
            nodata=ds.nodatavals[i],
            unit=ds.units[i] or None,
            description=tags.get("DESCRIPTION") or None,
            wavelength=_wavelength(ds, index),
            classes=class_infos(ds, index),
            valid_expression=tags.get(VALID_EXPRESSION_TAG) or None,
        )
        sources.append(source if info is None else _as_snap_reads(source, info, path))
    return sources


def _stored_bands(header: DimapHeader) -> list[DimapBandInfo]:
    """The header's bands with data in the file, in file order (its virtual bands have none)."""
    return [b for b in header.bands if not b.is_virtual]


def _fitting_header(header: DimapHeader | None, ds, path: Path) -> DimapHeader | None:
    """`header` if it lists as many bands with data as the file holds, else None (with a warning)."""
    if header is not None and len(_stored_bands(header)) != ds.count:
        log.warning("%s: SNAP's header lists %d bands with data, the file holds %d: its header is not used",
                    path, len(_stored_bands(header)), ds.count)
        return None
    return header


def _as_snap_reads(source: BandSource, info: DimapBandInfo, path: str) -> BandSource:
    """`source` with what SNAP's header says of the band (SNAP writes its raw counts)."""
    if info.log10_scaled:
        log.warning("%s: band %s is log10-scaled in SNAP's header; read as its stored values", path, info.name)
    return dataclasses.replace(
        source,
        scale=info.scaling_factor if not info.log10_scaled else 1.0,
        offset=info.scaling_offset if not info.log10_scaled else 0.0,
        nodata=info.no_data_value if info.no_data_used else source.nodata,
        unit=info.unit or source.unit,
        description=info.description or source.description,
        wavelength=info.wavelength or source.wavelength,
        classes=tuple(info.classes) if info.classes else source.classes,
        valid_expression=info.valid_expression or source.valid_expression,
    )


def snap_header(path: str | Path) -> DimapHeader | None:
    """The DIMAP header SNAP's GeoTIFF writer puts in tag 65000 of `path`, if any.

    SNAP's GeoTIFF reader builds the product from it (band names, scaling,
    no-data, virtual bands, metadata) and takes only the georeferencing from
    the GeoTIFF tags; GDAL does not read the tag (its SNAP_TIFF driver covers
    single-band geolocation-array files only), so it is read here with
    tifffile. None for any other file; a header that cannot be parsed is
    logged and ignored.

    Examples
    --------
    >>> snap_header("no_such_file.tif") is None
    True
    """
    path = Path(path)
    if not path.is_file():
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(SNAP_HEADER_TAG)
            if tag is None or tag.dtype != 2:  # ASCII
                return None
            if tag.count > SNAP_HEADER_MAX_BYTES:
                log.warning("%s: tag %d claims %d bytes, more than a SNAP header holds: not read; bands are named "
                            "as GDAL reads them", path, SNAP_HEADER_TAG, tag.count)
                return None
            tif.filehandle.seek(tag.valueoffset)
            raw = tif.filehandle.read(tag.count)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError):
        return None
    if b"<Dimap_Document" not in raw:
        return None
    try:
        return parse_dimap_header(raw.rstrip(b"\0"), path, embedded=True)
    except ProductReadError as exc:
        log.warning("%s: SNAP's DIMAP header in the file cannot be read (%s); bands are named as GDAL reads them",
                    path, exc)
        return None


def _with_virtual_bands(bands: list, header: DimapHeader, path: Path) -> list:
    """`bands` with the header's virtual bands computable from them, in the header's order."""
    known = {b.name: b for b in bands}
    shape = bands[0].shape
    for info in header.bands:
        if info.is_virtual:
            # as large as the bands read (a pixel region shrinks them)
            band = virtual_band(dataclasses.replace(info, height=shape[0], width=shape[1]), known, path)
            if band is not None:
                known[band.name] = band
    order = [b.name for b in header.bands if b.name in known]
    return [known[n] for n in order]


def product_times(tags: dict[str, str]):
    """``(start, stop)`` datetimes (UTC) from dataset tags; None where absent."""
    start = next((parse_datetime(tags[k]) for k in START_TAGS if tags.get(k)), None)
    stop = next((parse_datetime(tags[k]) for k in STOP_TAGS if tags.get(k)), None)
    return start, stop or start


def tiff_metadata(ds, names: list[str]) -> MetadataElement:
    """Metadata root with the dataset tags (``TIFF_Metadata``) and per-band tags."""
    tiff = MetadataElement("TIFF_Metadata", dict(ds.tags()))
    tiff.attributes.setdefault("driver", ds.driver)
    for i, name in enumerate(names, start=1):
        tags = ds.tags(i)
        if tags:
            tiff.elements.append(MetadataElement(name, dict(tags)))
    return MetadataElement("metadata", elements=[tiff])


def read_geotiff(
    path: str | Path,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    band_names: Iterable[str] | None = None,
    pixel_region=None,
) -> Product:
    """Open a GeoTIFF (or COG, or any single raster GDAL reads) lazily.

    Parameters
    ----------
    path : str or Path
    tile_size : int
        Chunk edge in pixels.
    band_names : list of str, optional
        Bands to keep, in this order (default: all).
    pixel_region : str or tuple, optional
        ``(x, y, width, height)`` in pixels.

    Returns
    -------
    Product
        Bands of physical values; no pixel is read but the last block, to
        refuse a file cut short (:func:`check_complete`).
    """
    path = Path(path)
    with gdal_warnings() as warned, open_raster(path) as ds:
        crs, _ = georeferencing(ds)
        header = _fitting_header(snap_header(path), ds, path)
        sources = band_sources(ds, str(path), header)
        tags = ds.tags()
        metadata = tiff_metadata(ds, [s.name for s in sources])
        # build_bands refuses hostile headers first; only then is a block read. With SNAP's
        # header every band is built (lazily) first: a virtual band asked for reads others.
        bands = build_bands(sources, tile_size=tile_size, band_names=None if header is not None else band_names,
                            pixel_region=pixel_region, where=str(path))
        check_complete(ds, path, warned)
    for message in warned:  # held back only to look at them first
        log.warning("%s: %s", path, message)
    start, stop = product_times(tags)
    if header is not None:
        bands = _with_virtual_bands(bands, header, path)
        by_name = {b.name: b for b in bands}
        bands = [by_name[n] for n in select_names(list(by_name), band_names, str(path))]
        metadata = MetadataElement(header.metadata.name, dict(header.metadata.attributes),
                                   [*header.metadata.elements, *metadata.elements])
        start, stop = start or header.start_time, stop or header.stop_time
    product = Product(
        name=header.name if header is not None and header.name else path.stem,
        product_type=tags.get("PRODUCT_TYPE") or (header.product_type if header is not None else "") or "GeoTIFF",
        crs=crs,
        start_time=start,
        stop_time=stop,
        metadata=metadata,
        file_location=str(path),
        **({"description": header.description} if header is not None and header.description else {}),
    )
    for band in bands:
        product.add_band(band)
    return product
