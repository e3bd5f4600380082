"""SNAP integration files: descriptors, services file, install/uninstall, NBM, doctor."""

from __future__ import annotations

import ast
import dataclasses
import io
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import defusedxml.ElementTree as DET
import pytest

from snap_operators.apps import cli
from snap_operators.core.errors import SnapPcError
from snap_operators.core.operator import operators
from snap_operators.core.spec import Parameter
from snap_operators.engine.graph import load_properties, parse_graph
from snap_operators.snap import descriptors as D
from snap_operators.snap import install as I

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
REAL = DATA / "snap_descriptors"
GRAPHS = REPO / "graphs"

#: Fields of SNAP's DefaultOperatorDescriptor / DefaultParameterDescriptor /
#: DefaultSourceProductDescriptor (snap-engine, snap-gpf descriptor package):
#: its XML reader rejects any other element.
OPERATOR_FIELDS = {"name", "operatorClass", "alias", "label", "version", "description", "authors", "copyright",
                   "internal", "autoWriteSuppressed", "namedSourceProducts", "sourceProducts", "parameters",
                   "targetProduct", "targetProperties"}
PARAMETER_FIELDS = {"name", "alias", "dataType", "defaultValue", "description", "label", "unit", "interval",
                    "valueSet", "condition", "pattern", "format", "notNull", "notEmpty", "rasterDataNodeClass",
                    "validatorClass", "converterClass", "domConverterClass", "itemAlias", "deprecated"}
SOURCE_FIELDS = {"name", "alias", "label", "description", "optional", "productType", "bands"}
#: dataTypes SNAP's JavaTypeConverter resolves: primitives, java.lang / java.util names, qualified classes.
SNAP_TYPES = {"double", "float", "int", "long", "short", "byte", "boolean", "String", "String[]",
              "java.lang.String", "java.io.File", "java.lang.Integer", "java.lang.Double", "java.lang.Float",
              "java.lang.Boolean"}


def _modules_present(plugin_dir: Path = D.PLUGIN_DIR) -> bool:
    return all((plugin_dir / f"{op.module}.py").is_file() for op in D.PLUGIN_OPERATORS)


