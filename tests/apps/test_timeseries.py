"""snap-pc timeseries: dates, class areas per date, invalid dates, trends, correlations, plots."""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from snap_operators.apps import cli
from snap_operators.apps import timeseries as ts
from snap_operators.core.legend import LAND_COVER
from snap_operators.core.product import MetadataElement, Product

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

UTC = dt.timezone.utc
T10 = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
PX_KM2 = 1e-4  # one 10 m pixel
WATER, SOIL, TREES, URBAN = 1, 2, 3, 4
#: Rows of water and of urban area on 2020-01-01..07 (then 20 rows of bare soil, trees the rest). Over
#: the 6 change intervals (scipy.stats.pearsonr of the rates): water-urban r -0.910465, p 0.011666;
#: water-trees r 0.769666, p 0.073471 (not significant); urban-trees r -0.964806, p 0.001836.
WATER_ROWS = (10, 12, 15, 16, 20, 21, 25)
URBAN_ROWS = (5, 8, 5, 9, 6, 8, 5)

# --- helpers -------------------------------------------------------------------------


@pytest.fixture
def write_map(write_tif):
    """``write_map(path, data, transform=T10, crs="EPSG:32633", names=None, tags=None)``: a class map GeoTIFF as
    the project writes them: CLASS_NAMES tag, colour table, 255 no-data."""

    def write(path, data, transform=T10, crs="EPSG:32633", names=None, tags=None):
        names = names or {str(c.value): c.name for c in LAND_COVER}
        return write_tif(path, [data], dtype="uint8", crs=crs, transform=transform, nodata=255, tags=tags,
                         band_tags={1: {"CLASS_NAMES": json.dumps(names)}},
                         colormap={c.value: (*c.color, 255) for c in LAND_COVER})

    return write


def water_rows(day):
    return 10 + 2 * day * day  # a quadratic water area: 10, 12, 18, 28, 42 rows of 100 px


def quadratic_series(write_map, folder, with_cloudy=True):
    """Maps of days 0..4 (rows: water, 20 rows of bare soil, trees); day 5 is 70 % no-data."""
    paths = []
    for day in range(5):
        a = np.full((100, 100), TREES, np.uint8)
        a[: water_rows(day)] = WATER
        a[-20:] = SOIL
        paths.append(write_map(folder / f"map_{(dt.date(2020, 1, 1) + dt.timedelta(day)).isoformat()}.tif", a))
    if with_cloudy:
        a = np.full((100, 100), TREES, np.uint8)
        a[:70] = 255
        paths.append(write_map(folder / "map_2020-01-06.tif", a))
    return paths


def seven_dates(write_map, folder):
    """Maps of 2020-01-01..07 with WATER_ROWS of water, URBAN_ROWS of urban, 20 rows of soil, trees."""
    paths = []
    for day, (w, u) in enumerate(zip(WATER_ROWS, URBAN_ROWS)):
        a = np.full((100, 100), TREES, np.uint8)
        a[:w] = WATER
        a[w:w + u] = URBAN
        a[-20:] = SOIL
        paths.append(write_map(folder / f"map_2020-01-0{day + 1}.tif", a))
    return paths


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- dates ------------------------------------------------------------------------------


def test_date_from_file_names():
    assert ts.date_from_name("S2L1C_2015-08-20.tif") == dt.datetime(2015, 8, 20, tzinfo=UTC)
    assert ts.date_from_name("S2B_MSIL2A_20230710T074619_N0509_R135_T38SLF_20230710T101010.SAFE") == \
        dt.datetime(2023, 7, 10, 7, 46, 19, tzinfo=UTC)
    assert ts.date_from_name("classes_20231399_v2.tif") is None  # not a calendar date
    assert ts.date_from_name("tile_33UUU.tif") is None


