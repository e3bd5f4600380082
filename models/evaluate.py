"""The trained network against an independent reference, next to the rules it learned from.

Agreement with the training labels says how well the network imitates the
Progressive Classifier's masks, not whether it maps land cover better. With
a reference (field polygons, a land-cover product), :func:`compare_with_reference`
scores both on the same pixels: the network's class map over the whole
training image, and the rules' map (the label masks the network was trained
on, rasterized on the same grid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from snap_operators.apps.assess import accuracy_metrics, add_pairs, apply_mapping, pair_labels, pair_matrix
from snap_operators.core.legend import CLASS_NAMES, MASKED, NO_DATA

#: Rows of the class maps read at a time.
WINDOW_ROWS = 512


def _inference_target(model: str | Path, info: dict, context, **parameters):
    """``AttentionUNetInference``'s target product over the dataset's whole image, as
    :func:`predict_scene` and :func:`predict_probabilities` read it."""
    from snap_operators.core.operator import get_operator

    from .dataset import build_input_product

    indices = list(info.get("indices") or [])
    bands = [b for b in info["bands"] if b not in indices]
    product, _ = build_input_product(info["image"], info.get("image_s1"), bands=bands, indices=indices)
    # no cloud mask: the network saw the training image's every pixel (build_input_product has none)
    op = get_operator("AttentionUNetInference").create({"sourceProduct": product},
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


def compare_with_reference(classes: str | Path, info: dict, reference: str | Path, *, field: str | None = None,
                           mapping: Mapping[int, int] | None = None) -> dict:
    """Accuracy of the network's class map and of the rules' map against `reference`, on the same pixels.

    Parameters
    ----------
    classes : path
        The network's class map of the training image (:func:`predict_scene`).
    info : dict
        The dataset's ``dataset.json``: its ``labels`` (the rules' label masks) are
        rasterized onto the class map's grid.
    reference : path
        Reference raster (any grid) or vector file, read as ``snap-pc assess`` reads it.
    field : str, optional
        Class attribute of a vector reference.
    mapping : dict, optional
        Reference code -> class id (codes not mapped are left out).

    Returns
    -------
    dict
        ``{"reference", "pixels", "unet": metrics, "rules": metrics, "recall_change": {class: unet - rules}}``;
        the metrics as :func:`snap_operators.apps.assess.accuracy_metrics` gives them (overall
        accuracy, kappa, per-class producer's/user's accuracy, F1, IoU). The pixels are those the
        reference labels and both maps saw (no-data and masked pixels left out of both).
    """
    import rasterio
    from rasterio.windows import Window

    from snap_operators.core.errors import SnapPcError
    from snap_operators.io.reference import reference_reader

    pairs: dict[str, dict[tuple[int, int], int]] = {"unet": {}, "rules": {}}
    with rasterio.open(classes) as ds:
        grid = (ds.crs, ds.transform, ds.width, ds.height)
        read_ref = reference_reader(reference, *grid, field=field)
        read_rules = reference_reader(info["labels"], *grid, field=info.get("field") or "class_id")
        for row0 in range(0, ds.height, WINDOW_ROWS):
            win = Window(0, row0, ds.width, min(WINDOW_ROWS, ds.height - row0))
            unet = ds.read(1, window=win).astype(np.int64)
            rules = read_rules(win)
            ref = apply_mapping(read_ref(win), mapping)
            # pixels either map could not see (no data; cloud, shadow or snow) are left out of both
            valid = (ref > 0) & (unet != NO_DATA) & (unet != MASKED) & (rules != MASKED)
            add_pairs(pairs["unet"], ref[valid], unet[valid])
            add_pairs(pairs["rules"], ref[valid], rules[valid])
    if not pairs["unet"]:
        raise SnapPcError(f"no pixel of {reference} is labelled inside the training image "
                          "(check extents, CRS, --reference-field and --mapping)")
    labels = pair_labels(*pairs.values())  # one label set: both matrices alike (unclassified pixels are errors)
    out: dict = {"reference": str(reference), "field": field,
                 "mapping": {str(k): v for k, v in (mapping or {}).items()}}
    for name, acc in pairs.items():
        metrics = accuracy_metrics(pair_matrix(acc, labels), labels, CLASS_NAMES)
        ref_classes = {r for r, _ in acc}
        metrics["per_class"] = [p for p in metrics["per_class"] if p["class_id"] in ref_classes]
        out[name] = metrics
    out["pixels"] = int(sum(pairs["unet"].values()))
    rules_recall = {p["class_id"]: p["producers_accuracy"] for p in out["rules"]["per_class"]}
    out["recall_change"] = {str(p["class_id"]): p["producers_accuracy"] - rules_recall[p["class_id"]]
                            for p in out["unet"]["per_class"]
                            if p["producers_accuracy"] is not None and rules_recall.get(p["class_id"]) is not None}
    return out


def format_comparison(result: dict) -> list[str]:
    """Lines comparing the network and the rules against the reference (CLI and model card)."""
    u, r = result["unet"], result["rules"]
    lines = [f"against {result['reference']} ({result['pixels']} px): overall accuracy U-Net "
             f"{u['overall_accuracy']:.3f}, rules {r['overall_accuracy']:.3f} "
             f"(U-Net {u['overall_accuracy'] - r['overall_accuracy']:+.3f})"
             + (f", U-Net read with testTimeAugmentation {result['augmentation']}"
                if result.get("augmentation", "none") != "none" else ""),
             "| class | recall U-Net | recall rules | change |", "|---|---|---|---|"]
    rules = {p["class_id"]: p for p in r["per_class"]}

    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    for p in u["per_class"]:
        q = rules.get(p["class_id"], {})
        change = result["recall_change"].get(str(p["class_id"]))
        lines.append(f"| {p['class_id']} {p['class_name']} | {fmt(p['producers_accuracy'])} | "
                     f"{fmt(q.get('producers_accuracy'))} | {'-' if change is None else f'{change:+.3f}'} |")
    return lines
