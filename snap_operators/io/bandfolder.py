"""Reader for a folder of per-band raster files.

Two layouts are recognised (file names are matched case-insensitively):

* Sentinel-2 band files ``<prefix>_B01.jp2`` ... ``<prefix>_B8A.tif`` (the
  ``IMG_DATA`` folder of a SAFE granule, BigEarthNet S2 patches). Bands get
  SNAP's names ``B1`` ... ``B12``, ``B8A`` (zero padding stripped), in SNAP's
  order, each at its native resolution (a multi-size product).
  Integer digital numbers are converted to reflectance = DN / 10000 with
  DN 0 (Sentinel-2's NODATA value) -> NaN. Band files carry no processing
  baseline, so no radiometric offset is applied: this is right for products
  before baseline 04.00 (BigEarthNet, the eo-box tile); read newer products
  from their SAFE, whose metadata gives the offset. Float files are taken as
  reflectance already.
* Sentinel-1 backscatter ``<prefix>_VV.tif`` / ``<prefix>_VH.tif``: in dB
  (BigEarthNet S1 patches, Google Earth Engine exports) bands
  ``Sigma0_VV_db`` / ``Sigma0_VH_db`` (SNAP's names for dB backscatter), unit
  ``dB``; as linear intensity (ASF's RTC products by default) ``Sigma0_VV`` /
  ``Sigma0_VH``, unit ``intensity``; values as stored. The values say which
  (a decimated read of the first file, :func:`holds_db`), and so does the
  name of an ASF HyP3 RTC product (:func:`hyp3_rtc_name`: ``..._RTC30_G_gpuned_FD6A``,
  gamma0 or sigma0, power, decibel or amplitude): where both say, they must
  agree. HyP3's amplitude files are squared to intensity as they are read
  (``Sigma0_VV``, unit ``intensity``): taken as intensity, every dB value
  would be half what it is (water at -9 dB instead of -18). HyP3's gamma0
  keeps the ``Sigma0_*`` names the project's Sentinel-1 channels are known
  by; the band description and the metadata say gamma0.

A ``*_labels_metadata.json`` beside the bands (BigEarthNet) goes into the
metadata tree and gives the acquisition time; otherwise the time comes from a
``YYYYMMDDTHHMMSS`` stamp in the file names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..core.errors import ProductReadError
from ..core.product import DEFAULT_TILE_SIZE, MetadataElement, Product, valid_mask
from .geotiff import georeferencing, open_raster
from .raster_bands import DB_NEGATIVE_SHARE, BandSource, build_bands, negative_share
from .times import parse_datetime

#: Sentinel-2 band names in SNAP's order.
S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
#: Native resolution (m) of each band.
S2_RESOLUTIONS = dict(zip(S2_BANDS, (60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20)))
#: Central wavelengths (nm) as given in the products' metadata (S2A, S2B).
S2A_WAVELENGTHS = dict(zip(S2_BANDS, (442.7, 492.7, 559.8, 664.6, 704.1, 740.5, 782.8, 832.8, 864.7, 945.1,
                                      1373.5, 1613.7, 2202.4)))
S2B_WAVELENGTHS = dict(zip(S2_BANDS, (442.3, 492.3, 559.0, 665.0, 703.8, 739.1, 779.7, 833.0, 864.0, 943.2,
                                      1376.9, 1610.4, 2185.7)))
#: Sentinel-2 quantification value: reflectance = DN / 10000 (baselines < 04.00).
S2_QUANTIFICATION = 10000.0
#: Sentinel-2 special value NODATA.
S2_NODATA = 0
#: SNAP's unit of Sentinel-2 reflectance (dimensionless).
REFLECTANCE_UNIT = "dl"

S1_POLARISATIONS = ("VV", "VH", "HH", "HV")
#: Fewer valid non-zero pixels than this in a backscatter file: taken as dB.
MIN_UNIT_PIXELS = 100

_S2_FILE = re.compile(r"^(?P<prefix>.+)_(?P<band>B(?:0?[1-9]|1[0-2]|8A))\.(?:jp2|tiff?)$", re.IGNORECASE)
_S1_FILE = re.compile(r"^(?P<prefix>.+)_(?P<pol>VV|VH|HH|HV)\.tiff?$", re.IGNORECASE)
_STAMP = re.compile(r"(\d{8}T\d{6})")
#: ASF HyP3 RTC product names: S1x_yy_aaaaaaaaTbbbbbb_ppo_RTCzz_G_defklm_ssss (the product's README):
#: d gamma0 (g) or sigma0 (s), e power (p), decibel (d) or amplitude (a).
_HYP3_RTC = re.compile(r"_RTC\d{2}_G_(?P<backscatter>[gs])(?P<scale>[pda])[uw][nf][ec][dm]_[0-9A-Z]{4}$",
                       re.IGNORECASE)
_HYP3_SCALES = {"p": "power", "d": "decibel", "a": "amplitude"}


def snap_band_name(token: str) -> str:
    """SNAP's name for a file band token: ``B01`` -> ``B1``, ``b8a`` -> ``B8A``."""
    token = token.upper()
    return "B8A" if token == "B8A" else f"B{int(token[1:])}"


