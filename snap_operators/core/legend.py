"""The project's land-cover legend: class ids, names and colors.

Ids are fixed across the project (classifier, label masks, U-Net, change
detection): 0 = Unclassified, 1..5 the classes below, 254 = masked (cloud,
cloud shadow or snow: not observed, not a land-cover class), 255 = no-data.

Example
-------
>>> from snap_operators.core.legend import LAND_COVER, class_name
>>> class_name(1)
'Water'
>>> [c.value for c in LAND_COVER]
[1, 2, 3, 4, 5]
"""

from __future__ import annotations

from .product import ClassInfo

UNCLASSIFIED = 0
#: Pixels not observed: cloud, cloud shadow or snow/ice (see ``CloudMask``).
MASKED = 254
NO_DATA = 255

#: The five classes of the Progressive Classifier (``mosul-5class`` preset).
LAND_COVER: tuple[ClassInfo, ...] = (
    ClassInfo(1, "Water", (0, 112, 255), "Open water: rivers, lakes, reservoirs"),
    ClassInfo(2, "Bare Soil", (210, 180, 140), "Bare soil, fallow fields, desert"),
    ClassInfo(3, "Trees/Shrubbery vegetation", (38, 115, 0), "Trees, shrubs and dense vegetation"),
    ClassInfo(4, "Urban Area/High Reflected sediments", (230, 0, 0), "Built-up areas, roads, highly reflective sediments"),
    ClassInfo(5, "Alluvium/Clay Silts sediments/roof", (168, 112, 0), "Alluvium, clay and silt sediments, roofs"),
)

#: Class id -> name, for the five classes.
CLASS_NAMES: dict[int, str] = {c.value: c.name for c in LAND_COVER}

UNCLASSIFIED_INFO = ClassInfo(UNCLASSIFIED, "Unclassified", (0, 0, 0), "Claimed by no stage")
MASKED_INFO = ClassInfo(MASKED, "Masked: cloud, shadow, snow", (200, 200, 200),
                        "Not observed: cloud, cloud shadow or snow/ice; not a land-cover class")


def class_list(classes: tuple[ClassInfo, ...] | list[ClassInfo] = LAND_COVER) -> str:
    """The classes as messages name them: ``"1 Water, 2 Bare Soil, ..."``.

    >>> class_list(LAND_COVER[:2])
    '1 Water, 2 Bare Soil'
    """
    return ", ".join(f"{c.value} {c.name}" for c in classes)


def class_name(value: int, classes: tuple[ClassInfo, ...] | list[ClassInfo] = LAND_COVER) -> str:
    """Name of class `value` in `classes` (``'Unclassified'`` for 0)."""
    if value == UNCLASSIFIED:
        return UNCLASSIFIED_INFO.name
    if value == MASKED:
        return MASKED_INFO.name
    for c in classes:
        if c.value == value:
            return c.name
    raise KeyError(value)


def hex_color(rgb: tuple[int, int, int]) -> str:
    """``(r, g, b)`` -> ``'#rrggbb'``."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)
