"""LabelMaskExport and snap_operators.science.vectorize: chunked polygonization, sieve, simplify, styles, files."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys

import dask.array as da
import fiona
import numpy as np
import pyproj
import pytest
import shapely
from affine import Affine
from defusedxml import ElementTree as DET
from helpers import ROOT
from rasterio.crs import CRS
from rasterio.features import rasterize, shapes
from rasterio.features import sieve as gdal_sieve
from shapely.geometry import shape

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import OperatorError, ProductWriteError
from snap_operators.core.legend import LAND_COVER
from snap_operators.core.product import Band, ClassInfo, Product
from snap_operators.core.streaming import store
from snap_operators.ops.label_mask_export import LabelMaskExport, output_path
from snap_operators.science import vectorize

# rasterio hides this warning with a thread-unsafe catch_warnings(); Dask's
# threads leak it (snap_operators.science.vectorize filters it outside pytest).
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

UTM = CRS.from_epsg(32638)
T_UTM = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 4000020.0)
T_GEO = Affine(0.0001, 0.0, 43.1, 0.0, -0.0001, 36.4)
LEGEND = [ClassInfo(1, "Lake", (10, 20, 200)), ClassInfo(2, "Field", (200, 180, 20)), ClassInfo(3, "Wood", (20, 120, 30))]


# --- helpers -------------------------------------------------------------------------


def blobs(h, w, seed=0, k=5, smooth=3, speckle=0.0):
    """Classes 1..k from smoothed noise: irregular regions crossing chunk borders."""
    rng = np.random.default_rng(seed)
    a = rng.random((h, w))
    for _ in range(smooth):
        a = (a + np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1)) / 5
    c = (np.digitize(a, np.quantile(a, np.linspace(0, 1, k + 1)[1:-1])) + 1).astype(np.uint8)
    if speckle:
        m = rng.random((h, w)) < speckle
        c[m] = rng.integers(0, k + 1, int(m.sum()))
    return c


def canon(regions):
    """Order-free, vertex-order-free form of (value, geometry) pairs."""
    return sorted((int(v), shapely.normalize(g).wkb) for v, g in regions)


@pytest.fixture
def class_product(make_product):
    """``class_product(classes, transform=T_UTM, crs=UTM, chunks=32, legend=LEGEND, no_data=255, data=None)``:
    product 'scene' of one class band 'class_id' holding `classes` (or the dask array `data`)."""

    def build(classes, transform=T_UTM, crs=UTM, chunks=32, legend=LEGEND, no_data=255, data=None):
        return make_product({"class_id": classes if data is None else data}, product_type="CLASSES", crs=crs,
                            transform=transform, chunks=chunks, no_data=no_data, classes=legend)

    return build


def export(prod, path, context=None, node_id="LabelMaskExport", **params):
    """Drive the sink protocol as the engine does: initialize, prepare, open, store, commit."""
    context = context or ExecutionContext()
    raw = {"file": str(path), **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}}
    op = LabelMaskExport.create({"sourceProduct": prod}, raw, context=context, node_id=node_id)
    op.target = op.initialize()
    op.prepare()
    plan = op.open()
    try:
        store(plan.arrays, plan.targets, context)
        plan.commit()
    except BaseException:
        plan.abort()
        raise
    return op


def features(path, layer=None):
    with fiona.open(path, layer=layer) as src:
        feats = [(f["properties"], shape(f["geometry"])) for f in src]
        return feats, src.crs, dict(src.schema["properties"])


def burn(feats, shape_, transform):
    if not feats:
        return np.full(shape_, 255, np.uint8)
    return rasterize(((g, p["class_id"]) for p, g in feats), out_shape=shape_, transform=transform, fill=255,
                     dtype="uint8")


def exported_view(classes, include0=False):
    out = classes.copy()
    if not include0:
        out[out == 0] = 255
    return out


# --- chunked polygonization ---------------------------------------------------------------


def crossing_raster(h=70, w=66, seed=3):
    """Blobs plus shapes made to cross chunk borders and corners (7, 16, 64 grids)."""
    a = blobs(h, w, seed, smooth=2)
    a[10:40, 15:17] = 4  # a thin bar across the row-16 border
    for k in range(12, 36):  # a diagonal staircase through the corners at (14,14), (16,16), (21,21)...
        a[k, k] = 5
        a[k, k + 1] = 1
    a[31, 31:34] = 2
    a[32, 34] = 2  # 8-connected only: touches (31, 33) at a corner
    a[63:65, 63:65] = 3  # a square on the 64 grid corner
    a[0:3, 0:66] = 255
    return a


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("chunk", [7, 16, 64])
def test_chunked_polygons_equal_whole_raster(connectivity, chunk):
    a = crossing_raster()
    exported = a != 255
    whole = vectorize.polygonize(a, None, connectivity, exported)
    chunked = vectorize.polygonize(a, chunk, connectivity, exported)
    assert canon(chunked) == canon(whole)
    # GDAL's own polygons of the whole raster: identical (4) / the same point sets (8).
    ref = [(int(v), shape(g)) for g, v in shapes(a, mask=exported, connectivity=connectivity)]
    assert len(ref) == len(chunked)
    if connectivity == 4:
        assert canon(ref) == canon(chunked)
    else:
        key = lambda vg: (vg[0], round(vg[1].area), vg[1].bounds)  # noqa: E731
        for (v1, g1), (v2, g2) in zip(sorted(chunked, key=key), sorted(ref, key=key)):
            assert v1 == v2 and shapely.equals(g1, shapely.make_valid(g2))
    assert shapely.is_valid(np.array([g for _, g in chunked], dtype=object)).all()


def test_eight_connectivity_joins_across_a_chunk_corner():
    a = np.zeros((32, 32), np.uint8)
    a[15, 15] = a[16, 16] = 1  # diagonal neighbours, each in another chunk of the 16 grid
    four = [r for r in vectorize.polygonize(a, 16, 4) if r[0] == 1]
    eight = [r for r in vectorize.polygonize(a, 16, 8) if r[0] == 1]
    assert len(four) == 2 and len(eight) == 1
    assert eight[0][1].geom_type == "MultiPolygon" and eight[0][1].area == 2.0
    zeros4 = [r for r in vectorize.polygonize(a, 16, 4) if r[0] == 0]
    assert len(zeros4) == 1 and zeros4[0][1].area == 32 * 32 - 2


def test_merger_accepts_chunks_in_any_order():
    a = crossing_raster()
    exported = a != 255
    h, w = a.shape
    c = 16
    rows = [min(c, h - y) for y in range(0, h, c)]
    cols = [min(c, w - x) for x in range(0, w, c)]
    origins = [(y, x) for y in range(0, h, c) for x in range(0, w, c)]
    np.random.default_rng(0).shuffle(origins)
    merger = vectorize.RegionMerger(rows, cols, 8)
    out = []
    for y, x in origins:
        idx = merger.index((y, x))
        sl = (slice(y, y + c), slice(x, x + c))
        part = vectorize.polygonize_chunk(a[sl], (y, x), exported[sl], merger.internal_sides(idx), 8)
        out += part.complete
        out += [(v, vectorize.merge_pieces(p, True, 8)) for v, p in merger.add(idx, part)]
    assert merger.open_regions == 0
    assert canon(out) == canon(vectorize.polygonize(a, None, 8, exported))


def test_pixel_to_crs_matches_gdal_coordinates():
    a = blobs(40, 50, 1)
    for t in (T_GEO, Affine(0.1, 0.03, 1.1, 0.02, -0.1, 7.7)):
        ref = [shape(g) for g, _ in shapes(a, transform=t)]
        mine = vectorize.pixel_to_crs(np.array([shape(g) for g, _ in shapes(a)], dtype=object), t)
        assert all(shapely.equals_exact(m, r, 0.0) for m, r in zip(mine, ref))


@pytest.mark.parametrize("masked", [False, True])
def test_piece_labels_are_the_4_connected_pieces_gdal_finds(masked):
    a = blobs(70, 90, 4, k=4, smooth=1, speckle=0.05)
    mask = (a != 2) if masked else None
    found = list(shapes(a, mask=mask, connectivity=4))
    ref = rasterize(((g, i + 1) for i, (g, _) in enumerate(found)), out_shape=a.shape, fill=0, dtype="int32")
    labels, values = vectorize.piece_labels(a, mask)
    assert labels.max() == len(found) == len(values)
    # the same partition of the pixels, numbered by first pixel (row-major)
    assert len(set(zip(labels.ravel().tolist(), ref.ravel().tolist()))) == len(found) + masked
    first = np.unique(labels.ravel(), return_index=True)[1]
    assert np.all(np.diff(first[1:] if masked else first) > 0)
    np.testing.assert_array_equal(values, a.ravel()[first[1:] if masked else first])
    # label_pieces numbers pieces as piece_labels does; piece k's polygon is
    # GDAL's polygon of the same pixels, up to ring order
    p = vectorize.label_pieces(a, 4, mask, origin=(5, 7))
    np.testing.assert_array_equal(p.labels, labels)
    np.testing.assert_array_equal(p.values, values)
    gdal_index = np.zeros(len(found) + 1, dtype=np.int64)
    gdal_index[labels[labels > 0]] = ref[labels > 0]
    moved = [shapely.transform(shape(found[i - 1][0]), lambda xy: xy + (7, 5)) for i in gdal_index[1:]]
    assert all(shapely.equals_exact(m, r, 0.0) for m, r in zip(shapely.normalize(p.geoms), shapely.normalize(moved)))
    assert shapely.is_valid(p.geoms).all()
    # the scene has what makes tracing hard: single pixels, one-pixel holes
    singles = np.bincount(labels.ravel())[1:] == 1
    assert singles.any() and not singles.all()
    nb = np.pad(labels, 1)
    around = [nb[:-2, 1:-1], nb[2:, 1:-1], nb[1:-1, :-2], nb[1:-1, 2:]]
    enclosed = (around[0] > 0) & (around[0] != labels) & np.all([x == around[0] for x in around], axis=0)
    assert enclosed.sum() > 3


def test_multipolygon_wkb_is_the_crs_polygons():
    a = blobs(40, 50, 2)
    pieces = vectorize.label_pieces(a, 8, None)
    groups = [pieces.geoms[pieces.region == r] for r in np.unique(pieces.region)]
    geoms = np.array([g[0] if len(g) == 1 else shapely.MultiPolygon(list(g)) for g in groups], dtype=object)
    assert {g.geom_type for g in geoms} == {"Polygon", "MultiPolygon"}
    mine = shapely.from_wkb(vectorize.multipolygon_wkb(geoms, T_GEO))
    ref = vectorize.pixel_to_crs(geoms, T_GEO)
    assert len(mine) == len(ref)
    assert set(shapely.get_type_id(mine).tolist()) == {shapely.GeometryType.MULTIPOLYGON}
    for m, r in zip(mine, ref):
        assert shapely.equals_exact(m, shapely.MultiPolygon(list(shapely.get_parts(r))), 0.0)
    only_polygons = vectorize.multipolygon_wkb(geoms[[g.geom_type == "Polygon" for g in geoms]], T_GEO)
    assert all(shapely.from_wkb(w).geom_type == "MultiPolygon" for w in only_polygons)
    assert len(vectorize.multipolygon_wkb(np.zeros(0, dtype=object), T_GEO)) == 0


# --- sieve ---------------------------------------------------------------------------------


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("size", [2, 5])
def test_sieve_chunked_equals_whole(connectivity, size):
    a = blobs(90, 84, size + connectivity, smooth=2, speckle=0.08)
    a[np.random.default_rng(1).random(a.shape) < 0.02] = 255
    whole = vectorize.sieve(a, size, connectivity, 255)
    assert (whole != a).any()
    for chunk in (16, 40):
        tiled = vectorize.sieve_dask(da.from_array(a, chunks=chunk), size, connectivity, 255)
        np.testing.assert_array_equal(tiled.compute(scheduler="sync"), whole)


@pytest.mark.parametrize("shape", [(30, 200), (200, 30), (20, 40)])
def test_sieve_of_a_raster_smaller_than_its_halo_equals_whole(shape):
    """A minimum area whose halo exceeds the raster (a large minArea on a small scene) sieves it whole."""
    a = blobs(*shape, 6, smooth=1, speckle=0.1)
    size = 12
    assert vectorize.sieve_depth(size) > min(shape)
    whole = vectorize.sieve(a, size, 4, 255)
    assert (whole != a).any()
    tiled = vectorize.sieve_dask(da.from_array(a, chunks=8), size, 4, 255)
    np.testing.assert_array_equal(tiled.compute(scheduler="sync"), whole)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_sieve_gdal_rule_is_rasterio_sieve(connectivity):
    """With true sizes and unlimited chains the same code is exactly GDAL's filter."""
    a = blobs(80, 80, 7, smooth=2, speckle=0.1)
    a[np.random.default_rng(2).random(a.shape) < 0.02] = 255
    for size in (3, 9):
        mine = vectorize.sieve(a, size, connectivity, 255, gdal=True)
        np.testing.assert_array_equal(mine, gdal_sieve(a, size, connectivity=connectivity, mask=a != 255))


