"""Hostile inputs: every one is refused with one line, quickly, within bounded memory.

Two parts:

* a regression corpus (:func:`build_corpus`) of every hostile input found so
  far, each generated here from code and run through ``snap-pc run`` in a
  subprocess limited to 2 GiB and 60 s: exit 1, one ``Error:`` line naming
  the problem (``benchmarks/bench_hostile.py`` times the same cases);
* property-based tests (hypothesis) of the parsers: whatever the input, it
  parses or raises a :class:`~snap_operators.core.errors.SnapPcError`, never
  another exception type and never a hang.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from snap_operators.core.errors import SnapPcError
from snap_operators.core.limits import MAX_ERROR_CHARS

ROOT = Path(__file__).resolve().parents[2]
#: Address-space limit of each corpus subprocess: far below the machine, far above a refusal's needs.
MEMORY_LIMIT = 2 << 30
TIME_LIMIT = 60


@dataclass
class Case:
    """One hostile input: ``snap-pc`` arguments and a phrase its one-line error must contain."""

    name: str
    args: list[str]
    expect: str


def _graph(nodes: str) -> str:
    return f'<graph id="g"><version>1.0</version>{nodes}</graph>'


def _read_node(path, nid: str = "Read") -> str:
    return f'<node id="{nid}"><operator>Read</operator><parameters><file>{path}</file></parameters></node>'


def _write_graph(tmp: Path, name: str, text: str) -> str:
    p = tmp / f"{name}.xml"
    p.write_text(text, encoding="utf-8")
    return str(p)


def _tiny_tif(path: Path, dtype="float32", transform=None, count: int = 1) -> Path:
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=count, dtype=dtype, crs="EPSG:32638",
                       transform=transform or Affine(10, 0, 300000, 0, -10, 4000000)) as ds:
        ds.write(np.ones((count, 8, 8), dtype=dtype))
    return path


def _forged_tiff(path: Path, width: int, height: int) -> Path:
    """A hand-made 1-strip DEFLATE TIFF whose header claims `width` x `height` uint8 px but holds one byte."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 8),
               (277, 3, 1), (278, 4, height), (279, 4, 1)]
    ifd_offset = 9
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, typ, 1, value) if typ == 4 else struct.pack("<HHIHH", tag, typ, 1, value, 0)
        for tag, typ, value in entries) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", ifd_offset) + b"\x00" + ifd)
    return path


def _onnx(path: Path, props: dict, input_name: str = "bands") -> Path:
    onnx = pytest.importorskip("onnx") if "pytest" in sys.modules else __import__("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from snap_operators.io.onnx_model import ModelMetadata

    w = np.ones((2, 1, 1, 1), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", [input_name, "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 1, "h", "w"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2, "h", "w"])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMetadata("tiny", "1.0.0", ("band_1",), (0.0,), (1.0,), size_multiple=8, halo=8, opset=17,
                         class_ids=(1, 2), class_names=("a", "b"), class_colors=((0, 0, 0), (255, 255, 255)))
    for k, v in {**meta.to_props(), **props}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


def _rules_yaml(stages: str) -> str:
    return ("schema: snap-pc/rules/1\nname: r\nclasses:\n  - {id: 1, name: a, color: '#000000'}\nstages:\n" + stages)


