"""`make demo`'s job end to end on a small synthetic scene: both classifier graphs, areas, accuracy, quicklooks."""

import csv
import json
import re

import fiona
import numpy as np
import pytest
import rasterio

from snap_operators.apps import demo, synth


@pytest.mark.slow
def test_demo_runs_both_graphs_and_reports_accuracy(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--size", "384", "--seed", "3", "--epochs", "3"]) == 0
    text = capsys.readouterr().out
    assert "Class ID | Class Name | Area (sq km)" in text
    assert text.count("Overall accuracy") == 2
    with rasterio.open(out / "scene" / "truth.tif") as ds:
        truth = ds.read(1)
    hazy = synth._haze(384, 3, slice(0, 384), slice(0, 384)) > 0.05
    for tag in ("s2", "s1s2"):
        met = json.loads((out / f"accuracy_{tag}" / "metrics.json").read_text())
        with rasterio.open(out / f"classes_{tag}.tif") as ds:
            classes = ds.read(1)
            assert ds.colormap(1)[1][:3] == (0, 112, 255)
        # The rules are right where the scene is clear and lose under the haze (what the demo is about)
        scored = (classes >= 1) & (classes <= 5)
        right = (classes == truth) & scored
        assert right[scored & ~hazy].mean() > 0.9, (tag, right[scored & ~hazy].mean())
        assert right[scored & hazy].mean() < right[scored & ~hazy].mean() - 0.1
        assert met["overall_accuracy"] == pytest.approx(right.sum() / scored.sum(), abs=1e-6)
        with open(out / f"raster_areas_{tag}.csv", newline="") as fh:
            rows = {r["class_id"]: r for r in csv.DictReader(fh)}
        for cid in range(1, 6):
            assert int(rows[str(cid)]["pixels"]) == int((classes == cid).sum())
        with fiona.open(out / f"labels_{tag}.gpkg") as src:
            ids = {f.properties["class_id"] for f in src}
        assert ids == set(np.unique(classes)) - {0, 255}
        assert (out / f"classes_{tag}.png").stat().st_size > 10_000
        assert (out / f"raster_areas_{tag}.png").stat().st_size > 5_000
    if "skipped: training did not run" not in text:  # e.g. TensorFlow missing: said on stderr
        from snap_operators.io.onnx_model import read_metadata

        assert "Attention U-Net (small)" in text and "mean IoU" in text
        assert read_metadata(out / "unet_small.onnx").input_bands[:2] == ("B2", "B3")
        assert (out / "unet_small.card.md").is_file()
        assert "unet_inference.xml" in text and "agreement with the rule-based map" in text
        changed = re.search(r"the network changed (\d+) px of the rules' map .*: (\d+) to the true class, (\d+) away "
                            r"from it", text)
        assert changed, text
        n, corrected, broken = map(int, changed.groups())
        assert n > 0 and corrected + broken <= n
        with rasterio.open(out / "classes_unet.tif") as ds:
            unet = ds.read(1)
            assert ds.colormap(1)[1][:3] == (0, 112, 255)
        assert set(np.unique(unet)) <= {1, 2, 3, 4, 5, 254, 255} and len(np.unique(unet)) >= 3
    with rasterio.open(out / "scene" / "s2.tif") as ds:  # the demo's scene holds what the rules cannot classify
        assert ds.tags()["SYNTHETIC_HAZE"] == ds.tags()["SYNTHETIC_MIXED_PIXELS"] == "true"


def test_what_the_unet_changed_is_scored_against_the_truth():
    rules = np.array([[1, 2, 2, 0], [254, 3, 5, 255]])
    unet = np.array([[1, 3, 1, 2], [2, 3, 4, 255]])
    truth = np.array([[1, 3, 2, 2], [2, 3, 2, 1]])
    c = demo.what_the_unet_changed(rules, unet, truth)
    # classified by both: (0,0) (0,1) (0,2) (1,1) (1,2); the masked, unclassified and no-data pixels are not
    assert c["both"] == 5 and c["agreement"] == pytest.approx(2 / 5)
    assert (c["changed"], c["corrected"], c["broken"]) == (3, 1, 1)  # (1,2): 5 -> 4, truth 2: wrong in both
    assert c["filled"] == 1  # (0,3): unclassified by the rules, class 2 from the network
    assert c["rules_accuracy"] == pytest.approx(3 / 5)  # the rules: right at (0,0) (0,2) (1,1)
