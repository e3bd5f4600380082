"""Whole Sentinel-2 classifier graph vs the I/O floor, in one run.

* **I/O floor**: a graph that reads the same input bands the classifier graph
  reads and writes one uint8 band with the same Write settings (GeoTIFF,
  tiled, DEFLATE), with trivial arithmetic in between.
* **raster graph**: ``graphs/progressive_classifier_s2.xml`` without its
  LabelMaskExport node (Read -> Resample -> SpectralIndices ->
  ProgressiveClassifier -> Write), with the area table.
* **whole graph**: ``graphs/progressive_classifier_s2.xml`` as shipped,
  including vector label masks (GeoPackage), once per ``--min-areas`` value
  of its ``minArea`` variable (500: the shipped default; 0: every region).

Each run is a fresh process (peak RSS = its ``ru_maxrss``), after a warm-up
run on a small scene in the same process; its CPU time (user + system, all
threads) is reported beside the wall time, since on a shared machine the CPU
ratio moves less than the wall-clock one. With ``--repeat N`` the floor and
every graph run N times, interleaved (floor, raster, whole, floor, ...), so
each ratio compares runs made under the same load; the table gives the
median. Usage::

    python benchmarks/bench_s2_graph.py [--size 10980] [--repeat 2] [--min-areas 500 0]
        [--work /tmp/snap-pc-bench]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
S2_GRAPH = ROOT / "graphs" / "progressive_classifier_s2.xml"

FLOOR = """<graph id="io_floor"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file><bandNames>B2,B3,B4,B8,B11</bandNames></parameters></node>
  <node id="BandMaths"><operator>BandMaths</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><targetBands><targetBand><name>class_id</name><type>uint8</type>
      <expression>B2 + B3 + B4 + B8 + B11 &gt; 1</expression><noDataValue>255</noDataValue></targetBand></targetBands></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="BandMaths"/></sources>
    <parameters><file>${output}</file><formatName>GeoTIFF</formatName></parameters></node>
