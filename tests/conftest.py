"""Fixtures shared by the test modules (no test module imports another).

* data: ``shared_data`` (``../shared/data``, skipping when absent; its tests get the ``real_data``
  marker here), ``jpy_api`` (the SNAP stand-in of tests/snap);
* builders: ``make_band``, ``make_product`` (in-memory products from numpy arrays),
  ``write_tif`` (small GeoTIFFs), ``write_s2`` (a two-band B4/B8 scene), ``make_dimap``
  (a hand-made one-band BEAM-DIMAP), ``make_safe`` (real SAFE metadata with generated images);
* the command line: ``ndvi_graph``, ``run_cli``, ``one_line_error``, ``files_in``;
* the classifier: ``classifier_graph``, ``classifier_indices``, ``bimodal_scene``, ``otsu_rules``.

Markers (pyproject.toml): ``real_data`` (reads ../shared/data or tests/data), ``slow``,
``distributed``; select with ``-m``, e.g. ``pytest -m "not slow and not distributed"``.
"""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import SHARED_DATA
from rasterio.crs import CRS

from snap_operators.core.product import Band, Product

# Before any test module imports TensorFlow at collection: the package loads the process's SQLite
# users first (snap_pc_models/__init__.py says why), or the GeoPackage fixtures of every module
# collected after a TensorFlow one would fail ("no such module: rtree").
import snap_pc_models  # noqa: E402, F401, I001

TESTS = Path(__file__).resolve().parent
#: The default grid of the builders: 10 m pixels on UTM 33N.
UTM33 = CRS.from_epsg(32633)
T10 = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5800000.0)
#: No-data of ``make_band``/``make_product`` when none is given: NaN for float arrays, none for integers.
AUTO = "auto"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)


# --- data ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_data():
    """``shared_data(*parts)``: the path ../shared/data/<parts>; skips the test when it is absent.

    Every test asking for this fixture (also through another fixture) carries the ``real_data`` marker.
    """

    def need(*parts: str) -> Path:
        path = SHARED_DATA.joinpath(*parts)
        if not path.exists():
            pytest.skip(f"../shared/data not found: {path}")
        return path

    return need


@pytest.fixture
def linear_copy(tmp_path):
    """``linear_copy(folder)``: a new folder holding the Sentinel-1 GeoTIFFs of `folder` (``*_VV.tif``,
    ``*_VH.tif``, in dB: BigEarthNet's) as linear intensity, float32, as ASF's terrain-corrected products come."""

    def write(folder: Path, name: str = "linear") -> Path:
        out = tmp_path / name
        out.mkdir()
        for f in sorted(Path(folder).glob("*_V?.tif")):
            with rasterio.open(f) as src:
                profile, db = src.profile, src.read(1).astype("float32")
            with rasterio.open(out / f.name, "w", **{**profile, "dtype": "float32"}) as dst:
                dst.write(10 ** (db / 10), 1)
        return out

    return write


@pytest.fixture(scope="session")
def jpy_api():
    """``snap_standin.jpy_api`` (tests/snap): the strict stand-in of SNAP's Java API."""
    try:
        return importlib.import_module("snap_standin.jpy_api")
    except ModuleNotFoundError:
        with pytest.MonkeyPatch.context() as mp:
            mp.syspath_prepend(str(TESTS / "snap"))
            return importlib.import_module("snap_standin.jpy_api")


# --- products and files -------------------------------------------------------------------------------


def _band(name, data, transform=T10, no_data=AUTO, chunks=32, **fields) -> Band:
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=chunks)
    if isinstance(no_data, str) and no_data == AUTO:
        no_data = float("nan") if arr.dtype.kind == "f" else None
    return Band(name, arr, transform, no_data, **fields)


@pytest.fixture(scope="session")
def make_band():
    """``make_band(name, data, transform=T10, no_data=AUTO, chunks=32, **fields)``: a lazy Band.

    `data` is a numpy array (chunked by `chunks`) or a dask array (kept); no-data AUTO is NaN for
    float data and none for integers; `fields` are Band's (unit, classes, description, ...).
    """
    return _band


