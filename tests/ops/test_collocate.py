"""Collocate: sources and reference choice, SNAP renaming, reprojection across CRSs, real S1/S2 pairs."""

from __future__ import annotations

import re

import dask.array as da
import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import OperatorError, ParameterError, SnapPcError
from snap_operators.core.product import Band, ClassInfo, Product
from snap_operators.ops.collocate import CollocateOp
from snap_operators.ops.resample import ResampleOp

UTM = CRS.from_epsg(32633)
WGS84 = CRS.from_epsg(4326)
REF_T = Affine(10, 0, 330000.0, 0, -10, 5822040.0)
REF_SHAPE = (60, 80)
# Secondary: 0.0001 deg lon/lat pixels covering the western part of the reference scene.
SEC_T = Affine(0.0001, 0, 12.4935, 0, -0.0001, 52.5235)
SEC_SHAPE = (100, 70)


def field(lon, lat):
    """A linear field of lon/lat: bilinear interpolation on the secondary grid reproduces it."""
    return (lon - 12.49) * 1000.0 + (lat - 52.51) * 2000.0


def reference(name="S2") -> Product:
    p = Product(name, product_type="S2_MSI", crs=UTM)
    p.metadata.add_element("ref_meta")
    rng = np.random.default_rng(1)
    for b in ("B2", "B3"):
        p.bands[b] = Band(b, da.from_array(rng.uniform(0, 1, REF_SHAPE).astype(np.float32), chunks=16), REF_T)
    return p


def secondary(name="S1", bands=("VV",)) -> Product:
    rows, cols = np.mgrid[0:SEC_SHAPE[0], 0:SEC_SHAPE[1]] + 0.5
    lon, lat = SEC_T @ (cols, rows)
    p = Product(name, product_type="GRD", crs=WGS84)
    p.metadata.add_element("sec_meta")
    for i, b in enumerate(bands):
        p.bands[b] = Band(b, da.from_array(field(lon, lat) + i, chunks=32), SEC_T, unit="dB")
    return p


def collocate(sources: dict, tile_size: int = 1024, **params) -> Product:
    raw = {k: str(v) for k, v in params.items()}
    return CollocateOp.create(sources, raw, context=ExecutionContext(tile_size=tile_size)).initialize()


def ref_centres_lonlat():
    rows, cols = np.mgrid[0:REF_SHAPE[0], 0:REF_SHAPE[1]] + 0.5
    x, y = REF_T @ (cols, rows)
    return Transformer.from_crs(UTM, WGS84, always_xy=True).transform(x, y)


def footprint():
    lon, lat = ref_centres_lonlat()
    c, r = ~SEC_T @ (lon, lat)
    return (c >= 0) & (r >= 0) & (c < SEC_SHAPE[1]) & (r < SEC_SHAPE[0]), c, r


def test_default_names_grid_and_reference_bands():
    ref, sec = reference(), secondary()
    out = collocate({"sourceProduct": ref, "sourceProduct.1": sec})
    assert list(out.bands) == ["B2_M", "B3_M", "VV_S", "collocationFlags"]
    assert out.name == "_collocated" and out.product_type == "COLLOCATED"
    assert out.crs == UTM and out.scene_shape == REF_SHAPE
    assert all(b.transform == REF_T and b.shape == REF_SHAPE for b in out.bands.values())
    assert out.bands["B2_M"].data is ref.bands["B2"].data
    assert out.bands["VV_S"].unit == "dB"
    assert out.metadata.element("ref_meta") is not None and out.metadata.element("SecondaryMetadata") is None