def test_sieve_equals_rasterio_inside_one_class():
    """Specks, chains of specks and no-data inside one large class: same result as GDAL."""
    a = np.full((60, 60), 2, np.uint8)
    a[10, 10] = 1
    a[20:22, 30] = 3
    a[40:43, 40:43] = 4  # 9 pixels: large for size 5
    a[30:33, 10:13] = 5  # a ring of 5s (8 px) around a 1-pixel 1: chain 1 -> 5 -> 2
    a[31, 11] = 1
    a[50:55, 50:55] = 255
    a[52, 52] = 3  # a speck surrounded by no-data: no neighbour, stays
    for size in (5, 9):
        ref = gdal_sieve(a, size, mask=a != 255)
        np.testing.assert_array_equal(vectorize.sieve(a, size), ref)
        tiled = vectorize.sieve_dask(da.from_array(a, chunks=16), size).compute(scheduler="sync")
        np.testing.assert_array_equal(tiled, ref)
    assert vectorize.sieve(a, 9)[31, 11] == 2 and vectorize.sieve(a, 9)[52, 52] == 3


def test_sieve_speck_between_two_large_classes_takes_the_longer_border():
    a = np.full((20, 40), 1, np.uint8)
    a[:, 12:] = 2  # class 2 is the larger region
    a[8:10, 10:12] = 3  # 4-pixel speck: 2 edges with 2, 6 edges with 1
    assert gdal_sieve(a, 5)[8, 10] == 2  # GDAL: the largest neighbour
    assert vectorize.sieve(a, 5)[8, 10] == 1  # here: the longest shared border (local, hence tileable)
    assert vectorize.sieve_dask(da.from_array(a, chunks=8), 5).compute()[8, 10] == 1


