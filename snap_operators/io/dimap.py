"""BEAM-DIMAP, SNAP's native format: a ``.dim`` XML header plus a ``.data``
folder holding one ENVI raster (``.hdr`` + raw ``.img``) per band.

Reading is lazy: :func:`read_dimap` parses the header and wraps every band
file in a Dask array whose chunks each read only their window (big-endian
samples, as SNAP writes them, are byte-swapped and scaled per chunk).
:class:`DimapWriter` streams a product into the same layout under staged
names (:mod:`snap_operators.core.staging`), checks it on
:meth:`DimapWriter.finish` and renames it into place on
:meth:`DimapWriter.publish`, the ``.data`` folder first and the ``.dim``
last, so a ``.dim`` never points at a half-written folder. Band files a
header names must lie inside the product's ``.data`` folder: a ``.dim``
pointing elsewhere (``../``, absolute paths) is refused.

Element names follow SNAP's ``DimapProductConstants``/``DimapHeaderWriter``.
Not modelled (skipped when reading): tie-point grids, flag codings, masks
and vector data; virtual bands are computed from their expression when it
reads only other bands.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import re
import shutil
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import dask.array as da
import numpy as np
from affine import Affine
from dask.base import tokenize

from ..core.errors import ProductReadError, ProductWriteError
from ..core.product import (
    DEFAULT_TILE_SIZE,
    Band,
    ClassInfo,
    MetadataElement,
    Product,
    StoredValues,
    chunks_for,
)
from ..core.staging import staged_path
from ..core.xmlsafe import parse_untrusted_xml
from .raster_bands import check_transform

log = logging.getLogger(__name__)

#: DIMAP version written (SNAP 10-13 write 2.13.0).
DIMAP_VERSION = "2.13.0"
DIM_EXTENSION = ".dim"
DATA_EXTENSION = ".data"

#: SNAP ``ProductData`` type names <-> numpy dtypes (native byte order).
_SNAP_TYPES = {
    "int8": np.dtype("int8"),
    "uint8": np.dtype("uint8"),
    "int16": np.dtype("int16"),
    "uint16": np.dtype("uint16"),
    "int32": np.dtype("int32"),
    "uint32": np.dtype("uint32"),
    "int64": np.dtype("int64"),
    "float32": np.dtype("float32"),
    "float64": np.dtype("float64"),
}
#: ENVI ``data type`` codes (ENVI has no signed byte: SNAP writes int8 as 1 too).
_ENVI_CODES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 3, "float32": 4, "float64": 5, "uint16": 12, "uint32": 13}
_INT_METADATA_TYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_FLOAT_METADATA_TYPES = {"float32", "float64"}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
#: Characters SNAP refuses in node names (``ProductNode.isValidNodeName``).
_INVALID_NODE_CHARS = re.compile(r'[\\/:*?"<>|]')


# --- times -------------------------------------------------------------------


def parse_snap_time(text: str | None) -> _dt.datetime | None:
    """Parse SNAP's UTC format ``dd-MMM-yyyy HH:mm:ss[.ffffff]`` (aware, UTC).

    Returns None for empty or unparsable text.
    """
    if not text or not text.strip():
        return None
    s = text.strip()
    m = re.fullmatch(r"(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?", s)
    if not m:
        return None
    day, mon, year, hh, mm, ss, frac = m.groups()
    try:
        month = _MONTHS.index(mon.upper()) + 1
    except ValueError:
        return None
    micro = int((frac or "0")[:6].ljust(6, "0"))
    return _dt.datetime(int(year), month, int(day), int(hh), int(mm), int(ss), micro, tzinfo=_dt.timezone.utc)


def format_snap_time(t: _dt.datetime) -> str:
    """Format a datetime as SNAP does (``09-JUL-2007 11:14:55.493954``, UTC).

    Naive datetimes are taken as UTC.
    """
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc)
    return f"{t.day:02d}-{_MONTHS[t.month - 1]}-{t.year:04d} {t:%H:%M:%S}.{t.microsecond:06d}"


# --- header model --------------------------------------------------------------


@dataclass
class DimapBandInfo:
    """One ``Spectral_Band_Info`` of a ``.dim`` header.

    ``width``/``height`` are in pixels; ``transform`` maps pixel corners to
    CRS coordinates (None without a map CRS); ``no_data_value`` is the *raw*
    (unscaled) value, as SNAP stores it.
    """

    index: int
    name: str
    data_type: str
    width: int
    height: int
    description: str = ""
    unit: str | None = None
    wavelength: float | None = None
    scaling_factor: float = 1.0
    scaling_offset: float = 0.0
    log10_scaled: bool = False
    no_data_used: bool = False
    no_data_value: float = 0.0
    transform: Affine | None = None
    classes: list[ClassInfo] | None = None
    data_file: Path | None = None
    expression: str | None = None  # virtual bands only
    valid_expression: str | None = None  # VALID_MASK_TERM

    @property
    def is_virtual(self) -> bool:
        return self.expression is not None

    @property
    def physical_dtype(self) -> np.dtype:
        """Dtype of the physical values (SNAP's geophysical data type)."""
        raw = _SNAP_TYPES[self.data_type]
        if not self.is_scaled or raw.kind == "f":
            return raw
        return np.dtype("float64") if raw.itemsize >= 4 else np.dtype("float32")

    @property
    def is_scaled(self) -> bool:
        return self.scaling_factor != 1.0 or self.scaling_offset != 0.0 or self.log10_scaled


@dataclass
class DimapHeader:
    """What a ``.dim`` file says, without reading any pixel."""

    path: Path
    name: str
    product_type: str
    description: str
    width: int
    height: int
    version: str
    start_time: _dt.datetime | None
    stop_time: _dt.datetime | None
    crs: Any
    transform: Affine | None
    bands: list[DimapBandInfo] = field(default_factory=list)
    metadata: MetadataElement = field(default_factory=lambda: MetadataElement("metadata"))


def read_dimap_header(path: str | os.PathLike) -> DimapHeader:
    """Parse a ``.dim`` header (no band data needed).

    Parameters
    ----------
    path : str or path-like
        The ``.dim`` file.

    Returns
    -------
    DimapHeader

    Raises
    ------
    ProductReadError
        The file is missing, not XML, unsafe XML, or not a DIMAP document.
    """
    path = Path(path)
    if not path.is_file():
        raise ProductReadError(f"BEAM-DIMAP header not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProductReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_dimap_header(data, path)


def parse_dimap_header(data: bytes, path: Path, embedded: bool = False) -> DimapHeader:
    """Parse the DIMAP document `data` read from `path`.

    Parameters
    ----------
    data : bytes
        A ``Dimap_Document``.
    path : Path
        Where it comes from, for messages (and the ``.data`` folder of a ``.dim``).
    embedded : bool
        The header SNAP's GeoTIFF writer puts in the file
        (:func:`snap_operators.io.geotiff.snap_header`): as SNAP's GeoTIFF reader
        does, its geocoding is left out (the GeoTIFF's own tags hold it) and so are
        its ``Data_File`` entries (the pixels are in the TIFF).

    Raises
    ------
    ProductReadError
        Not XML, unsafe XML, or not a DIMAP document.
    """
    root = parse_untrusted_xml(data, str(path), malformed="not a valid BEAM-DIMAP header")
    if root.tag != "Dimap_Document":
        raise ProductReadError(f"{path}: not a BEAM-DIMAP header (root element <{root.tag}>)")

    width = _int(root.findtext("Raster_Dimensions/NCOLS"), path, "NCOLS")
    height = _int(root.findtext("Raster_Dimensions/NROWS"), path, "NROWS")
    crs, scene_transform, band_transforms = (None, None, {}) if embedded else _parse_geocoding(root, path)
    codings = _parse_index_codings(root)
    palettes = _parse_palettes(root)
    files = {}
    for df in () if embedded else root.iterfind("Data_Access/Data_File"):
        href = df.find("DATA_FILE_PATH")
        idx = df.findtext("BAND_INDEX")
        if href is not None and href.get("href") and idx is not None:
            files[int(idx)] = (path.parent / _data_file_href(href.get("href"), path)).with_suffix(".img")

    bands = []
    for sbi in root.iterfind("Image_Interpretation/Spectral_Band_Info"):
        info = _parse_band(sbi, width, height, path)
        if crs is not None:
            itm = sbi.findtext("IMAGE_TO_MODEL_TRANSFORM")
            info.transform = (
                _parse_matrix(itm, path) if itm else band_transforms.get(info.index, scene_transform)
            )
        coding = sbi.findtext("INDEX_CODING_NAME")
        if coding and coding.strip() in codings:
            info.classes = _classes(codings[coding.strip()], palettes.get(info.index, {}))
        info.data_file = files.get(info.index)
        bands.append(info)

    production = root.find("Production")
    start = stop = None
    product_type = ""
    if production is not None:
        product_type = (production.findtext("PRODUCT_TYPE") or "").strip()
        start = parse_snap_time(production.findtext("PRODUCT_SCENE_RASTER_START_TIME"))
        stop = parse_snap_time(production.findtext("PRODUCT_SCENE_RASTER_STOP_TIME"))
    fmt = root.find("Metadata_Id/METADATA_FORMAT")
    metadata = MetadataElement("metadata")
    md_root = root.find("Dataset_Sources/MDElem")
    if md_root is not None:
        metadata = _parse_mdelem(md_root)
    return DimapHeader(
        path=path,
        name=(root.findtext("Dataset_Id/DATASET_NAME") or path.stem).strip(),
        product_type=product_type,
        description=(root.findtext("Dataset_Use/DATASET_COMMENTS") or "").strip(),
        width=width,
        height=height,
        version=(fmt.get("version", "") if fmt is not None else ""),
        start_time=start,
        stop_time=stop,
        crs=crs,
        transform=scene_transform,
        bands=bands,
        metadata=metadata,
    )


def _data_file_href(href: str, path: Path) -> str:
    """`href` if it names a file inside a ``.data`` folder beside the header `path`.

    A header is data, not a licence to read anywhere: ``../`` or an absolute
    path would make a product read (and a graph then overwrite or publish)
    files outside it.

    Raises
    ------
    ProductReadError
    """
    parts = href.replace("\\", "/").split("/")
    if (href.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", href) or ".." in parts or len(parts) < 2
            or not parts[0].endswith(DATA_EXTENSION)):
        raise ProductReadError(f"{path}: band file '{href}' lies outside the product's {DATA_EXTENSION} folder")
    return "/".join(parts)


def _int(text: str | None, path: Path, tag: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ProductReadError(f"{path}: missing or invalid <{tag}>") from None


def _float(text: str | None, default: float) -> float:
    if text is None or not text.strip():
        return default
    try:
        return float(text.strip())  # Java writes NaN/Infinity; float() reads both
    except ValueError:
        return default


def _bool(text: str | None) -> bool:
    return (text or "").strip().lower() == "true"


def _parse_band(sbi: ET.Element, width: int, height: int, path: Path) -> DimapBandInfo:
    name = (sbi.findtext("BAND_NAME") or "").strip()
    dtype = (sbi.findtext("DATA_TYPE") or "").strip()
    if dtype not in _SNAP_TYPES:
        raise ProductReadError(f"{path}: band '{name}' has unsupported data type '{dtype}'")
    wavelength = _float(sbi.findtext("BAND_WAVELEN"), 0.0)
    unit = (sbi.findtext("PHYSICAL_UNIT") or "").strip() or None
    expression = None
    if _bool(sbi.findtext("VIRTUAL_BAND")):
        expression = (sbi.findtext("EXPRESSION") or "").strip()
    return DimapBandInfo(
        index=_int(sbi.findtext("BAND_INDEX"), path, "BAND_INDEX"),
        name=name,
        data_type=dtype,
        width=int(_float(sbi.findtext("BAND_RASTER_WIDTH"), width)),
        height=int(_float(sbi.findtext("BAND_RASTER_HEIGHT"), height)),
        description=(sbi.findtext("BAND_DESCRIPTION") or "").strip(),
        unit=unit,
        wavelength=wavelength if wavelength > 0 else None,
        scaling_factor=_float(sbi.findtext("SCALING_FACTOR"), 1.0),
        scaling_offset=_float(sbi.findtext("SCALING_OFFSET"), 0.0),
        log10_scaled=_bool(sbi.findtext("LOG10_SCALED")),
        no_data_used=_bool(sbi.findtext("NO_DATA_VALUE_USED")),
        no_data_value=_float(sbi.findtext("NO_DATA_VALUE"), 0.0),
        expression=expression,
        valid_expression=(sbi.findtext("VALID_MASK_TERM") or "").strip() or None,
    )


def _parse_matrix(text: str, path: Path) -> Affine:
    """Java ``AffineTransform.getMatrix`` order ``m00,m10,m01,m11,m02,m12``."""
    try:
        m = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        m = []
    if len(m) != 6:
        raise ProductReadError(f"{path}: invalid IMAGE_TO_MODEL_TRANSFORM '{text.strip()}'")
    return Affine(m[0], m[2], m[4], m[1], m[3], m[5])


def _format_matrix(t: Affine) -> str:
    return ",".join(_jdouble(v) for v in (t.a, t.d, t.b, t.e, t.c, t.f))


def _parse_geocoding(root: ET.Element, path: Path):
    """CRS, scene transform and per-band transforms of a CRS-geocoded product.

    SNAP writes ``<Coordinate_Reference_System><WKT>`` followed by a
    ``<Geoposition>`` holding ``IMAGE_TO_MODEL_TRANSFORM``; multi-size
    products repeat the pair with a ``BAND_INDEX``. Tie-point and pixel
    geocodings (MERIS, S1 SLC) carry no WKT: no CRS, no transform.
    """
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    crs = None
    scene = None
    per_band: dict[int, Affine] = {}
    last_wkt = None
    for el in root:
        if el.tag == "Coordinate_Reference_System":
            wkt = el.findtext("WKT")
            last_wkt = wkt.strip() if wkt and wkt.strip() else None
            if last_wkt and crs is None:
                try:
                    crs = CRS.from_wkt(last_wkt)
                except CRSError as exc:
                    raise ProductReadError(f"{path}: cannot read the CRS WKT ({exc})") from None
        elif el.tag == "Geoposition" and last_wkt:
            itm = el.findtext("IMAGE_TO_MODEL_TRANSFORM")
            if not itm:
                continue
            t = _parse_matrix(itm, path)
            idx = el.findtext("BAND_INDEX")
            if idx is not None and idx.strip():
                per_band[int(idx)] = t
            if scene is None:
                scene = t
    return crs, scene, per_band


def _parse_index_codings(root: ET.Element) -> dict[str, list[tuple[str, int, str]]]:
    codings = {}
    for ic in root.iterfind("Index_Coding"):
        entries = []
        for ix in ic.iterfind("Index"):
            try:
                value = int(float((ix.findtext("INDEX_VALUE") or "").strip()))
            except ValueError:
                continue
            name = (ix.findtext("INDEX_NAME") or "").strip()
            entries.append((name, value, (ix.findtext("INDEX_DESCRIPTION") or "").strip()))
        codings[ic.get("name", "")] = entries
    return codings


def _parse_palettes(root: ET.Element) -> dict[int, dict[int, tuple[tuple[int, int, int], str]]]:
    """Band index -> sample value -> (RGB, label) from ``Image_Display``."""
    palettes = {}
    for bs in root.iterfind("Image_Display/Band_Statistics"):
        idx = bs.findtext("BAND_INDEX")
        if idx is None:
            continue
        points = {}
        for cpp in bs.iterfind("Color_Palette_Point"):
            sample = _float(cpp.findtext("SAMPLE"), math.nan)
            color = cpp.find("COLOR")
            if math.isnan(sample) or color is None:
                continue
            rgb = tuple(int(color.get(c, "0")) for c in ("red", "green", "blue"))
            points[int(round(sample))] = (rgb, (cpp.findtext("LABEL") or "").strip())
        palettes[int(idx)] = points
    return palettes


def _classes(entries, palette) -> list[ClassInfo]:
    out = []
    for k, (name, value, description) in enumerate(entries):
        rgb, label = palette.get(value, (_default_color(k), ""))
        # The palette label keeps characters SNAP forbids in INDEX_NAME.
        out.append(ClassInfo(value=value, name=label or name, color=rgb, description=description))
    return out


def _default_color(k: int) -> tuple[int, int, int]:
    # Golden-angle hues: distinct colours for codings without a palette.
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((k * 0.618033988749895) % 1.0, 0.65, 0.95)
    return (int(r * 255), int(g * 255), int(b * 255))


def _parse_mdelem(el: ET.Element) -> MetadataElement:
    me = MetadataElement(el.get("name", ""))
    for child in el:
        if child.tag == "MDElem":
            me.elements.append(_parse_mdelem(child))
        elif child.tag == "MDATTR":
            value = _attr_value(child.text, child.get("type", "ascii"), child.get("elems"))
            me.attributes[child.get("name", "")] = value
    return me


def _attr_value(text: str | None, type_: str, elems: str | None) -> Any:
    text = text or ""
    if type_ in _INT_METADATA_TYPES or type_ in _FLOAT_METADATA_TYPES:
        conv = int if type_ in _INT_METADATA_TYPES else float
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            values = [conv(p) for p in parts]
        except ValueError:
            return text.strip()
        if elems is not None or len(values) > 1:
            return values
        return values[0] if values else None
    if type_ == "utc":
        return parse_snap_time(text) or text.strip()
    return text


# --- reading -------------------------------------------------------------------


def read_dimap(path: str | os.PathLike, tile_size: int = DEFAULT_TILE_SIZE) -> Product:
    """Open a BEAM-DIMAP product lazily.

    Parameters
    ----------
    path : str or path-like
        The ``.dim`` file.
    tile_size : int
        Chunk edge of the band arrays, in pixels.

    Returns
    -------
    Product
        Bands hold physical values: ``raw * SCALING_FACTOR + SCALING_OFFSET``
        (``10 **`` that when ``LOG10_SCALED``); float results carry NaN where
        the raw value equals an active ``NO_DATA_VALUE``. Virtual bands
        (``EXPRESSION``) are computed lazily from the bands they read; those
        reading anything else (masks, flags, tie-point grids) are skipped
        (logged).

    Raises
    ------
    ProductReadError
        Bad header, or a band's ``.img`` file is missing or too short (e.g. a
        ``.dim`` copied without its ``.data`` folder).
    """
    header = read_dimap_header(path)
    product = Product(
        name=header.name,
        product_type=header.product_type,
        crs=header.crs,
        start_time=header.start_time,
        stop_time=header.stop_time,
        metadata=header.metadata,
        file_location=str(header.path),
        description=header.description,
    )
    for info in header.bands:
        check_transform(info.transform, str(header.path), f"band {info.name}")
        if info.is_virtual:
            band = virtual_band(info, product.bands, header.path)
            if band is not None:
                product.add_band(band)
            continue
        product.add_band(_lazy_band(info, header, tile_size))
    if not product.bands:
        raise ProductReadError(f"{header.path}: no band with data")
    return product


def _lazy_band(info: DimapBandInfo, header: DimapHeader, tile_size: int) -> Band:
    img = info.data_file
    if img is None:
        raise ProductReadError(f"{header.path}: band '{info.name}' has no <Data_File> entry")
    if not img.is_file():
        raise ProductReadError(
            f"{header.path}: data file of band '{info.name}' not found: {img} (is the .data folder missing?)"
        )
    hdr = _read_envi_header(img.with_suffix(".hdr"))
    big_endian = hdr.get("byte order", "1").strip() != "0"
    try:
        offset = int(hdr.get("header offset", "0") or 0)
        size_in_hdr = (int(hdr.get("samples", info.width)), int(hdr.get("lines", info.height)))
    except ValueError:
        raise ProductReadError(f"{img.with_suffix('.hdr')}: not a valid ENVI header") from None
    if size_in_hdr != (info.width, info.height):
        raise ProductReadError(
            f"{img.with_suffix('.hdr')}: size {hdr.get('samples')}x{hdr.get('lines')} does not match "
            f"the header's {info.width}x{info.height} for band '{info.name}'"
        )
    raw = _SNAP_TYPES[info.data_type].newbyteorder(">" if big_endian else "<")
    need = offset + info.width * info.height * raw.itemsize
    size = img.stat().st_size
    if size < need:
        raise ProductReadError(f"{img}: {size} bytes, expected {need} for band '{info.name}' (truncated file?)")
    out_dtype = info.physical_dtype
    nodata = info.no_data_value if info.no_data_used else None
    shape = (info.height, info.width)

    def lazy(out, factor=1.0, add=0.0, log10=False, masked=None):
        reader = _EnviWindowReader(str(img), shape, raw.str, offset, out.str, factor, add, log10, masked)
        name = "dimap-" + tokenize(str(img), img.stat().st_mtime_ns, size, tile_size, out.str, factor, add,
                                   log10, masked)
        return da.from_array(reader, chunks=chunks_for(shape, tile_size), name=name, lock=False,
                             asarray=False, fancy=False, meta=np.empty((0, 0), out))

    data = lazy(out_dtype, info.scaling_factor, info.scaling_offset, info.log10_scaled, nodata)
    stored_dtype = raw.newbyteorder("=")
    stored = StoredValues(lazy(stored_dtype), stored_dtype, info.scaling_factor, info.scaling_offset,
                          info.log10_scaled, None if nodata is None else _stored_no_data(nodata, stored_dtype))
    if out_dtype.kind == "f":
        no_data = math.nan  # the project's float convention
    else:
        no_data = int(nodata) if nodata is not None else None
    return Band(
        name=info.name,
        data=data,
        transform=info.transform,
        no_data=no_data,
        unit=info.unit,
        description=info.description or None,
        wavelength=info.wavelength,
        classes=info.classes,
        stored=stored,
        valid_expression=info.valid_expression,
    )


def _stored_no_data(value: float, dtype: np.dtype) -> float | int:
    """A header's (double) no-data value as a value of the storage type."""
    return int(value) if dtype.kind in "iu" and float(value).is_integer() else float(value)


def virtual_band(info: DimapBandInfo, bands: dict[str, Band], path: Path) -> Band | None:
    """A virtual band computed chunk by chunk from the bands read before it.

    SNAP evaluates virtual-band expressions on physical values, as the band
    arrays here hold them. Expressions that read anything else (masks, flags,
    tie-point grids, later bands) are skipped with a log message.
    """
    from ..core.errors import SnapPcError

    try:
        from ..core.expressions import parse

        expr = parse(info.expression or "")
    except (ImportError, SnapPcError) as exc:
        log.info("%s: virtual band '%s' skipped (%s)", path.name, info.name, exc)
        return None
    names = sorted(expr.symbols)
    missing = [n for n in names if n not in bands]
    shapes = {bands[n].shape for n in names if n in bands}
    if missing or not names or shapes != {(info.height, info.width)}:
        why = f"it reads {', '.join(missing)}" if missing else "its inputs differ in size or it reads no band"
        log.info("%s: virtual band '%s' (%s) skipped: %s", path.name, info.name, info.expression, why)
        return None
    out = info.physical_dtype
    nodata = info.no_data_value if info.no_data_used else None
    ref = bands[names[0]]

    def compute(*blocks, block_info=None):
        (y0, _), (x0, _) = block_info[None]["array-location"]
        value = expr.evaluate(dict(zip(names, blocks)), x0=x0, y0=y0)
        if value.dtype == bool:
            return value.astype(out)
        if out.kind == "f":
            value = value.astype(out)
            if nodata is not None:
                value[value == nodata] = np.nan
            return value
        return np.where(np.isnan(value), nodata or 0, value).astype(out)

    data = da.map_blocks(compute, *[bands[n].data for n in names], dtype=out, meta=np.empty((0, 0), out))
    return Band(
        name=info.name,
        data=data,
        transform=info.transform if info.transform is not None else ref.transform,
        no_data=math.nan if out.kind == "f" else (int(nodata) if nodata is not None else None),
        unit=info.unit,
        description=info.description or None,
        wavelength=info.wavelength,
    )


class _EnviWindowReader:
    """Picklable array-like reading windows of one raw ENVI band file.

    Each ``reader[rows, cols]`` maps the file, copies the window, byte-swaps
    to native order and converts raw counts to physical values.
    """

    ndim = 2

    def __init__(self, path, shape, raw_dtype, offset, out_dtype, factor, add, log10, nodata):
        self.path = path
        self.shape = tuple(shape)
        self.raw_dtype = raw_dtype
        self.offset = offset
        self.out_dtype = out_dtype
        self.dtype = np.dtype(out_dtype)
        self.factor = factor
        self.add = add
        self.log10 = log10
        self.nodata = nodata

    def __getitem__(self, key):
        raw = np.memmap(self.path, dtype=np.dtype(self.raw_dtype), mode="r", offset=self.offset, shape=self.shape)
        try:
            block = np.array(raw[key])
        finally:
            del raw
        block = block.astype(block.dtype.newbyteorder("="), copy=False)
        out = np.dtype(self.out_dtype)
        if out == block.dtype:
            if out.kind == "f" and self.nodata is not None:
                block[block == self.nodata] = np.nan
            return block
        invalid = (block == self.nodata) if self.nodata is not None else None
        # in double, rounded once to the output type (SNAP scales in double)
        values = block.astype(np.float64) * self.factor + self.add
        if self.log10:
            values = np.power(10.0, values)
        values = values.astype(out, copy=False)
        if invalid is not None:
            values[invalid] = np.nan
        return values


def _read_envi_header(path: Path) -> dict[str, str]:
    """``key = value`` pairs of an ENVI ``.hdr`` (lower-case keys); {} if absent."""
    if not path.is_file():
        return {}
    text = path.read_text(encoding="latin-1")
    out: dict[str, str] = {}
    for m in re.finditer(r"^\s*([^=\n]+?)\s*=\s*(\{[^}]*\}|[^\n]*)", text, re.M):
        out[m.group(1).strip().lower()] = m.group(2).strip()
    return out


# --- writing -------------------------------------------------------------------


def dimap_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The ``.dim`` file and ``.data`` folder for an output `path`.

    Like SNAP (``FileUtils.ensureExtension``), ``.dim`` is appended unless the
    name already ends with it.
    """
    path = Path(path)
    if path.suffix.lower() != DIM_EXTENSION:
        path = path.with_name(path.name + DIM_EXTENSION)
    return path, path.with_suffix(DATA_EXTENSION)


def _storage_dtype(dtype: np.dtype) -> np.dtype:
    """A dtype SNAP can store: bool -> uint8, float16 -> float32, 64-bit ints -> float64."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype("uint8")
    if dtype.kind == "f" and dtype.itemsize < 4:
        return np.dtype("float32")
    if dtype.kind in "iu" and dtype.itemsize == 8:
        return np.dtype("float64")
    if dtype.kind not in "iuf":
        raise ProductWriteError(f"BEAM-DIMAP cannot store {dtype} data")
    return dtype.newbyteorder("=")


def _snap_type(dtype: np.dtype) -> str:
    return np.dtype(dtype).name


class DimapWriter:
    """Stream a product into ``<name>.dim`` + ``<name>.data/``.

    Usage: ``targets = w.open()``, store ``w.arrays[k]`` chunk by chunk with
    ``targets[k][(rows, cols)] = block`` (from any number of threads), then
    ``w.finish()`` and ``w.publish()`` (or ``w.commit()`` for both); on
    failure ``w.abort()``.

    Parameters
    ----------
    product : Product
        Bands may differ in size (SNAP's multi-size products): each band
        file has its own size and transform.
    path : str or path-like
        Output ``.dim`` path (``.dim`` appended when missing).
    """

    def __init__(self, product: Product, path: str | os.PathLike):
        if not product.bands:
            raise ProductWriteError(f"product '{product.name}' has no bands to write")
        for name in product.bands:
            if not name.strip() or name.startswith(".") or _INVALID_NODE_CHARS.search(name):
                raise ProductWriteError(
                    f"band name '{name}' cannot be stored in BEAM-DIMAP "
                    "(SNAP node names exclude \\/:*?\"<>| and a leading dot)"
                )
        self.product = product
        self.path, self.data_dir = dimap_paths(path)
        self.dtypes = [_storage_dtype(b.dtype) for b in product.bands.values()]
        for b, dt in zip(product.bands.values(), self.dtypes):
            if dt != b.dtype and b.dtype.kind in "iu" and b.dtype.itemsize == 8:
                log.warning("BEAM-DIMAP: band '%s' (%s) is stored as float64", b.name, b.dtype)
        self.arrays = [
            b.data if b.dtype == dt else b.data.astype(dt) for b, dt in zip(product.bands.values(), self.dtypes)
        ]
        self.outputs: list[str] = []
        self._tmp_dim = staged_path(self.path)
        self._tmp_data = staged_path(self.data_dir)
        # Staged names too: a run killed between hiding the old product and removing it leaves
        # only what the next run's stale clean-up removes.
        self._trash = [staged_path(self.path), staged_path(self.data_dir)]
        self._fds: list[int] = []
        self._cond = threading.Condition()
        self._active = 0
        self._closed = True

    # --- sink protocol ---------------------------------------------------------
    def open(self) -> list["_RawBandTarget"]:
        """Create the temporary ``.data`` folder with empty band files."""
        try:
            self._tmp_data.mkdir()
            self._closed = False
            for band, dtype in zip(self.product.bands.values(), self.dtypes):
                base = self._tmp_data / band.name
                Path(f"{base}.hdr").write_text(_envi_header(band, dtype, self.product), encoding="latin-1")
                fd = os.open(f"{base}.img", os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
                self._fds.append(fd)
                os.ftruncate(fd, band.height * band.width * dtype.itemsize)
        except OSError as exc:
            self.abort()
            raise ProductWriteError(f"cannot create '{self._tmp_data}': {exc.strerror or exc}") from None
        bands = self.product.bands.values()
        return [_RawBandTarget(self, k, b.width, d) for k, (b, d) in enumerate(zip(bands, self.dtypes))]

    def output_files(self) -> list[Path]:
        """The ``.dim`` header and the ``.data`` folder."""
        return [self.path, self.data_dir]

    def finish(self) -> None:
        """Close the band files, check their sizes, write the staged header.

        Raises
        ------
        ProductWriteError
            Closing or writing failed, or a band file came out short.
        """
        try:
            self._close_files()
            for band, dtype in zip(self.product.bands.values(), self.dtypes):
                img = self._tmp_data / f"{band.name}.img"
                need = band.height * band.width * dtype.itemsize
                if img.stat().st_size != need:
                    raise OSError(f"band file '{img.name}' has {img.stat().st_size} of {need} bytes")
            xml = dimap_header_xml(self.product, self.path.name[: -len(DIM_EXTENSION)], self.dtypes)
            with open(self._tmp_dim, "wb") as f:
                f.write(xml)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise ProductWriteError(f"cannot write '{self.path}': {exc.strerror or exc}") from None

    def publish(self) -> None:
        """Move the staged product into place (renames only), replacing an old one."""
        old_dim, old_data = self._trash
        moved = []
        try:
            # Hide any previous product first so no .dim ever names a folder in flux.
            if self.path.exists():
                os.replace(self.path, old_dim)
                moved.append((old_dim, self.path))
            if self.data_dir.exists():
                os.replace(self.data_dir, old_data)
                moved.append((old_data, self.data_dir))
            os.replace(self._tmp_data, self.data_dir)
            try:
                os.replace(self._tmp_dim, self.path)
            except OSError:
                os.replace(self.data_dir, self._tmp_data)
                raise
        except OSError as exc:
            for src, dst in reversed(moved):
                try:
                    os.replace(src, dst)
                except OSError:  # pragma: no cover - best effort
                    log.exception("could not restore '%s'", dst)
            raise ProductWriteError(
                f"cannot move the product into place at '{self.path}': {exc.strerror or exc}"
            ) from None
        _remove(old_dim)
        _remove(old_data)
        self.outputs = [str(self.path)]

    def commit(self) -> None:
        """:meth:`finish` and :meth:`publish` (a writer used on its own)."""
        self.finish()
        self.publish()

    def abort(self) -> None:
        """Remove every temporary file; never raises."""
        try:
            self._close_files()
        except Exception:  # pragma: no cover - abort must not mask the cause
            log.exception("closing band files failed")
        for p in (self._tmp_data, self._tmp_dim):
            _remove(p)

    # --- internals --------------------------------------------------------------
    def _close_files(self) -> None:
        with self._cond:
            self._closed = True
            # Stragglers of a failed computation may still be writing: wait.
            self._cond.wait_for(lambda: self._active == 0, timeout=60)
            fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)

    def _write(self, k: int, offset: int, data) -> None:
        with self._cond:
            if self._closed:
                raise ProductWriteError(f"'{self.path}': writer is closed")
            self._active += 1
            fd = self._fds[k]
        try:
            _pwrite_all(fd, data, offset)
        except OSError as exc:
            raise ProductWriteError(f"cannot write '{self._tmp_data}': {exc.strerror or exc}") from None
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()


class _RawBandTarget:
    """``target[rows, cols] = block``: positional big-endian writes of one band."""

    def __init__(self, writer: DimapWriter, k: int, width: int, dtype: np.dtype):
        self._writer = writer
        self._k = k
        self._width = width
        self._be = np.dtype(dtype).newbyteorder(">")

    def __setitem__(self, region: tuple[slice, slice], block: np.ndarray) -> None:
        rows, cols = region
        y0 = rows.start or 0
        x0 = cols.start or 0
        be = np.ascontiguousarray(block, dtype=self._be)
        item = self._be.itemsize
        if x0 == 0 and be.shape[1] == self._width:
            self._writer._write(self._k, y0 * self._width * item, memoryview(be).cast("B"))
            return
        for i in range(be.shape[0]):
            self._writer._write(self._k, ((y0 + i) * self._width + x0) * item, memoryview(be[i]).cast("B"))


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    if not hasattr(os, "pwrite"):  # pragma: no cover - Windows
        raise OSError("positional writes are not supported on this platform")
    view = memoryview(data)
    while view.nbytes:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError:  # pragma: no cover - best effort cleanup
        log.warning("could not remove '%s'", path)


def write_dimap(product: Product, path: str | os.PathLike, context=None) -> Path:
    """Write `product` as BEAM-DIMAP, streaming chunk by chunk.

    Returns the ``.dim`` path. Nothing is left behind on failure.
    """
    from ..core.streaming import stream_writer

    return stream_writer(DimapWriter(product, path), context)


# --- header writing ------------------------------------------------------------


def _jdouble(v: float) -> str:
    """A double as Java's ``Double.toString`` spells the common cases."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def _sub(parent: ET.Element, tag: str, text: Any = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text if isinstance(text, str) else _jdouble(text) if isinstance(text, float) else str(text)
    return el


def _envi_header(band: Band, dtype: np.dtype, product: Product) -> str:
    unit = band.unit or "1"
    desc = band.description or product.description or ""
    wl = f" - Wavelength: {_jdouble(band.wavelength)}nm" if band.wavelength else ""
    lines = [
        "ENVI",
        f"description = {{{desc} - Unit: {unit}{wl}}}",
        f"samples = {band.width}",
        f"lines = {band.height}",
        "bands = 1",
        "header offset = 0",
        "file type = ENVI Standard",
        f"data type = {_ENVI_CODES[_snap_type(dtype)]}",
        "interleave = bsq",
        "byte order = 1",
        f"band names = {{ {band.name} }}",
    ]
    if band.wavelength:
        lines.append(f"wavelength = {{{_jdouble(band.wavelength)}}}")
    lines += ["data gain values = {1.0}", "data offset values = {0.0}"]
    return "\n".join(lines) + "\n"


def _snap_node_name(name: str) -> str:
    clean = _INVALID_NODE_CHARS.sub("_", name.strip()) or "class"
    return "_" + clean[1:] if clean.startswith(".") else clean


def dimap_header_xml(product: Product, name: str, dtypes: Sequence[np.dtype] | None = None) -> bytes:
    """The ``.dim`` document for `product` whose files live in ``<name>.data``.

    Parameters
    ----------
    product : Product
    name : str
        Product (and file) name without extension.
    dtypes : sequence of numpy dtypes, optional
        Stored data type per band; defaults to the bands' dtypes.

    Returns
    -------
    bytes
        ISO-8859-1 encoded XML, as SNAP writes it.
    """
    bands = list(product.bands.values())
    dtypes = [np.dtype(d) for d in (dtypes or [b.dtype for b in bands])]
    root = ET.Element("Dimap_Document", name=f"{name}{DIM_EXTENSION}")
    mid = _sub(root, "Metadata_Id")
    _sub(mid, "METADATA_FORMAT", "DIMAP", version=DIMAP_VERSION)
    _sub(mid, "METADATA_PROFILE", "BEAM-DATAMODEL-V1")
    did = _sub(root, "Dataset_Id")
    _sub(did, "DATASET_SERIES", "BEAM-PRODUCT")
    _sub(did, "DATASET_NAME", name)
    if product.description:
        _sub(_sub(root, "Dataset_Use"), "DATASET_COMMENTS", product.description)
    prod = _sub(root, "Production")
    _sub(prod, "DATASET_PRODUCER_NAME")
    _sub(prod, "PRODUCT_TYPE", product.product_type or "")
    if product.start_time is not None:
        _sub(prod, "PRODUCT_SCENE_RASTER_START_TIME", format_snap_time(product.start_time))
    if product.stop_time is not None:
        _sub(prod, "PRODUCT_SCENE_RASTER_STOP_TIME", format_snap_time(product.stop_time))

    _write_geocoding(root, product, bands)
    for band in bands:
        if band.classes:
            ic = _sub(root, "Index_Coding", name=band.name)
            for c in band.classes:
                ix = _sub(ic, "Index")
                _sub(ix, "INDEX_NAME", _snap_node_name(c.name))
                _sub(ix, "INDEX_VALUE", int(c.value))
                _sub(ix, "INDEX_DESCRIPTION", c.description or "")

    height, width = product.scene_shape
    rd = _sub(root, "Raster_Dimensions")
    _sub(rd, "NCOLS", width)
    _sub(rd, "NROWS", height)
    _sub(rd, "NBANDS", len(bands))
    acc = _sub(root, "Data_Access")
    _sub(acc, "DATA_FILE_FORMAT", "ENVI")
    _sub(acc, "DATA_FILE_FORMAT_DESC", "ENVI File Format")
    _sub(acc, "DATA_FILE_ORGANISATION", "BAND_SEPARATE")
    for i, band in enumerate(bands):
        df = _sub(acc, "Data_File")
        _sub(df, "DATA_FILE_PATH", href=f"{name}{DATA_EXTENSION}/{band.name}.hdr")
        _sub(df, "BAND_INDEX", i)

    if any(b.classes for b in bands):
        disp = _sub(root, "Image_Display")
        for i, band in enumerate(bands):
            if not band.classes:
                continue
            bs = _sub(disp, "Band_Statistics")
            _sub(bs, "BAND_INDEX", i)
            _sub(bs, "NUM_COLORS", 256)
            for c in band.classes:
                cpp = _sub(bs, "Color_Palette_Point")
                _sub(cpp, "SAMPLE", float(c.value))
                _sub(cpp, "LABEL", c.name)
                r, g, b = (int(v) for v in c.color[:3])
                _sub(cpp, "COLOR", red=str(r), green=str(g), blue=str(b), alpha="255")
            _sub(bs, "NO_DATA_COLOR", red="0", green="0", blue="0", alpha="0")
            _sub(bs, "HISTOGRAM_MATCHING", "None")

    ii = _sub(root, "Image_Interpretation")
    spectral = 0
    for i, (band, dtype) in enumerate(zip(bands, dtypes)):
        sbi = _sub(ii, "Spectral_Band_Info")
        _sub(sbi, "BAND_INDEX", i)
        _sub(sbi, "BAND_DESCRIPTION", band.description or "")
        _sub(sbi, "BAND_NAME", band.name)
        _sub(sbi, "BAND_RASTER_WIDTH", band.width)
        _sub(sbi, "BAND_RASTER_HEIGHT", band.height)
        _sub(sbi, "DATA_TYPE", _snap_type(dtype))
        if band.unit:
            _sub(sbi, "PHYSICAL_UNIT", band.unit)
        _sub(sbi, "SOLAR_FLUX", 0.0)
        if band.wavelength:
            _sub(sbi, "SPECTRAL_BAND_INDEX", spectral)
            spectral += 1
        _sub(sbi, "BAND_WAVELEN", float(band.wavelength or 0.0))
        _sub(sbi, "BANDWIDTH", 0.0)
        if band.classes:
            _sub(sbi, "INDEX_CODING_NAME", band.name)
        _sub(sbi, "SCALING_FACTOR", 1.0)
        _sub(sbi, "SCALING_OFFSET", 0.0)
        _sub(sbi, "LOG10_SCALED", "false")
        nd = band.no_data
        if nd is None and dtype.kind == "f":
            nd = math.nan  # the project's float convention: NaN marks no data
        _sub(sbi, "NO_DATA_VALUE_USED", "true" if nd is not None else "false")
        _sub(sbi, "NO_DATA_VALUE", float(nd) if nd is not None else 0.0)
        if band.valid_expression:
            _sub(sbi, "VALID_MASK_TERM", band.valid_expression)
        if band.transform is not None and product.crs is not None:
            _sub(sbi, "IMAGE_TO_MODEL_TRANSFORM", _format_matrix(band.transform))

    md = product.metadata
    if md is not None and (md.elements or md.attributes):
        _write_mdelem(_sub(root, "Dataset_Sources"), md, "metadata")
    ET.indent(root, space="    ")
    return ET.tostring(root, encoding="ISO-8859-1", xml_declaration=True) + b"\n"


def _write_geocoding(root: ET.Element, product: Product, bands: list[Band]) -> None:
    if product.crs is None or all(b.transform is None for b in bands):
        return
    wkt = _crs_wkt(product.crs)
    if not product.is_multi_size:
        _sub(_sub(root, "Coordinate_Reference_System"), "WKT", wkt)
        _sub(_sub(root, "Geoposition"), "IMAGE_TO_MODEL_TRANSFORM", _format_matrix(product.transform))
        return
    for i, band in enumerate(bands):  # SNAP: one geocoding per band when sizes differ
        if band.transform is None:
            continue
        _sub(_sub(root, "Coordinate_Reference_System"), "WKT", wkt)
        geo = _sub(root, "Geoposition")
        _sub(geo, "BAND_INDEX", i)
        _sub(geo, "IMAGE_TO_MODEL_TRANSFORM", _format_matrix(band.transform))


def _crs_wkt(crs) -> str:
    """WKT1 as GeoTools (SNAP) reads it.

    GDAL writes ``AXIS["Latitude",NORTH],AXIS["Longitude",EAST]`` for
    EPSG:4326, which GeoTools would honour while SNAP's transform is
    (lon, lat); without AXIS clauses WKT1 defaults to (lon, lat).
    """
    from rasterio.crs import CRS

    crs = CRS.from_user_input(crs)
    wkt = crs.to_wkt(version="WKT1_GDAL")
    if crs.is_geographic:
        wkt = re.sub(r',AXIS\["[^"]*",\w+\]', "", wkt)
    return wkt


def _write_mdelem(parent: ET.Element, me: MetadataElement, name: str | None = None) -> None:
    el = _sub(parent, "MDElem", name=name or me.name)
    for key, value in me.attributes.items():
        type_, text, elems = _attr_type_text(value)
        attrib = {"name": str(key), "type": type_}
        if elems is not None:
            attrib["elems"] = str(elems)
        _sub(el, "MDATTR", text, **attrib)
    for child in me.elements:
        _write_mdelem(el, child)


def _attr_type_text(value: Any) -> tuple[str, str, int | None]:
    """SNAP ``MDATTR`` type, text and ``elems`` count for a Python value."""
    if isinstance(value, (bool, np.bool_)):
        return "ascii", "true" if value else "false", None
    if isinstance(value, (int, np.integer)):
        return _int_type([int(value)]), str(int(value)), None
    if isinstance(value, (float, np.floating)):
        return "float64", _jdouble(value), None
    if isinstance(value, _dt.datetime):
        return "utc", format_snap_time(value), None
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0:
        items = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else list(value)
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in items):
            ints = [int(v) for v in items]
            return _int_type(ints), ",".join(map(str, ints)), len(ints)
        numeric = (int, float, np.integer, np.floating)
        if all(isinstance(v, numeric) and not isinstance(v, (bool, np.bool_)) for v in items):
            return "float64", ",".join(_jdouble(v) for v in items), len(items)
    if value is None:
        return "ascii", "", None
    return "ascii", str(value), None


def _int_type(values: list[int]) -> str:
    lo, hi = min(values), max(values)
    if -(2**31) <= lo and hi < 2**31:
        return "int32"
    if 0 <= lo and hi < 2**32:
        return "uint32"
    return "int64"