def build_corpus(tmp: Path) -> list[Case]:
    """Every hostile input of issue 13, written under `tmp` (nothing big is stored)."""
    tmp.mkdir(parents=True, exist_ok=True)
    tif = _tiny_tif(tmp / "scene.tif")
    out = tmp / "out.tif"
    cases: list[Case] = []

    def run(name: str, graph_text: str, expect: str, **variables) -> None:
        args = ["run", _write_graph(tmp, name, graph_text), "--quiet"]
        if "${output}" in graph_text:  # an unused -P is warned about, which is a second line
            args.append(f"-Poutput={out}")
        cases.append(Case(name, args + [f"-P{k}={v}" for k, v in variables.items()], expect))

    def classify(name: str, rules_path: Path, expect: str) -> None:
        run(name, _graph(_read_node(tif) + '<node id="C"><operator>ProgressiveClassifier</operator><sources>'
                         f'<sourceProduct refid="Read"/></sources><parameters><rules>{rules_path}</rules>'
                         '</parameters></node>'), expect)

    # A 511-byte YAML alias bomb (66 s and 7.9 GB before).
    bomb = tmp / "bomb.yaml"
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\n")
    classify("yaml_alias_bomb", bomb, "MAX_RULE_NODES")
    # 64 stages (within MAX_STAGES) of 8 conditions: crashed the kernel compiler after 83 s.
    cond = "{index: NDVI, min: 0.1, max: 0.9}"
    big = tmp / "stages64.yaml"
    big.write_text(_rules_yaml("".join(f"  - {{class: 1, conditions: [{', '.join([cond] * 8)}]}}\n" for _ in range(64))))
    classify("rules_64_stages", big, "MAX_RULE_CONDITIONS")
    deep_json = tmp / "deep.json"
    deep_json.write_text("[" * 100_000 + "]" * 100_000)
    classify("rules_deep_json", deep_json, "MAX_RULE_DEPTH")
    deep_yaml = tmp / "deep.yaml"
    deep_yaml.write_text("[" * 100_000 + "]" * 100_000)
    classify("rules_deep_yaml", deep_yaml, "MAX_RULE_DEPTH")
    # A 10,000-node graph (55 s and 3.4 GB to build, then over 300 s).
    run("graph_10000_nodes", _graph(_read_node(tif) + "".join(
        f'<node id="n{i}"><operator>BandMaths</operator><sources><sourceProduct refid="{"Read" if i == 0 else f"n{i - 1}"}"/>'
        "</sources></node>" for i in range(10_000))), "MAX_GRAPH_NODES")
    run("graph_deep_xml", _graph('<node id="Read"><operator>Read</operator><parameters><file>'
                                 + "<a>" * 100_000 + "</a>" * 100_000 + "</file></parameters></node>"), "MAX_XML_DEPTH")
    # A 1 MB node id: the error line stays short.
    run("graph_long_node_id", _graph(_read_node(tmp / "missing.tif", "x" * 1_000_000 + "\u202e&#10;")), "file not found")
    # Graph paths that are not files.
    cases.append(Case("graph_dev_zero", ["run", "/dev/zero", "--quiet"], "not a regular file"))
    fifo = tmp / "graph.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    cases.append(Case("graph_fifo", ["run", str(fifo), "--quiet"], "not a regular file"))
    # Rasters: a 1 KB GeoTIFF claiming 1e6 x 1e6 px (90 s, 6.6 GB before), zero pixel size, complex values.
    forged = _forged_tiff(tmp / "forged.tif", 1_000_000, 1_000_000)
    run("geotiff_1e6_px", _graph(_read_node(forged)), "MAX_BAND_PIXELS")
    ratio = _forged_tiff(tmp / "ratio.tif", 40_000, 40_000)
    run("geotiff_claims_vs_size", _graph(_read_node(ratio)), "MAX_COMPRESSION_RATIO")
    cplx = _tiny_tif(tmp / "complex.tif", dtype="complex64")
    run("geotiff_complex", _graph(_read_node(cplx)), "real-valued")
    # SAFE: a .zip whose MTD is a compression bomb (6.3 GB, MemoryError before); an IMAGE_FILE with '../'.
    safe_zip = tmp / "S2A_MSIL1C_BOMB.zip"
    if not safe_zip.exists():
        with zipfile.ZipFile(safe_zip, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            with zf.open("S2A_MSIL1C_BOMB.SAFE/MTD_MSIL1C.xml", "w", force_zip64=True) as f:
                block = b" " * (1 << 20)
                for _ in range(40):
                    f.write(block)
    run("safe_zip_bomb", _graph(_read_node(safe_zip)), "MAX_MEMBER_BYTES")
    safe = tmp / "S2A_MSIL1C_ESCAPE.SAFE"
    safe.mkdir(exist_ok=True)
    (tmp / "secret").mkdir(exist_ok=True)
    _tiny_tif(tmp / "secret" / "T_B02.tif")
    (safe / "MTD_MSIL1C.xml").write_text(
        '<n1:Level-1C_User_Product xmlns:n1="x"><n1:General_Info><Product_Info><PROCESSING_LEVEL>Level-1C'
        "</PROCESSING_LEVEL><Product_Organisation><Granule_List><Granule><IMAGE_FILE>../secret/T_B02</IMAGE_FILE>"
        "</Granule></Granule_List></Product_Organisation></Product_Info><Product_Image_Characteristics>"
        "<QUANTIFICATION_VALUE>10000</QUANTIFICATION_VALUE></Product_Image_Characteristics></n1:General_Info>"
        "</n1:Level-1C_User_Product>")
    run("safe_image_file_dotdot", _graph(_read_node(safe)), "outside the product")
    # Parameters and expressions: big integers.
    bm = ('<node id="M"><operator>BandMaths</operator><sources><sourceProduct refid="Read"/></sources><parameters>'
          "<targetBands><targetBand><name>x</name><type>float32</type><expression>{expr}</expression></targetBand>"
          "</targetBands></parameters></node>")
    run("bandmaths_big_hex", _graph(_read_node(tif) + bm.format(expr="0x" + "f" * 400)), "64 bits")
    run("parameter_big_int", _graph(
        _read_node(tif) + '<node id="S"><operator>Subset</operator><sources><sourceProduct refid="Read"/></sources>'
        "<parameters><subSamplingX>1e300</subSamplingX></parameters></node>"), "int range")
    # ONNX models: an unbounded halo in the metadata (a 14.9 GiB allocation before), a foreign input name.
    try:
        import onnx  # noqa: F401
    except ImportError:
        return cases
    unet = ('<node id="U"><operator>AttentionUNetInference</operator><sources><sourceProduct refid="Read"/></sources>'
            "<parameters><modelFile>{model}</modelFile></parameters></node>")
    halo = _onnx(tmp / "halo.onnx", {"halo": str(10**6)})
    run("onnx_metadata_halo", _graph(_read_node(tif) + unet.format(model=halo)), "MAX_HALO")
    foreign = _onnx(tmp / "foreign.onnx", {}, input_name="x")
    run("onnx_foreign_input", _graph(_read_node(tif) + unet.format(model=foreign)), "snap-pc models take 'bands'")
    return cases


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def case_command(case: Case) -> tuple[list[str], dict]:
    """Command line and environment of ``snap-pc`` on `case`."""
    return [sys.executable, "-m", "snap_operators.apps.cli", *case.args], {**os.environ, "PYTHONPATH": str(ROOT)}


def run_case(case: Case, cwd: Path) -> subprocess.CompletedProcess:
    """``snap-pc`` on `case` in a subprocess bounded in memory and time."""
    argv, env = case_command(case)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIME_LIMIT,
                          preexec_fn=_limit_memory)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    return tmp, {c.name: c for c in build_corpus(tmp)}


