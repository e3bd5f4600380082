"""Products as ``xarray.Dataset`` and back, lazily.

:func:`to_xarray` turns a :class:`~snap_operators.core.product.Product` into a
Dataset with one variable per band, on dims ``("y", "x")``, holding the very
Dask arrays of the bands (nothing is computed or copied), with rioxarray's
CRS and transform, nodata as ``_FillValue``, and units, descriptions and
class legends as attributes. :func:`from_xarray` reads such a Dataset (or any
rioxarray-style raster Dataset or DataArray) back into a Product, so the
engine's operators run on it (:mod:`snap_operators.api.operators`).

One Dataset holds one grid. A multi-size product (Sentinel-2 SAFE: 10, 20
and 60 m bands) is refused with a message saying how to put it on one grid
(``resample(product, referenceBand="B2")``) or to pick the bands of one
grid (``bands=[...]``): rioxarray keeps one pair of spatial dims and one
transform per Dataset, and bands on separate grids would be separate
Datasets anyway.

Attributes written (all serializable: netCDF, Zarr and GeoTIFF tags keep them):

=========================  ===================================================
``_FillValue``             the band's no-data value (NaN for float bands), as
                           ``ds[band].rio.nodata`` reads it
``units``                  the band's unit (``"dB"``, ``"1"``...)
``description``            the band's description
``wavelength``             central wavelength, nm (spectral bands)
``valid_pixel_expression`` SNAP's valid-pixel expression (kept, never applied)
``flag_values``,           class bands (CF): the class ids, and their names
``flag_meanings``          with spaces as ``_``
``classes``                class bands: JSON text ``{"1": {"name": "Water",
                           "color": "#0070ff", "description": "..."}, ...}``
=========================  ===================================================

and on the Dataset ``product_name``, ``product_type``, ``start_time`` and
``stop_time`` (ISO 8601, UTC), ``description``, ``file_location`` and
``snap_metadata`` (the product's metadata tree as JSON text).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any, Iterable

import dask.array as da
import numpy as np
from affine import Affine

from ..core.errors import OperatorError
from ..core.product import DEFAULT_TILE_SIZE, Band, ClassInfo, MetadataElement, Product, chunks_for

#: Relative tolerance (of the pixel size) within which coordinates and a stored GeoTransform agree.
_GRID_TOLERANCE = 1e-6
_INSTALL = "pip install 'snap-progressive-classifier[xarray]'"


def _xarray():
    """xarray, with rioxarray's ``.rio`` accessor registered; a clear error without the extra."""
    try:
        import rioxarray  # noqa: F401  (registers the .rio accessor)
        import xarray
    except ImportError as exc:
        raise ImportError(f"snap_operators.api needs xarray and rioxarray for Datasets: {_INSTALL} ({exc})") from None
    return xarray


# --- Product -> Dataset -------------------------------------------------------------------------------