def test_sensing_time_wins_over_the_name_and_the_name_over_tifftag_datetime():
    sensed = dt.datetime(2021, 5, 3, 10, 0, tzinfo=UTC)
    p = Product("p", start_time=sensed,
                metadata=MetadataElement("metadata", elements=[MetadataElement("TIFF_Metadata", {"ACQUISITION_DATE": "x"})]))
    assert ts.product_date(p, "classes_2021-05-03.tif") == (sensed, "metadata")
    written = Product("p", start_time=dt.datetime(2024, 1, 1, tzinfo=UTC), metadata=MetadataElement(
        "metadata", elements=[MetadataElement("TIFF_Metadata", {"TIFFTAG_DATETIME": "2024:01:01 00:00:00"})]))
    assert ts.product_date(written, "S2L1C_2015-07-11.tif") == (dt.datetime(2015, 7, 11, tzinfo=UTC), "file name")
    assert ts.product_date(written, "classes.tif")[1] == "TIFFTAG_DATETIME"
    assert ts.product_date(Product("p"), "classes.tif") == (None, "")


def test_dates_given_as_a_list_or_a_csv(tmp_path):
    inputs = [tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "c.tif"]
    got = ts.parse_dates_option("2020-01-01, 2020-02-01,2020-03-01", inputs)
    assert [d.date().isoformat() for d in got] == ["2020-01-01", "2020-02-01", "2020-03-01"]
    table = tmp_path / "dates.csv"
    table.write_text("file,date\nc.tif,2020-03-05\na,2020-01-05\nb.tif,2020-02-05\n")
    assert [d.day for d in ts.parse_dates_option(str(table), inputs)] == [5, 5, 5]
    assert [d.month for d in ts.parse_dates_option(str(table), inputs)] == [1, 2, 3]
    with pytest.raises(ts.TimeSeriesError, match="2 date\\(s\\) for 3 input\\(s\\)"):
        ts.parse_dates_option("2020-01-01,2020-02-01", inputs)
    with pytest.raises(ts.TimeSeriesError, match="cannot read 'June' as a date"):
        ts.parse_dates_option("2020-01-01,June,2020-03-01", inputs)
    table.write_text("file,date\na.tif,2020-01-05\n")
    with pytest.raises(ts.TimeSeriesError, match="has no row for b.tif"):
        ts.parse_dates_option(str(table), inputs)


# --- trends and correlation -------------------------------------------------------------------


def test_trend_degree_follows_the_data():
    days = np.array([0.0, 7, 15, 30, 44, 60, 75])
    line = 3.0 - 0.01 * days  # exact: every degree fits, the lowest wins the tie
    curve = 1.0 + 0.002 * days - 0.0001 * days**2 + np.random.default_rng(1).normal(0, 0.0005, days.size)
    for selection in ts.SELECTIONS:
        assert ts.fit_trend(days, line, selection=selection).degree == 1
        t = ts.fit_trend(days, curve, selection=selection)
        assert t.degree == 2
        fitted = np.polyval(np.polyfit(days, curve, 2), days)
        r2 = 1 - np.sum((curve - fitted) ** 2) / np.sum((curve - curve.mean()) ** 2)
        assert t.r2 == pytest.approx(r2, rel=1e-9)
        assert t.adjusted_r2 == pytest.approx(1 - (1 - r2) * 6 / 4, rel=1e-9)
        np.testing.assert_allclose(t(days), fitted, rtol=1e-9)


def test_loocv_finds_a_noisy_quadratic_more_often_than_adjusted_r2():
    days = np.array([0.0, 7, 15, 30, 44, 60, 75])
    hits = {s: 0 for s in ts.SELECTIONS}
    for seed in range(60):
        curve = 1.0 + 0.002 * days - 0.0001 * days**2 + np.random.default_rng(seed).normal(0, 0.0005, days.size)
        for s in ts.SELECTIONS:
            hits[s] += ts.fit_trend(days, curve, selection=s).degree == 2
    assert hits["loocv"] >= 45 and hits["loocv"] > hits["adjusted-r2"]  # measured 173/200 vs 123/200


