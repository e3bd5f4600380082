"""Engine benchmark: Read -> BandMaths -> Write on synthetic Sentinel-2 scenes.

Measures wall time, throughput (Mpx/s) and peak RSS of a whole graph run
(`benchmarks/read_bandmaths_write.xml`) for scene sizes 2048, 8192 and 10980,
each run in a fresh Python process so its peak RSS is its own. Reports the
linearity of time in pixels (8192^2 vs 2048^2, same run).

Usage::

    python benchmarks/bench_engine.py [--sizes 2048 8192 10980] [--work DIR] [--tile-size 1024]

Scenes are generated once into --work (default /tmp/snap-pc-bench) and
reused. Results are printed as a Markdown table and saved as JSON in
benchmarks/results/engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRAPH = HERE / "read_bandmaths_write.xml"

CHILD = r"""
import json, resource, sys, time
from snap_operators.engine.runner import load_graph, run_graph
from snap_operators.core.context import ExecutionContext
graph, src, dst, tile, warm = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
# A first run on a small scene pays what every process pays once (thread pool,
# GDAL drivers, lazy imports), so the timed run measures the per-pixel work.
run_graph(load_graph(graph, {"input": warm, "output": dst + ".warm.tif"}), ExecutionContext(tile_size=tile, overwrite=True))
t0 = time.perf_counter()
run_graph(load_graph(graph, {"input": src, "output": dst}), ExecutionContext(tile_size=tile, overwrite=True))
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def ensure_scene(work: Path, size: int) -> Path:
    from snap_operators.apps.synth import write_synthetic_scene

    folder = work / f"scene_{size}"
    s2 = folder / "s2.tif"
    if not s2.exists():
        t0 = time.perf_counter()
        write_synthetic_scene(folder, size, seed=0, progress=sys.stderr.isatty())
        print(f"generated {size}^2 scene in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return s2


def run_once(src: Path, dst: Path, tile: int, warm: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(GRAPH), str(src), str(dst), str(tile), str(warm)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 10980])
    ap.add_argument("--work", type=Path, default=Path("/tmp/snap-pc-bench"))
    ap.add_argument("--tile-size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2, help="runs per size; the fastest is kept")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    warm = ensure_scene(args.work, 256)
    for size in args.sizes:
        src = ensure_scene(args.work, size)
        best = None
        for _ in range(args.repeat):
            r = run_once(src, args.work / f"ndvi_{size}.tif", args.tile_size, warm)
            if best is None or r["seconds"] < best["seconds"]:
                best = {**r, "peak_rss_mib": max(r["peak_rss_mib"], best["peak_rss_mib"] if best else 0)}
        mpx = size * size / 1e6
        rows.append({"size": size, "mpx": mpx, **best, "mpx_per_s": mpx / best["seconds"]})
        for leftover in args.work.glob(f"ndvi_{size}.tif*"):
            leftover.unlink()
    by = {r["size"]: r for r in rows}
    linearity = None
    if 2048 in by and 8192 in by:
        linearity = (by[8192]["seconds"] / by[2048]["seconds"]) / 16.0
    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "tile_size": args.tile_size,
        "rows": rows,
        "linearity_8192_vs_2048": linearity,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "engine.json").write_text(json.dumps(info, indent=2))
    print(f"machine: {info['machine']}; date {info['date']}; tile {args.tile_size}")
    print("| scene | Mpx | time (s) | Mpx/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} x {r['size']} | {r['mpx']:.1f} | {r['seconds']:.1f} | {r['mpx_per_s']:.1f} | {r['peak_rss_mib']:.0f} |")
    if linearity is not None:
        print(f"time(8192^2) / time(2048^2) / 16 = {linearity:.3f}  (1.00 = perfectly linear; limit 1 +/- 0.25)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
