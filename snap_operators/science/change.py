"""Land-cover change between two class maps: change codes, transition matrix, gain/loss/net.

Pure numpy functions over tiles, used by the ``ChangeDetection`` operator and
by ``snap-pc timeseries``; see ``docs/change_detection.md``.

**Change code.** A pixel whose class went from ``a`` to ``b`` (``a != b``)
gets ``a * base + b``; ``base`` is 10 when every class id is at most 9 (the
project's ids: 32 = Trees -> Bare Soil) and 100 when ids reach 99. An
unchanged pixel gets :data:`NO_CHANGE` (0) whatever its class (``a * base +
b`` is 0 only for ``a == b == 0``, so no code is ambiguous), and a pixel
that is no-data on either date (or holds a value outside the legend) gets
the no-data code: 255 for the uint8 codes of base 10, 65535 for the uint16
codes of base 100. So does a pixel *masked* on either date (class 254:
cloud, cloud shadow or snow, not observed): it is not compared, and the
transition matrix counts it in a row and column of its own.

**Transition matrix.** ``m[i, j]`` counts the pixels of legend class
``values[i]`` before and ``values[j]`` after (the extended matrix adds rows
and columns for no-data, values outside the legend and masked pixels); pixels are accumulated per
image row when areas need it (geographic CRS) and turned into km² with the
true area of each row's pixels (:func:`snap_operators.grid.areas.row_pixel_areas_km2`).

Example
-------
>>> import numpy as np
>>> before = np.array([[1, 1, 3, 255]], dtype=np.uint8)
>>> after = np.array([[1, 2, 2, 3]], dtype=np.uint8)
>>> change_codes(before, after, [1, 2, 3], before_no_data=255).tolist()
[[0, 12, 32, 255]]
>>> m = transition_matrix(before, after, [1, 2, 3], before_no_data=255)
>>> m.tolist()
[[1, 1, 0], [0, 0, 0], [0, 1, 0]]
>>> {k: v.tolist() for k, v in gain_loss(m).items() if k in ("gain", "loss", "net")}
{'gain': [0, 2, 0], 'loss': [1, 0, 1], 'net': [-1, 2, -1]}
"""

from __future__ import annotations

import colorsys
import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..core.errors import OperatorError
from ..core.legend import MASKED, NO_DATA, UNCLASSIFIED_INFO
from ..core.product import Band, ClassInfo, Product

#: Change code of a pixel whose class did not change.
NO_CHANGE = 0
#: Legend entry of :data:`NO_CHANGE`.
NO_CHANGE_INFO = ClassInfo(NO_CHANGE, "No change", (225, 225, 225), "Same class on both dates")
#: Name of the no-data row and column of a transition matrix.
NO_DATA_NAME = "No data"
#: Name of the row and column of values outside the legend.
OUTSIDE_LEGEND_NAME = "Not in legend"
#: Name of the row and column of masked pixels (class 254).
MASKED_NAME = "Masked (not observed)"
#: Rows (and columns) of the extended matrix after the legend classes: no-data, outside legend, masked.
EXTRA_ROWS = 3
#: Share of the pixels with data on both dates that may be masked (cloud, cloud shadow, snow) on one
#: date or both before a comparison of the two dates is in doubt: ``ChangeDetection`` warns above it.
MAX_MASKED_SHARE = 0.5
#: Largest class id a change code can hold.
MAX_CLASS_ID = 99
#: Band used when no class band is named and the product has it.
DEFAULT_CLASS_BAND = "class_id"
#: Name of the band ``ChangeDetection`` writes.
CHANGE_BAND = "change"
#: Product type of ``ChangeDetection``'s target; GeoTIFF (tag ``PRODUCT_TYPE``) and BEAM-DIMAP keep it,
#: so a change map read back is still known as one (:func:`change_coding`).
CHANGE_PRODUCT_TYPE = "CLASS_CHANGE"
#: Separator of the from- and to-class names in a transition's category name.
TRANSITION_SEPARATOR = " -> "
#: Lightness (HLS) of the transitions from the first and from the last class of the legend;
#: the ones between are spread evenly, so a to-class's transitions share its hue and differ in lightness.
TRANSITION_LIGHTNESS = (0.25, 0.8)


