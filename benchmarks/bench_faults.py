"""Fault trials of issue 13: false successes, lost inputs, complete-looking partial outputs.

Runs the shipped S2 classifier graph (GeoTIFF + area table + GeoPackage label
masks) through ``snap-pc run`` in subprocesses, many times, under faults:

* **concurrent**: two identical runs started at once into one folder;
* **SIGTERM / SIGINT**: the signal at a random moment of the run (uniform over
  the whole run time, so some land in the commit window at its end);
* **SIGKILL**: the same with SIGKILL, then a clean rerun into the folder;
* **full disk**: a file-size limit (``RLIMIT_FSIZE``) below the outputs' size.

After each trial it counts

* **false successes**: exit 0 but an output missing, unreadable or not the
  reference run's (class raster bit for bit, label-mask feature count);
* **lost inputs**: the input scene or the rules file changed;
* **partial outputs**: a failed run (exit != 0) that left an output at its
  final name, or staged (``.part-``) files once the next run into the folder
  has finished.

Usage::

    python benchmarks/bench_faults.py [--trials 10] [--size 1024] [--work /tmp/snap-pc-faults]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import rasterio

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "graphs" / "progressive_classifier_s2.xml"
OUTPUTS = ("classes.tif", "labels.gpkg", "labels_areas.csv")


def command(scene: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "snap_operators.apps.cli", "run", str(GRAPH), f"-Pinput={scene}",
            f"-Poutput={out / 'classes.tif'}", f"-Plabels={out / 'labels.gpkg'}", "--quiet"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def result_of(out: Path) -> tuple | None:
    """(class raster, label-mask feature count) of a finished folder; None when unreadable."""
    try:
        with rasterio.open(out / "classes.tif") as src:
            classes = src.read(1)
        features = pyogrio.read_info(str(out / "labels.gpkg"), layer="label_masks", force_feature_count=True)["features"]
        return classes, features
    except Exception:  # noqa: BLE001 - unreadable is what is counted
        return None


def staged(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if ".part-" in p.name]


class Tally:
    def __init__(self):
        self.rows: dict[str, dict[str, int]] = {}

    def add(self, kind: str, **counts: int) -> None:
        row = self.rows.setdefault(kind, {"trials": 0, "succeeded": 0, "false successes": 0, "lost inputs": 0,
                                          "partial outputs": 0})
        row["trials"] += 1
        for k, v in counts.items():
            row[k] += v


def check(tally: Tally, kind: str, code: int, out: Path, reference, inputs: dict[Path, str]) -> None:
    finals = [out / n for n in OUTPUTS if (out / n).exists()]
    got = result_of(out) if len(finals) == len(OUTPUTS) else None
    complete = got is not None and np.array_equal(got[0], reference[0]) and got[1] == reference[1]
    false_success = partial = 0
    if code == 0:
        false_success = int(not complete)
    else:
        # A signal held back while the outputs were renamed is delivered after them: the run then
        # ends non-zero with every output complete, which is not a partial output.
        partial = int(bool(finals) and not complete)
    lost = sum(digest(p) != h for p, h in inputs.items())
    tally.add(kind, succeeded=int(code == 0), **{"false successes": false_success, "lost inputs": lost,
                                                 "partial outputs": partial})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10, help="trials per fault kind (default 10)")
    ap.add_argument("--size", type=int, default=1024, help="scene edge in pixels (default 1024)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/snap-pc-faults"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    from snap_operators.apps.synth import write_synthetic_scene

    scene = write_synthetic_scene(args.work / "scene", args.size, seed=1)["s2"]
    inputs = {p: digest(p) for p in scene.parent.iterdir() if p.is_file()}

    ref_dir = args.work / "reference"
    ref_dir.mkdir()
    subprocess.run(command(scene, ref_dir), check=True, capture_output=True)  # also fills numba's cache
    times = []
    for k in range(2):  # a warm run's length: the signals are spread over it
        warm = args.work / f"warm-{k}"
        warm.mkdir()
        t0 = time.perf_counter()
        subprocess.run(command(scene, warm), check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    run_time = min(times)
    reference = result_of(ref_dir)
    out_bytes = sum((ref_dir / n).stat().st_size for n in OUTPUTS)
    tally = Tally()
    notes: list[str] = []

    for k in range(args.trials):
        out = args.work / f"concurrent-{k}"
        out.mkdir()
        procs = [subprocess.Popen(command(scene, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(2)]
        codes = [p.wait() for p in procs]
        for code in codes:
            check(tally, "two identical runs at once (per run)", code, out, reference, inputs)
        if codes.count(0) != 1:
            tally.rows["two identical runs at once (per run)"]["false successes"] += codes.count(0) > 1

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            out = args.work / f"{sig.name}-{k}"
            out.mkdir()
            p = subprocess.Popen(command(scene, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.0, run_time))
            p.send_signal(sig)
            _, err = p.communicate()
            aborted = b"Fatal Python error" in err
            check(tally, f"{sig.name} at a random moment", p.returncode, out, reference, inputs)
            if aborted:
                tally.rows[f"{sig.name} at a random moment"]["partial outputs"] += 1
            # The next run into the folder finishes the picture: it must succeed (or find the outputs
            # complete) and leave no staged file of the interrupted one behind.
            rerun = subprocess.run(command(scene, out) + ["--overwrite"], capture_output=True, text=True)
            code = rerun.returncode
            if code != 0:
                notes.append(f"rerun after {sig.name} (trial {k}) exit {code}: "
                             f"{(rerun.stderr.strip().splitlines() or [''])[-1][:300]}")
            check(tally, f"rerun after {sig.name}", code, out, reference, inputs)
            tally.rows[f"rerun after {sig.name}"]["partial outputs"] += int(bool(staged(out)))

        out = args.work / f"full-{k}"
        out.mkdir()
        limit = rng.randint(out_bytes // 20, out_bytes // 2)

        def cap(limit=limit):
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead

        p = subprocess.run(command(scene, out), capture_output=True, preexec_fn=cap)
        check(tally, "file-size limit below the outputs", p.returncode, out, reference, inputs)
        tally.rows["file-size limit below the outputs"]["partial outputs"] += int(bool(staged(out)))

    print(f"{args.size}² S2 classifier graph, a warm run {run_time:.1f} s (signals uniform over it); {args.trials} trials per kind; "
          f"{time.strftime('%Y-%m-%d')}")
    cols = ["trials", "succeeded", "false successes", "lost inputs", "partial outputs"]
    print("| fault | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    bad = 0
    for kind, row in tally.rows.items():
        print(f"| {kind} | " + " | ".join(str(row[c]) for c in cols) + " |")
        bad += row["false successes"] + row["lost inputs"] + row["partial outputs"]
    for note in notes:
        print(f"- {note}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
