"""Quicklook PNGs of rasters: class maps with their legend, other bands with a colour bar; class areas.

The raster is read decimated (GDAL overview-style, nearest neighbour, at most
:data:`MAX_EDGE` pixels a side), so a full Sentinel-2 tile costs a few
megabytes whatever its data type.

Band 1 is drawn one of two ways (:func:`is_class_map`):

* a class map (an integer band with a ``CLASS_NAMES`` tag or a colour map,
  or with at most :data:`MAX_CLASSES` distinct values): every class in its
  colour, listed in a legend;
* a continuous band (float, e.g. NDVI; or integers with many distinct
  values, e.g. digital numbers): a colour ramp stretched between the 2nd
  and 98th percentiles, with a colour bar; RdYlGn for index-like bands
  (:func:`ramp_name`), viridis otherwise.

No-data (the declared value, NaN, GDAL masks) is left transparent. The axes
are in the map CRS (eastings/northings, or degrees for a geographic CRS; the
CRS is named in the x label) and a scale bar of a round length sits in the
lower left.

Example
-------
>>> nice_length(2345.0)
2000.0
>>> format_length(5000.0)
'5 km'
>>> write_quicklook("ndvi.tif", "ndvi.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..core.errors import ProductWriteError, SnapPcError
from ..core.legend import CLASS_NAMES, LAND_COVER, NO_DATA, UNCLASSIFIED, hex_color
from ..core.outputs import check_claims, output_problem, save_figure
from ..grid.crs import geod

#: Longest edge of the rendered map, pixels.
MAX_EDGE = 1200
#: Most distinct values an integer band without class metadata may hold to be drawn as a class map.
MAX_CLASSES = 32
#: Most legend entries: an integer band with more distinct values is drawn as continuous, metadata or not.
MAX_LEGEND = 256
#: Percentiles the colour ramp of a continuous band spans.
STRETCH = (2.0, 98.0)
#: Longest side of the map on the figure, inches.
MAP_INCHES = 7.0


@dataclass
class Raster:
    """Band 1 of a raster file, decimated for display, with what drawing it takes.

    Attributes
    ----------
    data : numpy.ma.MaskedArray
        The decimated band; no-data (declared value, NaN, GDAL mask) masked.
    names, colors : dict
        Class id -> name and -> (r, g, b): the project's legend, updated by
        the band's ``CLASS_NAMES`` tag and colour map.
    has_classes : bool
        The band carries class metadata (a ``CLASS_NAMES`` tag or a colour map).
    crs : rasterio.crs.CRS or None
    bounds : tuple of float or None
        (left, bottom, right, top) in the CRS; None when the grid is not
        georeferenced or not north-up (the map is then drawn in pixels).
    size : tuple of int
        (width, height) of the full-resolution band, pixels.
    label : str
        The band's description, else the file's stem: names the colour bar.
    units : str
        The band's unit, '' when it has none.
    """

    data: np.ma.MaskedArray
    names: dict[int, str]
    colors: dict[int, tuple]
    has_classes: bool
    crs: object
    bounds: tuple[float, float, float, float] | None
    size: tuple[int, int]
    label: str
    units: str


def read_raster(path: str | Path, max_edge: int = MAX_EDGE) -> Raster:
    """Band 1 of `path` at most `max_edge` px wide/high (nearest neighbour), with its metadata.

    Raises
    ------
    SnapPcError
        `path` cannot be opened as a raster.
    """
    import rasterio
    from rasterio.enums import Resampling

    from ..io.raster_bands import open_quietly

    try:
        ds = open_quietly(str(path))  # a grid without coordinates is drawn in pixels: nothing to warn of
    except rasterio.errors.RasterioIOError as exc:
        raise SnapPcError(f"cannot open {path}: {exc}") from None
    with ds:
        scale = max(1.0, max(ds.width, ds.height) / max_edge)
        shape = (max(1, int(ds.height / scale)), max(1, int(ds.width / scale)))
        data = ds.read(1, out_shape=shape, resampling=Resampling.nearest, masked=True)
        if data.dtype.kind == "f":  # NaN is no-data also where no value is declared
            data.mask = np.ma.getmaskarray(data) | ~np.isfinite(data.data)
        names = dict(CLASS_NAMES)
        has_classes = False
        tag = ds.tags(1).get("CLASS_NAMES")
        if tag:
            try:
                names = {int(k): str(v) for k, v in json.loads(tag).items()}
                has_classes = True
            except (ValueError, AttributeError):
                pass
        colors = {c.value: c.color for c in LAND_COVER}
        try:
            colormap = ds.colormap(1)
            has_classes = True
        except ValueError:  # no colour table
            colormap = {}
        colors.update({k: tuple(v[:3]) for k, v in colormap.items() if k in names})
        t = ds.transform
        north_up = t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0
        georeferenced = ds.crs is not None or not t.is_identity
        bounds = tuple(ds.bounds) if north_up and georeferenced else None
        label = ds.descriptions[0] or Path(path).stem
        units = ds.units[0] or ""
    return Raster(data, names, colors, has_classes, ds.crs, bounds, (ds.width, ds.height), label, units)


def read_decimated(path: str | Path, max_edge: int = MAX_EDGE) -> tuple[np.ndarray, dict[int, str], dict[int, tuple]]:
    """Class band 1 of `path` at most `max_edge` px wide/high, with names and colors (:func:`read_raster`)."""
    r = read_raster(path, max_edge)
    return r.data.data, r.names, r.colors


def valid_values(raster: Raster) -> np.ndarray:
    """The band's values that are not no-data, flat."""
    return raster.data.compressed()


