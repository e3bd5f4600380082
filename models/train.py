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
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from snap_operators.apps.assess import (
    Assessment,
    accuracy_metrics,
    confusion_matrix,
    plot_confusion,
)
from snap_operators.core.errors import SnapPcError
from snap_operators.core.outputs import save_figure, write_text
from snap_operators.core.staging import staged_path
from snap_operators.io.onnx_model import ModelMetadata

from .attention_unet import build_attention_unet, get_config, receptive_field_radius
from .dataset import SPLITS, load_dataset_info, open_split
from .export import DEFAULT_OPSET, effective_halo, export_onnx

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


class _Batches:
    """Normalized, augmented batches over memory-mapped shards (a keras PyDataset)."""

    def __new__(cls, *args, **kwargs):
        import keras

        # Subclass keras.utils.PyDataset lazily: keras is imported only when training.
        class PatchBatches(keras.utils.PyDataset):
            def __init__(self, xs, ys, mean, std, lut, batch_size, shuffle, augment, seed):
                super().__init__(workers=1, use_multiprocessing=False)
                self.xs, self.ys = xs, ys
                self.mean, self.std, self.lut = mean, std, lut
                self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
                self.index = np.array([(s, i) for s, x in enumerate(xs) for i in range(len(x))], dtype=np.int64)
                self.rng = np.random.default_rng(seed)
                self.order = np.arange(len(self.index))
                if shuffle:
                    self.rng.shuffle(self.order)

            def __len__(self):
                return max(1, -(-len(self.index) // self.batch_size))

            def __getitem__(self, k):
                sel = self.index[self.order[k * self.batch_size:(k + 1) * self.batch_size]]
                x = np.stack([self.xs[s][i] for s, i in sel]).astype("float32")
                y = np.stack([self.ys[s][i] for s, i in sel])
                x = (x - self.mean) / self.std
                y = self.lut[y]
                if self.augment:
                    # Deterministic per (epoch order, batch): flips and quarter turns.
                    aug = np.random.default_rng([int(self.order[k * self.batch_size]), k])
                    turns, flip = int(aug.integers(4)), bool(aug.integers(2))
                    x, y = np.rot90(x, turns, axes=(1, 2)), np.rot90(y, turns, axes=(1, 2))
                    if flip:
                        x, y = x[:, :, ::-1], y[:, :, ::-1]
                return np.ascontiguousarray(x), np.ascontiguousarray(y)

            def on_epoch_end(self):
                if self.shuffle:
                    self.rng.shuffle(self.order)

        return PatchBatches(*args, **kwargs)


def _loss(weights: np.ndarray, dice_weight: float):
    from keras import ops

    n = len(weights)
    w_const = ops.convert_to_tensor(weights)

    def masked_weighted_ce_dice(y_true, y_pred):
        y = ops.cast(y_true, "int32")
        valid = ops.cast(y >= 0, "float32")
        yc = ops.where(y >= 0, y, 0)
        onehot = ops.one_hot(yc, n) * valid[..., None]
        p = ops.clip(y_pred, 1e-7, 1.0)
        ce = -ops.sum(onehot * ops.log(p), axis=-1)
        w = ops.take(w_const, yc) * valid
        loss = ops.sum(w * ce) / ops.maximum(ops.sum(w), 1e-6)
        if dice_weight:
            pv = p * valid[..., None]
            inter = ops.sum(onehot * pv, axis=(0, 1, 2))
            denom = ops.sum(onehot, axis=(0, 1, 2)) + ops.sum(pv, axis=(0, 1, 2))
            present = ops.cast(ops.sum(onehot, axis=(0, 1, 2)) > 0, "float32")
            dice = ops.sum(present * (2 * inter + 1) / (denom + 1)) / ops.maximum(ops.sum(present), 1.0)
            loss = loss + dice_weight * (1.0 - dice)
        return loss

    return masked_weighted_ce_dice


def _labelled_accuracy(y_true, y_pred):
    from keras import ops

    y = ops.cast(y_true, "int32")
    valid = ops.cast(y >= 0, "float32")
    hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y), "float32") * valid
    return ops.sum(hit) / ops.maximum(ops.sum(valid), 1.0)


