"""snap_operators.science.outlines: compiled boundary tracing, checked against GDAL's polygonizer."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from rasterio.features import rasterize, shapes
from shapely.geometry import shape

from snap_operators.science import regions
from snap_operators.science import vectorize
from snap_operators.science.outlines import piece_polygons, trace_rings

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def gdal_pieces(a, mask=None):
    """GDAL's 4-connected polygons, indexed like regions.label's pieces."""
    labels, values, _ = regions.label(a, mask, 4)
    found = [shape(g) for g, _ in shapes(a.astype(np.int32), mask=mask, connectivity=4)]
    burnt = rasterize(((g, i + 1) for i, g in enumerate(found)), out_shape=a.shape, fill=0, dtype="int32")
    index = np.zeros(len(values) + 1, dtype=np.int64)
    index[labels[labels > 0]] = burnt[labels > 0] - 1
    return labels, values, np.array(found, dtype=object)[index[1:]]


def same(mine, ref):
    """Equal up to ring order, start vertex and direction (shapely.normalize), exactly."""
    return all(shapely.equals_exact(m, r, 0.0) for m, r in zip(shapely.normalize(mine), shapely.normalize(ref)))


@pytest.mark.parametrize(
    "rows",
    [
        # a hole touching the shell at one corner
        [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 1]],
        # two holes touching each other at one corner
        [[1, 1, 1, 1], [1, 2, 1, 1], [1, 1, 3, 1], [1, 1, 1, 1]],
        # a shell pinched at a corner around a hole
        [[1, 1, 1], [1, 2, 1], [1, 1, 2]],
        # a checkerboard: every piece one pixel, every corner a pinch
        [[1, 2, 1, 2], [2, 1, 2, 1], [1, 2, 1, 2]],
    ],
)
def test_pinched_corners_are_split_as_gdal_splits_them(rows):
    a = np.array(rows, dtype=np.uint8)
    labels, values, ref = gdal_pieces(a)
    mine = piece_polygons(labels, len(values))
    assert len(mine) == len(ref) == len(values)
    assert same(mine, ref)
    assert shapely.is_valid(mine).all()


@pytest.mark.parametrize("seed", range(12))
def test_random_class_maps_give_gdals_polygons(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, 2)
    k = int(rng.integers(2, 6))
    a = rng.integers(0, k, (h, w)).astype(np.uint8)
    if seed % 3 == 0:  # blobs, not only speckle
        a = np.repeat(np.repeat(a[: (h + 3) // 4, : (w + 3) // 4], 4, 0), 4, 1)[:h, :w].copy()
        a[rng.random(a.shape) < 0.1] = 0
    mask = (a != 1) if seed % 2 else None
    labels, values, ref = gdal_pieces(a, mask)
    mine = piece_polygons(labels, len(values))
    assert same(mine, ref)
    assert shapely.is_valid(mine).all()
    np.testing.assert_array_equal(shapely.area(mine), np.bincount(labels.ravel(), minlength=len(values) + 1)[1:])


def test_rings_are_grouped_shell_first():
    a = np.ones((7, 7), np.uint8)
    a[1, 1] = a[3, 3] = a[5, 4] = 2  # three holes in one piece
    labels, values, _ = regions.label(a)
    coords, ring_offsets, poly_offsets = trace_rings(labels)
    assert poly_offsets.tolist() == [0, 4, 5, 6, 7]  # piece 1: shell + 3 holes, then three single pixels
    first = shapely.Polygon(coords[ring_offsets[0]:ring_offsets[1]])
    assert first.area == 49  # the shell comes first
    assert np.all(coords[ring_offsets[:-1]] == coords[ring_offsets[1:] - 1])  # every ring closed


def test_split_sides_get_a_vertex_at_every_pixel_corner():
    a = np.zeros((6, 9), np.uint8)
    a[:, 4:] = 1
    labels, values, _ = regions.label(a)
    plain = piece_polygons(labels, len(values))
    split = piece_polygons(labels, len(values), split=(True, False, False, True))
    assert shapely.get_num_coordinates(plain).tolist() == [5, 5]
    # piece 0 (columns 0-3): 4 extra corners on the top side; piece 1: 4 on top, 5 on the right
    assert shapely.get_num_coordinates(split).tolist() == [5 + 3, 5 + 4 + 5]
    assert shapely.equals(split, plain).all()
    assert same([vectorize.drop_collinear(g) for g in split], plain)


def test_origin_moves_the_polygons():
    labels = np.array([[1, 2]], dtype=np.int32)
    moved = piece_polygons(labels, 2, origin=(10, 20))
    assert moved[1].bounds == (21.0, 10.0, 22.0, 11.0)


def test_empty_and_masked_blocks():
    assert len(piece_polygons(np.zeros((4, 5), np.int32), 0)) == 0
    assert len(piece_polygons(np.zeros((0, 0), np.int32))) == 0
    one = piece_polygons(np.ones((3, 2), np.int32))
    assert len(one) == 1 and one[0].area == 6 and len(one[0].interiors) == 0
