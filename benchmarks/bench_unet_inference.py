"""Attention U-Net inference: ONNX Runtime vs Keras, the engine on whole scenes, int8, CUDA.

1. **Per call** (``small`` and ``default`` configurations, untrained: speed does
   not depend on the weights): the same normalized windows (tile + halo on
   each side, the model's size multiple) through Keras ``model.predict`` (all
   windows in one call, Keras' best case; and one call per tile, as a Keras
   tiling loop runs) and through ONNX Runtime sessions (graph optimization ``extended``/``all``,
   batch sizes), interleaved round by round so load changes hit both alike;
   each variant's best round counts. Mpx/s counts the pixels kept (the
   tiles), not the halos. ORT and Keras outputs are compared too.
2. **int8**: when fp32 ONNX Runtime is less than 1.5 x Keras (or with
   ``--quantize``), the model is quantized statically (QOperator, per-channel
   int8 weights, uint8 activations calibrated on windows of a synthetic
   scene) and measured the same way, with the agreement of its classes with
   fp32's on other windows of the scene.
3. **Engine**: ``graphs/unet_inference.xml`` without its LabelMaskExport,
   ProgressiveClassifier and RuleFusion nodes (Read -> Resample -> SpectralIndices ->
   AttentionUNetInference -> Write) on synthetic scenes (``snap-pc synth``, cached in ``--work``), one
   fresh process per run after a warm-up on 256 px: seconds, Mpx/s, peak RSS
   (``ru_maxrss``), for several tile sizes and ``threads`` (and ``--augmentations``:
   the operator's ``testTimeAugmentation``).
4. ``--device cuda``: the per-call and engine runs with the CUDA provider.

Usage::

    python benchmarks/bench_unet_inference.py [--configs small default] [--tiles 256 512] [--batches 1 2 4]
        [--repeat 5] [--engine-size 2048] [--augmentations none flips dihedral] [--rss-size 10980]
        [--device cpu|cuda] [--quantize] [--bands B2,B3,B4,B5,B6,B7,B8,B8A,B11,B12]
        [--work /tmp/snap-pc-bench]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from snap_operators.ops.unet_inference import DEFAULT_BATCH, DEFAULT_TILE
from snap_operators.science.inference import AUGMENTATIONS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GRAPH = ROOT / "graphs" / "unet_inference.xml"
#: Source bands of the benchmark's models (``--bands``; default: ``snap-pc train``'s) and the indices after them.
SOURCE_BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")
INDICES = ("NDVI", "MNDWI", "NDBI", "BSI")

# Peak RSS from VmHWM: ru_maxrss survives fork + exec, so a child of this (TensorFlow-sized)
# process would report the parent's peak.
CHILD = r"""
import json, re, resource, sys, time
from snap_operators.core.allocator import keep_freed_memory
from snap_operators.engine.runner import load_graph, run_graph
from snap_operators.core.context import ExecutionContext
keep_freed_memory()  # as the snap-pc command does
graph, variables, warm = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
run_graph(load_graph(graph, warm), ExecutionContext(overwrite=True))
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
run_graph(load_graph(graph, variables), ExecutionContext(overwrite=True))
dt, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
hwm = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"seconds": dt, "peak_rss_mib": hwm / 1024, "user_s": r1.ru_utime - r0.ru_utime,
                  "system_s": r1.ru_stime - r0.ru_stime, "page_faults": r1.ru_minflt - r0.ru_minflt}))