def test_trend_degree_stays_below_n_minus_1():
    def cubic(d):
        return 0.5 + 0.1 * d - 0.02 * d**2 + 0.003 * d**3

    assert ts.fit_trend([0, 1, 2, 3, 5], [cubic(d) for d in (0, 1, 2, 3, 5)]).degree == 3
    assert max(ts.fit_trend([0, 1, 2, 3], [cubic(d) for d in range(4)]).candidates) == 2
    assert list(ts.fit_trend([0, 1, 3], [1.0, 2.0, 2.5]).candidates) == [1]
    with pytest.raises(ts.TimeSeriesError, match="a trend needs at least 3 dates, got 2"):
        ts.fit_trend([0, 1], [1.0, 2.0])


def test_constant_area_has_no_r2_and_the_lowest_degree():
    t = ts.fit_trend([0, 10, 20, 30, 40], [2.5] * 5)
    assert t.degree == 1 and np.isnan(t.r2)
    assert t.coefficients[0] == pytest.approx(2.5) and t.coefficients[1] == pytest.approx(0.0, abs=1e-12)


def test_pearson_of_change_rates():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(9, 3))
    np.testing.assert_allclose(ts.pearson_matrix(x), np.corrcoef(x, rowvar=False), atol=1e-12)
    x[:, 1] = 4.0
    r = ts.pearson_matrix(x)
    assert np.isnan(r[1]).all() and np.isnan(r[:, 1]).all() and r[0, 0] == pytest.approx(1.0)
    rates = ts.change_rates([0, 10, 30], np.array([[1.0, 5.0], [2.0, 4.0], [6.0, 4.0]]))
    np.testing.assert_allclose(rates, [[0.1, -0.1], [0.2, 0.0]])


def test_pearson_p_value_is_students_t():
    # two-sided 5 % critical values of r at n - 2 = 1, 2, 3, 4 and 8 degrees of freedom (tables)
    for n, critical in ((3, 0.996917), (4, 0.950000), (5, 0.878339), (6, 0.811401), (10, 0.631897)):
        assert ts.pearson_p_value(critical, n) == pytest.approx(0.05, abs=1e-5)
        assert ts.pearson_p_value(-critical, n) == ts.pearson_p_value(critical, n)
    assert ts.pearson_p_value(0.0, 7) == pytest.approx(1.0) and ts.pearson_p_value(1.0, 7) == 0.0
    assert np.isnan(ts.pearson_p_value(float("nan"), 7)) and np.isnan(ts.pearson_p_value(0.5, 2))


def test_pearson_p_values_match_scipy():
    stats = pytest.importorskip("scipy.stats")  # only in the train extra: the module does without it
    rng = np.random.default_rng(2)
    for n in range(3, 16):
        x = rng.normal(size=(n, 3))
        x[:, 1] += rng.uniform(-2, 2) * x[:, 0]
        p = ts.pearson_p_values(ts.pearson_matrix(x), n)
        assert np.isnan(np.diag(p)).all()
        for i, j in ((0, 1), (0, 2), (1, 2)):
            expected = stats.pearsonr(x[:, i], x[:, j]).pvalue
            assert p[i, j] == pytest.approx(expected, rel=1e-6, abs=1e-12) and p[j, i] == p[i, j]


# --- whole series on class maps -----------------------------------------------------------------