def code_base(values: Sequence[int]) -> int:
    """Multiplier of the from-class in a change code: 10 for ids up to 9, else 100.

    Raises
    ------
    OperatorError
        A class id is negative or above :data:`MAX_CLASS_ID`.

    Examples
    --------
    >>> code_base([0, 1, 5]), code_base([1, 10])
    (10, 100)
    """
    values = [int(v) for v in values]
    bad = [v for v in values if v < 0 or v > MAX_CLASS_ID]
    if bad:
        raise OperatorError(f"class id {bad[0]} cannot be coded: change codes need class ids 0..{MAX_CLASS_ID}")
    return 10 if max(values, default=0) <= 9 else 100


def code_dtype(base: int) -> np.dtype:
    """dtype of the change band: uint8 for base 10 (codes <= 98), uint16 for base 100."""
    return np.dtype(np.uint8) if base == 10 else np.dtype(np.uint16)


def no_data_code(base: int) -> int:
    """Change code of pixels without data on either date: the dtype's maximum."""
    return int(np.iinfo(code_dtype(base)).max)


def change_code(from_id: int, to_id: int, base: int = 10) -> int:
    """Code of one transition: ``from_id * base + to_id``, or 0 when the class is the same.

    >>> change_code(3, 2), change_code(2, 2), change_code(0, 4)
    (32, 0, 4)
    """
    return NO_CHANGE if from_id == to_id else int(from_id) * base + int(to_id)


def class_index(block: np.ndarray, values: Sequence[int], no_data: float | int | None = None) -> np.ndarray:
    """Position of each pixel's class in `values`.

    Parameters
    ----------
    block : numpy.ndarray
        Integer class ids, any shape.
    values : sequence of int
        The legend's class ids, ascending.
    no_data : int, optional
        The band's no-data value.

    Returns
    -------
    numpy.ndarray
        intp array of `block`'s shape: ``0 .. n-1`` for legend classes, ``n``
        for no-data, ``n + 1`` for values outside the legend (``n = len(values)``).

    Examples
    --------
    >>> class_index(np.array([3, 1, 255, 7]), [1, 3], no_data=255).tolist()
    [1, 0, 2, 3]
    """
    v = np.asarray(values, dtype=np.int64)
    n = v.size
    b = np.asarray(block).astype(np.int64, copy=False)
    pos = np.searchsorted(v, b)
    clipped = np.minimum(pos, max(n - 1, 0))
    known = (pos < n) & (v[clipped] == b) if n else np.zeros(b.shape, bool)
    out = np.where(known, clipped, n + 1).astype(np.intp)
    if no_data is not None and not (isinstance(no_data, float) and np.isnan(no_data)):
        out[b == int(no_data)] = n
    return out


def change_codes(
    before: np.ndarray,
    after: np.ndarray,
    values: Sequence[int],
    *,
    base: int | None = None,
    before_no_data: float | int | None = None,
    after_no_data: float | int | None = None,
) -> np.ndarray:
    """Change codes of two class tiles (see the module docstring).

    Parameters
    ----------
    before, after : numpy.ndarray
        Class ids of the same pixels on both dates, shape ``(rows, cols)``.
    values : sequence of int
        Legend class ids, ascending (both maps share the legend).
    base : int, optional
        10 or 100; default :func:`code_base` of `values`.
    before_no_data, after_no_data : int, optional
        No-data values of the two bands.

    Returns
    -------
    numpy.ndarray
        uint8 (base 10) or uint16 (base 100) codes, shape of `before`.
    """
    base = code_base(values) if base is None else base
    n = len(values)
    bi = class_index(before, values, before_no_data)
    ai = class_index(after, values, after_no_data)
    return _codes_from_index(bi, ai, np.asarray(values, dtype=np.int64), n, base)


