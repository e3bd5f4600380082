"""The trained network against an independent reference, next to the rules it learned from.

Agreement with the training labels says how well the network imitates the
Progressive Classifier's masks, not whether it maps land cover better. With
a reference (field polygons, a land-cover product), :func:`compare_with_reference`
scores both on the same pixels: the network's class map over the whole
training image, and the rules' map (given it, with its margin; else the
label masks the network was trained on, rasterized on the same grid). Given
the rules' map, it also scores the map the inference graph writes: the two
fused by ``RuleFusion`` (:func:`fuse_scene`). McNemar's test says whether
each difference to the rules is more than chance, over the reference's pixels and over its
polygons (the sample a reference really is), and each figure comes with its interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from snap_operators.apps.assess import (
    MCNEMAR_TITLE,
    accuracy_metrics,
    add_intervals,
    count_on_same_pixels,
    format_interval,
    group_names,
    mcnemar_p,
    mcnemar_text,
    pair_labels,
    pair_matrix,
    unit_mcnemar,
    warn_foreign_reference,
)
from snap_operators.core.legend import CLASS_NAMES
from snap_operators.science.fusion import DEFAULT_MIN_MARGIN

#: Rows of the class maps read at a time.
WINDOW_ROWS = 512


def _input_product(info: dict):
    """The dataset's whole image as the network reads it (its bands and indices, on its grid)."""
    from .dataset import build_input_product

    indices = list(info.get("indices") or [])
    bands = [b for b in info["bands"] if b not in indices] if info.get("bands") else None  # None: the default
    product, _ = build_input_product(info["image"], info.get("image_s1"), bands=bands, indices=indices)
    return product


def _inference_target(model: str | Path, info: dict, context, **parameters):
    """``AttentionUNetInference``'s target product over the dataset's whole image, as
    :func:`predict_scene` and :func:`predict_probabilities` read it."""
    from snap_operators.core.operator import get_operator

    # no cloud mask: the network saw the training image's every pixel (build_input_product has none)
    op = get_operator("AttentionUNetInference").create({"sourceProduct": _input_product(info)},
                                                       {"modelFile": str(model), "maskBand": "", **parameters},
                                                       context=context)
    return op.initialize()


def predict_scene(model: str | Path, info: dict, out: str | Path, *, overwrite: bool = False,
                  augmentation: str = "none") -> Path:
    """The network's class map of the dataset's whole image, written to the GeoTIFF `out`.

    Parameters
    ----------
    model : path
        ONNX model written by :func:`snap_pc_models.train.train`.
    info : dict
        The dataset's ``dataset.json`` (image, bands, indices).
    out : path
        GeoTIFF to write: the ``class_id`` band (uint8, the legend's colours).
    augmentation : str
        ``AttentionUNetInference``'s ``testTimeAugmentation``: none, flips or dihedral.

    Returns
    -------
    Path
        `out`.
    """
    from snap_operators.core.context import ExecutionContext
    from snap_operators.core.streaming import stream_writer
    from snap_operators.io.geotiff_writer import GeoTiffWriter

    context = ExecutionContext(overwrite=overwrite)
    target = _inference_target(model, info, context, testTimeAugmentation=augmentation)
    return Path(stream_writer(GeoTiffWriter(target.copy(bands=[target.band("class_id")]), out), context))


def predict_probabilities(model: str | Path, info: dict, *, augmentation: str = "none") -> tuple[list[int], np.ndarray]:
    """The network's class probabilities over the dataset's whole image, in memory.

    For scenes that fit in memory (a benchmark's, a training image): averaging several models'
    probabilities (a seed ensemble) needs them, not their class maps. `model`, `info` and
    `augmentation` as in :func:`predict_scene`.

    Returns
    -------
    ids : list of int
        The model's class ids, in the order of the first axis of `probabilities`.
    probabilities : ndarray
        ``(classes, rows, cols)`` float32, NaN where an input band has no data.
    """
    from snap_operators.core.context import ExecutionContext
    from snap_operators.io.onnx_model import read_metadata
    from snap_operators.ops.unet_inference import probability_band

    target = _inference_target(model, info, ExecutionContext(), testTimeAugmentation=augmentation,
                               outputProbabilities="true")
    ids = list(read_metadata(model).class_ids)
    return ids, np.stack([np.asarray(target.band(probability_band(i)).data.compute(), np.float32) for i in ids])


