"""Cluster mode against real ``dask scheduler`` / ``dask worker`` processes.

Every test starts its own processes on free ports and stops them in a
finalizer, also when the test fails.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("distributed")

from snap_operators.apps.synth import write_synthetic_scene  # noqa: E402
from snap_operators.core.cluster import ClusterError, connect  # noqa: E402
from snap_operators.core.context import ExecutionContext
from snap_operators.engine.runner import load_graph, run_graph  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GRAPH = ROOT / "graphs" / "progressive_classifier_s2.xml"
DASK = Path(sys.executable).with_name("dask")
SIZE, TILE = 1024, 256  # 16 blocks: halo context and coarse cloud-mask blocks cross block borders


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """A ``dask scheduler`` and ``dask worker`` processes (no nanny: a killed worker stays dead)."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.scheduler_log = logdir / f"scheduler-{self.port}.log"
        self._spawn([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
                    self.scheduler_log)

    def _spawn(self, cmd, log: Path) -> subprocess.Popen:
        with open(log, "w") as fh:
            p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def add_workers(self, n: int) -> None:
        for _ in range(n):
            self._spawn([str(DASK), "worker", self.address, "--nthreads", "1", "--no-dashboard", "--no-nanny",
                         "--memory-limit", "0"], self.logdir / f"worker-{self.port}-{len(self.procs)}.log")

    def client(self, nworkers: int, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while True:  # the scheduler process needs a moment before it listens
            try:
                client = connect(self.address, timeout=10)
                break
            except ClusterError:
                assert time.monotonic() < deadline, f"scheduler did not start: {self.scheduler_log}"
                time.sleep(0.1)
        while len(client.scheduler_info(n_workers=-1)["workers"]) < nworkers:
            assert time.monotonic() < deadline, f"workers did not start: {self.logdir}"
            time.sleep(0.1)
        return client

    def collisions(self) -> list[str]:
        """Scheduler warnings about one key submitted with two different tasks."""
        return [ln for ln in self.scheduler_log.read_text().splitlines() if "Detected different `run_spec`" in ln]

    def stop(self) -> None:
        # Each process leads its own session: signal the whole group, so nothing it started outlives the test.
        for p in reversed(self.procs):
            _signal_group(p, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait(5)
            _signal_group(p, signal.SIGKILL)  # children left behind by a leader that exited


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def processes(tmp_path, request):
    started = []

    def start(workers: int = 1) -> DaskProcesses:
        d = DaskProcesses(tmp_path)
        started.append(d)
        d.add_workers(workers)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster_scene")
    write_synthetic_scene(folder, SIZE, seed=0)
    local = _run(folder / "s2.tif", folder / "local", None)
    return folder / "s2.tif", local


def _run(src: Path, out_dir: Path, client) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "classes.tif"
    graph = load_graph(GRAPH, {"input": str(src), "output": str(out), "labels": str(out_dir / "labels.gpkg")})
    run_graph(graph, ExecutionContext(tile_size=TILE, client=client))
    return _outputs(out_dir)


def _outputs(out_dir: Path) -> dict:
    with rasterio.open(out_dir / "classes.tif") as ds:
        data = ds.read()
        georef = (ds.transform, ds.crs, ds.dtypes)
    return {"classes": data, "georef": georef, "areas": (out_dir / "labels_areas.csv").read_text()}


def _assert_same(got: dict, want: dict) -> None:
    assert got["georef"] == want["georef"]
    assert got["classes"].dtype == want["classes"].dtype
    np.testing.assert_array_equal(got["classes"], want["classes"])  # bit for bit
    assert got["areas"] == want["areas"]


@pytest.mark.slow
@pytest.mark.distributed
def test_fresh_and_reused_clusters_match_local_run(scene, processes, tmp_path):
    src, local = scene
    assert len(np.unique(local["classes"])) > 2  # a real map, not a constant
    for n in range(2):  # fresh clusters
        procs = processes(1)
        with procs.client(1) as client:
            _assert_same(_run(src, tmp_path / f"fresh{n}", client), local)
        assert procs.collisions() == []
    procs = processes(2)
    with procs.client(2) as client:  # one cluster, several runs, two workers
        for n in range(3):
            _assert_same(_run(src, tmp_path / f"reused{n}", client), local)
            assert not client.futures  # every block released
    assert procs.collisions() == []


def _kill_when_busy(client, victim: str, pid: int, timeout: float = 60.0) -> threading.Thread:
    def kill():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.processing(workers=[victim]).get(victim):
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    t = threading.Thread(target=kill, daemon=True)
    t.start()
    return t


@pytest.mark.slow
@pytest.mark.distributed
def test_killed_worker_is_replaced_by_the_other(scene, processes, tmp_path):
    src, local = scene
    procs = processes(2)
    with procs.client(2) as client:
        pids = client.run(os.getpid)
        victim = sorted(pids)[0]
        killer = _kill_when_busy(client, victim, pids[victim])
        got = _run(src, tmp_path / "out", client)
        killer.join(5)
        assert victim not in client.scheduler_info(n_workers=-1)["workers"]  # it really died mid-run
    _assert_same(got, local)


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("when", ["mid-run", "before the run"])
def test_losing_the_only_worker_fails_with_one_line(scene, processes, tmp_path, when):
    src, _ = scene
    procs = processes(1)
    env = {**os.environ, "SNAP_PC_NO_WORKER_TIMEOUT": "3"}
    out = tmp_path / "out"
    with procs.client(1) as client:
        (victim, pid), = client.run(os.getpid).items()
        if when == "before the run":  # then the scene samples of initialize() are the first to wait
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while client.scheduler_info(n_workers=-1)["workers"]:
                assert time.monotonic() < deadline, "the scheduler did not notice the dead worker"
                time.sleep(0.1)
        t0 = time.monotonic()
        run = subprocess.Popen(
            [sys.executable, "-m", "snap_operators.apps.cli", "run", str(GRAPH), f"-Pinput={src}",
             f"-Poutput={out / 'classes.tif'}", f"-Plabels={out / 'labels.gpkg'}", "--tile-size", str(TILE),
             "--scheduler", procs.address],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            if when == "mid-run":
                _kill_when_busy(client, victim, pid).join(60)
            _, stderr = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        elapsed = time.monotonic() - t0
    assert run.returncode != 0
    lines = [ln for ln in stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, stderr
    assert procs.address in lines[0] and "lost its workers; no result after 3 s" in lines[0]
    assert elapsed < 40
    assert not (out / "classes.tif").exists()  # aborted: nothing half-written published


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield server.getsockname()[1]
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    server.close()


def test_silent_port_fails_fast(silent_port):
    address = f"tcp://127.0.0.1:{silent_port}"
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="no Dask scheduler answered at") as err:
        connect(address, timeout=2)
    assert time.monotonic() - t0 < 6
    assert address in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_cli_silent_port_one_line_error(silent_port, tmp_path):
    env = {**os.environ, "SNAP_PC_CONNECT_TIMEOUT": "3"}
    src = tmp_path / "missing.tif"  # never read: the connection fails first
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "snap_operators.apps.cli", "run", str(GRAPH), f"-Pinput={src}",
         f"-Poutput={tmp_path / 'c.tif'}", f"-Plabels={tmp_path / 'l.gpkg'}",
         "--scheduler", f"tcp://127.0.0.1:{silent_port}"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no Dask scheduler answered" in lines[0], proc.stderr
    assert elapsed < 15


def test_refused_port_fails_at_once():
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="cannot connect to Dask scheduler"):
        connect(f"tcp://127.0.0.1:{port}", timeout=5)
    assert time.monotonic() - t0 < 6
