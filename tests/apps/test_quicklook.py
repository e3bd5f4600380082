"""`snap-pc quicklook`: class maps with a legend, continuous bands with a colour bar, map axes, clean refusals."""

import json
import time
import warnings

import numpy as np
import pytest
from affine import Affine
from matplotlib.text import Text

from snap_operators.apps.quicklook import (
    MAX_EDGE,
    format_length,
    metres_per_degree,
    nice_length,
    quicklook_figure,
    read_raster,
)

#: 10 m pixels on UTM 33N (the write_tif default); a 400 x 300 raster spans 4 x 3 km.
T10 = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5800000.0)


@pytest.fixture(autouse=True)
def close_figures():
    """Figures the tests inspect are not saved, so nothing else closes them."""
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def ndvi(rows=300, cols=400, seed=0):
    """Float32 NDVI-like values, every one distinct, some negative."""
    return np.random.default_rng(seed).uniform(-0.3, 0.9, (rows, cols)).astype("float32")


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def map_axes(fig):
    return fig.axes[0]


# --- continuous bands ---------------------------------------------------------------------------


def test_float_band_gets_a_stretched_ramp_and_a_colour_bar_not_a_legend(write_tif, tmp_path):
    data = ndvi()
    data[:30, :40] = np.nan
    fig = quicklook_figure(write_tif(tmp_path / "ndvi.tif", [data], nodata=np.nan))
    ax = map_axes(fig)
    assert ax.get_legend() is None
    assert len(fig.axes) == 2  # the map and its colour bar
    image = ax.get_images()[0]
    assert image.get_cmap().name == "RdYlGn"  # index-like: values in [-1, 1], some negative
    valid = data[np.isfinite(data)]
    assert image.get_clim() == pytest.approx(tuple(np.percentile(valid, [2, 98])), abs=0.01)
    shown = image.get_array()
    assert np.ma.getmaskarray(shown)[:30, :40].all() and not np.ma.getmaskarray(shown)[30:, 40:].any()


def test_declared_nodata_is_transparent_and_out_of_the_stretch(write_tif, tmp_path):
    data = np.random.default_rng(1).uniform(0.0, 0.5, (200, 300)).astype("float32")
    data[:50] = -9999
    fig = quicklook_figure(write_tif(tmp_path / "b4.tif", [data], nodata=-9999))
    image = map_axes(fig).get_images()[0]
    lo, hi = image.get_clim()
    assert 0.0 <= lo < 0.05 and 0.45 < hi <= 0.5  # -9999 would drag the low end down
    assert image.get_cmap().name == "viridis"  # reflectance: no negative value, no index name
    assert np.ma.getmaskarray(image.get_array())[:50].all()


def test_index_named_band_in_unit_range_gets_the_index_ramp(write_tif, tmp_path):
    data = np.random.default_rng(2).uniform(0.2, 0.8, (50, 60)).astype("float32")  # a forest: no negative NDVI
    fig = quicklook_figure(write_tif(tmp_path / "crop.tif", {"NDVI": data}))
    assert map_axes(fig).get_images()[0].get_cmap().name == "RdYlGn"


def test_integer_band_with_many_values_and_no_classes_is_continuous(write_tif, tmp_path):
    dn = np.random.default_rng(3).integers(1, 10000, (120, 160)).astype("uint16")
    fig = quicklook_figure(write_tif(tmp_path / "dn.tif", [dn], nodata=0))
    ax = map_axes(fig)
    assert ax.get_legend() is None and len(fig.axes) == 2
    assert ax.get_images()[0].get_cmap().name == "viridis"


# --- class maps ---------------------------------------------------------------------------------


def legend_labels(fig) -> list[str]:
    legend = map_axes(fig).get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_class_map_with_names_keeps_its_legend(write_tif, tmp_path):
    classes = np.random.default_rng(4).integers(0, 4, (60, 80)).astype("uint8")
    classes[:5] = 255
    names = {"1": "Lake", "2": "Field", "3": "Wood"}
    path = write_tif(tmp_path / "c.tif", [classes], nodata=255, band_tags={1: {"CLASS_NAMES": json.dumps(names)}})
    fig = quicklook_figure(path)
    assert legend_labels(fig) == ["0 Unclassified", "1 Lake", "2 Field", "3 Wood"]
    assert len(fig.axes) == 1  # no colour bar


