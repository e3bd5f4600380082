"""docs/python.md runs: its ```python blocks, in order, on a synthetic scene (blocks marked `# not run` do not)."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT

pytest.importorskip("xarray")
pytest.importorskip("rioxarray")

DOC = ROOT / "docs" / "python.md"
BLOCK = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)


def _blocks() -> list[str]:
    return [code for info, code in BLOCK.findall(DOC.read_text(encoding="utf-8")) if "not run" not in info]


def test_the_doc_has_its_walk_through_and_its_stac_example():
    text = DOC.read_text(encoding="utf-8")
    blocks = _blocks()
    walk = blocks[1]
    assert "import" in walk and len([ln for ln in walk.splitlines() if ln.strip()]) < 10
    stac = text.split("## From a STAC item")[1].split("\n## ")[0]
    runs = [code for info, code in BLOCK.findall(stac) if "not run" not in info]
    assert "api.open_product(item)" in runs[1] and len([ln for ln in runs[1].splitlines() if ln.strip()]) < 10


def test_the_python_blocks_of_the_doc_run(scene, stac_item, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_python"}
    for n, code in enumerate(_blocks()):
        # the doc's placeholders: the reader's scene and output folder
        code = re.sub(r"^scene = .*$", f"scene = Path({str(scene['s2'])!r})", code, flags=re.M)
        code = re.sub(r"^out = .*$", f"out = Path({str(tmp_path / 'results')!r})", code, flags=re.M)
        code = re.sub(r"^item = .*$", f"item = {str(stac_item)!r}", code, flags=re.M)
        exec(compile(code, f"{DOC.name} block {n + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "raster_area_km2" in printed and "Water" in printed  # the area table's DataFrame
    assert namespace["labels"] == [tmp_path / "results" / n for n in ("labels.gpkg", "labels.qml", "labels_areas.csv")]
    assert namespace["legend"]["1"]["name"] == "Water"
    assert (tmp_path / "results" / "change.gain_loss.csv").is_file() and "net_km2" in printed
    assert namespace["gain_loss"].class_name.iloc[-1] == "Total" and namespace["moved"].change.dtype == "uint8"
    assert namespace["stac_labels"][0] == tmp_path / "results" / "item_labels.gpkg"
    assert list(namespace["stac_table"].columns)[-1] == "raster_area_km2"
    assert set(namespace["small"].data_vars) == {"class_id"} and namespace["small"].class_id.shape == (128, 128)
