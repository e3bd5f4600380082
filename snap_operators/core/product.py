"""The product model: named lazy bands on a georeferenced grid.

A :class:`Product` mirrors SNAP's ``Product``: an ordered set of bands, a CRS,
start/stop times and a metadata tree. Each :class:`Band` holds a 2-D chunked
Dask array of *physical* values (scale and offset already applied) together
with its own affine geotransform, so Sentinel-2's 10/20/60 m bands can live in
one product until a ``Resample`` puts them on one grid (SNAP calls such a
product *multi-size*).

Nothing here reads pixels: building a product is cheap and streaming happens
only when a sink (``Write``) computes the arrays chunk by chunk.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import dask.array as da
import numpy as np
from affine import Affine

from .errors import OperatorError

#: Default chunk edge (pixels). 1024 x 1024 float32 = 4 MiB per band-chunk,
#: small enough for a handful of bands per worker thread to stay in L3/L2-ish
#: working sets and large enough that Dask's per-task overhead is negligible.
DEFAULT_TILE_SIZE = 1024


#: The suffix SNAP's Collocate gives band names by default: ``${ORIGINAL_NAME}_M`` (reference),
#: ``${ORIGINAL_NAME}_S${SECONDARY_NUMBER_ID}`` (secondary; SNAP 8 and older: ``_S``).
COLLOCATE_SUFFIX = r"_(?:M|S\d*)"
_COLLOCATED_NAME = re.compile(rf"^.+{COLLOCATE_SUFFIX}$")


@dataclass
class MetadataElement:
    """A node of the metadata tree (SNAP's ``MetadataElement``).

    Parameters
    ----------
    name : str
        Element name.
    attributes : dict
        Attribute name -> value (str, number or datetime).
    elements : list of MetadataElement
        Child elements, in order.
    """

    name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    elements: list["MetadataElement"] = field(default_factory=list)

    def element(self, name: str) -> "MetadataElement | None":
        """First child element called `name`, or None."""
        for e in self.elements:
            if e.name == name:
                return e
        return None

    def add_element(self, name: str, **attributes: Any) -> "MetadataElement":
        """Append and return a new child element."""
        e = MetadataElement(name, dict(attributes))
        self.elements.append(e)
        return e

    def copy(self) -> "MetadataElement":
        """Deep copy."""
        return MetadataElement(self.name, dict(self.attributes), [e.copy() for e in self.elements])

    def walk(self) -> Iterator["MetadataElement"]:
        """Depth-first iteration over this element and all its descendants."""
        yield self
        for e in self.elements:
            yield from e.walk()


@dataclass
class ClassInfo:
    """One category of a class band (SNAP's ``IndexCoding`` entry)."""

    value: int
    name: str
    color: tuple[int, int, int]
    description: str = ""


@dataclass(frozen=True)
class StoredValues:
    """A band's samples as stored, before scaling and no-data masking.

    The engine's :attr:`Band.data` holds physical values with NaN at no-data
    pixels; SNAP's band maths instead reads what is stored, scaled
    (``BandMathsOp.fillSymbolWithData``), so ``B4 == -999`` or ``B4 + 1`` at a
    no-data pixel give SNAP's values only from this view. Readers set it;
    operators that only select pixels (Read and Subset regions, nearest
    Resample) carry it along; any other change of a band's pixels detaches it
    (:meth:`Band.replace`).

    Parameters
    ----------
    data : dask.array.Array or None
        Samples as stored in the file, same shape as the band, nothing
        masked; None once detached.
    dtype : numpy.dtype
        Storage type (``uint16`` for Sentinel-2 counts).
    scale, offset : float
        Physical value = stored * scale + offset (SNAP's scaling factor and offset).
    log10 : bool
        SNAP's ``LOG10_SCALED``: physical value = 10 ** (stored * scale + offset).
    no_data : float or int, optional
        Stored value marking no-data pixels, when one is used.
    """

    data: da.Array | None
    dtype: np.dtype
    scale: float = 1.0
    offset: float = 0.0
    log10: bool = False
    no_data: float | int | None = None

    @property
    def scaled(self) -> bool:
        """SNAP's ``isScalingApplied``."""
        return self.scale != 1.0 or self.offset != 0.0 or self.log10

    def map(self, func) -> "StoredValues":
        """The same view with ``func(data)`` as data: for pixel selections (slices, windows)."""
        return self if self.data is None else dataclasses.replace(self, data=func(self.data))

    def detached(self) -> "StoredValues":
        """This view without its data: the band's pixels were changed by an operator."""
        return dataclasses.replace(self, data=None)

    def geophysical(self) -> da.Array:
        """What ``BandMathsOp`` reads: stored samples, or float32 scaled values for a scaled band.

        Nothing is masked: a no-data pixel reads as its stored value, scaled.
        """
        if self.data is None:
            raise ValueError("stored values are detached")
        if not self.scaled:
            return self.data
        return self.data.map_blocks(geophysical_values, self.scale, self.offset, self.log10, dtype=np.float32)


def geophysical_values(stored: np.ndarray, scale: float, offset: float, log10: bool) -> np.ndarray:
    """``TileImpl.getSampleFloat`` of a scaled band: ``(float) (stored * scale + offset)`` (10 ** that if `log10`).

    >>> geophysical_values(np.array([0, 1234], np.uint16), 1e-4, -0.1, False)
    array([-0.1   ,  0.0234], dtype=float32)
    """
    v = stored.astype(np.float32).astype(np.float64) * scale + offset  # the raster's float sample, then scale(double)
    if log10:
        v = np.power(10.0, v)
    return v.astype(np.float32)


@dataclass
class Band:
    """A raster band: a lazy 2-D array on its own grid.

    Parameters
    ----------
    name : str
        Band name as SNAP shows it (``B2``, ``B8A``, ``Sigma0_VV_db``).
    data : dask.array.Array
        Shape ``(rows, cols)``, physical values.
    transform : affine.Affine or None
        Pixel-corner geotransform in CRS units; None for products without map
        geocoding (e.g. tie-point geocoded swaths).
    no_data : float or int or None
        Value marking invalid pixels; NaN for float bands.
    unit : str, optional
        Physical unit (``"dB"``, ``"intensity"``, ``"1"``).
    description : str, optional
    wavelength : float, optional
        Central wavelength in nm (spectral bands only).
    classes : list of ClassInfo, optional
        Categories of a class band; writers emit them as a color table and
        category names.
    stored : StoredValues, optional
        The samples as the file stores them (set by readers), for SNAP's
        band maths; None for bands an operator computed, whose `data` is
        what is stored.
    valid_expression : str, optional
        SNAP's valid-pixel expression property. Kept and written (BEAM-DIMAP
        ``VALID_MASK_TERM``, a GeoTIFF band tag), never applied to `data`.
    """

    name: str
    data: da.Array
    transform: Affine | None = None
    no_data: float | int | None = None
    unit: str | None = None
    description: str | None = None
    wavelength: float | None = None
    classes: list[ClassInfo] | None = None
    stored: StoredValues | None = None
    valid_expression: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def resolution(self) -> tuple[float, float] | None:
        """Pixel size ``(x, y)`` in CRS units (both positive), or None."""
        if self.transform is None:
            return None
        return (abs(self.transform.a), abs(self.transform.e))

    def replace(self, **changes: Any) -> "Band":
        """A copy with some fields replaced (the array is shared, not copied).

        New `data` without new `stored` detaches the stored view: the pixels
        no longer are the file's.
        """
        if "data" in changes and "stored" not in changes and self.stored is not None:
            changes["stored"] = self.stored.detached()
        return dataclasses.replace(self, **changes)

    def select(self, func, **changes: Any) -> "Band":
        """A copy whose data (and stored view) are ``func(array)``, for pixel selections.

        `func` must only pick pixels (slices, windows, steps), never change
        values, so the stored view stays the file's samples.
        """
        stored = None if self.stored is None else self.stored.map(func)
        return dataclasses.replace(self, data=func(self.data), stored=stored, **changes)

    def valid_mask(self, block: np.ndarray) -> np.ndarray:
        """Boolean mask of valid pixels of a numpy `block` of this band."""
        return valid_mask(block, self.no_data)


def float_values(block: np.ndarray, no_data: float | int | None) -> np.ndarray:
    """`block` as float64, NaN where it holds no data (:func:`valid_mask`)."""
    return np.where(valid_mask(block, no_data), np.asarray(block, dtype=np.float64), np.nan)


def valid_mask(block: np.ndarray, no_data: float | int | None) -> np.ndarray:
    """True where `block` holds data: not NaN and not equal to `no_data`."""
    if np.issubdtype(block.dtype, np.floating):
        ok = ~np.isnan(block)
        if no_data is not None and not np.isnan(no_data):
            ok &= block != no_data
        return ok
    if no_data is None:
        return np.ones(block.shape, dtype=bool)
    return block != no_data


@dataclass
class Product:
    """A set of named bands sharing a CRS (SNAP's ``Product``).

    Parameters
    ----------
    name : str
    product_type : str
    bands : dict of str to Band
        Ordered band name -> band.
    crs : rasterio.crs.CRS or None
    start_time, stop_time : datetime.datetime, optional
        Sensing start/stop (UTC).
    metadata : MetadataElement
        Root of the metadata tree (``metadata`` in SNAP).
    file_location : str, optional
        Path the product was read from, if any.
    """

    name: str
    product_type: str = ""
    bands: dict[str, Band] = field(default_factory=dict)
    crs: Any = None
    start_time: _dt.datetime | None = None
    stop_time: _dt.datetime | None = None
    metadata: MetadataElement = field(default_factory=lambda: MetadataElement("metadata"))
    file_location: str | None = None
    description: str = ""

    # --- bands ---------------------------------------------------------
    def band(self, name: str) -> Band:
        """The band called `name`; raises a one-line error listing the bands."""
        try:
            return self.bands[name]
        except KeyError:
            raise OperatorError(
                f"product '{self.name}' has no band '{name}'; bands: {self.bands_listed()}"
            ) from None

    def bands_listed(self) -> str:
        """The band names for an error message, with how to name them when the file gave none.

        A GeoTIFF without band descriptions reads as ``band_1``, ``band_2``...;
        an operator asking for ``B2`` would otherwise seem to blame the wrong
        thing.
        """
        listed = ", ".join(self.bands) or "(none)"
        unnamed = [n for n in self.bands if re.fullmatch(r"band_[0-9]+", n)]
        if unnamed and len(unnamed) == len(self.bands):
            where = self.file_location or self.name
            listed += (f" (the bands of {where} have no names: a GeoTIFF without band descriptions, or one cut "
                       "short; name them in band order, one call per band: "
                       f"rio edit-info --bidx 1 --description B2 {where})")
        elif unnamed:  # merged or collocated from an unnamed file (a single-band VV.tif reads as band_1)
            them = "them in their file, one call per band" if len(unnamed) > 1 else "it in its file"
            listed += (f" ({', '.join(unnamed)}: no name{'s' if len(unnamed) > 1 else ''}, from a GeoTIFF without "
                       f"band descriptions; name {them}: rio edit-info --bidx 1 --description Sigma0_VV_db FILE)")
        renamed = [n for n in self.bands if _COLLOCATED_NAME.match(n)]
        if renamed and "collocationFlags" in self.bands:
            # SNAP's Collocate renames by default (B2 -> B2_M, Sigma0_VV_db -> Sigma0_VV_db_S0)
            listed += (f" (names renamed by Collocate, e.g. {renamed[0]}: collocate with renameReferenceComponents "
                       "and renameSecondaryComponents false, as graphs/progressive_classifier_s1s2.xml does, or give "
                       "the graphs the Sentinel-2 and Sentinel-1 products themselves)")
        return listed

    def has_band(self, name: str) -> bool:
        return name in self.bands

    @property
    def band_names(self) -> list[str]:
        return list(self.bands)

    def add_band(self, band: Band) -> Band:
        if band.name in self.bands:
            raise OperatorError(f"product '{self.name}' already has a band '{band.name}'")
        self.bands[band.name] = band
        return band

    # --- grid ----------------------------------------------------------
    @property
    def is_multi_size(self) -> bool:
        """True when the bands do not all share one grid."""
        grids = {(b.shape, _transform_key(b.transform)) for b in self.bands.values()}
        return len(grids) > 1

    def reference_band(self) -> Band:
        """The finest-resolution band (its grid is the product's scene grid)."""
        if not self.bands:
            raise OperatorError(f"product '{self.name}' has no bands")
        return max(self.bands.values(), key=lambda b: b.height * b.width)

    @property
    def scene_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the scene grid (SNAP's sceneRasterHeight/Width)."""
        return self.reference_band().shape

    @property
    def transform(self) -> Affine | None:
        """Geotransform of the scene grid."""
        return self.reference_band().transform

    def require_single_size(self, operator: str) -> None:
        """Raise if bands differ in size, as SNAP does for most operators."""
        if self.is_multi_size:
            sizes = sorted({f"{b.width}x{b.height}" for b in self.bands.values()})
            raise OperatorError(
                f"{operator}: product '{self.name}' is multi-size ({', '.join(sizes)}); "
                "add a Resample node before it"
            )

    def bounds(self) -> tuple[float, float, float, float] | None:
        """``(left, bottom, right, top)`` of the scene grid in CRS units."""
        t = self.transform
        if t is None:
            return None
        h, w = self.scene_shape
        xs = [t.c, t.c + t.a * w]
        ys = [t.f, t.f + t.e * h]
        return (min(xs), min(ys), max(xs), max(ys))

    def copy(self, name: str | None = None, bands: Iterable[Band] | None = None) -> "Product":
        """A new product with the same geocoding, times and metadata.

        Bands are shared (they are immutable lazy arrays) unless `bands` is
        given, in which case the copy holds exactly those.
        """
        p = Product(
            name=name or self.name,
            product_type=self.product_type,
            crs=self.crs,
            start_time=self.start_time,
            stop_time=self.stop_time,
            metadata=self.metadata.copy(),
            description=self.description,
        )
        for b in (self.bands.values() if bands is None else bands):
            p.bands[b.name] = b
        return p

    def __repr__(self) -> str:  # pragma: no cover - convenience
        h, w = self.scene_shape if self.bands else (0, 0)
        return f"Product({self.name!r}, {w}x{h}, bands={self.band_names})"


def _transform_key(t: Affine | None):
    return None if t is None else tuple(round(v, 9) for v in t[:6])


def chunks_for(shape: tuple[int, int], tile_size: int = DEFAULT_TILE_SIZE) -> tuple[int, int]:
    """Chunk shape for a band of `shape` with square tiles of `tile_size`."""
    return (min(tile_size, shape[0]) or 1, min(tile_size, shape[1]) or 1)


def fill_value(dtype: np.dtype) -> float | int:
    """The no-data value the project uses for `dtype`: NaN for floats, else max."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return float("nan")
    if dtype == np.uint8:
        return 255
    return int(np.iinfo(dtype).min) if np.issubdtype(dtype, np.signedinteger) else int(np.iinfo(dtype).max)