"""


# --- models ------------------------------------------------------------------------------------------


def export_models(work: Path, configs, bands=SOURCE_BANDS + INDICES, seed: int = 0) -> dict:
    """Untrained Keras U-Nets of each configuration and their ONNX exports (with the project's metadata)."""
    import keras
    from snap_pc_models.attention_unet import (
        build_attention_unet,
        get_config,
        receptive_field_radius,
    )
    from snap_pc_models.export import effective_halo, export_onnx

    from snap_operators.core.legend import LAND_COVER
    from snap_operators.io.onnx_model import ModelMetadata

    out = {}
    for name in configs:
        cfg = get_config(name)
        keras.utils.set_random_seed(seed)
        model = build_attention_unet(len(bands), len(LAND_COVER), name)
        halo = effective_halo(model, len(bands), cfg.size_multiple, receptive_field_radius(cfg.depth))
        meta = ModelMetadata(f"attention_unet_{name}", "bench", tuple(bands), (0.0,) * len(bands),
                             (1.0,) * len(bands),
                             tuple(c.value for c in LAND_COVER), tuple(c.name for c in LAND_COVER),
                             tuple(tuple(c.color) for c in LAND_COVER), cfg.size_multiple, halo, 17)
        path = work / f"unet_{name}.onnx"
        export_onnx(model, meta, path)
        out[name] = {"model": model, "path": path, "meta": meta, "params": int(model.count_params())}
    return out


def windows(n: int, size: int, n_bands: int, seed: int = 0) -> np.ndarray:
    """`n` random normalized windows ``(n, n_bands, size, size)``."""
    return np.random.default_rng(seed).normal(size=(n, n_bands, size, size)).astype("float32")


def session(path: Path, optimization: str, threads: int, device: str):
    import onnxruntime as ort

    from snap_operators.science.inference import select_providers, session_options

    return ort.InferenceSession(str(path), session_options(threads, optimization), providers=list(select_providers(device)))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_all(s, x: np.ndarray, batch: int) -> None:
    """Every window of `x` through session `s`, `batch` at a time."""
    for i in range(0, len(x), batch):
        s.run(None, {"bands": x[i:i + batch]})


def per_call(models: dict, tiles, batches, repeat: int, device: str, n: int) -> list[dict]:
    """Keras vs ONNX Runtime variants on the same windows, interleaved, best round each."""
    from snap_operators.science.inference import padded_size

    rows = []
    for name, m in models.items():
        meta = m["meta"]
        for tile in tiles:
            size = padded_size(tile + 2 * meta.halo, meta.size_multiple)
            x = windows(n, size, len(meta.input_bands))
            x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            variants = {}
            for opt in ("extended", "all"):
                s = session(m["path"], opt, 0, device)
                for b in batches:
                    variants[(opt, b)] = s
            keras_batch = max(batches)
            m["model"].predict(x_nhwc[:keras_batch], batch_size=keras_batch, verbose=0)  # warm-up (tracing)
            ref = np.asarray(m["model"].predict(x_nhwc[:1], verbose=0)).transpose(0, 3, 1, 2)
            diff = 0.0
            for (opt, b), s in variants.items():
                got = s.run(None, {"bands": x[:b]})[0]  # warm-up; parity on the first window
                diff = max(diff, float(np.abs(got[:1] - ref).max()))
            times = {"keras": [], "keras_tile": [], **{k: [] for k in variants}}
            for _ in range(repeat):
                times["keras"].append(timed(functools.partial(m["model"].predict, x_nhwc, batch_size=keras_batch,
                                                              verbose=0)))
                # What a Keras tiling loop does: one predict call per tile.
                times["keras_tile"].append(timed(lambda: [m["model"].predict(x_nhwc[i:i + 1], verbose=0)
                                                          for i in range(len(x_nhwc))]))
                for (opt, b), s in variants.items():
                    times[(opt, b)].append(timed(functools.partial(run_all, s, x, b)))
            kept = n * tile * tile / 1e6
            best_keras = min(times["keras"])
            row = {"config": name, "tile": tile, "window": size, "halo": meta.halo, "windows": n, "device": device,
                   "keras_batch": keras_batch, "keras_mpx_s": kept / best_keras, "ort_vs_keras_max_abs_diff": diff,
                   "ort": []}
            for (opt, b) in variants:
                t = min(times[(opt, b)])
                row["ort"].append({"optimization": opt, "batch": b, "mpx_s": kept / t, "x_keras": best_keras / t,
                                   "rounds_x_keras": [k / o for k, o in zip(times["keras"], times[(opt, b)])]})
            row["best"] = max(row["ort"], key=lambda r: r["mpx_s"])
            row["keras_per_tile_mpx_s"] = kept / min(times["keras_tile"])
            per_tile = [r for r in row["ort"] if r["batch"] == 1]
            row["best_batch1"] = max(per_tile, key=lambda r: r["mpx_s"]) if per_tile else row["best"]
            row["ort_batch1_vs_keras_per_tile"] = row["best_batch1"]["mpx_s"] / row["keras_per_tile_mpx_s"]
            rows.append(row)
            print(f"  {name} tile {tile} (window {size}): Keras {row['keras_mpx_s']:.2f} Mpx/s; best ORT "
                  f"{row['best']['mpx_s']:.2f} Mpx/s ({row['best']['optimization']}, batch {row['best']['batch']}) "
                  f"= {row['best']['x_keras']:.2f} x Keras", flush=True)
    return rows


# --- int8 ------------------------------------------------------------------------------------------------


def scene_windows(work: Path, size: int, count: int, seed: int, channels) -> np.ndarray:
    """Windows of a synthetic scene's input stack of `channels` (bands, then indices), normalized with
    its own statistics."""
    from snap_pc_models.dataset import build_input_product

    s2 = scene(work, 1024)
    product, order = build_input_product(s2, bands=[c for c in channels if c not in INDICES],
                                         indices=[c for c in channels if c in INDICES], tile_size=1024)
    stack = np.stack([product.band(b).data.compute() for b in order])
    mean = np.nanmean(stack, axis=(1, 2))[:, None, None]
    std = np.nanstd(stack, axis=(1, 2))[:, None, None]
    stack = np.nan_to_num((stack - mean) / std).astype("float32")
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, stack.shape[1] - size, size=(count, 2))
    return np.stack([stack[:, r:r + size, c:c + size] for r, c in corners])