def test_quadratic_series_areas_trends_correlation_and_the_no_data_date(write_map, tmp_path):
    out = tmp_path / "out"
    series = ts.run_timeseries(quadratic_series(write_map, tmp_path), out, tile_size=32)
    assert [m.date_source for m in series.dates] == ["file name"] * 6
    assert [m.excluded is None for m in series.dates] == [True] * 5 + [False]
    assert series.dates[-1].invalid_fraction == pytest.approx(0.7)

    by_date = {r["date"]: r for r in read_csv(out / "class_areas.csv")}
    water_col = next(k for k in by_date["2020-01-01"] if k.startswith("1 Water"))
    for day in range(5):
        row = by_date[f"2020-01-0{day + 1}"]
        assert float(row[water_col]) == pytest.approx(water_rows(day) * 100 * PX_KM2)
        assert float(row["days_since_first"]) == day
    left_out = by_date["2020-01-06"]
    assert left_out["status"] == "excluded" and left_out[water_col] == ""  # empty, not zero
    status = {r["date"]: r["status"] for r in read_csv(out / "dates.csv")}
    assert status["2020-01-06"].startswith("excluded: invalid fraction 70.0% > 50.0%")

    trends = {int(r["class_id"]): r for r in read_csv(out / "trends.csv")}
    assert int(trends[WATER]["degree"]) == 2 and float(trends[WATER]["r2"]) == pytest.approx(1.0)
    assert float(trends[WATER]["c2_km2_per_day2"]) == pytest.approx(2 * 100 * PX_KM2)
    assert int(trends[TREES]["degree"]) == 2 and float(trends[TREES]["c2_km2_per_day2"]) == pytest.approx(-0.02)
    assert trends[SOIL]["r2"] == "" and int(trends[SOIL]["degree"]) == 1  # constant: R2 undefined

    # 5 used dates are 4 change intervals: too few for a correlation (test_correlation_*)
    corr = read_csv(out / "correlation.csv")
    assert len(corr) == 3 and {r["intervals"] for r in corr} == {"4"}
    assert all(r["r"] == "" and r["p_value"] == "" and r["note"].startswith("too few dates (n=4") for r in corr)

    day3 = read_csv(out / "areas_2020-01-04.csv")
    assert list(day3[0]) == ["Class ID", "Class Name", "Area (sq km)"]
    assert {r["Class Name"]: r["Area (sq km)"] for r in day3}["Water"] == f"{28 * 100 * PX_KM2:.4f}"
    assert not (out / "areas_2020-01-06.csv").exists()
    for png in ("areas_trends.png", "correlation.png", "stacked_areas.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert sorted(series.outputs) == sorted(out.iterdir())  # every file written is listed, and only those


def test_correlation_shows_n_and_p_and_hatches_what_is_not_significant(write_map, tmp_path):
    import matplotlib.pyplot as plt

    out = tmp_path / "out"
    series = ts.run_timeseries(seven_dates(write_map, tmp_path), out)
    assert series.intervals == 6 and series.correlated
    at = {c.value: k for k, c in enumerate(series.correlation_classes)}
    assert set(at) == {WATER, SOIL, TREES, URBAN}
    expected = {(WATER, URBAN): (-0.910465, 0.011666), (WATER, TREES): (0.769666, 0.073471),
                (URBAN, TREES): (-0.964806, 0.001836)}  # WATER_ROWS
    for (a, b), (r, p) in expected.items():
        assert series.correlation[at[a], at[b]] == pytest.approx(r, abs=1e-6)
        assert series.correlation_p[at[a], at[b]] == pytest.approx(p, rel=1e-4)

    fig = ts.correlation_figure(series)
    try:
        ax = fig.axes[0]
        assert "n = 6 intervals between 7 used dates" in ax.get_title()
        texts = [t.get_text() for t in ax.texts]
        for text in ("r=-0.91\np=0.012", "r=0.77\np=0.073", "r=-0.96\np=0.0018"):
            assert texts.count(text) == 2  # both halves of the matrix
        assert texts.count("n/a") == 7  # bare soil never changes: its row and column
        hatched = {(round(pt.get_y() + 0.5), round(pt.get_x() + 0.5)) for pt in ax.patches
                   if pt.get_gid() == ts.NOT_SIGNIFICANT_GID}
        assert hatched == {(at[WATER], at[TREES]), (at[TREES], at[WATER])}  # p 0.073 only
    finally:
        plt.close(fig)

    rows = {(r["class_a"].split()[0], r["class_b"].split()[0]): r for r in read_csv(out / "correlation.csv")}
    assert len(rows) == 6 and {r["intervals"] for r in rows.values()} == {"6"}
    assert float(rows["1", "3"]["r"]) == pytest.approx(0.7697, abs=1e-4)
    assert float(rows["1", "3"]["p_value"]) == pytest.approx(0.073471, abs=1e-6)
    assert rows["1", "2"]["r"] == "" and rows["1", "2"]["note"] == "area constant: undefined"


@pytest.mark.parametrize("n_dates", [5, 6])
def test_too_few_dates_for_a_correlation_are_said_and_drawn_as_such(write_map, tmp_path, caplog, n_dates):
    import matplotlib.pyplot as plt

    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="snap_operators"):
        series = ts.run_timeseries(seven_dates(write_map, tmp_path)[:n_dates], out)
    notes = [r.getMessage() for r in caplog.records if "correlation" in r.getMessage()]
    fig = ts.correlation_figure(series)
    try:
        texts = " ".join(t.get_text() for t in fig.axes[0].texts)
        if n_dates == 6:  # 5 intervals: MIN_CORRELATION_INTERVALS, just enough
            assert series.correlated and not notes and fig.axes[0].images and "p=" in texts
            return
        assert series.intervals == 4 and not series.correlated and np.isnan(series.correlation).all()
        assert notes == ["correlation not computed: too few dates (n=4 change intervals between 5 used dates; "
                         "it needs at least 5)"]
        assert "too few dates (n=4)" in texts and "r=" not in texts and not fig.axes[0].images
    finally:
        plt.close(fig)
    assert out / "correlation.png" in series.outputs and sorted(series.outputs) == sorted(out.iterdir())