def check_rules_map(rules_map: str | Path, info: dict) -> None:
    """Refuse, before any training, a rules map :func:`fuse_scene` could not fuse with the network's map.

    Parameters
    ----------
    rules_map : path
        The Progressive Classifier's target written with ``outputMargin=true`` (bands
        ``class_id`` and ``margin``), e.g. ``progressive_classifier_s2.xml -PoutputMargin=true``.
    info : dict
        The dataset's ``dataset.json`` (or its ``image``, ``image_s1``, ``bands`` (None: the
        default) and ``indices`` before it is built): the map must be on its image's grid.

    Raises
    ------
    SnapPcError
        One line: the file is unreadable, has no margin band or lies on another grid.
    """
    from snap_operators.core.errors import SnapPcError
    from snap_operators.io import open_product
    from snap_operators.ops.bandmerge import grid_mismatch
    from snap_operators.ops.rule_fusion import MARGIN_BAND

    if not Path(rules_map).exists():
        raise SnapPcError(f"rules map {rules_map} does not exist")
    try:
        rules = open_product(rules_map)
    except SnapPcError as exc:
        raise SnapPcError(f"rules map {rules_map}: {exc}") from None
    if MARGIN_BAND not in rules.bands:
        raise SnapPcError(f"rules map {rules_map} has no band '{MARGIN_BAND}' (bands: {', '.join(rules.bands)}): "
                          "write the Progressive Classifier's map with outputMargin=true")
    problem = grid_mismatch(_input_product(info), rules, 1e-5)
    if problem:
        raise SnapPcError(f"rules map {rules_map} is not on the training image's grid ({problem})")


def fuse_scene(classes: str | Path, rules_map: str | Path, out: str | Path, *,
               min_margin: float = DEFAULT_MIN_MARGIN, overwrite: bool = False) -> Path:
    """The map the inference graph writes: `rules_map`'s class where its margin reaches `min_margin`,
    the network's elsewhere (``RuleFusion``), written to the GeoTIFF `out`.

    Parameters
    ----------
    classes : path
        The network's class map (:func:`predict_scene`).
    rules_map : path
        The rules' class map with its ``margin`` band, on the same grid (:func:`check_rules_map`).
    out : path
        GeoTIFF to write: the fused ``class_id`` band (uint8, the network's legend).
    min_margin : float
        ``RuleFusion``'s ``minMargin``, in scene interquartile ranges (the graph's
        ``minRuleMargin``); ``inf`` gives the network's map.

    Returns
    -------
    Path
        `out`.
    """
    from snap_operators.api import open_product, rule_fusion
    from snap_operators.core.context import ExecutionContext
    from snap_operators.core.streaming import stream_writer
    from snap_operators.io.geotiff_writer import GeoTiffWriter

    fused = rule_fusion(open_product(rules_map), open_product(classes), minMargin=float(min_margin))
    writer = GeoTiffWriter(fused.copy(bands=[fused.band("class_id")]), out)
    return Path(stream_writer(writer, ExecutionContext(overwrite=overwrite)))


