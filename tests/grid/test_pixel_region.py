"""One pixel-region parser (grid.region.parse_pixel_region) for Read's pixelRegion and Subset's region.

SNAP reads both with ``RectangleConverter`` (four comma-separated integers,
trimmed, empty items skipped by its StringTokenizer) and the two operators
differ only on an empty rectangle: ``SubsetOp`` takes it for no region (the
whole scene), ``ReadOp``'s ``PixelSubsetRegion`` refuses it. The engine once
had two parsers that also disagreed on decimals ("1.0"), on a negative
width and on empty items.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from snap_operators.core.errors import ParameterError, ProductReadError
from snap_operators.core.context import ExecutionContext
from snap_operators.core.product import Band, Product
from snap_operators.grid.region import parse_pixel_region
from snap_operators.io import open_product
from snap_operators.ops.read import Read
from snap_operators.ops.subset import SubsetOp

UTM = CRS.from_epsg(32633)
T10 = Affine(10, 0, 330000.0, 0, -10, 5822040.0)
A = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)


@pytest.mark.parametrize("text, expected", [
    ("3,4,10,6", (3, 4, 10, 6)),
    (" 3 , 4,10 ,6 ", (3, 4, 10, 6)),  # items trimmed
    ("+3,4,10,6", (3, 4, 10, 6)),  # Integer.parseInt takes a sign
    ("3,,4,10,6,", (3, 4, 10, 6)),  # a StringTokenizer skips empty items
    ((3, 4, np.int64(10), 6), (3, 4, 10, 6)),
    (None, None),
    ("  ", None),
])
def test_parse(text, expected):
    assert parse_pixel_region(text) == expected


@pytest.mark.parametrize("text, message", [
    ("1,2,3", "is not 'x,y,width,height' (four integers)"),
    ("a,b,c,d", "is not 'x,y,width,height' (four integers)"),
    ("1.0,2,3,4", "is not 'x,y,width,height' (four integers)"),  # parseInt has no decimals
    ((1.0, 2, 3, 4), "is not 'x,y,width,height' (four integers)"),
    ("1,2,3,4,5", "is not 'x,y,width,height' (four integers)"),
    ("-1,0,5,5", "has a negative x or y"),  # PixelSubsetRegion refuses it, in Read and in Subset
    ("0,-1,5,5", "has a negative x or y"),
])
def test_malformed_is_refused_in_one_line(text, message):
    with pytest.raises(ParameterError) as err:
        parse_pixel_region(text, "region")
    assert str(err.value).startswith("region '") and str(err.value).endswith(message)
    with pytest.raises(ProductReadError, match="negative|four integers"):
        parse_pixel_region(text, error=ProductReadError)


@pytest.mark.parametrize("text", ["0,0,0,5", "5,5,5,0", "0,0,-3,4", "0,0,0,0"])
def test_empty_rectangle_is_the_whole_scene_for_subset_and_an_error_for_read(text):
    assert parse_pixel_region(text, "region", empty="scene") is None
    with pytest.raises(ParameterError, match=r"is empty: width and height > 0 are needed"):
        parse_pixel_region(text, "pixelRegion")


# --- the two operators use it ------------------------------------------------------------------


def source() -> Product:
    return Product("S2", crs=UTM, bands={"B2": Band("B2", da.from_array(A, chunks=8), T10)})


def subset(region: str) -> Product:
    return SubsetOp.create({"sourceProduct": source()}, {"region": region}, context=ExecutionContext()).initialize()


@pytest.fixture
def tif(tmp_path):
    path = tmp_path / "s.tif"
    with rasterio.open(path, "w", driver="GTiff", width=30, height=20, count=1, dtype="float32", crs=UTM,
                       transform=T10) as dst:
        dst.write(A, 1)
        dst.set_band_description(1, "B2")
    return path


def read(path, region: str) -> Product:
    params = {"file": str(path), "pixelRegion": region, "useAdvancedOptions": "true"}
    return Read.create(None, params, context=ExecutionContext(), node_id="r").initialize()


@pytest.mark.parametrize("region, rows, cols", [
    ("3,4,10,6", slice(4, 10), slice(3, 13)),
    ("+3, 4 ,10,6,", slice(4, 10), slice(3, 13)),
    ("25,15,100,100", slice(15, 20), slice(25, 30)),  # clipped at the scene's edge
])
def test_read_and_subset_select_the_same_pixels(tif, region, rows, cols):
    for product in (read(tif, region), subset(region)):
        np.testing.assert_array_equal(product.band("B2").data.compute(), A[rows, cols])
    assert open_product(tif, pixel_region=region).band("B2").shape == A[rows, cols].shape


def test_read_and_subset_refuse_the_same_way(tif):
    for text in ("1.5,2,3,4", "-1,0,5,5"):
        with pytest.raises(ParameterError) as by_subset:
            subset(text)
        with pytest.raises(ParameterError) as by_read:
            read(tif, text)
        subset_says, read_says = str(by_subset.value), str(by_read.value)
        assert subset_says.startswith(f"Subset: region '{text}' ")
        assert read_says.startswith(f"Read (node 'r'): pixelRegion '{text}' ")
        assert subset_says.removeprefix("Subset: region") == read_says.removeprefix("Read (node 'r'): pixelRegion")


def test_empty_region_differs_as_in_snap(tif):
    assert subset("5,5,0,4").band("B2").shape == (20, 30)  # SubsetOp: no region, the whole scene
    assert subset("5,5,-2,4").band("B2").shape == (20, 30)  # an empty java.awt.Rectangle too
    with pytest.raises(ParameterError, match=r"^Read \(node 'r'\): pixelRegion '5,5,0,4' is empty"):
        read(tif, "5,5,0,4")  # ReadOp: PixelSubsetRegion refuses it