CASE_NAMES = ["yaml_alias_bomb", "rules_64_stages", "rules_deep_json", "rules_deep_yaml", "graph_10000_nodes",
              "graph_deep_xml", "graph_long_node_id", "graph_dev_zero", "graph_fifo", "geotiff_1e6_px",
              "geotiff_claims_vs_size", "geotiff_complex", "safe_zip_bomb",
              "safe_image_file_dotdot", "bandmaths_big_hex", "parameter_big_int", "onnx_metadata_halo",
              "onnx_foreign_input"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_corpus_case_is_one_line_exit_1(corpus, name):
    tmp, cases = corpus
    if name not in cases:
        pytest.skip("onnx (the 'train' extra) builds the model cases")
    proc = run_case(cases[name], tmp)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr[-2000:]
    assert len(lines[0]) <= len("Error: ") + MAX_ERROR_CHARS
    assert "\x1b" not in lines[0] and "\u202e" not in lines[0] and "Traceback" not in lines[0]
    assert cases[name].expect in lines[0]
    assert not lines[0].startswith("Error: ") or "(run with -e" not in lines[0]  # a SnapPcError, not a raw one


def test_zero_pixel_size_refused_before_arrays():
    """GDAL drops a GeoTIFF's zero pixel scale, so the check is exercised on a reader's band description."""
    from affine import Affine

    from snap_operators.core.errors import ProductReadError
    from snap_operators.io.raster_bands import BandSource, build_bands

    source = BandSource("b", "/nonexistent.tif", 1, (8, 8), "float32", transform=Affine(0, 0, 3e5, 0, -10, 4e6))
    with pytest.raises(ProductReadError, match="zero or non-finite pixel size"):
        build_bands([source], where="x.dim")


# --- properties ---------------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(deadline=2000, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def _parses_or_refuses(fn, *args) -> None:
    try:
        fn(*args)
    except SnapPcError as exc:
        assert "\n" not in str(exc) and len(str(exc)) <= MAX_ERROR_CHARS


_xml_piece = st.sampled_from(["<graph>", "</graph>", "<node id='a'>", "</node>", "<operator>Read</operator>",
                              "<sources>", "</sources>", "<sourceProduct refid='a'/>", "<version>1.0</version>",
                              "<parameters>", "</parameters>", "<file>x</file>", "<!DOCTYPE x>", "&x;", "<a>",
                              "</a>", "\x00", "${v}", "<node id='b'><operator>W</operator></node>"])


@SETTINGS
@given(st.lists(_xml_piece, max_size=40).map("".join) | st.text(max_size=300))
def test_graph_parser_parses_or_refuses(text):
    from snap_operators.engine.graph import parse_graph

    def parse_and_check(t):
        parse_graph("inline", text=t).check()

    _parses_or_refuses(parse_and_check, text)


_expr_piece = st.sampled_from(["a", "b", "1", "0x", "ff", "1e999", "(", ")", "+", "-", "*", "/", "?", ":", "&&", "||",
                               "!", "==", "<", "sqrt(", "max(", ",", "if", "then", "else", "NaN", "'q'", " ", "."])


@SETTINGS
@given(st.lists(_expr_piece, max_size=30).map("".join) | st.text(max_size=100))
def test_bandmaths_parser_parses_or_refuses(text):
    from snap_operators.core.expressions import parse

    def parse_and_eval(t):
        parse(t).evaluate({"a": np.ones((2, 2), np.float32), "b": np.zeros((2, 2), np.float32)}, shape=(2, 2))

    with np.errstate(all="ignore"):
        _parses_or_refuses(parse_and_eval, text)


_yaml_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["schema", "name", "classes", "stages", "id", "color", "class", "conditions", "any", "index",
                         "band", "min", "max", "adaptive", "samples", "percentile", "x"]), inner, max_size=4),
    max_leaves=30)


