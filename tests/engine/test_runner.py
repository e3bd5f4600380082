"""Engine: lazy execution, shared upstream work, streaming, dask.distributed parity."""

import threading

import dask.array as da
import numpy as np
import pytest
import rasterio

from snap_operators.core.context import ExecutionContext
from snap_operators.core.operator import map_tiles
from snap_operators.core.streaming import store
from snap_operators.engine.graph import parse_graph
from snap_operators.engine.runner import build, load_graph, run_graph
from snap_operators.io.raster_bands import LazyRasterBand

TWO_WRITES = """<graph id="g"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
  <node id="Unused"><operator>Read</operator><parameters><file>/does/not/exist.tif</file></parameters></node>
  <node id="BandMaths"><operator>BandMaths</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><targetBands>
      <targetBand><name>ndvi</name><type>float32</type><expression>(B8 - B4) / (B8 + B4)</expression></targetBand>
      <targetBand><name>high</name><type>uint8</type><expression>B8 &gt; 0.3</expression><noDataValue>255</noDataValue></targetBand>
    </targetBands></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="BandMaths"/></sources>
    <parameters><file>${out1}</file><formatName>GeoTIFF</formatName></parameters></node>
  <node id="Write(2)"><operator>Write</operator><sources><sourceProduct refid="BandMaths"/></sources>
    <parameters><file>${out2}</file><formatName>BEAM-DIMAP</formatName></parameters></node>
</graph>"""


def test_lazy_build_reads_no_pixels_and_skips_unused_nodes(tmp_path, write_s2, monkeypatch):
    src = tmp_path / "s2.tif"
    write_s2(src)
    reads = []
    real_read = LazyRasterBand._read

    def counting_read(self, *window):
        reads.append((self.band, *window))
        return real_read(self, *window)

    monkeypatch.setattr(LazyRasterBand, "_read", counting_read)
    g = parse_graph("g.xml", text=TWO_WRITES).substitute({"input": str(src), "out1": str(tmp_path / "a.tif"), "out2": str(tmp_path / "b.dim")})
    ops = build(g, ExecutionContext(tile_size=32))
    assert reads == []  # building the graph read no pixel
    assert "Unused" not in ops  # feeds no Write: never initialized, its missing file is no error
    ndvi = ops["BandMaths"].target.band("ndvi").data
    assert isinstance(ndvi, da.Array) and ndvi.chunks == ((32, 32, 32), (32, 32, 32))
    # The counter sees the reads: one block of NDVI reads its window of B4 and of B8, nothing more.
    ndvi.blocks[1, 2].compute()
    assert sorted(reads) == [(1, 32, 64, 64, 96), (2, 32, 64, 64, 96)]


def test_two_sinks_one_pass(tmp_path, write_s2):
    src = tmp_path / "s2.tif"
    data = write_s2(src)
    g = parse_graph("g.xml", text=TWO_WRITES).substitute({"input": str(src), "out1": str(tmp_path / "a.tif"), "out2": str(tmp_path / "b.dim")})
    result = run_graph(g, ExecutionContext(tile_size=32))
    assert sorted(str(p) for p in result.outputs) == sorted([str(tmp_path / "a.tif"), str(tmp_path / "b.dim")])
    with rasterio.open(tmp_path / "a.tif") as ds:
        ndvi = ds.read(1)
        high = ds.read(2)
    expected = (data[1] - data[0]) / (data[1] + data[0])
    np.testing.assert_allclose(ndvi, expected, rtol=1e-6)
    np.testing.assert_array_equal(high[3:, 3:], (data[1] > 0.3)[3:, 3:].astype(high.dtype))
    from snap_operators.io import open_product

    dim = open_product(tmp_path / "b.dim")
    np.testing.assert_allclose(dim.band("ndvi").data.compute(), expected, rtol=1e-6)


def test_store_computes_each_chunk_once_and_streams():
    calls = []
    lock = threading.Lock()

    def f(t):
        with lock:
            calls.append(t["a"].shape)
        return {"x": t["a"] + 1, "y": t["a"] * 2}

    a = da.arange(64 * 64, dtype="float64").reshape(64, 64).rechunk(16)
    out = map_tiles(f, {"a": a}, {"x": "float64", "y": "float64"})
    got = {"x": np.zeros((64, 64)), "y": np.zeros((64, 64))}

    class Target:
        def __init__(self, arr):
            self.arr = arr

        def __setitem__(self, region, block):
            self.arr[region] = block

    store([out["x"], out["y"]], [Target(got["x"]), Target(got["y"])], ExecutionContext())
    ref = np.arange(64 * 64, dtype="float64").reshape(64, 64)
    np.testing.assert_array_equal(got["x"], ref + 1)
    np.testing.assert_array_equal(got["y"], ref * 2)
    assert len(calls) == 16  # 4x4 chunks, function run once per chunk for both outputs


@pytest.mark.distributed
def test_distributed_local_cluster_matches_local_run(tmp_path, write_s2, ndvi_graph):
    distributed = pytest.importorskip("distributed")
    src = tmp_path / "s2.tif"
    write_s2(src, size=200, seed=5)
    gfile = tmp_path / "g.xml"
    gfile.write_text(ndvi_graph)
    variables = {"input": str(src), "expr": "(B8 - B4) / (B8 + B4) * sqrt(B8)"}
    local = tmp_path / "local.tif"
    run_graph(load_graph(gfile, {**variables, "output": str(local)}), ExecutionContext(tile_size=64))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        remote = tmp_path / "cluster.tif"
        run_graph(load_graph(gfile, {**variables, "output": str(remote)}), ExecutionContext(tile_size=64, client=client))
        assert len(client.scheduler_info()["workers"]) == 2
    with rasterio.open(local) as a, rasterio.open(remote) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.transform == b.transform and a.crs == b.crs