@pytest.fixture
def plugin_dir(tmp_path):
    """A copy of the package's plugin folder (the thin modules are another part of the project)."""
    if not _modules_present():
        pytest.skip("thin plugin modules snap_operators/snap/plugin/snap_pc_*.py not present yet")
    dst = tmp_path / "plugin"
    shutil.copytree(D.PLUGIN_DIR, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path below root -> content (None for folders)."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[p.relative_to(root).as_posix()] = None if p.is_dir() else p.read_bytes()
    return out


# --- descriptors -------------------------------------------------------------------------


def test_committed_descriptors_are_current():
    assert D.stale(D.PLUGIN_DIR) == [], "run python -m snap_operators.snap.descriptors --write"
    assert D.main(["--check"]) == 0


def test_generate_reproduces_committed_files(tmp_path):
    written = D.generate(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == set(D.render())
    for p in written:
        rel = p.relative_to(tmp_path)
        assert p.read_bytes() == (D.PLUGIN_DIR / rel).read_bytes()
        assert stat.S_IMODE(p.stat().st_mode) == D.default_mode(0o666)  # not mkstemp's private 0600


def test_spec_change_without_regeneration_is_stale(monkeypatch, tmp_path):
    op = D.PLUGIN_OPERATORS[0]
    spec = D.operator_spec(op.alias)
    changed = dataclasses.replace(spec, parameters=spec.parameters + (Parameter("extraKnob", "int", default=3),))
    real = D.operator_spec
    monkeypatch.setattr(D, "operator_spec", lambda alias: changed if alias == op.alias else real(alias))
    assert D.stale(D.PLUGIN_DIR) == [op.info_file]
    assert D.main(["--check"]) == 1
    D.generate(tmp_path)
    assert "<name>extraKnob</name>" in (tmp_path / op.info_file).read_text()
    assert D.stale(tmp_path) == []


def test_stale_reports_edited_missing_and_orphan_files(tmp_path):
    D.generate(tmp_path)
    first = D.PLUGIN_OPERATORS[0].info_file
    (tmp_path / first).write_text((tmp_path / first).read_text().replace("<version>", "<version>9"))
    (tmp_path / D.SERVICES_PATH).unlink()
    (tmp_path / "snap_pc_gone-info.xml").write_text("<operator/>")
    assert D.stale(tmp_path) == sorted([first, D.SERVICES_PATH, "snap_pc_gone-info.xml"])
    D.generate(tmp_path)
    assert D.stale(tmp_path) == [] and not (tmp_path / "snap_pc_gone-info.xml").exists()


def test_mapping_table_names_registered_operators():
    registered = operators()
    modules = [op.module for op in D.PLUGIN_OPERATORS]
    assert len(set(modules)) == len(modules)
    for op in D.PLUGIN_OPERATORS:
        assert op.alias in registered
        assert op.module.startswith("snap_pc_") and op.module.isidentifier() and op.class_name.isidentifier()
        assert D.plugin_operator(op.alias) is op


@pytest.mark.parametrize("op", D.PLUGIN_OPERATORS, ids=lambda op: op.alias)
def test_info_xml_matches_spec(op):
    spec = D.operator_spec(op.alias)
    root = DET.parse(D.PLUGIN_DIR / op.info_file).getroot()
    assert root.tag == "operator"
    assert {c.tag for c in root} <= OPERATOR_FIELDS
    assert root.findtext("operatorClass") == "eu.esa.snap.snappy.gpf.PyOperator"
    assert root.findtext("alias") == spec.alias
    assert root.findtext("name") == f"{op.module}.{op.class_name}"
    assert root.findtext("description") == spec.description
    assert (root.findtext("autoWriteSuppressed") == "true") == spec.sink

    sources = root.findall("namedSourceProducts/sourceProduct")
    assert [s.findtext("name") for s in sources] == [s.name for s in spec.sources if not s.multiple]
    for s in sources:
        assert {c.tag for c in s} <= SOURCE_FIELDS

    params = root.findall("parameters/parameter")
    expected = [p for p in spec.parameters if p.type != "element[]"]
    assert [p.findtext("name") for p in params] == [p.name for p in expected]
    for el, p in zip(params, expected):
        assert {c.tag for c in el} <= PARAMETER_FIELDS
        data_type = el.findtext("dataType")
        assert data_type in SNAP_TYPES
        want = {"double": "double", "float": "float", "int": "int", "boolean": "boolean", "String": "String",
                "String[]": "String[]", "File": "java.io.File", "int[]": "String", "double[]": "String"}[p.type]
        if p.default is None and want in ("double", "float", "int", "boolean"):
            # SNAP would fill a primitive without default with 0/false; the boxed type stays null.
            want = {"double": "java.lang.Double", "float": "java.lang.Float", "int": "java.lang.Integer",
                    "boolean": "java.lang.Boolean"}[want]
        assert data_type == want
        if p.default is None:
            assert el.find("defaultValue") is None
        else:  # the text SNAP hands back converts to the spec's default
            value = p.convert(el.findtext("defaultValue"))
            assert (list(value) if isinstance(value, list) else value) == \
                (list(p.default) if isinstance(p.default, tuple) else p.default)
        assert el.findtext("interval") == p.interval
        assert el.findtext("unit") == p.unit
        assert el.findtext("label") == p.label
        if p.value_set:
            assert el.findtext("valueSet").split(",") == list(p.value_set)
        assert (el.findtext("notNull") == "true") == (p.required and p.default is None)


def test_info_xml_uses_the_real_esa_snappy_format():
    if not REAL.is_dir():
        pytest.skip(f"../shared/data not found: {REAL}")
    real = DET.parse(REAL / "esa-snappy" / "snappy_ndvi_op" / "ndvi_op-info.xml").getroot()
    ours = DET.parse(D.PLUGIN_DIR / D.PLUGIN_OPERATORS[0].info_file).getroot()
    assert ours.findtext("operatorClass") == real.findtext("operatorClass")
    real_tags = {c.tag for c in real} | {c.tag for c in DET.parse(REAL / "esa-snappy" / "gpf" / "ExampleOp-info.xml").getroot()}
    assert real_tags <= OPERATOR_FIELDS  # the field list above covers SNAP's real examples
    assert (REAL / "esa-snappy" / "snappy_ndvi_op" / D.SERVICES_PATH).is_file()
    assert not (REAL / "snap-examples" / "snap-engine-python-operator" / D.SERVICES_PATH).exists()


def test_element_list_parameters_are_left_out():
    op = D.PLUGIN_OPERATORS[0]
    spec = D.operator_spec(op.alias)
    spec = dataclasses.replace(spec, parameters=spec.parameters + (Parameter("targetBands", "element[]", item="targetBand"),))
    root = DET.fromstring(D.info_xml(op, spec).encode())
    assert "targetBands" not in [p.findtext("name") for p in root.findall("parameters/parameter")]
    assert len(root.findall("parameters/parameter")) == len(spec.parameters) - 1


def test_value_with_comma_cannot_be_described():
    with pytest.raises(ValueError, match="comma"):
        D.parameter_element(Parameter("mode", "String", value_set=("a,b", "c")))


def test_services_file_lists_plugin_classes():
    text = (D.PLUGIN_DIR / D.SERVICES_PATH).read_text()
    entries = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert entries == [f"{op.module}.{op.class_name}" for op in D.PLUGIN_OPERATORS]
    if not _modules_present():
        pytest.skip("thin plugin modules snap_operators/snap/plugin/snap_pc_*.py not present yet")
    for entry in entries:
        module, cls = entry.rsplit(".", 1)
        tree = ast.parse((D.PLUGIN_DIR / f"{module}.py").read_text())
        bound = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}  # class X: ...
        bound |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                  if isinstance(t, ast.Name)}  # X = make_operator_class(...)
        assert cls in bound, entry


