"""One pixel area (grid.areas.row_pixel_areas_m2) for area tables and label masks.

The area table of a class map (ProgressiveClassifier, ChangeDetection,
timeseries) counts pixels times :func:`row_pixel_areas_m2`; LabelMaskExport's
features weigh each row of a polygon with the same function. On an unsieved
map both must give the same km² per class: they once did not (geodesic pixel
corners for the table, 0.01°-densified geodesic polygons for the features).
"""

from __future__ import annotations

import csv

import dask.array as da
import numpy as np
import pyproj
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from snap_operators.core.legend import MASKED
from snap_operators.core.product import Band, ClassInfo, Product
from snap_operators.grid.areas import AreaAccumulator, class_areas, row_pixel_areas_km2, row_pixel_areas_m2
from snap_operators.ops.label_mask_export import LabelMaskExport
from snap_operators.science.vectorize import areas_m2

WGS84 = CRS.from_epsg(4326)
UTM = CRS.from_epsg(32638)
LEGEND = [ClassInfo(1, "Lake", (10, 20, 200)), ClassInfo(2, "Field", (200, 180, 20)), ClassInfo(3, "Wood", (20, 120, 30))]


def parallel_cell_area(lon0, lon1, lat0, lat1, n=4000):
    """Independent truth: pyproj's geodesic area of the cell with its parallels densified to `n` points."""
    lon = np.concatenate([np.linspace(lon0, lon1, n), np.linspace(lon1, lon0, n)])
    lat = np.concatenate([np.full(n, lat0), np.full(n, lat1)])
    return abs(pyproj.Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)[0])


@pytest.mark.parametrize("lat", [0.0, 36.4, 60.0, 84.0])
def test_geographic_pixel_is_the_cell_between_its_parallels(lat):
    # 1° cells: large enough that geodesic pixel edges (the old table) would cut the parallels
    # by 1e-5 of the area; the pixel is bounded by parallels and meridians.
    t = Affine(1.0, 0.0, 43.0, 0.0, -1.0, lat + 1.0)
    got = row_pixel_areas_m2(t, WGS84, (1, 3))[0]
    assert got == pytest.approx(parallel_cell_area(44.0, 45.0, lat, lat + 1.0), rel=1e-9)


def test_small_geographic_pixels_vary_by_row_and_agree_with_geod():
    t = Affine(1e-4, 0.0, 43.1, 0.0, -1e-4, 36.4)
    got = row_pixel_areas_m2(t, WGS84, (3, 50))
    geod = pyproj.Geod(ellps="WGS84")
    corners = [abs(geod.polygon_area_perimeter([43.1, 43.1001, 43.1001, 43.1],
                                               [36.4 - 1e-4 * (r + 1)] * 2 + [36.4 - 1e-4 * r] * 2)[0]) for r in range(3)]
    np.testing.assert_allclose(got, corners, rtol=1e-8)
    assert got[0] < got[1] < got[2]  # southwards the pixels grow
    np.testing.assert_array_equal(row_pixel_areas_km2(t, WGS84, (3, 50)), got / 1e6)


def test_projected_pixel_is_the_parallelogram_in_metres():
    assert row_pixel_areas_m2(Affine(10, 0, 0, 0, -10, 0), UTM, (4, 4)).tolist() == [100.0] * 4
    rotated = Affine(6.0, 8.0, 0, 8.0, -6.0, 0)  # 10 m pixels turned by 53°
    np.testing.assert_allclose(row_pixel_areas_m2(rotated, UTM, (2, 2)), 100.0, rtol=1e-12)
    feet = row_pixel_areas_m2(Affine(10, 0, 0, 0, -10, 0), "EPSG:2263", (1, 1))[0]  # NY state plane, US feet
    assert feet == pytest.approx(100 * (1200 / 3937) ** 2, rel=1e-12)
    assert np.isnan(row_pixel_areas_m2(None, UTM, (2, 2))).all()


def test_polygon_area_weighs_each_row_with_its_pixel_area():
    rows = np.array([1.0, 2.0, 4.0, 8.0])
    square = shapely.box(1, 0, 3, 4)  # 2 pixels in each row
    got = areas_m2([square, shapely.box(0, 2, 1, 3), shapely.Polygon([(0, 0), (2, 0), (2, 1), (1, 1), (1, 3), (0, 3)])],
                   rows)
    assert got.tolist() == [2 * rows.sum(), 4.0, 2 * 1.0 + 2.0 + 4.0]
    assert areas_m2([square], np.full(4, 100.0))[0] == 800.0
    # A simplified edge across rows (pixel areas changing by 1e-4 a row, as at 80° N at 0.001°):
    # 0.5 px of row 1 and 1.5 px of row 2, to the change from row to row.
    rows = 100.0 * (1 + 1e-4 * np.arange(4))
    triangle = shapely.Polygon([(0, 1), (2, 3), (0, 3)])
    assert areas_m2([triangle], rows)[0] == pytest.approx(0.5 * rows[1] + 1.5 * rows[2], rel=1e-4)


# --- the table and the features agree ------------------------------------------------------


def blobs(h, w, seed):
    """Irregular class regions 1..3 (with no-data and masked pixels) crossing chunk borders."""
    rng = np.random.default_rng(seed)
    a = rng.random((h, w))
    for _ in range(3):
        a = (a + np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1)) / 5
    c = (np.digitize(a, np.quantile(a, [1 / 3, 2 / 3])) + 1).astype(np.uint8)
    c[:, :4] = 255
    c[10:14, 20:30] = MASKED
    return c


def export_areas(classes, transform, crs, path):
    """LabelMaskExport (no sieve, no simplification): class -> km² of its features, and of its area table."""
    band = Band("class_id", da.from_array(classes, chunks=48), transform, no_data=255, classes=LEGEND)
    op = LabelMaskExport.create({"sourceProduct": Product("scene", "CLASSES", {"class_id": band}, crs=crs)},
                                {"file": str(path)})
    op.execute()
    import fiona

    features: dict[int, float] = {}
    with fiona.open(path) as src:
        for f in src:
            features[f.properties["class_id"]] = features.get(f.properties["class_id"], 0.0) + f.properties["area_km2"]
    with open(path.with_name(path.stem + "_areas.csv"), newline="") as f:
        table = {int(r["class_id"]): float(r["vector_area_km2"]) for r in csv.DictReader(f)}
    return features, table


@pytest.mark.parametrize("transform, crs", [
    (Affine(0.001, 0.0, 43.1, 0.0, -0.001, 60.4), WGS84),  # ~55 m x 111 m pixels at 60° N
    (Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 4000020.0), UTM),
], ids=["geographic", "projected"])
def test_unsieved_label_masks_add_up_to_the_area_table(tmp_path, transform, crs):
    classes = blobs(150, 130, 7)
    features, export_table = export_areas(classes, transform, crs, tmp_path / "masks.gpkg")
    acc = AreaAccumulator(classes.shape, per_row=True)
    acc[(slice(0, 150), slice(0, 130))] = classes
    table = {r.class_id: r.area_km2 for r in class_areas(acc.counts, transform, crs, classes.shape, LEGEND)}
    assert sorted(features) == [1, 2, 3, MASKED]
    for value in (1, 2, 3, MASKED):
        assert features[value] == pytest.approx(table[value], rel=1e-12, abs=0)
        assert export_table[value] == pytest.approx(table[value], rel=1e-12, abs=0)