def test_sieve_merges_small_regions_into_a_large_neighbour_and_makes_no_hole():
    a = blobs(64, 64, 11, smooth=4, speckle=0.03)
    a[:5, :] = 255
    size = 6
    out = vectorize.sieve_dask(da.from_array(a, chunks=20), size).compute()
    np.testing.assert_array_equal(out == 255, a == 255)  # no-data never changes, valid stays valid
    labels, values = vectorize.region_labels(a, 4, a != 255)
    sizes = np.bincount(labels.ravel())
    small = [r for r in range(1, len(values)) if sizes[r] < size]
    assert len(small) > 50
    merged = 0
    for r in small:
        inside = labels == r
        ring = np.zeros_like(inside)
        ring[1:] |= inside[:-1]
        ring[:-1] |= inside[1:]
        ring[:, 1:] |= inside[:, :-1]
        ring[:, :-1] |= inside[:, 1:]
        near = set(np.unique(labels[ring & ~inside])) - {0}
        large = {values[q] for q in near if sizes[q] >= size}
        if large:  # a small region next to a large one takes the class of one of them, whole
            assert len(set(out[inside])) == 1 and out[inside][0] in large
            merged += 1
    assert merged > 0.5 * len(small)
    after, _ = vectorize.region_labels(out, 4, out != 255)
    assert (np.bincount(after.ravel())[1:] < size).sum() < 0.2 * len(small)


def test_sieve_depth_is_bounded_by_chain_length():
    assert vectorize.sieve_depth(1) == 0
    assert vectorize.sieve_depth(5, hops=3) == 16
    assert vectorize.sieve_depth(5, hops=1) == 8


# --- the operator --------------------------------------------------------------------------


def test_export_rasterizes_back_to_the_sieved_class_band(class_product, tmp_path):
    a = blobs(100, 90, 4, speckle=0.02)
    a[:10, :20] = 255
    a[60:70, 5:15] = 0
    op = export(class_product(a, chunks=32), tmp_path / "masks", minArea=400)  # 400 m² = 4 px at 10 m
    gpkg = tmp_path / "masks.gpkg"
    assert op.outputs == [str(gpkg), str(tmp_path / "masks.qml"), str(tmp_path / "masks_areas.csv")]
    feats, crs, schema = features(gpkg, "label_masks")
    sieved = vectorize.sieve(a, 4)
    np.testing.assert_array_equal(burn(feats, a.shape, T_UTM), exported_view(sieved))
    # One feature per 4-connected region of the sieved band, classes 1..5 only.
    regions = vectorize.polygonize(sieved, None, 4, exported_view(sieved) != 255)
    assert len(feats) == len(regions)
    assert {p["class_id"] for p, _ in feats} <= {1, 2, 3, 4, 5}
    geoms = np.array([g for _, g in feats], dtype=object)
    assert shapely.is_valid(geoms).all()
    areas = np.array([p["area_m2"] for p, _ in feats])
    np.testing.assert_allclose(areas, shapely.area(geoms), rtol=1e-12)
    assert areas.sum() == pytest.approx(100.0 * np.isin(sieved, [1, 2, 3, 4, 5]).sum())
    np.testing.assert_allclose([p["area_km2"] for p, _ in feats], areas / 1e6)
    names = {c.value: c.name for c in LEGEND}
    assert all(p["class_name"] == names.get(p["class_id"], f"class {p['class_id']}") for p, _ in feats)
    assert CRS.from_user_input(crs) == UTM
    assert schema == {"class_id": "int", "class_name": "str", "area_m2": "float", "area_km2": "float"}
    with open(tmp_path / "masks_areas.csv", newline="") as f:
        rows = {int(r["class_id"]): r for r in csv.DictReader(f)}
    assert sorted(rows) == [1, 2, 3, 4, 5]  # the legend's 3 classes plus 4 and 5 found in the data
    for cid, r in rows.items():
        mine = [p["area_m2"] for p, _ in feats if p["class_id"] == cid]
        assert int(r["regions"]) == len(mine)
        assert float(r["vector_area_m2"]) == pytest.approx(sum(mine))
        assert float(r["vector_area_km2"]) == pytest.approx(sum(mine) / 1e6)


def test_a_class_map_written_with_its_margin_exports_as_its_classes(class_product, tmp_path):
    """The Progressive Classifier's map written with its margin is float32 (one sample type per
    GeoTIFF) and its no-data NaN once read: exported, it gives the polygons of the uint8 map."""
    a = blobs(60, 50, 2)
    a[:8, :12] = 255
    as_read = np.where(a == 255, np.nan, a).astype(np.float32)
    export(class_product(as_read, no_data=float("nan")), tmp_path / "f", minArea=0)
    export(class_product(a), tmp_path / "u", minArea=0)
    got, want = features(tmp_path / "f.gpkg")[0], features(tmp_path / "u.gpkg")[0]
    assert len(got) == len(want) > 3
    def canonical(feats):  # the same polygons, whatever vertex a ring starts at
        return sorted((p["class_id"], shapely.normalize(g).wkb) for p, g in feats)

    assert canonical(got) == canonical(want)


def test_threaded_export_equals_whole_raster_polygons(class_product, tmp_path):
    a = crossing_raster()
    op = export(class_product(a, chunks=16), tmp_path / "m.fgb", formatName="FlatGeobuf", connectivity=8,
                context=ExecutionContext(num_workers=4))
    feats, _, _ = features(op.outputs[0])
    exported = exported_view(a) != 255
    ref = [(v, vectorize.pixel_to_crs(g, T_UTM)) for v, g in vectorize.polygonize(a, None, 8, exported)]
    mine = [(p["class_id"], g.geoms[0] if len(g.geoms) == 1 else g) for p, g in feats]
    assert canon(mine) == canon(ref)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_irregular_chunks(class_product, tmp_path, connectivity):
    a = crossing_raster()
    data = da.from_array(a, chunks=((5, 30, 1, 34), (17, 3, 46)))
    op = export(class_product(a, data=data), tmp_path / "irr.gpkg", connectivity=connectivity)
    feats, _, _ = features(op.outputs[0])
    np.testing.assert_array_equal(burn(feats, a.shape, T_UTM), exported_view(a))
    assert len(feats) == len(vectorize.polygonize(a, None, connectivity, exported_view(a) != 255))


@pytest.mark.parametrize("fmt,suffix", [("GPKG", ".gpkg"), ("ESRI Shapefile", ".shp"), ("GeoJSON", ".geojson"),
                                        ("FlatGeobuf", ".fgb")])
