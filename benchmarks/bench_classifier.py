"""Classifier kernel benchmark: the default preset on 10980 x 10980 index bands.

Builds in-memory float32 index bands for one Sentinel-2 tile (10980 x 10980
= 120.6 Mpx) with realistic values: a land-cover map of patches (fields,
forest, a river, a town) whose pixels draw each index from the distribution
measured for that cover on the real scenes (docs/classifier.md), 0.5 % of
scattered NaN and a no-data corner. Then classifies it with

* the compiled numba kernel, all cores (``classify(..., parallel=True)``),
* the same kernel on one core (what each Dask task runs),
* the operator path: ``map_tiles`` over 1024-pixel chunks on Dask's threads,
  and the same with ``outputMargin``'s margin band,
* cache-blocked numpy (the reference applied to 256-row blocks),
* the plain numpy reference (``classify_numpy``) once,

checks that every variant gives the reference's classes, and prints Mpx/s and
the speed-up over the reference. Results also go to
benchmarks/results/classifier.json.

Usage::

    python benchmarks/bench_classifier.py [--size 10980] [--repeat 5] [--rules mosul-5class]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: (mean, sd) of each index per cover, from the real scenes (docs/classifier.md).
COVERS = {
    "water": {"NDVI": (-0.15, 0.08), "NDWI": (0.25, 0.08), "MNDWI": (0.6, 0.12), "BSI": (-0.3, 0.05), "BI2": (0.08, 0.02)},
    "forest": {"NDVI": (0.72, 0.06), "NDWI": (-0.6, 0.05), "MNDWI": (-0.35, 0.08), "BSI": (-0.3, 0.06), "BI2": (0.15, 0.03)},
    "crops": {"NDVI": (0.5, 0.15), "NDWI": (-0.5, 0.1), "MNDWI": (-0.4, 0.1), "BSI": (-0.1, 0.1), "BI2": (0.2, 0.04)},
    "soil": {"NDVI": (0.18, 0.05), "NDWI": (-0.28, 0.04), "MNDWI": (-0.4, 0.06), "BSI": (0.18, 0.05), "BI2": (0.24, 0.04)},
    "town": {"NDVI": (0.1, 0.05), "NDWI": (-0.12, 0.05), "MNDWI": (-0.2, 0.05), "BSI": (0.08, 0.04), "BI2": (0.15, 0.05)},
    "alluvium": {"NDVI": (0.15, 0.04), "NDWI": (-0.24, 0.04), "MNDWI": (-0.3, 0.04), "BSI": (0.11, 0.03), "BI2": (0.12, 0.02)},
}
SHARE = np.array([0.05, 0.2, 0.3, 0.25, 0.1, 0.1])


def make_bands(size: int, names: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    """Realistic index bands (float32, ``size`` x ``size``) for the bands `names`."""
    rng = np.random.default_rng(seed)
    patch = 48  # 480 m patches
    n = -(-size // patch)
    cover = rng.choice(len(COVERS), size=(n, n), p=SHARE / SHARE.sum()).astype(np.uint8)
    river = (np.abs(np.arange(n)[None, :] - (n / 2 + n / 8 * np.sin(np.arange(n)[:, None] / 9))) < 1.5)
    cover[river] = 0
    cover = np.repeat(np.repeat(cover, patch, 0), patch, 1)[:size, :size]
    params = list(COVERS.values())
    out: dict[str, np.ndarray] = {}
    for name in names:
        mean = np.array([p.get(name, (0.0, 0.1))[0] for p in params], np.float32)
        sd = np.array([p.get(name, (0.0, 0.1))[1] for p in params], np.float32)
        a = rng.standard_normal((size, size), dtype=np.float32)
        a *= sd[cover]
        a += mean[cover]
        out[name] = a
    holes = rng.random((size, size), dtype=np.float32) < 0.005
    for a in out.values():
        a[holes] = np.nan
        a[: size // 10, : size // 10] = np.nan  # outside the swath
    return out


def timed(fn, repeat: int, warmup: bool = True) -> tuple[float, object]:
    """Median wall time of `repeat` calls (after one untimed call: compilation
    for the arrays' layout, first-touch page faults)."""
    if warmup:
        fn()
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def blocked_numpy(bands, rules, rows: int = 256):
    from snap_operators.science.classify import classify_numpy

    h = next(iter(bands.values())).shape[0]
    out = np.empty(next(iter(bands.values())).shape, np.uint8)
    for y in range(0, h, rows):
        out[y : y + rows] = classify_numpy({k: v[y : y + rows] for k, v in bands.items()}, rules)[0]
    return out


def dask_tiles(bands, rules, tile: int = 1024, margin_scales=None):
    """The operator's tile function over Dask chunks: the class map (and with `margin_scales`,
    ``outputMargin``'s margin band too, computed and dropped)."""
    import dask
    import dask.array as da

    from snap_operators.core.operator import map_tiles
    from snap_operators.ops.progressive_classifier import classify_tile

    # name=False: no hashing of the in-memory arrays (seconds at this size).
    arrays = {k: da.from_array(v, chunks=tile, name=False) for k, v in bands.items()}
    outputs = {"class_id": "uint8"} if margin_scales is None else {"class_id": "uint8", "margin": "float32"}
    out = map_tiles(lambda t: classify_tile(t, rules, False, margin_scales=margin_scales), arrays, outputs)
    with dask.config.set(scheduler="threads"):
        return dask.compute(*out.values())[0]  # the margin, when asked for, is computed in the same pass


def resolve_on_sample(rules, bands, repeat: int):
    """``(median seconds, resolved rules)`` of :func:`resolve_rules` on the scene sample the operator
    reads (:func:`scene_sample` of 1024² chunks, its defaults), the sample read once."""
    import dask.array as da

    from snap_operators.science.adaptive import resolve_rules, scene_sample

    sample = scene_sample({n: da.from_array(bands[n], chunks=1024, name=False) for n in rules.bands})
    return timed(lambda: resolve_rules(rules, {}, scene=sample), repeat)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rules", default="mosul-5class")
    args = ap.parse_args(argv)

    import numba

    from snap_operators.science.classify import classify, classify_numpy
    from snap_operators.science.rules import load_rules

    rules = load_rules(args.rules)
    t0 = time.perf_counter()
    bands = make_bands(args.size, rules.bands)
    resolve_s = None
    if not rules.is_resolved:
        # Scene-adaptive thresholds: resolved as the operator's initialize() does, on the scene
        # sample of its 1024² chunks; the kernel is timed with the numbers.
        resolve_s, rules = resolve_on_sample(rules, bands, args.repeat)
    mpx = args.size * args.size / 1e6
    print(f"{args.size} x {args.size} = {mpx:.1f} Mpx, bands {', '.join(rules.bands)}, built in {time.perf_counter() - t0:.1f} s")
    if resolve_s is not None:
        print(f"scene-adaptive thresholds resolved on the scene sample (median of {args.repeat}): {resolve_s:.3f} s")
    t0 = time.perf_counter()
    small = {k: np.ascontiguousarray(v[:8, :8]) for k, v in bands.items()}
    classify(small, rules, parallel=True)
    classify(small, rules, parallel=False)
    compile_s = time.perf_counter() - t0

    # Median of 3: the reference's time swings with page faults on its many
    # full-size temporaries, so one run alone makes the ratio a coin toss.
    t_ref, ref = timed(lambda: classify_numpy(bands, rules)[0], 3, warmup=False)
    results = {"numpy reference": t_ref}
    t, got = timed(lambda: classify(bands, rules, parallel=True)[0], args.repeat)
    assert np.array_equal(got, ref), "numba (parallel) differs from the reference"
    results["numba, parallel"] = t
    t, got = timed(lambda: classify(bands, rules, parallel=False)[0], max(1, args.repeat // 2))
    assert np.array_equal(got, ref), "numba (serial) differs from the reference"
    results["numba, 1 thread"] = t
    t, got = timed(lambda: dask_tiles(bands, rules), max(1, args.repeat // 2))
    assert np.array_equal(got, ref), "map_tiles path differs from the reference"
    results["map_tiles, 1024 chunks, Dask threads"] = t
    from snap_operators.science.margin import band_scales

    scales = band_scales({k: v[::16, ::16] for k, v in bands.items()})
    t, got = timed(lambda: dask_tiles(bands, rules, margin_scales=scales), max(1, args.repeat // 2))
    assert np.array_equal(got, ref), "map_tiles path with the margin band differs from the reference"
    results["map_tiles with the margin band (outputMargin)"] = t
    t, got = timed(lambda: blocked_numpy(bands, rules), 1, warmup=False)
    assert np.array_equal(got, ref), "blocked numpy differs from the reference"
    results["numpy, 256-row blocks"] = t

    shares = np.bincount(ref.ravel(), minlength=256)
    print("classes: " + ", ".join(f"{k}: {shares[k] / ref.size:.1%}" for k in (0, 1, 2, 3, 4, 5, 255) if shares[k]))
    print(f"numba {numba.__version__} ({numba.threading_layer()} threads: {numba.get_num_threads()}), kernel compile {compile_s:.1f} s")
    print()
    print("| variant | seconds | Mpx/s | x numpy |")
    print("|---|---:|---:|---:|")
    for name, t in results.items():
        print(f"| {name} | {t:.3f} | {mpx / t:.0f} | {t_ref / t:.1f} |")
    record = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "size": args.size,
        "rules": args.rules,
        "compile_seconds": compile_s,
        "resolve_seconds": resolve_s,
        "seconds": results,
        "mpx_per_s": {k: mpx / v for k, v in results.items()},
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "classifier.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
