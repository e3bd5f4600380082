"""SpectralIndices benchmark: fused numba kernel vs numpy reference.

Computes the default index set (NDVI, NDWI, MNDWI, NDBI, BSI, SAVI, NDMI:
five input bands B2 B3 B4 B8 B11, seven outputs) on in-memory float32 random
reflectance of SIZE x SIZE pixels (5 % NaN), in one process, each path run
once untimed (so it does not pay for memory the process touches first) and
then timed REPEAT times (the numpy paths once):

* ``tiled``: the ``SpectralIndices`` operator on an in-memory product streamed
  by the engine (``engine.store``: Dask threads, TILE x TILE chunks held as
  separate contiguous arrays as a reader hands them over, blocks stored into
  preallocated outputs): the path a graph run takes, minus I/O; and the same
  per-tile mapping with the numpy reference;
* ``one call``: ``compute_indices`` on whole arrays, outputs allocated per
  call: fused kernel with rows over numba's threads (``parallel=True``),
  fused kernel on one thread, numpy reference;
* ``compute only``: the fused kernel writing into outputs allocated and
  touched beforehand (``out=``): the arithmetic alone.

Per 1024^2 tile, one thread, outputs allocated per call (what a Dask or SNAP
worker does for each chunk), the variants alternating round by round (each
round starting with the next variant):

* ``--baseline FILE``: this ``compute_indices`` against another version of
  ``snap_operators/science/indices.py`` (e.g. ``git show HEAD~1:...`` saved to
  a file), loaded beside it: before vs after in one run, as a ratio;
* ``--catalogue``: indices of the Awesome Spectral Indices catalogue (numpy
  expressions of the catalogue's formulas: EVI, kNDVI, NDREI, the catalogue's
  NDVI) against this project's fused NDVI and the default set.

Throughput is megapixels of the scene per second of wall time, all seven
indices together; the ratio compares a fused path with the numpy reference
run the same way. CPU time (all threads of the process) is reported too:
on a machine shared with other work, wall time grows with the load and CPU
time much less. Peak memory at 10980: about 13 GiB. Results are printed as a
Markdown table and saved to benchmarks/results/indices.json.

Usage::

    python benchmarks/bench_indices.py [--size 10980] [--repeat 3] [--tile-size 1024]
        [--baseline OLD_indices.py] [--catalogue] [--tiles-only]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import dask.array as da
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from snap_operators.core.context import ExecutionContext
from snap_operators.core.operator import map_tiles
from snap_operators.core.product import Band, Product  # noqa: E402
from snap_operators.core.streaming import store  # noqa: E402
from snap_operators.ops.spectral_indices import SpectralIndicesOp  # noqa: E402
from snap_operators.science.indices import (  # noqa: E402
    DEFAULT_INDICES,
    INDICES,
    compute_indices,
    required_roles,
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_bands(size: int, seed: int = 0, roles: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Role -> ``(size, size)`` float32 reflectance in [0, 0.6), 5 % NaN (the default set's roles and `roles`)."""
    rng = np.random.default_rng(seed)
    bands = {}
    for role in required_roles(DEFAULT_INDICES) + tuple(roles):
        a = rng.random((size, size), dtype=np.float32)
        a *= np.float32(0.6)
        a[rng.random((size, size), dtype=np.float32) < 0.05] = np.nan
        bands[role] = a
    return bands


def tiled_product(bands: dict[str, np.ndarray], tile: int) -> Product:
    """A product whose chunks are separate contiguous arrays, as read from disk."""
    product = Product("bench")
    for role, a in bands.items():
        h, w = a.shape
        rows = [[da.from_array(a[i:i + tile, j:j + tile].copy(), chunks=tile) for j in range(0, w, tile)]
                for i in range(0, h, tile)]
        product.add_band(Band(role, da.block(rows), None, np.nan, "dl"))
    return product


class _Into:
    """Block target writing into an array, as a sink's writer would."""

    def __init__(self, arr):
        self.arr = arr

    def __dask_tokenize__(self):
        # Without this, da.store pickles and hashes the whole output array.
        return ("_Into", id(self.arr), self.arr.shape)

    def __setitem__(self, region, block):
        self.arr[region] = block


