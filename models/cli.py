"""``snap-pc dataset``, ``snap-pc train`` and ``snap-pc quantize``: Attention U-Net training from the command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from snap_operators.io.onnx_model import PRETRAINED_DIR, PRETRAINED_FILES
from snap_operators.io.reference import parse_mapping
from snap_operators.science.inference import AUGMENTATIONS

from .dataset import DEFAULT_INDICES, DEFAULT_MIN_MARGIN, build_dataset
from .train import LOSSES, MULTI_SCENE_ATMOSPHERE

_LABELS_HELP = ("label masks: LabelMaskExport's vector file (attribute class_id), any polygon/point file with a "
                "class attribute (--field), or a class raster; codes 1-5 are classes, 0 and 255 unlabelled")


def _names(text: str | None):
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _add_data_arguments(p, required: bool) -> None:
    p.add_argument("--image", required=required, help="Sentinel-2 product (SAFE, GeoTIFF with band names, DIMAP)")
    p.add_argument("--image-s1", help="Sentinel-1 product in dB (Sigma0_VV_db, Sigma0_VH_db), collocated onto the S2 grid")
    p.add_argument("--labels", required=required, help=_LABELS_HELP)
    p.add_argument("--field", help="class attribute of a vector label file (default class_id)")
    p.add_argument("--label-mapping", metavar="PAIRS",
                   help="the labels' codes -> class ids, e.g. 80:1,60:2,10:3,50:4 (a land-cover map's legend as "
                   "labels), or class names -> class ids for a --field of names, e.g. water:1,forest:3; codes or "
                   "names not mapped are left unlabelled. Without it the codes must be the class ids 1-5")
    p.add_argument("--bands", help="source bands in channel order (default B2,B3,B4,B8,B11,B12 "
                   "[+ Sigma0_VV_db,Sigma0_VH_db with --image-s1])")
    p.add_argument("--indices", default=",".join(DEFAULT_INDICES),
                   help="SpectralIndices appended as channels (default %(default)s; '' for none)")
    p.add_argument("--patch-size", type=int, help="patch edge in px (default: chosen to fit the image: the "
                   "configuration's, 64 for small, in blocks of 4 patches where 5 such blocks fit along the image's "
                   "short side; else 32 px patches in 64 px blocks, or 32 px blocks under 320 px)")
    p.add_argument("--stride", type=int, help="step between patches in px (default: the patch size)")
    p.add_argument("--block-size", type=int, help="edge of the spatial blocks split into train/val/test, px "
                   "(default: 4, 2 or 1 patches, the largest that fits 5 times along the image's short side)")
    p.add_argument("--min-labelled", type=float, default=0.05,
                   help="drop patches with a smaller labelled fraction (default %(default)s)")
    p.add_argument("--margin", metavar="RASTER",
                   help="the rules' margin on the image's grid (ProgressiveClassifier outputMargin=true: band "
                   "'margin'): labels under --min-margin are left out, so the network learns from the pixels the "
                   "thresholds are sure of (docs/unet.md)")
    p.add_argument("--min-margin", type=float, default=DEFAULT_MIN_MARGIN,
                   help="least margin a label keeps with --margin, in scene interquartile ranges of the deciding "
                   "index (default %(default)s)")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of blocks for validation (default %(default)s)")
    p.add_argument("--test-fraction", type=float, default=0.15, help="share of blocks for test (default %(default)s)")


def add_command(sub) -> None:
    """Register ``snap-pc dataset`` and ``snap-pc train``."""
    p = sub.add_parser(
        "dataset", help="training patches for the Attention U-Net from an image and label masks",
        description="Build training patches from a Sentinel-2 product (optional Sentinel-1 and indices) and label "
        "masks, split train/validation/test by spatial blocks, normalization from the training split, written "
        "as shards with dataset.json.",
        epilog="example: snap-pc dataset --image S2.tif --labels labels.gpkg --out dataset/ --patch-size 64",
    )
    _add_data_arguments(p, required=True)
    p.add_argument("--out", required=True, help="new dataset folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the block split (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.set_defaults(handler=_cmd_dataset)

    t = sub.add_parser(
        "train", help="train the Attention U-Net and export it to ONNX (needs the 'train' extra)",
        description="Train the Attention U-Net on a dataset folder, or on --image/--labels (a dataset is built "
        "first, in OUT.dataset/). Writes the ONNX model with its metadata and, beside it: best checkpoint "
        "(.best.keras), training curves (.curves.png), metrics JSON (.metrics.json), confusion matrices "
        "(.confusion_val.png, .confusion_test.png) and a model card (.card.md).",
        epilog="example: snap-pc train --image S2.tif --labels labels.gpkg --out model.onnx --config small --epochs 30",
    )
    t.add_argument("dataset", nargs="*", help="dataset folder(s) written by `snap-pc dataset`; several train one "
                   "model over all their scenes (same bands and patch size)")
    _add_data_arguments(t, required=False)
    t.add_argument("--out", required=True, help="ONNX model file to write")
    t.add_argument("--config", default="small", choices=("small", "default"),
                   help="model configuration (default %(default)s)")
    t.add_argument("--epochs", type=int, default=30, help="maximum epochs (default %(default)s)")
    t.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs (default %(default)s)")
    t.add_argument("--batch-size", type=int, help="patches per batch (default: the configuration's)")
    t.add_argument("--learning-rate", type=float, help="Adam step size (default: the configuration's)")
    t.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling, augmentation and split (default 0)")
    t.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    t.add_argument("--reference", help="independent reference (raster or vector, as `snap-pc assess`): the network's "
                   "class map of the image (MODEL.classes.tif) and the rules (their map with --rules-map, else their "
                   "label masks; training labels the classifier did not make are called labels) are both scored against it on the same pixels, with 95%% intervals and McNemar's test of the "
                   "difference, over the reference's pixels and over its polygons (points, raster regions)")
    t.add_argument("--reference-field", help="class attribute of a vector --reference")
    t.add_argument("--test-time-augmentation", default="none", choices=tuple(AUGMENTATIONS),
                   help="with --reference: make the scored class map as AttentionUNetInference's "
                   "testTimeAugmentation does (flips: 4 passes, dihedral: 8; default %(default)s)")
    t.add_argument("--mapping", "--reference-mapping", dest="mapping",
                   help="reference code -> class id pairs, e.g. 2:3,5:1,8:4, or class name -> class id pairs for "
                   "a --reference-field of names, e.g. water:1,forest:3 (as `snap-pc assess --mapping`)")
    t.add_argument("--rules-map", metavar="RASTER",
                   help="with --reference: the rules' class map with its margin (progressive_classifier_s2.xml "
                   "-PoutputMargin=true, on the image's grid): the rules scored as this map, and the map the "
                   "inference graph writes, the network's fused with it by RuleFusion (MODEL.fused.tif), scored too")
    t.add_argument("--min-rule-margin", type=float, metavar="IQR",
                   help="with --rules-map: RuleFusion's minMargin, the graph's minRuleMargin (default 0.03; "
                   "Infinity: the network alone)")
    g = t.add_argument_group("learning from noisy, imbalanced rule labels (docs/unet.md measures each)")
    g.add_argument("--loss", choices=LOSSES,
                   help="ce: cross-entropy; gce: generalized CE; sce: symmetric CE; bootstrap: hard bootstrapping; "
                   "smooth: CE with label smoothing 0.1 (the last four are robust to label noise); soft Dice is "
                   "added (default: smooth for one dataset trained from scratch, ce for several, with --init or with "
                   "--self-training)")
    g.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True,
                   help="draw training patches class-balanced (and, with several datasets, scene-balanced), so that "
                   "a class with 0.5 %% of the pixels is seen (default on: the lever that lost a class least often on "
                   "the real scenes, docs/unet.md; --no-balance draws patches uniformly)")
    g.add_argument("--ignore-border", type=int, default=0, metavar="PX",
                   help="leave out labels within PX pixels of another class: train on the confident interior of "
                   "each rule region (default %(default)s)")
    g.add_argument("--weight-average", type=float, default=0.0, metavar="MOMENTUM",
                   help="validate, stop and export with an exponential moving average of the weights (Polyak "
                   "averaging), e.g. 0.99; 0 off (default %(default)s)")
    g.add_argument("--threshold-moving", action=argparse.BooleanOptionalAction, default=None,
                   help="after training, move each class's decision threshold so the model predicts every class on "
                   "its share of the training labels: undoes the over-prediction class balancing teaches and brings "
                   "back a class predicted nowhere, at no inference cost. For a model of the scene it learned; with "
                   "several datasets the shares are pooled (docs/unet.md). Default: only to rescue a training in "
                   "which a class of the labels is predicted nowhere; --no-threshold-moving: never")
    g.add_argument("--atmosphere", type=float, default=None, metavar="REFLECTANCE",
                   help="add to or take from each training patch a random path reflectance up to this at B2 (falling "
                   "with wavelength) and recompute its indices: the scenes seen through other atmospheres, so the "
                   "model holds on top-of-atmosphere (L1C) and surface-reflectance (L2A) scenes alike. Default: "
                   f"{MULTI_SCENE_ATMOSPHERE:g} with several datasets (a model for other scenes), 0 with one (a "
                   "model of the scene it learns); 0 off")
    g.add_argument("--self-training", type=int, default=0, metavar="ROUNDS",
                   help="rounds of relabelling the training patches with the network's confident classes, then "
                   "training on (default %(default)s)")
    g.add_argument("--confidence", type=float, default=0.9,
                   help="least class probability a self-training label needs (default %(default)s)")
    g.add_argument("--init", metavar="MODEL.onnx",
                   help="fine-tune from a trained model (its Keras weights beside it, its bands and normalization), "
                   f"e.g. the shipped one: {PRETRAINED_DIR / PRETRAINED_FILES['fp32']} (docs/unet.md); with "
                   "--reference, its own map is scored too (MODEL.init.tif) and a fine-tuning that ends under "
                   "it is warned of")
    t.set_defaults(handler=_cmd_train)

    q = sub.add_parser(
        "quantize", help="int8 copy of a trained model for faster CPU inference, checked against fp32",
        description="Static int8 quantization (ONNX Runtime, QOperator, per-channel) calibrated on the training "
        "patches of the model's dataset; written only if its classes agree with the fp32 model's on the test "
        "patches at least --min-agreement of the time. Metadata is copied: use it as -Pmodel= like the fp32 file.",
        epilog="example: snap-pc quantize model.onnx --dataset model.dataset --out model.int8.onnx",
    )
    q.add_argument("model", help="fp32 ONNX model written by `snap-pc train`")
    q.add_argument("--dataset", required=True, help="the model's dataset folder (calibration and check patches)")
    q.add_argument("--out", required=True, help="int8 ONNX file to write")
    q.add_argument("--min-agreement", type=float, default=0.98,
                   help="least share of test pixels classified as by fp32 (default %(default)s)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    q.set_defaults(handler=_cmd_quantize)


def _dataset_kwargs(args, preferred_patch: int) -> dict:
    return dict(image_s1=args.image_s1, field=args.field, mapping=parse_mapping(args.label_mapping, "--label-mapping"),
                bands=_names(args.bands),
                indices=_names(args.indices) or [], patch_size=args.patch_size, preferred_patch=preferred_patch,
                stride=args.stride,
                block_size=args.block_size, min_labelled=args.min_labelled,
                fractions=(1 - args.val_fraction - args.test_fraction, args.val_fraction, args.test_fraction),
                seed=args.seed, overwrite=args.overwrite, progress=sys.stderr.isatty(),
                margin=args.margin, min_margin=args.min_margin)


def _report(info: dict, folder) -> None:
    print(f"dataset {folder}: {len(info['bands'])} bands ({', '.join(info['bands'])}), "
          f"patches {info['patch_size']} px in blocks of {info['block_size']} px "
          f"(image {info['width']} x {info['height']} px)")
    for split, s in info["splits"].items():
        print(f"  {split:<5} {s['patches']:>6} patches in {len(s['shards'])} shard(s)")
    d = info["dropped"]
    print(f"  dropped: {d['straddling']} across split borders, {d['no_data']} with no-data, "
          f"{d['few_labels']} with too few labelled pixels")


def _check_fractions(args) -> None:
    from .dataset import DatasetError

    if not (0 < args.val_fraction < 1 and 0 < args.test_fraction < 1 and args.val_fraction + args.test_fraction < 1):
        raise DatasetError("--val-fraction and --test-fraction must be in (0, 1) and sum to less than 1")


def _cmd_dataset(args) -> int:
    _check_fractions(args)
    info = build_dataset(args.image, args.labels, args.out, **_dataset_kwargs(args, 64))
    _report(info, args.out)
    return 0


def _cmd_train(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .attention_unet import get_config
    from .train import TrainError, check_options, train

    if bool(args.dataset) == bool(args.image or args.labels):
        raise TrainError("give either a dataset folder or --image and --labels (several dataset folders train one model)")
    if args.dataset and args.margin:
        raise TrainError("--margin filters the labels while a dataset is built: give it with --image/--labels "
                         "(or to `snap-pc dataset`)")
    mapping = parse_mapping(args.mapping, groups=True)
    folders = args.dataset
    # every option checked before a dataset is built (minutes on a large scene)
    check_options(args.out, overwrite=args.overwrite, epochs=args.epochs, loss=args.loss,
                  weight_average=args.weight_average, atmosphere=args.atmosphere, ignore_border=args.ignore_border,
                  self_training=args.self_training, confidence=args.confidence, n_datasets=len(folders or [1]),
                  reference=args.reference, reference_augmentation=args.test_time_augmentation,
                  rules_map=args.rules_map, min_rule_margin=args.min_rule_margin, mapping=mapping,
                  reference_field=args.reference_field, patience=args.patience, batch_size=args.batch_size,
                  learning_rate=args.learning_rate, seed=args.seed)
    if not folders:
        if not (args.image and args.labels):
            raise TrainError("--image and --labels go together")
        _check_fractions(args)
        multiple = get_config(args.config).size_multiple
        if args.patch_size is not None and args.patch_size % multiple:
            raise TrainError(f"--patch-size {args.patch_size} is not a multiple of {multiple} (2**depth of "
                             f"configuration '{args.config}')")
        if args.init and args.bands is None:
            _bands_of_model(args)
        if args.rules_map:
            from .evaluate import check_rules_map

            # its bands and grid, before the dataset is built: minutes on a large scene
            check_rules_map(args.rules_map, {"image": args.image, "image_s1": args.image_s1,
                                             "bands": _names(args.bands), "indices": []})
        folder = Path(args.out).with_suffix(".dataset")
        info = build_dataset(args.image, args.labels, folder, **{**_dataset_kwargs(args, get_config(args.config).patch_size),
                                                                 "overwrite": True})
        _report(info, folder)
        folders = [folder]
    result = train(folders, args.out, config=args.config, epochs=args.epochs, seed=args.seed, patience=args.patience,
                   batch_size=args.batch_size, learning_rate=args.learning_rate, overwrite=args.overwrite,
                   reference=args.reference, reference_field=args.reference_field, mapping=mapping,
                   reference_augmentation=args.test_time_augmentation, rules_map=args.rules_map,
                   min_rule_margin=args.min_rule_margin,
                   loss=args.loss, balance=args.balance, ignore_border=args.ignore_border,
                   weight_average=args.weight_average, threshold_moving=args.threshold_moving,
                   self_training=args.self_training, confidence=args.confidence, init=args.init,
                   atmosphere=args.atmosphere)
    m = result["metrics"]
    for split in ("val", "test"):
        s, b = m[split], m[split]["baseline_majority"]
        print(f"{split:<4}: OA {s['overall_accuracy']:.3f}  kappa {s['kappa']:.3f}  mean IoU {s['mean_iou']:.3f}"
              f"   (majority class {b['class_id']}: OA {b['overall_accuracy']:.3f}, mean IoU {b['mean_iou']:.3f})")
    print(f"wrote {result['onnx']} (ONNX vs TensorFlow max abs diff "
          f"{m['onnx']['max_abs_diff_vs_tensorflow']:.1e}, halo {m['onnx']['halo']} px)")
    if m.get("reference"):
        from .evaluate import format_comparison

        print("\n".join(format_comparison(m["reference"])))
    for path in result["files"].values():
        print(f"wrote {path}")
    if m["vanished_classes"]:
        from .train import failure_text

        print(f"snap-pc: {failure_text(m['vanished_classes'])} (outputs kept for inspection)", file=sys.stderr)
        return 1
    return 0


def _bands_of_model(args) -> None:
    """--bands and --indices from the --init model's input bands (a fine-tuning dataset needs its stack)."""
    from snap_operators.io.onnx_model import ModelError, read_metadata
    from snap_operators.science.indices import INDICES

    from .train import TrainError

    try:
        names = read_metadata(args.init).input_bands
    except ModelError as exc:
        raise TrainError(f"--init: {exc}") from None
    args.bands = ",".join(b for b in names if b not in INDICES)
    args.indices = ",".join(b for b in names if b in INDICES)


def _cmd_quantize(args) -> int:
    from .quantize import quantize_model

    r = quantize_model(args.model, args.dataset, args.out, min_agreement=args.min_agreement, overwrite=args.overwrite)
    acc = "" if r["accuracy_fp32"] is None else (f"; accuracy on labelled test pixels fp32 {r['accuracy_fp32']:.4f}, "
                                                   f"int8 {r['accuracy_int8']:.4f}")
    print(f"int8 classes agree with fp32 on {r['class_agreement']:.2%} of {r['check_patches']} test patches{acc}")
    print(f"wrote {args.out}")
    return 0
