"""Quicklook PNGs of class maps: the map with its legend, and the class areas.

The raster is read decimated (GDAL overview-style, nearest neighbour), so a
full Sentinel-2 tile costs a few megabytes.

Example
-------
>>> # write_class_quicklook("classes.tif", "classes.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.errors import SnapPcError
from ..core.legend import CLASS_NAMES, LAND_COVER, NO_DATA, UNCLASSIFIED, hex_color
from ..core.outputs import check_claims, save_figure

#: Longest edge of the rendered map, pixels.
MAX_EDGE = 1200


def read_decimated(path: str | Path, max_edge: int = MAX_EDGE) -> tuple[np.ndarray, dict[int, str], dict[int, tuple]]:
    """Class band 1 of `path` at most `max_edge` px wide/high, with names and colors."""
    import rasterio
    from rasterio.enums import Resampling

    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise SnapPcError(f"cannot open {path}: {exc}") from None
    with ds:
        scale = max(1.0, max(ds.width, ds.height) / max_edge)
        shape = (max(1, int(ds.height / scale)), max(1, int(ds.width / scale)))
        data = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
        names = dict(CLASS_NAMES)
        tag = ds.tags(1).get("CLASS_NAMES")
        if tag:
            try:
                names = {int(k): str(v) for k, v in json.loads(tag).items()}
            except (ValueError, AttributeError):
                pass
        colors = {c.value: c.color for c in LAND_COVER}
        try:
            colors.update({k: tuple(v[:3]) for k, v in ds.colormap(1).items() if k in names})
        except ValueError:
            pass
    return data, names, colors


def write_class_quicklook(path: str | Path, png: str | Path, title: str | None = None) -> Path:
    """Render class raster `path` with a legend to `png` (written atomically).

    Raises
    ------
    ProductWriteError
        `png` is `path` itself (or its device, FIFO...): refused before reading.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    check_claims([("quicklook", [png])], [path])
    data, names, colors = read_decimated(path)
    rgba = np.zeros(data.shape + (4,), dtype=np.float32)
    present = [v for v in np.unique(data) if v != NO_DATA]
    legend = []
    for v in present:
        rgb = colors.get(int(v), (0, 0, 0) if v == UNCLASSIFIED else (128, 128, 128))
        rgba[data == v] = (*[c / 255 for c in rgb], 1.0)
        label = names.get(int(v), "Unclassified" if v == UNCLASSIFIED else str(v))
        legend.append(Patch(facecolor=hex_color(rgb), edgecolor="black", label=f"{int(v)} {label}"))
    fig, ax = plt.subplots(figsize=(9, 9 * data.shape[0] / max(data.shape[1], 1) + 1), dpi=110)
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title or Path(path).name)
    if legend:
        ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, png)


def write_area_chart(rows, png: str | Path, title: str = "Class areas") -> Path:
    """Horizontal bar chart of class areas (km²) from area-table rows.

    `rows` are objects or dicts with ``class_id``, ``class_name`` and
    ``area_km2``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def get(r, k):
        return r[k] if isinstance(r, dict) else getattr(r, k)

    rows = [r for r in rows if get(r, "class_id") not in (None, "")]
    colors = {c.value: hex_color(c.color) for c in LAND_COVER}
    labels = [f"{get(r, 'class_id')} {str(get(r, 'class_name')).split('/')[0]}" for r in rows]
    areas = [float(get(r, "area_km2")) for r in rows]
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
    p = sub.add_parser("quicklook", help="PNG of a class map with its legend",
                       description="Render a class map (GeoTIFF with class ids) to a PNG with the class colors and a legend.")
    p.add_argument("classes", help="class map GeoTIFF")
    p.add_argument("png", help="output PNG")
    p.add_argument("--title", help="title (default: the file name)")
    p.set_defaults(handler=lambda args: print(f"wrote {write_class_quicklook(args.classes, args.png, args.title)}") or 0)
