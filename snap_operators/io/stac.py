"""STAC Item reader: a Sentinel-2 scene described by a STAC Item, read from its assets in place.

A STAC Item (a GeoJSON ``Feature`` with ``stac_version``; a local ``.json``
file, an http(s) URL or a :class:`pystac.Item`) lists one file per band as
its *assets*. Each Sentinel-2 band asset becomes a band named as SNAP's
Sentinel-2 reader names it (``B1`` ... ``B12``, ``B8A``; the scene
classification ``quality_scene_classification``), as the SAFE reader
(:mod:`.safe`) does, so graphs written for SAFE products run unchanged:

* **which assets**: raster data assets only (a GeoTIFF/COG or JPEG 2000 media
  type, or such a file name when the type is absent; roles, when given,
  include ``data``): thumbnails, previews, metadata files and the 3-band
  true-colour image are skipped. A band is recognised, in this order, by the
  asset's ``eo:bands`` name (``B02``, ``B2``; STAC 1.1 ``bands``), its key
  (``B02``, ``B8A``, ``SCL`` as on Planetary Computer; ``blue`` ...
  ``rededge1..3``, ``nir``, ``nir08``, ``nir09``, ``swir16``, ``swir22``,
  ``coastal``, ``scl`` as on Earth Search; ``B02_10m`` as on the Copernicus
  Data Space, a ``-jp2`` suffix ignored), then its ``common_name``. When
  several assets hold one band (Earth Search's COG ``blue`` and JPEG 2000
  ``blue-jp2``; ``B02_10m``/``B02_20m``), the GeoTIFF at the band's native
  resolution is taken.
* **grids**: each band keeps its file's size, transform and CRS (a multi-size
  product: 10/20/60 m). The ``proj:`` fields (``proj:epsg``/``proj:code``,
  and an asset's ``proj:shape``/``proj:transform``) are checked against
  the file, which wins; a disagreement is logged.
* **radiometry**: bands hold reflectance as the SAFE reader gives it::

      reflectance = DN * scale + offset                  (float32, no-data -> NaN)

  with ``scale``, ``offset`` and ``nodata`` from the asset's ``raster:bands``
  (STAC 1.1: ``raster:scale``, ``raster:offset``, ``nodata``) when it gives a
  scale or an offset: Earth Search gives ``scale`` 0.0001 and ``offset`` -0.1
  for processing baseline 04.00 and later. Without them, the Sentinel-2
  quantification applies (1/10000), and from baseline 04.00 on (item
  property ``s2:processing_baseline``) the offset of -1000 DN
  (``BOA_ADD_OFFSET`` of L2A, ``RADIO_ADD_OFFSET`` of L1C), through the same
  :class:`~snap_operators.io.safe.S2ProductMetadata` the SAFE reader uses.
  No-data is ``nodata`` there, else the file's, else DN 0 (Sentinel-2's
  NODATA). Float files are taken as reflectance already. The scene
  classification is read as stored (uint8 classes, 0 = no data).
* **product**: name = the item id; start/stop = ``datetime`` (or
  ``start_datetime``/``end_datetime``); type ``S2_MSI_Level-2A`` /
  ``S2_MSI_Level-1C`` from ``s2:product_type``, the collection or the id; the
  item's properties and the assets read go into the metadata element
  ``STAC_Item``.
* **hrefs**: relative hrefs are resolved against the item's location (the file
  or URL it was read from; a :class:`pystac.Item`'s self href). Local files
  are read directly; ``https://`` hrefs through GDAL's ``/vsicurl/`` and
  ``s3://`` ones through ``/vsis3/`` (:func:`gdal_path`), window by window as
  Dask asks for chunks: nothing is downloaded whole.

An ItemCollection (``FeatureCollection``, e.g. a saved ``pystac_client``
search) holding one item is read as that item; one holding several dates is
refused with a pointer to ``snap-pc timeseries``, which reads each item as one
date (:func:`write_items`). See ``docs/stac.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from ..core.errors import ProductReadError
from ..core.limits import MAX_MEMBER_BYTES
from ..core.product import DEFAULT_TILE_SIZE, MetadataElement, Product
from .bandfolder import (
    REFLECTANCE_UNIT,
    S2_BANDS,
    S2_NODATA,
    S2_QUANTIFICATION,
    S2_RESOLUTIONS,
    S2A_WAVELENGTHS,
    S2B_WAVELENGTHS,
    snap_band_name,
)
from .geotiff import georeferencing, open_raster
from .raster_bands import BandSource, build_bands, error_text, refuse_missing_files
from .safe import OFFSET_BASELINE, SCL_BAND, SCL_CLASSES, SCL_NO_DATA, SCL_RESOLUTION, S2ProductMetadata

log = logging.getLogger(__name__)

#: That offset (DN): -1000 in every band of every product since baseline 04.00 (a SAFE lists it per band).
BASELINE_ADD_OFFSET = -1000.0
#: When ESA's ground segment switched to baseline 04.00 (for items that do not say their baseline).
BASELINE_04_START = _dt.datetime(2022, 1, 25, tzinfo=_dt.timezone.utc)
#: Seconds to wait for a STAC item served over http(s).
URL_TIMEOUT_S = 60
#: Remote asset headers opened at once (each open is an HTTP round trip or more).
REMOTE_OPENS = 8
#: Media types of raster files (GeoTIFF and COG, JPEG 2000); parameters such as ``; profile=...`` follow.
RASTER_MEDIA_TYPES = ("image/tiff", "image/vnd.stac.geotiff", "image/jp2")
#: File name endings of raster files, for assets without a media type.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")
#: Asset keys and ``eo:bands`` names / common names -> SNAP band names. Earth Search's keys name the
#: three red-edge bands ``rededge1..3``; their common name ``rededge`` alone is ambiguous and not listed.
S2_ALIASES = {
    "coastal": "B1", "blue": "B2", "green": "B3", "red": "B4",
    "rededge1": "B5", "rededge2": "B6", "rededge3": "B7",
    "rededge071": "B5", "rededge075": "B6", "rededge078": "B7",
    "nir": "B8", "nir08": "B8A", "nir09": "B9", "cirrus": "B10", "swir16": "B11", "swir22": "B12",
    "scl": SCL_BAND, SCL_BAND: SCL_BAND,
}
#: Properties giving the processing baseline, in order of preference (Earth Search v1 and Planetary
#: Computer; Earth Search v0; the Copernicus Data Space).
BASELINE_PROPERTIES = ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version")

_BAND_TOKEN = re.compile(r"^B(?:0?[1-9]|1[0-2]|8A)$", re.IGNORECASE)
#: An asset key: a band, an optional resolution (``B02_10m``), an optional ``-jp2`` (Earth Search).
_ASSET_KEY = re.compile(r"^(?P<band>.+?)(?:_(?P<res>\d+)m)?(?:-jp2)?$", re.IGNORECASE)
_LEVEL_2A = re.compile(r"(?:L|MSI)2A", re.IGNORECASE)
_LEVEL_1C = re.compile(r"(?:L|MSI)1C", re.IGNORECASE)


# --- locations ---------------------------------------------------------------------------------


def is_url(text: Any) -> bool:
    """Whether `text` is an ``http://`` or ``https://`` URL (a STAC item served by an API)."""
    return isinstance(text, str) and text.strip().lower().startswith(("http://", "https://"))