def test_every_format_opens_with_fiona(class_product, tmp_path, fmt, suffix):
    a = blobs(40, 48, 5)
    op = export(class_product(a, chunks=16), tmp_path / "out", formatName=fmt, layerName="masks")
    path = tmp_path / f"out{suffix}"
    assert op.outputs[0] == str(path)
    layer = "masks" if fmt == "GPKG" else None
    feats, crs, schema = features(path, layer)
    np.testing.assert_array_equal(burn(feats, a.shape, T_UTM), exported_view(a))
    assert CRS.from_user_input(crs) == UTM
    assert set(schema) == {"class_id", "class_name", "area_m2", "area_km2"}
    assert (tmp_path / "out.qml").is_file() and (tmp_path / "out_areas.csv").is_file()
    if fmt == "ESRI Shapefile":
        assert pyproj.CRS.from_wkt((tmp_path / "out.prj").read_text()).to_epsg() == 32638
        assert (tmp_path / "out.cpg").read_text().strip().upper() == "UTF-8"
        assert {p.suffix for p in tmp_path.iterdir()} >= {".shp", ".shx", ".dbf", ".prj", ".cpg"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_unicode_class_names_survive_a_shapefile(class_product, tmp_path):
    legend = [ClassInfo(1, "Eau – lac", (0, 0, 255)), ClassInfo(2, "Sol nu (désert)", (200, 180, 20))]
    a = np.ones((20, 20), np.uint8)
    a[:, 10:] = 2
    export(class_product(a, chunks=8, legend=legend), tmp_path / "u.shp", formatName="ESRI Shapefile")
    feats, _, _ = features(tmp_path / "u.shp")
    assert sorted(p["class_name"] for p, _ in feats) == ["Eau – lac", "Sol nu (désert)"]


def test_geographic_crs_gives_geodesic_areas(class_product, tmp_path):
    a = blobs(60, 50, 6)
    a[:, :5] = 255
    wgs84 = CRS.from_epsg(4326)
    export(class_product(a, transform=T_GEO, crs=wgs84, chunks=16), tmp_path / "geo.gpkg")
    feats, crs, _ = features(tmp_path / "geo.gpkg")
    assert CRS.from_user_input(crs) == wgs84
    np.testing.assert_array_equal(burn(feats, a.shape, T_GEO), exported_view(a))
    geod = pyproj.Geod(ellps="WGS84")
    # Independent truth: the geodesic area of each row's pixels (all pixels of a row are equal).
    row_area = []
    for r in range(a.shape[0]):
        lat0, lat1 = 36.4 - 0.0001 * (r + 1), 36.4 - 0.0001 * r
        row_area.append(abs(geod.polygon_area_perimeter([43.1, 43.1001, 43.1001, 43.1], [lat0, lat0, lat1, lat1])[0]))
    expected = sum(row_area[r] * np.isin(a[r], [1, 2, 3, 4, 5]).sum() for r in range(a.shape[0]))
    total = sum(p["area_m2"] for p, _ in feats)
    assert total == pytest.approx(expected, rel=1e-6)
    one = max(feats, key=lambda f: f[1].area)
    assert one[0]["area_m2"] == pytest.approx(abs(geod.geometry_area_perimeter(one[1])[0]), rel=1e-6)
    assert 50 < total / (np.isin(a, [1, 2, 3, 4, 5]).sum()) < 150  # ~ 9 m x 11 m pixels at 36.4 N


def test_min_area_is_converted_with_the_pixel_area(class_product, tmp_path):
    a = np.full((40, 40), 1, np.uint8)
    a[5, 5] = 2  # 1 px
    a[20:22, 20:22] = 3  # 4 px
    a[30:33, 30:32] = 4  # 6 px
    op = export(class_product(a, chunks=16), tmp_path / "m.gpkg", minArea=500)  # 5 px of 100 m²
    assert op.sieve_size()[0] == 5
    feats, _, _ = features(tmp_path / "m.gpkg")
    assert sorted(p["class_id"] for p, _ in feats) == [1, 4]
    too_big = LabelMaskExport.create({"sourceProduct": class_product(a)}, {"file": str(tmp_path / "x"), "minArea": "1e7"})
    with pytest.raises(OperatorError, match="minArea"):
        too_big.initialize()


def test_qml_and_geopackage_style(class_product, tmp_path):
    a = blobs(30, 30, 8, k=3)
    export(class_product(a, chunks=16), tmp_path / "styled.gpkg", layerName="lc")
    qml = (tmp_path / "styled.qml").read_text(encoding="utf-8")
    root = DET.fromstring(qml)
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_id"
    cats = [(int(c.get("value")), c.get("label"), c.get("symbol")) for c in renderer.find("categories")]
    assert [(v, n) for v, n, _ in cats] == [(c.value, c.name) for c in LEGEND]
    colors = {s.get("name"): s.find("layer/Option/Option[@name='color']").get("value") for s in renderer.find("symbols")}
    for (v, _, sym), c in zip(cats, LEGEND):
        assert colors[sym] == ",".join(str(x) for x in c.color) + ",255"
    con = sqlite3.connect(tmp_path / "styled.gpkg")
    try:
        kinds = dict(con.execute("SELECT table_name, data_type FROM gpkg_contents").fetchall())
        row = con.execute("SELECT f_table_name, f_geometry_column, useAsDefault, styleQML FROM layer_styles").fetchall()
        geom_col = con.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name='lc'").fetchone()[0]
        version = con.execute("PRAGMA user_version").fetchone()[0]
        application = con.execute("PRAGMA application_id").fetchone()[0]
    finally:
        con.close()
    assert kinds == {"lc": "features", "layer_styles": "attributes"}
    assert row == [("lc", geom_col, 1, qml)]
    # GeoPackage 1.2 (GDAL 3.6, in many QGIS LTR installs, warns on 1.4), still after the style is added
    assert version == 10200 and application == int.from_bytes(b"GPKG", "big")


def test_legend_falls_back_to_land_cover_and_unknown_classes_are_named(class_product, tmp_path):
    a = np.array([[1, 2, 7], [1, 2, 7]], np.uint8)
    export(class_product(a, chunks=2, legend=None), tmp_path / "f.gpkg")
    feats, _, _ = features(tmp_path / "f.gpkg")
    names = dict((p["class_id"], p["class_name"]) for p, _ in feats)
    assert names == {1: LAND_COVER[0].name, 2: LAND_COVER[1].name, 7: "class 7"}
    labels = [c.get("label") for c in DET.parse(tmp_path / "f.qml").getroot().find("renderer-v2/categories")]
    assert labels == [c.name for c in LAND_COVER] + ["class 7"]


@pytest.mark.parametrize("include", [False, True])
def test_unclassified_only_on_request_and_no_data_never(class_product, tmp_path, include):
    a = np.array([[0, 0, 1, 255], [0, 1, 1, 255], [2, 2, 255, 255]], np.uint8)
    export(class_product(a, chunks=2), tmp_path / "u.gpkg", includeUnclassified=include)
    feats, _, _ = features(tmp_path / "u.gpkg")
    ids = sorted(p["class_id"] for p, _ in feats)
    assert ids == ([0, 1, 2] if include else [1, 2])
    with open(tmp_path / "u_areas.csv", newline="") as f:
        rows = [int(r["class_id"]) for r in csv.DictReader(f)]
    assert (0 in rows) is include and 255 not in rows


def test_all_no_data_scene_gives_an_empty_valid_layer(class_product, tmp_path):
    a = np.full((40, 40), 255, np.uint8)
    for fmt in ("GPKG", "ESRI Shapefile", "GeoJSON", "FlatGeobuf"):
        stem = tmp_path / fmt.replace(" ", "_")
        op = export(class_product(a, chunks=16), stem, formatName=fmt)
        feats, crs, schema = features(op.outputs[0])
        assert feats == [] and CRS.from_user_input(crs) == UTM
        if fmt != "GeoJSON":  # a GeoJSON file has no schema beyond its features
            assert set(schema) == {"class_id", "class_name", "area_m2", "area_km2"}
        with open(op.outputs[-1], newline="") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["class_id"]) for r in rows] == [1, 2, 3]
        assert all(int(r["regions"]) == 0 and float(r["vector_area_m2"]) == 0.0 for r in rows)


