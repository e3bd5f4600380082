"""GeoTIFFs written by SNAP (File > Export > GeoTIFF, gpt Write -f GeoTIFF) read as SNAP reads them back.

SNAP keeps band names, scaling, no-data and virtual bands only in the DIMAP header of its private
TIFF tag 65000, which GDAL does not read: without it the bands would be ``band_1``... of raw counts.
"""

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio

from snap_operators.core.context import ExecutionContext
from snap_operators.engine.runner import load_graph, run_graph
from snap_operators.io import open_product
from snap_operators.io.geotiff import SNAP_HEADER_TAG, snap_header

tifffile = pytest.importorskip("tifffile")
pytestmark = pytest.mark.real_data

DATA = Path(__file__).resolve().parents[1] / "data"
#: A real GeoTIFF written by SNAP (snap-engine's GeoTIFF reader test file), cropped (tests/data/README.md).
SNAP_RGB = DATA / "snap_geotiff" / "subset_0_of_radar_bandep.tif"
AKROTIRI = DATA / "akrotiri" / "s2_l2a_20240805.tif"
S2_GRAPH = Path(__file__).resolve().parents[2] / "graphs" / "progressive_classifier_s2.xml"


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_real_snap_geotiff_has_its_band_names_virtual_band_and_metadata():
    with rasterio.open(SNAP_RGB) as ds:  # what GDAL alone sees
        assert ds.descriptions == (None, None, None)
        raw = ds.read()
    p = open_product(SNAP_RGB)
    assert p.name == "subset_0_of_radar_bandep" and p.product_type == "IMAGE"
    assert p.band_names == ["red", "green", "blue", "gray"]
    red = p.band("red")
    assert (red.wavelength, red.unit, red.description) == (700.0, "dl", "Image component #1")
    np.testing.assert_array_equal(red.data.compute(), raw[0])
    # the virtual band, computed from its expression as SNAP does
    np.testing.assert_allclose(p.band("gray").data.compute(), 0.3 * raw[0] + 0.59 * raw[1] + 0.11 * raw[2], rtol=1e-6)
    assert [e.name for e in p.metadata.elements] == ["history", "TIFF_Metadata"]


def test_real_snap_geotiff_band_subset_and_pixel_region():
    full = open_product(SNAP_RGB)
    p = open_product(SNAP_RGB, band_names=["gray", "blue"], pixel_region=(10, 5, 40, 30))
    assert p.band_names == ["gray", "blue"]
    np.testing.assert_array_equal(p.band("gray").data.compute(), full.band("gray").data[5:35, 10:50].compute())
    assert open_product(SNAP_RGB, band_names=["gray"]).band_names == ["gray"]
    with pytest.raises(Exception, match="no band 'nir'"):
        open_product(SNAP_RGB, band_names=["nir"])


def _snap_band(index, name, dtype, width, height, *, wavelength=0.0, factor=1.0, offset=0.0, nodata=None,
               expression=None, unit="", valid=None):
    virtual = f"<VIRTUAL_BAND>true</VIRTUAL_BAND><EXPRESSION>{expression}</EXPRESSION>" if expression else ""
    return (f"<Spectral_Band_Info><BAND_INDEX>{index}</BAND_INDEX><BAND_DESCRIPTION /><BAND_NAME>{name}</BAND_NAME>"
            f"<BAND_RASTER_WIDTH>{width}</BAND_RASTER_WIDTH><BAND_RASTER_HEIGHT>{height}</BAND_RASTER_HEIGHT>"
            f"<DATA_TYPE>{dtype}</DATA_TYPE><PHYSICAL_UNIT>{unit}</PHYSICAL_UNIT><SOLAR_FLUX>0.0</SOLAR_FLUX>"
            f"<BAND_WAVELEN>{wavelength}</BAND_WAVELEN><BANDWIDTH>0.0</BANDWIDTH>"
            f"<SCALING_FACTOR>{factor}</SCALING_FACTOR><SCALING_OFFSET>{offset}</SCALING_OFFSET>"
            f"<LOG10_SCALED>false</LOG10_SCALED><NO_DATA_VALUE_USED>{str(nodata is not None).lower()}"
            f"</NO_DATA_VALUE_USED><NO_DATA_VALUE>{nodata or 0.0}</NO_DATA_VALUE>"
            + (f"<VALID_MASK_TERM>{valid}</VALID_MASK_TERM>" if valid else "") + f"{virtual}</Spectral_Band_Info>")