def gdal_path(href: str) -> str:
    """The path GDAL opens for an (absolute) asset href.

    Parameters
    ----------
    href : str
        ``https://...`` (read through ``/vsicurl/``: HTTP range requests, one
        window at a time), ``s3://bucket/key`` (``/vsis3/``, with GDAL's AWS
        settings), ``file://...``, a local path, or a GDAL path (``/vsi...``).

    Returns
    -------
    str

    Raises
    ------
    ProductReadError
        Another URL scheme.

    Examples
    --------
    >>> gdal_path("https://example.com/S2B_33UUP/B04.tif?sig=x")
    '/vsicurl/https://example.com/S2B_33UUP/B04.tif?sig=x'
    >>> gdal_path("s3://sentinel-s2-l2a/tiles/33/U/UP/B04.jp2")
    '/vsis3/sentinel-s2-l2a/tiles/33/U/UP/B04.jp2'
    >>> gdal_path("file:///data/B04.tif")
    '/data/B04.tif'
    """
    if is_url(href):
        return f"/vsicurl/{href.strip()}"
    parts = urllib.parse.urlparse(href)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        return f"/vsis3/{parts.netloc}{parts.path}"
    if scheme == "file":
        return urllib.request.url2pathname(parts.path)
    if len(scheme) > 1:  # one letter: a Windows drive
        raise ProductReadError(f"asset href {href!r}: the scheme {scheme}:// is not read (use https://, s3:// "
                               "or a local path)")
    return href


