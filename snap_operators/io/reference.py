"""Class labels from a raster or vector file, read window by window on a target grid.

The one reader that puts class-coded vectors on an image grid: ``snap-pc
assess`` (reference data), ``snap-pc dataset`` (training labels) and the
ProgressiveClassifier's training samples (``samplesFile``,
:func:`snap_operators.science.rules.read_samples`) all go through
:func:`read_vector_labels`. A raster is warped onto the grid by nearest
neighbour; polygons or points are reprojected and rasterized with their class
attribute.

Example
-------
>>> read = reference_reader("LULC.tif", crs, transform, 100, 101)   # doctest: +SKIP
>>> read(Window(0, 0, 100, 50)).shape                                # doctest: +SKIP
(50, 100)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..core.errors import SnapPcError

__all__ = ["ReferenceDataError", "ReferenceReader", "VectorLabels", "apply_mapping", "check_reference", "class_groups",
           "class_regions", "mapping_record", "parse_mapping", "read_vector_labels", "reference_reader",
           "split_mapping"]

#: The option (or operator parameter) that maps a file's codes or names to class ids, by the file's role.
MAPPING_OPTIONS = {"reference": "--mapping", "labels": "--label-mapping", "samplesFile": "samplesMapping"}

log = logging.getLogger(__name__)


class ReferenceDataError(SnapPcError):
    """A reference/label file that cannot be used on the target grid."""


def reference_reader(path, crs, transform, width: int, height: int, field: str | None = None,
                     *, require_overlap: bool = False, role: str = "reference",
                     mapping: Mapping[int, int] | Mapping[str, int] | None = None) -> "ReferenceReader":
    """A function ``read(window) -> int64 array`` of class codes on the grid.

    Parameters
    ----------
    path : str or Path
        Raster (any grid and CRS) or vector file (polygons or points).
    crs : rasterio.crs.CRS
        Target grid's CRS.
    transform : affine.Affine
        Target grid's pixel-corner transform.
    width, height : int
        Target grid size in pixels.
    field : str, optional
        Class attribute of a vector file (required for vectors; see
        :func:`read_vector_labels`).
    require_overlap : bool
        Raise if the file's extent does not intersect the grid.
    role : str
        What the file is to the caller, for messages (``reference``, ``labels``).
    mapping : dict, optional
        The file's codes -> class ids (``{80: 1, 10: 3}``), or class name ->
        class id for a vector attribute holding names (``{"water": 1}``:
        :func:`read_vector_labels`), as :func:`parse_mapping` reads them.
        Codes or names not mapped read as -1 (left out).

    Returns
    -------
    ReferenceReader
        ``read(window)`` -> ``(window.height, window.width)`` int64 codes, 0
        where the file says nothing; with a `mapping`, class ids, and -1
        wherever it maps nothing (there too, unless it maps 0).
        ``read.with_units(window)`` also gives each pixel's sampling unit
        (polygon, point, or a raster's connected region of one class).
    """
    names, codes = split_mapping(mapping)
    ref_ds, labels = _open_reference(path, crs, field, names, role, "--field")
    if labels is not None:
        read = _vector_reader(path, labels, transform, width, height, require_overlap, role)
    else:
        read = _raster_reader(path, ref_ds, crs, transform, width, height, require_overlap, role)
    return ReferenceReader(read, codes, width, labels)


class ReferenceReader:
    """``read(window)`` of :func:`reference_reader`; :meth:`with_units` also says which sampling unit
    each pixel belongs to.

    The unit is what a reference samples: a polygon or a point of a vector file, and in a raster
    a connected region of one class (4-connected). A raster's regions are numbered window by
    window; those that windows read one below the other cut apart are joined again by
    :meth:`unit`, so the units do not depend on the windows.
    """

    def __init__(self, read: Callable, codes: Mapping[int, int], width: int, labels: "VectorLabels | None"):
        self._read, self._codes, self._width, self._labels = read, codes, width, labels
        #: What the units are, for reports: ``polygons``, ``points``, ``shapes`` (both) or ``regions`` (a raster).
        self.unit_kind = labels.kind if labels is not None else "regions"
        self._edge: tuple | None = None  # the last window's (row after it, columns, last row's classes and ids)
        self._parent: dict[int, int] = {}  # raster regions cut by a window's edge -> the region they continue

    def __call__(self, window) -> np.ndarray:
        return apply_mapping(self._read(window), self._codes)

    def with_units(self, window) -> tuple[np.ndarray, np.ndarray]:
        """``(classes, units)``: the window's class ids as ``read(window)`` gives them, and each
        pixel's unit id, int64 (0 where the reference says nothing); in a raster, :meth:`unit`
        gives the id of the whole region once the windows below have been read."""
        if self._labels is not None:
            index = self._read(window, index=True)
            return apply_mapping(np.where(index > 0, self._labels.codes[index - 1], 0), self._codes), index
        classes = self(window)
        row, col = int(window.row_off), int(window.col_off)
        units = class_regions(classes, row, col, self._width)
        if self._edge is not None and self._edge[:2] == (row, (col, classes.shape[1])) and classes.size:
            above_classes, above_units = self._edge[2:]
            touch = (above_classes == classes[0]) & (above_units > 0) & (units[0] > 0)
            for a, b in set(zip(above_units[touch].tolist(), units[0][touch].tolist())):
                self._join(a, b)
        if classes.size:
            self._edge = (row + classes.shape[0], (col, classes.shape[1]), classes[-1].copy(), units[-1].copy())
        return classes, units

    def unit(self, unit_id: int) -> int:
        """The id of the whole unit `unit_id` is part of: the smallest of its parts' ids, the grid index
        of its first pixel plus one, whatever the windows."""
        while unit_id in self._parent:
            unit_id = self._parent[unit_id]
        return unit_id

    def _join(self, a: int, b: int) -> None:
        a, b = self.unit(a), self.unit(b)
        if a != b:
            self._parent[max(a, b)] = min(a, b)


def class_regions(classes: np.ndarray, row_off: int = 0, col_off: int = 0, width: int | None = None) -> np.ndarray:
    """Connected regions (4-connected) of one class id (> 0): a raster reference's sampling units.

    Parameters
    ----------
    classes : numpy.ndarray
        ``(rows, cols)`` class ids of a window of the grid (0 or less: nothing).
    row_off, col_off : int
        The window's place on the grid.
    width : int, optional
        The grid's width in pixels (default: the window's).

    Returns
    -------
    numpy.ndarray
        int64 ``(rows, cols)``: each region numbered by the grid index of its first pixel plus one,
        so that the ids of different windows never meet; 0 elsewhere.

    Examples
    --------
    >>> class_regions(np.array([[1, 1, 0], [2, 1, 2]]), 10, 0, 3).tolist()
    [[31, 31, 0], [34, 31, 36]]
    """
    from scipy import ndimage

    width = classes.shape[1] if width is None else width
    local = np.zeros(classes.shape, dtype=np.int64)
    count = 0
    for value in np.unique(classes[classes > 0]):
        labelled, n = ndimage.label(classes == value)
        local[labelled > 0] = labelled[labelled > 0] + count
        count += n
    if count == 0:
        return local
    _, first = np.unique(local.ravel(), return_index=True)  # sorted ids: 0 first (when present), then 1..count
    first = first[-count:]
    rows, cols = np.divmod(first, classes.shape[1])
    lut = np.concatenate([[0], (rows + row_off) * width + cols + col_off + 1])
    return lut[local]


def check_reference(path, field: str | None = None, mapping: Mapping[int, int] | Mapping[str, int] | None = None,
                    role: str = "reference", field_option: str = "--field") -> None:
    """Raise now what :func:`reference_reader` would raise on `path` later: a command that scores
    its result against a reference only at its end (``snap-pc train --reference``) checks it first.

    A raster is opened; a vector file is read whole (its attribute, its codes or class names
    against `mapping`), in its own CRS.

    Raises
    ------
    ReferenceDataError
    """
    ref_ds, _ = _open_reference(path, None, field, split_mapping(mapping)[0], role, field_option)
    if ref_ds is not None:
        ref_ds.close()


def _open_reference(path, crs, field, names, role, field_option):
    """``(open raster, None)`` or ``(None, VectorLabels in `crs`)`` for `path`; the errors of both kinds."""
    import rasterio

    path = Path(path)
    if not path.exists():
        raise ReferenceDataError(f"{role} {path} does not exist")
    try:
        ref_ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError:
        if not field:
            if not _is_vector(path):
                raise ReferenceDataError(f"{role} {path} is neither a raster nor a vector file GDAL can read") \
                    from None
            raise ReferenceDataError(f"{role} {path} is a vector file: give the class attribute ({field_option})") \
                from None
        return None, read_vector_labels(path, field, crs, role=role, names=names, field_option=field_option)
    if names:
        ref_ds.close()
        raise ReferenceDataError(f"{role} {path} is a raster of class codes: map codes, not names "
                                 f"(e.g. 5:1,2:3; names given: {', '.join(names)})")
    return ref_ds, None


def _is_vector(path: Path) -> bool:
    """Whether GDAL opens `path` as a vector dataset."""
    import pyogrio

    try:
        pyogrio.read_info(str(path))
    except Exception:  # noqa: BLE001 - pyogrio raises several kinds for a file it cannot open
        return False
    return True


def parse_mapping(text: str | None, option: str = "--mapping", groups: bool = False) -> dict:
    """File codes or class names -> class ids: ``"5:3,8:4"`` -> ``{5: 3, 8: 4}``;
    ``"water:1, forest:3"`` -> ``{"water": 1, "forest": 3}`` (a vector file whose class
    attribute holds names). Codes and names are not mixed in one mapping; `option` is
    the command-line option the text comes from, for messages.

    With `groups` (a reference to score a map against), a code or name may map to several
    class ids joined by ``+``, any of which is right there: ``"1:1,0:2+3+4+5"`` reads a
    water / not-water reference (:func:`class_groups`).

    >>> parse_mapping("5:3,8:4"), parse_mapping("Water:1, bare soil:2")
    ({5: 3, 8: 4}, {'Water': 1, 'bare soil': 2})
    >>> parse_mapping("1:1,0:2+3+4+5", groups=True)
    {1: 1, 0: (2, 3, 4, 5)}
    """
    if not text:
        return {}
    out: dict = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            a, b = item.rsplit(":", 1)
            a = a.strip()
            if not a:
                raise ValueError
            ids = tuple(sorted({int(x) for x in b.split("+")})) if groups else (int(b),)
            out[int(a) if is_number(a) else a] = ids[0] if len(ids) == 1 else ids  # "2.5" is a bad code, not a name
        except ValueError:
            raise ReferenceDataError(
                f"{option}: cannot read {item!r}; expected CODE:CLASS pairs such as 5:1,2:3 (codes) or "
                "water:1,forest:3 (class names of a vector file)"
                + ("; a code any of several classes may map, with +: 0:2+3+4+5" if groups else "")) from None
    if len({isinstance(k, str) for k in out}) > 1:
        raise ReferenceDataError(f"{option} mixes codes and class names ({text}); map either the codes or the names")
    return out


def class_groups(mapping: Mapping | None, option: str = "--mapping") -> tuple[dict, dict[int, tuple[int, ...]]]:
    """``(mapping, groups)``: a reference's mapping whose values may be groups of class ids (a
    reference class that any of several map classes matches: ``0: (2, 3, 4, 5)``, "not water"),
    each group replaced by its smallest id but 0 (Unclassified, which may be in a group: the rules
    leave pixels unclassified that are not water either), and the groups by that id. A map's
    classes of one group are then scored as that one class (``snap-pc assess``); a class in two
    groups, or in a group and mapped alone, would be two reference classes at once and is refused.

    >>> class_groups({1: 1, 0: (2, 3, 4, 5)})
    ({1: 1, 0: 2}, {2: (2, 3, 4, 5)})
    >>> class_groups({"land": (0, 2, 3)})
    ({'land': 2}, {2: (0, 2, 3)})
    """
    out, groups, seen = {}, {}, {}
    for key, value in (mapping or {}).items():
        ids = tuple(value) if isinstance(value, (tuple, list)) else (int(value),)
        for i in ids:
            if not 0 <= i < 254:
                raise ReferenceDataError(f"{option}: class id {i} (of {key}) is not a class of a map (0-253)")
            if seen.get(i, ids) != ids:
                raise ReferenceDataError(f"{option}: class {i} is in {'+'.join(map(str, seen[i]))} and in "
                                         f"{'+'.join(map(str, ids))}; a map's class can be one reference class only")
            seen[i] = ids
        gid = min((i for i in ids if i), default=0)
        out[key] = gid
        if len(ids) > 1:
            groups[gid] = ids
    return out, groups


def mapping_record(mapping: Mapping | None) -> dict:
    """`mapping` as reports record it (JSON): codes or names as text, groups of class ids as lists.

    >>> mapping_record({1: 1, 0: (2, 3)})
    {'1': 1, '0': [2, 3]}
    """
    return {str(k): list(v) if isinstance(v, tuple) else v for k, v in (mapping or {}).items()}


def split_mapping(mapping: Mapping | None) -> tuple[dict[str, int] | None, dict[int, int]]:
    """``(names, codes)``: the class names a vector file is read with, and the code mapping
    applied to what it gives (:func:`apply_mapping`). A mapping of names reads each name as its
    class id, so the codes then map every id it gives to itself (and leave the rest out).

    >>> split_mapping({"water": 1, "lake": 1, "forest": 3})
    ({'water': 1, 'lake': 1, 'forest': 3}, {1: 1, 3: 3})
    >>> split_mapping({5: 1})
    (None, {5: 1})
    """
    mapping = dict(mapping or {})
    if any(isinstance(k, str) for k in mapping):
        return mapping, {v: v for v in sorted(set(mapping.values()))}
    return None, mapping


def apply_mapping(reference: np.ndarray, mapping: Mapping[int, int] | None) -> np.ndarray:
    """File codes as class ids: mapped codes replaced, unmapped ones -1 (left out); no mapping: as they are.

    >>> apply_mapping(np.array([5, 2, 0]), {5: 1})
    array([ 1, -1, -1])
    """
    if not mapping:
        return reference
    lut = np.full(max(max(mapping), int(reference.max(initial=0))) + 1, -1, dtype=np.int64)
    for a, b in mapping.items():
        lut[a] = b
    return np.where((reference >= 0) & (reference < lut.size), lut[np.clip(reference, 0, lut.size - 1)], -1)


def _grid_bounds(transform, width, height):
    from rasterio.transform import array_bounds

    return array_bounds(height, width, transform)  # (west, south, east, north)


def _raster_reader(path, ref_ds, crs, transform, width, height, require_overlap, role):
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds

    if ref_ds.crs is None:
        raise ReferenceDataError(f"{role} raster {path} has no CRS")
    if require_overlap:
        b = transform_bounds(ref_ds.crs, crs, *ref_ds.bounds)
        _check_overlap(path, b, _grid_bounds(transform, width, height), role)
    vrt = WarpedVRT(ref_ds, crs=crs, transform=transform, width=width, height=height,
                    resampling=Resampling.nearest, nodata=0)

    def read(win):
        a = vrt.read(1, window=win)
        if a.dtype.kind == "f":  # a float raster of class codes: NaN (no-data) says nothing; 2.5 is no code
            a = np.where(np.isfinite(a), a, 0)
            odd = a[a != np.round(a)]
            if odd.size:
                raise ReferenceDataError(f"{role} raster {path} holds values that are not whole numbers (e.g. "
                                         f"{odd[0]:g}): it is no raster of class codes")
        return a.astype(np.int64)

    return read


def _check_overlap(path, b, grid, role):
    if b[0] >= grid[2] or b[2] <= grid[0] or b[1] >= grid[3] or b[3] <= grid[1]:
        raise ReferenceDataError(f"{role} {path} lies outside the image ({role} {tuple(round(v) for v in b)}, "
                                 f"image {tuple(round(v) for v in grid)} in the image CRS)")


class VectorLabels:
    """The class-coded shapes of a vector file, in the image grid's CRS (:func:`read_vector_labels`).

    Parameters
    ----------
    geoms : numpy.ndarray
        ``(n,)`` shapely geometries (polygons, points...), in file order.
    codes : numpy.ndarray
        ``(n,)`` int64 class code of each geometry.
    """

    def __init__(self, geoms: np.ndarray, codes: np.ndarray):
        import shapely

        self.geoms = geoms
        self.codes = codes
        # Windows ask only for the shapes they touch, so a large label file costs
        # per window what lies under it, not the whole file.
        self._tree = shapely.STRtree(geoms)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` of all shapes, grid CRS."""
        import shapely

        return tuple(shapely.total_bounds(self.geoms))

    @property
    def kind(self) -> str:
        """``points``, ``polygons`` or ``shapes`` (both, or lines): what the file's units are."""
        import shapely

        types = set(shapely.get_type_id(self.geoms).tolist())
        return "points" if types <= {0, 4} else "polygons" if types <= {3, 6} else "shapes"

    def rasterize(self, transform: Any, height: int, width: int, index: bool = False) -> np.ndarray:
        """Class codes on a window of the grid.

        Parameters
        ----------
        transform : affine.Affine
            Pixel-corner transform of the window.
        height, width : int
            Window size, pixels.
        index : bool
            Give each pixel its shape's position in the file plus one instead of its code.

        Returns
        -------
        numpy.ndarray
            int64 ``(height, width)``: a pixel whose centre lies in a polygon,
            or that holds a point, has the shape's code (the later shape in the
            file where shapes overlap); 0 elsewhere.
        """
        import shapely
        from rasterio import features

        hits = self._tree.query(shapely.box(*_window_bounds(transform, height, width)), predicate="intersects")
        if hits.size == 0:
            return np.zeros((height, width), dtype=np.int64)
        hits.sort()  # file order: later features win where they overlap, as in rasterize
        burnt = features.rasterize(zip(self.geoms[hits], (hits + 1).tolist()), out_shape=(height, width),
                                   transform=transform, fill=0, dtype="int32", all_touched=False).astype(np.int64)
        return burnt if index else np.where(burnt > 0, self.codes[burnt - 1], 0)