def test_absent_class_has_a_zero_row(class_product, tmp_path):
    a = np.ones((16, 16), np.uint8)
    a[8:, :] = 3
    export(class_product(a, chunks=8), tmp_path / "z.gpkg")
    with open(tmp_path / "z_areas.csv", newline="") as f:
        rows = {int(r["class_id"]): (int(r["regions"]), float(r["vector_area_m2"])) for r in csv.DictReader(f)}
    assert rows == {1: (1, 12800.0), 2: (0, 0.0), 3: (1, 12800.0)}


def test_simplified_coverage_has_no_gaps_or_overlaps(class_product, tmp_path):
    a = blobs(96, 80, 9, smooth=8)
    base = export(class_product(a, chunks=32), tmp_path / "exact.gpkg")
    simp = export(class_product(a, chunks=32), tmp_path / "simple.gpkg", simplify=25.0)  # 2.5 pixels
    exact, _, _ = features(base.outputs[0])
    feats, _, _ = features(simp.outputs[0])
    assert len(feats) == len(exact)
    geoms = np.array([g for _, g in feats], dtype=object)
    assert shapely.is_valid(geoms).all()
    assert shapely.coverage_is_valid(geoms)
    union = shapely.union_all(geoms)
    scene = 96 * 80 * 100.0
    assert union.area == pytest.approx(scene, rel=1e-9)  # same outline as before (no gaps)
    assert shapely.area(geoms).sum() == pytest.approx(union.area, rel=1e-9)  # no overlaps
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms, predicate="intersects")
    m = i < j
    assert shapely.area(shapely.intersection(geoms[i[m]], geoms[j[m]])).sum() == pytest.approx(0.0, abs=1e-6)
    assert len(shapely.get_coordinates(geoms)) < 0.8 * len(shapely.get_coordinates([g for _, g in exact]))
    # Each class keeps about its area.
    for cid in range(1, 6):
        before = sum(p["area_m2"] for p, _ in exact if p["class_id"] == cid)
        after = sum(p["area_m2"] for p, _ in feats if p["class_id"] == cid)
        assert after == pytest.approx(before, rel=0.05)


def test_simplify_with_non_square_pixels_keeps_pixel_corners(class_product, tmp_path):
    a = blobs(48, 48, 12, smooth=8)
    t = Affine(10.0, 0.0, 399960.0, 0.0, -20.0, 4000020.0)
    op = export(class_product(a, transform=t, chunks=16), tmp_path / "ns.gpkg", simplify=30.0)
    feats, _, _ = features(op.outputs[0])
    xy = shapely.get_coordinates(np.array([g for _, g in feats], dtype=object))
    col, row = (~t) @ (xy[:, 0], xy[:, 1])
    np.testing.assert_allclose(col, np.round(col), atol=1e-6)
    np.testing.assert_allclose(row, np.round(row), atol=1e-6)
    assert shapely.coverage_is_valid(np.array([g for _, g in feats], dtype=object))


# --- checks, temporary files, failures ---------------------------------------------------------


def test_output_path_adds_the_format_extension():
    assert output_path("/x/masks", "GPKG").name == "masks.gpkg"
    assert output_path("/x/masks.v1", "ESRI Shapefile").name == "masks.v1.shp"
    assert output_path("/x/masks.json", "GeoJSON").name == "masks.json"
    assert output_path("/x/masks.FGB", "FlatGeobuf").name == "masks.FGB"


def test_prepare_refuses_bad_targets(class_product, tmp_path):
    a = blobs(16, 16, 1)
    prod = class_product(a, chunks=8)

    def op_for(path, **ctx):
        op = LabelMaskExport.create({"sourceProduct": prod}, {"file": str(path)}, context=ExecutionContext(**ctx),
                                    node_id="masks")
        op.target = op.initialize()
        return op

    (tmp_path / "old.gpkg").write_bytes(b"x")
    with pytest.raises(ProductWriteError) as e:
        op_for(tmp_path / "old").prepare()
    msg = str(e.value)
    assert "\n" not in msg and "node 'masks'" in msg and str(tmp_path / "old.gpkg") in msg and "--overwrite" in msg
    op_for(tmp_path / "old", overwrite=True).prepare()
    with pytest.raises(ProductWriteError, match="input of this graph"):
        op_for(tmp_path / "in.gpkg", input_files={str(tmp_path / "in.gpkg")}, overwrite=True).prepare()
    with pytest.raises(ProductWriteError, match="does not exist"):
        op_for(tmp_path / "missing" / "m.gpkg").prepare()
    (tmp_path / "side.qml").write_text("mine")
    with pytest.raises(ProductWriteError, match="side.qml"):
        op_for(tmp_path / "side.gpkg").prepare()
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(ProductWriteError, match="not writable"):
                op_for(ro / "m.gpkg").prepare()
        finally:
            ro.chmod(0o700)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["old.gpkg", "side.qml"]


def test_bad_sources_are_one_line_errors(tmp_path):
    a = blobs(8, 8, 1)
    cases = [
        (Product("p", bands={"class_id": Band("class_id", da.from_array(a.astype("float32")), T_UTM)}, crs=UTM), "not an integer"),
        (Product("p", bands={"other": Band("other", da.from_array(a), T_UTM)}, crs=UTM), "has no band 'class_id'"),
        (Product("p", bands={"class_id": Band("class_id", da.from_array(a), T_UTM)}), "no CRS"),
        (Product("p", bands={"class_id": Band("class_id", da.from_array(a), None)}, crs=UTM), "no map geocoding"),
    ]
    for prod, text in cases:
        op = LabelMaskExport.create({"sourceProduct": prod}, {"file": str(tmp_path / "x")}, node_id="lm")
        with pytest.raises(OperatorError, match=text) as e:
            op.initialize()
        assert "\n" not in str(e.value) and "node 'lm'" in str(e.value)


def test_overwrite_replaces_every_file(class_product, tmp_path):
    a = blobs(20, 20, 2)
    export(class_product(a, chunks=8), tmp_path / "o.shp", formatName="ESRI Shapefile")
    (tmp_path / "o.qix").write_bytes(b"stale index")
    b = np.full((20, 20), 2, np.uint8)
    export(class_product(b, chunks=8), tmp_path / "o.shp", formatName="ESRI Shapefile",
           context=ExecutionContext(overwrite=True))
    feats, _, _ = features(tmp_path / "o.shp")
    assert [p["class_id"] for p, _ in feats] == [2]
    assert not (tmp_path / "o.qix").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["o.shp", "o.shx", "o.dbf", "o.prj", "o.cpg", "o.qml", "o_areas.csv"])