# --- install / uninstall -----------------------------------------------------------------


def _seed_user_dir(user_dir: Path) -> None:
    """What SNAP and esa_snappy already put in a user folder."""
    (user_dir / "snap-python" / "esa_snappy").mkdir(parents=True)
    (user_dir / "snap-python" / "esa_snappy" / "jpyconfig.properties").write_text("jpy.pythonExecutable=/usr/bin/python3\n")
    (user_dir / "snap-python" / "snappy.properties").write_text("snap.pythonExecutable=/usr/bin/python3\n")
    (user_dir / "graphs" / "Mine").mkdir(parents=True)
    (user_dir / "graphs" / "Mine" / "my.xml").write_text("<graph id='g'/>")


def test_install_layout_and_uninstall(tmp_path, plugin_dir):
    user = tmp_path / "snapuser"
    _seed_user_dir(user)
    before = _tree(user)
    res = I.install(user, GRAPHS, plugin_dir)

    pdir = user / "snap-python" / I.PLUGIN_FOLDER
    assert res.plugin_dir == pdir
    services = pdir / D.SERVICES_PATH
    assert services.read_bytes() == (plugin_dir / D.SERVICES_PATH).read_bytes()
    for op in D.PLUGIN_OPERATORS:
        assert (pdir / f"{op.module}.py").read_bytes() == (plugin_dir / f"{op.module}.py").read_bytes()
        assert (pdir / op.info_file).read_bytes() == (plugin_dir / op.info_file).read_bytes()
    gdir = user / "graphs" / I.GRAPHS_FOLDER
    sources = sorted(GRAPHS.glob("*.xml")) + sorted(GRAPHS.glob("*.properties"))
    assert sorted(p.name for p in gdir.iterdir() if not p.name.startswith(".")) == sorted(p.name for p in sources)
    for src in sources:
        assert (gdir / src.name).read_bytes() == src.read_bytes()
    assert sorted(res.graphs) == sorted(gdir / p.name for p in GRAPHS.glob("*.xml"))
    # no temporary folders left, SNAP's own files untouched
    assert not [p for p in (user / "snap-python").iterdir() if p.name.startswith(f".{I.PLUGIN_FOLDER}")]
    after = _tree(user)
    assert {k: v for k, v in after.items() if k in before} == before

    I.install(user, GRAPHS, plugin_dir)  # reinstall replaces in place
    assert _tree(user) == after

    removed = I.uninstall(user)
    assert set(removed) == {pdir, gdir}
    assert _tree(user) == before
    assert I.uninstall(user) == []


