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
>>> from snap_operators.science.rules import load_rules
>>> rules = load_rules("mosul-5class")
>>> [s.class_id for s in rules.stages]
[1, 4, 4, 3, 2, 5]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..core.errors import ParameterError
from ..core.legend import MASKED
from ..core.limits import (
    MAX_CONDITIONS,
    MAX_GROUPS,
    MAX_RULE_CONDITIONS,
    MAX_RULE_DEPTH,
    MAX_RULE_FILE_BYTES,
    MAX_RULE_NODES,
    MAX_STAGES,
)
from ..core.product import ClassInfo
from .indices import INDICES
from .thresholds import METHODS as THRESHOLD_METHODS

log = logging.getLogger(__name__)

#: Schema identifier every rule file must carry (``schema:``).
SCHEMA = "snap-pc/rules/1"
PRESETS_DIR = Path(__file__).resolve().parent / "presets"
#: Preset names, the default first.
PRESETS = ("mosul-5class", "coastal-4class", "mosul-5class-s1s2")
DEFAULT_PRESET = PRESETS[0]

# Guards against hostile rule files: values and reasons in snap_operators/core/limits.py.
MAX_FILE_BYTES = MAX_RULE_FILE_BYTES

#: Histogram bins of adaptive bounds: 256 bins over -1..1 resolve 0.008,
#: finer than the noise of Sentinel-2 normalized differences.
OTSU_BINS = 256
#: What an adaptive bound does where the histogram has one mode: take its
#: ``default``, or (``away``) the end of its ``clip`` range away from the mode
#: when the mode lies outside that range (the scene is then one class: a park
#: in leaf, a desert, a lake).
UNIMODAL = ("default", "away")
#: Method of adaptive bounds that name none (chosen on the accuracy
#: benchmark, docs/accuracy.md).
DEFAULT_METHOD = "kittler"

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
    mode : {'fixed', 'adaptive', 'otsu', 'samples'}
    value : float or None
        The threshold; None until an ``adaptive``/``otsu``/``samples`` bound
        is resolved. Resolved values are rounded to float32 so that float32
        and float64 comparisons of float32 pixels agree exactly.
    options : dict
        Mode options (``method``, ``bins``, ``range``, ``clip``, ``default``,
        ``tiles`` for adaptive and Otsu bounds; ``percentile``, ``class`` for
        samples).
    note : dict
        How a scene-adaptive bound was resolved (the split found, whether
        the histogram was bimodal, the fallback or clip applied), for the
        metadata and the log.
    """

    mode: str
    value: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    note: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

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
    """One step of the progression: claims `class_id` where its conditions hold.

    A stage with `masked` set claims only pixels a cloud mask flags, and no
    other stage does (Sentinel-1 conditions, which clouds do not affect: water
    under the clouds of a flood).
    """

    name: str
    class_id: int
    conditions: tuple[Condition, ...] = ()
    any: tuple[tuple[Condition, ...], ...] = ()
    masked: bool = False

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
        The classes the stages may claim (ids 1..253).
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
        """Bands of the first stage's ANDed conditions (``masked`` stages aside): NaN there means no-data."""
        first = next((s for s in self.stages if not s.masked), None)
        if first is None:
            return []
        return list(dict.fromkeys(c.band for c in first.conditions))

    def split_masked(self) -> tuple["RuleSet", "RuleSet | None"]:
        """``(stages for observed pixels, stages for masked pixels or None)``."""
        if not any(s.masked for s in self.stages):
            return self, None
        clear = tuple(s for s in self.stages if not s.masked)
        return self.replace(stages=clear), self.replace(stages=tuple(s for s in self.stages if s.masked))

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
            if s.masked:
                d["masked"] = True
            stages.append(d)
        out["stages"] = stages
        return out


