"""run_graph: graph files run as `snap-pc run` runs them, from Python."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from snap_operators import api
from snap_operators.core.errors import SnapPcError

#: Read ${input} -> BandMaths (float32 'ndvi' = ${expr}), and no Write: gpt's default Write adds one.
NO_WRITE = """<graph id="g"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
  <node id="BandMaths"><operator>BandMaths</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><targetBands><targetBand><name>ndvi</name><type>float32</type>
      <expression>${expr}</expression><noDataValue>NaN</noDataValue></targetBand></targetBands></parameters></node>
</graph>"""


def test_a_shipped_graph_by_name_returns_the_paths_written(scene, tmp_path):
    run = api.run_graph("s2_ndvi_mndwi", input=scene["s2"], output=tmp_path / "ndvi.tif")
    assert run.outputs == [tmp_path / "ndvi.tif"] and run.outputs[0].is_file()
    assert set(run.products) >= {"Read", "BandMaths", "Write"}
    before = (tmp_path / "ndvi.tif").stat().st_mtime_ns
    with pytest.raises(SnapPcError, match="ndvi.tif' already exists; pass overwrite=True to replace it"):
        api.run_graph("s2_ndvi_mndwi.xml", input=scene["s2"], output=tmp_path / "ndvi.tif")
    assert (tmp_path / "ndvi.tif").stat().st_mtime_ns == before
    again = api.run_graph("s2_ndvi_mndwi", input=scene["s2"], output=tmp_path / "ndvi.tif", overwrite=True, tile_size=64)
    assert again.outputs == run.outputs


def test_graph_files_variables_and_the_default_write(scene, tmp_path, ndvi_graph):
    graph = tmp_path / "g.xml"
    graph.write_text(ndvi_graph)
    (tmp_path / "g.properties").write_text("expr=B8 - B4\n")  # defaults beside the graph, as snap-pc reads them
    run = api.run_graph(graph, input=scene["s2"], variables={"output": str(tmp_path / "diff.tif")})
    with rasterio.open(run.outputs[0]) as src, rasterio.open(scene["s2"]) as s2:
        names = list(s2.descriptions)
        b4, b8 = s2.read(names.index("B4") + 1), s2.read(names.index("B8") + 1)
        np.testing.assert_allclose(src.read(1), b8 - b4, rtol=1e-6)
    no_write = tmp_path / "no_write.xml"
    no_write.write_text(NO_WRITE)
    run = api.run_graph(no_write, scene["s2"], variables={"input": scene["s2"]}, expr="B8 + B4",
                        target=tmp_path / "sum.tif")
    assert run.outputs == [tmp_path / "sum.tif"] and "WriteOp@BandMaths" in run.products
    with pytest.raises(ValueError, match="tile_size must be at least 16"):
        api.run_graph(graph, input=scene["s2"], output=tmp_path / "x.tif", tile_size=8)
    with pytest.raises(SnapPcError, match="input"):
        api.run_graph(graph, output=tmp_path / "x.tif")  # a variable without a value: snap-pc's error