WAVELENGTHS = {"B2": 492.4, "B3": 559.8, "B4": 664.6, "B6": 740.5, "B8": 832.8, "B11": 1613.7}


def snap_export(src: Path, dst: Path, header: str | None = "auto", drop=(), nodata: float | None = 0.0,
                bigtiff: bool = False) -> Path:
    """`src` (a Sentinel-2 L2A GeoTIFF of DN) written as SNAP's GeoTIFF writer writes a product read from the
    SAFE: raw counts, one big-endian planar strip per band, the georeferencing in GeoTIFF tags and the
    product's DIMAP header (names, scaling 1e-4 and offset -0.1 of baseline 04.00, no-data `nodata`) in tag
    65000; `bigtiff`: as SNAP's GeoTIFF-BigTIFF writer, which keeps the header in the same tag."""
    with rasterio.open(src) as ds:
        names, data, t, epsg = list(ds.descriptions), ds.read(), ds.transform, ds.crs.to_epsg()
    keep = [i for i, n in enumerate(names) if n not in drop]
    names, data = [names[i] for i in keep], data[keep]
    h, w = data.shape[1:]
    if header == "auto":
        bands = [_snap_band(i, n, "uint8" if n == "SCL" else "uint16", w, h, wavelength=WAVELENGTHS.get(n, 0.0),
                            factor=1.0 if n == "SCL" else 1.0e-4, offset=0.0 if n == "SCL" else -0.1,
                            nodata=None if n == "SCL" else nodata, valid=None if n == "SCL" else f"{n}.raw &gt; 0")
                 for i, n in enumerate(names)]
        bands.append(_snap_band(len(names), "ndvi", "float32", w, h, expression="(B8 - B4) / (B8 + B4)"))
        header = ('<?xml version="1.0" encoding="ISO-8859-1"?><Dimap_Document name="S2_export.dim">'
                  '<Metadata_Id><METADATA_FORMAT version="2.12.1">DIMAP</METADATA_FORMAT></Metadata_Id>'
                  "<Dataset_Id><DATASET_SERIES>BEAM-PRODUCT</DATASET_SERIES><DATASET_NAME>S2A_MSIL2A_20240805_resampled"
                  "</DATASET_NAME></Dataset_Id><Production><PRODUCT_TYPE>S2_MSI_Level-2A</PRODUCT_TYPE>"
                  "<PRODUCT_SCENE_RASTER_START_TIME>05-AUG-2024 08:26:01.024000</PRODUCT_SCENE_RASTER_START_TIME>"
                  "<PRODUCT_SCENE_RASTER_STOP_TIME>05-AUG-2024 08:26:01.024000</PRODUCT_SCENE_RASTER_STOP_TIME>"
                  f"</Production><Raster_Dimensions><NCOLS>{w}</NCOLS><NROWS>{h}</NROWS>"
                  f"<NBANDS>{len(bands)}</NBANDS></Raster_Dimensions>"
                  f"<Image_Interpretation>{''.join(bands)}</Image_Interpretation>"
                  '<Dataset_Sources><MDElem name="metadata"><MDElem name="Level-2A_User_Product">'
                  '<MDATTR name="PROCESSING_BASELINE" type="ascii">05.10</MDATTR></MDElem></MDElem></Dataset_Sources>'
                  "</Dimap_Document>")
    geokeys = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg)
    tags = [(33550, "d", 3, (t.a, -t.e, 0.0), True), (33922, "d", 6, (0, 0, 0, t.c, t.f, 0), True),
            (34735, "H", len(geokeys), geokeys, True)]
    if header is not None:
        tags.append((SNAP_HEADER_TAG, "s", 0, header, True))
    tifffile.imwrite(dst, data, byteorder=">", planarconfig="separate", photometric="minisblack", rowsperstrip=h,
                     compression=None, extratags=tags, metadata=None, bigtiff=bigtiff)
    return dst