def to_xarray(product: Product, *, bands: Iterable[str] | None = None):
    """A product as an ``xarray.Dataset`` of lazy Dask arrays.

    Parameters
    ----------
    product : Product
        A product on one grid (every band of the same shape and transform).
    bands : list of str, optional
        Bands to keep, in this order (default: all); they must share one grid.

    Returns
    -------
    xarray.Dataset
        One variable per band, named as the band, dims ``("y", "x")`` of
        shape ``(rows, cols)``, data the band's Dask array itself (physical
        values; no pixel is read). Coordinates ``x``/``y`` are the pixel
        centres in CRS units (from the bands' pixel-corner transform);
        ``spatial_ref`` holds rioxarray's CRS and GeoTransform. Attributes:
        see the module documentation.

    Raises
    ------
    OperatorError
        The bands are on several grids (multi-size product: resample it
        first), a rotated or sheared grid, or an unknown band name.

    Examples
    --------
    >>> from snap_operators.api import open_product, to_xarray
    >>> ds = to_xarray(open_product("s2.tif"))            # doctest: +SKIP
    >>> ds.rio.crs, ds.B4.dims, ds.B4.chunks              # doctest: +SKIP
    (CRS.from_epsg(32638), ('y', 'x'), ((1024, ...), (1024, ...)))
    """
    xr = _xarray()
    names = list(product.bands) if bands is None else [str(b) for b in bands]
    chosen = [product.band(n) for n in names]
    if not chosen:
        raise OperatorError(f"product '{product.name}' has no bands to convert")
    _check_one_grid(product, chosen)
    ref = chosen[0]
    height, width = ref.shape
    t = ref.transform
    coords = {}
    if t is not None:
        if t.b != 0 or t.d != 0:
            raise OperatorError(f"product '{product.name}' is on a rotated or sheared grid ({tuple(t)[:6]}): "
                                "a Dataset's x/y coordinates cannot hold it")
        # Pixel centres: what rioxarray (and GDAL's netCDF driver) take x/y coordinates to be.
        coords["x"] = ("x", t.c + t.a * (np.arange(width, dtype=np.float64) + 0.5))
        coords["y"] = ("y", t.f + t.e * (np.arange(height, dtype=np.float64) + 0.5))
    variables = {b.name: (("y", "x"), b.data, _band_attrs(b)) for b in chosen}
    ds = xr.Dataset(variables, coords=coords, attrs=_product_attrs(product))
    ds = ds.rio.set_spatial_dims(x_dim="x", y_dim="y")
    if product.crs is not None:
        ds = ds.rio.write_crs(product.crs)
    if t is not None:
        # The transform itself, not one recomputed from the coordinates: exact for any pixel size.
        ds = ds.rio.write_transform(t)
    for b in chosen:
        if b.no_data is not None:
            ds[b.name] = ds[b.name].rio.write_nodata(b.no_data, encoded=False)
    return ds


def _check_one_grid(product: Product, bands: list[Band]) -> None:
    grids: dict[tuple, list[str]] = {}
    for b in bands:
        key = (b.shape, None if b.transform is None else tuple(round(v, 9) for v in tuple(b.transform)[:6]))
        grids.setdefault(key, []).append(b.name)
    if len(grids) <= 1:
        return
    parts = []
    for (shape, t), names in grids.items():
        size = f" (pixel {abs(t[0]):g})" if t is not None else ""
        parts.append(f"{shape[1]}x{shape[0]}{size}: {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}")
    finest = product.reference_band().name
    raise OperatorError(
        f"product '{product.name}' has bands on {len(grids)} grids ({'; '.join(parts)}); a Dataset holds one grid: "
        f"resample it first, to_xarray(resample(product, referenceBand='{finest}')), or pick the bands of one "
        "grid with to_xarray(product, bands=[...])")


def _band_attrs(band: Band) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if band.unit:
        attrs["units"] = band.unit
    if band.description:
        attrs["description"] = band.description
    if band.wavelength is not None:
        attrs["wavelength"] = float(band.wavelength)
    if band.valid_expression:
        attrs["valid_pixel_expression"] = band.valid_expression
    if band.classes:
        attrs.update(class_attrs(band.classes, band.dtype))
    return attrs


def class_attrs(classes: Iterable[ClassInfo], dtype: Any = np.uint8) -> dict[str, Any]:
    """A class legend as attributes: CF's ``flag_values``/``flag_meanings`` and ``classes`` (JSON).

    Parameters
    ----------
    classes : list of ClassInfo
        The categories, in the band's order.
    dtype : numpy.dtype
        The class band's type; ``flag_values`` has it, as CF asks.

    Returns
    -------
    dict
        ``flag_values`` (array of ids), ``flag_meanings`` (names, spaces as
        ``_``, separated by spaces), ``classes`` (JSON text: id -> name,
        ``#rrggbb`` color, description).

    Examples
    --------
    >>> attrs = class_attrs([ClassInfo(1, "Bare Soil", (210, 180, 140))])
    >>> attrs["flag_values"].tolist(), attrs["flag_meanings"], attrs["classes"]
    ([1], 'Bare_Soil', '{"1": {"name": "Bare Soil", "color": "#d2b48c", "description": ""}}')
    """
    classes = list(classes)
    legend = {str(int(c.value)): {"name": c.name, "color": "#{:02x}{:02x}{:02x}".format(*c.color),
                                  "description": c.description} for c in classes}
    return {
        "flag_values": np.array([int(c.value) for c in classes], dtype=np.dtype(dtype)),
        "flag_meanings": " ".join("_".join(c.name.split()) or f"class_{c.value}" for c in classes),
        "classes": json.dumps(legend, ensure_ascii=False),
    }