@SETTINGS
@given(_yaml_value, st.sampled_from(["yaml", "json"]))
def test_rule_loader_parses_or_refuses(value, fmt):
    import json

    import yaml

    from snap_operators.science.rules import SCHEMA, read_rule_text

    if isinstance(value, dict):
        value = {"schema": SCHEMA, **value}
    text = json.dumps(value) if fmt == "json" else yaml.safe_dump(value)
    _parses_or_refuses(read_rule_text, text, "prop", fmt)


@SETTINGS
@given(st.text(alphabet="ab[]{}&*:,- \n'\"!|>", max_size=200))
def test_rule_loader_on_raw_yaml(text):
    from snap_operators.science.rules import read_rule_text

    _parses_or_refuses(read_rule_text, text, "prop", "yaml")


@SETTINGS
@given(st.dictionaries(st.sampled_from(["halo", "size_multiple", "input_bands", "norm_mean", "norm_std", "class_ids",
                                        "class_names", "class_colors", "layout", "opset"]),
                       st.text(max_size=20) | st.integers().map(str) | st.just("[1e999]"), max_size=6))
def test_onnx_metadata_parses_or_refuses(props):
    from snap_operators.io.onnx_model import ModelMetadata

    base = ModelMetadata("m", "1", ("B2",), (0.0,), (1.0,), size_multiple=8, halo=8, opset=17, class_ids=(1,),
                         class_names=("a",), class_colors=((0, 0, 0),)).to_props()

    def load_and_check(p):
        from snap_operators.science.inference import check_geometry

        meta = ModelMetadata.from_props(p, "prop")
        check_geometry(256, meta.halo, "center", meta)

    _parses_or_refuses(load_and_check, {**base, **props})