# --------------------------------------------------------------------------
# known bands
# --------------------------------------------------------------------------
def known_indices() -> list[str]:
    """Names of the indices :mod:`snap_operators.science.indices` computes."""
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
        return Bound("fixed", float32_value(_number(ctx, where, value)))
    if len(value) != 1:
        raise ctx.error(where, "a bound is a number, {adaptive: {...}}, {otsu: {...}} or {samples: {percentile: p}}")
    mode, opts = next(iter(value.items()))
    if mode in ("adaptive", "otsu"):
        allowed = ("method", "bins", "range", "clip", "default", "tiles", "unimodal") if mode == "adaptive" else (
            "bins", "range", "clip", "default")
        opts = _mapping(ctx, f"{where}.{mode}", opts if opts is not None else {}, allowed,
                        ("default",) if mode == "adaptive" else ())
        out: dict[str, Any] = {}
        if "method" in opts:
            if opts["method"] not in THRESHOLD_METHODS:
                raise ctx.error(f"{where}.{mode}.method",
                                f"unknown method {opts['method']!r}; known: {', '.join(THRESHOLD_METHODS)}")
            out["method"] = opts["method"]
        for k, lo, hi in (("bins", 16, 65536), ("tiles", 0, 4096)):
            if k in opts:
                v = opts[k]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise ctx.error(f"{where}.{mode}.{k}", f"expected an integer in {lo}..{hi}, got {v!r}")
                out[k] = v
        for k in ("range", "clip"):
            if k in opts:
                out[k] = list(_pair(ctx, f"{where}.{mode}.{k}", opts[k]))
        if "unimodal" in opts:
            if opts["unimodal"] not in UNIMODAL:
                raise ctx.error(f"{where}.{mode}.unimodal", f"expected one of {', '.join(UNIMODAL)}, got {opts['unimodal']!r}")
            if opts["unimodal"] == "away" and "clip" not in out:
                raise ctx.error(f"{where}.{mode}.unimodal", "'away' needs a clip range")
            out["unimodal"] = opts["unimodal"]
        if "default" in opts:
            out["default"] = _number(ctx, f"{where}.{mode}.default", opts["default"])
            clip = out.get("clip")
            if clip is not None and not clip[0] <= out["default"] <= clip[1]:
                raise ctx.error(f"{where}.{mode}.default", f"{out['default']:g} is outside clip {clip}")
        return Bound(mode, None, out)
    if mode == "samples":
        opts = _mapping(ctx, f"{where}.samples", opts, ("percentile", "class"), ("percentile",))
        p = _number(ctx, f"{where}.samples.percentile", opts["percentile"])
        if not 0.0 <= p <= 100.0:
            raise ctx.error(f"{where}.samples.percentile", f"{p:g} is outside 0..100")
        out = {"percentile": p}
        if "class" in opts:
            out["class"] = _class_id(ctx, f"{where}.samples.class", opts["class"])
        return Bound("samples", None, out)
    raise ctx.error(where, f"unknown threshold mode '{mode}'; use a number, adaptive, otsu or samples")