def is_class_map(raster: Raster, distinct: np.ndarray | None = None) -> bool:
    """Whether the band is drawn as classes with a legend rather than a colour ramp.

    Float bands never are (a legend of float values is no legend); integer
    bands are when they carry class metadata or hold few distinct values,
    and hold no more than :data:`MAX_LEGEND` of them.

    Parameters
    ----------
    distinct : ndarray, optional
        The band's distinct valid values, when already known.
    """
    if raster.data.dtype.kind not in "iu":
        return False
    if distinct is None:
        distinct = np.unique(valid_values(raster))
    if distinct.size > MAX_LEGEND:
        return False
    return raster.has_classes or distinct.size <= MAX_CLASSES


def stretch(values: np.ndarray) -> tuple[float, float]:
    """The :data:`STRETCH` percentiles of `values` (non-empty), set apart when they meet (a constant band)."""
    lo, hi = (float(v) for v in np.percentile(values, STRETCH))
    if hi <= lo:
        half = max(abs(lo) * 0.01, 0.5)
        lo, hi = lo - half, hi + half
    return lo, hi


def _names_an_index(label: str) -> bool:
    """Whether `label` (a band or file name) names a normalized-difference-like index (NDVI, MNDWI...)."""
    from ..science.indices import INDICES

    unit_range = {name.upper() for name, d in INDICES.items() if tuple(d.valid_range) == (-1.0, 1.0)}
    return any(token in unit_range for token in re.split(r"[^A-Z0-9]+", label.upper()))


def ramp_name(values: np.ndarray, label: str = "") -> str:
    """The matplotlib colour map of a continuous band: RdYlGn for index-like bands, else viridis.

    Index-like: every value in [-1, 1], and some negative or the band named
    after an index of that range (an NDVI crop of a forest has no negative
    value; a reflectance band has none either, and is no index).
    """
    if values.size and values.min() >= -1 and values.max() <= 1 and (values.min() < 0 or _names_an_index(label)):
        return "RdYlGn"
    return "viridis"


def crs_name(crs) -> str:
    """``"EPSG:32633"`` (the CRS's authority code), else its name."""
    try:
        auth = crs.to_authority()
    except Exception:  # rasterio/PROJ raise several types for CRSs without a code
        auth = None
    if auth:
        return f"{auth[0]}:{auth[1]}"
    try:
        import pyproj

        return pyproj.CRS.from_wkt(crs.to_wkt()).name
    except Exception:
        return "custom CRS"


