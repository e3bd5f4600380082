"""``LinearToFromdB``: SNAP's conversion of backscatter to and from dB, on real Sentinel-1 patches."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine

from snap_operators.core.context import ExecutionContext
from snap_operators.core.errors import OperatorError, ParameterError
from snap_operators.core.product import Band, Product
from snap_operators.engine.graph import parse_graph
from snap_operators.engine.runner import build, run_graph
from snap_operators.io import open_product
from snap_operators.ops.linear_to_from_db import LinearToFromdBOp


def convert(product, **params):
    return LinearToFromdBOp({"sourceProduct": product}, params).initialize()


@pytest.fixture
def patch(shared_data):
    """A real BigEarthNet Sentinel-1 patch: VV and VH in dB, one GeoTIFF per polarisation."""
    return sorted(shared_data("bigearthnet", "BigEarthNet-S1-Example").iterdir())[0]


@pytest.fixture
def linear(patch, linear_copy):
    """The patch as linear intensity, as ASF's terrain-corrected products come."""
    return linear_copy(patch)


def test_linear_to_db_names_units_and_values_as_snap(patch, linear):
    source = open_product(linear)
    assert source.band("Sigma0_VV").unit == "intensity"
    out = convert(source)
    assert list(out.bands) == ["Sigma0_VV_db", "Sigma0_VH_db"] and out.name == f"{source.name}_dB"
    assert {b.unit for b in out.bands.values()} == {"intensity_db"}
    original = open_product(patch)
    for name in out.bands:
        got = out.band(name).data.compute()
        assert got.dtype == np.float32 and out.band(name).transform == original.band(name).transform
        np.testing.assert_allclose(got, original.band(name).data.compute(), atol=1e-4)
    # and back: dB -> intensity, the _db suffix dropped
    back = convert(out)
    assert list(back.bands) == ["Sigma0_VV", "Sigma0_VH"] and {b.unit for b in back.bands.values()} == {"intensity"}
    np.testing.assert_allclose(back.band("Sigma0_VV").data.compute(), source.band("Sigma0_VV").data.compute(),
                               rtol=1e-4)
    # sourceBands: only those, in that order
    one = convert(source, sourceBands=["Sigma0_VH"])
    assert list(one.bands) == ["Sigma0_VH_db"]


def test_a_graph_with_linear_to_from_db_runs_and_feeds_spectral_indices(patch, linear, tmp_path):
    """The node SNAP graphs put after Terrain-Correction once stopped the engine ("provided by SNAP"): Read of a
    linear folder -> LinearToFromdB -> SpectralIndices gives the dB patch's indices."""
    text = f"""<graph id="g"><version>1.0</version>
      <node id="Read"><operator>Read</operator><sources/><parameters><file>{linear}</file></parameters></node>
      <node id="LinearToFromdB"><operator>LinearToFromdB</operator><sources><sourceProduct refid="Read"/></sources>
        <parameters><sourceBands>Sigma0_VV,Sigma0_VH</sourceBands></parameters></node>
      <node id="SpectralIndices"><operator>SpectralIndices</operator>
        <sources><sourceProduct refid="LinearToFromdB"/></sources>
        <parameters><indices>RVI,CR_db</indices></parameters></node>
      <node id="Write"><operator>Write</operator><sources><sourceProduct refid="SpectralIndices"/></sources>
        <parameters><file>{tmp_path / 'out.tif'}</file><formatName>GeoTIFF</formatName></parameters></node>
    </graph>"""
    run_graph(parse_graph("g", text=text), ExecutionContext(overwrite=True))
    from snap_operators.ops.spectral_indices import SpectralIndicesOp

    expected = SpectralIndicesOp({"sourceProduct": open_product(patch)}, {"indices": ["RVI", "CR_db"]}).initialize()
    with rasterio.open(tmp_path / "out.tif") as src:
        names = list(src.descriptions)
        for name in ("RVI", "CR_db"):
            np.testing.assert_allclose(src.read(names.index(name) + 1), expected.band(name).data.compute(),
                                       rtol=1e-4, atol=1e-4)


def _product(values, unit, name="VV", no_data=None):
    a = np.asarray(values)
    return Product("p", bands={name: Band(name, da.from_array(a, chunks=a.shape), Affine.identity(), no_data=no_data,
                                          unit=unit)})


def test_what_has_no_db_is_no_data_and_integer_no_data_stays_so():
    lin = np.tile(np.array([[0.1, 1.0, 0.0, -0.002, np.nan]], np.float32), (30, 1))
    got = convert(_product(lin, "intensity")).band("VV_db").data.compute()
    np.testing.assert_allclose(got[0], [-10.0, 0.0, np.nan, np.nan, np.nan], atol=1e-6)
    dn = np.tile(np.array([[100, 0, 1000]], np.uint16), (60, 1))  # amplitude DN, 0 no-data
    got = convert(_product(dn, None, no_data=0)).band("VV_db")
    assert got.unit == "amplitude_db"  # a band without a unit is amplitude, as SNAP assumes
    np.testing.assert_allclose(got.data.compute()[0], [20.0, np.nan, 30.0], atol=1e-5)