@pytest.mark.parametrize("fmt", ["GPKG", "ESRI Shapefile"])
def test_failure_midway_leaves_nothing(class_product, tmp_path, fmt):
    a = blobs(64, 64, 3)
    good = da.from_array(a, chunks=16)

    def boom(block, block_info=None):
        if block_info[None]["chunk-location"] == (3, 2):
            raise RuntimeError("disk on fire")
        return block

    data = good.map_blocks(boom, dtype=a.dtype)
    with pytest.raises(RuntimeError, match="disk on fire"):
        export(class_product(a, data=data), tmp_path / "fail", formatName=fmt, context=ExecutionContext(num_workers=2))
    assert list(tmp_path.iterdir()) == []


def test_commit_refuses_when_chunks_are_missing(class_product, tmp_path):
    a = blobs(32, 32, 3)
    op = LabelMaskExport.create({"sourceProduct": class_product(a, chunks=16)}, {"file": str(tmp_path / "m")})
    op.target = op.initialize()
    op.prepare()
    plan = op.open()
    target = plan.targets[0]
    target[(slice(0, 16), slice(0, 16))] = a[:16, :16]  # three chunks never come
    with pytest.raises(ProductWriteError, match="wait for chunks"):
        plan.commit()
    plan.abort()
    assert list(tmp_path.iterdir()) == []


# --- through the engine --------------------------------------------------------------------------

GRAPH = """<graph id="masks"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
  <node id="Masks"><operator>LabelMaskExport</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><file>${output}</file><formatName>GPKG</formatName><sourceBand>class_id</sourceBand>
      <connectivity>8</connectivity><minArea>300</minArea><layerName>lc</layerName></parameters></node>
</graph>"""


@pytest.fixture
def write_class_tiff(write_tif):
    """``write_class_tiff(path, a, transform=T_UTM)``: a tiled uint8 class GeoTIFF as the project writes them."""

    def write(path, a, transform=T_UTM):
        return write_tif(path, {"class_id": a}, dtype="uint8", crs=UTM, transform=transform, nodata=255, tiled=True,
                         blockxsize=32, blockysize=32, colormap={c.value: (*c.color, 255) for c in LEGEND},
                         band_tags={1: {"CLASS_NAMES": json.dumps({str(c.value): c.name for c in LEGEND})}})

    return write


def test_run_graph_read_class_geotiff(write_class_tiff, tmp_path):
    from snap_operators.engine.graph import parse_graph
    from snap_operators.engine.runner import run_graph

    a = blobs(90, 70, 13, k=3, speckle=0.02)
    a[:4, :] = 255
    src = tmp_path / "classes.tif"
    write_class_tiff(src, a)
    out = tmp_path / "masks.gpkg"
    g = parse_graph("g.xml", text=GRAPH).substitute({"input": str(src), "output": str(out)})
    result = run_graph(g, ExecutionContext(tile_size=32))
    assert str(out) in result.outputs
    feats, crs, _ = features(out, "lc")
    sieved = vectorize.sieve(a, 3, 8)
    np.testing.assert_array_equal(burn(feats, a.shape, T_UTM), exported_view(sieved))
    assert {p["class_name"] for p, _ in feats} <= {c.name for c in LEGEND}
    assert CRS.from_user_input(crs) == UTM
    with pytest.raises(ProductWriteError, match="already exists"):
        run_graph(g, ExecutionContext(tile_size=32))


def test_masked_regions_are_exported_as_their_own_features(class_product, tmp_path):
    from snap_operators.core.legend import MASKED, MASKED_INFO

    classes = np.full((40, 50), 3, np.uint8)
    classes[5:15, 5:25] = MASKED
    classes[30:, 40:] = 1
    legend = [*LEGEND, MASKED_INFO] if MASKED not in {c.value for c in LEGEND} else LEGEND
    export(class_product(classes, legend=legend), tmp_path / "m.gpkg")
    feats, _, _ = features(tmp_path / "m.gpkg")
    masked = [p for p, _ in feats if p["class_id"] == MASKED]
    assert len(masked) == 1 and masked[0]["class_name"] == "Masked: cloud, shadow, snow"
    assert masked[0]["area_m2"] == pytest.approx(10 * 20 * 100.0)
    assert "254,Masked: cloud, shadow, snow,1," in (tmp_path / "m_areas.csv").read_text().replace('"', "")
    # a map whose legend lacks 254 still names the features; includeMasked=false leaves them out
    export(class_product(classes), tmp_path / "n.gpkg")
    assert [p["class_name"] for p, _ in features(tmp_path / "n.gpkg")[0] if p["class_id"] == MASKED] == \
        ["Masked: cloud, shadow, snow"]
    export(class_product(classes, legend=legend), tmp_path / "o.gpkg", includeMasked=False)
    feats, _, _ = features(tmp_path / "o.gpkg")
    assert {p["class_id"] for p, _ in feats} == {1, 3}
    assert "254" not in (tmp_path / "o_areas.csv").read_text()


@pytest.mark.parametrize("damage", ["index", "features"])
def test_geopackage_without_its_spatial_index_is_not_published(class_product, tmp_path, monkeypatch, damage):
    """GDAL builds the R-tree on close and only logs a failure there (a full disk): the export checks it."""
    from snap_operators.ops import label_mask_export as lme

    if damage == "index" and not lme.gdal_builds_rtree():
        # TensorFlow, imported by an earlier test, brought a SQLite without R*Tree: GDAL builds no
        # index in this process. Check it in a fresh one.
        node = f"{__file__}::test_geopackage_without_its_spatial_index_is_not_published[index]"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-2000:]
        return
    real = lme.store_gpkg_style

    def style_then_damage(gpkg, layer, *args, **kwargs):
        real(gpkg, layer, *args, **kwargs)
        with sqlite3.connect(gpkg) as db:  # what a failed close leaves: an index or features missing
            if damage == "index":
                db.execute(f'DELETE FROM "rtree_{layer}_geom"')
            else:
                db.execute(f'DELETE FROM "{layer}" WHERE fid = (SELECT max(fid) FROM "{layer}")')
        db.close()

    monkeypatch.setattr(lme, "store_gpkg_style", style_then_damage)
    classes = blobs(64, 64, seed=4)
    with pytest.raises(ProductWriteError, match="index entries of"):
        export(class_product(classes), tmp_path / "labels.gpkg")
    assert os.listdir(tmp_path) == []