def test_stacked_plot_marks_left_out_dates_as_the_trend_plot_does(write_map, tmp_path):
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    series = ts.run_timeseries(quadratic_series(write_map, tmp_path), tmp_path / "out")
    assert [m.label for m in series.dates if m.excluded] == ["2020-01-06"]
    left_out = mdates.date2num(dt.datetime(2020, 1, 6, tzinfo=UTC))
    for build in (ts.trends_figure, ts.stacked_figure):
        fig = build(series)
        try:
            axes = [ax for ax in fig.axes if ax.get_visible()]
            assert axes
            for ax in axes:
                marks = [ln for ln in ax.get_lines() if ln.get_gid() == ts.LEFT_OUT_GID]
                assert [mdates.date2num(x) for ln in marks for x in ln.get_xdata()] == [left_out, left_out]
                assert marks[0].get_linestyle() == ":"
            titles = [fig.get_suptitle(), *(ax.get_title() for ax in axes)]
            assert any("dotted: left out 2020-01-06" in t for t in titles)
        finally:
            plt.close(fig)


def test_class_maps_without_a_cloud_mask_say_clouds_are_not_checked(write_map, tmp_path, caplog):
    from snap_operators.core.legend import MASKED_INFO

    def notes():
        return [r.getMessage() for r in caplog.records if "no cloud mask" in r.getMessage()]

    plain = quadratic_series(write_map, tmp_path, with_cloudy=False)
    (tmp_path / "masked").mkdir()
    names = {str(c.value): c.name for c in [*LAND_COVER, MASKED_INFO]}  # as CloudMask'ed maps list 254
    masked = []
    for p in plain:
        with rasterio.open(p) as ds:
            masked.append(write_map(tmp_path / "masked" / p.name, ds.read(1), names=names))
    with caplog.at_level(logging.WARNING, logger="snap_operators"):
        ts.run_timeseries(plain, tmp_path / "plain")
        (note,) = notes()
        assert note.startswith("class maps carry no cloud mask (no class 254 in their legend): dates are not "
                               "checked for clouds") and "\n" not in note
        caplog.clear()
        ts.run_timeseries(masked, tmp_path / "masked_out")
        assert notes() == []
        ts.run_timeseries(masked[:3] + plain[3:], tmp_path / "mixed")
        (note,) = notes()
        assert note.startswith("class maps carry no cloud mask (2 of 5: map_2020-01-04.tif, map_2020-01-05.tif)")


def test_selection_by_adjusted_r2_and_dates_from_a_csv(write_map, tmp_path):
    paths = quadratic_series(write_map, tmp_path, with_cloudy=False)
    renamed = []
    for i, p in enumerate(paths):  # names without dates: the CSV gives them (in another order)
        renamed.append(p.rename(tmp_path / f"scene{i}.tif"))
    table = tmp_path / "when.csv"
    table.write_text("file,date\n" + "".join(f"scene{i}.tif,2021-03-{10 + 2 * i:02d}\n" for i in reversed(range(5))))
    series = ts.run_timeseries(renamed, tmp_path / "out", dates=str(table), selection="adjusted-r2")
    assert [m.label for m in series.dates] == [f"2021-03-{10 + 2 * i:02d}" for i in range(5)]
    assert {m.date_source for m in series.dates} == {"given"}
    water = next(t for t in series.trends if t.class_id == WATER)
    assert water.selection == "adjusted-r2" and water.degree == 2
    # days are 2 apart now: the quadratic coefficient scales by 1/4
    assert water.coefficients[2] == pytest.approx(2 * 100 * PX_KM2 / 4)