def _class_id(ctx: _Ctx, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error(where, f"class id must be an integer, got {value!r}")
    if not 1 <= value < MASKED:
        raise ctx.error(where, f"class id {value} is outside 1..253 (0 = unclassified, 254 = masked, 255 = no-data)")
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
        raise ctx.error(where, f"more than {MAX_CONDITIONS} conditions (limit MAX_CONDITIONS)")
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
        raise ctx.error("stages", f"more than {MAX_STAGES} stages (limit MAX_STAGES)")
    ids = {c.value for c in classes}
    stages: list[Stage] = []
    total = 0
    for i, s in enumerate(d["stages"]):
        where = f"stages[{i}]"
        s = _mapping(ctx, where, s, ("name", "class", "conditions", "any", "masked"), ("class",))
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
                raise ctx.error(f"{where}.any", f"more than {MAX_GROUPS} groups (limit MAX_GROUPS)")
            for j, g in enumerate(s["any"]):
                grp = _parse_conditions(ctx, f"{where}.any[{j}]", g)
                if not grp:
                    raise ctx.error(f"{where}.any[{j}]", "empty group")
                groups.append(grp)
        if not conditions and not groups:
            raise ctx.error(where, "a stage needs 'conditions' and/or 'any'")
        total += len(conditions) + sum(len(g) for g in groups)
        if total > MAX_RULE_CONDITIONS:
            raise ctx.error(where, f"the rule set has more than {MAX_RULE_CONDITIONS} conditions in all (limit "
                            "MAX_RULE_CONDITIONS: the classifier's compile time grows with them); merge or drop stages")
        for c in list(conditions) + [c for g in groups for c in g]:
            for _, b in c.bounds():
                if b.mode == "samples" and b.options.get("class", cid) not in ids:
                    raise ctx.error(where, f"samples class {b.options['class']} is not in classes")
        masked = s.get("masked", False)
        if not isinstance(masked, bool):
            raise ctx.error(f"{where}.masked", f"expected true or false, got {masked!r}")
        stages.append(Stage(sname, cid, conditions, tuple(groups), masked))
    return RuleSet(name.strip(), description.strip(), tuple(classes), tuple(stages), index_parameters, source)


def _yaml_error_line(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem


def read_rule_text(text: str, source: str = "<rules>", fmt: str = "yaml") -> RuleSet:
    """Parse rule-file `text` (``fmt`` ``'yaml'`` or ``'json'``) and validate it.

    The text is bounded before it is decoded (:data:`MAX_RULE_FILE_BYTES`),
    and the document before it is built: YAML aliases expanded, at most
    :data:`MAX_RULE_NODES` nodes nested at most :data:`MAX_RULE_DEPTH` deep.

    Raises
    ------
    RulesError
        One line naming `source`, the problem and where it is.
    """
    ctx = _Ctx(source)
    if len(text) > MAX_RULE_FILE_BYTES:
        raise ctx.error("", f"{len(text)} characters; rule files are limited to {MAX_RULE_FILE_BYTES} bytes "
                        "(MAX_RULE_FILE_BYTES)")
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ctx.error("", f"bad JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise _too_deep(ctx) from None
        _check_size(ctx, data, lambda v: v if isinstance(v, (dict, list)) else None,
                    lambda v: list(v.keys()) + list(v.values()) if isinstance(v, dict) else v)
    else:
        data = _load_yaml(ctx, text)
    return parse_rules(data, source)


def _too_deep(ctx: _Ctx) -> RulesError:
    return ctx.error("", f"nested deeper than {MAX_RULE_DEPTH} levels (limit MAX_RULE_DEPTH); rule files nest "
                     "under 10")


def _check_size(ctx: _Ctx, root: Any, container: Callable[[Any], Any], children: Callable[[Any], list]) -> None:
    """Refuse a document of more than MAX_RULE_NODES nodes (shared ones counted each time) or deeper than
    MAX_RULE_DEPTH, walking it iteratively. `container(node)` is the node when it has children, else None."""
    count = 0
    # Every step counts at least one node, so the walk ends within MAX_RULE_NODES steps, however
    # often aliases share a node.
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        if done:
            on_path.discard(id(node))
            continue
        if container(node) is None:
            count += 1
        elif id(node) in on_path:
            raise ctx.error("", "a YAML alias refers to a node that contains it (a recursive document)")
        else:
            if depth > MAX_RULE_DEPTH:
                raise _too_deep(ctx)
            kids = children(node)
            count += 1
            on_path.add(id(node))
            stack.append((node, depth, True))
            stack.extend((k, depth + 1, False) for k in kids)
        if count > MAX_RULE_NODES:
            raise ctx.error("", f"more than {MAX_RULE_NODES} values once YAML aliases are expanded (limit "
                            "MAX_RULE_NODES); write the rules out without nested aliases")


def _load_yaml(ctx: _Ctx, text: str) -> Any:
    """Compose the YAML node graph, bound its expanded size, then build the Python values."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(ctx, node, lambda n: n if isinstance(n, yaml.CollectionNode) else None,
                    lambda n: [x for pair in n.value for x in pair] if isinstance(n, yaml.MappingNode) else n.value)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ctx.error("", f"bad YAML at {_yaml_error_line(exc)}") from None
    except RecursionError:
        raise _too_deep(ctx) from None
    finally:
        loader.dispose()


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
            raise RulesError(f"rules {source}: file is {size} bytes; rule files are limited to {MAX_RULE_FILE_BYTES} "
                             "(MAX_RULE_FILE_BYTES)")
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
def float32_value(value: float) -> float:
    """`value` rounded to the nearest float32 (exact in float64 too); beyond
    the float32 range it becomes +-inf, which compares the same on float32 pixels."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


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
    mapping: Mapping[int, int] | Mapping[str, int] | None = None,
) -> SampleSet:
    """Read sample polygons/points from a vector file and rasterize them per chunk.

    Read with :func:`snap_operators.io.reference.read_vector_labels`, the
    reader of assess' references too: geometries are reprojected from the
    file's CRS to `crs`; pixels whose centre falls in a polygon (or that hold
    a point) are samples of the feature's `class_field` value; where samples
    overlap, the later feature in the file wins; features without a value
    are left out. The image grid is `transform` with Dask `chunks`; chunks
    without samples are skipped. `mapping` (``samplesMapping``, as
    :func:`snap_operators.io.reference.parse_mapping` reads it) maps the file's
    codes, or the class names of a `class_field` of names, to class ids; codes
    or names not mapped are left out.

    Raises
    ------
    RulesError
        Unreadable file, missing class field, class values not in `class_ids`
        or no sample inside the image.
    """
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    from ..io.reference import ReferenceDataError, VectorLabels, apply_mapping, read_vector_labels, split_mapping

    where = f"samplesFile {path}"
    if crs is None or transform is None:
        raise RulesError(f"{where}: the image has no map geocoding, so samples cannot be placed on it")
    names, codes = split_mapping(mapping)
    try:
        samples = read_vector_labels(path, class_field, crs, role="samplesFile", field_option="samplesClassField",
                                     names=names)
    except ReferenceDataError as exc:
        raise RulesError(str(exc)) from None
    if codes:
        ids = apply_mapping(samples.codes, codes)
        if not (ids > 0).any():
            found = ", ".join(map(str, np.unique(samples.codes)[:12].tolist()))
            raise RulesError(f"{where}: samplesMapping maps none of its {class_field} codes ({found})")
        samples = VectorLabels(samples.geoms[ids > 0], ids[ids > 0])
    foreign = [c for c in samples.codes.tolist() if c not in class_ids]
    if foreign:
        raise RulesError(f"{where}: {class_field} = {foreign[0]} is not a class of the rule set "
                         f"({', '.join(map(str, class_ids))})")
    blocks: dict[tuple[int, int], np.ndarray] = {}
    counts: dict[int, int] = {}
    y0 = 0
    for i, h in enumerate(chunks[0]):
        x0 = 0
        for j, w in enumerate(chunks[1]):
            labels = samples.rasterize(window_transform(Window(x0, y0, w, h), transform), h, w)
            if labels.any():
                blocks[(i, j)] = labels.astype(np.uint8)  # class ids of a rule set are below 254
                for cid, n in zip(*np.unique(labels[labels > 0], return_counts=True)):
                    counts[int(cid)] = counts.get(int(cid), 0) + int(n)
            x0 += w
        y0 += h
    if not counts:
        raise RulesError(f"{where}: no sample falls inside the image")
    return SampleSet(blocks, chunks, counts)