def _product_attrs(product: Product) -> dict[str, Any]:
    attrs: dict[str, Any] = {"product_name": product.name}
    if product.product_type:
        attrs["product_type"] = product.product_type
    for key in ("start_time", "stop_time"):
        value = getattr(product, key)
        if value is not None:
            attrs[key] = value.isoformat()
    if product.description:
        attrs["description"] = product.description
    if product.file_location:
        attrs["file_location"] = str(product.file_location)
    meta = product.metadata
    if meta.attributes or meta.elements:
        attrs["snap_metadata"] = json.dumps(_element_json(meta), ensure_ascii=False)
    return attrs


def _element_json(e: MetadataElement) -> dict:
    return {"name": e.name, "attributes": {k: _value_json(v) for k, v in e.attributes.items()},
            "elements": [_element_json(c) for c in e.elements]}


def _value_json(v: Any) -> Any:
    if isinstance(v, _dt.datetime):
        return {"datetime": v.isoformat()}  # tagged: a date must come back as a date, not as text
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


# --- Dataset -> Product -------------------------------------------------------------------------------


def from_xarray(data, *, name: str | None = None, tile_size: int = DEFAULT_TILE_SIZE) -> Product:
    """A Product from an ``xarray.Dataset`` (or DataArray) on one grid, lazily.

    Parameters
    ----------
    data : xarray.Dataset or xarray.DataArray
        Variables of dims ``(y, x)`` (any spatial dim names rioxarray
        recognizes, e.g. ``lat``/``lon``), each becoming a band named as the
        variable. A DataArray of 2 dims is one band (named as the array); of 3
        dims (rioxarray's ``band, y, x``) one band per index of the other
        dim, named by its ``long_name`` attribute when that lists one name
        per band, else ``band_<coordinate>``.
    name : str, optional
        Product name (default: the ``product_name`` attribute, else the
        array's name, else ``"dataset"``).
    tile_size : int
        Chunk edge (pixels) for variables held in memory (numpy); Dask
        arrays keep their chunks.

    Returns
    -------
    Product
        Bands of physical values on the Dataset's grid: the transform from
        the ``x``/``y`` pixel-centre coordinates (the stored GeoTransform when
        it agrees with them: exact; the coordinates when the Dataset was
        sliced since), the CRS from ``ds.rio.crs``, no-data from
        ``_FillValue`` (``rio.nodata``), classes from ``classes`` (or CF's
        ``flag_values``/``flag_meanings``). Values stored with
        ``scale_factor``/``add_offset`` attributes (rioxarray without
        ``mask_and_scale``) are scaled lazily to float32, no-data NaN.

    Raises
    ------
    OperatorError
        A variable with other dims than the two spatial ones, uneven
        coordinates, or no spatial dims.

    Examples
    --------
    >>> from snap_operators.api import from_xarray, to_xarray
    >>> product = from_xarray(to_xarray(product))          # doctest: +SKIP
    """
    xr = _xarray()
    ds = _as_dataset(data, xr)
    try:
        xdim, ydim = ds.rio.x_dim, ds.rio.y_dim
    except Exception as exc:  # rioxarray's MissingSpatialDimensionError
        raise OperatorError(f"no spatial dims (x/y, lon/lat) in the Dataset: {exc}".splitlines()[0]) from None
    transform = _grid_transform(ds, xdim, ydim)
    crs = ds.rio.crs
    product = Product(
        name=name or str(ds.attrs.get("product_name") or (data.name if isinstance(data, xr.DataArray) else None)
                         or "dataset"),
        product_type=str(ds.attrs.get("product_type", "")),
        crs=_rasterio_crs(crs),
        start_time=_time(ds.attrs.get("start_time")),
        stop_time=_time(ds.attrs.get("stop_time")),
        metadata=_metadata(ds.attrs.get("snap_metadata")),
        file_location=ds.attrs.get("file_location") or None,
        description=str(ds.attrs.get("description", "")),
    )
    for var_name, var in ds.data_vars.items():
        if set(var.dims) != {ydim, xdim} or var.ndim != 2:
            raise OperatorError(f"variable '{var_name}' has dims {var.dims}; a band has exactly ({ydim}, {xdim}): "
                                "select the others first, e.g. ds.isel(time=0)")
        product.add_band(_band(str(var_name), var.transpose(ydim, xdim), transform, tile_size))
    if not product.bands:
        raise OperatorError("the Dataset has no data variables")
    return product