def test_sentinel2_exported_by_snap_reads_as_the_product_it_was(tmp_path):
    snap = snap_export(AKROTIRI, tmp_path / "S2_export.tif")
    with rasterio.open(snap) as ds:
        assert ds.descriptions == (None,) * 7 and ds.scales == (1.0,) * 7  # GDAL: unnamed raw counts
    p, ref = open_product(snap), open_product(AKROTIRI)
    assert p.band_names == [*ref.band_names, "ndvi"]
    assert (p.name, p.product_type) == ("S2A_MSIL2A_20240805_resampled", "S2_MSI_Level-2A")
    assert p.start_time.isoformat().startswith("2024-08-05T08:26:01")
    with rasterio.open(AKROTIRI) as ds:
        dn = ds.read()
    for i, name in enumerate(ref.band_names):
        expected = ref.band(name).data.compute()
        if name != "SCL":  # SNAP's no-data 0 of the header: NaN
            expected = np.where(dn[i] == 0, np.nan, expected)
        np.testing.assert_allclose(p.band(name).data.compute(), expected, rtol=1e-6)
    b4 = p.band("B4")
    assert b4.wavelength == 664.6 and b4.valid_expression == "B4.raw > 0"
    b8, b4 = p.band("B8").data.compute(), b4.data.compute()
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_allclose(p.band("ndvi").data.compute(), (b8 - b4) / (b8 + b4), rtol=1e-5)
    assert p.metadata.element("Level-2A_User_Product").attributes["PROCESSING_BASELINE"] == "05.10"


def test_bigtiff_exported_by_snap_reads_the_same(tmp_path):
    big = open_product(snap_export(AKROTIRI, tmp_path / "S2_export.tif", bigtiff=True))
    classic = open_product(snap_export(AKROTIRI, tmp_path / "S2_classic.tif"))
    assert Path(big.file_location).read_bytes()[2:4] == b"\x00\x2b"  # BigTIFF, big-endian
    assert big.band_names == classic.band_names == ["B2", "B3", "B4", "B6", "B8", "B11", "SCL", "ndvi"]
    np.testing.assert_array_equal(big.band("B11").data.compute(), classic.band("B11").data.compute())


def test_sentinel2_exported_by_snap_classifies_as_the_product_it_was(tmp_path):
    # no no-data in the header, as none in the original: the same pixels, the same map
    snap = snap_export(AKROTIRI, tmp_path / "S2_export.tif", nodata=None)
    maps = []
    for name, image in (("snap", snap), ("ref", AKROTIRI)):
        out = tmp_path / f"{name}_classes.tif"
        run_graph(load_graph(S2_GRAPH, {"input": str(image), "output": str(out), "labels": ""}),
                  ExecutionContext(overwrite=True))
        with rasterio.open(out) as ds:
            maps.append(ds.read(1))
    np.testing.assert_array_equal(maps[0], maps[1])
    assert len(np.unique(maps[1])) >= 3