def s1_band_name(polarisation: str) -> str:
    """SNAP's name for dB backscatter: ``VV`` -> ``Sigma0_VV_db``."""
    return f"Sigma0_{polarisation.upper()}_db"


def hyp3_rtc_name(prefix: str) -> tuple[str, str] | None:
    """``(backscatter, scale)`` an ASF HyP3 RTC product's name gives, or None for another name.

    backscatter is ``gamma0`` or ``sigma0``; scale ``power``, ``decibel`` or ``amplitude``.

    >>> hyp3_rtc_name("S1A_IW_20180128T161201_DVP_RTC30_G_gpuned_FD6A")
    ('gamma0', 'power')
    >>> hyp3_rtc_name("S2B_MSIL2A_20170613T101031_0_48") is None
    True
    """
    m = _HYP3_RTC.search(prefix)
    if m is None:
        return None
    return ("gamma0" if m["backscatter"].lower() == "g" else "sigma0"), _HYP3_SCALES[m["scale"].lower()]


def holds_db(path: str | Path, hyp3: tuple[str, str] | None = None) -> bool:
    """Whether the backscatter file `path` holds dB rather than linear intensity.

    Intensity is never negative; dB of real scenes is negative almost
    everywhere (:data:`~.raster_bands.DB_NEGATIVE_SHARE`). Decided on at most
    256 x 256 pixels read decimated, zeros (fill) and no-data left out; dB
    when fewer than :data:`MIN_UNIT_PIXELS` values remain (BigEarthNet's
    convention). With `hyp3` (:func:`hyp3_rtc_name` of the file's product),
    the name's scale decides where the values say nothing, and must agree
    with them where they do.

    Raises
    ------
    ProductReadError
        If the values contradict the HyP3 name's scale.
    """
    with open_raster(path) as ds:
        v = ds.read(1, out_shape=(min(ds.height, 256), min(ds.width, 256)), masked=True)
    share, n = negative_share(v.compressed())
    values_db = n < MIN_UNIT_PIXELS or share > DB_NEGATIVE_SHARE
    if hyp3 is None:
        return values_db
    named_db = hyp3[1] == "decibel"
    if n >= MIN_UNIT_PIXELS and values_db != named_db:
        raise ProductReadError(
            f"{path}: the product's name says {hyp3[1]} (ASF HyP3 RTC scale letter) but the file holds "
            f"{'linear' if named_db else 'dB'} values ({share:.1%} below 0): the files were converted after ASF "
            "made them; convert them back, or rename them without the product code"
        )
    return named_db


def find_band_files(folder: str | Path) -> tuple[str, str, dict[str, Path]]:
    """``(kind, prefix, {band name: file})`` for a band folder, kind ``S2`` or ``S1``.

    Raises
    ------
    ProductReadError
        If the folder holds no band files, two files for one band, or the
        bands of several products.
    """
    folder = Path(folder)
    files = sorted(f for f in folder.iterdir() if f.is_file())
    for kind, pattern, namer, order in (
        ("S2", _S2_FILE, lambda m: snap_band_name(m["band"]), S2_BANDS),
        ("S1", _S1_FILE, lambda m: s1_band_name(m["pol"]), tuple(s1_band_name(p) for p in S1_POLARISATIONS)),
    ):
        found: dict[str, Path] = {}
        prefixes = set()
        for f in files:
            m = pattern.match(f.name)
            if not m:
                continue
            name = namer(m)
            if name in found:
                raise ProductReadError(f"{folder}: two files for band {name}: {found[name].name}, {f.name}")
            found[name] = f
            prefixes.add(m["prefix"])
        if found:
            if len(prefixes) > 1:
                raise ProductReadError(
                    f"{folder}: band files of several products ({', '.join(sorted(prefixes))}); "
                    "keep one product per folder"
                )
            return kind, prefixes.pop(), {n: found[n] for n in order if n in found}
    raise ProductReadError(
        f"{folder}: no band files found (expected *_B02.jp2, *_B8A.tif, ... or *_VV.tif, *_VH.tif)"
    )


def _json_element(name: str, value: dict[str, Any]) -> MetadataElement:
    e = MetadataElement(name)
    for k, v in value.items():
        if isinstance(v, dict):
            e.elements.append(_json_element(k, v))
        elif isinstance(v, list):
            e.attributes[k] = json.dumps(v)
        else:
            e.attributes[k] = v
    return e