def test_an_interrupted_install_leaves_nothing_snap_would_register(tmp_path, plugin_dir, monkeypatch):
    """SNAP registers the operators of every folder in snap-python/, hidden ones too."""
    from snap_operators.core import staging

    user = tmp_path / "snapuser"
    _seed_user_dir(user)
    before = _tree(user)
    real, copied = shutil.copyfile, []

    def interrupted(src, dst, **kw):
        if len(copied) == 3:
            raise KeyboardInterrupt
        copied.append(dst)
        return real(src, dst, **kw)

    monkeypatch.setattr(I.shutil, "copyfile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        I.install(user, GRAPHS, plugin_dir)
    assert copied and _tree(user) == before  # nothing half-copied anywhere, staging folder gone
    monkeypatch.setattr(I.shutil, "copyfile", real)
    # What a SIGKILLed install leaves: a staged folder of a dead process (outside snap-python/) and,
    # from older versions, a hidden copy beside the plugin, where SNAP would register it again.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = user / I.STAGING / f".{I.PLUGIN_FOLDER}.part-{staging.HOST}-{dead.pid}-0badc0de"
    (killed / "META-INF").mkdir(parents=True)
    old_style = user / "snap-python" / f".{I.PLUGIN_FOLDER}.k3x9q2ab"
    (old_style / "META-INF" / "services").mkdir(parents=True)
    I.install(user, GRAPHS, plugin_dir)
    assert not killed.exists() and not old_style.exists() and not (user / I.STAGING).exists()
    assert sorted(p.name for p in (user / "snap-python").iterdir()) == sorted(
        ["esa_snappy", "snappy.properties", I.PLUGIN_FOLDER])


def test_uninstall_removes_folders_install_created(tmp_path, plugin_dir):
    user = tmp_path / "fresh" / ".snap"
    I.install(user, GRAPHS, plugin_dir)
    assert (user / "snap-python" / I.PLUGIN_FOLDER / D.SERVICES_PATH).is_file()
    I.install(user, GRAPHS, plugin_dir)  # a reinstall still remembers what the first created
    (tmp_path / "keep").mkdir()
    I.uninstall(user)
    assert not (tmp_path / "fresh").exists()  # install created it too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep", "plugin"]


def test_install_refuses_a_folder_it_did_not_create(tmp_path, plugin_dir):
    user = tmp_path / "u"
    foreign = user / "graphs" / I.GRAPHS_FOLDER
    foreign.mkdir(parents=True)
    (foreign / "someone_elses.xml").write_text("<graph id='x'/>")
    with pytest.raises(SnapPcError, match="not created by snap-pc"):
        I.install(user, GRAPHS, plugin_dir)
    assert not (user / "snap-python").exists()
    with pytest.raises(SnapPcError, match="not created by snap-pc"):
        I.uninstall(user)
    assert (foreign / "someone_elses.xml").is_file()


def test_install_refuses_stale_descriptors(tmp_path, plugin_dir):
    info = plugin_dir / D.PLUGIN_OPERATORS[0].info_file
    info.write_text(info.read_text().replace("<alias>", "<alias>X"))
    with pytest.raises(SnapPcError, match="stale"):
        I.install(tmp_path / "u", GRAPHS, plugin_dir)
    assert not (tmp_path / "u").exists()


def test_gpt_commands_cover_every_variable():
    graphs = sorted(GRAPHS.glob("*.xml"))
    commands = I.gpt_commands(graphs, gpt="/opt/esa-snap/bin/gpt")
    assert len(commands) == len(graphs)
    for g, cmd in zip(graphs, commands):
        assert cmd.startswith(f"/opt/esa-snap/bin/gpt {g}")
        props = g.with_suffix(".properties")
        defaults = load_properties(props) if props.is_file() else {}
        assert (f"-p {props}" in cmd) == props.is_file()
        given = {a[2:].split("=")[0] for a in cmd.split() if a.startswith("-P")}
        assert given | set(defaults) >= parse_graph(g).variables()
        assert not given & set(defaults)


def test_cli_install_prints_gpt_commands(tmp_path, capsys):
    if not _modules_present():
        pytest.skip("thin plugin modules snap_operators/snap/plugin/snap_pc_*.py not present yet")
    user = tmp_path / "u"
    assert cli.main(["snap", "install", "--user-dir", str(user)]) == 0
    out = capsys.readouterr().out
    for g in GRAPHS.glob("*.xml"):
        assert f"gpt '{user / 'graphs' / I.GRAPHS_FOLDER / g.name}'" in out
    assert cli.main(["snap", "uninstall", "--user-dir", str(user)]) == 0
    assert not user.exists()


# --- NBM -----------------------------------------------------------------------------------


def _read_manifest(data: bytes) -> dict[str, str]:
    lines = data.decode("utf-8").split("\r\n")
    assert all(len(ln.encode()) <= 72 for ln in lines)
    attrs, key = {}, None
    for ln in lines:
        if ln.startswith(" ") and key:
            attrs[key] += ln[1:]
        elif ln:
            key, value = ln.split(": ", 1)
            attrs[key] = value
    return attrs


def test_nbm_layout(tmp_path, plugin_dir):
    nbm = I.build_nbm(tmp_path / "snap_pc.nbm", "1.2.3", plugin_dir)
    dashed = I.CODENAME.replace(".", "-")
    with zipfile.ZipFile(nbm) as z:
        names = set(z.namelist())
        assert {"Info/info.xml", "META-INF/MANIFEST.MF", f"netbeans/modules/{dashed}.jar",
                f"netbeans/config/Modules/{dashed}.xml"} <= names
        info = DET.fromstring(z.read("Info/info.xml"))
        status = DET.fromstring(z.read(f"netbeans/config/Modules/{dashed}.xml"))
        jar_bytes = z.read(f"netbeans/modules/{dashed}.jar")
    assert info.tag == "module" and info.get("codenamebase") == I.CODENAME
    manifest = info.find("manifest")
    assert manifest.get("OpenIDE-Module") == I.CODENAME
    assert manifest.get("OpenIDE-Module-Specification-Version") == "1.2.3"
    assert "eu.esa.snap.esa.snappy" in manifest.get("OpenIDE-Module-Module-Dependencies")
    assert status.get("name") == I.CODENAME
    assert {p.get("name"): p.text for p in status}["jar"] == f"modules/{dashed}.jar"

    with zipfile.ZipFile(io.BytesIO(jar_bytes)) as jar:
        jnames = jar.namelist()
        assert jnames[0] == "META-INF/MANIFEST.MF"
        mf = _read_manifest(jar.read("META-INF/MANIFEST.MF"))
        assert mf["OpenIDE-Module"] == I.CODENAME
        assert mf["OpenIDE-Module-Specification-Version"] == "1.2.3"
        layer = DET.fromstring(jar.read(mf["OpenIDE-Module-Layer"]))
        # the Python plugin at the jar root, where PyOperatorSpi looks
        assert jar.read(D.SERVICES_PATH) == (plugin_dir / D.SERVICES_PATH).read_bytes()
        for op in D.PLUGIN_OPERATORS:
            assert jar.read(f"{op.module}.py") == (plugin_dir / f"{op.module}.py").read_bytes()
            assert jar.read(op.info_file) == (plugin_dir / op.info_file).read_bytes()

    actions = {f.get("name"): {a.get("name"): a for a in f.findall("attr")}
               for f in layer.findall("folder[@name='Actions']/folder[@name='Operators']/file")}
    menu = layer.find("folder[@name='Menu']/folder[@name='Raster']/folder[@name='Progressive Classifier']")
    shadows = menu.findall("file")
    assert len(shadows) == len(D.PLUGIN_OPERATORS)
    opened = []
    for shadow in shadows:
        target = {a.get("name"): a for a in shadow.findall("attr")}["originalFile"].get("stringvalue")
        folder, name = target.rsplit("/", 1)
        assert folder == "Actions/Operators"
        attrs = actions[name]
        assert attrs["delegate"].get("methodvalue") == "org.esa.snap.core.gpf.ui.DefaultOperatorAction.create"
        assert attrs["instanceCreate"].get("methodvalue") == "org.openide.awt.Actions.alwaysEnabled"
        assert attrs["dialogTitle"].get("stringvalue")
        opened.append(attrs["operatorName"].get("stringvalue"))
    assert opened == [op.alias for op in D.PLUGIN_OPERATORS]


def test_nbm_modules_import_from_the_jar(tmp_path, plugin_dir):
    """What esa_snappy's PyOperator does: put the module jar on sys.path, import module.Class."""
    nbm = I.build_nbm(tmp_path / "snap_pc.nbm", None, plugin_dir)
    jar = tmp_path / "module.jar"
    with zipfile.ZipFile(nbm) as z:
        jar.write_bytes(z.read(f"netbeans/modules/{I.CODENAME.replace('.', '-')}.jar"))
    code = (f"import sys, importlib; sys.path.append({str(jar)!r}); "
            + "; ".join(f"m = importlib.import_module({op.module!r}); "
                        f"assert m.__file__.startswith({str(jar)!r}); getattr(m, {op.class_name!r})"
                        for op in D.PLUGIN_OPERATORS))
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]