def _read_json(location: str) -> Any:
    """The JSON value at a local path or http(s) URL, at most MAX_MEMBER_BYTES of it."""
    try:
        if is_url(location):
            request = urllib.request.Request(location, headers={"Accept": "application/geo+json, application/json"})
            with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:
                data = response.read(MAX_MEMBER_BYTES + 1)
        else:
            with open(location, "rb") as f:
                data = f.read(MAX_MEMBER_BYTES + 1)
    except (OSError, ValueError) as exc:  # urllib's URLError and HTTPError are OSErrors
        raise ProductReadError(f"cannot read {location}: {error_text(exc)}") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise ProductReadError(f"{location}: more than the {MAX_MEMBER_BYTES} bytes of MAX_MEMBER_BYTES for a STAC "
                               "item or item collection; save fewer items per file")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ProductReadError(f"{location}: not JSON ({error_text(exc)})") from None


def stac_type(value: Any) -> str | None:
    """``"Feature"`` for a STAC Item, ``"FeatureCollection"`` for an ItemCollection, else None.

    Parameters
    ----------
    value : dict, str or Path
        A parsed JSON value, or a local file (read up to
        :data:`~snap_operators.core.limits.MAX_MEMBER_BYTES`).
    """
    if isinstance(value, (str, Path)):
        value = _read_json(str(value))
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind == "Feature" and "stac_version" in value:
        return "Feature"
    if kind == "FeatureCollection":
        features = value.get("features")
        # A saved search (pystac_client, STAC APIs) need not carry stac_version itself; its items do.
        first = features[0] if isinstance(features, list) and features else {}
        if "stac_version" in value or (isinstance(first, dict) and "stac_version" in first):
            return "FeatureCollection"
    return None


# --- items ---------------------------------------------------------------------------------------


def _item_from_dict(d: dict, location: str | None):
    import pystac

    try:
        return pystac.Item.from_dict(d, href=location)
    except (KeyError, TypeError, ValueError, AttributeError, pystac.STACError) as exc:
        raise ProductReadError(f"{location or 'STAC item'}: not a valid STAC Item ({error_text(exc) or exc!r})") from None


def load_items(source) -> tuple[list, str | None]:
    """The STAC Items of `source` and the location they were read from.

    Parameters
    ----------
    source : str, Path, pystac.Item or pystac.ItemCollection
        A local ``.json`` file or an http(s) URL holding an Item or an
        ItemCollection, or the pystac object.

    Returns
    -------
    items : list of pystac.Item
        Each with its asset hrefs resolvable (:meth:`pystac.Asset.get_absolute_href`):
        an item read from a file or URL has that location as its self href;
        the items of a collection file have the collection's.
    location : str or None
        The file (absolute) or URL; a pystac Item's self href; None for
        objects without one.

    Raises
    ------
    ProductReadError
        Not JSON, not a STAC Item or ItemCollection, or unreadable.
    """
    import pystac

    if isinstance(source, pystac.Item):
        return [source], source.get_self_href()
    if isinstance(source, pystac.ItemCollection):
        return list(source.items), None
    location = source.strip() if is_url(source) else str(Path(source).expanduser().absolute())
    value = _read_json(location)
    kind = stac_type(value)
    if kind == "Feature":
        return [_item_from_dict(value, location)], location
    if kind == "FeatureCollection":
        return [_item_from_dict(f, location) for f in value.get("features") or []], location
    raise ProductReadError(f"{location}: not a STAC Item (no \"type\": \"Feature\" with a \"stac_version\") "
                           "nor an ItemCollection")