def _labels_metadata(folder: Path) -> dict[str, Any] | None:
    for f in sorted(folder.glob("*_labels_metadata.json")):
        try:
            value = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProductReadError(f"cannot read {f}: {exc}") from None
        if isinstance(value, dict):
            return value
    return None


def read_band_folder(
    path: str | Path,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    band_names: Iterable[str] | None = None,
    pixel_region=None,
) -> Product:
    """Open a folder of per-band files as one lazy (multi-size) product.

    Parameters
    ----------
    path : str or Path
        The folder.
    tile_size : int
        Chunk edge in pixels.
    band_names : list of str, optional
        Bands to keep (SNAP names, ``B2``, ``B8A``, ``Sigma0_VV_db`` or, linear, ``Sigma0_VV``).
    pixel_region : str or tuple, optional
        ``(x, y, width, height)`` in pixels of the finest band.

    Returns
    -------
    Product
        Sentinel-2: reflectance (float32, NaN = no data); Sentinel-1: dB or
        linear intensity, as the files hold it.
    """
    folder = Path(path)
    kind, prefix, files = find_band_files(folder)
    hyp3 = hyp3_rtc_name(prefix) if kind == "S1" else None
    if kind == "S1" and not holds_db(next(iter(files.values())), hyp3):
        files = {name.removesuffix("_db"): f for name, f in files.items()}
    wavelengths = S2B_WAVELENGTHS if prefix.upper().startswith("S2B") else S2A_WAVELENGTHS
    sources = []
    crs = None
    for name, f in files.items():
        with open_raster(f) as ds:
            band_crs, transform = georeferencing(ds)
            if crs is None:
                crs = band_crs
            elif band_crs is not None and band_crs != crs:
                raise ProductReadError(f"{folder}: {f.name} has CRS {band_crs}, other bands {crs}")
            dtype = np.dtype(ds.dtypes[0])
            nodata = ds.nodatavals[0]
            if kind == "S2":
                integer = np.issubdtype(dtype, np.integer)
                source = BandSource(
                    name=name, path=str(f), index=1, shape=(ds.height, ds.width), file_dtype=dtype.str,
                    transform=transform,
                    scale=1.0 / S2_QUANTIFICATION if integer else 1.0,
                    nodata=(S2_NODATA if nodata is None else nodata) if integer else nodata,
                    unit=REFLECTANCE_UNIT, description=f"Reflectance in {name}",
                    wavelength=wavelengths[name],
                )
            else:
                db = name.endswith("_db")
                what = "Gamma0 (terrain-flattened)" if hyp3 and hyp3[0] == "gamma0" else "Sigma0"
                squared = ", squared from the file's amplitude" if hyp3 and hyp3[1] == "amplitude" else ""
                source = BandSource(
                    name=name, path=str(f), index=1, shape=(ds.height, ds.width), file_dtype=dtype.str,
                    transform=transform, nodata=nodata, unit="dB" if db else "intensity",
                    description=f"{what} {name.split('_')[1]} backscatter "
                                f"{'in dB' if db else f'(linear intensity{squared})'}",
                )
            sources.append(source)

    labels = _labels_metadata(folder)
    start = None
    if labels is not None:
        start = parse_datetime(labels.get("acquisition_time") or labels.get("acquisition_date"))
    if start is None:
        m = _STAMP.search(prefix)
        start = parse_datetime(m[1]) if m else None

    metadata = MetadataElement("metadata")
    metadata.elements.append(MetadataElement("Band_Folder", {
        "folder": str(folder), "kind": kind, "prefix": prefix,
        **{f"file_{n}": f.name for n, f in files.items()},
        **({"hyp3_backscatter": hyp3[0], "hyp3_scale": hyp3[1]} if hyp3 else {}),
    }))
    if labels is not None:
        metadata.elements.append(_json_element("labels_metadata", labels))

    if kind == "S2":
        level = "Level-2A" if "MSIL2A" in prefix.upper() else "Level-1C" if "MSIL1C" in prefix.upper() else ""
        product_type = f"S2_MSI_{level}" if level else "S2_MSI"
    else:
        product_type = "S1_GRD" if "GRD" in prefix.upper() else "S1"
    bands = build_bands(sources, tile_size=tile_size, band_names=band_names, pixel_region=pixel_region,
                        where=str(folder))
    product = Product(
        name=prefix,
        product_type=product_type,
        crs=crs,
        start_time=start,
        stop_time=start,
        metadata=metadata,
        file_location=str(folder),
    )
    for band in bands:
        if hyp3 and hyp3[1] == "amplitude":
            band = band.replace(data=band.data.map_blocks(_squared, band.no_data, dtype=band.data.dtype))
        product.add_band(band)
    return product


def _squared(block: np.ndarray, no_data) -> np.ndarray:
    """Intensity from amplitude, no-data pixels kept as they are."""
    return np.where(valid_mask(block, no_data), block * block, block)
