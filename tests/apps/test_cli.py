"""`snap-pc` end to end: runs, help, and bad input (one-line error, non-zero exit, nothing left)."""

import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from snap_operators.apps.cli import describe_operator
from snap_operators.core.operator import operators


@pytest.fixture
def scene(tmp_path, write_s2, ndvi_graph):
    src = tmp_path / "s2.tif"
    data = write_s2(src)
    graph = tmp_path / "ndvi.xml"
    graph.write_text(ndvi_graph)
    return tmp_path, src, graph, data


def test_run_writes_expected_ndvi(run_cli, files_in, scene):
    tmp, src, graph, data = scene
    out = tmp / "ndvi.tif"
    code, stdout, err = run_cli("run", graph, f"-Pinput={src}", f"-Poutput={out}", "-Pexpr=(B8 - B4) / (B8 + B4)", "--tile-size", 32)
    assert code == 0, err
    assert f"wrote {out}" in stdout
    with rasterio.open(out) as ds:
        got = ds.read(1)
        assert ds.descriptions[0] == "ndvi"
        assert ds.crs.to_epsg() == 32633
    expected = (data[1] - data[0]) / (data[1] + data[0])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.isnan(got[:3, :3]).all()
    assert not [n for n in files_in(tmp) if ".part" in n]


def test_existing_output_needs_overwrite(run_cli, scene):
    tmp, src, graph, _ = scene
    out = tmp / "ndvi.tif"
    out.write_bytes(b"keep me")
    args = ["run", graph, f"-Pinput={src}", f"-Poutput={out}", "-Pexpr=B8"]
    code, _, err = run_cli(*args)
    assert code == 1 and "exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"keep me"
    code, _, err = run_cli(*args, "--overwrite")
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.count == 1


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing-input", "no-such.tif"),
        ("corrupt-input", "s2_broken.tif"),
        ("write-over-input", "input"),
        ("syntax-error", "column"),
        ("unknown-band", "B99"),
        ("unresolved-var", "${expr}"),
        ("missing-folder", "folder"),
        ("unwritable-folder", "/proc"),
    ],
)
def test_bad_input_one_line_error_and_nothing_written(run_cli, one_line_error, files_in, scene, case, expect):
    tmp, src, graph, _ = scene
    out = tmp / "out.tif"
    args = {"input": src, "output": out, "expr": "(B8 - B4) / (B8 + B4)"}
    if case == "missing-input":
        args["input"] = tmp / "no-such.tif"
    elif case == "corrupt-input":
        broken = tmp / "s2_broken.tif"
        raw = src.read_bytes()
        broken.write_bytes(raw[: len(raw) // 3])
        args["input"] = broken
    elif case == "write-over-input":
        args["output"] = src
    elif case == "syntax-error":
        args["expr"] = "B8 + * B4"
    elif case == "unknown-band":
        args["expr"] = "B99 * 2"
    elif case == "missing-folder":
        args["output"] = tmp / "nope" / "out.tif"
    elif case == "unwritable-folder":
        args["output"] = Path("/proc/out.tif")
    before = files_in(tmp)
    src_bytes = src.read_bytes()
    cli = ["run", graph] + [f"-P{k}={v}" for k, v in args.items() if not (case == "unresolved-var" and k == "expr")]
    code, _, err = run_cli(*cli)
    assert code != 0
    line = one_line_error(err)
    assert expect in line
    assert files_in(tmp) == before
    assert src.read_bytes() == src_bytes


def test_hostile_graph_is_refused(run_cli, one_line_error, tmp_path):
    evil = tmp_path / "evil.xml"
    evil.write_text(
        '<?xml version="1.0"?><!DOCTYPE g [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        '<graph id="g"><version>1.0</version><node id="a"><operator>Read</operator>'
        "<parameters><file>&x;</file></parameters></node></graph>"
    )
    code, _, err = run_cli("run", evil)
    assert code == 1
    assert "unsafe XML" in one_line_error(err)


def test_debug_flag_prints_traceback(run_cli, scene):
    tmp, src, graph, _ = scene
    code, _, err = run_cli("run", graph, f"-Pinput={tmp / 'none.tif'}", f"-Poutput={tmp / 'o.tif'}", "-Pexpr=B8", "-e")
    assert code == 1
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("Error:")


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_disk_full_leaves_nothing_behind(one_line_error, write_s2, ndvi_graph, tmp_path):
    """A real write failure (file size limit -> EFBIG, as on a full disk) in a child process."""
    src = tmp_path / "s2.tif"
    write_s2(src, size=512, seed=3)
    graph = tmp_path / "g.xml"
    graph.write_text(ndvi_graph)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "snap_operators.apps.cli", "run", str(graph), f"-Pinput={src}",
         f"-Poutput={out_dir / 'ndvi.tif'}", "-Pexpr=B8 * 1000 + B4", "--tile-size", "128"],
        capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=300,
    )
    assert proc.returncode != 0
    one_line_error(proc.stderr)
    assert list(out_dir.iterdir()) == []


def test_console_script_exit_code(one_line_error, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "snap_operators.apps.cli", "run", str(tmp_path / "missing.xml")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "cannot read graph file" in one_line_error(proc.stderr)


def test_ops_lists_every_operator(run_cli):
    code, out, _ = run_cli("ops")
    assert code == 0
    for alias in operators():
        assert alias in out


def test_help_describes_parameters(run_cli):
    code, out, _ = run_cli("help", "Resample")
    assert code == 0
    for name in ("referenceBand", "targetResolution", "upsampling", "downsampling", "Graph XML Format:"):
        assert name in out
    assert "Nearest" in out
    text = describe_operator("BandMaths")
    assert "<targetBands>" in text and "targetBand" in text
    code, _, err = run_cli("help", "Calibration")
    assert code == 1 and "provided by SNAP" in err


def test_top_level_help_answers():
    proc = subprocess.run([sys.executable, "-m", "snap_operators.apps.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for word in ("run", "ops", "help", "synth", "examples"):
        assert word in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "snap_operators.apps.cli", "run", "--help"], capture_output=True, text=True, timeout=60)
    assert "--scheduler" in proc.stdout and "-P" in proc.stdout and "properties" in proc.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupts_exit_128_plus_signal_with_one_line(one_line_error, capsys, sig):
    from snap_operators.apps.cli import _dispatch
    from snap_operators.core.staging import Interrupted

    def handler(args):
        raise Interrupted(sig)

    assert _dispatch(handler, None, debug=False) == 128 + sig
    assert one_line_error(capsys.readouterr().err).startswith(f"Error: interrupted ({signal.Signals(sig).name})")