def _dates(items) -> str:
    return ", ".join(sorted({t.strftime("%Y-%m-%d") for t in (_times(item)[0] for item in items) if t}))


def load_item(source) -> tuple[Any, str | None]:
    """The one STAC Item of `source` and its location (see :func:`load_items`).

    Raises
    ------
    ProductReadError
        An ItemCollection holding no item or several (several dates are a
        time series: ``snap-pc timeseries``).
    """
    items, location = load_items(source)
    if len(items) == 1:
        return items[0], location
    where = location or "ItemCollection"
    if not items:
        raise ProductReadError(f"{where}: an ItemCollection without items; nothing to read")
    raise ProductReadError(
        f"{where}: an ItemCollection of {len(items)} items (dates {_dates(items)}); a product is one item: open one "
        "item's JSON (pystac: collection.items[i].save_object(...)), or give the collection to "
        "`snap-pc timeseries --graph ...`, which reads each item as one date")


def write_items(source, folder: str | Path) -> list[Path]:
    """Write each Item of `source` as its own item file ``folder/<id>.json``, hrefs made absolute.

    What ``snap-pc timeseries`` runs its graph on, one item per date: a graph's
    ``Read`` takes a file.

    Parameters
    ----------
    source : str, Path or pystac.ItemCollection
        An ItemCollection (or Item) file, URL or object (:func:`load_items`).
    folder : str or Path
        Created if needed; files of the same names are replaced.

    Returns
    -------
    list of Path
        One file per item, in the collection's order.
    """
    items, location = load_items(source)
    where = location or "ItemCollection"
    if not items:
        raise ProductReadError(f"{where}: an ItemCollection without items; nothing to read")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for item in items:
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        for key, asset in item.assets.items():
            href = asset.get_absolute_href()
            if href is None:
                raise ProductReadError(f"{where}: item {item.id}: asset '{key}' has the relative href {asset.href!r} "
                                       "and the item no location to resolve it against")
            d["assets"][key]["href"] = href
        path = folder / (re.sub(r"[^\w.-]", "_", item.id) + ".json")
        if path in paths:
            raise ProductReadError(f"{where}: two items with the id {item.id!r}")
        path.write_text(json.dumps(d, indent=1), encoding="utf-8")
        paths.append(path)
    return paths


# --- assets -> bands -----------------------------------------------------------------------------


def _spectral_entries(asset: dict) -> list[dict]:
    """The asset's band descriptions: ``eo:bands`` (STAC 1.0) or ``bands`` (STAC 1.1)."""
    entries = asset.get("eo:bands") or asset.get("bands") or []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _s2_name(text: Any) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    token = text.strip()
    if _BAND_TOKEN.match(token):
        return snap_band_name(token)
    return S2_ALIASES.get(token.lower())