def _as_dataset(data, xr):
    if isinstance(data, xr.Dataset):
        return data
    if not isinstance(data, xr.DataArray):
        raise TypeError(f"from_xarray takes an xarray.Dataset or DataArray, not {type(data).__name__}")
    if data.ndim == 2:
        return data.to_dataset(name=str(data.name) if data.name is not None else "band_1")
    if data.ndim != 3:
        raise OperatorError(f"a DataArray of dims {data.dims}: expected (y, x) or (band, y, x)")
    spatial = {data.rio.x_dim, data.rio.y_dim}
    other = next(d for d in data.dims if d not in spatial)
    labels = data.attrs.get("long_name")
    n = data.sizes[other]
    if isinstance(labels, (list, tuple)) and len(labels) == n and len(set(labels)) == n:
        names = [str(v) for v in labels]
    elif other in data.coords:
        names = [f"{other}_{v}" for v in data.coords[other].values]
    else:
        names = [f"{other}_{i + 1}" for i in range(n)]
    def attrs(i: int) -> dict:
        # rioxarray gives per-band values (units, long_name...) as tuples of one value per band
        return {k: (v[i] if isinstance(v, tuple) and len(v) == n else v) for k, v in data.attrs.items()
                if k != "long_name"}

    return xr.Dataset({nm: data.isel({other: i}, drop=True).assign_attrs(attrs(i)) for i, nm in enumerate(names)})


def _grid_transform(ds, xdim: str, ydim: str) -> Affine | None:
    """The pixel-corner transform of the Dataset's grid; None without coordinates or GeoTransform."""
    stored = _stored_transform(ds)
    if xdim not in ds.coords or ydim not in ds.coords:
        return stored
    if stored is not None and (stored.b != 0 or stored.d != 0):
        return stored  # a rotated grid: 1-D coordinates cannot describe it
    x = np.asarray(ds.coords[xdim].values, dtype=np.float64)
    y = np.asarray(ds.coords[ydim].values, dtype=np.float64)
    dx = _spacing(x, xdim, None if stored is None else stored.a)
    dy = _spacing(y, ydim, None if stored is None else stored.e)
    if stored is not None and _agrees(stored.a, dx, stored.c, x[0], dx) and _agrees(stored.e, dy, stored.f, y[0], dy):
        return stored  # exact, also for pixel sizes that do not survive a round trip through the centres
    return Affine(dx, 0.0, x[0] - dx / 2, 0.0, dy, y[0] - dy / 2)


def _agrees(size: float, spacing: float, corner: float, first_centre: float, pixel: float) -> bool:
    tol = _GRID_TOLERANCE * abs(pixel)
    return abs(size - spacing) <= tol and abs(corner + size / 2 - first_centre) <= tol


def _spacing(values: np.ndarray, dim: str, stored: float | None) -> float:
    if values.size >= 2:
        step = (values[-1] - values[0]) / (values.size - 1)
        if step == 0 or not np.allclose(np.diff(values), step, rtol=0, atol=abs(step) * _GRID_TOLERANCE * 1e3):
            raise OperatorError(f"coordinate '{dim}' is not evenly spaced: not a raster grid")
        return float(step)
    if stored is None:
        raise OperatorError(f"the Dataset is one pixel along '{dim}' and has no GeoTransform: its pixel size is unknown")
    return float(stored)


