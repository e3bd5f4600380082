"""Stream a product into a GeoTIFF, BigTIFF or Cloud-Optimized GeoTIFF.

All bands go into one file, so they share one dtype: numpy's
``result_type`` of the band dtypes, as SNAP's GeoTIFF writer promotes to the
widest band type. The file is tiled 512 x 512, DEFLATE-compressed (predictor
2 for integers, 3 for floats) and band-interleaved, so every chunk the engine
computes fills whole tiles of one band and is compressed once.

Conventions read back by :mod:`snap_operators.io.geotiff`:

* dataset tags ``PRODUCT_NAME``, ``PRODUCT_TYPE``, ``PRODUCT_START_TIME``,
  ``PRODUCT_STOP_TIME`` (ISO 8601, UTC);
* band descriptions = band names, and band tags ``BAND`` = band names too,
  which is where SNAP's GeoTIFF reader finds them; band units, ``IMAGERY``
  domain ``CENTRAL_WAVELENGTH_UM`` for spectral bands;
* no-data: pixel values are written as they are (a float band whose no-data
  value is -999 keeps its -999 pixels, as SNAP's GeoTIFF writer and the
  BEAM-DIMAP writer do) and each band's no-data value (NaN for float bands
  without one, the project's convention) goes into the ``GDAL_NODATA`` tag
  when all bands share it, else into a per-band ``<NoDataValue>`` of the PAM
  sidecar (GeoTIFF has one tag per file);
* band tag ``VALID_PIXEL_EXPRESSION``: SNAP's valid-pixel expression of a
  band (kept, never applied);
* class bands: band tag ``CLASS_NAMES`` = JSON ``{"1": "Water", ...}``, a
  colour table (GeoTIFF stores one only for band 1) and a GDAL PAM sidecar
  ``<file>.aux.xml`` with ``<CategoryNames>`` so GDAL and QGIS show the names.

Writes go to a hidden staged file in the target folder
(:class:`~snap_operators.core.staging.StagedFiles`); :meth:`finish` closes it and
verifies it (GDAL may only *log* a write error, e.g. on a full disk, so the
staged file is reopened and every tile checked to lie inside it),
:meth:`publish` renames it into place, :meth:`abort` deletes it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import dask.array as da
import numpy as np

from ..core.errors import ProductWriteError
from ..core.product import Band, Product
from ..core.staging import StagedFiles
from .geotiff import VALID_EXPRESSION_TAG

log = logging.getLogger(__name__)

try:  # GDAL errors rasterio raises unwrapped (e.g. on a full disk)
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - rasterio internals moved
    CPLE_BaseError = RuntimeError

#: Tile edge of written GeoTIFFs (pixels).
BLOCK_SIZE = 512
#: Format name -> (BIGTIFF creation option, is COG).
FORMATS = {"GeoTIFF": ("IF_SAFER", False), "GeoTIFF-BigTIFF": ("YES", False), "COG": ("IF_SAFER", True)}
TIFF_EXTENSIONS = (".tif", ".tiff")


def geotiff_path(path: str | os.PathLike) -> Path:
    """`path` with ``.tif`` appended unless it ends with ``.tif``/``.tiff``."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_EXTENSIONS:
        path = path.with_name(path.name + ".tif")
    return path


def output_dtype(bands: Sequence[Band]) -> np.dtype:
    """The one dtype all `bands` are written with (numpy promotion).

    Booleans become uint8 and half floats float32 (GDAL has neither).
    """
    dtype = np.result_type(*[b.dtype for b in bands])
    if dtype == np.bool_:
        return np.dtype("uint8")
    if dtype.kind == "f" and dtype.itemsize < 4:
        return np.dtype("float32")
    if dtype.kind not in "iufc":
        raise ProductWriteError(f"GeoTIFF cannot store {dtype} data")
    return dtype


def aligned_chunks(array: da.Array, block: int = BLOCK_SIZE) -> da.Array:
    """Rechunk `array` so chunk edges fall on `block` boundaries.

    Arrays already aligned (the default 1024 tiles are) are returned as is;
    otherwise the chunk size is rounded to a multiple of `block`.
    """
    new = []
    for chunks in array.chunks:
        if all(c % block == 0 for c in chunks[:-1]):
            new.append(chunks)
        else:
            size = max(block, int(round(max(chunks) / block)) * block)
            new.append(size)
    if all(isinstance(c, tuple) for c in new):
        return array
    return array.rechunk(tuple(new))


