"""The shipped graphs run by SNAP's real ``gpt`` give what the standalone engine gives.

Needs a SNAP 10+ installation (``SNAP_HOME``) with esa_snappy configured for a
Python that has this project installed (``snap-pc snap doctor`` says what is
missing); without it every test skips and says why. Every graph of
``graphs/`` except ``s1_preprocessing.xml`` (it needs a real Sentinel-1 GRD)
runs on a small synthetic scene, once with ``gpt GRAPH -e -q 4 [-p
GRAPH.properties] -Pname=value...`` and once with ``snap-pc``'s engine:

* the classifier, index and collocation graphs read the scene (Sentinel-2 and
  Sentinel-1, as BEAM-DIMAP);
* the U-Net graphs (``unet_inference*.xml``) read a tiny ONNX model written
  here with the project's metadata (1x1 convolution + softmax over the bands
  the graph stacks; skipped when the ``onnx`` package is missing);
* ``change_detection.xml`` reads two class maps (BEAM-DIMAP) the engine's
  classifier makes of the scene before and after a known clearing and flood.

``-q 4`` makes SNAP compute tiles on four threads, so the Python operators run
concurrently inside one JVM: a deadlock between them shows as gpt never
finishing. gpt therefore runs under a timeout (``SNAP_PC_GPT_TIMEOUT``
seconds, default 300); on expiry its process group is killed and the test
fails saying gpt hung, with the tail of its output. Class maps must be
identical, other bands equal to float precision, label masks the same
features, and every CSV both runs write (area tables, change matrices) the
same text with numbers equal to a small tolerance.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
from pathlib import Path
from typing import Callable

import fiona
import numpy as np
import pytest
import rasterio
from shapely.geometry import shape
from shapely.ops import unary_union

from snap_operators.apps.synth import LandChange, write_synthetic_scene
from snap_operators.core.legend import LAND_COVER
from snap_operators.core.context import ExecutionContext
from snap_operators.engine.graph import Graph, load_properties, parse_graph, template
from snap_operators.engine.runner import build, load_graph, run_graph
from snap_operators.io import open_product
from snap_operators.io.dimap import write_dimap
from snap_operators.io.onnx_model import ModelMetadata
from snap_operators.snap import install as I

REPO = Path(__file__).resolve().parents[3]
GRAPHS = sorted(p for p in (REPO / "graphs").glob("*.xml") if p.name != "s1_preprocessing.xml")
SIZE, SEED = 192, 11
#: gpt's -q: tiles computed on this many threads, so the Python operators run concurrently.
GPT_THREADS = 4
#: Seconds gpt may take on the small scene before it counts as hung. Below
#: pytest-timeout's 600 s (pyproject.toml), so the hang is reported by us, with gpt's output.
GPT_TIMEOUT_S = float(os.environ.get("SNAP_PC_GPT_TIMEOUT", "300"))
#: Known changes painted on the "after" scene of change_detection.xml (as tests/ops/test_change_detection.py).
CHANGES = (LandChange(rows=(30, 90), cols=(0, SIZE), to_class=2, from_class=3),  # trees cut
           LandChange(rows=(150, 175), cols=(70, 140), to_class=1))  # everything under water


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    """(gpt path, environment) for running gpt with our plugin, or skip saying why not."""
    home = os.environ.get("SNAP_HOME")
    if not home:
        pytest.skip("SNAP_HOME is not set: these tests run the shipped graphs with SNAP's gpt; "
                    "point SNAP_HOME at a SNAP 10+ installation to run them")
    home = Path(home).expanduser()
    gpt = I.gpt_path(home)
    if gpt is None:
        pytest.skip(f"SNAP_HOME={home} has no bin/gpt")
    version = I.snap_version(home)
    if version is None or version[0] < 10:
        found = ".".join(map(str, version)) if version else "of unknown version"
        pytest.skip(f"SNAP_HOME={home} is SNAP {found}; the Python operators need SNAP 10+")
    checks = {c.name: c for c in I.run_checks(home)}
    for name in ("esa_snappy configuration", "esa_snappy module", "Python packages"):
        if not checks[name].ok:
            pytest.skip(checks[name].line())
    env = dict(os.environ)
    if not (I.default_user_dir() / "snap-python" / I.PLUGIN_FOLDER).is_dir():
        # Not installed for the user: install into a temporary folder and
        # point esa_snappy's extra search path (a SNAP setting, read from
        # system properties too) at it.
        extra = tmp_path_factory.mktemp("snapuser")
        I.install(extra)
        opts = env.get("JAVA_TOOL_OPTIONS", "")
        env["JAVA_TOOL_OPTIONS"] = f"{opts} -Dsnap.pythonExtraPaths={extra / 'snap-python'}".strip()
    elif not checks["plugin"].ok:
        pytest.skip(checks["plugin"].line())
    return gpt, env


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Synthetic S2 and S1 scenes as BEAM-DIMAP (SNAP reads band names from it)."""
    return write_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="module")