def asset_band(key: str, asset: dict) -> str | None:
    """SNAP's name of the Sentinel-2 band an asset holds, or None when it holds no single S2 band.

    Parameters
    ----------
    key : str
        The asset's key in the item (``B04``, ``red``, ``B04_10m``, ``red-jp2``).
    asset : dict
        The asset as JSON (``eo:bands``/``bands`` are looked at).

    Examples
    --------
    >>> asset_band("B8A", {}), asset_band("nir08", {}), asset_band("B02_10m", {}), asset_band("SCL", {})
    ('B8A', 'B8A', 'B2', 'quality_scene_classification')
    >>> asset_band("rededge1", {"eo:bands": [{"name": "rededge1", "common_name": "rededge"}]})
    'B5'
    >>> asset_band("visual", {"eo:bands": [{"name": "red"}, {"name": "green"}, {"name": "blue"}]}) is None
    True
    """
    entries = _spectral_entries(asset)
    if len(entries) > 1:
        return None
    entry = entries[0] if entries else {}
    m = _ASSET_KEY.match(key)
    for text in (entry.get("name"), m["band"] if m else key, entry.get("common_name"), entry.get("eo:common_name")):
        name = _s2_name(text)
        if name:
            return name
    return None


def _is_raster_data(asset: dict, href: str) -> bool:
    """A raster file (by media type, else by name) whose roles, if any, include ``data``."""
    media = str(asset.get("type") or "").strip().lower()
    if media:
        raster = media.startswith(RASTER_MEDIA_TYPES)
    else:
        raster = urllib.parse.urlparse(href).path.lower().endswith(RASTER_SUFFIXES)
    roles = asset.get("roles")
    return raster and (not roles or "data" in roles)


def _native(band: str) -> int:
    return SCL_RESOLUTION if band == SCL_BAND else S2_RESOLUTIONS[band]


def _resolution(key: str, asset: dict) -> float | None:
    """The asset's pixel size (m) from its key (``_20m``), ``raster:bands`` or ``gsd``; None if not said."""
    m = _ASSET_KEY.match(key)
    if m and m["res"]:
        return float(m["res"])
    value = _raster_fields(asset).get("spatial_resolution") or asset.get("gsd")
    return float(value) if isinstance(value, (int, float)) else None


def _preference(key: str, asset: dict, band: str) -> tuple:
    """Sort key among assets of one band: GeoTIFF (COG) first, then the native resolution, then the finest."""
    media = str(asset.get("type") or "").lower()
    tiff = "tiff" in media or (not media and ".tif" in str(asset.get("href", "")).lower())
    res = _resolution(key, asset)
    return (not tiff, res is not None and res != _native(band), res or 0.0)


def _raster_fields(asset: dict) -> dict:
    """``scale``, ``offset``, ``nodata``, ``spatial_resolution`` of the asset's (first) band, where given.

    STAC 1.0 puts them in ``raster:bands``; STAC 1.1 in ``bands`` entries or
    on the asset as ``raster:scale``, ``raster:offset``, ``nodata``.
    """
    rb = asset.get("raster:bands")
    if isinstance(rb, list) and rb and isinstance(rb[0], dict):
        return {k: rb[0][k] for k in ("scale", "offset", "nodata", "spatial_resolution") if rb[0].get(k) is not None}
    entry = (_spectral_entries(asset) or [{}])[0]
    out = {}
    for k in ("scale", "offset", "spatial_resolution"):
        value = entry.get(f"raster:{k}", asset.get(f"raster:{k}"))
        if value is not None:
            out[k] = value
    nodata = entry.get("nodata", asset.get("nodata"))
    if nodata is not None:
        out["nodata"] = nodata
    return out


def s2_level(item) -> str:
    """``Level-2A``, ``Level-1C`` or ``""`` from ``s2:product_type``, ``processing:level``, the collection, the id."""
    props = item.properties
    for text in (props.get("s2:product_type"), props.get("processing:level"), item.collection_id, item.id):
        if isinstance(text, str):
            if _LEVEL_2A.search(text):
                return "Level-2A"
            if _LEVEL_1C.search(text):
                return "Level-1C"
    return ""