def metres_per_degree(lat: float, ellipsoid=None) -> tuple[float, float]:
    """Metres per degree of longitude and of latitude at latitude `lat` (degrees).

    `ellipsoid` is a :class:`pyproj.Geod` (:func:`snap_operators.grid.crs.geod`
    of a geographic CRS); default WGS 84.

    Example
    -------
    >>> [round(m) for m in metres_per_degree(0.0)]
    [111319, 110574]
    """
    if ellipsoid is None:
        import pyproj

        ellipsoid = pyproj.Geod(ellps="WGS84")
    a, es = ellipsoid.a, ellipsoid.es
    phi = math.radians(lat)
    w = 1.0 - es * math.sin(phi) ** 2
    per_lon = math.pi / 180 * a * math.cos(phi) / math.sqrt(w)
    per_lat = math.pi / 180 * a * (1.0 - es) / w ** 1.5
    return per_lon, per_lat


def ground_scale(crs, bounds: tuple[float, float, float, float]) -> tuple[float, float] | None:
    """Metres per map unit along x and y at the map centre; None when the CRS gives no length.

    A geographic CRS takes the length of a degree at the centre latitude, so
    a scale bar is true there (and along that parallel).
    """
    if crs is None:
        return None
    if crs.is_geographic:
        return metres_per_degree((bounds[1] + bounds[3]) / 2, geod(crs))  # the CRS's own ellipsoid
    try:
        factor = float(crs.linear_units_factor[1])
    except Exception:  # no linear unit known to PROJ
        return None
    return factor, factor


def nice_length(limit_m: float) -> float:
    """The longest 1, 2 or 5 x 10^n metres not above `limit_m` (> 0)."""
    exp = math.floor(math.log10(limit_m))
    step = 10.0 ** exp
    return next(m * step for m in (5, 2, 1) if m * step <= limit_m * (1 + 1e-9))


def format_length(metres: float) -> str:
    """``"500 m"``, ``"2 km"``: the label of a scale bar."""
    return f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"


def add_scale_bar(ax, bounds: tuple[float, float, float, float], per_unit: tuple[float, float]):
    """Draw a scale bar of a round length, about a fifth of the map wide, in the lower left of `ax`.

    Parameters
    ----------
    bounds : tuple of float
        (left, bottom, right, top) of the map, map units.
    per_unit : tuple of float
        Metres per map unit along x and y (:func:`ground_scale`).

    Returns
    -------
    mpl_toolkits.axes_grid1.anchored_artists.AnchoredSizeBar
        The bar; its ``txt_label`` holds the length.
    """
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    left, bottom, right, top = bounds
    metres = nice_length((right - left) * per_unit[0] / 5)
    bar = AnchoredSizeBar(ax.transData, metres / per_unit[0], format_length(metres), "lower left", pad=0.3,
                          borderpad=0.6, sep=3, color="black", frameon=True, size_vertical=(top - bottom) / 200)
    bar.patch.set(facecolor="white", alpha=0.8, edgecolor="none")  # readable on dark and light maps alike
    ax.add_artist(bar)
    return bar


def _label_axes(ax, raster: Raster, per_unit: tuple[float, float] | None, inches: tuple[float, float]) -> None:
    """Ticks and axis labels in the map CRS, or in pixels when the grid has no coordinates.

    `inches` is the map's (width, height) on the figure: long eastings and
    northings get no more ticks than fit there without running into each other.
    """
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(min(6, max(1, int(inches[0] / 1.2)))))
    ax.yaxis.set_major_locator(MaxNLocator(min(6, max(1, int(inches[1] / 0.5)))))
    if raster.bounds is None:
        ax.set_xlabel("column (px)")
        ax.set_ylabel("row (px)")
        return
    if raster.crs is None:
        ax.set_xlabel("x (no CRS)")
        ax.set_ylabel("y")
        return
    name = crs_name(raster.crs)
    if raster.crs.is_geographic:
        degrees = FuncFormatter(lambda v, _: f"{v:g}°")
        ax.xaxis.set_major_formatter(degrees)
        ax.yaxis.set_major_formatter(degrees)
        ax.set_xlabel(f"longitude (°), {name}")
        ax.set_ylabel("latitude (°)")
        return
    ax.ticklabel_format(style="plain", useOffset=False)  # 5800000, not 5.8e6 with an offset
    unit = "m" if per_unit and per_unit[0] == 1.0 else (raster.crs.linear_units or "map units")
    ax.set_xlabel(f"easting ({unit}), {name}")
    ax.set_ylabel(f"northing ({unit})")