def run_tiled(bands, names, tile, repeat, record) -> None:
    """Time the operator through the engine, and the numpy reference mapped the same way."""
    size = next(iter(bands.values())).shape[0]
    product = tiled_product(bands, tile)
    targets = {n: np.full((size, size), np.nan, np.float32) for n in names}
    context = ExecutionContext(tile_size=tile)

    def fused_tiled():
        target = SpectralIndicesOp({"sourceProduct": product}, {"indices": names}).initialize()
        store([target.band(n).data for n in names], [_Into(targets[n]) for n in names], context)

    def numpy_tiled():
        func = functools.partial(compute_indices, names=tuple(names), method="numpy")
        out = map_tiles(func, {r: b.data for r, b in product.bands.items()}, {n: "float32" for n in names})
        store([out[n] for n in names], [_Into(targets[n]) for n in names], context)

    def fused_tiled_consumed():
        # As in a graph, where the index tiles feed the next operator (here a
        # per-tile reduction) instead of being copied into 3.9 GB of RAM.
        import dask

        target = SpectralIndicesOp({"sourceProduct": product}, {"indices": names}).initialize()
        dask.compute(*[target.band(n).data.max() for n in names], scheduler="threads")

    record(f"fused, tiled (engine, Dask threads, {tile}^2 tiles)", "tiled", fused_tiled, repeat)
    record(f"fused, tiled, consumed per tile (graph-like, {tile}^2 tiles)", "tiled", fused_tiled_consumed, repeat)
    record(f"numpy reference, tiled (engine, {tile}^2 tiles)", "tiled", numpy_tiled, 1)