def read_vector_labels(path, field: str, crs, *, role: str = "reference", field_option: str = "--field",
                       names: Mapping[str, int] | None = None) -> VectorLabels:
    """Read the class-coded shapes of a vector file and reproject them to `crs`.

    Parameters
    ----------
    path : str or Path
        Any vector file GDAL reads (GeoPackage, Shapefile, GeoJSON...), with a CRS.
    field : str
        Attribute holding each shape's class code: an integer (``3``,
        ``3.0``, ``"3"``; not ``2.5``). Shapes without a geometry or a code
        say nothing and are skipped (a warning counts those without a code).
    crs : CRS-like or None
        The image grid's CRS (rasterio CRS, WKT, ``"EPSG:32638"``); None: the
        file's own (no reprojection).
    role, field_option : str
        How messages name the file (``reference``, ``samplesFile``) and the
        option that names `field` (``--field``, ``samplesClassField``).
    names : dict of str to int, optional
        Class name -> class id (``snap-pc assess --mapping water:1,forest:3``,
        ``snap-pc dataset --label-mapping``),
        for an attribute holding class names: each shape gets the id of its
        name (compared without case and outer spaces); shapes of a name not
        in `names` are left out (a warning names them). Without it, names are
        refused with the names found and how to map them.

    Returns
    -------
    VectorLabels

    Raises
    ------
    ReferenceDataError
        One line: unreadable file, no CRS, no attribute `field`, a code that
        is not an integer, or no shape with a code.
    """
    import fiona
    import fiona.errors
    import shapely
    from rasterio.warp import transform_geom

    where = f"{role} {path}"
    try:
        src = fiona.open(str(path))
    except Exception as exc:  # noqa: BLE001 - any driver error means an unreadable file
        raise ReferenceDataError(f"{where}: cannot open ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    with src:
        attributes = list(src.schema.get("properties", {}))
        if field not in attributes:
            raise ReferenceDataError(f"{where}: no attribute '{field}' ({field_option}); attributes: "
                                     f"{', '.join(attributes) or '(none)'}")
        if not src.crs_wkt:
            raise ReferenceDataError(f"{where}: the file has no CRS, so its shapes cannot be placed on the image")
        shapes, codes, uncoded = [], [], 0
        lookup = {str(k).strip().casefold(): v for k, v in names.items()} if names else None
        unmapped: dict[str, int] = {}  # name -> shapes left out (with `names`), or found (without)
        try:
            for feat in src:
                value = feat.properties.get(field)
                if feat.geometry is None:
                    continue
                if value is None:
                    uncoded += 1
                    continue
                if lookup is not None or (isinstance(value, str) and not is_number(value)):
                    code = lookup.get(str(value).strip().casefold()) if lookup is not None else None
                    if code is None:
                        unmapped[str(value)] = unmapped.get(str(value), 0) + 1
                        continue
                else:
                    code = _class_code(value, where, field)
                codes.append(code)
                shapes.append(feat.geometry.__geo_interface__)
        except (fiona.errors.FionaError, OSError) as exc:
            raise ReferenceDataError(f"{where}: cannot read ({' '.join(str(exc).split()) or type(exc).__name__})") \
                from None
        src_crs = src.crs_wkt
    if unmapped and lookup is None:
        from ..core.legend import class_list

        found = sorted(unmapped, key=str.casefold)
        listed = ", ".join(found[:12]) + (", ..." if len(found) > 12 else "")
        ids = class_list()
        raise ReferenceDataError(
            f"{where}: {field} holds class names, not codes ({listed}): "
            + f"map them to class ids with {MAPPING_OPTIONS.get(role, '--mapping')} NAME:ID pairs ({found[0]}:ID,...; "
            f"ids: {ids}; names not mapped are left out)")
    if unmapped and not shapes:
        raise ReferenceDataError(f"{where}: none of its {field} values ({', '.join(sorted(unmapped, key=str.casefold))}) "
                                 f"is in the mapping ({', '.join(lookup)})")
    if unmapped:
        log.warning("%s: %d shapes of %s, not in the mapping, are left out", where, sum(unmapped.values()),
                    ", ".join(sorted(unmapped, key=str.casefold)))
    if uncoded:
        log.warning("%s: %d shapes without a '%s' value are left out", where, uncoded, field)
    if not shapes:
        raise ReferenceDataError(f"{where}: no shape has a '{field}' value")
    dst_crs = src_crs if crs is None else crs.to_wkt() if hasattr(crs, "to_wkt") else crs
    try:
        geoms = np.array([shapely.geometry.shape(g) for g in transform_geom(src_crs, dst_crs, shapes)], dtype=object)
    except Exception as exc:  # noqa: BLE001 - GDAL's and shapely's errors alike: shapes that cannot be placed
        raise ReferenceDataError(f"{where}: cannot reproject its shapes to the image CRS "
                                 f"({' '.join(str(exc).split()) or type(exc).__name__})") from None
    return VectorLabels(geoms, np.asarray(codes, dtype=np.int64))


def is_number(text: str) -> bool:
    """Whether the text `text` spells a number (``"3"``, ``" 3 "``, ``"2.5"``): a code, good or bad, not a name."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _class_code(value, where: str, field: str) -> int:
    """`value` as an integer class code, or the error naming it (``2.5`` is no code; ``"3"`` and ``3.0`` are)."""
    try:
        code = int(value)
        if code != value and str(code) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ReferenceDataError(f"{where}: {field} = {value!r} is not a class code") from None
    return code


def _window_bounds(t: Any, h: int, w: int) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of an ``h x w`` window with transform `t` (any rotation)."""
    xs = [t.c, t.c + t.a * w + t.b * h, t.c + t.a * w, t.c + t.b * h]
    ys = [t.f, t.f + t.d * w + t.e * h, t.f + t.d * w, t.f + t.e * h]
    return min(xs), min(ys), max(xs), max(ys)


def _vector_reader(path, labels, transform, width, height, require_overlap, role):
    from rasterio import windows

    if require_overlap:
        _check_overlap(path, labels.bounds, _grid_bounds(transform, width, height), role)

    def read(win, index=False):
        return labels.rasterize(windows.transform(win, transform), int(win.height), int(win.width), index)

    return read
