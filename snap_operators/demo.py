"""``make demo``: the project's main job on a synthetic scene.

Writes a synthetic Sentinel-2/Sentinel-1 scene with known truth, runs the
project's graphs on it with the standalone engine and prints where the
outputs are. Run ``python -m snap_operators.demo --help``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .engine import load_graph, run_graph
from .errors import SnapPcError
from .operator import ExecutionContext

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"


def run(graph: str, variables: dict[str, str], progress: bool) -> list[str]:
    """Run one graph of ``graphs/`` and return the paths it wrote."""
    t0 = time.perf_counter()
    result = run_graph(load_graph(GRAPHS / graph, variables), ExecutionContext(overwrite=True, progress=progress))
    print(f"  {graph}: {time.perf_counter() - t0:.1f} s -> {', '.join(map(str, result.outputs))}")
    return result.outputs


def summarize_indices(indices_tif: Path, truth_tif: Path) -> str:
    """Median NDVI / MNDWI per true class, as a small table."""
    import rasterio

    from .synth import CLASS_NAMES

    with rasterio.open(indices_tif) as ds:
        ndvi, mndwi = ds.read(1), ds.read(2)
    with rasterio.open(truth_tif) as ds:
        truth = ds.read(1)
    lines = [f"  {'Class':<40} {'pixels':>9} {'NDVI':>7} {'MNDWI':>7}"]
    for cid, name in CLASS_NAMES.items():
        m = truth == cid
        if m.any():
            lines.append(f"  {cid} {name:<38} {int(m.sum()):>9} {np.nanmedian(ndvi[m]):>7.3f} {np.nanmedian(mndwi[m]):>7.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m snap_operators.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    ap.add_argument("--size", type=int, default=1024, help="scene width/height in pixels (default 1024)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    progress = sys.stderr.isatty()
    try:
        from .synth import write_synthetic_scene

        print(f"1. synthetic scene {args.size} x {args.size} px (seed {args.seed}) in {out}/scene")
        scene = write_synthetic_scene(out / "scene", args.size, args.seed, progress=progress)
        print("2. graphs (standalone Dask engine)")
        idx = out / "s2_ndvi_mndwi.tif"
        run("s2_ndvi_mndwi.xml", {"input": str(scene["s2"]), "output": str(idx)}, progress)
        run("s1s2_collocate.xml", {"input": str(scene["s2"]), "inputS1": str(scene["s1"]), "output": str(out / "s1s2_collocated.dim")}, progress)
        print("3. indices per true class")
        print(summarize_indices(idx, scene["truth"]))
    except SnapPcError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"outputs are in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