def test_cli_prints_the_tables_and_refuses_to_overwrite(write_map, tmp_path, capsys):
    paths = [str(p) for p in quadratic_series(write_map, tmp_path)]
    out = str(tmp_path / "out")
    assert cli.main(["timeseries", *paths, "--out", out, "--max-invalid-fraction", "0.8"]) == 0
    printed = capsys.readouterr().out
    assert "Class ID | Class Name | Area (sq km)" in printed and f"wrote {out}/trends.csv" in printed
    assert "2020-01-06" in printed and "left out" not in printed  # 70 % no-data is under 0.8
    assert cli.main(["timeseries", *paths, "--out", out]) == 1
    err = capsys.readouterr().err
    assert "already exists; use --overwrite" in err and err.count("\n") == 1


# --- bad input -----------------------------------------------------------------------------------


def _err(capsys, argv):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1
    return err


def test_bad_inputs_give_one_line_errors(write_map, tmp_path, capsys):
    good = [str(p) for p in quadratic_series(write_map, tmp_path, with_cloudy=False)]
    out = str(tmp_path / "out")
    assert "needs class maps of at least 3 dates" in _err(capsys, ["timeseries", good[0], "--out", out])

    other = {str(c.value): ("Forest" if c.value == TREES else c.name) for c in LAND_COVER}
    odd = write_map(tmp_path / "legend_2020-02-01.tif", np.full((100, 100), TREES, np.uint8), names=other)
    err = _err(capsys, ["timeseries", *good[:3], str(odd), "--out", out])
    assert "different class legends: class 3 is 'Trees/Shrubbery vegetation' vs 'Forest'" in err

    far = write_map(tmp_path / "far_2020-02-01.tif", np.full((100, 100), TREES, np.uint8),
                    transform=T10 @ Affine.translation(5000, 0))
    assert "do not overlap: their extents are disjoint" in _err(capsys, ["timeseries", *good[:3], str(far), "--out", out])

    half = write_map(tmp_path / "half_2020-02-01.tif", np.full((100, 100), TREES, np.uint8),
                     transform=T10 @ Affine.translation(50, 0))
    assert "cover different areas" in _err(capsys, ["timeseries", *good[:3], str(half), "--out", out])

    same_day = write_map(tmp_path / "again_2020-01-02.tif", np.full((100, 100), TREES, np.uint8))
    assert "have the same date 2020-01-02" in _err(capsys, ["timeseries", *good[:3], str(same_day), "--out", out])

    assert "has no class band 'nope'" in _err(capsys, ["timeseries", *good, "--band", "nope", "--out", out])

    cloudy = [str(write_map(tmp_path / f"c_2020-03-0{i}.tif", np.full((100, 100), 255, np.uint8))) for i in (1, 2)]
    err = _err(capsys, ["timeseries", *good[:2], *cloudy, "--out", out])
    assert "need at least 3 usable dates, got 2 of 4" in err and "2020-03-01: no valid pixel" in err
    assert not Path(out).exists() or not any(Path(out).iterdir())  # nothing half-written


# --- real data: the five Slovenia dates ------------------------------------------------------------


