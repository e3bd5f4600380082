"""Train the Attention U-Net on a patch dataset and export it to ONNX with its report.

Loss: class-weighted cross-entropy (weights ``1/sqrt(class frequency)`` of the
training split, normalized to a pixel mean of 1) plus soft Dice, both over
labelled pixels only, so class 0 (unclassified by the rules) is never learnt
and the network fills it in. Adam; early stopping on the validation loss
keeps the best epoch. Seeded and deterministic on CPU.

Beside ``MODEL.onnx`` it writes ``MODEL.best.keras`` (best checkpoint),
``MODEL.history.csv``, ``MODEL.curves.png``, ``MODEL.metrics.json``,
``MODEL.confusion_val.png``, ``MODEL.confusion_test.png`` and ``MODEL.card.md``.

Example
-------
>>> result = train("ds/", "model.onnx", config="small", epochs=5)   # doctest: +SKIP
>>> result["metrics"]["test"]["mean_iou"]                             # doctest: +SKIP
0.71
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from snap_operators.apps.assess import (
    Assessment,
    accuracy_metrics,
    confusion_matrix,
    constant_map_scores,
    plot_confusion,
)
from snap_operators.core.errors import SnapPcError
from snap_operators.core.legend import class_name
from snap_operators.core.outputs import save_figure, write_text
from snap_operators.core.staging import staged_path
from snap_operators.io.onnx_model import ModelMetadata
from snap_operators.science.inference import AUGMENTATIONS

from .attention_unet import build_attention_unet, get_config, receptive_field_radius
from .augment import AugmentError, atmospheric_offset, check_channels, random_atmospheres
from .dataset import SPLITS, lacking_classes, load_dataset_info, open_split
from .export import DEFAULT_OPSET, effective_halo, export_onnx

log = logging.getLogger(__name__)

__all__ = ["TrainError", "MODEL_VERSION", "class_weights", "train", "evaluate_split"]

MODEL_VERSION = "1.0.0"


class TrainError(SnapPcError):
    """Training cannot start or finish (missing TensorFlow, bad dataset or options)."""


def _require_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        raise TrainError("training needs TensorFlow and Keras: pip install 'snap-progressive-classifier[train]'") from None


def warn_one_class(class_pixels: dict, init=None) -> bool:
    """Warn, before the epochs, that the training labels hold one class: the network can only learn to
    map every pixel to it (and a fine-tuned model forgets the others). Returns whether it warned.

    >>> warn_one_class({"3": 1200, "1": 0}), warn_one_class({"3": 1200, "4": 5})
    (True, False)
    """
    held = [int(k) for k, n in class_pixels.items() if n]
    if len(held) != 1:
        return False
    log.warning("the training labels hold one class only (%d %s, %d px): the network will map every pixel to it%s; "
                "label more classes, or train on several scenes", held[0], class_name(held[0]),
                class_pixels[str(held[0])],
                ", and a model fine-tuned from --init forgets the others" if init is not None else "")
    return True


def class_weights(class_pixels: dict, class_ids: Sequence[int], max_ratio: float = 10.0) -> np.ndarray:
    """Per-class loss weights ``1/sqrt(frequency)``, mean 1 over the training pixels.

    Example
    -------
    >>> w = class_weights({"1": 100, "2": 10000}, [1, 2])
    >>> bool(w[0] > w[1])
    True
    """
    counts = np.array([float(class_pixels.get(str(c), 0)) for c in class_ids])
    present = counts > 0
    if not present.any():
        raise TrainError("the training split holds no labelled pixel")
    w = np.ones(len(class_ids))
    w[present] = 1.0 / np.sqrt(counts[present] / counts.sum())
    w[present] /= (w[present] * counts[present]).sum() / counts[present].sum()
    w[present] = np.clip(w[present], w[present].max() / max_ratio, None)
    return w.astype("float32")


#: Least training batches per epoch: a scene of a few dozen patches would otherwise get a handful
#: of gradient steps per epoch, and early stopping would end it before it learnt anything.
MIN_BATCHES = 16
#: Loss functions over the labelled pixels (``--loss``); the soft Dice term is added to each.
LOSSES = ("ce", "gce", "sce", "bootstrap", "smooth")
#: Generalized cross-entropy exponent (Zhang & Sabuncu, 2018): 1 is MAE, 0 is CE.
GCE_Q = 0.7
#: Symmetric cross-entropy (Wang et al., 2019): weight of the reverse term and log of a zero probability.
SCE_BETA, SCE_LOG_ZERO = 1.0, -4.0
#: Hard bootstrapping (Reed et al., 2015): weight kept on the given label.
BOOTSTRAP_BETA = 0.8
#: Label smoothing (Szegedy et al., 2016; against label noise: Lukasik et al., 2020): share of the
#: target spread evenly over the classes.
SMOOTHING = 0.1
#: Largest path reflectance (at B2) of the atmospheric augmentation when several datasets train one
#: model (``atmosphere=None``). Chosen when it brought Buffalo's surface-reflectance pond back on the
#: scenes left out (water recall 0.22 -> 0.97; 0.04 did not); with the L2A scenes added since, it
#: keeps eo-box's top-of-atmosphere water instead, and ties with none elsewhere (docs/unet.md).
MULTI_SCENE_ATMOSPHERE = 0.08
#: Labelled training pixels threshold moving draws at most (memory: 4 bytes x classes each).
MAX_THRESHOLD_PIXELS = 500_000


def class_index(class_ids: Sequence[int]) -> np.ndarray:
    """Lookup table label code (uint8) -> the class's output index; -1 for codes that are no class.

    >>> class_index([1, 4])[[0, 1, 4]].tolist()
    [-1, 0, 1]
    """
    lut = np.full(256, -1, dtype=np.int32)
    lut[list(class_ids)] = np.arange(len(class_ids))
    return lut


def ignore_borders(y: np.ndarray, radius: int) -> np.ndarray:
    """`y` with labelled pixels within `radius` px of another class set to -1 (unlabelled).

    The rules' labels are least reliable at class borders (mixed pixels,
    sieving, a threshold crossed by a few hundredths); training only on the
    interior of each labelled region keeps the confident rule pixels.

    Parameters
    ----------
    y : ndarray of int, shape (n, H, W)
        Class indices, -1 unlabelled.
    radius : int
        Chebyshev distance in pixels.

    Examples
    --------
    >>> y = np.zeros((1, 1, 6), int); y[..., 3:] = 1
    >>> ignore_borders(y, 1)[0, 0].tolist()
    [0, 0, -1, -1, 1, 1]
    """
    if radius <= 0:
        return y
    from scipy.ndimage import maximum_filter, minimum_filter

    size = (1, 2 * radius + 1, 2 * radius + 1)
    hi = maximum_filter(y, size=size, mode="nearest")
    lo = minimum_filter(np.where(y >= 0, y, int(y.max()) + 1), size=size, mode="nearest")
    return np.where((y >= 0) & (hi != lo), -1, y)


def balanced_patch_weights(ys: Sequence[np.ndarray], class_ids: Sequence[int],
                           scenes: Sequence[int] | None = None) -> np.ndarray:
    """Sampling probability of each patch so that every class is drawn about equally often.

    Each class gets an equal share of the draws, spread over the patches in
    proportion to their pixels of it; half of the draws stay uniform so
    that common scenery is still seen. A class with 0.5 % of the pixels is
    then met in a fair share of the batches instead of almost never. With
    several scenes that uniform half is shared equally by the scenes, so a
    large scene does not drown the small ones.

    Parameters
    ----------
    ys : sequence of ndarray of uint8, shape (n, H, W)
        Label shards (class ids, 0 unlabelled).
    class_ids : sequence of int
    scenes : sequence of int, optional
        Scene (dataset) index of each shard.

    Returns
    -------
    ndarray of float64, shape (total patches,)
        Probabilities summing to 1, in shard order.

    Examples
    --------
    >>> y = np.zeros((4, 2, 2), np.uint8); y[:3] = 3; y[3, 0, 0] = 4
    >>> balanced_patch_weights([y], [3, 4]).round(3).tolist()
    [0.208, 0.208, 0.208, 0.375]
    """
    counts = np.concatenate([np.stack([(np.asarray(y) == c).sum(axis=(1, 2)) for c in class_ids], axis=1)
                             for y in ys]).astype(np.float64)
    n = len(counts)
    totals = counts.sum(axis=0)
    present = totals > 0
    balanced = (counts[:, present] / totals[present]).sum(axis=1) / max(int(present.sum()), 1)
    uniform = np.full(n, 1.0 / n)
    if scenes is not None:
        scene = np.repeat(np.asarray(scenes), [len(y) for y in ys])
        sizes = np.bincount(scene)
        uniform = 1.0 / (sizes[scene] * np.count_nonzero(sizes))
    return 0.5 * balanced + 0.5 * uniform


class _Batches:
    """Normalized, augmented batches over memory-mapped shards (a keras PyDataset).

    ``weights`` (one probability per patch) draws each epoch's patches with
    replacement instead of shuffling them; ``border`` drops labels that near
    another class (:func:`ignore_borders`); ``ys`` may be replaced between
    fits (self-training's relabelled patches).
    """

    def __new__(cls, *args, **kwargs):
        import keras

        # Subclass keras.utils.PyDataset lazily: keras is imported only when training.
        class PatchBatches(keras.utils.PyDataset):
            def __init__(self, xs, ys, mean, std, lut, batch_size, shuffle, augment, seed, weights=None, border=0,
                         min_batches=1, channels=None, atmosphere=0.0):
                super().__init__(workers=1, use_multiprocessing=False)
                self.xs, self.ys = xs, ys
                self.mean, self.std, self.lut = mean, std, lut
                self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
                self.weights, self.border = weights, border
                self.channels, self.atmosphere = channels, atmosphere
                self.index = np.array([(s, i) for s, x in enumerate(xs) for i in range(len(x))], dtype=np.int64)
                self.n_batches = max(1, min_batches, -(-len(self.index) // batch_size))
                self.rng = np.random.default_rng(seed)
                self.order = np.arange(len(self.index))
                self.on_epoch_end()

            def __len__(self):
                return self.n_batches

            def __getitem__(self, k):
                sel = self.index[self.order[k * self.batch_size:(k + 1) * self.batch_size]]
                x = np.stack([self.xs[s][i] for s, i in sel]).astype("float32")
                y = np.stack([self.ys[s][i] for s, i in sel])
                # Deterministic per (epoch order, batch), each from its own stream so that the
                # atmospheres leave the flips and turns as they are without them.
                first = int(self.order[k * self.batch_size])
                if self.augment and self.atmosphere:
                    air = random_atmospheres(np.random.default_rng([first, k, 1]), len(x), self.atmosphere)
                    x = atmospheric_offset(x, self.channels, *air)
                x = (x - self.mean) / self.std
                y = ignore_borders(self.lut[y], self.border)
                if self.augment:
                    aug = np.random.default_rng([first, k])
                    turns, flip = int(aug.integers(4)), bool(aug.integers(2))
                    x, y = np.rot90(x, turns, axes=(1, 2)), np.rot90(y, turns, axes=(1, 2))
                    if flip:
                        x, y = x[:, :, ::-1], y[:, :, ::-1]
                return np.ascontiguousarray(x), np.ascontiguousarray(y)

            def on_epoch_end(self):
                n = len(self.index)
                # a small scene repeats its patches (each in a new orientation) up to min_batches
                size = max(n, self.n_batches * self.batch_size) if self.shuffle else n
                if self.weights is not None:
                    self.order = self.rng.choice(n, size=size, p=self.weights)
                elif self.shuffle:
                    self.order = np.concatenate([self.rng.permutation(n) for _ in range(-(-size // n))])[:size]

        return PatchBatches(*args, **kwargs)


def _loss(weights: np.ndarray, dice_weight: float, kind: str = "ce"):
    """Masked, class-weighted loss over labelled pixels (`kind` in :data:`LOSSES`) plus soft Dice.

    ``gce``, ``sce``, ``bootstrap`` and ``smooth`` bound what a wrong label can pull:
    the rules' labels are noisy, and cross-entropy lets the network fit
    their errors as hard as their truths.
    """
    from keras import ops

    n = len(weights)
    w_const = ops.convert_to_tensor(weights)

    def masked_weighted_loss(y_true, y_pred):
        y = ops.cast(y_true, "int32")
        valid = ops.cast(y >= 0, "float32")
        yc = ops.where(y >= 0, y, 0)
        onehot = ops.one_hot(yc, n) * valid[..., None]
        p = ops.clip(y_pred, 1e-7, 1.0)
        p_label = ops.sum(onehot * p, axis=-1)
        if kind == "gce":
            per_pixel = (1.0 - ops.power(ops.maximum(p_label, 1e-7), GCE_Q)) / GCE_Q * valid
        else:  # cross-entropy against the label, or against a softened target
            target = onehot
            if kind == "bootstrap":
                guess = ops.one_hot(ops.argmax(p, axis=-1), n) * valid[..., None]
                target = BOOTSTRAP_BETA * onehot + (1.0 - BOOTSTRAP_BETA) * ops.stop_gradient(guess)
            elif kind == "smooth":
                target = (1.0 - SMOOTHING) * onehot + SMOOTHING / n * valid[..., None]
            per_pixel = -ops.sum(target * ops.log(p), axis=-1)
            if kind == "sce":
                per_pixel = per_pixel + SCE_BETA * (-SCE_LOG_ZERO) * (1.0 - p_label) * valid
        w = ops.take(w_const, yc) * valid
        loss = ops.sum(w * per_pixel) / ops.maximum(ops.sum(w), 1e-6)
        if dice_weight:
            pv = p * valid[..., None]
            inter = ops.sum(onehot * pv, axis=(0, 1, 2))
            denom = ops.sum(onehot, axis=(0, 1, 2)) + ops.sum(pv, axis=(0, 1, 2))
            present = ops.cast(ops.sum(onehot, axis=(0, 1, 2)) > 0, "float32")
            dice = ops.sum(present * (2 * inter + 1) / (denom + 1)) / ops.maximum(ops.sum(present), 1.0)
            loss = loss + dice_weight * (1.0 - dice)
        return loss

    return masked_weighted_loss


def _labelled_accuracy(y_true, y_pred):
    from keras import ops

    y = ops.cast(y_true, "int32")
    valid = ops.cast(y >= 0, "float32")
    hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y), "float32") * valid
    return ops.sum(hit) / ops.maximum(ops.sum(valid), 1.0)


def predicted_batches(model, x_shard, mean, std, batch_size: int):
    """``(start, probabilities)`` of `model` over one shard's patches, `batch_size` at a time.

    Parameters
    ----------
    x_shard : ndarray, shape (n, P, P, bands)
        Physical values (memory-mapped); normalized here with `mean` and `std`.

    Yields
    ------
    (int, ndarray of float32, shape (b, P, P, classes))
    """
    for i in range(0, len(x_shard), batch_size):
        x = (np.asarray(x_shard[i:i + batch_size], dtype="float32") - mean) / std
        yield i, np.asarray(model(x, training=False))


def evaluate_split(model, xs, ys, mean, std, class_ids, batch_size: int = 8) -> Assessment:
    """Confusion matrix and metrics of `model` on labelled pixels of one split."""
    ids = np.asarray(class_ids)
    m = np.zeros((len(ids), len(ids)), dtype=np.int64)
    for x_shard, y_shard in zip(xs, ys):
        for i, p in predicted_batches(model, x_shard, mean, std, batch_size):
            m += confusion_matrix(np.asarray(y_shard[i:i + batch_size]), ids[np.argmax(p, axis=-1)], ids)
    names = dict(zip(class_ids, _names_for(class_ids)))
    metrics = accuracy_metrics(m, list(ids), names)
    ious = [p["iou"] for p in metrics["per_class"] if p["iou"] is not None]
    metrics["mean_iou"] = float(np.mean(ious)) if ious else None
    return Assessment(list(map(int, ids)), m, metrics)


def _names_for(class_ids):
    from snap_operators.core.legend import CLASS_NAMES

    return [CLASS_NAMES.get(int(c), str(c)) for c in class_ids]


def _majority_baseline(train_pixels: dict, result: Assessment) -> dict:
    """Scores of predicting the training split's most frequent class everywhere."""
    counts = {int(k): v for k, v in train_pixels.items() if int(k) in result.labels}
    return constant_map_scores(result.matrix, result.labels, max(counts, key=counts.get))


def vanished_classes(class_ids: Sequence[int], train_pixels: dict, predicted_pixels: Sequence[int]) -> list[dict]:
    """Classes of the training labels that the trained model never predicts: a failed training.

    A network trained on imbalanced rule labels can settle on never
    predicting a rare class (built-up at 0.5 % of the pixels), which its
    overall accuracy hides.

    Parameters
    ----------
    class_ids : sequence of int
        The model's classes, in output order.
    train_pixels : dict
        Class id (int or str) -> labelled pixels of the training split.
    predicted_pixels : sequence of int
        Pixels predicted per class (in `class_ids` order) over every patch.

    Returns
    -------
    list of dict
        ``{"class_id", "class_name", "train_pixels"}`` per vanished class; empty when none.

    Examples
    --------
    >>> vanished_classes([1, 4], {"1": 900, "4": 60}, [2000, 0])[0]["class_id"]
    4
    """
    pixels = {int(k): int(v) for k, v in train_pixels.items()}
    names = dict(zip(class_ids, _names_for(class_ids)))
    return [{"class_id": int(c), "class_name": names[c], "train_pixels": pixels[int(c)]}
            for c, n in zip(class_ids, predicted_pixels) if pixels.get(int(c), 0) > 0 and int(n) == 0]


def failure_text(vanished: Sequence[dict]) -> str:
    """One line saying which classes vanished (for the CLI, the log and the model card)."""
    what = ", ".join(f"{v['class_id']} {v['class_name']} ({v['train_pixels']} training px)" for v in vanished)
    return (f"training failed: the model never predicts class{'es' if len(vanished) > 1 else ''} {what}, present in "
            "the training labels")


def combine_datasets(folders: Sequence) -> tuple[dict, dict]:
    """One training set from dataset folders of one band list: ``(info, {split: (xs, ys)})``.

    Several scenes train one model (the shipped pretrained one, leave-one-scene-out
    checks). Normalization is pooled over the training splits (each dataset's mean
    and variance weighted by its training patches); class pixels are summed.

    Parameters
    ----------
    folders : sequence of path
        Dataset folders (:func:`snap_pc_models.dataset.build_dataset`) with the same
        bands, patch size and classes.

    Returns
    -------
    info : dict
        The first dataset's description with ``datasets``, ``image`` and ``labels``
        listing every dataset (one dataset: its own description unchanged), pooled
        ``norm_mean``/``norm_std`` and summed split counts.
    data : dict
        Split name -> (x shards, y shards), memory-mapped.
    """
    folders = [Path(f) for f in folders]
    if not folders:
        raise TrainError("no dataset given")
    infos = [load_dataset_info(f) for f in folders]
    data = {s: ([], []) for s in SPLITS}
    for f, i in zip(folders, infos):
        for what in ("bands", "patch_size", "classes"):
            if i[what] != infos[0][what]:
                raise TrainError(f"datasets {folders[0]} and {f} differ in {what.replace('_', ' ')} "
                                 f"({infos[0][what]} vs {i[what]}): build them with the same --bands, --indices and "
                                 "--patch-size")
        for s in SPLITS:
            xs, ys = open_split(f, i, s)
            data[s][0].extend(xs)
            data[s][1].extend(ys)
    if len(infos) == 1:
        return infos[0], data
    n = np.array([i["splits"]["train"]["patches"] for i in infos], dtype=np.float64)[:, None]
    means = np.array([i["norm_mean"] for i in infos])
    stds = np.array([i["norm_std"] for i in infos])
    mean = (n * means).sum(axis=0) / n.sum()
    var = (n * (stds**2 + means**2)).sum(axis=0) / n.sum() - mean**2
    std = np.sqrt(np.maximum(var, 0.0))
    info = dict(infos[0])
    info.update(datasets=[str(f) for f in folders], image=[i["image"] for i in infos],
                train_shard_scenes=[k for k, i in enumerate(infos) for _ in i["splits"]["train"]["shards"]],
                labels=[i["labels"] for i in infos], norm_mean=mean.tolist(),
                norm_std=np.where(std > 1e-6, std, 1.0).tolist())
    info["splits"] = {}
    for s in SPLITS:
        pixels: dict[str, int] = {}
        for i in infos:
            for k, v in i["splits"][s]["class_pixels"].items():
                pixels[k] = pixels.get(k, 0) + int(v)
        info["splits"][s] = {"patches": int(sum(i["splits"][s]["patches"] for i in infos)), "class_pixels": pixels}
    return info, data


def pretrained_start(init, bands: Sequence[str], class_ids: Sequence[int]):
    """The Keras model and metadata to fine-tune from: ``(model, ModelMetadata)``.

    `init` is an ONNX model written by ``snap-pc train`` (or the shipped one):
    its weights are read from the Keras checkpoint beside it (``STEM.keras`` or
    ``STEM.best.keras``), its bands, classes and normalization from its
    metadata. The dataset must have the model's bands and classes.
    """
    from snap_operators.io.onnx_model import ModelError, read_metadata

    from .attention_unet import load_keras_model

    init = Path(init)
    try:
        meta = read_metadata(init)
    except ModelError as exc:
        raise TrainError(f"--init: {exc}") from None
    stem = init.with_suffix("")
    weights = next((p for p in (Path(f"{stem}.keras"), Path(f"{stem}.best.keras")) if p.is_file()), None)
    if weights is None:
        raise TrainError(f"--init {init}: no Keras weights beside it ({stem.name}.keras or {stem.name}.best.keras)")
    if tuple(meta.input_bands) != tuple(bands):
        raise TrainError(f"--init {init} reads {','.join(meta.input_bands)}; the dataset has {','.join(bands)}: build "
                         "it with --bands and --indices matching the model")
    if tuple(meta.class_ids) != tuple(class_ids):
        raise TrainError(f"--init {init} has classes {list(meta.class_ids)}; the dataset has {list(class_ids)}")
    return load_keras_model(weights), meta


def move_thresholds(model, xs, ys, mean, std, class_ids, seed: int = 0, max_pixels: int = MAX_THRESHOLD_PIXELS,
                    batch_size: int = 16) -> dict:
    """Add to `model`'s logits the bias that makes it predict each class on its training-label share.

    The logits of (at most `max_pixels`, drawn with `seed`) labelled training pixels give the bias
    (:func:`snap_pc_models.thresholds.class_share_bias`); it is added to the bias of the layer
    ``logits``, so the exported model carries it.

    Returns
    -------
    dict
        ``{"bias", "label_share", "share_before", "share_after"}``, each class id (str) -> value;
        shares over the sampled pixels.
    """
    import keras

    from .thresholds import class_share_bias

    # logits, not log(probabilities): a vanished class's probabilities underflow any floor put
    # under them, and a bias fitted above the floor then falls short of bringing it back
    logit_model = keras.Model(model.inputs[0], model.get_layer("logits").output)
    ids = np.asarray(class_ids)
    lut = class_index(class_ids)
    labelled = sum(int((lut[np.asarray(y)] >= 0).sum()) for y in ys)
    keep = min(1.0, max_pixels / max(labelled, 1))
    rng = np.random.default_rng(seed)
    logs, labels = [], []
    for x_shard, y_shard in zip(xs, ys):
        for i, z in predicted_batches(logit_model, x_shard, mean, std, batch_size):
            y = lut[np.asarray(y_shard[i:i + batch_size])]
            pick = (y >= 0) & (rng.random(y.shape) < keep)
            logs.append(z[pick])
            labels.append(y[pick])
    logits, labels = np.concatenate(logs), np.concatenate(labels)
    bias = class_share_bias(logits, labels)
    layer = model.get_layer("logits")
    kernel, old = layer.get_weights()
    layer.set_weights([kernel, old + bias.astype(old.dtype)])

    def shares(v):
        return dict(zip(map(str, class_ids), map(float, np.bincount(v, minlength=len(ids)) / max(len(v), 1))))

    return {"bias": dict(zip(map(str, class_ids), map(float, bias))), "label_share": shares(labels),
            "share_before": shares(np.argmax(logits, axis=1)), "share_after": shares(np.argmax(logits + bias, axis=1))}


def thresholds_text(moved: dict) -> str:
    """One line: each class's bias and predicted share before and after, against its label share."""
    parts = [f"{c} {b:+.2f} ({100 * moved['share_before'][c]:.1f} -> {100 * moved['share_after'][c]:.1f} %, "
             f"labels {100 * moved['label_share'][c]:.1f} %)" for c, b in moved["bias"].items()]
    return "thresholds moved to the training labels' class shares: " + ", ".join(parts)


def relabel_confident(model, xs, ys, mean, std, class_ids, threshold: float, batch_size: int = 16):
    """Self-training labels: where the network is at least `threshold` sure, its class; elsewhere the given one.

    Fills what the rules left unclassified and corrects the labels the network
    confidently contradicts. Returns ``(new ys, filled pixels, changed pixels)``.
    """
    ids = np.asarray(class_ids, dtype=np.uint8)
    out, filled, changed = [], 0, 0
    for x_shard, y_shard in zip(xs, ys):
        y_new = np.array(y_shard, dtype=np.uint8)
        for i, p in predicted_batches(model, x_shard, mean, std, batch_size):
            sure = p.max(axis=-1) >= threshold
            pred = ids[p.argmax(axis=-1)]
            y = y_new[i:i + batch_size]
            filled += int((sure & (y == 0)).sum())
            changed += int((sure & (y != 0) & (y != pred)).sum())
            y[sure] = pred[sure]
        out.append(y_new)
    return out, filled, changed


def check_options(out, *, overwrite: bool = False, epochs: int = 30, loss: str | None = None,
                  weight_average: float = 0.0,
                  atmosphere: float | None = None, ignore_border: int = 0, self_training: int = 0,
                  confidence: float = 0.9, n_datasets: int = 1, reference=None, reference_augmentation: str = "none",
                  rules_map=None, min_rule_margin: float | None = None, mapping: dict | None = None,
                  reference_field: str | None = None, patience: int = 5, batch_size: int | None = None,
                  learning_rate: float | None = None, seed: int = 0) -> None:
    """Refuse, in one line, options :func:`train` cannot run with (:class:`TrainError`), before any
    work: ``snap-pc train --image`` calls it before it builds the dataset. Arguments as :func:`train`'s,
    `n_datasets` the number of datasets. The reference is read here too (its attribute, codes or
    class names against `mapping`), not only when the trained model is scored against it."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise TrainError(f"--out must name an .onnx file, got {out}")
    if out.exists() and not overwrite:
        raise TrainError(f"{out} exists (use --overwrite)")
    if not out.parent.is_dir():
        raise TrainError(f"output folder {out.parent} does not exist")
    if epochs < 1:
        raise TrainError(f"epochs must be >= 1, got {epochs}")
    if seed < 0:
        raise TrainError(f"seed must be >= 0, got {seed}")
    if patience < 0:
        raise TrainError(f"patience must be >= 0 epochs, got {patience}")
    if batch_size is not None and batch_size < 1:
        raise TrainError(f"batch size must be >= 1, got {batch_size}")
    if learning_rate is not None and not 0 < learning_rate < math.inf:
        raise TrainError(f"learning rate must be a number > 0, got {learning_rate}")
    if loss is not None and loss not in LOSSES:
        raise TrainError(f"unknown loss '{loss}'; known: {', '.join(LOSSES)}")
    if not 0 <= weight_average < 1:
        raise TrainError(f"weight average momentum must be in [0, 1), got {weight_average}")
    if atmosphere is not None and not 0 <= atmosphere < 0.5:
        raise TrainError(f"atmosphere (largest path reflectance) must be in [0, 0.5), got {atmosphere}")
    if ignore_border < 0 or self_training < 0 or not 0.5 <= confidence < 1:
        raise TrainError(f"need ignore_border >= 0, self_training >= 0 and confidence in [0.5, 1) "
                         f"(got {ignore_border}, {self_training}, {confidence})")
    if reference is not None and n_datasets > 1:
        raise TrainError("--reference scores the training image: give one dataset")
    if reference_augmentation != "none" and reference is None:
        raise TrainError("a test-time augmentation reads the class map scored against a reference: give --reference")
    if (rules_map is not None or min_rule_margin is not None) and reference is None:
        raise TrainError("a rules map is fused with the network's map to score it against a reference: give --reference")
    if min_rule_margin is not None and rules_map is None:
        raise TrainError("a least rule margin fuses the network's map with a rules map: give --rules-map")
    if min_rule_margin is not None and not min_rule_margin >= 0:
        raise TrainError(f"least rule margin must be >= 0 (Infinity: the network alone), got {min_rule_margin}")
    if reference_augmentation not in AUGMENTATIONS:
        raise TrainError(f"unknown test-time augmentation {reference_augmentation!r} (one of {', '.join(AUGMENTATIONS)})")
    if reference is not None:
        from snap_operators.io.reference import ReferenceDataError, check_reference, class_groups

        try:
            check_reference(reference, reference_field, class_groups(mapping)[0], field_option="--reference-field")
        except ReferenceDataError as exc:
            raise TrainError(str(exc)) from None
    if rules_map is not None and not Path(rules_map).exists():
        raise TrainError(f"rules map {rules_map} does not exist")
    lacking = lacking_classes(mapping, "--mapping", "reference codes")
    if lacking:
        raise TrainError(lacking)


def train(dataset, out, *, config: str = "small", epochs: int = 30, seed: int = 0, patience: int = 5,
          batch_size: int | None = None, learning_rate: float | None = None, dice_weight: float = 0.5,
          augment: bool = True, model_name: str | None = None, overwrite: bool = False, verbose: bool = True,
          reference=None, reference_field: str | None = None, mapping: dict | None = None,
          reference_augmentation: str = "none", loss: str | None = None, balance: bool = True, ignore_border: int = 0,
          self_training: int = 0, confidence: float = 0.9, init=None, weight_average: float = 0.0,
          threshold_moving: bool | None = None, atmosphere: float | None = None, rules_map=None,
          min_rule_margin: float | None = None, **config_overrides) -> dict:
    """Train on one or several dataset folders and export ``out`` (ONNX) with its report files.

    Parameters
    ----------
    dataset : path or sequence of path
        Folder(s) written by :func:`snap_pc_models.dataset.build_dataset` (several: one
        model over all their scenes, :func:`combine_datasets`).
    out : path
        ONNX file to write; report files get the same stem.
    config : str
        ``small`` or ``default`` (see :data:`snap_pc_models.attention_unet.CONFIGS`).
    epochs, patience : int
        Maximum epochs; epochs without validation-loss improvement before stopping.
    seed : int
        Seeds weights, shuffling and augmentation (deterministic on CPU).
    reference : path, optional
        Independent reference (raster or vector, as ``snap-pc assess`` reads it): the network's
        class map of the whole image (``MODEL.classes.tif``) and the rules (their map with
        `rules_map`, else the label masks) are both scored against it on the same pixels
        (``metrics["reference"]``, see :func:`snap_pc_models.evaluate.compare_with_reference`).
        One dataset only.
    reference_field, mapping
        Class attribute of a vector reference; reference code -> class id.
    reference_augmentation : {'none', 'flips', 'dihedral'}
        Test-time augmentation of the class map scored against `reference`
        (``AttentionUNetInference``'s ``testTimeAugmentation``): score the map as the inference
        graph will make it.
    rules_map : path, optional
        The rules' class map with its margin (the Progressive Classifier's target with
        ``outputMargin=true``, on the training image's grid): with `reference`, the map the
        inference graph writes (the network's fused with it by ``RuleFusion``,
        ``MODEL.fused.tif``) is scored too (:func:`snap_pc_models.evaluate.fuse_scene`), and the
        rules are scored as this map, not as the label masks.
    min_rule_margin : float, optional
        ``RuleFusion``'s ``minMargin`` for `rules_map` (default: the graph's, 0.03).
    loss : {'ce', 'gce', 'sce', 'bootstrap', 'smooth'}, optional
        Cross-entropy, or a loss robust to label noise (:data:`LOSSES`; ``smooth``: cross-entropy
        with label smoothing); soft Dice is added. Default: :func:`default_loss`.
    balance : bool
        Draw training patches class-balanced (:func:`balanced_patch_weights`); the default, as the
        lever that lost a class least often on the real scenes (docs/unet.md). False: uniform draws.
    ignore_border : int
        Leave out of the loss labels within this many px of another class (:func:`ignore_borders`).
    weight_average : float
        Momentum of an exponential moving average of the weights (Polyak
        averaging; 0: off), which validation, early stopping and the exported
        model use (:class:`_WeightAverage`).
    threshold_moving : bool or None
        True: after training, move each class's decision threshold (a bias on the last layer) so
        the model predicts every class on its share of the training labels
        (:func:`snap_pc_models.thresholds.class_share_bias`, :func:`move_thresholds`): undoes the
        over-prediction class balancing teaches, and brings back a class predicted nowhere. Right
        for a model that maps the scene it learned; with several datasets the shares are pooled,
        which a new scene need not have (docs/unet.md measures both). None (the default): only as
        a rescue, when a class of the training labels is predicted nowhere (a failed training
        otherwise); a model that lost no class is left as trained. False: never.
    atmosphere : float or None
        Largest path reflectance (at B2; 0: off) added to or taken from each training patch, the
        index channels recomputed (:func:`snap_pc_models.augment.atmospheric_offset`): the scenes
        seen through other atmospheres, so a model trained on top-of-atmosphere scenes still
        finds water on surface-reflectance ones and the reverse (docs/unet.md). None (the
        default): :data:`MULTI_SCENE_ATMOSPHERE` with several datasets (a model for other scenes),
        where the channels allow it; 0 with one (a model of the scene it learns, where it cost
        accuracy).
    self_training : int
        Rounds of relabelling the training patches with the network's confident classes
        (:func:`relabel_confident`, at least `confidence`) and training on.
    init : path, optional
        ONNX model to fine-tune from (:func:`pretrained_start`): its weights, bands and
        normalization. With `reference`, that model's own map of the image
        (``MODEL.init.tif``) is scored too, and a fine-tuning that ends under it is warned of.

    Returns
    -------
    dict
        ``{"onnx": path, "metrics": {...}, "history": {...}, "files": {...}}``.
    """
    _require_tensorflow()
    import keras
    import tensorflow as tf

    out = Path(out)
    folders = [dataset] if isinstance(dataset, (str, os.PathLike)) else list(dataset)
    check_options(out, overwrite=overwrite, epochs=epochs, loss=loss, weight_average=weight_average,
                  atmosphere=atmosphere, ignore_border=ignore_border, self_training=self_training,
                  confidence=confidence, n_datasets=len(folders), reference=reference,
                  reference_augmentation=reference_augmentation, rules_map=rules_map,
                  min_rule_margin=min_rule_margin, mapping=mapping, reference_field=reference_field,
                  patience=patience, batch_size=batch_size, learning_rate=learning_rate, seed=seed)
    info, data = combine_datasets(folders)
    asked_loss, loss = loss, default_loss(len(folders), init, self_training) if loss is None else loss
    if verbose and asked_loss is None and loss == "smooth":
        print(f"one dataset: label smoothing {SMOOTHING:g} (--loss ce for plain cross-entropy)", flush=True)
    elif verbose and asked_loss is None and default_loss(len(folders), init) == "smooth":
        print("self-training: plain cross-entropy (label smoothing holds the confidence it selects on near "
              f"{1 - SMOOTHING:g} + {SMOOTHING:g} / classes; --loss smooth for it)", flush=True)
    if threshold_moving and len(folders) > 1:
        log.warning("threshold moving with %d datasets: the thresholds go to their pooled class shares, which a new "
                    "scene need not have (on scenes left out: no better than without, docs/unet.md)", len(folders))
    try:
        cfg = get_config(config, batch_size=batch_size, learning_rate=learning_rate, **config_overrides)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    patch = info["patch_size"]
    if patch % cfg.size_multiple:
        raise TrainError(f"dataset patches of {patch} px are not a multiple of {cfg.size_multiple} "
                         f"(2**depth of configuration '{cfg.name}'): rebuild the dataset with --patch-size")
    class_ids = [c["id"] for c in info["classes"]]
    ceiling = 1.0 - SMOOTHING + SMOOTHING / len(class_ids)
    if self_training and loss == "smooth" and confidence >= ceiling - 0.01:
        # the smoothed loss is lowest at `ceiling`: hardly a prediction would reach the threshold
        raise TrainError(f"--confidence {confidence:g}: with label smoothing the network's probabilities stop near "
                         f"{ceiling:.2f} ({len(class_ids)} classes), so self-training would keep almost nothing: "
                         "ask for less, or --loss ce")
    bands = info["bands"]
    asked_atmosphere, atmosphere = atmosphere, _atmosphere(atmosphere, len(folders), bands) if augment else 0.0
    if verbose and atmosphere and asked_atmosphere is None:
        print(f"{len(folders)} datasets: training patches seen through other atmospheres (path reflectance up to "
              f"+/-{atmosphere:g} at B2; --atmosphere 0 turns it off)", flush=True)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    if init is not None:
        model, init_meta = pretrained_start(init, bands, class_ids)
        # the pretrained features expect the pretrained normalization
        mean = np.asarray(init_meta.norm_mean, dtype="float32")
        std = np.asarray(init_meta.norm_std, dtype="float32")
    else:
        model = build_attention_unet(len(bands), len(class_ids), cfg)
        mean = np.asarray(info["norm_mean"], dtype="float32")
        std = np.asarray(info["norm_std"], dtype="float32")
    lut = class_index(class_ids)
    weights = class_weights(info["splits"]["train"]["class_pixels"], class_ids)
    warn_one_class(info["splits"]["train"]["class_pixels"], init)

    scenes = info.get("train_shard_scenes")
    patch_weights = balanced_patch_weights(data["train"][1], class_ids, scenes) if balance else None
    train_batches = _Batches(*data["train"], mean, std, lut, cfg.batch_size, True, augment, seed,
                             patch_weights, ignore_border, MIN_BATCHES, bands, atmosphere)
    val_batches = _Batches(*data["val"], mean, std, lut, cfg.batch_size, False, False, seed)

    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=_loss(weights, dice_weight, loss),
                  metrics=[_labelled_accuracy])
    stem = out.with_suffix("")
    files = {k: Path(f"{stem}.{k}") for k in ("best.keras", "history.csv", "curves.png", "metrics.json",
                                               "confusion_val.png", "confusion_test.png", "card.md")}
    if reference is not None:
        files["classes.tif"] = Path(f"{stem}.classes.tif")
        if rules_map is not None:
            from .evaluate import check_rules_map

            check_rules_map(rules_map, info)
            files["fused.tif"] = Path(f"{stem}.fused.tif")
        if init is not None:
            files["init.tif"] = Path(f"{stem}.init.tif")
        for key in ("classes.tif", "fused.tif", "init.tif"):
            if key in files and files[key].exists() and not overwrite:
                raise TrainError(f"{files[key]} exists (use --overwrite)")
    ckpt_tmp = staged_path(files["best.keras"])  # keeps .keras: Keras picks the format by it
    started = time.perf_counter()
    history: dict[str, list[float]] = {}
    rounds = []

    def fit(n_epochs: int) -> None:
        # The average goes first: validation, early stopping and the checkpoint all see it.
        callbacks = [_WeightAverage(weight_average)] if weight_average else []
        callbacks += [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
            keras.callbacks.ModelCheckpoint(str(ckpt_tmp), monitor="val_loss", save_best_only=True),
            _EpochLine(n_epochs) if verbose else keras.callbacks.Callback(),
        ]
        hist = model.fit(train_batches, validation_data=val_batches, epochs=n_epochs, callbacks=callbacks, verbose=0)
        for k, vals in hist.history.items():
            history.setdefault(k, []).extend(float(v) for v in vals)

    try:
        fit(epochs)
        for r in range(self_training):
            ys, filled, changed = relabel_confident(model, data["train"][0], data["train"][1], mean, std, class_ids,
                                                    confidence)
            train_batches.ys = ys
            if balance:
                train_batches.weights = balanced_patch_weights(ys, class_ids, scenes)
            rounds.append({"round": r + 1, "filled_pixels": filled, "changed_pixels": changed,
                           "first_epoch": len(history["val_loss"]) + 1})
            if verbose:
                print(f"self-training round {r + 1}: {filled} unlabelled px filled, {changed} labels changed "
                      f"(confidence >= {confidence})", flush=True)
            fit(max(1, epochs // 2))
    except Exception:
        ckpt_tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started

    def scored():
        res = {split: evaluate_split(model, *data[split], mean, std, class_ids) for split in ("val", "test")}
        # every patch (training ones too): a class the model predicts nowhere has vanished
        seen = evaluate_split(model, *data["train"], mean, std, class_ids).matrix.sum(axis=0)
        seen = seen + sum(r.matrix.sum(axis=0) for r in res.values())
        return res, seen, vanished_classes(class_ids, info["splits"]["train"]["class_pixels"], seen)

    thresholds = None
    # scored as trained, unless the thresholds move anyway; by default they move only to rescue a vanished class
    results, seen, vanished = scored() if not threshold_moving else (None, None, [])
    if threshold_moving or (threshold_moving is None and vanished):
        if vanished and verbose:
            # the rescue: without it this is a failed training, and moving the thresholds is the one
            # lever that brought every vanished class back on the real scenes (docs/unet.md)
            print(f"{failure_text(vanished).removeprefix('training failed: ')}: moving the decision thresholds "
                  f"to bring {'them' if len(vanished) > 1 else 'it'} back (--no-threshold-moving keeps the model as "
                  "trained)", flush=True)
        thresholds = dict(move_thresholds(model, *data["train"], mean, std, class_ids, seed),
                          rescued=[v["class_id"] for v in vanished])
        results, seen, vanished = scored()
    if thresholds and verbose:
        print(thresholds_text(thresholds), flush=True)
    # the model kept is the best epoch of the last fit (self-training rounds fit on after the first)
    last_fit = rounds[-1]["first_epoch"] - 1 if rounds else 0
    best_epoch = last_fit + int(np.argmin(history["val_loss"][last_fit:])) + 1
    trained_epochs = len(history["val_loss"])

    metrics = {"config": cfg.to_dict(), "seed": seed, "epochs_run": trained_epochs, "best_epoch": best_epoch,
               "train_seconds": seconds,
               "train_patches_per_second": len(train_batches) * cfg.batch_size * trained_epochs / seconds,
               "class_weights": dict(zip(map(str, class_ids), map(float, weights))),
               "levers": {"loss": loss, "balance": balance, "ignore_border": ignore_border,
                          "self_training": rounds, "confidence": confidence if self_training else None,
                          "init": str(init) if init is not None else None, "weight_average": weight_average,
                          "threshold_moving": thresholds, "atmosphere": atmosphere},
               "datasets": [str(f) for f in folders]}
    for split in ("val", "test"):
        entry = dict(results[split].metrics)
        entry["baseline_majority"] = _majority_baseline(info["splits"]["train"]["class_pixels"], results[split])
        metrics[split] = entry
    under = under_majority(metrics)
    if under:
        log.warning("%s", under)
    metrics["predicted_pixels"] = dict(zip(map(str, class_ids), map(int, seen)))
    metrics["vanished_classes"] = vanished
    metrics["status"] = "failed" if vanished else "ok"

    by_id = {c["id"]: c for c in info["classes"]}
    theoretical = receptive_field_radius(cfg.depth)
    halo = effective_halo(model, len(bands), cfg.size_multiple, theoretical, seed=seed)
    meta = ModelMetadata(
        model_name=model_name or f"attention_unet_{cfg.name}", model_version=MODEL_VERSION,
        input_bands=tuple(bands), norm_mean=tuple(map(float, mean)), norm_std=tuple(map(float, std)),
        class_ids=tuple(class_ids), class_names=tuple(by_id[c]["name"] for c in class_ids),
        class_colors=tuple(tuple(by_id[c]["color"]) for c in class_ids),
        size_multiple=cfg.size_multiple, halo=halo, opset=DEFAULT_OPSET,
    )
    real = [(np.asarray(data["test"][0][0][:4], dtype="float32") - mean) / std]  # a few real test patches
    parity = export_onnx(model, meta, out, check_inputs=real, seed=seed)
    metrics["onnx"] = {"max_abs_diff_vs_tensorflow": parity["max_abs_diff"], "checked_shapes": parity["checked"],
                       "halo": halo, "halo_theoretical": theoretical, **{k: v for k, v in meta.to_props().items()
                                                                          if k in ("size_multiple", "opset")}}
    if reference is not None:
        from .evaluate import DEFAULT_MIN_MARGIN, compare_with_reference, fuse_scene, predict_scene

        predict_scene(out, info, files["classes.tif"], overwrite=overwrite, augmentation=reference_augmentation)
        margin = DEFAULT_MIN_MARGIN if min_rule_margin is None else float(min_rule_margin)
        if rules_map is not None:
            fuse_scene(files["classes.tif"], rules_map, files["fused.tif"], min_margin=margin, overwrite=overwrite)
        if init is not None:
            predict_scene(init, info, files["init.tif"], overwrite=overwrite, augmentation=reference_augmentation)
        metrics["reference"] = compare_with_reference(files["classes.tif"], info, reference, field=reference_field,
                                                      mapping=mapping, fused=files.get("fused.tif"),
                                                      start=files.get("init.tif"), rules_map=rules_map)
        metrics["reference"]["augmentation"] = reference_augmentation
        if rules_map is not None:
            metrics["reference"].update(rules_map=str(rules_map), min_rule_margin=margin)
        if init is not None:
            metrics["reference"]["init"] = str(init)
            lost = fine_tuning_loss(metrics["reference"])
            if lost:
                log.warning("%s", lost)
    if ckpt_tmp.exists() and not thresholds:
        os.replace(ckpt_tmp, files["best.keras"])
    else:  # the moved thresholds are in the weights: the Keras file stays the exported model
        ckpt_tmp.unlink(missing_ok=True)
        model.save(files["best.keras"])
    _write_history(history, files["history.csv"])
    _plot_curves(history, best_epoch, files["curves.png"], cfg.name)
    for split in ("val", "test"):
        subject = _confusion_subject(model_name or cfg.name, split)
        plot_confusion(results[split], files[f"confusion_{split}.png"], subject)
    write_text(files["metrics.json"], json.dumps(metrics, indent=2, default=float))
    write_text(files["card.md"], model_card(info, meta, cfg, metrics, out))
    return {"onnx": out, "metrics": metrics, "history": history, "files": files}


def under_majority(metrics: dict) -> str | None:
    """The warning for a network under the majority-class baseline on both held-out splits, or None.

    Predicting the training labels' most frequent class everywhere is the trivial model. A network
    under it in overall accuracy *and* in mean IoU, on the validation and on the test blocks, has
    not learnt the labels (too few epochs, or a scene of mostly one class). OA alone would not say
    so: class-balanced training trades some of the majority class for the rare ones, which mean IoU
    rewards. Issue 17 began with a report whose high OA was the majority's and nobody noticed.

    Examples
    --------
    >>> base = {"class_id": 3, "overall_accuracy": 0.98, "mean_iou": 0.49}
    >>> m = {s: {"overall_accuracy": a, "mean_iou": 0.44, "baseline_majority": base} for s, a in (("val", 0.79),
    ...                                                                                        ("test", 0.89))}
    >>> under_majority(m)[:60]
    'the network scores under the majority-class baseline (class '
    """
    rows = [(s, metrics[s], metrics[s]["baseline_majority"]) for s in ("val", "test")]
    if not all(m["overall_accuracy"] < b["overall_accuracy"] and m["mean_iou"] < b["mean_iou"] for _, m, b in rows):
        return None
    scores = "; ".join(f"{s} OA {m['overall_accuracy']:.3f} against {b['overall_accuracy']:.3f}, mean IoU "
                       f"{m['mean_iou']:.3f} against {b['mean_iou']:.3f}" for s, m, b in rows)
    return (f"the network scores under the majority-class baseline (class {rows[0][2]['class_id']} everywhere) "
            f"on both held-out splits ({scores}): it has not learnt the labels; train longer (--epochs), or check "
            "that the labels hold more than one class")


def fine_tuning_loss(comparison: dict) -> str | None:
    """The warning for a fine-tuning that ends under the model it started from against the
    reference (:func:`snap_pc_models.evaluate.compare_with_reference`'s result with ``start``),
    or None.

    Fine-tuning on a scene's rule masks teaches a model the rules' errors there: after three epochs
    it ended under the model as it was in four of the ten readings of docs/unet.md's fine-tuning
    table (Aberystwyth, Trombetas, Wroclaw, eo-box against OSM).
    """
    start = comparison.get("start")
    if not start:
        return None
    tuned, was = comparison["unet"]["overall_accuracy"], start["overall_accuracy"]
    if tuned >= was:
        return None
    return (f"fine-tuning ended under the model it started from against the reference (overall accuracy "
            f"{tuned:.3f}, {was:.3f} before): use {Path(comparison.get('init', 'the --init model')).name} as it is, "
            "or train from scratch on this scene (without --init)")


def default_loss(n_datasets: int, init=None, self_training: int = 0) -> str:
    """``loss=None``'s value: ``smooth`` for a model of one dataset trained from scratch (a scene's own
    rule masks: measured on nine real scenes, docs/unet.md "Label smoothing"), ``ce`` otherwise (a
    model of several scenes, measured no better with it; one fine-tuned from a model trained with
    cross-entropy, not measured with it; or one that self-trains, whose confidence threshold reads
    probabilities that smoothing holds near 0.9 + 0.1 / classes: mean OA change +0.013 with it
    against +0.020 with cross-entropy on six scenes, docs/unet.md "How much is the seed's?").

    >>> default_loss(1), default_loss(3), default_loss(1, init="pretrained.onnx"), default_loss(1, self_training=2)
    ('smooth', 'ce', 'ce', 'ce')
    """
    return "smooth" if n_datasets == 1 and init is None and not self_training else "ce"


def default_atmosphere(n_datasets: int) -> float:
    """``atmosphere=None``'s value: :data:`MULTI_SCENE_ATMOSPHERE` for a model of several datasets
    (for other scenes), 0 for a model of one (of the scene it learns)."""
    return MULTI_SCENE_ATMOSPHERE if n_datasets > 1 else 0.0


def _atmosphere(asked: float | None, n_datasets: int, channels: Sequence[str]) -> float:
    """The atmospheric augmentation a training uses: `asked`, or :func:`default_atmosphere` where
    the channels allow it (else 0, with a warning)."""
    value = default_atmosphere(n_datasets) if asked is None else float(asked)
    if value:
        try:
            check_channels(channels)
        except AugmentError as exc:
            if asked is not None:
                raise TrainError(f"--atmosphere: {exc}") from None
            log.warning("several datasets, but no atmospheric augmentation: %s", exc)
            return 0.0
    return value


def _confusion_subject(name: str, split: str) -> str:
    """Title line of a split's confusion figure: ``"Attention U-Net small, validation split"``."""
    return f"Attention U-Net {name}, {'validation' if split == 'val' else split} split"


class _WeightAverage:
    """Polyak averaging: an exponential moving average of the trainable weights, updated after
    every batch, swapped in for validation and at each epoch's end (so early stopping keeps and
    restores the best *average*), swapped out again while training goes on. The average is less
    noisy than the last step's weights, which on a small scene drift with the last batches."""

    def __new__(cls, momentum: float):
        import keras

        class WeightAverage(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.avg = [np.array(w.numpy()) for w in self.model.trainable_weights]
                self.raw = None

            def on_train_batch_end(self, batch, logs=None):
                for a, w in zip(self.avg, self.model.trainable_weights):
                    a *= momentum
                    a += (1.0 - momentum) * w.numpy()

            def _swap_in(self):
                self.raw = [w.numpy() for w in self.model.trainable_weights]
                for a, w in zip(self.avg, self.model.trainable_weights):
                    w.assign(a)

            def _swap_out(self):
                if self.raw is not None:
                    for r, w in zip(self.raw, self.model.trainable_weights):
                        w.assign(r)
                    self.raw = None

            def on_test_begin(self, logs=None):
                if self.raw is None:
                    self._swap_in()

            def on_test_end(self, logs=None):
                self._swap_out()

            def on_epoch_end(self, epoch, logs=None):
                self._swap_in()

            def on_epoch_begin(self, epoch, logs=None):
                self._swap_out()

        return WeightAverage()


class _EpochLine:
    """One progress line per epoch (loss, accuracy on labelled pixels, time)."""

    def __new__(cls, epochs):
        import keras

        class EpochLine(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                print(f"epoch {epoch + 1:>3}/{epochs}  loss {logs.get('loss', float('nan')):.4f}  "
                      f"acc {logs.get('_labelled_accuracy', float('nan')):.3f}  "
                      f"val_loss {logs.get('val_loss', float('nan')):.4f}  "
                      f"val_acc {logs.get('val__labelled_accuracy', float('nan')):.3f}  "
                      f"({time.perf_counter() - self.t0:.1f} s)", flush=True)

        return EpochLine()


def _write_history(history: dict, path: Path) -> None:
    keys = list(history)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["epoch"] + keys)
    for i in range(len(history[keys[0]])):
        w.writerow([i + 1] + [f"{history[k][i]:.6f}" for k in keys])
    write_text(path, buf.getvalue())


def _plot_curves(history: dict, best_epoch: int, path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    a.plot(epochs, history["loss"], label="train")
    a.plot(epochs, history["val_loss"], label="validation")
    a.set_ylabel("loss (weighted CE + Dice)")
    b.plot(epochs, history.get("_labelled_accuracy", []), label="train")
    b.plot(epochs, history.get("val__labelled_accuracy", []), label="validation")
    b.set_ylabel("accuracy on labelled pixels")
    for ax in (a, b):
        ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Attention U-Net ({name}) training")
    fig.tight_layout()
    save_figure(fig, path)


_LOSS_NAMES = {"ce": "weighted cross-entropy", "gce": f"weighted generalized cross-entropy (q {GCE_Q})",
               "sce": f"weighted symmetric cross-entropy (beta {SCE_BETA})",
               "bootstrap": f"weighted hard-bootstrapping cross-entropy (beta {BOOTSTRAP_BETA})",
               "smooth": f"weighted cross-entropy with label smoothing ({SMOOTHING})"}


def _lever_text(levers: dict) -> str:
    """The loss and the noisy-label levers of a training, in words (model card)."""
    parts = [_LOSS_NAMES[levers.get("loss", "ce")] + " + soft Dice"]
    if levers.get("balance"):
        parts.append("class-balanced patch sampling")
    if levers.get("ignore_border"):
        parts.append(f"labels within {levers['ignore_border']} px of another class left out")
    if levers.get("self_training"):
        parts.append(f"{len(levers['self_training'])} self-training round(s) at confidence {levers['confidence']}")
    if levers.get("weight_average"):
        parts.append(f"weights averaged (exponential moving average, momentum {levers['weight_average']:g})")
    moved = levers.get("threshold_moving")
    if moved:
        parts.append("decision thresholds moved to the training labels' class shares"
                     + (f" to bring back class(es) {', '.join(map(str, moved['rescued']))}, predicted nowhere as trained"
                        if moved.get("rescued") else ""))
    if levers.get("atmosphere"):
        parts.append(f"patches seen through other atmospheres (path reflectance up to +/-{levers['atmosphere']:g} "
                     "at B2, indices recomputed)")
    if levers.get("init"):
        parts.append(f"fine-tuned from `{Path(levers['init']).name}`")
    return ", ".join(parts)


def _data_lines(info: dict) -> list[str]:
    """The model card's data section: one scene, or every dataset of a multi-scene training."""
    splits = ", ".join(str(info["splits"][s]["patches"]) for s in SPLITS)
    if info.get("datasets"):
        return ([f"- {len(info['datasets'])} scenes (datasets), {splits} train/validation/test patches of "
                 f"{info['patch_size']} px, normalization pooled over their training splits:"]
                + [f"  - image `{i}`, labels `{lab}`" for i, lab in zip(info["image"], info["labels"])])
    return [
        f"- image: `{info['image']}`" + (f"; Sentinel-1: `{info['image_s1']}`" if info.get("image_s1") else ""),
        f"- labels: `{info['labels']}`" + (f" (attribute `{info['field']}`)" if info.get("field") else "")
        + (f", mapped to class ids `{','.join(f'{k}:{v}' for k, v in info['label_mapping'])}`"
           if info.get("label_mapping") else "")
        + (f"; only where the rules' margin (`{info['margin']}`) is at least {info['min_margin']:g}"
           if info.get("margin") else ""),
        f"- scene {info['width']} x {info['height']} px; patches {info['patch_size']} px, stride {info['stride']}; "
        f"spatial blocks of {info['block_size']} px split train/validation/test ({splits} patches)",
    ]


def model_card(info: dict, meta: ModelMetadata, cfg, metrics: dict, onnx_path: Path) -> str:
    """The Markdown model card: data, bands, configuration, metrics, intended use, limits."""
    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    lines = [
        f"# Model card: {meta.model_name} {meta.model_version}",
        "",
    ]
    if metrics.get("vanished_classes"):
        lines += [f"**FAILED TRAINING**: {failure_text(metrics['vanished_classes'])}. Do not use this model; see "
                  "docs/unet.md (rare classes).", ""]
    lines += [
        f"Created {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} by snap-progressive-classifier "
        f"(`snap-pc train`). File: `{onnx_path.name}`.",
        "",
        "## Model",
        f"Attention U-Net (Oktay et al., 2018): configuration `{cfg.name}`, depth {cfg.depth} (input sizes multiples "
        f"of {cfg.size_multiple}), {cfg.base_filters} base filters, 3x3 conv + BatchNorm + ReLU blocks, 2x2 "
        "up-convolutions, additive attention gates on every skip connection, softmax over the classes.",
        f"ONNX opset {meta.opset}, input `bands` (batch, {len(meta.input_bands)}, H, W) float32 normalized, output "
        f"`probabilities` (batch, {len(meta.class_ids)}, H, W). Recommended halo for tiled inference: {meta.halo} px "
        f"(effective receptive field; theoretical {metrics['onnx']['halo_theoretical']} px).",
        f"ONNX Runtime vs TensorFlow: max abs difference {metrics['onnx']['max_abs_diff_vs_tensorflow']:.1e}.",
        "",
        "## Data",
        *_data_lines(info),
        "- class 0 (unclassified by the rules) is ignored by the loss",
        "",
        "## Bands (channel order) and normalization (training split)",
        "| # | band | mean | std |",
        "|---|---|---|---|",
    ]
    lines += [f"| {i} | {b} | {m:.5g} | {s:.5g} |" for i, (b, m, s) in
              enumerate(zip(meta.input_bands, meta.norm_mean, meta.norm_std))]
    lines += ["", "## Training",
              f"Adam (lr {cfg.learning_rate}), batch {cfg.batch_size}, {_lever_text(metrics.get('levers', {}))}, "
              f"seed {metrics['seed']}; {metrics['epochs_run']} epochs, best epoch {metrics['best_epoch']} "
              f"(early stopping on validation loss); {metrics['train_patches_per_second']:.1f} patches/s.",
              "", "## Metrics (labelled pixels of spatially held-out blocks)",
              "| split | OA | kappa | mean IoU | majority-class OA | majority-class mean IoU |",
              "|---|---|---|---|---|---|"]
    for split in ("val", "test"):
        m = metrics[split]
        base = m["baseline_majority"]
        lines.append(f"| {split} | {fmt(m['overall_accuracy'])} | {fmt(m['kappa'])} | {fmt(m['mean_iou'])} | "
                     f"{fmt(base['overall_accuracy'])} | {fmt(base['mean_iou'])} |")
    under = under_majority(metrics)
    if under:
        lines += ["", f"**Warning:** {under}."]
    lines += ["", "| class | test IoU | test F1 | test reference px |", "|---|---|---|---|"]
    for p in metrics["test"]["per_class"]:
        lines.append(f"| {p['class_id']} {p['class_name']} | {fmt(p['iou'])} | {fmt(p['f1'])} | {p['reference_pixels']} |")
    if metrics.get("reference"):
        from .evaluate import format_comparison

        lines += ["", "## Accuracy against the reference (the network, the "
                  + ("rules" if metrics["reference"].get("labels_name", "rules") == "rules" else "training labels")
                  + (" and their fusion" if metrics["reference"].get("fused") else "") + ", same pixels)", ""]
        lines += format_comparison(metrics["reference"])
        lost = fine_tuning_loss(metrics["reference"])
        if lost:
            lines += ["", f"**Warning:** {lost}."]
    lines += ["", "## Intended use",
              "Filling and refining the Progressive Classifier's land-cover map on Sentinel-2 (and Sentinel-1) "
              "scenes like the training scene, through the `AttentionUNetInference` operator "
              "(`graphs/unet_inference.xml`, which keeps the rules' class where their margin says they are "
              "sure and takes the network's elsewhere: `RuleFusion`, docs/unet.md).",
              "", "## Limits",
              "- Labels are the label file's (above): the rule-based classifier's masks in the usual workflow, not "
              "field truth; the network learns their errors too, and the metrics above measure agreement with those "
              "labels on held-out blocks.",
              ("- Trained on the scenes above; other" if info.get("datasets") else "- Trained on one scene; other")
              + " seasons, sensors' processing baselines or regions need new training "
              "or at least a check against reference data (`snap-pc assess`).",
              "- Inputs must be the bands above, in the same units (reflectance 0-1, backscatter in dB), on a "
              "10 m grid; inference refuses a product that lacks any of them.",
              ""]
    return "\n".join(lines)
