"""Attention U-Net training throughput (patches per second) for both configurations.

Times Keras training steps (forward, weighted CE + Dice loss, backward, Adam)
on batches of the configuration's patch size and batch size, with the loss and
data path ``snap-pc train`` uses, after warm-up steps that build and compile the
step function. Speed does not depend on the values, so the patches are random
normalized bands (10 channels: the default S2 bands and indices); labels are
random classes with 20 % unlabelled pixels. ``--atmospheres`` also times the
data path that feeds those steps (``snap-pc train``'s batches: normalization,
flips and turns, and the atmospheric augmentation of a multi-scene training) on
the shipped model's nine channels, per batch. ``--channels`` times other input
channel counts (14: B2-B8A B11 B12 with the red-edge bands, and the four
indices; docs/unet.md), each count once per round, the rounds alternating.
Results also go to benchmarks/results/training.json.

Usage::

    python benchmarks/bench_training.py [--steps 20] [--configs small,default] [--device cpu|gpu] [--losses ce,sce]
                                        [--atmospheres 0,0.08] [--channels 10,14 --rounds 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def bench(config: str, steps: int, n_bands: int = 10, n_classes: int = 5, warmup: int = 3, loss: str = "ce") -> dict:
    import keras
    from snap_pc_models.attention_unet import build_attention_unet, get_config
    from snap_pc_models.train import _labelled_accuracy, _loss

    cfg = get_config(config)
    keras.utils.set_random_seed(0)
    model = build_attention_unet(n_bands, n_classes, cfg)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss=_loss(np.ones(n_classes, "float32"), 0.5, loss), metrics=[_labelled_accuracy])
    rng = np.random.default_rng(0)
    shape = (cfg.batch_size, cfg.patch_size, cfg.patch_size)
    x = rng.normal(size=shape + (n_bands,)).astype("float32")
    y = rng.integers(0, n_classes, size=shape).astype("int32")
    y[rng.random(shape) < 0.2] = -1
    for _ in range(warmup):
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - t0
    return {"config": config, "loss": loss, "channels": n_bands, "patch_size": cfg.patch_size,
            "batch_size": cfg.batch_size, "parameters": int(model.count_params()), "steps": steps, "seconds": seconds,
            "patches_per_second": steps * cfg.batch_size / seconds,
            "mpx_per_second": steps * cfg.batch_size * cfg.patch_size**2 / seconds / 1e6}


#: Channels of the data-path timing: the shipped model's bands and indices.
CHANNELS = ("B2", "B3", "B4", "B8", "B11", "NDVI", "MNDWI", "NDBI", "BSI")


def bench_batches(config: str, atmosphere: float, batches: int = 50) -> dict:
    """Seconds per training batch of the data path (``snap-pc train``'s batches) with `atmosphere`."""
    from snap_pc_models.attention_unet import get_config
    from snap_pc_models.train import _Batches

    cfg = get_config(config)
    rng = np.random.default_rng(0)
    n = cfg.batch_size * batches
    x = rng.uniform(0.01, 0.4, (n, cfg.patch_size, cfg.patch_size, len(CHANNELS))).astype("float32")
    y = rng.integers(1, 6, (n, cfg.patch_size, cfg.patch_size)).astype("uint8")
    lut = np.full(256, -1, np.int32)
    lut[1:6] = np.arange(5)
    data = _Batches([x], [y], np.zeros(len(CHANNELS), "float32"), np.ones(len(CHANNELS), "float32"), lut,
                    cfg.batch_size, True, True, 0, None, 0, 1, list(CHANNELS), atmosphere)
    data[0]
    t0 = time.perf_counter()
    for k in range(len(data)):
        data[k]
    seconds = (time.perf_counter() - t0) / len(data)
    return {"config": config, "atmosphere": atmosphere, "batch_size": cfg.batch_size, "patch_size": cfg.patch_size,
            "seconds_per_batch": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--configs", default="small,default")
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    ap.add_argument("--losses", default="ce", help="comma-separated losses of snap-pc train --loss to time")
    ap.add_argument("--atmospheres", default="", help="comma-separated snap-pc train --atmosphere values whose data "
                    "path to time per batch (e.g. 0,0.08)")
    ap.add_argument("--channels", default="10", help="comma-separated input channel counts to time (default 10)")
    ap.add_argument("--rounds", type=int, default=1, help="times each configuration is timed, the channel counts "
                    "alternating (default 1)")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if args.device == "gpu" and not gpus:
        raise SystemExit("Error: --device gpu but TensorFlow sees no GPU")
    rows = [bench(name, args.steps, n_bands=int(c), loss=loss) for _ in range(args.rounds)
            for name in args.configs.split(",") for loss in args.losses.split(",") for c in args.channels.split(",")]
    device = gpus[0].name if args.device == "gpu" else f"CPU ({os.cpu_count()} cores)"
    print(f"\nAttention U-Net training throughput on {device}, TensorFlow {tf.__version__}\n")
    print("| configuration | loss | channels | parameters | patch | batch | patches/s | Mpx/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['loss']} | {r['channels']} | {r['parameters']:,} | {r['patch_size']} | "
              f"{r['batch_size']} | {r['patches_per_second']:.1f} | {r['mpx_per_second']:.2f} |")
    paths = [bench_batches(name, float(a)) for name in args.configs.split(",") for a in args.atmospheres.split(",")
             if a]
    if paths:
        first = int(args.channels.split(",")[0])  # the data path's share of a step with the first count asked
        step = {r["config"]: r["batch_size"] / r["patches_per_second"] for r in rows if r["channels"] == first}
        print("\n| configuration | --atmosphere | data path ms/batch | share of a training step |\n|---|---:|---:|---:|")
        for r in paths:
            print(f"| {r['config']} | {r['atmosphere']:g} | {1e3 * r['seconds_per_batch']:.2f} | "
                  f"{r['seconds_per_batch'] / step[r['config']]:.1%} |")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"training_{args.device}.json").write_text(json.dumps(
        {"date": dt.date.today().isoformat(), "machine": platform.platform(), "device": device, "results": rows,
         "data_path": paths}, indent=2))


if __name__ == "__main__":
    main()
