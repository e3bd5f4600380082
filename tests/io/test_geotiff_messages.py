"""GeoTIFF inputs that are damaged or unnamed: errors say what is wrong with the file, and how to fix it."""

import numpy as np
import pytest
import rasterio

from snap_operators.core.errors import OperatorError, ProductReadError
from snap_operators.io import open_product
from snap_operators.io.raster_bands import lazy_band_array


def _write(path, count=3, tiled=True, descriptions=None):
    profile = dict(driver="GTiff", width=64, height=64, count=count, dtype="uint16", crs="EPSG:32633",
                   transform=rasterio.Affine(10, 0, 500000, 0, -10, 4000000))
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as ds:
        for i, d in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, d)  # before the pixels: GDAL keeps the directory at the start
        ds.write(rng.integers(0, 10000, (count, 64, 64), dtype=np.uint16))
    return path


def test_band_lookup_on_unnamed_bands_says_how_to_name_them(tmp_path):
    prod = open_product(_write(tmp_path / "x.tif"))
    assert prod.band_names == ["band_1", "band_2", "band_3"]
    with pytest.raises(OperatorError) as err:
        prod.band("B2")
    text = str(err.value)
    assert "no band 'B2'" in text and "have no names: a GeoTIFF without band descriptions" in text
    assert f"rio edit-info --bidx 1 --description B2 {tmp_path / 'x.tif'}" in text
    named = open_product(_write(tmp_path / "n.tif", descriptions=["B2", "B3", "B4"]))
    assert named.bands_listed() == "B2, B3, B4"  # named bands: the plain list
    # a product merged from a named and an unnamed file (Sentinel-1 VV.tif collocated): the unnamed one
    named.add_band(prod.band("band_1"))
    assert named.bands_listed().startswith("B2, B3, B4, band_1 (band_1: no name, from a GeoTIFF without band "
                                           "descriptions; name it in its file: rio edit-info")


@pytest.mark.parametrize("tiled", [True, False])
def test_truncated_geotiff_is_refused_when_opened(tmp_path, tiled):
    path = _write(tmp_path / "t.tif", tiled=tiled, descriptions=["B2", "B3", "B4"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy
    with pytest.raises(ProductReadError, match=r"t.tif is truncated or damaged \(\d+ bytes; its last block cannot be "
                                               r"read: .*\): copy or download it again"):
        open_product(path)


def test_truncated_geotiff_without_its_directory_says_so(tmp_path):
    path = _write(tmp_path / "d.tif")
    with rasterio.open(path, "r+") as ds:
        ds.set_band_description(1, "B2")  # written after the pixels: GDAL moves the directory to the end
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    # GDAL opens it, only warning that tags are ignored: the bands would read as band_1... without georeferencing
    with pytest.raises(ProductReadError, match=r"d.tif is truncated or damaged \(GDAL: .*IO error during reading of .*\): "
                                               r"its band names and georeferencing cannot be read"):
        open_product(path)


def test_read_error_names_the_band(tmp_path):
    path = _write(tmp_path / "r.tif", descriptions=["B2", "B3", "B11"])
    array = lazy_band_array(str(path), 3, (64, 64), "uint16", tile_size=32, name="B11")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ProductReadError, match=r"cannot read band B11 \(band 3 of the file\) of .*r.tif, rows 32..64, "
                                               r"cols 32..64: .*the file is truncated or damaged"):
        array[32:, 32:].compute()


def test_band_files_opened_from_many_threads_leave_the_warning_filters_as_they_were(tmp_path):
    """The engine's threads open band files at once; warnings.catch_warnings raced between them,
    leaving an "ignore" filter behind for the whole process and a NotGeoreferencedWarning shown."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from snap_operators.io import raster_bands

    paths = []
    for i in range(16):  # no geotransform: the warning the open holds back
        paths.append(str(tmp_path / f"b{i}.tif"))
        with pytest.warns(rasterio.errors.NotGeoreferencedWarning), \
                rasterio.open(paths[-1], "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as ds:
            ds.write(np.zeros((1, 4, 4), "uint8"))

    def open_and_close(_):
        for _ in range(5):
            for p in paths:
                raster_bands.open_dataset(p)
            for p in paths:
                raster_bands._forget(p)

    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        inside = list(warnings.filters)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(open_and_close, range(8)))
        assert warnings.filters == inside
    assert warnings.filters == before
    assert not [w for w in shown if issubclass(w.category, rasterio.errors.NotGeoreferencedWarning)]


def test_a_georeferenced_file_opens_without_waiting_on_the_quiet_open_lock(tmp_path):
    """Only a file that may warn needs the serialised filter swap: a remote band file must not wait
    on another thread's open once it is known to be georeferenced."""
    from concurrent.futures import ThreadPoolExecutor, wait

    from rasterio.transform import from_origin

    from snap_operators.io import raster_bands

    geo, bare = str(tmp_path / "geo.tif"), str(tmp_path / "bare.tif")
    with rasterio.open(geo, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 5000000, 10, 10)) as ds:
        ds.write(np.zeros((1, 4, 4), "uint8"))
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), \
            rasterio.open(bare, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as ds:
        ds.write(np.zeros((1, 4, 4), "uint8"))
    for path in (geo, bare):
        raster_bands.open_quietly(path).close()
    assert geo in raster_bands._GEOREFERENCED and bare not in raster_bands._GEOREFERENCED
    with ThreadPoolExecutor(1) as pool:
        with raster_bands._QUIET_OPEN:  # as if another thread were opening a file that may warn
            opening = pool.submit(raster_bands.open_quietly, geo)
            wait([opening], timeout=10)
            opened = opening.done()
        opening.result().close()
    assert opened
