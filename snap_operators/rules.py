"""Rule sets of the Progressive Classifier: schema, loading, validation, thresholds.

A rule set is an ordered list of *stages*; each stage claims one class from
the pixels that no earlier stage claimed. A stage matches a pixel when all of
its ``conditions`` hold and, if it has ``any`` groups, all conditions of at
least one group hold. A condition is a half-open interval on one band,
``min <= value < max`` (either bound may be omitted). The file format is
documented in ``docs/rules.md``; rule files are untrusted input and are read
with ``yaml.safe_load`` only.

Each bound is a number (*fixed*), ``{otsu: {...}}`` (Otsu's threshold over the
pixels still unclassified at that stage, scene-wide) or ``{samples:
{percentile: p}}`` (a percentile of the band inside the analyst's sample
polygons/points of the stage's class). :func:`resolve_rules` turns the last
two into numbers for one scene.

Example
-------
>>> from snap_operators.rules import load_rules
>>> rules = load_rules("mosul-5class")
>>> [s.class_id for s in rules.stages]
[1, 3, 4, 5, 2]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .classes import NO_DATA, UNCLASSIFIED
from .errors import ParameterError
from .indices import INDICES
from .product import ClassInfo

log = logging.getLogger(__name__)

#: Schema identifier every rule file must carry (``schema:``).
SCHEMA = "snap-pc/rules/1"
PRESETS_DIR = Path(__file__).resolve().parent / "presets"
#: Preset names, the default first.
PRESETS = ("mosul-5class", "coastal-4class", "mosul-5class-s1s2")
DEFAULT_PRESET = PRESETS[0]

#: Guards against hostile rule files (YAML aliases can multiply small files).
MAX_FILE_BYTES = 1 << 20
MAX_STAGES = 64
MAX_CONDITIONS = 32
MAX_GROUPS = 16

#: Histogram bins of Otsu bounds: 256 bins over -1..1 resolve 0.008, finer
#: than the noise of Sentinel-2 normalized differences.
OTSU_BINS = 256

#: Source band names a condition may use directly, besides the indices.
_SOURCE_BAND = re.compile(
    r"^(B(0?[1-9]|1[0-2]|8A)"  # Sentinel-2 bands
    r"|(Sigma0|Gamma0|Beta0)_(VV|VH|HH|HV)(_db)?"  # Sentinel-1 backscatter
    r"|(VV|VH|HH|HV)(_db)?)$"
)


class RulesError(ParameterError):
    """A rule set is invalid (one line, naming the file and the offending item)."""


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Bound:
    """One side of a condition's interval.

    Attributes
    ----------
    mode : {'fixed', 'otsu', 'samples'}
    value : float or None
        The threshold; None until an ``otsu``/``samples`` bound is resolved.
        Resolved values are rounded to float32 so that float32 and float64
        comparisons of float32 pixels agree exactly.
    options : dict
        Mode options (``bins``, ``range``, ``clip``, ``default`` for Otsu;
        ``percentile``, ``class`` for samples).
    """

    mode: str
    value: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def resolved(self) -> bool:
        return self.value is not None

    def to_yaml(self) -> Any:
        if self.mode == "fixed":
            return self.value
        return {self.mode: dict(self.options)}


@dataclass(frozen=True)
class Condition:
    """``min <= band < max`` on one band (an index or a source band)."""

    band: str
    min: Bound | None = None
    max: Bound | None = None

    def bounds(self) -> list[tuple[str, Bound]]:
        return [(k, b) for k, b in (("min", self.min), ("max", self.max)) if b is not None]

    def describe(self) -> str:
        lo = "" if self.min is None else (f"{self.min.value:g} <= " if self.min.resolved else f"{self.min.mode} <= ")
        hi = "" if self.max is None else (f" < {self.max.value:g}" if self.max.resolved else f" < {self.max.mode}")
        return f"{lo}{self.band}{hi}"


@dataclass(frozen=True)
class Stage:
    """One step of the progression: claims `class_id` where its conditions hold."""

    name: str
    class_id: int
    conditions: tuple[Condition, ...] = ()
    any: tuple[tuple[Condition, ...], ...] = ()

    def all_conditions(self) -> list[Condition]:
        return list(self.conditions) + [c for g in self.any for c in g]

    def describe(self) -> str:
        parts = [c.describe() for c in self.conditions]
        if self.any:
            alts = [" and ".join(c.describe() for c in g) for g in self.any]
            parts.append("(" + " or ".join(f"({a})" if len(g) > 1 else a for a, g in zip(alts, self.any)) + ")")
        return " and ".join(parts)


@dataclass(frozen=True)
class RuleSet:
    """A validated rule set.

    Attributes
    ----------
    name, description : str
    classes : tuple of ClassInfo
        The classes the stages may claim (ids 1..254).
    stages : tuple of Stage
        In order: a pixel claimed by an earlier stage is never reconsidered.
    index_parameters : dict
        Parameters of the spectral indices the thresholds assume (e.g.
        ``saviL``, as SpectralIndices names it); compared with the source
        product's metadata.
    source : str
        Preset name or file path (for messages).
    """

    name: str
    description: str
    classes: tuple[ClassInfo, ...]
    stages: tuple[Stage, ...]
    index_parameters: Mapping[str, float] = field(default_factory=dict, hash=False)
    source: str = ""

    @property
    def bands(self) -> list[str]:
        """Bands the stages read, in order of first use."""
        seen: dict[str, None] = {}
        for s in self.stages:
            for c in s.all_conditions():
                seen.setdefault(c.band)
        return list(seen)

    @property
    def required_bands(self) -> list[str]:
        """Bands of the first stage's ANDed conditions: NaN there means no-data."""
        if not self.stages:
            return []
        return list(dict.fromkeys(c.band for c in self.stages[0].conditions))

    @property
    def is_resolved(self) -> bool:
        return all(b.resolved for s in self.stages for c in s.all_conditions() for _, b in c.bounds())

    @property
    def needs_samples(self) -> bool:
        return any(b.mode == "samples" for s in self.stages for c in s.all_conditions() for _, b in c.bounds())

    def class_info(self, class_id: int) -> ClassInfo:
        for c in self.classes:
            if c.value == class_id:
                return c
        raise KeyError(class_id)

    def replace(self, **changes: Any) -> "RuleSet":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The rule set in the file schema (resolved bounds as numbers)."""

        def cond(c: Condition) -> dict[str, Any]:
            d: dict[str, Any] = {"index" if is_known_band(c.band) else "band": c.band}
            for k, b in c.bounds():
                d[k] = b.value if b.resolved else b.to_yaml()
            return d

        out: dict[str, Any] = {"schema": SCHEMA, "name": self.name, "description": self.description}
        out["classes"] = []
        for c in self.classes:
            d = {"id": c.value, "name": c.name, "color": "#{:02x}{:02x}{:02x}".format(*c.color)}
            if c.description:
                d["description"] = c.description
            out["classes"].append(d)
        if self.index_parameters:
            out["parameters"] = dict(self.index_parameters)
        stages = []
        for s in self.stages:
            d: dict[str, Any] = {"name": s.name, "class": s.class_id, "conditions": [cond(c) for c in s.conditions]}
            if s.any:
                d["any"] = [[cond(c) for c in g] for g in s.any]
            stages.append(d)
        out["stages"] = stages
        return out


# --------------------------------------------------------------------------
# known bands
# --------------------------------------------------------------------------
def known_indices() -> list[str]:
    """Names of the indices :mod:`snap_operators.indices` computes."""
    return list(INDICES)


def index_range(name: str) -> tuple[float, float] | None:
    """A priori value range of index `name` (normalized differences: -1..1), or None."""
    spec = INDICES.get(name)
    if spec is None:
        return None
    lo, hi = (float(v) for v in spec.valid_range)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def is_known_band(name: str) -> bool:
    """True for an index name or a Sentinel-2/-1 source band name (B8, Sigma0_VV_db)."""
    return name in known_indices() or bool(_SOURCE_BAND.match(name))


# --------------------------------------------------------------------------
# parsing and validation
# --------------------------------------------------------------------------
class _Ctx:
    """Builds one-line error messages that say where in the file the problem is."""

    def __init__(self, source: str):
        self.source = source

    def error(self, where: str, message: str) -> RulesError:
        loc = f"{where}: " if where else ""
        return RulesError(f"rules {self.source}: {loc}{message}")


def _number(ctx: _Ctx, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ctx.error(where, f"expected a number, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ctx.error(where, "threshold is NaN")
    return v


def _mapping(ctx: _Ctx, where: str, value: Any, allowed: Sequence[str], required: Sequence[str] = ()) -> dict:
    if not isinstance(value, dict):
        raise ctx.error(where, f"expected a mapping, got {type(value).__name__}")
    unknown = [str(k) for k in value if k not in allowed]
    if unknown:
        raise ctx.error(where, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    for k in required:
        if k not in value:
            raise ctx.error(where, f"missing '{k}'")
    return value


def _pair(ctx: _Ctx, where: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ctx.error(where, f"expected [low, high], got {value!r}")
    lo, hi = _number(ctx, where, value[0]), _number(ctx, where, value[1])
    if not lo < hi:
        raise ctx.error(where, f"low {lo:g} must be below high {hi:g}")
    return lo, hi


def _parse_bound(ctx: _Ctx, where: str, value: Any) -> Bound:
    if not isinstance(value, dict):
        return Bound("fixed", _f32(_number(ctx, where, value)))
    if len(value) != 1:
        raise ctx.error(where, "a bound is a number, {otsu: {...}} or {samples: {percentile: p}}")
    mode, opts = next(iter(value.items()))
    if mode == "otsu":
        opts = _mapping(ctx, f"{where}.otsu", opts if opts is not None else {}, ("bins", "range", "clip", "default"))
        out: dict[str, Any] = {}
        if "bins" in opts:
            bins = opts["bins"]
            if isinstance(bins, bool) or not isinstance(bins, int) or not 16 <= bins <= 65536:
                raise ctx.error(f"{where}.otsu.bins", f"expected an integer in 16..65536, got {bins!r}")
            out["bins"] = bins
        for k in ("range", "clip"):
            if k in opts:
                out[k] = list(_pair(ctx, f"{where}.otsu.{k}", opts[k]))
        if "default" in opts:
            out["default"] = _number(ctx, f"{where}.otsu.default", opts["default"])
        return Bound("otsu", None, out)
    if mode == "samples":
        opts = _mapping(ctx, f"{where}.samples", opts, ("percentile", "class"), ("percentile",))
        p = _number(ctx, f"{where}.samples.percentile", opts["percentile"])
        if not 0.0 <= p <= 100.0:
            raise ctx.error(f"{where}.samples.percentile", f"{p:g} is outside 0..100")
        out = {"percentile": p}
        if "class" in opts:
            out["class"] = _class_id(ctx, f"{where}.samples.class", opts["class"])
        return Bound("samples", None, out)
    raise ctx.error(where, f"unknown threshold mode '{mode}'; use a number, otsu or samples")


def _class_id(ctx: _Ctx, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error(where, f"class id must be an integer, got {value!r}")
    if not 1 <= value <= 254 or value in (UNCLASSIFIED, NO_DATA):
        raise ctx.error(where, f"class id {value} is outside 1..254 (0 = unclassified, 255 = no-data)")
    return value


def _parse_condition(ctx: _Ctx, where: str, value: Any) -> Condition:
    d = _mapping(ctx, where, value, ("index", "band", "min", "max"))
    if ("index" in d) == ("band" in d):
        raise ctx.error(where, "a condition needs exactly one of 'index' or 'band'")
    if "index" in d:
        name = d["index"]
        if not isinstance(name, str) or not is_known_band(name):
            known = ", ".join(known_indices()) or "(indices module missing)"
            raise ctx.error(
                where, f"unknown index {name!r}; known indices: {known} (or a source band such as B8, Sigma0_VV_db; any other band with 'band:')"
            )
    else:
        name = d["band"]
        if not isinstance(name, str) or not name.strip():
            raise ctx.error(where, f"band must be a band name, got {name!r}")
    lo = _parse_bound(ctx, f"{where}.min", d["min"]) if "min" in d else None
    hi = _parse_bound(ctx, f"{where}.max", d["max"]) if "max" in d else None
    if lo is None and hi is None:
        raise ctx.error(where, f"condition on {name} needs 'min' and/or 'max'")
    if lo is not None and hi is not None and lo.resolved and hi.resolved and lo.value > hi.value:
        raise ctx.error(where, f"min {lo.value:g} > max {hi.value:g} for {name}")
    return Condition(name, lo, hi)


def _parse_conditions(ctx: _Ctx, where: str, value: Any) -> tuple[Condition, ...]:
    if not isinstance(value, list):
        raise ctx.error(where, "expected a list of conditions")
    if len(value) > MAX_CONDITIONS:
        raise ctx.error(where, f"more than {MAX_CONDITIONS} conditions")
    return tuple(_parse_condition(ctx, f"{where}[{i}]", c) for i, c in enumerate(value))


def _parse_color(ctx: _Ctx, where: str, value: Any) -> tuple[int, int, int]:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    if (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        return tuple(value)  # type: ignore[return-value]
    raise ctx.error(where, f"color must be '#rrggbb' or [r, g, b] (0-255), got {value!r}")


def parse_rules(data: Any, source: str = "<rules>") -> RuleSet:
    """Validate a decoded rule file (the YAML/JSON mapping) into a :class:`RuleSet`.

    Raises
    ------
    RulesError
        One line naming `source` and the offending item.
    """
    ctx = _Ctx(source)
    d = _mapping(ctx, "", data, ("schema", "name", "description", "classes", "parameters", "stages"), ("schema",))
    if d["schema"] != SCHEMA:
        raise ctx.error("schema", f"unsupported schema {d['schema']!r}; this version reads {SCHEMA!r}")
    for k in ("name", "classes", "stages"):
        if k not in d:
            raise ctx.error("", f"missing '{k}'")
    name = d["name"]
    if not isinstance(name, str) or not name.strip():
        raise ctx.error("name", "must be a non-empty string")
    description = d.get("description") or ""
    if not isinstance(description, str):
        raise ctx.error("description", "must be a string")

    if not isinstance(d["classes"], list) or not d["classes"]:
        raise ctx.error("classes", "expected a non-empty list")
    classes: list[ClassInfo] = []
    for i, c in enumerate(d["classes"]):
        where = f"classes[{i}]"
        c = _mapping(ctx, where, c, ("id", "name", "color", "description"), ("id", "name", "color"))
        cid = _class_id(ctx, f"{where}.id", c["id"])
        if any(x.value == cid for x in classes):
            raise ctx.error(f"{where}.id", f"duplicate class id {cid}")
        if not isinstance(c["name"], str) or not c["name"].strip():
            raise ctx.error(f"{where}.name", "must be a non-empty string")
        classes.append(ClassInfo(cid, c["name"], _parse_color(ctx, f"{where}.color", c["color"]), str(c.get("description") or "")))

    params = d.get("parameters") or {}
    if not isinstance(params, dict):
        raise ctx.error("parameters", "expected a mapping of index parameter -> number")
    index_parameters = {str(k): _number(ctx, f"parameters.{k}", v) for k, v in params.items()}

    if not isinstance(d["stages"], list) or not d["stages"]:
        raise ctx.error("stages", "expected a non-empty list")
    if len(d["stages"]) > MAX_STAGES:
        raise ctx.error("stages", f"more than {MAX_STAGES} stages")
    ids = {c.value for c in classes}
    stages: list[Stage] = []
    for i, s in enumerate(d["stages"]):
        where = f"stages[{i}]"
        s = _mapping(ctx, where, s, ("name", "class", "conditions", "any"), ("class",))
        sname = s.get("name")
        if sname is not None and not isinstance(sname, str):
            raise ctx.error(f"{where}.name", "must be a string")
        if sname:
            where = f"stage '{sname}'"
        else:
            sname = f"stage {i + 1}"
        cid = _class_id(ctx, f"{where}.class", s["class"])
        if cid not in ids:
            raise ctx.error(f"{where}.class", f"unknown class {cid}; classes: {', '.join(str(x) for x in sorted(ids))}")
        conditions = _parse_conditions(ctx, f"{where}.conditions", s.get("conditions", []))
        groups: list[tuple[Condition, ...]] = []
        if "any" in s:
            if not isinstance(s["any"], list) or not s["any"]:
                raise ctx.error(f"{where}.any", "expected a non-empty list of condition lists")
            if len(s["any"]) > MAX_GROUPS:
                raise ctx.error(f"{where}.any", f"more than {MAX_GROUPS} groups")
            for j, g in enumerate(s["any"]):
                grp = _parse_conditions(ctx, f"{where}.any[{j}]", g)
                if not grp:
                    raise ctx.error(f"{where}.any[{j}]", "empty group")
                groups.append(grp)
        if not conditions and not groups:
            raise ctx.error(where, "a stage needs 'conditions' and/or 'any'")
        for c in list(conditions) + [c for g in groups for c in g]:
            for _, b in c.bounds():
                if b.mode == "samples" and b.options.get("class", cid) not in ids:
                    raise ctx.error(where, f"samples class {b.options['class']} is not in classes")
        stages.append(Stage(sname, cid, conditions, tuple(groups)))
    return RuleSet(name.strip(), description.strip(), tuple(classes), tuple(stages), index_parameters, source)


def _yaml_error_line(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem


def read_rule_text(text: str, source: str = "<rules>", fmt: str = "yaml") -> RuleSet:
    """Parse rule-file `text` (``fmt`` ``'yaml'`` or ``'json'``) and validate it."""
    ctx = _Ctx(source)
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ctx.error("", f"bad JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ctx.error("", f"bad YAML at {_yaml_error_line(exc)}") from None
    return parse_rules(data, source)


def load_rules(rules: str | Path | None = None) -> RuleSet:
    """A rule set from a preset name or a YAML/JSON file path.

    Parameters
    ----------
    rules : str or path, optional
        ``mosul-5class`` (default), ``coastal-4class``, ``mosul-5class-s1s2``
        or the path of a rule file (``.yaml``, ``.yml`` or ``.json``).

    Raises
    ------
    RulesError
        When the name is neither a preset nor a readable file, or the file is
        invalid (one line, with the YAML line number for syntax errors).
    """
    name = str(rules).strip() if rules is not None and str(rules).strip() else DEFAULT_PRESET
    if name in PRESETS:
        path, source = PRESETS_DIR / f"{name}.yaml", name
    else:
        path, source = Path(name).expanduser(), name
        if not path.is_file():
            raise RulesError(
                f"rules '{name}' is neither a preset ({', '.join(PRESETS)}) nor an existing file"
            )
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RulesError(f"rules {source}: file is {size} bytes; rule files are limited to {MAX_FILE_BYTES}")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise RulesError(f"rules {source}: not a UTF-8 text file") from None
    except OSError as exc:
        raise RulesError(f"rules {source}: cannot read ({exc.strerror or exc})") from None
    fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    return read_rule_text(text, source, fmt)


def check_samples(rules: RuleSet, samples_file: str | Path | None) -> None:
    """Raise when `rules` has ``samples`` bounds but no samples file is given."""
    if rules.needs_samples and not samples_file:
        raise RulesError(f"rules {rules.source or rules.name}: samples thresholds need a samples file (samplesFile)")


def check_index_parameters(rules: RuleSet, metadata_values: Mapping[str, float]) -> list[str]:
    """Messages for index parameters that differ from what produced the indices.

    `metadata_values` maps parameter name -> value as recorded by the
    SpectralIndices operator; missing names are not compared.
    """
    out = []
    for k, v in rules.index_parameters.items():
        if k in metadata_values and not math.isclose(float(metadata_values[k]), v, rel_tol=1e-6, abs_tol=1e-9):
            out.append(f"rule set '{rules.name}' assumes {k} = {v:g} but the indices were computed with {k} = {metadata_values[k]}")
    return out


# --------------------------------------------------------------------------
# threshold resolution
# --------------------------------------------------------------------------
def _f32(value: float) -> float:
    """`value` rounded to the nearest float32 (exact in float64 too); beyond
    the float32 range it becomes +-inf, which compares the same on float32 pixels."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def otsu_threshold(counts: np.ndarray, edges: np.ndarray) -> float | None:
    """Otsu's threshold of a histogram.

    Parameters
    ----------
    counts : numpy.ndarray
        ``(bins,)`` pixel counts.
    edges : numpy.ndarray
        ``(bins + 1,)`` bin edges.

    Returns
    -------
    float or None
        The edge that maximizes the between-class variance (pixels below it
        form one class, pixels at or above it the other); None when fewer than
        two bins hold pixels.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if np.count_nonzero(counts) < 2:
        return None
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts)[:-1]
    total = counts.sum()
    w1 = total - w0
    s0 = np.cumsum(counts * centers)[:-1]
    m0 = np.divide(s0, w0, out=np.zeros_like(s0), where=w0 > 0)
    m1 = np.divide(s0[-1] + counts[-1] * centers[-1] - s0, w1, out=np.zeros_like(s0), where=w1 > 0)
    between = w0 * w1 * (m0 - m1) ** 2
    k = int(np.argmax(between))
    # Ties (a plateau of empty bins between modes): take the middle of it.
    best = np.flatnonzero(between >= between[k] * (1 - 1e-12))
    k_mid = (best[0] + best[-1]) / 2.0
    lo_edge, hi_edge = edges[int(math.floor(k_mid)) + 1], edges[int(math.ceil(k_mid)) + 1]
    return float(0.5 * (lo_edge + hi_edge))


@dataclass
class SampleSet:
    """Sample pixels of each class on the image grid, held per chunk.

    Attributes
    ----------
    blocks : dict
        ``(i, j)`` chunk index -> uint8 label window (0 outside samples) for
        the chunks that hold samples; other chunks are never read.
    chunks : tuple
        Dask chunking of the image grid the labels match.
    counts : dict
        Class id -> number of sample pixels.
    """

    blocks: dict[tuple[int, int], np.ndarray]
    chunks: tuple[tuple[int, ...], tuple[int, ...]]
    counts: dict[int, int]


def read_samples(
    path: str | Path,
    class_field: str,
    crs: Any,
    transform: Any,
    chunks: tuple[tuple[int, ...], tuple[int, ...]],
    class_ids: Sequence[int],
) -> SampleSet:
    """Read sample polygons/points from a vector file and rasterize them per chunk.

    Geometries are reprojected from the file's CRS to `crs`; pixels whose
    centre falls in a polygon (or that hold a point) are samples of the
    feature's `class_field` value; where samples overlap, the later feature
    in the file wins. The image grid is `transform` with Dask `chunks`;
    chunks without samples are skipped.

    Raises
    ------
    RulesError
        Unreadable file, missing class field, class values not in `class_ids`
        or no sample inside the image.
    """
    import fiona
    import fiona.errors
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom
    from rasterio.windows import Window, transform as window_transform
    from shapely.geometry import box, shape as to_shape

    where = f"samplesFile {path}"
    if crs is None or transform is None:
        raise RulesError(f"{where}: the image has no map geocoding, so samples cannot be placed on it")
    try:
        with fiona.open(str(path)) as src:
            fields = list(src.schema.get("properties", {}))
            if class_field not in fields:
                raise RulesError(f"{where}: no attribute '{class_field}' (samplesClassField); attributes: {', '.join(fields) or '(none)'}")
            src_crs = src.crs_wkt or None
            if not src_crs:
                raise RulesError(f"{where}: the file has no CRS")
            features = []
            for feat in src:
                if feat.geometry is None:
                    continue
                value = feat.properties[class_field]
                try:
                    cid = int(value)
                    if cid != value and str(cid) != str(value).strip():
                        raise ValueError
                except (TypeError, ValueError):
                    raise RulesError(f"{where}: {class_field} = {value!r} is not a class id") from None
                if cid not in class_ids:
                    raise RulesError(f"{where}: {class_field} = {cid} is not a class of the rule set ({', '.join(map(str, class_ids))})")
                geom = transform_geom(src_crs, crs, feat.geometry.__geo_interface__ if hasattr(feat.geometry, "__geo_interface__") else feat.geometry)
                features.append((to_shape(geom), cid))
    except RulesError:
        raise
    except (fiona.errors.FionaError, OSError, ValueError) as exc:
        raise RulesError(f"{where}: cannot read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None

    from shapely import STRtree

    tree = STRtree([g for g, _ in features])
    blocks: dict[tuple[int, int], np.ndarray] = {}
    counts: dict[int, int] = {}
    y0 = 0
    for i, h in enumerate(chunks[0]):
        x0 = 0
        for j, w in enumerate(chunks[1]):
            win = Window(x0, y0, w, h)
            wt = window_transform(win, transform)
            frame = box(*_window_bounds(wt, h, w))
            shapes = [features[k] for k in sorted(tree.query(frame, predicate="intersects"))]
            if shapes:
                labels = rasterize(shapes, out_shape=(h, w), transform=wt, fill=0, dtype="uint8")
                if labels.any():
                    blocks[(i, j)] = labels
                    for cid, n in zip(*np.unique(labels[labels > 0], return_counts=True)):
                        counts[int(cid)] = counts.get(int(cid), 0) + int(n)
            x0 += w
        y0 += h
    if not counts:
        raise RulesError(f"{where}: no sample falls inside the image")
    return SampleSet(blocks, chunks, counts)


def _window_bounds(t: Any, h: int, w: int) -> tuple[float, float, float, float]:
    xs = [t.c, t.c + t.a * w + t.b * h, t.c + t.a * w, t.c + t.b * h]
    ys = [t.f, t.f + t.d * w + t.e * h, t.f + t.d * w, t.f + t.e * h]
    return min(xs), min(ys), max(xs), max(ys)


def resolve_rules(
    rules: RuleSet,
    bands: Mapping[str, Any],
    *,
    samples: SampleSet | None = None,
    subsampling: int = 4,
) -> RuleSet:
    """Turn every ``otsu``/``samples`` bound of `rules` into a number for one scene.

    Stage by stage: the Otsu histogram of a stage is taken over the pixels
    still unclassified by the (already resolved) earlier stages and not
    no-data, on a read decimated by `subsampling` in both directions (one
    Dask reduction per stage that needs it). Samples percentiles use every
    sample pixel of the class (samples are usually few; no decimation).

    Parameters
    ----------
    rules : RuleSet
    bands : dict of str to dask.array.Array
        The bands the rules read, all on one grid.
    samples : SampleSet, optional
        Needed when the rules have ``samples`` bounds.
    subsampling : int
        Decimation step for Otsu histograms (1 = every pixel).

    Returns
    -------
    RuleSet
        A copy with all bounds fixed (float32-rounded numbers).
    """
    import dask
    import dask.array as da

    if rules.is_resolved:
        return rules
    step = max(1, int(subsampling))
    arrays = {n: da.asarray(bands[n]) for n in rules.bands}
    small = {n: a[::step, ::step] for n, a in arrays.items()}
    stages = list(rules.stages)
    for k, stage in enumerate(stages):
        pending = [(c, side, b) for c in stage.all_conditions() for side, b in c.bounds() if not b.resolved]
        if not pending:
            continue
        values: dict[tuple[int, str], float] = {}
        otsu = [(c, side, b) for c, side, b in pending if b.mode == "otsu"]
        if otsu:
            values.update(_otsu_values(rules, tuple(stages[:k]), otsu, small, dask))
        for c, side, b in pending:
            if b.mode == "samples":
                cid = b.options.get("class", stage.class_id)
                values[(id(c), side)] = _samples_value(c.band, cid, b.options["percentile"], arrays[c.band], samples, rules)
        stages[k] = _with_values(stage, values)
        for c in stages[k].all_conditions():
            if c.min is not None and c.max is not None and c.min.value > c.max.value:
                log.warning("%s: stage '%s': resolved min %g > max %g for %s; the condition never holds",
                            rules.name, stage.name, c.min.value, c.max.value, c.band)
        log.debug("%s: stage %d '%s' resolved: %s", rules.name, k + 1, stage.name, stages[k].describe())
    return rules.replace(stages=tuple(stages))


def _with_values(stage: Stage, values: Mapping[tuple[int, str], float]) -> Stage:
    def fix(c: Condition) -> Condition:
        changes = {}
        for side, b in c.bounds():
            if not b.resolved:
                changes[side] = dataclasses.replace(b, value=_f32(values[(id(c), side)]))
        return dataclasses.replace(c, **changes)

    return dataclasses.replace(
        stage,
        conditions=tuple(fix(c) for c in stage.conditions),
        any=tuple(tuple(fix(c) for c in g) for g in stage.any),
    )


def _otsu_values(rules: RuleSet, done: tuple[Stage, ...], otsu, small: Mapping[str, Any], dask) -> dict[tuple[int, str], float]:
    """Otsu thresholds of one stage's bounds over the pixels `done` (the resolved
    earlier stages) leave unclassified, no-data excluded."""
    from .classify import classify_numpy, nodata_mask

    names = list(small)
    # Ranges not known a priori need a min/max pass first.
    ranges: dict[str, tuple[float, float]] = {}
    need_range = []
    for c, side, b in otsu:
        r = b.options.get("range") or index_range(c.band)
        if r is not None:
            ranges[c.band] = (float(r[0]), float(r[1]))
        elif c.band not in need_range:
            need_range.append(c.band)

    def unclassified(blocks: Sequence[np.ndarray]) -> np.ndarray:
        tiles = dict(zip(names, blocks))
        free = ~nodata_mask(tiles, rules)  # the whole rule set defines no-data
        if done:
            # Earlier stages see only their own bands; where those are all NaN
            # they say 255, yet they cannot claim such pixels either.
            cls, _ = classify_numpy(tiles, rules.replace(stages=done))
            free &= (cls == UNCLASSIFIED) | (cls == NO_DATA)
        return free

    blocks = _block_lists(small, names)
    if need_range:
        def minmax(*blk):
            m = unclassified(blk)
            tiles = dict(zip(names, blk))
            out = {}
            for n in need_range:
                v = tiles[n][m]
                v = v[np.isfinite(v)]
                out[n] = (float(v.min()), float(v.max())) if v.size else None
            return out

        parts = dask.compute(*[dask.delayed(minmax)(*blk) for blk in blocks])
        for n in need_range:
            got = [p[n] for p in parts if p[n] is not None]
            ranges[n] = (min(g[0] for g in got), max(g[1] for g in got)) if got else (0.0, 1.0)
            if ranges[n][0] == ranges[n][1]:
                ranges[n] = (ranges[n][0] - 0.5, ranges[n][1] + 0.5)

    specs = [(c.band, int(b.options.get("bins", OTSU_BINS)), ranges[c.band]) for c, side, b in otsu]

    def hist(*blk):
        m = unclassified(blk)
        tiles = dict(zip(names, blk))
        return [np.histogram(tiles[n][m], bins=bins, range=rng)[0] for n, bins, rng in specs]

    parts = dask.compute(*[dask.delayed(hist)(*blk) for blk in blocks])
    out: dict[tuple[int, str], float] = {}
    for idx, ((c, side, b), (n, bins, rng)) in enumerate(zip(otsu, specs)):
        counts = np.sum([p[idx] for p in parts], axis=0) if parts else np.zeros(bins)
        edges = np.linspace(rng[0], rng[1], bins + 1)
        t = otsu_threshold(counts, edges)
        if t is None:
            t = b.options.get("default", math.nan)
            log.warning("otsu threshold of %s: fewer than two distinct values among the unclassified pixels; using %s", n, t)
        clip = b.options.get("clip")
        if clip is not None and not math.isnan(t):
            t = min(max(t, clip[0]), clip[1])
        out[(id(c), side)] = t
    return out


def _block_lists(arrays: Mapping[str, Any], names: Sequence[str]) -> list[list[Any]]:
    first = arrays[names[0]]
    nby, nbx = len(first.chunks[0]), len(first.chunks[1])
    aligned = [arrays[n].rechunk(first.chunks) for n in names]
    return [[a.blocks[i, j] for a in aligned] for i in range(nby) for j in range(nbx)]


def _samples_value(band: str, class_id: int, percentile: float, array: Any, samples: SampleSet | None, rules: RuleSet) -> float:
    import dask

    if samples is None:
        raise RulesError(f"rules {rules.source or rules.name}: samples thresholds need a samples file (samplesFile)")
    if class_id not in samples.counts:
        name = rules.class_info(class_id).name
        raise RulesError(f"samplesFile: no samples of class {class_id} ({name}) inside the image")
    arr = array.rechunk(samples.chunks)

    def pick(block, labels):
        v = block[labels == class_id]
        return v[~np.isnan(v)] if np.issubdtype(v.dtype, np.floating) else v

    parts = dask.compute(*[dask.delayed(pick)(arr.blocks[i, j], lab) for (i, j), lab in samples.blocks.items()])
    values = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]) if parts else np.empty(0)
    if values.size == 0:
        raise RulesError(f"samplesFile: the samples of class {class_id} hold no valid {band} value")
    return float(np.percentile(values, percentile))


def thresholds_metadata(rules: RuleSet):
    """A ``ProgressiveClassifier`` MetadataElement with the resolved thresholds per stage."""
    from .product import MetadataElement

    root = MetadataElement(
        "ProgressiveClassifier",
        {"rules": rules.name, "source": rules.source, "schema": SCHEMA, "stages": len(rules.stages)},
    )
    for k, s in enumerate(rules.stages, start=1):
        el = MetadataElement(f"stage_{k}", {"name": s.name, "class_id": s.class_id,
                                            "class_name": rules.class_info(s.class_id).name, "expression": s.describe()})
        root.elements.append(el)
        groups = [("all", s.conditions)] + [(f"any_{g + 1}", grp) for g, grp in enumerate(s.any)]
        for gname, conds in groups:
            for c in conds:
                attrs: dict[str, Any] = {"group": gname, "band": c.band}
                for side, b in c.bounds():
                    attrs[side] = b.value
                    attrs[f"{side}_mode"] = b.mode
                el.add_element("condition", **attrs)
    return root