def quantize(m: dict, work: Path, calibration: np.ndarray) -> Path:
    """Static int8 copy of a model (``snap-pc quantize``'s method), its metadata kept."""
    from snap_pc_models.quantize import QUANTIZATION, quantize_file

    dst = work / f"{m['path'].stem}.int8.onnx"
    quantize_file(m["path"], dst, calibration, {**m["meta"].to_props(), "quantization": QUANTIZATION})
    return dst


def int8_rows(models: dict, rows: list[dict], work: Path, repeat: int, force: bool) -> list[dict]:
    out = []
    for name, m in models.items():
        mine = [r for r in rows if r["config"] == name]
        best = max(mine, key=lambda r: r["best"]["mpx_s"])
        if best["best"]["x_keras"] >= 1.5 and not force:
            continue
        size, tile = best["window"], best["tile"]
        calib = scene_windows(work, size, 16, seed=1, channels=m["meta"].input_bands)
        test = scene_windows(work, size, 8, seed=2, channels=m["meta"].input_bands)
        q = quantize(m, work, calib)
        fp32 = session(m["path"], best["best"]["optimization"], 0, "cpu")
        int8 = session(q, "all", 0, "cpu")
        b = best["best"]["batch"]
        p32 = np.concatenate([fp32.run(None, {"bands": test[i:i + b]})[0] for i in range(0, len(test), b)])
        p8 = np.concatenate([int8.run(None, {"bands": test[i:i + b]})[0] for i in range(0, len(test), b)])
        x = windows(best["windows"], size, len(m["meta"].input_bands))
        t32, t8 = [], []
        for _ in range(repeat):
            t32.append(timed(functools.partial(run_all, fp32, x, b)))
            t8.append(timed(functools.partial(run_all, int8, x, b)))
        kept = len(x) * tile * tile / 1e6
        keras_t = kept / best["keras_mpx_s"]
        row = {"config": name, "tile": tile, "batch": b, "fp32_mpx_s": kept / min(t32), "int8_mpx_s": kept / min(t8),
               "int8_x_keras": keras_t / min(t8), "int8_x_fp32": min(t32) / min(t8),
               "class_agreement_vs_fp32": float((p8.argmax(1) == p32.argmax(1)).mean()),
               "max_abs_prob_diff": float(np.abs(p8 - p32).max()), "file": str(q)}
        out.append(row)
        print(f"  {name} int8: {row['int8_mpx_s']:.2f} Mpx/s = {row['int8_x_keras']:.2f} x Keras, "
              f"{row['int8_x_fp32']:.2f} x fp32; classes agree with fp32 on {row['class_agreement_vs_fp32']:.2%}",
              flush=True)
    return out


