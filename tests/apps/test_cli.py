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

from helpers import ROOT


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


def test_misspelled_variable_warns_with_did_you_mean(run_cli, scene, caplog):
    tmp, src, graph, _ = scene
    out = tmp / "ndvi.tif"
    code, _, err = run_cli("run", graph, f"-Pinput={src}", f"-Poutput={out}", "-Pexpr=B8", "-Pexpt=B4", "-Pzzz=1",
                           "--quiet")
    assert code == 0, err
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("-Pexpt is not used" in w and "did you mean 'expr'?" in w for w in warned), warned
    assert any("-Pzzz is not used" in w and "expr, input, output" in w for w in warned), warned
    assert not any("-Pexpr " in w or "-Pinput " in w for w in warned)  # the names the graph uses stay quiet


def test_variable_without_equals_hints_at_the_source_it_swallowed(run_cli, one_line_error, scene):
    tmp, src, graph, _ = scene
    code, _, err = run_cli("run", graph, "-Pinput", "scene.tif", f"-Poutput={tmp / 'x.tif'}")
    assert code == 1
    assert "Missing '=' in '-Pinput'" in one_line_error(err) and "did you mean -Pinput=scene.tif?" in err


def test_progress_lines_when_not_on_a_terminal_quiet_silences(run_cli, scene):
    tmp, src, graph, _ = scene
    args = ("run", graph, f"-Pinput={src}", "-Pexpr=B8", "--overwrite", "--tile-size", 16)
    code, out, err = run_cli(*args, f"-Poutput={tmp / 'a.tif'}")  # capsys: stdout and stderr are no terminals
    assert code == 0, err
    assert "writing\n....10%....20%" in out and "....100% done.\n" in out
    assert out.index("done.") < out.index("wrote ")
    code, out, err = run_cli(*args, f"-Poutput={tmp / 'b.tif'}", "--quiet")
    assert code == 0, err
    assert "%" not in out and "wrote " in out


def test_graph_help_lists_variables_defaults_and_nodes(run_cli):
    graph = ROOT / "graphs" / "progressive_classifier_s2.xml"
    code, out, _ = run_cli("run", graph, "-h")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Graph 'ProgressiveClassifier_S2' ({graph})"
    assert "  minArea       500" in lines and "  input         (required)" in lines
    assert "  areaTable     '' (empty)" in lines and "  rasterFormat  GeoTIFF" in lines
    assert "  ProgressiveClassifier: ProgressiveClassifier <- SpectralIndices" in lines
    assert "Sentinel-2 -> five-class land-cover map" in out  # the graph's own comment
    code, out2, _ = run_cli("run", "--help", graph)  # either order
    assert out2 == out  # (without a graph, run's own options: test_top_level_help_answers)


def test_reader_gone_exits_quietly(scene):
    """``snap-pc ... | head``: stdout's reader closes early; no error or traceback, a SIGPIPE status for runs."""
    tmp, src, graph, _ = scene
    cases = [(["help", "BandMaths"], 0),
             (["run", graph, f"-Pinput={src}", f"-Poutput={tmp / 'p.tif'}", "-Pexpr=B8"], 128 + signal.SIGPIPE)]
    for args, status in cases:
        proc = subprocess.Popen([sys.executable, "-m", "snap_operators.apps.cli", *map(str, args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdout.close()  # before the command prints anything
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == status, err
        assert "Error" not in err and "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupts_exit_128_plus_signal_with_one_line(one_line_error, capsys, sig):
    from snap_operators.apps.cli import _dispatch
    from snap_operators.core.staging import Interrupted

    def handler(args):
        raise Interrupted(sig)

    assert _dispatch(handler, None, debug=False) == 128 + sig
    assert one_line_error(capsys.readouterr().err).startswith(f"Error: interrupted ({signal.Signals(sig).name})")