def _codes_from_index(bi: np.ndarray, ai: np.ndarray, values: np.ndarray, n: int, base: int) -> np.ndarray:
    dtype = code_dtype(base)
    valid = (bi < n) & (ai < n)
    b = values[np.minimum(bi, n - 1)] if n else np.zeros(bi.shape, np.int64)
    a = values[np.minimum(ai, n - 1)] if n else np.zeros(ai.shape, np.int64)
    codes = np.where(b == a, NO_CHANGE, b * base + a)
    return np.where(valid, codes, no_data_code(base)).astype(dtype)


def change_tile(
    tiles: dict[str, np.ndarray],
    *,
    values: Sequence[int],
    base: int,
    before_no_data: float | int | None,
    after_no_data: float | int | None,
) -> dict[str, np.ndarray]:
    """The per-tile function of ``ChangeDetection``: ``{'before', 'after'}`` -> ``{'change', 'pair'}``.

    ``pair`` is the flat index ``i * (n + 3) + j`` of the pixel's cell in the
    extended transition matrix (:func:`pair_bins`), for the accumulator.
    """
    v = np.asarray(values, dtype=np.int64)
    n = v.size
    bi = _masked_index(tiles["before"], class_index(tiles["before"], v, before_no_data), v)
    ai = _masked_index(tiles["after"], class_index(tiles["after"], v, after_no_data), v)
    pair = (bi * (n + EXTRA_ROWS) + ai).astype(np.uint16)
    return {"change": _codes_from_index(bi, ai, v, n, base), "pair": pair}