def test_nbm_rejects_bad_version_and_name(tmp_path, plugin_dir):
    with pytest.raises(SnapPcError, match="digits and dots"):
        I.build_nbm(tmp_path / "x.nbm", "1.0-beta", plugin_dir)
    with pytest.raises(SnapPcError, match=".nbm"):
        I.build_nbm(tmp_path / "x.zip", "1.0", plugin_dir)
    assert list(tmp_path.iterdir()) == [plugin_dir]


def test_nbm_never_replaces_a_file_unless_asked(tmp_path, plugin_dir, run_cli):
    out = tmp_path / "snap_pc.nbm"
    out.write_bytes(b"someone's module")
    with pytest.raises(SnapPcError, match=r"snap_pc.nbm exists \(use --overwrite"):
        I.build_nbm(out, "1.0", plugin_dir)
    assert out.read_bytes() == b"someone's module"
    code, _, err = run_cli("snap", "nbm", str(out), "--version", "1.0")
    assert code == 1 and "exists (use --overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"someone's module"
    I.build_nbm(out, "1.0", plugin_dir, overwrite=True)
    assert zipfile.ZipFile(out).testzip() is None


def test_manifest_wraps_long_values():
    text = I._manifest([("Key", "é" * 100)])
    attrs = _read_manifest(text)
    assert attrs["Key"] == "é" * 100