def evaluate_split(model, xs, ys, mean, std, class_ids, batch_size: int = 8) -> Assessment:
    """Confusion matrix and metrics of `model` on labelled pixels of one split."""
    ids = np.asarray(class_ids)
    m = np.zeros((len(ids), len(ids)), dtype=np.int64)
    for x_shard, y_shard in zip(xs, ys):
        for i in range(0, len(x_shard), batch_size):
            x = (np.asarray(x_shard[i:i + batch_size], dtype="float32") - mean) / std
            pred = ids[np.argmax(np.asarray(model(x, training=False)), axis=-1)]
            m += confusion_matrix(np.asarray(y_shard[i:i + batch_size]), pred, ids)
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
    majority = max(counts, key=counts.get)
    rows = result.matrix.sum(axis=1)
    k = result.labels.index(majority)
    acc = rows[k] / rows.sum()
    present = rows > 0
    iou = np.zeros(len(rows))
    iou[k] = rows[k] / rows.sum()  # TP = its reference pixels; union = every pixel
    return {"class_id": majority, "overall_accuracy": float(acc), "mean_iou": float(iou[present].mean())}


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


def train(dataset, out, *, config: str = "small", epochs: int = 30, seed: int = 0, patience: int = 5,
          batch_size: int | None = None, learning_rate: float | None = None, dice_weight: float = 0.5,
          augment: bool = True, model_name: str | None = None, overwrite: bool = False, verbose: bool = True,
          reference=None, reference_field: str | None = None, mapping: dict | None = None,
          **config_overrides) -> dict:
    """Train on a dataset folder and export ``out`` (ONNX) with its report files.

    Parameters
    ----------
    dataset : path
        Folder written by :func:`snap_pc_models.dataset.build_dataset`.
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
        class map of the whole image (``MODEL.classes.tif``) and the rules' label masks are both
        scored against it on the same pixels (``metrics["reference"]``, see
        :func:`snap_pc_models.evaluate.compare_with_reference`).
    reference_field, mapping
        Class attribute of a vector reference; reference code -> class id.

    Returns
    -------
    dict
        ``{"onnx": path, "metrics": {...}, "history": {...}, "files": {...}}``.
    """
    _require_tensorflow()
    import keras
    import tensorflow as tf

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise TrainError(f"--out must name an .onnx file, got {out}")
    if out.exists() and not overwrite:
        raise TrainError(f"{out} exists (use --overwrite)")
    if not out.parent.is_dir():
        raise TrainError(f"output folder {out.parent} does not exist")
    if epochs < 1:
        raise TrainError(f"epochs must be >= 1, got {epochs}")
    info = load_dataset_info(dataset)
    try:
        cfg = get_config(config, batch_size=batch_size, learning_rate=learning_rate, **config_overrides)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    patch = info["patch_size"]
    if patch % cfg.size_multiple:
        raise TrainError(f"dataset patches of {patch} px are not a multiple of {cfg.size_multiple} "
                         f"(2**depth of configuration '{cfg.name}'): rebuild the dataset with --patch-size")
    class_ids = [c["id"] for c in info["classes"]]
    bands = info["bands"]
    mean = np.asarray(info["norm_mean"], dtype="float32")
    std = np.asarray(info["norm_std"], dtype="float32")
    lut = np.full(256, -1, dtype=np.int32)
    lut[class_ids] = np.arange(len(class_ids))
    weights = class_weights(info["splits"]["train"]["class_pixels"], class_ids)

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    data = {s: open_split(dataset, info, s) for s in SPLITS}
    train_batches = _Batches(*data["train"], mean, std, lut, cfg.batch_size, True, augment, seed)
    val_batches = _Batches(*data["val"], mean, std, lut, cfg.batch_size, False, False, seed)

    model = build_attention_unet(len(bands), len(class_ids), cfg)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=_loss(weights, dice_weight),
                  metrics=[_labelled_accuracy])
    stem = out.with_suffix("")
    files = {k: Path(f"{stem}.{k}") for k in ("best.keras", "history.csv", "curves.png", "metrics.json",
                                               "confusion_val.png", "confusion_test.png", "card.md")}
    if reference is not None:
        if not Path(reference).exists():
            raise TrainError(f"reference {reference} does not exist")
        files["classes.tif"] = Path(f"{stem}.classes.tif")
        if files["classes.tif"].exists() and not overwrite:
            raise TrainError(f"{files['classes.tif']} exists (use --overwrite)")
    ckpt_tmp = staged_path(files["best.keras"])  # keeps .keras: Keras picks the format by it
    started = time.perf_counter()
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(str(ckpt_tmp), monitor="val_loss", save_best_only=True),
        _EpochLine(epochs) if verbose else keras.callbacks.Callback(),
    ]
    try:
        hist = model.fit(train_batches, validation_data=val_batches, epochs=epochs, callbacks=callbacks, verbose=0)
    except Exception:
        ckpt_tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    n_train = info["splits"]["train"]["patches"]
    trained_epochs = len(history["val_loss"])

    metrics = {"config": cfg.to_dict(), "seed": seed, "epochs_run": trained_epochs, "best_epoch": best_epoch,
               "train_seconds": seconds, "train_patches_per_second": n_train * trained_epochs / seconds,
               "class_weights": dict(zip(map(str, class_ids), map(float, weights)))}
    results = {}
    for split in ("val", "test"):
        results[split] = evaluate_split(model, *data[split], mean, std, class_ids)
        entry = dict(results[split].metrics)
        entry["baseline_majority"] = _majority_baseline(info["splits"]["train"]["class_pixels"], results[split])
        metrics[split] = entry
    # every patch (training ones too): a class the model predicts nowhere has vanished
    seen = evaluate_split(model, *data["train"], mean, std, class_ids).matrix.sum(axis=0)
    for split in ("val", "test"):
        seen = seen + results[split].matrix.sum(axis=0)
    vanished = vanished_classes(class_ids, info["splits"]["train"]["class_pixels"], seen)
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
        from .evaluate import compare_with_reference, predict_scene

        predict_scene(out, info, files["classes.tif"], overwrite=overwrite)
        metrics["reference"] = compare_with_reference(files["classes.tif"], info, reference, field=reference_field,
                                                      mapping=mapping)
    if ckpt_tmp.exists():
        os.replace(ckpt_tmp, files["best.keras"])
    else:
        model.save(files["best.keras"])
    _write_history(history, files["history.csv"])
    _plot_curves(history, best_epoch, files["curves.png"], cfg.name)
    for split in ("val", "test"):
        plot_confusion(results[split], files[f"confusion_{split}.png"])
    write_text(files["metrics.json"], json.dumps(metrics, indent=2, default=float))
    write_text(files["card.md"], model_card(info, meta, cfg, metrics, out))
    return {"onnx": out, "metrics": metrics, "history": history, "files": files}


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
        f"- image: `{info['image']}`" + (f"; Sentinel-1: `{info['image_s1']}`" if info.get("image_s1") else ""),
        f"- labels: `{info['labels']}`" + (f" (attribute `{info['field']}`)" if info.get("field") else ""),
        f"- scene {info['width']} x {info['height']} px; patches {info['patch_size']} px, stride {info['stride']}; "
        f"spatial blocks of {info['block_size']} px split train/validation/test "
        f"({', '.join(str(info['splits'][s]['patches']) for s in SPLITS)} patches)",
        "- class 0 (unclassified by the rules) is ignored by the loss",
        "",
        "## Bands (channel order) and normalization (training split)",
        "| # | band | mean | std |",
        "|---|---|---|---|",
    ]
    lines += [f"| {i} | {b} | {m:.5g} | {s:.5g} |" for i, (b, m, s) in
              enumerate(zip(meta.input_bands, meta.norm_mean, meta.norm_std))]
    lines += ["", "## Training",
              f"Adam (lr {cfg.learning_rate}), batch {cfg.batch_size}, weighted cross-entropy + soft Dice, "
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
    lines += ["", "| class | test IoU | test F1 | test reference px |", "|---|---|---|---|"]
    for p in metrics["test"]["per_class"]:
        lines.append(f"| {p['class_id']} {p['class_name']} | {fmt(p['iou'])} | {fmt(p['f1'])} | {p['reference_pixels']} |")
    if metrics.get("reference"):
        from .evaluate import format_comparison

        lines += ["", "## Accuracy against the reference (the network and the rules, same pixels)", ""]
        lines += format_comparison(metrics["reference"])
    lines += ["", "## Intended use",
              "Filling and refining the Progressive Classifier's land-cover map on Sentinel-2 (and Sentinel-1) "
              "scenes like the training scene, through the `AttentionUNetInference` operator "
              "(`graphs/unet_inference.xml`).",
              "", "## Limits",
              "- Labels are the rule-based classifier's masks, not field truth: the network learns the rules' "
              "errors too; the metrics above measure agreement with those labels on held-out blocks.",
              "- Trained on one scene; other seasons, sensors' processing baselines or regions need new training "
              "or at least a check against reference data (`snap-pc assess`).",
              "- Inputs must be the bands above, in the same units (reflectance 0-1, backscatter in dB), on a "
              "10 m grid; inference refuses a product that lacks any of them.",
              ""]
    return "\n".join(lines)