def _class_image(raster: Raster, present: list[int]) -> tuple[np.ndarray, list]:
    """RGBA image of a class map and its legend handles (no-data transparent)."""
    from matplotlib.patches import Patch

    data = raster.data.data
    valid = ~np.ma.getmaskarray(raster.data)
    rgba = np.zeros(data.shape + (4,), dtype=np.float32)
    legend = []
    for v in present:
        rgb = raster.colors.get(int(v), (0, 0, 0) if v == UNCLASSIFIED else (128, 128, 128))
        rgba[(data == v) & valid] = (*[c / 255 for c in rgb], 1.0)
        label = raster.names.get(int(v), "Unclassified" if v == UNCLASSIFIED else str(v))
        legend.append(Patch(facecolor=hex_color(rgb), edgecolor="black", label=f"{int(v)} {label}"))
    return rgba, legend


def quicklook_figure(path: str | Path, title: str | None = None):
    """The quicklook of `path` as a matplotlib ``Figure`` (see the module's description).

    Parameters
    ----------
    path : path
        A raster file; band 1 is drawn.
    title : str, optional
        Default: the file name.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import offset_copy

    raster = read_raster(path)
    values = valid_values(raster)
    distinct = np.unique(values) if raster.data.dtype.kind in "iu" else None  # floats: never counted
    classes = is_class_map(raster, distinct)
    per_unit = ground_scale(raster.crs, raster.bounds) if raster.bounds is not None else None
    if raster.bounds is None:  # drawn in full-resolution pixels
        width, height = raster.size
        extent, aspect, ground = (0, width, height, 0), 1.0, (width, height)
    else:
        left, bottom, right, top = raster.bounds
        sx, sy = per_unit or (1.0, 1.0)
        # equal ground lengths look equal: a degree of longitude is shorter than one of latitude
        extent, aspect, ground = (left, right, bottom, top), sy / sx, ((right - left) * sx, (top - bottom) * sy)
    present = [int(v) for v in distinct if v != NO_DATA] if classes else []
    rows = math.ceil(len(present) / 2)
    longest = max(ground) or 1.0
    inches = tuple(MAP_INCHES * g / longest for g in ground)
    map_w, map_h = (max(i, 1.5) for i in inches)
    figsize = (map_w + 2.4 + (0 if classes else 1.2), map_h + 1.6 + 0.22 * rows)
    fig, ax = plt.subplots(figsize=figsize, dpi=110)
    if classes:
        rgba, legend = _class_image(raster, present)
        ax.imshow(rgba, interpolation="nearest", extent=extent, aspect=aspect)
        if legend:  # below the x ticks and label, whatever the map's height
            below = offset_copy(ax.transAxes, fig=fig, y=-0.5, units="inches")
            ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=2,
                      fontsize=8, frameon=False)
    elif values.size:
        lo, hi = stretch(values)
        image = ax.imshow(raster.data, cmap=ramp_name(values, raster.label), vmin=lo, vmax=hi,
                          interpolation="nearest", extent=extent, aspect=aspect)
        unit = f" ({raster.units})" if raster.units else ""
        fig.colorbar(image, ax=ax, extend="both", shrink=0.85,
                     label=f"{raster.label}{unit}, {STRETCH[0]:g}-{STRETCH[1]:g} % stretch")
    else:
        ax.imshow(raster.data, extent=extent, aspect=aspect)
        ax.text(0.5, 0.5, "no valid pixels", transform=ax.transAxes, ha="center", va="center")
    _label_axes(ax, raster, per_unit, inches)
    if raster.bounds is not None and per_unit is not None:
        add_scale_bar(ax, raster.bounds, per_unit)
    ax.set_title(title or Path(path).name)
    fig.tight_layout()
    return fig


def check_target(path: str | Path, png: str | Path) -> Path:
    """`png` as it will be written, once it is known it may be: before any raster is read.

    Raises
    ------
    ProductWriteError
        `png` is `path` itself (or a device, FIFO, folder...), or its folder
        does not exist or is not writable; worded as ``snap-pc run`` words
        it for a graph's outputs.
    """
    png = Path(os.path.expanduser(str(png)))
    check_claims([("quicklook", [png])], [path])
    # overwrite: a quicklook replaces an older one, as it always has
    problem = output_problem([png.absolute()], SimpleNamespace(input_files=(), overwrite=True))
    if problem:
        raise ProductWriteError(problem)
    return png


def write_quicklook(path: str | Path, png: str | Path, title: str | None = None) -> Path:
    """Render band 1 of raster `path` to `png` (written atomically; :func:`quicklook_figure`).

    Raises
    ------
    ProductWriteError
        `png` may not be written (:func:`check_target`): refused before reading.
    """
    png = check_target(path, png)
    return save_figure(quicklook_figure(path, title), png)


#: The older name: class maps were all a quicklook drew.
write_class_quicklook = write_quicklook


def write_area_chart(rows, png: str | Path, title: str = "Class areas") -> Path:
    """Horizontal bar chart of class areas (km²) from area-table rows.

    `rows` are objects or dicts with ``class_id``, ``class_name`` and the
    area: ``raster_area_km2`` (the classifier's area table) or ``area_km2``
    (LabelMaskExport's, after its sieve).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def get(r, k):
        return r[k] if isinstance(r, dict) else getattr(r, k)

    def area(r):
        has = (lambda k: k in r) if isinstance(r, dict) else (lambda k: hasattr(r, k))
        return float(get(r, "raster_area_km2" if has("raster_area_km2") else "area_km2"))

    rows = [r for r in rows if get(r, "class_id") not in (None, "")]
    colors = {c.value: hex_color(c.color) for c in LAND_COVER}
    labels = [f"{get(r, 'class_id')} {str(get(r, 'class_name')).split('/')[0]}" for r in rows]
    areas = [area(r) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5), dpi=110)
    bars = ax.barh(labels, areas, color=[colors.get(int(get(r, "class_id")), "#888888") for r in rows], edgecolor="black")
    ax.bar_label(bars, labels=[f"{a:.2f}" for a in areas], padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("area (km²)")
    ax.set_title(title)
    ax.margins(x=0.15)
    fig.tight_layout()
    return save_figure(fig, png)


def add_command(sub) -> None:
    """Register ``snap-pc quicklook``."""
    p = sub.add_parser(
        "quicklook", help="PNG of a raster: a class map with its legend, any other band with a colour bar",
        description="Render band 1 of a raster (GeoTIFF...) to a PNG with map coordinates (the CRS's "
        "eastings/northings or degrees) and a scale bar. A class map (integer ids with a CLASS_NAMES tag "
        f"or a colour map, or at most {MAX_CLASSES} distinct values) is drawn in its class colours with a "
        "legend; any other band (float, e.g. NDVI, or integers with many values) with a colour ramp "
        f"stretched over its {STRETCH[0]:g}-{STRETCH[1]:g} percentile range and a colour bar: RdYlGn for "
        "index-like bands (values in [-1, 1], some negative or the band named after an index such as NDVI), "
        "viridis otherwise. No-data is transparent. The raster is read decimated to at most "
        f"{MAX_EDGE} px a side, so a full tile takes seconds.")
    p.add_argument("raster", help="raster to draw (band 1): a class map or a continuous band")
    p.add_argument("png", help="output PNG (its folder must exist; an older PNG is replaced)")
    p.add_argument("--title", help="title (default: the file name)")
    p.set_defaults(handler=lambda args: print(f"wrote {write_quicklook(args.raster, args.png, args.title)}") or 0)