# --- doctor --------------------------------------------------------------------------------


def _fake_snap_home(root: Path, version: str = "10.0.0") -> Path:
    (root / "bin").mkdir(parents=True)
    gpt = root / "bin" / "gpt"
    gpt.write_text("#!/bin/sh\nexit 0\n")
    gpt.chmod(0o755)
    (root / "VERSION.txt").write_text(version + "\n")
    return root


def _configure_esa_snappy(user: Path, python: str) -> None:
    sp = user / "snap-python"
    (sp / "esa_snappy").mkdir(parents=True, exist_ok=True)
    (sp / "esa_snappy" / "jpyconfig.properties").write_text("jpy.jpyLib=/x/jpy.so\n")
    escaped = python.replace("\\", "\\\\").replace(":", "\\:")
    (sp / "snappy.properties").write_text(
        "#Created by eu.esa.snap.snappy.PyBridge\n"
        f"snap.pythonExecutable={escaped}\nsnap.pythonModuleDir={str(sp).replace(':', chr(92) + ':')}\n")


def test_doctor_on_empty_installation_says_what_to_fix(tmp_path, capsys):
    home, user = tmp_path / "snap", tmp_path / "user"
    home.mkdir()
    assert cli.main(["snap", "doctor", "--snap-home", str(home), "--user-dir", str(user)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 6
    assert all(ln.startswith(("OK ", "FAIL ")) for ln in lines)
    fails = [ln for ln in lines if ln.startswith("FAIL")]
    assert len(fails) == len(lines)
    assert all("Fix: " in ln for ln in fails)
    assert "bin/gpt" in fails[0] and "SNAP 10" in fails[0]
    assert any("snappy-conf" in ln for ln in fails)
    assert any("snap-pc snap install" in ln for ln in fails)


def test_doctor_rejects_snap_9(tmp_path):
    home = _fake_snap_home(tmp_path / "snap", "9.0.0")
    checks = I.run_checks(home, tmp_path / "user", GRAPHS)
    assert not checks[0].ok and "10+" in checks[0].detail


def test_doctor_on_complete_installation(tmp_path, capsys, plugin_dir):
    home = _fake_snap_home(tmp_path / "snap")
    user = tmp_path / "user"
    _configure_esa_snappy(user, sys.executable)
    I.install(user, GRAPHS, plugin_dir)
    checks = I.run_checks(home, user, GRAPHS, plugin_dir)
    assert [c.ok for c in checks] == [True] * len(checks), [c.line() for c in checks if not c.ok]
    assert "10.0.0" in checks[0].detail

    info = user / "snap-python" / I.PLUGIN_FOLDER / D.PLUGIN_OPERATORS[0].info_file
    info.write_text(info.read_text().replace("<version>", "<version>0"))
    plugin = {c.name: c for c in I.run_checks(home, user, GRAPHS, plugin_dir)}["plugin"]
    assert not plugin.ok and D.PLUGIN_OPERATORS[0].info_file in plugin.detail


def test_doctor_python_without_our_packages(tmp_path):
    user = tmp_path / "user"
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named snap_operators' >&2\nexit 1\n")
    broken.chmod(0o755)
    _configure_esa_snappy(user, str(broken))
    checks = {c.name: c for c in I.run_checks(_fake_snap_home(tmp_path / "snap"), user, GRAPHS)}
    assert checks["esa_snappy configuration"].ok and checks["esa_snappy module"].ok
    assert not checks["Python packages"].ok
    assert "No module named snap_operators" in checks["Python packages"].detail
    assert "pip install" in checks["Python packages"].fix


def test_snap_version_from_core_module_manifest(tmp_path):
    home = tmp_path / "snap"
    jar = home / "snap" / "modules" / "org-esa-snap-snap-core.jar"
    jar.parent.mkdir(parents=True)
    with zipfile.ZipFile(jar, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nOpenIDE-Module-Specification-Version: 11.0.2\r\n\r\n")
    assert I.snap_version(home) == (11, 0, 2)
    (home / "VERSION.txt").write_text("12.0.0")
    assert I.snap_version(home) == (12, 0, 0)


def test_read_java_properties_unescapes(tmp_path):
    p = tmp_path / "snappy.properties"
    p.write_text("#Created by PyBridge\n!other comment\nsnap.pythonExecutable=C\\:\\\\Python\\\\python.exe\n"
                 "snap.pythonModuleDir = /home/a\\ b\n")
    props = I.read_java_properties(p)
    assert props == {"snap.pythonExecutable": "C:\\Python\\python.exe", "snap.pythonModuleDir": "/home/a b"}