def class_maps(tmp_path_factory):
    """``before`` and ``after`` class maps for change_detection.xml."""
    return write_class_maps(tmp_path_factory.mktemp("classmaps"))


def write_scene(folder: Path) -> dict[str, str]:
    """Write the synthetic scene; ``{"input": S2 .dim, "inputS1": S1 .dim}``."""
    paths = write_synthetic_scene(folder, SIZE, seed=SEED)
    return {
        "input": str(write_dimap(open_product(paths["s2"]), folder / "s2.dim")),
        "inputS1": str(write_dimap(open_product(paths["s1"]), folder / "s1.dim")),
    }


def write_class_maps(folder: Path) -> dict[str, str]:
    """Class maps of the scene before and after :data:`CHANGES`, as BEAM-DIMAP.

    Made by the engine with the shipped S2 classifier graph (built, not run:
    only its ``class_id`` band with the class legend is written), so gpt and
    the engine read the same maps. The same seed on both dates keeps the
    change to the painted regions, as real change detection expects.

    Returns
    -------
    dict
        ``{"before": path, "after": path}``.
    """
    graph = REPO / "graphs" / "progressive_classifier_s2.xml"
    maps = {}
    for name, changes in (("before", ()), ("after", CHANGES)):
        paths = write_synthetic_scene(folder / name, SIZE, seed=SEED, changes=changes)
        # Write and LabelMaskExport are only initialized by build(), never opened:
        # these output paths stay unwritten.
        g = load_graph(graph, {"input": str(paths["s2"]), "output": str(folder / name / "unused.tif"),
                               "labels": str(folder / name / "unused.gpkg")})
        classes = build(g, ExecutionContext(tile_size=64))["ProgressiveClassifier"].target
        maps[name] = str(write_dimap(classes, folder / f"{name}.dim"))
    return maps


def model_bands(graph: Path, parsed: Graph) -> tuple[str, ...]:
    """Channels of a U-Net model for `graph`: the training stack's bands, then the graph's indices.

    The order of ``snap_pc_models.dataset.build_input_product`` (Sentinel-1
    bands when the graph collocates ``inputS1``); the indices are the
    ``indices`` default of the graph's ``.properties``, which must name the
    model's.
    """
    from snap_pc_models.dataset import DEFAULT_S1_BANDS, DEFAULT_S2_BANDS

    indices = [i.strip() for i in load_properties(graph.with_suffix(".properties"))["indices"].split(",") if i.strip()]
    s1 = DEFAULT_S1_BANDS if "inputS1" in parsed.variables() else ()
    return (*DEFAULT_S2_BANDS, *s1, *indices)


