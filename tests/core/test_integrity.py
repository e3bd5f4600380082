"""Nothing lost, nothing half-written: failed writes, clashing paths, concurrent runs, signals."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio

from snap_operators.apps.cli import main
from snap_operators.apps.synth import write_synthetic_scene
from snap_operators.core import staging
from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import ProductReadError, ProductWriteError
from snap_operators.engine.runner import load_graph, run_graph
from snap_operators.science.rules import PRESETS_DIR

ROOT = Path(__file__).resolve().parents[2]
CLASSIFIER = ROOT / "graphs" / "progressive_classifier_s2.xml"
RULES = PRESETS_DIR / "mosul-5class.yaml"


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "snap_operators.apps.cli", *[str(a) for a in args]]


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A small synthetic Sentinel-2 scene for the classifier graph."""
    folder = tmp_path_factory.mktemp("scene")
    return write_synthetic_scene(folder, 256, seed=2)["s2"]


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory):
    """A scene the classifier graph needs a few seconds for (signals arrive mid-run)."""
    folder = tmp_path_factory.mktemp("big")
    return write_synthetic_scene(folder, 2048, seed=3)["s2"]


def classify_args(scene, out: Path, *extra):
    return ["run", CLASSIFIER, f"-Pinput={scene}", f"-Poutput={out / 'classes.tif'}",
            f"-Plabels={out / 'labels.gpkg'}", "--quiet", *extra]


# --- write errors -------------------------------------------------------------------------------


def _file_size_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_while_writing_geotiff_fails_and_leaves_nothing(files_in, write_s2, ndvi_graph, tmp_path):
    """GDAL only logs the failed tile writes (EFBIG here, ENOSPC on a full disk): the check after closing catches it."""
    src = tmp_path / "s2.tif"
    write_s2(src, 1024)
    graph = tmp_path / "g.xml"
    graph.write_text(ndvi_graph)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(cli("run", graph, f"-Pinput={src}", f"-Poutput={out / 'v.tif'}", "-Pexpr=B8 * 1000 + B4"),
                          capture_output=True, text=True, timeout=120, preexec_fn=_file_size_limit(2_000_000))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "v.tif" in one_line(proc.stderr) and "wrote" not in proc.stdout
    assert files_in(out) == []