def load_baseline(path: str):
    """Another version of ``snap_operators/science/indices.py``, imported beside this one.

    It is loaded as ``snap_operators.science._indices_baseline``, so its relative
    imports resolve against this checkout's package.
    """
    name = "snap_operators.science._indices_baseline"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_per_tile(bands, tile, repeat, baseline, catalogue, names) -> list[dict]:
    """Per-tile throughput, one thread, variants alternating round by round (see the module docstring)."""
    size = next(iter(bands.values())).shape[0]
    n = max(1, min(16, (size // tile) ** 2))
    per_row = max(1, size // tile)
    tiles = []
    for k in range(n):
        i, j = (k // per_row) * tile, (k % per_row) * tile
        tiles.append({r: np.ascontiguousarray(a[i:i + tile, j:j + tile]) for r, a in bands.items()})
    variants: dict[str, tuple] = {f"default set ({len(names)} indices), fused": (compute_indices, names, {})}
    if baseline is not None:
        variants[f"default set ({len(names)} indices), fused, baseline indices.py"] = (baseline.compute_indices, names, {})
    if catalogue:
        variants.update({
            "NDVI, fused": (compute_indices, ["NDVI"], {}),
            "ASI:NDVI (catalogue formula)": (compute_indices, ["ASI:NDVI"], {}),
            "EVI (catalogue)": (compute_indices, ["EVI"], {}),
            "kNDVI (catalogue, RBF)": (compute_indices, ["kNDVI"], {}),
            "NDREI (catalogue)": (compute_indices, ["NDREI"], {}),
            f"default set + EVI ({len(names) + 1} indices)": (compute_indices, list(names) + ["EVI"], {}),
        })
    for fn, idx, kw in variants.values():  # compile, warm
        fn(tiles[0], idx, **kw)
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants.items())
    for k in range(repeat):
        # Each round starts with another variant: whichever runs first or after which is no advantage.
        for label, (fn, idx, kw) in order[k % len(order):] + order[:k % len(order)]:
            t0 = time.perf_counter()
            for t in tiles:
                fn(t, idx, **kw)
            times[label].append(time.perf_counter() - t0)
    mpx = n * tile * tile / 1e6
    rows = []
    for label, ts in times.items():
        med = statistics.median(ts)
        rows.append({"path": label, "tiles": n, "tile": tile, "seconds_median": med, "mpx_per_s": mpx / med,
                     "runs": repeat})
        print(f"per tile, {label}: {mpx / med:.0f} Mpx/s (median of {repeat} x {n} tiles)", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tile-size", type=int, default=1024)
    ap.add_argument("--baseline", help="another version of snap_operators/science/indices.py to time against")
    ap.add_argument("--catalogue", action="store_true", help="also time catalogue indices per tile")
    ap.add_argument("--tiles-only", action="store_true", help="only the per-tile comparisons")
    args = ap.parse_args(argv)
    # the per-pixel indices of the default set; PANTEX (a neighbourhood texture with a halo) has its own kernel
    size, tile, names = args.size, args.tile_size, [n for n in DEFAULT_INDICES if INDICES[n].halo == 0]
    print(f"indices: {', '.join(names)}", file=sys.stderr)
    mpx = size * size / 1e6
    load0 = os.getloadavg()

    t0 = time.perf_counter()
    bands = make_bands(size, roles=("B5",) if args.catalogue else ())
    print(f"generated {len(bands)} bands of {size}x{size} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    small = {r: a[:64, :64].copy() for r, a in bands.items()}
    t0 = time.perf_counter()
    compute_indices(small, names, method="numba")
    compute_indices(small, names, method="numba", parallel=True)
    compile_s = time.perf_counter() - t0

    results = []
    baseline = load_baseline(args.baseline) if args.baseline else None
    per_tile = run_per_tile(bands, tile, args.repeat, baseline, args.catalogue, names) if (
        baseline is not None or args.catalogue) else []

    def record(label: str, mode: str, fn, repeat: int) -> None:
        fn()  # untimed: first touch of this path's memory
        times, cpu = [], []
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            fn()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        med, cpu_med = statistics.median(times), statistics.median(cpu)
        results.append({"path": label, "mode": mode, "seconds_median": med, "seconds_best": min(times),
                        "cpu_seconds_median": cpu_med, "mpx_per_s": mpx / med, "mpx_per_cpu_s": mpx / cpu_med,
                        "runs": repeat})
        print(f"{label}: median {med:.3f} s ({mpx / med:.0f} Mpx/s), {cpu_med:.3f} CPU-s, over {repeat}",
              file=sys.stderr)

    if not args.tiles_only:
        # Tiled, as a graph runs; its copies of the inputs go when it returns.
        run_tiled(bands, names, tile, args.repeat, record)

        # Whole arrays, one call each, outputs allocated per call.
        record("fused, parallel (one call)", "whole",
               lambda: compute_indices(bands, names, method="numba", parallel=True), args.repeat)
        record("fused, serial (one call, 1 thread)", "whole",
               lambda: compute_indices(bands, names, method="numba"), args.repeat)
        record("numpy reference (one call)", "whole", lambda: compute_indices(bands, names, method="numpy"), 1)

        # The arithmetic alone.
        out = np.full((len(names), size, size), np.nan, np.float32)
        record("fused, parallel, compute only (warm outputs)", "warm",
               lambda: compute_indices(bands, names, method="numba", parallel=True, out=out), args.repeat)
        record("fused, serial, compute only (warm outputs, 1 thread)", "warm",
               lambda: compute_indices(bands, names, method="numba", out=out), args.repeat)

    numpy_mpx = {r["mode"]: r["mpx_per_s"] for r in results if r["path"].startswith("numpy")}
    for r in results:
        r["vs_numpy_same_mode"] = r["mpx_per_s"] / numpy_mpx[r["mode"]] if r["mode"] in numpy_mpx else None
    info = {
        "date": _dt.date.today().isoformat(),
        "size": size,
        "indices": names,
        "tile_size": tile,
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": __import__("numba").__version__,
        "compile_or_cache_load_s": compile_s,
        "load_average_1_5_15_at_start": load0,
        "load_average_1_5_15_at_end": os.getloadavg(),
        "results": results,
        "per_tile": per_tile,
        "baseline": args.baseline,
    }
    print(f"\n{size} x {size} float32, default index set ({', '.join(names)}); "
          f"{info['nproc']} x {info['cpu']}; {info['date']}; 1-min load average "
          f"{load0[0]:.1f} at start, {info['load_average_1_5_15_at_end'][0]:.1f} at end\n")
    print("| path | median time (s) | Mpx/s | vs numpy, same mode | CPU time (s) | Mpx per CPU-s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = "" if r["vs_numpy_same_mode"] is None or r["path"].startswith("numpy") else f"{r['vs_numpy_same_mode']:.1f}x"
        print(f"| {r['path']} | {r['seconds_median']:.2f} | {r['mpx_per_s']:.0f} | {ratio} | "
              f"{r['cpu_seconds_median']:.2f} | {r['mpx_per_cpu_s']:.0f} |")
    if per_tile:
        ref = per_tile[0]["mpx_per_s"]
        print(f"\nPer {tile}^2 tile, one thread, outputs allocated per call ({per_tile[0]['tiles']} tiles, "
              f"median of {args.repeat} rounds, variants alternating)\n")
        print("| per tile | Mpx/s | vs default set, fused |")
        print("|---|---:|---:|")
        for r in per_tile:
            print(f"| {r['path']} | {r['mpx_per_s']:.0f} | {r['mpx_per_s'] / ref:.2f} |")
    dest = HERE / "results" / "indices.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
