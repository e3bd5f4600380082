"""SNAP adapter benchmark: time per 512 x 512 tile call of each SNAP Python operator.

Inside SNAP every Python tile call of the process runs under one lock, so the
time of the ``computeTile`` calls of one tile (one per band, the first
computing all bands) bounds the throughput of our operators
in SNAP, however many cores SNAP has. The adapters are driven here through
the in-repo stand-in of SNAP's Java API (``tests/snap/snap_standin``) on a
synthetic Sentinel-2 scene; each tile call is split into

* Java side: the stand-in's ``getSourceTile``/``getSamplesFloat``/
  ``setSamples`` (numpy copies here; SNAP's own per-pixel Java loops and
  its upstream operators come on top in SNAP),
* kernel: the operator's pure per-tile function (the standalone's),
* adapter: the rest (sinks: area counting, polygonizing, writing).

Usage::

    python benchmarks/bench_snap_adapter.py [--size 2048] [--tile 512] [--readme FILE]

Prints a Markdown table and writes it, with the machine and date, to
a Markdown file given with ``--readme`` (figures are kept in ``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "snap"))

from snap_standin import jpy_api as J

from snap_operators.apps.synth import S2_BANDS, synthetic_arrays
from snap_operators.snap.adapter import make_operator_class

EPSG = "EPSG:32638"
TRANSFORM = (10.0, 0.0, 300000.0, 0.0, -10.0, 4030000.0)


def source_product(size: int, tile: int) -> J.Product:
    """A Java Sentinel-2 product (float32 reflectance) of the synthetic scene."""
    arrays = synthetic_arrays(size, seed=1)
    p = J.Product("S2_synthetic", "S2_MSI_Level-2A", size, size)
    for name in S2_BANDS:
        band = p.addBand(name, J.ProductData.TYPE_FLOAT32)
        band.setNoDataValue(float("nan"))
        band.setNoDataValueUsed(True)
        J.set_raster(band, arrays[name])
    p.setSceneGeoCoding(J.crs_geocoding(EPSG, TRANSFORM, size, size))
    p.setPreferredTileSize(tile, tile)
    return p


def timed_run(op_class, context: J.Operator, tile: int) -> dict:
    """Run one operator through all tiles, timing the computeTile calls of every tile (one per
    band; the first computes them all) and their parts."""
    op = op_class()
    t0 = time.perf_counter()
    op.initialize(context)
    init_s = time.perf_counter() - t0
    run = op._run
    kernel_s = [0.0]
    func = run.kernel.func

    def timed_kernel(tiles, *window):  # window: (source, target) rectangles of kernels with a halo
        k0 = time.perf_counter()
        try:
            return func(tiles, *window)
        finally:
            kernel_s[0] += time.perf_counter() - k0

    run.kernel = dataclasses.replace(run.kernel, func=timed_kernel)  # TileKernel is frozen
    target = context.getTargetProduct()
    computed = [b for b in target.getBands() if not b.isSourceImageSet()]
    for b in computed:
        b._raster = np.zeros((b.getRasterHeight(), b.getRasterWidth()), J.DTYPES[b.getDataType()])
    calls = []
    for x, y, w, h in J.tile_grid(target.getSceneRasterWidth(), target.getSceneRasterHeight(), tile, tile):
        rect = J.Rectangle(x, y, w, h)
        tiles = J.target_tiles(computed, rect)
        J.SECONDS.clear()
        kernel_s[0] = 0.0
        c0 = time.perf_counter()
        for b in computed:
            op.computeTile(context, b, tiles.get(b))
        total = time.perf_counter() - c0
        for b in computed:
            b._raster[y:y + h, x:x + w] = tiles.get(b)._written
        calls.append((total, sum(J.SECONDS.values()), kernel_s[0]))
    op.dispose(context)
    med = [statistics.median(c[k] for c in calls) for k in range(3)]
    return {"init_s": init_s, "tiles": len(calls), "total_ms": med[0] * 1e3, "java_ms": med[1] * 1e3,
            "kernel_ms": med[2] * 1e3, "adapter_ms": (med[0] - med[1] - med[2]) * 1e3,
            "max_ms": max(c[0] for c in calls) * 1e3, "mpx_s": tile * tile / med[0] / 1e6, "target": target}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="scene edge in pixels (default 2048)")
    ap.add_argument("--tile", type=int, default=512, help="SNAP tile edge in pixels (default 512)")
    ap.add_argument("--readme", type=Path, default=None, help="also write the figures as Markdown to FILE")
    args = ap.parse_args(argv)

    tile = args.tile
    print(f"building a {args.size} x {args.size} synthetic scene...", flush=True)
    src = source_product(args.size, tile)
    indices_op = make_operator_class("SpectralIndices", api=J)
    classifier_op = make_operator_class("ProgressiveClassifier", api=J)
    export_op = make_operator_class("LabelMaskExport", api=J)

    # Warm-up on a small scene: numba compilation must not count as a tile call.
    small = source_product(256, 128)
    s1 = J.run_operator(indices_op(), J.Operator({"sourceProduct": small}, {}))
    s2 = J.run_operator(classifier_op(), J.Operator({"sourceProduct": s1}, {"rules": "mosul-5class"}))
    with tempfile.TemporaryDirectory() as tmp:
        J.run_operator(export_op(), J.Operator({"sourceProduct": s2}, {"file": J.File(os.path.join(tmp, "w.gpkg"))}))

        rows = []
        r = timed_run(indices_op, J.Operator({"sourceProduct": src}, {}), tile)
        rows.append(("SpectralIndices (8 default indices from 6 bands)", r))
        indices = r["target"]
        r = timed_run(classifier_op, J.Operator({"sourceProduct": indices}, {"rules": "mosul-5class"}), tile)
        rows.append(("ProgressiveClassifier (mosul-5class, area table)", r))
        classes = r["target"]
        r = timed_run(classifier_op, J.Operator({"sourceProduct": indices}, {"rules": "coastal-4class"}), tile)
        rows.append(("ProgressiveClassifier (coastal-4class: Otsu in initialize)", r))
        r = timed_run(export_op, J.Operator({"sourceProduct": classes}, {"file": J.File(os.path.join(tmp, "m.gpkg"))}),
                      tile)
        rows.append(("LabelMaskExport (GPKG, 4-connected)", r))

    header = ("| operator | ms / tile (median) | of which Java side | kernel | adapter + sink | slowest tile ms "
              "| Mpx/s | initialize s |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['total_ms']:.1f} | {r['java_ms']:.1f} | {r['kernel_ms']:.1f} | "
                     f"{r['adapter_ms']:.1f} | {r['max_ms']:.1f} | {r['mpx_s']:.1f} | {r['init_s']:.2f} |")
    table = "\n".join(lines)
    print(table)

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    import numba

    machine = (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
               f"{platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}")
    text = f"""# SNAP adapter benchmark