def test_renamed_bands_missing_say_how_to_collocate():
    """A product collocated with SNAP's default renaming (B2 -> B2_M), handed to a graph that looks for B2: the
    error lists the bands and says how to collocate instead."""
    out = collocate({"sourceProduct": reference(), "sourceProduct.1": secondary()})
    with pytest.raises(ParameterError) as exc:
        ResampleOp.create({"sourceProduct": out}, {"referenceBand": "B2"}, context=ExecutionContext()).initialize()
    msg = str(exc.value)
    assert "bands: B2_M, B3_M, VV_S, collocationFlags (names renamed by Collocate, e.g. B2_M: collocate with " \
           "renameReferenceComponents and renameSecondaryComponents false" in msg and "\n" not in msg
    kept = collocate({"sourceProduct": reference(), "sourceProduct.1": secondary()},
                     renameReferenceComponents="false", renameSecondaryComponents="false")
    assert "renamed by Collocate" not in kept.bands_listed()


def test_bilinear_across_crs_reproduces_the_field_and_nan_outside():
    out = collocate({"master": reference(), "slave": secondary()}, resamplingType="BILINEAR_INTERPOLATION")
    vv = out.bands["VV_S"].data.compute()
    inside, c, r = footprint()
    assert 0.2 < inside.mean() < 0.9  # partly covered
    lon, lat = ref_centres_lonlat()
    interior = (c > 1) & (r > 1) & (c < SEC_SHAPE[1] - 1) & (r < SEC_SHAPE[0] - 1)
    np.testing.assert_allclose(vv[interior], field(lon, lat)[interior], atol=1e-3)
    assert np.isnan(vv[~((c >= 0) & (r >= 0) & (c <= SEC_SHAPE[1]) & (r <= SEC_SHAPE[0]))]).all()
    flags = out.bands["collocationFlags"]
    assert flags.dtype == np.int8
    np.testing.assert_array_equal(flags.data.compute(), inside.astype(np.int8))


def test_nearest_takes_the_secondary_pixel_under_each_centre():
    sec = secondary()
    out = collocate({"reference": reference(), "secondary": sec}, tile_size=16)
    vv = out.bands["VV_S"].data.compute()
    inside, c, r = footprint()
    src = sec.bands["VV"].data.compute()
    expected = np.full(REF_SHAPE, np.nan)
    expected[inside] = src[np.floor(r[inside]).astype(int), np.floor(c[inside]).astype(int)]
    edge = np.minimum(np.abs(c - np.round(c)), np.abs(r - np.round(r))) < 1e-3
    np.testing.assert_array_equal(vv[~edge], expected[~edge])
    assert edge.sum() < 0.01 * vv.size


def test_chunking_does_not_change_results():
    results = []
    for tile in (7, 1024):
        ref = reference()
        out = collocate({"sourceProduct": ref, "sourceProduct.1": secondary()}, tile_size=tile,
                        resamplingType="CUBIC_CONVOLUTION")
        assert max(out.bands["VV_S"].data.chunksize) <= tile
        results.append(out.bands["VV_S"].data.compute())
    np.testing.assert_array_equal(results[0], results[1])


def test_several_secondaries_are_numbered_from_zero():
    out = collocate({"sourceProduct": reference(), "sourceProduct.1": secondary("A"),
                     "sourceProduct.2": secondary("B", bands=("VV", "VH"))})
    assert list(out.bands) == ["B2_M", "B3_M", "VV_S0", "collocationFlags_S0", "VV_S1", "VH_S1",
                               "collocationFlags_S1"]


def test_custom_patterns_and_secondary_number_id_synonym():
    out = collocate({"sourceProduct": reference(), "sourceProduct.1": secondary()},
                    referenceComponentPattern="ref_${ORIGINAL_NAME}",
                    secondaryComponentPattern="${ORIGINAL_NAME}_S${SECONDARY_NUMBER_ID}")
    assert list(out.bands) == ["ref_B2", "ref_B3", "VV_S", "collocationFlags"]
    three = {"sourceProduct": reference(), "sourceProduct.1": secondary("A"), "sourceProduct.2": secondary("B")}
    out = collocate(three, secondaryComponentPattern="${ORIGINAL_NAME}_slave${SECONDARY_NUMBER_ID}")
    assert "VV_slave0" in out.bands and "VV_slave1" in out.bands and "collocationFlags_slave1" in out.bands


