"""SpectralIndices benchmark: fused numba kernel vs numpy reference.

Computes the default index set (NDVI, NDWI, MNDWI, NDBI, BSI, SAVI, NDMI:
five input bands B2 B3 B4 B8 B11, seven outputs) on in-memory float32
random reflectance of SIZE x SIZE pixels (5 % NaN), in one process:

* ``fused, parallel``: one call of the numba kernel, rows spread over
  numba's threads (``compute_indices(..., parallel=True)``);
* ``fused, serial``: the same kernel on one thread;
* ``numpy reference (whole arrays)``: the reference on whole arrays
  (``--skip-numpy-whole`` saves its temporaries, about 60 bytes per pixel);
* ``fused, tiled``: the ``SpectralIndices`` operator on an in-memory product
  streamed by the engine (``engine.store``, Dask threads, TILE x TILE chunks
  held as separate contiguous arrays like a reader's, serial kernel per
  tile): the path a graph run takes, minus I/O;
* ``numpy reference, tiled``: the same with the numpy reference per tile.

Throughput is megapixels of the scene per second (all seven indices); the
ratio compares each path with the numpy reference run the same way (whole or
tiled). Output allocation is included, as in real use. Peak memory at 10980:
about 12 GiB (inputs, their tiled copies, outputs and the reference's
temporaries). Results are printed as a
Markdown table and saved to benchmarks/results/indices.json.

Usage::

    python benchmarks/bench_indices.py [--size 10980] [--repeat 3] [--tile-size 1024]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
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

from snap_operators.engine import store  # noqa: E402
from snap_operators.indices import DEFAULT_INDICES, compute_indices, required_roles  # noqa: E402
from snap_operators.operator import ExecutionContext, map_tiles  # noqa: E402
from snap_operators.ops.spectral_indices import SpectralIndicesOp  # noqa: E402
from snap_operators.product import Band, Product  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_bands(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    bands = {}
    for role in required_roles(DEFAULT_INDICES):
        a = rng.random((size, size), dtype=np.float32)
        a *= np.float32(0.6)
        a[rng.random((size, size), dtype=np.float32) < 0.05] = np.nan
        bands[role] = a
    return bands


class _Into:
    def __init__(self, arr):
        self.arr = arr

    def __setitem__(self, region, block):
        self.arr[region] = block


def time_it(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tile-size", type=int, default=1024)
    ap.add_argument("--skip-numpy-whole", action="store_true")
    args = ap.parse_args(argv)
    size, names = args.size, list(DEFAULT_INDICES)
    mpx = size * size / 1e6

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    bands = make_bands(size)
    print(f"generated {len(bands)} bands of {size}x{size} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    small = {r: a[:64, :64].copy() for r, a in bands.items()}
    t0 = time.perf_counter()
    compute_indices(small, names, method="numba")
    compute_indices(small, names, method="numba", parallel=True)
    compile_s = time.perf_counter() - t0

    results = []

    def record(label, fn, repeat):
        times = time_it(fn, repeat)
        med = statistics.median(times)
        mode = "tiled" if "tiled" in label else "warm" if "warm" in label else "whole"
        results.append({"path": label, "mode": mode, "seconds_median": med, "seconds_best": min(times),
                        "mpx_per_s": mpx / med, "runs": repeat})
        print(f"{label}: median {med:.3f} s ({mpx / med:.0f} Mpx/s) over {repeat}", file=sys.stderr)

    # Compute only: the kernel writing into outputs allocated and touched once.
    out = np.full((len(names), size, size), np.nan, np.float32)
    record("fused, parallel, compute only (warm outputs)",
           lambda: compute_indices(bands, names, method="numba", parallel=True, out=out), args.repeat)
    record("fused, serial, compute only (warm outputs, 1 thread)",
           lambda: compute_indices(bands, names, method="numba", out=out), args.repeat)
    record("numpy reference, compute only (warm outputs)",
           lambda: compute_indices(bands, names, method="numpy", out=out), 1)
    del out

    # Whole arrays, one call each, outputs allocated per call and dropped.
    record("fused, parallel (one call)", lambda: compute_indices(bands, names, method="numba", parallel=True), args.repeat)
    record("fused, serial (one call, 1 thread)", lambda: compute_indices(bands, names, method="numba"), args.repeat)
    if not args.skip_numpy_whole:
        record("numpy reference (whole arrays)", lambda: compute_indices(bands, names, method="numpy"), 1)

    # Tiled, as a graph runs: contiguous per-tile input arrays (what a reader
    # hands over), Dask threads, blocks stored into preallocated outputs.
    tile = args.tile_size
    product = Product("bench")
    for role in list(bands):
        a = bands.pop(role)
        rows = [[da.from_array(a[i:i + tile, j:j + tile].copy(), chunks=tile) for j in range(0, size, tile)]
                for i in range(0, size, tile)]
        del a
        product.add_band(Band(role, da.block(rows), None, np.nan, "dl"))
    targets = {n: np.full((size, size), np.nan, np.float32) for n in names}

    def tiled(method: str):
        def run():
            if method == "numba":  # what a graph builds
                target = SpectralIndicesOp({"sourceProduct": product}, {"indices": names}).initialize()
                arrays = [target.band(n).data for n in names]
            else:  # the same per-tile mapping with the numpy reference
                func = functools.partial(compute_indices, names=tuple(names), method="numpy")
                out = map_tiles(func, {r: b.data for r, b in product.bands.items()}, {n: "float32" for n in names})
                arrays = [out[n] for n in names]
            store(arrays, [_Into(targets[n]) for n in names], ExecutionContext(tile_size=tile))

        return run

    record(f"fused, tiled (engine, Dask threads, {tile}^2 tiles)", tiled("numba"), args.repeat)
    record(f"numpy reference, tiled (engine, {tile}^2 tiles)", tiled("numpy"), 1)

    numpy_mpx = {r["mode"]: r["mpx_per_s"] for r in results if r["path"].startswith("numpy")}
    for r in results:
        r["vs_numpy_same_mode"] = r["mpx_per_s"] / numpy_mpx[r["mode"]] if r["mode"] in numpy_mpx else None
    info = {
        "date": _dt.date.today().isoformat(),
        "size": size,
        "indices": names,
        "tile_size": args.tile_size,
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": __import__("numba").__version__,
        "compile_or_cache_load_s": compile_s,
        "load_average_1_5_15_at_start": load0,
        "load_average_1_5_15_at_end": os.getloadavg(),
        "results": results,
    }
    print(f"\n{size} x {size} float32, default index set ({', '.join(names)}); "
          f"{info['nproc']} x {info['cpu']}; {info['date']}; load average at start "
          f"{load0[0]:.1f}, at end {info['load_average_1_5_15_at_end'][0]:.1f}\n")
    print("| path | median time (s) | Mpx/s | vs numpy, same mode |")
    print("|---|---:|---:|---:|")
    for r in results:
        ratio = "n/a" if r["vs_numpy_same_mode"] is None else f"{r['vs_numpy_same_mode']:.1f}x"
        print(f"| {r['path']} | {r['seconds_median']:.2f} | {r['mpx_per_s']:.0f} | {ratio} |")
    out = HERE / "results" / "indices.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