def s2_radiometry(item) -> S2ProductMetadata:
    """The radiometry of a Sentinel-2 item without ``raster:bands``, as the SAFE reader holds it.

    Quantification 10000, NODATA 0, and from processing baseline 04.00 on an
    offset of :data:`BASELINE_ADD_OFFSET` in every band (``BOA_ADD_OFFSET``
    for L2A, ``RADIO_ADD_OFFSET`` for L1C).
    """
    level = s2_level(item)
    baseline = next((str(item.properties[k]) for k in BASELINE_PROPERTIES if item.properties.get(k) is not None), "")
    md = S2ProductMetadata(root_name="STAC_Item", level=level, processing_baseline=baseline,
                           quantification=S2_QUANTIFICATION, nodata=S2_NODATA,
                           offset_tag="RADIO_ADD_OFFSET" if level == "Level-1C" else "BOA_ADD_OFFSET")
    if md.baseline >= OFFSET_BASELINE:
        md.offsets = {b: BASELINE_ADD_OFFSET for b in S2_BANDS}
    return md


def _utc(t: _dt.datetime | None) -> _dt.datetime | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)).astimezone(_dt.timezone.utc)


def _times(item) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    """``(start, stop)`` in UTC: ``start_datetime``/``end_datetime`` when given, else ``datetime``."""
    common = item.common_metadata
    start = _utc(common.start_datetime or item.datetime)
    return start, _utc(common.end_datetime or item.datetime) or start


def _choose_assets(item, where: str) -> dict[str, tuple[str, Any, str]]:
    """Band name -> ``(asset key, pystac.Asset, absolute href)`` of the item's Sentinel-2 band assets."""
    found: dict[str, list[tuple[tuple, str, Any, str]]] = {}
    for key, asset in item.assets.items():
        fields = asset.to_dict()
        band = asset_band(key, fields)
        if band is None:
            continue
        href = asset.get_absolute_href()
        if href is None:
            raise ProductReadError(f"{where}: asset '{key}' has the relative href {asset.href!r} and the item no "
                                   "location to resolve it against (pystac: item.set_self_href(...))")
        if _is_raster_data(fields, href):
            found.setdefault(band, []).append((_preference(key, fields, band), key, asset, href))
    chosen = {}
    for band in (*S2_BANDS, SCL_BAND):  # SNAP's order
        if band in found:
            _, key, asset, href = min(found[band], key=lambda c: c[0])
            if len(found[band]) > 1:
                log.info("%s: band %s from asset '%s' (also in %s)", where, band, key,
                         ", ".join(f"'{c[1]}'" for c in found[band] if c[1] != key))
            chosen[band] = (key, asset, href)
    return chosen


def _check_proj(where: str, key: str, asset: dict, props: dict, crs, transform, shape) -> None:
    """Log where the ``proj:`` fields disagree with the file (the file is used)."""
    problems = []
    code = asset.get("proj:code", props.get("proj:code"))
    epsg = asset.get("proj:epsg", props.get("proj:epsg"))
    stated = code or (f"EPSG:{epsg}" if epsg else None)
    if stated and crs is not None:
        try:
            if CRS.from_user_input(stated) != crs:
                problems.append(f"{stated} vs the file's {crs}")
        except CRSError:
            problems.append(f"unknown CRS {stated}")
    t = asset.get("proj:transform")
    if isinstance(t, list) and len(t) >= 6 and transform is not None and \
            not Affine(*t[:6]).almost_equals(transform, precision=1e-6):
        problems.append(f"proj:transform {tuple(t[:6])} vs the file's {tuple(transform)[:6]}")
    s = asset.get("proj:shape")
    if isinstance(s, list) and len(s) == 2 and tuple(s) != tuple(shape):
        problems.append(f"proj:shape {tuple(s)} vs the file's {tuple(shape)}")
    if problems:
        log.warning("%s: asset '%s': %s; using the file's", where, key, "; ".join(problems))


