"""snap_operators.science.regions: region labelling, contacts and repainting (compiled kernels)."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.features import rasterize, shapes
from shapely.geometry import shape

from snap_operators.science import regions

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def speckled(h, w, seed, k=4):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, k, (h // 3 + 1, w // 3 + 1)).astype(np.int16)
    a = np.repeat(np.repeat(a, 3, 0), 3, 1)[:h, :w].copy()
    m = rng.random((h, w)) < 0.15
    a[m] = rng.integers(0, k, int(m.sum()))
    return a


def gdal_partition(a, mask, connectivity):
    found = [shape(g) for g, _ in shapes(a.astype(np.int32), mask=mask, connectivity=connectivity)]
    return rasterize(((g, i + 1) for i, g in enumerate(found)), out_shape=a.shape, fill=0, dtype="int32"), len(found)


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("masked", [False, True])
def test_regions_are_gdals_numbered_by_first_pixel(connectivity, masked):
    a = speckled(45, 61, connectivity + masked)
    mask = (a != 2) if masked else None
    labels, values, sizes = regions.label(a, mask, connectivity)
    ref, n = gdal_partition(a, mask, connectivity)
    assert len(values) == len(sizes) == n == labels.max()
    valid = labels > 0
    np.testing.assert_array_equal(valid, ref > 0)
    # one-to-one: the same partition of the pixels
    assert len(set(zip(labels[valid].tolist(), ref[valid].tolist()))) == n
    ids, first = np.unique(labels.ravel(), return_index=True)
    first = first[ids > 0]
    assert np.all(np.diff(first) > 0)  # ids follow the first pixel, row-major
    np.testing.assert_array_equal(values, a.ravel()[first])
    np.testing.assert_array_equal(sizes, np.bincount(labels.ravel(), minlength=n + 1)[1:])


def test_label_accepts_every_integer_dtype_and_rejects_floats():
    a = np.array([[1, 1, 2], [3, 1, 2]])
    for dt in ("uint8", "int16", "uint16", "int32", "int64", "bool"):
        labels, values, sizes = regions.label(a.astype(dt) if dt != "bool" else a > 1)
        assert labels.dtype == np.int32 and labels.max() == len(values)
    with pytest.raises(ValueError, match="integer"):
        regions.label(a.astype("float32"))
    with pytest.raises(ValueError, match="connectivity"):
        regions.label(a, connectivity=6)
    labels, values, sizes = regions.label(np.zeros((0, 3), np.uint8))
    assert labels.shape == (0, 3) and len(values) == 0


def reference_pairs(labels, chosen, connectivity):
    """Every directed contact, by brute force over pixel pairs (GDAL's visiting order as key)."""
    h, w = labels.shape
    moves = [(-1, 0, 0), (0, -1, 3)] + ([(-1, -1, 1), (-1, 1, 2)] if connectivity == 8 else [])
    out = set()
    for y in range(h):
        for x in range(w):
            for dy, dx, k in moves:
                yy, xx = y + dy, x + dx
                if not (0 <= yy < h and 0 <= xx < w):
                    continue
                a, b = labels[y, x], labels[yy, xx]
                if a == b or a == 0 or b == 0:
                    continue
                key = (y * w + x) * 4 + k
                if chosen[a]:
                    out.add((a, b, key))
                if chosen[b]:
                    out.add((b, a, key))
    return out


@pytest.mark.parametrize("connectivity", [4, 8])
def test_touching_pairs_are_every_contact_of_the_chosen_regions(connectivity):
    a = speckled(23, 31, 5)
    labels, values, sizes = regions.label(a, a != 3, connectivity)
    chosen = np.r_[False, sizes < 4]
    src, dst, key = regions.touching_pairs(labels, chosen, connectivity)
    mine = list(zip(src.tolist(), dst.tolist(), key.tolist()))
    assert len(mine) == len(set(mine))  # each contact once
    assert set(mine) == reference_pairs(labels, chosen, connectivity)
    assert chosen[src].all() and len(mine) > 20
    with pytest.raises(ValueError, match="region 0"):
        regions.touching_pairs(labels, np.r_[True, chosen[1:]], connectivity)


def test_paint_changes_only_the_chosen_regions():
    a = np.array([[1, 1, 2], [3, 1, 2]], dtype=np.uint8)
    labels, values, _ = regions.label(a)
    new = np.r_[0, values]
    new[3] = 9
    changed = np.array([False, False, False, True])
    out = regions.paint(a, labels, new, changed)
    np.testing.assert_array_equal(out, [[1, 1, 2], [9, 1, 2]])
    assert out.dtype == a.dtype and a[1, 0] == 3  # the input is left alone
