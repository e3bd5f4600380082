"""CloudMask's cost against the I/O floor, in one run (ratios within each round).

Runs, each a fresh process after a warm-up on a small scene (as ``bench_s2_graph.py``):

* **I/O floor**: read B2 B3 B4 B8 B11, write one uint8 band (``bench_s2_graph.FLOOR``);
* **I/O floor + CloudMask**: the same with CloudMask (``auto``: the synthetic scene has no SCL and
  no B1/B9/B10, so the spectral fallback runs: what "masking on" means for it) between Read and
  BandMaths, whose class band is 254 where ``cloud_mask`` is set: the mask's marginal cost when
  the bands are read anyway, as in the classifier graph;
* **CloudMask spectral alone**: Read -> CloudMask -> Write ``cloud_mask``;
* **I/O floor + CloudMask s2cloudless**: as the second run with B1, B9, B10 made by BandMaths
  (B1 = B2, B9 = 0.3 B8A, B10 = 0.001: the model needs them; the synthetic scene has no such
  bands), when s2cloudless is installed; it reads 8 more bands than the floor.

Usage::

    python benchmarks/bench_cloud_mask.py [--size 10980] [--repeat 2] [--work /tmp/snap-pc-bench]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_s2_graph import FLOOR, run, scene, versions  # noqa: E402

ALONE = """<graph id="cloudmask"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
  {extra}
  <node id="CloudMask"><operator>CloudMask</operator><sources><sourceProduct refid="{src}"/></sources>
    <parameters><method>{method}</method><copySourceBands>false</copySourceBands></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="CloudMask"/></sources>
    <parameters><file>${output}</file><formatName>GeoTIFF</formatName></parameters></node>
</graph>"""

MASKED_FLOOR = """<graph id="masked_floor"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
  {extra}
  <node id="CloudMask"><operator>CloudMask</operator><sources><sourceProduct refid="{src}"/></sources>
    <parameters><method>{method}</method></parameters></node>
  <node id="BandMaths"><operator>BandMaths</operator><sources><sourceProduct refid="CloudMask"/></sources>
    <parameters><targetBands><targetBand><name>class_id</name><type>uint8</type>
      <expression>cloud_mask != 0 &amp;&amp; cloud_mask != 255 ? 254 : (B2 + B3 + B4 + B8 + B11 &gt; 1 ? 1 : 0)</expression>
      <noDataValue>255</noDataValue></targetBand></targetBands></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="BandMaths"/></sources>
    <parameters><file>${output}</file><formatName>GeoTIFF</formatName></parameters></node>
</graph>"""

S2C_BANDS = """<node id="ExtraBands"><operator>BandMaths</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><targetBands>
      <targetBand><name>B1</name><type>float32</type><expression>B2</expression></targetBand>
      <targetBand><name>B9</name><type>float32</type><expression>0.3 * B8A</expression></targetBand>
      <targetBand><name>B10</name><type>float32</type><expression>0.001 + 0 * B2</expression></targetBand>
    </targetBands></parameters></node>
  <node id="BandMerge"><operator>BandMerge</operator>
    <sources><sourceProduct refid="Read"/><sourceProduct.1 refid="ExtraBands"/></sources><parameters/></node>"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/snap-pc-bench"))
    args = ap.parse_args(argv)
    from snap_operators.science.cloudmask import s2cloudless_model_path

    src, small = scene(args.work, args.size), scene(args.work, 256)
    out = args.work / "cloudmask"
    out.mkdir(parents=True, exist_ok=True)
    graphs = {}
    (out / "io_floor.xml").write_text(FLOOR)
    graphs["I/O floor"] = (out / "io_floor.xml", {})
    masked_floor = out / "io_floor_masked.xml"
    masked_floor.write_text(MASKED_FLOOR.replace("{extra}", "").replace("{src}", "Read").replace("{method}", "auto"))
    graphs["I/O floor + CloudMask (auto: spectral), class band masked"] = (masked_floor, {})
    alone = out / "spectral_alone.xml"
    alone.write_text(ALONE.replace("{extra}", "").replace("{src}", "Read").replace("{method}", "spectral"))
    graphs["CloudMask spectral alone, cloud_mask written"] = (alone, {})
    if s2cloudless_model_path():
        s2c = out / "s2cloudless_masked.xml"
        s2c.write_text(MASKED_FLOOR.replace("{extra}", S2C_BANDS).replace("{src}", "BandMerge")
                       .replace("{method}", "s2cloudless"))
        graphs["I/O floor + CloudMask s2cloudless (+ BandMaths B1 B9 B10)"] = (s2c, {})

    def variables(path: Path, tag: str) -> dict:
        return {"input": str(path), "output": str(out / f"{tag}.tif"), "labels": str(out / f"{tag}.gpkg"),
                "areaTable": str(out / f"{tag}_areas.csv")}

    rows: dict[str, dict] = {}
    for _ in range(args.repeat):
        for name, (graph, extra) in graphs.items():
            tag = re.sub(r"[^a-z0-9]+", "_", name.lower())[:40]
            r = run(graph, {**variables(src, tag), **extra}, {**variables(small, "warm"), **extra})
            rows.setdefault(name, {"seconds_all": [], "rss": []})
            rows[name]["seconds_all"].append(r["seconds"])
            rows[name]["rss"].append(r["peak_rss_mib"])
    floor = rows["I/O floor"]["seconds_all"]
    mpx = args.size ** 2 / 1e6
    print(f"{args.size} x {args.size} px ({mpx:.1f} Mpx); median of {args.repeat}; {versions()}")
    print("| run | time (s) | x I/O floor (each round) | s per Mpx | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        ratios = [t / f for t, f in zip(r["seconds_all"], floor)]
        r["x_floor"] = statistics.median(ratios)
        sec = statistics.median(r["seconds_all"])
        print(f"| {name} | {sec:.1f} | {r['x_floor']:.2f} ({', '.join(f'{x:.2f}' for x in ratios)}) | "
              f"{sec / mpx * 1000:.1f} ms | {max(r['rss']):.0f} |")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "cloud_mask.json").write_text(json.dumps({"size": args.size, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
