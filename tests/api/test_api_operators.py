"""The operator functions of snap_operators.api: parameters, kinds in and out, outputs, errors."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from affine import Affine
from rasterio.crs import CRS

from snap_operators import api
from snap_operators.core.errors import OperatorError, ParameterError, ProductWriteError
from snap_operators.core.legend import LAND_COVER, MASKED_INFO, UNCLASSIFIED_INFO
from snap_operators.core.product import Band, Product

pytest.importorskip("xarray")
pytest.importorskip("rioxarray")


def test_parameters_by_snap_name_or_in_snake_case(scene):
    ds = api.to_xarray(api.open_product(scene["s2"]))
    snap = api.spectral_indices(ds, ["NDVI", "SAVI"], saviL=0.3, copySourceBands=True)
    snake = api.spectral_indices(ds, "NDVI,SAVI", savi_l=0.3, copy_source_bands=True)
    assert list(snap.data_vars) == list(snake.data_vars) == [*ds.data_vars, "NDVI", "SAVI"]
    np.testing.assert_array_equal(snap.SAVI.values, snake.SAVI.values)
    with pytest.raises(ParameterError, match=r"SpectralIndices: unknown parameter 'savil'; did you mean 'saviL'\?"):
        api.spectral_indices(ds, ["SAVI"], savil=0.3)
    with pytest.raises(ParameterError, match="'saviL' given twice"):
        api.spectral_indices(ds, ["SAVI"], saviL=0.3, savi_l=0.4)
    with pytest.raises(ParameterError, match="saviL.*outside"):  # the operator's own validation
        api.spectral_indices(ds, ["SAVI"], saviL=3)


def test_a_product_gives_a_product_and_a_dataset_a_dataset(scene):
    product = api.open_product(scene["s2"])
    as_product = api.spectral_indices(product, ["NDVI"])
    as_dataset = api.spectral_indices(api.to_xarray(product), ["NDVI"])
    assert isinstance(as_product, Product) and as_product.band_names == ["NDVI"]
    assert list(as_dataset.data_vars) == ["NDVI"] and as_dataset.NDVI.attrs["description"].startswith("NDVI = ")
    np.testing.assert_array_equal(as_product.band("NDVI").data.compute(), as_dataset.NDVI.values)


def test_operator_errors_are_one_line_and_name_the_operator(scene):
    ds = api.to_xarray(api.open_product(scene["s2"], band_names=["B2", "B3"]))
    with pytest.raises(OperatorError, match=r"^SpectralIndices: .*NDVI needs B8, B4; missing: B4") as e:
        api.spectral_indices(ds, ["NDVI"])
    assert "\n" not in str(e.value)
    with pytest.raises(ParameterError, match=r"area_table\(classes, path\)"):
        api.progressive_classify(ds, areaTableFile="areas.csv")


def _classes(crs=CRS.from_epsg(32638), transform=Affine(10, 0, 300000, 0, -10, 4030000)) -> Product:
    # 8 x 8 pixel blocks: regions large enough for a sieve's halo
    values = np.kron(np.array([[1, 1, 2, 254], [3, 3, 3, 255], [0, 5, 5, 5]], np.uint8), np.ones((8, 8), np.uint8))
    p = Product("cls", crs=crs)
    p.add_band(Band("class_id", da.from_array(values, chunks=16), transform, 255,
                    classes=[UNCLASSIFIED_INFO, *LAND_COVER, MASKED_INFO]))
    return p


def test_area_table_counts_every_pixel_with_the_masked_row_apart(tmp_path):
    table = api.area_table(api.to_xarray(_classes()), tmp_path / "areas.csv")
    assert list(table.columns) == ["class_id", "class_name", "pixels", "raster_area_km2"]
    rows = {("Total" if r.class_name == "Total" else int(r.class_id)): r for r in table.itertuples()}
    assert [rows[k].pixels for k in (0, 1, 2, 3, 4, 5)] == [64, 128, 64, 192, 0, 192]
    assert rows["Total"].pixels == 640 and rows[254].pixels == 64 and 255 not in rows
    assert rows[3].raster_area_km2 == pytest.approx(192 * 100 / 1e6)
    assert (tmp_path / "areas.csv").read_text().splitlines()[0] == "class_id,class_name,pixels,raster_area_km2"
    with pytest.raises(ProductWriteError, match="already exists; pass overwrite=True to replace it"):
        api.area_table(_classes(), tmp_path / "areas.csv")
    api.area_table(_classes(), tmp_path / "areas.csv", overwrite=True)
    # degrees: every row with its own pixel area, the same counts
    geo = api.area_table(_classes(CRS.from_epsg(4326), Affine(1e-4, 0, 44.0, 0, -1e-4, 36.0)))
    assert geo.pixels.tolist() == table.pixels.tolist() and geo.raster_area_km2[1] != table.raster_area_km2[1]


def test_label_masks_write_files_and_refuse_to_replace_them_unless_told(tmp_path):
    classes = api.to_xarray(_classes())
    written = api.label_masks(classes, tmp_path / "labels.geojson")
    assert written == [tmp_path / "labels.geojson", tmp_path / "labels.qml", tmp_path / "labels_areas.csv"]
    assert all(p.is_file() for p in written)
    with pytest.raises(ProductWriteError, match="already exists; pass overwrite=True") as e:
        api.label_masks(classes, tmp_path / "labels.geojson")
    assert "--overwrite" not in str(e.value)
    assert api.label_masks(classes, tmp_path / "labels.geojson", overwrite=True, min_area=250) == written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staged leftovers


def test_a_multi_size_product_is_resampled_before_it_becomes_a_dataset(make_product):
    p = make_product({"B2": np.full((40, 40), 0.1, np.float32)})
    p.add_band(Band("B11", da.full((20, 20), 0.3, dtype=np.float32, chunks=16),
                    Affine(20.0, 0.0, 500000.0, 0.0, -20.0, 5800000.0), float("nan")))
    with pytest.raises(OperatorError, match="resample"):
        api.to_xarray(p)
    one_grid = api.resample(p, reference_band="B2", upsampling="Bilinear")
    assert isinstance(one_grid, Product) and not one_grid.is_multi_size
    ds = api.to_xarray(one_grid)
    assert ds.B11.shape == (40, 40) and ds.rio.transform() == p.band("B2").transform


def _later() -> Product:
    """`_classes` some years on: the trees (3) of the middle left block became bare soil (2), a cloud (254)
    moved onto the water (1)."""
    p = _classes()
    values = p.band("class_id").data.compute().copy()
    values[8:16, 0:8] = 2
    values[0:8, 24:32] = 1  # masked before: not compared
    values[0:8, 8:16] = 254
    p.band("class_id").data = da.from_array(values, chunks=16)
    return p


def test_change_tables_count_what_the_change_band_codes_and_write_the_graphs_tables(tmp_path, capsys):
    before, after = api.to_xarray(_classes()), api.to_xarray(_later())
    moved = api.change_detection(before, after)
    assert list(moved.data_vars) == ["change"] and moved.change.dtype == np.uint8
    codes = moved.change.values
    assert (codes[8:16, 0:8] == 32).all() and (codes[0:8, 8:16] == 255).all() and (codes[0:8, 0:8] == 0).all()
    matrix, gain_loss = api.change_tables(before, after, matrix_path=tmp_path / "m.csv",
                                          gain_loss_path=tmp_path / "g.csv")
    assert list(matrix.columns) == ["from_class_id", "from_class_name", "to_class_id", "to_class_name",
                                    "change_code", "pixels", "area_km2"]
    legend = matrix.dropna(subset=["change_code"])
    assert len(legend) == 36  # 0 and the five classes, every pair
    for code in np.unique(codes[codes != 255]):  # what the band codes is what the matrix counts
        counted = legend[legend.change_code == code].pixels.sum() if code else legend[legend.from_class_id
                                                                                        == legend.to_class_id].pixels.sum()
        assert counted == (codes == code).sum(), code
    masked = matrix[matrix.to_class_name == "Masked (not observed)"]
    assert masked.pixels.sum() == 64  # the water hidden after
    total = gain_loss[gain_loss.class_name == "Total"].iloc[0]
    assert total.class_id is pd.NA and total.gain_pixels == total.loss_pixels == 64
    trees = gain_loss[gain_loss.class_id == 3].iloc[0]
    assert (trees.loss_pixels, trees.net_pixels) == (64, -64) and trees.loss_km2 == pytest.approx(64 * 100 / 1e6)
    # the files are the graph's tables, and the frames their rows
    written = pd.read_csv(tmp_path / "g.csv")
    assert written.gain_pixels.tolist() == gain_loss.gain_pixels.tolist()
    np.testing.assert_allclose(written.net_km2, gain_loss.net_km2, atol=5e-7)
    assert len(pd.read_csv(tmp_path / "m.csv")) == len(matrix)
    assert "Transition matrix" not in capsys.readouterr().out  # returned, not printed as gpt prints them
    with pytest.raises(ProductWriteError, match="already exists; pass overwrite=True"):
        api.change_tables(before, after, matrix_path=tmp_path / "m.csv")
    with pytest.raises(ParameterError, match="the table file is the argument 'matrix_path', not 'matrixFile'"):
        api.change_tables(before, after, matrixFile=str(tmp_path / "x.csv"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_change_tables_warn_when_clouds_hide_most_of_the_comparison(caplog):
    before = _classes()
    cloudy = _classes()
    values = cloudy.band("class_id").data.compute().copy()
    values[values != 255] = 254
    cloudy.band("class_id").data = da.from_array(values, chunks=16)
    matrix, gain_loss = api.change_tables(before, cloudy)
    assert gain_loss.before_pixels.iloc[-1] == 0
    assert "compare clearer dates" in caplog.text and "(704 of 704)" in caplog.text
    caplog.clear()
    api.change_tables(before, _later())
    assert "compare clearer dates" not in caplog.text
