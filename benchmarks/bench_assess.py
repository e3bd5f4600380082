"""Speed and memory of `snap-pc assess` on a large map against a dense reference.

A synthetic land-cover-like reference (smoothed noise cut into five classes: tens of thousands of
regions of tens to hundreds of pixels, as a rasterized land-cover map has) and a class map that
differs from it on 10 % of the pixels, each `--size` squared, tiled DEFLATE GeoTIFF. Each run is a
fresh process (its own peak RSS); `--checkout DIR` also times another checkout of the package (an
older commit: ``git worktree add DIR COMMIT``) in alternation, for a before/after in one run.

    python benchmarks/bench_assess.py --size 4096 --repeat 3 [--checkout /tmp/old]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from snap_operators.apps.assess import assess
t = time.perf_counter()
r = assess(sys.argv[2], sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - t, "oa": r.metrics["overall_accuracy"],
                  "units": r.metrics.get("sampling", {}).get("units"),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_inputs(folder: Path, size: int) -> tuple[Path, Path]:
    """The reference and the class map, `size` squared (written once per folder and size)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from scipy import ndimage

    ref_path, map_path = folder / f"reference_{size}.tif", folder / f"classes_{size}.tif"
    if ref_path.exists() and map_path.exists():
        return ref_path, map_path
    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 6)
    ref = (np.digitize(field, np.quantile(field, [0.2, 0.4, 0.6, 0.8])) + 1).astype(np.uint8)
    classes = ref.copy()
    flip = rng.random(ref.shape) < 0.1
    classes[flip] = rng.integers(1, 6, int(flip.sum()))
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs="EPSG:32633",
                   transform=from_origin(500000, 6000000, 10, 10), tiled=True, compress="deflate")
    for path, data in ((ref_path, ref), (map_path, classes)):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)
    return ref_path, map_path


def run(checkout: Path, reference: Path, classes: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(checkout), str(classes), str(reference)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--checkout", type=Path, help="another checkout of the package, timed in alternation")
    ap.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "snap-pc-bench-assess")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.make_only:
        make_inputs(args.work, args.size)
        return 0
    # made in a child process: a child forked from a process that held the inputs would report that
    # process's peak memory as its own (Linux keeps ru_maxrss across fork and exec)
    subprocess.run([sys.executable, __file__, "--make-only", "--size", str(args.size), "--work", str(args.work)],
                   check=True)
    reference, classes = make_inputs(args.work, args.size)
    checkouts = {"this": ROOT} | ({"other": args.checkout} if args.checkout else {})
    runs: dict[str, list[dict]] = {name: [] for name in checkouts}
    for _ in range(args.repeat):
        for name, path in checkouts.items():
            runs[name].append(run(path, reference, classes))
    print(f"| checkout ({args.size}², dense reference) | runs (s) | median (s) | x this | units | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    this = statistics.median(r["seconds"] for r in runs["this"])
    for name, rs in runs.items():
        median = statistics.median(r["seconds"] for r in rs)
        times = ", ".join(f"{r['seconds']:.1f}" for r in rs)
        print(f"| {name} ({checkouts[name]}) | {times} | {median:.1f} | "
              f"{median / this:.2f} | {rs[0]['units']} | {statistics.median(r['rss_mib'] for r in rs):.0f} |")
    oas = {round(r["oa"], 12) for rs in runs.values() for r in rs}
    print(f"overall accuracy {', '.join(f'{v:.6f}' for v in sorted(oas))} (one figure: the checkouts agree)")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "assess.json").write_text(json.dumps({"size": args.size, "runs": runs,
                                                     "checkouts": {k: str(v) for k, v in checkouts.items()}},
                                                    indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
