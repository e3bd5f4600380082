"""The real Sentinel-2 subsets committed in tests/data read as reflectance (tests/data/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snap_operators.api import cloud_mask, open_product

DATA = Path(__file__).resolve().parents[1] / "data"


def _product(*parts):
    path = DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return open_product(path)


def _array(product, name):
    return np.asarray(product.band(name).data.compute(), dtype=np.float64)


@pytest.mark.parametrize("parts", [("trombetas", "s2_l2a_sen2.tif"), ("accra", "s2_l2a_20240407.tif"),
                                   ("akrotiri", "s2_l2a_20240805.tif")])
def test_l2a_offset_is_applied(parts):
    """Processing baseline 04.00 adds 1000 DN to every L2A band; the files carry the -0.1 as their
    band offset. Dark water then reads near zero in SWIR, not near 0.1."""
    product = _product(*parts)
    b11 = _array(product, "B11")
    assert np.nanpercentile(b11, 1) < 0.03  # without the offset: 0.104 and above
    assert np.nanmin(b11) > -0.01  # and nothing pushed far below zero


def test_accra_cloud_mask_reads_the_scene_classification():
    """Accra carries the L2A SCL band: CloudMask's ``auto`` uses it (cloud where SCL says 8/9)."""
    product = _product("accra", "s2_l2a_20240407.tif")
    scl = _array(product, "SCL").astype(int)
    mask = np.asarray(cloud_mask(product, method="scl").band("cloud_mask").data.compute())
    np.testing.assert_array_equal(mask, np.asarray(cloud_mask(product).band("cloud_mask").data.compute()))
    assert (mask[np.isin(scl, (8, 9))] == 1).mean() > 0.95
    assert (mask[scl == 3] > 0).mean() > 0.95  # SCL's cloud shadows are masked too
    assert (mask == 0).mean() > 0.4  # the 320 m buffer leaves most of the clear scene
    assert product.band("SCL").data.dtype.kind in "iu"  # classes, not rescaled reflectance