@pytest.mark.slow
@settings(deadline=None, max_examples=12)
@given(st.integers(1, 2**40), st.integers(1, 2**40))
def test_raster_header_claims_are_bounded(tmp_path_factory, width, height):
    """A forged header's size claim is refused or opened lazily, in a bounded subprocess."""
    tmp = tmp_path_factory.mktemp("claims")
    path = _forged_tiff(tmp / "c.tif", min(width, 2**32 - 1), min(height, 2**32 - 1))
    code = ("import sys\nfrom snap_operators.core.errors import SnapPcError\nfrom snap_operators.io import open_product\n"
            f"try:\n    open_product({str(path)!r})\nexcept SnapPcError as e:\n    print('refused', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=TIME_LIMIT,
                          preexec_fn=_limit_memory)
    assert proc.returncode == 0, proc.stderr[-1500:]


@pytest.fixture(scope="module")
def real_safe(tmp_path_factory, make_safe):
    """A real L2A SAFE's metadata (../shared/data) with tiny band images, and a 'secret' file beside it."""
    import shutil

    name = "S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE"
    base = tmp_path_factory.mktemp("safe_base")
    make_safe(name, base)
    (base / "secret").mkdir()
    _tiny_tif(base / "secret" / "T_B02_10m.tif")
    shutil.copy(base / "secret" / "T_B02_10m.tif", base / "secret" / "T_B02_10m.jp2")  # GDAL opens by content
    return base / name


_escape = st.sampled_from(["../secret/T_B02_10m", "../../secret/T_B02_10m", "/{secret}/T_B02_10m",
                           "GRANULE/../../secret/T_B02_10m", "GRANULE\\..\\..\\secret\\T_B02_10m", None])


@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(_escape, min_size=1, max_size=12), st.sampled_from(["10000", "0", "-5", "1e999", "x", ""]))
def test_safe_opener_parses_or_refuses(real_safe, tmp_path_factory, escapes, quantification):
    """A real SAFE whose MTD points band images outside the product, or carries a hostile quantification,
    opens without reading anything outside the product, or is refused in one line."""
    import re
    import shutil

    from snap_operators.io import open_product
    from snap_operators.io import safe as safe_module

    tmp = tmp_path_factory.mktemp("safe")
    safe = tmp / real_safe.name
    shutil.copytree(real_safe, safe)
    shutil.copytree(real_safe.parent / "secret", tmp / "secret")
    mtd = next(safe.glob("MTD_MSIL*.xml"))
    entries = iter(escapes)

    def swap(m):
        escape = next(entries, None)
        return m[0] if escape is None else f"<IMAGE_FILE>{escape.format(secret=tmp / 'secret')}</IMAGE_FILE>"

    text = re.sub(r"<IMAGE_FILE>[^<]*</IMAGE_FILE>", swap, mtd.read_text(encoding="utf-8"))
    text = re.sub(r"<QUANTIFICATION_VALUE([^>]*)>[^<]*<", rf"<QUANTIFICATION_VALUE\1>{quantification}<", text)
    mtd.write_text(text, encoding="utf-8")
    opened, real = [], safe_module.BandSource

    def recording(*args, **kwargs):
        source = real(*args, **kwargs)
        opened.append(source.path)
        return source

    safe_module.BandSource = recording
    try:
        open_product(str(safe))
    except SnapPcError as exc:
        assert "\n" not in str(exc) and len(str(exc)) <= MAX_ERROR_CHARS
    finally:
        safe_module.BandSource = real
    for path in opened:  # whatever was opened lies inside the product
        assert Path(path).resolve().is_relative_to(safe.resolve()), path
