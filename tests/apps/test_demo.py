"""`make demo`'s job end to end on a small synthetic scene: both classifier graphs, areas, accuracy, quicklooks."""

import csv
import json

import fiona
import numpy as np
import pytest
import rasterio

from snap_operators.apps import demo


@pytest.mark.slow
def test_demo_runs_both_graphs_and_reports_accuracy(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--size", "384", "--seed", "3", "--epochs", "3"]) == 0
    text = capsys.readouterr().out
    assert "Class ID | Class Name | Area (sq km)" in text
    assert text.count("Overall accuracy") == 2
    for tag in ("s2", "s1s2"):
        met = json.loads((out / f"accuracy_{tag}" / "metrics.json").read_text())
        assert met["overall_accuracy"] > 0.9, (tag, met["overall_accuracy"])
        with rasterio.open(out / f"classes_{tag}.tif") as ds:
            classes = ds.read(1)
            assert ds.colormap(1)[1][:3] == (0, 112, 255)
        with open(out / f"areas_{tag}.csv", newline="") as fh:
            rows = {r["class_id"]: r for r in csv.DictReader(fh)}
        for cid in range(1, 6):
            assert int(rows[str(cid)]["pixels"]) == int((classes == cid).sum())
        with fiona.open(out / f"labels_{tag}.gpkg") as src:
            ids = {f.properties["class_id"] for f in src}
        assert ids == set(np.unique(classes)) - {0, 255}
        assert (out / f"classes_{tag}.png").stat().st_size > 10_000
        assert (out / f"areas_{tag}.png").stat().st_size > 5_000
    if "skipped: training did not run" not in text:  # e.g. TensorFlow missing: said on stderr
        from snap_operators.io.onnx_model import read_metadata

        assert "Attention U-Net (small)" in text and "mean IoU" in text
        assert read_metadata(out / "unet_small.onnx").input_bands[:2] == ("B2", "B3")
        assert (out / "unet_small.card.md").is_file()
        assert "unet_inference.xml" in text and "agreement with the rule-based map" in text
        with rasterio.open(out / "classes_unet.tif") as ds:
            unet = ds.read(1)
            assert ds.colormap(1)[1][:3] == (0, 112, 255)
        assert set(np.unique(unet)) <= {1, 2, 3, 4, 5, 255} and len(np.unique(unet)) >= 3