def compare_with_reference(classes: str | Path, info: dict, reference: str | Path, *, field: str | None = None,
                           mapping: Mapping[int, int] | Mapping[str, int] | None = None,
                           fused: str | Path | None = None, start: str | Path | None = None,
                           rules_map: str | Path | None = None) -> dict:
    """Accuracy of the network's class map and of the rules' map against `reference`, on the same pixels.

    Parameters
    ----------
    classes : path
        The network's class map of the training image (:func:`predict_scene`).
    info : dict
        The dataset's ``dataset.json``: without `rules_map`, its ``labels`` (the rules' label
        masks, or labels of another legend read through its ``label_mapping``, or the analyst's
        own) are rasterized onto the class map's grid and scored as ``"rules"``
        (``"labels_name"`` says which they are, from the dataset's ``rule_labels``;
        ``"rules_source"`` is ``"labels"``).
    reference : path
        Reference raster (any grid) or vector file, read as ``snap-pc assess`` reads it.
    field : str, optional
        Class attribute of a vector reference.
    mapping : dict, optional
        Reference code -> class id, or class name -> class id for a vector attribute of names
        (:func:`snap_operators.io.reference.parse_mapping`); codes or names
        not mapped are left out. A code may map to a tuple of class ids, any of which is right
        there, scored as one class in every map (``{1: 1, 0: (2, 3, 4, 5)}``, water / not water:
        :func:`snap_operators.io.reference.class_groups`).
    fused : path, optional
        The network's map fused with the rules' (:func:`fuse_scene`), on the class map's grid:
        scored too, as ``"fused"``, with ``"fused_recall_change"`` (fused - rules).
    start : path, optional
        The class map of the model a fine-tuning started from (``--init``), on the class map's
        grid: scored too, as ``"start"``, with ``"start_recall_change"`` (start - rules).
    rules_map : path, optional
        The rules' class map on the class map's grid (``--rules-map``; its first band, the class):
        scored as ``"rules"`` instead of the labels (``"rules_source"``: ``"map"``), the map the
        issue's figures and the benchmark compare with, before the label masks' minimum mapping
        unit smoothed it.

    Returns
    -------
    dict
        ``{"reference", "pixels", "unet": metrics, "rules": metrics, "recall_change": {class: unet - rules},
        "mcnemar": {map: {"right_only_here", "right_only_in_rules", "p_value", "units_p_value", "units",
        "unit_kind"}}}`` (McNemar's test of each map's difference to the rules, with each pixel
        independent, :func:`snap_operators.apps.assess.mcnemar_p`, and over the reference's units,
        :func:`snap_operators.apps.assess.unit_mcnemar`); each map's metrics also hold ``sampling``,
        their 95 % intervals over those units (:func:`snap_operators.apps.assess.add_intervals`);
        the metrics as :func:`snap_operators.apps.assess.accuracy_metrics` gives them (overall
        accuracy, kappa, per-class producer's/user's accuracy, F1, IoU). The pixels are those the
        reference labels and every map saw (no-data and masked pixels left out of all).
    """
    import rasterio

    from snap_operators.core.errors import SnapPcError
    from snap_operators.io.reference import class_groups, mapping_record, reference_reader

    from .dataset import label_mapping

    given = mapping
    mapping, groups = class_groups(mapping)
    names = {**CLASS_NAMES, **group_names(groups)}
    extra = {name: path for name, path in (("fused", fused), ("start", start)) if path}
    with rasterio.open(classes) as ds:
        grid = (ds.crs, ds.transform, ds.width, ds.height)
        read_ref = reference_reader(reference, *grid, field=field, mapping=mapping)
        readers = {"unet": lambda win: ds.read(1, window=win).astype(np.int64),
                   "rules": reference_reader(rules_map, *grid) if rules_map is not None else
                   reference_reader(info["labels"], *grid, field=info.get("field") or "class_id",
                                    mapping=label_mapping(info))}
        for name, path in extra.items():
            readers[name] = reference_reader(path, *grid)
        # pixels any map could not see (no data; cloud, shadow or snow) are left out of all; each map's
        # pixels right where the rules are wrong, and the reverse: McNemar's test of the difference
        counts = count_on_same_pixels(read_ref, readers, (ds.height, ds.width), against="rules", rows=WINDOW_ROWS,
                                      groups=groups)
    pairs = counts.pairs
    if not pairs["unet"]:
        raise SnapPcError(f"no pixel of {reference} is labelled inside the training image "
                          "(check extents, CRS, --reference-field and --mapping)")
    warn_foreign_reference(pairs["unet"], names, reference, classes, mapped=bool(mapping))
    labels = pair_labels(*pairs.values())  # one label set: both matrices alike (unclassified pixels are errors)
    out: dict = {"reference": str(reference), "field": field,
                 "mapping": mapping_record(given),
                 # labels that are not the rules' masks (another legend, the analyst's own polygons)
                 # are called labels; a dataset of before rule_labels was recorded: mapped or not
                 "labels_name": "rules" if rules_map is not None or info.get("rule_labels", not label_mapping(info))
                 else "labels",
                 "rules_source": "labels" if rules_map is None else "map"}
    for name, acc in pairs.items():
        metrics = accuracy_metrics(pair_matrix(acc, labels), labels, names)
        ref_classes = {r for r, _ in acc}
        metrics["per_class"] = [p for p in metrics["per_class"] if p["class_id"] in ref_classes]
        out[name] = metrics
    add_intervals({name: out[name] for name in pairs}, counts.unit_pairs, counts.unit_kind, coverage=counts.coverage)
    out["pixels"] = int(sum(pairs["unet"].values()))
    out["mcnemar"] = {name: {"right_only_here": a, "right_only_in_rules": b, "p_value": mcnemar_p(a, b),
                             **unit_mcnemar(counts, name)}
                      for name, (a, b) in counts.discordant.items()}
    rules_recall = {p["class_id"]: p["producers_accuracy"] for p in out["rules"]["per_class"]}
    for name, key in (("unet", "recall_change"), ("fused", "fused_recall_change"), ("start", "start_recall_change")):
        if name in out:
            out[key] = {str(p["class_id"]): p["producers_accuracy"] - rules_recall[p["class_id"]]
                        for p in out[name]["per_class"]
                        if p["producers_accuracy"] is not None and rules_recall.get(p["class_id"]) is not None}
    return out