_IMPORTS_THEN_EXPORT = """
import sys
for name in sys.argv[2].split(","):
    __import__(name)
from snap_operators.apps.synth import write_synthetic_scene
from snap_operators.core.context import ExecutionContext
from snap_operators.engine.runner import load_graph, run_graph
from snap_operators.ops.label_mask_export import gpkg_query
out = __import__("pathlib").Path(sys.argv[1])
paths = write_synthetic_scene(out / "scene", 128, 1)
run_graph(load_graph("graphs/progressive_classifier_s2.xml", {"input": str(paths["s2"]),
          "output": str(out / "classes.tif"), "labels": str(out / "labels.gpkg")}), ExecutionContext(overwrite=True))
n = gpkg_query(out / "labels.gpkg", "SELECT count(*) FROM label_masks")[0]
index = gpkg_query(out / "labels.gpkg", "SELECT count(*) FROM sqlite_master WHERE name = 'rtree_label_masks_geom'")[0]
print("features", n, "index", index)
"""


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow (the train extra)")
@pytest.mark.parametrize("first", ["tensorflow", "fiona,pyogrio,tensorflow", "snap_pc_models.train,tensorflow"])
def test_label_masks_are_written_whatever_was_imported_before(tmp_path, first):
    """TensorFlow brings a SQLite without R*Tree. Imported before GDAL, GDAL writes GeoPackages
    without a spatial index (said in a warning); imported after GDAL but before Python's sqlite3
    (a notebook: geopandas, then tensorflow, then an export), GDAL builds the index that sqlite3
    cannot read, and the export's check refused a sound file as "incomplete (the disk may be full)".
    The training package loads GDAL and sqlite3 before its TensorFlow: training, then exporting in
    one process writes the index."""
    proc = subprocess.run([sys.executable, "-c", _IMPORTS_THEN_EXPORT, str(tmp_path), first],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n, index = map(int, proc.stdout.split()[1::2])
    assert n > 0 and index == (0 if first == "tensorflow" else 1)
    assert ("without a spatial index" in proc.stderr) == (first == "tensorflow")


# --- the format from the file name, an empty file ---------------------------------------------------


def read_back(path, layer=None):
    """``(features, field names, CRS)`` of a vector file as pyogrio reads it."""
    import pyogrio

    info = pyogrio.read_info(str(path), layer=layer, force_feature_count=True)
    return info["features"], list(info["fields"]), CRS.from_user_input(info["crs"])


@pytest.mark.parametrize("name,driver", [("l.gpkg", "GPKG"), ("l.shp", "ESRI Shapefile"), ("l.geojson", "GeoJSON"),
                                         ("l.json", "GeoJSON"), ("l.FGB", "FlatGeobuf")])
def test_the_extension_names_the_format_when_format_name_is_empty(class_product, tmp_path, name, driver):
    """-Plabels=labels.shp writes a Shapefile (not labels.shp.gpkg), and so on; QML and area table follow the stem."""
    import pyogrio

    a = blobs(40, 48, 5)
    op = export(class_product(a, chunks=16), tmp_path / name)  # formatName left empty, as the shipped graphs do
    assert op.format_name == driver
    assert op.outputs[0] == str(tmp_path / name)
    layer = "label_masks" if driver == "GPKG" else None
    assert pyogrio.read_info(str(tmp_path / name), layer=layer)["driver"] == driver
    count, fields, crs = read_back(tmp_path / name, layer)
    assert count == len(vectorize.polygonize(a, None, 4, exported_view(a) != 255)) and count > 10
    assert fields == ["class_id", "class_name", "area_m2", "area_km2"] and crs == UTM
    stem = name.rsplit(".", 1)[0]
    assert (tmp_path / f"{stem}.qml").is_file() and (tmp_path / f"{stem}_areas.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if ".gpkg" in p.name and driver != "GPKG"]


@pytest.mark.parametrize("name", ["labels.kml", "labels.csv", "labels.v1"])
def test_an_extension_no_format_has_is_refused_at_initialize(class_product, tmp_path, name):
    op = LabelMaskExport.create({"sourceProduct": class_product(blobs(16, 16, 1))}, {"file": str(tmp_path / name)},
                                node_id="lm")
    with pytest.raises(OperatorError) as e:
        op.initialize()
    msg = str(e.value)
    assert "\n" not in msg and "node 'lm'" in msg and f"'{name}'" in msg
    for ext in (".gpkg", ".shp", ".geojson", ".json", ".fgb"):
        assert ext in msg
    assert list(tmp_path.iterdir()) == []


def test_a_format_name_given_appends_its_extension_as_write_does(class_product, tmp_path, caplog):
    """SNAP's habit, which Write follows for rasters (out.dim + GeoTIFF -> out.dim.tif): the format named wins
    and its extension is appended; a warning says so when the name ends with another format's extension."""
    from snap_operators.ops.write import Write

    write = Write.create({}, {"file": str(tmp_path / "out.dim"), "formatName": "GeoTIFF"})
    assert write.output_path.name == "out.dim.tif"
    with caplog.at_level("WARNING", logger="snap_operators.ops.label_mask_export"):
        op = export(class_product(blobs(20, 20, 2), chunks=8), tmp_path / "x.shp", formatName="GPKG")
    assert op.outputs[0] == str(tmp_path / "x.shp.gpkg")
    assert read_back(tmp_path / "x.shp.gpkg", "label_masks")[0] > 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "formatName is GPKG but 'x.shp' has the extension of ESRI Shapefile" in warned[0]
    assert "x.shp.gpkg" in warned[0]


def test_field_names_fit_a_shapefile_and_survive_it(class_product, tmp_path):
    from snap_operators.ops.label_mask_export import FIELDS, change_schema
    from snap_operators.science.change import ChangeCoding

    assert all(len(f) <= 10 for f in FIELDS)  # dBase field names: at most 10 characters
    in_shapefile = change_schema(ChangeCoding(10, {})).in_format("ESRI Shapefile").fields
    assert in_shapefile[0] == "change_cod" and all(len(f) <= 10 for f in in_shapefile)  # said, not cut by GDAL
    export(class_product(blobs(20, 20, 3), chunks=8), tmp_path / "s.shp")
    assert read_back(tmp_path / "s.shp")[1] == list(FIELDS)


#: The shipped graphs that export label masks or change polygons.
SHIPPED = [p for p in sorted((ROOT / "graphs").glob("*.xml")) if "LabelMaskExport" in p.read_text()]


@pytest.mark.parametrize("graph", SHIPPED, ids=lambda p: p.name)
def test_shipped_graphs_take_the_vector_format_from_the_labels_name(class_product, graph, tmp_path):
    """The shipped graphs' defaults (vectorFormat empty, rasterFormat GeoTIFF) give the format the names ask for."""
    from snap_operators.engine.runner import load_graph

    io_vars = {"input": "a.tif", "inputS1": "b.tif", "before": "a.tif", "after": "b.tif", "model": "m.onnx",
               "output": str(tmp_path / "classes"), "labels": str(tmp_path / "labels.shp")}
    g = load_graph(graph, io_vars)
    write, masks = g.nodes["Write"].parameters, g.nodes["LabelMaskExport"].parameters
    assert write["formatName"] == "GeoTIFF" and not masks["formatName"]
    params = {k: v for k, v in masks.items() if k not in ("sourceBand", "minArea")}
    op = LabelMaskExport.create({"sourceProduct": class_product(blobs(20, 20, 4), chunks=8)}, params)
    op.execute()
    assert op.outputs[0] == str(tmp_path / "labels.shp") and (tmp_path / "labels.dbf").is_file()
    g = load_graph(graph, {**io_vars, "vectorFormat": "FlatGeobuf", "rasterFormat": "COG"})
    assert g.nodes["LabelMaskExport"].parameters["formatName"] == "FlatGeobuf"
    assert g.nodes["Write"].parameters["formatName"] == "COG"


def test_an_empty_file_exports_nothing_and_the_graph_runs(write_class_tiff, tmp_path, caplog, run_cli):
    """-Plabels= skips the label masks: the Write node still writes, one warning says why nothing else is."""
    graph = tmp_path / "g.xml"
    graph.write_text("""<graph id="g"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><file>${output}</file><formatName>GeoTIFF</formatName></parameters></node>
  <node id="Masks"><operator>LabelMaskExport</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><file>${labels}</file><formatName/><minArea>500</minArea></parameters></node>
</graph>""")
    src = write_class_tiff(tmp_path / "classes.tif", blobs(40, 40, 2, k=3))
    out = tmp_path / "out"
    out.mkdir()
    with caplog.at_level("WARNING", logger="snap_operators.ops.label_mask_export"):
        code, stdout, stderr = run_cli("run", graph, f"-Pinput={src}", f"-Poutput={out / 'c.tif'}", "-Plabels=")
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["c.tif", "c.tif.aux.xml"]  # the class map and its names
    said = [r.getMessage() for r in caplog.records if r.name == "snap_operators.ops.label_mask_export"]
    assert len(said) == 1 and "node 'Masks'" in said[0] and "'file' is empty: no vector export" in said[0]
    # Alone, too: nothing to write is no error.
    op = LabelMaskExport.create({"sourceProduct": Product("p", bands={})}, {"file": ""})
    op.execute()
    assert not op.is_sink and op.outputs == [] and op.output_files() == []


# --- change polygons -------------------------------------------------------------------------------


def change_product(before, after, chunks=16):
    """ChangeDetection of two class maps (LAND_COVER) on T_UTM: its target product."""
    from snap_operators.ops.change_detection import ChangeDetectionOp

    def classes(name, a):
        band = Band("class_id", da.from_array(a, chunks=chunks), T_UTM, no_data=255, classes=list(LAND_COVER))
        return Product(name, bands={"class_id": band}, crs=UTM)

    op = ChangeDetectionOp({"before": classes("t0", before), "after": classes("t1", after)}, {})
    return op.initialize()


def two_dates():
    """Before: blobs of classes 1..5; after: three painted changes (trees cut, a flood, a new town)."""
    before = blobs(60, 64, 11)
    after = before.copy()
    after[5:25, 5:30] = 2
    after[40:55, 10:60] = 1
    after[30:38, 40:52] = 4
    return before, after


@pytest.mark.parametrize("name", ["change.gpkg", "change.shp"])
def test_change_band_exports_change_polygons_named_for_changes(tmp_path, name):
    from snap_operators.ops.label_mask_export import CHANGE_FIELDS
    from snap_operators.science import change

    before, after = two_dates()
    codes = change.change_codes(before, after, [0, 1, 2, 3, 4, 5])
    op = export(change_product(before, after), tmp_path / name, sourceBand="change")
    layer = "change" if name.endswith(".gpkg") else None
    feats, crs, schema = features(tmp_path / name, layer)
    code = "change_code" if layer else "change_cod"  # a Shapefile keeps 10 characters of a field name
    assert list(schema) == [code if f == "change_code" else f for f in CHANGE_FIELDS]
    assert CHANGE_FIELDS[0] == "change_code" and CRS.from_user_input(crs) == UTM
    if layer:
        import pyogrio

        assert [lyr for lyr, _ in pyogrio.list_layers(str(tmp_path / name))][:1] == ["change"]
    names = {c.value: c.name for c in LAND_COVER}
    for p, _ in feats:
        assert p[code] == p["from_class"] * 10 + p["to_class"] and p["from_class"] != p["to_class"]
        assert p["from_name"] == names[p["from_class"]] and p["to_name"] == names[p["to_class"]]
    assert {p[code] for p, _ in feats} == set(np.unique(codes).tolist()) - {0}  # no "No change" polygons
    np.testing.assert_array_equal(burn([({"class_id": p[code]}, g) for p, g in feats], codes.shape, T_UTM),
                                  np.where(codes == 0, 255, codes))
    with open(tmp_path / name.replace(name[name.index("."):], "_areas.csv"), newline="") as f:
        reader = csv.DictReader(f)
        rows = {int(r["change_code"]): r for r in reader}
        assert reader.fieldnames == ["change_code", "from_class", "from_name", "to_class", "to_name", "regions",
                                     "vector_area_m2", "vector_area_km2"]
    assert len(rows) == 6 * 5  # every transition of the legend, absent ones with zeros
    for code, r in rows.items():
        assert (int(r["from_class"]), int(r["to_class"])) == divmod(code, 10)
        assert float(r["vector_area_m2"]) == pytest.approx(100.0 * (codes == code).sum())
    assert op.layer_name == "change"


def test_change_polygons_have_a_distinct_colour_per_transition(tmp_path):
    before, after = two_dates()
    after[0:3, :] = 0  # some to Unclassified: a grey family
    product = change_product(before, after)
    export(product, tmp_path / "c.gpkg", sourceBand="change")
    renderer = DET.parse(tmp_path / "c.qml").getroot().find("renderer-v2")
    assert renderer.get("attr") == "change_code"
    colors = {s.get("name"): s.find("layer/Option/Option[@name='color']").get("value") for s in renderer.find("symbols")}
    by_code = {int(c.get("value")): colors[c.get("symbol")] for c in renderer.find("categories")}
    present = {p["change_code"] for p, _ in features(tmp_path / "c.gpkg", "change")[0]}
    assert len(present) >= 8 and present <= set(by_code)
    assert len({by_code[v] for v in present}) == len(present)
    assert len(set(by_code.values())) == len(by_code) == 30  # every transition of the legend, too
    legend = {c.value: c.color for c in product.band("change").classes}
    assert all(by_code[v] == ",".join(map(str, legend[v])) + ",255" for v in by_code)  # the raster's colours


def test_a_change_map_read_back_from_geotiff_is_still_exported_as_changes(tmp_path):
    """The change band is known by the product type GeoTIFF keeps, not by a graph parameter."""
    from snap_operators.io import open_product
    from snap_operators.ops.write import Write

    before, after = two_dates()
    Write({"sourceProduct": change_product(before, after)}, {"file": str(tmp_path / "c.tif"),
                                                             "formatName": "GeoTIFF"}).execute()
    export(open_product(tmp_path / "c.tif"), tmp_path / "read.fgb", sourceBand="change")
    export(change_product(before, after), tmp_path / "graph.fgb", sourceBand="change")

    def rows(path):
        feats, _, schema = features(path)
        assert list(schema)[:5] == ["change_code", "from_class", "from_name", "to_class", "to_name"]
        return sorted((*(p[k] for k in list(schema)[:5]), round(p["area_m2"], 6)) for p, _ in feats)

    assert rows(tmp_path / "read.fgb") == rows(tmp_path / "graph.fgb") and len(rows(tmp_path / "graph.fgb")) > 5


def test_no_change_regions_on_request_have_null_from_and_to(tmp_path):
    before, after = two_dates()
    export(change_product(before, after), tmp_path / "n.gpkg", sourceBand="change", includeUnclassified=True)
    feats, _, _ = features(tmp_path / "n.gpkg", "change")
    same = [p for p, _ in feats if p["change_code"] == 0]
    assert same and all(p["from_class"] is None and p["to_name"] is None for p in same)