def test_snap7_parameter_names():
    out = collocate({"master": reference(), "slave": secondary()}, renameMasterComponents="false",
                    slaveComponentPattern="${ORIGINAL_NAME}_sec")
    assert list(out.bands) == ["B2", "B3", "VV_sec", "collocationFlags"]


def test_no_renaming_keeps_names_and_renames_only_clashes():
    out = collocate({"sourceProduct": reference(), "sourceProduct.1": secondary(bands=("VV", "B2"))},
                    renameReferenceComponents="false", renameSecondaryComponents="false")
    assert list(out.bands) == ["B2", "B3", "VV", "B2_S", "collocationFlags"]


def test_reference_choice():
    ref, sec = reference("S2"), secondary("S1")
    out = collocate({"sourceProduct": sec, "sourceProduct.1": ref}, referenceProductName="S2")
    assert out.crs == UTM and "B2_M" in out.bands and "VV_S" in out.bands
    # Without a name, the first single-size product is the reference: here the S1 product.
    out = collocate({"sourceProduct": sec, "sourceProduct.1": ref}, targetProductName="pair")
    assert out.crs == WGS84 and "VV_M" in out.bands and out.name == "pair"
    multi = reference("MS")
    multi.bands["B5"] = Band("B5", da.zeros((30, 40), chunks=16), Affine(20, 0, 330000.0, 0, -20, 5822040.0))
    out = collocate({"sourceProduct": multi, "sourceProduct.1": sec})
    assert "VV_M" in out.bands and "B5_S" in out.bands  # multi-size secondaries are fine
    with pytest.raises(OperatorError, match="multi-size"):
        collocate({"reference": multi, "secondary": sec})


@pytest.mark.parametrize("sources,params,match", [
    ("one", {}, "at least two"),
    ("two", {"referenceProductName": "nope"}, "nope"),
    ("two", {"resamplingType": "BISINC_CONVOLUTION"}, "not supported"),
    ("two", {"resamplingType": "LANCZOS"}, "LANCZOS"),
    ("two", {"sourceProductPaths": "/tmp/x.dim"}, "Read"),
    ("nogeo", {}, "geocoding"),
])
def test_errors_are_one_line(sources, params, match):
    ref, sec = reference(), secondary()
    if sources == "one":
        src = {"sourceProduct": ref}
    elif sources == "nogeo":
        sec.crs = None
        src = {"sourceProduct": ref, "sourceProduct.1": sec}
    else:
        src = {"sourceProduct": ref, "sourceProduct.1": sec}
    with pytest.raises(SnapPcError, match=match) as exc:
        collocate(src, **params)
    assert "\n" not in str(exc.value)


def test_empty_pattern_with_renaming_is_refused():
    op = CollocateOp({"sourceProduct": reference(), "sourceProduct.1": secondary()},
                     {"secondaryComponentPattern": ""})
    with pytest.raises(ParameterError, match="non-empty"):
        op.initialize()


def test_integer_and_class_bands():
    sec = secondary()
    classes = [ClassInfo(1, "water", (0, 0, 255)), ClassInfo(2, "land", (0, 255, 0))]
    labels = (np.arange(SEC_SHAPE[0] * SEC_SHAPE[1]).reshape(SEC_SHAPE) % 2 + 1).astype(np.uint8)
    sec.bands["label"] = Band("label", da.from_array(labels, chunks=32), SEC_T, classes=classes)
    sec.bands["count"] = Band("count", da.full(SEC_SHAPE, 7, dtype=np.int16, chunks=32), SEC_T, no_data=-1)
    out = collocate({"sourceProduct": reference(), "sourceProduct.1": sec}, resamplingType="BILINEAR_INTERPOLATION")
    inside, _, _ = footprint()
    lab = out.bands["label_S"]
    assert lab.classes == classes and lab.dtype == np.uint8 and lab.no_data == 255
    values = lab.data.compute()
    assert set(np.unique(values[inside])) <= {1, 2} and (values[~inside] == 255).all()
    cnt = out.bands["count_S"].data.compute()
    assert (cnt[inside] == 7).all() and (cnt[~inside] == -1).all()