@pytest.fixture(scope="session")
def make_product():
    """``make_product(bands, *, name="scene", product_type="", crs=UTM33, transform=T10, chunks=32,
    no_data=AUTO, dtype=None, start_time=None, stop_time=None, **band_fields)``: an in-memory Product.

    `bands` maps names to arrays (numpy or dask) or Bands, or is an iterable of Bands (kept as they
    are). Arrays are cast to `dtype` when given and become bands on `transform`; `no_data` is one
    value for every band or a dict by band name (AUTO for the others); `band_fields` go to every
    band built here (unit, classes, ...).
    """

    def build(bands, *, name="scene", product_type="", crs=UTM33, transform=T10, chunks=32, no_data=AUTO,
              dtype=None, start_time=None, stop_time=None, **band_fields) -> Product:
        p = Product(name, product_type, crs=crs, start_time=start_time, stop_time=stop_time)
        items = bands.items() if isinstance(bands, dict) else ((b.name, b) for b in bands)
        for n, data in items:
            if isinstance(data, Band):
                p.add_band(data)
                continue
            if dtype is not None:
                data = data.astype(dtype) if isinstance(data, da.Array) else np.asarray(data, dtype)
            nd = no_data.get(n, AUTO) if isinstance(no_data, dict) else no_data
            p.add_band(_band(n, data, transform, nd, chunks, **band_fields))
        return p

    return build


def _write_tif(path, bands, *, crs="EPSG:32633", transform=T10, nodata=None, dtype=None, descriptions=None,
               scales=None, offsets=None, units=None, tags=None, band_tags=None, colormap=None, **profile) -> Path:
    if isinstance(bands, dict):
        descriptions = descriptions or list(bands)
        bands = list(bands.values())
    arrays = [np.asarray(a) for a in bands]  # a list of 2-D arrays or a (bands, rows, cols) stack
    dtype = dtype or arrays[0].dtype
    h, w = arrays[0].shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=len(arrays), dtype=dtype, crs=crs,
                       transform=transform, nodata=nodata, **profile) as ds:
        for i, a in enumerate(arrays, start=1):
            ds.write(a.astype(dtype), i)
            if descriptions and descriptions[i - 1]:
                ds.set_band_description(i, descriptions[i - 1])
            if band_tags and band_tags.get(i):
                ds.update_tags(i, **band_tags[i])
        if scales:
            ds.scales = scales
        if offsets:
            ds.offsets = offsets
        if units:
            ds.units = units
        if tags:
            ds.update_tags(**tags)
        if colormap:
            ds.write_colormap(1, colormap)
    return Path(path)


@pytest.fixture(scope="session")
def write_tif():
    """``write_tif(path, bands, *, crs="EPSG:32633", transform=T10, nodata=None, dtype=None,
    descriptions=None, scales=None, offsets=None, units=None, tags=None, band_tags=None, colormap=None,
    **profile)``: a small GeoTIFF; returns its path.

    `bands` is {description: 2-D array}, a list of 2-D arrays or a (bands, rows, cols) stack; the
    arrays are cast to `dtype` (default: the first one's); `band_tags` maps 1-based band indices to
    tags; `colormap` is band 1's; `profile` goes to rasterio (tiled, blockxsize, ...).
    """
    return _write_tif


@pytest.fixture(scope="session")
def write_s2(write_tif):
    """``write_s2(path, size=96, seed=0)``: a Sentinel-2-like GeoTIFF of bands B4, B8 (float32
    reflectance, NaN no-data, a 3 x 3 NaN corner) on 10 m UTM 33N; returns the (2, size, size) data."""

    def write(path, size=96, seed=0):
        rng = np.random.default_rng(seed)
        data = rng.uniform(0.01, 0.6, (2, size, size)).astype("float32")  # random: compresses badly
        data[:, :3, :3] = np.nan
        write_tif(path, {"B4": data[0], "B8": data[1]}, nodata=np.nan)
        return data

    return write