def test_units_decide_the_direction_without_case():
    db = np.full((20, 20), -12.0, np.float32)
    out = convert(_product(db, "dB", name="VV"))  # our band folder's unit; SNAP would take it for linear
    assert list(out.bands) == ["VV"] and out.band("VV").unit == "intensity"
    np.testing.assert_allclose(out.band("VV").data.compute(), 10 ** -1.2, rtol=1e-5)
    out = convert(_product(db, "Intensity_dB", name="Sigma0_VV_dB"))
    assert list(out.bands) == ["Sigma0_VV"] and out.band("Sigma0_VV").unit == "Intensity"


def test_of_two_bands_converting_to_one_name_the_first_is_kept_and_the_other_not_read():
    """SNAP keeps the first band of a target name; the second is neither converted nor sampled (its values
    were checked, and could stop the run, though nothing of it was used)."""
    db = np.full((20, 20), -12.0, np.float32)
    p = _product(db, "intensity_db", name="VV")
    p.add_band(Band("VV_db", da.from_array(10 ** (db / 10), chunks=db.shape), Affine.identity(),
                    unit="dB"))  # linear values under a dB unit: refused if it were converted
    out = convert(p)
    assert list(out.bands) == ["VV"]
    np.testing.assert_allclose(out.band("VV").data.compute(), 10 ** -1.2, rtol=1e-5)
    with pytest.raises(OperatorError, match=r"band 'VV_db' is taken as dB"):
        convert(p, sourceBands=["VV_db"])


def test_bad_input_is_refused_in_one_line(patch, linear):
    with pytest.raises(ParameterError, match=r"sourceBands Sigma0_XX not in product .*; bands: Sigma0_VV, Sigma0_VH"):
        convert(open_product(linear), sourceBands=["Sigma0_XX"])
    # dB values in a band without a unit (Google Earth Engine's VV): the logarithm of negatives is NaN everywhere
    with rasterio.open(next(patch.glob("*_VV.tif"))) as src:
        db = src.read(1).astype(np.float32)
    with pytest.raises(OperatorError, match=r"band 'VV' is taken as linear \(unit none: amplitude\) but holds dB "
                                            r"\(\d+\.\d % of its values below 0, median -\d"):
        convert(_product(db, None))
    with pytest.raises(OperatorError, match=r"band 'VV' is taken as dB \(unit intensity_db\) but holds linear"):
        convert(_product(10 ** (db / 10), "intensity_db"))
    with pytest.raises(OperatorError, match="the real part of complex data"):
        convert(_product(db, "real", name="i_VV"))


def test_the_engine_runs_it_and_gpt_help_describes_it():
    from snap_operators.core.operator import SNAP_ONLY_OPERATORS, operators

    assert "LinearToFromdB" in operators() and "LinearToFromdB" not in SNAP_ONLY_OPERATORS
    graph = parse_graph("g", text="""<graph id="g"><version>1.0</version>
      <node id="a"><operator>LinearToFromdB</operator><sources/><parameters/></node></graph>""")
    with pytest.raises(OperatorError, match="no source product"):
        build(graph)


def test_class_bands_are_not_backscatter(linear, tmp_path):
    """A class map given to it was converted to dB without a word (20 log10 of class ids, as SNAP would); a
    collocated S1+S2 product's cloud_mask would have been too. Named, such a band is refused; by default it
    is left out, and a product of class bands only has nothing to convert."""
    from snap_operators.core.legend import LAND_COVER

    classes = np.tile(np.array([[1, 3, 4]], np.uint8), (30, 10))
    only = _product(classes, None, name="class_id")
    only.band("class_id").classes = list(LAND_COVER)
    with pytest.raises(OperatorError, match=r"band 'class_id' holds classes \(5 in its legend\), not backscatter"):
        convert(only, sourceBands=["class_id"])
    with pytest.raises(OperatorError, match=r"has no band to convert \(its class band\(s\) class_id are not "):
        convert(only)
    s1 = open_product(linear)
    mixed = Product("p", bands={**{n: s1.band(n) for n in s1.bands},
                                "cloud_mask": Band("cloud_mask", da.zeros(s1.band("Sigma0_VV").shape, dtype=np.uint8,
                                                                         chunks=60),
                                                   s1.band("Sigma0_VV").transform, classes=list(LAND_COVER[:2]))})
    assert list(convert(mixed).bands) == ["Sigma0_VV_db", "Sigma0_VH_db"]
