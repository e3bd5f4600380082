"""N runs of the S2 classifier graph, each on a fresh ``dask scheduler`` + ``dask worker``, vs the local run.

Usage::

    python benchmarks/bench_cluster.py [--runs 20] [--size 2048] [--tile 512] [--workers 1]

Prints one row per run (seconds, output identical to the local run bit for
bit: yes/no, or the one-line error) and ``identical: K of N``. Exit status 1
unless all N are identical.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snap_operators.apps.synth import write_synthetic_scene  # noqa: E402
from snap_operators.core.cluster import connect  # noqa: E402
from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import SnapPcError  # noqa: E402
from snap_operators.engine.runner import load_graph, run_graph  # noqa: E402

GRAPH = ROOT / "graphs" / "progressive_classifier_s2.xml"
DASK = Path(sys.executable).with_name("dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(src: Path, out_dir: Path, tile: int, client) -> np.ndarray:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "classes.tif"
    graph = load_graph(GRAPH, {"input": str(src), "output": str(out), "labels": str(out_dir / "labels.gpkg")})
    run_graph(graph, ExecutionContext(tile_size=tile, client=client))
    with rasterio.open(out) as ds:
        return ds.read()


def _fresh_cluster(logdir: Path, workers: int):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    with open(logdir / f"scheduler-{port}.log", "w") as log:
        procs.append(subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                       "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT))
    for k in range(workers):
        with open(logdir / f"worker-{port}-{k}.log", "w") as log:
            procs.append(subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--no-dashboard"],
                                          stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 60
    while True:
        try:
            client = connect(address, timeout=10)
            break
        except SnapPcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    while len(client.scheduler_info(n_workers=-1)["workers"]) < workers:
        if time.monotonic() > deadline:
            raise SystemExit(f"workers did not start; logs in {logdir}")
        time.sleep(0.1)
    return procs, client


def _stop(procs) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_cluster_") as tmp:
        tmp = Path(tmp)
        write_synthetic_scene(tmp / "scene", args.size, seed=0)
        src = tmp / "scene" / "s2.tif"
        t0 = time.perf_counter()
        local = _run(src, tmp / "local", args.tile, None)
        print(f"local run: {time.perf_counter() - t0:.1f} s; {args.size}² scene, tile {args.tile}")
        print(f"{'run':>4}  {'seconds':>8}  identical")
        same = 0
        for n in range(1, args.runs + 1):
            procs, client = _fresh_cluster(tmp, args.workers)
            t0 = time.perf_counter()
            try:
                got = _run(src, tmp / f"run{n}", args.tile, client)
                ok = got.dtype == local.dtype and np.array_equal(got, local)
                verdict = "yes" if ok else "no"
            except Exception as exc:  # one row per run, whatever happened
                ok, verdict = False, f"no ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
            finally:
                client.close()
                _stop(procs)
            same += ok
            print(f"{n:>4}  {time.perf_counter() - t0:>8.1f}  {verdict}", flush=True)
        print(f"identical: {same} of {args.runs}")
    return 0 if same == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