# --- engine ------------------------------------------------------------------------------------------------


def scene(work: Path, size: int) -> Path:
    from snap_operators.apps.synth import write_synthetic_scene

    s2 = work / f"scene_{size}" / "s2.tif"
    if not s2.exists():
        write_synthetic_scene(s2.parent, size, seed=0)
    return s2


def raster_graph(work: Path, fusion: bool = False) -> Path:
    """The shipped graph without LabelMaskExport (its cost is measured by bench_label_masks.py); unless
    `fusion`, also without the rules beside the network (ProgressiveClassifier and RuleFusion), Write
    reading the network's map: the network's inference alone, the figures of before the fusion."""
    out = work / "unet"
    out.mkdir(parents=True, exist_ok=True)
    text = GRAPH.read_text()
    for node in ("LabelMaskExport",) + (() if fusion else ("ProgressiveClassifier", "RuleFusion")):
        text = re.sub(rf'\s*<node id="{node}">.*?</node>', "", text, count=1, flags=re.DOTALL)
        text = re.sub(rf'\s*<node id="{node}">\s*<displayPosition[^>]*/>\s*</node>', "", text, flags=re.DOTALL)
    if not fusion:
        text = text.replace('<sourceProduct refid="RuleFusion"/>', '<sourceProduct refid="AttentionUNetInference"/>')
    path = out / ("unet_fused.xml" if fusion else "unet_raster.xml")
    path.write_text(text)
    path.with_suffix(".properties").write_text(GRAPH.with_suffix(".properties").read_text())
    return path


def engine_run(graph: Path, model: Path, s2: Path, warm: Path, out: Path, **params) -> dict:
    common = {"model": str(model), **{k: str(v) for k, v in params.items()}}
    variables = {"input": str(s2), "output": str(out / "unet.tif"), "labels": str(out / "x.gpkg"), **common}
    warm_vars = {"input": str(warm), "output": str(out / "warm.tif"), "labels": str(out / "w.gpkg"), **common}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(graph), json.dumps(variables), json.dumps(warm_vars)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"engine run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def engine_rows(models: dict, work: Path, sizes_configs: list[tuple[int, str]], tiles, threads, device: str,
                augmentations=("none",), fusions=(None,), rounds: int = 1) -> list[dict]:
    """Engine runs of the graph without its label masks; `fusions`: None, the network alone (the graph
    without its rules), or a ``minRuleMargin`` for the graph with them ("" its default). Each of
    `rounds` runs every variant once, every other round in reverse order (A B B A: a machine that
    drifts during the runs favours no variant)."""
    graphs = {f: raster_graph(work, f is not None) for f in fusions}
    warm = scene(work, 256)
    rows = []
    for size, name in sizes_configs:
        s2 = scene(work, size)
        variants = list(itertools.product(tiles, threads, augmentations, fusions))
        for k in range(max(1, rounds)):
            rows += _engine_round(models[name]["path"], graphs, s2, warm, name, size, device,
                                  variants if k % 2 == 0 else variants[::-1])
    return rows


def _engine_round(model: Path, graphs: dict, s2: Path, warm: Path, name: str, size: int, device: str,
                  variants) -> list[dict]:
    rows = []
    for tile, t, aug, fused in variants:
        graph = graphs[fused]
        margin = {"minRuleMargin": fused} if fused else {}
        r = engine_run(graph, model, s2, warm, graph.parent, tileSize=tile, threads=t,
                       device=device, batchSize=DEFAULT_BATCH, testTimeAugmentation=aug, **margin)
        fusion = "no" if fused is None else f"minRuleMargin {fused or 'default'}"
        r.update(config=name, size=size, tile=tile, threads=t, device=device, augmentation=aug, fusion=fusion,
                 mpx_s=size * size / 1e6 / r["seconds"])
        rows.append(r)
        print(f"  engine {name} {size}² tile {tile} threads {t} augmentation {aug} rules' fusion {fusion} ({device}): "
              f"{r['seconds']:.1f} s, {r['mpx_s']:.2f} Mpx/s, peak RSS {r['peak_rss_mib']:.0f} MiB, CPU "
              f"{r['user_s']:.1f} s user, {r['system_s']:.1f} s system, {r['page_faults']} page faults", flush=True)
    return rows