def test_colour_map_makes_a_class_map_even_with_many_classes(write_tif, tmp_path):
    classes = (np.arange(60 * 80).reshape(60, 80) % 40).astype("uint8")  # 40 > MAX_CLASSES
    colormap = {v: (v * 6, 255 - v * 6, 100, 255) for v in range(40)}
    fig = quicklook_figure(write_tif(tmp_path / "c.tif", [classes], colormap=colormap))
    assert len(legend_labels(fig)) == 40
    fig = quicklook_figure(write_tif(tmp_path / "plain.tif", [classes]))  # the same values, no colour map
    assert map_axes(fig).get_legend() is None and len(fig.axes) == 2


def test_integer_band_with_few_values_is_a_class_map(write_tif, tmp_path):
    classes = np.repeat(np.array([[1, 3, 5]], "uint8"), 30, axis=0).repeat(10, axis=1)
    fig = quicklook_figure(write_tif(tmp_path / "c.tif", [classes]))
    assert legend_labels(fig) == ["1 Water", "3 Trees/Shrubbery vegetation", "5 Alluvium/Clay Silts sediments/roof"]


# --- coordinates and scale bar ------------------------------------------------------------------


def test_projected_map_has_eastings_northings_and_a_scale_bar(write_tif, tmp_path):
    fig = quicklook_figure(write_tif(tmp_path / "ndvi.tif", [ndvi()], nodata=np.nan))
    ax = map_axes(fig)
    assert ax.get_xlim() == pytest.approx((500000, 504000)) and ax.get_ylim() == pytest.approx((5797000, 5800000))
    assert ax.get_xlabel() == "easting (m), EPSG:32633" and ax.get_ylabel() == "northing (m)"
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert ticks and all(t.isdigit() and 5797000 <= int(t) <= 5800000 for t in ticks)  # plain metres
    assert ax.yaxis.get_offset_text().get_text() == ""  # no "1e6" or "+5.797e6"
    assert "500 m" in texts(fig)  # 4 km wide: a fifth is 800 m, rounded down to 500 m


def test_geographic_map_has_degrees_and_a_scale_bar_true_at_its_latitude(write_tif, tmp_path):
    data = np.random.default_rng(5).uniform(0, 1, (200, 300)).astype("float32")
    transform = Affine(0.0005, 0.0, 13.0, 0.0, -0.0005, 60.1)  # 0.15 deg wide around 60.05 N
    fig = quicklook_figure(write_tif(tmp_path / "geo.tif", [data], crs="EPSG:4326", transform=transform))
    ax = map_axes(fig)
    assert ax.get_xlabel() == "longitude (°), EPSG:4326" and ax.get_ylabel() == "latitude (°)"
    fig.canvas.draw()
    assert all(t.get_text().endswith("°") for t in ax.get_xticklabels() if t.get_text())
    # 0.15 deg is 8.4 km at 60 N (16.7 km at the equator: 2 km would be drawn)
    assert "1 km" in texts(fig)
    per_lon, per_lat = metres_per_degree(60.05)
    assert ax.get_aspect() == pytest.approx(per_lat / per_lon)  # a degree of longitude is shorter