Time of the `computeTile` calls of one {tile} x {tile} tile (one per band; the first
computes all bands) of each SNAP Python
operator (`snap_operators/snap/adapter.py`), driven through the stand-in of SNAP's
Java API (`tests/snap/snap_standin`) on a {args.size} x {args.size} synthetic Sentinel-2
scene ({(args.size // tile) ** 2} tiles; median over them). Reproduce with

    python benchmarks/bench_snap_adapter.py --size {args.size} --tile {tile}

**Why per tile:** SNAP runs every Python tile call of its process under one lock
(`synchronized (PyLib.class)` in esa-snappy's `PyOperator`), so one call at a time:
the Mpx/s column is the ceiling of each operator inside SNAP, whatever the number
of cores; chained Python operators share it. The standalone engine
(`snap-pc run`) has no such lock and scales with cores.

- *Java side*: the stand-in's `getSourceTile` / `getSamplesFloat` / `setSamples`
  (numpy copies). In SNAP these are Java loops over the tile plus jpy's buffer
  transfer, and the source tiles' own upstream computation comes on top.
- *kernel*: the operator's pure per-tile function, the very one the standalone
  engine maps over its chunks (`compute_indices`, `classify_tile`; for
  LabelMaskExport the class band passes through).
- *adapter + sink*: the rest: wrapping tiles, area counting (classifier),
  polygonizing and writing the regions (LabelMaskExport).
- *initialize*: once per run; the coastal-4class rules resolve their Otsu
  threshold there from a decimated read of every source tile.

{table}

Machine: {machine}. Date: {_dt.date.today().isoformat()}.
"""
    if args.readme is not None:
        args.readme.write_text(text, encoding="utf-8")
        print(f"written to {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