@pytest.fixture(scope="session")
def make_dimap():
    """``make_dimap(folder, raw, *, byte_order=">", extra="", factor=0.5, offset=1.0, nodata_used="true",
    nodata="0.0", dtype="int16", envi_type=2)``: ``folder/hand.dim``, one band 'b' holding `raw`
    as an ENVI image, scaled and with a no-data value as given (`extra`: more Spectral_Band_Info XML)."""

    def make(folder, raw: np.ndarray, *, byte_order=">", extra="", factor=0.5, offset=1.0,
             nodata_used="true", nodata="0.0", dtype="int16", envi_type=2) -> Path:
        data = folder / "hand.data"
        data.mkdir(exist_ok=True)
        h, w = raw.shape
        raw.astype(np.dtype(dtype).newbyteorder(byte_order)).tofile(data / "b.img")
        (data / "b.hdr").write_text(
            f"ENVI\nsamples = {w}\nlines = {h}\nbands = 1\nheader offset = 0\ndata type = {envi_type}\n"
            f"interleave = bsq\nbyte order = {1 if byte_order == '>' else 0}\n")
        (folder / "hand.dim").write_text(f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<Dimap_Document name="hand.dim">
  <Production><PRODUCT_TYPE>HAND</PRODUCT_TYPE>
    <PRODUCT_SCENE_RASTER_START_TIME>01-FEB-2020 00:00:01</PRODUCT_SCENE_RASTER_START_TIME></Production>
  <Raster_Dimensions><NCOLS>{w}</NCOLS><NROWS>{h}</NROWS><NBANDS>1</NBANDS></Raster_Dimensions>
  <Data_Access><Data_File><DATA_FILE_PATH href="hand.data/b.hdr"/><BAND_INDEX>0</BAND_INDEX></Data_File></Data_Access>
  <Image_Interpretation><Spectral_Band_Info>
    <BAND_INDEX>0</BAND_INDEX><BAND_NAME>b</BAND_NAME><DATA_TYPE>{dtype}</DATA_TYPE>
    <SCALING_FACTOR>{factor}</SCALING_FACTOR><SCALING_OFFSET>{offset}</SCALING_OFFSET>
    <NO_DATA_VALUE_USED>{nodata_used}</NO_DATA_VALUE_USED><NO_DATA_VALUE>{nodata}</NO_DATA_VALUE>{extra}
  </Spectral_Band_Info></Image_Interpretation>
</Dimap_Document>""")
        return folder / "hand.dim"

    return make


class SafeMaker:
    """Copies a real SAFE's metadata (../shared/data/safe_s2_metadata) and writes small band images
    (lossless JPEG2000 for L1C, GeoTIFF for L2A) at the paths it lists, each a 600 m square."""

    #: Native resolution of each band (m).
    native = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10, "B8A": 20,
              "B9": 60, "B10": 60, "B11": 20, "B12": 20}
    #: Image edge (px) per resolution.
    pixels = {10: 60, 20: 30, 60: 10}
    #: Upper-left corner of every image: deliberately not the MTD_TL origin.
    origin = (100000.0, 200000.0)

    def __init__(self, metadata: Path):
        self.metadata = metadata  # the folder of the real metadata sets

    @staticmethod
    def epsg(name: str) -> int:
        """UTM EPSG code of a product, from its tile id (T46RER: zone 46, latitude band R, north)."""
        tile = re.search(r"_T(\d\d)([C-X])", name)
        return (32600 if tile[2] >= "N" else 32700) + int(tile[1])

    def __call__(self, name: str, dest: Path, seed: int = 0) -> dict[str, np.ndarray]:
        """Product `name` under `dest`; returns the native images' digital numbers per band."""
        safe = dest / name
        shutil.copytree(self.metadata / name, safe)
        mtd = next(safe.glob("MTD_MSIL*.xml"))
        entries = re.findall(r"<IMAGE_FILE>([^<]+)</IMAGE_FILE>", mtd.read_text(encoding="utf-8"))
        l2a = "MSIL2A" in mtd.name
        rng = np.random.default_rng(seed)
        native = {}
        for entry in entries:
            m = re.search(r"_(B\d\d|B8A)(?:_(\d+)m)?$", entry)
            if not m:
                continue
            band = "B8A" if m[1].upper() == "B8A" else f"B{int(m[1][1:])}"
            res = int(m[2]) if m[2] else self.native[band]
            n = self.pixels[res]
            dn = rng.integers(1, 20000, (n, n)).astype(np.uint16)
            dn[0, :] = 0  # NODATA
            dn[1, :3] = (1, 999, 1000)  # around the -1000 offset
            path = safe / (entry + (".tif" if l2a else ".jp2"))
            path.parent.mkdir(parents=True, exist_ok=True)
            profile = dict(width=n, height=n, count=1, dtype="uint16", crs=f"EPSG:{self.epsg(name)}",
                           transform=Affine(res, 0.0, self.origin[0], 0.0, -res, self.origin[1]))
            if l2a:
                profile.update(driver="GTiff")
            else:
                profile.update(driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
            with rasterio.open(path, "w", **profile) as ds:
                ds.write(dn, 1)
            if res == self.native[band]:
                native[band] = dn
        return native


@pytest.fixture(scope="session")
def make_safe(shared_data):
    """``make_safe(name, dest, seed=0)``: real SAFE metadata `name` with generated images under `dest`
    (a :class:`SafeMaker`: ``.metadata`` is the real sets' folder, ``.native``, ``.pixels``, ``.origin``
    the layout); skips when ../shared/data/safe_s2_metadata is absent."""
    return SafeMaker(shared_data("safe_s2_metadata"))


# --- the command line ---------------------------------------------------------------------------------


#: Read -> BandMaths (one float32 band 'ndvi' of ${expr}) -> Write GeoTIFF ${output}.
NDVI_GRAPH = """<graph id="g"><version>1.0</version>
  <node id="Read"><operator>Read</operator><sources/><parameters><file>${input}</file></parameters></node>
  <node id="BandMaths"><operator>BandMaths</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><targetBands><targetBand><name>ndvi</name><type>float32</type>
      <expression>${expr}</expression><noDataValue>NaN</noDataValue></targetBand></targetBands></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="BandMaths"/></sources>
    <parameters><file>${output}</file><formatName>GeoTIFF</formatName></parameters></node>
</graph>"""


@pytest.fixture(scope="session")
def ndvi_graph():
    """Graph XML: Read ${input} -> BandMaths (float32 band 'ndvi' = ${expr}) -> Write GeoTIFF ${output}."""
    return NDVI_GRAPH


@pytest.fixture
def run_cli(capsys):
    """``run_cli(*args)``: ``snap-pc args`` in this process; returns (exit code, stdout, stderr)."""

    def run(*args):
        from snap_operators.apps.cli import main

        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.fixture(scope="session")
def one_line_error():
    """``one_line_error(stderr)``: the only line of `stderr`, asserted to be one ``Error: ...`` line."""
    return _one_line_error


@pytest.fixture(scope="session")
def files_in():
    """``files_in(folder)``: the sorted names in `folder`."""

    def names(folder) -> list[str]:
        return sorted(p.name for p in Path(folder).iterdir())

    return names


# --- the classifier -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def classifier_graph():
    """Graph XML: Read ${input} -> SpectralIndices (the S2 graph's) -> ProgressiveClassifier (mosul-5class)
    -> Write GeoTIFF ${output}, without Resample (for single-size inputs)."""
    return """<graph id="g"><version>1.0</version>
  <node id="Read"><operator>Read</operator><parameters><file>${input}</file></parameters></node>
  <node id="SpectralIndices"><operator>SpectralIndices</operator><sources><sourceProduct refid="Read"/></sources>
    <parameters><indices>NDVI,MNDWI,BI2,NDBI,NGBDI,PANTEX,BSI</indices></parameters></node>
  <node id="ProgressiveClassifier"><operator>ProgressiveClassifier</operator>
    <sources><sourceProduct refid="SpectralIndices"/></sources><parameters><rules>mosul-5class</rules></parameters></node>
  <node id="Write"><operator>Write</operator><sources><sourceProduct refid="ProgressiveClassifier"/></sources>
    <parameters><file>${output}</file><formatName>GeoTIFF</formatName></parameters></node>
</graph>"""


@pytest.fixture(scope="session")
def classifier_indices():
    """The spectral indices the classifier tests compute (every index a preset may use)."""
    return "NDVI,NDWI,MNDWI,NDBI,BSI,SAVI,NDMI,BI2,NGBDI,PANTEX"


@pytest.fixture(scope="session")
def bimodal_scene():
    """``bimodal_scene(n=200, seed=3)``: (x, y, group) float32 n x n: X has three modes (groups 0, 1, 2
    at -0.6, 0.1, 0.7); Y is high only in group 0 (0.8 vs -0.5), so a first stage claims it through Y."""

    def scene(n=200, seed=3):
        rng = np.random.default_rng(seed)
        group = rng.choice(3, size=(n, n), p=[0.5, 0.25, 0.25])
        x = np.choose(group, [-0.6, 0.1, 0.7]) + rng.normal(0, 0.04, (n, n))
        y = np.where(group == 0, 0.8, -0.5) + rng.normal(0, 0.04, (n, n))
        return x.astype(np.float32), y.astype(np.float32), group

    return scene


@pytest.fixture(scope="session")
def otsu_rules():
    """Rules text: stage 1 claims class 1 by NDWI >= 0.2, stage 2 class 3 by NDVI above an Otsu bound."""
    from snap_operators.science.rules import SCHEMA

    return (f"schema: {SCHEMA}\nname: t\n"
            "classes:\n"
            "  - {id: 1, name: Water, color: \"#0070ff\"}\n"
            "  - {id: 3, name: Trees, color: [38, 115, 0]}\n"
            "stages:\n"
            "  - {name: first, class: 1, conditions: [{index: NDWI, min: 0.2}]}\n"
            "  - {name: second, class: 3, conditions: [{index: NDVI, min: {otsu: {bins: 200}}}]}\n")