def test_grid_without_coordinates_is_drawn_in_pixels_without_scale_bar(tmp_path):
    import rasterio

    path = tmp_path / "raw.tif"
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):  # writing it; reading it is no news
        with rasterio.open(path, "w", driver="GTiff", width=60, height=50, count=1, dtype="float32") as ds:
            ds.write(np.random.default_rng(6).uniform(0, 1, (50, 60)).astype("float32"), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", rasterio.errors.NotGeoreferencedWarning)
        fig = quicklook_figure(path)
    ax = map_axes(fig)
    assert ax.get_xlabel() == "column (px)" and ax.get_ylabel() == "row (px)"
    assert not [t for t in texts(fig) if t.endswith(" m") or t.endswith(" km")]


@pytest.mark.parametrize("limit, length", [(2345.0, 2000.0), (1000.0, 1000.0), (999.0, 500.0), (0.3, 0.2),
                                           (75000.0, 50000.0), (7.0, 5.0)])
def test_scale_bar_lengths_are_round(limit, length):
    assert nice_length(limit) == pytest.approx(length)


def test_scale_bar_labels_and_degree_lengths():
    assert [format_length(m) for m in (0.5, 500.0, 1000.0, 1500.0, 20000.0)] == ["0.5 m", "500 m", "1 km",
                                                                                 "1.5 km", "20 km"]
    assert metres_per_degree(0.0)[0] == pytest.approx(111319.5, abs=1)
    assert metres_per_degree(60.0)[0] == pytest.approx(55800, rel=2e-3)  # half the equator's


# --- the command --------------------------------------------------------------------------------


def test_read_is_decimated(write_tif, tmp_path):
    data = np.zeros((100, 2500), "float32")
    raster = read_raster(write_tif(tmp_path / "strip.tif", [data]))
    assert max(raster.data.shape) <= MAX_EDGE and raster.size == (2500, 100)


@pytest.mark.timeout(120)
def test_large_float_raster_is_quick(write_tif, run_cli, tmp_path):
    # every value distinct: the old legend loop went over each of 1.4 million values, for every pixel
    data = ndvi(1600, 1600, seed=7)
    tif = write_tif(tmp_path / "ndvi.tif", [data], nodata=np.nan, tiled=True)
    started = time.perf_counter()
    code, out, err = run_cli("quicklook", tif, tmp_path / "ndvi.png")
    assert code == 0, err
    assert time.perf_counter() - started < 60
    assert out.strip() == f"wrote {tmp_path / 'ndvi.png'}" and err == ""
    assert (tmp_path / "ndvi.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


READ_WRITE = """<graph id="g"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><file>${output}</file><formatName>GeoTIFF</formatName></parameters></node>
</graph>"""


def test_missing_output_folder_is_one_clean_line_as_in_run(write_tif, run_cli, one_line_error, files_in, tmp_path,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative outputs: both commands name the folder as an absolute path
    write_tif(tmp_path / "ndvi.tif", [ndvi(30, 40)], nodata=np.nan)
    (tmp_path / "g.xml").write_text(READ_WRITE)
    code, _, err = run_cli("run", "g.xml", "-Pinput=ndvi.tif", "-Poutput=nofolder/x.tif")
    assert code == 1
    expected = one_line_error(err)
    assert expected == f"Error: output folder '{tmp_path / 'nofolder'}' does not exist"
    code, out, err = run_cli("quicklook", "ndvi.tif", "nofolder/q.png")
    assert code != 0 and out == ""
    assert one_line_error(err) == expected  # no staged name (.q.png.part...), no warnings
    assert files_in(tmp_path) == ["g.xml", "ndvi.tif"]


def test_help_describes_both_renderings(capsys):
    from snap_operators.apps.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["quicklook", "-h"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "legend" in text and "colour bar" in text and "scale bar" in text and "2-98 percentile" in text


@pytest.mark.parametrize("column", ["raster_area_km2", "area_km2"])
def test_area_chart_reads_both_area_tables(tmp_path, column, monkeypatch):
    import snap_operators.apps.quicklook as quicklook

    bars = []
    monkeypatch.setattr(quicklook, "save_figure", lambda fig, path: bars.append(
        [round(p.get_width(), 3) for p in fig.axes[0].patches]))
    # the classifier's table (raster_area_km2) and LabelMaskExport's (area_km2)
    rows = [{"class_id": "1", "class_name": "Water", column: "0.25"}, {"class_id": "3", "class_name": "Trees",
                                                                     column: "1.5"}]
    quicklook.write_area_chart(rows, tmp_path / "areas.png")
    assert bars == [[0.25, 1.5]]
