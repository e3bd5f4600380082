"""QGIS layer styles for class polygons: QML files and GeoPackage ``layer_styles``.

:func:`categorized_qml` builds a QGIS style (QML) with a categorized renderer
on an integer class attribute, one solid fill per class in the class color.
QGIS applies ``<name>.qml`` beside a file-based layer when it opens the layer
(written like every whole file, with :func:`snap_operators.core.outputs.stage_text`
or :func:`~snap_operators.core.outputs.write_text`); in a GeoPackage it applies the default style stored in
the ``layer_styles`` table (:func:`store_gpkg_style`), the table QGIS itself
creates with *Save Style > In Datasource Database*.

Example
-------
>>> from snap_operators.core.legend import LAND_COVER
>>> qml = categorized_qml(LAND_COVER[:2])
>>> "categorizedSymbol" in qml and 'label="Water"' in qml
True
"""

from __future__ import annotations

import datetime as _dt
import os
import xml.etree.ElementTree as ET
from typing import Sequence

from ..core.product import ClassInfo

#: QGIS version written in the QML header (any QGIS 3 reads the file).
QGIS_VERSION = "3.34.0-Prizren"

#: Columns of QGIS's ``layer_styles`` table, with fiona field types.
LAYER_STYLES_SCHEMA = {
    "geometry": "None",
    "properties": {
        "f_table_catalog": "str:256",
        "f_table_schema": "str:256",
        "f_table_name": "str:256",
        "f_geometry_column": "str:256",
        "styleName": "str:30",
        "styleQML": "str",
        "styleSLD": "str",
        "useAsDefault": "bool",
        "description": "str",
        "owner": "str:30",
        "ui": "str:30",
        "update_time": "datetime",
    },
}


def _rgba(color: Sequence[int], alpha: int = 255) -> str:
    r, g, b = (int(c) for c in color[:3])
    return f"{r},{g},{b},{alpha}"


def _fill_symbol(parent: ET.Element, name: str, color: Sequence[int], outline: Sequence[int]) -> ET.Element:
    symbol = ET.SubElement(
        parent, "symbol",
        {"type": "fill", "name": name, "alpha": "1", "clip_to_extent": "1", "force_rhr": "0", "frame_rate": "10",
         "is_animated": "0"},
    )
    layer = ET.SubElement(symbol, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
    props = {
        "border_width_map_unit_scale": "3x:0,0,0,0,0,0",
        "color": _rgba(color),
        "joinstyle": "bevel",
        "offset": "0,0",
        "offset_map_unit_scale": "3x:0,0,0,0,0,0",
        "offset_unit": "MM",
        "outline_color": _rgba(outline),
        "outline_style": "solid",
        "outline_width": "0.1",
        "outline_width_unit": "MM",
        "style": "solid",
    }
    # QGIS >= 3.26 reads the Option map; older QGIS 3 reads the prop elements.
    options = ET.SubElement(layer, "Option", {"type": "Map"})
    for k, v in props.items():
        ET.SubElement(options, "Option", {"name": k, "type": "QString", "value": v})
    for k, v in props.items():
        ET.SubElement(layer, "prop", {"k": k, "v": v})
    return symbol


def _darker(color: Sequence[int]) -> tuple[int, int, int]:
    return tuple(int(c * 0.6) for c in color[:3])  # type: ignore[return-value]


def categorized_qml(classes: Sequence[ClassInfo], attribute: str = "class_id", name: str = "class masks") -> str:
    """A QGIS style with one category per class.

    Parameters
    ----------
    classes : sequence of ClassInfo
        Classes in legend order (value, name, RGB color).
    attribute : str
        Integer field the renderer categorizes on.
    name : str
        Style name (informative).

    Returns
    -------
    str
        QML document text (UTF-8 XML with the QGIS doctype).
    """
    root = ET.Element(
        "qgis", {"version": QGIS_VERSION, "styleCategories": "Symbology|Legend", "hasScaleBasedVisibilityFlag": "0"}
    )
    renderer = ET.SubElement(
        root, "renderer-v2",
        {"type": "categorizedSymbol", "attr": attribute, "symbollevels": "0", "enableorderby": "0",
         "forceraster": "0", "referencescale": "-1"},
    )
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for i, c in enumerate(classes):
        ET.SubElement(
            categories, "category",
            {"value": str(int(c.value)), "label": c.name, "symbol": str(i), "render": "true", "type": "long"},
        )
        _fill_symbol(symbols, str(i), c.color, _darker(c.color))
    source = ET.SubElement(renderer, "source-symbol")
    _fill_symbol(source, "0", (190, 190, 190), (35, 35, 35))
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerOpacity").text = "1"
    ET.SubElement(root, "layerGeometryType").text = "2"  # polygon
    comment = ET.Comment(f" {name}: categorized on {attribute} ")
    root.insert(0, comment)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + body + "\n"


def store_gpkg_style(
    gpkg: str | os.PathLike,
    layer: str,
    qml: str,
    geometry_column: str = "geom",
    style_name: str | None = None,
    description: str = "",
) -> None:
    """Store `qml` as the default style of `layer` in a GeoPackage.

    Creates QGIS's ``layer_styles`` attribute table (registered in
    ``gpkg_contents``, primary key ``id``) when absent and adds one row with
    ``useAsDefault`` set, so QGIS applies the style when it opens the layer.
    """
    import fiona

    now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    row = {
        "f_table_catalog": "",
        "f_table_schema": "",
        "f_table_name": layer,
        "f_geometry_column": geometry_column,
        "styleName": (style_name or layer)[:30],
        "styleQML": qml,
        "styleSLD": "",
        "useAsDefault": True,
        "description": description,
        "owner": "",
        "ui": "",
        "update_time": now.isoformat(),
    }
    feature = {"geometry": None, "properties": row}
    if "layer_styles" in fiona.listlayers(str(gpkg)):
        with fiona.open(str(gpkg), "a", driver="GPKG", layer="layer_styles") as dst:
            dst.write(feature)
    else:
        with fiona.open(str(gpkg), "w", driver="GPKG", layer="layer_styles", schema=LAYER_STYLES_SCHEMA, FID="id") as dst:
            dst.write(feature)