def _band_source(band: str, key: str, asset: dict, path: str, item, md: S2ProductMetadata, where: str):
    """``(BandSource, crs)`` of one asset: its header read, no pixel."""
    try:
        with open_raster(path) as ds:
            crs, transform = georeferencing(ds)
            shape = (ds.height, ds.width)
            dtype = np.dtype(ds.dtypes[0])
            file_nodata = ds.nodatavals[0]
    except ProductReadError as exc:
        raise ProductReadError(f"{where}: asset '{key}' ({band}): {exc}") from None
    _check_proj(where, key, asset, item.properties, crs, transform, shape)
    fields = _raster_fields(asset)
    nodata = fields.get("nodata", file_nodata)
    if band == SCL_BAND:
        return BandSource(
            name=band, path=path, index=1, shape=shape, file_dtype=dtype.str, transform=transform,
            nodata=SCL_NO_DATA if nodata is None else nodata, description="Scene classification (Sen2Cor SCL)",
            classes=SCL_CLASSES), crs
    if "scale" in fields or "offset" in fields:  # the item states the file's radiometry
        scale, offset = float(fields.get("scale", 1.0)), float(fields.get("offset", 0.0))
    elif np.issubdtype(dtype, np.integer):
        scale, offset = md.scale_offset(band)
    else:  # float files hold reflectance already
        scale, offset = 1.0, 0.0
    if nodata is None and np.issubdtype(dtype, np.integer):
        nodata = md.nodata
    entry = (_spectral_entries(asset) or [{}])[0]
    micrometres = entry.get("center_wavelength", entry.get("eo:center_wavelength"))
    table = S2B_WAVELENGTHS if "2b" in str(item.properties.get("platform", "")).lower() else S2A_WAVELENGTHS
    wavelength = float(micrometres) * 1000.0 if isinstance(micrometres, (int, float)) else table.get(band)
    return BandSource(
        name=band, path=path, index=1, shape=shape, file_dtype=dtype.str, transform=transform, scale=scale,
        offset=offset, nodata=nodata, unit=REFLECTANCE_UNIT, description=f"Reflectance in {band}",
        wavelength=wavelength), crs


def _headers(present: list[tuple[str, str, dict, str]], item, md: S2ProductMetadata, where: str) -> list:
    """:func:`_band_source` of each ``(band, key, asset, path)``, in order.

    A remote item's assets are opened on a few threads at once: each open is
    an HTTP round trip or more (about 13 for an L2A item), which would
    otherwise add up one after the other. Local files are opened in turn.
    """
    def one(entry):
        band, key, asset, path = entry
        return _band_source(band, key, asset, path, item, md, where)

    if not any(path.startswith("/vsi") for *_, path in present):
        return [one(entry) for entry in present]
    with ThreadPoolExecutor(max_workers=min(REMOTE_OPENS, len(present)), thread_name_prefix="stac") as pool:
        return list(pool.map(one, present))  # the first failure, in band order, is raised


def _attribute(value: Any):
    """A STAC property as a metadata attribute: numbers and text as they are, the rest as JSON text."""
    if isinstance(value, (str, int, float)):
        return value
    return json.dumps(value, default=str)


def _metadata_tree(item, where: str, chosen: dict, sources: list[BandSource], md: S2ProductMetadata) -> MetadataElement:
    stac = MetadataElement("STAC_Item", {"id": item.id, "collection": item.collection_id or "", "location": where})
    stac.elements.append(MetadataElement("properties", {k: _attribute(v) for k, v in item.properties.items()
                                                        if v is not None}))
    assets = MetadataElement("assets")
    for s in sources:
        key, _, href = chosen[s.name]
        assets.elements.append(MetadataElement(key, {"band": s.name, "href": href, "scale": s.scale,
                                                     "offset": s.offset, "nodata": _attribute(s.nodata)}))
    stac.elements.append(assets)
    radiometric = MetadataElement("Radiometric", {
        "FORMULA": "reflectance = DN * scale + offset", "PROCESSING_BASELINE": md.processing_baseline,
        "OFFSET_TAG": md.offset_tag, "SOURCE": "raster:bands where given, else the processing baseline"})
    return MetadataElement("metadata", elements=[stac, radiometric])