def _masked_index(block: np.ndarray, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`idx` with masked pixels (254, unless a legend class) moved to their own slot ``n + 2``."""
    if MASKED in values:
        return idx
    idx[np.asarray(block) == MASKED] = values.size + 2
    return idx


def extended_size(n_classes: int) -> int:
    """Rows of the extended matrix: legend classes, no-data, outside legend, masked."""
    return n_classes + EXTRA_ROWS


def pair_bins(n_classes: int) -> int:
    """Cells of the extended matrix (:func:`extended_size` squared)."""
    return extended_size(n_classes) ** 2


def transition_matrix(
    before: np.ndarray,
    after: np.ndarray,
    values: Sequence[int],
    *,
    before_no_data: float | int | None = None,
    after_no_data: float | int | None = None,
) -> np.ndarray:
    """Transition matrix of two in-memory class arrays (pixel counts, legend classes only).

    Returns
    -------
    numpy.ndarray
        int64 ``(n, n)``: ``m[i, j]`` pixels of ``values[i]`` before and ``values[j]`` after.
    """
    n = len(values)
    out = change_tile({"before": before, "after": after}, values=values, base=code_base(values),
                      before_no_data=before_no_data, after_no_data=after_no_data)
    counts = np.bincount(out["pair"].ravel(), minlength=pair_bins(n))
    k = extended_size(n)
    return counts.reshape(k, k)[:n, :n]


def not_compared(pixels: np.ndarray, n_classes: int) -> tuple[int, int, int]:
    """Pixels of an extended matrix left out of the comparison, and those compared.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(n+3, n+3)`` (or flat) extended matrix of pixel counts.
    n_classes : int
        Legend classes ``n``.

    Returns
    -------
    tuple of int
        ``(masked, no_data, compared)``: pixels masked on one date or both (and with data on
        both), pixels without data or outside the legend on one date, pixels of a legend class
        on both dates.

    Examples
    --------
    >>> m = np.zeros((5, 5), dtype=np.int64)
    >>> m[0, 0], m[1, 0], m[4, 1], m[4, 4], m[2, 4] = 6, 1, 2, 3, 4
    >>> not_compared(m, 2)
    (5, 4, 7)
    """
    k = extended_size(n_classes)
    px = np.asarray(pixels).reshape(k, k)
    n = n_classes
    compared = int(px[:n, :n].sum())
    masked = int(px[n + 2, :].sum() + px[:, n + 2].sum() - px[n + 2, n + 2])
    # a pixel without data on one date and masked on the other counts as no-data
    masked -= int(px[n:n + 2, n + 2].sum() + px[n + 2, n:n + 2].sum())
    return masked, int(px.sum()) - masked - compared, compared


@dataclass(frozen=True)
class Transition:
    """One cell of the transition matrix (``from_id``/``to_id`` None for no-data or outside legend)."""

    from_id: int | None
    from_name: str
    to_id: int | None
    to_name: str
    code: int | None
    pixels: int
    area_km2: float


def transitions(
    pixels: np.ndarray, area_km2: np.ndarray, classes: Sequence[ClassInfo], base: int
) -> list[Transition]:
    """The cells of an extended matrix as rows: every legend pair, then the non-empty no-data, outside-legend
    and masked cells.

    Parameters
    ----------
    pixels, area_km2 : numpy.ndarray
        ``(n+3, n+3)`` (or flat) extended matrices from :func:`snap_operators.grid.areas.counts_to_km2`.
    classes : sequence of ClassInfo
        The legend, ascending by value (length ``n``).
    base : int
        Change-code base.
    """
    n = len(classes)
    k = extended_size(n)
    pixels = np.asarray(pixels).reshape(k, k)
    area_km2 = np.asarray(area_km2, dtype=np.float64).reshape(k, k)
    labels = [(int(c.value), c.name) for c in classes] + [(None, NO_DATA_NAME), (None, OUTSIDE_LEGEND_NAME),
                                                          (None, MASKED_NAME)]
    rows = []
    for i, (fv, fname) in enumerate(labels):
        for j, (tv, tname) in enumerate(labels):
            legend_pair = i < n and j < n
            if not legend_pair and pixels[i, j] == 0:
                continue
            code = change_code(fv, tv, base) if legend_pair else None
            rows.append(Transition(fv, fname, tv, tname, code, int(pixels[i, j]), float(area_km2[i, j])))
    return rows


def gain_loss(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class change of a transition matrix over the pixels valid on both dates.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(n, n)`` pixels or km², rows = class before, columns = class after.

    Returns
    -------
    dict of str to numpy.ndarray
        ``(n,)`` each: ``before`` (row sums), ``after`` (column sums),
        ``unchanged`` (diagonal), ``gain`` (after - unchanged), ``loss``
        (before - unchanged), ``net`` (gain - loss = after - before) and
        ``swap`` (2 min(gain, loss): change that moved without altering the
        class's total, after Pontius et al. 2004).
    """
    m = np.asarray(matrix)
    before, after, same = m.sum(axis=1), m.sum(axis=0), np.diag(m)
    gain, loss = after - same, before - same
    return {"before": before, "after": after, "unchanged": same, "gain": gain, "loss": loss,
            "net": gain - loss, "swap": 2 * np.minimum(gain, loss)}


def transition_legend(classes: Sequence[ClassInfo], base: int) -> list[ClassInfo]:
    """Categories of the change band: "No change", then one per ordered pair of classes.

    Every transition has a colour of its own (:func:`transition_colors`):
    the hue of the class the pixels became, so a map coloured by category
    shows what replaced what, and a lightness that tells the class they were.

    >>> from snap_operators.core.legend import LAND_COVER
    >>> legend = transition_legend(LAND_COVER[:2], 10)
    >>> [(c.value, c.name) for c in legend]
    [(0, 'No change'), (12, 'Water -> Bare Soil'), (21, 'Bare Soil -> Water')]
    """
    colors = transition_colors(classes, base)
    out = [NO_CHANGE_INFO]
    for a in classes:
        for b in classes:
            if a.value == b.value:
                continue
            code = change_code(a.value, b.value, base)
            out.append(ClassInfo(code, f"{a.name}{TRANSITION_SEPARATOR}{b.name}", colors[code],
                                 f"{a.name} ({a.value}) before, {b.name} ({b.value}) after"))
    return sorted(out, key=lambda c: c.value)


def transition_colors(classes: Sequence[ClassInfo], base: int) -> dict[int, tuple[int, int, int]]:
    """A distinct, deterministic RGB colour per transition of `classes`: change code -> colour.

    A transition ``a -> b`` takes the hue and saturation of class ``b``'s colour
    and a lightness set by ``a``'s place in the legend, spread over
    :data:`TRANSITION_LIGHTNESS` from the first class to the last: all changes to
    water are blues, the darker the lower the class they came from. Where two
    transitions would still get the same colour (classes of similar colours,
    a grey class), the later one, in legend order of to-class then
    from-class, is moved to the nearest free lightness; no transition takes
    the colour of "No change".

    Examples
    --------
    >>> from snap_operators.core.legend import LAND_COVER
    >>> colors = transition_colors(LAND_COVER, 10)
    >>> len(colors), len(set(colors.values()))
    (20, 20)
    """
    low, high = TRANSITION_LIGHTNESS
    n = len(classes)
    used = {tuple(NO_CHANGE_INFO.color)}
    out: dict[int, tuple[int, int, int]] = {}
    for b in classes:
        hue, _, saturation = colorsys.rgb_to_hls(*(int(v) / 255.0 for v in b.color[:3]))
        for i, a in enumerate(classes):
            if a.value == b.value:
                continue
            lightness = low + (high - low) * (i / (n - 1) if n > 1 else 0.5)
            color = _free_color(hue, lightness, saturation, used)
            used.add(color)
            out[change_code(a.value, b.value, base)] = color
    return out


def _free_color(hue: float, lightness: float, saturation: float, used: set) -> tuple[int, int, int]:
    """The RGB colour of `hue`, `saturation` and the lightness nearest `lightness` that is not in `used`."""
    step = 1.0 / 255.0
    for k in range(1, 512):
        delta = (k // 2) * step * (1 if k % 2 else -1)
        light = min(1.0, max(0.0, lightness + delta))
        color = tuple(int(round(255 * v)) for v in colorsys.hls_to_rgb(hue, light, saturation))
        if color not in used:
            return color  # type: ignore[return-value]
    # Every lightness of this hue is taken (hundreds of classes of one colour): vary the hue.
    return _free_color((hue + 0.05) % 1.0, lightness, max(saturation, 0.5), used)


def base_of(dtype: np.dtype) -> int | None:
    """The change-code base of a change band of `dtype` (inverse of :func:`code_dtype`): 10, 100 or None."""
    dtype = np.dtype(dtype)
    return 10 if dtype == np.uint8 else 100 if dtype == np.uint16 else None


@dataclass(frozen=True)
class ChangeCoding:
    """How a change band codes transitions: what ``LabelMaskExport`` needs to name them.

    Attributes
    ----------
    base : int
        10 or 100 (:func:`code_base`).
    names : dict of int to str
        Class id -> class name of the legend compared.
    """

    base: int
    names: Mapping[int, str]

    def decode(self, code: int) -> tuple[int, int] | None:
        """``(from, to)`` class ids of change code `code`; None for :data:`NO_CHANGE`.

        >>> ChangeCoding(10, {}).decode(32), ChangeCoding(100, {}).decode(1240), ChangeCoding(10, {}).decode(0)
        ((3, 2), (12, 40), None)
        """
        if int(code) == NO_CHANGE:
            return None
        return divmod(int(code), self.base)  # type: ignore[return-value]

    def name(self, class_id: int) -> str:
        """Name of class `class_id`; ``class N`` when the legend does not know it."""
        return self.names.get(int(class_id), f"class {int(class_id)}")


def change_coding(product: Product, band: Band) -> ChangeCoding | None:
    """How `band` codes transitions when it is ``ChangeDetection``'s change band, else None.

    The change band is the band :data:`CHANGE_BAND` of a product of type
    :data:`CHANGE_PRODUCT_TYPE`, in the graph and read back from the
    GeoTIFF or BEAM-DIMAP ``Write`` made of it (both keep the product type,
    the band's dtype and its categories); its dtype gives the base
    (:func:`base_of`) and its categories, ``"<from> -> <to>"``, the class names
    (:func:`class_names`).

    Examples
    --------
    >>> import dask.array as da
    >>> from snap_operators.core.legend import LAND_COVER
    >>> classes = transition_legend(legend_classes(LAND_COVER, LAND_COVER), 10)
    >>> band = Band(CHANGE_BAND, da.zeros((2, 2), dtype="uint8"), classes=classes)
    >>> coding = change_coding(Product("c", CHANGE_PRODUCT_TYPE, {CHANGE_BAND: band}), band)
    >>> coding.base, coding.name(3)
    (10, 'Trees/Shrubbery vegetation')
    >>> change_coding(Product("c", "GeoTIFF", {CHANGE_BAND: band}), band) is None
    True
    """
    if product.product_type != CHANGE_PRODUCT_TYPE or band.name != CHANGE_BAND:
        return None
    base = base_of(band.dtype)
    if base is None:
        return None
    return ChangeCoding(base, class_names(band.classes or (), base))


def class_names(transitions: Sequence[ClassInfo], base: int) -> dict[int, str]:
    """Class id -> name, recovered from the categories of a change band.

    A category is named ``"<from> -> <to>"`` (:func:`transition_legend`);
    class names may themselves hold the separator, so each name is taken
    from a pair of opposite transitions, ``"A -> B"`` and ``"B -> A"``,
    whose split is unambiguous.

    >>> from snap_operators.core.legend import LAND_COVER
    >>> class_names(transition_legend(LAND_COVER[:2], 10), 10)
    {1: 'Water', 2: 'Bare Soil'}
    """
    by_code = {int(c.value): c.name for c in transitions}
    out: dict[int, str] = {}
    for code, name in sorted(by_code.items()):
        a, b = divmod(code, base)
        if a == b or (a in out and b in out) or b * base + a not in by_code:
            continue
        pair = _split_pair(name, by_code[b * base + a])
        if pair is not None:
            out.setdefault(a, pair[0])
            out.setdefault(b, pair[1])
    return dict(sorted(out.items()))


def _split_pair(forward: str, backward: str) -> tuple[str, str] | None:
    """``(A, B)`` with ``forward == "A -> B"`` and ``backward == "B -> A"``, or None."""
    sep = TRANSITION_SEPARATOR
    i = forward.find(sep)
    while i >= 0:
        a, b = forward[:i], forward[i + len(sep):]
        if backward == f"{b}{sep}{a}":
            return a, b
        i = forward.find(sep, i + 1)
    return None


def legend_classes(classes: Sequence[ClassInfo] | None, fallback: Sequence[ClassInfo]) -> list[ClassInfo]:
    """A band's classes without no-data (255) and masked (254), with Unclassified (0), ascending;
    `fallback` when None."""
    found = {int(c.value): c for c in (classes if classes else fallback) if int(c.value) not in (NO_DATA, MASKED)}
    found.setdefault(UNCLASSIFIED_INFO.value, UNCLASSIFIED_INFO)
    return [found[v] for v in sorted(found)]


def legend_differences(a: Sequence[ClassInfo], b: Sequence[ClassInfo]) -> list[str]:
    """How two legends differ (class ids and names; colours and descriptions are ignored).

    Unclassified (0), masked (254) and no-data (255) are left out: a classifier's
    map lists them (254 only when it was masked), a reference map often does not.

    >>> from snap_operators.core.legend import LAND_COVER
    >>> legend_differences(LAND_COVER, LAND_COVER[:4])
    ["class 5 'Alluvium/Clay Silts sediments/roof' only in the first"]
    """
    skip = {UNCLASSIFIED_INFO.value, MASKED, NO_DATA}
    na = {int(c.value): c.name for c in a if int(c.value) not in skip}
    nb = {int(c.value): c.name for c in b if int(c.value) not in skip}
    out = []
    for v in sorted(set(na) | set(nb)):
        if v not in nb:
            out.append(f"class {v} '{na[v]}' only in the first")
        elif v not in na:
            out.append(f"class {v} '{nb[v]}' only in the second")
        elif na[v].strip().casefold() != nb[v].strip().casefold():
            out.append(f"class {v} is '{na[v]}' vs '{nb[v]}'")
    return out


def find_class_band(product: Product, name: str | None = None, hint: str = "name the class band") -> Band:
    """The class band of `product`: `name`, else ``class_id``, else its only band with classes.

    A single-band integer product without classes (a plain land-cover
    raster) also qualifies. `hint` ends the message when no band qualifies
    (an operator names its parameter).

    Raises
    ------
    OperatorError
        No such band, no or several candidate bands, or a non-integer band.
    """
    if name:
        if name not in product.bands:
            raise OperatorError(f"product '{product.name}' has no class band '{name}'; "
                                f"bands: {product.bands_listed()}")
        band = product.bands[name]
    elif DEFAULT_CLASS_BAND in product.bands:
        band = product.bands[DEFAULT_CLASS_BAND]
    else:
        candidates = [b for b in product.bands.values() if b.classes]
        if not candidates and len(product.bands) == 1:
            candidates = list(product.bands.values())
        if len(candidates) != 1:
            what = "no band with classes" if not candidates else \
                f"several bands with classes ({', '.join(b.name for b in candidates)})"
            raise OperatorError(f"product '{product.name}' has no band '{DEFAULT_CLASS_BAND}' and {what}; {hint}")
        band = candidates[0]
    if band.dtype.kind == "f" and band.classes:
        return whole_classes(band)
    if band.dtype.kind not in "iu" or band.dtype.itemsize > 2:
        raise OperatorError(f"band '{band.name}' of '{product.name}' is {band.dtype}, not an integer class band "
                            "(uint8/int8/uint16/int16)")
    return band


def whole_classes(band: Band) -> Band:
    """A float band with a class legend as the uint8 class band it was written from.

    A GeoTIFF holds one sample type, so a class map written with a float band
    beside it (the Progressive Classifier's ``margin``) is float32, as SNAP's
    GeoTIFF writer makes it; read back, its no-data (255) is NaN. Here NaN
    becomes :data:`~snap_operators.core.legend.NO_DATA` again. A value that is
    not a whole class id 0..254 raises ``OperatorError`` when its chunk is
    computed: a float band with categories that are not class ids is refused,
    never truncated.

    Examples
    --------
    >>> import dask.array as da
    >>> from snap_operators.core.legend import LAND_COVER
    >>> b = Band("class_id", da.from_array(np.array([[1.0, np.nan], [5.0, 254.0]], np.float32)),
    ...          no_data=float("nan"), classes=list(LAND_COVER))
    >>> whole_classes(b).data.compute().tolist()
    [[1, 255], [5, 254]]
    """
    if not band.classes or max(int(c.value) for c in band.classes) >= NO_DATA:
        raise OperatorError(f"band '{band.name}' is {band.dtype}: a float band is read as classes only when its "
                            f"legend is 0..{NO_DATA - 1}")

    data = band.data.map_blocks(_whole_class_ids, band_name=band.name, dtype=np.uint8,
                                name=f"whole-classes-{band.data.name}")
    return dataclasses.replace(band, data=data, no_data=NO_DATA, stored=None)


def _whole_class_ids(block: np.ndarray, band_name: str) -> np.ndarray:
    ok = np.isnan(block) | ((block >= 0) & (block < NO_DATA) & (block == np.round(block)))
    if not ok.all():
        raise OperatorError(f"band '{band_name}' holds {block[~ok][0]:g}, not a class id (0..{NO_DATA - 1}): it is "
                            "not a class map")
    return np.where(np.isnan(block), NO_DATA, block).astype(np.uint8)