</graph>"""

CHILD = r"""
import json, resource, sys, time
from snap_operators.engine.runner import load_graph, run_graph
from snap_operators.core.context import ExecutionContext
graph, variables, warm_variables = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
run_graph(load_graph(graph, warm_variables), ExecutionContext(overwrite=True))
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
t0, c0 = time.perf_counter(), cpu()
run_graph(load_graph(graph, variables), ExecutionContext(overwrite=True))
dt, dc = time.perf_counter() - t0, cpu() - c0
print(json.dumps({"seconds": dt, "cpu_seconds": dc, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def scene(work: Path, size: int) -> Path:
    from snap_operators.apps.synth import write_synthetic_scene

    s2 = work / f"scene_{size}" / "s2.tif"
    if not s2.exists():
        write_synthetic_scene(s2.parent, size, seed=0)
    return s2


def run(graph: Path, variables: dict, warm: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(graph), json.dumps(variables), json.dumps(warm)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{graph.name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--work", type=Path, default=Path("/tmp/snap-pc-bench"))
    ap.add_argument("--skip-whole", action="store_true", help="leave out the runs with label masks")
    ap.add_argument("--min-areas", type=float, nargs="+", default=[500.0, 0.0],
                    help="minArea values (m²) of the whole-graph runs (default: 500, the shipped default, and 0)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of floor + graphs (median reported)")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    src, small = scene(args.work, args.size), scene(args.work, 256)
    out = args.work / "s2graph"
    out.mkdir(exist_ok=True)
    floor_graph = out / "io_floor.xml"
    floor_graph.write_text(FLOOR)
    raster_graph = out / "classifier_raster.xml"
    text = S2_GRAPH.read_text()
    text = re.sub(r'\s*<node id="LabelMaskExport">.*?</node>', "", text, flags=re.S)
    text = re.sub(r'\s*<node id="LabelMaskExport">\s*<displayPosition[^>]*/>\s*</node>', "", text, flags=re.S)
    raster_graph.write_text(text)
    (out / "classifier_raster.properties").write_text((S2_GRAPH.with_suffix(".properties")).read_text())

    def variables(src_path: Path, tag: str) -> dict:
        return {"input": str(src_path), "output": str(out / f"{tag}.tif"), "labels": str(out / f"{tag}.gpkg"),
                "areaTable": str(out / f"{tag}_classifier_areas.csv")}

    runs = [("I/O floor", floor_graph, {}), ("raster graph", raster_graph, {})]
    if not args.skip_whole:
        runs += [(f"whole graph, label masks minArea={m:g} m²", S2_GRAPH, {"minArea": f"{m:g}"}) for m in args.min_areas]
    rows: dict[str, dict] = {}
    for _ in range(args.repeat):
        for name, graph, extra in runs:
            tag = re.sub(r"[^a-z0-9]+", "_", name.lower())
            r = run(graph, {**variables(src, tag), **extra}, {**variables(small, "warm"), **extra})
            if graph is S2_GRAPH:
                r["regions"] = region_count(out / f"{tag}_areas.csv")
            rows.setdefault(name, {"seconds_all": [], "cpu_seconds_all": [], "peak_rss_mib_all": []})
            rows[name]["seconds_all"].append(r["seconds"])
            rows[name]["cpu_seconds_all"].append(r["cpu_seconds"])
            rows[name]["peak_rss_mib_all"].append(r["peak_rss_mib"])
            if "regions" in r:
                rows[name]["regions"] = r["regions"]
    for r in rows.values():
        r["seconds"] = statistics.median(r["seconds_all"])
        r["cpu_seconds"] = statistics.median(r["cpu_seconds_all"])
        r["peak_rss_mib"] = max(r["peak_rss_mib_all"])
    floor_all = rows["I/O floor"]["seconds_all"]
    floor_cpu = rows["I/O floor"]["cpu_seconds_all"]
    for r in rows.values():  # ratio to the floor of the same round, then the median
        r["x_floor_all"] = [t / f for t, f in zip(r["seconds_all"], floor_all)]
        r["x_floor"] = statistics.median(r["x_floor_all"])
        r["cpu_x_floor_all"] = [t / f for t, f in zip(r["cpu_seconds_all"], floor_cpu)]
        r["cpu_x_floor"] = statistics.median(r["cpu_x_floor_all"])
    mpx = args.size**2 / 1e6
    info = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
            "size": args.size, "repeat": args.repeat, "versions": versions(), "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "s2_graph.json").write_text(json.dumps(info, indent=2))
    print(f"{args.size} x {args.size} px ({mpx:.1f} Mpx); {info['machine']}; {info['date']}; "
          f"median of {args.repeat}; {info['versions']}")
    print("| run | time (s) | Mpx/s | x I/O floor (each round) | CPU (s) | CPU x floor | regions | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        each = ", ".join(f"{x:.2f}" for x in r["x_floor_all"])
        print(f"| {name} | {r['seconds']:.1f} | {mpx / r['seconds']:.1f} | {r['x_floor']:.2f} ({each}) | "
              f"{r['cpu_seconds']:.1f} | {r['cpu_x_floor']:.2f} | {r.get('regions', '')} | {r['peak_rss_mib']:.0f} |")
    return 0


def region_count(areas_csv: Path) -> int:
    """Features LabelMaskExport wrote, from its area table."""
    with open(areas_csv, newline="", encoding="utf-8") as f:
        return sum(int(row["regions"]) for row in csv.DictReader(f))


def versions() -> str:
    import numpy
    import pyogrio
    import rasterio
    import shapely

    return (f"Python {platform.python_version()}, numpy {numpy.__version__}, rasterio {rasterio.__version__} "
            f"(GDAL {rasterio.__gdal_version__}), pyogrio {pyogrio.__version__} (GDAL {pyogrio.__gdal_version_string__}), "
            f"shapely {shapely.__version__} (GEOS {shapely.geos_version_string})")


if __name__ == "__main__":
    sys.exit(main())