def _iso(t: _dt.datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return t.isoformat() + "Z"


class GeoTiffWriter:
    """Write one product into one GeoTIFF/COG file, chunk by chunk.

    Usage: ``targets = w.open()``; store ``w.arrays[k]`` with
    ``targets[k][(rows, cols)] = block`` from any threads; ``w.finish()``
    then ``w.publish()`` (or ``w.commit()`` for both) or, on failure,
    ``w.abort()``.

    Parameters
    ----------
    product : Product
        Single-size product (all bands on one grid).
    path : str or path-like
        Output file (``.tif`` appended when it has no TIFF extension).
    format_name : {"GeoTIFF", "GeoTIFF-BigTIFF", "COG"}
    """

    def __init__(self, product: Product, path: str | os.PathLike, format_name: str = "GeoTIFF"):
        if format_name not in FORMATS:
            raise ProductWriteError(f"unknown GeoTIFF format '{format_name}'; use one of {', '.join(FORMATS)}")
        if not product.bands:
            raise ProductWriteError(f"product '{product.name}' has no bands to write")
        if product.is_multi_size:
            sizes = sorted({f"{b.width}x{b.height}" for b in product.bands.values()})
            raise ProductWriteError(
                f"{format_name} cannot hold bands of different sizes ({', '.join(sizes)}); add a Resample node"
            )
        self.product = product
        self.format_name = format_name
        self.path = geotiff_path(path)
        self.bands = list(product.bands.values())
        self.dtype = output_dtype(self.bands)
        self.nodata = [self._nodata(b) for b in self.bands]
        self.arrays = [aligned_chunks(self._cast(b)) for b in self.bands]
        self.outputs: list[str] = []
        self._staged = StagedFiles()
        self._tmp = self._staged.add(self.path, ".tif")
        self._tmp_cog = None
        self._lock = threading.Lock()
        self._ds = None

    # --- dtype and no-data -----------------------------------------------------
    def _nodata(self, band: Band):
        nd = band.no_data
        missing = nd is None or (isinstance(nd, float) and math.isnan(nd))
        if self.dtype.kind in "fc":
            if missing:
                return math.nan  # the project's float convention: NaN marks no data
            # The value as the file stores it, so that the tag equals the no-data pixels exactly.
            return float(np.array(nd).astype(self.dtype).real)
        if missing:
            return None
        return int(nd)

    def _cast(self, band: Band) -> da.Array:
        # Pixel values are kept as they are, no-data included (SNAP's GeoTiffBandWriter does the same).
        if band.dtype == self.dtype:
            return band.data
        return band.data.astype(self.dtype)

    @property
    def _shared_nodata(self) -> tuple[bool, object]:
        """(True, value) when every band has the same no-data (GeoTIFF has one tag)."""
        first = self.nodata[0]
        same = all(
            (n is None and first is None)
            or (n is not None and first is not None and (n == first or (math.isnan(n) and math.isnan(first))))
            for n in self.nodata
        )
        return same, first

    # --- sink protocol -----------------------------------------------------------
    def open(self) -> list["_WindowTarget"]:
        """Create the temporary tiled GeoTIFF and return one target per band."""
        import rasterio
        from rasterio.errors import RasterioError

        bigtiff, cog = FORMATS[self.format_name]
        height, width = self.product.scene_shape
        same, value = self._shared_nodata
        profile = dict(
            driver="GTiff",
            width=width,
            height=height,
            count=len(self.bands),
            dtype=self.dtype.name,
            crs=self.product.crs,
            transform=self.product.transform,
            nodata=value if same else None,
            tiled=True,
            blockxsize=BLOCK_SIZE,
            blockysize=BLOCK_SIZE,
            interleave="band",
            compress="deflate",
            predictor=3 if self.dtype.kind == "f" else 2 if self.dtype.kind in "iu" else 1,
            bigtiff=bigtiff,
            num_threads="ALL_CPUS",
        )
        if cog:
            profile["zlevel"] = 1  # temporary file: favour speed, COG recompresses
        if self.product.transform is None:
            profile.pop("transform")
        try:
            self._ds = rasterio.open(self._tmp, "w", **profile)
            self._write_metadata(self._ds)
        except (RasterioError, CPLE_BaseError, OSError) as exc:
            self.abort()
            raise ProductWriteError(f"cannot create '{self._tmp}': {_one_line(exc)}") from None
        return [_WindowTarget(self, k + 1) for k in range(len(self.bands))]

    def _write_metadata(self, ds) -> None:
        p = self.product
        tags = {"PRODUCT_NAME": p.name, "PRODUCT_TYPE": p.product_type or ""}
        for key, t in (("PRODUCT_START_TIME", p.start_time), ("PRODUCT_STOP_TIME", p.stop_time)):
            if t is not None:
                tags[key] = _iso(t)
        ds.update_tags(**tags)
        for k, band in enumerate(self.bands, start=1):
            ds.set_band_description(k, band.name)
            # SNAP's GeoTIFF reader ignores band descriptions; it names the bands from GDAL
            # metadata items BAND when there is one per band (Utils.setupBandsFromGdalMetadata)
            ds.update_tags(k, BAND=band.name)
            if band.unit:
                ds.set_band_unit(k, band.unit)
            if band.wavelength:
                ds.update_tags(k, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=repr(band.wavelength / 1000.0))
            if band.valid_expression:
                ds.update_tags(k, **{VALID_EXPRESSION_TAG: band.valid_expression})
            if band.classes:
                ds.update_tags(k, CLASS_NAMES=json.dumps({str(c.value): c.name for c in band.classes}))
                if k == 1 and self.dtype in (np.uint8, np.uint16):
                    ds.write_colormap(1, _colormap(band))
                else:
                    log.info("GeoTIFF: colour table of class band '%s' not stored (only band 1 of an "
                             "8/16-bit file can hold one); class names are kept", band.name)

    def write_window(self, bidx: int, region: tuple[slice, slice], block: np.ndarray) -> None:
        """Write `block` into band `bidx` (1-based) at `region` (thread-safe)."""
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        rows, cols = region
        y0, x0 = rows.start or 0, cols.start or 0
        window = Window(x0, y0, block.shape[1], block.shape[0])
        with self._lock:
            if self._ds is None or self._ds.closed:
                raise ProductWriteError(f"'{self.path}': writer is closed")
            try:
                self._ds.write(np.asarray(block, dtype=self.dtype), bidx, window=window)
            except (RasterioError, CPLE_BaseError, OSError) as exc:
                raise ProductWriteError(f"cannot write '{self._tmp}': {_one_line(exc)}") from None

    def output_files(self) -> list[Path]:
        """Every path this writer may write: the file and its PAM sidecar."""
        return [self.path, Path(f"{self.path}.aux.xml")]

    def finish(self) -> None:
        """Close, convert to COG if asked, stage the PAM sidecar, verify the staged file.

        Raises
        ------
        ProductWriteError
            GDAL failed, or the staged file is unreadable or lacks tiles
            (a write error GDAL only logged: disk full, file size limit).
        """
        import rasterio.shutil
        from rasterio.errors import RasterioError

        try:
            self._close()
        except (RasterioError, CPLE_BaseError, OSError) as exc:
            raise ProductWriteError(f"cannot write '{self.path}': {_one_line(exc)}") from None
        src = self._tmp
        try:
            if FORMATS[self.format_name][1]:
                self._tmp_cog = self._staged.add(self.path, ".tif")
                with rasterio.Env():
                    rasterio.shutil.copy(
                        str(self._tmp), str(self._tmp_cog), driver="COG",
                        COMPRESS="DEFLATE", PREDICTOR="YES", BLOCKSIZE=str(BLOCK_SIZE),
                        BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS", OVERVIEWS="AUTO",
                        RESAMPLING=self._overview_resampling(),
                    )
                src = self._tmp_cog
        except (RasterioError, CPLE_BaseError, OSError) as exc:
            raise ProductWriteError(f"cannot write COG '{self.path}': {_one_line(exc)}") from None
        finally:
            if self._tmp_cog is not None:
                self._staged.drop(self._tmp)  # the COG copy is the output
        _unlink(Path(f"{src}.aux.xml"))  # GDAL PAM of the staged name, if any
        verify_geotiff(src, self.path, len(self.bands), self.product.scene_shape)
        aux = pam_xml(self.bands, self.dtype, self.nodata, per_band_nodata=not self._shared_nodata[0])
        if aux is not None:
            from ..core.outputs import stage_text

            stage_text(self._staged, f"{self.path}.aux.xml", aux.decode("utf-8"))

    def publish(self) -> None:
        """Rename the staged file (and sidecar) into place; a stale sidecar of an old file goes."""
        final_aux = Path(f"{self.path}.aux.xml")
        has_aux = any(dst == final_aux for _, dst in self._staged.moves)
        self._staged.publish()
        if not has_aux:
            _unlink(final_aux)  # a stale sidecar would describe the old file
        self.outputs = [str(self.path)]

    def commit(self) -> None:
        """:meth:`finish` and :meth:`publish` (a writer used on its own)."""
        self.finish()
        self.publish()

    def abort(self) -> None:
        """Remove every staged file; never raises."""
        try:
            self._close()
        except Exception:  # pragma: no cover - abort must not mask the cause
            log.exception("closing '%s' failed", self._tmp)
        self._staged.abort()
        for p in (self._tmp, self._tmp_cog):
            if p is not None:
                _unlink(p)
                _unlink(Path(f"{p}.aux.xml"))

    def _close(self) -> None:
        with self._lock:
            ds, self._ds = self._ds, None
            if ds is not None and not ds.closed:
                ds.close()

    def _overview_resampling(self) -> str:
        if self.dtype.kind in "iu" or any(b.classes for b in self.bands):
            return "NEAREST"
        return "AVERAGE"


class _WindowTarget:
    """``target[rows, cols] = block`` into one band of a :class:`GeoTiffWriter`."""

    def __init__(self, writer: GeoTiffWriter, bidx: int):
        self._writer = writer
        self._bidx = bidx

    def __setitem__(self, region: tuple[slice, slice], block: np.ndarray) -> None:
        self._writer.write_window(self._bidx, region, block)


def _colormap(band: Band) -> dict[int, tuple[int, int, int, int]]:
    cmap = {int(c.value): (*(int(v) for v in c.color[:3]), 255) for c in band.classes or ()}
    if band.no_data is not None and int(band.no_data) not in cmap:
        cmap[int(band.no_data)] = (0, 0, 0, 0)
    return cmap


def pam_xml(
    bands: Sequence[Band], dtype: np.dtype, nodata: Sequence, per_band_nodata: bool = False
) -> bytes | None:
    """A GDAL PAM (``.aux.xml``) document for what a GeoTIFF cannot hold.

    Class bands get ``<CategoryNames>`` (one ``<Category>`` per value from 0,
    empty for unused values); with `per_band_nodata` every band gets its own
    ``<NoDataValue>``. Returns None when there is nothing to say.
    """
    root = ET.Element("PAMDataset")
    for k, band in enumerate(bands, start=1):
        items = []
        if per_band_nodata and nodata[k - 1] is not None:
            items.append(("NoDataValue", repr(nodata[k - 1])))
        names = {int(c.value): c.name for c in band.classes or () if int(c.value) >= 0}
        if names or items:
            el = ET.SubElement(root, "PAMRasterBand", band=str(k))
            for tag, text in items:
                ET.SubElement(el, tag).text = text
            if names:
                cats = ET.SubElement(el, "CategoryNames")
                for v in range(max(names) + 1):
                    ET.SubElement(cats, "Category").text = names.get(v, "")
    if not len(root):
        return None
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def verify_geotiff(path: Path, final: Path, count: int, shape: tuple[int, int]) -> None:
    """Reopen the staged GeoTIFF `path` and check every tile of every band lies inside the file.

    GDAL writes tiles from its own threads and reports a failed write (full
    disk, file size limit) as a logged error only; the file then ends short
    of tiles its directory points to, or has no readable directory at all.

    Raises
    ------
    ProductWriteError
        Naming `final`, the output the staged file was to become.
    """
    import rasterio
    from rasterio.errors import RasterioError

    hint = "the disk may be full, or a file size limit reached"
    try:
        size = path.stat().st_size
        with rasterio.Env(), rasterio.open(path) as ds:
            if ds.count != count or (ds.height, ds.width) != tuple(shape):
                raise ProductWriteError(f"cannot write '{final}': the file written is incomplete ({hint})")
            bh, bw = ds.block_shapes[0]
            for b in range(1, count + 1):
                for by in range(math.ceil(ds.height / bh)):
                    for bx in range(math.ceil(ds.width / bw)):
                        off = ds.get_tag_item(f"BLOCK_OFFSET_{bx}_{by}", "TIFF", bidx=b)
                        n = ds.get_tag_item(f"BLOCK_SIZE_{bx}_{by}", "TIFF", bidx=b)
                        if not off or not n or int(off) + int(n) > size:
                            raise ProductWriteError(
                                f"cannot write '{final}': tile {bx},{by} of band {b} is missing from the file "
                                f"written ({hint})"
                            )
    except (RasterioError, CPLE_BaseError, OSError, ValueError) as exc:
        raise ProductWriteError(f"cannot write '{final}': the file written is unreadable ({hint}): "
                                f"{_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    """The error's message on one line, with the GDAL cause rasterio chains."""
    text = " ".join(str(getattr(exc, "strerror", None) or exc).split()) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        text = text.replace(" See previous exception for details.", "")
        text += f" ({' '.join(str(cause).split())})"
    return text


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # pragma: no cover - best effort cleanup
        log.warning("could not remove '%s'", path)
