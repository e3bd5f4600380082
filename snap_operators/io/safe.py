"""Sentinel-2 Level-1C / Level-2A SAFE reader (folder, ``.zip`` or ``MTD_MSIL*.xml``).

The product metadata (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``, parsed with
defusedxml) gives the radiometry; bands hold reflectance as SNAP shows it::

    reflectance = (DN + offset) / quantification        (float32, DN 0 -> NaN)

with ``quantification`` = ``QUANTIFICATION_VALUE`` (L1C) or
``BOA_QUANTIFICATION_VALUE`` (L2A), and ``offset`` = the band's
``RADIO_ADD_OFFSET`` (L1C) or ``BOA_ADD_OFFSET`` (L2A), present from
processing baseline 04.00 on (-1000) and 0 before. DN 0 is the product's
``NODATA`` special value.

Bands are named as SNAP's Sentinel-2 reader names them (``B1`` ... ``B12``,
``B8A``; L2A has no ``B10``) and kept at their native resolution (10/20/60 m:
a multi-size product); from L2A each band is taken from the ``R10m``/``R20m``/
``R60m`` folder of its native resolution. L2A products also give the scene
classification (Sen2Cor's SCL, uint8 0..11 with its legend, 0 = no-data) at
20 m as band ``quality_scene_classification``, SNAP's name for it; ``CloudMask``
reads it. Geocoding comes from the granule's
``MTD_TL.xml`` (``HORIZONTAL_CS_CODE``, ``Geoposition`` per resolution) when
present, else from each image's own georeferencing. Image files are looked up
as ``.jp2``, then ``.tif``/``.tiff`` (some L2A products are GeoTIFF). Zipped
products are read in place through GDAL's ``/vsizip/``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable
from xml.etree.ElementTree import Element

from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from ..core.errors import ProductReadError
from ..core.limits import MAX_MEMBER_BYTES
from ..core.product import DEFAULT_TILE_SIZE, ClassInfo, MetadataElement, Product
from ..core.xmlsafe import parse_untrusted_xml
from .bandfolder import REFLECTANCE_UNIT, S2_BANDS, S2_RESOLUTIONS, snap_band_name
from .geotiff import georeferencing, open_raster
from .raster_bands import BandSource, build_bands, refuse_missing_files
from .times import parse_datetime

log = logging.getLogger(__name__)

#: Processing baseline from which Sentinel-2 digital numbers carry an additive offset.
OFFSET_BASELINE = (4, 0)

# --- Sentinel-2 L2A scene classification (SCL) ---------------------------------------------

#: Name SNAP's Sentinel-2 reader gives the L2A scene classification (SCL) band.
SCL_BAND = "quality_scene_classification"
#: Band names taken as the SCL (GeoTIFFs exported from SAFE products say ``SCL``).
SCL_NAMES = (SCL_BAND, "SCL")
#: The SCL legend (ESA's Sentinel-2 L2A product definition: values, names, colors).
SCL_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(0, "No data", (0, 0, 0), "SC_NODATA"),
    ClassInfo(1, "Saturated or defective", (255, 0, 0), "SC_SATURATED_DEFECTIVE"),
    ClassInfo(2, "Dark area pixels", (47, 47, 47), "SC_DARK_FEATURE_SHADOW"),
    ClassInfo(3, "Cloud shadows", (100, 50, 0), "SC_CLOUD_SHADOW"),
    ClassInfo(4, "Vegetation", (0, 160, 0), "SC_VEGETATION"),
    ClassInfo(5, "Not vegetated", (255, 230, 90), "SC_NOT_VEGETATED"),
    ClassInfo(6, "Water", (0, 0, 255), "SC_WATER"),
    ClassInfo(7, "Unclassified", (128, 128, 128), "SC_UNCLASSIFIED"),
    ClassInfo(8, "Cloud medium probability", (192, 192, 192), "SC_CLOUD_MEDIUM_PROBA"),
    ClassInfo(9, "Cloud high probability", (255, 255, 255), "SC_CLOUD_HIGH_PROBA"),
    ClassInfo(10, "Thin cirrus", (100, 200, 255), "SC_THIN_CIRRUS"),
    ClassInfo(11, "Snow or ice", (255, 150, 255), "SC_SNOW_ICE"),
)
#: The SCL value of pixels without data.
SCL_NO_DATA = 0

_MTD_NAME = re.compile(r"^MTD_MSIL(1C|2A)\.xml$", re.IGNORECASE)
_TL_NAME = re.compile(r"^(MTD_TL|.*MTD_L(1C|2A)_TL.*)\.xml$", re.IGNORECASE)
_IMAGE_BAND = re.compile(r"_(B(?:0[1-9]|1[0-2]|8A))(?:_(\d+)m)?$", re.IGNORECASE)
_IMAGE_SCL = re.compile(r"_SCL(?:_(\d+)m)?$", re.IGNORECASE)
#: Native resolution (m) of the L2A scene classification.
SCL_RESOLUTION = 20
_IMAGE_EXTENSIONS = (".jp2", ".tif", ".tiff", "")


# --- parsed metadata ---------------------------------------------------------------


@dataclass(frozen=True)
class S2SpectralBand:
    """One ``Spectral_Information`` entry of the product metadata."""

    band_id: int
    name: str
    resolution: int
    wavelength: float | None = None
    wavelength_min: float | None = None
    wavelength_max: float | None = None


@dataclass
class S2ProductMetadata:
    """What the reader needs from ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``.

    Attributes
    ----------
    level : str
        ``Level-1C`` or ``Level-2A``.
    processing_baseline : str
        E.g. ``"04.00"``.
    quantification : float
        DN per unit reflectance (10000).
    offsets : dict of str to float
        Band name -> additive DN offset (empty before baseline 04.00).
    nodata : int
        The ``NODATA`` special value (0).
    image_files : list of str
        ``IMAGE_FILE`` entries (relative, without extension).
    spectral : list of S2SpectralBand
    """

    root_name: str
    level: str
    product_uri: str = ""
    product_type: str = ""
    processing_baseline: str = ""
    start_time: _dt.datetime | None = None
    stop_time: _dt.datetime | None = None
    spacecraft: str = ""
    quantification: float = 10000.0
    offset_tag: str = ""
    offsets: dict[str, float] = field(default_factory=dict)
    nodata: int = 0
    saturated: int | None = None
    image_files: list[str] = field(default_factory=list)
    spectral: list[S2SpectralBand] = field(default_factory=list)
    general: dict[str, str] = field(default_factory=dict)
    granule: dict[str, str] = field(default_factory=dict)
    solar_irradiance: dict[str, float] = field(default_factory=dict)
    u: float | None = None

    @property
    def baseline(self) -> tuple[int, int]:
        """Processing baseline as ``(major, minor)``; ``(0, 0)`` if unknown."""
        m = re.match(r"^\s*(\d+)\.(\d+)", self.processing_baseline)
        return (int(m[1]), int(m[2])) if m else (0, 0)

    def offset(self, band: str) -> float:
        """Additive DN offset of `band` (0 when the metadata lists none)."""
        return self.offsets.get(band, 0.0)

    def scale_offset(self, band: str) -> tuple[float, float]:
        """``(scale, offset)`` with reflectance = DN * scale + offset."""
        q = self.quantification
        return 1.0 / q, self.offset(band) / q


@dataclass
class S2TileGeocoding:
    """Geocoding of a granule from its ``MTD_TL.xml``."""

    crs_code: str
    crs_name: str = ""
    tile_id: str = ""
    sensing_time: _dt.datetime | None = None
    #: resolution (m) -> Affine pixel-corner transform
    transforms: dict[int, Affine] = field(default_factory=dict)
    #: resolution (m) -> (rows, cols)
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def crs(self) -> CRS:
        return CRS.from_user_input(self.crs_code)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: Element, name: str) -> Element | None:
    for e in root.iter():
        if _local(e.tag) == name:
            return e
    return None


def _find_all(root: Element, name: str) -> list[Element]:
    return [e for e in root.iter() if _local(e.tag) == name]


def _text(root: Element, name: str) -> str:
    e = _find(root, name)
    return (e.text or "").strip() if e is not None else ""


def _float(text: str, what: str, where: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ProductReadError(f"{where}: {what} is not a number: {text!r}") from None


def _leaves(e: Element | None, skip: Iterable[str] = ()) -> dict[str, str]:
    out: dict[str, str] = {}
    if e is None:
        return out
    skip = set(skip)
    for x in e.iter():
        name = _local(x.tag)
        if len(x) == 0 and name not in skip and (x.text or "").strip() and name not in out:
            out[name] = x.text.strip()
    return out


def _parse_xml(data: bytes, where: str) -> Element:
    return parse_untrusted_xml(data, where)


def parse_product_metadata(data: bytes, where: str = "MTD_MSIL1C.xml") -> S2ProductMetadata:
    """Parse product-level metadata (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``) bytes."""
    root = _parse_xml(data, where)
    root_name = _local(root.tag)
    m = re.match(r"^(Level-\d[A-Z])", root_name)
    if not m:
        raise ProductReadError(f"{where}: not Sentinel-2 L1C/L2A product metadata (root <{root_name}>)")
    level = m[1]
    l2a = level == "Level-2A"
    md = S2ProductMetadata(root_name=root_name, level=level)
    product_info = _find(root, "Product_Info")
    md.general = _leaves(product_info, skip=("IMAGE_FILE",))
    md.product_uri = md.general.get("PRODUCT_URI", "")
    md.product_type = md.general.get("PRODUCT_TYPE", "")
    md.processing_baseline = md.general.get("PROCESSING_BASELINE", "")
    md.start_time = parse_datetime(md.general.get("PRODUCT_START_TIME"))
    md.stop_time = parse_datetime(md.general.get("PRODUCT_STOP_TIME")) or md.start_time
    md.spacecraft = md.general.get("SPACECRAFT_NAME", "")
    cloud = _text(root, "Cloud_Coverage_Assessment")
    if cloud:
        md.general["Cloud_Coverage_Assessment"] = cloud

    q_tag = "BOA_QUANTIFICATION_VALUE" if l2a else "QUANTIFICATION_VALUE"
    q_text = _text(root, q_tag)
    if not q_text:
        raise ProductReadError(f"{where}: no {q_tag}")
    md.quantification = _float(q_text, q_tag, where)
    if md.quantification <= 0:
        raise ProductReadError(f"{where}: {q_tag} must be positive, got {q_text}")

    md.offset_tag = "BOA_ADD_OFFSET" if l2a else "RADIO_ADD_OFFSET"
    spectral = []
    for e in _find_all(root, "Spectral_Information"):
        band_id = int(e.get("bandId", e.get("band_id", "-1")))
        name = e.get("physicalBand") or (S2_BANDS[band_id] if 0 <= band_id < len(S2_BANDS) else "")
        res_text = _text(e, "RESOLUTION")
        wl = {k: _text(e, k) for k in ("CENTRAL", "MIN", "MAX")}
        spectral.append(S2SpectralBand(
            band_id=band_id,
            name=snap_band_name(name) if name else name,
            resolution=int(float(res_text)) if res_text else S2_RESOLUTIONS.get(snap_band_name(name), 0),
            wavelength=float(wl["CENTRAL"]) if wl["CENTRAL"] else None,
            wavelength_min=float(wl["MIN"]) if wl["MIN"] else None,
            wavelength_max=float(wl["MAX"]) if wl["MAX"] else None,
        ))
    if not spectral:  # very old products lack the list: SNAP's defaults
        spectral = [S2SpectralBand(i, n, S2_RESOLUTIONS[n]) for i, n in enumerate(S2_BANDS)]
    md.spectral = spectral
    by_id = {b.band_id: b.name for b in spectral}

    for e in _find_all(root, md.offset_tag):
        band_id = int(e.get("band_id", e.get("bandId", "-1")))
        if band_id in by_id:
            md.offsets[by_id[band_id]] = _float((e.text or "").strip(), md.offset_tag, where)
    if not md.offsets and md.baseline >= OFFSET_BASELINE:
        log.warning("%s: baseline %s but no %s list; using offset 0", where, md.processing_baseline, md.offset_tag)

    for e in _find_all(root, "SOLAR_IRRADIANCE"):
        band_id = int(e.get("bandId", e.get("band_id", "-1")))
        if band_id in by_id and (e.text or "").strip():
            md.solar_irradiance[by_id[band_id]] = float(e.text)
    u = _text(root, "U")
    md.u = float(u) if u else None

    for e in _find_all(root, "Special_Values"):
        text, index = _text(e, "SPECIAL_VALUE_TEXT"), _text(e, "SPECIAL_VALUE_INDEX")
        if text.upper() == "NODATA" and index:
            md.nodata = int(float(index))
        elif text.upper() == "SATURATED" and index:
            md.saturated = int(float(index))

    granule = _find(root, "Granule")
    if granule is None:
        granule = _find(root, "Granules")
    if granule is not None:
        md.granule = {k: v for k, v in granule.attrib.items()}
    md.image_files = [(e.text or "").strip() for e in _find_all(root, "IMAGE_FILE") if (e.text or "").strip()]
    return md


def parse_tile_metadata(data: bytes, where: str = "MTD_TL.xml") -> S2TileGeocoding:
    """Parse the geocoding of a granule ``MTD_TL.xml``."""
    root = _parse_xml(data, where)
    code = _text(root, "HORIZONTAL_CS_CODE")
    if not code:
        raise ProductReadError(f"{where}: no HORIZONTAL_CS_CODE")
    geo = S2TileGeocoding(
        crs_code=code,
        crs_name=_text(root, "HORIZONTAL_CS_NAME"),
        tile_id=_text(root, "TILE_ID"),
        sensing_time=parse_datetime(_text(root, "SENSING_TIME")),
    )
    for e in _find_all(root, "Size"):
        rows, cols = _text(e, "NROWS"), _text(e, "NCOLS")
        if e.get("resolution") and rows and cols:
            geo.sizes[int(float(e.get("resolution")))] = (int(rows), int(cols))
    for e in _find_all(root, "Geoposition"):
        values = {k: _text(e, k) for k in ("ULX", "ULY", "XDIM", "YDIM")}
        if e.get("resolution") and all(values.values()):
            v = {k: _float(t, k, where) for k, t in values.items()}
            geo.transforms[int(float(e.get("resolution")))] = Affine(v["XDIM"], 0.0, v["ULX"], 0.0, v["YDIM"], v["ULY"])
    for k in ("TILE_ID", "DATASTRIP_ID", "SENSING_TIME", "CLOUDY_PIXEL_PERCENTAGE", "NODATA_PIXEL_PERCENTAGE"):
        t = _text(root, k)
        if t:
            geo.attributes[k] = t
    return geo


# --- where the files are: folder or zip ----------------------------------------------------


class _Safe:
    """Access to a SAFE's files, whether a folder or a zip archive."""

    def __init__(self, path: Path):
        self.path = path
        self.zip_names: set[str] | None = None
        self.prefix = ""  # inside the zip, or the SAFE folder on disk
        self.mtd = ""
        if path.is_dir():
            self.base = path
            self.mtd = self._mtd_in(sorted(f.name for f in path.iterdir() if f.is_file()))
        elif path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as zf:
                    names = [n for n in zf.namelist() if not n.endswith("/")]
            except (zipfile.BadZipFile, OSError) as exc:
                raise ProductReadError(f"cannot read {path}: {exc}") from None
            self.zip_names = set(names)
            candidates = sorted((n for n in names if _MTD_NAME.match(posixpath.basename(n))),
                                key=lambda n: (n.count("/"), n))
            if not candidates:
                raise ProductReadError(f"{path}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml inside; not a Sentinel-2 SAFE zip")
            self.prefix = posixpath.dirname(candidates[0])
            self.mtd = posixpath.basename(candidates[0])
            self.base = path
        else:
            self.base = path.parent
            self.mtd = path.name

    def _mtd_in(self, names: list[str]) -> str:
        for n in names:
            if _MTD_NAME.match(n):
                return n
        raise ProductReadError(f"{self.path}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml; not a Sentinel-2 L1C/L2A SAFE")

    @property
    def name(self) -> str:
        if self.zip_names is not None:
            return posixpath.basename(self.prefix) or self.path.stem
        return self.base.name

    def _member(self, rel: str) -> str:
        return posixpath.join(self.prefix, rel) if self.prefix else rel

    def _inside(self, rel: str) -> str:
        """`rel` when it names a file inside the product: refuses absolute paths and ``..`` steps, which
        metadata (``IMAGE_FILE``...) could use to make the reader open any file of the machine."""
        parts = rel.replace("\\", "/").split("/")
        if rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel) or ".." in parts:
            raise ProductReadError(f"{self.path}: file reference {rel!r} in {self.mtd} points outside the product "
                                   "(absolute or with '..'); a SAFE only refers to files inside itself")
        return rel

    def exists(self, rel: str) -> bool:
        self._inside(rel)
        if self.zip_names is not None:
            return self._member(rel) in self.zip_names
        return (self.base / rel).is_file()

    def list_dir(self, rel: str) -> list[str]:
        self._inside(rel)
        if self.zip_names is not None:
            head = self._member(rel).rstrip("/") + "/"
            return sorted(n[len(head):] for n in self.zip_names if n.startswith(head) and "/" not in n[len(head):])
        d = self.base / rel
        return sorted(f.name for f in d.iterdir() if f.is_file()) if d.is_dir() else []

    def read_bytes(self, rel: str) -> bytes:
        """The bytes of a metadata file, at most :data:`~snap_operators.core.limits.MAX_MEMBER_BYTES`.

        A zip member's declared size is checked before it is inflated and the
        read stops after the limit whatever it declared, so a compression
        bomb costs no more than the limit.
        """
        self._inside(rel)
        try:
            if self.zip_names is not None:
                with zipfile.ZipFile(self.path) as zf:
                    info = zf.getinfo(self._member(rel))
                    if info.file_size > MAX_MEMBER_BYTES:
                        raise self._too_big(rel, info.file_size)
                    with zf.open(info) as f:
                        data = f.read(MAX_MEMBER_BYTES + 1)
            else:
                with (self.base / rel).open("rb") as f:
                    data = f.read(MAX_MEMBER_BYTES + 1)
        except (OSError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise ProductReadError(f"cannot read {self.display(rel)}: {exc}") from None
        if len(data) > MAX_MEMBER_BYTES:
            raise self._too_big(rel, len(data))
        return data

    def _too_big(self, rel: str, size: int) -> ProductReadError:
        return ProductReadError(f"{self.display(rel)}: {size} bytes (more than the {MAX_MEMBER_BYTES} of "
                                "MAX_MEMBER_BYTES) for a metadata file; not a Sentinel-2 product")

    def gdal_path(self, rel: str) -> str:
        self._inside(rel)
        if self.zip_names is not None:
            return f"/vsizip/{self.path.resolve()}/{self._member(rel)}"
        return str(self.base / rel)

    def display(self, rel: str) -> str:
        return f"{self.path}!{self._member(rel)}" if self.zip_names is not None else str(self.base / rel)

    def image(self, rel: str) -> str | None:
        """The stored file for an ``IMAGE_FILE`` entry (extension added), or None."""
        for ext in _IMAGE_EXTENSIONS:
            if self.exists(rel + ext):
                return rel + ext
        return None


def read_safe_metadata(path: str | Path) -> S2ProductMetadata:
    """Parse the product metadata of a SAFE folder, zip or ``MTD_MSIL*.xml`` file."""
    safe = _Safe(Path(path))
    return parse_product_metadata(safe.read_bytes(safe.mtd), safe.display(safe.mtd))


def _granule_dirs(image_files: list[str]) -> list[str]:
    dirs = []
    for f in image_files:
        parts = f.split("/")
        if len(parts) >= 3 and parts[0].upper() == "GRANULE":
            d = "/".join(parts[:2])
            if d not in dirs:
                dirs.append(d)
    return dirs


def _tile_geocoding(safe: _Safe, granule: str) -> S2TileGeocoding | None:
    for name in safe.list_dir(granule):
        if _TL_NAME.match(name):
            rel = f"{granule}/{name}"
            return parse_tile_metadata(safe.read_bytes(rel), safe.display(rel))
    return None


def band_images(md: S2ProductMetadata) -> dict[str, str]:
    """Band name -> ``IMAGE_FILE`` entry at the band's native resolution.

    L1C lists one image per band; L2A lists each band in several
    ``R10m/R20m/R60m`` folders: the native one is chosen, else the finest.
    """
    native = {b.name: b.resolution for b in md.spectral}
    candidates: dict[str, list[tuple[int, str]]] = {}
    for entry in md.image_files:
        m = _IMAGE_BAND.search(posixpath.basename(entry))
        if not m:
            continue  # TCI, SCL, AOT, WVP...
        name = snap_band_name(m[1])
        res = int(m[2]) if m[2] else native.get(name, 0)
        candidates.setdefault(name, []).append((res, entry))
    out = {}
    for name in S2_BANDS:
        options = candidates.get(name)
        if not options:
            continue
        exact = [e for r, e in options if r == native.get(name)]
        out[name] = exact[0] if exact else min(options)[1]
    return out


def scl_image(md: S2ProductMetadata) -> str | None:
    """``IMAGE_FILE`` entry of the L2A scene classification: the 20 m one, else the finest; None for L1C."""
    options = []
    for entry in md.image_files:
        m = _IMAGE_SCL.search(posixpath.basename(entry))
        if m:
            options.append((int(m[1]) if m[1] else SCL_RESOLUTION, entry))
    if not options:
        return None
    exact = [e for r, e in options if r == SCL_RESOLUTION]
    return exact[0] if exact else min(options)[1]


def _scl_source(safe: _Safe, md: S2ProductMetadata, tile: S2TileGeocoding | None, where: Path) -> BandSource | None:
    """The scene classification band of an L2A product, read as stored (uint8, no scaling)."""
    entry = scl_image(md)
    rel = safe.image(entry) if entry else None
    if rel is None:
        if entry:
            log.info("%s: no image file for the scene classification (%s)", where, entry)
        return None
    gdal_path = safe.gdal_path(rel)
    with open_raster(gdal_path) as ds:
        _, transform = georeferencing(ds)
        shape = (ds.height, ds.width)
        dtype = ds.dtypes[0]
    m = _IMAGE_SCL.search(posixpath.basename(entry))
    res = int(m[1]) if m and m[1] else SCL_RESOLUTION
    if tile is not None and res in tile.transforms:
        transform = tile.transforms[res]
    return BandSource(
        name=SCL_BAND, path=gdal_path, index=1, shape=shape, file_dtype=dtype, transform=transform,
        nodata=SCL_NO_DATA, description="Scene classification (Sen2Cor SCL): 0 no data, 3 cloud shadows, "
        "8/9 cloud medium/high probability, 10 thin cirrus, 11 snow or ice", classes=SCL_CLASSES,
    )


def _metadata_tree(md: S2ProductMetadata, tiles: dict[str, S2TileGeocoding]) -> MetadataElement:
    general = MetadataElement("General_Info", dict(md.general))
    for key in ("PRODUCT_START_TIME", "PRODUCT_STOP_TIME", "GENERATION_TIME"):
        value = parse_datetime(md.general.get(key))
        if value is not None:
            general.attributes[key] = value
    organisation = MetadataElement("Product_Organisation", dict(md.granule))
    for i, f in enumerate(md.image_files, start=1):
        organisation.attributes[f"IMAGE_FILE_{i}"] = f
    general.elements.append(organisation)

    radiometric = MetadataElement("Radiometric", {
        "QUANTIFICATION_VALUE": md.quantification,
        "PROCESSING_BASELINE": md.processing_baseline,
        "NODATA_VALUE": md.nodata,
        "OFFSET_TAG": md.offset_tag,
        "FORMULA": "reflectance = (DN + offset) / QUANTIFICATION_VALUE",
    })
    if md.saturated is not None:
        radiometric.attributes["SATURATED_VALUE"] = md.saturated
    if md.u is not None:
        radiometric.attributes["U"] = md.u
    radiometric.elements.append(
        MetadataElement(md.offset_tag, {b.name: md.offset(b.name) for b in md.spectral})
    )
    if md.solar_irradiance:
        radiometric.elements.append(MetadataElement("Solar_Irradiance", dict(md.solar_irradiance)))

    spectral = MetadataElement("Spectral_Information")
    for b in md.spectral:
        attrs = {"bandId": b.band_id, "RESOLUTION": b.resolution}
        for key, value in (("CENTRAL", b.wavelength), ("MIN", b.wavelength_min), ("MAX", b.wavelength_max)):
            if value is not None:
                attrs[key] = value
        spectral.elements.append(MetadataElement(b.name, attrs))

    user_product = MetadataElement(md.root_name, elements=[general, radiometric, spectral])
    root = MetadataElement("metadata", elements=[user_product])
    if tiles:
        granules = MetadataElement("Granules")
        for name, geo in tiles.items():
            g = MetadataElement(name.split("/")[-1], {
                "HORIZONTAL_CS_NAME": geo.crs_name, "HORIZONTAL_CS_CODE": geo.crs_code, **geo.attributes,
            })
            for res, t in sorted(geo.transforms.items()):
                attrs = {"ULX": t.c, "ULY": t.f, "XDIM": t.a, "YDIM": t.e}
                if res in geo.sizes:
                    attrs["NROWS"], attrs["NCOLS"] = geo.sizes[res]
                g.elements.append(MetadataElement(f"Geoposition_{res}m", attrs))
            granules.elements.append(g)
        root.elements.append(granules)
    return root


def read_safe(
    path: str | Path,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    band_names: Iterable[str] | None = None,
    pixel_region=None,
) -> Product:
    """Open a Sentinel-2 L1C/L2A SAFE lazily as a multi-size reflectance product.

    Parameters
    ----------
    path : str or Path
        ``.SAFE`` folder, ``.zip`` holding one, or its ``MTD_MSIL1C.xml`` /
        ``MTD_MSIL2A.xml``.
    tile_size : int
        Chunk edge in pixels.
    band_names : list of str, optional
        Bands to keep (``B2``, ``B8A``, ``quality_scene_classification``...;
        default: all found).
    pixel_region : str or tuple, optional
        ``(x, y, width, height)`` in 10 m pixels.

    Returns
    -------
    Product
        Reflectance bands (float32, NaN = no data) at native resolution; for
        L2A also ``quality_scene_classification`` (uint8, 20 m).

    Raises
    ------
    ProductReadError
        Unreadable metadata, or an image file the metadata lists for a
        wanted band is missing (an incomplete product).
    """
    path = Path(path)
    band_names = list(band_names) if band_names is not None else None
    safe = _Safe(path)
    md = parse_product_metadata(safe.read_bytes(safe.mtd), safe.display(safe.mtd))
    granules = _granule_dirs(md.image_files)
    if len(granules) > 1:
        raise ProductReadError(f"{path}: multi-granule products are not supported; open one granule's IMG_DATA folder")
    tiles = {}
    for granule in granules:
        geo = _tile_geocoding(safe, granule)
        if geo is not None:
            tiles[granule] = geo
    tile = next(iter(tiles.values()), None)
    tile_crs = None
    if tile is not None:
        try:
            tile_crs = tile.crs
        except CRSError as exc:
            raise ProductReadError(f"{path}: bad HORIZONTAL_CS_CODE {tile.crs_code!r} ({exc})") from None

    spectral = {b.name: b for b in md.spectral}
    sources = []
    crs = tile_crs
    missing = []
    for name, entry in band_images(md).items():
        rel = safe.image(entry)
        if rel is None:
            missing.append((name, f"{entry} ({name})"))
            continue
        gdal_path = safe.gdal_path(rel)
        with open_raster(gdal_path) as ds:
            image_crs, image_transform = georeferencing(ds)
            shape = (ds.height, ds.width)
            dtype = ds.dtypes[0]
        info = spectral.get(name) or S2SpectralBand(-1, name, S2_RESOLUTIONS[name])
        transform = image_transform
        if tile is not None and info.resolution in tile.transforms:
            transform = tile.transforms[info.resolution]
            expected = tile.sizes.get(info.resolution)
            if expected and expected != shape:
                log.info("%s: %s is %dx%d px, MTD_TL says %dx%d", path, name, shape[1], shape[0], expected[1], expected[0])
        if crs is None:
            crs = image_crs
        scale, offset = md.scale_offset(name)
        sources.append(BandSource(
            name=name, path=gdal_path, index=1, shape=shape, file_dtype=dtype, transform=transform,
            scale=scale, offset=offset, nodata=md.nodata, unit=REFLECTANCE_UNIT,
            description=f"Reflectance in {name}", wavelength=info.wavelength,
        ))
    if not sources:
        raise ProductReadError(
            f"{path}: none of the {len(md.image_files)} image files listed in {safe.mtd} was found"
        )
    refuse_missing_files(missing, band_names, str(path), f"image file(s) listed in {safe.mtd}",
                         "the product is incomplete (an interrupted download or copy): get it again")
    scl = _scl_source(safe, md, tile, path) if md.level == "Level-2A" else None
    if scl is not None:
        sources.append(scl)

    bands = build_bands(sources, tile_size=tile_size, band_names=band_names, pixel_region=pixel_region,
                        where=str(path))
    name = md.product_uri or safe.name
    if name.upper().endswith(".SAFE"):
        name = name[:-5]
    product = Product(
        name=name,
        product_type=f"S2_MSI_{md.level}",
        crs=crs,
        start_time=md.start_time,
        stop_time=md.stop_time,
        metadata=_metadata_tree(md, tiles),
        file_location=str(path),
        description=f"Sentinel-2 MSI {md.level} product, processing baseline {md.processing_baseline}",
    )
    for band in bands:
        product.add_band(band)
    return product