def read_stac(
    source,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    band_names: Iterable[str] | None = None,
    pixel_region=None,
) -> Product:
    """Open the Sentinel-2 scene of a STAC Item lazily as a multi-size reflectance product.

    Parameters
    ----------
    source : str, Path, pystac.Item or pystac.ItemCollection
        A STAC Item ``.json`` file, an http(s) URL of one, a
        :class:`pystac.Item`, or an ItemCollection holding exactly one item.
    tile_size : int
        Chunk edge in pixels.
    band_names : list of str, optional
        Bands to keep (``B2``, ``B8A``, ``quality_scene_classification``...;
        default: all found).
    pixel_region : str or tuple, optional
        ``(x, y, width, height)`` in pixels of the finest band (10 m).

    Returns
    -------
    Product
        Reflectance bands (float32, NaN = no data) at their native
        resolution, and ``quality_scene_classification`` (uint8) when the
        item has an SCL asset; only the assets' headers have been read.

    Raises
    ------
    ProductReadError
        No Sentinel-2 band asset, a missing or unreadable asset file (named),
        bands in different CRSs, or an ItemCollection of several items.
    """
    item, location = load_item(source)
    where = location or f"STAC item {item.id}"  # how messages name it
    band_names = list(band_names) if band_names is not None else None
    chosen = _choose_assets(item, where)
    if not [b for b in chosen if b != SCL_BAND]:
        keys = ", ".join(item.assets) or "none"
        raise ProductReadError(f"{where}: no Sentinel-2 band among the item's assets ({keys}); the STAC reader "
                               "reads Sentinel-2 band assets (B02 ... B12, B8A, SCL, or blue, red, nir ... with "
                               "eo:bands)")
    md = s2_radiometry(item)
    sources, missing, present, crs = [], [], [], None
    for band, (key, asset, href) in chosen.items():
        path = gdal_path(href)
        if not path.startswith("/vsi") and not Path(path).is_file():
            missing.append((band, f"asset '{key}' ({band}): {path}"))
            continue
        present.append((band, key, asset.to_dict(), path))
    for (band, key, _, _), (source_, band_crs) in zip(present, _headers(present, item, md, where)):
        if crs is None:
            crs = band_crs
        elif band_crs is not None and band_crs != crs:
            raise ProductReadError(f"{where}: asset '{key}' ({band}) is in {band_crs}, the other bands in {crs}")
        sources.append(source_)
    refuse_missing_files(missing, band_names, where, "asset file(s)", "download them again")
    if not sources:
        raise ProductReadError(f"{where}: none of the {len(chosen)} band asset files was found")
    start, stop = _times(item)
    stated = any(_raster_fields(asset.to_dict()).keys() & {"scale", "offset"} for _, asset, _ in chosen.values())
    if not stated and not md.processing_baseline and start is not None and start >= BASELINE_04_START:
        log.warning("%s: no raster:bands scale/offset and no processing baseline: no offset applied, but products "
                    "of baseline 04.00 and later (from 2022-01-25) need -0.1 (docs/stac.md)", where)
    bands = build_bands(sources, tile_size=tile_size, band_names=band_names, pixel_region=pixel_region, where=where)
    level = s2_level(item)
    product = Product(
        name=item.id,
        product_type=f"S2_MSI_{level}" if level else "S2_MSI",
        crs=crs,
        start_time=start,
        stop_time=stop,
        metadata=_metadata_tree(item, where, chosen, sources, md),
        file_location=location,
        description=f"Sentinel-2 MSI {level or 'scene'} from STAC item {item.id}",
    )
    for band in bands:
        product.add_band(band)
    return product


def local_asset_files(source) -> set[str]:
    """Resolved local paths of the Sentinel-2 band assets `source` reads (to keep writers off them).

    Empty for remote assets, and for a `source` that is not a readable STAC
    Item (the reader has said why already).
    """
    try:
        item, location = load_item(source)
        chosen = _choose_assets(item, location or item.id)
        paths = (gdal_path(href) for _, _, href in chosen.values())
        return {str(Path(p).resolve()) for p in paths if not p.startswith("/vsi")}
    except ProductReadError:
        return set()