def _stored_transform(ds) -> Affine | None:
    """rioxarray's GeoTransform (of the grid mapping coordinate), or an old-style ``transform`` attribute."""
    try:
        grid_mapping = ds.rio.grid_mapping
    except Exception:  # noqa: BLE001 - no grid mapping at all
        grid_mapping = None
    text = ds.coords[grid_mapping].attrs.get("GeoTransform") if grid_mapping in ds.coords else None
    if text:
        return Affine.from_gdal(*(float(v) for v in str(text).split()))
    if "transform" in ds.attrs:
        return Affine(*list(ds.attrs["transform"])[:6])
    return None


def _rasterio_crs(crs):
    if crs is None:
        return None
    from rasterio.crs import CRS

    return crs if isinstance(crs, CRS) else CRS.from_user_input(crs)


def _band(name: str, var, transform: Affine | None, tile_size: int) -> Band:
    data = var.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=chunks_for(tuple(var.shape), tile_size))
    attrs = var.attrs
    no_data = _no_data(var)
    scale, offset = float(attrs.get("scale_factor", 1.0)), float(attrs.get("add_offset", 0.0))
    if scale != 1.0 or offset != 0.0:
        # Stored values (rioxarray without mask_and_scale): bands hold physical values.
        data = data.map_blocks(_scaled, scale, offset, no_data, dtype=np.float32)
        no_data = float("nan")
    wavelength = attrs.get("wavelength")
    return Band(
        name=name,
        data=data,
        transform=transform,
        no_data=no_data,
        unit=attrs.get("units") or None,
        description=attrs.get("description") or None,
        wavelength=float(wavelength) if wavelength is not None else None,
        classes=_classes(attrs),
        valid_expression=attrs.get("valid_pixel_expression") or None,
    )


def _scaled(block: np.ndarray, scale: float, offset: float, no_data) -> np.ndarray:
    out = block.astype(np.float32) * np.float32(scale) + np.float32(offset)
    if no_data is not None and not (isinstance(no_data, float) and math.isnan(no_data)):
        out[block == no_data] = np.nan
    return out


def _no_data(var) -> float | int | None:
    """rioxarray's nodata of `var`: ``_FillValue`` (or ``missing_value``...) as an attribute, NaN when encoded."""
    try:
        value = var.rio.nodata
    except Exception:  # noqa: BLE001 - no spatial dims for the accessor: read the attributes
        value = var.attrs.get("_FillValue", var.attrs.get("missing_value"))
    if value is None:
        return None
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and math.isnan(value):
        return float("nan")
    if np.dtype(var.dtype).kind in "iub" and float(value).is_integer():
        return int(value)
    return value


def _classes(attrs: dict) -> list[ClassInfo] | None:
    legend = attrs.get("classes")
    if isinstance(legend, str) and legend.strip():
        legend = json.loads(legend)
    if isinstance(legend, dict) and legend:
        return [ClassInfo(int(k), str(v.get("name", f"class {k}")), _rgb(v.get("color")), str(v.get("description", "")))
                for k, v in sorted(legend.items(), key=lambda kv: int(kv[0]))]
    values = attrs.get("flag_values")
    meanings = attrs.get("flag_meanings")
    if values is None or not isinstance(meanings, str):
        return None
    values = np.atleast_1d(np.asarray(values)).tolist()
    words = meanings.split()
    if len(words) != len(values):
        return None
    return [ClassInfo(int(v), w.replace("_", " "), (128, 128, 128)) for v, w in zip(values, words)]


def _rgb(color: Any) -> tuple[int, int, int]:
    if isinstance(color, str) and len(color.lstrip("#")) == 6:
        h = color.lstrip("#")
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    if isinstance(color, (list, tuple)) and len(color) >= 3:
        return (int(color[0]), int(color[1]), int(color[2]))
    return (128, 128, 128)


def _time(value: Any) -> _dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, _dt.datetime):
        return value
    try:
        return _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _metadata(text: Any) -> MetadataElement:
    if not text:
        return MetadataElement("metadata")
    return _element(json.loads(text) if isinstance(text, str) else text)


def _element(d: dict) -> MetadataElement:
    attributes = {}
    for k, v in (d.get("attributes") or {}).items():
        if isinstance(v, dict) and set(v) == {"datetime"}:
            v = _time(v["datetime"])
        attributes[k] = v
    return MetadataElement(str(d.get("name", "metadata")), attributes, [_element(c) for c in d.get("elements") or ()])
