"""The shipped graphs run by SNAP's real ``gpt`` give what the standalone engine gives.

Needs a SNAP 10+ installation (``SNAP_HOME``) with esa_snappy configured for a
Python that has this project installed (``snap-pc snap doctor`` says what is
missing). Every graph of ``graphs/`` except ``s1_preprocessing.xml`` (it needs
a real Sentinel-1 GRD) runs on a small synthetic scene, once with gpt and once
with ``snap-pc``'s engine; class maps must be identical, other bands equal to
float precision, label masks the same features.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
from shapely.geometry import shape
from shapely.ops import unary_union

from snap_operators.engine import load_graph, run_graph
from snap_operators.graph import Graph, parse_graph
from snap_operators.io import open_product
from snap_operators.io.dimap import write_dimap
from snap_operators.operator import ExecutionContext
from snap_operators.snap import install as I
from snap_operators.synth import write_synthetic_scene

REPO = Path(__file__).resolve().parents[2]
GRAPHS = sorted(p for p in (REPO / "graphs").glob("*.xml") if p.name != "s1_preprocessing.xml")


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    """(gpt path, environment) for running gpt with our plugin, or skip saying why not."""
    home = os.environ.get("SNAP_HOME")
    if not home:
        pytest.skip("SNAP_HOME is not set (point it at a SNAP 10+ installation to run gpt)")
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
    d = tmp_path_factory.mktemp("scene")
    paths = write_synthetic_scene(d, 192, seed=11)
    return {
        "input": str(write_dimap(open_product(paths["s2"]), d / "s2.dim")),
        "inputS1": str(write_dimap(open_product(paths["s1"]), d / "s1.dim")),
    }


#: Write formatName -> file extension.
_EXTENSIONS = {"GeoTIFF": ".tif", "GeoTIFF-BigTIFF": ".tif", "BEAM-DIMAP": ".dim"}


def _output_variables(graph: Graph, out: Path) -> dict[str, str]:
    """``output`` (the Write node's file, in its format) and ``labels`` under `out`."""
    variables = {}
    for node in graph.nodes.values():
        if node.operator == "Write" and "${output}" in str(node.parameters.get("file")):
            variables["output"] = str(out / ("out" + _EXTENSIONS[node.parameters.get("formatName") or "BEAM-DIMAP"]))
    if "labels" in graph.variables():
        variables["labels"] = str(out / "labels.gpkg")
    return variables


@pytest.mark.slow
@pytest.mark.parametrize("graph", GRAPHS, ids=lambda p: p.stem)
def test_graph_in_gpt_matches_standalone_engine(graph, snap, scene, tmp_path):
    gpt, env = snap
    props = graph.with_suffix(".properties")
    parsed = parse_graph(graph)
    inputs = {k: v for k, v in scene.items() if k in parsed.variables()}
    runs = {}
    for who in ("gpt", "snap-pc"):
        out = tmp_path / who
        out.mkdir()
        variables = {**inputs, **_output_variables(parsed, out)}
        if who == "gpt":
            cmd = [str(gpt), str(graph), "-e"] + (["-p", str(props)] if props.is_file() else [])
            cmd += [f"-P{k}={v}" for k, v in variables.items()]
            r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=900)
            assert r.returncode == 0, f"gpt failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        else:
            run_graph(load_graph(graph, variables, props if props.is_file() else None), ExecutionContext(tile_size=64))
        runs[who] = variables

    out_snap, out_ours = runs["gpt"]["output"], runs["snap-pc"]["output"]
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

    if "labels" in runs["gpt"]:
        _compare_label_masks(runs["gpt"]["labels"], runs["snap-pc"]["labels"])


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