def _mcnemar_lines(result: dict, labels: str) -> list[str]:
    """The McNemar line of :func:`format_comparison` (none for a result of before the test was added)."""
    tests = result.get("mcnemar")
    if not tests:
        return []
    names = {"unet": "U-Net", "fused": "fused", "start": "start model (--init)"}
    parts = [f"{names[name]} right where the {labels} are wrong on {t['right_only_here']} px, the reverse on "
             f"{t['right_only_in_rules']} px: {mcnemar_text(t, t['right_only_here'], t['right_only_in_rules'])}"
             for name, t in tests.items()]
    return [f"{MCNEMAR_TITLE}: " + "; ".join(parts)]


def _interval_lines(result: dict, labels: str) -> list[str]:
    """The intervals' line of :func:`format_comparison` (none for a result of before they were added)."""
    sampling = result["unet"].get("sampling")
    if not sampling:
        return []
    names = {"unet": "U-Net", "rules": labels, "fused": "fused", "start": "start model"}
    parts = [f"{names[name]} {format_interval(result[name]['sampling']['overall_accuracy_interval'])}"
             for name in names if name in result]
    return [f"{sampling['level']:.0%} intervals of the overall accuracy, with the reference's {sampling['units']} "
            f"{sampling.get('unit_kind') or 'units'} as the sample: " + ", ".join(parts)]


def format_comparison(result: dict) -> list[str]:
    """Lines comparing the network, the rules and (when scored) their fusion against the reference
    (CLI and model card)."""
    u, r, f = result["unet"], result["rules"], result.get("fused")
    oa, labels = r["overall_accuracy"], result.get("labels_name", "rules")
    fused_text = (f"; fused with the rules as the inference graph does (RuleFusion, minMargin "
                  f"{result.get('min_rule_margin', DEFAULT_MIN_MARGIN):g}) {f['overall_accuracy']:.3f} "
                  f"({f['overall_accuracy'] - oa:+.3f})") if f else ""
    start = result.get("start")
    start_text = (f"; the model it was fine-tuned from ({Path(result['init']).name if result.get('init') else '--init'}"
                  f"), as it was: {start['overall_accuracy']:.3f} (fine-tuning "
                  f"{u['overall_accuracy'] - start['overall_accuracy']:+.3f})") if start else ""
    source = {"map": f" (the rules' map {Path(str(result.get('rules_map', ''))).name})",
              "labels": " (the label masks the network learnt from)" if labels == "rules" else ""}
    lines = [f"against {result['reference']} ({result['pixels']} px): overall accuracy U-Net "
             f"{u['overall_accuracy']:.3f}, {labels}{source[result.get('rules_source', 'labels')]} {oa:.3f} "
             f"(U-Net {u['overall_accuracy'] - oa:+.3f})"
             + (f", U-Net read with testTimeAugmentation {result['augmentation']}"
                if result.get("augmentation", "none") != "none" else "") + fused_text + start_text,
             *_interval_lines(result, labels),
             *_mcnemar_lines(result, labels),
             f"| class | recall U-Net | recall {labels} | change |" + (" recall fused | change |" if f else ""),
             "|---|---|---|---|" + ("---|---|" if f else "")]
    recall = {name: {p["class_id"]: p["producers_accuracy"] for p in m["per_class"]}
              for name, m in (("rules", r), ("fused", f)) if m}

    def fmt(v, sign=""):
        return "-" if v is None else f"{v:{sign}.3f}"

    for p in u["per_class"]:
        cid = p["class_id"]
        line = (f"| {cid} {p['class_name']} | {fmt(p['producers_accuracy'])} | {fmt(recall['rules'].get(cid))} | "
                f"{fmt(result['recall_change'].get(str(cid)), '+')} |")
        if f:
            line += f" {fmt(recall['fused'].get(cid))} | {fmt(result['fused_recall_change'].get(str(cid)), '+')} |"
        lines.append(line)
    if not f and labels == "rules":
        lines.append("(the inference graph's map is the U-Net's fused with the rules where they are sure: to score it "
                     "too, give --rules-map, the S2 graph's class map written with -PoutputMargin=true)")
    return lines