def test_class_map_exported_by_snap_keeps_its_legend(tmp_path):
    """The Progressive Classifier's class map run in SNAP (gpt) and written as GeoTIFF: the adapter's index
    coding and colours travel in the header, so ChangeDetection and timeseries read its classes."""
    from snap_operators.core.legend import LAND_COVER

    classes = np.random.default_rng(0).integers(1, 6, (40, 60)).astype(np.uint8)
    classes[0, :] = 255
    coding = "".join(f"<Index><INDEX_NAME>{c.name}</INDEX_NAME><INDEX_VALUE>{c.value}</INDEX_VALUE>"
                     f"<INDEX_DESCRIPTION /></Index>" for c in LAND_COVER)
    palette = "".join(f"<Color_Palette_Point><SAMPLE>{c.value}.0</SAMPLE><COLOR red=\"{c.color[0]}\" "
                      f"green=\"{c.color[1]}\" blue=\"{c.color[2]}\" alpha=\"255\" /><LABEL>{c.name}</LABEL>"
                      "</Color_Palette_Point>" for c in LAND_COVER)
    band = _snap_band(0, "class_id", "uint8", 60, 40, nodata=255.0).replace(
        "</Spectral_Band_Info>", "<INDEX_CODING_NAME>class_id</INDEX_CODING_NAME></Spectral_Band_Info>")
    header = ('<?xml version="1.0" encoding="ISO-8859-1"?><Dimap_Document name="classes.dim">'
              "<Dataset_Id><DATASET_NAME>classes</DATASET_NAME></Dataset_Id>"
              "<Raster_Dimensions><NCOLS>60</NCOLS><NROWS>40</NROWS><NBANDS>1</NBANDS></Raster_Dimensions>"
              f'<Index_Coding name="class_id">{coding}</Index_Coding>'
              f"<Image_Display><Band_Statistics><BAND_INDEX>0</BAND_INDEX>{palette}</Band_Statistics></Image_Display>"
              f"<Image_Interpretation>{band}</Image_Interpretation></Dimap_Document>")
    path = tmp_path / "classes.tif"
    tifffile.imwrite(path, classes, byteorder=">", extratags=[(SNAP_HEADER_TAG, "s", 0, header, True)], metadata=None)
    b = open_product(path).band("class_id")
    assert [(c.value, c.name, c.color) for c in b.classes] == [(c.value, c.name, c.color) for c in LAND_COVER]
    assert b.no_data == 255
    np.testing.assert_array_equal(b.data.compute(), classes)


def test_header_that_does_not_fit_the_file_is_left_out_with_a_warning(tmp_path, caplog):
    # a header listing 6 bands with data (and ndvi) on a file holding 5
    header = snap_header(snap_export(AKROTIRI, tmp_path / "full.tif", drop=("SCL",)))
    assert header is not None and sum(not b.is_virtual for b in header.bands) == 6
    text = tifffile.TiffFile(tmp_path / "full.tif").pages[0].tags[SNAP_HEADER_TAG].value
    odd = snap_export(AKROTIRI, tmp_path / "odd.tif", header=text, drop=("SCL", "B11"))
    with caplog.at_level(logging.WARNING):
        p = open_product(odd)
    assert p.band_names == [f"band_{i}" for i in range(1, 6)]
    assert "SNAP's header lists 6 bands with data, the file holds 5" in caplog.text


def test_unreadable_header_is_left_out_with_a_warning(tmp_path, caplog):
    broken = snap_export(AKROTIRI, tmp_path / "broken.tif", header="<Dimap_Document><NCOLS>", drop=("SCL",))
    with caplog.at_level(logging.WARNING):
        p = open_product(broken)
    assert p.band_names == [f"band_{i}" for i in range(1, 7)]
    assert "SNAP's DIMAP header in the file cannot be read" in caplog.text
    # and a GeoTIFF without the tag (GDAL's, the project's) has no header
    assert snap_header(AKROTIRI) is None


def test_oversized_header_tag_is_not_read(tmp_path, caplog, monkeypatch):
    from snap_operators.io import geotiff

    path = snap_export(AKROTIRI, tmp_path / "S2_export.tif")
    monkeypatch.setattr(geotiff, "SNAP_HEADER_MAX_BYTES", 1000)  # the header here is about 6 kB
    with caplog.at_level(logging.WARNING):
        assert snap_header(path) is None
    assert "more than a SNAP header holds: not read" in caplog.text
