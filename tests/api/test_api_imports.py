"""snap_operators.api stays light: a pipeline from a file to a class map, label masks and a U-Net
prediction never imports TensorFlow (only training does) nor esa_snappy (only SNAP does)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import ROOT

pytest.importorskip("xarray")
pytest.importorskip("rioxarray")

PIPELINE = """
import sys
from pathlib import Path
from snap_operators import api

scene, out = Path(sys.argv[1]), Path(sys.argv[2])
ds = api.to_xarray(api.open_product(scene))
ds = api.spectral_indices(api.cloud_mask(ds), ["NDVI", "MNDWI", "BI2", "NDBI", "NGBDI", "PANTEX", "BSI"],
                          copySourceBands=True)
classes = api.progressive_classify(ds)
assert api.label_masks(classes, out / "labels.gpkg")
assert int(api.area_table(classes).pixels.iloc[-1]) > 0
assert api.unet_predict(ds).class_id.values.any()
api.from_xarray(classes)
for module in ("tensorflow", "keras", "esa_snappy", "jpy", "snap_pc_models"):
    assert module not in sys.modules, module + " was imported"
print("ok")
"""


def test_the_api_imports_neither_tensorflow_nor_esa_snappy(scene, tmp_path):
    pytest.importorskip("onnxruntime")
    done = subprocess.run([sys.executable, "-c", PIPELINE, str(scene["s2"]), str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