def test_slovenia_five_dates_end_to_end_and_the_cloudy_date_is_flagged(shared_data, classifier_graph, tmp_path):
    graph = tmp_path / "classify.xml"
    graph.write_text(classifier_graph)  # no Resample: the files are single-size
    raws = sorted(shared_data("eolearn_slovenia").glob("S2L1C_*.tif"))
    assert len(raws) == 5
    out = tmp_path / "series"
    series = ts.run_timeseries(raws, out, graph=graph, tile_size=64)

    status = {m.label: m for m in series.dates}
    assert set(status) == {"2015-07-11", "2015-07-31", "2015-08-20", "2015-08-30", "2015-09-09"}
    assert {m.date_source for m in series.dates} == {"metadata"}  # ACQUISITION_DATE tags
    cloudy = status["2015-08-20"]
    assert cloudy.excluded and cloudy.cloud_fraction > 0.8  # measured 0.899
    for label in ("2015-07-11", "2015-07-31", "2015-08-30", "2015-09-09"):  # 07-31 is hazy, not cloudy
        assert status[label].excluded is None and status[label].cloud_fraction < 0.01

    with rasterio.open(out / "classes" / "classes_2015-07-11.tif") as ds:
        pixel_km2 = abs(ds.transform.a * ds.transform.e) / 1e6
        total = ds.width * ds.height * pixel_km2
    for m in series.used:  # every valid pixel is counted in one class
        assert next(r for r in m.rows if r.class_id is None).area_km2 == pytest.approx(total, rel=1e-9)
        # The July-September park is all in leaf; the hazy date's haze lowers NDVI (top of atmosphere)
        # below the default vegetation split of 0.4 in part of it (measured 0.67; the shipped graph's
        # CloudMask masks that date whole, docs/cloud_mask.md).
        assert m.area(TREES) > (0.6 if m.label == "2015-07-31" else 0.95) * total
    rows = {r["date"]: r for r in read_csv(out / "class_areas.csv")}
    assert rows["2015-08-20"]["status"] == "excluded" and rows["2015-08-20"][next(k for k in rows["2015-08-20"]
                                                                                  if k.startswith("3 "))] == ""
    assert "cloud 89" in {r["date"]: r["status"] for r in read_csv(out / "dates.csv")}["2015-08-20"]
    assert len(series.trends) == 6 and all(t.n == 4 and t.degree <= 2 for t in series.trends)
    assert series.intervals == 3 and not series.correlated  # too few for a correlation
    for name in ("areas_trends.png", "correlation.png", "stacked_areas.png", "trends.csv", "correlation.csv"):
        assert (out / name).stat().st_size > 0


def test_masked_pixels_are_not_observed_and_replace_the_blue_test(write_map, tmp_path):
    from snap_operators.core.legend import MASKED, MASKED_INFO

    a = np.full((100, 100), TREES, np.uint8)
    a[:30] = MASKED  # a cloud the classifier masked
    names = {str(c.value): c.name for c in [*LAND_COVER, MASKED_INFO]}
    path = write_map(tmp_path / "map_2020-01-01.tif", a, names=names)
    import dask.array as dsk

    from snap_operators.core.product import Band
    from snap_operators.io import open_product

    prod = open_product(path)
    band = prod.band(prod.band_names[0])
    assert ts.is_masked_map(band)
    # a raw product whose blue band would call everything cloud: the map's own mask wins
    blue = Product("raw", crs=CRS.from_epsg(32633))
    blue.add_band(Band("B2", dsk.full((100, 100), 0.9, dtype=np.float32, chunks=50), T10, float("nan")))
    m = ts.measure(prod, band, path, dt.datetime(2020, 1, 1, tzinfo=UTC), "name", raw=blue, raw_path=path)
    assert m.cloud_pixels == 3000 and m.no_data_pixels == 0
    assert m.area(TREES) == pytest.approx(7000 * PX_KM2) and m.invalid_fraction == pytest.approx(0.3)
    assert all(r.class_id != MASKED for r in m.rows)
    # without 254 in its legend the map gets the blue test (here: every pixel is "cloud")
    plain = write_map(tmp_path / "plain_2020-01-02.tif", np.full((100, 100), TREES, np.uint8))
    pp = open_product(plain)
    b2 = pp.band(pp.band_names[0])
    assert not ts.is_masked_map(b2)
    m2 = ts.measure(pp, b2, plain, dt.datetime(2020, 1, 2, tzinfo=UTC), "name", raw=blue, raw_path=plain)
    assert m2.cloud_pixels == 10000