def write_tiny_unet(path: Path, bands: tuple[str, ...]) -> Path:
    """A valid snap-pc ONNX model: a 1x1 convolution and softmax over `bands` to the five land-cover classes.

    Stands for a trained U-Net (training needs TensorFlow and minutes): the
    graphs only need a model whose metadata and signature the operator
    accepts, and a deterministic class map to compare. Skips when the
    ``onnx`` package (the ``train`` extra) is missing.
    """
    onnx = pytest.importorskip("onnx", reason="the onnx package (the 'train' extra) is needed to write the test's "
                                              "ONNX model for the U-Net graphs")
    from onnx import TensorProto, helper, numpy_helper

    n, k = len(bands), len(LAND_COVER)
    # Rough scales of reflectances, dB backscatter and indices, so that no
    # band family swamps the logits and the map has several classes (more
    # label-mask features to compare).
    norm = [(-15.0, 5.0) if b.endswith("_db") else (0.15, 0.1) if b[0] == "B" else (0.0, 0.5) for b in bands]
    meta = ModelMetadata("tiny_unet", "0.0.0", tuple(bands), tuple(m for m, _ in norm), tuple(s for _, s in norm),
                         class_ids=tuple(c.value for c in LAND_COVER), class_names=tuple(c.name for c in LAND_COVER),
                         class_colors=tuple(tuple(c.color) for c in LAND_COVER), size_multiple=8, halo=8, opset=17)
    w = np.random.default_rng(0).normal(size=(k, n, 1, 1)).astype("float32")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["bands", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny_unet",
        [helper.make_tensor_value_info("bands", TensorProto.FLOAT, ["batch", n, "height", "width"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", k, "height", "width"])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the project supports
    for key, value in meta.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def graph_inputs(graph: Path, scene: dict[str, str], class_maps: Callable[[], dict[str, str]],
                 folder: Path) -> dict[str, str]:
    """The input variables `graph` reads, made or picked for it.

    Parameters
    ----------
    graph : Path
        A shipped graph file.
    scene : dict
        :func:`write_scene`'s paths.
    class_maps : callable
        Returns :func:`write_class_maps`'s paths; called only for a graph
        that reads ``before``/``after`` (the maps take a classifier pass).
    folder : Path
        Where a model for a U-Net graph is written.
    """
    parsed = parse_graph(graph)
    needed = parsed.variables()
    inputs = {k: v for k, v in scene.items() if k in needed}
    if needed & {"before", "after"}:
        inputs.update(class_maps())
    if "model" in needed:
        inputs["model"] = str(write_tiny_unet(folder / "model.onnx", model_bands(graph, parsed)))
    return inputs


#: Write formatName -> file extension.
_EXTENSIONS = {"GeoTIFF": ".tif", "GeoTIFF-BigTIFF": ".tif", "BEAM-DIMAP": ".dim"}


def _output_variables(graph: Graph, out: Path, defaults: dict[str, str]) -> dict[str, str]:
    """``output`` (the Write node's file, in its format: ``${rasterFormat}`` from `defaults`) and ``labels``
    under `out`."""
    variables = {}
    for node in graph.nodes.values():
        if node.operator == "Write" and "${output}" in str(node.parameters.get("file")):
            fmt = template(node.parameters.get("formatName") or "BEAM-DIMAP", defaults)
            variables["output"] = str(out / ("out" + _EXTENSIONS[fmt]))
    if "labels" in graph.variables():
        variables["labels"] = str(out / "labels.gpkg")
    return variables


def graph_variables(graph: Path, inputs: dict[str, str], out: Path) -> dict[str, str]:
    """All ``-P`` variables for a run of `graph` writing under `out`; fails naming any the test cannot give.

    A new graph variable without a default in the graph's ``.properties``
    must get a value here, or the graph would silently drop out of the
    comparison (gpt and the engine both refuse it).
    """
    parsed = parse_graph(graph)
    props = graph.with_suffix(".properties")
    defaults = load_properties(props) if props.is_file() else {}
    variables = {**inputs, **_output_variables(parsed, out, defaults)}
    missing = sorted(parsed.variables() - variables.keys() - defaults.keys())
    assert not missing, (f"{graph.name}: no value for {', '.join('${' + m + '}' for m in missing)}; "
                         "give one in test_gpt_live.py")
    return variables


def run_engine(graph: Path, variables: dict[str, str]) -> None:
    """Run `graph` with snap-pc's engine (reading ``GRAPH.properties`` as gpt's ``-p`` does)."""
    props = graph.with_suffix(".properties")
    run_graph(load_graph(graph, variables, props if props.is_file() else None), ExecutionContext(tile_size=64))


def run_gpt(gpt: Path, graph: Path, variables: dict[str, str], env: dict[str, str],
            timeout: float = GPT_TIMEOUT_S) -> None:
    """Run `graph` with ``gpt -q 4``; fail with gpt's output tail if it fails or outlives `timeout`."""
    props = graph.with_suffix(".properties")
    cmd = [str(gpt), str(graph), "-e", "-q", str(GPT_THREADS)] + (["-p", str(props)] if props.is_file() else [])
    cmd += [f"-P{k}={v}" for k, v in variables.items()]
    # A session of its own: on timeout the whole tree (launcher, JVM) is
    # killed, and reading the output does not wait on a pipe an orphaned JVM
    # still holds open. stderr joins stdout so the tail is in time order.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired as exc:
            output = exc.output or ""
        pytest.fail(f"gpt hung: {graph.name} did not finish within {timeout:g} s with -q {GPT_THREADS}, "
                    f"likely a deadlock between Python operators computing tiles in parallel "
                    f"(killed; set SNAP_PC_GPT_TIMEOUT for a slower machine). Last output:\n{_tail(output)}")
    assert proc.returncode == 0, f"gpt failed on {graph.name} (exit {proc.returncode}):\n{_tail(output)}"


def _tail(text: str | bytes | None, n: int = 4000) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return (text or "")[-n:] or "(no output)"


@pytest.mark.slow
@pytest.mark.timeout(GPT_TIMEOUT_S + 300)
@pytest.mark.parametrize("graph", GRAPHS, ids=lambda p: p.stem)
def test_graph_in_gpt_matches_standalone_engine(graph, snap, scene, request, tmp_path):
    gpt, env = snap
    inputs = graph_inputs(graph, scene, lambda: request.getfixturevalue("class_maps"), tmp_path)
    runs = {}
    for who in ("gpt", "snap-pc"):
        out = tmp_path / who
        out.mkdir()
        variables = graph_variables(graph, inputs, out)
        if who == "gpt":
            run_gpt(gpt, graph, variables, env)
        else:
            run_engine(graph, variables)
        runs[who] = variables

    compare_outputs(runs["gpt"], runs["snap-pc"])
    compare_csv_files(tmp_path / "gpt", tmp_path / "snap-pc")


def compare_outputs(snap_run: dict[str, str], our_run: dict[str, str]) -> None:
    """The raster output and the label masks of two runs (their variables) agree."""
    out_snap, out_ours = snap_run["output"], our_run["output"]
    if out_ours.endswith(".tif"):
        with rasterio.open(out_snap) as a, rasterio.open(out_ours) as b:
            assert a.count == b.count and a.shape == b.shape
            assert a.transform.almost_equals(b.transform)
            for k in range(1, a.count + 1):
                _compare(a.read(k), b.read(k), f"band {k}")
    else:
        pa, pb = open_product(out_snap), open_product(out_ours)
        assert list(pa.bands) == list(pb.bands)
        for name in pa.bands:
            _compare(pa.bands[name].data.compute(), pb.bands[name].data.compute(), name)

    if "labels" in snap_run:
        _compare_label_masks(snap_run["labels"], our_run["labels"])


def compare_csv_files(dir_a: Path, dir_b: Path) -> list[str]:
    """Both folders hold the same CSVs (area tables, change matrices), with the same text, numbers to 1e-6.

    Returns the relative paths compared.
    """
    def names(d):
        return {p.relative_to(d).as_posix() for p in d.rglob("*.csv")}

    assert names(dir_a) == names(dir_b), f"CSV files differ: {sorted(names(dir_a))} vs {sorted(names(dir_b))}"
    common = sorted(names(dir_a))
    for name in common:
        rows_a, rows_b = _read_csv(dir_a / name), _read_csv(dir_b / name)
        assert len(rows_a) == len(rows_b), f"{name}: {len(rows_a)} rows vs {len(rows_b)}"
        for i, (ra, rb) in enumerate(zip(rows_a, rows_b), start=1):
            assert len(ra) == len(rb) and all(map(_same_cell, ra, rb)), f"{name} line {i}: {ra} != {rb}"
    return common


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row for row in csv.reader(f)]


def _same_cell(a: str, b: str) -> bool:
    """Equal text, or numbers equal to 1e-6 (relative, or absolute near 0): areas are sums of floats."""
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


def _compare(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape, what
    if np.issubdtype(b.dtype, np.integer):  # class maps: identical
        np.testing.assert_array_equal(a, b, err_msg=what)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=what)


def _compare_label_masks(path_a: str, path_b: str) -> None:
    def features(path):
        with fiona.open(path) as src:
            return [(f["properties"]["class_id"], f["properties"]["area_m2"], shape(f["geometry"])) for f in src]

    fa, fb = features(path_a), features(path_b)
    assert len(fa) == len(fb)
    assert sorted((c, round(a, 3)) for c, a, _ in fa) == sorted((c, round(a, 3)) for c, a, _ in fb)
    for cid in {c for c, _, _ in fa}:
        ua = unary_union([g for c, _, g in fa if c == cid])
        ub = unary_union([g for c, _, g in fb if c == cid])
        assert ua.symmetric_difference(ub).area <= 1e-6 * max(ua.area, 1.0), f"class {cid}"