def test_copy_secondary_metadata():
    out = collocate({"sourceProduct": reference(), "sourceProduct.1": secondary("S1")}, copySecondaryMetadata="true")
    element = out.metadata.element("SecondaryMetadata")
    assert [e.name for e in element.elements] == ["S1"]
    assert element.elements[0].element("sec_meta") is not None


def test_secondary_times_and_bands_are_recorded():
    """SNAP keeps the reference's times; the secondaries' times and bands go into a Collocate element."""
    import datetime as dt

    ref, s1, s1b = reference(), secondary("S1"), secondary("S1b", bands=("VV", "VH"))
    ref.start_time = dt.datetime(2023, 7, 10, 7, 46, tzinfo=dt.timezone.utc)
    s1.start_time = s1.stop_time = dt.datetime(2023, 7, 25, 15, 2, tzinfo=dt.timezone.utc)
    out = collocate({"sourceProduct": ref, "sourceProduct.1": s1, "sourceProduct.2": s1b})
    assert out.start_time == ref.start_time
    record = out.metadata.element("Collocate")
    assert record.attributes["referenceProduct"] == "S2"
    first, second = record.elements
    assert first.name == "S1" and first.attributes["startTime"] == s1.start_time
    assert first.attributes["bands"] == "VV_S0,collocationFlags_S0"
    assert second.attributes["bands"] == "VV_S1,VH_S1,collocationFlags_S1" and "startTime" not in second.attributes
    assert out.metadata.element("SecondaryMetadata") is None  # as SNAP without copySecondaryMetadata


# --- real data: BigEarthNet S1 patch onto its S2 patch --------------------------------


def _patch_pairs(root):
    """(S1 folder, S2 folder) of each BigEarthNet tile in `root` with both."""
    s1 = {re.search(r"_(\d+_\d+)$", d.name).group(1): d for d in (root / "BigEarthNet-S1-Example").iterdir()}
    s2 = {re.search(r"_(\d+_\d+)$", d.name).group(1): d for d in (root / "BigEarthNet-S2-Example").iterdir()}
    return [(s1[k], s2[k]) for k in sorted(s1) if k in s2]


def test_bigearthnet_s1_collocated_onto_s2(shared_data):
    from snap_operators.io import open_product

    pairs = _patch_pairs(shared_data("bigearthnet"))
    assert len(pairs) == 6
    s1_dir, s2_dir = pairs[0]
    s2 = ResampleOp.create({"sourceProduct": open_product(s2_dir)}, {"referenceBand": "B2"}).initialize()
    s1 = open_product(s1_dir)
    out = collocate({"master": s2, "slave": s1}, resamplingType="BILINEAR_INTERPOLATION")
    assert out.scene_shape == s2.scene_shape == (120, 120)
    assert out.crs == s2.crs and out.transform == s2.bands["B2"].transform
    s1_names = [f"{b}_S" for b in s1.bands]
    assert [n for n in out.bands if n.endswith("_S")] == s1_names
    for name in s1_names:
        values = out.bands[name].data.compute()
        assert np.isfinite(values).all()
        assert -60 < float(values.mean()) < 10  # dB backscatter
    assert (out.bands["collocationFlags"].data.compute() == 1).all()
    # These patches share the S2 10 m grid, so collocation is the identity.
    src = s1.bands[next(iter(s1.bands))].data.compute()
    np.testing.assert_array_equal(out.bands[s1_names[0]].data.compute(), src)