def test_failed_staged_text_write_leaves_nothing(files_in, tmp_path, monkeypatch):
    from snap_operators.core import outputs

    real_open = open

    def full_disk(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        if "w" in mode and staging.staged_owner(Path(path).name):
            f.close()
            raise OSError(28, "No space left on device")
        return f

    monkeypatch.setattr("builtins.open", full_disk)
    with pytest.raises(ProductWriteError, match="No space left on device"):
        outputs.write_text(tmp_path / "report.json", "{}")
    assert files_in(tmp_path) == []


# --- paths a run may not write ------------------------------------------------------------------


def test_area_table_on_the_rules_file_is_refused_and_the_rules_kept(files_in, scene, tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    shutil.copy(RULES, rules)
    before = rules.read_bytes()
    code = main([str(a) for a in classify_args(scene, tmp_path, f"-Prules={rules}", f"-PareaTable={rules}",
                                                "--overwrite")])
    err = capsys.readouterr().err
    assert code == 1
    assert "is an input of this run" in one_line(err) and "rules.yaml" in err
    assert rules.read_bytes() == before
    assert files_in(tmp_path) == ["rules.yaml"]


def test_quicklook_onto_its_own_input_is_refused(scene, tmp_path, capsys):
    classes = tmp_path / "c.tif"
    shutil.copy(scene, classes)
    before = classes.read_bytes()
    code = main(["quicklook", str(classes), str(classes)])
    assert code == 1
    assert "is an input" in one_line(capsys.readouterr().err)
    assert classes.read_bytes() == before


def test_two_outputs_on_one_path_are_refused_before_any_work(files_in, scene, tmp_path, capsys):
    code = main([str(a) for a in classify_args(scene, tmp_path, f"-PareaTable={tmp_path / 'classes.tif'}")])
    err = capsys.readouterr().err
    assert code == 1
    assert "would be written by" in one_line(err)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_special_files_are_never_written(files_in, scene, tmp_path, capsys, kind):
    if kind == "fifo":
        target = tmp_path / "table.csv"
        os.mkfifo(target)
    else:
        target = Path(os.devnull)
    code = main([str(a) for a in classify_args(scene, tmp_path, f"-PareaTable={target}", "--overwrite")])
    err = capsys.readouterr().err
    assert code == 1
    assert "not a regular file" in one_line(err)
    assert not target.is_file()
    assert [n for n in files_in(tmp_path) if n != "table.csv"] == []


def test_dimap_band_file_outside_the_data_folder_is_refused(write_s2, tmp_path):
    from snap_operators.io.dimap import read_dimap, write_dimap
    from snap_operators.io.geotiff import read_geotiff

    src = tmp_path / "s2.tif"
    write_s2(src, 64)
    dim = write_dimap(read_geotiff(src), tmp_path / "p.dim")
    text = dim.read_text()
    dim.write_text(text.replace('href="p.data/B4.hdr"', 'href="../../etc/B4.hdr"'))
    with pytest.raises(ProductReadError, match="outside the product's .data folder"):
        read_dimap(dim)


def test_dimap_with_a_zero_pixel_size_is_refused(write_s2, tmp_path):
    import re

    from snap_operators.io.dimap import read_dimap, write_dimap
    from snap_operators.io.geotiff import read_geotiff

    src = tmp_path / "s2.tif"
    write_s2(src, 64)
    dim = write_dimap(read_geotiff(src), tmp_path / "p.dim")
    text = dim.read_text()
    forged = re.sub(r"<IMAGE_TO_MODEL_TRANSFORM>[^,<]*,", "<IMAGE_TO_MODEL_TRANSFORM>0.0,", text)
    assert forged != text
    dim.write_text(forged)
    with pytest.raises(ProductReadError, match="zero or non-finite pixel size"):
        read_dimap(dim)


# --- runs together, failures after a sink finished --------------------------------------------------


@pytest.mark.slow
def test_two_identical_runs_at_once_one_wins_cleanly(files_in, scene, tmp_path):
    procs = [subprocess.Popen(cli(*classify_args(scene, tmp_path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "being written by another run" in one_line(loser[2]) or "already exists" in one_line(loser[2])
    assert files_in(tmp_path) == ["classes.tif", "classes.tif.aux.xml", "labels.gpkg", "labels.qml", "labels_areas.csv"]
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert ds.read(1).any()


def test_second_run_is_told_who_holds_the_lock(files_in, tmp_path):
    out = tmp_path / "x.tif"
    with staging.OutputLocks([out]):
        proc = subprocess.run([sys.executable, "-c", "from snap_operators.core import staging\n"
                               f"with staging.OutputLocks([{str(out)!r}]): pass"], capture_output=True, text=True,
                              timeout=60)
    assert proc.returncode != 0 and f"is being written by another run (pid {os.getpid()})" in proc.stderr
    assert files_in(tmp_path) == []  # the lock file goes with the lock


def test_label_export_failing_after_the_geotiff_finished_publishes_nothing(files_in, scene, tmp_path, monkeypatch):
    from snap_operators.ops import label_mask_export

    def broken(self):
        raise self.op._fail("simulated failure while checking the layer")

    monkeypatch.setattr(label_mask_export._Export, "_verify", broken)
    graph = load_graph(CLASSIFIER, {"input": str(scene), "output": str(tmp_path / "classes.tif"),
                                    "labels": str(tmp_path / "labels.gpkg")})
    with pytest.raises(ProductWriteError, match="simulated failure"):
        run_graph(graph, ExecutionContext())
    assert files_in(tmp_path) == []


# --- signals and leftovers -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_removes_everything_and_exits_cleanly(files_in, big_scene, tmp_path, sig):
    proc = subprocess.Popen(cli(*classify_args(big_scene, tmp_path)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(staging.staged_owner(n) for n in files_in(tmp_path)):  # the sinks have opened their files
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err  # not -6: no "Fatal Python error" abort
    assert "Fatal Python error" not in err
    assert f"interrupted ({signal.Signals(sig).name})" in one_line(err)
    assert files_in(tmp_path) == []


def test_stale_staged_files_of_dead_runs_are_cleaned_live_ones_kept(files_in, scene, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".classes.tif.part-{staging.HOST}-{dead.pid}-0badc0de.tif"
        stale_dir = tmp_path / f".old.data.part-{staging.HOST}-{dead.pid}-0badc0de.data"
        busy = tmp_path / f".other.tif.part-{staging.HOST}-{live.pid}-0badc0de.tif"
        foreign = tmp_path / f".x.tif.part-ffffffff-{dead.pid}-0badc0de.tif"  # another host's: its pids mean nothing here
        for p in (stale, busy, foreign):
            p.write_bytes(b"x")
        stale_dir.mkdir()
        (stale_dir / "b.img").write_bytes(b"x")
        code = main([str(a) for a in classify_args(scene, tmp_path)])
        capsys.readouterr()
        assert code == 0
        left = files_in(tmp_path)
        assert stale.name not in left and stale_dir.name not in left
        assert busy.name in left and foreign.name in left
    finally:
        live.kill()
        live.wait()


def test_signal_while_publishing_is_held_until_every_output_is_in_place(files_in, scene, tmp_path, monkeypatch, capsys):
    """SIGTERM in the commit window: all renames still happen, then the run ends 143 saying so."""
    real = staging.StagedFiles.publish
    sent = []

    def publish_under_fire(self):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the first sink renames its files
        real(self)

    monkeypatch.setattr(staging.StagedFiles, "publish", publish_under_fire)
    code = main([str(a) for a in classify_args(scene, tmp_path)])
    err = capsys.readouterr().err
    assert sent and code == 128 + signal.SIGTERM
    assert "interrupted (SIGTERM); after every output was written" in one_line(err)
    with rasterio.open(tmp_path / "classes.tif") as src:
        assert src.read(1).any()
    assert (tmp_path / "labels.gpkg").is_file() and (tmp_path / "labels_areas.csv").is_file()
    assert not [n for n in files_in(tmp_path) if ".part-" in n]