def median_table(runs: list[dict]) -> str:
    """Markdown: each engine variant's times over the rounds, their median and its ratio to the
    network alone (the variant without the rules, same scene, tile, threads and augmentation), and
    the medians of the run's CPU time in user code and in the kernel and of its minor page faults
    (fresh memory touched: on a virtual machine the kernel's share can be a third of the run)."""
    key = lambda r: (r["config"], r["size"], r["tile"], r["threads"], r["augmentation"])  # noqa: E731
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(key(r) + (r["fusion"],), []).append(r)
    median = lambda v, field: statistics.median(r[field] for r in v) if all(field in r for r in v) else None  # noqa: E731
    medians = {k: median(v, "seconds") for k, v in groups.items()}
    lines = ["| config | scene | tile | threads | test-time augmentation | rules' fusion | time (s) per run | median | "
             "x network alone | median peak RSS (MiB) | median CPU user / system (s) | median page faults |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, v in groups.items():
        alone = medians.get(k[:-1] + ("no",))
        ratio = f"{medians[k] / alone:.2f}" if alone else "-"
        times = ", ".join(f"{r['seconds']:.1f}" for r in v)
        user, system, faults = median(v, "user_s"), median(v, "system_s"), median(v, "page_faults")
        cpu = f"{user:.1f} / {system:.1f}" if user is not None and system is not None else "-"
        lines.append(f"| {k[0]} | {k[1]}² | {k[2]} | {k[3]} | {k[4]} | {k[5]} | {times} | {medians[k]:.1f} | {ratio} | "
                     f"{median(v, 'peak_rss_mib'):.0f} | {cpu} | {'-' if faults is None else f'{faults:.0f}'} |")
    return "\n".join(lines)


# --- report ------------------------------------------------------------------------------------------------


def versions() -> str:
    import onnxruntime

    out = f"Python {platform.python_version()}, numpy {np.__version__}, onnxruntime {onnxruntime.__version__}"
    try:
        import tensorflow

        out += f", TensorFlow {tensorflow.__version__}"
    except ImportError:  # pragma: no cover
        pass
    return out


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["small", "default"])
    ap.add_argument("--tiles", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--windows", type=int, default=8, help="windows per per-call round")
    ap.add_argument("--repeat", type=int, default=5, help="rounds per per-call measurement (best counts)")
    ap.add_argument("--engine-size", type=int, default=2048, help="scene edge of the engine speed runs (0: none)")
    ap.add_argument("--engine-threads", type=int, nargs="+", default=[1, 0])
    ap.add_argument("--augmentations", nargs="+", default=["none"], choices=list(AUGMENTATIONS),
                    help="AttentionUNetInference testTimeAugmentation values of the engine speed runs")
    ap.add_argument("--rss-size", type=int, default=10980, help="scene edge of the peak-RSS run (0: none)")
    ap.add_argument("--rss-configs", nargs="+", default=["small"])
    ap.add_argument("--rss-tile", type=int, default=DEFAULT_TILE, help="tileSize of the peak-RSS run (the default)")
    ap.add_argument("--fusion", action="store_true", help="engine runs also with the graph's ProgressiveClassifier "
                    "and RuleFusion (the shipped graph as it runs), at its default minRuleMargin and at Infinity, "
                    "beside the network alone")
    ap.add_argument("--engine-rounds", type=int, default=1, help="rounds of the engine speed runs, every variant "
                    "once a round, the order reversed every other round; with more than one, a table of the "
                    "medians and their ratio to the network alone")
    ap.add_argument("--bands", default=",".join(SOURCE_BANDS), help="source bands of the models, the indices "
                    f"{','.join(INDICES)} after them (default %(default)s; with the red edge: "
                    "B2,B3,B4,B5,B6,B7,B8,B8A,B11,B12)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--quantize", action="store_true", help="measure int8 even when fp32 reaches 1.5 x Keras")
    ap.add_argument("--work", type=Path, default=Path("/tmp/snap-pc-bench"))
    args = ap.parse_args(argv)
    from snap_operators.core.errors import SnapPcError
    from snap_operators.science.inference import select_providers

    try:
        select_providers(args.device)
    except SnapPcError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {load_average()}", flush=True)
    models = export_models(args.work, args.configs, tuple(args.bands.split(",")) + INDICES)
    print("per call:", flush=True)
    calls = per_call(models, args.tiles, args.batches, args.repeat, args.device, args.windows)
    quant = int8_rows(models, calls, args.work, args.repeat, args.quantize) if args.device == "cpu" else []
    runs = []
    if args.engine_size:
        print("engine:", flush=True)
        runs += engine_rows(models, args.work, [(args.engine_size, c) for c in args.configs], args.tiles,
                            args.engine_threads, args.device, args.augmentations,
                            (None, "", "Infinity") if args.fusion else (None,), args.engine_rounds)
    if args.rss_size:
        runs += engine_rows(models, args.work, [(args.rss_size, c) for c in args.rss_configs], [args.rss_tile], [1],
                            args.device)
    info = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
            "load_average_after": load_average(), "versions": versions(), "device": args.device,
            "models": {k: {"params": v["params"], "halo": v["meta"].halo, "size_multiple": v["meta"].size_multiple}
                       for k, v in models.items()},
            "per_call": calls, "int8": quant, "engine": runs}
    (HERE / "results").mkdir(exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    (HERE / "results" / f"unet_inference{suffix}.json").write_text(json.dumps(info, indent=2, default=str))

    print(f"\n{info['machine']}; {info['date']}; {info['versions']}; load average after: {info['load_average_after']}")
    print("\n| config | tile (window) | Keras predict, all windows in one call (Mpx/s) | best ORT Mpx/s "
          "(optimization, batch) | ORT / Keras | Keras predict per tile (Mpx/s) | ORT batch 1 / Keras per tile "
          "| |ORT-Keras| |")
    print("|---|---|---|---|---|---|---|---|")
    for r in calls:
        b = r["best"]
        print(f"| {r['config']} | {r['tile']} ({r['window']}) | {r['keras_mpx_s']:.2f} | {b['mpx_s']:.2f} "
              f"({b['optimization']}, {b['batch']}) | {b['x_keras']:.2f} | {r['keras_per_tile_mpx_s']:.2f} | "
              f"{r['ort_batch1_vs_keras_per_tile']:.2f} | {r['ort_vs_keras_max_abs_diff']:.1e} |")
    if quant:
        print("\n| config | tile | fp32 ORT Mpx/s | int8 ORT Mpx/s | int8 / Keras | int8 / fp32 | classes = fp32 |")
        print("|---|---|---|---|---|---|---|")
        for q in quant:
            print(f"| {q['config']} | {q['tile']} | {q['fp32_mpx_s']:.2f} | {q['int8_mpx_s']:.2f} | "
                  f"{q['int8_x_keras']:.2f} | {q['int8_x_fp32']:.2f} | {q['class_agreement_vs_fp32']:.2%} |")
    if runs:
        print("\n| config | scene | tile | threads | test-time augmentation | rules' fusion | device | time (s) | "
              "Mpx/s | peak RSS (MiB) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in runs:
            print(f"| {r['config']} | {r['size']}² | {r['tile']} | {r['threads']} | {r['augmentation']} | "
                  f"{r['fusion']} | {r['device']} | {r['seconds']:.1f} | {r['mpx_s']:.2f} | "
                  f"{r['peak_rss_mib']:.0f} |")
        if args.engine_rounds > 1:
            print("\n" + median_table([r for r in runs if r["size"] == args.engine_size]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
